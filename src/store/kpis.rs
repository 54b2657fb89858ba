//! The care-flow KPI figures of one municipality (`GET /municipal/v1/kpis`), as SQL over one
//! table, `kpi_facts` (migration 0010): a row per care course (its CarePlan), per temporary stay
//! (the record's `stay` Encounter), per Goal of a care record, per discharge note (its stored
//! Composition) and per Patient with a CPR number (its hashed citizen key, which joins the
//! hospital events), each holding the few values the figures need, never a resource's JSON.
//!
//! [`fact`] derives a resource's row from the resource and its search values. The store writes
//! it in the statements that write the resource's version and replace its search values
//! (`store::sql::write_statements`): a new version replaces the row, a deletion removes it, in the
//! same transaction, whichever route wrote the resource (REST, transaction bundles, the municipal
//! API, discharge notes). [`backfill`] derives the rows of what was stored before migration 0010.
//! The arithmetic on what the statements return (the 24-hour rule, medians) is `report::kpis`'s.

use fhir_core::fhir::search_params::{date_range, IndexEntry, IndexValue, SearchParamRegistry};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::hospital_events::{self, HospitalEvent};
use super::search_sql::{visibility, Bind, Sql};
use super::{StoreError, Visibility};
use crate::municipal::vocab;

/// What a `kpi_facts` row is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactKind {
    /// A care course: the record's CarePlan (identifier system `vocab::record_system`).
    Course,
    /// A temporary stay: the record's Encounter with local identifier `stay`.
    Stay,
    /// A Goal of a care record.
    Goal,
    /// A discharge note: its stored discharge-summary Composition (`vocab::note_system`).
    Note,
    /// A Patient with a CPR number: `record` is its citizen key (`medcom::citizen_key`), the key
    /// of its hospital events.
    Patient,
}

impl FactKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FactKind::Course => "course",
            FactKind::Stay => "stay",
            FactKind::Goal => "goal",
            FactKind::Note => "note",
            FactKind::Patient => "patient",
        }
    }
}

/// One `kpi_facts` row (see the module's documentation). Texts are kept as written in the
/// resource; the milliseconds are what the statements select and compute on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KpiFact {
    pub kind: FactKind,
    /// The municipality code (empty for a Patient).
    pub municipality: String,
    /// Course, stay and Goal: the care record id; note: the note id; Patient: its citizen key.
    pub record: String,
    /// Course: its period's first and last millisecond (its `date` search value); note: the
    /// Composition's `date` (its first millisecond) in both.
    pub lo: Option<i64>,
    pub hi: Option<i64>,
    /// Course: `period.start` and `period.end` as written.
    pub start: Option<String>,
    pub end: Option<String>,
    /// Stay: the first millisecond of `period.start` (admitted), of the first
    /// `ready-for-discharge` extension's `valueDateTime`, and of `period.end` (discharged).
    pub start_ms: Option<i64>,
    pub ready_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// Course: the first `rehab-phase` extension's `valueCode`; Goal:
    /// `achievementStatus.coding[0].code`.
    pub code: Option<String>,
    /// Course: the id of the Patient it is about (its `subject` search value).
    pub subject: Option<String>,
    /// Note: how many warnings the gateway gave it (`discharge-note-warning` extensions).
    pub warnings: Option<i64>,
}

impl KpiFact {
    fn new(kind: FactKind, municipality: &str, record: &str) -> KpiFact {
        KpiFact {
            kind,
            municipality: municipality.to_string(),
            record: record.to_string(),
            lo: None,
            hi: None,
            start: None,
            end: None,
            start_ms: None,
            ready_ms: None,
            end_ms: None,
            code: None,
            subject: None,
            warnings: None,
        }
    }
}

/// What to read: the municipality and the period as epoch milliseconds, `[from_ms, to_ms)`.
#[derive(Debug, Clone)]
pub struct KpiQuery {
    pub municipality: String,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// One temporary stay: the first millisecond of its times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StayTimes {
    pub admitted_ms: Option<i64>,
    pub ready_ms: Option<i64>,
    pub discharged_ms: Option<i64>,
}

/// A care course active at some time in the period whose citizen has hospital events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveCourse {
    /// The CarePlan's id.
    pub id: String,
    pub start: Option<String>,
    pub end: Option<String>,
    /// The citizen key of its Patient (`medcom::citizen_key`).
    pub citizen: String,
}

