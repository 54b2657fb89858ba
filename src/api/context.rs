//! What every handler gets about its request: the request id, the base URL for links, the
//! `Prefer` header, the caller's identity (once authentication is configured) and the query.
//!
//! Handlers take a [`RequestContext`] instead of reading headers themselves, so cross-cutting
//! concerns (authentication, tenancy, audit) plug in here without touching each handler.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use futures_util::StreamExt as _;
use serde_json::Value;

use super::AppState;
use crate::auth::Caller;
use crate::engine::Access;
use crate::error::FhirError;

/// The request id assigned by the middleware (from `X-Request-Id` or generated).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// `Prefer: return=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreferReturn {
    Representation,
    Minimal,
    OperationOutcome,
}

/// Per-request facts shared by all handlers.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    /// The FHIR base URL, worked out on first use: [`RequestContext::base`].
    base: std::cell::OnceCell<String>,
    /// The request, for what is worked out only when asked.
    req: HttpRequest,
    /// `Prefer: return=…`, if the client sent one (FHIR endpoints default to representation;
    /// the municipal ones answer a summary unless representation is asked for).
    pub prefer_return: Option<PreferReturn>,
    /// `Prefer: handling=lenient`: unknown search parameters are ignored (and reported) instead
    /// of refused.
    pub lenient: bool,
    /// Who is calling (set by the authentication in the request middleware); `None` only on the
    /// open endpoints (the CapabilityStatement), whose access is [`Access::anonymous`].
    pub caller: Option<Caller>,
    /// What the caller may do and see; every engine call takes it.
    pub access: Access,
    /// Query parameters in order, decoded.
    pub query: Vec<(String, String)>,
}

impl RequestContext {
    fn from_request(req: &HttpRequest) -> Result<RequestContext, FhirError> {
        let query: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
            .map_err(|e| FhirError::bad_request(format!("malformed query string: {e}")))?;
        refuse_control_characters_in(&query)?;
        check_format(req, &query)?;
        let mut prefer_return = None;
        let mut lenient = false;
        for value in req
            .headers()
            .get_all("prefer")
            .filter_map(|v| v.to_str().ok())
        {
            for part in value.split([',', ';']).map(str::trim) {
                match part {
                    "return=minimal" => prefer_return = Some(PreferReturn::Minimal),
                    "return=OperationOutcome" => {
                        prefer_return = Some(PreferReturn::OperationOutcome)
                    }
                    "return=representation" => prefer_return = Some(PreferReturn::Representation),
                    "handling=lenient" => lenient = true,
                    "handling=strict" => lenient = false,
                    _ => {}
                }
            }
        }
        // The middleware refuses unauthenticated requests to every endpoint but the open ones;
        // this is the second lock on the same door.
        let caller = req.extensions().get::<Caller>().cloned();
        let access = match &caller {
            Some(c) => Access::for_caller(c),
            None if crate::api::auth::open_path(req.path()) => Access::anonymous(),
            None => return Err(crate::api::auth::unauthenticated()),
        };
        Ok(RequestContext {
            access,
            caller,
            request_id: req
                .extensions()
                .get::<RequestId>()
                .map(|r| r.0.clone())
                .unwrap_or_default(),
            base: std::cell::OnceCell::new(),
            req: req.clone(),
            prefer_return,
            lenient,
            query,
        })
    }
}

impl RequestContext {
    /// The FHIR base URL as the client sees it, e.g. `http://127.0.0.1:8080/fhir`: the
    /// configured `server.base_url`, or the request's origin under the proxy settings. Worked
    /// out when first asked (a read or a search page without links never needs it).
    pub fn base(&self) -> &str {
        self.base.get_or_init(|| {
            let req = &self.req;
            let state = req.app_data::<web::Data<AppState>>();
            // Never actix's `connection_info()`: it believes forwarding headers from anyone.
            match state.map(|s| &s.config.server) {
                Some(server) if !server.base_url.is_empty() => {
                    server.base_url.trim_end_matches('/').to_string()
                }
                Some(server) => {
                    format!("{}/fhir", super::origin::of(req, server).authority_url())
                }
                None => format!("{}/fhir", super::origin::direct(req).authority_url()),
            }
        })
    }
}

impl FromRequest for RequestContext {
    type Error = FhirError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(RequestContext::from_request(req))
    }
}

