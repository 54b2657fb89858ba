//! The audit journal (`src/audit/journal.rs`) over a real database (SQLite in a temp dir;
//! PostgreSQL in a fresh schema when `SEKTORBRO_TEST_POSTGRES_URL` is set) and a real directory:
//! records appended there are what `/fhir/AuditEvent` finds, without a flush; a shutdown copies
//! everything and leaves no segment behind; what a previous run left is copied once, from its
//! mark, without the line a crash cut short; a journal is one process's; a full journal makes
//! recorders wait, never drops.

mod common;

use std::path::Path;
use std::sync::Arc;

use sektorbro::audit::compact::Columns;
use sektorbro::audit::{AuditRecord, Auditor, Interaction, Recorded, Who};
use sektorbro::config::{AuditConfig, Config};
use sektorbro::engine::{Access, Engine};
use serde_json::Value;

use common::test_database;

async fn engine(postgres: bool) -> Option<(Arc<Engine>, tempfile::TempDir)> {
    let config = Config::defaults();
    let dir = tempfile::tempdir().expect("temp dir");
    let url = test_database(postgres, &dir.path().join("audit.db"), "audit journal").await?;
    let store = sektorbro::store::open(&url, 4, "normal", 5000, &config.cache)
        .await
        .expect("open store");
    Some((Arc::new(Engine::new(store, config.search)), dir))
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let (engine, dir) = super::engine(false).await.expect("sqlite");
                super::$name(engine, &dir.path().join("journal")).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some((engine, dir)) = super::engine(true).await {
                    super::$name(engine, &dir.path().join("journal")).await;
                }
            }
        }
    )*};
}

on_both_backends!(
    records_are_read_back_without_a_flush_and_shutdown_leaves_no_segment,
    a_previous_runs_segments_are_copied_once_from_their_marks,
    a_journal_belongs_to_one_process,
    a_full_journal_makes_recorders_wait_and_drops_nothing,
    a_line_that_is_not_a_record_is_left_out_and_counted,
);

fn config(queue_capacity: usize) -> AuditConfig {
    AuditConfig {
        enabled: true,
        queue_capacity,
        batch_size: 100,
        seal_interval_ms: 600_000,
        retention_days: 0,
        observer: "test-gw".into(),
        max_query_bytes: 2048,
        max_unsynced_ms: 100,
        journal_dir: String::new(),
    }
}

fn read_of(resource: &str) -> AuditRecord {
    let mut r = AuditRecord::new(Interaction::Read, 200);
    r.who = Some(Who {
        client_id: "client-j".into(),
        ..Who::default()
    });
    r.resource = Some(resource.into());
    r
}

/// The AuditEvents a search through the engine finds (as `/fhir/AuditEvent` does).
async fn audit_events(engine: &Engine, query: &str) -> Vec<Value> {
    let mut pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).expect("query");
    pairs.push(("_count".into(), "1000".into()));
    let page = engine
        .search_request(
            &Access::gateway(),
            fhir_core::fhir::ResourceType::AUDIT_EVENT,
            &pairs,
            false,
            "http://gw/fhir",
        )
        .await
        .expect("search");
    let bundle: Value = serde_json::from_str(&page).expect("bundle");
    bundle["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["resource"].clone())
        .collect()
}

