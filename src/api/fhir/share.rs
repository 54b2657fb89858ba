//! `POST /fhir/Patient/{id}/$share`: the explicit share of tenancy. The organization that owns a
//! Patient lets another organization (a region, a GP's system) read everything it holds about
//! that citizen. Parameters: `recipient` (valueIdentifier, the organization as `system` and
//! `value`, the way clients are configured) and optionally `reason` (valueString). Grants add
//! only; the answer is 200 with an OperationOutcome saying what was granted.

use actix_web::{web, HttpResponse};
use serde_json::Value;

use crate::api::context::{FhirBody, RequestContext};
use crate::api::response::FHIR_JSON;
use crate::api::AppState;
use crate::error::FhirError;
use fhir_core::fhir::outcome::{operation_outcome, Issue};

pub async fn post(
    state: web::Data<AppState>,
    ctx: RequestContext,
    path: web::Path<(String, String)>,
    body: FhirBody,
) -> Result<HttpResponse, FhirError> {
    let (rtype, id) = path.into_inner();
    if rtype != "Patient" {
        return Err(FhirError::not_found(format!(
            "$share is defined on Patient only, not on {rtype}"
        )));
    }
    let (recipient, reason) = parameters(&body.0)?;
    let grant = state
        .engine
        .share(&ctx.access, &id, &recipient, reason.as_deref())
        .await?;
    let text = format!(
        "{} may now read what {} holds about Patient/{id}",
        grant.grantee, grant.owner
    );
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(operation_outcome(&[Issue::information("informational", text)]).to_string()))
}

/// `recipient` as `system|value`, and `reason`, with every problem reported.
fn parameters(body: &Value) -> Result<(String, Option<String>), FhirError> {
    if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(FhirError::bad_request("$share takes a Parameters resource").at("resourceType"));
    }
    let params = body
        .get("parameter")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut recipient = None;
    let mut reason = None;
    let mut problems = Vec::new();
    for (i, p) in params.iter().enumerate() {
        match p.get("name").and_then(Value::as_str) {
            Some("recipient") => {
                let ident = p.get("valueIdentifier");
                let system = ident.and_then(|v| v.get("system")).and_then(Value::as_str);
                let value = ident.and_then(|v| v.get("value")).and_then(Value::as_str);
                match (system, value) {
                    (Some(s), Some(v)) if !s.is_empty() && !v.is_empty() && !s.contains('|') => {
                        recipient = Some(format!("{s}|{v}"))
                    }
                    _ => problems.push(
                        Issue::error(
                            "required",
                            "recipient needs a valueIdentifier with system and value",
                        )
                        .at(format!("Parameters.parameter[{i}]")),
                    ),
                }
            }
            Some("reason") => match p.get("valueString").and_then(Value::as_str) {
                Some(r) => reason = Some(r.to_string()),
                None => problems.push(
                    Issue::error("required", "reason needs a valueString")
                        .at(format!("Parameters.parameter[{i}]")),
                ),
            },
            other => problems.push(
                Issue::error(
                    "not-supported",
                    format!("$share has no parameter {:?}", other.unwrap_or("")),
                )
                .at(format!("Parameters.parameter[{i}].name")),
            ),
        }
    }
    if recipient.is_none() {
        problems.push(
            Issue::error("required", "the recipient parameter is required")
                .at("Parameters.parameter"),
        );
    }
    match recipient {
        Some(r) if problems.is_empty() => Ok((r, reason)),
        _ => Err(FhirError::new(400, problems)),
    }
}