/// What the store returns for the KPIs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KpiRows {
    /// The stays whose ready-for-discharge or discharge time falls in the period (the others
    /// count in no figure).
    pub stays: Vec<StayTimes>,
    /// The active courses, counted by phase code.
    pub phases: Vec<(Option<String>, i64)>,
    /// The Goals of the active courses, counted by achievement code.
    pub goals: Vec<(Option<String>, i64)>,
    /// The active courses whose citizens have hospital events, and those events (by citizen, in
    /// time order).
    pub courses: Vec<ActiveCourse>,
    pub events: Vec<HospitalEvent>,
    /// The discharge notes accepted in the period with at least one warning.
    pub notes_with_warnings: i64,
}

/// The `(system, value)` of a resource's identifiers (a list, or one as in Composition).
fn identifiers(resource: &Value) -> Vec<(&str, &str)> {
    fn one(i: &Value) -> Option<(&str, &str)> {
        Some((i.get("system")?.as_str()?, i.get("value")?.as_str()?))
    }
    match resource.get("identifier") {
        Some(Value::Array(a)) => a.iter().filter_map(one).collect(),
        Some(i @ Value::Object(_)) => one(i).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// A path segment: not empty, no `/`.
fn segment(s: &str) -> Option<&str> {
    (!s.is_empty() && !s.contains('/')).then_some(s)
}

/// The first string at `key` of the first extension with `url` (none when that extension's value
/// is not a string).
fn first_extension<'a>(resource: &'a Value, url: &str, key: &str) -> Option<&'a str> {
    resource
        .get("extension")?
        .as_array()?
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(url))?
        .get(key)?
        .as_str()
}

fn text_at(resource: &Value, pointer: &str) -> Option<String> {
    resource
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn first_ms(s: Option<&str>) -> Option<i64> {
    date_range(s?).map(|(lo, _)| lo)
}

/// The `kpi_facts` row of `resource`, whose search values are `index`, or `None` for a resource
/// the figures do not read: a CarePlan with an identifier in a municipality's record system (a
/// course), an Encounter with local identifier `stay` in a record's part system (a stay), a Goal
/// with an identifier in a record's part system, a Composition with an identifier in a
/// municipality's discharge-note system (a note), a Patient with a CPR number. The first such
/// identifier decides.
pub fn fact(resource: &Value, index: &[IndexEntry]) -> Option<KpiFact> {
    let rtype = resource.get("resourceType")?.as_str()?;
    let ids = identifiers(resource);
    let care = format!("{}/NamingSystem/care-record/", vocab::BASE);
    // `{care}{municipality}/{record}` → (municipality, record)
    fn part<'a>(care: &str, system: &'a str) -> Option<(&'a str, &'a str)> {
        let (m, r) = system.strip_prefix(care)?.split_once('/')?;
        Some((segment(m)?, segment(r)?))
    }
    match rtype {
        "CarePlan" => {
            let (m, record) = ids
                .iter()
                .find_map(|(s, v)| Some((segment(s.strip_prefix(care.as_str())?)?, *v)))?;
            let mut f = KpiFact::new(FactKind::Course, m, record);
            f.start = text_at(resource, "/period/start");
            f.end = text_at(resource, "/period/end");
            f.code = first_extension(resource, vocab::ext::PHASE, "valueCode").map(str::to_string);
            for e in index {
                match (&*e.param, &e.value) {
                    ("date", IndexValue::Date { lo, hi }) if f.lo.is_none() => {
                        (f.lo, f.hi) = (Some(*lo), Some(*hi));
                    }
                    ("subject", IndexValue::Reference { rtype, id })
                        if rtype == "Patient" && f.subject.is_none() =>
                    {
                        f.subject = Some(id.clone());
                    }
                    _ => {}
                }
            }
            Some(f)
        }
        "Encounter" => {
            let (m, record) =
                ids.iter()
                    .find_map(|(s, v)| if *v == "stay" { part(&care, s) } else { None })?;
            let mut f = KpiFact::new(FactKind::Stay, m, record);
            let at = |p: &str| first_ms(resource.pointer(p).and_then(Value::as_str));
            f.start_ms = at("/period/start");
            f.end_ms = at("/period/end");
            f.ready_ms = first_ms(first_extension(
                resource,
                vocab::ext::READY_FOR_DISCHARGE,
                "valueDateTime",
            ));
            Some(f)
        }
        "Goal" => {
            let (m, record) = ids.iter().find_map(|(s, _)| part(&care, s))?;
            let mut f = KpiFact::new(FactKind::Goal, m, record);
            f.code = text_at(resource, "/achievementStatus/coding/0/code");
            Some(f)
        }
        "Composition" => {
            let notes = format!("{}/NamingSystem/discharge-note/", vocab::BASE);
            let (m, note) = ids
                .iter()
                .find_map(|(s, v)| Some((segment(s.strip_prefix(notes.as_str())?)?, *v)))?;
            let mut f = KpiFact::new(FactKind::Note, m, note);
            f.lo = first_ms(resource.get("date").and_then(Value::as_str));
            f.hi = f.lo;
            let warnings = resource
                .get("extension")
                .and_then(Value::as_array)
                .map_or(0, |a| {
                    a.iter()
                        .filter(|e| {
                            e.get("url").and_then(Value::as_str) == Some(vocab::ext::NOTE_WARNING)
                        })
                        .count()
                });
            f.warnings = Some(i64::try_from(warnings).unwrap_or(i64::MAX));
            Some(f)
        }
        "Patient" => {
            let cpr = ids.iter().find(|(s, _)| *s == vocab::CPR)?.1;
            let key = crate::medcom::citizen_key(&format!("{}|{cpr}", vocab::CPR));
            Some(KpiFact::new(FactKind::Patient, "", &key))
        }
        _ => None,
    }
}

