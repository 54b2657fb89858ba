//! Every delivery attempt of a forwarded message is an AuditEvent (DICOM Export, subtype
//! `forward`) in the gateway's database: a retry, then the delivery; a refusal, a dead letter.
//! Read here through `/fhir/AuditEvent` (admin-only once authorization arrives).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::forwarding::{destination, fast, message};
use crate::helpers::{spawn_app_with, Db, TestApp};

async fn app(db: Db, region: &MockServer) -> Option<TestApp> {
    spawn_app_with(db, |c| {
        fast(c);
        c.forwarding.destinations = vec![destination("region", &region.uri(), &["111"])];
    })
    .await
}

/// The AuditEvents `query` finds, once there are `n` of them (waits up to 10 s).
async fn audit_events(app: &TestApp, query: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let bundle = app.get_json(&format!("AuditEvent?{query}"), 200).await;
        let found: Vec<Value> = bundle["entry"]
            .as_array()
            .map(|es| es.iter().map(|e| e["resource"].clone()).collect())
            .unwrap_or_default();
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{query}: {} of {n} AuditEvents",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn outcomes(events: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = events
        .iter()
        .map(|e| e["outcome"].as_str().unwrap_or_default().to_string())
        .collect();
    v.sort();
    v
}

async fn a_retried_delivery_is_two_audit_events(db: Db) {
    let region = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&region)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"resourceType": "Bundle", "type": "message"})),
        )
        .with_priority(2)
        .mount(&region)
        .await;
    let Some(app) = app(db, &region).await else {
        return;
    };
    assert_eq!(
        app.submit(&message("audit-1", "111", "0101011234"))
            .await
            .status(),
        202
    );
    app.wait_status("audit-1", "delivered").await;
    let events = audit_events(&app, "subtype=forward", 2).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(outcomes(&events), ["0", "4"], "delivered, and a retry");
    for e in &events {
        assert_eq!(e["type"]["code"], "110106");
        assert_eq!(e["entity"][0]["what"]["identifier"]["value"], "audit-1");
        assert_eq!(
            e["entity"][1]["what"]["identifier"]["value"], "0101011234",
            "the citizen, unmasked"
        );
        assert_eq!(
            e["agent"][1]["network"]["address"],
            format!("{}/$process-message", region.uri())
        );
    }
    let retry = events.iter().find(|e| e["outcome"] == "4").expect("retry");
    assert!(
        retry["outcomeDesc"]
            .as_str()
            .is_some_and(|d| d.starts_with("retry (HTTP 503)")),
        "{retry}"
    );
    // The two delivery attempts, and the HTTP requests of this test (each audited too).
    let written = app.metric("sektorbro_audit_events_written_total").await;
    assert!(written >= 2.0, "{written} audit events written");
}

async fn a_refused_message_is_a_dead_letter_audited_as_a_serious_failure(db: Db) {
    let region = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400))
        .mount(&region)
        .await;
    let Some(app) = app(db, &region).await else {
        return;
    };
    assert_eq!(
        app.submit(&message("audit-2", "111", "0202021234"))
            .await
            .status(),
        202
    );
    app.wait_status("audit-2", "dead").await;
    let events = audit_events(&app, "subtype=forward&outcome=8", 1).await;
    assert_eq!(events.len(), 1);
    assert!(events[0]["outcomeDesc"]
        .as_str()
        .is_some_and(|d| d.starts_with("dead letter (HTTP 400)")));
}

mod a_retried_delivery_is_two_audit_events_on {
    use crate::helpers::Db;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::a_retried_delivery_is_two_audit_events(Db::Sqlite).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_retried_delivery_is_two_audit_events(Db::Postgres).await;
    }
}

mod a_refused_message_is_a_dead_letter_on {
    use crate::helpers::Db;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::a_refused_message_is_a_dead_letter_audited_as_a_serious_failure(Db::Sqlite).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_refused_message_is_a_dead_letter_audited_as_a_serious_failure(Db::Postgres).await;
    }
}

