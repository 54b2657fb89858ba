//! The municipal care record, v1, as Rust types. `profiles/municipal/care-record-v1.schema.json`
//! is the published contract; these types mirror it field for field (a test keeps the two in
//! step by round-tripping every fixture), and are what the mapping reads and writes.
//!
//! Numbers that come from the citizen's measures are kept as `serde_json::Number`, which keeps
//! the source's digits exactly (`1.50` stays `1.50`), so record → FHIR → record is the identity.
//!
//! An optional member may be left out but not given as `null` (the schema says so too), so
//! that a record which parses into these types has the schema's shape ([`super::conforms`]).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Number;

/// An optional member that is present: its value, never `null` (`default` covers the absent
/// case).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The value of `format`.
pub const FORMAT_V1: &str = "municipal-care-record/v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CareRecord {
    pub format: String,
    pub record_id: String,
    pub record_version: u32,
    pub municipality: Municipality,
    pub citizen: Citizen,
    pub course: Course,
    pub conditions: Vec<Condition>,
    pub goals: Vec<Goal>,
    pub interventions: Vec<Intervention>,
    pub care_team: Vec<Member>,
    pub meetings: Vec<Meeting>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Municipality {
    /// Danish municipality code, e.g. `0510`.
    pub code: String,
    pub name: String,
    pub sor: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Citizen {
    pub cpr: Cpr,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub given_names: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub family_name: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub birth_date: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Course {
    pub kind: String,
    pub legal_basis: String,
    pub phase: String,
    pub status: CourseStatus,
    pub period: Period,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub stay: Option<Stay>,
}

/// A CPR number as the record carries it: ten digits, no hyphen (the schema's pattern; anything
/// else fails the typed parse and the schema answers). Whether its first six digits are a date
/// is a rule of the record ([`Cpr::birth_date_ok`]), reported with the other rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cpr(String);

impl Cpr {
    /// Ten ASCII digits.
    pub fn parse(s: &str) -> Result<Cpr, String> {
        if s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Cpr(s.to_string()))
        } else {
            Err("a CPR number is ten digits, without a hyphen".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first six digits are DDMMYY (the century is not decided here: 29 February is
    /// accepted in any year divisible by 4).
    pub fn birth_date_ok(&self) -> bool {
        let two = |at: usize| {
            u32::from(self.0.as_bytes()[at] - b'0') * 10
                + u32::from(self.0.as_bytes()[at + 1] - b'0')
        };
        let (day, month, year) = (two(0), two(2), two(4));
        let year = if year % 4 == 0 { 2000 } else { 2001 };
        chrono::NaiveDate::from_ymd_opt(year, month, day).is_some()
    }

    /// As a business identifier (`urn:oid:1.2.208.176.1.2|…`).
    pub fn identifier(&self) -> crate::lookup::Identifier {
        crate::lookup::Identifier {
            system: super::vocab::CPR.to_string(),
            value: self.0.clone(),
        }
    }
}

impl TryFrom<String> for Cpr {
    type Error = String;

    fn try_from(s: String) -> Result<Cpr, String> {
        Cpr::parse(&s).map(|_| Cpr(s))
    }
}

impl From<Cpr> for String {
    fn from(c: Cpr) -> String {
        c.0
    }
}

impl std::fmt::Display for Cpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A closed code list of the record format as an enum: its serde form, `as_str` and `parse`
/// are the schema's codes, so a value outside the list fails the typed parse (and the schema,
/// which the caller falls back to, says where).
macro_rules! codes {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $code:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $code)] $variant),+
        }

        impl $name {
            /// Every code, in the schema's order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The code as the record writes it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $code),+
                }
            }

            /// The value a record writes as `code`.
            pub fn parse(code: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|s| s.as_str() == code)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

codes! {
    /// Where a care course is (`course.status`).
    CourseStatus {
        Planned = "planned",
        Active = "active",
        OnHold = "on-hold",
        Completed = "completed",
        Cancelled = "cancelled",
    }
}

impl CourseStatus {
    /// Completed or cancelled: the course has run its course.
    pub fn ended(self) -> bool {
        matches!(self, CourseStatus::Completed | CourseStatus::Cancelled)
    }
}

codes! {
    /// Where a goal is (`goals[].status`, the Goal's `lifecycleStatus`).
    GoalStatus {
        Proposed = "proposed",
        Active = "active",
        OnHold = "on-hold",
        Completed = "completed",
        Cancelled = "cancelled",
    }
}

