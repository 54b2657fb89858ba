//! Profile validation over HTTP: `$validate`, and enforcement on create, update and transactions.

use serde_json::{json, Value};

use crate::helpers::{error_locations, match_ids, spawn_app, spawn_app_with, Db, TestApp};
use crate::on_both_backends;

const SB_CAREPLAN: &str = "http://sektorbro.dk/fhir/StructureDefinition/sektorbro-careplan";

fn careplan() -> Value {
    json!({"resourceType": "CarePlan", "meta": {"profile": [SB_CAREPLAN]},
        "identifier": [{"system": "urn:oid:1.2.208.176.1.1", "value": "forløb-7"}],
        "status": "active", "intent": "plan", "subject": {"reference": "Patient/p1"},
        "period": {"start": "2026-11-01"}, "author": {"reference": "Organization/haderslev"},
        // What KL Common's CarePlan profile, which ours derives from, requires.
        "category": [{"coding": [{"system": "http://sektorbro.dk/fhir/CodeSystem/course-kind",
            "code": "rehabilitation-temporary-place"}]}],
        "created": "2026-11-01T09:00:00+01:00", "goal": [{"reference": "Goal/g1"}]})
}

async fn invalid_create_is_422_with_every_problem_and_nothing_written(app: TestApp) {
    let mut bad = careplan();
    bad["status"] = json!("running");
    bad["intent"] = json!("order");
    bad["subject"] = json!({"reference": "Group/g1"});
    let res = app.post("CarePlan", &bad).await;
    assert_eq!(res.status().as_u16(), 422);
    let oo: Value = res.json().await.unwrap();
    let found: Vec<(String, String)> = oo["issue"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["severity"] == "error")
        .map(|i| {
            (
                i["expression"][0].as_str().unwrap_or_default().to_string(),
                i["code"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for want in [
        ("CarePlan.status", "code-invalid"),
        ("CarePlan.intent", "value"),
        ("CarePlan.subject.reference", "invalid"),
    ] {
        assert!(
            found.iter().any(|(l, c)| l == want.0 && c == want.1),
            "missing {want:?} in {oo}"
        );
    }
    let all = app.get_json("CarePlan", 200).await;
    assert!(match_ids(&all).is_empty(), "nothing written");
    // the valid one goes through
    assert_eq!(
        app.post("CarePlan", &careplan()).await.status().as_u16(),
        201
    );
}

async fn invalid_update_is_422_and_keeps_the_old_version(app: TestApp) {
    let created = app.create(&careplan()).await;
    let id = created["id"].as_str().unwrap().to_string();
    let mut bad = created.clone();
    bad["period"] = json!({"end": "2026-12-01"});
    let res = app.put(&format!("CarePlan/{id}"), &bad).await;
    assert_eq!(res.status().as_u16(), 422);
    let read = app.get_json(&format!("CarePlan/{id}"), 200).await;
    assert_eq!(read["meta"]["versionId"], "1");
}

async fn transaction_reports_every_invalid_entry(app: TestApp) {
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
         "resource": {"resourceType": "Patient", "birthDate": "1948-02-30"},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Goal", "lifecycleStatus": "active",
            "description": {"text": "Gå til bageren"}, "subject": {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"}},
         "request": {"method": "POST", "url": "Goal"}},
        {"resource": {"resourceType": "Goal", "description": {"text": "x"}, "subject": {"reference": "Patient/p1"}},
         "request": {"method": "POST", "url": "Goal"}}]});
    let res = app.post("", &bundle).await;
    assert_eq!(res.status().as_u16(), 422);
    let oo: Value = res.json().await.unwrap();
    let locations = error_locations(&oo);
    assert!(
        locations.contains(&"Bundle.entry[0].resource.birthDate"),
        "{oo}"
    );
    assert!(
        locations.contains(&"Bundle.entry[2].resource.lifecycleStatus"),
        "{oo}"
    );
    assert!(
        match_ids(&app.get_json("Goal", 200).await).is_empty(),
        "all or nothing"
    );
}

async fn validate_operation_answers_200_with_the_outcome(app: TestApp) {
    let mut bad = careplan();
    bad["intent"] = json!("order");
    let res = app.post("CarePlan/$validate", &bad).await;
    assert_eq!(res.status().as_u16(), 200);
    let oo: Value = res.json().await.unwrap();
    assert_eq!(oo["resourceType"], "OperationOutcome");
    assert!(oo["issue"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["severity"] == "error" && i["expression"][0] == "CarePlan.intent"));

    // a profile asked for by parameter is applied even when the resource does not claim it
    let plain = json!({"resourceType": "CarePlan", "status": "active", "intent": "plan",
        "subject": {"reference": "Patient/p1"}});
    let params = json!({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": plain},
        {"name": "profile", "valueUri": SB_CAREPLAN}]});
    let oo: Value = app.post("$validate", &params).await.json().await.unwrap();
    assert!(
        oo["issue"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["expression"][0] == "CarePlan.period"),
        "{oo}"
    );

    let ok: Value = app
        .post("CarePlan/$validate", &careplan())
        .await
        .json()
        .await
        .unwrap();
    assert!(
        !ok["issue"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["severity"] == "error"),
        "{ok}"
    );

    let unknown = app
        .post(
            "CarePlan/$validate?profile=http://example.org/nope",
            &careplan(),
        )
        .await;
    assert_eq!(unknown.status().as_u16(), 400);
    let wrong_type = app.post("Goal/$validate", &careplan()).await;
    assert_eq!(wrong_type.status().as_u16(), 400);
}

