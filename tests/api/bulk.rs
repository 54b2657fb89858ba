//! Bulk Data export (docs/bulk.md) over real HTTP, on SQLite and PostgreSQL: kick-off → status →
//! manifest → download, the NDJSON compared with what the same client's searches return; other
//! tenants' resources left out; Patient and Group exports; `_type`, `_since`, `_typeFilter`;
//! every unsupported parameter in one 400; status and files for the starting client only;
//! cancel; expiry. The restart of a running export is in `tests/binary.rs`.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Db, TestApp};
use crate::tokens::token;

const ALL: &str = "system/*.cruds";

/// A gateway whose exports go to a fresh folder (kept alive with the app), with `configure`.
async fn app(
    db: Db,
    configure: impl FnOnce(&mut sektorbro::config::Config),
) -> Option<(TestApp, tempfile::TempDir)> {
    let dir = tempfile::tempdir().expect("export dir");
    let path = dir.path().display().to_string();
    let app = spawn_app_with(db, |c| {
        c.bulk.export_dir = path;
        c.bulk.retry_after_secs = 1;
        configure(c);
    })
    .await?;
    Some((app, dir))
}

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    url: &str,
    tok: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let url = if url.starts_with("http") {
        url.to_string()
    } else {
        app.url(url)
    };
    let mut req = app.client.request(method, url).bearer_auth(tok);
    if let Some(b) = body {
        req = req
            .header(CONTENT_TYPE, "application/fhir+json")
            .body(b.to_string());
    }
    req.send().await.expect("request")
}

async fn put(app: &TestApp, tok: &str, r: Value) {
    let path = format!(
        "{}/{}",
        r["resourceType"].as_str().unwrap(),
        r["id"].as_str().unwrap()
    );
    let res = send(app, reqwest::Method::PUT, &path, tok, Some(&r)).await;
    let status = res.status().as_u16();
    assert!(
        status == 201 || status == 200,
        "PUT {path}: {status} {}",
        res.text().await.unwrap()
    );
}

fn patient(id: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "name": [{"family": id}]})
}

fn observation(id: &str, patient: &str, code: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")}})
}

/// Kolding's two citizens with an Observation each, a Group holding the first, and Haderslev's
/// citizen with an Observation.
async fn seed(app: &TestApp) {
    let kolding = token("kolding", ALL);
    let haderslev = token("haderslev", ALL);
    put(app, &kolding, patient("k1")).await;
    put(app, &kolding, patient("k2")).await;
    put(app, &kolding, observation("ko1", "k1", "2339-0")).await;
    put(app, &kolding, observation("ko2", "k2", "718-7")).await;
    put(
        app,
        &kolding,
        json!({"resourceType": "Group", "id": "kg", "type": "person", "actual": true,
            "member": [{"entity": {"reference": "Patient/k1"}}]}),
    )
    .await;
    put(app, &haderslev, patient("h1")).await;
    put(app, &haderslev, observation("ho1", "h1", "2339-0")).await;
}

/// Kick off `path` as `tok` and return the status URL.
async fn kick_off(app: &TestApp, path: &str, tok: &str) -> String {
    let res = app
        .client
        .get(app.url(path))
        .bearer_auth(tok)
        .header("prefer", "respond-async")
        .header("accept", "application/fhir+json")
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("content-location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = res.text().await.unwrap();
    assert_eq!(status, 202, "kick-off {path}: {body}");
    location.expect("Content-Location")
}

/// Poll a status URL until the export is done; the manifest. Checks the in-progress answers.
async fn manifest(app: &TestApp, status_url: &str, tok: &str) -> Value {
    for _ in 0..300 {
        let res = send(app, reqwest::Method::GET, status_url, tok, None).await;
        match res.status().as_u16() {
            202 => {
                assert!(res.headers().get("x-progress").is_some(), "X-Progress");
                assert!(res.headers().get("retry-after").is_some(), "Retry-After");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            200 => {
                assert!(res.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("application/json"));
                return res.json().await.unwrap();
            }
            other => panic!("status {other}: {}", res.text().await.unwrap()),
        }
    }
    panic!("export did not finish");
}

/// Every file of a manifest downloaded and parsed: `(type, id)` of each line.
async fn downloaded(app: &TestApp, m: &Value, tok: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for o in m["output"].as_array().unwrap() {
        // Asked for by its own media type, as Bulk Data clients do.
        let res = app
            .client
            .get(o["url"].as_str().unwrap())
            .bearer_auth(tok)
            .header("accept", "application/fhir+ndjson")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
        assert_eq!(res.headers()["content-type"], "application/fhir+ndjson");
        let text = res.text().await.unwrap();
        let mut n = 0;
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).expect("one resource per line");
            assert_eq!(v["resourceType"], o["type"]);
            out.insert((
                v["resourceType"].as_str().unwrap().to_string(),
                v["id"].as_str().unwrap().to_string(),
            ));
            n += 1;
        }
        assert_eq!(o["count"], json!(n), "{o}");
    }
    out
}

