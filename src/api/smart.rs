//! `/.well-known/smart-configuration` (SMART App Launch 2.x, as Backend Services use it), at the
//! root and below `/fhir`: where a client gets its access token and how it must authenticate
//! there. Open to anyone, like the CapabilityStatement. The gateway issues no tokens itself: it
//! publishes the token endpoint of its configured issuer (`[[auth.issuers]] token_endpoint`).

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use crate::api::AppState;
use crate::config::Config;
use crate::error::FhirError;

/// The first configured issuer that publishes a token endpoint: `(iss, token endpoint, jwks)`.
pub fn token_endpoint(config: &Config) -> Option<(&str, &str, &str)> {
    config
        .auth
        .issuers
        .iter()
        .find(|i| !i.token_endpoint.is_empty())
        .map(|i| {
            (
                i.iss.as_str(),
                i.token_endpoint.as_str(),
                i.jwks_url.as_str(),
            )
        })
}

/// The `oauth-uris` pair for the CapabilityStatement: the first issuer with both endpoints.
pub fn oauth_uris(config: &Config) -> Option<(&str, &str)> {
    config
        .auth
        .issuers
        .iter()
        .find(|i| !i.token_endpoint.is_empty() && !i.authorize_endpoint.is_empty())
        .map(|i| (i.authorize_endpoint.as_str(), i.token_endpoint.as_str()))
}

/// The discovery document, or `None` when no issuer publishes a token endpoint.
pub fn configuration(config: &Config) -> Option<Value> {
    let (iss, token, jwks) = token_endpoint(config)?;
    // The algorithms every issuer accepts for client assertions are the issuer's business; these
    // are the ones the gateway verifies in the tokens it is handed.
    let algorithms: Vec<&str> = crate::config::JWT_ALGORITHMS.to_vec();
    let mut doc = json!({
        "issuer": iss,
        "token_endpoint": token,
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": algorithms,
        // SMART v1 and v2 system scopes on every served type; per-type forms work too.
        "scopes_supported": ["system/*.read", "system/*.write", "system/*.*",
            "system/*.rs", "system/*.cruds", "system/*.c", "system/*.u", "system/*.d"],
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
    });
    if let Some((authorize, _)) = oauth_uris(config).filter(|(_, t)| *t == token) {
        doc["authorization_endpoint"] = json!(authorize);
    }
    if !jwks.is_empty() {
        doc["jwks_uri"] = json!(jwks);
    }
    Some(doc)
}

/// `GET /.well-known/smart-configuration` and `GET /fhir/.well-known/smart-configuration`.
pub async fn configuration_handler(state: web::Data<AppState>) -> Result<HttpResponse, FhirError> {
    configuration(&state.config)
        // SMART's own JSON document, not a FHIR resource: `application/json` (SMART App Launch
        // 2.x), so that clients parsing every `application/fhir+json` body as a resource do not
        // choke on it.
        .map(|doc| {
            HttpResponse::Ok()
                .content_type("application/json")
                .body(doc.to_string())
        })
        .ok_or_else(|| {
            FhirError::not_found(
                "SMART discovery is not configured: set token_endpoint on an [[auth.issuers]] entry \
                 (the gateway issues no tokens itself)",
            )
        })
}
