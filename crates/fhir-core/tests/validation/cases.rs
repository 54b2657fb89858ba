//! Hand-written invalid resources, one per check, each asserting the exact issue and location.

use serde_json::{json, Value};

use crate::{errors, issues, validator};

/// The single error the validator finds in `v`: (location, message).
#[track_caller]
fn only_error(v: Value) -> (String, String) {
    let e = errors(&v);
    assert_eq!(e.len(), 1, "expected exactly one error, got {e:#?}");
    e.into_iter().next().expect("one")
}

#[track_caller]
fn assert_error(v: Value, location: &str, contains: &str) {
    let (loc, msg) = only_error(v);
    assert_eq!(loc, location, "location of: {msg}");
    assert!(
        msg.contains(contains),
        "{msg:?} should mention {contains:?}"
    );
}

fn patient(extra: Value) -> Value {
    let mut p = json!({"resourceType": "Patient", "text": {"status": "generated",
        "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Jens Hansen</div>"}});
    if let (Some(o), Some(e)) = (p.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    p
}

#[test]
fn a_valid_patient_has_no_errors() {
    let p = patient(
        json!({"active": true, "name": [{"family": "Hansen", "given": ["Jens"]}],
        "gender": "male", "birthDate": "1948-03-01"}),
    );
    assert!(errors(&p).is_empty(), "{:#?}", errors(&p));
}

#[test]
fn json_rules() {
    assert_error(
        patient(json!({"active": null})),
        "Patient.active",
        "null is not allowed",
    );
    assert_error(
        patient(json!({"gender": ""})),
        "Patient.gender",
        "empty string",
    );
    assert_error(patient(json!({"name": []})), "Patient.name", "empty array");
    assert_error(
        patient(json!({"maritalStatus": {}})),
        "Patient.maritalStatus",
        "empty object",
    );
    assert_error(
        patient(json!({"gender": ["male"]})),
        "Patient.gender",
        "single value, not an array",
    );
    assert_error(
        patient(json!({"name": {"family": "X"}})),
        "Patient.name",
        "must be an array",
    );
    assert_error(
        patient(json!({"_name": {"id": "x"}})),
        "Patient.name",
        "only allowed for primitive elements",
    );
    assert_error(
        patient(json!({"_birthDate": "x"})),
        "Patient.birthDate",
        "must be an object",
    );
    assert_error(
        patient(json!({"name": [{"given": ["A", "B"], "_given": [null]}]})),
        "Patient.name[0].given",
        "must line up",
    );
    // `_x` alone (an extension on an absent value) is fine; null placeholders pair up
    let ok = patient(
        json!({"name": [{"given": ["A", null], "_given": [null, {"extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier", "valueCode": "BR"}]}]}]}),
    );
    assert!(errors(&ok).is_empty(), "{:#?}", errors(&ok));
}

#[test]
fn resource_type_must_be_known() {
    assert_error(
        json!({"resourceType": "Patientt"}),
        "Patientt",
        "unknown resourceType",
    );
    assert_error(json!({"id": "x"}), "Resource", "resourceType is missing");
    assert_error(
        json!({"resourceType": "DomainResource"}),
        "DomainResource",
        "abstract",
    );
}

#[test]
fn unknown_elements_are_named_with_a_suggestion() {
    assert_error(
        patient(json!({"birthdate": "1948-03-01"})),
        "Patient.birthdate",
        "did you mean \"birthDate\"",
    );
    assert_error(
        patient(json!({"deceasedString": "yes"})),
        "Patient.deceasedString",
        "unknown element",
    );
}

