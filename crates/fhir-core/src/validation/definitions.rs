//! The loaded definitions: the embedded R4 base, our own profiles, and FHIR packages (embedded IG
//! packages, or packages from config or the command line), compiled once.
//!
//! Packages are keyed by name and version, so several versions of one package coexist (dk-core
//! 2.0.0 for MedCom HospitalNotification next to 3.5.0 for MedCom core 4). Each package has a
//! *dependency closure*: itself, then the packages its declared dependencies resolve to, nearest
//! first, one version per package name (a version declared nearer the package wins over one a
//! dependency declares), then the R4 core. A declared version that is not loaded is replaced by
//! the nearest loaded version of that package (a note in the report says so).
//!
//! A definition's references to other definitions (`baseDefinition`, type profiles, target
//! profiles, value set bindings, and in value sets the included code systems and value sets) are
//! resolved within the closure of the package it comes from, once, at load: where more than one
//! version of the target is loaded, the reference is rewritten to the exact `url|version` the
//! closure picks. Afterwards a lookup needs no context:
//! - a canonical with `|version` resolves exactly;
//! - an unversioned canonical resolves, within a package's closure when one is given
//!   ([`Definitions::profile_in`]), else to the highest loaded version (among equal versions the
//!   package loaded last).

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::fhir::Member;
use anyhow::{Context, Result};
use serde_json::Value;

use super::model::{compile, Kind, Profile};
use super::package::{Finding, FindingKind, Package};
use super::snapshot;
use super::terminology::{compare_versions, Terminology};
use crate::fhirpath::SnapshotModel;

static EMBEDDED_SDS: &[u8] =
    include_bytes!("../../../../profiles/r4/structure-definitions.json.gz");

/// Index of a loaded package in [`Definitions::packages`].
pub type PkgIdx = usize;

/// The R4 core package is always loaded first.
pub const CORE: PkgIdx = 0;

/// Our own package (`profiles/sektorbro/`) is always loaded second.
pub const OWN: PkgIdx = 1;

/// Which version of a code system a Coding without a version means (see
/// [`Definitions::code_system_in`]).
#[derive(Debug, PartialEq, Eq)]
pub enum CodeSystemChoice {
    /// `url|version`: the version the closure picks.
    Exact(String),
    /// The url as it is: not loaded at all, or loaded without a version.
    AsIs,
    /// Loaded, but only by packages outside the closure: not this context's to judge.
    Outside,
}

/// One loaded package.
#[derive(Debug, Clone)]
pub struct PackageInfo {
    pub name: String,
    /// Empty when the package does not say.
    pub version: String,
    /// As declared (the R4 core left out).
    pub dependencies: Vec<(String, String)>,
    /// This package, then what its dependencies resolve to, nearest first; the core last.
    pub closure: Vec<PkgIdx>,
    /// Embedded in the binary (as opposed to given in config or on the command line).
    pub embedded: bool,
    /// StructureDefinitions loaded from it.
    pub definitions: usize,
}

impl PackageInfo {
    /// `name#version`, or the name alone when the version is unknown.
    pub fn id(&self) -> String {
        if self.version.is_empty() {
            self.name.clone()
        } else {
            format!("{}#{}", self.name, self.version)
        }
    }
}

/// What loading found: the packages, and everything that could not be loaded or compiled.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    /// `name#version` and how many StructureDefinitions it gave, in load order.
    pub packages: Vec<(String, usize)>,
    /// Problems (files, definitions, value sets, expressions that could not be used) and notes.
    pub findings: Vec<Finding>,
}

