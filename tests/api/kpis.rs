//! `GET /municipal/v1/kpis` over HTTP: figures from records posted from fixtures/municipal,
//! computed by hand from the fixtures' times, goals and phases; the period filter; access and bad
//! queries.

use std::collections::BTreeSet;

use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};

use crate::helpers::TestApp;
use crate::on_both_backends;
use crate::tokens::token;

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/fixtures/municipal/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
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

async fn kpis(app: &TestApp, query: &str, tok: Option<&str>) -> (u16, Value) {
    let mut req = app
        .client
        .get(format!("{}/municipal/v1/kpis?{query}", app.addr));
    if let Some(t) = tok {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.expect("a JSON body"))
}

async fn figures_follow_the_stored_records_and_the_period(app: TestApp) {
    for name in [
        "completed-discharged-home",
        "odense-copd-follow-up-ready-for-discharge",
        "haderslev-assessment-just-admitted",
    ] {
        assert!(matches!(post(&app, &fixture(name), None).await, 200 | 201));
    }
    // Kolding (0621): ready 2025-04-02T10:00Z, discharged 2025-04-04T08:30Z (46.5 h later),
    // admitted 2025-03-10T12:15Z (24 days 20 h 15 min before discharge); five goals, three
    // achieved and two not; the course is completed.
    let (status, got) = kpis(
        &app,
        "municipality=0621&from=2025-01-01&to=2026-01-01",
        None,
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        got,
        json!({
            "municipality": "0621", "from": "2025-01-01", "to": "2026-01-01",
            "dischargedWithin24h": {"numerator": 0, "denominator": 1, "rate": 0.0},
            "readyToDischargeHours": {"n": 1, "median": 46.5, "p90": 46.5},
            "temporaryStayDays": {"n": 1, "median": 24.84, "p90": 24.84},
            "goals": {"total": 5, "achieved": 3, "notAchieved": 2, "inProgress": 0, "other": 0},
            "coursesByPhase": {"assessment": 0, "goal-setting": 0, "intervention": 0, "follow-up": 0, "completed": 1},
            "readmissionsDuringCourse": 0,
            "dischargeNotesWithWarnings": 0
        })
    );
    // From 3 April: the ready time falls before the period, the discharge inside it; the course
    // (ended 4 April) is still active in it.
    let (_, got) = kpis(
        &app,
        "municipality=0621&from=2025-04-03&to=2025-05-01",
        None,
    )
    .await;
    assert_eq!(
        got["dischargedWithin24h"],
        json!({"numerator": 0, "denominator": 0, "rate": null})
    );
    assert_eq!(got["readyToDischargeHours"]["n"], 1);
    assert_eq!(got["temporaryStayDays"]["n"], 1);
    assert_eq!(got["goals"]["total"], 5);
    // After the course: nothing.
    let (_, got) = kpis(
        &app,
        "municipality=0621&from=2025-05-01&to=2026-01-01",
        None,
    )
    .await;
    assert_eq!(got["readyToDischargeHours"]["n"], 0);
    assert_eq!(got["temporaryStayDays"]["n"], 0);
    assert_eq!(got["goals"]["total"], 0);
    assert_eq!(got["coursesByPhase"]["completed"], 0);
    // Odense (0461): ready 2025-06-18, still not discharged, so more than 24 h waiting: in the
    // denominator only. Goals: achieved, achieved, sustaining; improving twice.
    let (_, got) = kpis(
        &app,
        "municipality=0461&from=2025-01-01&to=2026-01-01",
        None,
    )
    .await;
    assert_eq!(
        got["dischargedWithin24h"],
        json!({"numerator": 0, "denominator": 1, "rate": 0.0})
    );
    assert_eq!(got["readyToDischargeHours"]["n"], 0);
    assert_eq!(
        got["goals"],
        json!({"total": 5, "achieved": 3, "notAchieved": 0, "inProgress": 2, "other": 0})
    );
    assert_eq!(got["coursesByPhase"]["follow-up"], 1);
    // Haderslev's assessment course (0510) began 2025-04-08 and is open: active in 2026 too.
    let (_, got) = kpis(
        &app,
        "municipality=0510&from=2026-01-01&to=2026-02-01",
        None,
    )
    .await;
    assert_eq!(got["coursesByPhase"]["assessment"], 1);
    assert_eq!(got["goals"]["inProgress"], 1);
    assert_eq!(got["dischargedWithin24h"]["denominator"], 0);
}

async fn only_the_municipalitys_clients_and_administrators_get_its_figures(app: TestApp) {
    let kolding = token("kolding", "system/*.cruds");
    assert_eq!(
        post(&app, &fixture("completed-discharged-home"), Some(&kolding)).await,
        201
    );
    let q = "municipality=0621&from=2025-01-01&to=2026-01-01";
    let (status, own) = kpis(&app, q, Some(&kolding)).await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(own["goals"]["total"], 5);
    let (status, _) = kpis(&app, q, Some(&token("ops", "system/*.*"))).await;
    assert_eq!(status, 200, "administrators");
    for (client, scope) in [
        ("haderslev", "system/*.cruds"),
        ("region-syd", "system/*.rs"),
    ] {
        let (status, body) = kpis(&app, q, Some(&token(client, scope))).await;
        assert_eq!(status, 403, "{client}: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome");
    }
    // Every problem of the query at once.
    let (status, body) = kpis(
        &app,
        "municipality=62&from=2025-13-01&period=x",
        Some(&kolding),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["resourceType"], "OperationOutcome");
    let at: BTreeSet<&str> = body["issue"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["expression"][0].as_str())
        .collect();
    assert_eq!(
        at,
        BTreeSet::from(["municipality", "from", "to", "period"]),
        "{body}"
    );
    let (status, body) = kpis(
        &app,
        "municipality=0621&from=2025-02-01&to=2025-01-01",
        Some(&kolding),
    )
    .await;
    assert_eq!(status, 400, "{body}");
}

on_both_backends!(
    figures_follow_the_stored_records_and_the_period,
    only_the_municipalitys_clients_and_administrators_get_its_figures,
);
