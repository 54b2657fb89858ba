//! SQL of the audit trail (`audit_log`, migration 0006): rows in, AuditEvents out.
//!
//! - [`insert`]: one compact row ([`Columns`]), written in the transaction of the write it
//!   describes (`StoreTx::audit`) or by the audit writer's group commit (reads, searches,
//!   refusals, forwarding attempts); on SQLite sealed by the same statement
//!   ([`insert_sealed_sqlite_in_tx`]).
//! - [`page`] / [`count`] (`search.rs`): `/fhir/AuditEvent` searches translated to SQL over the
//!   columns, for the parameters administrators use (`date`, `type`, `subtype`, `action`,
//!   `outcome`, `entity`, `patient`, `altid`, `agent`, `agent-name`, `agent-role`, `address`,
//!   `site`, `_id`, `_lastUpdated`); anything else is refused (400), never silently ignored.
//! - [`seal`]: chains unsealed rows (in `seq` order) to the last sealed one; [`verify`] walks the
//!   chain; [`prune`] deletes a prefix of the chain older than the retention and anchors the rest.
//!
//! A row is the AuditEvent with id `seq`, version 1, `lastUpdated` its `recorded`.

use std::sync::OnceLock;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::search_sql::{Bind, Sql};
use super::sql::{db_err, int_col, query};
use super::{StoreError, StoredResource};
use crate::audit::compact::{chain_hash, ColumnValue, Columns, GENESIS};

mod keys;
mod search;
pub use keys::KeyShape;
pub(crate) use keys::{key, step as index_keys};
pub(crate) use search::{by_id, count, hits, page};

/// The columns read back, in [`Columns`] order, after `seq`.
pub(crate) const COLUMNS: &str = "seq, recorded_ms, kind, action, outcome, status, client, \
    client_kind, auth, orgs, peer, rtype, entity, patient, query, query_len, request_id, failure, \
    forward, chain_pos, hash";

/// Most rows one retention transaction deletes (see [`prune`]).
pub(crate) const PRUNE_BATCH: i64 = if cfg!(test) { 7 } else { 5_000 };

/// Rows sealed per statement.
pub(crate) const SEAL_BATCH: usize = 500;

/// SQLite: the largest `seq` given so far, past both the rows and the AUTOINCREMENT counter
/// ([`next_seqs`], and the id [`insert_sealed_sqlite_in_tx`] gives).
const SQLITE_LAST_SEQ: &str =
    "MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'), 0), \
     COALESCE((SELECT MAX(seq) FROM audit_log), 0))";

/// The last sealed row, after `SELECT` and its columns ([`chain_head`], the head
/// [`insert_sealed_sqlite_in_tx`] reads, and the keys' look at the head).
const LAST_SEALED: &str =
    "FROM audit_log WHERE chain_pos IS NOT NULL ORDER BY chain_pos DESC LIMIT 1";

/// The statement that stores one row unsealed (PostgreSQL: a write's own record, in the write's
/// transaction; the sealer chains it later, see [`seal`]). SQLite seals it as it is inserted:
/// [`insert_sealed_sqlite_in_tx`].
pub(crate) fn insert(c: &Columns) -> Sql {
    insert_many(std::slice::from_ref(c))
}

/// SQLite: the statement that stores one row already sealed, for a transaction on the single
/// writer (a write's own record). It reads the chain's head (the
/// last sealed row, else the retention anchor, else the genesis) and the next id as
/// [`next_seqs`] does, and hashes the row with `sektorbro_chain_hash` (`store::sqlite_chain`),
/// all in the one statement: nothing runs on the writer between the read and the insert, and a
/// transaction rolled back to its savepoint gives its position back to the next. The chain's
/// lock is not taken, so a clinical write never waits on it: every other step that moves the
/// head (the ingester, the sealer, retention) does so on the writer too.
pub(crate) fn insert_sealed_sqlite_in_tx(c: &Columns) -> Sql {
    // Scalar subqueries only, each run once per statement: subqueries in `FROM` made SQLite
    // build a temporary table each (a fresh page zeroed per table per row, 30k instructions a
    // create more than inserting unsealed and sealing later). The row's values are bound twice
    // (stored, and given to the hash) and the id is computed twice, both cheaper than that.
    static HEAD: OnceLock<String> = OnceLock::new();
    let head = HEAD.get_or_init(|| {
        let names: Vec<&str> = TYPED_COLUMNS.iter().map(|(n, _)| *n).collect();
        let seq = format!("(SELECT {SQLITE_LAST_SEQ} + 1)");
        // The last sealed row's column, else the retention anchor's (closed by the caller).
        let last = |col: &str| {
            format!(
                "COALESCE((SELECT {col} {LAST_SEALED}), (SELECT {col} FROM audit_anchor WHERE id = 1)"
            )
        };
        format!(
            "INSERT INTO audit_log (seq, chain_pos, hash, {names}) VALUES ({seq}, {pos}, 0) + 1, \
             {f}({prev}, '{GENESIS}'), {seq}, ",
            names = names.join(", "),
            pos = last("chain_pos"),
            prev = last("hash"),
            f = super::sqlite_chain::NAME,
        )
    });
    let values = column_values(c);
    let mut sql = Sql::default();
    sql.push(head);
    // First as the hash's arguments, then as the stored columns.
    for close in ["), ", ")"] {
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            match v {
                Some(b) => sql.bind(b.clone()),
                None => sql.push("NULL"),
            };
        }
        sql.push(close);
    }
    sql
}

