//! `POST /fhir`: transaction and batch Bundles.

use actix_web::{web, HttpResponse};

use crate::api::context::{FhirBody, PreferReturn, RequestContext};
use crate::api::response::ok_json;
use crate::api::AppState;
use crate::error::FhirError;

pub async fn transaction_or_batch(
    state: web::Data<AppState>,
    ctx: RequestContext,
    body: FhirBody,
) -> Result<HttpResponse, FhirError> {
    let representation = ctx.prefer_return != Some(PreferReturn::Minimal);
    Ok(ok_json(
        state
            .engine
            .process_bundle(&body.0, &ctx.base, representation)
            .await?,
    ))
}