/// The narrative bypasses of issue 20 (item 2): each payload once as a Patient's narrative.
fn hostile_narratives() -> Vec<String> {
    let ns = r#"<div xmlns="http://www.w3.org/1999/xhtml">"#;
    [
        r#"<a href="&#106;avascript:alert(1)">x</a>"#,
        r#"<a href="&#x6A;avascript:alert(1)">x</a>"#,
        r#"<a href="java&#9;script:alert(1)">x</a>"#,
        "<a href=\"java\tscript:alert(1)\">x</a>",
        "<a href=\"\u{1}javascript:alert(1)\">x</a>",
        r#"<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>"#,
        r#"<img/src="x"/onerror="alert(1)">"#,
        "<svg/onload=alert(1)>",
        "<script/x>alert(1)</script/x>",
        "<!-- --!><img src=x onerror=alert(1)> -->",
        r#"<p style="background: url(javascript:alert(1))">x</p>"#,
        r#"<a formaction="javascript:alert(1)">x</a>"#,
        r#"<a xmlns:xlink="http://www.w3.org/1999/xlink" xlink:href="javascript:alert(1)">x</a>"#,
    ]
    .iter()
    .map(|inner| format!("{ns}{inner}</div>"))
    .collect()
}

fn patient_with_narrative(div: &str) -> Value {
    json!({"resourceType": "Patient", "text": {"status": "generated", "div": div}})
}

async fn hostile_narratives_are_422_alone_and_in_transactions(app: TestApp) {
    for div in hostile_narratives() {
        let res = app.post("Patient", &patient_with_narrative(&div)).await;
        assert_eq!(res.status().as_u16(), 422, "accepted: {div}");
        let oo: Value = res.json().await.unwrap();
        assert_eq!(error_locations(&oo), ["Patient.text.div"], "{div}: {oo}");
    }
    // (the payload with U+0001 is refused before validation, as every control character is:
    // tests/api/hostile.rs; here the validator must find all the others, each at its entry)
    let entries: Vec<Value> = hostile_narratives()
        .iter()
        .filter(|div| !div.contains('\u{1}'))
        .map(|div| {
            json!({"resource": patient_with_narrative(div),
            "request": {"method": "POST", "url": "Patient"}})
        })
        .collect();
    let n = entries.len();
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let res = app.post("", &bundle).await;
    assert_eq!(res.status().as_u16(), 422);
    let oo: Value = res.json().await.unwrap();
    let want: Vec<String> = (0..n)
        .map(|i| format!("Bundle.entry[{i}].resource.text.div"))
        .collect();
    assert_eq!(error_locations(&oo), want, "{oo}");
    assert!(match_ids(&app.get_json("Patient", 200).await).is_empty());
    // an ordinary narrative still goes through
    let fine = r#"<div xmlns="http://www.w3.org/1999/xhtml"><p>Jens <b>Hansen</b>, <a href="https://example.org/a?b=1&amp;c=2">link</a></p></div>"#;
    assert_eq!(
        app.post("Patient", &patient_with_narrative(fine))
            .await
            .status()
            .as_u16(),
        201
    );
}

