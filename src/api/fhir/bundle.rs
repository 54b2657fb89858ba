//! `POST /fhir`: transaction and batch Bundles.

use actix_web::{web, HttpMessage as _, HttpRequest, HttpResponse};

use crate::api::audit::AuditHint;
use crate::api::context::{FhirBody, PreferReturn, RequestContext};
use crate::api::response::ok_json;
use crate::api::AppState;
use crate::engine::{Answer, Transaction};
use crate::error::FhirError;

pub async fn transaction_or_batch(
    state: web::Data<AppState>,
    ctx: RequestContext,
    req: HttpRequest,
    body: FhirBody,
) -> Result<HttpResponse, FhirError> {
    if body.0.get("type").and_then(serde_json::Value::as_str) == Some("batch") {
        req.extensions_mut()
            .insert(AuditHint(crate::audit::Interaction::Batch));
        crate::audit::in_tx::set_interaction(crate::audit::Interaction::Batch);
    }
    let answer = match ctx.prefer_return {
        Some(PreferReturn::Minimal) => Answer::Minimal,
        _ => Answer::Representation,
    };
    let (kind, entries) = Transaction::from_bundle(body.0)?;
    Ok(ok_json(
        state
            .engine
            .process_bundle(&ctx.access, kind, entries, ctx.base(), answer)
            .await?,
    ))
}
