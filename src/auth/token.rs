//! Authentication of callers: bearer JWTs (SMART Backend Services style) from configured
//! issuers, the development token, and TLS client certificates. [`Authenticator`] is built once
//! at start from the `Config`; the HTTP middleware asks it who a request's caller is.
//!
//! A JWT is checked in this order, so nothing about a token's claims is believed before its
//! signature is: the header's `alg` (only RS256/RS384/ES256/ES384; `none` and `HS*` are refused
//! before any key is touched), the `iss` (it picks the keys: a configured issuer's PEM keys and/or
//! its own JWKS, never another issuer's), the signature, then `exp` (required), `nbf`, `iat`,
//! `aud`, and the (`iss`, `sub`/`client_id`) pair that names a configured client. The granted
//! scopes are the token's `scope` within the client's ceiling.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::keys::{Alg, PublicKey, B64};
use super::subject::DistinguishedName;
use super::{AuthMethod, Caller, Client, Scopes};
use crate::config::Config;
use crate::lookup::{LookupError, Lookups};
use crate::metrics::Counter;

/// Tokens longer than this are refused unread.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a request is not authenticated. Messages say what to do about it and never contain the
/// token; claim values quoted from a token are shortened and stripped of control characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no credentials: send `Authorization: Bearer <token>` with a token from a configured \
         issuer, or connect with a client certificate of a configured client"
    )]
    Missing,
    #[error("the bearer token is malformed: {0}")]
    Malformed(String),
    #[error("the token expired at {0} (UTC): get a new one from its issuer")]
    Expired(String),
    /// `exp` further away than `[auth] max_token_lifetime_secs`.
    #[error(
        "the token lives too long: it expires at {exp} (UTC), more than [auth] \
         max_token_lifetime_secs = {max} s from now; ask its issuer for a shorter-lived token"
    )]
    TooLongLived { exp: String, max: i64 },
    #[error("the token is not valid yet: {0}; check the clocks of the issuer and this host")]
    NotYetValid(String),
    #[error(
        "the token is meant for {got}, not this gateway: ask its issuer for a token with aud \
         {expected}"
    )]
    WrongAudience { got: String, expected: String },
    #[error("the token's issuer {0} is not one this gateway trusts ([[auth.issuers]])")]
    WrongIssuer(String),
    #[error("the token's signature does not verify with the keys of issuer {0}")]
    BadSignature(String),
    #[error("the token's algorithm {alg} is refused: {detail}")]
    AlgorithmRefused { alg: String, detail: String },
    /// The set may not have been fetched again for this request: a refetch happens at most once
    /// per `min_refetch_secs`, so the text says how old the set that was looked in is.
    #[error(
        "issuer {iss} has no signing key with kid {kid} in its key set as fetched {fetched_secs_ago} s ago (the set is fetched again at most once per [lookups.jwks] min_refetch_secs)"
    )]
    UnknownKeyId {
        iss: String,
        kid: String,
        fetched_secs_ago: u64,
    },
    /// Authentic, but not a configured client: a token's (iss, sub) or a certificate's subject
    /// names none. The text says which.
    #[error("{0}")]
    UnknownClient(String),
    #[error("the development token is accepted only from a loopback address")]
    DevTokenNotLocal,
    #[error("the signing keys of issuer {iss} cannot be fetched now ({detail}); try again later")]
    KeysUnavailable { iss: String, detail: String },
}

