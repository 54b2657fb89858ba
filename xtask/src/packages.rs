//! `cargo xtask derive packages`: the IG packages the gateway needs at run time, each at every
//! version an IG among them declares, reduced to machine facts and written as
//! `profiles/ig/<name>-<version>.json.gz` (the validator embeds them).
//!
//! The roots are the IGs the gateway speaks ([`ROOTS`], unpacked beside the checkout in
//! `../shared/fhir-ig/`); every package their declared dependencies name, at the declared version,
//! is added when `../shared/fhir-packages/` has it (`<name>-<version>.tgz`), recursively. What is
//! declared but not available is printed: at run time the validator uses the nearest loaded
//! version instead and says so in its load report. Each file holds the package's name, version
//! and declared dependencies, and its StructureDefinitions, ValueSets and CodeSystems compacted
//! as the R4 ones are (`definitions.rs`): no definitions, descriptions, comments, constraint texts
//! or narratives.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{Map, Value};

use fhir_core::validation::package::{FindingKind, Package};

use crate::definitions::{compact_structure_definition, gzip};

/// The IGs the gateway needs at run time, as folders below `../shared/fhir-ig/`.
pub const ROOTS: &[&str] = &[
    "dk-core",
    "kl-term",
    "kl-core",
    "kl-gateway",
    "kl-gateway-rehab",
    "medcom-core",
    "medcom-messaging",
    "medcom-terminology",
    "medcom-hospitalnotification",
    "medcom-carecommunication",
    "medcom-acknowledgement",
    "medcom-messagedefinitions",
    "se-base",
];

/// Declared dependencies that are deliberately not embedded, and why (printed, not derived).
pub const NOT_EMBEDDED: &[(&str, &str)] = &[
    (
        "hl7.terminology.r4",
        "HL7 Terminology, 4.6 MB packed: R4's own code systems are embedded with R4, and the \
         IGs' examples validate without the rest (bindings to it are warnings)",
    ),
    (
        "hl7.fhir.uv.extensions.r4",
        "HL7 extensions pack: the IGs' examples validate without it (unknown extensions are \
         warnings)",
    ),
];

/// One derived package file.
pub struct Derived {
    /// `<name>-<version>.json.gz`
    pub file: String,
    /// The uncompressed text.
    pub text: String,
}

/// What [`derive_packages`] made, and what it could not find.
pub struct Derivation {
    pub packages: Vec<Derived>,
    /// `name#version (declared by …)` of every dependency neither derived nor on the
    /// [`NOT_EMBEDDED`] list.
    pub missing: Vec<String>,
}

/// Read every root and the versioned packages their dependencies name, from `shared`
/// (`../shared`).
pub fn derive_packages(shared: &Path) -> Result<Derivation> {
    // Every package available: the unpacked IGs, and each versioned .tgz.
    let mut available: BTreeMap<(String, String), PathBuf> = BTreeMap::new();
    for root in ROOTS {
        let path = shared.join("fhir-ig").join(root);
        let pkg = Package::read(&path).with_context(|| format!("reading {}", path.display()))?;
        available.insert((pkg.name.clone(), pkg.version.clone()), path);
    }
    let dir = shared.join("fhir-packages");
    for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = e?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let Some(stem) = name.strip_suffix(".tgz") else {
            continue;
        };
        // `<name>-<version>`: the version starts after the last '-' followed by a digit
        let Some(at) = stem
            .char_indices()
            .filter(|&(i, c)| c == '-' && stem[i + 1..].starts_with(|d: char| d.is_ascii_digit()))
            .map(|(i, _)| i)
            .next()
        else {
            continue;
        };
        available
            .entry((stem[..at].to_string(), stem[at + 1..].to_string()))
            .or_insert(path);
    }

    let mut wanted: Vec<(String, String)> = Vec::new();
    let mut missing = Vec::new();
    let mut read: BTreeMap<(String, String), Package> = BTreeMap::new();
    let mut queue: Vec<(String, String)> = Vec::new();
    for root in ROOTS {
        let pkg = Package::read(&shared.join("fhir-ig").join(root))?;
        queue.push((pkg.name.clone(), pkg.version.clone()));
    }
    while let Some(id) = queue.pop() {
        if wanted.contains(&id) {
            continue;
        }
        let Some(path) = available.get(&id) else {
            continue;
        };
        let pkg = Package::read(path).with_context(|| format!("reading {}", path.display()))?;
        for f in &pkg.findings {
            if f.kind == FindingKind::Problem {
                anyhow::bail!("{}: {}: {}", path.display(), f.subject, f.message);
            }
        }
        for (name, version) in &pkg.dependencies {
            let dep = (name.clone(), version.clone());
            if NOT_EMBEDDED.iter().any(|(n, _)| n == name) {
                continue;
            }
            if available.contains_key(&dep) {
                queue.push(dep);
            } else {
                let line = format!("{name}#{version} (declared by {}#{})", id.0, id.1);
                if !missing.contains(&line) {
                    missing.push(line);
                }
            }
        }
        wanted.push(id.clone());
        read.insert(id, pkg);
    }
    missing.sort();
    let packages = read
        .into_values()
        .map(|pkg| compact_package(&pkg))
        .collect::<Result<Vec<_>>>()?;
    Ok(Derivation { packages, missing })
}

