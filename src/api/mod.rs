//! HTTP only: routes, request context, extraction and response building. Handlers call the
//! [`Engine`]; no SQL and no FHIR rules live here.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod context;
pub mod fhir;
pub mod health;
pub mod limits;
pub mod municipal;
pub mod response;

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse};
use tracing::Instrument as _;

use crate::config::Config;
use crate::engine::Engine;
use crate::error::FhirError;
use crate::metrics::Metrics;
use context::RequestId;

/// Shared state of all handlers.
pub struct AppState {
    pub engine: Arc<Engine>,
    /// Cached lookups in upstream registries, terminology and key sets (the same as the engine's).
    pub lookups: Arc<crate::lookup::Lookups>,
    pub metrics: Arc<Metrics>,
    /// Forwarding of FHIR messages to regional systems (`Forwarder::submit`).
    pub forwarder: Arc<crate::forward::Forwarder>,
    /// The audit trail: `auditor.record(AuditRecord)` for every attempt (`src/audit/`).
    pub auditor: crate::audit::Auditor,
    /// Verifies callers' credentials (bearer tokens, client certificates).
    pub auth: Arc<crate::auth::Authenticator>,
    pub config: Config,
    /// The rate limits per peer address and per client.
    pub limits: Arc<limits::RateLimits>,
    /// When this instance started (the CapabilityStatement's date).
    pub started: String,
}

/// Register every route on an actix `App`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    use fhir::{bundle, crud, history, metadata, process_message, search, share, validate};
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(health::metrics))
        .service(admin::scope())
        .service(resource("/municipal/v1/care-records").route(web::post().to(municipal::post)))
        .service(resource("/municipal/v1/care-records/{id}").route(web::get().to(municipal::get)))
        .service(
            resource("/municipal/v1/discharge-notes")
                .route(web::post().to(municipal::post_discharge_note)),
        )
        .service(
            web::scope("/fhir")
                .service(resource("/metadata").route(web::get().to(metadata::metadata)))
                .service(resource("").route(web::post().to(bundle::transaction_or_batch)))
                .service(resource("/").route(web::post().to(bundle::transaction_or_batch)))
                .service(resource("/_history").route(web::get().to(history::system)))
                .service(resource("/$validate").route(web::post().to(validate::system)))
                .service(resource("/$process-message").route(web::post().to(process_message::post)))
                .service(resource("/{type}/$validate").route(web::post().to(validate::by_type)))
                .service(
                    resource("/{type}")
                        .route(web::get().to(search::search))
                        .route(web::post().to(crud::create))
                        .route(web::put().to(crud::conditional_update)),
                )
                .service(resource("/{type}/_search").route(web::post().to(search::search_post)))
                .service(resource("/{type}/_history").route(web::get().to(history::by_type)))
                .service(
                    resource("/{type}/{id}")
                        .route(web::get().to(crud::read))
                        .route(web::put().to(crud::update))
                        .route(web::delete().to(crud::delete)),
                )
                .service(resource("/{type}/{id}/_history").route(web::get().to(history::instance)))
                .service(resource("/{type}/{id}/$share").route(web::post().to(share::post)))
                .service(resource("/{type}/{id}/_history/{vid}").route(web::get().to(crud::vread)))
                .default_service(web::to(not_found)),
        )
        // Outside /fhir too: actix's own 404 has an empty body.
        .default_service(web::to(not_found));
}

/// A route whose other methods answer 405 with an OperationOutcome.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn method_not_allowed(req: actix_web::HttpRequest) -> Result<HttpResponse, FhirError> {
    Err(FhirError::not_supported(
        405,
        format!("{} is not supported on {}", req.method(), req.path()),
    ))
}

async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, FhirError> {
    Err(FhirError::not_found(format!(
        "no endpoint at {}",
        req.path()
    )))
}

/// A header value safe to echo: up to 128 characters of `[A-Za-z0-9._-]`.
fn acceptable_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    (!s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
    .then(|| s.to_string())
}

