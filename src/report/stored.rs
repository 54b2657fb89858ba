//! A municipality's stored care records, read as report facts in (citizen, CarePlan) order,
//! and the KL Gateway report written from them as a stream of text pieces.
//!
//! Each record has a row of report facts (`store/report_facts.rs`), written in the transaction
//! that stores it: the report reads those rows [`PAGE`] at a time, ordered by citizen in SQL, so
//! a citizen's courses are adjacent and each citizen's report is handed on as soon as its last
//! row is read. A row whose facts are stale (a resource of the record was written by another
//! route, or the record was stored before the facts existed) is rebuilt from the stored
//! resources by the municipal mapping's own inverse (`from_fhir`), as every record was before.
//! Memory stays bounded by one page of rows and one citizen's report.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use super::facts::Facts;
use super::kl_gateway::{citizen_report, Codes, Envelope, Kind};
use crate::engine::Engine;
use crate::error::FhirError;
use crate::municipal::from_fhir;
use crate::municipal::record::CareRecord;
use crate::store::report_facts::{FactsQuery, FactsRow, FactsWrite};
use crate::store::Visibility;

/// Rows read per page.
pub const PAGE: usize = 500;

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

/// One citizen's records, as report facts.
type Citizen = Vec<Facts>;

/// Reads a municipality's report facts from the store, page by page, a citizen's rows always
/// handed on together.
pub struct Records<'e> {
    engine: &'e Engine,
    vis: Visibility,
    q: FactsQuery,
    /// No more pages.
    done: bool,
    /// The rows of the last citizen of the last page, which may go on in the next.
    pending: Vec<FactsRow>,
}

impl<'e> Records<'e> {
    pub async fn open(
        engine: &'e Engine,
        vis: &Visibility,
        req: &Request,
    ) -> Result<Records<'e>, FhirError> {
        Ok(Records {
            engine,
            vis: vis.clone(),
            q: FactsQuery {
                municipality: req.municipality.clone(),
                kind: req.kind.as_str().to_string(),
                since_ms: req.since_ms,
                after: None,
            },
            done: false,
            pending: Vec::new(),
        })
    }

    /// The next batch of citizens, each with all of its courses in the municipality (those of
    /// the report's kind, and any that had to be rebuilt); `None` at the end.
    pub async fn next_batch(&mut self) -> Result<Option<Vec<Citizen>>, FhirError> {
        let rows = loop {
            if self.done {
                if self.pending.is_empty() {
                    return Ok(None);
                }
                break std::mem::take(&mut self.pending);
            }
            let page = self
                .engine
                .store()
                .report_facts(&self.q, PAGE, &self.vis)
                .await?;
            self.done = page.len() < PAGE;
            if let Some(last) = page.last() {
                self.q.after = Some((last.citizen.clone(), last.plan_id.clone()));
            }
            let mut rows = std::mem::take(&mut self.pending);
            rows.extend(page);
            if self.done {
                break rows;
            }
            // The last citizen may have more rows on the next page.
            let last = rows.last().map(|r| r.citizen.clone()).unwrap_or_default();
            let split = rows
                .iter()
                .rposition(|r| r.citizen != last)
                .map_or(0, |i| i + 1);
            self.pending = rows.split_off(split);
            if !rows.is_empty() {
                break rows;
            }
        };
        let facts = resolve(self.engine, &rows).await?;
        let mut out: Vec<Citizen> = Vec::new();
        let mut current: Option<&str> = None;
        for (row, f) in rows.iter().zip(facts) {
            // A plan deleted since its row was read is no longer reported.
            let Some(f) = f else { continue };
            if current != Some(row.citizen.as_str()) {
                out.push(Vec::new());
                current = Some(&row.citizen);
            }
            if let Some(list) = out.last_mut() {
                list.push(f);
            }
        }
        Ok(Some(out))
    }
}

