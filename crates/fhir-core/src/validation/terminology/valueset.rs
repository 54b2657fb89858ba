//! ValueSet definitions and their evaluation into [`CodeSet`]s.

use std::sync::{Arc, OnceLock};

use crate::fhir::Member;
use serde_json::Value;

use super::codesystem::{array, full_match_regex, CodeSystem, Content};
use super::external::{describe, Syntax};
use super::set::{CodeSet, Op, Part, Rule, Tri};
use super::{opt_str, req_str, split_canonical, Terminology};

/// Imports nested deeper than this are reported as not evaluable.
const MAX_IMPORT_DEPTH: usize = 32;
/// Imported value sets evaluated for one top-level value set, at most (guards against
/// import graphs built to explode).
const MAX_EVALUATIONS: usize = 1_000;

/// State of one top-level evaluation.
struct Walk {
    stack: Vec<String>,
    budget: usize,
    /// Set when a result was cut short by a cycle or a limit.
    context_dependent: bool,
}

#[derive(Debug)]
pub(super) struct ValueSet {
    pub(super) url: String,
    pub(super) version: Option<String>,
    compose: Option<Compose>,
    expansion: Option<Expansion>,
    /// Stands for `CodeSystem.valueSet` of a code system; a real ValueSet replaces it.
    pub(super) synthetic: bool,
    pub(super) cache: OnceLock<CodeSet>,
    /// Set when the cached result does not depend on the evaluation it was computed in
    /// (no cycle or limit was hit), so other value sets may reuse it.
    pub(super) imports_ok: OnceLock<()>,
}

#[derive(Debug)]
struct Compose {
    include: Vec<Clause>,
    exclude: Vec<Clause>,
    inactive: Option<bool>,
}

#[derive(Debug)]
struct Clause {
    system: Option<String>,
    version: Option<String>,
    concepts: Vec<String>,
    filters: Vec<Filter>,
    value_sets: Vec<String>,
}

#[derive(Debug)]
struct Filter {
    property: String,
    op: String,
    value: String,
}

#[derive(Debug)]
struct Expansion {
    codes: Vec<(String, String)>,
    /// The expansion does not list every member (paged or truncated).
    partial: bool,
}

impl ValueSet {
    pub(super) fn parse(resource: &Value) -> Result<ValueSet, String> {
        let url = req_str(resource, "url")?.to_owned();
        let version = opt_str(resource, "version")?.map(str::to_owned);
        let ctx = |e: String| format!("ValueSet {url}: {e}");
        let compose = match resource.member("compose") {
            None | Some(Value::Null) => None,
            Some(c) => Some(Compose::parse(c).map_err(ctx)?),
        };
        let expansion = match resource.member("expansion") {
            None | Some(Value::Null) => None,
            Some(e) => Some(Expansion::parse(e).map_err(ctx)?),
        };
        Ok(ValueSet {
            url,
            version,
            compose,
            expansion,
            synthetic: false,
            cache: OnceLock::new(),
            imports_ok: OnceLock::new(),
        })
    }

    /// The implicit value set of all codes of a code system (`CodeSystem.valueSet`).
    pub(super) fn for_code_system(canonical: &str, cs: &CodeSystem) -> ValueSet {
        let (url, version) = split_canonical(canonical);
        ValueSet {
            url: url.to_owned(),
            version: version.map(str::to_owned).or_else(|| cs.version.clone()),
            compose: Some(Compose {
                include: vec![Clause {
                    system: Some(cs.url.clone()),
                    version: None,
                    concepts: Vec::new(),
                    filters: Vec::new(),
                    value_sets: Vec::new(),
                }],
                exclude: Vec::new(),
                inactive: None,
            }),
            expansion: None,
            synthetic: true,
            cache: OnceLock::new(),
            imports_ok: OnceLock::new(),
        }
    }

    pub(super) fn describe(&self) -> String {
        match &self.version {
            Some(v) => format!("{}|{v}", self.url),
            None => self.url.clone(),
        }
    }
}

