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

/// What could not be loaded of the validation definitions (constant after start; see the log).
fn render_validation_metrics(state: &AppState, out: &mut String) {
    use std::fmt::Write as _;
    let Some(policy) = state.engine.validation() else {
        return;
    };
    let problems = policy.validator.load_report().problems().count();
    let _ = writeln!(
        out,
        "# HELP sektorbro_validation_load_problems Definitions, files or expressions that could not be loaded at start.\n\
         # TYPE sektorbro_validation_load_problems gauge\n\
         sektorbro_validation_load_problems {problems}"
    );
}

/// Prometheus text exposition.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body({
            let mut text = state.metrics.render();
            state.lookups.render_metrics(&mut text);
            state.forwarder.render_metrics(&mut text).await;
            state.auditor.render_metrics(&mut text);
            state.auth.render_metrics(&mut text);
            render_validation_metrics(&state, &mut text);
            text
        })
}
