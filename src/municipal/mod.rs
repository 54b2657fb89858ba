//! Municipal care records ↔ FHIR.
//!
//! - [`record`]: the v1 record as Rust types (the JSON Schema in `profiles/municipal/` is the
//!   published contract).
//! - [`check`]: schema (400) then rules (422), every problem with its JSON path.
//! - [`to_fhir`] / [`from_fhir`]: the mapping, pure functions, inverse of each other.
//! - this file: storing a record (one transaction, idempotent on municipality + record id,
//!   ordered by the source's record version), rebuilding it, and the `translate` command.

pub mod check;
pub mod conforms;
pub mod from_fhir;
pub mod precheck;
pub mod record;
pub mod to_fhir;
pub mod vocab;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::ExitCode;

use serde::Deserialize;
use serde_json::{json, Value};

use self::record::CareRecord;
use self::to_fhir::{kind, part_id};
use crate::engine::{Access, Answer, Checks, Engine, Transaction};
use crate::error::FhirError;
use fhir_core::fhir::outcome::{operation_outcome, Issue, Severity};
use fhir_core::fhir::ResourceType;
use fhir_core::validation::terminology::Terminology;
use fhir_core::validation::Validator;

/// How deep a v1 record nests, counted as the request limits count (`{}` is 1): the record,
/// `meetings`, a meeting, its `goalReviews`, a review.
pub const RECORD_DEPTH: usize = 5;

/// A record parsed straight from the posted bytes, when the JSON Schema certainly accepts it
/// ([`conforms`]): one parse, no `Value`, no schema validator. `None` for anything else: the
/// caller then parses the JSON and runs [`check_document`], whose answers are the schema's.
pub fn parse_conforming(bytes: &[u8]) -> Option<CareRecord> {
    fhir_core::fhir::from_json_bytes::<CareRecord>(bytes)
        .ok()
        .filter(conforms::conforms)
}

/// Check posted bytes: [`parse_conforming`] then the rules, or, when the record does not
/// certainly conform, the JSON parse and [`check_document`] (400 for what is not JSON).
pub fn check_bytes(
    bytes: &[u8],
    terms: &Terminology,
) -> Result<(CareRecord, Vec<Issue>), FhirError> {
    if let Some(rec) = parse_conforming(bytes) {
        return check_rules(rec, terms);
    }
    let doc: Value = fhir_core::fhir::json::parse_value(bytes)
        .map_err(|e| FhirError::bad_request(format!("the record is not valid JSON: {e}")))?;
    check_document(&doc, terms)
}

/// Check a posted document: 400 when it is not a v1 record, 422 when it breaks a rule. On
/// success, the record and the warnings found.
pub fn check_document(
    doc: &Value,
    terms: &Terminology,
) -> Result<(CareRecord, Vec<Issue>), FhirError> {
    let issues = check::schema(doc);
    if !issues.is_empty() {
        return Err(FhirError::new(400, issues));
    }
    // Straight from the parsed document, without copying it first.
    let rec = CareRecord::deserialize(doc).map_err(|e| {
        FhirError::bad_request(format!("the record does not match the v1 format: {e}"))
    })?;
    check_rules(rec, terms)
}

/// The rules of a record that has the schema's shape: 422 when it breaks one, otherwise the
/// record and the warnings found.
pub fn check_rules(
    rec: CareRecord,
    terms: &Terminology,
) -> Result<(CareRecord, Vec<Issue>), FhirError> {
    let issues = check::rules(&rec, terms);
    if fhir_core::validation::has_errors(&issues) {
        return Err(FhirError::new(422, issues));
    }
    Ok((rec, issues))
}

/// Translate a checked record and validate every resource of the Bundle against the base
/// definitions and the profiles it claims. Errors answer 422 (located in the Bundle); warnings
/// (narrative missing, preferred bindings) are not reported to the municipality, whose record
/// they are not about.
///
/// Validation runs only when the record holds a value the mapping cannot vouch for
/// ([`precheck`]); otherwise the resources are known to validate without errors, and the answer
/// is the same as [`validate_bundle`]'s (`tests/municipal.rs` checks that on generated records).
pub fn translate(rec: &CareRecord, validator: &Validator) -> Result<Value, FhirError> {
    let bundle = to_fhir::to_bundle(rec, &validator.terminology);
    if precheck::check(rec, &validator.terminology).is_ok() {
        return Ok(bundle);
    }
    validate_bundle(bundle, validator)
}

