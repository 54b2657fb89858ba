//! Limits and security headers over HTTP: nesting depth and Bundle size answer 422, a client over
//! its rate 429 with Retry-After, and every response carries the security headers.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, Db};

fn assert_security_headers(res: &reqwest::Response) {
    let h = res.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app(Db::Sqlite).await.expect("app");
    let ok = app.get("metadata").await;
    assert_eq!(ok.status().as_u16(), 200);
    assert_security_headers(&ok);
    let missing = app.get("Patient/nope").await;
    assert_eq!(missing.status().as_u16(), 404);
    assert_security_headers(&missing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_bodies_and_large_bundles_are_refused_with_422() {
    let app = spawn_app_with(Db::Sqlite, |c| c.limits.max_bundle_entries = 3)
        .await
        .expect("app");
    // 100 levels: within serde_json's own limit, beyond ours (64).
    let mut deep = json!("x");
    for _ in 0..100 {
        deep = json!({ "a": deep });
    }
    let mut patient = json!({"resourceType": "Patient"});
    patient["extension"] = json!([{"url": "http://example.org/x", "valueString": "y", "z": deep}]);
    let res = app.post("Patient", &patient).await;
    assert_eq!(res.status().as_u16(), 422);
    let oo: Value = res.json().await.unwrap();
    assert_eq!(oo["issue"][0]["code"], "too-costly");

    let entry = json!({"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}});
    let bundle = json!({"resourceType": "Bundle", "type": "transaction",
        "entry": [entry.clone(), entry.clone(), entry.clone(), entry]});
    let res = app.post("", &bundle).await;
    assert_eq!(res.status().as_u16(), 422);
    let oo: Value = res.json().await.unwrap();
    assert_eq!(oo["issue"][0]["expression"][0], "Bundle.entry");
    let count: Value = app.get_json("Patient?_summary=count", 200).await;
    assert_eq!(count["total"], 0, "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_gets_429_with_retry_after() {
    let app = spawn_app_with(Db::Sqlite, |c| {
        c.limits.rate_per_second = 0.5;
        c.limits.rate_burst = 3;
    })
    .await
    .expect("app");
    for _ in 0..3 {
        assert_eq!(app.get("metadata").await.status().as_u16(), 200);
    }
    let res = app.get("metadata").await;
    assert_eq!(res.status().as_u16(), 429);
    assert_security_headers(&res);
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    let oo: Value = res.json().await.unwrap();
    assert_eq!(oo["issue"][0]["code"], "throttled");
    // Health checks are not limited.
    let health = app
        .client
        .get(format!("{}/healthz", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
}
