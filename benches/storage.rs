//! Storage through the engine on SQLite: create, read and a chained search, without HTTP.
//! `cargo bench --bench storage`; figures in docs/benchmarks.md.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use sektorbro::config::Config;
use sektorbro::engine::{Engine, WriteOp};
use serde_json::json;

fn engine(rt: &tokio::runtime::Runtime, dir: &std::path::Path, sync: &str) -> Engine {
    let config = Config::defaults();
    let url = format!("sqlite://{}", dir.join("bench.db").display());
    let store = rt
        .block_on(sektorbro::store::open(&url, 4, sync, &config.cache))
        .expect("open store");
    Engine::new(store, config.search)
}

fn careplan(pid: &str) -> serde_json::Value {
    json!({"resourceType": "CarePlan", "status": "active", "intent": "plan",
        "subject": {"reference": format!("Patient/{pid}")},
        "period": {"start": "2024-03-01", "end": "2024-05-15"},
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "736353004"}]}],
        "goal": [{"reference": "Goal/g1"}, {"reference": "Goal/g2"}]})
}

fn bench(c: &mut Criterion) {
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
        let e = Arc::new(engine(&rt, &sub, sync));
        c.bench_function(
            &format!("create CarePlan (sqlite, synchronous={sync})"),
            |b| {
                b.iter(|| {
                    rt.block_on(e.write(WriteOp::Create {
                        rtype: "CarePlan".into(),
                        resource: careplan("p1"),
                        if_none_exist: None,
                    }))
                    .expect("create")
                })
            },
        );
    }
    let e = engine(&rt, dir.path(), "normal");
    let mut pid = String::new();
    for n in 0..500 {
        let p = rt
            .block_on(e.write(WriteOp::Create {
                rtype: "Patient".into(),
                resource: json!({"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": format!("{n:010}")}]}),
                if_none_exist: None,
            }))
            .expect("patient");
        rt.block_on(e.write(WriteOp::Create {
            rtype: "CarePlan".into(),
            resource: careplan(&p.id),
            if_none_exist: None,
        }))
        .expect("plan");
        if n == 250 {
            pid = p.id;
        }
    }
    c.bench_function("read Patient (sqlite)", |b| {
        b.iter(|| rt.block_on(e.read("Patient", &pid)).expect("read"))
    });
    let q = e
        .parse_criteria(
            "CarePlan",
            "patient.identifier=urn:oid:1.2.208.176.1.2|0000000250",
            false,
        )
        .expect("query");
    c.bench_function(
        "search CarePlan by CPR chain (sqlite, 1000 resources)",
        |b| {
            b.iter(|| {
                rt.block_on(e.search(&q, "http://bench/fhir"))
                    .expect("search")
            })
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
