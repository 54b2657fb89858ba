//! Terminology bindings: is the code (or one of the codings) in the bound value set? Required →
//! error; extensible and preferred → warning. A value set or code system we cannot evaluate is a
//! warning that says why, never a silent pass.

use crate::fhir::Member;
use serde_json::Value;

use super::definitions::CodeSystemChoice;
use super::model::{Binding, Strength};
use super::terminology::Membership;
use super::walk::{Pass, Run};
use crate::fhir::outcome::Severity;

/// The codings in a value of type `code` (`code`, `Coding`, `CodeableConcept`, `Quantity`, a
/// string or uri bound to a value set).
pub(crate) fn codings<'a>(
    val: &'a Value,
    type_code: &str,
) -> Option<Vec<(Option<&'a str>, &'a str)>> {
    let coding = |c: &'a Value| {
        let code = c.member("code")?.as_str()?;
        Some((c.member("system").and_then(Value::as_str), code))
    };
    match type_code {
        "code" | "string" | "uri" => Some(vec![(None, val.as_str()?)]),
        "Coding" | "Quantity" => Some(coding(val).into_iter().collect()),
        "CodeableConcept" => Some(
            val.member("coding")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(coding)
                .collect(),
        ),
        _ => None,
    }
}

pub(crate) fn check(run: &mut Run<'_, '_>, val: &Value, b: &Binding, type_code: &str, _pass: Pass) {
    let label = match b.strength {
        Strength::Required => "required binding",
        Strength::Extensible => "extensible binding",
        Strength::Preferred => "preferred binding",
        Strength::Example => return,
    };
    check_value_set(run, val, &b.value_set, b.strength, label, type_code);
}

/// The additional bindings of `b` whose purpose holds an instance to them, where their usage
/// context holds.
pub(crate) fn check_additional(run: &mut Run<'_, '_>, val: &Value, b: &Binding, type_code: &str) {
    for a in &b.additional {
        let Some(strength) = a.strength() else {
            continue;
        };
        // `any` asks for one repetition in the value set, which a check of each value cannot
        // decide; a usage context that names no element of the resource cannot be decided either.
        if a.any || (a.usage.is_empty() && a.usage_undecidable) {
            continue;
        }
        if !a.usage.is_empty()
            && !a
                .usage
                .iter()
                .any(|(path, concept)| usage_holds(run, path, concept))
        {
            continue;
        }
        let label = format!("additional binding, purpose {}", a.purpose);
        check_value_set(run, val, &a.value_set, strength, &label, type_code);
    }
}

