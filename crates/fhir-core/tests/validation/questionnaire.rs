//! QuestionnaireResponses against their Questionnaire, and the other checks the HL7 reference
//! validator makes that the walk took over (issue 17): profile minValue/maxValue, Coding.system,
//! Attachment.size, per-1 across precisions, que-12 as corrected, MeasureReport against its
//! Measure. Each case written from the R4 specification; verdicts checked against the reference
//! validator on the same resources (see docs/validation.md).

use serde_json::{json, Value};

use crate::{errors, issues, validator};

const Q_URL: &str = "http://sektorbro.example/fhir/Questionnaire/intake";

/// A collection Bundle holding the Questionnaire with `items` and a completed response with
/// `answers` (its `item` array); the response is `Bundle.entry[1].resource`.
fn pair(items: Value, answers: Value) -> Value {
    pair_with(items, answers, "completed")
}

fn pair_with(items: Value, answers: Value, status: &str) -> Value {
    json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "http://sektorbro.example/fhir/Questionnaire/intake",
         "resource": {"resourceType": "Questionnaire", "id": "intake", "url": Q_URL,
                      "status": "active", "item": items}},
        {"fullUrl": "http://sektorbro.example/fhir/QuestionnaireResponse/r1",
         "resource": {"resourceType": "QuestionnaireResponse", "id": "r1",
                      "questionnaire": Q_URL, "status": status, "item": answers}}
    ]})
}

const R: &str = "Bundle.entry[1].resource";

/// The errors, with the response's location prefix cut to `QR`.
#[track_caller]
fn errs(v: &Value) -> Vec<(String, String)> {
    errors(v)
        .into_iter()
        .map(|(l, m)| (l.replacen(R, "QR", 1), m))
        .collect()
}

#[track_caller]
fn one_error(v: Value, location: &str, contains: &str) {
    let e = errs(&v);
    assert_eq!(e.len(), 1, "expected one error, got {e:#?}");
    assert_eq!(e[0].0, location, "{}", e[0].1);
    assert!(
        e[0].1.contains(contains),
        "{:?} should mention {contains:?}",
        e[0].1
    );
}

#[track_caller]
fn clean(v: Value) {
    let e = errs(&v);
    assert!(e.is_empty(), "{e:#?}");
}

#[test]
fn a_matching_response_is_clean() {
    clean(pair(
        json!([
            {"linkId": "age", "text": "Age", "type": "integer", "required": true},
            {"linkId": "mood", "type": "choice", "answerOption": [
                {"valueCoding": {"system": "http://sektorbro.example/cs", "code": "good"}},
                {"valueCoding": {"system": "http://sektorbro.example/cs", "code": "bad"}}]},
            {"linkId": "g", "type": "group", "item": [
                {"linkId": "g.note", "type": "string", "maxLength": 10}]}
        ]),
        json!([
            {"linkId": "age", "text": "Age", "answer": [{"valueInteger": 81}]},
            {"linkId": "mood", "answer": [{"valueCoding": {"system": "http://sektorbro.example/cs", "code": "good"}}]},
            {"linkId": "g", "item": [{"linkId": "g.note", "answer": [{"valueString": "fine"}]}]}
        ]),
    ));
}

#[test]
fn answer_types_follow_the_item_type() {
    one_error(
        pair(
            json!([{"linkId": "a", "type": "boolean"}]),
            json!([{"linkId": "a", "answer": [{"valueString": "yes"}]}]),
        ),
        "QR.item[0].answer[0].value.ofType(string)",
        "must be boolean",
    );
    one_error(
        pair(
            json!([{"linkId": "a", "type": "url"}]),
            json!([{"linkId": "a", "answer": [{"valueString": "http://x"}]}]),
        ),
        "QR.item[0].answer[0].value.ofType(string)",
        "must be uri",
    );
    clean(pair(
        json!([{"linkId": "a", "type": "text"}, {"linkId": "b", "type": "quantity"}]),
        json!([{"linkId": "a", "answer": [{"valueString": "long text"}]},
               {"linkId": "b", "answer": [{"valueQuantity": {"value": 3, "unit": "kg"}}]}]),
    ));
}