codes! {
    /// Where an intervention is (`interventions[].status`).
    InterventionStatus {
        NotStarted = "not-started",
        Scheduled = "scheduled",
        InProgress = "in-progress",
        OnHold = "on-hold",
        Completed = "completed",
        Cancelled = "cancelled",
        Stopped = "stopped",
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Period {
    pub start: String,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub end: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Stay {
    pub unit: Unit,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub admitted_from: Option<AdmittedFrom>,
    pub admitted_at: String,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub ready_for_discharge_at: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub discharged_at: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub discharge_destination: Option<String>,
}

/// An organization known by its SOR code (the unit of a temporary place).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Unit {
    pub name: String,
    pub sor: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdmittedFrom {
    pub kind: String,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub sor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    pub id: String,
    /// FSIII condition code.
    pub code: String,
    /// FSIII severity code.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub severity: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Goal {
    pub id: String,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub citizen_words: Option<String>,
    pub description: String,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub measure: Option<Measure>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub due: Option<String>,
    pub responsible_discipline: String,
    pub status: GoalStatus,
    pub achievement: String,
    /// Ids of the conditions the goal addresses.
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Measure {
    pub description: String,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub baseline: Option<Number>,
    pub target: Number,
    pub unit: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Intervention {
    pub id: String,
    /// FSIII intervention code.
    pub code: String,
    pub discipline: String,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub frequency: Option<Frequency>,
    /// Ids of the goals the intervention serves.
    pub goals: Vec<String>,
    pub status: InterventionStatus,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Frequency {
    pub count: u32,
    /// `day`, `week` or `month`.
    pub per: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub discipline: String,
    pub primary_contact: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Meeting {
    pub id: String,
    pub start: String,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub end: Option<String>,
    /// Ids of the care-team members present.
    pub participants: Vec<String>,
    pub citizen_present: bool,
    pub relatives_present: bool,
    pub decisions: Vec<String>,
    pub goal_reviews: Vec<GoalReview>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GoalReview {
    pub goal: String,
    pub achievement: String,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub note: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::{CourseStatus, GoalStatus, InterventionStatus};

    /// The schema's `enum` at `pointer`.
    fn listed(pointer: &str) -> Vec<String> {
        let schema: serde_json::Value = serde_json::from_str(include_str!(
            "../../profiles/municipal/care-record-v1.schema.json"
        ))
        .expect("schema");
        schema
            .pointer(pointer)
            .and_then(serde_json::Value::as_array)
            .expect("an enum")
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    }

    #[test]
    fn statuses_read_and_write_as_the_schema_spells_them() {
        fn check<T>(
            pointer: &str,
            all: &[T],
            as_str: fn(T) -> &'static str,
            parse: fn(&str) -> Option<T>,
        ) where
            T: Copy + PartialEq + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
        {
            let ours: Vec<String> = all.iter().map(|s| as_str(*s).to_string()).collect();
            assert_eq!(ours, listed(pointer));
            for &s in all {
                let json = serde_json::to_value(s).expect("serialize");
                assert_eq!(json, as_str(s));
                assert_eq!(serde_json::from_value::<T>(json).ok(), Some(s));
                assert_eq!(parse(as_str(s)), Some(s));
            }
            assert_eq!(parse("done"), None);
        }
        check(
            "/properties/course/properties/status/enum",
            CourseStatus::ALL,
            CourseStatus::as_str,
            CourseStatus::parse,
        );
        check(
            "/properties/goals/items/properties/status/enum",
            GoalStatus::ALL,
            GoalStatus::as_str,
            GoalStatus::parse,
        );
        check(
            "/properties/interventions/items/properties/status/enum",
            InterventionStatus::ALL,
            InterventionStatus::as_str,
            InterventionStatus::parse,
        );
    }

    /// A value the types cannot hold fails the typed parse, and the schema says where.
    #[test]
    fn what_the_types_refuse_is_the_schemas_to_answer() {
        let text = include_str!("../../fixtures/municipal/aarhus-stroke-goal-setting.json");
        assert!(crate::municipal::parse_conforming(text.as_bytes()).is_some());
        for (pointer, bad, at) in [
            ("/course/status", "done", "$.course.status"),
            ("/citizen/cpr", "070345-1234", "$.citizen.cpr"),
            ("/goals/0/status", "achieved", "$.goals[0].status"),
        ] {
            let mut doc: serde_json::Value = serde_json::from_str(text).expect("fixture");
            *doc.pointer_mut(pointer).expect("in the fixture") = bad.into();
            let bytes = serde_json::to_vec(&doc).expect("json");
            assert!(
                crate::municipal::parse_conforming(&bytes).is_none(),
                "{pointer}"
            );
            let issues = crate::municipal::check::schema(&doc);
            assert!(
                issues.iter().any(|i| i.expression.as_deref() == Some(at)),
                "{pointer}: {issues:?}"
            );
        }
    }
}
