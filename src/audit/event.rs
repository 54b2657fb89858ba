//! [`AuditRecord`] → R4 AuditEvent, in the style of IHE BALP (Basic Audit Log Patterns):
//!
//! - `type` is `audit-event-type|rest` with the `restful-interaction` code as `subtype` for REST
//!   (plus our own code for operations' names and the municipal endpoints); a delivery attempt is
//!   DICOM `110106` Export.
//! - The client is the requesting agent (DICOM `110153` Source Role ID, its peer address as
//!   network type 2), the gateway the other side (`110152` Destination Role ID); in forwarding
//!   the gateway is the source and the destination the other side (network type 5, its URL).
//!   Organizations the client acts for are agents of their own (`v3-RoleCode|DELEGATOR`).
//! - Entities: the resource (System Object, role Domain Resource), the query (role Query, base64
//!   in `entity.query` as R4 has it; `sev-1` forbids `name` beside `query`), the patient
//!   (Person, role Patient), and the `X-Request-Id` (BALP `XrequestId`, in `what.identifier`).
//!
//! What is searchable (`/fhir/AuditEvent?…`): `date` (recorded), `type`, `subtype`, `action`,
//! `outcome`, `entity` (the resource, by its literal reference), `patient` (a `Patient/id`),
//! `altid` (the client id), `agent-name`, `agent-role` (client kind and authentication method),
//! `address` (peer address), `site` (the observer), and `agent` only where a literal reference is
//! known ([`Who::reference`], organizations given as `Organization/id`).

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::{AuditRecord, Interaction, PatientRef, Who};
use fhir_core::fhir::instant;

/// Our CodeSystem for what FHIR's code systems do not name: the municipal endpoints, forwarding,
/// operation names (subtypes), client kinds and authentication methods (agent roles).
pub const SEKTORBRO_AUDIT_SYSTEM: &str = "http://sektorbro.dk/fhir/CodeSystem/audit";
/// The identifier system of client ids (as authentication established them).
pub const CLIENT_ID_SYSTEM: &str = "http://sektorbro.dk/fhir/NamingSystem/client-id";
/// The identifier system of forwarded message ids (`Bundle.id`).
pub const MESSAGE_ID_SYSTEM: &str = "http://sektorbro.dk/fhir/NamingSystem/message-id";
/// The identifier system of forwarding destinations (their configured id).
pub const DESTINATION_SYSTEM: &str = "http://sektorbro.dk/fhir/NamingSystem/forwarding-destination";

const AUDIT_EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const RESTFUL_INTERACTION: &str = "http://hl7.org/fhir/restful-interaction";
const DICOM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const NETWORK_IP: &str = "2";
const NETWORK_URI: &str = "5";
const SOURCE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const BALP_ENTITY_TYPE: &str = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType";
const ROLE_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";

/// The record as an R4 AuditEvent (without `id` and `meta`, which the writer sets). `observer`
/// names this gateway (`source.observer`, `source.site`, its agent).
pub fn to_audit_event(r: &AuditRecord, observer: &str) -> Value {
    let mut ev = Map::new();
    ev.insert("resourceType".into(), json!("AuditEvent"));
    let forward = r.interaction == Interaction::Forward;
    ev.insert(
        "type".into(),
        if forward {
            coding(DICOM, "110106", Some("Export"))
        } else {
            coding(AUDIT_EVENT_TYPE, "rest", Some("Restful Operation"))
        },
    );
    let mut subtype = Vec::new();
    if let Some(code) = r.interaction.restful_code() {
        subtype.push(coding(RESTFUL_INTERACTION, code, Some(code)));
    }
    if let Some(code) = r.interaction.own_code() {
        let display = match &r.interaction {
            Interaction::Operation(name) => format!("${name}"),
            _ => code.to_string(),
        };
        subtype.push(coding(SEKTORBRO_AUDIT_SYSTEM, code, Some(&display)));
    }
    ev.insert("subtype".into(), Value::Array(subtype));
    ev.insert("action".into(), json!(r.action.code()));
    ev.insert("recorded".into(), json!(instant(r.recorded_ms)));
    ev.insert("outcome".into(), json!(r.outcome.code()));
    if let Some(desc) = outcome_desc(r) {
        ev.insert("outcomeDesc".into(), json!(desc));
    }
    ev.insert("agent".into(), Value::Array(agents(r, observer)));
    ev.insert(
        "source".into(),
        json!({
            "site": observer,
            "observer": {"display": observer},
            "type": [coding(SOURCE_TYPE, "4", Some("Application Server"))],
        }),
    );
    let entities = entities(r);
    if !entities.is_empty() {
        ev.insert("entity".into(), Value::Array(entities));
    }
    Value::Object(ev)
}

