//! `GET /fhir/Measure/{id}/$evaluate-measure`: each KPI Measure's MeasureReport carries the KPI
//! API's figures for the same period, validates against R4 with our validator, and the Measures
//! published in profiles/measures/ are valid R4. Access as the KPI API's; bad queries get every
//! problem at once.

use std::collections::BTreeSet;

use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};

use crate::helpers::TestApp;
use crate::on_both_backends;
use crate::tokens::token;
use fhir_core::validation::Validator;

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/fixtures/municipal/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

async fn get(app: &TestApp, path: &str, tok: Option<&str>) -> (u16, Value) {
    let mut req = app.client.get(format!("{}{path}", app.addr));
    if let Some(t) = tok {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.expect("a JSON body"))
}

fn errors(v: &Validator, resource: &Value) -> Vec<String> {
    v.validate(resource, &[])
        .into_iter()
        .filter(|i| matches!(i.severity.as_str(), "error" | "fatal"))
        .map(|i| format!("{} [{}]", i.diagnostics, i.expression.unwrap_or_default()))
        .collect()
}

fn population(group: &Value, code: &str) -> Value {
    group["population"]
        .as_array()
        .expect("populations")
        .iter()
        .find(|p| p["code"]["coding"][0]["code"] == code)
        .map(|p| p["count"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn published_measures_are_valid_r4() {
    let v = Validator::shared_embedded().expect("definitions");
    for text in sektorbro::report::measures::MEASURES {
        let m: Value = serde_json::from_str(text).expect("json");
        assert_eq!(errors(&v, &m), Vec::<String>::new(), "{}", m["id"]);
    }
}

async fn reports_carry_the_kpi_figures_and_validate(app: TestApp) {
    for name in [
        "completed-discharged-home",
        "odense-copd-follow-up-ready-for-discharge",
    ] {
        let res = app
            .client
            .post(format!("{}/municipal/v1/care-records", app.addr))
            .header(CONTENT_TYPE, "application/json")
            .body(fixture(name).to_string())
            .send()
            .await
            .expect("post");
        assert!(res.status().is_success(), "{name}");
    }
    let v = Validator::shared_embedded().expect("definitions");
    // [2025-01-01, 2025-12-31] is the KPI API's [2025-01-01, 2026-01-01).
    for m in ["0621", "0461"] {
        let (status, kpis) = get(
            &app,
            &format!("/municipal/v1/kpis?municipality={m}&from=2025-01-01&to=2026-01-01"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{kpis}");
        let eval = |id: &str| {
            format!("/fhir/Measure/{id}/$evaluate-measure?periodStart=2025-01-01&periodEnd=2025-12-31&subject=Organization/{m}")
        };
        let mut reports = Vec::new();
        for id in sektorbro::report::measures::ids() {
            let (status, r) = get(&app, &eval(&id), None).await;
            assert_eq!(status, 200, "{id}: {r}");
            assert_eq!(r["resourceType"], "MeasureReport");
            assert_eq!(r["type"], "summary");
            assert_eq!(
                r["measure"],
                format!("http://sektorbro.dk/fhir/Measure/{id}|1.0.0")
            );
            assert_eq!(
                r["period"],
                json!({"start": "2025-01-01", "end": "2025-12-31"})
            );
            assert_eq!(r["subject"]["identifier"]["value"], m);
            assert_eq!(errors(&v, &r), Vec::<String>::new(), "{id}: {r}");
            // SEKTORBRO_WRITE_MEASURE_REPORTS=DIR keeps them, for the reference validator.
            if let Some(dir) = std::env::var_os("SEKTORBRO_WRITE_MEASURE_REPORTS") {
                let file = std::path::Path::new(&dir).join(format!("{m}-{id}.json"));
                std::fs::write(file, r.to_string()).expect("write report");
            }
            reports.push((id, r));
        }
        let of = |id: &str| &reports.iter().find(|(i, _)| i == id).expect(id).1;
        let w = &of("kpi-discharged-within-24h")["group"][0];
        assert_eq!(
            population(w, "numerator"),
            kpis["dischargedWithin24h"]["numerator"]
        );
        assert_eq!(
            population(w, "denominator"),
            kpis["dischargedWithin24h"]["denominator"]
        );
        assert_eq!(
            w["measureScore"]["value"],
            kpis["dischargedWithin24h"]["rate"]
        );
        for (id, key) in [
            ("kpi-ready-to-discharge-hours", "readyToDischargeHours"),
            ("kpi-temporary-stay-days", "temporaryStayDays"),
        ] {
            let r = of(id);
            assert_eq!(
                population(&r["group"][0], "measure-population"),
                kpis[key]["n"]
            );
            assert_eq!(
                r["group"][0]["measureScore"]["value"].as_f64(),
                kpis[key]["median"].as_f64(),
                "{id}"
            );
            assert_eq!(
                r["group"][1]["measureScore"]["value"].as_f64(),
                kpis[key]["p90"].as_f64(),
                "{id}"
            );
        }
        let g = &of("kpi-goal-attainment")["group"][0];
        assert_eq!(population(g, "initial-population"), kpis["goals"]["total"]);
        for s in g["stratifier"][0]["stratum"].as_array().expect("strata") {
            let key = s["value"]["text"].as_str().expect("stratum");
            assert_eq!(
                population(s, "initial-population"),
                kpis["goals"][key],
                "{key}"
            );
        }
        let p = &of("kpi-courses-by-phase")["group"][0];
        for s in p["stratifier"][0]["stratum"].as_array().expect("strata") {
            let key = s["value"]["coding"][0]["code"].as_str().expect("phase");
            assert_eq!(
                population(s, "initial-population"),
                kpis["coursesByPhase"][key],
                "{key}"
            );
        }
        assert_eq!(
            population(
                &of("kpi-readmissions-during-course")["group"][0],
                "initial-population"
            ),
            kpis["readmissionsDuringCourse"]
        );
        assert_eq!(
            population(
                &of("kpi-discharge-notes-with-warnings")["group"][0],
                "initial-population"
            ),
            kpis["dischargeNotesWithWarnings"]
        );
    }
    // Kolding's one stay: 0 of 1 within 24 hours.
    let (_, r) = get(
        &app,
        "/fhir/Measure/kpi-discharged-within-24h/$evaluate-measure?periodStart=2025-01-01&periodEnd=2025-12-31&subject=Organization/0621",
        None,
    )
    .await;
    assert_eq!(population(&r["group"][0], "denominator"), 1);
    assert_eq!(r["group"][0]["measureScore"]["value"], 0.0);
}

async fn access_and_bad_queries_as_the_kpi_api(app: TestApp) {
    let kolding = token("kolding", "system/*.cruds");
    let res = app
        .client
        .post(format!("{}/municipal/v1/care-records", app.addr))
        .bearer_auth(&kolding)
        .header(CONTENT_TYPE, "application/json")
        .body(fixture("completed-discharged-home").to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 201);
    let path = "/fhir/Measure/kpi-goal-attainment/$evaluate-measure?periodStart=2025-01-01&periodEnd=2025-12-31&subject=Organization/0621";
    let (status, r) = get(&app, path, Some(&kolding)).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["group"][0]["population"][0]["count"], 5);
    for (client, scope) in [
        ("haderslev", "system/*.cruds"),
        ("region-syd", "system/*.rs"),
    ] {
        let (status, body) = get(&app, path, Some(&token(client, scope))).await;
        assert_eq!(status, 403, "{client}: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome");
    }
    let (status, body) = get(
        &app,
        "/fhir/Measure/kpi-goal-attainment/$evaluate-measure?periodStart=2025-13-01&subject=0621&x=1",
        Some(&kolding),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let at: BTreeSet<&str> = body["issue"]
        .as_array()
        .expect("issues")
        .iter()
        .filter_map(|i| i["expression"][0].as_str())
        .collect();
    assert_eq!(
        at,
        BTreeSet::from(["periodStart", "periodEnd", "subject", "x"]),
        "{body}"
    );
    let (status, body) = get(
        &app,
        "/fhir/Measure/no-such/$evaluate-measure?periodStart=2025-01-01&periodEnd=2025-12-31&subject=Organization/0621",
        Some(&kolding),
    )
    .await;
    assert_eq!(status, 404, "{body}");
}

on_both_backends!(
    reports_carry_the_kpi_figures_and_validate,
    access_and_bad_queries_as_the_kpi_api,
);
