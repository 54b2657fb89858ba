//! MedCom, the Danish national messaging standards (issue #21), in and out.
//!
//! In: `POST /fhir/$process-message` hands a Bundle whose MessageHeader event is coded in
//! MedCom's message-events CodeSystem to [`receive`]. A HospitalNotification (admission, leave,
//! discharge, death, and their cancellations and revisions, inpatient and emergency) is validated
//! against `medcom-hospitalNotification-message` (HospitalNotification 3.0.2 with the dependency
//! versions it declares), stored as a hospital event of its citizen (idempotent per sender and
//! `Bundle.id`) and queued in the durable outbox for the destination serving the receiving
//! organization's SOR code, in one database transaction; the answer is a MedCom acknowledgement
//! (`ok`, `fatal-error` with an OperationOutcome, `transient-error`).
//!
//! - `notification.rs`: what the message says (envelope, event); pure.
//! - `ack.rs`: the acknowledgement Bundle; pure.
//!
//! Out: `care_communication.rs` builds a MedCom CareCommunication from a discharge note for
//! destinations of `kind = "medcom"` (`api/municipal.rs` validates it and submits it); pure.
//!
//! This room holds no SQL and serves no HTTP: it uses the store's traits and the forwarder.

pub mod ack;
pub mod care_communication;
pub mod notification;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::engine::Access;
use crate::error::FhirError;
use crate::forward::Forwarder;
use crate::store::{HospitalEvent, Storage};
use ack::{Code, Problem};
use fhir_core::fhir::outcome::Issue;
use fhir_core::validation::{has_errors, Validator};

/// MedCom's message-events CodeSystem (`MessageHeader.eventCoding.system`).
pub const EVENT_CODES: &str =
    "http://medcomfhir.dk/ig/terminology/CodeSystem/medcom-messaging-eventCodes";
/// MedCom's activity codes (`Provenance.activity`: what a message does).
pub const ACTIVITY_CODES: &str =
    "http://medcomfhir.dk/ig/terminology/CodeSystem/medcom-messaging-activityCodes";
/// The HospitalNotification message profile (Bundle), HospitalNotification 3.0.2.
pub const HOSPITAL_NOTIFICATION: &str =
    "http://medcomfhir.dk/ig/hospitalnotification/StructureDefinition/medcom-hospitalNotification-message";
pub const SOR: &str = "urn:oid:1.2.208.176.1.1";
pub const CPR: &str = "urn:oid:1.2.208.176.1.2";
/// GS1 Global Location Number (EAN location number), as MedCom messaging 2.x writes it.
pub const GLN: &str = "https://www.gs1.org/gln";

/// The key hospital events are stored under for a citizen: a hash of the person identifier
/// (`system|value`), so no CPR number lies in plain text in the table's key.
pub fn citizen_key(person: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"sektorbro hospital events v1\n");
    h.update(person.as_bytes());
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The answer to a MedCom message: an acknowledgement Bundle and the HTTP status it goes with.
#[derive(Debug, Clone)]
pub struct Acknowledged {
    pub code: Code,
    pub status: u16,
    pub bundle: Value,
    /// The outbox message id and destination, when the message was queued (now or before).
    pub destination: Option<String>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Receive a MedCom message. `Err` only when no acknowledgement can be addressed (the message
/// names no sender or receiver Organization in it) or the caller may not submit messages;
/// everything else is answered with an acknowledgement.
pub async fn receive(
    forwarder: &Forwarder,
    store: &dyn Storage,
    validator: &Validator,
    access: &Access,
    bundle: &Value,
) -> Result<Acknowledged, FhirError> {
    access.permit("Bundle", crate::auth::Permission::Create)?;
    let env = notification::envelope(bundle).map_err(|issues| FhirError::new(422, issues))?;
    let answer = |code: Code, problems: Vec<Problem>, destination: Option<String>| Acknowledged {
        code,
        status: code.http_status(),
        bundle: ack::acknowledgement(&env, code, &problems, &now()),
        destination,
    };
    if env.event_code != "hospital-notification-message" {
        return Ok(answer(
            Code::FatalError,
            vec![Problem {
                issue: Issue::error(
                    "not-supported",
                    format!(
                        "the gateway receives MedCom HospitalNotification messages only, not {}",
                        env.event_code
                    ),
                )
                .at("Bundle.entry[0].resource.eventCoding"),
                medcom_code: Some("MSG_RECEIVER_UNABLE_TO_RECEIVE_MSG_TYPE"),
            }],
            None,
        ));
    }
    let issues = validator.validate(bundle, &[HOSPITAL_NOTIFICATION.to_string()]);
    if has_errors(&issues) {
        let errors = issues
            .into_iter()
            .filter(|i| i.severity <= fhir_core::fhir::outcome::Severity::Error)
            .map(Problem::from)
            .collect();
        return Ok(answer(Code::FatalError, errors, None));
    }
    let event = match notification::event(bundle, &env) {
        Ok(e) => e,
        Err(issues) => {
            return Ok(answer(
                Code::FatalError,
                issues.into_iter().map(Problem::from).collect(),
                None,
            ))
        }
    };
    let sender = format!("{SOR}|{}", env.sender.sor.clone().unwrap_or_default());
    match store.hospital_event(&sender, &env.message_id).await {
        Ok(Some(_)) => {
            let job = store
                .outbox_job(&env.message_id, access.owner())
                .await
                .ok()
                .flatten();
            return Ok(answer(Code::Ok, Vec::new(), job.map(|j| j.destination)));
        }
        Ok(None) => {}
        Err(e) => return Ok(transient(answer, e.to_string())),
    }
    let row = HospitalEvent {
        sender,
        message_id: env.message_id.clone(),
        citizen: citizen_key(&event.citizen),
        event: event.activity,
        event_ms: event.time_ms,
        event_time: event.time,
        hospital_sor: event.hospital_sor,
        hospital: event.hospital,
        encounter: event.encounter,
        refers_to: event.refers_to,
        header_id: env.header_id.clone(),
        received_ms: chrono::Utc::now().timestamp_millis(),
    };
    match forwarder.submit_event(access, bundle, &row).await {
        Ok(done) => Ok(answer(Code::Ok, Vec::new(), Some(done.destination))),
        Err(e) if e.status >= 500 => Ok(transient(
            answer,
            e.issues
                .first()
                .map(|i| i.diagnostics.clone())
                .unwrap_or_default(),
        )),
        Err(e) if e.status == 403 => Err(e),
        Err(e) => {
            // Routing: nobody serves the receiver.
            let unknown_receiver = e.status == 422;
            Ok(answer(
                Code::FatalError,
                e.issues
                    .into_iter()
                    .map(|issue| Problem {
                        issue,
                        medcom_code: unknown_receiver.then_some("MSG_Receiver_Identifier_UNKNOWN"),
                    })
                    .collect(),
                None,
            ))
        }
    }
}

fn transient(
    answer: impl Fn(Code, Vec<Problem>, Option<String>) -> Acknowledged,
    why: String,
) -> Acknowledged {
    answer(
        Code::TransientError,
        vec![Problem::from(Issue::error(
            "transient",
            format!("the message could not be stored now ({why}); send it again later"),
        ))],
        None,
    )
}