#[test]
fn link_ids_exist_at_their_level_and_in_order() {
    one_error(
        pair(
            json!([{"linkId": "a", "type": "string"}]),
            json!([{"linkId": "zz", "answer": [{"valueString": "x"}]}]),
        ),
        "QR.item[0]",
        "linkId \"zz\" is not in the Questionnaire",
    );
    one_error(
        pair(
            json!([{"linkId": "g", "type": "group", "item": [{"linkId": "s", "type": "string"}]}]),
            json!([{"linkId": "s", "answer": [{"valueString": "x"}]}]),
        ),
        "QR.item[0]",
        "wrong place",
    );
    one_error(
        pair(
            json!([{"linkId": "a", "type": "string"}, {"linkId": "b", "type": "string"}]),
            json!([{"linkId": "b", "answer": [{"valueString": "x"}]},
                   {"linkId": "a", "answer": [{"valueString": "y"}]}]),
        ),
        "QR.item[1]",
        "out of order",
    );
}

#[test]
fn required_items_and_repeats() {
    let items = json!([{"linkId": "a", "type": "string", "required": true},
                       {"linkId": "b", "type": "string"}]);
    one_error(
        pair(
            items.clone(),
            json!([{"linkId": "b", "answer": [{"valueString": "x"}]}]),
        ),
        "QR",
        "required item with linkId \"a\"",
    );
    // an item without an answer counts as missing
    one_error(
        pair(items.clone(), json!([{"linkId": "a"}])),
        "QR",
        "required item with linkId \"a\"",
    );
    // not finished (in progress, stopped, entered in error): a warning only; amended is as
    // finished as completed (HL7's validator draws the same line)
    for status in ["in-progress", "stopped", "entered-in-error", "amended"] {
        let v = pair_with(
            items.clone(),
            json!([{"linkId": "b", "answer": [{"valueString": "x"}]}]),
            status,
        );
        if status == "amended" {
            assert_eq!(errs(&v).len(), 1, "{status}: {:#?}", errs(&v));
            continue;
        }
        assert!(errs(&v).is_empty(), "{status}: {:#?}", errs(&v));
        assert!(
            issues(&v)
                .iter()
                .any(|(s, _, m)| s == "warning" && m.contains("required item")),
            "{status}"
        );
    }
    one_error(
        pair(
            json!([{"linkId": "a", "type": "string"}]),
            json!([{"linkId": "a", "answer": [{"valueString": "x"}, {"valueString": "y"}]}]),
        ),
        "QR.item[0].answer[1]",
        "does not repeat",
    );
    one_error(
        pair(
            json!([{"linkId": "a", "type": "group", "item": [{"linkId": "b", "type": "string"}]}]),
            json!([{"linkId": "a", "item": [{"linkId": "b", "answer": [{"valueString": "x"}]}]},
                   {"linkId": "a", "item": [{"linkId": "b", "answer": [{"valueString": "y"}]}]}]),
        ),
        "QR.item[1]",
        "does not repeat",
    );
}

#[test]
fn groups_and_display_items_take_no_answers() {
    one_error(
        pair(
            json!([{"linkId": "g", "type": "group", "item": [{"linkId": "s", "type": "string"}]}]),
            json!([{"linkId": "g", "answer": [{"valueString": "x"}]}]),
        ),
        "QR.item[0].answer[0]",
        "is a group",
    );
    one_error(
        pair(
            json!([{"linkId": "d", "type": "display", "text": "Read this"}]),
            json!([{"linkId": "d", "answer": [{"valueString": "x"}]}]),
        ),
        "QR.item[0].answer[0]",
        "display",
    );
    // a question's sub-items belong under its answers (qrs-1 says so too when it has answers)
    one_error(
        pair(
            json!([{"linkId": "q", "type": "boolean", "item": [{"linkId": "q.1", "type": "string"}]}]),
            json!([{"linkId": "q", "item": [{"linkId": "q.1", "answer": [{"valueString": "x"}]}]}]),
        ),
        "QR.item[0]",
        "under its answers",
    );
    clean(pair(
        json!([{"linkId": "q", "type": "boolean", "item": [{"linkId": "q.1", "type": "string"}]}]),
        json!([{"linkId": "q", "answer": [{"valueBoolean": true,
                "item": [{"linkId": "q.1", "answer": [{"valueString": "x"}]}]}]}]),
    ));
}

#[test]
fn text_must_match_the_questionnaire() {
    one_error(
        pair(
            json!([{"linkId": "a", "text": "Name", "type": "string"}]),
            json!([{"linkId": "a", "text": "Navn", "answer": [{"valueString": "x"}]}]),
        ),
        "QR.item[0].text",
        "must be the Questionnaire's text",
    );
}

