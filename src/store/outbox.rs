//! The durable outbox: messages to forward and their delivery state, as SQL.
//!
//! A job row is written by [`StoreTx::enqueue`](super::StoreTx::enqueue) in the same transaction
//! as what produced the message. Workers claim jobs with a lease (`lease_owner`, `lease_until`);
//! a job whose lease expired (its instance crashed) is claimable again. Only the oldest job of an
//! ordering key that is not yet delivered or discarded can be claimed, so messages of one citizen
//! to one destination leave in the order they were accepted. On PostgreSQL the claim skips rows
//! another instance is claiming (`FOR UPDATE SKIP LOCKED`); on SQLite the single writer makes
//! the claim atomic anyway.
//!
//! This file only builds statements and reads rows; it decides nothing about retries.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::search_sql::{Bind, Sql};
use super::{Backend, StoreError};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobStatus {
    /// Waiting for its next attempt (or for an older message of its ordering key).
    Pending,
    /// Claimed by a worker whose lease has not expired.
    InFlight,
    Delivered,
    /// Given up on: permanent rejection, too many attempts or too old. Holds back later messages
    /// of its ordering key until retried or discarded.
    Dead,
    /// A dead letter an operator decided not to deliver; no longer holds anything back.
    Discarded,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Pending,
        JobStatus::InFlight,
        JobStatus::Delivered,
        JobStatus::Dead,
        JobStatus::Discarded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::InFlight => "in-flight",
            JobStatus::Delivered => "delivered",
            JobStatus::Dead => "dead",
            JobStatus::Discarded => "discarded",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|j| j.as_str() == s)
    }
}

/// A job to insert.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Who submitted it: its organization (`system|value`), or '' for administrators. Message
    /// ids are unique per sender.
    pub sender: String,
    pub message_id: String,
    pub destination: String,
    /// Already hashed by the caller: no identifier of a person in plain text.
    pub ordering_key: String,
    /// The message as sent (JSON text).
    pub payload: String,
    /// The citizen the message is about (`system|value` of the person identifier), as the
    /// payload carries it: the worker's audit records name it without parsing the payload.
    pub citizen: Option<String>,
    pub now_ms: i64,
}

/// One job as the admin API and the caller of `submit` see it (without its payload).
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    /// Who submitted it (see [`NewJob::sender`]).
    pub sender: String,
    pub message_id: String,
    pub destination: String,
    pub ordering_key: String,
    pub status: JobStatus,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub created_at: i64,
    pub last_attempt_at: Option<i64>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    /// The receiver's answer to a permanent rejection (an OperationOutcome, as text).
    pub receiver_outcome: Option<String>,
    pub delivered_at: Option<i64>,
}

/// Claim up to `limit` deliverable jobs of `destination` for `owner` until `lease_until_ms`.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    pub owner: &'a str,
    pub destination: &'a str,
    pub limit: usize,
    pub now_ms: i64,
    pub lease_until_ms: i64,
}

/// A claimed job: what a worker needs to deliver it.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: i64,
    pub message_id: String,
    pub payload: String,
    /// [`NewJob::citizen`] (`None` for messages queued before it was kept).
    pub citizen: Option<String>,
    /// Attempts including the one this claim starts.
    pub attempts: i64,
    pub created_at: i64,
}

/// The result of one delivery attempt, written only while the worker still holds the lease.
#[derive(Debug, Clone)]
pub enum JobUpdate {
    Delivered {
        id: i64,
        owner: String,
        now_ms: i64,
        http_status: i64,
    },
    Retry {
        id: i64,
        owner: String,
        now_ms: i64,
        next_attempt_at: i64,
        http_status: Option<i64>,
        error: String,
    },
    Dead {
        id: i64,
        owner: String,
        now_ms: i64,
        http_status: Option<i64>,
        error: String,
        receiver_outcome: Option<String>,
    },
    /// Give the lease back without counting the attempt (the worker is stopping, or the
    /// destination's circuit breaker opened before the request was sent).
    Release { id: i64, owner: String },
}

/// What an operator does with a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadAction {
    /// Back to pending, attempts reset: delivered again from now.
    Retry,
    /// Never delivered; later messages of its ordering key are no longer held back.
    Discard,
}

/// Statuses that hold back younger jobs of the same ordering key.
const BLOCKING: &str = "('pending', 'in-flight', 'dead')";

