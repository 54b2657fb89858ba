//! The `sektorbro` binary: all behaviour lives in the library; this only reports failure.

fn main() -> std::process::ExitCode {
    match sektorbro::cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sektorbro: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
