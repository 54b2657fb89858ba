//! R4 search parameters at run time: the registry (which parameters each resource type has, of
//! which type, along which compiled paths) and index extraction (the values of a resource that a
//! search on each parameter compares against).
//!
//! The registry is read from `profiles/r4/search-parameters.json`, which `cargo xtask derive
//! search-params` (`xtask/src/search_params.rs`) generates and which is embedded at compile time. This
//! module must never read the FHIR package, evaluate FHIRPath text or do any I/O: paths arrive
//! compiled, and extraction is a pure walk over `serde_json::Value` that runs on every write.
//!
//! String values are normalised by [`normalize_string`]: lowercase, diacritics removed, and the
//! Nordic letters folded to ASCII the way Unicode's Latin-ASCII transliteration does (`æ` → `ae`,
//! `ø` → `o`, `å` → `a`), so `Søren` is found by `soren` as well as by `Søren`.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::fhir::datetime::Temporal;
use anyhow::{bail, Context};
use serde_json::{Map, Value};

/// The generated file, embedded so the server needs nothing but its binary.
const EMBEDDED_JSON: &str = include_str!("../../../../profiles/r4/search-parameters.json");

/// The type of a search parameter, as in `SearchParameter.type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamType {
    Token,
    String,
    Reference,
    Date,
    Uri,
    Number,
    Quantity,
    Composite,
    Special,
}

impl ParamType {
    const ALL: [ParamType; 9] = [
        ParamType::Token,
        ParamType::String,
        ParamType::Reference,
        ParamType::Date,
        ParamType::Uri,
        ParamType::Number,
        ParamType::Quantity,
        ParamType::Composite,
        ParamType::Special,
    ];

    /// The FHIR code of this type (`token`, `string`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            ParamType::Token => "token",
            ParamType::String => "string",
            ParamType::Reference => "reference",
            ParamType::Date => "date",
            ParamType::Uri => "uri",
            ParamType::Number => "number",
            ParamType::Quantity => "quantity",
            ParamType::Composite => "composite",
            ParamType::Special => "special",
        }
    }

    /// The type with FHIR code `code`, if there is one.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.code() == code)
    }
}

/// One step of a compiled path: an element name plus optional filters on the elements found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStep {
    /// Element name; for choice elements usually the concrete name (`onsetDateTime`).
    pub name: String,
    /// From `.where(resolve() is Patient)`: keep only references to one of these types.
    pub ref_types: Option<Vec<String>>,
    /// From `.where(system = 'phone')`: keep only elements whose child `.0` is the string `.1`.
    pub child_equals: Option<(String, String)>,
}

impl PathStep {
    /// A step without filters.
    pub fn named(name: impl Into<String>) -> Self {
        PathStep {
            name: name.into(),
            ref_types: None,
            child_equals: None,
        }
    }

    /// File form: a plain string, or `{"name", "resolve": [types], "where": {field: value}}`.
    pub fn to_json(&self) -> Value {
        if self.ref_types.is_none() && self.child_equals.is_none() {
            return Value::String(self.name.clone());
        }
        let mut m = Map::new();
        m.insert("name".into(), self.name.clone().into());
        if let Some(types) = &self.ref_types {
            m.insert("resolve".into(), types.clone().into());
        }
        if let Some((field, value)) = &self.child_equals {
            let mut w = Map::new();
            w.insert(field.clone(), value.clone().into());
            m.insert("where".into(), Value::Object(w));
        }
        Value::Object(m)
    }

    fn from_json(v: &Value) -> anyhow::Result<Self> {
        let obj = match v {
            Value::String(name) => return Ok(PathStep::named(name.as_str())),
            Value::Object(obj) => obj,
            _ => bail!("a path step must be a string or an object, got {v}"),
        };
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .context("path step without \"name\"")?;
        let ref_types = match obj.get("resolve") {
            None => None,
            Some(types) => Some(string_list(types).context("\"resolve\" must list type names")?),
        };
        let child_equals = match obj.get("where").and_then(Value::as_object) {
            None => None,
            Some(w) => match w.iter().next() {
                Some((field, Value::String(value))) if w.len() == 1 => {
                    Some((field.clone(), value.clone()))
                }
                _ => bail!("\"where\" must be one field with a string value"),
            },
        };
        Ok(PathStep {
            name: name.to_string(),
            ref_types,
            child_equals,
        })
    }

