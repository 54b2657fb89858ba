//! A loaded CodeSystem: concepts indexed by code, the subsumption graph, property values, and
//! the evaluation of ValueSet filters against it.

use std::collections::HashSet;

use rustc_hash::FxHashMap as HashMap;

use crate::fhir::Member;
use regex::Regex;
use serde_json::Value;

use super::{opt_str, req_str};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Content {
    Complete,
    Fragment,
    Example,
    NotPresent,
    Supplement,
}

impl Content {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Content::Complete => "complete",
            Content::Fragment => "fragment",
            Content::Example => "example",
            Content::NotPresent => "not-present",
            Content::Supplement => "supplement",
        }
    }
}

#[derive(Debug)]
pub(super) struct Concept {
    pub(super) code: String,
    pub(super) display: Option<String>,
    /// Property code and value as text (codes, strings, booleans, numbers, Coding.code).
    properties: Vec<(String, String)>,
    pub(super) inactive: bool,
}

#[derive(Debug)]
pub(super) struct CodeSystem {
    pub(super) url: String,
    pub(super) version: Option<String>,
    pub(super) content: Content,
    /// `None` when the resource does not say; such systems are matched ignoring case.
    pub(super) case_sensitive: Option<bool>,
    pub(super) value_set: Option<String>,
    pub(super) version_needed: bool,
    pub(super) supplements: Option<String>,
    pub(super) concepts: Vec<Concept>,
    index: HashMap<String, usize>,
    children: Vec<Vec<usize>>,
    parents: Vec<Vec<usize>>,
    declared_properties: HashSet<String>,
    declared_filters: HashSet<String>,
}

/// A filter we cannot evaluate; the text says why.
pub(super) type Unevaluable = String;

impl CodeSystem {
    pub(super) fn parse(resource: &Value) -> Result<CodeSystem, String> {
        let url = req_str(resource, "url")?.to_owned();
        let version = opt_str(resource, "version")?.map(str::to_owned);
        let content = match opt_str(resource, "content")? {
            Some("complete") => Content::Complete,
            Some("fragment") => Content::Fragment,
            Some("example") => Content::Example,
            Some("not-present") => Content::NotPresent,
            Some("supplement") => Content::Supplement,
            Some(other) => return Err(format!("CodeSystem {url}: unknown content '{other}'")),
            None => return Err(format!("CodeSystem {url}: content is missing")),
        };
        let case_sensitive = match resource.member("caseSensitive") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(format!("CodeSystem {url}: caseSensitive is not a boolean")),
        };
        let version_needed = matches!(resource.member("versionNeeded"), Some(Value::Bool(true)));
        let value_set = opt_str(resource, "valueSet")?.map(str::to_owned);
        let supplements = opt_str(resource, "supplements")?.map(str::to_owned);

        let mut declared_properties = HashSet::new();
        for p in array(resource, "property")? {
            declared_properties.insert(req_str(p, "code")?.to_owned());
        }
        let mut declared_filters = HashSet::new();
        for f in array(resource, "filter")? {
            declared_filters.insert(req_str(f, "code")?.to_owned());
        }

        let fold = case_sensitive != Some(true);
        let mut cs = CodeSystem {
            url,
            version,
            content,
            case_sensitive,
            value_set,
            version_needed,
            supplements,
            concepts: Vec::new(),
            index: HashMap::default(),
            children: Vec::new(),
            parents: Vec::new(),
            declared_properties,
            declared_filters,
        };

