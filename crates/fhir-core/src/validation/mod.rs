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
pub mod measure;
pub mod model;
mod native_rules;
pub mod order;
pub mod package;
pub mod primitive;
pub mod questionnaire;
pub mod settle;
pub mod snapshot;
pub mod terminology;
pub mod walk;
pub mod xhtml;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use anyhow::Result;
use serde_json::Value;

use crate::fhir::outcome::{Issue, Severity};
pub use definitions::{Definitions, LoadReport, Source};
pub use package::{Finding, FindingKind};
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
    include_str!("../../../../profiles/sektorbro/StructureDefinition-discharge-note-warning.json"),
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
        "../../../../profiles/sektorbro/StructureDefinition-sektorbro-planned-intervention.json"
    ),
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

/// The manifest of our own package (`profiles/sektorbro/package.json`): its name, version and
/// dependencies.
const OWN_MANIFEST: &str = include_str!("../../../../profiles/sektorbro/package.json");

/// The IG packages the gateway needs at run time, derived by `cargo xtask derive packages` into
/// `profiles/ig/` (each at each version some IG declares), by `name-version`.
const EMBEDDED_IGS: &[(&str, &[u8])] = &[
    (
        "hl7.fhir.dk.core-1.1.0",
        include_bytes!("../../../../profiles/ig/hl7.fhir.dk.core-1.1.0.json.gz"),
    ),
    (
        "hl7.fhir.dk.core-2.0.0",
        include_bytes!("../../../../profiles/ig/hl7.fhir.dk.core-2.0.0.json.gz"),
    ),
    (
        "hl7.fhir.dk.core-3.2.0",
        include_bytes!("../../../../profiles/ig/hl7.fhir.dk.core-3.2.0.json.gz"),
    ),
    (
        "hl7.fhir.dk.core-3.4.0",
        include_bytes!("../../../../profiles/ig/hl7.fhir.dk.core-3.4.0.json.gz"),
    ),
    (
        "hl7.fhir.dk.core-3.5.0",
        include_bytes!("../../../../profiles/ig/hl7.fhir.dk.core-3.5.0.json.gz"),
    ),
    (
        "hl7.fhir.dk.core-3.7.0",
        include_bytes!("../../../../profiles/ig/hl7.fhir.dk.core-3.7.0.json.gz"),
    ),
    (
        "hl7se.fhir.base-1.1.0",
        include_bytes!("../../../../profiles/ig/hl7se.fhir.base-1.1.0.json.gz"),
    ),
    (
        "kl.dk.fhir.core-1.2.0",
        include_bytes!("../../../../profiles/ig/kl.dk.fhir.core-1.2.0.json.gz"),
    ),
    (
        "kl.dk.fhir.gateway-1.2.0",
        include_bytes!("../../../../profiles/ig/kl.dk.fhir.gateway-1.2.0.json.gz"),
    ),
    (
        "kl.dk.fhir.rehab-2.2.0",
        include_bytes!("../../../../profiles/ig/kl.dk.fhir.rehab-2.2.0.json.gz"),
    ),
    (
        "kl.dk.fhir.term-2.3.0",
        include_bytes!("../../../../profiles/ig/kl.dk.fhir.term-2.3.0.json.gz"),
    ),
    (
        "medcom.fhir.dk.acknowledgement-2.0.3",
        include_bytes!("../../../../profiles/ig/medcom.fhir.dk.acknowledgement-2.0.3.json.gz"),
    ),
    (
        "medcom.fhir.dk.carecommunication-5.0.2",
        include_bytes!("../../../../profiles/ig/medcom.fhir.dk.carecommunication-5.0.2.json.gz"),
    ),
    (
        "medcom.fhir.dk.core-2.0.0",
        include_bytes!("../../../../profiles/ig/medcom.fhir.dk.core-2.0.0.json.gz"),
    ),
    (
        "medcom.fhir.dk.core-2.0.1",
        include_bytes!("../../../../profiles/ig/medcom.fhir.dk.core-2.0.1.json.gz"),
    ),
    (
        "medcom.fhir.dk.core-3.0.1",
        include_bytes!("../../../../profiles/ig/medcom.fhir.dk.core-3.0.1.json.gz"),
    ),
    (
        "medcom.fhir.dk.core-4.0.0",
        include_bytes!("../../../../profiles/ig/medcom.fhir.dk.core-4.0.0.json.gz"),
    ),
    (
        "medcom.fhir.dk.hospitalnotification-3.0.2",
        include_bytes!("../../../../profiles/ig/medcom.fhir.dk.hospitalnotification-3.0.2.json.gz"),
    ),
    (
        "medcom.fhir.dk.messagedefinitions-1.0.0",
        include_bytes!("../../../../profiles/ig/medcom.fhir.dk.messagedefinitions-1.0.0.json.gz"),
    ),
    (
        "medcom.fhir.dk.messaging-2.1.0",
        include_bytes!("../../../../profiles/ig/medcom.fhir.dk.messaging-2.1.0.json.gz"),
    ),
    (
        "medcom.fhir.dk.messaging-4.0.2",
        include_bytes!("../../../../profiles/ig/medcom.fhir.dk.messaging-4.0.2.json.gz"),
    ),
    (
        "medcom.fhir.dk.terminology-1.1.1",
        include_bytes!("../../../../profiles/ig/medcom.fhir.dk.terminology-1.1.1.json.gz"),
    ),
    (
        "medcom.fhir.dk.terminology-1.4.0",
        include_bytes!("../../../../profiles/ig/medcom.fhir.dk.terminology-1.4.0.json.gz"),
    ),
    (
        "medcom.fhir.dk.terminology-2.0.1",
        include_bytes!("../../../../profiles/ig/medcom.fhir.dk.terminology-2.0.1.json.gz"),
    ),
    (
        "medcom.fhir.dk.terminology-2.0.2",
        include_bytes!("../../../../profiles/ig/medcom.fhir.dk.terminology-2.0.2.json.gz"),
    ),
];

