//! KL Gateway delivery reports, built from typed municipal care records (pure: no I/O, no
//! clock, no FHIR shape of ours in between; see docs/kl-gateway.md for the field map).
//!
//! - §140 rehabilitation (`kl.dk.fhir.rehab` 2.2.0): one `klgateway-140-delivery-report` per
//!   citizen, for the courses whose legal basis is `sul-140`.
//! - FSIII care (`kl.dk.fhir.gateway` 1.2.0): one `klgateway-care-delivery-report` per citizen,
//!   for every other course.
//!
//! A delivery report holds exactly one citizen, so several citizens' reports travel in the IG's
//! envelope, the `klgateway-*-incremental-delivery` Bundle ("all delivery reports made since the
//! last update"). The full report is that envelope with every citizen; the incremental one has
//! the citizens whose records changed since an instant (each with all of its courses, because a
//! citizen's report replaces the previous one). [`Envelope`] writes it piece by piece, so a caller
//! can stream it and hold one citizen's report at a time.
//!
//! What the IG cannot take from a record is left out rather than guessed (codes outside the IG's
//! value sets, goals, meetings without the citizen); the two values the IG requires that a v1
//! record does not carry are fixed and documented (the delivery type of a §140 intervention:
//! individual; the status reason of a cancelled §140 course: an event ended it).

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::facts::{Condition, Facts, Intervention, Meeting};
use crate::municipal::record::CareRecord;
use crate::municipal::vocab;
use fhir_core::validation::terminology::Terminology;

const REHAB: &str = "http://fhir.kl.dk/rehab/StructureDefinition/";
const GATEWAY: &str = "http://fhir.kl.dk/gateway/StructureDefinition/";
const CARE_SOCIAL: &str = "http://fhir.kl.dk/term/CodeSystem/CareSocialCodes";
const CONDITION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/condition-category";
const CONDITION_VER_STATUS: &str = "http://terminology.hl7.org/CodeSystem/condition-ver-status";

/// Value sets the reports take codes from (the IGs' own, and KL's terminology).
pub mod vs {
    pub const CONDITIONS_140: &str = "http://fhir.kl.dk/rehab/ValueSet/Conditions140";
    pub const TRAINING_INTERVENTIONS: &str =
        "http://fhir.kl.dk/term/ValueSet/KLTrainingInterventionsFSIII";
    pub const CARE_CONDITIONS: &str = "http://fhir.kl.dk/gateway/ValueSet/FSIIICareConditions";
    pub const HOME_CARE_CONDITIONS: &str =
        "http://fhir.kl.dk/term/ValueSet/KLConditionCodesHomeCare";
    pub const NURSING_CONDITIONS: &str = "http://fhir.kl.dk/term/ValueSet/KLConditionCodesNursing";
    pub const CARE_INTERVENTIONS: &str =
        "http://fhir.kl.dk/gateway/ValueSet/FSIIICareInterventions";
    pub const SEVERITIES: &str = "http://fhir.kl.dk/term/ValueSet/KLSeveritiesFSIII";
}

/// KL CareSocialCodes the reports use.
mod code {
    /// CarePlanCategories140: "Interventionsforløb efter §140".
    pub const INTERVENTION_COURSE: &str = "f15b2663-94d9-4d0c-a5de-d8bd8e1e4ebb";
    /// CarePlanCategories140: "Opfølgningsforløb efter §140".
    pub const FOLLOW_UP_COURSE: &str = "4863001e-14c7-4be8-a2da-e4f21a4b6ac4";
    /// CancellationTypes (rehab): "Hændelse medfører ophør".
    pub const EVENT_ENDS_COURSE: &str = "82e99421-31da-4915-96ed-168ccfa1d20c";
    /// DeliveryTypes140: "Individuel indsats".
    pub const INDIVIDUAL: &str = "8d12d74c-17da-47a7-a4fe-e69dbaec0a8c";
    /// KLEncounterTypes: "opfølgning".
    pub const FOLLOW_UP: &str = "9f03dfbb-7a97-45a5-94db-d4c3501714a9";
}

