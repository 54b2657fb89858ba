//! References: their format, resolution to contained resources and Bundle entries, target
//! types, and the profiles a referenced or contained resource must meet.

use super::*;
use crate::fhir::Member;

impl<'d, 'v> Run<'d, 'v> {
    /// Reference format, contained and Bundle resolution, target types (narrowed by `profile`).
    pub(super) fn reference_targets(
        &mut self,
        obj: &'v Map<String, Value>,
        el: &Element,
        profile: Option<&Profile>,
    ) {
        let Some(Value::String(r)) = obj.member("reference") else {
            return;
        };
        let mark = self.path.len();
        self.path.push_str(".reference");
        let target_type = self.reference_type(r, profile.is_none());
        if let (Some(t), Some(Value::String(declared))) = (&target_type, obj.member("type")) {
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
    pub(super) fn reference_type(&mut self, r: &str, report: bool) -> Option<String> {
        if let Some(local) = r.strip_prefix('#') {
            let found = self.contained(local);
            if local.is_empty() {
                return None; // `#` refers to the container itself
            }
            return match found {
                Some(c) => c
                    .member("resourceType")
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
                .member("resourceType")
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
    pub(super) fn resolve_reference(&self, r: &str) -> Option<&'v Value> {
        if let Some(local) = r.strip_prefix('#') {
            return self.contained(local);
        }
        self.bundle_entry(r)
    }

    /// The resource of the Bundle entry whose fullUrl is `r` (or ends with `/r` for relative refs).
    pub(super) fn bundle_entry(&self, r: &str) -> Option<&'v Value> {
        let entries = self.bundle?.member("entry")?.as_array()?;
        entries
            .get(self.entry_index(entries).find(r)?)?
            .member("resource")
    }

    /// The index of the Bundle's `entries`, built on first use.
    pub(super) fn entry_index(&self, entries: &'v [Value]) -> &EntryIndex<'v> {
        self.bundle_index.get_or_init(|| EntryIndex::new(entries))
    }

    /// Profile pass over a resource-typed element: the types (and profiles on them) the element
    /// allows.
    pub(super) fn resource_profiles(&mut self, val: &'v Value, el: &Element) {
        let Some(obj) = val.as_object() else {
            return;
        };
        let Some(rtype) = obj.member("resourceType").and_then(Value::as_str) else {
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
        let fitting: Vec<&crate::validation::model::TypeRef> = el
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
}

/// Canonical references: a Questionnaire, a Measure.
impl<'d, 'v> Run<'d, 'v> {
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
        let is = |r: &&Value| r.member("resourceType").and_then(Value::as_str) == Some(rtype);
        if let Some(id) = canonical.strip_prefix('#') {
            return holder
                .member("contained")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(is)
                .find(|r| r.member("id").and_then(Value::as_str) == Some(id));
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
                && (r.member("url").and_then(Value::as_str) == Some(url)
                    && version
                        .is_none_or(|v| r.member("version").and_then(Value::as_str) == Some(v))
                    || literal.is_some() && r.member("id").and_then(Value::as_str) == literal)
        };
        let (v, supplied, bundle, scope): (&'d Validator, &'v [Value], _, _) =
            (self.v, self.supplied, self.bundle, self.scope);
        let in_bundle = bundle
            .and_then(|b| b.member("entry"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e.member("resource"))
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
    pub(super) fn questionnaire_response(&mut self, value: &'v Value, obj: &'v Map<String, Value>) {
        let Some(canonical) = crate::validation::questionnaire::canonical(obj) else {
            return;
        };
        match self.find_canonical("Questionnaire", canonical, obj) {
            Some(q) => crate::validation::questionnaire::check(self, value, q),
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
}

/// A Bundle's entries (those with a resource) found by reference in one look-up each: the
/// entry whose fullUrl is the reference, or, for a relative reference (no `:`), whose fullUrl
/// ends with `/` and the reference; the first in the Bundle's order when several match.
pub(super) struct EntryIndex<'v> {
    by_url: rustc_hash::FxHashMap<&'v str, usize>,
    /// The parts of each fullUrl after its last four `/` (`Patient/1` and `1` of
    /// `http://x/Patient/1`): [`tails`].
    by_tail: rustc_hash::FxHashMap<&'v str, usize>,
    /// The entries (in order) under each fullUrl without its `/_history/…`, and under its
    /// [`tails`]: the versions of one resource a reference may name.
    versions_by_url: rustc_hash::FxHashMap<&'v str, Vec<usize>>,
    versions_by_tail: rustc_hash::FxHashMap<&'v str, Vec<usize>>,
}

/// The parts of `full` after each of its last four `/` (none empty): what a relative reference
/// can name (`1`, `Patient/1`, up to `Patient/1/_history/2`). Every part after every `/` of a
/// client's fullUrl would cost the square of its length: an 800 kB fullUrl of slashes took 40 s.
fn tails(full: &str) -> impl Iterator<Item = &str> {
    full.rmatch_indices('/')
        .take(4)
        .filter(move |(p, _)| p + 1 < full.len())
        .map(move |(p, _)| &full[p + 1..])
}

impl<'v> EntryIndex<'v> {
    pub(super) fn new(entries: &'v [Value]) -> Self {
        let mut index = EntryIndex {
            by_url: Default::default(),
            by_tail: Default::default(),
            versions_by_url: Default::default(),
            versions_by_tail: Default::default(),
        };
        for (i, e) in entries.iter().enumerate() {
            let Some(full) = e.member("fullUrl").and_then(Value::as_str) else {
                continue;
            };
            if e.member("resource").is_none() {
                continue;
            }
            index.by_url.entry(full).or_insert(i);
            for tail in tails(full) {
                index.by_tail.entry(tail).or_insert(i);
            }
            let unversioned = super::rules::unversioned(full);
            index
                .versions_by_url
                .entry(unversioned)
                .or_default()
                .push(i);
            for tail in tails(unversioned) {
                index.versions_by_tail.entry(tail).or_default().push(i);
            }
        }
        index
    }

    /// The entries, in order, whose fullUrl without its version is `target`, or ends with
    /// `/target` when `target` is relative (has no `:`).
    pub(super) fn versions(&self, target: &str) -> Vec<usize> {
        let exact = self
            .versions_by_url
            .get(target)
            .map_or(&[][..], Vec::as_slice);
        let tail = match target.contains(':') {
            true => &[][..],
            false => self
                .versions_by_tail
                .get(target)
                .map_or(&[][..], Vec::as_slice),
        };
        let mut out: Vec<usize> = exact.iter().chain(tail).copied().collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The index of the entry `r` names.
    pub(super) fn find(&self, r: &str) -> Option<usize> {
        let exact = self.by_url.get(r).copied();
        let tail = if r.contains(':') {
            None
        } else {
            self.by_tail.get(r).copied()
        };
        match (exact, tail) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
