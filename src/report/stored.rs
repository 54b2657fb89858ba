//! A municipality's stored care records, read page by page and rebuilt into typed records,
//! grouped by citizen, and the KL Gateway report written from them as a stream of text pieces.
//!
//! Memory stays bounded by one batch of records plus one citizen's report (and the list of the
//! municipality's CarePlan ids with their citizens): the plans are read [`PAGE`] at a time,
//! sorted by citizen so that a citizen's courses are in one batch, the resources they refer to in
//! one `read_many` per batch, each record rebuilt by the municipal mapping's own inverse
//! (`from_fhir`), and each citizen's report handed on as soon as it is built. The store's
//! search is paged in its own order: sorting by `subject` in SQL costs a full sort per page.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use super::kl_gateway::{citizen_report, Codes, Envelope, Kind};
use crate::engine::Engine;
use crate::error::FhirError;
use crate::municipal::from_fhir;
use crate::municipal::record::CareRecord;
use crate::municipal::vocab;
use crate::store::Visibility;
use fhir_core::fhir::search::{Cursor, SearchQuery};

/// CarePlans read per page.
pub const PAGE: usize = 200;

/// What to report.
#[derive(Debug, Clone)]
pub struct Request {
    /// Municipality code (`0510`).
    pub municipality: String,
    pub kind: Kind,
    /// Only citizens with a record stored after this instant (`_lastUpdated` of its CarePlan),
    /// in milliseconds since the epoch; `None`: every citizen.
    pub since_ms: Option<i64>,
}

/// One citizen's records, rebuilt.
type Citizen = Vec<CareRecord>;

/// Reads a municipality's records from the store. First the CarePlans' ids and citizens, page by
/// page (a few dozen bytes per record are kept, not the records); then the plans in batches of
/// about [`PAGE`], a citizen's courses always in the same batch, each batch with the resources
/// it refers to read in one go.
pub struct Records<'e> {
    engine: &'e Engine,
    /// `(citizen, CarePlan id)`, sorted: a citizen's courses are adjacent.
    plans: Vec<(String, String)>,
    next: usize,
}

impl<'e> Records<'e> {
    pub async fn open(
        engine: &'e Engine,
        vis: &Visibility,
        req: &Request,
    ) -> Result<Records<'e>, FhirError> {
        let store = engine.store();
        let mut q = plans_query(engine, &req.municipality)?;
        let mut all: Vec<(String, String, i64)> = Vec::new();
        loop {
            let mut hits = store.search(&q, PAGE + 1, vis).await?;
            let more = hits.len() > PAGE;
            hits.truncate(PAGE);
            if let Some(last) = hits.last() {
                q.after = Some(Cursor {
                    values: last.sort_values.clone(),
                    seq: last.seq,
                });
            }
            for h in hits {
                let r = h.resource;
                let citizen = match r.citizen {
                    Some(c) => c,
                    None => subject(&crate::municipal::stored_json(&r)?).unwrap_or_default(),
                };
                all.push((citizen, r.id, r.last_updated_ms));
            }
            if !more {
                break;
            }
        }
        if let Some(since) = req.since_ms {
            // A citizen whose course changed is reported with all of its courses: its report
            // replaces the previous one.
            let changed: BTreeSet<String> = all
                .iter()
                .filter(|(_, _, t)| *t > since)
                .map(|(c, _, _)| c.clone())
                .collect();
            all.retain(|(c, _, _)| changed.contains(c));
        }
        let mut plans: Vec<(String, String)> = all.into_iter().map(|(c, id, _)| (c, id)).collect();
        plans.sort();
        Ok(Records {
            engine,
            plans,
            next: 0,
        })
    }

    /// The next batch of citizens, each with all of its courses in the municipality; `None` at
    /// the end.
    pub async fn next_batch(&mut self) -> Result<Option<Vec<Citizen>>, FhirError> {
        let len = self.plans.len();
        if self.next >= len {
            return Ok(None);
        }
        let start = self.next;
        let mut end = (start + PAGE).min(len);
        while end < len && self.plans[end].0 == self.plans[end - 1].0 {
            end += 1;
        }
        self.next = end;
        let batch = &self.plans[start..end];
        let keys: Vec<(String, String)> = batch
            .iter()
            .map(|(_, id)| ("CarePlan".to_string(), id.clone()))
            .collect();
        let mut by_id: HashMap<String, Value> = HashMap::with_capacity(keys.len());
        for r in self.engine.store().read_many(&keys).await? {
            by_id.insert(r.id.clone(), crate::municipal::stored_json(&r)?);
        }
        // In the sorted order; a plan deleted since the first pass is no longer reported.
        let plans: Vec<(String, Value)> = batch
            .iter()
            .filter_map(|(c, id)| by_id.remove(id).map(|p| (c.clone(), p)))
            .collect();
        let mut out: Vec<Citizen> = Vec::new();
        let mut current: Option<String> = None;
        for (citizen, rec) in rebuild(self.engine, plans).await? {
            if current.as_ref() != Some(&citizen) {
                out.push(Vec::new());
                current = Some(citizen);
            }
            if let Some(list) = out.last_mut() {
                list.push(rec);
            }
        }
        Ok(Some(out))
    }
}