#[test]
fn choice_answers_are_among_the_options() {
    let items = json!([{"linkId": "c", "type": "choice", "answerOption": [
        {"valueCoding": {"system": "http://sektorbro.example/cs", "code": "a"}},
        {"valueString": "other"}]}]);
    one_error(
        pair(
            items.clone(),
            json!([{"linkId": "c", "answer": [{"valueCoding": {"system": "http://sektorbro.example/cs", "code": "z"}}]}]),
        ),
        "QR.item[0].answer[0].value.ofType(Coding)",
        "not one of the options",
    );
    clean(pair(
        items.clone(),
        json!([{"linkId": "c", "answer": [{"valueString": "other"}]}]),
    ));
    one_error(
        pair(
            items,
            json!([{"linkId": "c", "answer": [{"valueString": "free"}]}]),
        ),
        "QR.item[0].answer[0].value.ofType(string)",
        "not one of the options",
    );
    // open-choice takes free text
    clean(pair(
        json!([{"linkId": "c", "type": "open-choice", "answerOption": [
            {"valueCoding": {"system": "http://sektorbro.example/cs", "code": "a"}}]}]),
        json!([{"linkId": "c", "answer": [{"valueString": "something else"}]}]),
    ));
    one_error(
        pair(
            json!([{"linkId": "n", "type": "choice", "answerOption": [{"valueInteger": 1}, {"valueInteger": 2}]}]),
            json!([{"linkId": "n", "answer": [{"valueInteger": 3}]}]),
        ),
        "QR.item[0].answer[0].value.ofType(integer)",
        "not one of the options",
    );
    // an exclusive option stands alone
    let e = errs(&pair(
        json!([{"linkId": "c", "type": "choice", "repeats": true, "answerOption": [
            {"valueString": "a"}, {"valueString": "b"},
            {"valueString": "none", "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/questionnaire-optionExclusive", "valueBoolean": true}]}]}]),
        json!([{"linkId": "c", "answer": [{"valueString": "a"}, {"valueString": "none"}]}]),
    ));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].0, "QR.item[0].answer[1]");
}

#[test]
fn choice_answers_in_the_answer_value_set() {
    let e = errs(&pair(
        json!([{"linkId": "g", "type": "choice",
                "answerValueSet": "http://hl7.org/fhir/ValueSet/administrative-gender"}]),
        json!([{"linkId": "g", "answer": [{"valueCoding": {"system": "http://hl7.org/fhir/administrative-gender", "code": "woman"}}]}]),
    ));
    assert!(
        e.iter()
            .any(|(l, m)| l == "QR.item[0].answer[0].value.ofType(Coding)"
                && m.contains("not in value set")),
        "{e:#?}"
    );
    clean(pair(
        json!([{"linkId": "g", "type": "choice",
                "answerValueSet": "http://hl7.org/fhir/ValueSet/administrative-gender"}]),
        json!([{"linkId": "g", "answer": [{"valueCoding": {"system": "http://hl7.org/fhir/administrative-gender", "code": "female"}}]}]),
    ));
}

#[test]
fn enable_when_disables_answers() {
    let items = json!([
        {"linkId": "smoker", "type": "boolean"},
        {"linkId": "perday", "type": "integer", "required": true,
         "enableWhen": [{"question": "smoker", "operator": "=", "answerBoolean": true}]}
    ]);
    // disabled, yet answered
    one_error(
        pair(
            items.clone(),
            json!([{"linkId": "smoker", "answer": [{"valueBoolean": false}]},
                   {"linkId": "perday", "answer": [{"valueInteger": 10}]}]),
        ),
        "QR.item[1]",
        "disable",
    );
    // disabled and not answered: required does not apply
    clean(pair(
        items.clone(),
        json!([{"linkId": "smoker", "answer": [{"valueBoolean": false}]}]),
    ));
    // enabled, so required applies
    one_error(
        pair(
            items,
            json!([{"linkId": "smoker", "answer": [{"valueBoolean": true}]}]),
        ),
        "QR",
        "\"perday\"",
    );
    // exists, and any of several
    let items = json!([
        {"linkId": "a", "type": "integer"},
        {"linkId": "b", "type": "string"},
        {"linkId": "c", "type": "string", "enableBehavior": "any", "enableWhen": [
            {"question": "a", "operator": ">", "answerInteger": 5},
            {"question": "b", "operator": "exists", "answerBoolean": true}]}
    ]);
    clean(pair(
        items.clone(),
        json!([{"linkId": "a", "answer": [{"valueInteger": 7}]},
               {"linkId": "c", "answer": [{"valueString": "x"}]}]),
    ));
    one_error(
        pair(
            items,
            json!([{"linkId": "a", "answer": [{"valueInteger": 2}]},
                   {"linkId": "c", "answer": [{"valueString": "x"}]}]),
        ),
        "QR.item[1]",
        "disable",
    );
}

