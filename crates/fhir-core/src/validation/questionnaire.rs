//! A QuestionnaireResponse checked against its Questionnaire (R4 §12.2 and the SDC value
//! extensions core R4 defines): every item's linkId exists, at the right level and in order;
//! answers of the item's type; choice answers among the options or in the answer value set;
//! `required`, `repeats`, `enableWhen` (a disabled item must not be answered), group and
//! display items without answers; `maxLength` and the `minValue`, `maxValue`, `minLength`,
//! `regex`, `maxDecimalPlaces`, `maxSize`, `mimeType`, `questionnaire-minOccurs`,
//! `questionnaire-maxOccurs` and `questionnaire-optionExclusive` extensions.
//!
//! The Questionnaire is found by [`super::walk::Run`]: contained (`#id`), in the same Bundle,
//! in the loaded packages, or among those the caller supplies (the gateway's stored
//! Questionnaires, through [`QuestionnaireSource`]). One that cannot be found is a warning
//! (information for `example.org` URLs, as the reference validator says it).

use std::cell::{OnceCell, RefCell};
use std::cmp::Ordering;
use std::future::Future;

use crate::fhir::Member;
use rustc_hash::FxHashMap;
use serde_json::{Map, Value};

use super::model::{Binding, Strength};
use super::order;
use super::walk::{Pass, Run};
use crate::fhir::outcome::Severity;

const EXT: &str = "http://hl7.org/fhir/StructureDefinition/";

/// Where stored Questionnaires come from, for the Questionnaires a QuestionnaireResponse names
/// that are not contained, in its Bundle or in the loaded packages. The gateway implements it
/// over its store; validation itself stays free of I/O (see
/// [`super::Validator::resolve_questionnaires`]).
pub trait QuestionnaireSource: Sync {
    /// The Questionnaire with canonical URL `canonical` (`url` or `url|version`), if stored.
    fn questionnaire(&self, canonical: &str) -> impl Future<Output = Option<Value>> + Send;
}

/// The value keys an item of `kind` may answer with.
fn answer_keys(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "boolean" => &["valueBoolean"],
        "decimal" => &["valueDecimal"],
        "integer" => &["valueInteger"],
        "date" => &["valueDate"],
        "dateTime" => &["valueDateTime"],
        "time" => &["valueTime"],
        "string" | "text" => &["valueString"],
        "url" => &["valueUri"],
        "attachment" => &["valueAttachment"],
        "reference" => &["valueReference"],
        "quantity" => &["valueQuantity"],
        "choice" | "open-choice" => &[
            "valueCoding",
            "valueString",
            "valueInteger",
            "valueDate",
            "valueTime",
            "valueReference",
        ],
        _ => return None,
    })
}

/// The `questionnaire-minOccurs` of an item (0 without it).
fn min_occurs(qi: &Value) -> u64 {
    ext(qi, "questionnaire-minOccurs")
        .and_then(|(_, v)| v.as_u64())
        .unwrap_or(0)
}

/// A Coding that must be in value set `vs` (as under a required binding).
fn in_value_set(run: &mut Run<'_, '_>, coding: &Value, vs: &str) {
    let b = Binding {
        strength: Strength::Required,
        value_set: vs.to_string(),
        additional: Vec::new(),
    };
    super::bindings::check(run, coding, &b, "Coding", Pass::Base);
}

/// A Quantity's unit as (system, code).
fn unit_of(v: &Value) -> (Option<&str>, Option<&str>) {
    (
        v.get("system").and_then(Value::as_str),
        v.get("code").and_then(Value::as_str),
    )
}

/// The value of SDC extension `sdc-questionnaire-{name}` on `v`.
fn sdc_ext<'a>(v: &'a Value, name: &'a str) -> Option<&'a Value> {
    const SDC: &str = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-";
    exts_under(v, SDC, name).next().map(|(_, v)| v)
}

