//! History at system, type and instance level.

use actix_web::{web, HttpResponse};

use crate::api::context::RequestContext;
use crate::api::response::ok_json;
use crate::api::AppState;
use crate::engine::Engine;
use crate::error::FhirError;
use crate::store::HistoryScope;

/// `GET /fhir/_history`.
pub async fn system(
    state: web::Data<AppState>,
    ctx: RequestContext,
) -> Result<HttpResponse, FhirError> {
    Ok(ok_json(
        state
            .engine
            .history(&ctx.access, HistoryScope::System, &ctx.query, ctx.base())
            .await?,
    ))
}

/// `GET /fhir/{type}/_history`.
pub async fn by_type(
    state: web::Data<AppState>,
    ctx: RequestContext,
    path: web::Path<String>,
) -> Result<HttpResponse, FhirError> {
    let rtype = Engine::resource_type(&path.into_inner())?;
    Ok(ok_json(
        state
            .engine
            .history(
                &ctx.access,
                HistoryScope::Type(rtype),
                &ctx.query,
                ctx.base(),
            )
            .await?,
    ))
}

/// `GET /fhir/{type}/{id}/_history`.
pub async fn instance(
    state: web::Data<AppState>,
    ctx: RequestContext,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, FhirError> {
    let (rtype, id) = path.into_inner();
    let rtype = Engine::resource_type(&rtype)?;
    Ok(ok_json(
        state
            .engine
            .history(
                &ctx.access,
                HistoryScope::Instance(rtype, &id),
                &ctx.query,
                ctx.base(),
            )
            .await?,
    ))
}
