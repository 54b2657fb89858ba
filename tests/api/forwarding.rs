//! Forwarding of FHIR messages over real HTTP: wiremock stands in for the regional receivers and
//! token endpoints; the gateway runs on a random loopback port with short backoffs. Assertions
//! are on what the receivers got (wiremock's request log) and on the admin API.

use std::time::{Duration, Instant};

use sektorbro::config::{AuthConfig, Config, DestinationConfig, DestinationKind};
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::{spawn_app_with, Db, TestApp};

pub const SOR: &str = "urn:oid:1.2.208.176.1.1";
const CPR: &str = "urn:oid:1.2.208.176.1.2";

/// A valid discharge message Bundle for `receiver` (a SOR code) about citizen `cpr`.
pub fn message(id: &str, receiver: &str, cpr: &str) -> Value {
    json!({
        "resourceType": "Bundle", "id": id, "type": "message",
        "timestamp": "2026-11-23T10:00:00+01:00",
        "entry": [
            {"fullUrl": "urn:uuid:0b0e1d54-8c57-4f7e-9e0e-000000000001", "resource": {
                "resourceType": "MessageHeader",
                "eventCoding": {"system": "http://sektorbro.dk/fhir/CodeSystem/message-event", "code": "discharge-summary"},
                "destination": [{"endpoint": "https://region.example/fhir",
                    "receiver": {"identifier": {"system": SOR, "value": receiver}}}],
                "source": {"endpoint": "https://gw.example/fhir"},
                "focus": [{"reference": "urn:uuid:0b0e1d54-8c57-4f7e-9e0e-000000000002"}]}},
            {"fullUrl": "urn:uuid:0b0e1d54-8c57-4f7e-9e0e-000000000002", "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": CPR, "value": cpr}]}}
        ]
    })
}

/// Short timings so retries happen within a test.
pub fn fast(c: &mut Config) {
    let f = &mut c.forwarding;
    f.workers = 2;
    f.poll_interval_ms = 50;
    f.lease_secs = 5;
    f.backoff_base_ms = 20;
    f.backoff_max_ms = 200;
    f.breaker_failures = 3;
    f.breaker_cooldown_secs = 1;
}

pub fn destination(id: &str, base_url: &str, receivers: &[&str]) -> DestinationConfig {
    DestinationConfig {
        id: id.into(),
        kind: DestinationKind::FhirMessage,
        base_url: base_url.into(),
        receivers: receivers.iter().map(|r| format!("{SOR}|{r}")).collect(),
        timeout_ms: 2_000,
        auth: None,
        tls: None,
    }
}

async fn app_with(destinations: Vec<DestinationConfig>) -> TestApp {
    spawn_app_with(Db::Sqlite, |c| {
        fast(c);
        c.forwarding.destinations = destinations;
    })
    .await
    .expect("sqlite app")
}

impl TestApp {
    pub async fn submit(&self, m: &Value) -> reqwest::Response {
        self.post("$process-message", m).await
    }

    pub async fn admin(&self, path: &str) -> Value {
        let res = self
            .client
            .get(format!("{}/admin/{path}", self.addr))
            .send()
            .await
            .expect("admin");
        assert_eq!(res.status(), 200, "GET /admin/{path}");
        res.json().await.expect("JSON")
    }

    pub async fn admin_post(&self, path: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/admin/{path}", self.addr))
            .send()
            .await
            .expect("admin")
    }

    /// Wait (up to 20 s) until the job of `message_id` has `status`.
    pub async fn wait_status(&self, message_id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let job = self.admin(&format!("outbox/{message_id}")).await;
            if job["status"] == status {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "{message_id} never became {status}: {job}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// The message ids a receiver got, in arrival order.
pub fn received_ids(requests: &[Request]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.url.path().ends_with("/$process-message"))
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter_map(|b| b["id"].as_str().map(String::from))
        .collect()
}

fn accept() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"resourceType": "Bundle", "type": "message"}))
}

