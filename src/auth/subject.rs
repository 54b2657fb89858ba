//! Certificate subjects: the RFC 4514 strings operators write in `certificate_subject`, and the
//! subject Name of a client certificate, brought to one comparable form.
//!
//! Normalization (documented in config/default.toml): a subject is the *set* of its attributes.
//! The order of RDNs does not matter (RFC 4514 writes the last RDN first, OpenSSL's one-line
//! form the first; operators copy either), nor does `,` versus `+` between them. Attribute names
//! are case-insensitive and may be dotted OIDs (`2.5.4.3` = `CN`). Values are compared after
//! RFC 4514 unescaping, with surrounding spaces dropped, inner runs of spaces collapsed and case
//! folded (X.520's caseIgnoreMatch, which CN, O, OU, C, L, ST and serialNumber use). Every
//! attribute must match and none may be extra: a certificate with an added OU is another subject.

use std::fmt;

use der::asn1::Any;
use der::{Decode as _, Tag, Tagged as _};
use x509_cert::name::Name;
use x509_cert::Certificate;

/// Short names for the attribute types seen in client certificates, and their OIDs.
const NAMES: &[(&str, &str)] = &[
    ("CN", "2.5.4.3"),
    ("SN", "2.5.4.4"),
    ("SERIALNUMBER", "2.5.4.5"),
    ("C", "2.5.4.6"),
    ("L", "2.5.4.7"),
    ("ST", "2.5.4.8"),
    ("STREET", "2.5.4.9"),
    ("O", "2.5.4.10"),
    ("OU", "2.5.4.11"),
    ("TITLE", "2.5.4.12"),
    ("GIVENNAME", "2.5.4.42"),
    ("ORGANIZATIONIDENTIFIER", "2.5.4.97"),
    ("DC", "0.9.2342.19200300.100.1.25"),
    ("UID", "0.9.2342.19200300.100.1.1"),
    ("EMAILADDRESS", "1.2.840.113549.1.9.1"),
];

/// Other spellings of the names above.
const ALIASES: &[(&str, &str)] = &[
    ("E", "EMAILADDRESS"),
    ("S", "ST"),
    ("GN", "GIVENNAME"),
    ("T", "TITLE"),
];

/// A subject as a comparable set of (attribute type, normalized value).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DistinguishedName {
    /// Sorted; the type is the upper-case short name or the dotted OID.
    attributes: Vec<(String, String)>,
}

