//! Whole corpora: every official R4 example, and the examples shipped with the Danish IGs,
//! validated against their own IG. The files that are expected to fail are listed, with the
//! reason, in `tests/data/`: the test fails when a listed file passes or an unlisted one fails,
//! so both regressions and silent fixes show up.

use std::collections::BTreeSet;
use std::io::Read as _;

use fhir_core::validation::{has_errors, Validator};
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

/// Each IG with the packages it is validated against (its dependencies as shipped beside the
/// checkout, then itself).
const IGS: &[(&str, &[&str])] = &[
    ("dk-core", &["dk-core"]),
    ("kl-core", &["dk-core", "kl-term", "kl-core"]),
    (
        "kl-gateway",
        &["dk-core", "kl-term", "kl-core", "kl-gateway"],
    ),
    (
        "kl-gateway-rehab",
        &[
            "dk-core",
            "kl-term",
            "kl-core",
            "kl-gateway",
            "kl-gateway-rehab",
        ],
    ),
    (
        "medcom-core",
        &["dk-core", "medcom-terminology", "medcom-core"],
    ),
    (
        "medcom-messaging",
        &[
            "dk-core",
            "medcom-terminology",
            "medcom-core",
            "medcom-messaging",
        ],
    ),
    (
        "medcom-acknowledgement",
        &[
            "dk-core",
            "medcom-terminology",
            "medcom-core",
            "medcom-messaging",
            "medcom-acknowledgement",
        ],
    ),
    (
        "medcom-hospitalnotification",
        &[
            "dk-core",
            "medcom-terminology",
            "medcom-core",
            "medcom-messaging",
            "medcom-hospitalnotification",
        ],
    ),
    (
        "medcom-carecommunication",
        &[
            "dk-core",
            "medcom-terminology",
            "medcom-core",
            "medcom-messaging",
            "medcom-carecommunication",
        ],
    ),
    ("se-base", &["se-base"]),
    ("fut", &["dk-core", "fut"]),
];

#[test]
fn danish_ig_examples_against_their_own_ig() {
    let Some(dir) = shared("IG example validation") else {
        return;
    };
    let ig_dir = dir.join("fhir-ig");
    let mut failing = BTreeSet::new();
    let mut details = Vec::new();
    let mut count = 0;
    for (ig, packages) in IGS {
        let paths: Vec<_> = packages.iter().map(|p| ig_dir.join(p)).collect();
        let v = Validator::with_packages(&paths).expect("IG packages load");
        let mut files: Vec<_> = std::fs::read_dir(ig_dir.join(ig).join("examples"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        for f in files
            .iter()
            .filter(|f| f.extension().is_some_and(|x| x == "json"))
        {
            let text = std::fs::read_to_string(f).expect("read");
            let r: Value = serde_json::from_str(&text).expect("json");
            count += 1;
            let name = format!(
                "{ig}/{}",
                f.file_name().unwrap_or_default().to_string_lossy()
            );
            if has_errors(&v.validate(&r, &[])) {
                details.push(describe(&v, &name, &r));
                failing.insert(name);
            }
        }
    }
    assert!(count > 400, "expected the IG examples, read {count}");
    let listed = expected(include_str!("../data/ig-examples-with-errors.txt"));
    let unexpected: Vec<&String> = failing.difference(&listed).collect();
    let fixed: Vec<&String> = listed.difference(&failing).collect();
    assert!(
        unexpected.is_empty() && fixed.is_empty(),
        "newly failing: {unexpected:#?}\nno longer failing (remove from the list): {fixed:#?}\n{}",
        details.join("\n")
    );
}