/// §140 interventions that must be based on the course CarePlan (`klgateway-140-intervention-1`)
/// and those that must not (`-2`); the others may be, and are.
const MUST_BE_BASED_ON_COURSE: &[&str] = &[
    "7f825e3e-1a5c-4249-bf41-9f7171fb6b8a",
    "2abe20c7-c0b4-41c1-b397-52acf36499ef",
    "58293f63-00d7-4730-8dbc-c784d40f9e23",
    "2c661159-1bb3-4af2-bdf1-f3a9927a99e2",
    "8d714c98-f23a-4722-8a2f-85c162fe4840",
    "66fb32c9-ecc3-484b-be49-f20094be237c",
    "f8ac963c-6ec5-4ec5-bd90-a22fea4e2d16",
];
const MUST_NOT_BE_BASED_ON_COURSE: &[&str] = &[
    "1130ad70-6553-490d-87f8-5e8941687a0c",
    "ba3e17bd-d4aa-4848-acad-25adc8285c19",
];

/// Which report a course goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// §140 rehabilitation after hospital (`kl.dk.fhir.rehab`).
    Rehab140,
    /// FSIII care (`kl.dk.fhir.gateway`).
    Care,
}

impl Kind {
    /// `140` or `care`, as the CLI and the HTTP query name it.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "140" => Some(Kind::Rehab140),
            "care" => Some(Kind::Care),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Rehab140 => "140",
            Kind::Care => "care",
        }
    }

    /// Courses under SUL §140 go to the §140 report, every other course to the care report.
    pub fn of(rec: &CareRecord) -> Kind {
        Kind::of_legal_basis(&rec.course.legal_basis)
    }

    /// [`Kind::of`] a course with this legal basis.
    pub fn of_legal_basis(legal_basis: &str) -> Kind {
        if legal_basis == "sul-140" {
            Kind::Rehab140
        } else {
            Kind::Care
        }
    }

    /// The profile of one citizen's delivery report.
    pub fn report_profile(self) -> String {
        match self {
            Kind::Rehab140 => format!("{REHAB}klgateway-140-delivery-report"),
            Kind::Care => format!("{GATEWAY}klgateway-care-delivery-report"),
        }
    }

    /// The profile of the envelope that carries several citizens' reports.
    pub fn envelope_profile(self) -> String {
        match self {
            Kind::Rehab140 => format!("{REHAB}klgateway-140-incremental-delivery"),
            Kind::Care => format!("{GATEWAY}klgateway-care-incremental-delivery"),
        }
    }

    fn profile(self, name: &str) -> Value {
        let base = match self {
            Kind::Rehab140 => REHAB,
            Kind::Care => GATEWAY,
        };
        let prefix = match self {
            Kind::Rehab140 => "klgateway-140-",
            Kind::Care => "klgateway-care-",
        };
        json!({ "profile": [format!("{base}{prefix}{name}")] })
    }
}

/// Whether a code is in a value set: the reports keep only codes the IG accepts. Implemented by
/// the validator's terminology, so the IG packages stay the one source of truth.
pub trait Codes: Sync {
    fn contains(&self, value_set: &str, system: &str, code: &str) -> bool;
}

impl Codes for Terminology {
    fn contains(&self, value_set: &str, system: &str, code: &str) -> bool {
        self.check_code(value_set, Some(system), code).is_member()
    }
}

/// A name-based id: the same record part gets the same id in every report.
fn uuid(parts: &[&str]) -> String {
    let name = format!("{}/kl-gateway/{}", vocab::BASE, parts.join("/"));
    Uuid::new_v5(&Uuid::NAMESPACE_URL, name.as_bytes()).to_string()
}

fn urn(id: &str) -> String {
    format!("urn:uuid:{id}")
}

fn reference(id: &str) -> Value {
    json!({ "reference": urn(id) })
}

fn coding(system: &str, code: &str) -> Value {
    json!({ "coding": [{ "system": system, "code": code }] })
}

