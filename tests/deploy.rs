//! What the people who deploy the gateway rely on, against the real `sektorbro` binary:
//! - traces reach an OTLP/HTTP receiver (wiremock on loopback), decoded here as the collector
//!   would: span names, parent links, attributes, the caller's trace continued, person numbers
//!   masked; a collector that hangs or is absent holds up no request and is counted;
//! - the deploy files (Dockerfile, deploy/compose.yaml, Prometheus and Grafana provisioning)
//!   parse and agree with each other, and every metric the Grafana dashboard queries is one the
//!   gateway serves on /metrics.
//!
//! No container engine is needed (docs/operations.md says what was and was not run).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use common::{dev_client, free_port, message, wait_ready, DEV_TOKEN, SOR};

/// A person number that must never leave in a span, and its masked form.
const CPR_VALUE: &str = "0703451234";
const CPR_MASKED: &str = "070345xxxx";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary started with `config` (TOML) on a free loopback port and a SQLite file in its own
/// folder, its standard output (the log) kept; killed when dropped.
struct Gateway {
    child: Child,
    dir: tempfile::TempDir,
    base: String,
}

impl Gateway {
    async fn start(config: &str) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("gw.toml");
        std::fs::write(&file, config).expect("config");
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_sektorbro"))
            .args(["serve", "--config", file.to_str().expect("path")])
            .env("SEKTORBRO_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "SEKTORBRO_DATABASE_URL",
                format!("sqlite://{}", dir.path().join("gw.db").display()),
            )
            .env("SEKTORBRO_DEV_TOKEN", DEV_TOKEN)
            .env_remove("RUST_LOG")
            .env_remove("SEKTORBRO_OTLP_ENDPOINT")
            .env_remove("SEKTORBRO_CONFIG")
            .current_dir(dir.path())
            .stdout(std::fs::File::create(dir.path().join("log")).expect("log file"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start sektorbro");
        let gw = Gateway {
            child,
            dir,
            base: format!("http://127.0.0.1:{port}"),
        };
        wait_ready(&dev_client(), port).await;
        gw
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).expect("log")
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// POST a FHIR message to `$process-message`.
    async fn submit(&self, client: &reqwest::Client, id: &str, cpr: &str) {
        let res = client
            .post(format!("{}/fhir/$process-message", self.base))
            .header("content-type", "application/fhir+json")
            .body(message(id, cpr).to_string())
            .send()
            .await
            .expect("submit");
        assert!(res.status().is_success(), "{}", res.status());
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A regional receiver that accepts every message.
async fn region() -> MockServer {
    let region = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"resourceType": "Bundle", "type": "message"})),
        )
        .mount(&region)
        .await;
    region
}

/// Configuration of a destination "region" at `uri` for receiver 111, polled every 50 ms.
fn destination(uri: &str) -> String {
    format!(
        r#"
[forwarding]
poll_interval_ms = 50

[[forwarding.destinations]]
id = "region"
kind = "fhir-message"
base_url = "{uri}"
receivers = ["{SOR}|111"]
timeout_ms = 2000
"#
    )
}

/// Every span of every export the receiver got.
async fn exported(receiver: &MockServer) -> (Vec<Span>, Vec<Vec<u8>>, Vec<String>) {
    let mut spans = Vec::new();
    let mut bodies = Vec::new();
    let mut services = Vec::new();
    for r in receiver.received_requests().await.unwrap_or_default() {
        if r.url.path() != "/v1/traces" {
            continue;
        }
        assert_eq!(
            r.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/x-protobuf"),
            "OTLP/HTTP with protobuf bodies"
        );
        let export =
            ExportTraceServiceRequest::decode(r.body.as_slice()).expect("an OTLP trace export");
        for rs in export.resource_spans {
            for kv in rs.resource.iter().flat_map(|r| r.attributes.iter()) {
                if kv.key == "service.name" {
                    services.push(text(kv.value.as_ref().and_then(|v| v.value.as_ref())));
                }
            }
            for ss in rs.scope_spans {
                spans.extend(ss.spans);
            }
        }
        bodies.push(r.body.clone());
    }
    (spans, bodies, services)
}

