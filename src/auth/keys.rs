//! Token signing algorithms and issuers' public keys (PEM files, JWKs), verified with ring.
//!
//! There is deliberately no HMAC here: the gateway holds no shared secrets with issuers, so an
//! `HS256` token can never be checked against an RSA or EC public key used as a secret (the
//! "algorithm confusion" attack) — there is no code that could do it. A key is used only for
//! the algorithms of its own type ([`PublicKey::fits`]).

use base64::Engine as _;
use der::asn1::{ObjectIdentifier, UintRef};
use der::{Decode as _, Sequence};
use ring::signature;
use serde_json::Value;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::Certificate;

/// base64url without padding, as JWS and JWK use it (non-canonical encodings are refused).
pub(crate) const B64: base64::engine::GeneralPurpose =
    base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A JWS algorithm the gateway verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Rs256,
    Rs384,
    Es256,
    Es384,
}

impl Alg {
    pub fn parse(s: &str) -> Option<Alg> {
        match s {
            "RS256" => Some(Alg::Rs256),
            "RS384" => Some(Alg::Rs384),
            "ES256" => Some(Alg::Es256),
            "ES384" => Some(Alg::Es384),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
        }
    }

    /// The kind of key it needs, for messages.
    fn key_kind(self) -> &'static str {
        match self {
            Alg::Rs256 | Alg::Rs384 => "an RSA key",
            Alg::Es256 => "an EC P-256 key",
            Alg::Es384 => "an EC P-384 key",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Curve {
    P256,
    P384,
}

/// A public key that can verify token signatures.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum PublicKey {
    /// Modulus and exponent, big-endian, without leading zeros; at least 2048 bits.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// The uncompressed point `04 || x || y`.
    Ec { curve: Curve, point: Vec<u8> },
}

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// PKCS#1 `RSAPublicKey` (RFC 8017 A.1.1), the key inside an RSA SubjectPublicKeyInfo.
#[derive(Sequence)]
struct RsaPublicKey<'a> {
    modulus: UintRef<'a>,
    public_exponent: UintRef<'a>,
}

impl PublicKey {
    /// Whether this key may verify `alg` signatures.
    pub(crate) fn fits(&self, alg: Alg) -> bool {
        matches!(
            (self, alg),
            (PublicKey::Rsa { .. }, Alg::Rs256 | Alg::Rs384)
                | (
                    PublicKey::Ec {
                        curve: Curve::P256,
                        ..
                    },
                    Alg::Es256
                )
                | (
                    PublicKey::Ec {
                        curve: Curve::P384,
                        ..
                    },
                    Alg::Es384
                )
        )
    }

    /// Whether `sig` is this key's `alg` signature of `message` (false when the key does not fit).
    pub(crate) fn verify(&self, alg: Alg, message: &[u8], sig: &[u8]) -> bool {
        if !self.fits(alg) {
            return false;
        }
        match self {
            PublicKey::Rsa { n, e } => {
                let params = match alg {
                    Alg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    _ => &signature::RSA_PKCS1_2048_8192_SHA384,
                };
                signature::RsaPublicKeyComponents { n, e }
                    .verify(params, message, sig)
                    .is_ok()
            }
            PublicKey::Ec { point, .. } => {
                let params = match alg {
                    Alg::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
                    _ => &signature::ECDSA_P384_SHA384_FIXED,
                };
                signature::UnparsedPublicKey::new(params, point)
                    .verify(message, sig)
                    .is_ok()
            }
        }
    }

    fn rsa(n: &[u8], e: &[u8]) -> Result<PublicKey, String> {
        let n = strip_zeros(n);
        let e = strip_zeros(e);
        if n.len() < 256 {
            return Err(format!(
                "an RSA key of {} bits: at least 2048 are required",
                n.len() * 8
            ));
        }
        if n.len() > 1024 || e.is_empty() || e.len() > 4 {
            return Err("an RSA key with an unusable modulus or exponent".into());
        }
        Ok(PublicKey::Rsa {
            n: n.to_vec(),
            e: e.to_vec(),
        })
    }

    fn ec(curve: Curve, point: Vec<u8>) -> Result<PublicKey, String> {
        let len = match curve {
            Curve::P256 => 65,
            Curve::P384 => 97,
        };
        if point.len() != len || point.first() != Some(&4) {
            return Err("an EC key whose point is not uncompressed on its curve".into());
        }
        Ok(PublicKey::Ec { curve, point })
    }

    /// From a SubjectPublicKeyInfo.
    fn from_spki(spki: &SubjectPublicKeyInfoOwned) -> Result<PublicKey, String> {
        let key = spki
            .subject_public_key
            .as_bytes()
            .ok_or("a public key that is not a whole number of bytes")?;
        let algorithm = spki.algorithm.oid;
        if algorithm == RSA_ENCRYPTION {
            let rsa = RsaPublicKey::from_der(key).map_err(|_| "an unreadable RSA public key")?;
            PublicKey::rsa(rsa.modulus.as_bytes(), rsa.public_exponent.as_bytes())
        } else if algorithm == EC_PUBLIC_KEY {
            let curve = match spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
            {
                Some(P256) => Curve::P256,
                Some(P384) => Curve::P384,
                _ => return Err("an EC key on a curve other than P-256 or P-384".into()),
            };
            PublicKey::ec(curve, key.to_vec())
        } else {
            Err(format!(
                "a key of algorithm {algorithm}: only RSA and EC keys are supported"
            ))
        }
    }

