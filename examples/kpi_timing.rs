//! How long the KPI figures of one municipality take (`GET /municipal/v1/kpis` less HTTP): a
//! SQLite database (or PostgreSQL, with a URL as the first argument) filled with `COURSES`
//! (default 10,000) synthetic courses of municipality 0510, each a course CarePlan, a stay
//! Encounter, three Goals, a Patient and (for the ended ones) a discharge note's Composition,
//! written through the store with their real search values and KPI table rows (as the engine
//! writes them), and a hospital admission for one citizen in ten; then the store's KPI rows and
//! the arithmetic, timed over several runs, as an administrator and as the municipality's
//! client, in wall-clock and in process CPU time. Figures recorded in docs/kpis.md.
//!
//! ```text
//! cargo run --release --example kpi_timing [DATABASE_URL] [COURSES]
//! ```
//!
//! A database URL given again (`sqlite:/tmp/kpis.db`, PostgreSQL) is reused as filled.

use std::time::Instant;

use fhir_core::fhir::search_params::SearchParamRegistry;
use sektorbro::config::CacheConfig;
use sektorbro::municipal::vocab;
use sektorbro::store::hospital_events::HospitalEvent;
use sektorbro::store::kpis::KpiQuery;
use sektorbro::store::{NewVersion, Visibility};
use serde_json::{json, Value};

const PHASES: [&str; 5] = [
    "assessment",
    "goal-setting",
    "intervention",
    "follow-up",
    "completed",
];
const ACHIEVEMENT: [&str; 4] = ["achieved", "in-progress", "not-achieved", "improving"];

fn resources(i: usize) -> Vec<Value> {
    let rs = vocab::record_system("0510");
    let parts = vocab::part_system("0510", &format!("R{i}"));
    // Courses spread over 2024–2025, each 20–60 days; one in four still running.
    let day = i % 700;
    let start =
        chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + chrono::Days::new(day as u64);
    let len = 20 + (i % 41) as u64;
    let end = start + chrono::Days::new(len);
    let ready = end - chrono::Days::new(1 + (i % 3) as u64);
    let open = i.is_multiple_of(4);
    let mut period = json!({"start": format!("{start}T10:00:00+01:00")});
    if !open {
        period["end"] = json!(format!("{end}T09:00:00+01:00"));
    }
    let patient = format!("p{i}");
    let mut out = vec![
        json!({"resourceType": "Patient", "id": patient,
               "identifier": [{"system": vocab::CPR, "value": format!("{:010}", 1_000_000 + i)}]}),
        json!({"resourceType": "CarePlan", "id": format!("cp{i}"), "status": "active", "intent": "plan",
               "extension": [{"url": vocab::ext::PHASE, "valueCode": PHASES[i % 5]}],
               "identifier": [{"system": rs, "value": format!("R{i}")}],
               "subject": {"reference": format!("Patient/{patient}")}, "period": period}),
        json!({"resourceType": "Encounter", "id": format!("e{i}"), "status": "finished",
               "class": {"code": "SS"},
               "identifier": [{"system": parts, "value": "stay"}],
               "subject": {"reference": format!("Patient/{patient}")}, "period": period,
               "extension": [{"url": vocab::ext::READY_FOR_DISCHARGE, "valueDateTime": format!("{ready}T12:00:00+01:00")}]}),
    ];
    if !open {
        // The discharge note, with warnings for one in three.
        let mut note = json!({"resourceType": "Composition", "id": format!("n{i}"), "status": "final",
            "identifier": {"system": vocab::note_system("0510"), "value": format!("note-{i}")},
            "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5"}]},
            "subject": {"reference": format!("Patient/{patient}")},
            "date": format!("{end}T09:30:00+01:00"), "author": [{"display": "Kommune"}],
            "title": "Discharge summary"});
        if i.is_multiple_of(3) {
            note["extension"] =
                json!([{"url": vocab::ext::NOTE_WARNING, "valueString": "$.contact"}]);
        }
        out.push(note);
    }
    for g in 0..3 {
        out.push(
            json!({"resourceType": "Goal", "id": format!("g{i}-{g}"), "lifecycleStatus": "active",
            "identifier": [{"system": parts, "value": format!("goal-{g}")}],
            "achievementStatus": {"coding": [{"code": ACHIEVEMENT[(i + g) % 4]}]},
            "subject": {"reference": format!("Patient/{patient}")}}),
        );
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = args
        .get(1)
        .filter(|a| a.contains(':'))
        .cloned()
        .unwrap_or_else(|| format!("sqlite:{}/kpis.db", dir.path().display()));
    let courses: usize = args
        .iter()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let cache = CacheConfig {
        enabled: false,
        resources_mib: 0,
        searches_mib: 0,
        max_staleness_secs: 0,
    };
    let store = sektorbro::store::open(&url, 4, "normal", 0, &cache)
        .await
        .expect("store");
    let registry = SearchParamRegistry::embedded();
    let t = Instant::now();
    // A database the example filled before (a file or PostgreSQL URL given again) is reused.
    let filled = store
        .read("CarePlan", &format!("cp{}", courses.saturating_sub(1)))
        .await
        .expect("read")
        .is_some();
    let todo = if filled { 0 } else { courses };
    for chunk in (0..todo).collect::<Vec<_>>().chunks(500) {
        let mut tx = store.begin().await.expect("begin");
        for &i in chunk {
            for r in resources(i) {
                let text = r.to_string();
                // The search values and the KPI table's row, as the engine writes them.
                let index = registry.extract(&r);
                let kpi = sektorbro::store::kpis::fact(&r, &index);
                tx.write(&NewVersion {
                    rtype: r["resourceType"].as_str().unwrap(),
                    id: r["id"].as_str().unwrap(),
                    version: 1,
                    last_updated_ms: 0,
                    method: "PUT",
                    content: Some(&text),
                    index: &index,
                    kpi: kpi.as_ref(),
                    owner: Some("urn:kpi-timing|0510"),
                    citizen: Some(&format!("p{i}")),
                })
                .await
                .expect("write");
            }
        }
        // One citizen in ten admitted to hospital on the fifth day of the course.
        for &i in chunk.iter().filter(|i| *i % 10 == 0) {
            let day = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()
                + chrono::Days::new((i % 700 + 5) as u64);
            let at = day.and_hms_opt(8, 0, 0).unwrap().and_utc();
            tx.record_hospital_event(&HospitalEvent {
                sender: "urn:oid:1.2.208.176.1.1|kpi-timing".into(),
                message_id: format!("m{i}"),
                citizen: sektorbro::medcom::citizen_key(&format!(
                    "{}|{:010}",
                    vocab::CPR,
                    1_000_000 + i
                )),
                event: "admit-inpatient".into(),
                event_ms: at.timestamp_millis(),
                event_time: at.to_rfc3339(),
                hospital_sor: "urn:oid:1.2.208.176.1.1|kpi-timing".into(),
                hospital: "Sygehus".into(),
                encounter: format!("urn:uuid:enc-{i}"),
                refers_to: None,
                header_id: format!("h{i}"),
                received_ms: at.timestamp_millis(),
            })
            .await
            .expect("event");
        }
        tx.commit().await.expect("commit");
    }
    println!(
        "{todo} of {courses} courses written in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    if url.starts_with("postgres") {
        // As autovacuum does after a load this size: the planner needs the tables' statistics.
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.expect("connect");
        sqlx::query("ANALYZE")
            .execute(&pool)
            .await
            .expect("analyze");
        pool.close().await;
    }
    let q = KpiQuery {
        municipality: "0510".to_string(),
        from_ms: chrono::DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
            .unwrap()
            .timestamp_millis(),
        to_ms: chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .timestamp_millis(),
    };
    // As an administrator (everything visible) and as the municipality's own client (the owner
    // filter reads each matching resource's tenancy columns).
    let own: std::sync::Arc<[String]> = vec!["urn:kpi-timing|0510".to_string()].into();
    for (who, vis) in [
        ("administrator", Visibility::All),
        ("municipality's client", Visibility::Readable(own)),
    ] {
        time(&*store, &q, &vis, courses, who).await;
    }
}

