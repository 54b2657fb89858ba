//! `transaction` and `batch` Bundles posted to the base URL.
//!
//! A transaction is one database transaction: entries are processed in the order the spec gives
//! (DELETE, POST, PUT, then GET), `urn:uuid:` full URLs and conditional references (`Patient?identifier=…`)
//! are resolved to the ids decided inside the transaction, and any failing entry rolls back all of
//! them. A batch runs each entry on its own.

use std::collections::HashMap;

use serde_json::json;

use super::bundle_json::{self, etag, BundleEntry};
use super::transaction::{check_duplicates, BundleKind, Method, Transaction, TransactionEntry};
use super::write::HeadRead;
use super::{now_ms, retrying, Access, Engine, Resolved, WriteFailure, WriteOp, Written};
use crate::error::FhirError;
use crate::store::report_facts::FactsWrite;
use crate::store::{Grant, NewJob, StoreTx};
use fhir_core::fhir::{for_each_reference, instant, new_id};

/// Put an entry's location in front of each issue's own.
fn locate(e: FhirError, index: usize) -> FhirError {
    let prefix = format!("Bundle.entry[{index}]");
    let issues = e
        .issues
        .into_iter()
        .map(|i| match &i.expression {
            Some(x) if x.starts_with("Bundle.") => i,
            Some(x) if x.contains('=') => {
                let x = x.clone();
                i.at(format!("{prefix}.request.url ({x})"))
            }
            Some(_) => i.within(&format!("{prefix}.resource")),
            None => i.at(prefix.clone()),
        })
        .collect();
    FhirError::new(e.status, issues)
}

impl Engine {
    /// Process a posted `transaction` or `batch` ([`Transaction::from_bundle`]); returns the
    /// response Bundle as JSON text.
    pub async fn process_bundle(
        &self,
        access: &Access,
        kind: BundleKind,
        entries: Transaction,
        base: &str,
        answer: Answer,
    ) -> Result<String, FhirError> {
        match kind {
            BundleKind::Transaction => self
                .transaction(access, entries, base, answer, Extra::Nothing, Checks::Full)
                .await
                .map(|c| c.response),
            BundleKind::Batch => Ok(self.batch(access, entries, base, answer).await),
        }
    }

    /// A municipal care record's transaction Bundle. With [`Checks::Vouched`], the gateway built it itself
    /// from input it has checked, and vouches for it: every resource is valid against the embedded definitions and the profiles it
    /// claims (the municipal mapping, whose `precheck` `tests/municipal.rs` holds to the
    /// validator). Profile validation on write is skipped for an entry unless the write policy
    /// asks for more than that: profiles `[validation.required]` names for its type, or
    /// packages loaded beyond the embedded ones. Everything else is as [`Engine::process_bundle`].
    ///
    /// With [`Checks::Full`], the entries are validated on write as any client's. The record's
    /// report facts are written last in the same database transaction, after every resource of
    /// the record (whose writes make the facts stale: `store/report_facts.rs`).
    pub(crate) async fn record_transaction(
        &self,
        access: &Access,
        entries: Transaction,
        base: &str,
        answer: Answer,
        checks: Checks,
        facts: Option<&FactsWrite>,
    ) -> Result<Committed, FhirError> {
        let extra = match facts {
            Some(f) => Extra::Facts(f),
            None => Extra::Nothing,
        };
        self.transaction(access, entries, base, answer, extra, checks)
            .await
    }

    /// A transaction Bundle and an outbox job, committed in one database transaction (the
    /// durable outbox: the job exists if and only if the resources were written).
    pub async fn transaction_with_job(
        &self,
        access: &Access,
        entries: Transaction,
        base: &str,
        job: &NewJob,
        grants: &[Grant],
    ) -> Result<String, FhirError> {
        let (answer, checks) = (Answer::Minimal, Checks::Full);
        self.transaction(
            access,
            entries,
            base,
            answer,
            Extra::Job(job, grants),
            checks,
        )
        .await
        .map(|c| c.response)
    }

    /// An outbox job (and the grants its message implies) alone, in its own transaction
    /// (retried on a conflict like any write).
    pub async fn enqueue(&self, job: &NewJob, grants: &[Grant]) -> Result<(), FhirError> {
        retrying(|_| async {
            let mut tx = self.store().begin().await?;
            enqueue_with_grants(tx.as_mut(), job, grants).await?;
            crate::audit::in_tx::commit(tx, None, None, 202).await?;
            Ok(())
        })
        .await
    }

