//! A FHIR terminology server for what local packages do not hold: `ValueSet/$validate-code`,
//! `CodeSystem/$validate-code` and `CodeSystem/$lookup`, cached like every lookup. It implements
//! the core's [`TerminologyServer`], so `fhir_core::validation::settle::settle` can turn the
//! validator's "could not check" warnings into this server's answers (an answer taken from the
//! cache past its TTL is marked stale).

use std::sync::Arc;

use serde_json::Value;

use super::upstream::{Fetched, Upstream};
use super::{Lookup, LookupCache, LookupError, Settings};
use fhir_core::validation::settle::{Answer, TerminologyServer};

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
}

/// The validator's questions go to this server (through the cache); the rules that turn the
/// answers into issues are the core's (`fhir_core::validation::settle`).
impl TerminologyServer for TerminologyLookup {
    fn name(&self) -> &str {
        &self.up.base
    }

    async fn validate_code(&self, value_set: &str, system: Option<&str>, code: &str) -> Answer {
        answer(TerminologyLookup::validate_code(self, value_set, system, code).await)
    }

    async fn validate_in_code_system(&self, system: &str, code: &str) -> Answer {
        answer(TerminologyLookup::validate_in_code_system(self, system, code).await)
    }
}

fn answer(found: Result<Lookup<Option<Arc<CodeAnswer>>>, LookupError>) -> Answer {
    match found {
        Ok(found) => match found.value.as_deref() {
            Some(a) => Answer::Known {
                member: a.result,
                message: a.message.clone(),
                stale: found.stale.then_some(found.age),
            },
            None => Answer::UnknownToServer,
        },
        Err(e) => Answer::Failed(e.to_string()),
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
