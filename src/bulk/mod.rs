//! Bulk Data export (FHIR Bulk Data Access IG 2.0; docs/bulk.md): the kick-off checked into a
//! durable job ([`request`]), a background runner that claims jobs and writes NDJSON files from
//! the store page by page ([`run`]), and the expiry of finished exports.
//!
//! A job keeps the rights of the client that started it (organizations and granted scopes), and
//! every page it reads goes through the store's search under that client's [`Visibility`], so an
//! export holds exactly what the client's own searches would return. A job is a row in
//! `bulk_jobs`, claimed with a lease: when its instance stops, the job is started again (by this
//! instance at its next start on SQLite, by any instance once the lease ran out on PostgreSQL).
//!
//! [`Visibility`]: crate::store::Visibility

pub mod request;
mod run;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::audit::Auditor;
use crate::auth::Authenticator;
use crate::config::BulkConfig;
use crate::engine::Engine;
use crate::error::FhirError;
use crate::store::{BulkJob, BulkStatus, BulkWrite};
use fhir_core::fhir::ResourceType;

pub use request::KickOff;

/// The operation definitions the CapabilityStatement names.
pub const EXPORT: &str = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export";
pub const PATIENT_EXPORT: &str =
    "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export";
pub const GROUP_EXPORT: &str = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export";
/// The IG's CapabilityStatement the server's instantiates.
pub const BULK_CAPABILITY: &str = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data";

/// Which resources an export covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "level", rename_all = "lowercase")]
pub enum Level {
    /// Every resource of the types (`GET /fhir/$export`).
    System,
    /// The Patient compartment of every Patient (`GET /fhir/Patient/$export`).
    Patient,
    /// The Patient compartments of a Group's members (`GET /fhir/Group/{id}/$export`).
    Group { id: String },
}

/// What a job exports, as kept in `bulk_jobs.spec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    #[serde(flatten)]
    pub level: Level,
    /// The types, in the order their files are written (checked again when a job is read back).
    pub types: Vec<ResourceType>,
    /// Only resources changed after this instant (`_since`), milliseconds since the epoch.
    pub since_ms: Option<i64>,
    /// Search parameters per type (`_typeFilter`), as query pairs.
    pub type_filters: Vec<(ResourceType, Vec<(String, String)>)>,
}

/// One NDJSON file of a finished export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    #[serde(rename = "type")]
    pub rtype: String,
    /// The file's name in the job's folder (`CarePlan-1.ndjson`).
    pub file: String,
    pub count: u64,
}

/// The Patient compartment of the types this server stores: the search parameters whose
/// Patient references put a resource in a Patient's compartment (R4 CompartmentDefinition
/// `patient`). Patient itself is in its own compartment by id.
pub const PATIENT_COMPARTMENT: &[(&str, &[&str])] = &[
    ("AuditEvent", &["patient"]),
    ("CarePlan", &["patient", "performer"]),
    ("CareTeam", &["patient", "participant"]),
    ("Communication", &["subject", "sender", "recipient"]),
    ("Composition", &["subject", "author", "attester"]),
    ("Condition", &["patient", "asserter"]),
    ("DocumentReference", &["subject", "author"]),
    ("Encounter", &["patient"]),
    ("EpisodeOfCare", &["patient"]),
    ("Goal", &["patient"]),
    ("Group", &["member"]),
    ("Observation", &["subject", "performer"]),
    ("Patient", &[]),
    ("Provenance", &["patient"]),
    ("QuestionnaireResponse", &["subject", "author"]),
    ("RelatedPerson", &["patient"]),
    ("ServiceRequest", &["subject", "performer"]),
];

/// The compartment parameters of `rtype`, `None` when the type is not in the compartment.
pub fn compartment_params(rtype: &str) -> Option<&'static [&'static str]> {
    PATIENT_COMPARTMENT
        .iter()
        .find(|(t, _)| *t == rtype)
        .map(|(_, p)| *p)
}

