//! Slicing in a profile pass: values sorted into slices by discriminator, each slice's
//! cardinality, required slices that are missing, and each value checked against its slice.

use super::element_rules::{equal_ignoring_extras, matches_pattern};
use super::*;
use crate::fhir::Member;

impl<'d, 'v> Run<'d, 'v> {
    /// Sliced element in a profile pass: sort the values into slices by discriminator, then check
    /// each slice's cardinality and each value against its slice.
    pub(super) fn slicing(
        &mut self,
        val: &'v Value,
        parent: Node<'d>,
        c: ElemIdx,
        choice_type: Option<&str>,
    ) {
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
        self.unmatchable.clear();
        let mut assigned: Vec<Option<ElemIdx>> = Vec::with_capacity(items.len());
        for item in &items {
            let slice = el.slices.iter().copied().find(|&s| {
                self.in_slice(item, parent.prof, s, &slicing.discriminators, choice_type)
            });
            assigned.push(slice);
        }
        let mut unmatchable = std::mem::take(&mut self.unmatchable);
        unmatchable.sort_unstable();
        unmatchable.dedup();
        if !unmatchable.is_empty() {
            let paths: Vec<&str> = slicing
                .discriminators
                .iter()
                .filter(|d| {
                    matches!(
                        d.kind,
                        DiscriminatorKind::Value | DiscriminatorKind::Pattern
                    )
                })
                .map(|d| d.path.as_str())
                .collect();
            for &s in &unmatchable {
                self.error(
                    "processing",
                    format!(
                        "the slices of {} cannot be told apart: slice {:?} of profile {} has no fixed \
                         value, pattern or required binding at its discriminator ({}), so no value \
                         can be matched to it",
                        el.path,
                        parent.prof.elements[s].slice_name.as_deref().unwrap_or(""),
                        parent.prof.label(),
                        paths.join(", ")
                    ),
                );
            }
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
                    }
                    // In no slice, open or closed: still held to the slicing's own element (its
                    // constraints and types), as every value of the element is.
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
    pub(super) fn missing_slices(&mut self, parent: Node<'d>, c: ElemIdx) {
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
    pub(super) fn in_slice(
        &mut self,
        item: &Value,
        prof: &'d Profile,
        s: ElemIdx,
        discriminators: &[crate::validation::model::Discriminator],
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
                        if self.nothing_to_match(prof, s, path) {
                            self.unmatchable.push(s);
                            return false;
                        }
                        // No fixed value or pattern: a required binding tells the slices apart.
                        return self.in_bound_slice(item, prof, s, path);
                    }
                    let actual = match path.strip_prefix("resolve()") {
                        Some(rest) => {
                            let target = item
                                .member("reference")
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
                DiscriminatorKind::Profile if path_steps(path).last() == Some(&"resolve()") => {
                    // The referenced resource (contained or in the Bundle) decides: it must
                    // conform to one of the slice's target profiles.
                    let Some((target, urls)) = self.resolved_and_targets(item, prof, s, path)
                    else {
                        return false;
                    };
                    urls.iter()
                        .any(|u| self.v.conforms_in(target, u, self.scope))
                }
                DiscriminatorKind::Type if path_steps(path).last() == Some(&"resolve()") => {
                    // The referenced resource's type is one its target profiles are for.
                    let Some((target, urls)) = self.resolved_and_targets(item, prof, s, path)
                    else {
                        return false;
                    };
                    let actual = target.member("resourceType").and_then(Value::as_str);
                    urls.iter().any(|u| {
                        self.v
                            .defs
                            .profile(u)
                            .is_some_and(|p| Some(p.type_name.as_str()) == actual)
                    })
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
                        .member("resourceType")
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
                    urls.iter()
                        .any(|u| self.v.conforms_in(target, u, self.scope))
                }
            }
        })
    }

