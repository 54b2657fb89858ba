//! Terminology for the profile validator: CodeSystems and ValueSets loaded from packages, and
//! fast, thread-safe answers to "is this code in that value set?".
//!
//! Answers are three-valued ([`Membership`]). `Unknown` always carries a reason a person can
//! act on (a value set that is not loaded, an external code system such as SNOMED CT, a filter
//! we cannot evaluate, an import cycle); the validator reports it as a warning.
//!
//! Decisions (where the specification leaves room):
//! - Resources are keyed by `url` and `version`. A canonical without `|version` means the
//!   highest loaded version (numeric-aware comparison; an unversioned resource ranks lowest).
//!   Adding a resource with the same url and version replaces the earlier one, so a later
//!   package overrides an earlier one.
//! - `caseSensitive` absent means codes are matched ignoring case (the spec asks validators to
//!   accept any case when the rule is not stated); `false` likewise; `true` is exact.
//! - Several `valueSet`s in one include are united (the R4 definition of
//!   `include.valueSet`; R4 content such as `action-participant-role` relies on it, R5 changed
//!   it to intersection); that union is intersected with the `system` part of the include.
//! - Supplements (`content = supplement`) never define codes; they are kept apart, so one
//!   that carries its base system's url does not shadow that system.
//! - A CodeSystem that says `complete` but lists no concepts (e.g. R4 `message-events`) is
//!   treated as not held.
//! - Hierarchy for `is-a`, `descendent-of`, `generalizes` and `parent`/`child` is concept
//!   nesting plus the `parent`/`subsumedBy`/`child` concept properties, whatever
//!   `hierarchyMeaning` says.
//! - `compose.inactive = false` drops concepts whose `status` is `retired`/`inactive` or whose
//!   `inactive` property is true; otherwise inactive codes are members. Not-selectable
//!   (abstract) concepts are members. `lockedDate` is ignored.
//! - Codes listed explicitly for a system we do not hold (e.g. SNOMED CT codes enumerated in
//!   a value set) are exact members; filters on such systems are `Unknown`, except answers
//!   that follow from the filter alone (`is-a X` contains X, `descendent-of X` does not,
//!   a `regex` on the code rules out non-matching codes).
//! - When compose cannot be evaluated completely and the ValueSet carries an expansion, the
//!   expansion is used.
//! - `versionNeeded`: an include without a version of such a code system, while several
//!   versions are loaded, is `Unknown`.
//! - Import cycles make the affected answers `Unknown` (naming the cycle); answers never
//!   depend on which value set was used first. Value sets are evaluated on first use, once,
//!   under one lock; afterwards checks are lock-free hash lookups.
//! - Syntactic rules (no registry held): UCUM unit expressions (full grammar; atoms outside a
//!   built-in table give `Unknown`), BCP-47 language tags and MIME types (well-formedness).

mod codesystem;
mod compact;
mod external;
mod set;
mod valueset;

#[cfg(test)]
mod tests;

use std::cmp::Ordering;
// FxHash: membership lookups are on the validation hot path.
use rustc_hash::FxHashMap as HashMap;
use std::sync::Mutex;

use crate::fhir::Member;
use serde_json::Value;

use self::codesystem::{CodeSystem, Content};
use self::external::{describe, Syntax};
use self::set::Tri;
use self::valueset::ValueSet;

pub use self::compact::compact;

/// The answer to a membership question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Membership {
    Member,
    NotMember {
        reason: String,
    },
    /// We cannot decide; the reason says why (report as a warning, never as a pass).
    Unknown {
        reason: String,
    },
}

impl Membership {
    pub fn is_member(&self) -> bool {
        matches!(self, Membership::Member)
    }
}

/// How completely a ValueSet can be evaluated here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueSetStatus {
    NotLoaded {
        reason: String,
    },
    /// Every answer is `Member` or `NotMember`; `members` counts the enumerated members
    /// (syntactic rules such as UCUM are not counted).
    Complete {
        members: usize,
    },
    /// Some answers are `Unknown`, for this reason (the first found).
    Partial {
        reason: String,
    },
}

