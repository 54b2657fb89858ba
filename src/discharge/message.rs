//! Discharge note → FHIR message Bundle: MessageHeader, the discharge-summary Composition (course
//! summary, functional status, goals and outcomes, follow-up plan, contacts), the Patient,
//! CarePlan, Goals (with the outcomes the note states), the stay Encounter and a Provenance.
//! Pure: the stored resources come in, the message goes out.

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::note::DischargeNote;
use crate::municipal::from_fhir::part_local_id;
use crate::municipal::vocab;
use fhir_core::fhirpath::escape_html;

pub const MESSAGE_PROFILE: &str =
    "http://sektorbro.dk/fhir/StructureDefinition/sektorbro-discharge-message";
pub const SUMMARY_PROFILE: &str =
    "http://sektorbro.dk/fhir/StructureDefinition/sektorbro-discharge-summary";
pub const EVENT_SYSTEM: &str = "http://sektorbro.dk/fhir/CodeSystem/message-event";
pub const SECTION_SYSTEM: &str = "http://sektorbro.dk/fhir/CodeSystem/discharge-section";

/// The stored resources of the care record the note belongs to.
pub struct RecordResources {
    /// The organization that owns the record's resources (tenancy).
    pub owner: Option<String>,
    pub patient: Value,
    pub care_plan: Value,
    pub goals: Vec<Value>,
    pub stay: Option<Value>,
}

/// Ids decided for one note. The message id depends on the note's content, so posting the same
/// note again yields the same message (delivered once), and a corrected note a new one; the
/// Composition keeps one id per note and gets a new version.
pub struct NoteIds {
    pub message: String,
    pub composition: String,
    pub provenance: String,
}

impl NoteIds {
    pub fn for_note(note: &DischargeNote) -> NoteIds {
        let name = |kind: &str| {
            let n = format!(
                "{}/discharge-note/{}/{}/{kind}",
                vocab::BASE,
                note.care_record.municipality,
                note.note_id
            );
            Uuid::new_v5(&Uuid::NAMESPACE_URL, n.as_bytes()).to_string()
        };
        let content = serde_json::to_string(note).unwrap_or_default();
        NoteIds {
            message: Uuid::new_v5(
                &Uuid::NAMESPACE_URL,
                format!("{}#{content}", name("message")).as_bytes(),
            )
            .to_string(),
            composition: name("composition"),
            provenance: name("provenance"),
        }
    }
}

fn narrative(paragraphs: &[String]) -> Value {
    let body: String = paragraphs
        .iter()
        .map(|p| format!("<p>{}</p>", escape_html(p)))
        .collect();
    json!({
        "status": "generated",
        "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{body}</div>"),
    })
}

fn section(code: &str, title: &str, lines: Vec<String>, entries: Vec<Value>) -> Value {
    let mut s = json!({
        "title": title,
        "code": {"coding": [{"system": SECTION_SYSTEM, "code": code}]},
        "text": narrative(&lines),
    });
    if !entries.is_empty() {
        s["entry"] = Value::Array(entries);
    }
    s
}

fn reference_of(r: &Value) -> String {
    format!(
        "{}/{}",
        r.get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        r.get("id").and_then(Value::as_str).unwrap_or_default()
    )
}

/// The message Bundle, and the Composition and Provenance to store with it.
pub struct Built {
    pub message: Value,
    pub composition: Value,
    pub provenance: Value,
}