/// A reference answer names a resource of a type the item allows
/// (`questionnaire-referenceResource`), when it lists any.
fn reference_type(run: &mut Run<'_, '_>, qi: &Value, val: &Value) {
    let allowed: Vec<&str> = exts(qi, "questionnaire-referenceResource")
        .filter_map(|(_, v)| v.as_str())
        .collect();
    let Some(r) = val.get("reference").and_then(Value::as_str) else {
        return;
    };
    if allowed.is_empty() || r.starts_with('#') || r.starts_with("urn:") {
        return;
    }
    let r = r.split("/_history/").next().unwrap_or(r);
    let r = r.split('?').next().unwrap_or(r);
    let mut segs = r.rsplit('/');
    let (Some(_id), Some(ty)) = (segs.next(), segs.next()) else {
        return;
    };
    if !allowed.contains(&ty) && !allowed.contains(&"Resource") {
        run.issue(
            Severity::Error,
            "structure",
            format!(
                "the answer refers to a {ty}, but item {:?} takes references to {} only",
                link_id(qi).unwrap_or(""),
                allowed.join(", ")
            ),
        );
    }
}

fn items(v: &Value) -> &[Value] {
    v.get("item")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn link_id(v: &Value) -> Option<&str> {
    v.get("linkId").and_then(Value::as_str)
}

fn flag(v: &Value, name: &str) -> bool {
    v.member(name).and_then(Value::as_bool).unwrap_or(false)
}

/// The value of extension `EXT + name` on `v` (its `value[x]` key and value), the first one.
fn ext<'a>(v: &'a Value, name: &'a str) -> Option<(&'a str, &'a Value)> {
    exts(v, name).next()
}

fn exts<'a>(v: &'a Value, name: &'a str) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
    exts_under(v, EXT, name)
}

/// The values (`value[x]` key and value) of the extensions on `v` whose url is `base` + `name`.
fn exts_under<'a>(
    v: &'a Value,
    base: &'a str,
    name: &'a str,
) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
    v.get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |e| {
            e.get("url")
                .and_then(Value::as_str)
                .and_then(|u| u.strip_prefix(base))
                == Some(name)
        })
        .filter_map(|e| {
            e.as_object()?
                .iter()
                .find(|(k, _)| k.starts_with("value"))
                .map(|(k, v)| (k.as_str(), v))
        })
}

/// The `value[x]` of an answer (or answerOption, or enableWhen's `answer[x]` with `prefix`).
fn value_of<'a>(v: &'a Value, prefix: &str) -> Option<(&'a str, &'a Value)> {
    v.as_object()?.iter().find_map(|(k, val)| {
        let rest = k.strip_prefix(prefix)?;
        rest.starts_with(|c: char| c.is_ascii_uppercase())
            .then_some((k.as_str(), val))
    })
}

/// Every item of the Questionnaire `list` (nested ones too) by linkId, the first in document
/// order for each.
fn index_anywhere<'q>(list: &'q [Value], out: &mut FxHashMap<&'q str, &'q Value>) {
    for i in list {
        if let Some(link) = link_id(i) {
            out.entry(link).or_insert(i);
        }
        index_anywhere(items(i), out);
    }
}

/// Whether `v` (an answer's or option's `value[x]`) equals `w`, both of type key `k`.
fn same_value(k: &str, v: &Value, w: &Value) -> bool {
    match k {
        "valueCoding" => {
            let s = |x: &Value, f: &str| x.get(f).and_then(Value::as_str).map(str::to_string);
            s(v, "system") == s(w, "system") && s(v, "code") == s(w, "code")
        }
        "valueReference" => v.get("reference") == w.get("reference"),
        "valueInteger" | "valueDecimal" => order::number(v) == order::number(w),
        "valueQuantity" => order::compare_quantities(v, w) == Some(Ordering::Equal),
        _ => v == w,
    }
}

/// The answers within one part of a response (its items, theirs, and their answers' items), by
/// linkId.
type Answers<'r> = FxHashMap<&'r str, Vec<&'r Value>>;

/// One response against one Questionnaire. Items, groups and enableWhen answers are found
/// through indexes, built on first use: a response or Questionnaire of n items costs n look-ups,
/// not n² comparisons (both come from clients, up to `server.max_body_bytes`).
struct Check<'q, 'r> {
    q: &'q Value,
    /// The response is not finished (any status but `completed` and `amended`): a missing
    /// required answer is a warning, as in HL7's validator.
    incomplete: bool,
    /// The Questionnaire's items at any level, by linkId.
    anywhere: OnceCell<FxHashMap<&'q str, &'q Value>>,
    /// The answers within each part of the response enableWhen looked in (by its address).
    answers: RefCell<FxHashMap<*const Value, Answers<'r>>>,
}

