//! [`Auditor`]: the handle requests and workers record through, and the audit writer: one task
//! that writes what they record with group commit (everything queued while the previous write
//! ran becomes the next transaction), and answers each recorder once its record is handed to the
//! database. Beside it, the sealer chains new rows into the hash chain and applies retention.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::journal::{AppendError, Ingester, Journal, Refused};
use super::AuditRecord;
use crate::config::AuditConfig;
use crate::engine::Engine;
use crate::metrics::Counter;
use crate::store::StoreError;

/// Attempts at writing one batch before its records are written one by one.
const WRITE_ATTEMPTS: u32 = 4;
/// At most one backpressure warning in this many milliseconds.
const WARN_EVERY_MS: i64 = 10_000;
/// How often retention runs (when `audit.retention_days` is set).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// What became of a recorded event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Written: committed by the database before `record` returned (in the operating system;
    /// on disk within `audit.max_unsynced_ms`, see docs/audit.md).
    Written,
    /// Auditing is off (`audit.enabled = false`).
    Off,
    /// The database refused the record, also when retried. It is logged at error level; a
    /// request whose record failed is answered 503 instead of its response.
    Failed,
}

type Ack = oneshot::Sender<bool>;

enum Msg {
    Event(Box<AuditRecord>, Option<Ack>),
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
    /// Records lost: one the database refused even when retried, of a forwarding attempt or of a
    /// refused request (a successful request's record that fails makes it fail instead). Never
    /// because a queue was full.
    pub dropped: Counter,
    /// Attempts at writing a batch that failed (each is retried, see `write`).
    pub write_failures: Counter,
    /// Records that waited for room in a full queue (the writer could not keep up).
    pub backpressure: Counter,
    /// Rows sealed into the hash chain, and rows deleted by retention.
    pub sealed: Counter,
    pub pruned: Counter,
    /// Search keys written into `audit_keys`, from new rows or moved between its levels.
    pub keys_moved: Counter,
}

/// The journal's tasks, stopped at shutdown.
struct JournalTasks {
    stop_ingester: tokio::sync::watch::Sender<bool>,
    ingester: JoinHandle<()>,
    stop_syncer: oneshot::Sender<()>,
    syncer: JoinHandle<()>,
}

struct Shared {
    /// Where reads', searches', refusals' and forwarding attempts' records go first, when there
    /// is one (`audit::journal`); without it they go to the database through the writer.
    journal: Option<Arc<Journal>>,
    journal_tasks: Mutex<Option<JournalTasks>>,
    tx: mpsc::Sender<Msg>,
    capacity: usize,
    engine: Arc<Engine>,
    stats: Arc<AuditStats>,
    closed: AtomicBool,
    last_warning_ms: AtomicI64,
    task: Mutex<Option<JoinHandle<()>>>,
    sealer: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
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

