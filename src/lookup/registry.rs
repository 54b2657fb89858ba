//! Patient and organization registries: FHIR servers searched by identifier
//! (`Patient?identifier=system|value`, `Organization?identifier=system|value`).
//!
//! An answer is trusted only as far as it can be checked: exactly one match, which carries the
//! identifier asked for. A registry that ignores the `identifier` parameter (and so returns every
//! patient) or holds duplicates is an upstream error, never a guess.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::upstream::{Fetched, Upstream};
use super::LookupError;

/// A business identifier (`system|value`), e.g. a CPR number
/// (`urn:oid:1.2.208.176.1.2|0101451234`), a SOR code (`urn:oid:1.2.208.176.1.1|…`) or an
/// HSA-id (`urn:oid:1.2.752.29.4.19|…`). Checked once, at the edge ([`Identifier::new`], or the
/// JSON Schema of the municipal formats, whose identifiers read into this same type).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identifier {
    pub system: String,
    pub value: String,
}

impl Identifier {
    /// Both parts non-empty, at most 256 characters, no control characters or `|` in the system.
    pub fn new(system: &str, value: &str) -> Result<Identifier, LookupError> {
        let ok = |s: &str| !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control);
        if !ok(system) || !ok(value) || system.contains('|') {
            return Err(LookupError::InvalidKey(format!(
                "an identifier needs a system and a value (each 1-256 characters), got {system:?} and {value:?}"
            )));
        }
        Ok(Identifier {
            system: system.to_string(),
            value: value.to_string(),
        })
    }

    /// `system|value`, as in a token search and as the cache key.
    pub fn parse(token: &str) -> Result<Identifier, LookupError> {
        match token.split_once('|') {
            Some((system, value)) => Identifier::new(system, value),
            None => Err(LookupError::InvalidKey(format!(
                "an identifier is written system|value, got {token:?}"
            ))),
        }
    }

    /// `system|value`: as in a token search, as the cache key, and as `[[forwarding.destinations]]
    /// receivers` are written.
    pub fn key(&self) -> String {
        format!("{}|{}", self.system, self.value)
    }

    fn is_on(&self, resource: &Value) -> bool {
        resource
            .get("identifier")
            .and_then(Value::as_array)
            .is_some_and(|ids| {
                ids.iter().any(|i| {
                    i.get("system").and_then(Value::as_str) == Some(self.system.as_str())
                        && i.get("value").and_then(Value::as_str) == Some(self.value.as_str())
                })
            })
    }
}

/// An organization as the registry knows it.
#[derive(Debug, Clone)]
pub struct Organization {
    /// The Organization resource as the registry sent it.
    pub resource: Value,
    /// The organization this one is part of (`partOf`), e.g. its region or hospital.
    pub part_of: Option<PartOf>,
    /// Its endpoints that the registry included or contained, in `Organization.endpoint` order.
    pub endpoints: Vec<EndpointInfo>,
}

impl Organization {
    /// The first active endpoint of `connection_type` (e.g. `hl7-fhir-msg` for FHIR messaging,
    /// `hl7-fhir-rest`), for routing to this organization.
    pub fn active_endpoint(&self, connection_type: &str) -> Option<&EndpointInfo> {
        self.endpoints.iter().find(|e| {
            e.status.as_deref() == Some("active")
                && e.connection_type.as_deref() == Some(connection_type)
        })
    }
}

/// Copy a citizen's demographics from the registry's Patient into `target` (a Patient built from
/// a record that carried only the CPR number): `name`, `birthDate` and `gender`, each only where
/// `target` has none — what the sender stated is never overwritten. Answers whether anything was
/// filled.
pub fn fill_demographics(target: &mut Value, registry: &Value) -> bool {
    let Some(obj) = target.as_object_mut() else {
        return false;
    };
    let mut filled = false;
    for key in ["name", "birthDate", "gender"] {
        if obj.contains_key(key) {
            continue;
        }
        if let Some(v) = registry.get(key) {
            obj.insert(key.to_string(), v.clone());
            filled = true;
        }
    }
    filled
}

/// `Organization.partOf`, with the parent resource when the registry included it.
#[derive(Debug, Clone)]
pub struct PartOf {
    /// The reference as written (may be empty when only an identifier is given).
    pub reference: String,
    pub display: Option<String>,
    /// The parent Organization, when the registry included it.
    pub resource: Option<Value>,
}

