//! Constraint invariants: every `constraint.expression` of the definitions, compiled once with our
//! FHIRPath engine and evaluated where the element occurs. The rules in [`NATIVE`] are checked
//! by the walk itself (each says why). Messages come from
//! the loaded definition's own text when a package carries it, else from our own table for the
//! base specification's keys, else they name the key and its expression.

use std::sync::Arc;

use crate::fhir::Member;
use rustc_hash::FxHashMap;
use serde_json::Value;

use super::definitions::Definitions;
use super::model::{Constraint, Element, Profile};
use super::terminology::Membership;
use super::walk::{Pass, Run};
use super::Validator;
use crate::fhir::outcome::Severity;
use crate::fhirpath::{self, EvalContext, Hooks, Item, Node, SnapshotModel};

/// `conformsTo()` and `memberOf()` answered by the validator and its terminology.
struct ValidatorHooks<'v> {
    v: &'v Validator,
    /// Set when `resolve()` met a reference that is neither contained nor in the Bundle.
    unresolved: std::sync::atomic::AtomicBool,
}

impl<'a> Hooks<'a> for ValidatorHooks<'_> {
    fn resolve(&self, _reference: &str) -> Option<&'a Value> {
        self.unresolved
            .store(true, std::sync::atomic::Ordering::Relaxed);
        None
    }

    fn member_of(&self, item: &Item<'a>, value_set: &str) -> Option<bool> {
        let t = &self.v.terminology;
        let answer = |m: Membership| match m {
            Membership::Member => Some(true),
            Membership::NotMember { .. } => Some(false),
            Membership::Unknown { .. } => None,
        };
        let coding = |c: &Value| {
            let code = c.member("code")?.as_str()?;
            answer(t.check_code(value_set, c.member("system").and_then(Value::as_str), code))
        };
        match item {
            Item::String(code) => answer(t.check_code(value_set, None, code)),
            Item::Node(n) => match n.value? {
                Value::String(code) => answer(t.check_code(value_set, None, code)),
                v if v.member("coding").is_some() => {
                    let results: Vec<Option<bool>> = v["coding"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(coding)
                        .collect();
                    if results.contains(&Some(true)) {
                        Some(true)
                    } else if results.iter().all(|r| *r == Some(false)) {
                        Some(false)
                    } else {
                        None
                    }
                }
                v => coding(v),
            },
            _ => None,
        }
    }

    fn conforms_to(&self, item: &Item<'a>, profile: &str) -> Result<Option<bool>, String> {
        let Some(json) = item.as_node().and_then(|n| n.value) else {
            return Ok(None);
        };
        if self.v.defs.profile(profile).is_none() {
            return Ok(None);
        }
        Ok(Some(self.v.conforms(json, profile)))
    }
}

/// Rules the walk checks itself (others are answered from the JSON by `native_rules` where they
/// are written as R4 writes them, found per constraint in [`Resolved`]): ele-1 and ext-1 run on every element; ref-1 (a local `#id`
/// reference finds its contained resource); per-1 (FHIRPath's `<=` is empty between a date and
/// a dateTime, where the reference validator compares their boundaries); dom-3 (its expression
/// costs the square of the resource's size: `walk/contained.rs`).
const NATIVE: &[&str] = &["ele-1", "ext-1", "ref-1", "per-1", "dom-3"];

pub(crate) struct Compiled {
    exprs: FxHashMap<String, Result<Arc<Invariant>, String>>,
    pub(crate) model: SnapshotModel,
}

/// A compiled expression and the sets of child names without which it passes.
#[derive(Debug)]
pub(crate) struct Invariant {
    expr: Arc<fhirpath::Expr>,
    /// An element that has none of the children of one set passes without evaluating
    /// (`fhirpath::Expr::pass_guards`).
    guards: Vec<Vec<String>>,
}

/// What the walk needs of one constraint, attached to it at load (`Constraint::compiled`).
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// `None` for the rules the walk checks natively and those that did not compile.
    invariant: Option<Arc<Invariant>>,
    /// A key of the base specification (evaluated by the base pass; profile passes skip it).
    base_key: bool,
    /// The rule answered from the JSON where it can be (`native_rules`), found once here.
    native: Option<super::native_rules::Rule>,
}

