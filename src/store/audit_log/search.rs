//! `/fhir/AuditEvent` reads and searches as SQL over `audit_log`'s columns: the parameters
//! administrators use, each translated; anything else refused (400), never silently ignored.

use sqlx::any::AnyRow;

use super::{row, stored, COLUMNS};
use crate::store::search_sql::{Bind, Sql};
use crate::store::{SearchHit, StoreError};
use fhir_core::fhir::search::{
    Filter, Match, Prefix, SearchQuery, SortKey, SortValue, TokenSystem,
};

/// `SELECT … WHERE seq = id`, for a read (`None`: not an id this table can have).
pub(crate) fn by_id(id: &str) -> Option<Sql> {
    let seq: i64 = id.parse().ok().filter(|n| *n > 0)?;
    let mut sql = Sql::default();
    sql.push(&format!("SELECT {COLUMNS} FROM audit_log WHERE seq = "))
        .bind(Bind::Int(seq));
    Some(sql)
}

fn unsupported(what: String) -> StoreError {
    StoreError::Unsupported(what)
}

/// Whether the query sorts by `recorded` (descending if so); `None`: by id.
fn sort(q: &SearchQuery) -> Result<Option<bool>, StoreError> {
    match q.sort.as_slice() {
        [] => Ok(None),
        [s] => match &s.key {
            SortKey::LastUpdated => Ok(Some(s.desc)),
            SortKey::Param { code, .. } if code == "date" => Ok(Some(s.desc)),
            SortKey::Id => Ok(None),
            _ => Err(unsupported(
                "AuditEvent can be sorted by date (or _lastUpdated) only".into(),
            )),
        },
        _ => Err(unsupported(
            "AuditEvent can be sorted by one key, date (or _lastUpdated)".into(),
        )),
    }
}

/// The `WHERE` of a search (always starts with `WHERE 1=1`).
fn filters(q: &SearchQuery, sql: &mut Sql) -> Result<(), StoreError> {
    sql.push(" WHERE 1=1");
    if !q.includes.is_empty() || !q.revincludes.is_empty() {
        return Err(unsupported(
            "_include and _revinclude are not supported on AuditEvent".into(),
        ));
    }
    for f in &q.filters {
        sql.push(" AND ");
        if f.negate {
            sql.push("NOT ");
        }
        sql.push("(");
        for (i, m) in f.any_of.iter().enumerate() {
            if i > 0 {
                sql.push(" OR ");
            }
            sql.push("(");
            one(f, m, sql)?;
            sql.push(")");
        }
        if f.any_of.is_empty() {
            sql.push("1=1");
        }
        sql.push(")");
    }
    Ok(())
}

