//! Cached lookups over real HTTP: wiremock stands in for the patient and organization
//! registries, the terminology server and a JWKS issuer; the gateway runs on a random loopback
//! port. Call counts come from wiremock (`expect`, `received_requests`), never from timing.

use std::time::Duration;

use reqwest::Method;
use reqwest::StatusCode;
use sektorbro::config::Config;
use serde_json::{json, Value};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{spawn_app_with, Db, TestApp};

const GET: Method = Method::GET;
const DELETE: Method = Method::DELETE;
const CPR: &str = "urn:oid:1.2.208.176.1.2";
const SOR: &str = "urn:oid:1.2.208.176.1.1";
const REGIONAL: &str = "http://sektorbro.test/fhir/StructureDefinition/regional-careplan";
const CATEGORIES: &str = "http://sektorbro.test/fhir/ValueSet/regional-careplan-categories";

fn patient(cpr: &str) -> Value {
    json!({"resourceType": "Patient", "id": format!("p{cpr}"),
        "identifier": [{"system": CPR, "value": cpr}],
        "name": [{"family": "Jensen", "given": ["Ebba"]}], "birthDate": "1945-01-01"})
}

fn searchset(resources: &[Value]) -> Value {
    let entry: Vec<Value> = resources
        .iter()
        .map(|r| json!({"resource": r, "search": {"mode": "match"}}))
        .collect();
    json!({"resourceType": "Bundle", "type": "searchset", "entry": entry})
}

/// A registry mock answering `Patient?identifier=CPR|cpr` with `response`.
fn patient_search(cpr: &str, response: ResponseTemplate) -> Mock {
    Mock::given(method("GET"))
        .and(path("/Patient"))
        .and(query_param("identifier", format!("{CPR}|{cpr}")))
        .respond_with(response)
}

/// A registry answering each `(cpr, response)`.
async fn registry_with(answers: Vec<(&str, ResponseTemplate)>) -> MockServer {
    let registry = MockServer::start().await;
    for (cpr, response) in answers {
        patient_search(cpr, response).mount(&registry).await;
    }
    registry
}

/// The registry entry of a known citizen.
fn known(cpr: &str) -> (&str, ResponseTemplate) {
    (cpr, found(&[patient(cpr)]))
}

/// 200 with a searchset of `resources`.
fn found(resources: &[Value]) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(searchset(resources))
}

/// A gateway whose patient registry is `registry`, with TTLs in seconds.
async fn gateway(registry: &MockServer, ttl: u64, negative: u64, stale: u64) -> TestApp {
    let base = registry.uri();
    spawn_app_with(Db::Sqlite, move |c: &mut Config| {
        let p = &mut c.lookups.patients;
        p.base_url = base;
        p.ttl_secs = ttl;
        p.negative_ttl_secs = negative;
        p.max_stale_secs = stale;
        p.timeout_ms = 10_000;
    })
    .await
    .expect("sqlite app")
}

/// `method /admin/{path}?{query}` on the gateway.
async fn admin(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    query: &[(&str, &str)],
) -> reqwest::Response {
    app.client
        .request(method, format!("{}/admin/{path}", app.addr))
        .query(query)
        .send()
        .await
        .expect("admin request")
}

async fn lookup_patient(app: &TestApp, cpr: &str) -> reqwest::Response {
    let identifier = format!("{CPR}|{cpr}");
    let query = [("identifier", identifier.as_str())];
    admin(app, GET, "caches/patients/lookup", &query).await
}

/// Status, first issue code and first diagnostics of an OperationOutcome answer.
async fn first_issue(res: reqwest::Response) -> (u16, String, String) {
    let status = res.status().as_u16();
    let oo: Value = res.json().await.expect("json");
    assert_eq!(oo["resourceType"], "OperationOutcome", "{oo}");
    let text = |k: &str| oo["issue"][0][k].as_str().unwrap_or_default().to_string();
    (status, text("code"), text("diagnostics"))
}

