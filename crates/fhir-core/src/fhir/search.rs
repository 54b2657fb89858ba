//! FHIR search requests, parsed: from `name=value` pairs to a [`SearchQuery`] the store can run.
//!
//! Parsing knows the R4 search parameters (from [`SearchParamRegistry`]) and reports every problem
//! it finds: unknown parameters, modifiers it does not support, malformed values. It never touches
//! the database.

use base64::Engine as _;

use crate::fhir::outcome::Issue;
use crate::fhir::search_params::{date_range, normalize_string, ParamType, SearchParamRegistry};
use crate::fhir::ResourceType;

/// Date and number comparison prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

/// Which `system` a token search requires.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenSystem {
    /// `code`: any system.
    Any,
    /// `|code`: no system.
    None,
    /// `system|code` or `system|`.
    Is(String),
}

/// How a string parameter compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextMode {
    StartsWith,
    Exact,
    Contains,
}

/// One alternative of a search parameter's value (values joined by `,` are alternatives).
#[derive(Debug, Clone, PartialEq)]
pub enum Match {
    Token {
        system: TokenSystem,
        code: Option<String>,
    },
    Text {
        value: String,
        mode: TextMode,
    },
    Ref {
        rtype: Option<String>,
        id: String,
    },
    Uri {
        value: String,
        below: bool,
    },
    Date {
        prefix: Prefix,
        lo: i64,
        hi: i64,
    },
    Number {
        prefix: Prefix,
        lo: f64,
        hi: f64,
    },
    /// `param.chained=value`: the referenced resource of type `target` matches `inner`.
    Chain {
        target: String,
        inner: Box<Filter>,
    },
    /// `_has:source:param:inner=value` (reverse chaining): some resource of type `source`
    /// whose reference parameter `param` points at this resource matches `inner`.
    Has {
        source: String,
        param: String,
        inner: Box<Filter>,
    },
    /// `param:missing=true|false`.
    Missing(bool),
}

impl Match {
    /// The nested search of a chain or reverse chain: the type it runs on and its filter.
    pub fn sub_search(&self) -> Option<(&str, &Filter)> {
        match self {
            Match::Chain { target, inner } => Some((target, inner)),
            Match::Has { source, inner, .. } => Some((source, inner)),
            _ => None,
        }
    }
}

/// One search parameter in the query: `param` matches one of `any_of` (negated by `:not`).
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// The parameter code (`_id` and `_lastUpdated` are answered from the resource row).
    pub param: String,
    pub negate: bool,
    pub any_of: Vec<Match>,
}

/// What a sort key compares.
#[derive(Debug, Clone, PartialEq)]
pub enum SortKey {
    Id,
    LastUpdated,
    /// A search parameter, compared by its lowest (ascending) or highest (descending) value.
    Param {
        code: String,
        kind: SortKind,
    },
}

/// The SQL type a sort key yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKind {
    Int,
    Text,
    Float,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sort {
    pub key: SortKey,
    pub desc: bool,
}

/// A sort key's value in a paging cursor.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum SortValue {
    Int(i64),
    Float(f64),
    Text(String),
}

/// Where the previous page ended: its last row's sort values and sequence number. Paging by key
/// (not offset) keeps `next` links right while others write.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    pub values: Vec<SortValue>,
    pub seq: i64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// `_include` / `_revinclude`: `source_type:param[:target_type]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    pub source_type: String,
    pub param: String,
    pub target_type: Option<String>,
    pub iterate: bool,
}

pub use super::summary::{apply_elements, apply_summary, Summary};

/// `_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    /// Reported when known for free (the last page), omitted otherwise.
    Auto,
    None,
    Accurate,
}

