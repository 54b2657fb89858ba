//! Lookups of things the gateway does not own — citizens in a patient registry, organizations
//! in an organization registry, codes on a terminology server, issuers' signing keys — each
//! behind a cache ([`cache::LookupCache`]) so that a slow, rate-limited or failing upstream
//! neither slows every request nor takes the gateway down with it.
//!
//! Every upstream is optional (`[lookups.*]` in the config); [`Lookups`] answers
//! [`LookupError::NotConfigured`] for one that is not configured, and callers fall back to local
//! data. This room does HTTP towards upstreams and nothing else: no SQL, no HTTP serving.
//!
//! How a handler uses it (e.g. filling a municipal record that carries only a CPR number):
//!
//! ```ignore
//! let cpr = Identifier::new("urn:oid:1.2.208.176.1.2", &record.cpr)?;
//! match state.lookups.patient_by_identifier(&cpr).await {
//!     Ok(found) => {
//!         if let Some(patient) = &found.value { fill_demographics(&mut resource, patient); }
//!         if found.stale { stale.push("patients") } // → api::response::mark_stale
//!     }
//!     Err(LookupError::NotConfigured(_)) => { /* keep the record as sent */ }
//!     Err(e) => return Err(e.into()), // 502/503 OperationOutcome
//! }
//! // Routing a discharge: the receiver's FHIR messaging endpoint, if the registry has one.
//! let sor = Identifier::new("urn:oid:1.2.208.176.1.1", receiver_sor)?;
//! let org = state.lookups.organization_by_identifier(&sor).await?;
//! let endpoint = org.value.as_deref().and_then(|o| o.active_endpoint("hl7-fhir-msg"));
//! ```

pub mod cache;
pub mod jwks;
pub mod oauth;
pub mod registry;
mod stats;
pub mod terminology;
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::config::LookupsConfig;
pub use cache::{LookupCache, Settings};
pub use registry::{fill_demographics, EndpointInfo, Identifier, Organization, PartOf};
pub use stats::CacheStats;
use upstream::Upstream;

/// An answer and how it was obtained.
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup<T> {
    pub value: T,
    /// Served past its TTL because the upstream failed: say so to the client.
    pub stale: bool,
    /// How old the answer is (zero when fetched just now or fresh from the cache).
    pub age: Duration,
}

impl<T> Lookup<T> {
    pub(crate) fn fresh(value: T) -> Lookup<T> {
        Lookup {
            value,
            stale: false,
            age: Duration::ZERO,
        }
    }
}

/// Why a lookup has no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LookupError {
    /// That upstream is not configured; use local data.
    #[error("no {0} upstream is configured ([lookups.{0}])")]
    NotConfigured(&'static str),
    /// The key itself is malformed (the caller's mistake).
    #[error("{0}")]
    InvalidKey(String),
    /// No answer: refused connection, timeout. Nothing cached recently enough.
    #[error("the {upstream} upstream could not be reached: {detail}")]
    Unavailable {
        upstream: &'static str,
        detail: String,
    },
    /// The upstream answered, but not with something usable. Nothing cached recently enough.
    #[error("the {upstream} upstream answered unusably: {detail}")]
    BadGateway {
        upstream: &'static str,
        detail: String,
    },
    #[error("{0}")]
    Internal(String),
}

/// Every lookup the gateway can make, built once at start and shared (`AppState::lookups`,
/// `Engine::lookups`).
pub struct Lookups {
    patients: Option<Registry<Arc<Value>>>,
    organizations: Option<Registry<Arc<Organization>>>,
    terminology: Option<terminology::TerminologyLookup>,
    jwks: Option<jwks::JwksLookup>,
    tokens: Option<oauth::TokenCache>,
}

struct Registry<V> {
    up: Upstream,
    cache: LookupCache<V>,
}

impl<V: Clone + Send + Sync + 'static> Registry<V> {
    /// `identifier` through `registry`'s cache, fetched by `fetch` on a miss.
    async fn lookup<F, Fut>(
        registry: &Option<Registry<V>>,
        name: &'static str,
        identifier: &Identifier,
        fetch: F,
    ) -> Result<Lookup<Option<V>>, LookupError>
    where
        F: FnOnce(Upstream, Identifier) -> Fut,
        Fut: std::future::Future<Output = Result<Option<V>, LookupError>> + Send + 'static,
    {
        let Some(r) = registry else {
            return Err(LookupError::NotConfigured(name));
        };
        let (up, id) = (r.up.clone(), identifier.clone());
        r.cache.get(&identifier.key(), || fetch(up, id)).await
    }

    fn configured(
        name: &'static str,
        u: &crate::config::UpstreamConfig,
        client: &reqwest::Client,
    ) -> Option<Registry<V>> {
        (!u.base_url.is_empty()).then(|| Registry {
            up: Upstream::new(name, &u.base_url, u.timeout_ms, client.clone()),
            cache: LookupCache::new(name, Settings::from_config(u)),
        })
    }
}

