//! The typed input of a transaction or batch: what the engine writes, read once from a posted
//! Bundle ([`Transaction::from_bundle`]) or built by the gateway's own callers, who add to it
//! without going back through JSON ([`Transaction::delete`], [`Transaction::require_version`]).

use std::collections::HashMap;

use serde_json::Value;

use super::{Engine, PatchDocument};
use crate::error::FhirError;
use fhir_core::fhir::outcome::Issue;
use fhir_core::fhir::ResourceType;

/// Which kind of Bundle was posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleKind {
    Transaction,
    Batch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Method {
    // Declaration order is processing order (a PATCH becomes a PUT before processing).
    Delete,
    Post,
    Put,
    Patch,
    Get,
}

/// A transaction or batch, typed: every entry's method, checked resource type, target, resource
/// and conditions.
#[derive(Debug, Clone, Default)]
pub struct Transaction {
    pub(super) entries: Vec<TransactionEntry>,
    /// Entries that name a type this server does not serve, with their answer (404): a batch
    /// answers each in its place, a transaction fails whole.
    pub(super) unsupported: Vec<(usize, FhirError)>,
}

/// One entry of a [`Transaction`].
#[derive(Debug, Clone)]
pub(super) struct TransactionEntry {
    /// Its position in the Bundle (`Bundle.entry[index]`), which its answer keeps.
    pub(super) index: usize,
    pub(super) method: Method,
    /// Resource type and the rest of the URL: `(Patient, "123")`, `(Patient, "?identifier=x")`.
    pub(super) rtype: ResourceType,
    pub(super) rest: String,
    pub(super) full_url: Option<String>,
    pub(super) resource: Option<Value>,
    pub(super) if_none_exist: Option<String>,
    pub(super) if_match: Option<i64>,
    /// A PATCH entry's patch (its resource: a Parameters or a Binary holding a JSON Patch).
    pub(super) patch: Option<PatchDocument>,
}

impl TransactionEntry {
    pub(super) fn location(&self) -> String {
        format!("Bundle.entry[{}]", self.index)
    }
}

impl Transaction {
    /// A posted Bundle read into its kind and typed entries: 400 with every problem of every
    /// entry (a method or url missing or malformed, a resource that is not the url's type, a
    /// patch that cannot be read, an `ifMatch` that is not an ETag). The resources are moved,
    /// not copied.
    pub fn from_bundle(bundle: Value) -> Result<(BundleKind, Transaction), FhirError> {
        let posted = bundle.get("resourceType").and_then(Value::as_str);
        if posted != Some("Bundle") {
            return Err(FhirError::bad_request(format!(
                "a Bundle of type transaction or batch is taken here, not {}",
                posted.unwrap_or("a body without a resourceType")
            ))
            .at("resourceType"));
        }
        let kind = match bundle.get("type").and_then(Value::as_str) {
            Some("transaction") => BundleKind::Transaction,
            Some("batch") => BundleKind::Batch,
            other => {
                return Err(FhirError::bad_request(format!(
                    "a Bundle of type transaction or batch is taken here, not {}",
                    other.unwrap_or("(missing)")
                ))
                .at("Bundle.type"))
            }
        };
        Ok((kind, parse_entries(bundle)?))
    }

    /// As [`Transaction::from_bundle`], for where only a transaction is taken: 400 at
    /// `Bundle.type` for a batch.
    pub fn from_transaction_bundle(bundle: Value) -> Result<Transaction, FhirError> {
        match Transaction::from_bundle(bundle)? {
            (BundleKind::Transaction, t) => Ok(t),
            (BundleKind::Batch, _) => Err(FhirError::bad_request(
                "a Bundle of type transaction is taken here, not batch",
            )
            .at("Bundle.type")),
        }
    }

