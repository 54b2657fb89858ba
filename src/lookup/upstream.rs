//! HTTP towards upstreams (reqwest over rustls): one GET returning JSON, with every way it can go
//! wrong turned into a [`LookupError`] or "not found". Nothing an upstream sends is trusted:
//! bodies are size-bounded and parsed, never unwrapped.

use std::time::Duration;

use serde_json::Value;

use super::LookupError;

/// Largest upstream body read (a searchset with includes, a big ValueSet answer).
const MAX_BODY: usize = 8 << 20;

/// The HTTP client shared by every upstream (one connection pool), built from `[lookups]`.
pub fn client(ca_file: &str) -> Result<reqwest::Client, anyhow::Error> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("sektorbro/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(60));
    if !ca_file.is_empty() {
        let pem = std::fs::read(ca_file)
            .map_err(|e| anyhow::anyhow!("lookups.ca_file {ca_file}: {e}"))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| anyhow::anyhow!("lookups.ca_file {ca_file}: {e}"))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder.build()?)
}

/// One upstream: where it is, how long to wait, and its name for errors and logs.
#[derive(Clone)]
pub struct Upstream {
    pub name: &'static str,
    pub base: String,
    pub timeout: Duration,
    pub client: reqwest::Client,
}

/// What a GET found.
pub enum Fetched {
    Json(Value),
    /// 404 or 410: the upstream has no such thing.
    NotFound,
}

impl Upstream {
    pub fn new(
        name: &'static str,
        base: &str,
        timeout_ms: u64,
        client: reqwest::Client,
    ) -> Upstream {
        Upstream {
            name,
            base: base.trim_end_matches('/').to_string(),
            timeout: Duration::from_millis(timeout_ms),
            client,
        }
    }

    /// GET `{base}/{path}?{query}` (`path` empty: the base itself), asking for FHIR JSON.
    pub async fn get_json(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Fetched, LookupError> {
        let url = if path.is_empty() {
            self.base.clone()
        } else {
            format!("{}/{path}", self.base)
        };
        let request = self.client.get(&url).query(query).header(
            reqwest::header::ACCEPT,
            "application/fhir+json, application/json",
        );
        self.send(request).await
    }

    /// Send `request` (with this upstream's timeout) and read its JSON answer.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<Fetched, LookupError> {
        let mut res = request
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| self.unavailable(&e))?;
        let status = res.status();
        if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
            return Ok(Fetched::NotFound);
        }
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| self.unavailable(&e))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(self.bad(format!("answer larger than {MAX_BODY} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        let json: Result<Value, _> = serde_json::from_slice(&body);
        if !status.is_success() {
            let why = json
                .ok()
                .and_then(|v| diagnostics(&v))
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            return Err(self.bad(format!("HTTP {}{why}", status.as_u16())));
        }
        json.map(Fetched::Json)
            .map_err(|e| self.bad(format!("answer is not JSON: {e}")))
    }

    fn unavailable(&self, e: &reqwest::Error) -> LookupError {
        let detail = if e.is_timeout() {
            format!("no answer within {} ms", self.timeout.as_millis())
        } else if e.is_connect() {
            "cannot connect".to_string()
        } else {
            e.to_string()
        };
        LookupError::Unavailable {
            upstream: self.name,
            detail,
        }
    }

    pub fn bad(&self, detail: String) -> LookupError {
        LookupError::BadGateway {
            upstream: self.name,
            detail,
        }
    }
}

/// The diagnostics of an OperationOutcome (or an OAuth error), for error messages (bounded in
/// length).
fn diagnostics(v: &Value) -> Option<String> {
    if let Some(Value::String(e)) = v.get("error") {
        let more = v.get("error_description").and_then(Value::as_str);
        return Some(
            format!("{e} {}", more.unwrap_or_default())
                .trim()
                .chars()
                .take(300)
                .collect(),
        );
    }
    let text: Vec<&str> = v
        .get("issue")?
        .as_array()?
        .iter()
        .filter_map(|i| {
            i.get("diagnostics")
                .or_else(|| i.pointer("/details/text"))
                .and_then(Value::as_str)
        })
        .collect();
    let joined = text.join("; ");
    (!joined.is_empty()).then(|| joined.chars().take(300).collect())
}
