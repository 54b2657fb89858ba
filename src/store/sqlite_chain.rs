//! `sektorbro_chain_hash(previous, seq, recorded_ms, kind, …, forward)`: the audit chain's hash
//! of a row ([`chain_hash`](crate::audit::compact::chain_hash)) as a SQL function on every SQLite
//! connection of the process, registered as an auto-extension like `sqlite_timeout`'s hooks
//! (sqlx's `Any` pool never hands out the raw connection).
//!
//! It lets a write's own audit record be sealed by the `INSERT` that stores it
//! ([`audit_log::insert_sealed_sqlite_in_tx`](super::audit_log::insert_sealed_sqlite_in_tx)),
//! on SQLite's single writer, inside the write's transaction: the statement reads the chain's
//! head and hashes the row it stores in one step, so nothing can take the position in between,
//! and a transaction rolled back takes its position with it. Sealed afterwards by the sealer,
//! the record was unprotected until its next round and written twice (an `UPDATE` of the row
//! and its index entries); creates a second were the same either way (docs/benchmarks.md).
//!
//! The function hashes the values it is given, as given: integers as numbers, texts as JSON
//! strings, NULL as `null`. Anything else (a real, a blob, text that is not UTF-8) is an error,
//! and the `INSERT` fails rather than store a hash `verify` would not reproduce.

use std::ffi::{c_char, c_int};
use std::sync::Once;

use libsqlite3_sys as ffi;

use crate::audit::compact::{chain_hash_of_values, ColumnValue};

/// The function's name in SQL.
pub(crate) const NAME: &str = "sektorbro_chain_hash";

/// Arguments: the previous hash, the row's `seq`, and its 18 columns in `Columns::values` order.
const ARGS: c_int = 20;

/// Register the auto-extension, once per process, before the first connection is opened.
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    super::sqlite_timeout::register(&ONCE, on_open);
}

/// Run by SQLite for each new connection: define the function on it.
unsafe extern "C" fn on_open(
    db: *mut ffi::sqlite3,
    _err: *mut *mut c_char,
    _api: *const ffi::sqlite3_api_routines,
) -> c_int {
    // SAFETY: `db` is the connection being opened; the name is NUL-terminated and static; no
    // user data, so no destructor.
    unsafe {
        ffi::sqlite3_create_function_v2(
            db,
            c"sektorbro_chain_hash".as_ptr(),
            ARGS,
            ffi::SQLITE_UTF8 | ffi::SQLITE_DETERMINISTIC,
            std::ptr::null_mut(),
            Some(chain_hash_fn),
            None,
            None,
            None,
        )
    }
}

/// One argument as a column value; `Err` for a type the chain never stores.
///
/// # Safety
/// `v` is a protected value SQLite passed to the function, valid during the call.
unsafe fn value<'a>(v: *mut ffi::sqlite3_value) -> Result<ColumnValue<'a>, &'static str> {
    // SAFETY: as the function's contract.
    unsafe {
        match ffi::sqlite3_value_type(v) {
            ffi::SQLITE_NULL => Ok(ColumnValue::Int(None)),
            ffi::SQLITE_INTEGER => Ok(ColumnValue::Int(Some(ffi::sqlite3_value_int64(v)))),
            ffi::SQLITE_TEXT => {
                let p = ffi::sqlite3_value_text(v);
                let n = usize::try_from(ffi::sqlite3_value_bytes(v)).unwrap_or(0);
                if p.is_null() {
                    return Ok(ColumnValue::Text(Some("")));
                }
                let bytes = std::slice::from_raw_parts(p, n);
                std::str::from_utf8(bytes)
                    .map(|s| ColumnValue::Text(Some(s)))
                    .map_err(|_| "a text that is not UTF-8")
            }
            _ => Err("a value that is neither an integer, a text nor NULL"),
        }
    }
}