#[test]
fn primitive_formats() {
    let cases = [
        (
            json!({"birthDate": "1948-02-30"}),
            "Patient.birthDate",
            "day 30 does not exist",
        ),
        (json!({"id": "a b"}), "Patient.id", "not a valid id"),
        (json!({"active": "true"}), "Patient.active", "true or false"),
        (
            json!({"multipleBirthInteger": 2147483648u64}),
            "Patient.multipleBirth.ofType(integer)",
            "out of range",
        ),
        (
            json!({"photo": [{"size": -1}]}),
            "Patient.photo[0].size",
            "0 or more",
        ),
        (
            json!({"photo": [{"contentType": "image/png", "data": "abc"}]}),
            "Patient.photo[0].data",
            "not base64",
        ),
        (
            json!({"identifier": [{"system": "urn:a b"}]}),
            "Patient.identifier[0].system",
            "whitespace",
        ),
        (json!({"gender": " male"}), "Patient.gender", "whitespace"),
        (
            json!({"meta": {"lastUpdated": "2024-01-01"}}),
            "Patient.meta.lastUpdated",
            "instant",
        ),
        (
            json!({"deceasedDateTime": "2024-01-01T10:00:00"}),
            "Patient.deceased.ofType(dateTime)",
            "time zone",
        ),
        (
            json!({"identifier": [{"system": "urn:uuid:ABC"}]}),
            "Patient.identifier[0].system",
            "UUID",
        ),
    ];
    for (extra, location, contains) in cases {
        assert_error(patient(extra), location, contains);
    }
    assert_error(
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "t"},
            "valueQuantity": {"value": "5"}}),
        "Observation.value.ofType(Quantity).value",
        "JSON number",
    );
    assert_error(
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "t"},
            "valueTime": "25:00:00"}),
        "Observation.value.ofType(time)",
        "not a valid time",
    );
}

#[test]
fn narrative_must_be_safe_xhtml() {
    let p = json!({"resourceType": "Patient", "text": {"status": "generated",
        "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><script>alert(1)</script></div>"}});
    assert_error(p, "Patient.text.div", "<script> is not allowed");
    let p = json!({"resourceType": "Patient", "text": {"status": "generated",
        "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"javascript:x()\">x</a></div>"}});
    assert_error(
        p,
        "Patient.text.div",
        "a script URL (javascript:) is not allowed",
    );
}

/// Issue 20, item 9: FHIR strings hold no control characters but TAB, LF and CR, whatever
/// their type.
#[test]
fn control_characters_in_strings_are_errors() {
    assert_error(
        patient(json!({"name": [{"family": "a\u{0}b"}]})),
        "Patient.name[0].family",
        "control character U+0000",
    );
    assert_error(
        patient(json!({"gender": "male\u{1b}"})),
        "Patient.gender",
        "control character U+001B",
    );
    assert_error(
        patient(json!({"identifier": [{"system": "urn:x\u{7}", "value": "1"}]})),
        "Patient.identifier[0].system",
        "control character U+0007",
    );
    assert!(errors(&patient(json!({"name": [{"text": "Jens\tHansen\r\n"}]}))).is_empty());
}

/// Issue 20: a decimal beyond a double's range could be stored but never found by search.
#[test]
fn decimals_beyond_a_double_are_errors() {
    for big in ["1e400", "-1E+309", "2e308"] {
        let obs: Value = serde_json::from_str(&format!(
            r#"{{"resourceType": "Observation", "status": "final", "code": {{"text": "t"}},
            "valueQuantity": {{"value": {big}}}}}"#
        ))
        .unwrap();
        assert_error(
            obs,
            "Observation.value.ofType(Quantity).value",
            "out of range",
        );
    }
    let fine: Value = serde_json::from_str(
        r#"{"resourceType": "Observation", "status": "final", "code": {"text": "t"},
        "valueQuantity": {"value": 1.7976931348623157e308}}"#,
    )
    .unwrap();
    assert!(errors(&fine).is_empty());
}

#[test]
fn choice_types_take_one_variant() {
    assert_error(
        patient(json!({"deceasedBoolean": true, "deceasedDateTime": "2020-01-01"})),
        "Patient.deceased",
        "both present",
    );
}

