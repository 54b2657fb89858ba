//! `/admin`: operating the gateway's lookup caches.
//!
//! - `GET /admin/caches`: the configured caches, their sizes and counters.
//! - `DELETE /admin/caches/{cache}`: forget everything in one cache; `?key=…` forgets one key
//!   (`system|value` for patients and organizations, the JWKS URL for jwks, the operation and
//!   query for terminology, e.g. `ValueSet/$validate-code?url=…&code=…`).
//! - `GET /admin/caches/{cache}/lookup?…`: resolve through the cache, as the gateway would
//!   (`identifier=system|value`; terminology `url=&system=&code=` or `system=&code=`;
//!   jwks `kid=`). A stale answer carries the stale headers.
//!
//! - `GET /admin/outbox?status=dead&after=ID&limit=N`: forwarding jobs (oldest first, paged by
//!   job id; `status` one of pending, in-flight, delivered, dead, discarded).
//! - `GET /admin/outbox/{message_id}`: one job, with what holds it back (`blocked_by`); message
//!   ids are unique per sender, so `?sender=system|value` picks one (default: the oldest).
//! - `POST /admin/outbox/{message_id}/retry`: a dead letter back to pending (attempts reset).
//! - `POST /admin/outbox/{message_id}/discard`: a dead letter given up, so that later messages
//!   of the same citizen and destination are no longer held back.
//!
//! The whole scope answers administrator clients only ([`admins_only`]), one gate for all.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse, ResponseError as _};
use serde_json::{json, Value};

use super::response::mark_stale;
use super::AppState;
use crate::error::FhirError;
use crate::lookup::{Identifier, Lookup, LookupError};
use crate::store::{DeadAction, Job, JobStatus};
use fhir_core::fhir::outcome::{operation_outcome, Issue};

/// The admin routes, under one scope so they are gated in one place.
pub fn scope() -> actix_web::Scope<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    // The routes themselves come from the operation table (`api::routes`).
    web::scope("/admin").wrap(actix_web::middleware::from_fn(admins_only))
}

