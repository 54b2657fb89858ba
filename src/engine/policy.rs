//! Validation on writes: how the configured mode (`[validation] mode`) and the profiles required
//! per type (`[validation.required]`) turn the validator's issues into a verdict on a write.

use std::collections::BTreeMap;
use std::sync::Arc;

use fhir_core::fhir::outcome::{Issue, Severity};
use fhir_core::validation::{has_errors, Validator};
use serde_json::Value;

use crate::config::ValidationMode;
use crate::error::FhirError;

/// Validation on writes: the validator, the mode from config and the profiles required per type.
pub struct WritePolicy {
    pub validator: Arc<Validator>,
    pub mode: ValidationMode,
    pub required: BTreeMap<String, Vec<String>>,
}

impl WritePolicy {
    /// The profiles `[validation.required]` names for `rtype`.
    pub fn required_for(&self, rtype: &str) -> &[String] {
        self.required.get(rtype).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Check a resource about to be written. `Err` (422, every issue found) when the mode is
    /// `enforce` and there are errors; in `warn` mode problems are logged and the write proceeds.
    pub fn check(&self, rtype: &str, resource: &Value) -> Result<(), FhirError> {
        if self.mode == ValidationMode::Off {
            return Ok(());
        }
        let issues = self.validator.validate(resource, self.required_for(rtype));
        self.judge(rtype, issues)
    }

    /// The mode's verdict on the issues found in a resource about to be written (the second half
    /// of [`WritePolicy::check`], for callers that settle terminology in between).
    pub fn judge(&self, rtype: &str, issues: Vec<Issue>) -> Result<(), FhirError> {
        if self.mode == ValidationMode::Off {
            return Ok(());
        }
        if !has_errors(&issues) {
            return Ok(());
        }
        match self.mode {
            ValidationMode::Enforce => Err(FhirError::new(422, issues)),
            _ => {
                let errors = issues
                    .iter()
                    .filter(|i| i.severity <= Severity::Error)
                    .count();
                tracing::warn!(
                    resource_type = rtype,
                    errors,
                    first = %issues[0].diagnostics,
                    "accepted a resource that fails validation (validation.mode = warn)"
                );
                Ok(())
            }
        }
    }
}
