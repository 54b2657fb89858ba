//! The loaded definitions: the embedded R4 base plus any packages from config or the command line,
//! compiled once. Canonical URLs resolve with or without `|version`; a later package overrides an
//! earlier one for the same unversioned URL.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::Value;

use super::model::{compile, Kind, Profile};
use super::package::Package;
use super::snapshot;

static EMBEDDED_SDS: &[u8] =
    include_bytes!("../../../../profiles/r4/structure-definitions.json.gz");

/// What loading found: for each package, how many definitions and which could not be used.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub packages: Vec<(String, usize)>,
    /// `url: reason` for definitions that were skipped (no snapshot and no base, bad shape…).
    pub skipped: Vec<String>,
}

pub struct Definitions {
    /// By canonical URL, and by `url|version`.
    profiles: HashMap<String, Arc<Profile>>,
    /// The defining StructureDefinition of each type (`Patient`, `CodeableConcept`, `string`).
    types: HashMap<String, Arc<Profile>>,
    resource_types: BTreeSet<String>,
    /// Constraint keys of the base specification: evaluated by the base pass everywhere they
    /// apply, so profile passes skip them.
    base_keys: HashSet<String>,
    /// Raw StructureDefinitions by URL (kept to generate snapshots of later differential-only
    /// profiles that derive from them).
    raw: HashMap<String, Arc<Value>>,
    pub report: LoadReport,
}

impl Definitions {
    /// The R4 base definitions embedded in the binary.
    pub fn r4() -> Result<Definitions> {
        let text = gunzip(EMBEDDED_SDS)?;
        let sds: Vec<Value> = serde_json::from_str(&text).context("embedded definitions")?;
        let mut defs = Definitions {
            profiles: HashMap::new(),
            types: HashMap::new(),
            resource_types: BTreeSet::new(),
            base_keys: HashSet::new(),
            raw: HashMap::new(),
            report: LoadReport::default(),
        };
        let n = sds.len();
        defs.add_all(sds);
        defs.base_keys = defs
            .profiles
            .values()
            .flat_map(|p| p.elements.iter())
            .flat_map(|e| e.constraints.iter().map(|c| c.key.clone()))
            .collect();
        defs.report
            .packages
            .push(("hl7.fhir.r4.core#4.0.1 (embedded)".into(), n));
        Ok(defs)
    }

    /// Add the StructureDefinitions of an already read package.
    pub fn add_package_resources(&mut self, pkg: Package) {
        let sds: Vec<Value> = pkg
            .resources
            .into_iter()
            .filter(|r| {
                r.get("resourceType").and_then(Value::as_str) == Some("StructureDefinition")
            })
            .collect();
        self.report.packages.push((pkg.id, sds.len()));
        self.add_all(sds);
    }

    /// Add StructureDefinitions, generating snapshots for differential-only ones once their base
    /// is known (bases first, whatever the input order).
    fn add_all(&mut self, sds: Vec<Value>) {
        let mut pending: Vec<Value> = Vec::new();
        for sd in sds {
            if sd.get("kind").and_then(Value::as_str) == Some("logical") {
                continue;
            }
            if has_snapshot(&sd) {
                self.add_one(sd);
            } else {
                pending.push(sd);
            }
        }
        // Differential-only: repeat while progress is made (a profile on a profile waits for it).
        loop {
            let before = pending.len();
            let mut waiting = Vec::new();
            for sd in pending {
                let base = sd
                    .get("baseDefinition")
                    .and_then(Value::as_str)
                    .and_then(|b| self.raw.get(strip_version(b)).cloned());
                match base {
                    Some(base) => match snapshot::generate(&sd, &base, self) {
                        Ok(with_snapshot) => self.add_one(with_snapshot),
                        Err(e) => self.report.skipped.push(format!("{}: {e}", url_of(&sd))),
                    },
                    None => waiting.push(sd),
                }
            }
            pending = waiting;
            if pending.is_empty() || pending.len() == before {
                break;
            }
        }
        for sd in pending {
            let base = sd
                .get("baseDefinition")
                .and_then(Value::as_str)
                .unwrap_or("(none)");
            self.report.skipped.push(format!(
                "{}: its base definition {base} is not loaded",
                url_of(&sd)
            ));
        }
    }

    fn add_one(&mut self, sd: Value) {
        match compile(&sd) {
            Ok(p) => {
                let p = Arc::new(p);
                if !p.constraint {
                    if p.kind == Kind::Resource && !p.is_abstract {
                        self.resource_types.insert(p.type_name.clone());
                    }
                    self.types.insert(p.type_name.clone(), p.clone());
                }
                if let Some(v) = &p.version {
                    self.profiles.insert(format!("{}|{v}", p.url), p.clone());
                }
                self.profiles.insert(p.url.clone(), p.clone());
                self.raw.insert(p.url.clone(), Arc::new(sd));
            }
            Err(e) => self.report.skipped.push(e),
        }
    }

    /// A profile (or any definition) by canonical URL, with or without `|version`.
    pub fn profile(&self, canonical: &str) -> Option<&Arc<Profile>> {
        self.profiles
            .get(canonical)
            .or_else(|| self.profiles.get(strip_version(canonical)))
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

    /// The raw StructureDefinition behind a URL (with its generated snapshot, if any).
    pub fn raw(&self, url: &str) -> Option<&Arc<Value>> {
        self.raw.get(strip_version(url))
    }

    /// Every definition, each once.
    pub fn all_profiles(&self) -> impl Iterator<Item = &Arc<Profile>> {
        self.profiles
            .iter()
            .filter(|(k, p)| **k == p.url)
            .map(|(_, p)| p)
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

fn has_snapshot(sd: &Value) -> bool {
    sd.get("snapshot")
        .and_then(|s| s.get("element"))
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

fn url_of(sd: &Value) -> String {
    sd.get("url")
        .and_then(Value::as_str)
        .unwrap_or("(no url)")
        .to_string()
}

pub fn strip_version(canonical: &str) -> &str {
    canonical.split('|').next().unwrap_or(canonical)
}

/// The embedded files are gzip-compressed (2 MB in the repository instead of 15).
pub fn gunzip(bytes: &[u8]) -> Result<String> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(bytes), &mut text)
        .context("decompressing embedded definitions")?;
    Ok(text)
}
