//! Write transactions on [`SqlStore`](super::SqlStore): statements buffered for SQLite's group
//! commit or run at once on PostgreSQL, the audit rows a transaction carries, and the
//! statements that write one resource version with its search index and facts.

use super::*;

/// The connection a write transaction runs on.
pub(super) enum TxConn {
    Sqlite(GroupTx),
    Postgres(Transaction<'static, Any>),
}

/// A write transaction on [`SqlStore`].
pub(super) struct SqlTx {
    pub(super) tx: TxConn,
    /// The store's readers (SQLite: where the audit sealer reads).
    pub(super) read: AnyPool,
    pub(super) disk: Arc<crate::store::DiskState>,
    pub(super) backend: Backend,
    pub(super) cache: Option<Arc<StoreCache>>,
    /// PostgreSQL: the channel that announces this transaction's writes at commit.
    pub(super) channel: Option<String>,
    /// `Type/id` of every version written: for the caches once the commit is durable, and so
    /// that [`StoreTx::head_to_write`] reads what this transaction wrote.
    pub(super) written: Vec<(String, String)>,
    /// SQLite: the store's read-only connections, where [`StoreTx::head_to_write`] reads before
    /// the transaction holds the writer.
    pub(super) direct: Option<Arc<DirectReads>>,
    /// A grant was added: every cached search may now show the grantee more.
    pub(super) grants_changed: bool,
    /// Nothing but audit rows written so far (see [`SqlTx::write_audit_sql`]).
    pub(super) audit_only: bool,
    /// The store's audit chain lock, and this transaction's hold on it until it ends.
    pub(super) chain: Arc<tokio::sync::Mutex<()>>,
    pub(super) chain_guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// PostgreSQL: an audit-only transaction commits with `synchronous_commit = off`.
    pub(super) relax_audit: bool,
}

impl SqlTx {
    /// The connection for a statement whose rows are read (on SQLite this takes the writer and
    /// sends the statements buffered so far).
    async fn conn(&mut self) -> Result<&mut AnyConnection, StoreError> {
        match &mut self.tx {
            TxConn::Sqlite(g) => g.conn().await,
            TxConn::Postgres(t) => Ok(&mut **t),
        }
    }
}

impl SqlTx {
    /// A statement whose rows are not read: buffered on SQLite (sent with the next read or at
    /// commit), executed at once on PostgreSQL.
    async fn write_sql(&mut self, sql: Sql) -> Result<(), StoreError> {
        self.audit_only = false;
        self.write_audit_sql(sql).await
    }

    /// One transaction at a time moves the audit chain's head (sealing, retention, rows copied
    /// from the journal): within this process by the store's chain lock, and on PostgreSQL
    /// across instances by an advisory lock. Both end with the transaction.
    async fn lock_audit_chain(&mut self) -> Result<(), StoreError> {
        if self.chain_guard.is_none() {
            self.chain_guard = Some(self.chain.clone().lock_owned().await);
        }
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(lock_id("sektorbro audit chain"))
                .execute(self.conn().await?)
                .await
                .map_err(db_err)?;
        }
        Ok(())
    }

    /// Where a transaction holding the chain's lock reads what it will write (sealing, key
    /// moves). On SQLite a reader, so that the single writer is held only for the statements
    /// (and a sealing commit can be relaxed like the records it seals): this process is the
    /// file's only writer and takes these steps one at a time under the lock, so the committed
    /// rows are the whole truth. On PostgreSQL the transaction itself.
    async fn chain_reader(&mut self) -> Result<ChainReader<'_>, StoreError> {
        if self.backend == Backend::Sqlite {
            let conn = self.read.acquire().await.map_err(db_err)?;
            Ok(ChainReader::Reader(conn))
        } else {
            Ok(ChainReader::Tx(self.conn().await?))
        }
    }

    /// [`SqlTx::write_sql`] of the audit trail's own statements: a transaction of nothing else
    /// succeeding does not tell that the disk has room for clinical writes again.
    async fn write_audit_sql(&mut self, sql: Sql) -> Result<(), StoreError> {
        match &mut self.tx {
            TxConn::Sqlite(g) => g.write(sql, StoreError::Busy).await,
            TxConn::Postgres(t) => query(&sql)
                .execute(&mut **t)
                .await
                .map(|_| ())
                .map_err(db_err),
        }
    }
}

/// The connection of [`SqlTx::chain_reader`].
enum ChainReader<'a> {
    Reader(sqlx::pool::PoolConnection<Any>),
    Tx(&'a mut AnyConnection),
}

impl std::ops::Deref for ChainReader<'_> {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match self {
            ChainReader::Reader(c) => c,
            ChainReader::Tx(c) => c,
        }
    }
}

