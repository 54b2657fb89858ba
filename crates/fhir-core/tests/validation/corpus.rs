//! Whole corpora: every official R4 example, and the examples shipped with the Danish IGs,
//! validated against their own IG. The files that are expected to fail are listed, with the
//! reason, in `tests/data/`: the test fails when a listed file passes or an unlisted one fails,
//! so both regressions and silent fixes show up.

use std::collections::BTreeSet;
use std::io::Read as _;

use fhir_core::validation::package::{Package, Tgz};
use fhir_core::validation::{has_errors, Sources, Validator};
use serde_json::Value;

use crate::{shared, validator};

/// `name  # reason` lines; the names.
fn expected(list: &str) -> BTreeSet<String> {
    list.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

fn describe(v: &Validator, file: &str, r: &Value) -> String {
    let issues = v.validate(r, &[]);
    let first: Vec<String> = issues
        .iter()
        .filter(|i| i.severity <= fhir_core::fhir::outcome::Severity::Error)
        .take(3)
        .map(|i| {
            format!(
                "{}: {}",
                i.expression.as_deref().unwrap_or("-"),
                i.diagnostics
            )
        })
        .collect();
    format!("{file}: {}", first.join(" | "))
}

#[test]
fn official_r4_examples() {
    let Some(dir) = shared("official R4 example validation") else {
        return;
    };
    let path = dir.join("fhir-packages/hl7.fhir.r4.examples-4.0.1.tgz");
    let file = std::fs::File::open(&path).expect("package");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let v = validator();
    let mut failing = BTreeSet::new();
    let mut details = Vec::new();
    let mut count = 0;
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        let Some(file) = name.strip_prefix("package/") else {
            continue;
        };
        if !file.ends_with(".json") || file == "package.json" || file.contains('/') {
            continue;
        }
        let mut text = String::new();
        entry.read_to_string(&mut text).expect("read");
        let r: Value = serde_json::from_str(&text).expect("json");
        count += 1;
        if has_errors(&v.validate(&r, &[])) {
            failing.insert(file.to_string());
            details.push(describe(&v, file, &r));
        }
    }
    assert!(
        count > 5000,
        "expected the whole package, read {count} files"
    );
    let listed = expected(include_str!("../data/r4-examples-with-errors.txt"));
    let unexpected: Vec<&String> = failing.difference(&listed).collect();
    let fixed: Vec<&String> = listed.difference(&failing).collect();
    assert!(
        unexpected.is_empty() && fixed.is_empty(),
        "newly failing: {unexpected:#?}\nno longer failing (remove from the list): {fixed:#?}\n{}",
        details.join("\n")
    );
}

/// Every example of the Danish IGs (`../shared/fhir-ig/*/examples`) and of the versioned
/// packages (`../shared/fhir-packages/*.tgz`, their `package/example/` folder), each validated as
/// part of its own package (`Validator::validate_in`): against the embedded IG packages, with
/// the dependency versions that package declares. FUT is not embedded (the gateway does not
/// need it) and is loaded from its folder.
#[test]
fn ig_examples_with_their_declared_versions() {
    let Some(dir) = shared("IG example validation") else {
        return;
    };
    let v = Validator::load(&Sources {
        embedded_igs: true,
        packages: vec![dir.join("fhir-ig/fut")],
        ..Sources::default()
    })
    .expect("IG packages load");
    let mut failing = BTreeSet::new();
    let mut details = Vec::new();
    let mut count = 0;
    let mut check = |name: String, r: &Value, scope: usize| {
        count += 1;
        let issues = v.validate_in(r, &[], scope);
        if has_errors(&issues) {
            details.push(describe_issues(&name, &issues));
            failing.insert(name);
        }
    };
    let ig_dir = dir.join("fhir-ig");
    let mut igs: Vec<_> = std::fs::read_dir(&ig_dir)
        .expect("fhir-ig")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    igs.sort();
    for ig in &igs {
        let id = Package::read(ig).expect("IG folder").id();
        let scope = v
            .defs
            .package_index(&id)
            .unwrap_or_else(|| panic!("{id} is neither embedded nor loaded"));
        let mut files: Vec<_> = std::fs::read_dir(ig.join("examples"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        for f in files
            .iter()
            .filter(|f| f.extension().is_some_and(|x| x == "json"))
        {
            let r: Value =
                serde_json::from_str(&std::fs::read_to_string(f).expect("read")).expect("json");
            let name = format!(
                "{}/{}",
                ig.file_name().unwrap_or_default().to_string_lossy(),
                f.file_name().unwrap_or_default().to_string_lossy()
            );
            check(name, &r, scope);
        }
    }
    let mut tgzs: Vec<_> = std::fs::read_dir(dir.join("fhir-packages"))
        .expect("fhir-packages")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tgz"))
        .collect();
    tgzs.sort();
    for path in &tgzs {
        let tgz = Tgz::read(path, |_| false).expect("package");
        let Some(scope) = v.defs.package_index(&tgz.id) else {
            continue; // R4 itself, HL7 terminology, the extensions pack: not loaded
        };
        let file = std::fs::File::open(path).expect("open");
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        let mut examples: Vec<(String, Value)> = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let name = entry.path().expect("path").to_string_lossy().into_owned();
            let Some(file) = name.strip_prefix("package/example/") else {
                continue;
            };
            if !file.ends_with(".json") || file.contains('/') || file.starts_with('.') {
                continue;
            }
            let mut text = String::new();
            entry.read_to_string(&mut text).expect("read");
            examples.push((
                format!("{}/example/{file}", tgz.id.replace('#', "@")),
                serde_json::from_str(&text).expect("json"),
            ));
        }
        examples.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, r) in examples {
            check(name, &r, scope);
        }
    }
    assert!(count > 700, "expected the IG examples, read {count}");
    let listed = expected(include_str!("../data/ig-examples-with-errors.txt"));
    let unexpected: Vec<&String> = failing.difference(&listed).collect();
    let fixed: Vec<&String> = listed.difference(&failing).collect();
    assert!(
        unexpected.is_empty() && fixed.is_empty(),
        "newly failing: {unexpected:#?}\nno longer failing (remove from the list): {fixed:#?}\n{}",
        details.join("\n")
    );
}

fn describe_issues(name: &str, issues: &[fhir_core::fhir::outcome::Issue]) -> String {
    let first: Vec<String> = issues
        .iter()
        .filter(|i| i.severity <= fhir_core::fhir::outcome::Severity::Error)
        .take(3)
        .map(|i| {
            format!(
                "{}: {}",
                i.expression.as_deref().unwrap_or("-"),
                i.diagnostics
            )
        })
        .collect();
    format!("{name}: {}", first.join(" | "))
}
