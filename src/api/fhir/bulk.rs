//! Bulk Data export over HTTP (Bulk Data Access IG 2.0; docs/bulk.md):
//! - kick-off `GET /fhir/$export`, `/fhir/Patient/$export`, `/fhir/Group/{id}/$export` with
//!   `Prefer: respond-async`: 202 and `Content-Location` (the status URL);
//! - status `GET /fhir/$export-status/{job}`: 202 with `X-Progress` and `Retry-After` while it
//!   runs, then 200 with the manifest (or 500 with the OperationOutcome of a failed export);
//! - cancel `DELETE /fhir/$export-status/{job}`: 202, the job and its files deleted;
//! - download `GET /fhir/$export-file/{job}/{file}`: the NDJSON file.
//!
//! Status, cancel and downloads answer only the client that started the export: for any other,
//! the job does not exist (404).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::api::context::RequestContext;
use crate::api::response::{http_date, FHIR_JSON};
use crate::api::AppState;
use crate::bulk::{KickOff, Level};
use crate::error::FhirError;
use crate::store::BulkStatus;
use fhir_core::fhir::outcome::{operation_outcome, Issue};

pub async fn system(
    state: web::Data<AppState>,
    ctx: RequestContext,
    req: HttpRequest,
) -> Result<HttpResponse, FhirError> {
    kick_off(&state, &ctx, &req, Level::System).await
}

pub async fn patient(
    state: web::Data<AppState>,
    ctx: RequestContext,
    req: HttpRequest,
) -> Result<HttpResponse, FhirError> {
    kick_off(&state, &ctx, &req, Level::Patient).await
}

pub async fn group(
    state: web::Data<AppState>,
    ctx: RequestContext,
    req: HttpRequest,
    path: web::Path<(String,)>,
) -> Result<HttpResponse, FhirError> {
    let (id,) = path.into_inner();
    kick_off(&state, &ctx, &req, Level::Group { id }).await
}

/// Whether a `Prefer` header asks for `respond-async`.
fn respond_async(req: &HttpRequest) -> bool {
    req.headers()
        .get_all("prefer")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
}

async fn kick_off(
    state: &AppState,
    ctx: &RequestContext,
    req: &HttpRequest,
    level: Level,
) -> Result<HttpResponse, FhirError> {
    let caller = ctx
        .caller
        .as_ref()
        .ok_or_else(crate::api::auth::unauthenticated)?;
    let path = req.path().strip_prefix("/fhir").unwrap_or(req.path());
    let mut request_url = format!("{}{path}", ctx.base());
    if !req.query_string().is_empty() {
        request_url.push('?');
        request_url.push_str(req.query_string());
    }
    let k = KickOff {
        level,
        query: &ctx.query,
        respond_async: respond_async(req),
        request_url,
    };
    let id = state.bulk.kick_off(caller, &ctx.access, &k).await?;
    let status_url = format!("{}/$export-status/{id}", ctx.base());
    let text = format!("export accepted; poll {status_url} for its status");
    Ok(HttpResponse::Accepted()
        .insert_header((header::CONTENT_LOCATION, status_url))
        .content_type(FHIR_JSON)
        .body(operation_outcome(&[Issue::information("informational", text)]).to_string()))
}

fn client_id(ctx: &RequestContext) -> Result<&str, FhirError> {
    ctx.caller
        .as_ref()
        .map(|c| c.client.id.as_str())
        .ok_or_else(crate::api::auth::unauthenticated)
}

pub async fn status(
    state: web::Data<AppState>,
    ctx: RequestContext,
    path: web::Path<(String,)>,
) -> Result<HttpResponse, FhirError> {
    let (id,) = path.into_inner();
    let job = state.bulk.job_of(&id, client_id(&ctx)?).await?;
    match job.status {
        BulkStatus::Accepted | BulkStatus::InProgress => Ok(HttpResponse::Accepted()
            .insert_header(("X-Progress", progress_header(&job.progress)))
            .insert_header((
                header::RETRY_AFTER,
                state.bulk.config().retry_after_secs.to_string(),
            ))
            .finish()),
        BulkStatus::Completed => {
            let manifest = state.bulk.manifest(&job, ctx.base())?;
            let mut res = HttpResponse::Ok();
            res.content_type("application/json");
            if let Some(t) = job.expires_ms {
                res.insert_header((header::EXPIRES, http_date(t)));
            }
            Ok(res.body(manifest.to_string()))
        }
        BulkStatus::Failed => {
            let body = job.error.unwrap_or_else(|| {
                operation_outcome(&[Issue::error("exception", "the export failed")]).to_string()
            });
            Ok(HttpResponse::InternalServerError()
                .content_type(FHIR_JSON)
                .body(body))
        }
    }
}

/// `X-Progress` holds visible ASCII only (at most 100 characters, as the IG suggests).
fn progress_header(progress: &str) -> String {
    progress
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(100)
        .collect()
}

pub async fn cancel(
    state: web::Data<AppState>,
    ctx: RequestContext,
    path: web::Path<(String,)>,
) -> Result<HttpResponse, FhirError> {
    let (id,) = path.into_inner();
    let job = state.bulk.job_of(&id, client_id(&ctx)?).await?;
    state.bulk.cancel(&job).await?;
    let text = format!("export {id} cancelled; its files are deleted");
    Ok(HttpResponse::Accepted()
        .content_type(FHIR_JSON)
        .body(operation_outcome(&[Issue::information("informational", text)]).to_string()))
}

/// Bytes read from a file per chunk of the response body.
const CHUNK: usize = 64 * 1024;

pub async fn download(
    state: web::Data<AppState>,
    ctx: RequestContext,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, FhirError> {
    let (id, file) = path.into_inner();
    let job = state.bulk.job_of(&id, client_id(&ctx)?).await?;
    let path = state.bulk.file_path(&job, &file)?;
    let opened = {
        let path = path.clone();
        web::block(move || {
            let f = std::fs::File::open(&path)?;
            let len = f.metadata()?.len();
            Ok::<_, std::io::Error>((f, len))
        })
        .await
    };
    let (f, len) = match opened {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            tracing::error!(file = %path.display(), error = %e, "export file missing");
            return Err(FhirError::not_found(format!(
                "export job {id} has no file {file}"
            )));
        }
        Err(e) => return Err(FhirError::internal(e.to_string())),
    };
    // Read in chunks on the blocking pool: the body streams, a slow client holds one chunk.
    let body = Box::pin(futures_util::stream::unfold(Some(f), |f| async move {
        let mut f = f?;
        let read = web::block(move || {
            use std::io::Read as _;
            let mut buf = vec![0u8; CHUNK];
            let n = f.read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>((f, buf))
        })
        .await;
        match read {
            Ok(Ok((_, buf))) if buf.is_empty() => None,
            Ok(Ok((f, buf))) => Some((Ok::<_, std::io::Error>(web::Bytes::from(buf)), Some(f))),
            Ok(Err(e)) => Some((Err(e), None)),
            Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
        }
    }));
    let len = Some(len);
    let mut res = HttpResponse::Ok();
    res.content_type("application/fhir+ndjson");
    match len {
        Some(n) => Ok(res.body(actix_web::body::SizedStream::new(n, body))),
        None => Ok(res.streaming(body)),
    }
}
