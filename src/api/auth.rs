//! Authentication at the door: every request but the open ones (health, metrics, the
//! CapabilityStatement) must name a configured client, by bearer token (a JWT from a configured
//! issuer, or the development token on loopback) or by a TLS client certificate mapped to a
//! client. The [`Caller`] goes into the request's extensions, where [`RequestContext`] and the
//! admin gate find it. Refusals are 401 (503 when the issuer's keys cannot be fetched) with an
//! RFC 6750 `WWW-Authenticate` header and an OperationOutcome that says what was wrong.
//!
//! [`RequestContext`]: super::context::RequestContext

use actix_web::dev::ServiceRequest;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpMessage as _, HttpResponse, ResponseError as _};

use crate::auth::{AuthError, Authenticator, Caller};
use crate::error::FhirError;
use fhir_core::fhir::outcome::Issue;

/// The subject of the TLS client certificate of the request's connection (set per connection
/// by the server's `on_connect`, see `app.rs`).
#[derive(Debug, Clone)]
pub struct PeerCertificate {
    pub subject: String,
}

/// Paths anyone may call: liveness, readiness, metrics, the CapabilityStatement and SMART
/// discovery (which tell clients how to authenticate). The operation table says which.
pub fn open_path(path: &str) -> bool {
    super::operations::open_path(path)
}

/// The 401 of a request that reached a handler without a caller (never expected: the middleware
/// refuses first).
pub fn unauthenticated() -> FhirError {
    outcome(&AuthError::Missing)
}

/// A refusal as an OperationOutcome: the error's status, issue code and words.
fn outcome(e: &AuthError) -> FhirError {
    FhirError::new(
        e.status(),
        vec![Issue::error(e.issue_code(), e.to_string())],
    )
}

/// Who is calling: a bearer token if one is sent (it must be valid even when a certificate is
/// presented too), else the connection's client certificate. Every refusal is counted in
/// `sektorbro_auth_refused_total` by its reason.
pub async fn authenticate(auth: &Authenticator, req: &ServiceRequest) -> Result<Caller, AuthError> {
    let refused = |e: AuthError| {
        auth.note_refusal(&e);
        e
    };
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| {
            refused(AuthError::Malformed(
                "the Authorization header is not readable text".into(),
            ))
        })?;
        // Recognized a moment ago (the rate limit asked): hashed and looked up already.
        if let Some(Recognized(caller)) = req.extensions_mut().remove::<Recognized>() {
            auth.note_recognized(&caller);
            return Ok(caller);
        }
        let token = crate::auth::bearer_token(value).map_err(refused)?;
        // Counts its own refusals.
        return auth.bearer(token, peer_is_loopback(req)).await;
    }
    if let Some(cert) = req.conn_data::<PeerCertificate>() {
        return auth.certificate(&cert.subject).ok_or_else(|| {
            refused(AuthError::UnknownClient(format!(
                "no configured client has the certificate subject {:?}",
                cert.subject
            )))
        });
    }
    Err(refused(AuthError::Missing))
}

/// Whether the request's credentials are known good without checking a signature: a bearer
/// token accepted before (still cached), or a TLS client certificate (verified in the
/// handshake) without a bearer token. Such requests skip the per-peer limit, so a flood of bad
/// requests from a shared address (a NAT, a proxy) does not lock out its established clients.
/// A recognized bearer token's caller is kept on the request for [`authenticate`].
pub fn recognized(auth: &Authenticator, req: &ServiceRequest) -> bool {
    let peer_is_loopback = peer_is_loopback(req);
    match req.headers().get(header::AUTHORIZATION) {
        Some(value) => {
            let caller = value
                .to_str()
                .ok()
                .and_then(|v| crate::auth::bearer_token(v).ok())
                .and_then(|t| auth.recognized(t, peer_is_loopback));
            let known = caller.is_some();
            if let Some(c) = caller {
                req.extensions_mut().insert(Recognized(c));
            }
            known
        }
        None => req
            .conn_data::<PeerCertificate>()
            .is_some_and(|c| auth.certificate_known(&c.subject)),
    }
}

/// The caller [`recognized`] found for the request's bearer token.
struct Recognized(Caller);

/// Loopback only when the connection is, and no trusted proxy on it relays someone else.
pub(crate) fn peer_is_loopback(req: &ServiceRequest) -> bool {
    req.peer_addr().is_some_and(|a| a.ip().is_loopback())
        && req
            .app_data::<actix_web::web::Data<super::AppState>>()
            .is_none_or(|s| {
                super::origin::client_ip(req.request(), &s.config.server)
                    .is_some_and(|ip| ip.is_loopback())
            })
}

/// The answer to a refused authentication.
pub fn refused(e: &AuthError) -> HttpResponse {
    let mut res = outcome(e).error_response();
    if let Ok(v) = HeaderValue::from_str(&e.www_authenticate()) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    res
}

/// Put the caller where handlers find it.
pub fn attach(req: &ServiceRequest, caller: Caller) {
    req.extensions_mut().insert(caller);
}