/// A parsed search on one resource type.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    pub rtype: ResourceType,
    pub filters: Vec<Filter>,
    pub sort: Vec<Sort>,
    pub count: usize,
    pub after: Option<Cursor>,
    pub summary: Summary,
    pub total: Total,
    pub elements: Option<Vec<String>>,
    pub includes: Vec<Include>,
    pub revincludes: Vec<Include>,
    /// Parameters that were ignored under `Prefer: handling=lenient`, reported back as warnings.
    pub ignored: Vec<Issue>,
    /// The parameters that define the result (everything but paging), to rebuild links.
    pub canonical_params: Vec<(String, String)>,
}

/// Why one query parameter was refused. Only `Unknown` ones may be ignored under
/// `Prefer: handling=lenient`; a malformed value of a known parameter is always an error.
#[derive(Debug)]
enum ParamError {
    Unknown(String),
    Invalid(String),
}

impl From<String> for ParamError {
    fn from(s: String) -> Self {
        ParamError::Invalid(s)
    }
}

impl From<&str> for ParamError {
    fn from(s: &str) -> Self {
        ParamError::Invalid(s.to_string())
    }
}

fn unknown(msg: String) -> ParamError {
    ParamError::Unknown(msg)
}

/// Limits and leniency for parsing.
#[derive(Debug, Clone, Copy)]
pub struct ParseOptions {
    pub default_count: usize,
    pub max_count: usize,
    pub lenient: bool,
    pub caps: SearchCaps,
}

/// How much one search may ask of the database. Past a cap the search is refused (400) with an
/// issue that names the cap and its value, before any SQL is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchCaps {
    /// Query parameters in one request (all of them: filters, `_sort`, `_include`, …).
    pub max_parameters: usize,
    /// Alternatives (comma-separated values) of one parameter, counted after chains expand to
    /// their target types.
    pub max_alternatives: usize,
    /// Alternatives over all parameters of the request.
    pub max_alternatives_total: usize,
    /// Chained sub-searches (each target type of each chain counts, and each `_has`).
    pub max_chains: usize,
    /// `_include` and `_revinclude` parameters together.
    pub max_includes: usize,
}

impl Default for SearchCaps {
    fn default() -> SearchCaps {
        SearchCaps {
            max_parameters: 50,
            max_alternatives: 100,
            max_alternatives_total: 300,
            max_chains: 20,
            max_includes: 10,
        }
    }
}

/// What a filter costs: one per leaf alternative (a chain's target type or a `_has`, and every
/// alternative inside it), and how many chained sub-searches (either direction) it holds.
fn filter_work(f: &Filter) -> (usize, usize) {
    let mut work = 0;
    let mut chains = 0;
    for m in &f.any_of {
        match m {
            Match::Chain { inner, .. } | Match::Has { inner, .. } => {
                let (w, c) = filter_work(inner);
                work += w.max(1);
                chains += 1 + c;
            }
            _ => work += 1,
        }
    }
    (work, chains)
}

/// The issue of a search over one of its caps: what was asked, and the cap's name and value.
fn over_cap(what: String, cap: &str, value: usize, at: &str) -> Issue {
    Issue::error(
        "too-costly",
        format!("{what}; at most {value} are accepted in one search (search.{cap} = {value})"),
    )
    .at(at.to_string())
}

/// Check a parsed query against `caps`: every cap exceeded is one issue.
fn check_caps(q: &SearchQuery, caps: &SearchCaps) -> Vec<Issue> {
    let mut issues = Vec::new();
    let mut total = 0;
    let mut chains = 0;
    for f in &q.filters {
        let (work, c) = filter_work(f);
        total += work;
        chains += c;
        if work > caps.max_alternatives {
            issues.push(over_cap(
                format!("{} has {work} alternatives", f.param),
                "max_alternatives",
                caps.max_alternatives,
                &f.param,
            ));
        }
    }
    if q.sort.len() > caps.max_alternatives {
        issues.push(over_cap(
            format!("_sort has {} keys", q.sort.len()),
            "max_alternatives",
            caps.max_alternatives,
            "_sort",
        ));
    }
    if total > caps.max_alternatives_total {
        issues.push(over_cap(
            format!("the search has {total} alternatives over all its parameters"),
            "max_alternatives_total",
            caps.max_alternatives_total,
            "query",
        ));
    }
    if chains > caps.max_chains {
        issues.push(over_cap(
            format!("the search has {chains} chained sub-searches"),
            "max_chains",
            caps.max_chains,
            "query",
        ));
    }
    let includes = q.includes.len() + q.revincludes.len();
    if includes > caps.max_includes {
        issues.push(over_cap(
            format!("the search has {includes} _include and _revinclude parameters"),
            "max_includes",
            caps.max_includes,
            "query",
        ));
    }
    issues
}

