//! MedCom HospitalNotification messages in through `POST /fhir/$process-message` (issue #21):
//! acknowledged with MedCom acknowledgements (checked with our own validator against
//! `medcom-messaging-acknowledgement`), stored as hospital events, forwarded to a wiremock
//! destination, and shown on the citizen's care course.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::forwarding::{destination, fast, received_ids};
use crate::helpers::{spawn_app_with, Db, TestApp};
use fhir_core::validation::{has_errors, Validator};

const ACK: &str =
    "http://medcomfhir.dk/ig/acknowledgement/StructureDefinition/medcom-messaging-acknowledgement";
const SOR: &str = "urn:oid:1.2.208.176.1.1";

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("Bundle-") && n.ends_with(".json"))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The HospitalNotification examples: all of MedCom's when `../shared` is there, else the
/// copies in `fixtures/medcom/`.
fn examples() -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shared = root.join("../shared/fhir-ig/medcom-hospitalnotification/examples");
    let mut files = json_files(&shared);
    if files.is_empty() {
        eprintln!(
            "NOTE: {} is absent: only the MedCom examples in fixtures/medcom/ are tested",
            shared.display()
        );
        files = json_files(&root.join("fixtures/medcom"));
    } else {
        assert_eq!(
            files.len(),
            12,
            "HospitalNotification 3.0.2 has 12 example messages"
        );
    }
    assert!(files.len() >= 3);
    files
        .iter()
        .map(|f| serde_json::from_str(&std::fs::read_to_string(f).expect("read")).expect("JSON"))
        .collect()
}

/// The SOR code of the Organization a message's receiver reference points at.
fn receiver_sor(m: &Value) -> String {
    let r = m["entry"][0]["resource"]["destination"][0]["receiver"]["reference"]
        .as_str()
        .expect("receiver reference");
    let id = r.rsplit('/').next().expect("id");
    let org = m["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| &e["resource"])
        .find(|o| o["resourceType"] == "Organization" && o["id"] == id)
        .expect("receiver Organization");
    org["identifier"]
        .as_array()
        .expect("identifiers")
        .iter()
        .find(|i| i["system"] == SOR)
        .and_then(|i| i["value"].as_str())
        .expect("SOR")
        .to_string()
}

async fn municipality_receiver() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/fhir/$process-message"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    server
}

async fn app_for(messages: &[Value], receiver: &MockServer) -> TestApp {
    app_on(Db::Sqlite, messages, receiver)
        .await
        .expect("sqlite app")
}

/// As [`app_for`] on `db`; `None` when PostgreSQL is asked for and not configured.
async fn app_on(db: Db, messages: &[Value], receiver: &MockServer) -> Option<TestApp> {
    let mut sors: Vec<String> = messages.iter().map(receiver_sor).collect();
    sors.sort();
    sors.dedup();
    let refs: Vec<&str> = sors.iter().map(String::as_str).collect();
    let d = destination("kommune", &format!("{}/fhir", receiver.uri()), &refs);
    spawn_app_with(db, |c| {
        fast(c);
        c.forwarding.destinations = vec![d];
    })
    .await
}

