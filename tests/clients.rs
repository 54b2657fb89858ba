//! The client scenario (tests/clients/README.md) from `cargo test`: runs tests/clients/run.sh
//! against this build's binary when the clients are installed (tests/clients/setup.sh), and
//! skips with a message otherwise. CI runs the script itself, after `cargo test`.

use std::path::Path;
use std::process::Command;

#[cfg(unix)]
#[test]
fn third_party_clients_run_the_scenario() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = std::env::var("SEKTORBRO_CLIENTS_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| root.join("target/clients-venv"));
    let node = root.join("tests/clients/node/node_modules/fhir-kit-client");
    if !venv.join("bin/python").exists() || !node.exists() {
        eprintln!(
            "skipped: the client scenario needs fhirpy, fhirclient and fhir-kit-client \
             (run tests/clients/setup.sh once)"
        );
        return;
    }
    let out = Command::new(root.join("tests/clients/run.sh"))
        .env("SEKTORBRO_BIN", env!("CARGO_BIN_EXE_sektorbro"))
        .env("SEKTORBRO_CLIENTS_VENV", &venv)
        .output()
        .expect("run tests/clients/run.sh");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