    /// Does a value found at this step pass its filters?
    fn accepts(&self, v: &Value) -> bool {
        if let Some(types) = &self.ref_types {
            let rtype = v
                .get("reference")
                .and_then(Value::as_str)
                .and_then(parse_reference)
                .map(|(t, _)| t);
            if !rtype.is_some_and(|t| types.iter().any(|x| x == t)) {
                return false;
            }
        }
        if let Some((field, want)) = &self.child_equals {
            if v.get(field).and_then(Value::as_str) != Some(want.as_str()) {
                return false;
            }
        }
        true
    }
}

/// One search parameter of one resource type.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchParamDef {
    /// The name used in queries (`subject`, `_tag`).
    pub code: String,
    /// Its type.
    pub ptype: ParamType,
    /// Alternative paths from the resource root; values found along any of them are indexed.
    pub paths: Vec<Vec<PathStep>>,
    /// Resource types a reference parameter may point at (empty for other types).
    pub targets: Vec<String>,
}

impl SearchParamDef {
    /// File form (the code is the key it is stored under, so it is not repeated):
    /// `{"type": "reference", "paths": [["subject"]], "targets": ["Patient"]}`; `targets` only
    /// when not empty.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), self.ptype.code().into());
        let paths = self
            .paths
            .iter()
            .map(|p| Value::Array(p.iter().map(PathStep::to_json).collect()))
            .collect();
        m.insert("paths".into(), Value::Array(paths));
        if !self.targets.is_empty() {
            m.insert("targets".into(), self.targets.clone().into());
        }
        Value::Object(m)
    }

    /// Read the file form of parameter `code`.
    pub fn from_json(code: &str, v: &Value) -> anyhow::Result<Self> {
        let type_code = v
            .get("type")
            .and_then(Value::as_str)
            .context("missing \"type\"")?;
        let ptype = ParamType::from_code(type_code)
            .with_context(|| format!("unknown parameter type {type_code:?}"))?;
        let paths = v
            .get("paths")
            .and_then(Value::as_array)
            .context("missing \"paths\" array")?
            .iter()
            .map(|p| {
                p.as_array()
                    .context("a path must be an array of steps")?
                    .iter()
                    .map(PathStep::from_json)
                    .collect()
            })
            .collect::<anyhow::Result<_>>()?;
        let targets = match v.get("targets") {
            None => Vec::new(),
            Some(t) => string_list(t).context("\"targets\" must list type names")?,
        };
        Ok(SearchParamDef {
            code: code.to_string(),
            ptype,
            paths,
            targets,
        })
    }
}

fn string_list(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|s| s.as_str().map(String::from))
        .collect()
}

/// A value a resource is indexed under for one parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexValue {
    /// Coding / CodeableConcept codings (`system|code`), Identifier (`system|value`), ContactPoint
    /// value and code/string/boolean primitives (no system).
    Token {
        system: Option<String>,
        code: String,
    },
    /// A string, HumanName part or Address part: `normalized` with [`normalize_string`] (what
    /// searches compare) and `exact` as written (what `:exact` compares).
    String { normalized: String, exact: String },
    /// A resolvable literal reference, `Type/id` (version and base URL dropped).
    Reference { rtype: String, id: String },
    /// The inclusive epoch-millisecond range a date, dateTime, instant, Period or Timing event
    /// covers; open Period ends are `i64::MIN` / `i64::MAX`.
    Date { lo: i64, hi: i64 },
    /// A uri, or a canonical for a reference parameter.
    Uri(String),
    /// A decimal or integer.
    Number(f64),
    /// A Quantity (or Age, Duration, ...).
    Quantity {
        value: f64,
        system: Option<String>,
        code: Option<String>,
        unit: Option<String>,
    },
}

/// One index row: the parameter code and one value.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    pub param: String,
    pub value: IndexValue,
}

/// The search parameters of every resource type in the generated file.
#[derive(Debug, Clone)]
pub struct SearchParamRegistry {
    /// Per resource type, its parameters sorted by code.
    by_type: HashMap<String, Vec<SearchParamDef>>,
}

