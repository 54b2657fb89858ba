//! When the FHIR a record becomes needs the full validator, and when it does not.
//!
//! The mapping (`to_fhir`) writes every resource from fixed code: structure, cardinalities,
//! fixed values, profiles, our own code systems' displays, references to name-based UUIDs. What
//! it cannot guarantee are the record's own values where they land in FHIR: strings, dates and
//! times, numbers, codes (value-set membership), and the few rules that compare values (`per-1`
//! on every period, `sb-cp-1`, `sb-ct-1`). This module checks exactly those, with the same checks
//! the validator uses (`validation::primitive`, `Terminology::check_code`, FHIRPath's
//! `Temporal::compare`). When every value passes, the produced resources validate without errors
//! and [`super::translate`] skips the walk; when any value does not (or cannot be decided
//! here), the full validator runs and its issues are the answer, so the answer is the same
//! either way.
//!
//! That claim is tested, not assumed: `tests/municipal.rs` generates records (valid ones and ones
//! with broken values) and requires `translate` to answer exactly what the full validation of
//! the produced resources answers, for each of them and for every fixture; a mapping change that
//! makes resources invalid by construction fails that test.

use serde_json::Value;

use super::record::CareRecord;
use super::vocab::{self, cs};
use fhir_core::fhirpath::Temporal;
use fhir_core::validation::primitive;
use fhir_core::validation::terminology::Terminology;

/// Value sets the mapping's codes are bound to (required bindings of R4 and our profiles; for
/// the course kind, an example binding, the value set of our code system).
mod bound {
    pub const GOAL_STATUS: &str = "http://hl7.org/fhir/ValueSet/goal-status";
    pub const GOAL_ACHIEVEMENT: &str = "http://hl7.org/fhir/ValueSet/goal-achievement";
    pub const ACTIVITY_STATUS: &str = "http://hl7.org/fhir/ValueSet/care-plan-activity-status";
    pub const DISCIPLINE: &str = "http://sektorbro.dk/fhir/ValueSet/discipline";
    pub const LEGAL_BASIS: &str = "http://sektorbro.dk/fhir/ValueSet/legal-basis";
    pub const COURSE_KIND: &str = "http://sektorbro.dk/fhir/ValueSet/course-kind";
    pub const PHASE: &str = "http://sektorbro.dk/fhir/ValueSet/rehab-phase";
    pub const ADMISSION_SOURCE: &str = "http://sektorbro.dk/fhir/ValueSet/admission-source";
    pub const DISCHARGE_DESTINATION: &str =
        "http://sektorbro.dk/fhir/ValueSet/discharge-destination";
    /// KL Common's required bindings of the FSIII condition codes (KLCommonCareSocialCondition),
    /// beside ours. (An intervention outside KL's FSIII value set claims only our profile.)
    pub const KL_CONDITIONS: &str = "http://fhir.kl.dk/core/ValueSet/KLConditionCodesFSIII";
    pub const KL_SEVERITIES: &str = "http://fhir.kl.dk/core/ValueSet/KLSeverities";
}

