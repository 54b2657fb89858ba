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
