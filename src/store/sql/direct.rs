//! Point reads on SQLite without a thread hop (issue 19 item 5).
//!
//! sqlx runs every SQLite connection on a thread of its own: each statement is a message to
//! that thread and a wake-up back, and with the caches off a read by id spent most of its time
//! on that round trip (docs/benchmarks.md, "The uncached path"). Reads by key (`read`, `vread`
//! and `read_many`'s batches) are bounded work: an index look-up and a row. They run here,
//! on the calling thread, on connections of our own to the same file, opened read-only; their
//! prepared statements are kept.
//!
//! Searches stay on sqlx's threads: their work grows with the data and the query, and a
//! request's thread also serves other connections.
//!
//! The connections see what the writer committed (WAL: every statement starts a read
//! transaction at the latest commit). The process-wide statement timeout
//! (`sqlite_timeout.rs`) reaches them too, as every connection opened in the process. A
//! connection that is busy (`SQLITE_BUSY`, which WAL readers meet only while the WAL index is
//! being rebuilt) answers [`Direct::Busy`] at once, and the caller goes the way of sqlx's pool
//! instead.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension as _};

use crate::store::{Head, StoreError, StoredResource};

/// Connections kept between reads: two per core (actix runs a worker thread per core, and the
/// background tasks read too), at least 8 and at most 64. More are opened when needed and
/// closed when given back past this; a new connection reads the schema on its first statement,
/// so too few kept would cost that on many reads.
fn keep() -> usize {
    std::thread::available_parallelism()
        .map_or(8, |n| n.get() * 2)
        .clamp(8, 64)
}

/// How long a direct read waits for a lock before the caller takes the pooled path: not at
/// all, since the wait would hold the request's thread, which serves other connections too;
/// sqlx's connection thread waits instead.
const BUSY_WAIT: Duration = Duration::ZERO;

/// Kept prepared statements per connection (the three point reads and `read_many`'s batch
/// sizes).
const STATEMENTS: usize = 32;

/// The outcome of a direct read.
pub(super) enum Direct<T> {
    Done(T),
    /// Locked: read through the pool instead.
    Busy,
}

/// Read-only connections to the store's SQLite file, used on the calling thread.
pub(super) struct DirectReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// How many idle connections are kept ([`keep`]).
    keep: usize,
}

impl DirectReads {
    /// Direct reads of the SQLite file at `path` (checked by opening one connection).
    pub(super) fn open(path: &Path) -> Result<DirectReads, StoreError> {
        let reads = DirectReads {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
            keep: keep(),
        };
        let conn = reads.connect().map_err(err)?;
        reads.give_back(conn);
        Ok(reads)
    }

    fn connect(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_WAIT)?;
        conn.set_prepared_statement_cache_capacity(STATEMENTS);
        // As the pooled readers: sorts and temporary results in memory.
        conn.execute_batch("PRAGMA temp_store = MEMORY;")?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.keep {
                idle.push(conn);
            }
        }
    }

    /// Run `f` on an idle connection (or a new one), on this thread.
    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<Direct<T>, StoreError> {
        let kept = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match kept {
            Some(c) => c,
            None => self.connect().map_err(err)?,
        };
        let out = f(&conn);
        self.give_back(conn);
        match out {
            Ok(v) => Ok(Direct::Done(v)),
            Err(e) if busy(&e) => Ok(Direct::Busy),
            Err(e) => Err(err(e)),
        }
    }

    /// The current version of `rtype/id`.
    pub(super) fn read(
        &self,
        rtype: &str,
        id: &str,
    ) -> Result<Direct<Option<StoredResource>>, StoreError> {
        self.with(|c| {
            c.prepare_cached(super::READ_SQL)?
                .query_row([rtype, id], |row| resource(row, None))
                .optional()
        })
    }

    /// The head of `rtype/id` as last committed ([`StoreTx::head_to_write`]).
    ///
    /// [`StoreTx::head_to_write`]: crate::store::StoreTx::head_to_write
    pub(super) fn head(&self, rtype: &str, id: &str) -> Result<Direct<Option<Head>>, StoreError> {
        self.with(|c| {
            c.prepare_cached(super::HEAD_SQL)?
                .query_row([rtype, id], |row| {
                    Ok(Head {
                        version: row.get(0)?,
                        deleted: row.get::<_, i64>(1)? != 0,
                        owner: row.get(2)?,
                        citizen: row.get(3)?,
                    })
                })
                .optional()
        })
    }

    /// Version `version` of `rtype/id`.
    pub(super) fn vread(
        &self,
        rtype: &str,
        id: &str,
        version: i64,
    ) -> Result<Direct<Option<StoredResource>>, StoreError> {
        self.with(|c| {
            c.prepare_cached(super::VREAD_SQL)?
                .query_row(rusqlite::params![rtype, id, version], |row| {
                    let method: Option<String> = row.get(8)?;
                    resource(row, method)
                })
                .optional()
        })
    }

    /// The current versions of the resources a statement selects (`text` with SQLite's
    /// placeholders, its values in order): `read_many`'s batches of keys.
    pub(super) fn select(
        &self,
        text: &str,
        binds: &[super::Bind],
    ) -> Result<Direct<Vec<StoredResource>>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(text)?;
            for (i, b) in binds.iter().enumerate() {
                let at = i + 1;
                match b {
                    super::Bind::Text(s) => stmt.raw_bind_parameter(at, s.as_str())?,
                    super::Bind::Int(n) => stmt.raw_bind_parameter(at, n)?,
                    super::Bind::Float(f) => stmt.raw_bind_parameter(at, f)?,
                }
            }
            let mut rows = stmt.raw_query();
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(resource(row, None)?);
            }
            Ok(out)
        })
    }
}