/// Post a MedCom message: (HTTP status, acknowledgement code, the acknowledgement).
async fn post(app: &TestApp, m: &Value) -> (u16, String, Value) {
    let res = app.submit(m).await;
    let status = res.status().as_u16();
    let ack: Value = res.json().await.expect("JSON");
    let code = ack["entry"][0]["resource"]["response"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no acknowledgement: {ack}"))
        .to_string();
    (status, code, ack)
}

/// The acknowledgement is a valid `medcom-messaging-acknowledgement` answering `m`.
fn assert_valid_ack(ack: &Value, m: &Value) {
    let v = Validator::shared_embedded().expect("definitions");
    let issues = v.validate(ack, &[ACK.to_string()]);
    assert!(!has_errors(&issues), "{issues:#?}\n{ack:#}");
    // The check has teeth: the same acknowledgement without its answer code is refused.
    let mut without = ack.clone();
    without["entry"][0]["resource"]["response"]
        .as_object_mut()
        .expect("response")
        .remove("code");
    assert!(has_errors(&v.validate(&without, &[ACK.to_string()])));
    assert_eq!(
        ack["entry"][0]["resource"]["response"]["identifier"], m["entry"][0]["resource"]["id"],
        "the acknowledgement names the message's MessageHeader"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hospital_notification_example_is_acknowledged_ok_stored_once_and_forwarded() {
    let messages = examples();
    let receiver = municipality_receiver().await;
    let app = app_for(&messages, &receiver).await;
    for m in &messages {
        let (status, code, ack) = post(&app, m).await;
        assert_eq!((status, code.as_str()), (200, "ok"), "{}: {ack}", m["id"]);
        assert_valid_ack(&ack, m);
    }
    // A repeat is acknowledged the same and writes nothing more.
    let (status, code, again) = post(&app, &messages[0]).await;
    assert_eq!((status, code.as_str()), (200, "ok"));
    assert_valid_ack(&again, &messages[0]);
    for m in &messages {
        app.wait_status(m["id"].as_str().expect("id"), "delivered")
            .await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut got = received_ids(&receiver.received_requests().await.expect("requests"));
    got.sort();
    let mut want: Vec<String> = messages
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_string())
        .collect();
    want.sort();
    assert_eq!(got, want, "each message delivered once, as received");
}

/// Break a message the way a sender's bug would: the Encounter loses its status (1..1 in R4).
fn broken(m: &Value) -> Value {
    let mut b = m.clone();
    for e in b["entry"].as_array_mut().expect("entries") {
        if e["resource"]["resourceType"] == "Encounter" {
            e["resource"]
                .as_object_mut()
                .expect("Encounter")
                .remove("status");
        }
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_copy_of_each_example_gets_fatal_error_and_nothing_is_stored() {
    let messages = examples();
    let receiver = municipality_receiver().await;
    let app = app_for(&messages, &receiver).await;
    for m in &messages {
        let b = broken(m);
        let (status, code, ack) = post(&app, &b).await;
        assert_eq!((status, code.as_str()), (422, "fatal-error"), "{ack}");
        assert_valid_ack(&ack, &b);
        let outcome = ack["entry"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| &e["resource"])
            .find(|r| r["resourceType"] == "OperationOutcome")
            .expect("an OperationOutcome");
        assert!(
            outcome["issue"]
                .as_array()
                .expect("issues")
                .iter()
                .any(|i| i["expression"][0]
                    .as_str()
                    .is_some_and(|x| x.contains("status"))),
            "the missing status is located: {outcome}"
        );
        let job = app
            .client
            .get(format!(
                "{}/admin/outbox/{}",
                app.addr,
                m["id"].as_str().expect("id")
            ))
            .send()
            .await
            .expect("admin");
        assert_eq!(job.status(), 404, "nothing queued for {}", m["id"]);
    }
    // Nothing was stored: the intact messages are still new (and taken).
    let (status, code, _) = post(&app, &messages[0]).await;
    assert_eq!((status, code.as_str()), (200, "ok"));
    assert_eq!(
        app.admin(&format!(
            "outbox/{}",
            messages[0]["id"].as_str().expect("id")
        ))
        .await["attempts"]
            .as_i64()
            .map(|_| ()),
        Some(())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_for_a_receiver_nobody_serves_gets_fatal_error_naming_the_receiver() {
    let messages = examples();
    let receiver = municipality_receiver().await;
    let app = app_for(&[], &receiver).await;
    let (status, code, ack) = post(&app, &messages[0]).await;
    assert_eq!((status, code.as_str()), (422, "fatal-error"), "{ack}");
    assert_valid_ack(&ack, &messages[0]);
    let text = ack.to_string();
    assert!(text.contains("MSG_Receiver_Identifier_UNKNOWN"), "{text}");
    assert!(text.contains(&receiver_sor(&messages[0])), "{text}");
}

/// A database that refuses the write: `transient-error` (send it again later), and neither the
/// event nor the delivery job is written (one transaction).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_database_cannot_store_gets_transient_error_and_nothing_is_queued() {
    let messages = examples();
    let receiver = municipality_receiver().await;
    let app = app_for(&messages, &receiver).await;
    let pool = sqlx::sqlite::SqlitePool::connect(app.database_url())
        .await
        .expect("the gateway's database");
    sqlx::query(
        "CREATE TRIGGER refuse_events BEFORE INSERT ON hospital_events BEGIN SELECT RAISE(ABORT, 'disk full'); END",
    )
    .execute(&pool)
    .await
    .expect("trigger");
    let (status, code, ack) = post(&app, &messages[0]).await;
    assert_eq!((status, code.as_str()), (503, "transient-error"), "{ack}");
    assert_valid_ack(&ack, &messages[0]);
    let job = app
        .client
        .get(format!(
            "{}/admin/outbox/{}",
            app.addr,
            messages[0]["id"].as_str().expect("id")
        ))
        .send()
        .await
        .expect("admin");
    assert_eq!(job.status(), 404, "no job without its event");
    // Once the database takes writes again, the same message is taken.
    sqlx::query("DROP TRIGGER refuse_events")
        .execute(&pool)
        .await
        .expect("drop trigger");
    let (status, code, ack) = post(&app, &messages[0]).await;
    assert_eq!((status, code.as_str()), (200, "ok"), "{ack}");
}

/// Another Sektorbro message (not MedCom) keeps the plain answer of `$process-message`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sektorbro_messages_keep_their_answer_beside_medcom() {
    let receiver = municipality_receiver().await;
    let app = app_for(&[], &receiver).await;
    let m = crate::forwarding::message("plain-1", "123", "0101011234");
    let res = app.submit(&m).await;
    // No destination serves receiver 123: the plain OperationOutcome, not an acknowledgement.
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.expect("JSON");
    assert_eq!(body["resourceType"], "OperationOutcome");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_care_course_lists_its_citizens_hospital_events_and_counts_admissions() {
    care_course_hospital_events(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_care_course_lists_its_citizens_hospital_events_and_counts_admissions_postgres() {
    care_course_hospital_events(Db::Postgres).await;
}

async fn care_course_hospital_events(db: Db) {
    let messages = examples();
    let receiver = municipality_receiver().await;
    let Some(app) = app_on(db, &messages, &receiver).await else {
        return;
    };
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/fixtures/municipal/kobenhavn-rehabilitation-home-83a.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("fixture"),
    )
    .expect("JSON");
    let res = app
        .client
        .post(format!("{}/municipal/v1/care-records", app.addr))
        .header(CONTENT_TYPE, "application/json")
        .body(record.to_string())
        .send()
        .await
        .expect("post record");
    assert_eq!(res.status(), 201);
    let cpr = record["citizen"]["cpr"].as_str().expect("cpr");
    // The admission example, about this citizen, during the course (which starts 2025-04-22),
    // and its cancellation; then a second admission that stands.
    let admit = messages
        .iter()
        .find(|m| m["id"] == "a5e5b880-c087-4055-b9ec-99108695f81d")
        .expect("admission example");
    let cancel = messages
        .iter()
        .find(|m| m["id"] == "c83671a4-9584-11ec-b909-0242ac120002")
        .expect("cancellation example");
    let about = |m: &Value, id: &str| {
        let mut m = m.clone();
        m["id"] = json!(id);
        for e in m["entry"].as_array_mut().expect("entries") {
            if e["resource"]["resourceType"] == "Patient" {
                e["resource"]["identifier"][0]["value"] = json!(cpr);
            }
            if e["resource"]["resourceType"] == "Provenance" {
                let t = e["resource"]["occurredDateTime"]
                    .as_str()
                    .expect("time")
                    .replacen("2022-12", "2025-05", 1);
                e["resource"]["occurredDateTime"] = json!(t);
            }
        }
        m
    };
    for (m, id) in [
        (admit, "hn-admit-1"),
        (admit, "hn-admit-1"),
        (cancel, "hn-cancel-1"),
    ] {
        let (status, code, ack) = post(&app, &about(m, id)).await;
        assert_eq!((status, code.as_str()), (200, "ok"), "{ack}");
    }
    // A second admission with a MessageHeader of its own: a stay that stands.
    let mut second = about(admit, "hn-admit-2");
    let header = "0f6b1f7e-5d0b-4d7e-9a37-2b8f6c1d4e21";
    second["entry"][0]["resource"]["id"] = json!(header);
    second["entry"][0]["fullUrl"] = json!(format!(
        "https://medcomfhir.dk/ig/hospitalnotification/MessageHeader/{header}"
    ));
    for e in second["entry"].as_array_mut().expect("entries") {
        if e["resource"]["resourceType"] == "Provenance" {
            e["resource"]["target"][0]["reference"] = json!(format!("MessageHeader/{header}"));
            e["resource"]["occurredDateTime"] = json!("2025-06-01T08:00:00+02:00");
        }
    }
    let (status, code, ack) = post(&app, &second).await;
    assert_eq!((status, code.as_str()), (200, "ok"), "{ack}");

    let res = app
        .client
        .get(format!(
            "{}/municipal/v1/care-records/{}/hospital-events?municipality={}",
            app.addr,
            record["recordId"].as_str().expect("id"),
            record["municipality"]["code"].as_str().expect("code")
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("JSON");
    let events: Vec<(&str, &str)> = body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["event"].as_str().expect("event"),
                e["time"].as_str().expect("time"),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("admit-inpatient", "2025-05-07T12:00:02+02:00"),
            ("cancel-admit-inpatient", "2025-05-07T15:00:02+02:00"),
            ("admit-inpatient", "2025-06-01T08:00:00+02:00"),
        ],
        "{body}"
    );
    let first = &body["events"][0];
    assert_eq!(
        first["hospital"]["sor"],
        json!(format!("{SOR}|265161000016000"))
    );
    assert!(first["encounter"]
        .as_str()
        .is_some_and(|e| e.contains("/Encounter/")));
    assert_eq!(
        body["admissionsDuringCourse"], 1,
        "the cancelled admission does not count"
    );
    // Another citizen's record shows none of them.
    let res = app
        .client
        .get(format!(
            "{}/municipal/v1/care-records/no-such-record/hospital-events",
            app.addr
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 404);
}

/// Discharge notes to a `kind = "medcom"` destination leave as MedCom CareCommunication
/// messages: every one made from `fixtures/discharge/` validates with 0 errors against
/// `medcom-careCommunication-message` (CareCommunication 5.0.2) and reaches the wiremock receiver
/// once; a note MedCom cannot carry (no contact person to name as author) is refused at input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discharge_notes_to_a_medcom_destination_are_valid_care_communications() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let receiver = municipality_receiver().await;
    let notes: Vec<Value> = std::fs::read_dir(root.join("fixtures/discharge"))
        .expect("fixtures/discharge")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("JSON"))
        .collect();
    assert!(notes.len() >= 2);
    let mut d = destination(
        "medcom-kommune",
        &format!("{}/fhir", receiver.uri()),
        &notes
            .iter()
            .map(|n| n["receiver"]["value"].as_str().expect("receiver"))
            .collect::<Vec<_>>(),
    );
    d.kind = sektorbro::config::DestinationKind::Medcom;
    let app = spawn_app_with(Db::Sqlite, |c| {
        fast(c);
        c.forwarding.destinations = vec![d];
        // EAN/GLN location numbers (GS1's test range) of the municipalities and receivers.
        for (i, sor) in [
            "383011000016003", // Kolding Kommune (completed-discharged-home.json)
            "328791000016006", // the Kolding note's receiver
            "264881000016009", // the Odense note's receiver
        ]
        .iter()
        .enumerate()
        {
            c.forwarding
                .gln
                .insert(sor.to_string(), gln(&format!("57900000000{i}")));
        }
    })
    .await
    .expect("app");
    // The records the notes belong to.
    for f in std::fs::read_dir(root.join("fixtures/municipal")).expect("fixtures") {
        let p = f.expect("entry").path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let rec: Value =
            serde_json::from_str(&std::fs::read_to_string(&p).expect("read")).expect("JSON");
        if notes
            .iter()
            .any(|n| n["careRecord"]["recordId"] == rec["recordId"])
        {
            let res = app
                .client
                .post(format!("{}/municipal/v1/care-records", app.addr))
                .header(CONTENT_TYPE, "application/json")
                .body(rec.to_string())
                .send()
                .await
                .expect("record");
            assert_eq!(res.status(), 201, "{}", p.display());
        }
    }
    let v = Validator::shared_embedded().expect("definitions");
    let profile = "http://medcomfhir.dk/ig/carecommunication/StructureDefinition/medcom-careCommunication-message";
    let mut sent = Vec::new();
    for note in &notes {
        let res = app
            .client
            .post(format!("{}/municipal/v1/discharge-notes", app.addr))
            .header(CONTENT_TYPE, "application/json")
            .body(note.to_string())
            .send()
            .await
            .expect("note");
        let status = res.status().as_u16();
        let body: Value = res.json().await.expect("JSON");
        if note.get("contact").is_none() {
            assert_eq!(status, 422, "{body}");
            assert_eq!(body["issue"][0]["expression"][0], "$.contact", "{body}");
            continue;
        }
        assert_eq!(status, 202, "{body}");
        let id = body["messageId"].as_str().expect("id").to_string();
        app.wait_status(&id, "delivered").await;
        sent.push(id);
    }
    assert!(!sent.is_empty());
    let requests = receiver.received_requests().await.expect("requests");
    assert_eq!(received_ids(&requests), sent, "each note delivered once");
    for r in &requests {
        let m: Value = serde_json::from_slice(&r.body).expect("JSON");
        let issues = v.validate(&m, &[profile.to_string()]);
        assert!(!has_errors(&issues), "{issues:#?}\n{m:#}");
        assert_eq!(
            m["entry"][0]["resource"]["eventCoding"]["code"],
            "care-communication-message"
        );
        let text = m.to_string();
        assert!(
            text.contains("Opfølgningsplan"),
            "the follow-up plan is a payload"
        );
        // Kept for a run of HL7's reference validator (docs/standards.md).
        let _ = std::fs::write(
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("medcom-carecommunication.json"),
            serde_json::to_string_pretty(&m).expect("JSON"),
        );
        // The check has teeth: without its Communication's category the message is refused.
        let mut broken = m.clone();
        broken["entry"][2]["resource"]
            .as_object_mut()
            .expect("Communication")
            .remove("category");
        assert!(has_errors(&v.validate(&broken, &[profile.to_string()])));
    }
}

/// A GLN: 12 digits and GS1's modulus-10 check digit.
fn gln(digits: &str) -> String {
    let sum: u32 = digits
        .chars()
        .filter_map(|c| c.to_digit(10))
        .enumerate()
        .map(|(i, d)| if i % 2 == 0 { d } else { d * 3 })
        .sum();
    format!("{digits}{}", (10 - sum % 10) % 10)
}

/// A citizen with a Swedish personnummer, discharged to a Cosmic Link region: the message carries
/// a Patient that conforms to HL7 Sweden's `SEBasePatient` and Organizations (the region by its
/// HSA-id) that conform to `SEBaseOrganization`, checked with the embedded hl7se.fhir.base 1.1.0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swedish_citizen_reaches_cosmic_link_in_hl7_swedens_profiles() {
    use sektorbro::config::{AuthConfig, DestinationKind};
    const HSA: &str = "urn:oid:1.2.752.29.4.19";
    let idp = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": "t", "token_type": "Bearer", "expires_in": 3600}),
        ))
        .mount(&idp)
        .await;
    let region = municipality_receiver().await;
    let mut d = destination("region-skane", &format!("{}/fhir", region.uri()), &[]);
    d.kind = DestinationKind::CosmicLink;
    d.receivers = vec![format!("{HSA}|SE2321000032-1003")];
    d.auth = Some(AuthConfig {
        token_url: format!("{}/token", idp.uri()),
        client_id: "gw".into(),
        client_secret: "s3cret".into(),
        client_secret_env: String::new(),
        scope: None,
    });
    let app = spawn_app_with(Db::Sqlite, |c| {
        fast(c);
        c.forwarding.destinations = vec![d];
    })
    .await
    .expect("app");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("fixtures/municipal/completed-discharged-home.json"))
            .expect("fixture"),
    )
    .expect("JSON");
    let res = app
        .client
        .post(format!("{}/municipal/v1/care-records", app.addr))
        .header(CONTENT_TYPE, "application/json")
        .body(record.to_string())
        .send()
        .await
        .expect("record");
    assert_eq!(res.status(), 201);
    // The citizen also has a Swedish personnummer (lives in Malmö, cared for in Kolding).
    let cpr = record["citizen"]["cpr"].as_str().expect("cpr");
    let found = app
        .get_json(
            &format!("Patient?identifier=urn:oid:1.2.208.176.1.2|{cpr}"),
            200,
        )
        .await;
    let mut patient = found["entry"][0]["resource"].clone();
    let pid = patient["id"].as_str().expect("id").to_string();
    patient["identifier"]
        .as_array_mut()
        .expect("identifiers")
        .push(json!({"system": "http://electronichealth.se/identifier/personnummer", "value": "194202022382"}));
    let res = app.put(&format!("Patient/{pid}"), &patient).await;
    assert_eq!(
        res.status(),
        200,
        "{}",
        res.text().await.unwrap_or_default()
    );

    let mut note: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("fixtures/discharge/kolding-discharged-home.json"))
            .expect("note"),
    )
    .expect("JSON");
    note["receiver"] = json!({"system": HSA, "value": "SE2321000032-1003"});
    let res = app
        .client
        .post(format!("{}/municipal/v1/discharge-notes", app.addr))
        .header(CONTENT_TYPE, "application/json")
        .body(note.to_string())
        .send()
        .await
        .expect("note");
    let status = res.status().as_u16();
    let body: Value = res.json().await.expect("JSON");
    assert_eq!(status, 202, "{body}");
    app.wait_status(body["messageId"].as_str().expect("id"), "delivered")
        .await;
    let requests = region.received_requests().await.expect("requests");
    let m: Value = serde_json::from_slice(&requests[0].body).expect("JSON");
    let v = Validator::shared_embedded().expect("definitions");
    let of = |t: &str| -> Vec<Value> {
        m["entry"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| e["resource"].clone())
            .filter(|r| r["resourceType"] == t)
            .collect()
    };
    let se = "http://hl7.se/fhir/ig/base/StructureDefinition";
    let patients = of("Patient");
    assert_eq!(patients.len(), 1);
    let issues = v.validate(&patients[0], &[format!("{se}/SEBasePatient")]);
    assert!(!has_errors(&issues), "{issues:#?}");
    assert!(patients[0]["meta"]["profile"]
        .to_string()
        .contains("SEBasePatient"));
    let orgs = of("Organization");
    assert_eq!(orgs.len(), 2, "the region and the municipality");
    for o in &orgs {
        let issues = v.validate(o, &[format!("{se}/SEBaseOrganization")]);
        assert!(!has_errors(&issues), "{issues:#?}");
    }
    assert!(orgs.iter().any(|o| o["identifier"][0]["system"] == HSA));
    // The check has teeth: two names are more than SEBasePatient allows.
    let mut two = patients[0].clone();
    two["name"] = json!([{"family": "A"}, {"family": "B"}]);
    assert!(has_errors(
        &v.validate(&two, &[format!("{se}/SEBasePatient")])
    ));
}
