//! Record → FHIR: one transaction Bundle holding everything the record says.
//!
//! Ids are decided here, not by the server: every part of a record gets a name-based UUID (v5)
//! from (municipality, record id, kind, local id), so posting a changed record updates the same
//! resources instead of creating new ones, and the Bundle is the same wherever it is made
//! (`sektorbro translate` prints exactly what the endpoint stores). Shared things are not
//! record-scoped: the citizen is a conditional update on the CPR identifier, organizations a
//! conditional create on their SOR code (a registry, not one record, owns their names; each
//! reference carries the name the record used as its `display`).

use serde_json::{Map, Value};
use uuid::Uuid;

use super::record::{CareRecord, Goal, Intervention, Meeting, Member, Stay};
use super::vocab::{self, cs, ext, profile};
use crate::validation::terminology::Terminology;

/// A JSON object built by moving its values in: `json!` serializes every interpolated `Value`
/// into a copy, which made the mapping copy each resource several times over.
macro_rules! obj {
    ($($k:literal => $v:expr),* $(,)?) => {{
        let mut m = Map::new();
        $( m.insert(String::from($k), Value::from($v)); )*
        Value::Object(m)
    }};
}

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
        obj! {"reference" => format!("{rtype}/{}", self.id(kind, local))}
    }

    fn subject(&self) -> Value {
        obj! {"reference" => self.patient_url.as_str()}
    }

    fn identifier(&self, local: &str) -> Value {
        Value::from(vec![
            obj! {"system" => self.parts.as_str(), "value" => local},
        ])
    }

    fn coding(&self, system: &str, code: &str) -> Value {
        let mut c = obj! {"system" => system, "code" => code};
        if let Some(d) = self.terms.display(system, code) {
            c["display"] = Value::from(d);
        }
        c
    }

    fn concept(&self, system: &str, code: &str) -> Value {
        obj! {"coding" => vec![self.coding(system, code)]}
    }

    /// `valueCodeableConcept` extension.
    fn concept_extension(&self, url: &str, system: &str, code: &str) -> Value {
        obj! {"url" => url, "valueCodeableConcept" => self.concept(system, code)}
    }
}

/// A reference to an organization by SOR code, with the name the record gives it.
fn organization_ref(sor: &str, name: Option<&str>) -> Value {
    let mut r = obj! {
        "reference" => organization_url(sor),
        "identifier" => obj! {"system" => vocab::SOR, "value" => sor},
    };
    if let Some(n) = name {
        r["display"] = Value::from(n);
    }
    r
}

fn put(rtype: &str, id: &str, resource: Value) -> Value {
    obj! {
        "resource" => resource,
        "request" => obj! {"method" => "PUT", "url" => format!("{rtype}/{id}")},
    }
}

/// A JSON array of references.
fn refs(items: impl Iterator<Item = Value>) -> Value {
    Value::Array(items.collect())
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
        let mut r = obj! {
            "resourceType" => "Condition",
            "id" => id.as_str(),
            "meta" => obj! {"profile" => vec![profile::CONDITION]},
            "identifier" => cx.identifier(&c.id),
            "clinicalStatus" => cx.concept(vocab::CONDITION_CLINICAL, "active"),
            "code" => cx.concept(vocab::FSIII, &c.code),
            "subject" => cx.subject(),
        };
        if let Some(s) = &c.severity {
            r["severity"] = cx.concept(vocab::FSIII, s);
        }
        if let Some(n) = &c.note {
            r["note"] = Value::from(vec![obj! {"text" => n.as_str()}]);
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
    obj! {
        "resourceType" => "Bundle",
        "type" => "transaction",
        "entry" => entries,
    }
}

fn patient(cx: &Ctx<'_>) -> Value {
    let c = &cx.rec.citizen;
    let mut p = obj! {
        "resourceType" => "Patient",
        "identifier" => vec![obj! {"system" => vocab::CPR, "value" => c.cpr.as_str()}],
    };
    let mut name = Map::new();
    if let Some(f) = &c.family_name {
        name.insert("family".into(), Value::from(f.as_str()));
    }
    if let Some(g) = &c.given_names {
        name.insert("given".into(), Value::from(g.clone()));
    }
    let named = !name.is_empty();
    if named {
        p["name"] = Value::from(vec![Value::Object(name)]);
    }
    if let Some(b) = &c.birth_date {
        p["birthDate"] = Value::from(b.as_str());
    }
    let criteria = format!("identifier={}|{}", vocab::CPR, c.cpr);
    // A record that names the citizen states what it knows; one with only a CPR must not erase
    // what another record (or the registry) filled in.
    let request = if !named && c.birth_date.is_none() {
        obj! {"method" => "POST", "url" => "Patient", "ifNoneExist" => criteria}
    } else {
        obj! {"method" => "PUT", "url" => format!("Patient?{criteria}")}
    };
    obj! {"fullUrl" => cx.patient_url.as_str(), "resource" => p, "request" => request}
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
        obj! {
            "resourceType" => "Organization",
            "identifier" => vec![
                obj! {"system" => vocab::SOR, "value" => m.sor.as_str()},
                obj! {"system" => vocab::MUNICIPALITY_CODES, "value" => m.code.as_str()},
            ],
            "name" => m.name.as_str(),
        },
    );
    if let Some(stay) = &rec.course.stay {
        add(
            &stay.unit.sor,
            obj! {
                "resourceType" => "Organization",
                "identifier" => vec![obj! {"system" => vocab::SOR, "value" => stay.unit.sor.as_str()}],
                "name" => stay.unit.name.as_str(),
                "partOf" => organization_ref(&m.sor, Some(&m.name)),
            },
        );
        if let Some(from) = &stay.admitted_from {
            if let Some(sor) = &from.sor {
                let mut o = obj! {
                    "resourceType" => "Organization",
                    "identifier" => vec![obj! {"system" => vocab::SOR, "value" => sor.as_str()}],
                };
                if let Some(n) = &from.name {
                    o["name"] = Value::from(n.as_str());
                }
                add(sor, o);
            }
        }
    }
    orgs.into_iter()
        .map(|(sor, r)| {
            obj! {
                "fullUrl" => organization_url(&sor),
                "resource" => r,
                "request" => obj! {
                    "method" => "POST",
                    "url" => "Organization",
                    "ifNoneExist" => format!("identifier={}|{sor}", vocab::SOR),
                },
            }
        })
        .collect()
}

