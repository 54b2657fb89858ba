//! Municipal record → validated FHIR Bundle, the work `POST /municipal/v1/care-records` does
//! before its transaction: parse the posted bytes, JSON Schema, rules, mapping, and validation of
//! every produced resource against R4 and our profiles (issue #4 goal: under 100 µs for a
//! typical record) — the Bundle as JSON text (`translate_text`, what `sektorbro translate`
//! prints) and as a `serde_json::Value` (`translate`, what the engine takes). Also each stage
//! alone, and the reverse mapping. `cargo bench --bench municipal`; figures in docs/municipal.md.
//! Instruction counts of the same stages: `examples/municipal_workload.rs`.

use criterion::{criterion_group, criterion_main, Criterion};
use fhir_core::validation::Validator;
use sektorbro::municipal::{
    check, check_bytes, check_document, from_fhir, parse_conforming, precheck, to_fhir, translate,
    translate_text,
};
use serde_json::Value;

fn bench(c: &mut Criterion) {
    let v = Validator::shared_embedded().expect("definitions");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/municipal/haderslev-hjortebro-intervention.json"
    );
    let bytes = std::fs::read(path).expect("fixture");
    let doc: Value = serde_json::from_slice(&bytes).expect("JSON");
    let (rec, _) = check_document(&doc, &v.terminology).expect("valid record");
    let bundle = to_fhir::to_bundle(&rec, &v.terminology);
    let entries = bundle["entry"].as_array().map_or(0, Vec::len);
    eprintln!(
        "typical record: {} bytes, {} goals, {} interventions, {} meetings -> {entries} resources",
        bytes.len(),
        rec.goals.len(),
        rec.interventions.len(),
        rec.meetings.len()
    );

    let mut g = c.benchmark_group("municipal");
    g.bench_function("record to validated bundle (whole, one parse)", |b| {
        b.iter(|| {
            let (rec, _) = check_bytes(&bytes, &v.terminology).expect("valid");
            translate_text(&rec, &v).expect("valid FHIR")
        })
    });
    g.bench_function(
        "record to validated bundle (whole, via Value and jsonschema)",
        |b| {
            b.iter(|| {
                let doc: Value = serde_json::from_slice(&bytes).expect("JSON");
                let (rec, _) = check_document(&doc, &v.terminology).expect("valid");
                translate_text(&rec, &v).expect("valid FHIR")
            })
        },
    );
    g.bench_function("record to validated bundle (whole, as Value)", |b| {
        b.iter(|| {
            let doc: Value = serde_json::from_slice(&bytes).expect("JSON");
            let (rec, _) = check_document(&doc, &v.terminology).expect("valid");
            translate(&rec, &v).expect("valid FHIR")
        })
    });
    g.bench_function("parse", |b| {
        b.iter(|| serde_json::from_slice::<Value>(&bytes).expect("JSON"))
    });
    g.bench_function("parse into the record, schema's checks on it", |b| {
        b.iter(|| parse_conforming(&bytes).expect("conforms"))
    });
    g.bench_function("json schema", |b| b.iter(|| check::schema(&doc)));
    g.bench_function("schema, typed record and rules", |b| {
        b.iter(|| check_document(&doc, &v.terminology).expect("valid"))
    });
    g.bench_function("rules", |b| b.iter(|| check::rules(&rec, &v.terminology)));
    g.bench_function("map to bundle text", |b| {
        b.iter(|| to_fhir::write_bundle(&rec, &v.terminology))
    });
    g.bench_function("map to bundle value", |b| {
        b.iter(|| to_fhir::to_bundle(&rec, &v.terminology))
    });
    g.bench_function("precheck (what the mapping cannot vouch for)", |b| {
        b.iter(|| precheck::check(&rec, &v.terminology).expect("clean"))
    });
    g.bench_function("validate bundle resources (full validator)", |b| {
        b.iter(|| {
            bundle["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| v.validate(&e["resource"], &[]).len())
                .sum::<usize>()
        })
    });
    g.bench_function("reverse (bundle to record)", |b| {
        b.iter(|| from_fhir::from_bundle(&bundle).expect("record"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
