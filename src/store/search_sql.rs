//! SQL for searches: a parsed [`SearchQuery`] becomes one statement with numbered binds (`$1`…),
//! which both SQLite and PostgreSQL accept.
//!
//! Every filter is an `EXISTS` over `search_index`; chains nest a sub-select on the referenced
//! type, and `_has` mirrors them (the ids that matching resources of another type refer to);
//! paging is by key (the sort values plus the creation sequence), never by offset.

use std::fmt::Write as _;

use fhir_core::fhir::search::{
    Filter, Include, Match, Prefix, SearchQuery, SortKey, SortKind, SortValue, TextMode,
    TokenSystem,
};

use super::{Backend, Visibility, SHARED_TYPES};

/// A value bound to a numbered placeholder.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
    Float(f64),
}

/// A statement under construction.
#[derive(Debug, Default)]
pub(crate) struct Sql {
    pub text: String,
    pub binds: Vec<Bind>,
    aliases: usize,
    /// Set for search statements, whose best form differs by database.
    backend: Option<Backend>,
    /// Filters as init plans rather than semi-joins (PostgreSQL, many filters).
    flat_filters: bool,
}

/// Filters in one search past which PostgreSQL gets them as init plans (its
/// `join_collapse_limit` is 8: beyond it the planner's join search changes strategy).
const PG_SEMI_JOINS: usize = 6;

impl Sql {
    pub fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    /// Append a placeholder for `b`.
    pub fn bind(&mut self, b: Bind) -> &mut Self {
        let n = self.add(b);
        let _ = write!(self.text, "${n}");
        self
    }

    /// A statement without binds.
    pub fn from_text(text: &str) -> Sql {
        Sql {
            text: text.to_string(),
            ..Sql::default()
        }
    }

    /// Append another statement, renumbering its placeholders to follow this one's.
    pub fn append(&mut self, other: Sql) {
        self.append_text(&other.text);
        self.binds.extend(other.binds);
    }

    /// [`Sql::append`] from a borrowed statement.
    pub fn append_ref(&mut self, other: &Sql) {
        self.append_text(&other.text);
        self.binds.extend(other.binds.iter().cloned());
    }

    fn append_text(&mut self, other: &str) {
        if !self.text.is_empty() {
            self.text.push_str("; ");
        }
        let offset = self.binds.len();
        if offset == 0 {
            self.text.push_str(other);
            return;
        }
        // Copied in runs between placeholders: a create's statements are appended one by one
        // to its transaction's text, and char by char this was a few percent of a create's CPU.
        self.text.reserve(other.len() + 8);
        let mut copied = 0;
        for (start, end, n) in placeholders(other) {
            self.text.push_str(&other[copied..=start]);
            let _ = write!(self.text, "{}", n + offset);
            copied = end;
        }
        self.text.push_str(&other[copied..]);
    }

    /// The text with SQLite's placeholders for ours (`$N`). SQLite reads `$N` as a *named*
    /// parameter and finds each name by a linear search, at parse and again at bind (as does
    /// `?N`, by number): quadratic in the binds of a statement, which made `strncmp` and
    /// `sqlite3_bind_parameter_name` the SQLite writer's top costs on multi-row audit inserts.
    /// When the placeholders appear in the text in order (`$1`, `$2`, … each once, as
    /// [`Sql::bind`] and [`Sql::append`] write them) they become anonymous `?`, bound by
    /// position; otherwise numbered `?N`.
    pub(crate) fn sqlite_text(&self) -> String {
        let mut out = String::with_capacity(self.text.len());
        if anonymous_into(&self.text, self.binds.len(), &mut out) {
            return out;
        }
        // Numbered: `$N` becomes `?N`.
        out.clear();
        let mut copied = 0;
        for (start, _, _) in placeholders(&self.text) {
            out.push_str(&self.text[copied..start]);
            out.push('?');
            copied = start + 1;
        }
        out.push_str(&self.text[copied..]);
        out
    }

    /// Register `b` and return its placeholder number, for text assembled elsewhere.
    fn add(&mut self, b: Bind) -> usize {
        self.binds.push(b);
        self.binds.len()
    }

    pub fn text(&mut self, s: &str) -> &mut Self {
        self.bind(Bind::Text(s.to_string()))
    }

    fn alias(&mut self, prefix: &str) -> String {
        self.aliases += 1;
        format!("{prefix}{}", self.aliases)
    }
}

/// The placeholders of `text` in order: the byte range of each `$N` (start at the `$`, end
/// after the digits) and its number. A `$` without digits (a JSON path, `'$.a'`) and a number
/// too large for `usize` are not placeholders.
fn placeholders(text: &str) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let b = text.as_bytes();
    let mut from = 0;
    std::iter::from_fn(move || loop {
        let start = from + memchr::memchr(b'$', b.get(from..)?)?;
        let digits = b[start + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        let end = start + 1 + digits;
        from = end;
        if digits == 0 {
            continue;
        }
        if let Ok(n) = text[start + 1..end].parse::<usize>() {
            return Some((start, end, n));
        }
    })
}

/// Append `text` to `out` with an anonymous `?` for each placeholder, when they are `$1`, `$2`,
/// … `$binds`, each once and in that order (as [`Sql::bind`] and [`Sql::append`] write them):
/// SQLite then binds them by position. Returns false, with `out` partly written, otherwise.
pub(crate) fn anonymous_into(text: &str, binds: usize, out: &mut String) -> bool {
    out.reserve(text.len());
    let mut expected = 1;
    let mut copied = 0;
    for (start, end, n) in placeholders(text) {
        if n != expected {
            return false;
        }
        expected += 1;
        out.push_str(&text[copied..start]);
        out.push('?');
        copied = end;
    }
    out.push_str(&text[copied..]);
    expected - 1 == binds
}

/// `items` joined by `op` (` OR `, ` AND `) as a balanced tree of parentheses: the expression's
/// depth grows with log2 of the count, so SQLite's expression-depth limit (1000) is never
/// reached, however many alternatives a query has.
fn balanced<T>(sql: &mut Sql, items: &[T], op: &str, each: &mut dyn FnMut(&mut Sql, &T)) {
    match items {
        [] => {
            sql.push(if op == " AND " { "1 = 1" } else { "1 = 0" });
        }
        [one] => each(sql, one),
        _ => {
            let (left, right) = items.split_at(items.len() / 2);
            sql.push("(");
            balanced(sql, left, op, each);
            sql.push(")").push(op).push("(");
            balanced(sql, right, op, each);
            sql.push(")");
        }
    }
}

