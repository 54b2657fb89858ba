//! The walk over a resource. A base pass checks the instance against the definitions of its types
//! (JSON rules, unknown elements, primitive formats, cardinality, choice types, bindings,
//! references, extensions, invariants); then one profile pass per profile the resource claims or
//! the caller requires checks only what each profile adds (cardinality it narrows, fixed and
//! pattern values, bindings, slicing, types, its own invariants, profiles on types).
//!
//! This file walks the structure (objects, elements, cardinality, values, primitives); its
//! children hold the rest, each an `impl Run` of one concern: `element_rules` (fixed, pattern,
//! min/max, bindings, invariants), `references` (references, contained resources, Bundle entries,
//! canonicals), `slicing`, `datatypes` (rules of Coding, Period, Attachment), `extensions` and
//! `rules` (rules no StructureDefinition states).

use serde_json::{Map, Value};

use super::definitions::strip_version;
use super::model::{
    choice_key, DiscriminatorKind, ElemIdx, Element, Kind, Profile, SlicingRules, Strength,
};
use super::primitive::{self, truncate};
use super::Validator;
use crate::fhir::outcome::{Issue, Severity};
use crate::fhir::{companion, member};

mod contained;
mod datatypes;
mod element_rules;
#[path = "extensions.rs"]
mod extensions;
mod references;
#[path = "rules.rs"]
mod rules;
mod slicing;
pub(crate) use slicing::json_path;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Pass {
    Base,
    Profile,
}

/// Where in which definition: the element whose children describe an object.
#[derive(Clone, Copy)]
pub(crate) struct Node<'d> {
    pub prof: &'d Profile,
    pub elem: ElemIdx,
}

impl<'d> Node<'d> {
    fn el(&self) -> &'d Element {
        &self.prof.elements[self.elem]
    }
}

pub(crate) struct Run<'d, 'v> {
    pub v: &'d Validator,
    pub issues: Vec<Issue>,
    /// Bindings that could not be evaluated here, each with the warning issued for it.
    pub unresolved: Vec<(super::UnresolvedBinding, Issue)>,
    /// Codings of code systems not held here (not reported: they never were).
    pub unknown_codes: Vec<super::UnresolvedCode>,
    pub path: String,
    /// The resources enclosing the current position, innermost last (for `#id` and `%resource`).
    pub resources: Vec<&'v Value>,
    /// What the walk keeps of each of `resources` (contained ids, dom-3's references).
    frames: Vec<contained::Frame<'v>>,
    /// Where each of `resources` starts in `path`.
    resource_marks: Vec<usize>,
    /// The outermost Bundle, for resolving references between entries.
    pub bundle: Option<&'v Value>,
    /// Its entries by reference, built on the first look-up ([`Run::bundle_entry`]).
    bundle_index: std::cell::OnceCell<references::EntryIndex<'v>>,
    /// The package whose dependency closure resolves the unversioned canonicals the instance
    /// names (profiles it claims, extensions): that of the first profile the outermost resource
    /// claiming any resolves to.
    pub(crate) scope: Option<usize>,
    depth: usize,
    /// Set when a slice discriminator needed a reference that cannot be resolved here.
    undetermined: bool,
    /// Slices met whose value or pattern discriminator has nothing to match on (no fixed
    /// value, pattern or required binding at its path): the slicing cannot be evaluated.
    unmatchable: Vec<ElemIdx>,
    /// Per-object counts of each child's values (and the JSON key of a choice's variant), as a
    /// stack shared by nested objects instead of a map allocated per object.
    scratch: Vec<(ElemIdx, usize, &'v str)>,
    /// Questionnaires the caller found elsewhere (the gateway's store), for
    /// QuestionnaireResponses whose Questionnaire is not contained, in the Bundle or loaded.
    pub(crate) supplied: &'v [Value],
    /// Canonicals of Questionnaires that could not be found (each with a warning issued).
    pub(crate) missing_questionnaires: Vec<String>,
    /// Check only the profiles the caller requires: not those the resources claim, imply
    /// (vital signs) or that apply globally (a conformance probe, [`Validator::conforms_in`]).
    pub(crate) only_required: bool,
}

const MAX_DEPTH: usize = 64;

impl<'d, 'v> Run<'d, 'v> {
    pub fn new(v: &'d Validator) -> Self {
        Run {
            v,
            issues: Vec::new(),
            unresolved: Vec::new(),
            unknown_codes: Vec::new(),
            path: String::new(),
            resources: Vec::new(),
            frames: Vec::new(),
            resource_marks: Vec::new(),
            bundle: None,
            bundle_index: std::cell::OnceCell::new(),
            scope: None,
            depth: 0,
            undetermined: false,
            unmatchable: Vec::new(),
            scratch: Vec::new(),
            supplied: &[],
            missing_questionnaires: Vec::new(),
            only_required: false,
        }
    }

