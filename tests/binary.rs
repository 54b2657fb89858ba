//! The `sektorbro` binary as an operator runs it: starts with defaults plus environment overrides,
//! creates its SQLite file, serves, and stops cleanly on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::free_port;

#[cfg(unix)]
#[test]
fn serve_creates_its_database_answers_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let db = dir.path().join("sub").join("gw.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sektorbro"))
        .env("SEKTORBRO_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "SEKTORBRO_DATABASE_URL",
            format!("sqlite://{}", db.display()),
        )
        .env("RUST_LOG", "warn")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sektorbro");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let ready = rt.block_on(async {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = client
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
            {
                if r.status().is_success() {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    });
    assert!(ready, "gateway did not become ready");
    assert!(db.exists(), "the SQLite file is created on first start");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            assert!(exit.success(), "exit after SIGTERM: {exit:?}");
            break;
        }
        assert!(Instant::now() < deadline, "did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_bad_configuration_is_refused_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_sektorbro"))
        .env("SEKTORBRO_LISTEN", "not-an-address")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SEKTORBRO_LISTEN"), "{err}");
}

/// `sektorbro validate`: exit code 0 when all files are valid, 1 when any is invalid, 2 on
/// usage errors; `--format json` prints one object per file.
#[test]
fn validate_command_exit_codes_and_json_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.json");
    let bad = dir.path().join("sub").join("bad.json");
    std::fs::create_dir_all(bad.parent().expect("parent")).expect("mkdir");
    std::fs::write(
        &good,
        r#"{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},"birthDate":"1948-03-01"}"#,
    )
    .expect("write");
    std::fs::write(
        &bad,
        r#"{"resourceType":"Patient","birthDate":"1948-02-30"}"#,
    )
    .expect("write");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sektorbro"))
            .arg("validate")
            .args(args)
            .output()
            .expect("run validate")
    };
    let ok = run(&[good.to_str().expect("path")]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );

    let out = run(&["--format", "json", dir.path().to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 2, "one line per file");
    let bad_line = lines
        .iter()
        .find(|l| l["file"].as_str().is_some_and(|f| f.ends_with("bad.json")))
        .expect("bad.json reported");
    assert_eq!(bad_line["valid"], false);
    assert_eq!(bad_line["errors"], 1);
    assert_eq!(bad_line["issues"][0]["location"], "Patient.birthDate");

    assert_eq!(run(&["/no/such/file.json"]).status.code(), Some(2));
    assert_eq!(run(&[]).status.code(), Some(2));
    assert_eq!(
        run(&[
            "--profile",
            "http://example.org/nope",
            good.to_str().expect("path")
        ])
        .status
        .code(),
        Some(2)
    );
    assert_eq!(run(&["--bogus-flag"]).status.code(), Some(2));
}

#[test]
fn translate_command_round_trips_and_reports_bad_records() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/municipal");
    let record = format!("{fixtures}/completed-discharged-home.json");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sektorbro"))
            .arg("translate")
            .args(args)
            .output()
            .expect("run translate")
    };
    let forward = run(&[&record]);
    assert_eq!(
        forward.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&forward.stderr)
    );
    let bundle: serde_json::Value = serde_json::from_slice(&forward.stdout).expect("JSON");
    assert_eq!(bundle["type"], "transaction");

    let dir = tempfile::tempdir().expect("tempdir");
    let bundle_file = dir.path().join("bundle.json");
    std::fs::write(&bundle_file, &forward.stdout).expect("write");
    let back = run(&["--reverse", bundle_file.to_str().expect("path")]);
    assert_eq!(back.status.code(), Some(0));
    let rebuilt: serde_json::Value = serde_json::from_slice(&back.stdout).expect("JSON");
    let original: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record).expect("read")).expect("JSON");
    assert_eq!(rebuilt, original);

    let bad = run(&[&format!(
        "{fixtures}/invalid/rule2-intervention-unknown-goal.json"
    )]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("$.interventions[0].goals"));
    assert_eq!(run(&["/no/such/file.json"]).status.code(), Some(2));
}

/// A fresh start on loopback prints a generated development token once (stderr), which then
/// opens the API; without it the API answers 401.
#[cfg(unix)]
#[test]
fn a_fresh_start_prints_a_development_token_that_opens_the_api() {
    use std::io::{BufRead as _, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sektorbro"))
        .env("SEKTORBRO_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "SEKTORBRO_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("gw.db").display()),
        )
        .env_remove("SEKTORBRO_DEV_TOKEN")
        .env("RUST_LOG", "warn")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sektorbro");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("Bearer ").nth(1) {
                let token: String = rest.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
                let _ = tx.send(token);
            }
        }
    });
    let token = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a development token on stderr");
    assert_eq!(token.len(), 64, "{token}");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (with, without) = rt.block_on(async {
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}/fhir/CarePlan");
        let with = client.get(&url).bearer_auth(&token).send().await;
        let without = client.get(&url).send().await;
        (
            with.map(|r| r.status().as_u16()).unwrap_or(0),
            without.map(|r| r.status().as_u16()).unwrap_or(0),
        )
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(with, 200);
    assert_eq!(without, 401);
}