impl LoadReport {
    /// What could not be loaded or compiled (fatal when loading is strict).
    pub fn problems(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.kind == FindingKind::Problem)
    }

    /// What loading decided on its own (a substituted dependency version, a file that is not a
    /// resource).
    pub fn notes(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.kind == FindingKind::Note)
    }

    pub fn has_problems(&self) -> bool {
        self.problems().next().is_some()
    }

    pub(crate) fn problem(&mut self, package: &str, subject: &str, message: String) {
        self.push(FindingKind::Problem, package, subject, message);
    }

    fn note(&mut self, package: &str, subject: &str, message: String) {
        self.push(FindingKind::Note, package, subject, message);
    }

    fn push(&mut self, kind: FindingKind, package: &str, subject: &str, message: String) {
        let f = Finding {
            kind,
            package: package.to_string(),
            subject: subject.to_string(),
            message,
        };
        if !self.findings.contains(&f) {
            self.findings.push(f);
        }
    }
}

/// A package to load, and whether it is embedded in the binary.
pub struct Source {
    pub package: Package,
    pub embedded: bool,
}

pub struct Definitions {
    packages: Vec<PackageInfo>,
    /// Every loaded version by canonical URL, lowest version first.
    by_url: FxHashMap<String, Vec<Arc<Profile>>>,
    /// By `url|version`.
    exact: FxHashMap<String, Arc<Profile>>,
    /// The defining StructureDefinition of each type (`Patient`, `CodeableConcept`, `string`).
    types: FxHashMap<String, Arc<Profile>>,
    resource_types: BTreeSet<String>,
    /// Constraint keys of the base specification: evaluated by the base pass everywhere they
    /// apply, so profile passes skip them.
    base_keys: FxHashSet<String>,
    /// Raw StructureDefinitions (with generated snapshots) by `url|version`, as compact JSON
    /// text: kept to generate snapshots of profiles that derive from them, and read rarely after
    /// loading (a StructureDefinition being validated). As parsed trees they would be most of
    /// the validator's memory, and they would be alive beside the compiled definitions at the
    /// peak of loading (measured with massif on `sektorbro validate`).
    raw: FxHashMap<String, Box<[u8]>>,
    /// The last raw StructureDefinitions parsed, by `url|version`: generating a snapshot parses
    /// the base and each datatype it unfolds, and a run of profiles on the same types (R4's
    /// examples hold dozens on Observation) would parse them again for each one. Bounded; cleared
    /// when full.
    raw_parsed: Mutex<FxHashMap<String, Arc<Value>>>,
    /// The FHIRPath type model of the loaded types, built as they load (taken by the
    /// invariants' compiler, [`Definitions::take_model`]).
    model: SnapshotModel,
    /// Definitions that could not be loaded, by `url` and `url|version`: why.
    failed: FxHashMap<String, String>,
    /// Where each CodeSystem is defined (package, version).
    code_systems: FxHashMap<String, Vec<(PkgIdx, Option<String>)>>,
    /// Other canonical resources the validator consults (Questionnaire for
    /// QuestionnaireResponse, Measure for MeasureReport), by `resourceType|url`, in load order.
    canonicals: FxHashMap<String, Vec<(PkgIdx, Arc<Value>)>>,
    /// The global profiles of the loaded ImplementationGuides (`ImplementationGuide.global`):
    /// (resource type, profile), each applying to every resource of that type.
    globals: Vec<(String, String)>,
    pub report: LoadReport,
}

/// Where each canonical URL is defined: (package, version) of every loaded resource.
type Index = FxHashMap<String, Vec<(PkgIdx, Option<String>)>>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Structure,
    ValueSet,
    CodeSystem,
}

impl Definitions {
    /// The R4 core package as embedded (definitions only; its terminology is added by the
    /// validator).
    pub fn core_package() -> Result<Package> {
        let text = gunzip(EMBEDDED_SDS)?;
        let sds: Vec<Value> = serde_json::from_str(&text).context("embedded definitions")?;
        Ok(Package {
            name: "hl7.fhir.r4.core".into(),
            version: "4.0.1".into(),
            resources: sds,
            ..Package::default()
        })
    }

