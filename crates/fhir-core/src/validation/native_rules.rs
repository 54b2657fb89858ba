//! Base invariants answered from the JSON instead of through the FHIRPath evaluator, with the
//! same verdict (unit tests hold each to its expression over written cases and every resource
//! of the official R4 examples). A rule is answered here only where it is written exactly as R4
//! writes it and its values are of the JSON types it was written for; otherwise the answer is
//! "not decided" and the expression is evaluated as before.
//!
//! Two kinds: rules whose expression walks a whole CodeSystem or StructureDefinition (or runs
//! on each of its ElementDefinitions), the costliest of a pass over the official R4 examples,
//! which are mostly conformance resources (`csd-1` 92 ms, `sdf-9` 71 ms, `eld-2` 51 ms … of
//! 826 ms of invariants, docs/validation.md); and existence rules met by the ten thousand
//! (`cpt-2` on every ContactPoint, `bdl-5` on every Bundle entry, ValueSet expansion entries),
//! where the evaluator's fixed cost per evaluation is most of the work. Among the latter, the
//! rules on every ElementDefinition's `path` (`eld-19`, `eld-20`: 95,000 evaluations over the
//! examples, the most of any rule) use the very regular expression `matches()` compiles, so they
//! match exactly as the expression does.

use std::sync::OnceLock;

use serde_json::{Map, Value};

use crate::fhir::{companion, member};

/// csd-1 as R4 writes it (CodeSystem): every code of the concept tree is unique.
const CSD_1: &str = "concept.code.combine($this.descendants().concept.code).isDistinct()";
/// sdf-9 as R4 writes it (StructureDefinition): the root element has no label, code or
/// requirements.
const SDF_9: &str = "children().element.where(path.contains('.').not()).label.empty() and children().element.where(path.contains('.').not()).code.empty() and children().element.where(path.contains('.').not()).requirements.empty()";
/// sdf-19 as R4 writes it (StructureDefinition): HL7's own definitions use only FHIR and
/// FHIRPath system types.
const SDF_19: &str = "url.startsWith('http://hl7.org/fhir/StructureDefinition') implies (differential.element.type.code.all(matches('^[a-zA-Z0-9]+$') or matches('^http:\\\\/\\\\/hl7\\\\.org\\\\/fhirpath\\\\/System\\\\.[A-Z][A-Za-z]+$')) and snapshot.element.type.code.all(matches('^[a-zA-Z0-9\\\\.]+$') or matches('^http:\\\\/\\\\/hl7\\\\.org\\\\/fhirpath\\\\/System\\\\.[A-Z][A-Za-z]+$')))";

/// The answer from the JSON of rule `key`, when it is one of [`RULES`] and written as R4 writes
/// it (found once per constraint, at load).
pub(crate) fn rule(key: &str, expression: &str) -> Option<Rule> {
    RULES
        .iter()
        .find(|(k, e, _)| *k == key && *e == expression)
        .map(|(_, _, r)| *r)
}

/// A rule's verdict on its focus: pass `true`, fail `false`; `None` when the focus holds values
/// of other JSON types than the rule was written for (evaluate the expression). Most rules are
/// on an object; a few on a primitive's string value (`eld-3` on `ElementDefinition.max`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rule {
    Object(fn(&Map<String, Value>) -> Option<bool>),
    Text(fn(&str) -> Option<bool>),
}

impl Rule {
    /// The verdict on `focus`, when it is the kind of value the rule is written for.
    pub(crate) fn verdict(self, focus: &Value) -> Option<bool> {
        match (self, focus) {
            (Rule::Object(rule), Value::Object(o)) => rule(o),
            (Rule::Text(rule), Value::String(s)) => rule(s),
            _ => None,
        }
    }
}

#[cfg(test)]
fn verdict(key: &str, expression: &str, focus: &Value) -> Option<bool> {
    rule(key, expression)?.verdict(focus)
}

/// Each rule: its key, its expression as R4 writes it, and its answer from the JSON.
const RULES: &[(&str, &str, Rule)] = &[
    ("csd-1", CSD_1, Rule::Object(csd_1)),
    ("sdf-9", SDF_9, Rule::Object(sdf_9)),
    ("sdf-19", SDF_19, Rule::Object(sdf_19)),
    ("sdf-1", SDF_1, Rule::Object(sdf_1)),
    ("sdf-3", SDF_3, Rule::Object(sdf_3)),
    ("sdf-14", SDF_14, Rule::Object(sdf_14)),
    ("sdf-16", SDF_16, Rule::Object(sdf_16)),
    ("sdf-23", SDF_23, Rule::Object(sdf_23)),
    ("eld-2", ELD_2, Rule::Object(eld_2)),
    ("eld-13", ELD_13, Rule::Object(eld_13)),
    ("eld-14", ELD_14, Rule::Object(eld_14)),
    ("eld-17", ELD_17, Rule::Object(eld_17)),
    ("eld-18", ELD_18, Rule::Object(eld_18)),
    ("sdf-2", SDF_2, Rule::Object(sdf_2)),
    ("sdf-8b", SDF_8B, Rule::Object(sdf_8b)),
    ("sdf-17", SDF_17, Rule::Object(sdf_17)),
    ("eld-21", ELD_21, Rule::Object(eld_21)),
    ("vsd-6", VSD_6, Rule::Object(vsd_6)),
    ("vsd-9", VSD_9, Rule::Object(vsd_9)),
    ("vsd-10", VSD_10, Rule::Object(vsd_10)),
    ("cpt-2", CPT_2, Rule::Object(cpt_2)),
    ("bdl-5", BDL_5, Rule::Object(bdl_5)),
    ("bdl-8", BDL_8, Rule::Object(bdl_8)),
    ("dom-6", DOM_6, Rule::Object(dom_6)),
    ("eld-19", ELD_19, Rule::Object(eld_19)),
    ("eld-20", ELD_20, Rule::Object(eld_20)),
    ("bdl-7", BDL_7, Rule::Object(bdl_7)),
    ("sdf-0", SDF_0, Rule::Object(sdf_0)),
    ("sdf-4", SDF_4, Rule::Object(sdf_4)),
    ("sdf-22", SDF_22, Rule::Object(sdf_22)),
    ("eld-11", ELD_11, Rule::Object(eld_11)),
    ("eld-12", ELD_12, Rule::Object(eld_12)),
    ("eld-3", ELD_3, Rule::Text(eld_3)),
];

/// eld-3 (ElementDefinition.max): `*` or a whole number not below zero; a text that is not a
/// number makes the last part empty, a pass.
const ELD_3: &str = "empty() or ($this = '*') or (toInteger() >= 0)";
/// bdl-7 (Bundle): outside a history, no two entries with a fullUrl have the same fullUrl and
/// version (the two texts joined, as `&` joins them).
const BDL_7: &str = "(type = 'history') or entry.where(fullUrl.exists()).select(fullUrl&resource.meta.versionId).isDistinct()";
/// sdf-0 (StructureDefinition): the name holds a capital letter (unanchored, as eld-19).
const SDF_0: &str = "name.matches('[A-Z]([A-Za-z0-9_]){0,254}')";
/// sdf-0's pattern.
const SDF_0_PATTERN: &str = "[A-Z]([A-Za-z0-9_]){0,254}";
/// sdf-4 (StructureDefinition): a concrete definition has a base.
const SDF_4: &str = "abstract = true or baseDefinition.exists()";
/// sdf-22 (StructureDefinition): HL7's own definitions give no default values.
const SDF_22: &str = "url.startsWith('http://hl7.org/fhir/StructureDefinition') implies (snapshot.element.defaultValue.empty() and differential.element.defaultValue.empty())";
/// eld-11 (ElementDefinition): a binding only on a bindable type. As written, `select(…)`
/// yields a boolean (true or false) for each type with a code, which `exists()` finds.
const ELD_11: &str = "binding.empty() or type.code.empty() or type.select((code = 'code') or (code = 'Coding') or (code='CodeableConcept') or (code = 'Quantity') or (code = 'string') or (code = 'uri')).exists()";
/// eld-12 (ElementDefinition.binding): a value set is an absolute URL or URN.
const ELD_12: &str = "valueSet.exists() implies (valueSet.startsWith('http:') or valueSet.startsWith('https') or valueSet.startsWith('urn:'))";