impl std::ops::DerefMut for ChainReader<'_> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            ChainReader::Reader(c) => c,
            ChainReader::Tx(c) => c,
        }
    }
}

/// Stable 64-bit FNV-1a, so every instance maps a lock key to the same advisory lock.
fn lock_id(key: &str) -> i64 {
    audit_log::key(key)
}

/// Index columns (system, value, lo, hi, num) of one search value.
fn index_columns(v: &IndexValue) -> (String, String, Option<i64>, Option<i64>, Option<f64>) {
    match v {
        IndexValue::Token { system, code } => (
            system.clone().unwrap_or_default(),
            code.clone(),
            None,
            None,
            None,
        ),
        // `system` keeps the string as written, for `:exact`.
        IndexValue::String { normalized, exact } => {
            (exact.clone(), normalized.clone(), None, None, None)
        }
        IndexValue::Reference { rtype, id } => (rtype.clone(), id.clone(), None, None, None),
        IndexValue::Date { lo, hi } => (String::new(), String::new(), Some(*lo), Some(*hi), None),
        IndexValue::Uri(u) => (String::new(), u.clone(), None, None, None),
        IndexValue::Number(n) => (String::new(), String::new(), None, None, Some(*n)),
        IndexValue::Quantity {
            value,
            system,
            code,
            unit,
        } => (
            system.clone().unwrap_or_default(),
            code.clone().or_else(|| unit.clone()).unwrap_or_default(),
            None,
            None,
            Some(*value),
        ),
    }
}