impl Compiled {
    pub fn new(defs: &Definitions, model: SnapshotModel) -> Compiled {
        let mut compiled = FxHashMap::default();
        for p in defs.all_profiles() {
            for e in &p.elements {
                for c in &e.constraints {
                    if NATIVE.contains(&c.key.as_str()) || compiled.contains_key(&c.expression) {
                        continue;
                    }
                    let expr = fhirpath::compile(&c.expression)
                        .map(Arc::new)
                        .map_err(|e| e.to_string());
                    compiled.insert(c.expression.clone(), expr);
                }
            }
        }

        let exprs: FxHashMap<String, Result<Arc<Invariant>, String>> = compiled
            .into_iter()
            .map(|(src, expr)| {
                let inv = expr.map(|expr| {
                    Arc::new(Invariant {
                        guards: expr.pass_guards(&model),
                        expr,
                    })
                });
                (src, inv)
            })
            .collect();
        let out = Compiled { exprs, model };
        for p in defs.all_profiles() {
            for e in &p.elements {
                for c in &e.constraints {
                    // already set when a profile is reachable under two URLs
                    let _ = c.compiled.set(out.resolve(defs, c));
                }
            }
        }
        out
    }

    fn resolve(&self, defs: &Definitions, c: &Constraint) -> Resolved {
        let invariant = if NATIVE.contains(&c.key.as_str()) {
            None
        } else {
            self.exprs
                .get(&c.expression)
                .and_then(|r| r.as_ref().ok())
                .cloned()
        };
        Resolved {
            invariant,
            base_key: defs.is_base_key(&c.key),
            native: super::native_rules::rule(&c.key, &c.expression),
        }
    }

    /// Expressions that did not compile, as (expression, error).
    pub fn failures(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .exprs
            .iter()
            .filter_map(|(src, r)| r.as_ref().err().map(|e| (src.clone(), e.clone())))
            .collect();
        out.sort();
        out
    }
}

/// Our wording for the base specification's most common invariants.
fn own_message(key: &str) -> Option<&'static str> {
    Some(match key {
        "dom-2" => "a contained resource must not contain resources itself",
        "dom-4" => "a contained resource must not carry meta.versionId or meta.lastUpdated",
        "dom-5" => "a contained resource must not carry security labels",
        "dom-6" => "the resource should have a narrative (text.div) for people reading it",
        "per-1" => "the period ends before it starts: end must not be earlier than start",
        "qty-3" => "a Quantity with a code must also say which system the code is from",
        "cpt-2" => "a ContactPoint with a value must say what kind it is (system)",
        "att-1" => "an Attachment with data must have a contentType",
        "bdl-1" => "total is only allowed in a searchset or history Bundle",
        "bdl-2" => "entry.search is only allowed in a searchset Bundle",
        "bdl-3" => "each entry of a batch or transaction needs a request (and other Bundles must not have one)",
        "bdl-4" => "each entry of a batch-response or transaction-response needs a response (and other Bundles must not have one)",
        "bdl-7" => "fullUrl must be unique in a Bundle, unless the entries are different versions of one resource",
        "bdl-9" => "a document Bundle needs an identifier with a system and a value",
        "bdl-10" => "a document Bundle needs a timestamp",
        "bdl-11" => "the first entry of a document Bundle must be a Composition",
        "bdl-12" => "the first entry of a message Bundle must be a MessageHeader",
        "bdl-5" => "an entry needs a resource, a request or a response",
        "bdl-8" => "fullUrl must not be a version-specific reference (no /_history/)",
        "cpl-3" => "a CarePlan activity has either a reference or an inline detail, not both",
        "txt-1" => "the narrative may only contain basic, safe XHTML",
        "txt-2" => "the narrative must have some non-whitespace content",
        "enc-1" => "an Encounter location status needs a location",
        "gol-1" => "a Goal target with a detail needs a measure",
        "sqty-1" => "a SimpleQuantity must not have a comparator",
        _ => return None,
    })
}

