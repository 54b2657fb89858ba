//! Profile validation: every resource checked against the base R4 definitions and the profiles it
//! claims (or the caller requires), with every problem reported as an OperationOutcome issue with
//! a FHIRPath location.
//!
//! - [`package`] reads FHIR packages (the embedded R4 files are derived by `cargo xtask derive`).
//! - [`definitions`] holds the compiled StructureDefinitions ([`model`]), generating snapshots
//!   for differential-only profiles ([`snapshot`]).
//! - [`walk`] is the validator proper; [`primitive`], [`xhtml`], [`bindings`] and
//!   [`invariants`] are the checks it calls; [`terminology`] answers value-set membership.

pub mod bindings;
pub mod definitions;
pub mod invariants;
pub mod model;
pub mod package;
pub mod primitive;
pub mod settle;
pub mod snapshot;
pub mod terminology;
pub mod walk;
pub mod xhtml;

use std::path::Path;

use anyhow::Result;
use serde_json::Value;

use crate::fhir::outcome::{Issue, Severity};
pub use definitions::Definitions;
use terminology::Terminology;

static EMBEDDED_TERMINOLOGY: &[u8] = include_bytes!("../../../../profiles/r4/terminology.json.gz");

/// Sektorbro's own profiles, extensions and terminology (`profiles/sektorbro/`), always loaded.
/// FSIII and the Danish municipality codes (`cargo xtask derive terminology`).
const EMBEDDED_DANISH: &str = include_str!("../../../../profiles/dk/terminology.json");

const OWN: &[&str] = &[
    include_str!("../../../../profiles/sektorbro/CodeSystem-admission-source.json"),
    include_str!("../../../../profiles/sektorbro/CodeSystem-course-kind.json"),
    include_str!("../../../../profiles/sektorbro/CodeSystem-discharge-destination.json"),
    include_str!("../../../../profiles/sektorbro/CodeSystem-discharge-section.json"),
    include_str!("../../../../profiles/sektorbro/CodeSystem-discipline.json"),
    include_str!("../../../../profiles/sektorbro/CodeSystem-encounter-type.json"),
    include_str!("../../../../profiles/sektorbro/CodeSystem-legal-basis.json"),
    include_str!("../../../../profiles/sektorbro/CodeSystem-message-event.json"),
    include_str!("../../../../profiles/sektorbro/CodeSystem-rehab-phase.json"),
    include_str!("../../../../profiles/sektorbro/ValueSet-admission-source.json"),
    include_str!("../../../../profiles/sektorbro/ValueSet-course-kind.json"),
    include_str!("../../../../profiles/sektorbro/ValueSet-discharge-destination.json"),
    include_str!("../../../../profiles/sektorbro/ValueSet-discharge-section.json"),
    include_str!("../../../../profiles/sektorbro/ValueSet-discipline.json"),
    include_str!("../../../../profiles/sektorbro/ValueSet-encounter-type.json"),
    include_str!("../../../../profiles/sektorbro/ValueSet-fsiii-conditions.json"),
    include_str!("../../../../profiles/sektorbro/ValueSet-fsiii-interventions.json"),
    include_str!("../../../../profiles/sektorbro/ValueSet-fsiii-severities.json"),
    include_str!("../../../../profiles/sektorbro/ValueSet-legal-basis.json"),
    include_str!("../../../../profiles/sektorbro/ValueSet-message-event.json"),
    include_str!("../../../../profiles/sektorbro/ValueSet-rehab-phase.json"),
    include_str!("../../../../profiles/sektorbro/StructureDefinition-citizen-present.json"),
    include_str!("../../../../profiles/sektorbro/StructureDefinition-goal-baseline.json"),
    include_str!("../../../../profiles/sektorbro/StructureDefinition-goal-citizen-words.json"),
    include_str!("../../../../profiles/sektorbro/StructureDefinition-goal-review.json"),
    include_str!("../../../../profiles/sektorbro/StructureDefinition-legal-basis.json"),
    include_str!("../../../../profiles/sektorbro/StructureDefinition-meeting-decision.json"),
    include_str!("../../../../profiles/sektorbro/StructureDefinition-primary-contact.json"),
    include_str!("../../../../profiles/sektorbro/StructureDefinition-ready-for-discharge.json"),
    include_str!("../../../../profiles/sektorbro/StructureDefinition-record-version.json"),
    include_str!("../../../../profiles/sektorbro/StructureDefinition-rehab-phase.json"),
    include_str!("../../../../profiles/sektorbro/StructureDefinition-relatives-present.json"),
    include_str!("../../../../profiles/sektorbro/StructureDefinition-responsible-discipline.json"),
    include_str!("../../../../profiles/sektorbro/StructureDefinition-sektorbro-careplan.json"),
    include_str!("../../../../profiles/sektorbro/StructureDefinition-sektorbro-careteam.json"),
    include_str!("../../../../profiles/sektorbro/StructureDefinition-sektorbro-condition.json"),
    include_str!(
        "../../../../profiles/sektorbro/StructureDefinition-sektorbro-discharge-message.json"
    ),
    include_str!(
        "../../../../profiles/sektorbro/StructureDefinition-sektorbro-discharge-summary.json"
    ),
    include_str!(
        "../../../../profiles/sektorbro/StructureDefinition-sektorbro-rehabilitation-meeting.json"
    ),
    include_str!("../../../../profiles/sektorbro/StructureDefinition-sektorbro-smart-goal.json"),
    include_str!(
        "../../../../profiles/sektorbro/StructureDefinition-sektorbro-temporary-stay.json"
    ),
];

