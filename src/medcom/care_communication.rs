//! Discharge note → MedCom CareCommunication message (`medcom-careCommunication-message`,
//! CareCommunication 5.0.2), for destinations of `kind = "medcom"`: the MedCom messaging header,
//! a Communication (category `discharge`) whose payloads carry the discharge summary and the
//! follow-up plan, the Patient, the sending municipality and the receiver as Organizations
//! identified by SOR code, the author (the note's contact person) as Practitioner and
//! PractitionerRole, and the Provenance MedCom requires (`new-message`). Pure.

use serde_json::{json, Value};
use uuid::Uuid;

use super::{ACTIVITY_CODES, CPR, EVENT_CODES, SOR};
use crate::discharge::message::{NoteIds, RecordResources};
use crate::discharge::note::DischargeNote;
use fhir_core::fhir::outcome::Issue;

pub const PROFILE: &str =
    "http://medcomfhir.dk/ig/carecommunication/StructureDefinition/medcom-careCommunication-message";
const HEADER_PROFILE: &str = "http://medcomfhir.dk/ig/carecommunication/StructureDefinition/medcom-careCommunication-messageHeader";
const COMMUNICATION_PROFILE: &str = "http://medcomfhir.dk/ig/carecommunication/StructureDefinition/medcom-careCommunication-communication";
const PROVENANCE_PROFILE: &str = "http://medcomfhir.dk/ig/carecommunication/StructureDefinition/medcom-careCommunication-provenance";
const PATIENT_PROFILE: &str =
    "http://medcomfhir.dk/ig/core/StructureDefinition/medcom-core-patient";
const PRACTITIONER_PROFILE: &str =
    "http://medcomfhir.dk/ig/core/StructureDefinition/medcom-core-practitioner";
const ROLE_PROFILE: &str =
    "http://medcomfhir.dk/ig/core/StructureDefinition/medcom-core-practitionerrole";
const ORGANIZATION_PROFILE: &str =
    "http://medcomfhir.dk/ig/messaging/StructureDefinition/medcom-messaging-organization";
const DEFINITION: &str = "http://medcomfhir.dk/ig/messagedefinitions/MessageDefinition/MedComCareCommunicationMessageDefinition|5.0";
const CATEGORIES: &str =
    "http://medcomfhir.dk/ig/terminology/CodeSystem/medcom-careCommunication-categoryCodes";
const CORE_EXT: &str = "http://medcomfhir.dk/ig/core/StructureDefinition";
const DESTINATION_USE: &str =
    "http://medcomfhir.dk/ig/messaging/StructureDefinition/medcom-messaging-destinationUseExtension";
const DESTINATION_USE_CODES: &str =
    "http://medcomfhir.dk/ig/terminology/CodeSystem/medcom-messaging-destinationUse";
/// Where MedCom messages name an organization's endpoint: its SOR entry.
const SOR_ENDPOINT: &str = "https://sor2.sum.dsdn.dk/#id=";
/// The base of the message's full URLs (entries are referred to as `Type/id` within it).
const BASE: &str = "http://sektorbro.dk/fhir/medcom";

/// The sending municipality: SOR code and name (from the care record's CarePlan author).
fn municipality(rec: &RecordResources) -> (String, String) {
    let author = rec.care_plan.get("author").unwrap_or(&Value::Null);
    let sor = author
        .pointer("/identifier/value")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let name = author
        .get("display")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("SOR {sor}"));
    (sor, name)
}

fn id_of(ids: &NoteIds, part: &str) -> String {
    Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!(
            "{}/medcom/{}/{part}",
            super::super::municipal::vocab::BASE,
            ids.message
        )
        .as_bytes(),
    )
    .to_string()
}

fn entry(rtype: &str, resource: Value) -> Value {
    let id = resource["id"].as_str().unwrap_or_default().to_string();
    json!({"fullUrl": format!("{BASE}/{rtype}/{id}"), "resource": resource})
}

/// The Patient for MedCom: CPR and name from the stored Patient, claiming `medcom-core-patient`.
fn patient(rec: &RecordResources, id: &str) -> Value {
    let p = &rec.patient;
    let cpr = p
        .get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|i| i.get("system").and_then(Value::as_str) == Some(CPR))
        .and_then(|i| i.get("value"))
        .cloned()
        .unwrap_or(Value::Null);
    let mut out = json!({
        "resourceType": "Patient",
        "id": id,
        "meta": {"profile": [PATIENT_PROFILE]},
        "identifier": [{"system": CPR, "value": cpr}],
    });
    if let Some(name) = p.pointer("/name/0") {
        let mut n = json!({"use": "official"});
        for k in ["family", "given"] {
            if let Some(v) = name.get(k) {
                n[k] = v.clone();
            }
        }
        out["name"] = json!([n]);
    }
    for k in ["gender", "birthDate"] {
        if let Some(v) = p.get(k) {
            out[k] = v.clone();
        }
    }
    out
}