fn text(v: Option<&AnyValue>) -> String {
    match v {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| text(kv.value.as_ref().and_then(|v| v.value.as_ref())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_reach_an_otlp_receiver_with_parents_attributes_and_masked_person_numbers() {
    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&collector)
        .await;
    let region = region().await;
    let gw = Gateway::start(&format!(
        r#"
[telemetry]
otlp_endpoint = "{}"
service_name = "sektorbro-under-test"
batch_delay_ms = 100
{}"#,
        collector.uri(),
        destination(&region.uri())
    ))
    .await;
    let client = dev_client();
    let base = gw.base.clone();

    // A write (request → validation, database), sent as part of the caller's trace.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let res = client
        .post(format!("{base}/fhir/Patient"))
        .header("content-type", "application/fhir+json")
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .body(
            json!({"resourceType": "Patient",
                "identifier": [{"system": common::CPR, "value": CPR_VALUE}]})
            .to_string(),
        )
        .send()
        .await
        .expect("create");
    assert_eq!(res.status(), 201);
    // A person number in the path and in a search.
    let res = client
        .get(format!("{base}/fhir/Patient/{CPR_VALUE}"))
        .send()
        .await
        .expect("read");
    assert_eq!(res.status(), 404);
    let res = client
        .get(format!(
            "{base}/fhir/Patient?identifier={}|{CPR_VALUE}",
            common::CPR
        ))
        .send()
        .await
        .expect("search");
    assert_eq!(res.status(), 200);
    // A message forwarded to the region (the forwarding span, in the worker).
    gw.submit(&client, "traced-1", CPR_VALUE).await;

    // Wait for every kind of span (the batch goes out every 100 ms).
    let deadline = Instant::now() + Duration::from_secs(30);
    let (spans, bodies, services) = loop {
        let (spans, bodies, services) = exported(&collector).await;
        let names: BTreeSet<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        let forwarded = spans
            .iter()
            .any(|s| s.name == "forwarding" && attr(s, "forwarding.outcome").is_some());
        if ["request", "validation", "database", "forwarding"]
            .iter()
            .all(|n| names.contains(n))
            && forwarded
            && spans.iter().any(|s| {
                s.name == "request" && attr(s, "http.route").as_deref() == Some("/fhir/{type}")
            })
        {
            break (spans, bodies, services);
        }
        assert!(
            Instant::now() < deadline,
            "spans exported so far: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        services.iter().all(|s| s == "sektorbro-under-test"),
        "{services:?}"
    );
    let by_id: BTreeMap<Vec<u8>, &Span> = spans.iter().map(|s| (s.span_id.clone(), s)).collect();

    // The create: a request span in the caller's trace, its validation and database children.
    let create = spans
        .iter()
        .find(|s| {
            s.name == "request"
                && attr(s, "method").as_deref() == Some("POST")
                && attr(s, "http.route").as_deref() == Some("/fhir/{type}")
        })
        .expect("the create's request span");
    assert_eq!(
        hex(&create.trace_id),
        caller_trace,
        "the caller's trace is continued"
    );
    assert_eq!(hex(&create.parent_span_id), caller_span);
    assert_eq!(
        attr(create, "http.response.status_code").as_deref(),
        Some("201")
    );
    let validation = spans
        .iter()
        .find(|s| s.name == "validation" && s.parent_span_id == create.span_id)
        .expect("a validation span under the create");
    assert_eq!(
        attr(validation, "fhir.resource_type").as_deref(),
        Some("Patient")
    );
    assert_eq!(
        attr(validation, "validation.valid").as_deref(),
        Some("true")
    );
    let writes: Vec<String> = spans
        .iter()
        .filter(|s| s.name == "database" && s.parent_span_id == create.span_id)
        .filter_map(|s| attr(s, "db.operation.name"))
        .collect();
    assert!(
        writes.iter().any(|w| w == "write") && writes.iter().any(|w| w == "commit"),
        "database spans under the create: {writes:?}"
    );
    assert!(spans
        .iter()
        .filter(|s| s.name == "database")
        .all(|s| attr(s, "db.system.name").as_deref() == Some("sqlite")));

    // The search: its database span is a child of its request span.
    let search = spans
        .iter()
        .find(|s| {
            s.name == "request"
                && attr(s, "method").as_deref() == Some("GET")
                && attr(s, "http.route").as_deref() == Some("/fhir/{type}")
        })
        .expect("the search's request span");
    assert!(spans.iter().any(|s| s.name == "database"
        && s.parent_span_id == search.span_id
        && attr(s, "db.operation.name").as_deref() == Some("search")));
    assert_ne!(
        search.trace_id, create.trace_id,
        "a request without traceparent starts a trace"
    );

    // The delivery: a forwarding span, with its database work beneath it; the receiver was told
    // the trace.
    let forwarding = spans
        .iter()
        .find(|s| s.name == "forwarding" && attr(s, "forwarding.outcome").is_some())
        .expect("a forwarding span");
    assert_eq!(
        attr(forwarding, "forwarding.destination").as_deref(),
        Some("region")
    );
    assert_eq!(
        attr(forwarding, "forwarding.outcome").as_deref(),
        Some("delivered")
    );
    assert_eq!(
        attr(forwarding, "forwarding.message_id").as_deref(),
        Some("traced-1")
    );
    assert!(spans
        .iter()
        .any(|s| s.name == "database" && s.parent_span_id == forwarding.span_id));
    let delivered = region.received_requests().await.unwrap_or_default();
    let traceparent = delivered
        .iter()
        .find_map(|r| r.headers.get("traceparent"))
        .and_then(|v| v.to_str().ok())
        .expect("the delivery carries a traceparent")
        .to_string();
    assert_eq!(
        traceparent,
        format!(
            "00-{}-{}-01",
            hex(&forwarding.trace_id),
            hex(&forwarding.span_id)
        )
    );

    // Every parent named is a span of the export (or the caller's).
    for s in &spans {
        if !s.parent_span_id.is_empty() && hex(&s.parent_span_id) != caller_span {
            assert!(
                by_id.contains_key(&s.parent_span_id),
                "span {} has a parent that was not exported",
                s.name
            );
        }
    }

    // Person numbers: masked where they occurred (the read's path), nowhere in the clear.
    let read = spans
        .iter()
        .find(|s| {
            s.name == "request" && attr(s, "http.response.status_code").as_deref() == Some("404")
        })
        .expect("the read's request span");
    assert_eq!(
        attr(read, "path"),
        Some(format!("/fhir/Patient/{CPR_MASKED}"))
    );
    for body in &bodies {
        let text = String::from_utf8_lossy(body);
        assert!(!text.contains(CPR_VALUE), "a person number left in a span");
        assert!(!text.contains("070345-1234"));
    }
    let metrics = gw.metrics().await;
    let exported_count = sample(&metrics, "sektorbro_telemetry_spans_exported_total");
    assert!(exported_count >= 1.0, "{metrics}");
}

/// The value of a series without labels in a /metrics text.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_collector_holds_up_no_request_and_is_counted_and_logged() {
    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&collector)
        .await;
    let gw = Gateway::start(&format!(
        r#"
[telemetry]
otlp_endpoint = "{}"
batch_delay_ms = 50
export_timeout_ms = 300
max_queue = 16
"#,
        collector.uri()
    ))
    .await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let base = gw.base.clone();
    // Far more spans than the queue holds, while every export hangs: each request is answered
    // (a blocked export would stall them past the client's timeout).
    for _ in 0..200 {
        let res = client
            .get(format!("{base}/fhir/metadata"))
            .send()
            .await
            .expect("answered while the collector hangs");
        assert_eq!(res.status(), 200);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = gw.metrics().await;
        let failures = sample(&metrics, "sektorbro_telemetry_export_failures_total");
        let lost = sample(&metrics, "sektorbro_telemetry_spans_lost_total");
        if failures >= 1.0 && lost >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failed export counted:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logged = gw.log();
    assert!(
        logged.contains("span export to the OTLP collector failed"),
        "{logged}"
    );
    // Logged when it starts failing, not once per batch.
    assert_eq!(
        logged
            .matches("span export to the OTLP collector failed")
            .count(),
        1
    );
}

// ---------------------------------------------------------------------------------------------
// The deploy files.

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> yaml_rust2::Yaml {
    let docs = yaml_rust2::YamlLoader::load_from_str(&read(rel))
        .unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"));
    assert_eq!(docs.len(), 1, "{rel}: one document");
    docs.into_iter().next().expect("one")
}

/// The Dockerfile's instructions (continuation lines joined, comments dropped), upper-cased
/// keyword first.
fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        current.push_str(t.trim_end_matches('\\'));
        current.push(' ');
        if !t.ends_with('\\') {
            let (k, rest) = current
                .trim()
                .split_once(' ')
                .unwrap_or((current.trim(), ""));
            out.push((k.to_ascii_uppercase(), rest.trim().to_string()));
            current.clear();
        }
    }
    out
}

