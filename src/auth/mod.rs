//! Who is calling and what they may do: SMART scopes ([`scopes`]), configured clients and the
//! verification of their credentials (bearer JWTs, the development token, client certificates).

mod keys;
pub mod scopes;
pub mod subject;
#[cfg(test)]
mod tests;
pub mod token;

use std::sync::Arc;

pub use keys::Alg;
pub use scopes::{Permission, Scopes};
pub use subject::{certificate_subject, connection_certificate_subject, DistinguishedName};
pub use token::{bearer_token, AuthError, AuthStats, Authenticator};

/// What a client is, which decides the endpoints it may use (tenancy is by organization).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    /// A municipality's care system: posts care records and discharge notes, owns what it writes.
    Municipality,
    /// A region's system (e.g. Cosmic Link): reads what was addressed to its organizations.
    Region,
    /// A vendor EHR on the FHIR API: owns what it writes for its organizations.
    Vendor,
    /// Operators: every resource, the admin endpoints, the audit log.
    Admin,
}

impl ClientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Municipality => "municipality",
            ClientKind::Region => "region",
            ClientKind::Vendor => "vendor",
            ClientKind::Admin => "admin",
        }
    }
}

/// A configured client.
#[derive(Debug, Clone)]
pub struct Client {
    /// Our name for it (logs, audit, rate limits).
    pub id: String,
    pub kind: ClientKind,
    /// The organizations it acts for, as identifiers `system|value` (e.g. a SOR code
    /// `urn:oid:1.2.208.176.1.1|…` or an HSA-id `urn:oid:1.2.752.29.4.19|…`). The first one owns
    /// what the client writes; it reads what any of them owns or was sent.
    pub organizations: Vec<String>,
    /// The most its tokens may grant (a token's scopes are cut down to these).
    pub scopes: Scopes,
}

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A bearer JWT from a configured issuer.
    Jwt,
    /// The development client's static token (loopback only).
    DevToken,
    /// A TLS client certificate whose subject maps to a configured client.
    Certificate,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Jwt => "jwt",
            AuthMethod::DevToken => "dev-token",
            AuthMethod::Certificate => "client-certificate",
        }
    }
}

/// An authenticated caller: the client and the scopes granted to this request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub client: Arc<Client>,
    /// Granted: the token's scopes within the client's ceiling (for certificates and the
    /// development token, the client's configured scopes).
    pub scopes: Scopes,
    pub method: AuthMethod,
}
