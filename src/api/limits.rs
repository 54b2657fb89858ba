//! Limits on what one request or one client may cost, and the security headers every response
//! carries. Each refusal is an OperationOutcome: 422 for a body nested too deep or a Bundle with
//! too many entries, 429 with `Retry-After` for a client over its rate.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderName, HeaderValue};
use serde_json::Value;

use crate::config::LimitsConfig;
use crate::error::FhirError;
use fhir_core::fhir::outcome::Issue;

/// How deep `v` nests (a scalar is 0, `{}` is 1), stopping once past `limit`.
fn depth(v: &Value, limit: usize) -> usize {
    // Iterative, so a hostile body cannot overflow the stack here either.
    let mut deepest = 0;
    let mut stack: Vec<(&Value, usize)> = vec![(v, 0)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Object(m) => Box::new(m.values()),
            Value::Array(a) => Box::new(a.iter()),
            _ => continue,
        };
        let d = d + 1;
        deepest = deepest.max(d);
        if deepest > limit {
            return deepest;
        }
        stack.extend(children.map(|c| (c, d)));
    }
    deepest
}

/// Check a parsed request body against the nesting and Bundle-size limits.
pub fn check_body(v: &Value, limits: &LimitsConfig) -> Result<(), FhirError> {
    if depth(v, limits.max_json_depth) > limits.max_json_depth {
        return Err(FhirError::new(
            422,
            vec![Issue::error(
                "too-costly",
                format!(
                    "the request body nests objects and arrays more than {} levels deep",
                    limits.max_json_depth
                ),
            )],
        ));
    }
    // Bundles the gateway works entry by entry; a Bundle stored as a resource (a document, a
    // collection) is bounded by the body size like any other resource.
    let processed = matches!(
        v.get("type").and_then(Value::as_str),
        Some("transaction" | "batch" | "message")
    );
    if processed && v.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
        let n = v.get("entry").and_then(Value::as_array).map_or(0, Vec::len);
        if n > limits.max_bundle_entries {
            return Err(FhirError::new(
                422,
                vec![Issue::error(
                    "too-costly",
                    format!(
                        "the Bundle has {n} entries; at most {} are accepted in one request: split it",
                        limits.max_bundle_entries
                    ),
                )
                .at("Bundle.entry")],
            ));
        }
    }
    Ok(())
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by key: `rate` requests per second on average, `burst` at once. The map holds at
/// most [`MAX_BUCKETS`] keys and forgets a key once it has been idle long enough for its bucket to
/// be full again (a fresh bucket is full too), so a flood of new addresses costs bounded memory.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: moka::sync::Cache<String, Arc<Mutex<Bucket>>>,
}

/// Most keys a [`RateLimiter`] remembers (about 100 bytes each).
pub const MAX_BUCKETS: u64 = 100_000;

impl RateLimiter {
    pub fn new(limits: &LimitsConfig) -> Option<RateLimiter> {
        (limits.rate_per_second > 0.0).then(|| RateLimiter {
            rate: limits.rate_per_second,
            burst: f64::from(limits.rate_burst.max(1)),
            buckets: moka::sync::Cache::builder()
                .max_capacity(MAX_BUCKETS)
                .time_to_idle(Duration::from_secs_f64(
                    (f64::from(limits.rate_burst.max(1)) / limits.rate_per_second).max(1.0),
                ))
                .build(),
        })
    }