/// `Ok` when the resources `to_fhir::to_bundle(rec, terms)` produces are known to validate
/// without errors; otherwise the first value that needs the full validator, said for a person.
pub fn check(rec: &CareRecord, terms: &Terminology) -> Result<(), String> {
    let mut c = Checker {
        terms,
        known: Vec::new(),
    };
    let m = &rec.municipality;
    c.text(
        "uri",
        &vocab::record_system(&m.code),
        "the record's identifier system",
    )?;
    c.text(
        "uri",
        &vocab::part_system(&m.code, &rec.record_id),
        "the parts' identifier system",
    )?;
    c.text("string", &rec.record_id, "recordId")?;
    c.positive_int(rec.record_version, "recordVersion")?;
    c.text("string", &m.code, "municipality.code")?;
    // The Organization's dk-core municipality-code identifier (a required binding).
    c.coded(
        vocab::vs::MUNICIPALITIES,
        None,
        &m.code,
        "municipality.code",
    )?;
    c.text("string", &m.name, "municipality.name")?;
    c.sor(&m.sor, "municipality.sor")?;

    let p = &rec.citizen;
    c.text("string", p.cpr.as_str(), "citizen.cpr")?;
    if let Some(given) = &p.given_names {
        if given.is_empty() {
            return Err("citizen.givenNames is an empty list".into());
        }
        for g in given {
            c.text("string", g, "citizen.givenNames[]")?;
        }
    }
    c.opt("string", p.family_name.as_deref(), "citizen.familyName")?;
    c.opt("date", p.birth_date.as_deref(), "citizen.birthDate")?;

    let course = &rec.course;
    c.coded(
        bound::COURSE_KIND,
        Some(cs::COURSE_KIND),
        &course.kind,
        "course.kind",
    )?;
    c.coded(
        bound::LEGAL_BASIS,
        Some(cs::LEGAL_BASIS),
        &course.legal_basis,
        "course.legalBasis",
    )?;
    c.coded(bound::PHASE, None, &course.phase, "course.phase")?;
    c.period(
        &course.period.start,
        course.period.end.as_deref(),
        "course.period",
    )?;
    // sb-cp-1: a running plan has no end.
    let status =
        vocab::forward(vocab::CARE_PLAN_STATUS, course.status.as_str()).unwrap_or("unknown");
    if matches!(status, "active" | "on-hold" | "draft") && course.period.end.is_some() {
        return Err(format!("a course with status {} has an end", course.status));
    }
    if let Some(stay) = &course.stay {
        c.text("string", &stay.unit.name, "course.stay.unit.name")?;
        c.sor(&stay.unit.sor, "course.stay.unit.sor")?;
        if let Some(from) = &stay.admitted_from {
            c.coded(
                bound::ADMISSION_SOURCE,
                Some(cs::ADMISSION_SOURCE),
                &from.kind,
                "course.stay.admittedFrom.kind",
            )?;
            c.opt(
                "string",
                from.name.as_deref(),
                "course.stay.admittedFrom.name",
            )?;
            if let Some(sor) = &from.sor {
                c.sor(sor, "course.stay.admittedFrom.sor")?;
            }
        }
        c.period(
            &stay.admitted_at,
            stay.discharged_at.as_deref(),
            "course.stay",
        )?;
        c.opt(
            "dateTime",
            stay.ready_for_discharge_at.as_deref(),
            "course.stay.readyForDischargeAt",
        )?;
        if let Some(d) = &stay.discharge_destination {
            c.coded(
                bound::DISCHARGE_DESTINATION,
                Some(cs::DISCHARGE_DESTINATION),
                d,
                "course.stay.dischargeDestination",
            )?;
        }
    }

    for x in &rec.conditions {
        c.text("string", &x.id, "conditions[].id")?;
        c.coded(
            vocab::vs::FSIII_CONDITIONS,
            Some(vocab::FSIII),
            &x.code,
            "conditions[].code",
        )?;
        c.coded(
            bound::KL_CONDITIONS,
            Some(vocab::FSIII),
            &x.code,
            "conditions[].code",
        )?;
        if let Some(s) = &x.severity {
            c.coded(
                vocab::vs::FSIII_SEVERITIES,
                Some(vocab::FSIII),
                s,
                "conditions[].severity",
            )?;
            c.coded(
                bound::KL_SEVERITIES,
                Some(vocab::FSIII),
                s,
                "conditions[].severity",
            )?;
        }
        c.opt("markdown", x.note.as_deref(), "conditions[].note")?;
    }
    for g in &rec.goals {
        c.text("string", &g.id, "goals[].id")?;
        c.opt("string", g.citizen_words.as_deref(), "goals[].citizenWords")?;
        c.text("string", &g.description, "goals[].description")?;
        if let Some(m) = &g.measure {
            c.text("string", &m.description, "goals[].measure.description")?;
            c.text("string", &m.unit, "goals[].measure.unit")?;
            c.decimal(&m.target, "goals[].measure.target")?;
            if let Some(b) = &m.baseline {
                c.decimal(b, "goals[].measure.baseline")?;
            }
        }
        c.opt("date", g.due.as_deref(), "goals[].due")?;
        c.coded(
            bound::DISCIPLINE,
            Some(cs::DISCIPLINE),
            &g.responsible_discipline,
            "goals[].responsibleDiscipline",
        )?;
        c.coded(
            bound::GOAL_STATUS,
            None,
            g.status.as_str(),
            "goals[].status",
        )?;
        c.coded(
            bound::GOAL_ACHIEVEMENT,
            Some(vocab::GOAL_ACHIEVEMENT),
            &g.achievement,
            "goals[].achievement",
        )?;
    }
    for i in &rec.interventions {
        c.text("string", &i.id, "interventions[].id")?;
        c.coded(
            vocab::vs::FSIII_INTERVENTIONS,
            Some(vocab::FSIII),
            &i.code,
            "interventions[].code",
        )?;

        c.coded(
            bound::DISCIPLINE,
            Some(cs::DISCIPLINE),
            &i.discipline,
            "interventions[].discipline",
        )?;
        if let Some(f) = &i.frequency {
            c.positive_int(f.count, "interventions[].frequency.count")?;
        }
        c.coded(
            bound::ACTIVITY_STATUS,
            None,
            i.status.as_str(),
            "interventions[].status",
        )?;
        c.opt("string", i.note.as_deref(), "interventions[].note")?;
    }
    let mut primary = 0;
    for s in &rec.care_team {
        c.text("string", &s.id, "careTeam[].id")?;
        c.text("string", &s.name, "careTeam[].name")?;
        c.coded(
            bound::DISCIPLINE,
            Some(cs::DISCIPLINE),
            &s.discipline,
            "careTeam[].discipline",
        )?;
        primary += usize::from(s.primary_contact);
    }
    // sb-ct-1
    if primary > 1 {
        return Err("more than one primary contact".into());
    }
    for m in &rec.meetings {
        c.text("string", &m.id, "meetings[].id")?;
        c.period(&m.start, m.end.as_deref(), "meetings[]")?;
        for d in &m.decisions {
            c.text("string", d, "meetings[].decisions[]")?;
        }
        for r in &m.goal_reviews {
            c.coded(
                bound::GOAL_ACHIEVEMENT,
                Some(vocab::GOAL_ACHIEVEMENT),
                &r.achievement,
                "meetings[].goalReviews[].achievement",
            )?;
            c.opt("string", r.note.as_deref(), "meetings[].goalReviews[].note")?;
        }
    }
    Ok(())
}

