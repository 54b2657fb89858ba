//! A MedCom HospitalNotification message read for what the gateway acts on: who sent it to whom
//! (for routing and for the acknowledgement), and what happened to which citizen when (the
//! hospital event). Pure functions over the Bundle JSON; nothing in it is trusted.

use fhir_core::fhir::datetime::full_date_time;
use serde_json::Value;

use super::{ACTIVITY_CODES, EVENT_CODES, SOR};
use fhir_core::fhir::is_valid_id;
use fhir_core::fhir::outcome::Issue;

/// An Organization of the message (sender or receiver), as the acknowledgement needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Party {
    /// The Organization resource as the message carried it.
    pub resource: Value,
    /// Its id in the message (`Organization/{id}`).
    pub id: String,
    /// The base its entry's fullUrl was given relative to (`https://…` without
    /// `/Organization/{id}`), or `None` for a `urn:uuid:` fullUrl.
    pub base: Option<String>,
    /// SOR code (value only), if it has one.
    pub sor: Option<String>,
    pub name: String,
}

/// Who sent the message to whom: enough to answer it with an acknowledgement.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// `Bundle.id`.
    pub message_id: String,
    /// `MessageHeader.eventCoding` (system, code).
    pub event_system: String,
    pub event_code: String,
    /// `MessageHeader.id` (what the acknowledgement's `response.identifier` names).
    pub header_id: String,
    pub sender: Party,
    pub receiver: Party,
    /// `MessageHeader.source.endpoint` (where the acknowledgement goes).
    pub source_endpoint: String,
    /// `MessageHeader.destination[0].endpoint`.
    pub destination_endpoint: String,
}

/// What happened, to whom, when.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The citizen's person identifier, `system|value` (CPR).
    pub citizen: String,
    /// The MedCom activity code of this message (its Provenance targeting its MessageHeader).
    pub activity: String,
    /// `Provenance.occurredDateTime` as sent and in milliseconds since the epoch.
    pub time: String,
    pub time_ms: i64,
    /// The MessageHeader a cancellation or revision refers to (its id).
    pub refers_to: Option<String>,
    /// The Encounter's fullUrl.
    pub encounter: String,
    /// The hospital: the Encounter's service provider, else the sender.
    pub hospital_sor: String,
    pub hospital: String,
}

/// Whether `bundle` is a MedCom message (its first entry a MessageHeader whose event is coded in
/// MedCom's message-events CodeSystem).
pub fn is_medcom(bundle: &Value) -> bool {
    bundle
        .pointer("/entry/0/resource/eventCoding/system")
        .and_then(Value::as_str)
        == Some(EVENT_CODES)
}

fn entries(bundle: &Value) -> &[Value] {
    bundle
        .get("entry")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The entry a reference in the message points at: by fullUrl (absolute or `urn:uuid:`), or a
/// relative `Type/id` by the entries' type and id.
pub fn resolve<'a>(bundle: &'a Value, reference: &str) -> Option<(usize, &'a Value)> {
    let rel = reference.split_once('/');
    entries(bundle).iter().enumerate().find(|(_, e)| {
        let full = e.get("fullUrl").and_then(Value::as_str).unwrap_or("");
        if full == reference {
            return true;
        }
        match rel {
            Some((t, id)) if !reference.contains(':') => {
                e.pointer("/resource/resourceType").and_then(Value::as_str) == Some(t)
                    && e.pointer("/resource/id").and_then(Value::as_str) == Some(id)
            }
            _ => false,
        }
    })
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The identifier value of `system` on a resource.
pub fn identifier<'a>(resource: &'a Value, system: &str) -> Option<&'a str> {
    resource
        .get("identifier")
        .and_then(Value::as_array)?
        .iter()
        .find(|i| i.get("system").and_then(Value::as_str) == Some(system))
        .and_then(|i| i.get("value").and_then(Value::as_str))
}

