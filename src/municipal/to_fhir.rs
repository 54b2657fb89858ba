//! Record → FHIR: one transaction Bundle holding everything the record says.
//!
//! Ids are decided here, not by the server: every part of a record gets a name-based UUID (v5)
//! from (municipality, record id, kind, local id), so posting a changed record updates the same
//! resources instead of creating new ones, and the Bundle is the same wherever it is made
//! (`sektorbro translate` prints exactly what the endpoint stores). Shared things are not
//! record-scoped: the citizen is a conditional update on the CPR identifier, organizations a
//! conditional create on their SOR code (a registry, not one record, owns their names; each
//! reference carries the name the record used as its `display`).

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::record::{CareRecord, Goal, Intervention, Meeting, Member, Stay};
use super::vocab::{self, cs, ext, profile};
use crate::validation::terminology::Terminology;

/// Part kinds, as they appear in the name a part's id is derived from.
pub mod kind {
    pub const CARE_PLAN: &str = "careplan";
    pub const PATIENT: &str = "patient";
    pub const CARE_TEAM: &str = "careteam";
    pub const STAY: &str = "stay";
    pub const CONDITION: &str = "condition";
    pub const GOAL: &str = "goal";
    pub const MEETING: &str = "meeting";
    pub const MEMBER: &str = "member";
}

/// The id of one part of a record.
pub fn part_id(municipality: &str, record_id: &str, kind: &str, local: &str) -> String {
    let name = format!(
        "{}/care-record/{municipality}/{record_id}/{kind}/{local}",
        vocab::BASE
    );
    Uuid::new_v5(&Uuid::NAMESPACE_URL, name.as_bytes()).to_string()
}

/// The `urn:uuid:` full URL of an organization, the same for every record naming that SOR code.
pub fn organization_url(sor: &str) -> String {
    let name = format!("{}/organization/sor/{sor}", vocab::BASE);
    format!(
        "urn:uuid:{}",
        Uuid::new_v5(&Uuid::NAMESPACE_URL, name.as_bytes())
    )
}

struct Ctx<'a> {
    rec: &'a CareRecord,
    terms: &'a Terminology,
    patient_url: String,
    parts: String,
}

impl Ctx<'_> {
    fn id(&self, kind: &str, local: &str) -> String {
        part_id(
            &self.rec.municipality.code,
            &self.rec.record_id,
            kind,
            local,
        )
    }

    fn reference(&self, rtype: &str, kind: &str, local: &str) -> Value {
        json!({"reference": format!("{rtype}/{}", self.id(kind, local))})
    }

    fn subject(&self) -> Value {
        json!({"reference": self.patient_url})
    }

    fn identifier(&self, local: &str) -> Value {
        json!([{"system": self.parts, "value": local}])
    }

    fn coding(&self, system: &str, code: &str) -> Value {
        let mut c = Map::new();
        c.insert("system".into(), json!(system));
        c.insert("code".into(), json!(code));
        if let Some(d) = self.terms.display(system, code) {
            c.insert("display".into(), json!(d));
        }
        Value::Object(c)
    }

    fn concept(&self, system: &str, code: &str) -> Value {
        json!({"coding": [self.coding(system, code)]})
    }
}

/// A reference to an organization by SOR code, with the name the record gives it.
fn organization_ref(sor: &str, name: Option<&str>) -> Value {
    let mut r = json!({
        "reference": organization_url(sor),
        "identifier": {"system": vocab::SOR, "value": sor},
    });
    if let Some(n) = name {
        r["display"] = json!(n);
    }
    r
}

fn put(rtype: &str, id: &str, resource: Value) -> Value {
    json!({
        "resource": resource,
        "request": {"method": "PUT", "url": format!("{rtype}/{id}")},
    })
}

