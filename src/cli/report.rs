//! `sektorbro report kl-gateway [--kind 140|care] RECORD.json...`: KL Gateway delivery reports
//! for municipal care records given as files, offline. Each kind's report is one line of JSON on
//! standard output (§140 first); problems go to standard error. Exit code 0: reported; 1: a
//! record is not valid (nothing is printed); 2: usage error.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::municipal::record::CareRecord;
use crate::report::kl_gateway::{delivery, Kind};
use fhir_core::validation::Validator;

pub struct Options {
    /// Only this report; `None`: each kind the records have.
    pub kind: Option<Kind>,
    pub records: Vec<PathBuf>,
}

/// Read and check every record; all problems of all files are reported.
fn read(paths: &[PathBuf], validator: &Validator) -> Result<Vec<CareRecord>, ExitCode> {
    let mut records = Vec::new();
    let mut failed = None;
    for path in paths {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", path.display());
                failed = Some(ExitCode::from(2));
                continue;
            }
        };
        match crate::municipal::check_bytes(&bytes, &validator.terminology) {
            Ok((rec, _warnings)) => records.push(rec),
            Err(e) => {
                for i in e.issues {
                    eprintln!(
                        "{}: {}: {}{}",
                        path.display(),
                        i.severity.as_str(),
                        i.diagnostics,
                        i.expression.map(|x| format!(" [{x}]")).unwrap_or_default()
                    );
                }
                failed.get_or_insert(ExitCode::from(1));
            }
        }
    }
    match failed {
        Some(code) => Err(code),
        None => Ok(records),
    }
}

pub fn run(opts: Options) -> ExitCode {
    if opts.records.is_empty() {
        eprintln!("sektorbro report kl-gateway: name at least one record file");
        return ExitCode::from(2);
    }
    let validator = match Validator::shared_embedded() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: loading the definitions: {e:#}");
            return ExitCode::from(2);
        }
    };
    let records = match read(&opts.records, &validator) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let kinds: Vec<Kind> = match opts.kind {
        Some(k) => {
            let other = records.iter().filter(|r| Kind::of(r) != k).count();
            if other > 0 {
                eprintln!(
                    "note: {other} record(s) are not for the {} report and are left out",
                    k.as_str()
                );
            }
            vec![k]
        }
        None => [Kind::Rehab140, Kind::Care]
            .into_iter()
            .filter(|k| records.iter().any(|r| Kind::of(r) == *k))
            .collect(),
    };
    let timestamp = fhir_core::fhir::instant(chrono::Utc::now().timestamp_millis());
    for kind in kinds {
        let id = fhir_core::fhir::new_id();
        println!(
            "{}",
            delivery(kind, &records, &validator.terminology, &id, &timestamp)
        );
    }
    ExitCode::SUCCESS
}
