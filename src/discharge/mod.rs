//! Discharge notes: a municipality says a citizen is ready for discharge from (or has left) a
//! temporary place; the gateway checks the note against the care record it belongs to, builds
//! the FHIR discharge message ([`message`]) and hands it to forwarding.
//!
//! - [`note`]: the v1 note as Rust types (`profiles/municipal/discharge-note-v1.schema.json`).
//! - [`message`]: note + stored record resources → message Bundle (pure).
//! - [`send`]: the use case end to end (route, load the record, build, MedCom or Swedish form,
//!   store and queue), which the HTTP handler calls.
//! - this file: the checks (schema 400; rules 422; the "no-man's land" warnings) and loading the
//!   record's stored resources.

pub mod message;
pub mod note;
pub mod send;
pub mod sweden;

use serde_json::Value;

use self::note::DischargeNote;
use crate::engine::{Access, Engine};
use crate::error::FhirError;
use crate::municipal::check::{self, Schema};
use crate::municipal::from_fhir::part_local_id;
use crate::municipal::to_fhir::{kind, part_id};
use crate::municipal::vocab;
use crate::municipal::{read_json, references};
use fhir_core::fhir::outcome::Issue;
use fhir_core::fhir::ResourceType;

pub static NOTE_SCHEMA: Schema = Schema::new(include_str!(
    "../../profiles/municipal/discharge-note-v1.schema.json"
));

/// Schema (400), then the rules that need only the note (422). Returns the note and warnings.
pub fn check_note(doc: &Value) -> Result<(DischargeNote, Vec<Issue>), FhirError> {
    let issues = NOTE_SCHEMA.check(doc);
    if !issues.is_empty() {
        return Err(FhirError::new(400, issues));
    }
    let note: DischargeNote = serde_json::from_value(doc.clone()).map_err(|e| {
        FhirError::bad_request(format!("the note does not match the v1 format: {e}"))
    })?;
    let mut issues = Vec::new();
    let ready = check::instant(&note.ready_for_discharge_at);
    let discharged = note.discharged_at.as_deref().and_then(check::instant);
    if ready.is_none() {
        issues.push(
            Issue::error("value", "$.readyForDischargeAt is not a real date and time")
                .at("$.readyForDischargeAt"),
        );
    }
    if let (Some(r), Some(d)) = (ready, discharged) {
        if d < r {
            issues.push(
                Issue::error(
                    "business-rule",
                    format!("$.dischargedAt ({d}) is before $.readyForDischargeAt ({r})"),
                )
                .at("$.dischargedAt"),
            );
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (i, o) in note.goal_outcomes.iter().enumerate() {
        if !seen.insert(o.goal.as_str()) {
            issues.push(
                Issue::error(
                    "duplicate",
                    format!(
                        "$.goalOutcomes[{i}].goal: goal {:?} has an outcome already",
                        o.goal
                    ),
                )
                .at(format!("$.goalOutcomes[{i}].goal")),
            );
        }
    }
    // The seeds' "no-man's land": nobody named to follow up, nobody to call.
    if note.follow_up.is_empty() {
        issues.push(
            Issue::warning(
                "business-rule",
                "no follow-up is stated: say who follows up on the citizen after discharge, or that nothing is needed",
            )
            .at("$.followUp"),
        );
    }
    for (i, f) in note.follow_up.iter().enumerate() {
        if f.responsible.is_none() {
            issues.push(
                Issue::warning(
                    "business-rule",
                    format!(
                        "$.followUp[{i}] ({:?}) has no responsible: a task nobody owns is how citizens end up discharged to no-man's land",
                        f.what
                    ),
                )
                .at(format!("$.followUp[{i}].responsible")),
            );
        }
    }
    if note.contact.is_none() {
        issues.push(
            Issue::warning(
                "business-rule",
                "no contact person is stated: the receiver has nobody to call about the citizen",
            )
            .at("$.contact"),
        );
    }
    if fhir_core::validation::has_errors(&issues) {
        return Err(FhirError::new(422, issues));
    }
    Ok((note, issues))
}

/// Marks the discharge summary to be stored with the note's warnings (`check_note`), one
/// `discharge-note-warning` extension each, holding the note location the warning is about: what
/// the `dischargeNotesWithWarnings` KPI counts (docs/kpis.md). The message sent keeps its own
/// Composition unmarked.
pub fn mark_warnings(composition: &mut Value, warnings: &[Issue]) {
    let marks: Vec<Value> = warnings
        .iter()
        .filter(|i| i.severity == fhir_core::fhir::outcome::Severity::Warning)
        .map(|i| {
            let at = i
                .expression
                .clone()
                .unwrap_or_else(|| i.diagnostics.clone());
            serde_json::json!({"url": vocab::ext::NOTE_WARNING, "valueString": at})
        })
        .collect();
    if let (false, Some(o)) = (marks.is_empty(), composition.as_object_mut()) {
        o.insert("extension".into(), Value::Array(marks));
    }
}

/// The stored resources of the note's care record; 422 when the record is unknown or a goal
/// outcome names a goal the record does not have.
pub async fn load_record(
    engine: &Engine,
    access: &Access,
    note: &DischargeNote,
) -> Result<message::RecordResources, FhirError> {
    let r = &note.care_record;
    let plan_id = part_id(&r.municipality, &r.record_id, kind::CARE_PLAN, "plan");
    let stored_plan = engine
        .read(access, ResourceType::CARE_PLAN, &plan_id)
        .await
        .map_err(|e| match e.status {
            403 => e,
            _ => FhirError::unprocessable(format!(
                "municipality {} has no care record {}: post the record before its discharge note",
                r.municipality, r.record_id
            ))
            .at("$.careRecord"),
        })?;
    let owner = stored_plan.owner.clone();
    let care_plan = crate::municipal::stored_json(&stored_plan)?;
    let subject = references(&care_plan, "subject")
        .into_iter()
        .next()
        .ok_or_else(|| FhirError::internal("the stored CarePlan has no subject"))?;
    let patient = read_json(engine, access, &subject).await?;
    let mut goals = Vec::new();
    for g in references(&care_plan, "goal") {
        goals.push(read_json(engine, access, &g).await?);
    }
    let stay = match references(&care_plan, "encounter").first() {
        Some(e) => Some(read_json(engine, access, e).await?),
        None => None,
    };
    let parts = vocab::part_system(&r.municipality, &r.record_id);
    let known: Vec<&str> = goals
        .iter()
        .filter_map(|g| part_local_id(g, &parts))
        .collect();
    let unknown: Vec<Issue> = note
        .goal_outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| !known.contains(&o.goal.as_str()))
        .map(|(i, o)| {
            Issue::error(
                "not-found",
                format!(
                    "$.goalOutcomes[{i}].goal: care record {} has no goal {:?}",
                    r.record_id, o.goal
                ),
            )
            .at(format!("$.goalOutcomes[{i}].goal"))
        })
        .collect();
    if !unknown.is_empty() {
        return Err(FhirError::new(422, unknown));
    }
    Ok(message::RecordResources {
        owner,
        patient,
        care_plan,
        goals,
        stay,
    })
}
