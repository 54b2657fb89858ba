//! Names the mapping shares with the profiles in `profiles/sektorbro/`: canonical URLs of our
//! extensions, code systems and profiles, identifier systems, and the fixed correspondences between
//! record codes and FHIR's own value sets. Display labels are not repeated here: they are read
//! from the CodeSystems the validator loaded, so the files stay the one source of truth.

/// Base of every canonical URL we publish.
pub const BASE: &str = "http://sektorbro.dk/fhir";

pub const CPR: &str = "urn:oid:1.2.208.176.1.2";
pub const SOR: &str = "urn:oid:1.2.208.176.1.1";
pub const FSIII: &str = "urn:oid:1.2.208.176.2.21";
pub const MUNICIPALITY_CODES: &str =
    "http://hl7.dk/fhir/core/CodeSystem/dk-core-municipality-codes";

pub const GOAL_ACHIEVEMENT: &str = "http://terminology.hl7.org/CodeSystem/goal-achievement";
pub const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
pub const ADMIT_SOURCE: &str = "http://terminology.hl7.org/CodeSystem/admit-source";
pub const DISCHARGE_DISPOSITION: &str =
    "http://terminology.hl7.org/CodeSystem/discharge-disposition";
pub const CONDITION_CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";

/// Our code systems, by their last path segment (`{BASE}/CodeSystem/{name}`).
pub mod cs {
    pub const COURSE_KIND: &str = "http://sektorbro.dk/fhir/CodeSystem/course-kind";
    pub const LEGAL_BASIS: &str = "http://sektorbro.dk/fhir/CodeSystem/legal-basis";
    pub const DISCIPLINE: &str = "http://sektorbro.dk/fhir/CodeSystem/discipline";
    pub const ADMISSION_SOURCE: &str = "http://sektorbro.dk/fhir/CodeSystem/admission-source";
    pub const DISCHARGE_DESTINATION: &str =
        "http://sektorbro.dk/fhir/CodeSystem/discharge-destination";
    pub const ENCOUNTER_TYPE: &str = "http://sektorbro.dk/fhir/CodeSystem/encounter-type";
}

/// Our extensions.
pub mod ext {
    pub const PHASE: &str = "http://sektorbro.dk/fhir/StructureDefinition/rehab-phase";
    pub const LEGAL_BASIS: &str = "http://sektorbro.dk/fhir/StructureDefinition/legal-basis";
    pub const RECORD_VERSION: &str = "http://sektorbro.dk/fhir/StructureDefinition/record-version";
    pub const CITIZEN_WORDS: &str =
        "http://sektorbro.dk/fhir/StructureDefinition/goal-citizen-words";
    pub const BASELINE: &str = "http://sektorbro.dk/fhir/StructureDefinition/goal-baseline";
    pub const DISCIPLINE: &str =
        "http://sektorbro.dk/fhir/StructureDefinition/responsible-discipline";
    pub const READY_FOR_DISCHARGE: &str =
        "http://sektorbro.dk/fhir/StructureDefinition/ready-for-discharge";
    pub const CITIZEN_PRESENT: &str =
        "http://sektorbro.dk/fhir/StructureDefinition/citizen-present";
    pub const RELATIVES_PRESENT: &str =
        "http://sektorbro.dk/fhir/StructureDefinition/relatives-present";
    pub const DECISION: &str = "http://sektorbro.dk/fhir/StructureDefinition/meeting-decision";
    pub const GOAL_REVIEW: &str = "http://sektorbro.dk/fhir/StructureDefinition/goal-review";
    pub const PRIMARY_CONTACT: &str =
        "http://sektorbro.dk/fhir/StructureDefinition/primary-contact";
}

/// Our profiles.
pub mod profile {
    pub const CARE_PLAN: &str = "http://sektorbro.dk/fhir/StructureDefinition/sektorbro-careplan";
    pub const GOAL: &str = "http://sektorbro.dk/fhir/StructureDefinition/sektorbro-smart-goal";
    pub const STAY: &str = "http://sektorbro.dk/fhir/StructureDefinition/sektorbro-temporary-stay";
    pub const MEETING: &str =
        "http://sektorbro.dk/fhir/StructureDefinition/sektorbro-rehabilitation-meeting";
    pub const CARE_TEAM: &str = "http://sektorbro.dk/fhir/StructureDefinition/sektorbro-careteam";
    pub const CONDITION: &str = "http://sektorbro.dk/fhir/StructureDefinition/sektorbro-condition";
}

/// Our value sets the rules check codes against.
pub mod vs {
    pub const FSIII_CONDITIONS: &str = "http://sektorbro.dk/fhir/ValueSet/fsiii-conditions";
    pub const FSIII_SEVERITIES: &str = "http://sektorbro.dk/fhir/ValueSet/fsiii-severities";
    pub const FSIII_INTERVENTIONS: &str = "http://sektorbro.dk/fhir/ValueSet/fsiii-interventions";
    pub const MUNICIPALITIES: &str = "http://hl7.dk/fhir/core/ValueSet/dk-core-MunicipalityCodes";
}

/// The identifier system of a municipality's records: value = record id.
pub fn record_system(municipality: &str) -> String {
    format!("{BASE}/NamingSystem/care-record/{municipality}")
}

/// The identifier system of the parts of one record: value = the part's local id.
pub fn part_system(municipality: &str, record_id: &str) -> String {
    format!("{BASE}/NamingSystem/care-record/{municipality}/{record_id}")
}

/// Record admission sources → FHIR `admit-source`.
pub fn admit_source(kind: &str) -> &'static str {
    match kind {
        "hospital" => "hosp-trans",
        "psychiatry" => "psych",
        "gp" => "gp",
        "nursing-home" => "nursing",
        _ => "other",
    }
}

/// Record discharge destinations → FHIR `discharge-disposition`.
pub fn discharge_disposition(destination: &str) -> &'static str {
    match destination {
        "home" => "home",
        "nursing-home" => "long",
        "hospital" => "hosp",
        "other-municipal-service" => "other-hcf",
        "deceased" => "exp",
        _ => "oth",
    }
}

/// Course status → `CarePlan.status` (and back).
pub const CARE_PLAN_STATUS: &[(&str, &str)] = &[
    ("planned", "draft"),
    ("active", "active"),
    ("on-hold", "on-hold"),
    ("completed", "completed"),
    ("cancelled", "revoked"),
];

/// Frequency unit → `Timing.repeat.periodUnit` (and back).
pub const PERIOD_UNIT: &[(&str, &str)] = &[("day", "d"), ("week", "wk"), ("month", "mo")];

/// Look a pair up in either direction.
pub fn forward(table: &[(&'static str, &'static str)], key: &str) -> Option<&'static str> {
    table.iter().find(|(a, _)| *a == key).map(|(_, b)| *b)
}

pub fn backward(table: &[(&'static str, &'static str)], key: &str) -> Option<&'static str> {
    table.iter().find(|(_, b)| *b == key).map(|(a, _)| *a)
}
