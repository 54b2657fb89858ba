//! Connectors: how one message reaches one destination, and what the answer means.
//!
//! Both kinds POST the message Bundle (FHIR R4 JSON) to `{base_url}/$process-message` with the
//! message id as `Idempotency-Key`. `cosmic-link` adds an OAuth2 client-credentials bearer token
//! from the shared token cache (`lookup::oauth`); a 401 makes it forget the token and try once
//! more with a new one. TLS is rustls, with the destination's extra CAs and client certificate.
//!
//! A connector never decides about retries: it classifies the answer into an [`Attempt`].

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;

use crate::config::{DestinationConfig, DestinationKind};
use crate::lookup::oauth::ClientCredentials;
use crate::lookup::Lookups;

/// Largest receiver answer kept (an OperationOutcome explaining a rejection).
const MAX_KEPT_BODY: usize = 64 << 10;

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// 2xx.
    Delivered { status: u16 },
    /// Worth trying again: 408, 429, 5xx, timeouts, refused connections, token endpoint down.
    Transient {
        status: Option<u16>,
        error: String,
        /// `Retry-After` of a 429 or 503.
        retry_after: Option<Duration>,
    },
    /// The receiver refused the message for good (4xx other than 408/429).
    Permanent {
        status: u16,
        error: String,
        /// The receiver's answer (its OperationOutcome), if it sent one.
        body: Option<String>,
    },
}

/// One destination's HTTP side.
pub struct Connector {
    url: String,
    timeout: Duration,
    client: reqwest::Client,
    auth: Option<(ClientCredentials, Arc<Lookups>)>,
}

impl Connector {
    pub fn new(d: &DestinationConfig, lookups: Arc<Lookups>) -> anyhow::Result<Connector> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(concat!("sektorbro/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_millis(d.timeout_ms.min(5_000)))
            .pool_idle_timeout(Duration::from_secs(60));
        if let Some(tls) = &d.tls {
            if !tls.ca_file.is_empty() {
                let pem = read(&d.id, "tls.ca_file", &tls.ca_file)?;
                for cert in reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| anyhow::anyhow!("destination {}: tls.ca_file: {e}", d.id))?
                {
                    builder = builder.add_root_certificate(cert);
                }
            }
            if !tls.client_cert.is_empty() {
                let mut pem = read(&d.id, "tls.client_cert", &tls.client_cert)?;
                pem.push(b'\n');
                pem.extend(read(&d.id, "tls.client_key", &tls.client_key)?);
                let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    anyhow::anyhow!("destination {}: client certificate or key: {e}", d.id)
                })?;
                builder = builder.identity(identity);
            }
        }
        let auth = match (&d.auth, d.kind) {
            (Some(a), _) => Some((
                ClientCredentials {
                    token_url: a.token_url.clone(),
                    client_id: a.client_id.clone(),
                    client_secret: a.client_secret.clone(),
                    scope: a.scope.clone(),
                },
                lookups,
            )),
            (None, DestinationKind::CosmicLink) => {
                anyhow::bail!("destination {}: cosmic-link needs [auth]", d.id)
            }
            (None, DestinationKind::FhirMessage | DestinationKind::Medcom) => None,
        };
        Ok(Connector {
            url: format!("{}/$process-message", d.base_url.trim_end_matches('/')),
            timeout: Duration::from_millis(d.timeout_ms),
            client: builder.build()?,
            auth,
        })
    }

    /// Deliver one message once (twice if a cached token was refused with 401).
    pub async fn deliver(&self, message_id: &str, payload: &str) -> Attempt {
        let Some((creds, lookups)) = &self.auth else {
            return self.post(message_id, payload, None).await;
        };
        let token = match lookups.oauth_token(creds).await {
            Ok(t) => t,
            Err(e) => return token_failure(&e),
        };
        let first = self
            .post(message_id, payload, Some(&token.access_token))
            .await;
        if !matches!(first, Attempt::Permanent { status: 401, .. }) {
            return first;
        }
        // The token may have been revoked or expired early: one more try with a new one.
        lookups.forget_oauth_token(creds);
        match lookups.oauth_token(creds).await {
            Ok(t) => self.post(message_id, payload, Some(&t.access_token)).await,
            Err(e) => token_failure(&e),
        }
    }

    async fn post(&self, message_id: &str, payload: &str, token: Option<&str>) -> Attempt {
        let mut request = self
            .client
            .post(&self.url)
            .timeout(self.timeout)
            .header(CONTENT_TYPE, "application/fhir+json")
            .header(ACCEPT, "application/fhir+json")
            .header("Idempotency-Key", message_id)
            .body(payload.to_string());
        if let Some(t) = token {
            request = request.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        // The receiver can join the delivery to this gateway's trace (W3C traceparent).
        if let Some(parent) = crate::telemetry::traceparent() {
            request = request.header("traceparent", parent);
        }
        let res = match request.send().await {
            Ok(r) => r,
            Err(e) => return transport_failure(&e, self.timeout),
        };
        let status = res.status();
        let retry_after = retry_after(res.headers());
        if status.is_success() {
            return Attempt::Delivered {
                status: status.as_u16(),
            };
        }
        let body = read_body(res).await;
        classify(status, retry_after, body)
    }
}