/// The transaction Bundle for a record. Codes are expected to be known (the rules check that
/// first); an unknown one simply gets no display.
pub fn to_bundle(rec: &CareRecord, terms: &Terminology) -> Value {
    let cx = Ctx {
        rec,
        terms,
        patient_url: format!(
            "urn:uuid:{}",
            part_id(
                &rec.municipality.code,
                &rec.record_id,
                kind::PATIENT,
                "citizen"
            )
        ),
        parts: vocab::part_system(&rec.municipality.code, &rec.record_id),
    };
    let mut entries = vec![patient(&cx)];
    entries.extend(organizations(&cx));
    for m in &rec.care_team {
        entries.push(practitioner(&cx, m));
    }
    entries.push(care_team(&cx));
    for c in &rec.conditions {
        let id = cx.id(kind::CONDITION, &c.id);
        let mut r = json!({
            "resourceType": "Condition",
            "id": id,
            "meta": {"profile": [profile::CONDITION]},
            "identifier": cx.identifier(&c.id),
            "clinicalStatus": cx.concept(vocab::CONDITION_CLINICAL, "active"),
            "code": cx.concept(vocab::FSIII, &c.code),
            "subject": cx.subject(),
        });
        if let Some(s) = &c.severity {
            r["severity"] = cx.concept(vocab::FSIII, s);
        }
        if let Some(n) = &c.note {
            r["note"] = json!([{"text": n}]);
        }
        entries.push(put("Condition", &id, r));
    }
    for g in &rec.goals {
        entries.push(goal(&cx, g));
    }
    if let Some(stay) = &rec.course.stay {
        entries.push(stay_encounter(&cx, stay));
    }
    for m in &rec.meetings {
        entries.push(meeting(&cx, m));
    }
    entries.push(care_plan(&cx));
    json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": entries,
    })
}

fn patient(cx: &Ctx<'_>) -> Value {
    let c = &cx.rec.citizen;
    let mut p = json!({
        "resourceType": "Patient",
        "identifier": [{"system": vocab::CPR, "value": c.cpr}],
    });
    let mut name = Map::new();
    if let Some(f) = &c.family_name {
        name.insert("family".into(), json!(f));
    }
    if let Some(g) = &c.given_names {
        name.insert("given".into(), json!(g));
    }
    if !name.is_empty() {
        p["name"] = json!([name]);
    }
    if let Some(b) = &c.birth_date {
        p["birthDate"] = json!(b);
    }
    let criteria = format!("identifier={}|{}", vocab::CPR, c.cpr);
    // A record that names the citizen states what it knows; one with only a CPR must not erase
    // what another record (or the registry) filled in.
    let request = if name.is_empty() && c.birth_date.is_none() {
        json!({"method": "POST", "url": "Patient", "ifNoneExist": criteria})
    } else {
        json!({"method": "PUT", "url": format!("Patient?{criteria}")})
    };
    json!({"fullUrl": cx.patient_url, "resource": p, "request": request})
}

/// Conditional creates of the organizations the record names, one per SOR code.
fn organizations(cx: &Ctx<'_>) -> Vec<Value> {
    let rec = cx.rec;
    let mut orgs: Vec<(String, Value)> = Vec::new();
    let mut add = |sor: &str, r: Value| {
        if !orgs.iter().any(|(s, _)| s == sor) {
            orgs.push((sor.to_string(), r));
        }
    };
    let m = &rec.municipality;
    add(
        &m.sor,
        json!({
            "resourceType": "Organization",
            "identifier": [
                {"system": vocab::SOR, "value": m.sor},
                {"system": vocab::MUNICIPALITY_CODES, "value": m.code},
            ],
            "name": m.name,
        }),
    );
    if let Some(stay) = &rec.course.stay {
        add(
            &stay.unit.sor,
            json!({
                "resourceType": "Organization",
                "identifier": [{"system": vocab::SOR, "value": stay.unit.sor}],
                "name": stay.unit.name,
                "partOf": organization_ref(&m.sor, Some(&m.name)),
            }),
        );
        if let Some(from) = &stay.admitted_from {
            if let Some(sor) = &from.sor {
                let mut o = json!({
                    "resourceType": "Organization",
                    "identifier": [{"system": vocab::SOR, "value": sor}],
                });
                if let Some(n) = &from.name {
                    o["name"] = json!(n);
                }
                add(sor, o);
            }
        }
    }
    orgs.into_iter()
        .map(|(sor, r)| {
            json!({
                "fullUrl": organization_url(&sor),
                "resource": r,
                "request": {
                    "method": "POST",
                    "url": "Organization",
                    "ifNoneExist": format!("identifier={}|{sor}", vocab::SOR),
                },
            })
        })
        .collect()
}

