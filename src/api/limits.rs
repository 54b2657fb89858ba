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

/// Token buckets per client: `rate` requests per second on average, `burst` at once.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: moka::sync::Cache<String, Arc<Mutex<Bucket>>>,
}

impl RateLimiter {
    pub fn new(limits: &LimitsConfig) -> Option<RateLimiter> {
        (limits.rate_per_second > 0.0).then(|| RateLimiter {
            rate: limits.rate_per_second,
            burst: f64::from(limits.rate_burst.max(1)),
            // A client idle long enough to have a full bucket again needs no entry.
            buckets: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs_f64(
                    (f64::from(limits.rate_burst.max(1)) / limits.rate_per_second).max(1.0),
                ))
                .build(),
        })
    }

    /// Take one token for `client`; `Err(seconds)` to wait when there is none.
    pub fn take(&self, client: &str) -> Result<(), u64> {
        let bucket = self.buckets.get_with_by_ref(client, || {
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

/// If the request's client (`client`: its id once authenticated, else its peer address) is over
/// its rate: how many seconds it should wait. Health and metrics are not limited; without a
/// configured limiter nothing is.
pub fn throttled(req: &actix_web::dev::ServiceRequest, client: &str) -> Option<u64> {
    let limiter = req.app_data::<actix_web::web::Data<RateLimiter>>()?;
    if matches!(req.path(), "/healthz" | "/readyz" | "/metrics") {
        return None;
    }
    limiter.take(client).err()
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
