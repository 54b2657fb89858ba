//! A kick-off request checked into a job: every problem of its parameters reported together
//! (400), the types resolved against the caller's scopes (403 for a type asked for and not
//! granted, as search answers), a Group looked up as the caller would read it (404).

use fhir_core::fhir::outcome::Issue;
use fhir_core::fhir::ResourceType;

use super::{compartment_params, Exporter, Level, Spec};
use crate::auth::{Caller, Permission};
use crate::engine::Access;
use crate::error::FhirError;
use crate::store::{BulkJob, BulkStatus};

/// The `_outputFormat` values taken (all the same format: FHIR NDJSON).
pub const OUTPUT_FORMATS: &[&str] = &["application/fhir+ndjson", "application/ndjson", "ndjson"];

/// Kick-off parameters of the IG this server does not do, with why.
const NOT_SUPPORTED: &[(&str, &str)] = &[
    (
        "_elements",
        "exports hold whole resources; _elements is not supported",
    ),
    (
        "_typeElements",
        "exports hold whole resources; _typeElements is not supported",
    ),
    (
        "includeAssociatedData",
        "includeAssociatedData is not supported (no associated data is exported)",
    ),
    (
        "patient",
        "the patient parameter (POST kick-off) is not supported; use a Group of the patients",
    ),
    (
        "organizeOutputBy",
        "organizeOutputBy is not supported; files are organized by resource type",
    ),
    (
        "allowPartialManifests",
        "allowPartialManifests is not supported; the manifest is complete when the export is",
    ),
];

/// Search parameters a `_typeFilter` may not hold: they shape a result page, not which
/// resources match.
const PAGE_SHAPING: &[&str] = &[
    "_count",
    "_sort",
    "_include",
    "_revinclude",
    "_elements",
    "_summary",
    "_total",
    "_contained",
    "_containedType",
    "_page",
];

/// A kick-off as received.
pub struct KickOff<'a> {
    pub level: Level,
    pub query: &'a [(String, String)],
    /// Whether `Prefer: respond-async` was sent.
    pub respond_async: bool,
    /// The request URL as the client sent it (the manifest's `request`).
    pub request_url: String,
}

