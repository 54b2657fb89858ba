//! The process's allocator. The `sektorbro` binary runs on mimalloc (`src/main.rs`): parsing and
//! validating FHIR JSON allocates and frees a small object per value, and glibc's malloc was a
//! fifth of `sektorbro validate`'s CPU (docs/validation.md, "The command line").
//!
//! mimalloc hands freed memory back to the system lazily, when the thread that freed it
//! allocates again. Loading the validation packages at start frees most of what it allocated,
//! and an idle gateway would hold it (40 MiB more resident than on glibc, measured).

/// Hand the memory this thread has freed back to the system now. Call after a large one-off
/// load. Without mimalloc as the global allocator (the library's own tests) it finds nothing.
pub fn release_free_memory() {
    // SAFETY: `mi_collect` takes no pointers and only walks mimalloc's own per-thread heap; it
    // is safe to call at any time from any thread.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Give SQLite the same allocator as the rest of the process, and no global lock around it.
///
/// SQLite allocates through glibc's malloc by default, and keeps memory statistics under one
/// process-wide mutex on every allocation. Under a write load its thread spent about a sixth of
/// its samples in glibc's malloc and free and in that mutex (docs/benchmarks.md). This routes
/// SQLite's allocations to mimalloc and turns the statistics off (nothing here reads them: no
/// `sqlite3_memory_used`, no heap limits).
///
/// Must run before SQLite is first used in the process (`sqlite3_config` refuses once SQLite
/// is initialized); the binary calls it first thing. Returns whether SQLite took it.
pub fn sqlite_on_mimalloc() -> bool {
    use libsqlite3_sys as ffi;
    use std::ffi::{c_int, c_void};

    unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
        // SAFETY: mimalloc's malloc, for any size; SQLite asks only for n > 0.
        unsafe { libmimalloc_sys::mi_malloc(usize::try_from(n).unwrap_or(0)) }
    }
    unsafe extern "C" fn x_free(p: *mut c_void) {
        // SAFETY: `p` came from `x_malloc` or `x_realloc` (SQLite frees only what it allocated
        // through these methods).
        unsafe { libmimalloc_sys::mi_free(p) }
    }
    unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
        // SAFETY: as `x_free` for `p`.
        unsafe { libmimalloc_sys::mi_realloc(p, usize::try_from(n).unwrap_or(0)) }
    }
    unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
        // SAFETY: as `x_free` for `p`.
        let n = unsafe { libmimalloc_sys::mi_usable_size(p) };
        c_int::try_from(n).unwrap_or(c_int::MAX)
    }
    unsafe extern "C" fn x_roundup(n: c_int) -> c_int {
        // SAFETY: a pure function of the size.
        let good = unsafe { libmimalloc_sys::mi_good_size(usize::try_from(n).unwrap_or(0)) };
        c_int::try_from(good).unwrap_or(n)
    }
    unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
        ffi::SQLITE_OK
    }
    unsafe extern "C" fn x_shutdown(_: *mut c_void) {}

    let methods = ffi::sqlite3_mem_methods {
        xMalloc: Some(x_malloc),
        xFree: Some(x_free),
        xRealloc: Some(x_realloc),
        xSize: Some(x_size),
        xRoundup: Some(x_roundup),
        xInit: Some(x_init),
        xShutdown: Some(x_shutdown),
        pAppData: std::ptr::null_mut(),
    };
    // SAFETY: both options are valid before initialization (and refused with SQLITE_MISUSE
    // after it, changing nothing); SQLite copies the methods before `sqlite3_config` returns.
    unsafe {
        ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int) == ffi::SQLITE_OK
            && ffi::sqlite3_config(
                ffi::SQLITE_CONFIG_MALLOC,
                &methods as *const ffi::sqlite3_mem_methods,
            ) == ffi::SQLITE_OK
    }
}
