//! Transaction and batch Bundles.

use serde_json::{json, Value};

use crate::helpers::{issue_locations, match_ids, response_statuses, TestApp};
use crate::on_both_backends;

fn discharge_transaction(cpr: &str) -> Value {
    json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:0b7c4f5e-1c1e-4a57-9a43-000000000001",
             "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": cpr}]},
             "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier=urn:oid:1.2.208.176.1.2|{cpr}")}},
            {"fullUrl": "urn:uuid:0b7c4f5e-1c1e-4a57-9a43-000000000002",
             "resource": {"resourceType": "Goal", "lifecycleStatus": "active", "description": {"text": "Klare trapper"},
                          "subject": {"reference": "urn:uuid:0b7c4f5e-1c1e-4a57-9a43-000000000001"}},
             "request": {"method": "POST", "url": "Goal"}},
            {"resource": {"resourceType": "CarePlan", "status": "active", "intent": "plan",
                          "subject": {"reference": "urn:uuid:0b7c4f5e-1c1e-4a57-9a43-000000000001"},
                          "goal": [{"reference": "urn:uuid:0b7c4f5e-1c1e-4a57-9a43-000000000002"}]},
             "request": {"method": "POST", "url": "CarePlan"}}
        ]
    })
}

async fn transaction_resolves_urn_uuid_references_between_entries(app: TestApp) {
    let res = app.post("", &discharge_transaction("1212121212")).await;
    assert_eq!(res.status().as_u16(), 200);
    let b: Value = res.json().await.unwrap();
    assert_eq!(b["type"], "transaction-response");
    let entries = b["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    for e in entries {
        assert_eq!(e["response"]["status"], "201 Created");
    }
    let plan = &entries[2]["resource"];
    let patient_id = entries[0]["resource"]["id"].as_str().unwrap();
    let goal_id = entries[1]["resource"]["id"].as_str().unwrap();
    assert_eq!(
        plan["subject"]["reference"],
        format!("Patient/{patient_id}")
    );
    assert_eq!(plan["goal"][0]["reference"], format!("Goal/{goal_id}"));
    // The same bundle again: the conditional create matches, the patient is reused.
    let again: Value = app
        .post("", &discharge_transaction("1212121212"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(again["entry"][0]["resource"]["id"], patient_id);
    let found = app
        .get_json("Patient?identifier=urn:oid:1.2.208.176.1.2|1212121212", 200)
        .await;
    assert_eq!(match_ids(&found).len(), 1);
}

async fn transaction_is_all_or_nothing(app: TestApp) {
    let mut bundle = discharge_transaction("3434343434");
    // The last entry updates with a stale version: everything must roll back.
    bundle["entry"].as_array_mut().unwrap().push(json!({
        "resource": {"resourceType": "Organization", "id": "org-1", "name": "X"},
        "request": {"method": "PUT", "url": "Organization/org-1", "ifMatch": "W/\"5\""}
    }));
    let res = app.post("", &bundle).await;
    assert_eq!(res.status().as_u16(), 412);
    let oo: Value = res.json().await.unwrap();
    assert_eq!(oo["issue"][0]["expression"][0], "Bundle.entry[3]");
    let patients = app
        .get_json("Patient?identifier=urn:oid:1.2.208.176.1.2|3434343434", 200)
        .await;
    assert!(match_ids(&patients).is_empty(), "nothing half-written");
    let goals = app.get_json("Goal", 200).await;
    assert!(match_ids(&goals).is_empty());
}

async fn transaction_resolves_conditional_references(app: TestApp) {
    app.create(
        &json!({"resourceType": "Organization", "name": "Sønderborg Kommune",
        "identifier": [{"system": "urn:oid:1.2.208.176.1.1", "value": "555"}]}),
    )
    .await;
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "CareTeam", "managingOrganization": [{"reference": "Organization?identifier=urn:oid:1.2.208.176.1.1|555"}]},
         "request": {"method": "POST", "url": "CareTeam"}}]});
    let b: Value = app.post("", &bundle).await.json().await.unwrap();
    let reference = b["entry"][0]["resource"]["managingOrganization"][0]["reference"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reference.starts_with("Organization/"), "{reference}");
    let missing = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "CareTeam", "managingOrganization": [{"reference": "Organization?identifier=urn:oid:1.2.208.176.1.1|999"}]},
         "request": {"method": "POST", "url": "CareTeam"}}]});
    let res = app.post("", &missing).await;
    assert_eq!(res.status().as_u16(), 412);
}

