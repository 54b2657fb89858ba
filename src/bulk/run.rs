//! Running one export job: the caller's rights restored, each type read page by page (keyset
//! paging through the store's search, under the caller's visibility, without the caches), each
//! resource written as one NDJSON line as its page arrives. Memory is one page and a file buffer.
//!
//! The job's row is renewed with every page: the progress clients see, and the lease. When the
//! row is gone (cancelled) or the lease was taken over, the run stops and leaves the files to
//! whoever holds the job now (a cancel deletes them).

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fhir_core::fhir::outcome::{operation_outcome, Issue};
use fhir_core::fhir::search::Cursor;
use fhir_core::fhir::search_params::IndexValue;
use serde_json::Value;

use super::{compartment_params, Exporter, Level, OutputFile, Spec};
use crate::audit::{AuditRecord, Interaction, Who};
use crate::auth::Scopes;
use crate::engine::Access;
use crate::error::FhirError;
use crate::store::{BulkJob, BulkStatus, BulkWrite, Visibility};
use fhir_core::fhir::ResourceType;

/// Why a run ended without a result of its own.
enum Stopped {
    /// Cancelled, taken over by another instance, or this instance stopping: nothing to record.
    Abandoned,
    Failed(FhirError),
}

impl From<FhirError> for Stopped {
    fn from(e: FhirError) -> Self {
        Stopped::Failed(e)
    }
}

/// The NDJSON files of one type, a new file every `max` resources.
struct TypeFiles<'a> {
    dir: &'a Path,
    rtype: &'a str,
    max: u64,
    current: Option<(BufWriter<File>, OutputFile)>,
    done: Vec<OutputFile>,
}

impl<'a> TypeFiles<'a> {
    fn write(&mut self, line: &str) -> Result<(), FhirError> {
        if self
            .current
            .as_ref()
            .is_some_and(|(_, f)| f.count >= self.max)
        {
            self.finish_file()?;
        }
        if self.current.is_none() {
            let name = format!("{}-{}.ndjson", self.rtype, self.done.len() + 1);
            let file = File::create(self.dir.join(&name)).map_err(io_error)?;
            self.current = Some((
                BufWriter::with_capacity(1 << 20, file),
                OutputFile {
                    rtype: self.rtype.to_string(),
                    file: name,
                    count: 0,
                },
            ));
        }
        if let Some((w, f)) = &mut self.current {
            w.write_all(line.as_bytes()).map_err(io_error)?;
            w.write_all(b"\n").map_err(io_error)?;
            f.count += 1;
        }
        Ok(())
    }

    fn finish_file(&mut self) -> Result<(), FhirError> {
        if let Some((w, f)) = self.current.take() {
            let file = w.into_inner().map_err(|e| io_error(e.into_error()))?;
            file.sync_all().map_err(io_error)?;
            self.done.push(f);
        }
        Ok(())
    }

    fn count(&self) -> u64 {
        self.done.iter().map(|f| f.count).sum::<u64>()
            + self.current.as_ref().map_or(0, |(_, f)| f.count)
    }
}

fn io_error(e: std::io::Error) -> FhirError {
    FhirError::internal(format!("writing the export files failed: {e}"))
}

/// Which resources of a type belong to the export (Patient and Group exports): the Patient
/// references of the type's compartment parameters.
enum Membership<'a> {
    All,
    /// A Patient compartment: of any Patient (`None`) or of these.
    Compartment {
        params: &'static [&'static str],
        patients: Option<&'a HashSet<String>>,
    },
    /// Patients themselves: every one (`None`) or these.
    Patients(Option<&'a HashSet<String>>),
}

impl Membership<'_> {
    fn admits(&self, engine: &crate::engine::Engine, id: &str, content: &str) -> bool {
        match self {
            Membership::All => true,
            Membership::Patients(None) => true,
            Membership::Patients(Some(set)) => set.contains(id),
            Membership::Compartment { params, patients } => {
                let Ok(v) = serde_json::from_str::<Value>(content) else {
                    return false;
                };
                engine.registry().extract(&v).into_iter().any(|e| {
                    params.contains(&e.param.as_str())
                        && matches!(&e.value, IndexValue::Reference { rtype, id }
                            if rtype == "Patient" && patients.is_none_or(|s| s.contains(id)))
                })
            }
        }
    }
}