#[test]
fn the_dockerfile_is_multi_stage_non_root_with_a_volume_and_a_healthcheck() {
    let steps = instructions(&read("Dockerfile"));
    let stages: Vec<&String> = steps
        .iter()
        .filter(|(k, _)| k == "FROM")
        .map(|(_, v)| v)
        .collect();
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    let last_from = steps.iter().rposition(|(k, _)| k == "FROM").expect("FROM");
    let runtime = &steps[last_from..];
    let user = runtime
        .iter()
        .rev()
        .find(|(k, _)| k == "USER")
        .map(|(_, v)| v.clone())
        .expect("the runtime stage sets USER");
    let uid = user.split(':').next().unwrap_or_default();
    assert!(
        uid.parse::<u32>().is_ok_and(|u| u != 0),
        "a numeric, non-root user (Kubernetes' runAsNonRoot checks the number): {user}"
    );
    assert!(runtime
        .iter()
        .any(|(k, v)| k == "VOLUME" && v.contains("/var/lib/sektorbro")));
    let health = runtime
        .iter()
        .find(|(k, _)| k == "HEALTHCHECK")
        .map(|(_, v)| v.clone())
        .expect("HEALTHCHECK");
    assert!(health.contains("\"healthcheck\""), "{health}");
    // Files the build copies from the context exist; the runtime stage takes only the binary,
    // the data folder and the configuration.
    for (k, v) in &steps {
        if k != "COPY" || v.contains("--from=") {
            continue;
        }
        let parts: Vec<&str> = v
            .split_whitespace()
            .filter(|p| !p.starts_with("--"))
            .collect();
        for src in &parts[..parts.len() - 1] {
            assert!(repo().join(src).exists(), "COPY source {src} is missing");
        }
    }
    assert!(runtime
        .iter()
        .filter(|(k, _)| k == "COPY")
        .all(|(_, v)| v.contains("--from=build") || v.starts_with("deploy/")));
    // The configuration the image names parses, and makes the gateway listen beyond loopback.
    let env = runtime
        .iter()
        .find(|(k, v)| k == "ENV" && v.starts_with("SEKTORBRO_CONFIG="))
        .expect("ENV SEKTORBRO_CONFIG");
    assert_eq!(env.1, "SEKTORBRO_CONFIG=/etc/sektorbro/sektorbro.toml");
    let c = sektorbro::config::Config::load_with_env(
        Some(&repo().join("deploy/container.toml")),
        |_| None,
    )
    .expect("deploy/container.toml is a valid configuration");
    assert_eq!(c.server.listen, "0.0.0.0:8080");
    assert!(c.database.url.starts_with("sqlite:///var/lib/sektorbro/"));
    assert!(c.bulk.export_dir.starts_with("/var/lib/sektorbro/"));
    assert!(steps.iter().any(|(k, v)| k == "EXPOSE" && v == "8080"));
    // What the image's context leaves out.
    let ignore = read(".dockerignore");
    for dir in ["target", ".git", "data"] {
        assert!(
            ignore.lines().any(|l| l.trim() == dir),
            ".dockerignore lacks {dir}"
        );
    }
}

