//! Three-valued code sets: the evaluated form of a ValueSet.
//!
//! A set answers, per `(system, code)`, `Yes`, `No` or `Maybe(reason)`. Each system has a
//! [`Part`]: an explicit table of codes plus a [`Rule`] for every code not in the table. Set
//! operations (union, intersection, difference) combine tables entry by entry and rules
//! lazily, so results stay exact wherever the inputs are exact.

// FxHash: membership lookups are on the validation hot path.
use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use regex::Regex;

use super::external::Syntax;

const MAX_RULE_DEPTH: usize = 64;

/// One membership answer inside the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Tri {
    Yes,
    No,
    Maybe(Arc<str>),
}

impl Tri {
    pub(super) fn maybe(reason: impl Into<String>) -> Tri {
        Tri::Maybe(Arc::from(reason.into()))
    }
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Op {
    Union,
    Intersect,
    Minus,
}

impl Op {
    fn apply(self, a: &Tri, b: &Tri) -> Tri {
        use Tri::*;
        match self {
            Op::Union => match (a, b) {
                (Yes, _) | (_, Yes) => Yes,
                (No, No) => No,
                (Maybe(r), _) | (_, Maybe(r)) => Maybe(r.clone()),
            },
            Op::Intersect => match (a, b) {
                (No, _) | (_, No) => No,
                (Yes, Yes) => Yes,
                (Maybe(r), _) | (_, Maybe(r)) => Maybe(r.clone()),
            },
            Op::Minus => match (a, b) {
                (No, _) | (_, Yes) => No,
                (Yes, No) => Yes,
                (Maybe(r), _) | (_, Maybe(r)) => Maybe(r.clone()),
            },
        }
    }
}

/// The answer for codes that a [`Part`] does not list explicitly.
#[derive(Clone, Debug)]
pub(super) enum Rule {
    Const(Tri),
    /// A syntactic check for a code system that cannot be enumerated (UCUM, BCP-47, BCP-13).
    Syntax(Syntax),
    /// Codes matching the pattern get the given answer; all others are `No`.
    Matches(Arc<Regex>, Tri),
    Combine(Op, Box<Rule>, Box<Rule>),
}

impl Rule {
    fn eval(&self, code: &str) -> Tri {
        match self {
            Rule::Const(t) => t.clone(),
            Rule::Syntax(s) => s.check(code),
            Rule::Matches(re, t) => {
                if re.is_match(code) {
                    t.clone()
                } else {
                    Tri::No
                }
            }
            Rule::Combine(op, a, b) => op.apply(&a.eval(code), &b.eval(code)),
        }
    }

    fn combine(op: Op, a: &Rule, b: &Rule) -> Rule {
        match (a, b) {
            (Rule::Const(x), Rule::Const(y)) => Rule::Const(op.apply(x, y)),
            // Short-cuts that keep rule trees small.
            (Rule::Const(Tri::No), other) | (other, Rule::Const(Tri::No))
                if matches!(op, Op::Union) =>
            {
                other.clone()
            }
            (_, Rule::Const(Tri::No)) if matches!(op, Op::Minus) => a.clone(),
            (Rule::Const(Tri::No), _) if matches!(op, Op::Minus | Op::Intersect) => {
                Rule::Const(Tri::No)
            }
            (_, Rule::Const(Tri::No)) if matches!(op, Op::Intersect) => Rule::Const(Tri::No),
            // Keep evaluation (and drop) recursion shallow whatever a resource contains.
            _ if a.depth().max(b.depth()) >= MAX_RULE_DEPTH => Rule::Const(Tri::maybe(
                "the value set combines too many pattern-based rules to evaluate",
            )),
            _ => Rule::Combine(op, Box::new(a.clone()), Box::new(b.clone())),
        }
    }

    /// The first reason this rule could answer `Maybe`, if it can.
    fn maybe_reason(&self) -> Option<Arc<str>> {
        match self {
            Rule::Const(Tri::Maybe(r)) | Rule::Matches(_, Tri::Maybe(r)) => Some(r.clone()),
            Rule::Const(_) | Rule::Matches(..) => None,
            Rule::Syntax(s) => s.maybe_reason().map(Arc::from),
            Rule::Combine(_, a, b) => a.maybe_reason().or_else(|| b.maybe_reason()),
        }
    }

    fn depth(&self) -> usize {
        match self {
            Rule::Combine(_, a, b) => 1 + a.depth().max(b.depth()),
            _ => 0,
        }
    }
}

/// Membership for the codes of one system.
#[derive(Clone, Debug)]
pub(super) struct Part {
    /// Keys are codes, lower-cased when `fold_case` is set.
    explicit: HashMap<Box<str>, Tri>,
    rule: Rule,
    fold_case: bool,
}

impl Part {
    pub(super) fn new(fold_case: bool, rule: Rule) -> Part {
        Part {
            explicit: HashMap::default(),
            rule,
            fold_case,
        }
    }

    pub(super) fn set(&mut self, code: &str, value: Tri) {
        let key = if self.fold_case {
            code.to_lowercase()
        } else {
            code.to_owned()
        };
        self.explicit.insert(key.into_boxed_str(), value);
    }

    pub(super) fn eval(&self, code: &str) -> Tri {
        let hit = if self.fold_case && code.chars().any(|c| c.is_uppercase()) {
            self.explicit.get(code.to_lowercase().as_str())
        } else {
            self.explicit.get(code)
        };
        match hit {
            Some(t) => t.clone(),
            None => self.rule.eval(code),
        }
    }