        // Walk nested concepts without recursion; remember (parent, child) pairs.
        let mut nesting: Vec<(usize, usize)> = Vec::new();
        let mut stack: Vec<(Option<usize>, &Value)> = Vec::new();
        for c in array(resource, "concept")?.iter().rev() {
            stack.push((None, c));
        }
        while let Some((parent, c)) = stack.pop() {
            let code = req_str(c, "code")
                .map_err(|e| format!("CodeSystem {}: concept {e}", cs.url))?
                .to_owned();
            let display = opt_str(c, "display")?.map(str::to_owned);
            let mut properties = Vec::new();
            for p in array(c, "property")? {
                let pcode = req_str(p, "code")?.to_owned();
                if let Some(v) = property_value(p) {
                    properties.push((pcode, v));
                }
            }
            let inactive = properties.iter().any(|(k, v)| {
                (k == "inactive" && v == "true")
                    || (k == "status" && (v == "retired" || v == "inactive"))
            });
            let key = if fold {
                code.to_lowercase()
            } else {
                code.clone()
            };
            let id = match cs.index.get(&key) {
                // A code listed twice (e.g. under two parents) is one concept.
                Some(&id) => id,
                None => {
                    let id = cs.concepts.len();
                    cs.concepts.push(Concept {
                        code,
                        display,
                        properties,
                        inactive,
                    });
                    cs.index.insert(key, id);
                    id
                }
            };
            if let Some(p) = parent {
                nesting.push((p, id));
            }
            for child in array(c, "concept")?.iter().rev() {
                stack.push((Some(id), child));
            }
        }

