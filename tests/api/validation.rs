//! Profile validation over HTTP: `$validate`, and enforcement on create, update and transactions.

use serde_json::{json, Value};

use crate::helpers::{match_ids, TestApp};
use crate::on_both_backends;

const SB_CAREPLAN: &str = "http://sektorbro.dk/fhir/StructureDefinition/sektorbro-careplan";

fn careplan() -> Value {
    json!({"resourceType": "CarePlan", "meta": {"profile": [SB_CAREPLAN]},
        "identifier": [{"system": "urn:oid:1.2.208.176.1.1", "value": "forløb-7"}],
        "status": "active", "intent": "plan", "subject": {"reference": "Patient/p1"},
        "period": {"start": "2026-11-01"}, "author": {"reference": "Organization/haderslev"},
        // what KL Common's care plan, which ours derives from, requires
        "category": [{"text": "Genoptræning"}], "created": "2026-11-01",
        "goal": [{"reference": "Goal/formaal"}]})
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
    let locations: Vec<&str> = oo["issue"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["severity"] == "error")
        .filter_map(|i| i["expression"][0].as_str())
        .collect();
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

on_both_backends!(
    invalid_create_is_422_with_every_problem_and_nothing_written,
    invalid_update_is_422_and_keeps_the_old_version,
    transaction_reports_every_invalid_entry,
    validate_operation_answers_200_with_the_outcome,
);