/// `(type = t AND id IN (…)) OR …`, one group per type, for `(type, id)` keys.
fn keys_by_type(sql: &mut Sql, keys: &[(String, String)], type_col: &str, id_col: &str) {
    let mut groups: Vec<(&str, Vec<String>)> = Vec::new();
    for (t, id) in keys {
        match groups.iter_mut().find(|(g, _)| *g == t.as_str()) {
            Some((_, ids)) => ids.push(id.clone()),
            None => groups.push((t.as_str(), vec![id.clone()])),
        }
    }
    balanced(sql, &groups, " OR ", &mut |sql, (t, ids)| {
        let _ = write!(sql.text, "({type_col} = ");
        sql.text(t);
        let _ = write!(sql.text, " AND {id_col} IN ");
        in_list(sql, ids);
        sql.push(")");
    });
}

/// [`RESOURCE_COLUMNS`] as a literal, for statements written with `concat!` (`sql.rs`'s point
/// reads, which `direct.rs` maps by position).
macro_rules! resource_columns {
    () => {
        "r.res_type, r.id, r.version, r.last_updated, r.deleted, r.content, r.owner, r.citizen"
    };
}
pub(crate) use resource_columns;

/// Columns every resource query selects, in this order.
pub(crate) const RESOURCE_COLUMNS: &str = resource_columns!();

/// The page query: matching current resources after the cursor, `limit` of them, sorted.
pub(crate) fn page(q: &SearchQuery, limit: usize, backend: Backend, vis: &Visibility) -> Sql {
    let mut sql = Sql {
        backend: Some(backend),
        ..Sql::default()
    };
    let keys: Vec<String> = q
        .sort
        .iter()
        .map(|s| sort_expr(&mut sql, &s.key, s.desc, backend))
        .collect();
    let mut inner = String::from("SELECT ");
    inner.push_str(RESOURCE_COLUMNS);
    inner.push_str(", r.created_seq");
    for (i, k) in keys.iter().enumerate() {
        let _ = write!(inner, ", {k} AS k{i}");
    }
    // The sort expressions' binds are already registered; FROM/WHERE continues the numbering.
    let _ = write!(sql.text, "SELECT * FROM ({inner} FROM resources r WHERE ");
    where_clause(&mut sql, q, vis);
    sql.push(") t");
    if let Some(after) = &q.after {
        sql.push(" WHERE ");
        keyset(&mut sql, q, &after.values, after.seq);
    }
    sql.push(" ORDER BY ");
    for (i, s) in q.sort.iter().enumerate() {
        let _ = write!(sql.text, "t.k{i}{}, ", if s.desc { " DESC" } else { "" });
    }
    let _ = write!(
        sql.text,
        "{}t.created_seq LIMIT {limit}",
        creation_order(q, backend)
    );
    sql
}

/// Index rows a density probe counts at most: a filter matching this many is broad.
const DENSE_MATCHES: i64 = 1024;
/// Below that, a filter is broad when at least one resource of its type in this many matches.
const DENSE_SHARE: i64 = 8;

/// The one filter of a search that [`dense_page`] can answer: SQLite, creation order (no
/// `_sort`), a single filter on an indexed parameter, not negated, without `:missing`, chains
/// or `_has`.
fn dense_filter(q: &SearchQuery, backend: Backend) -> Option<&Filter> {
    let [f] = q.filters.as_slice() else {
        return None;
    };
    let plain = |m: &Match| {
        !matches!(
            m,
            Match::Missing(_) | Match::Chain { .. } | Match::Has { .. }
        )
    };
    (backend == Backend::Sqlite
        && q.sort.is_empty()
        && !f.negate
        && !matches!(f.param.as_str(), "_id" | "_lastUpdated" | "_has")
        && !f.any_of.is_empty()
        && f.any_of.iter().all(plain))
    .then_some(f)
}

/// For a search [`dense_filter`] accepts, a statement giving one row of two numbers for
/// [`is_dense`]: the filter's index rows (at most [`DENSE_MATCHES`]) and, when fewer, the type's
/// resources (at most [`DENSE_SHARE`] times as many, plus one). Both are counted on covering
/// indexes, so the probe reads at most a few thousand index entries.
///
/// [`page`] finds the matches first and then their resources, and sorts them: on SQLite that
/// is a row read per match, 47 ms for a filter matching 10,000 CarePlans, for every page.
/// When matches are dense, walking the type in creation order and testing each resource
/// ([`dense_page`]) stops at the page's end instead: 0.06 ms for the same page.
pub(crate) fn density_probe(q: &SearchQuery, backend: Backend, vis: &Visibility) -> Option<Sql> {
    let f = dense_filter(q, backend)?;
    let mut sql = Sql {
        backend: Some(backend),
        ..Sql::default()
    };
    sql.push("WITH m(v) AS (SELECT count(*) FROM (SELECT 1 FROM search_index i WHERE ");
    index_filter(&mut sql, "i", &q.rtype, f, vis);
    let _ = write!(
        sql.text,
        " LIMIT {DENSE_MATCHES})) SELECT v, CASE WHEN v >= {DENSE_MATCHES} THEN 0 ELSE (SELECT count(*) FROM (SELECT 1 FROM resources x WHERE x.res_type = "
    );
    sql.text(&q.rtype);
    let _ = write!(
        sql.text,
        " LIMIT (SELECT v FROM m) * {DENSE_SHARE} + 1)) END AS n FROM m"
    );
    Some(sql)
}

/// Whether a [`density_probe`]'s numbers make the search broad enough for [`dense_page`]:
/// [`DENSE_MATCHES`] matches or more (a very large type may then be walked further than the
/// matches would have been read: at most the page size times the type's size over the
/// matches), or at least one resource of the type in [`DENSE_SHARE`]. No match at all is not
/// broad.
pub(crate) fn is_dense(matches: i64, type_rows: i64) -> bool {
    matches >= DENSE_MATCHES || (matches > 0 && type_rows <= matches * DENSE_SHARE)
}

