//! SQLite on mimalloc (`sektorbro::alloc::sqlite_on_mimalloc`), as the binary runs it: taken when
//! asked before SQLite's first use, refused (and harmless) after it, and SQLite works on it. A
//! test binary of its own, so that nothing else has touched SQLite in the process first.

use rusqlite::Connection;

#[test]
fn sqlite_runs_on_mimalloc_when_configured_first() {
    assert!(
        sektorbro::alloc::sqlite_on_mimalloc(),
        "SQLite refused the allocator before its first use"
    );
    let dir = tempfile::tempdir().expect("dir");
    let conn = Connection::open(dir.path().join("a.db")).expect("open");
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT); \
         CREATE INDEX t_body ON t (body);",
    )
    .expect("schema");
    let tx = conn.unchecked_transaction().expect("begin");
    for i in 0..20_000 {
        tx.execute(
            "INSERT INTO t (body) VALUES (?1)",
            [format!("{i:06}-{}", "x".repeat(i % 700))],
        )
        .expect("insert");
    }
    tx.commit().expect("commit");
    let (n, longest): (i64, i64) = conn
        .query_row("SELECT count(*), max(length(body)) FROM t", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("count");
    assert_eq!((n, longest), (20_000, 706));
    // Statistics are off, as configured: SQLite counts nothing.
    // SAFETY: a read of SQLite's counter, no arguments.
    let used = unsafe { libsqlite3_sys::sqlite3_memory_used() };
    assert_eq!(used, 0, "memory statistics still on");
    // Once SQLite is in use it refuses to change allocator; nothing breaks.
    assert!(!sektorbro::alloc::sqlite_on_mimalloc());
    let again: i64 = conn
        .query_row(
            "SELECT count(*) FROM t WHERE body LIKE '019999%'",
            [],
            |r| r.get(0),
        )
        .expect("query after the refused call");
    assert_eq!(again, 1);
}
