//! A FHIR terminology server for what local packages do not hold: `ValueSet/$validate-code`,
//! `CodeSystem/$validate-code` and `CodeSystem/$lookup`, cached like every lookup, and [`TerminologyLookup::settle`], which
//! turns the validator's "could not check" warnings into answers.
//!
//! The validator stays synchronous and I/O-free: it reports each binding it cannot evaluate as a
//! warning and records it ([`crate::validation::UnresolvedBinding`]); the async callers
//! (`$validate`, validation on write) then ask this server. A member removes the warning; not a
//! member becomes an error for a required binding (a warning for extensible and preferred) with
//! the server's message; a server that cannot be reached leaves the warning, saying so; an answer
//! taken from the cache past its TTL adds a warning that says that. Codings of code systems not
//! held locally (recorded, never reported by the validator) are checked with
//! `CodeSystem/$validate-code`: a code the system lacks is an error.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::upstream::{Fetched, Upstream};
use super::{Lookup, LookupCache, LookupError, Settings};
use crate::fhir::outcome::{Issue, Severity};
use crate::validation::model::Strength;
use crate::validation::{UnresolvedBinding, UnresolvedCode, Validated};

/// The server's answer to `$validate-code` or `$lookup`.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeAnswer {
    /// `$validate-code`: the code is in the value set. `$lookup`: the code system defines it.
    pub result: bool,
    pub message: Option<String>,
    pub display: Option<String>,
}

/// The terminology server and its cache.
pub struct TerminologyLookup {
    up: Upstream,
    cache: LookupCache<Arc<CodeAnswer>>,
}

impl TerminologyLookup {
    pub fn new(c: &crate::config::UpstreamConfig, client: reqwest::Client) -> TerminologyLookup {
        TerminologyLookup {
            up: Upstream::new("terminology", &c.base_url, c.timeout_ms, client),
            cache: LookupCache::new("terminology", Settings::from_config(c)),
        }
    }

    pub(crate) fn cache(&self) -> &LookupCache<Arc<CodeAnswer>> {
        &self.cache
    }

    /// The server's base URL (for messages).
    pub fn base_url(&self) -> &str {
        &self.up.base
    }

    /// Is `code` (of `system`, if given) in the value set `value_set` (`url` or `url|version`)?
    /// `None`: the server does not know the value set (404).
    pub async fn validate_code(
        &self,
        value_set: &str,
        system: Option<&str>,
        code: &str,
    ) -> Result<Lookup<Option<Arc<CodeAnswer>>>, LookupError> {
        let mut query: Vec<(&'static str, String)> = Vec::new();
        push_canonical(&mut query, value_set, "url", "valueSetVersion");
        if let Some(s) = system {
            push_canonical(&mut query, s, "system", "systemVersion");
        }
        query.push(("code", code.to_string()));
        self.ask("ValueSet/$validate-code", query).await
    }

    /// Does the code system `system` (`url` or `url|version`) define `code`? `None`: the server
    /// does not know the code or the system (404).
    pub async fn lookup_code(
        &self,
        system: &str,
        code: &str,
    ) -> Result<Lookup<Option<Arc<CodeAnswer>>>, LookupError> {
        self.ask_code_system("CodeSystem/$lookup", "system", system, code)
            .await
    }

    /// `operation` about one code of a code system, named by `system_param`.
    async fn ask_code_system(
        &self,
        operation: &'static str,
        system_param: &'static str,
        system: &str,
        code: &str,
    ) -> Result<Lookup<Option<Arc<CodeAnswer>>>, LookupError> {
        let mut query = Vec::new();
        push_canonical(&mut query, system, system_param, "version");
        query.push(("code", code.to_string()));
        self.ask(operation, query).await
    }

    async fn ask(
        &self,
        operation: &'static str,
        query: Vec<(&'static str, String)>,
    ) -> Result<Lookup<Option<Arc<CodeAnswer>>>, LookupError> {
        let key = cache_key(operation, &query);
        let up = self.up.clone();
        self.cache
            .get(&key, move || async move {
                let pairs: Vec<(&str, &str)> =
                    query.iter().map(|(k, v)| (*k, v.as_str())).collect();
                match up.get_json(operation, &pairs).await? {
                    Fetched::NotFound => Ok(None),
                    Fetched::Json(body) => {
                        parse_answer(&up, operation, &body).map(|a| Some(Arc::new(a)))
                    }
                }
            })
            .await
    }

    /// Is `code` a code of the code system `system` (`url` or `url|version`)?
    /// (`CodeSystem/$validate-code`; `None`: the server does not know the code system.)
    pub async fn validate_in_code_system(
        &self,
        system: &str,
        code: &str,
    ) -> Result<Lookup<Option<Arc<CodeAnswer>>>, LookupError> {
        self.ask_code_system("CodeSystem/$validate-code", "url", system, code)
            .await
    }

    /// Settle what the validator could not judge locally, and return the issues with each
    /// binding's warning removed, turned into the server's verdict, or annotated, and an error
    /// for each coding the server says its code system does not define (see the module
    /// comment). Every distinct question is asked once, all concurrently.
    pub async fn settle(&self, validated: Validated) -> Vec<Issue> {
        let Validated {
            issues,
            unresolved,
            unknown_codes,
        } = validated;
        if unresolved.is_empty() && unknown_codes.is_empty() {
            return issues;
        }
        let mut notes = Vec::new();
        let mut out = self.settle_bindings(issues, &unresolved, &mut notes).await;
        // A coding a binding question already covers is not asked about twice.
        let asked: HashSet<(Option<&str>, &str)> = unresolved
            .iter()
            .flat_map(|u| u.codes.iter().map(|(s, c)| (s.as_deref(), c.as_str())))
            .collect();
        let codes: Vec<&UnresolvedCode> = unknown_codes
            .iter()
            .filter(|u| !asked.contains(&(Some(u.system.as_str()), u.code.as_str())))
            .collect();
        out.extend(self.settle_codes(&codes, &mut notes).await);
        notes.dedup();
        out.extend(notes);
        // Errors first, document order within a severity (as the validator orders them).
        out.sort_by_key(|i| i.severity);
        out
    }

    fn stale_note(&self, what: String, found_age: std::time::Duration, location: &str) -> Issue {
        Issue::warning(
            "informational",
            format!(
                "the terminology server {} could not be reached; the answer for {what} is a cached one, {} s old",
                self.up.base,
                found_age.as_secs()
            ),
        )
        .at(location)
    }

    async fn settle_bindings(
        &self,
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
        let answers = futures_util::future::join_all(
            questions
                .iter()
                .map(|(vs, s, c)| self.validate_code(vs, *s, c)),
        )
        .await;
        let answers: HashMap<_, _> = questions.into_iter().zip(answers).collect();

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
                    Ok(found) => {
                        if found.stale {
                            let what = format!("code {c:?} in value set {}", u.value_set);
                            notes.push(self.stale_note(what, found.age, &u.location));
                        }
                        match found.value.as_deref() {
                            Some(a) if a.result => members = true,
                            Some(a) => not_members.push((s, c, a.message.clone())),
                            None => unknown.push(format!(
                                "the terminology server {} does not know value set {}",
                                self.up.base, u.value_set
                            )),
                        }
                    }
                    Err(e) => unknown.push(format!("{e}")),
                }
            }
            let verdict = if members {
                Verdict::Member
            } else if unknown.is_empty() && !not_members.is_empty() {
                Verdict::NotMember(not_member_issue(u, &not_members, &self.up.base))
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
                    diagnostics: format!(
                        "{}; asked the terminology server: {why}",
                        issue.diagnostics
                    ),
                    ..issue
                }),
            }
        }
        out
    }

    /// Codings of code systems not held locally: an error where the server says the system has
    /// no such code (as for the systems we hold), a warning where it cannot say.
    async fn settle_codes(&self, codes: &[&UnresolvedCode], notes: &mut Vec<Issue>) -> Vec<Issue> {
        let mut questions: Vec<(&str, &str)> = codes
            .iter()
            .map(|u| (u.system.as_str(), u.code.as_str()))
            .collect();
        questions.sort_unstable();
        questions.dedup();
        let answers = futures_util::future::join_all(
            questions
                .iter()
                .map(|(s, c)| self.validate_in_code_system(s, c)),
        )
        .await;
        let answers: HashMap<_, _> = questions.into_iter().zip(answers).collect();
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
                Ok(found) => {
                    if found.stale {
                        let what = format!("code {code:?} of code system {system}");
                        notes.push(self.stale_note(what, found.age, &u.location));
                    }
                    match found.value.as_deref() {
                        Some(a) if a.result => {}
                        Some(a) => out.push(
                            Issue::error(
                                "code-invalid",
                                format!(
                                    "unknown code {code:?} in code system {system}, according to the terminology server {}{}",
                                    self.up.base,
                                    a.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
                                ),
                            )
                            .at(u.location.clone()),
                        ),
                        None => out.push(unchecked(format!(
                            "the terminology server {} does not know the code system",
                            self.up.base
                        ))),
                    }
                }
                Err(e) => out.push(unchecked(e.to_string())),
            }
        }
        out
    }
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

