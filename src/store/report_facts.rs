//! The `report_facts` table (migration 0009): one row per municipal care record (its course
//! CarePlan), with the compact facts the KL Gateway reports read (`report::facts`), so that a
//! report is one ordered scan of short rows instead of reading every record's FHIR resources.
//!
//! How the rows stay true to the resources, whatever route writes them:
//!
//! - Every version of a resource written or deleted here runs [`before_write`] and
//!   [`after_write`] in its transaction. A course CarePlan (an identifier in a municipality's
//!   care-record system) gets its row (citizen, municipality, the record's part system) and makes
//!   it *stale*: `facts` NULL, `stamp` + 1. A part of a record (an identifier in the record's part
//!   system, now or in the version it replaces) makes its record's row stale. A CarePlan deleted,
//!   or no longer a course, takes its row out of the reports (`live` 0).
//! - The municipal endpoint, which knows the whole record, writes the fresh facts last in the
//!   same transaction ([`put`]), after every resource of the record.
//! - A stale row is rebuilt from the stored resources when a report meets it (as every report was
//!   before), and refreshed in the background ([`put`] with the `stamp` it was read at, so a
//!   write in between wins).

use fhir_core::fhir::search_params::{IndexEntry, IndexValue};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::search_sql::{visibility, Bind, Sql};
use super::{Backend, NewVersion, StoreError, Visibility};
use crate::municipal::vocab;

/// The types a care record's resources have (its CarePlans, CareTeam, Encounters, Practitioners,
/// Conditions and Goals): a write of any other type cannot touch a record's facts.
const RECORD_TYPES: &[&str] = &[
    "CarePlan",
    "CareTeam",
    "Condition",
    "Encounter",
    "Goal",
    "Practitioner",
];

/// One row, as a report reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactsRow {
    /// The citizen's Patient id (`''` if the CarePlan has none).
    pub citizen: String,
    /// The course CarePlan's id.
    pub plan_id: String,
    pub stamp: i64,
    /// The facts' JSON; `None` while stale.
    pub facts: Option<String>,
}

/// Which rows a report reads: a municipality's live records of one kind (and every stale one,
/// whose kind is known only once rebuilt), visible under the caller's `Visibility` (that of the
/// course CarePlan), in (citizen, CarePlan id) order, after a key.
#[derive(Debug, Clone)]
pub struct FactsQuery {
    pub municipality: String,
    /// `140` or `care`.
    pub kind: String,
    /// Only citizens with a course CarePlan updated after this instant (epoch milliseconds).
    pub since_ms: Option<i64>,
    /// Continue after this (citizen, CarePlan id).
    pub after: Option<(String, String)>,
}

/// Fresh facts for a record's row.
#[derive(Debug, Clone)]
pub struct FactsWrite {
    pub plan_id: String,
    pub kind: String,
    pub facts: String,
    /// Only if the row is still stale at this stamp (a background refresh); `None`: always (the
    /// transaction that stores the record).
    pub if_stale_at: Option<i64>,
}

/// The prefix of every care-record identifier system (`vocab::record_system`,
/// `vocab::part_system`).
fn prefix() -> String {
    format!("{}/NamingSystem/care-record/", vocab::BASE)
}

/// What an identifier makes a resource: the course of a record (municipality, the record's part
/// system) or a part of the record whose part system it names.
enum Role {
    Course { municipality: String, parts: String },
    Part(String),
}

fn roles(rtype: &str, index: &[IndexEntry]) -> Vec<Role> {
    let prefix = prefix();
    let mut out = Vec::new();
    for e in index.iter().filter(|e| e.param == "identifier") {
        let IndexValue::Token {
            system: Some(system),
            code,
        } = &e.value
        else {
            continue;
        };
        let Some(rest) = system.strip_prefix(&prefix) else {
            continue;
        };
        if rest.contains('/') {
            out.push(Role::Part(system.clone()));
        } else if rtype == "CarePlan" && !rest.is_empty() && !code.is_empty() {
            out.push(Role::Course {
                municipality: rest.to_string(),
                parts: format!("{system}/{code}"),
            });
        }
    }
    out
}

