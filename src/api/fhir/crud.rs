//! Instance interactions: create, read, vread, update (also conditional), delete.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::api::context::{FhirBody, RequestContext};
use crate::api::response::{self, version_headers, FHIR_JSON};
use crate::api::AppState;
use crate::engine::{parse_etag, WriteOp};
use crate::error::FhirError;

fn if_match(req: &HttpRequest) -> Result<Option<i64>, FhirError> {
    match req.headers().get("if-match").map(|v| v.to_str()) {
        None => Ok(None),
        Some(Ok(s)) => parse_etag(s).map(Some).ok_or_else(|| {
            FhirError::bad_request(format!("If-Match {s:?} is not an ETag like W/\"3\""))
        }),
        Some(Err(_)) => Err(FhirError::bad_request("If-Match is not readable text")),
    }
}

/// `POST /fhir/{type}` (with `If-None-Exist` for a conditional create).
pub async fn create(
    state: web::Data<AppState>,
    ctx: RequestContext,
    req: HttpRequest,
    path: web::Path<String>,
    body: FhirBody,
) -> Result<HttpResponse, FhirError> {
    let rtype = path.into_inner();
    state.engine.check_type(&rtype)?;
    let if_none_exist = match req.headers().get("if-none-exist").map(|v| v.to_str()) {
        None => None,
        Some(Ok(q)) => Some(
            state
                .engine
                .parse_criteria(&rtype, q.trim_start_matches('?'), false)
                .map_err(|e| e.at("If-None-Exist"))?,
        ),
        Some(Err(_)) => return Err(FhirError::bad_request("If-None-Exist is not readable text")),
    };
    let w = state
        .engine
        .write(
            &ctx.access,
            WriteOp::Create {
                rtype,
                resource: body.0,
                if_none_exist,
            },
        )
        .await?;
    Ok(response::written(&ctx, &w))
}

/// `GET /fhir/{type}/{id}`.
pub async fn read(
    state: web::Data<AppState>,
    ctx: RequestContext,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, FhirError> {
    let (rtype, id) = path.into_inner();
    let r = state.engine.read(&ctx.access, &rtype, &id).await?;
    let etag = format!("W/\"{}\"", r.version);
    if req
        .headers()
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        let mut b = HttpResponse::NotModified();
        version_headers(&mut b, r.version, r.last_updated_ms);
        return Ok(b.finish());
    }
    let mut b = HttpResponse::Ok();
    version_headers(&mut b, r.version, r.last_updated_ms);
    Ok(b.content_type(FHIR_JSON)
        .body(r.content.unwrap_or_default()))
}

/// `GET /fhir/{type}/{id}/_history/{vid}`.
pub async fn vread(
    state: web::Data<AppState>,
    ctx: RequestContext,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, FhirError> {
    let (rtype, id, vid) = path.into_inner();
    let r = state.engine.vread(&ctx.access, &rtype, &id, &vid).await?;
    let mut b = HttpResponse::Ok();
    version_headers(&mut b, r.version, r.last_updated_ms);
    Ok(b.content_type(FHIR_JSON)
        .body(r.content.unwrap_or_default()))
}

/// `PUT /fhir/{type}/{id}`: update, or create with the client's id.
pub async fn update(
    state: web::Data<AppState>,
    ctx: RequestContext,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: FhirBody,
) -> Result<HttpResponse, FhirError> {
    let (rtype, id) = path.into_inner();
    let w = state
        .engine
        .write(
            &ctx.access,
            WriteOp::Update {
                rtype,
                id,
                resource: body.0,
                if_match: if_match(&req)?,
            },
        )
        .await?;
    Ok(response::written(&ctx, &w))
}

/// `PUT /fhir/{type}?criteria`: conditional update.
pub async fn conditional_update(
    state: web::Data<AppState>,
    ctx: RequestContext,
    req: HttpRequest,
    path: web::Path<String>,
    body: FhirBody,
) -> Result<HttpResponse, FhirError> {
    let rtype = path.into_inner();
    state.engine.check_type(&rtype)?;
    if ctx.query.is_empty() {
        return Err(FhirError::not_supported(
            405,
            format!("PUT needs {rtype}/[id] or search criteria ({rtype}?identifier=…)"),
        ));
    }
    let criteria = state.engine.parse_pairs(&rtype, &ctx.query, false)?;
    let w = state
        .engine
        .write(
            &ctx.access,
            WriteOp::ConditionalUpdate {
                rtype,
                criteria,
                resource: body.0,
                if_match: if_match(&req)?,
            },
        )
        .await?;
    Ok(response::written(&ctx, &w))
}

/// `DELETE /fhir/{type}/{id}`: later reads answer 410 Gone.
pub async fn delete(
    state: web::Data<AppState>,
    ctx: RequestContext,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, FhirError> {
    let (rtype, id) = path.into_inner();
    let w = state
        .engine
        .write(&ctx.access, WriteOp::Delete { rtype, id })
        .await?;
    let mut b = HttpResponse::NoContent();
    if w.version > 0 {
        version_headers(&mut b, w.version, w.last_updated_ms);
    }
    Ok(b.finish())
}