impl<'q, 'r> Check<'q, 'r> {
    /// The Questionnaire's item with `link`, at any level.
    fn find_anywhere(&self, link: &str) -> Option<&'q Value> {
        self.anywhere
            .get_or_init(|| {
                let mut all = FxHashMap::default();
                index_anywhere(items(self.q), &mut all);
                all
            })
            .get(link)
            .copied()
    }

    /// Check `container`'s items (the response, an item, or an answer) against `q_items`.
    /// `stack`: the containers from the response down to this one (for enableWhen).
    fn items(
        &self,
        run: &mut Run<'_, '_>,
        q_items: &'q [Value],
        container: &'r Value,
        stack: &mut Vec<&'r Value>,
    ) {
        stack.push(container);
        let list = items(container);
        let mark = run.path.len();
        // linkId → indexes of the response items that carry an answer or items
        let mut grouped: FxHashMap<&str, Vec<usize>> = FxHashMap::default();
        let mut position: FxHashMap<&str, usize> = FxHashMap::default();
        for (p, q) in q_items.iter().enumerate() {
            if let Some(link) = link_id(q) {
                position.entry(link).or_insert(p);
            }
        }
        let mut last = 0usize;
        for (i, item) in list.iter().enumerate() {
            let Some(link) = link_id(item) else {
                continue; // required by the base definition, reported there
            };
            push_index(&mut run.path, "item", i);
            match position.get(link).copied() {
                None => match self.find_anywhere(link) {
                    Some(qi) => {
                        run.issue(
                            Severity::Error,
                            "structure",
                            format!("the item with linkId {link:?} is in the wrong place: the Questionnaire has it at another level"),
                        );
                        self.item(run, qi, item, true, stack);
                    }
                    None => run.issue(
                        Severity::Error,
                        "not-found",
                        format!("linkId {link:?} is not in the Questionnaire"),
                    ),
                },
                Some(p) => {
                    if p < last {
                        run.issue(
                            Severity::Error,
                            "structure",
                            format!("the item with linkId {link:?} is out of order: items must follow the Questionnaire's order"),
                        );
                    }
                    last = p;
                    if item.get("answer").is_some() || item.get("item").is_some() {
                        grouped.entry(link).or_default().push(i);
                    }
                }
            }
            run.path.truncate(mark);
        }
        for qi in q_items {
            let Some(link) = link_id(qi) else { continue };
            let enabled = self.enabled(qi, stack);
            let found = grouped.get(link);
            match found {
                Some(idx) => {
                    if idx.len() > 1 && !flag(qi, "repeats") {
                        push_index(&mut run.path, "item", idx[1]);
                        run.issue(
                            Severity::Error,
                            "structure",
                            format!("the item with linkId {link:?} does not repeat, so only one response item may carry it ({} do)", idx.len()),
                        );
                        run.path.truncate(mark);
                    }
                    if let Some((_, max)) = ext(qi, "questionnaire-maxOccurs") {
                        let group = qi.get("type").and_then(Value::as_str) == Some("group");
                        if let (true, Some(max)) = (group, max.as_u64()) {
                            if idx.len() as u64 > max {
                                run.issue(
                                    Severity::Error,
                                    "structure",
                                    format!("the group {link:?} is repeated {} times, more than its maxOccurs of {max}", idx.len()),
                                );
                            }
                        }
                    }
                    for &i in idx {
                        push_index(&mut run.path, "item", i);
                        if !enabled {
                            run.issue(
                                Severity::Error,
                                "invalid",
                                format!("the item with linkId {link:?} is answered, but its enableWhen conditions disable it"),
                            );
                        }
                        self.item(run, qi, &list[i], enabled, stack);
                        run.path.truncate(mark);
                    }
                }
                None if enabled && (flag(qi, "required") || min_occurs(qi) > 0) => {
                    let (sev, tail) = if self.incomplete {
                        (Severity::Warning, " (the response is not completed)")
                    } else {
                        (Severity::Error, "")
                    };
                    let what = if flag(qi, "required") {
                        "the required item".to_string()
                    } else {
                        format!("the item (minOccurs {})", min_occurs(qi))
                    };
                    run.issue(
                        sev,
                        "required",
                        format!("no response for {what} with linkId {link:?}{tail}"),
                    );
                }
                None => {}
            }
        }
        stack.pop();
    }

    /// One response item against its Questionnaire item.
    fn item(
        &self,
        run: &mut Run<'_, '_>,
        qi: &'q Value,
        item: &'r Value,
        enabled: bool,
        stack: &mut Vec<&'r Value>,
    ) {
        let link = link_id(qi).unwrap_or("");
        let kind = qi.get("type").and_then(Value::as_str).unwrap_or("");
        let mark = run.path.len();
        if let Some(text) = item.get("text").and_then(Value::as_str) {
            if qi.get("text").and_then(Value::as_str) != Some(text) {
                run.path.push_str(".text");
                run.issue(
                    Severity::Error,
                    "value",
                    format!("the text of item {link:?} must be the Questionnaire's text for it, if given"),
                );
                run.path.truncate(mark);
            }
        }
        let answers: &[Value] = item
            .get("answer")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if answers.is_empty() && flag(qi, "required") && kind != "group" && kind != "display" {
            if self.incomplete {
                run.issue(
                    Severity::Warning,
                    "required",
                    format!(
                        "the required item {link:?} has no answer (the response is not completed)"
                    ),
                );
            } else if enabled {
                run.issue(
                    Severity::Error,
                    "required",
                    format!("the required item {link:?} has no answer"),
                );
            }
        }
        if answers.len() > 1 && !flag(qi, "repeats") {
            push_index(&mut run.path, "answer", 1);
            run.issue(
                Severity::Error,
                "structure",
                format!(
                    "item {link:?} does not repeat, so it takes one answer ({} given)",
                    answers.len()
                ),
            );
            run.path.truncate(mark);
        }
        if kind != "group" && kind != "display" {
            self.occurs(run, qi, answers.len());
        }
        let mut exclusive = None;
        for (j, answer) in answers.iter().enumerate() {
            push_index(&mut run.path, "answer", j);
            match kind {
                "group" => run.issue(
                    Severity::Error,
                    "structure",
                    format!("item {link:?} is a group: groups have items, not answers"),
                ),
                "display" => run.issue(
                    Severity::Error,
                    "structure",
                    format!("item {link:?} is display text: it cannot be answered"),
                ),
                _ => match answer_keys(kind) {
                    None => run.issue(
                        Severity::Error,
                        "structure",
                        format!("item {link:?} has type {kind:?}, which cannot be answered (not a concrete item type)"),
                    ),
                    Some(allowed) => {
                        if let Some((key, val)) = value_of(answer, "value") {
                            let m = run.path.len();
                            run.path.push_str(".value.ofType(");
                            run.path.push_str(of_type(key));
                            run.path.push(')');
                            if !allowed.contains(&key) {
                                let names: Vec<&str> =
                                    allowed.iter().map(|k| of_type(k)).collect();
                                run.issue(
                                    Severity::Error,
                                    "structure",
                                    format!("item {link:?} has type {kind}, so its answers must be {}, not {}", names.join(" or "), of_type(key)),
                                );
                            } else if self.value(run, qi, kind, key, val) {
                                exclusive = Some(j);
                            }
                            run.path.truncate(m);
                        }
                    }
                },
            }
            // items under an answer are the question's sub-questions
            if kind != "group" && answer.get("item").is_some() {
                self.items(run, items(qi), answer, stack);
            }
            run.path.truncate(mark);
        }
        if let (Some(j), true) = (exclusive, answers.len() > 1) {
            push_index(&mut run.path, "answer", j);
            run.issue(
                Severity::Error,
                "structure",
                format!("this answer of item {link:?} is exclusive: no other answer may be given with it"),
            );
            run.path.truncate(mark);
        }
        let children = items(item);
        match kind {
            "group" => self.items(run, items(qi), item, stack),
            _ if !children.is_empty() => run.issue(
                Severity::Error,
                "structure",
                if kind == "display" {
                    format!("item {link:?} is display text: it cannot have items")
                } else {
                    format!("item {link:?} is a question ({kind}): its nested items go under its answers, not beside them")
                },
            ),
            _ => {}
        }
    }

    /// `questionnaire-minOccurs`/`maxOccurs` on a repeating question: how many answers.
    fn occurs(&self, run: &mut Run<'_, '_>, qi: &Value, n: usize) {
        let link = link_id(qi).unwrap_or("");
        if let Some(max) = ext(qi, "questionnaire-maxOccurs").and_then(|(_, v)| v.as_u64()) {
            if n as u64 > max {
                run.issue(
                    Severity::Error,
                    "structure",
                    format!("item {link:?} has {n} answers, more than its maxOccurs of {max}"),
                );
            }
        }
        let min = min_occurs(qi);
        if (n as u64) < min && !self.incomplete {
            run.issue(
                Severity::Error,
                "structure",
                format!("item {link:?} has {n} answers, fewer than its minOccurs of {min}"),
            );
        }
    }

    /// One answer value (key `key`) of an item of `kind`; the path is at the value. Returns
    /// whether it matched an option marked exclusive.
    fn value(
        &self,
        run: &mut Run<'_, '_>,
        qi: &'q Value,
        kind: &str,
        key: &str,
        val: &Value,
    ) -> bool {
        let link = link_id(qi).unwrap_or("");
        let vtype = value_type(key);
        // minValue / maxValue
        for (name, want, word) in [
            ("minValue", Ordering::Less, "less than the minimum"),
            ("maxValue", Ordering::Greater, "more than the maximum"),
        ] {
            if let Some((_, bound)) = ext(qi, name) {
                if order::compare(vtype, val, bound) == Some(want) {
                    run.issue(
                        Severity::Error,
                        "value",
                        format!(
                            "the answer {} is {word} of {} for item {link:?}",
                            order::show(vtype, val),
                            order::show(vtype, bound)
                        ),
                    );
                }
            }
        }
        match key {
            "valueQuantity" => self.quantity(run, qi, val),
            "valueReference" => reference_type(run, qi, val),
            "valueString" | "valueUri" => {
                let s = val.as_str().unwrap_or("");
                let n = s.chars().count();
                if let Some(max) = qi.get("maxLength").and_then(Value::as_u64) {
                    if n as u64 > max {
                        run.issue(
                            Severity::Error,
                            "too-long",
                            format!("the answer has {n} characters, more than the {max} item {link:?} allows"),
                        );
                    }
                }
                if let Some(min) = ext(qi, "minLength").and_then(|(_, v)| v.as_u64()) {
                    if (n as u64) < min {
                        run.issue(
                            Severity::Error,
                            "value",
                            format!("the answer has {n} characters, fewer than the {min} item {link:?} needs"),
                        );
                    }
                }
                if let Some(re) = ext(qi, "regex").and_then(|(_, v)| v.as_str()) {
                    match regex::Regex::new(&format!("^(?:{re})$")) {
                        Ok(r) if !r.is_match(s) => run.issue(
                            Severity::Error,
                            "value",
                            format!("the answer does not match the pattern {re} of item {link:?}"),
                        ),
                        Ok(_) => {}
                        Err(_) => run.issue(
                            Severity::Warning,
                            "not-supported",
                            format!("the regex extension of item {link:?} is not a pattern this validator can evaluate, so it was not checked"),
                        ),
                    }
                }
            }
            "valueDecimal" => {
                if let Some(max) = ext(qi, "maxDecimalPlaces").and_then(|(_, v)| v.as_u64()) {
                    let text = val.to_string();
                    let places = text
                        .split(['e', 'E'])
                        .next()
                        .and_then(|m| m.split_once('.'))
                        .map_or(0, |(_, f)| f.len());
                    if places as u64 > max {
                        run.issue(
                            Severity::Error,
                            "value",
                            format!("the answer {text} has {places} decimal places, more than the {max} item {link:?} allows"),
                        );
                    }
                }
            }
            "valueAttachment" => {
                if let Some(max) = ext(qi, "maxSize").and_then(|(_, v)| order::number(v)) {
                    if let Some(size) = attachment_size(val) {
                        if size as f64 > max {
                            run.issue(
                                Severity::Error,
                                "too-long",
                                format!("the attachment is {size} bytes, more than the {max} item {link:?} allows"),
                            );
                        }
                    }
                }
                let types: Vec<&str> = exts(qi, "mimeType")
                    .filter_map(|(_, v)| v.as_str())
                    .collect();
                if !types.is_empty() {
                    let ct = val.get("contentType").and_then(Value::as_str);
                    if !ct.is_some_and(|c| {
                        types.iter().any(|t| {
                            c.split(';')
                                .next()
                                .is_some_and(|c| c.trim().eq_ignore_ascii_case(t))
                        })
                    }) {
                        run.issue(
                            Severity::Error,
                            "value",
                            format!("the attachment's content type {} is not one item {link:?} allows ({})", ct.unwrap_or("(none)"), types.join(", ")),
                        );
                    }
                }
            }
            _ => {}
        }
        // R4 lets integer, date, time and string items offer options too (que-5); an answer to
        // such an item is one of them.
        let offers = qi
            .get("answerOption")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if kind == "choice"
            || kind == "open-choice"
            || (offers && matches!(kind, "integer" | "date" | "time" | "string"))
        {
            return self.option(run, qi, kind, key, val);
        }
        false
    }

    /// A Quantity answer: within SDC's `minQuantity`/`maxQuantity` (converted between UCUM
    /// units; units that do not convert are an error), and in one of the item's
    /// `questionnaire-unitOption` units when it lists any, or in its `questionnaire-unitValueSet`.
    fn quantity(&self, run: &mut Run<'_, '_>, qi: &Value, val: &Value) {
        let link = link_id(qi).unwrap_or("");
        for (name, want, word) in [
            ("minQuantity", Ordering::Less, "less than the minimum"),
            ("maxQuantity", Ordering::Greater, "more than the maximum"),
        ] {
            let Some(bound) = sdc_ext(qi, name) else {
                continue;
            };
            let (shown, limit) = (order::show("Quantity", val), order::show("Quantity", bound));
            let why = match order::compare_quantities(val, bound) {
                Some(o) if o == want => format!("is {word} of {limit}"),
                None if val.get("value").is_some() && !order::quantities_comparable(val, bound) => {
                    format!("cannot be compared with the {name} {limit}: its unit does not convert")
                }
                _ => continue,
            };
            run.issue(
                Severity::Error,
                "value",
                format!("the answer {shown} {why} for item {link:?}"),
            );
        }
        if let Some(vs) = ext(qi, "questionnaire-unitValueSet").and_then(|(_, v)| v.as_str()) {
            // the unit, as a Coding, is in the value set (a required binding)
            match unit_of(val) {
                (Some(system), Some(code)) => {
                    in_value_set(run, &serde_json::json!({"system": system, "code": code}), vs);
                }
                _ => run.issue(
                    Severity::Error,
                    "code-invalid",
                    format!("item {link:?} takes units from the value set {vs}: give the unit's system and code"),
                ),
            }
        }
        let units: Vec<&Value> = exts(qi, "questionnaire-unitOption")
            .map(|(_, u)| u)
            .collect();
        if !units.is_empty() && !units.iter().any(|u| unit_of(u) == unit_of(val)) {
            let allowed: Vec<&str> = units
                .iter()
                .filter_map(|u| u.get("code").and_then(Value::as_str))
                .collect();
            run.issue(
                Severity::Error,
                "code-invalid",
                format!(
                    "the unit {} is not one of the units item {link:?} offers ({})",
                    val.get("code")
                        .or_else(|| val.get("unit"))
                        .and_then(Value::as_str)
                        .unwrap_or("(none)"),
                    allowed.join(", ")
                ),
            );
        }
    }

    /// A choice answer among the options, or in the answer value set.
    fn option(
        &self,
        run: &mut Run<'_, '_>,
        qi: &'q Value,
        kind: &str,
        key: &str,
        val: &Value,
    ) -> bool {
        let link = link_id(qi).unwrap_or("");
        let options: &[Value] = qi
            .get("answerOption")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if !options.is_empty() {
            if key == "valueString" && kind == "open-choice" {
                return false;
            }
            let of_type: Vec<&Value> = options
                .iter()
                .filter_map(|o| value_of(o, "value").filter(|(k, _)| *k == key).map(|_| o))
                .collect();
            let hit = of_type
                .iter()
                .find(|o| o.member(key).is_some_and(|w| same_value(key, val, w)));
            match hit {
                Some(o) => {
                    return ext(o, "questionnaire-optionExclusive")
                        .is_some_and(|(_, v)| v.as_bool() == Some(true))
                }
                None => run.issue(
                    Severity::Error,
                    "code-invalid",
                    if of_type.is_empty() {
                        format!(
                            "item {link:?} offers no {} options, so this answer is not one of them",
                            key.trim_start_matches("value")
                        )
                    } else {
                        format!(
                            "the answer {} is not one of the options of item {link:?}",
                            describe(key, val)
                        )
                    },
                ),
            }
            return false;
        }
        if let (Some(vs), "valueCoding") = (qi.get("answerValueSet").and_then(Value::as_str), key) {
            if let Some(local) = vs.strip_prefix('#') {
                self.contained_value_set(run, local, link, val);
                return false;
            }
            if val.get("code").is_none() && kind == "open-choice" {
                return false;
            }
            in_value_set(run, val, vs);
        } else if key != "valueCoding" && kind == "choice" {
            // Without options of the answer's type, a choice is answered with a Coding.
            run.issue(
                Severity::Error,
                "code-invalid",
                if qi.get("answerValueSet").is_some() {
                    format!(
                        "item {link:?} is a choice from a value set: answer with a Coding, not {}",
                        key.trim_start_matches("value")
                    )
                } else {
                    format!(
                        "item {link:?} is a choice and offers no {} options: answer with a Coding",
                        key.trim_start_matches("value")
                    )
                },
            );
        }
        false
    }

    /// A value set contained in the Questionnaire: its explicitly listed concepts decide;
    /// anything else is left unchecked with a warning.
    fn contained_value_set(&self, run: &mut Run<'_, '_>, id: &str, link: &str, val: &Value) {
        let vs = self
            .q
            .get("contained")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|r| r.get("id").and_then(Value::as_str) == Some(id));
        let Some(vs) = vs else {
            run.issue(
                Severity::Error,
                "not-found",
                format!("the answer value set #{id} of item {link:?} is not contained in the Questionnaire"),
            );
            return;
        };
        let includes: &[Value] = vs
            .pointer("/compose/include")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let listed = includes.iter().all(|i| i.get("concept").is_some())
            && vs.pointer("/compose/exclude").is_none();
        let expansion = vs.pointer("/expansion/contains").and_then(Value::as_array);
        let system = val.get("system").and_then(Value::as_str);
        let code = val.get("code").and_then(Value::as_str);
        let member = if let Some(list) = expansion {
            list.iter().any(|c| {
                c.get("system").and_then(Value::as_str) == system
                    && c.get("code").and_then(Value::as_str) == code
            })
        } else if listed && !includes.is_empty() {
            includes.iter().any(|i| {
                i.get("system").and_then(Value::as_str) == system
                    && i.get("concept")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .any(|c| c.get("code").and_then(Value::as_str) == code)
            })
        } else {
            run.issue(
                Severity::Warning,
                "not-supported",
                format!("the contained value set #{id} of item {link:?} does not list its codes, so the answer was not checked against it"),
            );
            return;
        };
        if !member {
            run.issue(
                Severity::Error,
                "code-invalid",
                format!(
                    "the answer {} is not in the value set #{id} of item {link:?}",
                    describe("valueCoding", val)
                ),
            );
        }
    }

    /// Whether the enableWhen conditions of `qi` hold, given the answers in the response.
    fn enabled(&self, qi: &Value, stack: &[&'r Value]) -> bool {
        let Some(conds) = qi.get("enableWhen").and_then(Value::as_array) else {
            return true;
        };
        if conds.is_empty() {
            return true;
        }
        let any = qi.get("enableBehavior").and_then(Value::as_str) == Some("any");
        let mut results = conds.iter().map(|c| self.condition(c, stack));
        if any {
            results.any(|r| r)
        } else {
            results.all(|r| r)
        }
    }

    fn condition(&self, c: &Value, stack: &[&'r Value]) -> bool {
        let Some(question) = c.get("question").and_then(Value::as_str) else {
            return true;
        };
        let op = c.get("operator").and_then(Value::as_str).unwrap_or("");
        let Some((akey, want)) = value_of(c, "answer") else {
            return true;
        };
        // the nearest enclosing part of the response that has the question answers it
        let answers: Vec<&Value> = {
            let mut cache = self.answers.borrow_mut();
            stack
                .iter()
                .rev()
                .find_map(|container| {
                    let within = cache
                        .entry(*container as *const Value)
                        .or_insert_with(|| answers_within(container));
                    within.get(question).filter(|a| !a.is_empty()).cloned()
                })
                .unwrap_or_default()
        };
        if op == "exists" {
            return want.as_bool() == Some(!answers.is_empty());
        }
        let vkey = format!("value{}", &akey["answer".len()..]);
        let kind = value_type(&vkey);
        answers.iter().any(|a| {
            let Some(got) = a.get(&vkey) else {
                return false;
            };
            match op {
                "=" => same_value(&vkey, got, want),
                "!=" => !same_value(&vkey, got, want),
                ">" | "<" | ">=" | "<=" => {
                    let Some(o) = order::compare(kind, got, want)
                        .or_else(|| (kind == "string").then(|| got.as_str().cmp(&want.as_str())))
                    else {
                        return false;
                    };
                    match op {
                        ">" => o == Ordering::Greater,
                        "<" => o == Ordering::Less,
                        ">=" => o != Ordering::Less,
                        _ => o != Ordering::Greater,
                    }
                }
                _ => false,
            }
        })
    }
}

/// The answers within `container` (a response, an item or an answer), by linkId: those of its
/// items, of their items and of their answers' items, at any depth.
fn answers_within(container: &Value) -> Answers<'_> {
    fn walk<'r>(container: &'r Value, out: &mut Answers<'r>) {
        for item in items(container) {
            let answers = item.get("answer").and_then(Value::as_array);
            if let Some(link) = link_id(item) {
                out.entry(link)
                    .or_default()
                    .extend(answers.into_iter().flatten());
            }
            walk(item, out);
            for a in answers.into_iter().flatten() {
                walk(a, out);
            }
        }
    }
    let mut out = Answers::default();
    walk(container, &mut out);
    out
}

