//! The care-flow KPIs of one municipality over a period (`GET /municipal/v1/kpis`): the
//! arithmetic on the rows `store::kpis` reads (definitions in docs/kpis.md).

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::store::hospital_events::{admissions_within, HospitalEvent};
use crate::store::kpis::{ActiveCourse, KpiRows, StayTimes};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// The phases reported, in their order.
pub const PHASES: [&str; 5] = [
    "assessment",
    "goal-setting",
    "intervention",
    "follow-up",
    "completed",
];

/// The first millisecond a FHIR date or dateTime covers.
fn start_ms(s: Option<&str>) -> Option<i64> {
    fhir_core::fhir::search_params::date_range(s?).map(|(lo, _)| lo)
}

/// The last millisecond a FHIR date or dateTime covers.
fn end_ms(s: Option<&str>) -> Option<i64> {
    fhir_core::fhir::search_params::date_range(s?).map(|(_, hi)| hi)
}

/// `{"n", "median", "p90"}`: the median (mean of the two middle values for an even count) and
/// the 90th percentile by nearest rank, rounded to two decimals; `null` for no values.
pub fn distribution(mut values: Vec<f64>) -> Value {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return json!({"n": 0, "median": null, "p90": null});
    }
    let round = |x: f64| (x * 100.0).round() / 100.0;
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    // Nearest rank: the smallest value with at least 90 % of the values at or below it.
    let rank = (n * 9).div_ceil(10).max(1);
    json!({"n": n, "median": round(median), "p90": round(values[rank - 1])})
}

fn within(t: i64, from_ms: i64, to_ms: i64) -> bool {
    t >= from_ms && t < to_ms
}

/// The stay figures: `(dischargedWithin24h, readyToDischargeHours, temporaryStayDays)`.
pub fn stay_figures(
    stays: &[StayTimes],
    from_ms: i64,
    to_ms: i64,
    now_ms: i64,
) -> (Value, Value, Value) {
    let (mut num, mut den) = (0u64, 0u64);
    let mut ready_hours = Vec::new();
    let mut stay_days = Vec::new();
    for s in stays {
        let (admitted, ready, discharged) = (s.admitted_ms, s.ready_ms, s.discharged_ms);
        if let Some(r) = ready.filter(|r| within(*r, from_ms, to_ms)) {
            match discharged {
                Some(d) => {
                    den += 1;
                    if d - r <= DAY_MS {
                        num += 1;
                    }
                }
                None if now_ms - r >= DAY_MS => den += 1,
                None => {}
            }
        }
        if let Some(d) = discharged.filter(|d| within(*d, from_ms, to_ms)) {
            if let Some(r) = ready {
                ready_hours.push((d - r) as f64 / HOUR_MS as f64);
            }
            if let Some(a) = admitted {
                stay_days.push((d - a) as f64 / DAY_MS as f64);
            }
        }
    }
    let rate = if den == 0 {
        Value::Null
    } else {
        json!(((num as f64 / den as f64) * 10_000.0).round() / 10_000.0)
    };
    (
        json!({"numerator": num, "denominator": den, "rate": rate}),
        distribution(ready_hours),
        distribution(stay_days),
    )
}

/// Goals of the active courses by their current achievement (the store counted them by code).
pub fn goal_figures(goals: &[(Option<String>, i64)]) -> Value {
    let (mut total, mut achieved, mut not, mut progress, mut other) = (0, 0, 0, 0, 0);
    for (code, n) in goals {
        total += n;
        match code.as_deref() {
            Some("achieved" | "sustaining") => achieved += n,
            Some("not-achieved" | "no-progress" | "not-attainable") => not += n,
            Some("in-progress" | "improving" | "worsening" | "no-change") => progress += n,
            _ => other += n,
        }
    }
    json!({"total": total, "achieved": achieved, "notAchieved": not, "inProgress": progress, "other": other})
}

/// Active courses by their current phase (the store counted them by code; a phase outside the
/// five counts in none).
pub fn phase_figures(phases: &[(Option<String>, i64)]) -> Value {
    let mut out = serde_json::Map::new();
    for p in PHASES {
        let n: i64 = phases
            .iter()
            .filter(|(code, _)| code.as_deref() == Some(p))
            .map(|(_, n)| n)
            .sum();
        out.insert(p.to_string(), json!(n));
    }
    Value::Object(out)
}

/// Hospital admissions that began during an active course and within the period, summed over the
/// courses (`admissions_within` on the part of each course inside `[from, to)`): `courses` are the
/// active courses whose citizens have events, `events` those events.
pub fn readmissions(
    courses: &[ActiveCourse],
    events: &[HospitalEvent],
    from_ms: i64,
    to_ms: i64,
) -> usize {
    let mut by_citizen: HashMap<&str, Vec<HospitalEvent>> = HashMap::new();
    for e in events {
        by_citizen
            .entry(e.citizen.as_str())
            .or_default()
            .push(e.clone());
    }
    let mut total = 0;
    for c in courses {
        let Some(start) = start_ms(c.start.as_deref()) else {
            continue;
        };
        let Some(ev) = by_citizen.get(c.citizen.as_str()) else {
            continue;
        };
        let end = end_ms(c.end.as_deref()).map_or(to_ms - 1, |e| e.min(to_ms - 1));
        total += admissions_within(ev, start.max(from_ms), Some(end));
    }
    total
}

/// The response body.
pub fn body(
    municipality: &str,
    from: &str,
    to: &str,
    rows: &KpiRows,
    from_ms: i64,
    to_ms: i64,
    now_ms: i64,
) -> Value {
    let (within24, ready, stay) = stay_figures(&rows.stays, from_ms, to_ms, now_ms);
    json!({
        "municipality": municipality,
        "from": from,
        "to": to,
        "dischargedWithin24h": within24,
        "readyToDischargeHours": ready,
        "temporaryStayDays": stay,
        "goals": goal_figures(&rows.goals),
        "coursesByPhase": phase_figures(&rows.phases),
        "readmissionsDuringCourse": readmissions(&rows.courses, &rows.events, from_ms, to_ms),
        "dischargeNotesWithWarnings": rows.notes_with_warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_median_and_nearest_rank_p90() {
        assert_eq!(
            distribution(vec![]),
            json!({"n": 0, "median": null, "p90": null})
        );
        assert_eq!(
            distribution(vec![4.0, 1.0, 3.0, 2.0]),
            json!({"n": 4, "median": 2.5, "p90": 4.0})
        );
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(
            distribution(ten),
            json!({"n": 10, "median": 5.5, "p90": 9.0})
        );
    }
}
