//! Group commit for SQLite: many write transactions share one durable `COMMIT`, and write-only
//! transactions share a few round trips to SQLite, with statements kept prepared.
//!
//! SQLite admits one writer at a time, and with `synchronous=FULL` every commit waits for an
//! fsync. Here each logical transaction is a `SAVEPOINT` inside a physical transaction on the one
//! writer connection; the physical transaction commits when no other writer is queued (or the
//! batch is full), and every logical transaction in it is told the outcome only then. A client
//! therefore never hears "created" before its write is on disk, yet a burst of writes costs one
//! fsync instead of one each.
//!
//! A logical transaction takes the writer only when it must read inside the transaction
//! (`head`, conditional search). Until then its statements are buffered; a transaction that
//! only writes (a plain create) never holds the writer at all: at commit its statements are
//! queued for the *committer*, a task that runs everything queued in a few multi-statement round
//! trips ending in `COMMIT`: consecutive transactions of the same text go together, in batches
//! of a few fixed sizes, so that each batch's text comes back and stays prepared ([`run_each`]).
//! While that commit waits for its fsync, the next requests queue up, so under load N creates
//! cost a few round trips and one fsync, and request handling overlaps the fsync instead of
//! waiting for the slowest request of a batch.
//!
//! Checkpoints (copying the WAL into the database file, with an fsync of its own) run on a
//! reader connection in the background instead of inside a writer's `COMMIT`.
//!
//! Relaxed commits (`audit.max_unsynced_ms`): a queued group made only of audit records of reads
//! and refusals ([`GroupTx::commit_relaxed`]) is committed with `synchronous = NORMAL`: its WAL
//! frames are written to the operating system before anyone hears "committed" (a process crash
//! loses nothing) but not synced. The *syncer* fsyncs the WAL file within the window, and any
//! synced commit covers every relaxed one before it. Every other transaction, and any group that
//! holds one, commits with `synchronous = FULL` as before: the connection is set back to FULL
//! before a durable transaction begins (`Batch::lowered`).
//!
//! Failure rules: a logical transaction that fails rolls back to its savepoint and leaves the
//! others alone; if a queued group fails, it is rolled back and its transactions are run again
//! one at a time, so that the failure reaches only the transaction that caused it. If the
//! physical transaction itself fails (COMMIT error, or SQLite aborted it), every logical
//! transaction waiting on it gets [`StoreError::Busy`], which makes the engine redo its whole
//! write.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::any::AnyRow;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Row};
use tokio::sync::{oneshot, Mutex, Notify, OwnedMutexGuard};

use super::cache::Generations;
use super::search_sql::{anonymous_into, Sql};
use super::sql::{db_err, query_text, write_err};
use super::StoreError;

/// Most logical transactions in one physical transaction.
const MAX_BATCH: usize = 256;
/// How often the WAL is checkpointed while writes happen.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
/// WAL frames (pages) past which the next checkpoint is a TRUNCATE, which waits for the writer:
/// under a steady stream of writes a passive checkpoint never finds the WAL fully copied when a
/// write begins, so SQLite never starts the WAL over and the file grows without end (0.6–0.9 GB
/// per 500 care records in `benches/kl_gateway.rs`). 16,384 frames are 64 MiB of 4 KiB pages.
const WAL_TRUNCATE_FRAMES: i64 = if cfg!(test) { 64 } else { 16_384 };
/// Most binds in one queued group (SQLite allows 32766 per statement batch).
const MAX_GROUP_BINDS: usize = 30_000;
/// How often a committed logical transaction checks that somebody will flush its batch. Queued
/// writers flush when they find nobody behind them; this is the safety net for a batch left
/// open when the queue emptied in between.
const FLUSH_CHECK: Duration = Duration::from_millis(20);

type Waiter = oneshot::Sender<Result<(), StoreError>>;

/// The writer connection and the batch in progress.
pub(crate) struct Batch {
    conn: PoolConnection<Any>,
    open: bool,
    waiters: Vec<Waiter>,
    /// SQLite's `data_version` when our last physical transaction began: it changes only when
    /// another connection (another process) commits to the file.
    data_version: Option<i64>,
    /// The caches to reset when that happens.
    generations: Option<Arc<Generations>>,
    /// Times that happened.
    foreign_writes: Arc<AtomicU64>,
    /// Physical commits so far, counted wherever one succeeds (the checkpointer looks at it).
    commits: Arc<AtomicU64>,
    /// Relaxed commits allowed (`Some`), and how far they are synced.
    relaxed: Option<Arc<SyncState>>,
    /// The connection may be at `synchronous = NORMAL` (set before a relaxed group runs, cleared
    /// only once FULL is set again): a durable transaction restores FULL before it begins.
    lowered: bool,
}

/// Where relaxed commits may be made, and the syncer's bookkeeping.
#[derive(Debug)]
pub(crate) struct RelaxedSync {
    /// The database's WAL file (`…-wal`), fsynced by the syncer.
    pub(crate) wal: PathBuf,
    /// Longest a relaxed commit stays unsynced (the syncer runs every half of it).
    pub(crate) window: Duration,
}

#[derive(Debug, Default)]
struct SyncState {
    /// Relaxed commits made (only the writer, under the batch lock, adds to it).
    relaxed: AtomicU64,
    /// Relaxed commits known to be on disk: fsynced by the syncer, or followed by a synced
    /// commit on the same connection.
    synced: AtomicU64,
}

