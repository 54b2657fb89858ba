//! `_summary` and `_elements`: which top-level elements a subsetted resource keeps.
//!
//! The facts come from the R4 definitions (`profiles/r4/summary-elements.json`, derived by
//! `cargo xtask derive definitions`): per resource type, the JSON keys of its mandatory (`min` ≥ 1)
//! and its summary (`isSummary`) top-level elements. R4 asks servers to return mandatory elements
//! whatever was asked for, and to mark a subsetted resource with the `SUBSETTED` tag, so that
//! clients with strict models (which reject a CarePlan without `intent`) can read it.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use serde_json::Value;

const EMBEDDED_JSON: &str = include_str!("../../../../profiles/r4/summary-elements.json");

/// `_summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    /// The whole resource (the default).
    False,
    /// Summary elements and mandatory ones.
    True,
    /// Narrative, id, meta and mandatory elements.
    Text,
    /// Everything but the narrative.
    Data,
    /// Only the number of matches (searches).
    Count,
}

impl Summary {
    /// The value of a `_summary` parameter, or `None` for one R4 does not define.
    pub fn parse(value: &str) -> Option<Summary> {
        Some(match value {
            "false" => Summary::False,
            "true" => Summary::True,
            "text" => Summary::Text,
            "data" => Summary::Data,
            "count" => Summary::Count,
            _ => return None,
        })
    }

    /// Whether a resource returned under this mode is a subset of the stored one.
    pub fn subsets(self) -> bool {
        matches!(self, Summary::True | Summary::Text | Summary::Data)
    }
}

/// The top-level element keys of one resource type.
#[derive(Debug, Default)]
struct Flags {
    mandatory: HashSet<String>,
    summary: HashSet<String>,
}

fn flags(rtype: &str) -> Option<&'static Flags> {
    static TABLE: OnceLock<HashMap<String, Flags>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            let parsed: HashMap<String, HashMap<String, Vec<String>>> =
                serde_json::from_str(EMBEDDED_JSON).unwrap_or_default();
            parsed
                .into_iter()
                .map(|(t, mut f)| {
                    let mut set = |k: &str| -> HashSet<String> {
                        f.remove(k).unwrap_or_default().into_iter().collect()
                    };
                    let flags = Flags {
                        mandatory: set("mandatory"),
                        summary: set("summary"),
                    };
                    (t, flags)
                })
                .collect()
        })
        .get(rtype)
}

/// Keys every subset keeps, whatever the type.
fn always(key: &str) -> bool {
    matches!(key, "resourceType" | "id" | "meta")
}

/// Keep the keys `keep` accepts (a primitive's `_key` follows its key), and mark the resource
/// SUBSETTED.
fn retain(resource: &mut Value, keep: impl Fn(&str) -> bool) {
    if let Some(obj) = resource.as_object_mut() {
        obj.retain(|k, _| {
            let name = k.strip_prefix('_').unwrap_or(k);
            always(name) || keep(name)
        });
    }
    mark_subsetted(resource);
}

fn resource_type(resource: &Value) -> &str {
    resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Restrict a resource to `_elements`, plus its mandatory elements, and mark it SUBSETTED.
pub fn apply_elements(resource: &mut Value, elements: &[String]) {
    let f = flags(resource_type(resource));
    retain(resource, |k| {
        elements.iter().any(|e| e == k) || f.is_some_and(|f| f.mandatory.contains(k))
    });
}

/// Apply a `_summary` mode to a resource (no change for `false` and `count`).
pub fn apply_summary(resource: &mut Value, mode: Summary) {
    let f = flags(resource_type(resource));
    let mandatory = |k: &str| f.is_some_and(|f| f.mandatory.contains(k));
    match mode {
        Summary::False | Summary::Count => {}
        Summary::Data => retain(resource, |k| k != "text"),
        Summary::Text => retain(resource, |k| k == "text" || mandatory(k)),
        // A type we hold no flags for keeps everything but its narrative, rather than nothing.
        Summary::True => match f {
            Some(f) => retain(resource, |k| {
                f.summary.contains(k) || f.mandatory.contains(k)
            }),
            None => retain(resource, |k| k != "text"),
        },
    }
}

fn mark_subsetted(resource: &mut Value) {
    let tag = serde_json::json!({
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
        "code": "SUBSETTED",
        "display": "subsetted"
    });
    let Some(obj) = resource.as_object_mut() else {
        return;
    };
    let meta = obj
        .entry("meta")
        .or_insert_with(|| Value::Object(Default::default()));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    let tags = meta
        .entry("tag")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Some(list) = tags.as_array_mut() {
        if !list.iter().any(|t| t.get("code") == tag.get("code")) {
            list.push(tag);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn care_plan() -> Value {
        json!({"resourceType": "CarePlan", "id": "c1", "text": {"status": "generated", "div": "<div/>"},
            "status": "active", "_status": {"extension": []}, "intent": "plan",
            "subject": {"reference": "Patient/p"}, "title": "Rehab", "note": [{"text": "n"}],
            "activity": [{"detail": {"status": "scheduled"}}]})
    }

    fn keys(v: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }

    #[test]
    fn elements_keep_mandatory_ones_and_mark_subsetted() {
        let mut v = care_plan();
        apply_elements(&mut v, &["title".into()]);
        assert_eq!(
            keys(&v),
            [
                "_status",
                "id",
                "intent",
                "meta",
                "resourceType",
                "status",
                "subject",
                "title"
            ]
        );
        assert_eq!(v["meta"]["tag"][0]["code"], "SUBSETTED");
        apply_elements(&mut v, &["title".into()]);
        assert_eq!(v["meta"]["tag"].as_array().unwrap().len(), 1, "one tag");
    }

    #[test]
    fn summary_modes_follow_the_definitions() {
        let mut t = care_plan();
        apply_summary(&mut t, Summary::True);
        assert_eq!(
            keys(&t),
            [
                "_status",
                "id",
                "intent",
                "meta",
                "resourceType",
                "status",
                "subject",
                "title"
            ]
        );
        let mut x = care_plan();
        apply_summary(&mut x, Summary::Text);
        assert_eq!(
            keys(&x),
            [
                "_status",
                "id",
                "intent",
                "meta",
                "resourceType",
                "status",
                "subject",
                "text"
            ]
        );
        let mut d = care_plan();
        apply_summary(&mut d, Summary::Data);
        assert!(d.get("text").is_none() && d.get("activity").is_some());
        let mut f = care_plan();
        apply_summary(&mut f, Summary::False);
        assert_eq!(f, care_plan());
    }

    #[test]
    fn choice_elements_are_known_by_their_typed_keys() {
        let mut o = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "valueQuantity": {"value": 1}, "interpretation": [{"text": "h"}]});
        apply_summary(&mut o, Summary::True);
        assert!(o.get("valueQuantity").is_some());
        assert!(o.get("interpretation").is_none());
    }

    #[test]
    fn every_value_parses() {
        for (s, m) in [
            ("true", Summary::True),
            ("text", Summary::Text),
            ("data", Summary::Data),
            ("count", Summary::Count),
            ("false", Summary::False),
        ] {
            assert_eq!(Summary::parse(s), Some(m));
        }
        assert_eq!(Summary::parse("yes"), None);
        assert!(flags("Patient").is_some_and(|f| f.summary.contains("birthDate")));
    }
}
