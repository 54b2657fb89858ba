//! The FHIR interactions as domain operations, independent of HTTP: create, read, update, delete,
//! history, search, transaction and batch, over any [`Storage`].
//!
//! Invariants kept here: every write is one database transaction (retried whole when the database
//! reports a conflict); versions of a resource are consecutive; conditional interactions search
//! and write inside the same transaction under a lock on their criteria, so concurrent identical
//! requests cannot both create.

mod access;
mod bundle;
mod bundle_json;
pub mod directory;
mod policy;
mod questionnaires;
mod search;

use std::sync::Arc;

use serde_json::{json, Value};

use crate::auth::Permission;
use crate::config::SearchConfig;
use crate::error::FhirError;
use crate::store::{
    Head, HistoryQuery, HistoryScope, NewVersion, Storage, StoreTx, StoredResource,
};
use fhir_core::fhir::outcome::Issue;
use fhir_core::fhir::search::{parse_search, ParseOptions, SearchQuery};
use fhir_core::fhir::search_params::SearchParamRegistry;
use fhir_core::fhir::{instant, is_supported_type, is_valid_id, new_id};

pub use access::{citizen_of, Access};
pub use bundle::BundleKind;
pub use bundle_json::BundleEntry;
pub use policy::WritePolicy;

/// How many times a write is attempted when the database reports a retryable conflict.
const WRITE_ATTEMPTS: usize = 8;

/// The FHIR server logic shared by every surface (REST, municipal endpoints, CLI).
pub struct Engine {
    store: Arc<dyn Storage>,
    registry: &'static SearchParamRegistry,
    search: SearchConfig,
    validation: Option<Arc<crate::engine::WritePolicy>>,
    /// Upstream lookups; validation asks its terminology server what local packages cannot judge.
    lookups: Arc<crate::lookup::Lookups>,
    /// Rendered search pages, if enabled (`Engine::with_page_cache`).
    pages: Option<search::PageCache>,
    /// Whose identity only they may assert in directory resources (`directory.rs`).
    tenants: directory::Tenants,
}

/// A write to perform.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// POST: create with a server id, unless `if_none_exist` finds a match.
    Create {
        rtype: String,
        resource: Value,
        if_none_exist: Option<SearchQuery>,
    },
    /// PUT Type/id: update, or create with the client's id.
    Update {
        rtype: String,
        id: String,
        resource: Value,
        if_match: Option<i64>,
    },
    /// PUT Type?criteria.
    ConditionalUpdate {
        rtype: String,
        criteria: SearchQuery,
        resource: Value,
        if_match: Option<i64>,
    },
    /// DELETE Type/id.
    Delete { rtype: String, id: String },
    /// DELETE Type?criteria: delete the one match (none: nothing to do; several: 412).
    ConditionalDelete {
        rtype: String,
        criteria: SearchQuery,
    },
}

impl WriteOp {
    /// The type written.
    pub fn rtype(&self) -> &str {
        match self {
            WriteOp::Create { rtype, .. }
            | WriteOp::Update { rtype, .. }
            | WriteOp::ConditionalUpdate { rtype, .. }
            | WriteOp::Delete { rtype, .. }
            | WriteOp::ConditionalDelete { rtype, .. } => rtype,
        }
    }
}

/// A PATCH body: a JSON Patch (`application/json-patch+json`) or a FHIRPath Patch (a
/// `Parameters` resource in `application/fhir+json`).
#[derive(Debug, Clone)]
pub enum PatchDocument {
    Json(json_patch::Patch),
    FhirPath(Vec<fhir_core::fhirpath::patch::PatchOp>),
}

/// What a write did.
#[derive(Debug, Clone)]
pub struct Written {
    /// 201 created, 200 updated (or matched by a conditional create), 204 deleted.
    pub status: u16,
    pub rtype: String,
    pub id: String,
    pub version: i64,
    pub last_updated_ms: i64,
    /// The stored resource JSON (None for deletions).
    pub content: Option<String>,
    /// A conditional create found this existing resource and wrote nothing.
    pub matched_existing: bool,
}

