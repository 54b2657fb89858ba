//! Profile validation: mean time per official R4 example next to the time serde_json takes to
//! parse the same bytes (measured in the same run), loading the definitions (base R4, and with
//! dk-core and MedCom), and the memory they take. `cargo bench --bench validation`; needs the
//! R4 package and the IG folders beside the checkout (`../shared/`), else it says so and stops.
//! Figures in docs/validation.md.

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};
use fhir_core::validation::Validator;
use serde_json::{json, Value};

#[path = "support/r4_examples.rs"]
mod r4_examples;

fn shared() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    dir.is_dir().then_some(dir)
}

/// Resident memory of this process in MiB (Linux).
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<f64>().ok())
        })
        .map_or(0.0, |pages| pages * 4096.0 / (1024.0 * 1024.0))
}

/// Every JSON file of the package except the manifest, as bytes.
fn examples(shared: &Path) -> Vec<Vec<u8>> {
    r4_examples::example_bytes(
        &shared.join("fhir-packages/hl7.fhir.r4.examples-4.0.1.tgz"),
        1,
    )
}

fn bench(c: &mut Criterion) {
    let Some(shared) = shared() else {
        eprintln!("validation bench SKIPPED: ../shared (R4 package, IG folders) not found");
        return;
    };
    let before = rss_mib();
    let validator = Validator::r4().expect("definitions");
    eprintln!(
        "memory: base R4 definitions + terminology take {:.0} MiB resident",
        rss_mib() - before
    );
    let ig = shared.join("fhir-ig");
    let danish = [
        "dk-core",
        "medcom-terminology",
        "medcom-core",
        "medcom-messaging",
    ]
    .map(|p| ig.join(p));
    let before = rss_mib();
    let with_igs = Validator::with_packages(&danish).expect("IGs");
    eprintln!(
        "memory: a second validator with dk-core and MedCom takes {:.0} MiB resident",
        rss_mib() - before
    );
    drop(with_igs);

    let bytes = examples(&shared);
    let parsed: Vec<Value> = bytes
        .iter()
        .map(|b| serde_json::from_slice(b).expect("json"))
        .collect();
    let total: usize = bytes.iter().map(Vec::len).sum();
    eprintln!(
        "corpus: {} official R4 examples, {:.1} MB",
        bytes.len(),
        total as f64 / 1e6
    );

    let mut g = c.benchmark_group("r4-examples");
    g.sample_size(10);
    g.bench_function("serde_json parse, all examples", |b| {
        b.iter(|| {
            for x in &bytes {
                let v: Value = serde_json::from_slice(x).expect("json");
                criterion::black_box(v);
            }
        })
    });
    // what the gateway does with a body: one parse that also refuses duplicate keys, and the
    // scan for escaped control characters
    g.bench_function("strict parse + control scan, all examples", |b| {
        b.iter(|| {
            for x in &bytes {
                let v = fhir_core::fhir::json::parse_value(x).expect("json");
                criterion::black_box(fhir_core::fhir::json::escapes_control_character(x));
                criterion::black_box(v);
            }
        })
    });
    g.bench_function("validate, all examples", |b| {
        b.iter(|| {
            for v in &parsed {
                criterion::black_box(validator.validate(v, &[]));
            }
        })
    });
    g.finish();

    // One typical clinical resource on its own.
    let careplan: Value = serde_json::from_str(
        r#"{"resourceType":"CarePlan","id":"example","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Genoptræning efter udskrivning</div>"},
        "status":"active","intent":"plan","subject":{"reference":"Patient/p1"},"period":{"start":"2026-11-01"},
        "category":[{"coding":[{"system":"http://snomed.info/sct","code":"736353004"}]}],
        "goal":[{"reference":"Goal/g1"}],
        "activity":[{"detail":{"kind":"ServiceRequest","status":"in-progress","description":"Gangtræning 3 gange om ugen"}}]}"#,
    )
    .expect("careplan");
    c.bench_function("validate one CarePlan", |b| {
        b.iter(|| validator.validate(&careplan, &[]))
    });

    // Large resources: the time per entry should not grow with the resource's size (references
    // between Bundle entries, contained resources and dom-3 are looked up, not scanned).
    let mut g = c.benchmark_group("large");
    g.sample_size(10);
    for n in [1_000usize, 4_000] {
        let bundle = large_bundle(n);
        g.bench_function(format!("collection Bundle, {n} referencing pairs"), |b| {
            b.iter(|| validator.validate(&bundle, &[]))
        });
        let list = large_list(n);
        g.bench_function(format!("List with {n} contained"), |b| {
            b.iter(|| validator.validate(&list, &[]))
        });
        let response = large_response(n);
        g.bench_function(format!("QuestionnaireResponse, {n} items"), |b| {
            b.iter(|| validator.validate(&response, &[]))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("load");
    g.sample_size(10);
    g.bench_function("base R4", |b| b.iter(|| Validator::r4().expect("load")));
    g.bench_function("base R4 + dk-core + MedCom", |b| {
        b.iter(|| Validator::with_packages(&danish).expect("load"))
    });
    g.finish();
}

/// A collection Bundle of `n` Patients and `n` Observations, each pointing to one of them.
fn large_bundle(n: usize) -> Value {
    let url = |kind: &str, i: usize| format!("urn:uuid:00000000-0000-4000-8000-{kind}{i:011}");
    let mut entry: Vec<Value> = (0..n)
        .map(|i| json!({"fullUrl": url("0", i), "resource": {"resourceType": "Patient", "active": true}}))
        .collect();
    entry.extend((0..n).map(|i| {
        json!({"fullUrl": url("1", i), "resource": {"resourceType": "Observation", "status": "final",
            "code": {"text": "puls"}, "subject": {"reference": url("0", i)}}})
    }));
    json!({"resourceType": "Bundle", "type": "collection", "entry": entry})
}

/// A List of `n` contained Patients, each an entry of it.
fn large_list(n: usize) -> Value {
    json!({"resourceType": "List", "status": "current", "mode": "working",
        "contained": (0..n).map(|i| json!({"resourceType": "Patient", "id": format!("p{i}")})).collect::<Vec<_>>(),
        "entry": (0..n).map(|i| json!({"item": {"reference": format!("#p{i}")}})).collect::<Vec<_>>()})
}

/// A QuestionnaireResponse of `n` answered items, each enabled by the first item's answer, and
/// `n` items the Questionnaire does not have (its Questionnaire contained).
fn large_response(n: usize) -> Value {
    let enabled = json!([{"question": "a", "operator": "=", "answerBoolean": true}]);
    let mut q_items = vec![json!({"linkId": "a", "type": "boolean", "text": "Samtykke"})];
    q_items.extend((0..n).map(|i| {
        json!({"linkId": format!("i{i}"), "type": "string", "text": "Mål", "enableWhen": enabled})
    }));
    let mut items = vec![json!({"linkId": "a", "answer": [{"valueBoolean": true}]})];
    items.extend(
        (0..n).map(|i| json!({"linkId": format!("i{i}"), "answer": [{"valueString": "gå 100 m"}]})),
    );
    items.extend((0..n).map(|i| json!({"linkId": format!("x{i}")})));
    json!({"resourceType": "QuestionnaireResponse", "status": "completed", "questionnaire": "#q",
        "contained": [{"resourceType": "Questionnaire", "id": "q", "status": "active", "item": q_items}],
        "item": items})
}

criterion_group!(benches, bench);
criterion_main!(benches);