/// Build the message. `base` is the gateway's FHIR base (full URLs of stored resources),
/// `endpoint` the destination's message endpoint, `now` an instant.
pub fn build(
    note: &DischargeNote,
    rec: &RecordResources,
    ids: &NoteIds,
    base: &str,
    endpoint: &str,
    now: &str,
) -> Built {
    let parts = vocab::part_system(&note.care_record.municipality, &note.care_record.record_id);
    let author = rec.care_plan.get("author").cloned().unwrap_or(Value::Null);
    let patient_ref = reference_of(&rec.patient);
    let plan_ref = reference_of(&rec.care_plan);

    // Goals carry the outcomes the note states.
    let goals: Vec<Value> = rec
        .goals
        .iter()
        .map(|g| {
            let mut g = g.clone();
            let local = part_local_id(&g, &parts).map(String::from);
            if let Some(o) = note
                .goal_outcomes
                .iter()
                .find(|o| Some(o.goal.as_str()) == local.as_deref())
            {
                g["achievementStatus"] = json!({"coding": [{
                    "system": vocab::GOAL_ACHIEVEMENT, "code": o.achievement}]});
                if let Some(n) = &o.note {
                    g["note"] = json!([{"text": n, "time": now}]);
                }
            }
            g
        })
        .collect();

    let outcome_lines: Vec<String> = goals
        .iter()
        .map(|g| {
            let desc = g
                .pointer("/description/text")
                .and_then(Value::as_str)
                .unwrap_or("");
            let ach = g
                .pointer("/achievementStatus/coding/0/code")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            let note = g
                .pointer("/note/0/text")
                .and_then(Value::as_str)
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            format!("{desc}: {ach}{note}")
        })
        .collect();
    let follow_lines: Vec<String> = if note.follow_up.is_empty() {
        vec!["No follow-up was stated.".into()]
    } else {
        note.follow_up
            .iter()
            .map(|f| f.line("NO RESPONSIBLE NAMED", "by"))
            .collect()
    };
    let contact_lines = match &note.contact {
        Some(c) => vec![[Some(c.name.clone()), c.role.clone(), c.phone.clone()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ")],
        None => vec!["No contact person was stated.".into()],
    };
    let mut course_lines = vec![note.summary.clone()];
    course_lines.push(format!(
        "Ready for discharge: {}{}. Destination: {}.",
        note.ready_for_discharge_at,
        note.discharged_at
            .as_ref()
            .map(|d| format!("; discharged {d}"))
            .unwrap_or_default(),
        note.destination
    ));

    let mut composition = json!({
        "resourceType": "Composition",
        "id": ids.composition,
        "meta": {"profile": [SUMMARY_PROFILE]},
        "identifier": {"system": vocab::note_system(&note.care_record.municipality), "value": note.note_id},
        "status": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5", "display": "Discharge summary"}]},
        "subject": {"reference": patient_ref},
        "date": now,
        "author": [author.clone()],
        "title": "Discharge summary",
        "section": [
            section("course-summary", "Course summary", course_lines, vec![json!({"reference": plan_ref})]),
            section("functional-status", "Functional status", vec![note.functional_status.clone()], vec![]),
            section("goals-outcomes", "Goals and outcomes",
                if outcome_lines.is_empty() { vec!["The course had no goals.".into()] } else { outcome_lines },
                goals.iter().map(|g| json!({"reference": reference_of(g)})).collect()),
            section("follow-up", "Follow-up plan", follow_lines, vec![]),
            section("contacts", "Contacts", contact_lines, vec![]),
        ],
    });
    if let Some(stay) = &rec.stay {
        composition["encounter"] = json!({"reference": reference_of(stay)});
    }
    let provenance = json!({
        "resourceType": "Provenance",
        "id": ids.provenance,
        "target": [{"reference": format!("Composition/{}", ids.composition)}],
        "recorded": now,
        "agent": [{
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}]},
            "who": author,
        }],
    });
    let mut destination = json!({
        "endpoint": endpoint,
        "receiver": {"identifier": {"system": note.receiver.system, "value": note.receiver.value}},
    });
    if let Some(d) = destination.get_mut("receiver") {
        d["display"] = json!(note.receiver.key());
    }
    let header = json!({
        "resourceType": "MessageHeader",
        "id": ids.message,
        "eventCoding": {"system": EVENT_SYSTEM, "code": "discharge-summary"},
        "destination": [destination],
        "sender": rec.care_plan.get("author").cloned().unwrap_or(Value::Null),
        "source": {"name": "Sektorbro", "endpoint": base},
        "focus": [{"reference": format!("Composition/{}", ids.composition)}],
    });
    let entry = |r: &Value| {
        let mut e = Map::new();
        e.insert(
            "fullUrl".into(),
            json!(format!("{base}/{}", reference_of(r))),
        );
        e.insert("resource".into(), r.clone());
        Value::Object(e)
    };
    let mut entries = vec![
        json!({"fullUrl": format!("urn:uuid:{}", ids.message), "resource": header}),
        entry(&composition),
        entry(&rec.patient),
        entry(&rec.care_plan),
    ];
    entries.extend(goals.iter().map(entry));
    if let Some(stay) = &rec.stay {
        entries.push(entry(stay));
    }
    entries.push(entry(&provenance));
    let message = json!({
        "resourceType": "Bundle",
        "id": ids.message,
        "meta": {"profile": [MESSAGE_PROFILE]},
        "type": "message",
        "timestamp": now,
        "entry": entries,
    });
    Built {
        message,
        composition,
        provenance,
    }
}
