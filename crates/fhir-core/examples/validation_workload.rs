//! A fixed validation workload for instruction counts (callgrind), where wall-clock time on a
//! shared machine is too noisy to compare small changes: every `STRIDE`th JSON file of the R4
//! examples package (default 10, i.e. a tenth of the corpus with the same mix of conformance
//! and clinical resources), parsed once by serde_json (`parse_all`) and validated once
//! (`validate_all`).
//!
//! ```text
//! cargo build --release --example validation_workload
//! valgrind --tool=callgrind --collect-atstart=no \
//!     --toggle-collect='validation_workload::parse_all*' \
//!     --toggle-collect='validation_workload::validate_all*' \
//!     target/release/examples/validation_workload [PACKAGE.tgz] [STRIDE]
//! callgrind_annotate --inclusive=yes callgrind.out.* | grep -E 'parse_all|validate_all'
//! ```
//!
//! The ratio of the two inclusive counts is the validation/parse ratio of issue #3. With
//! `ISSUES=FILE` every issue of every file is written to FILE, to check that a change to the
//! validator's speed left its answers alone (compare the files of two builds).

use fhir_core::validation::Validator;
use serde_json::Value;

#[path = "../benches/support/r4_examples.rs"]
mod r4_examples;

#[inline(never)]
fn parse_all(bytes: &[Vec<u8>]) -> usize {
    let mut n = 0;
    for b in bytes {
        let v: Value = serde_json::from_slice(b).expect("json");
        n += usize::from(v.is_object());
        std::hint::black_box(v);
    }
    n
}

#[inline(never)]
fn validate_all(validator: &Validator, values: &[Value]) -> usize {
    values
        .iter()
        .map(|v| std::hint::black_box(validator.validate(v, &[])).len())
        .sum()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let package = args.next().unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fhir-packages/hl7.fhir.r4.examples-4.0.1.tgz"
        )
        .to_string()
    });
    let stride: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(10);
    let bytes = r4_examples::example_bytes(std::path::Path::new(&package), stride);
    let t = std::time::Instant::now();
    let validator = Validator::r4().expect("definitions");
    eprintln!("load: {:?}", t.elapsed());
    let values: Vec<Value> = bytes
        .iter()
        .map(|b| serde_json::from_slice(b).expect("json"))
        .collect();
    let total: usize = bytes.iter().map(Vec::len).sum();
    let parsed = parse_all(&bytes);
    let issues = validate_all(&validator, &values);
    if let Some(out) = std::env::var_os("ISSUES") {
        // every issue of every file, to compare two builds' answers
        let mut text = String::new();
        for v in &values {
            for i in validator.validate(v, &[]) {
                text.push_str(&format!("{:?}\n", i));
            }
            text.push('\n');
        }
        std::fs::write(out, text).expect("write issues");
    }
    println!(
        "{} files, {:.1} MB, {parsed} objects, {issues} issues",
        bytes.len(),
        total as f64 / 1e6
    );
}