/// 400 for a query parameter whose name or value holds a control character (after percent
/// decoding): no search matches one, and NUL reaches PostgreSQL as an error (issue 20, item 9).
fn refuse_control_characters_in(query: &[(String, String)]) -> Result<(), FhirError> {
    use fhir_core::fhir::json::clean_string;
    let Some((name, value)) = query
        .iter()
        .find(|(k, v)| !clean_string(k) || !clean_string(v))
    else {
        return Ok(());
    };
    let bad = if clean_string(name) { value } else { name };
    let c = bad
        .chars()
        .find(|c| (*c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r'))
        .unwrap_or('\0');
    let shown: String = name
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    Err(FhirError::bad_request(format!(
        "the query parameter {shown:?} holds the control character U+{:04X}; below U+0020 only TAB, LF and CR are allowed",
        c as u32
    )))
}

/// 406 unless the client accepts FHIR JSON (via `Accept` or `_format`).
fn check_format(req: &HttpRequest, query: &[(String, String)]) -> Result<(), FhirError> {
    if let Some((_, f)) = query.iter().find(|(k, _)| k == "_format") {
        return match f.as_str() {
            "json" | "application/json" | "application/fhir+json" => Ok(()),
            other => Err(FhirError::not_supported(
                406,
                format!(
                    "_format={other} is not available; this server speaks application/fhir+json"
                ),
            )),
        };
    }
    let Some(accept) = req.headers().get("accept").and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    // A Bulk Data file is NDJSON, and the IG lets clients ask for it by that name.
    let ndjson = req.path().starts_with("/fhir/$export-file/");
    let acceptable = accept.split(',').any(|range| {
        let media = range.split(';').next().unwrap_or("").trim();
        matches!(
            media,
            "" | "*/*"
                | "application/*"
                | "application/json"
                | "application/fhir+json"
                | "application/json+fhir"
        ) || (ndjson && matches!(media, "application/fhir+ndjson" | "application/ndjson"))
    });
    if acceptable {
        Ok(())
    } else {
        Err(FhirError::not_supported(
            406,
            format!("cannot answer in {accept:?}; this server speaks application/fhir+json"),
        ))
    }
}

/// The media type of a JSON Patch (RFC 6902), which only PATCH takes.
pub const JSON_PATCH: &str = "application/json-patch+json";

/// A request body holding one JSON document (a FHIR resource or Bundle), size-limited and
/// parsed, with 413/415/400 answers as OperationOutcomes.
#[derive(Debug)]
pub struct FhirBody(pub Value);

/// The same body before parsing: a JSON media type, within the size limit, and the request's
/// limits to parse it with ([`JsonBytes::parse`]). For endpoints that parse straight into their
/// own types.
#[derive(Debug)]
pub struct JsonBytes {
    pub bytes: web::Bytes,
    pub limits: Option<crate::config::LimitsConfig>,
}

impl JsonBytes {
    /// The body as a JSON object within the nesting and Bundle-size limits (400/422 otherwise).
    pub fn parse(&self) -> Result<Value, FhirError> {
        // duplicate keys are refused here, while parsing (400)
        let value: Value = fhir_core::fhir::json::parse_value(&self.bytes).map_err(|e| {
            FhirError::bad_request(format!("the request body is not valid JSON: {e}"))
        })?;
        if !value.is_object() {
            return Err(FhirError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        if let Some(l) = &self.limits {
            crate::api::limits::check_body(&value, l)?;
        }
        Ok(value)
    }

    /// Whether a document nesting `depth` levels deep is within the limit.
    pub fn allows_depth(&self, depth: usize) -> bool {
        self.limits
            .as_ref()
            .is_none_or(|l| depth <= l.max_json_depth)
    }
}

impl FromRequest for JsonBytes {
    type Error = FhirError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let content_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let state = req.app_data::<web::Data<AppState>>();
        let limit = state.map_or(16 << 20, |s| s.config.server.max_body_bytes);
        let limits = state.map(|s| s.config.limits.clone());
        let mut payload = payload.take();
        Box::pin(async move {
            let media = content_type
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if !matches!(
                media.as_str(),
                "application/fhir+json" | "application/json" | "application/json+fhir" | JSON_PATCH
            ) {
                return Err(FhirError::not_supported(
                    415,
                    format!(
                        "Content-Type {content_type:?} is not accepted; send application/fhir+json"
                    ),
                ));
            }
            refuse_other_charsets(&content_type)?;
            let timing = limits.as_ref().map(BodyTiming::from).unwrap_or_default();
            let body = read_body(&mut payload, limit, timing).await?;
            refuse_control_characters(&body)?;
            Ok(JsonBytes {
                bytes: body,
                limits,
            })
        })
    }
}

/// 415 for a `charset` parameter other than UTF-8: FHIR JSON is UTF-8, and reading Latin-1 bytes
/// as UTF-8 would store other text than the client meant.
fn refuse_other_charsets(content_type: &str) -> Result<(), FhirError> {
    for param in content_type.split(';').skip(1) {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        if name.trim().eq_ignore_ascii_case("charset")
            && !value.eq_ignore_ascii_case("utf-8")
            && !value.eq_ignore_ascii_case("utf8")
        {
            return Err(FhirError::not_supported(
                415,
                format!("charset={value} is not accepted; FHIR JSON is sent as charset=utf-8"),
            ));
        }
    }
    Ok(())
}

/// 422 for a body whose strings or keys hold control characters (other than TAB, LF, CR),
/// whatever the validation mode: they must never reach storage (PostgreSQL refuses `\u0000` in
/// jsonb, SQLite would keep it). One scan of the bytes; the locations are looked for only when
/// the scan finds one. A body that is not JSON is left to the parse (400).
fn refuse_control_characters(body: &[u8]) -> Result<(), FhirError> {
    use fhir_core::fhir::json;
    if !json::escapes_control_character(body) {
        return Ok(());
    }
    let Ok(value) = fhir_core::fhir::from_json_bytes::<Value>(body) else {
        return Ok(());
    };
    let root = value["resourceType"].as_str().unwrap_or_default();
    let issues: Vec<_> = json::control_character_locations(&value, root)
        .into_iter()
        .map(|at| {
            fhir_core::fhir::outcome::Issue::error(
                "value",
                "holds a control character; below U+0020 FHIR strings allow only TAB, LF and CR",
            )
            .at(at)
        })
        .collect();
    if issues.is_empty() {
        return Ok(());
    }
    Err(FhirError::new(422, issues))
}

/// How long a client may take to send a request body: no pause longer than `idle`, and after
/// `grace`, on average at least `min_rate` bytes per second since the body began.
#[derive(Debug, Clone, Copy)]
pub struct BodyTiming {
    pub idle: std::time::Duration,
    pub grace: std::time::Duration,
    pub min_rate: u64,
}

impl Default for BodyTiming {
    fn default() -> BodyTiming {
        BodyTiming {
            idle: std::time::Duration::from_secs(10),
            grace: std::time::Duration::from_secs(10),
            min_rate: 1024,
        }
    }
}

impl From<&crate::config::LimitsConfig> for BodyTiming {
    fn from(l: &crate::config::LimitsConfig) -> BodyTiming {
        BodyTiming {
            idle: std::time::Duration::from_secs(l.body_read_timeout_secs.max(1)),
            grace: std::time::Duration::from_secs(l.body_read_timeout_secs.max(1)),
            min_rate: l.body_min_bytes_per_sec,
        }
    }
}

/// The 413 of a body over `limit` bytes.
pub fn body_too_large(limit: usize) -> FhirError {
    FhirError::new(
        413,
        vec![fhir_core::fhir::outcome::Issue::error(
            "too-costly",
            format!("the request body exceeds the limit of {limit} bytes"),
        )],
    )
}

/// Read a whole request body: 413 past `limit` bytes (at once when `Content-Length` says so,
/// see `api::observe`), 408 when the client pauses longer than `timing.idle` or sends slower
/// than `timing.min_rate` once `timing.grace` has passed, so a trickled body cannot hold a
/// worker's memory and a connection open for ever.
pub async fn read_body(
    payload: &mut Payload,
    limit: usize,
    timing: BodyTiming,
) -> Result<web::Bytes, FhirError> {
    let start = tokio::time::Instant::now();
    let mut body = web::BytesMut::new();
    loop {
        // The latest the next bytes may come: within `idle`, and early enough that the average
        // rate stays at `min_rate` (never before `grace`).
        let mut deadline = tokio::time::Instant::now() + timing.idle;
        if timing.min_rate > 0 {
            let due = std::time::Duration::from_secs_f64(
                (body.len() as f64 + 1.0) / timing.min_rate as f64,
            );
            deadline = deadline.min(start + due.max(timing.grace));
        }
        let next = match tokio::time::timeout_at(deadline, payload.next()).await {
            Ok(next) => next,
            Err(_) => {
                return Err(FhirError::new(
                    408,
                    vec![fhir_core::fhir::outcome::Issue::error(
                        "timeout",
                        format!(
                            "the request body came too slowly ({} bytes in {:.0} s; at most {} s \
                             without data and at least {} bytes/s are required)",
                            body.len(),
                            start.elapsed().as_secs_f64(),
                            timing.idle.as_secs(),
                            timing.min_rate
                        ),
                    )],
                ))
            }
        };
        let Some(chunk) = next else {
            return Ok(body.freeze());
        };
        let chunk = chunk
            .map_err(|e| FhirError::bad_request(format!("cannot read the request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(body_too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
}

/// Any request body, read as [`read_body`] does (for form-encoded searches).
pub struct RawBody(pub web::Bytes);

impl FromRequest for RawBody {
    type Error = FhirError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>();
        let limit = state.map_or(16 << 20, |s| s.config.server.max_body_bytes);
        let timing = state.map_or_else(BodyTiming::default, |s| (&s.config.limits).into());
        let mut payload = payload.take();
        Box::pin(async move { read_body(&mut payload, limit, timing).await.map(RawBody) })
    }
}

impl FromRequest for FhirBody {
    type Error = FhirError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let patch = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with(JSON_PATCH));
        let raw = JsonBytes::from_request(req, payload);
        Box::pin(async move {
            if patch {
                return Err(FhirError::not_supported(
                    415,
                    format!("{JSON_PATCH} is only taken by PATCH; send application/fhir+json"),
                ));
            }
            raw.await?.parse().map(FhirBody)
        })
    }
}
