//! Writes: create, update, patch, delete and sharing, each resolved against the current
//! state, validated, and executed with its audit record in one store transaction.

use super::*;

impl Engine {
    /// Let `recipient` (an organization `system|value`) read what the owner of `Patient/id`
    /// holds about that citizen. Only the Patient's owner (or an administrator) may share it;
    /// for anyone else it does not exist (404).
    pub async fn share(
        &self,
        access: &Access,
        patient_id: &str,
        recipient: &str,
        reason: Option<&str>,
    ) -> Result<crate::store::Grant, FhirError> {
        Self::check_id(patient_id)?;
        access.permit("Patient", Permission::Update)?;
        retrying(|_| self.share_once(access, patient_id, recipient, reason)).await
    }

    pub(super) async fn share_once(
        &self,
        access: &Access,
        patient_id: &str,
        recipient: &str,
        reason: Option<&str>,
    ) -> Result<crate::store::Grant, WriteFailure> {
        let mut tx = self.store.begin().await?;
        let head = tx.head("Patient", patient_id).await?.filter(|h| {
            !h.deleted && access.writable().decides("Patient", h.owner.as_deref()) == Some(true)
        });
        let Some(owner) = head.and_then(|h| h.owner) else {
            return Err(match access.sees_everything() {
                // Administrators see unowned Patients, which no grant can name.
                true => FhirError::unprocessable(format!(
                    "Patient/{patient_id} is not known or has no owning organization to share from"
                )),
                false => unknown("Patient", patient_id),
            }
            .into());
        };
        let grant = crate::store::Grant {
            grantee: recipient.to_string(),
            owner,
            citizen: patient_id.to_string(),
            reason: format!(
                "shared by {}{}",
                access.client_id,
                reason.map(|r| format!(": {r}")).unwrap_or_default()
            ),
        };
        tx.grant(&grant, now_ms()).await?;
        let entity = format!("Patient/{patient_id}");
        crate::audit::in_tx::commit(tx, Some(&entity), Some(patient_id), 200).await?;
        Ok(grant)
    }

    /// Perform one write in its own transaction, retried whole on a retryable conflict.
    pub async fn write(&self, access: &Access, op: WriteOp) -> Result<Written, FhirError> {
        // A type nobody may write is a 405 whatever the body holds, not a 422 about the body.
        refuse_read_only(&op.rtype())?;
        self.check_assertions(access, &op)?;
        self.validate_op(&op, &access.readable()).await?;
        let w = retrying(|attempt| self.write_once(access, op.clone(), attempt)).await?;
        self.fill_existing(access, w).await
    }

    /// PATCH: apply a JSON Patch (RFC 6902) or a FHIRPath Patch to the current version and
    /// write the result as an update of exactly that version, validated like any update. All or
    /// nothing: a failing operation (a `test`, a missing path, a path selecting two elements)
    /// writes nothing. Without `If-Match`, a concurrent update in between makes it start again
    /// from the new version.
    pub async fn patch(
        &self,
        access: &Access,
        rtype: ResourceType,
        id: &str,
        patch: &PatchDocument,
        if_match: Option<i64>,
    ) -> Result<Written, FhirError> {
        refuse_read_only(&rtype)?;
        for _ in 0..5 {
            let op = self.patched(access, rtype, id, patch, if_match).await?;
            match self.write(access, op).await {
                Err(e) if e.status == 412 && if_match.is_none() => continue,
                done => return done,
            }
        }
        Err(FhirError::conflict(format!(
            "{rtype}/{id} kept changing while the patch was applied; try again"
        )))
    }

    /// The update a patch asks for: the current version with `patch` applied, to be written
    /// only over that version (`If-Match` it). 412 when `if_match` names another version; 422
    /// when the patch cannot apply or would change the resource's type or id.
    pub(super) async fn patched(
        &self,
        access: &Access,
        rtype: ResourceType,
        id: &str,
        patch: &PatchDocument,
        if_match: Option<i64>,
    ) -> Result<WriteOp, FhirError> {
        let current = self.read(access, rtype, id).await?;
        if let Some(v) = if_match.filter(|v| *v != current.version) {
            return Err(FhirError::precondition_failed(format!(
                "If-Match names version {v}, the current version is {}",
                current.version
            )));
        }
        let mut resource: Value =
            serde_json::from_str(current.content.as_deref().unwrap_or_default())
                .map_err(|e| FhirError::internal(format!("stored resource unreadable: {e}")))?;
        match patch {
            PatchDocument::Json(patch) => json_patch::patch(&mut resource, patch).map_err(|e| {
                FhirError::new(
                    422,
                    vec![
                        Issue::error("processing", format!("the patch cannot be applied: {e}"))
                            .at(format!("PATCH operation {} ({})", e.operation, e.path)),
                    ],
                )
            })?,
            PatchDocument::FhirPath(ops) => {
                let model = match &self.validation {
                    Some(policy) => policy.validator.model(),
                    None => &fhir_core::fhirpath::JsonOnlyModel,
                };
                fhir_core::fhirpath::patch::apply(ops, &mut resource, model)
                    .map_err(|issue| FhirError::new(422, vec![issue]))?
            }
        }
        for (key, want) in [("resourceType", rtype.as_str()), ("id", id)] {
            if resource.get(key).and_then(Value::as_str) != Some(want) {
                return Err(FhirError::new(
                    422,
                    vec![Issue::error(
                        "processing",
                        format!("a patch may not change or remove {key} (must stay {want:?})"),
                    )
                    .at(format!("{rtype}.{key}"))],
                ));
            }
        }
        Ok(WriteOp::Update {
            rtype,
            id: id.to_string(),
            resource,
            if_match: Some(current.version),
        })
    }