    async fn transaction(
        &self,
        access: &Access,
        entries: Transaction,
        base: &str,
        answer: Answer,
        extra: Extra<'_>,
        checks: Checks,
    ) -> Result<Committed, FhirError> {
        if !entries.unsupported.is_empty() {
            let issues = entries.unsupported.into_iter().flat_map(|(_, e)| e.issues);
            return Err(FhirError::new(404, issues.collect()));
        }
        let size = entries.len();
        let entries = entries.entries;
        check_duplicates(&entries)?;
        let entries = self.patches_applied(access, entries).await?;
        // Validate every entry first: all problems of all entries in one answer, before any lock.
        let mut problems = Vec::new();
        let mut status = 422;
        for e in entries.iter().filter(|e| e.method != Method::Get) {
            let checked = match self.entry_op(e) {
                Ok(op) if checks == Checks::Vouched && self.vouch_suffices(&op) => Ok(()),
                Ok(op) if checks == Checks::Vouched => {
                    self.validate_op(&op, &access.readable()).await
                }
                Ok(op) => match self.check_assertions(access, &op) {
                    Ok(()) => self.validate_op(&op, &access.readable()).await,
                    Err(f) => Err(f),
                },
                Err(f) => Err(f),
            };
            match checked {
                Ok(()) => {}
                Err(f) => {
                    status = status.min(f.status);
                    problems.extend(locate(f, e.index).issues);
                }
            }
        }
        if !problems.is_empty() {
            return Err(FhirError::new(status, problems));
        }
        let entries = &entries;
        let written = retrying(|attempt| async move {
            let heads = HeadRead::first(attempt);
            let mut tx = self.store().begin().await?;
            let written = self
                .transaction_writes(tx.as_mut(), access, entries, heads)
                .await?;
            let status = match extra {
                Extra::Job(job, grants) => {
                    enqueue_with_grants(tx.as_mut(), job, grants).await?;
                    202
                }
                Extra::Facts(facts) => {
                    tx.put_report_facts(facts).await?;
                    200
                }
                Extra::Nothing => 200,
            };
            let citizen = one_citizen(&written);
            crate::audit::in_tx::commit(tx, None, citizen, status).await?;
            Ok(written)
        })
        .await?;
        let mut out: Vec<Option<BundleEntry>> = vec![None; size];
        let mut writes: Vec<(usize, Written)> = Vec::with_capacity(written.len());
        for (index, w) in written {
            let w = self
                .fill_existing(access, w)
                .await
                .map_err(|e| locate(e, index))?;
            out[index] = Some(write_entry(base, &w, answer));
            writes.push((index, w));
        }
        for e in entries.iter().filter(|e| e.method == Method::Get) {
            out[e.index] = Some(self.get_entry(access, e, base).await);
        }
        writes.sort_by_key(|(index, _)| *index);
        Ok(Committed {
            response: response_bundle("transaction-response", out),
            written: writes.into_iter().map(|(_, w)| w).collect(),
        })
    }