impl SearchParamRegistry {
    /// The registry from the embedded `profiles/r4/search-parameters.json`, parsed on first use.
    pub fn embedded() -> &'static SearchParamRegistry {
        static REGISTRY: OnceLock<SearchParamRegistry> = OnceLock::new();
        REGISTRY.get_or_init(|| {
            let v: Value = serde_json::from_str(EMBEDDED_JSON)
                .expect("embedded search-parameters.json is JSON (the tests parse it)");
            Self::from_json(&v)
                .expect("embedded search-parameters.json is a valid registry (the tests load it)")
        })
    }

    /// Read a registry from the generated file's JSON: `{"resources": {Type: {code: def}}}`.
    pub fn from_json(v: &Value) -> anyhow::Result<Self> {
        let resources = v
            .get("resources")
            .and_then(Value::as_object)
            .context("search parameter file has no \"resources\" object")?;
        let mut by_type = HashMap::with_capacity(resources.len());
        for (rtype, params) in resources {
            let params = params
                .as_object()
                .with_context(|| format!("{rtype}: expected an object of parameters"))?;
            let mut defs = params
                .iter()
                .map(|(code, p)| {
                    SearchParamDef::from_json(code, p).with_context(|| format!("{rtype}.{code}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            defs.sort_by(|a, b| a.code.cmp(&b.code));
            by_type.insert(rtype.clone(), defs);
        }
        Ok(SearchParamRegistry { by_type })
    }

    /// The parameter `code` of `resource_type`.
    pub fn get(&self, resource_type: &str, code: &str) -> Option<&SearchParamDef> {
        let defs = self.by_type.get(resource_type)?;
        let i = defs.binary_search_by(|d| d.code.as_str().cmp(code)).ok()?;
        defs.get(i)
    }

    /// All parameters of `resource_type`, sorted by code (none for an unknown type).
    pub fn params_for(&self, resource_type: &str) -> impl Iterator<Item = &SearchParamDef> {
        self.by_type
            .get(resource_type)
            .map_or(&[][..], Vec::as_slice)
            .iter()
    }

    /// The index entries of `resource` for every parameter of its `resourceType`, without
    /// duplicates. `_id` and `_lastUpdated` are left out (they are stored with the resource), and
    /// so are composite and special parameters, which have no single value to index.
    pub fn extract(&self, resource: &Value) -> Vec<IndexEntry> {
        let Some(defs) = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .and_then(|t| self.by_type.get(t))
        else {
            return Vec::new();
        };
        let mut entries = Vec::new();
        let mut walker = Walker::default();
        let mut values = Vec::new();
        for def in defs {
            if matches!(def.code.as_str(), "_id" | "_lastUpdated")
                || matches!(def.ptype, ParamType::Composite | ParamType::Special)
            {
                continue;
            }
            for path in &def.paths {
                for v in walker.walk(resource, path) {
                    index_value(&def.ptype, v, &mut values);
                }
            }
            dedup(&mut values);
            entries.extend(values.drain(..).map(|value| IndexEntry {
                param: def.code.clone(),
                value,
            }));
        }
        entries
    }
}

/// Buffers for walking paths, reused across the parameters of one resource.
#[derive(Default)]
struct Walker<'a> {
    current: Vec<&'a Value>,
    next: Vec<&'a Value>,
}

impl<'a> Walker<'a> {
    /// The values at the end of `path` from `root`, arrays fanned out at every step.
    fn walk(&mut self, root: &'a Value, path: &[PathStep]) -> &[&'a Value] {
        self.current.clear();
        self.current.push(root);
        for step in path {
            self.next.clear();
            for v in &self.current {
                if let Value::Object(obj) = v {
                    children(obj, &step.name, &mut self.next);
                }
            }
            if step.ref_types.is_some() || step.child_equals.is_some() {
                self.next.retain(|v| step.accepts(v));
            }
            std::mem::swap(&mut self.current, &mut self.next);
            if self.current.is_empty() {
                break;
            }
        }
        &self.current
    }
}

/// Data types of choice elements (`value[x]`) whose values can be indexed: the suffixes tried when
/// a path names a bare choice element such as `effective`.
const CHOICE_TYPES: &[&str] = &[
    "Address",
    "Age",
    "Boolean",
    "Canonical",
    "Code",
    "CodeableConcept",
    "Coding",
    "ContactPoint",
    "Count",
    "Date",
    "DateTime",
    "Decimal",
    "Distance",
    "Duration",
    "HumanName",
    "Id",
    "Identifier",
    "Instant",
    "Integer",
    "Markdown",
    "Money",
    "Oid",
    "Period",
    "PositiveInt",
    "Quantity",
    "Range",
    "Reference",
    "String",
    "Time",
    "Timing",
    "UnsignedInt",
    "Uri",
    "Url",
    "Uuid",
];

/// Push the value(s) of element `name` of `obj`, or of its choice variants (`nameDateTime`, ...)
/// when `name` itself is absent.
fn children<'a>(obj: &'a Map<String, Value>, name: &str, out: &mut Vec<&'a Value>) {
    match obj.get(name) {
        Some(v) => fan_out(v, out),
        None => {
            for (key, v) in obj {
                if key
                    .strip_prefix(name)
                    .is_some_and(|suffix| CHOICE_TYPES.contains(&suffix))
                {
                    fan_out(v, out);
                }
            }
        }
    }
}

fn fan_out<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => out.extend(items.iter().filter(|i| !i.is_null())),
        Value::Null => {}
        _ => out.push(v),
    }
}