/// A row made stale (its facts no longer known to match the resources).
const STALE: &str = "facts = NULL, kind = NULL, stamp = stamp + 1";

/// Statements that run before a version replaces the previous one's rows: the records whose
/// part the previous version was are made stale, and a CarePlan's own row leaves the reports
/// until [`after_write`] finds it is still a course.
pub(crate) fn before_write(v: &NewVersion<'_>) -> Vec<Sql> {
    if v.version <= 1 || !RECORD_TYPES.contains(&v.rtype) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut s = Sql::default();
    s.push(&format!("UPDATE report_facts SET {STALE} WHERE parts IN (SELECT system FROM search_index WHERE res_type = "))
        .text(v.rtype)
        .push(" AND res_id = ")
        .text(v.id)
        .push(" AND param = 'identifier')");
    out.push(s);
    if v.rtype == "CarePlan" {
        let mut s = Sql::default();
        s.push(&format!(
            "UPDATE report_facts SET live = 0, {STALE} WHERE plan_id = "
        ))
        .text(v.id);
        out.push(s);
    }
    out
}

/// Statements that run after a version is written: a course CarePlan's row (created, or made
/// live and stale), and the records it is a part of made stale.
pub(crate) fn after_write(v: &NewVersion<'_>) -> Vec<Sql> {
    if v.content.is_none() || !RECORD_TYPES.contains(&v.rtype) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut course_seen = false;
    for role in roles(v.rtype, v.index) {
        let mut s = Sql::default();
        match role {
            Role::Part(parts) => {
                s.push(&format!("UPDATE report_facts SET {STALE} WHERE parts = "))
                    .text(&parts);
            }
            // A CarePlan in two municipalities' systems is reported under the first.
            Role::Course { .. } if course_seen => continue,
            Role::Course {
                municipality,
                parts,
            } => {
                course_seen = true;
                s.push("INSERT INTO report_facts (plan_id, municipality, parts, citizen, live, stamp, kind, facts) VALUES (")
                    .text(v.id)
                    .push(", ")
                    .text(&municipality)
                    .push(", ")
                    .text(&parts)
                    .push(", ")
                    .text(v.citizen.unwrap_or_default())
                    .push(", 1, 0, NULL, NULL) ON CONFLICT (plan_id) DO UPDATE SET municipality = excluded.municipality, parts = excluded.parts, citizen = excluded.citizen, live = 1, facts = NULL, kind = NULL, stamp = report_facts.stamp + 1");
            }
        }
        out.push(s);
    }
    out
}

/// Write fresh facts into a record's row; the statement returns the row's id if it was written.
pub(crate) fn put(w: &FactsWrite) -> Sql {
    let mut s = Sql::default();
    s.push("UPDATE report_facts SET kind = ")
        .text(&w.kind)
        .push(", facts = ")
        .text(&w.facts)
        .push(" WHERE plan_id = ")
        .text(&w.plan_id)
        .push(" AND live = 1");
    if let Some(stamp) = w.if_stale_at {
        s.push(" AND facts IS NULL AND stamp = ")
            .bind(Bind::Int(stamp));
    }
    s.push(" RETURNING plan_id");
    s
}

/// Text compared byte by byte on both databases (PostgreSQL's default collation would order
/// by language rules; the report's order is by Patient and CarePlan id as bytes).
fn c(backend: Backend, column: &str) -> String {
    match backend {
        Backend::Postgres => format!("{column} COLLATE \"C\""),
        Backend::Sqlite => column.to_string(),
    }
}

