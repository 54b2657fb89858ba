//! Persistence: the [`Storage`] trait and its SQL implementation for SQLite and PostgreSQL.
//!
//! This is the only room that speaks SQL. Resources are kept as JSON text, every version in
//! `resource_versions` (history), the current one in `resources`, and the values search needs in
//! `search_index`. Callers hand in values and parsed queries; they never see a row or a statement.

pub mod audit_log;
pub mod bulk;
mod cache;
mod group_commit;
pub mod hospital_events;
pub mod kpis;
mod migrate;
mod notify;
pub mod outbox;
pub mod report_facts;
mod search_sql;
mod sql;
mod sqlite_chain;
mod sqlite_timeout;
#[cfg(test)]
mod test_pg;

use async_trait::async_trait;

use fhir_core::fhir::search::{Include, SearchQuery, SortValue};
use fhir_core::fhir::search_params::IndexEntry;
use fhir_core::fhir::ResourceType;

pub use bulk::{BulkJob, BulkStatus, BulkWrite};
pub use hospital_events::HospitalEvent;
pub use outbox::{Claim, ClaimedJob, DeadAction, Job, JobStatus, JobUpdate, NewJob};
pub use sql::{sqlite_file, SqlStore};

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgresql",
        }
    }
}

/// Storage failures, by what the caller can do about them.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Another writer created the same version first; the caller may retry.
    #[error("version {version} of {rtype}/{id} was written concurrently")]
    VersionConflict {
        rtype: String,
        id: String,
        version: i64,
    },
    /// Lock timeout, deadlock or serialization failure: retrying is safe.
    #[error("the database is busy")]
    Busy,
    /// The database's disk is full (SQLITE_FULL, PostgreSQL 53100 `disk_full`, ENOSPC): nothing
    /// was written, and retrying at once would not help.
    #[error("the database's disk is full")]
    DiskFull,

    /// A statement ran past `database.statement_timeout_ms` and was stopped.
    #[error("a database statement ran past the statement timeout and was stopped")]
    Timeout,
    #[error("database error: {0}")]
    Database(String),
    /// A request the store cannot answer as asked (a search parameter the audit trail does not
    /// support): the caller's mistake, reported back (400).
    #[error("{0}")]
    Unsupported(String),
    /// Stored data that cannot be read back (never expected).
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
}

/// When the database last refused a write for want of disk space, so that `/readyz` can say so.
/// Cleared by the next commit that succeeds.
#[derive(Debug, Default)]
pub struct DiskState {
    /// Milliseconds since the epoch of the latest disk-full refusal; 0: none since the last
    /// successful commit.
    full_at_ms: std::sync::atomic::AtomicI64,
}

impl DiskState {
    /// Note the outcome of a write.
    pub fn note<T>(&self, result: &Result<T, StoreError>) {
        use std::sync::atomic::Ordering;
        match result {
            Err(StoreError::DiskFull) => self
                .full_at_ms
                .store(chrono::Utc::now().timestamp_millis(), Ordering::SeqCst),
            Ok(_) => self.full_at_ms.store(0, Ordering::SeqCst),
            Err(_) => {}
        }
    }

    /// The latest disk-full refusal, if no commit succeeded since.
    pub fn full_at_ms(&self) -> Option<i64> {
        match self.full_at_ms.load(std::sync::atomic::Ordering::SeqCst) {
            0 => None,
            t => Some(t),
        }
    }
}

impl StoreError {
    /// Whether repeating the whole unit of work may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::VersionConflict { .. } | StoreError::Busy)
    }
}

/// One stored version of a resource, as the database returns it.
#[derive(Debug, Clone)]
pub struct StoredResource {
    pub rtype: String,
    pub id: String,
    pub version: i64,
    /// Milliseconds since the Unix epoch (the resource's `meta.lastUpdated`).
    pub last_updated_ms: i64,
    pub deleted: bool,
    /// The resource JSON with `id` and `meta` set; `None` for a deletion.
    pub content: Option<String>,
    /// HTTP method that produced the version (history `request.method`).
    pub method: String,
    /// The organization (`system|value`) that owns the id; `None`: the gateway's own.
    pub owner: Option<String>,
    /// The Patient id this version is about, if any.
    pub citizen: Option<String>,
}

/// The current state of a resource id (for version and ownership checks inside a write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub version: i64,
    pub deleted: bool,
    pub owner: Option<String>,
    pub citizen: Option<String>,
}

