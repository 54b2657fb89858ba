//! The crate boundary the compiler keeps: the FHIR core depends on no HTTP, database or async
//! runtime crate, directly or through another crate. Validation and FHIRPath do no I/O because
//! nothing here could do it.

use std::process::Command;

const FORBIDDEN: &[&str] = &[
    "actix-web",
    "actix-http",
    "actix-rt",
    "sqlx",
    "reqwest",
    "hyper",
    "tokio",
    "mio",
];

#[test]
fn fhir_core_depends_on_no_http_database_or_runtime_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--package",
            "fhir-core",
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        crates.contains(&"serde_json"),
        "cargo tree printed no dependencies: {tree}"
    );
    let found: Vec<&&str> = crates.iter().filter(|c| FORBIDDEN.contains(c)).collect();
    assert!(found.is_empty(), "fhir-core depends on {found:?}");
}
