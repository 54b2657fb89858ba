//! Liveness (`/healthz`), readiness (`/readyz`: the database answers) and `/metrics`.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AppState;

/// The process is up and serving HTTP.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready to serve FHIR: the database answers. 503 otherwise, so a load balancer stops routing here.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let backend = state.engine.store().backend().name();
    match state.engine.store().ping().await {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ready", "database": backend})),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            HttpResponse::ServiceUnavailable()
                .json(json!({"status": "unavailable", "database": backend, "error": "database unreachable"}))
        }
    }
}

/// Prometheus text exposition of every component's series (`crate::metrics`). The outbox is
/// counted in the database first.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state.forwarder.count_outbox_jobs().await;
    HttpResponse::Ok()
        .content_type(crate::metrics::CONTENT_TYPE)
        .body(state.metrics.render())
}
