//! The profile validator without HTTP: hand-written invalid cases (`cases.rs`), every official R4
//! example and the Danish IG examples (`corpus.rs`, which reads `../shared/` and skips with a
//! message when it is absent), and snapshot generation (`snapshots.rs`).

mod cases;
mod corpus;
mod extension_policy;
mod packages;
mod questionnaire;
mod reference_rules;
mod robustness;
mod snapshots;

use std::sync::{Arc, OnceLock};

use fhir_core::fhir::outcome::Severity;
use fhir_core::validation::Validator;
use serde_json::Value;

pub fn validator() -> Arc<Validator> {
    static V: OnceLock<Arc<Validator>> = OnceLock::new();
    V.get_or_init(|| Validator::shared_r4().expect("embedded definitions load"))
        .clone()
}

/// Every issue as (severity, location, message).
pub fn issues(v: &Value) -> Vec<(String, String, String)> {
    validator()
        .validate(v, &[])
        .into_iter()
        .map(|i| {
            (
                i.severity.as_str().to_string(),
                i.expression.unwrap_or_default(),
                i.diagnostics,
            )
        })
        .collect()
}

/// The errors as (location, message).
pub fn errors(v: &Value) -> Vec<(String, String)> {
    errors_by(&validator(), v)
}

/// The errors `validator` finds in `v`, as (location, message).
pub fn errors_by(validator: &Validator, v: &Value) -> Vec<(String, String)> {
    validator
        .validate(v, &[])
        .into_iter()
        .filter(|i| i.severity <= Severity::Error)
        .map(|i| (i.expression.unwrap_or_default(), i.diagnostics))
        .collect()
}

/// `../shared/` beside the checkout, or `None` after saying the test is skipped.
pub fn shared(what: &str) -> Option<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    if dir.is_dir() {
        Some(dir)
    } else {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "NOTE: {what} SKIPPED: {} not found (it is beside the checkout on CI)",
            dir.display()
        );
        None
    }
}

/// A validator loaded with the embedded definitions and `resources`, written for the purpose to
/// a folder of their own (removed once loaded).
pub fn validator_with(name: &str, resources: &[&Value]) -> Validator {
    let dir = std::env::temp_dir().join(format!("sektorbro-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    for (i, r) in resources.iter().enumerate() {
        std::fs::write(dir.join(format!("{i}.json")), r.to_string()).expect("write");
    }
    let v = Validator::with_packages(&[&dir]).expect("load");
    let _ = std::fs::remove_dir_all(&dir);
    v
}
