//! Rules HL7's reference validator applies that no StructureDefinition states (issue 17): Bundle
//! entries and links, versioned references in a Bundle, implicit vital-signs profiles, required
//! slices of absent elements, StructureDefinitions being validated — and the false errors it
//! does not make (a `#id` inside a Bundle entry, a non-RESTful fullUrl, a type with two
//! profiles). Written from the R4 specification; each case asserts the location and the words.

use serde_json::{json, Value};

use crate::{errors, validator};
use fhir_core::fhir::outcome::Severity;
use fhir_core::validation::Validator;

#[track_caller]
fn has_error(v: &Value, location: &str, contains: &str) {
    let e = errors(v);
    assert!(
        e.iter().any(|(l, m)| l == location && m.contains(contains)),
        "expected an error at {location} mentioning {contains:?}, got {e:#?}"
    );
}

fn patient(id: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "active": true})
}

fn bundle(kind: &str, entries: Value) -> Value {
    let mut b = json!({"resourceType": "Bundle", "type": kind});
    if entries.as_array().is_some_and(|a| !a.is_empty()) {
        b["entry"] = entries;
    }
    b
}

#[test]
fn full_urls_follow_rest_only_when_they_are_rest_urls() {
    // Any absolute URI identifies an entry; only a RESTful one must name the entry's type and id.
    let ok = bundle(
        "collection",
        json!([
            {"fullUrl": "http://example.org/records/abc", "resource": patient("p1")},
            {"fullUrl": "urn:example:thing:1", "resource": patient("p2")},
            {"fullUrl": "urn:uuid:2f0c5a7e-8b0a-4c49-9a0e-2a4b1c6d7e8f", "resource": patient("p3")},
            {"fullUrl": "http://example.org/fhir/Patient/p4", "resource": patient("p4")}
        ]),
    );
    assert!(errors(&ok).is_empty(), "{:#?}", errors(&ok));
    let bad = bundle(
        "collection",
        json!([
            {"fullUrl": "http://example.org/fhir/Patient/other", "resource": patient("p1")},
            {"fullUrl": "Patient/p2", "resource": patient("p2")},
            {"fullUrl": "http://example.org/fhir/Patient/p3", "resource": {"resourceType": "Patient"}}
        ]),
    );
    has_error(
        &bad,
        "Bundle.entry[0].fullUrl",
        "does not end with Patient/p1",
    );
    has_error(&bad, "Bundle.entry[1].fullUrl", "must be an absolute URL");
    has_error(&bad, "Bundle.entry[2].fullUrl", "has no id");
}

#[test]
fn contained_reference_inside_a_bundle_entry_resolves() {
    let b = bundle(
        "collection",
        json!([{"fullUrl": "http://example.org/fhir/Observation/o1", "resource": {
            "resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"},
            "contained": [{"resourceType": "Patient", "id": "pat", "active": true}],
            "subject": {"reference": "#pat"}}}]),
    );
    assert!(errors(&b).is_empty(), "{:#?}", errors(&b));
    let mut missing = b.clone();
    missing["entry"][0]["resource"]["subject"]["reference"] = json!("#nobody");
    has_error(
        &missing,
        "Bundle.entry[0].resource.subject.reference",
        "no contained resource has id \"nobody\"",
    );
}

#[test]
fn link_relations() {
    let mut b = bundle("collection", json!([]));
    b["link"] = json!([{"relation": "next", "url": "http://x/2"},
        {"relation": "self", "url": "http://x/1"}, {"relation": "self", "url": "http://x/1"}]);
    has_error(&b, "Bundle.link[0].relation", "has no pages");
    has_error(&b, "Bundle.link[2].relation", "more than once");
    let mut s = bundle("searchset", json!([]));
    s["link"] = json!([{"relation": "next", "url": "http://x/2"},
        {"relation": "next", "url": "http://x/3"}]);
    has_error(&s, "Bundle.link[1].relation", "more than once");
    s["link"] = json!([{"relation": "next", "url": "http://x/2"},
        {"relation": "self", "url": "http://x/1"}]);
    assert!(errors(&s).is_empty(), "{:#?}", errors(&s));
}

