//! The real binary, stopped with SIGTERM: audit events still queued (the flush interval is ten
//! minutes, so nothing else would write them) are in the database after it exits. Proves the
//! shutdown path in `app::serve`, not just `Auditor::shutdown`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const SOR: &str = "urn:oid:1.2.208.176.1.1";
const CPR: &str = "urn:oid:1.2.208.176.1.2";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn message(id: &str, cpr: &str) -> Value {
    json!({
        "resourceType": "Bundle", "id": id, "type": "message",
        "entry": [
            {"fullUrl": "urn:uuid:0b0e1d54-8c57-4f7e-9e0e-000000000001", "resource": {
                "resourceType": "MessageHeader",
                "eventCoding": {"system": "http://sektorbro.dk/fhir/CodeSystem/message-event", "code": "discharge-summary"},
                "destination": [{"endpoint": "https://region.example/fhir",
                    "receiver": {"identifier": {"system": SOR, "value": "111"}}}],
                "source": {"endpoint": "https://gw.example/fhir"}}},
            {"fullUrl": "urn:uuid:0b0e1d54-8c57-4f7e-9e0e-000000000002", "resource": {
                "resourceType": "Patient", "identifier": [{"system": CPR, "value": cpr}]}}
        ]
    })
}

fn start(config: &std::path::Path, db: &str, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sektorbro"))
        .args(["serve", "--config", config.to_str().expect("path")])
        .env("SEKTORBRO_LISTEN", format!("127.0.0.1:{port}"))
        .env("SEKTORBRO_DATABASE_URL", db)
        .env("RUST_LOG", "warn")
        .env("SEKTORBRO_DEV_TOKEN", DEV_TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sektorbro")
}

async fn wait_ready(client: &reqwest::Client, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
        {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gateway did not become ready");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_writes_the_queued_audit_events_before_exiting() {
    const MESSAGES: usize = 5;
    let region = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&region)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("gw.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[audit]
batch_size = 10000
flush_interval_ms = 600000

[forwarding]
poll_interval_ms = 50

[[forwarding.destinations]]
id = "region"
kind = "fhir-message"
base_url = "{}"
receivers = ["{SOR}|111"]
timeout_ms = 1000
"#,
            region.uri()
        ),
    )
    .expect("config");
    let db = format!("sqlite://{}", dir.path().join("gw.db").display());
    let port = free_port();
    let client = dev_client();
    let mut child = start(&config, &db, port);
    wait_ready(&client, port).await;

    for n in 0..MESSAGES {
        let res = client
            .post(format!("http://127.0.0.1:{port}/fhir/$process-message"))
            .header("content-type", "application/fhir+json")
            .body(message(&format!("term-{n}"), &format!("010101000{n}")).to_string())
            .send()
            .await
            .expect("submit");
        assert_eq!(res.status(), 202);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in 0..MESSAGES {
        loop {
            let job: Value = client
                .get(format!("http://127.0.0.1:{port}/admin/outbox/term-{n}"))
                .send()
                .await
                .expect("admin")
                .json()
                .await
                .expect("JSON");
            if job["status"] == "delivered" {
                break;
            }
            assert!(Instant::now() < deadline, "term-{n} not delivered: {job}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    // The worker records the audit event right after the job's result.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before: Value = client
        .get(format!(
            "http://127.0.0.1:{port}/fhir/AuditEvent?subtype=forward"
        ))
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        before["total"], 0,
        "still queued, not written before the shutdown: {before}"
    );

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "did not stop after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");

    let defaults = sektorbro::config::Config::defaults();
    let store = sektorbro::store::open(&db, 2, "normal", &defaults.cache)
        .await
        .expect("reopen");
    let engine = sektorbro::engine::Engine::new(store, defaults.search);
    let q = engine
        .parse_criteria("AuditEvent", "subtype=forward&outcome=0", false)
        .expect("query");
    let hits = engine
        .store()
        .search(&q, 100, &Default::default())
        .await
        .expect("search");
    assert_eq!(hits.len(), MESSAGES, "one delivered attempt per message");
}

/// The development client's token given to the gateway under test, and a client that sends it.
const DEV_TOKEN: &str = "test-development-token-0123456789";

fn dev_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_static("Bearer test-development-token-0123456789"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}