async fn time(
    store: &dyn sektorbro::store::Storage,
    q: &KpiQuery,
    vis: &Visibility,
    courses: usize,
    who: &str,
) {
    let mut times = Vec::new();
    // The store's KPI rows (with the hospital events), then the arithmetic.
    let mut parts = [Vec::new(), Vec::new()];
    let cpu_before = cpu_ms();
    for run in 0..7 {
        let t = Instant::now();
        let rows = store.kpi_rows(q, vis).await.expect("rows");
        parts[0].push(t.elapsed().as_secs_f64() * 1000.0);
        let t2 = Instant::now();
        let body = sektorbro::report::kpis::body(
            "0510",
            "2025-01-01",
            "2026-01-01",
            &rows,
            q.from_ms,
            q.to_ms,
            chrono::Utc::now().timestamp_millis(),
        );
        parts[1].push(t2.elapsed().as_secs_f64() * 1000.0);
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        if run == 0 {
            println!("{body}");
        }
        times.push(ms);
    }
    let cpu = (cpu_ms() - cpu_before) as f64 / times.len() as f64;
    times.sort_by(f64::total_cmp);
    println!(
        "KPIs of {courses} courses, as the {who}: median {:.1} ms, min {:.1} ms, max {:.1} ms over {} runs; process CPU time {cpu:.0} ms per run",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        times.len()
    );
    for p in &mut parts {
        p.sort_by(f64::total_cmp);
    }
    println!(
        "  medians: store rows {:.1} ms, arithmetic {:.1} ms",
        parts[0][parts[0].len() / 2],
        parts[1][parts[1].len() / 2]
    );
}

/// User + system CPU time of this process so far, in milliseconds (Linux; 0 elsewhere). On a
/// shared machine it moves much less with the load than wall-clock time does.
fn cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // After the command name in parentheses: fields 3…; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    // Clock ticks are 100 per second on Linux.
    f.iter().sum::<u64>() * 10
}