/// `sektorbro validate` reads a package folder by content (`profile.json`, `ext-foo.json`), warns
/// on stderr about what it cannot load, and refuses with `--strict`; the embedded IG packages are
/// there without any `--package` (MedCom HospitalNotification's message profile is known).
#[test]
fn validate_command_reports_load_problems_and_strict_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pkg = dir.path().join("ig");
    std::fs::create_dir_all(&pkg).expect("mkdir");
    std::fs::write(
        pkg.join("profile.json"),
        r#"{"resourceType":"StructureDefinition","url":"http://example.org/StructureDefinition/named-patient",
            "name":"NamedPatient","status":"active","kind":"resource","abstract":false,"type":"Patient",
            "baseDefinition":"http://hl7.org/fhir/StructureDefinition/Patient","derivation":"constraint",
            "differential":{"element":[{"id":"Patient.name","path":"Patient.name","min":1}]}}"#,
    )
    .expect("write");
    std::fs::write(pkg.join("broken.json"), "{ not json").expect("write");
    let patient = dir.path().join("patient.json");
    std::fs::write(
        &patient,
        r#"{"resourceType":"Patient","meta":{"profile":["http://example.org/StructureDefinition/named-patient"]},
            "text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}}"#,
    )
    .expect("write");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sektorbro"))
            .arg("validate")
            .args(args)
            .output()
            .expect("run validate")
    };
    let (p, f) = (pkg.to_str().expect("path"), patient.to_str().expect("path"));
    let out = run(&["--package", p, f]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("Patient.name"),
        "the profile was used: {stdout}"
    );
    assert!(
        stderr.contains("warning:")
            && stderr.contains("broken.json")
            && stderr.contains("is not JSON"),
        "{stderr}"
    );

    let strict = run(&["--strict", "--package", p, f]);
    assert_eq!(strict.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&strict.stderr).contains("broken.json"));

    // Embedded: the message profile is loaded (a Patient is not a Bundle: invalid, not unknown).
    let hn = "http://medcomfhir.dk/ig/hospitalnotification/StructureDefinition/medcom-hospitalNotification-message";
    let out = run(&["--format", "json", "--profile", hn, f]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("is for Bundle"));
}

/// A Bulk Data export survives the process: kicked off on a gateway that runs no exports, the
/// gateway killed (SIGKILL) with the job marked running by it and a partial file on disk, then
/// started again with exports on: the job is given back at start, runs again from the start and
/// completes with every resource exactly once.
#[cfg(unix)]
#[test]
fn a_bulk_export_survives_a_kill_and_restart() {
    use serde_json::{json, Value};
    let dir = tempfile::tempdir().expect("tempdir");
    let exports = dir.path().join("exports");
    let db = format!("sqlite://{}", dir.path().join("gw.db").display());
    let config = |enabled: bool| {
        let path = dir.path().join(format!("config-{enabled}.toml"));
        std::fs::write(
            &path,
            format!(
                "[bulk]\nenabled = {enabled}\nexport_dir = \"{}\"\n",
                exports.display()
            ),
        )
        .expect("config");
        path
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let client = common::dev_client();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/fhir");
    let mut first = common::start(&config(false), &db, port);
    let status_url = rt.block_on(async {
        common::wait_ready(&client, port).await;
        let entries: Vec<Value> = (0..50)
            .map(|i| {
                json!({"resource": {"resourceType": "Patient", "id": format!("p{i}")},
                    "request": {"method": "PUT", "url": format!("Patient/p{i}")}})
            })
            .collect();
        let res = client
            .post(format!("{base}/"))
            .header("content-type", "application/fhir+json")
            .body(
                json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
                    .to_string(),
            )
            .send()
            .await
            .expect("transaction");
        assert_eq!(res.status().as_u16(), 200);
        let res = client
            .get(format!("{base}/$export?_type=Patient"))
            .header("prefer", "respond-async")
            .send()
            .await
            .expect("kick-off");
        assert_eq!(res.status().as_u16(), 202);
        let url = res.headers()["content-location"]
            .to_str()
            .unwrap()
            .to_string();
        let res = client.get(&url).send().await.expect("status");
        assert_eq!(res.status().as_u16(), 202, "no runner: still waiting");
        url
    });
    let _ = Command::new("kill")
        .args(["-KILL", &first.id().to_string()])
        .status();
    let _ = first.wait();
    let job = status_url.rsplit('/').next().unwrap().to_string();
    // As if the killed process had been running it: marked running with a lease far ahead, and
    // half a file written.
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&db).await.expect("database");
        sqlx::query("UPDATE bulk_jobs SET status = 'in-progress', lease_owner = 'bulk-killed', lease_until = 99999999999999, attempts = 1 WHERE id = $1")
            .bind(&job)
            .execute(&pool)
            .await
            .expect("mark running");
        pool.close().await;
    });
    std::fs::create_dir_all(exports.join(&job)).expect("job dir");
    std::fs::write(
        exports.join(&job).join("Patient-1.ndjson"),
        "{\"resourceType\":\"Pat",
    )
    .expect("partial");

    let port = free_port();
    let mut second = common::start(&config(true), &db, port);
    let status_url = status_url.replace(&base, &format!("http://127.0.0.1:{port}/fhir"));
    let outcome = rt.block_on(async {
        common::wait_ready(&client, port).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let res = client.get(&status_url).send().await.expect("status");
            match res.status().as_u16() {
                202 => {}
                200 => break res.json::<Value>().await.expect("manifest"),
                other => panic!("status {other}: {}", res.text().await.unwrap_or_default()),
            }
            assert!(Instant::now() < deadline, "the export did not resume");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let ids = rt.block_on(async {
        let url = outcome["output"][0]["url"]
            .as_str()
            .expect("a file")
            .to_string();
        let text = client
            .get(url)
            .send()
            .await
            .expect("file")
            .text()
            .await
            .expect("text");
        text.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("NDJSON line");
                v["id"].as_str().expect("id").to_string()
            })
            .collect::<std::collections::BTreeSet<String>>()
    });
    let _ = Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status();
    let _ = second.wait();
    assert_eq!(outcome["output"][0]["count"], 50);
    assert_eq!(ids.len(), 50, "every Patient exactly once");
}
