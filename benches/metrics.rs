//! The metrics work the request middleware does for every request (`Metrics::observe`: the
//! request counter and the latency histogram), and rendering `/metrics`. `cargo bench --bench
//! metrics`; figures in docs/benchmarks.md.
//!
//! Instruction counts, which a shared machine does not disturb: build with `cargo bench --bench
//! metrics --no-run`, then run the binary under callgrind with `METRICS_OBSERVE=N` (N observations
//! after a warm-up, no criterion) twice, N = 0 and N = 100000; the difference of the two totals
//! divided by 100000 is the cost of one observation.

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use sektorbro::metrics::Metrics;

/// Route labels and statuses as a busy gateway sees them.
const ROUTES: [&str; 4] = [
    "/fhir/{type}/{id}",
    "/fhir/{type}",
    "/municipal/v1/care-records",
    "/fhir/{type}/{id}/_history/{vid}",
];

fn one(m: &Metrics, i: usize) {
    let status = if i & 8 == 0 { 200 } else { 404 };
    let method = if i & 16 == 0 { "GET" } else { "POST" };
    m.observe(
        black_box(ROUTES[i & 3]),
        black_box(method),
        black_box(status),
        black_box(Duration::from_micros(300 + (i as u64 & 1023))),
    );
}

fn bench(c: &mut Criterion) {
    let m = Metrics::default();
    for i in 0..64 {
        one(&m, i);
    }
    let mut i = 0usize;
    c.bench_function("metrics: observe one request", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            one(&m, i);
        })
    });
    c.bench_function("metrics: render (16 series)", |b| {
        b.iter(|| black_box(m.render()))
    });
}

fn main() {
    if let Some(n) = std::env::var("METRICS_OBSERVE")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        let m = Metrics::default();
        for i in 0..64 {
            one(&m, i);
        }
        for i in 0..n {
            one(&m, i);
        }
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