/// An Endpoint of the organization.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointInfo {
    pub address: String,
    /// `Endpoint.connectionType.code`, e.g. `hl7-fhir-rest` or `hl7-fhir-msg`.
    pub connection_type: Option<String>,
    /// `Endpoint.status` (`active`, `off`, …): callers route only to `active` ones.
    pub status: Option<String>,
    /// `Endpoint.payloadType[].coding[].code`, flattened.
    pub payload_types: Vec<String>,
}

/// `Patient?identifier=…`: the one Patient carrying the identifier, or `None`.
pub(crate) async fn patient(
    up: Upstream,
    id: Identifier,
) -> Result<Option<Arc<Value>>, LookupError> {
    let key = id.key();
    let bundle = match up.get_json("Patient", &[("identifier", &key)]).await? {
        Fetched::NotFound => return Ok(None),
        Fetched::Json(b) => b,
    };
    let (matches, _) = searchset(&up, &bundle, "Patient")?;
    Ok(the_one(&up, matches, "Patient", &id)?.map(|p| Arc::new(p.clone())))
}

/// `Organization?identifier=…` with its endpoints and parent included where the registry can.
pub(crate) async fn organization(
    up: Upstream,
    id: Identifier,
) -> Result<Option<Arc<Organization>>, LookupError> {
    let key = id.key();
    let query = [
        ("identifier", key.as_str()),
        ("_include", "Organization:endpoint"),
        ("_include", "Organization:partof"),
    ];
    let bundle = match up.get_json("Organization", &query).await? {
        Fetched::NotFound => return Ok(None),
        Fetched::Json(b) => b,
    };
    let (matches, included) = searchset(&up, &bundle, "Organization")?;
    let Some(org) = the_one(&up, matches, "Organization", &id)? else {
        return Ok(None);
    };
    Ok(Some(Arc::new(describe_organization(org, &included))))
}

/// The matches of a searchset (resources of `rtype` not marked `include`), and the included
/// entries as (fullUrl, resource).
#[allow(clippy::type_complexity)]
fn searchset<'a>(
    up: &Upstream,
    bundle: &'a Value,
    rtype: &str,
) -> Result<(Vec<&'a Value>, Vec<(Option<&'a str>, &'a Value)>), LookupError> {
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(up.bad(format!("the {rtype} search did not answer with a Bundle")));
    }
    let mut matches = Vec::new();
    let mut included = Vec::new();
    for e in bundle
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(r) = e.get("resource").filter(|r| r.is_object()) else {
            continue;
        };
        let mode = e.pointer("/search/mode").and_then(Value::as_str);
        let is_type = r.get("resourceType").and_then(Value::as_str) == Some(rtype);
        if is_type && matches!(mode, None | Some("match")) {
            matches.push(r);
        } else if mode != Some("outcome") {
            included.push((e.get("fullUrl").and_then(Value::as_str), r));
        }
    }
    Ok((matches, included))
}

fn the_one<'a>(
    up: &Upstream,
    matches: Vec<&'a Value>,
    rtype: &str,
    id: &Identifier,
) -> Result<Option<&'a Value>, LookupError> {
    match matches.as_slice() {
        [] => Ok(None),
        [one] if id.is_on(one) => Ok(Some(one)),
        // The identifier stays out of the message: it goes to the logs (a CPR number is personal data).
        [_] => Err(up.bad(format!(
            "the registry answered with a {rtype} that does not carry the identifier asked for"
        ))),
        many => Err(up.bad(format!(
            "the registry holds {} {rtype} resources with the identifier asked for",
            many.len()
        ))),
    }
}

fn describe_organization(org: &Value, included: &[(Option<&str>, &Value)]) -> Organization {
    let resolve = |reference: &str| -> Option<&Value> {
        if let Some(local) = reference.strip_prefix('#') {
            return org
                .get("contained")
                .and_then(Value::as_array)?
                .iter()
                .find(|c| c.get("id").and_then(Value::as_str) == Some(local));
        }
        included.iter().find_map(|(full_url, r)| {
            let rtype = r.get("resourceType").and_then(Value::as_str)?;
            let rid = r.get("id").and_then(Value::as_str)?;
            let relative = format!("{rtype}/{rid}");
            let hit = *full_url == Some(reference)
                || reference == relative
                || reference.ends_with(&format!("/{relative}"));
            hit.then_some(*r)
        })
    };
    let part_of = org.get("partOf").map(|p| {
        let reference = p
            .get("reference")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        PartOf {
            resource: (!reference.is_empty())
                .then(|| resolve(&reference).cloned())
                .flatten(),
            reference,
            display: p.get("display").and_then(Value::as_str).map(String::from),
        }
    });
    let endpoints = org
        .get("endpoint")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| resolve(r.get("reference")?.as_str()?))
        .filter(|e| e.get("resourceType").and_then(Value::as_str) == Some("Endpoint"))
        .filter_map(endpoint_info)
        .collect();
    Organization {
        resource: org.clone(),
        part_of,
        endpoints,
    }
}

