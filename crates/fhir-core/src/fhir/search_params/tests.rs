use super::*;
use serde_json::json;

/// Epoch millis of an RFC 3339 timestamp, for expected values.
fn ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .expect("test timestamp is RFC 3339")
        .timestamp_millis()
}

fn registry() -> &'static SearchParamRegistry {
    SearchParamRegistry::embedded()
}

/// The entries of `resource` for `param`.
fn values(resource: &Value, param: &str) -> Vec<IndexValue> {
    registry()
        .extract(resource)
        .into_iter()
        .filter(|e| e.param == param)
        // Compare strings by their normalised form; `exact` is the input as written.
        .map(|e| match e.value {
            IndexValue::String { normalized, .. } => IndexValue::String {
                normalized,
                exact: String::new(),
            },
            other => other,
        })
        .collect()
}

fn token(system: Option<&str>, code: &str) -> IndexValue {
    IndexValue::Token {
        system: system.map(String::from),
        code: code.into(),
    }
}

fn reference(rtype: &str, id: &str) -> IndexValue {
    IndexValue::Reference {
        rtype: rtype.into(),
        id: id.into(),
    }
}

fn text(s: &str) -> IndexValue {
    IndexValue::String {
        normalized: s.into(),
        exact: String::new(),
    }
}

#[test]
fn date_range_covers_the_precision_given() {
    assert_eq!(
        date_range("2021"),
        Some((1_609_459_200_000, 1_640_995_199_999))
    );
    assert_eq!(
        date_range("2021-03"),
        Some((ms("2021-03-01T00:00:00Z"), ms("2021-04-01T00:00:00Z") - 1))
    );
    assert_eq!(
        date_range("2021-12"),
        Some((ms("2021-12-01T00:00:00Z"), ms("2022-01-01T00:00:00Z") - 1))
    );
    assert_eq!(
        date_range("2021-03-04"),
        Some((ms("2021-03-04T00:00:00Z"), ms("2021-03-05T00:00:00Z") - 1))
    );
    let at = ms("2021-03-04T09:00:00Z");
    assert_eq!(
        date_range("2021-03-04T10:00:00+01:00"),
        Some((at, at + 999))
    );
    assert_eq!(
        date_range("2021-03-04T08:00:00-01:00"),
        Some((at, at + 999))
    );
    let exact = ms("2021-03-04T10:00:00.123Z");
    assert_eq!(date_range("2021-03-04T10:00:00.123Z"), Some((exact, exact)));
    assert_eq!(
        date_range("2021-03-04T10:00:00.1Z"),
        Some((exact - 23, exact + 76))
    );
    assert_eq!(
        date_range("2021-03-04T10:00:00.123456Z"),
        Some((exact, exact))
    );
    // No zone: UTC. No seconds: the whole minute.
    let ten = ms("2021-03-04T10:00:00Z");
    assert_eq!(date_range("2021-03-04T10:00:00"), Some((ten, ten + 999)));
    assert_eq!(date_range("2021-03-04T10:00"), Some((ten, ten + 59_999)));
}

#[test]
fn date_range_rejects_what_is_not_a_fhir_date() {
    for bad in [
        "",
        "21",
        "2021-3",
        "2021-02-30",
        "2021-13",
        "2021-03-04T",
        "2021-03T10:00:00Z",
        "2021-03-04T25:00:00Z",
        "2021-03-04T10:00:00+1",
        "2021-03-04T10:00:00.Z",
        "2021-03-04 10:00",
        "yesterday",
    ] {
        assert_eq!(date_range(bad), None, "{bad:?}");
    }
}

#[test]
fn strings_are_lowercased_folded_and_collapsed() {
    assert_eq!(
        normalize_string("  Søren   ÆBLE\tÅgård "),
        "soren aeble agard"
    );
    assert_eq!(normalize_string("José Müller-Łukasz"), "jose muller-lukasz");
    assert_eq!(normalize_string("Straße Œuvre Þór"), "strasse oeuvre thor");
    // Decomposed accents fold like precomposed ones.
    assert_eq!(normalize_string("Jose\u{301}"), "jose");
    assert_eq!(normalize_string("東京"), "東京");
}

