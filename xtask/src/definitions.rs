//! `cargo xtask derive definitions`: turn the published R4 package into the compact files the
//! validator embeds (`profiles/r4/structure-definitions.json.gz`, `profiles/r4/terminology.json.gz`).
//!
//! The output keeps the resources' own JSON shape (so the same loader reads it and any FHIR
//! package), restricted to machine facts: element paths and ids, cardinality, types and target
//! profiles, fixed and pattern values, bindings (strength and value set), slicing, constraint keys
//! and FHIRPath expressions, concept codes with their display labels and properties, value set
//! composition. Every piece of prose (definitions, comments, descriptions, constraint `human`
//! texts, mappings, narratives) is dropped; the validator words its messages itself.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Map, Value};

use fhir_core::validation::package::Package;

/// Top-level StructureDefinition keys kept.
const SD_KEYS: &[&str] = &[
    "resourceType",
    "url",
    "version",
    "name",
    "status",
    "fhirVersion",
    "kind",
    "abstract",
    "context",
    "contextInvariant",
    "type",
    "baseDefinition",
    "derivation",
];

/// ElementDefinition keys kept (plus every `fixed*`, `pattern*`, `minValue*`, `maxValue*`).
const ELEMENT_KEYS: &[&str] = &[
    "id",
    "path",
    "representation",
    "sliceName",
    "sliceIsConstraining",
    "slicing",
    "min",
    "max",
    "base",
    "contentReference",
    "type",
    "maxLength",
    "constraint",
    "mustSupport",
    "isModifier",
    "binding",
];

const FHIR_TYPE_EXT: &str = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type";

/// A StructureDefinition reduced to machine facts (snapshot only when it has one, else the
/// differential).
pub fn compact_structure_definition(sd: &Value) -> Value {
    let mut out = pick(sd, SD_KEYS);
    if let Some(Value::Array(ctx)) = out.get_mut("context") {
        for c in ctx.iter_mut() {
            *c = Value::Object(pick(c, &["type", "expression"]));
        }
    }
    for part in ["snapshot", "differential"] {
        if let Some(elements) = sd
            .get(part)
            .and_then(|s| s.get("element"))
            .and_then(Value::as_array)
        {
            let elements: Vec<Value> = elements.iter().map(compact_element).collect();
            out.insert(
                part.into(),
                Value::Object(Map::from_iter([("element".into(), Value::Array(elements))])),
            );
            if part == "snapshot" {
                break;
            }
        }
    }
    Value::Object(out)
}

fn compact_element(e: &Value) -> Value {
    let mut out = Map::new();
    let Some(obj) = e.as_object() else {
        return Value::Object(out);
    };
    for (k, v) in obj {
        let fact = ELEMENT_KEYS.contains(&k.as_str())
            || ["fixed", "pattern", "minValue", "maxValue"]
                .iter()
                .any(|p| k.starts_with(p));
        if !fact {
            continue;
        }
        let v = match k.as_str() {
            "isModifier" | "mustSupport" if v != &Value::Bool(true) => continue,
            "constraint" => Value::Array(
                v.as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| Value::Object(pick(c, &["key", "severity", "expression"])))
                    .collect(),
            ),
            "binding" => Value::Object(pick(v, &["strength", "valueSet"])),
            "slicing" => Value::Object(pick(v, &["discriminator", "ordered", "rules"])),
            "type" => Value::Array(
                v.as_array()
                    .into_iter()
                    .flatten()
                    .map(compact_type)
                    .collect(),
            ),
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    Value::Object(out)
}

fn compact_type(t: &Value) -> Value {
    let mut out = pick(
        t,
        &[
            "code",
            "profile",
            "targetProfile",
            "aggregation",
            "versioning",
        ],
    );
    // The one type extension that is a machine fact: the FHIR type of a primitive's value.
    let fhir_type = t
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|x| x.get("url").and_then(Value::as_str) == Some(FHIR_TYPE_EXT))
        .cloned();
    if let Some(x) = fhir_type {
        out.insert("extension".into(), Value::Array(vec![x]));
    }
    Value::Object(out)
}

