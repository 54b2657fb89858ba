//! Discharge messages for Swedish receivers (Cosmic Link regions): when the citizen has a Swedish
//! personnummer, the message speaks HL7 Sweden's base profiles (hl7se.fhir.base 1.1.0): the
//! Patient claims `SEBasePatient`, and the receiving and sending organizations travel as
//! Organizations claiming `SEBaseOrganization` (the receiver by its HSA-id). Pure.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::municipal::vocab;

pub const PERSONNUMMER: &str = "http://electronichealth.se/identifier/personnummer";
pub const HSA_ID: &str = "urn:oid:1.2.752.29.4.19";
pub const SE_PATIENT: &str = "http://hl7.se/fhir/ig/base/StructureDefinition/SEBasePatient";
pub const SE_ORGANIZATION: &str =
    "http://hl7.se/fhir/ig/base/StructureDefinition/SEBaseOrganization";

fn has_personnummer(patient: &Value) -> bool {
    patient
        .get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|i| i.get("system").and_then(Value::as_str) == Some(PERSONNUMMER))
}

fn claim(resource: &mut Value, profile: &str) {
    let profiles = &mut resource["meta"]["profile"];
    if !profiles.is_array() {
        *profiles = json!([]);
    }
    if let Some(list) = profiles.as_array_mut() {
        if !list.iter().any(|p| p == profile) {
            list.push(json!(profile));
        }
    }
}

/// Adapt `message` (a discharge message built by `message::build`, entries under `base`) for a
/// Swedish receiver. Returns whether anything changed: nothing does unless the citizen has a
/// personnummer.
pub fn adapt(message: &mut Value, base: &str) -> bool {
    let Some(entries) = message.get_mut("entry").and_then(Value::as_array_mut) else {
        return false;
    };
    let Some(patient) = entries
        .iter_mut()
        .map(|e| &mut e["resource"])
        .find(|r| r["resourceType"] == "Patient" && has_personnummer(r))
    else {
        return false;
    };
    claim(patient, SE_PATIENT);
    // SEBasePatient allows one name: the official (first) one.
    if let Some(names) = patient.get_mut("name").and_then(Value::as_array_mut) {
        names.truncate(1);
    }
    let name = |parts: &[&str]| {
        Uuid::new_v5(
            &Uuid::NAMESPACE_URL,
            format!("{}/se-organization/{}", vocab::BASE, parts.join("|")).as_bytes(),
        )
        .to_string()
    };
    let mut organizations = Vec::new();
    let header = &mut entries[0]["resource"];
    // The receiver: an Organization with its identifier (the HSA-id a Swedish receiver has).
    if let Some(id) = header
        .pointer("/destination/0/receiver/identifier")
        .cloned()
    {
        let system = id["system"].as_str().unwrap_or_default().to_string();
        let value = id["value"].as_str().unwrap_or_default().to_string();
        let org_id = name(&[&system, &value]);
        let display = header
            .pointer("/destination/0/receiver/display")
            .cloned()
            .unwrap_or_else(|| json!(format!("{system}|{value}")));
        header["destination"][0]["receiver"]["reference"] = json!(format!("Organization/{org_id}"));
        organizations.push(json!({
            "fullUrl": format!("{base}/Organization/{org_id}"),
            "resource": {
                "resourceType": "Organization", "id": org_id,
                "meta": {"profile": [SE_ORGANIZATION]},
                "identifier": [{"system": system, "value": value}],
                "name": display,
            }
        }));
    }
    // The sender: the municipality, by its SOR code, as the header already refers to it.
    let sender = header.get("sender").cloned().unwrap_or(Value::Null);
    if let (Some(reference), Some(value)) = (
        sender.get("reference").and_then(Value::as_str),
        sender.pointer("/identifier/value").and_then(Value::as_str),
    ) {
        if let Some(id) = reference.strip_prefix("Organization/") {
            let mut org = json!({
                "resourceType": "Organization", "id": id,
                "meta": {"profile": [SE_ORGANIZATION]},
                "identifier": [{"system": vocab::SOR, "value": value}],
            });
            if let Some(d) = sender.get("display") {
                org["name"] = d.clone();
            }
            organizations.push(json!({"fullUrl": format!("{base}/{reference}"), "resource": org}));
        }
    }
    entries.extend(organizations);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(identifier: Value) -> Value {
        json!({"resourceType": "Bundle", "type": "message", "entry": [
            {"fullUrl": "urn:uuid:h", "resource": {"resourceType": "MessageHeader",
                "destination": [{"endpoint": "x", "receiver": {"identifier": {"system": HSA_ID, "value": "SE2321000032-1003"}, "display": "Region Skåne"}}],
                "sender": {"reference": "Organization/m1", "identifier": {"system": vocab::SOR, "value": "383011000016003"}, "display": "Kolding Kommune"}}},
            {"fullUrl": "https://gw/fhir/Patient/p", "resource": {"resourceType": "Patient", "id": "p",
                "meta": {"profile": ["http://hl7.dk/fhir/core/StructureDefinition/dk-core-patient"]},
                "identifier": identifier, "name": [{"family": "A"}, {"family": "B"}]}}]})
    }

    #[test]
    fn a_citizen_with_a_personnummer_gets_swedish_profiles_and_organizations() {
        let mut m = message(json!([{"system": PERSONNUMMER, "value": "194202022386"}]));
        assert!(adapt(&mut m, "https://gw/fhir"));
        let p = &m["entry"][1]["resource"];
        assert_eq!(p["meta"]["profile"][1], SE_PATIENT);
        assert_eq!(p["name"].as_array().map(Vec::len), Some(1));
        let orgs: Vec<&Value> = m["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["resource"]["resourceType"] == "Organization")
            .collect();
        assert_eq!(orgs.len(), 2);
        assert_eq!(orgs[0]["resource"]["identifier"][0]["system"], HSA_ID);
        assert_eq!(orgs[1]["fullUrl"], "https://gw/fhir/Organization/m1");
    }

    #[test]
    fn a_danish_citizen_is_left_as_is() {
        let mut m = message(json!([{"system": vocab::CPR, "value": "0101011234"}]));
        let before = m.clone();
        assert!(!adapt(&mut m, "https://gw/fhir"));
        assert_eq!(m, before);
    }
}
