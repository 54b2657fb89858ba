//! Reads: read, vread, history, and what a caller may see of a resource.

use super::*;

impl Engine {
    /// The current version; 404 when unknown (or outside the caller's tenancy), 410 when deleted.
    pub async fn read(
        &self,
        access: &Access,
        rtype: ResourceType,
        id: &str,
    ) -> Result<StoredResource, FhirError> {
        Self::check_id(id)?;
        access.permit(&rtype, Permission::Read)?;
        self.settle(&rtype).await;
        let found = self.store.read(&rtype, id).await?;
        let found = match found {
            Some(r) if self.visible(access, &r).await? => Some(r),
            _ => None,
        };
        match found {
            None => Err(unknown(&rtype, id)),
            Some(r) if r.deleted => Err(FhirError::gone(format!(
                "{rtype}/{id} was deleted (version {})",
                r.version
            ))),
            Some(r) => Ok(r),
        }
    }

    /// One version; 404 when that version does not exist (or is outside the caller's
    /// tenancy), 410 when it is a deletion.
    pub async fn vread(
        &self,
        access: &Access,
        rtype: ResourceType,
        id: &str,
        version: &str,
    ) -> Result<StoredResource, FhirError> {
        Self::check_id(id)?;
        access.permit(&rtype, Permission::Read)?;
        let v: i64 = version.parse().map_err(|_| {
            FhirError::not_found(format!("{version:?} is not a version of {rtype}/{id}"))
        })?;
        self.settle(&rtype).await;
        let found = self.store.vread(&rtype, id, v).await?;
        let found = match found {
            Some(r) if self.visible(access, &r).await? => Some(r),
            _ => None,
        };
        match found {
            None => Err(FhirError::not_found(format!(
                "{rtype}/{id} has no version {v}"
            ))),
            Some(r) if r.deleted => Err(FhirError::gone(format!(
                "version {v} of {rtype}/{id} is a deletion"
            ))),
            Some(r) => Ok(r),
        }
    }

    /// A history Bundle (newest first), paged with `_count`, `_since` and `_page`.
    pub async fn history(
        &self,
        access: &Access,
        scope: HistoryScope<'_>,
        pairs: &[(String, String)],
        base: &str,
    ) -> Result<String, FhirError> {
        let mut count = self.search.default_count;
        let mut since_ms = None;
        let mut before_seq = None;
        let mut errors = Vec::new();
        for (k, v) in pairs {
            match k.as_str() {
                "_count" => match v.parse::<usize>() {
                    Ok(n) => count = n.min(self.search.max_count),
                    Err(_) => errors.push(
                        Issue::error("invalid", "_count must be a whole number")
                            .at(format!("{k}={v}")),
                    ),
                },
                "_since" => match fhir_core::fhir::search_params::date_range(v) {
                    Some((lo, _)) => since_ms = Some(lo),
                    None => errors.push(
                        Issue::error("invalid", "_since must be a FHIR instant")
                            .at(format!("{k}={v}")),
                    ),
                },
                "_page" => match v.parse::<i64>() {
                    Ok(n) => before_seq = Some(n),
                    Err(_) => errors.push(
                        Issue::error("invalid", "_page is not a paging token this server issued")
                            .at(format!("{k}={v}")),
                    ),
                },
                "_format" | "_pretty" => {}
                _ => errors.push(
                    Issue::error(
                        "not-supported",
                        format!("history does not support parameter {k:?}"),
                    )
                    .at(format!("{k}={v}")),
                ),
            }
        }
        if !errors.is_empty() {
            return Err(FhirError::new(400, errors));
        }
        let (rtype_id, path) = match scope {
            HistoryScope::System => {
                access.permit_all_types(Permission::Search)?;
                (None, String::from("_history"))
            }
            HistoryScope::Type(t) => {
                access.permit(&t, Permission::Search)?;
                (None, format!("{t}/_history"))
            }
            HistoryScope::Instance(t, id) => {
                Self::check_id(id)?;
                access.permit(&t, Permission::Read)?;
                (Some((t, id)), format!("{t}/{id}/_history"))
            }
        };
        // Versions outside the caller's tenancy are left out in SQL: an instance whose every
        // version is outside answers as an unknown one.
        let visibility = access.readable();
        let rows = self
            .store
            .history(&HistoryQuery {
                scope,
                since_ms,
                before_seq,
                limit: count + 1,
                visibility: &visibility,
            })
            .await?;
        if let (Some((t, id)), true) = (rtype_id, rows.is_empty() && before_seq.is_none()) {
            return Err(unknown(&t, id));
        }
        let has_next = rows.len() > count;
        let rows = &rows[..rows.len().min(count)];
        let mut keep: Vec<(String, String)> = pairs
            .iter()
            .filter(|(k, _)| k != "_page")
            .cloned()
            .collect();
        let self_link = link(base, &path, pairs);
        let mut links = vec![json!({"relation": "self", "url": self_link})];
        if let (true, Some((seq, _))) = (has_next, rows.last()) {
            keep.push(("_page".into(), seq.to_string()));
            links.push(json!({"relation": "next", "url": link(base, &path, &keep)}));
        }
        let entries = rows
            .iter()
            .map(|(_, r)| bundle_json::history_entry(base, r))
            .collect();
        let mut head = json!({
            "resourceType": "Bundle",
            "id": new_id(),
            "meta": {"lastUpdated": instant(now_ms())},
            "type": "history",
            "link": links,
        });
        if !has_next && before_seq.is_none() {
            head["total"] = json!(rows.len());
        }
        Ok(bundle_json::write(head, entries))
    }

    /// Whether the caller may see `r`: by owner or type without a query, else by a grant.
    pub(crate) async fn visible(
        &self,
        access: &Access,
        r: &StoredResource,
    ) -> Result<bool, FhirError> {
        let vis = access.readable();
        if let Some(answer) = vis.decides(&r.rtype, r.owner.as_deref()) {
            return Ok(answer);
        }
        match (&r.owner, &r.citizen) {
            (Some(owner), Some(citizen)) => Ok(self
                .store
                .granted(access.organizations(), owner, citizen)
                .await?),
            _ => Ok(false),
        }
    }
}