/// As [`translate`], the Bundle as JSON text, written without building it.
pub fn translate_text(rec: &CareRecord, validator: &Validator) -> Result<String, FhirError> {
    if precheck::check(rec, &validator.terminology).is_err() {
        validate_bundle(to_fhir::to_bundle(rec, &validator.terminology), validator)?;
    }
    Ok(to_fhir::write_bundle(rec, &validator.terminology))
}

/// Validate every resource of a translated Bundle with the full validator: the Bundle, or 422
/// with every error located in the Bundle.
pub fn validate_bundle(bundle: Value, validator: &Validator) -> Result<Value, FhirError> {
    let mut errors = Vec::new();
    for (i, e) in bundle
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(r) = e.get("resource") {
            errors.extend(
                validator
                    .validate(r, &[])
                    .into_iter()
                    .filter(|i| i.severity <= Severity::Error)
                    .map(|issue| issue.within(&format!("Bundle.entry[{i}].resource"))),
            );
        }
    }
    if errors.is_empty() {
        Ok(bundle)
    } else {
        Err(FhirError::new(422, errors))
    }
}

/// Fill the citizen's name and birth date from a patient registry's Patient where the record
/// gives none: what the municipality sent is never overwritten. Answers whether anything was
/// filled. The filled record is what is stored (and what GET returns), so posting the same
/// CPR-only record again compares equal.
pub fn fill_citizen(rec: &mut CareRecord, registry: &Value) -> bool {
    let c = &mut rec.citizen;
    let name = registry
        .get("name")
        .and_then(Value::as_array)
        .and_then(|names| {
            names
                .iter()
                .find(|n| n.get("use").and_then(Value::as_str) == Some("official"))
                .or_else(|| names.first())
        });
    let mut filled = false;
    if c.family_name.is_none() {
        if let Some(f) = name.and_then(|n| n.get("family")).and_then(Value::as_str) {
            c.family_name = Some(f.to_string());
            filled = true;
        }
    }
    if c.given_names.is_none() {
        let given: Vec<String> = name
            .and_then(|n| n.get("given"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|g| g.as_str().map(String::from))
            .collect();
        if !given.is_empty() {
            c.given_names = Some(given);
            filled = true;
        }
    }
    if c.birth_date.is_none() {
        if let Some(b) = registry.get("birthDate").and_then(Value::as_str) {
            c.birth_date = Some(b.to_string());
            filled = true;
        }
    }
    filled
}

/// What storing a record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Created,
    Updated,
    /// The same version with the same content was already stored; nothing was written.
    Unchanged,
}

impl Stored {
    pub fn as_str(self) -> &'static str {
        match self {
            Stored::Created => "created",
            Stored::Updated => "updated",
            Stored::Unchanged => "unchanged",
        }
    }
}

/// The answer to a stored record.
pub struct Posted {
    pub stored: Stored,
    pub record: CareRecord,
    /// `Type/id` of every resource the record is stored as (the CarePlan first).
    pub resources: Vec<String>,
    pub patient: Option<String>,
    pub warnings: Vec<Issue>,
    /// The transaction-response Bundle (JSON text, as the engine wrote it), when the
    /// transaction ran.
    pub bundle: Option<String>,
}

impl Posted {
    pub fn care_plan(&self) -> String {
        format!(
            "CarePlan/{}",
            part_id(
                &self.record.municipality.code,
                &self.record.record_id,
                kind::CARE_PLAN,
                "plan"
            )
        )
    }

    /// The JSON body the endpoint answers with (the response Bundle's text spliced in, not
    /// parsed again).
    pub fn into_body(self, answer: Answer) -> String {
        let care_plan = self.care_plan();
        let out = json!({
            "recordId": self.record.record_id,
            "municipality": self.record.municipality.code,
            "recordVersion": self.record.record_version,
            "result": self.stored.as_str(),
            "carePlan": care_plan,
            "patient": self.patient,
            "resources": self.resources,
            "outcome": operation_outcome(&self.warnings),
        });
        let mut text = out.to_string();
        if let (Answer::Representation, Some(bundle)) = (answer, self.bundle) {
            // `out` is an object: its closing brace makes room for one more member.
            text.pop();
            text.push_str(",\"bundle\":");
            text.push_str(&bundle);
            text.push('}');
        }
        text
    }
}