#[test]
fn cardinality() {
    let e = errors(
        &json!({"resourceType": "Observation", "text": {"status": "empty",
        "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">-</div>"}}),
    );
    let locations: Vec<&str> = e.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        locations,
        ["Observation.status", "Observation.code"],
        "{e:#?}"
    );
    assert!(e[0].1.contains("required"), "{e:?}");
}

#[test]
fn references_format_targets_and_contained() {
    let cp = |subject: &str| {
        json!({"resourceType": "CarePlan", "status": "active", "intent": "plan",
            "subject": {"reference": subject}})
    };
    assert_error(
        cp("Patient"),
        "CarePlan.subject.reference",
        "write it as Type/id",
    );
    assert_error(
        cp("Patient/a b"),
        "CarePlan.subject.reference",
        "not a valid id",
    );
    assert_error(
        cp("Organization/1"),
        "CarePlan.subject.reference",
        "type Organization, which is not allowed here",
    );
    assert_error(
        cp("#p1"),
        "CarePlan.subject.reference",
        "no contained resource has id \"p1\"",
    );
    let mut with_contained = cp("#p1");
    with_contained["contained"] =
        json!([{"resourceType": "Patient", "id": "p1", "gender": "x y "}]);
    assert_error(with_contained, "CarePlan.contained[0].gender", "whitespace");
    assert!(errors(&cp("Patient/123")).is_empty());
    assert!(errors(&cp("https://fhir.example.dk/Patient/123/_history/2")).is_empty());
    assert!(errors(&cp("Patient?identifier=urn:oid:1.2.208.176.1.2|0101501234")).is_empty());
}

#[test]
fn extensions_are_checked_against_their_definitions() {
    // R4's birthPlace takes an Address
    assert_error(
        patient(
            json!({"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
            "valueString": "Haderslev"}]}),
        ),
        "Patient.extension[0].value",
        "valueString is not allowed",
    );
    let e = errors(&patient(
        json!({"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
            "valueAddress": {"city": "Haderslev"}, "extension": [{"url": "x", "valueString": "y"}]}]}),
    ));
    assert_eq!(
        e,
        [
            (
                "Patient.extension[0]".to_string(),
                "an extension has either a value or nested extensions, not both (ext-1)"
                    .to_string()
            ),
            (
                "Patient.extension[0].extension".to_string(),
                "Extension.extension is not allowed by profile birthPlace".to_string()
            ),
        ]
    );
    let unknown = issues(&patient(
        json!({"extension": [{"url": "http://example.dk/x", "valueString": "y"}]}),
    ));
    // unknown: an error (as in HL7's reference validator), unless its domain is allowed
    // (extension_policy.rs)
    assert_eq!(unknown.len(), 1, "{unknown:#?}");
    assert_eq!(unknown[0].0, "error");
    assert!(unknown[0].2.contains("unknown extension"), "{unknown:#?}");
    assert_error(
        patient(json!({"modifierExtension": [{"url": "http://example.dk/x", "valueString": "y"}]})),
        "Patient.modifierExtension[0]",
        "unknown modifier extension",
    );
}

const SB_CAREPLAN: &str = "http://sektorbro.dk/fhir/StructureDefinition/sektorbro-careplan";

fn sb_careplan() -> Value {
    json!({"resourceType": "CarePlan", "meta": {"profile": [SB_CAREPLAN]},
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Genoptræning</div>"},
        "identifier": [{"system": "urn:oid:1.2.208.176.1.1", "value": "forløb-1"}],
        "status": "active", "intent": "plan", "subject": {"reference": "Patient/p1"},
        "period": {"start": "2026-11-01"}, "author": {"reference": "Organization/haderslev"},
        // what KL Common's care plan, which ours derives from, requires
        "category": [{"text": "Genoptræning"}], "created": "2026-11-01",
        "goal": [{"reference": "Goal/formaal"}]})
}

#[test]
fn our_careplan_profile_is_snapshotted_and_enforced() {
    assert!(
        errors(&sb_careplan()).is_empty(),
        "{:#?}",
        errors(&sb_careplan())
    );
    let mut v = sb_careplan();
    v["intent"] = json!("order");
    assert_error(
        v,
        "CarePlan.intent",
        "must match the pattern \"plan\" by profile SektorbroCarePlan",
    );
    let mut v = sb_careplan();
    v["period"] = json!({"end": "2026-12-01"});
    let e = errors(&v);
    assert!(
        e.iter()
            .any(|(l, m)| l == "CarePlan.period.start" && m.contains("required by profile")),
        "{e:#?}"
    );
    let mut v = sb_careplan();
    v.as_object_mut().expect("object").remove("author");
    assert_error(
        v,
        "CarePlan.author",
        "required by profile SektorbroCarePlan",
    );
    let mut v = sb_careplan();
    v["subject"] = json!({"reference": "Group/g1"});
    assert_error(
        v,
        "CarePlan.subject.reference",
        "by profile SektorbroCarePlan; allowed: Patient",
    );
}

#[test]
fn profile_extension_slices_check_the_extension_definition() {
    let mut v = sb_careplan();
    v["extension"] = json!([{"url": "http://sektorbro.dk/fhir/StructureDefinition/rehab-phase",
        "valueString": "assessment"}]);
    assert_error(
        v,
        "CarePlan.extension[0].value",
        "valueString is not allowed by profile RehabPhase",
    );
    let mut v = sb_careplan();
    v["extension"] = json!([
        {"url": "http://sektorbro.dk/fhir/StructureDefinition/rehab-phase", "valueCode": "assessment"},
        {"url": "http://sektorbro.dk/fhir/StructureDefinition/rehab-phase", "valueCode": "follow-up"}]);
    assert_error(
        v,
        "CarePlan.extension",
        "slice \"phase\" of CarePlan.extension allows at most 1",
    );
}

