//! `/municipal/v1/care-records` over HTTP: translate, store in one transaction, idempotent on
//! (municipality, record id), ordered by record version, rebuilt losslessly on GET; bad input
//! answers 400/422 with every problem and stores nothing.

use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};

use crate::helpers::TestApp;
use crate::on_both_backends;

fn fixture(name: &str) -> Value {
    let path = format!("{}/fixtures/municipal/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("JSON")
}

async fn post_record(app: &TestApp, record: &Value, prefer: Option<&str>) -> (u16, Value) {
    let mut req = app
        .client
        .post(format!("{}/municipal/v1/care-records", app.addr))
        .header(CONTENT_TYPE, "application/json")
        .body(record.to_string());
    if let Some(p) = prefer {
        req = req.header("Prefer", p);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.expect("JSON body"))
}

async fn get_record(app: &TestApp, id: &str, query: &str) -> (u16, Value) {
    let res = app
        .client
        .get(format!(
            "{}/municipal/v1/care-records/{id}{query}",
            app.addr
        ))
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.expect("JSON body"))
}

/// How many resources of `rtype` the server holds.
async fn count(app: &TestApp, rtype: &str) -> u64 {
    let page = app.get_json(&format!("{rtype}?_summary=count"), 200).await;
    page["total"].as_u64().expect("total")
}

async fn every_fixture_round_trips_through_the_store(app: TestApp) {
    let dir = format!("{}/fixtures/municipal", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(names.len() >= 6, "at least six fixtures");
    for name in names {
        let rec = fixture(&name);
        let (status, body) = post_record(&app, &rec, None).await;
        assert_eq!(status, 201, "{name}: {body}");
        assert_eq!(body["result"], "created");
        let id = rec["recordId"].as_str().unwrap();
        let code = rec["municipality"]["code"].as_str().unwrap();
        let (status, back) = get_record(&app, id, &format!("?municipality={code}")).await;
        assert_eq!(status, 200, "{name}: {back}");
        assert_eq!(back, rec, "{name}: the record rebuilt from FHIR differs");
        // The CarePlan is readable over the FHIR API, valid and claiming our profile.
        let plan = app.get_json(body["carePlan"].as_str().unwrap(), 200).await;
        assert_eq!(
            plan["meta"]["profile"][0],
            "http://sektorbro.dk/fhir/StructureDefinition/sektorbro-careplan"
        );
    }
}

async fn reposting_is_idempotent_and_versions_are_ordered(app: TestApp) {
    let rec = fixture("haderslev-hjortebro-intervention.json");
    let (status, first) = post_record(&app, &rec, None).await;
    assert_eq!(status, 201, "{first}");
    let goals_before = count(&app, "Goal").await;
    let plans_before = count(&app, "CarePlan").await;

    // The same version again: nothing written.
    let (status, again) = post_record(&app, &rec, None).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["result"], "unchanged");
    let plan = app.get_json(first["carePlan"].as_str().unwrap(), 200).await;
    assert_eq!(plan["meta"]["versionId"], "1");

    // A newer version with one goal fewer and a changed phase: same resources, new versions,
    // the dropped goal deleted, no duplicates.
    let mut changed = rec.clone();
    changed["recordVersion"] = json!(rec["recordVersion"].as_u64().unwrap() + 1);
    changed["course"]["phase"] = json!("follow-up");
    let dropped = changed["goals"].as_array_mut().unwrap().pop().unwrap();
    let dropped_id = dropped["id"].as_str().unwrap().to_string();
    for i in changed["interventions"].as_array_mut().unwrap() {
        i["goals"]
            .as_array_mut()
            .unwrap()
            .retain(|g| g.as_str() != Some(dropped_id.as_str()));
    }
    for m in changed["meetings"].as_array_mut().unwrap() {
        m["goalReviews"]
            .as_array_mut()
            .unwrap()
            .retain(|r| r["goal"].as_str() != Some(dropped_id.as_str()));
    }
    let (status, updated) = post_record(&app, &changed, None).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["result"], "updated");
    assert_eq!(updated["carePlan"], first["carePlan"]);
    assert_eq!(updated["patient"], first["patient"]);
    assert_eq!(count(&app, "CarePlan").await, plans_before);
    assert_eq!(count(&app, "Goal").await, goals_before - 1);
    let plan = app.get_json(first["carePlan"].as_str().unwrap(), 200).await;
    assert_eq!(plan["meta"]["versionId"], "2");
    let (_, back) = get_record(&app, rec["recordId"].as_str().unwrap(), "").await;
    assert_eq!(back, changed);

    // Older, or the same version with other content: 409, nothing written.
    let (status, older) = post_record(&app, &rec, None).await;
    assert_eq!(status, 409, "{older}");
    let mut same_version = changed.clone();
    same_version["course"]["phase"] = json!("intervention");
    let (status, conflict) = post_record(&app, &same_version, None).await;
    assert_eq!(status, 409, "{conflict}");
    let (_, back) = get_record(&app, rec["recordId"].as_str().unwrap(), "").await;
    assert_eq!(back, changed);
}

