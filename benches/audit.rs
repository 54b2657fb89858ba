//! The audit trail's work per record: AuditRecord → compact row, a row rendered back as an
//! AuditEvent (reads of the trail), a batch of 256 rows written in one transaction on SQLite
//! (synchronous=full), and the storage a read record takes as the gateway stores it (printed:
//! bytes per record on SQLite, and on PostgreSQL when `SEKTORBRO_TEST_POSTGRES_URL` is set,
//! without and with a journal).
//! `cargo bench --bench audit`; figures in docs/audit.md.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use sektorbro::audit::compact::Columns;
use sektorbro::audit::{to_audit_event, AuditRecord, Interaction, PatientRef, Who};
use sektorbro::config::Config;
use sektorbro::engine::Engine;

/// What the middleware records for an authenticated read of a Patient.
fn read_record() -> AuditRecord {
    let mut r = AuditRecord::new(Interaction::Read, 200);
    r.who = Some(Who {
        client_id: "kommune-0101-epj".into(),
        name: Some("Københavns Kommune EPJ".into()),
        kind: Some("municipality".into()),
        auth_method: Some("mtls".into()),
        organizations: vec!["urn:oid:1.2.208.176.1.1|123456789".into()],
        reference: None,
    });
    r.peer = Some("127.0.0.1".into());
    r.resource_type = Some("Patient".into());
    r.resource = Some("Patient/p-1".into());
    r.patient = Some(PatientRef::Reference("Patient/p-1".into()));
    r.request_id = Some("7f0c2a4e-1b9d-4c3e-8a51-0d2f6b7e9a13".into());
    r
}

/// A read of one of many Patients or CarePlans (a new id each time), as the middleware records
/// it: a CarePlan's read names its citizen too.
fn varied_read(n: usize) -> AuditRecord {
    let mut r = read_record();
    let id = uuid::Uuid::new_v4();
    if n.is_multiple_of(4) {
        r.resource_type = Some("Patient".into());
        r.resource = Some(format!("Patient/{id}"));
        r.patient = Some(PatientRef::Reference(format!("Patient/{id}")));
    } else {
        r.resource_type = Some("CarePlan".into());
        r.resource = Some(format!("CarePlan/{id}"));
        let citizen = uuid::Uuid::new_v4();
        r.patient = Some(PatientRef::Reference(format!("Patient/{citizen}")));
    }
    r.request_id = Some(uuid::Uuid::new_v4().to_string());
    r
}

/// How read records reach the database.
#[derive(Clone, Copy)]
enum Path {
    /// Copied from the journal, sealed as they are inserted (SQLite; PostgreSQL with
    /// `audit.journal_dir`).
    Journal,
    /// The audit writer's batches, sealed afterwards by the sealer (PostgreSQL without a
    /// journal, the default there).
    Writer,
}

/// Write `n` read records as the gateway stores them on `path` (in transactions of 256), and
/// return the bytes the database grew by per record.
async fn bytes_per_read(
    engine: &Engine,
    n: usize,
    path: Path,
    size: impl Fn() -> futures_util::future::BoxFuture<'static, i64>,
) -> f64 {
    let before = size().await;
    let mut left = n;
    while left > 0 {
        let k = left.min(256);
        let records: Vec<_> = (0..k).map(varied_read).collect();
        let mut tx = engine.store().begin().await.expect("begin");
        match path {
            Path::Journal => {
                let rows: Vec<Columns> = records.iter().map(Columns::of).collect();
                let end = (n - left + k) as u64;
                tx.audit_from_journal(&rows, "0000000000001-bench", end)
                    .await
                    .expect("audit");
            }
            Path::Writer => {
                let all: Vec<&AuditRecord> = records.iter().collect();
                tx.audit_many(&all).await.expect("audit");
            }
        }
        tx.commit().await.expect("commit");
        left -= k;
    }
    loop {
        let mut tx = engine.store().begin().await.expect("begin");
        let sealed = tx.seal_audit().await.expect("seal");
        tx.commit().await.expect("commit");
        if sealed == 0 {
            break;
        }
    }
    // The search keys, as the sealer moves them (in steps of 500 rows here, so that all of the
    // records' keys are counted, none left in the tail).
    let shape = sektorbro::store::audit_log::KeyShape {
        tail_rows: 500,
        ..Default::default()
    };
    loop {
        let mut tx = engine.store().begin().await.expect("begin");
        let moved = tx.index_audit_keys(&shape).await.expect("keys");
        tx.commit().await.expect("commit");
        if moved.is_none() {
            break;
        }
    }
    (size().await - before) as f64 / n as f64
}

