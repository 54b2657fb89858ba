//! The audit writer over a real database (SQLite in a temp dir; PostgreSQL in a fresh schema when
//! `SEKTORBRO_TEST_POSTGRES_URL` is set): recorded events are stored as compact rows that the
//! AuditEvent search parameters find, rendered as AuditEvents; a batch is one transaction; a
//! record is written before `record` returns; a record in a write transaction commits with it or
//! not at all; the hash chain catches a row edited behind the gateway's back; retention keeps the
//! chain verifiable.

mod common;

use std::sync::Arc;

use sektorbro::audit::{
    AuditRecord, Auditor, ForwardAttempt, ForwardResult, Interaction, PatientRef, Recorded, Who,
};
use sektorbro::config::{AuditConfig, Config};
use sektorbro::engine::Engine;
use serde_json::Value;

use common::test_database;

/// An engine over a fresh database, and the temp dir keeping a SQLite file alive.
async fn engine(postgres: bool) -> Option<(Arc<Engine>, Option<tempfile::TempDir>)> {
    let config = Config::defaults();
    let dir = tempfile::tempdir().expect("temp dir");
    let url = test_database(postgres, &dir.path().join("audit.db"), "audit").await?;
    let dir = (!postgres).then_some(dir);
    let store = sektorbro::store::open(&url, 4, "normal", 5000, &config.cache)
        .await
        .expect("open store");
    let engine = Arc::new(Engine::new(store, config.search));
    // A finished test's engine may have had the same address: its entry goes.
    let key = Arc::as_ptr(&engine) as usize;
    let mut urls = URLS.lock().expect("urls");
    urls.retain(|(k, _)| *k != key);
    urls.push((key, url));
    drop(urls);
    Some((engine, dir))
}

fn config(batch_size: usize) -> AuditConfig {
    AuditConfig {
        enabled: true,
        queue_capacity: 1000,
        batch_size,
        // Sealing is driven by `flush` in these tests.
        seal_interval_ms: 600_000,
        retention_days: 0,
        observer: "test-gw".into(),
        max_query_bytes: 2048,
        max_unsynced_ms: 100,
        journal_dir: String::new(),
    }
}

/// AuditEvents matching `query`, as stored.
async fn search(engine: &Engine, query: &str) -> Vec<Value> {
    let q = engine
        .parse_criteria(
            fhir_core::fhir::ResourceType::AUDIT_EVENT,
            &format!("{query}&_count=1000"),
            false,
        )
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    engine
        .store()
        .search(&q, 1000, &Default::default())
        .await
        .expect("search")
        .into_iter()
        .filter_map(|h| h.resource.content)
        .map(|c| serde_json::from_str(&c).expect("stored JSON"))
        .collect()
}

fn read_by(client: &str, resource: &str, status: u16) -> AuditRecord {
    let mut r = AuditRecord::new(Interaction::Read, status);
    r.who = Some(Who {
        client_id: client.into(),
        auth_method: Some("mtls".into()),
        organizations: vec!["urn:oid:1.2.208.176.1.1|123456789".into()],
        ..Who::default()
    });
    r.peer = Some("10.0.0.7".into());
    r.resource = Some(resource.into());
    r.request_id = Some(format!("req-{client}"));
    if let Some(p) = resource.strip_prefix("Patient/") {
        r.patient = Some(PatientRef::Reference(format!("Patient/{p}")));
    }
    r
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let (engine, _dir) = super::engine(false).await.expect("sqlite");
                super::$name(engine).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some((engine, _dir)) = super::engine(true).await {
                    super::$name(engine).await;
                }
            }
        }
    )*};
}

on_both_backends!(
    recorded_events_are_found_by_search_after_a_flush,
    a_batch_is_one_transaction,
    shutdown_writes_everything_queued_and_later_events_are_written_alone,
    a_record_in_a_write_transaction_commits_with_it_or_not_at_all,
    an_edited_or_deleted_row_breaks_the_chain,
    retention_prunes_a_prefix_and_the_chain_stays_verifiable,
    export_renders_every_record_since_an_instant,
);