    /// How many entries the Bundle had.
    pub fn len(&self) -> usize {
        self.entries.len() + self.unsupported.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty transaction, for the gateway's own callers to fill.
    pub fn new() -> Transaction {
        Transaction::default()
    }

    /// Add an entry that writes `resource` as `rtype/id` (an update, or a create with this id).
    pub fn put(&mut self, rtype: ResourceType, id: &str, resource: Value) {
        self.push(Method::Put, rtype, id, Some(resource));
    }

    /// Add an entry that deletes `rtype/id`.
    pub fn delete(&mut self, rtype: ResourceType, id: &str) {
        self.push(Method::Delete, rtype, id, None);
    }

    /// Add an entry of the gateway's own on `rtype/id`, after the others.
    fn push(&mut self, method: Method, rtype: ResourceType, id: &str, resource: Option<Value>) {
        let index = self.len();
        self.entries.push(TransactionEntry {
            index,
            method,
            rtype,
            rest: id.to_string(),
            full_url: None,
            resource,
            if_none_exist: None,
            if_match: None,
            patch: None,
        });
    }

    /// Make the entry that writes `rtype/id` conditional on its current version being
    /// `version` (an `ifMatch`): the transaction fails with 412 if another request changed it in
    /// between. False when no entry writes `rtype/id`.
    pub fn require_version(&mut self, rtype: ResourceType, id: &str, version: i64) -> bool {
        let entry = self.entries.iter_mut().find(|e| {
            e.rtype == rtype
                && e.rest == id
                && matches!(e.method, Method::Put | Method::Patch | Method::Delete)
        });
        match entry {
            Some(e) => {
                e.if_match = Some(version);
                true
            }
            None => false,
        }
    }
}

/// Parse every entry's request, reporting all problems at once.
fn parse_entries(mut bundle: Value) -> Result<Transaction, FhirError> {
    let list = match bundle.get_mut("entry").map(Value::take) {
        None => Vec::new(),
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(FhirError::bad_request("Bundle.entry must be an array").at("Bundle.entry"))
        }
    };
    let mut out = Transaction {
        entries: Vec::with_capacity(list.len()),
        unsupported: Vec::new(),
    };
    let mut issues = Vec::new();
    for (index, mut entry) in list.into_iter().enumerate() {
        let loc = format!("Bundle.entry[{index}]");
        let resource = entry.get_mut("resource").map(Value::take);
        let request = entry.get("request");
        let method = match request
            .and_then(|r| r.get("method"))
            .and_then(Value::as_str)
        {
            Some("GET") => Method::Get,
            Some("POST") => Method::Post,
            Some("PUT") => Method::Put,
            Some("DELETE") => Method::Delete,
            Some("PATCH") => Method::Patch,
            Some(other) => {
                issues.push(
                    Issue::error(
                        "not-supported",
                        format!("request method {other} is not supported in Bundles"),
                    )
                    .at(format!("{loc}.request.method")),
                );
                continue;
            }
            None => {
                issues.push(
                    Issue::error(
                        "required",
                        "each entry needs request.method and request.url",
                    )
                    .at(format!("{loc}.request")),
                );
                continue;
            }
        };
        let Some(url) = request.and_then(|r| r.get("url")).and_then(Value::as_str) else {
            issues.push(
                Issue::error("required", "request.url is missing").at(format!("{loc}.request.url")),
            );
            continue;
        };
        let url = url.trim_start_matches('/');
        let split = url.find(['/', '?']).unwrap_or(url.len());
        let (rtype, rest) = url.split_at(split);
        let rest = rest.strip_prefix('/').unwrap_or(rest).to_string();
        if !rtype.chars().next().is_some_and(|c| c.is_ascii_uppercase()) || url.contains("://") {
            issues.push(
                Issue::error("invalid", format!("request.url must be relative, like Patient/123 or Patient?identifier=x; got {url:?}"))
                    .at(format!("{loc}.request.url")),
            );
            continue;
        }
        if method == Method::Post && !rest.is_empty() {
            issues.push(
                Issue::error("invalid", "a POST entry's url is the resource type alone")
                    .at(format!("{loc}.request.url")),
            );
        }
        if matches!(method, Method::Post | Method::Put) {
            match resource
                .as_ref()
                .and_then(|r| r.get("resourceType"))
                .and_then(Value::as_str)
            {
                Some(t) if t == rtype => {}
                Some(t) => issues.push(
                    Issue::error(
                        "invalid",
                        format!("the resource is a {t} but request.url names {rtype}"),
                    )
                    .at(format!("{loc}.resource.resourceType")),
                ),
                None => issues.push(
                    Issue::error("required", format!("a {method:?} entry needs a resource"))
                        .at(format!("{loc}.resource")),
                ),
            }
        }
        let patch = if method == Method::Patch {
            if rest.is_empty() || rest.contains(['/', '?']) {
                issues.push(
                    Issue::error("invalid", "a PATCH entry's url is Type/id")
                        .at(format!("{loc}.request.url")),
                );
            }
            match patch_document(resource.as_ref(), &loc) {
                Ok(p) => Some(p),
                Err(mut found) => {
                    issues.append(&mut found);
                    None
                }
            }
        } else {
            None
        };
        let if_match = match request
            .and_then(|r| r.get("ifMatch"))
            .and_then(Value::as_str)
        {
            Some(s) => match super::parse_etag(s) {
                Some(v) => Some(v),
                None => {
                    issues.push(
                        Issue::error(
                            "invalid",
                            format!("ifMatch {s:?} is not an ETag like W/\"1\""),
                        )
                        .at(format!("{loc}.request.ifMatch")),
                    );
                    None
                }
            },
            None => None,
        };
        let rtype = match Engine::resource_type(rtype) {
            Ok(t) => t,
            Err(e) => {
                out.unsupported
                    .push((index, e.at(&format!("{loc}.request.url"))));
                continue;
            }
        };
        out.entries.push(TransactionEntry {
            index,
            method,
            rtype,
            rest,
            full_url: entry
                .get("fullUrl")
                .and_then(Value::as_str)
                .map(String::from),
            resource,
            if_none_exist: request
                .and_then(|r| r.get("ifNoneExist"))
                .and_then(Value::as_str)
                .map(String::from),
            if_match,
            patch,
        });
    }
    if issues.is_empty() {
        Ok(out)
    } else {
        Err(FhirError::new(400, issues))
    }
}