/// Most rows in one `INSERT` (18 binds each at most, well under SQLite's 32,766).
pub(crate) const INSERT_ROWS: usize = 500;

/// One `INSERT` of many unsealed rows (at most [`INSERT_ROWS`]), the audit writer's batch: one
/// statement to parse instead of one per record, which is most of what an audit batch costs.
pub(crate) fn insert_many(rows: &[Columns]) -> Sql {
    let names: Vec<&str> = TYPED_COLUMNS.iter().map(|(n, _)| *n).collect();
    let mut sql = Sql::default();
    sql.push(&format!(
        "INSERT INTO audit_log ({}) VALUES ",
        names.join(", ")
    ));
    for (i, c) in rows.iter().enumerate() {
        sql.push(if i == 0 { "(" } else { ", (" });
        columns_as(&mut sql, c);
        sql.push(")");
    }
    sql
}

/// Every column [`insert_many`] writes ([`columns_as`] binds them in this order), with its type on
/// PostgreSQL.
const TYPED_COLUMNS: [(&str, &str); 18] = [
    ("recorded_ms", "bigint"),
    ("kind", "text"),
    ("action", "text"),
    ("outcome", "smallint"),
    ("status", "smallint"),
    ("client", "text"),
    ("client_kind", "text"),
    ("auth", "text"),
    ("orgs", "text"),
    ("peer", "text"),
    ("rtype", "text"),
    ("entity", "text"),
    ("patient", "text"),
    ("query", "text"),
    ("query_len", "bigint"),
    ("request_id", "text"),
    ("failure", "text"),
    ("forward", "text"),
];

/// The seal columns [`insert_sealed_sqlite`] and [`insert_sealed_postgres`] write beside
/// [`TYPED_COLUMNS`].
const SEAL_COLUMNS: [(&str, &str); 3] =
    [("seq", "bigint"), ("chain_pos", "bigint"), ("hash", "text")];

/// A row as [`insert_sealed_sqlite`] binds it and [`insert_sealed_postgres`] sends it: its id
/// and its place in the hash chain, decided by the inserting transaction, and its columns.
#[derive(serde::Serialize)]
pub(crate) struct SealedRow<'a> {
    pub seq: i64,
    pub chain_pos: i64,
    pub hash: String,
    #[serde(flatten)]
    pub row: &'a Columns,
}

/// The next `n` values of `seq`, in order, for rows inserted with their seal: on SQLite past
/// both the largest `seq` and the AUTOINCREMENT counter (read on the writer, so nothing can take
/// them in between); on PostgreSQL taken from the column's sequence.
pub(crate) async fn next_seqs(
    conn: &mut AnyConnection,
    backend: super::Backend,
    n: usize,
) -> Result<Vec<i64>, StoreError> {
    match backend {
        super::Backend::Sqlite => {
            let r = sqlx::query(&format!("SELECT {SQLITE_LAST_SEQ} AS last"))
                .fetch_one(&mut *conn)
                .await
                .map_err(db_err)?;
            let last = int_col(&r, "last")?;
            Ok((1..=n as i64).map(|i| last + i).collect())
        }
        super::Backend::Postgres => {
            let rows = sqlx::query(
                "SELECT nextval(pg_get_serial_sequence('audit_log', 'seq')) AS s FROM generate_series(1, $1)",
            )
            .bind(n as i64)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_err)?;
            let mut seqs = rows
                .iter()
                .map(|r| int_col(r, "s"))
                .collect::<Result<Vec<i64>, _>>()?;
            seqs.sort_unstable();
            Ok(seqs)
        }
    }
}