    /// Start the writer and the sealer (on the current tokio runtime) if `config.enabled`.
    /// `observer` names this gateway in the rendered events. With a `journal` directory (and
    /// `max_unsynced_ms` above 0), the records of reads and the like are appended there first:
    /// what a previous run left in it is copied into the database before this returns.
    pub async fn start(
        engine: Arc<Engine>,
        config: &AuditConfig,
        observer: &str,
        journal: Option<&std::path::Path>,
    ) -> Result<Auditor, String> {
        super::set_observer(observer);
        if !config.enabled {
            return Ok(Auditor::disabled());
        }
        let capacity = config.queue_capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let stats = Arc::new(AuditStats::default());
        let (journal, journal_tasks) = match journal.filter(|_| config.max_unsynced_ms > 0) {
            Some(dir) => {
                let (journal, ingester) = Journal::open(
                    dir,
                    engine.clone(),
                    capacity,
                    config.batch_size,
                    stats.clone(),
                )
                .await?;
                let tasks = journal_tasks(&journal, ingester, config.max_unsynced_ms);
                engine.set_audit_settle(super::Settle(Arc::downgrade(&journal)));
                (Some(journal), Some(tasks))
            }
            None => (None, None),
        };
        let task = tokio::spawn(run(
            engine.clone(),
            rx,
            config.batch_size.max(1),
            stats.clone(),
        ));
        let (stop_sealing, stopped) = oneshot::channel();
        let sealer = tokio::spawn(seal_loop(
            engine.clone(),
            Duration::from_millis(config.seal_interval_ms.max(1)),
            config.retention_days,
            stats.clone(),
            stopped,
        ));
        Ok(Auditor {
            inner: Some(Arc::new(Shared {
                journal,
                journal_tasks: Mutex::new(journal_tasks),
                tx,
                capacity,
                engine,
                stats,
                closed: AtomicBool::new(false),
                last_warning_ms: AtomicI64::new(0),
                task: Mutex::new(Some(task)),
                sealer: Mutex::new(Some((stop_sealing, sealer))),
            })),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Record one event and return once the database has it. While the queue has room this
    /// waits for the next group commit only; when it is full, for room first (backpressure,
    /// counted and logged). Nothing is dropped: after [`Auditor::shutdown`] a record is written
    /// in a transaction of its own.
    pub async fn record(&self, record: AuditRecord) -> Recorded {
        let Some(s) = &self.inner else {
            return Recorded::Off;
        };
        if s.closed.load(Ordering::SeqCst) {
            return s.write_alone(record).await;
        }
        if let Some(journal) = &s.journal {
            return s.append(journal, record).await;
        }
        let (ack, done) = oneshot::channel();
        let msg = Msg::Event(Box::new(record), Some(ack));
        let sent = s.enqueue(msg).await;
        if let Err(Msg::Event(record, _)) = sent {
            return s.write_alone(*record).await;
        }
        match done.await {
            Ok(true) => Recorded::Written,
            _ => Recorded::Failed,
        }
    }

    /// Record without waiting for the write (the forwarding worker, whose attempt is already
    /// recorded in the outbox): queued, waiting for room if the queue is full.
    pub async fn record_detached(&self, record: AuditRecord) {
        let Some(s) = &self.inner else { return };
        if s.closed.load(Ordering::SeqCst) {
            s.write_alone(record).await;
            return;
        }
        if let Some(journal) = &s.journal {
            if s.append(journal, record).await == Recorded::Failed {
                s.stats.dropped.inc();
            }
            return;
        }
        let msg = Msg::Event(Box::new(record), None);
        let sent = s.enqueue(msg).await;
        if let Err(Msg::Event(record, _)) = sent {
            s.write_alone(*record).await;
        }
    }

    /// Wait until every event queued before this call is written (or given up on), and the
    /// rows so far are sealed into the hash chain.
    pub async fn flush(&self) {
        let Some(s) = &self.inner else { return };
        if let Some(journal) = &s.journal {
            journal.settle().await;
        }
        let (ack, done) = oneshot::channel();
        if s.tx.send(Msg::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
        seal_all(&s.engine, &s.stats).await;
    }

    /// Graceful shutdown: write everything queued, seal it, then stop the writer and the
    /// sealer. Later records are written one transaction each. Idempotent.
    pub async fn shutdown(&self) {
        let Some(s) = &self.inner else { return };
        if s.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(journal) = &s.journal {
            // Appends are refused from here (later records go to the database directly); the
            // ingester copies what is left, then stops.
            journal.stop_appending();
        }
        let tasks = s.journal_tasks.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = tasks {
            let _ = t.stop_ingester.send(true);
            let _ = t.ingester.await;
            let _ = t.stop_syncer.send(());
            let _ = t.syncer.await;
        }
        if let Some(journal) = &s.journal {
            journal.release();
        }
        let (ack, done) = oneshot::channel();
        if s.tx.send(Msg::Stop(ack)).await.is_ok() {
            let _ = done.await;
        }
        let task = s.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
        let sealer = s.sealer.lock().ok().and_then(|mut t| t.take());
        if let Some((stop, task)) = sealer {
            let _ = stop.send(());
            let _ = task.await;
        }
        seal_at_shutdown(&s.engine, &s.stats).await;
        tracing::info!(
            written = s.stats.written.get(),
            dropped = s.stats.dropped.get(),
            "audit writer stopped"
        );
    }

    /// Count a record that could not be written and whose request was answered anyway (a
    /// refusal, which carries no data; see `api::observe`).
    pub fn count_lost(&self) {
        if let Some(s) = &self.inner {
            s.stats.dropped.inc();
        }
    }

    /// The writer's counters (`None` when auditing is off).
    pub fn stats(&self) -> Option<&AuditStats> {
        self.inner.as_ref().map(|s| s.stats.as_ref())
    }

    /// Events waiting in the queue (or in the journal, not yet copied).
    pub fn queue_depth(&self) -> usize {
        self.inner.as_ref().map_or(0, |s| {
            let journal = s.journal.as_ref().map_or(0, |j| j.backlog() as usize);
            s.capacity.saturating_sub(s.tx.capacity()) + journal
        })
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
                "Audit records written by the audit writer (a write's record is in its own transaction and not counted here)",
                &st.written,
            ),
            (
                "sektorbro_audit_batches",
                "Database transactions the audit writer committed",
                &st.batches,
            ),
            (
                "sektorbro_audit_events_dropped",
                "Audit records lost: the database refused them even when retried (a forwarding attempt, a refused request; never for a full queue)",
                &st.dropped,
            ),
            (
                "sektorbro_audit_write_failures",
                "Failed attempts at writing a batch of audit records (retried)",
                &st.write_failures,
            ),
            (
                "sektorbro_audit_backpressure",
                "Audit records that waited for room in a full queue: requests slowed down because the audit writer could not keep up",
                &st.backpressure,
            ),
            (
                "sektorbro_audit_sealed",
                "Audit rows sealed into the hash chain",
                &st.sealed,
            ),
            (
                "sektorbro_audit_pruned",
                "Audit rows deleted by retention",
                &st.pruned,
            ),
            (
                "sektorbro_audit_keys_moved",
                "Audit search keys written in sorted runs: from new rows, or from one level to the next",
                &st.keys_moved,
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
            "Audit records waiting to be written.",
            crate::metrics::MetricType::Gauge,
            [(
                crate::metrics::NO_LABELS,
                crate::metrics::ConstGauge::new(self.0.queue_depth() as i64),
            )],
        )
    }
}

/// Start the journal's ingester and syncer (the syncer every half of `max_unsynced_ms`).
fn journal_tasks(journal: &Arc<Journal>, ingester: Ingester, max_unsynced_ms: u64) -> JournalTasks {
    let (stop_ingester, stopped) = tokio::sync::watch::channel(false);
    let ingester = tokio::spawn(ingester.run(stopped));
    let (stop_syncer, stopped) = oneshot::channel();
    let interval = Duration::from_millis((max_unsynced_ms / 2).max(1));
    let syncer = tokio::spawn(super::journal::sync_loop(
        journal.clone(),
        interval,
        stopped,
    ));
    JournalTasks {
        stop_ingester,
        ingester,
        stop_syncer,
        syncer,
    }
}

impl Shared {
    /// Append `record` to the journal, after waiting for room if the ingester is behind
    /// (backpressure, counted and logged); the database directly once the journal stops.
    async fn append(&self, journal: &Journal, record: AuditRecord) -> Recorded {
        if journal.room().await {
            self.backpressure("the audit journal's ingester cannot keep up: requests wait for room (backpressure)");
        }
        match journal.append(super::compact::Columns::from(record)) {
            Ok(()) => Recorded::Written,
            Err(Refused {
                error: AppendError::Stopped,
                row,
            }) => self.write_alone(row.record()).await,
            Err(Refused {
                error: AppendError::Io(e),
                row,
            }) => {
                self.stats.write_failures.inc();
                log_lost_row(&row, &format!("cannot append it to the audit journal: {e}"));
                Recorded::Failed
            }
        }
    }

    /// Queue `msg` for the writer, waiting for room when the queue is full (counted and warned:
    /// backpressure, never a drop); the message back when the writer has stopped.
    async fn enqueue(&self, msg: Msg) -> Result<(), Msg> {
        match self.tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(msg)) => {
                self.backpressure("the audit writer cannot keep up: requests wait for room in its queue (backpressure)");
                self.tx.send(msg).await.map_err(|e| e.0)
            }
            Err(mpsc::error::TrySendError::Closed(msg)) => Err(msg),
        }
    }

    /// Count a wait for room, and say `why` (at most every [`WARN_EVERY_MS`]).
    fn backpressure(&self, why: &str) {
        self.stats.backpressure.inc();
        let now = chrono::Utc::now().timestamp_millis();
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        if now - last >= WARN_EVERY_MS
            && self
                .last_warning_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                queue_capacity = self.capacity,
                waits = self.stats.backpressure.get(),
                "{why}"
            );
        }
    }

    /// One record in a transaction of its own (after shutdown).
    async fn write_alone(&self, record: AuditRecord) -> Recorded {
        let mut batch = vec![(record, None)];
        match write(&self.engine, &mut batch, &self.stats).await {
            true => Recorded::Written,
            false => Recorded::Failed,
        }
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
        "audit record not written: {why}"
    );
}