async fn batch_entries_succeed_or_fail_on_their_own(app: TestApp) {
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Organization", "name": "A"}, "request": {"method": "POST", "url": "Organization"}},
        {"request": {"method": "GET", "url": "Organization/does-not-exist"}},
        {"resource": {"resourceType": "Patient", "id": "x"}, "request": {"method": "PUT", "url": "Patient/y"}},
        {"request": {"method": "GET", "url": "Organization?name=A"}}
    ]});
    let res = app.post("", &bundle).await;
    assert_eq!(res.status().as_u16(), 200);
    let b: Value = res.json().await.unwrap();
    assert_eq!(b["type"], "batch-response");
    assert_eq!(
        response_statuses(&b),
        vec!["201 Created", "404 Not Found", "400 Bad Request", "200 OK"]
    );
    assert_eq!(
        b["entry"][2]["response"]["outcome"]["issue"][0]["expression"][0],
        "Bundle.entry[2].resource.id"
    );
    assert_eq!(b["entry"][3]["resource"]["type"], "searchset");
}

async fn malformed_bundles_list_every_problem(app: TestApp) {
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient"}},
        {"resource": {"resourceType": "Goal"}, "request": {"method": "HEAD", "url": "Goal/1"}},
        {"resource": {"resourceType": "Goal"}, "request": {"method": "POST", "url": "Patient"}}
    ]});
    let res = app.post("", &bundle).await;
    assert_eq!(res.status().as_u16(), 400);
    let oo: Value = res.json().await.unwrap();
    assert_eq!(
        issue_locations(&oo),
        vec![
            "Bundle.entry[0].request",
            "Bundle.entry[1].request.method",
            "Bundle.entry[2].resource.resourceType"
        ]
    );
    let doc = json!({"resourceType": "Bundle", "type": "document"});
    assert_eq!(app.post("", &doc).await.status().as_u16(), 400);
    // A document Bundle is stored as a resource at /fhir/Bundle.
    let doc = json!({"resourceType": "Bundle", "type": "document", "timestamp": "2024-03-01T10:00:00Z",
        "identifier": {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:1d1f0a49-1111-4c0c-b1ef-6b1c2f1e2a10"}});
    assert_eq!(app.post("Bundle", &doc).await.status().as_u16(), 201);
}

/// A type the server does not serve is refused where its entry is, before anything is written:
/// in a batch that entry alone (404 in its place), in a transaction the whole Bundle.
async fn an_unserved_type_is_answered_in_its_entry(app: TestApp) {
    let entries = json!([
        {"resource": {"resourceType": "Organization", "name": "Served"}, "request": {"method": "POST", "url": "Organization"}},
        {"resource": {"resourceType": "Medication"}, "request": {"method": "POST", "url": "Medication"}},
        {"request": {"method": "GET", "url": "Careplan?status=active"}},
        {"request": {"method": "GET", "url": "Organization?name=Served"}}
    ]);
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": entries});
    let b: Value = app.post("", &batch).await.json().await.unwrap();
    assert_eq!(
        response_statuses(&b),
        vec!["201 Created", "404 Not Found", "404 Not Found", "200 OK"]
    );
    assert_eq!(
        b["entry"][2]["response"]["outcome"]["issue"][0]["expression"][0],
        "Bundle.entry[2].request.url"
    );
    assert_eq!(match_ids(&b["entry"][3]["resource"]).len(), 1);

    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let res = app.post("", &transaction).await;
    assert_eq!(res.status().as_u16(), 404);
    let oo: Value = res.json().await.unwrap();
    assert_eq!(
        issue_locations(&oo),
        vec!["Bundle.entry[1].request.url", "Bundle.entry[2].request.url"]
    );
    let found = app.get_json("Organization?name=Served", 200).await;
    assert_eq!(match_ids(&found).len(), 1, "the transaction wrote nothing");
}

on_both_backends!(
    an_unserved_type_is_answered_in_its_entry,
    transaction_resolves_urn_uuid_references_between_entries,
    transaction_is_all_or_nothing,
    transaction_resolves_conditional_references,
    batch_entries_succeed_or_fail_on_their_own,
    malformed_bundles_list_every_problem,
);