/// One package as its compact file: identity, dependencies, then one resource per line sorted by
/// URL and version.
fn compact_package(pkg: &Package) -> Result<Derived> {
    let mut resources: Vec<(String, Value)> = Vec::new();
    for r in &pkg.resources {
        let url = r.get("url").and_then(Value::as_str).unwrap_or_default();
        let version = r.get("version").and_then(Value::as_str).unwrap_or_default();
        let sort = format!("{url}|{version}");
        match r.get("resourceType").and_then(Value::as_str) {
            Some("StructureDefinition")
                if r.get("kind").and_then(Value::as_str) != Some("logical") =>
            {
                resources.push((sort, compact_structure_definition(r)));
            }
            Some("CodeSystem") | Some("ValueSet") => {
                resources.push((sort, fhir_core::validation::terminology::compact(r)))
            }
            _ => {}
        }
    }
    resources.sort_by(|a, b| a.0.cmp(&b.0));
    let mut manifest = Map::new();
    manifest.insert("name".into(), Value::String(pkg.name.clone()));
    manifest.insert("version".into(), Value::String(pkg.version.clone()));
    manifest.insert(
        "dependencies".into(),
        Value::Object(
            pkg.dependencies
                .iter()
                .map(|(n, v)| (n.clone(), Value::String(v.clone())))
                .collect(),
        ),
    );
    let mut text = format!(
        "{{\"package\":{},\n\"resources\":[\n",
        serde_json::to_string(&Value::Object(manifest))?
    );
    for (i, (_, r)) in resources.iter().enumerate() {
        if i > 0 {
            text.push_str(",\n");
        }
        text.push_str(&serde_json::to_string(r)?);
    }
    text.push_str("\n]}\n");
    Ok(Derived {
        file: format!("{}-{}.json.gz", pkg.name, pkg.version),
        text,
    })
}

/// Write every derived package into `out` (replacing what was there) and say what is missing.
pub fn write_packages(shared: &Path, out: &Path) -> Result<Derivation> {
    let d = derive_packages(shared)?;
    std::fs::create_dir_all(out)?;
    for e in std::fs::read_dir(out)? {
        let path = e?.path();
        if path.to_string_lossy().ends_with(".json.gz") {
            std::fs::remove_file(&path)?;
        }
    }
    for p in &d.packages {
        std::fs::write(out.join(&p.file), gzip(&p.text)?)?;
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fhir_core::validation::definitions::gunzip;

    /// The committed files are what the deriver makes of the packages beside the checkout:
    /// regenerate with `cargo xtask derive packages`.
    #[test]
    fn embedded_packages_are_up_to_date() {
        let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
        if !shared.join("fhir-ig").is_dir() || !shared.join("fhir-packages").is_dir() {
            eprintln!(
                "NOTE: IG package staleness check SKIPPED: {} not found",
                shared.display()
            );
            return;
        }
        let d = derive_packages(&shared).expect("derive");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/ig");
        let mut committed: Vec<String> = std::fs::read_dir(&dir)
            .expect("profiles/ig")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json.gz"))
            .collect();
        committed.sort();
        let mut fresh: Vec<String> = d.packages.iter().map(|p| p.file.clone()).collect();
        fresh.sort();
        assert_eq!(
            committed, fresh,
            "profiles/ig/ lists other packages than the deriver makes: cargo xtask derive packages"
        );
        for p in &d.packages {
            let text = gunzip(&std::fs::read(dir.join(&p.file)).expect("read")).expect("gunzip");
            assert!(
                text == p.text,
                "profiles/ig/{} is stale: cargo xtask derive packages",
                p.file
            );
        }
    }

    #[test]
    fn compact_packages_carry_identity_and_no_prose() {
        let pkg = Package {
            name: "example.ig".into(),
            version: "1.0.0".into(),
            dependencies: vec![("hl7.fhir.dk.core".into(), "3.2.0".into())],
            resources: vec![
                serde_json::json!({"resourceType": "ValueSet", "url": "http://x/vs",
                "description": "prose", "compose": {"include": [{"system": "http://x/cs"}]}}),
            ],
            findings: Vec::new(),
        };
        let d = compact_package(&pkg).expect("compact");
        assert_eq!(d.file, "example.ig-1.0.0.json.gz");
        assert!(!d.text.contains("prose"), "{}", d.text);
        let back = Package::from_compact(&gzip(&d.text).expect("gzip")).expect("read back");
        assert_eq!(
            (back.name.as_str(), back.version.as_str()),
            ("example.ig", "1.0.0")
        );
        assert_eq!(back.dependencies, pkg.dependencies);
        assert_eq!(back.resources.len(), 1);
    }
}