/// bdl-8 (Bundle.entry): a fullUrl is not a version-specific reference.
const BDL_8: &str = "fullUrl.contains('/_history/').not()";
/// dom-6 (DomainResource): a resource has a narrative (a warning).
const DOM_6: &str = "text.`div`.exists()";
/// eld-19 (ElementDefinition): a path holds a character outside the special ones. FHIRPath's
/// `matches()` is not anchored: one such character is enough.
const ELD_19: &str = r#"path.matches('[^\\s\\.,:;\\\'"\\/|?!@#$%&*()\\[\\]{}]{1,64}(\\.[^\\s\\.,:;\\\'"\\/|?!@#$%&*()\\[\\]{}]{1,64}(\\[x\\])?(\\:[^\\s\\.]+)?)*')"#;
/// eld-19's pattern, as the FHIRPath string above reads.
const ELD_19_PATTERN: &str = r#"[^\s\.,:;\'"\/|?!@#$%&*()\[\]{}]{1,64}(\.[^\s\.,:;\'"\/|?!@#$%&*()\[\]{}]{1,64}(\[x\])?(\:[^\s\.]+)?)*"#;
/// eld-20 (ElementDefinition): a path holds a letter (unanchored, as eld-19; a warning).
const ELD_20: &str = r"path.matches('[A-Za-z][A-Za-z0-9]*(\\.[a-z][A-Za-z0-9]*(\\[x])?)*')";
/// eld-20's pattern, as the FHIRPath string above reads.
const ELD_20_PATTERN: &str = r"[A-Za-z][A-Za-z0-9]*(\.[a-z][A-Za-z0-9]*(\[x])?)*";

/// sdf-2 (StructureDefinition.mapping): a mapping has a name or a uri.
const SDF_2: &str = "name.exists() or uri.exists()";
/// sdf-8b (StructureDefinition.snapshot): every element has a base.
const SDF_8B: &str = "element.all(base.exists())";
/// sdf-17 (StructureDefinition): the differential's element ids are there and unique.
const SDF_17: &str =
    "differential.element.all(id.exists()) and differential.element.id.trace('ids').isDistinct()";
/// eld-21 (ElementDefinition.constraint): a constraint has an expression (a warning).
const ELD_21: &str = "expression.exists()";
/// vsd-6 (ValueSet.expansion.contains): a code or a display.
const VSD_6: &str = "code.exists() or display.exists()";
/// vsd-9 (ValueSet.expansion.contains): a code, unless abstract.
const VSD_9: &str = "code.exists() or abstract = true";
/// vsd-10 (ValueSet.expansion.contains): a code has a system.
const VSD_10: &str = "code.empty() or system.exists()";
/// cpt-2 (ContactPoint): a value says what kind it is.
const CPT_2: &str = "value.empty() or system.exists()";
/// bdl-5 (Bundle.entry): a resource, a request or a response.
const BDL_5: &str = "resource.exists() or request.exists() or response.exists()";

/// sdf-1 (StructureDefinition): outside constraints, the snapshot's paths are unique.
const SDF_1: &str = "derivation = 'constraint' or snapshot.element.select(path).isDistinct()";
/// sdf-3 (StructureDefinition.snapshot): every element has a definition, min and max.
const SDF_3: &str = "element.all(definition.exists() and min.exists() and max.exists())";
/// sdf-14 (StructureDefinition): every element has an id.
const SDF_14: &str = "snapshot.element.all(id.exists()) and differential.element.all(id.exists())";
/// sdf-16 (StructureDefinition): the snapshot's element ids are there and unique.
const SDF_16: &str =
    "snapshot.element.all(id.exists()) and snapshot.element.id.trace('ids').isDistinct()";
/// sdf-23 (StructureDefinition): no slice name on a root element.
const SDF_23: &str =
    "(snapshot | differential).element.all(path.contains('.').not() implies sliceName.empty())";
/// eld-2 (ElementDefinition): min is not above max.
const ELD_2: &str =
    "min.empty() or max.empty() or (max = '*') or iif(max != '*', min <= max.toInteger())";
/// eld-13 (ElementDefinition): each type code once.
const ELD_13: &str = "type.select(code).isDistinct()";
/// eld-14 (ElementDefinition): each constraint key once.
const ELD_14: &str = "constraint.select(key).isDistinct()";
/// eld-17 (ElementDefinition.type): target profiles only on references and canonicals.
const ELD_17: &str = "(code='Reference' or code = 'canonical') or targetProfile.empty()";
/// eld-18 (ElementDefinition): a modifier says why it is one.
const ELD_18: &str = "(isModifier.exists() and isModifier) implies isModifierReason.exists()";

/// bdl-8: a string fullUrl without `/_history/`; no fullUrl at all passes (empty).
fn bdl_8(entry: &Map<String, Value>) -> Option<bool> {
    match values(entry, "fullUrl", true).as_slice() {
        [(Some(Value::String(u)), _)] => Some(!u.contains("/_history/")),
        [] => Some(true),
        _ => None,
    }
}

/// dom-6: a `text` object with a string `div`.
fn dom_6(resource: &Map<String, Value>) -> Option<bool> {
    match member(resource, "text") {
        None => Some(false),
        Some(Value::Object(text)) => match values(text, "div", true).as_slice() {
            [(Some(Value::String(_)), _)] => Some(true),
            [] => Some(false),
            _ => None,
        },
        Some(_) => None,
    }
}

fn eld_19(e: &Map<String, Value>) -> Option<bool> {
    static RE: OnceLock<Option<crate::fhirpath::Pattern>> = OnceLock::new();
    path_matches(e, &RE, ELD_19_PATTERN)
}

fn eld_20(e: &Map<String, Value>) -> Option<bool> {
    static RE: OnceLock<Option<crate::fhirpath::Pattern>> = OnceLock::new();
    path_matches(e, &RE, ELD_20_PATTERN)
}

/// `path.matches(pattern)` on an ElementDefinition with one string `path`.
fn path_matches(
    e: &Map<String, Value>,
    re: &OnceLock<Option<crate::fhirpath::Pattern>>,
    pattern: &str,
) -> Option<bool> {
    // A string path is the one value FHIRPath sees, with or without a `_path` companion.
    match member(e, "path") {
        Some(Value::String(p)) => matches(re, pattern, p),
        _ => None,
    }
}

/// `text.matches(pattern)` with the regular expression `matches()` would compile, built once
/// into `re`; `None` when it does not compile or cannot decide (left to the expression).
fn matches(
    re: &OnceLock<Option<crate::fhirpath::Pattern>>,
    pattern: &str,
    text: &str,
) -> Option<bool> {
    re.get_or_init(|| crate::fhirpath::build_regex(pattern).ok())
        .as_ref()?
        .is_match(text)
        .ok()
}

