//! The municipal discharge note, v1 (`profiles/municipal/discharge-note-v1.schema.json`), as
//! Rust types.

use serde::{Deserialize, Serialize};

pub use crate::lookup::Identifier;

pub const FORMAT_V1: &str = "municipal-discharge-note/v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DischargeNote {
    pub format: String,
    pub note_id: String,
    pub care_record: RecordRef,
    pub receiver: Identifier,
    pub ready_for_discharge_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discharged_at: Option<String>,
    pub destination: String,
    pub summary: String,
    pub functional_status: String,
    pub goal_outcomes: Vec<GoalOutcome>,
    pub follow_up: Vec<FollowUp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<Contact>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordRef {
    pub municipality: String,
    pub record_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GoalOutcome {
    pub goal: String,
    pub achievement: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FollowUp {
    pub what: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responsible: Option<Responsible>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<String>,
}

impl FollowUp {
    /// One line of a message's follow-up plan: `what: who, <by> due`, with `nobody` where no
    /// one is responsible (the words are the message's language).
    pub fn line(&self, nobody: &str, by: &str) -> String {
        let who = self
            .responsible
            .as_ref()
            .map_or(nobody, |r| r.name.as_str());
        let due = self
            .due
            .as_ref()
            .map(|d| format!(", {by} {d}"))
            .unwrap_or_default();
        format!("{}: {who}{due}", self.what)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Responsible {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<Identifier>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Contact {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}
