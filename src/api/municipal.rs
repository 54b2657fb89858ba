//! `/municipal/v1/care-records`: municipal care systems post their records here and read them
//! back rebuilt from FHIR. The body is the record (JSON, `profiles/municipal/`), not FHIR; errors
//! are OperationOutcomes whose locations are JSON paths into the record.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::api::context::{FhirBody, RequestContext};
use crate::api::AppState;
use crate::error::FhirError;
use crate::municipal::{self, Stored};
use crate::validation::Validator;

fn validator(state: &AppState) -> Result<std::sync::Arc<Validator>, FhirError> {
    match state.engine.validation() {
        Some(p) => Ok(p.validator.clone()),
        None => Validator::shared_r4()
            .map_err(|e| FhirError::internal(format!("loading the definitions: {e}"))),
    }
}

/// Whether the client asked for `Prefer: return=representation` explicitly.
fn wants_representation(req: &HttpRequest) -> bool {
    req.headers()
        .get_all("prefer")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .any(|p| p.trim().eq_ignore_ascii_case("return=representation"))
}

/// `POST /municipal/v1/care-records`.
pub async fn post(
    state: web::Data<AppState>,
    req: HttpRequest,
    ctx: RequestContext,
    body: FhirBody,
) -> Result<HttpResponse, FhirError> {
    let validator = validator(&state)?;
    let (rec, warnings) = municipal::check_document(&body.0, &validator.terminology)?;
    let representation = wants_representation(&req);
    let posted = municipal::store(
        &state.engine,
        &validator,
        rec,
        warnings,
        &ctx.base,
        representation,
    )
    .await?;
    let mut b = match posted.stored {
        Stored::Created => HttpResponse::Created(),
        Stored::Updated | Stored::Unchanged => HttpResponse::Ok(),
    };
    let location = format!(
        "{}/municipal/v1/care-records/{}?municipality={}",
        ctx.base.trim_end_matches("/fhir"),
        posted.record.record_id,
        posted.record.municipality.code
    );
    if let Ok(v) = header::HeaderValue::from_str(&location) {
        b.insert_header((header::LOCATION, v));
    }
    Ok(b.content_type("application/json")
        .body(posted.body(representation).to_string()))
}

/// `GET /municipal/v1/care-records/{id}[?municipality=CODE]`.
pub async fn get(
    state: web::Data<AppState>,
    ctx: RequestContext,
    path: web::Path<String>,
) -> Result<HttpResponse, FhirError> {
    let id = path.into_inner();
    let municipality = ctx
        .query
        .iter()
        .find(|(k, _)| k == "municipality")
        .map(|(_, v)| v.as_str());
    let rec = municipal::fetch(&state.engine, &id, municipality, &ctx.base).await?;
    let body = serde_json::to_string(&rec)
        .map_err(|e| FhirError::internal(format!("serializing the record: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}