#[test]
fn searchset_entries() {
    let mut b = bundle(
        "searchset",
        json!([
            {"fullUrl": "urn:uuid:2f0c5a7e-8b0a-4c49-9a0e-2a4b1c6d7e80",
             "resource": {"resourceType": "Patient", "active": true}, "search": {"mode": "match"}},
            {"fullUrl": "http://example.org/fhir/Observation/o1", "resource": {"resourceType": "Observation",
             "id": "o1", "status": "final", "code": {"text": "x"}}, "search": {"mode": "match"}},
            {"fullUrl": "http://example.org/fhir/Patient/p9", "resource": patient("p9"),
             "search": {"mode": "outcome"}},
            {"fullUrl": "http://example.org/fhir/Patient/p8", "resource": patient("p8"),
             "search": {"mode": "include"}}
        ]),
    );
    b["link"] = json!([{"relation": "self", "url": "http://example.org/fhir/Patient?active=true"}]);
    has_error(&b, "Bundle.entry[0].resource", "needs the resource's id");
    has_error(&b, "Bundle.entry[1].resource", "not a match of this search");
    has_error(
        &b,
        "Bundle.entry[2].resource",
        "must be an OperationOutcome",
    );
    assert_eq!(errors(&b).len(), 3, "{:#?}", errors(&b));
}

fn versioned_document(refs: [&str; 2]) -> Value {
    let obs = |v: &str| {
        json!({"fullUrl": "http://example.org/fhir/Observation/o1", "resource": {
            "resourceType": "Observation", "id": "o1", "meta": {"versionId": v},
            "status": "final", "code": {"text": "note"}, "subject": {"reference": "Patient/p1"}}})
    };
    json!({"resourceType": "Bundle", "type": "document",
    "identifier": {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:0c3f3c8e-1a8b-4c1e-9f4e-1d2c3b4a5f60"},
    "timestamp": "2024-12-01T10:00:00+01:00",
    "entry": [
        {"fullUrl": "http://example.org/fhir/Composition/c1", "resource": {
            "resourceType": "Composition", "id": "c1", "status": "final", "type": {"text": "note"},
            "subject": {"reference": "Patient/p1"}, "date": "2024-12-01",
            "author": [{"reference": "Patient/p1"}], "title": "t",
            "section": [{"entry": [{"reference": refs[0]}, {"reference": refs[1]}]}]}},
        obs("1"), obs("2"),
        {"fullUrl": "http://example.org/fhir/Patient/p1", "resource": patient("p1")}
    ]})
}

#[test]
fn versioned_references_in_a_bundle() {
    let good = versioned_document([
        "Observation/o1/_history/1",
        "http://example.org/fhir/Observation/o1/_history/2",
    ]);
    let e: Vec<_> = errors(&good)
        .into_iter()
        .filter(|(l, _)| l.contains("section"))
        .collect();
    assert!(e.is_empty(), "{e:#?}");
    let bad = versioned_document(["Observation/o1/_history/3", "Observation/o1"]);
    has_error(
        &bad,
        "Bundle.entry[0].resource.section[0].entry[0].reference",
        "names version \"3\"",
    );
    has_error(
        &bad,
        "Bundle.entry[0].resource.section[0].entry[1].reference",
        "matches 2 entries",
    );
}

#[test]
fn vital_signs_profiles_apply_without_a_claim() {
    // Body weight by LOINC: R4's bodyweight profile requires the vital-signs category and a
    // UCUM quantity, claimed or not.
    let obs = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-01-01",
        "valueQuantity": {"value": 70, "unit": "kg"}});
    let e = errors(&obs);
    assert!(
        e.iter()
            .any(|(_, m)| m.contains("bodyweight") || m.contains("vitalsigns")),
        "{e:#?}"
    );
    let mut plain = obs.clone();
    plain["code"]["coding"][0]["code"] = json!("1234-5");
    assert!(errors(&plain).is_empty(), "{:#?}", errors(&plain));
}

