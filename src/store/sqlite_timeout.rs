//! A statement timeout for SQLite, which has none of its own (PostgreSQL has `statement_timeout`).
//!
//! sqlx's `Any` pool never hands out the raw SQLite connection, so the hook is installed through
//! SQLite itself: [`install`] registers an auto-extension, which SQLite runs on every connection
//! opened in this process. It looks the connection's database file up in a registry of timeouts
//! ([`set`], by file path) and, if the file is there, installs
//! - a statement trace (`SQLITE_TRACE_STMT`), which notes when each statement starts running, and
//! - a progress handler, called every [`PROGRESS_OPS`] virtual-machine instructions, which
//!   interrupts the statement once it has run longer than the file's timeout: SQLite stops it with
//!   `SQLITE_INTERRUPT` (code 9), which the store maps to `StoreError::Timeout`.
//!
//! SQLite calls the handler between virtual-machine instructions only, so work done inside one
//! instruction runs to its end: a WAL checkpoint (`PRAGMA wal_checkpoint`, one instruction) is
//! never cut short, and a single large sort may overrun the timeout by its own length.
//!
//! The per-connection state is freed when SQLite reports the connection closed
//! (`SQLITE_TRACE_CLOSE`). The timeout is read at every check, so [`set`] changes it for open
//! connections too (migrations run without one). Never used for anything but time: the callbacks
//! must not touch the connection.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::Instant;

use libsqlite3_sys as ffi;

/// Instructions between two looks at the clock (a few microseconds of work).
const PROGRESS_OPS: c_int = 10_000;

/// Timeouts in milliseconds (0: none) by canonical database file path.
fn registry() -> &'static Mutex<HashMap<PathBuf, Arc<AtomicU64>>> {
    static R: OnceLock<Mutex<HashMap<PathBuf, Arc<AtomicU64>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

fn key(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

/// Statements on connections to the database file `path` are interrupted after `ms`
/// milliseconds (0: never). Applies to connections opened later and to those already open.
pub fn set(path: &Path, ms: u64) {
    install();
    let Ok(mut r) = registry().lock() else {
        return;
    };
    r.entry(key(path))
        .or_insert_with(|| Arc::new(AtomicU64::new(0)))
        .store(ms, Ordering::Relaxed);
}

/// One connection's clock.
struct Conn {
    timeout_ms: Arc<AtomicU64>,
    /// When the running statement started (ms since `epoch`); `u64::MAX` when none runs.
    started: AtomicU64,
    epoch: Instant,
}

impl Conn {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }
}

/// What SQLite runs on each new connection once registered with [`register`].
pub(super) type EntryPoint = unsafe extern "C" fn(
    *mut ffi::sqlite3,
    *mut *mut c_char,
    *const ffi::sqlite3_api_routines,
) -> c_int;

/// Register `entry` as an auto-extension, which SQLite runs on every connection the process
/// opens from then on; `once` makes it once per process.
pub(super) fn register(once: &'static Once, entry: EntryPoint) {
    once.call_once(|| {
        // SAFETY: `entry` has the entry-point signature SQLite expects; registering it has no
        // other precondition.
        unsafe {
            ffi::sqlite3_auto_extension(Some(entry));
        }
    });
}

/// Register the auto-extension, once per process.
fn install() {
    static ONCE: Once = Once::new();
    register(&ONCE, on_open);
}

/// Run by SQLite for each new connection.
unsafe extern "C" fn on_open(
    db: *mut ffi::sqlite3,
    _err: *mut *mut c_char,
    _api: *const ffi::sqlite3_api_routines,
) -> c_int {
    // SAFETY: `db` is the connection being opened; "main" is a NUL-terminated name.
    let name = unsafe { ffi::sqlite3_db_filename(db, c"main".as_ptr()) };
    if name.is_null() {
        return ffi::SQLITE_OK;
    }
    // SAFETY: SQLite returns a NUL-terminated string valid while the connection is open.
    let name = unsafe { CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned();
    if name.is_empty() {
        return ffi::SQLITE_OK;
    }
    let timeout_ms = {
        let Ok(r) = registry().lock() else {
            return ffi::SQLITE_OK;
        };
        match r.get(&key(Path::new(&name))) {
            Some(t) => t.clone(),
            None => return ffi::SQLITE_OK,
        }
    };
    let conn = Box::into_raw(Box::new(Conn {
        timeout_ms,
        started: AtomicU64::new(u64::MAX),
        epoch: Instant::now(),
    }));
    // SAFETY: `conn` lives until SQLite reports the connection closed (`on_trace`, CLOSE), after
    // which neither callback is called again.
    unsafe {
        ffi::sqlite3_trace_v2(
            db,
            (ffi::SQLITE_TRACE_STMT | ffi::SQLITE_TRACE_CLOSE) as c_uint,
            Some(on_trace),
            conn.cast(),
        );
        ffi::sqlite3_progress_handler(db, PROGRESS_OPS, Some(on_progress), conn.cast());
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn on_trace(
    event: c_uint,
    ctx: *mut c_void,
    _p: *mut c_void,
    _x: *mut c_void,
) -> c_int {
    let conn = ctx.cast::<Conn>();
    if event == ffi::SQLITE_TRACE_CLOSE as c_uint {
        // SAFETY: made by `Box::into_raw` in `on_open`; the connection is closing, so no callback
        // uses it after this.
        drop(unsafe { Box::from_raw(conn) });
        return 0;
    }
    // SAFETY: valid until CLOSE (above).
    let conn = unsafe { &*conn };
    conn.started.store(conn.now(), Ordering::Relaxed);
    0
}

unsafe extern "C" fn on_progress(ctx: *mut c_void) -> c_int {
    // SAFETY: valid until CLOSE, and SQLite calls no progress handler while closing.
    let conn = unsafe { &*ctx.cast::<Conn>() };
    let limit = conn.timeout_ms.load(Ordering::Relaxed);
    let started = conn.started.load(Ordering::Relaxed);
    if limit == 0 || started == u64::MAX {
        return 0;
    }
    c_int::from(conn.now().saturating_sub(started) > limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recursive query that runs for minutes is stopped near the timeout with SQLITE_INTERRUPT.
    #[tokio::test]
    async fn a_long_statement_is_interrupted_after_the_timeout() {
        use sqlx::Connection as _;
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.db");
        std::fs::File::create(&path).expect("file");
        set(&path, 200);
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("connect");
        let start = Instant::now();
        let result: Result<i64, _> = sqlx::query_scalar(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
        )
        .fetch_one(&mut conn)
        .await;
        let err = result.expect_err("interrupted");
        let elapsed = start.elapsed();
        assert!(elapsed.as_millis() < 3_000, "{elapsed:?}");
        let code = match &err {
            sqlx::Error::Database(d) => d.code().map(|c| c.to_string()),
            _ => None,
        };
        assert_eq!(code.as_deref(), Some("9"), "{err:?}");
        // The connection goes on, and the next statement has its own clock.
        let one: i64 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut conn)
            .await
            .expect("ok");
        assert_eq!(one, 1);
    }
}
