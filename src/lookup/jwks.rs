//! Token issuers' signing keys (JSON Web Key Sets), cached per URL. Issuers rotate keys: a token
//! signed with a key id (`kid`) the cached sets do not hold makes the gateway fetch the sets
//! again — at most once per `min_refetch_secs` per URL, so a stream of tokens with made-up key
//! ids cannot turn into a stream of calls to the issuer.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::upstream::{Fetched, Upstream};
use super::{Lookup, LookupCache, LookupError, Settings};

/// The key sets of the configured JWKS URLs.
pub struct JwksLookup {
    sets: Vec<Upstream>,
    cache: LookupCache<Arc<Vec<Value>>>,
    min_refetch: Duration,
}

impl JwksLookup {
    pub fn new(c: &crate::config::JwksConfig, client: reqwest::Client) -> JwksLookup {
        let min_refetch = Duration::from_secs(c.min_refetch_secs);
        JwksLookup {
            sets: c
                .urls
                .iter()
                .map(|u| Upstream::new("jwks", u, c.timeout_ms, client.clone()))
                .collect(),
            cache: LookupCache::new(
                "jwks",
                Settings {
                    capacity: 1024,
                    ttl: Duration::from_secs(c.ttl_secs),
                    negative_ttl: min_refetch.max(Duration::from_secs(1)),
                    max_stale: Duration::from_secs(c.max_stale_secs),
                },
            ),
            min_refetch,
        }
    }

    pub(crate) fn cache(&self) -> &LookupCache<Arc<Vec<Value>>> {
        &self.cache
    }

    /// The key set at one configured URL (`None`: the URL answers 404).
    pub async fn key_set(&self, url: &str) -> Result<Lookup<Option<Arc<Vec<Value>>>>, LookupError> {
        let up = self.upstream(url)?;
        self.cache.get(&up.base, fetch_from(&up)).await
    }

    /// The JWK with `kid` from any configured set, fetching the sets again (rate-limited) when
    /// none holds it. `None`: no configured issuer has such a key.
    pub async fn key(&self, kid: &str) -> Result<Lookup<Option<Value>>, LookupError> {
        let mut last_err = None;
        let mut stale = false;
        for up in &self.sets {
            match self.cache.get(&up.base, fetch_from(up)).await {
                Ok(set) => {
                    stale |= set.stale;
                    if let Some(k) = find(set.value.as_deref(), kid) {
                        return Ok(marked(k, set.stale, set.age));
                    }
                }
                Err(e) => last_err = Some(e),
            }
        }
        // Unknown kid: the issuer may have rotated its keys.
        for up in &self.sets {
            match self
                .cache
                .refresh(&up.base, self.min_refetch, fetch_from(up))
                .await
            {
                Ok(set) => {
                    stale |= set.stale;
                    if let Some(k) = find(set.value.as_deref(), kid) {
                        return Ok(marked(k, set.stale, set.age));
                    }
                }
                Err(e) => last_err = Some(e),
            }
        }
        match last_err {
            // A set we could not read may hold the key: we cannot say there is none.
            Some(e) => Err(e),
            None => Ok(Lookup {
                value: None,
                stale,
                age: Duration::ZERO,
            }),
        }
    }

    /// The JWK with `kid` in the one set at `url` (one issuer's keys: a key of another issuer
    /// must never verify its tokens), fetching that set again when it lacks the kid — at most
    /// once per `min_refetch_secs`. `None`: the set has no such key.
    pub async fn key_at(&self, url: &str, kid: &str) -> Result<Lookup<Option<Value>>, LookupError> {
        let up = self.upstream(url)?;
        let set = self.cache.get(&up.base, fetch_from(&up)).await?;
        if let Some(k) = find(set.value.as_deref(), kid) {
            return Ok(marked(k, set.stale, set.age));
        }
        let set = self
            .cache
            .refresh(&up.base, self.min_refetch, fetch_from(&up))
            .await?;
        Ok(Lookup {
            value: find(set.value.as_deref(), kid),
            stale: set.stale,
            age: set.age,
        })
    }

    /// Whether `url` is one of the configured key sets.
    pub fn has_url(&self, url: &str) -> bool {
        self.upstream(url).is_ok()
    }

    fn upstream(&self, url: &str) -> Result<Upstream, LookupError> {
        let url = url.trim_end_matches('/');
        self.sets
            .iter()
            .find(|u| u.base == url)
            .cloned()
            .ok_or_else(|| LookupError::InvalidKey(format!("{url} is not a configured JWKS URL")))
    }
}

fn marked(k: Value, stale: bool, age: Duration) -> Lookup<Option<Value>> {
    Lookup {
        value: Some(k),
        stale,
        age,
    }
}

fn find(set: Option<&Vec<Value>>, kid: &str) -> Option<Value> {
    set?.iter()
        .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
        .cloned()
}

fn fetch_from(
    up: &Upstream,
) -> impl FnOnce() -> futures_util::future::BoxFuture<
    'static,
    Result<Option<Arc<Vec<Value>>>, LookupError>,
> {
    let up = up.clone();
    move || Box::pin(fetch(up))
}

async fn fetch(up: Upstream) -> Result<Option<Arc<Vec<Value>>>, LookupError> {
    let body = match up.get_json("", &[]).await? {
        Fetched::NotFound => return Ok(None),
        Fetched::Json(b) => b,
    };
    let Some(keys) = body.get("keys").and_then(Value::as_array) else {
        return Err(up.bad("not a JSON Web Key Set (no \"keys\" array)".into()));
    };
    let keys: Vec<Value> = keys
        .iter()
        .filter(|k| k.get("kty").and_then(Value::as_str).is_some())
        .cloned()
        .collect();
    Ok(Some(Arc::new(keys)))
}