/// Rows per `INSERT` of [`insert_sealed_sqlite`], largest first: a batch is cut into these sizes,
/// so SQLite only ever sees five statement texts, each prepared once (sqlx caches them).
const SQLITE_CHUNKS: [usize; 5] = [256, 64, 16, 4, 1];

/// SQLite: insert the sealed rows, in order, on `conn` (the writer, inside its transaction), as
/// `INSERT … VALUES` statements of [`SQLITE_CHUNKS`] rows with every value bound (missing ones
/// as bound NULLs).
///
/// Under a read load the ingester inserts a row per read. Handing SQLite the rows as one JSON
/// array made it parse the array and look up each of 21 fields per row: about a third of the
/// writer thread's time (docs/benchmarks.md). Bound values cost SQLite nothing to read.
///
/// The statement texts depend on the chunk size alone, so each is written once, with anonymous
/// `?` placeholders: writing 21 numbered placeholders per row and rewriting them for SQLite on
/// every batch was a sixth of the instructions an audited read cost
/// (`examples/audit_ingest.rs`). The values are bound borrowed from the rows, in
/// [`TYPED_COLUMNS`] then [`SEAL_COLUMNS`] order: sqlx copies each text once to hand it to
/// SQLite's thread, where cloning them into owned binds first made the ingester allocate every
/// text twice (its largest cost in the runtime's thread under a read load, freed on SQLite's).
pub(crate) async fn insert_sealed_sqlite(
    conn: &mut AnyConnection,
    rows: &[SealedRow<'_>],
) -> Result<(), sqlx::Error> {
    static TEXTS: OnceLock<Vec<String>> = OnceLock::new();
    let texts = TEXTS.get_or_init(|| {
        SQLITE_CHUNKS
            .iter()
            .map(|n| sealed_text_sqlite(*n))
            .collect()
    });
    let mut rest = rows;
    for (size, text) in SQLITE_CHUNKS.into_iter().zip(texts) {
        while rest.len() >= size {
            let (chunk, tail) = rest.split_at(size);
            rest = tail;
            let mut q = sqlx::query(text.as_str());
            for r in chunk {
                for (_, v) in r.row.values() {
                    q = match v {
                        ColumnValue::Int(i) => q.bind(i),
                        ColumnValue::Text(t) => q.bind(t),
                    };
                }
                q = q.bind(r.seq).bind(r.chain_pos).bind(r.hash.as_str());
            }
            q.persistent(true).execute(&mut *conn).await?;
        }
    }
    Ok(())
}

/// `INSERT INTO audit_log (…) VALUES (?, …), …` for `rows` rows of [`TYPED_COLUMNS`] and
/// [`SEAL_COLUMNS`].
fn sealed_text_sqlite(rows: usize) -> String {
    let names: Vec<&str> = TYPED_COLUMNS
        .iter()
        .chain(&SEAL_COLUMNS)
        .map(|(n, _)| *n)
        .collect();
    let one = format!("({})", vec!["?"; names.len()].join(", "));
    format!(
        "INSERT INTO audit_log ({}) VALUES {}",
        names.join(", "),
        vec![one; rows].join(", ")
    )
}

/// PostgreSQL: one `INSERT` of the sealed rows in `array`, a JSON array of [`SealedRow`], in the
/// array's order: one statement text whatever the batch (prepared once) and one bind.
pub(crate) fn insert_sealed_postgres(array: &str) -> Sql {
    let typed: Vec<(&str, &str)> = TYPED_COLUMNS.iter().chain(&SEAL_COLUMNS).copied().collect();
    let names: Vec<&str> = typed.iter().map(|(n, _)| *n).collect();
    let fields: Vec<String> = typed
        .iter()
        .map(|(n, t)| format!("CAST(e.v ->> '{n}' AS {t})"))
        .collect();
    let mut sql = Sql::default();
    sql.push(&format!(
        "INSERT INTO audit_log ({}) SELECT ",
        names.join(", ")
    ))
    .push(&fields.join(", "))
    .push(" FROM jsonb_array_elements(CAST(")
    .text(array)
    .push(" AS jsonb)) WITH ORDINALITY AS e(v, n) ORDER BY e.n");
    sql
}

/// The row's [`TYPED_COLUMNS`] in order, separated by commas, a missing value as `NULL`.
fn columns_as(sql: &mut Sql, c: &Columns) {
    for (i, v) in column_values(c).into_iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        match v {
            Some(b) => sql.bind(b),
            None => sql.push("NULL"),
        };
    }
}

