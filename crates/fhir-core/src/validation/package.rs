//! Reading FHIR packages in the ecosystem's own formats: an npm-style `package.tgz`, its unpacked
//! folder (`package/package.json` plus resource files), a plain folder of resource JSON files (how
//! the IG artifacts beside the checkout are laid out), or the compact files `cargo xtask derive
//! packages` embeds (`profiles/ig/*.json.gz`). Only conformance resources are kept:
//! StructureDefinition, ValueSet and CodeSystem.
//!
//! Resources are recognised by their content, never by their file name: every top-level `.json`
//! file is read, and what it holds decides. A file that cannot be read or is not JSON is a
//! [`Finding`] of kind `Problem`; JSON that is not a FHIR resource is a `Note`. Examples and
//! other resource types are passed over silently.
//!
//! A package's identity and dependencies come from `package.json` (`name`, `version`,
//! `dependencies`), or, in a plain folder, from the ImplementationGuide resource it holds
//! (`packageId`, `version`, `dependsOn`); a folder with neither is named after itself, without a
//! version or dependencies.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::fhir::Member;
use anyhow::{bail, Context, Result};
use serde_json::Value;

/// One thing loading could not use, or a remark about what it did instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: FindingKind,
    /// `name#version` of the package it concerns (empty when it concerns no one package).
    pub package: String,
    /// What it is about: a file name, a canonical URL, or a constraint's key and expression.
    pub subject: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FindingKind {
    /// Something given that could not be loaded or compiled (a file, a profile, a FHIRPath
    /// expression, a value set): it is missing from validation. Fatal when loading is strict.
    Problem,
    /// What loading decided on its own (a dependency version substituted, a dependency that is
    /// not available, a JSON file that is not a resource). Never fatal.
    Note,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.package.is_empty() {
            write!(f, "{}: ", self.package)?;
        }
        if self.subject.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.subject, self.message)
        }
    }
}

/// The conformance resources of one package.
#[derive(Debug, Default)]
pub struct Package {
    /// The package name (`hl7.fhir.dk.core`), or the folder name for a plain folder that holds
    /// no ImplementationGuide.
    pub name: String,
    /// The package version (`3.5.0`); empty when the package does not say.
    pub version: String,
    /// Declared dependencies as (name, version), the R4 core package left out (it is always
    /// loaded).
    pub dependencies: Vec<(String, String)>,
    /// StructureDefinitions, ValueSets and CodeSystems, sorted by file name so that loading does
    /// not depend on archive or directory order.
    pub resources: Vec<Value>,
    /// Files that could not be used (`Problem`) or were not resources (`Note`).
    pub findings: Vec<Finding>,
}

/// The resource types a package contributes: definitions and terminology, and the Questionnaires
/// and Measures QuestionnaireResponses and MeasureReports are checked against.
const KEPT: &[&str] = &[
    "StructureDefinition",
    "ValueSet",
    "CodeSystem",
    "Questionnaire",
    "Measure",
    "ImplementationGuide",
];

/// The core specification's packages: always loaded (embedded), so never a dependency to resolve.
pub fn is_core_package(name: &str) -> bool {
    matches!(
        name,
        "hl7.fhir.r4.core" | "hl7.fhir.r4.examples" | "hl7.fhir.r4.expansions"
    )
}

fn keep(v: &Value) -> bool {
    v.member("resourceType")
        .and_then(Value::as_str)
        .is_some_and(|t| KEPT.contains(&t))
}

/// Whether a top-level file is read at all: every JSON file but the manifest and npm/IG
/// publisher bookkeeping (`.index.json`).
fn readable(name: &str) -> bool {
    name.ends_with(".json") && name != "package.json" && !name.starts_with('.')
}

impl Package {
    /// `name#version`, or the name alone when the version is unknown.
    pub fn id(&self) -> String {
        if self.version.is_empty() {
            self.name.clone()
        } else {
            format!("{}#{}", self.name, self.version)
        }
    }