    /// Resolve the unversioned canonicals the instance names within package `p`'s closure.
    pub fn set_scope(&mut self, p: usize) {
        self.scope = Some(p);
    }

    /// Record an issue at the current location.
    pub(crate) fn issue(&mut self, severity: Severity, code: &'static str, msg: String) {
        self.issues.push(Issue {
            severity,
            code,
            diagnostics: msg,
            expression: Some(self.path.clone()),
        });
    }

    fn error(&mut self, code: &'static str, msg: String) {
        self.issue(Severity::Error, code, msg)
    }

    /// An error at child `name` of the current path (`.url`, `.id`).
    pub(super) fn error_at(&mut self, name: &str, code: &'static str, msg: String) {
        let mark = self.path.len();
        self.path.push_str(name);
        self.error(code, msg);
        self.path.truncate(mark);
    }

    fn warning(&mut self, code: &'static str, msg: String) {
        self.issue(Severity::Warning, code, msg)
    }

    /// Validate a resource at the current path (empty for the top level), against its type and
    /// the profiles it claims plus `required`.
    pub fn resource(&mut self, value: &'v Value, required: &[String]) {
        let Some(obj) = value.as_object() else {
            if self.path.is_empty() {
                self.path.push_str("Resource");
            }
            self.error("structure", "a resource must be a JSON object".into());
            return;
        };
        let rtype = match obj.get("resourceType") {
            Some(Value::String(t)) => t.as_str(),
            Some(_) => {
                self.error("structure", "resourceType must be a string".into());
                return;
            }
            None => {
                if self.path.is_empty() {
                    self.path.push_str("Resource");
                }
                self.error(
                    "required",
                    "resourceType is missing: every resource names its type".into(),
                );
                return;
            }
        };
        let top = self.path.is_empty();
        if top {
            self.path.push_str(rtype);
        }
        let defs = &self.v.defs;
        let Some(def) = defs.type_def(rtype).filter(|d| d.kind == Kind::Resource) else {
            self.error(
                "not-supported",
                format!(
                    "unknown resourceType {:?}: not an R4 resource type",
                    truncate(rtype)
                ),
            );
            return;
        };
        if def.is_abstract {
            self.error(
                "invalid",
                format!("{rtype} is abstract; use a concrete resource type"),
            );
            return;
        }
        if self.bundle.is_none() && rtype == "Bundle" {
            self.bundle = Some(value);
        }
        self.resources.push(value);
        self.open_frame();
        self.resource_marks.push(self.path.len());
        if let Some(Value::String(id)) = obj.get("id") {
            if !crate::fhir::is_valid_id(id) {
                self.error_at(
                    ".id",
                    "value",
                    if crate::fhir::is_dots(id) && !id.is_empty() {
                        format!(
                            "{id:?} is not a valid id: an id of dots only is a '.' or '..' segment in URLs"
                        )
                    } else {
                        format!(
                            "{:?} is not a valid id: use 1–64 characters of A–Z, a–z, 0–9, '-' and '.'",
                            truncate(id)
                        )
                    },
                );
            }
        }
        if obj.contains_key("_id") {
            // Resource.id is a plain string (System.String) in R4, not an `id` element: it takes
            // no extensions and no id of its own (HL7's validator refuses them too).
            self.error_at(
                ".id",
                "structure",
                "Resource.id cannot carry extensions (_id): it is a plain string, not an element"
                    .into(),
            );
        }
        let claimed = obj
            .get("meta")
            .and_then(|m| m.get("profile"))
            .and_then(Value::as_array);
        let outer_scope = self.scope;
        if self.scope.is_none() {
            self.scope = claimed
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .chain(required.iter().map(String::as_str))
                .find_map(|u| defs.profile(u))
                .map(|p| p.package);
        }
        let root = Node { prof: def, elem: 0 };
        self.constraints(value, root.el(), rtype, Pass::Base, None);
        self.object(obj, root, Pass::Base);
        self.dom3(value, root.el());
        if rtype == "Bundle" {
            self.bundle_rules(obj);
        }
        self.canonical_url(obj, rtype);
        match rtype {
            "StructureDefinition" => self.structure_definition(value),
            "QuestionnaireResponse" => self.questionnaire_response(value, obj),
            "MeasureReport" => super::measure::check_report(self, obj),
            "CodeSystem" => self.code_system_rules(obj),
            "CapabilityStatement" => self.capability_statement_rules(obj),
            _ => {}
        }

        // Profiles: those the resource claims, those the caller requires, and those that apply
        // without a claim (a vital sign's core profile).
        let mut profiles: Vec<String> = claimed
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(String::from)
            .filter(|_| !self.only_required)
            .collect();
        let implied = if rtype == "Observation" && !self.only_required {
            rules::vital_sign_profile(obj)
        } else {
            None
        };
        for r in required.iter().chain(implied.as_ref()) {
            if !profiles.contains(r) {
                profiles.push(r.clone());
            }
        }
        // and the global profiles of the loaded ImplementationGuides
        for g in defs.global_profiles(rtype).filter(|_| !self.only_required) {
            if !profiles.iter().any(|p| p == g) {
                profiles.push(g.to_string());
            }
        }
        for url in &profiles {
            match defs.profile_in(url, self.scope) {
                Some(p) if p.type_name == rtype || defs.derives_from(rtype, &p.type_name) => {
                    self.profile_root(value, obj, p, rtype);
                }
                Some(p) => self.error(
                    "invalid",
                    format!(
                        "profile {url} is for {}, but this resource is a {rtype}",
                        p.type_name
                    ),
                ),
                None => self.profile_missing(url),
            }
        }
        self.scope = outer_scope;
        self.close_frame(value);
        self.resources.pop();
        self.resource_marks.pop();
        if top {
            self.path.clear();
        }
    }