/// [`page`] for a broad search that [`dense_filter`] accepts, on SQLite: the type's resources
/// walked in creation order (`resources_order`), each tested for the filter through its own
/// index rows (`search_index_owner`), until the page is full. The same rows as [`page`], in the
/// same order.
pub(crate) fn dense_page(q: &SearchQuery, limit: usize, vis: &Visibility) -> Option<Sql> {
    let f = dense_filter(q, Backend::Sqlite)?;
    let mut sql = Sql {
        backend: Some(Backend::Sqlite),
        ..Sql::default()
    };
    let _ = write!(
        sql.text,
        "SELECT {RESOURCE_COLUMNS}, r.created_seq FROM resources r WHERE r.res_type = "
    );
    sql.text(&q.rtype);
    sql.push(" AND r.deleted = 0 AND EXISTS (SELECT 1 FROM search_index i INDEXED BY search_index_owner WHERE i.res_id = r.id AND ");
    index_filter(&mut sql, "i", &q.rtype, f, vis);
    sql.push(")");
    visibility(&mut sql, "r", vis);
    if let Some(after) = &q.after {
        sql.push(" AND r.created_seq > ").bind(Bind::Int(after.seq));
    }
    let _ = write!(sql.text, " ORDER BY r.created_seq LIMIT {limit}");
    Some(sql)
}

/// The index rows `i` of parameter `param` of a resource of type `rtype`.
fn index_param(sql: &mut Sql, i: &str, rtype: &str, param: &str) {
    let _ = write!(sql.text, "{i}.res_type = ");
    sql.text(rtype);
    let _ = write!(sql.text, " AND {i}.param = ");
    sql.text(param);
}

/// The index rows `i` of a resource of type `rtype` that match `f`, a filter on an indexed
/// parameter: [`filter`]'s sub-select, and [`density_probe`]'s and [`dense_page`]'s.
fn index_filter(sql: &mut Sql, i: &str, rtype: &str, f: &Filter, vis: &Visibility) {
    index_param(sql, i, rtype, &f.param);
    // The date index holds only rows with a date (migration 0014); a query must say so for
    // either database to use it (`hi > x` alone does not imply it).
    if !f.any_of.is_empty() && f.any_of.iter().all(|m| matches!(m, Match::Date { .. })) {
        let _ = write!(sql.text, " AND {i}.lo IS NOT NULL");
    }
    sql.push(" AND (");
    alternatives(sql, i, &f.any_of, vis);
    sql.push(")");
}

/// How the creation sequence is written in `ORDER BY`: bare, or on SQLite as `+` (an
/// expression, which no index delivers in order) when the query narrows the matches by a
/// resource's id. Without table statistics SQLite prefers walking `resources_order` (type,
/// creation) to skip the sort, and tests every resource of the type against the id list: a
/// CPR chain search read all 10,000 CarePlans to find one (docs/benchmarks.md). With `+` it looks
/// the listed ids up and sorts what matched. A query that matches most of the type pays more for
/// the sort (twice the time, measured on 10,000); a query with no such filter keeps the walk,
/// which stops at the page's end. PostgreSQL keeps its statistics itself.
fn creation_order(q: &SearchQuery, backend: Backend) -> &'static str {
    let narrowed = q.filters.iter().any(|f| {
        !f.negate
            && f.param != "_lastUpdated"
            && !f.any_of.iter().any(|m| matches!(m, Match::Missing(true)))
    });
    if backend == Backend::Sqlite && narrowed {
        "+"
    } else {
        ""
    }
}

/// `SELECT COUNT(*)` over the same matches (cursor ignored).
pub(crate) fn count(q: &SearchQuery, backend: Backend, vis: &Visibility) -> Sql {
    let mut sql = Sql {
        backend: Some(backend),
        ..Sql::default()
    };
    sql.push("SELECT COUNT(*) FROM resources r WHERE ");
    where_clause(&mut sql, q, vis);
    sql
}

/// Ids of matches (for conditional interactions).
pub(crate) fn ids(q: &SearchQuery, limit: usize, backend: Backend, vis: &Visibility) -> Sql {
    let mut sql = Sql {
        backend: Some(backend),
        ..Sql::default()
    };
    sql.push("SELECT r.id FROM resources r WHERE ");
    where_clause(&mut sql, q, vis);
    let _ = write!(
        sql.text,
        " ORDER BY {}r.created_seq LIMIT {limit}",
        creation_order(q, backend)
    );
    sql
}

/// Resources whose `inc.param` refers to one of `targets` (`_revinclude`).
pub(crate) fn referencing(
    inc: &Include,
    targets: &[(String, String)],
    limit: usize,
    vis: &Visibility,
) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT ").push(RESOURCE_COLUMNS);
    sql.push(" FROM resources r WHERE r.res_type = ")
        .text(&inc.source_type)
        .push(" AND r.deleted = 0 AND r.id IN (SELECT i.res_id FROM search_index i WHERE i.res_type = ")
        .text(&inc.source_type);
    if inc.param != "*" {
        sql.push(" AND i.param = ").text(&inc.param);
    }
    sql.push(" AND (");
    keys_by_type(&mut sql, targets, "i.system", "i.value");
    sql.push("))");
    visibility(&mut sql, "r", vis);
    // The referring ids come from the index; `+` keeps SQLite from walking every resource of
    // the source type in creation order instead (see `creation_order`). PostgreSQL reads it as
    // the same number.
    let _ = write!(sql.text, " ORDER BY +r.created_seq LIMIT {limit}");
    sql
}

/// ` AND` the row `alias` (of `resources` or `resource_versions`) is visible under `vis`.
pub(crate) fn visibility(sql: &mut Sql, alias: &str, vis: &Visibility) {
    let orgs = match vis {
        Visibility::All => return,
        Visibility::Readable(orgs) | Visibility::Owned(orgs) => orgs,
    };
    if orgs.is_empty() && matches!(vis, Visibility::Owned(_)) {
        sql.push(" AND 1 = 0");
        return;
    }
    if let Visibility::Owned(_) = vis {
        let _ = write!(sql.text, " AND {alias}.owner IN ");
        in_list(sql, orgs);
        return;
    }
    let _ = write!(sql.text, " AND ({alias}.res_type IN (");
    for (n, t) in SHARED_TYPES.iter().enumerate() {
        if n > 0 {
            sql.push(", ");
        }
        let _ = write!(sql.text, "'{t}'");
    }
    sql.push(")");
    if !orgs.is_empty() {
        let _ = write!(sql.text, " OR {alias}.owner IN ");
        in_list(sql, orgs);
        let _ = write!(
            sql.text,
            " OR EXISTS (SELECT 1 FROM access_grants g WHERE g.owner = {alias}.owner AND g.citizen = {alias}.citizen AND g.grantee IN "
        );
        in_list(sql, orgs);
        sql.push(")");
    }
    sql.push(")");
}

