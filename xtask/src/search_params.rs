//! `cargo xtask derive search-params`: compile the R4 `SearchParameter` resources of a published
//! FHIR package (an npm-style `.tgz`) into the compact machine-facts file
//! `profiles/r4/search-parameters.json` that `fhir::search_params` embeds.
//!
//! Only a maintainer regenerating that file (and one test) runs this; the server never does. It
//! copies machine facts only (type, compiled paths, reference targets) and must never copy prose
//! (descriptions, names, publishers) into the file. FHIRPath is compiled here, once, into element
//! steps; expressions outside the small subset understood (`extension(...)`, indexers, `exists()`,
//! other `where` clauses, ...) are dropped rather than approximated. Experimental
//! `SearchParameter`s (the package's examples and extension-based parameters) are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

use fhir_core::fhir::search_params::{ParamType, PathStep, SearchParamDef};

/// The resource types the committed file is generated for.
pub const DEFAULT_TYPES: &[&str] = &[
    "Patient",
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "CareTeam",
    "CarePlan",
    "Goal",
    "Encounter",
    "EpisodeOfCare",
    "Condition",
    "ServiceRequest",
    "Composition",
    "Communication",
    "Provenance",
    "MessageHeader",
    "DocumentReference",
    "Task",
    "Bundle",
    "Observation",
    "Endpoint",
    "AuditEvent",
    "OperationOutcome",
    "Location",
    "RelatedPerson",
    "Device",
    "Group",
    "Procedure",
    "Questionnaire",
    "QuestionnaireResponse",
    "Consent",
    "Appointment",
    "List",
    "Medication",
    "MedicationRequest",
    "Substance",
    "HealthcareService",
    "Schedule",
    "Slot",
    "Specimen",
    "DiagnosticReport",
    "Media",
    "Binary",
    "Basic",
    "Coverage",
    "ClinicalImpression",
    "CommunicationRequest",
    "Flag",
    "ImagingStudy",
    "Immunization",
    "NutritionOrder",
    "Person",
    "RiskAssessment",
    "SupplyRequest",
    "DeviceRequest",
    "AllergyIntolerance",
    "FamilyMemberHistory",
    "ValueSet",
    "CodeSystem",
    "StructureDefinition",
    "SearchParameter",
    "CapabilityStatement",
];

/// Parameters defined on `Resource`/`DomainResource` that every type gets.
const COMMON_PARAMS: &[&str] = &[
    "_id",
    "_lastUpdated",
    "_profile",
    "_security",
    "_source",
    "_tag",
];

/// Value of the file's `generatedBy` field.
const GENERATED_BY: &str = "cargo xtask derive search-params";

/// Derive the search parameters of `resource_types` from `package_tgz`:
/// `{"source": "<package>#<version>", "generatedBy": ..., "resources": {Type: {code: def}}}`, with
/// types and codes sorted and each `def` in the form of [`SearchParamDef::to_json`].
pub fn derive_search_parameters(package_tgz: &Path, resource_types: &[&str]) -> Result<Value> {
    Ok(derive_with_report(package_tgz, resource_types)?.file)
}

/// Derive the parameters of [`DEFAULT_TYPES`] from `package_tgz` and write them to `out`, one
/// parameter per line.
pub fn write_search_parameters(package_tgz: &Path, out: &Path) -> Result<()> {
    let value = derive_search_parameters(package_tgz, DEFAULT_TYPES)?;
    std::fs::write(out, render(&value)).with_context(|| format!("writing {}", out.display()))
}

/// A derived file plus what was left out of it, for maintainers reviewing a regeneration.
#[derive(Debug, Clone)]
pub struct Derivation {
    /// The file, as [`derive_search_parameters`] returns it.
    pub file: Value,
    /// `Type.code: part` for each expression part of a type that could not be compiled.
    pub dropped_parts: Vec<String>,
    /// `Type.code` for each parameter left out because none of its parts compiled.
    pub dropped_params: Vec<String>,
}

