//! [`SqlStore`]: the [`Storage`] implementation for SQLite and PostgreSQL over sqlx's `Any` driver.
//!
//! One implementation, two dialects: the statements are portable SQL with `$n` placeholders, and
//! the few real differences (SQLite's single writer and pragmas, PostgreSQL's advisory and row
//! locks) are decided by [`Backend`] in this file only.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyConnection, AnyPool, Executor, Row, Transaction};

use super::audit_log;
use super::bulk::{self, BulkJob, BulkWrite};
use super::cache::{SearchKey, SearchValue, StoreCache};
use super::group_commit::{GroupTx, GroupWriter, RelaxedSync};
use super::hospital_events::{self, HospitalEvent};
use super::outbox::{self, Claim, ClaimedJob, DeadAction, Job, JobStatus, JobUpdate, NewJob};
use super::search_sql::{self, Bind, Sql};
mod direct;
mod statistics;
mod tx;
use direct::{Direct, DirectReads};
use statistics::keep_statistics;
use tx::{SqlTx, TxConn};

use super::{
    migrate, notify, Backend, Grant, Head, HistoryQuery, HistoryScope, NewVersion, SearchHit,
    Storage, StoreError, StoreTx, StoredResource, Visibility,
};
use crate::config::CacheConfig;
use fhir_core::fhir::search::{Include, SearchQuery, SortKind, SortValue};
use fhir_core::fhir::search_params::IndexValue;

/// Resource storage in a SQL database.
pub struct SqlStore {
    backend: Backend,
    /// Readers. On PostgreSQL the same pool also writes.
    read: AnyPool,
    /// Writers: on SQLite the one writer connection with group commit (SQLite admits one writer
    /// at a time anyway); on PostgreSQL the read pool.
    write: Writer,
    /// Read and search caches (`cache.enabled`), coherent with writes (see `cache.rs`).
    cache: Option<Arc<StoreCache>>,
    /// PostgreSQL: the channel on which writes are announced to other instances.
    channel: Option<String>,
    /// Whether the disk is full, as the latest commits found (for `/readyz`).
    disk: Arc<super::DiskState>,
    /// PostgreSQL: audit-only transactions commit without waiting for the WAL flush
    /// (`audit.max_unsynced_ms` > 0).
    relax_audit: bool,
    /// Held by a transaction that moves the audit chain's head (sealing, retention, rows copied
    /// from the journal), so that this process's sealers take turns; PostgreSQL instances also
    /// take an advisory lock.
    chain: Arc<tokio::sync::Mutex<()>>,
    /// SQLite: reads by key on the calling thread (`direct.rs`); `None` on PostgreSQL, for an
    /// in-memory database, or with `database.sqlite_direct_reads = false`.
    direct: Option<Arc<DirectReads>>,
}

enum Writer {
    Sqlite(Arc<GroupWriter>),
    Postgres(AnyPool),
}

/// Map a driver error into what callers can act on.
pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::PoolTimedOut => StoreError::Busy,
        // ENOSPC from a file or socket operation.
        sqlx::Error::Io(io) if io.raw_os_error() == Some(28) => StoreError::DiskFull,
        sqlx::Error::Database(d) => match d.code().as_deref() {
            // PostgreSQL: canceled by statement_timeout; SQLite: SQLITE_INTERRUPT, which only the
            // statement timeout raises (`sqlite_timeout.rs`).
            Some("57014" | "9") => StoreError::Timeout,
            // PostgreSQL: serialization failure, deadlock, lock not available.
            Some("40001" | "40P01" | "55P03") => StoreError::Busy,
            // PostgreSQL `disk_full`; SQLite SQLITE_FULL (13) and its extended codes.
            Some("53100") => StoreError::DiskFull,
            Some(c) if c.parse::<u32>().is_ok_and(|n| n & 0xff == 13) => StoreError::DiskFull,
            // SQLite: SQLITE_BUSY, SQLITE_LOCKED and their extended codes.
            Some(c) if c == "5" || c == "6" || c.parse::<u32>().is_ok_and(|n| n & 0xff == 5) => {
                StoreError::Busy
            }
            _ => StoreError::Database(e.to_string()),
        },
        _ => StoreError::Database(e.to_string()),
    }
}

/// A write statement's error: `conflict` (what a unique violation means for that statement) or
/// the database's error.
pub(crate) fn write_err(e: sqlx::Error, conflict: StoreError) -> StoreError {
    if is_unique_violation(&e) {
        conflict
    } else {
        db_err(e)
    }
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            matches!(d.code().as_deref(), Some("23505" | "2067" | "1555"))
        }
        _ => false,
    }
}