async fn recorded_events_are_found_by_search_after_a_flush(engine: Arc<Engine>) {
    let auditor = Auditor::start(engine.clone(), &config(100), "test-gw", None)
        .await
        .expect("auditor");
    assert_eq!(
        auditor
            .record(read_by("client-a", "Patient/p-1", 200))
            .await,
        Recorded::Written
    );
    auditor
        .record(read_by("client-b", "Patient/p-2", 404))
        .await;
    let mut search_rec = AuditRecord::new(Interaction::SearchType, 200);
    search_rec.resource_type = Some("Observation".into());
    search_rec.query = Some("subject=Patient/p-1".into());
    search_rec.patient = Some(PatientRef::Reference("Patient/p-1".into()));
    auditor.record(search_rec).await;
    auditor
        .record(AuditRecord::forward(
            ForwardAttempt {
                message_id: "msg-9".into(),
                destination: "region".into(),
                url: "http://region.example/fhir/$process-message".into(),
                attempt: 1,
                result: ForwardResult::Delivered,
            },
            Some(200),
        ))
        .await;
    // Written before `record` returned: visible without a flush.

    assert_eq!(search(&engine, "_id:missing=false").await.len(), 4);
    assert_eq!(search(&engine, "patient=Patient/p-1").await.len(), 2);
    assert_eq!(search(&engine, "entity=Patient/p-2").await.len(), 1);
    assert_eq!(search(&engine, "altid=client-a").await.len(), 1);
    assert_eq!(search(&engine, "outcome=4").await.len(), 1);
    assert_eq!(search(&engine, "subtype=search-type").await.len(), 1);
    assert_eq!(
        search(
            &engine,
            "subtype=http://hl7.org/fhir/restful-interaction|read"
        )
        .await
        .len(),
        2
    );
    assert_eq!(
        search(
            &engine,
            "type=http://dicom.nema.org/resources/ontology/DCM|110106"
        )
        .await
        .len(),
        1
    );
    assert_eq!(search(&engine, "date=ge2020-01-01").await.len(), 4);
    assert_eq!(search(&engine, "date=lt2020-01-01").await.len(), 0);
    assert_eq!(search(&engine, "site=test-gw").await.len(), 4);
    let forwarded = search(&engine, "subtype=forward").await;
    assert_eq!(forwarded.len(), 1);
    assert_eq!(forwarded[0]["meta"]["versionId"], "1");
    assert_eq!(
        forwarded[0]["entity"][0]["what"]["identifier"]["value"],
        "msg-9"
    );
    let stats = auditor.stats().expect("enabled");
    assert_eq!(stats.written.get(), 4);
    assert_eq!(stats.dropped.get(), 0);
    let mut registry = sektorbro::metrics::Metrics::default();
    auditor.register_metrics(registry.registry());
    let metrics = registry.render();
    assert!(
        metrics.contains("sektorbro_audit_events_written_total 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sektorbro_audit_queue_depth 0"),
        "{metrics}"
    );
}

async fn a_batch_is_one_transaction(engine: Arc<Engine>) {
    // 25 records at once, batches of up to 10: whatever queued while a batch was written is the
    // next one, so there are at least three and far fewer than 25 transactions.
    let auditor = Auditor::start(engine.clone(), &config(10), "test-gw", None)
        .await
        .expect("auditor");
    let results = futures_util::future::join_all(
        (0..25).map(|i| auditor.record(read_by("client-a", &format!("CarePlan/cp-{i}"), 200))),
    )
    .await;
    assert!(
        results.iter().all(|r| *r == Recorded::Written),
        "{results:?}"
    );
    let stats = auditor.stats().expect("enabled");
    assert_eq!(stats.written.get(), 25);
    let batches = stats.batches.get();
    assert!((3..25).contains(&batches), "{batches} transactions");
    assert_eq!(search(&engine, "altid=client-a").await.len(), 25);
}

