//! Record → FHIR: one transaction Bundle holding everything the record says.
//!
//! Ids are decided here, not by the server: every part of a record gets a name-based UUID (v5)
//! from (municipality, record id, kind, local id), so posting a changed record updates the same
//! resources instead of creating new ones, and the Bundle is the same wherever it is made
//! (`sektorbro translate` prints exactly what the endpoint stores). Shared things are not
//! record-scoped: the citizen is a conditional update on the CPR identifier, organizations a
//! conditional create on their SOR code (a registry, not one record, owns their names; each
//! reference carries the name the record used as its `display`).

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::{Map, Number, Value};
use sha1::{Digest, Sha1};
use uuid::Uuid;

use super::record::{CareRecord, CourseStatus, Goal, Intervention, Meeting, Member, Stay};
use super::vocab::{self, cs, dk, ext, kl, profile};
use fhir_core::validation::terminology::Terminology;

mod course;
mod sink;
use course::*;
use sink::{Sink, Text, Tree};

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
    /// The course's purpose (KL's `Indsatsformål` Goal); one per record.
    pub const PURPOSE: &str = "purpose";
    /// An intervention: a KL planned intervention, a CarePlan of its own.
    pub const INTERVENTION: &str = "intervention";
}

/// Name-based (v5) UUIDs whose names share a prefix: the namespace and the prefix are hashed
/// once, and each name's SHA-1 continues from a copy of that state. The same UUIDs as
/// `Uuid::new_v5(&Uuid::NAMESPACE_URL, prefix + rest)`.
#[derive(Clone)]
struct Namer(Sha1);

impl Namer {
    fn new(prefix: &[&str]) -> Namer {
        let mut h = Sha1::new();
        h.update(Uuid::NAMESPACE_URL.as_bytes());
        for p in prefix {
            h.update(p.as_bytes());
        }
        Namer(h)
    }

    /// The parts of a record: `{BASE}/care-record/{municipality}/{record_id}/…`.
    fn record(municipality: &str, record_id: &str) -> Namer {
        Namer::new(&[
            vocab::BASE,
            "/care-record/",
            municipality,
            "/",
            record_id,
            "/",
        ])
    }

    /// Organizations: `{BASE}/organization/sor/…`.
    fn organizations() -> Namer {
        Namer::new(&[vocab::BASE, "/organization/sor/"])
    }

    fn uuid(&self, rest: &[&str]) -> String {
        let mut h = self.0.clone();
        for p in rest {
            h.update(p.as_bytes());
        }
        let digest = h.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        uuid::Builder::from_sha1_bytes(bytes)
            .into_uuid()
            .hyphenated()
            .encode_lower(&mut text)
            .to_string()
    }

    /// The id of the part of `kind` with local id `local`, of the record this namer is for.
    fn part(&self, kind: &str, local: &str) -> String {
        self.uuid(&[kind, "/", local])
    }

    /// The `urn:uuid:` full URL of the organization with SOR code `sor`.
    fn organization_url(&self, sor: &str) -> String {
        format!("urn:uuid:{}", self.uuid(&[sor]))
    }
}

/// The id of one part of a record.
pub fn part_id(municipality: &str, record_id: &str, kind: &str, local: &str) -> String {
    Namer::record(municipality, record_id).part(kind, local)
}

/// The `urn:uuid:` full URL of an organization, the same for every record naming that SOR code.
pub fn organization_url(sor: &str) -> String {
    Namer::organizations().organization_url(sor)
}

struct Ctx<'a> {
    rec: &'a CareRecord,
    terms: &'a Terminology,
    names: Namer,
    orgs: Namer,
    patient_url: String,
    parts: String,
    municipality_url: String,
    /// The ids of the listed parts, in the record's order, and of the single ones: each is a
    /// SHA-1, and most are referred to several times.
    conditions: Vec<String>,
    goals: Vec<String>,
    members: Vec<String>,
    meetings: Vec<String>,
    interventions: Vec<String>,
    purpose: String,
    care_plan: String,
    care_team: String,
    stay: String,
}

