//! Requests exactly as the FHIR clients vendors and municipalities use send them (issue 16):
//! HAPI's conditional create forms, `_elements`/`_summary` on reads and searches, and fhirpy's
//! `get_or_create`, which posts its criteria as a query string; SMART discovery's media type,
//! which the client scenario (tests/clients) found.

use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};

use crate::helpers::TestApp;
use crate::on_both_backends;

const IDENTIFIER: &str = "urn%3Aoid%3A1.2.208.176.1.2%7C0101451234";

fn patient() -> Value {
    json!({"resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": "0101451234"}],
        "name": [{"family": "Hansen"}], "birthDate": "1945-01-01"})
}

fn care_plan(subject: &str) -> Value {
    json!({"resourceType": "CarePlan", "status": "active", "intent": "plan",
        "subject": {"reference": subject}, "title": "Rehabilitering",
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Plan</div>"},
        "note": [{"text": "weekly meeting"}]})
}

async fn post_if_none_exist(app: &TestApp, criteria: &str) -> reqwest::Response {
    app.client
        .post(app.url("Patient"))
        .header(CONTENT_TYPE, "application/fhir+json")
        .header("If-None-Exist", criteria)
        .body(patient().to_string())
        .send()
        .await
        .expect("request")
}

/// HAPI's generic client sends `If-None-Exist` as a full URL with `_format`; its BundleBuilder
/// documents `Patient?identifier=…`. Each must find the first create's Patient.
async fn hapi_conditional_create_forms_match(app: TestApp) {
    let first = post_if_none_exist(&app, &format!("identifier={IDENTIFIER}")).await;
    assert_eq!(first.status().as_u16(), 201);
    let id = first.json::<Value>().await.unwrap()["id"].clone();
    for criteria in [
        format!("{}/Patient?_format=json&identifier={IDENTIFIER}", app.fhir),
        format!("Patient?identifier={IDENTIFIER}"),
        format!("?identifier={IDENTIFIER}"),
    ] {
        let res = post_if_none_exist(&app, &criteria).await;
        assert_eq!(res.status().as_u16(), 200, "{criteria}");
        assert_eq!(res.json::<Value>().await.unwrap()["id"], id, "{criteria}");
    }
    let other = post_if_none_exist(&app, &format!("Observation?identifier={IDENTIFIER}")).await;
    assert_eq!(other.status().as_u16(), 400);
    let outcome: Value = other.json().await.unwrap();
    assert_eq!(outcome["issue"][0]["expression"][0], "If-None-Exist");

    // The same forms in a transaction's entry.request.ifNoneExist.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient(), "request": {"method": "POST", "url": "Patient",
            "ifNoneExist": format!("{}/Patient?identifier={IDENTIFIER}", app.fhir)}},
        {"resource": patient(), "request": {"method": "POST", "url": "Patient",
            "ifNoneExist": format!("Patient?identifier={IDENTIFIER}")}}]});
    let res = app.post("", &bundle).await;
    assert_eq!(res.status().as_u16(), 200);
    let body: Value = res.json().await.unwrap();
    for e in body["entry"].as_array().unwrap() {
        assert_eq!(e["response"]["status"], "200 OK", "{body}");
    }
    let bad = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient(), "request": {"method": "POST", "url": "Patient",
            "ifNoneExist": "Patient?nonsense=1"}}]});
    let res = app.post("", &bad).await;
    assert_eq!(res.status().as_u16(), 400);
    let outcome: Value = res.json().await.unwrap();
    let at = outcome["issue"][0]["expression"][0].as_str().unwrap();
    assert!(
        at.starts_with("Bundle.entry[0].request.ifNoneExist"),
        "located at the criteria, not request.url: {at}"
    );
}

fn tagged_subsetted(v: &Value) -> bool {
    v["meta"]["tag"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["code"] == "SUBSETTED"))
}

