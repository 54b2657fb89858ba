//! Search orchestration: run the page query, add `_include`/`_revinclude` resources, build the
//! searchset Bundle with `self`/`next` links whose cursors stay valid while others write.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{json, Value};

use super::bundle_json::{self, BundleEntry};
use super::{link, now_ms, Access, Engine};
use crate::auth::Permission;
use crate::config::CacheConfig;
use crate::error::FhirError;
use crate::store::{Dependencies, SearchHit, StoredResource};
use fhir_core::fhir::outcome::operation_outcome;
use fhir_core::fhir::search::{
    apply_elements, apply_summary, Cursor, Include, Match, SearchQuery, Summary, Total,
};
use fhir_core::fhir::search_params::IndexValue;
use fhir_core::fhir::{instant, new_id, ResourceType};

/// The most resources `_include`/`_revinclude` add to one page.
const MAX_INCLUDED: usize = 1000;

/// How every searchset Bundle starts; `id` and `meta` follow, then the cacheable rest.
const BUNDLE_START: &str = "{\"resourceType\":\"Bundle\",";

/// Rendered search pages (everything but the Bundle's `id` and `meta`), by base URL and query,
/// each valid while no resource of a type it was computed from has been written since (see
/// [`Storage::generation`](crate::store::Storage::generation)).
pub(crate) struct PageCache {
    pages: moka::sync::Cache<String, Arc<CachedPage>>,
}

struct CachedPage {
    /// What the page was computed from, and their generation then.
    dependencies: Dependencies,
    generation: u64,
    rest: String,
}

impl PageCache {
    pub(crate) fn new(config: &CacheConfig) -> PageCache {
        PageCache {
            pages: moka::sync::Cache::builder()
                .max_capacity(config.searches_mib.saturating_mul(1 << 20))
                .time_to_live(std::time::Duration::from_secs(
                    config.max_staleness_secs.max(1),
                ))
                .weigher(|k: &String, p: &Arc<CachedPage>| {
                    u32::try_from(k.len() + p.rest.len() + 64).unwrap_or(u32::MAX)
                })
                .build(),
        }
    }
}

/// The types a search page is computed from: its own, chain targets and `_has` sources, and included types.
fn dependencies(q: &SearchQuery) -> Dependencies {
    fn chain_targets(m: &Match, out: &mut Vec<String>) {
        if let Some((target, inner)) = m.sub_search() {
            out.push(target.to_string());
            for m in &inner.any_of {
                chain_targets(m, out);
            }
        }
    }
    let mut types = vec![q.rtype.to_string()];
    for f in &q.filters {
        for m in &f.any_of {
            chain_targets(m, &mut types);
        }
    }
    for inc in &q.includes {
        match &inc.target_type {
            Some(t) => types.push(t.clone()),
            None => return Dependencies::All,
        }
    }
    types.extend(q.revincludes.iter().map(|i| i.source_type.clone()));
    Dependencies::Types(types)
}

/// The cache key of a parsed query's page: everything that shapes its text.
fn page_key(access: &Access, q: &SearchQuery, base: &str) -> String {
    let mut key = String::with_capacity(128);
    key.push_str("q\0");
    key.push_str(access.cache_key());
    key.push('\0');
    key.push_str(base);
    key.push('\0');
    key.push_str(&q.rtype);
    for (k, v) in &q.canonical_params {
        key.push('\0');
        key.push_str(k);
        key.push('=');
        key.push_str(v);
    }
    key.push('\0');
    if let Some(after) = &q.after {
        key.push_str(&after.encode());
    }
    key.push('\0');
    key.push_str(&q.count.to_string());
    key
}

/// The cache key of a search request as received: parsing is deterministic (the registry is
/// built in), so equal requests parse to equal queries and a page cached for one serves the
/// other without parsing again. Requests that fail to parse are never cached. What a page holds
/// depends on the caller's tenancy and scopes, so they are part of the key.
fn request_key(
    access: &Access,
    rtype: &str,
    pairs: &[(String, String)],
    lenient: bool,
    base: &str,
) -> String {
    let mut key = String::with_capacity(128);
    key.push_str(if lenient { "l\0" } else { "r\0" });
    key.push_str(access.cache_key());
    key.push('\0');
    key.push_str(base);
    key.push('\0');
    key.push_str(rtype);
    for (k, v) in pairs {
        key.push('\0');
        key.push_str(k);
        key.push('=');
        key.push_str(v);
    }
    key
}

