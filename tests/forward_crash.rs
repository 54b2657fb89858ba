//! The gateway killed with SIGKILL in the middle of delivering hundreds of messages: after a
//! restart on the same SQLite file, the receiver has every message id, and per citizen the
//! first arrival of each message is in submission order. The lease is ten minutes and the test
//! waits at most 90 s: jobs the killed process had in flight must be taken back at start (SQLite
//! has one process per file), not after their lease expires.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use common::{dev_client, free_port, message, start, wait_ready, SOR};

async fn received(region: &MockServer) -> Vec<String> {
    region
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter_map(|b| b["id"].as_str().map(String::from))
        .collect()
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_delivery_loses_nothing_and_keeps_order_per_citizen() {
    const MESSAGES: usize = 300;
    const CITIZENS: usize = 20;
    let region = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(40)))
        .mount(&region)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("gw.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[forwarding]
workers = 1
batch_size = 4
poll_interval_ms = 50
lease_secs = 600
backoff_base_ms = 20
backoff_max_ms = 200

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

    let mut order: Vec<Vec<String>> = vec![Vec::new(); CITIZENS];
    for n in 0..MESSAGES {
        let id = format!("crash-{n:04}");
        let c = n % CITIZENS;
        let res = client
            .post(format!("http://127.0.0.1:{port}/fhir/$process-message"))
            .header("content-type", "application/fhir+json")
            .body(message(&id, &format!("01010{c:05}")).to_string())
            .send()
            .await
            .expect("submit");
        assert_eq!(
            res.status(),
            202,
            "{}",
            res.text().await.unwrap_or_default()
        );
        order[c].push(id);
    }
    // Kill it while deliveries are under way.
    let deadline = Instant::now() + Duration::from_secs(30);
    while received(&region).await.len() < 40 {
        assert!(Instant::now() < deadline, "no deliveries started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let kill = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let _ = child.wait();
    let at_kill = received(&region).await.len();
    assert!(
        at_kill < MESSAGES,
        "killed mid-delivery ({at_kill} of {MESSAGES} received)"
    );

    let mut child = start(&config, &db, port);
    wait_ready(&client, port).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let ids = loop {
        let ids = received(&region).await;
        let all = order.iter().flatten().all(|id| ids.contains(id));
        if all {
            break ids;
        }
        assert!(
            Instant::now() < deadline,
            "not everything was delivered after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status();
    let _ = child.wait();

    for expected in &order {
        let mut first_seen: Vec<&String> = Vec::new();
        for id in ids.iter().filter(|id| expected.contains(id)) {
            if !first_seen.contains(&id) {
                first_seen.push(id);
            }
        }
        let expected: Vec<&String> = expected.iter().collect();
        assert_eq!(first_seen, expected, "order per citizen");
    }
}
