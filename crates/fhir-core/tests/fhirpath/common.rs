//! Shared helpers for the tests that read the R4 examples package.

use std::io::Read;
use std::path::PathBuf;

use serde_json::Value as Json;

/// Path of the R4 examples package, or `None` (tests then print a skip message).
pub fn package_path() -> Option<PathBuf> {
    let base = std::env::var_os("SEKTORBRO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let p = base.join("fhir-packages/hl7.fhir.r4.examples-4.0.1.tgz");
    p.exists().then_some(p)
}

/// Calls `f(file_name, json)` for every `package/*.json` entry accepted by `want`.
pub fn for_each_json(want: impl Fn(&str) -> bool, mut f: impl FnMut(&str, Json)) {
    let Some(path) = package_path() else {
        return;
    };
    let file = std::fs::File::open(&path).expect("open package");
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in ar.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        let name = entry
            .path()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        if !name.ends_with(".json") || !want(&name) {
            continue;
        }
        let mut text = String::new();
        if entry.read_to_string(&mut text).is_err() {
            continue;
        }
        if let Ok(json) = serde_json::from_str::<Json>(&text) {
            f(&name, json);
        }
    }
}

/// All StructureDefinitions of the package.
pub fn structure_definitions() -> Vec<Json> {
    let mut out = Vec::new();
    for_each_json(
        |n| n.starts_with("StructureDefinition-"),
        |_, j| out.push(j),
    );
    out
}

/// Say on the terminal (past the harness's capture) that a test was skipped.
pub fn skip(what: &str) {
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "NOTE: SKIPPED: {what} (../shared beside the checkout, or SEKTORBRO_SHARED)"
    );
}
