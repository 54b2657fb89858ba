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
mod read;
mod search;
mod transaction;
mod write;

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
use fhir_core::fhir::{instant, is_valid_id, new_id, ResourceType};

pub use access::{citizen_of, Access};
pub use bundle::{Answer, Checks, Committed};
pub use bundle_json::BundleEntry;
pub use policy::WritePolicy;
pub use transaction::{BundleKind, Transaction};

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
    /// Reading the audit trail first waits for the journal to be copied (`audit::journal`).
    audit_settle: std::sync::OnceLock<crate::audit::Settle>,
}

/// A write to perform.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// POST: create with a server id, unless `if_none_exist` finds a match.
    Create {
        rtype: ResourceType,
        resource: Value,
        if_none_exist: Option<SearchQuery>,
    },
    /// PUT Type/id: update, or create with the client's id.
    Update {
        rtype: ResourceType,
        id: String,
        resource: Value,
        if_match: Option<i64>,
    },
    /// PUT Type?criteria.
    ConditionalUpdate {
        rtype: ResourceType,
        criteria: SearchQuery,
        resource: Value,
        if_match: Option<i64>,
    },
    /// DELETE Type/id.
    Delete { rtype: ResourceType, id: String },
    /// DELETE Type?criteria: delete the one match (none: nothing to do; several: 412).
    ConditionalDelete {
        rtype: ResourceType,
        criteria: SearchQuery,
    },
}

impl WriteOp {
    /// The type written.
    pub fn rtype(&self) -> ResourceType {
        match self {
            WriteOp::Create { rtype, .. }
            | WriteOp::Update { rtype, .. }
            | WriteOp::ConditionalUpdate { rtype, .. }
            | WriteOp::Delete { rtype, .. }
            | WriteOp::ConditionalDelete { rtype, .. } => *rtype,
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
    pub rtype: ResourceType,
    pub id: String,
    pub version: i64,
    pub last_updated_ms: i64,
    /// The stored resource JSON (None for deletions).
    pub content: Option<String>,
    /// A conditional create found this existing resource and wrote nothing.
    pub matched_existing: bool,
    /// The Patient id the written version is about (`access::citizen_of`), for its audit record.
    pub citizen: Option<String>,
}

/// A write whose target id is decided (phase one of a write).
#[derive(Debug, Clone)]
pub(crate) enum Resolved {
    Create {
        rtype: ResourceType,
        id: String,
        resource: Value,
    },
    Update {
        rtype: ResourceType,
        id: String,
        resource: Value,
        if_match: Option<i64>,
    },
    Delete {
        rtype: ResourceType,
        id: String,
    },
    Existing {
        rtype: ResourceType,
        id: String,
    },
    /// A conditional delete that matched nothing.
    Nothing {
        rtype: ResourceType,
    },
}

impl Resolved {
    pub(crate) fn resource_mut(&mut self) -> Option<&mut Value> {
        match self {
            Resolved::Create { resource, .. } | Resolved::Update { resource, .. } => Some(resource),
            _ => None,
        }
    }

    pub(crate) fn key(&self) -> (ResourceType, &str) {
        match self {
            Resolved::Create { rtype, id, .. }
            | Resolved::Update { rtype, id, .. }
            | Resolved::Delete { rtype, id }
            | Resolved::Existing { rtype, id } => (*rtype, id),
            Resolved::Nothing { rtype } => (*rtype, ""),
        }
    }
}

/// Run `unit`, one whole database transaction, until it succeeds or fails for good: a retryable
/// conflict (version race, busy database) runs it again after a short, growing pause, up to
/// [`WRITE_ATTEMPTS`] times. Every write path of the engine retries through here. `unit` is
/// told which attempt it is (1 first): a write, single or a transaction Bundle's, reads its
/// heads outside the transaction on the first attempt only (`write::HeadRead::first`,
/// [`crate::store::StoreTx::head_to_write`]), so that a contended resource's writers fall back
/// to taking turns instead of conflicting again.
pub(crate) async fn retrying<T, Fut>(mut unit: impl FnMut(usize) -> Fut) -> Result<T, FhirError>
where
    Fut: std::future::Future<Output = Result<T, WriteFailure>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match unit(attempt).await {
            Err(WriteFailure::Retry(e)) if attempt < WRITE_ATTEMPTS => {
                write_retries().inc();
                tracing::debug!(attempt, error = %e, "retrying after a conflict");
                tokio::time::sleep(std::time::Duration::from_millis(2 << attempt.min(6))).await;
            }
            Err(e) => return Err(e.into()),
            Ok(v) => return Ok(v),
        }
    }
}

