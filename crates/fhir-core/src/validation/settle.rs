//! Settling what the validator could not judge locally, with a terminology server.
//!
//! The validator stays synchronous and I/O-free: it reports each binding it cannot evaluate as a
//! warning and records it ([`UnresolvedBinding`]), and records the codings of code systems it does
//! not hold ([`UnresolvedCode`]). [`settle`] then asks a [`TerminologyServer`], which the caller
//! implements (the gateway over HTTP, with its cache). A member removes the warning; not a member
//! becomes an error for a required binding (a warning for extensible and preferred) with the
//! server's message; a server that cannot answer leaves the warning, saying why; an answer the
//! server could give only from a stale cache adds a warning that says so. A coding the server says
//! its code system lacks is an error.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use futures_util::future::join_all;

use super::model::Strength;
use super::{UnresolvedBinding, UnresolvedCode, Validated};
use crate::fhir::outcome::{Issue, Severity};

/// One answer of a terminology server to `$validate-code`.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The server answered: whether the code is a member (of the value set, or of the code
    /// system), and its message. `stale`: the answer came from a cache past its freshness,
    /// because the server could not be reached; the age says how old it is.
    Known {
        member: bool,
        message: Option<String>,
        stale: Option<Duration>,
    },
    /// The server does not know the value set or the code system.
    UnknownToServer,
    /// No answer (unreachable, a bad answer): why.
    Failed(String),
}

/// A terminology server, as the validator's callers reach it. Implementations do the I/O (and
/// any caching); the rules for turning answers into issues are [`settle`]'s.
pub trait TerminologyServer: Sync {
    /// How messages name the server (its base URL).
    fn name(&self) -> &str;

    /// `ValueSet/$validate-code`: is `code` (of `system`, if given) in `value_set` (`url` or
    /// `url|version`)?
    fn validate_code(
        &self,
        value_set: &str,
        system: Option<&str>,
        code: &str,
    ) -> impl Future<Output = Answer> + Send;

    /// `CodeSystem/$validate-code`: does the code system `system` (`url` or `url|version`)
    /// define `code`?
    fn validate_in_code_system(
        &self,
        system: &str,
        code: &str,
    ) -> impl Future<Output = Answer> + Send;
}

/// The issues of `validated` with each unresolved binding's warning removed, turned into the
/// server's verdict, or annotated, and an error for each coding the server says its code system
/// does not define. Every distinct question is asked once, all concurrently.
pub async fn settle<T: TerminologyServer + ?Sized>(server: &T, validated: Validated) -> Vec<Issue> {
    let Validated {
        issues,
        unresolved,
        unknown_codes,
        ..
    } = validated;
    if unresolved.is_empty() && unknown_codes.is_empty() {
        return issues;
    }
    let mut notes = Vec::new();
    let mut out = settle_bindings(server, issues, &unresolved, &mut notes).await;
    // A coding a binding question already covers is not asked about twice.
    let asked: HashSet<(Option<&str>, &str)> = unresolved
        .iter()
        .flat_map(|u| u.codes.iter().map(|(s, c)| (s.as_deref(), c.as_str())))
        .collect();
    let codes: Vec<&UnresolvedCode> = unknown_codes
        .iter()
        .filter(|u| !asked.contains(&(Some(u.system.as_str()), u.code.as_str())))
        .collect();
    out.extend(settle_codes(server, &codes, &mut notes).await);
    notes.dedup();
    out.extend(notes);
    // Errors first, document order within a severity (as the validator orders them).
    out.sort_by_key(|i| i.severity);
    out
}

fn stale_note(server: &str, what: String, age: Duration, location: &str) -> Issue {
    Issue::warning(
        "informational",
        format!(
            "the terminology server {server} could not be reached; the answer for {what} is a cached one, {} s old",
            age.as_secs()
        ),
    )
    .at(location)
}

