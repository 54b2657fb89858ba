//! What the test crates share: a free loopback port, a fresh PostgreSQL schema, the development
//! client's token and a client that sends it; and for the tests that start the real `sektorbro`
//! binary, a FHIR message for the forwarding path, starting it, and waiting until it is ready.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const SOR: &str = "urn:oid:1.2.208.176.1.1";
pub const CPR: &str = "urn:oid:1.2.208.176.1.2";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

pub fn message(id: &str, cpr: &str) -> Value {
    json!({
        "resourceType": "Bundle", "id": id, "type": "message",
        "entry": [
            {"fullUrl": "urn:uuid:0b0e1d54-8c57-4f7e-9e0e-000000000001", "resource": {
                "resourceType": "MessageHeader",
                "eventCoding": {"system": "http://sektorbro.dk/fhir/CodeSystem/message-event", "code": "discharge-summary"},
                "destination": [{"endpoint": "https://region.example/fhir",
                    "receiver": {"identifier": {"system": SOR, "value": "111"}}}],
                "source": {"endpoint": "https://gw.example/fhir"}}},
            {"fullUrl": "urn:uuid:0b0e1d54-8c57-4f7e-9e0e-000000000002", "resource": {
                "resourceType": "Patient", "identifier": [{"system": CPR, "value": cpr}]}}
        ]
    })
}

pub fn start(config: &std::path::Path, db: &str, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sektorbro"))
        .args(["serve", "--config", config.to_str().expect("path")])
        .env("SEKTORBRO_LISTEN", format!("127.0.0.1:{port}"))
        .env("SEKTORBRO_DATABASE_URL", db)
        .env("RUST_LOG", "warn")
        .env("SEKTORBRO_DEV_TOKEN", DEV_TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sektorbro")
}

pub async fn wait_ready(client: &reqwest::Client, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
        {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gateway did not become ready");
}

/// The development client's token given to the gateway under test, and a client that sends it.
pub const DEV_TOKEN: &str = "test-development-token-0123456789";

pub fn dev_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_static("Bearer test-development-token-0123456789"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

/// Environment variable naming the PostgreSQL server for the PostgreSQL half of the suite,
/// e.g. `postgres://postgres@127.0.0.1:5432/test`. Unset: those tests are skipped (and say so).
pub const PG_ENV: &str = "SEKTORBRO_TEST_POSTGRES_URL";

/// The database of one test: a fresh PostgreSQL schema when `postgres` (`None`, with a note on
/// stderr naming `what`, when `PG_ENV` is unset), else the SQLite file `sqlite_file`.
pub async fn test_database(
    postgres: bool,
    sqlite_file: &std::path::Path,
    what: &str,
) -> Option<String> {
    if !postgres {
        return Some(format!("sqlite://{}", sqlite_file.display()));
    }
    let Ok(server) = std::env::var(PG_ENV) else {
        eprintln!("NOTE: PostgreSQL {what} tests SKIPPED ({PG_ENV} is not set)");
        return None;
    };
    Some(fresh_schema(&server).await)
}

/// A new, empty schema on the PostgreSQL server `server`, and a URL that uses it.
pub async fn fresh_schema(server: &str) -> String {
    sqlx::any::install_default_drivers();
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::AnyPool::connect(server)
        .await
        .unwrap_or_else(|e| panic!("{PG_ENV} is set but PostgreSQL is unreachable: {e}"));
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .expect("create schema");
    pool.close().await;
    let sep = if server.contains('?') { '&' } else { '?' };
    format!("{server}{sep}options=-c%20search_path%3D{schema}")
}