/// Parse the query pairs of a search on `rtype`. On failure, every problem found is returned.
pub fn parse_search(
    registry: &SearchParamRegistry,
    rtype: ResourceType,
    pairs: &[(String, String)],
    opts: ParseOptions,
) -> Result<SearchQuery, Vec<Issue>> {
    let mut q = SearchQuery {
        rtype,
        filters: Vec::new(),
        sort: Vec::new(),
        count: opts.default_count,
        after: None,
        summary: Summary::False,
        total: Total::Auto,
        elements: None,
        includes: Vec::new(),
        revincludes: Vec::new(),
        ignored: Vec::new(),
        canonical_params: Vec::new(),
    };
    if pairs.len() > opts.caps.max_parameters {
        // Not parsed at all: the count alone decides.
        return Err(vec![over_cap(
            format!("the search has {} parameters", pairs.len()),
            "max_parameters",
            opts.caps.max_parameters,
            "query",
        )]);
    }
    let mut errors = Vec::new();
    for (name, value) in pairs {
        // No stored string holds a control character (the validator refuses them), and NUL
        // reaches PostgreSQL as an error: refused here for every way criteria arrive (URL, form
        // body, conditional headers, transaction entries). Never echoed: the location is the name.
        if !crate::fhir::json::clean_string(name) || !crate::fhir::json::clean_string(value) {
            let shown: String = name
                .chars()
                .map(|c| if c.is_control() { '\u{fffd}' } else { c })
                .collect();
            errors.push(
                Issue::error(
                    "invalid",
                    format!(
                        "the search parameter {shown:?} holds a control character; below U+0020 only TAB, LF and CR are allowed"
                    ),
                )
                .at(shown),
            );
            continue;
        }
        let loc = format!("{name}={value}");
        let result = parse_pair(registry, &mut q, name, value, opts);
        if !matches!(name.as_str(), "_page" | "_format" | "_pretty") {
            q.canonical_params.push((name.clone(), value.clone()));
        }
        match result {
            Ok(()) => {}
            Err(ParamError::Unknown(msg)) if opts.lenient => {
                q.ignored
                    .push(Issue::warning("not-supported", format!("ignored: {msg}")).at(loc));
                q.canonical_params.pop();
            }
            Err(ParamError::Unknown(msg)) => {
                errors.push(Issue::error("not-supported", msg).at(loc));
            }
            Err(ParamError::Invalid(msg)) => errors.push(Issue::error("invalid", msg).at(loc)),
        }
    }
    if let Some(after) = &q.after {
        if !cursor_fits(after, &q.sort) {
            errors.push(
                Issue::error(
                    "invalid",
                    "_page belongs to a search with a different _sort",
                )
                .at("_page"),
            );
        }
    }
    if errors.is_empty() {
        errors = check_caps(&q, &opts.caps);
    }
    if errors.is_empty() {
        Ok(q)
    } else {
        Err(errors)
    }
}

/// A cursor can only continue a search sorted the same way.
fn cursor_fits(cursor: &Cursor, sort: &[Sort]) -> bool {
    cursor.values.len() == sort.len()
        && cursor.values.iter().zip(sort).all(|(v, s)| {
            let kind = match &s.key {
                SortKey::Id => SortKind::Text,
                SortKey::LastUpdated => SortKind::Int,
                SortKey::Param { kind, .. } => *kind,
            };
            matches!(
                (v, kind),
                (SortValue::Int(_), SortKind::Int)
                    | (SortValue::Float(_), SortKind::Float)
                    | (SortValue::Text(_), SortKind::Text)
            )
        })
}

