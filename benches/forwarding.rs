//! Forwarding load run: a gateway on SQLite (in this process, real HTTP on loopback) and a
//! healthy local receiver (actix-web, answering 200 at once and noting when each message
//! arrived). N messages for many citizens are posted to `$process-message` by C concurrent
//! clients; reported: delivery throughput (first submit to last arrival) and the p50/p99 of
//! submit → arrival. `cargo bench --bench forwarding [-- N C]`; figures in docs/forwarding.md.
//!
//! `cargo bench --bench forwarding -- N C notes` runs the municipal path end to end instead:
//! 200 care records are stored first, then N discharge notes for them are posted to
//! `/municipal/v1/discharge-notes` (checked against the record, message built with its
//! Composition, validated, stored with the job) and the latency is note → arrival.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use sektorbro::config::{Config, DestinationConfig, DestinationKind};
use serde_json::{json, Value};

const SOR: &str = "urn:oid:1.2.208.176.1.1";

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

fn message(id: &str, citizen: usize) -> Value {
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
                "resourceType": "Patient",
                "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": format!("{citizen:010}")}]}}
        ]
    })
}

async fn receive(arrivals: web::Data<Arrivals>, body: web::Bytes) -> HttpResponse {
    let now = Instant::now();
    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
        if let (Some(id), Ok(mut m)) = (v["id"].as_str(), arrivals.lock()) {
            m.entry(id.to_string()).or_insert(now);
        }
    }
    HttpResponse::Ok().finish()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(5_000);
    let clients = args.get(1).copied().unwrap_or(32);
    let notes = std::env::args().any(|a| a == "notes");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(n, clients, notes));
}

fn fixture(rel: &str) -> Value {
    let p = format!("{}/fixtures/{rel}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(p).expect("fixture")).expect("JSON")
}

/// Care record `c` (a copy of a fixture under another record id and CPR).
fn record(template: &Value, c: usize) -> Value {
    let mut r = template.clone();
    r["recordId"] = json!(format!("BENCH-{c}"));
    r["citizen"]["cpr"] = json!(format!("070345{:04}", c % 10_000));
    r
}

/// Discharge note `i` for record `i % records`.
fn note(template: &Value, i: usize, records: usize) -> Value {
    let mut n = template.clone();
    n["noteId"] = json!(format!("N-{i}"));
    n["careRecord"]["recordId"] = json!(format!("BENCH-{}", i % records));
    n
}

async fn run(n: usize, clients: usize, notes: bool) {
    let arrivals: Arrivals = Arc::default();
    let data = web::Data::new(arrivals.clone());
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let receiver_port = listener.local_addr().expect("addr").port();
    let receiver = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(1 << 20))
            .route("/fhir/$process-message", web::post().to(receive))
    })
    .workers(1)
    .listen(listener)
    .expect("listen")
    .run();
    tokio::spawn(receiver);

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::load_with_env(None, |k| match k {
        "SEKTORBRO_DATABASE_URL" => Some(format!(
            "sqlite://{}",
            dir.path().join("bench.db").display()
        )),
        _ => None,
    })
    .expect("config");
    config.server.workers = 2;
    config.log.filter = "warn".into();
    config.forwarding.poll_interval_ms = 100;
    // One load generator on one address: the per-client rate limit would measure itself.
    config.limits.rate_per_second = 0.0;
    config.forwarding.destinations = vec![DestinationConfig {
        id: "region".into(),
        kind: DestinationKind::FhirMessage,
        base_url: format!("http://127.0.0.1:{receiver_port}/fhir"),
        receivers: vec![format!("{SOR}|111"), format!("{SOR}|328791000016006")],
        timeout_ms: 5_000,
        auth: None,
        tls: None,
    }];
    let state = sektorbro::app::build_state(config).await.expect("state");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = sektorbro::app::http_server(state, listener).expect("server");
    tokio::spawn(server);
    let url = if notes {
        format!("http://127.0.0.1:{port}/municipal/v1/discharge-notes")
    } else {
        format!("http://127.0.0.1:{port}/fhir/$process-message")
    };
    const RECORDS: usize = 200;
    let note_template = fixture("discharge/kolding-discharged-home.json");
    if notes {
        let template = fixture("municipal/completed-discharged-home.json");
        let c = reqwest::Client::new();
        for r in 0..RECORDS {
            let res = c
                .post(format!("http://127.0.0.1:{port}/municipal/v1/care-records"))
                .header("content-type", "application/json")
                .body(record(&template, r).to_string())
                .send()
                .await
                .expect("record");
            assert_eq!(
                res.status(),
                201,
                "{}",
                res.text().await.unwrap_or_default()
            );
        }
    }

    let client = reqwest::Client::new();
    let submitted: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, url, submitted, next, note_template) = (
            client.clone(),
            url.clone(),
            submitted.clone(),
            next.clone(),
            note_template.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let mut id = format!("bench-{i:07}");
                let body = if notes {
                    note(&note_template, i, RECORDS).to_string()
                } else {
                    message(&id, i % 2_000).to_string()
                };
                let t = Instant::now();
                let res = client
                    .post(&url)
                    .header("content-type", "application/fhir+json")
                    .body(body)
                    .send()
                    .await
                    .expect("submit");
                assert_eq!(res.status(), 202);
                if notes {
                    let v: Value = res.json().await.expect("answer");
                    id = v["messageId"].as_str().expect("message id").to_string();
                }
                if let Ok(mut m) = submitted.lock() {
                    m.insert(id, t);
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("client");
    }
    let submit_secs = start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(300);
    while arrivals.lock().map(|m| m.len()).unwrap_or(0) < n {
        assert!(Instant::now() < deadline, "not all delivered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let arrivals = arrivals.lock().expect("arrivals").clone();
    let submitted = submitted.lock().expect("submitted").clone();
    let last = arrivals.values().max().copied().unwrap_or(start);
    let mut latencies: Vec<Duration> = submitted
        .iter()
        .filter_map(|(id, t)| arrivals.get(id).map(|a| a.saturating_duration_since(*t)))
        .collect();
    latencies.sort();
    let total = last.duration_since(start).as_secs_f64();
    println!(
        "forwarding ({}): {n} messages, {clients} clients: submitted in {submit_secs:.2} s ({:.0}/s), all delivered in {total:.2} s ({:.0} msg/s); submit->delivered p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        if notes { "discharge notes" } else { "$process-message" },
        n as f64 / submit_secs,
        n as f64 / total,
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        percentile(&latencies, 1.0).as_secs_f64() * 1e3,
    );
}
