//! [`Auditor`]: the handle requests and workers record through, and the one background task that
//! writes what they record, in batches, each batch one database transaction.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{to_audit_event, AuditRecord};
use crate::config::AuditConfig;
use crate::engine::Engine;
use crate::metrics::Counter;

/// Attempts at writing one batch before its events are written one by one.
const WRITE_ATTEMPTS: u32 = 4;

/// What became of a recorded event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// In the queue; written within `audit.flush_interval_ms` (plus the write itself).
    Queued,
    /// Auditing is off (`audit.enabled = false`).
    Off,
    /// Not recorded: the queue stayed full for `audit.max_wait_ms`, or the writer has shut down.
    /// Counted and logged.
    Dropped,
}

enum Msg {
    Event(Box<AuditRecord>),
    /// Answer once everything queued before this is written.
    Flush(oneshot::Sender<()>),
    /// Write everything queued, answer, stop.
    Stop(oneshot::Sender<()>),
}

/// Counters of the audit writer, for `/metrics` (and tests); the handles are the registered
/// series ([`Auditor::register_metrics`]).
#[derive(Debug, Default)]
pub struct AuditStats {
    pub written: Counter,
    pub batches: Counter,
    pub dropped: Counter,
    /// Attempts at writing a batch that failed (each is retried, see `write`).
    pub write_failures: Counter,
}

struct Shared {
    tx: mpsc::Sender<Msg>,
    capacity: usize,
    max_wait: Duration,
    stats: Arc<AuditStats>,
    closed: AtomicBool,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// The audit handle: cheap to clone (one `Arc`), shared by the HTTP layer (`AppState::auditor`)
/// and the forwarding workers.
#[derive(Clone)]
pub struct Auditor {
    inner: Option<Arc<Shared>>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

impl Auditor {
    /// An auditor that records nothing.
    pub fn disabled() -> Auditor {
        Auditor { inner: None }
    }

