//! A municipality's stored care records, read page by page and rebuilt into typed records,
//! grouped by citizen, and the KL Gateway report written from them as a stream of text pieces.
//!
//! Memory stays bounded by one page of records plus one citizen's report: CarePlans are read
//! [`PAGE`] at a time (sorted by citizen, so a citizen's courses are adjacent), the resources
//! they refer to in one `read_many` per page, each record rebuilt by the municipal mapping's own
//! inverse (`from_fhir`), and each citizen's report handed on as soon as its last course is read.

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

/// Reads a municipality's records from the store, a page at a time.
pub struct Records<'e> {
    engine: &'e Engine,
    vis: Visibility,
    query: SearchQuery,
    done: bool,
    /// The citizen whose courses are being collected (its Patient reference) and them.
    pending: Option<(String, Citizen)>,
    /// Citizens ready to report.
    ready: std::collections::VecDeque<Citizen>,
    since_ms: Option<i64>,
    municipality: String,
}

impl<'e> Records<'e> {
    pub fn new(engine: &'e Engine, vis: Visibility, req: &Request) -> Result<Self, FhirError> {
        let query = plans_query(engine, &req.municipality, None, req.since_ms)?;
        Ok(Records {
            engine,
            vis,
            query,
            done: false,
            pending: None,
            ready: Default::default(),
            since_ms: req.since_ms,
            municipality: req.municipality.clone(),
        })
    }

    /// The next citizen's records (all of the citizen's courses in the municipality), or `None`
    /// at the end.
    pub async fn next_citizen(&mut self) -> Result<Option<Citizen>, FhirError> {
        loop {
            if let Some(c) = self.ready.pop_front() {
                return Ok(Some(c));
            }
            if self.done {
                return Ok(self.pending.take().map(|(_, c)| c));
            }
            self.next_page().await?;
        }
    }

    async fn next_page(&mut self) -> Result<(), FhirError> {
        let store = self.engine.store();
        let mut hits = store.search(&self.query, PAGE + 1, &self.vis).await?;
        if hits.len() > PAGE {
            hits.truncate(PAGE);
            let last = &hits[PAGE - 1];
            self.query.after = Some(Cursor {
                values: last.sort_values.clone(),
                seq: last.seq,
            });
        } else {
            self.done = true;
        }
        let plans: Vec<Value> = hits
            .iter()
            .map(|h| crate::municipal::stored_json(&h.resource))
            .collect::<Result<_, _>>()?;
        let plans = if self.since_ms.is_some() {
            // A citizen whose course changed is reported with all of its courses: its report
            // replaces the previous one.
            self.with_unchanged_courses(plans).await?
        } else {
            plans
        };
        for (subject, rec) in rebuild(self.engine, plans).await? {
            match &mut self.pending {
                Some((s, list)) if *s == subject => list.push(rec),
                _ => {
                    if let Some((_, done)) = self.pending.replace((subject, vec![rec])) {
                        self.ready.push_back(done);
                    }
                }
            }
        }
        Ok(())
    }

    /// The changed plans of a page, each followed by its citizen's other plans in the
    /// municipality.
    async fn with_unchanged_courses(&self, plans: Vec<Value>) -> Result<Vec<Value>, FhirError> {
        let mut out: Vec<Value> = Vec::new();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut subjects: Vec<String> = Vec::new();
        for p in &plans {
            if let Some(s) = subject(p) {
                if !subjects.contains(&s) && self.pending.as_ref().map(|(x, _)| x) != Some(&s) {
                    subjects.push(s);
                }
            }
        }
        for s in subjects {
            let q = plans_query(self.engine, &self.municipality, Some(&s), None)?;
            for hit in self.engine.store().search(&q, 1000, &self.vis).await? {
                if seen.insert(hit.resource.id.clone()) {
                    out.push(crate::municipal::stored_json(&hit.resource)?);
                }
            }
        }
        Ok(out)
    }
}

/// The search for a municipality's CarePlans (optionally one citizen's), sorted by citizen.
fn plans_query(
    engine: &Engine,
    municipality: &str,
    subject: Option<&str>,
    since_ms: Option<i64>,
) -> Result<SearchQuery, FhirError> {
    let mut pairs = vec![
        (
            "identifier".to_string(),
            format!("{}|", vocab::record_system(municipality)),
        ),
        ("_sort".to_string(), "subject,_id".to_string()),
    ];
    if let Some(s) = subject {
        pairs.push(("subject".into(), s.into()));
    }
    if let Some(ms) = since_ms {
        pairs.push((
            "_lastUpdated".into(),
            format!("gt{}", fhir_core::fhir::instant(ms)),
        ));
    }
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
    plans: Vec<Value>,
) -> Result<Vec<(String, CareRecord)>, FhirError> {
    let mut keys = BTreeSet::new();
    for p in &plans {
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
    for p in &plans {
        let rec = from_fhir::from_fhir(p, &get).map_err(|e| {
            FhirError::internal(format!(
                "the stored record of CarePlan/{} cannot be rebuilt: {e}",
                p.get("id").and_then(Value::as_str).unwrap_or("?")
            ))
        })?;
        out.push((subject(p).unwrap_or_default(), rec));
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
    let mut records = Records::new(engine, vis, req)?;
    let mut env = Envelope::new(req.kind);
    sink.send(env.start(envelope_id, timestamp)).await?;
    while let Some(citizen) = records.next_citizen().await? {
        let refs: Vec<&CareRecord> = citizen.iter().collect();
        if let Some(report) = citizen_report(req.kind, &refs, codes, timestamp) {
            let piece = env.entry(&report);
            sink.send(piece).await?;
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