impl<'a> Ctx<'a> {
    fn new(rec: &'a CareRecord, terms: &'a Terminology) -> Self {
        let names = Namer::record(&rec.municipality.code, &rec.record_id);
        let orgs = Namer::organizations();
        Ctx {
            rec,
            terms,
            patient_url: format!("urn:uuid:{}", names.part(kind::PATIENT, "citizen")),
            parts: vocab::part_system(&rec.municipality.code, &rec.record_id),
            municipality_url: orgs.organization_url(&rec.municipality.sor),
            conditions: rec
                .conditions
                .iter()
                .map(|c| names.part(kind::CONDITION, &c.id))
                .collect(),
            goals: rec
                .goals
                .iter()
                .map(|g| names.part(kind::GOAL, &g.id))
                .collect(),
            members: rec
                .care_team
                .iter()
                .map(|m| names.part(kind::MEMBER, &m.id))
                .collect(),
            meetings: rec
                .meetings
                .iter()
                .map(|m| names.part(kind::MEETING, &m.id))
                .collect(),
            interventions: rec
                .interventions
                .iter()
                .map(|i| names.part(kind::INTERVENTION, &i.id))
                .collect(),
            purpose: names.part(kind::PURPOSE, "purpose"),
            care_plan: names.part(kind::CARE_PLAN, "plan"),
            care_team: names.part(kind::CARE_TEAM, "team"),
            stay: names.part(kind::STAY, "stay"),
            names,
            orgs,
        }
    }

    /// The id of a listed part by its local id (computed when the record has no such part:
    /// the rules refuse that, but the mapping does not depend on them).
    fn id(&self, kind: &str, local: &str) -> Cow<'_, str> {
        let rec = self.rec;
        let known = match kind {
            kind::CONDITION => rec
                .conditions
                .iter()
                .position(|c| c.id == local)
                .map(|i| &self.conditions[i]),
            kind::GOAL => rec
                .goals
                .iter()
                .position(|g| g.id == local)
                .map(|i| &self.goals[i]),
            kind::MEMBER => rec
                .care_team
                .iter()
                .position(|m| m.id == local)
                .map(|i| &self.members[i]),
            kind::MEETING => rec
                .meetings
                .iter()
                .position(|m| m.id == local)
                .map(|i| &self.meetings[i]),
            _ => None,
        };
        match known {
            Some(id) => Cow::Borrowed(id),
            None => Cow::Owned(self.names.part(kind, local)),
        }
    }

    fn organization_url(&self, sor: &str) -> String {
        if sor == self.rec.municipality.sor {
            self.municipality_url.clone()
        } else {
            self.orgs.organization_url(sor)
        }
    }

    /// `{"reference":"Type/id"}`.
    fn reference<S: Sink>(&self, o: &mut S, rtype: &str, kind: &str, local: &str) {
        o.open();
        o.key("reference");
        o.plain(&[rtype, "/", &self.id(kind, local)]);
        o.close();
    }

    fn subject<S: Sink>(&self, o: &mut S) {
        o.open();
        o.kv("reference", &self.patient_url);
        o.close();
    }

    /// `"identifier":[{"system":…,"value":local}]`.
    fn identifier<S: Sink>(&self, o: &mut S, local: &str) {
        o.key("identifier");
        o.open_list();
        o.open();
        o.kv("system", &self.parts);
        o.kv("value", local);
        o.close();
        o.close_list();
    }

    fn coding<S: Sink>(&self, o: &mut S, system: &str, code: &str) {
        o.open();
        o.kv("system", system);
        o.kv("code", code);
        if let Some(d) = self.terms.display(system, code) {
            o.kv("display", d);
        }
        o.close();
    }

    fn concept<S: Sink>(&self, o: &mut S, system: &str, code: &str) {
        self.concepts(o, &[(system, code)]);
    }

    /// A CodeableConcept of several codings (KL's code first, then ours).
    fn concepts<S: Sink>(&self, o: &mut S, codings: &[(&str, &str)]) {
        o.open();
        o.key("coding");
        o.open_list();
        for (system, code) in codings {
            self.coding(o, system, code);
        }
        o.close_list();
        o.close();
    }

    /// `valueCodeableConcept` extension.
    fn concept_extension<S: Sink>(&self, o: &mut S, url: &str, system: &str, code: &str) {
        o.open();
        o.kv("url", url);
        o.key("valueCodeableConcept");
        self.concept(o, system, code);
        o.close();
    }

    /// A reference to the municipality, with the name the record gives it.
    fn municipality_ref<S: Sink>(&self, o: &mut S) {
        let m = &self.rec.municipality;
        organization_ref(o, &self.municipality_url, &m.sor, Some(&m.name));
    }

    fn member_ref<S: Sink>(&self, o: &mut S, local: &str) {
        o.open();
        o.key("reference");
        o.plain(&["Practitioner/", &self.id(kind::MEMBER, local)]);
        if let Some(m) = self.rec.care_team.iter().find(|m| m.id == local) {
            o.kv("display", &m.name);
        }
        o.close();
    }
}

