//! Issue 20's tenancy and origin findings, each as the attack that found it: forwarding headers
//! steering links and the audit trail, a message id shared across tenants, an Organization
//! squatting on another tenant's SOR code, and a missing scope answered as a broken record.

use std::time::{Duration, Instant};

use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{spawn_app_with, Db, TestApp, DEV_TOKEN};
use crate::tokens::{token, HADERSLEV, KOLDING};

const ALL: &str = "system/*.cruds";

/// POST `body` to `path` (under `/fhir` unless it starts with `/`) as `tok`, with `headers`.
async fn post_as(
    app: &TestApp,
    path: &str,
    tok: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let url = if path.starts_with('/') {
        format!("{}{path}", app.addr)
    } else {
        format!("{}/{path}", app.fhir)
    };
    let ct = if path.starts_with("/municipal") {
        "application/json"
    } else {
        "application/fhir+json"
    };
    let mut req = reqwest::Client::new()
        .post(url)
        .bearer_auth(tok)
        .header(CONTENT_TYPE, ct)
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request")
}

async fn get_as(app: &TestApp, path: &str, tok: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let url = if path.starts_with('/') {
        format!("{}{path}", app.addr)
    } else {
        format!("{}/{path}", app.fhir)
    };
    let mut req = reqwest::Client::new().get(url).bearer_auth(tok);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The AuditEvents `query` finds once there is at least one (waits up to 10 s).
async fn audit_events(app: &TestApp, query: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, page) = get_as(app, &format!("AuditEvent?{query}"), DEV_TOKEN, &[]).await;
        assert_eq!(status, 200, "{page}");
        let found: Vec<Value> = page["entry"]
            .as_array()
            .map(|es| es.iter().map(|e| e["resource"].clone()).collect())
            .unwrap_or_default();
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const FORGED: &[(&str, &str)] = &[
    ("x-forwarded-host", "x/fhir/Patient/decoy-audit"),
    ("x-forwarded-proto", "javascript"),
    ("x-forwarded-for", "203.0.113.66"),
    (
        "forwarded",
        "for=203.0.113.67;host=evil2.example;proto=javascript",
    ),
];

/// With no trusted proxy (the default), forwarding headers change neither `Location`, nor
/// paging links, nor the audit trail's entity or address.
async fn forwarding_headers_from_an_untrusted_peer_steer_nothing(db: Db) {
    let Some(app) = spawn_app_with(db, |_| {}).await else {
        return;
    };
    let res = post_as(
        &app,
        "Patient",
        DEV_TOKEN,
        &json!({"resourceType": "Patient", "active": true}),
        FORGED,
    )
    .await;
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    let created: Value = res.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        location,
        format!("{}/Patient/{id}/_history/1", app.fhir),
        "Location is built on the connection's own host"
    );
    let (status, page) = get_as(&app, "Patient?_count=1", DEV_TOKEN, FORGED).await;
    assert_eq!(status, 200);
    for link in page["link"].as_array().unwrap() {
        let url = link["url"].as_str().unwrap();
        assert!(url.starts_with(&app.fhir), "{url}");
    }
    let events = audit_events(&app, &format!("entity=Patient/{id}/_history/1")).await;
    assert_eq!(events.len(), 1, "the write is audited under what it stored");
    let addresses: Vec<&str> = events[0]["agent"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["network"]["address"].as_str())
        .collect();
    assert!(addresses.contains(&"127.0.0.1"), "{addresses:?}");
    assert!(audit_events(&app, "entity=Patient/decoy-audit")
        .await
        .is_empty());
}