fn pick(v: &Value, keys: &[&str]) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(obj) = v.as_object() {
        for (k, val) in obj {
            if keys.contains(&k.as_str()) {
                out.insert(k.clone(), val.clone());
            }
        }
    }
    out
}

/// The files derived from one package: StructureDefinitions (logical models excluded) and
/// terminology, each a JSON array with one resource per line, sorted by URL.
pub struct Derived {
    pub structure_definitions: String,
    pub terminology: String,
    /// Per resource type, the JSON keys of its top-level mandatory (`min` ≥ 1) and summary
    /// (`isSummary`) elements: what `_summary` and `_elements` keep.
    pub summary_elements: String,
}

pub fn derive_definitions(package: &Path) -> Result<Derived> {
    let pkg = Package::read(package)?;
    let mut sds = Vec::new();
    let mut terms = Vec::new();
    let mut summary = std::collections::BTreeMap::new();
    for r in &pkg.resources {
        if let Some((rtype, flags)) = summary_flags(r) {
            summary.insert(rtype, flags);
        }
        let url = r.get("url").and_then(Value::as_str).unwrap_or_default();
        match r.get("resourceType").and_then(Value::as_str) {
            Some("StructureDefinition")
                if r.get("kind").and_then(Value::as_str) != Some("logical") =>
            {
                sds.push((url.to_string(), compact_structure_definition(r)))
            }
            Some("CodeSystem") | Some("ValueSet") => terms.push((
                url.to_string(),
                fhir_core::validation::terminology::compact(r),
            )),
            _ => {}
        }
    }
    let mut summary_text = String::from("{\n");
    for (i, (rtype, flags)) in summary.iter().enumerate() {
        if i > 0 {
            summary_text.push_str(",\n");
        }
        summary_text.push_str(&format!("{}:{}", Value::from(rtype.as_str()), flags));
    }
    summary_text.push_str("\n}\n");
    Ok(Derived {
        structure_definitions: lines(sds)?,
        terminology: lines(terms)?,
        summary_elements: summary_text,
    })
}

/// A resource type's top-level element flags, from its base definition's snapshot: the JSON keys
/// of mandatory and of summary elements (a choice element contributes one key per type).
fn summary_flags(sd: &Value) -> Option<(String, Value)> {
    let s = |k: &str| sd.get(k).and_then(Value::as_str);
    if s("resourceType") != Some("StructureDefinition")
        || s("kind") != Some("resource")
        || s("derivation") != Some("specialization")
    {
        return None;
    }
    let rtype = s("type")?.to_string();
    let mut mandatory = Vec::new();
    let mut summary = Vec::new();
    for e in sd.pointer("/snapshot/element")?.as_array()? {
        let Some(name) = e
            .get("path")
            .and_then(Value::as_str)
            .and_then(|p| p.strip_prefix(rtype.as_str()))
            .and_then(|p| p.strip_prefix('.'))
            .filter(|p| !p.contains('.'))
        else {
            continue;
        };
        let keys: Vec<String> = match name.strip_suffix("[x]") {
            Some(stem) => e
                .get("type")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|t| t.get("code").and_then(Value::as_str))
                .map(|code| {
                    let mut c = code.chars();
                    let first = c.next().map(|f| f.to_ascii_uppercase()).unwrap_or_default();
                    format!("{stem}{first}{}", c.as_str())
                })
                .collect(),
            None => vec![name.to_string()],
        };
        if e.get("min").and_then(Value::as_u64).unwrap_or(0) >= 1 {
            mandatory.extend(keys.iter().cloned());
        }
        if e.get("isSummary").and_then(Value::as_bool) == Some(true) {
            summary.extend(keys);
        }
    }
    Some((
        rtype,
        serde_json::json!({"mandatory": mandatory, "summary": summary}),
    ))
}

fn lines(mut items: Vec<(String, Value)>) -> Result<String> {
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::from("[\n");
    for (i, (_, v)) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(",\n");
        }
        out.push_str(&serde_json::to_string(v)?);
    }
    out.push_str("\n]\n");
    Ok(out)
}

