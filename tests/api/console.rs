//! The console in a real browser: headless Chromium (Debian's `chromium`) driven through
//! chromedriver with fantoccini. Sign in with a token, open every page, the Flows figures equal
//! the KPI API's for seeded records, a dead letter retried from the Outbox page reaches a wiremock
//! receiver, the audit search is itself audited, and a client without rights sees nothing.
//! Skips (and says so) when chromium or chromedriver is absent.
//!
//! Screenshots of each page go to a temporary folder, or to docs/console/ when
//! `SEKTORBRO_CONSOLE_SCREENSHOTS=1` (how the README's pictures are made).

use std::io::Write as _;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::forwarding::{destination, fast, message};
use crate::helpers::{spawn_app_with, Db, TestApp, DEV_TOKEN};
use crate::tokens::token;

/// chromedriver, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn found(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// chromedriver on a free port, or `None` (after saying why) when the browser is not installed.
async fn driver() -> Option<Driver> {
    if !found("chromium") || !found("chromedriver") {
        let _ = writeln!(
            std::io::stderr(),
            "NOTE: console browser test SKIPPED (chromium and chromedriver are not installed; \
             apt-get install -y chromium chromium-driver)"
        );
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Some(Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    })
}

async fn browser(d: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--window-size=1280,1400", "--lang=da"]}),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&d.url)
        .await
        .expect("a browser session")
}

fn shots_dir() -> std::path::PathBuf {
    if std::env::var_os("SEKTORBRO_CONSOLE_SCREENSHOTS").is_some() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/console");
        std::fs::create_dir_all(&dir).expect("docs/console");
        dir
    } else {
        std::env::temp_dir().join(format!("sektorbro-console-{}", std::process::id()))
    }
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let dir = shots_dir();
    std::fs::create_dir_all(&dir).expect("folder");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .expect("text")
}

async fn exists(c: &Client, css: &str) -> bool {
    !c.find_all(Locator::Css(css))
        .await
        .expect("query")
        .is_empty()
}

/// Wait (up to 20 s) for an element of the page a click navigates to.
///
/// chromedriver answers a query that the page load interrupts with a non-standard error,
/// "aborted by navigation" (seen once in a full `.ci/run`, on a loaded machine); the next
/// query sees the new page, so that one error is asked again within the same 20 s.
async fn wait_for(c: &Client, css: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.wait().at_most(left).for_element(Locator::Css(css)).await {
            Ok(_) => return,
            Err(e) if e.to_string().contains("aborted by navigation") && !left.is_zero() => {}
            Err(e) => panic!("{css} never appeared: {e}"),
        }
    }
}