impl SqlStore {
    /// The readers, for tests that look at tables no `Storage` method shows.
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.read
    }

    /// The SQLite writer's relaxed commits made and known synced (tests).
    #[cfg(test)]
    pub(crate) fn sync_counts(&self) -> Option<(u64, u64)> {
        match &self.write {
            Writer::Sqlite(w) => w.sync_counts(),
            Writer::Postgres(_) => None,
        }
    }

    /// Commits by another connection the SQLite writer noticed (tests).
    #[cfg(test)]
    pub(crate) fn foreign_writes(&self) -> u64 {
        match &self.write {
            Writer::Sqlite(w) => w.foreign_writes(),
            Writer::Postgres(_) => 0,
        }
    }

    /// The synchronous mode a durable write transaction runs at on the SQLite writer (2 is
    /// FULL; tests).
    #[cfg(test)]
    pub(crate) async fn synchronous_in_a_write(&self) -> i64 {
        let Writer::Sqlite(w) = &self.write else {
            return -1;
        };
        let mut tx = w.begin();
        let conn = tx.conn().await.expect("writer");
        let row = sqlx::query("PRAGMA synchronous")
            .fetch_one(conn)
            .await
            .expect("pragma");
        row.try_get(0).expect("mode")
    }

    /// Connect (creating a SQLite file and its folder if needed) and migrate.
    pub async fn open(
        url: &str,
        max_connections: u32,
        sqlite: super::SqliteTuning<'_>,
        statement_timeout_ms: u64,
        cache: &CacheConfig,
    ) -> Result<SqlStore, StoreError> {
        sqlx::any::install_default_drivers();
        if url.starts_with("sqlite:") {
            let mut store =
                Self::open_sqlite(url, max_connections, sqlite, statement_timeout_ms).await?;
            // This process is the file's only writer, so every write passes through it (a
            // second process writing to the file is noticed at our next write and resets the
            // caches, but it is not supported).
            if cache.enabled {
                let c = Arc::new(StoreCache::new(cache, true));
                if let Writer::Sqlite(w) = &store.write {
                    w.watch_foreign_writes(c.generations().clone()).await;
                }
                store.cache = Some(c);
            }
            Ok(store)
        } else {
            let mut store = Self::open_postgres(url, max_connections, statement_timeout_ms).await?;
            store.relax_audit = sqlite.audit_sync_ms > 0;
            // Writes are announced even with this instance's caches off: other instances on
            // the schema may cache.
            let channel = notify::channel_name(&store.read).await?;
            if cache.enabled {
                // Not served until the listener for other instances' writes is connected.
                let c = Arc::new(StoreCache::new(cache, false));
                notify::spawn_listener(url, channel.clone(), c.generations().clone());
                store.cache = Some(c);
            }
            store.channel = Some(channel);
            Ok(store)
        }
    }

    async fn open_sqlite(
        url: &str,
        max_connections: u32,
        tuning: super::SqliteTuning<'_>,
        statement_timeout_ms: u64,
    ) -> Result<SqlStore, StoreError> {
        let path = sqlite_path(url);
        // Before the first connection: a write's audit record is sealed by its INSERT.
        super::sqlite_chain::install();
        if path != ":memory:" {
            if let Some(dir) = std::path::Path::new(&path).parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        StoreError::Database(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
            }
        }
        // The file must exist before the first connection, so that the statement timeout
        // (registered by the file's path) applies to every connection; off while migrating.
        let timeout_file = (path != ":memory:" && !path.is_empty()).then(|| {
            let p = std::path::PathBuf::from(&path);
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p);
            super::sqlite_timeout::set(&p, 0);
            p
        });
        let full = if url.contains("mode=") {
            url.to_string()
        } else if url.contains('?') {
            format!("{url}&mode=rwc")
        } else {
            format!("{url}?mode=rwc")
        };
        let options = AnyConnectOptions::from_str(&full).map_err(db_err)?;
        // `page_size` before anything else: it only takes effect on a new file. Every page a
        // commit touches is written whole to the WAL and again by the checkpoint, so smaller
        // pages write less per small transaction (docs/benchmarks.md, write amplification).
        // `journal_size_limit`: once checkpointed, the WAL file is cut back to this size, so
        // space a burst of writes took is given back (see group_commit.rs for the checkpoints).
        // `temp_store = MEMORY`: SQLite's temporary storage (materialized CTEs, sorts, spilled
        // statement journals) in memory rather than in temporary
        // files created, written, truncated and deleted per statement: under a write load those
        // files were half of the writer's write(2) time (docs/benchmarks.md).
        let synchronous = if tuning.synchronous == "normal" {
            "NORMAL"
        } else {
            "FULL"
        };
        let pragmas: Arc<str> = format!(
            "PRAGMA page_size = {}; PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; \
             PRAGMA busy_timeout = 10000; PRAGMA journal_size_limit = 4194304; \
             PRAGMA temp_store = MEMORY;",
            tuning.page_size
        )
        .into();
        let pool = |max: u32| {
            let pragmas = pragmas.clone();
            AnyPoolOptions::new()
                .max_connections(max)
                .acquire_timeout(Duration::from_secs(30))
                // A local file cannot drop a connection; a ping per acquire would double the
                // round trips of every read.
                .test_before_acquire(false)
                .after_connect(move |conn, _| {
                    let pragmas = pragmas.clone();
                    Box::pin(async move {
                        conn.execute(&*pragmas).await?;
                        Ok(())
                    })
                })
        };
        let write = pool(1)
            .connect_with(options.clone())
            .await
            .map_err(db_err)?;
        migrate::run(&write, Backend::Sqlite).await?;
        if let Some(p) = &timeout_file {
            super::sqlite_timeout::set(p, statement_timeout_ms);
        }
        let read = pool(max_connections.max(1))
            .connect_with(options)
            .await
            .map_err(db_err)?;
        let disk = Arc::new(super::DiskState::default());
        // Audit-only groups may commit unsynced when every commit is synced otherwise and there
        // is a WAL file to sync (not for `:memory:`).
        let relaxed = match (&timeout_file, synchronous, tuning.audit_sync_ms) {
            (Some(db), "FULL", ms) if ms > 0 => {
                let mut wal = db.clone().into_os_string();
                wal.push("-wal");
                Some(RelaxedSync {
                    wal: wal.into(),
                    window: Duration::from_millis(ms),
                })
            }
            _ => None,
        };
        let write =
            Writer::Sqlite(GroupWriter::new(&write, read.clone(), disk.clone(), relaxed).await?);
        let direct = match &timeout_file {
            // Without them every read takes sqlx's pool, as before: slower, not wrong.
            Some(file) if tuning.direct_reads && !url.contains("mode=memory") => {
                match DirectReads::open(file) {
                    Ok(direct) => Some(Arc::new(direct)),
                    Err(e) => {
                        tracing::warn!(error = %e, file = %file.display(), "cannot open read-only SQLite connections; reads by id go through the connection pool");
                        None
                    }
                }
            }
            _ => None,
        };
        Ok(SqlStore {
            backend: Backend::Sqlite,
            read,
            write,
            cache: None,
            channel: None,
            disk,
            relax_audit: false,
            chain: Arc::default(),
            direct,
        })
    }

    async fn open_postgres(
        url: &str,
        max_connections: u32,
        statement_timeout_ms: u64,
    ) -> Result<SqlStore, StoreError> {
        // Every session of the pool; migrations lift it for their own transaction.
        let set_timeout: &'static str =
            Box::leak(format!("SET statement_timeout = {statement_timeout_ms}").into_boxed_str());
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    conn.execute(set_timeout).await?;
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(db_err)?;
        migrate::run(&pool, Backend::Postgres).await?;
        let disk = Arc::new(super::DiskState::default());
        tokio::spawn(keep_statistics(Arc::downgrade(&disk), pool.clone()));
        Ok(SqlStore {
            backend: Backend::Postgres,
            read: pool.clone(),
            write: Writer::Postgres(pool),
            cache: None,
            channel: None,
            disk,
            relax_audit: false,
            chain: Arc::default(),
            direct: None,
        })
    }
}

