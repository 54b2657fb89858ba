//! Report facts: what the KL Gateway reports read of one municipal care record, and nothing else
//! (no names, notes, goal texts, care team or measures). Kept as compact JSON in the
//! `report_facts` table beside the record's resources, written in the transaction that stores the
//! record (`municipal::store`), so that a report reads one short row per record instead of the
//! record's ~38 FHIR resources (docs/kl-gateway.md, "Speed").
//!
//! The facts are the record's own values, before any terminology decides what a report takes:
//! the value sets and the report's timestamp are applied when the report is written, so the
//! same facts serve every report and every later version of the IG's value sets.

use serde::{Deserialize, Serialize};

use super::kl_gateway::Kind;
use crate::municipal::record::CareRecord;

/// One record's report facts. Field names are short: the row is read once per record per report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// `recordId`.
    #[serde(rename = "r")]
    pub record_id: String,
    /// Municipality code (`0510`).
    #[serde(rename = "m")]
    pub municipality: String,
    /// The municipality's SOR code.
    #[serde(rename = "s")]
    pub sor: String,
    /// The citizen's CPR number.
    #[serde(rename = "p")]
    pub cpr: String,
    #[serde(rename = "c")]
    pub course: Course,
    #[serde(rename = "d", default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(rename = "g", default, skip_serializing_if = "Vec::is_empty")]
    pub goals: Vec<Goal>,
    #[serde(rename = "i", default, skip_serializing_if = "Vec::is_empty")]
    pub interventions: Vec<Intervention>,
    /// The meetings the citizen took part in (the reports leave out the others).
    #[serde(rename = "e", default, skip_serializing_if = "Vec::is_empty")]
    pub meetings: Vec<Meeting>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Course {
    #[serde(rename = "k")]
    pub kind: String,
    #[serde(rename = "l")]
    pub legal_basis: String,
    #[serde(rename = "p")]
    pub phase: String,
    #[serde(rename = "s")]
    pub status: String,
    #[serde(rename = "b")]
    pub start: String,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// The stay's discharge destination, if the course has a stay and it says.
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    pub discharge_destination: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    #[serde(rename = "i")]
    pub id: String,
    #[serde(rename = "c")]
    pub code: String,
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Goal {
    #[serde(rename = "i")]
    pub id: String,
    /// Ids of the conditions the goal addresses.
    #[serde(rename = "a", default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intervention {
    #[serde(rename = "i")]
    pub id: String,
    #[serde(rename = "c")]
    pub code: String,
    #[serde(rename = "s")]
    pub status: String,
    /// Ids of the goals the intervention serves.
    #[serde(rename = "g", default, skip_serializing_if = "Vec::is_empty")]
    pub goals: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meeting {
    #[serde(rename = "i")]
    pub id: String,
    #[serde(rename = "b")]
    pub start: String,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

impl Facts {
    /// The facts of a record.
    pub fn of(rec: &CareRecord) -> Facts {
        let c = &rec.course;
        Facts {
            record_id: rec.record_id.clone(),
            municipality: rec.municipality.code.clone(),
            sor: rec.municipality.sor.clone(),
            cpr: rec.citizen.cpr.to_string(),
            course: Course {
                kind: c.kind.clone(),
                legal_basis: c.legal_basis.clone(),
                phase: c.phase.clone(),
                status: c.status.as_str().to_string(),
                start: c.period.start.clone(),
                end: c.period.end.clone(),
                discharge_destination: c
                    .stay
                    .as_ref()
                    .and_then(|s| s.discharge_destination.clone()),
            },
            conditions: rec
                .conditions
                .iter()
                .map(|x| Condition {
                    id: x.id.clone(),
                    code: x.code.clone(),
                    severity: x.severity.clone(),
                })
                .collect(),
            goals: rec
                .goals
                .iter()
                .map(|g| Goal {
                    id: g.id.clone(),
                    addresses: g.addresses.clone(),
                })
                .collect(),
            interventions: rec
                .interventions
                .iter()
                .map(|i| Intervention {
                    id: i.id.clone(),
                    code: i.code.clone(),
                    status: i.status.as_str().to_string(),
                    goals: i.goals.clone(),
                })
                .collect(),
            meetings: rec
                .meetings
                .iter()
                .filter(|m| m.citizen_present)
                .map(|m| Meeting {
                    id: m.id.clone(),
                    start: m.start.clone(),
                    end: m.end.clone(),
                })
                .collect(),
        }
    }

    /// Which report the record goes to.
    pub fn kind(&self) -> Kind {
        Kind::of_legal_basis(&self.course.legal_basis)
    }

    /// The compact JSON kept in the row.
    pub fn to_json(&self) -> String {
        // Strings and lists of strings only: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The facts from a row's JSON.
    pub fn from_json(text: &str) -> Result<Facts, String> {
        serde_json::from_str(text).map_err(|e| format!("report facts are not readable: {e}"))
    }
}
