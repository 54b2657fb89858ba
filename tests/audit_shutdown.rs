//! The real binary, stopped with SIGTERM right after its forwarding workers delivered: the
//! delivery attempts' audit records (queued by the worker without waiting) are in the database
//! after it exits, sealed into the hash chain. Proves the shutdown path in `app::serve`, not
//! just `Auditor::shutdown`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use common::{dev_client, free_port, message, start, wait_ready, SOR};

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
seal_interval_ms = 600000

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
    let store = sektorbro::store::open(&db, 2, "normal", 5000, &defaults.cache)
        .await
        .expect("reopen");
    let engine = sektorbro::engine::Engine::new(store, defaults.search);
    let q = engine
        .parse_criteria(
            fhir_core::fhir::ResourceType::AUDIT_EVENT,
            "subtype=forward&outcome=0",
            false,
        )
        .expect("query");
    let hits = engine
        .store()
        .search(&q, 100, &Default::default())
        .await
        .expect("search");
    assert_eq!(hits.len(), MESSAGES, "one delivered attempt per message");
    // The sealer runs every ten minutes here: only the shutdown sealed them.
    let v = engine.store().audit_verify().await.expect("verify");
    assert_eq!(v.unsealed, 0, "{v:?}");
    assert!(v.first_break.is_none(), "{v:?}");
}