impl Exporter {
    /// Check a kick-off and store it as a new job (waking the runner); the job's id.
    pub async fn kick_off(
        &self,
        caller: &Caller,
        access: &Access,
        k: &KickOff<'_>,
    ) -> Result<String, FhirError> {
        let spec = self.check(access, k)?;
        if let Level::Group { id } = &spec.level {
            // 404 for a Group the caller cannot read, exactly as a read would answer.
            self.engine.read(access, ResourceType::GROUP, id).await?;
        }
        let active = self.engine.store().bulk_active(&caller.client.id).await?;
        if active >= self.config.max_active_per_client {
            return Err(FhirError::new(
                429,
                vec![Issue::error(
                    "throttled",
                    format!(
                        "client {} has {active} exports waiting or running (bulk.max_active_per_client); \
                         wait for one to finish or cancel one",
                        caller.client.id
                    ),
                )],
            ));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let job = BulkJob {
            id: id.clone(),
            client_id: caller.client.id.clone(),
            client_kind: caller.client.kind.as_str().to_string(),
            organizations: serde_json::to_string(&caller.client.organizations)
                .map_err(|e| FhirError::internal(e.to_string()))?,
            scopes: caller.scopes.to_string(),
            request: k.request_url.clone(),
            spec: serde_json::to_string(&spec).map_err(|e| FhirError::internal(e.to_string()))?,
            status: BulkStatus::Accepted,
            progress: "accepted".into(),
            created_ms: chrono::Utc::now().timestamp_millis(),
            transaction_ms: None,
            finished_ms: None,
            expires_ms: None,
            output: None,
            error: None,
            attempts: 0,
        };
        self.submit(&job).await?;
        Ok(id)
    }

    /// The job's spec from the parameters: 400 with every problem, 403 for a type asked for
    /// that the scopes do not let the caller search.
    fn check(&self, access: &Access, k: &KickOff<'_>) -> Result<Spec, FhirError> {
        let mut issues = Vec::new();
        if !k.respond_async {
            issues.push(Issue::error(
                "required",
                "a Bulk Data kick-off needs the header Prefer: respond-async",
            ));
        }
        let in_scope = |t: &str| match k.level {
            Level::System => true,
            _ => compartment_params(t).is_some(),
        };
        let mut types: Vec<ResourceType> = Vec::new();
        let mut since_ms = None;
        let mut filters: Vec<(String, String)> = Vec::new();
        let mut formats = 0;
        for (name, value) in k.query {
            match name.as_str() {
                "_outputFormat" => {
                    formats += 1;
                    if !OUTPUT_FORMATS.contains(&value.as_str()) {
                        issues.push(
                            Issue::error(
                                "not-supported",
                                format!(
                                    "_outputFormat {value:?} is not supported; use {}",
                                    OUTPUT_FORMATS.join(", ")
                                ),
                            )
                            .at("_outputFormat"),
                        );
                    }
                }
                "_since" => match parse_instant(value) {
                    Some(t) if since_ms.is_none() => since_ms = Some(t),
                    Some(_) => issues.push(
                        Issue::error("invalid", "_since may be given once").at("_since"),
                    ),
                    None => issues.push(
                        Issue::error(
                            "invalid",
                            format!(
                                "_since must be a FHIR instant with a time zone (2026-12-01T00:00:00Z), got {value:?}"
                            ),
                        )
                        .at("_since"),
                    ),
                },
                "_type" => {
                    for t in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                        let Some(rt) = ResourceType::parse(t) else {
                            issues.push(
                                Issue::error(
                                    "not-supported",
                                    format!("_type: resource type {t:?} is not supported by this server"),
                                )
                                .at("_type"),
                            );
                            continue;
                        };
                        if !in_scope(t) {
                            issues.push(
                                Issue::error(
                                    "not-supported",
                                    format!("_type: {t} is not in the Patient compartment, which a Patient or Group export covers"),
                                )
                                .at("_type"),
                            );
                        } else if !types.contains(&rt) {
                            types.push(rt);
                        }
                    }
                }
                "_typeFilter" => filters.push((name.clone(), value.clone())),
                // Checked by the request context (JSON only).
                "_format" => {}
                other => match NOT_SUPPORTED.iter().find(|(n, _)| *n == other) {
                    Some((_, why)) => {
                        issues.push(Issue::error("not-supported", *why).at(other))
                    }
                    None => issues.push(
                        Issue::error(
                            "not-supported",
                            format!(
                                "unknown kick-off parameter {other:?}; this server takes _outputFormat, _type, _since and _typeFilter"
                            ),
                        )
                        .at(other),
                    ),
                },
            }
        }
        if formats > 1 {
            issues.push(
                Issue::error("invalid", "_outputFormat may be given once").at("_outputFormat"),
            );
        }
        let explicit = !types.is_empty();
        let mut type_filters: Vec<(ResourceType, Vec<(String, String)>)> = Vec::new();
        for (_, value) in &filters {
            let Some((t, query)) = value.split_once('?') else {
                issues.push(
                    Issue::error(
                        "invalid",
                        format!("_typeFilter must be Type?search-parameters, got {value:?}"),
                    )
                    .at("_typeFilter"),
                );
                continue;
            };
            let Some(t) = ResourceType::parse(t) else {
                issues.push(
                    Issue::error(
                        "not-supported",
                        format!("_typeFilter: resource type {t:?} is not supported by this server"),
                    )
                    .at("_typeFilter"),
                );
                continue;
            };
            if (explicit && !types.contains(&t)) || !in_scope(&t) {
                issues.push(
                    Issue::error(
                        "invalid",
                        format!(
                            "_typeFilter names {t}, which this export does not cover (see _type)"
                        ),
                    )
                    .at("_typeFilter"),
                );
                continue;
            }
            if type_filters.iter().any(|(x, _)| *x == t) {
                issues.push(
                    Issue::error(
                        "not-supported",
                        format!("_typeFilter: more than one filter for {t} is not supported; combine the parameters in one"),
                    )
                    .at("_typeFilter"),
                );
                continue;
            }
            let pairs: Vec<(String, String)> = match serde_urlencoded::from_str(query) {
                Ok(p) => p,
                Err(e) => {
                    issues.push(
                        Issue::error("invalid", format!("_typeFilter {value:?}: {e}"))
                            .at("_typeFilter"),
                    );
                    continue;
                }
            };
            let mut ok = true;
            for (n, _) in &pairs {
                let base = n.split(':').next().unwrap_or(n);
                if PAGE_SHAPING.contains(&base) {
                    ok = false;
                    issues.push(
                        Issue::error(
                            "not-supported",
                            format!("_typeFilter {value:?}: {n} is not allowed in a type filter, which selects resources only"),
                        )
                        .at("_typeFilter"),
                    );
                }
            }
            if !ok {
                continue;
            }
            if let Err(e) = self.engine.parse_pairs(t, &pairs, false) {
                for i in e.issues {
                    let diagnostics = format!("_typeFilter {value:?}: {}", i.diagnostics);
                    issues.push(Issue {
                        diagnostics,
                        expression: Some("_typeFilter".into()),
                        ..i
                    });
                }
                continue;
            }
            type_filters.push((t, pairs));
        }
        if !issues.is_empty() {
            return Err(FhirError::new(400, issues));
        }
        if let Level::Group { .. } = k.level {
            access.permit(&ResourceType::GROUP, Permission::Read)?;
        }
        let types = if explicit {
            for t in &types {
                access.permit(t, Permission::Search)?;
            }
            types
        } else {
            let candidates: Vec<ResourceType> = match k.level {
                Level::System => ResourceType::all().collect(),
                _ => super::PATIENT_COMPARTMENT
                    .iter()
                    .filter_map(|(t, _)| ResourceType::parse(t))
                    .collect(),
            };
            let granted: Vec<ResourceType> = candidates
                .into_iter()
                .filter(|t| access.permit(t, Permission::Search).is_ok())
                .collect();
            if granted.is_empty() {
                access.permit_all_types(Permission::Search)?;
            }
            granted
        };
        Ok(Spec {
            level: k.level.clone(),
            types,
            since_ms,
            type_filters,
        })
    }
}

/// A FHIR instant (with a time zone) in milliseconds since the epoch.
/// A dateTime with seconds and a time zone (the one date/time type's reading), as epoch
/// milliseconds.
fn parse_instant(s: &str) -> Option<i64> {
    fhir_core::fhir::datetime::full_date_time(s).map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_need_a_time_zone() {
        assert_eq!(parse_instant("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(
            parse_instant("2026-12-01T01:00:00+01:00"),
            parse_instant("2026-12-01T00:00:00Z")
        );
        assert_eq!(parse_instant("2026-12-01"), None);
        assert_eq!(parse_instant("2026-12-01T00:00:00"), None);
    }

    #[test]
    fn the_compartment_table_names_only_served_types_and_their_parameters() {
        let registry = fhir_core::fhir::search_params::SearchParamRegistry::embedded();
        for (t, params) in super::super::PATIENT_COMPARTMENT {
            assert!(ResourceType::parse(t).is_some(), "{t}");
            for p in *params {
                assert!(registry.get(t, p).is_some(), "{t}.{p}");
            }
        }
    }
}