fn key<'a>(y: &'a yaml_rust2::Yaml, k: &str) -> &'a yaml_rust2::Yaml {
    &y[k]
}

#[test]
fn compose_prometheus_and_grafana_provisioning_agree() {
    let compose = yaml("deploy/compose.yaml");
    let services = key(&compose, "services").as_hash().expect("services");
    let names: BTreeSet<&str> = services.keys().filter_map(|k| k.as_str()).collect();
    for s in [
        "postgres",
        "gateway-1",
        "gateway-2",
        "prometheus",
        "grafana",
    ] {
        assert!(names.contains(s), "compose lacks {s}: {names:?}");
    }
    // Both gateways: the one image, PostgreSQL's database, ports on loopback only.
    for g in ["gateway-1", "gateway-2"] {
        let svc = &compose["services"][g];
        assert_eq!(svc["image"].as_str(), Some("sektorbro:local"), "{g}");
        assert_eq!(svc["build"]["dockerfile"].as_str(), Some("Dockerfile"));
        let url = svc["environment"]["SEKTORBRO_DATABASE_URL"]
            .as_str()
            .expect("SEKTORBRO_DATABASE_URL");
        assert!(
            url.starts_with("postgres://") && url.contains("@postgres:5432/"),
            "{url}"
        );
        assert_eq!(
            svc["depends_on"]["postgres"]["condition"].as_str(),
            Some("service_healthy")
        );
    }
    for svc in services.values() {
        for p in svc["ports"].as_vec().into_iter().flatten() {
            let p = p.as_str().expect("ports as strings");
            assert!(
                p.starts_with("127.0.0.1:"),
                "published beyond loopback: {p}"
            );
        }
        // Files mounted from the repository exist.
        for v in svc["volumes"].as_vec().into_iter().flatten() {
            let v = v.as_str().expect("volume");
            if let Some(rel) = v.strip_prefix("./") {
                let src = rel.split(':').next().unwrap_or_default();
                assert!(repo().join("deploy").join(src).exists(), "{v}");
            }
        }
    }
    // Prometheus scrapes both gateways on the port they listen on.
    let prom = yaml("deploy/prometheus.yml");
    let targets: BTreeSet<&str> = prom["scrape_configs"][0]["static_configs"][0]["targets"]
        .as_vec()
        .expect("targets")
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert_eq!(
        targets,
        BTreeSet::from(["gateway-1:8080", "gateway-2:8080"])
    );
    assert_eq!(
        prom["scrape_configs"][0]["metrics_path"].as_str(),
        Some("/metrics")
    );
    // Grafana: the data source the dashboard names is provisioned.
    let ds = yaml("deploy/grafana/provisioning/datasources/prometheus.yaml");
    let uid = ds["datasources"][0]["uid"].as_str().expect("uid");
    assert_eq!(
        ds["datasources"][0]["url"].as_str(),
        Some("http://prometheus:9090")
    );
    let dashboard: Value = serde_json::from_str(&read("deploy/grafana/sektorbro.json"))
        .expect("the dashboard is JSON");
    let mut used = BTreeSet::new();
    walk(&dashboard, &mut |k, v| {
        if k == "datasource" {
            if let Some(u) = v.get("uid").and_then(Value::as_str) {
                used.insert(u.to_string());
            }
        }
    });
    assert!(!used.is_empty());
    for u in &used {
        assert!(
            u == uid || u.starts_with("${"),
            "unknown datasource uid {u}"
        );
    }
    let provider = yaml("deploy/grafana/provisioning/dashboards/sektorbro.yaml");
    assert_eq!(
        provider["providers"][0]["options"]["path"].as_str(),
        Some("/var/lib/grafana/dashboards")
    );
}

