//! The audit writer over a real database (SQLite in a temp dir; PostgreSQL in a fresh schema when
//! `SEKTORBRO_TEST_POSTGRES_URL` is set): recorded events are stored as AuditEvent resources that
//! the search parameters find, a batch is one transaction, and shutdown writes what is queued.

mod common;

use std::sync::Arc;

use sektorbro::audit::{
    AuditRecord, Auditor, ForwardAttempt, ForwardResult, Interaction, PatientRef, Recorded, Who,
};
use sektorbro::config::{AuditConfig, Config};
use sektorbro::engine::Engine;
use serde_json::{json, Value};

use common::{fresh_schema, PG_ENV};

/// An engine over a fresh database, and the temp dir keeping a SQLite file alive.
async fn engine(postgres: bool) -> Option<(Arc<Engine>, Option<tempfile::TempDir>)> {
    let config = Config::defaults();
    let (url, dir) = if postgres {
        let Ok(server) = std::env::var(PG_ENV) else {
            eprintln!("NOTE: PostgreSQL audit tests SKIPPED ({PG_ENV} is not set)");
            return None;
        };
        (fresh_schema(&server).await, None)
    } else {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        (url, Some(dir))
    };
    let store = sektorbro::store::open(&url, 4, "normal", 5000, &config.cache)
        .await
        .expect("open store");
    Some((Arc::new(Engine::new(store, config.search)), dir))
}

fn config(batch_size: usize, flush_interval_ms: u64) -> AuditConfig {
    AuditConfig {
        enabled: true,
        queue_capacity: 1000,
        batch_size,
        flush_interval_ms,
        max_wait_ms: 50,
        observer: "test-gw".into(),
        max_query_bytes: 2048,
    }
}

/// AuditEvents matching `query`, as stored.
async fn search(engine: &Engine, query: &str) -> Vec<Value> {
    let q = engine
        .parse_criteria("AuditEvent", &format!("{query}&_count=1000"), false)
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
    shutdown_writes_everything_queued_and_later_events_are_dropped,
    the_internal_append_is_all_or_nothing,
);

async fn recorded_events_are_found_by_search_after_a_flush(engine: Arc<Engine>) {
    let auditor = Auditor::start(engine.clone(), &config(100, 5_000), "test-gw");
    assert_eq!(
        auditor
            .record(read_by("client-a", "Patient/p-1", 200))
            .await,
        Recorded::Queued
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
    // The flush interval is 5 s: only the flush makes them visible this soon.
    auditor.flush().await;

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
    // 25 events, batches of up to 10, a long flush interval: three full-or-flushed batches.
    let auditor = Auditor::start(engine.clone(), &config(10, 60_000), "test-gw");
    for i in 0..25 {
        auditor
            .record(read_by("client-a", &format!("CarePlan/cp-{i}"), 200))
            .await;
    }
    auditor.flush().await;
    let stats = auditor.stats().expect("enabled");
    assert_eq!(stats.written.get(), 25);
    assert_eq!(stats.batches.get(), 3, "10 + 10 + the 5 the flush wrote");
    assert_eq!(search(&engine, "altid=client-a").await.len(), 25);
}

async fn the_internal_append_is_all_or_nothing(engine: Arc<Engine>) {
    let event = |id: &str| {
        let mut ev =
            sektorbro::audit::to_audit_event(&read_by("client-x", "Patient/p-1", 200), "test-gw");
        ev["id"] = json!(id);
        ("AuditEvent".to_string(), ev)
    };
    engine
        .append_internal(vec![event("ae-1")])
        .await
        .expect("first");
    // ae-2 is new but ae-1 exists: the transaction fails as a whole.
    let err = engine
        .append_internal(vec![event("ae-2"), event("ae-1")])
        .await;
    assert!(err.is_err(), "{err:?}");
    assert_eq!(search(&engine, "altid=client-x").await.len(), 1);
    assert!(engine
        .read(&sektorbro::engine::Access::gateway(), "AuditEvent", "ae-2")
        .await
        .is_err());
    let ids = engine
        .append_internal(vec![event("ae-2"), event("ae-3")])
        .await
        .expect("both");
    assert_eq!(ids, ["ae-2", "ae-3"]);
    assert_eq!(search(&engine, "altid=client-x").await.len(), 3);
}

async fn shutdown_writes_everything_queued_and_later_events_are_dropped(engine: Arc<Engine>) {
    // Nothing would be written for a minute but for the shutdown.
    let auditor = Auditor::start(engine.clone(), &config(1000, 60_000), "test-gw");
    for i in 0..50 {
        auditor
            .record(read_by("client-s", &format!("Patient/p-{i}"), 200))
            .await;
    }
    auditor.clone().shutdown().await;
    assert_eq!(search(&engine, "altid=client-s").await.len(), 50);
    assert_eq!(
        auditor
            .record(read_by("client-s", "Patient/late", 200))
            .await,
        Recorded::Dropped
    );
    let stats = auditor.stats().expect("enabled");
    assert_eq!(stats.written.get(), 50);
    assert_eq!(stats.dropped.get(), 1);
    auditor.shutdown().await; // idempotent
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
