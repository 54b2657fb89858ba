//! A MeasureReport checked against its Measure, when the Measure can be found (contained, in the
//! Bundle, in the loaded packages): each report group names a group of the Measure (by code;
//! a Measure with one uncoded group takes one report group), every group of the Measure is
//! reported, and each group's populations are those the Measure defines for it, all of them.
//! A Measure that cannot be found leaves the report unchecked, with no issue (the reference
//! validator says the same only as a hint).

use crate::fhir::Member;
use serde_json::{Map, Value};

use super::walk::Run;
use crate::fhir::outcome::Severity;

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.member(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The (system, code) pairs of a CodeableConcept.
fn codes(cc: Option<&Value>) -> Vec<(Option<&str>, &str)> {
    cc.map(|c| list(c, "coding"))
        .unwrap_or(&[])
        .iter()
        .filter_map(|c| {
            Some((
                c.get("system").and_then(Value::as_str),
                c.get("code")?.as_str()?,
            ))
        })
        .collect()
}

fn same_concept(a: Option<&Value>, b: Option<&Value>) -> bool {
    let (x, y) = (codes(a), codes(b));
    x.iter().any(|c| y.contains(c))
}

fn show(cc: Option<&Value>) -> String {
    codes(cc)
        .iter()
        .map(|(s, c)| match s {
            Some(s) => format!("{s}#{c}"),
            None => c.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn check_report(run: &mut Run<'_, '_>, obj: &Map<String, Value>) {
    let Some(canonical) = obj.get("measure").and_then(Value::as_str) else {
        return;
    };
    let Some(measure) = run.find_canonical("Measure", canonical, obj) else {
        return;
    };
    let empty = Value::Null;
    let report_groups = obj
        .get("group")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let measure_groups = list(measure, "group");
    let mark = run.path.len();
    let mut matched: Vec<bool> = vec![false; measure_groups.len()];
    for (i, g) in report_groups.iter().enumerate() {
        let _ = std::fmt::Write::write_fmt(&mut run.path, format_args!(".group[{i}]"));
        let code = g.get("code");
        let found = if measure_groups.len() == 1 && measure_groups[0].get("code").is_none() {
            (i == 0).then_some(0)
        } else {
            measure_groups
                .iter()
                .position(|m| same_concept(m.get("code"), code))
        };
        match found {
            None => run.issue(
                Severity::Error,
                "business-rule",
                if code.is_none() {
                    format!("the Measure {canonical} has coded groups, so each report group needs the code of one of them")
                } else {
                    format!("the group code {} is not one of the Measure's groups ({canonical})", show(code))
                },
            ),
            Some(m) => {
                matched[m] = true;
                populations(run, g, measure_groups.get(m).unwrap_or(&empty), canonical);
            }
        }
        run.path.truncate(mark);
    }
    for (m, g) in measure_groups.iter().enumerate() {
        if !matched[m] {
            let name = if g.get("code").is_some() {
                show(g.get("code"))
            } else {
                format!("#{}", m + 1)
            };
            run.issue(
                Severity::Error,
                "business-rule",
                format!("the Measure {canonical} defines group {name}, which the report does not contain"),
            );
        }
    }
}

fn populations(run: &mut Run<'_, '_>, group: &Value, measure_group: &Value, canonical: &str) {
    let defined = list(measure_group, "population");
    let given = list(group, "population");
    let mark = run.path.len();
    let mut seen = vec![false; defined.len()];
    for (i, p) in given.iter().enumerate() {
        let code = p.get("code");
        match defined
            .iter()
            .position(|d| same_concept(d.get("code"), code))
        {
            Some(d) => seen[d] = true,
            None => {
                let _ = std::fmt::Write::write_fmt(&mut run.path, format_args!(".population[{i}]"));
                run.issue(
                    Severity::Error,
                    "business-rule",
                    format!("the population {} is not defined for this group by the Measure {canonical}", show(code)),
                );
                run.path.truncate(mark);
            }
        }
    }
    for (d, p) in defined.iter().enumerate() {
        if !seen[d] {
            run.issue(
                Severity::Error,
                "business-rule",
                format!("the Measure {canonical} defines the population {} for this group, which the report does not contain", show(p.get("code"))),
            );
        }
    }
}