fn party(
    bundle: &Value,
    reference: Option<&str>,
    at: &str,
    issues: &mut Vec<Issue>,
) -> Option<Party> {
    let Some(reference) = reference else {
        issues.push(
            Issue::error(
                "required",
                "a reference to an Organization of the message is required",
            )
            .at(at),
        );
        return None;
    };
    let Some((i, entry)) = resolve(bundle, reference) else {
        issues.push(
            Issue::error(
                "not-found",
                format!("{reference} is not an entry of the message"),
            )
            .at(at),
        );
        return None;
    };
    let resource = entry.get("resource").cloned().unwrap_or(Value::Null);
    if resource.get("resourceType").and_then(Value::as_str) != Some("Organization") {
        issues.push(
            Issue::error("invalid", format!("{reference} is not an Organization"))
                .at(format!("Bundle.entry[{i}].resource")),
        );
        return None;
    }
    let Some(id) = resource
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| is_valid_id(id))
    else {
        issues.push(
            Issue::error("required", "the Organization needs an id")
                .at(format!("Bundle.entry[{i}].resource.id")),
        );
        return None;
    };
    let full = entry.get("fullUrl").and_then(Value::as_str).unwrap_or("");
    let base = full
        .strip_suffix(&format!("/Organization/{id}"))
        .filter(|b| b.starts_with("http"))
        .map(str::to_string);
    Some(Party {
        id: id.to_string(),
        base,
        sor: identifier(&resource, SOR).map(str::to_string),
        name: str_at(&resource, "/name").unwrap_or("").to_string(),
        resource,
    })
}

/// Read who sent the message to whom; every problem found, located. Without these no
/// acknowledgement can be addressed.
pub fn envelope(bundle: &Value) -> Result<Envelope, Vec<Issue>> {
    let mut issues = Vec::new();
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(vec![Issue::error(
            "structure",
            "a MedCom message is a Bundle",
        )
        .at("resourceType")]);
    }
    let message_id = match bundle.get("id").and_then(Value::as_str) {
        Some(id) if is_valid_id(id) => id.to_string(),
        _ => {
            issues.push(
                Issue::error("required", "a MedCom message needs a Bundle.id").at("Bundle.id"),
            );
            String::new()
        }
    };
    let h = bundle
        .pointer("/entry/0/resource")
        .cloned()
        .unwrap_or(Value::Null);
    if h.get("resourceType").and_then(Value::as_str) != Some("MessageHeader") {
        issues.push(
            Issue::error(
                "structure",
                "the first entry of a message must be its MessageHeader",
            )
            .at("Bundle.entry[0].resource"),
        );
        return Err(issues);
    }
    let at = "Bundle.entry[0].resource";
    let header_id = match h.get("id").and_then(Value::as_str) {
        Some(id) if is_valid_id(id) => id.to_string(),
        _ => {
            issues.push(
                Issue::error("required", "the MessageHeader needs an id").at(format!("{at}.id")),
            );
            String::new()
        }
    };
    let sender = party(
        bundle,
        str_at(&h, "/sender/reference"),
        &format!("{at}.sender"),
        &mut issues,
    );
    let receiver = party(
        bundle,
        str_at(&h, "/destination/0/receiver/reference"),
        &format!("{at}.destination[0].receiver"),
        &mut issues,
    );
    let (Some(sender), Some(receiver)) = (sender, receiver) else {
        return Err(issues);
    };
    if !issues.is_empty() {
        return Err(issues);
    }
    Ok(Envelope {
        message_id,
        event_system: str_at(&h, "/eventCoding/system").unwrap_or("").to_string(),
        event_code: str_at(&h, "/eventCoding/code").unwrap_or("").to_string(),
        header_id,
        sender,
        receiver,
        source_endpoint: str_at(&h, "/source/endpoint").unwrap_or("").to_string(),
        destination_endpoint: str_at(&h, "/destination/0/endpoint")
            .unwrap_or("")
            .to_string(),
    })
}