/// The exporter: accepts kick-offs, runs jobs in the background, answers status and downloads.
pub struct Exporter {
    engine: Arc<Engine>,
    auth: Arc<Authenticator>,
    auditor: Option<Auditor>,
    config: BulkConfig,
    /// This instance's name as a lease holder.
    owner: String,
    /// Wakes the runner at a kick-off.
    wake: tokio::sync::Notify,
    /// Jobs running here, with the flag that stops them (a cancel).
    running: Mutex<HashMap<String, Arc<AtomicBool>>>,
    stop: AtomicBool,
}

impl Exporter {
    /// The exporter; `auditor` records each finished export (who, what was asked, how many
    /// resources) besides the requests themselves.
    pub fn new(
        engine: Arc<Engine>,
        auth: Arc<Authenticator>,
        config: &BulkConfig,
        auditor: Option<Auditor>,
    ) -> Arc<Exporter> {
        Arc::new(Exporter {
            engine,
            auth,
            auditor,
            config: config.clone(),
            owner: format!("bulk-{}", uuid::Uuid::new_v4()),
            wake: tokio::sync::Notify::new(),
            running: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
        })
    }

    pub fn config(&self) -> &BulkConfig {
        &self.config
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The folder of a job's files.
    pub fn job_dir(&self, id: &str) -> PathBuf {
        Path::new(&self.config.export_dir).join(id)
    }

    /// A SQLite database has one process: jobs left running by a previous one are given back
    /// (and started again by the runner).
    pub async fn release_orphaned(&self) -> Result<(), FhirError> {
        let mut tx = self.engine.store().begin().await?;
        tx.bulk_write(&BulkWrite::ReleaseAll).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Start the runner (when `bulk.enabled`).
    pub fn start(self: &Arc<Self>) {
        if !self.config.enabled {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move { me.run_loop().await });
    }

    /// Stop claiming jobs; a running job stops at its next page and is started again later.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for flag in self.running_flags() {
            flag.store(true, Ordering::SeqCst);
        }
        self.wake.notify_one();
    }

    fn running_flags(&self) -> Vec<Arc<AtomicBool>> {
        match self.running.lock() {
            Ok(r) => r.values().cloned().collect(),
            Err(p) => p.into_inner().values().cloned().collect(),
        }
    }

    /// A job by id, if it exists, belongs to `client_id` and has not expired: otherwise the
    /// answer is 404, as for an unknown job (another client's job is not revealed).
    pub async fn job_of(&self, id: &str, client_id: &str) -> Result<BulkJob, FhirError> {
        let unknown = || FhirError::not_found(format!("no export job {id}"));
        let job = self
            .engine
            .store()
            .bulk_job(id)
            .await?
            .ok_or_else(unknown)?;
        if job.client_id != client_id {
            return Err(unknown());
        }
        if job
            .expires_ms
            .is_some_and(|t| t < chrono::Utc::now().timestamp_millis())
        {
            return Err(FhirError::not_found(format!(
                "export job {id} has expired and its files were deleted"
            )));
        }
        Ok(job)
    }

    /// Cancel a job (waiting, running or finished) and delete its files.
    pub async fn cancel(&self, job: &BulkJob) -> Result<(), FhirError> {
        let mut tx = self.engine.store().begin().await?;
        tx.bulk_write(&BulkWrite::Delete(&job.id)).await?;
        tx.commit().await?;
        if let Some(flag) = self.flag(&job.id) {
            flag.store(true, Ordering::SeqCst);
        }
        self.remove_files(&job.id).await;
        Ok(())
    }

    fn flag(&self, id: &str) -> Option<Arc<AtomicBool>> {
        match self.running.lock() {
            Ok(r) => r.get(id).cloned(),
            Err(p) => p.into_inner().get(id).cloned(),
        }
    }