    /// Read a `.tgz`, a folder with `package/package.json`, a plain folder of JSON files, or a
    /// compact `.json.gz` written by `cargo xtask derive packages`.
    pub fn read(path: &Path) -> Result<Package> {
        if path.is_dir() {
            if path.join("package/package.json").is_file() {
                Self::read_folder(&path.join("package"), true)
            } else if path.join("package.json").is_file() {
                Self::read_folder(path, true)
            } else {
                Self::read_folder(path, false)
            }
        } else if path.to_string_lossy().ends_with(".json.gz") {
            let bytes = std::fs::read(path)?;
            Self::from_compact(&bytes).with_context(|| format!("reading {}", path.display()))
        } else {
            Self::read_tgz(path).with_context(|| format!("reading FHIR package {}", path.display()))
        }
    }

    fn read_tgz(path: &Path) -> Result<Package> {
        let tgz = Tgz::read(path, readable)?;
        let mut pkg = Package {
            name: tgz.name,
            version: tgz.version,
            dependencies: tgz.dependencies,
            ..Package::default()
        };
        let mut bundled = Vec::new();
        for (name, parsed) in tgz.parsed {
            pkg.take(&name, parsed, &mut bundled);
        }
        pkg.settle(bundled);
        Ok(pkg)
    }

    fn read_folder(dir: &Path, has_manifest: bool) -> Result<Package> {
        let mut pkg = Package::default();
        if has_manifest {
            let manifest: Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join("package.json"))?)
                    .context("parsing package.json")?;
            (pkg.name, pkg.version, pkg.dependencies) = manifest_identity(&manifest)?;
        }
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| readable(n))
            .collect();
        names.sort();
        let mut guide = None;
        let mut bundled = Vec::new();
        for name in names {
            let parsed = std::fs::read(dir.join(&name))
                .map_err(|e| format!("cannot be read: {e}"))
                .and_then(|bytes| {
                    serde_json::from_slice::<Value>(&bytes).map_err(|e| format!("is not JSON: {e}"))
                });
            if let Ok(v) = &parsed {
                if v.member("resourceType").and_then(Value::as_str) == Some("ImplementationGuide") {
                    guide.get_or_insert_with(|| v.clone());
                }
            }
            pkg.take(&name, parsed, &mut bundled);
        }
        pkg.settle(bundled);
        if !has_manifest {
            match guide.as_ref().and_then(guide_identity) {
                Some((name, version, deps)) => {
                    (pkg.name, pkg.version, pkg.dependencies) = (name, version, deps)
                }
                None => {
                    pkg.name = dir
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| dir.display().to_string())
                }
            }
        }
        Ok(pkg)
    }

    /// One top-level file's content: kept, unpacked (a Bundle of definitions, as the core
    /// package's `profiles-*.json`), passed over, or reported.
    fn take(&mut self, file: &str, parsed: Result<Value, String>, bundled: &mut Vec<Value>) {
        let v = match parsed {
            Ok(v) => v,
            Err(e) => {
                self.findings.push(Finding {
                    kind: FindingKind::Problem,
                    package: String::new(),
                    subject: file.to_string(),
                    message: e,
                });
                return;
            }
        };
        match v.member("resourceType").and_then(Value::as_str) {
            None => self.findings.push(Finding {
                kind: FindingKind::Note,
                package: String::new(),
                subject: file.to_string(),
                message: "is not a FHIR resource (no resourceType); ignored".into(),
            }),
            Some("Bundle") => {
                if let Some(Value::Array(entries)) = v.member("entry") {
                    for e in entries {
                        if let Some(r) = e.member("resource").filter(|r| keep(r)) {
                            bundled.push(r.clone());
                        }
                    }
                }
            }
            Some(_) if keep(&v) => self.resources.push(v),
            Some(_) => {}
        }
    }

    /// One definition per type, URL and version: a file's own wins over a copy inside a Bundle
    /// (the R4 package ships every definition twice, alone and in `Bundle-*.json`), the first
    /// file by name over a later one.
    fn settle(&mut self, bundled: Vec<Value>) {
        let key = |r: &Value| {
            let s = |k: &str| {
                r.member(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            (s("resourceType"), s("url"), s("version"))
        };
        let mut seen = std::collections::HashSet::new();
        let all = std::mem::take(&mut self.resources)
            .into_iter()
            .chain(bundled);
        self.resources = all.filter(|r| seen.insert(key(r))).collect();
    }

    /// A package from a `package.json` text and its resources (our own profiles, embedded).
    pub fn from_manifest_and_resources(manifest: &str, resources: Vec<Value>) -> Result<Package> {
        let manifest: Value = serde_json::from_str(manifest).context("parsing package.json")?;
        let (name, version, dependencies) = manifest_identity(&manifest)?;
        Ok(Package {
            name,
            version,
            dependencies,
            resources,
            ..Package::default()
        })
    }

    /// A compact package file (`profiles/ig/<name>-<version>.json.gz`): `{"package": {"name",
    /// "version", "dependencies": {name: version}}, "resources": [...]}`, gzip-compressed.
    pub fn from_compact(gz: &[u8]) -> Result<Package> {
        let text = super::definitions::gunzip(gz)?;
        let mut v: Value = serde_json::from_str(&text).context("parsing a compact package")?;
        let (name, version, dependencies) = manifest_identity(&v["package"])?;
        // Taken, not cloned: a copy of every resource was a sixth of the start-up's instructions.
        let resources = match v.get_mut("resources").map(Value::take) {
            Some(Value::Array(a)) => a,
            _ => bail!("a compact package without resources"),
        };
        Ok(Package {
            name,
            version,
            dependencies,
            resources,
            ..Package::default()
        })
    }
}

/// A package's name, version and declared dependencies.
type Identity = (String, String, Vec<(String, String)>);

/// `name`, `version` and `dependencies` of a `package.json` (or a compact file's `package`).
fn manifest_identity(manifest: &Value) -> Result<Identity> {
    let field = |k: &str| manifest.member(k).and_then(Value::as_str).map(String::from);
    let (Some(n), Some(v)) = (field("name"), field("version")) else {
        bail!("package.json lacks name or version");
    };
    let deps = manifest
        .member("dependencies")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(k, _)| !is_core_package(k))
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect();
    Ok((n, v, deps))
}

