//! A fixed municipal workload for instruction counts (callgrind), where wall-clock time on a
//! shared machine is too noisy to compare changes: the typical record of the benchmark
//! (`fixtures/municipal/haderslev-hjortebro-intervention.json`) taken from bytes to a validated
//! FHIR Bundle `ROUNDS` times (default 20), each stage in a function callgrind counts separately.
//!
//! ```text
//! cargo build --release --example municipal_workload
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='municipal_workload::stage_*' \
//!     target/release/examples/municipal_workload [ROUNDS]
//! callgrind_annotate --inclusive=yes callgrind.out.* | grep stage_
//! ```
//!
//! Divide each count by ROUNDS for one record. `stage_whole_one_parse` is what `cargo bench
//! --bench municipal` calls "record to validated bundle (whole, one parse)", `stage_whole_text`
//! "(whole, via Value and jsonschema)", `stage_whole` the same with the Bundle as a `Value`; `stage_validate_full` is the full validator on the 27 resources, which the
//! fast path (`municipal::precheck`) skips for a record like this one.

use fhir_core::validation::Validator;
use sektorbro::municipal::record::CareRecord;
use sektorbro::municipal::{
    check, check_bytes, check_document, parse_conforming, to_fhir, translate, translate_text,
};
use serde_json::Value;

#[inline(never)]
fn stage_parse(bytes: &[u8], rounds: usize) -> usize {
    (0..rounds)
        .map(|_| {
            let v: Value = serde_json::from_slice(bytes).expect("JSON");
            usize::from(std::hint::black_box(v).is_object())
        })
        .sum()
}

#[inline(never)]
fn stage_schema(doc: &Value, rounds: usize) -> usize {
    (0..rounds).map(|_| check::schema(doc).len()).sum()
}

#[inline(never)]
fn stage_check_document(doc: &Value, v: &Validator, rounds: usize) -> usize {
    (0..rounds)
        .map(|_| check_document(doc, &v.terminology).expect("valid").1.len())
        .sum()
}

#[inline(never)]
fn stage_map(rec: &CareRecord, v: &Validator, rounds: usize) -> usize {
    (0..rounds)
        .map(|_| {
            usize::from(std::hint::black_box(to_fhir::to_bundle(rec, &v.terminology)).is_object())
        })
        .sum()
}

#[inline(never)]
fn stage_write(rec: &CareRecord, v: &Validator, rounds: usize) -> usize {
    (0..rounds)
        .map(|_| to_fhir::write_bundle(rec, &v.terminology).len())
        .sum()
}

#[inline(never)]
fn stage_whole_text(bytes: &[u8], v: &Validator, rounds: usize) -> usize {
    (0..rounds)
        .map(|_| {
            let doc: Value = serde_json::from_slice(bytes).expect("JSON");
            let (rec, _) = check_document(&doc, &v.terminology).expect("valid");
            translate_text(&rec, v).expect("valid FHIR").len()
        })
        .sum()
}

/// The endpoint's way: one parse into the record (schema's checks on it), rules, Bundle text.
#[inline(never)]
fn stage_whole_one_parse(bytes: &[u8], v: &Validator, rounds: usize) -> usize {
    (0..rounds)
        .map(|_| {
            let (rec, _) = check_bytes(bytes, &v.terminology).expect("valid");
            translate_text(&rec, v).expect("valid FHIR").len()
        })
        .sum()
}

#[inline(never)]
fn stage_one_parse(bytes: &[u8], rounds: usize) -> usize {
    (0..rounds)
        .map(|_| parse_conforming(bytes).expect("conforms").goals.len())
        .sum()
}

#[inline(never)]
fn stage_translate(rec: &CareRecord, v: &Validator, rounds: usize) -> usize {
    (0..rounds)
        .map(|_| usize::from(translate(rec, v).expect("valid FHIR").is_object()))
        .sum()
}

#[inline(never)]
fn stage_validate_full(bundle: &Value, v: &Validator, rounds: usize) -> usize {
    (0..rounds)
        .map(|_| {
            bundle["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| v.validate(&e["resource"], &[]).len())
                .sum::<usize>()
        })
        .sum()
}

#[inline(never)]
fn stage_whole(bytes: &[u8], v: &Validator, rounds: usize) -> usize {
    (0..rounds)
        .map(|_| {
            let doc: Value = serde_json::from_slice(bytes).expect("JSON");
            let (rec, _) = check_document(&doc, &v.terminology).expect("valid");
            usize::from(translate(&rec, v).expect("valid FHIR").is_object())
        })
        .sum()
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("ROUNDS"))
        .unwrap_or(20);
    let v = Validator::shared_embedded().expect("definitions");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/municipal/haderslev-hjortebro-intervention.json"
    );
    let bytes = std::fs::read(path).expect("fixture");
    let doc: Value = serde_json::from_slice(&bytes).expect("JSON");
    let (rec, _) = check_document(&doc, &v.terminology).expect("valid record");
    let bundle = to_fhir::to_bundle(&rec, &v.terminology);
    // Warm up once (value sets are evaluated on first use).
    stage_whole(&bytes, &v, 1);
    let n = stage_parse(&bytes, rounds)
        + stage_schema(&doc, rounds)
        + stage_check_document(&doc, &v, rounds)
        + stage_map(&rec, &v, rounds)
        + stage_write(&rec, &v, rounds)
        + stage_translate(&rec, &v, rounds)
        + stage_validate_full(&bundle, &v, rounds)
        + stage_whole(&bytes, &v, rounds)
        + stage_whole_text(&bytes, &v, rounds)
        + stage_one_parse(&bytes, rounds)
        + stage_whole_one_parse(&bytes, &v, rounds);
    println!("{n}");
}
