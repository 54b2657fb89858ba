//! `/municipal/v1/care-records`: municipal care systems post their records here and read them
//! back rebuilt from FHIR. The body is the record (JSON, `profiles/municipal/`), not FHIR; errors
//! are OperationOutcomes whose locations are JSON paths into the record.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use crate::api::context::{FhirBody, PreferReturn, RequestContext};
use crate::api::response::mark_stale;
use crate::api::AppState;
use crate::error::FhirError;
use crate::fhir::outcome::Issue;
use crate::lookup::{Identifier, LookupError};
use crate::municipal::{self, vocab, Stored};
use crate::validation::Validator;

fn validator(state: &AppState) -> Result<std::sync::Arc<Validator>, FhirError> {
    match state.engine.validation() {
        Some(p) => Ok(p.validator.clone()),
        None => Validator::shared_r4()
            .map_err(|e| FhirError::internal(format!("loading the definitions: {e}"))),
    }
}

/// `POST /municipal/v1/care-records`.
pub async fn post(
    state: web::Data<AppState>,
    ctx: RequestContext,
    body: FhirBody,
) -> Result<HttpResponse, FhirError> {
    let validator = validator(&state)?;
    let (mut rec, mut warnings) = municipal::check_document(&body.0, &validator.terminology)?;
    // A record that gives only the CPR gets the citizen's name and birth date from the patient
    // registry, where one is configured. A registry that is down beyond the stale bound fails
    // the post (503): storing the record unfilled would make the same record compare unequal
    // once the registry is back.
    let mut stale = false;
    let c = &rec.citizen;
    if c.given_names.is_none() || c.family_name.is_none() || c.birth_date.is_none() {
        let id = Identifier::new(vocab::CPR, &c.cpr)?;
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
    let representation = ctx.prefer_return == Some(PreferReturn::Representation);
    let posted = municipal::store(
        &state.engine,
        &validator,
        rec,
        warnings,
        &ctx.base,
        representation,
    )
    .await?;
    let mut b = match posted.stored {
        Stored::Created => HttpResponse::Created(),
        Stored::Updated | Stored::Unchanged => HttpResponse::Ok(),
    };
    let location = format!(
        "{}/municipal/v1/care-records/{}?municipality={}",
        ctx.base.trim_end_matches("/fhir"),
        posted.record.record_id,
        posted.record.municipality.code
    );
    if let Ok(v) = header::HeaderValue::from_str(&location) {
        b.insert_header((header::LOCATION, v));
    }
    if stale {
        mark_stale(&mut b, "patients");
    }
    Ok(b.content_type("application/json")
        .body(posted.body(representation).to_string()))
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
    let rec = municipal::fetch(&state.engine, &id, municipality, &ctx.base).await?;
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
    use crate::discharge::{self, message};
    let (note, warnings) = discharge::check_note(&body.0)?;
    // Routing problems are the note's receiver's (a registry that cannot answer keeps its
    // 502/503 and its own wording).
    let (destination, endpoint) = match state.forwarder.route(&note.receiver.token()).await {
        Ok(r) => r,
        Err(e) if e.status == 422 => {
            return Err(FhirError::new(
                422,
                e.issues
                    .into_iter()
                    .map(|i| Issue {
                        expression: Some("$.receiver".into()),
                        ..i
                    })
                    .collect(),
            ))
        }
        Err(e) => return Err(e),
    };
    let destination = destination.id.clone();
    let record = discharge::load_record(&state.engine, &note).await?;
    let ids = message::NoteIds::for_note(&note);
    let now = crate::fhir::instant(chrono::Utc::now().timestamp_millis());
    let built = message::build(&note, &record, &ids, &ctx.base, &endpoint, &now);
    let put = |r: &serde_json::Value| {
        let url = format!(
            "{}/{}",
            r["resourceType"].as_str().unwrap_or_default(),
            r["id"].as_str().unwrap_or_default()
        );
        serde_json::json!({"resource": r, "request": {"method": "PUT", "url": url}})
    };
    let store = serde_json::json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [put(&built.composition), put(&built.provenance)],
    });
    let submitted = state
        .forwarder
        .submit(built.message, Some(store), &ctx.base)
        .await?;
    let body = serde_json::json!({
        "noteId": note.note_id,
        "messageId": submitted.message_id,
        "destination": destination,
        "status": submitted.status.as_str(),
        "result": if submitted.created { "accepted" } else { "already-accepted" },
        "composition": format!("Composition/{}", ids.composition),
        "delivery": format!("/admin/outbox/{}", submitted.message_id),
        "outcome": crate::fhir::outcome::operation_outcome(&warnings),
    });
    Ok(HttpResponse::Accepted()
        .content_type("application/json")
        .body(body.to_string()))
}
