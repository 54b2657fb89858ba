//! Just enough DER to read public keys (SubjectPublicKeyInfo, PKCS#1 RSAPublicKey) and the
//! subject and key of an X.509 certificate. Every read is bounds-checked and answers `None` on
//! anything unexpected; nothing here decides trust (rustls has verified a client certificate's
//! chain before the gateway reads its subject; key files are the operator's).
//!
//! Why not a crate: x509-parser would add a dozen crates (nom, asn1-rs, der-parser, oid-registry,
//! time…) for three fixed shapes.

pub(crate) const SEQUENCE: u8 = 0x30;
pub(crate) const SET: u8 = 0x31;
pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const BIT_STRING: u8 = 0x03;
pub(crate) const OID: u8 = 0x06;
/// `[0] EXPLICIT` (a certificate's version).
const CONTEXT_0: u8 = 0xA0;

/// Reads consecutive DER elements from a byte slice.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next element's tag and content.
    pub(crate) fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.rest.split_first()?;
        if tag & 0x1f == 0x1f {
            return None; // multi-byte tag numbers: nothing we read uses them
        }
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return None; // indefinite length (not DER) or absurdly long
            }
            let bytes = rest.get(..n)?;
            rest = rest.get(n..)?;
            bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
        };
        let content = rest.get(..len)?;
        self.rest = rest.get(len..)?;
        Some((tag, content))
    }

    /// The next element's content if it has `tag`.
    pub(crate) fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.next()? {
            (t, content) if t == tag => Some(content),
            _ => None,
        }
    }
}

/// The content of the single element `tag` that makes up all of `bytes`.
pub(crate) fn only(bytes: &[u8], tag: u8) -> Option<&[u8]> {
    let mut r = Reader::new(bytes);
    let content = r.expect(tag)?;
    r.is_empty().then_some(content)
}

/// A SubjectPublicKeyInfo's algorithm OID, its parameters' element (tag, content) if any, and
/// the public key bits.
pub(crate) struct Spki<'a> {
    pub algorithm: &'a [u8],
    pub parameters: Option<(u8, &'a [u8])>,
    pub key: &'a [u8],
}

/// Reads a SubjectPublicKeyInfo from its SEQUENCE's content.
pub(crate) fn spki(content: &[u8]) -> Option<Spki<'_>> {
    let mut r = Reader::new(content);
    let mut alg = Reader::new(r.expect(SEQUENCE)?);
    let algorithm = alg.expect(OID)?;
    let parameters = alg.next();
    let bits = r.expect(BIT_STRING)?;
    let (&unused, key) = bits.split_first()?;
    (unused == 0 && r.is_empty()).then_some(Spki {
        algorithm,
        parameters,
        key,
    })
}

/// The modulus and exponent of a PKCS#1 RSAPublicKey (all of `der`), without leading zeros.
pub(crate) fn rsa_public_key(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut r = Reader::new(only(der, SEQUENCE)?);
    let n = unsigned(r.expect(INTEGER)?);
    let e = unsigned(r.expect(INTEGER)?);
    r.is_empty().then_some((n, e))
}

/// A positive INTEGER's magnitude: its content without leading zero bytes.
fn unsigned(int: &[u8]) -> &[u8] {
    let start = int.iter().position(|b| *b != 0).unwrap_or(int.len());
    &int[start..]
}

/// A certificate's subject Name (the SEQUENCE's content) and SubjectPublicKeyInfo content.
pub(crate) struct CertificateParts<'a> {
    pub subject: &'a [u8],
    pub spki: &'a [u8],
}

/// Reads the subject and key of an X.509 certificate (all of `der`).
pub(crate) fn certificate(der: &[u8]) -> Option<CertificateParts<'_>> {
    let mut cert = Reader::new(only(der, SEQUENCE)?);
    let mut tbs = Reader::new(cert.expect(SEQUENCE)?);
    if tbs.peek_tag() == Some(CONTEXT_0) {
        tbs.next()?; // version
    }
    tbs.expect(INTEGER)?; // serialNumber
    tbs.expect(SEQUENCE)?; // signature algorithm
    tbs.expect(SEQUENCE)?; // issuer
    tbs.expect(SEQUENCE)?; // validity
    let subject = tbs.expect(SEQUENCE)?;
    let spki = tbs.expect(SEQUENCE)?;
    Some(CertificateParts { subject, spki })
}

/// An OBJECT IDENTIFIER's content in dotted form (`2.5.4.3`).
pub(crate) fn oid_string(content: &[u8]) -> Option<String> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    let mut pending = false;
    for &b in content {
        if value > (u64::MAX >> 7) {
            return None;
        }
        value = (value << 7) | u64::from(b & 0x7f);
        pending = b & 0x80 != 0;
        if !pending {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    if pending || arcs.is_empty() {
        return None;
    }
    Some(
        arcs.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// A directory string's text, by its ASN.1 string type; `None` for other types.
pub(crate) fn directory_string(tag: u8, content: &[u8]) -> Option<String> {
    match tag {
        // UTF8String
        0x0C => String::from_utf8(content.to_vec()).ok(),
        // NumericString, PrintableString, IA5String, VisibleString
        0x12 | 0x13 | 0x16 | 0x1A => content
            .is_ascii()
            .then(|| String::from_utf8_lossy(content).into_owned()),
        // TeletexString: in practice Latin-1
        0x14 => Some(content.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UCS-2 big-endian
        0x1E => {
            if content.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = content
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        // UniversalString: UCS-4 big-endian
        0x1C => {
            if content.len() % 4 != 0 {
                return None;
            }
            content
                .chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_in_dotted_form() {
        assert_eq!(oid_string(&[0x55, 0x04, 0x03]).as_deref(), Some("2.5.4.3"));
        let rsa = [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];
        assert_eq!(oid_string(&rsa).as_deref(), Some("1.2.840.113549.1.1.1"));
        assert_eq!(oid_string(&[0x86]), None);
    }

    #[test]
    fn lengths_past_the_end_are_refused() {
        assert_eq!(Reader::new(&[0x30, 0x05, 0x01]).next(), None);
        assert_eq!(
            Reader::new(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).next(),
            None
        );
        assert_eq!(Reader::new(&[0x30, 0x80]).next(), None);
        assert_eq!(
            Reader::new(&[0x30, 0x81, 0x01, 0x05]).next(),
            Some((0x30, &[0x05][..]))
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = certificate(&bytes);
            let _ = rsa_public_key(&bytes);
            let _ = spki(&bytes);
            let _ = oid_string(&bytes);
            let _ = directory_string(0x1E, &bytes);
            let _ = directory_string(0x1C, &bytes);
        }
    }
}