impl AuthError {
    /// 503 when the issuer's keys cannot be had (the token may be fine), else 401.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::KeysUnavailable { .. } => 503,
            _ => 401,
        }
    }

    /// The OperationOutcome issue code: `transient` for 503, `login` for 401.
    pub fn issue_code(&self) -> &'static str {
        match self {
            AuthError::KeysUnavailable { .. } => "transient",
            _ => "login",
        }
    }

    /// A short name for metrics and logs (`expired`, `bad_signature`, …).
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed(_) => "malformed",
            AuthError::Expired(_) => "expired",
            AuthError::TooLongLived { .. } => "too_long_lived",
            AuthError::NotYetValid(_) => "not_yet_valid",
            AuthError::WrongAudience { .. } => "wrong_audience",
            AuthError::WrongIssuer(_) => "wrong_issuer",
            AuthError::BadSignature(_) => "bad_signature",
            AuthError::AlgorithmRefused { .. } => "algorithm_refused",
            AuthError::UnknownKeyId { .. } => "unknown_kid",
            AuthError::UnknownClient(_) => "unknown_client",
            AuthError::DevTokenNotLocal => "dev_token_not_local",
            AuthError::KeysUnavailable { .. } => "keys_unavailable",
        }
    }

    /// The `WWW-Authenticate` value for a 401 (RFC 6750 §3): without an error code when no
    /// credentials were sent, else `error="invalid_token"` and this message, reduced to the
    /// characters a quoted `error_description` may hold.
    pub fn www_authenticate(&self) -> String {
        if *self == AuthError::Missing {
            return "Bearer realm=\"sektorbro\"".into();
        }
        let description: String = self
            .to_string()
            .chars()
            .map(|c| match c {
                '"' | '\\' => '\'',
                ' '..='~' => c,
                _ => '?',
            })
            .collect();
        format!(
            "Bearer realm=\"sektorbro\", error=\"invalid_token\", error_description=\"{description}\""
        )
    }
}

/// A verified token, remembered until it expires.
struct Verified {
    caller: Caller,
    exp: i64,
}

/// Ends a remembered token's life at its `exp`.
struct UntilExp;

impl moka::Expiry<[u8; 32], Arc<Verified>> for UntilExp {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<Verified>,
        _created_at: Instant,
    ) -> Option<Duration> {
        let left = value.exp.saturating_sub(unix_now()).max(0);
        Some(Duration::from_secs(u64::try_from(left).unwrap_or(0)))
    }
}

struct Issuer {
    iss: String,
    algorithms: Vec<Alg>,
    keys: Vec<PublicKey>,
    /// Trimmed of a trailing `/`, as `[lookups.jwks]` holds it.
    jwks_url: Option<String>,
}

struct Dev {
    token_hash: [u8; 32],
    token: String,
    generated: bool,
    caller: Caller,
    url: String,
}

/// Counters since start, for `/metrics` ([`Authenticator::register_metrics`]); the handles are
/// the series.
#[derive(Default, Clone, Debug)]
pub struct AuthStats {
    /// JWTs whose signature and claims were checked and accepted.
    pub verified: Counter,
    /// Requests answered from the verified-token cache.
    pub cached: Counter,
    pub dev_token: Counter,
    pub certificates: Counter,
    refused: [Counter; REASONS.len()],
}

const REASONS: [&str; 13] = [
    "missing",
    "malformed",
    "expired",
    "not_yet_valid",
    "wrong_audience",
    "wrong_issuer",
    "bad_signature",
    "algorithm_refused",
    "unknown_kid",
    "unknown_client",
    "dev_token_not_local",
    "keys_unavailable",
    "too_long_lived",
];

impl AuthStats {
    fn refused(&self, e: &AuthError) {
        if let Some(i) = REASONS.iter().position(|r| *r == e.reason()) {
            self.refused[i].inc();
        }
    }

    /// Refusals so far for `reason` (an [`AuthError::reason`]).
    pub fn refusals(&self, reason: &str) -> u64 {
        REASONS
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.refused[i].get())
    }
}

/// Who may call, and the checks that say who is calling. Built once at start; share it.
pub struct Authenticator {
    issuers: HashMap<String, Issuer>,
    /// By (iss, subject).
    by_subject: HashMap<(String, String), Arc<Client>>,
    by_certificate: HashMap<DistinguishedName, Arc<Client>>,
    clients: Vec<Arc<Client>>,
    audiences: Vec<String>,
    skew: i64,
    /// `[auth] max_token_lifetime_secs`: the furthest `exp` accepted, from now.
    max_lifetime: i64,
    dev: Option<Dev>,
    lookups: Arc<Lookups>,
    verified: moka::sync::Cache<[u8; 32], Arc<Verified>>,
    stats: AuthStats,
}