#[test]
fn value_constraints_from_the_questionnaire() {
    let ext = |name: &str, v: Value| {
        let mut e = json!({"url": format!("http://hl7.org/fhir/StructureDefinition/{name}")});
        if let (Some(o), Some(w)) = (e.as_object_mut(), v.as_object()) {
            o.extend(w.clone());
        }
        e
    };
    let dates = json!([{"linkId": "d", "type": "date", "repeats": true, "extension": [
        ext("minValue", json!({"valueDate": "2020"})), ext("maxValue", json!({"valueDate": "2022"}))]}]);
    let e = errs(&pair(
        dates.clone(),
        json!([{"linkId": "d", "answer": [{"valueDate": "2019-12-31"}, {"valueDate": "2021-06-01"}, {"valueDate": "2023-01-01"}]}]),
    ));
    assert_eq!(
        e.iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>(),
        [
            "QR.item[0].answer[0].value.ofType(date)",
            "QR.item[0].answer[2].value.ofType(date)"
        ],
        "{e:#?}"
    );
    one_error(
        pair(
            json!([{"linkId": "n", "type": "integer", "extension": [ext("maxValue", json!({"valueInteger": 10}))]}]),
            json!([{"linkId": "n", "answer": [{"valueInteger": 11}]}]),
        ),
        "QR.item[0].answer[0].value.ofType(integer)",
        "more than the maximum of 10",
    );
    one_error(
        pair(
            json!([{"linkId": "x", "type": "decimal", "extension": [ext("maxDecimalPlaces", json!({"valueInteger": 2}))]}]),
            json!([{"linkId": "x", "answer": [{"valueDecimal": 1.234}]}]),
        ),
        "QR.item[0].answer[0].value.ofType(decimal)",
        "3 decimal places",
    );
    one_error(
        pair(
            json!([{"linkId": "s", "type": "string", "maxLength": 3}]),
            json!([{"linkId": "s", "answer": [{"valueString": "four"}]}]),
        ),
        "QR.item[0].answer[0].value.ofType(string)",
        "more than the 3",
    );
    one_error(
        pair(
            json!([{"linkId": "s", "type": "string", "extension": [ext("regex", json!({"valueString": "[0-9]{4}"}))]}]),
            json!([{"linkId": "s", "answer": [{"valueString": "12345"}]}]),
        ),
        "QR.item[0].answer[0].value.ofType(string)",
        "pattern",
    );
    // 8 bytes of data against a maxSize of 4
    one_error(
        pair(
            json!([{"linkId": "f", "type": "attachment", "extension": [
                ext("maxSize", json!({"valueDecimal": 4})), ext("mimeType", json!({"valueCode": "text/plain"}))]}]),
            json!([{"linkId": "f", "answer": [{"valueAttachment": {"contentType": "text/plain", "data": "MTIzNDU2Nzg="}}]}]),
        ),
        "QR.item[0].answer[0].value.ofType(Attachment)",
        "8 bytes",
    );
    one_error(
        pair(
            json!([{"linkId": "f", "type": "attachment", "extension": [ext("mimeType", json!({"valueCode": "application/pdf"}))]}]),
            json!([{"linkId": "f", "answer": [{"valueAttachment": {"contentType": "text/plain", "data": "MTIz"}}]}]),
        ),
        "QR.item[0].answer[0].value.ofType(Attachment)",
        "content type",
    );
    one_error(
        pair(
            json!([{"linkId": "r", "type": "string", "repeats": true, "extension": [
                ext("questionnaire-maxOccurs", json!({"valueInteger": 2}))]}]),
            json!([{"linkId": "r", "answer": [{"valueString": "a"}, {"valueString": "b"}, {"valueString": "c"}]}]),
        ),
        "QR.item[0]",
        "maxOccurs",
    );
}

