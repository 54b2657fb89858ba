//! A fixed workload for the audit trail's cost per read record (issue 19), away from HTTP:
//! `COUNT` records of reads appended to the audit journal, as the request path does, and copied
//! into `audit_log` on SQLite by the ingester, sealed as they are inserted (`Auditor::shutdown`
//! waits until the journal is empty). The records differ as a region's reads do (a client, its
//! organisation, a resource id, a request id, a citizen on every fourth).
//!
//! Wall time on a machine shared with other tenants moves too much to compare small changes;
//! instructions do not. Run it under callgrind twice, with `COUNT` and with 0, and divide the
//! difference by `COUNT`: the instructions one audited read costs the process, in every thread.
//!
//! ```text
//! cargo build --release --example audit_ingest
//! valgrind --tool=callgrind --callgrind-out-file=cg.N target/release/examples/audit_ingest 20000
//! valgrind --tool=callgrind --callgrind-out-file=cg.0 target/release/examples/audit_ingest 0
//! callgrind_annotate cg.N | head -20; callgrind_annotate cg.0 | head -20   # PROGRAM TOTALS
//! ```
//!
//! Without valgrind it prints records per second, a rough figure. Figures: docs/benchmarks.md.

use std::sync::Arc;
use std::time::Instant;

use sektorbro::audit::{AuditRecord, Auditor, Interaction, PatientRef, Recorded, Who};
use sektorbro::config::Config;
use sektorbro::engine::Engine;

/// Read record `n`: its ids derived from `n`, so that every run writes the same bytes.
fn read(n: u64) -> AuditRecord {
    let mut r = AuditRecord::new(Interaction::Read, 200);
    r.who = Some(Who {
        client_id: format!("kommune-{:04}-epj", n % 98),
        kind: Some("municipality".into()),
        auth_method: Some("mtls".into()),
        organizations: vec![format!("urn:oid:1.2.208.176.1.1|{:09}", n % 98)],
        ..Who::default()
    });
    r.peer = Some("127.0.0.1".into());
    r.resource_type = Some("CarePlan".into());
    r.resource = Some(format!(
        "CarePlan/{:032x}",
        n.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    ));
    if n.is_multiple_of(4) {
        r.patient = Some(PatientRef::Reference(format!("Patient/{:032x}", n / 4)));
    }
    r.request_id = Some(format!("{:032x}", n.wrapping_mul(0xc2b2_ae3d_27d4_eb4f)));
    r
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let count: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::defaults();
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let store = sektorbro::store::open(&url, 4, "full", 5000, &config.cache)
        .await
        .expect("open store");
    let engine = Arc::new(Engine::new(store, config.search.clone()));
    let journal = dir.path().join("journal");
    let auditor = Auditor::start(engine, &config.audit, "audit-ingest", Some(&journal))
        .await
        .expect("auditor");
    let started = Instant::now();
    // Recorded from a few tasks at once, as concurrent requests do.
    let auditor = Arc::new(auditor);
    let tasks: Vec<_> = (0..4u64)
        .map(|t| {
            let auditor = auditor.clone();
            tokio::spawn(async move {
                for n in (t..count).step_by(4) {
                    let recorded = auditor.record(read(n)).await;
                    assert!(recorded != Recorded::Failed, "record {n} failed");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("recorder");
    }
    auditor.shutdown().await;
    let secs = started.elapsed().as_secs_f64();
    let written = auditor.stats().map(|s| s.written.get()).unwrap_or(0);
    assert_eq!(written, count, "every record copied");
    println!(
        "{count} read records appended and copied in {secs:.2} s ({:.0} records/s)",
        count as f64 / secs.max(1e-9)
    );
}
