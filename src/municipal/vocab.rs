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
    /// On a stored discharge summary: one warning the gateway gave its discharge note.
    pub const NOTE_WARNING: &str =
        "http://sektorbro.dk/fhir/StructureDefinition/discharge-note-warning";
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
    pub const PLANNED_INTERVENTION: &str =
        "http://sektorbro.dk/fhir/StructureDefinition/sektorbro-planned-intervention";
}

/// KL Common (`kl.dk.fhir.core`) and dk-core: the national profiles every produced resource
/// also claims, and the codes of KL's own code system the mapping uses.
pub mod kl {
    pub const CITIZEN: &str = "http://fhir.kl.dk/core/StructureDefinition/KLCommonCitizen";
    pub const ORGANIZATION: &str =
        "http://fhir.kl.dk/core/StructureDefinition/KLCommonOrganization";
    pub const PRACTITIONER: &str =
        "http://fhir.kl.dk/core/StructureDefinition/KLCommonPractitioner";
    pub const SERVICE_PERFORMER: &str =
        "http://fhir.kl.dk/core/StructureDefinition/KLCommonServicePerformer";
    pub const CARE_PLAN: &str =
        "http://fhir.kl.dk/core/StructureDefinition/KLCommonCareSocialCarePlan";
    pub const PLANNED_INTERVENTION: &str =
        "http://fhir.kl.dk/core/StructureDefinition/KLCommonCareSocialPlannedIntervention";
    pub const GOAL: &str = "http://fhir.kl.dk/core/StructureDefinition/KLCommonCareSocialGoal";
    pub const PURPOSE: &str =
        "http://fhir.kl.dk/core/StructureDefinition/KLCommonCareSocialPurpose";
    pub const CONDITION: &str =
        "http://fhir.kl.dk/core/StructureDefinition/KLCommonCareSocialCondition";
    /// The FSIII interventions a KL planned intervention may carry.
    pub const INTERVENTIONS: &str = "http://fhir.kl.dk/core/ValueSet/KLInterventionsFSIII";
    pub const ENCOUNTER: &str =
        "http://fhir.kl.dk/core/StructureDefinition/KLCommonCareSocialEncounter";

    /// KL's code system for care and social work (kl-term).
    pub const CODES: &str = "http://fhir.kl.dk/term/CodeSystem/CareSocialCodes";
    /// Goal category (KLGoalTypeCodes) "Indsatsformål": the purpose of the course.
    pub const PURPOSE_GOAL: &str = "424827b1-23aa-4848-962b-56ee47def560";
    /// Goal category "FSIII tilstandsmål": a goal for the state of FSIII conditions.
    pub const CONDITION_GOAL: &str = "ca552020-6ed1-4cdc-b0d4-32697f1f27ad";
    /// Encounter type (KLEncounterTypes) "udførelse af planlagt indsats": the temporary stay.
    pub const ENCOUNTER_PLANNED_INTERVENTION: &str = "784275f1-6822-4a88-b361-d958007d5253";
    /// Encounter type "opfølgning": the interdisciplinary follow-up meetings.
    pub const ENCOUNTER_FOLLOW_UP: &str = "9f03dfbb-7a97-45a5-94db-d4c3501714a9";
    /// CarePlan category (KLCarePlanCategoryCodes, extensible) "Kommunal genoptræning efter
    /// sygehusophold": courses under SUL § 140.
    pub const CATEGORY_REHABILITATION_AFTER_HOSPITAL: &str = "ddd2f670-5ec7-4f9c-9a2c-aee25cb133bf";
}

/// dk-core's profiles.
pub mod dk {
    pub const PATIENT: &str = "http://hl7.dk/fhir/core/StructureDefinition/dk-core-patient";
    pub const ORGANIZATION: &str =
        "http://hl7.dk/fhir/core/StructureDefinition/dk-core-organization";
    pub const PRACTITIONER: &str =
        "http://hl7.dk/fhir/core/StructureDefinition/dk-core-practitioner";
    pub const CONDITION: &str = "http://hl7.dk/fhir/core/StructureDefinition/dk-core-condition";
    pub const ENCOUNTER: &str = "http://hl7.dk/fhir/core/StructureDefinition/dk-core-encounter";
}

/// The KL CarePlan category of a course, by its legal basis (KL's value set is extensible: a
/// course none of its codes fits carries only our course kind).
pub fn kl_care_plan_category(legal_basis: &str) -> Option<&'static str> {
    match legal_basis {
        "sul-140" => Some(kl::CATEGORY_REHABILITATION_AFTER_HOSPITAL),
        _ => None,
    }
}

/// Whether an FSIII intervention code is one KL Common's planned interventions may carry (its
/// required binding `KLInterventionsFSIII`).
pub fn in_kl_scope(terms: &fhir_core::validation::terminology::Terminology, code: &str) -> bool {
    terms
        .check_code(kl::INTERVENTIONS, Some(FSIII), code)
        .is_member()
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

/// The identifier system of a municipality's discharge notes (their stored Compositions): value =
/// the note id.
pub fn note_system(municipality: &str) -> String {
    format!("{BASE}/NamingSystem/discharge-note/{municipality}")
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

/// Course status → the purpose Goal's `lifecycleStatus`.
pub const PURPOSE_STATUS: &[(&str, &str)] = &[
    ("planned", "proposed"),
    ("active", "active"),
    ("on-hold", "on-hold"),
    ("completed", "completed"),
    ("cancelled", "cancelled"),
];

/// Intervention status (`CarePlan.activity.detail.status`) → the planned intervention's
/// `CarePlan.status` (the exact status stays in the activity).
pub fn intervention_plan_status(status: &str) -> &'static str {
    match status {
        "on-hold" => "on-hold",
        "completed" => "completed",
        "cancelled" | "stopped" => "revoked",
        "entered-in-error" => "entered-in-error",
        "unknown" => "unknown",
        _ => "active",
    }
}

/// Frequency unit → `Timing.repeat.periodUnit` (and back).
pub const PERIOD_UNIT: &[(&str, &str)] = &[("day", "d"), ("week", "wk"), ("month", "mo")];

/// Look a pair up in either direction.
pub fn forward(table: &[(&'static str, &'static str)], key: &str) -> Option<&'static str> {
    table.iter().find(|(a, _)| *a == key).map(|(_, b)| *b)
}

pub fn backward(table: &[(&'static str, &'static str)], key: &str) -> Option<&'static str> {
    table.iter().find(|(_, b)| *b == key).map(|(a, _)| *a)
}