fn entry(resource: Value) -> Value {
    let id = resource
        .get("id")
        .and_then(Value::as_str)
        .map(urn)
        .unwrap_or_default();
    json!({ "fullUrl": id, "resource": resource })
}

/// Whether an RFC 3339 instant lies after another (unparseable: no).
fn after(a: &str, b: &str) -> bool {
    use fhir_core::fhir::datetime::full_date_time;
    match (full_date_time(a), full_date_time(b)) {
        (Some(a), Some(b)) => a > b,
        _ => false,
    }
}

/// The key a citizen's report is grouped by: the same citizen in the same municipality.
pub fn citizen_key(rec: &Facts) -> (String, String) {
    (rec.municipality.clone(), rec.cpr.clone())
}

/// The id of the delivery report of a citizen in a municipality (stable, so that a new report
/// replaces the previous one at KL Gateway).
pub fn report_id(kind: Kind, municipality: &str, cpr: &str) -> String {
    uuid(&[kind.as_str(), municipality, "citizen", cpr, "report"])
}

/// One citizen's delivery report, from the report facts of the citizen's records of `kind` (all
/// of the same municipality and CPR; records of the other kind are skipped). `timestamp` is the report's
/// time (RFC 3339); meetings ending after it are reported as planned.
pub fn citizen_report(
    kind: Kind,
    records: &[&Facts],
    codes: &dyn Codes,
    timestamp: &str,
) -> Option<Value> {
    let records: Vec<&Facts> = records
        .iter()
        .copied()
        .filter(|r| r.kind() == kind)
        .collect();
    let first = records.first()?;
    let municipality = &first.municipality;
    let cpr = &first.cpr;
    let mut b = Builder {
        kind,
        codes,
        timestamp,
        patient: uuid(&[kind.as_str(), municipality, "citizen", cpr]),
        entries: Vec::new(),
    };
    let deceased = records
        .iter()
        .any(|r| r.course.discharge_destination.as_deref() == Some("deceased"));
    b.entries.push(entry(json!({
        "resourceType": "Patient",
        "id": b.patient,
        "meta": kind.profile("citizen"),
        "identifier": [{ "use": "official", "system": vocab::CPR, "value": cpr }],
        "deceasedBoolean": deceased,
        "managingOrganization": {
            "identifier": { "use": "official", "system": vocab::SOR, "value": first.sor }
        },
    })));
    let mut organizations: Vec<String> = Vec::new();
    for rec in &records {
        match kind {
            Kind::Rehab140 => {
                let org = uuid(&["140", "organization", &rec.sor]);
                if !organizations.contains(&org) {
                    organizations.push(org.clone());
                    b.entries.push(entry(json!({
                        "resourceType": "Organization",
                        "id": org,
                        "meta": kind.profile("organization"),
                        "identifier": [{
                            "use": "official", "system": vocab::SOR, "value": rec.sor
                        }],
                    })));
                }
                b.rehab_course(rec, &org);
            }
            Kind::Care => b.care_course(rec),
        }
    }
    Some(json!({
        "resourceType": "Bundle",
        "id": report_id(kind, municipality, cpr),
        "meta": { "profile": [kind.report_profile()] },
        "type": "collection",
        "timestamp": timestamp,
        "entry": b.entries,
    }))
}

struct Builder<'a> {
    kind: Kind,
    codes: &'a dyn Codes,
    timestamp: &'a str,
    patient: String,
    entries: Vec<Value>,
}

/// The ids of one record's parts in a report.
struct Parts<'r> {
    kind: Kind,
    rec: &'r Facts,
}

impl Parts<'_> {
    fn id(&self, part: &str, local: &str) -> String {
        uuid(&[
            self.kind.as_str(),
            &self.rec.municipality,
            "record",
            &self.rec.record_id,
            part,
            local,
        ])
    }
}

