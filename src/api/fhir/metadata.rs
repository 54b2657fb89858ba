//! `GET /fhir/metadata`: a CapabilityStatement built from what this server actually serves —
//! the resource types in [`SUPPORTED_TYPES`] and the search parameters the registry can index.

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use crate::api::context::RequestContext;
use crate::api::response::ok_json;
use crate::api::AppState;
use crate::error::FhirError;
use fhir_core::fhir::search_params::{ParamType, SearchParamRegistry};
use fhir_core::fhir::SUPPORTED_TYPES;

/// Type-level and instance-level interactions every served type supports.
const INTERACTIONS: &[&str] = &[
    "read",
    "vread",
    "update",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
];

/// Where the operations this server runs are defined: R4's own, and ours
/// (`profiles/operations/`).
const VALIDATE: &str = "http://hl7.org/fhir/OperationDefinition/Resource-validate";
const PROCESS_MESSAGE: &str =
    "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message";
pub const PATIENT_SHARE: &str = "http://sektorbro.dk/fhir/OperationDefinition/Patient-share";

/// The CapabilityStatement for `base`, dated `date` (when this instance started).
pub fn capability_statement(registry: &SearchParamRegistry, base: &str, date: &str) -> Value {
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
            let interactions: Vec<Value> =
                INTERACTIONS.iter().map(|c| json!({"code": c})).collect();
            let mut r = json!({
                "type": t,
                "interaction": interactions,
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalUpdate": true,
                "conditionalDelete": "not-supported",
                "searchParam": search_params,
                "operation": operations(t),
            });
            // FHIR forbids empty arrays: a type with no reference parameters has none to include.
            if !includes.is_empty() {
                r["searchInclude"] = json!(includes);
            }
            r
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "Sektorbro",
        "kind": "instance",
        "software": {"name": "Sektorbro", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Sektorbro FHIR R4 gateway", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
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
            "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
            "operation": [{"name": "process-message", "definition": PROCESS_MESSAGE}],
        }],
    })
}

/// The operations a type supports: `$validate` on every type, `$share` on Patient.
fn operations(rtype: &str) -> Vec<Value> {
    let mut ops = vec![json!({"name": "validate", "definition": VALIDATE})];
    if rtype == "Patient" {
        ops.push(json!({"name": "share", "definition": PATIENT_SHARE}));
    }
    ops
}

pub async fn metadata(
    state: web::Data<AppState>,
    ctx: RequestContext,
) -> Result<HttpResponse, FhirError> {
    Ok(ok_json(
        capability_statement(state.engine.registry(), &ctx.base, &state.started).to_string(),
    ))
}