async fn settle_bindings<T: TerminologyServer + ?Sized>(
    server: &T,
    mut issues: Vec<Issue>,
    unresolved: &[UnresolvedBinding],
    notes: &mut Vec<Issue>,
) -> Vec<Issue> {
    let mut questions: Vec<(&str, Option<&str>, &str)> = unresolved
        .iter()
        .flat_map(|u| {
            u.codes
                .iter()
                .map(move |(s, c)| (u.value_set.as_str(), s.as_deref(), c.as_str()))
        })
        .collect();
    questions.sort_unstable();
    questions.dedup();
    let answers = join_all(
        questions
            .iter()
            .map(|(vs, s, c)| server.validate_code(vs, *s, c)),
    )
    .await;
    let answers: HashMap<_, _> = questions.into_iter().zip(answers).collect();
    let name = server.name();

    let mut verdicts: HashMap<usize, Verdict> = HashMap::new();
    for u in unresolved {
        let mut members = false;
        let mut not_members = Vec::new();
        let mut unknown = Vec::new();
        for (s, c) in &u.codes {
            let Some(answer) = answers.get(&(u.value_set.as_str(), s.as_deref(), c.as_str()))
            else {
                continue;
            };
            match answer {
                Answer::Known {
                    member,
                    message,
                    stale,
                } => {
                    if let Some(age) = stale {
                        let what = format!("code {c:?} in value set {}", u.value_set);
                        notes.push(stale_note(name, what, *age, &u.location));
                    }
                    if *member {
                        members = true;
                    } else {
                        not_members.push((s, c, message.clone()));
                    }
                }
                Answer::UnknownToServer => unknown.push(format!(
                    "the terminology server {name} does not know value set {}",
                    u.value_set
                )),
                Answer::Failed(why) => unknown.push(why.clone()),
            }
        }
        let verdict = if members {
            Verdict::Member
        } else if unknown.is_empty() && !not_members.is_empty() {
            Verdict::NotMember(not_member_issue(u, &not_members, name))
        } else {
            unknown.sort();
            unknown.dedup();
            Verdict::Unknown(unknown.join("; "))
        };
        let slot = verdicts
            .entry(u.issue)
            .or_insert(Verdict::Unknown(String::new()));
        if verdict.rank() > slot.rank() {
            *slot = verdict;
        }
    }

    let mut out = Vec::with_capacity(issues.len());
    for (i, issue) in issues.drain(..).enumerate() {
        match verdicts.remove(&i) {
            None => out.push(issue),
            Some(Verdict::Member) => {}
            Some(Verdict::NotMember(replacement)) => out.push(replacement),
            Some(Verdict::Unknown(why)) if why.is_empty() => out.push(issue),
            Some(Verdict::Unknown(why)) => out.push(Issue {
                diagnostics: format!("{}; asked the terminology server: {why}", issue.diagnostics),
                ..issue
            }),
        }
    }
    out
}

/// Codings of code systems not held locally: an error where the server says the system has no
/// such code (as for the systems we hold), a warning where it cannot say.
async fn settle_codes<T: TerminologyServer + ?Sized>(
    server: &T,
    codes: &[&UnresolvedCode],
    notes: &mut Vec<Issue>,
) -> Vec<Issue> {
    let mut questions: Vec<(&str, &str)> = codes
        .iter()
        .map(|u| (u.system.as_str(), u.code.as_str()))
        .collect();
    questions.sort_unstable();
    questions.dedup();
    let answers = join_all(
        questions
            .iter()
            .map(|(s, c)| server.validate_in_code_system(s, c)),
    )
    .await;
    let answers: HashMap<_, _> = questions.into_iter().zip(answers).collect();
    let name = server.name();
    let mut out = Vec::new();
    for u in codes {
        let Some(answer) = answers.get(&(u.system.as_str(), u.code.as_str())) else {
            continue;
        };
        let (code, system) = (&u.code, &u.system);
        let unchecked = |why: String| {
            Issue::warning(
                "not-supported",
                format!("could not check code {code:?} of code system {system}: {why}"),
            )
            .at(u.location.clone())
        };
        match answer {
            Answer::Known {
                member,
                message,
                stale,
            } => {
                if let Some(age) = stale {
                    let what = format!("code {code:?} of code system {system}");
                    notes.push(stale_note(name, what, *age, &u.location));
                }
                if !member {
                    out.push(
                        Issue::error(
                            "code-invalid",
                            format!(
                                "unknown code {code:?} in code system {system}, according to the terminology server {name}{}",
                                message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
                            ),
                        )
                        .at(u.location.clone()),
                    );
                }
            }
            Answer::UnknownToServer => out.push(unchecked(format!(
                "the terminology server {name} does not know the code system"
            ))),
            Answer::Failed(why) => out.push(unchecked(why.clone())),
        }
    }
    out
}

enum Verdict {
    Member,
    NotMember(Issue),
    Unknown(String),
}

impl Verdict {
    fn rank(&self) -> u8 {
        match self {
            Verdict::Member => 3,
            Verdict::NotMember(_) => 2,
            Verdict::Unknown(w) if !w.is_empty() => 1,
            Verdict::Unknown(_) => 0,
        }
    }
}

fn not_member_issue(
    u: &UnresolvedBinding,
    codes: &[(&Option<String>, &String, Option<String>)],
    server: &str,
) -> Issue {
    let (severity, strength) = match u.strength {
        Strength::Required => (Severity::Error, "required"),
        Strength::Extensible => (Severity::Warning, "extensible"),
        Strength::Preferred | Strength::Example => (Severity::Warning, "preferred"),
    };
    let what: Vec<String> = codes
        .iter()
        .map(|(s, c, _)| match s {
            Some(s) => format!("code {c:?} (system {s})"),
            None => format!("code {c:?}"),
        })
        .collect();
    let mut messages: Vec<&str> = codes.iter().filter_map(|(_, _, m)| m.as_deref()).collect();
    messages.dedup();
    let said = if messages.is_empty() {
        String::new()
    } else {
        format!(": {}", messages.join("; "))
    };
    Issue {
        severity,
        code: "code-invalid",
        diagnostics: format!(
            "{} is not in value set {} ({strength} binding), according to the terminology server {server}{said}",
            what.join(", "),
            u.value_set
        ),
        expression: Some(u.location.clone()),
    }
}
