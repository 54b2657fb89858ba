//! `GET /municipal/v1/kpis?municipality=CODE&from=DATE&to=DATE`: the care-flow KPIs of a
//! municipality over `[from, to)` (definitions in docs/kpis.md).
//!
//! Callers: as for the KL Gateway report (`reports::permit`): administrators, clients acting for
//! the municipality, and clients that can read records of it (a region's client, for the citizens
//! shared with it). The figures are computed under the caller's tenancy, so a region's client
//! sees figures over the shared citizens only.

use actix_web::{web, HttpResponse};

use crate::api::context::RequestContext;
use crate::api::AppState;
use crate::error::FhirError;
use crate::store::kpis::{KpiQuery, KpiRows};
use fhir_core::fhir::outcome::Issue;

struct Request {
    municipality: String,
    from: String,
    to: String,
    from_ms: i64,
    to_ms: i64,
}

/// A calendar date `YYYY-MM-DD`: its first millisecond (UTC).
fn day(s: &str) -> Option<i64> {
    let d = fhir_core::fhir::datetime::full_date(s)?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

/// The required date parameter `name` (`2026-01-01`) and its first millisecond (UTC); a missing
/// or malformed one is reported in `issues`. Shared with `$evaluate-measure`.
pub(crate) fn date_param(
    ctx: &RequestContext,
    name: &str,
    issues: &mut Vec<Issue>,
) -> Option<(String, i64)> {
    match super::reports::param(ctx, name) {
        Some(s) => match day(s) {
            Some(ms) => Some((s.to_string(), ms)),
            None => {
                issues.push(
                    Issue::error(
                        "value",
                        format!("{name} must be a date (2026-01-01), got {s:?}"),
                    )
                    .at(name),
                );
                None
            }
        },
        None => {
            issues.push(Issue::error("required", format!("{name} (a date) is required")).at(name));
            None
        }
    }
}

/// The query, every problem reported at once.
fn request(ctx: &RequestContext) -> Result<Request, FhirError> {
    let mut issues = Vec::new();
    let municipality =
        super::reports::municipality_param(ctx, &["municipality", "from", "to"], &mut issues);
    let from = date_param(ctx, "from", &mut issues);
    let to = date_param(ctx, "to", &mut issues);
    if let (Some((_, f)), Some((_, t))) = (&from, &to) {
        if f >= t {
            issues.push(Issue::error("value", "to must be after from").at("to"));
        }
    }
    match (municipality, from, to) {
        (Some(municipality), Some((from, from_ms)), Some((to, to_ms))) if issues.is_empty() => {
            Ok(Request {
                municipality,
                from,
                to,
                from_ms,
                to_ms,
            })
        }
        _ => Err(FhirError::new(400, issues)),
    }
}

pub async fn kpis(
    state: web::Data<AppState>,
    ctx: RequestContext,
) -> Result<HttpResponse, FhirError> {
    let req = request(&ctx)?;
    super::reports::permit(&state, &ctx, &req.municipality).await?;
    let body = figures(
        &state,
        &ctx,
        &req.municipality,
        (&req.from, req.from_ms),
        (&req.to, req.to_ms),
    )
    .await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body.to_string()))
}

/// The KPI body of a municipality over `[from, to)` (each a date and its first millisecond),
/// under the caller's tenancy. The caller has passed `reports::permit` for the municipality;
/// `$evaluate-measure` and the console's Flows page answer from this too.
pub(crate) async fn figures(
    state: &AppState,
    ctx: &RequestContext,
    municipality: &str,
    (from, from_ms): (&str, i64),
    (to, to_ms): (&str, i64),
) -> Result<serde_json::Value, FhirError> {
    let rows = rows(state, ctx, municipality, from_ms, to_ms).await?;
    Ok(crate::report::kpis::body(
        municipality,
        from,
        to,
        &rows,
        from_ms,
        to_ms,
        chrono::Utc::now().timestamp_millis(),
    ))
}

/// What the figures are computed from: the store's KPI rows of the municipality over
/// `[from_ms, to_ms)` under the caller's tenancy (with the hospital events of the active courses'
/// citizens).
pub(crate) async fn rows(
    state: &AppState,
    ctx: &RequestContext,
    municipality: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<KpiRows, FhirError> {
    let q = KpiQuery {
        municipality: municipality.to_string(),
        from_ms,
        to_ms,
    };
    Ok(state
        .engine
        .store()
        .kpi_rows(&q, &ctx.access.readable())
        .await?)
}
