//! Discharge messages for Swedish receivers (Cosmic Link regions): when the citizen has a Swedish
//! personnummer, the message speaks HL7 Sweden's base profiles (hl7se.fhir.base 1.1.0): the
//! Patient claims `SEBasePatient`, and the receiving and sending organizations travel as
//! Organizations claiming `SEBaseOrganization` (the receiver by its HSA-id). Pure.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::error::FhirError;
use crate::municipal::vocab;

pub const PERSONNUMMER: &str = "http://electronichealth.se/identifier/personnummer";
pub const HSA_ID: &str = "urn:oid:1.2.752.29.4.19";
pub const SE_PATIENT: &str = "http://hl7.se/fhir/ig/base/StructureDefinition/SEBasePatient";
pub const SE_ORGANIZATION: &str =
    "http://hl7.se/fhir/ig/base/StructureDefinition/SEBaseOrganization";

/// A Swedish personnummer as HL7 Sweden carries it (`Identifier.value` under [`PERSONNUMMER`]):
/// twelve digits `YYYYMMDDNNNC`, the first eight a date and the last a Luhn check digit over the
/// ten from the year's last two (Skatteverket's rule). A samordningsnummer (the day plus 60) has
/// a system of its own and is not one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Personnummer(String);

impl Personnummer {
    pub fn parse(s: &str) -> Result<Personnummer, String> {
        let b = s.as_bytes();
        if b.len() != 12 || !b.iter().all(u8::is_ascii_digit) {
            return Err(format!(
                "{s:?} is not a personnummer: twelve digits YYYYMMDDNNNC, without a hyphen"
            ));
        }
        let number = |from: usize, to: usize| -> u32 {
            b[from..to]
                .iter()
                .fold(0, |n, d| n * 10 + u32::from(d - b'0'))
        };
        let (year, month, day) = (number(0, 4), number(4, 6), number(6, 8));
        let born = i32::try_from(year)
            .ok()
            .and_then(|y| chrono::NaiveDate::from_ymd_opt(y, month, day));
        if born.is_none() {
            return Err(format!(
                "{s:?} is not a personnummer: {year:04}-{month:02}-{day:02} is not a date"
            ));
        }
        let sum: u32 = b[2..11]
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let p = u32::from(d - b'0') * if i % 2 == 0 { 2 } else { 1 };
                p / 10 + p % 10
            })
            .sum();
        let check = (10 - sum % 10) % 10;
        if u32::from(b[11] - b'0') != check {
            return Err(format!(
                "{s:?} is not a personnummer: its check digit should be {check}"
            ));
        }
        Ok(Personnummer(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The citizen's personnummer, if its Patient has one: its index among the Patient's
/// identifiers and what it reads as (an error for a value that is not a personnummer).
fn personnummer(patient: &Value) -> Option<(usize, Result<Personnummer, String>)> {
    patient
        .get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .find(|(_, i)| i.get("system").and_then(Value::as_str) == Some(PERSONNUMMER))
        .map(|(at, i)| {
            let value = i.get("value").and_then(Value::as_str).unwrap_or_default();
            (at, Personnummer::parse(value))
        })
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
/// personnummer. A personnummer that is not one (a wrong check digit, no such date) is refused
/// (422 at the stored Patient's identifier): the region could not match the citizen by it.
pub fn adapt(message: &mut Value, base: &str) -> Result<bool, FhirError> {
    let Some(entries) = message.get_mut("entry").and_then(Value::as_array_mut) else {
        return Ok(false);
    };
    let Some((patient, found)) = entries
        .iter_mut()
        .map(|e| &mut e["resource"])
        .filter(|r| r["resourceType"] == "Patient")
        .find_map(|r| personnummer(r).map(|found| (r, found)))
    else {
        return Ok(false);
    };
    if let (at, Err(why)) = found {
        return Err(FhirError::unprocessable(format!(
            "the citizen's Patient has a personnummer a Swedish region cannot match: {why}"
        ))
        .at(&format!("Patient.identifier[{at}].value")));
    }
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
    Ok(true)
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
        let mut m = message(json!([{"system": PERSONNUMMER, "value": "194202022382"}]));
        assert_eq!(adapt(&mut m, "https://gw/fhir").ok(), Some(true));
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
        assert_eq!(adapt(&mut m, "https://gw/fhir").ok(), Some(false));
        assert_eq!(m, before);
    }

    #[test]
    fn a_personnummer_that_is_not_one_is_refused_where_it_is() {
        let mut m = message(json!([
            {"system": vocab::CPR, "value": "0101011234"},
            {"system": PERSONNUMMER, "value": "194202022386"}
        ]));
        let before = m.clone();
        let err = adapt(&mut m, "https://gw/fhir").expect_err("a wrong check digit");
        assert_eq!(err.status, 422);
        assert_eq!(
            err.issues[0].expression.as_deref(),
            Some("Patient.identifier[1].value")
        );
        assert!(
            err.issues[0]
                .diagnostics
                .contains("check digit should be 2"),
            "{err}"
        );
        assert_eq!(m, before, "nothing adapted");
    }

    #[test]
    fn personnummer_follows_skatteverkets_rule() {
        // HL7 Sweden's example Patients, and the check digits of a few made by hand.
        for ok in [
            "195009072553",
            "189002029800",
            "199002222397",
            "200001252386",
            "194202022382",
        ] {
            let p = Personnummer::parse(ok).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(p.as_str(), ok);
        }
        for (bad, why) in [
            ("19500907-2553", "twelve digits"),
            ("5009072553", "twelve digits"),
            ("195009072554", "check digit should be 3"),
            ("195002302553", "not a date"),
            ("196109732393", "not a date"), // a samordningsnummer: day 73
            ("", "twelve digits"),
        ] {
            let err = Personnummer::parse(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
