//! FHIR → record: rebuild the municipal record from the resources [`super::to_fhir`] made.
//!
//! The course's CarePlan is the root; everything else is reached through its references
//! (`subject`, `careTeam`, `addresses`, `goal`, `encounter`, `supportingInfo`: the meetings and
//! the planned-intervention CarePlans; the purpose Goal is derived and skipped), and each part's local id is
//! its identifier in the record's part system. Names of organizations come from the references'
//! `display` and `identifier`, which hold what the record said. The mapping is the inverse of
//! `to_fhir` field for field; the property tests in `tests/municipal.rs` check that.

use std::collections::HashMap;

use serde_json::{Number, Value};

use super::record::*;
use super::vocab::{self, cs, ext, kl};

/// Finds a resource by the reference that names it (`Type/id`, or a Bundle's `urn:uuid:`).
pub type Resolve<'a> = dyn Fn(&str) -> Option<&'a Value> + 'a;

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(String::from)
}

fn arr<'v>(v: &'v Value, key: &str) -> &'v [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn reference(v: &Value) -> Option<&str> {
    v.get("reference").and_then(Value::as_str)
}

/// The code of the first coding of `system` in a CodeableConcept.
fn code_in(concept: Option<&Value>, system: &str) -> Option<String> {
    arr(concept?, "coding")
        .iter()
        .find(|c| c.get("system").and_then(Value::as_str) == Some(system))
        .and_then(|c| s(c, "code"))
}

fn extensions<'v>(v: &'v Value, url: &str) -> Vec<&'v Value> {
    arr(v, "extension")
        .iter()
        .filter(|e| e.get("url").and_then(Value::as_str) == Some(url))
        .collect()
}

fn extension<'v>(v: &'v Value, url: &str) -> Option<&'v Value> {
    arr(v, "extension")
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(url))
}

/// The local id of a part: its identifier in the record's part system.
pub fn part_local_id<'v>(v: &'v Value, parts: &str) -> Option<&'v str> {
    arr(v, "identifier")
        .iter()
        .find(|i| i.get("system").and_then(Value::as_str) == Some(parts))?
        .get("value")?
        .as_str()
}

fn local_id(v: &Value, parts: &str) -> Result<String, String> {
    part_local_id(v, parts).map(String::from).ok_or_else(|| {
        format!(
            "{}/{} has no identifier in {parts}",
            s(v, "resourceType").unwrap_or_default(),
            s(v, "id").unwrap_or_default()
        )
    })
}

fn number(v: Option<&Value>) -> Option<Number> {
    match v {
        Some(Value::Number(n)) => Some(n.clone()),
        _ => None,
    }
}

struct Rebuild<'a> {
    get: &'a Resolve<'a>,
    parts: String,
}

impl<'a> Rebuild<'a> {
    fn fetch(&self, reference: &str) -> Result<&'a Value, String> {
        (self.get)(reference).ok_or_else(|| format!("{reference} is missing"))
    }

    /// Resolve each reference in `refs` and map it to the part's local id.
    fn ids(&self, refs: &[Value], by_ref: &HashMap<String, String>) -> Result<Vec<String>, String> {
        refs.iter()
            .map(|r| {
                let target = reference(r).unwrap_or_default();
                by_ref
                    .get(target)
                    .cloned()
                    .ok_or_else(|| format!("{target} is not part of the record"))
            })
            .collect()
    }
}