#[test]
fn a_questionnaire_that_cannot_be_found_is_a_warning() {
    let qr = json!({"resourceType": "QuestionnaireResponse", "status": "completed",
        "questionnaire": "http://sektorbro.example/fhir/Questionnaire/unknown",
        "item": [{"linkId": "a", "answer": [{"valueString": "x"}]}]});
    let all = issues(&qr);
    assert!(
        all.iter().any(|(s, l, m)| s == "warning"
            && l == "QuestionnaireResponse.questionnaire"
            && m.contains("could not be found")),
        "{all:#?}"
    );
    assert!(errors(&qr).is_empty());
    let detailed = validator().validate_detailed(&qr, &[]);
    assert_eq!(
        detailed.missing_questionnaires,
        ["http://sektorbro.example/fhir/Questionnaire/unknown"]
    );
    // supplied by the caller (the gateway's store), it is checked
    let q = json!({"resourceType": "Questionnaire", "url": "http://sektorbro.example/fhir/Questionnaire/unknown",
        "status": "active", "item": [{"linkId": "a", "type": "integer"}]});
    let with = validator().validate_detailed_with(&qr, &[], &[q]);
    let errs: Vec<_> = with
        .issues
        .iter()
        .filter(|i| i.severity <= fhir_core::fhir::outcome::Severity::Error)
        .collect();
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(
        errs[0].expression.as_deref(),
        Some("QuestionnaireResponse.item[0].answer[0].value.ofType(string)")
    );
    assert!(with.missing_questionnaires.is_empty());
}

#[test]
fn questionnaires_load_from_packages() {
    let dir = std::env::temp_dir().join(format!("sb-q-pkg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(
        dir.join("intake.json"),
        json!({"resourceType": "Questionnaire", "url": Q_URL, "status": "active",
               "item": [{"linkId": "a", "type": "boolean", "required": true}]})
        .to_string(),
    )
    .expect("write");
    let v = fhir_core::validation::Validator::with_packages(&[&dir]).expect("load");
    let _ = std::fs::remove_dir_all(&dir);
    // nothing but dk-core's known CPR look-ahead (see validation::tests)
    let problems: Vec<String> = v
        .load_report()
        .problems()
        .filter(|f| !f.subject.ends_with("dk-core-cpr-identifier constraint cpr"))
        .map(|f| f.to_string())
        .collect();
    assert!(problems.is_empty(), "{problems:?}");
    let qr = json!({"resourceType": "QuestionnaireResponse", "status": "completed",
        "questionnaire": Q_URL, "item": [{"linkId": "a", "answer": [{"valueInteger": 1}]}]});
    let errs: Vec<String> = v
        .validate(&qr, &[])
        .into_iter()
        .filter(|i| i.severity <= fhir_core::fhir::outcome::Severity::Error)
        .filter_map(|i| i.expression)
        .collect();
    assert_eq!(
        errs,
        ["QuestionnaireResponse.item[0].answer[0].value.ofType(integer)"]
    );
}

#[test]
fn que_12_as_corrected() {
    let q = |behavior: Option<&str>| {
        let mut item = json!({"linkId": "c", "type": "string", "enableWhen": [
            {"question": "a", "operator": "exists", "answerBoolean": true},
            {"question": "b", "operator": "exists", "answerBoolean": true}]});
        if let Some(b) = behavior {
            item["enableBehavior"] = json!(b);
        }
        json!({"resourceType": "Questionnaire", "status": "active", "item": [
            {"linkId": "a", "type": "string"}, {"linkId": "b", "type": "string"}, item]})
    };
    let e = errors(&q(None));
    assert!(
        e.iter()
            .any(|(l, m)| l == "Questionnaire.item[2]" && m.contains("que-12")),
        "{e:#?}"
    );
    assert!(
        errors(&q(Some("all"))).is_empty(),
        "{:#?}",
        errors(&q(Some("all")))
    );
}

#[test]
fn coding_system_is_an_absolute_code_system_uri() {
    let obs = |system: &str| {
        json!({"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": system, "code": "x"}]}})
    };
    let e = errors(&obs("cs-local"));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].0, "Observation.code.coding[0].system");
    assert!(e[0].1.contains("absolute"), "{}", e[0].1);
    let e = errors(&obs("http://hl7.org/fhir/ValueSet/administrative-gender"));
    assert!(
        e.iter()
            .any(|(l, m)| l == "Observation.code.coding[0].system" && m.contains("value set")),
        "{e:#?}"
    );
    assert!(errors(&obs("urn:oid:1.2.208.176.2.1")).is_empty());
}

