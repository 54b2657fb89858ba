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

/// mimalloc's `mi_option_purge_delay` (v3's `mi_option_e`; the crate names no constant for it):
/// how long freed memory waits before it is handed back to the system.
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Keep freed memory for reuse instead of handing it back to the system, for a batch run.
///
/// `sektorbro validate` frees each file's parse before parsing the next. mimalloc hands memory
/// back to the system a moment after it is freed, and the next file faults it in again: with
/// transparent huge pages the kernel zeroes 2 MiB per fault, a fifth of a whole run's CPU in
/// `perf` (docs/validation.md). The run's peak memory is the same either way (measured).
/// The gateway keeps the default: an idle server should give memory back.
pub fn keep_freed_memory() {
    // SAFETY: `mi_option_set` takes an option number and a value and only stores the value;
    // any number is accepted (an unknown one is ignored).
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

#[cfg(test)]
mod tests {
    /// The option number still names the purge delay: its documented default is 1,000 ms in
    /// mimalloc v3 (a crate upgrade that moves the enum fails here, not silently).
    #[test]
    fn the_purge_delay_option_is_the_one_we_set() {
        // SAFETY: reads an option's value; no pointers.
        let delay = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(delay, 1000);
    }
}