async fn representation_carries_the_transaction_response(app: TestApp) {
    let rec = fixture("completed-discharged-home.json");
    let (status, body) = post_record(&app, &rec, Some("return=representation")).await;
    assert_eq!(status, 201, "{body}");
    let bundle = &body["bundle"];
    assert_eq!(bundle["type"], "transaction-response");
    let entries = bundle["entry"].as_array().unwrap();
    assert!(entries.iter().all(|e| e["resource"].is_object()));
    // Every resource the transaction wrote is listed, as the response Bundle locates it.
    let resources = body["resources"].as_array().unwrap();
    for e in entries {
        let location = e["response"]["location"].as_str().unwrap();
        let parts: Vec<&str> = location.split('/').collect();
        let h = parts.iter().rposition(|p| *p == "_history").unwrap();
        let written = format!("{}/{}", parts[h - 2], parts[h - 1]);
        assert!(
            resources.iter().any(|r| r == &written),
            "{written} not in {resources:?}"
        );
    }
    assert!(
        body["patient"]
            .as_str()
            .is_some_and(|p| p.starts_with("Patient/")),
        "{body}"
    );
    let (_, minimal) = post_record(&app, &rec, None).await;
    assert!(minimal.get("bundle").is_none());
}

async fn bad_records_answer_every_problem_and_store_nothing(app: TestApp) {
    let dir = format!("{}/fixtures/municipal/invalid", env!("CARGO_MANIFEST_DIR"));
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{dir}/expected.json")).expect("expected.json"),
    )
    .expect("JSON");
    for (name, want) in expected.as_object().unwrap() {
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{dir}/{name}")).unwrap())
                .unwrap();
        let (status, oo) = post_record(&app, &doc, None).await;
        assert_eq!(
            status as u64,
            want["status"].as_u64().unwrap(),
            "{name}: {oo}"
        );
        assert_eq!(oo["resourceType"], "OperationOutcome", "{name}");
        let mut got: Vec<String> = oo["issue"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["severity"] == "error")
            .filter_map(|i| i["expression"][0].as_str().map(String::from))
            .collect();
        got.sort();
        got.dedup();
        let mut wanted: Vec<String> = want["locations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect();
        wanted.sort();
        assert_eq!(got, wanted, "{name}: {oo}");
    }
    for rtype in ["CarePlan", "Goal", "Patient", "Condition", "Encounter"] {
        assert_eq!(count(&app, rtype).await, 0, "{rtype} stored from bad input");
    }
    // Not JSON at all, and an unknown record.
    let res = app
        .client
        .post(format!("{}/municipal/v1/care-records", app.addr))
        .header(CONTENT_TYPE, "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let (status, _) = get_record(&app, "NO-SUCH-RECORD", "").await;
    assert_eq!(status, 404);
    let (status, _) = get_record(&app, "NO-SUCH-RECORD", "?municipality=0510").await;
    assert_eq!(status, 404);
}

on_both_backends!(
    every_fixture_round_trips_through_the_store,
    reposting_is_idempotent_and_versions_are_ordered,
    representation_carries_the_transaction_response,
    bad_records_answer_every_problem_and_store_nothing,
);

/// The mapping's word that its resources are valid is all the transaction takes only while the
/// write policy asks for nothing more: a profile `[validation.required]` names for a type the
/// record is stored as is still checked (here one no Organization can meet), and nothing is
/// stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_profiles_are_checked_on_municipal_resources_too() {
    use crate::helpers::{spawn_app_with, Db};
    let app = spawn_app_with(Db::Sqlite, |c| {
        c.validation.required.insert(
            "Organization".into(),
            vec!["http://hl7.org/fhir/StructureDefinition/Patient".into()],
        );
    })
    .await
    .expect("SQLite app");
    let (status, oo) = post_record(
        &app,
        &fixture("haderslev-hjortebro-intervention.json"),
        None,
    )
    .await;
    assert_eq!(status, 422, "{oo}");
    assert!(
        oo["issue"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["expression"][0]
                .as_str()
                .is_some_and(|x| x.contains("Bundle.entry"))),
        "{oo}"
    );
    assert_eq!(count(&app, "CarePlan").await, 0);

    let app = spawn_app_with(Db::Sqlite, |_| {})
        .await
        .expect("SQLite app");
    let (status, oo) = post_record(
        &app,
        &fixture("haderslev-hjortebro-intervention.json"),
        None,
    )
    .await;
    assert_eq!(status, 201, "{oo}");
}