impl Exporter {
    /// Run a claimed job to its end (or until it is cancelled or taken over).
    pub(super) async fn run(&self, job: BulkJob) {
        let stop = Arc::new(AtomicBool::new(false));
        if let Ok(mut r) = self.running.lock() {
            r.insert(job.id.clone(), stop.clone());
        }
        tracing::info!(job = %job.id, client = %job.client_id, attempt = job.attempts, "export started");
        let started = std::time::Instant::now();
        let result = self.export(&job, &stop).await;
        if let Ok(mut r) = self.running.lock() {
            r.remove(&job.id);
        }
        let now = chrono::Utc::now().timestamp_millis();
        let expires = now.saturating_add(self.retention_ms());
        let (status, output, error, total) = match result {
            Ok(files) => {
                let total: u64 = files.iter().map(|f| f.count).sum();
                let output = serde_json::to_string(&files).unwrap_or_else(|_| "[]".into());
                (BulkStatus::Completed, Some(output), None, total)
            }
            Err(Stopped::Abandoned) => {
                tracing::info!(job = %job.id, "export stopped (cancelled, taken over or shutting down)");
                return;
            }
            Err(Stopped::Failed(e)) => {
                tracing::error!(job = %job.id, error = ?e.issues.first().map(|i| &i.diagnostics), "export failed");
                (
                    BulkStatus::Failed,
                    None,
                    Some(operation_outcome(&e.issues).to_string()),
                    0,
                )
            }
        };
        let finish = BulkWrite::Finish {
            id: &job.id,
            owner: &self.owner,
            status,
            finished_ms: now,
            expires_ms: expires,
            output: output.as_deref(),
            error: error.as_deref(),
        };
        let recorded = async {
            let mut tx = self.engine.store().begin().await?;
            let touched = tx.bulk_write(&finish).await?;
            tx.commit().await?;
            Ok::<bool, FhirError>(touched)
        }
        .await;
        match recorded {
            Ok(true) => {}
            Ok(false) => {
                // Cancelled while finishing: the cancel deleted the row; the files go too.
                self.remove_files(&job.id).await;
                return;
            }
            Err(e) => {
                tracing::error!(job = %job.id, error = ?e.issues.first().map(|i| &i.diagnostics), "recording the export's end failed");
                return;
            }
        }
        tracing::info!(
            job = %job.id,
            resources = total,
            seconds = started.elapsed().as_secs_f64(),
            status = status.as_str(),
            "export finished"
        );
        self.audit(&job, status, total, error.as_deref()).await;
    }

    async fn audit(&self, job: &BulkJob, status: BulkStatus, total: u64, error: Option<&str>) {
        let Some(auditor) = &self.auditor else { return };
        let http = if status == BulkStatus::Completed {
            200
        } else {
            500
        };
        let mut rec = AuditRecord::new(Interaction::Operation("export".into()), http);
        rec.who = Some(Who {
            client_id: job.client_id.clone(),
            name: None,
            kind: Some(job.client_kind.clone()),
            auth_method: None,
            organizations: serde_json::from_str(&job.organizations).unwrap_or_default(),
            reference: None,
        });
        if let Some(group) =
            serde_json::from_str::<Spec>(&job.spec)
                .ok()
                .and_then(|s| match s.level {
                    Level::Group { id } => Some(id),
                    _ => None,
                })
        {
            rec.resource = Some(format!("Group/{group}"));
        }
        // The kick-off's parameters, as the request's own audit event has them.
        rec.set_query(job.request.split_once('?').map_or("", |(_, q)| q), 2048);
        tracing::info!(job = %job.id, client = %job.client_id, resources = total, "export audited");
        if let Some(e) = error {
            rec.failure = Some(e.chars().take(200).collect());
        }
        auditor.record(rec).await;
    }

    /// The caller's rights now: the client as configured today (gone: the export fails), with
    /// the scopes granted at kick-off cut to its ceiling today.
    fn restore_access(&self, job: &BulkJob) -> Result<Access, FhirError> {
        let client = self.auth.client(&job.client_id).ok_or_else(|| {
            FhirError::new(
                403,
                vec![Issue::error(
                    "forbidden",
                    format!("client {} is no longer configured", job.client_id),
                )],
            )
        })?;
        let (granted, _) = Scopes::parse(&job.scopes);
        Ok(Access::for_client(
            &client,
            &granted.intersect(&client.scopes),
        ))
    }