#[test]
fn slicing_in_the_r4_blood_pressure_profile() {
    let bp = |components: Value| {
        json!({"resourceType": "Observation", "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/bp"]},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">BP</div>"},
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-11-20T10:00:00+01:00",
            "component": components})
    };
    let sys = json!({"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
        "valueQuantity": {"value": 118, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}});
    let dia = json!({"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
        "valueQuantity": {"value": 80, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}});
    let both = bp(json!([sys.clone(), dia]));
    assert!(errors(&both).is_empty(), "{:#?}", errors(&both));
    let e = errors(&bp(json!([sys])));
    assert!(
        e.iter().any(|(l, m)| l == "Observation.component"
            && m.contains("slice \"DiastolicBP\"")
            && m.contains("at least 1")),
        "{e:#?}"
    );
}

#[test]
fn unknown_claimed_profiles_are_a_warning() {
    let mut p = patient(json!({}));
    p["meta"] = json!({"profile": ["http://example.dk/StructureDefinition/nope"]});
    let all = issues(&p);
    assert!(
        all.iter()
            .any(|(sev, loc, m)| sev == "warning" && loc == "Patient" && m.contains("not loaded")),
        "{all:#?}"
    );
}

#[test]
fn bundles_are_validated_entry_by_entry() {
    let b = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "https://fhir.example.dk/Patient/p1", "resource": {"resourceType": "Patient", "id": "p2"}},
        {"fullUrl": "urn:uuid:9d4e0c5a-4f7e-4a35-9f1e-2d1d6f3a7b11", "resource": {"resourceType": "Patient", "gender": ["x"]}},
        {"fullUrl": "Patient/p3", "resource": {"resourceType": "Patient", "id": "p3"}}]});
    let e = errors(&b);
    let locations: Vec<&str> = e.iter().map(|(l, _)| l.as_str()).collect();
    assert!(locations.contains(&"Bundle.entry[0].fullUrl"), "{e:#?}");
    assert!(
        locations.contains(&"Bundle.entry[1].resource.gender"),
        "{e:#?}"
    );
    assert!(locations.contains(&"Bundle.entry[2].fullUrl"), "{e:#?}");
}

#[test]
fn deep_nesting_does_not_overflow() {
    let mut v = json!({"text": "x"});
    for _ in 0..200 {
        v = json!({"extension": [{"url": "http://x", "valueCodeableConcept": v}]});
    }
    let p = patient(json!({"maritalStatus": v}));
    let _ = validator().validate(&p, &[]);
}

#[test]
fn bindings_required_is_an_error_that_lists_the_codes() {
    let (loc, msg) = only_error(patient(json!({"gender": "m"})));
    assert_eq!(loc, "Patient.gender");
    assert!(
        msg.contains("not in value set http://hl7.org/fhir/ValueSet/administrative-gender"),
        "{msg}"
    );
    assert!(
        msg.contains("allowed: female, male, other, unknown"),
        "{msg}"
    );
}

#[test]
fn bindings_extensible_is_a_warning_and_unknown_systems_say_why() {
    // Patient.maritalStatus is extensible
    let all = issues(&patient(json!({"maritalStatus": {"coding": [
        {"system": "http://example.dk/civilstand", "code": "gift"}]}})));
    assert!(
        all.iter().any(|(s, l, m)| s == "warning"
            && l == "Patient.maritalStatus"
            && m.contains("extensible")),
        "{all:#?}"
    );
    assert!(!all.iter().any(|(s, _, _)| s == "error"), "{all:#?}");
    // A value set drawn from SNOMED CT cannot be checked here: a warning, never a silent pass.
    let c = json!({"resourceType": "Condition", "subject": {"reference": "Patient/p1"},
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
        "bodySite": [{"coding": [{"system": "http://snomed.info/sct", "code": "7769000"}]}]});
    let all = issues(&c);
    assert!(!all.iter().any(|(s, _, _)| s == "error"), "{all:#?}");
}

