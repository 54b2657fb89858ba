//! Instance interactions: create, read, vread, update (also conditional), delete.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::api::audit::AuditCitizen;
use crate::api::context::{FhirBody, JsonBytes, RequestContext, JSON_PATCH};
use crate::api::response::{self, version_headers, FHIR_JSON};
use crate::api::AppState;
use crate::engine::{parse_etag, Engine, PatchDocument, WriteOp};
use crate::error::FhirError;
use fhir_core::fhir::outcome::Issue;
use fhir_core::fhir::search::{apply_elements, apply_summary, Summary};

/// Parameters that only shape the response format, accepted on every interaction.
fn format_only(name: &str) -> bool {
    matches!(name, "_format" | "_pretty")
}

/// How a read is to be subsetted: `_summary` and `_elements` (R4 3.1.0.1.4, also on reads).
struct Subset {
    summary: Summary,
    elements: Option<Vec<String>>,
}

impl Subset {
    fn of(query: &[(String, String)]) -> Result<Subset, FhirError> {
        let mut subset = Subset {
            summary: Summary::False,
            elements: None,
        };
        let mut issues = Vec::new();
        for (name, value) in query {
            match name.as_str() {
                "_summary" => match Summary::parse(value) {
                    Some(Summary::Count) => issues.push(
                        Issue::error("invalid", "_summary=count applies to searches, not reads")
                            .at(format!("_summary={value}")),
                    ),
                    Some(m) => subset.summary = m,
                    None => issues.push(
                        Issue::error(
                            "invalid",
                            format!("_summary={value} is not a summary mode; use true, text, data or false"),
                        )
                        .at(format!("_summary={value}")),
                    ),
                },
                "_elements" => {
                    let list: Vec<String> = value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect();
                    if list.is_empty() {
                        issues.push(
                            Issue::error("invalid", "_elements needs at least one element name")
                                .at("_elements"),
                        );
                    }
                    subset.elements = Some(list);
                }
                _ => {}
            }
        }
        if issues.is_empty() {
            Ok(subset)
        } else {
            Err(FhirError::new(400, issues))
        }
    }

    /// The body to send: the stored text unchanged, or the subset of it.
    fn body(&self, stored: String) -> Result<String, FhirError> {
        if self.elements.is_none() && !self.summary.subsets() {
            return Ok(stored);
        }
        let mut v: serde_json::Value = serde_json::from_str(&stored)
            .map_err(|e| FhirError::internal(format!("stored resource unreadable: {e}")))?;
        if let Some(el) = &self.elements {
            apply_elements(&mut v, el);
        }
        apply_summary(&mut v, self.summary);
        Ok(v.to_string())
    }
}

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
    let rtype = Engine::resource_type(&path.into_inner())?;
    // fhirpy's get_or_create posts its criteria as a query string; ignoring them would create a
    // duplicate on every call. Conditional create is the If-None-Exist header.
    let searched: Vec<Issue> = ctx
        .query
        .iter()
        .filter(|(name, _)| !format_only(name))
        .map(|(name, value)| {
            Issue::error(
                "not-supported",
                format!(
                    "a create takes no search parameters ({name}); for a conditional create send \
                     them in the If-None-Exist header"
                ),
            )
            .at(format!("{name}={value}"))
        })
        .collect();
    if !searched.is_empty() {
        return Err(FhirError::new(400, searched));
    }
    let if_none_exist = match req.headers().get("if-none-exist").map(|v| v.to_str()) {
        None => None,
        Some(Ok(q)) => Some(
            state
                .engine
                .parse_if_none_exist(rtype, q)
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
    let rtype = Engine::resource_type(&rtype)?;
    let subset = Subset::of(&ctx.query)?;
    let r = state.engine.read(&ctx.access, rtype, &id).await?;
    let citizen = r.citizen.clone().map(AuditCitizen);
    let etag = format!("W/\"{}\"", r.version);
    if req
        .headers()
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        let mut b = HttpResponse::NotModified();
        version_headers(&mut b, r.version, r.last_updated_ms);
        if let Some(c) = citizen {
            b.extensions_mut().insert(c);
        }
        return Ok(b.finish());
    }
    let body = subset.body(r.content.unwrap_or_default())?;
    let mut b = HttpResponse::Ok();
    version_headers(&mut b, r.version, r.last_updated_ms);
    if let Some(c) = citizen {
        b.extensions_mut().insert(c);
    }
    Ok(b.content_type(FHIR_JSON).body(body))
}

