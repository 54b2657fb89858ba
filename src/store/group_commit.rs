//! Group commit for SQLite: many write transactions share one durable `COMMIT`.
//!
//! SQLite admits one writer at a time, and with `synchronous=FULL` every commit waits for an
//! fsync. Here each logical transaction is a `SAVEPOINT` inside a physical transaction on the one
//! writer connection; the physical transaction commits when no other writer is queued (or the
//! batch is full), and every logical transaction in it is told the outcome only then. A client
//! therefore never hears "created" before its write is on disk, yet a burst of writes costs one
//! fsync instead of one each.
//!
//! Failure rules: a logical transaction that fails rolls back to its savepoint and leaves the
//! others alone; if the physical transaction itself fails (COMMIT error, or SQLite aborted it),
//! every logical transaction waiting on it gets [`StoreError::Busy`], which makes the engine redo
//! its whole write.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool};
use tokio::sync::{oneshot, Mutex, OwnedMutexGuard};

use super::sql::db_err;
use super::StoreError;

/// Most logical transactions in one physical transaction.
const MAX_BATCH: usize = 128;
/// How often a committed logical transaction checks that somebody will flush its batch. Queued
/// writers flush when they find nobody behind them; this is the safety net for a batch left
/// open when the queue emptied in between.
const FLUSH_CHECK: Duration = Duration::from_millis(20);

/// The writer connection and the batch in progress.
pub(crate) struct Batch {
    conn: PoolConnection<Any>,
    open: bool,
    waiters: Vec<oneshot::Sender<Result<(), StoreError>>>,
}

/// The single SQLite writer.
pub(crate) struct GroupWriter {
    batch: Arc<Mutex<Batch>>,
    queued: AtomicUsize,
}

/// One logical write transaction (a savepoint) holding the writer.
///
/// The savepoint is opened by the transaction's first statement (prefixed, so it costs no round
/// trip of its own) and never released on success: savepoints nest, `COMMIT` ends them all, and a
/// failing transaction rolls back to its own, the innermost. A plain create is thus one round trip
/// to SQLite's worker thread while holding the writer.
pub(crate) struct GroupTx {
    writer: Arc<GroupWriter>,
    guard: Option<OwnedMutexGuard<Batch>>,
    savepoint: bool,
}

impl GroupWriter {
    pub(crate) async fn new(pool: &AnyPool) -> Result<Arc<GroupWriter>, StoreError> {
        let conn = pool.acquire().await.map_err(db_err)?;
        Ok(Arc::new(GroupWriter {
            batch: Arc::new(Mutex::new(Batch {
                conn,
                open: false,
                waiters: Vec::new(),
            })),
            queued: AtomicUsize::new(0),
        }))
    }

    /// Start a logical transaction (waits for the writer).
    pub(crate) async fn begin(self: &Arc<Self>) -> Result<GroupTx, StoreError> {
        let queued = Queued::new(&self.queued);
        let mut guard = self.batch.clone().lock_owned().await;
        drop(queued);
        if !guard.open {
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut *guard.conn)
                .await
                .map_err(db_err)?;
            guard.open = true;
        }
        Ok(GroupTx {
            writer: self.clone(),
            guard: Some(guard),
            savepoint: false,
        })
    }
}

/// Counts a writer waiting for the connection, also when its future is dropped while waiting.
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn new(counter: &'a AtomicUsize) -> Queued<'a> {
        counter.fetch_add(1, Ordering::SeqCst);
        Queued(counter)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
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
            for w in batch.waiters.drain(..) {
                let _ = w.send(Ok(()));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "SQLite group commit failed; its writes will be retried");
            let _ = sqlx::query("ROLLBACK").execute(&mut *batch.conn).await;
            for w in batch.waiters.drain(..) {
                let _ = w.send(Err(StoreError::Busy));
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

/// Undo a logical transaction's savepoint; if SQLite already dropped the whole transaction, the
/// batch is failed.
async fn rollback_savepoint(batch: &mut Batch) {
    let undone = sqlx::query("ROLLBACK TO w")
        .execute(&mut *batch.conn)
        .await
        .is_ok()
        && sqlx::query("RELEASE w")
            .execute(&mut *batch.conn)
            .await
            .is_ok();
    if !undone {
        fail_batch(batch).await;
    }
}

impl GroupTx {
    /// SQL to put in front of the next statement: `SAVEPOINT w; ` the first time.
    pub(crate) fn statement_prefix(&mut self) -> &'static str {
        if self.savepoint {
            ""
        } else {
            self.savepoint = true;
            "SAVEPOINT w; "
        }
    }

    /// The writer connection, for this transaction's statements.
    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        // `guard` is only taken by `commit` and `drop`, which consume or end `self`.
        &mut self
            .guard
            .as_mut()
            .expect("a live GroupTx holds the writer")
            .conn
    }

    /// Hand the writer on and wait until the batch holding this transaction is durably committed.
    pub(crate) async fn commit(mut self) -> Result<(), StoreError> {
        let Some(mut guard) = self.guard.take() else {
            return Err(StoreError::Database("transaction already finished".into()));
        };
        let (tx, mut rx) = oneshot::channel();
        guard.waiters.push(tx);
        if self.writer.queued.load(Ordering::SeqCst) == 0 || guard.waiters.len() >= MAX_BATCH {
            flush(&mut guard).await;
        }
        drop(guard);
        loop {
            tokio::select! {
                result = &mut rx => return result.unwrap_or(Err(StoreError::Busy)),
                _ = tokio::time::sleep(FLUSH_CHECK) => {
                    if self.writer.queued.load(Ordering::SeqCst) == 0 {
                        let mut guard = self.writer.batch.clone().lock_owned().await;
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
        // and flush the batch for the others if nobody else is queued to do it.
        if let Some(mut guard) = self.guard.take() {
            let writer = self.writer.clone();
            let opened = self.savepoint;
            let undo = async move {
                if opened {
                    rollback_savepoint(&mut guard).await;
                }
                if writer.queued.load(Ordering::SeqCst) == 0 {
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