/// "Who saw this citizen's data": a read of a citizen's CarePlan (a plain read, a version read,
/// a conditional read answered 304) and a write of it carry the citizen, so
/// `AuditEvent?patient=` finds them as it finds reads of the Patient itself. A resource about
/// nobody carries none.
async fn reads_and_writes_of_a_citizens_resources_are_found_by_patient(db: Db) {
    let Some(app) = crate::helpers::spawn_app(db).await else {
        return;
    };
    let patient = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Holm"}]}))
        .await;
    let pid = patient["id"].as_str().expect("patient id").to_string();
    let mut plan = app
        .create(
            &json!({"resourceType": "CarePlan", "status": "active", "intent": "plan",
            "subject": {"reference": format!("Patient/{pid}")}}),
        )
        .await;
    let plan_id = plan["id"].as_str().expect("plan id").to_string();
    let org = app
        .create(&json!({"resourceType": "Organization", "name": "Hjemmeplejen"}))
        .await;
    let org_id = org["id"].as_str().expect("org id");
    app.get_json(&format!("CarePlan/{plan_id}"), 200).await;
    app.get_json(&format!("CarePlan/{plan_id}/_history/1"), 200)
        .await;
    let not_modified = app
        .client
        .get(app.url(&format!("CarePlan/{plan_id}")))
        .header("If-None-Match", "W/\"1\"")
        .send()
        .await
        .expect("conditional read");
    assert_eq!(not_modified.status(), 304);
    plan["status"] = json!("completed");
    let updated = app.put(&format!("CarePlan/{plan_id}"), &plan).await;
    assert_eq!(updated.status(), 200);
    app.get_json(&format!("Organization/{org_id}"), 200).await;

    // The Patient's create, the CarePlan's create, three reads and the update.
    let events = audit_events(&app, &format!("patient=Patient/{pid}"), 6).await;
    let about_the_plan: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["entity"].as_array().into_iter().flatten().any(|en| {
                en["what"]["reference"]
                    .as_str()
                    .is_some_and(|r| r.starts_with(&format!("CarePlan/{plan_id}")))
            })
        })
        .collect();
    let mut subtypes: Vec<String> = about_the_plan
        .iter()
        .filter_map(|e| e["subtype"][0]["code"].as_str().map(str::to_string))
        .collect();
    subtypes.sort();
    assert_eq!(
        subtypes,
        ["create", "read", "read", "update", "vread"],
        "{about_the_plan:#?}"
    );
    // A transaction about one citizen (a new Patient and their CarePlan, by urn:uuid) carries
    // that citizen; one about two carries none.
    let one = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:6f1c7a52-3f0e-4c1e-9d0a-1b2c3d4e5f60",
         "resource": {"resourceType": "Patient", "name": [{"family": "Krogh"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "CarePlan", "status": "active", "intent": "plan",
            "subject": {"reference": "urn:uuid:6f1c7a52-3f0e-4c1e-9d0a-1b2c3d4e5f60"}},
         "request": {"method": "POST", "url": "CarePlan"}}]});
    let answer = app.post("", &one).await;
    assert_eq!(answer.status(), 200);
    let answer: Value = answer.json().await.expect("transaction-response");
    let krogh = answer["entry"][0]["response"]["location"]
        .as_str()
        .and_then(|l| l.split('/').nth(1))
        .expect("the Patient's location")
        .to_string();
    let found = audit_events(
        &app,
        &format!("patient=Patient/{krogh}&subtype=transaction"),
        1,
    )
    .await;
    assert_eq!(found.len(), 1);
    let two = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Goal", "lifecycleStatus": "active",
            "description": {"text": "a"}, "subject": {"reference": format!("Patient/{pid}")}},
         "request": {"method": "POST", "url": "Goal"}},
        {"resource": {"resourceType": "Goal", "lifecycleStatus": "active",
            "description": {"text": "b"}, "subject": {"reference": format!("Patient/{krogh}")}},
         "request": {"method": "POST", "url": "Goal"}}]});
    assert_eq!(app.post("", &two).await.status(), 200);
    let all = audit_events(&app, "subtype=transaction", 2).await;
    assert_eq!(all.len(), 2, "{all:#?}");
    let about = |e: &Value, p: &str| {
        e["entity"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|en| en["what"]["reference"].as_str() == Some(format!("Patient/{p}").as_str()))
    };
    assert_eq!(
        all.iter()
            .filter(|e| about(e, &pid) || about(e, &krogh))
            .count(),
        1,
        "only the one-citizen transaction names a citizen: {all:#?}"
    );
    let org_reads = audit_events(
        &app,
        &format!("entity=Organization/{org_id}&subtype=read"),
        1,
    )
    .await;
    assert_eq!(org_reads.len(), 1);
    let entities = org_reads[0]["entity"].as_array().expect("entities");
    assert!(
        !entities.iter().any(|en| en["what"]["reference"]
            .as_str()
            .is_some_and(|r| r.starts_with("Patient/"))),
        "an Organization's read names no citizen: {entities:#?}"
    );
}

mod reads_and_writes_of_a_citizens_resources_are_found_by_patient_on {
    use crate::helpers::Db;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::reads_and_writes_of_a_citizens_resources_are_found_by_patient(Db::Sqlite).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::reads_and_writes_of_a_citizens_resources_are_found_by_patient(Db::Postgres).await;
    }
}
