//! Storage through the engine on SQLite: create, read and a chained search, without HTTP.
//! `cargo bench --bench storage`; figures in docs/benchmarks.md.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use sektorbro::config::Config;
use sektorbro::engine::{Engine, WriteOp};
use serde_json::json;

fn engine(rt: &tokio::runtime::Runtime, dir: &std::path::Path, sync: &str, cache: bool) -> Engine {
    let mut config = Config::defaults();
    config.cache.enabled = cache;
    let url = format!("sqlite://{}", dir.join("bench.db").display());
    let store = rt
        .block_on(sektorbro::store::open(&url, 4, sync, 5000, &config.cache))
        .expect("open store");
    let engine = Engine::new(store, config.search);
    if cache {
        engine.with_page_cache(&config.cache)
    } else {
        engine
    }
}

fn careplan(pid: &str) -> serde_json::Value {
    json!({"resourceType": "CarePlan", "status": "active", "intent": "plan",
        "subject": {"reference": format!("Patient/{pid}")},
        "period": {"start": "2024-03-01", "end": "2024-05-15"},
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "736353004"}]}],
        "goal": [{"reference": "Goal/g1"}, {"reference": "Goal/g2"}]})
}

fn bench(c: &mut Criterion) {
    let gw = sektorbro::engine::Access::gateway();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Pool connections are returned on drop, which needs the runtime.
    let _context = rt.enter();
    let dir = tempfile::tempdir().expect("tempdir");
    for sync in ["full", "normal"] {
        let sub = dir.path().join(sync);
        std::fs::create_dir_all(&sub).expect("dir");
        let e = Arc::new(engine(&rt, &sub, sync, true));
        c.bench_function(
            &format!("create CarePlan (sqlite, synchronous={sync})"),
            |b| {
                b.iter(|| {
                    rt.block_on(e.write(
                        &gw,
                        WriteOp::Create {
                            rtype: fhir_core::fhir::ResourceType::CARE_PLAN,
                            resource: careplan("p1"),
                            if_none_exist: None,
                        },
                    ))
                    .expect("create")
                })
            },
        );
    }
    // 32 clients at once, as in the HTTP load test: group commit shares round trips and fsyncs.
    let e = Arc::new(engine(&rt, &dir.path().join("full"), "full", true));
    c.bench_function(
        "create CarePlan x32 concurrent (sqlite, synchronous=full)",
        |b| {
            b.iter(|| {
                rt.block_on(async {
                    let tasks: Vec<_> = (0..32)
                        .map(|_| {
                            let e = e.clone();
                            let gw = sektorbro::engine::Access::gateway();
                            tokio::spawn(async move {
                                e.write(
                                    &gw,
                                    WriteOp::Create {
                                        rtype: fhir_core::fhir::ResourceType::CARE_PLAN,
                                        resource: careplan("p1"),
                                        if_none_exist: None,
                                    },
                                )
                                .await
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("task").expect("create");
                    }
                })
            })
        },
    );
    let e = engine(&rt, dir.path(), "normal", false);
    let mut pid = String::new();
    for n in 0..500 {
        let p = rt
            .block_on(e.write(&gw, WriteOp::Create {
                rtype: fhir_core::fhir::ResourceType::PATIENT,
                resource: json!({"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": format!("{n:010}")}]}),
                if_none_exist: None,
            }))
            .expect("patient");
        rt.block_on(e.write(
            &gw,
            WriteOp::Create {
                rtype: fhir_core::fhir::ResourceType::CARE_PLAN,
                resource: careplan(&p.id),
                if_none_exist: None,
            },
        ))
        .expect("plan");
        if n == 250 {
            pid = p.id;
        }
    }
    // The same database, once without and once with the caches.
    let cached = engine(&rt, dir.path(), "normal", true);
    for (label, e) in [("no cache", &e), ("cached", &cached)] {
        c.bench_function(&format!("read Patient (sqlite, {label})"), |b| {
            b.iter(|| {
                rt.block_on(e.read(&gw, fhir_core::fhir::ResourceType::PATIENT, &pid))
                    .expect("read")
            })
        });
        let q = e
            .parse_criteria(
                fhir_core::fhir::ResourceType::CARE_PLAN,
                "patient.identifier=urn:oid:1.2.208.176.1.2|0000000250",
                false,
            )
            .expect("query");
        c.bench_function(
            &format!("search CarePlan by CPR chain (sqlite, 1000 resources, {label})"),
            |b| {
                b.iter(|| {
                    rt.block_on(e.search(&gw, &q, "http://bench/fhir"))
                        .expect("search")
                })
            },
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
