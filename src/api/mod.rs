//! HTTP only: routes, request context, extraction and response building. Handlers call the
//! [`Engine`]; no SQL and no FHIR rules live here.

pub mod context;
pub mod fhir;
pub mod health;
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
    pub metrics: Arc<Metrics>,
    pub config: Config,
    /// When this instance started (the CapabilityStatement's date).
    pub started: String,
}

/// Register every route on an actix `App`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    use fhir::{bundle, crud, history, metadata, search, validate};
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(health::metrics))
        .service(
            web::scope("/fhir")
                .service(resource("/metadata").route(web::get().to(metadata::metadata)))
                .service(resource("").route(web::post().to(bundle::transaction_or_batch)))
                .service(resource("/").route(web::post().to(bundle::transaction_or_batch)))
                .service(resource("/_history").route(web::get().to(history::system)))
                .service(resource("/$validate").route(web::post().to(validate::system)))
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
                .service(resource("/{type}/{id}/_history/{vid}").route(web::get().to(crud::vread)))
                .default_service(web::to(not_found)),
        );
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
        "no FHIR endpoint at {}",
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

/// Per request: assign a request id (echoed as `X-Request-Id`), open a tracing span carrying it,
/// log the outcome and record metrics.
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
    let metrics = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.metrics.clone());
    let method = req.method().to_string();
    let span =
        tracing::info_span!("request", request_id = %id, method = %method, path = %req.path());
    let start = Instant::now();
    let mut res = next.call(req).instrument(span.clone()).await?;
    let elapsed = start.elapsed();
    let status = res.status().as_u16();
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), v);
    }
    if let Some(m) = metrics {
        m.observe(&route, &method, status, elapsed);
    }
    span.in_scope(|| {
        tracing::info!(status, route = %route, elapsed_ms = elapsed.as_secs_f64() * 1e3, "answered");
    });
    Ok(res)
}