/// fhirclient's strict models reject a CarePlan without `intent` (1..1): `_elements` keeps the
/// mandatory elements, on searches and reads, and marks the subset.
async fn elements_keep_mandatory_elements(app: TestApp) {
    let cp = app.create(&care_plan("Patient/p1")).await;
    let id = cp["id"].as_str().unwrap();
    let search = app
        .get_json(&format!("CarePlan?_id={id}&_elements=status,subject"), 200)
        .await;
    let found = &search["entry"][0]["resource"];
    assert_eq!(found["intent"], "plan", "{found}");
    assert_eq!(found["status"], "active");
    assert!(found.get("title").is_none() && found.get("note").is_none());
    assert!(tagged_subsetted(found));

    let read = app
        .get_json(&format!("CarePlan/{id}?_elements=title"), 200)
        .await;
    assert_eq!(read["title"], "Rehabilitering");
    assert_eq!(read["intent"], "plan");
    assert!(read.get("note").is_none() && read.get("text").is_none());
    assert!(tagged_subsetted(&read));
    let vread = app
        .get_json(&format!("CarePlan/{id}/_history/1?_summary=data"), 200)
        .await;
    assert!(vread.get("text").is_none() && vread.get("note").is_some());
    // Without a subset the stored resource comes back untouched.
    assert_eq!(app.get_json(&format!("CarePlan/{id}"), 200).await, cp);
}

/// HAPI's `summaryMode(TRUE)` sends `_summary=true`; `text` is also R4.
async fn summary_true_and_text(app: TestApp) {
    let cp = app.create(&care_plan("Patient/p1")).await;
    let id = cp["id"].as_str().unwrap();
    let t = app
        .get_json(&format!("CarePlan?_id={id}&_summary=true"), 200)
        .await;
    let r = &t["entry"][0]["resource"];
    assert_eq!(r["title"], "Rehabilitering", "title is a summary element");
    assert!(r.get("note").is_none() && r.get("text").is_none(), "{r}");
    assert!(tagged_subsetted(r));
    let x = app
        .get_json(&format!("CarePlan/{id}?_summary=text"), 200)
        .await;
    assert!(x.get("text").is_some() && x.get("intent").is_some());
    assert!(x.get("title").is_none() && x.get("note").is_none());
    let bad = app.get(&format!("CarePlan/{id}?_summary=yes")).await;
    assert_eq!(bad.status().as_u16(), 400);
}

/// fhirpy's `get_or_create` posts `POST /Patient?identifier=…`: a silent create would make a
/// duplicate on every call.
async fn search_parameters_on_a_create_are_refused(app: TestApp) {
    let res = app
        .post(&format!("Patient?identifier={IDENTIFIER}"), &patient())
        .await;
    assert_eq!(res.status().as_u16(), 400);
    let outcome: Value = res.json().await.unwrap();
    assert!(outcome["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .contains("If-None-Exist"));
    let none = app
        .get_json(&format!("Patient?identifier={IDENTIFIER}"), 200)
        .await;
    assert_eq!(none["total"], 0, "nothing was created");
    let res = app.post("Patient?_format=json", &patient()).await;
    assert_eq!(
        res.status().as_u16(),
        201,
        "_format is not a search parameter"
    );
}

async fn send_patch(
    app: &TestApp,
    path: &str,
    ops: Value,
    if_match: Option<&str>,
) -> reqwest::Response {
    let mut req = app
        .client
        .patch(app.url(path))
        .header(CONTENT_TYPE, "application/json-patch+json")
        .body(ops.to_string());
    if let Some(v) = if_match {
        req = req.header("If-Match", v);
    }
    req.send().await.expect("request")
}

/// JSON Patch on an instance: applied to the current version, validated, written as a new
/// version; a failing operation, an invalid result or a stale If-Match writes nothing.
async fn json_patch_updates_atomically(app: TestApp) {
    let cp = app.create(&care_plan("Patient/p1")).await;
    let id = cp["id"].as_str().unwrap();
    let path = format!("CarePlan/{id}");
    let res = send_patch(
        &app,
        &path,
        json!([{"op": "test", "path": "/status", "value": "active"},
               {"op": "replace", "path": "/status", "value": "completed"},
               {"op": "remove", "path": "/note"}]),
        Some("W/\"1\""),
    )
    .await;
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["etag"], "W/\"2\"");
    let v2 = app.get_json(&path, 200).await;
    assert_eq!(v2["status"], "completed");
    assert!(v2.get("note").is_none());

    for (ops, status) in [
        // A failing test: nothing is applied.
        (
            json!([{"op": "replace", "path": "/title", "value": "x"},
                {"op": "test", "path": "/status", "value": "active"}]),
            422,
        ),
        // The id may not change.
        (
            json!([{"op": "replace", "path": "/id", "value": "other"}]),
            422,
        ),
        // The result must still be a valid CarePlan.
        (
            json!([{"op": "replace", "path": "/status", "value": "bogus"}]),
            422,
        ),
        // Not a patch document.
        (json!({"op": "replace"}), 400),
    ] {
        let res = send_patch(&app, &path, ops.clone(), None).await;
        assert_eq!(res.status().as_u16(), status, "{ops}");
        let outcome: Value = res.json().await.unwrap();
        assert_eq!(outcome["resourceType"], "OperationOutcome");
    }
    let stale = send_patch(
        &app,
        &path,
        json!([{"op": "replace", "path": "/status", "value": "active"}]),
        Some("W/\"1\""),
    )
    .await;
    assert_eq!(stale.status().as_u16(), 412);
    let now = app.get_json(&path, 200).await;
    assert_eq!(now["meta"]["versionId"], "2", "nothing was written");
    assert_eq!(now["title"], "Rehabilitering");
    let wrong_type = app
        .client
        .patch(app.url(&path))
        .header(CONTENT_TYPE, "text/plain")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status().as_u16(), 415);
    let as_create = app
        .client
        .post(app.url("CarePlan"))
        .header(CONTENT_TYPE, "application/json-patch+json")
        .body(care_plan("Patient/p1").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        as_create.status().as_u16(),
        415,
        "a patch type is not a resource"
    );
}