/// The record-scoped resources a record is stored as: type and id.
fn parts(rec: &CareRecord) -> Vec<(ResourceType, String)> {
    let id = |k: &str, l: &str| part_id(&rec.municipality.code, &rec.record_id, k, l);
    let mut out = vec![
        (ResourceType::CARE_PLAN, id(kind::CARE_PLAN, "plan")),
        (ResourceType::CARE_TEAM, id(kind::CARE_TEAM, "team")),
    ];
    if rec.course.stay.is_some() {
        out.push((ResourceType::ENCOUNTER, id(kind::STAY, "stay")));
    }
    out.extend(
        rec.care_team
            .iter()
            .map(|m| (ResourceType::PRACTITIONER, id(kind::MEMBER, &m.id))),
    );
    out.extend(
        rec.conditions
            .iter()
            .map(|c| (ResourceType::CONDITION, id(kind::CONDITION, &c.id))),
    );
    out.extend(
        rec.goals
            .iter()
            .map(|g| (ResourceType::GOAL, id(kind::GOAL, &g.id))),
    );
    out.extend(
        rec.meetings
            .iter()
            .map(|m| (ResourceType::ENCOUNTER, id(kind::MEETING, &m.id))),
    );
    out.push((ResourceType::GOAL, id(kind::PURPOSE, "purpose")));
    out.extend(
        rec.interventions
            .iter()
            .map(|i| (ResourceType::CARE_PLAN, id(kind::INTERVENTION, &i.id))),
    );
    out
}

/// How many resources the record maps to (bounded per request by `limits.max_bundle_entries`).
pub fn part_count(rec: &CareRecord) -> usize {
    parts(rec).len()
}

/// `Type/id` of each of [`parts`].
fn part_refs(parts: &[(ResourceType, String)]) -> Vec<String> {
    parts.iter().map(|(t, id)| format!("{t}/{id}")).collect()
}

/// Store a checked record: one transaction; a newer record version updates the same resources
/// (and deletes the parts it no longer has), the same version with the same content changes
/// nothing, an older version or the same version with other content is a 409.
pub async fn store(
    engine: &Engine,
    access: &Access,
    validator: &Validator,
    rec: CareRecord,
    warnings: Vec<Issue>,
    base: &str,
    answer: Answer,
) -> Result<Posted, FhirError> {
    let plan_id = part_id(
        &rec.municipality.code,
        &rec.record_id,
        kind::CARE_PLAN,
        "plan",
    );
    let existing = match engine.read(access, ResourceType::CARE_PLAN, &plan_id).await {
        Ok(r) => Some(r),
        Err(e) if e.status == 404 || e.status == 410 => None,
        Err(e) => return Err(e),
    };
    // When the record's values pass the precheck, the mapping vouches for the resources (see
    // `translate`) and the transaction skips validating them, unless the write policy asks for
    // more than our profiles. Otherwise, with validation enforced on write, the transaction
    // validates every entry (with the same validator); validating here as well would do the
    // work twice.
    let checks = match precheck::check(&rec, &validator.terminology) {
        Ok(()) => Checks::Vouched,
        Err(_) => Checks::Full,
    };
    let enforced = engine
        .validation()
        .is_some_and(|p| p.mode == crate::config::ValidationMode::Enforce);
    let new_parts = parts(&rec);
    let refs = part_refs(&new_parts);
    let mut bundle = to_fhir::to_bundle(&rec, &validator.terminology);
    if checks == Checks::Full && !enforced {
        bundle = validate_bundle(bundle, validator)?;
    }
    // The Bundle the mapping wrote, typed: the engine's input, added to below without going
    // back through JSON.
    let mut entries = Transaction::from_transaction_bundle(bundle)
        .map_err(|e| FhirError::internal(format!("the mapped Bundle is not a transaction: {e}")))?;
    let mut stored = Stored::Created;
    if let Some(head) = existing {
        let plan = stored_json(&head)?;
        let (old, patient) = load(engine, access, &plan).await.map_err(|e| {
            e.answer(|why| FhirError::conflict(format!(
                "record {} is stored, but its resources were changed outside this endpoint so it cannot be rebuilt ({why}); resolve that before posting it again",
                rec.record_id
            )))
        })?;
        if rec.record_version < old.record_version {
            return Err(FhirError::conflict(format!(
                "record {} version {} is older than the stored version {}",
                rec.record_id, rec.record_version, old.record_version
            ))
            .at("$.recordVersion"));
        }
        if rec.record_version == old.record_version {
            if rec == old {
                return Ok(Posted {
                    stored: Stored::Unchanged,
                    resources: refs,
                    record: rec,
                    patient,
                    warnings,
                    bundle: None,
                });
            }
            return Err(FhirError::conflict(format!(
                "record {} version {} is already stored with other content; a changed record needs a higher recordVersion",
                rec.record_id, rec.record_version
            ))
            .at("$.recordVersion"));
        }
        // Parts the new version no longer has are deleted in the same transaction.
        // The CarePlan must still be the one read above: a concurrent post of the same record
        // makes one of the two fail with 412 instead of interleaving.
        if !entries.require_version(ResourceType::CARE_PLAN, &plan_id, head.version) {
            return Err(FhirError::internal(
                "the mapped Bundle does not write its CarePlan",
            ));
        }
        let keep: HashSet<&(ResourceType, String)> = new_parts.iter().collect();
        for (rtype, id) in parts(&old).iter().filter(|p| !keep.contains(p)) {
            entries.delete(*rtype, id);
        }
        stored = Stored::Updated;
    }
    // The report facts go in the same transaction, after the resources (docs/kl-gateway.md).
    let facts = crate::report::facts::Facts::of(&rec);
    let facts = crate::store::report_facts::FactsWrite {
        plan_id: plan_id.clone(),
        kind: facts.kind().as_str().to_string(),
        facts: facts.to_json(),
        if_stale_at: None,
    };
    let committed = engine
        .record_transaction(access, entries, base, answer, checks, Some(&facts))
        .await;
    let committed = committed.map_err(|e| {
        if e.status == 412 {
            FhirError::conflict(format!(
                "record {} was changed by another request while this one was stored; post it again",
                rec.record_id
            ))
        } else {
            e
        }
    })?;
    // The locations from the engine's typed result; the response Bundle's text goes into the
    // answer as it is.
    let locations: Vec<String> = committed.locations().collect();
    let patient = locations
        .iter()
        .find(|l| l.starts_with("Patient/"))
        .cloned();
    let mut resources = refs;
    for l in locations {
        if !resources.contains(&l) {
            resources.push(l);
        }
    }
    Ok(Posted {
        stored,
        record: rec,
        resources,
        patient,
        warnings,
        bundle: Some(committed.response),
    })
}

