//! `/municipal/v1/care-records`: municipal care systems post their records here and read them
//! back rebuilt from FHIR. The body is the record (JSON, `profiles/municipal/`), not FHIR; errors
//! are OperationOutcomes whose locations are JSON paths into the record.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use crate::api::context::{FhirBody, JsonBytes, PreferReturn, RequestContext};
use crate::api::response::mark_stale;
use crate::api::AppState;
use crate::auth::ClientKind;
use crate::engine::Access;
use crate::error::FhirError;
use crate::lookup::LookupError;
use crate::municipal::{self, vocab, Stored};
use fhir_core::fhir::outcome::Issue;

/// The organization that owns what a municipality posts: of the municipality's identifiers (SOR
/// code, municipality code), the first the client acts for; for administrators, the SOR code.
/// Municipality clients and administrators only; 403 for another municipality's record.
fn municipal_access(
    ctx: &RequestContext,
    municipality_code: &str,
    sor: &str,
) -> Result<Access, FhirError> {
    municipal_client(ctx)?;
    let candidates = [
        format!("{}|{sor}", vocab::SOR),
        format!("{}|{municipality_code}", vocab::MUNICIPALITY_CODES),
    ];
    let owner = if ctx.access.sees_everything() {
        candidates.into_iter().next()
    } else {
        ctx.access
            .organizations()
            .iter()
            .find(|o| candidates.contains(o))
            .cloned()
    };
    let who = ctx
        .caller
        .as_ref()
        .map_or("anonymous", |c| c.client.id.as_str());
    let Some(owner) = owner else {
        return Err(FhirError::new(
            403,
            vec![Issue::error(
                "forbidden",
                format!("client {who} does not act for municipality {municipality_code}"),
            )
            .at("$.municipality")],
        ));
    };
    ctx.access.clone().owning(&owner)
}

/// 403 unless the caller is a municipality client or an administrator.
pub(crate) fn municipal_client(ctx: &RequestContext) -> Result<(), FhirError> {
    match &ctx.caller {
        Some(c) if matches!(c.client.kind, ClientKind::Municipality | ClientKind::Admin) => Ok(()),
        other => Err(FhirError::new(
            403,
            vec![Issue::error(
                "forbidden",
                match other {
                    Some(c) => format!(
                        "client {} is a {} client; municipal records and notes are posted by municipality clients",
                        c.client.id,
                        c.client.kind.as_str()
                    ),
                    None => "authentication is required".to_string(),
                },
            )],
        )),
    }
}