/// A QuestionnaireResponse is checked against the stored Questionnaire it names; one whose
/// Questionnaire is stored nowhere is accepted, with a warning from `$validate`.
async fn questionnaire_responses_are_checked_against_stored_questionnaires(app: TestApp) {
    let url = "http://sektorbro.example/fhir/Questionnaire/fall-risk";
    let q = json!({"resourceType": "Questionnaire", "url": url, "status": "active", "item": [
        {"linkId": "falls", "text": "Falls in the last year", "type": "integer", "required": true,
         "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/maxValue", "valueInteger": 50}]},
        {"linkId": "aid", "type": "choice", "answerOption": [
            {"valueCoding": {"system": "http://sektorbro.example/cs/aid", "code": "walker"}},
            {"valueCoding": {"system": "http://sektorbro.example/cs/aid", "code": "none"}}]}]});
    let qr = |falls: Value, aid: &str| {
        json!({"resourceType": "QuestionnaireResponse", "questionnaire": url,
            "status": "completed", "subject": {"reference": "Patient/p1"}, "item": [
            {"linkId": "falls", "answer": [{"valueInteger": falls}]},
            {"linkId": "aid", "answer": [{"valueCoding": {"system": "http://sektorbro.example/cs/aid", "code": aid}}]}]})
    };
    // not stored yet: accepted, and $validate warns that it was not checked
    let oo: Value = app
        .post(
            "QuestionnaireResponse/$validate",
            &qr(json!(99), "wheelchair"),
        )
        .await
        .json()
        .await
        .unwrap();
    let issues = oo["issue"].as_array().unwrap();
    assert!(!issues.iter().any(|i| i["severity"] == "error"), "{oo}");
    assert!(
        issues.iter().any(|i| i["severity"] == "warning"
            && i["expression"][0] == "QuestionnaireResponse.questionnaire"),
        "{oo}"
    );
    assert_eq!(
        app.post("QuestionnaireResponse", &qr(json!(99), "wheelchair"))
            .await
            .status()
            .as_u16(),
        201
    );
    // stored: the answers are checked against it, on $validate and on write
    assert_eq!(app.post("Questionnaire", &q).await.status().as_u16(), 201);
    let res = app
        .post("QuestionnaireResponse", &qr(json!(99), "wheelchair"))
        .await;
    assert_eq!(res.status().as_u16(), 422);
    let oo: Value = res.json().await.unwrap();
    let errors: Vec<&str> = oo["issue"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["severity"] == "error")
        .filter_map(|i| i["expression"][0].as_str())
        .collect();
    assert_eq!(
        errors,
        [
            "QuestionnaireResponse.item[0].answer[0].value.ofType(integer)",
            "QuestionnaireResponse.item[1].answer[0].value.ofType(Coding)"
        ],
        "{oo}"
    );
    assert_eq!(
        app.post("QuestionnaireResponse", &qr(json!(2), "walker"))
            .await
            .status()
            .as_u16(),
        201
    );
    let oo: Value = app
        .post("QuestionnaireResponse/$validate", &qr(json!(2), "none"))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        !oo["issue"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["expression"][0] == "QuestionnaireResponse.questionnaire"),
        "{oo}"
    );
}

/// The extension policy on writes: an extension no loaded package defines is refused unless its
/// domain is in `validation.allowed_extension_domains` (by default R4's own prefix, for the
/// extensions HL7 publishes beside R4); a known extension out of its context is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_misplaced_extensions_follow_the_configured_domains() {
    let patient = |url: &str| {
        json!({"resourceType": "Patient", "name": [{"family": "Hansen"}],
            "extension": [{"url": url, "valueString": "x"}]})
    };
    let app = spawn_app(Db::Sqlite).await.expect("app");
    let res = app
        .post("Patient", &patient("http://vendor.test/fhir/ext/colour"))
        .await;
    assert_eq!(res.status().as_u16(), 422);
    let oo: Value = res.json().await.unwrap();
    assert!(
        oo["issue"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["severity"] == "error"
                && i["expression"][0] == "Patient.extension[0]"
                && i["diagnostics"].as_str().is_some_and(
                    |d| d.contains("unknown extension http://vendor.test/fhir/ext/colour")
                )),
        "{oo}"
    );
    // the default allows R4's own prefix: accepted, and $validate says it was not checked
    let hl7 = patient("http://hl7.org/fhir/StructureDefinition/artifact-copyrightLabel");
    assert_eq!(app.post("Patient", &hl7).await.status().as_u16(), 201);
    let oo: Value = app
        .post("Patient/$validate", &hl7)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        oo["issue"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["severity"] == "warning" && i["expression"][0] == "Patient.extension[0]"),
        "{oo}"
    );
    // a known extension where its definition does not allow it (birthTime belongs on birthDate)
    let misplaced = json!({"resourceType": "Patient", "name": [{"family": "Hansen"}],
        "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
            "valueDateTime": "2020-01-01T10:00:00Z"}]});
    assert_eq!(app.post("Patient", &misplaced).await.status().as_u16(), 422);
    let placed = json!({"resourceType": "Patient", "name": [{"family": "Hansen"}],
        "birthDate": "2020-01-01", "_birthDate": {"extension": [{
            "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
            "valueDateTime": "2020-01-01T10:00:00Z"}]}});
    assert_eq!(app.post("Patient", &placed).await.status().as_u16(), 201);

    // a deployment that allows the vendor's domain (a host name covers its subdomains), and
    // not R4's prefix
    let app = spawn_app_with(Db::Sqlite, |c| {
        c.validation.allowed_extension_domains = vec!["vendor.test".into()]
    })
    .await
    .expect("app");
    assert_eq!(
        app.post("Patient", &patient("http://fhir.vendor.test/ext/colour"))
            .await
            .status()
            .as_u16(),
        201
    );
    assert_eq!(app.post("Patient", &hl7).await.status().as_u16(), 422);
}

on_both_backends!(
    hostile_narratives_are_422_alone_and_in_transactions,
    questionnaire_responses_are_checked_against_stored_questionnaires,
    invalid_create_is_422_with_every_problem_and_nothing_written,
    invalid_update_is_422_and_keeps_the_old_version,
    transaction_reports_every_invalid_entry,
    validate_operation_answers_200_with_the_outcome,
);
