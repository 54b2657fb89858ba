//! Write amplification of SQLite storage: bytes the process writes (WAL frames, and the
//! checkpoints that copy them into the database file) per created resource, for Patients of
//! about 20 KiB, one create per commit (as sequential HTTP clients cause) and with the
//! audit record each HTTP create also stores (a compact row, in its own transaction here).
//!
//! `cargo run --release --example wal_amplification [COUNT]` (Linux: reads `/proc/self/io`).
//! Figures: docs/benchmarks.md, "Write amplification".

use fhir_core::fhir::ResourceType;
use sektorbro::config::Config;
use sektorbro::engine::{Access, Engine, WriteOp};
use serde_json::{json, Value};

/// Bytes this process has handed to write(2)/pwrite(2) so far.
fn written_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("wchar: "))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn patient(i: usize) -> Value {
    json!({"resourceType": "Patient", "active": true,
        "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": format!("{:010}", i)}],
        "name": [{"family": "Hansen", "given": ["Anne"]}],
        "birthDate": "1950-01-01",
        "text": {"status": "generated",
            "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{}</div>", "x".repeat(20 * 1024))}})
}

/// The audit record the request middleware makes for a create (issue #19: a compact row).
fn audit_record(i: usize) -> sektorbro::audit::AuditRecord {
    use sektorbro::audit::{AuditRecord, Interaction, Who};
    let mut r = AuditRecord::new(Interaction::Create, 201);
    r.who = Some(Who {
        client_id: "dev".into(),
        ..Who::default()
    });
    r.peer = Some("127.0.0.1".into());
    r.resource_type = Some("Patient".into());
    r.resource = Some(format!("Patient/p{i}/_history/1"));
    r.request_id = Some(format!("req-{i}"));
    r
}

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _context = rt.enter();
    for (sync, audited, page_size) in [
        ("full", false, 4096),
        ("full", true, 4096),
        ("normal", false, 4096),
        ("full", false, 2048),
        ("full", true, 2048),
        ("full", false, 1024),
        ("full", true, 1024),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("amp.db").display());
        let mut config = Config::defaults();
        // Reads below go to SQLite, not to the cache.
        config.cache.enabled = false;
        let store = rt
            .block_on(sektorbro::store::open(
                &url,
                4,
                sektorbro::store::SqliteTuning {
                    synchronous: sync,
                    page_size,
                    audit_sync_ms: 0,
                    direct_reads: true,
                },
                config.database.statement_timeout_ms,
                &config.cache,
            ))
            .expect("open store");
        let engine = Engine::new(store, config.search);
        let gw = Access::gateway();
        // Warm up: the schema's first pages.
        rt.block_on(create(&engine, &gw, "Patient", patient(usize::MAX)));
        let before = written_bytes();
        let mut ids = Vec::with_capacity(count);
        for i in 0..count {
            ids.push(rt.block_on(create(&engine, &gw, "Patient", patient(i))));
            if audited {
                // Its own transaction, as the separate write it used to be (today it shares the
                // create's).
                rt.block_on(async {
                    let mut tx = engine.store().begin().await.expect("begin");
                    tx.audit(&audit_record(i)).await.expect("audit");
                    tx.commit().await.expect("commit");
                });
            }
        }
        // Let the background checkpoint catch up, so its copies are counted too.
        std::thread::sleep(std::time::Duration::from_millis(600));
        let bytes = written_bytes() - before;
        let db = std::fs::metadata(dir.path().join("amp.db"))
            .map(|m| m.len())
            .unwrap_or(0);
        let payload = serde_json::to_string(&patient(0)).map_or(0, |s| s.len());
        // What smaller pages cost reads: every Patient read back by id, five times.
        let started = std::time::Instant::now();
        for _ in 0..5 {
            for id in ids.iter().flatten() {
                rt.block_on(engine.read(&gw, ResourceType::PATIENT, id))
                    .expect("read");
            }
        }
        let read_us = started.elapsed().as_secs_f64() * 1e6 / (5 * count) as f64;
        println!(
            "page_size={page_size:<5} synchronous={sync:<6} audit={audited:<5} {count} creates: {:>6.1} KiB written per Patient \
             ({:.1}x its {:.1} KiB JSON); database file {:.1} KiB per Patient; read by id {:.0} µs",
            bytes as f64 / count as f64 / 1024.0,
            bytes as f64 / count as f64 / payload as f64,
            payload as f64 / 1024.0,
            db as f64 / (count + 1) as f64 / 1024.0,
            read_us,
        );
    }
}

/// Create one resource; the new id (Patients only).
async fn create(engine: &Engine, access: &Access, rtype: &str, resource: Value) -> Option<String> {
    let op = WriteOp::Create {
        rtype: ResourceType::parse(rtype).expect("a served type"),
        resource,
        if_none_exist: None,
    };
    Some(engine.write(access, op).await.expect("create").id)
}