fn coding(system: &str, code: &str, display: Option<&str>) -> Value {
    let mut c = json!({"system": system, "code": code});
    if let Some(d) = display {
        c["display"] = json!(d);
    }
    c
}

fn concept(system: &str, code: &str, display: Option<&str>) -> Value {
    json!({"coding": [coding(system, code, display)]})
}

/// `HTTP 404: Patient/x is not known`, `delivered (HTTP 200)`, ….
fn outcome_desc(r: &AuditRecord) -> Option<String> {
    let text = match (&r.forward, r.http_status, &r.failure) {
        (Some(f), Some(s), Some(e)) => format!("{} (HTTP {s}): {e}", f.result.as_str()),
        (Some(f), None, Some(e)) => format!("{}: {e}", f.result.as_str()),
        (Some(f), Some(s), None) => format!("{} (HTTP {s})", f.result.as_str()),
        (Some(f), None, None) => f.result.as_str().to_string(),
        (None, Some(s), Some(e)) => format!("HTTP {s}: {e}"),
        (None, Some(s), None) => format!("HTTP {s}"),
        (None, None, Some(e)) => e.clone(),
        (None, None, None) => return None,
    };
    Some(text)
}

fn agents(r: &AuditRecord, observer: &str) -> Vec<Value> {
    let gateway_who = json!({"display": observer});
    if let Some(f) = &r.forward {
        // The gateway sends (source), the destination receives.
        return vec![
            json!({
                "type": concept(DICOM, "110153", Some("Source Role ID")),
                "who": gateway_who,
                "requestor": true,
            }),
            json!({
                "type": concept(DICOM, "110152", Some("Destination Role ID")),
                "who": {
                    "identifier": {"system": DESTINATION_SYSTEM, "value": f.destination},
                    "display": f.destination,
                },
                "requestor": false,
                "network": {"address": f.url, "type": NETWORK_URI},
            }),
        ];
    }
    let mut client = Map::new();
    client.insert(
        "type".into(),
        concept(DICOM, "110153", Some("Source Role ID")),
    );
    let mut organizations = Vec::new();
    if let Some(who) = &r.who {
        client_agent(who, &mut client);
        organizations = who
            .organizations
            .iter()
            .map(|o| organization_agent(o))
            .collect();
    }
    client.insert("requestor".into(), json!(true));
    if let Some(peer) = &r.peer {
        client.insert(
            "network".into(),
            json!({"address": peer, "type": NETWORK_IP}),
        );
    }
    let mut out = vec![Value::Object(client)];
    out.extend(organizations);
    out.push(json!({
        "type": concept(DICOM, "110152", Some("Destination Role ID")),
        "who": gateway_who,
        "requestor": false,
    }));
    out
}

fn client_agent(who: &Who, agent: &mut Map<String, Value>) {
    let mut roles = Vec::new();
    if let Some(kind) = &who.kind {
        roles.push(concept(
            SEKTORBRO_AUDIT_SYSTEM,
            &format!("client-{kind}"),
            None,
        ));
    }
    if let Some(method) = &who.auth_method {
        roles.push(concept(
            SEKTORBRO_AUDIT_SYSTEM,
            &format!("auth-{method}"),
            None,
        ));
    }
    if !roles.is_empty() {
        agent.insert("role".into(), Value::Array(roles));
    }
    let mut reference = Map::new();
    if let Some(r) = &who.reference {
        reference.insert("reference".into(), json!(r));
    }
    if !who.client_id.is_empty() {
        reference.insert(
            "identifier".into(),
            json!({"system": CLIENT_ID_SYSTEM, "value": who.client_id}),
        );
        agent.insert("altId".into(), json!(who.client_id));
    }
    let display = who.name.as_deref().unwrap_or(&who.client_id);
    if !display.is_empty() {
        reference.insert("display".into(), json!(display));
    }
    if let Some(name) = &who.name {
        agent.insert("name".into(), json!(name));
    }
    if !reference.is_empty() {
        agent.insert("who".into(), Value::Object(reference));
    }
}

