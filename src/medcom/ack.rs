//! MedCom acknowledgements (`medcom-messaging-acknowledgement`, Acknowledgement 2.0.3): the
//! answer to a MedCom message, from its receiver to its sender. Pure: a Bundle built from the
//! message's envelope and the outcome.

use serde_json::{json, Value};

use super::notification::{Envelope, Party};
use super::{ACTIVITY_CODES, EVENT_CODES};
use fhir_core::fhir::outcome::Issue;

pub const PROFILE: &str =
    "http://medcomfhir.dk/ig/acknowledgement/StructureDefinition/medcom-messaging-acknowledgement";
const HEADER_PROFILE: &str = "http://medcomfhir.dk/ig/acknowledgement/StructureDefinition/medcom-messaging-acknowledgementHeader";
const OUTCOME_PROFILE: &str = "http://medcomfhir.dk/ig/acknowledgement/StructureDefinition/medcom-acknowledgement-operationoutcome";
const PROVENANCE_PROFILE: &str =
    "http://medcomfhir.dk/ig/messaging/StructureDefinition/medcom-messaging-provenance";
const DESTINATION_USE: &str =
    "http://medcomfhir.dk/ig/messaging/StructureDefinition/medcom-messaging-destinationUseExtension";
const DESTINATION_USE_CODES: &str =
    "http://medcomfhir.dk/ig/terminology/CodeSystem/medcom-messaging-destinationUse";
/// MedCom's acknowledgement error codes (`OperationOutcome.issue.details`).
pub const ERROR_CODES: &str =
    "http://medcomfhir.dk/ig/terminology/CodeSystem/medcom-acknowledgement-error-codes";

/// `MessageHeader.response.code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Taken: stored and queued for the receiver.
    Ok,
    /// Refused for good (invalid, or nobody to deliver it to): sending it again will not help.
    FatalError,
    /// Not taken now (the database could not store it): send it again later.
    TransientError,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Ok => "ok",
            Code::FatalError => "fatal-error",
            Code::TransientError => "transient-error",
        }
    }

    /// The HTTP status the acknowledgement is answered with.
    pub fn http_status(self) -> u16 {
        match self {
            Code::Ok => 200,
            Code::FatalError => 422,
            Code::TransientError => 503,
        }
    }
}

/// A problem to report in the acknowledgement's OperationOutcome: the issue, and the MedCom error
/// code that names its kind, where one does.
#[derive(Debug, Clone)]
pub struct Problem {
    pub issue: Issue,
    pub medcom_code: Option<&'static str>,
}

impl From<Issue> for Problem {
    fn from(issue: Issue) -> Problem {
        Problem {
            issue,
            medcom_code: None,
        }
    }
}

/// Name-based UUID (v5) of `parts`, so an acknowledgement of the same message with the same
/// answer is the same Bundle (a repeat gets the same acknowledgement ids).
fn uuid_of(parts: &[&str]) -> String {
    const NS: uuid::Uuid = uuid::Uuid::from_u128(0x6f1c_3b52_0d9e_4f2a_9a41_5e7b_c0d8_a113);
    uuid::Uuid::new_v5(&NS, parts.join("\n").as_bytes()).to_string()
}

/// The acknowledgement of the message `env` with `code` (and `problems`, required unless `ok`),
/// sent at `now` (an RFC 3339 instant). The original receiver acknowledges to the original
/// sender; both Organizations are carried as the message had them.
pub fn acknowledgement(env: &Envelope, code: Code, problems: &[Problem], now: &str) -> Value {
    let header_id = uuid_of(&["header", &env.sender.id, &env.message_id, code.as_str()]);
    let provenance_id = uuid_of(&["provenance", &env.sender.id, &env.message_id, code.as_str()]);
    let outcome_id = uuid_of(&["outcome", &env.sender.id, &env.message_id, code.as_str()]);
    // One base for every entry, so relative references resolve inside the Bundle.
    let base = env
        .sender
        .base
        .clone()
        .or_else(|| env.receiver.base.clone());
    let full_url = |rtype: &str, id: &str| match &base {
        Some(b) => format!("{b}/{rtype}/{id}"),
        None => format!("urn:uuid:{id}"),
    };
    let reference = |rtype: &str, id: &str| match &base {
        Some(_) => format!("{rtype}/{id}"),
        None => format!("urn:uuid:{id}"),
    };
    let mut response = json!({"identifier": env.header_id, "code": code.as_str()});
    if code != Code::Ok {
        response["details"] = json!({"reference": reference("OperationOutcome", &outcome_id)});
    }
    let header = json!({
        "resourceType": "MessageHeader",
        "id": header_id,
        "meta": {"profile": [HEADER_PROFILE]},
        "eventCoding": {"system": EVENT_CODES, "code": "acknowledgement-message"},
        "destination": [{
            "extension": [{"url": DESTINATION_USE, "valueCoding": {"system": DESTINATION_USE_CODES, "code": "primary"}}],
            "endpoint": env.source_endpoint,
            "receiver": {"reference": reference("Organization", &env.sender.id)}
        }],
        "sender": {"reference": reference("Organization", &env.receiver.id)},
        "source": {"endpoint": env.destination_endpoint},
        "response": response
    });
    let provenance = json!({
        "resourceType": "Provenance",
        "id": provenance_id,
        "meta": {"profile": [PROVENANCE_PROFILE]},
        "target": [{"reference": reference("MessageHeader", &header_id)}],
        "occurredDateTime": now,
        "recorded": now,
        "activity": {"coding": [{"system": ACTIVITY_CODES, "code": "acknowledgement"}]},
        "agent": [{"who": {"reference": reference("Organization", &env.receiver.id)}}],
        "entity": [{"role": "revision", "what": {"reference": reference("MessageHeader", &env.header_id)}}]
    });
    let org =
        |p: &Party| json!({"fullUrl": full_url("Organization", &p.id), "resource": p.resource});
    let mut entry = vec![
        json!({"fullUrl": full_url("MessageHeader", &header_id), "resource": header}),
        json!({"fullUrl": full_url("Provenance", &provenance_id), "resource": provenance}),
        org(&env.receiver),
    ];
    if env.sender.id != env.receiver.id {
        entry.push(org(&env.sender));
    }
    if code != Code::Ok {
        entry.push(json!({
            "fullUrl": full_url("OperationOutcome", &outcome_id),
            "resource": outcome(&outcome_id, problems),
        }));
    }
    json!({
        "resourceType": "Bundle",
        "id": uuid_of(&["bundle", &env.sender.id, &env.message_id, code.as_str()]),
        "meta": {"profile": [PROFILE]},
        "type": "message",
        "timestamp": now,
        "entry": entry
    })
}

fn outcome(id: &str, problems: &[Problem]) -> Value {
    let issues: Vec<Value> = problems
        .iter()
        .map(|p| {
            let i = &p.issue;
            let mut v = json!({
                "severity": i.severity.as_str(),
                "code": i.code,
                "diagnostics": i.diagnostics,
            });
            if let Some(c) = p.medcom_code {
                v["details"] = json!({"coding": [{"system": ERROR_CODES, "code": c}]});
            }
            if let Some(x) = &i.expression {
                v["expression"] = json!([x]);
            }
            v
        })
        .collect();
    json!({
        "resourceType": "OperationOutcome",
        "id": id,
        "meta": {"profile": [OUTCOME_PROFILE]},
        "issue": issues
    })
}
