//! The discharge-note use case, end to end: a checked note in, an accepted delivery out. The
//! HTTP handler (`api/municipal.rs`) extracts the note and the caller, calls [`send`] and
//! renders what it answers; everything between lives here.
//!
//! 1. Route the note's receiver to a destination (a routing problem is the receiver's: 422 at
//!    `$.receiver`).
//! 2. Load the care record the note belongs to, within the caller's tenancy.
//! 3. Build the discharge message; adapt it for a Swedish region (HL7 Sweden), or make it a
//!    MedCom CareCommunication checked against the MedCom IGs for a MedCom receiver.
//! 4. Store the discharge summary (Composition and Provenance) and queue the message in one
//!    transaction (`Forwarder::submit`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::message::{self, NoteIds};
use super::note::DischargeNote;
use super::{load_record, mark_warnings, sweden};
use crate::config::DestinationKind;
use crate::engine::{Access, Engine, Transaction};
use crate::error::FhirError;
use crate::forward::Forwarder;
use crate::store::JobStatus;
use fhir_core::fhir::outcome::{Issue, Severity};
use fhir_core::fhir::ResourceType;

/// What the use case needs of the gateway.
pub struct Services<'a> {
    pub engine: &'a Engine,
    pub forwarder: &'a Forwarder,
    /// GLN numbers by SOR code, for MedCom addressing (`forwarding.gln`).
    pub gln: &'a BTreeMap<String, String>,
}

/// A note accepted for delivery.
#[derive(Debug)]
pub struct Accepted {
    pub note_id: String,
    pub message_id: String,
    /// The destination id the receiver routed to.
    pub destination: String,
    /// The delivery job's status now.
    pub status: JobStatus,
    /// False when the same note was accepted before: nothing new was written.
    pub created: bool,
    /// The discharge summary, `Composition/{id}`.
    pub composition: String,
    /// The note's warnings (the "no-man's land" checks), as the summary carries them.
    pub warnings: Vec<Issue>,
}

/// Send a checked note (see [`super::check_note`]) for `access`, the caller, whose FHIR base
/// is `base`.
pub async fn send(
    services: &Services<'_>,
    access: &Access,
    base: &str,
    note: DischargeNote,
    warnings: Vec<Issue>,
) -> Result<Accepted, FhirError> {
    let (destination, endpoint) = match services.forwarder.route(&note.receiver.key()).await {
        Ok(r) => r,
        Err(e) if e.status == 422 => return Err(at_receiver(e)),
        // a registry that cannot answer keeps its 502/503 and its own wording
        Err(e) => return Err(e),
    };
    let kind = destination.kind;
    let destination = destination.id.clone();
    // A record outside the caller's tenancy is, for it, no record (422 as for an unknown one).
    let record = load_record(services.engine, access, &note).await?;
    // The receiver is granted what the record's owner holds about the citizen; only the owner
    // (not a client the record was shared with) may send its notes.
    let access = match record.owner.as_deref() {
        Some(owner) => access.clone().owning(owner)?,
        None => access.clone(),
    };
    let ids = NoteIds::for_note(&note);
    let now = fhir_core::fhir::instant(chrono::Utc::now().timestamp_millis());
    let mut built = message::build(&note, &record, &ids, base, &endpoint, &now);
    match kind {
        // A Swedish region: a citizen with a personnummer travels in HL7 Sweden's profiles.
        // (A citizen without one keeps the Danish form: nothing changes.)
        DestinationKind::CosmicLink => {
            sweden::adapt(&mut built.message, base)?;
        }
        DestinationKind::Medcom => {
            built.message = care_communication(services, &note, &record, &ids, &now)?;
        }
        DestinationKind::FhirMessage => {}
    }
    mark_warnings(&mut built.composition, &warnings);
    let mut store = Transaction::new();
    store.put(
        ResourceType::COMPOSITION,
        &ids.composition,
        built.composition,
    );
    store.put(ResourceType::PROVENANCE, &ids.provenance, built.provenance);
    let submitted = services
        .forwarder
        .submit(&access, built.message, Some(store), base)
        .await?;
    Ok(Accepted {
        note_id: note.note_id,
        message_id: submitted.message_id,
        destination,
        status: submitted.status,
        created: submitted.created,
        composition: format!("Composition/{}", ids.composition),
        warnings,
    })
}

/// A routing refusal located at the note's receiver.
fn at_receiver(e: FhirError) -> FhirError {
    let issues = e
        .issues
        .into_iter()
        .map(|i| Issue {
            expression: Some("$.receiver".into()),
            ..i
        })
        .collect();
    FhirError::new(422, issues)
}

/// A MedCom receiver gets a CareCommunication, checked against the MedCom IGs before it is
/// queued: a message of ours that would be invalid is refused here, not by the receiver.
fn care_communication(
    services: &Services<'_>,
    note: &DischargeNote,
    record: &message::RecordResources,
    ids: &NoteIds,
    now: &str,
) -> Result<Value, FhirError> {
    use crate::medcom::care_communication::{build, PROFILE};
    let gln = |sor: &str| services.gln.get(sor).cloned();
    let cc = build(note, record, ids, now, &gln).map_err(|issues| FhirError::new(422, issues))?;
    let issues = services
        .engine
        .validator()?
        .validate(&cc, &[PROFILE.to_string()]);
    if !fhir_core::validation::has_errors(&issues) {
        return Ok(cc);
    }
    let errors = issues
        .into_iter()
        .filter(|i| i.severity <= Severity::Error)
        .map(|mut i| {
            i.diagnostics = format!(
                "the MedCom CareCommunication made from this note would be invalid: {}",
                i.diagnostics
            );
            i
        })
        .collect();
    Err(FhirError::new(422, errors))
}
