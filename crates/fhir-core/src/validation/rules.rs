//! Rules the walk applies to whole resources that no StructureDefinition states: a Bundle's
//! entries and links (what HL7's reference validator checks beyond the bdl-* invariants), and the
//! profiles that apply without being claimed (the core vital-signs profiles on an Observation
//! whose code is a vital sign).
//!
//! A child module of the walk, so it reports through the same [`Run`] (issues at FHIRPath-style
//! locations) without widening what the walk exposes.

use std::fmt::Write as _;

use crate::fhir::Member;
use serde_json::{Map, Value};

use super::references::EntryIndex;
use super::Run;
use crate::fhir::items_of as items;
use crate::validation::primitive::truncate;

/// A reference without its version (`…/_history/2`): the document rules ask whether the entry
/// is there at all (versions are [`Run::bundle_versions`]' business).
pub(super) fn unversioned(r: &str) -> &str {
    r.split("/_history/").next().unwrap_or(r)
}

/// The references of a Composition's sections and their sub-sections, with their paths.
fn section_entries<'a>(v: &'a Value, prefix: &str, out: &mut Vec<(String, &'a str, &'static str)>) {
    for (i, sec) in items(v, "section").enumerate() {
        let at = format!("{prefix}section[{i}]");
        for (j, e) in items(sec, "entry").enumerate() {
            if let Some(r) = str_at(e, "reference") {
                out.push((format!("{at}.entry[{j}]"), r, "section.entry"));
            }
        }
        section_entries(sec, &format!("{at}."), out);
    }
}

/// LOINC codes of the R4 vital signs (the codes the core profiles fix, and the more specific
/// codes HL7's validator also takes as each sign), with the core profile that applies to an
/// Observation carrying one, whether the resource claims it or not (R4 §"Vital Signs": "if a
/// vital sign is represented, the profile must be used").
const VITAL_SIGNS: &[(&str, &[&str])] = &[
    ("vitalspanel", &["85353-1"]),
    (
        "resprate",
        &[
            "9279-1", "76170-0", "76172-6", "76171-8", "19840-8", "33438-3", "76270-8", "11291-2",
        ],
    ),
    (
        "heartrate",
        &[
            "8867-4", "60978-4", "73795-7", "73799-9", "76476-1", "76477-9", "8889-8", "8890-6",
            "8891-4", "8892-2", "8893-0", "40443-4", "55425-3", "68999-2", "11328-2", "69000-8",
            "8886-4",
        ],
    ),
    (
        "oxygensat",
        &[
            "2708-6", "59408-5", "19224-5", "20564-1", "2709-4", "2710-2", "2711-0", "2713-6",
            "51733-4", "59417-6", "89276-0", "97549-0",
        ],
    ),
    (
        "bodytemp",
        &[
            "8310-5", "60834-9", "60835-6", "60836-4", "60838-0", "60955-2", "61009-7", "75539-7",
            "75987-8", "76010-8", "76011-6", "76278-1", "8309-7", "8328-7", "8329-5", "8330-3",
            "8331-1", "8332-9", "8333-7", "8334-5", "91371-5", "98657-0", "98663-8",
        ],
    ),
    (
        "bodyheight",
        &["8302-2", "3137-7", "3138-5", "8306-3", "8308-9"],
    ),
    ("headcircum", &["9843-4", "8287-5"]),
    (
        "bodyweight",
        &[
            "29463-7", "3141-9", "3142-7", "75292-3", "79348-9", "8350-1", "8351-9",
        ],
    ),
    ("bmi", &["39156-5", "59574-4", "89270-3"]),
    (
        "bp",
        &[
            "85354-9", "35094-2", "8459-0", "76534-7", "55284-4", "8480-6",
        ],
    ),
];

/// The core vital-signs profile that applies to an Observation by its code (the first LOINC
/// coding that is a vital sign decides, as in HL7's validator), if any.
pub(crate) fn vital_sign_profile(obs: &Map<String, Value>) -> Option<String> {
    let codings = obs.member("code")?.member("coding")?.as_array()?;
    for c in codings {
        if c.member("system").and_then(Value::as_str) != Some("http://loinc.org") {
            continue;
        }
        let Some(code) = c.member("code").and_then(Value::as_str) else {
            continue;
        };
        if let Some((name, _)) = VITAL_SIGNS.iter().find(|(_, codes)| codes.contains(&code)) {
            return Some(format!("http://hl7.org/fhir/StructureDefinition/{name}"));
        }
    }
    None
}

