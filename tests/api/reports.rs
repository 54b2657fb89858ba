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

async fn post_record(app: &TestApp, rec: &Value, tok: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .post(format!("{}/municipal/v1/care-records", app.addr))
        .header(CONTENT_TYPE, "application/json")
        .body(rec.to_string());
    if let Some(t) = tok {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("request")
}

async fn post(app: &TestApp, rec: &Value, tok: Option<&str>) -> u16 {
    post_record(app, rec, tok).await.status().as_u16()
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
        .map(|r| (r.municipality.code.clone(), r.citizen.cpr.to_string()))
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

/// An engine of its own on the app's database, without caches (the app writes past it), for
/// what the gateway does at start: filling in stale report facts.
async fn refresh_stale(app: &TestApp) -> usize {
    let mut config = sektorbro::config::Config::defaults();
    config.cache.enabled = false;
    let store = sektorbro::store::open(app.database_url(), 2, "normal", 5000, &config.cache)
        .await
        .expect("store");
    let engine = sektorbro::engine::Engine::new(store, config.search);
    sektorbro::report::stored::refresh_stale(&engine)
        .await
        .expect("refresh")
}

/// Each municipality's report, of each kind, equals the one built from `typed`.
async fn assert_reported(app: &TestApp, municipality: &str, typed: &[CareRecord]) {
    let v = Validator::shared_embedded().expect("definitions");
    for kind in [Kind::Rehab140, Kind::Care] {
        let (status, got) = report(
            app,
            &format!("municipality={municipality}&kind={}", kind.as_str()),
            None,
        )
        .await;
        assert_eq!(status, 200, "{municipality} {kind:?}: {got}");
        let ts = got["timestamp"].as_str().unwrap();
        let mine: Vec<CareRecord> = typed
            .iter()
            .filter(|r| r.municipality.code == municipality)
            .cloned()
            .collect();
        let want: Value =
            serde_json::from_str(&delivery(kind, &mine, &v.terminology, "x", ts)).unwrap();
        // The same citizens in the same order (by Patient id), each with the same report.
        let ids = |b: &Value| -> BTreeSet<String> {
            entries(b)
                .iter()
                .map(|e| e["fullUrl"].as_str().unwrap_or_default().to_string())
                .collect()
        };
        assert_eq!(ids(&got), ids(&want), "{municipality} {kind:?}");
        for e in entries(&got) {
            let w = entries(&want)
                .into_iter()
                .find(|x| x["fullUrl"] == e["fullUrl"])
                .unwrap();
            assert_eq!(e, w, "{municipality} {kind:?}");
        }
    }
}

async fn post_json(app: &TestApp, rec: &Value) -> Value {
    let res = post_record(app, rec, None).await;
    assert!(matches!(res.status().as_u16(), 200 | 201));
    res.json().await.expect("JSON")
}

/// The one resource a search finds.
async fn only(app: &TestApp, query: &str) -> Value {
    let page = app.get_json(query, 200).await;
    assert_eq!(
        page["entry"].as_array().map(Vec::len),
        Some(1),
        "{query}: {page}"
    );
    page["entry"][0]["resource"].clone()
}

async fn the_report_follows_writes_by_other_routes(app: TestApp) {
    let posted: Vec<Value> = fixtures()
        .into_iter()
        .filter(|r| r["municipality"]["code"] == "0510")
        .collect();
    let mut plans = Vec::new();
    for r in &posted {
        plans.push(
            post_json(&app, r).await["carePlan"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let mut typed: Vec<CareRecord> = posted
        .iter()
        .map(|r| serde_json::from_value(r.clone()).unwrap())
        .collect();
    assert_eq!(refresh_stale(&app).await, 0, "stored with fresh facts");
    assert_reported(&app, "0510", &typed).await;

    // The first record's course CarePlan, changed over FHIR REST: it is now a §140 course (so it
    // moves from the care report to the §140 report).
    let (first, second) = (&plans[0], &plans[1]);
    let mut plan = app.get_json(first, 200).await;
    let basis = plan["extension"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["url"].as_str().unwrap().ends_with("legal-basis"))
        .expect("the legal basis");
    basis["valueCodeableConcept"]["coding"][0]["code"] = "sul-140".into();
    // the display goes with the code (a wrong display is refused, as by HL7's validator)
    basis["valueCodeableConcept"]["coding"][0]["display"] =
        "Health Act § 140 (rehabilitation after hospital discharge)".into();
    let res = app.put(first, &plan).await;
    assert_eq!(res.status().as_u16(), 200, "{}", res.text().await.unwrap());
    typed[0].course.legal_basis = "sul-140".into();
    // One of its Conditions, changed the same way: another severity.
    let parts = format!(
        "http://sektorbro.dk/fhir/NamingSystem/care-record/0510/{}",
        typed[0].record_id
    );
    let local = typed[0].conditions[0].id.clone();
    let mut condition = only(
        &app,
        &format!("Condition?identifier={}|{local}", urlencode(&parts)),
    )
    .await;
    let severity = "d984ad21-48fe-4619-845e-2aa0303048e7";
    condition["severity"]["coding"][0]["code"] = severity.into();
    condition["severity"]["coding"][0]["display"] = "2".into(); // FSIII's display for it
    let id = condition["id"].as_str().unwrap().to_string();
    let res = app.put(&format!("Condition/{id}"), &condition).await;
    assert_eq!(res.status().as_u16(), 200, "{}", res.text().await.unwrap());
    typed[0].conditions[0].severity = Some(severity.into());
    // Rebuilt from the resources while stale, from the refreshed facts after.
    assert_reported(&app, "0510", &typed).await;
    assert_eq!(refresh_stale(&app).await, 1, "the changed record");
    assert_reported(&app, "0510", &typed).await;
    assert_eq!(refresh_stale(&app).await, 0);

    // The second record's CarePlan deleted over REST: the record is no longer reported.
    assert_eq!(app.delete(second).await.status().as_u16(), 204);
    assert_reported(&app, "0510", &typed[..1]).await;
    assert_eq!(
        refresh_stale(&app).await,
        0,
        "a deleted course has no facts"
    );

    // The first record stored again through the municipal endpoint: fresh facts in its
    // transaction, nothing left to refresh.
    let mut again = posted[0].clone();
    again["recordVersion"] = (again["recordVersion"].as_u64().unwrap() + 1).into();
    post_json(&app, &again).await;
    let again: CareRecord = serde_json::from_value(again).unwrap();
    assert_eq!(refresh_stale(&app).await, 0);
    assert_reported(&app, "0510", std::slice::from_ref(&again)).await;
}

async fn records_stored_before_the_facts_are_filled_in(app: TestApp) {
    let records = fixtures();
    for r in &records {
        post_json(&app, r).await;
    }
    // As a database migrated to 0009 after these records were stored: the table emptied, then
    // the migration's own back-fill statement.
    let script = match app.db {
        crate::helpers::Db::Sqlite => {
            include_str!("../../src/store/migrations/sqlite/0009_report_facts.sql")
        }
        crate::helpers::Db::Postgres => {
            include_str!("../../src/store/migrations/postgres/0009_report_facts.sql")
        }
    };
    let backfill = &script[script.find("INSERT INTO report_facts").unwrap()..];
    {
        use sqlx::Connection as _;
        let mut db = sqlx::AnyConnection::connect(app.database_url())
            .await
            .expect("connect");
        sqlx::query("DELETE FROM report_facts")
            .execute(&mut db)
            .await
            .expect("delete");
        sqlx::query(backfill.trim().trim_end_matches(';'))
            .execute(&mut db)
            .await
            .expect("back-fill");
        db.close().await.expect("close");
    }
    let typed: Vec<CareRecord> = records
        .iter()
        .map(|r| serde_json::from_value(r.clone()).unwrap())
        .collect();
    let municipalities: BTreeSet<String> =
        typed.iter().map(|r| r.municipality.code.clone()).collect();
    // Reported from the resources while stale, from the facts once filled in.
    for m in &municipalities {
        assert_reported(&app, m, &typed).await;
    }
    assert_eq!(refresh_stale(&app).await, records.len());
    assert_eq!(refresh_stale(&app).await, 0);
    for m in &municipalities {
        assert_reported(&app, m, &typed).await;
    }
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
    the_report_follows_writes_by_other_routes,
    records_stored_before_the_facts_are_filled_in,
);