fn endpoint_info(e: &Value) -> Option<EndpointInfo> {
    let codes = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("code").and_then(Value::as_str).map(String::from))
            .collect()
    };
    Some(EndpointInfo {
        address: e.get("address")?.as_str()?.to_string(),
        connection_type: e
            .pointer("/connectionType/code")
            .and_then(Value::as_str)
            .map(String::from),
        status: e.get("status").and_then(Value::as_str).map(String::from),
        payload_types: e
            .get("payloadType")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|pt| codes(pt.get("coding")))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn identifiers_are_checked_at_the_edge() {
        assert!(Identifier::parse("urn:oid:1.2.208.176.1.2|0101451234").is_ok());
        assert!(Identifier::parse("0101451234").is_err());
        assert!(Identifier::parse("|0101451234").is_err());
        assert!(Identifier::parse("urn:oid:1.2.208.176.1.2|").is_err());
        assert!(Identifier::new("a\nb", "1").is_err());
        // The value may contain `|`; the system may not.
        assert_eq!(
            Identifier::parse("s|a|b").map(|i| i.value).ok(),
            Some("a|b".into())
        );
    }

    #[test]
    fn an_organization_gets_its_included_endpoints_and_parent() {
        let org = json!({"resourceType": "Organization", "id": "o1",
            "identifier": [{"system": "urn:oid:1.2.208.176.1.1", "value": "123"}],
            "partOf": {"reference": "Organization/region", "display": "Region Syddanmark"},
            "endpoint": [{"reference": "Endpoint/e1"}, {"reference": "#e2"}, {"reference": "Endpoint/missing"}],
            "contained": [{"resourceType": "Endpoint", "id": "e2", "status": "off",
                "address": "https://old.example/fhir"}]});
        let ep = json!({"resourceType": "Endpoint", "id": "e1", "status": "active",
            "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type", "code": "hl7-fhir-msg"},
            "payloadType": [{"coding": [{"code": "discharge"}]}],
            "address": "https://rx.example/fhir/$process-message"});
        let region =
            json!({"resourceType": "Organization", "id": "region", "name": "Region Syddanmark"});
        let included = vec![
            (Some("https://reg.example/fhir/Endpoint/e1"), &ep),
            (None, &region),
        ];
        let o = describe_organization(&org, &included);
        assert_eq!(o.endpoints.len(), 2);
        assert_eq!(
            o.endpoints[0].address,
            "https://rx.example/fhir/$process-message"
        );
        assert_eq!(
            o.endpoints[0].connection_type.as_deref(),
            Some("hl7-fhir-msg")
        );
        assert_eq!(o.endpoints[0].payload_types, vec!["discharge".to_string()]);
        assert_eq!(o.endpoints[1].status.as_deref(), Some("off"));
        assert_eq!(
            o.active_endpoint("hl7-fhir-msg")
                .map(|e| e.address.as_str()),
            Some("https://rx.example/fhir/$process-message")
        );
        assert!(o.active_endpoint("hl7-fhir-rest").is_none());
        let p = o.part_of.expect("partOf");
        assert_eq!(p.display.as_deref(), Some("Region Syddanmark"));
        assert_eq!(p.resource.expect("included")["id"], "region");
    }

    #[test]
    fn demographics_fill_only_what_is_missing() {
        let registry = json!({"resourceType": "Patient", "name": [{"family": "Jensen"}],
            "birthDate": "1945-01-01", "gender": "female"});
        let mut record = json!({"resourceType": "Patient", "gender": "other",
            "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": "0101451234"}]});
        assert!(fill_demographics(&mut record, &registry));
        assert_eq!(record["name"][0]["family"], "Jensen");
        assert_eq!(record["birthDate"], "1945-01-01");
        assert_eq!(record["gender"], "other", "what the sender stated stays");
        assert!(!fill_demographics(&mut record, &registry));
    }
}