/// Read the hospital event of a HospitalNotification (after it validated against the profile,
/// which makes most of this certain; what is still missing is reported, located).
pub fn event(bundle: &Value, env: &Envelope) -> Result<Event, Vec<Issue>> {
    let mut issues = Vec::new();
    let h = bundle
        .pointer("/entry/0/resource")
        .cloned()
        .unwrap_or(Value::Null);
    // This message's Provenance: the one whose target is its own MessageHeader.
    let header_full = str_at(bundle, "/entry/0/fullUrl").unwrap_or("");
    let own = format!("MessageHeader/{}", env.header_id);
    let provenance = entries(bundle).iter().enumerate().find(|(_, e)| {
        e.pointer("/resource/resourceType").and_then(Value::as_str) == Some("Provenance")
            && str_at(e, "/resource/target/0/reference")
                .is_some_and(|t| t == own || t == header_full)
    });
    let (mut activity, mut time, mut time_ms, mut refers_to) =
        (String::new(), String::new(), 0, None);
    match provenance {
        None => issues.push(
            Issue::error("required", format!("no Provenance has the message's own MessageHeader ({own}) as target: its activity is the event"))
                .at("Bundle.entry"),
        ),
        Some((i, e)) => {
            let at = format!("Bundle.entry[{i}].resource");
            let p = &e["resource"];
            match (str_at(p, "/activity/coding/0/system"), str_at(p, "/activity/coding/0/code")) {
                (Some(ACTIVITY_CODES), Some(c)) => activity = c.to_string(),
                _ => issues.push(Issue::error("required", format!("the activity is coded in {ACTIVITY_CODES}")).at(format!("{at}.activity"))),
            }
            match str_at(p, "/occurredDateTime").map(|t| (t, full_date_time(t))) {
                Some((t, Some(dt))) => {
                    time = t.to_string();
                    time_ms = dt.timestamp_millis();
                }
                _ => issues.push(Issue::error("required", "the event's time (a dateTime with seconds and time zone) is required").at(format!("{at}.occurredDateTime"))),
            }
            refers_to = str_at(p, "/entity/0/what/reference")
                .map(|r| r.rsplit('/').next().unwrap_or(r).to_string());
        }
    }
    let patient = entries(bundle)
        .iter()
        .find(|e| e.pointer("/resource/resourceType").and_then(Value::as_str) == Some("Patient"));
    let citizen = patient
        .and_then(|p| identifier(&p["resource"], super::CPR))
        .map(|cpr| format!("{}|{cpr}", super::CPR));
    if citizen.is_none() {
        issues.push(
            Issue::error(
                "required",
                "the Patient's CPR number (identifier urn:oid:1.2.208.176.1.2) is required",
            )
            .at("Bundle.entry.resource.ofType(Patient).identifier"),
        );
    }
    let encounter_ref = str_at(&h, "/focus/0/reference");
    let encounter = encounter_ref.and_then(|r| resolve(bundle, r));
    let Some((_, enc)) = encounter else {
        issues.push(
            Issue::error(
                "required",
                "the MessageHeader's focus must be the Encounter in the message",
            )
            .at("Bundle.entry[0].resource.focus[0]"),
        );
        return Err(issues);
    };
    if !issues.is_empty() {
        return Err(issues);
    }
    let provider = str_at(&enc["resource"], "/serviceProvider/reference")
        .and_then(|r| resolve(bundle, r))
        .map(|(_, e)| &e["resource"])
        .filter(|o| identifier(o, SOR).is_some());
    let (hospital_sor, hospital) = match provider {
        Some(o) => (
            identifier(o, SOR).unwrap_or_default().to_string(),
            str_at(o, "/name").unwrap_or("").to_string(),
        ),
        None => (
            env.sender.sor.clone().unwrap_or_default(),
            env.sender.name.clone(),
        ),
    };
    Ok(Event {
        citizen: citizen.unwrap_or_default(),
        activity,
        time,
        time_ms,
        refers_to,
        encounter: str_at(enc, "/fullUrl").unwrap_or_default().to_string(),
        hospital_sor: format!("{SOR}|{hospital_sor}"),
        hospital,
    })
}