fn string_value(s: &str) -> IndexValue {
    IndexValue::String {
        normalized: normalize_string(s),
        exact: s.to_string(),
    }
}

/// `values` with each value once, the first of each kept in place. Found by hash: a resource
/// with thousands of values for one parameter (names, identifiers: clients send up to
/// `server.max_body_bytes`) is indexed in linear time, where comparing each value with those
/// kept so far took seconds for 40,000 names.
fn dedup(values: &mut Vec<IndexValue>) {
    if values.len() < 2 {
        return;
    }
    let mut seen: rustc_hash::FxHashMap<u64, Vec<usize>> = Default::default();
    let mut kept: Vec<IndexValue> = Vec::with_capacity(values.len());
    for v in values.drain(..) {
        let same = seen.entry(hash_of(&v)).or_default();
        if same.iter().any(|&i| kept[i] == v) {
            continue;
        }
        same.push(kept.len());
        kept.push(v);
    }
    *values = kept;
}

/// A hash that agrees with `IndexValue`'s `PartialEq` (equal values hash alike: `0.0` and `-0.0`
/// are one number).
fn hash_of(v: &IndexValue) -> u64 {
    use std::hash::{Hash, Hasher};
    let float = |f: f64| if f == 0.0 { 0u64 } else { f.to_bits() };
    let mut h = rustc_hash::FxHasher::default();
    std::mem::discriminant(v).hash(&mut h);
    match v {
        IndexValue::Token { system, code } => (system, code).hash(&mut h),
        IndexValue::String { normalized, exact } => (normalized, exact).hash(&mut h),
        IndexValue::Reference { rtype, id } => (rtype, id).hash(&mut h),
        IndexValue::Date { lo, hi } => (lo, hi).hash(&mut h),
        IndexValue::Uri(u) => u.hash(&mut h),
        IndexValue::Number(n) => float(*n).hash(&mut h),
        IndexValue::Quantity {
            value,
            system,
            code,
            unit,
        } => (float(*value), system, code, unit).hash(&mut h),
    }
    h.finish()
}

fn non_empty_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// `ContactPoint.system` codes: a token `value` next to one of these is a ContactPoint, whose
/// system is not a token system.
const CONTACT_POINT_SYSTEMS: &[&str] = &["email", "fax", "other", "pager", "phone", "sms", "url"];

/// Parts of HumanName and Address indexed for string parameters, each value on its own.
const STRING_PARTS: &[&str] = &[
    "text",
    "family",
    "given",
    "prefix",
    "suffix",
    "line",
    "city",
    "district",
    "state",
    "postalCode",
    "country",
];