#[test]
fn attachment_size_matches_its_data() {
    let doc = |size: u64| {
        json!({"resourceType": "DocumentReference", "status": "current", "content": [
            {"attachment": {"contentType": "text/plain", "data": "MTIzNDU2Nzg=", "size": size}}]})
    };
    let e = errors(&doc(10));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].0, "DocumentReference.content[0].attachment.size");
    assert!(errors(&doc(8)).is_empty(), "{:#?}", errors(&doc(8)));
}

#[test]
fn periods_compare_a_date_with_a_date_time() {
    let enc = |start: &str, end: &str| {
        json!({"resourceType": "Encounter", "status": "finished",
               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
               "period": {"start": start, "end": end}})
    };
    let e = errors(&enc("2026-11-02", "2026-11-01T10:00:00Z"));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].1.contains("per-1"), "{}", e[0].1);
    // the same day at different precisions cannot be ordered: the reference fails the rule
    let e = errors(&enc("2026-11-01", "2026-11-01T10:00:00Z"));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].1.contains("precision"), "{}", e[0].1);
    assert!(errors(&enc("2026-11-01", "2026-11-02T10:00:00Z")).is_empty());
    assert!(errors(&enc("2026-11-01T10:00:00+02:00", "2026-11-01T09:00:00Z")).is_empty());
}

#[test]
fn measure_reports_match_their_measure() {
    let pop = |code: &str| json!({"code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-population", "code": code}]}, "count": 1});
    let report = |pops: Vec<Value>| {
        json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"fullUrl": "http://sektorbro.example/fhir/Measure/m",
             "resource": {"resourceType": "Measure", "id": "m", "url": "http://sektorbro.example/fhir/Measure/m",
                          "status": "active", "group": [{"population": [
                {"code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-population", "code": "initial-population"}]}, "criteria": {"language": "text/cql", "expression": "x"}},
                {"code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-population", "code": "numerator"}]}, "criteria": {"language": "text/cql", "expression": "y"}}]}]}},
            {"fullUrl": "http://sektorbro.example/fhir/MeasureReport/r",
             "resource": {"resourceType": "MeasureReport", "id": "r", "status": "complete", "type": "summary",
                          "measure": "http://sektorbro.example/fhir/Measure/m",
                          "period": {"start": "2026-01-01", "end": "2026-06-30"},
                          "group": [{"population": pops}]}}]})
    };
    assert!(
        errors(&report(vec![pop("initial-population"), pop("numerator")])).is_empty(),
        "{:#?}",
        errors(&report(vec![pop("initial-population"), pop("numerator")]))
    );
    let e = errs(&report(vec![pop("initial-population"), pop("denominator")]));
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(e
        .iter()
        .any(|(l, m)| l == "QR.group[0].population[1]" && m.contains("not defined")));
    assert!(e
        .iter()
        .any(|(l, m)| l == "QR.group[0]" && m.contains("numerator")));
}