    /// A claimed or required profile that is not loaded: a warning that names it, and why it is
    /// missing when its package was loaded but it could not be.
    fn profile_missing(&mut self, url: &str) {
        let msg = match self.v.defs.failure(url) {
            Some(why) => format!(
                "profile {url} could not be loaded ({why}), so the resource was not checked \
                 against it"
            ),
            None => format!(
                "profile {url} is not loaded, so the resource was not checked against it; \
                 add its package to [validation].packages"
            ),
        };
        self.warning("not-found", msg)
    }

    /// The node whose children describe a value of `elem`'s type `type_idx`.
    fn children_node(&self, node: Node<'d>, type_idx: usize) -> Option<Node<'d>> {
        let el = node.el();
        if !el.children.is_empty() {
            return Some(node);
        }
        if let Some(target) = el.content_ref {
            return Some(Node {
                prof: node.prof,
                elem: target,
            });
        }
        let t = el.types.get(type_idx)?;
        let def = self.v.defs.type_def(&t.code)?;
        Some(Node { prof: def, elem: 0 })
    }

    /// Walk a JSON object described by `node`'s children.
    fn object(&mut self, obj: &'v Map<String, Value>, node: Node<'d>, pass: Pass) {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            self.error("too-costly", "nesting is deeper than 64 levels".into());
            self.depth -= 1;
            return;
        }
        match pass {
            Pass::Base => self.object_base(obj, node),
            Pass::Profile => self.object_profile(obj, node),
        }
        self.depth -= 1;
    }

