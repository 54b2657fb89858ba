//! The stored Questionnaires, as the validator's [`QuestionnaireSource`]: a QuestionnaireResponse
//! written to the gateway is checked against the Questionnaire it names when that is not
//! contained, in its Bundle or in the loaded packages, but stored here (visible to the writer).
//! One that cannot be found stays a warning on the write.

use serde_json::Value;

use fhir_core::validation::questionnaire::QuestionnaireSource;

use super::Engine;
use crate::store::Visibility;
use fhir_core::fhir::ResourceType;

pub(crate) struct StoredQuestionnaires<'a> {
    pub engine: &'a Engine,
    /// What the writer may read: a Questionnaire of another tenant is not consulted.
    pub vis: Visibility,
}

impl StoredQuestionnaires<'_> {
    async fn find(&self, canonical: &str) -> Option<Value> {
        let (url, version) = match canonical.split_once('|') {
            Some((u, v)) => (u, Some(v)),
            None => (canonical, None),
        };
        // A literal reference (`Questionnaire/id`), as STU3 content and some clients write it.
        let pairs = match url
            .strip_prefix("Questionnaire/")
            .filter(|id| fhir_core::fhir::is_valid_id(id))
        {
            Some(id) => vec![("_id".to_string(), id.to_string())],
            None => {
                let mut pairs = vec![("url".to_string(), url.to_string())];
                if let Some(v) = version {
                    pairs.push(("version".to_string(), v.to_string()));
                }
                pairs
            }
        };
        let q = self
            .engine
            .parse_pairs(ResourceType::QUESTIONNAIRE, &pairs, false)
            .ok()?;
        match self.engine.store.search(&q, 1, &self.vis).await {
            Ok(hits) => hits
                .into_iter()
                .next()
                .and_then(|h| parse(h.resource.content)),
            Err(e) => {
                tracing::warn!(questionnaire = canonical, error = %e, "searching the stored Questionnaires for validation failed");
                None
            }
        }
    }
}

fn parse(content: Option<String>) -> Option<Value> {
    serde_json::from_str(&content?).ok()
}

impl QuestionnaireSource for StoredQuestionnaires<'_> {
    async fn questionnaire(&self, canonical: &str) -> Option<Value> {
        self.find(canonical).await
    }
}