/// The patch a PATCH entry carries (R4 3.1.0.11): a FHIRPath Patch (`Parameters`), or a JSON
/// Patch as the data of a `Binary` whose contentType is `application/json-patch+json`.
fn patch_document(resource: Option<&Value>, loc: &str) -> Result<PatchDocument, Vec<Issue>> {
    let at = format!("{loc}.resource");
    let kind = resource
        .and_then(|r| r.get("resourceType"))
        .and_then(Value::as_str);
    match (kind, resource) {
        (Some("Parameters"), Some(r)) => fhir_core::fhirpath::patch::parse(r)
            .map(PatchDocument::FhirPath)
            .map_err(|issues| {
                issues
                    .into_iter()
                    .map(|i| match i.expression.clone() {
                        Some(x) => {
                            let inner = x.strip_prefix("Parameters").unwrap_or(&x).to_string();
                            i.at(format!("{at}{inner}"))
                        }
                        None => i.at(at.clone()),
                    })
                    .collect()
            }),
        (Some("Binary"), Some(r)) => {
            let media = r.get("contentType").and_then(Value::as_str).unwrap_or("");
            if media.split(';').next().map(str::trim) != Some("application/json-patch+json") {
                return Err(vec![Issue::error(
                    "invalid",
                    format!("a Binary patch has contentType application/json-patch+json, not {media:?}"),
                )
                .at(format!("{at}.contentType"))]);
            }
            use base64::Engine as _;
            let data = r.get("data").and_then(Value::as_str).unwrap_or("");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| {
                    vec![Issue::error("invalid", format!("the data is not base64: {e}"))
                        .at(format!("{at}.data"))]
                })?;
            serde_json::from_slice(&bytes)
                .map(PatchDocument::Json)
                .map_err(|e| {
                    vec![Issue::error(
                        "invalid",
                        format!("the data is not a JSON Patch document: {e}"),
                    )
                    .at(format!("{at}.data"))]
                })
        }
        _ => Err(vec![Issue::error(
            "required",
            "a PATCH entry's resource is a Parameters (FHIRPath Patch) or a Binary holding a JSON Patch",
        )
        .at(at)]),
    }
}