#[async_trait]
impl StoreTx for SqlTx {
    async fn lock(&mut self, key: &str) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(lock_id(key))
                .execute(self.conn().await?)
                .await
                .map_err(db_err)?;
        }
        Ok(())
    }

    #[tracing::instrument(name = "database", level = "debug", skip_all, fields(db.operation.name = "head", db.system.name = self.backend.name(), otel.kind = "client"))]
    async fn head(&mut self, rtype: &str, id: &str) -> Result<Option<Head>, StoreError> {
        // The statement `head_to_write` reads outside the transaction, here inside it.
        let mut sql = Sql::from_text(HEAD_SQL);
        sql.binds = vec![Bind::Text(rtype.to_string()), Bind::Text(id.to_string())];
        if self.backend == Backend::Postgres {
            sql.push(" FOR UPDATE");
        }
        let row = query(&sql)
            .fetch_optional(self.conn().await?)
            .await
            .map_err(db_err)?;
        row.map(|r| {
            let get = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
            Ok(Head {
                version: int_col(&r, "version")?,
                deleted: int_col(&r, "deleted")? != 0,
                owner: r.try_get("owner").map_err(get)?,
                citizen: r.try_get("citizen").map_err(get)?,
            })
        })
        .transpose()
    }

    /// SQLite, before this transaction holds the writer and when it has not written `rtype/id`:
    /// the committed head, read on the calling thread (`direct.rs`). Taking the writer for the
    /// read would hold it, and every other write behind it, through the update's work up to
    /// its commit (building the version, its search values): updates went one at a time, at
    /// about 1,000 a second with the machine half idle (docs/benchmarks.md). What the head
    /// misses (a write queued or in the group ahead of this one) is caught by the versions'
    /// `UNIQUE (res_type, id, version)`: [`StoreError::VersionConflict`], and the engine writes
    /// again.
    async fn head_to_write(&mut self, rtype: &str, id: &str) -> Result<Option<Head>, StoreError> {
        if let (TxConn::Sqlite(g), Some(direct)) = (&self.tx, &self.direct) {
            let touched = self.written.iter().any(|(t, i)| t == rtype && i == id);
            if !g.holds_writer() && !touched {
                if let Direct::Done(head) = direct.head(rtype, id)? {
                    return Ok(head);
                }
            }
        }
        self.head(rtype, id).await
    }

    #[tracing::instrument(name = "database", level = "debug", skip_all, fields(db.operation.name = "search_ids", db.system.name = self.backend.name(), otel.kind = "client"))]
    async fn search_ids(
        &mut self,
        q: &SearchQuery,
        limit: usize,
        vis: &Visibility,
    ) -> Result<Vec<String>, StoreError> {
        let sql = search_sql::ids(q, limit, self.backend, vis);
        let rows = query(&sql)
            .fetch_all(self.conn().await?)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                r.try_get::<String, _>(0)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect()
    }

    #[tracing::instrument(name = "database", level = "debug", skip_all, fields(db.operation.name = "write", db.system.name = self.backend.name(), otel.kind = "client"))]
    async fn write(&mut self, v: &NewVersion<'_>) -> Result<(), StoreError> {
        self.audit_only = false;
        let statements = write_statements(v);
        let conflict = StoreError::VersionConflict {
            rtype: v.rtype.to_string(),
            id: v.id.to_string(),
            version: v.version,
        };
        self.written.push((v.rtype.to_string(), v.id.to_string()));
        match &mut self.tx {
            // Joined into texts of at most `MAX_BUFFERED_TEXT` (each with one numbering of `$n`,
            // which SQLite binds across its statements), sent with the transaction's next read
            // or at its commit. SQLite copies the rest of a multi-statement text for each
            // statement it prepares, so a version with thousands of search values must not go
            // as one text (`GroupTx::write`).
            TxConn::Sqlite(g) => {
                let mut piece = Sql::default();
                for s in statements {
                    if !piece.text.is_empty()
                        && piece.text.len() + s.text.len()
                            > crate::store::group_commit::MAX_BUFFERED_TEXT
                    {
                        g.write(std::mem::take(&mut piece), conflict.clone())
                            .await?;
                    }
                    piece.append(s);
                }
                g.write(piece, conflict).await
            }
            // PostgreSQL's extended protocol takes one statement at a time.
            TxConn::Postgres(t) => {
                for s in &statements {
                    if let Err(e) = query(s).execute(&mut **t).await {
                        return Err(write_err(e, conflict));
                    }
                }
                Ok(())
            }
        }
    }

    async fn grant(&mut self, grant: &Grant, now_ms: i64) -> Result<(), StoreError> {
        let mut sql = Sql::default();
        sql.push(
            "INSERT INTO access_grants (grantee, owner, citizen, reason, granted_ms) VALUES (",
        )
        .text(&grant.grantee)
        .push(", ")
        .text(&grant.owner)
        .push(", ")
        .text(&grant.citizen)
        .push(", ")
        .text(&grant.reason)
        .push(", ")
        .bind(Bind::Int(now_ms))
        .push(") ON CONFLICT (grantee, owner, citizen) DO NOTHING");
        self.grants_changed = true;
        self.write_sql(sql).await
    }

    async fn enqueue(&mut self, job: &NewJob) -> Result<(), StoreError> {
        let sql = outbox::insert(job);
        self.write_sql(sql).await
    }

    async fn record_hospital_event(&mut self, event: &HospitalEvent) -> Result<(), StoreError> {
        self.write_sql(hospital_events::insert(event)).await
    }

    async fn claim_jobs(&mut self, claim: &Claim<'_>) -> Result<Vec<ClaimedJob>, StoreError> {
        let sql = outbox::claim(claim, self.backend);
        let rows = query(&sql)
            .fetch_all(self.conn().await?)
            .await
            .map_err(db_err)?;
        rows.iter().map(outbox::claimed_row).collect()
    }

    async fn update_job(&mut self, update: &JobUpdate) -> Result<(), StoreError> {
        self.write_sql(outbox::update(update)).await
    }

    async fn release_all_leases(&mut self, now_ms: i64) -> Result<(), StoreError> {
        self.write_sql(outbox::release_all_leases(now_ms)).await
    }

    async fn bulk_write(&mut self, w: &BulkWrite<'_>) -> Result<bool, StoreError> {
        let sql = bulk::write(w);
        if !sql.text.ends_with("RETURNING id") {
            self.write_sql(sql).await?;
            return Ok(true);
        }
        let rows = query(&sql)
            .fetch_all(self.conn().await?)
            .await
            .map_err(db_err)?;
        Ok(!rows.is_empty())
    }

    async fn put_report_facts(
        &mut self,
        w: &crate::store::report_facts::FactsWrite,
    ) -> Result<bool, StoreError> {
        self.audit_only = false;
        let sql = crate::store::report_facts::put(w);
        let rows = query(&sql)
            .fetch_all(self.conn().await?)
            .await
            .map_err(db_err)?;
        Ok(!rows.is_empty())
    }

    async fn bulk_claim(
        &mut self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<BulkJob>, StoreError> {
        let sql = bulk::claim(owner, now_ms, lease_until_ms, self.backend);
        let row = query(&sql)
            .fetch_optional(self.conn().await?)
            .await
            .map_err(db_err)?;
        row.as_ref().map(bulk::row).transpose()
    }

    async fn act_on_dead(
        &mut self,
        job_id: i64,
        action: DeadAction,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let sql = outbox::act_on_dead(job_id, action, now_ms);
        let rows = query(&sql)
            .fetch_all(self.conn().await?)
            .await
            .map_err(db_err)?;
        Ok(!rows.is_empty())
    }

    async fn audit(&mut self, record: &crate::audit::AuditRecord) -> Result<(), StoreError> {
        let columns = crate::audit::compact::Columns::of(record);
        let sql = match self.backend {
            // Sealed as inserted, on the single writer (`audit_log::insert_sealed_sqlite_in_tx`).
            Backend::Sqlite => audit_log::insert_sealed_sqlite_in_tx(&columns),
            // Unsealed: the sealer chains it under the chain's advisory lock, which a clinical
            // write does not wait for.
            Backend::Postgres => audit_log::insert(&columns),
        };
        self.write_audit_sql(sql).await
    }

    async fn audit_many(
        &mut self,
        records: &[&crate::audit::AuditRecord],
    ) -> Result<(), StoreError> {
        // Unsealed, for the sealer, many rows to a statement. Sealed as inserted, as the
        // journal's rows are, they cost a PostgreSQL gateway 15–20 % of its audited reads a
        // second, and the slowest read waited three times as long, behind the key steps holding
        // the chain's lock (docs/audit.md, "Figures"); on SQLite, sealed as a write's record is,
        // they would be a statement each.
        for chunk in records.chunks(audit_log::INSERT_ROWS) {
            let rows: Vec<_> = chunk
                .iter()
                .map(|r| crate::audit::compact::Columns::of(r))
                .collect();
            self.write_audit_sql(audit_log::insert_many(&rows)).await?;
        }
        Ok(())
    }

    async fn audit_from_journal(
        &mut self,
        rows: &[crate::audit::compact::Columns],
        segment: &str,
        end: u64,
    ) -> Result<(), StoreError> {
        if !rows.is_empty() {
            // Sealed as inserted: the chain's head and the next ids are read on the writer, under
            // the chain's lock, so no other row can take them in between; no row is written twice.
            self.lock_audit_chain().await?;
            let backend = self.backend;
            let conn = self.conn().await?;
            let (mut pos, mut prev) = audit_log::chain_head(conn).await?;
            let seqs = audit_log::next_seqs(conn, backend, rows.len()).await?;
            let mut sealed = Vec::with_capacity(rows.len());
            for (row, seq) in rows.iter().zip(seqs) {
                pos += 1;
                prev = crate::audit::compact::chain_hash(&prev, seq, row);
                sealed.push(audit_log::SealedRow {
                    seq,
                    chain_pos: pos,
                    hash: prev.clone(),
                    row,
                });
            }
            if backend == Backend::Sqlite {
                // On the writer, which `conn` took above: nothing is buffered before it.
                let conn = self.conn().await?;
                audit_log::insert_sealed_sqlite(conn, &sealed)
                    .await
                    .map_err(|e| write_err(e, StoreError::Busy))?;
            } else {
                let array = serde_json::to_string(&sealed)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                self.write_audit_sql(audit_log::insert_sealed_postgres(&array))
                    .await?;
            }
        }
        self.write_audit_sql(audit_log::journal_advance(segment, end))
            .await
    }

    async fn audit_segment_done(&mut self, segment: &str) -> Result<(), StoreError> {
        self.write_audit_sql(audit_log::journal_done(segment))
            .await?;
        // Synced: the rows copied from the segment were committed relaxed, and its file goes.
        self.audit_only = false;
        Ok(())
    }

    async fn audit_segment_forget(&mut self, segment: &str) -> Result<(), StoreError> {
        self.write_audit_sql(audit_log::journal_forget(segment))
            .await
    }

    async fn seal_audit(&mut self) -> Result<usize, StoreError> {
        self.lock_audit_chain().await?;
        let sealed = if self.backend == Backend::Sqlite {
            // Rows left unsealed here are the audit writer's (no journal) and an older
            // version's. Writes seal their records on the writer without the
            // chain's lock, so the head a reader sees may be behind: the rows to seal are
            // read, and the head with them, on the writer.
            if !audit_log::any_unsealed(&mut *self.chain_reader().await?).await? {
                return Ok(0);
            }
            audit_log::seal(self.conn().await?).await?
        } else {
            audit_log::seal(&mut *self.chain_reader().await?).await?
        };
        let Some((sql, n)) = sealed else {
            return Ok(0);
        };
        self.write_audit_sql(sql).await?;
        Ok(n)
    }

    async fn index_audit_keys(
        &mut self,
        shape: &audit_log::KeyShape,
    ) -> Result<Option<u64>, StoreError> {
        self.lock_audit_chain().await?;
        let step = audit_log::index_keys(&mut *self.chain_reader().await?, shape).await?;
        let Some((statements, n)) = step else {
            return Ok(None);
        };
        for s in statements {
            self.write_audit_sql(s).await?;
        }
        Ok(Some(n))
    }

    async fn prune_audit(&mut self, before_ms: i64, now_ms: i64) -> Result<u64, StoreError> {
        self.lock_audit_chain().await?;
        let Some((statements, n)) = audit_log::prune(self.conn().await?, before_ms, now_ms).await?
        else {
            return Ok(0);
        };
        for s in statements {
            self.write_audit_sql(s).await?;
        }
        Ok(n)
    }

    #[tracing::instrument(name = "database", level = "debug", skip_all, fields(db.operation.name = "commit", db.system.name = self.backend.name(), otel.kind = "client"))]
    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let disk = self.disk.clone();
        let audit_only = self.audit_only;
        let result = self.commit_inner().await;
        // A few audit rows fitting does not mean the disk has room again.
        if !(audit_only && result.is_ok()) {
            disk.note(&result);
        }
        result
    }
}

