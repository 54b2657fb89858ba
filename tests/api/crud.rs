//! Create, read, vread, update, delete, history, conditional interactions, `Prefer`, errors.

use serde_json::{json, Value};

use crate::helpers::{match_ids, next_link, TestApp};
use crate::on_both_backends;

fn careplan(subject: &str) -> Value {
    json!({
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": subject},
        "period": {"start": "2024-03-01", "end": "2024-04-15"},
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "736353004"}]}]
    })
}

async fn create_returns_201_with_location_etag_and_last_modified(app: TestApp) {
    let res = app.post("CarePlan", &careplan("Patient/p1")).await;
    assert_eq!(res.status().as_u16(), 201);
    let h = res.headers().clone();
    assert_eq!(h["etag"], "W/\"1\"");
    assert!(h.contains_key("last-modified"));
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/fhir+json"));
    let body: Value = res.json().await.unwrap();
    let id = body["id"].as_str().expect("server id");
    assert_eq!(
        h["location"].to_str().unwrap(),
        format!("{}/CarePlan/{id}/_history/1", app.fhir)
    );
    assert_eq!(body["meta"]["versionId"], "1");
    let read = app.get_json(&format!("CarePlan/{id}"), 200).await;
    assert_eq!(read, body);
}

async fn update_bumps_the_version_and_vread_returns_each(app: TestApp) {
    let created = app.create(&careplan("Patient/p1")).await;
    let id = created["id"].as_str().unwrap();
    let mut next = created.clone();
    next["status"] = json!("completed");
    let res = app.put(&format!("CarePlan/{id}"), &next).await;
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["etag"], "W/\"2\"");
    let v1 = app
        .get_json(&format!("CarePlan/{id}/_history/1"), 200)
        .await;
    let v2 = app
        .get_json(&format!("CarePlan/{id}/_history/2"), 200)
        .await;
    assert_eq!(v1["status"], "active");
    assert_eq!(v2["status"], "completed");
    app.get_json(&format!("CarePlan/{id}/_history/3"), 404)
        .await;
    let history = app.get_json(&format!("CarePlan/{id}/_history"), 200).await;
    assert_eq!(history["type"], "history");
    assert_eq!(history["total"], 2);
    assert_eq!(history["entry"][0]["resource"]["meta"]["versionId"], "2");
    assert_eq!(history["entry"][1]["request"]["method"], "POST");
}

async fn update_of_an_unknown_id_creates_it_with_the_client_id(app: TestApp) {
    let mut body = careplan("Patient/p1");
    body["id"] = json!("haderslev-42");
    let res = app.put("CarePlan/haderslev-42", &body).await;
    assert_eq!(res.status().as_u16(), 201);
    let read = app.get_json("CarePlan/haderslev-42", 200).await;
    assert_eq!(read["meta"]["versionId"], "1");
}

async fn if_match_guards_against_lost_updates(app: TestApp) {
    let created = app.create(&careplan("Patient/p1")).await;
    let id = created["id"].as_str().unwrap();
    let stale = app
        .client
        .put(app.url(&format!("CarePlan/{id}")))
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"7\"")
        .body(created.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status().as_u16(), 412);
    let oo: Value = stale.json().await.unwrap();
    assert_eq!(oo["resourceType"], "OperationOutcome");
    let fresh = app
        .client
        .put(app.url(&format!("CarePlan/{id}")))
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"1\"")
        .body(created.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status().as_u16(), 200);
}

async fn delete_makes_reads_answer_gone_and_keeps_history(app: TestApp) {
    let created = app.create(&careplan("Patient/p1")).await;
    let id = created["id"].as_str().unwrap();
    let res = app.delete(&format!("CarePlan/{id}")).await;
    assert_eq!(res.status().as_u16(), 204);
    let gone = app.get_json(&format!("CarePlan/{id}"), 410).await;
    assert_eq!(gone["resourceType"], "OperationOutcome");
    let history = app.get_json(&format!("CarePlan/{id}/_history"), 200).await;
    assert_eq!(history["entry"][0]["request"]["method"], "DELETE");
    assert!(history["entry"][0].get("resource").is_none());
    let search = app.get_json(&format!("CarePlan?_id={id}"), 200).await;
    assert!(match_ids(&search).is_empty());
    // Deleting again changes nothing.
    assert_eq!(
        app.delete(&format!("CarePlan/{id}"))
            .await
            .status()
            .as_u16(),
        204
    );
    app.get_json("CarePlan/never-was", 404).await;
}

async fn conditional_create_returns_the_existing_match(app: TestApp) {
    let patient = json!({"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": "0101801234"}]});
    let post = || {
        app.client
            .post(app.url("Patient"))
            .header("content-type", "application/fhir+json")
            .header(
                "if-none-exist",
                "identifier=urn:oid:1.2.208.176.1.2|0101801234",
            )
            .body(patient.to_string())
            .send()
    };
    let first = post().await.unwrap();
    assert_eq!(first.status().as_u16(), 201);
    let first: Value = first.json().await.unwrap();
    let second = post().await.unwrap();
    assert_eq!(second.status().as_u16(), 200);
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["id"], second["id"]);
}

