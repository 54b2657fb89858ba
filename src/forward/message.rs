//! What forwarding needs to know about a FHIR message Bundle: its id, its receiver (for routing)
//! and its ordering key (the citizen), read without trusting anything in it. Pure functions.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::FhirError;
use fhir_core::fhir::is_valid_id;
use fhir_core::fhir::outcome::Issue;

/// Identifier systems preferred as "the citizen" when a Patient carries several identifiers:
/// Danish CPR, Swedish personnummer and samordningsnummer.
/// The Danish health-care organization register (SOR), preferred among an Organization's
/// identifiers for routing.
const SOR: &str = "urn:oid:1.2.208.176.1.1";

const PERSON_SYSTEMS: &[&str] = &[
    "urn:oid:1.2.208.176.1.2",
    "http://electronichealth.se/identifier/personnummer",
    "http://electronichealth.se/identifier/samordningsnummer",
];

/// The parts of a message Bundle forwarding acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFacts {
    /// `Bundle.id`, the stable message id (also the `Idempotency-Key`).
    pub message_id: String,
    /// `MessageHeader.destination[0].receiver.identifier` as `system|value`.
    pub receiver: String,
    /// The citizen: the Patient's person identifier `system|value`, else another identifier,
    /// else its fullUrl; `None` if the Bundle has no Patient.
    pub citizen: Option<String>,
    /// The Patient's `id` as the sender stores it (what a tenancy grant names), if it has one.
    pub patient_id: Option<String>,
}

/// Read the facts of a message Bundle; every problem found, with its location (422).
pub fn facts(bundle: &Value) -> Result<MessageFacts, FhirError> {
    let mut issues = Vec::new();
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(FhirError::bad_request("a FHIR message is a Bundle").at("resourceType"));
    }
    if bundle.get("type").and_then(Value::as_str) != Some("message") {
        issues.push(
            Issue::error("processing", "a FHIR message is a Bundle of type message")
                .at("Bundle.type"),
        );
    }
    let message_id = match bundle.get("id").and_then(Value::as_str) {
        Some(id) if is_valid_id(id) => id.to_string(),
        _ => {
            issues.push(
                Issue::error(
                    "required",
                    "a message Bundle needs an id (the stable message id, e.g. a UUID)",
                )
                .at("Bundle.id"),
            );
            String::new()
        }
    };
    let entries = bundle
        .get("entry")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let header = entries.first().and_then(|e| e.get("resource"));
    let receiver = if header
        .and_then(|h| h.get("resourceType"))
        .and_then(Value::as_str)
        != Some("MessageHeader")
    {
        issues.push(
            Issue::error(
                "processing",
                "the first entry of a message Bundle must be its MessageHeader",
            )
            .at("Bundle.entry[0].resource"),
        );
        String::new()
    } else {
        // The receiver by identifier, or (as MedCom messages do) by a reference to an
        // Organization in the message, identified by its SOR code (else its first identifier).
        let identifier = header
            .and_then(|h| h.pointer("/destination/0/receiver/identifier"))
            .cloned()
            .or_else(|| {
                let r = header?
                    .pointer("/destination/0/receiver/reference")?
                    .as_str()?;
                let org = referenced(entries, r)?;
                if org.get("resourceType").and_then(Value::as_str) != Some("Organization") {
                    return None;
                }
                let ids = org.get("identifier")?.as_array()?;
                ids.iter()
                    .find(|i| i.get("system").and_then(Value::as_str) == Some(SOR))
                    .or(ids.first())
                    .cloned()
            })
            .unwrap_or(Value::Null);
        match (
            identifier.get("system").and_then(Value::as_str),
            identifier.get("value").and_then(Value::as_str),
        ) {
            (Some(s), Some(v)) if !s.is_empty() && !v.is_empty() => format!("{s}|{v}"),
            _ => {
                issues.push(
                    Issue::error(
                        "required",
                        "the receiver is routed by MessageHeader.destination[0].receiver.identifier (system and value), or by the identifier of the Organization its reference points at in the message",
                    )
                    .at("Bundle.entry[0].resource.destination[0].receiver.identifier"),
                );
                String::new()
            }
        }
    };
    if !issues.is_empty() {
        return Err(FhirError::new(422, issues));
    }
    // The first Patient entry is the citizen the message is about.
    let patient = entries
        .iter()
        .find(|e| e.pointer("/resource/resourceType").and_then(Value::as_str) == Some("Patient"));
    Ok(MessageFacts {
        message_id,
        receiver,
        citizen: patient.and_then(citizen),
        patient_id: patient
            .and_then(|e| e.pointer("/resource/id"))
            .and_then(Value::as_str)
            .filter(|id| is_valid_id(id))
            .map(str::to_string),
    })
}