#[test]
fn references_are_parsed_relative_absolute_and_versioned() {
    assert_eq!(parse_reference("Patient/123"), Some(("Patient", "123")));
    assert_eq!(
        parse_reference("https://fhir.example.dk/r4/Patient/a-1/_history/3"),
        Some(("Patient", "a-1"))
    );
    assert_eq!(parse_reference("#contained"), None);
    assert_eq!(
        parse_reference("urn:uuid:0f4c6b52-5e2e-4b53-a4b2-2a0c7a7f3e11"),
        None
    );
    assert_eq!(parse_reference("patient/1"), None);
    assert_eq!(parse_reference("Patient/"), None);
}

#[test]
fn registry_has_the_parameters_the_gateway_relies_on() {
    let expected: &[(&str, &[(&str, ParamType)])] = &[
        (
            "CarePlan",
            &[
                ("goal", ParamType::Reference),
                ("care-team", ParamType::Reference),
                ("subject", ParamType::Reference),
                ("patient", ParamType::Reference),
                ("status", ParamType::Token),
                ("category", ParamType::Token),
                ("date", ParamType::Date),
                ("identifier", ParamType::Token),
            ],
        ),
        (
            "Goal",
            &[
                ("lifecycle-status", ParamType::Token),
                ("target-date", ParamType::Date),
                ("patient", ParamType::Reference),
                ("subject", ParamType::Reference),
            ],
        ),
        (
            "Encounter",
            &[
                ("class", ParamType::Token),
                ("type", ParamType::Token),
                ("part-of", ParamType::Reference),
                ("date", ParamType::Date),
                ("patient", ParamType::Reference),
                ("subject", ParamType::Reference),
                ("status", ParamType::Token),
            ],
        ),
        (
            "Patient",
            &[
                ("identifier", ParamType::Token),
                ("name", ParamType::String),
                ("birthdate", ParamType::Date),
                ("family", ParamType::String),
                ("given", ParamType::String),
                ("_tag", ParamType::Token),
                ("_profile", ParamType::Uri),
            ],
        ),
        (
            "Organization",
            &[
                ("identifier", ParamType::Token),
                ("name", ParamType::String),
            ],
        ),
    ];
    for (rtype, params) in expected {
        for (code, ptype) in *params {
            let def = registry()
                .get(rtype, code)
                .unwrap_or_else(|| panic!("{rtype} lacks {code}"));
            assert_eq!(&def.ptype, ptype, "{rtype}.{code}");
            assert!(!def.paths.is_empty(), "{rtype}.{code} has no paths");
        }
    }
    let goal = registry()
        .get("CarePlan", "goal")
        .map(|d| d.targets.clone());
    assert_eq!(goal, Some(vec!["Goal".to_string()]));
    // The where(resolve() is Patient) filter narrows the targets.
    let patient = registry()
        .get("CarePlan", "patient")
        .map(|d| d.targets.clone());
    assert_eq!(patient, Some(vec!["Patient".to_string()]));
    assert!(registry().get("Patient", "no-such-param").is_none());
    assert!(registry().get("NoSuchType", "_id").is_none());
}

#[test]
fn params_for_is_sorted_and_empty_for_unknown_types() {
    let codes: Vec<&str> = registry()
        .params_for("CarePlan")
        .map(|d| d.code.as_str())
        .collect();
    let mut sorted = codes.clone();
    sorted.sort_unstable();
    assert_eq!(codes, sorted);
    assert!(codes.contains(&"subject"));
    assert_eq!(registry().params_for("NoSuchType").count(), 0);
}

#[test]
fn embedded_file_round_trips_through_the_registry() {
    let v: Value = serde_json::from_str(EMBEDDED_JSON).expect("embedded file is JSON");
    let resources = v["resources"].as_object().expect("has resources");
    for (rtype, params) in resources {
        let params = params.as_object().expect("params object");
        for (code, p) in params {
            let def = registry().get(rtype, code).expect("loaded");
            assert_eq!(&def.to_json(), p, "{rtype}.{code}");
        }
    }
}