/// Index one value found at the end of a path, by parameter type and JSON shape.
fn index_value(ptype: &ParamType, v: &Value, out: &mut Vec<IndexValue>) {
    match ptype {
        ParamType::Token => token_values(v, out),
        ParamType::String => match v {
            Value::String(s) => out.push(string_value(s)),
            Value::Object(obj) => {
                for part in STRING_PARTS.iter().filter_map(|k| obj.get(*k)) {
                    let strings = match part {
                        Value::Array(items) => items.as_slice(),
                        single => std::slice::from_ref(single),
                    };
                    for s in strings.iter().filter_map(Value::as_str) {
                        out.push(string_value(s));
                    }
                }
            }
            _ => {}
        },
        ParamType::Reference => match v {
            Value::String(canonical) if !canonical.is_empty() => {
                out.push(IndexValue::Uri(canonical.clone()));
            }
            Value::Object(obj) => {
                if let Some((rtype, id)) = non_empty_str(obj, "reference").and_then(parse_reference)
                {
                    let (rtype, id) = (rtype.to_string(), id.to_string());
                    out.push(IndexValue::Reference { rtype, id });
                }
            }
            _ => {}
        },
        ParamType::Date => date_values(v, out),
        ParamType::Uri => {
            if let Some(s) = v.as_str().filter(|s| !s.is_empty()) {
                out.push(IndexValue::Uri(s.to_string()));
            }
        }
        ParamType::Number => {
            if let Some(n) = v.as_f64() {
                out.push(IndexValue::Number(n));
            }
        }
        ParamType::Quantity => {
            if let Value::Object(obj) = v {
                if let Some(value) = obj.get("value").and_then(Value::as_f64) {
                    let text = |k| non_empty_str(obj, k).map(String::from);
                    let q = IndexValue::Quantity {
                        value,
                        system: text("system"),
                        code: text("code"),
                        unit: text("unit"),
                    };
                    out.push(q);
                }
            }
        }
        ParamType::Composite | ParamType::Special => {}
    }
}

fn token_values(v: &Value, out: &mut Vec<IndexValue>) {
    let token = |system: Option<&str>, code: &str| IndexValue::Token {
        system: system.map(String::from),
        code: code.to_string(),
    };
    match v {
        Value::String(s) if !s.is_empty() => out.push(token(None, s)),
        Value::Bool(b) => out.push(token(None, if *b { "true" } else { "false" })),
        Value::Object(obj) => {
            if let Some(codings) = obj.get("coding").and_then(Value::as_array) {
                // CodeableConcept: each coding; its text is not a token.
                for coding in codings.iter().filter_map(Value::as_object) {
                    if let Some(code) = non_empty_str(coding, "code") {
                        out.push(token(non_empty_str(coding, "system"), code));
                    }
                }
            } else if let Some(code) = non_empty_str(obj, "code") {
                // Coding.
                out.push(token(non_empty_str(obj, "system"), code));
            } else if let Some(value) = non_empty_str(obj, "value") {
                // Identifier (system|value) or ContactPoint (value only).
                let system =
                    non_empty_str(obj, "system").filter(|s| !CONTACT_POINT_SYSTEMS.contains(s));
                out.push(token(system, value));
            }
        }
        _ => {}
    }
}

fn date_values(v: &Value, out: &mut Vec<IndexValue>) {
    match v {
        Value::String(s) => {
            if let Some((lo, hi)) = date_range(s) {
                out.push(IndexValue::Date { lo, hi });
            }
        }
        Value::Object(obj) => {
            if obj.contains_key("start") || obj.contains_key("end") {
                if let Some((lo, hi)) = period_range(obj) {
                    out.push(IndexValue::Date { lo, hi });
                }
            } else {
                // Timing: each event, and the bounds of its repeat.
                let events = obj.get("event").and_then(Value::as_array);
                for (lo, hi) in events
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .filter_map(date_range)
                {
                    out.push(IndexValue::Date { lo, hi });
                }
                let bounds = obj
                    .get("repeat")
                    .and_then(|r| r.get("boundsPeriod"))
                    .and_then(Value::as_object);
                if let Some((lo, hi)) = bounds.and_then(period_range) {
                    out.push(IndexValue::Date { lo, hi });
                }
            }
        }
        _ => {}
    }
}