/// The FHIR type of a `value[x]` key as locations name it: `valueDateTime` → `dateTime`,
/// `valueCoding` → `Coding`.
fn of_type(key: &str) -> &str {
    match key {
        "valueUri" => "uri",
        "valueAttachment" => "Attachment",
        "valueReference" => "Reference",
        _ => match value_type(key) {
            "" => key.trim_start_matches("value"),
            t => t,
        },
    }
}

/// The FHIR type of a `value[x]` key: `valueDateTime` → `dateTime`.
fn value_type(key: &str) -> &str {
    match key {
        "valueInteger" => "integer",
        "valueDecimal" => "decimal",
        "valueDate" => "date",
        "valueDateTime" => "dateTime",
        "valueTime" => "time",
        "valueQuantity" => "Quantity",
        "valueString" => "string",
        "valueBoolean" => "boolean",
        "valueCoding" => "Coding",
        _ => "",
    }
}

fn describe(key: &str, v: &Value) -> String {
    match key {
        "valueCoding" => format!(
            "{}#{}",
            v.get("system").and_then(Value::as_str).unwrap_or(""),
            v.get("code").and_then(Value::as_str).unwrap_or("")
        ),
        "valueReference" => v
            .get("reference")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        _ => order::show(value_type(key), v),
    }
}