#[test]
fn careplan_is_indexed_by_subject_goal_category_period_and_status() {
    let careplan = json!({
        "resourceType": "CarePlan",
        "id": "cp1",
        "meta": {"lastUpdated": "2024-01-01T00:00:00Z", "tag": [{"system": "urn:t", "code": "x"}]},
        "identifier": [{"system": "urn:oid:1.2.208", "value": "plan-7"}],
        "status": "active",
        "intent": "plan",
        "category": [{"coding": [
            {"system": "http://snomed.info/sct", "code": "736271009"},
            {"system": "http://snomed.info/sct", "code": "736271009"}
        ], "text": "Outpatient care plan"}],
        "subject": {"reference": "Patient/123"},
        "period": {"start": "2021-03-04"},
        "careTeam": [{"reference": "CareTeam/t1"}],
        "goal": [{"reference": "Goal/g1"}, {"reference": "https://x.dk/fhir/Goal/g2/_history/4"},
                 {"reference": "#contained-goal"}],
        "instantiatesCanonical": ["http://example.dk/PlanDefinition/p1"]
    });
    assert_eq!(
        values(&careplan, "subject"),
        vec![reference("Patient", "123")]
    );
    assert_eq!(
        values(&careplan, "patient"),
        vec![reference("Patient", "123")]
    );
    assert_eq!(
        values(&careplan, "goal"),
        vec![reference("Goal", "g1"), reference("Goal", "g2")]
    );
    assert_eq!(
        values(&careplan, "care-team"),
        vec![reference("CareTeam", "t1")]
    );
    assert_eq!(
        values(&careplan, "category"),
        vec![token(Some("http://snomed.info/sct"), "736271009")]
    );
    assert_eq!(values(&careplan, "status"), vec![token(None, "active")]);
    assert_eq!(values(&careplan, "intent"), vec![token(None, "plan")]);
    assert_eq!(
        values(&careplan, "identifier"),
        vec![token(Some("urn:oid:1.2.208"), "plan-7")]
    );
    assert_eq!(
        values(&careplan, "date"),
        vec![IndexValue::Date {
            lo: ms("2021-03-04T00:00:00Z"),
            hi: i64::MAX
        }]
    );
    assert_eq!(
        values(&careplan, "instantiates-canonical"),
        vec![IndexValue::Uri(
            "http://example.dk/PlanDefinition/p1".into()
        )]
    );
    assert_eq!(values(&careplan, "_tag"), vec![token(Some("urn:t"), "x")]);
    let entries = registry().extract(&careplan);
    assert!(entries
        .iter()
        .all(|e| e.param != "_id" && e.param != "_lastUpdated"));
    let category = entries.iter().filter(|e| e.param == "category").count();
    assert_eq!(category, 1, "duplicates are removed");
}

#[test]
fn patient_filter_skips_subjects_that_are_groups() {
    let careplan = json!({"resourceType": "CarePlan", "subject": {"reference": "Group/9"}});
    assert_eq!(values(&careplan, "subject"), vec![reference("Group", "9")]);
    assert!(values(&careplan, "patient").is_empty());
}

#[test]
fn patient_is_indexed_by_name_parts_identifier_birthdate_and_telecom() {
    let patient = json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": "0101011234"}],
        "name": [{"family": "Sørensen", "given": ["Anne  Marie", "Åse"], "prefix": ["Dr."]}],
        "telecom": [{"system": "phone", "value": "+45 12345678"}, {"system": "email", "value": "a@b.dk"}],
        "birthDate": "1970-05-17",
        "address": [{"line": ["Østergade 1"], "city": "Århus", "postalCode": "8000"}],
        "gender": "female",
        "active": true
    });
    assert_eq!(
        values(&patient, "identifier"),
        vec![token(Some("urn:oid:1.2.208.176.1.2"), "0101011234")]
    );
    assert_eq!(
        values(&patient, "name"),
        vec![
            text("sorensen"),
            text("anne marie"),
            text("ase"),
            text("dr.")
        ]
    );
    assert_eq!(values(&patient, "family"), vec![text("sorensen")]);
    assert_eq!(
        values(&patient, "given"),
        vec![text("anne marie"), text("ase")]
    );
    assert_eq!(
        values(&patient, "birthdate"),
        vec![IndexValue::Date {
            lo: ms("1970-05-17T00:00:00Z"),
            hi: ms("1970-05-18T00:00:00Z") - 1
        }]
    );
    assert_eq!(values(&patient, "phone"), vec![token(None, "+45 12345678")]);
    assert_eq!(values(&patient, "email"), vec![token(None, "a@b.dk")]);
    assert_eq!(values(&patient, "address-city"), vec![text("arhus")]);
    assert_eq!(
        values(&patient, "address"),
        vec![text("ostergade 1"), text("arhus"), text("8000")]
    );
    assert_eq!(values(&patient, "gender"), vec![token(None, "female")]);
    assert_eq!(values(&patient, "active"), vec![token(None, "true")]);
}