async fn calls(server: &MockServer) -> usize {
    server.received_requests().await.map_or(0, |r| r.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_identical_lookups_make_one_upstream_call() {
    let registry = MockServer::start().await;
    // Slow enough that all hundred arrive while the first call is under way.
    patient_search(
        "0101451234",
        found(&[patient("0101451234")]).set_delay(Duration::from_millis(500)),
    )
    .expect(1)
    .mount(&registry)
    .await;
    let app = gateway(&registry, 3600, 60, 3600).await;
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let client = app.client.clone();
        let url = format!(
            "{}/admin/caches/patients/lookup?identifier={CPR}|0101451234",
            app.addr
        );
        tasks.push(tokio::spawn(async move {
            let res = client.get(url).send().await.expect("request");
            assert_eq!(res.status(), StatusCode::OK);
            let body: Value = res.json().await.expect("json");
            assert_eq!(body["value"]["birthDate"], "1945-01-01");
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    registry.verify().await;
    let list: Value = admin(&app, GET, "caches", &[])
        .await
        .json()
        .await
        .expect("json");
    let p = &list["caches"][0];
    assert_eq!(p["name"], "patients");
    assert_eq!(p["upstream_calls"], 1);
    // Every lookup but the first either waited for that call or found its answer.
    let (hits, coalesced) = (
        p["hits"].as_u64().unwrap_or(0),
        p["coalesced_waits"].as_u64().unwrap_or(0),
    );
    assert_eq!(hits + coalesced, 99, "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_entry_is_fetched_again_once() {
    let registry = registry_with(vec![known("0202022222")]).await;
    // TTLs of a few seconds: back-to-back lookups stay within them even on a loaded machine.
    let app = gateway(&registry, 3, 3, 3600).await;
    for _ in 0..3 {
        assert_eq!(lookup_patient(&app, "0202022222").await.status(), 200);
    }
    assert_eq!(calls(&registry).await, 1);
    tokio::time::sleep(Duration::from_millis(3300)).await;
    for _ in 0..3 {
        assert_eq!(lookup_patient(&app, "0202022222").await.status(), 200);
    }
    assert_eq!(calls(&registry).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_is_remembered_for_the_negative_ttl() {
    let registry = registry_with(vec![("0303033333", found(&[]))]).await;
    let app = gateway(&registry, 3600, 3, 3600).await;
    for _ in 0..3 {
        let (status, _, _) = first_issue(lookup_patient(&app, "0303033333").await).await;
        assert_eq!(status, 404);
    }
    assert_eq!(calls(&registry).await, 1);
    // Shorter than the TTL of a found patient: a new registration shows up soon.
    tokio::time::sleep(Duration::from_millis(3300)).await;
    assert_eq!(lookup_patient(&app, "0303033333").await.status(), 404);
    assert_eq!(calls(&registry).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_registry_gets_stale_answers_within_the_bound_and_errors_beyond() {
    // Not from wiremock's pool: dropping it must close the port.
    let registry = MockServer::builder().start().await;
    patient_search("0404044444", found(&[patient("0404044444")]))
        .mount(&registry)
        .await;
    // Fresh for 2 s, then served stale for up to 6 s more.
    let app = gateway(&registry, 2, 2, 6).await;
    assert_eq!(lookup_patient(&app, "0404044444").await.status(), 200);

    // The registry starts failing; the TTL runs out.
    registry.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&registry)
        .await;
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let res = lookup_patient(&app, "0404044444").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()
            .get("x-sektorbro-stale-lookup")
            .and_then(|v| v.to_str().ok()),
        Some("patients")
    );
    assert!(res.headers().get("warning").is_some());
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["stale"], true);
    assert_eq!(body["value"]["birthDate"], "1945-01-01");
    // A key never fetched has nothing to fall back on: the registry's failure, as a 502.
    let (status, code, _) = first_issue(lookup_patient(&app, "0505055555").await).await;
    assert_eq!((status, code.as_str()), (502, "exception"));

    // Now the registry is gone altogether, and the answer is past TTL + max_stale.
    drop(registry);
    tokio::time::sleep(Duration::from_millis(6000)).await;
    let (status, code, text) = first_issue(lookup_patient(&app, "0404044444").await).await;
    assert_eq!((status, code.as_str()), (503, "transient"));
    assert!(text.contains("could not be reached"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_answer_that_is_not_about_the_identifier_is_refused() {
    // A registry that ignores `identifier` answers with everyone, or with someone else.
    let registry = registry_with(vec![
        (
            "1111111118",
            found(&[patient("2222222222"), patient("3333333333")]),
        ),
        ("1212121212", found(&[patient("2222222222")])),
    ])
    .await;
    let app = gateway(&registry, 3600, 60, 3600).await;
    for cpr in ["1111111118", "1212121212"] {
        let (status, _, text) = first_issue(lookup_patient(&app, cpr).await).await;
        assert_eq!(status, 502);
        assert!(text.contains("identifier asked for"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_for_one_key_does_not_hold_up_another() {
    let registry = registry_with(vec![
        (
            "0606066666",
            found(&[patient("0606066666")]).set_delay(Duration::from_secs(4)),
        ),
        known("0707077777"),
    ])
    .await;
    let app = gateway(&registry, 3600, 60, 3600).await;
    let slow = {
        let client = app.client.clone();
        let url = format!(
            "{}/admin/caches/patients/lookup?identifier={CPR}|0606066666",
            app.addr
        );
        tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) })
    };
    // Wait until the slow call has reached the registry.
    while calls(&registry).await == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(lookup_patient(&app, "0707077777").await.status(), 200);
    assert!(
        !slow.is_finished(),
        "the other key was answered only after the slow one"
    );
    assert_eq!(slow.await.expect("task").expect("response"), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidating_a_key_or_a_cache_makes_the_next_lookup_ask_again() {
    let registry = registry_with(vec![known("0808088888"), known("0909099990")]).await;
    let app = gateway(&registry, 3600, 60, 3600).await;
    lookup_patient(&app, "0808088888").await;
    lookup_patient(&app, "0909099990").await;
    assert_eq!(calls(&registry).await, 2);
    let key = format!("{CPR}|0808088888");
    let res = admin(&app, DELETE, "caches/patients", &[("key", &key)]).await;
    assert_eq!(res.status(), 200);
    let oo: Value = res.json().await.expect("json");
    assert_eq!(oo["resourceType"], "OperationOutcome");
    lookup_patient(&app, "0808088888").await;
    lookup_patient(&app, "0909099990").await;
    assert_eq!(
        calls(&registry).await,
        3,
        "only the invalidated key is fetched"
    );
    let res = admin(&app, DELETE, "caches/patients", &[]).await;
    assert_eq!(res.status(), 200);
    lookup_patient(&app, "0808088888").await;
    lookup_patient(&app, "0909099990").await;
    assert_eq!(calls(&registry).await, 5);
    let res = admin(&app, DELETE, "caches/nonsense", &[]).await;
    assert_eq!(res.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_metrics_are_on_the_metrics_endpoint() {
    let registry = registry_with(vec![known("1010101010")]).await;
    let app = gateway(&registry, 3600, 60, 3600).await;
    lookup_patient(&app, "1010101010").await;
    lookup_patient(&app, "1010101010").await;
    let text = app.metrics().await;
    for want in [
        "# TYPE sektorbro_lookup_hits_total counter",
        "sektorbro_lookup_hits_total{cache=\"patients\"} 1",
        "sektorbro_lookup_misses_total{cache=\"patients\"} 1",
        "sektorbro_lookup_coalesced_waits_total{cache=\"patients\"} 0",
        "sektorbro_lookup_stale_served_total{cache=\"patients\"} 0",
        "sektorbro_lookup_upstream_errors_total{cache=\"patients\"} 0",
        "sektorbro_lookup_entries{cache=\"patients\"} 1",
        "# TYPE sektorbro_lookup_upstream_duration_seconds histogram",
        "sektorbro_lookup_upstream_duration_seconds_count{cache=\"patients\"} 1",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organizations_come_with_their_endpoints_and_parent() {
    let registry = MockServer::start().await;
    let org = json!({"resourceType": "Organization", "id": "o1",
        "identifier": [{"system": SOR, "value": "123451000016008"}], "name": "Kardiologisk afdeling",
        "partOf": {"reference": "Organization/rsyd"}, "endpoint": [{"reference": "Endpoint/e1"}]});
    let ep = json!({"resourceType": "Endpoint", "id": "e1", "status": "active",
        "connectionType": {"code": "hl7-fhir-msg"}, "payloadType": [{"text": "x"}],
        "address": "https://rsyd.example/fhir/$process-message"});
    let region = json!({"resourceType": "Organization", "id": "rsyd", "name": "Region Syddanmark"});
    Mock::given(method("GET"))
        .and(path("/Organization"))
        .and(query_param("identifier", format!("{SOR}|123451000016008")))
        .and(query_param("_include", "Organization:endpoint"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "resourceType": "Bundle", "type": "searchset", "entry": [
                {"fullUrl": "https://reg.example/Organization/o1", "resource": org, "search": {"mode": "match"}},
                {"fullUrl": "https://reg.example/Endpoint/e1", "resource": ep, "search": {"mode": "include"}},
                {"fullUrl": "https://reg.example/Organization/rsyd", "resource": region, "search": {"mode": "include"}}]})))
        .expect(1)
        .mount(&registry)
        .await;
    let base = registry.uri();
    let app = spawn_app_with(Db::Sqlite, move |c| c.lookups.organizations.base_url = base)
        .await
        .expect("app");
    for _ in 0..2 {
        let identifier = format!("{SOR}|123451000016008");
        let query = [("identifier", identifier.as_str())];
        let res = admin(&app, GET, "caches/organizations/lookup", &query).await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.expect("json");
        let v = &body["value"];
        assert_eq!(v["resource"]["name"], "Kardiologisk afdeling");
        assert_eq!(
            v["endpoints"][0]["address"],
            "https://rsyd.example/fhir/$process-message"
        );
        assert_eq!(v["partOf"]["resource"]["name"], "Region Syddanmark");
    }
    registry.verify().await;
}

/// An issuer serving one RSA key `kid` (modulus `n`) at `/certs`, `times` times (`None`: always).
async fn serve_key(issuer: &MockServer, kid: &str, n: &str, times: Option<u64>) {
    let keys = json!({"keys": [{"kty": "RSA", "kid": kid, "n": n, "e": "AQAB"}]});
    let mock = Mock::given(method("GET"))
        .and(path("/certs"))
        .respond_with(ResponseTemplate::new(200).set_body_json(keys));
    match times {
        Some(n) => mock.up_to_n_times(n).mount(issuer).await,
        None => mock.mount(issuer).await,
    }
}

async fn jwks_gateway(issuer: &MockServer, min_refetch_secs: u64) -> TestApp {
    let url = format!("{}/certs", issuer.uri());
    spawn_app_with(Db::Sqlite, move |c| {
        c.lookups.jwks.urls = vec![url];
        c.lookups.jwks.min_refetch_secs = min_refetch_secs;
    })
    .await
    .expect("app")
}

async fn key_by_id(app: &TestApp, kid: &str) -> reqwest::Response {
    admin(app, GET, "caches/jwks/lookup", &[("kid", kid)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_id_refetches_the_key_set_once_within_the_rate_limit() {
    let issuer = MockServer::start().await;
    serve_key(&issuer, "k1", "abc", None).await;
    let app = jwks_gateway(&issuer, 3600).await;
    assert_eq!(key_by_id(&app, "k1").await.status(), 200);
    assert_eq!(key_by_id(&app, "k1").await.status(), 200);
    assert_eq!(calls(&issuer).await, 1);
    // An unknown kid: the set was fetched just now, within min_refetch, so no second call.
    assert_eq!(key_by_id(&app, "k2").await.status(), 404);
    assert_eq!(calls(&issuer).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_found_by_refetching_the_key_set() {
    let issuer = MockServer::start().await;
    serve_key(&issuer, "old", "abc", Some(1)).await;
    serve_key(&issuer, "new", "def", None).await;
    let app = jwks_gateway(&issuer, 0).await;
    assert_eq!(key_by_id(&app, "old").await.status(), 200);
    let res = key_by_id(&app, "new").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["value"]["n"], "def");
    assert_eq!(calls(&issuer).await, 2);
}

// ----- terminology --------------------------------------------------------------------------

fn regional_careplan() -> Value {
    json!({"resourceType": "CarePlan", "meta": {"profile": [REGIONAL]},
        "status": "active", "intent": "plan", "subject": {"reference": "Patient/p1"},
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "736353004"}]}]})
}

fn validate_code_answer(result: bool) -> ResponseTemplate {
    let mut parameter = vec![json!({"name": "result", "valueBoolean": result})];
    if !result {
        parameter.push(json!({"name": "message",
            "valueString": "736353004 is not in the regional care plan categories"}));
    }
    ResponseTemplate::new(200)
        .set_body_json(json!({"resourceType": "Parameters", "parameter": parameter}))
}

/// A gateway with the regional profile loaded (its category binding is to a value set the
/// gateway does not hold) and `terminology` as its terminology server.
async fn gateway_with_terminology(terminology: Option<String>, db: Db) -> Option<TestApp> {
    spawn_app_with(db, move |c| {
        c.validation.packages = vec![format!("{}/tests/data/lookups", env!("CARGO_MANIFEST_DIR"))];
        if let Some(base) = terminology {
            c.lookups.terminology.base_url = base;
        }
    })
    .await
}

async fn validate(app: &TestApp, body: &Value) -> Vec<(String, String, String)> {
    let res = app.post("CarePlan/$validate", body).await;
    assert_eq!(res.status(), 200);
    let oo: Value = res.json().await.expect("json");
    oo["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            (
                i["severity"].as_str().unwrap_or_default().to_string(),
                i["expression"][0].as_str().unwrap_or_default().to_string(),
                i["diagnostics"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn terminology_mock(result: bool) -> Mock {
    Mock::given(method("GET"))
        .and(path("/ValueSet/$validate-code"))
        .and(query_param("url", CATEGORIES))
        .and(query_param("system", "http://snomed.info/sct"))
        .and(query_param("code", "736353004"))
        .respond_with(validate_code_answer(result))
}

/// A terminology server that will be asked once and answers `result`, and a gateway using it.
async fn terminology_and_gateway(result: bool) -> (MockServer, TestApp) {
    let tx = MockServer::start().await;
    terminology_mock(result).expect(1).mount(&tx).await;
    let app = gateway_with_terminology(Some(tx.uri()), Db::Sqlite)
        .await
        .expect("app");
    (tx, app)
}

/// `$validate` of the regional care plan: no error, and the category's "could not check"
/// warning, which also says `why`.
async fn category_stays_a_warning(app: &TestApp, why: &str) {
    let issues = validate(app, &regional_careplan()).await;
    assert!(
        issues.iter().any(|(s, l, m)| s == "warning"
            && l == "CarePlan.category[0]"
            && m.contains("could not check")
            && m.contains(why)),
        "{issues:#?}"
    );
    assert!(!issues.iter().any(|(s, _, _)| s == "error"), "{issues:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_terminology_server_an_uncheckable_binding_stays_a_warning() {
    let app = gateway_with_terminology(None, Db::Sqlite)
        .await
        .expect("app");
    category_stays_a_warning(&app, "could not check").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminology_server_turns_a_non_member_into_an_error() {
    let (tx, app) = terminology_and_gateway(false).await;
    for _ in 0..2 {
        let issues = validate(&app, &regional_careplan()).await;
        let errors: Vec<_> = issues.iter().filter(|(s, _, _)| s == "error").collect();
        assert_eq!(errors.len(), 1, "{issues:#?}");
        assert_eq!(errors[0].1, "CarePlan.category[0]");
        assert!(
            errors[0].2.contains("required binding")
                && errors[0]
                    .2
                    .contains("not in the regional care plan categories"),
            "{}",
            errors[0].2
        );
        assert!(
            !issues.iter().any(|(_, _, m)| m.contains("could not check")),
            "{issues:#?}"
        );
    }
    // The second $validate was answered from the cache.
    tx.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminology_server_confirming_membership_removes_the_warning() {
    let (tx, app) = terminology_and_gateway(true).await;
    let issues = validate(&app, &regional_careplan()).await;
    assert!(
        !issues
            .iter()
            .any(|(s, l, _)| s == "error" || l.starts_with("CarePlan.category")),
        "{issues:#?}"
    );
    tx.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_terminology_server_leaves_the_warning_and_says_so() {
    // A loopback port with nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let app = gateway_with_terminology(Some(format!("http://127.0.0.1:{port}")), Db::Sqlite)
        .await
        .expect("app");
    category_stays_a_warning(&app, "could not be reached").await;
}

/// Validation on write asks the terminology server too: a non-member is refused with 422 and
/// nothing is written; a member is stored.
async fn writes_are_judged_with_the_terminology_server(db: Db) {
    let tx = MockServer::start().await;
    let Some(app) = gateway_with_terminology(Some(tx.uri()), db).await else {
        return;
    };
    terminology_mock(false).mount(&tx).await;
    let res = app.post("CarePlan", &regional_careplan()).await;
    assert_eq!(res.status(), 422);
    let oo: Value = res.json().await.expect("json");
    assert!(oo.to_string().contains("required binding"), "{oo}");

    // The server's answer changes; after invalidating the cache the write goes through.
    tx.reset().await;
    terminology_mock(true).mount(&tx).await;
    let res = admin(&app, DELETE, "caches/terminology", &[]).await;
    assert_eq!(res.status(), 200);
    let res = app.post("CarePlan", &regional_careplan()).await;
    assert_eq!(res.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_judged_with_the_terminology_server_on_sqlite() {
    writes_are_judged_with_the_terminology_server(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_judged_with_the_terminology_server_on_postgres() {
    writes_are_judged_with_the_terminology_server(Db::Postgres).await;
}

// ----- OAuth tokens ---------------------------------------------------------------------------

fn token_endpoint(expires_in: u64) -> Mock {
    use wiremock::matchers::{basic_auth, body_string_contains};
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(basic_auth("gateway", "s3cret"))
        .and(body_string_contains("grant_type=client_credentials"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "tok-1", "token_type": "Bearer",
                    "expires_in": expires_in}))
                .set_delay(Duration::from_millis(200)),
        )
}

fn credentials(server: &MockServer) -> sektorbro::lookup::oauth::ClientCredentials {
    sektorbro::lookup::oauth::ClientCredentials {
        token_url: format!("{}/token", server.uri()),
        client_id: "gateway".into(),
        client_secret: "s3cret".into(),
        scope: Some("system/*.write".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_tokens_are_shared_until_they_near_expiry() {
    let server = MockServer::start().await;
    token_endpoint(3600).expect(1).mount(&server).await;
    let lookups = std::sync::Arc::new(
        sektorbro::lookup::Lookups::from_config(&Config::defaults().lookups).expect("lookups"),
    );
    let creds = credentials(&server);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (l, c) = (lookups.clone(), creds.clone());
        tasks.push(tokio::spawn(async move { l.oauth_token(&c).await }));
    }
    for t in tasks {
        let token = t.await.expect("task").expect("token");
        assert_eq!(token.access_token, "tok-1");
    }
    lookups.oauth_token(&creds).await.expect("cached");
    server.verify().await;
    // Nothing secret in what a log line would show.
    assert!(!format!("{creds:?}").contains("s3cret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth_token_about_to_expire_or_rejected_is_fetched_anew() {
    let server = MockServer::start().await;
    // 30 s or less to live: within the refresh margin, so never reused.
    token_endpoint(30).expect(2).mount(&server).await;
    let lookups =
        sektorbro::lookup::Lookups::from_config(&Config::defaults().lookups).expect("lookups");
    let creds = credentials(&server);
    lookups.oauth_token(&creds).await.expect("token");
    lookups.oauth_token(&creds).await.expect("token");
    server.verify().await;

    let server = MockServer::start().await;
    token_endpoint(3600).expect(2).mount(&server).await;
    let creds = credentials(&server);
    lookups.oauth_token(&creds).await.expect("token");
    lookups.forget_oauth_token(&creds);
    lookups.oauth_token(&creds).await.expect("token");
    server.verify().await;

    // A failing token endpoint is an error, never an old token.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_client"})))
        .mount(&server)
        .await;
    let err = lookups
        .oauth_token(&credentials(&server))
        .await
        .expect_err("401");
    assert!(err.to_string().contains("invalid_client"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_of_systems_not_held_are_checked_by_the_terminology_server() {
    let tx = MockServer::start().await;
    for (code, result) in [("44054006", true), ("99999999", false)] {
        Mock::given(method("GET"))
            .and(path("/CodeSystem/$validate-code"))
            .and(query_param("url", "http://snomed.info/sct"))
            .and(query_param("code", code))
            .respond_with(validate_code_answer(result))
            .expect(1)
            .mount(&tx)
            .await;
    }
    let app = gateway_with_terminology(Some(tx.uri()), Db::Sqlite)
        .await
        .expect("app");
    // Condition.code has an example binding: only the code system can say what is valid.
    let condition = json!({"resourceType": "Condition", "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"},
            {"system": "http://snomed.info/sct", "code": "99999999"}]}});
    let res = app.post("Condition/$validate", &condition).await;
    let oo: Value = res.json().await.expect("json");
    let errors: Vec<&Value> = oo["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["severity"] == "error")
        .collect();
    assert_eq!(errors.len(), 1, "{oo}");
    assert_eq!(
        errors[0]["expression"][0], "Condition.code.coding[1].code",
        "{oo}"
    );
    assert!(
        errors[0]["diagnostics"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown code \"99999999\""),
        "{oo}"
    );
    tx.verify().await;
}
