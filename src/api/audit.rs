//! What the request middleware tells the audit trail about each request (`src/audit/`): the
//! interaction read off the route and method, who (the authenticated caller, or nobody for a
//! refused request), from where, what (`Type/id`, the created resource's `Location`, the search
//! query), the outcome and the request id. Health, metrics and the CapabilityStatement are not
//! audited; everything else is, refusals included.

use actix_web::http::{header, Method};
use actix_web::HttpMessage as _;

use crate::audit::{AuditRecord, Interaction, PatientRef, Who};
use crate::auth::Caller;

/// Set by a handler when the route alone does not say which interaction it was (a Bundle posted
/// to the base is a transaction or a batch).
#[derive(Debug, Clone)]
pub struct AuditHint(pub Interaction);

/// The audit record of an answered request; `None` for the routes that are not audited.
pub fn record(
    req: &actix_web::HttpRequest,
    route: &str,
    status: u16,
    location: Option<&str>,
    request_id: &str,
) -> Option<AuditRecord> {
    let path = req.path();
    // What anyone may call without credentials touches no citizen's data.
    if super::auth::open_path(path) {
        return None;
    }
    let method = req.method();
    let segments: Vec<&str> = path
        .strip_prefix("/fhir/")
        .map(|p| p.split('/').collect())
        .unwrap_or_default();
    let hint = req.extensions().get::<AuditHint>().map(|h| h.0.clone());
    let get = method == Method::GET;
    let interaction = match route {
        "/fhir" | "/fhir/" => hint.unwrap_or(Interaction::Transaction),
        "/fhir/_history" => Interaction::HistorySystem,
        "/fhir/$validate" | "/fhir/{type}/$validate" => Interaction::Operation("validate".into()),
        "/fhir/$process-message" => Interaction::Operation("process-message".into()),
        "/fhir/{type}/{id}/$share" => Interaction::Operation("share".into()),
        "/fhir/{type}" if get => Interaction::SearchType,
        "/fhir/{type}" if method == Method::POST => Interaction::Create,
        "/fhir/{type}" => Interaction::Update,
        "/fhir/{type}/_search" => Interaction::SearchType,
        "/fhir/{type}/_history" => Interaction::HistoryType,
        "/fhir/{type}/{id}" if get => Interaction::Read,
        "/fhir/{type}/{id}" if method == Method::DELETE => Interaction::Delete,
        "/fhir/{type}/{id}" => Interaction::Update,
        "/fhir/{type}/{id}/_history" => Interaction::HistoryInstance,
        "/fhir/{type}/{id}/_history/{vid}" => Interaction::Vread,
        "/municipal/v1/care-records" => Interaction::CareRecordPost,
        "/municipal/v1/care-records/{id}" => Interaction::CareRecordGet,
        "/municipal/v1/discharge-notes" => Interaction::DischargeNotePost,
        "/municipal/v1/reports/kl-gateway" => Interaction::Operation("kl-gateway-report".into()),
        r if r.starts_with("/admin/") => Interaction::Operation(format!(
            "admin {} {}",
            method.as_str().to_ascii_lowercase(),
            r.trim_start_matches("/admin/")
        )),
        // Unknown paths are probes as much as anything: who asked, and what.
        _ => Interaction::Operation(format!("unrouted {}", method.as_str())),
    };
    let mut rec = AuditRecord::new(interaction, status);
    rec.request_id = Some(request_id.to_string());
    rec.peer = req.peer_addr().map(|a| a.ip().to_string());
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
    rec.resource = match (route, segments.as_slice()) {
        (
            "/fhir/{type}/{id}" | "/fhir/{type}/{id}/_history" | "/fhir/{type}/{id}/$share",
            [t, id, ..],
        ) => Some(format!("{t}/{id}")),
        ("/fhir/{type}/{id}/_history/{vid}", [t, id, _, v]) => {
            Some(format!("{t}/{id}/_history/{v}"))
        }
        _ => location.and_then(|l| {
            // `…/fhir/Type/id/_history/n` → `Type/id/_history/n`
            let rest = l.split("/fhir/").nth(1)?;
            Some(rest.to_string())
        }),
    };
    if rtype == Some("Patient") {
        rec.patient = rec
            .resource
            .as_deref()
            .and_then(|r| r.split('/').nth(1))
            .map(|id| PatientRef::Reference(format!("Patient/{id}")));
    }
    let query = req.query_string();
    if !query.is_empty() {
        rec.query = Some(query.to_string());
    }
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

/// The response's `Location`, for the created resource's id.
pub fn location(headers: &header::HeaderMap) -> Option<String> {
    headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