/// The embedded packages our own package's dependencies need, transitively: for each declared
/// `name#version` the embedded one of that version, else the highest embedded version of that
/// name (as the definitions resolve it); names not embedded are left to the load report.
fn own_closure(own: &package::Package) -> Result<Vec<package::Package>> {
    let mut out: Vec<package::Package> = Vec::new();
    let mut queue: Vec<(String, String)> = own.dependencies.clone();
    while let Some((name, version)) = queue.pop() {
        if name == "hl7.fhir.r4.core" || out.iter().any(|p| p.name == name) {
            continue;
        }
        let prefix = format!("{name}-");
        let candidates: Vec<&(&str, &[u8])> = EMBEDDED_IGS
            .iter()
            .filter(|(id, _)| {
                id.strip_prefix(&prefix)
                    .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
            })
            .collect();
        let exact = format!("{name}-{version}");
        // EMBEDDED_IGS is in name order, so versions of one name ascend (for the ones we have).
        let Some((_, gz)) = candidates
            .iter()
            .find(|(id, _)| *id == exact)
            .or_else(|| candidates.last())
        else {
            continue;
        };
        let p = package::Package::from_compact(gz)?;
        queue.extend(p.dependencies.iter().cloned());
        out.push(p);
    }
    Ok(out)
}

/// What to load, and how strictly.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The IG packages embedded in the binary (`profiles/ig/`: dk-core, KL, MedCom, se-base at
    /// the versions they declare).
    pub embedded_igs: bool,
    /// Packages from config or the command line (`.tgz`, package folder, plain folder of
    /// resources, or a compact `.json.gz`), loaded after the embedded ones, in order. One with
    /// the same name and version as an embedded package replaces it.
    pub packages: Vec<PathBuf>,
    /// Make any problem loading them (a file, definition, value set or expression that could
    /// not be used) an error instead of a finding in the report.
    pub strict: bool,
    /// Where an extension whose definition is not loaded is accepted (with a warning that it was
    /// not checked) instead of being an error: URL prefixes (`http://hl7.org/fhir/StructureDefinition/`)
    /// or host names (`example.org`, which also covers its subdomains). Empty: nowhere, as
    /// HL7's reference validator by default.
    pub allowed_extension_domains: Vec<String>,
}

/// The validator: definitions and terminology, loaded once, shared by every request.
pub struct Validator {
    pub defs: Definitions,
    pub terminology: Terminology,
    pub(crate) invariants: invariants::Compiled,
    /// Whether packages beyond the embedded ones were loaded.
    extended: bool,
    /// [`Sources::allowed_extension_domains`].
    allowed_extension_domains: Vec<String>,
}

impl Validator {
    /// The embedded R4 definitions and our own profiles, with the embedded packages our own
    /// package depends on (KL Common and what it builds on: our profiles derive from it).
    pub fn r4() -> Result<Validator> {
        Self::load(&Sources::default())
    }

    /// The FHIRPath model of every loaded type (child elements, cardinality, choices), for
    /// evaluating expressions outside validation (FHIRPath Patch).
    pub fn model(&self) -> &dyn crate::fhirpath::ModelInfo {
        &self.invariants.model
    }

