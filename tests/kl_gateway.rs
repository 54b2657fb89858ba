//! KL Gateway delivery reports from the municipal fixtures: each validates with 0 errors against
//! its IG (the gateway's own validator, the IG packages at the versions they declare), carries
//! what the record has that the IG takes, and the `report kl-gateway` command prints them.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use fhir_core::validation::{has_errors, Validator};
use sektorbro::municipal::record::CareRecord;
use sektorbro::report::facts::Facts;
use sektorbro::report::kl_gateway::{citizen_report, delivery, Kind};

fn fixtures() -> Vec<PathBuf> {
    let dir = format!("{}/fixtures/municipal", env!("CARGO_MANIFEST_DIR"));
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    out.sort();
    assert!(out.len() >= 10, "the municipal fixtures");
    out
}

fn record(path: &PathBuf, v: &Validator) -> CareRecord {
    let bytes = std::fs::read(path).expect("fixture");
    sektorbro::municipal::check_bytes(&bytes, &v.terminology)
        .expect("a valid record")
        .0
}

fn errors(v: &Validator, resource: &Value, profiles: &[String]) -> Vec<String> {
    v.validate(resource, profiles)
        .into_iter()
        .filter(|i| i.severity.as_str() == "error" || i.severity.as_str() == "fatal")
        .map(|i| format!("{} [{}]", i.diagnostics, i.expression.unwrap_or_default()))
        .collect()
}

fn resources<'a>(report: &'a Value, rtype: &str) -> Vec<&'a Value> {
    report["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == rtype)
        .collect()
}

const NOW: &str = "2026-12-03T12:00:00Z";