/// [`derive_search_parameters`], also reporting the expressions it had to drop.
pub fn derive_with_report(package_tgz: &Path, resource_types: &[&str]) -> Result<Derivation> {
    let package = Package::read(package_tgz)
        .with_context(|| format!("reading FHIR package {}", package_tgz.display()))?;
    for t in resource_types {
        if !package.resource_types.contains(*t) {
            bail!("{t} is not a resource type of {}", package.id);
        }
    }
    let mut by_type: ByType = resource_types
        .iter()
        .map(|t| (*t, BTreeMap::new()))
        .collect();
    let mut derivation = Derivation {
        file: Value::Null,
        dropped_parts: Vec::new(),
        dropped_params: Vec::new(),
    };
    for sp in &package.search_parameters {
        add_search_parameter(sp, &mut by_type, &mut derivation)?;
    }

    let resources: Map<String, Value> = by_type
        .into_iter()
        .map(|(rtype, params)| {
            let params: Map<String, Value> = params
                .into_iter()
                .map(|(code, def)| (code, def.to_json()))
                .collect();
            (rtype.to_string(), Value::Object(params))
        })
        .collect();
    let mut file = Map::new();
    file.insert("source".into(), package.id.into());
    file.insert("generatedBy".into(), GENERATED_BY.into());
    file.insert("resources".into(), Value::Object(resources));
    derivation.file = Value::Object(file);
    Ok(derivation)
}

/// The parameters derived so far, per resource type and code (both sorted).
type ByType<'a> = BTreeMap<&'a str, BTreeMap<String, SearchParamDef>>;

/// Add one `SearchParameter` resource to every type in `by_type` it applies to, noting in
/// `report` what had to be dropped.
fn add_search_parameter(sp: &Value, by_type: &mut ByType, report: &mut Derivation) -> Result<()> {
    if sp.get("experimental").and_then(Value::as_bool) == Some(true) {
        return Ok(());
    }
    let id = sp.get("id").and_then(Value::as_str).unwrap_or("?");
    let (Some(code), Some(type_code)) = (
        sp.get("code").and_then(Value::as_str),
        sp.get("type").and_then(Value::as_str),
    ) else {
        bail!("SearchParameter {id} has no code or type");
    };
    let ptype = ParamType::from_code(type_code)
        .with_context(|| format!("SearchParameter {id} has unknown type {type_code:?}"))?;
    let bases = strings(sp.get("base"));
    let common = bases
        .iter()
        .any(|b| *b == "Resource" || *b == "DomainResource");
    if common && !COMMON_PARAMS.contains(&code) {
        return Ok(());
    }
    let parts: Vec<(&str, Option<CompiledPath>)> = sp
        .get("expression")
        .and_then(Value::as_str)
        .map(split_union)
        .unwrap_or_default()
        .into_iter()
        .map(|part| (part, compile_part(part)))
        .collect();
    let mut declared_targets: Vec<String> = strings(sp.get("target"))
        .into_iter()
        .map(String::from)
        .collect();
    declared_targets.sort();
    declared_targets.dedup();

    for (rtype, params) in by_type.iter_mut() {
        if !common && !bases.contains(rtype) {
            continue;
        }
        // Each part starts with the type it is for; the common ones with Resource.
        let for_this_type = |root: &str| {
            if common {
                root == "Resource" || root == "DomainResource"
            } else {
                root == *rtype
            }
        };
        let mut paths = Vec::new();
        for (part, compiled) in &parts {
            match compiled {
                Some((root, steps)) if for_this_type(root) => paths.push(steps.clone()),
                Some(_) => {}
                None if for_this_type(leading_identifier(part)) => {
                    report.dropped_parts.push(format!("{rtype}.{code}: {part}"));
                }
                None => {}
            }
        }
        if paths.is_empty() {
            report.dropped_params.push(format!("{rtype}.{code}"));
            continue;
        }
        let targets = if ptype == ParamType::Reference {
            narrow_targets(&declared_targets, &paths)
        } else {
            Vec::new()
        };
        let def = SearchParamDef {
            code: code.to_string(),
            ptype: ptype.clone(),
            paths,
            targets,
        };
        if params.insert(code.to_string(), def).is_some() {
            bail!("{rtype} has two search parameters with code {code:?} (second: {id})");
        }
    }
    Ok(())
}

/// What is read from the package: its id, the resource types it defines, its SearchParameters.
struct Package {
    /// `name#version`, the FHIR package id.
    id: String,
    resource_types: BTreeSet<String>,
    /// Sorted by file name, so the output does not depend on archive order.
    search_parameters: Vec<Value>,
}