impl Compose {
    fn parse(c: &Value) -> Result<Compose, String> {
        let clauses = |key: &str| -> Result<Vec<Clause>, String> {
            array(c, key)?.iter().map(Clause::parse).collect()
        };
        let inactive = match c.member("inactive") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err("compose.inactive is not a boolean".into()),
        };
        Ok(Compose {
            include: clauses("include")?,
            exclude: clauses("exclude")?,
            inactive,
        })
    }
}

impl Clause {
    fn parse(c: &Value) -> Result<Clause, String> {
        let system = opt_str(c, "system")?.map(str::to_owned);
        let version = opt_str(c, "version")?.map(str::to_owned);
        let mut concepts = Vec::new();
        for concept in array(c, "concept")? {
            concepts.push(req_str(concept, "code")?.to_owned());
        }
        let mut filters = Vec::new();
        for f in array(c, "filter")? {
            filters.push(Filter {
                property: req_str(f, "property")?.to_owned(),
                op: req_str(f, "op")?.to_owned(),
                value: req_str(f, "value")?.to_owned(),
            });
        }
        let mut value_sets = Vec::new();
        for v in array(c, "valueSet")? {
            match v.as_str() {
                Some(s) => value_sets.push(s.to_owned()),
                None => return Err("include.valueSet holds a non-string".into()),
            }
        }
        if system.is_none() && value_sets.is_empty() {
            return Err("an include/exclude has neither system nor valueSet".into());
        }
        if system.is_none() && !(concepts.is_empty() && filters.is_empty()) {
            return Err("an include/exclude lists concepts or filters without a system".into());
        }
        Ok(Clause {
            system,
            version,
            concepts,
            filters,
            value_sets,
        })
    }
}

impl Expansion {
    fn parse(e: &Value) -> Result<Expansion, String> {
        let mut codes = Vec::new();
        let mut stack: Vec<&Value> = array(e, "contains")?.iter().collect();
        while let Some(c) = stack.pop() {
            if let (Some(system), Some(code)) = (opt_str(c, "system")?, opt_str(c, "code")?) {
                codes.push((system.to_owned(), code.to_owned()));
            }
            stack.extend(array(c, "contains")?.iter());
        }
        let total = e.member("total").and_then(Value::as_u64);
        let offset = e.member("offset").and_then(Value::as_u64).unwrap_or(0);
        let partial = offset > 0 || total.is_some_and(|t| t > codes.len() as u64);
        Ok(Expansion { codes, partial })
    }
}

impl Terminology {
    /// The evaluated content of a ValueSet, computed on first use.
    pub(super) fn code_set<'a>(&'a self, vs: &'a ValueSet) -> &'a CodeSet {
        if let Some(set) = vs.cache.get() {
            return set;
        }
        // One evaluation at a time: imports are evaluated while the lock is held, so two
        // threads never wait on each other's half-built value sets.
        let _guard = self
            .evaluating
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(set) = vs.cache.get() {
            return set;
        }
        let mut walk = Walk {
            stack: vec![vs.describe()],
            budget: MAX_EVALUATIONS,
            context_dependent: false,
        };
        let set = self.compute(vs, &mut walk);
        let set = vs.cache.get_or_init(|| set);
        if !walk.context_dependent {
            vs.imports_ok.get_or_init(|| ());
        }
        set
    }

    fn compute(&self, vs: &ValueSet, walk: &mut Walk) -> CodeSet {
        let from_expansion = || vs.expansion.as_ref().map(|e| self.expansion_set(vs, e));
        let Some(compose) = &vs.compose else {
            return from_expansion().unwrap_or_else(|| {
                CodeSet::unknown(format!(
                    "ValueSet {} has neither a compose nor an expansion",
                    vs.describe()
                ))
            });
        };
        let mut set = CodeSet::empty();
        for clause in &compose.include {
            let part = self.clause(clause, compose.inactive, walk);
            set = CodeSet::combine(Op::Union, &set, &part);
        }
        for clause in &compose.exclude {
            let part = self.clause(clause, compose.inactive, walk);
            set = CodeSet::combine(Op::Minus, &set, &part);
        }
        if set.maybe_reason().is_some() {
            if let Some(expanded) = from_expansion() {
                return expanded;
            }
        }
        set
    }

