use super::*;

#[test]
fn criteria_accept_the_clients_prefixes() {
    let q = "identifier=urn%3Aoid%3A1.2.208.176.1.2%7C0101451234";
    for text in [
        q.to_string(),
        format!("?{q}"),
        format!("Patient?{q}"),
        format!("http://host/fhir/Patient?_format=json&{q}"),
        format!("https://host/fhir/Patient/?{q}"),
    ] {
        let got = criteria_query("Patient", &text).unwrap();
        assert!(got.ends_with(q), "{text} -> {got}");
    }
    assert_eq!(
        criteria_query("Patient", "identifier=a?b"),
        Ok("identifier=a?b")
    );
    assert!(criteria_query("Patient", "Observation?code=x").is_err());
    assert!(criteria_query("Patient", "http://h/fhir/Observation?code=x").is_err());
}

fn parse(rtype: &str, q: &[(&str, &str)]) -> Result<SearchQuery, Vec<Issue>> {
    let pairs: Vec<(String, String)> = q
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    parse_search(
        SearchParamRegistry::embedded(),
        ResourceType::parse(rtype).expect("a served type"),
        &pairs,
        ParseOptions {
            default_count: 20,
            max_count: 100,
            lenient: false,
            caps: SearchCaps::default(),
        },
    )
}

/// Issue 20, item 9: however criteria arrive, a control character is an error naming the
/// parameter (and the character is not echoed).
#[test]
fn control_characters_in_criteria_are_errors() {
    for (name, value) in [
        ("family", "a\0b"),
        ("identifier", "x|\u{1b}"),
        ("na\0me", "x"),
    ] {
        let errors = parse("Patient", &[(name, value), ("gender", "male")]).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        let shown = name.replace('\0', "\u{fffd}");
        assert_eq!(errors[0].expression.as_deref(), Some(shown.as_str()));
        assert!(errors[0].diagnostics.contains("control character"));
        assert!(!errors[0].diagnostics.contains('\0'));
    }
    assert!(parse("Patient", &[("family", "a\tb")]).is_ok());
}

#[test]
fn token_forms_are_told_apart() {
    assert_eq!(
        token_match("urn:oid:1.2.208.176.1.2|0101801234"),
        Match::Token {
            system: TokenSystem::Is("urn:oid:1.2.208.176.1.2".into()),
            code: Some("0101801234".into())
        }
    );
    assert_eq!(
        token_match("|x"),
        Match::Token {
            system: TokenSystem::None,
            code: Some("x".into())
        }
    );
    assert_eq!(
        token_match("active"),
        Match::Token {
            system: TokenSystem::Any,
            code: Some("active".into())
        }
    );
}

#[test]
fn has_becomes_a_reverse_chain_and_nests() {
    let q = parse("Patient", &[("_has:Observation:patient:code", "1234-5")]).expect("valid");
    let Match::Has {
        source,
        param,
        inner,
    } = &q.filters[0].any_of[0]
    else {
        panic!("not a reverse chain: {q:?}");
    };
    assert_eq!(
        (source.as_str(), param.as_str()),
        ("Observation", "patient")
    );
    assert_eq!(inner.param, "code");
    // Nested, and with a chain inside.
    let q = parse(
        "Patient",
        &[(
            "_has:CarePlan:subject:_has:CarePlan:based-on:status",
            "active",
        )],
    )
    .expect("valid");
    let Match::Has { inner, .. } = &q.filters[0].any_of[0] else {
        panic!("{q:?}")
    };
    assert!(matches!(&inner.any_of[0], Match::Has { param, .. } if param == "based-on"));
    parse(
        "Patient",
        &[("_has:CarePlan:subject:care-team.status", "active")],
    )
    .expect("chain inside");
    // A third level is refused, like chains deeper than two references.
    let third = "_has:CarePlan:subject:_has:CarePlan:based-on:_has:CarePlan:based-on:status";
    let issues = parse("Patient", &[(third, "active")]).expect_err("too deep");
    assert!(issues[0].diagnostics.contains("deeper"), "{issues:?}");
}