/// Behind a configured proxy, its well-formed claims are believed and its malformed ones are
/// ignored; the audit entity still names the stored resource, and the development token (a
/// loopback-only credential) is refused for a client the proxy relays from outside.
async fn a_trusted_proxy_is_believed_within_the_grammar(db: Db) {
    let Some(app) = spawn_app_with(db, |c| {
        c.server.trusted_proxies =
            sektorbro::config::TrustedProxies::parse(&["127.0.0.0/8"]).unwrap();
    })
    .await
    else {
        return;
    };
    let patient = json!({"resourceType": "Patient", "active": true});
    let proxied = [
        ("x-forwarded-host", "gw.example.dk"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-for", "127.0.0.1"),
    ];
    let res = post_as(&app, "Patient", DEV_TOKEN, &patient, &proxied).await;
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with("https://gw.example.dk/fhir/Patient/"),
        "{location}"
    );
    let res = post_as(&app, "Patient", DEV_TOKEN, &patient, FORGED).await;
    // The proxy relays 203.0.113.66: not loopback, so no development token for it.
    assert_eq!(res.status(), 401);
    let forged_but_local = [
        ("x-forwarded-host", "x/fhir/Patient/decoy-audit"),
        ("x-forwarded-proto", "javascript"),
    ];
    let res = post_as(&app, "Patient", DEV_TOKEN, &patient, &forged_but_local).await;
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    let created: Value = res.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(location, format!("{}/Patient/{id}/_history/1", app.fhir));
    // A token client relayed from outside is audited under the address the proxy gave.
    let res = post_as(
        &app,
        "Patient",
        &token("kolding", ALL),
        &patient,
        &[("x-forwarded-for", "198.51.100.23")],
    )
    .await;
    assert_eq!(res.status(), 201);
    let events = audit_events(&app, "address=198.51.100.23").await;
    assert!(
        !events.is_empty(),
        "audited under the relayed client's address"
    );
    let refused = audit_events(&app, "address=203.0.113.66").await;
    assert!(!refused.is_empty(), "the refusal names the relayed address");
}

/// Two tenants using the same `Bundle.id` each have their own message: B's is queued and
/// delivered, and B learns nothing of A's.
async fn message_ids_are_scoped_to_their_sender(db: Db) {
    let region = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"resourceType": "Bundle", "type": "message"})),
        )
        .mount(&region)
        .await;
    let uri = region.uri();
    let Some(app) = spawn_app_with(db, move |c| {
        crate::forwarding::fast(c);
        c.forwarding.destinations = vec![crate::forwarding::destination("region", &uri, &["111"])];
    })
    .await
    else {
        return;
    };
    let kolding = token("kolding", ALL);
    let haderslev = token("haderslev", ALL);
    let a = crate::forwarding::message("shared-id", "111", "0101011234");
    let b = crate::forwarding::message("shared-id", "111", "0202022345");
    let res = post_as(&app, "$process-message", &kolding, &a, &[]).await;
    assert_eq!(res.status(), 202);
    let res = post_as(&app, "$process-message", &haderslev, &b, &[]).await;
    assert_eq!(res.status(), 202, "B's message is its own, not A's");
    let text = res.text().await.unwrap();
    assert!(text.contains("accepted for delivery"), "{text}");
    // A's repeat is idempotent (200), and so is B's.
    let res = post_as(&app, "$process-message", &kolding, &a, &[]).await;
    assert_eq!(res.status(), 200);
    let res = post_as(&app, "$process-message", &haderslev, &b, &[]).await;
    assert_eq!(res.status(), 200);
    // Both were delivered, each with its own citizen.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = region.received_requests().await.unwrap_or_default();
        let cprs: Vec<String> = got
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .filter(|b| b["id"] == "shared-id")
            .filter_map(|b| {
                b["entry"][1]["resource"]["identifier"][0]["value"]
                    .as_str()
                    .map(String::from)
            })
            .collect();
        if cprs.len() >= 2 {
            assert!(cprs.contains(&"0101011234".to_string()), "{cprs:?}");
            assert!(cprs.contains(&"0202022345".to_string()), "{cprs:?}");
            break;
        }
        assert!(Instant::now() < deadline, "delivered: {cprs:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The admin API tells the two apart.
    for sender in [KOLDING, HADERSLEV] {
        let (status, job) = get_as(
            &app,
            &format!("/admin/outbox/shared-id?sender={}", urlencode(sender)),
            DEV_TOKEN,
            &[],
        )
        .await;
        assert_eq!(status, 200, "{job}");
        assert_eq!(job["sender"], sender);
    }
}