/// Up to `limit` rows of `q`, visible under `vis`.
pub(crate) fn page(q: &FactsQuery, limit: usize, vis: &Visibility, backend: Backend) -> Sql {
    let (citizen, plan) = (c(backend, "f.citizen"), c(backend, "f.plan_id"));
    let mut s = Sql::default();
    s.push("SELECT f.citizen, f.plan_id, f.stamp, f.facts FROM report_facts f JOIN resources cp ON cp.res_type = 'CarePlan' AND cp.id = f.plan_id AND cp.deleted = 0 WHERE f.municipality = ")
        .text(&q.municipality)
        .push(" AND f.live = 1 AND (f.kind = ")
        .text(&q.kind)
        .push(" OR f.facts IS NULL)");
    if let Some((after_citizen, after_plan)) = &q.after {
        s.push(&format!(" AND ({citizen} > "))
            .text(after_citizen)
            .push(&format!(" OR ({citizen} = "))
            .text(after_citizen)
            .push(&format!(" AND {plan} > "))
            .text(after_plan)
            .push("))");
    }
    if let Some(since) = q.since_ms {
        // A citizen whose course changed is reported with all of its courses (of any kind's
        // change: its report replaces the previous one).
        s.push(" AND f.citizen IN (SELECT f2.citizen FROM report_facts f2 JOIN resources c2 ON c2.res_type = 'CarePlan' AND c2.id = f2.plan_id AND c2.deleted = 0 WHERE f2.municipality = ")
            .text(&q.municipality)
            .push(" AND f2.live = 1 AND c2.last_updated > ")
            .bind(Bind::Int(since));
        visibility(&mut s, "c2", vis);
        s.push(")");
    }
    visibility(&mut s, "cp", vis);
    s.push(&format!(" ORDER BY {citizen}, {plan} LIMIT "))
        .bind(Bind::Int(i64::try_from(limit).unwrap_or(i64::MAX)));
    s
}

/// Up to `limit` stale live rows after CarePlan id `after`, by id: `(plan id, stamp)`.
pub(crate) fn stale(after: &str, limit: usize, backend: Backend) -> Sql {
    let plan = c(backend, "plan_id");
    let mut s = Sql::default();
    s.push("SELECT plan_id, stamp FROM report_facts WHERE live = 1 AND facts IS NULL AND ")
        .push(&plan)
        .push(" > ")
        .text(after)
        .push(&format!(" ORDER BY {plan} LIMIT "))
        .bind(Bind::Int(i64::try_from(limit).unwrap_or(i64::MAX)));
    s
}

fn corrupt(e: sqlx::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn int(row: &AnyRow, name: &str) -> Result<i64, StoreError> {
    super::sql::int_col(row, name)
}

pub(crate) fn row(row: &AnyRow) -> Result<FactsRow, StoreError> {
    Ok(FactsRow {
        citizen: row.try_get("citizen").map_err(corrupt)?,
        plan_id: row.try_get("plan_id").map_err(corrupt)?,
        stamp: int(row, "stamp")?,
        facts: row.try_get::<Option<String>, _>("facts").map_err(corrupt)?,
    })
}

pub(crate) fn stale_row(row: &AnyRow) -> Result<(String, i64), StoreError> {
    Ok((row.try_get("plan_id").map_err(corrupt)?, int(row, "stamp")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(system: &str, code: &str) -> IndexEntry {
        IndexEntry {
            param: "identifier".into(),
            value: IndexValue::Token {
                system: Some(system.into()),
                code: code.into(),
            },
        }
    }

    #[test]
    fn identifiers_name_a_course_or_a_records_part() {
        let course = [token(&vocab::record_system("0510"), "R-1")];
        let roles_of = |rtype: &str, index: &[IndexEntry]| -> Vec<(bool, String)> {
            roles(rtype, index)
                .into_iter()
                .map(|r| match r {
                    Role::Course {
                        municipality,
                        parts,
                    } => (true, format!("{municipality} {parts}")),
                    Role::Part(p) => (false, p),
                })
                .collect()
        };
        assert_eq!(
            roles_of("CarePlan", &course),
            vec![(true, format!("0510 {}", vocab::part_system("0510", "R-1")))]
        );
        // Only a CarePlan is a course.
        assert!(roles_of("Goal", &course).is_empty());
        let part = [token(&vocab::part_system("0510", "R-1"), "g1")];
        assert_eq!(
            roles_of("Goal", &part),
            vec![(false, vocab::part_system("0510", "R-1"))]
        );
        // Another system, or the prefix in other case, is nothing.
        let other = [
            token("urn:oid:1.2.208.176.1.2", "0101011234"),
            token(&vocab::record_system("0510").to_uppercase(), "R-1"),
        ];
        assert!(roles_of("CarePlan", &other).is_empty());
    }
}