    async fn remove_files(&self, id: &str) {
        let dir = self.job_dir(id);
        let _ = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot delete export files")
            }
        })
        .await;
    }

    /// Delete expired exports (rows and files).
    pub async fn sweep(&self) -> Result<usize, FhirError> {
        let now = chrono::Utc::now().timestamp_millis();
        let ids = self.engine.store().bulk_expired(now).await?;
        for id in &ids {
            let mut tx = self.engine.store().begin().await?;
            tx.bulk_write(&BulkWrite::Delete(id)).await?;
            tx.commit().await?;
            self.remove_files(id).await;
            tracing::info!(job = %id, "export expired; files deleted");
        }
        Ok(ids.len())
    }

    async fn run_loop(self: Arc<Self>) {
        // Expired exports are looked for every 10 s, or as often as they expire if sooner.
        let every = Duration::from_secs(self.config.retention_secs.clamp(1, 10));
        let mut last_sweep: Option<std::time::Instant> = None;
        while !self.stop.load(Ordering::SeqCst) {
            if last_sweep.is_none_or(|t| t.elapsed() >= every) {
                last_sweep = Some(std::time::Instant::now());
                if let Err(e) = self.sweep().await {
                    tracing::warn!(error = ?e.issues.first().map(|i| &i.diagnostics), "export expiry sweep failed");
                }
            }
            match self.claim().await {
                Ok(Some(job)) => {
                    self.run(job).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = ?e.issues.first().map(|i| &i.diagnostics), "claiming an export job failed")
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), self.wake.notified()).await;
        }
    }

    async fn claim(&self) -> Result<Option<BulkJob>, FhirError> {
        let now = chrono::Utc::now().timestamp_millis();
        let mut tx = self.engine.store().begin().await?;
        let job = tx
            .bulk_claim(&self.owner, now, now + self.lease_ms())
            .await?;
        tx.commit().await?;
        Ok(job)
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.config.lease_secs.saturating_mul(1000)).unwrap_or(i64::MAX / 2)
    }

    fn retention_ms(&self) -> i64 {
        i64::try_from(self.config.retention_secs.saturating_mul(1000)).unwrap_or(i64::MAX / 2)
    }

    /// Insert a checked kick-off as a new job and wake the runner; the job's id.
    pub async fn submit(&self, job: &BulkJob) -> Result<(), FhirError> {
        let mut tx = self.engine.store().begin().await?;
        tx.bulk_write(&BulkWrite::Insert(job)).await?;
        tx.commit().await?;
        self.wake.notify_one();
        Ok(())
    }

    /// The manifest of a completed job, its file URLs under `base`.
    pub fn manifest(&self, job: &BulkJob, base: &str) -> Result<serde_json::Value, FhirError> {
        let files: Vec<OutputFile> = match &job.output {
            Some(o) => serde_json::from_str(o)
                .map_err(|e| FhirError::internal(format!("export output unreadable: {e}")))?,
            None => Vec::new(),
        };
        let output: Vec<serde_json::Value> = files
            .iter()
            .map(|f| {
                serde_json::json!({
                    "type": f.rtype,
                    "url": format!("{base}/$export-file/{}/{}", job.id, f.file),
                    "count": f.count,
                })
            })
            .collect();
        Ok(serde_json::json!({
            "transactionTime": fhir_core::fhir::instant(job.transaction_ms.unwrap_or(job.created_ms)),
            "request": job.request,
            "requiresAccessToken": true,
            "output": output,
            "error": [],
        }))
    }

    /// The path of a file of a completed job, if the job lists it (so that nothing outside the
    /// job's folder can be named).
    pub fn file_path(&self, job: &BulkJob, file: &str) -> Result<PathBuf, FhirError> {
        let unknown = || FhirError::not_found(format!("export job {} has no file {file}", job.id));
        if job.status != BulkStatus::Completed {
            return Err(unknown());
        }
        let files: Vec<OutputFile> = serde_json::from_str(job.output.as_deref().unwrap_or("[]"))
            .map_err(|e| FhirError::internal(format!("export output unreadable: {e}")))?;
        files
            .iter()
            .find(|f| f.file == file)
            .map(|f| self.job_dir(&job.id).join(&f.file))
            .ok_or_else(unknown)
    }
}