fn parse_pair(
    registry: &SearchParamRegistry,
    q: &mut SearchQuery,
    name: &str,
    value: &str,
    opts: ParseOptions,
) -> Result<(), ParamError> {
    match name {
        "_count" => {
            let n: usize = value
                .parse()
                .map_err(|_| format!("_count must be a whole number, got {value:?}"))?;
            q.count = n.min(opts.max_count);
            Ok(())
        }
        "_page" => {
            q.after = Some(
                Cursor::decode(value).ok_or("_page is not a paging token this server issued")?,
            );
            Ok(())
        }
        "_format" | "_pretty" => Ok(()),
        "_summary" => {
            q.summary = Summary::parse(value).ok_or_else(|| {
                unknown(format!(
                    "_summary={value} is not a summary mode; use true, text, data, count or false"
                ))
            })?;
            Ok(())
        }
        "_total" => {
            q.total = match value {
                "none" => Total::None,
                "accurate" | "estimate" => Total::Accurate,
                other => {
                    return Err(
                        format!("_total must be none, estimate or accurate, got {other:?}").into(),
                    )
                }
            };
            Ok(())
        }
        "_elements" => {
            let list: Vec<String> = value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            if list.is_empty() {
                return Err("_elements needs at least one element name".into());
            }
            q.elements = Some(list);
            Ok(())
        }
        "_sort" => {
            for part in value.split(',').filter(|s| !s.is_empty()) {
                let (desc, code) = match part.strip_prefix('-') {
                    Some(rest) => (true, rest),
                    None => (false, part),
                };
                let key = sort_key(registry, &q.rtype, code)?;
                q.sort.push(Sort { key, desc });
            }
            Ok(())
        }
        "_include" | "_include:iterate" | "_revinclude" | "_revinclude:iterate" => {
            let rev = name.starts_with("_rev");
            let inc = parse_include(registry, value, name.ends_with(":iterate"))?;
            if rev {
                q.revincludes.push(inc);
            } else {
                if inc.source_type != q.rtype && !inc.iterate {
                    return Err(format!(
                        "_include must start with the searched type {}, got {value:?}",
                        q.rtype
                    )
                    .into());
                }
                q.includes.push(inc);
            }
            Ok(())
        }
        _ => {
            let filter = parse_filter(registry, &q.rtype, name, value, 0)?;
            q.filters.push(filter);
            Ok(())
        }
    }
}

fn sort_key(
    registry: &SearchParamRegistry,
    rtype: &str,
    code: &str,
) -> Result<SortKey, ParamError> {
    match code {
        "_id" => return Ok(SortKey::Id),
        "_lastUpdated" => return Ok(SortKey::LastUpdated),
        _ => {}
    }
    let def = registry
        .get(rtype, code)
        .ok_or_else(|| unknown(format!("cannot sort {rtype} by unknown parameter {code:?}")))?;
    let kind = match def.ptype {
        ParamType::Date => SortKind::Int,
        ParamType::Number | ParamType::Quantity => SortKind::Float,
        ParamType::String | ParamType::Token | ParamType::Uri | ParamType::Reference => {
            SortKind::Text
        }
        _ => {
            return Err(unknown(format!(
                "cannot sort by {code}: composite/special parameters have no order"
            )))
        }
    };
    Ok(SortKey::Param {
        code: code.to_string(),
        kind,
    })
}

