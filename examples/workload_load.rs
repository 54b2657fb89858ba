//! Loads the realistic workload's data set through the REST API (`scripts/workload.sh`): for each
//! citizen `n` in `0..CITIZENS`, one transaction Bundle of ten resources, written with `PUT` at
//! ids the mix script can compute (`wl-p-n`, `wl-cp-n`, …):
//!
//! Patient, Encounter, two Conditions, a CarePlan that addresses them and names its three Goals,
//! and two Observations. 100,000 citizens make one million resources.
//!
//! ```text
//! cargo run --release --example workload_load -- BASE_URL TOKEN CITIZENS [CONCURRENCY] [FIRST]
//! ```
//!
//! The CPR number of citizen `n` is `cpr(n)` below; `scripts/workload.lua` computes the same.
//! Only loopback addresses are accepted: this tool is for benchmarks on the local machine.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Resources written per citizen.
const PER_CITIZEN: usize = 10;

/// A CPR number unique per citizen: day 1–28, month 1–12 and year 00–99 cycle, and the serial
/// number counts the cycles, so every `n` below 336 million gets its own.
fn cpr(n: usize) -> String {
    let day = 1 + n % 28;
    let month = 1 + (n / 28) % 12;
    let year = (n / 336) % 100;
    let serial = n / 33_600;
    format!("{day:02}{month:02}{year:02}{serial:04}")
}

fn entry(resource: String, kind: &str, id: &str) -> String {
    format!(
        r#"{{"fullUrl":"{kind}/{id}","resource":{resource},"request":{{"method":"PUT","url":"{kind}/{id}"}}}}"#
    )
}

/// The transaction Bundle of citizen `n`.
fn bundle(n: usize) -> String {
    let p = format!("wl-p-{n}");
    let subject = format!(r#"{{"reference":"Patient/{p}"}}"#);
    let cpr = cpr(n);
    let gender = if n.is_multiple_of(2) {
        "female"
    } else {
        "male"
    };
    let mut entries = Vec::with_capacity(PER_CITIZEN);
    entries.push(entry(
        format!(
            r#"{{"resourceType":"Patient","id":"{p}","identifier":[{{"system":"urn:oid:1.2.208.176.1.2","value":"{cpr}"}}],"name":[{{"family":"Borger{n}","given":["Test"]}}],"gender":"{gender}"}}"#
        ),
        "Patient",
        &p,
    ));
    let e = format!("wl-e-{n}");
    entries.push(entry(
        format!(
            r#"{{"resourceType":"Encounter","id":"{e}","status":"in-progress","class":{{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HH","display":"home health"}},"subject":{subject},"period":{{"start":"2026-0{m}-1{d}T08:00:00+01:00"}}}}"#,
            m = 1 + n % 9,
            d = n % 10
        ),
        "Encounter",
        &e,
    ));
    for c in 1..=2 {
        let id = format!("wl-c{c}-{n}");
        entries.push(entry(
            format!(
                r#"{{"resourceType":"Condition","id":"{id}","clinicalStatus":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}}]}},"code":{{"text":"Nedsat funktionsevne {c}"}},"subject":{subject}}}"#
            ),
            "Condition",
            &id,
        ));
    }
    for g in 1..=3 {
        let id = format!("wl-g{g}-{n}");
        entries.push(entry(
            format!(
                r#"{{"resourceType":"Goal","id":"{id}","lifecycleStatus":"active","achievementStatus":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/goal-achievement","code":"in-progress"}}]}},"description":{{"text":"Delmål {g}: gå 100 meter med rollator"}},"subject":{subject}}}"#
            ),
            "Goal",
            &id,
        ));
    }
    let cp = format!("wl-cp-{n}");
    entries.push(entry(
        format!(
            r#"{{"resourceType":"CarePlan","id":"{cp}","status":"active","intent":"plan","title":"Rehabiliteringsforløb","subject":{subject},"encounter":{{"reference":"Encounter/{e}"}},"addresses":[{{"reference":"Condition/wl-c1-{n}"}},{{"reference":"Condition/wl-c2-{n}"}}],"goal":[{{"reference":"Goal/wl-g1-{n}"}},{{"reference":"Goal/wl-g2-{n}"}},{{"reference":"Goal/wl-g3-{n}"}}]}}"#
        ),
        "CarePlan",
        &cp,
    ));
    for o in 1..=2 {
        let id = format!("wl-o{o}-{n}");
        entries.push(entry(
            format!(
                r#"{{"resourceType":"Observation","id":"{id}","status":"final","category":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}}]}}],"code":{{"coding":[{{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}}]}},"subject":{subject},"effectiveDateTime":"2026-02-0{o}T10:00:00+01:00","valueQuantity":{{"value":{v},"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}}}"#,
                v = 60 + n % 40
            ),
            "Observation",
            &id,
        ));
    }
    format!(
        r#"{{"resourceType":"Bundle","type":"transaction","entry":[{}]}}"#,
        entries.join(",")
    )
}

fn usage() -> ! {
    eprintln!("usage: workload_load BASE_URL TOKEN CITIZENS [CONCURRENCY] [FIRST]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        usage();
    }
    let base = args[0].trim_end_matches('/').to_string();
    let host_ok = ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"]
        .iter()
        .any(|p| base.starts_with(p));
    if !host_ok {
        eprintln!("workload_load: only loopback addresses, got {base}");
        std::process::exit(2);
    }
    let token = args[1].clone();
    let citizens: usize = args[2].parse().unwrap_or_else(|_| usage());
    let concurrency: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(8);
    let first: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(0);

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap_or_else(|e| {
            eprintln!("workload_load: {e}");
            std::process::exit(1)
        });
    let next = Arc::new(AtomicUsize::new(first));
    let done = Arc::new(AtomicUsize::new(0));
    let end = first + citizens;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next, done, base, token) = (
            client.clone(),
            next.clone(),
            done.clone(),
            base.clone(),
            token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= end {
                    return Ok::<(), String>(());
                }
                let response = client
                    .post(format!("{base}/"))
                    .bearer_auth(&token)
                    .header("Content-Type", "application/fhir+json")
                    .header("Prefer", "return=minimal")
                    .body(bundle(n))
                    .send()
                    .await
                    .map_err(|e| format!("citizen {n}: {e}"))?;
                let status = response.status();
                if !status.is_success() {
                    let text = response.text().await.unwrap_or_default();
                    return Err(format!("citizen {n}: HTTP {status}: {text}"));
                }
                let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                if finished % 5_000 == 0 {
                    let secs = started.elapsed().as_secs_f64();
                    eprintln!(
                        "  {finished} citizens, {:.0} resources/s",
                        (finished * PER_CITIZEN) as f64 / secs
                    );
                }
            }
        }));
    }
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                eprintln!("workload_load: {message}");
                std::process::exit(1);
            }
            Err(e) => {
                eprintln!("workload_load: {e}");
                std::process::exit(1);
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "loaded {citizens} citizens ({} resources) in {secs:.1} s: {:.0} resources/s",
        citizens * PER_CITIZEN,
        (citizens * PER_CITIZEN) as f64 / secs
    );
}