async fn a_record_in_a_write_transaction_commits_with_it_or_not_at_all(engine: Arc<Engine>) {
    let store = engine.store();
    // Rolled back (dropped without commit): neither the write nor its record.
    let mut tx = store.begin().await.expect("begin");
    tx.audit(&read_by("client-x", "Patient/rolled-back", 200))
        .await
        .expect("audit");
    drop(tx);
    let mut tx = store.begin().await.expect("begin");
    tx.audit(&read_by("client-x", "Patient/committed", 200))
        .await
        .expect("audit");
    tx.commit().await.expect("commit");
    let found = search(&engine, "altid=client-x").await;
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(
        found[0]["entity"][0]["what"]["reference"],
        "Patient/committed"
    );
    // Read back by its id, as `GET /fhir/AuditEvent/{id}` does.
    let id = found[0]["id"].as_str().expect("id");
    let read = engine
        .read(
            &sektorbro::engine::Access::gateway(),
            fhir_core::fhir::ResourceType::AUDIT_EVENT,
            id,
        )
        .await
        .expect("read");
    let read: Value =
        serde_json::from_str(read.content.as_deref().expect("content")).expect("json");
    assert_eq!(read, found[0]);
}

async fn shutdown_writes_everything_queued_and_later_events_are_written_alone(engine: Arc<Engine>) {
    let auditor = Auditor::start(engine.clone(), &config(1000), "test-gw", None)
        .await
        .expect("auditor");
    futures_util::future::join_all(
        (0..50).map(|i| auditor.record(read_by("client-s", &format!("Patient/p-{i}"), 200))),
    )
    .await;
    auditor.clone().shutdown().await;
    assert_eq!(search(&engine, "altid=client-s").await.len(), 50);
    assert_eq!(
        auditor
            .record(read_by("client-s", "Patient/late", 200))
            .await,
        Recorded::Written,
        "nothing is dropped, not even after the shutdown"
    );
    assert_eq!(search(&engine, "altid=client-s").await.len(), 51);
    let stats = auditor.stats().expect("enabled");
    assert_eq!(stats.written.get(), 51);
    assert_eq!(stats.dropped.get(), 0);
    auditor.shutdown().await; // idempotent
}

/// Each engine's database URL, for editing rows behind the gateway's back.
static URLS: std::sync::Mutex<Vec<(usize, String)>> = std::sync::Mutex::new(Vec::new());

/// Run `sql` on the engine's database over a connection of its own.
async fn raw(engine: &Arc<Engine>, sql: &str) {
    let key = Arc::as_ptr(engine) as usize;
    let url = URLS
        .lock()
        .expect("urls")
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, u)| u.clone())
        .expect("the engine's URL");
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.expect("raw connection");
    sqlx::query(sql).execute(&pool).await.expect(sql);
    pool.close().await;
}

async fn an_edited_or_deleted_row_breaks_the_chain(engine: Arc<Engine>) {
    let auditor = Auditor::start(engine.clone(), &config(100), "test-gw", None)
        .await
        .expect("auditor");
    for i in 0..20 {
        auditor
            .record(read_by("client-c", &format!("Patient/p-{i}"), 200))
            .await;
    }
    auditor.flush().await;
    let v = engine.store().audit_verify().await.expect("verify");
    assert_eq!((v.checked, v.unsealed), (20, 0), "{v:?}");
    assert!(v.first_break.is_none(), "{v:?}");
    let fifth = search(&engine, "altid=client-c&_sort=date").await[4]["id"]
        .as_str()
        .expect("id")
        .to_string();

    // A row edited behind the gateway's back: the chain breaks at that row.
    raw(
        &engine,
        &format!("UPDATE audit_log SET entity = 'Patient/someone-else' WHERE seq = {fifth}"),
    )
    .await;
    let v = engine.store().audit_verify().await.expect("verify");
    let b = v.first_break.expect("a break");
    assert_eq!(b.seq.map(|s| s.to_string()), Some(fifth.clone()), "{b:?}");
    assert_eq!(v.checked, 4);
    // Put back, it verifies again; deleted, the gap is the break.
    raw(
        &engine,
        &format!("UPDATE audit_log SET entity = 'Patient/p-4' WHERE seq = {fifth}"),
    )
    .await;
    assert!(engine
        .store()
        .audit_verify()
        .await
        .expect("verify")
        .first_break
        .is_none());
    raw(
        &engine,
        &format!("DELETE FROM audit_log WHERE seq = {fifth}"),
    )
    .await;
    let v = engine.store().audit_verify().await.expect("verify");
    let b = v.first_break.expect("a break");
    assert_eq!((b.seq, b.chain_pos), (None, 5), "{b:?}");
    assert!(b.reason.contains("missing"), "{b:?}");
}