/// bdl-7. Every entry an object, its fullUrl and version strings (or absent); anything else is
/// left to the expression.
fn bdl_7(bundle: &Map<String, Value>) -> Option<bool> {
    match values(bundle, "type", true).as_slice() {
        // `empty or X` is true or empty: a pass either way
        [] => return Some(true),
        [(Some(Value::String(t)), None)] if t == "history" => return Some(true),
        [(Some(Value::String(_)), None)] => {}
        _ => return None,
    }
    let mut seen: rustc_hash::FxHashSet<String> = Default::default();
    for e in items(member(bundle, "entry")) {
        let Value::Object(e) = e else {
            return None;
        };
        let url = match values(e, "fullUrl", true).as_slice() {
            [] => continue,
            [(Some(Value::String(u)), None)] => u.as_str(),
            _ => return None,
        };
        let version = match member(e, "resource") {
            None | Some(Value::Null) => "",
            Some(Value::Object(r)) => match member(r, "meta") {
                None | Some(Value::Null) => "",
                Some(Value::Object(m)) => match values(m, "versionId", true).as_slice() {
                    [] => "",
                    [(Some(Value::String(v)), None)] => v.as_str(),
                    _ => return None,
                },
                Some(_) => return None,
            },
            Some(_) => return None,
        };
        if !seen.insert(format!("{url}{version}")) {
            return Some(false);
        }
    }
    Some(true)
}

fn sdf_0(root: &Map<String, Value>) -> Option<bool> {
    static RE: OnceLock<Option<crate::fhirpath::Pattern>> = OnceLock::new();
    match values(root, "name", true).as_slice() {
        [] => Some(true),
        [(Some(Value::String(n)), _)] => matches(&RE, SDF_0_PATTERN, n),
        _ => None,
    }
}

/// sdf-4. `abstract` absent makes `empty or X`: true or empty, a pass either way.
fn sdf_4(root: &Map<String, Value>) -> Option<bool> {
    match values(root, "abstract", true).as_slice() {
        [(Some(Value::Bool(true)), None)] | [] => Some(true),
        [(Some(Value::Bool(false)), None)] => Some(has(root, "baseDefinition", true)),
        _ => None,
    }
}

/// sdf-22. Decided only where no element has anything named like a default value: one that
/// does is left to the expression (which knows the choice's types).
fn sdf_22(root: &Map<String, Value>) -> Option<bool> {
    match values(root, "url", true).as_slice() {
        // `empty implies X` is true or empty: a pass either way
        [] => return Some(true),
        [(Some(Value::String(u)), None)]
            if !u.starts_with("http://hl7.org/fhir/StructureDefinition") =>
        {
            return Some(true)
        }
        [(Some(Value::String(_)), None)] => {}
        _ => return None,
    }
    let named = |k: &String| k.trim_start_matches('_').starts_with("defaultValue");
    for part in ["snapshot", "differential"] {
        if all_elements(member(root, part))?
            .iter()
            .any(|e| e.keys().any(named))
        {
            return None;
        }
    }
    Some(true)
}

/// eld-11. With a binding, every type's code a plain string (or absent): true, as
/// [`ELD_11`] says. Anything else is left to the expression.
fn eld_11(e: &Map<String, Value>) -> Option<bool> {
    match member(e, "binding") {
        None | Some(Value::Null) => return Some(true),
        Some(Value::Object(_)) => {}
        Some(_) => return None,
    }
    for t in items(member(e, "type")) {
        match t {
            Value::Null => {}
            Value::Object(t) => match values(t, "code", true).as_slice() {
                [] | [(Some(Value::String(_)), None)] => {}
                _ => return None,
            },
            _ => return None,
        }
    }
    Some(true)
}

fn eld_12(binding: &Map<String, Value>) -> Option<bool> {
    match values(binding, "valueSet", true).as_slice() {
        [] => Some(true),
        [(Some(Value::String(v)), None)] => {
            Some(v.starts_with("http:") || v.starts_with("https") || v.starts_with("urn:"))
        }
        _ => None,
    }
}

/// The `element`s of `holder` (a snapshot or differential) that are objects.
fn elements(holder: &Map<String, Value>) -> impl Iterator<Item = &Map<String, Value>> {
    objects(member(holder, "element"))
}

/// The items of `v` for an `all(…)` over them: `None` when one is not an object (where the
/// criteria find nothing and fail; left to the expression).
fn all_objects(v: Option<&Value>) -> Option<Vec<&Map<String, Value>>> {
    items(v)
        .iter()
        .filter(|x| !x.is_null())
        .map(Value::as_object)
        .collect()
}

/// The elements of every snapshot (or differential) in `holder`, for an `all(…)`.
fn all_elements(holder: Option<&Value>) -> Option<Vec<&Map<String, Value>>> {
    let mut out = Vec::new();
    for h in objects(holder) {
        out.extend(all_objects(member(h, "element"))?);
    }
    Some(out)
}

fn sdf_1(root: &Map<String, Value>) -> Option<bool> {
    match values(root, "derivation", true).as_slice() {
        [(Some(Value::String(d)), _)] if d == "constraint" => return Some(true),
        // another derivation, or one without a value (`=` is false there): the paths decide
        [(Some(Value::String(_)), _)] | [(None, _)] => {}
        // no derivation: `{} or false` is empty, which passes
        [] => return Some(true),
        _ => return None,
    }
    let paths = objects(member(root, "snapshot"))
        .flat_map(elements)
        .flat_map(|e| values(e, "path", true));
    distinct(paths)
}

fn sdf_3(snapshot: &Map<String, Value>) -> Option<bool> {
    let all = all_objects(member(snapshot, "element"))?;
    Some(
        all.iter()
            .all(|e| has(e, "definition", true) && has(e, "min", true) && has(e, "max", true)),
    )
}

fn sdf_8b(snapshot: &Map<String, Value>) -> Option<bool> {
    let all = all_objects(member(snapshot, "element"))?;
    Some(all.iter().all(|e| has(e, "base", false)))
}

fn all_have_ids(holder: Option<&Value>) -> Option<bool> {
    Some(all_elements(holder)?.iter().all(|e| has(e, "id", true)))
}

fn sdf_14(root: &Map<String, Value>) -> Option<bool> {
    let snapshot = all_have_ids(member(root, "snapshot"))?;
    let differential = all_have_ids(member(root, "differential"))?;
    Some(snapshot && differential)
}

/// sdf-16 on the snapshot, sdf-17 on the differential: ids there and unique.
fn ids_unique(holder: Option<&Value>) -> Option<bool> {
    if !all_have_ids(holder)? {
        return Some(false);
    }
    distinct(
        objects(holder)
            .flat_map(elements)
            .flat_map(|e| values(e, "id", true)),
    )
}

fn sdf_16(root: &Map<String, Value>) -> Option<bool> {
    ids_unique(member(root, "snapshot"))
}

fn sdf_17(root: &Map<String, Value>) -> Option<bool> {
    ids_unique(member(root, "differential"))
}

fn sdf_2(mapping: &Map<String, Value>) -> Option<bool> {
    Some(has(mapping, "name", true) || has(mapping, "uri", true))
}