/// Whether the element at `path` (`Observation.category`) of the innermost resource has one of
/// `concept`'s codings.
fn usage_holds(run: &Run<'_, '_>, path: &str, concept: &Value) -> bool {
    let Some(resource) = run.resources.last() else {
        return false;
    };
    let rtype = resource
        .member("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("");
    let Some(rest) = path.strip_prefix(rtype).and_then(|r| r.strip_prefix('.')) else {
        return false;
    };
    let wanted: Vec<(Option<&str>, &str)> = codings(concept, "CodeableConcept").unwrap_or_default();
    super::walk::json_path(resource, rest).into_iter().any(|v| {
        let found = codings(v, "CodeableConcept")
            .filter(|c| !c.is_empty())
            .or_else(|| codings(v, "Coding"))
            .unwrap_or_default();
        found.iter().any(|f| wanted.contains(f))
    })
}

/// Is the code (or one of the codings) of `val` in value set `vs`? `strength` sets the severity
/// (required → error, otherwise a warning); `label` names the binding in the messages.
fn check_value_set(
    run: &mut Run<'_, '_>,
    val: &Value,
    vs: &str,
    strength: Strength,
    label: &str,
    type_code: &str,
) {
    let Some(codes) = codings(val, type_code) else {
        return;
    };
    let severity = match strength {
        Strength::Required => Severity::Error,
        _ => Severity::Warning,
    };
    if codes.is_empty() {
        // A CodeableConcept with text only, or a Coding without a code.
        if strength == Strength::Required && type_code == "CodeableConcept" {
            run.issue(
                Severity::Error,
                "code-invalid",
                format!("a code from value set {vs} is required here, but no coding is given"),
            );
        }
        return;
    }
    // The specification allows the short forms xml, json and ttl wherever a mime type is
    // bound (CapabilityStatement.format and friends).
    if vs.starts_with("http://hl7.org/fhir/ValueSet/mimetypes")
        && codes
            .iter()
            .all(|(s, c)| s.is_none() && matches!(*c, "xml" | "json" | "ttl"))
    {
        return;
    }
    let mut unknown = Vec::new();
    let mut unknown_codes = Vec::new();
    let mut misses = Vec::new();
    for (system, code) in &codes {
        match run.v.terminology.check_code(vs, *system, code) {
            Membership::Member => return,
            Membership::NotMember { .. } => misses.push(describe(*system, code)),
            Membership::Unknown { reason } => {
                unknown.push(reason);
                unknown_codes.push((system.map(String::from), code.to_string()));
            }
        }
    }
    if !misses.is_empty() && unknown.is_empty() {
        let what = misses.join(", ");
        let hint = run
            .v
            .terminology
            .small_expansion(vs, 12)
            .map(|codes| format!("; allowed: {}", codes.join(", ")))
            .unwrap_or_default();
        run.issue(
            severity,
            "code-invalid",
            format!("{what} is not in value set {vs} ({label}){hint}"),
        );
    } else if !unknown.is_empty() {
        unknown.sort();
        unknown.dedup();
        run.issue(
            Severity::Warning,
            "not-supported",
            format!(
                "could not check {} against value set {vs} ({label}): {}",
                misses.first().cloned().unwrap_or_else(|| codes
                    .iter()
                    .map(|(s, c)| describe(*s, c))
                    .collect::<Vec<_>>()
                    .join(", ")),
                unknown.join("; ")
            ),
        );
        // For a terminology server to settle later (`crate::lookup::terminology`).
        if let Some(issue) = run.issues.last().cloned() {
            run.unresolved.push((
                super::UnresolvedBinding {
                    value_set: vs.to_string(),
                    strength,
                    codes: unknown_codes,
                    location: run.path.clone(),
                    issue: 0,
                },
                issue,
            ));
        }
    }
}

fn describe(system: Option<&str>, code: &str) -> String {
    match system {
        Some(s) => format!("code {code:?} (system {s})"),
        None => format!("code {code:?}"),
    }
}

/// A Coding whose system we hold completely must use one of its codes, bound or not.
pub(crate) fn check_coding(run: &mut Run<'_, '_>, coding: &serde_json::Map<String, Value>) {
    let (Some(Value::String(system)), Some(Value::String(code))) =
        (coding.member("system"), coding.member("code"))
    else {
        return;
    };
    let (system, exact) = match coding.member("version").and_then(Value::as_str) {
        Some(v) => (format!("{system}|{v}"), None),
        None => match run.v.defs.code_system_in(system, run.scope) {
            CodeSystemChoice::Exact(s) => (system.clone(), Some(s)),
            CodeSystemChoice::AsIs => (system.clone(), None),
            // defined only by packages this resource is not validated with: theirs to judge
            CodeSystemChoice::Outside => {
                run.unknown_codes.push(super::UnresolvedCode {
                    system: system.clone(),
                    code: code.clone(),
                    location: format!("{}.code", run.path),
                });
                return;
            }
        },
    };
    match run
        .v
        .terminology
        .check_in_code_system(exact.as_deref().unwrap_or(&system), code)
    {
        Membership::NotMember { reason } => {
            let mark = run.path.len();
            run.path.push_str(".code");
            run.issue(
                Severity::Error,
                "code-invalid",
                format!("unknown code {code:?} in code system {system}: {reason}"),
            );
            run.path.truncate(mark);
        }
        // Not reported (a code system we do not hold, such as SNOMED CT, is the common case),
        // but recorded for a terminology server to check (`crate::lookup::terminology`).
        Membership::Unknown { .. } => run.unknown_codes.push(super::UnresolvedCode {
            system,
            code: code.clone(),
            location: format!("{}.code", run.path),
        }),
        Membership::Member => {
            // The display is compared in English, as HL7's validator does for a resource that
            // names no language. In another language a designation may be the right display,
            // and the code systems are held without their designations: not checked.
            let english = run
                .resources
                .last()
                .and_then(|r| r.member("language"))
                .and_then(Value::as_str)
                .is_none_or(|l| l == "en" || l.starts_with("en-"));
            let held = exact.as_deref().unwrap_or(&system);
            if let (true, Some(Value::String(given)), Some(display)) = (
                english,
                coding.member("display"),
                run.v.terminology.display(held, code),
            ) {
                if !same_display(given, display) {
                    run.error_at(
                        ".display",
                        "invalid",
                        format!(
                            "wrong display {given:?} for code {code:?} of {system}: the code system's display is {display:?}"
                        ),
                    );
                }
            }
        }
    }
}

/// Whether a Coding's display is the code system's, as HL7's validator compares them: letter
/// case aside, but with the same spaces.
fn same_display(given: &str, display: &str) -> bool {
    given == display
        || (given.len() == display.len() && given.eq_ignore_ascii_case(display))
        || given.to_lowercase() == display.to_lowercase()
}
