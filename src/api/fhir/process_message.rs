//! `POST /fhir/$process-message`: a vendor EHR posts a ready FHIR message Bundle, which is
//! validated, routed and queued for delivery (`Forwarder::submit`). Asynchronous mode: the
//! answer is 202 once the message is durably queued (200 if its id was already known), with an
//! OperationOutcome naming the destination and the job's status.
//!
//! A MedCom message (its event coded in MedCom's message-events CodeSystem) goes to
//! `medcom::receive` instead and is answered with a MedCom acknowledgement Bundle: 200 `ok`,
//! 422 `fatal-error`, 503 `transient-error`.

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
    if crate::medcom::notification::is_medcom(&body.0) {
        return medcom(state, ctx, body.0).await;
    }
    let done = state
        .forwarder
        .submit(&ctx.access, body.0, None, ctx.base())
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

async fn medcom(
    state: web::Data<AppState>,
    ctx: RequestContext,
    bundle: serde_json::Value,
) -> Result<HttpResponse, FhirError> {
    let validator = state.engine.validator()?;
    let acked = crate::medcom::receive(
        &state.forwarder,
        state.engine.store().as_ref(),
        &validator,
        &ctx.access,
        &bundle,
    )
    .await?;
    let mut res = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(acked.status)
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
    );
    res.content_type(FHIR_JSON)
        .insert_header(("X-Sektorbro-Acknowledgement", acked.code.as_str()));
    if let Some(d) = acked.destination {
        res.insert_header(("X-Sektorbro-Destination", d));
    }
    if acked.code == crate::medcom::ack::Code::TransientError {
        res.insert_header(("Retry-After", "30"));
    }
    Ok(res.body(acked.bundle.to_string()))
}
