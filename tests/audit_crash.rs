//! The gateway killed with SIGKILL in the middle of a write and read load: after a restart on
//! the same SQLite file, every request that was answered has its audit record — each
//! acknowledged create and update with the version it wrote (the record was in the write's own
//! transaction), each answered read (its record was committed before the response left); every
//! version stored, answered or not, has its record; and the hash chain verifies (`sektorbro
//! audit verify`, exit code 0) until a row is edited behind the gateway's back (exit code 1).

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use common::{dev_client, free_port, start, wait_ready};

/// What the clients saw answered: request id → the entity the write reported (None for reads).
type Answered = Arc<Mutex<HashMap<String, Option<String>>>>;

async fn load(client: reqwest::Client, port: u16, worker: usize, answered: Answered) {
    let base = format!("http://127.0.0.1:{port}/fhir");
    for n in 0.. {
        let rid = format!("c-{worker}-{n}");
        let Ok(res) = client
            .post(format!("{base}/Patient"))
            .header("content-type", "application/fhir+json")
            .header("x-request-id", &rid)
            .body(json!({"resourceType": "Patient", "active": true}).to_string())
            .send()
            .await
        else {
            return;
        };
        if res.status() != 201 {
            return;
        }
        let Some(location) = res
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(String::from)
        else {
            return;
        };
        // `…/fhir/Patient/{id}/_history/1`
        let entity = location
            .split("/fhir/")
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let id = entity.split('/').nth(1).unwrap_or_default().to_string();
        // The body may be lost if the process dies now; the status line came, so it counts.
        answered.lock().expect("lock").insert(rid, Some(entity));

        let rid = format!("u-{worker}-{n}");
        let Ok(res) = client
            .put(format!("{base}/Patient/{id}"))
            .header("content-type", "application/fhir+json")
            .header("x-request-id", &rid)
            .body(json!({"resourceType": "Patient", "id": id, "active": false}).to_string())
            .send()
            .await
        else {
            return;
        };
        if res.status() != 200 {
            return;
        }
        answered
            .lock()
            .expect("lock")
            .insert(rid, Some(format!("Patient/{id}/_history/2")));

        let rid = format!("r-{worker}-{n}");
        let Ok(res) = client
            .get(format!("{base}/Patient/{id}"))
            .header("x-request-id", &rid)
            .send()
            .await
        else {
            return;
        };
        if res.status() != 200 {
            return;
        }
        answered.lock().expect("lock").insert(rid, None);
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_writes_keeps_the_audit_record_of_every_answered_request() {
    const WORKERS: usize = 8;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("gw.toml");
    // The sealer runs often, so the kill lands between seals as well as during one.
    std::fs::write(&config, "[audit]\nseal_interval_ms = 20\n").expect("config");
    let db = format!("sqlite://{}", dir.path().join("gw.db").display());
    let port = free_port();
    let client = dev_client();
    let mut child = start(&config, &db, port);
    wait_ready(&client, port).await;

    let answered: Answered = Arc::default();
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| tokio::spawn(load(client.clone(), port, w, answered.clone())))
        .collect();
    // Kill once a fair number of requests were answered (at most after 20 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    while answered.lock().expect("lock").len() < 600 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let kill = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let _ = child.wait();
    for w in workers {
        let _ = w.await;
    }
    let answered = answered.lock().expect("lock").clone();
    assert!(answered.len() >= 30, "only {} answered", answered.len());

    // Restart on the same file: it opens and serves.
    let port = free_port();
    let mut child = start(&config, &db, port);
    wait_ready(&client, port).await;
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(term.success());
    assert!(child.wait().expect("wait").success());

    let defaults = sektorbro::config::Config::defaults();
    let store = sektorbro::store::open(&db, 2, "normal", 5000, &defaults.cache)
        .await
        .expect("reopen");
    let mut recorded: HashMap<String, Option<String>> = HashMap::new();
    let mut written = std::collections::HashSet::new();
    let mut after = 0;
    loop {
        let page = store.audit_export(after, 0, 1000).await.expect("export");
        let Some((last, _)) = page.last() else { break };
        after = *last;
        for (_, ev) in page {
            let entities = ev["entity"].as_array().cloned().unwrap_or_default();
            let rid = entities
                .iter()
                .find(|e| e["type"]["code"] == "XrequestId")
                .and_then(|e| e["what"]["identifier"]["value"].as_str())
                .map(String::from);
            let entity = entities
                .first()
                .and_then(|e| e["what"]["reference"].as_str())
                .map(String::from);
            if let Some(e) = &entity {
                written.insert(e.clone());
            }
            if let Some(rid) = rid {
                recorded.insert(rid, entity);
            }
        }
    }
    let mut missing = Vec::new();
    for (rid, entity) in &answered {
        match (recorded.get(rid), entity) {
            (None, _) => missing.push(format!("{rid}: no record")),
            (Some(got), Some(want)) if got.as_ref() != Some(want) => {
                missing.push(format!("{rid}: recorded {got:?}, answered {want}"))
            }
            _ => {}
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} answered requests lack their record: {:?}",
        missing.len(),
        answered.len(),
        &missing[..missing.len().min(10)]
    );
    let writes = answered.values().filter(|e| e.is_some()).count();
    eprintln!(
        "{} answered requests ({writes} writes), {} audit records",
        answered.len(),
        recorded.len()
    );

    // Stronger than "acknowledged": every version in the database, answered or not (the kill
    // may fall between a commit and its response), has its record, because they committed
    // together.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db).await.expect("raw");
    let versions: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT res_type, id, version FROM resource_versions")
            .fetch_all(&pool)
            .await
            .expect("versions");
    pool.close().await;
    let unrecorded: Vec<String> = versions
        .iter()
        .map(|(t, id, v)| format!("{t}/{id}/_history/{v}"))
        .filter(|e| !written.contains(e))
        .collect();
    assert!(
        unrecorded.is_empty(),
        "{} of {} stored versions have no audit record: {:?}",
        unrecorded.len(),
        versions.len(),
        &unrecorded[..unrecorded.len().min(10)]
    );

    // The chain holds across the kill.
    let out = Command::new(env!("CARGO_BIN_EXE_sektorbro"))
        .args([
            "audit",
            "verify",
            "--config",
            config.to_str().expect("path"),
        ])
        .env("SEKTORBRO_DATABASE_URL", &db)
        .output()
        .expect("verify");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("the chain is intact"), "{text}");

    // A row edited behind the gateway's back: verify fails and names it, at the row's place in
    // the chain. That need not be its `seq`: a row inserted unsealed (the audit writer's, or on
    // PostgreSQL a write's record) is chained after rows that came later, so the orders differ.
    let pool = sqlx::AnyPool::connect(&db).await.expect("raw");
    let (pos,): (i64,) = sqlx::query_as("SELECT chain_pos FROM audit_log WHERE seq = 7")
        .fetch_one(&pool)
        .await
        .expect("row 7 is sealed");
    eprintln!("AuditEvent/7 is at position {pos} of the chain");
    sqlx::query("UPDATE audit_log SET client = 'someone-else' WHERE seq = 7")
        .execute(&pool)
        .await
        .expect("edit");
    pool.close().await;
    let out = Command::new(env!("CARGO_BIN_EXE_sektorbro"))
        .args([
            "audit",
            "verify",
            "--config",
            config.to_str().expect("path"),
        ])
        .env("SEKTORBRO_DATABASE_URL", &db)
        .output()
        .expect("verify");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("BROKEN at position {pos} (AuditEvent/7)")),
        "{text}"
    );
}