fn organization(id: &str, system: &str, value: &str, gln: Option<&str>, name: &str) -> Value {
    let mut identifier = Vec::new();
    if let Some(g) = gln {
        identifier.push(json!({"system": super::GLN, "value": g}));
    }
    identifier.push(json!({"system": system, "value": value}));
    json!({
        "resourceType": "Organization",
        "id": id,
        "meta": {"profile": [ORGANIZATION_PROFILE]},
        "identifier": identifier,
        "name": name,
    })
}

/// The note's text parts for the payloads: the discharge summary (course, functional status,
/// goal outcomes) and the follow-up plan.
fn texts(note: &DischargeNote, rec: &RecordResources) -> (String, String) {
    let mut summary = vec![note.summary.clone()];
    summary.push(format!(
        "Klar til udskrivning: {}{}. Udskrives til: {}.",
        note.ready_for_discharge_at,
        note.discharged_at
            .as_ref()
            .map(|d| format!("; udskrevet {d}"))
            .unwrap_or_default(),
        note.destination
    ));
    summary.push(format!("Funktionsniveau: {}", note.functional_status));
    for o in &note.goal_outcomes {
        let desc = rec
            .goals
            .iter()
            .find(|g| {
                g.pointer("/identifier/0/value")
                    .and_then(Value::as_str)
                    .is_some_and(|v| v == o.goal || v.ends_with(&format!("/{}", o.goal)))
            })
            .and_then(|g| g.pointer("/description/text"))
            .and_then(Value::as_str)
            .unwrap_or(&o.goal);
        summary.push(format!(
            "Mål: {desc}: {}{}",
            o.achievement,
            o.note
                .as_ref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        ));
    }
    let follow = if note.follow_up.is_empty() {
        "Opfølgning: ingen opfølgning er angivet.".to_string()
    } else {
        let lines: Vec<String> = note
            .follow_up
            .iter()
            .map(|f| f.line("INGEN ANSVARLIG ANGIVET", "senest"))
            .collect();
        format!("Opfølgningsplan: {}", lines.join("; "))
    };
    (summary.join("\n"), follow)
}