unsafe extern "C" fn chain_hash_fn(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    let fail = |msg: &str| {
        let text = format!("{NAME}: {msg}");
        // SAFETY: `ctx` is this call's context; SQLite copies the message (length given).
        unsafe {
            ffi::sqlite3_result_error(
                ctx,
                text.as_ptr().cast(),
                c_int::try_from(text.len()).unwrap_or(0),
            )
        }
    };
    if argc != ARGS || argv.is_null() {
        return fail("wrong number of arguments");
    }
    // SAFETY: SQLite passes `argc` values, valid during the call.
    let args = unsafe { std::slice::from_raw_parts(argv, ARGS as usize) };
    // SAFETY: each is a value of this call.
    let values: Result<Vec<ColumnValue<'_>>, _> =
        args.iter().map(|v| unsafe { value(*v) }).collect();
    let values = match values {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let (ColumnValue::Text(Some(previous)), ColumnValue::Int(Some(seq))) = (values[0], values[1])
    else {
        return fail("the previous hash must be a text and the id an integer");
    };
    let hash = chain_hash_of_values(previous, seq, values[2..].iter().copied());
    // SAFETY: SQLite copies the text (SQLITE_TRANSIENT) before this returns.
    unsafe {
        ffi::sqlite3_result_text(
            ctx,
            hash.as_ptr().cast(),
            c_int::try_from(hash.len()).unwrap_or(0),
            ffi::SQLITE_TRANSIENT(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::compact::{chain_hash, Columns, GENESIS};
    use crate::audit::{AuditRecord, Interaction};
    use sqlx::Connection as _;

    fn record(n: usize) -> AuditRecord {
        let mut r = AuditRecord::new(Interaction::Create, 201);
        r.resource = Some(format!("Patient/p-{n}/_history/1"));
        r.resource_type = Some("Patient".into());
        r.request_id = Some(format!("req \"{n}\"\n\\ æøå"));
        r
    }

    /// The SQL function gives the hash `chain_hash` gives, NULLs, escapes and non-ASCII
    /// included, and refuses a value the chain never stores.
    #[tokio::test]
    async fn the_sql_function_hashes_as_the_chain_does() {
        install();
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .expect("connect");
        let c = Columns::of(&record(7));
        let placeholders = vec!["?"; ARGS as usize].join(", ");
        let text = format!("SELECT {NAME}({placeholders})");
        let mut q = sqlx::query_scalar::<_, String>(&text)
            .bind(GENESIS)
            .bind(42_i64);
        for (_, v) in c.values() {
            q = match v {
                ColumnValue::Int(i) => q.bind(i),
                ColumnValue::Text(t) => q.bind(t.map(String::from)),
            };
        }
        let got = q.fetch_one(&mut conn).await.expect("hash");
        assert_eq!(got, chain_hash(GENESIS, 42, &c));

        let mut q = sqlx::query_scalar::<_, String>(&text)
            .bind(GENESIS)
            .bind(1_i64);
        for _ in 0..18 {
            q = q.bind(1.5_f64);
        }
        let err = q.fetch_one(&mut conn).await.expect_err("a real");
        assert!(err.to_string().contains(NAME), "{err}");
    }

    /// A write's records inserted sealed, one after another and beside a transaction dropped
    /// unfinished, form a chain `verify` accepts, with nothing left to seal; the audit writer's
    /// unsealed rows among them are chained by the sealer after them.
    #[tokio::test]
    async fn records_sealed_as_inserted_verify() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let defaults = crate::config::Config::defaults();
        let store = crate::store::open(&url, 2, "full", 0, &defaults.cache)
            .await
            .expect("open");
        for n in 0..5 {
            let mut tx = store.begin().await.expect("begin");
            tx.audit(&record(n)).await.expect("audit");
            tx.audit(&record(n + 100)).await.expect("audit");
            if n == 2 {
                drop(tx);
            } else {
                tx.commit().await.expect("commit");
            }
        }
        let v = store.audit_verify().await.expect("verify");
        assert!(v.first_break.is_none(), "{v:?}");
        assert_eq!((v.checked, v.unsealed, v.head.0), (8, 0, 8), "{v:?}");

        // The audit writer's rows (no journal) go in unsealed, between writes' sealed ones; the
        // sealer chains them after the head those writes moved.
        let (a, b) = (record(200), record(201));
        let mut tx = store.begin().await.expect("begin");
        tx.audit_many(&[&a, &b]).await.expect("unsealed");
        tx.commit().await.expect("commit");
        let mut tx = store.begin().await.expect("begin");
        tx.audit(&record(202)).await.expect("sealed");
        tx.commit().await.expect("commit");
        let v = store.audit_verify().await.expect("verify");
        assert_eq!((v.checked, v.unsealed, v.head.0), (9, 2, 9), "{v:?}");
        let mut tx = store.begin().await.expect("begin");
        assert_eq!(tx.seal_audit().await.expect("seal"), 2);
        tx.commit().await.expect("commit");
        let v = store.audit_verify().await.expect("verify");
        assert!(v.first_break.is_none(), "{v:?}");
        assert_eq!((v.checked, v.unsealed, v.head.0), (11, 0, 11), "{v:?}");
    }
}