    /// Load `sources` (the first is the R4 core package), their ValueSets and CodeSystems into
    /// `terminology`. A later package with the same name and version replaces an earlier one.
    pub fn load(sources: Vec<Source>, terminology: &mut Terminology) -> Definitions {
        let mut report = LoadReport::default();
        // One package per name#version, the later one kept (in its own place in the order).
        let mut kept: Vec<Source> = Vec::new();
        for s in sources {
            let id = s.package.id();
            if let Some(i) = kept.iter().position(|k| k.package.id() == id) {
                if i == CORE {
                    report.note(&id, "", "the R4 core is embedded; ignored".into());
                    continue;
                }
                kept.remove(i);
            }
            kept.push(s);
        }
        let mut defs = Definitions {
            packages: Vec::with_capacity(kept.len()),
            by_url: Default::default(),
            exact: Default::default(),
            types: Default::default(),
            resource_types: BTreeSet::new(),
            base_keys: Default::default(),
            raw: Default::default(),
            raw_parsed: Default::default(),
            model: SnapshotModel::default(),
            failed: Default::default(),
            code_systems: Default::default(),
            canonicals: Default::default(),
            globals: Vec::new(),
            report,
        };
        let mut contents: Vec<Vec<Value>> = Vec::with_capacity(kept.len());
        for s in kept {
            let mut p = s.package;
            let id = p.id();
            for mut f in p.findings.drain(..) {
                f.package = id.clone();
                defs.report.findings.push(f);
            }
            if !p.version.is_empty() {
                // A definition without a version is known by its package's.
                for r in p.resources.iter_mut() {
                    if let Some(o) = r.as_object_mut() {
                        if !o.contains_key("version") {
                            o.insert("version".into(), Value::String(p.version.clone()));
                        }
                    }
                }
            }
            defs.packages.push(PackageInfo {
                name: p.name,
                version: p.version,
                dependencies: p.dependencies,
                closure: Vec::new(),
                embedded: s.embedded,
                definitions: 0,
            });
            contents.push(p.resources);
        }
        for i in 0..defs.packages.len() {
            defs.packages[i].closure = defs.closure_of(i);
        }

        // Where everything is defined, to pin references to the versions each closure picks.
        let mut index: [Index; 3] = Default::default();
        for (p, resources) in contents.iter().enumerate() {
            for r in resources {
                let target = match r.member("resourceType").and_then(Value::as_str) {
                    Some("StructureDefinition") => Target::Structure,
                    Some("ValueSet") => Target::ValueSet,
                    Some("CodeSystem") => Target::CodeSystem,
                    _ => continue,
                };
                if let Some(url) = r.member("url").and_then(Value::as_str) {
                    let version = r
                        .member("version")
                        .and_then(Value::as_str)
                        .map(String::from);
                    index[target as usize]
                        .entry(url.to_string())
                        .or_default()
                        .push((p, version));
                }
            }
        }
        for (p, resources) in contents.iter_mut().enumerate() {
            if p == CORE {
                continue;
            }
            let closure = defs.packages[p].closure.clone();
            let pin = |url: &str, t: Target| pin(&index[t as usize], url, &closure);
            for r in resources.iter_mut() {
                match r.member("resourceType").and_then(Value::as_str) {
                    Some("StructureDefinition") => pin_structure(r, &pin),
                    Some("ValueSet") => pin_value_set(r, &pin),
                    _ => {}
                }
            }
        }

        let mut sds: Vec<(PkgIdx, Value)> = Vec::new();
        for (p, resources) in contents.into_iter().enumerate() {
            let id = defs.packages[p].id();
            for r in resources {
                let rtype = r.member("resourceType").and_then(Value::as_str);
                if rtype == Some("StructureDefinition") {
                    sds.push((p, r));
                } else if let (Some(t @ ("Questionnaire" | "Measure")), Some(url)) =
                    (rtype, r.member("url").and_then(Value::as_str))
                {
                    let key = format!("{t}|{url}");
                    defs.canonicals
                        .entry(key)
                        .or_default()
                        .push((p, Arc::new(r)));
                } else if rtype == Some("Questionnaire") || rtype == Some("Measure") {
                    // without a url nothing can name it
                } else if rtype == Some("ImplementationGuide") {
                    // The core package's example guide names a profile R4 does not hold (its
                    // globals are an example, not a rule of the specification).
                    if p != CORE {
                        defs.globals.extend(global_profiles(&r));
                    }
                } else if let Err(e) = terminology.add(&r) {
                    defs.report.problem(&id, url_of(&r), e);
                }
            }
        }
        defs.add_all(sds);
        defs.code_systems = std::mem::take(&mut index[Target::CodeSystem as usize])
            .into_iter()
            .collect();
        defs.base_keys = defs
            .by_url
            .values()
            .flatten()
            // the base types' own rules (checked by the base pass), not those of R4's
            // constraint profiles (vitalsigns, MoneyQuantity), which only their profile pass checks
            .filter(|p| p.package == CORE && !p.constraint)
            .flat_map(|p| p.elements.iter())
            .flat_map(|e| e.constraints.iter().map(|c| c.key.clone()))
            .collect();
        defs.report.packages = defs
            .packages
            .iter()
            .map(|p| (p.id(), p.definitions))
            .collect();
        defs
    }