/// The focus node of `val`, an instance of `el` with FHIR type `type_code`.
fn focus<'a>(val: &'a Value, el: &'a Element, type_code: &'a str) -> Node<'a> {
    let Value::Object(obj) = val else {
        return Node::primitive(Some(val), None, type_code);
    };
    if crate::fhir::member(obj, "resourceType").is_some() {
        return Node::resource(val);
    }
    if type_code.is_empty() || type_code == "BackboneElement" || type_code == "Element" {
        return Node::element(val, "BackboneElement", &el.path);
    }
    Node::element(val, type_code, type_code)
}

pub(crate) fn check(
    run: &mut Run<'_, '_>,
    val: &Value,
    el: &Element,
    type_code: &str,
    pass: Pass,
    profile: Option<&Profile>,
) {
    let v = run.v;
    let Some(&resource) = run.resources.last() else {
        return;
    };
    let root = run.resources.first().copied();
    let bundle = run.bundle;
    let hooks = ValidatorHooks {
        v,
        unresolved: Default::default(),
    };
    // built on the first rule that needs evaluating, shared by the element's other rules
    let mut ctx: Option<EvalContext<'_>> = None;
    for c in &el.constraints {
        let fallback;
        let resolved = match c.compiled.get() {
            Some(r) => r,
            None => {
                fallback = v.invariants.resolve(&v.defs, c);
                &fallback
            }
        };
        let Some(inv) = &resolved.invariant else {
            continue; // checked natively, or did not compile: reported once at load
        };
        if pass == Pass::Profile && resolved.base_key {
            continue;
        }
        if let Value::Object(obj) = val {
            if inv
                .guards
                .iter()
                .any(|names| !names.iter().any(|n| has_child(obj, n)))
            {
                continue;
            }
        }
        hooks
            .unresolved
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let severity = if c.error {
            Severity::Error
        } else {
            Severity::Warning
        };
        let native = resolved.native.and_then(|rule| rule.verdict(val));
        let result = match native {
            Some(pass) => Ok(Some(pass)),
            None => {
                let ctx = ctx.get_or_insert_with(|| {
                    let mut ctx = EvalContext::new(&v.invariants.model, resource)
                        .with_focus(focus(val, el, type_code))
                        .with_hooks(&hooks);
                    if let Some(r) = root {
                        ctx = ctx.with_root_resource(r);
                    }
                    if let Some(b) = bundle {
                        ctx = ctx.with_bundle(b);
                    }
                    ctx
                });
                inv.expr.evaluate_boolean(ctx)
            }
        };
        match result {
            Ok(Some(false)) if hooks.unresolved.load(std::sync::atomic::Ordering::Relaxed) => {
                run.issue(
                    Severity::Warning,
                    "not-supported",
                    format!(
                        "could not check rule {} ({}): it needs referenced resources that are not contained or in this Bundle",
                        c.key, c.expression
                    ),
                );
            }
            Ok(Some(false)) => {
                let by = profile
                    .filter(|_| !v.defs.is_base_key(&c.key))
                    .map(|p| format!(" (profile {})", p.label()))
                    .unwrap_or_default();
                let text = c
                    .human
                    .clone()
                    .or_else(|| own_message(&c.key).map(String::from))
                    .unwrap_or_else(|| format!("the rule {} does not hold", c.expression));
                run.issue(severity, "invariant", format!("{text} [{}]{by}", c.key));
            }
            Ok(_) => {}
            Err(e) => run.issue(
                Severity::Warning,
                "processing",
                format!(
                    "could not evaluate rule {} ({}): {}",
                    c.key, c.expression, e.message
                ),
            ),
        }
    }
}

/// Whether `obj` has child `name` as a value, a `_name` companion or a choice variant (`nameX`).
fn has_child(obj: &serde_json::Map<String, Value>, name: &str) -> bool {
    obj.keys().any(|k| {
        let k = k.strip_prefix('_').unwrap_or(k);
        k.strip_prefix(name).is_some_and(|rest| {
            rest.is_empty() || rest.starts_with(|c: char| c.is_ascii_uppercase())
        })
    })
}
