//! What the console's Flows page shows besides the KPI body (pure): histograms of the KPI rows'
//! stay times, the months of a period, and from a searchset of a municipality's course CarePlans
//! (with their Goals, stay Encounters and Patients included) the goal attainment per discipline
//! and the stays waiting past ready-for-discharge.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::municipal::vocab;
use crate::store::kpis::StayTimes;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

fn start_ms(s: Option<&str>) -> Option<i64> {
    fhir_core::fhir::search_params::date_range(s?).map(|(lo, _)| lo)
}

fn end_ms(s: Option<&str>) -> Option<i64> {
    fhir_core::fhir::search_params::date_range(s?).map(|(_, hi)| hi)
}

/// Hours from ready to discharged and days from admitted to discharged, of the stays discharged
/// in `[from_ms, to_ms)` (as `readyToDischargeHours` and `temporaryStayDays` count them).
pub fn stay_values(stays: &[StayTimes], from_ms: i64, to_ms: i64) -> (Vec<f64>, Vec<f64>) {
    let mut hours = Vec::new();
    let mut days = Vec::new();
    for s in stays {
        let Some(d) = s.discharged_ms.filter(|d| *d >= from_ms && *d < to_ms) else {
            continue;
        };
        if let Some(r) = s.ready_ms {
            hours.push((d - r) as f64 / HOUR_MS as f64);
        }
        if let Some(a) = s.admitted_ms {
            days.push((d - a) as f64 / DAY_MS as f64);
        }
    }
    (hours, days)
}

/// How many values fall in each bucket `[edges[i], edges[i+1])`, the last bucket open-ended
/// (`edges.len()` buckets); values below the first edge count in the first.
pub fn histogram(values: &[f64], edges: &[f64]) -> Vec<u64> {
    let mut counts = vec![0u64; edges.len()];
    for v in values {
        let i = edges.iter().rposition(|e| v >= e).unwrap_or(0);
        counts[i] += 1;
    }
    counts
}

/// The calendar months `[start, next)` (dates `YYYY-MM-DD`) that `[from, to)` touches, at most
/// `max` (the last ones).
pub fn months(from: chrono::NaiveDate, to: chrono::NaiveDate, max: usize) -> Vec<(String, String)> {
    use chrono::Datelike as _;
    let mut out = Vec::new();
    let Some(mut m) = chrono::NaiveDate::from_ymd_opt(from.year(), from.month(), 1) else {
        return out;
    };
    while m < to {
        let Some(next) = m.checked_add_months(chrono::Months::new(1)) else {
            break;
        };
        out.push((
            m.format("%Y-%m-%d").to_string(),
            next.format("%Y-%m-%d").to_string(),
        ));
        m = next;
    }
    let skip = out.len().saturating_sub(max);
    out.split_off(skip)
}

/// A CPR number shown as its birth date and a mask (`010145-****`); anything else fully masked.
pub fn masked_cpr(cpr: &str) -> String {
    let digits: String = cpr.chars().filter(char::is_ascii_digit).collect();
    if digits.len() == 10 {
        format!("{}-****", &digits[..6])
    } else {
        "******-****".to_string()
    }
}

/// Goal counts of one discipline: achieved, not achieved, in progress, other.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Attainment {
    pub achieved: u64,
    pub not_achieved: u64,
    pub in_progress: u64,
    pub other: u64,
}

impl Attainment {
    pub fn total(&self) -> u64 {
        self.achieved + self.not_achieved + self.in_progress + self.other
    }
}

/// A stay waiting past ready-for-discharge.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub record: String,
    pub masked_cpr: String,
    pub ready: String,
    pub hours: f64,
}

/// What the courses searchset gives the Flows page.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Courses {
    /// Discipline code (or "" for none) → goal counts, of the courses active in the period.
    pub by_discipline: BTreeMap<String, Attainment>,
    /// Longest wait first.
    pub waiting: Vec<Waiting>,
    /// Whether the searchset had a next page (the figures cover its first page only).
    pub truncated: bool,
}

fn reference_key(v: &Value) -> Option<String> {
    v.get("reference")
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn extension<'a>(res: &'a Value, url: &str) -> Option<&'a Value> {
    res.get("extension")?
        .as_array()?
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(url))
}