/// A stored resource's JSON.
pub(crate) fn stored_json(r: &crate::store::StoredResource) -> Result<Value, FhirError> {
    serde_json::from_str(r.content.as_deref().unwrap_or("{}"))
        .map_err(|e| FhirError::internal(format!("stored {}/{} is not JSON: {e}", r.rtype, r.id)))
}

/// The current version of the resource a `Type/id` reference names, as JSON.
pub(crate) async fn read_json(
    engine: &Engine,
    access: &Access,
    reference: &str,
) -> Result<Value, FhirError> {
    let (rtype, id) = reference
        .split_once('/')
        .ok_or_else(|| FhirError::internal(format!("{reference} is not a Type/id reference")))?;
    stored_json(
        &engine
            .read(access, Engine::resource_type(rtype)?, id)
            .await?,
    )
}

/// The references in `resource[key]`, whether it holds one Reference or a list of them.
pub(crate) fn references(resource: &Value, key: &str) -> Vec<String> {
    let one = |r: &Value| r.get("reference").and_then(Value::as_str).map(String::from);
    match resource.get(key) {
        Some(Value::Array(list)) => list.iter().filter_map(one).collect(),
        Some(r) => one(r).into_iter().collect(),
        None => Vec::new(),
    }
}

/// Rebuild a stored record from its CarePlan, reading the resources it refers to. Also returns
/// the Patient reference.
pub async fn load(
    engine: &Engine,
    access: &Access,
    plan: &Value,
) -> Result<(CareRecord, Option<String>), LoadError> {
    let refs: Vec<String> = [
        "subject",
        "encounter",
        "careTeam",
        "addresses",
        "goal",
        "supportingInfo",
    ]
    .into_iter()
    .flat_map(|key| references(plan, key))
    .collect();
    // A scope the caller lacks is its own to know and fix: a 403 naming every missing scope,
    // before anything is read, as every other interaction answers.
    let mut missing: Vec<Issue> = Vec::new();
    let mut types: Vec<&str> = refs.iter().filter_map(|r| r.split('/').next()).collect();
    types.sort_unstable();
    types.dedup();
    for rtype in types {
        if let Err(e) = access.permit(rtype, crate::auth::Permission::Read) {
            missing.extend(e.issues);
        }
    }
    if !missing.is_empty() {
        missing.push(Issue::information(
            "informational",
            "rebuilding a care record reads the CarePlan and every resource it is stored as",
        ));
        return Err(LoadError::Refused(FhirError::new(403, missing)));
    }
    let mut found: HashMap<String, Value> = HashMap::new();
    for r in refs {
        let v = read_json(engine, access, &r).await.map_err(|e| {
            LoadError::Broken(
                e.issues
                    .first()
                    .map(|i| i.diagnostics.clone())
                    .unwrap_or_else(|| format!("{r} cannot be read")),
            )
        })?;
        found.insert(r, v);
    }
    let get = |r: &str| found.get(r);
    let rec = from_fhir::from_fhir(plan, &get).map_err(LoadError::Broken)?;
    Ok((rec, references(plan, "subject").into_iter().next()))
}