fn eld_21(constraint: &Map<String, Value>) -> Option<bool> {
    Some(has(constraint, "expression", true))
}

fn vsd_6(contains: &Map<String, Value>) -> Option<bool> {
    Some(has(contains, "code", true) || has(contains, "display", true))
}

fn vsd_9(contains: &Map<String, Value>) -> Option<bool> {
    if has(contains, "code", true) {
        return Some(true);
    }
    match values(contains, "abstract", true).as_slice() {
        // `false or {}` is empty, which passes
        [] | [(Some(Value::Bool(true)), _)] => Some(true),
        // false, or a value without a value (`=` finds it equal to nothing)
        [(Some(Value::Bool(false)), _)] | [(None, _)] => Some(false),
        _ => None,
    }
}

fn vsd_10(contains: &Map<String, Value>) -> Option<bool> {
    Some(!has(contains, "code", true) || has(contains, "system", true))
}

fn cpt_2(contact_point: &Map<String, Value>) -> Option<bool> {
    Some(!has(contact_point, "value", true) || has(contact_point, "system", true))
}

fn bdl_5(entry: &Map<String, Value>) -> Option<bool> {
    Some(
        has(entry, "resource", false)
            || has(entry, "request", false)
            || has(entry, "response", false),
    )
}

fn sdf_23(root: &Map<String, Value>) -> Option<bool> {
    let holders = objects(member(root, "snapshot")).chain(objects(member(root, "differential")));
    for e in holders.flat_map(elements) {
        // `path.contains('.').not()`: true without a dot, empty without a path value
        let root_or_unknown = match member(e, "path") {
            Some(Value::String(p)) => !p.contains('.'),
            Some(Value::Null) | None => true,
            Some(_) => return None,
        };
        if root_or_unknown && has(e, "sliceName", true) {
            return Some(false);
        }
    }
    Some(true)
}

/// A string FHIRPath's `toInteger()` converts: an optional sign and digits.
fn to_integer(s: &str) -> Option<Option<i64>> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Some(None); // not an integer: toInteger() is empty
    }
    s.parse::<i64>().ok().map(Some) // `None`: too large to decide here
}

fn eld_3(max: &str) -> Option<bool> {
    if max == "*" {
        return Some(true);
    }
    Some(to_integer(max)?.is_none_or(|n| n >= 0))
}

fn eld_2(e: &Map<String, Value>) -> Option<bool> {
    let min = values(e, "min", true);
    let max = values(e, "max", true);
    if min.is_empty() || max.is_empty() {
        return Some(true);
    }
    let ([(Some(Value::Number(min)), _)], [(Some(Value::String(max)), _)]) =
        (min.as_slice(), max.as_slice())
    else {
        return None;
    };
    if max == "*" {
        return Some(true);
    }
    let min = min.as_i64()?;
    // a max that is no integer makes the comparison empty, which passes
    Some(to_integer(max)?.is_none_or(|max| min <= max))
}

fn eld_13(e: &Map<String, Value>) -> Option<bool> {
    distinct(objects(member(e, "type")).flat_map(|t| values(t, "code", true)))
}

fn eld_14(e: &Map<String, Value>) -> Option<bool> {
    distinct(objects(member(e, "constraint")).flat_map(|c| values(c, "key", true)))
}

fn eld_17(t: &Map<String, Value>) -> Option<bool> {
    match values(t, "code", true).as_slice() {
        [(Some(Value::String(code)), _)] => {
            Some(code == "Reference" || code == "canonical" || !has(t, "targetProfile", true))
        }
        // no code: the comparisons are empty, and `{} or false` passes
        [] => Some(true),
        // a code without a value equals nothing: the target profiles decide
        [(None, _)] => Some(!has(t, "targetProfile", true)),
        _ => None,
    }
}

fn eld_18(e: &Map<String, Value>) -> Option<bool> {
    match values(e, "isModifier", true).as_slice() {
        // a value without a value is one item, which `and` takes as true
        [(Some(Value::Bool(true)), _)] | [(None, _)] => Some(has(e, "isModifierReason", true)),
        [(Some(Value::Bool(false)), _)] | [] => Some(true),
        _ => None,
    }
}

/// The values one JSON member stands for in FHIRPath: an array's items, or the value itself;
/// none for `null`.
fn items(v: Option<&Value>) -> &[Value] {
    match v {
        Some(Value::Array(a)) => a,
        Some(Value::Null) | None => &[],
        Some(v) => std::slice::from_ref(v),
    }
}

/// csd-1. The codes are those of the root's `concept`s and of the `concept`s of every object
/// below it (what `descendants().concept` reaches, contained resources included), compared as
/// [`distinct`] compares them.
fn csd_1(root: &Map<String, Value>) -> Option<bool> {
    let mut codes = Vec::new();
    let mut stack: Vec<&Map<String, Value>> = vec![root];
    while let Some(obj) = stack.pop() {
        for c in objects(member(obj, "concept")) {
            codes.extend(values(c, "code", true));
        }
        for (k, v) in obj {
            if k.starts_with('_') {
                continue;
            }
            stack.extend(objects(Some(v)));
        }
    }
    distinct(codes)
}

/// What FHIRPath finds as child `name` of `obj` (as `push_values` aligns them): each a value and,
/// for a primitive, its `_name` companion; nulls are nothing.
fn values<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    primitive: bool,
) -> Vec<(Option<&'a Value>, Option<&'a Value>)> {
    let v = member(obj, name).filter(|x| !x.is_null());
    let e = if primitive {
        companion(obj, name).filter(|x| !x.is_null())
    } else {
        None
    };
    match (v, e) {
        (Some(Value::Array(arr)), e) => {
            let earr = e.and_then(Value::as_array);
            let n = arr.len().max(earr.map_or(0, Vec::len));
            (0..n)
                .map(|i| {
                    let vi = arr.get(i).filter(|x| !x.is_null());
                    let ei = earr.and_then(|a| a.get(i)).filter(|x| !x.is_null());
                    (vi, ei)
                })
                .filter(|(vi, ei)| vi.is_some() || ei.is_some())
                .collect()
        }
        (None, Some(Value::Array(earr))) => earr
            .iter()
            .filter(|x| !x.is_null())
            .map(|ei| (None, Some(ei)))
            .collect(),
        (None, None) => Vec::new(),
        (v, e) => vec![(v, e)],
    }
}

/// Whether FHIRPath finds child `name` of `obj` ([`values`]).
fn has(obj: &Map<String, Value>, name: &str, primitive: bool) -> bool {
    !values(obj, name, primitive).is_empty()
}

/// `isDistinct()` over primitive values: equal strings are the same, values without a value
/// are the same when their companions are; `None` for any other kind of value.
fn distinct<'a>(
    vals: impl IntoIterator<Item = (Option<&'a Value>, Option<&'a Value>)>,
) -> Option<bool> {
    let mut seen: rustc_hash::FxHashSet<&str> = Default::default();
    let mut valueless: Vec<&Value> = Vec::new();
    let mut duplicate = false;
    for (v, e) in vals {
        match (v, e) {
            (Some(Value::String(s)), _) => duplicate |= !seen.insert(s.as_str()),
            (None, Some(ext)) => {
                duplicate |= valueless.contains(&ext);
                valueless.push(ext);
            }
            _ => return None,
        }
    }
    Some(!duplicate)
}

/// The objects among `items`.
fn objects(v: Option<&Value>) -> impl Iterator<Item = &Map<String, Value>> {
    items(v).iter().filter_map(Value::as_object)
}