/// The validator: definitions and terminology, loaded once, shared by every request.
pub struct Validator {
    pub defs: Definitions,
    pub terminology: Terminology,
    pub(crate) invariants: invariants::Compiled,
    /// Whether packages beyond the embedded ones were loaded.
    extended: bool,
}

impl Validator {
    /// The embedded R4 definitions only.
    pub fn r4() -> Result<Validator> {
        Self::with_packages::<&Path>(&[])
    }

    /// The embedded R4 definitions, loaded once per process and shared (tests start many
    /// servers; each would otherwise load its own copy).
    pub fn shared_r4() -> Result<std::sync::Arc<Validator>> {
        static SHARED: std::sync::OnceLock<std::sync::Arc<Validator>> = std::sync::OnceLock::new();
        if let Some(v) = SHARED.get() {
            return Ok(v.clone());
        }
        let v = std::sync::Arc::new(Self::r4()?);
        Ok(SHARED.get_or_init(|| v).clone())
    }

    /// The embedded R4 definitions plus the packages at `paths` (`.tgz`, package folder, or a
    /// plain folder of resources), in order.
    pub fn with_packages<P: AsRef<Path>>(paths: &[P]) -> Result<Validator> {
        let mut defs = Definitions::r4()?;
        let mut terminology = Terminology::new();
        let text = definitions::gunzip(EMBEDDED_TERMINOLOGY)?;
        let base: Vec<Value> = serde_json::from_str(&text)?;
        for r in &base {
            if let Err(e) = terminology.add(r) {
                defs.report.skipped.push(e);
            }
        }
        let danish: Vec<Value> = serde_json::from_str(EMBEDDED_DANISH)?;
        for r in &danish {
            if let Err(e) = terminology.add(r) {
                defs.report.skipped.push(e);
            }
        }
        let own = package::Package {
            id: "sektorbro#embedded".into(),
            resources: OWN
                .iter()
                .map(|text| serde_json::from_str(text))
                .collect::<Result<Vec<Value>, _>>()?,
        };
        let mut packages = vec![own];
        for p in paths {
            packages.push(package::Package::read(p.as_ref())?);
        }
        for pkg in packages {
            for r in &pkg.resources {
                if r.get("resourceType").and_then(Value::as_str) != Some("StructureDefinition") {
                    if let Err(e) = terminology.add(r) {
                        defs.report.skipped.push(e);
                    }
                }
            }
            defs.add_package_resources(pkg);
        }
        let invariants = invariants::Compiled::new(&defs);
        for f in invariants.failures() {
            defs.report
                .skipped
                .push(format!("constraint not compiled, so not checked: {f}"));
        }
        Ok(Validator {
            defs,
            terminology,
            invariants,
            extended: !paths.is_empty(),
        })
    }

    /// Whether packages beyond the embedded definitions were loaded (which may redefine what the
    /// embedded ones say).
    pub fn extended(&self) -> bool {
        self.extended
    }

    /// Validate `resource` against its type, the profiles it claims and `profiles`. Issues come
    /// errors first, then warnings, then information; within each, in document order.
    pub fn validate(&self, resource: &Value, profiles: &[String]) -> Vec<Issue> {
        let mut run = walk::Run::new(self);
        run.resource(resource, profiles);
        finish(run.issues)
    }