/// `col = value` or `col LIKE value%` for a string parameter.
fn text_match(col: &str, m: &Match, sql: &mut Sql) -> bool {
    match m {
        Match::Text { value, mode } => {
            use fhir_core::fhir::search::TextMode;
            match mode {
                TextMode::Exact => {
                    sql.push(col).push(" = ").text(value);
                }
                TextMode::StartsWith => {
                    sql.push(&format!("LOWER({col}) LIKE "))
                        .text(&format!("{}%", like_escape(&value.to_lowercase())));
                    sql.push(" ESCAPE '\\'");
                }
                TextMode::Contains => {
                    sql.push(&format!("LOWER({col}) LIKE "))
                        .text(&format!("%{}%", like_escape(&value.to_lowercase())));
                    sql.push(" ESCAPE '\\'");
                }
            }
            true
        }
        Match::Token { code: Some(c), .. } => {
            sql.push(col).push(" = ").text(c);
            true
        }
        _ => false,
    }
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

const RESTFUL: &str = "http://hl7.org/fhir/restful-interaction";
const OWN: &str = crate::audit::SEKTORBRO_AUDIT_SYSTEM;
const EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const DICOM: &str = "http://dicom.nema.org/resources/ontology/DCM";

fn system_is(system: &TokenSystem, want: &[&str]) -> bool {
    match system {
        TokenSystem::Any => true,
        TokenSystem::None => false,
        TokenSystem::Is(s) => want.contains(&s.as_str()),
    }
}

/// The rows whose entity or patient is the reference `Type/id` (any version), found by their keys
/// (`keys.rs`) and, for rows not in the keys yet, by their columns; without a type, by the
/// columns alone (a scan).
fn about(rtype: Option<&str>, id: &str, sql: &mut Sql) {
    match rtype {
        Some(t) => super::keys::rows_about(&format!("{t}/{id}"), sql, |s, alias| {
            let cols = [format!("{alias}entity"), format!("{alias}patient")];
            reference_match(&[&cols[0], &cols[1]], Some(t), id, s)
        }),
        None => reference_match(&["entity", "patient"], None, id, sql),
    }
}

/// A reference `Type/id` as stored (entity, patient): exact, or any version of it.
fn reference_match(cols: &[&str], rtype: Option<&str>, id: &str, sql: &mut Sql) {
    for (i, col) in cols.iter().enumerate() {
        if i > 0 {
            sql.push(" OR ");
        }
        match rtype {
            Some(t) => {
                let r = format!("{t}/{id}");
                sql.push(col).push(" = ").text(&r);
                sql.push(&format!(" OR {col} LIKE "))
                    .text(&format!("{}/\\_history/%", like_escape(&r)));
                sql.push(" ESCAPE '\\'");
            }
            None => {
                sql.push(&format!("{col} LIKE "))
                    .text(&format!("%/{}", like_escape(id)));
                sql.push(&format!(" ESCAPE '\\' OR {col} LIKE "))
                    .text(&format!("%/{}/\\_history/%", like_escape(id)));
                sql.push(" ESCAPE '\\'");
            }
        }
    }
}

fn date_match(m: &Match, sql: &mut Sql) -> Result<(), StoreError> {
    let Match::Date { prefix, lo, hi } = m else {
        return Err(unsupported("a date is expected".into()));
    };
    let (lo, hi) = (Bind::Int(*lo), Bind::Int(*hi));
    match prefix {
        Prefix::Eq | Prefix::Ap => {
            sql.push("recorded_ms >= ")
                .bind(lo)
                .push(" AND recorded_ms <= ")
                .bind(hi);
        }
        Prefix::Ne => {
            sql.push("recorded_ms < ")
                .bind(lo)
                .push(" OR recorded_ms > ")
                .bind(hi);
        }
        Prefix::Gt | Prefix::Sa => {
            sql.push("recorded_ms > ").bind(hi);
        }
        Prefix::Ge => {
            sql.push("recorded_ms >= ").bind(lo);
        }
        Prefix::Lt | Prefix::Eb => {
            sql.push("recorded_ms < ").bind(lo);
        }
        Prefix::Le => {
            sql.push("recorded_ms <= ").bind(hi);
        }
    }
    Ok(())
}

/// One alternative of one parameter.
fn one(f: &Filter, m: &Match, sql: &mut Sql) -> Result<(), StoreError> {
    let bad = || {
        unsupported(format!(
            "AuditEvent search does not support this value of {}",
            f.param
        ))
    };
    if let Match::Has {
        source,
        param,
        inner,
    } = m
    {
        // The AuditEvents that resources of `source` refer to through `param` (`id` is the
        // row's `seq` as text, see [`FROM_WITH_ID`]).
        crate::store::search_sql::referenced_by(
            sql,
            "audit_log",
            "AuditEvent",
            source,
            param,
            inner,
            &crate::store::Visibility::All,
        );
        return Ok(());
    }
    if let Match::Missing(missing) = m {
        let col = match f.param.as_str() {
            "_id" | "date" | "_lastUpdated" | "type" | "subtype" | "action" | "outcome"
            | "site" => {
                sql.push(if *missing { "1=0" } else { "1=1" });
                return Ok(());
            }
            "entity" => "entity",
            "patient" => "patient",
            "altid" | "agent-name" => "client",
            "address" => "peer",
            _ => {
                return Err(unsupported(format!(
                    "{}:missing is not supported on AuditEvent",
                    f.param
                )))
            }
        };
        sql.push(col)
            .push(if *missing { " IS NULL" } else { " IS NOT NULL" });
        return Ok(());
    }
    match f.param.as_str() {
        "_id" => match m {
            Match::Token { code: Some(c), .. } => integer_equals("seq", c, sql),
            _ => return Err(bad()),
        },
        "date" | "_lastUpdated" => date_match(m, sql)?,
        "type" => match m {
            Match::Token {
                system,
                code: Some(c),
            } => {
                if c == "rest" && system_is(system, &[EVENT_TYPE]) {
                    sql.push("kind <> 'forward'");
                } else if c == "110106" && system_is(system, &[DICOM]) {
                    sql.push("kind = 'forward'");
                } else {
                    sql.push("1=0");
                }
            }
            _ => return Err(bad()),
        },
        "subtype" => match m {
            Match::Token {
                system,
                code: Some(c),
            } => {
                let restful = system_is(system, &[RESTFUL]);
                let own = system_is(system, &[OWN]);
                sql.push("1=0");
                if restful && c == "operation" {
                    sql.push(" OR kind LIKE '$%'");
                }
                if restful || own {
                    sql.push(" OR kind = ").text(c);
                }
                if own {
                    sql.push(" OR kind = ").text(&format!("${c}"));
                }
            }
            _ => return Err(bad()),
        },
        "action" => match m {
            Match::Token { code: Some(c), .. } => {
                sql.push("action = ").text(c);
            }
            _ => return Err(bad()),
        },
        "outcome" => match m {
            Match::Token { code: Some(c), .. } => integer_equals("outcome", c, sql),
            _ => return Err(bad()),
        },
        "entity" => match m {
            Match::Ref { rtype, id } => about(rtype.as_deref(), id, sql),
            _ => return Err(bad()),
        },
        "patient" => match m {
            Match::Ref { rtype, id } => {
                if rtype.as_deref().is_some_and(|t| t != "Patient") {
                    sql.push("1=0");
                } else {
                    about(Some("Patient"), id, sql)
                }
            }
            _ => return Err(bad()),
        },
        "altid" => match m {
            Match::Token { code: Some(c), .. } => {
                sql.push("client = ").text(c);
            }
            _ => return Err(bad()),
        },
        "agent-name" => {
            if !text_match("client", m, sql) {
                return Err(bad());
            }
        }
        "address" => {
            if !text_match("peer", m, sql) {
                return Err(bad());
            }
        }
        "agent-role" => match m {
            Match::Token { code: Some(c), .. } => {
                if let Some(kind) = c.strip_prefix("client-") {
                    sql.push("client_kind = ").text(kind);
                } else if let Some(method) = c.strip_prefix("auth-") {
                    sql.push("auth = ").text(method);
                } else {
                    sql.push("1=0");
                }
            }
            _ => return Err(bad()),
        },
        "agent" => match m {
            Match::Ref { rtype: Some(t), id } => {
                sql.push("orgs IS NOT NULL AND (")
                    .push("'\n' || orgs || '\n'")
                    .push(" LIKE ");
                sql.text(&format!("%\n{}\n%", like_escape(&format!("{t}/{id}"))));
                sql.push(" ESCAPE '\\')");
            }
            _ => return Err(bad()),
        },
        "site" => {
            let observer = crate::audit::observer();
            let hit = match m {
                Match::Text { value, .. } => {
                    observer.to_lowercase().starts_with(&value.to_lowercase())
                }
                Match::Token { code: Some(c), .. } => &observer == c,
                _ => return Err(bad()),
            };
            sql.push(if hit { "1=1" } else { "1=0" });
        }
        other => {
            return Err(unsupported(format!(
                "AuditEvent search supports _id, _lastUpdated, date, type, subtype, action, \
                 outcome, entity, patient, altid, agent, agent-name, agent-role, address and \
                 site; not {other}"
            )))
        }
    }
    Ok(())
}

/// `col = c` for an integer column; a code that is not an integer matches nothing.
fn integer_equals(col: &str, c: &str, sql: &mut Sql) {
    match c.parse::<i64>() {
        Ok(n) => {
            sql.push(&format!("{col} = ")).bind(Bind::Int(n));
        }
        Err(_) => {
            sql.push("1=0");
        }
    }
}

/// The table with an `id` column (the `seq` as text), for `_has`, whose sub-select names it.
const FROM_WITH_ID: &str = "(SELECT a.*, CAST(a.seq AS TEXT) AS id FROM audit_log a) audit_log";

/// `audit_log`, with an `id` column when a filter needs one.
fn from(q: &SearchQuery) -> &'static str {
    let has = q
        .filters
        .iter()
        .any(|f| f.any_of.iter().any(|m| matches!(m, Match::Has { .. })));
    if has {
        FROM_WITH_ID
    } else {
        "audit_log"
    }
}