/// Every key and value of a JSON document.
fn walk(v: &Value, f: &mut impl FnMut(&str, &Value)) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                f(k, x);
                walk(x, f);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| walk(x, f)),
        _ => {}
    }
}

/// The series names a /metrics text can have: each family's samples as written, and for each
/// `# TYPE` the names that type's samples take.
fn series_names(metrics: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in metrics.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let mut it = t.split_whitespace();
            let (Some(name), Some(kind)) = (it.next(), it.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["", "_sum", "_count"],
                _ => &[""],
            };
            for s in suffixes {
                let n = if name.ends_with(s) {
                    name.to_string()
                } else {
                    format!("{name}{s}")
                };
                names.entry(n).or_default();
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let (name, labels) = match line.split_once('{') {
                Some((n, rest)) => (n, rest.split_once('}').map_or("", |(l, _)| l)),
                None => (line.split_whitespace().next().unwrap_or_default(), ""),
            };
            let set = names.entry(name.to_string()).or_default();
            for pair in labels.split(',') {
                if let Some((k, _)) = pair.split_once('=') {
                    set.insert(k.trim().to_string());
                }
            }
        }
    }
    names
}

/// `sektorbro_*` names in a PromQL expression, with the labels it groups or matches by.
fn queried(expr: &str) -> Vec<(String, Vec<String>)> {
    let re = regex::Regex::new(r"(sektorbro_[a-z0-9_]+)(\{([^}]*)\})?").expect("regex");
    re.captures_iter(expr)
        .map(|c| {
            let labels = c
                .get(3)
                .map(|m| {
                    m.as_str()
                        .split(',')
                        .filter_map(|p| {
                            p.split(['=', '!', '~'])
                                .next()
                                .map(|k| k.trim().to_string())
                                .filter(|k| !k.is_empty())
                        })
                        .collect()
                })
                .unwrap_or_default();
            (c[1].to_string(), labels)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_is_served_on_metrics() {
    // One message refused (a dead letter, so its counter has a series), one delivered.
    let region = MockServer::start().await;
    Mock::given(method("POST"))
        .and(wiremock::matchers::body_string_contains("dash-dead"))
        .respond_with(ResponseTemplate::new(400))
        .mount(&region)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&region)
        .await;
    let gw = Gateway::start(&destination(&region.uri())).await;
    let client = dev_client();
    let base = gw.base.clone();
    // Traffic of each kind the dashboard shows, so labelled series exist.
    gw.submit(&client, "dash-dead", "0101011111").await;
    gw.submit(&client, "dash-1", "0202022222").await;
    let _ = client
        .get(format!(
            "{base}/municipal/v1/kpis?municipality=0510&from=2025-01-01&to=2026-01-01"
        ))
        .send()
        .await
        .expect("kpis");
    let _ = reqwest::get(format!("{base}/fhir/Patient"))
        .await
        .expect("refused");
    let deadline = Instant::now() + Duration::from_secs(20);
    while region.received_requests().await.unwrap_or_default().len() < 2 {
        assert!(Instant::now() < deadline, "the message was not delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let metrics = gw.metrics().await;
    let served = series_names(&metrics);

    let dashboard: Value = serde_json::from_str(&read("deploy/grafana/sektorbro.json"))
        .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    walk(&dashboard, &mut |k, v| {
        if matches!(k, "expr" | "query") {
            if let Some(e) = v.as_str() {
                exprs.push(e.to_string());
            } else if let Some(e) = v.get("query").and_then(Value::as_str) {
                exprs.push(e.to_string());
            }
        }
    });
    assert!(exprs.len() >= 10, "the dashboard's queries: {exprs:?}");
    let mut missing = Vec::new();
    for e in &exprs {
        for (name, labels) in queried(e) {
            match served.get(&name) {
                None => missing.push(format!("{name} (in {e})")),
                Some(seen) if !seen.is_empty() => {
                    for l in labels
                        .iter()
                        .filter(|l| !seen.contains(*l) && *l != "instance" && *l != "job")
                    {
                        missing.push(format!("{name} has no label {l} (in {e})"));
                    }
                }
                Some(_) => {}
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the dashboard queries what /metrics does not serve: {missing:#?}"
    );
    // The dashboard covers the four areas the brief names.
    let all = exprs.join("\n");
    for family in [
        "sektorbro_http_requests_total",
        "sektorbro_outbox_jobs",
        "sektorbro_audit_events_written_total",
        "/municipal/v1/kpis",
    ] {
        assert!(all.contains(family), "no panel queries {family}");
    }
}