struct Checker<'a> {
    terms: &'a Terminology,
    /// Codes already found in their value set and code system: a record repeats the same
    /// disciplines, statuses and achievements many times, and each lookup costs several hash
    /// probes on long URLs.
    known: Vec<Coded<'a>>,
}

/// A code, its system and the value set it is bound to.
#[derive(Clone, Copy)]
struct Coded<'a> {
    vs: &'a str,
    system: Option<&'a str>,
    code: &'a str,
}

impl Coded<'_> {
    fn same(&self, other: &Coded<'_>) -> bool {
        // The value sets and systems are the mapping's constants: the same text at the same
        // address (`ptr::eq` compares address and length; a copy elsewhere only misses the
        // memo), so only the code's text is compared.
        std::ptr::eq(self.vs, other.vs)
            && match (self.system, other.system) {
                (Some(a), Some(b)) => std::ptr::eq(a, b),
                (None, None) => true,
                _ => false,
            }
            && self.code == other.code
    }
}

impl<'a> Checker<'a> {
    /// A value of primitive type `code` written as a JSON string.
    fn text(&self, code: &str, s: &str, at: &str) -> Result<(), String> {
        primitive::string_format(code, s).map_err(|e| format!("{at}: {e}"))
    }

    /// A SOR code as an Organization's identifier: dk-core's `SORIdentifier` wants at least 11
    /// digits (`min-digits-sor`); the record format allows 1 to 18.
    fn sor(&self, s: &str, at: &str) -> Result<(), String> {
        self.text("string", s, at)?;
        if s.len() >= 11 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(())
        } else {
            Err(format!(
                "{at}: a SOR code of fewer than 11 digits (dk-core)"
            ))
        }
    }

    fn opt(&self, code: &str, s: Option<&str>, at: &str) -> Result<(), String> {
        s.map_or(Ok(()), |s| self.text(code, s, at))
    }

    fn positive_int(&self, n: u32, at: &str) -> Result<(), String> {
        primitive::check("positiveInt", &Value::from(n)).map_err(|e| format!("{at}: {e}"))
    }

    fn decimal(&self, n: &serde_json::Number, at: &str) -> Result<(), String> {
        primitive::check("decimal", &Value::Number(n.clone())).map_err(|e| format!("{at}: {e}"))
    }

    /// A code as a `code` primitive, in the value set it is bound to and, for a coding, in its
    /// code system.
    fn coded(
        &mut self,
        vs: &'a str,
        system: Option<&'a str>,
        code: &'a str,
        at: &str,
    ) -> Result<(), String> {
        let this = Coded { vs, system, code };
        if self.known.iter().any(|k| k.same(&this)) {
            return Ok(());
        }
        self.text("code", code, at)?;
        if !self.terms.check_code(vs, system, code).is_member() {
            return Err(format!("{at}: '{code}' is not known to be in {vs}"));
        }
        if let Some(s) = system {
            if !self.terms.check_in_code_system(s, code).is_member() {
                return Err(format!("{at}: '{code}' is not known to be in {s}"));
            }
        }
        self.known.push(this);
        Ok(())
    }

    /// Two dateTimes of a Period: each valid, and the start not after the end (`per-1`, compared
    /// as FHIRPath compares them; an undecidable comparison counts as a problem).
    fn period(&self, start: &str, end: Option<&str>, at: &str) -> Result<(), String> {
        self.text("dateTime", start, at)?;
        let Some(end) = end else {
            return Ok(());
        };
        self.text("dateTime", end, at)?;
        let order = Temporal::parse_datetime(start)
            .zip(Temporal::parse_datetime(end))
            .and_then(|(s, e)| s.compare(&e));
        match order {
            Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal) => Ok(()),
            _ => Err(format!("{at}: {start} is not known to be before {end}")),
        }
    }
}