/// Sign in with `token`; `then` is an element of the page that follows.
async fn sign_in(c: &Client, app: &TestApp, token: &str, then: &str) {
    c.goto(&format!("{}/console/flows", app.addr))
        .await
        .expect("open");
    assert!(
        c.current_url().await.expect("url").path() == "/console/sign-in",
        "an anonymous browser is sent to the sign-in form"
    );
    c.find(Locator::Css("#token"))
        .await
        .expect("token field")
        .send_keys(token)
        .await
        .expect("type");
    c.find(Locator::Css("form[action='/console/sign-in'] button"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    wait_for(c, then).await;
}

async fn sign_out(c: &Client) {
    c.find(Locator::Css("form[action='/console/sign-out'] button"))
        .await
        .expect("sign-out button")
        .click()
        .await
        .expect("click");
    wait_for(c, "#token").await;
    assert_eq!(
        c.current_url().await.expect("url").path(),
        "/console/sign-in"
    );
}

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/fixtures/municipal/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let Some(driver) = driver().await else {
        return;
    };
    let region = MockServer::start().await;
    let outcome = json!({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "invalid", "diagnostics": "unknown care unit <b>X</b>",
         "expression": ["Bundle.entry[0]"]}]});
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(outcome))
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
    let app = spawn_app_with(Db::Sqlite, |c| {
        fast(c);
        c.forwarding.destinations = vec![destination("region", &region.uri(), &["111"])];
    })
    .await
    .expect("sqlite app");
    for name in [
        "completed-discharged-home",
        "odense-copd-follow-up-ready-for-discharge",
        "haderslev-assessment-just-admitted",
    ] {
        let res = app
            .client
            .post(format!("{}/municipal/v1/care-records", app.addr))
            .header("content-type", "application/json")
            .body(fixture(name).to_string())
            .send()
            .await
            .expect("post");
        assert!(res.status().is_success(), "{name}");
    }
    assert_eq!(app.submit(&message("d-1", "111", "42")).await.status(), 202);
    app.wait_status("d-1", "dead").await;

    let c = browser(&driver).await;
    c.goto(&format!("{}/console/sign-in", app.addr))
        .await
        .expect("open");
    shot(&c, "sign-in").await;
    // A wrong token: refused on the form, no session.
    sign_in(&c, &app, "not-a-valid-token-at-all", ".signin .error").await;
    assert!(exists(&c, ".signin .error").await, "the refusal is shown");
    assert!(!exists(&c, "form[action='/console/sign-out']").await);

    // The administrator (the development token, from loopback).
    sign_in(&c, &app, DEV_TOKEN, "form[action='/console/sign-out']").await;
    assert_eq!(c.current_url().await.expect("url").path(), "/console/flows");
    // Flows: the figures equal the KPI API's.
    for (m, from, to) in [
        ("0621", "2025-01-01", "2026-01-01"),
        ("0461", "2025-01-01", "2026-01-01"),
    ] {
        c.goto(&format!(
            "{}/console/flows?municipality={m}&from={from}&to={to}",
            app.addr
        ))
        .await
        .expect("flows");
        let api: Value = app
            .client
            .get(format!(
                "{}/municipal/v1/kpis?municipality={m}&from={from}&to={to}",
                app.addr
            ))
            .send()
            .await
            .expect("kpis")
            .json()
            .await
            .expect("json");
        let tiles = c
            .find_all(Locator::Css("#kpis [data-kpi]"))
            .await
            .expect("tiles");
        assert_eq!(tiles.len(), 6);
        for tile in tiles {
            let key = tile.attr("data-kpi").await.expect("attr").expect("key");
            let shown = tile.attr("data-value").await.expect("attr").expect("value");
            let want = key.split('.').fold(&api, |v, k| &v[k]);
            assert_eq!(shown, want.to_string(), "{m} {key}");
            let visible = tile.text().await.expect("text");
            if let Some(n) = want.as_u64() {
                assert!(visible.starts_with(&n.to_string()), "{key}: {visible}");
            }
        }
        assert!(
            exists(&c, "#chart-rate svg line.target").await,
            "target line"
        );
        assert!(exists(&c, "#chart-phases svg rect").await);
        if m == "0621" {
            shot(&c, "flows").await;
            let rate = text(&c, "[data-kpi='dischargedWithin24h.rate']").await;
            assert!(rate.starts_with("0,0 %"), "Danish decimal mark: {rate}");
        } else {
            // Odense's stay is ready and not discharged: waiting, the citizen's CPR masked.
            let row = text(&c, "#waiting tbody tr").await;
            assert!(row.contains("-****"), "{row}");
            assert!(row.contains("090942-****"), "{row}");
            assert!(
                !c.source().await.expect("html").contains("0909421642"),
                "no full CPR"
            );
        }
    }
    // English.
    c.find(Locator::Css("header a[lang='en']"))
        .await
        .expect("switch")
        .click()
        .await
        .expect("click");
    wait_for(&c, "header a[lang='da']").await;
    assert!(text(&c, "h1").await.contains("Flows"));
    c.find(Locator::Css("header a[lang='da']"))
        .await
        .expect("switch back")
        .click()
        .await
        .expect("click");
    wait_for(&c, "header a[lang='en']").await;

    // Outbox: the dead letter with the receiver's answer (escaped), retried, delivered.
    c.goto(&format!("{}/console/outbox", app.addr))
        .await
        .expect("outbox");
    let dead = text(&c, "[data-destination='region'] [data-status='dead']").await;
    assert_eq!(dead, "1");
    let answer = text(&c, "section[data-message-id='d-1'] .receiver-outcome").await;
    assert!(answer.contains("unknown care unit <b>X</b>"), "{answer}");
    shot(&c, "outbox").await;
    c.find(Locator::Css(
        "section[data-message-id='d-1'] form[action$='/retry'] button",
    ))
    .await
    .expect("retry button")
    .click()
    .await
    .expect("click");
    wait_for(&c, "#done").await;
    assert!(text(&c, "#done").await.contains("d-1"));
    app.wait_status("d-1", "delivered").await;
    let received = region.received_requests().await.expect("log");
    assert_eq!(received.len(), 2, "rejected once, delivered on retry");
    // The session cookie as the browser holds it, and a retry with it but a forged CSRF token.
    let session = c
        .get_named_cookie("__Host-sektorbro-console")
        .await
        .expect("the session cookie");
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(session.secure(), Some(true));
    assert_eq!(format!("{:?}", session.same_site()), "Some(Strict)");
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let forged = plain
        .post(format!("{}/console/outbox/d-1/retry", app.addr))
        .header(
            "cookie",
            format!("__Host-sektorbro-console={}", session.value()),
        )
        .form(&[("csrf", "AAAA"), ("sender", "x")])
        .send()
        .await
        .expect("post");
    assert_eq!(forged.status(), 403, "a forged CSRF token");
    let no_session = plain
        .post(format!("{}/console/outbox/d-1/retry", app.addr))
        .bearer_auth(DEV_TOKEN)
        .form(&[("csrf", "AAAA")])
        .send()
        .await
        .expect("post");
    assert_eq!(
        no_session.headers()["location"],
        "/console/sign-in",
        "a bearer token is no console session"
    );

    // System.
    c.goto(&format!("{}/console/system", app.addr))
        .await
        .expect("system");
    assert_eq!(text(&c, "#health").await, "ok");
    assert!(text(&c, "#ready").await.starts_with("klar"));
    assert!(exists(&c, "#requests tbody tr").await);
    shot(&c, "system").await;

    // Audit: who read Kolding's citizen (a read of the Patient through the API); the search is
    // itself audited.
    let found: Value = app
        .client
        .get(format!(
            "{}/fhir/Patient?identifier=urn:oid:1.2.208.176.1.2|1604391568",
            app.addr
        ))
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    let id = found["entry"][0]["resource"]["id"]
        .as_str()
        .expect("the citizen's Patient");
    let read = app
        .client
        .get(format!("{}/fhir/Patient/{id}", app.addr))
        .send()
        .await
        .expect("read");
    assert_eq!(read.status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.goto(&format!("{}/console/audit", app.addr))
        .await
        .expect("audit");
    c.find(Locator::Css("input[name='cpr']"))
        .await
        .expect("cpr")
        .send_keys("160439-1568")
        .await
        .expect("type");
    c.find(Locator::Css("form.query button"))
        .await
        .expect("search")
        .click()
        .await
        .expect("click");
    wait_for(&c, "#audit-events").await;
    assert!(exists(&c, "#audit-events tbody tr").await, "events found");
    let results = text(&c, "#audit-events").await;
    assert!(results.contains("Patient/"), "{results}");
    assert!(
        !results.contains("1604391568"),
        "the CPR number masked: {results}"
    );
    assert!(text(&c, "main h2").await.starts_with("160439-****"));
    shot(&c, "audit").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Value = app
            .client
            .get(format!(
                "{}/fhir/AuditEvent?subtype=console-audit",
                app.addr
            ))
            .send()
            .await
            .expect("search")
            .json()
            .await
            .expect("json");
        if found["entry"].as_array().is_some_and(|e| !e.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "the audit search is audited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sign_out(&c).await;
    c.goto(&format!("{}/console/outbox", app.addr))
        .await
        .expect("outbox");
    assert_eq!(
        c.current_url().await.expect("url").path(),
        "/console/sign-in",
        "signed out"
    );

    // A client without rights to Kolding's records: nothing of them, no admin pages.
    sign_in(
        &c,
        &app,
        &token("region-syd", "system/*.rs"),
        "form[action='/console/sign-out']",
    )
    .await;
    c.goto(&format!(
        "{}/console/flows?municipality=0621&from=2025-01-01&to=2026-01-01",
        app.addr
    ))
    .await
    .expect("flows");
    assert!(!exists(&c, "#kpis").await, "no figures");
    assert!(text(&c, "h1").await.contains("Ingen adgang"));
    for page in ["outbox", "system", "audit"] {
        c.goto(&format!("{}/console/{page}", app.addr))
            .await
            .expect("page");
        assert!(text(&c, "h1").await.contains("Ingen adgang"), "{page}");
        assert!(!exists(&c, "table").await, "{page}");
    }
    assert!(!exists(&c, "nav a[href='/console/outbox']").await);
    c.close().await.expect("close");
}