impl DistinguishedName {
    /// Parse an RFC 4514 string (`CN=haderslev-ehr,O=Haderslev Kommune,C=DK`); spaces around
    /// `=`, `,` and `+` are allowed.
    pub fn parse(s: &str) -> Result<DistinguishedName, String> {
        let mut attributes = Vec::new();
        let mut chars = s.chars().peekable();
        loop {
            let mut name = String::new();
            loop {
                match chars.next() {
                    Some('=') => break,
                    Some(c @ (',' | '+' | '\\' | '"')) => {
                        return Err(format!("unexpected {c:?} in attribute name {name:?}"))
                    }
                    Some(c) => name.push(c),
                    None => return Err(format!("{:?} has no `=`", name.trim())),
                }
            }
            let kind = attribute_type(name.trim())?;
            let mut bytes = Vec::new();
            let mut ended_by_separator = false;
            // An unescaped `#` first (after spaces) starts RFC 4514's hex form; `\#` is text.
            let mut hex_form = None;
            while let Some(c) = chars.next() {
                if hex_form.is_none() && c != ' ' {
                    hex_form = Some(c == '#');
                }
                match c {
                    ',' | '+' | ';' => {
                        ended_by_separator = true;
                        break;
                    }
                    '\\' => {
                        match chars.next() {
                            Some(h) if h.is_ascii_hexdigit() => {
                                let l = chars.next().filter(char::is_ascii_hexdigit).ok_or_else(|| {
                                format!("{kind}: `\\{h}` must be followed by a second hex digit")
                            })?;
                                let pair = format!("{h}{l}");
                                bytes.push(
                                    u8::from_str_radix(&pair, 16).map_err(|e| e.to_string())?,
                                );
                            }
                            Some(e) => {
                                let mut buf = [0u8; 4];
                                bytes.extend_from_slice(e.encode_utf8(&mut buf).as_bytes());
                            }
                            None => return Err(format!("{kind}: the value ends in a lone `\\`")),
                        }
                    }
                    '"' => {
                        return Err(format!(
                            "{kind}: quoted values are not supported; escape special characters \
                             with `\\` instead"
                        ))
                    }
                    c => {
                        let mut buf = [0u8; 4];
                        bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                }
            }
            let raw = String::from_utf8(bytes)
                .map_err(|_| format!("{kind}: the escaped value is not UTF-8"))?;
            if hex_form == Some(true) {
                return Err(format!(
                    "{kind}: hex-encoded (#…) values are not supported; write the text"
                ));
            }
            let value = normalize_value(&raw);
            if value.is_empty() {
                return Err(format!("{kind} has an empty value"));
            }
            attributes.push((kind, value));
            if !ended_by_separator {
                break;
            }
        }
        attributes.sort();
        Ok(DistinguishedName { attributes })
    }

    /// A certificate's subject, from its DER (`None`: not a certificate we can read, or an
    /// attribute value that is not a text string).
    pub fn from_certificate(cert_der: &[u8]) -> Option<DistinguishedName> {
        let rdns = subject_attributes(cert_der)?;
        let mut attributes: Vec<(String, String)> = rdns
            .into_iter()
            .flatten()
            .map(|(oid, value)| (short_name(&oid), normalize_value(&value)))
            .collect();
        if attributes.is_empty() {
            return None;
        }
        attributes.sort();
        Some(DistinguishedName { attributes })
    }
}

impl fmt::Display for DistinguishedName {
    /// The normalized attributes, comma-separated (sorted, so not RFC 4514's order).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.attributes.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={}", escape(v))?;
        }
        Ok(())
    }
}