/// `(type, id)` of everything a client's searches of `types` return.
async fn searched(app: &TestApp, types: &[&str], tok: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for t in types {
        let res = send(
            app,
            reqwest::Method::GET,
            &format!("{t}?_count=1000"),
            tok,
            None,
        )
        .await;
        let b: Value = res.json().await.unwrap();
        for e in b["entry"].as_array().into_iter().flatten() {
            out.insert((
                t.to_string(),
                e["resource"]["id"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

fn pairs(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

async fn system_export_matches_search_and_tenancy(db: Db) {
    let Some((app, dir)) = app(db, |_| {}).await else {
        return;
    };
    seed(&app).await;
    let kolding = token("kolding", ALL);
    let url = kick_off(&app, "$export?_type=Patient,Observation,Group", &kolding).await;
    assert!(
        url.starts_with(&format!("{}/$export-status/", app.fhir)),
        "{url}"
    );
    let m = manifest(&app, &url, &kolding).await;
    assert!(
        m["transactionTime"].as_str().unwrap().ends_with('Z')
            || m["transactionTime"].as_str().unwrap().contains('+')
    );
    assert_eq!(
        m["request"],
        format!("{}/$export?_type=Patient,Observation,Group", app.fhir)
    );
    assert_eq!(m["requiresAccessToken"], true);
    assert_eq!(m["error"], json!([]));
    let got = downloaded(&app, &m, &kolding).await;
    let want = searched(&app, &["Patient", "Observation", "Group"], &kolding).await;
    assert_eq!(got, want);
    assert_eq!(
        got,
        pairs(&[
            ("Patient", "k1"),
            ("Patient", "k2"),
            ("Observation", "ko1"),
            ("Observation", "ko2"),
            ("Group", "kg")
        ])
    );

    // Another client: neither the status nor the files exist for it.
    let haderslev = token("haderslev", ALL);
    let res = send(&app, reqwest::Method::GET, &url, &haderslev, None).await;
    assert_eq!(res.status().as_u16(), 404);
    let file = m["output"][0]["url"].as_str().unwrap();
    let res = send(&app, reqwest::Method::GET, file, &haderslev, None).await;
    assert_eq!(res.status().as_u16(), 404);
    // Nor without credentials.
    let res = reqwest::Client::new().get(file).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 401);
    // A name that is not one of the job's files is unknown, whatever it points at.
    let job = url.rsplit('/').next().unwrap();
    let res = send(
        &app,
        reqwest::Method::GET,
        &format!("$export-file/{job}/..%2F..%2Fetc"),
        &kolding,
        None,
    )
    .await;
    assert_eq!(res.status().as_u16(), 404);

    // Haderslev's own system export holds only its own resources (without _type: every type
    // it may search).
    let url = kick_off(&app, "$export", &haderslev).await;
    let m = manifest(&app, &url, &haderslev).await;
    let got = downloaded(&app, &m, &haderslev).await;
    assert_eq!(got, pairs(&[("Patient", "h1"), ("Observation", "ho1")]));

    // An administrator sees everything.
    let ops = token("ops", "system/*.*");
    let url = kick_off(&app, "$export?_type=Patient", &ops).await;
    let m = manifest(&app, &url, &ops).await;
    let got = downloaded(&app, &m, &ops).await;
    assert_eq!(
        got,
        pairs(&[("Patient", "h1"), ("Patient", "k1"), ("Patient", "k2")])
    );

    // Cancel (here: of a finished export) deletes the job and its files.
    let id = url.rsplit('/').next().unwrap().to_string();
    assert!(dir.path().join(&id).exists());
    let res = send(&app, reqwest::Method::DELETE, &url, &ops, None).await;
    assert_eq!(res.status().as_u16(), 202);
    assert!(!dir.path().join(&id).exists());
    let res = send(&app, reqwest::Method::GET, &url, &ops, None).await;
    assert_eq!(res.status().as_u16(), 404);
    let res = send(&app, reqwest::Method::DELETE, &url, &ops, None).await;
    assert_eq!(res.status().as_u16(), 404);
}

async fn patient_and_group_exports_hold_compartments(db: Db) {
    let Some((app, _dir)) = app(db, |_| {}).await else {
        return;
    };
    seed(&app).await;
    let kolding = token("kolding", ALL);
    let url = kick_off(&app, "Group/kg/$export", &kolding).await;
    let m = manifest(&app, &url, &kolding).await;
    assert_eq!(
        downloaded(&app, &m, &kolding).await,
        pairs(&[("Patient", "k1"), ("Observation", "ko1"), ("Group", "kg")])
    );
    let url = kick_off(&app, "Patient/$export?_type=Patient,Observation", &kolding).await;
    let m = manifest(&app, &url, &kolding).await;
    assert_eq!(
        downloaded(&app, &m, &kolding).await,
        pairs(&[
            ("Patient", "k1"),
            ("Patient", "k2"),
            ("Observation", "ko1"),
            ("Observation", "ko2")
        ])
    );
    // Another tenant's Group is unknown to the caller.
    let haderslev = token("haderslev", ALL);
    let res = app
        .client
        .get(app.url("Group/kg/$export"))
        .bearer_auth(&haderslev)
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);
    // _typeFilter and _since.
    let url = kick_off(
        &app,
        "$export?_type=Observation&_typeFilter=Observation%3Fcode%3Dhttp%3A%2F%2Floinc.org%7C718-7",
        &kolding,
    )
    .await;
    let m = manifest(&app, &url, &kolding).await;
    assert_eq!(
        downloaded(&app, &m, &kolding).await,
        pairs(&[("Observation", "ko2")])
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    tokio::time::sleep(Duration::from_millis(20)).await;
    put(&app, &kolding, observation("ko3", "k2", "2345-7")).await;
    let url = kick_off(
        &app,
        &format!(
            "$export?_type=Observation,Patient&_since={}",
            since.replace('+', "%2B")
        ),
        &kolding,
    )
    .await;
    let m = manifest(&app, &url, &kolding).await;
    assert_eq!(
        downloaded(&app, &m, &kolding).await,
        pairs(&[("Observation", "ko3")])
    );
    // Scopes: a client that may search CarePlans only cannot export Patients (403), and its
    // export without _type holds CarePlans only.
    let narrow = token("narrow", "system/CarePlan.rs");
    let res = app
        .client
        .get(app.url("$export?_type=Patient"))
        .bearer_auth(&narrow)
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);
    let url = kick_off(&app, "$export", &narrow).await;
    let m = manifest(&app, &url, &narrow).await;
    assert!(
        m["output"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["type"] == "CarePlan"),
        "{m}"
    );
}

async fn unsupported_kick_offs_are_400_with_every_problem(db: Db) {
    let Some((app, _dir)) = app(db, |_| {}).await else {
        return;
    };
    let kolding = token("kolding", ALL);
    let res = app
        .client
        .get(app.url("$export?_elements=id&includeAssociatedData=LatestProvenanceResources&_outputFormat=text/csv&_since=yesterday&_type=Unicorn&_typeFilter=Observation%3F_sort%3Ddate&bogus=1"))
        .bearer_auth(&kolding)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let oo: Value = res.json().await.unwrap();
    assert_eq!(oo["resourceType"], "OperationOutcome");
    let at: BTreeSet<String> = oo["issue"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["expression"][0].as_str().map(str::to_string))
        .collect();
    for want in [
        "_elements",
        "includeAssociatedData",
        "_outputFormat",
        "_since",
        "_type",
        "_typeFilter",
        "bogus",
    ] {
        assert!(at.contains(want), "{want} in {oo}");
    }
    let diagnostics = oo.to_string();
    assert!(diagnostics.contains("respond-async"), "{oo}");
    // A type outside the Patient compartment on a Patient export; a search parameter the type
    // does not have in a _typeFilter.
    let res = app
        .client
        .get(app.url("Patient/$export?_type=Organization&_typeFilter=Patient%3Fnonsense%3D1"))
        .bearer_auth(&kolding)
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let oo: Value = res.json().await.unwrap();
    assert_eq!(oo["issue"].as_array().unwrap().len(), 2, "{oo}");
    // Each accepted output format works.
    for f in ["application/fhir+ndjson", "application/ndjson", "ndjson"] {
        kick_off(
            &app,
            &format!(
                "$export?_type=Patient&_outputFormat={}",
                f.replace('+', "%2B")
            ),
            &kolding,
        )
        .await;
    }
    // The kick-off is GET; the status and file URLs take no other method.
    let res = send(
        &app,
        reqwest::Method::POST,
        "$export",
        &kolding,
        Some(&json!({"resourceType": "Parameters"})),
    )
    .await;
    assert_eq!(res.status().as_u16(), 405);
}

async fn a_running_export_is_cancelled_and_a_finished_one_expires(db: Db) {
    // One page per resource, so the export runs long enough to be cancelled while running;
    // files kept one second.
    let Some((app, dir)) = app(db, |c| {
        c.bulk.page_size = 1;
        c.bulk.retention_secs = 1;
    })
    .await
    else {
        return;
    };
    let kolding = token("kolding", ALL);
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": (0..200).map(|i| json!({
        "resource": patient(&format!("p{i}")),
        "request": {"method": "PUT", "url": format!("Patient/p{i}")}})).collect::<Vec<_>>()});
    let res = send(&app, reqwest::Method::POST, "", &kolding, Some(&bundle)).await;
    assert_eq!(res.status().as_u16(), 200, "{}", res.text().await.unwrap());
    let url = kick_off(&app, "$export?_type=Patient", &kolding).await;
    let res = send(&app, reqwest::Method::DELETE, &url, &kolding, None).await;
    assert_eq!(res.status().as_u16(), 202);
    let id = url.rsplit('/').next().unwrap().to_string();
    assert_eq!(
        send(&app, reqwest::Method::GET, &url, &kolding, None)
            .await
            .status()
            .as_u16(),
        404
    );
    // The runner stops at its next page and leaves nothing behind.
    for _ in 0..50 {
        if !dir.path().join(&id).exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !dir.path().join(&id).exists(),
        "files of a cancelled export remain"
    );

    let url = kick_off(&app, "$export?_type=Patient", &kolding).await;
    let m = manifest(&app, &url, &kolding).await;
    assert_eq!(m["output"][0]["count"], 200);
    let id = url.rsplit('/').next().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        send(&app, reqwest::Method::GET, &url, &kolding, None)
            .await
            .status()
            .as_u16(),
        404
    );
    let file = m["output"][0]["url"].as_str().unwrap();
    assert_eq!(
        send(&app, reqwest::Method::GET, file, &kolding, None)
            .await
            .status()
            .as_u16(),
        404
    );
    for _ in 0..100 {
        if !dir.path().join(&id).exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the files of an expired export were not deleted");
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(crate::helpers::Db::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(crate::helpers::Db::Postgres).await;
            }
        }
    )*};
}

both!(
    system_export_matches_search_and_tenancy,
    patient_and_group_exports_hold_compartments,
    unsupported_kick_offs_are_400_with_every_problem,
    a_running_export_is_cancelled_and_a_finished_one_expires,
);