/// The row's values in [`TYPED_COLUMNS`] order, `None` where a column is empty.
fn column_values(c: &Columns) -> [Option<Bind>; TYPED_COLUMNS.len()] {
    c.values().map(|(_, v)| match v {
        ColumnValue::Int(i) => i.map(Bind::Int),
        ColumnValue::Text(t) => t.map(|t| Bind::Text(t.to_string())),
    })
}

/// Where the audit journal's ingester has got to in one segment file (`audit_journal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalMark {
    pub segment: String,
    /// Bytes of the segment copied into `audit_log`.
    pub end: u64,
    /// Every record of the segment is copied (in a synced commit): its file may go.
    pub done: bool,
}

pub(crate) fn journal_marks() -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT segment, end_offset, done FROM audit_journal ORDER BY segment");
    sql
}

pub(crate) fn journal_mark(r: &AnyRow) -> Result<JournalMark, StoreError> {
    let segment: String = r
        .try_get("segment")
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let end = int_col(r, "end_offset")?;
    Ok(JournalMark {
        segment,
        end: u64::try_from(end).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        done: int_col(r, "done")? != 0,
    })
}

/// Move `segment`'s mark to `end` (creating it).
pub(crate) fn journal_advance(segment: &str, end: u64) -> Sql {
    let mut sql = Sql::default();
    sql.push("INSERT INTO audit_journal (segment, end_offset, done) VALUES (")
        .text(segment)
        .push(", ")
        .bind(Bind::Int(i64::try_from(end).unwrap_or(i64::MAX)))
        .push(", 0) ON CONFLICT (segment) DO UPDATE SET end_offset = excluded.end_offset");
    sql
}

pub(crate) fn journal_done(segment: &str) -> Sql {
    let mut sql = Sql::default();
    sql.push("INSERT INTO audit_journal (segment, end_offset, done) VALUES (")
        .text(segment)
        .push(", 0, 1) ON CONFLICT (segment) DO UPDATE SET done = 1");
    sql
}

pub(crate) fn journal_forget(segment: &str) -> Sql {
    let mut sql = Sql::default();
    sql.push("DELETE FROM audit_journal WHERE segment = ")
        .text(segment);
    sql
}

/// One row read with [`COLUMNS`].
pub(crate) struct AuditRow {
    pub seq: i64,
    pub columns: Columns,
    pub chain_pos: Option<i64>,
    pub hash: Option<String>,
}

pub(crate) fn row(r: &AnyRow) -> Result<AuditRow, StoreError> {
    let text = |name: &str| -> Result<Option<String>, StoreError> {
        r.try_get::<Option<String>, _>(name)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    };
    let int = |name: &str| -> Result<Option<i64>, StoreError> {
        // NULL reads as an error through `int_col`; ask for an Option first.
        match r.try_get::<Option<i64>, _>(name) {
            Ok(v) => Ok(v),
            Err(_) => match r.try_get::<Option<i16>, _>(name) {
                Ok(v) => Ok(v.map(i64::from)),
                Err(_) => r
                    .try_get::<Option<i32>, _>(name)
                    .map(|v| v.map(i64::from))
                    .map_err(|e| StoreError::Corrupt(e.to_string())),
            },
        }
    };
    Ok(AuditRow {
        seq: int_col(r, "seq")?,
        columns: Columns {
            recorded_ms: int_col(r, "recorded_ms")?,
            kind: text("kind")?.unwrap_or_default(),
            action: text("action")?.unwrap_or_default(),
            outcome: int_col(r, "outcome")?,
            status: int("status")?,
            client: text("client")?,
            client_kind: text("client_kind")?,
            auth: text("auth")?,
            orgs: text("orgs")?,
            peer: text("peer")?,
            rtype: text("rtype")?,
            entity: text("entity")?,
            patient: text("patient")?,
            query: text("query")?,
            query_len: int("query_len")?,
            request_id: text("request_id")?,
            failure: text("failure")?,
            forward: text("forward")?,
        },
        chain_pos: int("chain_pos")?,
        hash: text("hash")?,
    })
}