    /// The closure of package `root` (see the module documentation), with notes on declared
    /// versions that are not loaded.
    fn closure_of(&mut self, root: PkgIdx) -> Vec<PkgIdx> {
        let mut order = vec![root];
        let mut names: HashSet<String> = HashSet::from([self.packages[root].name.clone()]);
        let mut queue = VecDeque::from([(root, 0usize)]);
        let root_id = self.packages[root].id();
        while let Some((p, depth)) = queue.pop_front() {
            for (name, wanted) in self.packages[p].dependencies.clone() {
                if !names.insert(name.clone()) {
                    continue; // a nearer declaration decided
                }
                match self.pick_version(&name, &wanted) {
                    Some(i) => {
                        if depth == 0 && self.packages[i].version != wanted {
                            let used = self.packages[i].id();
                            self.report.note(
                                &root_id,
                                "",
                                format!("declares {name}#{wanted}, which is not loaded; {used} is used instead"),
                            );
                        }
                        order.push(i);
                        queue.push_back((i, depth + 1));
                    }
                    None if depth == 0 => self.report.note(
                        &root_id,
                        "",
                        format!(
                            "declares {name}#{wanted}, which is not loaded; definitions from it are \
                             not checked"
                        ),
                    ),
                    None => {}
                }
            }
        }
        if root != CORE {
            order.push(CORE);
        }
        order
    }

    /// The loaded package `name` at version `wanted`, or the nearest loaded version: within the
    /// same major version the lowest one above `wanted`, else the highest below; else likewise
    /// across major versions.
    fn pick_version(&self, name: &str, wanted: &str) -> Option<PkgIdx> {
        let mut cands: Vec<PkgIdx> = (0..self.packages.len())
            .filter(|&i| self.packages[i].name == name)
            .collect();
        if let Some(&i) = cands
            .iter()
            .rev()
            .find(|&&i| self.packages[i].version == wanted)
        {
            return Some(i);
        }
        cands.sort_by(|&a, &b| {
            compare_versions(
                Some(&self.packages[a].version),
                Some(&self.packages[b].version),
            )
        });
        let major = |v: &str| v.split('.').next().unwrap_or_default().to_string();
        let nearest = |list: &[PkgIdx]| -> Option<PkgIdx> {
            list.iter()
                .copied()
                .find(|&i| compare_versions(Some(&self.packages[i].version), Some(wanted)).is_gt())
                .or_else(|| list.last().copied())
        };
        let same: Vec<PkgIdx> = cands
            .iter()
            .copied()
            .filter(|&i| major(&self.packages[i].version) == major(wanted))
            .collect();
        nearest(&same).or_else(|| nearest(&cands))
    }