/// The Danish terminology the gateway needs at run time (FSIII, municipality codes), from the
/// files named in [`DANISH_SOURCES`] below a folder of IG artifacts (`../shared/fhir-ig`):
/// codes, labels and hierarchy only, one resource per line.
pub fn derive_danish_terminology(ig_root: &Path) -> Result<String> {
    let mut terms = Vec::new();
    for rel in DANISH_SOURCES {
        let path = ig_root.join(rel);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let r: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let url = r.get("url").and_then(Value::as_str).unwrap_or_default();
        terms.push((
            url.to_string(),
            fhir_core::validation::terminology::compact(&r),
        ));
    }
    lines(terms)
}

/// Where each embedded Danish code system and value set comes from, below the IG folder.
pub const DANISH_SOURCES: &[&str] = &[
    "kl-term/CodeSystem-FSIII.json",
    "dk-core/CodeSystem-dk-core-municipality-codes.json",
    "dk-core/CodeSystem-dk-core-municipality-codes-greenland.json",
    "dk-core/ValueSet-dk-core-MunicipalityCodes.json",
];

/// The embedded files are gzip-compressed: 2 MB in the repository instead of 15.
pub fn gzip(text: &str) -> Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(text.as_bytes())?;
    Ok(enc.finish()?)
}

/// Write both files into `out_dir`.
pub fn write_definitions(package: &Path, out_dir: &Path) -> Result<()> {
    let d = derive_definitions(package)?;
    std::fs::create_dir_all(out_dir)?;
    std::fs::write(
        out_dir.join("structure-definitions.json.gz"),
        gzip(&d.structure_definitions)?,
    )?;
    std::fs::write(out_dir.join("terminology.json.gz"), gzip(&d.terminology)?)?;
    std::fs::write(out_dir.join("summary-elements.json"), &d.summary_elements)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fhir_core::validation::definitions::gunzip;

    /// The committed files are what the deriver makes of the published package (when it is
    /// beside the checkout): regenerate with `cargo xtask derive definitions --package …`.
    #[test]
    fn embedded_danish_terminology_is_up_to_date() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fhir-ig");
        if !root.is_dir() {
            eprintln!(
                "NOTE: Danish terminology staleness check SKIPPED: {} not found",
                root.display()
            );
            return;
        }
        let fresh = derive_danish_terminology(&root).expect("derive");
        let committed = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/dk/terminology.json"),
        )
        .expect("read");
        assert!(
            committed == fresh,
            "profiles/dk/terminology.json is stale: cargo xtask derive terminology"
        );
    }

    #[test]
    fn embedded_definitions_are_up_to_date() {
        let package = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fhir-packages/hl7.fhir.r4.examples-4.0.1.tgz");
        if !package.is_file() {
            eprintln!(
                "NOTE: definitions staleness check SKIPPED: {} not found",
                package.display()
            );
            return;
        }
        let d = derive_definitions(&package).expect("derive");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/r4");
        let read = |f: &str| gunzip(&std::fs::read(dir.join(f)).expect("read")).expect("gunzip");
        assert!(
            read("structure-definitions.json.gz") == d.structure_definitions,
            "profiles/r4/structure-definitions.json.gz is stale"
        );
        assert!(
            read("terminology.json.gz") == d.terminology,
            "profiles/r4/terminology.json.gz is stale"
        );
        assert!(
            std::fs::read_to_string(dir.join("summary-elements.json")).expect("read")
                == d.summary_elements,
            "profiles/r4/summary-elements.json is stale"
        );
    }

    #[test]
    fn compaction_drops_prose() {
        let sd = serde_json::json!({"resourceType": "StructureDefinition", "url": "u", "kind": "resource",
            "description": "prose", "text": {"div": "x"},
            "snapshot": {"element": [{"id": "X", "path": "X", "definition": "prose", "short": "s",
                "comment": "c", "min": 0, "max": "*",
                "constraint": [{"key": "k", "severity": "error", "human": "prose", "expression": "true", "xpath": "x"}]}]}});
        let c = compact_structure_definition(&sd);
        let text = c.to_string();
        for word in ["prose", "\"short\"", "comment", "xpath"] {
            assert!(!text.contains(word), "{word} survived: {text}");
        }
        assert!(text.contains("\"expression\":\"true\""));
    }
}