fn practitioner(cx: &Ctx<'_>, m: &Member) -> Value {
    let id = cx.id(kind::MEMBER, &m.id);
    let r = json!({
        "resourceType": "Practitioner",
        "id": id,
        "identifier": cx.identifier(&m.id),
        "name": [{"text": m.name}],
    });
    put("Practitioner", &id, r)
}

fn member_ref(cx: &Ctx<'_>, local: &str) -> Value {
    let mut r = cx.reference("Practitioner", kind::MEMBER, local);
    if let Some(m) = cx.rec.care_team.iter().find(|m| m.id == local) {
        r["display"] = json!(m.name);
    }
    r
}

fn care_team(cx: &Ctx<'_>) -> Value {
    let rec = cx.rec;
    let id = cx.id(kind::CARE_TEAM, "team");
    let participants: Vec<Value> = rec
        .care_team
        .iter()
        .map(|m| {
            let mut p = json!({
                "id": m.id,
                "role": [cx.concept(cs::DISCIPLINE, &m.discipline)],
                "member": member_ref(cx, &m.id),
            });
            if m.primary_contact {
                p["extension"] = json!([{"url": ext::PRIMARY_CONTACT, "valueBoolean": true}]);
            }
            p
        })
        .collect();
    let status = match rec.course.status.as_str() {
        "completed" | "cancelled" => "inactive",
        "planned" => "proposed",
        "on-hold" => "suspended",
        _ => "active",
    };
    let mut r = json!({
        "resourceType": "CareTeam",
        "id": id,
        "meta": {"profile": [profile::CARE_TEAM]},
        "identifier": cx.identifier("team"),
        "status": status,
        "subject": cx.subject(),
        "managingOrganization": [organization_ref(&rec.municipality.sor, Some(&rec.municipality.name))],
    });
    if !participants.is_empty() {
        r["participant"] = json!(participants);
    }
    put("CareTeam", &id, r)
}

fn goal(cx: &Ctx<'_>, g: &Goal) -> Value {
    let id = cx.id(kind::GOAL, &g.id);
    let mut extension = Vec::new();
    if let Some(w) = &g.citizen_words {
        extension.push(json!({"url": ext::CITIZEN_WORDS, "valueString": w}));
    }
    if let Some(b) = g.measure.as_ref().and_then(|m| m.baseline.as_ref()) {
        let unit = g.measure.as_ref().map(|m| m.unit.as_str()).unwrap_or("");
        extension.push(json!({"url": ext::BASELINE, "valueQuantity": {"value": b, "unit": unit}}));
    }
    extension.push(json!({
        "url": ext::DISCIPLINE,
        "valueCodeableConcept": cx.concept(cs::DISCIPLINE, &g.responsible_discipline),
    }));
    let mut r = json!({
        "resourceType": "Goal",
        "id": id,
        "meta": {"profile": [profile::GOAL]},
        "extension": extension,
        "identifier": cx.identifier(&g.id),
        "lifecycleStatus": g.status,
        "achievementStatus": cx.concept(vocab::GOAL_ACHIEVEMENT, &g.achievement),
        "description": {"text": g.description},
        "subject": cx.subject(),
    });
    let mut target = Map::new();
    if let Some(m) = &g.measure {
        target.insert("measure".into(), json!({"text": m.description}));
        target.insert(
            "detailQuantity".into(),
            json!({"value": m.target, "unit": m.unit}),
        );
    }
    if let Some(d) = &g.due {
        target.insert("dueDate".into(), json!(d));
    }
    if !target.is_empty() {
        r["target"] = json!([target]);
    }
    if g.citizen_words.is_some() {
        r["expressedBy"] = cx.subject();
    }
    if !g.addresses.is_empty() {
        r["addresses"] = json!(g
            .addresses
            .iter()
            .map(|c| cx.reference("Condition", kind::CONDITION, c))
            .collect::<Vec<_>>());
    }
    put("Goal", &id, r)
}