/// A write whose target id is decided (phase one of a write).
#[derive(Debug, Clone)]
pub(crate) enum Resolved {
    Create {
        rtype: String,
        id: String,
        resource: Value,
    },
    Update {
        rtype: String,
        id: String,
        resource: Value,
        if_match: Option<i64>,
    },
    Delete {
        rtype: String,
        id: String,
    },
    Existing {
        rtype: String,
        id: String,
    },
    /// A conditional delete that matched nothing.
    Nothing {
        rtype: String,
    },
}

impl Resolved {
    pub(crate) fn resource_mut(&mut self) -> Option<&mut Value> {
        match self {
            Resolved::Create { resource, .. } | Resolved::Update { resource, .. } => Some(resource),
            _ => None,
        }
    }

    pub(crate) fn key(&self) -> (&str, &str) {
        match self {
            Resolved::Create { rtype, id, .. }
            | Resolved::Update { rtype, id, .. }
            | Resolved::Delete { rtype, id }
            | Resolved::Existing { rtype, id } => (rtype, id),
            Resolved::Nothing { rtype } => (rtype, ""),
        }
    }
}

/// Run `unit`, one whole database transaction, until it succeeds or fails for good: a retryable
/// conflict (version race, busy database) runs it again after a short, growing pause, up to
/// [`WRITE_ATTEMPTS`] times. Every write path of the engine retries through here.
pub(crate) async fn retrying<T, Fut>(mut unit: impl FnMut() -> Fut) -> Result<T, FhirError>
where
    Fut: std::future::Future<Output = Result<T, WriteFailure>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match unit().await {
            Err(WriteFailure::Retry(e)) if attempt < WRITE_ATTEMPTS => {
                tracing::debug!(attempt, error = %e, "retrying after a conflict");
                tokio::time::sleep(std::time::Duration::from_millis(2 << attempt.min(6))).await;
            }
            Err(e) => return Err(e.into()),
            Ok(v) => return Ok(v),
        }
    }
}