pub(crate) fn insert(job: &NewJob) -> Sql {
    let mut s = Sql::default();
    s.push("INSERT INTO outbox (sender, message_id, destination, ordering_key, payload, citizen, status, attempts, next_attempt_at, created_at) VALUES (")
        .text(&job.sender)
        .push(", ")
        .text(&job.message_id)
        .push(", ")
        .text(&job.destination)
        .push(", ")
        .text(&job.ordering_key)
        .push(", ")
        .text(&job.payload)
        .push(", ");
    match &job.citizen {
        Some(c) => s.text(c),
        None => s.push("NULL"),
    };
    s.push(", 'pending', 0, ")
        .bind(Bind::Int(job.now_ms))
        .push(", ")
        .bind(Bind::Int(job.now_ms))
        .push(") ON CONFLICT (sender, message_id) DO NOTHING");
    s
}

pub(crate) fn claim(c: &Claim<'_>, backend: Backend) -> Sql {
    let mut s = Sql::default();
    s.push("UPDATE outbox SET status = 'in-flight', attempts = attempts + 1, lease_owner = ")
        .text(c.owner)
        .push(", lease_until = ")
        .bind(Bind::Int(c.lease_until_ms))
        .push(", last_attempt_at = ")
        .bind(Bind::Int(c.now_ms))
        .push(" WHERE id IN (SELECT o.id FROM outbox o WHERE o.destination = ")
        .text(c.destination)
        .push(" AND ((o.status = 'pending' AND o.next_attempt_at <= ")
        .bind(Bind::Int(c.now_ms))
        .push(") OR (o.status = 'in-flight' AND o.lease_until < ")
        .bind(Bind::Int(c.now_ms))
        .push(")) AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.ordering_key = o.ordering_key AND p.status IN ")
        .push(BLOCKING)
        .push(" AND p.id < o.id) ORDER BY o.id LIMIT ")
        .push(&c.limit.max(1).to_string());
    if backend == Backend::Postgres {
        s.push(" FOR UPDATE SKIP LOCKED");
    }
    s.push(") RETURNING id, message_id, payload, citizen, attempts, created_at");
    s
}

pub(crate) fn claimed_row(row: &AnyRow) -> Result<ClaimedJob, StoreError> {
    Ok(ClaimedJob {
        id: int(row, "id")?,
        message_id: text(row, "message_id")?,
        payload: text(row, "payload")?,
        citizen: row
            .try_get::<Option<String>, _>("citizen")
            .map_err(corrupt)?,
        attempts: int(row, "attempts")?,
        created_at: int(row, "created_at")?,
    })
}

pub(crate) fn update(u: &JobUpdate) -> Sql {
    let mut s = Sql::default();
    let (id, owner) = match u {
        JobUpdate::Delivered {
            id,
            owner,
            now_ms,
            http_status,
        } => {
            s.push("UPDATE outbox SET status = 'delivered', lease_owner = NULL, lease_until = NULL, last_error = NULL, delivered_at = ")
                .bind(Bind::Int(*now_ms))
                .push(", last_status = ")
                .bind(Bind::Int(*http_status));
            (id, owner)
        }
        JobUpdate::Retry {
            id,
            owner,
            now_ms: _,
            next_attempt_at,
            http_status,
            error,
        } => {
            s.push("UPDATE outbox SET status = 'pending', lease_owner = NULL, lease_until = NULL, next_attempt_at = ")
                .bind(Bind::Int(*next_attempt_at))
                .push(", last_error = ")
                .text(error)
                .push(", last_status = ");
            opt_int(&mut s, *http_status);
            (id, owner)
        }
        JobUpdate::Dead {
            id,
            owner,
            now_ms: _,
            http_status,
            error,
            receiver_outcome,
        } => {
            s.push("UPDATE outbox SET status = 'dead', lease_owner = NULL, lease_until = NULL, last_error = ")
                .text(error)
                .push(", last_status = ");
            opt_int(&mut s, *http_status);
            s.push(", receiver_outcome = ");
            match receiver_outcome {
                Some(o) => s.text(o),
                None => s.push("NULL"),
            };
            (id, owner)
        }
        JobUpdate::Release { id, owner } => {
            s.push("UPDATE outbox SET status = 'pending', attempts = attempts - 1, lease_owner = NULL, lease_until = NULL");
            (id, owner)
        }
    };
    s.push(" WHERE id = ")
        .bind(Bind::Int(*id))
        .push(" AND status = 'in-flight' AND lease_owner = ")
        .text(owner);
    s
}

/// Every job still in flight back to pending, deliverable now. Only for a database this process
/// alone uses (SQLite), at start: the leases it finds are its own previous run's, whose attempt
/// may or may not have reached the receiver (the receiver deduplicates on the message id).
pub(crate) fn release_all_leases(now_ms: i64) -> Sql {
    let mut s = Sql::default();
    s.push("UPDATE outbox SET status = 'pending', lease_owner = NULL, lease_until = NULL, next_attempt_at = ")
        .bind(Bind::Int(now_ms))
        .push(" WHERE status = 'in-flight'");
    s
}