fn parse_include(
    registry: &SearchParamRegistry,
    value: &str,
    iterate: bool,
) -> Result<Include, ParamError> {
    let mut parts = value.split(':');
    let source = parts.next().unwrap_or_default();
    let param = parts
        .next()
        .ok_or_else(|| format!("expected Type:parameter[:TargetType], got {value:?}"))?;
    let target = parts.next().map(String::from);
    if param == "*" {
        return Ok(Include {
            source_type: source.to_string(),
            param: "*".into(),
            target_type: target,
            iterate,
        });
    }
    let def = registry
        .get(source, param)
        .ok_or_else(|| unknown(format!("{source} has no search parameter {param:?}")))?;
    if def.ptype != ParamType::Reference {
        return Err(format!("{source}:{param} is not a reference parameter").into());
    }
    if let Some(t) = &target {
        if !def.targets.iter().any(|x| x == t) {
            return Err(format!("{source}:{param} cannot refer to {t}").into());
        }
    }
    Ok(Include {
        source_type: source.to_string(),
        param: param.to_string(),
        target_type: target,
        iterate,
    })
}

/// Parse `name[:modifier][.chain]=value` into a filter on `rtype`.
fn parse_filter(
    registry: &SearchParamRegistry,
    rtype: &str,
    name: &str,
    value: &str,
    depth: usize,
) -> Result<Filter, ParamError> {
    // Reverse chains first: their inner parameter may itself be a chain (`…:subject.name`).
    if name == "_has" || name.starts_with("_has:") {
        return parse_has(registry, rtype, name, value, depth);
    }
    // Chains: `patient.identifier`, `subject:Patient.name`.
    if let Some((head, rest)) = name.split_once('.') {
        if depth > 1 {
            return Err(unknown(
                "chains deeper than two references are not supported".into(),
            ));
        }
        let (code, type_mod) = match head.split_once(':') {
            Some((c, t)) => (c, Some(t)),
            None => (head, None),
        };
        let def = registry
            .get(rtype, code)
            .ok_or_else(|| unknown(format!("{rtype} has no search parameter {code:?}")))?;
        if def.ptype != ParamType::Reference {
            return Err(
                format!("{code} is not a reference parameter and cannot be chained").into(),
            );
        }
        let targets: Vec<&String> = match type_mod {
            Some(t) => def.targets.iter().filter(|x| x.as_str() == t).collect(),
            None => def.targets.iter().collect(),
        };
        let mut any_of = Vec::new();
        let mut last_err = None;
        for target in targets {
            match parse_filter(registry, target, rest, value, depth + 1) {
                Ok(inner) => any_of.push(Match::Chain {
                    target: target.clone(),
                    inner: Box::new(inner),
                }),
                Err(e) => last_err = Some(e),
            }
        }
        if any_of.is_empty() {
            return Err(last_err.unwrap_or_else(|| {
                ParamError::Invalid(format!("{head} cannot refer to that type"))
            }));
        }
        return Ok(Filter {
            param: code.to_string(),
            negate: false,
            any_of,
        });
    }

    let (code, modifier) = match name.split_once(':') {
        Some((c, m)) => (c, Some(m)),
        None => (name, None),
    };
    if value.is_empty() {
        return Err(format!("{name} has an empty value").into());
    }
    let ptype = match code {
        "_id" => ParamType::Token,
        "_lastUpdated" => ParamType::Date,
        _ => registry
            .get(rtype, code)
            .ok_or_else(|| unknown(format!("{rtype} has no search parameter {code:?}")))?
            .ptype
            .clone(),
    };
    if modifier == Some("missing") {
        let missing = match value {
            "true" => true,
            "false" => false,
            _ => return Err(format!("{name} must be true or false").into()),
        };
        return Ok(Filter {
            param: code.to_string(),
            negate: false,
            any_of: vec![Match::Missing(missing)],
        });
    }
    let mut negate = false;
    let mut any_of = Vec::new();
    for raw in split_values(value) {
        let m = match (&ptype, modifier) {
            (ParamType::Token, None | Some("not")) => {
                negate = modifier == Some("not");
                token_match(&raw)
            }
            (ParamType::String, None) => text_match(&raw, TextMode::StartsWith),
            (ParamType::String, Some("exact")) => text_match(&raw, TextMode::Exact),
            (ParamType::String, Some("contains")) => text_match(&raw, TextMode::Contains),
            (ParamType::Reference, None) => ref_match(&raw, None),
            (ParamType::Reference, Some(t)) if t.chars().next().is_some_and(char::is_uppercase) => {
                ref_match(&raw, Some(t))
            }
            (ParamType::Date, None) => date_match(&raw)?,
            (ParamType::Uri, None) => Match::Uri {
                value: raw,
                below: false,
            },
            (ParamType::Uri, Some("below")) => Match::Uri {
                value: raw,
                below: true,
            },
            (ParamType::Number | ParamType::Quantity, None) => number_match(&raw)?,
            (ParamType::Composite | ParamType::Special, _) => {
                return Err(unknown(format!(
                    "{code}: composite and special parameters are not supported"
                )))
            }
            (_, Some(m)) => {
                return Err(unknown(format!("modifier :{m} is not supported on {code}")))
            }
        };
        any_of.push(m);
    }
    Ok(Filter {
        param: code.to_string(),
        negate,
        any_of,
    })
}