impl SqlTx {
    async fn commit_inner(self: Box<Self>) -> Result<(), StoreError> {
        let SqlTx {
            tx,
            cache,
            channel,
            written,
            grants_changed,
            audit_only,
            relax_audit,
            // Held until the commit is done: the next sealer reads what this one wrote.
            chain_guard: _chain,
            ..
        } = *self;
        match tx {
            // A transaction of audit records only (the audit writer's batches of reads and
            // refusals, sealing, retention) may be synced a little later: `audit.max_unsynced_ms`.
            TxConn::Sqlite(g) if audit_only => g.commit_relaxed().await?,
            TxConn::Sqlite(g) => g.commit().await?,
            TxConn::Postgres(mut t) => {
                if audit_only && relax_audit {
                    // The server acknowledges before its WAL is flushed (within three of its
                    // `wal_writer_delay`); the gateway's own crash loses nothing.
                    sqlx::query("SET LOCAL synchronous_commit = off")
                        .execute(&mut *t)
                        .await
                        .map_err(db_err)?;
                }
                // Other instances hear of the writes when (and only if) the commit happens.
                if let Some(channel) = &channel {
                    let mut payloads = notify::payloads(&written);
                    if grants_changed {
                        // A line without `Type/id`: the listeners drop every cached entry.
                        payloads.push("grants".into());
                    }
                    for payload in payloads {
                        sqlx::query("SELECT pg_notify($1, $2)")
                            .bind(channel.as_str())
                            .bind(payload)
                            .execute(&mut *t)
                            .await
                            .map_err(db_err)?;
                    }
                }
                t.commit().await.map_err(db_err)?;
            }
        }
        // Durable now: cached reads of these resources (and searches of their types) become
        // stale before the writer's client hears of the write.
        if let Some(cache) = &cache {
            for (rtype, id) in &written {
                cache.generations().written(rtype, id);
            }
            if grants_changed {
                cache.generations().everything_changed();
            }
        }
        Ok(())
    }
}