    /// All writes of a transaction inside `tx`; the entry index with what each wrote.
    async fn transaction_writes(
        &self,
        tx: &mut dyn StoreTx,
        access: &Access,
        entries: &[TransactionEntry],
        heads: HeadRead,
    ) -> Result<Vec<(usize, Written)>, WriteFailure> {
        let mut order: Vec<&TransactionEntry> =
            entries.iter().filter(|e| e.method != Method::Get).collect();
        order.sort_by_key(|e| (e.method, e.index));

        // Phase one: decide every id, so references between entries can be rewritten.
        let mut resolved: Vec<(usize, Resolved)> = Vec::with_capacity(order.len());
        let mut ids: HashMap<String, String> = HashMap::new();
        for e in &order {
            let op = self.entry_op(e).map_err(|f| locate(f, e.index))?;
            let r = self
                .resolve(tx, access, op, None)
                .await
                .map_err(|f| relocate(f, e.index))?;
            if let Some(full_url) = &e.full_url {
                let (t, id) = r.key();
                ids.insert(full_url.clone(), format!("{t}/{id}"));
            }
            resolved.push((e.index, r));
        }

        // Conditional references (`Patient?identifier=…`) resolve to exactly one match.
        for (index, r) in &mut resolved {
            let Some(resource) = r.resource_mut() else {
                continue;
            };
            let mut conditional = Vec::new();
            for_each_reference(resource, &mut |s| {
                if !ids.contains_key(s.as_str()) && is_conditional_reference(s) {
                    conditional.push(s.clone());
                }
            });
            for reference in conditional {
                let target = self
                    .resolve_conditional_reference(tx, access, &reference)
                    .await
                    .map_err(|f| relocate(f, *index))?;
                ids.insert(reference, target);
            }
        }

        // Phase two: rewrite references and write.
        let mut written = Vec::with_capacity(resolved.len());
        for (index, mut r) in resolved {
            if let Some(resource) = r.resource_mut() {
                for_each_reference(resource, &mut |s| {
                    if let Some(target) = ids.get(s.as_str()) {
                        *s = target.clone();
                    }
                });
            }
            let w = self
                .execute(tx, access, r, heads)
                .await
                .map_err(|f| relocate(f, index))?;
            written.push((index, w));
        }
        Ok(written)
    }

    async fn resolve_conditional_reference(
        &self,
        tx: &mut dyn StoreTx,
        access: &Access,
        reference: &str,
    ) -> Result<String, WriteFailure> {
        let (rtype, query) = reference.split_once('?').unwrap_or((reference, ""));
        let rtype = Engine::resource_type(rtype)?;
        let criteria = self.parse_criteria(rtype, query, false)?;
        // A reference may name what the caller can read (a shared Organization, say), but an
        // organization named by its SOR/GLN/HSA identifier only as itself or the caller's own.
        access.permit(&rtype, crate::auth::Permission::Search)?;
        let vis = self
            .tenants
            .conditional_reference_scope(access, &rtype, &criteria);
        match self.matches(tx, &vis, &criteria).await?.as_slice() {
            [one] => Ok(format!("{rtype}/{one}")),
            [] => Err(FhirError::precondition_failed(format!(
                "conditional reference {reference:?} matches no resource"
            ))
            .into()),
            _ => Err(FhirError::precondition_failed(format!(
                "conditional reference {reference:?} matches more than one resource"
            ))
            .into()),
        }
    }

    /// The write an entry asks for.
    fn entry_op(&self, e: &TransactionEntry) -> Result<WriteOp, FhirError> {
        let resource = || {
            e.resource.clone().ok_or_else(|| {
                FhirError::bad_request(format!("a {:?} entry needs a resource", e.method))
                    .at(&format!("{}.resource", e.location()))
            })
        };
        let criteria = |q: &str| self.parse_criteria(e.rtype, q, false);
        match e.method {
            Method::Post => Ok(WriteOp::Create {
                rtype: e.rtype,
                resource: resource()?,
                if_none_exist: e
                    .if_none_exist
                    .as_deref()
                    .map(|q| {
                        self.parse_if_none_exist(e.rtype, q).map_err(|err| {
                            let at = format!("{}.request.ifNoneExist", e.location());
                            let issues = err
                                .issues
                                .into_iter()
                                .map(|i| match i.expression.clone() {
                                    Some(x) => i.at(format!("{at} ({x})")),
                                    None => i.at(at.clone()),
                                })
                                .collect();
                            FhirError::new(err.status, issues)
                        })
                    })
                    .transpose()?,
            }),
            Method::Put => match e.rest.strip_prefix('?') {
                Some(q) => Ok(WriteOp::ConditionalUpdate {
                    rtype: e.rtype,
                    criteria: criteria(q)?,
                    resource: resource()?,
                    if_match: e.if_match,
                }),
                None => Ok(WriteOp::Update {
                    rtype: e.rtype,
                    id: e.rest.clone(),
                    resource: resource()?,
                    if_match: e.if_match,
                }),
            },
            Method::Delete if !e.rest.is_empty() && !e.rest.starts_with('?') => {
                Ok(WriteOp::Delete {
                    rtype: e.rtype,
                    id: e.rest.clone(),
                })
            }
            Method::Delete => match e.rest.strip_prefix('?') {
                Some(q) => Ok(WriteOp::ConditionalDelete {
                    rtype: e.rtype,
                    criteria: criteria(q)?,
                }),
                None => Err(
                    FhirError::bad_request("DELETE entries need Type/id or Type?criteria")
                        .at(&format!("{}.request.url", e.location())),
                ),
            },
            Method::Get => Err(FhirError::internal("GET entries are not writes")),
            Method::Patch => Err(FhirError::internal(
                "PATCH entries become updates before they are written",
            )),
        }
    }