fn stay_encounter(cx: &Ctx<'_>, stay: &Stay) -> Value {
    let id = cx.id(kind::STAY, "stay");
    let mut extension = Vec::new();
    if let Some(t) = &stay.ready_for_discharge_at {
        extension.push(json!({"url": ext::READY_FOR_DISCHARGE, "valueDateTime": t}));
    }
    let status = if stay.discharged_at.is_some() {
        "finished"
    } else if cx.rec.course.status == "planned" {
        "planned"
    } else if cx.rec.course.status == "cancelled" {
        "cancelled"
    } else {
        "in-progress"
    };
    let mut period = json!({"start": stay.admitted_at});
    if let Some(end) = &stay.discharged_at {
        period["end"] = json!(end);
    }
    let mut hospitalization = Map::new();
    if let Some(from) = &stay.admitted_from {
        let origin = match (&from.sor, &from.name) {
            (Some(sor), name) => Some(organization_ref(sor, name.as_deref())),
            (None, Some(name)) => Some(json!({"display": name})),
            (None, None) => None,
        };
        if let Some(o) = origin {
            hospitalization.insert("origin".into(), o);
        }
        hospitalization.insert(
            "admitSource".into(),
            json!({"coding": [
                cx.coding(vocab::ADMIT_SOURCE, vocab::admit_source(&from.kind)),
                cx.coding(cs::ADMISSION_SOURCE, &from.kind),
            ]}),
        );
    }
    if let Some(dest) = &stay.discharge_destination {
        hospitalization.insert(
            "dischargeDisposition".into(),
            json!({"coding": [
                cx.coding(vocab::DISCHARGE_DISPOSITION, vocab::discharge_disposition(dest)),
                cx.coding(cs::DISCHARGE_DESTINATION, dest),
            ]}),
        );
    }
    let mut r = json!({
        "resourceType": "Encounter",
        "id": id,
        "meta": {"profile": [profile::STAY]},
        "identifier": cx.identifier("stay"),
        "status": status,
        "class": cx.coding(vocab::ACT_CODE, "SS"),
        "type": [cx.concept(cs::ENCOUNTER_TYPE, "temporary-stay")],
        "subject": cx.subject(),
        "period": period,
        "serviceProvider": organization_ref(&stay.unit.sor, Some(&stay.unit.name)),
    });
    if !extension.is_empty() {
        r["extension"] = json!(extension);
    }
    if !hospitalization.is_empty() {
        r["hospitalization"] = Value::Object(hospitalization);
    }
    put("Encounter", &id, r)
}

fn meeting(cx: &Ctx<'_>, m: &Meeting) -> Value {
    let id = cx.id(kind::MEETING, &m.id);
    let mut extension = vec![
        json!({"url": ext::CITIZEN_PRESENT, "valueBoolean": m.citizen_present}),
        json!({"url": ext::RELATIVES_PRESENT, "valueBoolean": m.relatives_present}),
    ];
    for d in &m.decisions {
        extension.push(json!({"url": ext::DECISION, "valueString": d}));
    }
    for review in &m.goal_reviews {
        let mut parts = vec![
            json!({"url": "goal", "valueReference": cx.reference("Goal", kind::GOAL, &review.goal)}),
            json!({"url": "achievement", "valueCodeableConcept": cx.concept(vocab::GOAL_ACHIEVEMENT, &review.achievement)}),
        ];
        if let Some(n) = &review.note {
            parts.push(json!({"url": "note", "valueString": n}));
        }
        extension.push(json!({"url": ext::GOAL_REVIEW, "extension": parts}));
    }
    let mut period = json!({"start": m.start});
    if let Some(end) = &m.end {
        period["end"] = json!(end);
    }
    let rec = cx.rec;
    let mut r = json!({
        "resourceType": "Encounter",
        "id": id,
        "meta": {"profile": [profile::MEETING]},
        "extension": extension,
        "identifier": cx.identifier(&m.id),
        "status": if m.end.is_some() { "finished" } else { "planned" },
        "class": cx.coding(vocab::ACT_CODE, "AMB"),
        "type": [cx.concept(cs::ENCOUNTER_TYPE, "interdisciplinary-meeting")],
        "subject": cx.subject(),
        "period": period,
        "serviceProvider": organization_ref(&rec.municipality.sor, Some(&rec.municipality.name)),
    });
    if !m.participants.is_empty() {
        r["participant"] = json!(m
            .participants
            .iter()
            .map(|p| json!({"individual": member_ref(cx, p)}))
            .collect::<Vec<_>>());
    }
    if rec.course.stay.is_some() {
        r["partOf"] = cx.reference("Encounter", kind::STAY, "stay");
    }
    put("Encounter", &id, r)
}