/// A page of matches (`limit` rows after the query's cursor, in its order).
pub(crate) fn page(q: &SearchQuery, limit: usize) -> Result<Sql, StoreError> {
    let by_date = sort(q)?;
    let mut sql = Sql::default();
    sql.push(&format!("SELECT {COLUMNS} FROM {}", from(q)));
    filters(q, &mut sql)?;
    if let Some(after) = &q.after {
        match (by_date, after.values.as_slice()) {
            (Some(desc), [SortValue::Int(t)]) => {
                let op = if desc { "<" } else { ">" };
                sql.push(&format!(" AND (recorded_ms {op} "))
                    .bind(Bind::Int(*t))
                    .push(" OR (recorded_ms = ")
                    .bind(Bind::Int(*t))
                    .push(&format!(" AND seq {op} "))
                    .bind(Bind::Int(after.seq))
                    .push("))");
            }
            _ => {
                sql.push(" AND seq > ").bind(Bind::Int(after.seq));
            }
        }
    }
    match by_date {
        Some(true) => sql.push(" ORDER BY recorded_ms DESC, seq DESC"),
        Some(false) => sql.push(" ORDER BY recorded_ms, seq"),
        None => sql.push(" ORDER BY seq"),
    };
    sql.push(&format!(" LIMIT {}", limit.max(1)));
    Ok(sql)
}

/// The search hits of [`page`]'s rows.
pub(crate) fn hits(q: &SearchQuery, rows: &[AnyRow]) -> Result<Vec<SearchHit>, StoreError> {
    let by_date = sort(q)?.is_some();
    rows.iter()
        .map(|r| {
            let row = row(r)?;
            Ok(SearchHit {
                sort_values: if by_date {
                    vec![SortValue::Int(row.columns.recorded_ms)]
                } else {
                    Vec::new()
                },
                seq: row.seq,
                resource: stored(&row),
            })
        })
        .collect()
}

/// How many rows match.
pub(crate) fn count(q: &SearchQuery) -> Result<Sql, StoreError> {
    sort(q)?;
    let mut sql = Sql::default();
    sql.push(&format!("SELECT COUNT(*) FROM {}", from(q)));
    filters(q, &mut sql)?;
    Ok(sql)
}
