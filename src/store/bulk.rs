//! Bulk Data export jobs (`bulk_jobs`, migration 0007) as SQL: insert at kick-off, claim with a
//! lease (an expired lease lets any instance take the job over), progress and lease renewal while
//! it runs, the result, deletion (cancel, expiry).
//!
//! This file only builds statements and reads rows; what a job exports is `bulk/`'s business.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::search_sql::{Bind, Sql};
use super::{Backend, StoreError};

/// Where an export is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkStatus {
    /// Waiting for a runner (new, or given back at a restart).
    Accepted,
    /// Claimed by a runner whose lease has not expired.
    InProgress,
    Completed,
    Failed,
}

impl BulkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BulkStatus::Accepted => "accepted",
            BulkStatus::InProgress => "in-progress",
            BulkStatus::Completed => "completed",
            BulkStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<BulkStatus, StoreError> {
        Ok(match s {
            "accepted" => BulkStatus::Accepted,
            "in-progress" => BulkStatus::InProgress,
            "completed" => BulkStatus::Completed,
            "failed" => BulkStatus::Failed,
            other => return Err(StoreError::Corrupt(format!("bulk job status {other:?}"))),
        })
    }
}

/// One export job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkJob {
    pub id: String,
    pub client_id: String,
    pub client_kind: String,
    /// JSON array of the caller's organizations at kick-off.
    pub organizations: String,
    /// The scopes granted to the kick-off request (SMART v2 form).
    pub scopes: String,
    /// The kick-off URL as the client sent it.
    pub request: String,
    /// What to export, as JSON (`bulk::Spec`).
    pub spec: String,
    pub status: BulkStatus,
    pub progress: String,
    pub created_ms: i64,
    pub transaction_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub expires_ms: Option<i64>,
    /// JSON array of the files written (`bulk::OutputFile`), once completed.
    pub output: Option<String>,
    /// JSON array of OperationOutcome issues, once failed.
    pub error: Option<String>,
    pub attempts: i64,
}