impl Authenticator {
    /// From `[auth]` (checked by `Config::load`): reads the issuers' key files and sets up the
    /// development client when `server.listen` is a loopback address. JWKS keys come through
    /// `lookups` (`Config::load` adds every issuer's `jwks_url` to `[lookups.jwks]`).
    pub fn new(config: &Config, lookups: Arc<Lookups>) -> anyhow::Result<Authenticator> {
        let a = &config.auth;
        let mut issuers = HashMap::new();
        for i in &a.issuers {
            let mut keys = Vec::new();
            for f in &i.public_key_files {
                keys.extend(
                    PublicKey::from_pem_file(f)
                        .map_err(anyhow::Error::msg)
                        .with_context(|| format!("[[auth.issuers]] {}", i.iss))?,
                );
            }
            let algorithms = i
                .algorithms
                .iter()
                .map(|s| Alg::parse(s).with_context(|| format!("issuer {}: algorithm {s}", i.iss)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let jwks_url =
                Some(i.jwks_url.trim_end_matches('/').to_string()).filter(|u| !u.is_empty());
            if let Some(url) = &jwks_url {
                let known = lookups.jwks().is_some_and(|j| j.has_url(url));
                anyhow::ensure!(
                    known,
                    "issuer {}: its jwks_url is not among the JWKS lookup's URLs",
                    i.iss
                );
            }
            issuers.insert(
                i.iss.clone(),
                Issuer {
                    iss: i.iss.clone(),
                    algorithms,
                    keys,
                    jwks_url,
                },
            );
        }
        let mut by_subject = HashMap::new();
        let mut by_certificate = HashMap::new();
        let mut clients = Vec::new();
        for c in &a.clients {
            let client = Arc::new(Client {
                id: c.id.clone(),
                kind: c.kind,
                organizations: c.organizations.clone(),
                scopes: Scopes::parse(&c.scopes).0,
            });
            if !c.issuer.is_empty() {
                anyhow::ensure!(
                    issuers.contains_key(&c.issuer),
                    "client {}: unknown issuer {}",
                    c.id,
                    c.issuer
                );
                let sub = if c.subject.is_empty() {
                    &c.id
                } else {
                    &c.subject
                };
                by_subject.insert((c.issuer.clone(), sub.clone()), client.clone());
            }
            if !c.certificate_subject.is_empty() {
                let dn = DistinguishedName::parse(&c.certificate_subject)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("client {}: certificate_subject", c.id))?;
                by_certificate.insert(dn, client.clone());
            }
            clients.push(client);
        }
        let audiences = if a.audiences.is_empty() {
            vec![config.server.base_url.clone()]
        } else {
            a.audiences.clone()
        };
        let audiences = audiences
            .into_iter()
            .map(|s| s.trim_end_matches('/').to_string())
            .filter(|s| !s.is_empty())
            .collect();
        Ok(Authenticator {
            issuers,
            by_subject,
            by_certificate,
            clients,
            audiences,
            skew: i64::try_from(a.clock_skew_secs).unwrap_or(i64::MAX / 4),
            max_lifetime: i64::try_from(a.max_token_lifetime_secs).unwrap_or(i64::MAX / 4),
            dev: dev_client(config)?,
            lookups,
            verified: moka::sync::Cache::builder()
                .max_capacity(a.token_cache_capacity)
                .expire_after(UntilExp)
                .build(),
            stats: AuthStats::default(),
        })
    }

    /// The caller of a `token` this authenticator has already accepted and would accept again
    /// without any cryptography, as [`Authenticator::bearer`] would answer: the development
    /// token (from loopback) or a verified JWT still in its cache. One hash and one look-up;
    /// forged tokens are never recognized. The request middleware asks this for the rate limit
    /// and keeps the answer, so that a token is hashed and looked up once per request.
    pub fn recognized(&self, token: &str, peer_is_loopback: bool) -> Option<Caller> {
        let token = token.trim();
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let hash = sha256(token.as_bytes());
        if let Some(dev) = &self.dev {
            if constant_time_eq(&hash, &dev.token_hash) {
                return peer_is_loopback.then(|| dev.caller.clone());
            }
        }
        self.verified
            .get(&hash)
            .filter(|v| unix_now() <= v.exp)
            .map(|v| v.caller.clone())
    }

    /// Count a request authenticated by a caller [`Authenticator::recognized`] found, as
    /// [`Authenticator::bearer`] counts its own.
    pub fn note_recognized(&self, caller: &Caller) {
        let counter = match caller.method {
            AuthMethod::DevToken => &self.stats.dev_token,
            _ => &self.stats.cached,
        };
        counter.inc();
    }

    /// Count a refusal decided before a token reached [`Authenticator::bearer`] (no credentials,
    /// an unreadable `Authorization` header, an unknown certificate).
    pub fn note_refusal(&self, e: &AuthError) {
        self.stats.refused(e);
    }

    /// The caller a bearer token names: the development token (from a loopback peer only), or a
    /// JWT. A JWT verified before is answered from a cache (by its SHA-256) until it expires.
    pub async fn bearer(&self, token: &str, peer_is_loopback: bool) -> Result<Caller, AuthError> {
        let result = self.bearer_inner(token.trim(), peer_is_loopback).await;
        if let Err(e) = &result {
            self.stats.refused(e);
        }
        result
    }

    async fn bearer_inner(&self, token: &str, peer_is_loopback: bool) -> Result<Caller, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed(format!(
                "longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let hash = sha256(token.as_bytes());
        if let Some(dev) = &self.dev {
            if constant_time_eq(&hash, &dev.token_hash) {
                if !peer_is_loopback {
                    return Err(AuthError::DevTokenNotLocal);
                }
                self.stats.dev_token.inc();
                return Ok(dev.caller.clone());
            }
        }
        if let Some(v) = self.verified.get(&hash) {
            if unix_now() <= v.exp {
                self.stats.cached.inc();
                return Ok(v.caller.clone());
            }
        }
        let v = self.verify_jwt(token).await?;
        self.stats.verified.inc();
        let caller = v.caller.clone();
        self.verified.insert(hash, Arc::new(v));
        Ok(caller)
    }

    async fn verify_jwt(&self, token: &str) -> Result<Verified, AuthError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed(
                "not a JWT (three base64url parts separated by dots) nor the development token"
                    .into(),
            ));
        };
        let header = json_part(h, "header")?;
        let alg_name = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or_else(|| AuthError::Malformed("the header has no alg".into()))?;
        let Some(alg) = Alg::parse(alg_name) else {
            return Err(AuthError::AlgorithmRefused {
                alg: clean(alg_name),
                detail: refusal(alg_name),
            });
        };
        if header.contains_key("crit") {
            return Err(AuthError::Malformed(
                "critical header parameters (crit) are not supported".into(),
            ));
        }
        let claims = json_part(p, "payload")?;
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or_else(|| AuthError::Malformed("the token has no iss claim".into()))?;
        let issuer = self
            .issuers
            .get(iss)
            .ok_or_else(|| AuthError::WrongIssuer(clean(iss)))?;
        if !issuer.algorithms.contains(&alg) {
            return Err(AuthError::AlgorithmRefused {
                alg: alg.as_str().into(),
                detail: format!(
                    "issuer {} is configured for {} only",
                    clean(iss),
                    issuer
                        .algorithms
                        .iter()
                        .map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        let sig = B64
            .decode(s)
            .map_err(|_| AuthError::Malformed("the signature is not base64url".into()))?;
        let kid = header.get("kid").and_then(Value::as_str);
        let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
        self.check_signature(issuer, alg, kid, signed, &sig).await?;

        let now = unix_now();
        let exp = numeric(&claims, "exp")?.ok_or_else(|| {
            AuthError::Malformed("the token has no exp claim: it must expire".into())
        })?;
        if now > exp.saturating_add(self.skew) {
            return Err(AuthError::Expired(time(exp)));
        }
        // A token valid for years (or until exp = 10^23) is a stolen credential that never
        // dies; issuers hand out tokens for minutes to hours.
        if exp.saturating_sub(now) > self.max_lifetime.saturating_add(self.skew) {
            return Err(AuthError::TooLongLived {
                exp: time(exp),
                max: self.max_lifetime,
            });
        }
        if let Some(nbf) = numeric(&claims, "nbf")? {
            if nbf > now.saturating_add(self.skew) {
                return Err(AuthError::NotYetValid(format!(
                    "valid from {} (UTC)",
                    time(nbf)
                )));
            }
        }
        if let Some(iat) = numeric(&claims, "iat")? {
            if iat > now.saturating_add(self.skew) {
                return Err(AuthError::NotYetValid(format!(
                    "issued in the future, at {} (UTC)",
                    time(iat)
                )));
            }
        }
        self.check_audience(&claims)?;

        let client = self.client_of(iss, &claims)?;
        let requested = match claims.get("scope") {
            Some(Value::String(s)) => Scopes::parse(s).0,
            Some(Value::Array(words)) => {
                let words: Vec<&str> = words.iter().filter_map(Value::as_str).collect();
                Scopes::parse(&words.join(" ")).0
            }
            _ => Scopes::default(),
        };
        let scopes = requested.intersect(&client.scopes);
        Ok(Verified {
            caller: Caller {
                client,
                scopes,
                method: AuthMethod::Jwt,
            },
            exp,
        })
    }

    async fn check_signature(
        &self,
        issuer: &Issuer,
        alg: Alg,
        kid: Option<&str>,
        signed: &[u8],
        sig: &[u8],
    ) -> Result<(), AuthError> {
        if issuer.keys.iter().any(|k| k.verify(alg, signed, sig)) {
            return Ok(());
        }
        let bad = || AuthError::BadSignature(clean(&issuer.iss));
        let Some(url) = &issuer.jwks_url else {
            if !issuer.keys.iter().any(|k| k.fits(alg)) {
                return Err(AuthError::AlgorithmRefused {
                    alg: alg.as_str().into(),
                    detail: format!("issuer {} has no configured key for it", clean(&issuer.iss)),
                });
            }
            return Err(bad());
        };
        let unavailable = |e: LookupError| AuthError::KeysUnavailable {
            iss: clean(&issuer.iss),
            detail: e.to_string(),
        };
        let jwks = self
            .lookups
            .jwks()
            .ok_or_else(|| AuthError::KeysUnavailable {
                iss: clean(&issuer.iss),
                detail: "no JWKS lookup is configured".into(),
            })?;
        match kid {
            Some(kid) => {
                let found = jwks.key_at(url, kid).await.map_err(unavailable)?;
                let Some(jwk) = found.value else {
                    return Err(AuthError::UnknownKeyId {
                        iss: clean(&issuer.iss),
                        kid: clean(kid),
                        fetched_secs_ago: found.age.as_secs(),
                    });
                };
                let key = PublicKey::from_jwk(&jwk, alg).map_err(|detail| {
                    AuthError::AlgorithmRefused {
                        alg: alg.as_str().into(),
                        detail: format!("key {}: {detail}", clean(kid)),
                    }
                })?;
                if key.verify(alg, signed, sig) {
                    Ok(())
                } else {
                    Err(bad())
                }
            }
            // No kid: any key of the set that fits (issuers with one key often omit it).
            None => {
                let set = jwks.key_set(url).await.map_err(unavailable)?;
                let Some(set) = set.value else {
                    return Err(unavailable(LookupError::BadGateway {
                        upstream: "jwks",
                        detail: format!("{url} answers 404"),
                    }));
                };
                let verified = set
                    .iter()
                    .filter_map(|jwk| PublicKey::from_jwk(jwk, alg).ok())
                    .any(|k| k.verify(alg, signed, sig));
                if verified {
                    Ok(())
                } else {
                    Err(bad())
                }
            }
        }
    }

    fn check_audience(&self, claims: &Map<String, Value>) -> Result<(), AuthError> {
        let got: Vec<&str> = match claims.get("aud") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let accepted = |a: &&str| {
            let a = a.trim_end_matches('/');
            self.audiences.iter().any(|ours| ours == a)
        };
        if got.iter().any(accepted) {
            return Ok(());
        }
        Err(AuthError::WrongAudience {
            got: if got.is_empty() {
                "no audience (no aud claim)".into()
            } else {
                got.iter().map(|a| clean(a)).collect::<Vec<_>>().join(", ")
            },
            expected: self.audiences.join(" or "),
        })
    }

    /// The client a verified token speaks for: its `sub`, else its `client_id`, under its `iss`.
    fn client_of(&self, iss: &str, claims: &Map<String, Value>) -> Result<Arc<Client>, AuthError> {
        let sub = claims.get("sub").and_then(Value::as_str);
        let client_id = claims.get("client_id").and_then(Value::as_str);
        for s in [sub, client_id].into_iter().flatten() {
            if let Some(c) = self.by_subject.get(&(iss.to_string(), s.to_string())) {
                return Ok(c.clone());
            }
        }
        Err(AuthError::UnknownClient(format!(
            "the token is valid, but no client is configured for issuer {} and subject {} \
             ([[auth.clients]] issuer and subject)",
            clean(iss),
            clean(sub.or(client_id).unwrap_or("(no sub or client_id claim)")),
        )))
    }

    /// The caller whose configured `certificate_subject` is `subject` (an RFC 4514 string, as
    /// [`super::certificate_subject`] gives it), with the client's configured scopes. Only for
    /// a certificate the TLS layer has verified against `server.tls.client_ca_file`.
    pub fn certificate(&self, subject: &str) -> Option<Caller> {
        let dn = DistinguishedName::parse(subject).ok()?;
        self.certificate_caller(&dn)
    }

    /// Whether a configured client has the certificate `subject` (counts nothing).
    pub fn certificate_known(&self, subject: &str) -> bool {
        DistinguishedName::parse(subject).is_ok_and(|dn| self.by_certificate.contains_key(&dn))
    }

    /// As [`Authenticator::certificate`], from the verified end-entity certificate's DER.
    pub fn certificate_der(&self, cert_der: &[u8]) -> Option<Caller> {
        self.certificate_caller(&DistinguishedName::from_certificate(cert_der)?)
    }

    fn certificate_caller(&self, dn: &DistinguishedName) -> Option<Caller> {
        let client = self.by_certificate.get(dn)?;
        self.stats.certificates.inc();
        Some(Caller {
            client: client.clone(),
            scopes: client.scopes.clone(),
            method: AuthMethod::Certificate,
        })
    }

    /// The development client's token, when the client is on (print it at start).
    pub fn dev_token(&self) -> Option<&str> {
        self.dev.as_ref().map(|d| d.token.as_str())
    }

    /// What to print to stderr at start when the development token was generated (not taken
    /// from `SEKTORBRO_DEV_TOKEN`): the token and how to use it. `None` otherwise.
    pub fn dev_token_notice(&self) -> Option<String> {
        let d = self.dev.as_ref().filter(|d| d.generated)?;
        Some(format!(
            "Development token for client {id:?} ({kind}, loopback only; set SEKTORBRO_DEV_TOKEN \
             to choose your own):\n  curl -H \"Authorization: Bearer {token}\" {url}/fhir/metadata",
            id = d.caller.client.id,
            kind = d.caller.client.kind.as_str(),
            token = d.token,
            url = d.url,
        ))
    }

    /// A configured client by id (the development client included).
    pub fn client(&self, id: &str) -> Option<Arc<Client>> {
        self.clients
            .iter()
            .chain(self.dev.as_ref().map(|d| &d.caller.client))
            .find(|c| c.id == id)
            .cloned()
    }

    /// Whether any credential can be checked besides the development token.
    pub fn has_issuers_or_certificates(&self) -> bool {
        !self.issuers.is_empty() || !self.by_certificate.is_empty()
    }

    pub fn stats(&self) -> &AuthStats {
        &self.stats
    }

    /// Registers the authentication series, read at each scrape.
    pub fn register_metrics(&self, registry: &mut crate::metrics::Registry) {
        registry.register_collector(Box::new(AuthMetrics {
            stats: self.stats.clone(),
            verified: self.verified.clone(),
        }));
    }
}

/// `sektorbro_auth_*`: every method and reason, also those not seen yet.
struct AuthMetrics {
    stats: AuthStats,
    verified: moka::sync::Cache<[u8; 32], Arc<Verified>>,
}

impl std::fmt::Debug for AuthMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthMetrics")
            .field("stats", &self.stats)
            .finish()
    }
}

impl crate::metrics::Collector for AuthMetrics {
    fn encode(&self, mut encoder: crate::metrics::DescriptorEncoder) -> std::fmt::Result {
        use crate::metrics::{encode_family, ConstGauge, MetricType};
        let s = &self.stats;
        encode_family(
            &mut encoder,
            "sektorbro_auth_accepted",
            "Requests authenticated, by how.",
            MetricType::Counter,
            [
                ("jwt_verified", &s.verified),
                ("jwt_cached", &s.cached),
                ("dev_token", &s.dev_token),
                ("certificate", &s.certificates),
            ]
            .map(|(how, n)| ([("method", how)], n.clone())),
        )?;
        encode_family(
            &mut encoder,
            "sektorbro_auth_refused",
            "Requests refused at authentication (no credentials, bad token or certificate), by reason.",
            MetricType::Counter,
            REASONS
                .iter()
                .zip(&s.refused)
                .map(|(reason, n)| ([("reason", *reason)], n.clone())),
        )?;
        encode_family(
            &mut encoder,
            "sektorbro_auth_token_cache_entries",
            "Verified tokens remembered.",
            MetricType::Gauge,
            [(
                crate::metrics::NO_LABELS,
                ConstGauge::new(i64::try_from(self.verified.entry_count()).unwrap_or(i64::MAX)),
            )],
        )
    }
}

/// The token in an `Authorization` header value: `Bearer <token>` (scheme case-insensitive).
pub fn bearer_token(authorization: &str) -> Result<&str, AuthError> {
    let v = authorization.trim();
    match v.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(AuthError::Malformed(
            "the Authorization header must be `Bearer <token>`".into(),
        )),
    }
}

