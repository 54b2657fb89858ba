//! Checking a posted record, in two stages that each report every problem they find:
//!
//! 1. the JSON Schema (`profiles/municipal/care-record-v1.schema.json`, with the `jsonschema`
//!    crate): is this a v1 record at all? Problems answer 400.
//! 2. the rules a schema cannot state: local ids unique and every reference to one resolving,
//!    dates in order, codes known (FSIII, municipality codes), status and phase agreeing, at most
//!    one primary contact, a CPR whose first six digits are a date. Problems answer 422.
//!
//! Locations are JSON paths into the posted document: `$.goals[1].addresses[0]`.

use std::collections::HashSet;
use std::sync::OnceLock;

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde_json::Value;

#[cfg(test)]
use super::record::Cpr;
use super::record::{CareRecord, CourseStatus};
use super::vocab::{self, vs};
use fhir_core::fhir::datetime;
use fhir_core::fhir::outcome::Issue;
use fhir_core::validation::terminology::{Membership, Terminology};

pub const SCHEMA_TEXT: &str = include_str!("../../profiles/municipal/care-record-v1.schema.json");

/// A JSON Schema embedded in the binary, compiled on first use.
pub struct Schema {
    text: &'static str,
    compiled: OnceLock<Result<jsonschema::Validator, String>>,
}

impl Schema {
    pub const fn new(text: &'static str) -> Schema {
        Schema {
            text,
            compiled: OnceLock::new(),
        }
    }

    fn compiled(&self) -> Result<&jsonschema::Validator, String> {
        self.compiled
            .get_or_init(|| {
                let schema: Value = serde_json::from_str(self.text).map_err(|e| e.to_string())?;
                jsonschema::options()
                    .build(&schema)
                    .map_err(|e| format!("an embedded JSON Schema does not compile: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Every violation, each located as a JSON path.
    pub fn check(&self, doc: &Value) -> Vec<Issue> {
        let validator = match self.compiled() {
            Ok(v) => v,
            Err(e) => return vec![Issue::error("exception", e)],
        };
        let mut issues: Vec<Issue> = validator
            .iter_errors(doc)
            .map(|e| {
                let at = json_path(e.instance_path());
                let schema_path = e.schema_path().as_str().to_string();
                let message = match (e.kind(), expected(&schema_path)) {
                    (jsonschema::error::ValidationErrorKind::Pattern { .. }, Some(what))
                    | (jsonschema::error::ValidationErrorKind::MinLength { .. }, Some(what))
                    | (jsonschema::error::ValidationErrorKind::MaxLength { .. }, Some(what)) => {
                        format!("{at} must be {what}")
                    }
                    _ => format!("{at}: {}", e.masked()),
                };
                Issue::error("structure", message).at(at)
            })
            .collect();
        issues.dedup();
        issues
    }
}

/// The care record schema.
pub static CARE_RECORD: Schema = Schema::new(SCHEMA_TEXT);

/// A JSON path (`$.a.b[0]`) for a JSON Schema instance location.
fn json_path(location: &jsonschema::paths::Location) -> String {
    let mut out = String::from("$");
    for seg in location.iter() {
        match seg {
            jsonschema::paths::LocationSegment::Property(p) => {
                out.push('.');
                out.push_str(&p);
            }
            jsonschema::paths::LocationSegment::Index(i) => {
                out.push_str(&format!("[{i}]"));
            }
        }
    }
    out
}

/// What a schema definition means, for messages a person can act on.
fn expected(schema_path: &str) -> Option<&'static str> {
    let defs: &[(&str, &str)] = &[
        (
            "/$defs/dateTime/",
            "a date and time with seconds and a UTC offset, e.g. 2026-03-02T10:30:00+01:00",
        ),
        ("/$defs/date/", "a date YYYY-MM-DD"),
        ("/$defs/sor/", "a SOR code of 1 to 18 digits"),
        (
            "/$defs/localId/",
            "an id of up to 64 letters, digits, '.' and '-', starting with a letter or digit",
        ),
        (
            "/$defs/recordId/",
            "an id of up to 64 letters, digits, '.' and '-', starting with a letter or digit",
        ),
        (
            "/$defs/text/",
            "text that is not blank (at most 4000 characters)",
        ),
        (
            "/$defs/code/",
            "a code without leading, trailing or repeated spaces",
        ),
        ("/cpr/", "a CPR number of ten digits without hyphen"),
        (
            "/phone/",
            "a phone number of digits and spaces, optionally starting with +",
        ),
        (
            "/municipality/properties/code/",
            "a municipality code of four digits, e.g. 0510",
        ),
    ];
    defs.iter()
        .find(|(p, _)| schema_path.contains(p))
        .map(|(_, what)| *what)
}

/// Stage 1: the JSON Schema. Every violation, each located.
pub fn schema(doc: &Value) -> Vec<Issue> {
    CARE_RECORD.check(doc)
}

/// A parsed dateTime (the schema guarantees the shape; a date the calendar lacks fails here).
pub(crate) fn instant(s: &str) -> Option<DateTime<FixedOffset>> {
    datetime::full_date_time(s)
}

/// A parsed date of the schema's shape `YYYY-MM-DD` (a day the calendar lacks fails here).
fn date(s: &str) -> Option<NaiveDate> {
    datetime::full_date(s)
}

struct Rules<'a> {
    terms: &'a Terminology,
    issues: Vec<Issue>,
}

impl Rules<'_> {
    fn error(&mut self, at: String, code: &'static str, message: String) {
        self.issues.push(Issue::error(code, message).at(at));
    }

    fn warning(&mut self, at: String, message: String) {
        self.issues
            .push(Issue::warning("business-rule", message).at(at));
    }

    fn instant(&mut self, at: &str, s: &str) -> Option<DateTime<FixedOffset>> {
        let t = instant(s);
        if t.is_none() {
            self.error(
                at.into(),
                "value",
                format!("{at}: {s:?} is not a real date and time"),
            );
        }
        t
    }

    fn date(&mut self, at: &str, s: &str) -> Option<NaiveDate> {
        let d = date(s);
        if d.is_none() {
            self.error(
                at.into(),
                "value",
                format!("{at}: {s:?} is not a real date"),
            );
        }
        d
    }

    /// `later` must not be before `earlier`; reported at `later_at`.
    fn ordered(
        &mut self,
        earlier: Option<DateTime<FixedOffset>>,
        earlier_at: &str,
        later: Option<DateTime<FixedOffset>>,
        later_at: &str,
    ) {
        if let (Some(a), Some(b)) = (earlier, later) {
            if b < a {
                self.error(
                    later_at.into(),
                    "business-rule",
                    format!("{later_at} ({b}) is before {earlier_at} ({a})"),
                );
            }
        }
    }

    fn unique<'r>(&mut self, list: &str, ids: impl Iterator<Item = &'r str>) -> HashSet<&'r str> {
        let mut seen = HashSet::new();
        for (i, id) in ids.enumerate() {
            if !seen.insert(id) {
                self.error(
                    format!("$.{list}[{i}].id"),
                    "duplicate",
                    format!("$.{list}[{i}].id: {id:?} is used by an earlier entry of {list}"),
                );
            }
        }
        seen
    }

