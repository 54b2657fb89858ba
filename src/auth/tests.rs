//! One test per rule of `token.rs`, with the fixed keys of `tests/keys/` (test-only) and JWTs
//! signed here with ring.

use std::sync::Arc;

use base64::Engine as _;
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair};
use rustls::pki_types::pem::PemObject as _;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::keys::{PublicKey, B64};
use super::*;
use crate::config::{Config, ConfigError};
use crate::lookup::Lookups;

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");
const ISS: &str = "https://issuer.test/realms/sektor";
const AUD: &str = "https://gw.test/fhir";
const DEV_TOKEN: &str = "dev-token-for-the-tests-0123456789";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A config from the defaults overlaid by `toml`, with `SEKTORBRO_DEV_TOKEN` set.
fn load(toml: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("c.toml");
    std::fs::write(&file, toml).expect("write");
    Config::load_with_env(Some(&file), |k| {
        (k == "SEKTORBRO_DEV_TOKEN").then(|| DEV_TOKEN.to_string())
    })
}

/// One issuer with the three PEM public keys (or `issuer_extra` instead), one client.
fn toml_with(issuer_keys: &str) -> String {
    format!(
        r#"
[server]
base_url = "{AUD}"
[[auth.issuers]]
iss = "{ISS}"
{issuer_keys}
[[auth.clients]]
id = "haderslev-ehr"
kind = "municipality"
organizations = ["urn:oid:1.2.208.176.1.1|123456789012345"]
scopes = "system/CarePlan.cruds system/Patient.rs"
issuer = "{ISS}"
certificate_subject = "CN=haderslev-ehr,O=Haderslev Kommune,C=DK"
[[auth.clients]]
id = "region-syd"
kind = "region"
organizations = ["urn:oid:1.2.752.29.4.19|SE2321000032-1003"]
scopes = "system/*.rs"
issuer = "{ISS}"
subject = "6f1c2e0a-region-syd-service-account"
"#
    )
}

fn pem_keys() -> String {
    format!(
        r#"public_key_files = ["{KEYS}/rsa-a.pub.pem", "{KEYS}/ec-p256.pub.pem", "{KEYS}/ec-p384.pub.pem"]"#
    )
}

fn authenticator(toml: &str) -> Authenticator {
    let config = load(toml).expect("valid config");
    Authenticator::new(&config, Arc::new(Lookups::none())).expect("authenticator")
}

fn pem_authenticator() -> Authenticator {
    authenticator(&toml_with(&pem_keys()))
}

fn pkcs8(name: &str) -> Vec<u8> {
    let path = format!("{KEYS}/{name}.key.pem");
    rustls::pki_types::PrivatePkcs8KeyDer::from_pem_file(&path)
        .expect("test key")
        .secret_pkcs8_der()
        .to_vec()
}

fn public(name: &str) -> PublicKey {
    PublicKey::from_pem_file(&format!("{KEYS}/{name}.pub.pem"))
        .expect("test key")
        .remove(0)
}

/// A JWS with header `header` and payload `claims`, signed for `alg` with the key `key`
/// (`rsa-a`, `ec-p256`, …), or for `HS256` with the bytes of `key`'s public PEM as the secret.
fn sign(header: Value, claims: &Value, key: &str) -> String {
    let alg = header["alg"].as_str().expect("alg").to_string();
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let rng = ring::rand::SystemRandom::new();
    let sig = match alg.as_str() {
        "RS256" | "RS384" => {
            let pair = RsaKeyPair::from_pkcs8(&pkcs8(key)).expect("RSA key");
            let mut sig = vec![0; pair.public().modulus_len()];
            let padding = if alg == "RS256" {
                &signature::RSA_PKCS1_SHA256
            } else {
                &signature::RSA_PKCS1_SHA384
            };
            pair.sign(padding, &rng, input.as_bytes(), &mut sig)
                .expect("sign");
            sig
        }
        "ES256" | "ES384" => {
            let params = if alg == "ES256" {
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &signature::ECDSA_P384_SHA384_FIXED_SIGNING
            };
            let pair = EcdsaKeyPair::from_pkcs8(params, &pkcs8(key), &rng).expect("EC key");
            pair.sign(&rng, input.as_bytes())
                .expect("sign")
                .as_ref()
                .to_vec()
        }
        "HS256" => {
            let secret = std::fs::read(format!("{KEYS}/{key}.pub.pem")).expect("pem");
            let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
            ring::hmac::sign(&k, input.as_bytes()).as_ref().to_vec()
        }
        _ => Vec::new(),
    };
    format!("{input}.{}", B64.encode(sig))
}

