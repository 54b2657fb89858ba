//! The KPIs as FHIR: one `Measure` per figure of `GET /municipal/v1/kpis` (`profiles/measures/`,
//! embedded), and the `MeasureReport` of `$evaluate-measure` built from the KPI body (pure; the
//! figures come from `api::kpis::figures`).

use serde_json::{json, Map, Value};

use crate::municipal::vocab;

const POPULATION: &str = "http://terminology.hl7.org/CodeSystem/measure-population";
const UCUM: &str = "http://unitsofmeasure.org";
/// Names the groups of a continuous-variable Measure (`median`, `p90`) and the stratifiers
/// (`achievement`, `phase`), so that a report's groups are matched to the Measure's by code.
const STATISTIC: &str = "http://sektorbro.dk/fhir/CodeSystem/kpi-statistic";
const PHASE_SYSTEM: &str = "http://sektorbro.dk/fhir/CodeSystem/rehab-phase";

/// The embedded Measures, as published in `profiles/measures/`.
pub const MEASURES: [&str; 7] = [
    include_str!("../../profiles/measures/Measure-kpi-discharged-within-24h.json"),
    include_str!("../../profiles/measures/Measure-kpi-ready-to-discharge-hours.json"),
    include_str!("../../profiles/measures/Measure-kpi-temporary-stay-days.json"),
    include_str!("../../profiles/measures/Measure-kpi-goal-attainment.json"),
    include_str!("../../profiles/measures/Measure-kpi-courses-by-phase.json"),
    include_str!("../../profiles/measures/Measure-kpi-readmissions-during-course.json"),
    include_str!("../../profiles/measures/Measure-kpi-discharge-notes-with-warnings.json"),
];

/// The Measure with this id.
pub fn measure(id: &str) -> Option<Value> {
    MEASURES
        .iter()
        .filter_map(|text| serde_json::from_str::<Value>(text).ok())
        .find(|m| m.get("id").and_then(Value::as_str) == Some(id))
}

/// The ids of the embedded Measures.
pub fn ids() -> Vec<String> {
    MEASURES
        .iter()
        .filter_map(|text| serde_json::from_str::<Value>(text).ok())
        .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_string))
        .collect()
}

fn population(code: &str, count: u64) -> Value {
    json!({"code": {"coding": [{"system": POPULATION, "code": code}]}, "count": count})
}

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// A continuous-variable group (`median` or `p90`) of a `{n, median, p90}` distribution.
fn distribution_group(dist: &Value, statistic: &str, unit: &str) -> Value {
    let n = count(&dist["n"]);
    let mut group = Map::new();
    group.insert(
        "code".into(),
        json!({"coding": [{"system": STATISTIC, "code": statistic}], "text": statistic}),
    );
    group.insert(
        "population".into(),
        json!([
            population("initial-population", n),
            population("measure-population", n),
            population("measure-observation", n)
        ]),
    );
    if let Some(x) = dist[statistic].as_f64() {
        group.insert(
            "measureScore".into(),
            json!({"value": x, "unit": unit, "system": UCUM, "code": unit}),
        );
    }
    Value::Object(group)
}

fn stratum(text: &str, coding: Option<(&str, &str)>, n: u64) -> Value {
    let value = match coding {
        Some((system, code)) => json!({"coding": [{"system": system, "code": code}], "text": text}),
        None => json!({"text": text}),
    };
    json!({"value": value, "population": [population("initial-population", n)]})
}

/// The one group of a cohort Measure whose initial population is a count of the KPI body.
fn cohort(n: &Value) -> Value {
    json!([{"population": [population("initial-population", count(n))]}])
}

/// The groups of a Measure's report, from the KPI body; `None` for an unknown Measure id.
fn groups(id: &str, kpis: &Value) -> Option<Value> {
    Some(match id {
        "kpi-discharged-within-24h" => {
            let f = &kpis["dischargedWithin24h"];
            let den = count(&f["denominator"]);
            let mut group = json!({"population": [
                population("initial-population", den),
                population("denominator", den),
                population("numerator", count(&f["numerator"])),
            ]});
            if let Some(rate) = f["rate"].as_f64() {
                group["measureScore"] = json!({"value": rate});
            }
            json!([group])
        }
        "kpi-ready-to-discharge-hours" => {
            let d = &kpis["readyToDischargeHours"];
            json!([
                distribution_group(d, "median", "h"),
                distribution_group(d, "p90", "h")
            ])
        }
        "kpi-temporary-stay-days" => {
            let d = &kpis["temporaryStayDays"];
            json!([
                distribution_group(d, "median", "d"),
                distribution_group(d, "p90", "d")
            ])
        }
        "kpi-goal-attainment" => {
            let g = &kpis["goals"];
            let strata: Vec<Value> = ["achieved", "notAchieved", "inProgress", "other"]
                .iter()
                .map(|k| stratum(k, None, count(&g[*k])))
                .collect();
            json!([{
                "population": [population("initial-population", count(&g["total"]))],
                "stratifier": [{"code": [{"coding": [{"system": STATISTIC, "code": "achievement"}], "text": "achievement"}], "stratum": strata}],
            }])
        }
        "kpi-courses-by-phase" => {
            let p = &kpis["coursesByPhase"];
            let phases = crate::report::kpis::PHASES;
            let total: u64 = phases.iter().map(|k| count(&p[*k])).sum();
            let strata: Vec<Value> = phases
                .iter()
                .map(|k| stratum(k, Some((PHASE_SYSTEM, k)), count(&p[*k])))
                .collect();
            json!([{
                "population": [population("initial-population", total)],
                "stratifier": [{"code": [{"coding": [{"system": STATISTIC, "code": "phase"}], "text": "phase"}], "stratum": strata}],
            }])
        }
        "kpi-readmissions-during-course" => cohort(&kpis["readmissionsDuringCourse"]),
        "kpi-discharge-notes-with-warnings" => cohort(&kpis["dischargeNotesWithWarnings"]),
        _ => return None,
    })
}

/// The summary MeasureReport of a Measure for a municipality over `[period_start,
/// period_end]` (dates, both included), from the KPI body computed over that period; `None` for
/// an unknown Measure.
pub fn report(
    measure: &Value,
    kpis: &Value,
    municipality: &str,
    period_start: &str,
    period_end: &str,
    now: &str,
) -> Option<Value> {
    let id = measure.get("id").and_then(Value::as_str)?;
    let url = measure.get("url").and_then(Value::as_str)?;
    let version = measure.get("version").and_then(Value::as_str)?;
    let mut report = json!({
        "resourceType": "MeasureReport",
        "status": "complete",
        "type": "summary",
        "measure": format!("{url}|{version}"),
        "subject": {
            "identifier": {"system": vocab::MUNICIPALITY_CODES, "value": municipality},
            "display": format!("Organization/{municipality}"),
        },
        "date": now,
        "period": {"start": period_start, "end": period_end},
        "group": groups(id, kpis)?,
    });
    if let Some(notation) = measure.get("improvementNotation") {
        report["improvementNotation"] = notation.clone();
    }
    Some(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_measure_has_groups_and_its_file_name_is_its_id() {
        let ids = ids();
        assert_eq!(ids.len(), MEASURES.len());
        let body = json!({});
        for id in &ids {
            assert!(groups(id, &body).is_some(), "{id}");
            let path = format!(
                "{}/profiles/measures/Measure-{id}.json",
                env!("CARGO_MANIFEST_DIR")
            );
            assert!(std::path::Path::new(&path).exists(), "{path}");
        }
    }
}