        let n = cs.concepts.len();
        cs.children = vec![Vec::new(); n];
        cs.parents = vec![Vec::new(); n];
        let mut edges = nesting;
        for (id, concept) in cs.concepts.iter().enumerate() {
            for (k, v) in &concept.properties {
                let related = match k.as_str() {
                    "parent" | "subsumedBy" => cs.lookup(v).map(|p| (p, id)),
                    "child" => cs.lookup(v).map(|ch| (id, ch)),
                    _ => None,
                };
                edges.extend(related);
            }
        }
        edges.sort_unstable();
        edges.dedup();
        for (p, c) in edges {
            if p != c {
                cs.children[p].push(c);
                cs.parents[c].push(p);
            }
        }
        Ok(cs)
    }

    pub(super) fn fold_case(&self) -> bool {
        self.case_sensitive != Some(true)
    }

    pub(super) fn lookup(&self, code: &str) -> Option<usize> {
        if self.fold_case() {
            self.index.get(&code.to_lowercase()).copied()
        } else {
            self.index.get(code).copied()
        }
    }

    pub(super) fn describe(&self) -> String {
        match &self.version {
            Some(v) => format!("CodeSystem {}|{v}", self.url),
            None => format!("CodeSystem {}", self.url),
        }
    }

    /// Concept ids selected by one filter, or why the filter cannot be evaluated.
    pub(super) fn filter(
        &self,
        property: &str,
        op: &str,
        value: &str,
    ) -> Result<Vec<usize>, Unevaluable> {
        let all = 0..self.concepts.len();
        let list = || -> Vec<usize> {
            value
                .split(',')
                .filter_map(|c| self.lookup(c.trim()))
                .collect()
        };
        let unsupported = || {
            Err(format!(
                "the filter '{property} {op} {value}' is not supported on {}",
                self.describe()
            ))
        };
        match property {
            "concept" | "code" => match op {
                "is-a" => Ok(self.descendants(value, true)),
                "descendent-of" => Ok(self.descendants(value, false)),
                "is-not-a" => {
                    let excluded: HashSet<usize> =
                        self.descendants(value, true).into_iter().collect();
                    Ok(all.filter(|i| !excluded.contains(i)).collect())
                }
                "generalizes" => Ok(self.ancestors(value)),
                "=" => Ok(self.lookup(value).into_iter().collect()),
                "in" => Ok(list()),
                "not-in" => {
                    let excluded: HashSet<usize> = list().into_iter().collect();
                    Ok(all.filter(|i| !excluded.contains(i)).collect())
                }
                "regex" => {
                    let re = full_match_regex(value)?;
                    Ok(all
                        .filter(|&i| re.is_match(&self.concepts[i].code))
                        .collect())
                }
                "exists" => match value {
                    "true" => Ok(all.collect()),
                    "false" => Ok(Vec::new()),
                    _ => unsupported(),
                },
                _ => unsupported(),
            },
            "parent" | "child" => {
                let related = |i: usize| -> &Vec<usize> {
                    if property == "parent" {
                        &self.parents[i]
                    } else {
                        &self.children[i]
                    }
                };
                match op {
                    "=" | "in" => {
                        let targets: HashSet<usize> = list().into_iter().collect();
                        Ok(all
                            .filter(|&i| related(i).iter().any(|r| targets.contains(r)))
                            .collect())
                    }
                    "exists" => {
                        let want = match value {
                            "true" => true,
                            "false" => false,
                            _ => return unsupported(),
                        };
                        Ok(all.filter(|&i| related(i).is_empty() != want).collect())
                    }
                    _ => unsupported(),
                }
            }
            _ => {
                if self.declared_filters.contains(property)
                    && !self.declared_properties.contains(property)
                {
                    return Err(format!(
                        "the filter '{property}' defined by {} has no machine-readable meaning",
                        self.describe()
                    ));
                }
                let used = self
                    .concepts
                    .iter()
                    .any(|c| c.properties.iter().any(|(k, _)| k == property));
                if !self.declared_properties.contains(property) && !used {
                    return Err(format!(
                        "{} defines no property '{property}' to filter on",
                        self.describe()
                    ));
                }
                let values = |i: usize| {
                    self.concepts[i]
                        .properties
                        .iter()
                        .filter(move |(k, _)| k == property)
                        .map(|(_, v)| v.as_str())
                };
                match op {
                    "=" => Ok(all.filter(|&i| values(i).any(|v| v == value)).collect()),
                    "in" | "not-in" => {
                        let wanted: HashSet<&str> = value.split(',').map(str::trim).collect();
                        let keep = op == "in";
                        Ok(all
                            .filter(|&i| values(i).any(|v| wanted.contains(v)) == keep)
                            .collect())
                    }
                    "regex" => {
                        let re = full_match_regex(value)?;
                        Ok(all.filter(|&i| values(i).any(|v| re.is_match(v))).collect())
                    }
                    "exists" => {
                        let want = match value {
                            "true" => true,
                            "false" => false,
                            _ => return unsupported(),
                        };
                        Ok(all
                            .filter(|&i| values(i).next().is_some() == want)
                            .collect())
                    }
                    _ => unsupported(),
                }
            }
        }
    }

    /// The concept and everything below it (or only below it), following all hierarchy edges.
    fn descendants(&self, code: &str, include_self: bool) -> Vec<usize> {
        self.walk(code, include_self, |i| &self.children[i])
    }

    fn ancestors(&self, code: &str) -> Vec<usize> {
        self.walk(code, true, |i| &self.parents[i])
    }

    fn walk<'a>(
        &'a self,
        code: &str,
        include_self: bool,
        next: impl Fn(usize) -> &'a Vec<usize>,
    ) -> Vec<usize> {
        let Some(start) = self.lookup(code) else {
            return Vec::new();
        };
        let mut seen = vec![false; self.concepts.len()];
        let mut out = Vec::new();
        let mut stack = vec![start];
        seen[start] = true;
        while let Some(i) = stack.pop() {
            if i != start || include_self {
                out.push(i);
            }
            for &j in next(i) {
                if !seen[j] {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
        out
    }
}

/// A regex that must match the whole value, with limits so a hostile pattern stays cheap.
pub(super) fn full_match_regex(pattern: &str) -> Result<Regex, Unevaluable> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map_err(|e| format!("the regex filter '{pattern}' is not a valid pattern: {e}"))
}

fn property_value(p: &Value) -> Option<String> {
    for (k, v) in p.as_object()? {
        if !k.starts_with("value") {
            continue;
        }
        return match v {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            Value::Object(o) => o.member("code").and_then(Value::as_str).map(str::to_owned),
            _ => None,
        };
    }
    None
}

/// An optional array member; anything else than an array or absence is an error.
pub(super) fn array<'a>(v: &'a Value, key: &str) -> Result<&'a [Value], String> {
    match v.member(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(format!("'{key}' is not an array")),
    }
}
