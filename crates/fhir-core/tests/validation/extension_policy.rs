//! The extension policy of HL7's reference validator (issue 17): an extension whose definition is
//! not loaded is an error unless its url is in an allowed domain; a known extension used outside
//! its definition's context, or where its holder fails a context invariant, is an error. Each
//! case below was checked with the reference validator (org.hl7.fhir.validation 6.10.2), which
//! gives the same verdict.

use fhir_core::validation::{Sources, Validator};
use serde_json::{json, Value};

use crate::{errors, issues};

const H: &str = "http://hl7.org/fhir/StructureDefinition/";

fn patient(extra: Value) -> Value {
    let mut p = json!({"resourceType": "Patient", "id": "p"});
    for (k, v) in extra.as_object().expect("object") {
        p[k] = v.clone();
    }
    p
}

fn ext(name: &str, value: Value) -> Value {
    let mut e = json!({"url": format!("{H}{name}")});
    let (k, v) = value
        .as_object()
        .and_then(|o| o.iter().next())
        .expect("one value");
    e[k] = v.clone();
    e
}

/// The errors whose message contains `words`.
fn errors_saying(v: &Value, words: &str) -> Vec<(String, String)> {
    errors(v)
        .into_iter()
        .filter(|(_, m)| m.contains(words))
        .collect()
}

/// The errors that are about extensions being out of place.
fn context_errors(v: &Value) -> Vec<(String, String)> {
    errors_saying(v, "is not allowed here")
}

#[track_caller]
fn fits(v: Value) {
    let e = context_errors(&v);
    assert!(e.is_empty(), "expected no context errors, got {e:#?}");
}

#[track_caller]
fn misplaced(v: Value, location: &str) {
    let e = context_errors(&v);
    assert!(
        e.len() == 1 && e[0].0 == location,
        "expected one context error at {location}, got {e:#?}"
    );
}

#[test]
fn unknown_extensions_are_errors_unless_their_domain_is_allowed() {
    let unknown = patient(json!({"extension": [
        {"url": "http://unknown.test/fhir/ext/foo", "valueString": "x"},
        {"url": "http://example.org/fhir/ext/foo", "valueString": "x"},
        {"url": format!("{H}no-such-extension"), "valueString": "x"}]}));
    let e = errors(&unknown);
    for i in 0..3 {
        let at = format!("Patient.extension[{i}]");
        assert!(
            e.iter()
                .any(|(l, m)| *l == at && m.contains("unknown extension")),
            "{at}: {e:#?}"
        );
    }

    let v = Validator::load(&Sources {
        allowed_extension_domains: vec![
            "unknown.test".into(),
            "http://hl7.org/fhir/StructureDefinition/".into(),
        ],
        ..Sources::default()
    })
    .expect("load");
    let found = v.validate(&unknown, &[]);
    let severities: Vec<(String, String)> = found
        .iter()
        .filter(|i| i.diagnostics.contains("unknown extension"))
        .map(|i| {
            (
                i.expression.clone().unwrap_or_default(),
                i.severity.as_str().to_string(),
            )
        })
        .collect();
    assert_eq!(
        severities,
        [
            ("Patient.extension[1]".to_string(), "error".to_string()),
            ("Patient.extension[0]".to_string(), "warning".to_string()),
            ("Patient.extension[2]".to_string(), "warning".to_string()),
        ]
    );
    // A host name covers its subdomains, not names that merely end in it; a URL prefix is a
    // prefix of the whole url.
    assert!(v.allows_unknown_extension("https://fhir.unknown.test/ext"));
    assert!(v.allows_unknown_extension("http://UNKNOWN.test:8080/ext"));
    assert!(!v.allows_unknown_extension("http://notunknown.test/ext"));
    assert!(!v.allows_unknown_extension("http://unknown.test.evil.example/ext"));
    assert!(!v.allows_unknown_extension("urn:uuid:6b1a0f5e-8d55-4bb4-9a8a-3b2c7d7e6f10"));
    assert!(!v.allows_unknown_extension("https://hl7.org/fhir/StructureDefinition/x"));
    // A modifier extension that is not known cannot be ignored, whatever the domain.
    let modifier = patient(json!({"modifierExtension": [
        {"url": "http://unknown.test/fhir/ext/foo", "valueString": "x"}]}));
    assert!(v
        .validate(&modifier, &[])
        .iter()
        .any(|i| i.severity.as_str() == "error" && i.diagnostics.contains("unknown modifier")));
}