    /// Add StructureDefinitions, generating snapshots for differential-only ones once their base
    /// (and the profiles their differential names on types) are loaded, whatever the input order.
    fn add_all(&mut self, sds: Vec<(PkgIdx, Value)>) {
        let mut pending: Vec<(PkgIdx, Value)> = Vec::new();
        for (p, sd) in sds {
            if sd.member("kind").and_then(Value::as_str) == Some("logical") {
                continue;
            }
            if has_snapshot(&sd) {
                self.add_one(p, sd);
            } else {
                pending.push((p, sd));
            }
        }
        // Differential-only: repeat while progress is made (a profile on a profile waits for it).
        let mut relaxed = false;
        loop {
            let before = pending.len();
            let waiting_for: HashSet<String> = pending
                .iter()
                .flat_map(|(_, sd)| {
                    let url = url_of(sd).to_string();
                    let v = sd.member("version").and_then(Value::as_str);
                    [key(&url, v), url]
                })
                .collect();
            let mut waiting = Vec::new();
            for (p, sd) in pending {
                let base = sd
                    .member("baseDefinition")
                    .and_then(Value::as_str)
                    .and_then(|b| self.raw(b));
                let blocked = !relaxed
                    && type_profiles(&sd)
                        .iter()
                        .any(|u| *u != url_of(&sd) && waiting_for.contains(*u));
                match base {
                    Some(base) if !blocked => self.snapshot_and_add(p, sd, &base),
                    _ => waiting.push((p, sd)),
                }
            }
            pending = waiting;
            if pending.is_empty() {
                break;
            }
            if pending.len() == before {
                if relaxed {
                    break;
                }
                relaxed = true; // a cycle of type profiles: go ahead without them
            }
        }
        for (p, sd) in pending {
            let base = sd
                .member("baseDefinition")
                .and_then(Value::as_str)
                .unwrap_or("(none)");
            let why = match self.failure(base) {
                Some(e) => format!("its base definition {base} could not be loaded ({e})"),
                None => format!("its base definition {base} is not loaded"),
            };
            self.fail(p, &sd, why);
        }
    }

    fn snapshot_and_add(&mut self, p: PkgIdx, sd: Value, base: &Value) {
        match snapshot::generate(&sd, base, self) {
            Ok((with_snapshot, warnings)) => {
                let id = self.packages[p].id();
                for w in warnings {
                    self.report.problem(&id, url_of(&sd), w);
                }
                self.add_one(p, with_snapshot);
            }
            Err(e) => self.fail(p, &sd, e),
        }
    }

    fn fail(&mut self, p: PkgIdx, sd: &Value, why: String) {
        let url = url_of(sd).to_string();
        let id = self.packages[p].id();
        self.report.problem(&id, &url, why.clone());
        if let Some(v) = sd.member("version").and_then(Value::as_str) {
            self.failed.insert(key(&url, Some(v)), why.clone());
        }
        self.failed.insert(url, why);
    }

    fn add_one(&mut self, pkg: PkgIdx, sd: Value) {
        let mut p = match compile(&sd) {
            Ok(p) => p,
            Err(e) => {
                // `compile` names the URL itself
                let msg = e
                    .strip_prefix(&format!("{}: ", url_of(&sd)))
                    .unwrap_or(&e)
                    .to_string();
                return self.fail(pkg, &sd, msg);
            }
        };
        p.package = pkg;
        let p = Arc::new(p);
        if !p.constraint && (pkg == CORE || !self.types.contains_key(&p.type_name)) {
            if p.kind == Kind::Resource && !p.is_abstract {
                self.resource_types.insert(p.type_name.clone());
            }
            self.types.insert(p.type_name.clone(), p.clone());
            self.model.add(&sd);
        }
        let k = key(&p.url, p.version.as_deref());
        let list = self.by_url.entry(p.url.clone()).or_default();
        list.retain(|q| q.version != p.version);
        list.push(p.clone());
        list.sort_by(|a, b| compare_versions(a.version.as_deref(), b.version.as_deref()));
        // a successful load of the same URL at another version does not undo a failure
        self.failed.remove(&k);
        self.exact.insert(k.clone(), p.clone());
        if let Ok(text) = serde_json::to_vec(&sd) {
            self.raw.insert(k, text.into_boxed_slice());
        }
        self.packages[pkg].definitions += 1;
    }

