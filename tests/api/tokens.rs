//! Signed bearer tokens for the tests, and a gateway configured with an issuer and one client of
//! each kind (the keys are the test-only ones in `tests/keys/`).

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use sektorbro::auth::ClientKind;
use sektorbro::config::{ClientConfig, Config, IssuerConfig};
use serde_json::{json, Value};

pub const ISS: &str = "https://login.sektorbro.test/realms/sektor";
pub const AUD: &str = "https://gw.sektorbro.test/fhir";
pub const SOR: &str = "urn:oid:1.2.208.176.1.1";
pub const KOLDING: &str = "urn:oid:1.2.208.176.1.1|383011000016003";
pub const HADERSLEV: &str = "urn:oid:1.2.208.176.1.1|425911000016005";
/// The receiver of `fixtures/discharge/kolding-discharged-home.json`.
pub const REGION: &str = "urn:oid:1.2.208.176.1.1|328791000016006";
pub const OTHER_REGION: &str = "urn:oid:1.2.208.176.1.1|264881000016009";

fn key_path(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn client(id: &str, kind: ClientKind, orgs: &[&str], scopes: &str) -> ClientConfig {
    ClientConfig {
        id: id.into(),
        kind,
        organizations: orgs.iter().map(|o| o.to_string()).collect(),
        scopes: scopes.into(),
        issuer: ISS.into(),
        subject: String::new(),
        certificate_subject: String::new(),
    }
}

/// The issuer and clients: municipalities `kolding` and `haderslev`, regions `region-syd`
/// (the discharge fixture's receiver) and `region-nord`, a vendor `narrow` with read access to
/// Where the issuer's clients get their tokens (published, never called by the gateway).
pub const TOKEN_ENDPOINT: &str = "https://login.example.dk/token";

/// CarePlans only, and an administrator `ops`.
pub fn tenants(c: &mut Config) {
    c.auth.audiences = vec![AUD.into()];
    c.auth.issuers = vec![IssuerConfig {
        iss: ISS.into(),
        jwks_url: String::new(),
        public_key_files: vec![key_path("ec-p256.pub.pem")],
        algorithms: vec!["ES256".into()],
        token_endpoint: TOKEN_ENDPOINT.into(),
        authorize_endpoint: "https://login.example.dk/authorize".into(),
    }];
    c.auth.clients = vec![
        client(
            "kolding",
            ClientKind::Municipality,
            &[KOLDING],
            "system/*.cruds",
        ),
        client(
            "haderslev",
            ClientKind::Municipality,
            &[HADERSLEV],
            "system/*.cruds",
        ),
        client("region-syd", ClientKind::Region, &[REGION], "system/*.rs"),
        client(
            "region-nord",
            ClientKind::Region,
            &[OTHER_REGION],
            "system/*.rs",
        ),
        client(
            "narrow",
            ClientKind::Vendor,
            &[KOLDING],
            "system/CarePlan.rs",
        ),
        client("ops", ClientKind::Admin, &[], "system/*.*"),
    ];
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn pkcs8(name: &str) -> Vec<u8> {
    let pem = std::fs::read_to_string(key_path(name)).expect("test key");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM base64")
}

/// A compact JWS of `claims` with `header`, signed ES256 with `key` (a PKCS#8 PEM in tests/keys).
pub fn sign_with(header: &Value, claims: &Value, key: &str) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let rng = SystemRandom::new();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8(key), &rng)
        .expect("P-256 key");
    let sig = pair.sign(&rng, input.as_bytes()).expect("sign");
    format!("{input}.{}", b64(sig.as_ref()))
}

/// A compact ES256 JWS of `claims` signed with a P-256 key made up on the spot: what an attacker
/// without the issuer's key can produce.
pub fn forged(claims: &Value) -> String {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .expect("P-256 key");
    let input = format!(
        "{}.{}",
        b64(json!({"alg": "ES256", "typ": "JWT"}).to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = pair.sign(&rng, input.as_bytes()).expect("sign");
    format!("{input}.{}", b64(sig.as_ref()))
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims of a valid token for client `sub` with `scope`.
pub fn claims(sub: &str, scope: &str) -> Value {
    json!({
        "iss": ISS,
        "sub": sub,
        "aud": AUD,
        "iat": now(),
        "exp": now() + 300,
        "scope": scope,
        "jti": uuid::Uuid::new_v4().to_string(),
    })
}

/// A valid ES256 token for client `sub` asking for `scope`.
pub fn token(sub: &str, scope: &str) -> String {
    sign_with(
        &json!({"alg": "ES256", "typ": "JWT"}),
        &claims(sub, scope),
        "ec-p256.key.pem",
    )
}
