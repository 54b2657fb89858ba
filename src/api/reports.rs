//! `GET /municipal/v1/reports/kl-gateway?municipality=CODE&kind=140|care[&since=INSTANT]`: the
//! KL Gateway delivery report (the IG's envelope, one report per citizen) for the records stored
//! for a municipality; with `since`, only the citizens whose records were stored after it.
//!
//! Callers: municipality clients acting for the municipality (its code among their organizations,
//! or records of it that they own) and administrators; 403 for anyone else. The body is streamed:
//! citizens are reported while later pages of records are still being read.

use actix_web::{web, HttpResponse};
use fhir_core::fhir::ResourceType;

use crate::api::context::RequestContext;
use crate::api::AppState;
use crate::auth::Permission;
use crate::error::FhirError;
use crate::municipal::vocab;
use crate::report::kl_gateway::Kind;
use crate::report::stored::{self, Request};
use fhir_core::fhir::outcome::Issue;
use fhir_core::validation::Validator;

/// A query parameter's value, `None` when it is absent.
pub(super) fn param<'a>(ctx: &'a RequestContext, name: &str) -> Option<&'a str> {
    ctx.query
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, v)| v.as_str())
}

/// The part every municipal query shares: each parameter name must be one of `allowed`, and
/// `municipality` is a four-digit municipality code. Problems go to `issues`, so a caller reports
/// them together with its own.
pub(super) fn municipality_param(
    ctx: &RequestContext,
    allowed: &[&str],
    issues: &mut Vec<Issue>,
) -> Option<String> {
    let names = match allowed.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    };
    for (k, _) in &ctx.query {
        if !allowed.contains(&k.as_str()) {
            issues.push(
                Issue::error(
                    "not-supported",
                    format!("unknown parameter {k:?}; use {names}"),
                )
                .at(k),
            );
        }
    }
    match param(ctx, "municipality") {
        Some(m) if m.len() == 4 && m.bytes().all(|b| b.is_ascii_digit()) => Some(m.to_string()),
        Some(m) => {
            issues.push(
                Issue::error(
                    "value",
                    format!("municipality must be a four-digit municipality code, got {m:?}"),
                )
                .at("municipality"),
            );
            None
        }
        None => {
            issues.push(
                Issue::error(
                    "required",
                    "municipality (the municipality code) is required",
                )
                .at("municipality"),
            );
            None
        }
    }
}

/// The query, every problem reported at once.
fn request(ctx: &RequestContext) -> Result<Request, FhirError> {
    let get = |k: &str| param(ctx, k);
    let mut issues = Vec::new();
    let municipality = municipality_param(ctx, &["municipality", "kind", "since"], &mut issues);
    let kind = match get("kind") {
        Some(k) => {
            let kind = Kind::parse(k);
            if kind.is_none() {
                issues.push(
                    Issue::error("value", format!("kind must be 140 or care, got {k:?}"))
                        .at("kind"),
                );
            }
            kind
        }
        None => {
            issues.push(Issue::error("required", "kind (140 or care) is required").at("kind"));
            None
        }
    };
    let since_ms = match get("since") {
        None => None,
        Some(s) => match fhir_core::fhir::datetime::full_date_time(s) {
            Some(t) => Some(t.timestamp_millis()),
            None => {
                issues.push(
                    Issue::error(
                        "value",
                        format!(
                            "since must be an instant with a time zone (2026-12-01T00:00:00Z), got {s:?}"
                        ),
                    )
                    .at("since"),
                );
                None
            }
        },
    };
    match (municipality, kind) {
        (Some(municipality), Some(kind)) if issues.is_empty() => Ok(Request {
            municipality,
            kind,
            since_ms,
        }),
        _ => Err(FhirError::new(400, issues)),
    }
}

/// 403 unless the caller may see the municipality's report: an administrator, or a municipality
/// client with the municipality's code among its organizations or owning records of it.
pub(crate) async fn permit(
    state: &AppState,
    ctx: &RequestContext,
    municipality: &str,
) -> Result<(), FhirError> {
    super::municipal::municipal_client(ctx)?;
    ctx.access.permit("CarePlan", Permission::Search)?;
    for t in ["Patient", "Condition", "Goal", "Encounter", "CareTeam"] {
        ctx.access.permit(t, Permission::Read)?;
    }
    if ctx.access.sees_everything() {
        return Ok(());
    }
    let code = format!("{}|{}", vocab::MUNICIPALITY_CODES, municipality);
    if ctx.access.organizations().contains(&code) {
        return Ok(());
    }
    let q = state.engine.parse_pairs(
        ResourceType::CARE_PLAN,
        &[(
            "identifier".to_string(),
            format!("{}|", vocab::record_system(municipality)),
        )],
        false,
    )?;
    let owned = state
        .engine
        .store()
        .search(&q, 1, &ctx.access.readable())
        .await?;
    if !owned.is_empty() {
        return Ok(());
    }
    let who = ctx
        .caller
        .as_ref()
        .map_or("anonymous", |c| c.client.id.as_str());
    Err(FhirError::new(
        403,
        vec![Issue::error(
            "forbidden",
            format!("client {who} does not act for municipality {municipality}"),
        )
        .at("municipality")],
    ))
}

/// The validator whose terminology decides which codes the IG takes: the server's, which has the
/// embedded IG packages, or those packages alone.
fn codes(state: &AppState) -> Result<std::sync::Arc<Validator>, FhirError> {
    state.engine.validator()
}

pub async fn kl_gateway(
    state: web::Data<AppState>,
    ctx: RequestContext,
) -> Result<HttpResponse, FhirError> {
    let req = request(&ctx)?;
    permit(&state, &ctx, &req.municipality).await?;
    let validator = codes(&state)?;
    let vis = ctx.access.readable();
    let timestamp = fhir_core::fhir::instant(chrono::Utc::now().timestamp_millis());
    let id = fhir_core::fhir::new_id();
    // A few pieces in flight: the producer waits for a slow client instead of piling up text.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<web::Bytes, FhirError>>(4);
    let engine = state.engine.clone();
    tokio::spawn(async move {
        if let Err(e) = stored::write(
            &engine,
            vis,
            &req,
            &validator.terminology,
            &id,
            &timestamp,
            tx.clone(),
        )
        .await
        {
            // The status is sent already: end the body early so the client sees it incomplete.
            tracing::error!(error = ?e.issues.first().map(|i| &i.diagnostics), "KL Gateway report failed");
            let _ = tx.send(Err(e)).await;
        }
    });
    let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Ok(HttpResponse::Ok()
        .content_type("application/fhir+json")
        .streaming(body))
}
