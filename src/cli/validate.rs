//! `sektorbro validate`: validate files offline, with a summary and an exit code for scripts
//! (0 all valid, 1 some invalid, 2 usage errors such as a missing file or package).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use serde_json::Value;

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
    /// Files validated at once; `None`: one per core.
    pub jobs: Option<std::num::NonZeroUsize>,
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
    crate::alloc::keep_freed_memory();
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
    let mut line = Vec::new();
    let jobs = opts
        .jobs
        .or_else(|| std::thread::available_parallelism().ok())
        .map_or(1, std::num::NonZeroUsize::get);
    let check = |file: &PathBuf| check_file(&validator, file, &opts.profiles);
    for_each_in_order(&files, jobs, check, |n, file, issues| {
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
            Format::Json => write_json_line(&mut out, &mut line, file, (valid, e, w), &issues),
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
    });
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

/// Read, parse and validate one file: the issues found (a file that cannot be read or is not
/// JSON is one error).
fn check_file(validator: &Validator, file: &Path, profiles: &[String]) -> Vec<Issue> {
    match std::fs::read(file) {
        Err(e) => vec![Issue::error(
            "exception",
            format!("cannot read the file: {e}"),
        )],
        Ok(bytes) => match fhir_core::fhir::from_json_bytes::<Value>(&bytes) {
            Err(e) => vec![Issue::error("structure", format!("not JSON: {e}"))],
            Ok(v) => validator.validate(&v, profiles),
        },
    }
}

/// Run `work` on every item with up to `jobs` threads, and hand each result to `done` in the
/// items' order, as soon as it and every one before it are ready (so output streams, in order,
/// whatever the number of threads). One job runs on the calling thread alone.
fn for_each_in_order<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    work: impl Fn(&T) -> R + Sync,
    mut done: impl FnMut(usize, &T, R),
) {
    if jobs <= 1 || items.len() <= 1 {
        for (n, item) in items.iter().enumerate() {
            done(n, item, work(item));
        }
        return;
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (tx, rx) = std::sync::mpsc::channel::<(usize, R)>();
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(items.len()) {
            let tx = tx.clone();
            let (next, work) = (&next, &work);
            scope.spawn(move || loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(item) = items.get(n) else { break };
                if tx.send((n, work(item))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        // Results that arrived before their turn wait here, by position.
        let mut waiting: std::collections::BTreeMap<usize, R> = std::collections::BTreeMap::new();
        let mut turn = 0;
        for (n, result) in rx {
            waiting.insert(n, result);
            while let Some(result) = waiting.remove(&turn) {
                done(turn, &items[turn], result);
                turn += 1;
            }
        }
    });
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

/// One file's result as a JSON line, its members in this order.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    file: String,
    valid: bool,
    errors: usize,
    warnings: usize,
    issues: Vec<JsonIssue<'a>>,
}

#[derive(serde::Serialize)]
struct JsonIssue<'a> {
    severity: &'a str,
    code: &'a str,
    location: Option<&'a str>,
    message: &'a str,
}

/// Write one file's result as a line of JSON with a single write: the standard output looks
/// for line breaks in every write it is given, and writing a `Value` piece by piece made it do
/// so about 350 times per file.
fn write_json_line(
    out: &mut impl Write,
    buf: &mut Vec<u8>,
    file: &Path,
    (valid, errors, warnings): (bool, usize, usize),
    issues: &[Issue],
) -> std::io::Result<()> {
    let line = JsonLine {
        file: file.display().to_string(),
        valid,
        errors,
        warnings,
        issues: issues
            .iter()
            .map(|i| JsonIssue {
                severity: i.severity.as_str(),
                code: i.code,
                location: i.expression.as_deref(),
                message: &i.diagnostics,
            })
            .collect(),
    };
    buf.clear();
    serde_json::to_writer(&mut *buf, &line)?;
    buf.push(b'\n');
    out.write_all(buf)
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

#[cfg(test)]
mod tests {
    use super::for_each_in_order;

    #[test]
    fn results_come_in_the_items_order_whatever_the_threads() {
        let items: Vec<u64> = (0..200).collect();
        for jobs in [1, 2, 3, 8] {
            let mut seen = Vec::new();
            for_each_in_order(
                &items,
                jobs,
                |&i| {
                    // later items often finish first
                    std::thread::sleep(std::time::Duration::from_micros((200 - i) % 7 * 50));
                    i * 2
                },
                |n, &item, result| {
                    assert_eq!(result, item * 2);
                    seen.push(n);
                },
            );
            assert_eq!(seen, (0..200).collect::<Vec<usize>>(), "jobs {jobs}");
        }
    }
}