    /// The embedded R4 definitions, loaded once per process and shared (tests start many
    /// servers; each would otherwise load its own copy).
    pub fn shared_r4() -> Result<Arc<Validator>> {
        static SHARED: OnceLock<Arc<Validator>> = OnceLock::new();
        if let Some(v) = SHARED.get() {
            return Ok(v.clone());
        }
        let v = Arc::new(Self::r4()?);
        Ok(SHARED.get_or_init(|| v).clone())
    }

    /// Everything embedded: R4, our own profiles and the IG packages of `profiles/ig/`.
    pub fn embedded() -> Result<Validator> {
        Self::load(&Sources {
            embedded_igs: true,
            ..Sources::default()
        })
    }

    /// [`Validator::embedded`], loaded once per process and shared.
    pub fn shared_embedded() -> Result<Arc<Validator>> {
        Self::shared_embedded_allowing(&[])
    }

    /// [`Validator::embedded`] with [`Sources::allowed_extension_domains`], loaded once per
    /// process and list of domains, and shared.
    pub fn shared_embedded_allowing(domains: &[String]) -> Result<Arc<Validator>> {
        static SHARED: Mutex<Vec<(Vec<String>, Arc<Validator>)>> = Mutex::new(Vec::new());
        let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, v)) = shared.iter().find(|(d, _)| d == domains) {
            return Ok(v.clone());
        }
        let v = Arc::new(Self::load(&Sources {
            embedded_igs: true,
            allowed_extension_domains: domains.to_vec(),
            ..Sources::default()
        })?);
        shared.push((domains.to_vec(), v.clone()));
        Ok(v)
    }

    /// The embedded R4 definitions plus the packages at `paths` (`.tgz`, package folder, or a
    /// plain folder of resources), in order; problems are reported, not fatal.
    pub fn with_packages<P: AsRef<Path>>(paths: &[P]) -> Result<Validator> {
        Self::load(&Sources {
            packages: paths.iter().map(|p| p.as_ref().to_path_buf()).collect(),
            ..Sources::default()
        })
    }

    /// Load what `sources` names. A package that cannot be read at all is an error; what cannot
    /// be used inside one is in [`Validator::load_report`], or an error when `strict`.
    pub fn load(sources: &Sources) -> Result<Validator> {
        let mut core = Definitions::core_package()?;
        let text = definitions::gunzip(EMBEDDED_TERMINOLOGY)?;
        let base: Vec<Value> = serde_json::from_str(&text)?;
        core.resources.extend(base);
        let mut own = package::Package::from_manifest_and_resources(
            OWN_MANIFEST,
            OWN.iter()
                .map(|text| serde_json::from_str(text))
                .collect::<Result<Vec<Value>, _>>()?,
        )?;
        let danish: Vec<Value> = serde_json::from_str(EMBEDDED_DANISH)?;
        own.resources.extend(danish);
        let mut all = vec![
            Source {
                package: core,
                embedded: true,
            },
            Source {
                package: own,
                embedded: true,
            },
        ];
        if sources.embedded_igs {
            for (_, gz) in EMBEDDED_IGS {
                all.push(Source {
                    package: package::Package::from_compact(gz)?,
                    embedded: true,
                });
            }
        } else {
            for package in own_closure(&all[1].package)? {
                all.push(Source {
                    package,
                    embedded: true,
                });
            }
        }
        for p in &sources.packages {
            all.push(Source {
                package: package::Package::read(p)?,
                embedded: false,
            });
        }
        let mut terminology = Terminology::new();
        let mut defs = Definitions::load(all, &mut terminology);
        let model = defs.take_model();
        let invariants = invariants::Compiled::new(&defs, model);
        let mut found: Vec<(String, String, String)> = Vec::new();
        for (expr, error) in invariants.failures() {
            // name the definitions that carry it
            let mut named = false;
            for p in defs.all_profiles() {
                let key = p
                    .elements
                    .iter()
                    .flat_map(|e| e.constraints.iter())
                    .find(|c| c.expression == expr)
                    .map(|c| c.key.clone());
                if let Some(key) = key {
                    let pkg = defs.package_of(p).id();
                    let subject = format!("{} constraint {key}", p.url);
                    found.push((
                        pkg,
                        subject,
                        format!("the expression {expr} does not compile ({error}), so it is not checked"),
                    ));
                    named = true;
                }
            }
            if !named {
                found.push((
                    String::new(),
                    expr.clone(),
                    format!("does not compile ({error}), so it is not checked"),
                ));
            }
        }
        found.sort();
        for (pkg, subject, msg) in found {
            defs.report.problem(&pkg, &subject, msg);
        }
        if sources.strict {
            // The embedded packages are vetted when they are derived (their known problems are
            // pinned by a test); strictness is about what the operator or user adds.
            let embedded: std::collections::HashSet<String> = defs
                .packages()
                .iter()
                .filter(|p| p.embedded)
                .map(|p| p.id())
                .collect();
            let lines: Vec<String> = defs
                .report
                .problems()
                .filter(|f| !embedded.contains(&f.package))
                .map(|f| f.to_string())
                .collect();
            if lines.is_empty() {
                return Ok(Validator {
                    defs,
                    terminology,
                    invariants,
                    extended: !sources.packages.is_empty(),
                    allowed_extension_domains: sources.allowed_extension_domains.clone(),
                });
            }
            anyhow::bail!(
                "{} problem(s) loading the definitions (strict):\n  {}",
                lines.len(),
                lines.join("\n  ")
            );
        }
        Ok(Validator {
            defs,
            terminology,
            invariants,
            extended: !sources.packages.is_empty(),
            allowed_extension_domains: sources.allowed_extension_domains.clone(),
        })
    }

    /// Whether an extension `url` whose definition is not loaded is accepted (a warning) rather
    /// than an error: its url starts with one of the allowed URL prefixes, or its host is an
    /// allowed host name or below one; or it is in a domain HL7's reference validator always
    /// accepts ([`ALWAYS_ALLOWED_EXTENSION_DOMAINS`]).
    pub fn allows_unknown_extension(&self, url: &str) -> bool {
        allowed_domain(&self.allowed_extension_domains, url)
            || ALWAYS_ALLOWED_EXTENSION_DOMAINS
                .iter()
                .any(|d| allowed_domain(&[d.to_string()], url))
    }

    /// [`Sources::allowed_extension_domains`] as loaded.
    pub fn allowed_extension_domains(&self) -> &[String] {
        &self.allowed_extension_domains
    }

    /// What loading found: the packages, and what could not be loaded or compiled.
    pub fn load_report(&self) -> &LoadReport {
        &self.defs.report
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

    /// As [`Validator::validate`], as part of package `package` (`name#version`, see
    /// [`Definitions::package_index`]): the unversioned profiles and extensions the resource
    /// names resolve within that package's dependency closure first. This is how an IG's own
    /// examples are validated with the dependency versions it declares.
    pub fn validate_in(&self, resource: &Value, profiles: &[String], package: usize) -> Vec<Issue> {
        let mut run = walk::Run::new(self);
        run.set_scope(package);
        run.resource(resource, profiles);
        finish(run.issues)
    }

    /// As [`Validator::validate`], and also the bindings that could not be evaluated locally
    /// (each reported as a `not-supported` warning in the issues), for a terminology server to
    /// settle afterwards. Still no I/O here.
    pub fn validate_detailed(&self, resource: &Value, profiles: &[String]) -> Validated {
        self.validate_detailed_with(resource, profiles, &[])
    }

    /// As [`Validator::validate_detailed`], with `questionnaires` found elsewhere (stored
    /// ones) for the QuestionnaireResponses whose Questionnaire is not contained, in the Bundle
    /// or in the loaded packages.
    pub fn validate_detailed_with(
        &self,
        resource: &Value,
        profiles: &[String],
        questionnaires: &[Value],
    ) -> Validated {
        let mut run = walk::Run::new(self);
        run.supplied = questionnaires;
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
            missing_questionnaires: run.missing_questionnaires,
        }
    }

    /// The Questionnaires `validated` could not find, asked of `source` (all at once); when
    /// any is found, `resource` is validated again with them. Still no I/O here: the source
    /// does it.
    pub async fn resolve_questionnaires<S: questionnaire::QuestionnaireSource + ?Sized>(
        &self,
        source: &S,
        resource: &Value,
        profiles: &[String],
        validated: Validated,
    ) -> Validated {
        if validated.missing_questionnaires.is_empty() {
            return validated;
        }
        let found: Vec<Value> = futures_util::future::join_all(
            validated
                .missing_questionnaires
                .iter()
                .map(|c| source.questionnaire(c)),
        )
        .await
        .into_iter()
        .flatten()
        .filter(|q| q.get("resourceType").and_then(Value::as_str) == Some("Questionnaire"))
        .collect();
        if found.is_empty() {
            return validated;
        }
        self.validate_detailed_with(resource, profiles, &found)
    }

    /// Whether `v` conforms to the profile at `url` (no errors). Nested checks (a profile
    /// discriminator or `conformsTo()` inside a profile checked this way) are bounded: beyond
    /// 8 levels the answer is no.
    pub fn conforms(&self, v: &Value, url: &str) -> bool {
        self.conforms_in(v, url, None)
    }

    /// [`Validator::conforms`] with unversioned canonicals resolved in package `scope`'s
    /// dependency closure (that of the resource whose check asks). Only `url` (and the base
    /// definitions) are checked: the profiles `v` claims are its own walk's business.
    pub(crate) fn conforms_in(&self, v: &Value, url: &str, scope: Option<usize>) -> bool {
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
            run.scope = scope;
            run.only_required = true;
            run.resource(v, &[url.to_string()]);
            !run.issues.iter().any(|i| i.severity <= Severity::Error)
        };
        DEPTH.with(|d| d.set(d.get() - 1));
        ok
    }
}