#[test]
fn one_of_two_type_profiles_is_enough() {
    let dir = std::env::temp_dir().join(format!("sektorbro-two-profiles-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let sd = json!({"resourceType": "StructureDefinition", "url": "http://example.org/two-profiles",
        "name": "TwoProfiles", "status": "draft", "kind": "resource", "abstract": false,
        "type": "Observation", "derivation": "constraint",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Observation",
        "differential": {"element": [
            {"id": "Observation.value[x]", "path": "Observation.value[x]", "type": [{"code": "Quantity",
              "profile": ["http://hl7.org/fhir/StructureDefinition/SimpleQuantity",
                          "http://hl7.org/fhir/StructureDefinition/MoneyQuantity"]}]}]}});
    std::fs::write(dir.join("p.json"), sd.to_string()).expect("write");
    let v = Validator::with_packages(&[&dir]).expect("load");
    let obs = |q: Value| {
        let o = json!({"resourceType": "Observation", "status": "final", "code": {"text": "price"},
            "meta": {"profile": ["http://example.org/two-profiles"]}, "valueQuantity": q});
        v.validate(&o, &[])
            .into_iter()
            .filter(|i| i.severity <= Severity::Error)
            .map(|i| i.diagnostics)
            .collect::<Vec<_>>()
    };
    // A comparator breaks SimpleQuantity but not MoneyQuantity: one is enough.
    let money =
        json!({"value": 10, "comparator": "<", "code": "EUR", "system": "urn:iso:std:iso:4217"});
    let e = obs(money);
    assert!(e.is_empty(), "{e:#?}");
    // UCUM with a comparator fits neither.
    let neither = json!({"value": 10, "comparator": "<", "code": "kg", "system": "http://unitsofmeasure.org"});
    let e = obs(neither);
    assert!(!e.is_empty(), "{e:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn structure_definitions_being_validated() {
    let ext = |fixed: &str| {
        json!({"resourceType": "StructureDefinition", "url": "http://example.org/ext/a",
            "name": "A", "status": "draft", "kind": "complex-type", "abstract": false,
            "context": [{"type": "element", "expression": "Patient"}],
            "type": "Extension", "derivation": "constraint",
            "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Extension",
            "differential": {"element": [
                {"id": "Extension", "path": "Extension"},
                {"id": "Extension.url", "path": "Extension.url", "fixedUri": fixed},
                {"id": "Extension.value[x]", "path": "Extension.value[x]", "type": [{"code": "string"}]}]}})
    };
    let good = ext("http://example.org/ext/a");
    assert!(errors(&good).is_empty(), "{:#?}", errors(&good));
    has_error(
        &ext("http://example.org/ext/b"),
        "StructureDefinition",
        "fixes Extension.url",
    );
    // Differential out of the base's order: HL7's snapshot generator rejects it.
    let out_of_order = json!({"resourceType": "StructureDefinition", "url": "http://example.org/c",
        "name": "C", "status": "draft", "kind": "resource", "abstract": false, "type": "Condition",
        "derivation": "constraint", "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Condition",
        "differential": {"element": [
            {"id": "Condition.code", "path": "Condition.code", "min": 1},
            {"id": "Condition.severity", "path": "Condition.severity", "min": 1}]}});
    has_error(
        &out_of_order,
        "StructureDefinition.differential",
        "Condition.severity after Condition.code",
    );
}

#[test]
fn a_required_slice_of_an_absent_element_is_missing() {
    // KL Common's care plan requires its purpose goal (CarePlan.goal:fpurpose); a CarePlan with
    // no goal at all misses it, and says so.
    let v = Validator::shared_embedded().expect("embedded");
    let plan = json!({"resourceType": "CarePlan", "status": "active", "intent": "plan",
        "meta": {"profile": ["http://fhir.kl.dk/core/StructureDefinition/KLCommonCareSocialCarePlan"]},
        "subject": {"reference": "Patient/p1"}});
    let _ = validator();
    let found: Vec<String> = v
        .validate(&plan, &[])
        .into_iter()
        .filter(|i| i.severity <= Severity::Error)
        .map(|i| format!("{} {}", i.expression.unwrap_or_default(), i.diagnostics))
        .collect();
    assert!(found.iter().any(|m| m.contains("fpurpose")), "{found:#?}");
}

#[test]
fn resource_id_takes_no_extensions() {
    let p = json!({"resourceType": "Patient", "id": "p1", "active": true,
        "_id": {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}});
    has_error(&p, "Patient.id", "cannot carry extensions");
    // an element id's extensions stay allowed
    let ok = json!({"resourceType": "Patient", "id": "p1",
        "_active": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
            "valueCode": "unknown"}]}, "active": true});
    assert!(errors(&ok).is_empty(), "{:#?}", errors(&ok));
}