/// Parse `_has:Type:refParam:inner=value` on `rtype`: resources of `rtype` that some `Type`
/// refers to through `refParam`, where that `Type` matches `inner=value` (which may be a chain or
/// another `_has`; the two directions share the depth limit of chains).
fn parse_has(
    registry: &SearchParamRegistry,
    rtype: &str,
    name: &str,
    value: &str,
    depth: usize,
) -> Result<Filter, ParamError> {
    let mut parts = name.splitn(4, ':').skip(1);
    let (Some(source), Some(param), Some(inner_name)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!(
            "{name} is malformed; _has takes the form _has:Type:reference-parameter:search-parameter=value"
        )
        .into());
    };
    if source.is_empty() || param.is_empty() || inner_name.is_empty() {
        return Err(format!(
            "{name} is malformed; _has takes the form _has:Type:reference-parameter:search-parameter=value"
        )
        .into());
    }
    if depth > 1 {
        return Err(unknown(
            "chains deeper than two references are not supported".into(),
        ));
    }
    if registry.params_for(source).next().is_none() {
        return Err(unknown(format!(
            "_has: {source:?} is not a resource type this server searches"
        )));
    }
    let def = registry
        .get(source, param)
        .ok_or_else(|| unknown(format!("{source} has no search parameter {param:?}")))?;
    if def.ptype != ParamType::Reference {
        return Err(format!("_has: {source}:{param} is not a reference parameter").into());
    }
    if !def.targets.is_empty() && !def.targets.iter().any(|t| t == rtype) {
        return Err(format!("_has: {source}:{param} cannot refer to {rtype}").into());
    }
    let inner = parse_filter(registry, source, inner_name, value, depth + 1)?;
    Ok(Filter {
        param: "_has".into(),
        negate: false,
        any_of: vec![Match::Has {
            source: source.to_string(),
            param: param.to_string(),
            inner: Box::new(inner),
        }],
    })
}

/// Split on unescaped commas; `\,` `\|` `\$` `\\` unescape.
fn split_values(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            // `\|` stays escaped so token parsing does not split there; other escapes resolve.
            '\\' => match chars.next() {
                Some('|') => current.push_str("\\|"),
                Some(next) => current.push(next),
                None => {}
            },
            ',' => out.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    out.push(current);
    out.retain(|s| !s.is_empty());
    out
}

fn token_match(raw: &str) -> Match {
    // find an unescaped '|'
    let bytes = raw.as_bytes();
    let mut split = None;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'|' && (i == 0 || bytes[i - 1] != b'\\') {
            split = Some(i);
            break;
        }
    }
    let unescape = |s: &str| s.replace("\\|", "|");
    match split {
        None => Match::Token {
            system: TokenSystem::Any,
            code: Some(unescape(raw)),
        },
        Some(0) => Match::Token {
            system: TokenSystem::None,
            code: Some(unescape(&raw[1..])),
        },
        Some(i) => {
            let code = &raw[i + 1..];
            Match::Token {
                system: TokenSystem::Is(unescape(&raw[..i])),
                code: (!code.is_empty()).then(|| unescape(code)),
            }
        }
    }
}