/// The development client, when enabled and `server.listen` is a loopback address.
fn dev_client(config: &Config) -> anyhow::Result<Option<Dev>> {
    let d = &config.auth.dev;
    if !d.enabled {
        return Ok(None);
    }
    let listen: Option<SocketAddr> = config.server.listen.parse().ok();
    let Some(listen) = listen.filter(|l| l.ip().is_loopback()) else {
        tracing::warn!(
            listen = %config.server.listen,
            "the development client is off: server.listen is not a loopback address \
             (set auth.dev.enabled = false to silence this)"
        );
        return Ok(None);
    };
    let (token, generated) = match &d.token {
        Some(t) => (t.clone(), false),
        None => (random_token()?, true),
    };
    let scheme = if config.server.tls.cert_file.is_empty() {
        "http"
    } else {
        "https"
    };
    Ok(Some(Dev {
        token_hash: sha256(token.as_bytes()),
        token,
        generated,
        caller: Caller {
            client: Arc::new(Client {
                id: d.client_id.clone(),
                kind: d.kind,
                organizations: d.organizations.clone(),
                scopes: Scopes::parse(&d.scopes).0,
            }),
            scopes: Scopes::parse(&d.scopes).0,
            method: AuthMethod::DevToken,
        },
        url: format!("{scheme}://{listen}"),
    }))
}

