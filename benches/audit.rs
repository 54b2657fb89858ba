//! The audit writer's work per event, phase by phase: AuditRecord → AuditEvent JSON, the JSON
//! serialized, its search index entries, and a batch of 256 written through
//! `Engine::append_internal` on SQLite (synchronous=full). `cargo bench --bench audit`;
//! figures in docs/benchmarks.md.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use fhir_core::fhir::search_params::SearchParamRegistry;
use sektorbro::audit::{to_audit_event, AuditRecord, Interaction, PatientRef, Who};
use sektorbro::config::Config;
use sektorbro::engine::Engine;
use serde_json::json;

/// What the middleware records for an authenticated read of a Patient.
fn read_record() -> AuditRecord {
    let mut r = AuditRecord::new(Interaction::Read, 200);
    r.who = Some(Who {
        client_id: "kommune-0101-epj".into(),
        name: Some("Københavns Kommune EPJ".into()),
        kind: Some("municipality".into()),
        auth_method: Some("mtls".into()),
        organizations: vec!["urn:oid:1.2.208.176.1.1|123456789".into()],
        reference: None,
    });
    r.peer = Some("127.0.0.1".into());
    r.resource_type = Some("Patient".into());
    r.resource = Some("Patient/p-1".into());
    r.patient = Some(PatientRef::Reference("Patient/p-1".into()));
    r.request_id = Some("7f0c2a4e-1b9d-4c3e-8a51-0d2f6b7e9a13".into());
    r
}

fn bench(c: &mut Criterion) {
    let registry = SearchParamRegistry::embedded();
    let record = read_record();
    let mut ev = to_audit_event(&record, "https://gw.example.dk/fhir");
    ev["id"] = json!("2a0c3b1e-0000-4000-8000-000000000001");
    let index = registry.extract(&ev);
    eprintln!(
        "one read's AuditEvent: {} bytes of JSON, {} index entries",
        serde_json::to_string(&ev).map_or(0, |s| s.len()),
        index.len()
    );
    let mut by_param = std::collections::BTreeMap::<&str, usize>::new();
    for e in &index {
        *by_param.entry(e.param.as_str()).or_default() += 1;
    }
    eprintln!("index entries by parameter: {by_param:?}");

    c.bench_function("audit: record -> AuditEvent JSON", |b| {
        b.iter(|| to_audit_event(&record, "https://gw.example.dk/fhir"))
    });
    c.bench_function("audit: AuditEvent serialized", |b| {
        b.iter(|| serde_json::to_string(&ev).expect("json"))
    });
    c.bench_function("audit: AuditEvent index entries", |b| {
        b.iter(|| registry.extract(&ev))
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _context = rt.enter();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config::defaults();
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let store = rt
        .block_on(sektorbro::store::open(&url, 4, "full", 5000, &config.cache))
        .expect("open store");
    let engine = Engine::new(store, config.search);
    let mut group = c.benchmark_group("audit");
    group.sample_size(20);
    group.bench_function("append_internal 256 AuditEvents (sqlite, full)", |b| {
        b.iter_batched(
            || {
                (0..256)
                    .map(|_| {
                        let mut ev = to_audit_event(&record, "https://gw.example.dk/fhir");
                        ev["id"] = json!(fhir_core::fhir::new_id());
                        ("AuditEvent".to_string(), ev)
                    })
                    .collect::<Vec<_>>()
            },
            |events| rt.block_on(engine.append_internal(events)).expect("append"),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