/// `POST /municipal/v1/care-records`.
pub async fn post(
    state: web::Data<AppState>,
    ctx: RequestContext,
    body: JsonBytes,
) -> Result<HttpResponse, FhirError> {
    let validator = state.engine.validator()?;
    // One parse straight into the record when it certainly has the schema's shape; otherwise
    // the JSON document and the schema validator, which report every problem.
    let conforming = if body.allows_depth(municipal::RECORD_DEPTH) {
        municipal::parse_conforming(&body.bytes)
    } else {
        None
    };
    let (mut rec, mut warnings) = match conforming {
        Some(rec) => municipal::check_rules(rec, &validator.terminology)?,
        None => municipal::check_document(&body.parse()?, &validator.terminology)?,
    };
    let access = municipal_access(&ctx, &rec.municipality.code, &rec.municipality.sor)?;
    // Its resources are written in one transaction, bounded like a posted transaction Bundle:
    // SQLite's work per statement grows with the transaction (an in-memory statement journal),
    // so a record of 12,000 parts held the writer for 13 s.
    let parts = municipal::part_count(&rec);
    let max = state.config.limits.max_bundle_entries;
    if parts > max {
        return Err(FhirError::new(
            422,
            vec![Issue::error(
                "too-costly",
                format!(
                    "the record maps to {parts} FHIR resources (its conditions, goals, \
                     interventions, care team and stay); at most {max} are written in one request"
                ),
            )],
        ));
    }
    // A record that gives only the CPR gets the citizen's name and birth date from the patient
    // registry, where one is configured. A registry that is down beyond the stale bound fails
    // the post (503): storing the record unfilled would make the same record compare unequal
    // once the registry is back.
    let mut stale = false;
    let c = &rec.citizen;
    if c.given_names.is_none() || c.family_name.is_none() || c.birth_date.is_none() {
        let id = c.cpr.identifier();
        match state.lookups.patient_by_identifier(&id).await {
            Ok(found) => {
                stale = found.stale;
                if let Some(p) = &found.value {
                    if municipal::fill_citizen(&mut rec, p) {
                        warnings.push(Issue::information(
                            "informational",
                            "the citizen's name and birth date, which the record did not give, were filled from the patient registry",
                        ).at("$.citizen"));
                    }
                }
            }
            Err(LookupError::NotConfigured(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // Unlike FHIR's default, the municipal answer carries the Bundle only when asked.
    let answer = match ctx.prefer_return {
        Some(PreferReturn::Representation) => crate::engine::Answer::Representation,
        _ => crate::engine::Answer::Minimal,
    };
    let posted = municipal::store(
        &state.engine,
        &access,
        &validator,
        rec,
        warnings,
        ctx.base(),
        answer,
    )
    .await?;
    let mut b = match posted.stored {
        Stored::Created => HttpResponse::Created(),
        Stored::Updated | Stored::Unchanged => HttpResponse::Ok(),
    };
    let location = format!(
        "{}/municipal/v1/care-records/{}?municipality={}",
        ctx.base().trim_end_matches("/fhir"),
        posted.record.record_id,
        posted.record.municipality.code
    );
    if let Ok(v) = header::HeaderValue::from_str(&location) {
        b.insert_header((header::LOCATION, v));
    }
    if stale {
        mark_stale(&mut b, "patients");
    }
    b.extensions_mut()
        .insert(crate::api::audit::AuditEntity(posted.care_plan()));
    Ok(b.content_type("application/json")
        .body(posted.into_body(answer)))
}

/// `GET /municipal/v1/care-records/{id}[?municipality=CODE]`.
pub async fn get(
    state: web::Data<AppState>,
    ctx: RequestContext,
    path: web::Path<String>,
) -> Result<HttpResponse, FhirError> {
    let id = path.into_inner();
    let municipality = ctx
        .query
        .iter()
        .find(|(k, _)| k == "municipality")
        .map(|(_, v)| v.as_str());
    let rec = municipal::fetch(&state.engine, &ctx.access, &id, municipality, ctx.base()).await?;
    let body = serde_json::to_string(&rec)
        .map_err(|e| FhirError::internal(format!("serializing the record: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

/// `POST /municipal/v1/discharge-notes`: check the note against its care record, build the
/// discharge message, and store the discharge summary with the message's delivery job in one
/// transaction. 202 Accepted (201 the first time is not the point: delivery is what the
/// municipality waits for), with the message id and where to follow the delivery.
pub async fn post_discharge_note(
    state: web::Data<AppState>,
    ctx: RequestContext,
    body: FhirBody,
) -> Result<HttpResponse, FhirError> {
    use crate::discharge::{self, send};
    let (note, warnings) = discharge::check_note(&body.0)?;
    municipal_client(&ctx)?;
    let services = send::Services {
        engine: &state.engine,
        forwarder: &state.forwarder,
        gln: &state.config.forwarding.gln,
    };
    let accepted = send::send(&services, &ctx.access, ctx.base(), note, warnings).await?;
    let body = serde_json::json!({
        "noteId": accepted.note_id,
        "messageId": accepted.message_id,
        "destination": accepted.destination,
        "status": accepted.status.as_str(),
        "result": if accepted.created { "accepted" } else { "already-accepted" },
        "composition": accepted.composition,
        "delivery": format!("/admin/outbox/{}", accepted.message_id),
        "outcome": fhir_core::fhir::outcome::operation_outcome(&accepted.warnings),
    });
    Ok(HttpResponse::Accepted()
        .content_type("application/json")
        .body(body.to_string()))
}

/// `GET /municipal/v1/care-records/{id}/hospital-events[?municipality=CODE]`: what MedCom
/// HospitalNotifications said about the record's citizen (admitted, on leave, discharged, …), in
/// time order, and how many hospital stays began during the care course (the readmission
/// figure). The same access rules as reading the record: whoever may read it may read these.
pub async fn get_hospital_events(
    state: web::Data<AppState>,
    ctx: RequestContext,
    path: web::Path<String>,
) -> Result<HttpResponse, FhirError> {
    let id = path.into_inner();
    let municipality = ctx
        .query
        .iter()
        .find(|(k, _)| k == "municipality")
        .map(|(_, v)| v.as_str());
    let rec = municipal::fetch(&state.engine, &ctx.access, &id, municipality, ctx.base()).await?;
    let citizen = crate::medcom::citizen_key(&format!("{}|{}", vocab::CPR, rec.citizen.cpr));
    let store = state.engine.store();
    let events = store.hospital_events(&citizen).await?;
    let period = &rec.course.period;
    let start = course_instant(&period.start, false);
    let end = period.end.as_deref().and_then(|e| course_instant(e, true));
    let admissions = match start {
        Some(s) => Some(store.admissions_during_course(&citizen, s, end).await?),
        None => None,
    };
    let list: Vec<serde_json::Value> = events
        .iter()
        .map(|e| {
            serde_json::json!({
                "event": e.event,
                "time": e.event_time,
                "hospital": {"sor": e.hospital_sor, "name": e.hospital},
                "encounter": e.encounter,
                "messageId": e.message_id,
                "sender": e.sender,
                "refersTo": e.refers_to,
                "duringCourse": start.is_some_and(|s| e.event_ms >= s && end.is_none_or(|x| e.event_ms <= x)),
            })
        })
        .collect();
    let body = serde_json::json!({
        "careRecord": rec.record_id,
        "municipality": rec.municipality.code,
        "coursePeriod": {"start": period.start, "end": period.end},
        "admissionsDuringCourse": admissions,
        "events": list,
    });
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body.to_string()))
}

/// A course date or dateTime as milliseconds since the epoch: a date is its first (or, for the
/// end of a period, its last) millisecond in Danish time.
fn course_instant(s: &str, end_of_day: bool) -> Option<i64> {
    use fhir_core::fhir::datetime::{full_date, full_date_time};
    if let Some(t) = full_date_time(s) {
        return Some(t.timestamp_millis());
    }
    let d = full_date(s)?;
    let t = if end_of_day {
        d.and_hms_milli_opt(23, 59, 59, 999)?
    } else {
        d.and_hms_opt(0, 0, 0)?
    };
    // Europe/Copenhagen is UTC+1 or +2; +1 errs by at most an hour in summer, within the day.
    Some(t.and_utc().timestamp_millis() - 3_600_000)
}