/// `(v1, v2, …)` with every value bound (not empty: SQL has no empty list).
pub(crate) fn in_list(sql: &mut Sql, values: &[String]) {
    sql.push("(");
    for (n, v) in values.iter().enumerate() {
        if n > 0 {
            sql.push(", ");
        }
        sql.text(v);
    }
    sql.push(")");
}

/// Current, not deleted resources by key.
pub(crate) fn by_keys(keys: &[(String, String)]) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT ").push(RESOURCE_COLUMNS);
    sql.push(" FROM resources r WHERE r.deleted = 0 AND (");
    keys_by_type(&mut sql, keys, "r.res_type", "r.id");
    sql.push(")");
    sql
}

/// The query's filters and, ANDed, the caller's visibility (chained sub-selects too: a chain
/// must not test what the caller cannot see).
fn where_clause(sql: &mut Sql, q: &SearchQuery, vis: &Visibility) {
    sql.flat_filters = sql.backend == Some(Backend::Postgres) && q.filters.len() > PG_SEMI_JOINS;
    sql.push("r.res_type = ")
        .text(&q.rtype)
        .push(" AND r.deleted = 0");
    if !q.filters.is_empty() {
        sql.push(" AND (");
        balanced(sql, &q.filters, " AND ", &mut |sql, f| {
            filter(sql, "r", &q.rtype, f, vis)
        });
        sql.push(")");
    }
    visibility(sql, "r", vis);
}

/// A boolean SQL expression: the resource row `alias` (of type `rtype`) satisfies `f`.
///
/// Index parameters are `alias.id IN (SELECT res_id FROM search_index …)`, not correlated
/// `EXISTS`: the sub-select is answered from the `(res_type, param, value, system)` index once,
/// instead of probing the index for every resource of the type.
fn filter(sql: &mut Sql, alias: &str, rtype: &str, f: &Filter, vis: &Visibility) {
    if f.negate {
        sql.push("NOT ");
    }
    match f.param.as_str() {
        "_id" => {
            // The ids in one list; anything else (`:missing`) alongside.
            let ids: Vec<String> = f
                .any_of
                .iter()
                .filter_map(|m| match m {
                    Match::Token { code: Some(c), .. } => Some(c.clone()),
                    _ => None,
                })
                .collect();
            let rest: Vec<&Match> = f
                .any_of
                .iter()
                .filter(|m| !matches!(m, Match::Token { code: Some(_), .. }))
                .collect();
            sql.push("(");
            if !ids.is_empty() {
                let _ = write!(sql.text, "{alias}.id IN ");
                in_list(sql, &ids);
                if !rest.is_empty() {
                    sql.push(" OR ");
                }
            }
            if !rest.is_empty() || ids.is_empty() {
                balanced(sql, &rest, " OR ", &mut |sql, m| match m {
                    Match::Missing(missing) => {
                        sql.push(if *missing { "1 = 0" } else { "1 = 1" });
                    }
                    _ => {
                        sql.push("1 = 0");
                    }
                });
            }
            sql.push(")");
        }
        "_lastUpdated" => {
            let col = format!("{alias}.last_updated");
            sql.push("(");
            balanced(sql, &f.any_of, " OR ", &mut |sql, m| match m {
                Match::Date { prefix, lo, hi } => range(sql, &col, &col, *prefix, *lo, *hi),
                Match::Missing(missing) => {
                    sql.push(if *missing { "1 = 0" } else { "1 = 1" });
                }
                _ => {
                    sql.push("1 = 0");
                }
            });
            sql.push(")");
        }
        "_has" => {
            sql.push("(");
            balanced(sql, &f.any_of, " OR ", &mut |sql, m| match m {
                Match::Has {
                    source,
                    param,
                    inner,
                } => referenced_by(sql, alias, rtype, source, param, inner, vis),
                _ => {
                    sql.push("1 = 0");
                }
            });
            sql.push(")");
        }
        param => {
            let i = sql.alias("i");
            let missing = match f.any_of.as_slice() {
                [Match::Missing(m)] => Some(*m),
                _ => None,
            };
            // `:missing=true` is "not in the set of resources having a value".
            if missing == Some(true) {
                sql.push("NOT ");
            }
            // PostgreSQL turns each `IN (SELECT …)` into a semi-join and searches join orders
            // over all of them: past a handful of parameters that planning grows exponentially
            // (seconds and gigabytes at 100). `= ANY(ARRAY(SELECT …))` is an init plan run once
            // and a plain filter on the row, so planning stays linear in the parameters.
            let array = sql.flat_filters;
            let open = if array { "= ANY(ARRAY(" } else { "IN (" };
            let _ = write!(
                sql.text,
                "{alias}.id {open}SELECT {i}.res_id FROM search_index {i} WHERE "
            );
            if missing.is_some() {
                index_param(sql, &i, rtype, param);
            } else {
                index_filter(sql, &i, rtype, f, vis);
            }
            sql.push(if array { "))" } else { ")" });
        }
    }
}

/// `_has` (a reverse chain): the row `alias` (of type `rtype`) is what the reference parameter
/// `param` of some visible, not deleted `source` resource matching `inner` points at. The
/// referring resource is tested under the caller's visibility, as a chain's target is: another
/// tenant's resources must not decide what matches.
pub(crate) fn referenced_by(
    sql: &mut Sql,
    alias: &str,
    rtype: &str,
    source: &str,
    param: &str,
    inner: &Filter,
    vis: &Visibility,
) {
    let h = sql.alias("h");
    let s = sql.alias("s");
    let array = sql.flat_filters;
    let open = if array { "= ANY(ARRAY(" } else { "IN (" };
    let _ = write!(
        sql.text,
        "{alias}.id {open}SELECT {h}.value FROM search_index {h} JOIN resources {s} ON {s}.res_type = {h}.res_type AND {s}.id = {h}.res_id WHERE {h}.res_type = "
    );
    sql.text(source);
    let _ = write!(sql.text, " AND {h}.param = ");
    sql.text(param);
    let _ = write!(sql.text, " AND {h}.system = ");
    sql.text(rtype);
    let _ = write!(sql.text, " AND {s}.deleted = 0 AND ");
    filter(sql, &s, source, inner, vis);
    visibility(sql, &s, vis);
    sql.push(if array { "))" } else { ")" });
}