/// Whether `s` is an absolute URI: a scheme (`http:`, `urn:`, `mailto:` …) and something after it.
pub(super) fn is_absolute(s: &str) -> bool {
    crate::validation::primitive::has_scheme(s)
        && s.split_once(':').is_some_and(|(_, rest)| !rest.is_empty())
}

/// Whether `s` has the shape of a RESTful resource URL: `[http(s)://server/path/]Type/id`, with
/// an optional `/_history/vid`; returns the type and id when it does.
fn rest_url(s: &str, is_type: impl Fn(&str) -> bool) -> Option<(&str, &str)> {
    let s = match s.split_once("/_history/") {
        Some((head, v)) if is_id(v) => head,
        Some(_) => return None,
        None => s,
    };
    let rest = if let Some(r) = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
    {
        r
    } else if s.contains(':') {
        return None;
    } else {
        s
    };
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    if n < 2 {
        return None;
    }
    let (ty, id) = (segs[n - 2], segs[n - 1]);
    let path_ok = segs[..n - 2].iter().all(|p| {
        p.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '%' | '$' | '-' | '_'))
    });
    (path_ok && is_type(ty) && is_id(id)).then_some((ty, id))
}

fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn str_at<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.member(k).and_then(Value::as_str)
}

/// The resource types a searchset's `self` link searched for: the last path segment when it is a
/// type, else the `_type` parameter's list (empty when neither says).
fn searched_types(url: &str, is_type: impl Fn(&str) -> bool) -> Vec<&str> {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    if let Some(last) = head.rsplit('/').next().filter(|t| is_type(t)) {
        return vec![last];
    }
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|p| p.strip_prefix("_type="))
        .flat_map(|t| t.split(','))
        .collect()
}

/// R4's canonical resources: those whose `url` (a `uri`) is the resource's canonical identity.
const CANONICAL_RESOURCES: &[&str] = &[
    "ActivityDefinition",
    "CapabilityStatement",
    "ChargeItemDefinition",
    "CodeSystem",
    "CompartmentDefinition",
    "ConceptMap",
    "EffectEvidenceSynthesis",
    "EventDefinition",
    "Evidence",
    "EvidenceVariable",
    "ExampleScenario",
    "GraphDefinition",
    "ImplementationGuide",
    "Library",
    "Measure",
    "MessageDefinition",
    "OperationDefinition",
    "PlanDefinition",
    "Questionnaire",
    "ResearchDefinition",
    "ResearchElementDefinition",
    "RiskEvidenceSynthesis",
    "SearchParameter",
    "StructureDefinition",
    "StructureMap",
    "TerminologyCapabilities",
    "TestScript",
    "ValueSet",
];