/// The row as an AuditEvent resource (`id` the row's `seq`).
pub(crate) fn render(row: &AuditRow) -> serde_json::Value {
    let mut ev = crate::audit::to_audit_event(&row.columns.record(), &crate::audit::observer());
    ev["id"] = serde_json::json!(row.seq.to_string());
    ev["meta"] = serde_json::json!({
        "versionId": "1",
        "lastUpdated": fhir_core::fhir::instant(row.columns.recorded_ms),
    });
    ev
}

pub(crate) fn stored(row: &AuditRow) -> StoredResource {
    StoredResource {
        rtype: "AuditEvent".into(),
        id: row.seq.to_string(),
        version: 1,
        last_updated_ms: row.columns.recorded_ms,
        deleted: false,
        content: Some(render(row).to_string()),
        method: "POST".into(),
        owner: None,
        citizen: None,
    }
}

/// The first column of the first row of `sql`, an integer: `None` when there is no row, or it
/// is NULL.
pub(super) async fn first_int(
    conn: &mut AnyConnection,
    sql: &Sql,
) -> Result<Option<i64>, StoreError> {
    let row = query(sql)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    match row {
        Some(r) => r.try_get::<Option<i64>, _>(0).map_err(db_err),
        None => Ok(None),
    }
}

/// The last sealed position and hash (the anchor when every sealed row was pruned, the
/// genesis when there is neither).
pub(crate) async fn chain_head(conn: &mut AnyConnection) -> Result<(i64, String), StoreError> {
    let last = sqlx::query(&format!("SELECT chain_pos, hash {LAST_SEALED}"))
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    let row = match last {
        Some(r) => Some(r),
        None => sqlx::query("SELECT chain_pos, hash FROM audit_anchor WHERE id = 1")
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?,
    };
    match row {
        Some(r) => Ok((
            int_col(&r, "chain_pos")?,
            r.try_get("hash")
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        )),
        None => Ok((0, GENESIS.to_string())),
    }
}

/// The rows `select` reads, each a JSON array of `fields` (columns `select` names), as the text
/// of one JSON array in one result row (`json_group_array` on SQLite, `json_agg` on
/// PostgreSQL), in no particular order; `None` when there are none. The sealer and the search
/// keys' steps read hundreds or thousands of rows at a time; read a row at a time through sqlx,
/// each row crossed from SQLite's thread to the runtime's and woke it, which cost more than
/// SQLite's work (docs/benchmarks.md). Arrays rather than objects: no field name is written
/// for every row and looked up again to parse it.
pub(crate) async fn json_rows(
    conn: &mut AnyConnection,
    select: Sql,
    fields: &[&str],
) -> Result<Option<String>, StoreError> {
    let postgres = conn.backend_name() == "PostgreSQL";
    let fields = fields.join(", ");
    let aggregate = if postgres {
        format!("json_agg(json_build_array({fields}))")
    } else {
        format!("json_group_array(json_array({fields}))")
    };
    aggregate_text(conn, select, &aggregate).await
}

/// `json_object('f', f, …)` (`json_build_object` on PostgreSQL) of `fields`.
fn json_object_sql(postgres: bool, fields: &[&str]) -> String {
    let pairs: Vec<String> = fields.iter().map(|f| format!("'{f}', {f}")).collect();
    let object = if postgres {
        "json_build_object"
    } else {
        "json_object"
    };
    format!("{object}({})", pairs.join(", "))
}

/// The one value of `aggregate` (an aggregate over the columns of `select`, as text) over the
/// rows of `select`; `None` when there are none.
async fn aggregate_text(
    conn: &mut AnyConnection,
    select: Sql,
    aggregate: &str,
) -> Result<Option<String>, StoreError> {
    // The rows' statement inside, its placeholders as they are (nothing is bound before it).
    let mut sql = Sql::from_text(&format!(
        "SELECT CAST({aggregate} AS TEXT) AS rows FROM ({}) t",
        select.text
    ));
    sql.binds = select.binds;
    let row = query(&sql).fetch_one(&mut *conn).await.map_err(db_err)?;
    row.try_get("rows").map_err(db_err)
}