async fn conditional_update_creates_then_updates_the_match(app: TestApp) {
    let body = json!({"resourceType": "Organization", "name": "Haderslev Kommune",
        "identifier": [{"system": "urn:oid:1.2.208.176.1.1", "value": "123456789"}]});
    let url = "Organization?identifier=urn:oid:1.2.208.176.1.1|123456789";
    let res = app.put(url, &body).await;
    assert_eq!(res.status().as_u16(), 201);
    let created: Value = res.json().await.unwrap();
    let mut changed = body.clone();
    changed["name"] = json!("Haderslev Kommune, Sundhed");
    let res = app.put(url, &changed).await;
    assert_eq!(res.status().as_u16(), 200);
    let updated: Value = res.json().await.unwrap();
    assert_eq!(updated["id"], created["id"]);
    assert_eq!(updated["meta"]["versionId"], "2");
}

async fn prefer_header_controls_the_response_body(app: TestApp) {
    let minimal = app
        .client
        .post(app.url("Goal"))
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=minimal")
        .body(json!({"resourceType": "Goal", "lifecycleStatus": "active", "description": {"text": "Gå til bageren"}, "subject": {"reference": "Patient/p1"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(minimal.status().as_u16(), 201);
    assert!(minimal.headers().contains_key("location"));
    assert!(minimal.text().await.unwrap().is_empty());
    let oo = app
        .client
        .post(app.url("Goal"))
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=OperationOutcome")
        .body(json!({"resourceType": "Goal", "lifecycleStatus": "active", "description": {"text": "x"}, "subject": {"reference": "Patient/p1"}}).to_string())
        .send()
        .await
        .unwrap();
    let body: Value = oo.json().await.unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome");
}

async fn bad_requests_get_operation_outcomes_with_the_right_status(app: TestApp) {
    // Not JSON.
    let res = app
        .client
        .post(app.url("Patient"))
        .header("content-type", "application/fhir+json")
        .body("{\"resourceType\": \"Patient\",")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let oo: Value = res.json().await.unwrap();
    assert!(oo["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
    // Wrong media type.
    let res = app
        .client
        .post(app.url("Patient"))
        .header("content-type", "application/xml")
        .body("<Patient/>")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 415);
    // Type mismatch between URL and body.
    let res = app.post("Patient", &json!({"resourceType": "Goal"})).await;
    assert_eq!(res.status().as_u16(), 400);
    // Id mismatch on update.
    let res = app
        .put("Patient/a", &json!({"resourceType": "Patient", "id": "b"}))
        .await;
    assert_eq!(res.status().as_u16(), 400);
    let oo: Value = res.json().await.unwrap();
    assert_eq!(oo["issue"][0]["expression"][0], "Patient.id");
    // Unknown type.
    assert_eq!(app.get("Spaceship/1").await.status().as_u16(), 404);
    // Method not allowed (PATCH is served; POST on an instance is not).
    let res = app.client.post(app.url("Patient/1")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 405);
    assert_eq!(
        res.headers()["allow"],
        "GET, PUT, PATCH, DELETE, HEAD, OPTIONS"
    );
    let oo: Value = res.json().await.unwrap();
    assert_eq!(oo["resourceType"], "OperationOutcome");
    // Not acceptable.
    let res = app
        .client
        .get(app.url("Patient"))
        .header("accept", "application/fhir+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 406);
    assert_eq!(app.get("Patient?_format=xml").await.status().as_u16(), 406);
    assert_eq!(app.get("Patient?_format=json").await.status().as_u16(), 200);
    // Invalid id.
    assert_eq!(app.get("Patient/a$b").await.status().as_u16(), 400);
}

async fn history_pages_with_next_links(app: TestApp) {
    for n in 0..5 {
        app.create(&json!({"resourceType": "Organization", "name": format!("Org {n}")}))
            .await;
    }
    let page1 = app.get_json("Organization/_history?_count=2", 200).await;
    assert_eq!(page1["entry"].as_array().unwrap().len(), 2);
    let page2 = app.follow(&next_link(&page1).expect("next link")).await;
    assert_eq!(page2["entry"].as_array().unwrap().len(), 2);
    assert_ne!(page1["entry"][0]["fullUrl"], page2["entry"][0]["fullUrl"]);
    let system = app.get_json("_history", 200).await;
    assert_eq!(system["total"], 5);
}

on_both_backends!(
    create_returns_201_with_location_etag_and_last_modified,
    update_bumps_the_version_and_vread_returns_each,
    update_of_an_unknown_id_creates_it_with_the_client_id,
    if_match_guards_against_lost_updates,
    delete_makes_reads_answer_gone_and_keeps_history,
    conditional_create_returns_the_existing_match,
    conditional_update_creates_then_updates_the_match,
    prefer_header_controls_the_response_body,
    bad_requests_get_operation_outcomes_with_the_right_status,
    history_pages_with_next_links,
);