async fn send_fhirpath_patch(
    app: &TestApp,
    path: &str,
    operations: Value,
    if_match: Option<&str>,
) -> reqwest::Response {
    let params = json!({"resourceType": "Parameters", "parameter": operations});
    let mut req = app
        .client
        .patch(app.url(path))
        .header(CONTENT_TYPE, "application/fhir+json")
        .body(params.to_string());
    if let Some(v) = if_match {
        req = req.header("If-Match", v);
    }
    req.send().await.expect("request")
}

fn operation(kind: &str, path: &str, more: Value) -> Value {
    let mut parts = vec![
        json!({"name": "type", "valueCode": kind}),
        json!({"name": "path", "valueString": path}),
    ];
    parts.extend(more.as_array().cloned().unwrap_or_default());
    json!({"name": "operation", "part": parts})
}

/// FHIRPath Patch (a Parameters resource): operations located by FHIRPath, applied in order,
/// validated, all or nothing; malformed operations are a 400 naming each problem's place.
async fn fhirpath_patch_updates_atomically(app: TestApp) {
    let cp = app.create(&care_plan("Patient/p1")).await;
    let id = cp["id"].as_str().unwrap();
    let path = format!("CarePlan/{id}");
    let res = send_fhirpath_patch(
        &app,
        &path,
        json!([
            operation(
                "replace",
                "CarePlan.status",
                json!([{"name": "value", "valueCode": "on-hold"}])
            ),
            operation(
                "add",
                "CarePlan",
                json!([
                {"name": "name", "valueString": "description"},
                {"name": "value", "valueString": "Genoptræning efter udskrivelse"}])
            ),
            operation("delete", "CarePlan.note", json!([])),
        ]),
        Some("W/\"1\""),
    )
    .await;
    assert_eq!(
        res.status().as_u16(),
        200,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let v2 = app.get_json(&path, 200).await;
    assert_eq!(v2["meta"]["versionId"], "2");
    assert_eq!(v2["status"], "on-hold");
    assert_eq!(v2["description"], "Genoptræning efter udskrivelse");
    assert!(v2.get("note").is_none());

    for (ops, status) in [
        // The second operation cannot apply: the first is not kept either.
        (
            json!([
                operation(
                    "replace",
                    "CarePlan.title",
                    json!([{"name": "value", "valueString": "x"}])
                ),
                operation(
                    "replace",
                    "CarePlan.activity",
                    json!([{"name": "value", "valueString": "x"}])
                ),
            ]),
            422,
        ),
        // The result must still be a valid CarePlan.
        (
            json!([operation(
                "replace",
                "CarePlan.status",
                json!([{"name": "value", "valueCode": "bogus"}])
            )]),
            422,
        ),
        // Not an operation a FHIRPath Patch knows.
        (
            json!([operation("rename", "CarePlan.status", json!([]))]),
            400,
        ),
    ] {
        let res = send_fhirpath_patch(&app, &path, ops.clone(), None).await;
        assert_eq!(res.status().as_u16(), status, "{ops}");
        let outcome: Value = res.json().await.unwrap();
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert!(
            outcome["issue"][0]["expression"][0]
                .as_str()
                .is_some_and(|e| !e.is_empty()),
            "{outcome}"
        );
    }
    let now = app.get_json(&path, 200).await;
    assert_eq!(now["meta"]["versionId"], "2", "nothing was written");
    assert_eq!(now["title"], "Rehabilitering");
}

/// PATCH entries in transactions and batches (R4 3.1.0.11): a FHIRPath Patch as a Parameters,
/// a JSON Patch as a Binary; in a transaction all or nothing, located at the entry.
async fn patch_entries_in_bundles(app: TestApp) {
    use base64::Engine as _;
    let a = app.create(&care_plan("Patient/p1")).await;
    let b = app.create(&care_plan("Patient/p1")).await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let fhirpath = json!({"resourceType": "Parameters", "parameter": [operation(
        "replace",
        "CarePlan.status",
        json!([{"name": "value", "valueCode": "on-hold"}])
    )]});
    let json_patch = |ops: Value| {
        json!({
            "resourceType": "Binary",
            "contentType": "application/json-patch+json",
            "data": base64::engine::general_purpose::STANDARD.encode(ops.to_string()),
        })
    };
    let entry = |id: &str, resource: Value| json!({"resource": resource, "request": {"method": "PATCH", "url": format!("CarePlan/{id}"), "ifMatch": "W/\"1\""}});
    let bundle = |kind: &str, entries: Vec<Value>| json!({"resourceType": "Bundle", "type": kind, "entry": entries});

    // One bad patch: nothing of the transaction is written, and the error names its entry.
    let bad = json_patch(json!([{"op": "test", "path": "/status", "value": "completed"}]));
    let res = app
        .post(
            "",
            &bundle(
                "transaction",
                vec![entry(a, fhirpath.clone()), entry(b, bad)],
            ),
        )
        .await;
    assert_eq!(res.status().as_u16(), 422);
    let outcome: Value = res.json().await.unwrap();
    assert!(
        outcome["issue"][0]["expression"][0]
            .as_str()
            .is_some_and(|x| x.starts_with("Bundle.entry[1]")),
        "{outcome}"
    );
    assert_eq!(
        app.get_json(&format!("CarePlan/{a}"), 200).await["meta"]["versionId"],
        "1"
    );

    let title = json_patch(json!([{"op": "replace", "path": "/title", "value": "Hjemmetræning"}]));
    let res = app
        .post(
            "",
            &bundle(
                "transaction",
                vec![entry(a, fhirpath.clone()), entry(b, title)],
            ),
        )
        .await;
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["type"], "transaction-response");
    assert!(body["entry"][0]["response"]["status"]
        .as_str()
        .unwrap()
        .starts_with("200"));
    let a2 = app.get_json(&format!("CarePlan/{a}"), 200).await;
    assert_eq!(
        (a2["status"].as_str(), a2["meta"]["versionId"].as_str()),
        (Some("on-hold"), Some("2"))
    );
    let b2 = app.get_json(&format!("CarePlan/{b}"), 200).await;
    assert_eq!(b2["title"], "Hjemmetræning");

    // A batch answers each entry: the stale If-Match fails alone.
    let fresh = json!({"resource": json_patch(json!([{"op": "replace", "path": "/title", "value": "Ny"}])),
        "request": {"method": "PATCH", "url": format!("CarePlan/{b}")}});
    let res = app
        .post("", &bundle("batch", vec![entry(a, fhirpath), fresh]))
        .await;
    let body: Value = res.json().await.unwrap();
    assert!(
        body["entry"][0]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("412"),
        "{body}"
    );
    assert!(
        body["entry"][1]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("200"),
        "{body}"
    );

    // Not a patch: 400 at the entry's resource.
    let res = app
        .post(
            "",
            &bundle(
                "transaction",
                vec![entry(a, json!({"resourceType": "CarePlan"}))],
            ),
        )
        .await;
    assert_eq!(res.status().as_u16(), 400);
    let outcome: Value = res.json().await.unwrap();
    assert_eq!(
        outcome["issue"][0]["expression"][0], "Bundle.entry[0].resource",
        "{outcome}"
    );
}