/// Removes the row of `(rtype, id)` (before its new version's, or for its deletion).
pub(crate) fn delete_fact(rtype: &str, id: &str) -> Sql {
    let mut sql = Sql::default();
    sql.push("DELETE FROM kpi_facts WHERE res_type = ")
        .text(rtype)
        .push(" AND res_id = ")
        .text(id);
    sql
}

/// Inserts the row `f` of `(rtype, id)`, with the version's tenancy columns (the visibility
/// filter reads them as it reads `resources`').
pub(crate) fn insert_fact(
    rtype: &str,
    id: &str,
    owner: Option<&str>,
    citizen: Option<&str>,
    f: &KpiFact,
) -> Sql {
    let mut sql = Sql::default();
    sql.push("INSERT INTO kpi_facts (res_type, res_id, kind, municipality, record, owner, citizen, lo, hi, start_at, end_at, start_ms, ready_ms, end_ms, code, subject, warnings) VALUES (")
        .text(rtype)
        .push(", ")
        .text(id)
        .push(", ")
        .text(f.kind.as_str())
        .push(", ")
        .text(&f.municipality)
        .push(", ")
        .text(&f.record);
    for t in [owner, citizen] {
        sql.push(", ");
        opt_text_value(&mut sql, t);
    }
    for n in [f.lo, f.hi] {
        sql.push(", ");
        opt_int_value(&mut sql, n);
    }
    for t in [&f.start, &f.end] {
        sql.push(", ");
        opt_text_value(&mut sql, t.as_deref());
    }
    for n in [f.start_ms, f.ready_ms, f.end_ms] {
        sql.push(", ");
        opt_int_value(&mut sql, n);
    }
    for t in [&f.code, &f.subject] {
        sql.push(", ");
        opt_text_value(&mut sql, t.as_deref());
    }
    sql.push(", ");
    opt_int_value(&mut sql, f.warnings);
    sql.push(")");
    sql
}

fn opt_text_value(sql: &mut Sql, v: Option<&str>) {
    match v {
        Some(t) => sql.text(t),
        None => sql.push("NULL"),
    };
}

fn opt_int_value(sql: &mut Sql, v: Option<i64>) {
    match v {
        Some(n) => sql.bind(Bind::Int(n)),
        None => sql.push("NULL"),
    };
}

/// `{a}.municipality = … AND {a}.kind = …`: the rows of `kind` of the municipality.
fn of_kind(sql: &mut Sql, a: &str, kind: FactKind, q: &KpiQuery) {
    sql.push(&format!(" {a}.municipality = "))
        .text(&q.municipality)
        .push(&format!(" AND {a}.kind = '{}'", kind.as_str()));
}