/// CodeSystems and ValueSets, queried concurrently after loading.
#[derive(Default)]
pub struct Terminology {
    /// By url; each list sorted by version, highest last.
    code_systems: HashMap<String, Vec<CodeSystem>>,
    value_sets: HashMap<String, Vec<ValueSet>>,
    /// Supplements add designations and properties, never codes; kept apart so that one
    /// (wrongly) carrying its base system's url cannot shadow that system.
    supplements: HashMap<String, Vec<CodeSystem>>,
    /// Held while value sets are being evaluated (see `valueset.rs`).
    evaluating: Mutex<()>,
}

impl std::fmt::Debug for Terminology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminology")
            .field("code_systems", &self.code_systems.len())
            .field("value_sets", &self.value_sets.len())
            .finish()
    }
}

impl Terminology {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a CodeSystem or ValueSet. Other resource types and malformed resources are
    /// rejected with a message; the store is unchanged then.
    pub fn add(&mut self, resource: &Value) -> Result<(), String> {
        match resource.member("resourceType").and_then(Value::as_str) {
            Some("CodeSystem") => {
                let cs = CodeSystem::parse(resource)?;
                // A supplement defines no codes, whatever its `content` says (one that says
                // otherwise is reported when the CodeSystem itself is validated).
                if cs.content == Content::Supplement || cs.supplements.is_some() {
                    let list = self.supplements.entry(cs.url.clone()).or_default();
                    insert_versioned(list, cs, |c| c.version.as_deref());
                    return Ok(());
                }
                if let Some(canonical) = &cs.value_set {
                    let implicit = ValueSet::for_code_system(canonical, &cs);
                    let existing = self.value_sets.entry(implicit.url.clone()).or_default();
                    if existing.iter().all(|v| v.synthetic) {
                        insert_versioned(existing, implicit, |v| v.version.as_deref());
                    }
                }
                let list = self.code_systems.entry(cs.url.clone()).or_default();
                insert_versioned(list, cs, |c| c.version.as_deref());
            }
            Some("ValueSet") => {
                let vs = ValueSet::parse(resource)?;
                let list = self.value_sets.entry(vs.url.clone()).or_default();
                list.retain(|v| !v.synthetic);
                insert_versioned(list, vs, |v| v.version.as_deref());
            }
            Some(other) => return Err(format!("not a CodeSystem or ValueSet: {other}")),
            None => return Err("resource has no resourceType".into()),
        }
        // Anything evaluated so far may depend on what was just added.
        for list in self.value_sets.values_mut() {
            for vs in list {
                vs.cache.take();
                vs.imports_ok.take();
            }
        }
        Ok(())
    }

    /// Is `code` (from `system`, if given) in the ValueSet `value_set` (`url` or
    /// `url|version`)? Without a system, a code of any system in the value set counts.
    pub fn check_code(&self, value_set: &str, system: Option<&str>, code: &str) -> Membership {
        let vs = match self.find_value_set(value_set) {
            Ok(vs) => vs,
            Err(reason) => return Membership::Unknown { reason },
        };
        let set = self.code_set(vs);
        let answer = match system {
            Some(s) => set.eval(s, code),
            None => set.eval_any(code),
        };
        match answer {
            Tri::Yes => Membership::Member,
            Tri::No => Membership::NotMember {
                reason: match system {
                    Some(s) if !set.has_system(s) => format!(
                        "codes from {s} are not in ValueSet {} (code '{code}')",
                        vs.describe()
                    ),
                    Some(s) => format!("'{code}' ({s}) is not in ValueSet {}", vs.describe()),
                    None => format!("'{code}' is not in ValueSet {}", vs.describe()),
                },
            },
            Tri::Maybe(why) => Membership::Unknown {
                reason: format!(
                    "cannot tell whether '{code}' is in ValueSet {}: {why}",
                    vs.describe()
                ),
            },
        }
    }