    fn object_base(&mut self, obj: &'v Map<String, Value>, node: Node<'d>) {
        let el = node.el();
        let is_resource_root = node.elem == 0 && node.prof.kind == Kind::Resource;
        if obj.is_empty() {
            self.error(
                "structure",
                "empty object: leave the element out instead".into(),
            );
            return;
        }
        let base = self.scratch.len();
        // Most objects have no `_name` member: then no primitive needs its companion looked for
        // (a scan of the object per primitive member otherwise).
        let companions = obj.keys().any(|k| k.starts_with('_'));
        for (key, val) in obj {
            if key == "resourceType" && is_resource_root {
                continue;
            }
            let mark = self.path.len();
            if let Some(name) = key.strip_prefix('_') {
                self.path.push('.');
                self.path.push_str(name);
                match el.keys.get(name) {
                    Some(&(c, ti)) if is_primitive_type(&node.prof.elements[c], ti) => {
                        let child = &node.prof.elements[c];
                        let main = member(obj, name);
                        if main.is_none() {
                            self.count(base, c, count_items(val), false, key);
                        }
                        self.primitive_extras(val, main, child, ti);
                    }
                    Some(_) => self.error(
                        "structure",
                        format!(
                            "_{name} is only allowed for primitive elements; {name} is not one"
                        ),
                    ),
                    None => self.error("structure", format!("unknown element _{name}")),
                }
                self.path.truncate(mark);
                continue;
            }
            let Some(&(c, ti)) = el.keys.get(key.as_str()) else {
                self.path.push('.');
                self.path.push_str(key);
                let hint = suggestion(key, el.keys.keys());
                self.error(
                    "structure",
                    format!(
                        "unknown element {key:?}: {} has no such element{hint}",
                        el.path
                    ),
                );
                self.path.truncate(mark);
                continue;
            };
            let child = &node.prof.elements[c];
            if let Some(prev) = self.count(base, c, count_items(val), child.choice, key) {
                self.path.push('.');
                self.path.push_str(&child.name);
                self.error(
                    "structure",
                    format!(
                        "{prev} and {key} are both present, but {}[x] takes one type only",
                        child.name
                    ),
                );
                self.path.truncate(mark);
            }
            self.push_name(child, ti);
            let ext = if companions && is_primitive_type(child, ti) {
                companion(obj, key)
            } else {
                None
            };
            self.values(val, node, c, ti, Pass::Base, ext);
            self.path.truncate(mark);
        }
        // The children are in ascending order (the snapshot's), so with the object's few counts
        // sorted the same way the two lists are walked together: searching the counts once per
        // child was a tenth of the walk on definitions with forty children.
        self.scratch[base..].sort_unstable_by_key(|e| e.0);
        let mut k = base;
        for &c in &el.children {
            while self.scratch.get(k).is_some_and(|e| e.0 < c) {
                k += 1;
            }
            let n = self.scratch.get(k).filter(|e| e.0 == c).map_or(0, |e| e.1);
            let child = &node.prof.elements[c];
            if n > 0 || child.min > 0 {
                self.cardinality(child, n, None);
            }
        }
        self.scratch.truncate(base);
    }

    /// Count `n` values of child `c` in the object whose counts start at `base`. For a choice,
    /// a second variant returns the first variant's key (two variants are reported as such,
    /// not again as too many values).
    fn count(
        &mut self,
        base: usize,
        c: ElemIdx,
        n: usize,
        choice: bool,
        key: &'v str,
    ) -> Option<&'v str> {
        match self.scratch[base..].iter().position(|e| e.0 == c) {
            Some(p) => {
                let e = &mut self.scratch[base + p];
                if choice {
                    e.1 = e.1.max(n);
                    (e.2 != key).then_some(e.2)
                } else {
                    e.1 += n;
                    None
                }
            }
            None => {
                self.scratch.push((c, n, key));
                None
            }
        }
    }

