//! `GET /municipal/v1/reports/kl-gateway` over HTTP: the report built from what is stored equals
//! the report built from the posted records, validates against its IG, is incremental with
//! `since`, and is answered to the municipality's own clients and administrators only.

use std::collections::BTreeSet;

use reqwest::header::CONTENT_TYPE;
use serde_json::Value;

use crate::helpers::TestApp;
use crate::on_both_backends;
use crate::tokens::token;
use fhir_core::validation::{has_errors, Validator};
use sektorbro::municipal::record::CareRecord;
use sektorbro::report::kl_gateway::{delivery, Kind};

fn fixtures() -> Vec<Value> {
    let dir = format!("{}/fixtures/municipal", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .expect("fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect()
}

async fn post(app: &TestApp, rec: &Value, tok: Option<&str>) -> u16 {
    let mut req = app
        .client
        .post(format!("{}/municipal/v1/care-records", app.addr))
        .header(CONTENT_TYPE, "application/json")
        .body(rec.to_string());
    if let Some(t) = tok {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("request").status().as_u16()
}

async fn report(app: &TestApp, query: &str, tok: Option<&str>) -> (u16, Value) {
    let mut req = app.client.get(format!(
        "{}/municipal/v1/reports/kl-gateway?{query}",
        app.addr
    ));
    if let Some(t) = tok {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).expect("a complete JSON body"),
    )
}

fn entries(bundle: &Value) -> Vec<Value> {
    bundle["entry"].as_array().cloned().unwrap_or_default()
}

async fn the_stored_records_are_reported_as_posted(app: TestApp) {
    let v = Validator::shared_embedded().expect("definitions");
    let records: Vec<Value> = fixtures();
    for r in &records {
        assert!(matches!(post(&app, r, None).await, 200 | 201));
    }
    let typed: Vec<CareRecord> = records
        .iter()
        .map(|r| serde_json::from_value(r.clone()).unwrap())
        .collect();
    let municipalities: BTreeSet<String> =
        typed.iter().map(|r| r.municipality.code.clone()).collect();
    let mut reported = 0;
    for m in &municipalities {
        for kind in [Kind::Rehab140, Kind::Care] {
            let (status, got) = report(
                &app,
                &format!("municipality={m}&kind={}", kind.as_str()),
                None,
            )
            .await;
            assert_eq!(status, 200, "{m} {kind:?}: {got}");
            assert!(!has_errors(&v.validate(&got, &[])), "{m} {kind:?}");
            // The same reports as built straight from the posted records.
            let mine: Vec<CareRecord> = typed
                .iter()
                .filter(|r| r.municipality.code == *m)
                .cloned()
                .collect();
            let ts = got["timestamp"].as_str().unwrap();
            let want: Value =
                serde_json::from_str(&delivery(kind, &mine, &v.terminology, "x", ts)).unwrap();
            let (mut g, mut w) = (entries(&got), entries(&want));
            let by_id = |e: &Value| e["fullUrl"].as_str().unwrap_or_default().to_string();
            g.sort_by_key(by_id);
            w.sort_by_key(by_id);
            assert_eq!(g, w, "{m} {kind:?}");
            reported += g.len();
        }
    }
    let citizens: BTreeSet<(String, String)> = typed
        .iter()
        .map(|r| (r.municipality.code.clone(), r.citizen.cpr.clone()))
        .collect();
    assert_eq!(reported, citizens.len(), "every citizen once");
}

async fn since_reports_only_the_citizens_whose_records_changed(app: TestApp) {
    let records = fixtures();
    for r in &records {
        assert!(matches!(post(&app, r, None).await, 200 | 201));
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let mark = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let q = format!("municipality=0510&kind=care&since={}", urlencode(&mark));
    let (status, none) = report(&app, &q, None).await;
    assert_eq!(status, 200);
    assert!(entries(&none).is_empty(), "nothing changed: {none}");

    // A new version of one Haderslev record: only its citizen is reported.
    let mut changed = records
        .iter()
        .find(|r| r["recordId"] == "NX-0510-2025-004712")
        .unwrap()
        .clone();
    changed["recordVersion"] = (changed["recordVersion"].as_u64().unwrap() + 1).into();
    changed["course"]["phase"] = "follow-up".into();
    assert_eq!(post(&app, &changed, None).await, 200);
    let (status, some) = report(&app, &q, None).await;
    assert_eq!(status, 200);
    let got = entries(&some);
    assert_eq!(got.len(), 1, "{some}");
    let patient = &got[0]["resource"]["entry"][0]["resource"];
    assert_eq!(patient["identifier"][0]["value"], changed["citizen"]["cpr"]);
    let (_, all) = report(&app, "municipality=0510&kind=care", None).await;
    assert_eq!(
        entries(&all).len(),
        2,
        "both Haderslev citizens in the full report"
    );
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

async fn only_the_municipalitys_clients_and_administrators_get_its_report(app: TestApp) {
    let kolding = token("kolding", "system/*.cruds");
    let rec = fixtures()
        .into_iter()
        .find(|r| r["municipality"]["code"] == "0621")
        .unwrap();
    assert_eq!(post(&app, &rec, Some(&kolding)).await, 201);
    let q = "municipality=0621&kind=care";
    let (status, own) = report(&app, q, Some(&kolding)).await;
    assert_eq!(status, 200);
    assert_eq!(entries(&own).len(), 1);
    let (status, _) = report(&app, q, Some(&token("ops", "system/*.*"))).await;
    assert_eq!(status, 200, "administrators");
    for (client, scope) in [
        ("haderslev", "system/*.cruds"),
        ("region-syd", "system/*.rs"),
    ] {
        let (status, body) = report(&app, q, Some(&token(client, scope))).await;
        assert_eq!(status, 403, "{client}: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome");
    }
    // Every problem of the query at once.
    let (status, body) = report(
        &app,
        "municipality=62&kind=x&since=yesterday",
        Some(&kolding),
    )
    .await;
    assert_eq!(status, 400);
    let at: BTreeSet<&str> = body["issue"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["expression"][0].as_str())
        .collect();
    assert_eq!(
        at,
        BTreeSet::from(["municipality", "kind", "since"]),
        "{body}"
    );
}

on_both_backends!(
    the_stored_records_are_reported_as_posted,
    since_reports_only_the_citizens_whose_records_changed,
    only_the_municipalitys_clients_and_administrators_get_its_report,
);
