//! FHIR knowledge that is not HTTP: resource types, ids, references, search parameters and search
//! parsing, OperationOutcome. Pure functions over `serde_json::Value`; no I/O.

pub mod datetime;
pub mod json;
pub mod outcome;
pub mod resource_type;
pub mod search;
pub mod search_params;
pub mod summary;

use serde_json::Value;

pub use resource_type::ResourceType;

/// JSON from bytes as `serde_json::from_slice` reads it, faster: the UTF-8 check runs once over
/// the whole body rather than once per string, which in `from_slice` costs as much as the rest
/// of string parsing. Bytes that are not UTF-8 go to `from_slice` for its located error.
pub fn from_json_bytes<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    }
}

/// Resource types the REST API serves. Each has its R4 search parameters in
/// `profiles/r4/search-parameters.json`.
pub const SUPPORTED_TYPES: &[&str] = &[
    "AuditEvent",
    "Bundle",
    "CarePlan",
    "CareTeam",
    "Communication",
    "Composition",
    "Condition",
    "DocumentReference",
    "Encounter",
    "Endpoint",
    "EpisodeOfCare",
    "Goal",
    "Group",
    "HealthcareService",
    "Location",
    "MessageHeader",
    "Observation",
    "Organization",
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "ServiceRequest",
    "Task",
];

/// Is `t` a resource type this server stores? (See [`ResourceType::parse`] to keep the answer.)
pub fn is_supported_type(t: &str) -> bool {
    ResourceType::parse(t).is_some()
}

/// A valid FHIR logical id: `[A-Za-z0-9\-\.]{1,64}`, and not made of dots only: `.`, `..`
/// and `...` are allowed by the regex, but as a URL path segment they are dot segments, which
/// clients and proxies resolve away (`Patient/..` is the server root), so `Location` and
/// references would point elsewhere.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !is_dots(id)
}

/// Whether `id` is made of dots only (see [`is_valid_id`]).
pub fn is_dots(id: &str) -> bool {
    id.bytes().all(|b| b == b'.')
}

/// A new server-assigned id: a UUID version 7 (RFC 9562): the creation time in milliseconds (48
/// bits), a counter that starts at a random value each millisecond and keeps ids made within it
/// in order (42 bits), and 32 random bits.
///
/// Ids made one after another sort one after another, so a create adds its rows at the end of
/// every index keyed by id (the resource tables' keys, the search rows' owner index, the audit
/// trail's entity index) instead of at a random page of each: under a create load that is fewer
/// pages read, dirtied and written to the WAL per commit (docs/benchmarks.md). The time it
/// tells is the one the first version's `meta.lastUpdated` already shows.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Render epoch milliseconds as a FHIR `instant` (UTC, millisecond precision).
pub fn instant(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Call `f` on every `reference` string inside `v` (Reference.reference anywhere in the tree).
pub fn for_each_reference(v: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k == "reference" {
                    if let Value::String(s) = child {
                        f(s);
                        continue;
                    }
                }
                for_each_reference(child, f);
            }
        }
        Value::Array(items) => {
            for item in items {
                for_each_reference(item, f);
            }
        }
        _ => {}
    }
}

/// Call `f` on every `reference` string inside `v`, contained resources' included: the read-only
/// twin of [`for_each_reference`].
pub fn each_reference<'a>(v: &'a Value, f: &mut impl FnMut(&'a str)) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                match (k.as_str(), child) {
                    ("reference", Value::String(r)) => f(r),
                    _ => each_reference(child, f),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|x| each_reference(x, f)),
        _ => {}
    }
}

/// The items of array member `key` of `v` (none when it is absent or not an array).
pub fn items_of<'a>(v: &'a Value, key: &str) -> std::slice::Iter<'a, Value> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter())
        .unwrap_or_default()
}

/// Member `key` of a JSON object. FHIR objects have few members, and for those a scan is cheaper
/// than hashing the key (serde_json's map hashes with SipHash); the validator and FHIRPath look
/// members up millions of times per corpus.
pub fn member<'a>(obj: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    if obj.len() <= SCAN_MAX {
        obj.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v)
    } else {
        obj.get(key)
    }
}

/// [`member`] as a method of any JSON value (`None` unless it is an object that holds `key`), for
/// code that would otherwise write `value.get("key")` and hash the key.
pub trait Member {
    fn member(&self, key: &str) -> Option<&Value>;
}

