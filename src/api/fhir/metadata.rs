//! `GET /fhir/metadata`: a CapabilityStatement built from what this server actually serves —
//! the resource types in [`SUPPORTED_TYPES`] and the search parameters the registry can index.

use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use crate::api::context::RequestContext;
use crate::api::response::ok_json;
use crate::api::AppState;
use crate::error::FhirError;
use fhir_core::fhir::search_params::{ParamType, SearchParamRegistry};
use fhir_core::fhir::SUPPORTED_TYPES;

use crate::api::operations::{self, Capability};
use crate::engine::READ_ONLY_TYPES;

pub use crate::api::operations::PATIENT_SHARE;

/// Interactions a read-only type (one the gateway writes itself) still offers.
const READ_ONLY_INTERACTIONS: &[&str] = &[
    "read",
    "vread",
    "search-type",
    "history-type",
    "history-instance",
];

/// The type-level and instance-level interactions the operation table serves for `rtype`.
fn interactions(rtype: &str) -> Vec<Value> {
    operations::table()
        .iter()
        .filter_map(|o| match o.capability {
            Capability::Type(code) => Some(code),
            _ => None,
        })
        .filter(|code| !READ_ONLY_TYPES.contains(&rtype) || READ_ONLY_INTERACTIONS.contains(code))
        .map(|code| match code {
            "search-type" => json!({"code": code,
                "documentation": "GET [base]/[type]?… or POST [base]/[type]/_search with a form body"}),
            _ => json!({"code": code}),
        })
        .collect()
}

/// Whether the table serves a method on a route.
fn serves(route: &str, method: actix_web::http::Method) -> bool {
    operations::find(route, &method).is_some()
}

/// The CapabilityStatement for `base`, dated `date` (when this instance started).
pub fn capability_statement(
    registry: &SearchParamRegistry,
    base: &str,
    date: &str,
    oauth_uris: Option<(&str, &str)>,
) -> Value {
    let resources: Vec<Value> = SUPPORTED_TYPES
        .iter()
        .map(|t| {
            let params: Vec<_> = registry
                .params_for(t)
                .filter(|p| !matches!(p.ptype, ParamType::Composite | ParamType::Special))
                .collect();
            let mut search_params: Vec<Value> = vec![
                json!({"name": "_id", "type": "token"}),
                json!({"name": "_lastUpdated", "type": "date"}),
            ];
            search_params.extend(
                params
                    .iter()
                    .filter(|p| p.code != "_id" && p.code != "_lastUpdated")
                    .map(|p| json!({"name": p.code, "type": p.ptype.code()})),
            );
            let includes: Vec<String> = params
                .iter()
                .filter(|p| p.ptype == ParamType::Reference)
                .map(|p| format!("{t}:{}", p.code))
                .collect();
            // `_revinclude` names the reference parameters of the types that point here.
            let revincludes: Vec<String> = SUPPORTED_TYPES
                .iter()
                .flat_map(|source| {
                    registry
                        .params_for(source)
                        .filter(|p| p.ptype == ParamType::Reference)
                        .filter(|p| p.targets.is_empty() || p.targets.iter().any(|x| x == t))
                        .map(move |p| format!("{source}:{}", p.code))
                })
                .collect();
            // Reverse chaining works from exactly the references `_revinclude` follows.
            if !revincludes.is_empty() {
                search_params.push(json!({"name": "_has", "type": "special",
                    "documentation": "Reverse chaining: `_has:Type:reference-parameter:search-parameter=value` (see searchRevInclude for the references that can point here)"}));
            }
            let writable = !READ_ONLY_TYPES.contains(t);
            let mut r = json!({
                "type": t,
                "interaction": interactions(t),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": writable && serves("/fhir/{type}/{id}", Method::PUT),
                "conditionalCreate": writable && serves("/fhir/{type}", Method::POST),
                "conditionalUpdate": writable && serves("/fhir/{type}", Method::PUT),
                "conditionalDelete": if writable && serves("/fhir/{type}", Method::DELETE) {
                    "single"
                } else {
                    "not-supported"
                },
                "searchParam": search_params,
                "operation": type_operations(t),
            });
            // FHIR forbids empty arrays: a type with no reference parameters has none to include.
            if !includes.is_empty() {
                r["searchInclude"] = json!(includes);
            }
            if !revincludes.is_empty() {
                r["searchRevInclude"] = json!(revincludes);
            }
            r
        })
        .collect();
    let mut statement = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "Sektorbro",
        "kind": "instance",
        "software": {"name": "Sektorbro", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Sektorbro FHIR R4 gateway", "url": base},
        // The Bulk Data IG's server CapabilityStatement ($export at all three levels).
        "instantiates": [crate::bulk::BULK_CAPABILITY],
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        // PATCH bodies: JSON Patch, and FHIRPath Patch (a Parameters resource).
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            // Clients learn here how to authenticate (this endpoint is open to anyone).
            "security": {
                "cors": false,
                "service": [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                    "code": "SMART-on-FHIR"
                }]}],
                "description": "Bearer JWTs (SMART Backend Services style: RS256/RS384/ES256/ES384 from the configured issuers, system/ scopes, SMART v1 and v2) or TLS client certificates of configured clients. Resources of other organizations answer 404."
            },
            "resource": resources,
            "interaction": system_interactions(),
            "operation": system_operations(),
        }],
    });
    if let Some((authorize, token)) = oauth_uris {
        statement["rest"][0]["security"]["extension"] = json!([{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [{"url": "token", "valueUri": token},
                {"url": "authorize", "valueUri": authorize}]
        }]);
    }
    statement
}

/// The operations the table serves on `rtype`.
fn type_operations(rtype: &str) -> Vec<Value> {
    operations::table()
        .iter()
        .filter_map(|o| match o.capability {
            Capability::TypeOperation {
                name,
                definition,
                types,
            } if types.is_none_or(|ts| ts.contains(&rtype)) => {
                Some(json!({"name": name, "definition": definition}))
            }
            _ => None,
        })
        .collect()
}

/// The system-level interactions the table serves.
fn system_interactions() -> Vec<Value> {
    let mut codes: Vec<&str> = Vec::new();
    for o in operations::table() {
        if let Capability::System(list) = o.capability {
            codes.extend(
                list.iter()
                    .filter(|c| !codes.contains(c))
                    .collect::<Vec<_>>(),
            );
        }
    }
    codes.into_iter().map(|c| json!({"code": c})).collect()
}

/// The system-level operations the table serves.
fn system_operations() -> Vec<Value> {
    operations::table()
        .iter()
        .filter_map(|o| match o.capability {
            Capability::SystemOperation { name, definition } => {
                Some(json!({"name": name, "definition": definition}))
            }
            _ => None,
        })
        .collect()
}

pub async fn metadata(
    state: web::Data<AppState>,
    ctx: RequestContext,
) -> Result<HttpResponse, FhirError> {
    Ok(ok_json(
        capability_statement(
            state.engine.registry(),
            ctx.base(),
            &state.started,
            crate::api::smart::oauth_uris(&state.config),
        )
        .to_string(),
    ))
}