fn urlencode(s: &str) -> String {
    s.replace(':', "%3A").replace('|', "%7C")
}

fn kolding_record() -> Value {
    let path = format!(
        "{}/fixtures/municipal/completed-discharged-home.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON")
}

/// Another tenant cannot write an Organization claiming to be Kolding (403 naming the rule), and
/// whatever directory resources others hold with Kolding's SOR code, Kolding's conditional
/// creates and care-record posts match only its own.
async fn an_organization_cannot_squat_on_another_tenants_identifier(db: Db) {
    let Some(app) = spawn_app_with(db, |_| {}).await else {
        return;
    };
    let kolding = token("kolding", ALL);
    let haderslev = token("haderslev", ALL);
    let (sor, code) = KOLDING.split_once('|').unwrap();
    let squat = json!({"resourceType": "Organization", "name": "Not Kolding",
        "identifier": [{"system": sor, "value": code}]});
    let res = post_as(&app, "Organization", &haderslev, &squat, &[]).await;
    assert_eq!(res.status(), 403);
    let oo: Value = res.json().await.unwrap();
    let said = oo["issue"][0]["diagnostics"].as_str().unwrap_or_default();
    assert!(
        said.contains(KOLDING) && said.contains("acting for"),
        "{oo}"
    );
    assert_eq!(
        oo["issue"][0]["expression"][0],
        "Organization.identifier[0]"
    );
    // Nor in a transaction, nor by PUT.
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": squat, "request": {"method": "PUT", "url": "Organization/squat-1"}}]});
    let res = post_as(&app, "", &haderslev, &tx, &[]).await;
    assert_eq!(res.status(), 403);
    // Kolding may, and so may an administrator.
    let res = post_as(
        &app,
        "/municipal/v1/care-records",
        &kolding,
        &kolding_record(),
        &[],
    )
    .await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let res = post_as(&app, "Organization", DEV_TOKEN, &squat, &[]).await;
    assert_eq!(res.status(), 201);
    // A directory resource of someone else's with Kolding's code (an administrator's here; a
    // squatter's before this rule) is never matched for Kolding: its posts keep working.
    let res = post_as(
        &app,
        "/municipal/v1/care-records",
        &kolding,
        &kolding_record(),
        &[],
    )
    .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let res = reqwest::Client::new()
        .post(format!("{}/Organization", app.fhir))
        .bearer_auth(&kolding)
        .header(CONTENT_TYPE, "application/fhir+json")
        .header("If-None-Exist", format!("identifier={KOLDING}"))
        .body(squat.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "matches Kolding's own Organization");
    // The hospital a record names is not Haderslev's to take over either: Haderslev's copy of
    // a non-tenant's Organization is its own, and Kolding's record does not match it.
    let hospital = json!({"resourceType": "Organization", "name": "Junk",
        "identifier": [{"system": sor, "value": "383021000016000"}]});
    let res = post_as(&app, "Organization", &haderslev, &hospital, &[]).await;
    assert_eq!(res.status(), 201);
    let res = post_as(&app, "Organization", &haderslev, &hospital, &[]).await;
    assert_eq!(res.status(), 201);
    let res = post_as(
        &app,
        "/municipal/v1/care-records",
        &kolding,
        &kolding_record(),
        &[],
    )
    .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

/// A region reading a record shared with it, with a token that lacks a scope the record is
/// stored under, gets 403 naming that scope (as everywhere else), not 409 "cannot be rebuilt".
async fn a_missing_scope_on_a_shared_record_is_a_403_naming_it(db: Db) {
    let Some(app) = spawn_app_with(db, |_| {}).await else {
        return;
    };
    let kolding = token("kolding", ALL);
    let res = post_as(
        &app,
        "/municipal/v1/care-records",
        &kolding,
        &kolding_record(),
        &[],
    )
    .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    let record_id = kolding_record()["recordId"].as_str().unwrap().to_string();
    let (_, plan) = get_as(&app, body["carePlan"].as_str().unwrap(), &kolding, &[]).await;
    let patient = plan["subject"]["reference"].as_str().unwrap().to_string();
    let (sor, code) = crate::tokens::REGION.split_once('|').unwrap();
    let share = json!({"resourceType": "Parameters", "parameter": [
        {"name": "recipient", "valueIdentifier": {"system": sor, "value": code}}]});
    let res = post_as(&app, &format!("{patient}/$share"), &kolding, &share, &[]).await;
    assert_eq!(res.status(), 200);
    let path = format!("/municipal/v1/care-records/{record_id}?municipality=0621");
    let (status, rec) = get_as(&app, &path, &token("region-syd", "system/*.rs"), &[]).await;
    assert_eq!(status, 200, "{rec}");
    let narrow = token(
        "region-syd",
        "system/CarePlan.rs system/Patient.rs system/Goal.rs system/Condition.rs system/CareTeam.rs",
    );
    let (status, oo) = get_as(&app, &path, &narrow, &[]).await;
    assert_eq!(status, 403, "{oo}");
    let said = oo.to_string();
    assert!(said.contains("system/Encounter.r"), "{oo}");
    assert!(!said.contains("cannot be rebuilt"), "{oo}");
}

/// One `sqlite` and one `postgres` test per function taking the backend (each spawns its own
/// gateway, configured as it needs).
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use crate::helpers::Db;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(Db::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(Db::Postgres).await;
            }
        }
    )*};
}