/// A transaction must not touch the same resource twice (R4 3.1.0.11.2).
pub(super) fn check_duplicates(entries: &[TransactionEntry]) -> Result<(), FhirError> {
    let mut seen: HashMap<(ResourceType, &str), usize> = HashMap::new();
    let mut issues = Vec::new();
    for e in entries {
        if matches!(e.method, Method::Put | Method::Patch | Method::Delete)
            && !e.rest.starts_with('?')
        {
            let key = (e.rtype, e.rest.as_str());
            if let Some(first) = seen.insert(key, e.index) {
                issues.push(
                    Issue::error(
                        "duplicate",
                        format!(
                            "{}/{} is also written by Bundle.entry[{first}]",
                            e.rtype, e.rest
                        ),
                    )
                    .at(format!("{}.request.url", e.location())),
                );
            }
        }
    }
    if issues.is_empty() {
        Ok(())
    } else {
        Err(FhirError::new(400, issues))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bundle(kind: &str, entries: Value) -> Value {
        json!({"resourceType": "Bundle", "type": kind, "entry": entries})
    }

    #[test]
    fn a_bundle_reads_into_typed_entries_in_its_order() {
        let (kind, t) = Transaction::from_bundle(bundle(
            "transaction",
            json!([
                {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=a|b"}},
                {"resource": {"resourceType": "Goal", "id": "g"}, "request": {"method": "PUT", "url": "/Goal/g", "ifMatch": "W/\"3\""}},
                {"request": {"method": "DELETE", "url": "Condition?code=x"}},
                {"request": {"method": "GET", "url": "CarePlan/p/_history/2"}}
            ]),
        ))
        .expect("a transaction");
        assert_eq!(kind, BundleKind::Transaction);
        assert_eq!(t.len(), 4);
        let e = &t.entries;
        assert_eq!(
            (e[0].method, e[0].rtype, e[0].rest.as_str()),
            (Method::Post, ResourceType::PATIENT, "")
        );
        assert_eq!(e[0].full_url.as_deref(), Some("urn:uuid:1"));
        assert_eq!(e[0].if_none_exist.as_deref(), Some("identifier=a|b"));
        assert_eq!(e[0].resource, Some(json!({"resourceType": "Patient"})));
        assert_eq!(
            (e[1].method, e[1].rtype, e[1].rest.as_str(), e[1].if_match),
            (Method::Put, ResourceType::GOAL, "g", Some(3))
        );
        assert_eq!(
            (e[2].method, e[2].rest.as_str()),
            (Method::Delete, "?code=x")
        );
        assert_eq!(
            (e[3].method, e[3].rtype, e[3].rest.as_str()),
            (Method::Get, ResourceType::CARE_PLAN, "p/_history/2")
        );
    }

    #[test]
    fn unserved_types_are_kept_aside_with_their_answer() {
        let (kind, t) = Transaction::from_bundle(bundle(
            "batch",
            json!([
                {"request": {"method": "GET", "url": "Medication/1"}},
                {"request": {"method": "GET", "url": "Patient/1"}}
            ]),
        ))
        .expect("a batch");
        assert_eq!(kind, BundleKind::Batch);
        assert_eq!((t.len(), t.entries.len()), (2, 1));
        let (index, err) = &t.unsupported[0];
        assert_eq!((*index, err.status), (0, 404));
        assert_eq!(
            err.issues[0].expression.as_deref(),
            Some("Bundle.entry[0].request.url")
        );
        assert_eq!(t.entries[0].index, 1);
    }

    #[test]
    fn what_is_not_a_transaction_or_batch_is_refused() {
        for (body, at) in [
            (json!({"resourceType": "Patient"}), "resourceType"),
            (
                json!({"resourceType": "Bundle", "type": "document"}),
                "Bundle.type",
            ),
            (json!({"resourceType": "Bundle"}), "Bundle.type"),
            (
                json!({"resourceType": "Bundle", "type": "batch", "entry": {}}),
                "Bundle.entry",
            ),
        ] {
            let err = Transaction::from_bundle(body.clone()).expect_err("refused");
            assert_eq!(err.status, 400, "{body}");
            assert_eq!(err.issues[0].expression.as_deref(), Some(at), "{body}");
        }
        let batch = bundle("batch", json!([]));
        let err = Transaction::from_transaction_bundle(batch).expect_err("a batch");
        assert_eq!(err.issues[0].expression.as_deref(), Some("Bundle.type"));
    }

    #[test]
    fn callers_add_entries_without_json() {
        let mut t = Transaction::new();
        t.put(
            ResourceType::CARE_PLAN,
            "p",
            json!({"resourceType": "CarePlan", "id": "p"}),
        );
        t.delete(ResourceType::GOAL, "old");
        assert!(t.require_version(ResourceType::CARE_PLAN, "p", 7));
        assert!(!t.require_version(ResourceType::CARE_PLAN, "other", 7));
        let e = &t.entries;
        assert_eq!(
            (e[0].index, e[0].method, e[0].if_match),
            (0, Method::Put, Some(7))
        );
        assert_eq!(
            (e[1].index, e[1].method, e[1].rest.as_str()),
            (1, Method::Delete, "old")
        );
        assert!(check_duplicates(e).is_ok());
        t.delete(ResourceType::CARE_PLAN, "p");
        let err = check_duplicates(&t.entries).expect_err("written twice");
        assert_eq!(
            err.issues[0].expression.as_deref(),
            Some("Bundle.entry[2].request.url")
        );
    }
}