impl Engine {
    /// A cached page under `key`, if nothing it was computed from has been written since.
    fn cached_page(&self, key: &str) -> Option<String> {
        let page = self.pages.as_ref()?.pages.get(key)?;
        let current = self.store().generation(&page.dependencies)?;
        (current == page.generation).then(|| finish_bundle(&page.rest))
    }

    /// Compute the page of `q` and keep it under `key`.
    async fn compute_page(
        &self,
        access: &Access,
        q: &SearchQuery,
        base: &str,
        key: Option<String>,
    ) -> Result<String, FhirError> {
        // Pages that report ignored parameters are not cached (the report is not in the key).
        let key = key.filter(|_| self.pages.is_some() && q.ignored.is_empty());
        let Some(key) = key else {
            let rest = self.search_page(access, q, base).await?;
            return Ok(finish_bundle(&rest));
        };
        let dependencies = dependencies(q);
        // Noted before the database is asked: a write committed meanwhile makes the page stale.
        let generation = self.store().generation(&dependencies);
        let rest = self.search_page(access, q, base).await?;
        let body = finish_bundle(&rest);
        if let (Some(generation), Some(cache)) = (generation, &self.pages) {
            cache.pages.insert(
                key,
                Arc::new(CachedPage {
                    dependencies,
                    generation,
                    rest,
                }),
            );
        }
        Ok(body)
    }

    /// Run a search and return the searchset Bundle as JSON text.
    pub async fn search(
        &self,
        access: &Access,
        q: &SearchQuery,
        base: &str,
    ) -> Result<String, FhirError> {
        access.permit(&q.rtype, Permission::Search)?;
        let key = self.pages.as_ref().map(|_| page_key(access, q, base));
        if let Some(page) = key.as_deref().and_then(|k| self.cached_page(k)) {
            return Ok(page);
        }
        self.settle(&q.rtype).await;
        self.compute_page(access, q, base, key).await
    }

    /// Parse and run a search request (`GET /{type}?…`), answering a repeated request from the
    /// page cache without parsing it again.
    pub async fn search_request(
        &self,
        access: &Access,
        rtype: ResourceType,
        pairs: &[(String, String)],
        lenient: bool,
        base: &str,
    ) -> Result<String, FhirError> {
        access.permit(&rtype, Permission::Search)?;
        let key = self
            .pages
            .as_ref()
            .map(|_| request_key(access, &rtype, pairs, lenient, base));
        if let Some(page) = key.as_deref().and_then(|k| self.cached_page(k)) {
            return Ok(page);
        }
        let q = self.parse_pairs(rtype, pairs, lenient)?;
        self.settle(&rtype).await;
        self.compute_page(access, &q, base, key).await
    }

    /// The searchset Bundle without its start, `id` and `meta`.
    async fn search_page(
        &self,
        access: &Access,
        q: &SearchQuery,
        base: &str,
    ) -> Result<String, FhirError> {
        let vis = access.readable();
        let mut head = json!({
            "resourceType": "Bundle",
            "type": "searchset",
        });
        let mut self_params = q.canonical_params.clone();
        if let Some(after) = &q.after {
            self_params.push(("_page".into(), after.encode()));
        }
        let mut links =
            vec![json!({"relation": "self", "url": link(base, &q.rtype, &self_params)})];

        // R4: `_count=0` is treated as `_summary=count` (the total, no entries, no paging links;
        // fhirpy's count() sends it). Paged, it would answer empty pages with next links forever.
        if q.summary == Summary::Count || q.count == 0 {
            head["total"] = json!(self.store().count(q, &vis).await?);
            head["link"] = json!(links);
            return rest_of(bundle_json::write(head, self.outcome_entry(q)));
        }

        let mut hits = self.store().search(q, q.count + 1, &vis).await?;
        let mut has_next = hits.len() > q.count;
        hits.truncate(q.count);
        // A page of large resources ends early (at least one match each), so the Bundle built
        // from it stays within `search.max_page_bytes`; the next link goes on from there.
        let fit = page_fit(&hits, self.search.max_page_bytes);
        if fit < hits.len() {
            hits.truncate(fit);
            has_next = true;
        }
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
            Total::Accurate => head["total"] = json!(self.store().count(q, &vis).await?),
            Total::Auto if !has_next && q.after.is_none() => head["total"] = json!(hits.len()),
            _ => {}
        }
        head["link"] = json!(links);

