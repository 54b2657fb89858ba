//! `$validate`: `POST /fhir/$validate` and `POST /fhir/{type}/$validate`. The body is the
//! resource itself or a `Parameters` with a `resource` (and optionally `profile`) parameter;
//! `?profile=URL` works too. The answer is always 200 with an OperationOutcome (errors included):
//! the operation succeeded in validating, whatever it found.

use actix_web::{web, HttpResponse};
use serde_json::Value;

use crate::api::context::{FhirBody, RequestContext};
use crate::api::response::FHIR_JSON;
use crate::api::AppState;
use crate::engine::Engine;
use crate::error::FhirError;
use fhir_core::fhir::outcome::{operation_outcome, Issue};
use fhir_core::fhir::ResourceType;

/// `POST /fhir/$validate`.
pub async fn system(
    state: web::Data<AppState>,
    ctx: RequestContext,
    body: FhirBody,
) -> Result<HttpResponse, FhirError> {
    run(&state, &ctx, None, body.0).await
}

/// `POST /fhir/{type}/$validate`.
pub async fn by_type(
    state: web::Data<AppState>,
    ctx: RequestContext,
    path: web::Path<String>,
    body: FhirBody,
) -> Result<HttpResponse, FhirError> {
    let rtype = Engine::resource_type(&path.into_inner())?;
    run(&state, &ctx, Some(rtype), body.0).await
}

async fn run(
    state: &AppState,
    ctx: &RequestContext,
    rtype: Option<ResourceType>,
    body: Value,
) -> Result<HttpResponse, FhirError> {
    let Some(policy) = state.engine.validation() else {
        return Err(FhirError::not_supported(
            501,
            "validation is not configured on this server",
        ));
    };
    let mut profiles: Vec<String> = ctx
        .query
        .iter()
        .filter(|(k, _)| k == "profile")
        .map(|(_, v)| v.clone())
        .collect();
    let resource = if body.get("resourceType").and_then(Value::as_str) == Some("Parameters") {
        let params = body
            .get("parameter")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let mut resource = None;
        for p in params {
            match p.get("name").and_then(Value::as_str) {
                Some("resource") => resource = p.get("resource").cloned(),
                Some("profile") => {
                    if let Some(u) = p
                        .get("valueUri")
                        .or_else(|| p.get("valueCanonical"))
                        .and_then(Value::as_str)
                    {
                        profiles.push(u.to_string());
                    }
                }
                Some("mode") => {}
                other => {
                    return Err(FhirError::bad_request(format!(
                        "$validate takes the parameters resource, profile and mode, not {other:?}"
                    ))
                    .at("Parameters.parameter"))
                }
            }
        }
        resource.ok_or_else(|| {
            FhirError::bad_request("the Parameters have no resource parameter to validate")
                .at("Parameters.parameter")
        })?
    } else {
        body
    };
    if let (Some(t), Some(actual)) = (&rtype, resource.get("resourceType").and_then(Value::as_str))
    {
        if t != actual {
            return Err(FhirError::bad_request(format!(
                "the body is a {actual} but the request is for {t}"
            ))
            .at(&format!("{actual}.resourceType")));
        }
    }
    for p in &profiles {
        if policy.validator.defs.profile(p).is_none() {
            let msg = match policy.validator.defs.failure(p) {
                Some(why) => format!("profile {p} could not be loaded on this server: {why}"),
                None => format!(
                    "profile {p} is not loaded on this server; add its package to \
                     [validation].packages"
                ),
            };
            return Err(FhirError::bad_request(msg).at("profile"));
        }
    }
    if let Some(t) = resource.get("resourceType").and_then(Value::as_str) {
        profiles.extend_from_slice(policy.required_for(t));
    }
    let validator = policy.validator.clone();
    // The blocking pool's thread is not in the request's span: the span goes along.
    let rtype = resource.get("resourceType").and_then(Value::as_str);
    let span = tracing::debug_span!(
        "validation",
        fhir.resource_type = rtype,
        validation.profiles = profiles.len()
    );
    // Large Bundles take milliseconds: keep them off the async workers.
    let (validated, resource, profiles) = web::block(move || {
        let validated = span.in_scope(|| validator.validate_detailed(&resource, &profiles));
        (validated, resource, profiles)
    })
    .await
    .map_err(|e| FhirError::internal(format!("validation task failed: {e}")))?;
    // A QuestionnaireResponse's Questionnaire may be stored here.
    let validated = state
        .engine
        .with_stored_questionnaires(
            &policy.validator,
            &ctx.access.readable(),
            &resource,
            &profiles,
            validated,
        )
        .await;
    // Codes the local terminology cannot judge go to the terminology server, if there is one.
    let mut issues = match state.lookups.terminology() {
        Some(t) => fhir_core::validation::settle::settle(t, validated).await,
        None => validated.issues,
    };
    if issues.is_empty() {
        issues.push(Issue::information("informational", "no problems found"));
    }
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(operation_outcome(&issues).to_string()))
}