    async fn export(&self, job: &BulkJob, stop: &AtomicBool) -> Result<Vec<OutputFile>, Stopped> {
        let spec: Spec = serde_json::from_str(&job.spec)
            .map_err(|e| FhirError::internal(format!("export job unreadable: {e}")))?;
        let access = self.restore_access(job)?;
        let vis = access.readable();
        let dir = self.job_dir(&job.id);
        let d = dir.clone();
        tokio::task::spawn_blocking(move || {
            match std::fs::remove_dir_all(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            std::fs::create_dir_all(&d)
        })
        .await
        .map_err(|e| FhirError::internal(e.to_string()))?
        .map_err(io_error)?;
        let members: Option<HashSet<String>> = match &spec.level {
            Level::Group { id } => Some(self.members(&access, id).await?),
            _ => None,
        };
        let mut out = Vec::new();
        for (n, &rtype) in spec.types.iter().enumerate() {
            let progress = format!("{rtype} ({} of {} types)", n + 1, spec.types.len());
            // The audit trail as of now, journal included.
            self.engine.settle(&rtype).await;
            let files = self
                .export_type(
                    job,
                    &spec,
                    rtype,
                    members.as_ref(),
                    &vis,
                    &dir,
                    stop,
                    &progress,
                )
                .await?;
            out.extend(files);
        }
        Ok(out)
    }

    /// The Patient ids among a Group's members (read as the caller reads it).
    async fn members(&self, access: &Access, id: &str) -> Result<HashSet<String>, FhirError> {
        let group = self.engine.read(access, ResourceType::GROUP, id).await?;
        let v: Value = serde_json::from_str(group.content.as_deref().unwrap_or("{}"))
            .map_err(|e| FhirError::internal(format!("stored Group unreadable: {e}")))?;
        Ok(v["member"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["inactive"] != Value::Bool(true))
            .filter_map(|m| m["entity"]["reference"].as_str())
            .filter_map(|r| r.strip_prefix("Patient/"))
            .filter(|id| fhir_core::fhir::is_valid_id(id))
            .map(str::to_string)
            .collect())
    }

    #[allow(clippy::too_many_arguments)]
    async fn export_type(
        &self,
        job: &BulkJob,
        spec: &Spec,
        rtype: ResourceType,
        members: Option<&HashSet<String>>,
        vis: &Visibility,
        dir: &Path,
        stop: &AtomicBool,
        progress: &str,
    ) -> Result<Vec<OutputFile>, Stopped> {
        let mut pairs: Vec<(String, String)> = spec
            .type_filters
            .iter()
            .find(|(t, _)| *t == rtype)
            .map(|(_, p)| p.clone())
            .unwrap_or_default();
        if let Some(since) = spec.since_ms {
            pairs.push((
                "_lastUpdated".into(),
                format!("gt{}", fhir_core::fhir::instant(since)),
            ));
        }
        let params = compartment_params(&rtype);
        let membership = match (&spec.level, params) {
            (Level::System, _) => Membership::All,
            (_, Some([])) | (_, None) if rtype == "Patient" => Membership::Patients(members),
            (_, Some(params)) => Membership::Compartment {
                params,
                patients: members,
            },
            (_, None) => return Ok(Vec::new()),
        };
        // A small Group's members narrow the search in SQL; the check in `admits` stays exact.
        if let Some(m) = members.filter(|m| !m.is_empty() && m.len() <= 100) {
            let mut ids: Vec<&String> = m.iter().collect();
            ids.sort();
            match &membership {
                Membership::Patients(_) => pairs.push((
                    "_id".into(),
                    ids.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","),
                )),
                Membership::Compartment { params: [one], .. } => pairs.push((
                    one.to_string(),
                    ids.iter()
                        .map(|s| format!("Patient/{s}"))
                        .collect::<Vec<_>>()
                        .join(","),
                )),
                _ => {}
            }
        }
        if members.is_some_and(HashSet::is_empty) {
            return Ok(Vec::new());
        }
        let mut q = self.engine.parse_pairs(rtype, &pairs, false)?;
        q.sort.clear();
        let page = self.config.page_size;
        let mut files = TypeFiles {
            dir,
            rtype: &rtype,
            max: self.config.max_resources_per_file,
            current: None,
            done: Vec::new(),
        };
        let mut renewed = std::time::Instant::now();
        if !self.renew(job, progress).await? {
            return Err(Stopped::Abandoned);
        }
        loop {
            if stop.load(Ordering::SeqCst) || self.stop.load(Ordering::SeqCst) {
                return Err(Stopped::Abandoned);
            }
            let hits = self
                .engine
                .store()
                .scan(&q, page, vis)
                .await
                .map_err(FhirError::from)?;
            let more = hits.len() >= page;
            if let Some(last) = hits.last() {
                q.after = Some(Cursor {
                    values: last.sort_values.clone(),
                    seq: last.seq,
                });
            }
            for h in &hits {
                let r = &h.resource;
                let Some(content) = r.content.as_deref() else {
                    continue;
                };
                if !membership.admits(&self.engine, &r.id, content) {
                    continue;
                }
                if content.contains(['\n', '\r']) {
                    // NDJSON: one resource per line, whatever the stored text's layout.
                    let v: Value = serde_json::from_str(content).map_err(|e| {
                        FhirError::internal(format!("stored {}/{} unreadable: {e}", r.rtype, r.id))
                    })?;
                    files.write(&v.to_string())?;
                } else {
                    files.write(content)?;
                }
            }
            // A sign of life at most every second (a commit each): progress and lease.
            if renewed.elapsed() >= std::time::Duration::from_secs(1) {
                renewed = std::time::Instant::now();
                let text = format!("{progress}: {} resources of {rtype} so far", files.count());
                if !self.renew(job, &text).await? {
                    return Err(Stopped::Abandoned);
                }
            }
            if !more {
                break;
            }
        }
        files.finish_file()?;
        Ok(files.done)
    }

    /// Record progress and renew the lease; false when the job is no longer this run's.
    async fn renew(&self, job: &BulkJob, progress: &str) -> Result<bool, FhirError> {
        let now = chrono::Utc::now().timestamp_millis();
        let mut tx = self.engine.store().begin().await?;
        let ours = tx
            .bulk_write(&BulkWrite::Progress {
                id: &job.id,
                owner: &self.owner,
                progress,
                lease_until_ms: now + self.lease_ms(),
            })
            .await?;
        tx.commit().await?;
        Ok(ours)
    }
}