/// Most search values an update compares with the stored ones in one statement; a version
/// with more has its rows replaced wholesale.
const INDEX_DIFF_MAX: usize = 400;

/// `WITH n(param, system, value, lo, hi, num) AS (VALUES …) ` of a version's search values, to
/// compare the stored rows with. NULLs are cast so that both databases give each column one
/// type whatever the rows hold.
fn index_values(s: &mut Sql, index: &[fhir_core::fhir::search_params::IndexEntry]) {
    s.push("WITH n(param, system, value, lo, hi, num) AS (VALUES ");
    for (i, entry) in index.iter().enumerate() {
        if i > 0 {
            s.push(", ");
        }
        s.push("(");
        index_row(s, entry);
        s.push(")");
    }
    s.push(") ");
}

/// `param, system, value, lo, hi, num` of one search value, as a row's values. NULLs are cast
/// literals: a typed NULL bind is not portable across drivers, and the cast gives a column of
/// only NULLs its type on PostgreSQL.
fn index_row(s: &mut Sql, entry: &fhir_core::fhir::search_params::IndexEntry) {
    let (system, value, lo, hi, num) = index_columns(&entry.value);
    s.text(&entry.param)
        .push(", ")
        .text(&system)
        .push(", ")
        .text(&value)
        .push(", ");
    for bound in [lo, hi] {
        match bound {
            Some(x) => s.bind(Bind::Int(x)),
            None => s.push("CAST(NULL AS BIGINT)"),
        };
        s.push(", ");
    }
    match num {
        Some(x) if x.is_finite() => s.bind(Bind::Float(x)),
        _ => s.push("CAST(NULL AS DOUBLE PRECISION)"),
    };
}

