//! `POST /fhir/$process-message`: a vendor EHR posts a ready FHIR message Bundle, which is
//! validated, routed and queued for delivery (`Forwarder::submit`). Asynchronous mode: the
//! answer is 202 once the message is durably queued (200 if its id was already known), with an
//! OperationOutcome naming the destination and the job's status.

use crate::api::context::{FhirBody, RequestContext};
use crate::api::response::FHIR_JSON;
use crate::api::AppState;
use crate::error::FhirError;
use actix_web::{web, HttpResponse};
use fhir_core::fhir::outcome::{operation_outcome, Issue};

pub async fn post(
    state: web::Data<AppState>,
    ctx: RequestContext,
    body: FhirBody,
) -> Result<HttpResponse, FhirError> {
    let done = state
        .forwarder
        .submit(&ctx.access, body.0, None, &ctx.base)
        .await?;
    let text = if done.created {
        format!(
            "message {} accepted for delivery to {}",
            done.message_id, done.destination
        )
    } else {
        format!(
            "message {} was already accepted for delivery to {}; its status is {}",
            done.message_id,
            done.destination,
            done.status.as_str()
        )
    };
    let outcome = operation_outcome(&[Issue::information("informational", text)]);
    let mut res = if done.created {
        HttpResponse::Accepted()
    } else {
        HttpResponse::Ok()
    };
    Ok(res
        .content_type(FHIR_JSON)
        .insert_header(("X-Sektorbro-Destination", done.destination))
        .insert_header(("X-Sektorbro-Forwarding-Status", done.status.as_str()))
        .insert_header(("X-Sektorbro-Message-Id", done.message_id))
        .body(outcome.to_string()))
}