/// An organization the client acts for: an agent of type `v3-RoleCode|DELEGATOR` (it delegated
/// to the client), by identifier (`system|value`) or literal reference.
fn organization_agent(org: &str) -> Value {
    let who = match org.split_once('|') {
        Some((system, value)) if !system.is_empty() => {
            json!({"identifier": {"system": system, "value": value}})
        }
        _ if looks_like_reference(org) => json!({"reference": org}),
        _ => json!({"display": org}),
    };
    json!({
        "type": concept(ROLE_CODE, "DELEGATOR", Some("delegator")),
        "who": who,
        "requestor": false,
    })
}

fn looks_like_reference(s: &str) -> bool {
    matches!(s.split_once('/'), Some((t, id))
        if t.starts_with(|c: char| c.is_ascii_uppercase()) && fhir_core::fhir::is_valid_id(id.split('/').next().unwrap_or("")))
}

fn entities(r: &AuditRecord) -> Vec<Value> {
    let mut out = Vec::new();
    let patient_ref = match &r.patient {
        Some(PatientRef::Reference(p)) => Some(p.as_str()),
        _ => None,
    };
    // The resource acted on; a Patient that is also "the patient" is one entity, role Patient.
    let mut resource_is_patient = false;
    if let Some(res) = &r.resource {
        let unversioned = res.split("/_history/").next().unwrap_or(res);
        resource_is_patient = patient_ref == Some(unversioned);
        let (etype, role) = if resource_is_patient {
            (
                coding(ENTITY_TYPE, "1", Some("Person")),
                coding(OBJECT_ROLE, "1", Some("Patient")),
            )
        } else {
            (
                coding(ENTITY_TYPE, "2", Some("System Object")),
                coding(OBJECT_ROLE, "4", Some("Domain Resource")),
            )
        };
        out.push(json!({"what": {"reference": res}, "type": etype, "role": role}));
    }
    if let Some(f) = &r.forward {
        out.push(json!({
            "what": {
                "identifier": {"system": MESSAGE_ID_SYSTEM, "value": f.message_id},
                "display": format!("Bundle/{}", f.message_id),
            },
            "type": coding("http://hl7.org/fhir/resource-types", "Bundle", Some("Bundle")),
            "role": coding(OBJECT_ROLE, "20", Some("Job")),
            "detail": [{"type": "attempt", "valueString": f.attempt.to_string()}],
        }));
    }
    if let Some(q) = &r.query {
        let mut e = json!({
            "type": coding(ENTITY_TYPE, "2", Some("System Object")),
            "role": coding(OBJECT_ROLE, "24", Some("Query")),
            "query": base64::engine::general_purpose::STANDARD.encode(q.as_bytes()),
        });
        // The query once only (R4 has it base64 in `query`), and only its start when it was long.
        if let Some(total) = r.query_truncated_from {
            e["description"] = json!(format!(
                "query truncated: the first {} of {total} bytes",
                q.len()
            ));
        }
        out.push(e);
    }
    match &r.patient {
        Some(PatientRef::Reference(p)) if !resource_is_patient => out.push(json!({
            "what": {"reference": p},
            "type": coding(ENTITY_TYPE, "1", Some("Person")),
            "role": coding(OBJECT_ROLE, "1", Some("Patient")),
        })),
        Some(PatientRef::Identifier { system, value }) => out.push(json!({
            "what": {"identifier": {"system": system, "value": value}},
            "type": coding(ENTITY_TYPE, "1", Some("Person")),
            "role": coding(OBJECT_ROLE, "1", Some("Patient")),
        })),
        _ => {}
    }
    if let Some(id) = &r.request_id {
        out.push(json!({
            "what": {"identifier": {"value": id}},
            "type": coding(BALP_ENTITY_TYPE, "XrequestId", Some("X-Request-Id")),
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{
        Action, AuditRecord, ForwardAttempt, ForwardResult, Interaction, Outcome, PatientRef, Who,
    };
    use fhir_core::fhir::outcome::Severity;
    use fhir_core::fhir::search_params::{IndexValue, SearchParamRegistry};

    fn client() -> Who {
        Who {
            client_id: "kommune-0101-epj".into(),
            name: Some("Københavns Kommune EPJ".into()),
            kind: Some("municipality".into()),
            auth_method: Some("mtls".into()),
            organizations: vec![
                "urn:oid:1.2.208.176.1.1|123456789".into(),
                "Organization/org-1".into(),
            ],
            reference: None,
        }
    }

    fn rest(interaction: Interaction, status: u16) -> AuditRecord {
        let mut r = AuditRecord::new(interaction, status);
        r.recorded_ms = 1_780_000_000_123;
        r.who = Some(client());
        r.peer = Some("10.1.2.3".into());
        r.request_id = Some("req-42".into());
        r
    }

    fn forward(result: ForwardResult, status: Option<u16>) -> AuditRecord {
        let mut r = AuditRecord::forward(
            ForwardAttempt {
                message_id: "msg-1".into(),
                destination: "region-syd".into(),
                url: "https://cosmic.example.se/fhir/$process-message".into(),
                attempt: 2,
                result,
            },
            status,
        );
        r.patient = Some(PatientRef::Identifier {
            system: "urn:oid:1.2.208.176.1.2".into(),
            value: "0101011234".into(),
        });
        if result != ForwardResult::Delivered {
            r.failure = Some("503 Service Unavailable".into());
        }
        r
    }

    /// One record of every kind the middleware and the worker produce.
    fn every_kind() -> Vec<AuditRecord> {
        use Interaction::*;
        let mut out = Vec::new();
        for (i, status) in [
            (Read, 200),
            (Vread, 200),
            (HistoryInstance, 200),
            (HistoryType, 200),
            (HistorySystem, 200),
            (SearchType, 200),
            (SearchSystem, 200),
            (Create, 201),
            (Update, 200),
            (Patch, 200),
            (Delete, 204),
            (Transaction, 200),
            (Batch, 200),
            (Capabilities, 200),
            (Operation("validate".into()), 200),
            (Operation("process-message".into()), 202),
            (CareRecordPost, 201),
            (CareRecordGet, 200),
            (DischargeNotePost, 202),
        ] {
            let mut r = rest(i.clone(), status);
            match i {
                Read | Update | Delete | Patch => r.resource = Some("CarePlan/cp-1".into()),
                Vread => r.resource = Some("Patient/p-1/_history/3".into()),
                HistoryInstance => r.resource = Some("Patient/p-1".into()),
                SearchType | HistoryType | Create => r.resource_type = Some("Observation".into()),
                _ => {}
            }
            if matches!(i, SearchType | SearchSystem) {
                r.query = Some("subject=Patient/p-1&code=http://loinc.org|1234-5".into());
            }
            r.patient = Some(PatientRef::Reference("Patient/p-1".into()));
            out.push(r);
        }
        // Failures: refused without authentication, not found, a server error.
        let mut unauthenticated = AuditRecord::new(Interaction::Read, 401);
        unauthenticated.peer = Some("2001:db8::1".into());
        unauthenticated.resource = Some("Patient/p-1".into());
        unauthenticated.failure = Some("no client certificate".into());
        out.push(unauthenticated);
        let mut missing = rest(Interaction::Read, 404);
        missing.resource = Some("Patient/nobody".into());
        missing.failure = Some("Patient/nobody is not known".into());
        out.push(missing);
        let mut broken = rest(Interaction::Create, 503);
        broken.failure = Some("the database is busy".into());
        out.push(broken);
        let mut bare = AuditRecord::new(Interaction::SearchSystem, 200);
        bare.query = Some("_lastUpdated=gt2026".into());
        out.push(bare);
        out.push(forward(ForwardResult::Delivered, Some(200)));
        out.push(forward(ForwardResult::Retry, Some(503)));
        out.push(forward(ForwardResult::DeadLetter, None));
        out
    }

    #[test]
    fn every_kind_of_record_is_a_valid_r4_audit_event() {
        let v = fhir_core::validation::Validator::shared_r4().expect("R4 definitions");
        for r in every_kind() {
            let mut ev = to_audit_event(&r, "https://gw.example.dk/fhir");
            ev["id"] = json!("2a0c3b1e-0000-4000-8000-000000000001");
            let errors: Vec<_> = v
                .validate(&ev, &[])
                .into_iter()
                .filter(|i| matches!(i.severity, Severity::Error | Severity::Fatal))
                .collect();
            assert!(errors.is_empty(), "{:?}: {errors:?}\n{ev:#}", r.interaction);
        }
        // The check has teeth: a code outside a required binding, and `sev-1`, are errors.
        let mut bad = to_audit_event(&every_kind()[5], "gw");
        bad["outcome"] = json!("5");
        bad["entity"][0]["name"] = json!("a name beside a query");
        let issues = v.validate(&bad, &[]);
        let errors = |needle: &str| {
            issues
                .iter()
                .any(|i| matches!(i.severity, Severity::Error) && format!("{i:?}").contains(needle))
        };
        assert!(errors("outcome") && errors("sev-1"), "{issues:#?}");
    }

    #[test]
    fn a_search_is_rest_search_type_with_the_raw_query_in_base64_and_the_patient() {
        let mut r = rest(Interaction::SearchType, 200);
        r.resource_type = Some("Observation".into());
        r.query = Some("subject=Patient/p-1&_count=5".into());
        r.patient = Some(PatientRef::Reference("Patient/p-1".into()));
        let ev = to_audit_event(&r, "gw");
        assert_eq!(ev["type"]["code"], "rest");
        assert_eq!(ev["subtype"][0]["system"], RESTFUL_INTERACTION);
        assert_eq!(ev["subtype"][0]["code"], "search-type");
        assert_eq!(ev["action"], "E");
        assert_eq!(ev["outcome"], "0");
        assert_eq!(ev["recorded"], "2026-05-28T20:26:40.123Z");
        let entities = ev["entity"].as_array().expect("entities");
        let query = entities
            .iter()
            .find(|e| e["role"]["code"] == "24")
            .expect("query entity");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(query["query"].as_str().expect("base64"))
            .expect("decodes");
        assert_eq!(raw, b"subject=Patient/p-1&_count=5");
        assert!(query.get("name").is_none(), "sev-1: name or query");
        assert!(query.get("description").is_none(), "the query once only");
        let patient = entities
            .iter()
            .find(|e| e["role"]["code"] == "1")
            .expect("patient entity");
        assert_eq!(patient["what"]["reference"], "Patient/p-1");
        let request = entities
            .iter()
            .find(|e| e["type"]["code"] == "XrequestId")
            .expect("request id entity");
        assert_eq!(request["what"]["identifier"]["value"], "req-42");
        // The client requested from its address; the gateway is the other side.
        let agents = ev["agent"].as_array().expect("agents");
        assert_eq!(agents[0]["requestor"], true);
        assert_eq!(agents[0]["altId"], "kommune-0101-epj");
        assert_eq!(agents[0]["who"]["identifier"]["value"], "kommune-0101-epj");
        assert_eq!(agents[0]["network"]["address"], "10.1.2.3");
        assert_eq!(agents[0]["network"]["type"], "2");
        assert_eq!(agents[1]["who"]["identifier"]["value"], "123456789");
        assert_eq!(agents[2]["who"]["reference"], "Organization/org-1");
        assert_eq!(agents[3]["type"]["coding"][0]["code"], "110152");
        assert_eq!(agents[3]["requestor"], false);
        assert_eq!(ev["source"]["observer"]["display"], "gw");
    }

    #[test]
    fn failures_and_forwarding_attempts_have_their_outcome_and_description() {
        let mut r = rest(Interaction::Read, 404);
        r.failure = Some("Patient/x is not known".into());
        let ev = to_audit_event(&r, "gw");
        assert_eq!(ev["outcome"], "4");
        assert_eq!(ev["outcomeDesc"], "HTTP 404: Patient/x is not known");
        assert_eq!(
            to_audit_event(&rest(Interaction::Read, 500), "gw")["outcome"],
            "8"
        );
        let unauthenticated = AuditRecord::new(Interaction::Read, 401);
        let ev = to_audit_event(&unauthenticated, "gw");
        assert!(ev["agent"][0].get("who").is_none());
        assert_eq!(ev["agent"][0]["requestor"], true);

        let ev = to_audit_event(&forward(ForwardResult::Retry, Some(503)), "gw");
        assert_eq!(ev["type"]["system"], DICOM);
        assert_eq!(ev["type"]["code"], "110106");
        assert_eq!(ev["subtype"][0]["code"], "forward");
        assert_eq!(ev["action"], "R");
        assert_eq!(ev["outcome"], "4");
        assert_eq!(
            ev["outcomeDesc"],
            "retry (HTTP 503): 503 Service Unavailable"
        );
        assert_eq!(ev["agent"][0]["requestor"], true, "the gateway sends");
        assert_eq!(
            ev["agent"][1]["network"]["address"],
            "https://cosmic.example.se/fhir/$process-message"
        );
        assert_eq!(ev["entity"][0]["what"]["identifier"]["value"], "msg-1");
        assert_eq!(ev["entity"][1]["what"]["identifier"]["value"], "0101011234");
        assert_eq!(
            to_audit_event(&forward(ForwardResult::DeadLetter, None), "gw")["outcome"],
            "8"
        );
        assert_eq!(
            to_audit_event(&forward(ForwardResult::Delivered, Some(200)), "gw")["outcome"],
            "0"
        );
    }

    #[test]
    fn operations_name_themselves_in_a_second_subtype() {
        let ev = to_audit_event(&rest(Interaction::Operation("validate".into()), 200), "gw");
        assert_eq!(ev["subtype"][0]["code"], "operation");
        assert_eq!(ev["subtype"][1]["system"], SEKTORBRO_AUDIT_SYSTEM);
        assert_eq!(ev["subtype"][1]["code"], "validate");
        assert_eq!(ev["subtype"][1]["display"], "$validate");
        let ev = to_audit_event(&rest(Interaction::CareRecordPost, 201), "gw");
        assert_eq!(ev["subtype"].as_array().map(Vec::len), Some(1));
        assert_eq!(ev["subtype"][0]["code"], "care-record-post");
        assert_eq!(ev["action"], "C");
    }

    #[test]
    fn the_search_parameters_admins_use_are_indexed() {
        let mut r = rest(Interaction::Vread, 200);
        r.resource = Some("Patient/p-1/_history/3".into());
        r.patient = Some(PatientRef::Reference("Patient/p-1".into()));
        let mut ev = to_audit_event(&r, "gw");
        ev["id"] = json!("a");
        let index = SearchParamRegistry::embedded().extract(&ev);
        let has = |param: &str, want: &dyn Fn(&IndexValue) -> bool| {
            index.iter().any(|e| e.param == param && want(&e.value))
        };
        let reference = |t: &'static str, i: &'static str| move |v: &IndexValue| matches!(v, IndexValue::Reference { rtype, id } if rtype == t && id == i);
        let token = |c: &'static str| move |v: &IndexValue| matches!(v, IndexValue::Token { code, .. } if code == c);
        assert!(has(
            "date",
            &|v| matches!(v, IndexValue::Date { lo, .. } if *lo == r.recorded_ms)
        ));
        assert!(has("entity", &reference("Patient", "p-1")));
        assert!(has("patient", &reference("Patient", "p-1")));
        assert!(has("type", &token("rest")));
        assert!(has("subtype", &token("vread")));
        assert!(has("action", &token("R")));
        assert!(has("outcome", &token("0")));
        assert!(has("altid", &token("kommune-0101-epj")));
        assert!(has("agent-role", &token("auth-mtls")));
        assert!(has("agent", &reference("Organization", "org-1")));
        assert!(has(
            "address",
            &|v| matches!(v, IndexValue::String { exact, .. } if exact == "10.1.2.3")
        ));
        assert_eq!(Action::Read, Interaction::Vread.default_action());
        assert_eq!(Outcome::from_status(302), Outcome::Success);
    }
}