/// `url|version` as two parameters, a plain canonical as one.
fn push_canonical(
    query: &mut Vec<(&'static str, String)>,
    canonical: &str,
    url_param: &'static str,
    version_param: &'static str,
) {
    match canonical.rsplit_once('|') {
        Some((url, version)) if !version.is_empty() => {
            query.push((url_param, url.to_string()));
            query.push((version_param, version.to_string()));
        }
        Some((url, _)) => query.push((url_param, url.to_string())),
        None => query.push((url_param, canonical.to_string())),
    }
}

/// The cache key: the operation and its parameters as a query string, e.g.
/// `ValueSet/$validate-code?url=…&system=…&code=…` (what `DELETE /admin/caches/terminology?key=`
/// takes).
fn cache_key(operation: &str, query: &[(&'static str, String)]) -> String {
    format!(
        "{operation}?{}",
        serde_urlencoded::to_string(query).unwrap_or_default()
    )
}

/// A `Parameters` answer: `result` (for `$lookup`, a 200 itself means found), `message`, `display`.
fn parse_answer(up: &Upstream, operation: &str, body: &Value) -> Result<CodeAnswer, LookupError> {
    if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(up.bad(format!("{operation} did not answer with Parameters")));
    }
    let param = |name: &str| {
        body.get("parameter")
            .and_then(Value::as_array)?
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
    };
    let text = |name: &str| {
        param(name)
            .and_then(|p| p.get("valueString"))
            .and_then(Value::as_str)
            .map(String::from)
    };
    let result = match param("result").and_then(|p| p.get("valueBoolean")) {
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(up.bad(format!("{operation}: result is not a boolean"))),
        None if operation == "CodeSystem/$lookup" => true,
        None => return Err(up.bad(format!("{operation}: the answer has no result"))),
    };
    Ok(CodeAnswer {
        result,
        message: text("message"),
        display: text("display"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_readable_query_strings_and_versions_are_split() {
        let mut q = Vec::new();
        push_canonical(&mut q, "http://x/vs|2.0", "url", "valueSetVersion");
        q.push(("code", "a b".into()));
        assert_eq!(
            cache_key("ValueSet/$validate-code", &q),
            "ValueSet/$validate-code?url=http%3A%2F%2Fx%2Fvs&valueSetVersion=2.0&code=a+b"
        );
    }
}