impl Builder<'_> {
    /// The conditions of `rec` the report takes, with their ids.
    fn conditions<'r>(&self, rec: &'r Facts) -> Vec<(&'r Condition, String)> {
        let parts = Parts {
            kind: self.kind,
            rec,
        };
        rec.conditions
            .iter()
            .filter(|c| self.reports_condition(c))
            .map(|c| (c, parts.id("condition", &c.id)))
            .collect()
    }

    fn reports_condition(&self, c: &Condition) -> bool {
        let has = |vs: &str, code: &str| self.codes.contains(vs, vocab::FSIII, code);
        match self.kind {
            Kind::Rehab140 => has(vs::CONDITIONS_140, &c.code),
            // KL's rule: a home-care condition has a severity, a nursing condition has none.
            Kind::Care => {
                if has(vs::HOME_CARE_CONDITIONS, &c.code) {
                    c.severity
                        .as_deref()
                        .is_some_and(|s| has(vs::SEVERITIES, s))
                } else {
                    has(vs::NURSING_CONDITIONS, &c.code)
                }
            }
        }
    }

    /// The reported conditions an intervention is for: those its goals address.
    fn reasons(rec: &Facts, i: &Intervention, conditions: &[(&Condition, String)]) -> Vec<Value> {
        let mut out = Vec::new();
        for (c, id) in conditions {
            let addressed = rec
                .goals
                .iter()
                .filter(|g| i.goals.contains(&g.id))
                .any(|g| g.addresses.contains(&c.id));
            if addressed {
                out.push(reference(id));
            }
        }
        out
    }

    fn condition(&self, rec: &Facts, c: &Condition, id: &str) -> Value {
        let mut r = json!({
            "resourceType": "Condition",
            "id": id,
            "meta": self.kind.profile("condition"),
            "clinicalStatus": coding(vocab::CONDITION_CLINICAL, clinical_status(&rec.course.status)),
            "verificationStatus": coding(CONDITION_VER_STATUS, "confirmed"),
            "category": [coding(CONDITION_CATEGORY, "problem-list-item")],
            "code": coding(vocab::FSIII, &c.code),
            "subject": reference(&self.patient),
            "recordedDate": rec.course.start,
        });
        if self.kind == Kind::Care
            && self
                .codes
                .contains(vs::HOME_CARE_CONDITIONS, vocab::FSIII, &c.code)
        {
            if let Some(s) = &c.severity {
                r["severity"] = coding(vocab::FSIII, s);
            }
        }
        r
    }

    fn period(rec: &Facts) -> Value {
        let mut p = Map::new();
        p.insert("start".into(), json!(rec.course.start));
        if let Some(end) = &rec.course.end {
            p.insert("end".into(), json!(end));
        }
        Value::Object(p)
    }

    /// The encounters of a course: the meetings the citizen took part in (the only ones the
    /// facts keep), those with an end for §140.
    fn meetings<'r>(&self, rec: &'r Facts) -> impl Iterator<Item = &'r Meeting> {
        let needs_end = self.kind == Kind::Rehab140;
        rec.meetings
            .iter()
            .filter(move |m| !needs_end || m.end.is_some())
    }

    fn encounter(&self, rec: &Facts, m: &Meeting, id: &str, course: Option<&str>) -> Value {
        let mut period = Map::new();
        period.insert("start".into(), json!(m.start));
        if let Some(end) = &m.end {
            period.insert("end".into(), json!(end));
        }
        let finished = m.end.as_deref().unwrap_or(&m.start);
        let status = if after(finished, self.timestamp) {
            "planned"
        } else {
            "finished"
        };
        let class = match rec.course.kind.as_str() {
            "rehabilitation-home" | "home-care" => "HH",
            _ => "AMB",
        };
        let mut r = json!({
            "resourceType": "Encounter",
            "id": id,
            "status": status,
            "class": { "system": vocab::ACT_CODE, "code": class },
            "subject": reference(&self.patient),
            "period": period,
        });
        match self.kind {
            Kind::Rehab140 => {
                r["meta"] = self.kind.profile("encounter");
                if let Some(course) = course {
                    r["extension"] = json!([{
                        "url": format!("{REHAB}BasedOnCarePlanExtension"),
                        "valueReference": reference(course),
                    }]);
                }
            }
            Kind::Care => {
                r["meta"] = self.kind.profile("general-encounter");
                r["type"] = json!([coding(CARE_SOCIAL, code::FOLLOW_UP)]);
            }
        }
        r
    }

    fn rehab_course(&mut self, rec: &Facts, org: &str) {
        let parts = Parts {
            kind: self.kind,
            rec,
        };
        let course = parts.id("course", "plan");
        let conditions = self.conditions(rec);
        for (c, id) in &conditions {
            let r = self.condition(rec, c, id);
            self.entries.push(entry(r));
        }
        let category = if rec.course.phase == "follow-up" {
            code::FOLLOW_UP_COURSE
        } else {
            code::INTERVENTION_COURSE
        };
        let mut detail = json!({
            "status": course_activity_status(&rec.course.status),
            "performer": [reference(org)],
        });
        if rec.course.status == "cancelled" {
            detail["statusReason"] = coding(CARE_SOCIAL, code::EVENT_ENDS_COURSE);
        }
        self.entries.push(entry(json!({
            "resourceType": "CarePlan",
            "id": course,
            "meta": self.kind.profile("care-plan"),
            "status": plan_status(&rec.course.status),
            "intent": "plan",
            "category": [coding(CARE_SOCIAL, category)],
            "subject": reference(&self.patient),
            "period": Self::period(rec),
            "activity": [{ "detail": detail }],
        })));
        for i in &rec.interventions {
            if !self
                .codes
                .contains(vs::TRAINING_INTERVENTIONS, vocab::FSIII, &i.code)
            {
                continue;
            }
            let mut detail = json!({
                "extension": [{
                    "url": format!("{REHAB}DeliveryType"),
                    "valueCodeableConcept": coding(CARE_SOCIAL, code::INDIVIDUAL),
                }],
                "code": coding(vocab::FSIII, &i.code),
                "status": i.status,
                "performer": [reference(org)],
            });
            let reasons = Self::reasons(rec, i, &conditions);
            if !reasons.is_empty() {
                detail["reasonReference"] = json!(reasons);
            }
            let mut r = json!({
                "resourceType": "CarePlan",
                "id": parts.id("intervention", &i.id),
                "meta": self.kind.profile("planned-intervention"),
                "status": intervention_plan_status(&i.status),
                "intent": "plan",
                "subject": reference(&self.patient),
                "period": Self::period(rec),
                "activity": [{ "detail": detail }],
            });
            let based_on = MUST_BE_BASED_ON_COURSE.contains(&i.code.as_str())
                || !MUST_NOT_BE_BASED_ON_COURSE.contains(&i.code.as_str());
            if based_on {
                r["basedOn"] = json!([reference(&course)]);
            }
            self.entries.push(entry(r));
        }
        for m in self.meetings(rec) {
            let r = self.encounter(rec, m, &parts.id("meeting", &m.id), Some(&course));
            self.entries.push(entry(r));
        }
    }

    fn care_course(&mut self, rec: &Facts) {
        let parts = Parts {
            kind: self.kind,
            rec,
        };
        let conditions = self.conditions(rec);
        for (c, id) in &conditions {
            let r = self.condition(rec, c, id);
            self.entries.push(entry(r));
        }
        for i in &rec.interventions {
            if !self
                .codes
                .contains(vs::CARE_INTERVENTIONS, vocab::FSIII, &i.code)
            {
                continue;
            }
            let mut detail = json!({
                "code": coding(vocab::FSIII, &i.code),
                "status": i.status,
            });
            let reasons = Self::reasons(rec, i, &conditions);
            if !reasons.is_empty() {
                detail["reasonReference"] = json!(reasons);
            }
            self.entries.push(entry(json!({
                "resourceType": "CarePlan",
                "id": parts.id("intervention", &i.id),
                "meta": self.kind.profile("planned-intervention"),
                "status": intervention_plan_status(&i.status),
                "intent": "plan",
                "subject": reference(&self.patient),
                "period": Self::period(rec),
                "activity": [{ "detail": detail }],
            })));
        }
        for m in self.meetings(rec) {
            let r = self.encounter(rec, m, &parts.id("meeting", &m.id), None);
            self.entries.push(entry(r));
        }
    }
}