#[test]
fn profile_min_and_max_values() {
    let dir = std::env::temp_dir().join(format!("sb-minmax-pkg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sd = |name: &str, ty: &str, elements: Value| {
        json!({"resourceType": "StructureDefinition",
               "url": format!("http://sektorbro.example/fhir/StructureDefinition/{name}"),
               "name": name, "status": "active", "kind": "resource", "abstract": false,
               "type": ty, "derivation": "constraint",
               "baseDefinition": format!("http://hl7.org/fhir/StructureDefinition/{ty}"),
               "differential": {"element": elements}})
    };
    std::fs::write(
        dir.join("born.json"),
        sd(
            "born",
            "Patient",
            json!([{"id": "Patient.birthDate", "path": "Patient.birthDate",
            "minValueDate": "1900-01-01", "maxValueDate": "2026-12-31"}]),
        )
        .to_string(),
    )
    .expect("write");
    std::fs::write(
        dir.join("weight.json"),
        sd("weight", "Observation", json!([{"id": "Observation.value[x]", "path": "Observation.value[x]",
            "type": [{"code": "Quantity"}],
            "maxValueQuantity": {"value": 300, "system": "http://unitsofmeasure.org", "code": "kg"}}]))
        .to_string(),
    )
    .expect("write");
    std::fs::write(
        dir.join("stay.json"),
        sd("stay", "Encounter", json!([{"id": "Encounter.length", "path": "Encounter.length",
            "maxValueQuantity": {"value": 2, "system": "http://unitsofmeasure.org", "code": "wk"}}]))
        .to_string(),
    )
    .expect("write");
    let v = fhir_core::validation::Validator::with_packages(&[&dir]).expect("load");
    let _ = std::fs::remove_dir_all(&dir);
    let errs = |r: Value, p: &str| -> Vec<(String, String)> {
        v.validate(
            &r,
            &[format!(
                "http://sektorbro.example/fhir/StructureDefinition/{p}"
            )],
        )
        .into_iter()
        .filter(|i| i.severity <= fhir_core::fhir::outcome::Severity::Error)
        .map(|i| (i.expression.unwrap_or_default(), i.diagnostics))
        .collect()
    };
    let e = errs(
        json!({"resourceType": "Patient", "birthDate": "1899-12"}),
        "born",
    );
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].0, "Patient.birthDate");
    assert!(e[0].1.contains("less than the minimum"), "{}", e[0].1);
    assert!(errs(
        json!({"resourceType": "Patient", "birthDate": "1948-03-01"}),
        "born"
    )
    .is_empty());
    let obs = |value: Value| {
        json!({"resourceType": "Observation", "status": "final",
               "code": {"text": "weight"}, "valueQuantity": value})
    };
    let g = |n: u64| json!({"value": n, "unit": "g", "system": "http://unitsofmeasure.org", "code": "g"});
    let e = errs(obs(g(300_001)), "weight");
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].0, "Observation.value.ofType(Quantity)");
    assert!(errs(obs(g(299_000)), "weight").is_empty());
    let e = errs(
        obs(json!({"value": 5, "system": "http://unitsofmeasure.org", "code": "m"})),
        "weight",
    );
    assert!(
        e.iter().any(|(_, m)| m.contains("do not convert")),
        "{e:#?}"
    );
    let enc = |value: u64, code: &str| {
        json!({"resourceType": "Encounter", "status": "finished",
               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
               "length": {"value": value, "system": "http://unitsofmeasure.org", "code": code}})
    };
    assert_eq!(errs(enc(15, "d"), "stay").len(), 1);
    assert!(errs(enc(14, "d"), "stay").is_empty());
}

/// Items of other types may offer options too (R4's que-5: integer, date, time, string): an
/// answer is one of them. A choice without options of the answer's type is answered with a
/// Coding. An item with `questionnaire-minOccurs` is needed like a required one (cases of HL7's
/// Questionnaire test set, brianpos).
#[test]
fn options_of_other_types_choice_answers_and_min_occurs() {
    let strings = json!([{"linkId": "q1", "type": "string", "repeats": true,
        "answerOption": [{"valueString": "str1"}, {"valueString": "str2"}]}]);
    clean(pair(
        strings.clone(),
        json!([{"linkId": "q1", "answer": [{"valueString": "str1"}, {"valueString": "str2"}]}]),
    ));
    one_error(
        pair(
            strings,
            json!([{"linkId": "q1", "answer": [{"valueString": "str1"}, {"valueString": "str3"}]}]),
        ),
        "QR.item[0].answer[1].value.ofType(string)",
        "not one of the options",
    );
    let ints = json!([{"linkId": "n", "type": "integer",
        "answerOption": [{"valueInteger": 1}, {"valueInteger": 2}]}]);
    one_error(
        pair(
            ints,
            json!([{"linkId": "n", "answer": [{"valueInteger": 3}]}]),
        ),
        "QR.item[0].answer[0].value.ofType(integer)",
        "not one of the options",
    );
    let choice = json!([{"linkId": "c", "type": "choice"}]);
    clean(pair(
        choice.clone(),
        json!([{"linkId": "c", "answer": [{"valueCoding": {"system": "http://example.org/cs", "code": "x"}}]}]),
    ));
    one_error(
        pair(
            choice,
            json!([{"linkId": "c", "answer": [{"valueString": "http://example.org"}]}]),
        ),
        "QR.item[0].answer[0].value.ofType(string)",
        "answer with a Coding",
    );
    let twice = json!([{"linkId": "s", "type": "string", "extension": [{
        "url": "http://hl7.org/fhir/StructureDefinition/questionnaire-minOccurs", "valueInteger": 2}]}]);
    one_error(
        pair(twice.clone(), json!([{"linkId": "s"}])),
        "QR",
        "minOccurs 2",
    );
    let e: Vec<_> = errs(&pair_with(twice, json!([{"linkId": "s"}]), "in-progress"));
    assert!(e.is_empty(), "{e:#?}");
}

