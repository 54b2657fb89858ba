//! Liveness (`/healthz`), readiness (`/readyz`: the database answers) and `/metrics`.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AppState;

/// The process is up and serving HTTP.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// How long after a write failed for want of disk space `/readyz` answers 503. Afterwards it is
/// ready again (and says the disk was full), so that traffic returns and the next write finds
/// out whether space was freed: readiness must not wait for a write that it keeps away.
const DISK_FULL_UNREADY_MS: i64 = 30_000;

/// Whether this instance should take traffic, and why not.
pub(crate) enum Readiness {
    Ready,
    /// Ready, but with something an operator should see (the disk was full a while ago).
    ReadyWithWarning(String),
    Unavailable(String),
}

/// Ready to serve FHIR: the database answers, and its disk did not refuse a write in the last
/// 30 s. `/readyz` and the console's System page both ask this.
pub(crate) async fn readiness(state: &AppState) -> Readiness {
    if let Some(at) = state.engine.store().disk_full_at_ms() {
        let since = fhir_core::fhir::instant(at);
        let error = format!(
            "database disk full: a write failed for want of disk space at {since}, and none has \
             succeeded since"
        );
        tracing::warn!(%error, "readiness check");
        if chrono::Utc::now().timestamp_millis() - at < DISK_FULL_UNREADY_MS {
            return Readiness::Unavailable(error);
        }
        return Readiness::ReadyWithWarning(error);
    }
    match state.engine.store().ping().await {
        Ok(()) => Readiness::Ready,
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Readiness::Unavailable("database unreachable".to_string())
        }
    }
}

/// `/readyz`: 200 when [`readiness`] says ready, 503 otherwise, so a load balancer stops routing
/// here.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let backend = state.engine.store().backend().name();
    match readiness(&state).await {
        Readiness::Ready => {
            HttpResponse::Ok().json(json!({"status": "ready", "database": backend}))
        }
        Readiness::ReadyWithWarning(warning) => HttpResponse::Ok()
            .json(json!({"status": "ready", "database": backend, "warning": warning})),
        Readiness::Unavailable(error) => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "unavailable", "database": backend, "error": error})),
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