/// A Period's range; a missing end is open. `None` if a present bound is not a date.
fn period_range(obj: &Map<String, Value>) -> Option<(i64, i64)> {
    let bound = |key: &str| obj.get(key).map(|v| v.as_str().and_then(date_range));
    let lo = match bound("start") {
        None => i64::MIN,
        Some(range) => range?.0,
    };
    let hi = match bound("end") {
        None => i64::MAX,
        Some(range) => range?.1,
    };
    Some((lo, hi))
}

/// `Type/id` of a literal reference: relative (`Patient/1`) or absolute
/// (`https://x/fhir/Patient/1/_history/2`). `None` for contained (`#x`), `urn:` and other
/// references without a resource type and valid id.
fn parse_reference(reference: &str) -> Option<(&str, &str)> {
    let unversioned = match reference.find("/_history/") {
        Some(i) => &reference[..i],
        None => reference,
    };
    let (head, id) = unversioned.rsplit_once('/')?;
    let rtype = head.rsplit('/').next().unwrap_or(head);
    let type_ok = rtype.starts_with(|c: char| c.is_ascii_uppercase())
        && rtype.bytes().all(|b| b.is_ascii_alphanumeric());
    let id_ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    (type_ok && id_ok).then_some((rtype, id))
}

/// Parse a FHIR date/dateTime/instant with partial precision into the inclusive epoch-millis range
/// it covers ([`Temporal::parse_search`], [`Temporal::range_ms`]).
///
/// `2021` covers the whole year, `2021-03` the month, `2021-03-04` the day (in UTC);
/// `2021-03-04T10:00:00+01:00` the second, `...T10:00:00.123Z` the millisecond (a fraction with
/// fewer digits covers correspondingly more). A time without a zone is taken as UTC; a time without
/// seconds (allowed in search values) covers the minute.
pub fn date_range(s: &str) -> Option<(i64, i64)> {
    Temporal::parse_search(s).map(|t| t.range_ms())
}

/// The normalisation used for string indexing (so queries normalise the same way).
///
/// Lowercase; accents and other diacritics removed (`é` → `e`, `ö` → `o`, `ł` → `l`); `æ` → `ae`,
/// `ø` → `o`, `å` → `a`, `œ` → `oe`, `ß` → `ss`, `þ` → `th`; runs of whitespace become one space,
/// and leading and trailing whitespace is dropped. Other characters are kept as they are.
pub fn normalize_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            for lower in c.to_lowercase() {
                push_folded(lower, &mut out);
            }
        }
    }
    out
}

/// Push lowercase `c` without its diacritics (Latin-1 Supplement and Latin Extended-A).
fn push_folded(c: char, out: &mut String) {
    let folded = match c {
        '\u{300}'..='\u{36f}' => "", // combining diacritical marks
        'à'..='å' | '\u{100}'..='\u{105}' => "a",
        'æ' => "ae",
        'ç' | '\u{106}'..='\u{10d}' => "c",
        'ð' | '\u{10e}'..='\u{111}' => "d",
        'è'..='ë' | '\u{112}'..='\u{11b}' => "e",
        '\u{11c}'..='\u{123}' => "g",
        '\u{124}'..='\u{127}' => "h",
        'ì'..='ï' | '\u{128}'..='\u{131}' => "i",
        '\u{132}'..='\u{133}' => "ij",
        '\u{134}'..='\u{135}' => "j",
        '\u{136}'..='\u{138}' => "k",
        '\u{139}'..='\u{142}' => "l",
        'ñ' | '\u{143}'..='\u{14b}' => "n",
        'ò'..='ö' | 'ø' | '\u{14c}'..='\u{151}' => "o",
        '\u{152}'..='\u{153}' => "oe",
        '\u{154}'..='\u{159}' => "r",
        'ß' => "ss",
        '\u{15a}'..='\u{161}' | '\u{17f}' => "s",
        '\u{162}'..='\u{167}' => "t",
        'þ' => "th",
        'ù'..='ü' | '\u{168}'..='\u{173}' => "u",
        '\u{174}'..='\u{175}' => "w",
        'ý' | 'ÿ' | '\u{176}'..='\u{178}' => "y",
        '\u{179}'..='\u{17e}' => "z",
        _ => {
            out.push(c);
            return;
        }
    };
    out.push_str(folded);
}

#[cfg(test)]
mod tests;