/// Conditional delete of a single match (HAPI's and Medplum's clients use it); several matches
/// are a 412, none is nothing to do; the same in a transaction.
async fn conditional_delete_single_match(app: TestApp) {
    let p = app.create(&patient()).await;
    let id = p["id"].as_str().unwrap();
    let res = app
        .client
        .delete(app.url(&format!("Patient?identifier={IDENTIFIER}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 204);
    assert_eq!(
        app.get(&format!("Patient/{id}")).await.status().as_u16(),
        410
    );
    let none = app
        .client
        .delete(app.url(&format!("Patient?identifier={IDENTIFIER}")))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status().as_u16(), 204, "no match: nothing to delete");
    let mut other = patient();
    other["name"] = json!([{"family": "Hansen"}]);
    other["identifier"][0]["value"] = json!("0202451234");
    app.create(&other).await;
    app.create(&other).await;
    let several = app
        .client
        .delete(app.url("Patient?family=Hansen"))
        .send()
        .await
        .unwrap();
    assert_eq!(several.status().as_u16(), 412);
    let bare = app.client.delete(app.url("Patient")).send().await.unwrap();
    assert_eq!(bare.status().as_u16(), 405, "criteria are required");
    let cs = app.get_json("metadata", 200).await;
    let patient_cs = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .unwrap()
        .clone();
    assert_eq!(patient_cs["conditionalDelete"], "single");
    let t = app.create(&patient()).await;
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": format!("Patient?identifier={IDENTIFIER}")}}]});
    let res = app.post("", &bundle).await;
    assert_eq!(res.status().as_u16(), 200);
    let gone = app
        .get(&format!("Patient/{}", t["id"].as_str().unwrap()))
        .await;
    assert_eq!(gone.status().as_u16(), 410);
}

/// SMART discovery is SMART's JSON document, not a FHIR resource, so it is `application/json`:
/// fhirclient's strict models (tests/clients) refused it as an `application/fhir+json` body
/// without a `resourceType`. FHIR answers stay `application/fhir+json`.
async fn smart_configuration_is_plain_json(app: TestApp) {
    for url in [
        format!("{}/.well-known/smart-configuration", app.addr),
        app.url(".well-known/smart-configuration"),
    ] {
        let res = reqwest::get(&url).await.expect("request");
        assert_eq!(res.status().as_u16(), 200, "{url}");
        assert_eq!(res.headers()[CONTENT_TYPE], "application/json", "{url}");
        let doc: Value = res.json().await.expect("JSON");
        assert!(doc.get("resourceType").is_none());
    }
    let cs = reqwest::get(app.url("metadata")).await.expect("request");
    let media = cs.headers()[CONTENT_TYPE].to_str().expect("ascii");
    assert!(media.starts_with("application/fhir+json"), "{media}");
}

/// `_count=0` is `_summary=count` (R4 search, "_count"), which fhirpy's `count()` relies on: the
/// total, no entries and no next link (paged, it answered empty pages with next links forever).
async fn count_zero_is_the_total(app: TestApp) {
    app.create(&patient()).await;
    app.create(&patient()).await;
    let bundle = app
        .get_json(&format!("Patient?identifier={IDENTIFIER}&_count=0"), 200)
        .await;
    assert_eq!(bundle["total"], 2, "{bundle}");
    assert!(bundle.get("entry").is_none(), "{bundle}");
    let links = bundle["link"].as_array().expect("links");
    assert!(links.iter().all(|l| l["relation"] != "next"), "{bundle}");
}

on_both_backends!(
    count_zero_is_the_total,
    smart_configuration_is_plain_json,
    conditional_delete_single_match,
    json_patch_updates_atomically,
    fhirpath_patch_updates_atomically,
    patch_entries_in_bundles,
    hapi_conditional_create_forms_match,
    elements_keep_mandatory_elements,
    summary_true_and_text,
    search_parameters_on_a_create_are_refused,
);