    /// Every key in a PEM file: `PUBLIC KEY` sections and the keys of `CERTIFICATE` sections.
    pub(crate) fn from_pem_file(path: &str) -> Result<Vec<PublicKey>, String> {
        use rustls::pki_types::pem::{self, SectionKind};
        let text = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let mut reader = std::io::BufReader::new(text.as_slice());
        let mut keys = Vec::new();
        loop {
            let section = pem::from_buf(&mut reader)
                .map_err(|e| format!("{path} is not valid PEM: {e:?}"))?;
            let Some((kind, der)) = section else { break };
            let key = match kind {
                SectionKind::PublicKey => SubjectPublicKeyInfoOwned::from_der(&der)
                    .map_err(|_| "an unreadable PUBLIC KEY".to_string())
                    .and_then(|spki| PublicKey::from_spki(&spki)),
                SectionKind::Certificate => Certificate::from_der(&der)
                    .map_err(|_| "an unreadable CERTIFICATE".to_string())
                    .and_then(|c| PublicKey::from_spki(&c.tbs_certificate.subject_public_key_info)),
                SectionKind::PrivateKey
                | SectionKind::RsaPrivateKey
                | SectionKind::EcPrivateKey => {
                    return Err(format!(
                        "{path} holds a private key: configure only the issuer's public key"
                    ))
                }
                _ => continue,
            };
            keys.push(key.map_err(|e| format!("{path}: {e}"))?);
        }
        if keys.is_empty() {
            let hint = if String::from_utf8_lossy(&text).contains("BEGIN RSA PUBLIC KEY") {
                " (PKCS#1 `RSA PUBLIC KEY`: convert with `openssl rsa -RSAPublicKey_in -in FILE \
                 -pubout`)"
            } else {
                ""
            };
            return Err(format!(
                "{path} holds no PUBLIC KEY or CERTIFICATE section{hint}"
            ));
        }
        Ok(keys)
    }

    /// From a JWK, for verifying an `alg` token: its `kty` (and `crv`) must fit `alg`, and its
    /// `use` and `alg`, when present, must allow it.
    pub(crate) fn from_jwk(jwk: &Value, alg: Alg) -> Result<PublicKey, String> {
        let field = |name: &str| jwk.get(name).and_then(Value::as_str);
        if let Some(u) = field("use") {
            if u != "sig" {
                return Err(format!("the key is for use {u:?}, not signatures"));
            }
        }
        if let Some(a) = field("alg") {
            if a != alg.as_str() {
                return Err(format!(
                    "the key is for {a}, the token uses {}",
                    alg.as_str()
                ));
            }
        }
        let bytes = |name: &str| -> Result<Vec<u8>, String> {
            let v = field(name).ok_or_else(|| format!("the key has no {name:?}"))?;
            B64.decode(v)
                .map_err(|_| format!("the key's {name:?} is not base64url"))
        };
        let key = match field("kty") {
            Some("RSA") => PublicKey::rsa(&bytes("n")?, &bytes("e")?)?,
            Some("EC") => {
                let curve = match field("crv") {
                    Some("P-256") => Curve::P256,
                    Some("P-384") => Curve::P384,
                    other => return Err(format!("an EC key on curve {other:?}")),
                };
                let mut point = vec![4u8];
                point.extend(bytes("x")?);
                point.extend(bytes("y")?);
                PublicKey::ec(curve, point)?
            }
            other => return Err(format!("a key of type {other:?}")),
        };
        if !key.fits(alg) {
            return Err(format!(
                "{} needs {}, the key is another kind",
                alg.as_str(),
                alg.key_kind()
            ));
        }
        Ok(key)
    }

    /// The key as a JWK (tests serve it from a mock JWKS).
    #[cfg(test)]
    pub(crate) fn to_jwk(&self, kid: &str) -> Value {
        match self {
            PublicKey::Rsa { n, e } => serde_json::json!({
                "kty": "RSA", "kid": kid, "use": "sig", "n": B64.encode(n), "e": B64.encode(e)
            }),
            PublicKey::Ec { curve, point } => {
                let half = (point.len() - 1) / 2;
                serde_json::json!({
                    "kty": "EC", "kid": kid,
                    "crv": if *curve == Curve::P256 { "P-256" } else { "P-384" },
                    "x": B64.encode(&point[1..1 + half]), "y": B64.encode(&point[1 + half..])
                })
            }
        }
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    &b[start..]
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublicKey::Rsa { n, .. } => write!(f, "RSA-{}", n.len() * 8),
            PublicKey::Ec { curve, .. } => write!(f, "EC-{curve:?}"),
        }
    }
}