#[test]
fn known_extensions_in_their_context() {
    let birth_time = || {
        ext(
            "patient-birthTime",
            json!({"valueDateTime": "2020-01-01T10:00:00Z"}),
        )
    };
    // an element context on a primitive: its `_name` companion
    fits(patient(
        json!({"birthDate": "2020-01-01", "_birthDate": {"extension": [birth_time()]}}),
    ));
    misplaced(
        patient(json!({"extension": [birth_time()]})),
        "Patient.extension[0]",
    );
    misplaced(
        patient(json!({"contact": [{"name": {"family": "Y"}, "extension": [birth_time()]}]})),
        "Patient.contact[0].extension[0]",
    );
    // a datatype context, wherever the datatype is used
    let en_use = || ext("iso21090-EN-use", json!({"valueCode": "I"}));
    fits(patient(
        json!({"name": [{"family": "X", "extension": [en_use()]}]}),
    ));
    fits(patient(
        json!({"contact": [{"name": {"family": "X", "extension": [en_use()]}}]}),
    ));
    misplaced(
        patient(json!({"address": [{"city": "X", "extension": [en_use()]}]})),
        "Patient.address[0].extension[0]",
    );
    // an element of a datatype
    let own_prefix = || ext("humanname-own-prefix", json!({"valueString": "v"}));
    fits(patient(
        json!({"name": [{"family": "X", "_family": {"extension": [own_prefix()]}}]}),
    ));
    misplaced(
        patient(json!({"name": [{"family": "X", "given": ["A"],
            "_given": [{"extension": [own_prefix()]}]}]})),
        "Patient.name[0].given[0].extension[0]",
    );
    // `Resource`: on any resource, not on its elements
    let goal = || {
        ext(
            "resource-pertainsToGoal",
            json!({"valueReference": {"reference": "Goal/g"}}),
        )
    };
    fits(patient(json!({"extension": [goal()]})));
    misplaced(
        patient(json!({"name": [{"family": "X", "extension": [goal()]}]})),
        "Patient.name[0].extension[0]",
    );
    // `Element`: anywhere
    let absent = || ext("data-absent-reason", json!({"valueCode": "unknown"}));
    fits(patient(json!({"_gender": {"extension": [absent()]},
        "contact": [{"name": {"family": "Y"}, "extension": [absent()]}]})));
}

#[test]
fn datatype_contexts_take_derived_types_and_choices() {
    let translation = || {
        ext(
            "iso21090-PQ-translation",
            json!({"valueQuantity": {"value": 1}}),
        )
    };
    let obs = |value: Value| {
        let mut o = json!({"resourceType": "Observation", "id": "o", "status": "final",
            "code": {"text": "x"}});
        for (k, v) in value.as_object().expect("object") {
            o[k] = v.clone();
        }
        o
    };
    fits(obs(json!({"valueQuantity": {"value": 1, "unit": "mg",
        "system": "http://unitsofmeasure.org", "code": "mg", "extension": [translation()]}})));
    // Age is a Quantity
    fits(
        json!({"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/p"},
        "onsetAge": {"value": 3, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a",
            "extension": [translation()]}}),
    );
    misplaced(
        obs(json!({"valueString": "x", "_valueString": {"extension": [translation()]}})),
        "Observation.valueString.extension[0]",
    );
}

