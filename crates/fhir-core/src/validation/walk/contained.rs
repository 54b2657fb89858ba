//! Contained resources: found by id through an index per enclosing resource, and dom-3 (every
//! contained resource is referenced from its container, or refers back to it) checked natively.
//!
//! dom-3's FHIRPath evaluates `%resource.descendants()` four times for every contained resource
//! and looks `'#' + id` up in the result one by one: its cost grows with the square of the
//! resource's size, so a resource with 16,000 contained entries took seconds of a worker. Here
//! the base pass notes the `#…` values it meets where dom-3 looks (a `reference` element, or a
//! `canonical`, `uri` or `url`), per enclosing resource, and the rule is one set look-up per
//! contained resource. `tests/validation/cases.rs` holds the two to the same verdicts.

use std::cell::OnceCell;

use crate::fhir::Member;
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::Value;

use super::Run;
use crate::fhir::outcome::Severity;
use crate::validation::model::Element;

/// What the walk keeps of one enclosing resource (aligned with [`Run::resources`]).
#[derive(Default)]
pub(crate) struct Frame<'v> {
    /// Its contained resources by id (the first of each id), built on the first `#id` look-up.
    by_id: OnceCell<FxHashMap<&'v str, &'v Value>>,
    /// The `#…` values met within it by the base pass, those inside its own contained resources
    /// included (dom-3 looks through all of its descendants).
    local_refs: Vec<&'v str>,
    /// A `reference` or a `canonical` of `#` within it: a reference to its container.
    refers_back: bool,
    /// The contained resources walked within it, each with its `refers_back`.
    contained_back: Vec<(&'v Value, bool)>,
}

/// How many unreferenced ids dom-3's message names.
const NAMED: usize = 5;

impl<'v> Run<'_, 'v> {
    /// The resource contained in an enclosing resource (innermost first) with id `local`.
    pub(super) fn contained(&self, local: &str) -> Option<&'v Value> {
        self.resources
            .iter()
            .zip(&self.frames)
            .rev()
            .find_map(|(resource, frame)| {
                frame
                    .by_id
                    .get_or_init(|| index(resource))
                    .get(local)
                    .copied()
            })
    }

    /// Note a primitive value met by the base pass where dom-3 looks for references to
    /// contained resources: a `reference` element, or a `canonical`, `uri` or `url`.
    pub(super) fn note_local_ref(&mut self, val: &'v Value, el: &Element, type_code: &str) {
        let Value::String(s) = val else { return };
        if !s.starts_with('#') {
            return;
        }
        let named_reference = el.path.rsplit('.').next() == Some("reference");
        let Some(frame) = self.frames.last_mut() else {
            return;
        };
        if named_reference || matches!(type_code, "canonical" | "uri" | "url") {
            frame.local_refs.push(s);
        }
        // dom-3 takes a reference back to the container from these two only.
        if s == "#" && (named_reference || type_code == "canonical") {
            frame.refers_back = true;
        }
    }

    /// dom-3 for `value`, once the base pass has walked it, if its definition's root `el` has
    /// the rule: one issue naming the contained resources nothing refers to.
    pub(super) fn dom3(&mut self, value: &'v Value, el: &Element) {
        let Some(rule) = el.constraints.iter().find(|c| c.key == "dom-3") else {
            return;
        };
        let Some(frame) = self.frames.last() else {
            return;
        };
        let unreferenced = unreferenced(value, frame);
        if unreferenced.is_empty() {
            return;
        }
        let text = rule.human.clone().unwrap_or_else(|| {
            "every contained resource must be referenced from the resource that contains it (or refer back to it)".into()
        });
        let mut named: Vec<String> = unreferenced
            .iter()
            .take(NAMED)
            .map(|id| format!("#{id}"))
            .collect();
        if unreferenced.len() > NAMED {
            named.push(format!("and {} more", unreferenced.len() - NAMED));
        }
        let severity = match rule.error {
            true => Severity::Error,
            false => Severity::Warning,
        };
        self.issue(
            severity,
            "invariant",
            format!("{text} [dom-3] (not referenced: {})", named.join(", ")),
        );
    }

    /// The resource `value` is walked: what it holds is handed to the enclosing resource.
    pub(super) fn close_frame(&mut self, value: &'v Value) {
        let Some(frame) = self.frames.pop() else {
            return;
        };
        if let Some(outer) = self.frames.last_mut() {
            outer.contained_back.push((value, frame.refers_back));
            outer.refers_back |= frame.refers_back;
            outer.local_refs.extend(frame.local_refs);
        }
    }

    /// A new enclosing resource.
    pub(super) fn open_frame(&mut self) {
        self.frames.push(Frame::default());
    }
}

/// The contained resources of `resource` by id, the first of each.
fn index(resource: &Value) -> FxHashMap<&str, &Value> {
    let mut by_id = FxHashMap::default();
    let contained = resource.member("contained").and_then(Value::as_array);
    for c in contained.into_iter().flatten() {
        if let Some(id) = c.member("id").and_then(Value::as_str) {
            by_id.entry(id).or_insert(c);
        }
    }
    by_id
}

/// The ids of the contained resources of `resource` that nothing within it references and that
/// do not refer back to it, in order.
fn unreferenced<'v>(resource: &'v Value, frame: &Frame<'v>) -> Vec<&'v str> {
    let Some(contained) = resource.member("contained").and_then(Value::as_array) else {
        return Vec::new();
    };
    let refs: FxHashSet<&str> = frame
        .local_refs
        .iter()
        .filter_map(|r| r.strip_prefix('#'))
        .collect();
    let back: FxHashMap<*const Value, bool> = frame
        .contained_back
        .iter()
        .map(|(c, back)| (*c as *const Value, *back))
        .collect();
    contained
        .iter()
        .filter(|c| c.is_object())
        .filter(|c| back.get(&(*c as *const Value)) != Some(&true))
        .filter_map(|c| {
            // dom-3 builds `'#' + id`, empty without an id, which leaves the resource out of
            // its `where` (the missing id is reported by its own rule).
            let id = c.member("id")?.as_str()?;
            (!refs.contains(id)).then_some(id)
        })
        .collect()
}
