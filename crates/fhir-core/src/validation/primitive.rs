//! Formats of the FHIR primitive types as they appear in JSON, checked by hand-written scanners
//! (no regular expressions on the hot path). Each check returns a message fit for a person.

use serde_json::Value;

use crate::fhir::datetime::{FhirType, Temporal};

/// Whether `code` names a FHIR primitive type.
pub fn is_primitive(code: &str) -> bool {
    matches!(
        code,
        "boolean"
            | "integer"
            | "integer64"
            | "string"
            | "decimal"
            | "uri"
            | "url"
            | "canonical"
            | "base64Binary"
            | "instant"
            | "date"
            | "dateTime"
            | "time"
            | "code"
            | "oid"
            | "id"
            | "markdown"
            | "unsignedInt"
            | "positiveInt"
            | "uuid"
            | "xhtml"
    )
}

/// Check one JSON value against primitive type `code`.
pub fn check(code: &str, v: &Value) -> Result<(), String> {
    match code {
        "boolean" => match v {
            Value::Bool(_) => Ok(()),
            _ => Err(format!("must be true or false, not {}", show(v))),
        },
        "integer" | "unsignedInt" | "positiveInt" => {
            let Value::Number(n) = v else {
                return Err(format!("must be a JSON number, not {}", show(v)));
            };
            let Some(i) = n.as_i64() else {
                return Err(format!("{n} is not a whole number"));
            };
            let (lo, what) = match code {
                "positiveInt" => (1, "at least 1"),
                "unsignedInt" => (0, "0 or more"),
                _ => (i64::from(i32::MIN), "a 32-bit integer"),
            };
            if i < lo || i > i64::from(i32::MAX) {
                return Err(format!("{i} is out of range: must be {what}"));
            }
            Ok(())
        }
        "integer64" => match v {
            Value::String(s) if s.parse::<i64>().is_ok() => Ok(()),
            _ => Err(format!(
                "must be a string holding a 64-bit integer, not {}",
                show(v)
            )),
        },
        "decimal" => match v {
            Value::Number(n) => {
                let t = n.to_string();
                if !decimal_ok(&t) {
                    Err(format!("{t} is not a valid decimal"))
                } else if !t.parse::<f64>().is_ok_and(f64::is_finite) {
                    // searches compare decimals as doubles: a value beyond their range could be
                    // stored but never found (issue 20)
                    Err(format!(
                        "{} is out of range: decimals must lie within ±1.7976931348623157e308",
                        truncate(&t)
                    ))
                } else {
                    Ok(())
                }
            }
            _ => Err(format!("must be a JSON number, not {}", show(v))),
        },
        _ => {
            let Value::String(s) = v else {
                return Err(format!("must be a JSON string, not {}", show(v)));
            };
            string_format(code, s)
        }
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {:?}", truncate(s)),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

pub fn truncate(s: &str) -> &str {
    match s.char_indices().nth(60) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Check a JSON string against primitive type `code` (what [`check`] does for a `Value::String`).
pub fn string_format(code: &str, s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be an empty string (leave the element out instead)".into());
    }
    // (xhtml is left to its XML parser, which refuses the same characters)
    if code != "xhtml" && !crate::fhir::json::clean_string(s) {
        let c = s
            .bytes()
            .find(|&b| !crate::fhir::json::clean_string_byte(b))
            .unwrap_or(0);
        return Err(format!(
            "holds the control character U+{c:04X}; below U+0020 FHIR strings allow only TAB, LF and CR"
        ));
    }
    let bad = |what: &str| Err(format!("{:?} is not a valid {code}: {what}", truncate(s)));
    match code {
        "string" | "markdown" => {
            if s.trim().is_empty() {
                return bad("it holds only whitespace");
            }
            if s.len() > 1024 * 1024 {
                return bad("longer than 1 MB");
            }
            Ok(())
        }
        "code" => {
            if !code_spacing_ok(s.as_bytes()) {
                return bad("codes have no leading, trailing or repeated whitespace");
            }
            Ok(())
        }
        "id" => {
            if s.len() > 64
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return bad("use 1–64 characters of A–Z, a–z, 0–9, '-' and '.'");
            }
            if crate::fhir::is_dots(s) {
                return bad("an id of dots only would be a '.' or '..' segment in URLs");
            }
            Ok(())
        }
        "uri" | "url" | "canonical" => {
            if s.bytes().any(|b| b.is_ascii_whitespace()) {
                return bad("it contains whitespace");
            }
            if s.starts_with("urn:uuid:") && !uuid_ok(&s[9..]) {
                return bad("the part after urn:uuid: is not a lowercase UUID");
            }
            if s.starts_with("urn:oid:") && !oid_ok(&s[8..]) {
                return bad("the part after urn:oid: is not an OID");
            }
            if code == "canonical" && !s.starts_with('#') && !has_scheme(s) {
                return bad(
                    "a canonical URL is absolute (or a #fragment for a contained resource)",
                );
            }
            Ok(())
        }
        "uuid" => match s.strip_prefix("urn:uuid:") {
            Some(u) if uuid_ok(u) => Ok(()),
            _ => bad("expected urn:uuid: followed by a lowercase UUID"),
        },
        "oid" => match s.strip_prefix("urn:oid:") {
            Some(o) if oid_ok(o) => Ok(()),
            _ => bad("expected urn:oid: followed by an OID such as 1.2.208.176.1.2"),
        },
        "date" => temporal(s, FhirType::Date)
            .map_err(|e| format!("{:?} is not a valid date: {e}", truncate(s))),
        "dateTime" => temporal(s, FhirType::DateTime)
            .map_err(|e| format!("{:?} is not a valid dateTime: {e}", truncate(s))),
        "instant" => temporal(s, FhirType::Instant)
            .map_err(|e| format!("{:?} is not a valid instant: {e}", truncate(s))),
        "time" => temporal(s, FhirType::Time)
            .map_err(|e| format!("{:?} is not a valid time: {e}", truncate(s))),
        "base64Binary" => {
            let compact: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
            if compact.len() % 4 != 0
                || !compact
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/' || *b == b'=')
            {
                return bad("not base64 (A–Z, a–z, 0–9, '+', '/', padded with '=')");
            }
            Ok(())
        }
        "xhtml" => super::xhtml::check(s),
        _ => Ok(()),
    }
}

/// Whether `s` starts with a URI scheme (`http:`, `urn:`): a letter, then letters, digits, `+`,
/// `-` or `.`, then `:`.
pub(crate) fn has_scheme(s: &str) -> bool {
    let Some((scheme, _)) = s.split_once(':') else {
        return false;
    };
    let mut b = scheme.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

/// A `code`'s whitespace (`[^\s]+( [^\s]+)*` of the R4 regex, `\s` being ASCII whitespace): only
/// single spaces, between other characters. One pass over the bytes (ASCII whitespace bytes
/// are never part of a longer UTF-8 character), as codes are checked by the hundred per request.
fn code_spacing_ok(b: &[u8]) -> bool {
    let mut after_space = true; // a leading space is as wrong as a repeated one
    for &c in b {
        if c.is_ascii_whitespace() {
            if c != b' ' || after_space {
                return false;
            }
            after_space = true;
        } else {
            after_space = false;
        }
    }
    !after_space
}

fn uuid_ok(u: &str) -> bool {
    let b = u.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

fn oid_ok(o: &str) -> bool {
    let mut parts = o.split('.');
    let first_ok = matches!(parts.next(), Some("0" | "1" | "2"));
    let mut n = 0;
    let rest_ok = parts.all(|p| {
        n += 1;
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (p == "0" || !p.starts_with('0'))
    });
    first_ok && rest_ok && n > 0
}

fn decimal_ok(t: &str) -> bool {
    let t = t.strip_prefix('-').unwrap_or(t);
    let (mantissa, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(int)
        && (int == "0" || !int.starts_with('0'))
        && frac.is_none_or(digits)
        && exp.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)))
}

/// A FHIR date, dateTime, instant or time (the one date/time type's reading for the primitive
/// type: `crate::fhir::datetime`).
fn temporal(s: &str, ty: FhirType) -> Result<(), String> {
    Temporal::parse_fhir(s, ty).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Canonical URLs are absolute, or a `#fragment` for a contained resource (HL7's validator
    /// refuses relative ones, 59 of the official R4 examples among them).
    #[test]
    fn canonicals_are_absolute() {
        for ok in [
            "http://hl7.org/fhir/StructureDefinition/Patient",
            "http://example.org/Questionnaire/q|1.0",
            "urn:uuid:6f1c2b3a-0d4e-4f5a-8b6c-7d8e9f0a1b2c",
            "#q1",
        ] {
            assert_eq!(string_format("canonical", ok), Ok(()), "{ok}");
        }
        for relative in [
            "Library/phq-9-logic",
            "Questionnaire/q|2",
            "q1",
            "1http://x",
        ] {
            let e = string_format("canonical", relative).expect_err(relative);
            assert!(e.contains("absolute"), "{e}");
            // a uri may be relative
            assert_eq!(string_format("uri", relative), Ok(()), "{relative}");
        }
    }

    #[test]
    fn code_spacing_is_the_regex_spacing() {
        // Every string of up to five characters over whitespace and non-whitespace, against
        // the rule as the regex says it.
        let alphabet = [' ', '\t', '\n', '\r', '\u{c}', '\u{b}', 'a', 'é', '\u{a0}'];
        let mut strings = Vec::new();
        let mut longest = vec![String::new()];
        for _ in 0..5 {
            longest = longest
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            strings.extend(longest.iter().cloned());
        }
        assert_eq!(strings.len(), 9 + 81 + 729 + 6561 + 59049);
        for s in &strings {
            let ws = |c: char| c.is_ascii_whitespace();
            let regex = !(s.starts_with(ws)
                || s.ends_with(ws)
                || s.contains("  ")
                || s.chars().any(|c| ws(c) && c != ' '));
            assert_eq!(code_spacing_ok(s.as_bytes()), regex, "{s:?}");
            // and no control character but TAB, LF, CR (FHIR strings; issue 20)
            let clean = crate::fhir::json::clean_string(s);
            assert_eq!(string_format("code", s).is_ok(), regex && clean, "{s:?}");
        }
    }

    #[test]
    fn formats() {
        assert!(check("date", &json!("2024-02-29")).is_ok());
        assert!(check("date", &json!("2023-02-29")).is_err());
        assert!(check("date", &json!("2023-2-1")).is_err());
        assert!(check("dateTime", &json!("2024-05-01T10:00:00+02:00")).is_ok());
        assert!(check("dateTime", &json!("2024-05-01T10:00:00")).is_err());
        assert!(check("dateTime", &json!("2024-05")).is_ok());
        assert!(check("instant", &json!("2024-05-01")).is_err());
        assert!(check("instant", &json!("2024-05-01T10:00:00.123Z")).is_ok());
        assert!(check("time", &json!("24:00:00")).is_err());
        assert!(check("id", &json!("a_b")).is_err());
        assert!(check("code", &json!(" x")).is_err());
        assert!(check("positiveInt", &json!(0)).is_err());
        assert!(check("unsignedInt", &json!(0)).is_ok());
        assert!(check("integer", &json!(2147483648u64)).is_err());
        assert!(check("integer", &json!("1")).is_err());
        assert!(check("decimal", &json!(1.50)).is_ok());
        assert!(check("boolean", &json!("true")).is_err());
        assert!(check(
            "uuid",
            &json!("urn:uuid:c757873d-ec9a-4326-a141-556f43239520")
        )
        .is_ok());
        assert!(check("oid", &json!("urn:oid:1.2.208.176.1.2")).is_ok());
        assert!(check("oid", &json!("urn:oid:1.02")).is_err());
        assert!(check("base64Binary", &json!("aGVsbG8=")).is_ok());
        assert!(check("base64Binary", &json!("aGVsbG8")).is_err());
        assert!(check("string", &json!("")).is_err());
        assert!(check("uri", &json!("http://a b")).is_err());
    }
}