/// The index row `i` matches one of `any_of`: exact values with the same column test share one
/// `IN (…)` list (tokens by system, references by type, URIs), so that many alternatives make
/// one index probe each and a flat expression; the others are ORed as a balanced tree.
fn alternatives(sql: &mut Sql, i: &str, any_of: &[Match], vis: &Visibility) {
    /// The fixed part of a group (`None`: any system) and the column its values are in.
    #[derive(PartialEq)]
    enum Key<'a> {
        /// Token values, of any system / of no system / of this system.
        Token(&'a TokenSystem),
        /// Reference ids, of any type / of this type.
        Ref(Option<&'a str>),
        /// Exact URIs.
        Uri,
    }
    let mut groups: Vec<(Key, Vec<String>)> = Vec::new();
    let mut rest: Vec<&Match> = Vec::new();
    for m in any_of {
        let (key, value) = match m {
            Match::Token {
                system,
                code: Some(code),
            } => (Key::Token(system), code),
            Match::Ref { rtype, id } => (Key::Ref(rtype.as_deref()), id),
            Match::Uri {
                value,
                below: false,
            } => (Key::Uri, value),
            _ => {
                rest.push(m);
                continue;
            }
        };
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, values)) => values.push(value.clone()),
            None => groups.push((key, vec![value.clone()])),
        }
    }
    enum Part<'a> {
        Group(&'a (Key<'a>, Vec<String>)),
        One(&'a Match),
    }
    let parts: Vec<Part> = groups
        .iter()
        .map(Part::Group)
        .chain(rest.into_iter().map(Part::One))
        .collect();
    balanced(sql, &parts, " OR ", &mut |sql, p| match p {
        Part::One(m) => index_match(sql, i, m, vis),
        Part::Group((key, values)) => {
            let _ = write!(sql.text, "({i}.value IN ");
            in_list(sql, values);
            match key {
                Key::Token(TokenSystem::Any) | Key::Ref(None) | Key::Uri => {}
                Key::Token(TokenSystem::None) => {
                    let _ = write!(sql.text, " AND {i}.system = ''");
                }
                Key::Token(TokenSystem::Is(s)) => {
                    let _ = write!(sql.text, " AND {i}.system = ");
                    sql.text(s);
                }
                Key::Ref(Some(t)) => {
                    let _ = write!(sql.text, " AND {i}.system = ");
                    sql.text(t);
                }
            }
            sql.push(")");
        }
    });
}

/// A boolean SQL expression on the index row `i`.
fn index_match(sql: &mut Sql, i: &str, m: &Match, vis: &Visibility) {
    match m {
        Match::Token { system, code } => {
            sql.push("(1 = 1");
            if let Some(code) = code {
                let _ = write!(sql.text, " AND {i}.value = ");
                sql.text(code);
            }
            match system {
                TokenSystem::Any => {}
                TokenSystem::None => {
                    let _ = write!(sql.text, " AND {i}.system = ''");
                }
                TokenSystem::Is(s) => {
                    let _ = write!(sql.text, " AND {i}.system = ");
                    sql.text(s);
                }
            }
            sql.push(")");
        }
        // On SQLite a prefix is an index range: its LIKE is case-insensitive and so cannot use
        // the BINARY index, and the values are already folded. U+10FFFF is the largest
        // character, so `[p, p + U+10FFFF)` holds exactly the strings starting with `p`.
        Match::Text {
            value,
            mode: TextMode::StartsWith,
        } if sql.backend == Some(Backend::Sqlite) => {
            let _ = write!(sql.text, "({i}.value >= ");
            sql.text(value);
            let _ = write!(sql.text, " AND {i}.value < ");
            sql.text(&format!("{value}\u{10FFFF}")).push(")");
        }
        Match::Text { value, mode } => {
            let pattern = match mode {
                TextMode::StartsWith => format!("{}%", escape_like(value)),
                TextMode::Contains => format!("%{}%", escape_like(value)),
                TextMode::Exact => {
                    let _ = write!(sql.text, "{i}.system = ");
                    sql.text(value);
                    return;
                }
            };
            let _ = write!(sql.text, "{i}.value LIKE ");
            sql.text(&pattern).push(" ESCAPE '\\'");
        }
        Match::Ref { rtype, id } => {
            let _ = write!(sql.text, "({i}.value = ");
            sql.text(id);
            if let Some(t) = rtype {
                let _ = write!(sql.text, " AND {i}.system = ");
                sql.text(t);
            }
            sql.push(")");
        }
        Match::Uri { value, below } => {
            if *below {
                let _ = write!(sql.text, "{i}.value LIKE ");
                sql.text(&format!("{}%", escape_like(value)))
                    .push(" ESCAPE '\\'");
            } else {
                let _ = write!(sql.text, "{i}.value = ");
                sql.text(value);
            }
        }
        Match::Date { prefix, lo, hi } => {
            range(
                sql,
                &format!("{i}.lo"),
                &format!("{i}.hi"),
                *prefix,
                *lo,
                *hi,
            );
        }
        Match::Number { prefix, lo, hi } => number(sql, &format!("{i}.num"), *prefix, *lo, *hi),
        Match::Chain { target, inner } => {
            let c = sql.alias("c");
            let _ = write!(sql.text, "({i}.system = ");
            sql.text(target);
            let _ = write!(
                sql.text,
                " AND {i}.value IN (SELECT {c}.id FROM resources {c} WHERE {c}.res_type = "
            );
            sql.text(target);
            let _ = write!(sql.text, " AND {c}.deleted = 0 AND ");
            filter(sql, &c, target, inner, vis);
            visibility(sql, &c, vis);
            sql.push("))");
        }
        // Handled by `filter`; inside alternatives it cannot be combined meaningfully.
        Match::Missing(_) | Match::Has { .. } => {
            sql.push("1 = 0");
        }
    }
}