impl Lookups {
    /// No upstreams: everything from local data.
    pub fn none() -> Lookups {
        Lookups {
            patients: None,
            organizations: None,
            terminology: None,
            jwks: None,
            tokens: None,
        }
    }

    /// The upstreams `[lookups]` configures (those with a base URL), sharing one HTTP client,
    /// and the OAuth token cache (its credentials come from callers).
    pub fn from_config(c: &LookupsConfig) -> anyhow::Result<Lookups> {
        let client = upstream::client(&c.ca_file)?;
        Ok(Lookups {
            patients: Registry::configured("patients", &c.patients, &client),
            organizations: Registry::configured("organizations", &c.organizations, &client),
            terminology: (!c.terminology.base_url.is_empty())
                .then(|| terminology::TerminologyLookup::new(&c.terminology, client.clone())),
            jwks: (!c.jwks.urls.is_empty()).then(|| jwks::JwksLookup::new(&c.jwks, client.clone())),
            tokens: Some(oauth::TokenCache::new(client)),
        })
    }

    /// The Patient a patient registry holds for `identifier` (e.g. a CPR number), or `None`
    /// when the registry has none (remembered for `negative_ttl_secs`).
    pub async fn patient_by_identifier(
        &self,
        identifier: &Identifier,
    ) -> Result<Lookup<Option<Arc<Value>>>, LookupError> {
        Registry::lookup(&self.patients, "patients", identifier, registry::patient).await
    }

    /// The Organization an organization registry holds for `identifier` (a SOR code, an
    /// HSA-id), with its parent and endpoints where the registry includes them.
    pub async fn organization_by_identifier(
        &self,
        identifier: &Identifier,
    ) -> Result<Lookup<Option<Arc<Organization>>>, LookupError> {
        let fetch = registry::organization;
        Registry::lookup(&self.organizations, "organizations", identifier, fetch).await
    }

    /// The terminology server, if one is configured.
    pub fn terminology(&self) -> Option<&terminology::TerminologyLookup> {
        self.terminology.as_ref()
    }

    /// The token issuers' key sets, if any are configured.
    pub fn jwks(&self) -> Option<&jwks::JwksLookup> {
        self.jwks.as_ref()
    }

    /// An OAuth access token (client-credentials grant) for calling a regional system, cached
    /// until 30 s before it expires; concurrent callers share one token request. No stale
    /// serving: a failing token endpoint is a 502/503.
    pub async fn oauth_token(
        &self,
        creds: &oauth::ClientCredentials,
    ) -> Result<Arc<oauth::AccessToken>, LookupError> {
        match &self.tokens {
            Some(t) => t.token(creds).await,
            None => Err(LookupError::NotConfigured("oauth")),
        }
    }

    /// Forget a token the resource server rejected (401), so the next call gets a new one.
    pub fn forget_oauth_token(&self, creds: &oauth::ClientCredentials) {
        if let Some(t) = &self.tokens {
            t.forget(creds);
        }
    }

    /// The configured caches, for `/admin/caches` and `/metrics`.
    pub fn caches(&self) -> Vec<&dyn CacheAdmin> {
        let mut out: Vec<&dyn CacheAdmin> = Vec::new();
        if let Some(r) = &self.patients {
            out.push(&r.cache);
        }
        if let Some(r) = &self.organizations {
            out.push(&r.cache);
        }
        if let Some(t) = &self.terminology {
            out.push(t.cache());
        }
        if let Some(j) = &self.jwks {
            out.push(j.cache());
        }
        if let Some(t) = &self.tokens {
            out.push(t.cache());
        }
        out
    }

    /// The cache called `name`, if configured.
    pub fn cache(&self, name: &str) -> Option<&dyn CacheAdmin> {
        self.caches().into_iter().find(|c| c.name() == name)
    }

    /// Registers the caches' series (`sektorbro_lookup_*{cache}`), read at each scrape.
    pub fn register_metrics(self: &Arc<Self>, registry: &mut crate::metrics::Registry) {
        registry.register_collector(Box::new(stats::Collector(self.clone())));
    }
}

/// What the admin endpoints and metrics need of a cache, whatever it holds.
pub trait CacheAdmin: Send + Sync {
    fn name(&self) -> &'static str;
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn stats(&self) -> &CacheStats;
    /// Forget one key; whether it was there.
    fn invalidate(&self, key: &str) -> bool;
    fn invalidate_all(&self);
}

impl<V: Clone + Send + Sync + 'static> CacheAdmin for LookupCache<V> {
    fn name(&self) -> &'static str {
        LookupCache::name(self)
    }
    fn len(&self) -> u64 {
        LookupCache::len(self)
    }
    fn stats(&self) -> &CacheStats {
        LookupCache::stats(self)
    }
    fn invalidate(&self, key: &str) -> bool {
        LookupCache::invalidate(self, key)
    }
    fn invalidate_all(&self) {
        LookupCache::invalidate_all(self)
    }
}
