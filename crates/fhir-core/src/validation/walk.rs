//! The walk over a resource. A base pass checks the instance against the definitions of its types
//! (JSON rules, unknown elements, primitive formats, cardinality, choice types, bindings,
//! references, extensions, invariants); then one profile pass per profile the resource claims or
//! the caller requires checks only what each profile adds (cardinality it narrows, fixed and
//! pattern values, bindings, slicing, types, its own invariants, profiles on types).

use serde_json::{Map, Value};

use super::definitions::strip_version;
use super::model::{
    choice_key, DiscriminatorKind, ElemIdx, Element, Kind, Profile, SlicingRules, Strength,
};
use super::primitive::{self, truncate};
use super::Validator;
use crate::fhir::outcome::{Issue, Severity};
use crate::fhir::{companion, member};

#[path = "extensions.rs"]
mod extensions;
#[path = "rules.rs"]
mod rules;

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
    /// Where each of `resources` starts in `path`.
    resource_marks: Vec<usize>,
    /// The outermost Bundle, for resolving references between entries.
    pub bundle: Option<&'v Value>,
    /// The package whose dependency closure resolves the unversioned canonicals the instance
    /// names (profiles it claims, extensions): that of the first profile the outermost resource
    /// claiming any resolves to.
    pub(crate) scope: Option<usize>,
    depth: usize,
    /// Set when a slice discriminator needed a reference that cannot be resolved here.
    undetermined: bool,
    /// Per-object counts of each child's values (and the JSON key of a choice's variant), as a
    /// stack shared by nested objects instead of a map allocated per object.
    scratch: Vec<(ElemIdx, usize, &'v str)>,
    /// Questionnaires the caller found elsewhere (the gateway's store), for
    /// QuestionnaireResponses whose Questionnaire is not contained, in the Bundle or loaded.
    pub(crate) supplied: &'v [Value],
    /// Canonicals of Questionnaires that could not be found (each with a warning issued).
    pub(crate) missing_questionnaires: Vec<String>,
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
            resource_marks: Vec::new(),
            bundle: None,
            scope: None,
            depth: 0,
            undetermined: false,
            scratch: Vec::new(),
            supplied: &[],
            missing_questionnaires: Vec::new(),
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
        self.resource_marks.push(self.path.len());
        if let Some(Value::String(id)) = obj.get("id") {
            if !crate::fhir::is_valid_id(id) {
                let mark = self.path.len();
                self.path.push_str(".id");
                self.error(
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
                self.path.truncate(mark);
            }
        }
        if obj.contains_key("_id") {
            // Resource.id is a plain string (System.String) in R4, not an `id` element: it takes
            // no extensions and no id of its own (HL7's validator refuses them too).
            let mark = self.path.len();
            self.path.push_str(".id");
            self.error(
                "structure",
                "Resource.id cannot carry extensions (_id): it is a plain string, not an element"
                    .into(),
            );
            self.path.truncate(mark);
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
        if rtype == "Bundle" {
            self.bundle_rules(obj);
        }
        match rtype {
            "StructureDefinition" => self.structure_definition(value),
            "QuestionnaireResponse" => self.questionnaire_response(value, obj),
            "MeasureReport" => super::measure::check_report(self, obj),
            _ => {}
        }

        // Profiles: those the resource claims, those the caller requires, and those that apply
        // without a claim (a vital sign's core profile).
        let mut profiles: Vec<String> = claimed
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect();
        let implied = if rtype == "Observation" {
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
        for g in defs.global_profiles(rtype) {
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
        self.resources.pop();
        self.resource_marks.pop();
        if top {
            self.path.clear();
        }
    }

    /// `Coding.system` names a code system by an absolute URI: not a local reference, and not
    /// a value set.
    fn coding_system(&mut self, coding: &Map<String, Value>) {
        let Some(Value::String(system)) = coding.get("system") else {
            return;
        };
        let absolute = system.split_once(':').is_some_and(|(scheme, _)| {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        });
        let mark = self.path.len();
        self.path.push_str(".system");
        if !absolute {
            self.error(
                "value",
                format!(
                    "Coding.system {:?} must be an absolute URI naming a code system, not a local \
                     reference",
                    truncate(system)
                ),
            );
        } else if self.v.terminology.has_value_set(system)
            && !self.v.terminology.has_code_system(system)
        {
            self.error(
                "value",
                format!("Coding.system {system} is a value set, not a code system"),
            );
        }
        self.path.truncate(mark);
    }

    /// per-1: a Period does not end before it starts. Compared at the precision both have (a
    /// date against a dateTime by the day); equal there is undecided, which fails the rule as
    /// it does in the reference validator.
    fn period(&mut self, p: &Map<String, Value>) {
        let (Some(Value::String(start)), Some(Value::String(end))) = (p.get("start"), p.get("end"))
        else {
            return;
        };
        match super::order::compare_dates(start, end) {
            Some(std::cmp::Ordering::Greater) => self.error(
                "invariant",
                format!("the period ends ({end}) before it starts ({start}): end must not be earlier than start [per-1]"),
            ),
            // As the reference validator: start <= end must hold, and between a date and a
            // dateTime of the same day it is undecided (FHIRPath gives no answer), so it fails.
            None if super::order::is_date(start) && super::order::is_date(end) => self.error(
                "invariant",
                format!("the period's start ({start}) and end ({end}) have different precisions and the same value as far as both go, so start cannot be shown to be no later than end; give both at the same precision [per-1]"),
            ),
            _ => {}
        }
    }

    /// `Attachment.size` is the number of bytes `data` decodes to.
    fn attachment_size(&mut self, att: &Map<String, Value>) {
        let (Some(size), Some(Value::String(data))) = (att.get("size"), att.get("data")) else {
            return;
        };
        let (Some(stated), Some(actual)) = (
            super::order::number(size),
            super::questionnaire::decoded_len(data),
        ) else {
            return;
        };
        if stated != actual as f64 {
            let mark = self.path.len();
            self.path.push_str(".size");
            self.error(
                "value",
                format!("size says {size} bytes, but data decodes to {actual} bytes"),
            );
            self.path.truncate(mark);
        }
    }

    /// A canonical resource of type `rtype` (`url` or `url|version`, or a literal
    /// `Type/id` reference) as the instance can see it: contained (`#id`), in the same Bundle,
    /// supplied by the caller, or in the loaded packages.
    pub(crate) fn find_canonical<'x>(
        &self,
        rtype: &str,
        canonical: &str,
        holder: &'x Map<String, Value>,
    ) -> Option<&'x Value>
    where
        'd: 'x,
        'v: 'x,
    {
        let is = |r: &&Value| r.get("resourceType").and_then(Value::as_str) == Some(rtype);
        if let Some(id) = canonical.strip_prefix('#') {
            return holder
                .get("contained")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(is)
                .find(|r| r.get("id").and_then(Value::as_str) == Some(id));
        }
        let (url, version) = match canonical.split_once('|') {
            Some((u, v)) => (u, Some(v)),
            None => (canonical, None),
        };
        let literal = url
            .strip_prefix(rtype)
            .and_then(|r| r.strip_prefix('/'))
            .filter(|id| crate::fhir::is_valid_id(id));
        let matches = |r: &&Value| {
            is(r)
                && (r.get("url").and_then(Value::as_str) == Some(url)
                    && version.is_none_or(|v| r.get("version").and_then(Value::as_str) == Some(v))
                    || literal.is_some() && r.get("id").and_then(Value::as_str) == literal)
        };
        let (v, supplied, bundle, scope): (&'d Validator, &'v [Value], _, _) =
            (self.v, self.supplied, self.bundle, self.scope);
        let in_bundle = bundle
            .and_then(|b| b.get("entry"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e.get("resource"))
            .find(matches);
        in_bundle
            .or_else(|| supplied.iter().find(matches))
            .or_else(|| {
                v.defs
                    .canonical_resource(rtype, canonical, scope)
                    .map(|a| a.as_ref())
            })
    }

    /// A QuestionnaireResponse against its Questionnaire, or a warning that it cannot be found.
    fn questionnaire_response(&mut self, value: &'v Value, obj: &'v Map<String, Value>) {
        let Some(canonical) = super::questionnaire::canonical(obj) else {
            return;
        };
        match self.find_canonical("Questionnaire", canonical, obj) {
            Some(q) => super::questionnaire::check(self, value, q),
            None => {
                let mark = self.path.len();
                self.path.push_str(".questionnaire");
                // As the reference validator: example URLs are only noted.
                let severity = if canonical.starts_with("http://example.org")
                    || canonical.starts_with("https://example.org")
                {
                    Severity::Information
                } else {
                    Severity::Warning
                };
                self.issue(
                    severity,
                    "not-found",
                    format!(
                        "the Questionnaire {canonical} could not be found, so the answers were \
                         not checked against it"
                    ),
                );
                self.path.truncate(mark);
                if !self.missing_questionnaires.iter().any(|c| c == canonical) {
                    self.missing_questionnaires.push(canonical.to_string());
                }
            }
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
            let ext = if is_primitive_type(child, ti) {
                companion(obj, key)
            } else {
                None
            };
            self.values(val, node, c, ti, Pass::Base, ext);
            self.path.truncate(mark);
        }
        for &c in &el.children {
            let child = &node.prof.elements[c];
            let n = self.scratch[base..]
                .iter()
                .find(|e| e.0 == c)
                .map_or(0, |e| e.1);
            self.cardinality(child, n, None);
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
            self.element_rules(val, el, code, node.prof, pass);
            return;
        }
        // A resource inside a resource: contained, Bundle.entry.resource, Parameters.
        if code == "Resource" || self.v.defs.is_resource_type(code) {
            if pass == Pass::Base {
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
        let one = |run: &mut Self, v: &'v Value| match v.as_object() {
            Some(o) => {
                // `value` belongs in the main property, not in `_name`.
                if o.contains_key("value") {
                    run.error("structure", "the value of a primitive goes in the element itself, not in its _ companion".into());
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
                    one(self, it);
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
                        one(self, it);
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
            (v, _) => one(self, v),
        }
    }

    /// The rules an element states about each of its values: fixed or pattern value, binding,
    /// invariants (a profile pass names the profile in its messages).
    fn element_rules(
        &mut self,
        val: &'v Value,
        el: &Element,
        code: &str,
        prof: &Profile,
        pass: Pass,
    ) {
        self.fixed_pattern(val, el, prof, pass);
        if el.min_value.is_some() || el.max_value.is_some() {
            self.min_max(val, el, code, prof, pass);
        }
        self.binding(val, el, code, pass);
        let profile = (pass == Pass::Profile).then_some(prof);
        self.constraints(val, el, code, pass, profile);
    }

    /// A profile pass over `val` from the root of profile `p`: its root invariants, then its
    /// elements.
    /// One of several profiles of which conforming to any one is enough: validates against `p`
    /// aside, and keeps its findings in `best` when it conforms (then true: stop trying) or when
    /// they are fewer than the closest so far.
    fn one_of_profiles(
        &mut self,
        val: &'v Value,
        obj: &'v Map<String, Value>,
        p: &'d Profile,
        type_code: &str,
        best: &mut Option<Vec<Issue>>,
    ) -> bool {
        let before = std::mem::take(&mut self.issues);
        self.profile_root(val, obj, p, type_code);
        let found = std::mem::replace(&mut self.issues, before);
        let conforms = !found.iter().any(|i| i.severity <= Severity::Error);
        if conforms || best.as_ref().is_none_or(|b| b.len() > found.len()) {
            *best = Some(found);
        }
        conforms
    }

    fn profile_root(
        &mut self,
        val: &'v Value,
        obj: &'v Map<String, Value>,
        p: &'d Profile,
        type_code: &str,
    ) {
        let node = Node { prof: p, elem: 0 };
        self.constraints(val, node.el(), type_code, Pass::Profile, Some(p));
        self.object(obj, node, Pass::Profile);
    }

    /// `minValue[x]`/`maxValue[x]`: numbers, dates, times and Quantities (converted between
    /// the common UCUM units).
    fn min_max(&mut self, val: &Value, el: &Element, code: &str, prof: &Profile, pass: Pass) {
        use std::cmp::Ordering;
        let by = if pass == Pass::Profile {
            format!(" (profile {})", prof.label())
        } else {
            String::new()
        };
        for (bound, want, word) in [
            (&el.min_value, Ordering::Less, "less than the minimum"),
            (&el.max_value, Ordering::Greater, "more than the maximum"),
        ] {
            let Some(bound) = bound else { continue };
            let kind = if code == "Quantity" || code.is_empty() {
                // a Duration or Age constrained through its Quantity base
                "Quantity"
            } else {
                code
            };
            match super::order::compare(kind, val, bound) {
                Some(o) if o == want => self.error(
                    "value",
                    format!(
                        "{} is {word} of {}{by}",
                        super::order::show(kind, val),
                        super::order::show(kind, bound)
                    ),
                ),
                Some(_) => {}
                None if val.is_object()
                    && val.get("value").is_some()
                    && !super::order::quantities_comparable(val, bound) =>
                {
                    self.error(
                        "value",
                        format!(
                            "{} cannot be compared with the {} {}{by}: the units do not convert",
                            super::order::show(kind, val),
                            if want == Ordering::Less {
                                "minimum"
                            } else {
                                "maximum"
                            },
                            super::order::show(kind, bound)
                        ),
                    )
                }
                None => {}
            }
        }
    }

    fn fixed_pattern(&mut self, val: &Value, el: &Element, prof: &Profile, pass: Pass) {
        let by = || {
            if pass == Pass::Profile {
                format!(" by profile {}", prof.label())
            } else {
                String::new()
            }
        };
        if let Some(f) = &el.fixed {
            if !equal_ignoring_extras(val, f) {
                self.error(
                    "value",
                    format!(
                        "must be exactly {}{}, found {}",
                        compact(f),
                        by(),
                        compact(val)
                    ),
                );
            }
        }
        if let Some(p) = &el.pattern {
            if !matches_pattern(val, p) {
                self.error(
                    "value",
                    format!(
                        "must match the pattern {}{}, found {}",
                        compact(p),
                        by(),
                        compact(val)
                    ),
                );
            }
        }
    }

    fn binding(&mut self, val: &Value, el: &Element, code: &str, pass: Pass) {
        let Some(b) = &el.binding else {
            return;
        };
        if b.strength == Strength::Example {
            return;
        }
        super::bindings::check(self, val, b, code, pass);
    }

    fn constraints(
        &mut self,
        val: &'v Value,
        el: &Element,
        type_code: &str,
        pass: Pass,
        profile: Option<&Profile>,
    ) {
        if el.constraints.is_empty() {
            return;
        }
        super::invariants::check(self, val, el, type_code, pass, profile);
    }

    /// Reference format, contained and Bundle resolution, target types (narrowed by `profile`).
    fn reference_targets(
        &mut self,
        obj: &'v Map<String, Value>,
        el: &Element,
        profile: Option<&Profile>,
    ) {
        let Some(Value::String(r)) = obj.get("reference") else {
            return;
        };
        let mark = self.path.len();
        self.path.push_str(".reference");
        let target_type = self.reference_type(r, profile.is_none());
        if let (Some(t), Some(Value::String(declared))) = (&target_type, obj.get("type")) {
            if t != declared && profile.is_none() {
                self.error(
                    "value",
                    format!("the reference points to a {t} but type says {declared}"),
                );
            }
        }
        if let Some(t) = target_type {
            let allowed: Vec<String> = el
                .types
                .iter()
                .filter(|ty| ty.code == "Reference")
                .flat_map(|ty| ty.target_profiles.iter())
                .filter_map(|tp| self.v.defs.profile(tp).map(|p| p.type_name.clone()))
                .collect();
            let any = allowed.is_empty()
                || allowed
                    .iter()
                    .any(|a| a == "Resource" || *a == t || self.v.defs.derives_from(&t, a));
            if !any {
                let by = profile
                    .map(|p| format!(" by profile {}", p.label()))
                    .unwrap_or_default();
                self.error(
                    "invalid",
                    format!("this reference points to a resource of type {t}, which is not allowed here{by}; allowed: {}", allowed.join(", ")),
                );
            }
        }
        self.path.truncate(mark);
    }

    /// The resource type a reference points to, when it can be told; reports malformed ones.
    fn reference_type(&mut self, r: &str, report: bool) -> Option<String> {
        if let Some(local) = r.strip_prefix('#') {
            let found = self.contained(local);
            if local.is_empty() {
                return None; // `#` refers to the container itself
            }
            return match found {
                Some(c) => c
                    .get("resourceType")
                    .and_then(Value::as_str)
                    .map(String::from),
                None => {
                    if report {
                        self.error(
                            "not-found",
                            format!("no contained resource has id {local:?}"),
                        );
                    }
                    None
                }
            };
        }
        if report && self.bundle.is_some() {
            self.bundle_versions(r);
        }
        if let Some(entry) = self.bundle_entry(r) {
            return entry
                .get("resourceType")
                .and_then(Value::as_str)
                .map(String::from);
        }
        if r.starts_with("urn:uuid:") || r.starts_with("urn:oid:") {
            if report && self.bundle.is_some() {
                self.warning(
                    "not-found",
                    format!("{r} is not the fullUrl of any entry in this Bundle"),
                );
            }
            return None;
        }
        // A conditional reference (`Patient?identifier=…`), resolved by the server in a transaction.
        if let Some((t, _)) = r.split_once('?') {
            if self.v.defs.is_resource_type(t) {
                return Some(t.to_string());
            }
        }
        // [base/]Type/id[/_history/vid]
        let mut segs: Vec<&str> = r.split('/').collect();
        if segs.len() >= 4 && segs[segs.len() - 2] == "_history" {
            segs.truncate(segs.len() - 2);
        }
        let n = segs.len();
        if n >= 2 && self.v.defs.is_resource_type(segs[n - 2]) {
            if !crate::fhir::is_valid_id(segs[n - 1]) && report {
                self.error(
                    "value",
                    format!("{:?} is not a valid id in reference {r:?}", segs[n - 1]),
                );
            }
            return Some(segs[n - 2].to_string());
        }
        if r.contains("://") || r.starts_with("urn:") {
            return None; // an absolute reference we cannot interpret; allowed
        }
        if report {
            let first = segs.first().copied().unwrap_or_default();
            let hint = if n == 1 {
                " (write it as Type/id, e.g. Patient/123)".to_string()
            } else {
                format!(" ({first:?} is not a resource type)")
            };
            self.error("value", format!("{r:?} is not a valid reference{hint}"));
        }
        None
    }

    /// The resource a reference points to, when it is contained or in the enclosing Bundle.
    fn resolve_reference(&self, r: &str) -> Option<&'v Value> {
        if let Some(local) = r.strip_prefix('#') {
            return self.contained(local);
        }
        self.bundle_entry(r)
    }

    /// The contained resource with id `local` of the nearest enclosing resource that has one: a
    /// Bundle entry's resource resolves its `#id` in its own `contained`, not in the Bundle's.
    fn contained(&self, local: &str) -> Option<&'v Value> {
        self.resources.iter().rev().find_map(|c| {
            c.get("contained")?
                .as_array()?
                .iter()
                .find(|c| c.get("id").and_then(Value::as_str) == Some(local))
        })
    }

    /// The resource of the Bundle entry whose fullUrl is `r` (or ends with `/r` for relative refs).
    fn bundle_entry(&self, r: &str) -> Option<&'v Value> {
        let entries = self.bundle?.get("entry")?.as_array()?;
        entries.iter().find_map(|e| {
            let full = e.get("fullUrl")?.as_str()?;
            let hit = full == r
                || (!r.contains(':')
                    && full.len() > r.len()
                    && full.ends_with(r)
                    && full.as_bytes()[full.len() - r.len() - 1] == b'/');
            if hit {
                e.get("resource")
            } else {
                None
            }
        })
    }

    /// Profile pass over a resource-typed element: the types (and profiles on them) the element
    /// allows.
    fn resource_profiles(&mut self, val: &'v Value, el: &Element) {
        let Some(obj) = val.as_object() else {
            return;
        };
        let Some(rtype) = obj.get("resourceType").and_then(Value::as_str) else {
            return;
        };
        if el.types.is_empty()
            || el
                .types
                .iter()
                .any(|t| t.code == "Resource" && t.profiles.is_empty())
        {
            return;
        }
        let fitting: Vec<&super::model::TypeRef> = el
            .types
            .iter()
            .filter(|t| {
                t.code == rtype || t.code == "Resource" || self.v.defs.derives_from(rtype, &t.code)
            })
            .collect();
        if fitting.is_empty() {
            let allowed: Vec<&str> = el.types.iter().map(|t| t.code.as_str()).collect();
            self.error(
                "invalid",
                format!(
                    "a {rtype} is not allowed here; allowed: {}",
                    allowed.join(", ")
                ),
            );
            return;
        }
        if fitting.iter().any(|t| t.profiles.is_empty()) {
            return;
        }
        let mut profiles = Vec::new();
        for url in fitting.iter().flat_map(|t| t.profiles.iter()) {
            match self.v.defs.profile(url) {
                Some(p)
                    if p.type_name == rtype || self.v.defs.derives_from(rtype, &p.type_name) =>
                {
                    profiles.push(p)
                }
                Some(_) => {}
                None => self.warning(
                    "not-found",
                    format!("profile {url} is not loaded; not checked"),
                ),
            }
        }
        // Conforming to any one of them is enough; report the closest when none fits.
        let mut best: Option<Vec<Issue>> = None;
        for p in profiles {
            if self.one_of_profiles(val, obj, p, rtype, &mut best) {
                break;
            }
        }
        self.issues.extend(best.unwrap_or_default());
    }

    /// Sliced element in a profile pass: sort the values into slices by discriminator, then check
    /// each slice's cardinality and each value against its slice.
    fn slicing(&mut self, val: &'v Value, parent: Node<'d>, c: ElemIdx, choice_type: Option<&str>) {
        let el = &parent.prof.elements[c];
        let Some(slicing) = &el.slicing else {
            return;
        };
        let items: Vec<&'v Value> = match val {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        let is_array = val.is_array();
        self.undetermined = false;
        let mut assigned: Vec<Option<ElemIdx>> = Vec::with_capacity(items.len());
        for item in &items {
            let slice = el.slices.iter().copied().find(|&s| {
                self.in_slice(item, parent.prof, s, &slicing.discriminators, choice_type)
            });
            assigned.push(slice);
        }
        if self.undetermined {
            self.undetermined = false;
            self.warning(
                "not-supported",
                format!(
                    "could not sort {} into the slices of profile {}: they are told apart by the \
                     referenced resources, which are not in this Bundle or contained",
                    el.path,
                    parent.prof.label()
                ),
            );
            for item in &items {
                self.item(
                    item,
                    Node {
                        prof: parent.prof,
                        elem: c,
                    },
                    0,
                    Pass::Profile,
                );
            }
            return;
        }
        let mark = self.path.len();
        let mut last_slice_pos = 0usize;
        let mut seen_unsliced = false;
        for (i, item) in items.iter().enumerate() {
            if is_array {
                push_index(&mut self.path, i);
            }
            match assigned[i] {
                Some(s) => {
                    let pos = el.slices.iter().position(|&x| x == s).unwrap_or(0);
                    if slicing.ordered && pos < last_slice_pos {
                        self.error(
                            "structure",
                            format!("slice {:?} is out of order: profile {} requires the slices of {} in order", parent.prof.elements[s].slice_name.as_deref().unwrap_or(""), parent.prof.label(), el.path),
                        );
                    }
                    last_slice_pos = pos;
                    if slicing.rules == SlicingRules::OpenAtEnd && seen_unsliced {
                        self.error(
                            "structure",
                            format!("values not in a slice must come after the sliced ones (profile {}, {})", parent.prof.label(), el.path),
                        );
                    }
                    let slice_node = Node {
                        prof: parent.prof,
                        elem: s,
                    };
                    let ti = choice_type
                        .and_then(|t| slice_node.el().types.iter().position(|x| x.code == t))
                        .unwrap_or(0);
                    self.item(item, slice_node, ti, Pass::Profile);
                }
                None => {
                    seen_unsliced = true;
                    if slicing.rules == SlicingRules::Closed {
                        let names: Vec<&str> = el
                            .slices
                            .iter()
                            .filter_map(|&s| parent.prof.elements[s].slice_name.as_deref())
                            .collect();
                        self.error(
                            "structure",
                            format!(
                                "this value matches none of the slices of {} ({}), and profile {} allows no others",
                                el.path,
                                names.join(", "),
                                parent.prof.label()
                            ),
                        );
                    } else {
                        let ti = choice_type
                            .and_then(|t| el.types.iter().position(|x| x.code == t))
                            .unwrap_or(0);
                        self.item(
                            item,
                            Node {
                                prof: parent.prof,
                                elem: c,
                            },
                            ti,
                            Pass::Profile,
                        );
                    }
                }
            }
            self.path.truncate(mark);
        }
        for &s in &el.slices {
            let slice = &parent.prof.elements[s];
            let n = assigned.iter().filter(|a| **a == Some(s)).count();
            let name = slice.slice_name.as_deref().unwrap_or("");
            if (n as u64) < u64::from(slice.min) {
                self.error(
                    "required",
                    format!(
                        "slice {name:?} of {} needs at least {} value(s) by profile {}, found {n}",
                        el.path,
                        slice.min,
                        parent.prof.label()
                    ),
                );
            }
            if slice.max.is_some_and(|m| n as u64 > u64::from(m)) {
                self.error(
                    "structure",
                    format!(
                        "slice {name:?} of {} allows at most {} value(s) by profile {}, found {n}",
                        el.path,
                        slice.max_text(),
                        parent.prof.label()
                    ),
                );
            }
        }
    }

    /// The required slices of child `c` of `parent`, which has no values at all.
    fn missing_slices(&mut self, parent: Node<'d>, c: ElemIdx) {
        let el = &parent.prof.elements[c];
        for &s in &el.slices {
            let slice = &parent.prof.elements[s];
            if slice.min > 0 {
                let name = slice.slice_name.as_deref().unwrap_or("");
                self.error(
                    "required",
                    format!(
                        "slice {name:?} of {} needs at least {} value(s) by profile {}, found 0",
                        el.path,
                        slice.min,
                        parent.prof.label()
                    ),
                );
            }
        }
    }

    /// Whether `item` belongs to slice `s` by every discriminator.
    fn in_slice(
        &mut self,
        item: &Value,
        prof: &'d Profile,
        s: ElemIdx,
        discriminators: &[super::model::Discriminator],
        choice_type: Option<&str>,
    ) -> bool {
        let slice = &prof.elements[s];
        if discriminators.is_empty() {
            return false;
        }
        discriminators.iter().all(|d| {
            let path = d.path.as_str();
            match d.kind {
                DiscriminatorKind::Value | DiscriminatorKind::Pattern => {
                    let expected = self.slice_values(prof, s, path);
                    if expected.is_empty() {
                        return false;
                    }
                    let actual = match path.strip_prefix("resolve()") {
                        Some(rest) => {
                            let target = item
                                .get("reference")
                                .and_then(Value::as_str)
                                .and_then(|r| self.resolve_reference(r));
                            match target {
                                Some(t) => json_path(t, rest.trim_start_matches('.')),
                                None => {
                                    self.undetermined = true;
                                    return false;
                                }
                            }
                        }
                        None => json_path(item, path),
                    };
                    expected.iter().all(|(want, pattern)| {
                        actual.iter().any(|a| {
                            if *pattern {
                                matches_pattern(a, want)
                            } else {
                                equal_ignoring_extras(a, want)
                            }
                        })
                    })
                }
                DiscriminatorKind::Exists => {
                    let target = self.slice_element(prof, s, path);
                    let present = !json_path(item, path).is_empty();
                    match target {
                        Some(t) if t.max == Some(0) => !present,
                        Some(t) if t.min > 0 => present,
                        _ => true,
                    }
                }
                DiscriminatorKind::Type => {
                    let t = if path == "$this" {
                        Some(slice)
                    } else {
                        self.slice_element(prof, s, path)
                    };
                    let Some(t) = t else { return false };
                    if let (Some(ct), "$this") = (choice_type, path) {
                        return t.types.iter().any(|ty| ty.code == ct);
                    }
                    if let Some(suffix) = choice_suffix_at(item, path) {
                        return t
                            .types
                            .iter()
                            .any(|ty| ty.code.eq_ignore_ascii_case(&suffix));
                    }
                    let target = if path == "$this" {
                        Some(item)
                    } else {
                        json_path(item, path).into_iter().next()
                    };
                    let Some(target) = target else { return false };
                    let actual = target
                        .get("resourceType")
                        .and_then(Value::as_str)
                        .map(String::from);
                    match actual {
                        Some(a) => t
                            .types
                            .iter()
                            .any(|ty| ty.code == a || ty.code == "Resource"),
                        None => t.types.len() == 1,
                    }
                }
                DiscriminatorKind::Profile => {
                    let target = if path == "$this" {
                        Some(item)
                    } else {
                        json_path(item, path).into_iter().next()
                    };
                    let Some(target) = target else { return false };
                    let el = if path == "$this" {
                        Some(slice)
                    } else {
                        self.slice_element(prof, s, path)
                    };
                    let Some(el) = el else { return false };
                    let urls: Vec<String> = el
                        .types
                        .iter()
                        .flat_map(|t| t.profiles.iter().chain(t.target_profiles.iter()))
                        .cloned()
                        .collect();
                    urls.iter().any(|u| self.v.conforms(target, u))
                }
            }
        })
    }

    /// The element at `path` below slice `s` (dotted child names; `$this` is the slice itself).
    fn slice_element(&self, prof: &'d Profile, s: ElemIdx, path: &str) -> Option<&'d Element> {
        let mut node = Node { prof, elem: s };
        if path == "$this" {
            return Some(node.el());
        }
        for step in path.split('.') {
            let step = step.trim_start_matches("$this");
            if step.is_empty() {
                continue;
            }
            let el = node.el();
            let found = el
                .children
                .iter()
                .copied()
                .find(|&c| node.prof.elements[c].name == step);
            match found {
                Some(c) => {
                    node = Node {
                        prof: node.prof,
                        elem: c,
                    }
                }
                None => {
                    // not unfolded in this profile: look into the type's profile
                    let t = el.types.first()?;
                    let p = t.profiles.first().and_then(|u| self.v.defs.profile(u))?;
                    let c = p
                        .root()
                        .children
                        .iter()
                        .copied()
                        .find(|&c| p.elements[c].name == step)?;
                    node = Node { prof: p, elem: c };
                }
            }
        }
        Some(node.el())
    }

    /// The fixed (`.1 = false`) or pattern (`.1 = true`) values a slice requires at `path`,
    /// looking through re-slices on the way (`code.coding:SBPCode.code`).
    fn slice_values(&self, prof: &'d Profile, s: ElemIdx, path: &str) -> Vec<(Value, bool)> {
        let mut nodes = vec![Node { prof, elem: s }];
        for step in path_steps(path) {
            if step == "$this" || step.is_empty() {
                continue;
            }
            let mut next = Vec::new();
            if step == "resolve()" {
                for node in nodes {
                    for t in &node.el().types {
                        for tp in &t.target_profiles {
                            if let Some(p) = self.v.defs.profile(tp) {
                                next.push(Node { prof: p, elem: 0 });
                            }
                        }
                    }
                }
                nodes = next;
                continue;
            }
            if let Some(url) = extension_step(step) {
                for node in nodes {
                    for &c in &node.el().children {
                        let ext = &node.prof.elements[c];
                        if ext.name != "extension" {
                            continue;
                        }
                        for &sl in &ext.slices {
                            let se = &node.prof.elements[sl];
                            if se
                                .types
                                .iter()
                                .any(|t| t.profiles.iter().any(|p| strip_version(p) == url))
                            {
                                next.push(Node {
                                    prof: node.prof,
                                    elem: sl,
                                });
                            }
                        }
                    }
                }
                nodes = next;
                continue;
            }
            for node in nodes {
                let el = node.el();
                let kids: Vec<ElemIdx> = el
                    .children
                    .iter()
                    .copied()
                    .filter(|&c| node.prof.elements[c].name == step)
                    .collect();
                if kids.is_empty() {
                    if let Some(p) = el
                        .types
                        .first()
                        .and_then(|t| t.profiles.first())
                        .and_then(|u| self.v.defs.profile(u))
                    {
                        for &c in &p.root().children {
                            if p.elements[c].name == step {
                                next.push(Node { prof: p, elem: c });
                            }
                        }
                    }
                }
                for c in kids {
                    next.push(Node {
                        prof: node.prof,
                        elem: c,
                    });
                    for &sl in &node.prof.elements[c].slices {
                        next.push(Node {
                            prof: node.prof,
                            elem: sl,
                        });
                    }
                }
            }
            nodes = next;
        }
        let mut out: Vec<(Value, bool)> = nodes
            .iter()
            .filter_map(|n| {
                let el = n.el();
                el.fixed
                    .clone()
                    .map(|f| (f, false))
                    .or_else(|| el.pattern.clone().map(|p| (p, true)))
                    .or_else(|| children_pattern(*n, 0).map(|p| (p, true)))
            })
            .collect();
        // The `url` of an extension slice is the canonical of the extension it names (without
        // the `|version` a published snapshot or our pinning may give it).
        if out.is_empty() && path == "url" {
            if let Some(ext) = prof.elements[s]
                .types
                .first()
                .and_then(|t| t.profiles.first())
            {
                out.push((Value::String(strip_version(ext).to_string()), false));
            }
        }
        out
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

/// For a path whose last step names a choice element (`$this.content`), the type suffix of the
/// JSON key the instance used (`Attachment` for `contentAttachment`).
fn choice_suffix_at(v: &Value, path: &str) -> Option<String> {
    let (parent, last) = match path.rsplit_once('.') {
        Some((p, l)) => (p, l),
        None => ("$this", path),
    };
    if last == "$this" || last.is_empty() {
        return None;
    }
    json_path(v, parent).into_iter().find_map(|p| {
        p.as_object()?.keys().find_map(|k| {
            let rest = k.strip_prefix(last)?;
            rest.starts_with(|c: char| c.is_ascii_uppercase())
                .then(|| rest.to_string())
        })
    })
}

/// A pattern assembled from the fixed/pattern values of an element's children (a slice that
/// fixes `value[x].code` and `value[x].system` discriminates on `value` by both).
fn children_pattern(node: Node<'_>, depth: usize) -> Option<Value> {
    if depth > 4 {
        return None;
    }
    let el = node.el();
    let mut obj = Map::new();
    for &c in &el.children {
        let child = &node.prof.elements[c];
        let v = child
            .fixed
            .clone()
            .or_else(|| child.pattern.clone())
            .or_else(|| {
                children_pattern(
                    Node {
                        prof: node.prof,
                        elem: c,
                    },
                    depth + 1,
                )
            });
        if let Some(v) = v {
            let key = if child.choice {
                match child.types.first() {
                    Some(t) if child.types.len() == 1 => choice_key(&child.name, &t.code),
                    _ => continue,
                }
            } else {
                child.name.clone()
            };
            obj.insert(key, v);
        }
    }
    (!obj.is_empty()).then_some(Value::Object(obj))
}

/// `extension('http://…')` → the url.
fn extension_step(step: &str) -> Option<&str> {
    step.strip_prefix("extension(")?
        .strip_suffix(')')
        .map(|u| u.trim_matches(|c| c == '\'' || c == '"'))
}

/// Split a discriminator path on dots outside parentheses and quotes.
fn path_steps(path: &str) -> Vec<&str> {
    let mut steps = Vec::new();
    let (mut depth, mut quote, mut start) = (0i32, false, 0usize);
    for (i, c) in path.char_indices() {
        match c {
            '\'' => quote = !quote,
            '(' if !quote => depth += 1,
            ')' if !quote => depth -= 1,
            '.' if !quote && depth == 0 => {
                steps.push(&path[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    steps.push(&path[start..]);
    steps
}

/// Values at a dotted path below `v` (arrays flattened); `$this` is `v`.
pub(crate) fn json_path<'a>(v: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![v];
    for step in path_steps(path) {
        if step == "$this" || step.is_empty() {
            continue;
        }
        let mut next = Vec::new();
        if let Some(url) = extension_step(step) {
            for c in current {
                for x in c
                    .get("extension")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if x.get("url").and_then(Value::as_str) == Some(url) {
                        next.push(x);
                    }
                }
            }
            current = next;
            continue;
        }
        for c in current {
            let child = c.get(step).or_else(|| {
                // a choice step (`value`) matches any `valueX`
                c.as_object().and_then(|o| {
                    o.iter()
                        .find(|(k, _)| {
                            k.strip_prefix(step)
                                .is_some_and(|r| r.starts_with(|ch: char| ch.is_ascii_uppercase()))
                        })
                        .map(|(_, v)| v)
                })
            });
            match child {
                Some(Value::Array(a)) => next.extend(a.iter()),
                Some(x) => next.push(x),
                None => {}
            }
        }
        current = next;
    }
    current
}

/// Fixed-value equality: exact, except that ids and extensions in the instance are allowed.
fn equal_ignoring_extras(actual: &Value, fixed: &Value) -> bool {
    match (actual, fixed) {
        (Value::Object(a), Value::Object(f)) => {
            f.iter()
                .all(|(k, fv)| a.get(k).is_some_and(|av| equal_ignoring_extras(av, fv)))
                && a.keys()
                    .all(|k| f.contains_key(k) || k == "id" || k == "extension")
        }
        (Value::Array(a), Value::Array(f)) => {
            a.len() == f.len() && a.iter().zip(f).all(|(x, y)| equal_ignoring_extras(x, y))
        }
        (Value::Number(a), Value::Number(f)) => numbers_equal(a, f),
        _ => actual == fixed,
    }
}

/// Pattern matching: every part of the pattern is present in the instance (arrays: each pattern
/// item matches some instance item).
pub(crate) fn matches_pattern(actual: &Value, pattern: &Value) -> bool {
    match (actual, pattern) {
        (Value::Object(a), Value::Object(p)) => p
            .iter()
            .all(|(k, pv)| a.get(k).is_some_and(|av| matches_pattern(av, pv))),
        (Value::Array(a), Value::Array(p)) => p
            .iter()
            .all(|pv| a.iter().any(|av| matches_pattern(av, pv))),
        (Value::Array(a), p) => a.iter().any(|av| matches_pattern(av, p)),
        (Value::Number(a), Value::Number(p)) => numbers_equal(a, p),
        _ => actual == pattern,
    }
}

fn numbers_equal(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    a.to_string() == b.to_string() || a.as_f64().zip(b.as_f64()).is_some_and(|(x, y)| x == y)
}

fn compact(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 120 {
        format!("{}…", truncate(&s))
    } else {
        s
    }
}