    /// A profile (or any definition) by canonical URL: with `|version` exactly, without it the
    /// highest loaded version.
    pub fn profile(&self, canonical: &str) -> Option<&Arc<Profile>> {
        match split(canonical) {
            (_, Some(_)) => self.exact.get(canonical),
            (url, None) => self.by_url.get(url).and_then(|l| l.last()),
        }
    }

    /// As [`Definitions::profile`], but an unversioned URL resolves within the dependency
    /// closure of package `scope` first.
    pub fn profile_in(&self, canonical: &str, scope: Option<PkgIdx>) -> Option<&Arc<Profile>> {
        let (url, version) = split(canonical);
        let (Some(scope), None) = (scope, version) else {
            return self.profile(canonical);
        };
        let list = self.by_url.get(url)?;
        if list.len() > 1 {
            for &p in &self.packages.get(scope)?.closure {
                if let Some(found) = list.iter().rev().find(|x| x.package == p) {
                    return Some(found);
                }
            }
        }
        list.last()
    }

    /// The version of code system `url` that a Coding without a version means within the
    /// closure of package `scope` (without one, within our own package and R4: what the gateway
    /// held before any IG package was loaded). A system that only packages outside the closure
    /// define (MedCom's subset of NPU, say, for a dk-core example) is [`CodeSystemChoice::Outside`].
    pub fn code_system_in(&self, url: &str, scope: Option<PkgIdx>) -> CodeSystemChoice {
        let Some(cands) = self.code_systems.get(url) else {
            return CodeSystemChoice::AsIs;
        };
        let Some(p) = self.packages.get(scope.unwrap_or(OWN)) else {
            return CodeSystemChoice::AsIs;
        };
        for q in &p.closure {
            if let Some((_, v)) = cands.iter().rev().find(|(c, _)| c == q) {
                return match v {
                    Some(v) => CodeSystemChoice::Exact(format!("{url}|{v}")),
                    None => CodeSystemChoice::AsIs,
                };
            }
        }
        CodeSystemChoice::Outside
    }

    /// A loaded Questionnaire or Measure (`rtype`) by canonical URL: with `|version` that
    /// version, without it the last loaded within package `scope`'s closure, else the last
    /// loaded anywhere.
    pub fn canonical_resource(
        &self,
        rtype: &str,
        canonical: &str,
        scope: Option<PkgIdx>,
    ) -> Option<&Arc<Value>> {
        let (url, version) = split(canonical);
        let list = self.canonicals.get(&format!("{rtype}|{url}"))?;
        if let Some(v) = version {
            return list
                .iter()
                .rev()
                .find(|(_, r)| r.member("version").and_then(Value::as_str) == Some(v))
                .map(|(_, r)| r);
        }
        if let Some(p) = scope.and_then(|s| self.packages.get(s)) {
            for q in &p.closure {
                if let Some((_, r)) = list.iter().rev().find(|(c, _)| c == q) {
                    return Some(r);
                }
            }
        }
        list.last().map(|(_, r)| r)
    }

    /// The profiles a loaded ImplementationGuide declares global for resources of type
    /// `rtype` (they apply whether a resource claims them or not).
    pub fn global_profiles<'a>(&'a self, rtype: &'a str) -> impl Iterator<Item = &'a str> {
        self.globals
            .iter()
            .filter(move |(t, _)| t == rtype)
            .map(|(_, p)| p.as_str())
    }

    /// Why the definition at `canonical` could not be loaded, if it was given and failed.
    pub fn failure(&self, canonical: &str) -> Option<&str> {
        self.failed
            .get(canonical)
            .or_else(|| self.failed.get(split(canonical).0))
            .map(String::as_str)
    }

    /// The definition of a type by name (`Patient`, `Quantity`, `string`).
    pub fn type_def(&self, name: &str) -> Option<&Arc<Profile>> {
        self.types.get(name)
    }