/// Bind a statement's values in order.
pub(crate) fn query(sql: &Sql) -> sqlx::query::Query<'_, Any, sqlx::any::AnyArguments<'_>> {
    query_text(&sql.text, &sql.binds)
}

/// [`query`] with the statement's text given separately (SQLite's placeholders: see
/// [`Sql::sqlite_text`]).
pub(crate) fn query_text<'q>(
    text: &'q str,
    binds: impl IntoIterator<Item = &'q Bind>,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    let mut q = sqlx::query(text);
    for b in binds {
        q = match b {
            Bind::Text(s) => q.bind(s.as_str()),
            Bind::Int(i) => q.bind(*i),
            Bind::Float(f) => q.bind(*f),
        };
    }
    q
}

/// The current version of a resource (`$1` type, `$2` id): [`search_sql::RESOURCE_COLUMNS`].
/// Also read by `direct.rs`, which binds the placeholders in their order.
const READ_SQL: &str = concat!(
    "SELECT ",
    search_sql::resource_columns!(),
    " FROM resources r WHERE r.res_type = $1 AND r.id = $2"
);

/// The head of a resource (`$1` type, `$2` id): version, deleted, owner, citizen. Read inside a
/// write transaction (`StoreTx::head`, `FOR UPDATE` added on PostgreSQL) and outside it by
/// `direct.rs`.
const HEAD_SQL: &str =
    "SELECT version, deleted, owner, citizen FROM resources WHERE res_type = $1 AND id = $2";

