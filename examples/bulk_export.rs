//! Bulk Data export speed and memory (docs/bulk.md, docs/benchmarks.md "Bulk export"), in two
//! steps so that the second process's peak memory is the export's alone:
//!
//! ```text
//! cargo run --release --example bulk_export seed DIR [RESOURCES]   # default 1,000,000
//! cargo run --release --example bulk_export export DIR
//! ```
//!
//! `seed` writes RESOURCES Observations (about 400 bytes each, with their search index rows,
//! through the store as the gateway writes them) into `DIR/bench.db`. `export` starts the whole
//! gateway state on that database (`app::build_state`: validator, caches, audit, forwarding and the
//! exporter), kicks off a system-level export of Observations as the development client (every
//! resource visible to it) and waits for the job to finish, then prints the resources per second
//! and the process's resident memory (`VmRSS` before, `VmHWM` peak). `scripts/bulk-bench.sh` runs
//! both.

use std::time::{Duration, Instant};

use fhir_core::fhir::search_params::SearchParamRegistry;
use sektorbro::bulk::{KickOff, Level};
use sektorbro::config::{CacheConfig, Config};
use sektorbro::store::{BulkStatus, NewVersion};
use serde_json::json;

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn seed(dir: &str, n: usize) {
    let cache = CacheConfig {
        enabled: false,
        resources_mib: 0,
        searches_mib: 0,
        max_staleness_secs: 0,
    };
    let url = format!("sqlite://{dir}/bench.db");
    let store = sektorbro::store::open(&url, 4, "normal", 0, &cache)
        .await
        .expect("store");
    let registry = SearchParamRegistry::embedded();
    let t = Instant::now();
    let mut i = 0;
    while i < n {
        let mut tx = store.begin().await.expect("begin");
        for _ in 0..2000.min(n - i) {
            let r = json!({"resourceType": "Observation", "id": format!("o{i}"),
                "meta": {"versionId": "1", "lastUpdated": "2026-12-01T10:00:00Z"},
                "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
                "subject": {"reference": format!("Patient/p{}", i / 20)},
                "effectiveDateTime": "2026-12-01T10:00:00+01:00",
                "valueQuantity": {"value": 60 + (i % 40), "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}});
            let text = r.to_string();
            let index = registry.extract(&r);
            tx.write(&NewVersion {
                rtype: "Observation",
                id: &format!("o{i}"),
                version: 1,
                last_updated_ms: 1_764_583_200_000,
                method: "PUT",
                content: Some(&text),
                index: &index,
                kpi: None,
                owner: Some("urn:bench|1"),
                citizen: Some(&format!("p{}", i / 20)),
            })
            .await
            .expect("write");
            i += 1;
        }
        tx.commit().await.expect("commit");
    }
    println!(
        "seeded {n} Observations in {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

async fn export(dir: &str) {
    let mut config = Config::load_with_env(None, |k| match k {
        "SEKTORBRO_DATABASE_URL" => Some(format!("sqlite://{dir}/bench.db")),
        "SEKTORBRO_DEV_TOKEN" => Some("bench-development-token-0123456789".into()),
        _ => None,
    })
    .expect("config");
    config.bulk.export_dir = format!("{dir}/exports");
    config.database.sqlite_synchronous = "normal".into();
    let state = sektorbro::app::build_state(config).await.expect("state");
    let rss_before = status_kib("VmRSS:");
    let client = state.auth.client("dev").expect("the development client");
    let caller = sektorbro::auth::Caller {
        scopes: client.scopes.clone(),
        client,
        method: sektorbro::auth::AuthMethod::DevToken,
    };
    let access = sektorbro::engine::Access::for_caller(&caller);
    let query = vec![("_type".to_string(), "Observation".to_string())];
    let t = Instant::now();
    let id = state
        .bulk
        .kick_off(
            &caller,
            &access,
            &KickOff {
                level: Level::System,
                query: &query,
                respond_async: true,
                request_url: "http://127.0.0.1/fhir/$export?_type=Observation".into(),
            },
        )
        .await
        .expect("kick-off");
    let job = loop {
        let job = state
            .engine
            .store()
            .bulk_job(&id)
            .await
            .expect("job")
            .expect("job row");
        if matches!(job.status, BulkStatus::Completed | BulkStatus::Failed) {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(job.status, BulkStatus::Completed, "{:?}", job.error);
    let files: Vec<serde_json::Value> =
        serde_json::from_str(job.output.as_deref().unwrap_or("[]")).expect("output");
    let count: u64 = files.iter().filter_map(|f| f["count"].as_u64()).sum();
    println!(
        "exported {count} resources in {secs:.2} s: {:.0} resources/s; {} files; RSS before {} MiB, peak (VmHWM) {} MiB",
        count as f64 / secs,
        files.len(),
        rss_before / 1024,
        status_kib("VmHWM:") / 1024
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: bulk_export seed DIR [RESOURCES] | bulk_export export DIR";
    let dir = args.get(2).expect(usage);
    match args.get(1).map(String::as_str) {
        Some("seed") => {
            let n = args
                .get(3)
                .and_then(|a| a.parse().ok())
                .unwrap_or(1_000_000);
            seed(dir, n).await
        }
        Some("export") => export(dir).await,
        _ => panic!("{usage}"),
    }
}