#[test]
fn has_errors_name_the_parameter() {
    for (name, value) in [
        ("_has", "x"),
        ("_has:Observation", "x"),
        ("_has:Observation:patient", "x"),
        ("_has:Observation::code", "x"),
        ("_has:Nonsense:patient:code", "x"),
        ("_has:Observation:colour:code", "x"),
        ("_has:Observation:code:code", "x"),
        ("_has:Observation:patient:colour", "x"),
        ("_has:Observation:patient:code", ""),
        // Goal.subject refers to Patient, Group and Organization, never to a CarePlan.
        ("_has:Goal:subject:lifecycle-status", "active"),
    ] {
        let rtype = if name.starts_with("_has:Goal") {
            "CarePlan"
        } else {
            "Patient"
        };
        let issues = parse(rtype, &[(name, value)]).expect_err(name);
        assert_eq!(issues.len(), 1, "{name}: {issues:?}");
        assert_eq!(
            issues[0].expression.as_deref(),
            Some(format!("{name}={value}").as_str()),
            "{issues:?}"
        );
    }
}

#[test]
fn has_counts_against_max_chains() {
    let pairs: Vec<(String, String)> = (0..3)
        .map(|n| ("_has:Observation:patient:code".to_string(), format!("c{n}")))
        .collect();
    let opts = |max_chains| ParseOptions {
        default_count: 20,
        max_count: 100,
        lenient: false,
        caps: SearchCaps {
            max_chains,
            ..SearchCaps::default()
        },
    };
    let reg = SearchParamRegistry::embedded();
    assert!(parse_search(
        reg,
        ResourceType::parse("Patient").unwrap(),
        &pairs,
        opts(3)
    )
    .is_ok());
    let issues = parse_search(
        reg,
        ResourceType::parse("Patient").unwrap(),
        &pairs,
        opts(2),
    )
    .expect_err("over the cap");
    assert!(format!("{issues:?}").contains("max_chains"), "{issues:?}");
}

#[test]
fn chained_patient_identifier_becomes_a_chain_on_patient() {
    let q = parse(
        "CarePlan",
        &[("patient.identifier", "urn:oid:1.2.208.176.1.2|0101801234")],
    )
    .expect("valid");
    assert!(matches!(&q.filters[0].any_of[0], Match::Chain { target, .. } if target == "Patient"));
}

#[test]
fn unknown_parameters_are_all_reported() {
    let errs = parse(
        "CarePlan",
        &[("colour", "red"), ("status", "active"), ("size", "9")],
    )
    .expect_err("unknown params");
    assert_eq!(errs.len(), 2);
    assert_eq!(errs[0].expression.as_deref(), Some("colour=red"));
}

#[test]
fn lenient_handling_ignores_unknown_parameters_with_a_warning() {
    let pairs = vec![("colour".to_string(), "red".to_string())];
    let q = parse_search(
        SearchParamRegistry::embedded(),
        ResourceType::parse("CarePlan").unwrap(),
        &pairs,
        ParseOptions {
            default_count: 20,
            max_count: 100,
            lenient: true,
            caps: SearchCaps::default(),
        },
    )
    .expect("lenient");
    assert!(q.filters.is_empty());
    assert_eq!(q.ignored.len(), 1);
}

#[test]
fn date_prefixes_and_count_limits() {
    let q = parse(
        "Goal",
        &[("target-date", "ge2024-01-01"), ("_count", "5000")],
    )
    .expect("ok");
    assert!(matches!(
        q.filters[0].any_of[0],
        Match::Date {
            prefix: Prefix::Ge,
            ..
        }
    ));
    assert_eq!(q.count, 100);
    assert!(parse("Goal", &[("target-date", "soon")]).is_err());
}

#[test]
fn cursor_round_trips() {
    let c = Cursor {
        values: vec![SortValue::Int(5), SortValue::Text("a".into())],
        seq: 42,
    };
    assert_eq!(Cursor::decode(&c.encode()), Some(c));
    assert_eq!(Cursor::decode("%%%"), None);
}