/// A row that will not reach the database, logged with its essentials instead.
pub(super) fn log_lost_row(row: &super::compact::Columns, why: &str) {
    log_lost(&row.record(), why);
}

/// The writer: take everything queued (up to `batch_size`), write it in one transaction, answer
/// the recorders and flushes; until stopped or every handle is gone. No timer: a batch is
/// whatever queued while the previous one was written.
async fn run(
    engine: Arc<Engine>,
    mut rx: mpsc::Receiver<Msg>,
    batch_size: usize,
    stats: Arc<AuditStats>,
) {
    let mut batch: Vec<(AuditRecord, Option<Ack>)> = Vec::with_capacity(batch_size);
    let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
    let mut stop: Option<oneshot::Sender<()>> = None;
    while let Some(first) = rx.recv().await {
        take(first, &mut batch, &mut acks, &mut stop);
        while batch.len() < batch_size && acks.is_empty() && stop.is_none() {
            match rx.try_recv() {
                Ok(msg) => take(msg, &mut batch, &mut acks, &mut stop),
                Err(_) => break,
            }
        }
        write(&engine, &mut batch, &stats).await;
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
        if let Some(stopped) = stop.take() {
            // Whatever raced past the `closed` flag is still written; later sends fail.
            rx.close();
            while let Some(msg) = rx.recv().await {
                take(msg, &mut batch, &mut acks, &mut stop);
                if batch.len() >= batch_size {
                    write(&engine, &mut batch, &stats).await;
                }
            }
            write(&engine, &mut batch, &stats).await;
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
            let _ = stopped.send(());
            return;
        }
    }
    write(&engine, &mut batch, &stats).await;
}

