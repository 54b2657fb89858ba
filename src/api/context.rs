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
    /// The FHIR base URL as the client sees it, e.g. `http://127.0.0.1:8080/fhir`.
    pub base: String,
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
        let state = req.app_data::<web::Data<AppState>>();
        // Never actix's `connection_info()`: it believes forwarding headers from anyone.
        let base = match state.map(|s| &s.config.server) {
            Some(server) if !server.base_url.is_empty() => {
                server.base_url.trim_end_matches('/').to_string()
            }
            Some(server) => format!("{}/fhir", super::origin::of(req, server).authority_url()),
            None => format!("{}/fhir", super::origin::direct(req).authority_url()),
        };
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
            base,
            prefer_return,
            lenient,
            query,
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
    let acceptable = accept.split(',').any(|range| {
        let media = range.split(';').next().unwrap_or("").trim();
        matches!(
            media,
            "" | "*/*"
                | "application/*"
                | "application/json"
                | "application/fhir+json"
                | "application/json+fhir"
        )
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
        let value: Value = fhir_core::fhir::from_json_bytes(&self.bytes).map_err(|e| {
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
                "application/fhir+json" | "application/json" | "application/json+fhir"
            ) {
                return Err(FhirError::not_supported(
                    415,
                    format!(
                        "Content-Type {content_type:?} is not accepted; send application/fhir+json"
                    ),
                ));
            }
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| {
                    FhirError::bad_request(format!("cannot read the request body: {e}"))
                })?;
                if body.len() + chunk.len() > limit {
                    return Err(FhirError::new(
                        413,
                        vec![fhir_core::fhir::outcome::Issue::error(
                            "too-costly",
                            format!("the request body exceeds the limit of {limit} bytes"),
                        )],
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(JsonBytes {
                bytes: body.freeze(),
                limits,
            })
        })
    }
}

impl FromRequest for FhirBody {
    type Error = FhirError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let raw = JsonBytes::from_request(req, payload);
        Box::pin(async move { raw.await?.parse().map(FhirBody) })
    }
}