/// Plain and `:contains` searches compare case- and accent-folded; `:exact` compares the value
/// as written.
fn text_match(raw: &str, mode: TextMode) -> Match {
    Match::Text {
        value: if mode == TextMode::Exact {
            raw.to_string()
        } else {
            normalize_string(raw)
        },
        mode,
    }
}

fn ref_match(raw: &str, type_modifier: Option<&str>) -> Match {
    let trimmed = raw.split("/_history/").next().unwrap_or(raw);
    let segments: Vec<&str> = trimmed.rsplitn(3, '/').collect();
    match segments.as_slice() {
        [id, rtype, ..] if rtype.chars().next().is_some_and(char::is_uppercase) => Match::Ref {
            rtype: Some((*rtype).to_string()),
            id: (*id).to_string(),
        },
        _ => Match::Ref {
            rtype: type_modifier.map(String::from),
            id: trimmed.to_string(),
        },
    }
}

fn split_prefix(raw: &str) -> (Prefix, &str) {
    let prefixes = [
        ("eq", Prefix::Eq),
        ("ne", Prefix::Ne),
        ("gt", Prefix::Gt),
        ("lt", Prefix::Lt),
        ("ge", Prefix::Ge),
        ("le", Prefix::Le),
        ("sa", Prefix::Sa),
        ("eb", Prefix::Eb),
        ("ap", Prefix::Ap),
    ];
    for (p, prefix) in prefixes {
        if let Some(rest) = raw.strip_prefix(p) {
            if rest.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.') {
                return (prefix, rest);
            }
        }
    }
    (Prefix::Eq, raw)
}

fn date_match(raw: &str) -> Result<Match, String> {
    let (prefix, rest) = split_prefix(raw);
    let (lo, hi) = date_range(rest).ok_or_else(|| {
        format!(
            "{raw:?} is not a FHIR date/dateTime (e.g. 2024, 2024-05-01, ge2024-05-01T10:00:00Z)"
        )
    })?;
    Ok(Match::Date { prefix, lo, hi })
}

fn number_match(raw: &str) -> Result<Match, String> {
    let (prefix, rest) = split_prefix(raw);
    // Quantity: number|system|code — the unit parts are not compared.
    let number = rest.split('|').next().unwrap_or(rest);
    let v: f64 = number
        .parse()
        .map_err(|_| format!("{raw:?} is not a number"))?;
    // Implicit precision: 5.4 means [5.35, 5.45).
    let decimals = number.split_once('.').map_or(0, |(_, d)| d.len()) as i32;
    let half = 0.5 * 10f64.powi(-decimals);
    Ok(Match::Number {
        prefix,
        lo: v - half,
        hi: v + half,
    })
}

/// The query of conditional-create criteria in any form clients send them: `identifier=x`,
/// `?identifier=x`, `Patient?identifier=x` (HAPI's BundleBuilder) or a full URL
/// `http://host/fhir/Patient?identifier=x` (HAPI's generic client). A prefix must name `rtype`.
pub fn criteria_query<'a>(rtype: &str, text: &'a str) -> Result<&'a str, String> {
    let text = text.trim();
    let Some((prefix, query)) = text.split_once('?') else {
        return Ok(text);
    };
    // A `?` inside a parameter value (`identifier=a?b`) is not a prefix.
    if prefix.contains(['=', '&']) {
        return Ok(text);
    }
    if prefix.is_empty() {
        return Ok(query);
    }
    let named = prefix
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(prefix);
    if named == rtype {
        Ok(query)
    } else {
        Err(format!(
            "the criteria name {named:?} but the resource is a {rtype}; give {rtype}?… or only the query"
        ))
    }
}

#[cfg(test)]
mod tests;
