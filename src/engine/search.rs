//! Search orchestration: run the page query, add `_include`/`_revinclude` resources, build the
//! searchset Bundle with `self`/`next` links whose cursors stay valid while others write.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::bundle_json::{self, BundleEntry};
use super::{link, now_ms, Engine};
use crate::error::FhirError;
use crate::fhir::outcome::operation_outcome;
use crate::fhir::search::{
    apply_elements, apply_summary_data, Cursor, Include, SearchQuery, Summary, Total,
};
use crate::fhir::search_params::IndexValue;
use crate::fhir::{instant, new_id};
use crate::store::StoredResource;

/// The most resources `_include`/`_revinclude` add to one page.
const MAX_INCLUDED: usize = 1000;

impl Engine {
    /// Run a search and return the searchset Bundle as JSON text.
    pub async fn search(&self, q: &SearchQuery, base: &str) -> Result<String, FhirError> {
        self.check_type(&q.rtype)?;
        let mut head = json!({
            "resourceType": "Bundle",
            "id": new_id(),
            "meta": {"lastUpdated": instant(now_ms())},
            "type": "searchset",
        });
        let mut self_params = q.canonical_params.clone();
        if let Some(after) = &q.after {
            self_params.push(("_page".into(), after.encode()));
        }
        let mut links =
            vec![json!({"relation": "self", "url": link(base, &q.rtype, &self_params)})];

        if q.summary == Summary::Count {
            head["total"] = json!(self.store().count(q).await?);
            head["link"] = json!(links);
            return Ok(bundle_json::write(head, self.outcome_entry(q)));
        }

        let mut hits = self.store().search(q, q.count + 1).await?;
        let has_next = hits.len() > q.count;
        hits.truncate(q.count);
        if let (true, Some(last)) = (has_next, hits.last()) {
            let mut next = q.canonical_params.clone();
            let cursor = Cursor {
                values: last.sort_values.clone(),
                seq: last.seq,
            };
            next.push(("_page".into(), cursor.encode()));
            links.push(json!({"relation": "next", "url": link(base, &q.rtype, &next)}));
        }
        match q.total {
            Total::Accurate => head["total"] = json!(self.store().count(q).await?),
            Total::Auto if !has_next && q.after.is_none() => head["total"] = json!(hits.len()),
            _ => {}
        }
        head["link"] = json!(links);

        let matches: Vec<StoredResource> = hits.into_iter().map(|h| h.resource).collect();
        let included = self.included(q, &matches).await?;
        let mut entries = Vec::with_capacity(matches.len() + included.len() + 1);
        for r in &matches {
            entries.push(self.entry(base, r, "match", q)?);
        }
        for r in &included {
            entries.push(self.entry(base, r, "include", q)?);
        }
        entries.extend(self.outcome_entry(q));
        Ok(bundle_json::write(head, entries))
    }

    fn entry(
        &self,
        base: &str,
        r: &StoredResource,
        mode: &str,
        q: &SearchQuery,
    ) -> Result<BundleEntry, FhirError> {
        let raw = r.content.clone().unwrap_or_default();
        let subset = mode == "match" && (q.elements.is_some() || q.summary == Summary::Data);
        let resource = if subset {
            let mut v: Value = serde_json::from_str(&raw)
                .map_err(|e| FhirError::internal(format!("stored resource unreadable: {e}")))?;
            if let Some(el) = &q.elements {
                apply_elements(&mut v, el);
            }
            if q.summary == Summary::Data {
                apply_summary_data(&mut v);
            }
            v.to_string()
        } else {
            raw
        };
        Ok(BundleEntry {
            fields: json!({
                "fullUrl": format!("{base}/{}/{}", r.rtype, r.id),
                "search": {"mode": mode},
            }),
            resource: Some(resource),
        })
    }

    /// Parameters ignored under lenient handling, reported as an `outcome` entry.
    fn outcome_entry(&self, q: &SearchQuery) -> Vec<BundleEntry> {
        if q.ignored.is_empty() {
            return Vec::new();
        }
        vec![BundleEntry {
            fields: json!({"search": {"mode": "outcome"}}),
            resource: Some(operation_outcome(&q.ignored).to_string()),
        }]
    }

    /// Resources named by `_include` and `_revinclude` (iterated once for `:iterate`), without
    /// the matches themselves or duplicates.
    async fn included(
        &self,
        q: &SearchQuery,
        matches: &[StoredResource],
    ) -> Result<Vec<StoredResource>, FhirError> {
        if q.includes.is_empty() && q.revincludes.is_empty() {
            return Ok(Vec::new());
        }
        let mut seen: BTreeSet<(String, String)> = matches
            .iter()
            .map(|r| (r.rtype.clone(), r.id.clone()))
            .collect();
        let mut out: Vec<StoredResource> = Vec::new();
        let mut frontier: Vec<StoredResource> = matches.to_vec();
        for round in 0..2 {
            let mut found = Vec::new();
            for inc in q.includes.iter().filter(|i| round == 0 || i.iterate) {
                let keys = self.references_of(inc, &frontier, &seen)?;
                found.extend(self.store().read_many(&keys).await?);
            }
            for inc in q.revincludes.iter().filter(|i| round == 0 || i.iterate) {
                let targets: Vec<(String, String)> = frontier
                    .iter()
                    .filter(|r| inc.target_type.as_ref().is_none_or(|t| *t == r.rtype))
                    .map(|r| (r.rtype.clone(), r.id.clone()))
                    .collect();
                found.extend(
                    self.store()
                        .referencing(inc, &targets, MAX_INCLUDED)
                        .await?,
                );
            }
            let mut next = Vec::new();
            for r in found {
                if out.len() >= MAX_INCLUDED {
                    break;
                }
                if seen.insert((r.rtype.clone(), r.id.clone())) {
                    out.push(r.clone());
                    next.push(r);
                }
            }
            if next.is_empty() {
                break;
            }
            frontier = next;
        }
        Ok(out)
    }

    /// `(type, id)` of the resources `inc` points to from `sources`, not yet `seen`.
    fn references_of(
        &self,
        inc: &Include,
        sources: &[StoredResource],
        seen: &BTreeSet<(String, String)>,
    ) -> Result<Vec<(String, String)>, FhirError> {
        let mut keys = BTreeSet::new();
        for r in sources.iter().filter(|r| r.rtype == inc.source_type) {
            let Some(raw) = &r.content else { continue };
            let v: Value = serde_json::from_str(raw)
                .map_err(|e| FhirError::internal(format!("stored resource unreadable: {e}")))?;
            for entry in self.registry().extract(&v) {
                if inc.param != "*" && entry.param != inc.param {
                    continue;
                }
                if let IndexValue::Reference { rtype, id } = entry.value {
                    if inc.target_type.as_ref().is_some_and(|t| *t != rtype) {
                        continue;
                    }
                    let key = (rtype, id);
                    if !seen.contains(&key) {
                        keys.insert(key);
                    }
                }
            }
        }
        Ok(keys.into_iter().collect())
    }
}
