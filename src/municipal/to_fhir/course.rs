//! The course: its Goals (the purpose and the record's SMART goals), the stays as Encounters,
//! the weekly meetings, the planned interventions and the course's CarePlan.

use super::*;

pub(super) fn goal<S: Sink>(cx: &Ctx<'_>, o: &mut S, g: &Goal, id: &str) {
    begin_put(o, "Goal", id);
    meta(o, &[profile::GOAL, kl::GOAL]);
    o.key("extension");
    o.open_list();
    if let Some(w) = &g.citizen_words {
        o.open();
        o.kv("url", ext::CITIZEN_WORDS);
        o.kv("valueString", w);
        o.close();
    }
    if let Some(m) = &g.measure {
        if let Some(b) = &m.baseline {
            o.open();
            o.kv("url", ext::BASELINE);
            o.key("valueQuantity");
            o.open();
            o.key("value");
            o.number(b);
            o.kv("unit", &m.unit);
            o.close();
            o.close();
        }
    }
    cx.concept_extension(
        o,
        ext::DISCIPLINE,
        cs::DISCIPLINE,
        &g.responsible_discipline,
    );
    o.close_list();
    cx.identifier(o, &g.id);
    o.kv("lifecycleStatus", g.status.as_str());
    o.key("achievementStatus");
    cx.concept(o, vocab::GOAL_ACHIEVEMENT, &g.achievement);
    o.key("category");
    o.open_list();
    cx.concept(o, kl::CODES, kl::CONDITION_GOAL);
    o.close_list();
    o.key("description");
    o.open();
    o.kv("text", &g.description);
    o.close();
    o.key("subject");
    cx.subject(o);
    if g.measure.is_some() || g.due.is_some() {
        o.key("target");
        o.open_list();
        o.open();
        if let Some(m) = &g.measure {
            o.key("measure");
            o.open();
            o.kv("text", &m.description);
            o.close();
            o.key("detailQuantity");
            o.open();
            o.key("value");
            o.number(&m.target);
            o.kv("unit", &m.unit);
            o.close();
        }
        if let Some(d) = &g.due {
            o.kv("dueDate", d);
        }
        o.close();
        o.close_list();
    }
    if g.citizen_words.is_some() {
        o.key("expressedBy");
        cx.subject(o);
    }
    if !g.addresses.is_empty() {
        o.key("addresses");
        o.open_list();
        for c in &g.addresses {
            cx.reference(o, "Condition", kind::CONDITION, c);
        }
        o.close_list();
    }
    end_put(o, "Goal", id);
}