#[test]
fn encounter_class_is_a_coding_and_part_of_a_reference() {
    let encounter = json!({
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "partOf": {"reference": "Encounter/e0"},
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2021-03-04T10:00:00+01:00", "end": "2021-03-04T11:00:00+01:00"}
    });
    assert_eq!(
        values(&encounter, "class"),
        vec![token(
            Some("http://terminology.hl7.org/CodeSystem/v3-ActCode"),
            "AMB"
        )]
    );
    assert_eq!(
        values(&encounter, "part-of"),
        vec![reference("Encounter", "e0")]
    );
    assert_eq!(
        values(&encounter, "patient"),
        vec![reference("Patient", "p1")]
    );
    assert_eq!(
        values(&encounter, "date"),
        vec![IndexValue::Date {
            lo: ms("2021-03-04T09:00:00Z"),
            hi: ms("2021-03-04T10:00:00Z") + 999
        }]
    );
}

#[test]
fn bare_choice_paths_find_the_concrete_element() {
    let observation = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "effectiveDateTime": "2021-03-04",
        "valueQuantity": {"value": 72, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}
    });
    assert_eq!(
        values(&observation, "date"),
        vec![IndexValue::Date {
            lo: ms("2021-03-04T00:00:00Z"),
            hi: ms("2021-03-05T00:00:00Z") - 1
        }]
    );
    assert_eq!(
        values(&observation, "value-quantity"),
        vec![IndexValue::Quantity {
            value: 72.0,
            system: Some("http://unitsofmeasure.org".into()),
            code: Some("/min".into()),
            unit: Some("beats/minute".into())
        }]
    );
    // `status` is absent here, and `statusReason`-style siblings are not choice variants.
    let task = json!({"resourceType": "Task", "statusReason": {"coding": [{"code": "x"}]}});
    assert!(values(&task, "status").is_empty());
}

#[test]
fn goal_target_date_and_timing_events() {
    let goal = json!({
        "resourceType": "Goal",
        "lifecycleStatus": "active",
        "subject": {"reference": "Patient/p1"},
        "target": [{"dueDate": "2022-06"}]
    });
    assert_eq!(
        values(&goal, "target-date"),
        vec![IndexValue::Date {
            lo: ms("2022-06-01T00:00:00Z"),
            hi: ms("2022-07-01T00:00:00Z") - 1
        }]
    );
    assert_eq!(
        values(&goal, "lifecycle-status"),
        vec![token(None, "active")]
    );
    let careplan = json!({
        "resourceType": "CarePlan",
        "activity": [{"detail": {"scheduledTiming": {"event": ["2022-01-02"]}}}]
    });
    let day = ms("2022-01-02T00:00:00Z");
    assert_eq!(
        values(&careplan, "activity-date"),
        vec![IndexValue::Date {
            lo: day,
            hi: day + 86_399_999
        }]
    );
}

#[test]
fn resources_without_a_known_type_have_no_entries() {
    assert!(registry().extract(&json!({"status": "active"})).is_empty());
    assert!(registry()
        .extract(&json!({"resourceType": "Nonsense", "status": "x"}))
        .is_empty());
}

#[test]
fn from_json_reports_malformed_files() {
    assert!(SearchParamRegistry::from_json(&json!({})).is_err());
    let bad_type = json!({"resources": {"Patient": {"x": {"type": "bogus", "paths": []}}}});
    assert!(SearchParamRegistry::from_json(&bad_type).is_err());
    let bad_step = json!({"resources": {"Patient": {"x": {"type": "token", "paths": [[1]]}}}});
    assert!(SearchParamRegistry::from_json(&bad_step).is_err());
}

#[test]
fn repeated_values_are_indexed_once_in_first_seen_order() {
    let tok = |c: &str| IndexValue::Token {
        system: None,
        code: c.into(),
    };
    let mut values = vec![
        tok("b"),
        IndexValue::Number(0.0),
        tok("a"),
        tok("b"),
        IndexValue::Number(-0.0),
        IndexValue::Uri("b".into()),
        tok("a"),
    ];
    dedup(&mut values);
    assert_eq!(
        values,
        [
            tok("b"),
            IndexValue::Number(0.0),
            tok("a"),
            IndexValue::Uri("b".into())
        ]
    );
    // many values: each once, in order
    let mut many: Vec<IndexValue> = (0..20_000)
        .map(|i| tok(&format!("v{}", i % 5_000)))
        .collect();
    dedup(&mut many);
    assert_eq!(many.len(), 5_000);
    assert_eq!(many[4_999], tok("v4999"));
}