/// Read a searchset of course CarePlans with `_include=CarePlan:goal`, `CarePlan:encounter` and
/// `CarePlan:subject`.
pub fn courses(bundle: &Value, from_ms: i64, to_ms: i64, now_ms: i64) -> Courses {
    let mut by_ref: HashMap<String, &Value> = HashMap::new();
    let mut plans = Vec::new();
    let entries = bundle
        .get("entry")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for e in entries {
        let Some(res) = e.get("resource") else {
            continue;
        };
        let rtype = res
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("");
        let id = res.get("id").and_then(Value::as_str).unwrap_or("");
        by_ref.insert(format!("{rtype}/{id}"), res);
        if rtype == "CarePlan"
            && e.pointer("/search/mode").and_then(Value::as_str) != Some("include")
        {
            plans.push(res);
        }
    }
    let mut out = Courses {
        truncated: bundle
            .get("link")
            .and_then(Value::as_array)
            .is_some_and(|ls| {
                ls.iter()
                    .any(|l| l.get("relation").and_then(Value::as_str) == Some("next"))
            }),
        ..Courses::default()
    };
    for plan in plans {
        let record = plan
            .pointer("/identifier/0/value")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let start = start_ms(plan.pointer("/period/start").and_then(Value::as_str));
        let end = end_ms(plan.pointer("/period/end").and_then(Value::as_str));
        let active = start.is_some_and(|s| s < to_ms) && end.is_none_or(|e| e >= from_ms);
        if active {
            for g in plan
                .get("goal")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(goal) = reference_key(g).and_then(|r| by_ref.get(&r).copied()) else {
                    continue;
                };
                let discipline = extension(goal, vocab::ext::DISCIPLINE)
                    .and_then(|e| e.pointer("/valueCodeableConcept/coding/0/code"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let a = out.by_discipline.entry(discipline).or_default();
                match goal
                    .pointer("/achievementStatus/coding/0/code")
                    .and_then(Value::as_str)
                {
                    Some("achieved" | "sustaining") => a.achieved += 1,
                    Some("not-achieved" | "no-progress" | "not-attainable") => a.not_achieved += 1,
                    Some("in-progress" | "improving" | "worsening" | "no-change") => {
                        a.in_progress += 1
                    }
                    _ => a.other += 1,
                }
            }
        }
        let Some(stay) = plan
            .get("encounter")
            .and_then(reference_key)
            .and_then(|r| by_ref.get(&r).copied())
        else {
            continue;
        };
        if stay.pointer("/period/end").is_some() {
            continue;
        }
        let Some(ready_text) = extension(stay, vocab::ext::READY_FOR_DISCHARGE)
            .and_then(|e| e.get("valueDateTime"))
            .and_then(Value::as_str)
        else {
            continue;
        };
        let Some(ready) = start_ms(Some(ready_text)).filter(|r| *r <= now_ms) else {
            continue;
        };
        let cpr = plan
            .get("subject")
            .and_then(reference_key)
            .and_then(|r| by_ref.get(&r).copied())
            .and_then(|p| p.get("identifier"))
            .and_then(Value::as_array)
            .and_then(|ids| {
                ids.iter()
                    .find(|i| i.get("system").and_then(Value::as_str) == Some(vocab::CPR))
            })
            .and_then(|i| i.get("value"))
            .and_then(Value::as_str)
            .unwrap_or("");
        out.waiting.push(Waiting {
            record,
            masked_cpr: masked_cpr(cpr),
            ready: ready_text.to_string(),
            hours: (now_ms - ready) as f64 / HOUR_MS as f64,
        });
    }
    out.waiting.sort_by(|a, b| b.hours.total_cmp(&a.hours));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_and_open_end() {
        assert_eq!(
            histogram(&[0.0, 5.0, 24.0, 30.0, 500.0], &[0.0, 24.0, 48.0]),
            vec![2, 2, 1]
        );
    }

    #[test]
    fn months_cover_the_period() {
        let d = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        let m = months(d("2025-01-15"), d("2025-03-01"), 24);
        assert_eq!(
            m,
            vec![
                ("2025-01-01".to_string(), "2025-02-01".to_string()),
                ("2025-02-01".to_string(), "2025-03-01".to_string())
            ]
        );
        assert_eq!(months(d("2020-01-01"), d("2025-01-01"), 3).len(), 3);
    }

    #[test]
    fn cpr_is_masked() {
        assert_eq!(masked_cpr("0101451234"), "010145-****");
        assert_eq!(masked_cpr("x"), "******-****");
    }
}