    fn object_profile(&mut self, obj: &'v Map<String, Value>, node: Node<'d>) {
        let el = node.el();
        for &c in &el.children {
            let child = &node.prof.elements[c];
            // The instance's values for this child: (json key, type index, value).
            let mut found: Vec<(&'v str, usize, &'v Value)> = Vec::new();
            let mut disallowed: Vec<&'v str> = Vec::new();
            for (key, val) in obj {
                let k = key.strip_prefix('_').unwrap_or(key);
                if key.starts_with('_') && member(obj, k).is_some() {
                    continue;
                }
                if child.choice {
                    if let Some(rest) = k.strip_prefix(&child.name) {
                        if rest.starts_with(|ch: char| ch.is_ascii_uppercase()) {
                            match el.keys.get(k) {
                                Some(&(cc, ti)) if cc == c => found.push((key, ti, val)),
                                _ => disallowed.push(key),
                            }
                        }
                    }
                } else if k == child.name {
                    found.push((key, 0, val));
                }
            }
            let mark = self.path.len();
            for &key in &disallowed {
                self.path.push('.');
                self.path.push_str(&child.name);
                let allowed: Vec<&str> = child.types.iter().map(|t| t.code.as_str()).collect();
                self.error(
                    "structure",
                    format!(
                        "{key} is not allowed by profile {}: {}[x] must be {}",
                        node.prof.label(),
                        child.name,
                        if allowed.is_empty() {
                            "absent".to_string()
                        } else {
                            allowed.join(" or ")
                        }
                    ),
                );
                self.path.truncate(mark);
            }
            // A value of a type the profile does not allow is reported as such, not as missing.
            let n: usize = found.iter().map(|(_, _, v)| count_items(v)).sum::<usize>()
                + disallowed
                    .iter()
                    .filter_map(|k| obj.get(*k))
                    .map(count_items)
                    .sum::<usize>();
            if !child.base_card_same || child.max == Some(0) {
                self.path.push('.');
                self.path.push_str(&child.name);
                self.cardinality(child, n, Some(node.prof));
                self.path.truncate(mark);
            }
            // Absent altogether: a required slice is still missing (the sorting below never
            // runs without values).
            if n == 0 && child.slicing.is_some() {
                self.path.push('.');
                self.path.push_str(&child.name);
                self.missing_slices(node, c);
                self.path.truncate(mark);
            }
            for (key, ti, val) in found {
                if key.starts_with('_') {
                    continue;
                }
                self.push_name(child, ti);
                if child.slicing.is_some() && !child.slices.is_empty() {
                    let actual = child
                        .choice
                        .then(|| child.types.get(ti).map(|t| t.code.as_str()))
                        .flatten();
                    self.slicing(val, node, c, actual);
                } else {
                    // companions (`_name`) only matter to the base pass's null checks
                    self.values(val, node, c, ti, Pass::Profile, None);
                }
                self.path.truncate(mark);
            }
        }
    }

    fn push_name(&mut self, child: &Element, ti: usize) {
        self.path.push('.');
        self.path.push_str(&child.name);
        if child.choice {
            if let Some(t) = child.types.get(ti) {
                self.path.push_str(".ofType(");
                self.path.push_str(&t.code);
                self.path.push(')');
            }
        }
    }

    fn cardinality(&mut self, child: &Element, n: usize, profile: Option<&Profile>) {
        let too_few = (n as u64) < u64::from(child.min);
        let too_many = child.max.is_some_and(|max| n as u64 > u64::from(max));
        if !too_few && !too_many {
            return;
        }
        let by = profile
            .map(|p| format!(" by profile {}", p.label()))
            .unwrap_or_default();
        if (n as u64) < u64::from(child.min) {
            let path = if profile.is_some() {
                String::new()
            } else {
                format!(".{}", child.name)
            };
            let mark = self.path.len();
            self.path.push_str(&path);
            self.error(
                "required",
                format!(
                    "{} is required{by} (at least {}), but {}",
                    child.path,
                    child.min,
                    if n == 0 {
                        "it is missing".to_string()
                    } else {
                        format!("only {n} found")
                    }
                ),
            );
            self.path.truncate(mark);
        }
        if let Some(max) = child.max {
            if n as u64 > u64::from(max) {
                let mark = self.path.len();
                if profile.is_none() {
                    self.path.push('.');
                    self.path.push_str(&child.name);
                }
                let msg = if max == 0 {
                    format!("{} is not allowed{by}", child.path)
                } else {
                    format!("{} allows at most {max}{by}, found {n}", child.path)
                };
                self.error("structure", msg);
                self.path.truncate(mark);
            }
        }
    }

    /// The value(s) of child `c` of `parent` (array or single) at the current path.
    fn values(
        &mut self,
        val: &'v Value,
        parent: Node<'d>,
        c: ElemIdx,
        ti: usize,
        pass: Pass,
        ext: Option<&'v Value>,
    ) {
        let child = &parent.prof.elements[c];
        let node = Node {
            prof: parent.prof,
            elem: c,
        };
        match val {
            Value::Array(items) => {
                if pass == Pass::Base && !child.array {
                    self.error(
                        "structure",
                        format!("{} takes a single value, not an array", child.path),
                    );
                    return;
                }
                if items.is_empty() {
                    self.error(
                        "structure",
                        "empty array: leave the element out instead".into(),
                    );
                    return;
                }
                let exts = ext.and_then(Value::as_array);
                let mark = self.path.len();
                for (i, item) in items.iter().enumerate() {
                    push_index(&mut self.path, i);
                    let e = exts.and_then(|a| a.get(i)).filter(|x| !x.is_null());
                    if item.is_null() {
                        if pass == Pass::Base && (e.is_none() || !is_primitive_type(child, ti)) {
                            self.error(
                                "structure",
                                "null is not allowed here (null is only a placeholder in arrays of primitives with extensions)".into(),
                            );
                        }
                    } else {
                        self.item(item, node, ti, pass);
                    }
                    self.path.truncate(mark);
                }
            }
            _ if pass == Pass::Base && child.array => {
                self.error(
                    "structure",
                    format!(
                        "{} repeats, so its value must be an array (even with one item)",
                        child.path
                    ),
                );
            }
            Value::Null => {
                if pass == Pass::Base {
                    self.error(
                        "structure",
                        "null is not allowed; leave the element out instead".into(),
                    );
                }
            }
            _ => self.item(val, node, ti, pass),
        }
    }