#[test]
fn contexts_inside_bundles_contained_resources_and_reused_elements() {
    let birth_time = || {
        ext(
            "patient-birthTime",
            json!({"valueDateTime": "2020-01-01T10:00:00Z"}),
        )
    };
    let en_use = || ext("iso21090-EN-use", json!({"valueCode": "I"}));
    // the holder's path starts at the resource that holds it
    misplaced(
        json!({"resourceType": "Bundle", "id": "b", "type": "collection", "entry": [{
            "fullUrl": "http://example.com/fhir/Patient/p",
            "resource": patient(json!({"name": [{"family": "X", "extension": [en_use()]}],
                "extension": [birth_time()]}))}]}),
        "Bundle.entry[0].resource.extension[0]",
    );
    fits(
        json!({"resourceType": "Observation", "id": "o", "status": "final",
        "code": {"text": "x"}, "subject": {"reference": "#p1"},
        "contained": [{"resourceType": "Patient", "id": "p1", "birthDate": "2020-01-01",
            "_birthDate": {"extension": [birth_time()]}}]}),
    );
    // Questionnaire.item.item reuses Questionnaire.item: an item context holds at any depth
    let hidden = || ext("questionnaire-hidden", json!({"valueBoolean": true}));
    fits(
        json!({"resourceType": "Questionnaire", "id": "q", "status": "draft", "item": [
        {"linkId": "1", "type": "group", "text": "g", "extension": [hidden()], "item": [
            {"linkId": "1.1", "type": "group", "text": "g2", "extension": [hidden()], "item": [
                {"linkId": "1.1.1", "type": "string", "text": "s", "extension": [hidden()]}]}]}]}),
    );
}

#[test]
fn context_invariants_hold_where_the_extension_is_used() {
    let q = |ty: &str| {
        json!({"resourceType": "Questionnaire", "id": "q", "status": "draft", "item": [
            {"linkId": "1", "type": ty, "text": "s", "extension": [
                ext("questionnaire-unit", json!({"valueCoding":
                    {"system": "http://unitsofmeasure.org", "code": "kg"}}))]}]})
    };
    fits(q("decimal"));
    let e = errors(&q("string"));
    assert!(
        e.iter()
            .any(|(l, m)| l == "Questionnaire.item[0].extension[0]"
                && m.contains("type='integer' or type='decimal'")),
        "{e:#?}"
    );
    // `%extension` is the extension itself
    let min_occurs = |required: bool, n: i64| {
        json!({"resourceType": "Questionnaire", "id": "q", "status": "draft", "item": [
            {"linkId": "1", "type": "string", "text": "s", "required": required, "extension": [
                ext("questionnaire-minOccurs", json!({"valueInteger": n}))]}]})
    };
    fits(min_occurs(true, 2));
    fits(min_occurs(false, 0));
    assert!(
        !errors_saying(&min_occurs(false, 2), "contextInvariant").is_empty(),
        "{:#?}",
        issues(&min_occurs(false, 2))
    );
}

