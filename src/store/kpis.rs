//! The care-flow KPI figures of one municipality (`GET /municipal/v1/kpis`), as SQL: a few
//! statements over `search_index` alone, never the resources' JSON. Besides the ordinary search
//! values (identifiers, the course's `date`), a care record's CarePlans, Encounters and Goals
//! carry *facts* in `search_index`: the few values the figures need (period start and end, the
//! ready-for-discharge time, the phase, the goal's achievement), as written, under parameter names
//! no search can name ([`facts`]; `kpi:` is a modifier's syntax in a query). They are written and
//! replaced with the resource's other index rows in its write transaction, and migration 0008
//! derived them for resources stored before. The arithmetic on what the statements return (the
//! 24-hour rule, medians) is `report::kpis`'s business.

use fhir_core::fhir::search_params::{IndexEntry, IndexValue};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::search_sql::{visibility, Bind, Sql};
use super::{StoreError, Visibility};
use crate::municipal::vocab;

/// Fact: `period.start` of a care record's CarePlan or Encounter, as written.
pub const FACT_START: &str = "kpi:start";
/// Fact: `period.end` of a care record's CarePlan or Encounter, as written.
pub const FACT_END: &str = "kpi:end";
/// Fact: the ready-for-discharge time of a care record's Encounter (its first
/// `ready-for-discharge` extension's `valueDateTime`).
pub const FACT_READY: &str = "kpi:ready";
/// Fact: the phase of a care record's CarePlan (its first `rehab-phase` extension's `valueCode`).
pub const FACT_PHASE: &str = "kpi:phase";
/// Fact: a care record's Goal's achievement (`achievementStatus.coding[0].code`).
pub const FACT_ACHIEVEMENT: &str = "kpi:achievement";

/// What to read: the municipality's care-record identifier system and the period as epoch
/// milliseconds, `[from_ms, to_ms)`.
#[derive(Debug, Clone)]
pub struct KpiQuery {
    /// `vocab::record_system(municipality)`: the course CarePlans' identifier system; the parts
    /// of a record (its stay Encounter, its Goals) have `{record_system}/{record id}`.
    pub record_system: String,
    pub cpr_system: String,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// One temporary stay (the Encounter with local identifier `stay`), its times as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StayTimes {
    pub admitted: Option<String>,
    pub ready: Option<String>,
    pub discharged: Option<String>,
}

/// One care course active at some time in the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveCourse {
    /// The record id (the CarePlan's identifier value).
    pub record: String,
    pub start: Option<String>,
    pub end: Option<String>,
    pub phase: Option<String>,
    /// The citizen's CPR number (for the hospital events), if the Patient is stored.
    pub cpr: Option<String>,
}

/// What the store returns for the KPIs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KpiRows {
    /// Stays with a ready-for-discharge or discharge time (the others count in no figure).
    pub stays: Vec<StayTimes>,
    pub courses: Vec<ActiveCourse>,
    /// The Goals of the active courses: (achievement code, how many).
    pub goals: Vec<(Option<String>, i64)>,
}

/// The KPI facts of `resource` (see the module's documentation): for CarePlans, Encounters and
/// Goals with an identifier of a municipality's care records, nothing for any other resource.
/// Each value is taken only if it is a JSON string, exactly as written.
pub fn facts(resource: &Value) -> Vec<IndexEntry> {
    let rtype = resource.get("resourceType").and_then(Value::as_str);
    if !matches!(rtype, Some("CarePlan" | "Encounter" | "Goal")) || !is_care_record(resource) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut push = |param: &str, v: Option<&Value>| {
        if let Some(Value::String(s)) = v {
            out.push(IndexEntry {
                param: param.to_string(),
                value: IndexValue::Token {
                    system: None,
                    code: s.clone(),
                },
            });
        }
    };
    if rtype == Some("Goal") {
        push(
            FACT_ACHIEVEMENT,
            resource.pointer("/achievementStatus/coding/0/code"),
        );
        return out;
    }
    let period = resource.get("period");
    push(FACT_START, period.and_then(|p| p.get("start")));
    push(FACT_END, period.and_then(|p| p.get("end")));
    let (param, url, key) = if rtype == Some("CarePlan") {
        (FACT_PHASE, vocab::ext::PHASE, "valueCode")
    } else {
        (FACT_READY, vocab::ext::READY_FOR_DISCHARGE, "valueDateTime")
    };
    let first = resource
        .get("extension")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|e| e.get("url").and_then(Value::as_str) == Some(url))
        });
    push(param, first.and_then(|e| e.get(key)));
    out
}