/// A dead letter (job `id`) back to pending, or discarded; returns the message id if it was dead.
pub(crate) fn act_on_dead(id: i64, action: DeadAction, now_ms: i64) -> Sql {
    let mut s = Sql::default();
    match action {
        DeadAction::Retry => s
            .push("UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ")
            .bind(Bind::Int(now_ms)),
        DeadAction::Discard => s.push("UPDATE outbox SET status = 'discarded'"),
    };
    s.push(" WHERE id = ")
        .bind(Bind::Int(id))
        .push(" AND status = 'dead' RETURNING message_id");
    s
}

const JOB_COLUMNS: &str = "id, sender, message_id, destination, ordering_key, status, attempts, next_attempt_at, lease_owner, lease_until, created_at, last_attempt_at, last_status, last_error, receiver_outcome, delivered_at";

/// The job of `sender`'s message `message_id`; with no sender (the admin API), the oldest job
/// of that message id.
pub(crate) fn by_message_id(message_id: &str, sender: Option<&str>) -> Sql {
    let mut s = Sql::default();
    s.push("SELECT ")
        .push(JOB_COLUMNS)
        .push(" FROM outbox WHERE message_id = ")
        .text(message_id);
    if let Some(sender) = sender {
        s.push(" AND sender = ").text(sender);
    }
    s.push(" ORDER BY id LIMIT 1");
    s
}

/// Jobs by status (all if `None`), oldest first, after `after_id`.
pub(crate) fn list(status: Option<JobStatus>, after_id: i64, limit: usize) -> Sql {
    let mut s = Sql::default();
    s.push("SELECT ")
        .push(JOB_COLUMNS)
        .push(" FROM outbox WHERE id > ")
        .bind(Bind::Int(after_id));
    if let Some(st) = status {
        s.push(" AND status = ").text(st.as_str());
    }
    s.push(" ORDER BY id LIMIT ").push(&limit.to_string());
    s
}

/// The oldest blocking job of `ordering_key` older than `id`, if any (why a job waits).
pub(crate) fn blocker(ordering_key: &str, id: i64) -> Sql {
    let mut s = Sql::default();
    s.push("SELECT message_id FROM outbox WHERE ordering_key = ")
        .text(ordering_key)
        .push(" AND status IN ")
        .push(BLOCKING)
        .push(" AND id < ")
        .bind(Bind::Int(id))
        .push(" ORDER BY id LIMIT 1");
    s
}

pub(crate) const COUNTS: &str =
    "SELECT destination, status, COUNT(*) AS n FROM outbox GROUP BY destination, status";

pub(crate) fn job_row(row: &AnyRow) -> Result<Job, StoreError> {
    let status = text(row, "status")?;
    Ok(Job {
        id: int(row, "id")?,
        sender: text(row, "sender")?,
        message_id: text(row, "message_id")?,
        destination: text(row, "destination")?,
        ordering_key: text(row, "ordering_key")?,
        status: JobStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("outbox status {status:?}")))?,
        attempts: int(row, "attempts")?,
        next_attempt_at: int(row, "next_attempt_at")?,
        lease_owner: row.try_get("lease_owner").map_err(corrupt)?,
        lease_until: opt(row, "lease_until")?,
        created_at: int(row, "created_at")?,
        last_attempt_at: opt(row, "last_attempt_at")?,
        last_status: opt(row, "last_status")?,
        last_error: row.try_get("last_error").map_err(corrupt)?,
        receiver_outcome: row.try_get("receiver_outcome").map_err(corrupt)?,
        delivered_at: opt(row, "delivered_at")?,
    })
}

pub(crate) fn count_row(row: &AnyRow) -> Result<(String, JobStatus, i64), StoreError> {
    let status = text(row, "status")?;
    Ok((
        text(row, "destination")?,
        JobStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("outbox status {status:?}")))?,
        int(row, "n")?,
    ))
}

fn opt_int(s: &mut Sql, v: Option<i64>) {
    match v {
        Some(v) => s.bind(Bind::Int(v)),
        None => s.push("NULL"),
    };
}

fn corrupt(e: sqlx::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn text(row: &AnyRow, name: &str) -> Result<String, StoreError> {
    row.try_get(name).map_err(corrupt)
}

fn int(row: &AnyRow, name: &str) -> Result<i64, StoreError> {
    row.try_get::<i64, _>(name)
        .or_else(|_| row.try_get::<i32, _>(name).map(i64::from))
        .map_err(corrupt)
}

fn opt(row: &AnyRow, name: &str) -> Result<Option<i64>, StoreError> {
    row.try_get::<Option<i64>, _>(name).map_err(corrupt)
}