/// A row whose first columns are `search_sql::RESOURCE_COLUMNS`, in that order (`READ_SQL`,
/// `VREAD_SQL`, `search_sql::by_keys`).
fn resource(row: &rusqlite::Row<'_>, method: Option<String>) -> rusqlite::Result<StoredResource> {
    Ok(StoredResource {
        rtype: row.get(0)?,
        id: row.get(1)?,
        version: row.get(2)?,
        last_updated_ms: row.get(3)?,
        deleted: row.get::<_, i64>(4)? != 0,
        content: row.get(5)?,
        method: method.unwrap_or_default(),
        owner: row.get(6)?,
        citizen: row.get(7)?,
    })
}

fn busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// As `db_err` maps sqlx's errors: the statement timeout, a full disk, the rest.
fn err(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::OperationInterrupted) => StoreError::Timeout,
        Some(rusqlite::ErrorCode::DiskFull) => StoreError::DiskFull,
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Busy
        }
        _ => StoreError::Database(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use fhir_core::fhir::search_params::SearchParamRegistry;
    use serde_json::json;

    use super::Direct;
    use crate::store::sql::SqlStore;
    use crate::store::{NewVersion, Storage, StoredResource};

    async fn open(url: &str, direct_reads: bool) -> SqlStore {
        let mut cache = crate::config::Config::defaults().cache;
        cache.enabled = false;
        SqlStore::open(
            url,
            2,
            crate::store::SqliteTuning {
                direct_reads,
                ..crate::store::SqliteTuning::from("full")
            },
            0,
            &cache,
        )
        .await
        .expect("open")
    }

    async fn write(store: &SqlStore, id: &str, version: i64, deleted: bool, owner: Option<&str>) {
        let r = json!({"resourceType": "Goal", "id": id, "lifecycleStatus": "active",
            "description": {"text": format!("mål {version}")},
            "subject": {"reference": "Patient/p1"}});
        let index = SearchParamRegistry::embedded().extract(&r);
        let text = r.to_string();
        let mut tx = store.begin().await.expect("begin");
        tx.write(&NewVersion {
            rtype: "Goal",
            id,
            version,
            last_updated_ms: 1_700_000_000_000 + version,
            method: if deleted { "DELETE" } else { "PUT" },
            content: (!deleted).then_some(text.as_str()),
            index: &index,
            kpi: None,
            owner,
            citizen: Some("p1"),
        })
        .await
        .expect("write");
        tx.commit().await.expect("commit");
    }

    fn fields(r: &StoredResource) -> String {
        format!("{r:?}")
    }

    /// Reads by key on the calling thread give what sqlx's pool gives, field by field: current
    /// versions, older versions with their method, deletions, owners, what is missing, and a
    /// batch of keys; and a commit is seen by the next direct read.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn direct_reads_agree_with_the_pool() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("d.db").display());
        let store = open(&url, true).await;
        let direct = store
            .direct
            .as_ref()
            .expect("direct reads are on for a file");
        write(&store, "g1", 1, false, None).await;
        write(&store, "g1", 2, false, None).await;
        write(&store, "g2", 1, false, Some("urn:oid:1.2.208.176.1.1|1234")).await;
        write(&store, "g2", 2, true, Some("urn:oid:1.2.208.176.1.1|1234")).await;
        let pooled = open(&url, false).await;
        assert!(pooled.direct.is_none());
        for id in ["g1", "g2", "g3"] {
            let Direct::Done(d) = direct.read("Goal", id).expect("direct read") else {
                panic!("busy");
            };
            let p = pooled.read_db("Goal", id).await.expect("pooled read");
            assert_eq!(d.as_ref().map(fields), p.as_ref().map(fields), "{id}");
            for v in 1..=3 {
                let Direct::Done(d) = direct.vread("Goal", id, v).expect("direct vread") else {
                    panic!("busy");
                };
                let p = pooled.vread_db("Goal", id, v).await.expect("pooled vread");
                assert_eq!(d.as_ref().map(fields), p.as_ref().map(fields), "{id} {v}");
            }
        }
        let keys: Vec<(String, String)> = ["g1", "g2", "g3"]
            .iter()
            .map(|id| ("Goal".to_string(), id.to_string()))
            .collect();
        let d = store.read_many_db(&keys).await.expect("direct batch");
        let p = pooled.read_many_db(&keys).await.expect("pooled batch");
        assert_eq!(
            d.iter().map(fields).collect::<Vec<_>>(),
            p.iter().map(fields).collect::<Vec<_>>()
        );
        assert_eq!(d.len(), 1, "the deleted and the missing are not in a batch");
        // A commit by the writer is what the next direct read sees.
        write(&store, "g1", 3, false, None).await;
        let Direct::Done(Some(now)) = direct.read("Goal", "g1").expect("read") else {
            panic!("g1 is there");
        };
        assert_eq!(now.version, 3);
        // One thread reading in turn reuses the one connection opened at start.
        assert_eq!(direct.idle.lock().map(|i| i.len()).unwrap_or(0), 1);
    }

    /// Direct connections are read-only, and an in-memory database has none.
    #[tokio::test]
    async fn direct_connections_cannot_write_and_memory_has_none() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("d.db").display());
        let store = open(&url, true).await;
        let direct = store.direct.as_ref().expect("direct");
        let refused = direct.with(|c| c.execute("DELETE FROM resources", []));
        assert!(refused.is_err(), "a direct connection wrote");
        let memory = open("sqlite::memory:", true).await;
        assert!(memory.direct.is_none());
    }
}