fn read(id: &str, key: &str, path: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("destination {id}: {key} {path}: {e}"))
}

/// The answer's body, up to [`MAX_KEPT_BODY`] bytes, if it is text.
async fn read_body(mut res: reqwest::Response) -> Option<String> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = res.chunk().await {
        let room = MAX_KEPT_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room <= chunk.len() {
            break;
        }
    }
    String::from_utf8(body)
        .ok()
        .filter(|s| !s.trim().is_empty())
}

/// A non-2xx answer.
fn classify(status: StatusCode, retry_after: Option<Duration>, body: Option<String>) -> Attempt {
    let code = status.as_u16();
    let detail = body
        .as_deref()
        .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
        .and_then(|v| first_diagnostics(&v))
        .map(|d| format!(": {d}"))
        .unwrap_or_default();
    let error = format!("HTTP {code}{detail}");
    match code {
        408 | 429 | 500..=599 => Attempt::Transient {
            status: Some(code),
            error,
            retry_after: if code == 429 || code == 503 {
                retry_after
            } else {
                None
            },
        },
        _ => Attempt::Permanent {
            status: code,
            error,
            body,
        },
    }
}

fn first_diagnostics(v: &serde_json::Value) -> Option<String> {
    let issue = v.get("issue")?.as_array()?.first()?;
    issue
        .get("diagnostics")
        .or_else(|| issue.pointer("/details/text"))
        .and_then(serde_json::Value::as_str)
        .map(|s| s.chars().take(300).collect())
}

fn transport_failure(e: &reqwest::Error, timeout: Duration) -> Attempt {
    let error = if e.is_timeout() {
        format!("no answer within {} ms", timeout.as_millis())
    } else if e.is_connect() {
        format!("cannot connect: {e}")
    } else {
        format!("request failed: {e}")
    };
    Attempt::Transient {
        status: None,
        error,
        retry_after: None,
    }
}

fn token_failure(e: &crate::lookup::LookupError) -> Attempt {
    Attempt::Transient {
        status: None,
        error: format!("no access token: {e}"),
        retry_after: None,
    }
}

/// `Retry-After` as seconds or an HTTP date (RFC 9110 §10.2.3); at most a day.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = httpdate::parse_http_date(v).ok()?;
            at.duration_since(std::time::SystemTime::now())
                .unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(Duration::from_secs(86_400)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        let date = httpdate::fmt_http_date(later);
        h.insert(RETRY_AFTER, HeaderValue::from_str(&date).expect("header"));
        let got = retry_after(&h).expect("date");
        assert!(got > Duration::from_secs(110) && got <= Duration::from_secs(120));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn only_408_429_and_5xx_are_retried() {
        let t = |c: u16| {
            classify(
                StatusCode::from_u16(c).expect("status"),
                Some(Duration::from_secs(1)),
                None,
            )
        };
        assert!(matches!(
            t(500),
            Attempt::Transient {
                retry_after: None,
                ..
            }
        ));
        assert!(matches!(
            t(503),
            Attempt::Transient {
                retry_after: Some(_),
                ..
            }
        ));
        assert!(matches!(
            t(429),
            Attempt::Transient {
                retry_after: Some(_),
                ..
            }
        ));
        assert!(matches!(t(408), Attempt::Transient { .. }));
        assert!(matches!(t(400), Attempt::Permanent { status: 400, .. }));
        assert!(matches!(t(404), Attempt::Permanent { .. }));
    }
}