async fn receiver() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/fhir/$process-message"))
        .respond_with(accept())
        .mount(&server)
        .await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_delivered_once_with_its_id_as_idempotency_key_and_resubmission_changes_nothing(
) {
    let region = receiver().await;
    let app = app_with(vec![destination(
        "region",
        &format!("{}/fhir", region.uri()),
        &["111"],
    )])
    .await;
    let m = message("msg-1", "111", "0101011234");
    let res = app.submit(&m).await;
    assert_eq!(
        res.status(),
        202,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let job = app.wait_status("msg-1", "delivered").await;
    assert_eq!(job["destination"], "region");
    assert_eq!(job["attempts"], 1);

    let again = app.submit(&m).await;
    assert_eq!(again.status(), 200);
    let text = again.text().await.expect("body");
    assert!(
        text.contains("already accepted") && text.contains("delivered"),
        "{text}"
    );

    let requests = region.received_requests().await.expect("log");
    assert_eq!(received_ids(&requests), ["msg-1"]);
    let r = &requests[0];
    assert_eq!(
        r.headers.get("idempotency-key").map(|v| v.as_bytes()),
        Some(&b"msg-1"[..])
    );
    assert_eq!(
        r.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/fhir+json"[..])
    );
    let body: Value = serde_json::from_slice(&r.body).expect("JSON");
    assert_eq!(body, m, "the Bundle is sent as submitted");

    let metrics = app.metrics().await;
    assert!(
        metrics.contains("sektorbro_outbox_jobs{destination=\"region\",status=\"delivered\"} 1")
    );
    assert!(metrics.contains(
        "sektorbro_forward_attempts_total{destination=\"region\",outcome=\"delivered\"} 1"
    ));
    assert!(metrics.contains("sektorbro_forward_delivery_seconds_count{destination=\"region\"} 1"));
}

/// A destination id is the operator's text: in /metrics it is a label value, escaped as the text
/// format requires (`"` → `\"`, `\` → `\\`; a line feed → `\n` is shown with any collector in
/// `metrics::tests`: an id with a line feed cannot be served, it is sent in a response header),
/// so it cannot break a series or forge another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_values_are_escaped_in_metrics() {
    let region = receiver().await;
    let id = "region \"south\"\\dk\",forged=\"1";
    let app = app_with(vec![destination(
        id,
        &format!("{}/fhir", region.uri()),
        &["111"],
    )])
    .await;
    let res = app.submit(&message("esc-1", "111", "0101011234")).await;
    assert_eq!(
        res.status(),
        202,
        "{}",
        res.text().await.unwrap_or_default()
    );
    app.wait_status("esc-1", "delivered").await;
    let metrics = app.metrics().await;
    let label = r#"destination="region \"south\"\\dk\",forged=\"1""#;
    for series in [
        format!("sektorbro_outbox_jobs{{{label},status=\"delivered\"}} 1\n"),
        format!("sektorbro_forward_attempts_total{{{label},outcome=\"delivered\"}} 1\n"),
        format!("sektorbro_forward_delivery_seconds_count{{{label}}} 1\n"),
        format!("sektorbro_forward_breaker_state{{{label}}} 0\n"),
    ] {
        assert!(metrics.contains(&series), "{series} in {metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_for_an_unknown_receiver_is_refused_at_input() {
    let region = receiver().await;
    let app = app_with(vec![destination("region", &region.uri(), &["111"])]).await;
    let res = app.submit(&message("msg-x", "999", "0101011234")).await;
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.expect("JSON");
    let text = body["issue"][0]["diagnostics"].as_str().unwrap_or_default();
    assert!(
        text.contains(&format!("no destination serves receiver {SOR}|999"))
            && text.contains(&format!("configured receivers: {SOR}|111")),
        "{body}"
    );
    assert_eq!(
        body["issue"][0]["expression"][0],
        "Bundle.entry[0].resource.destination[0].receiver.identifier"
    );
    let none = app
        .client
        .get(format!("{}/admin/outbox/msg-x", app.addr))
        .send()
        .await
        .expect("admin");
    assert_eq!(none.status(), 404, "nothing was queued");

    let mut invalid = message("msg-y", "111", "0101011234");
    invalid["entry"][0]["resource"]["source"] = json!({});
    let res = app.submit(&invalid).await;
    assert_eq!(
        res.status(),
        422,
        "an invalid message is refused by the validator"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_timeouts_are_retried_until_delivered() {
    let region = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&region)
        .await;
    Mock::given(method("POST"))
        .respond_with(accept().set_delay(Duration::from_secs(5)))
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&region)
        .await;
    Mock::given(method("POST"))
        .respond_with(accept())
        .with_priority(3)
        .mount(&region)
        .await;
    let mut d = destination("region", &region.uri(), &["111"]);
    d.timeout_ms = 500;
    let app = app_with(vec![d]).await;
    assert_eq!(
        app.submit(&message("msg-r", "111", "1")).await.status(),
        202
    );
    let job = app.wait_status("msg-r", "delivered").await;
    assert_eq!(
        job["attempts"], 4,
        "two 500s, one timeout, one success: {job}"
    );
    let ids = received_ids(&region.received_requests().await.expect("log"));
    assert_eq!(ids, ["msg-r"; 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_waits_as_long_as_retry_after_says() {
    let region = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "2"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&region)
        .await;
    Mock::given(method("POST"))
        .respond_with(accept())
        .with_priority(2)
        .mount(&region)
        .await;
    let app = app_with(vec![destination("region", &region.uri(), &["111"])]).await;
    assert_eq!(
        app.submit(&message("msg-429", "111", "1")).await.status(),
        202
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        let job = app.admin("outbox/msg-429").await;
        if job["last_status"] == 429 {
            break job;
        }
        assert!(Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(first["status"], "pending");
    let next =
        chrono::DateTime::parse_from_rfc3339(first["next_attempt_at"].as_str().expect("next"))
            .expect("instant");
    let last =
        chrono::DateTime::parse_from_rfc3339(first["last_attempt_at"].as_str().expect("last"))
            .expect("instant");
    assert!(
        next - last >= chrono::Duration::milliseconds(1_900),
        "Retry-After: 2 honoured (backoff alone is at most 200 ms): {first}"
    );
    app.wait_status("msg-429", "delivered").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_message_is_a_dead_letter_that_holds_back_the_citizens_later_messages_until_retried(
) {
    let region = MockServer::start().await;
    let outcome = json!({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "invalid", "diagnostics": "unknown care unit"}]});
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(outcome.clone()))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&region)
        .await;
    Mock::given(method("POST"))
        .respond_with(accept())
        .with_priority(2)
        .mount(&region)
        .await;
    let app = app_with(vec![destination("region", &region.uri(), &["111"])]).await;
    assert_eq!(app.submit(&message("d-1", "111", "42")).await.status(), 202);
    let dead = app.wait_status("d-1", "dead").await;
    assert_eq!(dead["last_status"], 400);
    assert_eq!(
        dead["receiver_outcome"], outcome,
        "the receiver's OperationOutcome is kept"
    );
    assert!(dead["last_error"]
        .as_str()
        .unwrap_or_default()
        .contains("unknown care unit"));

    // A later message of the same citizen waits; another citizen's does not.
    assert_eq!(app.submit(&message("d-2", "111", "42")).await.status(), 202);
    assert_eq!(app.submit(&message("o-1", "111", "43")).await.status(), 202);
    app.wait_status("o-1", "delivered").await;
    let waiting = app.admin("outbox/d-2").await;
    assert_eq!(waiting["status"], "pending");
    assert_eq!(waiting["blocked_by"], "d-1");
    let list = app.admin("outbox?status=dead").await;
    assert_eq!(list["jobs"].as_array().map(Vec::len), Some(1));

    let retried = app.admin_post("outbox/d-1/retry").await;
    assert_eq!(retried.status(), 200);
    app.wait_status("d-1", "delivered").await;
    app.wait_status("d-2", "delivered").await;
    let again = app.admin_post("outbox/d-1/retry").await;
    assert_eq!(again.status(), 409, "only dead letters can be retried");

    let ids = received_ids(&region.received_requests().await.expect("log"));
    let pos = |id: &str| ids.iter().rposition(|x| x == id).expect("received");
    assert!(pos("d-1") < pos("d-2"), "in order per citizen: {ids:?}");
    assert_eq!(ids.iter().filter(|i| *i == "d-2").count(), 1);
}

/// A token endpoint issuing `token` for `expires_in` seconds, a Cosmic Link region accepting
/// only that token, and a gateway routing `receiver` there.
async fn cosmic_link(
    token: &str,
    expires_in: u64,
    receiver: &str,
) -> (MockServer, MockServer, TestApp) {
    let idp = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": token, "token_type": "Bearer", "expires_in": expires_in}),
        ))
        .mount(&idp)
        .await;
    let region = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .respond_with(accept())
        .mount(&region)
        .await;
    let mut d = destination("cosmic", &region.uri(), &[receiver]);
    d.kind = DestinationKind::CosmicLink;
    d.auth = Some(AuthConfig {
        token_url: format!("{}/token", idp.uri()),
        client_id: "gw".into(),
        client_secret: "s3cret".into(),
        client_secret_env: String::new(),
        scope: Some("system/*.write".into()),
    });
    let app = app_with(vec![d]).await;
    (idp, region, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosmic_link_uses_one_cached_token_and_gets_a_new_one_after_401() {
    let (idp, region, app) = cosmic_link("tok", 3600, "222").await;
    for n in 0..5 {
        let res = app
            .submit(&message(&format!("c-{n}"), "222", &format!("9{n}")))
            .await;
        assert_eq!(res.status(), 202);
    }
    for n in 0..5 {
        app.wait_status(&format!("c-{n}"), "delivered").await;
    }
    let tokens = idp.received_requests().await.expect("log");
    assert_eq!(tokens.len(), 1, "one token for many messages");
    let form = String::from_utf8_lossy(&tokens[0].body).to_string();
    assert!(form.contains("grant_type=client_credentials"), "{form}");

    // The region stops accepting the token: one 401, then a fresh token is fetched and used.
    region.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&region)
        .await;
    Mock::given(method("POST"))
        .and(header("authorization", "Bearer tok"))
        .respond_with(accept())
        .with_priority(2)
        .mount(&region)
        .await;
    assert_eq!(
        app.submit(&message("c-401", "222", "99")).await.status(),
        202
    );
    let job = app.wait_status("c-401", "delivered").await;
    assert_eq!(
        job["attempts"], 1,
        "the 401 was retried within the attempt: {job}"
    );
    assert_eq!(idp.received_requests().await.expect("log").len(), 2);
}

/// A token is used until shortly (30 s) before it expires, then a new one is fetched: with
/// `expires_in: 31` it lives one second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosmic_link_fetches_a_new_token_when_the_old_one_expires() {
    let (idp, _region, app) = cosmic_link("short", 31, "223").await;
    assert_eq!(app.submit(&message("e-1", "223", "81")).await.status(), 202);
    app.wait_status("e-1", "delivered").await;
    assert_eq!(idp.received_requests().await.expect("log").len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(app.submit(&message("e-2", "223", "82")).await.status(), 202);
    app.wait_status("e-2", "delivered").await;
    assert_eq!(
        idp.received_requests().await.expect("log").len(),
        2,
        "the expired token was replaced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_one_citizen_arrive_in_order_despite_failures() {
    let region = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(12)
        .with_priority(1)
        .mount(&region)
        .await;
    Mock::given(method("POST"))
        .respond_with(accept().set_delay(Duration::from_millis(5)))
        .with_priority(2)
        .mount(&region)
        .await;
    // The breaker stays closed here (it would make the oldest job the probe every time).
    let app = spawn_app_with(Db::Sqlite, |c| {
        fast(c);
        c.forwarding.breaker_failures = 1000;
        c.forwarding.max_attempts = 100;
        c.forwarding.destinations = vec![destination("region", &region.uri(), &["111"])];
    })
    .await
    .expect("sqlite app");
    let mut order: Vec<Vec<String>> = vec![Vec::new(); 4];
    for n in 0..40 {
        let id = format!("o-{n}");
        let citizen = n % 4;
        let res = app
            .submit(&message(&id, "111", &format!("c{citizen}")))
            .await;
        assert_eq!(res.status(), 202);
        order[citizen].push(id);
    }
    for ids in &order {
        for id in ids {
            app.wait_status(id, "delivered").await;
        }
    }
    let received = received_ids(&region.received_requests().await.expect("log"));
    for ids in &order {
        let mut first_seen: Vec<&String> = Vec::new();
        for r in received.iter().filter(|r| ids.contains(r)) {
            if !first_seen.contains(&r) {
                first_seen.push(r);
            }
        }
        let expected: Vec<&String> = ids.iter().collect();
        assert_eq!(first_seen, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_region_does_not_hold_up_another() {
    let dead = MockServer::builder().start().await;
    let dead_url = dead.uri();
    drop(dead); // nothing listens there any more
    let healthy = receiver().await;
    let app = app_with(vec![
        destination("dead", &dead_url, &["666"]),
        destination("healthy", &format!("{}/fhir", healthy.uri()), &["111"]),
    ])
    .await;
    for n in 0..10 {
        assert_eq!(
            app.submit(&message(&format!("x-{n}"), "666", &format!("{n}")))
                .await
                .status(),
            202
        );
    }
    for n in 0..10 {
        assert_eq!(
            app.submit(&message(&format!("h-{n}"), "111", &format!("{n}")))
                .await
                .status(),
            202
        );
    }
    for n in 0..10 {
        app.wait_status(&format!("h-{n}"), "delivered").await;
    }
    let job = app.admin("outbox/x-0").await;
    assert_eq!(job["status"], "pending");
    assert!(
        job["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("connect"),
        "{job}"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("sektorbro_forward_breaker_state{destination=\"dead\"} 1")
            || metrics.contains("sektorbro_forward_breaker_state{destination=\"dead\"} 2"),
        "the dead region's breaker is open: {metrics}"
    );
    assert!(metrics.contains("sektorbro_forward_breaker_state{destination=\"healthy\"} 0"));
}

/// Two gateways on one PostgreSQL schema share the outbox: every message is delivered, none by
/// both (leases with `FOR UPDATE SKIP LOCKED`), and each citizen's messages in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgresql_share_the_work_without_delivering_twice() {
    let region = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(accept().set_delay(Duration::from_millis(10)))
        .mount(&region)
        .await;
    let dest = destination("region", &region.uri(), &["111"]);
    let configure = |c: &mut Config| {
        fast(c);
        c.forwarding.lease_secs = 60;
        c.forwarding.batch_size = 4;
        c.forwarding.destinations = vec![dest.clone()];
    };
    let Some(a) = spawn_app_with(Db::Postgres, configure).await else {
        return;
    };
    let b = a.sibling_with(configure).await.expect("sibling");
    let mut order: Vec<Vec<String>> = vec![Vec::new(); 10];
    for n in 0..200 {
        let id = format!("pg-{n}");
        let app = if n % 2 == 0 { &a } else { &b };
        let citizen = n % 10;
        let res = app
            .submit(&message(&id, "111", &format!("c{citizen}")))
            .await;
        assert_eq!(res.status(), 202);
        order[citizen].push(id);
    }
    for id in order.iter().flatten() {
        a.wait_status(id, "delivered").await;
    }
    let received = received_ids(&region.received_requests().await.expect("log"));
    assert_eq!(received.len(), 200, "each message exactly once");
    for ids in &order {
        let got: Vec<&String> = received.iter().filter(|r| ids.contains(r)).collect();
        let expected: Vec<&String> = ids.iter().collect();
        assert_eq!(got, expected, "in order per citizen");
    }
    for app in [&a, &b] {
        let metrics = app.metrics().await;
        assert!(
            metrics.contains(
                "sektorbro_forward_attempts_total{destination=\"region\",outcome=\"delivered\"}"
            ),
            "both instances delivered some"
        );
    }
}

/// A receiver no destination lists is routed through the organization registry: to the
/// destination serving the organization it is part of (its region), or the one whose base URL is
/// its messaging endpoint; one the registry does not know is refused at input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_are_routed_through_the_organization_registry() {
    use wiremock::matchers::query_param;
    let region = receiver().await;
    let other = receiver().await;
    let registry = MockServer::start().await;
    let org = |id: &str, sor: &str, extra: Value| {
        let mut o = json!({"resourceType": "Organization", "id": id, "name": format!("Afdeling {sor}"),
            "identifier": [{"system": SOR, "value": sor}]});
        if let (Some(o), Some(e)) = (o.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        o
    };
    let answer = |entries: Vec<Value>| {
        ResponseTemplate::new(200)
            .set_body_json(json!({"resourceType": "Bundle", "type": "searchset", "entry": entries}))
    };
    // 501: part of the region whose SOR (111) the "region" destination lists.
    Mock::given(method("GET"))
        .and(path("/Organization"))
        .and(query_param("identifier", format!("{SOR}|501")))
        .respond_with(answer(vec![
            json!({"fullUrl": "https://reg.example/Organization/d501", "search": {"mode": "match"},
                "resource": org("d501", "501", json!({"partOf": {"reference": "Organization/r111"}}))}),
            json!({"fullUrl": "https://reg.example/Organization/r111", "search": {"mode": "include"},
                "resource": org("r111", "111", json!({}))}),
        ]))
        .mount(&registry)
        .await;
    // 502: its messaging endpoint is the "other" destination's base URL.
    let other_base = format!("{}/fhir", other.uri());
    Mock::given(method("GET"))
        .and(path("/Organization"))
        .and(query_param("identifier", format!("{SOR}|502")))
        .respond_with(answer(vec![
            json!({"fullUrl": "https://reg.example/Organization/d502", "search": {"mode": "match"},
                "resource": org("d502", "502", json!({"endpoint": [{"reference": "Endpoint/e502"}]}))}),
            json!({"fullUrl": "https://reg.example/Endpoint/e502", "search": {"mode": "include"},
                "resource": {"resourceType": "Endpoint", "id": "e502", "status": "active",
                    "connectionType": {"code": "hl7-fhir-msg"}, "payloadType": [{"text": "FHIR"}],
                    "address": format!("{other_base}/$process-message")}}),
        ]))
        .mount(&registry)
        .await;
    // 503: unknown to the registry.
    Mock::given(method("GET"))
        .and(path("/Organization"))
        .and(query_param("identifier", format!("{SOR}|503")))
        .respond_with(answer(vec![]))
        .mount(&registry)
        .await;
    let destinations = vec![
        destination("region", &format!("{}/fhir", region.uri()), &["111"]),
        destination("other", &other_base, &["999"]),
    ];
    let reg = registry.uri();
    let app = spawn_app_with(Db::Sqlite, move |c| {
        fast(c);
        c.forwarding.destinations = destinations;
        c.lookups.organizations.base_url = reg;
    })
    .await
    .expect("app");
    assert_eq!(
        app.submit(&message("r-501", "501", "11")).await.status(),
        202
    );
    assert_eq!(
        app.submit(&message("r-502", "502", "12")).await.status(),
        202
    );
    assert_eq!(
        app.wait_status("r-501", "delivered").await["destination"],
        "region"
    );
    assert_eq!(
        app.wait_status("r-502", "delivered").await["destination"],
        "other"
    );
    assert_eq!(
        received_ids(&region.received_requests().await.expect("log")),
        ["r-501"]
    );
    assert_eq!(
        received_ids(&other.received_requests().await.expect("log")),
        ["r-502"]
    );
    let res = app.submit(&message("r-503", "503", "13")).await;
    assert_eq!(res.status(), 422);
    let oo: Value = res.json().await.expect("json");
    assert!(
        oo.to_string()
            .contains("not known to the organization registry"),
        "{oo}"
    );
}