/// The conditions on `a` of the municipality's courses active at some time in the period (their
/// period overlaps it; an open period runs on), visible under `vis`.
fn active_courses(sql: &mut Sql, a: &str, q: &KpiQuery, vis: &Visibility) {
    of_kind(sql, a, FactKind::Course, q);
    sql.push(&format!(" AND {a}.lo < "))
        .bind(Bind::Int(q.to_ms))
        .push(&format!(" AND {a}.hi >= "))
        .bind(Bind::Int(q.from_ms));
    visibility(sql, a, vis);
}

/// The stays whose ready-for-discharge or discharge time falls in the period.
pub(crate) fn stays(q: &KpiQuery, vis: &Visibility) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT s.start_ms AS admitted, s.ready_ms AS ready, s.end_ms AS discharged FROM kpi_facts s WHERE");
    of_kind(&mut sql, "s", FactKind::Stay, q);
    sql.push(" AND ((s.ready_ms >= ")
        .bind(Bind::Int(q.from_ms))
        .push(" AND s.ready_ms < ")
        .bind(Bind::Int(q.to_ms))
        .push(") OR (s.end_ms >= ")
        .bind(Bind::Int(q.from_ms))
        .push(" AND s.end_ms < ")
        .bind(Bind::Int(q.to_ms))
        .push("))");
    visibility(&mut sql, "s", vis);
    sql
}

/// The active courses counted by phase code.
pub(crate) fn phases(q: &KpiQuery, vis: &Visibility) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT c.code AS code, COUNT(*) AS n FROM kpi_facts c WHERE");
    active_courses(&mut sql, "c", q, vis);
    sql.push(" GROUP BY c.code");
    sql
}

/// The hospital events of the active courses' citizens: a row per course and event, with the
/// course's id and period, by course and then as a citizen's events are read. A course's citizen
/// is its Patient's citizen key (the Patient's own row; its visibility is not asked, the
/// course's is).
pub(crate) fn course_events(q: &KpiQuery, vis: &Visibility) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT c.res_id AS course, c.start_at AS start, c.end_at AS finish, ")
        .push(&hospital_events::columns_of("e"))
        .push(" FROM kpi_facts c JOIN kpi_facts p ON p.res_type = 'Patient' AND p.res_id = c.subject JOIN hospital_events e ON e.citizen = p.record WHERE");
    active_courses(&mut sql, "c", q, vis);
    sql.push(" ORDER BY c.res_id, e.citizen, e.event_ms, e.received_ms, e.message_id");
    sql
}

/// The Goals of the active courses (visible under `vis`, as the courses are), counted by
/// achievement code.
pub(crate) fn goals(q: &KpiQuery, vis: &Visibility) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT g.code AS code, COUNT(*) AS n FROM kpi_facts g WHERE");
    of_kind(&mut sql, "g", FactKind::Goal, q);
    visibility(&mut sql, "g", vis);
    sql.push(" AND g.record IN (SELECT c.record FROM kpi_facts c WHERE");
    active_courses(&mut sql, "c", q, vis);
    sql.push(") GROUP BY g.code");
    sql
}

/// How many discharge notes accepted in the period (their Composition's `date`) had warnings.
pub(crate) fn notes_with_warnings(q: &KpiQuery, vis: &Visibility) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT COUNT(*) AS n FROM kpi_facts n WHERE");
    of_kind(&mut sql, "n", FactKind::Note, q);
    sql.push(" AND n.lo >= ")
        .bind(Bind::Int(q.from_ms))
        .push(" AND n.lo < ")
        .bind(Bind::Int(q.to_ms))
        .push(" AND n.warnings > 0");
    visibility(&mut sql, "n", vis);
    sql
}

