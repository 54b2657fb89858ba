//! The keys that `AuditEvent?patient=` and `?entity=` find rows by, kept in sorted runs by level
//! (`audit_keys`, migration 0013) instead of B-tree indexes on `audit_log`'s columns.
//!
//! Why: an audited read of a random resource put its entity and its citizen at random places in
//! two indexes as large as the trail, about a page written per key (most of the read's cost under
//! a realistic workload, docs/benchmarks.md). Here a row's keys are written with those of
//! thousands of others, in key order, into a level that is a contiguous range of one primary key:
//! each page a step touches is written once for many keys.
//!
//! - Rows enter in chain order: [`step`] copies the keys of the next [`KeyShape::tail_rows`]
//!   sealed rows past the mark (`audit_key_mark`) into level 1 and moves the mark, in one
//!   transaction. Rows past the mark, and rows not yet sealed, are the *tail*: the search reads
//!   them in `audit_log` itself ([`rows_about`]).
//! - A level that holds more than its size (`level_one × fanout^(level-1)` keys) is moved into
//!   the next one, [`KeyShape::chunk`] keys per transaction in key order, until it is empty. A key
//!   is in exactly one level at every commit, so a search sees each row once.
//! - Retention deletes the keys of the rows it deletes ([`forget`]).
//!
//! Every step runs under the audit chain's lock, so one process (and one PostgreSQL instance) at
//! a time moves keys, and the rows up to the chain's head are all committed.

use sqlx::AnyConnection;

use super::super::search_sql::{Bind, Sql};
use super::super::sql::{db_err, int_col, query};
use super::super::StoreError;
use super::first_int;

/// The deepest level. With the default shape, level 10 starts past 8.8 × 10¹² keys.
pub(crate) const MAX_LEVEL: i64 = 10;

/// `level IN (…)` of every level, for a search's key lookup.
const ALL_LEVELS: &str = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10";

/// How the keys are laid out; [`KeyShape::default`] in the gateway, smaller in tests.
#[derive(Debug, Clone)]
pub struct KeyShape {
    /// Sealed rows past the mark that make a step into level 1 (the most a search reads in the
    /// tail, besides rows not yet sealed).
    pub tail_rows: usize,
    /// Keys level 1 holds before it is moved into level 2.
    pub level_one: i64,
    /// How much larger each level is than the one above it.
    pub fanout: i64,
    /// Keys moved from a level to the next per transaction (bounds how long one holds the
    /// writer).
    pub chunk: i64,
}

impl Default for KeyShape {
    fn default() -> Self {
        KeyShape {
            tail_rows: 4096,
            level_one: 65_536,
            fanout: 8,
            chunk: 16_384,
        }
    }
}

impl KeyShape {
    fn size(&self, level: i64) -> i64 {
        let mut size = self.level_one.max(1);
        for _ in 1..level {
            size = size.saturating_mul(self.fanout.max(2));
        }
        size
    }
}