/// The search for a municipality's CarePlans, in the store's own order (cheap to page).
fn plans_query(engine: &Engine, municipality: &str) -> Result<SearchQuery, FhirError> {
    let pairs = vec![(
        "identifier".to_string(),
        format!("{}|", vocab::record_system(municipality)),
    )];
    let mut q = engine.parse_pairs("CarePlan", &pairs, false)?;
    q.count = PAGE;
    Ok(q)
}

fn subject(plan: &Value) -> Option<String> {
    plan.get("subject")?
        .get("reference")?
        .as_str()
        .map(String::from)
}

/// Every relative `Type/id` reference in a resource.
fn references(v: &Value, out: &mut BTreeSet<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("reference", Value::String(r)) => {
                        if let Some((t, id)) = r.split_once('/') {
                            if !id.contains('/') && !t.contains(':') {
                                out.insert((t.to_string(), id.to_string()));
                            }
                        }
                    }
                    _ => references(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| references(x, out)),
        _ => {}
    }
}

/// Rebuild the records of a page of CarePlans: what they refer to is read in one go. A plan
/// that cannot be rebuilt is an error (500): a report that silently drops a course is wrong.
async fn rebuild(
    engine: &Engine,
    plans: Vec<(String, Value)>,
) -> Result<Vec<(String, CareRecord)>, FhirError> {
    let mut keys = BTreeSet::new();
    for (_, p) in &plans {
        references(p, &mut keys);
    }
    let keys: Vec<(String, String)> = keys.into_iter().collect();
    let mut found: HashMap<String, Value> = HashMap::with_capacity(keys.len());
    for r in engine.store().read_many(&keys).await? {
        let v = crate::municipal::stored_json(&r)?;
        found.insert(format!("{}/{}", r.rtype, r.id), v);
    }
    let get = |r: &str| found.get(r);
    let mut out = Vec::with_capacity(plans.len());
    for (citizen, p) in &plans {
        let rec = from_fhir::from_fhir(p, &get).map_err(|e| {
            FhirError::internal(format!(
                "the stored record of CarePlan/{} cannot be rebuilt: {e}",
                p.get("id").and_then(Value::as_str).unwrap_or("?")
            ))
        })?;
        out.push((citizen.clone(), rec));
    }
    Ok(out)
}

/// Write the report for `req` piece by piece to `sink` (the envelope's start, each citizen's
/// report, its end). Returns how many citizens were reported.
pub async fn write<F>(
    engine: &Engine,
    vis: Visibility,
    req: &Request,
    codes: &dyn Codes,
    envelope_id: &str,
    timestamp: &str,
    mut sink: F,
) -> Result<usize, FhirError>
where
    F: AsyncSink,
{
    let mut records = Records::open(engine, &vis, req).await?;
    let mut env = Envelope::new(req.kind);
    sink.send(env.start(envelope_id, timestamp)).await?;
    while let Some(batch) = records.next_batch().await? {
        for citizen in batch {
            let refs: Vec<&CareRecord> = citizen.iter().collect();
            if let Some(report) = citizen_report(req.kind, &refs, codes, timestamp) {
                let piece = env.entry(&report);
                sink.send(piece).await?;
            }
        }
    }
    sink.send(env.finish().to_string()).await?;
    Ok(env.len())
}

/// Where the pieces go: an HTTP body channel, or a String in tests.
#[allow(async_fn_in_trait)]
pub trait AsyncSink {
    async fn send(&mut self, piece: String) -> Result<(), FhirError>;
}

impl AsyncSink for &mut String {
    async fn send(&mut self, piece: String) -> Result<(), FhirError> {
        self.push_str(&piece);
        Ok(())
    }
}

impl AsyncSink for tokio::sync::mpsc::Sender<Result<actix_web::web::Bytes, FhirError>> {
    async fn send(&mut self, piece: String) -> Result<(), FhirError> {
        tokio::sync::mpsc::Sender::send(self, Ok(piece.into()))
            .await
            .map_err(|_| FhirError::internal("the client went away"))
    }
}