pub(super) fn stay_encounter<S: Sink>(cx: &Ctx<'_>, o: &mut S, stay: &Stay) {
    let id = &cx.stay;
    let status = if stay.discharged_at.is_some() {
        "finished"
    } else if cx.rec.course.status == CourseStatus::Planned {
        "planned"
    } else if cx.rec.course.status == CourseStatus::Cancelled {
        "cancelled"
    } else {
        "in-progress"
    };
    begin_put(o, "Encounter", id);
    meta(o, &[profile::STAY, kl::ENCOUNTER, dk::ENCOUNTER]);
    cx.identifier(o, "stay");
    o.kv("status", status);
    o.key("class");
    cx.coding(o, vocab::ACT_CODE, "SS");
    o.key("type");
    o.open_list();
    cx.concepts(
        o,
        &[
            (kl::CODES, kl::ENCOUNTER_PLANNED_INTERVENTION),
            (cs::ENCOUNTER_TYPE, "temporary-stay"),
        ],
    );
    o.close_list();
    o.key("subject");
    cx.subject(o);
    o.key("period");
    o.open();
    o.kv("start", &stay.admitted_at);
    if let Some(end) = &stay.discharged_at {
        o.kv("end", end);
    }
    o.close();
    o.key("serviceProvider");
    organization_ref(
        o,
        &cx.organization_url(&stay.unit.sor),
        &stay.unit.sor,
        Some(&stay.unit.name),
    );
    if let Some(t) = &stay.ready_for_discharge_at {
        o.key("extension");
        o.open_list();
        o.open();
        o.kv("url", ext::READY_FOR_DISCHARGE);
        o.kv("valueDateTime", t);
        o.close();
        o.close_list();
    }
    if stay.admitted_from.is_some() || stay.discharge_destination.is_some() {
        o.key("hospitalization");
        o.open();
        if let Some(from) = &stay.admitted_from {
            match (&from.sor, &from.name) {
                (Some(sor), name) => {
                    o.key("origin");
                    organization_ref(o, &cx.organization_url(sor), sor, name.as_deref());
                }
                (None, Some(name)) => {
                    o.key("origin");
                    o.open();
                    o.kv("display", name);
                    o.close();
                }
                (None, None) => {}
            }
            o.key("admitSource");
            o.open();
            o.key("coding");
            o.open_list();
            cx.coding(o, vocab::ADMIT_SOURCE, vocab::admit_source(&from.kind));
            cx.coding(o, cs::ADMISSION_SOURCE, &from.kind);
            o.close_list();
            o.close();
        }
        if let Some(dest) = &stay.discharge_destination {
            o.key("dischargeDisposition");
            o.open();
            o.key("coding");
            o.open_list();
            cx.coding(
                o,
                vocab::DISCHARGE_DISPOSITION,
                vocab::discharge_disposition(dest),
            );
            cx.coding(o, cs::DISCHARGE_DESTINATION, dest);
            o.close_list();
            o.close();
        }
        o.close();
    }
    end_put(o, "Encounter", id);
}

pub(super) fn meeting<S: Sink>(cx: &Ctx<'_>, o: &mut S, m: &Meeting, id: &str) {
    begin_put(o, "Encounter", id);
    meta(o, &[profile::MEETING, kl::ENCOUNTER, dk::ENCOUNTER]);
    o.key("extension");
    o.open_list();
    for (url, value) in [
        (ext::CITIZEN_PRESENT, m.citizen_present),
        (ext::RELATIVES_PRESENT, m.relatives_present),
    ] {
        o.open();
        o.kv("url", url);
        o.key("valueBoolean");
        o.bool(value);
        o.close();
    }
    for d in &m.decisions {
        o.open();
        o.kv("url", ext::DECISION);
        o.kv("valueString", d);
        o.close();
    }
    for review in &m.goal_reviews {
        o.open();
        o.kv("url", ext::GOAL_REVIEW);
        o.key("extension");
        o.open_list();
        o.open();
        o.kv("url", "goal");
        o.key("valueReference");
        cx.reference(o, "Goal", kind::GOAL, &review.goal);
        o.close();
        cx.concept_extension(
            o,
            "achievement",
            vocab::GOAL_ACHIEVEMENT,
            &review.achievement,
        );
        if let Some(n) = &review.note {
            o.open();
            o.kv("url", "note");
            o.kv("valueString", n);
            o.close();
        }
        o.close_list();
        o.close();
    }
    o.close_list();
    cx.identifier(o, &m.id);
    o.kv(
        "status",
        if m.end.is_some() {
            "finished"
        } else {
            "planned"
        },
    );
    o.key("class");
    cx.coding(o, vocab::ACT_CODE, "AMB");
    o.key("type");
    o.open_list();
    cx.concepts(
        o,
        &[
            (kl::CODES, kl::ENCOUNTER_FOLLOW_UP),
            (cs::ENCOUNTER_TYPE, "interdisciplinary-meeting"),
        ],
    );
    o.close_list();
    o.key("subject");
    cx.subject(o);
    o.key("period");
    o.open();
    o.kv("start", &m.start);
    if let Some(end) = &m.end {
        o.kv("end", end);
    }
    o.close();
    o.key("serviceProvider");
    cx.municipality_ref(o);
    if !m.participants.is_empty() {
        o.key("participant");
        o.open_list();
        for p in &m.participants {
            o.open();
            o.key("individual");
            cx.member_ref(o, p);
            o.close();
        }
        o.close_list();
    }
    if cx.rec.course.stay.is_some() {
        o.key("partOf");
        cx.reference(o, "Encounter", kind::STAY, "stay");
    }
    end_put(o, "Encounter", id);
}