    /// `at` is made only when there is a problem to locate: a record has hundreds of values.
    fn refers(&mut self, at: impl FnOnce() -> String, id: &str, known: &HashSet<&str>, what: &str) {
        if !known.contains(id) {
            let at = at();
            self.error(
                at.clone(),
                "not-found",
                format!("{at}: no {what} has id {id:?} in this record"),
            );
        }
    }

    fn code(
        &mut self,
        at: impl FnOnce() -> String,
        value_set: &str,
        system: &str,
        code: &str,
        what: &str,
    ) {
        let unknown = match self.terms.check_code(value_set, Some(system), code) {
            Membership::Member => return,
            Membership::NotMember { .. } => None,
            Membership::Unknown { reason } => Some(reason),
        };
        let at = at();
        let message = match unknown {
            None => format!("{at}: {code:?} is not {what} ({value_set})"),
            Some(reason) => format!("{at}: could not check {code:?} against {value_set}: {reason}"),
        };
        self.error(at, "code-invalid", message);
    }
}

/// Stage 2: the rules. Errors and warnings (warnings do not stop the record).
pub fn rules(rec: &CareRecord, terms: &Terminology) -> Vec<Issue> {
    let mut r = Rules {
        terms,
        issues: Vec::new(),
    };
    let c = &rec.course;

    // Ids and references.
    let conditions = r.unique("conditions", rec.conditions.iter().map(|x| x.id.as_str()));
    let goals = r.unique("goals", rec.goals.iter().map(|x| x.id.as_str()));
    r.unique(
        "interventions",
        rec.interventions.iter().map(|x| x.id.as_str()),
    );
    let members = r.unique("careTeam", rec.care_team.iter().map(|x| x.id.as_str()));
    r.unique("meetings", rec.meetings.iter().map(|x| x.id.as_str()));
    for (i, g) in rec.goals.iter().enumerate() {
        for (j, a) in g.addresses.iter().enumerate() {
            r.refers(
                || format!("$.goals[{i}].addresses[{j}]"),
                a,
                &conditions,
                "condition",
            );
        }
    }
    for (i, x) in rec.interventions.iter().enumerate() {
        for (j, g) in x.goals.iter().enumerate() {
            r.refers(
                || format!("$.interventions[{i}].goals[{j}]"),
                g,
                &goals,
                "goal",
            );
        }
    }
    for (i, m) in rec.meetings.iter().enumerate() {
        for (j, p) in m.participants.iter().enumerate() {
            r.refers(
                || format!("$.meetings[{i}].participants[{j}]"),
                p,
                &members,
                "care-team member",
            );
        }
        for (j, g) in m.goal_reviews.iter().enumerate() {
            r.refers(
                || format!("$.meetings[{i}].goalReviews[{j}].goal"),
                &g.goal,
                &goals,
                "goal",
            );
        }
    }

    // Dates.
    let start = r.instant("$.course.period.start", &c.period.start);
    let end = c
        .period
        .end
        .as_deref()
        .and_then(|e| r.instant("$.course.period.end", e));
    r.ordered(start, "$.course.period.start", end, "$.course.period.end");
    if let Some(b) = rec.citizen.birth_date.as_deref() {
        let born = r.date("$.citizen.birthDate", b);
        if let (Some(born), Some(start)) = (born, start) {
            if born > start.date_naive() {
                r.error(
                    "$.citizen.birthDate".into(),
                    "business-rule",
                    format!("$.citizen.birthDate ({born}) is after the course start ({start})"),
                );
            }
        }
    }
    if let Some(stay) = &c.stay {
        let admitted = r.instant("$.course.stay.admittedAt", &stay.admitted_at);
        let ready = stay
            .ready_for_discharge_at
            .as_deref()
            .and_then(|t| r.instant("$.course.stay.readyForDischargeAt", t));
        let discharged = stay
            .discharged_at
            .as_deref()
            .and_then(|t| r.instant("$.course.stay.dischargedAt", t));
        r.ordered(
            admitted,
            "$.course.stay.admittedAt",
            ready,
            "$.course.stay.readyForDischargeAt",
        );
        match ready {
            Some(_) => r.ordered(
                ready,
                "$.course.stay.readyForDischargeAt",
                discharged,
                "$.course.stay.dischargedAt",
            ),
            None => r.ordered(
                admitted,
                "$.course.stay.admittedAt",
                discharged,
                "$.course.stay.dischargedAt",
            ),
        }
        if stay.discharged_at.is_some() != stay.discharge_destination.is_some() {
            let message = if stay.discharged_at.is_some() {
                "$.course.stay.dischargeDestination: a discharged stay needs its destination"
            } else {
                "$.course.stay.dischargeDestination: a destination is given but no dischargedAt"
            };
            r.error(
                "$.course.stay.dischargeDestination".into(),
                "business-rule",
                message.into(),
            );
        }
    }
    for (i, m) in rec.meetings.iter().enumerate() {
        let at = format!("$.meetings[{i}].start");
        let s = r.instant(&at, &m.start);
        r.ordered(start, "$.course.period.start", s, &at);
        if let Some(e) = m.end.as_deref() {
            let end_at = format!("$.meetings[{i}].end");
            let e = r.instant(&end_at, e);
            r.ordered(s, &at, e, &end_at);
        }
    }
    for (i, g) in rec.goals.iter().enumerate() {
        if let Some(d) = g.due.as_deref() {
            let at = format!("$.goals[{i}].due");
            if let (Some(due), Some(start)) = (r.date(&at, d), start) {
                if due < start.date_naive() {
                    r.error(
                        at.clone(),
                        "business-rule",
                        format!("{at} ({due}) is before the course start ({start})"),
                    );
                }
            }
        }
        if g.measure.is_none() || g.due.is_none() {
            r.warning(
                format!("$.goals[{i}]"),
                format!(
                    "goal {:?} is not SMART: it needs a measure with a target and a due date to be followed up",
                    g.id
                ),
            );
        }
    }

    // Codes.
    r.code(
        || "$.municipality.code".into(),
        vs::MUNICIPALITIES,
        vocab::MUNICIPALITY_CODES,
        &rec.municipality.code,
        "a Danish municipality code",
    );
    for (i, x) in rec.conditions.iter().enumerate() {
        r.code(
            || format!("$.conditions[{i}].code"),
            vs::FSIII_CONDITIONS,
            vocab::FSIII,
            &x.code,
            "an FSIII condition",
        );
        if let Some(s) = &x.severity {
            r.code(
                || format!("$.conditions[{i}].severity"),
                vs::FSIII_SEVERITIES,
                vocab::FSIII,
                s,
                "an FSIII severity",
            );
        }
    }
    for (i, x) in rec.interventions.iter().enumerate() {
        r.code(
            || format!("$.interventions[{i}].code"),
            vs::FSIII_INTERVENTIONS,
            vocab::FSIII,
            &x.code,
            "an FSIII intervention",
        );
    }

    // Status and phase.
    let completed_status = c.status == CourseStatus::Completed;
    let completed_phase = c.phase == "completed";
    if completed_status != completed_phase {
        r.error(
            "$.course.phase".into(),
            "business-rule",
            format!(
                "$.course.phase is {:?} but the status is {:?}: a course is in phase completed exactly when its status is completed",
                c.phase,
                c.status.as_str()
            ),
        );
    }
    let ended = c.status.ended();
    if ended && c.period.end.is_none() {
        r.error(
            "$.course.period.end".into(),
            "business-rule",
            format!(
                "$.course.period.end is required when the course is {}",
                c.status
            ),
        );
    } else if !ended && c.period.end.is_some() {
        r.error(
            "$.course.period.end".into(),
            "business-rule",
            format!(
                "$.course.period.end must be absent while the course is {}; set it when the course is completed or cancelled",
                c.status
            ),
        );
    }

    // People.
    let primaries: Vec<usize> = rec
        .care_team
        .iter()
        .enumerate()
        .filter(|(_, m)| m.primary_contact)
        .map(|(i, _)| i)
        .collect();
    for i in primaries.iter().skip(1) {
        r.error(
            format!("$.careTeam[{i}].primaryContact"),
            "business-rule",
            format!(
                "$.careTeam[{i}].primaryContact: the citizen has one primary contact person, already $.careTeam[{}]",
                primaries[0]
            ),
        );
    }
    if primaries.is_empty() && !c.status.ended() {
        r.warning(
            "$.careTeam".into(),
            "no care-team member is the citizen's primary contact person: name one so that the citizen and the hospital know whom to call".into(),
        );
    }
    if !rec.citizen.cpr.birth_date_ok() {
        r.error(
            "$.citizen.cpr".into(),
            "value",
            "$.citizen.cpr: the first six digits must be a date of birth (DDMMYY)".into(),
        );
    }
    r.issues
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_as_chrono_parses_the_schemas_shape() {
        let mut cases = vec![
            "2024-02-29",
            "2023-02-29",
            "2024-04-31",
            "0001-01-01",
            "9999-12-31",
            "2024-1-01",
            "2024-01-1",
            "2024/01/01",
            "20240101",
            "2024-01-01T",
            "+2024-01-1",
            "２０２４-01-01",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        for m in 0..=13 {
            for d in [0, 1, 28, 29, 30, 31, 32] {
                cases.push(format!("2023-{m:02}-{d:02}"));
                cases.push(format!("2024-{m:02}-{d:02}"));
            }
        }
        for s in &cases {
            let chrono = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
            // Outside the schema's shape chrono is laxer (one-digit months); inside, the same.
            let shaped = s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-';
            if shaped || date(s).is_some() {
                assert_eq!(date(s), chrono, "{s}");
            }
        }
    }

    proptest::proptest! {
        /// On every text of the schema's dateTime shape, the one date/time type reads what
        /// chrono's RFC 3339 parser, which this module used before it, reads.
        #[test]
        fn date_times_of_the_schemas_shape_read_as_chrono_read_them(
            s in proptest::string::string_regex(
                "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]{1,9})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9]|[+-]14:00)"
            ).expect("the schema's pattern")
        ) {
            proptest::prop_assert_eq!(instant(&s), DateTime::parse_from_rfc3339(&s).ok(), "{}", s);
        }
    }

    #[test]
    fn cpr_dates() {
        let ok = |s: &str| Cpr::parse(s).expect("ten digits").birth_date_ok();
        assert!(ok("0703451234"));
        assert!(ok("2902001234"));
        assert!(!ok("3002451234"));
        assert!(!ok("0013451234"));
        assert!(Cpr::parse("12").is_err());
        assert!(Cpr::parse("070345-1234").is_err());
    }

    #[test]
    fn the_schema_compiles() {
        assert!(CARE_RECORD.compiled().is_ok());
    }
}