    /// A transaction's PATCH entries as the updates they ask for: each patch applied to the
    /// current version, which the update must then find unchanged (`If-Match`), so the whole
    /// transaction fails (412) rather than overwrite a change made in between. Every problem of
    /// every PATCH entry in one answer.
    async fn patches_applied(
        &self,
        access: &Access,
        mut entries: Vec<TransactionEntry>,
    ) -> Result<Vec<TransactionEntry>, FhirError> {
        let (mut problems, mut status) = (Vec::new(), 422);
        for e in entries.iter_mut() {
            let Some(patch) = e.patch.take() else {
                continue;
            };
            match self
                .patched(access, e.rtype, &e.rest, &patch, e.if_match)
                .await
            {
                Ok(WriteOp::Update {
                    resource, if_match, ..
                }) => {
                    e.method = Method::Put;
                    e.resource = Some(resource);
                    e.if_match = if_match;
                }
                Ok(_) => return Err(FhirError::internal("a patch is an update")),
                Err(f) => {
                    status = status.min(f.status);
                    problems.extend(locate(f, e.index).issues);
                }
            }
        }
        if problems.is_empty() {
            Ok(entries)
        } else {
            Err(FhirError::new(status, problems))
        }
    }

    async fn batch(
        &self,
        access: &Access,
        entries: Transaction,
        base: &str,
        answer: Answer,
    ) -> String {
        let mut out: Vec<Option<BundleEntry>> = vec![None; entries.len()];
        for (index, err) in &entries.unsupported {
            out[*index] = Some(error_entry(err));
        }
        for e in &entries.entries {
            let entry = if e.method == Method::Get {
                self.get_entry(access, e, base).await
            } else {
                let result = match (&e.patch, self.entry_op(e)) {
                    (Some(patch), _) => {
                        self.patch(access, e.rtype, &e.rest, patch, e.if_match)
                            .await
                    }
                    (None, Ok(op)) => self.write(access, op).await,
                    (None, Err(err)) => Err(err),
                };
                match result {
                    Ok(w) => write_entry(base, &w, answer),
                    Err(err) => error_entry(&locate(err, e.index)),
                }
            };
            out[e.index] = Some(entry);
        }
        response_bundle("batch-response", out)
    }

    /// Answer a GET entry (read, vread or search); errors become the entry's outcome.
    async fn get_entry(&self, access: &Access, e: &TransactionEntry, base: &str) -> BundleEntry {
        let result: Result<(String, Option<String>), FhirError> = async {
            if let Some(query) = e.rest.strip_prefix('?').or(e.rest.is_empty().then_some("")) {
                let q = self.parse_criteria(e.rtype, query, false)?;
                return Ok((self.search(access, &q, base).await?, None));
            }
            let parts: Vec<&str> = e.rest.split('/').collect();
            let r = match parts.as_slice() {
                [id] => self.read(access, e.rtype, id).await?,
                [id, "_history", v] => self.vread(access, e.rtype, id, v).await?,
                _ => {
                    return Err(FhirError::bad_request(
                        "unsupported GET url in Bundle entry",
                    ))
                }
            };
            Ok((r.content.clone().unwrap_or_default(), Some(etag(r.version))))
        }
        .await;
        match result {
            Ok((body, tag)) => {
                let mut response = json!({"status": "200 OK"});
                if let Some(tag) = tag {
                    response["etag"] = json!(tag);
                }
                BundleEntry {
                    fields: json!({"response": response}),
                    resource: Some(body),
                }
            }
            Err(err) => error_entry(&locate(err, e.index)),
        }
    }
}

/// What a write's answer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Its outcome only (`Prefer: return=minimal`).
    Minimal,
    /// The stored resource too (`Prefer: return=representation`).
    Representation,
}