/// A record parsed straight into its types still obeys the request limits: with a nesting limit
/// below the record's own depth it is refused as the JSON document would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nesting_limit_applies_to_records() {
    use crate::helpers::{spawn_app_with, Db};
    let app = spawn_app_with(Db::Sqlite, |c| c.limits.max_json_depth = 4)
        .await
        .expect("SQLite app");
    let (status, oo) = post_record(
        &app,
        &fixture("haderslev-hjortebro-intervention.json"),
        None,
    )
    .await;
    assert_eq!(status, 422, "{oo}");
    assert_eq!(oo["issue"][0]["code"], "too-costly", "{oo}");
    assert_eq!(count(&app, "CarePlan").await, 0);
}

/// A record's resources are written in one transaction, bounded like a posted transaction
/// Bundle (`limits.max_bundle_entries`): one more than allowed is refused whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_that_map_to_more_resources_than_a_transaction_may_hold_are_refused() {
    use crate::helpers::{spawn_app_with, Db};
    let rec = fixture("haderslev-hjortebro-intervention.json");
    // the fixture's own count of parts, then a limit just below it
    let (status, posted) = {
        let app = spawn_app_with(Db::Sqlite, |_| {})
            .await
            .expect("SQLite app");
        post_record(&app, &rec, None).await
    };
    assert_eq!(status, 201, "{posted}");
    let app = spawn_app_with(Db::Sqlite, |c| c.limits.max_bundle_entries = 10)
        .await
        .expect("SQLite app");
    let (status, oo) = post_record(&app, &rec, None).await;
    assert_eq!(status, 422, "{oo}");
    assert_eq!(oo["issue"][0]["code"], "too-costly", "{oo}");
    assert!(
        oo["issue"][0]["diagnostics"]
            .as_str()
            .is_some_and(|d| d.contains("at most 10 are written in one request")),
        "{oo}"
    );
    assert_eq!(count(&app, "CarePlan").await, 0);
}

/// A record with only the CPR gets the citizen's name and birth date from the patient registry;
/// posting it again is "unchanged" (the cache answers); a registry that cannot be reached fails
/// the post with 503 and stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpr_only_records_are_filled_from_the_patient_registry() {
    use wiremock::matchers::{method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let mut rec = fixture("haderslev-assessment-just-admitted.json");
    let cpr = rec["citizen"]["cpr"].as_str().unwrap().to_string();
    rec["citizen"] = json!({"cpr": cpr});
    let registry = MockServer::builder().start().await;
    Mock::given(method("GET"))
        .and(path("/Patient"))
        .and(query_param(
            "identifier",
            format!("urn:oid:1.2.208.176.1.2|{cpr}"),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "resourceType": "Bundle", "type": "searchset",
            "entry": [{"search": {"mode": "match"}, "resource": {
                "resourceType": "Patient", "id": "reg-1",
                "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": cpr}],
                "name": [{"use": "official", "family": "Thomsen", "given": ["Inger", "Marie"]}],
                "birthDate": "1939-05-12"}}]})))
        .expect(1)
        .mount(&registry)
        .await;
    let base = registry.uri();
    let app = crate::helpers::spawn_app_with(crate::helpers::Db::Sqlite, move |c| {
        c.lookups.patients.base_url = base;
    })
    .await
    .expect("app");
    let (status, body) = post_record(&app, &rec, None).await;
    assert_eq!(status, 201, "{body}");
    assert!(
        body["outcome"].to_string().contains("patient registry"),
        "{body}"
    );
    let id = rec["recordId"].as_str().unwrap();
    let (_, back) = get_record(&app, id, "").await;
    assert_eq!(back["citizen"]["familyName"], "Thomsen");
    assert_eq!(back["citizen"]["givenNames"], json!(["Inger", "Marie"]));
    assert_eq!(back["citizen"]["birthDate"], "1939-05-12");
    let (status, again) = post_record(&app, &rec, None).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["result"], "unchanged");
    registry.verify().await;

    // An unreachable registry: 503, nothing stored.
    let down = MockServer::builder().start().await;
    let base = down.uri();
    drop(down);
    let app = crate::helpers::spawn_app_with(crate::helpers::Db::Sqlite, move |c| {
        c.lookups.patients.base_url = base;
        c.lookups.patients.timeout_ms = 2_000;
    })
    .await
    .expect("app");
    let (status, oo) = post_record(&app, &rec, None).await;
    assert_eq!(status, 503, "{oo}");
    assert_eq!(count(&app, "CarePlan").await, 0);
}

