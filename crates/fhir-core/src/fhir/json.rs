//! JSON as a client sends it, read strictly: one parse into a `serde_json::Value` that refuses an
//! object holding the same key twice (`serde_json` keeps the last one silently, so
//! `"resourceType":"Observation","resourceType":"Patient"` would be a Patient to us and an
//! Observation to a reader who keeps the first), and a cheap scan for control characters, which
//! FHIR strings may not hold (only TAB, LF and CR are allowed below U+0020).
//!
//! Nothing here knows HTTP: the callers turn the errors into 400 and 422.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The key serde_json (with `arbitrary_precision`) uses to hand a number's text to a visitor.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Parse `bytes` into a `Value` as [`super::from_json_bytes`] does, but refuse duplicate keys
/// (the error names the key, with serde_json's line and column).
pub fn parse_value(bytes: &[u8]) -> serde_json::Result<Value> {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            let mut de = serde_json::Deserializer::from_str(text);
            let v = Strict.deserialize(&mut de)?;
            de.end()?;
            Ok(v)
        }
        Err(_) => serde_json::from_slice(bytes),
    }
}

/// A `Value` built by a visitor of our own, so a repeated key is seen while the object is read.
#[derive(Clone, Copy)]
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        Number::from_f64(n)
            .map(Value::Number)
            .ok_or_else(|| E::custom("not a finite number"))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element_seed(Strict)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.is_empty() && key == NUMBER_TOKEN {
                // a number, its text kept exactly (arbitrary_precision)
                let text: String = map.next_value()?;
                return text
                    .parse::<Number>()
                    .map(Value::Number)
                    .map_err(de::Error::custom);
            }
            let value = map.next_value_seed(Strict)?;
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "the key {key:?} appears twice in one object"
                )));
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// Whether a string is free of the control characters FHIR forbids (U+0000–U+001F except TAB,
/// LF and CR).
pub fn clean_string(s: &str) -> bool {
    // whole chunks without an early exit, which the compiler turns into vector compares: the
    // validator runs this over every string, narratives of hundreds of kilobytes included
    s.as_bytes()
        .chunks(64)
        .all(|chunk| chunk.iter().fold(true, |ok, &b| ok & clean_string_byte(b)))
}

/// Whether one byte of UTF-8 text is allowed in a FHIR string (bytes below 0x20 are always
/// whole characters in UTF-8).
pub fn clean_string_byte(b: u8) -> bool {
    (b >= 0x20) | (b == b'\t') | (b == b'\n') | (b == b'\r')
}

/// Whether JSON text escapes a forbidden control character anywhere (`\u0000`…`\u001f` but
/// `\t`, `\n`, `\r`; and the short forms `\b`, `\f`). Raw control bytes are not valid JSON at all, so escapes are the only way
/// in; one `memchr` pass over the backslashes, far cheaper than the parse. Only meaningful for
/// text that parses as JSON (outside strings a backslash is a syntax error anyway).
pub fn escapes_control_character(bytes: &[u8]) -> bool {
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'\\', &bytes[i..]) {
        i += p;
        // `\b` (U+0008) and `\f` (U+000C) are control characters too (found by fuzzing)
        if matches!(bytes.get(i + 1), Some(b'b' | b'f')) {
            return true;
        }
        if bytes.get(i + 1) == Some(&b'u') {
            if let Some(hex) = bytes.get(i + 2..i + 6) {
                let code = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|h| u32::from_str_radix(h, 16).ok());
                if code.is_some_and(|c| c < 0x20 && !matches!(c, 0x09 | 0x0a | 0x0d)) {
                    return true;
                }
            }
        }
        i += 2; // the backslash and the character it escapes
    }
    false
}

/// Every place in `v` where a key or a string holds a forbidden control character, as
/// FHIRPath-like locations rooted at `root` (`Patient.name[0].family`).
pub fn control_character_locations(v: &Value, root: &str) -> Vec<String> {
    let mut out = Vec::new();
    // (value, its location, whether the key it is under is itself bad)
    let mut stack = vec![(v, root.to_string(), false)];
    while let Some((v, path, bad_key)) = stack.pop() {
        if bad_key {
            out.push(path.clone());
        }
        match v {
            Value::String(s) if !bad_key && !clean_string(s) => out.push(path),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate().rev() {
                    stack.push((item, format!("{path}[{i}]"), false));
                }
            }
            Value::Object(map) => {
                for (k, item) in map.iter().rev() {
                    // a key is shown with its control characters replaced, never echoed
                    let shown: String = k
                        .chars()
                        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
                        .collect();
                    let child = if path.is_empty() {
                        shown
                    } else {
                        format!("{path}.{shown}")
                    };
                    stack.push((item, child, !clean_string(k)));
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        for bad in [
            r#"{"resourceType":"Observation","resourceType":"Patient"}"#,
            r#"{"a":{"b":1,"c":2,"b":1}}"#,
            r#"{"a":[{"x":null,"x":null}]}"#,
        ] {
            let e = parse_value(bad.as_bytes()).unwrap_err().to_string();
            assert!(e.contains("appears twice"), "{bad}: {e}");
        }
    }

    #[test]
    fn values_are_what_serde_json_reads() {
        let text = r#"{"resourceType":"Observation","valueQuantity":{"value":1.50,"unit":"mg"},
            "n":[0,-7,18446744073709551615,1e400,-0.0,3.000],"s":"a\"\\\u00e6","t":true,"z":null,
            "o":{},"e":[]}"#;
        let strict = parse_value(text.as_bytes()).unwrap();
        let plain: Value = serde_json::from_str(text).unwrap();
        assert_eq!(strict, plain);
        assert_eq!(strict.to_string(), plain.to_string());
        assert!(strict.to_string().contains("1.50"), "decimal text kept");
        assert!(parse_value(b"{} x").is_err());
        assert!(parse_value(b"[1,]").is_err());
    }

    #[test]
    fn control_characters_are_found() {
        assert!(escapes_control_character(br#"{"a":"x\u0000y"}"#));
        assert!(escapes_control_character(br#"{"a":"\u001F"}"#));
        assert!(escapes_control_character(br#"{"a\u0001":"b"}"#));
        assert!(!escapes_control_character(
            br#"{"a":"\\u0000 \t\n\r\u0009\u000a\u000D\u0020"}"#
        ));
        assert!(escapes_control_character(br#"{"a":"\\\u0000"}"#));
        // the short escapes of U+0008 and U+000C (a fuzzing find: the scan missed them)
        assert!(escapes_control_character(br#"{"a":"x\by"}"#));
        assert!(escapes_control_character(br#"{"a":"\f"}"#));
        assert!(!escapes_control_character(br#"{"a":"\\b\\f"}"#));
        let v: Value = serde_json::from_str(
            r#"{"resourceType":"Patient","name":[{"given":["ok","b\u0000"]}],"x\u0002":1}"#,
        )
        .unwrap();
        assert_eq!(
            control_character_locations(&v, "Patient"),
            ["Patient.name[0].given[1]", "Patient.x\u{fffd}"]
        );
    }
}