impl<'v> Run<'_, 'v> {
    /// A canonical resource's `url` is what other resources cite it by, so it is absolute
    /// (`http://…`, `urn:uuid:…`), contained or not: `ValueSet/x` or `c1` is refused, as by HL7's
    /// validator. (The element is a `uri`, which alone would allow a relative one.)
    pub(super) fn canonical_url(&mut self, obj: &'v Map<String, Value>, rtype: &str) {
        let Some(url) = obj.member("url").and_then(Value::as_str) else {
            return;
        };
        if !url.is_empty() && !is_absolute(url) && CANONICAL_RESOURCES.contains(&rtype) {
            self.error_at(
                ".url",
                "value",
                format!(
                    "url {url:?} must be an absolute URL: it is the canonical URL other resources \
                     cite this {rtype} by (write e.g. http://example.org/fhir/{rtype}/… or a urn:uuid:)"
                ),
            );
        }
    }

    /// A CodeSystem that supplements another says so in `content` too (`supplement`): read as a
    /// code system of its own, its few codes would stand for the whole of the one it adds to.
    pub(super) fn code_system_rules(&mut self, obj: &'v Map<String, Value>) {
        let Some(base) = obj.member("supplements").and_then(Value::as_str) else {
            return;
        };
        let content = obj
            .member("content")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if content != "supplement" {
            self.error_at(
                ".content",
                "invariant",
                format!(
                    "this CodeSystem supplements {base}, so its content must be 'supplement', \
                     not {content:?}"
                ),
            );
        }
    }

    /// A CapabilityStatement's search parameter that names its definition has that
    /// definition's type: a `date` parameter defined as a `token` cannot be searched as said.
    /// The definitions known here are R4's own (`http://hl7.org/fhir/SearchParameter/Type-code`).
    pub(super) fn capability_statement_rules(&mut self, obj: &'v Map<String, Value>) {
        let registry = crate::fhir::search_params::SearchParamRegistry::embedded();
        let mark = self.path.len();
        let rests = obj
            .member("rest")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for (r, rest) in rests.enumerate() {
            for (i, res) in items(rest, "resource").enumerate() {
                for (k, sp) in items(res, "searchParam").enumerate() {
                    let (Some(def), Some(ty)) = (str_at(sp, "definition"), str_at(sp, "type"))
                    else {
                        continue;
                    };
                    let Some(id) = def.strip_prefix("http://hl7.org/fhir/SearchParameter/") else {
                        continue;
                    };
                    let Some(known) = id
                        .split_once('-')
                        .and_then(|(t, code)| registry.get(t, code))
                    else {
                        continue;
                    };
                    if known.ptype.code() != ty {
                        let _ = write!(self.path, ".rest[{r}].resource[{i}].searchParam[{k}].type");
                        self.error(
                            "value",
                            format!(
                                "search parameter {def} is of type {}, but this says {ty}",
                                known.ptype.code()
                            ),
                        );
                        self.path.truncate(mark);
                    }
                }
            }
        }
    }

    /// Bundle rules that are not invariants: each fullUrl absolute, and agreeing with its entry's
    /// type and id when it is a RESTful URL; link relations; a searchset's entries.
    pub(super) fn bundle_rules(&mut self, obj: &'v Map<String, Value>) {
        let btype = obj
            .member("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let entries: &[Value] = match obj.member("entry") {
            Some(Value::Array(a)) => a,
            _ => &[],
        };
        self.bundle_links(obj, btype);
        let mark = self.path.len();
        for (i, e) in entries.iter().enumerate() {
            let Some(full) = str_at(e, "fullUrl") else {
                continue;
            };
            let _ = write!(self.path, ".entry[{i}].fullUrl");
            if !is_absolute(full) {
                self.error(
                    "value",
                    format!(
                        "fullUrl {:?} must be an absolute URL (a RESTful URL, urn:uuid: or urn:oid:)",
                        truncate(full)
                    ),
                );
            } else if let Some(res) = e.member("resource") {
                let rt = str_at(res, "resourceType");
                let defs = &self.v.defs;
                // Only a fullUrl shaped like a RESTful URL of a resource must name the entry's own
                // type and id; any other absolute URI identifies the entry as it is.
                if let (Some(rt), Some(_)) = (rt, rest_url(full, |t| defs.is_resource_type(t))) {
                    match str_at(res, "id") {
                        None => self.error(
                            "value",
                            format!(
                                "fullUrl {full:?} is a RESTful URL, but the entry's resource has no id"
                            ),
                        ),
                        Some(id) => {
                            let tail = format!("/{rt}/{id}");
                            let trimmed = full.split("/_history/").next().unwrap_or(full);
                            if !trimmed.ends_with(&tail) && trimmed != &tail[1..] {
                                self.error(
                                    "value",
                                    format!("fullUrl {full:?} does not end with {rt}/{id}, the entry's type and id"),
                                );
                            }
                        }
                    }
                }
            }
            self.path.truncate(mark);
        }
        if btype == "searchset" {
            self.searchset(obj, entries);
        }
        if btype == "document" || btype == "message" {
            self.document_or_message(btype, entries);
        }
    }

    /// A document's Composition and a message's MessageHeader point into their Bundle: the
    /// references HL7's validator resolves there must name entries (the Composition's subject,
    /// encounter, custodian, authors, attesters and section entries; the MessageHeader's focus).
    /// In a document every entry must also be linked to the Composition: reachable from it by
    /// references (else a warning, if the entry at least refers to something that is), or an
    /// error when no chain of references in either direction connects them.
    fn document_or_message(&mut self, btype: &str, entries: &'v [Value]) {
        let Some(first) = entries.first().and_then(|e| e.member("resource")) else {
            return;
        };
        let index = EntryIndex::new(entries);
        let mut named: Vec<(String, &str, &str)> = Vec::new();
        match (btype, str_at(first, "resourceType")) {
            ("document", Some("Composition")) => {
                for key in ["subject", "encounter", "custodian"] {
                    if let Some(r) = first.member(key).and_then(|v| str_at(v, "reference")) {
                        named.push((key.to_string(), r, key));
                    }
                }
                for (i, a) in items(first, "author").enumerate() {
                    if let Some(r) = str_at(a, "reference") {
                        named.push((format!("author[{i}]"), r, "author"));
                    }
                }
                for (i, a) in items(first, "attester").enumerate() {
                    if let Some(r) = a.member("party").and_then(|p| str_at(p, "reference")) {
                        named.push((format!("attester[{i}].party"), r, "attester.party"));
                    }
                }
                section_entries(first, "", &mut named);
            }
            ("message", Some("MessageHeader")) => {
                for (i, f) in items(first, "focus").enumerate() {
                    if let Some(r) = str_at(f, "reference") {
                        named.push((format!("focus[{i}]"), r, "focus"));
                    }
                }
            }
            _ => return,
        }
        let container = if btype == "document" {
            "Composition"
        } else {
            "MessageHeader"
        };
        let mark = self.path.len();
        for (at, r, what) in named {
            if r.starts_with('#') || index.find(unversioned(r)).is_some() {
                continue;
            }
            let _ = write!(self.path, ".entry[0].resource.{at}");
            self.error(
                "not-found",
                format!(
                    "{r:?} is not an entry of this Bundle: a {btype}'s {container}.{what} must name one of its entries"
                ),
            );
            self.path.truncate(mark);
        }
        if btype == "document" {
            self.unlinked_entries(entries, &index);
        }
    }

    /// Document entries that the Composition's references do not reach (see
    /// [`Run::document_or_message`]).
    fn unlinked_entries(&mut self, entries: &'v [Value], index: &EntryIndex<'v>) {
        let edges: Vec<Vec<usize>> = entries
            .iter()
            .map(|e| {
                let mut out = Vec::new();
                if let Some(r) = e.member("resource") {
                    crate::fhir::each_reference(r, &mut |t| {
                        if let Some(j) = index.find(unversioned(t)) {
                            out.push(j);
                        }
                    });
                }
                out
            })
            .collect();
        let mut back: Vec<Vec<usize>> = vec![Vec::new(); entries.len()];
        for (i, targets) in edges.iter().enumerate() {
            for &j in targets {
                back[j].push(i);
            }
        }
        let reach = |undirected: bool| {
            let mut seen = vec![false; entries.len()];
            let mut todo = vec![0usize];
            seen[0] = true;
            while let Some(i) = todo.pop() {
                let behind = if undirected { &back[i][..] } else { &[] };
                for &j in edges[i].iter().chain(behind) {
                    if !seen[j] {
                        seen[j] = true;
                        todo.push(j);
                    }
                }
            }
            seen
        };
        let forward = reach(false);
        let connected = reach(true);
        let mark = self.path.len();
        for (i, e) in entries.iter().enumerate() {
            if forward[i] || e.member("resource").is_none() {
                continue;
            }
            let name = str_at(e, "fullUrl").unwrap_or("this entry");
            let _ = write!(self.path, ".entry[{i}]");
            if connected[i] {
                self.warning(
                    "informational",
                    format!("{name:?} is not reachable from the Composition by references, only linked to it backwards"),
                );
            } else {
                self.error(
                    "structure",
                    format!("{name:?} is not linked to the Composition: no chain of references, in either direction, connects a document's entry to it"),
                );
            }
            self.path.truncate(mark);
        }
    }

    /// `Bundle.link`: paging relations only where paging exists (searchset, history), and no
    /// relation among `self` and the paging ones twice.
    fn bundle_links(&mut self, obj: &'v Map<String, Value>, btype: &str) {
        let Some(Value::Array(links)) = obj.member("link") else {
            return;
        };
        const PAGING: [&str; 4] = ["first", "previous", "next", "last"];
        let paged = matches!(btype, "searchset" | "history");
        let known = matches!(
            btype,
            "document"
                | "message"
                | "collection"
                | "subscription-notification"
                | "transaction"
                | "transaction-response"
                | "batch"
                | "batch-response"
        );
        let mark = self.path.len();
        let mut seen: Vec<&str> = Vec::new();
        for (i, l) in links.iter().enumerate() {
            let Some(rel) = str_at(l, "relation") else {
                continue;
            };
            let _ = write!(self.path, ".link[{i}].relation");
            if known && PAGING.contains(&rel) {
                self.error(
                    "invalid",
                    format!("link relation {rel:?} is for paging search results; a {btype} Bundle has no pages"),
                );
            } else if (paged || known) && (rel == "self" || (paged && PAGING.contains(&rel))) {
                if seen.contains(&rel) {
                    self.error(
                        "invalid",
                        format!("link relation {rel:?} appears more than once; a Bundle has one of each"),
                    );
                }
                seen.push(rel);
            }
            self.path.truncate(mark);
        }
    }

    /// A searchset's entries: when they carry `search.mode`, a match or include has a resource
    /// with an id (a match of a searched type), and an outcome is an OperationOutcome.
    fn searchset(&mut self, obj: &'v Map<String, Value>, entries: &'v [Value]) {
        let mode = |e: &'v Value| e.member("search").and_then(|s| str_at(s, "mode"));
        let with_mode = entries.iter().filter(|e| mode(e).is_some()).count();
        let defs = &self.v.defs;
        let types: Vec<&str> = obj
            .member("link")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|l| str_at(l, "relation") == Some("self"))
            .and_then(|l| str_at(l, "url"))
            .map(|u| searched_types(u, |t| defs.is_resource_type(t)))
            .unwrap_or_default();
        let mark = self.path.len();
        for (i, e) in entries.iter().enumerate() {
            let _ = write!(self.path, ".entry[{i}]");
            let res = e.member("resource");
            let rt = res.and_then(|r| str_at(r, "resourceType")).unwrap_or("");
            let id = res.and_then(|r| str_at(r, "id"));
            match (res, mode(e)) {
                (None, _) => self.error(
                    "required",
                    "an entry of a searchset Bundle needs a resource".into(),
                ),
                (Some(_), Some(m @ ("match" | "include"))) => {
                    if id.is_none() {
                        self.path.push_str(".resource");
                        self.error(
                            "required",
                            format!("a search result ({m}) needs the resource's id"),
                        );
                    } else if m == "match" && !types.is_empty() && !types.contains(&rt) {
                        self.path.push_str(".resource");
                        self.error(
                            "invalid",
                            format!(
                                "a {rt} is not a match of this search, which was for {}",
                                types.join(", ")
                            ),
                        );
                    }
                }
                (Some(_), Some("outcome")) if rt != "OperationOutcome" => {
                    self.path.push_str(".resource");
                    self.error(
                        "invalid",
                        format!("an entry with search.mode = outcome must be an OperationOutcome, not a {rt}"),
                    );
                }
                (Some(_), None) if with_mode > 0 => self.warning(
                    "invalid",
                    "this entry has no search.mode, while other entries of the searchset do".into(),
                ),
                _ => {}
            }
            self.path.truncate(mark);
        }
    }
}