/// R4 date-prefix semantics between a stored range `[lo_col, hi_col]` and the search range.
fn range(sql: &mut Sql, lo_col: &str, hi_col: &str, prefix: Prefix, lo: i64, hi: i64) {
    let eq = |sql: &mut Sql| {
        let _ = write!(sql.text, "({lo_col} >= ");
        sql.bind(Bind::Int(lo));
        let _ = write!(sql.text, " AND {hi_col} <= ");
        sql.bind(Bind::Int(hi)).push(")");
    };
    match prefix {
        Prefix::Eq => eq(sql),
        Prefix::Ne => {
            sql.push("NOT ");
            eq(sql);
        }
        Prefix::Gt | Prefix::Sa => {
            let col = if prefix == Prefix::Gt { hi_col } else { lo_col };
            let _ = write!(sql.text, "{col} > ");
            sql.bind(Bind::Int(hi));
        }
        Prefix::Lt | Prefix::Eb => {
            let col = if prefix == Prefix::Lt { lo_col } else { hi_col };
            let _ = write!(sql.text, "{col} < ");
            sql.bind(Bind::Int(lo));
        }
        Prefix::Ge => {
            let _ = write!(sql.text, "({hi_col} > ");
            sql.bind(Bind::Int(hi)).push(" OR ");
            eq(sql);
            sql.push(")");
        }
        Prefix::Le => {
            let _ = write!(sql.text, "({lo_col} < ");
            sql.bind(Bind::Int(lo)).push(" OR ");
            eq(sql);
            sql.push(")");
        }
        Prefix::Ap => {
            // Overlap with the search range widened by 10 % of its distance from now, at least a day.
            let now = chrono::Utc::now().timestamp_millis();
            let slack = ((now - lo).abs() / 10).max(86_400_000);
            let _ = write!(sql.text, "({lo_col} <= ");
            sql.bind(Bind::Int(hi.saturating_add(slack)));
            let _ = write!(sql.text, " AND {hi_col} >= ");
            sql.bind(Bind::Int(lo.saturating_sub(slack))).push(")");
        }
    }
}

fn number(sql: &mut Sql, col: &str, prefix: Prefix, lo: f64, hi: f64) {
    let mid = (lo + hi) / 2.0;
    let (op, v) = match prefix {
        Prefix::Eq | Prefix::Ne | Prefix::Ap => {
            if prefix == Prefix::Ne {
                sql.push("NOT ");
            }
            let (lo, hi) = if prefix == Prefix::Ap {
                (mid - mid.abs() * 0.1, mid + mid.abs() * 0.1)
            } else {
                (lo, hi)
            };
            let _ = write!(sql.text, "({col} >= ");
            sql.bind(Bind::Float(lo));
            let _ = write!(sql.text, " AND {col} < ");
            sql.bind(Bind::Float(hi)).push(")");
            return;
        }
        Prefix::Gt | Prefix::Sa => (">", mid),
        Prefix::Lt | Prefix::Eb => ("<", mid),
        Prefix::Ge => (">=", mid),
        Prefix::Le => ("<=", mid),
    };
    let _ = write!(sql.text, "{col} {op} ");
    sql.bind(Bind::Float(v));
}

/// The SQL expression a sort key orders by; missing values sort last in either direction.
fn sort_expr(sql: &mut Sql, key: &SortKey, desc: bool, backend: Backend) -> String {
    match key {
        SortKey::Id => text_order("r.id".into(), backend),
        SortKey::LastUpdated => "r.last_updated".into(),
        SortKey::Param { code, kind } => {
            let agg = if desc { "MAX" } else { "MIN" };
            let (col, missing) = match (kind, desc) {
                (SortKind::Int, false) => ("hi", Bind::Int(i64::MAX)),
                (SortKind::Int, true) => ("hi", Bind::Int(i64::MIN + 1)),
                (SortKind::Float, false) => ("num", Bind::Float(f64::MAX)),
                (SortKind::Float, true) => ("num", Bind::Float(f64::MIN)),
                (SortKind::Text, false) => ("value", Bind::Text("\u{10FFFF}".into())),
                (SortKind::Text, true) => ("value", Bind::Text(String::new())),
            };
            // Ascending dates compare by where they start, descending by where they end.
            let col = if *kind == SortKind::Int && !desc {
                "lo"
            } else {
                col
            };
            let p = sql.add(Bind::Text(code.clone()));
            let m = sql.add(missing);
            let expr = format!(
                "COALESCE((SELECT {agg}(s.{col}) FROM search_index s WHERE s.res_type = r.res_type AND s.res_id = r.id AND s.param = ${p}), ${m})"
            );
            if *kind == SortKind::Text {
                text_order(expr, backend)
            } else {
                expr
            }
        }
    }
}

/// Text compares byte-wise on both backends, so pages and cursors agree.
fn text_order(expr: String, backend: Backend) -> String {
    match backend {
        Backend::Postgres => format!("({expr}) COLLATE \"C\""),
        Backend::Sqlite => expr,
    }
}

/// `(k0, k1, …, seq) > (v0, v1, …, s)` with each key's own direction.
fn keyset(sql: &mut Sql, q: &SearchQuery, values: &[SortValue], seq: i64) {
    sql.push("(");
    for n in 0..=q.sort.len() {
        if n > 0 {
            sql.push(" OR ");
        }
        sql.push("(");
        for (k, value) in values.iter().enumerate().take(n) {
            let _ = write!(sql.text, "t.k{k} = ");
            sql.bind(sort_bind(value)).push(" AND ");
        }
        match (q.sort.get(n), values.get(n)) {
            (Some(s), Some(v)) => {
                let _ = write!(sql.text, "t.k{n} {} ", if s.desc { "<" } else { ">" });
                sql.bind(sort_bind(v));
            }
            _ => {
                sql.push("t.created_seq > ").bind(Bind::Int(seq));
            }
        }
        sql.push(")");
    }
    sql.push(")");
}