fn segments(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.ends_with(".journal"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// No segment file left in `dir`, and no mark in the database.
async fn assert_journal_empty(engine: &Engine, dir: &Path) {
    assert!(segments(dir).is_empty(), "{:?}", segments(dir));
    let marks = engine.store().audit_journal_marks().await.expect("marks");
    assert!(marks.is_empty(), "{marks:?}");
}

async fn records_are_read_back_without_a_flush_and_shutdown_leaves_no_segment(
    engine: Arc<Engine>,
    dir: &Path,
) {
    let auditor = Auditor::start(engine.clone(), &config(1000), "test-gw", Some(dir))
        .await
        .expect("auditor");
    for i in 0..20 {
        assert_eq!(
            auditor.record(read_of(&format!("Patient/p-{i}"))).await,
            Recorded::Written
        );
    }
    auditor
        .record_detached(read_of("CarePlan/from-the-forwarder"))
        .await;
    // A write's record, committed in its own transaction between journal records: the sealer
    // chains it while the journal's rows are sealed as they are copied.
    let mut tx = engine.store().begin().await.expect("begin");
    tx.audit(&read_of("CarePlan/written"))
        .await
        .expect("in the transaction");
    tx.commit().await.expect("commit");
    for i in 20..30 {
        auditor.record(read_of(&format!("Patient/p-{i}"))).await;
    }
    assert_eq!(segments(dir).len(), 1, "one open segment");
    // Reading the trail waits for the journal to be copied: no flush here.
    assert_eq!(audit_events(&engine, "altid=client-j").await.len(), 32);
    assert_eq!(audit_events(&engine, "entity=Patient/p-7").await.len(), 1);
    auditor.shutdown().await;
    assert_journal_empty(&engine, dir).await;
    // After shutdown a record goes to the database directly.
    assert_eq!(
        auditor.record(read_of("Patient/late")).await,
        Recorded::Written
    );
    assert_eq!(audit_events(&engine, "altid=client-j").await.len(), 33);
    let stats = auditor.stats().expect("enabled");
    assert_eq!(stats.dropped.get(), 0);
    auditor.flush().await;
    let verified = engine.store().audit_verify().await.expect("verify");
    assert!(verified.first_break.is_none(), "{verified:?}");
    assert_eq!((verified.checked, verified.unsealed), (33, 0));
}

fn line(resource: &str) -> Vec<u8> {
    let mut l = serde_json::to_vec(&Columns::of(&read_of(resource))).expect("json");
    l.push(b'\n');
    l
}

async fn a_previous_runs_segments_are_copied_once_from_their_marks(
    engine: Arc<Engine>,
    dir: &Path,
) {
    std::fs::create_dir_all(dir).expect("dir");
    // Copied in full by the last run, which stopped before deleting the file.
    let done = "0000000000001-aaaaaaaaaaaa";
    std::fs::write(dir.join(format!("{done}.journal")), line("Patient/done")).expect("write");
    // Its first record copied (with its mark) before a crash; its last line cut short.
    let half = "0000000000002-bbbbbbbbbbbb";
    let first = line("Patient/first");
    let mut content = first.clone();
    content.extend(line("Patient/second"));
    content.extend(line("Patient/third"));
    let torn = line("Patient/torn");
    content.extend(&torn[..torn.len() / 2]);
    std::fs::write(dir.join(format!("{half}.journal")), &content).expect("write");
    // A mapped segment left by a crash: its records, a line being copied (zeros in it), then
    // the rest of its reserved room in zeros.
    let mapped = "0000000000003-dddddddddddd";
    let mut content = line("Patient/mapped");
    let torn = line("Patient/torn-mapped");
    content.extend(&torn[..torn.len() / 2]);
    content.extend(vec![0u8; 10]);
    content.extend(&torn[torn.len() / 2 + 10..]);
    content.resize(content.len() + 200_000, 0);
    std::fs::write(dir.join(format!("{mapped}.journal")), &content).expect("write");
    let mut tx = engine.store().begin().await.expect("begin");
    let row: Columns = serde_json::from_slice(&first).expect("row");
    tx.audit_from_journal(&[row], half, first.len() as u64)
        .await
        .expect("copy");
    tx.audit_segment_done(done).await.expect("done");
    // A finished segment whose file is already gone.
    tx.audit_segment_done("0000000000000-cccccccccccc")
        .await
        .expect("done");
    tx.commit().await.expect("commit");

    let auditor = Auditor::start(engine.clone(), &config(1000), "test-gw", Some(dir))
        .await
        .expect("auditor");
    // Copied before `start` returned.
    assert_journal_empty(&engine, dir).await;
    let all = audit_events(&engine, "altid=client-j").await;
    let mut entities: Vec<&str> = all
        .iter()
        .filter_map(|e| e["entity"][0]["what"]["reference"].as_str())
        .collect();
    entities.sort();
    assert_eq!(
        entities,
        [
            "Patient/first",
            "Patient/mapped",
            "Patient/second",
            "Patient/third"
        ]
    );
    auditor.shutdown().await;
}

async fn a_line_that_is_not_a_record_is_left_out_and_counted(engine: Arc<Engine>, dir: &Path) {
    std::fs::create_dir_all(dir).expect("dir");
    // Records on both sides of a line that is not one (a disk error, an edit by hand).
    let mut content = line("Patient/before");
    content.extend(b"{\"not\": \"a record\"}\n");
    content.extend(line("Patient/after"));
    std::fs::write(dir.join("0000000000001-dddddddddddd.journal"), &content).expect("write");
    let auditor = Auditor::start(engine.clone(), &config(1000), "test-gw", Some(dir))
        .await
        .expect("auditor");
    assert_journal_empty(&engine, dir).await;
    let all = audit_events(&engine, "altid=client-j").await;
    let entities: Vec<&str> = all
        .iter()
        .filter_map(|e| e["entity"][0]["what"]["reference"].as_str())
        .collect();
    assert_eq!(entities.len(), 2, "{entities:?}");
    assert!(entities.contains(&"Patient/before") && entities.contains(&"Patient/after"));
    let stats = auditor.stats().expect("enabled");
    assert_eq!(stats.dropped.get(), 1);
    auditor.shutdown().await;
}

async fn a_journal_belongs_to_one_process(engine: Arc<Engine>, dir: &Path) {
    let first = Auditor::start(engine.clone(), &config(1000), "test-gw", Some(dir))
        .await
        .expect("auditor");
    let second = Auditor::start(engine.clone(), &config(1000), "test-gw", Some(dir)).await;
    let err = second.expect_err("the journal is taken");
    assert!(err.contains("in use by another process"), "{err}");
    first.shutdown().await;
    // Free again once the first has stopped.
    let third = Auditor::start(engine.clone(), &config(1000), "test-gw", Some(dir))
        .await
        .expect("auditor");
    third.shutdown().await;
}

async fn a_full_journal_makes_recorders_wait_and_drops_nothing(engine: Arc<Engine>, dir: &Path) {
    let auditor = Auditor::start(engine.clone(), &config(2), "test-gw", Some(dir))
        .await
        .expect("auditor");
    let results = futures_util::future::join_all(
        (0..300).map(|i| auditor.record(read_of(&format!("Observation/o-{i}")))),
    )
    .await;
    assert!(results.iter().all(|r| *r == Recorded::Written));
    let stats = auditor.stats().expect("enabled");
    assert!(stats.backpressure.get() > 0, "nobody waited");
    assert_eq!(stats.dropped.get(), 0);
    assert_eq!(audit_events(&engine, "altid=client-j").await.len(), 300);
    auditor.shutdown().await;
}