/// The route pattern a path matches, as `HttpRequest::match_pattern` would name it (tested
/// against it below), without matching the route table's patterns a second time: that cost a
/// few percent of a cached read.
fn route_label(path: &str) -> &'static str {
    match path {
        "/healthz" => return "/healthz",
        "/readyz" => return "/readyz",
        "/metrics" => return "/metrics",
        "/fhir" => return "/fhir",
        "/fhir/" => return "/fhir/",
        "/fhir/metadata" => return "/fhir/metadata",
        "/fhir/_history" => return "/fhir/_history",
        "/fhir/$validate" => return "/fhir/$validate",
        "/fhir/$process-message" => return "/fhir/$process-message",
        "/admin/caches" => return "/admin/caches",
        "/admin/outbox" => return "/admin/outbox",
        "/municipal/v1/care-records" => return "/municipal/v1/care-records",
        "/municipal/v1/discharge-notes" => return "/municipal/v1/discharge-notes",
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/admin/caches/") {
        return match rest.split('/').collect::<Vec<_>>().as_slice() {
            [c] if !c.is_empty() => "/admin/caches/{cache}",
            [c, "lookup"] if !c.is_empty() => "/admin/caches/{cache}/lookup",
            _ => "unmatched",
        };
    }
    if let Some(rest) = path.strip_prefix("/admin/outbox/") {
        return match rest.split('/').collect::<Vec<_>>().as_slice() {
            [m] if !m.is_empty() => "/admin/outbox/{message_id}",
            [m, "retry"] if !m.is_empty() => "/admin/outbox/{message_id}/retry",
            [m, "discard"] if !m.is_empty() => "/admin/outbox/{message_id}/discard",
            _ => "unmatched",
        };
    }
    if let Some(id) = path.strip_prefix("/municipal/v1/care-records/") {
        return if id.is_empty() || id.contains('/') {
            "unmatched"
        } else {
            "/municipal/v1/care-records/{id}"
        };
    }
    let Some(rest) = path.strip_prefix("/fhir/") else {
        return "unmatched";
    };
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return "unmatched";
    }
    match segments.as_slice() {
        [_] => "/fhir/{type}",
        [_, "_search"] => "/fhir/{type}/_search",
        [_, "_history"] => "/fhir/{type}/_history",
        [_, "$validate"] => "/fhir/{type}/$validate",
        [_, _] => "/fhir/{type}/{id}",
        [_, _, "_history"] => "/fhir/{type}/{id}/_history",
        [_, _, "$share"] => "/fhir/{type}/{id}/$share",
        [_, _, "_history", _] => "/fhir/{type}/{id}/_history/{vid}",
        _ => "unmatched",
    }
}