/// `GET /fhir/{type}/{id}/_history/{vid}`.
pub async fn vread(
    state: web::Data<AppState>,
    ctx: RequestContext,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, FhirError> {
    let (rtype, id, vid) = path.into_inner();
    let rtype = Engine::resource_type(&rtype)?;
    let subset = Subset::of(&ctx.query)?;
    let r = state.engine.vread(&ctx.access, rtype, &id, &vid).await?;
    let body = subset.body(r.content.unwrap_or_default())?;
    let mut b = HttpResponse::Ok();
    version_headers(&mut b, r.version, r.last_updated_ms);
    if let Some(c) = r.citizen {
        b.extensions_mut().insert(AuditCitizen(c));
    }
    Ok(b.content_type(FHIR_JSON).body(body))
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
    let rtype = Engine::resource_type(&rtype)?;
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

/// `PATCH /fhir/{type}/{id}` with a JSON Patch (`application/json-patch+json`) or a FHIRPath
/// Patch (a `Parameters` resource, `application/fhir+json`).
pub async fn patch(
    state: web::Data<AppState>,
    ctx: RequestContext,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: JsonBytes,
) -> Result<HttpResponse, FhirError> {
    let (rtype, id) = path.into_inner();
    let rtype = Engine::resource_type(&rtype)?;
    let media = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    // `JsonBytes` took nothing but JSON Patch and the FHIR JSON media types (415 otherwise).
    let patch = if media.as_deref() == Some(JSON_PATCH) {
        PatchDocument::Json(serde_json::from_slice(&body.bytes).map_err(|e| {
            FhirError::bad_request(format!("the body is not a JSON Patch document: {e}"))
        })?)
    } else {
        PatchDocument::FhirPath(
            fhir_core::fhirpath::patch::parse(&body.parse()?)
                .map_err(|issues| FhirError::new(400, issues))?,
        )
    };
    let w = state
        .engine
        .patch(&ctx.access, rtype, &id, &patch, if_match(&req)?)
        .await?;
    Ok(response::written(&ctx, &w))
}

/// `DELETE /fhir/{type}?criteria`: conditional delete of the single match (none: 204, nothing
/// deleted; several: 412).
pub async fn conditional_delete(
    state: web::Data<AppState>,
    ctx: RequestContext,
    path: web::Path<String>,
) -> Result<HttpResponse, FhirError> {
    let rtype = Engine::resource_type(&path.into_inner())?;
    let pairs: Vec<(String, String)> = ctx
        .query
        .iter()
        .filter(|(name, _)| !format_only(name))
        .cloned()
        .collect();
    if pairs.is_empty() {
        return Err(FhirError::not_supported(
            405,
            format!("DELETE needs {rtype}/[id] or search criteria ({rtype}?identifier=…)"),
        ));
    }
    let criteria = state.engine.parse_pairs(rtype, &pairs, false)?;
    let w = state
        .engine
        .write(&ctx.access, WriteOp::ConditionalDelete { rtype, criteria })
        .await?;
    let mut b = HttpResponse::NoContent();
    if w.version > 0 {
        version_headers(&mut b, w.version, w.last_updated_ms);
    }
    Ok(b.finish())
}

/// `PUT /fhir/{type}?criteria`: conditional update.
pub async fn conditional_update(
    state: web::Data<AppState>,
    ctx: RequestContext,
    req: HttpRequest,
    path: web::Path<String>,
    body: FhirBody,
) -> Result<HttpResponse, FhirError> {
    let rtype = Engine::resource_type(&path.into_inner())?;
    if ctx.query.is_empty() {
        return Err(FhirError::not_supported(
            405,
            format!("PUT needs {rtype}/[id] or search criteria ({rtype}?identifier=…)"),
        ));
    }
    let criteria = state.engine.parse_pairs(rtype, &ctx.query, false)?;
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
    let rtype = Engine::resource_type(&rtype)?;
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