fn sort_bind(v: &SortValue) -> Bind {
    match v {
        SortValue::Int(i) => Bind::Int(*i),
        SortValue::Float(f) => Bind::Float(*f),
        SortValue::Text(s) => Bind::Text(s.clone()),
    }
}

fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::{anonymous_into, ids, page, referencing, Backend, Bind, Sql, Visibility};
    use fhir_core::fhir::search::{parse_search, Include, ParseOptions, SearchCaps, SearchQuery};
    use fhir_core::fhir::search_params::SearchParamRegistry;

    #[test]
    fn sqlite_text_numbers_placeholders_and_leaves_json_paths() {
        let mut sql = Sql::from_text("SELECT json_extract(content, '$.a') WHERE x = ");
        sql.bind(Bind::Int(1));
        let mut other = Sql::from_text("UPDATE t SET y = ");
        other.bind(Bind::Text("$5".into()));
        sql.append(other);
        assert_eq!(
            sql.sqlite_text(),
            "SELECT json_extract(content, '$.a') WHERE x = ?; UPDATE t SET y = ?"
        );
    }

    /// SQLite's plan for `sql` on a freshly migrated database (no table statistics, as on a
    /// new gateway), one line per step.
    async fn sqlite_plan(sql: &Sql) -> Vec<String> {
        use sqlx::Row as _;
        let pool = crate::store::migrate::memory_sqlite().await;
        let text = format!("EXPLAIN QUERY PLAN {}", sql.sqlite_text());
        crate::store::sql::query_text(&text, &sql.binds)
            .fetch_all(&pool)
            .await
            .expect("plan")
            .iter()
            .map(|r| r.try_get::<String, _>(3).unwrap_or_default())
            .collect()
    }

    /// A parsed search of `rtype` (tests elsewhere in the store use it too).
    pub(crate) fn query(rtype: &str, pairs: &[(&str, &str)]) -> SearchQuery {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_search(
            SearchParamRegistry::embedded(),
            fhir_core::fhir::ResourceType::parse(rtype).expect("a served type"),
            &pairs,
            ParseOptions {
                default_count: 20,
                max_count: 1000,
                lenient: false,
                caps: SearchCaps::default(),
            },
        )
        .expect("query parses")
    }

    #[tokio::test]
    async fn sqlite_looks_matches_up_instead_of_walking_the_type_in_creation_order() {
        let vis = Visibility::Readable(vec!["org-a".to_string()].into());
        let chain = query(
            "CarePlan",
            &[("patient.identifier", "urn:oid:1.2.208.176.1.2|0101451234")],
        );
        let by_identifier = query(
            "Patient",
            &[("identifier", "urn:oid:1.2.208.176.1.2|0101451234")],
        );
        let everything = query("CarePlan", &[]);
        for (name, sql) in [
            ("chain page", page(&chain, 21, Backend::Sqlite, &vis)),
            (
                "identifier page",
                page(&by_identifier, 21, Backend::Sqlite, &vis),
            ),
            (
                "conditional ids",
                ids(&by_identifier, 2, Backend::Sqlite, &vis),
            ),
        ] {
            let plan = sqlite_plan(&sql).await;
            assert!(
                !plan.iter().any(|step| step.contains("resources_order")),
                "{name} walks the type in creation order: {plan:#?}"
            );
        }
        // Without a filter the walk is the right plan: it stops at the page's end.
        let plan = sqlite_plan(&page(&everything, 21, Backend::Sqlite, &vis)).await;
        assert!(
            plan.iter().any(|step| step.contains("resources_order")),
            "{plan:#?}"
        );
        // `_revinclude`'s referring resources come from the index too.
        let inc = Include {
            source_type: "Goal".into(),
            param: "patient".into(),
            target_type: None,
            iterate: false,
        };
        let sql = referencing(&inc, &[("Patient".into(), "p1".into())], 100, &vis);
        let plan = sqlite_plan(&sql).await;
        assert!(
            !plan.iter().any(|step| step.contains("resources_order")),
            "{plan:#?}"
        );
    }

    /// A broad search on SQLite walks the type in creation order ([`super::dense_page`]) and
    /// finds the same rows in the same order, page after page, as [`page`]: token and
    /// date filters, several values, visibility by owner, deleted resources left out. The probe
    /// tells broad from narrow as [`super::is_dense`] says.
    #[tokio::test]
    async fn a_broad_search_walks_the_type_and_finds_what_the_lookup_finds() {
        use super::{dense_page, density_probe, is_dense};
        use sqlx::Row as _;
        let pool = crate::store::migrate::memory_sqlite().await;
        let run = |sql: Sql| {
            let pool = pool.clone();
            async move {
                crate::store::sql::query_text(&sql.sqlite_text(), &sql.binds)
                    .fetch_all(&pool)
                    .await
                    .expect("query")
            }
        };
        // 60 CarePlans, created in an order unlike their ids; every third draft, every fifth
        // deleted, owners alternating; each with a status, a title word and a period date.
        for n in 0..60i64 {
            let id = format!("cp-{:02}", (n * 37) % 60);
            let status = if n % 3 == 0 { "draft" } else { "active" };
            let owner = if n % 2 == 0 { "org-a" } else { "org-b" };
            let mut sql = Sql::from_text(
                "INSERT INTO resources (res_type, id, version, last_updated, deleted, content, created_seq, owner) VALUES ('CarePlan', ",
            );
            sql.text(&id).push(", 1, 0, ");
            sql.bind(Bind::Int(i64::from(n % 5 == 0)));
            sql.push(", '{}', ")
                .bind(Bind::Int(1000 - n * 7))
                .push(", ");
            sql.text(owner).push(")");
            run(sql).await;
            for (param, value, lo) in [
                ("status", status, None),
                ("intent", if n % 4 == 0 { "plan" } else { "order" }, None),
                ("date", "", Some(1_700_000_000_000 + n * 86_400_000)),
            ] {
                let mut sql = Sql::from_text(
                    "INSERT INTO search_index (res_type, res_id, param, system, value, lo, hi) VALUES ('CarePlan', ",
                );
                sql.text(&id)
                    .push(", ")
                    .text(param)
                    .push(", '', ")
                    .text(value)
                    .push(", ");
                match lo {
                    Some(l) => sql
                        .bind(Bind::Int(l))
                        .push(", ")
                        .bind(Bind::Int(l + 86_399_999))
                        .push(")"),
                    None => sql.push("NULL, NULL)"),
                };
                run(sql).await;
            }
        }
        let ids = |rows: &[sqlx::any::AnyRow]| -> Vec<(String, i64)> {
            rows.iter()
                .map(|r| {
                    (
                        r.try_get::<String, _>("id").expect("id"),
                        r.try_get::<i64, _>("created_seq").expect("seq"),
                    )
                })
                .collect()
        };
        let owned = Visibility::Owned(vec!["org-a".to_string()].into());
        for (pairs, vis) in [
            (vec![("status", "active")], Visibility::All),
            (vec![("status", "active,draft")], Visibility::All),
            (vec![("status", "draft")], owned.clone()),
            (vec![("intent", "plan")], Visibility::All),
            (vec![("date", "ge2023-11-20")], Visibility::All),
        ] {
            let mut q = query("CarePlan", &pairs);
            let probe = density_probe(&q, Backend::Sqlite, &vis).expect("a plain filter");
            let row = &run(probe).await[0];
            let (m, n) = (
                row.try_get::<i64, _>(0).expect("m"),
                row.try_get::<i64, _>(1).expect("n"),
            );
            assert!(is_dense(m, n), "{pairs:?}: {m} matches of {n}");
            let mut pages = 0;
            loop {
                let lookup = ids(&run(page(&q, 7, Backend::Sqlite, &vis)).await);
                let walked = ids(&run(dense_page(&q, 7, &vis).expect("dense")).await);
                assert_eq!(walked, lookup, "{pairs:?}, page {pages}");
                let Some((_, seq)) = lookup.last().cloned() else {
                    break;
                };
                q.after = Some(fhir_core::fhir::search::Cursor {
                    values: Vec::new(),
                    seq,
                });
                pages += 1;
            }
            assert!(pages >= 2, "{pairs:?} should span pages");
        }
        // Narrow, or nothing at all: the lookup.
        assert!(!is_dense(0, 1));
        assert!(!is_dense(3, 60));
        assert!(is_dense(8, 60));
        assert!(is_dense(1024, 1_000_000));
        // Not of the walk's shape: sorted, two filters, negated, a chain.
        for pairs in [
            vec![("status", "active"), ("_sort", "date")],
            vec![("status", "active"), ("intent", "plan")],
            vec![("status:not", "active")],
            vec![("patient.identifier", "x|1")],
            vec![("_id", "cp-01")],
        ] {
            let q = query("CarePlan", &pairs);
            assert!(
                density_probe(&q, Backend::Sqlite, &Visibility::All).is_none(),
                "{pairs:?}"
            );
        }
        let q = query("CarePlan", &[("status", "active")]);
        assert!(density_probe(&q, Backend::Postgres, &Visibility::All).is_none());
        // The walk's plan: the type in creation order, each resource's own index rows.
        let plan = sqlite_plan(&dense_page(&q, 21, &Visibility::All).expect("dense")).await;
        assert!(
            plan.iter().any(|s| s.contains("resources_order")),
            "{plan:#?}"
        );
        assert!(
            plan.iter().any(|s| s.contains("search_index_owner")),
            "{plan:#?}"
        );
    }

    /// The date index holds only rows with a date (migration 0014): every date prefix, alone,
    /// with another parameter, or among several dates, still finds its rows through it.
    #[tokio::test]
    async fn date_searches_use_the_partial_date_index() {
        let vis = Visibility::All;
        for pairs in [
            vec![("date", "gt2026-01-01")],
            vec![("date", "lt2026-01-01")],
            vec![("date", "eb2026-01-01")],
            vec![("date", "2026-01-01")],
            vec![("date", "ap2026-01-01")],
            vec![("date", "ge2026-01-01,le2025-01-01")],
            vec![("date", "ge2026-01-01"), ("status", "final")],
        ] {
            let q = query("Observation", &pairs);
            let plan = sqlite_plan(&page(&q, 21, Backend::Sqlite, &vis)).await;
            assert!(
                plan.iter().any(|step| step.contains("search_index_date")),
                "{pairs:?}: {plan:#?}"
            );
        }
    }

    #[test]
    fn sqlite_text_keeps_numbers_when_placeholders_are_out_of_order() {
        let mut sql = Sql::from_text("SELECT $2, $1, $2");
        sql.binds = vec![Bind::Int(1), Bind::Int(2)];
        assert_eq!(sql.sqlite_text(), "SELECT ?2, ?1, ?2");
    }

    #[test]
    fn append_renumbers_placeholders_past_ten_and_leaves_dollars_without_digits() {
        let mut sql = Sql::from_text("SELECT ");
        for i in 0..11 {
            sql.bind(Bind::Int(i)).push(", ");
        }
        sql.push("'$'");
        let mut other = Sql::from_text("UPDATE t SET a = json_extract(b, '$.c'), d = ");
        other.bind(Bind::Int(11)).push(" WHERE e = ");
        other.bind(Bind::Text("$1".into())).push(" AND f = '$$'");
        sql.append(other);
        assert!(sql.text.ends_with(
            "'$'; UPDATE t SET a = json_extract(b, '$.c'), d = $12 WHERE e = $13 AND f = '$$'"
        ));
        assert!(sql.text.starts_with("SELECT $1, $2, "));
        assert_eq!(sql.binds.len(), 13);
        let text = sql.sqlite_text();
        assert_eq!(text.matches('?').count(), 13);
        assert!(!text.contains("?1"), "in order, so anonymous: {text}");
        assert!(text.contains("'$.c'") && text.contains("'$$'") && text.contains("'$'"));
        // A bound value is never rewritten, only the text.
        assert_eq!(sql.binds[12], Bind::Text("$1".into()));
    }

    #[test]
    fn anonymous_into_refuses_missing_repeated_and_extra_placeholders() {
        let mut out = String::new();
        assert!(anonymous_into("a = $1 AND b = $2", 2, &mut out));
        assert_eq!(out, "a = ? AND b = ?");
        for (text, binds) in [
            ("a = $2 AND b = $1", 2),
            ("a = $1 AND b = $1", 1),
            ("a = $1", 2),
            ("a = $1 AND b = $3", 3),
        ] {
            assert!(!anonymous_into(text, binds, &mut String::new()), "{text}");
        }
    }
}