    pub fn is_resource_type(&self, name: &str) -> bool {
        self.resource_types.contains(name)
    }

    pub fn resource_types(&self) -> impl Iterator<Item = &str> {
        self.resource_types.iter().map(String::as_str)
    }

    pub fn is_base_key(&self, key: &str) -> bool {
        self.base_keys.contains(key)
    }

    /// The raw StructureDefinition behind a canonical (with its generated snapshot, if any),
    /// resolved as [`Definitions::profile`] does; parsed from its stored text on each call.
    pub fn raw(&self, canonical: &str) -> Option<Arc<Value>> {
        /// How many parsed definitions [`Definitions::raw`] keeps.
        const KEEP: usize = 64;
        let p = self.profile(canonical)?;
        let k = key(&p.url, p.version.as_deref());
        if let Some(v) = self.raw_parsed.lock().ok()?.get(&k) {
            return Some(v.clone());
        }
        let text = self.raw.get(&k)?;
        let parsed: Arc<Value> = Arc::new(serde_json::from_slice(text).ok()?);
        let mut cache = self.raw_parsed.lock().ok()?;
        if cache.len() >= KEEP {
            cache.clear();
        }
        cache.insert(k, parsed.clone());
        Some(parsed)
    }

    /// The FHIRPath type model of the loaded types (once: it is moved out).
    pub(crate) fn take_model(&mut self) -> SnapshotModel {
        std::mem::take(&mut self.model)
    }

    /// Every definition, each once.
    pub fn all_profiles(&self) -> impl Iterator<Item = &Arc<Profile>> {
        self.by_url.values().flatten()
    }

    /// The loaded packages, the R4 core first.
    pub fn packages(&self) -> &[PackageInfo] {
        &self.packages
    }

    /// The loaded package `name#version` (or `name` alone: its highest loaded version).
    pub fn package_index(&self, id: &str) -> Option<PkgIdx> {
        let (name, version) = match id.split_once('#') {
            Some((n, v)) => (n, Some(v)),
            None => (id, None),
        };
        (0..self.packages.len())
            .filter(|&i| self.packages[i].name == name)
            .filter(|&i| version.is_none_or(|v| self.packages[i].version == v))
            .max_by(|&a, &b| {
                compare_versions(
                    Some(&self.packages[a].version),
                    Some(&self.packages[b].version),
                )
            })
    }

    /// The package a definition was loaded from.
    pub fn package_of(&self, p: &Profile) -> &PackageInfo {
        &self.packages[p.package]
    }

    /// Whether type `sub` is `sup` or derives from it (`Age` → `Quantity`, `Patient` →
    /// `DomainResource` → `Resource`).
    pub fn derives_from(&self, sub: &str, sup: &str) -> bool {
        let mut current = sub.to_string();
        for _ in 0..16 {
            if current == sup {
                return true;
            }
            let Some(p) = self.types.get(&current) else {
                return false;
            };
            match p.base.as_deref().and_then(|b| self.profile(b)) {
                Some(b) => current = b.type_name.clone(),
                None => return false,
            }
        }
        false
    }
}

/// `url|version` when more than one version of `url` is loaded and the closure picks one;
/// `None` leaves the reference as it is (already versioned, unique, or not loaded at all).
fn pin(index: &Index, url: &str, closure: &[PkgIdx]) -> Option<String> {
    if url.contains('|') {
        return None;
    }
    let cands = index.get(url)?;
    let first = &cands.first()?.1;
    if cands.iter().all(|(_, v)| v == first) {
        return None;
    }
    closure.iter().find_map(|p| {
        cands
            .iter()
            .rev()
            .find(|(q, _)| q == p)
            .and_then(|(_, v)| v.as_ref())
            .map(|v| format!("{url}|{v}"))
    })
}

fn pin_str(v: &mut Value, t: Target, pin: &impl Fn(&str, Target) -> Option<String>) {
    if let Some(pinned) = v.as_str().and_then(|s| pin(s, t)) {
        *v = Value::String(pinned);
    }
}

