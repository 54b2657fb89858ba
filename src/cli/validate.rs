//! `sektorbro validate`: validate files offline, with a summary and an exit code for scripts
//! (0 all valid, 1 some invalid, 2 usage errors such as a missing file or package).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use serde_json::{json, Value};

use fhir_core::fhir::outcome::{Issue, Severity};
use fhir_core::validation::{has_errors, FindingKind, Sources, Validator};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub struct Options {
    pub packages: Vec<PathBuf>,
    /// Refuse to run when anything in the given packages cannot be loaded or compiled.
    pub strict: bool,
    /// Where unknown extensions are accepted (`Sources::allowed_extension_domains`).
    pub allowed_extension_domains: Vec<String>,
    pub profiles: Vec<String>,
    pub format: Format,
    pub inputs: Vec<PathBuf>,
}

/// Every `.json` file named, or found (recursively, sorted) under a named folder.
fn collect(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut stack = vec![input.clone()];
            let mut found = Vec::new();
            while let Some(dir) = stack.pop() {
                let entries =
                    std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                for e in entries.flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        stack.push(p);
                    } else if p.extension().is_some_and(|x| x == "json") {
                        found.push(p);
                    }
                }
            }
            found.sort();
            files.extend(found);
        } else if input.is_file() {
            files.push(input.clone());
        } else {
            return Err(format!("{}: no such file or folder", input.display()));
        }
    }
    Ok(files)
}

pub fn run(opts: Options) -> ExitCode {
    let usage = |msg: String| {
        eprintln!("sektorbro validate: {msg}");
        ExitCode::from(2)
    };
    if opts.inputs.is_empty() {
        return usage("name at least one file or folder to validate".into());
    }
    let files = match collect(&opts.inputs) {
        Ok(f) => f,
        Err(e) => return usage(e),
    };
    let started = Instant::now();
    let validator = match Validator::load(&Sources {
        embedded_igs: true,
        packages: opts.packages.clone(),
        strict: opts.strict,
        allowed_extension_domains: opts.allowed_extension_domains.clone(),
    }) {
        Ok(v) => v,
        Err(e) => return usage(format!("{e:#}")),
    };
    report_findings(&validator);
    for p in &opts.profiles {
        if validator.defs.profile(p).is_none() {
            return usage(match validator.defs.failure(p) {
                Some(why) => format!("profile {p} could not be loaded: {why}"),
                None => format!("profile {p} is not in the loaded packages"),
            });
        }
    }
    let loaded = started.elapsed();
    let progress =
        opts.format == Format::Text && std::io::stderr().is_terminal() && files.len() > 20;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let (mut invalid, mut errors, mut warnings) = (0usize, 0usize, 0usize);
    for (n, file) in files.iter().enumerate() {
        let issues = match std::fs::read(file) {
            Err(e) => vec![Issue::error(
                "exception",
                format!("cannot read the file: {e}"),
            )],
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Err(e) => vec![Issue::error("structure", format!("not JSON: {e}"))],
                Ok(v) => validator.validate(&v, &opts.profiles),
            },
        };
        let e = issues
            .iter()
            .filter(|i| i.severity <= Severity::Error)
            .count();
        let w = issues
            .iter()
            .filter(|i| i.severity == Severity::Warning)
            .count();
        errors += e;
        warnings += w;
        let valid = !has_errors(&issues);
        if !valid {
            invalid += 1;
        }
        let _ = match opts.format {
            Format::Json => writeln!(out, "{}", json_line(file, valid, e, w, &issues)),
            Format::Text => text_block(&mut out, file, valid, &issues, progress),
        };
        if progress && (n % 16 == 0 || n + 1 == files.len()) {
            let done = (n + 1) * 30 / files.len();
            eprint!(
                "\r[{}{}] {}/{}",
                "#".repeat(done),
                " ".repeat(30 - done),
                n + 1,
                files.len()
            );
        }
    }
    if progress {
        eprintln!();
    }
    let total = started.elapsed();
    if opts.format == Format::Text {
        let _ = writeln!(
            out,
            "{} file(s): {} valid, {invalid} invalid; {errors} error(s), {warnings} warning(s); \
             definitions loaded in {:.0} ms, total {:.2} s",
            files.len(),
            files.len() - invalid,
            loaded.as_secs_f64() * 1e3,
            total.as_secs_f64()
        );
    }
    if invalid > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// What could not be loaded, one `warning:` line each on stderr, and the notes about the packages
/// given with `--package` (those about the embedded packages are known and documented).
fn report_findings(validator: &Validator) {
    let given: std::collections::HashSet<String> = validator
        .defs
        .packages()
        .iter()
        .filter(|p| !p.embedded)
        .map(|p| p.id())
        .collect();
    let mut err = std::io::stderr().lock();
    for f in &validator.load_report().findings {
        let _ = match f.kind {
            FindingKind::Problem => writeln!(err, "warning: {f}"),
            FindingKind::Note if given.contains(&f.package) => writeln!(err, "note: {f}"),
            FindingKind::Note => Ok(()),
        };
    }
}

fn json_line(file: &Path, valid: bool, errors: usize, warnings: usize, issues: &[Issue]) -> Value {
    json!({
        "file": file.display().to_string(),
        "valid": valid,
        "errors": errors,
        "warnings": warnings,
        "issues": issues.iter().map(|i| json!({
            "severity": i.severity.as_str(),
            "code": i.code,
            "location": i.expression,
            "message": i.diagnostics,
        })).collect::<Vec<_>>(),
    })
}

fn text_block(
    out: &mut impl Write,
    file: &Path,
    valid: bool,
    issues: &[Issue],
    quiet_valid: bool,
) -> std::io::Result<()> {
    if valid && issues.is_empty() {
        return if quiet_valid {
            Ok(())
        } else {
            writeln!(out, "{}: valid", file.display())
        };
    }
    writeln!(
        out,
        "{}: {}",
        file.display(),
        if valid {
            "valid, with notes"
        } else {
            "INVALID"
        }
    )?;
    for i in issues {
        writeln!(
            out,
            "  {:<11} {}: {}",
            i.severity.as_str(),
            i.expression.as_deref().unwrap_or("-"),
            i.diagnostics
        )?;
    }
    Ok(())
}