/// 256 random bits from the operating system, as 64 hex digits.
fn random_token() -> anyhow::Result<String> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("no randomness for the development token"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json_part(part: &str, what: &str) -> Result<Map<String, Value>, AuthError> {
    let bytes = B64
        .decode(part)
        .map_err(|_| AuthError::Malformed(format!("the {what} is not base64url")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(AuthError::Malformed(format!(
            "the {what} is not a JSON object"
        ))),
    }
}

/// A NumericDate claim, in whole seconds.
fn numeric(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, AuthError> {
    let Some(v) = claims.get(name) else {
        return Ok(None);
    };
    let secs = v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite())
            .map(|f| f.floor() as i64)
    });
    secs.map(Some)
        .ok_or_else(|| AuthError::Malformed(format!("the {name} claim is not a number")))
}

fn refusal(alg: &str) -> String {
    if alg.eq_ignore_ascii_case("none") {
        "unsigned tokens are never accepted".into()
    } else if alg.to_ascii_uppercase().starts_with("HS") {
        "HMAC tokens are never accepted: the gateway shares no secrets with issuers; use RS256, \
         RS384, ES256 or ES384"
            .into()
    } else {
        "use RS256, RS384, ES256 or ES384".into()
    }
}

/// A value from a token, fit to quote in a message: at most 80 characters, no control ones.
fn clean(s: &str) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(80).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0).map_or_else(
        || secs.to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}