/// A discharge note for a stored record: the message reaches the receiver's system once, with
/// the Idempotency-Key header and our profile; the same note again is not sent twice; an unknown
/// receiver, record or goal is refused at input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discharge_notes_are_delivered_once_to_the_receivers_system() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let region = MockServer::builder().start().await;
    Mock::given(method("POST"))
        .and(path("/fhir/$process-message"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&region)
        .await;
    let base = format!("{}/fhir", region.uri());
    let app = crate::helpers::spawn_app_with(crate::helpers::Db::Sqlite, move |c| {
        crate::forwarding::fast(c);
        c.forwarding.destinations = vec![crate::forwarding::destination(
            "region-syddanmark",
            &base,
            &["328791000016006"],
        )];
    })
    .await
    .expect("app");
    let record = fixture("completed-discharged-home.json");
    assert_eq!(post_record(&app, &record, None).await.0, 201);
    let note: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/fixtures/discharge/kolding-discharged-home.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let post_note = |n: Value| {
        let app = &app;
        async move {
            let res = app
                .client
                .post(format!("{}/municipal/v1/discharge-notes", app.addr))
                .header(CONTENT_TYPE, "application/json")
                .body(n.to_string())
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap())
        }
    };
    let (status, accepted) = post_note(note.clone()).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["result"], "accepted");
    let id = accepted["messageId"].as_str().unwrap().to_string();

    // Delivered: the receiver got the message, with its id as the idempotency key.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let received = loop {
        let got = region.received_requests().await.unwrap_or_default();
        if !got.is_empty() || std::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(received.len(), 1, "delivered once");
    assert_eq!(received[0].headers["idempotency-key"], id.as_str());
    let message: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(message["type"], "message");
    assert_eq!(
        message["meta"]["profile"][0],
        "http://sektorbro.dk/fhir/StructureDefinition/sektorbro-discharge-message"
    );
    // The discharge summary is stored too.
    let composition = app
        .get_json(accepted["composition"].as_str().unwrap(), 200)
        .await;
    assert_eq!(composition["section"].as_array().unwrap().len(), 5);

    // The same note again: the same message, not sent again.
    let (status, again) = post_note(note.clone()).await;
    assert_eq!(status, 202);
    assert_eq!(again["result"], "already-accepted");
    assert_eq!(again["messageId"], accepted["messageId"]);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(region.received_requests().await.unwrap().len(), 1);

    // Refused at input: unknown receiver, unknown record, unknown goal.
    let mut unknown = note.clone();
    unknown["receiver"]["value"] = json!("999999999");
    let (status, oo) = post_note(unknown).await;
    assert_eq!(status, 422, "{oo}");
    assert_eq!(oo["issue"][0]["expression"][0], "$.receiver");
    let mut no_record = note.clone();
    no_record["careRecord"]["recordId"] = json!("NO-SUCH");
    let (status, oo) = post_note(no_record).await;
    assert_eq!(status, 422, "{oo}");
    assert_eq!(oo["issue"][0]["expression"][0], "$.careRecord");
    let mut no_goal = note;
    no_goal["goalOutcomes"][0]["goal"] = json!("g99");
    let (status, oo) = post_note(no_goal).await;
    assert_eq!(status, 422, "{oo}");
    assert_eq!(oo["issue"][0]["expression"][0], "$.goalOutcomes[0].goal");
}