    /// One value of element `node` with type `ti`.
    fn item(&mut self, val: &'v Value, node: Node<'d>, ti: usize, pass: Pass) {
        let el = node.el();
        let code = el.types.get(ti).map(|t| t.code.as_str()).unwrap_or("");
        if primitive::is_primitive(code) {
            if pass == Pass::Base {
                if let Err(msg) = primitive::check(code, val) {
                    let ic = if matches!(val, Value::String(_)) {
                        "value"
                    } else {
                        "structure"
                    };
                    self.error(ic, msg);
                    return;
                }
            }
            if let (Some(max), Value::String(s)) = (el.max_length, val) {
                if s.chars().count() > max {
                    self.error(
                        "too-long",
                        format!("longer than the {max} characters allowed"),
                    );
                }
            }
            if pass == Pass::Base {
                self.note_local_ref(val, el, code);
            }
            self.element_rules(val, el, code, node.prof, pass);
            return;
        }
        // A resource inside a resource: contained, Bundle.entry.resource, Parameters.
        if code == "Resource" || self.v.defs.is_resource_type(code) {
            if pass == Pass::Base {
                // A contained resource is found by its id (`#id`): it must have one.
                if el.path.ends_with(".contained")
                    && val.is_object()
                    && val.get("id").is_none_or(|id| !id.is_string())
                {
                    self.error(
                        "required",
                        "a contained resource needs an id: references to it are #id".into(),
                    );
                }
                self.resource(val, &[]);
            } else {
                self.resource_profiles(val, el);
            }
            return;
        }
        let Some(obj) = val.as_object() else {
            if pass == Pass::Base {
                self.error(
                    "structure",
                    format!(
                        "{} is a {code} and must be a JSON object, not {}",
                        el.path,
                        kind_of(val)
                    ),
                );
            }
            return;
        };
        self.element_rules(val, el, code, node.prof, pass);
        match pass {
            Pass::Base => {
                if code == "Reference" {
                    self.reference_targets(obj, el, None);
                }
                if code == "Extension" {
                    self.extension(obj, el);
                }
                if code == "Coding" {
                    self.coding_system(obj);
                    super::bindings::check_coding(self, obj);
                }
                if code == "Attachment" {
                    self.attachment_size(obj);
                }
                if code == "Identifier" {
                    self.identifier_uri(obj);
                }
                if code == "Period" {
                    self.period(obj);
                }
                if let Some(inner) = self.children_node(node, ti) {
                    let into_type = !std::ptr::eq(inner.prof, node.prof) && inner.elem == 0;
                    if into_type && inner.prof.kind != Kind::Resource {
                        // descending into a datatype: its own invariants apply too
                        self.constraints(val, inner.el(), code, Pass::Base, None);
                    }
                    self.object(obj, inner, Pass::Base);
                }
            }
            Pass::Profile => {
                if code == "Reference" && !el.types.is_empty() {
                    self.reference_targets(obj, el, Some(node.prof));
                }
                if !el.children.is_empty() {
                    self.object(obj, node, Pass::Profile);
                } else if el.content_ref.is_some() {
                    // a reused element: its definition's profile pass covers it
                } else if let Some(t) = el.types.get(ti) {
                    // Several profiles on one type: conforming to any one of them is enough
                    // (ElementDefinition.type.profile); the closest is reported when none fits.
                    let mut best: Option<Vec<Issue>> = None;
                    for url in &t.profiles {
                        match self.v.defs.profile(url) {
                            Some(p) => {
                                if self.one_of_profiles(val, obj, p, &t.code, &mut best) {
                                    break;
                                }
                            }
                            None => self.warning(
                                "not-found",
                                format!(
                                    "profile {url} (required for {}) is not loaded; not checked",
                                    el.path
                                ),
                            ),
                        }
                    }
                    self.issues.extend(best.unwrap_or_default());
                }
            }
        }
    }