fn claims() -> Value {
    json!({
        "iss": ISS,
        "sub": "haderslev-ehr",
        "aud": AUD,
        "iat": now(),
        "exp": now() + 300,
        "scope": "system/*.cruds",
    })
}

fn with(mut c: Value, key: &str, v: Value) -> Value {
    c[key] = v;
    c
}

fn without(mut c: Value, key: &str) -> Value {
    c.as_object_mut().expect("object").remove(key);
    c
}

fn rs256() -> Value {
    json!({"alg": "RS256", "typ": "JWT"})
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// The verdict on one token from a non-loopback peer.
fn verdict(auth: &Authenticator, token: &str) -> Result<Caller, AuthError> {
    block_on(auth.bearer(token, false))
}

#[test]
fn valid_tokens_of_each_algorithm_are_accepted() {
    let auth = pem_authenticator();
    for (alg, key) in [
        ("RS256", "rsa-a"),
        ("RS384", "rsa-a"),
        ("ES256", "ec-p256"),
        ("ES384", "ec-p384"),
    ] {
        let token = sign(json!({"alg": alg}), &claims(), key);
        let caller = verdict(&auth, &token).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(caller.client.id, "haderslev-ehr");
        assert_eq!(caller.client.kind, ClientKind::Municipality);
        assert_eq!(caller.method, AuthMethod::Jwt);
    }
    assert_eq!(auth.stats().verified.get(), 4);
}

#[test]
fn a_token_without_exp_is_refused() {
    let auth = pem_authenticator();
    let token = sign(rs256(), &without(claims(), "exp"), "rsa-a");
    match verdict(&auth, &token) {
        Err(AuthError::Malformed(m)) => assert!(m.contains("exp"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_expired_token_is_refused_beyond_the_clock_skew() {
    let auth = pem_authenticator();
    let late = sign(rs256(), &with(claims(), "exp", json!(now() - 120)), "rsa-a");
    assert!(matches!(verdict(&auth, &late), Err(AuthError::Expired(_))));
    // Within the 60 s of skew: still accepted.
    let just = sign(rs256(), &with(claims(), "exp", json!(now() - 20)), "rsa-a");
    assert!(verdict(&auth, &just).is_ok());
}

/// Issue 20: `exp` = 10^23 was accepted. A token may live at most
/// `[auth] max_token_lifetime_secs` (24 h by default) from now.
#[test]
fn a_token_living_longer_than_the_maximum_is_refused() {
    let auth = pem_authenticator();
    for exp in [
        json!(100_000_000_000_000_000_000_000_u128),
        json!(1e23),
        json!(now() + 86_400 + 120),
    ] {
        let token = sign(rs256(), &with(claims(), "exp", exp.clone()), "rsa-a");
        match verdict(&auth, &token) {
            Err(e @ AuthError::TooLongLived { .. }) => {
                assert!(
                    e.to_string().contains("max_token_lifetime_secs = 86400"),
                    "{e}"
                );
                assert_eq!(e.reason(), "too_long_lived");
            }
            other => panic!("exp {exp}: {other:?}"),
        }
    }
    let day = sign(
        rs256(),
        &with(claims(), "exp", json!(now() + 86_000)),
        "rsa-a",
    );
    assert!(verdict(&auth, &day).is_ok(), "within the day");
    let short = authenticator(&format!(
        "[auth]\nmax_token_lifetime_secs = 60\n{}",
        toml_with(&pem_keys())
    ));
    let hour = sign(
        rs256(),
        &with(claims(), "exp", json!(now() + 3600)),
        "rsa-a",
    );
    assert!(matches!(
        verdict(&short, &hour),
        Err(AuthError::TooLongLived { max: 60, .. })
    ));
}

#[test]
fn a_token_not_yet_valid_or_issued_in_the_future_is_refused() {
    let auth = pem_authenticator();
    let nbf = sign(rs256(), &with(claims(), "nbf", json!(now() + 600)), "rsa-a");
    match verdict(&auth, &nbf) {
        Err(AuthError::NotYetValid(m)) => assert!(m.contains("valid from"), "{m}"),
        other => panic!("{other:?}"),
    }
    let iat = sign(rs256(), &with(claims(), "iat", json!(now() + 600)), "rsa-a");
    assert!(matches!(
        verdict(&auth, &iat),
        Err(AuthError::NotYetValid(_))
    ));
    let soon = sign(rs256(), &with(claims(), "nbf", json!(now() + 30)), "rsa-a");
    assert!(verdict(&auth, &soon).is_ok(), "within the skew");
}

#[test]
fn a_token_for_another_audience_is_refused() {
    let auth = pem_authenticator();
    let other = sign(
        rs256(),
        &with(claims(), "aud", json!("https://other.test/fhir")),
        "rsa-a",
    );
    match verdict(&auth, &other) {
        Err(e @ AuthError::WrongAudience { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains("https://other.test/fhir") && m.contains(AUD),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }
    let none = sign(rs256(), &without(claims(), "aud"), "rsa-a");
    assert!(matches!(
        verdict(&auth, &none),
        Err(AuthError::WrongAudience { .. })
    ));
    let list = json!(["https://other.test", format!("{AUD}/")]);
    let listed = sign(rs256(), &with(claims(), "aud", list), "rsa-a");
    assert!(
        verdict(&auth, &listed).is_ok(),
        "an array naming us (trailing / aside)"
    );
}

#[test]
fn a_token_of_an_unknown_issuer_is_refused() {
    let auth = pem_authenticator();
    let token = sign(
        rs256(),
        &with(claims(), "iss", json!("https://evil.test")),
        "rsa-a",
    );
    assert!(
        matches!(verdict(&auth, &token), Err(AuthError::WrongIssuer(i)) if i == "https://evil.test")
    );
}

#[test]
fn a_tampered_payload_or_a_foreign_key_fails_the_signature() {
    let auth = pem_authenticator();
    let token = sign(rs256(), &claims(), "rsa-a");
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged = B64.encode(with(claims(), "sub", json!("region-syd")).to_string());
    parts[1] = &forged;
    let tampered = parts.join(".");
    assert!(matches!(
        verdict(&auth, &tampered),
        Err(AuthError::BadSignature(_))
    ));
    let foreign = sign(rs256(), &claims(), "rsa-b");
    assert!(matches!(
        verdict(&auth, &foreign),
        Err(AuthError::BadSignature(_))
    ));
    assert!(verdict(&auth, &token).is_ok());
}

#[test]
fn unsigned_tokens_are_refused() {
    let auth = pem_authenticator();
    let input = format!(
        "{}.{}.",
        B64.encode(json!({"alg": "none"}).to_string()),
        B64.encode(claims().to_string())
    );
    match verdict(&auth, &input) {
        Err(AuthError::AlgorithmRefused { alg, detail }) => {
            assert_eq!(alg, "none");
            assert!(detail.contains("unsigned"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn hmac_with_the_public_key_as_secret_is_refused() {
    // The classic confusion: HS256 "signed" with the issuer's public key PEM, which a verifier
    // that let the token choose the algorithm would use as the HMAC secret.
    let auth = pem_authenticator();
    let token = sign(json!({"alg": "HS256"}), &claims(), "rsa-a");
    match verdict(&auth, &token) {
        Err(AuthError::AlgorithmRefused { alg, detail }) => {
            assert_eq!(alg, "HS256");
            assert!(detail.contains("HMAC"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_algorithm_the_issuer_is_not_configured_for_is_refused() {
    let keys = format!("{}\nalgorithms = [\"ES256\"]", pem_keys());
    let auth = authenticator(&toml_with(&keys));
    let token = sign(rs256(), &claims(), "rsa-a");
    assert!(matches!(
        verdict(&auth, &token),
        Err(AuthError::AlgorithmRefused { alg, .. }) if alg == "RS256"
    ));
    let ok = sign(json!({"alg": "ES256"}), &claims(), "ec-p256");
    assert!(verdict(&auth, &ok).is_ok());
}

#[test]
fn a_token_for_no_configured_client_is_refused() {
    let auth = pem_authenticator();
    let token = sign(
        rs256(),
        &with(claims(), "sub", json!("somebody-else")),
        "rsa-a",
    );
    match verdict(&auth, &token) {
        Err(AuthError::UnknownClient(m)) => assert!(m.contains("subject somebody-else"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A configured `subject`, carried as `client_id` when `sub` is something else.
    let c = with(claims(), "sub", json!("f00"));
    let c = with(c, "client_id", json!("6f1c2e0a-region-syd-service-account"));
    let caller = verdict(&auth, &sign(rs256(), &c, "rsa-a")).expect("region");
    assert_eq!(caller.client.id, "region-syd");
}

#[test]
fn granted_scopes_are_the_token_scopes_within_the_clients_ceiling() {
    let auth = pem_authenticator();
    let caller = verdict(&auth, &sign(rs256(), &claims(), "rsa-a")).expect("valid");
    assert!(caller.scopes.allows("CarePlan", Permission::Create));
    assert!(caller.scopes.allows("Patient", Permission::Read));
    assert!(
        !caller.scopes.allows("Patient", Permission::Update),
        "above the ceiling"
    );
    assert!(
        !caller.scopes.allows("Observation", Permission::Read),
        "above the ceiling"
    );
    let narrow = with(claims(), "scope", json!("system/CarePlan.rs openid"));
    let caller = verdict(&auth, &sign(rs256(), &narrow, "rsa-a")).expect("valid");
    assert!(caller.scopes.allows("CarePlan", Permission::Search));
    assert!(
        !caller.scopes.allows("CarePlan", Permission::Create),
        "not asked for"
    );
    let none = verdict(&auth, &sign(rs256(), &without(claims(), "scope"), "rsa-a")).expect("valid");
    assert!(none.scopes.is_empty(), "no scope claim grants nothing");
}

#[test]
fn a_verified_token_is_answered_from_the_cache() {
    let auth = pem_authenticator();
    let token = sign(rs256(), &claims(), "rsa-a");
    for _ in 0..3 {
        assert!(verdict(&auth, &token).is_ok());
    }
    let s = auth.stats();
    assert_eq!(s.verified.get(), 1);
    assert_eq!(s.cached.get(), 2);
    let mut registry = crate::metrics::Metrics::default();
    auth.register_metrics(registry.registry());
    let metrics = registry.render();
    assert!(metrics.contains("sektorbro_auth_accepted_total{method=\"jwt_cached\"} 2"));
    assert!(metrics.contains("sektorbro_auth_refused_total{reason=\"expired\"} 0"));
    assert!(
        metrics.contains("\nsektorbro_auth_token_cache_entries "),
        "{metrics}"
    );
}

/// A JWKS at `{server}/jwks` holding `keys` (name, kid).
fn jwks(keys: &[(&str, &str)]) -> ResponseTemplate {
    let keys: Vec<Value> = keys.iter().map(|(k, kid)| public(k).to_jwk(kid)).collect();
    ResponseTemplate::new(200).set_body_json(json!({ "keys": keys }))
}

async fn jwks_authenticator(server: &MockServer, min_refetch_secs: u64) -> Authenticator {
    let keys = format!("jwks_url = \"{}/jwks\"", server.uri());
    let toml = format!(
        "{}\n[lookups.jwks]\nmin_refetch_secs = {min_refetch_secs}\n",
        toml_with(&keys)
    );
    let config = load(&toml).expect("valid config");
    assert!(
        config
            .lookups
            .jwks
            .urls
            .contains(&format!("{}/jwks", server.uri())),
        "the issuer's JWKS URL is added to [lookups.jwks]"
    );
    let lookups = Arc::new(Lookups::from_config(&config.lookups).expect("lookups"));
    Authenticator::new(&config, lookups).expect("authenticator")
}

async fn jwks_calls(server: &MockServer) -> usize {
    server.received_requests().await.map_or(0, |r| r.len())
}

#[tokio::test]
async fn keys_from_a_jwks_are_fetched_once_and_cached() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/jwks"))
        .respond_with(jwks(&[("rsa-a", "a1"), ("ec-p256", "e1")]))
        .mount(&server)
        .await;
    let auth = jwks_authenticator(&server, 30).await;
    let rsa = sign(json!({"alg": "RS256", "kid": "a1"}), &claims(), "rsa-a");
    let ec = sign(json!({"alg": "ES256", "kid": "e1"}), &claims(), "ec-p256");
    assert!(auth.bearer(&rsa, false).await.is_ok());
    assert!(auth.bearer(&ec, false).await.is_ok());
    let no_kid = sign(rs256(), &with(claims(), "jti", json!("x")), "rsa-a");
    assert!(
        auth.bearer(&no_kid, false).await.is_ok(),
        "no kid: any fitting key"
    );
    assert_eq!(jwks_calls(&server).await, 1);
    // A key of the set used for the wrong algorithm: refused before verifying.
    let confused = sign(json!({"alg": "ES256", "kid": "a1"}), &claims(), "ec-p256");
    assert!(matches!(
        auth.bearer(&confused, false).await,
        Err(AuthError::AlgorithmRefused { .. })
    ));
    // A kid the set lacks: one refetch would be allowed only after min_refetch_secs (30).
    let unknown = sign(json!({"alg": "RS256", "kid": "nope"}), &claims(), "rsa-a");
    match auth.bearer(&unknown, false).await {
        Err(e @ AuthError::UnknownKeyId { .. }) => {
            let text = e.to_string();
            assert!(text.contains("kid nope"), "{text}");
            // no refetch happened, and the text must not claim one (issue 20)
            assert!(!text.contains("after fetching"), "{text}");
            assert!(
                text.contains("as fetched ") && text.contains("min_refetch_secs"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(jwks_calls(&server).await, 1, "rate-limited: no refetch");
}

#[tokio::test]
async fn a_rotated_key_is_found_by_one_refetch() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/jwks"))
        .respond_with(jwks(&[("rsa-a", "2024")]))
        .mount(&server)
        .await;
    let auth = jwks_authenticator(&server, 1).await;
    let old = sign(json!({"alg": "RS256", "kid": "2024"}), &claims(), "rsa-a");
    assert!(auth.bearer(&old, false).await.is_ok());
    let before = jwks_calls(&server).await;
    assert_eq!(before, 1);
    // The issuer rotates to a new key.
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/jwks"))
        .respond_with(jwks(&[("rsa-a", "2024"), ("rsa-b", "2025")]))
        .mount(&server)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let new = sign(json!({"alg": "RS256", "kid": "2025"}), &claims(), "rsa-b");
    assert!(
        auth.bearer(&new, false).await.is_ok(),
        "found after a refetch"
    );
    assert_eq!(jwks_calls(&server).await, 1, "exactly one refetch");
    let made_up = sign(json!({"alg": "RS256", "kid": "2026"}), &claims(), "rsa-b");
    assert!(matches!(
        auth.bearer(&made_up, false).await,
        Err(AuthError::UnknownKeyId { .. })
    ));
    assert_eq!(
        jwks_calls(&server).await,
        1,
        "a second unknown kid soon after: no call"
    );
}

#[tokio::test]
async fn an_unreachable_jwks_is_a_503() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/jwks"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let auth = jwks_authenticator(&server, 30).await;
    let token = sign(json!({"alg": "RS256", "kid": "a1"}), &claims(), "rsa-a");
    let e = auth.bearer(&token, false).await.expect_err("no keys");
    assert!(matches!(e, AuthError::KeysUnavailable { .. }), "{e:?}");
    assert_eq!(e.status(), 503);
    assert_eq!(e.issue_code(), "transient");
}

/// What the middleware's recognition answers is what `bearer` would: the same caller for a
/// verified JWT still cached and for the development token on loopback, nothing for a token never
/// verified, an expired-looking forgery or the development token from elsewhere; and a request
/// authenticated that way is counted as `bearer` counts it.
#[test]
fn recognition_answers_as_bearer_would() {
    let auth = pem_authenticator();
    let token = sign(rs256(), &claims(), "rsa-a");
    assert!(auth.recognized(&token, false).is_none(), "not verified yet");
    let verified = verdict(&auth, &token).expect("valid");
    let known = auth
        .recognized(&format!(" {token} "), false)
        .expect("cached");
    assert_eq!(known.client.id, verified.client.id);
    assert_eq!(known.method, AuthMethod::Jwt);
    assert_eq!(
        format!("{:?}", known.scopes),
        format!("{:?}", verified.scopes)
    );
    auth.note_recognized(&known);
    assert_eq!(auth.stats().cached.get(), 1);
    let forged = format!("{}x", &token[..token.len() - 1]);
    assert!(auth.recognized(&forged, false).is_none());
    let dev = auth.recognized(DEV_TOKEN, true).expect("loopback");
    assert_eq!(dev.method, AuthMethod::DevToken);
    auth.note_recognized(&dev);
    assert_eq!(auth.stats().dev_token.get(), 1);
    assert!(
        auth.recognized(DEV_TOKEN, false).is_none(),
        "not from elsewhere"
    );
}

#[test]
fn the_dev_token_works_on_loopback_only() {
    let auth = pem_authenticator(); // server.listen is 127.0.0.1:8080 by default
    assert_eq!(auth.dev_token(), Some(DEV_TOKEN));
    assert_eq!(
        auth.dev_token_notice(),
        None,
        "not generated: nothing to print"
    );
    let caller = block_on(auth.bearer(DEV_TOKEN, true)).expect("loopback");
    assert_eq!(caller.client.id, "dev");
    assert_eq!(caller.client.kind, ClientKind::Admin);
    assert_eq!(caller.method, AuthMethod::DevToken);
    assert!(caller.scopes.allows("AuditEvent", Permission::Delete));
    assert_eq!(
        block_on(auth.bearer(DEV_TOKEN, false)).expect_err("remote"),
        AuthError::DevTokenNotLocal
    );
    let wrong = block_on(auth.bearer("dev-token-for-the-tests-0123456788", true));
    assert!(matches!(wrong, Err(AuthError::Malformed(_))), "{wrong:?}");

    let lan = toml_with(&pem_keys()).replace(
        "[server]\n",
        "[server]\nlisten = \"10.0.0.5:8080\"\nallow_plain_http = true\n",
    );
    let auth = authenticator(&lan);
    assert_eq!(auth.dev_token(), None);
    let refused = block_on(auth.bearer(DEV_TOKEN, true));
    assert!(
        matches!(refused, Err(AuthError::Malformed(_))),
        "{refused:?}"
    );
}

#[test]
fn a_dev_token_is_generated_when_none_is_set() {
    let config = Config::defaults();
    let auth = Authenticator::new(&config, Arc::new(Lookups::none())).expect("authenticator");
    let token = auth.dev_token().expect("on loopback").to_string();
    assert_eq!(token.len(), 64, "256 bits in hex");
    let notice = auth.dev_token_notice().expect("generated");
    assert!(
        notice.contains(&format!("curl -H \"Authorization: Bearer {token}\"")),
        "{notice}"
    );
    let other = Authenticator::new(&config, Arc::new(Lookups::none())).expect("authenticator");
    assert_ne!(other.dev_token(), Some(token.as_str()));
}

#[test]
fn certificate_subjects_map_to_clients() {
    use rcgen::{CertificateParams, DnType, KeyPair};
    let auth = pem_authenticator();
    let cert = |dn: &[(DnType, &str)]| {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        let mut name = rcgen::DistinguishedName::new();
        for (t, v) in dn {
            name.push(t.clone(), *v);
        }
        params.distinguished_name = name;
        let key = KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().to_vec()
    };
    let der = cert(&[
        (DnType::CountryName, "DK"),
        (DnType::OrganizationName, "Haderslev Kommune"),
        (DnType::CommonName, "haderslev-ehr"),
    ]);
    let subject = certificate_subject(&der).expect("readable");
    assert_eq!(subject, "CN=haderslev-ehr,O=Haderslev Kommune,C=DK");
    let caller = auth.certificate(&subject).expect("mapped");
    assert_eq!(caller.client.id, "haderslev-ehr");
    assert_eq!(caller.method, AuthMethod::Certificate);
    assert!(
        caller.scopes.allows("CarePlan", Permission::Delete),
        "the configured scopes"
    );
    assert_eq!(
        auth.certificate_der(&der)
            .map(|c| c.client.id.clone())
            .as_deref(),
        Some("haderslev-ehr")
    );
    assert!(auth
        .certificate("c=DK, o=haderslev kommune, cn=HADERSLEV-EHR")
        .is_some());
    let extra = cert(&[
        (DnType::CountryName, "DK"),
        (DnType::OrganizationName, "Haderslev Kommune"),
        (DnType::OrganizationalUnitName, "IT"),
        (DnType::CommonName, "haderslev-ehr"),
    ]);
    assert!(
        auth.certificate_der(&extra).is_none(),
        "an extra attribute is another subject"
    );
    let other = cert(&[(DnType::CommonName, "haderslev-ehr")]);
    assert!(auth.certificate_der(&other).is_none());
    assert!(auth.certificate_der(b"not a certificate").is_none());
}

#[test]
fn refusals_say_what_to_do_and_never_echo_the_token() {
    let auth = pem_authenticator();
    let token = sign(
        rs256(),
        &with(claims(), "exp", json!(now() - 3600)),
        "rsa-a",
    );
    let e = verdict(&auth, &token).expect_err("expired");
    assert_eq!(e.status(), 401);
    let header = e.www_authenticate();
    assert!(header.starts_with("Bearer realm=\"sektorbro\", error=\"invalid_token\", error_description=\"the token expired at "), "{header}");
    assert!(!header.contains(&token) && !e.to_string().contains(&token));
    assert_eq!(
        AuthError::Missing.www_authenticate(),
        "Bearer realm=\"sektorbro\""
    );
    let quoted = AuthError::WrongIssuer("a\"b\\c\u{e6}".into()).www_authenticate();
    assert!(
        quoted.ends_with("a'b'c? is not one this gateway trusts ([[auth.issuers]])\""),
        "{quoted}"
    );
    assert_eq!(bearer_token("bearer  abc.def.ghi "), Ok("abc.def.ghi"));
    assert!(bearer_token("Basic dXNlcjpwYXNz").is_err());
    assert!(matches!(verdict(&auth, "  "), Err(AuthError::Missing)));
    assert_eq!(auth.stats().refusals("expired"), 1);
}

#[test]
fn config_mistakes_are_explained_at_start() {
    let base = toml_with(&pem_keys());
    let cases: [(String, &str); 8] = [
        (
            base.replace("kind = \"region\"", "kind = \"hospital\""),
            "unknown variant `hospital`",
        ),
        (
            base.replace(
                "scopes = \"system/*.rs\"",
                "scopes = \"system/*.rs patient/*.read launch\"",
            ),
            "patient/*.read launch grant nothing",
        ),
        (
            base.replace("id = \"region-syd\"", "id = \"haderslev-ehr\""),
            "used twice",
        ),
        (
            base.replace("id = \"region-syd\"", "id = \"dev\""),
            "used twice",
        ),
        (
            base.replace(
                "subject = \"6f1c2e0a-region-syd-service-account\"",
                "issuer = \"https://elsewhere.test\"",
            )
            .replacen(&format!("issuer = \"{ISS}\"\nissuer"), "issuer", 1),
            "not among [[auth.issuers]]",
        ),
        (
            base.replace(&format!("base_url = \"{AUD}\""), "base_url = \"\""),
            "set auth.audiences or server.base_url",
        ),
        (
            base.replace(
                "organizations = [\"urn:oid:1.2.752.29.4.19|SE2321000032-1003\"]",
                "organizations = []",
            ),
            "list at least one",
        ),
        (
            base.replace("C=DK\"", "C=DK,XX=1\""),
            "unknown attribute type",
        ),
    ];
    for (toml, says) in cases {
        match load(&toml) {
            Err(e) => assert!(e.to_string().contains(says), "expected {says:?}, got: {e}"),
            Ok(_) => panic!("accepted, expected {says:?}"),
        }
    }
    // Read at build time: key files.
    let missing = toml_with(&format!(r#"public_key_files = ["{KEYS}/absent.pem"]"#));
    let e = Authenticator::new(&load(&missing).expect("valid"), Arc::new(Lookups::none()))
        .err()
        .expect("unreadable");
    assert!(format!("{e:#}").contains("cannot read"), "{e:#}");
    let private = toml_with(&format!(r#"public_key_files = ["{KEYS}/rsa-a.key.pem"]"#));
    let e = Authenticator::new(&load(&private).expect("valid"), Arc::new(Lookups::none()))
        .err()
        .expect("private key");
    assert!(format!("{e:#}").contains("private key"), "{e:#}");
}

#[test]
fn pem_public_keys_and_jwks_agree() {
    for name in ["rsa-a", "ec-p256", "ec-p384"] {
        let key = public(name);
        let alg = match name {
            "rsa-a" => Alg::Rs256,
            "ec-p256" => Alg::Es256,
            _ => Alg::Es384,
        };
        assert_eq!(
            PublicKey::from_jwk(&key.to_jwk("k"), alg).as_ref(),
            Ok(&key)
        );
    }
    let e = PublicKey::from_jwk(&public("rsa-a").to_jwk("k"), Alg::Es256).expect_err("kind");
    assert!(e.contains("EC P-256"), "{e}");
}

/// What a handler of the test server below sees: the connection's certificate subject.
#[derive(Clone)]
struct ConnectionSubject(String);

async fn who(req: actix_web::HttpRequest) -> String {
    req.conn_data::<ConnectionSubject>()
        .map_or_else(|| "no certificate".to_string(), |s| s.0.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_certificate_of_a_connection_is_read_in_on_connect() {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.to_string_lossy().into_owned()
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().expect("key");
    let ca_pem = ca.self_signed(&ca_key).expect("CA").pem();
    let issuer = Issuer::from_params(&ca, &ca_key);
    let issue = |sans: Vec<String>, dn: &[(DnType, &str)], eku| {
        let mut p = CertificateParams::new(sans).expect("params");
        p.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in dn {
            p.distinguished_name.push(t.clone(), *v);
        }
        p.extended_key_usages = vec![eku];
        let key = KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = issue(
        vec!["localhost".into()],
        &[(DnType::CommonName, "gateway")],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = issue(
        Vec::new(),
        &[
            (DnType::CountryName, "DK"),
            (DnType::OrganizationName, "Haderslev Kommune"),
            (DnType::CommonName, "haderslev-ehr"),
        ],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let tls = crate::app::tls_config(&crate::config::ServerTlsConfig {
        cert_file: file("server.pem", &server_cert),
        key_file: file("server-key.pem", &server_key),
        client_ca_file: file("ca.pem", &ca_pem),
    })
    .expect("TLS config")
    .expect("TLS on");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = actix_web::HttpServer::new(|| {
        actix_web::App::new().route("/", actix_web::web::get().to(who))
    })
    .on_connect(|connection, extensions| {
        if let Some(subject) = connection_certificate_subject(connection) {
            extensions.insert(ConnectionSubject(subject));
        }
    })
    .workers(1)
    .disable_signals()
    .listen_rustls_0_23(listener, tls)
    .expect("listen")
    .run();
    let handle = server.handle();
    tokio::spawn(server);

    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA"))
        .identity(
            reqwest::Identity::from_pem(format!("{client_cert}{client_key}").as_bytes())
                .expect("identity"),
        )
        .resolve("localhost", addr)
        .build()
        .expect("client");
    let url = format!("https://localhost:{}/", addr.port());
    let seen = client.get(&url).send().await.expect("request");
    let subject = seen.text().await.expect("body");
    assert_eq!(subject, "CN=haderslev-ehr,O=Haderslev Kommune,C=DK");
    let auth = pem_authenticator();
    assert_eq!(
        auth.certificate(&subject)
            .map(|c| c.client.id.clone())
            .as_deref(),
        Some("haderslev-ehr")
    );
    handle.stop(false).await;
}