    /// One attempt (`attempt`, from 1) of a single write ([`HeadRead::first`]).
    pub(super) async fn write_once(
        &self,
        access: &Access,
        op: WriteOp,
        attempt: usize,
    ) -> Result<Written, WriteFailure> {
        let mut tx = self.store.begin().await?;
        let resolved = self.resolve(tx.as_mut(), access, op, None).await?;
        let written = self
            .execute(tx.as_mut(), access, resolved, HeadRead::first(attempt))
            .await?;
        let entity = match written.version {
            0 => format!("{}/{}", written.rtype, written.id),
            v => format!("{}/{}/_history/{v}", written.rtype, written.id),
        };
        crate::audit::in_tx::commit(
            tx,
            Some(&entity),
            written.citizen.as_deref(),
            written.status,
        )
        .await?;
        Ok(written)
    }

    /// A conditional create that matched returns the matched resource's current state.
    pub(super) async fn fill_existing(
        &self,
        access: &Access,
        mut w: Written,
    ) -> Result<Written, FhirError> {
        if w.matched_existing {
            let r = self.read(access, w.rtype, &w.id).await?;
            w.version = r.version;
            w.last_updated_ms = r.last_updated_ms;
            w.content = r.content;
        }
        Ok(w)
    }

    /// 403 when a client's write asserts another tenant's identity in a directory resource
    /// (`directory.rs`). Not asked of what a mapping vouches for: the organizations a municipal
    /// record names are the municipality's own copies, and matching keeps them from anyone
    /// else's writes.
    pub(crate) fn check_assertions(&self, access: &Access, op: &WriteOp) -> Result<(), FhirError> {
        match op {
            WriteOp::Create {
                rtype, resource, ..
            }
            | WriteOp::Update {
                rtype, resource, ..
            }
            | WriteOp::ConditionalUpdate {
                rtype, resource, ..
            } => self.tenants.check_assertions(access, rtype, resource),
            WriteOp::Delete { .. } | WriteOp::ConditionalDelete { .. } => Ok(()),
        }
    }