/// Build the CareCommunication for `note`, at `now` (an RFC 3339 instant); `gln` gives the
/// EAN/GLN location number of a SOR code. MedCom requires an author with a name and a phone
/// number for every text (the note's contact person) and a GLN for the sender and the receiver;
/// without them the message cannot be made (422, located in the note).
pub fn build(
    note: &DischargeNote,
    rec: &RecordResources,
    ids: &NoteIds,
    now: &str,
    gln: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, Vec<Issue>> {
    let Some(contact) = &note.contact else {
        return Err(vec![Issue::error(
            "required",
            "a MedCom CareCommunication names its author and the author's phone: the note needs a contact person",
        )
        .at("$.contact")]);
    };
    let Some(phone) = &contact.phone else {
        return Err(vec![Issue::error(
            "required",
            "a MedCom CareCommunication gives the author's phone number: the contact needs a phone",
        )
        .at("$.contact.phone")]);
    };
    let (sor, name) = municipality(rec);
    let sender_gln = gln(&sor);
    let receiver_gln = (note.receiver.system == SOR)
        .then(|| gln(&note.receiver.value))
        .flatten();
    let mut missing = Vec::new();
    if sender_gln.is_none() {
        missing.push(
            Issue::error(
                "required",
                format!("MedCom identifies the sender by SOR code and GLN: no GLN is configured for the municipality's SOR code {sor} ([forwarding.gln])"),
            )
            .at("$.careRecord.municipality"),
        );
    }
    if receiver_gln.is_none() {
        missing.push(
            Issue::error(
                "required",
                format!("MedCom identifies the receiver by SOR code and GLN: no GLN is configured for {} ([forwarding.gln]; the receiver must be a SOR code)", note.receiver.key()),
            )
            .at("$.receiver"),
        );
    }
    if !missing.is_empty() {
        return Err(missing);
    }
    let [header_id, patient_id, communication_id, sender_id, receiver_id, practitioner_id, role_id, provenance_id, text_1, text_2, identifier] =
        [
            "header",
            "patient",
            "communication",
            "sender",
            "receiver",
            "practitioner",
            "role",
            "provenance",
            "payload-summary",
            "payload-follow-up",
            "communication-identifier",
        ]
        .map(|p| id_of(ids, p));
    let (summary, follow) = texts(note, rec);
    let payload = |text: &str, payload_id: &str| {
        json!({
            "extension": [
                {"url": format!("{CORE_EXT}/medcom-core-datetime-extension"), "valueDateTime": now},
                {"url": format!("{CORE_EXT}/medcom-core-identifier-extension"), "valueIdentifier": {
                    "value": format!("urn:uuid:{payload_id}"),
                    "assigner": {"reference": format!("Organization/{sender_id}")}}},
                {"url": format!("{CORE_EXT}/medcom-core-practitioner-extension"),
                    "valueReference": {"reference": format!("PractitionerRole/{role_id}")}},
                {"url": format!("{CORE_EXT}/medcom-core-contact-extension"),
                    "valueContactPoint": {"system": "phone", "value": phone}},
            ],
            "contentString": text,
        })
    };
    let communication = json!({
        "resourceType": "Communication",
        "id": communication_id,
        "meta": {"profile": [COMMUNICATION_PROFILE]},
        "identifier": [{"value": format!("urn:uuid:{identifier}")}],
        "status": "unknown",
        "category": [{"coding": [{"system": CATEGORIES, "code": "discharge"}]}],
        "subject": {"reference": format!("Patient/{patient_id}")},
        "topic": {"text": "Udskrivning fra midlertidig plads"},
        "payload": [payload(&summary, &text_1), payload(&follow, &text_2)],
    });
    let mut names: Vec<&str> = contact.name.split_whitespace().collect();
    let family = names.pop().unwrap_or(&contact.name).to_string();
    let mut person = json!({"use": "official", "family": family});
    if !names.is_empty() {
        person["given"] = json!(names);
    }
    let practitioner = json!({
        "resourceType": "Practitioner",
        "id": practitioner_id,
        "meta": {"profile": [PRACTITIONER_PROFILE]},
        "name": [person],
    });
    let role = json!({
        "resourceType": "PractitionerRole",
        "id": role_id,
        "meta": {"profile": [ROLE_PROFILE]},
        "practitioner": {"reference": format!("Practitioner/{practitioner_id}")},
        "organization": {"reference": format!("Organization/{sender_id}")},
        "code": [{"text": contact.role.clone().unwrap_or_else(|| "Kontaktperson".into())}],
    });
    let header = json!({
        "resourceType": "MessageHeader",
        "id": header_id,
        "meta": {"profile": [HEADER_PROFILE]},
        "eventCoding": {"system": EVENT_CODES, "code": "care-communication-message"},
        "destination": [{
            "extension": [{"url": DESTINATION_USE, "valueCoding": {"system": DESTINATION_USE_CODES, "code": "primary"}}],
            "endpoint": format!("{SOR_ENDPOINT}{}", note.receiver.value),
            "receiver": {"reference": format!("Organization/{receiver_id}")},
        }],
        "sender": {"reference": format!("Organization/{sender_id}")},
        "source": {"endpoint": format!("{SOR_ENDPOINT}{sor}")},
        "focus": [{"reference": format!("Communication/{communication_id}")}],
        "definition": DEFINITION,
    });
    let provenance = json!({
        "resourceType": "Provenance",
        "id": provenance_id,
        "meta": {"profile": [PROVENANCE_PROFILE]},
        "target": [{"reference": format!("MessageHeader/{header_id}")}],
        "occurredDateTime": now,
        "recorded": now,
        "activity": {"coding": [{"system": ACTIVITY_CODES, "code": "new-message"}]},
        "agent": [{"who": {"reference": format!("Organization/{sender_id}")}}],
        "entity": [
            {"role": "source", "what": {"identifier": {"value": format!("urn:uuid:{text_1}")}}},
            {"role": "source", "what": {"identifier": {"value": format!("urn:uuid:{text_2}")}}},
        ],
    });
    Ok(json!({
        "resourceType": "Bundle",
        "id": ids.message,
        "meta": {"profile": [PROFILE]},
        "type": "message",
        "timestamp": now,
        "entry": [
            entry("MessageHeader", header),
            entry("Patient", patient(rec, &patient_id)),
            entry("Communication", communication),
            entry("PractitionerRole", role),
            entry("Practitioner", practitioner),
            entry("Organization", organization(&sender_id, SOR, &sor, sender_gln.as_deref(), &name)),
            entry("Organization", organization(&receiver_id, SOR, &note.receiver.value, receiver_gln.as_deref(), &note.receiver.key())),
            entry("Provenance", provenance),
        ],
    }))
}