/// Chain up to [`SEAL_BATCH`] unsealed rows, in `seq` order, after the last sealed one: the
/// statement that records it (`None`: nothing to seal) and how many rows it seals. Runs inside a
/// write transaction, which on PostgreSQL first takes the chain's advisory lock.
///
/// The rows come as one text in one result row, as [`json_rows`] reads them, but each row a
/// JSON value `[seq, {columns}]` of its own, in `seq` order (an ordered aggregate), hashed as
/// it is parsed: no list of up to 500 rows is built, and no field is buffered to find `seq`.
/// Under a create load the list's growth was the runtime's largest allocation, on fresh pages.
pub(crate) async fn seal(conn: &mut AnyConnection) -> Result<Option<(Sql, usize)>, StoreError> {
    let (mut pos, mut prev) = chain_head(conn).await?;
    let postgres = conn.backend_name() == "PostgreSQL";
    let fields: Vec<&str> = COLUMNS
        .split(", ")
        .filter(|c| !matches!(*c, "seq" | "chain_pos" | "hash"))
        .collect();
    let object = json_object_sql(postgres, &fields);
    let aggregate = if postgres {
        format!("string_agg(json_build_array(seq, {object})::text, ' ' ORDER BY seq)")
    } else {
        format!("group_concat(json_array(seq, {object}), ' ' ORDER BY seq)")
    };
    let select = Sql::from_text(&format!(
        "SELECT {COLUMNS} FROM audit_log WHERE chain_pos IS NULL ORDER BY seq LIMIT {SEAL_BATCH}"
    ));
    let Some(text) = aggregate_text(conn, select, &aggregate).await? else {
        return Ok(None);
    };
    // The new positions and hashes as one JSON array of `[seq, chain_pos, hash]`, bound to one
    // statement whose text never changes, where a `VALUES` list of 1,500 binds was parsed and
    // planned anew every round. PostgreSQL prepares it once; on SQLite it reaches the writer as
    // a queued transaction's text (the rows were read on a reader), which the committer keeps
    // prepared too (`group_commit::run_each`).
    let mut sealed = Vec::with_capacity(SEAL_BATCH * 96);
    sealed.push(b'[');
    let mut n = 0;
    for row in serde_json::Deserializer::from_str(&text).into_iter::<(i64, Columns)>() {
        let (seq, columns) =
            row.map_err(|e| StoreError::Corrupt(format!("audit rows read as JSON: {e}")))?;
        pos += 1;
        prev = chain_hash(&prev, seq, &columns);
        if n > 0 {
            sealed.push(b',');
        }
        n += 1;
        serde_json::to_writer(&mut sealed, &(seq, pos, &prev))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    }
    sealed.push(b']');
    if n == 0 {
        return Ok(None);
    }
    let sealed = String::from_utf8(sealed).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut sql = Sql::default();
    if postgres {
        sql.push(
            "UPDATE audit_log SET chain_pos = (v.e ->> 1)::bigint, hash = v.e ->> 2 \
             FROM json_array_elements(CAST(",
        )
        .text(&sealed)
        .push(" AS json)) AS v(e) WHERE audit_log.seq = (v.e ->> 0)::bigint");
    } else {
        sql.push(
            "UPDATE audit_log SET chain_pos = v.value ->> 1, hash = v.value ->> 2 FROM json_each(",
        )
        .text(&sealed)
        .push(") v WHERE audit_log.seq = v.value ->> 0");
    }
    Ok(Some((sql, n)))
}

/// Whether any row waits to be sealed.
pub(crate) async fn any_unsealed(conn: &mut AnyConnection) -> Result<bool, StoreError> {
    let row = sqlx::query("SELECT 1 AS one FROM audit_log WHERE chain_pos IS NULL LIMIT 1")
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(row.is_some())
}

/// What `sektorbro audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Sealed rows checked.
    pub checked: u64,
    /// Rows not yet sealed (written in the last moments, or the gateway is not running).
    pub unsealed: u64,
    /// Where the chain starts: 0, or the position retention pruned up to.
    pub anchor: i64,
    /// The last position and hash checked: note them elsewhere (a log, a ticket) to detect a
    /// later truncation of the chain's end.
    pub head: (i64, String),
    /// The first break, if any.
    pub first_break: Option<ChainBreak>,
}

/// The first row where the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// The row's id (`AuditEvent/{seq}`), or the row expected at a missing position.
    pub seq: Option<i64>,
    pub chain_pos: i64,
    pub reason: String,
}