/// sdf-9. `children().element`: the `element`s of every object among the root's members
/// (`snapshot`, `differential`). Those whose `path` has no `.` must have no label, code or
/// requirements; an element without a path value is not among them.
fn sdf_9(root: &Map<String, Value>) -> Option<bool> {
    for (k, v) in root {
        if k.starts_with('_') || k == "resourceType" {
            continue;
        }
        for child in items(Some(v)) {
            let Value::Object(child) = child else {
                continue;
            };
            for element in items(member(child, "element")) {
                let Value::Object(e) = element else {
                    continue;
                };
                let root_element = match member(e, "path") {
                    Some(Value::String(p)) => !p.contains('.'),
                    Some(Value::Null) | None => false,
                    Some(_) => return None,
                };
                if root_element
                    && (has(e, "label", true)
                        || has(e, "code", false)
                        || has(e, "requirements", true))
                {
                    return Some(false);
                }
            }
        }
    }
    Some(true)
}

/// sdf-19. Only definitions whose url starts with HL7's StructureDefinition base are held to it:
/// each type code of the differential a FHIR type name or a FHIRPath system type, of the
/// snapshot also with dots. A code without a value fails (`matches` gives nothing).
fn sdf_19(root: &Map<String, Value>) -> Option<bool> {
    match member(root, "url") {
        Some(Value::String(u)) if u.starts_with("http://hl7.org/fhir/StructureDefinition") => {}
        Some(Value::String(_)) | Some(Value::Null) | None => return Some(true),
        Some(_) => return None,
    }
    static SYSTEM: OnceLock<regex::Regex> = OnceLock::new();
    let system = SYSTEM.get_or_init(|| {
        regex::Regex::new(r"^http://hl7\.org/fhirpath/System\.[A-Z][A-Za-z]+$")
            .unwrap_or_else(|_| unreachable!("a fixed pattern"))
    });
    let code_ok = |code: &str, dots: bool| {
        let plain = !code.is_empty()
            && code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || (dots && b == b'.'));
        plain || system.is_match(code)
    };
    for (part, dots) in [("differential", false), ("snapshot", true)] {
        for holder in items(member(root, part)) {
            let Value::Object(holder) = holder else {
                continue;
            };
            for element in items(member(holder, "element")) {
                let Value::Object(e) = element else {
                    continue;
                };
                for t in items(member(e, "type")) {
                    let Value::Object(t) = t else {
                        continue;
                    };
                    match member(t, "code") {
                        Some(Value::String(code)) => {
                            if !code_ok(code, dots) {
                                return Some(false);
                            }
                        }
                        Some(Value::Null) | None => {
                            if has(t, "code", true) {
                                return Some(false); // `_code` alone: no value to match
                            }
                        }
                        Some(_) => return None,
                    }
                }
            }
        }
    }
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhirpath::{self, EvalContext};
    use crate::validation::Validator;
    use serde_json::json;

    /// Whether `expression` holds on `focus` (of FHIR type `ty`, the element `path`, within
    /// `resource`) by the FHIRPath engine, as `invariants::check` reads a result: empty or true
    /// passes.
    fn by_expression(
        v: &Validator,
        expression: &str,
        resource: &Value,
        focus: &Value,
        ty: &str,
        path: &str,
    ) -> bool {
        let expr = fhirpath::compile(expression).expect("compiles");
        let mut ctx = EvalContext::new(&v.invariants.model, resource);
        if !std::ptr::eq(resource, focus) {
            ctx = ctx.with_focus(fhirpath::Node::element(focus, ty, path));
        }
        !matches!(expr.evaluate_boolean(&ctx), Ok(Some(false)))
    }

    fn rule(key: &str) -> &'static str {
        RULES
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, e, _)| *e)
            .expect("a native rule")
    }

    /// Every resource in `v`, inside Bundles and `contained` too.
    fn collect<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        match v {
            Value::Object(o) => {
                if o.get("resourceType").is_some_and(Value::is_string) {
                    out.push(v);
                }
                o.values().for_each(|x| collect(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
            _ => {}
        }
    }

    /// The ContactPoints of resource `r` (what a `telecom` holds), not those of the resources
    /// it contains.
    fn contact_points<'a>(v: &'a Value, out: &mut Vec<&'a Value>, top: bool) {
        match v {
            Value::Object(o) => {
                if !top && o.contains_key("resourceType") {
                    return;
                }
                for (k, x) in o {
                    if k == "telecom" {
                        out.extend(x.as_array().into_iter().flatten().filter(|c| c.is_object()));
                    }
                    contact_points(x, out, false);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| contact_points(x, out, false)),
            _ => {}
        }
    }

    /// A ValueSet's expansion entries, at every depth.
    fn contains<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        for c in v["contains"].as_array().into_iter().flatten() {
            out.push(c);
            contains(c, out);
        }
    }

    /// Each rule that applies in resource `r`, on each of its foci: the native verdict (where it
    /// decides) against the expression's. The number decided.
    fn agree(v: &Validator, r: &Value) -> usize {
        const BACKBONE: &str = "BackboneElement";
        let mut foci: Vec<(&str, &Value, &str, &str)> = Vec::new();
        let mut points = Vec::new();
        contact_points(r, &mut points, true);
        for c in points {
            foci.push(("cpt-2", c, "ContactPoint", "ContactPoint"));
        }
        if !matches!(
            r["resourceType"].as_str(),
            Some("Bundle" | "Binary" | "Parameters")
        ) {
            foci.push(("dom-6", r, "", ""));
        }
        match r["resourceType"].as_str() {
            Some("CodeSystem") => foci.push(("csd-1", r, "", "")),
            Some("ValueSet") => {
                let mut entries = Vec::new();
                contains(&r["expansion"], &mut entries);
                for c in entries {
                    for k in ["vsd-6", "vsd-9", "vsd-10"] {
                        foci.push((k, c, BACKBONE, "ValueSet.expansion.contains"));
                    }
                }
            }
            Some("Bundle") => {
                foci.push(("bdl-7", r, "", ""));
                for e in r["entry"].as_array().into_iter().flatten() {
                    foci.push(("bdl-5", e, BACKBONE, "Bundle.entry"));
                    foci.push(("bdl-8", e, BACKBONE, "Bundle.entry"));
                }
            }
            Some("StructureDefinition") => {
                let on_root = [
                    "sdf-9", "sdf-19", "sdf-1", "sdf-14", "sdf-16", "sdf-17", "sdf-23", "sdf-0",
                    "sdf-4", "sdf-22",
                ];
                for k in on_root {
                    foci.push((k, r, "", ""));
                }
                for m in r["mapping"].as_array().into_iter().flatten() {
                    foci.push(("sdf-2", m, BACKBONE, "StructureDefinition.mapping"));
                }
                if r["snapshot"].is_object() {
                    for k in ["sdf-3", "sdf-8b"] {
                        foci.push((k, &r["snapshot"], BACKBONE, "StructureDefinition.snapshot"));
                    }
                }
                for part in ["snapshot", "differential"] {
                    for e in r[part]["element"].as_array().into_iter().flatten() {
                        for k in [
                            "eld-2", "eld-11", "eld-13", "eld-14", "eld-18", "eld-19", "eld-20",
                        ] {
                            foci.push((k, e, "ElementDefinition", "ElementDefinition"));
                        }
                        for t in e["type"].as_array().into_iter().flatten() {
                            foci.push(("eld-17", t, BACKBONE, "ElementDefinition.type"));
                        }
                        for c in e["constraint"].as_array().into_iter().flatten() {
                            foci.push(("eld-21", c, BACKBONE, "ElementDefinition.constraint"));
                        }
                        if e["max"].is_string() {
                            foci.push(("eld-3", &e["max"], "string", "ElementDefinition.max"));
                        }
                        if e["binding"].is_object() {
                            foci.push((
                                "eld-12",
                                &e["binding"],
                                BACKBONE,
                                "ElementDefinition.binding",
                            ));
                        }
                    }
                }
            }
            _ => {}
        }
        let mut decided = 0;
        for (k, focus, ty, path) in foci {
            let Some(native) = verdict(k, rule(k), focus) else {
                continue;
            };
            decided += 1;
            assert_eq!(
                native,
                by_expression(v, rule(k), r, focus, ty, path),
                "{k} on {} at {focus}",
                r.get("url").or(r.get("id")).unwrap_or(&Value::Null)
            );
        }
        decided
    }

    #[test]
    fn the_rules_are_the_ones_r4_defines() {
        let v = Validator::r4().expect("R4 definitions");
        for (key, text, _) in RULES {
            let ty = match key.split('-').next() {
                Some("csd") => "CodeSystem",
                Some("sdf") => "StructureDefinition",
                Some("vsd") => "ValueSet",
                Some("cpt") => "ContactPoint",
                Some("bdl") => "Bundle",
                Some("dom") => "DomainResource",
                _ => "ElementDefinition",
            };
            let p = v
                .defs
                .profile(&format!("http://hl7.org/fhir/StructureDefinition/{ty}"))
                .expect("base definition");
            let found = p
                .elements
                .iter()
                .flat_map(|e| &e.constraints)
                .find(|c| c.key == *key)
                .expect("the rule");
            assert_eq!(found.expression, *text, "{key}");
        }
    }

    #[test]
    fn written_cases_get_the_expressions_verdicts() {
        let v = Validator::r4().expect("R4 definitions");
        let cs = |concepts: Value| {
            json!({"resourceType": "CodeSystem", "status": "draft",
            "content": "complete", "concept": concepts})
        };
        let cases = [
            cs(json!([{"code": "a"}, {"code": "b", "concept": [{"code": "c"}]}])),
            cs(json!([{"code": "a"}, {"code": "b", "concept": [{"code": "a"}]}])),
            cs(json!([{"code": "a", "concept": [{"code": "b", "concept": [{"code": "b"}]}]}])),
            cs(
                json!([{"_code": {"extension": [{"url": "http://x.org/e", "valueString": "1"}]}},
                      {"_code": {"extension": [{"url": "http://x.org/e", "valueString": "1"}]}}]),
            ),
            cs(
                json!([{"_code": {"extension": [{"url": "http://x.org/e", "valueString": "1"}]}},
                      {"_code": {"extension": [{"url": "http://x.org/e", "valueString": "2"}]}}]),
            ),
            cs(json!([{"code": "a"}, "b", {"display": "no code"}])),
            json!({"resourceType": "CodeSystem", "status": "draft", "content": "complete",
                   "concept": [{"code": "a"}],
                   "contained": [{"resourceType": "CodeSystem", "id": "in", "status": "draft",
                                  "content": "complete", "concept": [{"code": "a"}]}]}),
        ];
        let sd = |url: &str, root: Value, code: Value| {
            json!({"resourceType": "StructureDefinition", "url": url, "name": "X",
                "status": "draft", "kind": "resource", "abstract": false, "type": "Patient",
                "snapshot": {"element": [root, {"path": "Patient.name", "type": [code]}]},
                "differential": {"element": [{"path": "Patient"}, {"_path": {"id": "p"}}]}})
        };
        let hl7 = "http://hl7.org/fhir/StructureDefinition/X";
        let other = "http://example.org/StructureDefinition/X";
        let sds = [
            sd(
                hl7,
                json!({"path": "Patient"}),
                json!({"code": "HumanName"}),
            ),
            sd(
                hl7,
                json!({"path": "Patient", "label": "x"}),
                json!({"code": "HumanName"}),
            ),
            sd(
                hl7,
                json!({"path": "Patient", "_label": {"id": "l"}}),
                json!({"code": "A"}),
            ),
            sd(
                hl7,
                json!({"path": "Patient", "code": []}),
                json!({"code": "A"}),
            ),
            sd(
                hl7,
                json!({"path": "Patient", "code": [{"code": "x"}]}),
                json!({"code": "A"}),
            ),
            sd(
                hl7,
                json!({"path": "Patient", "requirements": "r"}),
                json!({"code": "A"}),
            ),
            sd(
                hl7,
                json!({"_path": {"id": "p"}, "label": "x"}),
                json!({"code": "A"}),
            ),
            sd(
                hl7,
                json!({"path": "Patient"}),
                json!({"code": "Human-Name"}),
            ),
            sd(hl7, json!({"path": "Patient"}), json!({"code": "a.b"})),
            sd(
                hl7,
                json!({"path": "Patient"}),
                json!({"_code": {"id": "c"}}),
            ),
            sd(
                hl7,
                json!({"path": "Patient"}),
                json!({"code": "http://hl7.org/fhirpath/System.String"}),
            ),
            sd(
                hl7,
                json!({"path": "Patient"}),
                json!({"code": "http://hl7.org/fhirpath/System.string"}),
            ),
            sd(
                other,
                json!({"path": "Patient"}),
                json!({"code": "Human-Name"}),
            ),
        ];
        // Element-level rules, and the snapshot's own: each snapshot below against all of them.
        let with = |derivation: Option<&str>, elements: Value| {
            let mut sd = json!({"resourceType": "StructureDefinition", "name": "Y",
                "url": "http://example.org/StructureDefinition/Y", "status": "draft",
                "kind": "resource", "abstract": false, "type": "Patient",
                "snapshot": {"element": elements}});
            if let Some(d) = derivation {
                sd["derivation"] = json!(d);
            }
            sd
        };
        let full = |path: &str, id: &str| json!({"id": id, "path": path, "definition": "d", "min": 0, "max": "1"});
        let more = [
            with(
                None,
                json!([full("Patient", "Patient"), full("Patient.a", "Patient.a")]),
            ),
            with(
                Some("specialization"),
                json!([full("Patient", "a"), full("Patient", "b")]),
            ),
            with(None, json!([full("Patient", "a"), full("Patient", "b")])),
            with(
                Some("constraint"),
                json!([full("Patient", "a"), full("Patient", "a")]),
            ),
            with(
                Some("specialization"),
                json!([full("Patient", "a"), full("Patient.x", "a")]),
            ),
            with(None, json!([{"path": "Patient", "min": 0, "max": "1"}])),
            {
                let mut sd = with(None, json!([full("Patient", "a"), full("Patient", "b")]));
                sd["_derivation"] = json!({"id": "d"});
                sd
            },
            with(
                None,
                json!([{"path": "Patient", "_id": {"id": "i"}, "definition": "d",
                "min": 0, "max": "1"}]),
            ),
            with(
                None,
                json!([{"id": "P", "path": "Patient", "sliceName": "s"}]),
            ),
            with(
                None,
                json!([{"id": "P", "_path": {"id": "p"}, "sliceName": "s"}]),
            ),
            with(
                None,
                json!([{"id": "P", "path": "Patient.x", "sliceName": "s"}]),
            ),
            with(
                None,
                json!([
                {"path": "P.a", "min": 2, "max": "1"}, {"path": "P.b", "min": 2, "max": "*"},
                {"path": "P.c", "min": 2, "max": "abc"}, {"path": "P.d", "min": 0, "max": "-1"},
                {"path": "P.e", "min": 1, "max": "+1"}, {"path": "P.f", "min": 3},
                {"path": "P.g", "max": "0"}, {"path": "P.h", "min": 1, "_max": {"id": "m"}}]),
            ),
            with(
                None,
                json!([
                {"path": "P.a", "type": [{"code": "string"}, {"code": "string"}]},
                {"path": "P.b", "type": [{"code": "string"}, {"code": "code"}]},
                {"path": "P.c", "type": [{"_code": {"id": "x"}}, {"_code": {"id": "x"}}]},
                {"path": "P.d", "type": [{"_code": {"id": "x"}}, {"_code": {"id": "y"}}]},
                {"path": "P.e", "constraint": [{"key": "k"}, {"key": "k"}]},
                {"path": "P.f", "constraint": [{"key": "k"}, {"key": "l"}]}]),
            ),
            with(
                None,
                json!([
                {"path": "P.a", "type": [{"code": "Reference", "targetProfile": ["http://x"]}]},
                {"path": "P.b", "type": [{"code": "string", "targetProfile": ["http://x"]}]},
                {"path": "P.c", "type": [{"code": "canonical", "targetProfile": ["http://x"]}]},
                {"path": "P.d", "type": [{"_code": {"id": "c"}, "targetProfile": ["http://x"]}]},
                {"path": "P.e", "type": [{"code": "string"}]}]),
            ),
            with(
                None,
                json!([
                {"path": "P.a", "isModifier": true},
                {"path": "P.b", "isModifier": true, "isModifierReason": "why"},
                {"path": "P.c", "isModifier": false},
                {"path": "P.d", "_isModifier": {"id": "m"}}]),
            ),
        ];
        // The existence rules: ValueSet expansion entries, ContactPoints, Bundle entries,
        // mappings, snapshots whose elements are not all objects, constraints.
        let vs = |entries: Value| {
            json!({"resourceType": "ValueSet", "status": "draft",
                   "expansion": {"timestamp": "2026-12-07", "contains": entries}})
        };
        let others = [
            vs(json!([{"code": "a"}, {"display": "d"}, {"abstract": true},
                      {"abstract": false}, {"_abstract": {"id": "x"}}, {"code": "b", "system": "s"},
                      {"system": "s", "contains": [{"code": "c"}, {"_code": {"id": "y"}}]},
                      {"_display": {"id": "z"}}, {"code": null, "display": null}])),
            json!({"resourceType": "Patient", "telecom": [{"value": "1"},
                   {"value": "1", "system": "phone"}, {"_value": {"id": "v"}}, {"system": "email"}],
                   "contact": [{"telecom": [{"value": "2"}]}],
                   "contained": [{"resourceType": "Patient", "id": "c", "telecom": [{"value": "3"}]}]}),
            json!({"resourceType": "Bundle", "type": "collection", "entry": [
                   {"fullUrl": "urn:uuid:1"}, {"resource": {"resourceType": "Basic",
                   "code": {"text": "x"}}}, {"request": {"method": "GET", "url": "Patient"}},
                   {"response": {"status": "200"}}, {"resource": null}]}),
            json!({"resourceType": "StructureDefinition", "name": "Z", "status": "draft",
                   "url": "http://example.org/StructureDefinition/Z", "kind": "resource",
                   "abstract": false, "type": "Patient",
                   "mapping": [{"identity": "a"}, {"identity": "b", "name": "n"},
                               {"identity": "c", "_uri": {"id": "u"}}],
                   "snapshot": {"element": [
                       {"id": "P", "path": "Patient", "base": {"path": "Patient"},
                        "constraint": [{"key": "k"}, {"key": "l", "expression": "true"}]},
                       {"id": "P.a", "path": "Patient.a"}]},
                   "differential": {"element": [{"id": "P", "path": "Patient"},
                       {"id": "P", "path": "Patient.a"}]}}),
            json!({"resourceType": "StructureDefinition", "name": "W", "status": "draft",
                   "url": "http://example.org/StructureDefinition/W", "kind": "resource",
                   "abstract": false, "type": "Patient",
                   "snapshot": {"element": [{"id": "P", "path": "Patient",
                       "base": {"path": "Patient"}}, "not an element"]},
                   "differential": {"element": ["x"]}}),
            // bdl-8, dom-6, eld-19 and eld-20
            json!({"resourceType": "Bundle", "type": "collection", "entry": [
                   {"fullUrl": "http://a.org/fhir/Patient/1/_history/2"},
                   {"fullUrl": "http://a.org/fhir/Patient/1"}, {"_fullUrl": {"id": "f"}},
                   {"fullUrl": "urn:uuid:2", "_fullUrl": {"id": "g"}}, {"fullUrl": 3}]}),
            json!({"resourceType": "Patient", "text": {"status": "generated",
                   "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}}),
            json!({"resourceType": "Patient", "text": {"status": "generated"}}),
            json!({"resourceType": "Patient", "text": {"status": "generated", "_div": {"id": "d"}}}),
            json!({"resourceType": "Patient", "text": "not an object"}),
            json!({"resourceType": "Patient", "text": null}),
            json!({"resourceType": "StructureDefinition", "name": "V", "status": "draft",
                   "url": "http://example.org/StructureDefinition/V", "kind": "resource",
                   "abstract": false, "type": "Patient",
                   "differential": {"element": [
                       {"path": ""}, {"path": "."}, {"path": " "}, {"path": ".."}, {"path": "a"},
                       {"path": "1"}, {"path": "_"}, {"path": "[x]"}, {"path": ":"},
                       {"path": "ä"}, {"path": ".:;"}, {"path": "\t"}, {"path": "{}"},
                       {"path": "()"}, {"path": "@#$%&*"}, {"path": "'\"/|?!"},
                       {"path": "Patient.a[x]"}, {"path": "Patient.a:b"}, {"path": "é.b"},
                       {"path": "1.2"}, {"path": "Patient.A"}, {"_path": {"id": "p"}},
                       {"path": 7}, {"path": "Patient", "_path": {"id": "q"}}]}}),
            // bdl-7: the same fullUrl and version twice, joined texts that collide, a history
            json!({"resourceType": "Bundle", "type": "collection", "entry": [
                   {"fullUrl": "urn:a", "resource": {"resourceType": "Basic",
                    "meta": {"versionId": "1"}}},
                   {"fullUrl": "urn:a", "resource": {"resourceType": "Basic",
                    "meta": {"versionId": "2"}}}, {"fullUrl": "urn:b"}]}),
            json!({"resourceType": "Bundle", "type": "collection", "entry": [
                   {"fullUrl": "urn:a", "resource": {"resourceType": "Basic",
                    "meta": {"versionId": "1"}}},
                   {"fullUrl": "urn:a", "resource": {"resourceType": "Basic",
                    "meta": {"versionId": "1"}}}]}),
            json!({"resourceType": "Bundle", "type": "collection", "entry": [
                   {"fullUrl": "urn:a1", "resource": {"resourceType": "Basic",
                    "meta": {"versionId": "2"}}},
                   {"fullUrl": "urn:a", "resource": {"resourceType": "Basic",
                    "meta": {"versionId": "12"}}}, {"fullUrl": "urn:c"}, {"fullUrl": "urn:c"}]}),
            json!({"resourceType": "Bundle", "type": "history", "entry": [
                   {"fullUrl": "urn:a"}, {"fullUrl": "urn:a"}]}),
            json!({"resourceType": "Bundle", "entry": [{"fullUrl": "urn:a"}, {"fullUrl": "urn:a"}]}),
            json!({"resourceType": "Bundle", "type": "batch", "entry": [
                   {"_fullUrl": {"id": "u"}}, {"fullUrl": "urn:a", "resource": {"resourceType":
                   "Basic", "meta": {"_versionId": {"id": "v"}}}}]}),
            // sdf-0, sdf-4, sdf-22, eld-11 and eld-12
            json!({"resourceType": "StructureDefinition", "name": "lower_only", "status": "draft",
                   "url": "http://hl7.org/fhir/StructureDefinition/U", "kind": "resource",
                   "abstract": false, "type": "Patient",
                   "snapshot": {"element": [{"path": "Patient", "defaultValueString": "x"}]},
                   "differential": {"element": [
                       {"path": "Patient.a", "binding": {"strength": "required",
                        "valueSet": "http://x.org/vs"}, "type": [{"code": "Reference"}]},
                       {"path": "Patient.b", "binding": {"strength": "required",
                        "valueSet": "ValueSet/x"}, "type": [{"code": "code"}]},
                       {"path": "Patient.c", "binding": {"strength": "example"}},
                       {"path": "Patient.d", "binding": {"strength": "example",
                        "_valueSet": {"id": "v"}}, "type": [{"_code": {"id": "c"}}]},
                       {"path": "Patient.e", "binding": {"valueSet": "urn:oid:1.2"},
                        "type": [{"code": "string"}, {"code": "Period"}]}]}}),
            json!({"resourceType": "StructureDefinition", "name": "Ok", "status": "draft",
                   "url": "http://hl7.org/fhir/StructureDefinition/T", "kind": "resource",
                   "abstract": true, "type": "Patient",
                   "differential": {"element": [{"path": "Patient", "_defaultValueString":
                   {"id": "d"}}]}}),
            json!({"resourceType": "StructureDefinition", "_name": {"id": "n"}, "status": "draft",
                   "kind": "resource", "type": "Patient",
                   "differential": {"element": [{"path": "Patient", "defaultValueCode": "x"}]}}),
            json!({"resourceType": "StructureDefinition", "name": "B", "status": "draft",
                   "url": "http://example.org/StructureDefinition/B", "kind": "resource",
                   "_abstract": {"id": "a"}, "baseDefinition": "http://x", "type": "Patient"}),
        ];
        let mut decided = 0;
        for r in others.iter() {
            decided += agree(&v, r);
        }
        for r in more.iter() {
            decided += agree(&v, r);
        }
        for r in cases.iter().chain(&sds) {
            decided += agree(&v, r);
        }
        assert!(decided > cases.len() + 6 * sds.len(), "{decided}");
    }

    /// The new rules decide the cases they were written for (not only defer), both ways.
    #[test]
    fn the_path_and_bundle_rules_decide_both_ways() {
        let dup = json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"fullUrl": "urn:a", "resource": {"resourceType": "Basic", "meta": {"versionId": "1"}}},
            {"fullUrl": "urn:a", "resource": {"resourceType": "Basic", "meta": {"versionId": "1"}}}]});
        let joined = json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"fullUrl": "urn:a1", "resource": {"resourceType": "Basic", "meta": {"versionId": "2"}}},
            {"fullUrl": "urn:a", "resource": {"resourceType": "Basic", "meta": {"versionId": "12"}}}]});
        let distinct = json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"fullUrl": "urn:a"}, {"fullUrl": "urn:b"}]});
        assert_eq!(verdict("bdl-7", BDL_7, &dup), Some(false));
        assert_eq!(verdict("bdl-7", BDL_7, &joined), Some(false));
        assert_eq!(verdict("bdl-7", BDL_7, &distinct), Some(true));
        let entry = |u: &str| json!({"fullUrl": u});
        assert_eq!(
            verdict("bdl-8", BDL_8, &entry("http://a/P/1/_history/2")),
            Some(false)
        );
        assert_eq!(verdict("bdl-8", BDL_8, &entry("http://a/P/1")), Some(true));
        let el = |p: &str| json!({"path": p});
        assert_eq!(verdict("eld-19", ELD_19, &el("Patient.name")), Some(true));
        assert_eq!(verdict("eld-19", ELD_19, &el(".:;")), Some(false));
        assert_eq!(verdict("eld-20", ELD_20, &el("1.2")), Some(false));
        assert_eq!(verdict("eld-20", ELD_20, &el("Patient")), Some(true));
        assert_eq!(
            verdict("dom-6", DOM_6, &json!({"resourceType": "Patient"})),
            Some(false)
        );
        let sd = json!({"abstract": false, "name": "lower"});
        assert_eq!(verdict("sdf-4", SDF_4, &sd), Some(false));
        assert_eq!(verdict("sdf-0", SDF_0, &sd), Some(false));
        assert_eq!(
            verdict("eld-12", ELD_12, &json!({"valueSet": "ValueSet/x"})),
            Some(false)
        );
        assert_eq!(verdict("eld-3", ELD_3, &json!("-1")), Some(false));
        assert_eq!(verdict("eld-3", ELD_3, &json!("*")), Some(true));
        assert_eq!(verdict("eld-3", ELD_3, &json!("2")), Some(true));
        assert_eq!(verdict("eld-3", ELD_3, &json!("two")), Some(true));
    }

    /// Every CodeSystem and StructureDefinition of the official R4 examples, as published and
    /// with a duplicate code, a labelled root element and a bad type code added.
    #[test]
    fn the_official_examples_get_the_expressions_verdicts() {
        let package = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fhir-packages/hl7.fhir.r4.examples-4.0.1.tgz");
        if !package.exists() {
            eprintln!("skipped: {} is not here (../shared)", package.display());
            return;
        }
        let v = Validator::r4().expect("R4 definitions");
        let file = std::fs::File::open(&package).expect("package");
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        let (mut resources, mut decided) = (0, 0);
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let name = entry.path().expect("path").to_string_lossy().into_owned();
            if !name.ends_with(".json") || name.ends_with("package.json") {
                continue;
            }
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).expect("read");
            let Ok(doc) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            let mut found = Vec::new();
            collect(&doc, &mut found);
            for r in found {
                resources += 1;
                decided += agree(&v, r);
                if !matches!(
                    r["resourceType"].as_str(),
                    Some("CodeSystem" | "StructureDefinition")
                ) {
                    continue;
                }
                let mut m = r.clone();
                if let Some(first) = m["concept"].get_mut(0) {
                    let code = first["code"].clone();
                    first["concept"] = json!([{"code": code}]);
                }
                if let Some(e) = m["snapshot"]["element"].get_mut(0) {
                    e["label"] = json!("added");
                }
                if let Some(t) = m["differential"]["element"]
                    .as_array_mut()
                    .and_then(|e| e.iter_mut().find(|e| e.get("type").is_some()))
                {
                    t["type"][0]["code"] = json!("not a type");
                }
                decided += agree(&v, &m);
            }
        }
        assert!(
            resources > 1000 && decided > 2 * resources,
            "{resources} {decided}"
        );
    }
}