    /// For a discriminator path ending in `resolve()`: the resource the item's reference names
    /// (contained or in the Bundle) and the target profiles the slice allows there. `None` when
    /// the item has no reference, or when it cannot be resolved (then the slices could not be
    /// told apart).
    fn resolved_and_targets(
        &mut self,
        item: &Value,
        prof: &'d Profile,
        s: ElemIdx,
        path: &str,
    ) -> Option<(&'v Value, Vec<&'d String>)> {
        let before = path.strip_suffix("resolve()").unwrap_or("");
        let before = before.trim_end_matches('.');
        let reference = json_path(item, before)
            .into_iter()
            .find_map(|r| r.member("reference").and_then(Value::as_str))?;
        let Some(target) = self.resolve_reference(reference) else {
            self.undetermined = true;
            return None;
        };
        let el = if before.is_empty() || before == "$this" {
            &prof.elements[s]
        } else {
            self.slice_element(prof, s, before)?
        };
        let urls = el
            .types
            .iter()
            .flat_map(|t| t.target_profiles.iter())
            .collect();
        Some((target, urls))
    }

    /// A value or pattern discriminator whose element the slice binds to a value set (required)
    /// instead of fixing it: the item is in the slice when a code at `path` is in the value set.
    fn in_bound_slice(&self, item: &Value, prof: &'d Profile, s: ElemIdx, path: &str) -> bool {
        let Some(el) = self.slice_element(prof, s, path) else {
            return false;
        };
        let Some(b) = el
            .binding
            .as_ref()
            .filter(|b| b.strength == Strength::Required)
        else {
            return false;
        };
        let type_code = el.types.first().map_or("code", |t| t.code.as_str());
        json_path(item, path).into_iter().any(|v| {
            crate::validation::bindings::codings(v, type_code)
                .unwrap_or_default()
                .iter()
                .any(|(system, code)| {
                    matches!(
                        self.v.terminology.check_code(&b.value_set, *system, code),
                        crate::validation::terminology::Membership::Member
                    )
                })
        })
    }

    /// Whether slice `s` has nothing a value or pattern discriminator at `path` could match:
    /// the element there (in the profile, or in the base definition of its type where the
    /// profile does not unfold it) has no fixed value or pattern (the caller found none) and no
    /// required binding. A pattern on an ancestor does not count: the discriminator names the
    /// element that carries the value (as HL7's reference validator reads it). Paths through
    /// `resolve()` or `extension(…)`, and paths that name no element, are left undecided.
    fn nothing_to_match(&self, prof: &'d Profile, s: ElemIdx, path: &str) -> bool {
        if path.contains('(') {
            return false;
        }
        let Some(el) = self.element_below(prof, s, path, true) else {
            return false;
        };
        el.fixed.is_none()
            && el.pattern.is_none()
            && !el
                .binding
                .as_ref()
                .is_some_and(|b| b.strength == Strength::Required)
    }

    /// The element at `path` below slice `s` (dotted child names; `$this` is the slice itself).
    pub(super) fn slice_element(
        &self,
        prof: &'d Profile,
        s: ElemIdx,
        path: &str,
    ) -> Option<&'d Element> {
        self.element_below(prof, s, path, false)
    }

    /// [`Run::slice_element`]: where the profile does not unfold a step, the step is looked up in
    /// the profile of the element's type; with `base_types`, in the type's base definition when
    /// the type names no profile that is loaded.
    fn element_below(
        &self,
        prof: &'d Profile,
        s: ElemIdx,
        path: &str,
        base_types: bool,
    ) -> Option<&'d Element> {
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
                    let p = t
                        .profiles
                        .first()
                        .and_then(|u| self.v.defs.profile(u))
                        .or_else(|| {
                            let base =
                                format!("http://hl7.org/fhir/StructureDefinition/{}", t.code);
                            base_types.then(|| self.v.defs.profile(&base)).flatten()
                        })?;
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
    pub(super) fn slice_values(
        &self,
        prof: &'d Profile,
        s: ElemIdx,
        path: &str,
    ) -> Vec<(Value, bool)> {
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

/// For a path whose last step names a choice element (`$this.content`), the type suffix of the
/// JSON key the instance used (`Attachment` for `contentAttachment`).
pub(super) fn choice_suffix_at(v: &Value, path: &str) -> Option<String> {
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
pub(super) fn children_pattern(node: Node<'_>, depth: usize) -> Option<Value> {
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
pub(super) fn extension_step(step: &str) -> Option<&str> {
    step.strip_prefix("extension(")?
        .strip_suffix(')')
        .map(|u| u.trim_matches(|c| c == '\'' || c == '"'))
}

/// Split a discriminator path on dots outside parentheses and quotes.
pub(super) fn path_steps(path: &str) -> Vec<&str> {
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
                    .member("extension")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if x.member("url").and_then(Value::as_str) == Some(url) {
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