/// A course's conditions are active while the course runs.
fn clinical_status(course_status: &str) -> &'static str {
    match course_status {
        "completed" | "cancelled" => "inactive",
        _ => "active",
    }
}

/// Course status → `CarePlan.status` (as the municipal mapping does).
fn plan_status(course_status: &str) -> &'static str {
    vocab::forward(vocab::CARE_PLAN_STATUS, course_status).unwrap_or("unknown")
}

/// Course status → the course's `activity.detail.status`.
fn course_activity_status(course_status: &str) -> &'static str {
    match course_status {
        "planned" => "not-started",
        "active" => "in-progress",
        "on-hold" => "on-hold",
        "completed" => "completed",
        "cancelled" => "cancelled",
        _ => "unknown",
    }
}

/// Intervention status (already a `CarePlanActivityStatus` code) → the intervention CarePlan's
/// own status.
fn intervention_plan_status(status: &str) -> &'static str {
    match status {
        "not-started" | "scheduled" | "in-progress" => "active",
        "on-hold" => "on-hold",
        "completed" => "completed",
        "cancelled" | "stopped" => "revoked",
        _ => "unknown",
    }
}

/// The envelope (`klgateway-*-incremental-delivery`) written in pieces: [`Envelope::start`],
/// then [`Envelope::entry`] per citizen report, then [`Envelope::finish`]. Concatenated, the
/// pieces are one Bundle; none holds more than one citizen's report.
pub struct Envelope {
    kind: Kind,
    entries: usize,
}

