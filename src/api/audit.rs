//! What the request middleware tells the audit trail about each request (`src/audit/`): the
//! interaction read off the route and method, who (the authenticated caller, or nobody for a
//! refused request), from where, what (`Type/id`, the resource a write stored, the search
//! query), the outcome and the request id. Health, metrics and the CapabilityStatement are not
//! audited; everything else is, refusals included.

use actix_web::http::Method;
use actix_web::HttpMessage as _;

use crate::audit::compact::prefix as cut;
use crate::audit::{AuditRecord, Interaction, PatientRef, Who};
use crate::auth::Caller;

/// Set by a handler when the route alone does not say which interaction it was (a Bundle posted
/// to the base is a transaction or a batch).
#[derive(Debug, Clone)]
pub struct AuditHint(pub Interaction);

/// Set by a handler on its response: what it actually wrote (`Type/id/_history/v` of the stored
/// resource, the CarePlan of a municipal record). The audit entity of a write comes from here,
/// never from the `Location` header, whose host may come from the request.
#[derive(Debug, Clone)]
pub struct AuditEntity(pub String);

/// Set by a handler on its response: the Patient id the resource it answered with is about
/// (`StoredResource::citizen`), so that a read of a citizen's CarePlan is found by
/// `AuditEvent?patient=`, as a read of the Patient is.
#[derive(Debug, Clone)]
pub struct AuditCitizen(pub String);

/// Longest path segment (type, id, version) kept in a record: ids are at most 64 characters.
const MAX_SEGMENT_BYTES: usize = 128;

/// The audit record of an answered request; `None` for the routes that are not audited.
/// `written` is the response's [`AuditEntity`], if its handler set one.
pub fn record(
    req: &actix_web::HttpRequest,
    route: &str,
    status: u16,
    written: Option<&str>,
    citizen: Option<&str>,
    request_id: &str,
    max_query_bytes: usize,
) -> Option<AuditRecord> {
    let path = req.path();
    // What anyone may call without credentials touches no citizen's data.
    if super::operations::route_is_open(route) {
        return None;
    }
    let method = req.method();
    // Types and ids are short; a path segment of megabytes is not, and is kept only in part.
    let segments: Vec<&str> = path
        .strip_prefix("/fhir/")
        .map(|p| p.split('/').map(|s| cut(s, MAX_SEGMENT_BYTES)).collect())
        .unwrap_or_default();
    let hint = req.extensions().get::<AuditHint>().map(|h| h.0.clone());
    let interaction = match super::operations::find(route, method) {
        Some(op) => op.audit.interaction(hint)?,
        None if method == Method::OPTIONS => Interaction::Operation("options".into()),
        // Unknown paths and methods are probes as much as anything: who asked, and what.
        None => Interaction::Operation(format!("unrouted {}", method.as_str())),
    };
    let mut rec = AuditRecord::new(interaction, status);
    rec.request_id = Some(request_id.to_string());
    // The client's address: the peer, or who a trusted proxy says it relays.
    rec.peer = match req.app_data::<actix_web::web::Data<super::AppState>>() {
        Some(state) => super::origin::client_ip(req, &state.config.server),
        None => req.peer_addr().map(|a| a.ip()),
    }
    .map(ip_text);
    rec.who = req.extensions().get::<Caller>().map(|c| Who {
        client_id: c.client.id.clone(),
        name: None,
        kind: Some(c.client.kind.as_str().to_string()),
        auth_method: Some(c.method.as_str().to_string()),
        organizations: c.client.organizations.clone(),
        reference: None,
    });
    let rtype = segments
        .first()
        .filter(|_| route.contains("{type}"))
        .copied();
    rec.resource_type = rtype.map(str::to_string);
    // What a write stored (`Type/id/_history/v`) says more than its route; otherwise the route.
    rec.resource = match (route, segments.as_slice()) {
        _ if written.is_some() => written.map(str::to_string),
        (
            "/fhir/{type}/{id}" | "/fhir/{type}/{id}/_history" | "/fhir/{type}/{id}/$share",
            [t, id, ..],
        ) => Some([*t, "/", id].concat()),
        ("/fhir/Group/{id}/$export", [t, id, ..]) => Some([*t, "/", id].concat()),
        ("/fhir/{type}/{id}/_history/{vid}", [t, id, _, v]) => {
            Some(format!("{t}/{id}/_history/{v}"))
        }
        _ => written.map(str::to_string),
    };
    if rtype == Some("Patient") {
        rec.patient = rec
            .resource
            .as_deref()
            .and_then(|r| r.split('/').nth(1))
            .map(patient_ref);
    }
    if rec.patient.is_none() {
        rec.patient = citizen.map(patient_ref);
    }
    rec.set_query(req.query_string(), max_query_bytes);
    if status >= 400 {
        rec.failure = Some(
            actix_web::http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("refused")
                .to_string(),
        );
    }
    Some(rec)
}

/// A write's record: the request's `template` (made before the handler ran) completed with what
/// the write stored (`Type/id/_history/v`), its status and, when the handler said so, the
/// interaction (a batch's entries).
pub fn for_write(
    template: &AuditRecord,
    entity: Option<&str>,
    citizen: Option<&str>,
    status: u16,
    interaction: Option<Interaction>,
) -> AuditRecord {
    let mut r = template.clone();
    r.recorded_ms = chrono::Utc::now().timestamp_millis();
    r.http_status = Some(status);
    r.outcome = crate::audit::Outcome::from_status(status);
    if let Some(i) = interaction {
        r.action = i.default_action();
        r.interaction = i;
    }
    if let Some(e) = entity {
        r.resource = Some(cut(e, 3 * MAX_SEGMENT_BYTES + 16).to_string());
        if e.starts_with("Patient/") {
            r.patient = e.split('/').nth(1).map(patient_ref);
        }
    }
    if r.patient.is_none() {
        r.patient = citizen.map(patient_ref);
    }
    r
}

/// The record's citizen from a Patient id (bounded like the path's segments; ids from the path
/// and from what was stored are within that bound already).
fn patient_ref(id: &str) -> PatientRef {
    PatientRef::Reference(["Patient/", cut(id, MAX_SEGMENT_BYTES)].concat())
}

/// The client's address as text, as `Display` writes it: an IPv4 address (nearly every
/// request) written octet by octet, where `Display` went through the formatter's padding
/// machinery at a sixth of the record's cost.
fn ip_text(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut out = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
            out
        }
        v6 => v6.to_string(),
    }
}

/// The [`AuditCitizen`] a handler set on its response.
pub fn citizen<B>(res: &actix_web::HttpResponse<B>) -> Option<String> {
    res.extensions().get::<AuditCitizen>().map(|c| c.0.clone())
}

/// The [`AuditEntity`] a handler set on its response.
pub fn written<B>(res: &actix_web::HttpResponse<B>) -> Option<String> {
    res.extensions().get::<AuditEntity>().map(|e| e.0.clone())
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_address_is_written_as_display_writes_it() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.9.100.255",
            "192.168.1.20",
            "::1",
            "2001:db8::7",
            "::ffff:10.0.0.1",
        ] {
            let ip: std::net::IpAddr = ip.parse().expect("address");
            assert_eq!(super::ip_text(ip), ip.to_string());
        }
    }
}