impl SyncState {
    /// A synced commit succeeded: every relaxed commit before it is on disk too.
    fn covered(&self) {
        self.synced
            .fetch_max(self.relaxed.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

/// A physical transaction's start, setting the synchronous mode first where it must change:
/// three fixed texts, each prepared once.
const BEGIN: &str = "BEGIN IMMEDIATE; PRAGMA data_version";
const BEGIN_FULL: &str = "PRAGMA synchronous = FULL; BEGIN IMMEDIATE; PRAGMA data_version";
const BEGIN_NORMAL: &str = "PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE; PRAGMA data_version";

/// A write-only transaction waiting for the writer.
struct Queued {
    sql: Sql,
    /// What a unique violation means for this transaction.
    conflict: StoreError,
    done: Waiter,
    /// May be committed unsynced ([`GroupTx::commit_relaxed`]).
    relaxed: bool,
}

/// The single SQLite writer.
pub(crate) struct GroupWriter {
    batch: Arc<Mutex<Batch>>,
    /// Tasks waiting for the writer (interactive transactions and the committer).
    waiting: AtomicUsize,
    /// Write-only transactions waiting for the committer.
    queue: std::sync::Mutex<Vec<Queued>>,
    /// Wakes the committer.
    wake: Arc<Notify>,
    /// The relaxed commits' bookkeeping (also in the batch), read without the writer.
    #[cfg_attr(not(test), allow(dead_code))]
    sync_state: Option<Arc<SyncState>>,
    /// Commits by another connection noticed (the batch counts them).
    #[cfg_attr(not(test), allow(dead_code))]
    foreign_writes: Arc<AtomicU64>,
    /// Physical commits (the batch counts them; the checkpointer reads them here).
    commits: Arc<AtomicU64>,
}

/// Most SQL text a transaction buffers before it takes the writer and sends its statements one
/// by one ([`GroupTx::write`]); a create or update is a few kilobytes.
pub(crate) const MAX_BUFFERED_TEXT: usize = 256 * 1024;

/// One logical write transaction.
///
/// Its statements are buffered until it first needs the connection; then the savepoint is
/// opened by the first statement sent (prefixed, so it costs no round trip of its own) and never
/// released on success: savepoints nest, `COMMIT` ends them all, and a failing transaction rolls
/// back to its own, the innermost.
pub(crate) struct GroupTx {
    writer: Arc<GroupWriter>,
    guard: Option<OwnedMutexGuard<Batch>>,
    savepoint: bool,
    /// Statements not yet sent (only while the writer is not held).
    pending: Sql,
    /// What a unique violation in `pending` means.
    conflict: Option<StoreError>,
}

impl GroupWriter {
    /// The writer on `pool`'s connection; `checkpoint` is where WAL checkpoints run; `relaxed`:
    /// whether (and how) audit-only groups may commit unsynced (only with `synchronous = FULL`
    /// configured; with NORMAL every commit is unsynced anyway).
    pub(crate) async fn new(
        pool: &AnyPool,
        checkpoint: AnyPool,
        disk: Arc<super::DiskState>,
        relaxed: Option<RelaxedSync>,
    ) -> Result<Arc<GroupWriter>, StoreError> {
        let mut conn = pool.acquire().await.map_err(db_err)?;
        sqlx::query("PRAGMA wal_autocheckpoint = 0")
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        let commits = Arc::new(AtomicU64::new(0));
        let foreign_writes = Arc::new(AtomicU64::new(0));
        let sync_state = relaxed.as_ref().map(|_| Arc::new(SyncState::default()));
        let writer = Arc::new(GroupWriter {
            batch: Arc::new(Mutex::new(Batch {
                conn,
                open: false,
                waiters: Vec::new(),
                data_version: None,
                generations: None,
                foreign_writes: foreign_writes.clone(),
                commits: commits.clone(),
                relaxed: sync_state.clone(),
                lowered: false,
            })),
            waiting: AtomicUsize::new(0),
            queue: std::sync::Mutex::new(Vec::new()),
            wake: Arc::new(Notify::new()),
            sync_state: sync_state.clone(),
            foreign_writes,
            commits,
        });
        tokio::spawn(committer(Arc::downgrade(&writer), writer.wake.clone()));
        tokio::spawn(checkpointer(Arc::downgrade(&writer), checkpoint, disk));
        if let (Some(config), Some(state)) = (relaxed, sync_state) {
            tokio::spawn(syncer(Arc::downgrade(&state), config));
        }
        Ok(writer)
    }

    /// Reset these caches when another process is found writing to the file.
    pub(crate) async fn watch_foreign_writes(&self, generations: Arc<Generations>) {
        self.batch.lock().await.generations = Some(generations);
    }

    /// Start a logical transaction (the writer is taken when it is first needed).
    pub(crate) fn begin(self: &Arc<Self>) -> GroupTx {
        GroupTx {
            writer: self.clone(),
            guard: None,
            savepoint: false,
            pending: Sql::default(),
            conflict: None,
        }
    }

    /// Relaxed commits made and known synced (`None`: relaxed commits are off).
    #[cfg(test)]
    pub(crate) fn sync_counts(&self) -> Option<(u64, u64)> {
        let state = self.sync_state.as_ref()?;
        Some((
            state.relaxed.load(Ordering::SeqCst),
            state.synced.load(Ordering::SeqCst),
        ))
    }

    /// Commits by another connection noticed so far.
    #[cfg(test)]
    pub(crate) fn foreign_writes(&self) -> u64 {
        self.foreign_writes.load(Ordering::SeqCst)
    }

    /// Wait for the writer, counted as waiting so that nobody commits in front of us.
    async fn acquire(self: &Arc<Self>) -> OwnedMutexGuard<Batch> {
        let waiting = Waiting::new(&self.waiting);
        let guard = self.batch.clone().lock_owned().await;
        drop(waiting);
        guard
    }

    fn nobody_waiting(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) == 0
    }

    /// Take queued write-only transactions, up to the bind limit.
    fn take_queued(&self) -> Vec<Queued> {
        let Ok(mut queue) = self.queue.lock() else {
            return Vec::new();
        };
        let mut binds = 0;
        let mut n = 0;
        while n < queue.len() {
            binds += queue[n].sql.binds.len();
            if n > 0 && binds > MAX_GROUP_BINDS {
                break;
            }
            n += 1;
        }
        queue.drain(..n).collect()
    }
}

/// Runs queued write-only transactions whenever there are some, for as long as the writer lives.
async fn committer(writer: Weak<GroupWriter>, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        let Some(writer) = writer.upgrade() else {
            return;
        };
        loop {
            let mut guard = writer.acquire().await;
            let group = writer.take_queued();
            if group.is_empty() {
                // Interactive transactions may have left their batch open for us.
                if writer.nobody_waiting() {
                    flush(&mut guard).await;
                }
                break;
            }
            if guard.open {
                // Interactive transactions are waiting in this physical transaction: join it.
                run_queued(&mut guard, group).await;
                flush(&mut guard).await;
            } else {
                let relaxed = guard.relaxed.is_some() && group.iter().all(|q| q.relaxed);
                run_and_commit(&mut guard, group, relaxed).await;
            }
        }
    }
}

/// Checkpoints the WAL in the background after every round with commits (each physical commit
/// is counted where it succeeds, on the committer's path and on an interactive transaction's
/// own). A passive checkpoint neither
/// waits for nor blocks the writer; durability does not depend on it (the WAL is synced at each
/// commit), it only keeps the WAL file from growing; `journal_size_limit` cuts the file back once
/// it restarts. After a write failed for want of disk space, a TRUNCATE checkpoint runs every
/// round until a commit succeeds: it waits for readers (within the busy timeout), copies the WAL
/// back and cuts the file to zero bytes, so the space the WAL held is given back instead of the
/// WAL and the database both growing into what an operator freed. A checkpoint that itself finds
/// the disk full changes nothing (the WAL stays the truth) and is tried again. A WAL found
/// longer than [`WAL_TRUNCATE_FRAMES`] gets a TRUNCATE checkpoint in the next round too.
///
/// A TRUNCATE runs on the writer's own connection, between its transactions: it needs the write
/// lock anyway, and from any other connection it starts the WAL over behind the writer's back,
/// which changes the writer's `data_version` exactly as another process's commit does (the writer
/// then logged a foreign write and reset every cache, several times a minute under load).
async fn checkpointer(writer: Weak<GroupWriter>, pool: AnyPool, disk: Arc<super::DiskState>) {
    let mut seen = 0;
    let mut long = false;
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        let Some(writer) = writer.upgrade() else {
            return;
        };
        let now = writer.commits.load(Ordering::Relaxed);
        let full = disk.full_at_ms().is_some();
        if now == seen && !full && !long {
            continue;
        }
        seen = now;
        // TRUNCATE holds the write lock while it waits for readers, so only when space is short
        // or the WAL has grown past its bound.
        let mode = if full || long { "TRUNCATE" } else { "PASSIVE" };
        let pragma = format!("PRAGMA wal_checkpoint({mode})");
        let result = if mode == "TRUNCATE" {
            let mut batch = writer.acquire().await;
            // A checkpoint cannot run inside a transaction: commit what interactive
            // transactions left open for the next flusher.
            flush(&mut batch).await;
            sqlx::query(&pragma).fetch_all(&mut *batch.conn).await
        } else {
            sqlx::query(&pragma).fetch_all(&pool).await
        };
        match result {
            // (busy, frames in the WAL, frames checkpointed)
            Ok(rows) => {
                long = rows
                    .first()
                    .and_then(|r| r.try_get::<i64, _>(1).ok())
                    .is_some_and(|frames| frames > WAL_TRUNCATE_FRAMES);
            }
            Err(e) => tracing::warn!(error = %e, mode, "WAL checkpoint failed; will retry"),
        }
    }
}

