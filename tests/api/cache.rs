//! The storage caches (`[cache]`, on by default) never show a reader less than what a completed
//! write wrote: on one instance at once, and on another instance sharing the PostgreSQL schema
//! as soon as the write's notification arrives.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{match_ids, spawn_app, Db, TestApp};
use crate::on_both_backends;

fn patient(cpr: &str, family: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": cpr}],
        "name": [{"family": family}]
    })
}

fn careplan(subject: &str) -> Value {
    json!({"resourceType": "CarePlan", "status": "active", "intent": "plan",
        "subject": {"reference": subject}})
}

async fn status_of(app: &TestApp, path: &str) -> u16 {
    app.get(path).await.status().as_u16()
}

async fn reads_see_every_completed_write(app: TestApp) {
    let created = app.create(&patient("0101011234", "Hansen")).await;
    let id = created["id"].as_str().expect("id").to_string();
    let path = format!("Patient/{id}");
    // Read twice so that the second is answered from the cache.
    for _ in 0..2 {
        let r = app.get_json(&path, 200).await;
        assert_eq!(r["meta"]["versionId"], "1");
    }
    let mut next = created.clone();
    next["name"] = json!([{"family": "Jensen"}]);
    assert_eq!(app.put(&path, &next).await.status().as_u16(), 200);
    let r = app.get_json(&path, 200).await;
    assert_eq!(r["meta"]["versionId"], "2");
    assert_eq!(r["name"][0]["family"], "Jensen");
    // Versions stay readable (and cacheable) after the resource moved on.
    for _ in 0..2 {
        let v1 = app.get_json(&format!("{path}/_history/1"), 200).await;
        assert_eq!(v1["name"][0]["family"], "Hansen");
    }
    assert_eq!(app.delete(&path).await.status().as_u16(), 204);
    assert_eq!(status_of(&app, &path).await, 410);
    // Re-created by PUT with the same id.
    let mut again = next.clone();
    again["name"] = json!([{"family": "Berg"}]);
    assert_eq!(app.put(&path, &again).await.status().as_u16(), 201);
    let r = app.get_json(&path, 200).await;
    assert_eq!(r["meta"]["versionId"], "4");
    assert_eq!(r["name"][0]["family"], "Berg");
}

async fn searches_see_writes_to_their_type_and_to_chain_targets(app: TestApp) {
    let p = app.create(&patient("0202021234", "Holm")).await;
    let pid = p["id"].as_str().expect("id").to_string();
    let plan = app.create(&careplan(&format!("Patient/{pid}"))).await;
    let chain = "CarePlan?patient.identifier=urn:oid:1.2.208.176.1.2|0202021234";
    for _ in 0..2 {
        let b = app.get_json(chain, 200).await;
        assert_eq!(match_ids(&b), vec![plan["id"].as_str().expect("id")]);
    }
    let count = "CarePlan?patient.identifier=urn:oid:1.2.208.176.1.2|0202021234&_summary=count";
    assert_eq!(app.get_json(count, 200).await["total"], 1);
    // A new plan for the same citizen: a write to the searched type.
    let plan2 = app.create(&careplan(&format!("Patient/{pid}"))).await;
    let b = app.get_json(chain, 200).await;
    assert_eq!(match_ids(&b).len(), 2, "{b}");
    assert!(match_ids(&b).contains(&plan2["id"].as_str().expect("id").to_string()));
    assert_eq!(app.get_json(count, 200).await["total"], 2);
    // The citizen's CPR number changes: a write to the chain's target type only.
    let mut moved = p.clone();
    moved["identifier"][0]["value"] = json!("0303031234");
    let res = app.put(&format!("Patient/{pid}"), &moved).await;
    assert_eq!(res.status().as_u16(), 200);
    let b = app.get_json(chain, 200).await;
    assert!(match_ids(&b).is_empty(), "{b}");
    assert_eq!(app.get_json(count, 200).await["total"], 0);
    // `_revinclude` answers follow writes of the included type.
    let path = format!("Patient?_id={pid}&_revinclude=CarePlan:subject");
    let before = app.get_json(&path, 200).await["entry"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(before, 3);
    app.create(&careplan(&format!("Patient/{pid}"))).await;
    let after = app.get_json(&path, 200).await["entry"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(after, 4);
}

on_both_backends!(
    reads_see_every_completed_write,
    searches_see_writes_to_their_type_and_to_chain_targets,
);

/// Poll `path` on `app` until `check` accepts the body, for at most `within`; the time it took.
async fn eventually(
    app: &TestApp,
    path: &str,
    within: Duration,
    check: impl Fn(u16, &Value) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let res = app.get(path).await;
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        if check(status, &body) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{path} on the second instance still shows {status} {body} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Two instances on one PostgreSQL schema: what A writes, B shows within moments (by
/// notification), far sooner than `cache.max_staleness_secs` (30 s) would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_sees_writes_after_its_notification() {
    let Some(a) = spawn_app(Db::Postgres).await else {
        return;
    };
    let b = a.sibling().await.expect("a second PostgreSQL instance");
    let bound = Duration::from_secs(5);

    let created = a.create(&patient("0404041234", "Lund")).await;
    let id = created["id"].as_str().expect("id").to_string();
    let path = format!("Patient/{id}");
    let chain = "Patient?identifier=urn:oid:1.2.208.176.1.2|0404041234";
    // B caches version 1 and the search that finds it.
    for _ in 0..2 {
        assert_eq!(b.get_json(&path, 200).await["meta"]["versionId"], "1");
        assert_eq!(match_ids(&b.get_json(chain, 200).await), vec![id.clone()]);
    }

    let mut next = created.clone();
    next["name"] = json!([{"family": "Dahl"}]);
    assert_eq!(a.put(&path, &next).await.status().as_u16(), 200);
    eventually(&b, &path, bound, |s, v| {
        s == 200 && v["meta"]["versionId"] == "2" && v["name"][0]["family"] == "Dahl"
    })
    .await;

    let other = a.create(&patient("0404041234", "Lund")).await;
    eventually(&b, chain, bound, |s, v| {
        s == 200 && match_ids(v).contains(&other["id"].as_str().unwrap_or_default().to_string())
    })
    .await;

    assert_eq!(a.delete(&path).await.status().as_u16(), 204);
    eventually(&b, &path, bound, |s, _| s == 410).await;

    // And the other way round, with B's write checked by A's optimistic lock.
    let mut revived = next.clone();
    revived["name"] = json!([{"family": "Ny"}]);
    assert_eq!(b.put(&path, &revived).await.status().as_u16(), 201);
    eventually(&a, &path, bound, |s, v| {
        s == 200 && v["meta"]["versionId"] == "4"
    })
    .await;
}