    fn eval_key(&self, key: &str) -> Tri {
        match self.explicit.get(key) {
            Some(t) => t.clone(),
            None => self.rule.eval(key),
        }
    }

    pub(super) fn combine(op: Op, a: &Part, b: &Part) -> Part {
        let fold_case = a.fold_case || b.fold_case;
        let mut explicit = HashMap::with_capacity_and_hasher(
            a.explicit.len().max(b.explicit.len()),
            Default::default(),
        );
        for key in a.explicit.keys().chain(b.explicit.keys()) {
            if explicit.contains_key(key) {
                continue;
            }
            let value = op.apply(&a.eval_key(key), &b.eval_key(key));
            explicit.insert(key.clone(), value);
        }
        let rule = Rule::combine(op, &a.rule, &b.rule);
        // Entries equal to a constant rule carry no information.
        if let Rule::Const(c) = &rule {
            explicit.retain(|_, v| v != c);
        }
        Part {
            explicit,
            rule,
            fold_case,
        }
    }

    /// The member codes, when they are an explicit list of at most `limit` (no rule).
    fn listed(&self, limit: usize) -> Option<Vec<String>> {
        if !matches!(&self.rule, Rule::Const(Tri::No)) {
            return None;
        }
        // stop at the first code past the limit: large sets are not listed
        let mut yes = Vec::new();
        for (k, _) in self.explicit.iter().filter(|(_, t)| **t == Tri::Yes) {
            if yes.len() == limit {
                return None;
            }
            yes.push(k.to_string());
        }
        Some(yes)
    }

    fn maybe_reason(&self) -> Option<Arc<str>> {
        self.explicit
            .values()
            .find_map(|t| match t {
                Tri::Maybe(r) => Some(r.clone()),
                _ => None,
            })
            .or_else(|| self.rule.maybe_reason())
    }

    pub(super) fn yes_count(&self) -> usize {
        self.explicit.values().filter(|t| **t == Tri::Yes).count()
    }
}

/// The evaluated content of a ValueSet.
#[derive(Clone, Debug)]
pub(super) struct CodeSet {
    systems: HashMap<String, Part>,
    /// The answer for systems without a part.
    other: Tri,
}

impl CodeSet {
    pub(super) fn empty() -> CodeSet {
        CodeSet {
            systems: HashMap::default(),
            other: Tri::No,
        }
    }

    pub(super) fn unknown(reason: impl Into<String>) -> CodeSet {
        CodeSet {
            systems: HashMap::default(),
            other: Tri::maybe(reason),
        }
    }

    pub(super) fn single(system: &str, part: Part) -> CodeSet {
        let mut systems = HashMap::default();
        systems.insert(system.to_owned(), part);
        CodeSet {
            systems,
            other: Tri::No,
        }
    }

    pub(super) fn part_mut(&mut self, system: &str, fold_case: bool) -> &mut Part {
        let other = self.other.clone();
        self.systems
            .entry(system.to_owned())
            .or_insert_with(|| Part::new(fold_case, Rule::Const(other)))
    }

    /// Every member code (sorted), when the set is an explicit list of at most `limit`.
    pub(super) fn listed(&self, limit: usize) -> Option<Vec<String>> {
        if self.other != Tri::No {
            return None;
        }
        let mut all = Vec::new();
        for part in self.systems.values() {
            all.extend(part.listed(limit)?);
            if all.len() > limit {
                return None;
            }
        }
        all.sort();
        Some(all)
    }

    pub(super) fn eval(&self, system: &str, code: &str) -> Tri {
        match self.systems.get(system) {
            Some(part) => part.eval(code),
            None => self.other.clone(),
        }
    }

    /// Membership of a bare code (no system): a member of any system counts.
    pub(super) fn eval_any(&self, code: &str) -> Tri {
        let mut answer = self.other.clone();
        for part in self.systems.values() {
            answer = Op::Union.apply(&answer, &part.eval(code));
            if answer == Tri::Yes {
                break;
            }
        }
        answer
    }

    pub(super) fn has_system(&self, system: &str) -> bool {
        self.systems.contains_key(system)
    }

    pub(super) fn combine(op: Op, a: &CodeSet, b: &CodeSet) -> CodeSet {
        let mut systems = HashMap::default();
        for name in a.systems.keys().chain(b.systems.keys()) {
            if systems.contains_key(name) {
                continue;
            }
            let pa = a.part_or_default(name);
            let pb = b.part_or_default(name);
            systems.insert(name.clone(), Part::combine(op, &pa, &pb));
        }
        CodeSet {
            systems,
            other: op.apply(&a.other, &b.other),
        }
    }

    fn part_or_default(&self, system: &str) -> Part {
        match self.systems.get(system) {
            Some(p) => p.clone(),
            None => Part::new(false, Rule::Const(self.other.clone())),
        }
    }

    /// `None` when every answer is `Yes` or `No`; otherwise why some answer is `Maybe`.
    pub(super) fn maybe_reason(&self) -> Option<Arc<str>> {
        if let Tri::Maybe(r) = &self.other {
            return Some(r.clone());
        }
        let mut names: Vec<&String> = self.systems.keys().collect();
        names.sort();
        names
            .into_iter()
            .find_map(|n| self.systems.get(n).and_then(Part::maybe_reason))
    }

    /// Number of codes known to be members (for statistics).
    pub(super) fn yes_count(&self) -> usize {
        self.systems.values().map(Part::yes_count).sum()
    }
}