fn bench(c: &mut Criterion) {
    let record = read_record();
    let row = Columns::of(&record);
    c.bench_function("audit: record -> compact row", |b| {
        b.iter(|| Columns::of(&record))
    });
    c.bench_function("audit: chain hash of one row", |b| {
        b.iter(|| sektorbro::audit::compact::chain_hash("AAAAAAAAAAAAAAAAAAAAAA", 42, &row))
    });
    c.bench_function("audit: compact row -> AuditEvent JSON text", |b| {
        b.iter(|| to_audit_event(&row.record(), "https://gw.example.dk/fhir").to_string())
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _context = rt.enter();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config::defaults();
    let file = dir.path().join("audit.db");
    let url = format!("sqlite://{}", file.display());
    let store = rt
        .block_on(sektorbro::store::open(&url, 4, "full", 5000, &config.cache))
        .expect("open store");
    let engine = Engine::new(store, config.search.clone());

    // Storage per read record: the database file (after a checkpoint folds the WAL in).
    const N: usize = 20_000;
    let sqlite_url = url.clone();
    let per = rt.block_on(bytes_per_read(&engine, N, Path::Journal, move || {
        let url = sqlite_url.clone();
        Box::pin(async move {
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&url).await.expect("connect");
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&pool)
                .await
                .expect("checkpoint");
            let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
                .fetch_one(&pool)
                .await
                .expect("pages");
            let size: i64 = sqlx::query_scalar("PRAGMA page_size")
                .fetch_one(&pool)
                .await
                .expect("size");
            pool.close().await;
            pages * size
        })
    }));
    eprintln!(
        "audit storage, SQLite: {per:.0} bytes per read record ({N} records, rows, indexes and search keys)"
    );
    if let Ok(server) = std::env::var("SEKTORBRO_TEST_POSTGRES_URL") {
        for (path, how) in [
            (Path::Writer, "the audit writer, sealed after"),
            (Path::Journal, "with a journal, sealed as inserted"),
        ] {
            let pg = rt.block_on(async {
                sqlx::any::install_default_drivers();
                let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
                let pool = sqlx::AnyPool::connect(&server).await.expect("pg");
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&pool)
                    .await
                    .expect("schema");
                pool.close().await;
                let sep = if server.contains('?') { '&' } else { '?' };
                format!("{server}{sep}options=-c%20search_path%3D{schema}")
            });
            let store = rt
                .block_on(sektorbro::store::open(&pg, 4, "full", 5000, &config.cache))
                .expect("open pg");
            let pg_engine = Engine::new(store, config.search.clone());
            let per = rt.block_on(bytes_per_read(&pg_engine, N, path, move || {
                let url = pg.clone();
                Box::pin(async move {
                    let pool = sqlx::AnyPool::connect(&url).await.expect("connect");
                    let size: i64 = sqlx::query_scalar(
                        "SELECT (pg_total_relation_size('audit_log') \
                             + pg_total_relation_size('audit_keys'))::BIGINT",
                    )
                    .fetch_one(&pool)
                    .await
                    .expect("size");
                    pool.close().await;
                    size
                })
            }));
            eprintln!("audit storage, PostgreSQL ({how}): {per:.0} bytes per read record ({N} records, rows, indexes, TOAST, search keys)");
        }
    }

    let mut group = c.benchmark_group("audit");
    group.sample_size(20);
    group.bench_function("256 audit rows in one transaction (sqlite, full)", |b| {
        b.iter_batched(
            || (0..256).map(varied_read).collect::<Vec<_>>(),
            |records| {
                rt.block_on(async {
                    let mut tx = engine.store().begin().await.expect("begin");
                    for r in &records {
                        tx.audit(r).await.expect("audit");
                    }
                    tx.commit().await.expect("commit");
                })
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
