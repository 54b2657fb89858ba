//! HTTP only: routes, request context, extraction and response building. Handlers call the
//! [`Engine`]; no SQL and no FHIR rules live here.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod console;
pub mod context;
pub mod fhir;
pub mod health;
pub mod kpis;
pub mod limits;
pub mod municipal;
pub mod operations;
pub mod origin;
pub mod reports;
pub mod response;
pub mod smart;

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
    /// Bulk Data export jobs (`$export`, status, downloads).
    pub bulk: Arc<crate::bulk::Exporter>,
    /// When this instance started (the CapabilityStatement's date).
    pub started: String,
}

/// Register every route on an actix `App`, from the operation table (`operations.rs`): each
/// pattern is one resource, whose other methods answer 405 (and OPTIONS its `Allow`); the admin
/// routes share one scope behind the administrators' gate.
///
/// Actix tries the patterns in registration order. The FHIR routes go first (every route's
/// first segment is literal, so routes under different first segments never compete and their
/// relative order changes nothing), and the hot read and search routes go right after the
/// FHIR routes without placeholders, in their narrowed form (`operations::early_patterns`).
pub fn routes(cfg: &mut web::ServiceConfig) {
    let mut admin = admin::scope();
    let (fhir, rest): (Vec<&str>, Vec<&str>) =
        operations::route_patterns().partition(|r| r.starts_with("/fhir"));
    let mut early_done = false;
    for route in fhir {
        if !early_done && route.contains('{') {
            for (label, pattern) in operations::early_patterns() {
                cfg.service(resource(pattern, label));
            }
            early_done = true;
        }
        cfg.service(resource(route, route));
    }
    for route in rest {
        match route.strip_prefix("/admin") {
            Some(path) => admin = admin.service(resource(path, route)),
            None => {
                cfg.service(resource(route, route));
            }
        }
    }
    cfg.service(admin)
        .service(web::scope("/fhir").default_service(web::to(not_found)))
        // Outside /fhir too: actix's own 404 has an empty body.
        .default_service(web::to(not_found));
}

/// The actix resource at `path` serving the table's rows for `route`.
fn resource(path: &str, route: &str) -> actix_web::Resource {
    operations::actix_routes(route)
        .into_iter()
        .fold(web::resource(path), |r, route| r.route(route))
        .default_service(web::to(other_method))
}