    /// Phase one: check the request and decide which id it writes. Conditional criteria are
    /// evaluated here, inside the transaction, under a lock on the criteria.
    pub(crate) async fn resolve(
        &self,
        tx: &mut dyn StoreTx,
        access: &Access,
        op: WriteOp,
        preassigned_id: Option<String>,
    ) -> Result<Resolved, WriteFailure> {
        let (rtype, permission) = match &op {
            WriteOp::Create { rtype, .. } => (rtype, Permission::Create),
            WriteOp::Update { rtype, .. } | WriteOp::ConditionalUpdate { rtype, .. } => {
                (rtype, Permission::Update)
            }
            WriteOp::Delete { rtype, .. } | WriteOp::ConditionalDelete { rtype, .. } => {
                (rtype, Permission::Delete)
            }
        };
        refuse_read_only(rtype)?;
        access.permit(rtype, permission)?;
        match op {
            WriteOp::Create {
                rtype,
                resource,
                if_none_exist,
            } => {
                check_body(&rtype, &resource, None)?;
                if let Some(criteria) = if_none_exist {
                    // The caller's own, and for a directory resource named by an authoritative
                    // identifier, that organization's own: another tenant's never.
                    let vis = self
                        .tenants
                        .conditional_create_scope(access, &rtype, &criteria);
                    match self.matches(tx, &vis, &criteria).await?.as_slice() {
                        [] => {}
                        [one] => {
                            return Ok(Resolved::Existing {
                                rtype,
                                id: one.clone(),
                            })
                        }
                        _ => {
                            return Err(FhirError::precondition_failed(format!(
                            "If-None-Exist criteria match more than one {rtype}; be more specific"
                        ))
                            .into())
                        }
                    }
                }
                let id = preassigned_id.unwrap_or_else(new_id);
                Ok(Resolved::Create {
                    rtype,
                    id,
                    resource,
                })
            }
            WriteOp::Update {
                rtype,
                id,
                resource,
                if_match,
            } => {
                Self::check_id(&id)?;
                check_body(&rtype, &resource, Some(&id))?;
                Ok(Resolved::Update {
                    rtype,
                    id,
                    resource,
                    if_match,
                })
            }
            WriteOp::ConditionalUpdate {
                rtype,
                criteria,
                resource,
                if_match,
            } => {
                let body_id = resource.get("id").and_then(Value::as_str).map(String::from);
                let id = match self
                    .matches(tx, &access.writable(), &criteria)
                    .await?
                    .as_slice()
                {
                    [] => match body_id {
                        Some(id) => id,
                        None => preassigned_id.unwrap_or_else(new_id),
                    },
                    [one] => {
                        if body_id.as_deref().is_some_and(|b| b != one) {
                            return Err(FhirError::bad_request(format!(
                                "the criteria match {rtype}/{one} but the body has id {:?}",
                                body_id.unwrap_or_default()
                            ))
                            .at(&format!("{rtype}.id"))
                            .into());
                        }
                        one.clone()
                    }
                    _ => {
                        return Err(FhirError::precondition_failed(format!(
                        "conditional update criteria match more than one {rtype}; be more specific"
                    ))
                        .into())
                    }
                };
                Self::check_id(&id)?;
                let mut resource = resource;
                resource["id"] = json!(id);
                check_body(&rtype, &resource, Some(&id))?;
                Ok(Resolved::Update {
                    rtype,
                    id,
                    resource,
                    if_match,
                })
            }
            WriteOp::Delete { rtype, id } => {
                Self::check_id(&id)?;
                Ok(Resolved::Delete { rtype, id })
            }
            WriteOp::ConditionalDelete { rtype, criteria } => {
                match self
                    .matches(tx, &access.writable(), &criteria)
                    .await?
                    .as_slice()
                {
                    [] => Ok(Resolved::Nothing { rtype }),
                    [one] => Ok(Resolved::Delete {
                        id: one.clone(),
                        rtype,
                    }),
                    _ => Err(FhirError::precondition_failed(format!(
                        "conditional delete criteria match more than one {rtype}; be more specific"
                    ))
                    .into()),
                }
            }
        }
    }

    /// Ids matching conditional criteria, serialized with every other request using them.
    /// Conditional writes match only what the caller may change (`vis`): another tenant's
    /// resource is neither matched nor revealed.
    pub(crate) async fn matches(
        &self,
        tx: &mut dyn StoreTx,
        vis: &crate::store::Visibility,
        criteria: &SearchQuery,
    ) -> Result<Vec<String>, WriteFailure> {
        if criteria.filters.is_empty() {
            return Err(FhirError::bad_request(
                "conditional criteria must contain at least one search parameter",
            )
            .into());
        }
        let key = format!("cond:{}?{:?}", criteria.rtype, criteria.canonical_params);
        tx.lock(&key).await?;
        Ok(tx.search_ids(criteria, 2, vis).await?)
    }

