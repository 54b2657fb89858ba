//! Type-level search: `GET /fhir/{type}?…` and `POST /fhir/{type}/_search` (form body).

use actix_web::{web, HttpRequest, HttpResponse};

use crate::api::context::{RawBody, RequestContext};
use crate::api::response::ok_json;
use crate::api::AppState;
use crate::engine::Engine;
use crate::error::FhirError;

/// `GET /fhir/{type}`.
pub async fn search(
    state: web::Data<AppState>,
    ctx: RequestContext,
    path: web::Path<String>,
) -> Result<HttpResponse, FhirError> {
    run(&state, &ctx, &path.into_inner(), &ctx.query).await
}

/// `POST /fhir/{type}/_search` with `application/x-www-form-urlencoded` parameters (joined with
/// any in the URL).
pub async fn search_post(
    state: web::Data<AppState>,
    ctx: RequestContext,
    req: HttpRequest,
    path: web::Path<String>,
    body: RawBody,
) -> Result<HttpResponse, FhirError> {
    let body = body.0;
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/x-www-form-urlencoded") && !body.is_empty() {
        return Err(FhirError::not_supported(
            415,
            "POST _search takes application/x-www-form-urlencoded parameters",
        ));
    }
    let mut pairs = ctx.query.clone();
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
        .map_err(|e| FhirError::bad_request(format!("malformed form body: {e}")))?;
    pairs.extend(form);
    run(&state, &ctx, &path.into_inner(), &pairs).await
}

async fn run(
    state: &AppState,
    ctx: &RequestContext,
    rtype: &str,
    pairs: &[(String, String)],
) -> Result<HttpResponse, FhirError> {
    let bundle = state
        .engine
        .search_request(
            &ctx.access,
            Engine::resource_type(rtype)?,
            pairs,
            ctx.lenient,
            ctx.base(),
        )
        .await?;
    Ok(ok_json(bundle))
}
