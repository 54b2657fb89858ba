//! Who may say that a directory resource *is* an organization, and which directory resources a
//! tenant's conditional writes may match (issue 20: Organization squatting).
//!
//! Directory resources (Organization, Location, …) are readable by every client, so an
//! Organization carrying a tenant's identifier would be taken for that tenant by whoever reads
//! or matches it. Two rules keep that from being abused:
//!
//! - **Assertion.** An identifier that names a tenant (an organization some configured client
//!   acts for: its SOR code, GLN/EAN or HSA-id) may be written on a directory resource only by a
//!   client acting for that organization, or by an administrator (403 naming the rule).
//!   Identifiers of organizations that are not tenants (a hospital, a municipal unit) may be
//!   asserted by anyone, in resources that the asserting tenant owns.
//! - **Matching.** A directory conditional create (`If-None-Exist: identifier=…`, the municipal
//!   records' Organizations) matches only what the caller owns and, when the criteria name an
//!   organization by an authoritative identifier, what that organization owns itself. Another
//!   tenant's directory resources are never matched, so none can block or redirect the caller's
//!   writes.
//!
//! This module must never widen what a caller may change: it only narrows.

use std::collections::HashSet;
use std::sync::Arc;

use fhir_core::fhir::outcome::Issue;
use fhir_core::fhir::search::{Match, SearchQuery, TokenSystem};
use serde_json::Value;

use super::Access;
use crate::error::FhirError;
use crate::store::Visibility;

/// Identifier systems that say which organization something is: SOR (Denmark), GLN/EAN
/// (`dk-core-gln-identifier`), HSA-id (Sweden).
pub const AUTHORITATIVE_SYSTEMS: &[&str] = &[
    "urn:oid:1.2.208.176.1.1",
    "https://www.gs1.org/gln",
    "urn:oid:1.2.752.29.4.19",
];

/// Directory types whose identifiers say which organization (or unit) they are.
const DIRECTORY_TYPES: &[&str] = &[
    "Organization",
    "Location",
    "HealthcareService",
    "Endpoint",
    "PractitionerRole",
];

/// The organizations configured clients act for (`system|value`), whose identity only they and
/// administrators may assert.
#[derive(Debug, Clone, Default)]
pub struct Tenants(Arc<HashSet<String>>);

impl Tenants {
    pub fn new(organizations: impl IntoIterator<Item = String>) -> Tenants {
        Tenants(Arc::new(organizations.into_iter().collect()))
    }

    /// 403 when `resource` (a directory type) carries an identifier naming a tenant that
    /// `access` does not act for.
    pub fn check_assertions(
        &self,
        access: &Access,
        rtype: &str,
        resource: &Value,
    ) -> Result<(), FhirError> {
        if access.sees_everything() || !DIRECTORY_TYPES.contains(&rtype) {
            return Ok(());
        }
        let Some(ids) = resource.get("identifier").and_then(Value::as_array) else {
            return Ok(());
        };
        let mut issues = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let (Some(system), Some(value)) = (
                id.get("system").and_then(Value::as_str),
                id.get("value").and_then(Value::as_str),
            ) else {
                continue;
            };
            let key = format!("{system}|{value}");
            if self.0.contains(&key) && !access.organizations().contains(&key) {
                issues.push(
                    Issue::error(
                        "forbidden",
                        format!(
                            "{key} names an organization that client {} does not act for; only \
                             clients acting for it, or administrators, may write a {rtype} with \
                             that identifier",
                            access.client_id
                        ),
                    )
                    .at(format!("{rtype}.identifier[{i}]")),
                );
            }
        }
        if issues.is_empty() {
            Ok(())
        } else {
            Err(FhirError::new(403, issues))
        }
    }

    /// What a conditional create of `rtype` by `access` may match: for directory types, the
    /// caller's own and those of the organization the criteria name by an authoritative
    /// identifier; for others, the caller's own.
    pub fn conditional_create_scope(
        &self,
        access: &Access,
        rtype: &str,
        criteria: &SearchQuery,
    ) -> Visibility {
        let own = access.writable();
        let Visibility::Owned(orgs) = &own else {
            return own;
        };
        if !DIRECTORY_TYPES.contains(&rtype) {
            return own;
        }
        let named = named_organizations(criteria);
        if named.is_empty() {
            return own;
        }
        let mut widened: Vec<String> = orgs.to_vec();
        widened.extend(named);
        Visibility::Owned(widened.into())
    }

    /// What a conditional reference (`Organization?identifier=…` in a transaction) may resolve
    /// to: what the caller can read, except that a directory resource named by an authoritative
    /// identifier resolves only among the caller's own and that organization's own.
    pub fn conditional_reference_scope(
        &self,
        access: &Access,
        rtype: &str,
        criteria: &SearchQuery,
    ) -> Visibility {
        if DIRECTORY_TYPES.contains(&rtype) && !named_organizations(criteria).is_empty() {
            self.conditional_create_scope(access, rtype, criteria)
        } else {
            access.readable()
        }
    }
}

/// The organizations criteria name by one authoritative identifier each (`identifier=SOR|x`).
fn named_organizations(criteria: &SearchQuery) -> Vec<String> {
    criteria
        .filters
        .iter()
        .filter(|f| f.param == "identifier" && !f.negate && f.any_of.len() == 1)
        .filter_map(|f| match &f.any_of[0] {
            Match::Token {
                system: TokenSystem::Is(system),
                code: Some(code),
            } if AUTHORITATIVE_SYSTEMS.contains(&system.as_str()) => {
                Some(format!("{system}|{code}"))
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const A: &str = "urn:oid:1.2.208.176.1.1|425911000016005";

    fn tenants() -> Tenants {
        Tenants::new([A.to_string()])
    }

    #[test]
    fn a_tenants_identifier_is_refused_to_other_clients_and_allowed_to_its_own() {
        let org = json!({"resourceType": "Organization", "identifier": [
            {"system": "urn:oid:1.2.208.176.1.1", "value": "425911000016005"}]});
        let other = Access::for_organizations("b", &["urn:oid:1.2.208.176.1.1|1"]);
        let err = tenants()
            .check_assertions(&other, "Organization", &org)
            .expect_err("squatting refused");
        assert_eq!(err.status, 403);
        let own = Access::for_organizations("a", &[A]);
        assert!(tenants()
            .check_assertions(&own, "Organization", &org)
            .is_ok());
        assert!(tenants()
            .check_assertions(&Access::gateway(), "Organization", &org)
            .is_ok());
        // Identifiers of organizations that are not tenants: anyone, in what it owns.
        let hospital = json!({"resourceType": "Organization", "identifier": [
            {"system": "urn:oid:1.2.208.176.1.1", "value": "999"}]});
        assert!(tenants()
            .check_assertions(&other, "Organization", &hospital)
            .is_ok());
    }
}