/// A change to the job table, written in a [`StoreTx`](super::StoreTx).
#[derive(Debug, Clone)]
pub enum BulkWrite<'a> {
    Insert(&'a BulkJob),
    /// Progress of a running job, renewing its lease; written only while `owner` holds it.
    Progress {
        id: &'a str,
        owner: &'a str,
        progress: &'a str,
        lease_until_ms: i64,
    },
    /// The end of a run (completed or failed), by the lease holder.
    Finish {
        id: &'a str,
        owner: &'a str,
        status: BulkStatus,
        finished_ms: i64,
        expires_ms: i64,
        output: Option<&'a str>,
        error: Option<&'a str>,
    },
    /// Every running job back to accepted (a SQLite file has one process: at start, no run of
    /// a previous process can still be going).
    ReleaseAll,
    Delete(&'a str),
}

const COLUMNS: &str = "id, client_id, client_kind, organizations, scopes, request, spec, status, progress, created_ms, transaction_ms, finished_ms, expires_ms, output, error, attempts";

fn opt_int(s: &mut Sql, v: Option<i64>) {
    match v {
        Some(v) => s.bind(Bind::Int(v)),
        None => s.push("NULL"),
    };
}

fn opt_text(s: &mut Sql, v: Option<&str>) {
    match v {
        Some(v) => s.text(v),
        None => s.push("NULL"),
    };
}

/// The statement of a write; those that end in `RETURNING id` say whether a row was touched.
pub(crate) fn write(w: &BulkWrite<'_>) -> Sql {
    let mut s = Sql::default();
    match w {
        BulkWrite::Insert(j) => {
            s.push("INSERT INTO bulk_jobs (")
                .push(COLUMNS)
                .push(") VALUES (")
                .text(&j.id)
                .push(", ")
                .text(&j.client_id)
                .push(", ")
                .text(&j.client_kind)
                .push(", ")
                .text(&j.organizations)
                .push(", ")
                .text(&j.scopes)
                .push(", ")
                .text(&j.request)
                .push(", ")
                .text(&j.spec)
                .push(", ")
                .text(j.status.as_str())
                .push(", ")
                .text(&j.progress)
                .push(", ")
                .bind(Bind::Int(j.created_ms))
                .push(", ");
            opt_int(&mut s, j.transaction_ms);
            s.push(", ");
            opt_int(&mut s, j.finished_ms);
            s.push(", ");
            opt_int(&mut s, j.expires_ms);
            s.push(", ");
            opt_text(&mut s, j.output.as_deref());
            s.push(", ");
            opt_text(&mut s, j.error.as_deref());
            s.push(", ").bind(Bind::Int(j.attempts)).push(")");
        }
        BulkWrite::Progress {
            id,
            owner,
            progress,
            lease_until_ms,
        } => {
            s.push("UPDATE bulk_jobs SET progress = ")
                .text(progress)
                .push(", lease_until = ")
                .bind(Bind::Int(*lease_until_ms))
                .push(" WHERE id = ")
                .text(id)
                .push(" AND status = 'in-progress' AND lease_owner = ")
                .text(owner)
                .push(" RETURNING id");
        }
        BulkWrite::Finish {
            id,
            owner,
            status,
            finished_ms,
            expires_ms,
            output,
            error,
        } => {
            s.push("UPDATE bulk_jobs SET status = ")
                .text(status.as_str())
                .push(", progress = ")
                .text(status.as_str())
                .push(", finished_ms = ")
                .bind(Bind::Int(*finished_ms))
                .push(", expires_ms = ")
                .bind(Bind::Int(*expires_ms))
                .push(", output = ");
            opt_text(&mut s, *output);
            s.push(", error = ");
            opt_text(&mut s, *error);
            s.push(", lease_owner = NULL, lease_until = NULL WHERE id = ")
                .text(id)
                .push(" AND lease_owner = ")
                .text(owner)
                .push(" RETURNING id");
        }
        BulkWrite::ReleaseAll => {
            s.push(
                "UPDATE bulk_jobs SET status = 'accepted', lease_owner = NULL, lease_until = NULL \
                 WHERE status = 'in-progress'",
            );
        }
        BulkWrite::Delete(id) => {
            s.push("DELETE FROM bulk_jobs WHERE id = ")
                .text(id)
                .push(" RETURNING id");
        }
    }
    s
}

/// Claim the oldest job that is waiting or whose runner's lease ran out: status, lease, a new
/// transaction time and one more attempt, returning the job. On PostgreSQL the outer condition
/// is checked again on the locked row, so two instances never both claim a job.
pub(crate) fn claim(owner: &str, now_ms: i64, lease_until_ms: i64, backend: Backend) -> Sql {
    let mut s = Sql::default();
    let waiting = |s: &mut Sql| {
        s.push("(status = 'accepted' OR (status = 'in-progress' AND lease_until < ")
            .bind(Bind::Int(now_ms))
            .push("))");
    };
    s.push("UPDATE bulk_jobs SET status = 'in-progress', lease_owner = ")
        .text(owner)
        .push(", lease_until = ")
        .bind(Bind::Int(lease_until_ms))
        .push(", transaction_ms = ")
        .bind(Bind::Int(now_ms))
        .push(", attempts = attempts + 1 WHERE id = (SELECT id FROM bulk_jobs WHERE ");
    waiting(&mut s);
    s.push(" ORDER BY created_ms LIMIT 1");
    if backend == Backend::Postgres {
        s.push(" FOR UPDATE SKIP LOCKED");
    }
    s.push(") AND ");
    waiting(&mut s);
    s.push(" RETURNING ").push(COLUMNS);
    s
}

pub(crate) fn by_id(id: &str) -> Sql {
    let mut s = Sql::default();
    s.push("SELECT ")
        .push(COLUMNS)
        .push(" FROM bulk_jobs WHERE id = ")
        .text(id);
    s
}

/// Ids of finished jobs past their expiry.
pub(crate) fn expired(now_ms: i64) -> Sql {
    let mut s = Sql::default();
    s.push("SELECT id FROM bulk_jobs WHERE expires_ms IS NOT NULL AND expires_ms < ")
        .bind(Bind::Int(now_ms))
        .push(" ORDER BY expires_ms LIMIT 100");
    s
}

/// How many of a client's jobs are not finished.
pub(crate) fn active_of(client_id: &str) -> Sql {
    let mut s = Sql::default();
    s.push("SELECT COUNT(*) FROM bulk_jobs WHERE client_id = ")
        .text(client_id)
        .push(" AND status IN ('accepted', 'in-progress')");
    s
}

pub(crate) fn row(row: &AnyRow) -> Result<BulkJob, StoreError> {
    let corrupt = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
    let text = |n: &str| -> Result<String, StoreError> { row.try_get(n).map_err(corrupt) };
    let opt_text =
        |n: &str| -> Result<Option<String>, StoreError> { row.try_get(n).map_err(corrupt) };
    let int = |n: &str| -> Result<i64, StoreError> {
        row.try_get::<i64, _>(n)
            .or_else(|_| row.try_get::<i32, _>(n).map(i64::from))
            .map_err(corrupt)
    };
    let opt_int = |n: &str| -> Result<Option<i64>, StoreError> {
        row.try_get::<Option<i64>, _>(n)
            .or_else(|_| row.try_get::<Option<i32>, _>(n).map(|v| v.map(i64::from)))
            .map_err(corrupt)
    };
    Ok(BulkJob {
        id: text("id")?,
        client_id: text("client_id")?,
        client_kind: text("client_kind")?,
        organizations: text("organizations")?,
        scopes: text("scopes")?,
        request: text("request")?,
        spec: text("spec")?,
        status: BulkStatus::parse(&text("status")?)?,
        progress: text("progress")?,
        created_ms: int("created_ms")?,
        transaction_ms: opt_int("transaction_ms")?,
        finished_ms: opt_int("finished_ms")?,
        expires_ms: opt_int("expires_ms")?,
        output: opt_text("output")?,
        error: opt_text("error")?,
        attempts: int("attempts")?,
    })
}