#[test]
fn codes_must_exist_in_code_systems_we_hold() {
    let (loc, msg) = only_error(patient(json!({"maritalStatus": {"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "ZZ"}]}})));
    assert_eq!(loc, "Patient.maritalStatus.coding[0].code");
    assert!(msg.contains("unknown code \"ZZ\""), "{msg}");
}

#[test]
fn invariants_are_evaluated_with_their_key() {
    let (loc, msg) = only_error(
        json!({"resourceType": "CarePlan", "status": "active", "intent": "plan",
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2026-11-20", "end": "2026-11-01"}}),
    );
    assert_eq!(loc, "CarePlan.period");
    assert!(msg.contains("[per-1]"), "{msg}");
    // a profile's own invariant, with the profile's text
    let mut v = sb_careplan();
    v["period"] = json!({"start": "2026-11-01", "end": "2026-12-01"});
    let (loc, msg) = only_error(v);
    assert_eq!(loc, "CarePlan");
    assert!(
        msg.contains("[sb-cp-1]") && msg.contains("SektorbroCarePlan"),
        "{msg}"
    );
    // dom-3: a contained resource nobody points to
    let e = errors(
        &json!({"resourceType": "CarePlan", "status": "active", "intent": "plan",
        "subject": {"reference": "Patient/p1"},
        "contained": [{"resourceType": "Goal", "id": "g1", "lifecycleStatus": "active",
            "description": {"text": "x"}, "subject": {"reference": "Patient/p1"}}]}),
    );
    assert!(
        e.iter()
            .any(|(l, m)| l == "CarePlan" && m.contains("[dom-3]")),
        "{e:#?}"
    );
}

/// dom-3 as R4 writes it. The walk checks it natively (its expression costs the square of the
/// resource's size); our FHIRPath engine evaluating the expression is the reference here.
const DOM3: &str = "contained.where((('#'+id in (%resource.descendants().reference | \
    %resource.descendants().as(canonical) | %resource.descendants().as(uri) | \
    %resource.descendants().as(url))) or descendants().where(reference = '#').exists() or \
    descendants().where(as(canonical) = '#').exists() or \
    descendants().where(as(canonical) = '#').exists()).not()).trace('unmatched', id).empty()";

#[test]
fn dom3_checked_natively_agrees_with_its_expression() {
    let v = validator();
    let expr = fhir_core::fhirpath::compile(DOM3).expect("dom-3 compiles");
    let goal = |id: &str, extra: Value| {
        let mut g = json!({"resourceType": "Goal", "lifecycleStatus": "active",
            "description": {"text": "x"}, "subject": {"reference": "Patient/p1"}});
        if !id.is_empty() {
            g["id"] = json!(id);
        }
        merge(g, extra)
    };
    let careplan = |contained: Vec<Value>, extra: Value| {
        merge(
            json!({"resourceType": "CarePlan", "status": "active", "intent": "plan",
                "subject": {"reference": "Patient/p1"}, "contained": contained}),
            extra,
        )
    };
    let none = json!({});
    let cases = [
        (
            "a reference to it",
            careplan(
                vec![goal("g1", json!({}))],
                json!({"goal": [{"reference": "#g1"}]}),
            ),
            true,
        ),
        (
            "nothing refers to it",
            careplan(vec![goal("g1", json!({}))], json!({})),
            false,
        ),
        (
            "one of two referenced",
            careplan(
                vec![goal("g1", json!({})), goal("g2", json!({}))],
                json!({"goal": [{"reference": "#g1"}]}),
            ),
            false,
        ),
        (
            "referenced from another contained resource",
            careplan(
                vec![
                    goal("g1", json!({})),
                    goal(
                        "g2",
                        json!({"note": [{"authorReference": {"reference": "#g1"}}]}),
                    ),
                ],
                json!({"goal": [{"reference": "#g2"}]}),
            ),
            true,
        ),
        (
            "refers back to its container",
            careplan(
                vec![goal("g1", json!({"subject": {"reference": "#"}}))],
                json!({}),
            ),
            true,
        ),
        (
            "a uri of # is no reference back",
            careplan(
                vec![goal(
                    "g1",
                    json!({"target": [{"measure":
            {"coding": [{"system": "#", "code": "x"}]}}]}),
                )],
                json!({}),
            ),
            false,
        ),
        (
            "named by a uri",
            careplan(
                vec![goal("g1", json!({}))],
                json!({"instantiatesUri": ["#g1"]}),
            ),
            true,
        ),
        (
            "named by a canonical",
            careplan(
                vec![goal("g1", json!({}))],
                json!({"instantiatesCanonical": ["#g1"]}),
            ),
            true,
        ),
        (
            "named in a string only",
            careplan(vec![goal("g1", json!({}))], json!({"description": "#g1"})),
            false,
        ),
        (
            "in an extension's reference",
            careplan(
                vec![goal("g1", json!({}))],
                json!({"extension":
            [{"url": "http://example.org/x", "valueReference": {"reference": "#g1"}}]}),
            ),
            true,
        ),
        (
            "without an id",
            careplan(vec![goal("", none.clone())], none.clone()),
            true,
        ),
    ];
    for (what, r, expected) in cases {
        let ctx = fhir_core::fhirpath::EvalContext::new(v.model(), &r);
        let by_expression = expr.evaluate_boolean(&ctx).expect("evaluates") == Some(true);
        let native = !issues(&r)
            .iter()
            .any(|(_, l, m)| l == "CarePlan" && m.contains("[dom-3]"));
        assert_eq!(
            native, by_expression,
            "{what}: native and expression disagree"
        );
        assert_eq!(native, expected, "{what}");
    }
    // In a Bundle, each entry's resource is its own container: a `#g1` in another entry does
    // not reach it.
    let b = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:6a0f1d0e-0d3c-4b7e-9f57-1b7c1d7e0a01",
         "resource": careplan(vec![goal("g1", json!({}))], json!({}))},
        {"fullUrl": "urn:uuid:6a0f1d0e-0d3c-4b7e-9f57-1b7c1d7e0a02",
         "resource": careplan(vec![goal("g1", json!({}))], json!({"goal": [{"reference": "#g1"}]}))}]});
    let located: Vec<String> = errors(&b)
        .into_iter()
        .filter(|(_, m)| m.contains("[dom-3]"))
        .map(|(l, m)| {
            assert!(m.contains("not referenced: #g1"), "{m}");
            l
        })
        .collect();
    assert_eq!(located, ["Bundle.entry[0].resource"]);
}

/// `base` with the members of `extra` set on it.
fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(o), Value::Object(e)) = (base.as_object_mut(), extra) {
        o.extend(e);
    }
    base
}

#[test]
fn extensions_out_of_their_context_are_flagged() {
    // patient-birthPlace is defined for Patient, not CarePlan
    let all = issues(
        &json!({"resourceType": "CarePlan", "status": "active", "intent": "plan",
        "subject": {"reference": "Patient/p1"},
        "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
            "valueAddress": {"city": "Haderslev"}}]}),
    );
    assert!(
        all.iter().any(|(s, l, m)| s == "error"
            && l == "CarePlan.extension[0]"
            && m.contains("is not allowed here (on CarePlan)")),
        "{all:#?}"
    );
}

