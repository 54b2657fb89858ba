//! The care-flow KPI figures of one municipality (`GET /municipal/v1/kpis`), as SQL: a few
//! statements that read the identifier and date rows of `search_index` and a handful of JSON
//! fields of the matching current resources, never whole records. The arithmetic on what they
//! return (the 24-hour rule, medians) is `report::kpis`'s business.
//!
//! The only differences between the databases are the JSON functions (SQLite's `json_extract` /
//! `json_each`, PostgreSQL's `jsonb` operators).

use sqlx::any::AnyRow;
use sqlx::Row;

use super::search_sql::{visibility, Bind, Sql};
use super::{Backend, StoreError, Visibility};

/// What to read: the municipality's care-record identifier system, the extension URLs and the
/// period as epoch milliseconds, `[from_ms, to_ms)`.
#[derive(Debug, Clone)]
pub struct KpiQuery {
    /// `vocab::record_system(municipality)`: the course CarePlans' identifier system; the parts
    /// of a record (its stay Encounter, its Goals) have `{record_system}/{record id}`.
    pub record_system: String,
    pub cpr_system: String,
    pub ready_extension: String,
    pub phase_extension: String,
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
    /// The municipality's Goals: (their record's part identifier system, achievement code, how
    /// many).
    pub goals: Vec<(String, Option<String>, i64)>,
}

fn json_path(backend: Backend, col: &str, path: &[&str]) -> String {
    match backend {
        Backend::Sqlite => {
            let mut p = String::from("$");
            for seg in path {
                if seg.bytes().all(|b| b.is_ascii_digit()) {
                    p.push_str(&format!("[{seg}]"));
                } else {
                    p.push('.');
                    p.push_str(seg);
                }
            }
            format!("json_extract({col}, '{p}')")
        }
        Backend::Postgres => format!("({col}::jsonb #>> '{{{}}}')", path.join(",")),
    }
}

/// The `value[x]` of the first extension with URL `$n` (bound by the caller).
fn extension_value(sql: &mut Sql, backend: Backend, col: &str, url: &str, value: &str) {
    match backend {
        Backend::Sqlite => {
            sql.push(&format!(
                "(SELECT json_extract(e.value, '$.{value}') FROM json_each({col}, '$.extension') e WHERE json_extract(e.value, '$.url') = "
            ));
        }
        Backend::Postgres => {
            sql.push(&format!(
                "(SELECT e ->> '{value}' FROM jsonb_array_elements({col}::jsonb -> 'extension') e WHERE e ->> 'url' = "
            ));
        }
    }
    sql.text(url).push(" LIMIT 1)");
}

/// The municipality's course CarePlans (`cp`, identifier row `cpi`) active at some time in the
/// period (their `date` index row overlaps it), visible under `vis`.
fn active_courses_from(sql: &mut Sql, q: &KpiQuery, vis: &Visibility) {
    sql.push(
        " FROM search_index cpi JOIN resources cp ON cp.res_type = 'CarePlan' AND cp.id = cpi.res_id AND cp.deleted = 0",
    );
    sql.push(" JOIN search_index cpd ON cpd.res_type = 'CarePlan' AND cpd.res_id = cp.id AND cpd.param = 'date' AND cpd.lo < ")
        .bind(Bind::Int(q.to_ms))
        .push(" AND cpd.hi >= ")
        .bind(Bind::Int(q.from_ms));
    sql.push(" WHERE cpi.res_type = 'CarePlan' AND cpi.param = 'identifier' AND cpi.system = ")
        .text(&q.record_system);
    visibility(sql, "cp", vis);
}

pub(crate) fn stays(q: &KpiQuery, backend: Backend, vis: &Visibility) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT ")
        .push(&json_path(backend, "r.content", &["period", "start"]))
        .push(" AS admitted, ")
        .push(&json_path(backend, "r.content", &["period", "end"]))
        .push(" AS discharged, ");
    extension_value(
        &mut sql,
        backend,
        "r.content",
        &q.ready_extension,
        "valueDateTime",
    );
    sql.push(" AS ready FROM search_index si JOIN resources r ON r.res_type = 'Encounter' AND r.id = si.res_id AND r.deleted = 0")
        .push(" WHERE si.res_type = 'Encounter' AND si.param = 'identifier' AND si.value = 'stay' AND si.system LIKE ")
        .text(&format!("{}/%", q.record_system));
    visibility(&mut sql, "r", vis);
    sql
}

pub(crate) fn courses(q: &KpiQuery, backend: Backend, vis: &Visibility) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT cpi.value AS record, ")
        .push(&json_path(backend, "cp.content", &["period", "start"]))
        .push(" AS start, ")
        .push(&json_path(backend, "cp.content", &["period", "end"]))
        .push(" AS finish, ");
    extension_value(
        &mut sql,
        backend,
        "cp.content",
        &q.phase_extension,
        "valueCode",
    );
    sql.push(" AS phase, (SELECT p.value FROM search_index s JOIN search_index p ON p.res_type = 'Patient' AND p.res_id = s.value AND p.param = 'identifier' AND p.system = ")
        .text(&q.cpr_system)
        .push(" WHERE s.res_type = 'CarePlan' AND s.res_id = cp.id AND s.param = 'subject' AND s.system = 'Patient' LIMIT 1) AS cpr");
    active_courses_from(&mut sql, q, vis);
    sql
}

/// The municipality's Goals, counted by record (their identifier system) and achievement code;
/// the caller keeps those of the active courses. (Joining Goals to courses on the identifier
/// system in SQL would scan every Goal row per course: the index leads with the value.)
pub(crate) fn goals(q: &KpiQuery, backend: Backend, vis: &Visibility) -> Sql {
    let mut sql = Sql::default();
    let code = json_path(
        backend,
        "g.content",
        &["achievementStatus", "coding", "0", "code"],
    );
    sql.push("SELECT gi.system AS rec, ")
        .push(&code)
        .push(" AS code, COUNT(*) AS n FROM search_index gi JOIN resources g ON g.res_type = 'Goal' AND g.id = gi.res_id AND g.deleted = 0")
        .push(" WHERE gi.res_type = 'Goal' AND gi.param = 'identifier' AND gi.system LIKE ")
        .text(&format!("{}/%", q.record_system));
    visibility(&mut sql, "g", vis);
    sql.push(" GROUP BY gi.system, ").push(&code);
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

pub(crate) fn goal_row(row: &AnyRow) -> Result<(String, Option<String>, i64), StoreError> {
    let n = row
        .try_get::<i64, _>("n")
        .or_else(|_| row.try_get::<i32, _>("n").map(i64::from))
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let rec = row
        .try_get("rec")
        .map_err(|e: sqlx::Error| StoreError::Corrupt(e.to_string()))?;
    Ok((rec, opt_text(row, "code")?, n))
}
