//! Person numbers never reach the logs: every log line passes through [`MaskingWriter`], which
//! replaces Danish CPR numbers (DDMMYY-XXXX, with or without the hyphen) and Swedish
//! personnummer (YYYYMMDD-XXXX) by their date part and `xxxx`. The date part stays so a line can
//! still be told apart from another; the four digits that make the number identify a person.
//!
//! Masking at the writer catches what any module logs (a search criterion in an error message,
//! a conditional URL), rather than trusting every call site to remember.

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::OnceLock;

use regex::Regex;

/// Twelve-digit personnummer first, then ten-digit CPR (day + 60 for replacement numbers); both
/// need a plausible date. A constant, so it compiles (a unit test holds it to that).
const PERSON_NUMBER: &str = r"\b((?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])|(?:0[1-9]|[12]\d|3[01]|[67]\d)(?:0[1-9]|1[0-2])\d{2})(-?)\d{4}\b";

fn pattern() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| Regex::new(PERSON_NUMBER).ok()).as_ref()
}

/// `text` with every person number masked.
pub fn mask(text: &str) -> Cow<'_, str> {
    match pattern() {
        Some(re) => re.replace_all(text, "${1}${2}xxxx"),
        None => Cow::Borrowed(text),
    }
}

/// An `io::Write` that masks person numbers in what passes through it. tracing-subscriber writes
/// each event with one `write_all`, so a number is never split across calls.
pub struct MaskingWriter<W: Write>(pub W);

impl<W: Write> Write for MaskingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self.0.write_all(mask(text).as_bytes())?,
            Err(_) => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// For `tracing_subscriber::fmt().with_writer(...)`: standard output, masked.
pub fn stdout() -> MaskingWriter<io::Stdout> {
    MaskingWriter(io::stdout())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_numbers_are_masked_and_other_numbers_kept() {
        assert!(pattern().is_some(), "the pattern compiles");
        assert_eq!(
            mask("identifier=urn:oid:1.2.208.176.1.2|0703451234 failed"),
            "identifier=urn:oid:1.2.208.176.1.2|070345xxxx failed"
        );
        assert_eq!(mask("cpr 070345-1234."), "cpr 070345-xxxx.");
        assert_eq!(
            mask("personnummer 19451107-1234"),
            "personnummer 19451107-xxxx"
        );
        // Replacement CPR numbers add 60 to the day.
        assert_eq!(mask("6703451234"), "670345xxxx");
        // Not person numbers: versions, ids, timestamps, SOR codes, a 10-digit non-date.
        for keep in [
            "version 3 of Goal/0b0e1d54-8c57-4f7e-9e0e-000000000001",
            "lastUpdated 1763891234567",
            "SOR 425911000016005",
            "9999999999",
            "elapsed_ms=1234",
        ] {
            assert_eq!(mask(keep), keep);
        }
    }

    #[test]
    fn the_writer_masks_what_it_writes() {
        let mut w = MaskingWriter(Vec::new());
        w.write_all(b"patient 0703451234 not found\n").unwrap();
        assert_eq!(
            String::from_utf8(w.0).unwrap(),
            "patient 070345xxxx not found\n"
        );
    }
}