/// The prefix of every municipality's care-record identifier systems
/// (`vocab::record_system`, `vocab::part_system`).
fn care_record_prefix() -> String {
    format!("{}/NamingSystem/care-record/", vocab::BASE)
}

fn is_care_record(resource: &Value) -> bool {
    let prefix = care_record_prefix();
    resource
        .get("identifier")
        .and_then(Value::as_array)
        .is_some_and(|ids| {
            ids.iter().any(|i| {
                // ASCII case aside, as SQLite's LIKE in the statements below compares.
                i.get("system").and_then(Value::as_str).is_some_and(|s| {
                    s.len() >= prefix.len()
                        && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
                })
            })
        })
}

/// `LEFT JOIN` the fact `param` of the resource `{of}` (type `rtype`) as `{alias}`.
fn fact(sql: &mut Sql, alias: &str, rtype: &str, of: &str, param: &str) {
    sql.push(&format!(
        " LEFT JOIN search_index {alias} ON {alias}.res_type = '{rtype}' AND {alias}.res_id = {of}.res_id AND {alias}.param = '{param}'"
    ));
}

/// The municipality's course CarePlans (`cp`, identifier row `cpi`) active at some time in the
/// period (their `date` index row overlaps it), visible under `vis`; with their facts (`fs`,
/// `fe`, `fp`) if `facts`.
fn active_courses_from(sql: &mut Sql, q: &KpiQuery, vis: &Visibility, facts: bool) {
    sql.push(
        " FROM search_index cpi JOIN resources cp ON cp.res_type = 'CarePlan' AND cp.id = cpi.res_id AND cp.deleted = 0",
    );
    sql.push(" JOIN search_index cpd ON cpd.res_type = 'CarePlan' AND cpd.res_id = cp.id AND cpd.param = 'date' AND cpd.lo < ")
        .bind(Bind::Int(q.to_ms))
        .push(" AND cpd.hi >= ")
        .bind(Bind::Int(q.from_ms));
    if facts {
        fact(sql, "fs", "CarePlan", "cpi", FACT_START);
        fact(sql, "fe", "CarePlan", "cpi", FACT_END);
        fact(sql, "fp", "CarePlan", "cpi", FACT_PHASE);
    }
    sql.push(" WHERE cpi.res_type = 'CarePlan' AND cpi.param = 'identifier' AND cpi.system = ")
        .text(&q.record_system);
    visibility(sql, "cp", vis);
}

pub(crate) fn stays(q: &KpiQuery, vis: &Visibility) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT fs.value AS admitted, fe.value AS discharged, fr.value AS ready")
        .push(" FROM search_index si JOIN resources r ON r.res_type = 'Encounter' AND r.id = si.res_id AND r.deleted = 0");
    fact(&mut sql, "fs", "Encounter", "si", FACT_START);
    fact(&mut sql, "fe", "Encounter", "si", FACT_END);
    fact(&mut sql, "fr", "Encounter", "si", FACT_READY);
    sql.push(" WHERE si.res_type = 'Encounter' AND si.param = 'identifier' AND si.value = 'stay' AND si.system LIKE ")
        .text(&format!("{}/%", q.record_system));
    visibility(&mut sql, "r", vis);
    sql
}

pub(crate) fn courses(q: &KpiQuery, vis: &Visibility) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT cpi.value AS record, fs.value AS start, fe.value AS finish, fp.value AS phase")
        .push(", (SELECT p.value FROM search_index s JOIN search_index p ON p.res_type = 'Patient' AND p.res_id = s.value AND p.param = 'identifier' AND p.system = ")
        .text(&q.cpr_system)
        .push(" WHERE s.res_type = 'CarePlan' AND s.res_id = cp.id AND s.param = 'subject' AND s.system = 'Patient' LIMIT 1) AS cpr");
    active_courses_from(&mut sql, q, vis, true);
    sql
}