/// Walk the chain from its anchor, `page` rows at a time.
pub(crate) async fn verify(pool: &sqlx::AnyPool, page: usize) -> Result<Verification, StoreError> {
    let anchor = sqlx::query("SELECT chain_pos, hash FROM audit_anchor WHERE id = 1")
        .fetch_optional(pool)
        .await
        .map_err(db_err)?;
    let (start, mut prev) = match anchor {
        Some(r) => (
            int_col(&r, "chain_pos")?,
            r.try_get::<String, _>("hash")
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        ),
        None => (0, GENESIS.to_string()),
    };
    let unsealed: i64 = sqlx::query("SELECT COUNT(*) FROM audit_log WHERE chain_pos IS NULL")
        .fetch_one(pool)
        .await
        .and_then(|r| r.try_get::<i64, _>(0))
        .map_err(db_err)?;
    let mut out = Verification {
        checked: 0,
        unsealed: unsealed as u64,
        anchor: start,
        head: (start, prev.clone()),
        first_break: None,
    };
    let mut pos = start;
    loop {
        let mut sql = Sql::default();
        sql.push(&format!(
            "SELECT {COLUMNS} FROM audit_log WHERE chain_pos IS NOT NULL AND chain_pos > "
        ))
        .bind(Bind::Int(pos))
        .push(&format!(" ORDER BY chain_pos LIMIT {page}"));
        let rows = query(&sql).fetch_all(pool).await.map_err(db_err)?;
        if rows.is_empty() {
            return Ok(out);
        }
        for r in &rows {
            let r = row(r)?;
            let at = r.chain_pos.unwrap_or_default();
            let broken = |reason: String| ChainBreak {
                seq: Some(r.seq),
                chain_pos: at,
                reason,
            };
            if at != pos + 1 {
                out.first_break = Some(ChainBreak {
                    seq: None,
                    chain_pos: pos + 1,
                    reason: format!(
                        "records {} to {} of the chain are missing (the next one is AuditEvent/{} at {at})",
                        pos + 1,
                        at - 1,
                        r.seq
                    ),
                });
                return Ok(out);
            }
            let want = chain_hash(&prev, r.seq, &r.columns);
            if r.hash.as_deref() != Some(want.as_str()) {
                out.first_break = Some(broken(format!(
                    "AuditEvent/{} does not match its hash: it was changed after it was sealed, \
                     or a record before it was",
                    r.seq
                )));
                return Ok(out);
            }
            out.checked += 1;
            pos = at;
            prev = want;
            out.head = (pos, prev.clone());
        }
    }
}

/// Delete the chain's prefix recorded before `before_ms` (sealed rows only) and anchor the rest
/// at the last deleted row. Statements for a write transaction: `None` when nothing is old enough.
pub(crate) async fn prune(
    conn: &mut AnyConnection,
    before_ms: i64,
    now_ms: i64,
) -> Result<Option<(Vec<Sql>, u64)>, StoreError> {
    // The last position of the prefix: just before the first sealed row that is young enough,
    // or the last sealed row when none is.
    let mut sql = Sql::default();
    sql.push(
        "SELECT MIN(chain_pos) FROM audit_log WHERE chain_pos IS NOT NULL AND recorded_ms >= ",
    )
    .bind(Bind::Int(before_ms));
    let first_kept = first_int(conn, &sql).await?;
    let (head, _) = chain_head(conn).await?;
    let upto = match first_kept {
        Some(p) => p - 1,
        None => head,
    };
    // At most PRUNE_BATCH rows a transaction: the rows' search keys are read and deleted with
    // them, and a first prune of a long trail would otherwise hold all of it in memory and the
    // writer for minutes. `prune` in `audit::writer` runs batches until nothing is left.
    let first = first_int(
        conn,
        &Sql::from_text("SELECT MIN(chain_pos) FROM audit_log WHERE chain_pos IS NOT NULL"),
    )
    .await?;
    let upto = match first {
        Some(first) => upto.min(first + PRUNE_BATCH - 1),
        None => upto,
    };
    let mut sql = Sql::default();
    sql.push("SELECT chain_pos, hash FROM audit_log WHERE chain_pos = ")
        .bind(Bind::Int(upto));
    let Some(last) = query(&sql)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?
    else {
        return Ok(None);
    };
    let hash: String = last
        .try_get("hash")
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut count = Sql::default();
    count
        .push("SELECT COUNT(*) FROM audit_log WHERE chain_pos IS NOT NULL AND chain_pos <= ")
        .bind(Bind::Int(upto));
    let n: i64 = query(&count)
        .fetch_one(&mut *conn)
        .await
        .and_then(|r| r.try_get::<i64, _>(0))
        .map_err(db_err)?;
    let mut statements = keys::forget(conn, upto).await?;
    let mut out = Sql::default();
    out.push("DELETE FROM audit_log WHERE chain_pos IS NOT NULL AND chain_pos <= ")
        .bind(Bind::Int(upto));
    let mut anchor = Sql::default();
    anchor
        .push("INSERT INTO audit_anchor (id, chain_pos, hash, pruned_ms) VALUES (1, ")
        .bind(Bind::Int(upto))
        .push(", ")
        .text(&hash)
        .push(", ")
        .bind(Bind::Int(now_ms))
        .push(
            ") ON CONFLICT (id) DO UPDATE SET chain_pos = excluded.chain_pos, \
             hash = excluded.hash, pruned_ms = excluded.pruned_ms",
        );
    statements.extend([out, anchor]);
    Ok(Some((statements, n as u64)))
}

