//! What the sections of a configuration must say together, beyond what each field's type
//! holds: lookups, forwarding, auth and its clients' grants.

use super::*;

impl Config {
    pub(super) fn check_lookups(&self) -> Result<(), ConfigError> {
        let l = &self.lookups;
        for (name, u) in [
            ("patients", &l.patients),
            ("organizations", &l.organizations),
            ("terminology", &l.terminology),
        ] {
            if !u.base_url.is_empty() {
                check_http_url(&format!("lookups.{name}.base_url"), &u.base_url)?;
            }
            if u.ttl_secs == 0 || u.negative_ttl_secs == 0 || u.capacity == 0 || u.timeout_ms == 0 {
                return Err(ConfigError::Invalid(format!(
                    "lookups.{name}: ttl_secs, negative_ttl_secs, capacity and timeout_ms must be at least 1"
                )));
            }
        }
        for url in &l.jwks.urls {
            check_http_url("lookups.jwks.urls", url)?;
        }
        if l.jwks.ttl_secs == 0 || l.jwks.timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "lookups.jwks: ttl_secs and timeout_ms must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

impl Config {
    pub(super) fn check_forwarding(&self) -> Result<(), ConfigError> {
        let f = &self.forwarding;
        let invalid = |m: String| Err(ConfigError::Invalid(format!("forwarding: {m}")));
        if f.workers == 0 || f.batch_size == 0 || f.poll_interval_ms == 0 || f.max_attempts < 1 {
            return invalid(
                "workers, batch_size, poll_interval_ms and max_attempts must be at least 1".into(),
            );
        }
        if f.backoff_base_ms == 0 || f.backoff_max_ms < f.backoff_base_ms {
            return invalid("backoff_base_ms must be at least 1 and at most backoff_max_ms".into());
        }
        if f.breaker_failures == 0 {
            return invalid("breaker_failures must be at least 1".into());
        }
        let mut ids = std::collections::HashSet::new();
        let mut receivers = std::collections::HashMap::new();
        for d in &f.destinations {
            if d.id.is_empty() || !ids.insert(d.id.as_str()) {
                return invalid(format!(
                    "destination ids must be unique and not empty ({:?})",
                    d.id
                ));
            }
            check_http_url(
                &format!("forwarding destination {} base_url", d.id),
                &d.base_url,
            )?;
            if d.timeout_ms == 0 || d.timeout_ms >= f.lease_secs.saturating_mul(1000) {
                return invalid(format!(
                    "destination {}: timeout_ms must be at least 1 and shorter than lease_secs",
                    d.id
                ));
            }
            if d.receivers.is_empty() {
                return invalid(format!("destination {} has no receivers", d.id));
            }
            for r in &d.receivers {
                if !r
                    .split_once('|')
                    .is_some_and(|(s, v)| !s.is_empty() && !v.is_empty())
                {
                    return invalid(format!(
                        "destination {}: receiver {r:?} must be system|value, e.g. urn:oid:1.2.208.176.1.1|123456789",
                        d.id
                    ));
                }
                if let Some(other) = receivers.insert(r.as_str(), d.id.as_str()) {
                    return invalid(format!(
                        "receiver {r:?} is routed to both {other} and {}",
                        d.id
                    ));
                }
            }
            match (d.kind, &d.auth) {
                (DestinationKind::CosmicLink, None) => {
                    return invalid(format!("destination {} (cosmic-link) needs [auth]", d.id))
                }
                (_, Some(a)) => {
                    check_http_url(
                        &format!("destination {} auth.token_url", d.id),
                        &a.token_url,
                    )?;
                    if a.client_id.is_empty() || a.client_secret.is_empty() {
                        return invalid(format!(
                            "destination {}: auth needs client_id and client_secret (or client_secret_env)",
                            d.id
                        ));
                    }
                }
                _ => {}
            }
            if let Some(t) = &d.tls {
                if t.client_cert.is_empty() != t.client_key.is_empty() {
                    return invalid(format!(
                        "destination {}: tls.client_cert and tls.client_key go together",
                        d.id
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Config {
    /// What `[auth]` says must hold together; key files are read by `auth::Authenticator::new`.
    pub(super) fn check_auth(&self) -> Result<(), ConfigError> {
        let a = &self.auth;
        let invalid = |m: String| Err(ConfigError::Invalid(format!("auth: {m}")));
        let mut seen_iss = std::collections::HashSet::new();
        for i in &a.issuers {
            if i.iss.is_empty() {
                return invalid("every [[auth.issuers]] needs iss".into());
            }
            if !seen_iss.insert(i.iss.as_str()) {
                return invalid(format!("issuer {:?} is configured twice", i.iss));
            }
            if i.jwks_url.is_empty() && i.public_key_files.is_empty() {
                return invalid(format!(
                    "issuer {:?} needs jwks_url or public_key_files (its signing keys)",
                    i.iss
                ));
            }
            if !i.jwks_url.is_empty() {
                check_http_url(&format!("auth issuer {:?} jwks_url", i.iss), &i.jwks_url)?;
            }
            if i.algorithms.is_empty() {
                return invalid(format!("issuer {:?}: algorithms is empty", i.iss));
            }
            for alg in &i.algorithms {
                if !JWT_ALGORITHMS.contains(&alg.as_str()) {
                    return invalid(format!(
                        "issuer {:?}: algorithm {alg:?} is not supported (use {})",
                        i.iss,
                        JWT_ALGORITHMS.join(", ")
                    ));
                }
            }
        }
        if !a.issuers.is_empty() && a.audiences.is_empty() && self.server.base_url.is_empty() {
            return invalid(
                "with [[auth.issuers]] configured, tokens must name this gateway in `aud`: set \
                 auth.audiences or server.base_url"
                    .into(),
            );
        }
        let mut ids = std::collections::HashSet::new();
        let mut subjects = std::collections::HashSet::new();
        let mut certs = std::collections::HashMap::new();
        if a.dev.enabled {
            ids.insert(a.dev.client_id.as_str());
            check_client_grants(
                "the dev client",
                a.dev.kind,
                &a.dev.organizations,
                &a.dev.scopes,
            )?;
            if let Some(t) = &a.dev.token {
                if t.len() < 16 {
                    return invalid(
                        "SEKTORBRO_DEV_TOKEN must be at least 16 characters (or unset it to have \
                         one generated)"
                            .into(),
                    );
                }
            }
        }
        for c in &a.clients {
            if c.id.is_empty() {
                return invalid("every [[auth.clients]] needs an id".into());
            }
            if !ids.insert(c.id.as_str()) {
                return invalid(format!("client id {:?} is used twice", c.id));
            }
            let who = format!("client {:?}", c.id);
            check_client_grants(&who, c.kind, &c.organizations, &c.scopes)?;
            if c.issuer.is_empty() && c.certificate_subject.is_empty() {
                return invalid(format!(
                    "{who} can never authenticate: set issuer (bearer tokens) and/or \
                     certificate_subject (mTLS)"
                ));
            }
            if !c.issuer.is_empty() {
                if !seen_iss.contains(c.issuer.as_str()) {
                    return invalid(format!(
                        "{who} names issuer {:?}, which is not among [[auth.issuers]]",
                        c.issuer
                    ));
                }
                let sub = if c.subject.is_empty() {
                    &c.id
                } else {
                    &c.subject
                };
                if !subjects.insert((c.issuer.as_str(), sub.as_str())) {
                    return invalid(format!(
                        "{who}: another client already has issuer {:?} and subject {sub:?}",
                        c.issuer
                    ));
                }
            } else if !c.subject.is_empty() {
                return invalid(format!("{who}: subject needs issuer"));
            }
            if !c.certificate_subject.is_empty() {
                let dn = crate::auth::subject::DistinguishedName::parse(&c.certificate_subject)
                    .map_err(|e| {
                        ConfigError::Invalid(format!("auth: {who}: certificate_subject: {e}"))
                    })?;
                if let Some(other) = certs.insert(dn, c.id.as_str()) {
                    return invalid(format!(
                        "{who} and client {other:?} have the same certificate_subject"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A client's kind, organizations and scope ceiling make sense together.
pub(super) fn check_client_grants(
    who: &str,
    kind: crate::auth::ClientKind,
    organizations: &[String],
    scopes: &str,
) -> Result<(), ConfigError> {
    let invalid = |m: String| Err(ConfigError::Invalid(format!("auth: {who}: {m}")));
    for o in organizations {
        match o.split_once('|') {
            Some((system, value)) if !system.is_empty() && !value.is_empty() => {}
            _ => {
                return invalid(format!(
                    "organization {o:?} is not an identifier `system|value` (e.g. \
                     urn:oid:1.2.208.176.1.1|123456789012345)"
                ))
            }
        }
    }
    if organizations.is_empty() && kind != crate::auth::ClientKind::Admin {
        return invalid(format!(
            "a {} client acts for organizations: list at least one",
            kind.as_str()
        ));
    }
    let (parsed, ignored) = crate::auth::Scopes::parse(scopes);
    if !ignored.is_empty() {
        return invalid(format!(
            "scopes: {} grant nothing here (use system/Type.cruds, system/*.rs, or SMART v1 \
             system/Type.read|write|*)",
            ignored.join(" ")
        ));
    }
    if parsed.is_empty() {
        return invalid("scopes is empty: the client could do nothing".into());
    }
    Ok(())
}

pub(super) fn check_http_url(key: &str, url: &str) -> Result<(), ConfigError> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "{key} must be an http:// or https:// URL, got {url:?}"
        )))
    }
}