impl Member for Value {
    fn member(&self, key: &str) -> Option<&Value> {
        self.as_object().and_then(|o| member(o, key))
    }
}

impl Member for serde_json::Map<String, Value> {
    fn member(&self, key: &str) -> Option<&Value> {
        member(self, key)
    }
}

/// The `_key` member (a primitive's id and extensions) of a JSON object, without building `_key`
/// (it is usually absent, so this is a miss over every member more often than not).
pub fn companion<'a>(obj: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    if obj.len() <= SCAN_MAX {
        return obj
            .iter()
            .find(|(k, _)| k.len() == key.len() + 1 && k.strip_prefix('_') == Some(key))
            .map(|(_, v)| v);
    }
    let mut buf = [0u8; 96];
    match buf.get_mut(1..=key.len()) {
        Some(tail) => {
            tail.copy_from_slice(key.as_bytes());
            buf[0] = b'_';
            std::str::from_utf8(&buf[..=key.len()])
                .ok()
                .and_then(|k| obj.get(k))
        }
        None => obj.get(&format!("_{key}")),
    }
}

/// Up to this many members, [`member`] and [`companion`] scan instead of hashing: a scan compares
/// lengths first and costs a few instructions per member, SipHash a few hundred per key.
const SCAN_MAX: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_valid_and_sort_in_the_order_they_were_made() {
        let ids: Vec<String> = (0..2000).map(|_| new_id()).collect();
        assert!(ids.iter().all(|id| is_valid_id(id) && id.len() == 36));
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "each id sorts after the one made before it"
        );
    }

    #[test]
    fn json_from_bytes_reads_as_from_slice_reads() {
        let inputs: [&[u8]; 8] = [
            br#"{"a":"S\u00f8ren","b":[1,2.50,{"c":null}]}"#,
            "{\"navn\":\"Søren Ærø\"}".as_bytes(),
            b"{\"a\":\"\xff\"}",
            b"{\"a\":\"\xc3\"}",
            br#"{"a":"\ud800"}"#,
            b"{\"a\":\"x\ny\"}",
            br#"{"a":1,}"#,
            b"",
        ];
        for bytes in inputs {
            let fast = from_json_bytes::<Value>(bytes).map_err(|e| e.to_string());
            let slice = serde_json::from_slice::<Value>(bytes).map_err(|e| e.to_string());
            assert_eq!(fast, slice, "{}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn supported_types_are_sorted_for_binary_search() {
        let mut sorted = SUPPORTED_TYPES.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, SUPPORTED_TYPES);
        assert!(is_supported_type("CarePlan"));
        assert!(!is_supported_type("Careplan"));
    }

    #[test]
    fn ids_follow_the_r4_rule() {
        assert!(is_valid_id("abc-1.2"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("a/b"));
        assert!(!is_valid_id(&"x".repeat(65)));
        for dots in [".", "..", "..."] {
            assert!(!is_valid_id(dots), "{dots}");
        }
        assert!(is_valid_id("a.") && is_valid_id(".a") && is_valid_id("1.2.3"));
    }

    #[test]
    fn references_are_visited_in_nested_structures() {
        let mut v = serde_json::json!({"subject": {"reference": "urn:uuid:1"}, "goal": [{"reference": "Goal/2"}]});
        let mut seen = Vec::new();
        for_each_reference(&mut v, &mut |s| seen.push(s.clone()));
        seen.sort();
        assert_eq!(seen, vec!["Goal/2", "urn:uuid:1"]);
    }

    #[test]
    fn members_and_companions_small_and_large() {
        use serde_json::json;
        for n in [3usize, 40] {
            let mut obj = serde_json::Map::new();
            for i in 0..n {
                obj.insert(format!("k{i}"), json!(i));
            }
            obj.insert("birthDate".into(), json!("1970"));
            obj.insert("_birthDate".into(), json!({"id": "x"}));
            assert_eq!(super::member(&obj, "k2"), Some(&json!(2)));
            assert_eq!(super::member(&obj, "nope"), None);
            assert_eq!(
                super::companion(&obj, "birthDate"),
                Some(&json!({"id": "x"}))
            );
            assert_eq!(super::companion(&obj, "k1"), None);
            assert_eq!(super::companion(&obj, &"x".repeat(200)), None);
        }
    }
}
