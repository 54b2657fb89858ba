//! The console's session: a cookie that carries who signed in (client id, granted scopes, how
//! they proved it, when the session ends), signed with HMAC-SHA-256 (ring), and the CSRF token of
//! its forms. Nothing is kept on the server, so any instance with the same `console.session_key`
//! accepts it. The cookie authenticates `/console/…` requests only, never the API.

use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::auth::{AuthMethod, Authenticator, Caller, Scopes};
use crate::config::ConsoleConfig;

/// The session cookie's name. `__Host-` makes browsers refuse it unless it is `Secure`, has
/// `Path=/` and no `Domain`, so no other host or path can plant one.
pub const COOKIE: &str = "__Host-sektorbro-console";

#[derive(Serialize, Deserialize)]
struct Claims {
    /// Client id.
    c: String,
    /// Granted scopes (SMART v2 text).
    s: String,
    /// How the client proved who it is (`AuthMethod::as_str`).
    m: String,
    /// End of the session, epoch milliseconds.
    e: i64,
    /// Random, so that two sessions of one client differ (and so do their CSRF tokens).
    n: String,
}

fn key(config: &ConsoleConfig) -> hmac::Key {
    if !config.session_key.is_empty() {
        return hmac::Key::new(hmac::HMAC_SHA256, config.session_key.as_bytes());
    }
    static RANDOM: OnceLock<hmac::Key> = OnceLock::new();
    RANDOM
        .get_or_init(|| {
            // Two v4 UUIDs: 244 random bits from the OS-seeded generator.
            let mut bytes = Vec::with_capacity(32);
            bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
            bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
            hmac::Key::new(hmac::HMAC_SHA256, &bytes)
        })
        .clone()
}

fn method_name(m: AuthMethod) -> &'static str {
    m.as_str()
}

/// A signed cookie value for `caller`, valid until `until_ms`.
pub fn issue(config: &ConsoleConfig, caller: &Caller, until_ms: i64) -> String {
    let claims = Claims {
        c: caller.client.id.clone(),
        s: caller.scopes.to_string(),
        m: method_name(caller.method).to_string(),
        e: until_ms,
        n: uuid::Uuid::new_v4().simple().to_string(),
    };
    let payload = B64.encode(serde_json::to_vec(&claims).unwrap_or_default());
    let tag = hmac::sign(&key(config), payload.as_bytes());
    format!("{payload}.{}", B64.encode(tag.as_ref()))
}

/// The caller a cookie value stands for: its signature checks, it has not ended, its client is
/// still configured (scopes cut to the client's ceiling now), and a development-token session is
/// used from loopback only. `None` otherwise.
pub fn caller(
    config: &ConsoleConfig,
    auth: &Authenticator,
    value: &str,
    now_ms: i64,
    peer_is_loopback: bool,
) -> Option<Caller> {
    let (payload, tag) = value.split_once('.')?;
    let tag = B64.decode(tag).ok()?;
    hmac::verify(&key(config), payload.as_bytes(), &tag).ok()?;
    let claims: Claims = serde_json::from_slice(&B64.decode(payload).ok()?).ok()?;
    if claims.e <= now_ms {
        return None;
    }
    let method = [
        AuthMethod::Jwt,
        AuthMethod::DevToken,
        AuthMethod::Certificate,
    ]
    .into_iter()
    .find(|m| m.as_str() == claims.m)?;
    if method == AuthMethod::DevToken && !peer_is_loopback {
        return None;
    }
    let client: Arc<_> = auth.client(&claims.c)?;
    let scopes = Scopes::parse(&claims.s).0.intersect(&client.scopes);
    Some(Caller {
        client,
        scopes,
        method,
    })
}

/// The CSRF token of a session: a MAC of its cookie value, so it cannot be made without the key
/// and changes with every sign-in.
pub fn csrf_token(config: &ConsoleConfig, cookie_value: &str) -> String {
    let tag = hmac::sign(&key(config), format!("csrf\n{cookie_value}").as_bytes());
    B64.encode(tag.as_ref())
}

/// Whether `token` is the CSRF token of the session `cookie_value` (compared in constant time).
pub fn csrf_ok(config: &ConsoleConfig, cookie_value: &str, token: &str) -> bool {
    let Ok(tag) = B64.decode(token) else {
        return false;
    };
    hmac::verify(
        &key(config),
        format!("csrf\n{cookie_value}").as_bytes(),
        &tag,
    )
    .is_ok()
}

/// The end of a JWT's life (`exp`, epoch milliseconds), read from a token already verified.
pub fn token_expiry_ms(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    let claims: serde_json::Value = serde_json::from_slice(&B64.decode(payload).ok()?).ok()?;
    claims.get("exp")?.as_i64().map(|s| s.saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ConsoleConfig {
        ConsoleConfig {
            enabled: true,
            session_minutes: 30,
            session_key: "k".repeat(32),
            discharge_target: 0.74,
        }
    }

    #[test]
    fn csrf_token_is_bound_to_the_session() {
        let c = config();
        let t = csrf_token(&c, "a.b");
        assert!(csrf_ok(&c, "a.b", &t));
        assert!(!csrf_ok(&c, "a.c", &t));
        assert!(!csrf_ok(&c, "a.b", "not-base64!"));
        let mut other = config();
        other.session_key = "x".repeat(32);
        assert!(!csrf_ok(&other, "a.b", &t));
    }

    #[test]
    fn token_expiry_is_read_from_the_payload() {
        let payload = B64.encode(br#"{"exp": 1700000000}"#);
        assert_eq!(
            token_expiry_ms(&format!("h.{payload}.s")),
            Some(1_700_000_000_000)
        );
        assert_eq!(token_expiry_ms("dev-token"), None);
    }
}
