//! Where read-audit records should be written (issue #19): through the clinical database's own
//! group-committing writer (what the gateway does), or by a writer of their own into a separate
//! SQLite file. Each variant runs for a few seconds with 64 recorders (each waits until its
//! record is committed, as a request does) while 8 clinical writers commit small write
//! transactions, and prints records/s and clinical commits/s. Not criterion: a throughput run.
//!
//! `cargo bench --bench audit_writer` (release); figures in docs/audit.md ("Figures").

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sektorbro::audit::compact::Columns;
use sektorbro::audit::{AuditRecord, Auditor, Interaction, PatientRef, Who};
use sektorbro::config::Config;
use sektorbro::engine::Engine;
use sektorbro::store::Grant;
use tokio::sync::{mpsc, oneshot};

const RECORDERS: usize = 64;
const CLINICAL: usize = 8;
const SECONDS: u64 = 5;

fn read(n: u64) -> AuditRecord {
    let mut r = AuditRecord::new(Interaction::Read, 200);
    r.who = Some(Who {
        client_id: "kommune-0101-epj".into(),
        kind: Some("municipality".into()),
        auth_method: Some("mtls".into()),
        organizations: vec!["urn:oid:1.2.208.176.1.1|123456789".into()],
        ..Who::default()
    });
    r.peer = Some("127.0.0.1".into());
    r.resource_type = Some("CarePlan".into());
    r.resource = Some(format!("CarePlan/{}", uuid::Uuid::new_v4()));
    if n.is_multiple_of(4) {
        r.patient = Some(PatientRef::Reference(format!("Patient/{n}")));
    }
    r.request_id = Some(uuid::Uuid::new_v4().to_string());
    r
}

async fn engine(dir: &std::path::Path, name: &str) -> Arc<Engine> {
    let config = Config::defaults();
    let url = format!("sqlite://{}", dir.join(name).display());
    let store = sektorbro::store::open(&url, 4, "full", 5000, &config.cache)
        .await
        .expect("open store");
    Arc::new(Engine::new(store, config.search))
}

/// 8 clinical writers committing a one-row write transaction each, until `end`.
fn clinical_load(
    engine: &Arc<Engine>,
    end: Instant,
    done: &Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..CLINICAL)
        .map(|w| {
            let (engine, done) = (engine.clone(), done.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < end {
                    n += 1;
                    let mut tx = engine.store().begin().await.expect("begin");
                    tx.grant(
                        &Grant {
                            grantee: format!("g{w}"),
                            owner: "o".into(),
                            citizen: format!("c{n}"),
                            reason: "bench".into(),
                        },
                        n as i64,
                    )
                    .await
                    .expect("grant");
                    tx.commit().await.expect("commit");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect()
}

type Job = (AuditRecord, oneshot::Sender<()>);

/// A writer of its own on a separate SQLite file: group commit, one multi-row INSERT per batch.
async fn separate_writer(pool: sqlx::AnyPool, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let mut sql = String::from(
            "INSERT INTO audit_log (recorded_ms, kind, action, outcome, status, client, client_kind, auth, orgs, peer, rtype, entity, patient, request_id) VALUES ",
        );
        let rows: Vec<Columns> = batch.iter().map(|(r, _)| Columns::of(r)).collect();
        for i in 0..rows.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str("(?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
        }
        let mut q = sqlx::query(&sql);
        for c in &rows {
            q = q
                .bind(c.recorded_ms)
                .bind(c.kind.clone())
                .bind(c.action.clone())
                .bind(c.outcome)
                .bind(c.status)
                .bind(c.client.clone())
                .bind(c.client_kind.clone())
                .bind(c.auth.clone())
                .bind(c.orgs.clone())
                .bind(c.peer.clone())
                .bind(c.rtype.clone())
                .bind(c.entity.clone())
                .bind(c.patient.clone())
                .bind(c.request_id.clone());
        }
        q.execute(&pool).await.expect("insert");
        for (_, ack) in batch {
            let _ = ack.send(());
        }
    }
}

async fn run(variant: &str, synchronous: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let clinical = engine(dir.path(), "clinical.db").await;
    let recorded = Arc::new(AtomicU64::new(0));
    let committed = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(SECONDS);
    let mut tasks = clinical_load(&clinical, end, &committed);
    if variant == "shared" {
        let auditor = Auditor::start(clinical.clone(), &Config::defaults().audit, "bench", None)
            .await
            .expect("auditor");
        for _ in 0..RECORDERS {
            let (auditor, recorded) = (auditor.clone(), recorded.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0;
                while Instant::now() < end {
                    n += 1;
                    auditor.record(read(n)).await;
                    recorded.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    } else {
        // The separate file: the same table, its own single connection.
        let audit = engine(dir.path(), "audit.db").await;
        drop(audit);
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("audit.db").display()
        );
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .expect("audit file");
        for pragma in [
            "PRAGMA journal_mode = WAL",
            &format!("PRAGMA synchronous = {synchronous}"),
        ] {
            sqlx::query(pragma).execute(&pool).await.expect(pragma);
        }
        let (tx, rx) = mpsc::channel::<Job>(10_000);
        tokio::spawn(separate_writer(pool, rx));
        for _ in 0..RECORDERS {
            let (tx, recorded) = (tx.clone(), recorded.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0;
                while Instant::now() < end {
                    n += 1;
                    let (ack, done) = oneshot::channel();
                    tx.send((read(n), ack)).await.expect("send");
                    let _ = done.await;
                    recorded.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    println!(
        "{variant:>8} (audit file synchronous={synchronous}): {:>8.0} audit records/s, {:>6.0} clinical commits/s",
        recorded.load(Ordering::Relaxed) as f64 / SECONDS as f64,
        committed.load(Ordering::Relaxed) as f64 / SECONDS as f64
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        run("shared", "full").await;
        run("separate", "full").await;
        run("separate", "normal").await;
    });
}