/// A reference to an organization by SOR code, with the name the record gives it.
fn organization_ref<S: Sink>(o: &mut S, url: &str, sor: &str, name: Option<&str>) {
    o.open();
    o.kv("reference", url);
    o.key("identifier");
    o.open();
    o.kv("system", vocab::SOR);
    o.kv("value", sor);
    o.close();
    if let Some(n) = name {
        o.kv("display", n);
    }
    o.close();
}

/// `meta.profile`: ours (where we have one), KL Common's, dk-core's (where it has one).
fn meta<S: Sink>(o: &mut S, profiles: &[&str]) {
    o.key("meta");
    o.open();
    o.key("profile");
    o.open_list();
    for p in profiles {
        o.plain(&[p]);
    }
    o.close_list();
    o.close();
}

/// `{"fullUrl":"urn:uuid:…","resource":{"resourceType":…,"id":…` — the entry of a
/// record-scoped part, opened; closed by [`end_put`]. The fullUrl (the part's UUID id) lets a
/// reader of the Bundle resolve the relative references between entries, as HL7's validator
/// requires of every entry that holds them.
fn begin_put<S: Sink>(o: &mut S, rtype: &str, id: &str) {
    o.open();
    o.key("fullUrl");
    o.plain(&["urn:uuid:", id]);
    o.key("resource");
    o.open();
    o.kv("resourceType", rtype);
    o.kv("id", id);
}

fn end_put<S: Sink>(o: &mut S, rtype: &str, id: &str) {
    o.close();
    o.key("request");
    o.open();
    o.kv("method", "PUT");
    o.key("url");
    o.plain(&[rtype, "/", id]);
    o.close();
    o.close();
}

/// The transaction Bundle for a record. Codes are expected to be known (the rules check that
/// first); an unknown one simply gets no display.
pub fn to_bundle(rec: &CareRecord, terms: &Terminology) -> Value {
    let mut tree = Tree::default();
    bundle(&Ctx::new(rec, terms), &mut tree);
    tree.root
}

/// The transaction Bundle for a record as JSON text: `serde_json::to_string(&to_bundle(…))`,
/// written without building the `Value`.
pub fn write_bundle(rec: &CareRecord, terms: &Terminology) -> String {
    // About 1.5 KB per resource in the fixtures; 2 KB each so the Bundle is written into one
    // allocation, never copied as it grows.
    let resources = 7
        + rec.conditions.len()
        + rec.goals.len()
        + rec.interventions.len()
        + 2 * rec.care_team.len()
        + rec.meetings.len();
    let mut text = Text {
        b: String::with_capacity(2048 * resources),
        comma: false,
    };
    bundle(&Ctx::new(rec, terms), &mut text);
    text.b
}

fn bundle<S: Sink>(cx: &Ctx<'_>, o: &mut S) {
    let rec = cx.rec;
    o.open();
    o.kv("resourceType", "Bundle");
    o.kv("type", "transaction");
    o.key("entry");
    o.open_list();
    patient(cx, o);
    organizations(cx, o);
    for (m, id) in rec.care_team.iter().zip(&cx.members) {
        practitioner(cx, o, m, id);
    }
    care_team(cx, o);
    for (c, id) in rec.conditions.iter().zip(&cx.conditions) {
        begin_put(o, "Condition", id);
        meta(o, &[profile::CONDITION, kl::CONDITION, dk::CONDITION]);
        cx.identifier(o, &c.id);
        o.key("clinicalStatus");
        cx.concept(o, vocab::CONDITION_CLINICAL, "active");
        o.key("code");
        cx.concept(o, vocab::FSIII, &c.code);
        o.key("subject");
        cx.subject(o);
        if let Some(s) = &c.severity {
            o.key("severity");
            cx.concept(o, vocab::FSIII, s);
        }
        if let Some(n) = &c.note {
            o.key("note");
            o.open_list();
            o.open();
            o.kv("text", n);
            o.close();
            o.close_list();
        }
        end_put(o, "Condition", id);
    }
    purpose(cx, o);
    for (g, id) in rec.goals.iter().zip(&cx.goals) {
        goal(cx, o, g, id);
    }
    if let Some(stay) = &rec.course.stay {
        stay_encounter(cx, o, stay);
    }
    for (m, id) in rec.meetings.iter().zip(&cx.meetings) {
        meeting(cx, o, m, id);
    }
    for (i, id) in rec.interventions.iter().zip(&cx.interventions) {
        planned_intervention(cx, o, i, id);
    }
    // The course's CarePlan last: storing a newer version puts its If-Match there.
    care_plan(cx, o);
    o.close_list();
    o.close();
}

