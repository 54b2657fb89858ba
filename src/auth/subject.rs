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

use super::der::{self, Reader};

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
            while let Some(c) = chars.next() {
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
            if raw.trim_start().starts_with('#') {
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
        let parts = der::certificate(cert_der)?;
        let rdns = name_attributes(parts.subject)?;
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
    let parts = der::certificate(cert_der)?;
    let rdns = name_attributes(parts.subject)?;
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

/// A Name's RDNs in certificate order, each a list of (dotted OID, text).
fn name_attributes(name: &[u8]) -> Option<Vec<Vec<(String, String)>>> {
    let mut rdns = Vec::new();
    let mut r = Reader::new(name);
    while !r.is_empty() {
        let mut set = Reader::new(r.expect(der::SET)?);
        let mut rdn = Vec::new();
        while !set.is_empty() {
            let mut atv = Reader::new(set.expect(der::SEQUENCE)?);
            let oid = der::oid_string(atv.expect(der::OID)?)?;
            let (tag, content) = atv.next()?;
            rdn.push((oid, der::directory_string(tag, content)?));
        }
        rdns.push(rdn);
    }
    Some(rdns)
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
    }

    #[test]
    fn bad_subjects_are_explained() {
        for (s, says) in [
            ("CN", "no `=`"),
            ("CN=", "empty value"),
            ("CN=a,", "has no `=`"),
            ("XX=a", "unknown attribute type"),
            ("CN=#0403", "hex-encoded"),
            ("CN=\"a\"", "quoted"),
            ("CN=a\\", "lone"),
        ] {
            let e = DistinguishedName::parse(s).expect_err(s);
            assert!(e.contains(says), "{s}: {e}");
        }
    }
}