/// Rebuild the record whose CarePlan is `plan`.
pub fn from_fhir<'a>(plan: &'a Value, get: &'a Resolve<'a>) -> Result<CareRecord, String> {
    let (record_system, record_id) = arr(plan, "identifier")
        .iter()
        .find_map(|i| {
            let system = i.get("system")?.as_str()?;
            let prefix = format!("{}/NamingSystem/care-record/", vocab::BASE);
            system.strip_prefix(&prefix)?;
            Some((system.to_string(), s(i, "value")?))
        })
        .ok_or("the CarePlan is not a municipal care record (no record identifier)")?;
    let municipality_code = record_system
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let rb = Rebuild {
        get,
        parts: vocab::part_system(&municipality_code, &record_id),
    };
    let author = plan.get("author").ok_or("the CarePlan has no author")?;
    let municipality = Municipality {
        code: municipality_code,
        name: s(author, "display").ok_or("CarePlan.author has no display")?,
        sor: author
            .get("identifier")
            .and_then(|i| s(i, "value"))
            .ok_or("CarePlan.author has no SOR identifier")?,
    };
    let record_version = extension(plan, ext::RECORD_VERSION)
        .and_then(|e| e.get("valuePositiveInt"))
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or("the CarePlan has no record version")?;

    let patient = rb.fetch(
        plan.get("subject")
            .and_then(reference)
            .ok_or("the CarePlan has no subject")?,
    )?;
    let citizen = citizen(patient)?;

    // Parts, and maps from their references to their local ids.
    let conditions_src: Vec<&Value> = arr(plan, "addresses")
        .iter()
        .map(|r| rb.fetch(reference(r).unwrap_or_default()))
        .collect::<Result<_, _>>()?;
    // The record's goals: not the course's purpose, which the mapping derives.
    let mut goal_refs: Vec<&str> = Vec::new();
    let mut goals_src: Vec<&Value> = Vec::new();
    for r in arr(plan, "goal") {
        let target = reference(r).unwrap_or_default();
        let g = rb.fetch(target)?;
        let is_purpose = arr(g, "category")
            .iter()
            .any(|c| code_in(Some(c), kl::CODES).as_deref() == Some(kl::PURPOSE_GOAL));
        if !is_purpose {
            goal_refs.push(target);
            goals_src.push(g);
        }
    }
    let team = match arr(plan, "careTeam").first().and_then(reference) {
        Some(r) => Some(rb.fetch(r)?),
        None => None,
    };
    let mut condition_ids = HashMap::new();
    for (r, c) in arr(plan, "addresses").iter().zip(&conditions_src) {
        condition_ids.insert(
            reference(r).unwrap_or_default().to_string(),
            local_id(c, &rb.parts)?,
        );
    }
    let mut goal_ids = HashMap::new();
    for (r, g) in goal_refs.iter().zip(&goals_src) {
        goal_ids.insert(r.to_string(), local_id(g, &rb.parts)?);
    }
    let mut member_ids = HashMap::new();
    let mut care_team = Vec::new();
    for p in team.map(|t| arr(t, "participant")).unwrap_or(&[]) {
        let member = p
            .get("member")
            .ok_or("a CareTeam participant has no member")?;
        let id = s(p, "id").ok_or("a CareTeam participant has no id")?;
        member_ids.insert(
            reference(member).unwrap_or_default().to_string(),
            id.clone(),
        );
        care_team.push(Member {
            id,
            name: s(member, "display").ok_or("a CareTeam member has no display name")?,
            discipline: code_in(arr(p, "role").first(), cs::DISCIPLINE)
                .ok_or("a CareTeam participant has no discipline")?,
            primary_contact: extension(p, ext::PRIMARY_CONTACT)
                .and_then(|e| e.get("valueBoolean"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
        });
    }

    let conditions = conditions_src
        .iter()
        .map(|c| {
            Ok(Condition {
                id: local_id(c, &rb.parts)?,
                code: code_in(c.get("code"), vocab::FSIII)
                    .ok_or("a Condition has no FSIII code")?,
                severity: code_in(c.get("severity"), vocab::FSIII),
                note: arr(c, "note").first().and_then(|n| s(n, "text")),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let goals = goals_src
        .iter()
        .map(|g| goal(&rb, g, &condition_ids))
        .collect::<Result<Vec<_>, String>>()?;
    // `supportingInfo`: the meetings (Encounters) and the planned interventions (CarePlans).
    let mut interventions = Vec::new();
    let mut meetings = Vec::new();
    for r in arr(plan, "supportingInfo") {
        let target = reference(r).unwrap_or_default();
        let part = rb.fetch(target)?;
        if target.starts_with("CarePlan/") {
            interventions.push(intervention(&rb, part, &goal_ids)?);
        } else {
            meetings.push(meeting(&rb, part, &goal_ids, &member_ids)?);
        }
    }
    let stay = match plan.get("encounter").and_then(reference) {
        Some(r) => Some(stay(rb.fetch(r)?)?),
        None => None,
    };
    let period = plan.get("period").ok_or("the CarePlan has no period")?;
    let status = s(plan, "status").unwrap_or_default();
    let course = Course {
        kind: code_in(arr(plan, "category").first(), cs::COURSE_KIND)
            .ok_or("the CarePlan has no course kind")?,
        legal_basis: extension(plan, ext::LEGAL_BASIS)
            .and_then(|e| code_in(e.get("valueCodeableConcept"), cs::LEGAL_BASIS))
            .ok_or("the CarePlan has no legal basis")?,
        phase: extension(plan, ext::PHASE)
            .and_then(|e| s(e, "valueCode"))
            .ok_or("the CarePlan has no phase")?,
        status: vocab::backward(vocab::CARE_PLAN_STATUS, &status)
            .and_then(CourseStatus::parse)
            .ok_or_else(|| format!("CarePlan.status {status:?} is not a course status"))?,
        period: Period {
            start: s(period, "start").ok_or("the CarePlan has no start")?,
            end: s(period, "end"),
        },
        stay,
    };
    Ok(CareRecord {
        format: FORMAT_V1.to_string(),
        record_id,
        record_version,
        municipality,
        citizen,
        course,
        conditions,
        goals,
        interventions,
        care_team,
        meetings,
    })
}

fn citizen(p: &Value) -> Result<Citizen, String> {
    let cpr = arr(p, "identifier")
        .iter()
        .find(|i| i.get("system").and_then(Value::as_str) == Some(vocab::CPR))
        .and_then(|i| s(i, "value"))
        .ok_or("the Patient has no CPR identifier")?;
    let cpr = Cpr::parse(&cpr).map_err(|e| format!("the Patient's CPR identifier {cpr:?}: {e}"))?;
    let name = arr(p, "name").first();
    Ok(Citizen {
        cpr,
        given_names: name.and_then(|n| {
            let given: Vec<String> = arr(n, "given")
                .iter()
                .filter_map(|g| g.as_str().map(String::from))
                .collect();
            (!given.is_empty()).then_some(given)
        }),
        family_name: name.and_then(|n| s(n, "family")),
        birth_date: s(p, "birthDate"),
    })
}

fn goal(
    rb: &Rebuild<'_>,
    g: &Value,
    condition_ids: &HashMap<String, String>,
) -> Result<Goal, String> {
    let target = arr(g, "target").first();
    let quantity = target.and_then(|t| t.get("detailQuantity"));
    let measure = match (target.and_then(|t| t.get("measure")), quantity) {
        (Some(m), Some(q)) => Some(Measure {
            description: s(m, "text").ok_or("Goal.target.measure has no text")?,
            baseline: extension(g, ext::BASELINE)
                .and_then(|e| number(e.get("valueQuantity").and_then(|q| q.get("value")))),
            target: number(q.get("value")).ok_or("Goal.target.detailQuantity has no value")?,
            unit: s(q, "unit").ok_or("Goal.target.detailQuantity has no unit")?,
        }),
        _ => None,
    };
    Ok(Goal {
        id: local_id(g, &rb.parts)?,
        citizen_words: extension(g, ext::CITIZEN_WORDS).and_then(|e| s(e, "valueString")),
        description: g
            .get("description")
            .and_then(|d| s(d, "text"))
            .ok_or("a Goal has no description text")?,
        measure,
        due: target.and_then(|t| s(t, "dueDate")),
        responsible_discipline: extension(g, ext::DISCIPLINE)
            .and_then(|e| code_in(e.get("valueCodeableConcept"), cs::DISCIPLINE))
            .ok_or("a Goal has no responsible discipline")?,
        status: {
            let status = s(g, "lifecycleStatus").ok_or("a Goal has no lifecycleStatus")?;
            GoalStatus::parse(&status)
                .ok_or_else(|| format!("Goal.lifecycleStatus {status:?} is not a goal status"))?
        },
        achievement: code_in(g.get("achievementStatus"), vocab::GOAL_ACHIEVEMENT)
            .ok_or("a Goal has no achievement status")?,
        addresses: rb.ids(arr(g, "addresses"), condition_ids)?,
    })
}

/// An intervention from its planned-intervention CarePlan (KL: one activity each).
fn intervention(
    rb: &Rebuild<'_>,
    plan: &Value,
    goal_ids: &HashMap<String, String>,
) -> Result<Intervention, String> {
    let a = arr(plan, "activity")
        .first()
        .ok_or("a planned intervention has no activity")?;
    let d = a.get("detail").ok_or("a CarePlan activity has no detail")?;
    let frequency = match d.get("scheduledTiming").and_then(|t| t.get("repeat")) {
        Some(r) => Some(Frequency {
            count: r
                .get("frequency")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or("an activity's timing has no frequency")?,
            per: vocab::backward(vocab::PERIOD_UNIT, &s(r, "periodUnit").unwrap_or_default())
                .ok_or("an activity's timing has an unknown period unit")?
                .to_string(),
        }),
        None => None,
    };
    Ok(Intervention {
        id: local_id(plan, &rb.parts)?,
        code: code_in(d.get("code"), vocab::FSIII).ok_or("an activity has no FSIII code")?,
        discipline: extension(d, ext::DISCIPLINE)
            .and_then(|e| code_in(e.get("valueCodeableConcept"), cs::DISCIPLINE))
            .ok_or("an activity has no discipline")?,
        frequency,
        goals: rb.ids(arr(d, "goal"), goal_ids)?,
        status: {
            let status = s(d, "status").ok_or("an activity has no status")?;
            InterventionStatus::parse(&status).ok_or_else(|| {
                format!("an activity's status {status:?} is not an intervention status")
            })?
        },
        note: s(d, "description"),
    })
}

fn meeting(
    rb: &Rebuild<'_>,
    m: &Value,
    goal_ids: &HashMap<String, String>,
    member_ids: &HashMap<String, String>,
) -> Result<Meeting, String> {
    let flag = |url: &str| {
        extension(m, url)
            .and_then(|e| e.get("valueBoolean"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let individuals: Vec<Value> = arr(m, "participant")
        .iter()
        .filter_map(|p| p.get("individual").cloned())
        .collect();
    let goal_reviews = extensions(m, ext::GOAL_REVIEW)
        .into_iter()
        .map(|e| {
            let part = |url: &str| extension(e, url);
            let goal_ref = part("goal")
                .and_then(|p| p.get("valueReference"))
                .and_then(reference)
                .unwrap_or_default();
            Ok(GoalReview {
                goal: goal_ids
                    .get(goal_ref)
                    .cloned()
                    .ok_or_else(|| format!("{goal_ref} is not part of the record"))?,
                achievement: part("achievement")
                    .and_then(|p| code_in(p.get("valueCodeableConcept"), vocab::GOAL_ACHIEVEMENT))
                    .ok_or("a goal review has no achievement")?,
                note: part("note").and_then(|p| s(p, "valueString")),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let period = m.get("period").ok_or("a meeting has no period")?;
    Ok(Meeting {
        id: local_id(m, &rb.parts)?,
        start: s(period, "start").ok_or("a meeting has no start")?,
        end: s(period, "end"),
        participants: rb.ids(&individuals, member_ids)?,
        citizen_present: flag(ext::CITIZEN_PRESENT),
        relatives_present: flag(ext::RELATIVES_PRESENT),
        decisions: extensions(m, ext::DECISION)
            .into_iter()
            .filter_map(|e| s(e, "valueString"))
            .collect(),
        goal_reviews,
    })
}

fn stay(e: &Value) -> Result<Stay, String> {
    let provider = e.get("serviceProvider").ok_or("the stay has no unit")?;
    let hosp = e.get("hospitalization");
    let admitted_from = match hosp.and_then(|h| h.get("admitSource")) {
        Some(src) => {
            let origin = hosp.and_then(|h| h.get("origin"));
            Some(AdmittedFrom {
                kind: code_in(Some(src), cs::ADMISSION_SOURCE)
                    .ok_or("the stay's admitSource has no admission-source code")?,
                name: origin.and_then(|o| s(o, "display")),
                sor: origin
                    .and_then(|o| o.get("identifier"))
                    .and_then(|i| s(i, "value")),
            })
        }
        None => None,
    };
    let period = e.get("period").ok_or("the stay has no period")?;
    Ok(Stay {
        unit: Unit {
            name: s(provider, "display").ok_or("the stay's unit has no name")?,
            sor: provider
                .get("identifier")
                .and_then(|i| s(i, "value"))
                .ok_or("the stay's unit has no SOR code")?,
        },
        admitted_from,
        admitted_at: s(period, "start").ok_or("the stay has no admission time")?,
        ready_for_discharge_at: extension(e, ext::READY_FOR_DISCHARGE)
            .and_then(|x| s(x, "valueDateTime")),
        discharged_at: s(period, "end"),
        discharge_destination: hosp
            .and_then(|h| code_in(h.get("dischargeDisposition"), cs::DISCHARGE_DESTINATION)),
    })
}

/// Index a Bundle's entries by `Type/id` and by `fullUrl`, for [`from_fhir`] over a Bundle.
pub fn index_bundle(bundle: &Value) -> HashMap<String, &Value> {
    let mut map = HashMap::new();
    for e in arr(bundle, "entry") {
        let Some(r) = e.get("resource") else { continue };
        if let Some(u) = e.get("fullUrl").and_then(Value::as_str) {
            map.insert(u.to_string(), r);
        }
        if let (Some(t), Some(id)) = (
            r.get("resourceType").and_then(Value::as_str),
            r.get("id").and_then(Value::as_str),
        ) {
            map.insert(format!("{t}/{id}"), r);
        }
    }
    map
}

/// The record in a Bundle made by `to_fhir` (or any Bundle holding the record's resources).
pub fn from_bundle(bundle: &Value) -> Result<CareRecord, String> {
    let map = index_bundle(bundle);
    // The course's CarePlan: the one not based on another (the planned interventions are).
    let plan = map
        .values()
        .find(|r| {
            r.get("resourceType").and_then(Value::as_str) == Some("CarePlan")
                && r.get("basedOn").is_none()
        })
        .copied()
        .ok_or("the Bundle holds no course CarePlan")?;
    let get = |r: &str| map.get(r).copied();
    from_fhir(plan, &get)
}