/// Write transactions run again by [`retrying`], since start (process-wide: every engine of the
/// process retries through the one function).
fn write_retries() -> &'static prometheus_client::metrics::counter::Counter {
    static RETRIES: std::sync::OnceLock<prometheus_client::metrics::counter::Counter> =
        std::sync::OnceLock::new();
    RETRIES.get_or_init(Default::default)
}

/// Put the engine's counters on `/metrics`.
pub fn register_metrics(registry: &mut crate::metrics::Registry) {
    registry.register(
        "sektorbro_write_retries",
        "Write transactions run again after a version conflict or a busy database; on SQLite \
         mostly writes whose resource changed between reading its version and committing",
        write_retries().clone(),
    );
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
            audit_settle: std::sync::OnceLock::new(),
        }
    }

    /// Reads of `AuditEvent` wait for `settle` first (set once, by the auditor's journal).
    pub fn set_audit_settle(&self, settle: crate::audit::Settle) {
        let _ = self.audit_settle.set(settle);
    }

    /// Before `rtype` is read: for the audit trail, every record appended to the journal so
    /// far is in the database.
    pub(crate) async fn settle(&self, rtype: &str) {
        if rtype == "AuditEvent" {
            if let Some(s) = self.audit_settle.get() {
                s.settle().await;
            }
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

    /// The validator the gateway runs with (its packages, terminology and allowed extension
    /// domains), or, when writes are not validated, the embedded packages alone: what checks
    /// messages the gateway makes and receives, and which codes the national reports take.
    pub fn validator(&self) -> Result<Arc<fhir_core::validation::Validator>, FhirError> {
        match &self.validation {
            Some(p) => Ok(p.validator.clone()),
            None => fhir_core::validation::Validator::shared_embedded()
                .map_err(|e| FhirError::internal(format!("loading the definitions: {e}"))),
        }
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

    /// The type named by a request (a URL segment, a Bundle entry): 404 for types this server
    /// does not serve. Everything past this point takes the checked [`ResourceType`].
    pub fn resource_type(name: &str) -> Result<ResourceType, FhirError> {
        ResourceType::parse(name).ok_or_else(|| {
            FhirError::not_supported(
                404,
                format!(
                    "Resource type {name:?} is not supported by this server (see /fhir/metadata)"
                ),
            )
        })
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
        rtype: ResourceType,
        query: &str,
        lenient: bool,
    ) -> Result<SearchQuery, FhirError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|e| FhirError::bad_request(format!("malformed query string: {e}")))?;
        self.parse_pairs(rtype, &pairs, lenient)
    }

    /// Parse conditional-create criteria (`If-None-Exist`, `entry.request.ifNoneExist`) in any
    /// form clients send them: the bare query, or prefixed with `?`, `Type?` or `[base]/Type?`.
    pub fn parse_if_none_exist(
        &self,
        rtype: ResourceType,
        text: &str,
    ) -> Result<SearchQuery, FhirError> {
        let query = fhir_core::fhir::search::criteria_query(&rtype, text)
            .map_err(|msg| FhirError::new(400, vec![Issue::error("invalid", msg)]))?;
        self.parse_criteria(rtype, query, false)
    }

    /// Parse search pairs on `rtype`, with this server's paging limits.
    pub fn parse_pairs(
        &self,
        rtype: ResourceType,
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