/// Types every authenticated client may read whoever owns them: directory data (who and where
/// the care is given) and conformance resources. Writing them is still the owner's.
pub const SHARED_TYPES: &[&str] = &[
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Location",
    "Endpoint",
    "HealthcareService",
    "Questionnaire",
    "StructureDefinition",
    "ValueSet",
    "CodeSystem",
    "ConceptMap",
    "NamingSystem",
    "SearchParameter",
    "OperationDefinition",
    "CapabilityStatement",
];

/// Which stored resources a query may return, by tenancy. Every read, search, include and history
/// of a client runs under one of these, in SQL, so nothing outside it is ever loaded for it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Visibility {
    /// Everything (administrators, the gateway itself).
    #[default]
    All,
    /// Owned by one of these organizations, of a [`SHARED_TYPES`] type, or about a citizen whose
    /// records the owner granted to one of them.
    Readable(std::sync::Arc<[String]>),
    /// Owned by one of these organizations (what a client may change).
    Owned(std::sync::Arc<[String]>),
}

impl Visibility {
    /// Whether `r` is visible without asking the database about grants: `Some(answer)`, or
    /// `None` when only a grant could make it visible.
    pub fn decides(&self, rtype: &str, owner: Option<&str>) -> Option<bool> {
        match self {
            Visibility::All => Some(true),
            Visibility::Owned(orgs) => Some(owner.is_some_and(|o| orgs.iter().any(|x| x == o))),
            Visibility::Readable(orgs) => {
                if SHARED_TYPES.contains(&rtype)
                    || owner.is_some_and(|o| orgs.iter().any(|x| x == o))
                {
                    Some(true)
                } else {
                    None
                }
            }
        }
    }
}

/// A new version to write.
#[derive(Debug)]
pub struct NewVersion<'a> {
    pub rtype: &'a str,
    pub id: &'a str,
    pub version: i64,
    pub last_updated_ms: i64,
    pub method: &'static str,
    /// The resource JSON; `None` writes a deletion.
    pub content: Option<&'a str>,
    /// Search values of the new version (ignored for a deletion).
    pub index: &'a [IndexEntry],
    /// The version's row of the KPI table (`kpis::fact`), if the figures read it; the previous
    /// version's row is replaced (ignored for a deletion, which removes the row).
    pub kpi: Option<&'a kpis::KpiFact>,
    /// The id's owner (the same for every version of an id) and the version's citizen.
    pub owner: Option<&'a str>,
    pub citizen: Option<&'a str>,
}

/// `grantee` may read what `owner` holds about the Patient `citizen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub grantee: String,
    pub owner: String,
    pub citizen: String,
    /// Why, for operators (e.g. `discharge message <id>`).
    pub reason: String,
}

/// Which history to read.
#[derive(Debug, Clone, Copy)]
pub enum HistoryScope<'a> {
    System,
    Type(ResourceType),
    Instance(ResourceType, &'a str),
}

/// A history page request: newest first, `before_seq` continues a previous page.
#[derive(Debug, Clone, Copy)]
pub struct HistoryQuery<'a> {
    pub scope: HistoryScope<'a>,
    pub since_ms: Option<i64>,
    pub before_seq: Option<i64>,
    pub limit: usize,
    pub visibility: &'a Visibility,
}

/// One row of a search page and the key that continues the search after it.
#[derive(Debug, Clone)]
pub struct SearchHit {
    pub resource: StoredResource,
    pub sort_values: Vec<SortValue>,
    pub seq: i64,
}