/// The answer for an id that does not exist or is outside the caller's tenancy: the same words,
/// so the two cannot be told apart.
fn unknown(rtype: &str, id: &str) -> FhirError {
    FhirError::not_found(format!("{rtype}/{id} is not known"))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Types the gateway writes itself and clients may only read, search and see the history of.
pub const READ_ONLY_TYPES: &[&str] = &["AuditEvent"];

/// 405 for a type in [`READ_ONLY_TYPES`].
fn refuse_read_only(rtype: &str) -> Result<(), FhirError> {
    if READ_ONLY_TYPES.contains(&rtype) {
        return Err(FhirError::not_supported(
            405,
            format!("{rtype} resources are written by the gateway only; they cannot be created, changed or deleted through the API"),
        ));
    }
    Ok(())
}

/// Parse `W/"3"` (or `"3"`, or `3`) into a version number.
pub fn parse_etag(s: &str) -> Option<i64> {
    s.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .ok()
}

impl Engine {
    pub fn new(store: Arc<dyn Storage>, search: SearchConfig) -> Engine {
        Engine {
            store,
            registry: SearchParamRegistry::embedded(),
            search,
            validation: None,
            lookups: Arc::new(crate::lookup::Lookups::none()),
            pages: None,
            tenants: directory::Tenants::default(),
        }
    }

    /// The organizations configured clients act for: only they (and administrators) may write
    /// directory resources carrying their identifiers (see `directory.rs`).
    pub fn with_tenants(mut self, tenants: directory::Tenants) -> Engine {
        self.tenants = tenants;
        self
    }

    /// Validate every created or updated resource by `policy` before it is written.
    pub fn with_validation(mut self, policy: Arc<crate::engine::WritePolicy>) -> Engine {
        self.validation = Some(policy);
        self
    }

    /// Use these upstream lookups (by default none are configured).
    pub fn with_lookups(mut self, lookups: Arc<crate::lookup::Lookups>) -> Engine {
        self.lookups = lookups;
        self
    }

    /// The upstream lookups (patients, organizations, terminology, key sets).
    pub fn lookups(&self) -> &Arc<crate::lookup::Lookups> {
        &self.lookups
    }

    /// The validator behind write validation, if any.
    pub fn validation(&self) -> Option<&Arc<crate::engine::WritePolicy>> {
        self.validation.as_ref()
    }

    /// Whether the gateway's own word that a resource is valid (see
    /// [`Engine::record_transaction`]) is all the write policy asks for this operation.
    pub(crate) fn vouch_suffices(&self, op: &WriteOp) -> bool {
        let Some(policy) = &self.validation else {
            return true;
        };
        let rtype = match op {
            WriteOp::Create { rtype, .. }
            | WriteOp::Update { rtype, .. }
            | WriteOp::ConditionalUpdate { rtype, .. } => rtype,
            _ => return true,
        };
        policy.required_for(rtype).is_empty() && !policy.validator.extended()
    }

    /// Profile validation of the resource an operation writes (outside any transaction: it needs
    /// no data, and locks should not wait for it). Bindings the local terminology cannot judge
    /// are settled by the terminology server, when one is configured, before the verdict.
    ///
    /// A QuestionnaireResponse whose Questionnaire is neither contained, in the Bundle nor in
    /// the loaded packages is checked against the stored one `vis` lets the writer read; one
    /// that cannot be found is a warning.
    pub(crate) async fn validate_op(
        &self,
        op: &WriteOp,
        vis: &crate::store::Visibility,
    ) -> Result<(), FhirError> {
        use tracing::Instrument as _;
        let rtype = match op {
            WriteOp::Create { rtype, .. }
            | WriteOp::Update { rtype, .. }
            | WriteOp::ConditionalUpdate { rtype, .. } => rtype.as_str(),
            _ => return Ok(()),
        };
        let span = tracing::debug_span!(
            "validation",
            fhir.resource_type = rtype,
            validation.valid = tracing::field::Empty
        );
        let verdict = self.validate_write(op, vis).instrument(span.clone()).await;
        span.record("validation.valid", verdict.is_ok());
        verdict
    }

    /// [`Engine::validate_op`] without its span.
    async fn validate_write(
        &self,
        op: &WriteOp,
        vis: &crate::store::Visibility,
    ) -> Result<(), FhirError> {
        let Some(policy) = &self.validation else {
            return Ok(());
        };
        match op {
            WriteOp::Create {
                rtype, resource, ..
            }
            | WriteOp::Update {
                rtype, resource, ..
            }
            | WriteOp::ConditionalUpdate {
                rtype, resource, ..
            } => {
                // Shape errors (wrong type, id mismatch) are reported by check_body with 400.
                if resource.get("resourceType").and_then(Value::as_str) != Some(rtype.as_str())
                    || policy.mode == crate::config::ValidationMode::Off
                {
                    return Ok(());
                }
                let required = policy.required_for(rtype);
                let mut validated = policy.validator.validate_detailed(resource, required);
                if !validated.missing_questionnaires.is_empty() {
                    let stored = questionnaires::StoredQuestionnaires {
                        engine: self,
                        vis: vis.clone(),
                    };
                    validated = policy
                        .validator
                        .resolve_questionnaires(&stored, resource, required, validated)
                        .await;
                }
                let issues = match self.lookups.terminology() {
                    Some(t) if validated.needs_terminology() => {
                        fhir_core::validation::settle::settle(t, validated).await
                    }
                    _ => validated.issues,
                };
                policy.judge(rtype, issues)?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The Questionnaires `validated` could not find, looked up among the stored ones `vis`
    /// may read; `resource` validated again when any is found (`$validate`).
    pub async fn with_stored_questionnaires(
        &self,
        validator: &fhir_core::validation::Validator,
        vis: &crate::store::Visibility,
        resource: &Value,
        profiles: &[String],
        validated: fhir_core::validation::Validated,
    ) -> fhir_core::validation::Validated {
        if validated.missing_questionnaires.is_empty() {
            return validated;
        }
        let stored = questionnaires::StoredQuestionnaires {
            engine: self,
            vis: vis.clone(),
        };
        validator
            .resolve_questionnaires(&stored, resource, profiles, validated)
            .await
    }

    pub fn store(&self) -> &Arc<dyn Storage> {
        &self.store
    }

    pub fn registry(&self) -> &'static SearchParamRegistry {
        self.registry
    }

    /// 404 for types this server does not serve.
    pub fn check_type(&self, rtype: &str) -> Result<(), FhirError> {
        if is_supported_type(rtype) {
            Ok(())
        } else {
            Err(FhirError::not_supported(
                404,
                format!(
                    "Resource type {rtype:?} is not supported by this server (see /fhir/metadata)"
                ),
            ))
        }
    }

    fn check_id(id: &str) -> Result<(), FhirError> {
        if is_valid_id(id) {
            Ok(())
        } else if fhir_core::fhir::is_dots(id) && !id.is_empty() {
            Err(FhirError::bad_request(format!(
                "{id:?} is not a valid resource id: an id of dots only is a '.' or '..' segment in URLs"
            )))
        } else {
            Err(FhirError::bad_request(format!(
                "{id:?} is not a valid resource id (1-64 characters of A-Z, a-z, 0-9, '-' and '.')"
            )))
        }
    }

    /// Parse search criteria given as a query string (`identifier=a|b&status=active`).
    pub fn parse_criteria(
        &self,
        rtype: &str,
        query: &str,
        lenient: bool,
    ) -> Result<SearchQuery, FhirError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|e| FhirError::bad_request(format!("malformed query string: {e}")))?;
        self.parse_pairs(rtype, &pairs, lenient)
    }

    /// Parse conditional-create criteria (`If-None-Exist`, `entry.request.ifNoneExist`) in any
    /// form clients send them: the bare query, or prefixed with `?`, `Type?` or `[base]/Type?`.
    pub fn parse_if_none_exist(&self, rtype: &str, text: &str) -> Result<SearchQuery, FhirError> {
        let query = fhir_core::fhir::search::criteria_query(rtype, text)
            .map_err(|msg| FhirError::new(400, vec![Issue::error("invalid", msg)]))?;
        self.parse_criteria(rtype, query, false)
    }

    /// Parse search pairs on `rtype`, with this server's paging limits.
    pub fn parse_pairs(
        &self,
        rtype: &str,
        pairs: &[(String, String)],
        lenient: bool,
    ) -> Result<SearchQuery, FhirError> {
        parse_search(
            self.registry,
            rtype,
            pairs,
            ParseOptions {
                default_count: self.search.default_count,
                max_count: self.search.max_count,
                lenient,
                caps: self.search.caps(),
            },
        )
        .map_err(|issues| FhirError::new(400, issues))
    }

    // ----- reads -------------------------------------------------------------------------------

    /// The current version; 404 when unknown (or outside the caller's tenancy), 410 when deleted.
    pub async fn read(
        &self,
        access: &Access,
        rtype: &str,
        id: &str,
    ) -> Result<StoredResource, FhirError> {
        self.check_type(rtype)?;
        Self::check_id(id)?;
        access.permit(rtype, Permission::Read)?;
        let found = self.store.read(rtype, id).await?;
        let found = match found {
            Some(r) if self.visible(access, &r).await? => Some(r),
            _ => None,
        };
        match found {
            None => Err(unknown(rtype, id)),
            Some(r) if r.deleted => Err(FhirError::gone(format!(
                "{rtype}/{id} was deleted (version {})",
                r.version
            ))),
            Some(r) => Ok(r),
        }
    }

    /// One version; 404 when that version does not exist (or is outside the caller's
    /// tenancy), 410 when it is a deletion.
    pub async fn vread(
        &self,
        access: &Access,
        rtype: &str,
        id: &str,
        version: &str,
    ) -> Result<StoredResource, FhirError> {
        self.check_type(rtype)?;
        Self::check_id(id)?;
        access.permit(rtype, Permission::Read)?;
        let v: i64 = version.parse().map_err(|_| {
            FhirError::not_found(format!("{version:?} is not a version of {rtype}/{id}"))
        })?;
        let found = self.store.vread(rtype, id, v).await?;
        let found = match found {
            Some(r) if self.visible(access, &r).await? => Some(r),
            _ => None,
        };
        match found {
            None => Err(FhirError::not_found(format!(
                "{rtype}/{id} has no version {v}"
            ))),
            Some(r) if r.deleted => Err(FhirError::gone(format!(
                "version {v} of {rtype}/{id} is a deletion"
            ))),
            Some(r) => Ok(r),
        }
    }

    /// A history Bundle (newest first), paged with `_count`, `_since` and `_page`.
    pub async fn history(
        &self,
        access: &Access,
        scope: HistoryScope<'_>,
        pairs: &[(String, String)],
        base: &str,
    ) -> Result<String, FhirError> {
        let mut count = self.search.default_count;
        let mut since_ms = None;
        let mut before_seq = None;
        let mut errors = Vec::new();
        for (k, v) in pairs {
            match k.as_str() {
                "_count" => match v.parse::<usize>() {
                    Ok(n) => count = n.min(self.search.max_count),
                    Err(_) => errors.push(
                        Issue::error("invalid", "_count must be a whole number")
                            .at(format!("{k}={v}")),
                    ),
                },
                "_since" => match fhir_core::fhir::search_params::date_range(v) {
                    Some((lo, _)) => since_ms = Some(lo),
                    None => errors.push(
                        Issue::error("invalid", "_since must be a FHIR instant")
                            .at(format!("{k}={v}")),
                    ),
                },
                "_page" => match v.parse::<i64>() {
                    Ok(n) => before_seq = Some(n),
                    Err(_) => errors.push(
                        Issue::error("invalid", "_page is not a paging token this server issued")
                            .at(format!("{k}={v}")),
                    ),
                },
                "_format" | "_pretty" => {}
                _ => errors.push(
                    Issue::error(
                        "not-supported",
                        format!("history does not support parameter {k:?}"),
                    )
                    .at(format!("{k}={v}")),
                ),
            }
        }
        if !errors.is_empty() {
            return Err(FhirError::new(400, errors));
        }
        let (rtype_id, path) = match scope {
            HistoryScope::System => {
                access.permit_all_types(Permission::Search)?;
                (None, String::from("_history"))
            }
            HistoryScope::Type(t) => {
                self.check_type(t)?;
                access.permit(t, Permission::Search)?;
                (None, format!("{t}/_history"))
            }
            HistoryScope::Instance(t, id) => {
                self.check_type(t)?;
                Self::check_id(id)?;
                access.permit(t, Permission::Read)?;
                (Some((t, id)), format!("{t}/{id}/_history"))
            }
        };
        // Versions outside the caller's tenancy are left out in SQL: an instance whose every
        // version is outside answers as an unknown one.
        let visibility = access.readable();
        let rows = self
            .store
            .history(&HistoryQuery {
                scope,
                since_ms,
                before_seq,
                limit: count + 1,
                visibility: &visibility,
            })
            .await?;
        if let (Some((t, id)), true) = (rtype_id, rows.is_empty() && before_seq.is_none()) {
            return Err(unknown(t, id));
        }
        let has_next = rows.len() > count;
        let rows = &rows[..rows.len().min(count)];
        let mut keep: Vec<(String, String)> = pairs
            .iter()
            .filter(|(k, _)| k != "_page")
            .cloned()
            .collect();
        let self_link = link(base, &path, pairs);
        let mut links = vec![json!({"relation": "self", "url": self_link})];
        if let (true, Some((seq, _))) = (has_next, rows.last()) {
            keep.push(("_page".into(), seq.to_string()));
            links.push(json!({"relation": "next", "url": link(base, &path, &keep)}));
        }
        let entries = rows
            .iter()
            .map(|(_, r)| bundle_json::history_entry(base, r))
            .collect();
        let mut head = json!({
            "resourceType": "Bundle",
            "id": new_id(),
            "meta": {"lastUpdated": instant(now_ms())},
            "type": "history",
            "link": links,
        });
        if !has_next && before_seq.is_none() {
            head["total"] = json!(rows.len());
        }
        Ok(bundle_json::write(head, entries))
    }

    /// Whether the caller may see `r`: by owner or type without a query, else by a grant.
    pub(crate) async fn visible(
        &self,
        access: &Access,
        r: &StoredResource,
    ) -> Result<bool, FhirError> {
        let vis = access.readable();
        if let Some(answer) = vis.decides(&r.rtype, r.owner.as_deref()) {
            return Ok(answer);
        }
        match (&r.owner, &r.citizen) {
            (Some(owner), Some(citizen)) => Ok(self
                .store
                .granted(access.organizations(), owner, citizen)
                .await?),
            _ => Ok(false),
        }
    }

    // ----- writes ------------------------------------------------------------------------------

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
        retrying(|| self.share_once(access, patient_id, recipient, reason)).await
    }

    async fn share_once(
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
        crate::audit::in_tx::commit(tx, Some(&format!("Patient/{patient_id}")), 200).await?;
        Ok(grant)
    }

    /// Perform one write in its own transaction, retried whole on a retryable conflict.
    pub async fn write(&self, access: &Access, op: WriteOp) -> Result<Written, FhirError> {
        // A type nobody may write is a 405 whatever the body holds, not a 422 about the body.
        refuse_read_only(op.rtype())?;
        self.check_assertions(access, &op)?;
        self.validate_op(&op, &access.readable()).await?;
        let w = retrying(|| self.write_once(access, op.clone())).await?;
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
        rtype: &str,
        id: &str,
        patch: &PatchDocument,
        if_match: Option<i64>,
    ) -> Result<Written, FhirError> {
        refuse_read_only(rtype)?;
        for _ in 0..5 {
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
                PatchDocument::Json(patch) => {
                    json_patch::patch(&mut resource, patch).map_err(|e| {
                        FhirError::new(
                            422,
                            vec![Issue::error(
                                "processing",
                                format!("the patch cannot be applied: {e}"),
                            )
                            .at(format!("PATCH operation {} ({})", e.operation, e.path))],
                        )
                    })?
                }
                PatchDocument::FhirPath(ops) => {
                    let model = match &self.validation {
                        Some(policy) => policy.validator.model(),
                        None => &fhir_core::fhirpath::JsonOnlyModel,
                    };
                    fhir_core::fhirpath::patch::apply(ops, &mut resource, model)
                        .map_err(|issue| FhirError::new(422, vec![issue]))?
                }
            }
            for (key, want) in [("resourceType", rtype), ("id", id)] {
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
            let op = WriteOp::Update {
                rtype: rtype.to_string(),
                id: id.to_string(),
                resource,
                if_match: Some(current.version),
            };
            match self.write(access, op).await {
                Err(e) if e.status == 412 && if_match.is_none() => continue,
                done => return done,
            }
        }
        Err(FhirError::conflict(format!(
            "{rtype}/{id} kept changing while the patch was applied; try again"
        )))
    }

    async fn write_once(&self, access: &Access, op: WriteOp) -> Result<Written, WriteFailure> {
        let mut tx = self.store.begin().await?;
        let resolved = self.resolve(tx.as_mut(), access, op, None).await?;
        let written = self.execute(tx.as_mut(), access, resolved).await?;
        let entity = match written.version {
            0 => format!("{}/{}", written.rtype, written.id),
            v => format!("{}/{}/_history/{v}", written.rtype, written.id),
        };
        crate::audit::in_tx::commit(tx, Some(&entity), written.status).await?;
        Ok(written)
    }

    /// A conditional create that matched returns the matched resource's current state.
    async fn fill_existing(&self, access: &Access, mut w: Written) -> Result<Written, FhirError> {
        if w.matched_existing {
            let r = self.read(access, &w.rtype, &w.id).await?;
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
        self.check_type(rtype)?;
        refuse_read_only(rtype)?;
        access.permit(rtype, permission)?;
        match op {
            WriteOp::Create {
                rtype,
                resource,
                if_none_exist,
            } => {
                self.check_type(&rtype)?;
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
                self.check_type(&rtype)?;
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
                self.check_type(&rtype)?;
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
                self.check_type(&rtype)?;
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
            }),
            Resolved::Create {
                rtype,
                id,
                resource,
            } => {
                let owner = access.owner().map(str::to_string);
                self.put_version(tx, &rtype, &id, None, owner, resource, "POST", None)
                    .await
            }
            Resolved::Update {
                rtype,
                id,
                resource,
                if_match,
            } => {
                tx.lock(&format!("res:{rtype}/{id}")).await?;
                let head = tx.head(&rtype, &id).await?;
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
                self.put_version(tx, &rtype, &id, head, owner, resource, "PUT", if_match)
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
            }),
            Resolved::Delete { rtype, id } => {
                tx.lock(&format!("res:{rtype}/{id}")).await?;
                let head = tx.head(&rtype, &id).await?;
                // Another tenant's resource is, for this caller, one that does not exist.
                let head = head.filter(|h| {
                    access.writable().decides(&rtype, h.owner.as_deref()) == Some(true)
                });
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
                })
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn put_version(
        &self,
        tx: &mut dyn StoreTx,
        rtype: &str,
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
        let citizen = citizen_of(rtype, id, &resource);
        tx.write(&NewVersion {
            rtype,
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
            rtype: rtype.to_string(),
            id: id.to_string(),
            version,
            last_updated_ms: now,
            content: Some(content),
            matched_existing: false,
        })
    }
}