/// The resource an entry of the message is: a reference by fullUrl, or a relative `Type/id`.
fn referenced<'a>(entries: &'a [Value], reference: &str) -> Option<&'a Value> {
    let relative = reference
        .split_once('/')
        .filter(|_| !reference.contains(':'));
    entries
        .iter()
        .find(|e| {
            e.get("fullUrl").and_then(Value::as_str) == Some(reference)
                || relative.is_some_and(|(t, id)| {
                    e.pointer("/resource/resourceType").and_then(Value::as_str) == Some(t)
                        && e.pointer("/resource/id").and_then(Value::as_str) == Some(id)
                })
        })
        .and_then(|e| e.get("resource"))
}

fn citizen(entry: &Value) -> Option<String> {
    let identifiers: Vec<(&str, &str)> = entry
        .pointer("/resource/identifier")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(|i| {
                    Some((
                        i.get("system").and_then(Value::as_str)?,
                        i.get("value").and_then(Value::as_str)?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let chosen = identifiers
        .iter()
        .find(|(s, _)| PERSON_SYSTEMS.contains(s))
        .or(identifiers.first());
    if let Some((s, v)) = chosen {
        return Some(format!("{s}|{v}"));
    }
    entry
        .get("fullUrl")
        .and_then(Value::as_str)
        .map(|u| format!("fullUrl {u}"))
}

/// The ordering key stored in the outbox: a hash of destination and citizen, so that no
/// person identifier lies in plain text in the table's key columns or in logs. Messages without
/// a Patient get their own key (no order to keep).
pub fn ordering_key(destination: &str, facts: &MessageFacts) -> String {
    let mut h = Sha256::new();
    h.update(b"sektorbro outbox ordering v1\n");
    h.update(destination.as_bytes());
    h.update(b"\n");
    match &facts.citizen {
        Some(c) => h.update(c.as_bytes()),
        None => {
            h.update(b"message ");
            h.update(facts.message_id.as_bytes());
        }
    }
    let digest = h.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(patient: Value) -> Value {
        json!({"resourceType": "Bundle", "id": "m1", "type": "message", "entry": [
            {"fullUrl": "urn:uuid:h", "resource": {"resourceType": "MessageHeader",
                "destination": [{"endpoint": "x", "receiver": {"identifier": {"system": "urn:oid:1.2.208.176.1.1", "value": "123"}}}]}},
            {"fullUrl": "urn:uuid:p", "resource": patient},
        ]})
    }

    #[test]
    fn the_person_identifier_is_the_citizen_and_is_hashed() {
        let m = message(json!({"resourceType": "Patient", "identifier": [
            {"system": "urn:other", "value": "a"},
            {"system": "urn:oid:1.2.208.176.1.2", "value": "0101011234"}]}));
        let f = facts(&m).expect("facts");
        assert_eq!(f.message_id, "m1");
        assert_eq!(f.receiver, "urn:oid:1.2.208.176.1.1|123");
        assert_eq!(
            f.citizen.as_deref(),
            Some("urn:oid:1.2.208.176.1.2|0101011234")
        );
        let key = ordering_key("d", &f);
        assert_eq!(key.len(), 32);
        assert!(!key.contains("0101011234"));
        assert_ne!(key, ordering_key("other", &f));
    }

    #[test]
    fn a_receiver_given_by_reference_is_routed_by_the_organizations_sor_code() {
        let m = json!({"resourceType": "Bundle", "id": "m1", "type": "message", "entry": [
            {"fullUrl": "https://x.example/MessageHeader/h", "resource": {"resourceType": "MessageHeader", "id": "h",
                "destination": [{"endpoint": "x", "receiver": {"reference": "Organization/o1"}}]}},
            {"fullUrl": "https://x.example/Organization/o1", "resource": {"resourceType": "Organization", "id": "o1",
                "identifier": [{"system": "https://www.gs1.org/gln", "value": "5790001348120"},
                    {"system": "urn:oid:1.2.208.176.1.1", "value": "953741000016009"}]}}]});
        let f = facts(&m).expect("facts");
        assert_eq!(f.receiver, "urn:oid:1.2.208.176.1.1|953741000016009");
        let mut dangling = m.clone();
        dangling["entry"][0]["resource"]["destination"][0]["receiver"]["reference"] =
            json!("Organization/elsewhere");
        assert_eq!(facts(&dangling).expect_err("no receiver").status, 422);
    }

    #[test]
    fn without_identifiers_the_patient_full_url_is_the_citizen() {
        let f = facts(&message(json!({"resourceType": "Patient"}))).expect("facts");
        assert_eq!(f.citizen.as_deref(), Some("fullUrl urn:uuid:p"));
    }

    #[test]
    fn every_problem_is_reported_with_its_location() {
        let e = facts(
            &json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "MessageHeader"}}]}),
        )
        .expect_err("invalid");
        assert_eq!(e.status, 422);
        let at: Vec<_> = e
            .issues
            .iter()
            .filter_map(|i| i.expression.clone())
            .collect();
        assert_eq!(
            at,
            [
                "Bundle.type",
                "Bundle.id",
                "Bundle.entry[0].resource.destination[0].receiver.identifier"
            ]
        );
    }
}