/// A store: reads on a pool, writes in [`StoreTx`] transactions.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    fn backend(&self) -> Backend;
    /// Is the database reachable and answering?
    async fn ping(&self) -> Result<(), StoreError>;
    /// When a write last failed for want of disk space, if none has succeeded since.
    fn disk_full_at_ms(&self) -> Option<i64> {
        None
    }
    /// The current version of `rtype/id` (deleted ones too, flagged).
    async fn read(&self, rtype: &str, id: &str) -> Result<Option<StoredResource>, StoreError>;
    async fn vread(
        &self,
        rtype: &str,
        id: &str,
        version: i64,
    ) -> Result<Option<StoredResource>, StoreError>;
    /// Current, not deleted resources by `(type, id)`, in no particular order.
    async fn read_many(&self, keys: &[(String, String)])
        -> Result<Vec<StoredResource>, StoreError>;
    /// History newest first, each with its global sequence number (for paging).
    async fn history(&self, q: &HistoryQuery<'_>)
        -> Result<Vec<(i64, StoredResource)>, StoreError>;
    /// Up to `limit` matches of `q` visible under `vis`, after its cursor, in its sort order.
    async fn search(
        &self,
        q: &SearchQuery,
        limit: usize,
        vis: &Visibility,
    ) -> Result<Vec<SearchHit>, StoreError>;
    /// How many resources visible under `vis` match `q` (cursor ignored).
    async fn count(&self, q: &SearchQuery, vis: &Visibility) -> Result<i64, StoreError>;
    /// Resources of `inc.source_type` visible under `vis` whose `inc.param` refers to one of
    /// `targets` (`_revinclude`).
    async fn referencing(
        &self,
        inc: &Include,
        targets: &[(String, String)],
        limit: usize,
        vis: &Visibility,
    ) -> Result<Vec<StoredResource>, StoreError>;
    /// Whether `owner` granted one of `grantees` the records about `citizen`.
    async fn granted(
        &self,
        grantees: &[String],
        owner: &str,
        citizen: &str,
    ) -> Result<bool, StoreError>;
    /// Start a write transaction.
    async fn begin(&self) -> Result<Box<dyn StoreTx>, StoreError>;
    /// Check the audit trail's hash chain from its anchor (`sektorbro audit verify`).
    async fn audit_verify(&self) -> Result<audit_log::Verification, StoreError>;
    /// The audit journal's marks, one per segment not yet forgotten.
    async fn audit_journal_marks(&self) -> Result<Vec<audit_log::JournalMark>, StoreError>;
    /// Audit rows after `after_seq` recorded at or after `since_ms`, in order, as `(seq,
    /// AuditEvent)` (`sektorbro audit export`).
    async fn audit_export(
        &self,
        after_seq: i64,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<(i64, serde_json::Value)>, StoreError>;
    /// For caches of results derived from stored data (a rendered search page): a number that
    /// changes whenever a resource of one of `deps` is written and committed, here or (on
    /// PostgreSQL) by another instance. `None` while such caches must not be used.
    fn generation(&self, deps: &Dependencies) -> Option<u64> {
        let _ = deps;
        None
    }
    /// The outbox job of `sender`'s message `message_id`; with no sender, the oldest job of
    /// that message id (for administrators).
    async fn outbox_job(
        &self,
        message_id: &str,
        sender: Option<&str>,
    ) -> Result<Option<Job>, StoreError>;
    /// Outbox jobs with `status` (any if `None`), oldest first, after the job with id `after_id`.
    async fn outbox_jobs(
        &self,
        status: Option<JobStatus>,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError>;
    /// The message id of the oldest job that holds `job` back (same ordering key, older, not
    /// delivered or discarded).
    async fn outbox_blocker(&self, job: &Job) -> Result<Option<String>, StoreError>;
    /// How many jobs each destination has in each status.
    async fn outbox_counts(&self) -> Result<Vec<(String, JobStatus, i64)>, StoreError>;
    /// As [`Storage::search`], bypassing the caches (a bulk export reads each page once, and
    /// would only push other searches out of them).
    async fn scan(
        &self,
        q: &SearchQuery,
        limit: usize,
        vis: &Visibility,
    ) -> Result<Vec<SearchHit>, StoreError> {
        self.search(q, limit, vis).await
    }
    /// A Bulk Data export job by id.
    async fn bulk_job(&self, id: &str) -> Result<Option<BulkJob>, StoreError>;
    /// Ids of up to 100 finished export jobs whose files expired before `now_ms`.
    async fn bulk_expired(&self, now_ms: i64) -> Result<Vec<String>, StoreError>;
    /// How many export jobs of `client_id` are waiting or running.
    async fn bulk_active(&self, client_id: &str) -> Result<i64, StoreError>;
    /// The hospital event of message `message_id` from `sender` (MedCom HospitalNotification).
    async fn hospital_event(
        &self,
        sender: &str,
        message_id: &str,
    ) -> Result<Option<HospitalEvent>, StoreError>;
    /// A citizen's hospital events (by the hashed key `medcom::citizen_key` gives), in time order.
    async fn hospital_events(&self, citizen: &str) -> Result<Vec<HospitalEvent>, StoreError>;
    /// The rows the care-flow KPIs of one municipality are computed from ([`kpis`]), under `vis`.
    async fn kpi_rows(
        &self,
        q: &kpis::KpiQuery,
        vis: &Visibility,
    ) -> Result<kpis::KpiRows, StoreError>;
    /// A page of the report-facts rows of `q`, visible under `vis` ([`report_facts`]).
    async fn report_facts(
        &self,
        q: &report_facts::FactsQuery,
        limit: usize,
        vis: &Visibility,
    ) -> Result<Vec<report_facts::FactsRow>, StoreError>;
    /// Up to `limit` stale report-facts rows after CarePlan id `after`: `(CarePlan id, stamp)`.
    async fn stale_report_facts(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, StoreError>;
    /// How many hospital stays of `citizen` (hashed key) began while a care course ran from
    /// `start_ms` to `end_ms` (`None`: still active): admissions not cancelled, a corrected
    /// admission counted once ([`hospital_events::admissions_within`]). For the readmission
    /// figures.
    async fn admissions_during_course(
        &self,
        citizen: &str,
        start_ms: i64,
        end_ms: Option<i64>,
    ) -> Result<usize, StoreError> {
        let events = self.hospital_events(citizen).await?;
        Ok(hospital_events::admissions_within(
            &events, start_ms, end_ms,
        ))
    }
}

/// The resource types a derived result was computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dependencies {
    Types(Vec<String>),
    /// Any type (e.g. `_include` of a reference that may point anywhere).
    All,
}

/// A write transaction: everything in it is applied at [`StoreTx::commit`] or not at all.
#[async_trait]
pub trait StoreTx: Send {
    /// Serialize with other transactions taking the same key until this one ends (a no-op where
    /// the backend already serializes writers).
    async fn lock(&mut self, key: &str) -> Result<(), StoreError>;
    /// The current head of `rtype/id`, as this transaction sees it.
    async fn head(&mut self, rtype: &str, id: &str) -> Result<Option<Head>, StoreError>;
    /// The head that a new version of `rtype/id`, written next in this transaction as version
    /// `head.version + 1` (1 when there is none), is based on. A backend may read it outside
    /// the transaction, from what is committed, when no write of this transaction has touched
    /// `rtype/id`: the version it then writes is unique per id, so a write based on a head that
    /// has moved since fails with [`StoreError::VersionConflict`] and the engine runs it again
    /// from a fresh head. SQLite does so until the transaction holds the writer (`sql/tx.rs`),
    /// so that an update's work between its read and its write does not hold the one writer.
    async fn head_to_write(&mut self, rtype: &str, id: &str) -> Result<Option<Head>, StoreError> {
        self.head(rtype, id).await
    }
    /// Ids of up to `limit` resources visible under `vis` matching `q`, as this transaction
    /// sees them.
    async fn search_ids(
        &mut self,
        q: &SearchQuery,
        limit: usize,
        vis: &Visibility,
    ) -> Result<Vec<String>, StoreError>;
    /// Record a grant (kept as it is if already there).
    async fn grant(&mut self, grant: &Grant, now_ms: i64) -> Result<(), StoreError>;
    /// Write a new version (and replace the resource's search values).
    async fn write(&mut self, v: &NewVersion<'_>) -> Result<(), StoreError>;
    /// Add a job to the outbox; a job with the same message id already there is kept as it is.
    async fn enqueue(&mut self, job: &NewJob) -> Result<(), StoreError>;
    /// Record a hospital event; one already there for the same sender and message id is kept as
    /// it is.
    async fn record_hospital_event(&mut self, event: &HospitalEvent) -> Result<(), StoreError>;
    /// Claim deliverable jobs (see `outbox.rs` for which).
    async fn claim_jobs(&mut self, claim: &Claim<'_>) -> Result<Vec<ClaimedJob>, StoreError>;
    /// Record an attempt's result, if the lease is still the caller's.
    async fn update_job(&mut self, update: &JobUpdate) -> Result<(), StoreError>;
    /// Put every in-flight job back to pending (see `outbox::release_all_leases`: only for a
    /// database no other process uses).
    async fn release_all_leases(&mut self, now_ms: i64) -> Result<(), StoreError>;
    /// Change the export job table; whether a row was touched (always true for an insert and
    /// for [`BulkWrite::ReleaseAll`]).
    async fn bulk_write(&mut self, w: &BulkWrite<'_>) -> Result<bool, StoreError>;
    /// Claim the oldest export job waiting (or whose lease ran out) for `owner` until
    /// `lease_until_ms`; its transaction time becomes `now_ms`.
    async fn bulk_claim(
        &mut self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<BulkJob>, StoreError>;
    /// Retry or discard a dead letter; whether job `job_id` was a dead letter.
    async fn act_on_dead(
        &mut self,
        job_id: i64,
        action: DeadAction,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Write a record's fresh report facts; whether the row was written (see
    /// [`report_facts::FactsWrite::if_stale_at`]).
    async fn put_report_facts(&mut self, w: &report_facts::FactsWrite) -> Result<bool, StoreError>;
    /// Add an audit record to this transaction: stored if and only if the transaction commits.
    async fn audit(&mut self, record: &crate::audit::AuditRecord) -> Result<(), StoreError>;
    /// Add many audit records (the audit writer's batch), in as few statements as the database
    /// allows; the sealer chains them.
    async fn audit_many(
        &mut self,
        records: &[&crate::audit::AuditRecord],
    ) -> Result<(), StoreError>;
    /// Add `rows` copied from the audit journal's `segment`, sealed into the hash chain as they
    /// are inserted, and move the segment's mark to `end` in the same transaction (see
    /// `audit::journal`).
    async fn audit_from_journal(
        &mut self,
        rows: &[crate::audit::compact::Columns],
        segment: &str,
        end: u64,
    ) -> Result<(), StoreError>;
    /// Mark a journal segment copied in full. The commit is synced, whatever
    /// `audit.max_unsynced_ms` says: it covers the relaxed commits of the segment's rows, whose
    /// file is deleted next.
    async fn audit_segment_done(&mut self, segment: &str) -> Result<(), StoreError>;
    /// Forget a finished segment's mark (its file is gone).
    async fn audit_segment_forget(&mut self, segment: &str) -> Result<(), StoreError>;
    /// Chain up to `audit_log::SEAL_BATCH` unsealed audit rows; how many.
    async fn seal_audit(&mut self) -> Result<usize, StoreError>;
    /// One bounded step of moving sealed audit rows' keys into `audit_keys` (see
    /// `audit_log::KeyShape`): `None` when there is nothing to do; otherwise the transaction is
    /// to be committed, and how many keys it wrote (0 when the rows it moved the mark past name
    /// no citizen or resource).
    async fn index_audit_keys(
        &mut self,
        shape: &audit_log::KeyShape,
    ) -> Result<Option<u64>, StoreError>;
    /// Delete the sealed audit rows recorded before `before_ms` (a prefix of the chain) and
    /// anchor the chain at the last one deleted; how many.
    async fn prune_audit(&mut self, before_ms: i64, now_ms: i64) -> Result<u64, StoreError>;
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// How a SQLite database is written: `synchronous` ("full" or "normal"), the page size a new
/// database file is created with (an existing file keeps its own), and how long a transaction
/// of audit records only may stay unsynced (`audit_sync_ms`, from `audit.max_unsynced_ms`; 0:
/// every commit is synced). A plain `&str` is the synchronous mode with SQLite's default
/// 4096-byte pages and every commit synced.
#[derive(Debug, Clone, Copy)]
pub struct SqliteTuning<'a> {
    pub synchronous: &'a str,
    pub page_size: u32,
    pub audit_sync_ms: u64,
    /// Reads by key on the calling thread, not sqlx's (`database.sqlite_direct_reads`).
    pub direct_reads: bool,
}

impl<'a> From<&'a str> for SqliteTuning<'a> {
    fn from(synchronous: &'a str) -> Self {
        SqliteTuning {
            synchronous,
            page_size: 4096,
            audit_sync_ms: 0,
            direct_reads: true,
        }
    }
}

/// Open the store named by a database URL (`sqlite:…` or `postgres://…`), creating the SQLite file
/// and running the embedded migrations.
/// Every statement is stopped after `statement_timeout_ms` (0: never), on both databases.
pub async fn open<'a>(
    url: &str,
    max_connections: u32,
    sqlite: impl Into<SqliteTuning<'a>>,
    statement_timeout_ms: u64,
    cache: &crate::config::CacheConfig,
) -> Result<std::sync::Arc<dyn Storage>, StoreError> {
    let store = SqlStore::open(
        url,
        max_connections,
        sqlite.into(),
        statement_timeout_ms,
        cache,
    )
    .await?;
    Ok(std::sync::Arc::new(store))
}