/// Extension and FHIRPath contexts, which R4's own extensions do not use: an extension defined
/// for use on another extension, and one for the elements a FHIRPath expression selects.
#[test]
fn extension_and_fhirpath_contexts() {
    let dir = std::env::temp_dir().join(format!("sektorbro-ext-ctx-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let def = |id: &str, context: Value| {
        json!({"resourceType": "StructureDefinition", "url": format!("http://example.org/{id}"),
            "name": id, "status": "active", "kind": "complex-type", "abstract": false,
            "type": "Extension", "context": context,
            "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Extension",
            "derivation": "constraint", "differential": {"element": [
                {"id": "Extension.url", "path": "Extension.url",
                    "fixedUri": format!("http://example.org/{id}")},
                {"id": "Extension.value[x]", "path": "Extension.value[x]",
                    "type": [{"code": "string"}]}]}})
    };
    for (id, context) in [
        (
            "on-birth-time",
            json!([{"type": "extension", "expression": format!("{H}patient-birthTime")}]),
        ),
        (
            "on-official-names",
            json!([{"type": "fhirpath", "expression": "Patient.name.where(use = 'official')"}]),
        ),
    ] {
        std::fs::write(dir.join(format!("{id}.json")), def(id, context).to_string())
            .expect("write");
    }
    let v = Validator::with_packages(&[&dir]).expect("load");
    let placed = |r: &Value| -> Vec<String> {
        v.validate(r, &[])
            .into_iter()
            .filter(|i| i.diagnostics.contains("is not allowed here"))
            .map(|i| i.expression.unwrap_or_default())
            .collect()
    };
    let on_ext = json!({"url": "http://example.org/on-birth-time", "valueString": "x"});
    let good = patient(
        json!({"birthDate": "2020-01-01", "_birthDate": {"extension": [
        {"url": format!("{H}patient-birthTime"), "valueDateTime": "2020-01-01T10:00:00Z",
         "extension": [on_ext.clone()]}]}}),
    );
    // ext-1 forbids a value beside nested extensions, so only the context is looked at here
    assert!(placed(&good).is_empty(), "{:#?}", v.validate(&good, &[]));
    // on the value of such an extension too (within its context, as HL7's validator reads it)
    let on_value = patient(
        json!({"birthDate": "2020-01-01", "_birthDate": {"extension": [
        {"url": format!("{H}patient-birthTime"), "valueDateTime": "2020-01-01T10:00:00Z",
         "_valueDateTime": {"extension": [on_ext.clone()]}}]}}),
    );
    assert!(
        placed(&on_value).is_empty(),
        "{:#?}",
        v.validate(&on_value, &[])
    );
    let bad = patient(json!({"extension": [on_ext]}));
    assert_eq!(placed(&bad), ["Patient.extension[0]"]);

    let on_name = json!({"url": "http://example.org/on-official-names", "valueString": "x"});
    let names = patient(json!({"name": [
        {"use": "official", "family": "A", "extension": [on_name.clone()]},
        {"use": "nickname", "family": "B", "extension": [on_name]}]}));
    assert_eq!(placed(&names), ["Patient.name[1].extension[0]"]);
}

/// An extension defined as a modifier goes in `modifierExtension`, any other in `extension`; a
/// cross-version extension is not known well enough here to say which, so it is not refused in
/// either.
#[test]
fn modifier_extensions_go_where_their_definition_says() {
    let def = |id: &str, modifier: bool| {
        let mut root = json!({"id": "Extension", "path": "Extension"});
        if modifier {
            root["isModifier"] = json!(true);
            root["isModifierReason"] = json!("says the care is not to be given");
        }
        json!({"resourceType": "StructureDefinition", "url": format!("http://example.org/{id}"),
            "name": id, "status": "active", "kind": "complex-type", "abstract": false,
            "type": "Extension", "context": [{"type": "element", "expression": "Element"}],
            "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Extension",
            "derivation": "constraint", "differential": {"element": [root,
                {"id": "Extension.url", "path": "Extension.url",
                    "fixedUri": format!("http://example.org/{id}")},
                {"id": "Extension.value[x]", "path": "Extension.value[x]",
                    "type": [{"code": "boolean"}]}]}})
    };
    let v = crate::validator_with(
        "ext-mod",
        &[&def("not-to-be-done", true), &def("reason-note", false)],
    );
    let errs = |r: &Value| -> Vec<(String, String)> { crate::errors_by(&v, r) };
    let with = |slot: &str, url: &str| {
        let mut p = json!({"resourceType": "Patient", "active": true});
        p[slot] = json!([{"url": url, "valueBoolean": true}]);
        p
    };
    assert!(errs(&with(
        "modifierExtension",
        "http://example.org/not-to-be-done"
    ))
    .is_empty());
    assert!(errs(&with("extension", "http://example.org/reason-note")).is_empty());
    let e = errs(&with("extension", "http://example.org/not-to-be-done"));
    assert!(
        e.iter()
            .any(|(l, m)| l == "Patient.extension[0]" && m.contains("put it in modifierExtension")),
        "{e:#?}"
    );
    let e = errs(&with("modifierExtension", "http://example.org/reason-note"));
    assert!(
        e.iter()
            .any(|(l, m)| l == "Patient.modifierExtension[0]" && m.contains("put it in extension")),
        "{e:#?}"
    );
    let xver = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Patient.active";
    assert!(errs(&with("modifierExtension", xver)).is_empty());
}