fn patient<S: Sink>(cx: &Ctx<'_>, o: &mut S) {
    let c = &cx.rec.citizen;
    o.open();
    o.kv("fullUrl", &cx.patient_url);
    o.key("resource");
    o.open();
    o.kv("resourceType", "Patient");
    meta(o, &[kl::CITIZEN, dk::PATIENT]);
    o.key("identifier");
    o.open_list();
    o.open();
    o.kv("system", vocab::CPR);
    o.kv("value", c.cpr.as_str());
    o.close();
    o.close_list();
    let named = c.family_name.is_some() || c.given_names.is_some();
    if named {
        o.key("name");
        o.open_list();
        o.open();
        if let Some(f) = &c.family_name {
            o.kv("family", f);
        }
        if let Some(g) = &c.given_names {
            o.key("given");
            o.open_list();
            for name in g {
                o.str(name);
            }
            o.close_list();
        }
        o.close();
        o.close_list();
    }
    if let Some(b) = &c.birth_date {
        o.kv("birthDate", b);
    }
    o.close();
    let criteria = format!("identifier={}|{}", vocab::CPR, c.cpr);
    // A record that names the citizen states what it knows; one with only a CPR must not erase
    // what another record (or the registry) filled in.
    o.key("request");
    o.open();
    if !named && c.birth_date.is_none() {
        o.kv("method", "POST");
        o.kv("url", "Patient");
        o.kv("ifNoneExist", &criteria);
    } else {
        o.kv("method", "PUT");
        o.kv("url", &format!("Patient?{criteria}"));
    }
    o.close();
    o.close();
}

/// Conditional creates of the organizations the record names, one per SOR code.
fn organizations<S: Sink>(cx: &Ctx<'_>, o: &mut S) {
    let rec = cx.rec;
    let m = &rec.municipality;
    let mut seen: Vec<String> = Vec::with_capacity(3);
    let mut entry = |o: &mut S, sor: &str, url: &str, body: &dyn Fn(&mut S)| {
        if seen.iter().any(|s| s == sor) {
            return;
        }
        o.open();
        o.kv("fullUrl", url);
        o.key("resource");
        o.open();
        o.kv("resourceType", "Organization");
        meta(o, &[kl::ORGANIZATION, dk::ORGANIZATION]);
        body(o);
        o.close();
        o.key("request");
        o.open();
        o.kv("method", "POST");
        o.kv("url", "Organization");
        o.kv("ifNoneExist", &format!("identifier={}|{sor}", vocab::SOR));
        o.close();
        o.close();
        seen.push(sor.to_string());
    };
    let sor_identifier = |o: &mut S, sor: &str| {
        o.open();
        o.kv("system", vocab::SOR);
        o.kv("value", sor);
        o.close();
    };
    entry(o, &m.sor, &cx.municipality_url, &|o: &mut S| {
        o.key("identifier");
        o.open_list();
        sor_identifier(o, &m.sor);
        o.open();
        o.kv("system", vocab::MUNICIPALITY_CODES);
        o.kv("value", &m.code);
        o.close();
        o.close_list();
        o.kv("name", &m.name);
    });
    if let Some(stay) = &rec.course.stay {
        let unit = &stay.unit;
        entry(
            o,
            &unit.sor,
            &cx.organization_url(&unit.sor),
            &|o: &mut S| {
                o.key("identifier");
                o.open_list();
                sor_identifier(o, &unit.sor);
                o.close_list();
                o.kv("name", &unit.name);
                o.key("partOf");
                cx.municipality_ref(o);
            },
        );
        if let Some(from) = &stay.admitted_from {
            if let Some(sor) = &from.sor {
                entry(o, sor, &cx.organization_url(sor), &|o: &mut S| {
                    o.key("identifier");
                    o.open_list();
                    sor_identifier(o, sor);
                    o.close_list();
                    if let Some(n) = &from.name {
                        o.kv("name", n);
                    }
                });
            }
        }
    }
}