impl Envelope {
    pub fn new(kind: Kind) -> Envelope {
        Envelope { kind, entries: 0 }
    }

    /// The Bundle up to its entries. `id` names this delivery, `timestamp` is when it was made.
    pub fn start(&self, id: &str, timestamp: &str) -> String {
        let head = json!({
            "resourceType": "Bundle",
            "id": id,
            "meta": { "profile": [self.kind.envelope_profile()] },
            "type": "collection",
            "timestamp": timestamp,
        })
        .to_string();
        // Drop the closing brace: the entries follow.
        head[..head.len() - 1].to_string()
    }

    /// One citizen's report as the next entry.
    pub fn entry(&mut self, report: &Value) -> String {
        let id = report.get("id").and_then(Value::as_str).unwrap_or_default();
        let sep = if self.entries == 0 {
            ",\"entry\":["
        } else {
            ","
        };
        self.entries += 1;
        format!(
            "{sep}{{\"fullUrl\":{},\"resource\":{report}}}",
            json!(urn(id))
        )
    }

    /// The end of the Bundle.
    pub fn finish(&self) -> &'static str {
        if self.entries == 0 {
            "}"
        } else {
            "]}"
        }
    }

    /// How many reports were written.
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

/// The whole envelope for `records` as one JSON text: one report per citizen of `kind`, in the
/// order each citizen first appears. For the CLI and tests; the HTTP endpoint streams instead.
pub fn delivery(
    kind: Kind,
    records: &[CareRecord],
    codes: &dyn Codes,
    id: &str,
    timestamp: &str,
) -> String {
    let facts: Vec<Facts> = records
        .iter()
        .filter(|r| Kind::of(r) == kind)
        .map(Facts::of)
        .collect();
    let mut citizens: Vec<((String, String), Vec<&Facts>)> = Vec::new();
    for r in &facts {
        let key = citizen_key(r);
        match citizens.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push(r),
            None => citizens.push((key, vec![r])),
        }
    }
    let mut env = Envelope::new(kind);
    let mut out = env.start(id, timestamp);
    for (_, list) in &citizens {
        if let Some(report) = citizen_report(kind, list, codes, timestamp) {
            out.push_str(&env.entry(&report));
        }
    }
    out.push_str(env.finish());
    out
}
