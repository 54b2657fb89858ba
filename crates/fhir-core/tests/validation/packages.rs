//! Loading packages: resources recognised by content, every problem reported, strictness, several
//! versions of one package side by side, and the snapshot generator's reports.

use fhir_core::validation::{FindingKind, Sources, Validator};
use serde_json::{json, Value};

/// A fresh folder under the system's temporary directory.
fn folder(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sektorbro-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

fn profile(url: &str, ty: &str, diff: Value) -> Value {
    json!({"resourceType": "StructureDefinition", "url": url, "name": "P", "status": "active",
        "kind": "resource", "abstract": false, "type": ty,
        "baseDefinition": format!("http://hl7.org/fhir/StructureDefinition/{ty}"),
        "derivation": "constraint", "differential": {"element": diff}})
}

fn write(dir: &std::path::Path, file: &str, v: &Value) {
    std::fs::write(dir.join(file), v.to_string()).expect("write");
}

/// The problems loading what a test added: not the embedded packages' (our own package's
/// closure brings dk-core 1.1.0 and its known CPR look-ahead, pinned in the crate's unit tests).
fn problems(v: &Validator) -> Vec<String> {
    v.load_report()
        .problems()
        .filter(|f| {
            !v.defs
                .packages()
                .iter()
                .any(|p| p.embedded && p.id() == f.package)
        })
        .map(|f| f.to_string())
        .collect()
}

#[test]
fn resources_are_found_by_content_and_problems_reported() {
    let dir = folder("by-content");
    write(
        &dir,
        "profile.json",
        &profile(
            "http://example.org/p",
            "Patient",
            json!([{"id": "Patient.name", "path": "Patient.name", "min": 1}]),
        ),
    );
    write(
        &dir,
        "ext-foo.json",
        &json!({"resourceType": "StructureDefinition", "url": "http://example.org/ext-foo",
            "name": "Foo", "status": "active", "kind": "complex-type", "abstract": false,
            "type": "Extension", "context": [{"type": "element", "expression": "Patient"}],
            "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Extension",
            "derivation": "constraint", "differential": {"element": [
                {"id": "Extension.url", "path": "Extension.url", "fixedUri": "http://example.org/ext-foo"},
                {"id": "Extension.value[x]", "path": "Extension.value[x]", "type": [{"code": "boolean"}]}]}}),
    );
    std::fs::write(dir.join("notes.json"), "{\"no\": \"resourceType\"}").expect("write");
    std::fs::write(dir.join("broken.json"), "{").expect("write");
    let v = Validator::with_packages(&[&dir]).expect("load");
    assert!(v.defs.profile("http://example.org/p").is_some());
    assert!(v.defs.profile("http://example.org/ext-foo").is_some());
    let report = v.load_report();
    let broken: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.subject == "broken.json")
        .collect();
    assert_eq!(broken.len(), 1);
    assert_eq!(broken[0].kind, FindingKind::Problem);
    assert!(report
        .notes()
        .any(|f| f.subject == "notes.json" && f.message.contains("not a FHIR resource")));
    // The profile applies, and the extension is checked against its definition.
    let issues = v.validate(
        &json!({"resourceType": "Patient", "meta": {"profile": ["http://example.org/p"]},
            "extension": [{"url": "http://example.org/ext-foo", "valueString": "x"}]}),
        &[],
    );
    let text: Vec<String> = issues
        .iter()
        .map(|i| format!("{:?}: {}", i.expression, i.diagnostics))
        .collect();
    assert!(text.iter().any(|t| t.contains("Patient.name")), "{text:#?}");
    assert!(text.iter().any(|t| t.contains("valueString")), "{text:#?}");

    let strict = Validator::load(&Sources {
        packages: vec![dir.clone()],
        strict: true,
        ..Sources::default()
    });
    let err = format!("{:#}", strict.err().expect("strict refuses"));
    assert!(err.contains("broken.json"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Through a choice element: a differential may reach into `value[x]` once it allows one type,
/// in a type slice, or for `id`/`extension`; elsewhere the profile is a load problem that names
/// the element, and a resource claiming it is told the profile could not be loaded.
#[test]
fn choice_elements_and_differential_order() {
    let dir = folder("choice");
    let p = |n: &str| format!("http://example.org/{n}");
    write(
        &dir,
        "a.json",
        &profile(
            &p("one-type"),
            "Observation",
            json!([
        {"id": "Observation.value[x]", "path": "Observation.value[x]", "type": [{"code": "Quantity"}]},
        {"id": "Observation.value[x].value", "path": "Observation.value[x].value", "min": 1}]),
        ),
    );
    write(
        &dir,
        "b.json",
        &profile(
            &p("type-slice"),
            "Observation",
            json!([
        {"id": "Observation.value[x]:valueQuantity", "path": "Observation.valueQuantity", "sliceName": "valueQuantity"},
        {"id": "Observation.value[x]:valueQuantity.value", "path": "Observation.valueQuantity.value", "min": 1}]),
        ),
    );
    write(
        &dir,
        "c.json",
        &profile(
            &p("common-child"),
            "Observation",
            json!([
        {"id": "Observation.value[x].extension", "path": "Observation.value[x].extension", "max": "0"}]),
        ),
    );
    write(
        &dir,
        "d.json",
        &profile(
            &p("ambiguous"),
            "Observation",
            json!([
        {"id": "Observation.value[x].value", "path": "Observation.value[x].value", "min": 1}]),
        ),
    );
    write(
        &dir,
        "e.json",
        &profile(
            &p("out-of-order"),
            "Condition",
            json!([
        {"id": "Condition.code", "path": "Condition.code", "min": 1},
        {"id": "Condition.severity", "path": "Condition.severity", "min": 1}]),
        ),
    );
    let v = Validator::with_packages(&[&dir]).expect("load");
    let problems = problems(&v);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems
        .iter()
        .any(|m| m.contains("/ambiguous") && m.contains("allows 11 types")));
    assert!(problems
        .iter()
        .any(|m| m.contains("/out-of-order")
            && m.contains("Condition.severity after Condition.code")));
    for url in ["one-type", "type-slice", "common-child", "out-of-order"] {
        assert!(v.defs.profile(&p(url)).is_some(), "{url}");
    }
    let obs = |profile: &str, value: Value| {
        let mut o = json!({"resourceType": "Observation", "status": "final", "code": {"text": "t"},
            "meta": {"profile": [p(profile)]}});
        o["valueQuantity"] = value;
        v.validate(&o, &[])
    };
    let errors = |issues: &[fhir_core::fhir::outcome::Issue]| {
        issues
            .iter()
            .filter(|i| i.severity <= fhir_core::fhir::outcome::Severity::Error)
            .count()
    };
    assert_eq!(errors(&obs("one-type", json!({"unit": "kg"}))), 1);
    assert_eq!(errors(&obs("one-type", json!({"value": 1}))), 0);
    assert_eq!(errors(&obs("type-slice", json!({"unit": "kg"}))), 1);
    let with_ext =
        json!({"value": 1, "extension": [{"url": "http://example.org/x", "valueString": "y"}]});
    assert!(errors(&obs("common-child", with_ext)) >= 1);
    let claimed = obs("ambiguous", json!({"value": 1}));
    assert!(
        claimed
            .iter()
            .any(|i| i.diagnostics.contains("could not be loaded")
                && i.diagnostics.contains("/ambiguous")),
        "{claimed:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The embedded IG packages keep several versions of one package apart: MedCom
/// HospitalNotification 3.0.2 sees medcom-core 2.0.0 and dk-core 2.0.0, as it declares, while an
/// unversioned reference outside any package means the newest.
#[test]
fn versions_coexist_and_resolve_within_their_closure() {
    let v = Validator::embedded().expect("load");
    let defs = &v.defs;
    let hn = defs
        .package_index("medcom.fhir.dk.hospitalnotification#3.0.2")
        .expect("HospitalNotification embedded");
    let patient = "http://medcomfhir.dk/ig/core/StructureDefinition/medcom-core-patient";
    let version = |p: Option<&std::sync::Arc<fhir_core::validation::model::Profile>>| {
        p.map(|p| defs.package_of(p).id()).unwrap_or_default()
    };
    assert_eq!(
        version(defs.profile_in(patient, Some(hn))),
        "medcom.fhir.dk.core#2.0.0"
    );
    assert_eq!(version(defs.profile(patient)), "medcom.fhir.dk.core#4.0.0");
    assert_eq!(
        version(defs.profile(&format!("{patient}|3.0.1"))),
        "medcom.fhir.dk.core#3.0.1"
    );
    let closure: Vec<String> = defs.packages()[hn]
        .closure
        .iter()
        .map(|&i| defs.packages()[i].id())
        .collect();
    assert!(
        closure.contains(&"hl7.fhir.dk.core#2.0.0".to_string()),
        "{closure:?}"
    );
    // The message profile's own references were pinned to the versions it declares.
    let message = defs
        .profile("http://medcomfhir.dk/ig/hospitalnotification/StructureDefinition/medcom-hospitalNotification-message")
        .expect("message profile");
    assert_eq!(
        defs.package_of(message).id(),
        "medcom.fhir.dk.hospitalnotification#3.0.2"
    );
}

/// The walk pairs an object's member counts with its element's children by walking both in
/// ascending order (`walk.rs`, `object_base`): every compiled element, in every embedded
/// package, must list its children so.
#[test]
fn every_elements_children_are_in_ascending_order() {
    let v = Validator::embedded().expect("load");
    let mut elements = 0;
    for p in v.defs.all_profiles() {
        for (i, e) in p.elements.iter().enumerate() {
            elements += 1;
            assert!(
                e.children.windows(2).all(|w| w[0] < w[1]),
                "{} element {i} ({}): children {:?}",
                p.url,
                e.path,
                e.children
            );
        }
    }
    assert!(elements > 10_000, "only {elements} elements compiled");
}