/// The condition that rows `a` and `b` of search values are the same (NULLs equal NULLs), `b`
/// being the stored rows. `b.value || ''` keeps `b`'s value index out of the plan: without
/// statistics SQLite preferred it (four equal columns) to the resource's own rows, and a
/// common value (`lifecycle-status = active`) then walked every Goal's entry while the single
/// writer waited (the mix fell from 4,824 to 1,364 requests/s).
fn same_index_row(s: &mut Sql, a: &str, b: &str) {
    s.push(&format!(
        "{a}.param = {b}.param AND {a}.system = {b}.system AND {a}.value = {b}.value || ''"
    ));
    for col in ["lo", "hi", "num"] {
        s.push(&format!(
            " AND ({a}.{col} = {b}.{col} OR ({a}.{col} IS NULL AND {b}.{col} IS NULL))"
        ));
    }
}

/// The statements that write one version: the history row, the head, and the search values.
fn write_statements(v: &NewVersion<'_>) -> Vec<Sql> {
    let deleted = i64::from(v.content.is_none());
    let content = |sql: &mut Sql| match v.content {
        Some(c) => {
            sql.text(c);
        }
        None => {
            sql.push("NULL");
        }
    };
    let tenancy = |sql: &mut Sql| {
        for col in [v.owner, v.citizen] {
            sql.push(", ");
            match col {
                Some(c) => {
                    sql.text(c);
                }
                None => {
                    sql.push("NULL");
                }
            }
        }
    };
    // The report facts of the records the previous version belonged to, while its identifiers
    // are still in `search_index`.
    let mut out = crate::store::report_facts::before_write(v);

    // Both rows start with (res_type, id, version, last_updated, deleted).
    let key_columns = |sql: &mut Sql| {
        sql.text(v.rtype)
            .push(", ")
            .text(v.id)
            .push(", ")
            .bind(Bind::Int(v.version))
            .push(", ")
            .bind(Bind::Int(v.last_updated_ms))
            .push(", ")
            .bind(Bind::Int(deleted))
            .push(", ");
    };

    let mut s = Sql::default();
    s.push("INSERT INTO resource_versions (res_type, id, version, last_updated, deleted, method, content, owner, citizen) VALUES (");
    key_columns(&mut s);
    s.text(v.method).push(", ");
    content(&mut s);
    tenancy(&mut s);
    s.push(")");
    out.push(s);

    // `created_seq` is the sequence number of the id's first version, kept on later writes.
    let mut s = Sql::default();
    s.push("INSERT INTO resources (res_type, id, version, last_updated, deleted, content, owner, citizen, created_seq) VALUES (");
    key_columns(&mut s);
    content(&mut s);
    tenancy(&mut s);
    s.push(", (SELECT seq FROM resource_versions WHERE res_type = ")
        .text(v.rtype)
        .push(" AND id = ")
        .text(v.id)
        .push(" AND version = ")
        .bind(Bind::Int(v.version))
        .push(")) ON CONFLICT (res_type, id) DO UPDATE SET version = excluded.version, last_updated = excluded.last_updated, deleted = excluded.deleted, content = excluded.content, owner = excluded.owner, citizen = excluded.citizen");
    out.push(s);

    // An update keeps the search rows its new version still has: only the ones that changed are
    // deleted and inserted (each row touches three indexes at random places, so re-writing the
    // unchanged ones dirtied most of the pages a write cost). A deletion removes them all.
    let diff = v.version > 1
        && v.content.is_some()
        && !v.index.is_empty()
        && v.index.len() <= INDEX_DIFF_MAX;
    if v.version > 1 {
        let mut s = Sql::default();
        if diff {
            index_values(&mut s, v.index);
        }
        s.push("DELETE FROM search_index WHERE res_type = ")
            .text(v.rtype)
            .push(" AND res_id = ")
            .text(v.id);
        if diff {
            s.push(" AND NOT EXISTS (SELECT 1 FROM n WHERE ");
            same_index_row(&mut s, "n", "search_index");
            s.push(")");
        }
        out.push(s);
        out.push(crate::store::kpis::delete_fact(v.rtype, v.id));
    }
    out.extend(crate::store::report_facts::after_write(v));
    if v.content.is_none() {
        return out;
    }
    if let Some(f) = v.kpi {
        out.push(crate::store::kpis::insert_fact(
            v.rtype, v.id, v.owner, v.citizen, f,
        ));
    }
    if diff {
        let mut s = Sql::default();
        index_values(&mut s, v.index);
        s.push("INSERT INTO search_index (res_type, res_id, param, system, value, lo, hi, num) SELECT ")
            .text(v.rtype)
            .push(", ")
            .text(v.id)
            .push(", n.param, n.system, n.value, n.lo, n.hi, n.num FROM n WHERE NOT EXISTS (SELECT 1 FROM search_index s WHERE s.res_type = ")
            .text(v.rtype)
            .push(" AND s.res_id = ")
            .text(v.id)
            .push(" AND ");
        same_index_row(&mut s, "n", "s");
        s.push(")");
        out.push(s);
        return out;
    }
    for chunk in v.index.chunks(100) {
        let mut s = Sql::default();
        s.push("INSERT INTO search_index (res_type, res_id, param, system, value, lo, hi, num) VALUES ");
        for (n, entry) in chunk.iter().enumerate() {
            if n > 0 {
                s.push(", ");
            }
            s.push("(").text(v.rtype).push(", ").text(v.id).push(", ");
            index_row(&mut s, entry);
            s.push(")");
        }
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use fhir_core::fhir::search_params::SearchParamRegistry;
    use serde_json::{json, Value};
    use sqlx::Row;

    use crate::store::{NewVersion, Storage};

    async fn write(store: &dyn Storage, r: &Value, version: i64) {
        let index = SearchParamRegistry::embedded().extract(r);
        let text = r.to_string();
        let mut tx = store.begin().await.expect("begin");
        tx.write(&NewVersion {
            rtype: "Goal",
            id: r["id"].as_str().expect("id"),
            version,
            last_updated_ms: 0,
            method: "PUT",
            content: Some(&text),
            index: &index,
            kpi: None,
            owner: None,
            citizen: None,
        })
        .await
        .expect("write");
        tx.commit().await.expect("commit");
    }

    /// The search rows of `Goal/g1`: (param, value) → the row's physical identity.
    async fn rows(url: &str, id_column: &str) -> Vec<(String, String, String)> {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(url).await.expect("pool");
        let mut out: Vec<(String, String, String)> = sqlx::query(&format!(
            "SELECT param, value, CAST({id_column} AS TEXT) FROM search_index \
             WHERE res_type = 'Goal' AND res_id = 'g1'"
        ))
        .fetch_all(&pool)
        .await
        .expect("rows")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
        out.sort();
        pool.close().await;
        out
    }

    /// An update writes only the search rows that changed: the others keep their place (the
    /// same physical rows), the changed ones are replaced, and a deletion removes them all.
    async fn updates_touch_only_changed_rows(url: &str, id_column: &str) {
        let mut cache = crate::config::Config::defaults().cache;
        cache.enabled = false;
        let store = crate::store::open(url, 2, "normal", 0, &cache)
            .await
            .expect("store");
        let mut goal = json!({"resourceType": "Goal", "id": "g1",
            "lifecycleStatus": "active",
            "description": {"text": "Gå til købmanden"},
            "subject": {"reference": "Patient/p1"},
            "target": [{"dueDate": "2026-12-24"}]});
        write(&*store, &goal, 1).await;
        // Rows after g1's, so that rows written again could not take their old places.
        let mut other = goal.clone();
        other["id"] = json!("g2");
        write(&*store, &other, 1).await;
        let before = rows(url, id_column).await;
        assert!(before
            .iter()
            .any(|(p, v, _)| p == "lifecycle-status" && v == "active"));
        goal["lifecycleStatus"] = json!("completed");
        write(&*store, &goal, 2).await;
        let after = rows(url, id_column).await;
        assert_eq!(before.len(), after.len(), "{before:?} {after:?}");
        for row in &before {
            if row.0 == "lifecycle-status" {
                assert!(!after.contains(row), "the old status is gone: {after:?}");
            } else {
                assert!(after.contains(row), "{row:?} kept in place: {after:?}");
            }
        }
        assert!(after
            .iter()
            .any(|(p, v, _)| p == "lifecycle-status" && v == "completed"));
        // The same version again: nothing to change at all.
        write(&*store, &goal, 3).await;
        assert_eq!(rows(url, id_column).await, after);
        let mut tx = store.begin().await.expect("begin");
        tx.write(&NewVersion {
            rtype: "Goal",
            id: "g1",
            version: 4,
            last_updated_ms: 0,
            method: "DELETE",
            content: None,
            index: &[],
            kpi: None,
            owner: None,
            citizen: None,
        })
        .await
        .expect("delete");
        tx.commit().await.expect("commit");
        assert!(rows(url, id_column).await.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_updates_touch_only_changed_rows() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("i.db").display());
        updates_touch_only_changed_rows(&url, "rowid").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_updates_touch_only_changed_rows() {
        let Some(schema) =
            crate::store::test_pg::PgSchema::create("index_diff", "the PostgreSQL index-diff test")
                .await
        else {
            return;
        };
        updates_touch_only_changed_rows(&schema.url, "ctid").await;
        schema.drop().await;
    }

    /// SQLite: a version written from a head read outside the transaction (`head_to_write`)
    /// cannot go over a version committed in between: of two updates based on the same head,
    /// the second to commit gets a version conflict (which the engine retries), and the first
    /// one's version stays. A transaction that wrote the id reads its own write instead.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_from_a_moved_head_conflict() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("h.db").display());
        let url = url.as_str();
        let mut cache = crate::config::Config::defaults().cache;
        cache.enabled = false;
        let store = crate::store::open(url, 2, "normal", 0, &cache)
            .await
            .expect("store");
        let goal = json!({"resourceType": "Goal", "id": "g1", "lifecycleStatus": "active",
            "description": {"text": "Gå til købmanden"}, "subject": {"reference": "Patient/p1"}});
        write(&*store, &goal, 1).await;
        let text = goal.to_string();
        let version = |version: i64| NewVersion {
            rtype: "Goal",
            id: "g1",
            version,
            last_updated_ms: version,
            method: "PUT",
            content: Some(&text),
            index: &[],
            kpi: None,
            owner: None,
            citizen: None,
        };
        let mut first = store.begin().await.expect("begin");
        let mut second = store.begin().await.expect("begin");
        for tx in [&mut first, &mut second] {
            // Read outside the writer: a read inside it would hold the writer, and the second
            // read would wait for the first transaction to end.
            let head = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                tx.head_to_write("Goal", "g1"),
            )
            .await
            .expect("both heads are read without waiting for the writer")
            .expect("head");
            assert_eq!(head.map(|h| h.version), Some(1));
        }
        first.write(&version(2)).await.expect("write");
        // What this transaction wrote is what it reads, wherever it reads it.
        let own = first.head_to_write("Goal", "g1").await.expect("own head");
        assert_eq!(own.map(|h| h.version), Some(2));
        first.commit().await.expect("the first commits");
        let lost = async {
            second.write(&version(2)).await?;
            second.commit().await
        };
        match lost.await {
            Err(crate::store::StoreError::VersionConflict { version: 2, .. }) => {}
            other => panic!("the second update must conflict, not {other:?}"),
        }
        let mut tx = store.begin().await.expect("begin");
        let head = tx.head_to_write("Goal", "g1").await.expect("head");
        assert_eq!(head.map(|h| (h.version, h.deleted)), Some((2, false)));
    }

    /// Rows copied from the audit journal on SQLite go in as bound values, in statements of
    /// fixed sizes: every column reads back as it was, missing ones as NULL, in order, and the
    /// chain verifies. 341 rows take each statement size once (256 + 64 + 16 + 4 + 1).
    #[tokio::test]
    async fn journal_rows_read_back_as_they_were_written() {
        use crate::audit::compact::Columns;
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("a.db").display());
        let mut cache = crate::config::Config::defaults().cache;
        cache.enabled = false;
        let store = crate::store::open(&url, 2, "full", 0, &cache)
            .await
            .expect("store");
        let rows: Vec<Columns> = (0..341i64)
            .map(|i| {
                let some = |s: &str| (i % 2 == 0).then(|| format!("{s}-{i}"));
                Columns {
                    recorded_ms: 1_764_000_000_000 + i,
                    kind: "rest".into(),
                    action: ["R", "C", "U"][(i % 3) as usize].into(),
                    outcome: i % 4,
                    status: (i % 2 == 0).then_some(200 + i),
                    client: some("client"),
                    client_kind: some("kind"),
                    auth: some("bearer"),
                    orgs: some("org"),
                    peer: some("127.0.0.1"),
                    rtype: some("Patient"),
                    entity: some("Patient/p"),
                    patient: some("Patient/p"),
                    query: some("name=Søren\u{1}"),
                    query_len: (i % 2 == 0).then_some(i),
                    request_id: some("req"),
                    failure: (i % 5 == 0).then(|| "a \"quoted\" failure".to_string()),
                    forward: some("fwd"),
                }
            })
            .collect();
        let mut tx = store.begin().await.expect("begin");
        tx.audit_from_journal(&rows, "0000000000001-aaaaaaaaaaaa", 1)
            .await
            .expect("copy");
        tx.commit().await.expect("commit");

        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.expect("pool");
        let back: Vec<Columns> = sqlx::query(&format!(
            "SELECT {} FROM audit_log ORDER BY seq",
            crate::store::audit_log::COLUMNS
        ))
        .fetch_all(&pool)
        .await
        .expect("rows")
        .iter()
        .map(|r| crate::store::audit_log::row(r).expect("row").columns)
        .collect();
        pool.close().await;
        assert_eq!(back, rows);
        let verified = store.audit_verify().await.expect("verify");
        assert_eq!(verified.checked, 341);
        assert_eq!(verified.first_break, None);
    }
}