/// Syncs the WAL file within `config.window` of a relaxed commit: every half window it fsyncs
/// the file if relaxed commits were made since the last sync (none: nothing to do). fsync on any
/// descriptor of the file flushes what SQLite wrote through its own. A WAL file that is gone
/// was checkpointed and removed, which syncs its content into the database file first.
async fn syncer(state: Weak<SyncState>, config: RelaxedSync) {
    let mut tick = tokio::time::interval((config.window / 2).max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let wal = Arc::new(config.wal);
    let mut warned = false;
    loop {
        tick.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        let made = state.relaxed.load(Ordering::SeqCst);
        if made <= state.synced.load(Ordering::SeqCst) {
            continue;
        }
        let path = wal.clone();
        let synced = tokio::task::spawn_blocking(move || match std::fs::File::open(&*path) {
            Ok(file) => file.sync_data(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        })
        .await;
        match synced {
            Ok(Ok(())) => {
                state.synced.fetch_max(made, Ordering::SeqCst);
                warned = false;
            }
            Ok(Err(e)) if !warned => {
                warned = true;
                tracing::warn!(error = %e, wal = %wal.display(), "cannot sync the WAL file; audit records of reads stay unsynced until the next synced commit");
            }
            _ => {}
        }
    }
}

/// Counts a task waiting for the writer, also when its future is dropped while waiting.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(counter: &'a AtomicUsize) -> Waiting<'a> {
        counter.fetch_add(1, Ordering::SeqCst);
        Waiting(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Open the physical transaction if needed, and notice commits by another process.
async fn ensure_open(batch: &mut Batch) -> Result<(), StoreError> {
    if batch.open {
        return Ok(());
    }
    let begin = if batch.lowered { BEGIN_FULL } else { BEGIN };
    let rows = sqlx::query(begin)
        .fetch_all(&mut *batch.conn)
        .await
        .map_err(db_err)?;
    batch.open = true;
    batch.lowered = false;
    note_data_version(batch, &rows);
    Ok(())
}

/// Reset the caches if another process committed since our last physical transaction.
fn note_data_version(batch: &mut Batch, rows: &[AnyRow]) {
    let version: Option<i64> = rows.first().and_then(|r| r.try_get(0).ok());
    if batch.data_version.is_some() && version != batch.data_version {
        batch.foreign_writes.fetch_add(1, Ordering::SeqCst);
        tracing::error!(
            "another process has written to this SQLite file; one gateway process per file is \
             supported (use PostgreSQL for several instances); caches were reset"
        );
        if let Some(g) = &batch.generations {
            g.everything_changed();
        }
    }
    batch.data_version = version;
}

/// Commit the physical transaction and tell every waiter.
async fn flush(batch: &mut Batch) {
    if !batch.open {
        return;
    }
    let started = std::time::Instant::now();
    let result = sqlx::query("COMMIT").execute(&mut *batch.conn).await;
    batch.open = false;
    tracing::debug!(
        writes = batch.waiters.len(),
        commit_us = started.elapsed().as_micros() as u64,
        "group commit"
    );
    match result {
        Ok(_) => {
            batch.commits.fetch_add(1, Ordering::Relaxed);
            if let Some(state) = &batch.relaxed {
                state.covered();
            }
            for w in batch.waiters.drain(..) {
                let _ = w.send(Ok(()));
            }
        }
        Err(e) => {
            // A full disk is told as such (507); anything else is retried as busy.
            let err = match db_err(e) {
                StoreError::DiskFull => StoreError::DiskFull,
                other => {
                    tracing::error!(error = %other, "SQLite group commit failed; its writes will be retried");
                    StoreError::Busy
                }
            };
            let _ = sqlx::query("ROLLBACK").execute(&mut *batch.conn).await;
            for w in batch.waiters.drain(..) {
                let _ = w.send(Err(err.clone()));
            }
        }
    }
}

/// The physical transaction is lost: roll back what is left and fail every waiter.
async fn fail_batch(batch: &mut Batch) {
    let _ = sqlx::query("ROLLBACK").execute(&mut *batch.conn).await;
    batch.open = false;
    for w in batch.waiters.drain(..) {
        let _ = w.send(Err(StoreError::Busy));
    }
}

/// Undo the innermost savepoint `name`; if SQLite already dropped the whole transaction, the
/// batch is failed.
async fn rollback_savepoint(batch: &mut Batch, name: &str) {
    let undone = sqlx::query(&format!("ROLLBACK TO {name}"))
        .execute(&mut *batch.conn)
        .await
        .is_ok()
        && sqlx::query(&format!("RELEASE {name}"))
            .execute(&mut *batch.conn)
            .await
            .is_ok();
    if !undone {
        fail_batch(batch).await;
    }
}

/// Run `sql` on the writer's connection with SQLite's placeholders ([`Sql::sqlite_text`]: `$N`
/// are found by name, a linear search per bind); `persistent`: keep the prepared statement, for
/// a text that is sent again.
async fn execute(
    conn: &mut AnyConnection,
    sql: &Sql,
    persistent: bool,
) -> Result<sqlx::any::AnyQueryResult, sqlx::Error> {
    let text = sql.sqlite_text();
    query_text(&text, &sql.binds)
        .persistent(persistent)
        .execute(conn)
        .await
}

/// With no physical transaction open: begin, run the group and commit ([`run_each`])
/// (`relaxed`: unsynced, see the module documentation). If that fails, nothing of it stays, and
/// the group is run again one by one, synced.
async fn run_and_commit(batch: &mut Batch, group: Vec<Queued>, relaxed: bool) {
    // The synchronous mode is set before BEGIN, in the same round trip, and only when it differs
    // from what the connection has. `lowered` is set before NORMAL is sent and
    // cleared only once FULL has been set again.
    let begin = match (relaxed, batch.lowered) {
        (true, false) => BEGIN_NORMAL,
        (false, true) => BEGIN_FULL,
        _ => BEGIN,
    };
    if relaxed {
        batch.lowered = true;
    }
    let started = std::time::Instant::now();
    let result = run_each(&mut batch.conn, begin, &group, "COMMIT").await;
    tracing::debug!(
        writes = group.len(),
        us = started.elapsed().as_micros() as u64,
        "group run and commit"
    );
    match result {
        Ok(rows) => {
            batch.commits.fetch_add(1, Ordering::Relaxed);
            if let Some(state) = &batch.relaxed {
                if relaxed {
                    state.relaxed.fetch_add(1, Ordering::SeqCst);
                } else {
                    batch.lowered = false;
                    state.covered();
                }
            }
            note_data_version(batch, &rows);
            for q in group {
                let _ = q.done.send(Ok(()));
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, "queued group failed; running its writes one by one");
            let _ = sqlx::query("ROLLBACK").execute(&mut *batch.conn).await;
            batch.open = false;
            run_queued(batch, group).await;
            flush(batch).await;
        }
    }
}

/// How many transactions of the same text one statement batch runs: a run of equal texts is cut
/// into these sizes, largest first. Each size of each text is kept prepared, alone and with the
/// group's first or last statement around it: a few entries a kind of write in the connection's
/// statement cache (sqlx keeps the 100 last used).
const RUN_CHUNKS: [usize; 4] = [8, 4, 2, 1];
/// Longest text kept prepared. A large transaction (a municipal care record of a few dozen
/// resources, a Bundle) has a text of its own that seldom comes back; kept, its hundreds of
/// statements would hold memory until a hundred later texts pushed them out.
const KEPT_TEXT_MAX: usize = 64 * 1024;

/// Run `first`, then `group`'s transactions, then `last`: the rows the statements gave (the
/// data version `first` reads), or the first error (what ran is then left for the caller to
/// undo).
///
/// The statements are kept prepared. A group's whole text was new each time, so SQLite parsed
/// and planned every statement of every write anew with each group, and copied the rest of the
/// text for each statement (sqlx passes its length without a terminator): about a sixth of a
/// create's CPU. Writes of one kind have one text (a create of an Observation, a write's audit
/// record), so consecutive transactions of the same text go as one batch of [`RUN_CHUNKS`]
/// copies of it, `first` in front of the first batch and `last` behind the last: texts that
/// come back, and a group of one kind of write in one to three round trips. One round trip per
/// transaction lost more to the writer's waits than the parse it saved (docs/benchmarks.md,
/// "Statements kept prepared").
async fn run_each(
    conn: &mut AnyConnection,
    first: &'static str,
    group: &[Queued],
    last: &'static str,
) -> Result<Vec<AnyRow>, sqlx::Error> {
    let mut rows = Vec::new();
    let mut one = String::new();
    let mut text = String::new();
    let mut rest = group;
    let mut started = false;
    loop {
        text.clear();
        if !started {
            text.push_str(first);
            started = true;
        }
        let mut chunk: &[Queued] = &[];
        if let Some(head) = rest.first() {
            // Only as far as the largest batch: a run is cut into batches one at a time.
            let same = rest
                .iter()
                .take(RUN_CHUNKS[0])
                .take_while(|q| {
                    q.sql.text == head.sql.text && q.sql.binds.len() == head.sql.binds.len()
                })
                .count();
            one.clear();
            let tail;
            (chunk, tail) = if anonymous_into(&head.sql.text, head.sql.binds.len(), &mut one) {
                let size = RUN_CHUNKS.into_iter().find(|c| *c <= same).unwrap_or(1);
                for _ in 0..size {
                    if !text.is_empty() {
                        text.push_str("; ");
                    }
                    text.push_str(&one);
                }
                rest.split_at(size)
            } else if text.is_empty() {
                // Placeholders out of order: this transaction alone, numbered.
                text = head.sql.sqlite_text();
                rest.split_at(1)
            } else {
                // `first` goes on its own, the numbered transaction next.
                (&[][..], rest)
            };
            rest = tail;
        }
        if rest.is_empty() {
            text.push_str("; ");
            text.push_str(last);
        }
        rows.extend(
            query_text(&text, chunk.iter().flat_map(|q| &q.sql.binds))
                .persistent(text.len() <= KEPT_TEXT_MAX)
                .fetch_all(&mut *conn)
                .await?,
        );
        if rest.is_empty() {
            return Ok(rows);
        }
    }
}

/// Run queued write-only transactions inside the open physical transaction: all in one round
/// trip, or, if that fails, one by one.
async fn run_queued(batch: &mut Batch, group: Vec<Queued>) {
    if group.is_empty() {
        return;
    }
    if let Err(e) = ensure_open(batch).await {
        for q in group {
            let _ = q.done.send(Err(e.clone()));
        }
        return;
    }
    // One savepoint around the group, so that a failure undoes the group only.
    let result = run_each(&mut batch.conn, "SAVEPOINT g", &group, "RELEASE g").await;
    if result.is_ok() {
        batch.waiters.extend(group.into_iter().map(|q| q.done));
        return;
    }
    rollback_savepoint(batch, "g").await;
    for q in group {
        if let Err(e) = ensure_open(batch).await {
            let _ = q.done.send(Err(e));
            continue;
        }
        let mut one = Sql::from_text("SAVEPOINT w");
        one.append_ref(&q.sql);
        match execute(&mut batch.conn, &one, true).await {
            Ok(_) => batch.waiters.push(q.done),
            Err(e) => {
                let err = write_err(e, q.conflict);
                rollback_savepoint(batch, "w").await;
                let _ = q.done.send(Err(err));
            }
        }
    }
}

impl GroupTx {
    /// SQL to put in front of the next statement: `SAVEPOINT w; ` the first time.
    fn statement_prefix(&mut self) -> &'static str {
        if self.savepoint {
            ""
        } else {
            self.savepoint = true;
            "SAVEPOINT w; "
        }
    }

    /// Buffer a write statement (sent with the next read, or queued at commit). `conflict` is
    /// what a unique violation of it means.
    pub(crate) async fn write(&mut self, sql: Sql, conflict: StoreError) -> Result<(), StoreError> {
        if self.guard.is_none() {
            if self.pending.text.len() + sql.text.len() <= MAX_BUFFERED_TEXT {
                self.pending.append(sql);
                self.conflict.get_or_insert(conflict);
                return Ok(());
            }
            // A large transaction (a resource with thousands of search values, a big Bundle):
            // the writer now, what is buffered sent, and from here each statement on its own.
            // One text of n statements costs SQLite n copies of its rest (sqlx gives the text's
            // length without a terminator, so each prepare duplicates what is left): a Patient
            // with 300,000 given names held the writer for minutes that way.
            self.conn().await?;
        }
        let mut sql = sql;
        let prefix = self.statement_prefix();
        if !prefix.is_empty() {
            sql.text.insert_str(0, prefix);
        }
        execute(self.conn_held(), &sql, true)
            .await
            .map(|_| ())
            .map_err(|e| write_err(e, conflict))
    }

    /// The writer connection, for a statement whose rows are read: takes the writer, opens the
    /// physical transaction and this transaction's savepoint, and sends buffered statements.
    pub(crate) async fn conn(&mut self) -> Result<&mut AnyConnection, StoreError> {
        if self.guard.is_none() {
            let mut guard = self.writer.acquire().await;
            let opened = ensure_open(&mut guard).await;
            self.guard = Some(guard);
            opened?;
        }
        if !self.savepoint {
            self.savepoint = true;
            let mut sql = Sql::from_text("SAVEPOINT w");
            let pending = std::mem::take(&mut self.pending);
            if !pending.text.is_empty() {
                sql.append(pending);
            }
            let conflict = self.conflict.take();
            if let Err(e) = execute(self.conn_held(), &sql, true).await {
                return Err(write_err(e, conflict.unwrap_or(StoreError::Busy)));
            }
        }
        Ok(self.conn_held())
    }

    /// Whether this transaction has taken the writer (it read inside the transaction, or
    /// wrote more than is buffered).
    pub(crate) fn holds_writer(&self) -> bool {
        self.guard.is_some()
    }

    fn conn_held(&mut self) -> &mut AnyConnection {
        // `guard` is only taken by `commit` and `drop`, which consume or end `self`.
        &mut self
            .guard
            .as_mut()
            .expect("a GroupTx that sends statements holds the writer")
            .conn
    }

    /// Hand the writer on and wait until the batch holding this transaction is durably committed.
    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        self.commit_as(false).await
    }

    /// Commit a transaction of audit records of reads and refusals: like [`GroupTx::commit`],
    /// except that when it runs in a group of such transactions only, the commit reaches the
    /// operating system before this returns and the disk within the syncer's window. A
    /// transaction that already holds the writer commits synced.
    pub(crate) async fn commit_relaxed(self) -> Result<(), StoreError> {
        self.commit_as(true).await
    }

    async fn commit_as(mut self, relaxed: bool) -> Result<(), StoreError> {
        let writer = self.writer.clone();
        let (tx, mut rx) = oneshot::channel();
        match self.guard.take() {
            Some(mut guard) => {
                guard.waiters.push(tx);
                if writer.nobody_waiting() || guard.waiters.len() >= MAX_BATCH {
                    flush(&mut guard).await;
                }
            }
            None if self.pending.text.is_empty() => return Ok(()),
            None => {
                let sql = std::mem::take(&mut self.pending);
                let conflict = self.conflict.take().unwrap_or(StoreError::Busy);
                match writer.queue.lock() {
                    Ok(mut queue) => queue.push(Queued {
                        sql,
                        conflict,
                        done: tx,
                        relaxed,
                    }),
                    Err(_) => return Err(StoreError::Database("writer queue poisoned".into())),
                }
                writer.wake.notify_one();
                // The committer answers; if it is gone, so is the sender.
                return rx.await.unwrap_or(Err(StoreError::Busy));
            }
        }
        loop {
            tokio::select! {
                result = &mut rx => return result.unwrap_or(Err(StoreError::Busy)),
                _ = tokio::time::sleep(FLUSH_CHECK) => {
                    if writer.nobody_waiting() {
                        let mut guard = writer.batch.clone().lock_owned().await;
                        flush(&mut guard).await;
                    }
                }
            }
        }
    }
}

impl Drop for GroupTx {
    fn drop(&mut self) {
        // Dropped without commit: undo the savepoint before the next writer gets the connection,
        // and flush the batch for the others if nobody else is queued to do it. Buffered
        // statements were never sent, so there is nothing to undo for them.
        if let Some(mut guard) = self.guard.take() {
            let writer = self.writer.clone();
            let opened = self.savepoint;
            let undo = async move {
                if opened {
                    rollback_savepoint(&mut guard, "w").await;
                }
                if writer.nobody_waiting() {
                    flush(&mut guard).await;
                }
            };
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn(undo);
                }
                Err(_) => tracing::error!("write transaction dropped outside a runtime"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::store::NewVersion;

    /// Groups of runs of equal texts (longer than the largest chunk, and every size below it),
    /// other texts between them, a transaction with its placeholders out of order (first and in
    /// the middle), texts too long to keep: every statement runs once, in the group's order,
    /// with its own values; a failing one stops the run.
    #[tokio::test]
    async fn a_group_runs_in_order_with_its_own_values_whatever_its_runs() {
        use crate::store::search_sql::{Bind, Sql};
        use sqlx::Connection;
        type Row = (i64, String, String);
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect("sqlite::memory:")
            .await
            .expect("connect");
        sqlx::query("CREATE TABLE t (n INTEGER PRIMARY KEY, kind TEXT, v TEXT)")
            .execute(&mut conn)
            .await
            .expect("create");
        // (n, kind) → a write of that row: `odd` with its placeholders out of order, `big` with
        // a text longer than what is kept prepared, others plain.
        let write = |n: i64, kind: &str| {
            let value = Bind::Text(format!("$'{n}"));
            let sql = match kind {
                "odd" => {
                    let mut sql =
                        Sql::from_text("INSERT INTO t (v, kind, n) VALUES ($2, 'odd', $1)");
                    sql.binds = vec![Bind::Int(n), value];
                    sql
                }
                _ => {
                    let literal = if kind == "big" {
                        "x".repeat(super::KEPT_TEXT_MAX)
                    } else {
                        kind.to_string()
                    };
                    let mut sql = Sql::from_text("INSERT INTO t (n, kind, v) VALUES (");
                    sql.bind(Bind::Int(n)).push(&format!(", '{literal}', "));
                    sql.bind(value).push(")");
                    sql
                }
            };
            super::Queued {
                sql,
                conflict: crate::store::StoreError::Busy,
                done: tokio::sync::oneshot::channel().0,
                relaxed: false,
            }
        };
        let groups: [&[(&str, i64)]; 3] = [
            &[
                ("a", 19),
                ("b", 1),
                ("a", 3),
                ("c", 2),
                ("odd", 1),
                ("a", 5),
            ],
            &[("odd", 1), ("a", 2)],
            &[("big", 2)],
        ];
        let mut n = 0;
        for runs in groups {
            let mut group = Vec::new();
            let mut expected: Vec<Row> = Vec::new();
            let from = n + 1;
            for &(kind, count) in runs {
                for _ in 0..count {
                    n += 1;
                    group.push(write(n, kind));
                    let stored = if kind == "big" {
                        "x".repeat(super::KEPT_TEXT_MAX)
                    } else {
                        kind.to_string()
                    };
                    expected.push((n, stored, format!("$'{n}")));
                }
            }
            super::run_each(&mut conn, "BEGIN", &group, "COMMIT")
                .await
                .expect("run");
            let rows: Vec<Row> =
                sqlx::query_as("SELECT n, kind, v FROM t WHERE n >= ? ORDER BY rowid")
                    .bind(from)
                    .fetch_all(&mut conn)
                    .await
                    .expect("read");
            assert_eq!(rows, expected, "{runs:?}");
        }
        // A failing transaction stops the run with its error, and what ran is left to undo.
        let again = vec![write(1000, "a"), write(1, "a")];
        assert!(super::run_each(&mut conn, "BEGIN", &again, "COMMIT")
            .await
            .is_err());
        sqlx::query("ROLLBACK")
            .execute(&mut conn)
            .await
            .expect("rollback");
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut conn)
            .await
            .expect("count");
        assert_eq!(count, n);
    }

    async fn burst(store: &dyn crate::store::Storage, prefix: &str, n: usize) {
        let text = format!(
            "{{\"resourceType\":\"Basic\",\"text\":\"{}\"}}",
            "x".repeat(2000)
        );
        for i in 0..n {
            let id = format!("{prefix}{i}");
            let mut tx = store.begin().await.expect("begin");
            // A read inside the transaction takes the writer's connection.
            assert!(tx.head("Basic", &id).await.expect("head").is_none());
            tx.write(&NewVersion {
                rtype: "Basic",
                id: &id,
                version: 1,
                last_updated_ms: 0,
                method: "PUT",
                content: Some(&text),
                index: &[],
                kpi: None,
                owner: None,
                citizen: None,
            })
            .await
            .expect("write");
            tx.commit().await.expect("commit");
        }
    }

    /// A WAL that grew past its bound is truncated by the checkpointer: without that, a steady
    /// stream of writes never lets SQLite start the WAL over, and it stays as long as the
    /// longest burst (gigabytes during a bulk load of care records).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_wal_is_truncated() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("w.db");
        let wal = dir.path().join("w.db-wal");
        let cache = crate::config::Config::defaults().cache;
        let store = crate::store::open(
            &format!("sqlite://{}", path.display()),
            2,
            "normal",
            0,
            &cache,
        )
        .await
        .expect("open");
        // Far more than the test's bound of 64 frames.
        burst(&*store, "w", 200).await;
        for _ in 0..200 {
            let len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
            if len < 64 * 4096 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!(
            "the WAL is still {} bytes",
            std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0)
        );
    }

    /// Transactions that read before they write (conditional or versioned writes, every
    /// municipal record) commit on the writer's own connection, not through the committer; the
    /// background checkpointer must see those commits too, or the WAL grows without end and the
    /// database file stays empty (it once did: 10 GB of WAL during a bulk load of records).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_of_interactive_transactions_are_checkpointed() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("c.db");
        let cache = crate::config::Config::defaults().cache;
        let store = crate::store::open(
            &format!("sqlite://{}", path.display()),
            2,
            "normal",
            0,
            &cache,
        )
        .await
        .expect("open");
        let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let before = size();
        burst(&*store, "b", 50).await;
        // 50 × 2 KB committed: once checkpointed, the database file holds them. Waits for the
        // checkpointer's rounds, up to 20 s on a loaded machine; without it, never.
        let wanted = before + 50 * 2000;
        for _ in 0..200 {
            if size() >= wanted {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!(
            "the database file is {} bytes (was {before}); the WAL was not checkpointed",
            size()
        );
    }

    /// The writer's own TRUNCATE checkpoints start the WAL over without being taken for another
    /// process's commits (they once were: every cache reset several times a minute under load);
    /// a commit by another connection still is.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn own_truncations_are_not_foreign_writes_but_another_connections_commit_is() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("f.db");
        let wal = dir.path().join("f.db-wal");
        let url = format!("sqlite://{}", path.display());
        let cache = crate::config::Config::defaults().cache;
        let store = crate::store::sql::SqlStore::open(&url, 2, "normal".into(), 0, &cache)
            .await
            .expect("open");
        let wal_len = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        burst(&store, "f", 200).await;
        let mut truncated = false;
        for _ in 0..200 {
            if wal_len() < 64 * 4096 {
                truncated = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(truncated, "the WAL is still {} bytes", wal_len());
        burst(&store, "g", 3).await;
        assert_eq!(
            store.foreign_writes(),
            0,
            "own checkpoints taken for foreign writes"
        );

        let mut other = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
            .await
            .expect("second connection");
        sqlx::query("INSERT INTO access_grants VALUES ('x', 'y', 'z', 'r', 0)")
            .execute(&mut other)
            .await
            .expect("foreign insert");
        burst(&store, "h", 1).await;
        assert_eq!(store.foreign_writes(), 1);
    }

    async fn relaxed_store(
        dir: &std::path::Path,
        audit_sync_ms: u64,
    ) -> crate::store::sql::SqlStore {
        let cache = crate::config::CacheConfig {
            enabled: false,
            ..crate::config::Config::defaults().cache
        };
        crate::store::sql::SqlStore::open(
            &format!("sqlite://{}", dir.join("r.db").display()),
            2,
            crate::store::SqliteTuning {
                synchronous: "full",
                page_size: 4096,
                audit_sync_ms,
                direct_reads: true,
            },
            0,
            &cache,
        )
        .await
        .expect("open")
    }

    async fn audit_only(store: &crate::store::sql::SqlStore) {
        use crate::store::Storage;
        let mut tx = store.begin().await.expect("begin");
        let record = crate::audit::AuditRecord::new(crate::audit::Interaction::Read, 200);
        tx.audit(&record).await.expect("audit");
        tx.commit().await.expect("commit");
    }

    /// Audit-only transactions commit unsynced, the syncer syncs them within the window, and a
    /// durable transaction after them runs at FULL again: the relaxed mode never leaks into a
    /// clinical write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn audit_only_commits_are_synced_within_the_window() {
        let dir = tempfile::tempdir().expect("dir");
        let store = relaxed_store(dir.path(), 50).await;
        for _ in 0..3 {
            audit_only(&store).await;
        }
        let (made, _) = store.sync_counts().expect("relaxed commits are on");
        assert!(made >= 1, "the audit-only commits were not relaxed");
        assert_eq!(store.synchronous_in_a_write().await, 2);
        // Synced: by the syncer's fsync, or covered by a synced commit. Polled for up to 10 s on
        // a loaded machine; the window itself is a benchmark matter, not a timing test.
        audit_only(&store).await;
        for _ in 0..200 {
            if let Some((made, synced)) = store.sync_counts() {
                if synced >= made {
                    return;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("relaxed commits stayed unsynced: {:?}", store.sync_counts());
    }

    /// With `audit.max_unsynced_ms = 0` every commit is synced: no relaxed commit is made.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_zero_window_syncs_every_audit_commit() {
        let dir = tempfile::tempdir().expect("dir");
        let store = relaxed_store(dir.path(), 0).await;
        audit_only(&store).await;
        assert_eq!(store.sync_counts(), None);
        assert_eq!(store.synchronous_in_a_write().await, 2);
    }
}