/// How a transaction's entries are checked before anything is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checks {
    /// As any client's writes: assertions, then validation on write.
    Full,
    /// Built by the gateway from input it has checked: validated only where the write policy
    /// asks for more than the gateway vouches for ([`Engine::vouch_suffices`]).
    Vouched,
}

/// What a committed transaction did: the transaction-response Bundle (JSON text) and, typed,
/// each write in entry order, so that the gateway's own callers need not read the text back.
#[derive(Debug)]
pub struct Committed {
    pub response: String,
    pub written: Vec<Written>,
}

impl Committed {
    /// `Type/id` of each resource the transaction created or updated (not deletions), in entry
    /// order: the entries whose response has a `location`.
    pub fn locations(&self) -> impl Iterator<Item = String> + '_ {
        self.written
            .iter()
            .filter(|w| w.version > 0 && w.status != 204)
            .map(|w| format!("{}/{}", w.rtype, w.id))
    }
}

/// What a transaction writes besides its entries, after them.
#[derive(Clone, Copy)]
enum Extra<'a> {
    Nothing,
    /// An outbox job and the grants its message implies.
    Job(&'a NewJob, &'a [Grant]),
    /// A care record's report facts.
    Facts(&'a FactsWrite),
}

/// A job and its grants inside `tx`: a receiver may read the citizen's records exactly when
/// a message to it exists.
async fn enqueue_with_grants(
    tx: &mut dyn StoreTx,
    job: &NewJob,
    grants: &[Grant],
) -> Result<(), crate::store::StoreError> {
    tx.enqueue(job).await?;
    for g in grants {
        tx.grant(g, job.now_ms).await?;
    }
    Ok(())
}

fn relocate(f: WriteFailure, index: usize) -> WriteFailure {
    match f {
        WriteFailure::Fhir(e) => WriteFailure::Fhir(locate(e, index)),
        retry => retry,
    }
}

/// `Type?criteria` (not an absolute URL, not a local or urn reference).
fn is_conditional_reference(s: &str) -> bool {
    s.contains('?')
        && s.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && !s.contains("://")
}

fn status_text(status: u16) -> &'static str {
    match status {
        200 => "200 OK",
        201 => "201 Created",
        204 => "204 No Content",
        400 => "400 Bad Request",
        404 => "404 Not Found",
        409 => "409 Conflict",
        410 => "410 Gone",
        412 => "412 Precondition Failed",
        422 => "422 Unprocessable Entity",
        503 => "503 Service Unavailable",
        _ => "500 Internal Server Error",
    }
}

fn write_entry(base: &str, w: &Written, answer: Answer) -> BundleEntry {
    let mut response = json!({"status": status_text(w.status)});
    if w.version > 0 {
        response["etag"] = json!(etag(w.version));
        if w.status != 204 {
            response["location"] = json!(format!("{}/{}/_history/{}", w.rtype, w.id, w.version));
        }
    }
    if w.last_updated_ms > 0 {
        response["lastModified"] = json!(instant(w.last_updated_ms));
    }
    let mut fields = json!({"response": response});
    if w.status != 204 {
        fields["fullUrl"] = json!(format!("{base}/{}/{}", w.rtype, w.id));
    }
    BundleEntry {
        fields,
        resource: if answer == Answer::Representation {
            w.content.clone()
        } else {
            None
        },
    }
}

fn error_entry(err: &FhirError) -> BundleEntry {
    BundleEntry {
        fields: json!({"response": {"status": status_text(err.status), "outcome": err.outcome()}}),
        resource: None,
    }
}

fn response_bundle(kind: &str, entries: Vec<Option<BundleEntry>>) -> String {
    let head = json!({
        "resourceType": "Bundle",
        "id": new_id(),
        "meta": {"lastUpdated": instant(now_ms())},
        "type": kind,
    });
    bundle_json::write(head, entries.into_iter().flatten().collect())
}

/// The citizen a transaction's writes are about, when they name exactly one (a municipal care
/// record, a transaction of one citizen's resources and directory entries): its audit record
/// carries it, as a single write's does. Several citizens, or none: `None`.
fn one_citizen(written: &[(usize, Written)]) -> Option<&str> {
    let mut citizens = written.iter().filter_map(|(_, w)| w.citizen.as_deref());
    let first = citizens.next()?;
    citizens.all(|c| c == first).then_some(first)
}