/// One version of a resource (`$1` type, `$2` id, `$3` version): [`search_sql::RESOURCE_COLUMNS`]
/// and then `method`.
const VREAD_SQL: &str = concat!(
    "SELECT ",
    search_sql::resource_columns!(),
    ", r.method FROM resource_versions r WHERE r.res_type = $1 AND r.id = $2 AND r.version = $3"
);

/// A row with [`search_sql::RESOURCE_COLUMNS`] as a stored resource.
fn resource_row(row: &AnyRow, method: Option<String>) -> Result<StoredResource, StoreError> {
    let get = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
    Ok(StoredResource {
        rtype: row.try_get("res_type").map_err(get)?,
        id: row.try_get("id").map_err(get)?,
        version: row.try_get("version").map_err(get)?,
        last_updated_ms: row.try_get("last_updated").map_err(get)?,
        deleted: int_col(row, "deleted")? != 0,
        content: row.try_get("content").map_err(get)?,
        method: method.unwrap_or_default(),
        owner: row.try_get("owner").map_err(get)?,
        citizen: row.try_get("citizen").map_err(get)?,
    })
}

/// An integer column by position (a `COUNT(*)`: i64 on both, i32 never, but be lenient).
fn int_col_at(row: &AnyRow, n: usize) -> Result<i64, StoreError> {
    row.try_get::<i64, _>(n)
        .or_else(|_| row.try_get::<i32, _>(n).map(i64::from))
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Integer columns come back as i16 (PostgreSQL SMALLINT) or i64 (SQLite).
pub(crate) fn int_col(row: &AnyRow, name: &str) -> Result<i64, StoreError> {
    row.try_get::<i64, _>(name)
        .or_else(|_| row.try_get::<i16, _>(name).map(i64::from))
        .or_else(|_| row.try_get::<i32, _>(name).map(i64::from))
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The file part of a `sqlite:` URL (`:memory:` for an in-memory database).
fn sqlite_path(url: &str) -> String {
    url.trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The database file of a `sqlite:` URL; `None` for another database or an in-memory one.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    if !url.starts_with("sqlite:") || url.contains("mode=memory") {
        return None;
    }
    let path = sqlite_path(url);
    (path != ":memory:" && !path.is_empty()).then(|| path.into())
}

#[async_trait]
impl Storage for SqlStore {
    fn backend(&self) -> Backend {
        self.backend
    }

    fn disk_full_at_ms(&self) -> Option<i64> {
        self.disk.full_at_ms()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn read(&self, rtype: &str, id: &str) -> Result<Option<StoredResource>, StoreError> {
        if rtype == AUDIT {
            return self.audit_read(id).await;
        }
        let Some(cache) = &self.cache else {
            return self.read_db(rtype, id).await;
        };
        if let Some(r) = cache.current(rtype, id) {
            return Ok(Some(StoredResource::clone(&r)));
        }
        let ticket = cache.current_ticket(rtype, id);
        let found = self.read_db(rtype, id).await?;
        if let (Some(ticket), Some(r)) = (ticket, &found) {
            cache.fill_current(ticket, Arc::new(r.clone()));
        }
        Ok(found)
    }

    async fn vread(
        &self,
        rtype: &str,
        id: &str,
        version: i64,
    ) -> Result<Option<StoredResource>, StoreError> {
        if rtype == AUDIT {
            return Ok(self.audit_read(id).await?.filter(|_| version == 1));
        }
        if let Some(r) = self
            .cache
            .as_ref()
            .and_then(|c| c.version(rtype, id, version))
        {
            return Ok(Some(StoredResource::clone(&r)));
        }
        let found = self.vread_db(rtype, id, version).await?;
        if let (Some(cache), Some(r)) = (&self.cache, &found) {
            cache.fill_version(Arc::new(r.clone()));
        }
        Ok(found)
    }

    async fn read_many(
        &self,
        keys: &[(String, String)],
    ) -> Result<Vec<StoredResource>, StoreError> {
        let Some(cache) = &self.cache else {
            return self.read_many_db(keys).await;
        };
        let mut out = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        for (t, id) in keys {
            match cache.current(t, id) {
                Some(r) if r.deleted => {}
                Some(r) => out.push(StoredResource::clone(&r)),
                None => missing.push((t.clone(), id.clone())),
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        // Each key's ticket, found by key: a batch of a report reads thousands of keys at once,
        // and a scan of the list per row found was quadratic.
        let mut tickets: HashMap<(&str, &str), _> = missing
            .iter()
            .filter_map(|(t, id)| {
                cache
                    .current_ticket(t, id)
                    .map(|ticket| ((t.as_str(), id.as_str()), ticket))
            })
            .collect();
        let found = self.read_many_db(&missing).await?;
        for r in &found {
            if let Some(ticket) = tickets.remove(&(r.rtype.as_str(), r.id.as_str())) {
                cache.fill_current(ticket, Arc::new(r.clone()));
            }
        }
        out.extend(found);
        Ok(out)
    }

    async fn history(
        &self,
        q: &HistoryQuery<'_>,
    ) -> Result<Vec<(i64, StoredResource)>, StoreError> {
        self.history_db(q).await
    }

    async fn search(
        &self,
        q: &SearchQuery,
        limit: usize,
        vis: &Visibility,
    ) -> Result<Vec<SearchHit>, StoreError> {
        if q.rtype == AUDIT {
            // Audit rows are the administrators' alone, and never cached (they are written
            // outside the caches' notice).
            if *vis != Visibility::All {
                return Ok(Vec::new());
            }
            let sql = audit_log::page(q, limit)?;
            let rows = query(&sql).fetch_all(&self.read).await.map_err(db_err)?;
            return audit_log::hits(q, &rows);
        }
        let sql = search_sql::page(q, limit, self.backend, vis);
        let Some(cache) = &self.cache else {
            return self.page_db(q, limit, vis, &sql).await;
        };
        let key = SearchKey::new("page", &sql.text, &sql.binds);
        let slots = StoreCache::query_slots(q);
        if let Some(SearchValue::Hits(hits)) = cache.search(&key, &slots) {
            return Ok(Vec::clone(&hits));
        }
        let ticket = cache.search_ticket(&slots);
        let hits = self.page_db(q, limit, vis, &sql).await?;
        if let Some(ticket) = ticket {
            cache.fill_search(ticket, key, SearchValue::Hits(Arc::new(hits.clone())));
        }
        Ok(hits)
    }

    async fn count(&self, q: &SearchQuery, vis: &Visibility) -> Result<i64, StoreError> {
        if q.rtype == AUDIT {
            if *vis != Visibility::All {
                return Ok(0);
            }
            return self.count_db(&audit_log::count(q)?).await;
        }
        let sql = search_sql::count(q, self.backend, vis);
        let Some(cache) = &self.cache else {
            return self.count_db(&sql).await;
        };
        let key = SearchKey::new("count", &sql.text, &sql.binds);
        let slots = StoreCache::query_slots(q);
        if let Some(SearchValue::Count(n)) = cache.search(&key, &slots) {
            return Ok(n);
        }
        let ticket = cache.search_ticket(&slots);
        let n = self.count_db(&sql).await?;
        if let Some(ticket) = ticket {
            cache.fill_search(ticket, key, SearchValue::Count(n));
        }
        Ok(n)
    }

    async fn referencing(
        &self,
        inc: &Include,
        targets: &[(String, String)],
        limit: usize,
        vis: &Visibility,
    ) -> Result<Vec<StoredResource>, StoreError> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let sql = search_sql::referencing(inc, targets, limit, vis);
        let Some(cache) = &self.cache else {
            return self.referencing_db(&sql).await;
        };
        let key = SearchKey::new("rev", &sql.text, &sql.binds);
        let slots = StoreCache::type_slots(&[inc.source_type.as_str()]);
        if let Some(SearchValue::Resources(found)) = cache.search(&key, &slots) {
            return Ok(Vec::clone(&found));
        }
        let ticket = cache.search_ticket(&slots);
        let found = self.referencing_db(&sql).await?;
        if let Some(ticket) = ticket {
            cache.fill_search(ticket, key, SearchValue::Resources(Arc::new(found.clone())));
        }
        Ok(found)
    }

    async fn granted(
        &self,
        grantees: &[String],
        owner: &str,
        citizen: &str,
    ) -> Result<bool, StoreError> {
        if grantees.is_empty() {
            return Ok(false);
        }
        let mut sql = Sql::default();
        sql.push("SELECT 1 FROM access_grants WHERE owner = ")
            .text(owner)
            .push(" AND citizen = ")
            .text(citizen)
            .push(" AND grantee IN ");
        search_sql::in_list(&mut sql, grantees);
        sql.push(" LIMIT 1");
        let row = query(&sql)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        Ok(row.is_some())
    }

    fn generation(&self, deps: &super::Dependencies) -> Option<u64> {
        // Audit rows are written without the caches' notice: nothing derived from them is cached.
        if let super::Dependencies::Types(types) = deps {
            if types.iter().any(|t| t == AUDIT) {
                return None;
            }
        }
        self.cache.as_ref()?.generation(deps)
    }

    async fn outbox_job(
        &self,
        message_id: &str,
        sender: Option<&str>,
    ) -> Result<Option<Job>, StoreError> {
        let sql = outbox::by_message_id(message_id, sender);
        let row = query(&sql)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        row.as_ref().map(outbox::job_row).transpose()
    }

    async fn outbox_jobs(
        &self,
        status: Option<JobStatus>,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        let sql = outbox::list(status, after_id, limit);
        let rows = query(&sql).fetch_all(&self.read).await.map_err(db_err)?;
        rows.iter().map(outbox::job_row).collect()
    }

    async fn outbox_blocker(&self, job: &Job) -> Result<Option<String>, StoreError> {
        let sql = outbox::blocker(&job.ordering_key, job.id);
        let row = query(&sql)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        row.map(|r| {
            r.try_get::<String, _>(0)
                .map_err(|e| StoreError::Corrupt(e.to_string()))
        })
        .transpose()
    }

    async fn outbox_counts(&self) -> Result<Vec<(String, JobStatus, i64)>, StoreError> {
        let rows = sqlx::query(outbox::COUNTS)
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        rows.iter().map(outbox::count_row).collect()
    }

    async fn hospital_event(
        &self,
        sender: &str,
        message_id: &str,
    ) -> Result<Option<HospitalEvent>, StoreError> {
        let sql = hospital_events::by_key(sender, message_id);
        let row = query(&sql)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        row.as_ref().map(hospital_events::row).transpose()
    }

    async fn kpi_rows(
        &self,
        q: &super::kpis::KpiQuery,
        vis: &Visibility,
    ) -> Result<super::kpis::KpiRows, StoreError> {
        use super::kpis;
        let fetch =
            |sql: Sql| async move { query(&sql).fetch_all(&self.read).await.map_err(db_err) };
        // Independent reads, each on a connection of its own.
        let (stays, phases, goals, events, notes) = tokio::try_join!(
            fetch(kpis::stays(q, vis)),
            fetch(kpis::phases(q, vis)),
            fetch(kpis::goals(q, vis)),
            fetch(kpis::course_events(q, vis)),
            fetch(kpis::notes_with_warnings(q, vis)),
        )?;
        let counted = |rows: Vec<AnyRow>| {
            rows.iter()
                .map(kpis::counted_row)
                .collect::<Result<Vec<_>, _>>()
        };
        let (courses, events) = kpis::course_event_rows(&events)?;
        Ok(kpis::KpiRows {
            stays: stays
                .iter()
                .map(kpis::stay_row)
                .collect::<Result<Vec<_>, _>>()?,
            phases: counted(phases)?,
            goals: counted(goals)?,
            courses,
            events,
            notes_with_warnings: match notes.first() {
                Some(row) => kpis::count(row, "n")?,
                None => 0,
            },
        })
    }

    async fn report_facts(
        &self,
        q: &super::report_facts::FactsQuery,
        limit: usize,
        vis: &Visibility,
    ) -> Result<Vec<super::report_facts::FactsRow>, StoreError> {
        let sql = super::report_facts::page(q, limit, vis, self.backend);
        let rows = query(&sql).fetch_all(&self.read).await.map_err(db_err)?;
        rows.iter().map(super::report_facts::row).collect()
    }

    async fn stale_report_facts(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let sql = super::report_facts::stale(after, limit, self.backend);
        let rows = query(&sql).fetch_all(&self.read).await.map_err(db_err)?;
        rows.iter().map(super::report_facts::stale_row).collect()
    }

    async fn scan(
        &self,
        q: &SearchQuery,
        limit: usize,
        vis: &Visibility,
    ) -> Result<Vec<SearchHit>, StoreError> {
        let sql = search_sql::page(q, limit, self.backend, vis);
        self.page_db(q, limit, vis, &sql).await
    }

    async fn bulk_job(&self, id: &str) -> Result<Option<BulkJob>, StoreError> {
        let sql = bulk::by_id(id);
        let row = query(&sql)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        row.as_ref().map(bulk::row).transpose()
    }

    async fn bulk_expired(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        let sql = bulk::expired(now_ms);
        let rows = query(&sql).fetch_all(&self.read).await.map_err(db_err)?;
        rows.iter()
            .map(|r| {
                r.try_get::<String, _>(0)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect()
    }

    async fn bulk_active(&self, client_id: &str) -> Result<i64, StoreError> {
        let sql = bulk::active_of(client_id);
        let row = query(&sql).fetch_one(&self.read).await.map_err(db_err)?;
        int_col_at(&row, 0)
    }

    async fn hospital_events(&self, citizen: &str) -> Result<Vec<HospitalEvent>, StoreError> {
        let sql = hospital_events::by_citizen(citizen);
        let rows = query(&sql).fetch_all(&self.read).await.map_err(db_err)?;
        rows.iter().map(hospital_events::row).collect()
    }

    async fn audit_verify(&self) -> Result<audit_log::Verification, StoreError> {
        audit_log::verify(&self.read, 1000).await
    }

    async fn audit_journal_marks(&self) -> Result<Vec<audit_log::JournalMark>, StoreError> {
        let rows = query(&audit_log::journal_marks())
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        rows.iter().map(audit_log::journal_mark).collect()
    }

    async fn audit_export(
        &self,
        after_seq: i64,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<(i64, serde_json::Value)>, StoreError> {
        let sql = audit_log::export_page(after_seq, since_ms, limit);
        let rows = query(&sql).fetch_all(&self.read).await.map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let row = audit_log::row(r)?;
                Ok((row.seq, audit_log::render(&row)))
            })
            .collect()
    }

    async fn begin(&self) -> Result<Box<dyn StoreTx>, StoreError> {
        let tx = match &self.write {
            Writer::Sqlite(w) => TxConn::Sqlite(w.begin()),
            Writer::Postgres(pool) => TxConn::Postgres(pool.begin().await.map_err(db_err)?),
        };
        Ok(Box::new(SqlTx {
            tx,
            read: self.read.clone(),
            disk: self.disk.clone(),
            backend: self.backend,
            cache: self.cache.clone(),
            channel: self.channel.clone(),
            written: Vec::new(),
            direct: self.direct.clone(),
            grants_changed: false,
            audit_only: true,
            relax_audit: self.relax_audit,
            chain: self.chain.clone(),
            chain_guard: None,
        }))
    }
}

/// Audit rows are read as AuditEvents of this type.
const AUDIT: &str = "AuditEvent";

/// The database side of each read, without the cache.
impl SqlStore {
    async fn audit_read(&self, id: &str) -> Result<Option<StoredResource>, StoreError> {
        let Some(sql) = audit_log::by_id(id) else {
            return Ok(None);
        };
        let row = query(&sql)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        row.map(|r| audit_log::row(&r).map(|row| audit_log::stored(&row)))
            .transpose()
    }

    #[tracing::instrument(name = "database", level = "debug", skip_all, fields(db.operation.name = "read", db.system.name = self.backend.name(), otel.kind = "client"))]
    async fn read_db(&self, rtype: &str, id: &str) -> Result<Option<StoredResource>, StoreError> {
        if let Some(Direct::Done(found)) = self
            .direct
            .as_ref()
            .map(|d| d.read(rtype, id))
            .transpose()?
        {
            return Ok(found);
        }
        let row = sqlx::query(READ_SQL)
            .bind(rtype)
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        row.map(|r| resource_row(&r, None)).transpose()
    }

    #[tracing::instrument(name = "database", level = "debug", skip_all, fields(db.operation.name = "vread", db.system.name = self.backend.name(), otel.kind = "client"))]
    async fn vread_db(
        &self,
        rtype: &str,
        id: &str,
        version: i64,
    ) -> Result<Option<StoredResource>, StoreError> {
        if let Some(Direct::Done(found)) = self
            .direct
            .as_ref()
            .map(|d| d.vread(rtype, id, version))
            .transpose()?
        {
            return Ok(found);
        }
        let row = sqlx::query(VREAD_SQL)
            .bind(rtype)
            .bind(id)
            .bind(version)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        row.map(|r| {
            let method = r.try_get("method").ok();
            resource_row(&r, method)
        })
        .transpose()
    }

    #[tracing::instrument(name = "database", level = "debug", skip_all, fields(db.operation.name = "read_many", db.system.name = self.backend.name(), otel.kind = "client"))]
    async fn read_many_db(
        &self,
        keys: &[(String, String)],
    ) -> Result<Vec<StoredResource>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(200) {
            let sql = search_sql::by_keys(chunk);
            if let Some(direct) = &self.direct {
                if let Direct::Done(found) = direct.select(&sql.sqlite_text(), &sql.binds)? {
                    out.extend(found);
                    continue;
                }
            }
            let rows = query(&sql).fetch_all(&self.read).await.map_err(db_err)?;
            for row in &rows {
                out.push(resource_row(row, None)?);
            }
        }
        Ok(out)
    }

    #[tracing::instrument(name = "database", level = "debug", skip_all, fields(db.operation.name = "history", db.system.name = self.backend.name(), otel.kind = "client"))]
    async fn history_db(
        &self,
        q: &HistoryQuery<'_>,
    ) -> Result<Vec<(i64, StoredResource)>, StoreError> {
        let mut sql = Sql::default();
        sql.push("SELECT r.seq, r.res_type, r.id, r.version, r.last_updated, r.deleted, r.content, r.method, r.owner, r.citizen FROM resource_versions r WHERE 1 = 1");
        search_sql::visibility(&mut sql, "r", q.visibility);
        match q.scope {
            HistoryScope::System => {}
            HistoryScope::Type(t) => {
                sql.push(" AND r.res_type = ").text(&t);
            }
            HistoryScope::Instance(t, id) => {
                sql.push(" AND r.res_type = ")
                    .text(&t)
                    .push(" AND r.id = ")
                    .text(id);
            }
        }
        if let Some(since) = q.since_ms {
            sql.push(" AND r.last_updated >= ").bind(Bind::Int(since));
        }
        if let Some(before) = q.before_seq {
            sql.push(" AND r.seq < ").bind(Bind::Int(before));
        }
        sql.push(&format!(" ORDER BY r.seq DESC LIMIT {}", q.limit));
        let rows = query(&sql).fetch_all(&self.read).await.map_err(db_err)?;
        rows.iter()
            .map(|row| {
                let seq: i64 = row
                    .try_get("seq")
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let method = row.try_get("method").ok();
                Ok((seq, resource_row(row, method)?))
            })
            .collect()
    }

    /// A page of `q` (`sql`, its [`search_sql::page`]); on SQLite a broad single-filter search
    /// walks the type in creation order instead ([`search_sql::dense_page`]), after a probe of
    /// at most a few thousand index entries says it is broad. One span covers the probe and the
    /// page.
    #[tracing::instrument(name = "database", level = "debug", skip_all, fields(db.operation.name = "search", db.system.name = self.backend.name(), otel.kind = "client"))]
    async fn page_db(
        &self,
        q: &SearchQuery,
        limit: usize,
        vis: &Visibility,
        sql: &Sql,
    ) -> Result<Vec<SearchHit>, StoreError> {
        if let Some(probe) = search_sql::density_probe(q, self.backend, vis) {
            let row = query(&probe).fetch_one(&self.read).await.map_err(db_err)?;
            let (matches, rows) = (int_col(&row, "v")?, int_col(&row, "n")?);
            if search_sql::is_dense(matches, rows) {
                if let Some(dense) = search_sql::dense_page(q, limit, vis) {
                    return self.search_db(q, &dense).await;
                }
            }
        }
        self.search_db(q, sql).await
    }

    async fn search_db(&self, q: &SearchQuery, sql: &Sql) -> Result<Vec<SearchHit>, StoreError> {
        let rows = query(sql).fetch_all(&self.read).await.map_err(db_err)?;
        let corrupt = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
        rows.iter()
            .map(|row| {
                let mut sort_values = Vec::with_capacity(q.sort.len());
                for (i, s) in q.sort.iter().enumerate() {
                    let col = format!("k{i}");
                    let v = match &s.key {
                        fhir_core::fhir::search::SortKey::Id => {
                            SortValue::Text(row.try_get(col.as_str()).map_err(corrupt)?)
                        }
                        fhir_core::fhir::search::SortKey::LastUpdated => {
                            SortValue::Int(int_col(row, &col)?)
                        }
                        fhir_core::fhir::search::SortKey::Param { kind, .. } => match kind {
                            SortKind::Int => SortValue::Int(int_col(row, &col)?),
                            SortKind::Float => {
                                SortValue::Float(row.try_get(col.as_str()).map_err(corrupt)?)
                            }
                            SortKind::Text => {
                                SortValue::Text(row.try_get(col.as_str()).map_err(corrupt)?)
                            }
                        },
                    };
                    sort_values.push(v);
                }
                Ok(SearchHit {
                    resource: resource_row(row, None)?,
                    sort_values,
                    seq: int_col(row, "created_seq")?,
                })
            })
            .collect()
    }

    #[tracing::instrument(name = "database", level = "debug", skip_all, fields(db.operation.name = "count", db.system.name = self.backend.name(), otel.kind = "client"))]
    async fn count_db(&self, sql: &Sql) -> Result<i64, StoreError> {
        let row = query(sql).fetch_one(&self.read).await.map_err(db_err)?;
        row.try_get::<i64, _>(0)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    #[tracing::instrument(name = "database", level = "debug", skip_all, fields(db.operation.name = "referencing", db.system.name = self.backend.name(), otel.kind = "client"))]
    async fn referencing_db(&self, sql: &Sql) -> Result<Vec<StoredResource>, StoreError> {
        let rows = query(sql).fetch_all(&self.read).await.map_err(db_err)?;
        rows.iter().map(|r| resource_row(r, None)).collect()
    }
}