/// Refuse (403) every caller but administrator clients (authenticated by the request
/// middleware, which already answered 401 to anyone unauthenticated).
pub async fn admins_only(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    use actix_web::HttpMessage as _;
    let caller = req.extensions().get::<crate::auth::Caller>().cloned();
    let admin = caller
        .as_ref()
        .is_some_and(|c| c.client.kind == crate::auth::ClientKind::Admin);
    if !admin {
        let (req, _) = req.into_parts();
        let who = caller.map_or_else(
            || "an unauthenticated caller".to_string(),
            |c| format!("client {} ({})", c.client.id, c.client.kind.as_str()),
        );
        let res = FhirError::new(
            403,
            vec![Issue::error(
                "forbidden",
                format!("the admin endpoints are for administrator clients; {who} is not one"),
            )],
        )
        .error_response();
        return Ok(ServiceResponse::new(req, res).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

pub(crate) async fn list(state: web::Data<AppState>) -> HttpResponse {
    let caches: Vec<Value> = state
        .lookups
        .caches()
        .iter()
        .map(|c| {
            let s = c.stats();
            json!({
                "name": c.name(),
                "entries": c.len(),
                "hits": s.hits.get(),
                "misses": s.misses.get(),
                "coalesced_waits": s.coalesced.get(),
                "stale_served": s.stale.get(),
                "upstream_calls": s.upstream_calls(),
                "upstream_errors": s.errors.get(),
            })
        })
        .collect();
    HttpResponse::Ok().json(json!({ "caches": caches }))
}

#[derive(serde::Deserialize)]
pub(crate) struct KeyQuery {
    key: Option<String>,
}

pub(crate) async fn invalidate(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<KeyQuery>,
) -> Result<HttpResponse, FhirError> {
    let name = path.into_inner();
    let Some(cache) = state.lookups.cache(&name) else {
        return Err(unknown_cache(&name));
    };
    let message = match &query.key {
        Some(key) if cache.invalidate(key) => format!("removed {key:?} from cache {name}"),
        Some(key) => format!("{key:?} was not in cache {name}"),
        None => {
            cache.invalidate_all();
            format!("emptied cache {name}")
        }
    };
    Ok(outcome(message))
}

fn outcome(message: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(super::response::FHIR_JSON)
        .body(operation_outcome(&[Issue::information("informational", message)]).to_string())
}

fn unknown_cache(name: &str) -> FhirError {
    FhirError::not_found(format!(
        "no lookup cache {name:?} is configured (see GET /admin/caches)"
    ))
}

#[derive(serde::Deserialize)]
pub(crate) struct LookupQuery {
    identifier: Option<String>,
    url: Option<String>,
    system: Option<String>,
    code: Option<String>,
    kid: Option<String>,
}

pub(crate) async fn lookup(
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<LookupQuery>,
) -> Result<HttpResponse, FhirError> {
    let name = path.into_inner();
    let lookups = &state.lookups;
    let need = |v: &Option<String>, what: &str| {
        v.clone()
            .ok_or_else(|| FhirError::bad_request(format!("cache {name} is looked up by {what}")))
    };
    let found: Lookup<Option<Value>> = match name.as_str() {
        "patients" => {
            let id = Identifier::parse(&need(&q.identifier, "identifier=system|value")?)?;
            to_json(lookups.patient_by_identifier(&id).await?, |p| (**p).clone())
        }
        "organizations" => {
            let id = Identifier::parse(&need(&q.identifier, "identifier=system|value")?)?;
            to_json(lookups.organization_by_identifier(&id).await?, |o| {
                json!({
                    "resource": o.resource,
                    "partOf": o.part_of.as_ref().map(|p| json!({
                        "reference": p.reference, "display": p.display, "resource": p.resource})),
                    "endpoints": o.endpoints.iter().map(|e| json!({
                        "address": e.address, "connectionType": e.connection_type,
                        "status": e.status, "payloadType": e.payload_types})).collect::<Vec<_>>(),
                })
            })
        }
        "terminology" => {
            let t = lookups
                .terminology()
                .ok_or(LookupError::NotConfigured("terminology"))?;
            let code = need(&q.code, "code= with url= and/or system=")?;
            let answer = match (&q.url, &q.system) {
                (Some(vs), system) => t.validate_code(vs, system.as_deref(), &code).await?,
                (None, Some(system)) => t.lookup_code(system, &code).await?,
                (None, None) => return Err(FhirError::bad_request("give url= or system=")),
            };
            to_json(
                answer,
                |a| json!({"result": a.result, "message": a.message, "display": a.display}),
            )
        }
        "jwks" => {
            let j = lookups.jwks().ok_or(LookupError::NotConfigured("jwks"))?;
            j.key(&need(&q.kid, "kid=")?).await?
        }
        other => return Err(unknown_cache(other)),
    };
    let Some(value) = found.value else {
        return Err(FhirError::not_found(format!(
            "the {name} upstream has no such entry"
        )));
    };
    let mut res = HttpResponse::Ok();
    if found.stale {
        mark_stale(&mut res, &name);
    }
    Ok(res.json(json!({
        "value": value,
        "stale": found.stale,
        "age_secs": found.age.as_secs(),
    })))
}

fn to_json<T>(l: Lookup<Option<T>>, f: impl FnOnce(&T) -> Value) -> Lookup<Option<Value>> {
    Lookup {
        value: l.value.as_ref().map(f),
        stale: l.stale,
        age: l.age,
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct OutboxQuery {
    status: Option<String>,
    after: Option<i64>,
    limit: Option<usize>,
}

pub(crate) async fn outbox_list(
    state: web::Data<AppState>,
    q: web::Query<OutboxQuery>,
) -> Result<HttpResponse, FhirError> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(JobStatus::parse(s).ok_or_else(|| {
            FhirError::bad_request(format!(
                "status must be one of pending, in-flight, delivered, dead, discarded; got {s:?}"
            ))
            .at("status")
        })?),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let jobs = state
        .forwarder
        .jobs(status, q.after.unwrap_or(0), limit)
        .await?;
    let next = (jobs.len() == limit)
        .then(|| jobs.last().map(|j| j.id))
        .flatten();
    Ok(HttpResponse::Ok().json(json!({
        "jobs": jobs.iter().map(|j| job_json(j, None)).collect::<Vec<_>>(),
        "next_after": next,
    })))
}

/// `?sender=system|value`: which sender's message, where several used the same message id
/// (without it, the oldest job of that id).
#[derive(serde::Deserialize)]
pub(crate) struct SenderQuery {
    sender: Option<String>,
}

pub(crate) async fn outbox_job(
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<SenderQuery>,
) -> Result<HttpResponse, FhirError> {
    let (job, blocked_by) = state
        .forwarder
        .job(&path.into_inner(), q.sender.as_deref())
        .await?;
    Ok(HttpResponse::Ok().json(job_json(&job, blocked_by)))
}

pub(crate) async fn outbox_retry(
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<SenderQuery>,
) -> Result<HttpResponse, FhirError> {
    let job = state
        .forwarder
        .act_on_dead(&path.into_inner(), q.sender.as_deref(), DeadAction::Retry)
        .await?;
    Ok(HttpResponse::Ok().json(job_json(&job, None)))
}

pub(crate) async fn outbox_discard(
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<SenderQuery>,
) -> Result<HttpResponse, FhirError> {
    let job = state
        .forwarder
        .act_on_dead(&path.into_inner(), q.sender.as_deref(), DeadAction::Discard)
        .await?;
    Ok(HttpResponse::Ok().json(job_json(&job, None)))
}

/// A job as the admin API shows it: times as FHIR instants, the receiver's answer parsed.
fn job_json(j: &Job, blocked_by: Option<String>) -> Value {
    let at = |ms: Option<i64>| ms.map(fhir_core::fhir::instant);
    json!({
        "message_id": j.message_id,
        "sender": j.sender,
        "destination": j.destination,
        "status": j.status.as_str(),
        "attempts": j.attempts,
        "created_at": fhir_core::fhir::instant(j.created_at),
        "last_attempt_at": at(j.last_attempt_at),
        "next_attempt_at": (j.status == JobStatus::Pending).then(|| fhir_core::fhir::instant(j.next_attempt_at)),
        "lease_owner": j.lease_owner,
        "lease_until": at(j.lease_until),
        "last_status": j.last_status,
        "last_error": j.last_error,
        "receiver_outcome": j.receiver_outcome.as_deref().map(|o| {
            serde_json::from_str::<Value>(o).unwrap_or_else(|_| Value::String(o.to_string()))
        }),
        "delivered_at": at(j.delivered_at),
        "blocked_by": blocked_by,
        "id": j.id,
    })
}