/// An Attachment's size: `size`, else the length of its decoded `data`.
pub(crate) fn attachment_size(att: &Value) -> Option<u64> {
    if let Some(n) = att.get("size").and_then(order::number) {
        return Some(n as u64);
    }
    decoded_len(att.get("data")?.as_str()?)
}

/// The number of bytes base64 text decodes to (whitespace ignored), if it is base64.
pub(crate) fn decoded_len(data: &str) -> Option<u64> {
    use base64::Engine as _;
    let clean: String = data.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean.as_bytes())
        .ok()
        .map(|b| b.len() as u64)
}

fn push_index(path: &mut String, name: &str, i: usize) {
    use std::fmt::Write as _;
    let _ = write!(path, ".{name}[{i}]");
}

/// Check the QuestionnaireResponse `qr` (at the run's path) against Questionnaire `q`.
pub(crate) fn check(run: &mut Run<'_, '_>, qr: &Value, q: &Value) {
    let incomplete = !matches!(
        qr.get("status").and_then(Value::as_str),
        Some("completed" | "amended")
    );
    let c = Check {
        q,
        incomplete,
        anywhere: OnceCell::new(),
        answers: RefCell::new(FxHashMap::default()),
    };
    let mut stack = Vec::new();
    c.items(run, items(q), qr, &mut stack);
}

/// The questionnaire a QuestionnaireResponse names (`questionnaire`, canonical).
pub(crate) fn canonical(qr: &Map<String, Value>) -> Option<&str> {
    qr.get("questionnaire")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}