fn practitioner<S: Sink>(cx: &Ctx<'_>, o: &mut S, m: &Member, id: &str) {
    o.open();
    o.key("fullUrl");
    o.plain(&["urn:uuid:", id]);
    o.key("resource");
    o.open();
    o.kv("resourceType", "Practitioner");
    o.kv("id", id);
    meta(o, &[kl::PRACTITIONER, dk::PRACTITIONER]);
    cx.identifier(o, &m.id);
    o.key("name");
    o.open_list();
    o.open();
    o.kv("text", &m.name);
    o.close();
    o.close_list();
    end_put(o, "Practitioner", id);
}

fn care_team<S: Sink>(cx: &Ctx<'_>, o: &mut S) {
    let rec = cx.rec;
    let id = &cx.care_team;
    let status = match rec.course.status {
        CourseStatus::Completed | CourseStatus::Cancelled => "inactive",
        CourseStatus::Planned => "proposed",
        CourseStatus::OnHold => "suspended",
        CourseStatus::Active => "active",
    };
    begin_put(o, "CareTeam", id);
    meta(o, &[profile::CARE_TEAM, kl::SERVICE_PERFORMER]);
    cx.identifier(o, "team");
    o.kv("status", status);
    o.key("subject");
    cx.subject(o);
    o.key("managingOrganization");
    o.open_list();
    cx.municipality_ref(o);
    o.close_list();
    if !rec.care_team.is_empty() {
        o.key("participant");
        o.open_list();
        for m in &rec.care_team {
            o.open();
            o.kv("id", &m.id);
            o.key("role");
            o.open_list();
            cx.concept(o, cs::DISCIPLINE, &m.discipline);
            o.close_list();
            o.key("member");
            cx.member_ref(o, &m.id);
            if m.primary_contact {
                o.key("extension");
                o.open_list();
                o.open();
                o.kv("url", ext::PRIMARY_CONTACT);
                o.key("valueBoolean");
                o.bool(true);
                o.close();
                o.close_list();
            }
            o.close();
        }
        o.close_list();
    }
    end_put(o, "CareTeam", id);
}

#[cfg(test)]
mod tests {
    use super::sink::{needs_escape, write_escaped};
    use super::*;

    /// The hashed-prefix UUIDs are exactly the v5 UUIDs of the whole names, which is what ids
    /// stored before were made with.
    #[test]
    fn ids_are_the_v5_uuids_of_the_names() {
        let v5 = |name: String| Uuid::new_v5(&Uuid::NAMESPACE_URL, name.as_bytes()).to_string();
        for (m, r, k, l) in [
            ("0510", "NX-0510-2025-004712", kind::GOAL, "g1"),
            ("0101", "A", kind::CARE_PLAN, "plan"),
            ("0751", &"x".repeat(64), kind::MEMBER, &"m".repeat(64)),
        ] {
            assert_eq!(
                part_id(m, r, k, l),
                v5(format!("{}/care-record/{m}/{r}/{k}/{l}", vocab::BASE))
            );
        }
        for sor in ["425911000016005", "1"] {
            assert_eq!(
                organization_url(sor),
                format!(
                    "urn:uuid:{}",
                    v5(format!("{}/organization/sor/{sor}", vocab::BASE))
                )
            );
        }
    }

    #[test]
    fn the_word_scan_finds_every_byte_that_needs_escaping() {
        // Every byte value at every position of strings long enough for two words and a tail,
        // among neighbours that do and do not need escaping themselves.
        for len in 1..=19 {
            for at in 0..len {
                for fill in [b'a', b' ', 0x21, 0x5d, 0x7f, 0x80, 0xc3, 0xff] {
                    for c in 0..=255u8 {
                        let mut b = vec![fill; len];
                        b[at] = c;
                        let naive = b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
                        assert_eq!(needs_escape(&b), naive, "{b:?}");
                    }
                }
            }
        }
        assert!(!needs_escape(b""));
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for s in [
            "",
            "plain",
            "Søren \"Sø\" \\ æ",
            "a\u{0}b\u{1f}c\u{7f}\u{8}\u{c}\n\r\t",
            "\u{2028}\u{feff}",
        ] {
            let mut out = String::new();
            write_escaped(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }
}