fn take(
    msg: Msg,
    batch: &mut Vec<(AuditRecord, Option<Ack>)>,
    acks: &mut Vec<oneshot::Sender<()>>,
    stop: &mut Option<oneshot::Sender<()>>,
) {
    match msg {
        Msg::Event(r, ack) => batch.push((*r, ack)),
        Msg::Flush(ack) => acks.push(ack),
        Msg::Stop(ack) => *stop = Some(ack),
    }
}

async fn write_once(
    engine: &Engine,
    records: &[(AuditRecord, Option<Ack>)],
) -> Result<(), StoreError> {
    let mut tx = engine.store().begin().await?;
    let all: Vec<&AuditRecord> = records.iter().map(|(r, _)| r).collect();
    tx.audit_many(&all).await?;
    tx.commit().await
}

/// Write `batch` (emptying it) in one transaction, retried with backoff; if that keeps failing,
/// one record per transaction so a single bad record cannot take the others with it. Answers
/// every recorder; whether all were written.
async fn write(
    engine: &Engine,
    batch: &mut Vec<(AuditRecord, Option<Ack>)>,
    stats: &AuditStats,
) -> bool {
    if batch.is_empty() {
        return true;
    }
    let records = std::mem::take(batch);
    let n = records.len() as u64;
    let mut last_error = String::new();
    for attempt in 0..WRITE_ATTEMPTS {
        match write_once(engine, &records).await {
            Ok(()) => {
                stats.written.inc_by(n);
                stats.batches.inc();
                for (_, ack) in records {
                    if let Some(ack) = ack {
                        let _ = ack.send(true);
                    }
                }
                return true;
            }
            Err(e) => {
                stats.write_failures.inc();
                last_error = e.to_string();
                tracing::warn!(records = n, attempt = attempt + 1, error = %last_error, "cannot write audit records; retrying");
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
        }
    }
    let mut all = true;
    for one in records {
        let single = [one];
        let result = write_once(engine, &single).await;
        let [(record, ack)] = single;
        match result {
            Ok(()) => {
                stats.written.inc();
                stats.batches.inc();
                if let Some(ack) = ack {
                    let _ = ack.send(true);
                }
            }
            Err(e) => {
                all = false;
                let why = format!("cannot write it: {e} (batch: {last_error})");
                match ack {
                    // The request is answered 503 instead: nothing left without its record.
                    Some(ack) => {
                        log_lost(&record, &format!("{why}; the request fails"));
                        let _ = ack.send(false);
                    }
                    None => {
                        stats.dropped.inc();
                        log_lost(&record, &why);
                    }
                }
            }
        }
    }
    all
}

/// Seal until nothing is left unsealed.
async fn seal_all(engine: &Engine, stats: &AuditStats) {
    if let Err(e) = seal_until_done(engine, stats).await {
        tracing::warn!(error = %e, "cannot seal audit records into the hash chain; retrying later");
    }
}

async fn seal_until_done(engine: &Engine, stats: &AuditStats) -> Result<(), StoreError> {
    loop {
        let n = seal_once(engine).await?;
        stats.sealed.inc_by(n as u64);
        if n < crate::store::audit_log::SEAL_BATCH {
            return Ok(());
        }
    }
}

/// Rounds of sealing tried at shutdown.
const SHUTDOWN_SEALS: u32 = 16;

/// The last sealing, at shutdown, retried: on PostgreSQL a pooled connection opened by an HTTP
/// worker dies with that worker's runtime when the server stops ("a Tokio context … is being
/// shut down"); the pool drops it and the next round opens one on this runtime. What is still
/// unsealed after that is sealed at the next start.
async fn seal_at_shutdown(engine: &Engine, stats: &AuditStats) {
    let mut last = None;
    for _ in 0..SHUTDOWN_SEALS {
        match seal_until_done(engine, stats).await {
            Ok(()) => return,
            Err(e) => last = Some(e),
        }
    }
    if let Some(e) = last {
        tracing::warn!(error = %e, "cannot seal the last audit records into the hash chain at shutdown; they are sealed at the next start");
    }
}

/// Steps of [`index_keys`] per round of the sealer. A step holds SQLite's writer for about
/// 10–35 ms (16,384 keys moved between levels; measured on the workload's file), so a deep
/// level's move, or a backlog (a trail from before migration 0013), takes at most about half
/// of the writer's time while it lasts. That still moves some 250,000 keys a second, several
/// times what a fully loaded gateway records.
const KEY_STEPS_PER_ROUND: usize = 8;

/// Move sealed rows' search keys into their sorted runs, a bounded step per transaction,
/// until there is nothing to move.
async fn index_keys(engine: &Engine, stats: &AuditStats) {
    let shape = crate::store::audit_log::KeyShape::default();
    for _ in 0..KEY_STEPS_PER_ROUND {
        let step = async {
            let mut tx = engine.store().begin().await?;
            let n = tx.index_audit_keys(&shape).await?;
            // A step that wrote no keys may still have moved the mark (past rows that name no
            // citizen or resource): it is committed all the same.
            if n.is_some() {
                tx.commit().await?;
            }
            Ok::<Option<u64>, StoreError>(n)
        };
        match step.await {
            Ok(None) => return,
            Ok(Some(n)) => {
                stats.keys_moved.inc_by(n);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot move audit search keys; retrying later (searches read the rows instead)");
                return;
            }
        }
    }
}

async fn seal_once(engine: &Engine) -> Result<usize, StoreError> {
    let mut tx = engine.store().begin().await?;
    let n = tx.seal_audit().await?;
    if n > 0 {
        tx.commit().await?;
    }
    Ok(n)
}

/// Delete what `retention_days` no longer keeps, in transactions of a bounded number of rows
/// (a first retention on a long trail is many of them, each leaving the writer to others in
/// between); how many rows.
pub async fn prune(engine: &Engine, retention_days: u32) -> Result<u64, StoreError> {
    let (n, _) = prune_some(engine, retention_days, usize::MAX).await?;
    Ok(n)
}

/// Prune transactions of the sealer's round: at most this many, so that a long backlog is
/// worked off between rounds of sealing and key moves instead of stopping them.
const PRUNE_TRANSACTIONS_PER_ROUND: usize = 20;

/// At most `transactions` retention transactions: how many rows they deleted, and whether
/// nothing old enough is left.
async fn prune_some(
    engine: &Engine,
    retention_days: u32,
    transactions: usize,
) -> Result<(u64, bool), StoreError> {
    let now = chrono::Utc::now().timestamp_millis();
    let before = now - i64::from(retention_days) * 86_400_000;
    let mut total = 0;
    for _ in 0..transactions {
        let mut tx = engine.store().begin().await?;
        let n = tx.prune_audit(before, now).await?;
        tx.commit().await?;
        total += n;
        if n == 0 {
            return Ok((total, true));
        }
    }
    Ok((total, false))
}

/// The sealer: seal every `interval`; with a retention, prune at start and hourly.
async fn seal_loop(
    engine: Arc<Engine>,
    interval: Duration,
    retention_days: u32,
    stats: Arc<AuditStats>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut next_prune = tokio::time::Instant::now();
    loop {
        seal_all(&engine, &stats).await;
        index_keys(&engine, &stats).await;
        if retention_days > 0 && tokio::time::Instant::now() >= next_prune {
            // A backlog goes on in the next round; otherwise the next prune is in an hour.
            let mut more = false;
            match prune_some(&engine, retention_days, PRUNE_TRANSACTIONS_PER_ROUND).await {
                Ok((n, done)) => {
                    stats.pruned.inc_by(n);
                    more = !done;
                    if n > 0 {
                        tracing::info!(
                            rows = n,
                            retention_days,
                            "audit retention: old records deleted, the chain anchored"
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "audit retention failed; retrying later"),
            }
            if !more {
                next_prune = tokio::time::Instant::now() + PRUNE_EVERY;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = &mut stop => return,
        }
    }
}
