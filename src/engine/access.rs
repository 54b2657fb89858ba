//! What one caller may do, as the engine enforces it on every interaction: SMART scopes (which
//! interactions on which types) and tenancy (which resources).
//!
//! Tenancy is by organization. A resource id is owned by the organization that first wrote it
//! (set here, never taken from the body). A client reads what its organizations own, directory
//! and conformance resources ([`SHARED_TYPES`](crate::store::SHARED_TYPES)), and what an owner
//! granted its organizations about a citizen (a discharge note addressed to it, or a share); it
//! changes only what its organizations own. Administrators and the gateway itself see everything.
//! A resource outside a caller's tenancy answers exactly as an unknown one does (404).

use std::sync::Arc;

use crate::auth::{Caller, ClientKind, Permission, Scopes};
use crate::error::FhirError;
use crate::store::Visibility;
use fhir_core::fhir::outcome::Issue;

/// A caller's rights, handed to every [`Engine`](super::Engine) interaction.
#[derive(Debug, Clone)]
pub struct Access {
    /// Who, for messages and audit.
    pub client_id: String,
    scopes: Scopes,
    /// `None`: every resource.
    orgs: Option<Arc<[String]>>,
    /// Recorded as the owner of ids this caller creates.
    owner: Option<String>,
    /// Distinguishes cached search pages of callers who may see different things.
    key: String,
}

impl Access {
    /// The gateway itself (CLI, internal work): every resource, every interaction.
    pub fn gateway() -> Access {
        Access {
            client_id: "sektorbro".into(),
            scopes: Scopes::all(),
            orgs: None,
            owner: None,
            key: "*".into(),
        }
    }

    /// Nobody: no scopes, no organizations (the open endpoints, which touch no data).
    pub fn anonymous() -> Access {
        Access {
            client_id: "anonymous".into(),
            scopes: Scopes::default(),
            orgs: Some(Vec::new().into()),
            owner: None,
            key: "-".into(),
        }
    }

    /// An authenticated caller: administrators see everything; others their organizations'.
    pub fn for_caller(caller: &Caller) -> Access {
        Access::for_client(&caller.client, &caller.scopes)
    }

    /// A configured client with `scopes` granted (already cut to its ceiling): a caller's
    /// rights, also when they are restored for work it started earlier (a bulk export).
    pub fn for_client(c: &crate::auth::Client, scopes: &Scopes) -> Access {
        let scopes = scopes.clone();
        let orgs: Option<Arc<[String]>> = match c.kind {
            ClientKind::Admin => None,
            _ => Some(c.organizations.clone().into()),
        };
        let owner = match c.kind {
            ClientKind::Admin => None,
            _ => c.organizations.first().cloned(),
        };
        let key = format!(
            "{}|{}",
            orgs.as_ref().map_or("*".to_string(), |o| o.join(",")),
            scopes
        );
        Access {
            client_id: c.id.clone(),
            scopes,
            orgs,
            owner,
            key,
        }
    }

    /// A client of `orgs` with every scope (unit tests of the rules built on `Access`).
    #[cfg(test)]
    pub(crate) fn for_organizations(client_id: &str, orgs: &[&str]) -> Access {
        let orgs: Vec<String> = orgs.iter().map(|o| o.to_string()).collect();
        Access {
            client_id: client_id.into(),
            scopes: Scopes::all(),
            owner: orgs.first().cloned(),
            key: orgs.join(","),
            orgs: Some(orgs.into()),
        }
    }

    /// The same rights, writing new ids as owned by `owner` (which must be one of the caller's
    /// organizations unless the caller sees everything).
    pub fn owning(mut self, owner: &str) -> Result<Access, FhirError> {
        if let Some(orgs) = &self.orgs {
            if !orgs.iter().any(|o| o == owner) {
                return Err(FhirError::new(
                    403,
                    vec![Issue::error(
                        "forbidden",
                        format!("client {} does not act for {owner}", self.client_id),
                    )],
                ));
            }
        }
        self.owner = Some(owner.to_string());
        Ok(self)
    }

    /// Whether the caller sees every resource (administrators, the gateway).
    pub fn sees_everything(&self) -> bool {
        self.orgs.is_none()
    }

    /// The organizations the caller acts for (empty for those who see everything).
    pub fn organizations(&self) -> &[String] {
        self.orgs.as_deref().unwrap_or(&[])
    }

    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    pub fn scopes(&self) -> &Scopes {
        &self.scopes
    }

    pub(crate) fn cache_key(&self) -> &str {
        &self.key
    }

    /// What the caller may read.
    pub fn readable(&self) -> Visibility {
        match &self.orgs {
            None => Visibility::All,
            Some(o) => Visibility::Readable(o.clone()),
        }
    }

    /// What the caller may change.
    pub fn writable(&self) -> Visibility {
        match &self.orgs {
            None => Visibility::All,
            Some(o) => Visibility::Owned(o.clone()),
        }
    }

    /// 403 unless the scopes grant `permission` on `rtype`. (Scopes are the caller's own to
    /// know, so refusing by scope reveals nothing about the data.)
    /// The audit log (AuditEvent) is for administrators only, whatever the scopes say.
    pub fn permit(&self, rtype: &str, permission: Permission) -> Result<(), FhirError> {
        if rtype == "AuditEvent" && !self.sees_everything() {
            return Err(FhirError::new(
                403,
                vec![Issue::error(
                    "forbidden",
                    format!(
                        "the audit log is readable by administrator clients only; {} is not one",
                        self.client_id
                    ),
                )],
            ));
        }
        if self.scopes.allows(rtype, permission) {
            Ok(())
        } else {
            Err(insufficient_scope(
                &self.client_id,
                &Scopes::needed(rtype, permission),
            ))
        }
    }

    /// 403 unless the scopes grant `permission` on every type.
    pub fn permit_all_types(&self, permission: Permission) -> Result<(), FhirError> {
        if self.scopes.allows_every_type(permission) {
            Ok(())
        } else {
            Err(insufficient_scope(
                &self.client_id,
                &Scopes::needed("*", permission),
            ))
        }
    }
}

fn insufficient_scope(client: &str, needed: &str) -> FhirError {
    FhirError::new(
        403,
        vec![Issue::error(
            "forbidden",
            format!("the access token of client {client} does not grant {needed}"),
        )],
    )
}

/// The Patient a resource is about, as tenancy grants name it: the Patient itself, or the
/// first `subject`, `patient` or `beneficiary` that refers to a Patient by relative reference.
pub fn citizen_of(rtype: &str, id: &str, resource: &serde_json::Value) -> Option<String> {
    if rtype == "Patient" {
        return Some(id.to_string());
    }
    ["subject", "patient", "beneficiary"].iter().find_map(|k| {
        resource
            .get(k)?
            .get("reference")?
            .as_str()?
            .strip_prefix("Patient/")
            .filter(|rest| fhir_core::fhir::is_valid_id(rest))
            .map(str::to_string)
    })
}
