//! The fuzz targets' entry points, one function per parser that sees client bytes, shared by the
//! cargo-fuzz targets beside this file (nightly, coverage-guided) and by the stable driver
//! `tests/fuzz_stable.rs` (`scripts/fuzz-stable.sh TARGET SECONDS`), which include this file.
//! Each must not panic on any input, and checks what can be checked without a second opinion:
//! two readings of the same bytes that must agree.

#![allow(dead_code)] // each includer uses a subset

use std::sync::OnceLock;

use base64::Engine as _;
use serde_json::Value;

/// JSON bodies (`fhir_core::fhir::json`): the strict parse agrees with serde_json except for
/// duplicate keys, and the byte scan for escaped control characters agrees with the walk over
/// the parsed value.
pub fn json_body(data: &[u8]) {
    use fhir_core::fhir::json;
    let plain = serde_json::from_slice::<Value>(data);
    let strict = json::parse_value(data);
    match (&strict, &plain) {
        (Ok(strict), Ok(plain)) => assert_eq!(strict, plain),
        (Ok(_), Err(e)) => panic!("the strict parse accepted what serde_json refuses: {e}"),
        (Err(e), Ok(_)) => {
            assert!(e.to_string().contains("appears twice"), "{e}");
        }
        (Err(_), Err(_)) => {}
    }
    // (with a key twice, serde_json keeps only the last value: compare where nothing is lost)
    if let Ok(v) = &strict {
        let scanned = json::escapes_control_character(data);
        let found = !json::control_character_locations(v, "").is_empty();
        assert_eq!(scanned, found, "scan and walk disagree");
    }
}

/// Search query strings: decoded as the gateway decodes them, then parsed as a search on a few
/// types (the parser must answer, never panic).
pub fn search_query(data: &[u8]) {
    use fhir_core::fhir::search::{parse_search, ParseOptions};
    use fhir_core::fhir::search_params::SearchParamRegistry;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(text) else {
        return;
    };
    let registry = SearchParamRegistry::embedded();
    use fhir_core::fhir::ResourceType;
    for rtype in ["Patient", "Observation", "CarePlan", "AuditEvent"] {
        let rtype = ResourceType::parse(rtype).expect("a served type");
        for lenient in [false, true] {
            let opts = ParseOptions {
                default_count: 20,
                max_count: 100,
                lenient,
                caps: Default::default(),
            };
            let _ = parse_search(registry, rtype, &pairs, opts);
        }
    }
}

/// Narrative XHTML: the bytes as a whole `div`, and inside one. Whatever is accepted holds no
/// raw markup of the refused kinds (outside an attribute value, where XML forbids a raw `<`).
pub fn narrative(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let wrapped = format!(r#"<div xmlns="http://www.w3.org/1999/xhtml">{text}</div>"#);
    for doc in [text, wrapped.as_str()] {
        if fhir_core::validation::xhtml::check(doc).is_ok() {
            let lower = doc.to_ascii_lowercase();
            for refused in [
                "<script",
                "<svg",
                "<iframe",
                "<object",
                "<embed",
                "<style",
                "<form",
                "<math",
                "<![cdata[",
                "<!doctype",
                "<!entity",
            ] {
                assert!(!lower.contains(refused), "accepted {refused}: {doc:?}");
            }
        }
    }
}

struct Jwt {
    runtime: tokio::runtime::Runtime,
    auth: sektorbro::auth::Authenticator,
    key: ring::signature::EcdsaKeyPair,
}

fn jwt_setup() -> &'static Jwt {
    static J: OnceLock<Jwt> = OnceLock::new();
    J.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("sektorbro-fuzz-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let pem = dir.join("ec-p256.pub.pem");
        std::fs::write(&pem, include_str!("../../tests/keys/ec-p256.pub.pem")).expect("key");
        let toml = format!(
            r#"
[server]
base_url = "https://gw.test/fhir"
[[auth.issuers]]
iss = "https://issuer.test"
public_key_files = ["{}"]
[[auth.clients]]
id = "fuzz"
kind = "municipality"
organizations = ["urn:oid:1.2.208.176.1.1|123456789012345"]
scopes = "system/*.rs"
issuer = "https://issuer.test"
"#,
            pem.display()
        );
        let file = dir.join("c.toml");
        std::fs::write(&file, toml).expect("config");
        let config =
            sektorbro::config::Config::load_with_env(Some(&file), |_| None).expect("config");
        let auth = sektorbro::auth::Authenticator::new(
            &config,
            std::sync::Arc::new(sektorbro::lookup::Lookups::none()),
        )
        .expect("authenticator");
        let der = pem_der(include_str!("../../tests/keys/ec-p256.key.pem"));
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &der,
            &ring::rand::SystemRandom::new(),
        )
        .expect("EC key");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Jwt { runtime, auth, key }
    })
}

fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM body")
}

/// JWT headers and payloads: the bytes as a bearer token, and split at the first 0xFF into a
/// header and a payload that are base64url-encoded and signed with the issuer's real key, so the
/// claim checks behind the signature are reached too. Any verdict is fine; a panic is not.
pub fn jwt(data: &[u8]) {
    let j = jwt_setup();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = j.runtime.block_on(j.auth.bearer(text, false));
    }
    let (header, payload) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&br#"{"alg":"ES256"}"#[..], data),
    };
    // `"exp":0` stands for "five minutes from now", so seeds stay valid and reach the checks
    // after the expiry (audience, client, scopes)
    let payload = match find(payload, br#""exp":0"#) {
        Some(i) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let mut p = payload[..i].to_vec();
            p.extend_from_slice(format!(r#""exp":{}"#, now + 300).as_bytes());
            p.extend_from_slice(&payload[i + 7..]);
            p
        }
        None => payload.to_vec(),
    };
    let input = format!("{}.{}", b64.encode(header), b64.encode(&payload));
    let rng = ring::rand::SystemRandom::new();
    let Ok(sig) = j.key.sign(&rng, input.as_bytes()) else {
        return;
    };
    let token = format!("{input}.{}", b64.encode(sig.as_ref()));
    let _ = j.runtime.block_on(j.auth.bearer(&token, false));
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Certificate subjects: any bytes as an X.509 certificate (DER), and as an RFC 4514 subject
/// when they are UTF-8. What is read must agree with itself: a parsed RFC 4514 subject, written
/// back, parses to the same subject; a certificate subject that can be compared can be logged,
/// and that text, when it parses, names the same subject.
pub fn cert_subject(data: &[u8]) {
    use sektorbro::auth::{certificate_subject, DistinguishedName};
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(dn) = DistinguishedName::parse(text) {
            let again = DistinguishedName::parse(&dn.to_string());
            assert_eq!(again.as_ref(), Ok(&dn), "{text:?} → {dn}");
        }
    }
    let compared = DistinguishedName::from_certificate(data);
    let logged = certificate_subject(data);
    if let Some(dn) = compared {
        let logged = logged.expect("a comparable subject can be logged");
        if let Ok(parsed) = DistinguishedName::parse(&logged) {
            assert_eq!(parsed, dn, "{logged}");
        }
    }
}