/// The facts of each row: read from the row, or rebuilt from the stored resources when stale.
async fn resolve(engine: &Engine, rows: &[FactsRow]) -> Result<Vec<Option<Facts>>, FhirError> {
    let mut out = Vec::with_capacity(rows.len());
    let mut stale = Vec::new();
    for (n, r) in rows.iter().enumerate() {
        match &r.facts {
            Some(text) => out
                .push(Some(Facts::from_json(text).map_err(|e| {
                    FhirError::internal(format!("CarePlan/{}: {e}", r.plan_id))
                })?)),
            None => {
                out.push(None);
                stale.push((n, r.plan_id.clone()));
            }
        }
    }
    if stale.is_empty() {
        return Ok(out);
    }
    let plans = read_plans(engine, stale.iter().map(|(_, id)| id.as_str())).await?;
    let mut rebuilt: HashMap<String, Facts> = HashMap::with_capacity(plans.len());
    for (id, rec) in rebuild(engine, plans).await? {
        rebuilt.insert(id, Facts::of(&rec?));
    }
    for (n, id) in stale {
        out[n] = rebuilt.remove(&id);
    }
    Ok(out)
}

/// The current CarePlans with these ids (those deleted are left out), as `(id, JSON)`.
async fn read_plans(
    engine: &Engine,
    ids: impl Iterator<Item = &str>,
) -> Result<Vec<(String, Value)>, FhirError> {
    let keys: Vec<(String, String)> = ids
        .map(|id| ("CarePlan".to_string(), id.to_string()))
        .collect();
    engine
        .store()
        .read_many(&keys)
        .await?
        .iter()
        .map(|r| Ok((r.id.clone(), crate::municipal::stored_json(r)?)))
        .collect()
}

/// Fill in the facts of stale rows from the stored resources, in the background at start (the
/// records stored before the facts existed, and those written since by other routes). A row is
/// written only if no write made it stale again meanwhile; a record that cannot be rebuilt stays
/// stale (a report then answers as before: it cannot be rebuilt). Returns how many rows were
/// filled in.
pub async fn refresh_stale(engine: &Engine) -> Result<usize, FhirError> {
    let store = engine.store();
    let mut after = String::new();
    let mut filled = 0;
    loop {
        let stale = store.stale_report_facts(&after, PAGE).await?;
        let Some((last, _)) = stale.last() else {
            return Ok(filled);
        };
        after = last.clone();
        let stamps: HashMap<&str, i64> = stale.iter().map(|(id, s)| (id.as_str(), *s)).collect();
        let plans = read_plans(engine, stale.iter().map(|(id, _)| id.as_str())).await?;
        let mut tx = store.begin().await?;
        for (id, rec) in rebuild(engine, plans).await? {
            let (Ok(rec), Some(stamp)) = (rec, stamps.get(id.as_str())) else {
                continue;
            };
            let facts = Facts::of(&rec);
            let w = FactsWrite {
                plan_id: id,
                kind: facts.kind().as_str().to_string(),
                facts: facts.to_json(),
                if_stale_at: Some(*stamp),
            };
            if tx.put_report_facts(&w).await? {
                filled += 1;
            }
        }
        tx.commit().await?;
    }
}

/// Every relative `Type/id` reference in a resource.
fn references(v: &Value, out: &mut BTreeSet<(String, String)>) {
    fhir_core::fhir::each_reference(v, &mut |r| {
        if let Some((t, id)) = r.split_once('/') {
            if !id.contains('/') && !t.contains(':') {
                out.insert((t.to_string(), id.to_string()));
            }
        }
    });
}

/// Rebuild the records of some CarePlans (`(id, JSON)`): what they refer to is read in one go.
/// Each plan's record, or why it cannot be rebuilt (a report that silently dropped a course
/// would be wrong, so the report answers 500 for it).
async fn rebuild(
    engine: &Engine,
    plans: Vec<(String, Value)>,
) -> Result<Vec<(String, Result<CareRecord, FhirError>)>, FhirError> {
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
    Ok(plans
        .iter()
        .map(|(id, p)| {
            let rec = from_fhir::from_fhir(p, &get).map_err(|e| {
                FhirError::internal(format!(
                    "the stored record of CarePlan/{id} cannot be rebuilt: {e}"
                ))
            });
            (id.clone(), rec)
        })
        .collect())
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
            let refs: Vec<&Facts> = citizen.iter().collect();
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
