//! `spawn_app`: a real gateway on a random loopback port over a fresh database, and the macro
//! that runs one test body against both backends.

use std::io::Write as _;
use std::net::TcpListener;
use std::sync::Once;

use reqwest::header::CONTENT_TYPE;
use sektorbro::config::Config;
use serde_json::Value;

pub use crate::common::{dev_client, fresh_schema, DEV_TOKEN, PG_ENV};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A running gateway and a client for it.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub addr: String,
    /// `http://127.0.0.1:PORT/fhir`
    pub fhir: String,
    pub client: reqwest::Client,
    pub db: Db,
    /// The database this gateway runs on (a sibling instance can share it).
    database_url: String,
    _dir: Option<tempfile::TempDir>,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        // Stop the server without waiting; the runtime ends with the test anyway.
        drop(handle.stop(false));
    }
}

static SKIP_NOTICE: Once = Once::new();

/// Start a gateway on a fresh database; `None` (after saying so on the terminal) when the
/// PostgreSQL half is asked for and no server is configured.
pub async fn spawn_app(db: Db) -> Option<TestApp> {
    spawn_app_with(db, |_| {}).await
}

/// As [`spawn_app`], with `configure` applied to the test configuration (e.g. to point
/// `[lookups]` at wiremock servers).
pub async fn spawn_app_with(db: Db, configure: impl FnOnce(&mut Config)) -> Option<TestApp> {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = match db {
        Db::Sqlite => format!("sqlite://{}", dir.path().join("test.db").display()),
        Db::Postgres => {
            let Ok(server) = std::env::var(PG_ENV) else {
                SKIP_NOTICE.call_once(|| {
                    // Written past the test harness's output capture, so `cargo test` shows it.
                    let _ = writeln!(
                        std::io::stderr(),
                        "NOTE: PostgreSQL tests SKIPPED ({PG_ENV} is not set; e.g. {PG_ENV}=postgres://postgres@127.0.0.1:5432/test)"
                    );
                });
                return None;
            };
            fresh_schema(&server).await
        }
    };
    Some(start(db, url, Some(dir), configure).await)
}

/// A gateway on `url`.
async fn start(
    db: Db,
    url: String,
    dir: Option<tempfile::TempDir>,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    let mut config = Config::load_with_env(None, |k| match k {
        "SEKTORBRO_DATABASE_URL" => Some(url.clone()),
        "SEKTORBRO_LISTEN" => Some("127.0.0.1:0".into()),
        "SEKTORBRO_DEV_TOKEN" => Some(DEV_TOKEN.into()),
        _ => None,
    })
    .expect("test config");
    config.server.workers = 2;
    config.database.sqlite_synchronous = "normal".into();
    config.database.max_connections = 8;
    // The official examples include 35 MB conformance Bundles.
    config.server.max_body_bytes = 64 << 20;
    // A token issuer and one client of each kind (tests/api/tokens.rs), next to the development
    // client that `TestApp::client` authenticates as.
    crate::tokens::tenants(&mut config);
    configure(&mut config);
    let state = sektorbro::app::build_state(config)
        .await
        .expect("gateway state");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("addr").port();
    let server = sektorbro::app::http_server(state, listener).expect("server");
    let handle = server.handle();
    tokio::spawn(server);
    let addr = format!("http://127.0.0.1:{port}");
    TestApp {
        fhir: format!("{addr}/fhir"),
        addr,
        client: dev_client(),
        db,
        database_url: url,
        _dir: dir,
        handle,
    }
}

impl TestApp {
    /// A second gateway instance on the same PostgreSQL schema (several instances share one
    /// database in production). SQLite files have one gateway process each, so `None` there.
    pub async fn sibling(&self) -> Option<TestApp> {
        self.sibling_with(|_| {}).await
    }

    /// As [`TestApp::sibling`], with `configure` applied to its configuration.
    pub async fn sibling_with(&self, configure: impl FnOnce(&mut Config)) -> Option<TestApp> {
        match self.db {
            Db::Postgres => {
                Some(start(Db::Postgres, self.database_url.clone(), None, configure).await)
            }
            Db::Sqlite => None,
        }
    }

    /// The database URL this gateway runs on (for tests that break the database under it).
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.fhir, path.trim_start_matches('/'))
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header(CONTENT_TYPE, "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .expect("request")
    }

    pub async fn put(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .put(self.url(path))
            .header(CONTENT_TYPE, "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// GET and parse, asserting the status.
    pub async fn get_json(&self, path: &str, status: u16) -> Value {
        let res = self.get(path).await;
        let got = res.status().as_u16();
        let body: Value = res.json().await.expect("JSON body");
        assert_eq!(got, status, "GET {path}: {body}");
        body
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.addr))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// The value of the series `name` (with its labels, as written) in `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} not in {text}"))
    }

    /// GET an absolute URL the server handed out (a paging link) and parse it, expecting 200.
    pub async fn follow(&self, url: &str) -> Value {
        let res = self.client.get(url).send().await.expect("request");
        let status = res.status().as_u16();
        let body: Value = res.json().await.expect("JSON body");
        assert_eq!(status, 200, "GET {url}: {body}");
        body
    }

    /// Create and return the stored resource.
    pub async fn create(&self, body: &Value) -> Value {
        let rtype = body["resourceType"].as_str().expect("resourceType");
        let res = self.post(rtype, body).await;
        let status = res.status().as_u16();
        let v: Value = res.json().await.expect("JSON");
        assert_eq!(status, 201, "create {rtype}: {v}");
        v
    }
}

/// The `next` link of a searchset or history page, if there is one.
pub fn next_link(bundle: &Value) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")
        .and_then(|l| l["url"].as_str())
        .map(String::from)
}

/// The first location of every issue of an OperationOutcome, in order.
pub fn issue_locations(oo: &Value) -> Vec<&str> {
    issues(oo)
        .iter()
        .filter_map(|i| i["expression"][0].as_str())
        .collect()
}

/// The first location of every error of an OperationOutcome, in order.
pub fn error_locations(oo: &Value) -> Vec<&str> {
    issues(oo)
        .iter()
        .filter(|i| i["severity"] == "error")
        .filter_map(|i| i["expression"][0].as_str())
        .collect()
}

fn issues(oo: &Value) -> &[Value] {
    oo["issue"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The `response.status` of every entry of a batch or transaction response, in order.
pub fn response_statuses(bundle: &Value) -> Vec<&str> {
    bundle["entry"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap_or_default())
        .collect()
}

/// Ids of the `match` entries of a searchset, in order.
pub fn match_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["search"]["mode"] == "match")
                .filter_map(|e| e["resource"]["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Run `async fn $name(app: TestApp)` against SQLite and PostgreSQL, as `$name::sqlite` and
/// `$name::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = $crate::helpers::spawn_app($crate::helpers::Db::Sqlite).await.expect("sqlite app");
                super::$name(app).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(app) = $crate::helpers::spawn_app($crate::helpers::Db::Postgres).await {
                    super::$name(app).await;
                }
            }
        }
    )*};
}