fn activity(cx: &Ctx<'_>, i: &Intervention) -> Value {
    let mut detail = json!({
        "extension": [{
            "url": ext::DISCIPLINE,
            "valueCodeableConcept": cx.concept(cs::DISCIPLINE, &i.discipline),
        }],
        "code": cx.concept(vocab::FSIII, &i.code),
        "status": i.status,
    });
    if !i.goals.is_empty() {
        detail["goal"] = json!(i
            .goals
            .iter()
            .map(|g| cx.reference("Goal", kind::GOAL, g))
            .collect::<Vec<_>>());
    }
    if let Some(f) = &i.frequency {
        let unit = vocab::forward(vocab::PERIOD_UNIT, &f.per).unwrap_or("wk");
        detail["scheduledTiming"] =
            json!({"repeat": {"frequency": f.count, "period": 1, "periodUnit": unit}});
    }
    if let Some(n) = &i.note {
        detail["description"] = json!(n);
    }
    json!({"id": i.id, "detail": detail})
}

fn care_plan(cx: &Ctx<'_>) -> Value {
    let rec = cx.rec;
    let c = &rec.course;
    let id = cx.id(kind::CARE_PLAN, "plan");
    let mut period = json!({"start": c.period.start});
    if let Some(end) = &c.period.end {
        period["end"] = json!(end);
    }
    let mut r = json!({
        "resourceType": "CarePlan",
        "id": id,
        "meta": {"profile": [profile::CARE_PLAN]},
        "extension": [
            {"url": ext::PHASE, "valueCode": c.phase},
            {"url": ext::LEGAL_BASIS, "valueCodeableConcept": cx.concept(cs::LEGAL_BASIS, &c.legal_basis)},
            {"url": ext::RECORD_VERSION, "valuePositiveInt": rec.record_version},
        ],
        "identifier": [{"system": vocab::record_system(&rec.municipality.code), "value": rec.record_id}],
        "status": vocab::forward(vocab::CARE_PLAN_STATUS, &c.status).unwrap_or("unknown"),
        "intent": "plan",
        "category": [cx.concept(cs::COURSE_KIND, &c.kind)],
        "subject": cx.subject(),
        "period": period,
        "author": organization_ref(&rec.municipality.sor, Some(&rec.municipality.name)),
        "careTeam": [cx.reference("CareTeam", kind::CARE_TEAM, "team")],
    });
    if c.stay.is_some() {
        r["encounter"] = cx.reference("Encounter", kind::STAY, "stay");
    }
    let refs = |rtype: &str, k: &str, ids: &mut dyn Iterator<Item = &String>| -> Vec<Value> {
        ids.map(|l| cx.reference(rtype, k, l)).collect()
    };
    let addresses = refs(
        "Condition",
        kind::CONDITION,
        &mut rec.conditions.iter().map(|c| &c.id),
    );
    if !addresses.is_empty() {
        r["addresses"] = json!(addresses);
    }
    let meetings = refs(
        "Encounter",
        kind::MEETING,
        &mut rec.meetings.iter().map(|m| &m.id),
    );
    if !meetings.is_empty() {
        r["supportingInfo"] = json!(meetings);
    }
    let goals = refs("Goal", kind::GOAL, &mut rec.goals.iter().map(|g| &g.id));
    if !goals.is_empty() {
        r["goal"] = json!(goals);
    }
    if !rec.interventions.is_empty() {
        r["activity"] = json!(rec
            .interventions
            .iter()
            .map(|i| activity(cx, i))
            .collect::<Vec<_>>());
    }
    put("CarePlan", &id, r)
}