fn pin_all(v: Option<&mut Value>, t: Target, pin: &impl Fn(&str, Target) -> Option<String>) {
    if let Some(Value::Array(a)) = v {
        for x in a {
            pin_str(x, t, pin);
        }
    }
}

/// Pin a StructureDefinition's references: its base, type profiles, target profiles, bindings.
fn pin_structure(sd: &mut Value, pin: &impl Fn(&str, Target) -> Option<String>) {
    if let Some(b) = sd.get_mut("baseDefinition") {
        pin_str(b, Target::Structure, pin);
    }
    for part in ["snapshot", "differential"] {
        let Some(Value::Array(elements)) = sd.get_mut(part).and_then(|s| s.get_mut("element"))
        else {
            continue;
        };
        for e in elements {
            if let Some(Value::Array(types)) = e.get_mut("type") {
                for t in types {
                    pin_all(t.get_mut("profile"), Target::Structure, pin);
                    pin_all(t.get_mut("targetProfile"), Target::Structure, pin);
                }
            }
            if let Some(vs) = e.get_mut("binding").and_then(|b| b.get_mut("valueSet")) {
                pin_str(vs, Target::ValueSet, pin);
            }
        }
    }
}

/// Pin a ValueSet's references: the code systems and value sets it includes or excludes.
fn pin_value_set(vs: &mut Value, pin: &impl Fn(&str, Target) -> Option<String>) {
    let Some(compose) = vs.get_mut("compose") else {
        return;
    };
    for part in ["include", "exclude"] {
        let Some(Value::Array(clauses)) = compose.get_mut(part) else {
            continue;
        };
        for c in clauses {
            pin_all(c.get_mut("valueSet"), Target::ValueSet, pin);
            let Some(o) = c.as_object_mut() else {
                continue;
            };
            if o.contains_key("version") {
                continue;
            }
            let pinned = o
                .member("system")
                .and_then(Value::as_str)
                .and_then(|s| pin(s, Target::CodeSystem));
            if let Some((_, v)) = pinned.as_deref().and_then(|p| p.rsplit_once('|')) {
                o.insert("version".into(), Value::String(v.to_string()));
            }
        }
    }
}

/// The profiles a differential names on its types (extensions, datatype profiles).
fn type_profiles(sd: &Value) -> Vec<&str> {
    sd.member("differential")
        .and_then(|d| d.member("element"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.member("type").and_then(Value::as_array))
        .flatten()
        .filter_map(|t| t.member("profile").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn has_snapshot(sd: &Value) -> bool {
    sd.member("snapshot")
        .and_then(|s| s.member("element"))
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

fn url_of(r: &Value) -> &str {
    r.member("url")
        .and_then(Value::as_str)
        .unwrap_or("(no url)")
}

/// `url|version`, or the url alone without a version.
fn key(url: &str, version: Option<&str>) -> String {
    match version {
        Some(v) => format!("{url}|{v}"),
        None => url.to_string(),
    }
}

/// `url|version` → (`url`, `Some(version)`).
/// `ImplementationGuide.global`: (type, profile) pairs.
fn global_profiles(ig: &Value) -> Vec<(String, String)> {
    ig.member("global")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|g| {
            Some((
                g.member("type")?.as_str()?.to_string(),
                g.member("profile")?.as_str()?.to_string(),
            ))
        })
        .collect()
}

fn split(canonical: &str) -> (&str, Option<&str>) {
    match memchr::memrchr(b'|', canonical.as_bytes()) {
        Some(i) => (&canonical[..i], Some(&canonical[i + 1..])),
        None => (canonical, None),
    }
}

pub fn strip_version(canonical: &str) -> &str {
    split(canonical).0
}

/// The embedded files are gzip-compressed (2 MB in the repository instead of 15).
pub fn gunzip(bytes: &[u8]) -> Result<String> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(bytes), &mut text)
        .context("decompressing embedded definitions")?;
    Ok(text)
}