    /// Is `code` defined by the code system `system` (`url` or `url|version`)?
    pub fn check_in_code_system(&self, system: &str, code: &str) -> Membership {
        let (url, version) = split_canonical(system);
        match self.usable_code_system(url, version) {
            Ok(cs) => match cs.lookup(code) {
                Some(_) => Membership::Member,
                None if cs.content == Content::Complete => Membership::NotMember {
                    reason: format!("'{code}' is not a code of {}", cs.describe()),
                },
                None => Membership::Unknown {
                    reason: format!(
                        "'{code}' is not among the codes of {}, which has content '{}'",
                        cs.describe(),
                        cs.content.as_str()
                    ),
                },
            },
            Err(why) => match Syntax::for_system(url) {
                Some(syntax) => match syntax.check(code) {
                    Tri::Yes => Membership::Member,
                    Tri::No => Membership::NotMember {
                        reason: format!("'{code}' is not a valid code of {}", describe(url)),
                    },
                    Tri::Maybe(r) => Membership::Unknown {
                        reason: r.to_string(),
                    },
                },
                None => Membership::Unknown {
                    reason: format!("cannot check '{code}': {why}"),
                },
            },
        }
    }

    /// The display of a code in the highest loaded version of a code system.
    pub fn display(&self, system: &str, code: &str) -> Option<&str> {
        let (url, version) = split_canonical(system);
        let cs = self.code_system(url, version)?;
        let id = cs.lookup(code)?;
        cs.concepts.get(id)?.display.as_deref()
    }

    /// Whether a CodeSystem (or supplement) with URL `url` is loaded.
    pub fn has_code_system(&self, url: &str) -> bool {
        self.code_systems.contains_key(url) || self.supplements.contains_key(url)
    }

    /// The code system that `url` supplements, when `url` is a loaded supplement and not a code
    /// system of its own.
    pub fn supplement_of(&self, url: &str) -> Option<&str> {
        if self.code_systems.contains_key(url) {
            return None;
        }
        let s = self.supplements.get(url)?.last()?;
        Some(s.supplements.as_deref().unwrap_or_default())
    }

    /// Whether the ValueSet (or a code system's implicit value set) is loaded.
    pub fn has_value_set(&self, canonical: &str) -> bool {
        self.find_value_set(canonical).is_ok()
    }

    /// The codes of a small, fully enumerated ValueSet (for messages that say what is allowed);
    /// `None` when it is larger than `limit`, rule-based or not fully known.
    pub fn small_expansion(&self, canonical: &str, limit: usize) -> Option<Vec<String>> {
        let vs = self.find_value_set(canonical).ok()?;
        self.code_set(vs).listed(limit)
    }

    /// How completely a ValueSet can be evaluated (computes it if not yet done).
    pub fn value_set_status(&self, canonical: &str) -> ValueSetStatus {
        let vs = match self.find_value_set(canonical) {
            Ok(vs) => vs,
            Err(reason) => return ValueSetStatus::NotLoaded { reason },
        };
        let set = self.code_set(vs);
        match set.maybe_reason() {
            Some(reason) => ValueSetStatus::Partial {
                reason: reason.to_string(),
            },
            None => ValueSetStatus::Complete {
                members: set.yes_count(),
            },
        }
    }

    fn find_value_set(&self, canonical: &str) -> Result<&ValueSet, String> {
        let (url, version) = split_canonical(canonical);
        let list = self
            .value_sets
            .get(url)
            .filter(|l| !l.is_empty())
            .ok_or_else(|| format!("ValueSet {url} is not loaded"))?;
        match version {
            None => list
                .last()
                .ok_or_else(|| format!("ValueSet {url} is not loaded")),
            Some(v) => list
                .iter()
                .find(|vs| vs.version.as_deref() == Some(v))
                .ok_or_else(|| {
                    format!(
                        "ValueSet {url} version {v} is not loaded (loaded: {})",
                        versions(list.iter().map(|x| x.version.as_deref()))
                    )
                }),
        }
    }

    fn code_system(&self, url: &str, version: Option<&str>) -> Option<&CodeSystem> {
        let list = self.code_systems.get(url)?;
        match version {
            None => list.last(),
            Some(v) => list.iter().find(|cs| cs.version.as_deref() == Some(v)),
        }
    }