/// An ImplementationGuide's global profiles (`ImplementationGuide.global`) apply to every
/// resource of their type in the loaded packages, claimed or not.
#[test]
fn implementation_guide_global_profiles_apply_unclaimed() {
    let dir = std::env::temp_dir().join(format!("sektorbro-ig-global-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let named = json!({"resourceType": "StructureDefinition",
        "url": "http://example.org/fhir/StructureDefinition/named-patient", "name": "NamedPatient",
        "status": "active", "kind": "resource", "abstract": false, "type": "Patient",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
        "derivation": "constraint", "differential": {"element": [
            {"id": "Patient.name", "path": "Patient.name", "min": 1}]}});
    let guide = json!({"resourceType": "ImplementationGuide", "id": "example-global",
        "url": "http://example.org/fhir/ImplementationGuide/example-global", "version": "1.0.0",
        "name": "ExampleGlobal", "status": "active", "packageId": "example.global",
        "fhirVersion": ["4.0.1"], "global": [
            {"type": "Patient", "profile": "http://example.org/fhir/StructureDefinition/named-patient"},
            {"type": "Practitioner", "profile": "http://example.org/fhir/StructureDefinition/absent"}]});
    std::fs::write(dir.join("sd.json"), named.to_string()).expect("write");
    std::fs::write(dir.join("ig.json"), guide.to_string()).expect("write");
    let v = Validator::with_packages(&[&dir]).expect("load");
    let errors_of = |r: &Value| -> Vec<String> {
        v.validate(r, &[])
            .into_iter()
            .filter(|i| i.severity <= Severity::Error)
            .map(|i| format!("{} {}", i.expression.unwrap_or_default(), i.diagnostics))
            .collect()
    };
    let nameless = patient("p1");
    let found = errors_of(&nameless);
    assert!(
        found
            .iter()
            .any(|m| m.starts_with("Patient") && m.contains("NamedPatient")),
        "{found:#?}"
    );
    let mut named_patient = patient("p2");
    named_patient["name"] = json!([{"family": "Hansen"}]);
    assert!(errors_of(&named_patient).is_empty());
    // other types are untouched; a global profile that is not loaded is a warning
    let practitioner = json!({"resourceType": "Practitioner", "id": "d1"});
    let issues = v.validate(&practitioner, &[]);
    assert!(
        !issues.iter().any(|i| i.severity <= Severity::Error)
            && issues
                .iter()
                .any(|i| i.diagnostics.contains("StructureDefinition/absent")),
        "{issues:#?}"
    );
    // without the guide nothing applies
    assert!(errors(&nameless).is_empty(), "{:#?}", errors(&nameless));
    let _ = std::fs::remove_dir_all(&dir);
}