/// The Goals of the active courses (visible under `vis`, as the courses are), counted by
/// achievement code: a course's Goals have the identifier system `{record_system}/{record id}`.
/// The set of those systems is built once from the active courses, and every Goal identifier
/// row of the municipality is looked up in it: the `(res_type, param, value, system)` index
/// cannot find Goals by system, and a join per course would scan them all once per course.
pub(crate) fn goals(q: &KpiQuery, vis: &Visibility) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT fa.value AS code, COUNT(*) AS n FROM search_index gi JOIN resources g ON g.res_type = 'Goal' AND g.id = gi.res_id AND g.deleted = 0");
    fact(&mut sql, "fa", "Goal", "gi", FACT_ACHIEVEMENT);
    sql.push(" WHERE gi.res_type = 'Goal' AND gi.param = 'identifier'");
    visibility(&mut sql, "g", vis);
    sql.push(" AND gi.system IN (SELECT CAST(")
        .text(&format!("{}/", q.record_system))
        .push(" AS TEXT) || cpi.value");
    active_courses_from(&mut sql, q, vis, false);
    sql.push(") GROUP BY fa.value");
    sql
}

fn opt_text(row: &AnyRow, n: &str) -> Result<Option<String>, StoreError> {
    row.try_get::<Option<String>, _>(n)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn stay_row(row: &AnyRow) -> Result<StayTimes, StoreError> {
    Ok(StayTimes {
        admitted: opt_text(row, "admitted")?,
        ready: opt_text(row, "ready")?,
        discharged: opt_text(row, "discharged")?,
    })
}

pub(crate) fn course_row(row: &AnyRow) -> Result<ActiveCourse, StoreError> {
    Ok(ActiveCourse {
        record: row
            .try_get("record")
            .map_err(|e: sqlx::Error| StoreError::Corrupt(e.to_string()))?,
        start: opt_text(row, "start")?,
        end: opt_text(row, "finish")?,
        phase: opt_text(row, "phase")?,
        cpr: opt_text(row, "cpr")?,
    })
}

pub(crate) fn goal_row(row: &AnyRow) -> Result<(Option<String>, i64), StoreError> {
    let n = row
        .try_get::<i64, _>("n")
        .or_else(|_| row.try_get::<i32, _>("n").map(i64::from))
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok((opt_text(row, "code")?, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewVersion;
    use fhir_core::fhir::search_params::SearchParamRegistry;
    use serde_json::json;

    const RS: &str = "http://sektorbro.dk/fhir/NamingSystem/care-record/0510";
    const PARTS: &str = "http://sektorbro.dk/fhir/NamingSystem/care-record/0510/R1";

    /// Care-record resources with every fact, and the cases that have fewer: a value that is
    /// not a string, a first matching extension without the value, no achievement, and
    /// resources that are not a care record's.
    fn resources() -> Vec<Value> {
        vec![
            json!({"resourceType": "CarePlan", "id": "cp1", "status": "active", "intent": "plan",
                "identifier": [{"system": RS, "value": "R1"}],
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
                "period": {"start": "2025-03-10T12:15:00Z", "end": "2025-04-04T08:30:00Z"}}),
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
            json!({"resourceType": "Encounter", "id": "other", "status": "finished",
                "class": {"code": "IMP"}, "identifier": [{"system": "urn:other", "value": "stay"}],
                "period": {"start": "2025-03-10T12:15:00Z"}}),
            json!({"resourceType": "Patient", "id": "p1",
                "identifier": [{"system": RS, "value": "R1"}]}),
        ]
    }

    fn sorted_facts(
        rtype: &str,
        id: &str,
        entries: &[IndexEntry],
    ) -> Vec<(String, String, String, String)> {
        let mut out: Vec<_> = entries
            .iter()
            .map(|e| match &e.value {
                IndexValue::Token { code, .. } => (
                    rtype.to_string(),
                    id.to_string(),
                    e.param.clone(),
                    code.clone(),
                ),
                other => panic!("a fact is a token: {other:?}"),
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn facts_are_the_values_the_figures_read_as_written() {
        let all = resources();
        let facts_of = |n: usize| {
            let r = &all[n];
            sorted_facts(
                r["resourceType"].as_str().unwrap(),
                r["id"].as_str().unwrap(),
                &facts(r),
            )
        };
        let row = |t: &str, id: &str, p: &str, v: &str| {
            (t.to_string(), id.to_string(), p.to_string(), v.to_string())
        };
        assert_eq!(
            facts_of(0),
            vec![
                row("CarePlan", "cp1", FACT_END, "2025-04-04"),
                row("CarePlan", "cp1", FACT_PHASE, "intervention"),
                row("CarePlan", "cp1", FACT_START, "2025-03-10T12:15:00+01:00"),
            ]
        );
        // The first phase extension has no code: no phase (as `json_extract` on it gave NULL).
        assert_eq!(
            facts_of(1),
            vec![row("CarePlan", "cp2", FACT_START, "2025-03-10")]
        );
        assert_eq!(
            facts_of(2),
            vec![
                row("Encounter", "e1", FACT_END, "2025-04-04T08:30:00Z"),
                row("Encounter", "e1", FACT_READY, "2025-04-02T10:00:00Z"),
                row("Encounter", "e1", FACT_START, "2025-03-10T12:15:00Z"),
            ]
        );
        assert_eq!(
            facts_of(3),
            vec![row("Encounter", "e2", FACT_END, "2025-04-04T08:30:00Z")]
        );
        assert_eq!(
            facts_of(4),
            vec![row("Goal", "g1", FACT_ACHIEVEMENT, "achieved")]
        );
        assert!(facts_of(5).is_empty());
        assert!(facts_of(6).is_empty(), "not a care record's Encounter");
        assert!(facts_of(7).is_empty(), "not a type the figures read");
    }

    /// Migration 0008 derives, for resources stored before the gateway wrote facts, exactly what
    /// [`facts`] writes now: on SQLite, and on PostgreSQL when `SEKTORBRO_TEST_POSTGRES_URL` is set.
    #[tokio::test]
    async fn the_migration_derives_the_same_facts_as_the_writer() {
        let dir = tempfile::tempdir().expect("dir");
        let sqlite = format!("sqlite://{}", dir.path().join("m.db").display());
        migration_matches_writer(
            &sqlite,
            include_str!("migrations/sqlite/0008_kpi_facts.sql"),
        )
        .await;
        match std::env::var("SEKTORBRO_TEST_POSTGRES_URL") {
            Ok(server) => {
                sqlx::any::install_default_drivers();
                let schema = format!("t_kpi_{}", uuid::Uuid::new_v4().simple());
                let admin = sqlx::AnyPool::connect(&server).await.expect("PostgreSQL");
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&admin)
                    .await
                    .expect("schema");
                let sep = if server.contains('?') { '&' } else { '?' };
                let url = format!("{server}{sep}options=-c%20search_path%3D{schema}");
                migration_matches_writer(
                    &url,
                    include_str!("migrations/postgres/0008_kpi_facts.sql"),
                )
                .await;
                let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(&admin)
                    .await;
            }
            Err(_) => eprintln!("SEKTORBRO_TEST_POSTGRES_URL is not set: PostgreSQL half skipped"),
        }
    }

    async fn migration_matches_writer(url: &str, script: &str) {
        let mut cache = crate::config::Config::defaults().cache;
        cache.enabled = false;
        let store = crate::store::open(url, 2, "normal", 0, &cache)
            .await
            .expect("store");
        let registry = SearchParamRegistry::embedded();
        let mut expected = Vec::new();
        let mut tx = store.begin().await.expect("begin");
        for r in resources() {
            let (rtype, id) = (
                r["resourceType"].as_str().unwrap(),
                r["id"].as_str().unwrap(),
            );
            expected.extend(sorted_facts(rtype, id, &facts(&r)));
            let text = r.to_string();
            // Written as before the facts: the ordinary search values only.
            tx.write(&NewVersion {
                rtype,
                id,
                version: 1,
                last_updated_ms: 0,
                method: "PUT",
                content: Some(&text),
                index: &registry.extract(&r),
                owner: None,
                citizen: None,
            })
            .await
            .expect("write");
        }
        tx.commit().await.expect("commit");
        expected.sort();
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(url).await.expect("connect");
        // As the migration runner does: one transaction, so one connection (the script's
        // temporary table is the connection's).
        let mut mig = pool.begin().await.expect("begin");
        for statement in crate::store::migrate::statements(script) {
            sqlx::query(&statement)
                .execute(&mut *mig)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
        mig.commit().await.expect("commit");
        let rows = sqlx::query(
            "SELECT res_type, res_id, param, value FROM search_index WHERE param LIKE 'kpi:%'",
        )
        .fetch_all(&pool)
        .await
        .expect("facts");
        let mut got: Vec<(String, String, String, String)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        got.sort();
        assert_eq!(got, expected, "{url}");
        assert_eq!(got.len(), 9);
        pool.close().await;
    }
}
