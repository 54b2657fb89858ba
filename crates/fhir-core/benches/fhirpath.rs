//! Compile and evaluate timings for typical R4 invariants on a typical resource.
//! Uses the R4 package's StructureDefinitions for the model when available
//! (SEKTORBRO_SHARED or ../shared beside the checkout), otherwise the JSON-only model.

use std::hint::black_box;
use std::io::Read;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use fhir_core::fhirpath::{
    compile, evaluate_boolean, EvalContext, JsonOnlyModel, ModelInfo, Node, SnapshotModel,
};
use serde_json::{json, Value as Json};

pub const INVARIANTS: &[(&str, &str)] = &[
    ("ele-1", "hasValue() or (children().count() > id.count())"),
    ("dom-3", "contained.where((('#'+id in (%resource.descendants().reference | %resource.descendants().as(canonical) | %resource.descendants().as(uri) | %resource.descendants().as(url))) or descendants().where(reference = '#').exists() or descendants().where(as(canonical) = '#').exists() or descendants().where(as(canonical) = '#').exists()).not()).trace('unmatched', id).empty()"),
    ("pat-1", "name.exists() or telecom.exists() or address.exists() or organization.exists()"),
    ("where-exists", "telecom.where(system = 'phone' and use = 'mobile').exists() implies telecom.where(system = 'phone').value.matches('^[0-9+ ]+$').allTrue()"),
    ("obs-6", "dataAbsentReason.empty() or value.empty()"),
];

fn patient() -> Json {
    json!({
      "resourceType": "Patient", "id": "example",
      "meta": {"lastUpdated": "2024-01-01T10:00:00Z"},
      "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Peter</div>"},
      "identifier": [{"use": "usual", "system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345",
                      "period": {"start": "2001-05-06"}, "assigner": {"display": "Acme Healthcare"}}],
      "active": true,
      "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]},
               {"use": "usual", "given": ["Jim"]}],
      "telecom": [{"system": "phone", "value": "+45 1234 5678", "use": "mobile", "rank": 1},
                  {"system": "email", "value": "p@example.org", "use": "home"}],
      "gender": "male",
      "birthDate": "1974-12-25",
      "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                                     "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
      "address": [{"use": "home", "line": ["534 Erewhon St"], "city": "PleasantVille", "postalCode": "3999"}],
      "contained": [{"resourceType": "Organization", "id": "org1", "name": "Acme"}],
      "managingOrganization": {"reference": "#org1"}
    })
}

fn model() -> Box<dyn ModelInfo> {
    let base = std::env::var_os("SEKTORBRO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let p = base.join("fhir-packages/hl7.fhir.r4.examples-4.0.1.tgz");
    let Ok(file) = std::fs::File::open(p) else {
        return Box::new(JsonOnlyModel);
    };
    let mut sds = Vec::new();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    if let Ok(entries) = ar.entries() {
        for mut e in entries.flatten() {
            let name = e
                .path()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !name.contains("StructureDefinition-") {
                continue;
            }
            let mut s = String::new();
            if e.read_to_string(&mut s).is_ok() {
                if let Ok(j) = serde_json::from_str::<Json>(&s) {
                    sds.push(j);
                }
            }
        }
    }
    Box::new(SnapshotModel::from_structure_definitions(&sds))
}

fn bench(c: &mut Criterion) {
    let model = model();
    let res = patient();
    for (name, src) in INVARIANTS {
        c.bench_function(&format!("compile {name}"), |b| {
            b.iter(|| compile(black_box(src)))
        });
        let expr = compile(src).expect("benchmark invariants compile");
        let ctx = EvalContext::new(model.as_ref(), &res);
        c.bench_function(&format!("evaluate {name} (Patient)"), |b| {
            b.iter(|| evaluate_boolean(black_box(&expr), &ctx))
        });
    }
    // ele-1 on one small element (how it runs in validation: once per element)
    let expr = compile(INVARIANTS[0].1).expect("ele-1 compiles");
    let telecom = &res["telecom"][0];
    let ctx = EvalContext::new(model.as_ref(), &res).with_focus(Node::element(
        telecom,
        "ContactPoint",
        "ContactPoint",
    ));
    c.bench_function("evaluate ele-1 (ContactPoint element)", |b| {
        b.iter(|| evaluate_boolean(black_box(&expr), &ctx))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