#[test]
fn every_fixtures_report_validates_against_its_ig() {
    let v = Validator::shared_embedded().expect("definitions");
    let mut totals = (0, 0);
    for path in fixtures() {
        let rec = record(&path, &v);
        let kind = Kind::of(&rec);
        let text = delivery(kind, std::slice::from_ref(&rec), &v.terminology, "d1", NOW);
        let envelope: Value = serde_json::from_str(&text).expect("the envelope is JSON");
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert_eq!(
            envelope["meta"]["profile"][0],
            kind.envelope_profile().as_str(),
            "{name}"
        );
        let errs = errors(&v, &envelope, &[]);
        assert!(errs.is_empty(), "{name}: the envelope: {errs:#?}");
        let report = &envelope["entry"][0]["resource"];
        let errs = errors(&v, report, &[kind.report_profile()]);
        assert!(errs.is_empty(), "{name}: the report: {errs:#?}");

        // The citizen, and every course part the IG takes.
        let patients = resources(report, "Patient");
        assert_eq!(patients.len(), 1, "{name}");
        assert_eq!(
            patients[0]["identifier"][0]["value"],
            rec.citizen.cpr.as_str()
        );
        let conditions = resources(report, "Condition");
        let plans = resources(report, "CarePlan");
        let encounters = resources(report, "Encounter");
        let present = rec.meetings.iter().filter(|m| m.citizen_present).count();
        assert_eq!(
            encounters.len(),
            present,
            "{name}: one Encounter per meeting with the citizen"
        );
        assert!(conditions.len() <= rec.conditions.len());
        // Only the record's own codes, and the §140 course with its training interventions.
        let codes: BTreeSet<&str> = rec.conditions.iter().map(|c| c.code.as_str()).collect();
        for c in &conditions {
            assert!(codes.contains(c["code"]["coding"][0]["code"].as_str().unwrap()));
        }
        totals.0 += conditions.len();
        totals.1 += plans.len();
        if kind == Kind::Rehab140 {
            assert!(plans.len() > 1, "{name}: the course and its interventions");
        }
        // Every reference points into the report.
        let urls: BTreeSet<&str> = report["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["fullUrl"].as_str())
            .collect();
        let mut refs = Vec::new();
        collect_refs(report, &mut refs);
        for r in refs {
            assert!(
                urls.contains(r.as_str()),
                "{name}: {r} is not in the report"
            );
        }
    }
    // Counted by hand from the value sets (KL's home-care conditions with a severity, nursing
    // conditions, FSIII care and training interventions) over the fixtures, plus the §140 course.
    assert_eq!(totals, (18, 31));
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "reference" {
                    out.extend(x.as_str().map(String::from));
                } else {
                    collect_refs(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

#[test]
fn the_validator_refuses_a_report_that_breaks_the_ig() {
    // The check above is only worth something if a broken report fails it.
    let v = Validator::shared_embedded().expect("definitions");
    for path in fixtures() {
        let rec = record(&path, &v);
        let kind = Kind::of(&rec);
        let facts = Facts::of(&rec);
        let mut report = citizen_report(kind, &[&facts], &v.terminology, NOW).expect("a report");
        let patient = report["entry"][0]["resource"].as_object_mut().unwrap();
        patient.insert("birthDate".into(), Value::String("1960-01-03".into()));
        let errs = errors(&v, &report, &[kind.report_profile()]);
        assert!(
            errs.iter().any(|e| e.contains("birthDate")),
            "{}: {errs:#?}",
            path.display()
        );
    }
}

#[test]
fn a_citizens_courses_share_one_report_and_the_other_kind_is_left_out() {
    let v = Validator::shared_embedded().expect("definitions");
    let all: Vec<CareRecord> = fixtures().iter().map(|p| record(p, &v)).collect();
    let vejle = all
        .iter()
        .find(|r| r.course.legal_basis == "sul-140")
        .expect("a §140 fixture")
        .clone();
    let mut second = vejle.clone();
    second.record_id = format!("{}-2", vejle.record_id);
    let records = vec![vejle.clone(), second, all[0].clone()];
    let env: Value = serde_json::from_str(&delivery(
        Kind::Rehab140,
        &records,
        &v.terminology,
        "d",
        NOW,
    ))
    .unwrap();
    let entries = env["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "one citizen");
    let report = &entries[0]["resource"];
    let courses = resources(report, "CarePlan")
        .into_iter()
        .filter(|p| {
            p["meta"]["profile"][0]
                .as_str()
                .unwrap()
                .ends_with("care-plan")
        })
        .count();
    assert_eq!(courses, 2, "both courses");
    assert!(errors(&v, &env, &[]).is_empty());
    // The same citizen gets the same report id every time: KL replaces the previous report.
    let again: Value = serde_json::from_str(&delivery(
        Kind::Rehab140,
        &records,
        &v.terminology,
        "e",
        NOW,
    ))
    .unwrap();
    assert_eq!(again["entry"][0]["resource"]["id"], report["id"]);
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sektorbro"))
        .args(args)
        .output()
        .expect("run sektorbro");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn the_command_prints_one_bundle_per_kind() {
    let paths: Vec<String> = fixtures()
        .iter()
        .map(|p| p.to_string_lossy().to_string())
        .collect();
    let mut args = vec!["report", "kl-gateway"];
    args.extend(paths.iter().map(String::as_str));
    let (code, out, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one Bundle per line"))
        .collect();
    assert_eq!(lines.len(), 2, "a §140 and a care Bundle");
    assert_eq!(
        lines[0]["meta"]["profile"][0],
        Kind::Rehab140.envelope_profile().as_str()
    );
    assert_eq!(
        lines[1]["meta"]["profile"][0],
        Kind::Care.envelope_profile().as_str()
    );
    assert_eq!(lines[0]["entry"].as_array().unwrap().len(), 1);
    // Every other fixture is a care course; one report per citizen.
    let v = Validator::shared_embedded().expect("definitions");
    let citizens: BTreeSet<String> = fixtures()
        .iter()
        .map(|p| record(p, &v))
        .filter(|r| Kind::of(r) == Kind::Care)
        .map(|r| format!("{}/{}", r.municipality.code, r.citizen.cpr))
        .collect();
    assert_eq!(lines[1]["entry"].as_array().unwrap().len(), citizens.len());
    for b in &lines {
        assert!(!has_errors(&v.validate(b, &[])));
    }

    // One kind only.
    let mut args = vec!["report", "kl-gateway", "--kind", "140"];
    args.extend(paths.iter().map(String::as_str));
    let (code, out, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1);
    assert!(err.contains("left out"), "{err}");

    // A bad record: nothing printed, exit 1; a bad kind: usage, exit 2.
    let bad = format!(
        "{}/fixtures/municipal/invalid/multiple-rule-violations.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let (code, out, _) = run(&["report", "kl-gateway", &paths[0], &bad]);
    assert_eq!((code, out.as_str()), (1, ""));
    let (code, _, _) = run(&["report", "kl-gateway", "--kind", "x", &paths[0]]);
    assert_eq!(code, 2);
    let (code, _, _) = run(&["report", "kl-gateway"]);
    assert_eq!(code, 2);
}