/// `packageId`, `version` and `dependsOn` of an ImplementationGuide.
fn guide_identity(ig: &Value) -> Option<Identity> {
    let name = ig.member("packageId")?.as_str()?.to_string();
    let version = ig
        .member("version")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let deps = ig
        .member("dependsOn")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| {
            let n = d.member("packageId")?.as_str()?;
            let v = d.member("version")?.as_str()?;
            (!is_core_package(n)).then(|| (n.to_string(), v.to_string()))
        })
        .collect();
    Some((name, version, deps))
}

/// The top-level files of an npm-style package archive: the package's identity from
/// `package.json`, every file name under `package/`, and the JSON of the files `parse` selects,
/// sorted by name (so nothing depends on archive order).
pub struct Tgz {
    /// `name#version`.
    pub id: String,
    pub name: String,
    pub version: String,
    /// From `package.json`, the core package left out.
    pub dependencies: Vec<(String, String)>,
    pub names: Vec<String>,
    /// The selected files, parsed, or why they could not be.
    pub parsed: Vec<(String, Result<Value, String>)>,
}

impl Tgz {
    pub fn read(path: &Path, parse: impl Fn(&str) -> bool) -> Result<Tgz> {
        let file = File::open(path)?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(file)));
        let mut identity = None;
        let mut names = Vec::new();
        let mut parsed = Vec::new();
        let mut bytes = Vec::new();
        for entry in archive.entries()? {
            let mut entry = entry?;
            let entry_path = entry.path()?.to_string_lossy().into_owned();
            let Some(name) = entry_path.strip_prefix("package/") else {
                continue;
            };
            if name.contains('/') {
                continue; // package/examples/, package/other/
            }
            if name == "package.json" {
                let mut text = String::new();
                entry.read_to_string(&mut text)?;
                let manifest: Value =
                    serde_json::from_str(&text).context("parsing package.json")?;
                identity = Some(manifest_identity(&manifest)?);
                continue;
            }
            if parse(name) {
                bytes.clear();
                let v = match entry.read_to_end(&mut bytes) {
                    Ok(_) => serde_json::from_slice::<Value>(&bytes)
                        .map_err(|e| format!("is not JSON: {e}")),
                    Err(e) => Err(format!("cannot be read: {e}")),
                };
                parsed.push((name.to_string(), v));
            }
            names.push(name.to_string());
        }
        parsed.sort_by(|a, b| a.0.cmp(&b.0));
        names.sort();
        let (name, version, dependencies) =
            identity.context("no package/package.json in the archive")?;
        Ok(Tgz {
            id: format!("{name}#{version}"),
            name,
            version,
            dependencies,
            names,
            parsed,
        })
    }
}