impl<'v> Run<'_, 'v> {
    /// A reference into a Bundle that holds several versions of one resource (bdl-7 allows that
    /// only with distinct versions): a versioned reference must name a version the Bundle holds,
    /// and an unversioned one is ambiguous. Other references are left to the usual resolution.
    pub(super) fn bundle_versions(&mut self, r: &str) {
        let Some(entries) = self
            .bundle
            .and_then(|b| b.member("entry"))
            .and_then(Value::as_array)
        else {
            return;
        };
        let (target, version) = match r.split_once("/_history/") {
            Some((t, v)) => (t, Some(v)),
            None => (r, None),
        };
        // Found through the Bundle's index: one look-up per reference, not a scan of every
        // entry (a Bundle of n entries with as many references would cost n² comparisons).
        let matched: Vec<(&str, &Value)> = self
            .entry_index(entries)
            .versions(target)
            .into_iter()
            .filter_map(|i| {
                let e = entries.get(i)?;
                Some((str_at(e, "fullUrl")?, e.member("resource")?))
            })
            .collect();
        // Versions of one resource share its fullUrl; the same `Type/id` under different bases
        // are different resources, which a relative reference does not make ambiguous (it is
        // resolved against its own entry's base).
        if matched
            .windows(2)
            .any(|w| unversioned(w[0].0) != unversioned(w[1].0))
        {
            return;
        }
        let versions: Vec<Option<&str>> = matched
            .iter()
            .map(|(_, res)| res.member("meta").and_then(|m| str_at(m, "versionId")))
            .collect();
        match version {
            Some(v) if !versions.is_empty() && !versions.contains(&Some(v)) => {
                let held: Vec<&str> = versions.iter().map(|v| v.unwrap_or("(none)")).collect();
                self.error(
                    "not-found",
                    format!(
                        "{r:?} names version {v:?}, but this Bundle holds {target} only as version(s) {}",
                        held.join(", ")
                    ),
                );
            }
            None if versions.len() > 1 => self.error(
                "invalid",
                format!(
                    "{r:?} matches {} entries of this Bundle (versions of one resource); name the \
                     version (…/_history/id)",
                    versions.len()
                ),
            ),
            _ => {}
        }
    }
}