impl Package {
    fn read(path: &Path) -> Result<Package> {
        let tgz = fhir_core::validation::package::Tgz::read(path, |name| {
            name.starts_with("SearchParameter-") && name.ends_with(".json")
        })?;
        let resource_types = tgz
            .names
            .iter()
            .filter_map(|n| {
                n.strip_prefix("StructureDefinition-")?
                    .strip_suffix(".json")
            })
            .map(String::from)
            .collect();
        Ok(Package {
            id: tgz.id,
            resource_types,
            search_parameters: tgz
                .parsed
                .into_iter()
                .map(|(name, v)| v.map_err(|e| anyhow::anyhow!("{name} {e}")))
                .collect::<Result<_>>()?,
        })
    }
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Narrow a reference parameter's declared targets to the types its `resolve() is T` filters
/// allow, when every path ends in such a filter (`CarePlan.patient` → `Patient` only).
fn narrow_targets(declared: &[String], paths: &[Vec<PathStep>]) -> Vec<String> {
    let mut allowed = BTreeSet::new();
    for path in paths {
        match path.last().and_then(|s| s.ref_types.as_ref()) {
            Some(types) => allowed.extend(types.iter().map(String::as_str)),
            None => return declared.to_vec(),
        }
    }
    let narrowed: Vec<String> = declared
        .iter()
        .filter(|t| allowed.contains(t.as_str()))
        .cloned()
        .collect();
    if narrowed.is_empty() {
        declared.to_vec()
    } else {
        narrowed
    }
}

/// Split a FHIRPath union `A | B | C` at top level (not inside parentheses or quotes).
fn split_union(expression: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quoted, mut start) = (0usize, false, 0);
    for (i, c) in expression.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            '|' if !quoted && depth == 0 => {
                parts.push(expression[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(expression[start..].trim());
    parts.retain(|p| !p.is_empty());
    parts
}

fn leading_identifier(s: &str) -> &str {
    let s = s.trim_start_matches('(');
    let end = s
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(s.len());
    &s[..end]
}

/// A compiled expression part: its root type and the steps from there.
type CompiledPath<'a> = (&'a str, Vec<PathStep>);

/// Compile one union part into its root type and steps. Understood: `Type.a.b`,
/// `(Type.a as T)`, `.as(T)` and `.ofType(T)` (the step becomes the concrete choice element `aT`),
/// `.where(resolve() is T)` and `.where(field = 'text')`. `None` for anything else.
fn compile_part(part: &str) -> Option<CompiledPath<'_>> {
    let part = part.trim();
    let (root, mut steps, rest) = match part.strip_prefix('(') {
        Some(inner) => {
            let close = matching_paren(inner)?;
            let (path, ty) = inner[..close].split_once(" as ")?;
            let (root, mut steps) = compile_part(path)?;
            restrict(steps.last_mut()?, ty.trim())?;
            (root, steps, &inner[close + 1..])
        }
        None => {
            let end = part.find('.').unwrap_or(part.len());
            (&part[..end], Vec::new(), &part[end..])
        }
    };
    if !is_identifier(root) || !root.starts_with(|c: char| c.is_ascii_uppercase()) {
        return None;
    }
    let mut rest = rest;
    while !rest.is_empty() {
        rest = rest.strip_prefix('.')?;
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let (name, after) = rest.split_at(end);
        if name.is_empty() {
            return None;
        }
        match after.strip_prefix('(') {
            None => {
                steps.push(PathStep::named(name));
                rest = after;
            }
            Some(call) => {
                let close = matching_paren(call)?;
                let args = call[..close].trim();
                let step = steps.last_mut()?;
                match name {
                    "as" | "ofType" => restrict(step, args)?,
                    "where" => add_where(step, args)?,
                    _ => return None,
                }
                rest = &call[close + 1..];
            }
        }
    }
    Some((root, steps))
}

/// Index of the `)` closing an already opened `(` in `s`.
fn matching_paren(s: &str) -> Option<usize> {
    let (mut depth, mut quoted) = (0usize, false);
    for (i, c) in s.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => {
                if depth == 0 {
                    return Some(i);
                }
                depth -= 1;
            }
            _ => {}
        }
    }
    None
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `value` restricted to type `Quantity` is the element `valueQuantity`.
fn restrict(step: &mut PathStep, ty: &str) -> Option<()> {
    if !is_identifier(ty) || step.ref_types.is_some() || step.child_equals.is_some() {
        return None;
    }
    let mut chars = ty.chars();
    let first = chars.next()?.to_ascii_uppercase();
    step.name = format!("{}{first}{}", step.name, chars.as_str());
    Some(())
}