    fn expansion_set(&self, vs: &ValueSet, e: &Expansion) -> CodeSet {
        let mut set = if e.partial {
            CodeSet::unknown(format!(
                "the expansion shipped with ValueSet {} is incomplete",
                vs.describe()
            ))
        } else {
            CodeSet::empty()
        };
        for (system, code) in &e.codes {
            set.part_mut(system, self.fold_case(system))
                .set(code, Tri::Yes);
        }
        set
    }

    fn clause(&self, clause: &Clause, inactive: Option<bool>, walk: &mut Walk) -> CodeSet {
        let mut sets = Vec::new();
        if let Some(system) = &clause.system {
            let part = self.system_part(system, clause, inactive);
            sets.push(CodeSet::single(system, part));
        }
        // Several imports in one include: their union (see the module docs).
        if !clause.value_sets.is_empty() {
            let mut imported = CodeSet::empty();
            for canonical in &clause.value_sets {
                let set = self.import(canonical, walk);
                imported = CodeSet::combine(Op::Union, &imported, &set);
            }
            sets.push(imported);
        }
        let mut iter = sets.into_iter();
        let first = iter.next().unwrap_or_else(CodeSet::empty);
        iter.fold(first, |acc, s| CodeSet::combine(Op::Intersect, &acc, &s))
    }

    /// An imported value set. Results that did not run into a cycle, the depth limit or
    /// the evaluation budget do not depend on where evaluation started and are cached; the
    /// others are recomputed in context, so answers never depend on the order of first use.
    fn import(&self, canonical: &str, walk: &mut Walk) -> CodeSet {
        let vs = match self.find_value_set(canonical) {
            Ok(vs) => vs,
            Err(reason) => return CodeSet::unknown(reason),
        };
        if let (Some(set), Some(())) = (vs.cache.get(), vs.imports_ok.get()) {
            return set.clone();
        }
        let key = vs.describe();
        if walk.stack.contains(&key) {
            walk.context_dependent = true;
            let mut path = walk.stack.clone();
            path.push(key);
            return CodeSet::unknown(format!(
                "ValueSet imports form a cycle ({})",
                path.join(" -> ")
            ));
        }
        if walk.stack.len() >= MAX_IMPORT_DEPTH || walk.budget == 0 {
            walk.context_dependent = true;
            return CodeSet::unknown(format!(
                "ValueSet imports are nested too deeply or too often to evaluate (at {key})"
            ));
        }
        walk.budget -= 1;
        let outer = std::mem::replace(&mut walk.context_dependent, false);
        walk.stack.push(key);
        let set = self.compute(vs, walk);
        walk.stack.pop();
        if !walk.context_dependent && vs.cache.get().is_none() {
            vs.cache.get_or_init(|| set.clone());
            vs.imports_ok.get_or_init(|| ());
        }
        walk.context_dependent |= outer;
        set
    }