/// A method the route does not serve: OPTIONS answers the route's `Allow` (RFC 9110 9.3.7),
/// anything else 405 with `Allow` and an OperationOutcome.
async fn other_method(req: actix_web::HttpRequest) -> HttpResponse {
    use actix_web::ResponseError as _;
    let allow = operations::allow(operations::route_label(req.path()));
    if req.method() == actix_web::http::Method::OPTIONS {
        return HttpResponse::NoContent()
            .insert_header((actix_web::http::header::ALLOW, allow))
            .finish();
    }
    let mut res = FhirError::not_supported(
        405,
        format!(
            "{} is not supported on {}; it answers {allow}",
            req.method(),
            req.path()
        ),
    )
    .error_response();
    if let Ok(v) = HeaderValue::from_str(&allow) {
        res.headers_mut().insert(actix_web::http::header::ALLOW, v);
    }
    res
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

use operations::route_label;

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
    // Route and status are recorded after the "answered" line (the log has them there), for
    // the exported trace (crate::telemetry).
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %method,
        path = %req.path(),
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    crate::telemetry::adopt_parent(&span, req.headers());
    let start = Instant::now();
    // The peer's bucket first, so that nothing a client sends is verified past its rate; a
    // request that authenticates gets that token back and is limited by its client id instead.
    let mut refusal = None;
    // Matched once: the open paths, the metrics label and the audit all read it.
    let route = route_label(req.path());
    if let Some(state) = &state {
        let limited = limits::limited_path(req.path());
        // The client's address: the connection's, or a trusted proxy's word for it.
        let ip = origin::client_ip(req.request(), &state.config.server);
        req.extensions_mut().insert(origin::ClientIp(ip));
        let client = ip.map(|ip| std::net::SocketAddr::new(ip, 0));
        let open = operations::route_is_open(route);
        let charged_peer = limited && (open || !auth::recognized(&state.auth, &req));
        // The peer's key only when its bucket is charged: formatting the address was a
        // thousand instructions of every authenticated request that never used it.
        let peer = charged_peer.then(|| limits::peer_key(client));
        if let Some(peer) = &peer {
            if let Err(wait) = state.limits.take_peer(peer) {
                refusal = Some(limits::too_many_response(wait));
            }
        }
        if refusal.is_none() && !open {
            // Console pages: the session cookie, never a bearer token (and the cookie nowhere
            // else, so no API request is made with a browser's ambient credentials).
            let console_page = route.starts_with("/console/");
            let who = if console_page {
                console::session_caller(state, req.headers(), auth::peer_is_loopback(&req))
                    .ok_or(crate::auth::AuthError::Missing)
            } else {
                auth::authenticate(&state.auth, &req).await
            };
            match who {
                Ok(caller) => {
                    if let Some(peer) = &peer {
                        state.limits.authenticated(peer);
                    }
                    if limited {
                        if let Err(wait) = state.limits.take_client(&caller.client.id) {
                            refusal = Some(limits::too_many_response(wait));
                        }
                    }
                    auth::attach(&req, caller);
                }
                Err(_) if console_page => refusal = Some(console::to_sign_in()),
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
    // A write's audit record goes into the write's own transaction (`audit::in_tx`): the maker
    // turns what the engine wrote into this request's record.
    let mut scoped = None;
    let mut res = match refusal {
        Some(answer) => req.into_response(answer).map_into_right_body(),
        // Reads write nothing: only other methods get a maker.
        None => match state
            .as_ref()
            .filter(|s| s.auditor.is_enabled() && !matches!(method.as_str(), "GET" | "HEAD"))
        {
            Some(st) => {
                // Built before the handler runs (the request cannot be kept: routing needs it
                // unshared), completed by what the write stored.
                let template = audit::record(
                    req.request(),
                    route,
                    200,
                    None,
                    None,
                    &id,
                    st.config.audit.max_query_bytes,
                );
                let maker: crate::audit::in_tx::Maker =
                    Box::new(move |entity, citizen, status, kind| {
                        template
                            .as_ref()
                            .map(|t| audit::for_write(t, entity, citizen, status, kind))
                    });
                let (s, fut) = crate::audit::in_tx::scope(maker, next.call(req));
                scoped = Some(s);
                fut.instrument(span.clone()).await?.map_into_left_body()
            }
            None => next
                .call(req)
                .instrument(span.clone())
                .await?
                .map_into_left_body(),
        },
    };
    limits::security_headers(res.headers_mut());
    let elapsed = start.elapsed();
    let status = res.status().as_u16();
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), v);
    }
    if let Some(state) = &state {
        state.metrics.observe(route, &method, status, elapsed);
        // Recorded already when a write's transaction carried the record (and succeeded); with
        // the audit trail off, no record is built.
        let in_tx = scoped.is_some_and(|s| s.recorded() > 0) && status < 400;
        let record = match in_tx || !state.auditor.is_enabled() {
            true => None,
            false => audit::record(
                res.request(),
                route,
                status,
                audit::written(res.response()).as_deref(),
                audit::citizen(res.response()).as_deref(),
                &id,
                state.config.audit.max_query_bytes,
            ),
        };
        if let Some(rec) = record {
            // The record is in the database before the response leaves; if it cannot be
            // written, nothing leaves but a 503 (an audit trail that fails open is no trail).
            let recorded = state.auditor.record(rec).await;
            if recorded == crate::audit::Recorded::Failed && status >= 400 {
                // A refusal carries no citizen's data: it is answered as it is (a full disk
                // refuses the record as it refused the request), its record is counted lost.
                state.auditor.count_lost();
            } else if recorded == crate::audit::Recorded::Failed {
                use actix_web::ResponseError as _;
                let (http, _) = res.into_parts();
                let mut refused = FhirError::new(
                    503,
                    vec![fhir_core::fhir::outcome::Issue::error(
                        "transient",
                        "The audit trail cannot be written; the response was withheld. Retry later",
                    )],
                )
                .error_response();
                limits::security_headers(refused.headers_mut());
                if let Ok(v) = HeaderValue::from_str(&id) {
                    refused
                        .headers_mut()
                        .insert(HeaderName::from_static("x-request-id"), v);
                }
                res = ServiceResponse::new(http, refused).map_into_right_body();
            }
        }
    }
    span.in_scope(|| {
        tracing::info!(status, route = %route, elapsed_ms = elapsed.as_secs_f64() * 1e3, "answered");
    });
    span.record("http.route", route);
    span.record("http.response.status_code", status);
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
            .map(|p| without_segment_regexes(&p))
            .unwrap_or_else(|| "unmatched".to_string());
        let ours = route_label(req.path());
        let (req, _) = req.into_parts();
        let body = format!("{actix} {ours}");
        Ok(ServiceResponse::new(req, HttpResponse::Ok().body(body)))
    }

    /// `{name:regex}` placeholders written `{name}`, as the table writes them.
    fn without_segment_regexes(pattern: &str) -> String {
        let (mut out, mut placeholder, mut regex) = (String::new(), false, false);
        for c in pattern.chars() {
            match c {
                '{' => placeholder = true,
                '}' => (placeholder, regex) = (false, false),
                ':' if placeholder => regex = true,
                _ => {}
            }
            if !regex {
                out.push(c);
            }
        }
        out
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
            "/fhir/$export",
            "/fhir/$export-status/j1",
            "/fhir/$export-file/j1/Patient-1.ndjson",
            "/fhir/Patient/$export",
            "/fhir/Group/g1/$export",
            "/fhir/Group/g1",
            "/fhir/Patient",
            "/fhir/Patient/$validate",
            "/fhir/Patient/_search",
            "/fhir/Patient/_history",
            "/fhir/Patient/p1",
            "/fhir/Patient/_p1",
            "/fhir/Patient/.p1",
            "/fhir/_Patient/p1",
            "/fhir/$Patient/p1",
            "/fhir/.Patient",
            "/fhir/_Patient",
            "/fhir/Patient/p1/_history",
            "/fhir/Patient/p1/$share",
            "/fhir/Measure/kpi-goal-attainment/$evaluate-measure",
            "/fhir/Patient/p1/$evaluate-measure",
            "/fhir/Patient/p1/_history/2",
            "/.well-known/smart-configuration",
            "/fhir/.well-known/smart-configuration",
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
            "/municipal/v1/care-records/HAD-1/hospital-events",
            "/municipal/v1/care-records/HAD-1/hospital-events/x",
            "/municipal/v1/discharge-notes",
            "/municipal/v1/reports/kl-gateway",
            "/municipal/v1/kpis",
            "/console",
            "/console/flows",
            "/console/static/console.css",
            "/console/outbox/m-1/retry",
            "/console/x",
        ] {
            let req = test::TestRequest::get().uri(path).to_request();
            let body = test::call_and_read_body(&app, req).await;
            let text = String::from_utf8_lossy(&body).to_string();
            let (actix, ours) = text.split_once(' ').expect("two labels");
            assert_eq!(actix, ours, "{path}");
        }
    }
}