    /// Phase two: write the version.
    pub(crate) async fn execute(
        &self,
        tx: &mut dyn StoreTx,
        access: &Access,
        op: Resolved,
        heads: HeadRead,
    ) -> Result<Written, WriteFailure> {
        match op {
            Resolved::Existing { rtype, id } => Ok(Written {
                status: 200,
                rtype,
                id,
                version: 0,
                last_updated_ms: 0,
                content: None,
                matched_existing: true,
                citizen: None,
            }),
            Resolved::Create {
                rtype,
                id,
                resource,
            } => {
                let owner = access.owner().map(str::to_string);
                self.put_version(tx, rtype, &id, None, owner, resource, "POST", None)
                    .await
            }
            Resolved::Update {
                rtype,
                id,
                resource,
                if_match,
            } => {
                tx.lock(&format!("res:{rtype}/{id}")).await?;
                let head = heads.read(tx, &rtype, &id).await?;
                let owner = match &head {
                    // An id keeps its owner; another tenant's id is not there for this caller.
                    Some(h) => {
                        if access.writable().decides(&rtype, h.owner.as_deref()) != Some(true) {
                            return Err(FhirError::not_found(format!(
                                "{rtype}/{id} is not known; its id cannot be used"
                            ))
                            .into());
                        }
                        if h.deleted {
                            access.permit(&rtype, Permission::Create)?;
                        }
                        h.owner.clone()
                    }
                    None => {
                        access.permit(&rtype, Permission::Create)?;
                        access.owner().map(str::to_string)
                    }
                };
                self.put_version(tx, rtype, &id, head, owner, resource, "PUT", if_match)
                    .await
            }
            Resolved::Nothing { rtype } => Ok(Written {
                status: 204,
                rtype,
                id: String::new(),
                version: 0,
                last_updated_ms: 0,
                content: None,
                matched_existing: false,
                citizen: None,
            }),
            Resolved::Delete { rtype, id } => {
                tx.lock(&format!("res:{rtype}/{id}")).await?;
                let head = heads.read(tx, &rtype, &id).await?;
                // Another tenant's resource is, for this caller, one that does not exist.
                let head = head.filter(|h| {
                    access.writable().decides(&rtype, h.owner.as_deref()) == Some(true)
                });
                let citizen = head.as_ref().and_then(|h| h.citizen.clone());
                let (version, last_updated_ms) = match head {
                    Some(h) if !h.deleted => {
                        let now = now_ms();
                        tx.write(&NewVersion {
                            rtype: &rtype,
                            id: &id,
                            version: h.version + 1,
                            last_updated_ms: now,
                            method: "DELETE",
                            content: None,
                            index: &[],
                            kpi: None,
                            owner: h.owner.as_deref(),
                            citizen: h.citizen.as_deref(),
                        })
                        .await?;
                        (h.version + 1, now)
                    }
                    // Deleting what is already gone (or never was) changes nothing.
                    Some(h) => (h.version, 0),
                    None => (0, 0),
                };
                Ok(Written {
                    status: 204,
                    rtype,
                    id,
                    version,
                    last_updated_ms,
                    content: None,
                    matched_existing: false,
                    citizen,
                })
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn put_version(
        &self,
        tx: &mut dyn StoreTx,
        rtype: ResourceType,
        id: &str,
        head: Option<Head>,
        owner: Option<String>,
        mut resource: Value,
        method: &'static str,
        if_match: Option<i64>,
    ) -> Result<Written, WriteFailure> {
        if let Some(expected) = if_match {
            match &head {
                Some(h) if !h.deleted && h.version == expected => {}
                Some(h) => {
                    return Err(FhirError::precondition_failed(format!(
                        "If-Match expects version {expected} of {rtype}/{id}, but the current version is {}{}",
                        h.version,
                        if h.deleted { " (deleted)" } else { "" }
                    ))
                    .into())
                }
                None => {
                    return Err(FhirError::precondition_failed(format!(
                        "If-Match expects version {expected} of {rtype}/{id}, which does not exist"
                    ))
                    .into())
                }
            }
        }
        let version = head.as_ref().map_or(1, |h| h.version + 1);
        let now = now_ms();
        resource["id"] = json!(id);
        let meta = resource
            .as_object_mut()
            .map(|o| o.entry("meta").or_insert_with(|| json!({})));
        if let Some(Value::Object(meta)) = meta {
            meta.insert("versionId".into(), json!(version.to_string()));
            meta.insert("lastUpdated".into(), json!(instant(now)));
        }
        let content = serde_json::to_string(&resource)
            .map_err(|e| FhirError::internal(format!("cannot serialize resource: {e}")))?;
        let index = self.registry.extract(&resource);
        let kpi = crate::store::kpis::fact(&resource, &index);
        let citizen = citizen_of(&rtype, id, &resource);
        tx.write(&NewVersion {
            rtype: &rtype,
            id,
            version,
            last_updated_ms: now,
            method,
            content: Some(&content),
            index: &index,
            kpi: kpi.as_ref(),
            owner: owner.as_deref(),
            citizen: citizen.as_deref(),
        })
        .await?;
        let created = head.is_none_or(|h| h.deleted);
        Ok(Written {
            status: if created { 201 } else { 200 },
            rtype,
            id: id.to_string(),
            version,
            last_updated_ms: now,
            content: Some(content),
            matched_existing: false,
            citizen,
        })
    }
}

/// Where a write reads the head of the resource it writes a version of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadRead {
    /// As committed, where the store can read it outside the transaction
    /// ([`StoreTx::head_to_write`]).
    Committed,
    /// Inside the transaction.
    InTransaction,
}

impl HeadRead {
    /// A write's (or a transaction Bundle's) first attempt reads as committed; a retry, which
    /// follows a version conflict, reads inside its transaction, so that writers of a
    /// contended resource take turns instead of conflicting again.
    pub(crate) fn first(attempt: usize) -> HeadRead {
        match attempt {
            1 => HeadRead::Committed,
            _ => HeadRead::InTransaction,
        }
    }

    async fn read(
        self,
        tx: &mut dyn StoreTx,
        rtype: &str,
        id: &str,
    ) -> Result<Option<crate::store::Head>, crate::store::StoreError> {
        match self {
            HeadRead::Committed => tx.head_to_write(rtype, id).await,
            HeadRead::InTransaction => tx.head(rtype, id).await,
        }
    }
}