/// A certificate's subject as RFC 4514 writes it (last RDN first), for logs and messages, e.g.
/// `CN=haderslev-ehr,O=Haderslev Kommune,C=DK`. `None` when the DER cannot be read.
pub fn certificate_subject(cert_der: &[u8]) -> Option<String> {
    let rdns = subject_attributes(cert_der)?;
    let text: Vec<String> = rdns
        .iter()
        .rev()
        .map(|rdn| {
            rdn.iter()
                .map(|(oid, v)| format!("{}={}", short_name(oid), escape(v)))
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    Some(text.join(","))
}

/// The subject of the client certificate of an HTTPS connection (RFC 4514, as
/// [`certificate_subject`]), for `HttpServer::on_connect`, which hands each new connection over as
/// `&dyn Any`. `None` for plain HTTP and for connections without a client certificate. rustls
/// gives peer certificates only once its client verifier (`server.tls.client_ca_file`) has
/// accepted the chain; the first is the client's own.
pub fn connection_certificate_subject(connection: &dyn std::any::Any) -> Option<String> {
    use actix_tls::accept::rustls_0_23::TlsStream;
    let tls = connection.downcast_ref::<TlsStream<actix_web::rt::net::TcpStream>>()?;
    let (_, session) = tls.get_ref();
    certificate_subject(session.peer_certificates()?.first()?.as_ref())
}

/// A certificate's subject: its RDNs in certificate order, each a list of (dotted OID, text).
/// `None` when the DER is not a certificate (x509-cert reads it; nothing here decides trust:
/// rustls has verified a client certificate's chain before its subject is read) or a value is
/// not a text string.
fn subject_attributes(cert_der: &[u8]) -> Option<Vec<Vec<(String, String)>>> {
    let cert = Certificate::from_der(cert_der).ok()?;
    name_attributes(&cert.tbs_certificate.subject)
}

fn name_attributes(name: &Name) -> Option<Vec<Vec<(String, String)>>> {
    name.0
        .iter()
        .map(|rdn| {
            rdn.0
                .iter()
                .map(|atv| Some((atv.oid.to_string(), directory_string(&atv.value)?)))
                .collect()
        })
        .collect()
}

/// A directory string's text, by its ASN.1 string type; `None` for other types. As lenient as
/// certificates in use need: PrintableString and IA5String are read as any ASCII (issuers put `@`
/// and `_` in PrintableStrings), TeletexString as Latin-1.
fn directory_string(value: &Any) -> Option<String> {
    let bytes = value.value();
    match value.tag() {
        Tag::Utf8String => String::from_utf8(bytes.to_vec()).ok(),
        Tag::NumericString | Tag::PrintableString | Tag::Ia5String | Tag::VisibleString => bytes
            .is_ascii()
            .then(|| String::from_utf8_lossy(bytes).into_owned()),
        Tag::TeletexString => Some(bytes.iter().map(|&b| char::from(b)).collect()),
        // UCS-2 big-endian
        Tag::BmpString => {
            if !bytes.len().is_multiple_of(2) {
                return None;
            }
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// The canonical name of an attribute type written in a config: upper-case short name, or the
/// dotted OID for types without one.
fn attribute_type(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("an attribute has no name".into());
    }
    if name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Ok(short_name(name));
    }
    let upper = name.to_ascii_uppercase();
    let upper = ALIASES
        .iter()
        .find(|(alias, _)| *alias == upper)
        .map_or(upper.as_str(), |(_, n)| n)
        .to_string();
    if NAMES.iter().any(|(n, _)| *n == upper) {
        Ok(upper)
    } else {
        Err(format!(
            "unknown attribute type {name:?}: use one of {} or a dotted OID",
            NAMES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ))
    }
}

fn short_name(oid: &str) -> String {
    NAMES
        .iter()
        .find(|(_, o)| *o == oid)
        .map_or_else(|| oid.to_string(), |(n, _)| n.to_string())
}

fn normalize_value(v: &str) -> String {
    v.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// RFC 4514 escaping of a value.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if c == '\0' {
            out.push_str("\\00");
            continue;
        }
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dn(s: &str) -> DistinguishedName {
        DistinguishedName::parse(s).expect(s)
    }

    #[test]
    fn order_spacing_and_case_do_not_matter() {
        let a = dn("CN=haderslev-ehr,O=Haderslev Kommune,C=DK");
        assert_eq!(a, dn("c = dk, o = HADERSLEV  kommune , cn=haderslev-ehr"));
        assert_eq!(
            a,
            dn("2.5.4.6=DK+2.5.4.10=Haderslev Kommune+2.5.4.3=haderslev-ehr")
        );
        assert_ne!(a, dn("CN=haderslev-ehr,O=Haderslev Kommune"));
        assert_ne!(a, dn("CN=haderslev-ehr,O=Haderslev Kommune,C=DK,OU=IT"));
        assert_ne!(a, dn("CN=Haderslev Kommune,O=haderslev-ehr,C=DK"));
    }

    #[test]
    fn escapes_are_undone() {
        let a = dn(r"CN=Smith\, John,O=A\2bB");
        assert_eq!(
            a.attributes,
            vec![
                ("CN".to_string(), "smith, john".to_string()),
                ("O".to_string(), "a+b".to_string())
            ]
        );
        assert_eq!(a.to_string(), r"CN=smith\, john,O=a\+b");
        // An escaped `#` is text, not RFC 4514's hex form.
        let hash = dn(r"CN=\#1,O=\232");
        assert_eq!(hash.to_string(), r"CN=\#1,O=\#2");
        assert_eq!(DistinguishedName::parse(&hash.to_string()), Ok(hash));
    }

    #[test]
    fn bad_subjects_are_explained() {
        for (s, says) in [
            ("CN", "no `=`"),
            ("CN=", "empty value"),
            ("CN=a,", "has no `=`"),
            ("XX=a", "unknown attribute type"),
            ("CN=#0403", "hex-encoded"),
            ("CN= #0403", "hex-encoded"),
            ("CN=\"a\"", "quoted"),
            ("CN=a\\", "lone"),
        ] {
            let e = DistinguishedName::parse(s).expect_err(s);
            assert!(e.contains(says), "{s}: {e}");
        }
    }

    /// A certificate with `dn` as its subject (rcgen writes each attribute as its own RDN).
    fn certificate(dn: &[(rcgen::DnType, rcgen::DnValue)]) -> Vec<u8> {
        use std::sync::OnceLock;
        static KEY: OnceLock<rcgen::KeyPair> = OnceLock::new();
        let key = KEY.get_or_init(|| rcgen::KeyPair::generate().expect("key"));
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        let mut name = rcgen::DistinguishedName::new();
        for (t, v) in dn {
            name.push(t.clone(), v.clone());
        }
        params.distinguished_name = name;
        params.self_signed(key).expect("cert").der().to_vec()
    }

    #[test]
    fn every_text_string_type_of_a_certificate_is_read() {
        use rcgen::{DnType, DnValue};
        let der = certificate(&[
            (
                DnType::CountryName,
                DnValue::PrintableString("DK".try_into().expect("printable")),
            ),
            (
                DnType::OrganizationName,
                DnValue::TeletexString("Aeroe Kommune".try_into().expect("teletex")),
            ),
            (
                DnType::OrganizationalUnitName,
                DnValue::BmpString("Sønderborg IT".try_into().expect("bmp")),
            ),
            (
                DnType::CustomDnType(vec![1, 2, 840, 113_549, 1, 9, 1]),
                DnValue::Ia5String("it@example.dk".try_into().expect("ia5")),
            ),
            (
                DnType::CommonName,
                DnValue::Utf8String("Smith, John+\"Jr\" ".into()),
            ),
        ]);
        assert_eq!(
            certificate_subject(&der).as_deref(),
            Some(
                r#"CN=Smith\, John\+\"Jr\"\ ,EMAILADDRESS=it@example.dk,OU=Sønderborg IT,O=Aeroe Kommune,C=DK"#
            )
        );
        let read = DistinguishedName::from_certificate(&der).expect("readable");
        assert_eq!(
            read,
            dn(r#"c=dk,o=AEROE KOMMUNE,ou=sønderborg it,e=IT@example.dk,cn=smith\, john\+\"jr\""#)
        );
        // A certificate is not read from what only starts like one.
        assert_eq!(
            DistinguishedName::from_certificate(&der[..der.len() - 1]),
            None
        );
        assert_eq!(certificate_subject(b"not a certificate"), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_are_no_certificate(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            proptest::prop_assert_eq!(DistinguishedName::from_certificate(&bytes), None);
            proptest::prop_assert_eq!(certificate_subject(&bytes), None);
        }

        /// What `Display` writes parses back to the same subject.
        #[test]
        fn written_subjects_parse_back(text in r#"((CN|o|OU|c|2\.5\.4\.5|0\.9\.2342\.19200300\.100\.1\.25|1\.2\.3) ?= ?([ a-zA-Zæøå#"+,;<>=\\\n\t\u{0}]|\\[0-9a-fA-F]{2}|\\[,+"\\;<> #=]){1,12}[,+;]){1,4}"#) {
            let Ok(dn) = DistinguishedName::parse(text.trim_end_matches([',', '+', ';'])) else {
                return Ok(());
            };
            proptest::prop_assert_eq!(DistinguishedName::parse(&dn.to_string()), Ok(dn.clone()), "{}", dn);
        }

        /// A certificate's subject as logged names the subject it is compared as.
        #[test]
        fn certificate_subjects_read_as_written(values in proptest::collection::vec(r#"[ a-zA-Zæøå#"+,;<>=\\]{1,12}"#, 1..4)) {
            let types = [rcgen::DnType::CommonName, rcgen::DnType::OrganizationName, rcgen::DnType::LocalityName];
            let dn: Vec<_> = types.iter().zip(&values).map(|(t, v)| (t.clone(), rcgen::DnValue::Utf8String(v.clone()))).collect();
            let der = certificate(&dn);
            let compared = DistinguishedName::from_certificate(&der).expect("readable");
            let logged = certificate_subject(&der).expect("readable");
            if values.iter().all(|v| !v.trim().is_empty()) {
                proptest::prop_assert_eq!(DistinguishedName::parse(&logged), Ok(compared), "{}", logged);
            }
        }
    }
}