async fn retention_prunes_a_prefix_and_the_chain_stays_verifiable(engine: Arc<Engine>) {
    let auditor = Auditor::start(engine.clone(), &config(100), "test-gw", None)
        .await
        .expect("auditor");
    let day = 86_400_000;
    let now = chrono::Utc::now().timestamp_millis();
    for (i, age_days) in [40, 35, 31, 29, 1, 0].into_iter().enumerate() {
        let mut r = read_by("client-r", &format!("Patient/p-{i}"), 200);
        r.recorded_ms = now - age_days * day;
        auditor.record(r).await;
    }
    auditor.flush().await;
    let pruned = sektorbro::audit::prune(&engine, 30).await.expect("prune");
    assert_eq!(pruned, 3, "the three older than 30 days");
    let kept = search(&engine, "altid=client-r").await;
    assert_eq!(kept.len(), 3);
    let v = engine.store().audit_verify().await.expect("verify");
    assert!(v.first_break.is_none(), "{v:?}");
    assert_eq!((v.anchor, v.checked), (3, 3), "{v:?}");
    // New records chain on after the kept ones; pruning again finds nothing.
    auditor
        .record(read_by("client-r", "Patient/new", 200))
        .await;
    auditor.flush().await;
    assert_eq!(
        sektorbro::audit::prune(&engine, 30).await.expect("prune"),
        0
    );
    let v = engine.store().audit_verify().await.expect("verify");
    assert!(v.first_break.is_none() && v.checked == 4, "{v:?}");
    // Editing the first kept row is still caught (it chains to the anchor).
    let first = &kept[0]["id"].as_str().expect("id").to_string();
    raw(
        &engine,
        &format!("UPDATE audit_log SET client = 'x' WHERE seq = {first}"),
    )
    .await;
    let v = engine.store().audit_verify().await.expect("verify");
    assert_eq!(
        v.first_break
            .and_then(|b| b.seq)
            .map(|s| s.to_string())
            .as_ref(),
        Some(first)
    );
}

async fn export_renders_every_record_since_an_instant(engine: Arc<Engine>) {
    let auditor = Auditor::start(engine.clone(), &config(100), "test-gw", None)
        .await
        .expect("auditor");
    let now = chrono::Utc::now().timestamp_millis();
    for i in 0..5 {
        let mut r = read_by("client-e", &format!("Patient/p-{i}"), 200);
        r.recorded_ms = now - (5 - i) * 1000;
        auditor.record(r).await;
    }
    let all = engine.store().audit_export(0, 0, 2).await.expect("export");
    assert_eq!(all.len(), 2, "a page");
    let since = engine
        .store()
        .audit_export(0, now - 2500, 100)
        .await
        .expect("export");
    assert_eq!(since.len(), 2, "the last two");
    let v = sektorbro_validator();
    for (_, ev) in since {
        assert_eq!(ev["resourceType"], "AuditEvent");
        let errors: Vec<_> = v
            .validate(&ev, &[])
            .into_iter()
            .filter(|i| {
                matches!(
                    i.severity,
                    fhir_core::fhir::outcome::Severity::Error
                        | fhir_core::fhir::outcome::Severity::Fatal
                )
            })
            .collect();
        assert!(errors.is_empty(), "{errors:?}\n{ev:#}");
    }
}

fn sektorbro_validator() -> Arc<fhir_core::validation::Validator> {
    fhir_core::validation::Validator::shared_r4().expect("R4 definitions")
}

#[tokio::test]
async fn a_disabled_auditor_records_nothing() {
    let a = Auditor::disabled();
    assert_eq!(
        a.record(read_by("c", "Patient/p", 200)).await,
        Recorded::Off
    );
    a.flush().await;
    a.shutdown().await;
    assert!(a.stats().is_none());
}
