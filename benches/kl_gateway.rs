//! The KL Gateway report over many stored records: `cargo bench --bench kl_gateway [N]` stores N
//! care records (copies of the municipal fixtures, one municipality, distinct citizens) in a
//! SQLite file through the municipal store path (four at a time, as concurrent clients would),
//! then writes the §140 and the care report for that municipality, twice each, as the HTTP
//! endpoint does, into a sink that only counts. Prints the time, the bytes, the largest piece
//! held at once and the process's peak memory during each report. With `KL_BENCH_DB=FILE`, the
//! database is kept in FILE and a later run with the same N reuses it instead of storing again.
//! Figures in docs/benchmarks.md.

use std::time::Instant;

use futures_util::StreamExt;
use sektorbro::config::Config;
use sektorbro::engine::{Access, Engine};
use sektorbro::error::FhirError;
use sektorbro::municipal::record::CareRecord;
use sektorbro::report::kl_gateway::Kind;
use sektorbro::report::stored::{self, AsyncSink, Request};
use serde_json::{json, Value};

#[derive(Default)]
struct Counter {
    bytes: usize,
    pieces: usize,
    largest: usize,
}

impl AsyncSink for &mut Counter {
    async fn send(&mut self, piece: String) -> Result<(), FhirError> {
        self.bytes += piece.len();
        self.pieces += 1;
        self.largest = self.largest.max(piece.len());
        Ok(())
    }
}

/// User + system CPU time of this process so far, in milliseconds (Linux; 0 elsewhere): on a
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

/// `VmHWM` (peak resident memory) in KiB.
fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn templates() -> Vec<Value> {
    let dir = format!("{}/fixtures/municipal", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .expect("fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect()
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(n));
}

async fn run(n: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = match std::env::var_os("KL_BENCH_DB") {
        Some(p) => std::path::PathBuf::from(p),
        None => dir.path().join("bench.db"),
    };
    let marker = db.with_extension(format!("stored-{n}"));
    let reuse = marker.exists();
    let config = Config::defaults();
    let url = format!("sqlite://{}", db.display());
    let store = sektorbro::store::open(&url, 4, "normal", 5000, &config.cache)
        .await
        .expect("open store");
    let engine = Engine::new(store, config.search);
    let validator = fhir_core::validation::Validator::shared_embedded().expect("definitions");
    let access = Access::gateway();
    let templates = templates();
    let started = Instant::now();
    let record = |i: usize| -> CareRecord {
        let mut r = templates[i % templates.len()].clone();
        r["recordId"] = json!(format!("BENCH-{i}"));
        r["municipality"] =
            json!({"code": "0510", "name": "Haderslev Kommune", "sor": "425911000016005"});
        // Day 01-28, month 01-12, distinct per record up to 336 × 100 citizens.
        r["citizen"]["cpr"] = json!(format!(
            "{:02}{:02}{:02}{:04}",
            i % 28 + 1,
            (i / 28) % 12 + 1,
            40 + (i / 336) % 50,
            1000 + i % 9000
        ));
        serde_json::from_value(r).expect("record")
    };
    if !reuse {
        let stored = std::sync::atomic::AtomicUsize::new(0);
        futures_util::stream::iter(0..n)
            .map(|i| {
                let (engine, validator, access, stored) = (&engine, &validator, &access, &stored);
                let rec = record(i);
                async move {
                    sektorbro::municipal::store(
                        engine,
                        access,
                        validator,
                        rec,
                        Vec::new(),
                        "http://bench/fhir",
                        sektorbro::engine::Answer::Minimal,
                    )
                    .await
                    .expect("stored");
                    let done = stored.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    if done % 500 == 0 {
                        eprintln!("{done} stored");
                    }
                }
            })
            .buffer_unordered(4)
            .collect::<Vec<()>>()
            .await;
        println!(
            "stored {n} records in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let _ = std::fs::write(&marker, b"");
    } else {
        println!("reusing the {n} records stored in {}", db.display());
    }
    let len = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len()) / 1_000_000;
    println!(
        "database file {} MB, WAL {} MB",
        len(&db),
        len(&db.with_extension("db-wal"))
    );
    for kind in [Kind::Rehab140, Kind::Care, Kind::Rehab140, Kind::Care] {
        // Reset the peak so that it measures the report alone.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let before = peak_kib();
        let req = Request {
            municipality: "0510".into(),
            kind,
            since_ms: None,
        };
        let mut sink = Counter::default();
        let cpu = cpu_ms();
        let t = Instant::now();
        let citizens = stored::write(
            &engine,
            access.readable(),
            &req,
            &validator.terminology,
            "bench",
            "2026-12-03T12:00:00Z",
            &mut sink,
        )
        .await
        .expect("report");
        println!(
            "{} report: {citizens} citizens, {:.1} MB in {:.2} s (process CPU time {:.2} s); largest piece {} KB; peak RSS {} MB (was {} MB before)",
            kind.as_str(),
            sink.bytes as f64 / 1e6,
            t.elapsed().as_secs_f64(),
            (cpu_ms() - cpu) as f64 / 1e3,
            sink.largest / 1024,
            peak_kib() / 1024,
            before / 1024,
        );
    }
}
