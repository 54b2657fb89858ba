//! Reading FHIR packages in the ecosystem's own formats: an npm-style `package.tgz`, its unpacked
//! folder (`package/package.json` plus resource files), or a plain folder of resource JSON files
//! (how the IG artifacts beside the checkout are laid out). Only conformance resources are kept:
//! StructureDefinition, ValueSet and CodeSystem.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// The conformance resources of one package.
#[derive(Debug, Default)]
pub struct Package {
    /// `name#version` from `package.json`, or the folder name for a plain folder.
    pub id: String,
    /// StructureDefinitions, ValueSets and CodeSystems, sorted by file name so that loading does
    /// not depend on archive or directory order.
    pub resources: Vec<Value>,
}

const KEPT: &[&str] = &["StructureDefinition", "ValueSet", "CodeSystem"];

fn keep(v: &Value) -> bool {
    v.get("resourceType")
        .and_then(Value::as_str)
        .is_some_and(|t| KEPT.contains(&t))
}

/// Whether a file name could hold a conformance resource (saves parsing examples).
fn candidate(name: &str) -> bool {
    name.ends_with(".json")
        && !name.ends_with("package.json")
        && !name.starts_with('.')
        && (KEPT.iter().any(|k| name.starts_with(k))
            || !name.contains('-')
            || name.starts_with("profiles-")
            || name.starts_with("valuesets"))
}

/// Push `v`, unpacking Bundles (the core package's `profiles-*.json`, `valuesets.json`).
fn collect(v: Value, out: &mut Vec<Value>) {
    if v.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
        if let Some(Value::Array(entries)) = v.get("entry").cloned() {
            for e in entries {
                if let Some(r) = e.get("resource") {
                    if keep(r) {
                        out.push(r.clone());
                    }
                }
            }
        }
    } else if keep(&v) {
        out.push(v);
    }
}

impl Package {
    /// Read a `.tgz`, a folder with `package/package.json`, or a plain folder of JSON files.
    pub fn read(path: &Path) -> Result<Package> {
        if path.is_dir() {
            if path.join("package/package.json").is_file() {
                Self::read_folder(&path.join("package"), true)
            } else if path.join("package.json").is_file() {
                Self::read_folder(path, true)
            } else {
                Self::read_folder(path, false)
            }
        } else {
            Self::read_tgz(path).with_context(|| format!("reading FHIR package {}", path.display()))
        }
    }

    fn read_tgz(path: &Path) -> Result<Package> {
        let tgz = Tgz::read(path, candidate)?;
        let mut resources = Vec::new();
        for (_, v) in tgz.parsed {
            collect(v, &mut resources);
        }
        Ok(Package {
            id: tgz.id,
            resources,
        })
    }

    fn read_folder(dir: &Path, has_manifest: bool) -> Result<Package> {
        let id = if has_manifest {
            manifest_id(&std::fs::read_to_string(dir.join("package.json"))?)?
        } else {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| dir.display().to_string())
        };
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| candidate(n))
            .collect();
        names.sort();
        let mut resources = Vec::new();
        for name in names {
            let path = dir.join(&name);
            let text = std::fs::read_to_string(&path)?;
            let v: Value = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            collect(v, &mut resources);
        }
        Ok(Package { id, resources })
    }
}

fn manifest_id(text: &str) -> Result<String> {
    let manifest: Value = serde_json::from_str(text).context("parsing package.json")?;
    let field = |k: &str| manifest.get(k).and_then(Value::as_str).map(String::from);
    let (Some(n), Some(v)) = (field("name"), field("version")) else {
        bail!("package.json lacks name or version");
    };
    Ok(format!("{n}#{v}"))
}

/// The top-level files of an npm-style package archive: the package id from `package.json`, every
/// file name under `package/`, and the JSON of the files `parse` selects, sorted by name (so
/// nothing depends on archive order).
pub struct Tgz {
    /// `name#version`.
    pub id: String,
    pub names: Vec<String>,
    pub parsed: Vec<(String, Value)>,
}

impl Tgz {
    pub fn read(path: &Path, parse: impl Fn(&str) -> bool) -> Result<Tgz> {
        let file = File::open(path)?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(file)));
        let mut id = None;
        let mut names = Vec::new();
        let mut parsed = Vec::new();
        let mut text = String::new();
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
                text.clear();
                entry.read_to_string(&mut text)?;
                id = Some(manifest_id(&text)?);
                continue;
            }
            if parse(name) {
                text.clear();
                entry.read_to_string(&mut text)?;
                let v: Value =
                    serde_json::from_str(&text).with_context(|| format!("parsing {entry_path}"))?;
                parsed.push((name.to_string(), v));
            }
            names.push(name.to_string());
        }
        parsed.sort_by(|a, b| a.0.cmp(&b.0));
        names.sort();
        Ok(Tgz {
            id: id.context("no package/package.json in the archive")?,
            names,
            parsed,
        })
    }
}