    /// As [`Validator::validate`], and also the bindings that could not be evaluated locally
    /// (each reported as a `not-supported` warning in the issues), for a terminology server to
    /// settle afterwards. Still no I/O here.
    pub fn validate_detailed(&self, resource: &Value, profiles: &[String]) -> Validated {
        let mut run = walk::Run::new(self);
        run.resource(resource, profiles);
        let issues = finish(run.issues);
        let mut unresolved: Vec<UnresolvedBinding> = Vec::new();
        for (mut u, issue) in run.unresolved {
            // The walk may have dropped the issue (a profile choice that did not fit) or merged
            // it with an identical one.
            let Some(i) = issues.iter().position(|x| *x == issue) else {
                continue;
            };
            u.issue = i;
            if !unresolved.contains(&u) {
                unresolved.push(u);
            }
        }
        let mut unknown_codes = run.unknown_codes;
        unknown_codes.dedup();
        Validated {
            issues,
            unresolved,
            unknown_codes,
        }
    }

    /// Whether `v` conforms to the profile at `url` (no errors). Nested checks (a profile
    /// discriminator or `conformsTo()` inside a profile checked this way) are bounded: beyond
    /// 8 levels the answer is no.
    pub fn conforms(&self, v: &Value, url: &str) -> bool {
        thread_local! {
            static DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
        }
        let depth = DEPTH.with(|d| {
            let n = d.get() + 1;
            d.set(n);
            n
        });
        let ok = depth <= 8 && {
            let mut run = walk::Run::new(self);
            run.resource(v, &[url.to_string()]);
            !run.issues.iter().any(|i| i.severity <= Severity::Error)
        };
        DEPTH.with(|d| d.set(d.get() - 1));
        ok
    }
}

/// What [`Validator::validate_detailed`] found.
#[derive(Debug, Clone, Default)]
pub struct Validated {
    /// As [`Validator::validate`] returns them.
    pub issues: Vec<Issue>,
    /// Bindings that need a terminology server, each pointing at its warning in `issues`.
    pub unresolved: Vec<UnresolvedBinding>,
    /// Codings whose code system the local terminology does not hold (or holds only in part):
    /// not reported in `issues`, for a terminology server to check.
    pub unknown_codes: Vec<UnresolvedCode>,
}

impl Validated {
    /// Whether anything is left for a terminology server to settle.
    pub fn needs_terminology(&self) -> bool {
        !self.unresolved.is_empty() || !self.unknown_codes.is_empty()
    }
}

/// A coding of a code system not held here (e.g. SNOMED CT), outside what a binding decides.
#[derive(Debug, Clone, PartialEq)]
pub struct UnresolvedCode {
    /// `url` or `url|version`.
    pub system: String,
    pub code: String,
    /// FHIRPath location of the `code` element.
    pub location: String,
}

/// A binding whose codes the local terminology cannot judge (a code system we do not hold, such
/// as SNOMED CT; a value set that is not loaded).
#[derive(Debug, Clone, PartialEq)]
pub struct UnresolvedBinding {
    /// The bound value set (`url` or `url|version`).
    pub value_set: String,
    pub strength: model::Strength,
    /// The codings that could not be judged, as (system, code); one member settles the binding.
    pub codes: Vec<(Option<String>, String)>,
    /// FHIRPath location of the coded element.
    pub location: String,
    /// Index of the `not-supported` warning in [`Validated::issues`].
    pub issue: usize,
}

/// Drop repeated issues (a profile restating a base rule), keep document order within severity.
fn finish(issues: Vec<Issue>) -> Vec<Issue> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<Issue> = issues
        .into_iter()
        .filter(|i| seen.insert((i.severity, i.expression.clone(), i.diagnostics.clone())))
        .collect();
    out.sort_by_key(|i| i.severity);
    out
}

/// Whether any issue is an error (or fatal).
pub fn has_errors(issues: &[Issue]) -> bool {
    issues.iter().any(|i| i.severity <= Severity::Error)
}

#[cfg(test)]
mod tests {
    /// Every file in profiles/sektorbro/ is embedded: a profile written but not listed in `OWN`
    /// would silently not exist at run time.
    #[test]
    fn every_own_profile_file_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../profiles/sektorbro");
        let files = std::fs::read_dir(dir)
            .expect("profiles/sektorbro")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .count();
        assert_eq!(files, super::OWN.len());
    }
}