    /// Membership for the codes of one system in one include/exclude.
    fn system_part(&self, system: &str, clause: &Clause, inactive: Option<bool>) -> Part {
        let fold = self.fold_case(system);
        let cs = match self.usable_code_system(system, clause.version.as_deref()) {
            Ok(cs) => cs,
            Err(why) => return self.unheld_part(system, fold, clause, &why),
        };
        let keep = |id: usize| inactive != Some(false) || !cs.concepts[id].inactive;
        let rest = if cs.content == Content::Complete {
            Tri::No
        } else {
            Tri::maybe(format!(
                "{} has content '{}', so codes it does not list cannot be judged",
                cs.describe(),
                cs.content.as_str()
            ))
        };
        let mut parts = Vec::new();
        if !clause.concepts.is_empty() {
            let mut part = Part::new(fold, Rule::Const(Tri::No));
            for code in &clause.concepts {
                match cs.lookup(code) {
                    Some(id) if keep(id) => part.set(&cs.concepts[id].code, Tri::Yes),
                    Some(_) => {}
                    // Not (yet) in a partial code system: the value set still names it.
                    None if cs.content != Content::Complete => part.set(code, Tri::Yes),
                    None => {}
                }
            }
            parts.push(part);
        }
        for f in &clause.filters {
            match cs.filter(&f.property, &f.op, &f.value) {
                Ok(ids) => {
                    let mut part = Part::new(fold, Rule::Const(rest.clone()));
                    for id in ids {
                        let value = if keep(id) { Tri::Yes } else { Tri::No };
                        part.set(&cs.concepts[id].code, value);
                    }
                    parts.push(part);
                }
                Err(reason) => parts.push(Part::new(fold, Rule::Const(Tri::maybe(reason)))),
            }
        }
        if parts.is_empty() {
            let mut part = Part::new(fold, Rule::Const(rest));
            for (id, c) in cs.concepts.iter().enumerate() {
                part.set(&c.code, if keep(id) { Tri::Yes } else { Tri::No });
            }
            parts.push(part);
        }
        intersect_parts(parts)
    }

    /// An include of a system whose codes we do not hold: exact where the definition lists
    /// codes, syntactic where we know the grammar, otherwise `Maybe`.
    fn unheld_part(&self, system: &str, fold: bool, clause: &Clause, why: &str) -> Part {
        let mut parts = Vec::new();
        if !clause.concepts.is_empty() {
            let mut part = Part::new(fold, Rule::Const(Tri::No));
            for code in &clause.concepts {
                part.set(code, Tri::Yes);
            }
            parts.push(part);
        }
        for f in &clause.filters {
            let maybe = Tri::maybe(format!(
                "{why}, so the filter '{} {} {}' cannot be evaluated",
                f.property, f.op, f.value
            ));
            let on_code = f.property == "concept" || f.property == "code";
            let part = match f.op.as_str() {
                "is-a" | "generalizes" if on_code => {
                    let mut p = Part::new(fold, Rule::Const(maybe));
                    p.set(&f.value, Tri::Yes);
                    p
                }
                "descendent-of" | "is-not-a" if on_code => {
                    let mut p = Part::new(fold, Rule::Const(maybe));
                    p.set(&f.value, Tri::No);
                    p
                }
                "=" | "in" | "not-in" if on_code => {
                    let listed = if f.op == "not-in" { Tri::No } else { Tri::Yes };
                    let others = if f.op == "not-in" { maybe } else { Tri::No };
                    let mut p = Part::new(fold, Rule::Const(others));
                    for code in f.value.split(',') {
                        p.set(code.trim(), listed.clone());
                    }
                    p
                }
                "regex" if on_code => match full_match_regex(&f.value) {
                    Ok(re) => Part::new(fold, Rule::Matches(Arc::new(re), maybe)),
                    Err(e) => Part::new(fold, Rule::Const(Tri::maybe(e))),
                },
                _ => Part::new(fold, Rule::Const(maybe)),
            };
            parts.push(part);
        }
        if parts.is_empty() {
            let rule = match Syntax::for_system(system) {
                Some(syntax) => Rule::Syntax(syntax),
                _ => Rule::Const(Tri::maybe(format!(
                    "{why}, so 'all codes of {}' cannot be enumerated",
                    describe(system)
                ))),
            };
            parts.push(Part::new(fold, rule));
        }
        intersect_parts(parts)
    }
}

fn intersect_parts(parts: Vec<Part>) -> Part {
    let mut iter = parts.into_iter();
    let first = iter
        .next()
        .unwrap_or_else(|| Part::new(false, Rule::Const(Tri::No)));
    iter.fold(first, |acc, p| Part::combine(Op::Intersect, &acc, &p))
}
