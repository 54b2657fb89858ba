//! The `sektorbro` binary: all behaviour lives in the library; this only reports failure.

/// mimalloc instead of glibc's malloc (see `sektorbro::alloc`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Before anything opens a database: SQLite allocates through mimalloc too.
    sektorbro::alloc::sqlite_on_mimalloc();
    match sektorbro::cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sektorbro: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