    /// `_name`: the id and extensions of a primitive.
    fn primitive_extras(
        &mut self,
        val: &'v Value,
        main: Option<&'v Value>,
        child: &'d Element,
        ti: usize,
    ) {
        let code = child
            .types
            .get(ti)
            .map(|t| t.code.as_str())
            .unwrap_or("string");
        let Some(def) = self.v.defs.type_def(code) else {
            return;
        };
        let node = Node { prof: def, elem: 0 };
        let one = |run: &mut Self, v: &'v Value, has_value: bool| match v.as_object() {
            Some(o) => {
                // `value` belongs in the main property, not in `_name`.
                if o.contains_key("value") {
                    run.error("structure", "the value of a primitive goes in the element itself, not in its _ companion".into());
                }
                // ele-1: without a value, the companion must bring extensions (an id alone is
                // not content).
                let extended = o
                    .get("extension")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty());
                if !has_value && !extended && !o.is_empty() {
                    run.error(
                        "structure",
                        format!("_{} has neither a value beside it nor extensions: every element needs a value or children (ele-1)", child.name),
                    );
                }
                run.object(o, node, Pass::Base);
            }
            None => run.error("structure", format!("_{} must be an object", child.name)),
        };
        match (val, main) {
            (Value::Array(items), Some(Value::Array(values))) => {
                if items.len() != values.len() {
                    self.error(
                        "structure",
                        format!(
                            "_{0} has {1} items but {0} has {2}: they must line up",
                            child.name,
                            items.len(),
                            values.len()
                        ),
                    );
                }
                let mark = self.path.len();
                for (i, it) in items.iter().enumerate() {
                    if it.is_null() {
                        if values.get(i).is_none_or(Value::is_null) {
                            push_index(&mut self.path, i);
                            self.error(
                                "structure",
                                "both the value and its _ companion are null".into(),
                            );
                            self.path.truncate(mark);
                        }
                        continue;
                    }
                    push_index(&mut self.path, i);
                    one(self, it, values.get(i).is_some_and(|v| !v.is_null()));
                    self.path.truncate(mark);
                }
            }
            (Value::Array(items), None) if child.array => {
                let mark = self.path.len();
                for (i, it) in items.iter().enumerate() {
                    push_index(&mut self.path, i);
                    if it.is_null() {
                        self.error("structure", "null without a value beside it".into());
                    } else {
                        one(self, it, false);
                    }
                    self.path.truncate(mark);
                }
            }
            (Value::Array(_), _) => self.error(
                "structure",
                format!("_{0} is an array but {0} is not", child.name),
            ),
            (_, Some(Value::Array(_))) => self.error(
                "structure",
                format!("{0} is an array, so _{0} must be one too", child.name),
            ),
            (v, main) => one(self, v, main.is_some_and(|m| !m.is_null())),
        }
    }
}

/// Appends `[i]` to a path (without the formatting machinery: this runs for every array item).
fn push_index(path: &mut String, i: usize) {
    let mut digits = [0u8; 20];
    let mut pos = digits.len();
    let mut n = i;
    loop {
        pos -= 1;
        digits[pos] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    path.push('[');
    for &d in &digits[pos..] {
        path.push(char::from(d));
    }
    path.push(']');
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn is_primitive_type(el: &Element, ti: usize) -> bool {
    el.types
        .get(ti)
        .is_some_and(|t| primitive::is_primitive(&t.code))
}

fn count_items(v: &Value) -> usize {
    match v {
        Value::Array(a) => a.iter().filter(|x| !x.is_null()).count(),
        Value::Null => 0,
        _ => 1,
    }
}

/// `Did you mean …?` for near misses of a known element name.
fn suggestion<'a>(key: &str, known: impl Iterator<Item = &'a String>) -> String {
    let lower = key.to_ascii_lowercase();
    let best = known
        .filter(|k| !k.starts_with('_'))
        .map(|k| (edit_distance(&lower, &k.to_ascii_lowercase()), k))
        .filter(|(d, _)| *d <= 2)
        .min();
    match best {
        Some((_, k)) => format!(" (did you mean {k:?}?)"),
        None => String::new(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