fn practitioner(cx: &Ctx<'_>, m: &Member) -> Value {
    let id = cx.id(kind::MEMBER, &m.id);
    let r = obj! {
        "resourceType" => "Practitioner",
        "id" => id.as_str(),
        "identifier" => cx.identifier(&m.id),
        "name" => vec![obj! {"text" => m.name.as_str()}],
    };
    put("Practitioner", &id, r)
}

fn member_ref(cx: &Ctx<'_>, local: &str) -> Value {
    let mut r = cx.reference("Practitioner", kind::MEMBER, local);
    if let Some(m) = cx.rec.care_team.iter().find(|m| m.id == local) {
        r["display"] = Value::from(m.name.as_str());
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
            let mut p = obj! {
                "id" => m.id.as_str(),
                "role" => vec![cx.concept(cs::DISCIPLINE, &m.discipline)],
                "member" => member_ref(cx, &m.id),
            };
            if m.primary_contact {
                p["extension"] = Value::from(vec![
                    obj! {"url" => ext::PRIMARY_CONTACT, "valueBoolean" => true},
                ]);
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
    let mut r = obj! {
        "resourceType" => "CareTeam",
        "id" => id.as_str(),
        "meta" => obj! {"profile" => vec![profile::CARE_TEAM]},
        "identifier" => cx.identifier("team"),
        "status" => status,
        "subject" => cx.subject(),
        "managingOrganization" => vec![organization_ref(&rec.municipality.sor, Some(&rec.municipality.name))],
    };
    if !participants.is_empty() {
        r["participant"] = Value::from(participants);
    }
    put("CareTeam", &id, r)
}

fn goal(cx: &Ctx<'_>, g: &Goal) -> Value {
    let id = cx.id(kind::GOAL, &g.id);
    let mut extension = Vec::new();
    if let Some(w) = &g.citizen_words {
        extension.push(obj! {"url" => ext::CITIZEN_WORDS, "valueString" => w.as_str()});
    }
    if let Some(m) = &g.measure {
        if let Some(b) = &m.baseline {
            extension.push(obj! {
                "url" => ext::BASELINE,
                "valueQuantity" => obj! {"value" => b.clone(), "unit" => m.unit.as_str()},
            });
        }
    }
    extension.push(cx.concept_extension(
        ext::DISCIPLINE,
        cs::DISCIPLINE,
        &g.responsible_discipline,
    ));
    let mut r = obj! {
        "resourceType" => "Goal",
        "id" => id.as_str(),
        "meta" => obj! {"profile" => vec![profile::GOAL]},
        "extension" => extension,
        "identifier" => cx.identifier(&g.id),
        "lifecycleStatus" => g.status.as_str(),
        "achievementStatus" => cx.concept(vocab::GOAL_ACHIEVEMENT, &g.achievement),
        "description" => obj! {"text" => g.description.as_str()},
        "subject" => cx.subject(),
    };
    let mut target = Map::new();
    if let Some(m) = &g.measure {
        target.insert("measure".into(), obj! {"text" => m.description.as_str()});
        target.insert(
            "detailQuantity".into(),
            obj! {"value" => m.target.clone(), "unit" => m.unit.as_str()},
        );
    }
    if let Some(d) = &g.due {
        target.insert("dueDate".into(), Value::from(d.as_str()));
    }
    if !target.is_empty() {
        r["target"] = Value::from(vec![Value::Object(target)]);
    }
    if g.citizen_words.is_some() {
        r["expressedBy"] = cx.subject();
    }
    if !g.addresses.is_empty() {
        r["addresses"] = refs(
            g.addresses
                .iter()
                .map(|c| cx.reference("Condition", kind::CONDITION, c)),
        );
    }
    put("Goal", &id, r)
}

fn stay_encounter(cx: &Ctx<'_>, stay: &Stay) -> Value {
    let id = cx.id(kind::STAY, "stay");
    let status = if stay.discharged_at.is_some() {
        "finished"
    } else if cx.rec.course.status == "planned" {
        "planned"
    } else if cx.rec.course.status == "cancelled" {
        "cancelled"
    } else {
        "in-progress"
    };
    let mut period = obj! {"start" => stay.admitted_at.as_str()};
    if let Some(end) = &stay.discharged_at {
        period["end"] = Value::from(end.as_str());
    }
    let mut hospitalization = Map::new();
    if let Some(from) = &stay.admitted_from {
        let origin = match (&from.sor, &from.name) {
            (Some(sor), name) => Some(organization_ref(sor, name.as_deref())),
            (None, Some(name)) => Some(obj! {"display" => name.as_str()}),
            (None, None) => None,
        };
        if let Some(o) = origin {
            hospitalization.insert("origin".into(), o);
        }
        hospitalization.insert(
            "admitSource".into(),
            obj! {"coding" => vec![
                cx.coding(vocab::ADMIT_SOURCE, vocab::admit_source(&from.kind)),
                cx.coding(cs::ADMISSION_SOURCE, &from.kind),
            ]},
        );
    }
    if let Some(dest) = &stay.discharge_destination {
        hospitalization.insert(
            "dischargeDisposition".into(),
            obj! {"coding" => vec![
                cx.coding(vocab::DISCHARGE_DISPOSITION, vocab::discharge_disposition(dest)),
                cx.coding(cs::DISCHARGE_DESTINATION, dest),
            ]},
        );
    }
    let mut r = obj! {
        "resourceType" => "Encounter",
        "id" => id.as_str(),
        "meta" => obj! {"profile" => vec![profile::STAY]},
        "identifier" => cx.identifier("stay"),
        "status" => status,
        "class" => cx.coding(vocab::ACT_CODE, "SS"),
        "type" => vec![cx.concept(cs::ENCOUNTER_TYPE, "temporary-stay")],
        "subject" => cx.subject(),
        "period" => period,
        "serviceProvider" => organization_ref(&stay.unit.sor, Some(&stay.unit.name)),
    };
    if let Some(t) = &stay.ready_for_discharge_at {
        r["extension"] = Value::from(vec![
            obj! {"url" => ext::READY_FOR_DISCHARGE, "valueDateTime" => t.as_str()},
        ]);
    }
    if !hospitalization.is_empty() {
        r["hospitalization"] = Value::Object(hospitalization);
    }
    put("Encounter", &id, r)
}

fn meeting(cx: &Ctx<'_>, m: &Meeting) -> Value {
    let id = cx.id(kind::MEETING, &m.id);
    let mut extension = vec![
        obj! {"url" => ext::CITIZEN_PRESENT, "valueBoolean" => m.citizen_present},
        obj! {"url" => ext::RELATIVES_PRESENT, "valueBoolean" => m.relatives_present},
    ];
    for d in &m.decisions {
        extension.push(obj! {"url" => ext::DECISION, "valueString" => d.as_str()});
    }
    for review in &m.goal_reviews {
        let mut parts = vec![
            obj! {"url" => "goal", "valueReference" => cx.reference("Goal", kind::GOAL, &review.goal)},
            cx.concept_extension("achievement", vocab::GOAL_ACHIEVEMENT, &review.achievement),
        ];
        if let Some(n) = &review.note {
            parts.push(obj! {"url" => "note", "valueString" => n.as_str()});
        }
        extension.push(obj! {"url" => ext::GOAL_REVIEW, "extension" => parts});
    }
    let mut period = obj! {"start" => m.start.as_str()};
    if let Some(end) = &m.end {
        period["end"] = Value::from(end.as_str());
    }
    let rec = cx.rec;
    let mut r = obj! {
        "resourceType" => "Encounter",
        "id" => id.as_str(),
        "meta" => obj! {"profile" => vec![profile::MEETING]},
        "extension" => extension,
        "identifier" => cx.identifier(&m.id),
        "status" => if m.end.is_some() { "finished" } else { "planned" },
        "class" => cx.coding(vocab::ACT_CODE, "AMB"),
        "type" => vec![cx.concept(cs::ENCOUNTER_TYPE, "interdisciplinary-meeting")],
        "subject" => cx.subject(),
        "period" => period,
        "serviceProvider" => organization_ref(&rec.municipality.sor, Some(&rec.municipality.name)),
    };
    if !m.participants.is_empty() {
        r["participant"] = refs(
            m.participants
                .iter()
                .map(|p| obj! {"individual" => member_ref(cx, p)}),
        );
    }
    if rec.course.stay.is_some() {
        r["partOf"] = cx.reference("Encounter", kind::STAY, "stay");
    }
    put("Encounter", &id, r)
}

fn activity(cx: &Ctx<'_>, i: &Intervention) -> Value {
    let mut detail = obj! {
        "extension" => vec![cx.concept_extension(ext::DISCIPLINE, cs::DISCIPLINE, &i.discipline)],
        "code" => cx.concept(vocab::FSIII, &i.code),
        "status" => i.status.as_str(),
    };
    if !i.goals.is_empty() {
        detail["goal"] = refs(i.goals.iter().map(|g| cx.reference("Goal", kind::GOAL, g)));
    }
    if let Some(f) = &i.frequency {
        let unit = vocab::forward(vocab::PERIOD_UNIT, &f.per).unwrap_or("wk");
        detail["scheduledTiming"] = obj! {
            "repeat" => obj! {"frequency" => f.count, "period" => 1, "periodUnit" => unit},
        };
    }
    if let Some(n) = &i.note {
        detail["description"] = Value::from(n.as_str());
    }
    obj! {"id" => i.id.as_str(), "detail" => detail}
}

fn care_plan(cx: &Ctx<'_>) -> Value {
    let rec = cx.rec;
    let c = &rec.course;
    let id = cx.id(kind::CARE_PLAN, "plan");
    let mut period = obj! {"start" => c.period.start.as_str()};
    if let Some(end) = &c.period.end {
        period["end"] = Value::from(end.as_str());
    }
    let mut r = obj! {
        "resourceType" => "CarePlan",
        "id" => id.as_str(),
        "meta" => obj! {"profile" => vec![profile::CARE_PLAN]},
        "extension" => vec![
            obj! {"url" => ext::PHASE, "valueCode" => c.phase.as_str()},
            cx.concept_extension(ext::LEGAL_BASIS, cs::LEGAL_BASIS, &c.legal_basis),
            obj! {"url" => ext::RECORD_VERSION, "valuePositiveInt" => rec.record_version},
        ],
        "identifier" => vec![obj! {
            "system" => vocab::record_system(&rec.municipality.code),
            "value" => rec.record_id.as_str(),
        }],
        "status" => vocab::forward(vocab::CARE_PLAN_STATUS, &c.status).unwrap_or("unknown"),
        "intent" => "plan",
        "category" => vec![cx.concept(cs::COURSE_KIND, &c.kind)],
        "subject" => cx.subject(),
        "period" => period,
        "author" => organization_ref(&rec.municipality.sor, Some(&rec.municipality.name)),
        "careTeam" => vec![cx.reference("CareTeam", kind::CARE_TEAM, "team")],
    };
    if c.stay.is_some() {
        r["encounter"] = cx.reference("Encounter", kind::STAY, "stay");
    }
    if !rec.conditions.is_empty() {
        r["addresses"] = refs(
            rec.conditions
                .iter()
                .map(|x| cx.reference("Condition", kind::CONDITION, &x.id)),
        );
    }
    if !rec.meetings.is_empty() {
        r["supportingInfo"] = refs(
            rec.meetings
                .iter()
                .map(|m| cx.reference("Encounter", kind::MEETING, &m.id)),
        );
    }
    if !rec.goals.is_empty() {
        r["goal"] = refs(
            rec.goals
                .iter()
                .map(|g| cx.reference("Goal", kind::GOAL, &g.id)),
        );
    }
    if !rec.interventions.is_empty() {
        r["activity"] = refs(rec.interventions.iter().map(|i| activity(cx, i)));
    }
    put("CarePlan", &id, r)
}