/// A StructureDefinition with `n` slices of `path` (constraining `base_type`).
fn sliced_profile(base_type: &str, path: &str, n: usize) -> Value {
    let mut element = vec![json!({"id": base_type, "path": base_type})];
    element.extend((0..n).map(|i| {
        json!({"id": format!("{path}:s{i}"), "path": path, "sliceName": format!("s{i}"), "max": "1"})
    }));
    json!({"resourceType": "StructureDefinition", "url": "http://example.org/StructureDefinition/big",
        "name": "Big", "status": "draft", "kind": "resource", "abstract": false, "type": base_type,
        "baseDefinition": format!("http://hl7.org/fhir/StructureDefinition/{base_type}"),
        "derivation": "constraint", "differential": {"element": element}})
}

#[test]
fn snapshot_generation_of_a_profile_being_validated_is_bounded() {
    let at = "StructureDefinition.differential";
    // 1,000 differential elements are generated (the largest real profiles have a few hundred)
    let e = errors(&sliced_profile("Patient", "Patient.extension", 999));
    assert!(!e.iter().any(|(l, _)| l == at), "{e:#?}");
    // one more is refused, saying why
    let e = errors(&sliced_profile("Patient", "Patient.extension", 1_000));
    assert!(
        e.iter()
            .any(|(l, m)| l == at && m.contains("snapshots are generated for at most 1000")),
        "{e:#?}"
    );
    // slices that each copy a large subtree stop the snapshot at its bound
    let e = errors(&sliced_profile("Bundle", "Bundle.entry", 900));
    assert!(
        e.iter()
            .any(|(l, m)| l == at && m.contains("grows past 10000 elements")),
        "{e:#?}"
    );
}