/// `resolve() is T` or `field = 'text'`, as a filter on `step`.
fn add_where(step: &mut PathStep, condition: &str) -> Option<()> {
    if step.ref_types.is_some() || step.child_equals.is_some() {
        return None;
    }
    if let Some(ty) = condition.strip_prefix("resolve() is ") {
        let ty = ty.trim();
        if !is_identifier(ty) {
            return None;
        }
        step.ref_types = Some(vec![ty.to_string()]);
        return Some(());
    }
    let (field, literal) = condition.split_once('=')?;
    let (field, literal) = (field.trim(), literal.trim());
    let text = literal.strip_prefix('\'')?.strip_suffix('\'')?;
    if !is_identifier(field) || text.contains(['\'', '\\']) {
        return None;
    }
    step.child_equals = Some((field.to_string(), text.to_string()));
    Some(())
}

/// The file's text: one parameter per line, everything else indented, ending in a newline.
fn render(file: &Value) -> String {
    let mut out = String::new();
    write_value(file, 0, &mut out);
    out.push('\n');
    out
}

/// Objects above parameter level (file, resources, type) are laid out one entry per line; values
/// below are written compactly.
fn write_value(v: &Value, depth: usize, out: &mut String) {
    const EXPANDED_LEVELS: usize = 3;
    match v {
        Value::Object(map) if depth < EXPANDED_LEVELS && !map.is_empty() => {
            out.push_str("{\n");
            for (i, (key, value)) in map.iter().enumerate() {
                out.push_str(&"  ".repeat(depth + 1));
                out.push_str(&Value::String(key.clone()).to_string());
                out.push_str(": ");
                write_value(value, depth + 1, out);
                out.push_str(if i + 1 < map.len() { ",\n" } else { "\n" });
            }
            out.push_str(&"  ".repeat(depth));
            out.push('}');
        }
        _ => out.push_str(&v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fhir_core::fhir::search_params::SearchParamRegistry;

    /// The committed file, as the server embeds it.
    const COMMITTED: &str = include_str!("../../profiles/r4/search-parameters.json");

    fn package_path() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fhir-packages/hl7.fhir.r4.examples-4.0.1.tgz")
    }

    fn step(name: &str) -> PathStep {
        PathStep::named(name)
    }

    #[test]
    fn committed_file_is_what_the_package_derives() {
        let package = package_path();
        if !package.exists() {
            eprintln!(
                "skipped: {} is absent (only the project's workspace has it)",
                package.display()
            );
            return;
        }
        let derived = match derive_with_report(&package, DEFAULT_TYPES) {
            Ok(d) => d,
            Err(e) => panic!("deriving from {}: {e:#}", package.display()),
        };
        assert!(
            render(&derived.file) == COMMITTED,
            "profiles/r4/search-parameters.json is stale: run `cargo xtask derive search-params`"
        );
        // Known parts that must be dropped, not guessed at.
        for dropped in [
            "Patient.deceased: Patient.deceased.exists() and Patient.deceased != false",
            "Bundle.composition: Bundle.entry[0].resource",
        ] {
            assert!(
                derived.dropped_parts.iter().any(|d| d == dropped),
                "{dropped}"
            );
        }
        assert!(derived
            .dropped_params
            .iter()
            .any(|p| p == "Bundle.composition"));
        eprintln!(
            "{} parts dropped ({} parameters left without a path):\n  {}",
            derived.dropped_parts.len(),
            derived.dropped_params.len(),
            derived.dropped_parts.join("\n  ")
        );
    }

    #[test]
    fn committed_file_has_facts_only_and_loads() {
        let v: Value = serde_json::from_str(COMMITTED).expect("committed file is JSON");
        assert_eq!(v["source"], "hl7.fhir.r4.examples#4.0.1");
        assert_eq!(v["generatedBy"], GENERATED_BY);
        let resources = v["resources"].as_object().expect("resources object");
        let types: BTreeSet<&str> = resources.keys().map(String::as_str).collect();
        assert_eq!(types, DEFAULT_TYPES.iter().copied().collect());
        for (rtype, params) in resources {
            let params = params.as_object().expect("params object");
            let codes: Vec<&String> = params.keys().collect();
            assert!(
                codes.windows(2).all(|w| w[0] < w[1]),
                "{rtype} codes sorted"
            );
            for (code, def) in params {
                let keys: Vec<&str> = def
                    .as_object()
                    .expect("def")
                    .keys()
                    .map(String::as_str)
                    .collect();
                assert!(
                    keys.iter()
                        .all(|k| ["type", "paths", "targets"].contains(k)),
                    "{rtype}.{code} carries more than machine facts: {keys:?}"
                );
            }
        }
        assert!(SearchParamRegistry::from_json(&v).is_ok());
    }

    #[test]
    fn unions_split_at_top_level_only() {
        assert_eq!(
            split_union("A.b | (A.c as Quantity) | A.d.where(x='1|2')"),
            vec!["A.b", "(A.c as Quantity)", "A.d.where(x='1|2')"]
        );
    }

    #[test]
    fn simple_paths_compile_to_element_steps() {
        assert_eq!(
            compile_part("CarePlan.activity.detail.code"),
            Some((
                "CarePlan",
                vec![step("activity"), step("detail"), step("code")]
            ))
        );
        assert_eq!(compile_part("Observation"), Some(("Observation", vec![])));
    }

    #[test]
    fn type_restrictions_name_the_concrete_choice_element() {
        assert_eq!(
            compile_part("(Observation.value as Quantity)"),
            Some(("Observation", vec![step("valueQuantity")]))
        );
        assert_eq!(
            compile_part("(Observation.value as CodeableConcept).text"),
            Some((
                "Observation",
                vec![step("valueCodeableConcept"), step("text")]
            ))
        );
        assert_eq!(
            compile_part("Condition.onset.as(dateTime)"),
            Some(("Condition", vec![step("onsetDateTime")]))
        );
        assert_eq!(
            compile_part("(Goal.target.due as date)"),
            Some(("Goal", vec![step("target"), step("dueDate")]))
        );
        assert_eq!(
            compile_part("Observation.value.ofType(Period)"),
            Some(("Observation", vec![step("valuePeriod")]))
        );
    }

    #[test]
    fn where_clauses_become_step_filters() {
        let mut subject = step("subject");
        subject.ref_types = Some(vec!["Patient".into()]);
        assert_eq!(
            compile_part("Encounter.subject.where(resolve() is Patient)"),
            Some(("Encounter", vec![subject]))
        );
        let mut telecom = step("telecom");
        telecom.child_equals = Some(("system".into(), "phone".into()));
        assert_eq!(
            compile_part("Patient.telecom.where(system='phone')"),
            Some(("Patient", vec![telecom]))
        );
    }

    #[test]
    fn unsupported_fhirpath_is_dropped() {
        for part in [
            "Patient.extension('http://x/y')",
            "Bundle.entry[0].resource",
            "Patient.deceased.exists() and Patient.deceased != false",
            "QuestionnaireResponse.item.where(hasExtension('http://x')).answer.value.ofType(Reference)",
            "Patient.name.where(resolve() is Patient or resolve() is Group)",
            "%resource.referenceSeq.chromosome",
            "Patient.",
            "",
        ] {
            assert_eq!(compile_part(part), None, "{part}");
        }
    }

    #[test]
    fn targets_narrow_only_when_every_path_filters() {
        let declared = vec!["Group".to_string(), "Patient".to_string()];
        let mut filtered = step("subject");
        filtered.ref_types = Some(vec!["Patient".into()]);
        assert_eq!(
            narrow_targets(&declared, &[vec![filtered.clone()]]),
            vec!["Patient".to_string()]
        );
        assert_eq!(
            narrow_targets(&declared, &[vec![filtered], vec![step("patient")]]),
            declared
        );
    }

    #[test]
    fn rendering_puts_one_parameter_per_line() {
        let v = serde_json::json!({"source": "p#1", "resources": {"T": {
            "a": {"type": "token", "paths": [["x"]]}, "b": {"type": "uri", "paths": [["y"]]}}}});
        assert_eq!(
            render(&v),
            "{\n  \"source\": \"p#1\",\n  \"resources\": {\n    \"T\": {\n      \
             \"a\": {\"type\":\"token\",\"paths\":[[\"x\"]]},\n      \
             \"b\": {\"type\":\"uri\",\"paths\":[[\"y\"]]}\n    }\n  }\n}\n"
        );
    }
}