/// Quantity answers within SDC's `minQuantity`/`maxQuantity` (UCUM units converted; units that
/// do not convert are an error) and among `questionnaire-unitOption`; reference answers of a
/// type `questionnaire-referenceResource` allows.
#[test]
fn quantity_bounds_units_and_reference_types() {
    // The Questionnaire's SDC extensions are unknown here (no SDC package): only the
    // response's errors count.
    let qr_errs = |v: Value| -> Vec<(String, String)> {
        errs(&v)
            .into_iter()
            .filter(|(l, _)| l.starts_with("QR"))
            .collect()
    };
    let clean = |v: Value| {
        let e = qr_errs(v);
        assert!(e.is_empty(), "{e:#?}");
    };
    let one_error = |v: Value, location: &str, contains: &str| {
        let e = qr_errs(v);
        assert!(
            e.len() == 1 && e[0].0 == location && e[0].1.contains(contains),
            "expected one error at {location} with {contains:?}: {e:#?}"
        );
    };
    let q = |v: f64, code: &str| json!({"value": v, "system": "http://unitsofmeasure.org", "code": code});
    let bounded = json!([{"linkId": "d", "type": "quantity", "extension": [
        {"url": "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-minQuantity", "valueQuantity": q(5.0, "km")},
        {"url": "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-maxQuantity", "valueQuantity": q(50.0, "km")}]}]);
    let answer = |v: Value| json!([{"linkId": "d", "answer": [{"valueQuantity": v}]}]);
    clean(pair(bounded.clone(), answer(q(10000.0, "m"))));
    one_error(
        pair(bounded.clone(), answer(q(1000.0, "m"))),
        "QR.item[0].answer[0].value.ofType(Quantity)",
        "less than the minimum",
    );
    one_error(
        pair(bounded.clone(), answer(q(60.0, "km"))),
        "QR.item[0].answer[0].value.ofType(Quantity)",
        "more than the maximum",
    );
    let e = qr_errs(pair(bounded, answer(q(10.0, "kg"))));
    assert!(
        e.iter().all(|(_, m)| m.contains("does not convert")) && e.len() == 2,
        "{e:#?}"
    );
    let units = json!([{"linkId": "d", "type": "quantity", "extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/questionnaire-unitOption",
         "valueCoding": {"system": "http://unitsofmeasure.org", "code": "km"}},
        {"url": "http://hl7.org/fhir/StructureDefinition/questionnaire-unitOption",
         "valueCoding": {"system": "http://unitsofmeasure.org", "code": "m"}}]}]);
    clean(pair(units.clone(), answer(q(3.0, "m"))));
    one_error(
        pair(units, answer(q(3.0, "kg"))),
        "QR.item[0].answer[0].value.ofType(Quantity)",
        "not one of the units",
    );
    let age_units = json!([{"linkId": "d", "type": "quantity", "extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/questionnaire-unitValueSet",
         "valueCanonical": "http://hl7.org/fhir/ValueSet/age-units"}]}]);
    clean(pair(age_units.clone(), answer(q(3.0, "a"))));
    let e = qr_errs(pair(age_units.clone(), answer(q(3.0, "km"))));
    assert!(e.len() == 1 && e[0].1.contains("age-units"), "{e:#?}");
    one_error(
        pair(age_units, answer(json!({"value": 3, "unit": "years"}))),
        "QR.item[0].answer[0].value.ofType(Quantity)",
        "give the unit's system and code",
    );
    let refs = json!([{"linkId": "r", "type": "reference", "repeats": true, "extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/questionnaire-referenceResource", "valueCode": "Patient"},
        {"url": "http://hl7.org/fhir/StructureDefinition/questionnaire-referenceResource", "valueCode": "Practitioner"}]}]);
    let answer =
        |r: &str| json!([{"linkId": "r", "answer": [{"valueReference": {"reference": r}}]}]);
    clean(pair(refs.clone(), answer("Patient/p1")));
    clean(pair(
        refs.clone(),
        answer("http://example.org/fhir/Practitioner/x/_history/2"),
    ));
    one_error(
        pair(refs, answer("Organization/o1")),
        "QR.item[0].answer[0].value.ofType(Reference)",
        "takes references to Patient, Practitioner only",
    );
}