/// The course's purpose, KL's `Indsatsformål` Goal, which every KL care plan has: what the
/// course is (its kind and legal basis, as our code systems name them). Derived from the record,
/// so the reverse mapping has nothing to read from it.
pub(super) fn purpose<S: Sink>(cx: &Ctx<'_>, o: &mut S) {
    let c = &cx.rec.course;
    let id = &cx.purpose;
    let name = |system: &str, code: &'_ str| -> String {
        cx.terms
            .display(system, code)
            .map(String::from)
            .unwrap_or_else(|| code.to_string())
    };
    begin_put(o, "Goal", id);
    meta(o, &[kl::PURPOSE]);
    o.kv(
        "lifecycleStatus",
        vocab::forward(vocab::PURPOSE_STATUS, c.status.as_str()).unwrap_or("active"),
    );
    o.key("category");
    o.open_list();
    cx.concept(o, kl::CODES, kl::PURPOSE_GOAL);
    o.close_list();
    o.key("description");
    o.open();
    o.kv(
        "text",
        &format!(
            "{} ({})",
            name(cs::COURSE_KIND, &c.kind),
            name(cs::LEGAL_BASIS, &c.legal_basis)
        ),
    );
    o.close();
    o.key("subject");
    cx.subject(o);
    end_put(o, "Goal", id);
}

/// An intervention as KL models it: a planned intervention, a CarePlan of its own based on the
/// course's CarePlan, with exactly one activity. It claims KL's profile when its FSIII code is
/// in KL Common's scope (nursing, personal and practical help, training, prevention); the
/// assistive-device interventions (SEL §§ 112–116) are not, and claim ours only.
pub(super) fn planned_intervention<S: Sink>(cx: &Ctx<'_>, o: &mut S, i: &Intervention, id: &str) {
    begin_put(o, "CarePlan", id);
    if vocab::in_kl_scope(cx.terms, &i.code) {
        meta(
            o,
            &[profile::PLANNED_INTERVENTION, kl::PLANNED_INTERVENTION],
        );
    } else {
        meta(o, &[profile::PLANNED_INTERVENTION]);
    }
    cx.identifier(o, &i.id);
    o.key("basedOn");
    o.open_list();
    cx.reference(o, "CarePlan", kind::CARE_PLAN, "plan");
    o.close_list();
    o.kv("status", vocab::intervention_plan_status(i.status.as_str()));
    o.kv("intent", "order");
    o.key("subject");
    cx.subject(o);
    o.kv("created", &cx.rec.course.period.start);
    o.key("author");
    cx.municipality_ref(o);
    o.key("activity");
    o.open_list();
    activity(cx, o, i);
    o.close_list();
    end_put(o, "CarePlan", id);
}

pub(super) fn activity<S: Sink>(cx: &Ctx<'_>, o: &mut S, i: &Intervention) {
    o.open();
    o.key("detail");
    o.open();
    o.key("extension");
    o.open_list();
    cx.concept_extension(o, ext::DISCIPLINE, cs::DISCIPLINE, &i.discipline);
    o.close_list();
    o.key("code");
    cx.concept(o, vocab::FSIII, &i.code);
    o.kv("status", i.status.as_str());
    if !i.goals.is_empty() {
        o.key("goal");
        o.open_list();
        for g in &i.goals {
            cx.reference(o, "Goal", kind::GOAL, g);
        }
        o.close_list();
    }
    if let Some(f) = &i.frequency {
        let unit = vocab::forward(vocab::PERIOD_UNIT, &f.per).unwrap_or("wk");
        o.key("scheduledTiming");
        o.open();
        o.key("repeat");
        o.open();
        o.key("frequency");
        o.uint(f.count);
        o.key("period");
        o.uint(1);
        o.kv("periodUnit", unit);
        o.close();
        o.close();
    }
    if let Some(n) = &i.note {
        o.kv("description", n);
    }
    o.close();
    o.close();
}