        let matches: Vec<StoredResource> = hits.into_iter().map(|h| h.resource).collect();
        let included = self.included(access, q, &matches).await?;
        let mut entries = Vec::with_capacity(matches.len() + included.len() + 1);
        for r in &matches {
            entries.push(self.entry(base, r, "match", q)?);
        }
        for r in &included {
            entries.push(self.entry(base, r, "include", q)?);
        }
        entries.extend(self.outcome_entry(q));
        rest_of(bundle_json::write(head, entries))
    }

    fn entry(
        &self,
        base: &str,
        r: &StoredResource,
        mode: &str,
        q: &SearchQuery,
    ) -> Result<BundleEntry, FhirError> {
        let raw = r.content.clone().unwrap_or_default();
        let subset = mode == "match" && (q.elements.is_some() || q.summary.subsets());
        let resource = if subset {
            let mut v: Value = serde_json::from_str(&raw)
                .map_err(|e| FhirError::internal(format!("stored resource unreadable: {e}")))?;
            if let Some(el) = &q.elements {
                apply_elements(&mut v, el);
            }
            apply_summary(&mut v, q.summary);
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
    /// Included resources obey the caller's tenancy (in SQL for `_revinclude`, per resource
    /// for `_include`) and scopes: a type it may not read is left out.
    async fn included(
        &self,
        access: &Access,
        q: &SearchQuery,
        matches: &[StoredResource],
    ) -> Result<Vec<StoredResource>, FhirError> {
        if q.includes.is_empty() && q.revincludes.is_empty() {
            return Ok(Vec::new());
        }
        let vis = access.readable();
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
                for r in self.store().read_many(&keys).await? {
                    if self.visible(access, &r).await? {
                        found.push(r);
                    }
                }
            }
            for inc in q.revincludes.iter().filter(|i| round == 0 || i.iterate) {
                let targets: Vec<(String, String)> = frontier
                    .iter()
                    .filter(|r| inc.target_type.as_ref().is_none_or(|t| *t == r.rtype))
                    .map(|r| (r.rtype.clone(), r.id.clone()))
                    .collect();
                found.extend(
                    self.store()
                        .referencing(inc, &targets, MAX_INCLUDED, &vis)
                        .await?,
                );
            }
            let mut next = Vec::new();
            for r in found {
                if out.len() >= MAX_INCLUDED {
                    break;
                }
                if !access.scopes().allows(&r.rtype, Permission::Read) {
                    continue;
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

    /// Cache rendered search pages (in `cache.searches_mib`, next to the store's own caches);
    /// see [`PageCache`].
    pub fn with_page_cache(mut self, config: &CacheConfig) -> Engine {
        self.pages = Some(PageCache::new(config));
        self
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

/// A Bundle written as JSON without its start.
fn rest_of(body: String) -> Result<String, FhirError> {
    match body.strip_prefix(BUNDLE_START) {
        Some(rest) => Ok(rest.to_string()),
        None => Err(FhirError::internal(
            "searchset Bundle rendered unexpectedly",
        )),
    }
}

/// The full Bundle: a new `id` and `meta.lastUpdated` in front of the rest.
fn finish_bundle(rest: &str) -> String {
    let id = new_id();
    let updated = instant(now_ms());
    let mut out = String::with_capacity(BUNDLE_START.len() + rest.len() + 96);
    out.push_str(BUNDLE_START);
    out.push_str("\"id\":\"");
    out.push_str(&id);
    out.push_str("\",\"meta\":{\"lastUpdated\":\"");
    out.push_str(&updated);
    out.push_str("\"},");
    out.push_str(rest);
    out
}

/// How many of `hits` (at least one) fit in `max_bytes` of stored resource text.
fn page_fit(hits: &[SearchHit], max_bytes: usize) -> usize {
    let mut total = 0usize;
    for (n, h) in hits.iter().enumerate() {
        total = total.saturating_add(h.resource.content.as_ref().map_or(0, String::len));
        if total > max_bytes {
            return n.max(1);
        }
    }
    hits.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_bundle_is_valid_json_with_id_and_meta_first() {
        let rest =
            rest_of(json!({"resourceType": "Bundle", "type": "searchset", "total": 0}).to_string())
                .expect("rest");
        let body = finish_bundle(&rest);
        let v: Value = serde_json::from_str(&body).expect("JSON");
        let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["resourceType", "id", "meta", "type", "total"]);
        assert!(v["meta"]["lastUpdated"].is_string());
        assert_ne!(finish_bundle(&rest), body, "every Bundle gets its own id");
    }
}