/// Check the parts of a resource body that the REST interaction itself depends on.
fn check_body(rtype: &str, resource: &Value, url_id: Option<&str>) -> Result<(), FhirError> {
    let Some(obj) = resource.as_object() else {
        return Err(FhirError::bad_request(
            "the body must be a JSON object (a FHIR resource)",
        ));
    };
    match obj.get("resourceType").and_then(Value::as_str) {
        Some(t) if t == rtype => {}
        Some(t) => {
            return Err(FhirError::bad_request(format!(
                "the body is a {t} but the request is for {rtype}"
            ))
            .at(&format!("{t}.resourceType")))
        }
        None => {
            return Err(FhirError::bad_request("the body has no resourceType").at("resourceType"))
        }
    }
    if let Some(url_id) = url_id {
        match obj.get("id") {
            Some(Value::String(id)) if id == url_id => {}
            Some(Value::String(id)) => {
                return Err(FhirError::bad_request(format!(
                    "the body's id {id:?} differs from the id in the URL {url_id:?}"
                ))
                .at(&format!("{rtype}.id")))
            }
            _ => {
                return Err(FhirError::bad_request(format!(
                    "an update must carry the resource id {url_id:?} in the body"
                ))
                .at(&format!("{rtype}.id")))
            }
        }
    }
    if let Some(meta) = obj.get("meta") {
        if !meta.is_object() {
            return Err(
                FhirError::bad_request("meta must be an object").at(&format!("{rtype}.meta"))
            );
        }
    }
    Ok(())
}

/// A write that failed: either for good (a FHIR error for the client) or for now (retry it).
#[derive(Debug)]
pub(crate) enum WriteFailure {
    Fhir(FhirError),
    Retry(crate::store::StoreError),
}

impl From<FhirError> for WriteFailure {
    fn from(e: FhirError) -> Self {
        WriteFailure::Fhir(e)
    }
}

impl From<crate::store::StoreError> for WriteFailure {
    fn from(e: crate::store::StoreError) -> Self {
        if e.is_retryable() {
            WriteFailure::Retry(e)
        } else {
            WriteFailure::Fhir(e.into())
        }
    }
}

impl From<WriteFailure> for FhirError {
    fn from(e: WriteFailure) -> Self {
        match e {
            WriteFailure::Fhir(f) => f,
            WriteFailure::Retry(s) => s.into(),
        }
    }
}

/// `{base}/{path}?{pairs}` with the pairs form-encoded.
pub(crate) fn link(base: &str, path: &str, pairs: &[(String, String)]) -> String {
    let query = serde_urlencoded::to_string(pairs).unwrap_or_default();
    if query.is_empty() {
        format!("{base}/{path}")
    } else {
        format!("{base}/{path}?{query}")
    }
}