pub(super) fn care_plan<S: Sink>(cx: &Ctx<'_>, o: &mut S) {
    let rec = cx.rec;
    let c = &rec.course;
    let id = &cx.care_plan;
    begin_put(o, "CarePlan", id);
    meta(o, &[profile::CARE_PLAN, kl::CARE_PLAN]);
    o.key("extension");
    o.open_list();
    o.open();
    o.kv("url", ext::PHASE);
    o.kv("valueCode", &c.phase);
    o.close();
    cx.concept_extension(o, ext::LEGAL_BASIS, cs::LEGAL_BASIS, &c.legal_basis);
    o.open();
    o.kv("url", ext::RECORD_VERSION);
    o.key("valuePositiveInt");
    o.uint(rec.record_version);
    o.close();
    o.close_list();
    o.key("identifier");
    o.open_list();
    o.open();
    o.kv("system", &vocab::record_system(&rec.municipality.code));
    o.kv("value", &rec.record_id);
    o.close();
    o.close_list();
    o.kv(
        "status",
        vocab::forward(vocab::CARE_PLAN_STATUS, c.status.as_str()).unwrap_or("unknown"),
    );
    o.kv("intent", "plan");
    o.key("category");
    o.open_list();
    match vocab::kl_care_plan_category(&c.legal_basis) {
        Some(k) => cx.concepts(o, &[(kl::CODES, k), (cs::COURSE_KIND, &c.kind)]),
        None => cx.concept(o, cs::COURSE_KIND, &c.kind),
    }
    o.close_list();
    o.key("subject");
    cx.subject(o);
    o.key("period");
    o.open();
    o.kv("start", &c.period.start);
    if let Some(end) = &c.period.end {
        o.kv("end", end);
    }
    o.close();
    o.kv("created", &c.period.start);
    o.key("author");
    cx.municipality_ref(o);
    o.key("careTeam");
    o.open_list();
    cx.reference(o, "CareTeam", kind::CARE_TEAM, "team");
    o.close_list();
    if c.stay.is_some() {
        o.key("encounter");
        cx.reference(o, "Encounter", kind::STAY, "stay");
    }
    let list = |o: &mut S, key: &str, rtype: &str, ids: &[String]| {
        if !ids.is_empty() {
            o.key(key);
            o.open_list();
            for id in ids {
                o.open();
                o.key("reference");
                o.plain(&[rtype, "/", id]);
                o.close();
            }
            o.close_list();
        }
    };
    list(o, "addresses", "Condition", &cx.conditions);
    // The meetings, then the planned interventions (which name this CarePlan as their
    // `basedOn`), each in the record's order: what the record is rebuilt from.
    if !cx.meetings.is_empty() || !cx.interventions.is_empty() {
        o.key("supportingInfo");
        o.open_list();
        for (rtype, ids) in [("Encounter", &cx.meetings), ("CarePlan", &cx.interventions)] {
            for id in ids {
                o.open();
                o.key("reference");
                o.plain(&[rtype, "/", id]);
                o.close();
            }
        }
        o.close_list();
    }
    // The purpose first (KL's `fpurpose` slice), then the record's goals.
    o.key("goal");
    o.open_list();
    o.open();
    o.key("reference");
    o.plain(&["Goal/", &cx.purpose]);
    o.close();
    for id in &cx.goals {
        o.open();
        o.key("reference");
        o.plain(&["Goal/", id]);
        o.close();
    }
    o.close_list();
    end_put(o, "CarePlan", id);
}
