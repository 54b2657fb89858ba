//! `GET /municipal/v1/kpis` over HTTP: figures from records posted from fixtures/municipal,
//! computed by hand from the fixtures' times, goals and phases; the period filter; access and bad
//! queries.

use std::collections::BTreeSet;

use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Db, TestApp};
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

fn note(name: &str) -> Value {
    let path = format!(
        "{}/fixtures/discharge/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("note")).expect("json")
}

async fn post_note(app: &TestApp, n: &Value) -> Value {
    let res = app
        .client
        .post(format!("{}/municipal/v1/discharge-notes", app.addr))
        .header(CONTENT_TYPE, "application/json")
        .body(n.to_string())
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    let body: Value = res.json().await.expect("a JSON body");
    assert_eq!(status, 202, "{body}");
    body
}

/// Warnings in an accepted note's outcome (an "All OK" information issue is not one).
fn warnings(accepted: &Value) -> usize {
    accepted["outcome"]["issue"].as_array().map_or(0, |issues| {
        issues.iter().filter(|i| i["severity"] == "warning").count()
    })
}

/// `dischargeNotesWithWarnings`: the notes accepted in the period (their discharge summary's
/// date, the time of acceptance) that the gateway gave warnings, as the stored discharge summary
/// records them; a corrected note without warnings and a deleted summary no longer count. The
/// Measure `kpi-discharge-notes-with-warnings` answers the same.
async fn discharge_notes_with_warnings_are_counted(db: Db) {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let region = MockServer::builder().start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&region)
        .await;
    let base = format!("{}/fhir", region.uri());
    let Some(app) = spawn_app_with(db, move |c| {
        crate::forwarding::fast(c);
        c.forwarding.destinations = vec![crate::forwarding::destination(
            "regions",
            &base,
            &["328791000016006", "264881000016009"],
        )];
    })
    .await
    else {
        return;
    };
    for name in [
        "completed-discharged-home",
        "odense-copd-follow-up-ready-for-discharge",
    ] {
        assert!(matches!(post(&app, &fixture(name), None).await, 200 | 201));
    }
    let today = chrono::Utc::now().date_naive();
    let tomorrow = today + chrono::Days::new(1);
    let now = |m: &str| format!("municipality={m}&from={today}&to={tomorrow}");
    // Before any note.
    let (_, got) = kpis(&app, &now("0461"), None).await;
    assert_eq!(got["dischargeNotesWithWarnings"], 0, "{got}");
    // Kolding's note names a responsible for every task and a contact: no warning. Odense's
    // has a task nobody owns and no contact: two warnings, one note.
    let kolding = post_note(&app, &note("kolding-discharged-home")).await;
    assert_eq!(warnings(&kolding), 0, "{kolding}");
    let odense_note = note("odense-ready-no-follow-up-owner");
    let odense = post_note(&app, &odense_note).await;
    assert_eq!(warnings(&odense), 2, "{odense}");
    let summary = app
        .get_json(odense["composition"].as_str().expect("composition"), 200)
        .await;
    let marks: BTreeSet<&str> = summary["extension"]
        .as_array()
        .expect("warnings on the stored summary")
        .iter()
        .filter(|e| {
            e["url"] == "http://sektorbro.dk/fhir/StructureDefinition/discharge-note-warning"
        })
        .filter_map(|e| e["valueString"].as_str())
        .collect();
    assert_eq!(
        marks,
        BTreeSet::from(["$.followUp[0].responsible", "$.contact"]),
        "{summary}"
    );
    let (_, got) = kpis(&app, &now("0461"), None).await;
    assert_eq!(got["dischargeNotesWithWarnings"], 1, "{got}");
    let (_, got) = kpis(&app, &now("0621"), None).await;
    assert_eq!(got["dischargeNotesWithWarnings"], 0, "{got}");
    // Accepted now: not in 2025.
    let (_, got) = kpis(
        &app,
        "municipality=0461&from=2025-01-01&to=2026-01-01",
        None,
    )
    .await;
    assert_eq!(got["dischargeNotesWithWarnings"], 0, "{got}");
    // The Measure: the same count over the same days.
    let res = app
        .client
        .get(format!(
            "{}/fhir/Measure/kpi-discharge-notes-with-warnings/$evaluate-measure?periodStart={today}&periodEnd={today}&subject=Organization/0461",
            app.addr
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 200);
    let report: Value = res.json().await.expect("report");
    assert_eq!(report["group"][0]["population"][0]["count"], 1, "{report}");
    // The note corrected (a responsible and a contact named): its summary's new version has no
    // warning, so it no longer counts.
    let mut corrected = odense_note.clone();
    corrected["followUp"][0]["responsible"] = json!({"name": "Hjemmesygeplejen, Odense"});
    corrected["contact"] = json!({"name": "Lis Jensen", "phone": "+45 65 51 00 00"});
    let fixed = post_note(&app, &corrected).await;
    assert_eq!(fixed["composition"], odense["composition"]);
    let (_, got) = kpis(&app, &now("0461"), None).await;
    assert_eq!(got["dischargeNotesWithWarnings"], 0, "{got}");
    // Corrected again, without the contact (a new message: the same note as before would be the
    // message already accepted, which writes nothing), then the summary deleted through the FHIR
    // API.
    let mut again = corrected;
    if let Some(o) = again.as_object_mut() {
        o.remove("contact");
    }
    post_note(&app, &again).await;
    let (_, got) = kpis(&app, &now("0461"), None).await;
    assert_eq!(got["dischargeNotesWithWarnings"], 1, "{got}");
    let composition = odense["composition"].as_str().expect("composition");
    let status = app.delete(composition).await.status().as_u16();
    assert!(
        matches!(status, 200 | 204),
        "DELETE {composition}: {status}"
    );
    let (_, got) = kpis(&app, &now("0461"), None).await;
    assert_eq!(got["dischargeNotesWithWarnings"], 0, "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discharge_notes_with_warnings_sqlite() {
    discharge_notes_with_warnings_are_counted(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discharge_notes_with_warnings_postgres() {
    discharge_notes_with_warnings_are_counted(Db::Postgres).await;
}

on_both_backends!(
    figures_follow_the_stored_records_and_the_period,
    only_the_municipalitys_clients_and_administrators_get_its_figures,
);