/// Per request: assign a request id (echoed as `X-Request-Id`), open a tracing span carrying it,
/// authenticate the caller (401 before any work; see [`auth`]), refuse a client over its rate
/// (429), put the security headers on the response, log the outcome and record metrics. One
/// middleware, so the request path pays for one layer.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(acceptable_request_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let method = req.method().to_string();
    let span =
        tracing::info_span!("request", request_id = %id, method = %method, path = %req.path());
    let start = Instant::now();
    // The peer's bucket first, so that nothing a client sends is verified past its rate; a
    // request that authenticates gets that token back and is limited by its client id instead.
    let mut refusal = None;
    if let Some(state) = &state {
        let limited = limits::limited_path(req.path());
        let peer = limits::peer_key(req.peer_addr());
        let open = auth::open_path(req.path());
        let charged_peer = limited && (open || !auth::recognized(&state.auth, &req));
        if charged_peer {
            if let Err(wait) = state.limits.take_peer(&peer) {
                refusal = Some(limits::too_many_response(wait));
            }
        }
        if refusal.is_none() && !open {
            match auth::authenticate(&state.auth, &req).await {
                Ok(caller) => {
                    if charged_peer {
                        state.limits.authenticated(&peer);
                    }
                    if limited {
                        if let Err(wait) = state.limits.take_client(&caller.client.id) {
                            refusal = Some(limits::too_many_response(wait));
                        }
                    }
                    auth::attach(&req, caller);
                }
                Err(e) => {
                    span.in_scope(|| tracing::info!(reason = %e, "authentication refused"));
                    refusal = Some(auth::refused(&e));
                }
            }
        }
    }
    // A body announced larger than any accepted is refused before a byte of it is read.
    if let (None, Some(state)) = (&refusal, &state) {
        let limit = state.config.server.max_body_bytes;
        let announced = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if announced.is_some_and(|n| n > limit as u64) {
            use actix_web::ResponseError as _;
            refusal = Some(context::body_too_large(limit).error_response());
        }
    }
    let mut res = match refusal {
        Some(answer) => req.into_response(answer).map_into_right_body(),
        None => next
            .call(req)
            .instrument(span.clone())
            .await?
            .map_into_left_body(),
    };
    limits::security_headers(res.headers_mut());
    let elapsed = start.elapsed();
    let status = res.status().as_u16();
    let route = route_label(res.request().path());
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), v);
    }
    if let Some(state) = &state {
        state.metrics.observe(route, &method, status, elapsed);
        let location = audit::location(res.headers());
        if let Some(rec) = audit::record(
            res.request(),
            route,
            status,
            location.as_deref(),
            &id,
            state.config.audit.max_query_bytes,
        ) {
            state.auditor.record(rec).await;
        }
    }
    span.in_scope(|| {
        tracing::info!(status, route = %route, elapsed_ms = elapsed.as_secs_f64() * 1e3, "answered");
    });
    Ok(res)
}

#[cfg(test)]
mod tests {
    use actix_web::middleware::from_fn;
    use actix_web::{test, App};

    use super::*;

    /// Answers with whether `route_label` agrees with actix's own match of the route table.
    async fn compare(
        req: ServiceRequest,
        _next: Next<impl MessageBody + 'static>,
    ) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
        let actix = req
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_string());
        let ours = route_label(req.path());
        let (req, _) = req.into_parts();
        let body = format!("{actix} {ours}");
        Ok(ServiceResponse::new(req, HttpResponse::Ok().body(body)))
    }

    #[actix_web::test]
    async fn route_labels_agree_with_the_route_table() {
        let app = test::init_service(App::new().wrap(from_fn(compare)).configure(routes)).await;
        for path in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/fhir",
            "/fhir/",
            "/fhir/metadata",
            "/fhir/_history",
            "/fhir/$validate",
            "/fhir/$process-message",
            "/fhir/Patient",
            "/fhir/Patient/$validate",
            "/fhir/Patient/_search",
            "/fhir/Patient/_history",
            "/fhir/Patient/p1",
            "/fhir/Patient/p1/_history",
            "/fhir/Patient/p1/$share",
            "/fhir/Patient/p1/_history/2",
            "/fhir/Patient/p1/x",
            "/fhir/Patient/p1/_history/2/x",
            "/fhir//x",
            "/fhir/Patient/",
            "/elsewhere",
            "/admin/caches",
            "/admin/caches/patients",
            "/admin/caches/patients/lookup",
            "/admin/caches/patients/x/y",
            "/admin/caches/",
            "/admin/outbox",
            "/admin/outbox/m-1",
            "/admin/outbox/m-1/retry",
            "/admin/outbox/m-1/discard",
            "/admin/outbox/m-1/x",
            "/municipal/v1/care-records",
            "/municipal/v1/care-records/HAD-1",
            "/municipal/v1/care-records/HAD-1/x",
            "/municipal/v1/discharge-notes",
        ] {
            let req = test::TestRequest::get().uri(path).to_request();
            let body = test::call_and_read_body(&app, req).await;
            let text = String::from_utf8_lossy(&body).to_string();
            let (actix, ours) = text.split_once(' ').expect("two labels");
            assert_eq!(actix, ours, "{path}");
        }
    }
}