/// Extension domains accepted whatever the configuration, as HL7's reference validator accepts
/// them: DICOM's (nema.org, whose extensions are not published as definitions) and the FHIR
/// tooling extensions (defined outside any version of FHIR).
pub const ALWAYS_ALLOWED_EXTENSION_DOMAINS: &[&str] =
    &["nema.org", "http://hl7.org/fhir/tools/StructureDefinition/"];

/// Whether `url` falls in one of `domains`: an entry with `://` is a URL prefix, any other a
/// host name that matches the url's host or a parent domain of it.
fn allowed_domain(domains: &[String], url: &str) -> bool {
    let host = url
        .split_once("://")
        .map(|(_, rest)| {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
            let authority = authority.rsplit('@').next().unwrap_or(authority);
            authority.split(':').next().unwrap_or(authority)
        })
        .unwrap_or("");
    domains.iter().any(|d| {
        if d.contains("://") {
            url.starts_with(d.as_str())
        } else {
            let (h, d) = (host.as_bytes(), d.trim_end_matches('.').as_bytes());
            !d.is_empty()
                && (h.eq_ignore_ascii_case(d)
                    || h.len() > d.len()
                        && h[h.len() - d.len()..].eq_ignore_ascii_case(d)
                        && h[h.len() - d.len() - 1] == b'.')
        }
    })
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
    /// Canonicals of the Questionnaires that QuestionnaireResponses name and that could not be
    /// found here (each reported as a warning): for [`Validator::resolve_questionnaires`].
    pub missing_questionnaires: Vec<String>,
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
            .filter(|e| e.file_name() != "package.json")
            .count();
        assert_eq!(files, super::OWN.len());
    }

    /// Every package in profiles/ig/ is embedded (`cargo xtask derive packages` writes them).
    #[test]
    fn every_derived_package_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../profiles/ig");
        let files = std::fs::read_dir(dir)
            .expect("profiles/ig")
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.strip_suffix(".json.gz").map(String::from)
            })
            .collect::<std::collections::BTreeSet<String>>();
        let embedded = super::EMBEDDED_IGS
            .iter()
            .map(|(id, _)| id.to_string())
            .collect::<std::collections::BTreeSet<String>>();
        assert_eq!(files, embedded);
        assert_eq!(embedded.len(), super::EMBEDDED_IGS.len());
    }

    /// Everything embedded loads without a problem (dk-core 1.1.0's and 2.0.0's CPR rule, a
    /// look-ahead, compiles through FHIRPath's fancy-regex fallback).
    #[test]
    fn embedded_definitions_load_with_only_known_problems() {
        let v = super::Validator::embedded().expect("load");
        let problems: Vec<String> = v
            .load_report()
            .problems()
            .map(|f| format!("{} {}", f.package, f.subject))
            .collect();
        // dk-core 1.1.0's and 2.0.0's CPR rule uses a look-ahead: evaluated with fancy-regex.
        assert!(problems.is_empty(), "{problems:#?}");
    }

    /// Our own profiles load without a problem (a differential out of the base's order was one),
    /// with only the packages they derive from (KL Common, dk-core 1.1.0 under it) besides R4.
    #[test]
    fn own_profiles_load_cleanly() {
        let v = super::Validator::r4().expect("load");
        let problems: Vec<String> = v.load_report().problems().map(|f| f.to_string()).collect();
        assert!(problems.is_empty(), "{problems:#?}");
        let loaded: Vec<String> = v.defs.packages().iter().map(|p| p.id()).collect();
        assert!(
            loaded.iter().any(|p| p == "kl.dk.fhir.core#1.2.0"),
            "{loaded:?}"
        );
    }
}