/// The refs a row is found by: its entity without a version, and its patient when that is a
/// reference (`Patient/id`; a `system|value` identifier is not searched by `patient=`).
pub(crate) fn refs<'a>(entity: Option<&'a str>, patient: Option<&'a str>) -> Vec<&'a str> {
    let mut out = Vec::with_capacity(2);
    if let Some(e) = entity.map(unversioned).filter(|e| e.contains('/')) {
        out.push(e);
    }
    if let Some(p) = patient.filter(|p| p.contains('/') && !p.contains('|')) {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// The key of a ref in `audit_keys`: 64-bit FNV-1a, stable across builds and platforms. A key
/// is 8 bytes instead of the ref's 40–50, and the search checks the row's own columns, so a
/// collision only means one more row looked at.
pub(crate) fn key(r: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in r.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

fn unversioned(r: &str) -> &str {
    r.find("/_history/").map_or(r, |i| &r[..i])
}

/// The rows whose entity or patient is `r` (`Type/id`), in any version: `seq IN (…) AND …`.
/// `columns` writes the condition on a row's columns with the given alias prefix (`""` or
/// `"t."`): for the rows not in the keys yet, and as the check that the key's row is one.
pub(crate) fn rows_about(r: &str, sql: &mut Sql, columns: impl Fn(&mut Sql, &str)) {
    sql.push(&format!(
        "seq IN (SELECT seq FROM audit_keys WHERE level IN ({ALL_LEVELS}) AND ref = "
    ))
    .bind(Bind::Int(key(r)));
    let tail = |sql: &mut Sql| columns(sql, "t.");
    sql.push(
        " UNION ALL SELECT t.seq FROM audit_log t WHERE t.chain_pos > \
         (SELECT upto FROM audit_key_mark WHERE id = 1) AND (",
    );
    tail(sql);
    sql.push(") UNION ALL SELECT t.seq FROM audit_log t WHERE t.chain_pos IS NULL AND (");
    tail(sql);
    sql.push(")) AND (");
    columns(sql, "");
    sql.push(")");
}

/// A level's row in `audit_key_levels`.
struct Level {
    level: i64,
    entries: i64,
    draining: bool,
}

async fn levels(conn: &mut AnyConnection) -> Result<Vec<Level>, StoreError> {
    let rows = sqlx::query("SELECT level, entries, draining FROM audit_key_levels ORDER BY level")
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok(Level {
                level: int_col(r, "level")?,
                entries: int_col(r, "entries")?,
                draining: int_col(r, "draining")? != 0,
            })
        })
        .collect()
}

fn set_level(level: i64, entries: i64, draining: bool) -> Sql {
    let mut sql = Sql::default();
    sql.push("INSERT INTO audit_key_levels (level, entries, draining) VALUES (")
        .bind(Bind::Int(level))
        .push(", ")
        .bind(Bind::Int(entries.max(0)))
        .push(", ")
        .bind(Bind::Int(i64::from(draining)))
        .push(
            ") ON CONFLICT (level) DO UPDATE SET entries = excluded.entries, \
             draining = excluded.draining",
        );
    sql
}

/// A text of a row read as JSON: borrowed from the JSON where it holds no escapes, which is
/// every entity and citizen the gateway writes; an escaped one (an odd id in a refused read's
/// path) is unescaped into its own string.
struct Text<'a>(std::borrow::Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Text<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(std::borrow::Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// The keys of the rows `rows` selects (`seq, chain_pos, entity, patient`), as `(key, seq)`, and
/// the last of their chain positions; the rows read in one result row ([`super::json_rows`]),
/// their texts borrowed from it.
async fn keys_of(
    conn: &mut AnyConnection,
    rows: Sql,
) -> Result<(Vec<(i64, i64)>, Option<i64>), StoreError> {
    let fields = ["seq", "chain_pos", "entity", "patient"];
    let Some(text) = super::json_rows(conn, rows, &fields).await? else {
        return Ok((Vec::new(), None));
    };
    type Keyed<'a> = (i64, i64, Option<Text<'a>>, Option<Text<'a>>);
    let rows: Vec<Keyed> = serde_json::from_str(&text)
        .map_err(|e| StoreError::Corrupt(format!("audit rows read as JSON: {e}")))?;
    let mut keys = Vec::with_capacity(rows.len() * 2);
    let mut last = None;
    for (seq, chain_pos, entity, patient) in &rows {
        last = last.max(Some(*chain_pos));
        let entity = entity.as_ref().map(|t| &*t.0);
        let patient = patient.as_ref().map(|t| &*t.0);
        keys.extend(refs(entity, patient).into_iter().map(|k| (key(k), *seq)));
    }
    Ok((keys, last))
}

/// `INSERT` of `keys` (`(key, seq)`, in key order) into level 1: one JSON array bound to a
/// statement whose text never changes (`json_each`, `json_array_elements` on PostgreSQL).
///
/// The step's statements reach SQLite in its transaction's text, parsed with every group
/// commit: a `VALUES` list of 500 keys in 1,000 binds cost SQLite's parser about 3,000
/// instructions a key, and the runtime a bind and some text for each. On SQLite each key is a
/// JSON string `"key seq"`, split with `instr` and `substr`: a JSON array `[key, seq]` per key
/// came back from `json_each` as text that `->>` parsed again, twice, about 6,000 instructions
/// a key. PostgreSQL reads `[key, seq]` arrays.
fn insert_level_one(keys: &[(i64, i64)], postgres: bool) -> Sql {
    use std::fmt::Write as _;
    let mut array = String::with_capacity(keys.len() * 32 + 2);
    array.push('[');
    for (i, (k, seq)) in keys.iter().enumerate() {
        if i > 0 {
            array.push(',');
        }
        // Writing to a String cannot fail.
        let _ = if postgres {
            write!(array, "[{k},{seq}]")
        } else {
            write!(array, "\"{k} {seq}\"")
        };
    }
    array.push(']');
    let mut sql = Sql::default();
    if postgres {
        sql.push(
            "INSERT INTO audit_keys (level, ref, seq) \
             SELECT 1, (v.e ->> 0)::bigint, (v.e ->> 1)::bigint FROM json_array_elements(CAST(",
        )
        .text(&array)
        .push(" AS json)) AS v(e)");
    } else {
        sql.push(
            "INSERT INTO audit_keys (level, ref, seq) SELECT 1, \
             CAST(substr(value, 1, instr(value, ' ') - 1) AS INTEGER), \
             CAST(substr(value, instr(value, ' ') + 1) AS INTEGER) FROM json_each(",
        )
        .text(&array)
        .push(")");
    }
    sql
}

/// One bounded step, read on `conn` under the chain's lock: the statements of a write
/// transaction and how many keys they write (`None`: nothing to do).
pub(crate) async fn step(
    conn: &mut AnyConnection,
    shape: &KeyShape,
) -> Result<Option<(Vec<Sql>, u64)>, StoreError> {
    let levels = levels(conn).await?;
    let entries = |l: i64| {
        levels
            .iter()
            .find(|x| x.level == l)
            .map_or(0, |x| x.entries)
    };
    // The tail first: its rows are what a search reads without keys.
    let mark = Sql::from_text("SELECT upto FROM audit_key_mark WHERE id = 1");
    let upto = first_int(conn, &mark).await?.unwrap_or(0);
    // Chain positions have no gaps past the mark (retention deletes a prefix of the chain), so
    // the head tells how many sealed rows the tail holds without reading them: the sealer asks
    // every round, and reading a tail that is not full yet each time cost more than the keys.
    let head = Sql::from_text(&format!("SELECT chain_pos {}", super::LAST_SEALED));
    let head = first_int(conn, &head).await?.unwrap_or(0);
    let tail_rows = shape.tail_rows.max(1);
    if head - upto >= tail_rows as i64 {
        let mut tail = Sql::default();
        tail.push("SELECT seq, chain_pos, entity, patient FROM audit_log WHERE chain_pos > ")
            .bind(Bind::Int(upto))
            .push(&format!(" ORDER BY chain_pos LIMIT {tail_rows}"));
        let (mut keys, last) = keys_of(conn, tail).await?;
        let last = last.unwrap_or(upto);
        keys.sort_unstable();
        keys.dedup();
        let n = keys.len();
        let mut out = Vec::new();
        if n > 0 {
            out.push(insert_level_one(&keys, conn.backend_name() == "PostgreSQL"));
        }
        let mut mark = Sql::default();
        mark.push("INSERT INTO audit_key_mark (id, upto) VALUES (1, ")
            .bind(Bind::Int(last))
            .push(") ON CONFLICT (id) DO UPDATE SET upto = excluded.upto");
        out.push(mark);
        let one = levels.iter().find(|l| l.level == 1);
        out.push(set_level(
            1,
            entries(1) + n as i64,
            one.is_some_and(|l| l.draining),
        ));
        return Ok(Some((out, n as u64)));
    }
    // Then the shallowest level that is being moved, or has outgrown its size.
    let Some(from) = levels.iter().find(|l| {
        l.level < MAX_LEVEL && (l.draining || l.entries > shape.size(l.level)) && l.entries > 0
    }) else {
        return Ok(None);
    };
    let k = from.level;
    let mut boundary = Sql::default();
    boundary
        .push("SELECT ref, seq FROM audit_keys WHERE level = ")
        .bind(Bind::Int(k))
        .push(&format!(
            " ORDER BY ref, seq LIMIT 1 OFFSET {}",
            shape.chunk.max(1) - 1
        ));
    let boundary = query(&boundary)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    // `level = k` and, for a chunk, up to its last key.
    let range = |sql: &mut Sql, boundary: &Option<(i64, i64)>| {
        sql.push(" WHERE level = ").bind(Bind::Int(k));
        if let Some((r, s)) = boundary {
            sql.push(" AND ref <= ")
                .bind(Bind::Int(*r))
                .push(" AND (ref < ")
                .bind(Bind::Int(*r))
                .push(" OR seq <= ")
                .bind(Bind::Int(*s))
                .push(")");
        }
    };
    let (boundary, moved, rest) = match boundary {
        Some(r) => {
            let at = (int_col(&r, "ref")?, int_col(&r, "seq")?);
            (Some(at), shape.chunk.max(1), true)
        }
        None => {
            let mut count = Sql::default();
            count.push("SELECT COUNT(*) AS n FROM audit_keys");
            range(&mut count, &None);
            let n = query(&count)
                .fetch_one(&mut *conn)
                .await
                .map_err(db_err)
                .and_then(|r| int_col(&r, "n"))?;
            (None, n, false)
        }
    };
    let mut copy = Sql::default();
    // The level as a literal: PostgreSQL cannot tell a select list's parameter's type.
    copy.push(&format!(
        "INSERT INTO audit_keys (level, ref, seq) SELECT {}, ref, seq FROM audit_keys",
        k + 1
    ));
    range(&mut copy, &boundary);
    let mut delete = Sql::default();
    delete.push("DELETE FROM audit_keys");
    range(&mut delete, &boundary);
    let out = vec![
        copy,
        delete,
        set_level(k, if rest { from.entries - moved } else { 0 }, rest),
        set_level(
            k + 1,
            entries(k + 1) + moved,
            levels.iter().any(|l| l.level == k + 1 && l.draining),
        ),
    ];
    Ok(Some((out, moved as u64)))
}

/// Statements deleting the keys of the rows retention deletes (`chain_pos` up to `upto`), read on
/// `conn` before those rows go. Rows past the mark have no keys yet.
pub(crate) async fn forget(conn: &mut AnyConnection, upto: i64) -> Result<Vec<Sql>, StoreError> {
    let mut sql = Sql::default();
    sql.push(
        "SELECT seq, chain_pos, entity, patient FROM audit_log WHERE chain_pos IS NOT NULL \
         AND chain_pos <= (SELECT upto FROM audit_key_mark WHERE id = 1) AND chain_pos <= ",
    )
    .bind(Bind::Int(upto));
    let (keys, _) = keys_of(conn, sql).await?;
    Ok(keys
        .into_iter()
        .map(|(k, seq)| {
            let mut d = Sql::default();
            d.push(&format!(
                "DELETE FROM audit_keys WHERE level IN ({ALL_LEVELS}) AND ref = "
            ))
            .bind(Bind::Int(k))
            .push(" AND seq = ")
            .bind(Bind::Int(seq));
            d
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_found_by_its_entity_without_version_and_by_its_citizen() {
        assert_eq!(
            refs(Some("CarePlan/c1/_history/3"), Some("Patient/p1")),
            vec!["CarePlan/c1", "Patient/p1"]
        );
        assert_eq!(
            refs(Some("Patient/p1"), Some("Patient/p1")),
            vec!["Patient/p1"]
        );
        assert_eq!(
            refs(None, Some("urn:oid:1.2.208.176.1.2|0101010101")),
            Vec::<&str>::new()
        );
        assert_eq!(
            refs(Some("metadata"), Some("http://x/y|1")),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn keys_are_stable_fnv_1a() {
        // The published FNV-1a 64 test vectors: keys written by one build are found by the next.
        assert_eq!(key("") as u64, 0xcbf2_9ce4_8422_2325);
        assert_eq!(key("a") as u64, 0xaf63_dc4c_8601_ec8c);
        assert_eq!(key("foobar") as u64, 0x8594_4171_f739_67e8);
    }

    #[test]
    fn each_level_is_fanout_times_the_one_above() {
        let s = KeyShape::default();
        assert_eq!(s.size(1), 65_536);
        assert_eq!(s.size(2), 524_288);
        assert_eq!(s.size(MAX_LEVEL), 65_536 * 8_i64.pow(9));
    }
}

/// The keys against the rows they come from, through the search that uses them, on SQLite and
/// PostgreSQL: every level moved into the next, steps left half done, rows past the mark, and
/// retention.
#[cfg(test)]
mod store_tests {
    use std::collections::BTreeSet;

    use sqlx::Row;

    use super::KeyShape;
    use crate::audit::compact::Columns;
    use crate::store::sql::SqlStore;
    use crate::store::{Storage, Visibility};

    async fn open(url: &str) -> SqlStore {
        let mut cache = crate::config::Config::defaults().cache;
        cache.enabled = false;
        SqlStore::open(url, 2, crate::store::SqliteTuning::from("full"), 0, &cache)
            .await
            .expect("open")
    }

    /// Row `i`: about one of five citizens, through one of seven CarePlans (some versioned), the
    /// citizen's own Patient resource, or nothing (a search); some name the citizen by CPR.
    fn row(i: i64) -> Columns {
        let p = format!("Patient/p{}", i % 5);
        let (entity, patient) = match i % 6 {
            0 => (Some(p.clone()), Some(p)),
            1 => (
                Some(format!("CarePlan/c{}/_history/{}", i % 7, i % 3 + 1)),
                Some(p),
            ),
            2 => (Some(format!("CarePlan/c{}", i % 7)), Some(p)),
            3 => (Some(format!("CarePlan/c{}", i % 7)), None),
            4 => (None, Some("urn:oid:1.2.208.176.1.2|0101010101".to_string())),
            _ => (None, Some(p)),
        };
        Columns {
            recorded_ms: 1_700_000_000_000 + i * 1000,
            kind: "read".into(),
            action: "R".into(),
            outcome: 0,
            status: Some(200),
            client: Some("c".into()),
            client_kind: None,
            auth: None,
            orgs: None,
            peer: None,
            rtype: None,
            entity,
            patient,
            query: None,
            query_len: None,
            request_id: None,
            failure: None,
            forward: None,
        }
    }

    fn about(c: &Columns, r: &str) -> bool {
        [&c.entity, &c.patient]
            .into_iter()
            .flatten()
            .any(|v| v == r || v.starts_with(&format!("{r}/_history/")))
    }

    async fn found(store: &SqlStore, param: &str, r: &str) -> BTreeSet<i64> {
        let q =
            crate::store::search_sql::tests::query("AuditEvent", &[(param, r), ("_count", "1000")]);
        let hits = store
            .search(&q, 1000, &Visibility::All)
            .await
            .expect("search");
        hits.iter().map(|h| h.seq).collect()
    }

    /// Every search agrees with the rows it should find, and each key is in one level only.
    async fn agree(store: &SqlStore, rows: &[(i64, Columns)]) {
        let mut queries: Vec<(&str, String)> = (0..5)
            .map(|p| ("patient", format!("Patient/p{p}")))
            .collect();
        queries.extend((0..7).map(|c| ("entity", format!("CarePlan/c{c}"))));
        for (param, r) in &queries {
            let want: BTreeSet<i64> = rows
                .iter()
                .filter(|(_, c)| about(c, r))
                .map(|(seq, _)| *seq)
                .collect();
            assert_eq!(found(store, param, r).await, want, "{param}={r}");
        }
        let twice = count(
            store,
            "SELECT COUNT(*) AS n FROM (SELECT ref, seq FROM audit_keys GROUP BY ref, seq \
             HAVING COUNT(*) > 1) d",
        )
        .await;
        assert_eq!(twice, 0, "a key in two levels");
    }

    /// The `n` of a `SELECT COUNT(*) AS n …`.
    async fn count(store: &SqlStore, sql: &str) -> i64 {
        sqlx::query(sql)
            .fetch_one(store.pool())
            .await
            .and_then(|r| r.try_get::<i64, _>("n"))
            .expect("count")
    }

    /// One step as the sealer takes it: committed when there was something to do.
    async fn step(store: &SqlStore, shape: &KeyShape) -> bool {
        let mut tx = store.begin().await.expect("begin");
        let n = tx.index_audit_keys(shape).await.expect("step");
        if n.is_some() {
            tx.commit().await.expect("commit");
        }
        n.is_some()
    }

    async fn keys_agree_with_rows(url: &str) {
        let store = open(url).await;
        let shape = KeyShape {
            tail_rows: 4,
            level_one: 6,
            fanout: 2,
            chunk: 5,
        };
        let mut rows: Vec<(i64, Columns)> = Vec::new();
        for round in 0..12_i64 {
            // Round 4's rows name no citizen or resource (searches, refusals): a full tail
            // without a key must still move the mark.
            let batch: Vec<Columns> = (round * 9..round * 9 + 9)
                .map(row)
                .map(|mut c| {
                    if round == 4 {
                        (c.entity, c.patient) = (None, None);
                    }
                    c
                })
                .collect();
            let mut tx = store.begin().await.expect("begin");
            tx.audit_from_journal(&batch, "segment", (round as u64 + 1) * 100)
                .await
                .expect("rows");
            tx.commit().await.expect("commit");
            let first = rows.last().map_or(1, |(s, _)| s + 1);
            rows.extend(
                batch
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| (first + i as i64, c)),
            );
            // Odd rounds stop after two steps, so that searches also meet a level half moved
            // and rows past the mark; even rounds move everything there is to move.
            let mut steps = 0;
            while step(&store, &shape).await {
                steps += 1;
                if round % 2 == 1 && steps == 2 {
                    break;
                }
            }
            agree(&store, &rows).await;
        }
        let deepest = count(&store, "SELECT MAX(level) AS n FROM audit_keys").await;
        assert!(deepest >= 3, "keys moved down at least two levels");
        // Retention: the first 40 rows go, and their keys with them, in transactions of at most
        // PRUNE_BATCH (7 here) rows, each anchoring the chain where it stopped.
        let before = rows[40].1.recorded_ms;
        let mut pruned = Vec::new();
        loop {
            let mut tx = store.begin().await.expect("begin");
            let n = tx.prune_audit(before, before).await.expect("prune");
            tx.commit().await.expect("commit");
            if n == 0 {
                break;
            }
            pruned.push(n);
        }
        assert_eq!(pruned, [7, 7, 7, 7, 7, 5]);
        let verified = store.audit_verify().await.expect("verify");
        assert!(verified.first_break.is_none(), "{verified:?}");
        assert_eq!(verified.anchor, 40, "{verified:?}");
        rows.drain(..40);
        agree(&store, &rows).await;
        let dangling = count(
            &store,
            "SELECT COUNT(*) AS n FROM audit_keys k WHERE NOT EXISTS \
             (SELECT 1 FROM audit_log a WHERE a.seq = k.seq)",
        )
        .await;
        assert_eq!(dangling, 0, "keys of pruned rows");
        while step(&store, &shape).await {}
        agree(&store, &rows).await;
        let behind = count(
            &store,
            "SELECT MAX(a.chain_pos) - MAX(m.upto) AS n FROM audit_log a, audit_key_mark m",
        )
        .await;
        assert!(
            behind < 4,
            "the mark stopped {behind} rows short of the chain's head"
        );
    }

    /// Entities whose JSON needs escapes (a refused read's odd id) get their keys as the others
    /// do, and keys at both ends of the 64-bit range go through level 1's JSON unchanged.
    async fn escaped_texts_and_extreme_keys(url: &str) {
        let store = open(url).await;
        let shape = KeyShape {
            tail_rows: 1,
            ..KeyShape::default()
        };
        let odd = ["Patient/a\"b\\c", "Patient/æø\u{1}\n", "CarePlan/plain"];
        let batch: Vec<Columns> = odd
            .iter()
            .map(|e| Columns {
                entity: Some(e.to_string()),
                ..row(0)
            })
            .collect();
        let mut tx = store.begin().await.expect("begin");
        tx.audit_from_journal(&batch, "segment", 100)
            .await
            .expect("rows");
        tx.commit().await.expect("commit");
        while step(&store, &shape).await {}
        for e in odd {
            let n = count(
                &store,
                &format!(
                    "SELECT COUNT(*) AS n FROM audit_keys WHERE ref = {}",
                    super::key(e)
                ),
            )
            .await;
            assert_eq!(n, 1, "{e:?}");
        }
        let extreme = [(i64::MIN, 101), (-1, 102), (0, 103), (i64::MAX, 104)];
        let insert = super::insert_level_one(&extreme, url.starts_with("postgres"));
        crate::store::sql::query(&insert)
            .execute(store.pool())
            .await
            .expect("insert");
        let got: Vec<(i64, i64)> = sqlx::query(
            "SELECT ref, seq FROM audit_keys WHERE seq > 100 AND level = 1 ORDER BY ref",
        )
        .fetch_all(store.pool())
        .await
        .expect("keys")
        .iter()
        .map(|r| (r.get::<i64, _>("ref"), r.get::<i64, _>("seq")))
        .collect();
        assert_eq!(got, extreme);
    }

    #[tokio::test]
    async fn escaped_texts_and_extreme_keys_on_sqlite() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("a.db").display());
        escaped_texts_and_extreme_keys(&url).await;
    }

    #[tokio::test]
    async fn escaped_texts_and_extreme_keys_on_postgres() {
        let Some(pg) =
            crate::store::test_pg::PgSchema::create("audit_keys_x", "audit keys on PostgreSQL")
                .await
        else {
            return;
        };
        escaped_texts_and_extreme_keys(&pg.url).await;
        pg.drop().await;
    }

    #[tokio::test]
    async fn keys_agree_with_rows_on_sqlite() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("a.db").display());
        keys_agree_with_rows(&url).await;
    }

    #[tokio::test]
    async fn keys_agree_with_rows_on_postgres() {
        let Some(pg) =
            crate::store::test_pg::PgSchema::create("audit_keys", "audit keys on PostgreSQL").await
        else {
            return;
        };
        keys_agree_with_rows(&pg.url).await;
        pg.drop().await;
    }
}