    /// Start the writer task (on the current tokio runtime) if `config.enabled`. `observer`
    /// names this gateway in the events.
    pub fn start(engine: Arc<Engine>, config: &AuditConfig, observer: &str) -> Auditor {
        if !config.enabled {
            return Auditor::disabled();
        }
        let capacity = config.queue_capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let stats = Arc::new(AuditStats::default());
        let task = tokio::spawn(run(
            engine,
            rx,
            Settings {
                batch_size: config.batch_size.max(1),
                flush_interval: Duration::from_millis(config.flush_interval_ms.max(1)),
                observer: observer.to_string(),
            },
            stats.clone(),
        ));
        Auditor {
            inner: Some(Arc::new(Shared {
                tx,
                capacity,
                max_wait: Duration::from_millis(config.max_wait_ms),
                stats,
                closed: AtomicBool::new(false),
                task: Mutex::new(Some(task)),
            })),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Queue one event. Returns at once while the queue has room; when it is full, waits up to
    /// `audit.max_wait_ms`, then drops the event (counted, logged at error level with its
    /// essentials). Never fails the caller; see [`Recorded`] for a caller that must fail closed.
    pub async fn record(&self, record: AuditRecord) -> Recorded {
        let Some(s) = &self.inner else {
            return Recorded::Off;
        };
        if s.closed.load(Ordering::SeqCst) {
            s.drop_event(&record, "the audit writer has shut down");
            return Recorded::Dropped;
        }
        match s.tx.try_send(Msg::Event(Box::new(record))) {
            Ok(()) => Recorded::Queued,
            Err(mpsc::error::TrySendError::Full(msg)) => {
                match tokio::time::timeout(s.max_wait, s.tx.reserve()).await {
                    Ok(Ok(permit)) => {
                        permit.send(msg);
                        Recorded::Queued
                    }
                    Ok(Err(_)) => {
                        s.drop_msg(msg, "the audit writer has shut down");
                        Recorded::Dropped
                    }
                    Err(_) => {
                        s.drop_msg(msg, "the audit queue is full");
                        Recorded::Dropped
                    }
                }
            }
            Err(mpsc::error::TrySendError::Closed(msg)) => {
                s.drop_msg(msg, "the audit writer has shut down");
                Recorded::Dropped
            }
        }
    }

    /// Wait until every event queued before this call is written (or given up on).
    pub async fn flush(&self) {
        let Some(s) = &self.inner else { return };
        let (ack, done) = oneshot::channel();
        if s.tx.send(Msg::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Graceful shutdown: write everything queued, then stop the writer. Events recorded after
    /// this are dropped (counted and logged). Idempotent.
    pub async fn shutdown(&self) {
        let Some(s) = &self.inner else { return };
        if s.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let (ack, done) = oneshot::channel();
        if s.tx.send(Msg::Stop(ack)).await.is_ok() {
            let _ = done.await;
        }
        let task = s.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
        tracing::info!(
            written = s.stats.written.get(),
            dropped = s.stats.dropped.get(),
            "audit writer stopped"
        );
    }

    /// The writer's counters (`None` when auditing is off).
    pub fn stats(&self) -> Option<&AuditStats> {
        self.inner.as_ref().map(|s| s.stats.as_ref())
    }

    /// Events waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.inner
            .as_ref()
            .map_or(0, |s| s.capacity.saturating_sub(s.tx.capacity()))
    }

    /// Registers the audit series (none when auditing is off): the writer's counters, and the
    /// queue depth read at each scrape.
    pub fn register_metrics(&self, registry: &mut crate::metrics::Registry) {
        let Some(s) = &self.inner else { return };
        let st = &s.stats;
        // The registry adds the final full stop to a help text.
        for (name, help, counter) in [
            (
                "sektorbro_audit_events_written",
                "AuditEvents written to the database",
                &st.written,
            ),
            (
                "sektorbro_audit_batches",
                "Database transactions that wrote AuditEvents",
                &st.batches,
            ),
            (
                "sektorbro_audit_events_dropped",
                "AuditEvents lost: the queue stayed full, the writer had stopped, or writing failed",
                &st.dropped,
            ),
            (
                "sektorbro_audit_write_failures",
                "Failed attempts at writing a batch of AuditEvents (retried)",
                &st.write_failures,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register_collector(Box::new(QueueDepth(self.clone())));
    }
}

/// The `sektorbro_audit_queue_depth` gauge, read at each scrape.
#[derive(Debug)]
struct QueueDepth(Auditor);

impl crate::metrics::Collector for QueueDepth {
    fn encode(&self, mut encoder: crate::metrics::DescriptorEncoder) -> std::fmt::Result {
        crate::metrics::encode_family(
            &mut encoder,
            "sektorbro_audit_queue_depth",
            "AuditEvents waiting to be written.",
            crate::metrics::MetricType::Gauge,
            [(
                crate::metrics::NO_LABELS,
                crate::metrics::ConstGauge::new(self.0.queue_depth() as i64),
            )],
        )
    }
}

impl Shared {
    fn drop_msg(&self, msg: Msg, why: &str) {
        match msg {
            Msg::Event(r) => self.drop_event(&r, why),
            Msg::Flush(_) | Msg::Stop(_) => {}
        }
    }

    fn drop_event(&self, r: &AuditRecord, why: &str) {
        self.stats.dropped.inc();
        log_lost(r, why);
    }
}

/// An event that will not reach the database, logged with its essentials instead.
fn log_lost(r: &AuditRecord, why: &str) {
    tracing::error!(
        interaction = ?r.interaction,
        outcome = r.outcome.code(),
        status = r.http_status,
        resource = r.resource.as_deref(),
        client = r.who.as_ref().map(|w| w.client_id.as_str()),
        peer = r.peer.as_deref(),
        request_id = r.request_id.as_deref(),
        message_id = r.forward.as_ref().map(|f| f.message_id.as_str()),
        recorded_ms = r.recorded_ms,
        "audit event lost: {why}"
    );
}

struct Settings {
    batch_size: usize,
    flush_interval: Duration,
    observer: String,
}

/// The writer: collect up to `batch_size` events, waiting at most `flush_interval` after the
/// first, write them in one transaction, answer flushes; until stopped or every handle is gone.
async fn run(
    engine: Arc<Engine>,
    mut rx: mpsc::Receiver<Msg>,
    settings: Settings,
    stats: Arc<AuditStats>,
) {
    let mut batch: Vec<AuditRecord> = Vec::with_capacity(settings.batch_size);
    let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
    let mut stop: Option<oneshot::Sender<()>> = None;
    while let Some(first) = rx.recv().await {
        take(first, &mut batch, &mut acks, &mut stop);
        let deadline = Instant::now() + settings.flush_interval;
        while batch.len() < settings.batch_size && acks.is_empty() && stop.is_none() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(msg)) => take(msg, &mut batch, &mut acks, &mut stop),
                Ok(None) | Err(_) => break,
            }
        }
        write(&engine, &settings.observer, &mut batch, &stats).await;
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
        if let Some(stopped) = stop.take() {
            // Whatever raced past the `closed` flag is still written; later sends fail.
            rx.close();
            while let Some(msg) = rx.recv().await {
                take(msg, &mut batch, &mut acks, &mut stop);
                if batch.len() >= settings.batch_size {
                    write(&engine, &settings.observer, &mut batch, &stats).await;
                }
            }
            write(&engine, &settings.observer, &mut batch, &stats).await;
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
            let _ = stopped.send(());
            return;
        }
    }
    // Every handle is gone (no graceful shutdown): write what was collected.
    write(&engine, &settings.observer, &mut batch, &stats).await;
}

fn take(
    msg: Msg,
    batch: &mut Vec<AuditRecord>,
    acks: &mut Vec<oneshot::Sender<()>>,
    stop: &mut Option<oneshot::Sender<()>>,
) {
    match msg {
        Msg::Event(r) => batch.push(*r),
        Msg::Flush(ack) => acks.push(ack),
        Msg::Stop(ack) => *stop = Some(ack),
    }
}

/// Write `batch` (emptying it) in one transaction, retried with backoff; if that keeps failing,
/// one event per transaction so a single bad event cannot take the others with it.
async fn write(engine: &Engine, observer: &str, batch: &mut Vec<AuditRecord>, stats: &AuditStats) {
    if batch.is_empty() {
        return;
    }
    let records: Vec<AuditRecord> = std::mem::take(batch);
    let events: Vec<(String, Value)> = records
        .iter()
        .map(|r| {
            let mut ev = to_audit_event(r, observer);
            ev["id"] = json!(fhir_core::fhir::new_id());
            ("AuditEvent".to_string(), ev)
        })
        .collect();
    let n = events.len() as u64;
    let mut last_error = String::new();
    for attempt in 0..WRITE_ATTEMPTS {
        match engine.append_internal(events.clone()).await {
            Ok(_) => {
                stats.written.inc_by(n as u64);
                stats.batches.inc();
                return;
            }
            Err(e) => {
                stats.write_failures.inc();
                last_error = e.to_string();
                tracing::warn!(events = n, attempt = attempt + 1, error = %last_error, "cannot write audit events; retrying");
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
        }
    }
    // One at a time, once each. (An ambiguous commit — written, but reported failed — shows up
    // here as a conflict on the event's own id and is counted as lost although it is stored.)
    for (record, event) in records.iter().zip(events) {
        match engine.append_internal(vec![event]).await {
            Ok(_) => {
                stats.written.inc();
                stats.batches.inc();
            }
            Err(e) => {
                stats.dropped.inc();
                log_lost(
                    record,
                    &format!("cannot write it: {e} (batch: {last_error})"),
                );
            }
        }
    }
}
