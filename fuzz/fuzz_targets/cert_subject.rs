//! Certificate subjects: any bytes as an X.509 certificate (DER), and as an RFC 4514 subject
//! when they are UTF-8. Nothing may panic, and what is read must agree with itself:
//! - a parsed RFC 4514 subject, written back (`Display`), parses to the same subject;
//! - a certificate whose subject can be compared can also be written for logs, and that text,
//!   when it parses, names the same subject.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sektorbro::auth::{certificate_subject, DistinguishedName};

fuzz_target!(|data: &[u8]| {
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
});
