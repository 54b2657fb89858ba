//! Machine facts only: the form in which CodeSystems and ValueSets are shipped in the
//! repository (no narrative, descriptions, copyright, contacts, definitions, designations or
//! extensions). The terminology store answers the same on compacted and full resources.

use crate::fhir::Member;
use serde_json::{Map, Value};

/// Strips a CodeSystem or ValueSet to the elements that membership, hierarchy and display
/// depend on. Other resources are returned unchanged.
pub fn compact(resource: &Value) -> Value {
    match resource.member("resourceType").and_then(Value::as_str) {
        Some("CodeSystem") => keep(
            resource,
            &[
                ("resourceType", None),
                ("id", None),
                ("url", None),
                ("version", None),
                ("name", None),
                ("status", None),
                ("content", None),
                ("caseSensitive", None),
                ("hierarchyMeaning", None),
                ("compositional", None),
                ("versionNeeded", None),
                ("valueSet", None),
                ("supplements", None),
                ("count", None),
                ("filter", Some(filter_definition)),
                ("property", Some(property_definition)),
                ("concept", Some(concept)),
            ],
        ),
        Some("ValueSet") => keep(
            resource,
            &[
                ("resourceType", None),
                ("id", None),
                ("url", None),
                ("version", None),
                ("name", None),
                ("status", None),
                ("compose", Some(compose)),
                ("expansion", Some(expansion)),
            ],
        ),
        _ => resource.clone(),
    }
}

type Shrink = fn(&Value) -> Value;

/// Copies the listed members in the listed order; arrays are shrunk element-wise.
fn keep(v: &Value, members: &[(&str, Option<Shrink>)]) -> Value {
    let Some(obj) = v.as_object() else {
        return v.clone();
    };
    let mut out = Map::new();
    for (key, shrink) in members {
        let Some(value) = obj.get(*key) else {
            continue;
        };
        let value = match (shrink, value) {
            (Some(f), Value::Array(items)) => Value::Array(items.iter().map(f).collect()),
            (Some(f), other) => f(other),
            (None, other) => other.clone(),
        };
        out.insert((*key).to_owned(), value);
    }
    Value::Object(out)
}

fn filter_definition(v: &Value) -> Value {
    keep(v, &[("code", None), ("operator", None), ("value", None)])
}

fn property_definition(v: &Value) -> Value {
    keep(v, &[("code", None), ("uri", None), ("type", None)])
}

fn concept(v: &Value) -> Value {
    keep(
        v,
        &[
            ("code", None),
            ("display", None),
            ("property", Some(concept_property)),
            ("concept", Some(concept)),
        ],
    )
}

fn concept_property(v: &Value) -> Value {
    let Some(obj) = v.as_object() else {
        return v.clone();
    };
    let mut out = Map::new();
    for (k, val) in obj {
        if k == "code" || k.starts_with("value") {
            out.insert(k.clone(), val.clone());
        }
    }
    Value::Object(out)
}

fn compose(v: &Value) -> Value {
    keep(
        v,
        &[
            ("inactive", None),
            ("include", Some(clause)),
            ("exclude", Some(clause)),
        ],
    )
}

fn clause(v: &Value) -> Value {
    keep(
        v,
        &[
            ("system", None),
            ("version", None),
            ("concept", Some(clause_concept)),
            ("filter", Some(clause_filter)),
            ("valueSet", None),
        ],
    )
}

fn clause_concept(v: &Value) -> Value {
    keep(v, &[("code", None), ("display", None)])
}

fn clause_filter(v: &Value) -> Value {
    keep(v, &[("property", None), ("op", None), ("value", None)])
}

fn expansion(v: &Value) -> Value {
    keep(
        v,
        &[
            ("identifier", None),
            ("timestamp", None),
            ("total", None),
            ("offset", None),
            ("contains", Some(contains)),
        ],
    )
}

fn contains(v: &Value) -> Value {
    keep(
        v,
        &[
            ("system", None),
            ("version", None),
            ("abstract", None),
            ("inactive", None),
            ("code", None),
            ("display", None),
            ("contains", Some(contains)),
        ],
    )
}
