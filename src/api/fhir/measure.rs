//! `GET /fhir/Measure/{id}/$evaluate-measure?periodStart=DATE&periodEnd=DATE&subject=
//! Organization/{municipality}`: a KPI (`GET /municipal/v1/kpis`) as a summary `MeasureReport`
//! of one of the Measures published in `profiles/measures/`. The period is `[periodStart,
//! periodEnd]`, both days included (the KPI API's `[from, to)` with `to` the day after
//! `periodEnd`). Who may ask, and the tenancy of the figures, are the KPI API's
//! (`reports::permit`).

use actix_web::{web, HttpResponse};

use crate::api::context::RequestContext;
use crate::api::response::FHIR_JSON;
use crate::api::AppState;
use crate::error::FhirError;
use crate::report::measures;
use fhir_core::fhir::outcome::Issue;

const DAY_MS: i64 = 86_400_000;

struct Request {
    municipality: String,
    start: (String, i64),
    end: (String, i64),
}

/// The query, every problem reported at once.
fn request(ctx: &RequestContext) -> Result<Request, FhirError> {
    let mut issues = Vec::new();
    let allowed = ["periodStart", "periodEnd", "subject", "reportType"];
    for (k, _) in &ctx.query {
        if !allowed.contains(&k.as_str()) {
            issues.push(
                Issue::error(
                    "not-supported",
                    format!(
                        "unknown parameter {k:?}; use periodStart, periodEnd, subject and reportType"
                    ),
                )
                .at(k),
            );
        }
    }
    let get = |k: &str| super::super::reports::param(ctx, k);
    let start = super::super::kpis::date_param(ctx, "periodStart", &mut issues);
    let end = super::super::kpis::date_param(ctx, "periodEnd", &mut issues);
    if let (Some((_, s)), Some((_, e))) = (&start, &end) {
        if e < s {
            issues.push(
                Issue::error("value", "periodEnd must not be before periodStart").at("periodEnd"),
            );
        }
    }
    let municipality = match get("subject") {
        Some(s) => match s.strip_prefix("Organization/") {
            Some(m) if m.len() == 4 && m.bytes().all(|b| b.is_ascii_digit()) => Some(m.to_string()),
            _ => {
                issues.push(
                    Issue::error(
                        "value",
                        format!(
                            "subject must be Organization/ and a four-digit municipality code, got {s:?}"
                        ),
                    )
                    .at("subject"),
                );
                None
            }
        },
        None => {
            issues.push(
                Issue::error(
                    "required",
                    "subject (Organization/ and the municipality code) is required",
                )
                .at("subject"),
            );
            None
        }
    };
    if let Some(t) = get("reportType") {
        if t != "summary" {
            issues.push(
                Issue::error(
                    "not-supported",
                    format!("only reportType summary is supported, got {t:?}"),
                )
                .at("reportType"),
            );
        }
    }
    match (municipality, start, end) {
        (Some(municipality), Some(start), Some(end)) if issues.is_empty() => Ok(Request {
            municipality,
            start,
            end,
        }),
        _ => Err(FhirError::new(400, issues)),
    }
}

pub async fn evaluate(
    state: web::Data<AppState>,
    ctx: RequestContext,
    path: web::Path<String>,
) -> Result<HttpResponse, FhirError> {
    let id = path.into_inner();
    let Some(measure) = measures::measure(&id) else {
        return Err(FhirError::not_found(format!(
            "no Measure {id}; the KPI Measures are {}",
            measures::ids().join(", ")
        )));
    };
    let req = request(&ctx)?;
    super::super::reports::permit(&state, &ctx, &req.municipality).await?;
    // The day after periodEnd, as the KPI API's exclusive `to`.
    let to_ms = req.end.1 + DAY_MS;
    let to = fhir_core::fhir::instant(to_ms);
    let kpis = super::super::kpis::figures(
        &state,
        &ctx,
        &req.municipality,
        (&req.start.0, req.start.1),
        (to.get(..10).unwrap_or(&to), to_ms),
    )
    .await?;
    let now = fhir_core::fhir::instant(chrono::Utc::now().timestamp_millis());
    let report = measures::report(
        &measure,
        &kpis,
        &req.municipality,
        &req.start.0,
        &req.end.0,
        &now,
    )
    .ok_or_else(|| FhirError::internal(format!("Measure {id} has no report builder")))?;
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(report.to_string()))
}