on_both!(
    forwarding_headers_from_an_untrusted_peer_steer_nothing,
    a_trusted_proxy_is_believed_within_the_grammar,
    message_ids_are_scoped_to_their_sender,
    an_organization_cannot_squat_on_another_tenants_identifier,
    a_missing_scope_on_a_shared_record_is_a_403_naming_it,
);

/// A tmpfs of `mib` MiB mounted on a fresh directory (unmounted when dropped); `None`, after
/// saying so, where mounting is not permitted (not root, or no CAP_SYS_ADMIN).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("temp dir");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "NOTE: disk-full test SKIPPED (cannot mount a tmpfs here; it needs root)"
            );
            return None;
        }
        Some(SmallDisk { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: the gateway's connections may still be closing.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A Patient of about `kib` KiB.
fn big_patient(kib: usize) -> Value {
    json!({"resourceType": "Patient", "active": true,
        "text": {"status": "generated",
            "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{}</div>", "x".repeat(kib * 1024))}})
}

/// On a full disk, writes answer 507 naming the disk (never "busy"), `/readyz` says so, and once
/// space is freed writes succeed again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_told_as_such_and_recovers_when_space_is_freed() {
    let Some(disk) = SmallDisk::mount(8) else {
        return;
    };
    // Space an operator can free later.
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![0u8; 3 << 20]).expect("filler");
    let url = format!("sqlite://{}", disk.path().join("gw.db").display());
    let app = spawn_app_with(Db::Sqlite, move |c| {
        c.database.url = url;
    })
    .await
    .expect("app");
    let mut refused = None;
    for _ in 0..2000 {
        let res = post_as(&app, "Patient", DEV_TOKEN, &big_patient(20), &[]).await;
        match res.status().as_u16() {
            201 => continue,
            status => {
                refused = Some((status, res.text().await.unwrap_or_default()));
                break;
            }
        }
    }
    let (status, body) = refused.expect("the disk filled up");
    assert_eq!(status, 507, "{body}");
    assert!(body.contains("disk is full"), "{body}");
    let ready = reqwest::get(format!("{}/readyz", app.addr)).await.unwrap();
    assert_eq!(ready.status(), 503);
    let text = ready.text().await.unwrap();
    assert!(text.contains("disk full"), "{text}");

    std::fs::remove_file(&filler).expect("free space");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let res = post_as(&app, "Patient", DEV_TOKEN, &big_patient(20), &[]).await;
        if res.status() == 201 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writes did not recover: {} {}",
            res.status(),
            res.text().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = reqwest::get(format!("{}/readyz", app.addr)).await.unwrap();
    assert_eq!(ready.status(), 200);
    drop(app);
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(disk);
}