    /// The code system whose concepts decide membership, or why there is none.
    fn usable_code_system(&self, url: &str, version: Option<&str>) -> Result<&CodeSystem, String> {
        let Some(list) = self.code_systems.get(url).filter(|l| !l.is_empty()) else {
            if let Some(supplement) = self.supplements.get(url).and_then(|l| l.last()) {
                return Err(format!(
                    "{} is a supplement of {} and defines no codes of its own",
                    supplement.describe(),
                    supplement
                        .supplements
                        .as_deref()
                        .unwrap_or("another code system")
                ));
            }
            return Err(match external::well_known_name(url) {
                Some(_) => format!("{} is an external terminology not held here", describe(url)),
                None => format!("CodeSystem {url} is not loaded"),
            });
        };
        if list.iter().all(|cs| cs.content == Content::NotPresent) {
            return Err(format!(
                "{} is loaded without its concepts (content 'not-present')",
                describe(url)
            ));
        }
        let cs = match self.code_system(url, version) {
            Some(cs) => cs,
            None => {
                return Err(format!(
                    "{} version {} is not loaded (loaded: {})",
                    describe(url),
                    version.unwrap_or(""),
                    versions(list.iter().map(|c| c.version.as_deref()))
                ))
            }
        };
        if version.is_none() && cs.version_needed && list.len() > 1 {
            return Err(format!(
                "{} requires a version (versionNeeded) and several versions are loaded",
                describe(url)
            ));
        }
        match cs.content {
            Content::NotPresent => Err(format!(
                "{} is loaded without its concepts (content 'not-present')",
                cs.describe()
            )),
            Content::Complete if cs.concepts.is_empty() => Err(format!(
                "{} claims to be complete but defines no concepts",
                cs.describe()
            )),
            _ => Ok(cs),
        }
    }

    /// Whether codes of `system` are compared ignoring case (see the module docs).
    fn fold_case(&self, system: &str) -> bool {
        match self.code_system(system, None) {
            Some(cs) => cs.fold_case(),
            None => false,
        }
    }
}

fn insert_versioned<T>(list: &mut Vec<T>, item: T, version: impl Fn(&T) -> Option<&str>) {
    let v = version(&item).map(str::to_owned);
    match list.iter().position(|x| version(x) == v.as_deref()) {
        Some(i) => list[i] = item,
        None => list.push(item),
    }
    list.sort_by(|a, b| compare_versions(version(a), version(b)));
}

/// Orders versions: absent first, then by dot/dash separated segments, numeric ones
/// numerically.
pub(crate) fn compare_versions(a: Option<&str>, b: Option<&str>) -> Ordering {
    let (a, b) = match (a, b) {
        (None, None) => return Ordering::Equal,
        (None, Some(_)) => return Ordering::Less,
        (Some(_), None) => return Ordering::Greater,
        (Some(a), Some(b)) => (a, b),
    };
    let split = |s: &str| -> Vec<String> { s.split(['.', '-']).map(str::to_owned).collect() };
    let (sa, sb) = (split(a), split(b));
    for (x, y) in sa.iter().zip(sb.iter()) {
        let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(m), Ok(n)) => m.cmp(&n),
            (Ok(_), Err(_)) => Ordering::Greater,
            (Err(_), Ok(_)) => Ordering::Less,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    sa.len().cmp(&sb.len()).then_with(|| a.cmp(b))
}

fn versions<'a>(list: impl Iterator<Item = Option<&'a str>>) -> String {
    list.map(|v| v.unwrap_or("(no version)"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `url|version` → (`url`, `Some(version)`); a plain url → (`url`, `None`).
fn split_canonical(canonical: &str) -> (&str, Option<&str>) {
    // `|` is ASCII, so both sides of it are on character boundaries.
    match memchr::memrchr(b'|', canonical.as_bytes()) {
        Some(i) if i + 1 < canonical.len() => (&canonical[..i], Some(&canonical[i + 1..])),
        Some(i) => (&canonical[..i], None),
        None => (canonical, None),
    }
}

fn req_str<'a>(v: &'a Value, key: &str) -> Result<&'a str, String> {
    match v.member(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) | None | Some(Value::Null) => Err(format!("'{key}' is missing")),
        Some(_) => Err(format!("'{key}' is not a string")),
    }
}

fn opt_str<'a>(v: &'a Value, key: &str) -> Result<Option<&'a str>, String> {
    match v.member(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("'{key}' is not a string")),
    }
}
