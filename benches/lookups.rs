//! Cached lookups: the cost of a hit (goal: under 1 µs), and a load run that counts upstream
//! calls per 10,000 lookups with a realistic key distribution, against a wiremock registry on
//! loopback. `cargo bench --bench lookups`; figures in docs/lookups.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use futures_util::FutureExt as _;
use sektorbro::config::Config;
use sektorbro::lookup::{Identifier, LookupCache, Lookups, Settings};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const CPR: &str = "urn:oid:1.2.208.176.1.2";

/// A registry that knows every CPR ending in 0-8 and none ending in 9, answering after `delay`.
async fn registry(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/Patient"))
        .respond_with(move |req: &Request| {
            let identifier = req
                .url
                .query_pairs()
                .find(|(k, _)| k == "identifier")
                .map(|(_, v)| v.to_string())
                .unwrap_or_default();
            let value = identifier
                .rsplit('|')
                .next()
                .unwrap_or_default()
                .to_string();
            let entries: Vec<Value> = if value.ends_with('9') {
                vec![]
            } else {
                vec![json!({"resource": {"resourceType": "Patient", "id": value,
                    "identifier": [{"system": CPR, "value": value}],
                    "name": [{"family": "Jensen", "given": ["Ebba"]}], "birthDate": "1945-01-01"},
                    "search": {"mode": "match"}})]
            };
            ResponseTemplate::new(200)
                .set_body_json(
                    json!({"resourceType": "Bundle", "type": "searchset", "entry": entries}),
                )
                .set_delay(delay)
        })
        .mount(&server)
        .await;
    server
}

fn lookups(base: &str) -> Lookups {
    let mut config = Config::defaults();
    config.lookups.patients.base_url = base.to_string();
    Lookups::from_config(&config.lookups).expect("lookups")
}

fn hits(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = rt.enter();

    let cache = LookupCache::<Arc<Value>>::new(
        "bench",
        Settings {
            capacity: 10_000,
            ttl: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(60),
            max_stale: Duration::from_secs(3600),
        },
    );
    let key = format!("{CPR}|0101451234");
    rt.block_on(cache.get(&key, || async { Ok(Some(Arc::new(json!({"id": "p"})))) }))
        .expect("fill");
    c.bench_function("lookup/cache_hit", |b| {
        b.iter(|| {
            cache
                .get(&key, || async { Ok(None) })
                .now_or_never()
                .expect("a hit completes at once")
                .expect("hit")
        })
    });

    let server = rt.block_on(registry(Duration::ZERO));
    let l = lookups(&server.uri());
    let id = Identifier::new(CPR, "0101451234").expect("cpr");
    rt.block_on(l.patient_by_identifier(&id)).expect("fill");
    c.bench_function("lookup/patient_by_identifier_hit", |b| {
        b.iter(|| {
            l.patient_by_identifier(&id)
                .now_or_never()
                .expect("a hit completes at once")
                .expect("hit")
        })
    });
}

/// 10,000 keys from 500 CPRs with Zipf (s = 1) popularity — a few citizens are looked up often
/// (active care plans), most rarely — in a fixed interleaving, so runs are comparable. The
/// `k`-th most popular CPR appears `n / (k · H)` times (H the harmonic number), rounded down
/// (so every one of them appears); the remainder goes to the most popular one.
fn zipf_keys(n: usize, distinct: usize) -> Vec<String> {
    let harmonic: f64 = (1..=distinct).map(|k| 1.0 / k as f64).sum();
    let mut ranks: Vec<usize> = (0..distinct)
        .flat_map(|k| {
            let times = (n as f64 / ((k + 1) as f64 * harmonic)).floor() as usize;
            std::iter::repeat_n(k, times)
        })
        .take(n)
        .collect();
    ranks.resize(n, 0);
    // A stride coprime with n visits every position once: popular keys spread through the run.
    let stride = 7919;
    (0..n)
        .map(|i| format!("{:010}", 101_450_000 + ranks[(i * stride) % n]))
        .collect()
}

/// 10,000 lookups by 50 concurrent callers against a registry answering in 5 ms: how many
/// upstream calls they cost.
fn load(_c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let server = registry(Duration::from_millis(5)).await;
        let l = Arc::new(lookups(&server.uri()));
        let keys = Arc::new(zipf_keys(10_000, 500));
        let mut distinct = keys.to_vec();
        distinct.sort();
        distinct.dedup();
        let start = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..50 {
            let (l, keys) = (l.clone(), keys.clone());
            tasks.push(tokio::spawn(async move {
                for k in keys.iter().skip(t).step_by(50) {
                    let id = Identifier::new(CPR, k).expect("cpr");
                    l.patient_by_identifier(&id).await.expect("lookup");
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        let elapsed = start.elapsed();
        let calls = server.received_requests().await.map_or(0, |r| r.len());
        let mut registry = sektorbro::metrics::Metrics::default();
        l.register_metrics(registry.registry());
        let metrics = registry.render();
        let coalesced = metrics
            .lines()
            .find(|l| l.starts_with("sektorbro_lookup_coalesced_waits_total"))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or("?")
            .to_string();
        println!(
            "lookup/load: 10000 lookups, {} distinct CPRs (Zipf s=1 over 500; CPRs ending in 9 unknown), 50 concurrent callers, registry latency 5 ms: {calls} upstream calls, {coalesced} coalesced waits, {:.0} ms",
            distinct.len(),
            elapsed.as_secs_f64() * 1e3
        );
    });
}

criterion_group!(benches, hits, load);
criterion_main!(benches);
