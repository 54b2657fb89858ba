//! OperationOutcome: the one shape in which the gateway tells a client what went wrong (or right).
//!
//! Every issue carries a severity, an issue-type code from the R4 `issue-type` value set, a message a
//! person can act on and, where it applies, a FHIRPath location such as `CarePlan.goal[0].reference`.

use serde_json::{json, Value};

/// `OperationOutcome.issue.severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// One problem (or note) about a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub severity: Severity,
    /// A code from http://hl7.org/fhir/issue-type (`invalid`, `not-found`, `conflict`, …).
    pub code: &'static str,
    pub diagnostics: String,
    /// FHIRPath-style location, e.g. `Bundle.entry[2].request.url`.
    pub expression: Option<String>,
}

impl Issue {
    pub fn error(code: &'static str, diagnostics: impl Into<String>) -> Issue {
        Issue {
            severity: Severity::Error,
            code,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }

    pub fn warning(code: &'static str, diagnostics: impl Into<String>) -> Issue {
        Issue {
            severity: Severity::Warning,
            ..Issue::error(code, diagnostics)
        }
    }

    pub fn information(code: &'static str, diagnostics: impl Into<String>) -> Issue {
        Issue {
            severity: Severity::Information,
            ..Issue::error(code, diagnostics)
        }
    }

    /// The same issue, located at `expression`.
    pub fn at(mut self, expression: impl Into<String>) -> Issue {
        self.expression = Some(expression.into());
        self
    }

    /// Prefix the location (e.g. with `Bundle.entry[3].resource`) when an issue found in a part is
    /// reported for the whole.
    pub fn within(mut self, prefix: &str) -> Issue {
        self.expression = Some(match self.expression.take() {
            Some(inner) => match inner.split_once('.') {
                // `CarePlan.goal[0]` inside `Bundle.entry[1].resource` → `Bundle.entry[1].resource.goal[0]`
                Some((head, rest)) if head.chars().next().is_some_and(char::is_uppercase) => {
                    format!("{prefix}.{rest}")
                }
                _ if inner.chars().next().is_some_and(char::is_uppercase)
                    && !inner.contains('.') =>
                {
                    prefix.to_string()
                }
                _ => format!("{prefix}.{inner}"),
            },
            None => prefix.to_string(),
        });
        self
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "severity": self.severity.as_str(),
            "code": self.code,
            "diagnostics": self.diagnostics,
        });
        if let Some(expr) = &self.expression {
            v["expression"] = json!([expr]);
        }
        v
    }
}

/// Build an OperationOutcome resource from issues (an empty list yields one `informational` issue,
/// because an OperationOutcome needs at least one).
pub fn operation_outcome(issues: &[Issue]) -> Value {
    let list: Vec<Value> = if issues.is_empty() {
        vec![Issue::information("informational", "All OK").to_json()]
    } else {
        issues.iter().map(Issue::to_json).collect()
    };
    json!({ "resourceType": "OperationOutcome", "issue": list })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_rewrites_a_resource_rooted_location() {
        let i = Issue::error("invalid", "x").at("CarePlan.goal[0].reference");
        assert_eq!(
            i.within("Bundle.entry[1].resource").expression.as_deref(),
            Some("Bundle.entry[1].resource.goal[0].reference")
        );
        let bare = Issue::error("invalid", "x").at("CarePlan");
        assert_eq!(
            bare.within("Bundle.entry[0].resource")
                .expression
                .as_deref(),
            Some("Bundle.entry[0].resource")
        );
    }

    #[test]
    fn outcome_always_has_an_issue() {
        let oo = operation_outcome(&[]);
        assert_eq!(oo["issue"][0]["severity"], "information");
        let oo = operation_outcome(&[Issue::error("invalid", "bad").at("Patient.birthDate")]);
        assert_eq!(oo["issue"][0]["expression"][0], "Patient.birthDate");
    }
}
