//! The crate's error currency at the FHIR boundary: an HTTP status plus the issues to report.
//!
//! Rooms keep their own error enums (`StoreError`, `ConfigError`, …); each converts into
//! [`FhirError`] here, in one place, so the status a client sees for a failure is decided once.

use crate::lookup::LookupError;
use crate::store::StoreError;
use fhir_core::fhir::outcome::{operation_outcome, Issue};

/// A failed FHIR interaction: the HTTP status and the OperationOutcome issues explaining it.
#[derive(Debug, Clone)]
pub struct FhirError {
    pub status: u16,
    pub issues: Vec<Issue>,
}

impl FhirError {
    pub fn new(status: u16, issues: Vec<Issue>) -> FhirError {
        FhirError { status, issues }
    }

    fn one(status: u16, code: &'static str, msg: impl Into<String>) -> FhirError {
        FhirError::new(status, vec![Issue::error(code, msg)])
    }

    pub fn bad_request(msg: impl Into<String>) -> FhirError {
        FhirError::one(400, "invalid", msg)
    }
    pub fn not_found(msg: impl Into<String>) -> FhirError {
        FhirError::one(404, "not-found", msg)
    }
    pub fn not_supported(status: u16, msg: impl Into<String>) -> FhirError {
        FhirError::one(status, "not-supported", msg)
    }
    pub fn gone(msg: impl Into<String>) -> FhirError {
        FhirError::one(410, "deleted", msg)
    }
    pub fn conflict(msg: impl Into<String>) -> FhirError {
        FhirError::one(409, "conflict", msg)
    }
    pub fn precondition_failed(msg: impl Into<String>) -> FhirError {
        FhirError::one(412, "conflict", msg)
    }
    pub fn unprocessable(msg: impl Into<String>) -> FhirError {
        FhirError::one(422, "processing", msg)
    }
    pub fn internal(msg: impl Into<String>) -> FhirError {
        FhirError::one(500, "exception", msg)
    }

    /// Locate every issue (that has no location yet) at `expression`.
    pub fn at(mut self, expression: &str) -> FhirError {
        for issue in &mut self.issues {
            if issue.expression.is_none() {
                issue.expression = Some(expression.to_string());
            }
        }
        self
    }

    /// The OperationOutcome resource for this error.
    pub fn outcome(&self) -> serde_json::Value {
        operation_outcome(&self.issues)
    }
}

impl std::fmt::Display for FhirError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text: Vec<&str> = self.issues.iter().map(|i| i.diagnostics.as_str()).collect();
        write!(f, "{} {}", self.status, text.join("; "))
    }
}

impl std::error::Error for FhirError {}

impl From<StoreError> for FhirError {
    fn from(e: StoreError) -> FhirError {
        match e {
            StoreError::VersionConflict { .. } => FhirError::conflict(e.to_string()),
            StoreError::Busy => FhirError::new(
                503,
                vec![Issue::error(
                    "transient",
                    "The database is busy; retry the request",
                )],
            ),
            StoreError::DiskFull => FhirError::new(
                507,
                vec![Issue::error(
                    "no-store",
                    "The database's disk is full: nothing was written. Retry once an operator \
                     has freed space (GET /readyz tells when writes succeed again)",
                )],
            ),
            StoreError::Timeout => FhirError::new(
                503,
                vec![Issue::error(
                    "timeout",
                    "The database did not answer within database.statement_timeout_ms; the \
                     request was not applied. Retry later, or narrow a search",
                )],
            ),
            StoreError::Unsupported(what) => FhirError::bad_request(what),
            StoreError::Database(_) | StoreError::Corrupt(_) => {
                // The detail goes to the log, not to the client.
                tracing::error!(error = %e, "storage failure");
                FhirError::internal("Internal storage error; the request was not applied")
            }
        }
    }
}

impl From<LookupError> for FhirError {
    fn from(e: LookupError) -> FhirError {
        let msg = e.to_string();
        match e {
            LookupError::NotConfigured(_) => FhirError::not_supported(501, msg),
            LookupError::InvalidKey(_) => FhirError::bad_request(msg),
            LookupError::Unavailable { .. } => FhirError::new(
                503,
                vec![Issue::error(
                    "transient",
                    format!("{msg}, and no cached answer is recent enough to use; retry later"),
                )],
            ),
            LookupError::BadGateway { .. } => FhirError::new(
                502,
                vec![Issue::error(
                    "exception",
                    format!("{msg}, and no cached answer is recent enough to use"),
                )],
            ),
            LookupError::Internal(_) => FhirError::internal(msg),
        }
    }
}