/// Why a stored record could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The caller may not read a part of it (403, naming the scopes).
    Refused(FhirError),
    /// Its resources no longer make a record (a part missing or changed elsewhere).
    Broken(String),
}

impl LoadError {
    /// The refusal as it is, or `broken(why)` for a record that cannot be rebuilt.
    fn answer(self, broken: impl FnOnce(String) -> FhirError) -> FhirError {
        match self {
            LoadError::Refused(e) => e,
            LoadError::Broken(why) => broken(why),
        }
    }
}

/// `GET /municipal/v1/care-records/{id}`: the record rebuilt from what is stored. Without the
/// municipality, the record id must be unique across municipalities.
pub async fn fetch(
    engine: &Engine,
    access: &Access,
    record_id: &str,
    municipality: Option<&str>,
    base: &str,
) -> Result<CareRecord, FhirError> {
    let plan: Value = match municipality {
        Some(m) => {
            let r = engine
                .read(
                    access,
                    ResourceType::CARE_PLAN,
                    &part_id(m, record_id, kind::CARE_PLAN, "plan"),
                )
                .await
                .map_err(|e| match e.status {
                    404 | 410 => FhirError::not_found(format!(
                        "municipality {m} has no care record {record_id}"
                    )),
                    _ => e,
                })?;
            stored_json(&r)?
        }
        None => {
            let q = engine.parse_pairs(
                ResourceType::CARE_PLAN,
                &[("identifier".to_string(), record_id.to_string())],
                false,
            )?;
            let page: Value = serde_json::from_str(&engine.search(access, &q, base).await?)
                .map_err(|e| FhirError::internal(format!("search page is not JSON: {e}")))?;
            let prefix = format!("{}/NamingSystem/care-record/", vocab::BASE);
            let mut plans: Vec<Value> = page
                .get("entry")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|e| e.get("resource").cloned())
                .filter(|p| {
                    p.get("identifier")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .any(|i| {
                            i.get("system")
                                .and_then(Value::as_str)
                                .is_some_and(|s| s.starts_with(&prefix))
                                && i.get("value").and_then(Value::as_str) == Some(record_id)
                        })
                })
                .collect();
            match plans.len() {
                0 => {
                    return Err(FhirError::not_found(format!(
                        "no care record {record_id} is stored"
                    )))
                }
                1 => plans.remove(0),
                n => {
                    return Err(FhirError::bad_request(format!(
                        "{n} municipalities have a care record {record_id}; say which with ?municipality=CODE"
                    ))
                    .at("municipality"))
                }
            }
        }
    };
    load(engine, access, &plan)
        .await
        .map(|(rec, _)| rec)
        .map_err(|e| {
            e.answer(|why| {
                FhirError::conflict(format!("the stored record cannot be rebuilt: {why}"))
            })
        })
}

/// `sektorbro translate [--reverse] FILE`.
pub fn translate_cli(file: &Path, reverse: bool) -> ExitCode {
    let text = if file.as_os_str() == "-" {
        let mut s = String::new();
        match std::io::Read::read_to_string(&mut std::io::stdin(), &mut s) {
            Ok(_) => Ok(s),
            Err(e) => Err(e),
        }
    } else {
        std::fs::read_to_string(file)
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let doc: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {} is not JSON: {e}", file.display());
            return ExitCode::from(1);
        }
    };
    let out = if reverse {
        from_fhir::from_bundle(&doc)
            .map_err(|e| vec![Issue::error("invalid", e)])
            .and_then(|rec| {
                serde_json::to_value(rec)
                    .map_err(|e| vec![Issue::error("exception", e.to_string())])
            })
    } else {
        let validator = match fhir_core::validation::Validator::shared_embedded() {
            Ok(v) => v,
            Err(e) => {
                eprintln!("error: loading the definitions: {e}");
                return ExitCode::from(2);
            }
        };
        match check_document(&doc, &validator.terminology) {
            Ok((rec, warnings)) => {
                for w in &warnings {
                    eprintln!("warning: {}", w.diagnostics);
                }
                translate(&rec, &validator).map_err(|e| e.issues)
            }
            Err(e) => Err(e.issues),
        }
    };
    match out {
        Ok(v) => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(issues) => {
            for i in issues {
                eprintln!(
                    "{}: {}{}",
                    i.severity.as_str(),
                    i.diagnostics,
                    i.expression.map(|x| format!(" [{x}]")).unwrap_or_default()
                );
            }
            ExitCode::from(1)
        }
    }
}