/// Rows after `after_seq` recorded at or after `since_ms`, in `seq` order (for export).
pub(crate) fn export_page(after_seq: i64, since_ms: i64, limit: usize) -> Sql {
    let mut sql = Sql::default();
    sql.push(&format!("SELECT {COLUMNS} FROM audit_log WHERE seq > "))
        .bind(Bind::Int(after_seq))
        .push(" AND recorded_ms >= ")
        .bind(Bind::Int(since_ms))
        .push(&format!(" ORDER BY seq LIMIT {limit}"));
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every column different and set, so that a value bound to the wrong column shows.
    fn full_row(i: i64) -> Columns {
        let t = |name: &str| Some(format!("{name}-{i}"));
        Columns {
            recorded_ms: 1_700_000_000_000 + i,
            kind: format!("kind-{i}"),
            action: format!("action-{i}"),
            outcome: 4,
            status: Some(200 + i),
            client: t("client"),
            client_kind: t("client_kind"),
            auth: t("auth"),
            orgs: t("orgs"),
            peer: t("peer"),
            rtype: t("rtype"),
            entity: t("entity"),
            patient: t("patient"),
            query: t("query"),
            query_len: Some(1000 + i),
            request_id: t("request_id"),
            failure: t("failure"),
            forward: t("forward"),
        }
    }

    /// The columns the statements name are the ones a row's values come in, in that order.
    #[test]
    fn typed_columns_are_the_rows_values_in_order() {
        let names: Vec<&str> = Columns::default().values().map(|(n, _)| n).to_vec();
        let typed: Vec<&str> = TYPED_COLUMNS.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, typed);
    }

    /// The cached `?` texts and the binds built beside them agree: each row comes back from
    /// SQLite with every column where it was, for batches cut into every chunk size.
    #[tokio::test]
    async fn sealed_rows_come_back_from_sqlite_column_for_column() {
        let pool = super::super::migrate::memory_sqlite().await;
        // 256 + 64 + 16 + 4 + 1 + 1: every chunk size once, the smallest twice.
        let n = 342;
        let rows: Vec<Columns> = (0..n).map(full_row).collect();
        let sealed: Vec<SealedRow> = rows
            .iter()
            .enumerate()
            .map(|(i, row)| SealedRow {
                seq: i as i64 + 1,
                chain_pos: i as i64 + 1,
                hash: format!("hash-{i}"),
                row,
            })
            .collect();
        let mut conn = pool.acquire().await.expect("connection");
        insert_sealed_sqlite(&mut conn, &sealed)
            .await
            .expect("insert");
        drop(conn);
        for n in SQLITE_CHUNKS {
            let text = sealed_text_sqlite(n);
            let columns = TYPED_COLUMNS.len() + SEAL_COLUMNS.len();
            assert_eq!(text.matches('?').count(), n * columns, "{text:.80}");
        }
        let back = sqlx::query(&format!("SELECT {COLUMNS} FROM audit_log ORDER BY seq"))
            .fetch_all(&pool)
            .await
            .expect("select");
        assert_eq!(back.len(), n as usize);
        for (i, r) in back.iter().enumerate() {
            let got = row(r).expect("row");
            assert_eq!(got.seq, i as i64 + 1);
            assert_eq!(got.columns, rows[i], "row {i}");
        }
        let hashes: Vec<String> = sqlx::query("SELECT hash FROM audit_log ORDER BY seq")
            .fetch_all(&pool)
            .await
            .expect("hashes")
            .iter()
            .map(|r| r.try_get::<String, _>(0).expect("hash"))
            .collect();
        assert_eq!(hashes[0], "hash-0");
        assert_eq!(hashes[n as usize - 1], format!("hash-{}", n - 1));
    }
}