impl<'v> Run<'_, 'v> {
    /// A StructureDefinition being validated (not loaded): a constraint's differential must
    /// give a snapshot (generated here from its base, as HL7's validator does; what the
    /// generator reports is an error), and an extension's definition must fix `Extension.url`
    /// to its own canonical.
    pub(super) fn structure_definition(&mut self, sd: &'v Value) {
        let url = str_at(sd, "url").unwrap_or_default();
        let defs = &self.v.defs;
        let base = str_at(sd, "baseDefinition").and_then(|b| defs.raw(b));
        let has_diff = sd
            .member("differential")
            .and_then(|d| d.member("element"))
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if str_at(sd, "derivation") == Some("constraint") && has_diff {
            if let Some(base) = base {
                let mark = self.path.len();
                self.path.push_str(".differential");
                match crate::validation::snapshot::generate(sd, &base, defs) {
                    Ok((_, problems)) => {
                        for p in problems {
                            self.error("structure", format!("snapshot generation: {p}"));
                        }
                    }
                    Err(e) => self.error("structure", format!("snapshot generation failed: {e}")),
                }
                self.path.truncate(mark);
            }
        }
        if str_at(sd, "type") == Some("Extension")
            && str_at(sd, "baseDefinition")
                == Some("http://hl7.org/fhir/StructureDefinition/Extension")
            && !url.is_empty()
        {
            let fixed = ["differential", "snapshot"].iter().find_map(|part| {
                sd.member(part)?
                    .member("element")?
                    .as_array()?
                    .iter()
                    .filter(|e| str_at(e, "path") == Some("Extension.url"))
                    .find_map(|e| str_at(e, "fixedUri"))
            });
            match fixed {
                None => self.error(
                    "invalid",
                    format!("the extension definition {url} does not fix Extension.url (fixedUri) to its url"),
                ),
                Some(f) if f != url => self.error(
                    "invalid",
                    format!("the extension definition fixes Extension.url to {f:?}, but its url is {url:?}"),
                ),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_urls_and_absolute_uris() {
        let ty = |t: &str| matches!(t, "Patient" | "Observation");
        assert_eq!(
            rest_url("http://example.org/fhir/Patient/1", ty),
            Some(("Patient", "1"))
        );
        assert_eq!(
            rest_url("https://x.org/Patient/1/_history/2", ty),
            Some(("Patient", "1"))
        );
        assert_eq!(rest_url("http://example.org/things/abc", ty), None);
        assert_eq!(rest_url("urn:uuid:1234", ty), None);
        assert!(is_absolute("urn:uuid:1234"));
        assert!(is_absolute("http://x/y"));
        assert!(is_absolute("urn:example:abc"));
        assert!(!is_absolute("Patient/1"));
        assert!(!is_absolute("1abc:x"));
        assert_eq!(
            searched_types("http://x/fhir/Observation?code=1", ty),
            vec!["Observation"]
        );
        assert_eq!(
            searched_types("http://x/fhir?_type=Patient,Observation", ty),
            vec!["Patient", "Observation"]
        );
    }
}