fn opt_text(row: &AnyRow, n: &str) -> Result<Option<String>, StoreError> {
    row.try_get::<Option<String>, _>(n)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A count (`BIGINT` on PostgreSQL, `INTEGER` on SQLite).
pub(crate) fn count(row: &AnyRow, n: &str) -> Result<i64, StoreError> {
    row.try_get::<i64, _>(n)
        .or_else(|_| row.try_get::<i32, _>(n).map(i64::from))
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn opt_int(row: &AnyRow, n: &str) -> Result<Option<i64>, StoreError> {
    row.try_get::<Option<i64>, _>(n)
        .or_else(|_| row.try_get::<Option<i32>, _>(n).map(|v| v.map(i64::from)))
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn stay_row(row: &AnyRow) -> Result<StayTimes, StoreError> {
    Ok(StayTimes {
        admitted_ms: opt_int(row, "admitted")?,
        ready_ms: opt_int(row, "ready")?,
        discharged_ms: opt_int(row, "discharged")?,
    })
}

/// A `(code, n)` row of a count by code.
pub(crate) fn counted_row(row: &AnyRow) -> Result<(Option<String>, i64), StoreError> {
    Ok((opt_text(row, "code")?, count(row, "n")?))
}

/// The [`course_events`] rows as the courses (once each) and the events (once each: two courses
/// of one citizen share them).
pub(crate) fn course_event_rows(
    rows: &[AnyRow],
) -> Result<(Vec<ActiveCourse>, Vec<HospitalEvent>), StoreError> {
    let mut courses: Vec<ActiveCourse> = Vec::new();
    let mut events = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for row in rows {
        let event = hospital_events::row(row)?;
        let id: String = row
            .try_get("course")
            .map_err(|e: sqlx::Error| StoreError::Corrupt(e.to_string()))?;
        if courses.last().is_none_or(|c| c.id != id) {
            courses.push(ActiveCourse {
                id,
                start: opt_text(row, "start")?,
                end: opt_text(row, "finish")?,
                citizen: event.citizen.clone(),
            });
        }
        if seen.insert((event.sender.clone(), event.message_id.clone())) {
            events.push(event);
        }
    }
    Ok((courses, events))
}

/// Migration 0010's second step: the rows of the resources stored before it, derived by [`fact`]
/// from each current resource and its search values (as the embedded search parameters give
/// them), 500 resources at a time. Candidates are the current CarePlans, Encounters, Goals,
/// Compositions and Patients with an identifier in a care-record, discharge-note or CPR system.
pub(crate) async fn backfill(conn: &mut sqlx::AnyConnection) -> Result<(), StoreError> {
    let registry = SearchParamRegistry::embedded();
    let db = |e: sqlx::Error| StoreError::Corrupt(format!("kpi_facts back-fill: {e}"));
    let mut after = (String::new(), String::new());
    loop {
        let mut sql = Sql::default();
        sql.push("SELECT r.res_type, r.id, r.content, r.owner, r.citizen FROM resources r WHERE r.deleted = 0 AND r.res_type IN ('CarePlan', 'Encounter', 'Goal', 'Composition', 'Patient') AND (r.res_type > ")
            .text(&after.0)
            .push(" OR (r.res_type = ")
            .text(&after.0)
            .push(" AND r.id > ")
            .text(&after.1)
            .push(")) AND EXISTS (SELECT 1 FROM search_index i WHERE i.res_type = r.res_type AND i.res_id = r.id AND i.param = 'identifier' AND (i.system LIKE ")
            .text(&format!("{}/NamingSystem/care-record/%", vocab::BASE))
            .push(" OR i.system LIKE ")
            .text(&format!("{}/NamingSystem/discharge-note/%", vocab::BASE))
            .push(" OR i.system = ")
            .text(vocab::CPR)
            .push(")) ORDER BY r.res_type, r.id LIMIT 500");
        let rows = super::sql::query(&sql)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = (
            last.try_get("res_type").map_err(db)?,
            last.try_get("id").map_err(db)?,
        );
        for row in &rows {
            let rtype: String = row.try_get("res_type").map_err(db)?;
            let id: String = row.try_get("id").map_err(db)?;
            let content: Option<String> = row.try_get("content").map_err(db)?;
            let Some(resource) = content.and_then(|c| serde_json::from_str::<Value>(&c).ok())
            else {
                continue;
            };
            let Some(f) = fact(&resource, &registry.extract(&resource)) else {
                continue;
            };
            let owner: Option<String> = row.try_get("owner").map_err(db)?;
            let citizen: Option<String> = row.try_get("citizen").map_err(db)?;
            let sql = insert_fact(&rtype, &id, owner.as_deref(), citizen.as_deref(), &f);
            super::sql::query(&sql)
                .execute(&mut *conn)
                .await
                .map_err(db)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewVersion;
    use serde_json::json;

    const RS: &str = "http://sektorbro.dk/fhir/NamingSystem/care-record/0510";
    const PARTS: &str = "http://sektorbro.dk/fhir/NamingSystem/care-record/0510/R1";
    const NOTES: &str = "http://sektorbro.dk/fhir/NamingSystem/discharge-note/0510";

    /// Resources of every kind with every value, and the cases that have fewer: a value that is
    /// not a string, a first matching extension without the value, no achievement, no warning,
    /// no CPR number, and resources the figures do not read.
    fn resources() -> Vec<Value> {
        vec![
            json!({"resourceType": "CarePlan", "id": "cp1", "status": "active", "intent": "plan",
                "identifier": [{"system": "urn:other", "value": "x"}, {"system": RS, "value": "R1"}],
                "extension": [{"url": "http://example.org/other", "valueCode": "x"},
                              {"url": vocab::ext::PHASE, "valueCode": "intervention"},
                              {"url": vocab::ext::PHASE, "valueCode": "completed"}],
                "subject": {"reference": "Patient/p1"},
                "period": {"start": "2025-03-10T12:15:00+01:00", "end": "2025-04-04"}}),
            json!({"resourceType": "CarePlan", "id": "cp2", "status": "active", "intent": "plan",
                "identifier": [{"system": RS, "value": "R2"}],
                "extension": [{"url": vocab::ext::PHASE, "valueString": "no code"},
                              {"url": vocab::ext::PHASE, "valueCode": "completed"}],
                "period": {"start": "2025-03-10"}}),
            json!({"resourceType": "Encounter", "id": "e1", "status": "finished",
                "class": {"code": "SS"}, "identifier": [{"system": PARTS, "value": "stay"}],
                "extension": [{"url": vocab::ext::READY_FOR_DISCHARGE, "valueDateTime": "2025-04-02T10:00:00Z"}],
                "period": {"start": "2025-03-10T12:15:00Z", "end": "2025-04-04T08:30:00+01:00"}}),
            json!({"resourceType": "Encounter", "id": "e2", "status": "finished",
                "class": {"code": "SS"}, "identifier": [{"system": PARTS, "value": "stay"}],
                "extension": [{"url": vocab::ext::READY_FOR_DISCHARGE, "valueDateTime": 20250402}],
                "period": {"end": "2025-04-04T08:30:00Z"}}),
            json!({"resourceType": "Goal", "id": "g1", "lifecycleStatus": "active",
                "identifier": [{"system": PARTS, "value": "goal-0"}],
                "achievementStatus": {"coding": [{"code": "achieved"}, {"code": "improving"}]},
                "subject": {"reference": "Patient/p1"}}),
            json!({"resourceType": "Goal", "id": "g2", "lifecycleStatus": "active",
                "identifier": [{"system": PARTS, "value": "goal-1"}],
                "subject": {"reference": "Patient/p1"}}),
            json!({"resourceType": "Composition", "id": "n1", "status": "final",
                "identifier": {"system": NOTES, "value": "note-1"},
                "extension": [{"url": vocab::ext::NOTE_WARNING, "valueString": "$.contact"},
                              {"url": vocab::ext::NOTE_WARNING, "valueString": "$.followUp"}],
                "type": {"text": "Discharge summary"}, "date": "2025-04-04T09:00:00+02:00",
                "author": [{"display": "x"}], "title": "Discharge summary"}),
            json!({"resourceType": "Composition", "id": "n2", "status": "final",
                "identifier": {"system": NOTES, "value": "note-2"},
                "type": {"text": "Discharge summary"}, "date": "2025-04-05",
                "author": [{"display": "x"}], "title": "Discharge summary"}),
            json!({"resourceType": "Encounter", "id": "other", "status": "finished",
                "class": {"code": "IMP"}, "identifier": [{"system": "urn:other", "value": "stay"}],
                "period": {"start": "2025-03-10T12:15:00Z"}}),
            json!({"resourceType": "Encounter", "id": "not-a-stay", "status": "finished",
                "class": {"code": "SS"}, "identifier": [{"system": PARTS, "value": "visit"}]}),
            json!({"resourceType": "Patient", "id": "p1",
                "identifier": [{"system": RS, "value": "R1"}]}),
            json!({"resourceType": "Patient", "id": "p2",
                "identifier": [{"system": RS, "value": "R1"}, {"system": vocab::CPR, "value": "0101701234"}]}),
        ]
    }

    fn ms(s: &str) -> Option<i64> {
        Some(
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_millis(),
        )
    }

    fn fact_of(r: &Value) -> Option<KpiFact> {
        fact(r, &SearchParamRegistry::embedded().extract(r))
    }

    #[test]
    fn a_row_holds_the_values_the_figures_read_as_written() {
        let all = resources();
        let mut course = KpiFact::new(FactKind::Course, "0510", "R1");
        course.start = Some("2025-03-10T12:15:00+01:00".into());
        course.end = Some("2025-04-04".into());
        course.code = Some("intervention".into());
        course.subject = Some("p1".into());
        course.lo = ms("2025-03-10T12:15:00+01:00");
        course.hi = ms("2025-04-04T23:59:59.999Z");
        assert_eq!(fact_of(&all[0]), Some(course));
        // The first phase extension has no code: no phase. An open period runs on.
        let cp2 = fact_of(&all[1]).expect("a course");
        assert_eq!((cp2.record.as_str(), cp2.code, cp2.end), ("R2", None, None));
        assert_eq!(cp2.lo, ms("2025-03-10T00:00:00Z"));
        assert!(cp2.hi > ms("9000-01-01T00:00:00Z"), "{:?}", cp2.hi);
        let mut stay = KpiFact::new(FactKind::Stay, "0510", "R1");
        stay.start_ms = ms("2025-03-10T12:15:00Z");
        stay.ready_ms = ms("2025-04-02T10:00:00Z");
        stay.end_ms = ms("2025-04-04T07:30:00Z");
        assert_eq!(fact_of(&all[2]), Some(stay));
        // A ready time that is not a string is none.
        let e2 = fact_of(&all[3]).expect("a stay");
        assert_eq!((e2.ready_ms, e2.start_ms), (None, None));
        assert_eq!(e2.end_ms, ms("2025-04-04T08:30:00Z"));
        let mut goal = KpiFact::new(FactKind::Goal, "0510", "R1");
        goal.code = Some("achieved".into());
        assert_eq!(fact_of(&all[4]), Some(goal));
        assert_eq!(
            fact_of(&all[5]),
            Some(KpiFact::new(FactKind::Goal, "0510", "R1"))
        );
        let mut note = KpiFact::new(FactKind::Note, "0510", "note-1");
        note.lo = ms("2025-04-04T07:00:00Z");
        note.hi = note.lo;
        note.warnings = Some(2);
        assert_eq!(fact_of(&all[6]), Some(note));
        assert_eq!(fact_of(&all[7]).and_then(|f| f.warnings), Some(0));
        assert_eq!(fact_of(&all[8]), None, "not a care record's Encounter");
        assert_eq!(fact_of(&all[9]), None, "not the record's stay");
        assert_eq!(fact_of(&all[10]), None, "a Patient without a CPR number");
        assert_eq!(
            fact_of(&all[11]),
            Some(KpiFact::new(
                FactKind::Patient,
                "",
                &crate::medcom::citizen_key("urn:oid:1.2.208.176.1.2|0101701234")
            ))
        );
    }

    type FactRow = (String, String, String, String, Option<i64>, Option<String>);

    /// The columns that tell rows apart in the tests: key, kind, record, lo, code.
    fn row_of(rtype: &str, id: &str, f: &KpiFact) -> FactRow {
        (
            rtype.to_string(),
            id.to_string(),
            f.kind.as_str().to_string(),
            f.record.clone(),
            f.lo,
            f.code.clone(),
        )
    }

    async fn stored_rows(pool: &sqlx::AnyPool) -> Vec<FactRow> {
        let rows = sqlx::query("SELECT res_type, res_id, kind, record, lo, code FROM kpi_facts")
            .fetch_all(pool)
            .await
            .expect("rows");
        let mut got: Vec<FactRow> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
            .collect();
        got.sort();
        got
    }

    /// Migration 0010 on a database written before it (search values only, and the `kpi:*`
    /// search_index rows of migration 0008): afterwards `kpi_facts` holds exactly what the
    /// writer writes, and no `kpi:*` row is left. Then the writer keeps the rows in step: a new
    /// version replaces a row, a deletion removes it. On SQLite, and on PostgreSQL when
    /// `SEKTORBRO_TEST_POSTGRES_URL` is set.
    #[tokio::test]
    async fn migration_0010_backfills_the_rows_the_writer_writes() {
        let dir = tempfile::tempdir().expect("dir");
        let sqlite = format!("sqlite://{}", dir.path().join("m.db").display());
        backfill_matches_writer(&sqlite).await;
        if let Some(pg) = crate::store::test_pg::PgSchema::create("t_kpi", "PostgreSQL half").await
        {
            backfill_matches_writer(&pg.url).await;
            pg.drop().await;
        }
    }

    async fn write(
        store: &std::sync::Arc<dyn crate::store::Storage>,
        r: &Value,
        version: i64,
        with_fact: bool,
    ) {
        let registry = SearchParamRegistry::embedded();
        let (rtype, id) = (
            r["resourceType"].as_str().unwrap(),
            r["id"].as_str().unwrap(),
        );
        let text = r.to_string();
        let index = registry.extract(r);
        let f = fact(r, &index);
        let mut tx = store.begin().await.expect("begin");
        tx.write(&NewVersion {
            rtype,
            id,
            version,
            last_updated_ms: 0,
            method: "PUT",
            content: Some(&text),
            index: &index,
            kpi: if with_fact { f.as_ref() } else { None },
            owner: Some("urn:test|0510"),
            citizen: None,
        })
        .await
        .expect("write");
        tx.commit().await.expect("commit");
    }

    async fn backfill_matches_writer(url: &str) {
        let mut cache = crate::config::Config::defaults().cache;
        cache.enabled = false;
        let store = crate::store::open(url, 2, "normal", 0, &cache)
            .await
            .expect("store");
        let mut expected = Vec::new();
        for r in resources() {
            // Written as before migration 0010: no row.
            write(&store, &r, 1, false).await;
            if let Some(f) = fact_of(&r) {
                expected.push(row_of(
                    r["resourceType"].as_str().unwrap(),
                    r["id"].as_str().unwrap(),
                    &f,
                ));
            }
        }
        expected.sort();
        assert_eq!(expected.len(), 9);
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(url).await.expect("connect");
        assert!(stored_rows(&pool).await.is_empty());
        // Undo migration 0010 and put back a fact row of migration 0008.
        for s in [
            "DROP TABLE kpi_facts",
            "DELETE FROM schema_migrations WHERE version = 10",
            "INSERT INTO search_index (res_type, res_id, param, system, value) VALUES ('Goal', 'g1', 'kpi:achievement', '', 'achieved')",
        ] {
            sqlx::query(s).execute(&pool).await.expect(s);
        }
        let backend = if url.starts_with("sqlite") {
            crate::store::Backend::Sqlite
        } else {
            crate::store::Backend::Postgres
        };
        crate::store::migrate::run(&pool, backend)
            .await
            .expect("migrate");
        assert_eq!(stored_rows(&pool).await, expected, "{url}");
        let left: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM search_index WHERE param LIKE 'kpi:%'")
                .fetch_one(&pool)
                .await
                .expect("count");
        assert_eq!(left, 0, "{url}");
        // A new version replaces the row; a deletion removes it.
        let mut g1 = resources()[4].clone();
        g1["achievementStatus"] = json!({"coding": [{"code": "not-achieved"}]});
        write(&store, &g1, 2, true).await;
        let mut tx = store.begin().await.expect("begin");
        tx.write(&NewVersion {
            rtype: "CarePlan",
            id: "cp2",
            version: 2,
            last_updated_ms: 0,
            method: "DELETE",
            content: None,
            index: &[],
            kpi: None,
            owner: Some("urn:test|0510"),
            citizen: None,
        })
        .await
        .expect("delete");
        tx.commit().await.expect("commit");
        let got = stored_rows(&pool).await;
        assert_eq!(got.len(), 8, "{got:?}");
        assert!(got.iter().all(|r| r.1 != "cp2"));
        assert!(got
            .iter()
            .any(|r| r.1 == "g1" && r.5.as_deref() == Some("not-achieved")));
        pool.close().await;
    }
}