    /// Take one token for `key`; `Err(seconds)` to wait when there is none.
    pub fn take(&self, key: &str) -> Result<(), u64> {
        let bucket = self.buckets.get_with_by_ref(key, || {
            Arc::new(Mutex::new(Bucket {
                tokens: self.burst,
                at: Instant::now(),
            }))
        });
        let Ok(mut b) = bucket.lock() else {
            return Ok(());
        };
        let now = Instant::now();
        let refill = now.duration_since(b.at).as_secs_f64() * self.rate;
        b.tokens = (b.tokens + refill).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - b.tokens) / self.rate).ceil();
            Err(wait.max(1.0) as u64)
        }
    }

    /// Return the token [`RateLimiter::take`] took for `key` (the request turned out to be
    /// counted elsewhere).
    pub fn give_back(&self, key: &str) {
        if let Some(bucket) = self.buckets.get(key) {
            if let Ok(mut b) = bucket.lock() {
                b.tokens = (b.tokens + 1.0).min(self.burst);
            }
        }
    }

    /// Keys remembered now (for tests and metrics; moka counts lazily).
    pub fn len(&self) -> u64 {
        self.buckets.run_pending_tasks();
        self.buckets.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The two rate limits of every request but health and metrics (both off when
/// `limits.rate_per_second` is 0):
/// - per peer address, consulted before authentication, so requests without credentials, with
///   garbage or with forged ones cost a bucket token before any signature is checked; a request
///   that authenticates gets its peer token back, so clients behind one proxy are not limited
///   together;
/// - per client id, after authentication.
///
/// Each refusal is counted by which limit refused it (`sektorbro_requests_throttled_total`), the
/// alarm signal of a refusal flood.
pub struct RateLimits {
    peers: Option<RateLimiter>,
    clients: Option<RateLimiter>,
    throttled_peer: crate::metrics::Counter,
    throttled_client: crate::metrics::Counter,
}

impl RateLimits {
    pub fn new(limits: &LimitsConfig) -> RateLimits {
        RateLimits {
            peers: RateLimiter::new(limits),
            clients: RateLimiter::new(limits),
            throttled_peer: Default::default(),
            throttled_client: Default::default(),
        }
    }

    /// Take a token of the peer's bucket (`Err(seconds)` when there is none).
    pub fn take_peer(&self, peer: &str) -> Result<(), u64> {
        let Some(l) = &self.peers else {
            return Ok(());
        };
        l.take(peer).inspect_err(|_| {
            self.throttled_peer.inc();
        })
    }

    /// The request authenticated: its peer token goes back.
    pub fn authenticated(&self, peer: &str) {
        if let Some(l) = &self.peers {
            l.give_back(peer);
        }
    }

    /// Take a token of the authenticated client's bucket.
    pub fn take_client(&self, client: &str) -> Result<(), u64> {
        let Some(l) = &self.clients else {
            return Ok(());
        };
        l.take(client).inspect_err(|_| {
            self.throttled_client.inc();
        })
    }

    /// Peer addresses remembered now.
    pub fn peers_remembered(&self) -> u64 {
        self.peers.as_ref().map_or(0, RateLimiter::len)
    }

    /// `sektorbro_requests_throttled_total{limit}` and the bucket count, in `registry`.
    pub fn register_metrics(&self, registry: &mut crate::metrics::Registry) {
        registry.register_collector(Box::new(ThrottleMetrics {
            peer: self.throttled_peer.clone(),
            client: self.throttled_client.clone(),
        }));
    }
}

#[derive(Debug)]
struct ThrottleMetrics {
    peer: crate::metrics::Counter,
    client: crate::metrics::Counter,
}

impl crate::metrics::Collector for ThrottleMetrics {
    fn encode(&self, mut encoder: crate::metrics::DescriptorEncoder) -> std::fmt::Result {
        crate::metrics::encode_family(
            &mut encoder,
            "sektorbro_requests_throttled",
            "Requests refused with 429, by the limit that refused them (peer: before authentication, by address; client: after, by client id). A rising peer count is a refusal flood.",
            crate::metrics::MetricType::Counter,
            [("peer", &self.peer), ("client", &self.client)]
                .map(|(limit, n)| ([("limit", limit)], n.clone())),
        )
    }
}

/// The key of a peer's bucket: its IPv4 address, or the /64 network of an IPv6 address (one
/// host commonly holds a whole /64, so per-address buckets would not limit it). Empty when the
/// peer is unknown (a Unix socket), which then shares one bucket.
pub fn peer_key(peer: Option<std::net::SocketAddr>) -> String {
    match peer.map(|a| a.ip()) {
        Some(std::net::IpAddr::V4(v4)) => v4.to_string(),
        Some(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        None => String::new(),
    }
}

/// Whether rate limits apply to `path`: health and metrics are never limited.
pub fn limited_path(path: &str) -> bool {
    !matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// The 429 answer.
pub fn too_many(retry_after: u64) -> FhirError {
    FhirError::new(
        429,
        vec![Issue::error(
            "throttled",
            format!("too many requests from this client; try again in {retry_after} s"),
        )],
    )
}

/// The 429 response, with `Retry-After`.
pub fn too_many_response(retry_after: u64) -> actix_web::HttpResponse {
    use actix_web::ResponseError as _;
    let mut res = too_many(retry_after).error_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    res
}

/// Headers every response carries: the gateway serves health data to programs, never pages to
/// browsers, so nothing may be sniffed, framed, cached on disk or leak a referrer.
pub fn security_headers(headers: &mut actix_web::http::header::HeaderMap) {
    let set =
        |h: &mut actix_web::http::header::HeaderMap, name: HeaderName, value: &'static str| {
            if !h.contains_key(&name) {
                h.insert(name, HeaderValue::from_static(value));
            }
        };
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'",
    );
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::CACHE_CONTROL, "no-store");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> LimitsConfig {
        LimitsConfig {
            max_json_depth: 3,
            max_bundle_entries: 2,
            rate_per_second: 1.0,
            rate_burst: 2,
            request_header_timeout_secs: 10,
            body_read_timeout_secs: 10,
            body_min_bytes_per_sec: 1024,
        }
    }

    #[test]
    fn depth_counts_levels() {
        assert_eq!(depth(&serde_json::json!(1), 10), 0);
        assert_eq!(depth(&serde_json::json!({"a": [1]}), 10), 2);
        assert!(check_body(&serde_json::json!({"a": {"b": {"c": 1}}}), &limits()).is_ok());
        let e = check_body(&serde_json::json!({"a": {"b": {"c": [1]}}}), &limits()).unwrap_err();
        assert_eq!(e.status, 422);
    }

    #[test]
    fn bundle_entries_are_counted() {
        let b =
            serde_json::json!({"resourceType": "Bundle", "type": "batch", "entry": [{}, {}, {}]});
        assert_eq!(check_body(&b, &limits()).unwrap_err().status, 422);
        let stored = serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": [{}, {}, {}]});
        assert!(check_body(&stored, &limits()).is_ok());
    }

    #[test]
    fn buckets_refuse_past_the_burst_and_name_the_wait() {
        let r = RateLimiter::new(&limits()).unwrap();
        assert!(r.take("a").is_ok());
        assert!(r.take("a").is_ok());
        assert_eq!(r.take("a"), Err(1));
        assert!(r.take("b").is_ok(), "clients have their own buckets");
    }
}
