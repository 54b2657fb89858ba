//! The gateway's own writes: resources it records about itself (AuditEvents), appended as new
//! resources in one database transaction, without the client-facing checks (profile validation,
//! access rules, conditional logic), which are for what clients send.

use serde_json::Value;

use super::Engine;
use crate::error::FhirError;
use fhir_core::fhir::new_id;

impl Engine {
    /// Create every `(type, resource)` as version 1, all in ONE database transaction: all are
    /// written or none. A resource without an `id` gets a new UUID; an id that exists already
    /// fails the whole transaction (a version conflict). Search index entries are extracted as
    /// for any write, so the resources are searchable. Returns the ids, in order.
    ///
    /// Not for anything a client sent: nothing here validates or authorizes.
    pub async fn append_internal(
        &self,
        resources: Vec<(String, Value)>,
    ) -> Result<Vec<String>, FhirError> {
        let mut tx = self.store.begin().await?;
        let mut ids = Vec::with_capacity(resources.len());
        for (rtype, resource) in resources {
            let id = resource
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(new_id, String::from);
            self.put_version(tx.as_mut(), &rtype, &id, None, None, resource, "POST", None)
                .await?;
            ids.push(id);
        }
        tx.commit().await?;
        Ok(ids)
    }
}
