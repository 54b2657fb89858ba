//! The cache in front of one upstream: moka for the entries, plus what moka does not do for us —
//! answers kept past their TTL to serve while the upstream is down, "not found" remembered for a
//! shorter time, and one upstream call per key however many callers miss at once.
//!
//! An entry is *fresh* for `ttl` (a found value) or `negative_ttl` (not found) after it was
//! fetched; a lookup of a fresh entry is a hit. Past that, the first caller starts an upstream
//! call and later callers of the same key join it (coalesced); the entry stays in the cache. If
//! the call fails and the entry is at most `max_stale` past its freshness, it is served marked
//! stale; otherwise the failure is the answer. moka evicts an entry once it is beyond even that.
//!
//! Keys (CPR numbers among them) are never logged.
//!
//! Invalidation (`/admin/caches`) removes entries; an upstream call already under way for that key
//! still stores its answer when it returns (it was asked after the data changed only if it
//! started after the change, which the cache cannot know).
//!
//! The upstream call runs as its own task: a caller that goes away (a client disconnect drops
//! the handler's future) neither cancels it for the others nor leaves it half done.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt as _, Shared};

use super::stats::CacheStats;
use super::{Lookup, LookupError};

/// How long entries live; from `[lookups.*]`.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub capacity: u64,
    pub ttl: Duration,
    pub negative_ttl: Duration,
    pub max_stale: Duration,
}

impl Settings {
    pub fn from_config(c: &crate::config::UpstreamConfig) -> Settings {
        Settings {
            capacity: c.capacity,
            ttl: Duration::from_secs(c.ttl_secs),
            negative_ttl: Duration::from_secs(c.negative_ttl_secs),
            max_stale: Duration::from_secs(c.max_stale_secs),
        }
    }
}

/// An upstream's answer as cached: the value (`None`: the upstream says there is none) and when
/// it was fetched.
struct Stored<V> {
    value: Option<V>,
    fetched_at: Instant,
}

/// A value's own lifetime (e.g. an access token's `expires_in`), capped by the TTL.
pub type Freshness<V> = fn(&V) -> Duration;

impl<V> Stored<V> {
    fn fresh_for(&self, s: &Settings, own: Option<Freshness<V>>) -> Duration {
        match (&self.value, own) {
            (Some(v), Some(f)) => f(v).min(s.ttl),
            (Some(_), None) => s.ttl,
            (None, _) => s.negative_ttl,
        }
    }
}

type Flight<V> = Shared<BoxFuture<'static, Result<Arc<Stored<V>>, LookupError>>>;

/// Expire each entry once it is too old even to be served stale.
struct Expiry<V>(Settings, Option<Freshness<V>>);

impl<V> moka::Expiry<String, Arc<Stored<V>>> for Expiry<V> {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<Stored<V>>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.fresh_for(&self.0, self.1) + self.0.max_stale)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Arc<Stored<V>>,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.fresh_for(&self.0, self.1) + self.0.max_stale)
    }
}

/// One kind's cache (patients, organizations, …). Cheap to share behind an `Arc`.
pub struct LookupCache<V> {
    name: &'static str,
    settings: Settings,
    freshness: Option<Freshness<V>>,
    entries: moka::sync::Cache<String, Arc<Stored<V>>>,
    flights: Arc<Mutex<HashMap<String, Flight<V>>>>,
    stats: Arc<CacheStats>,
}

impl<V: Clone + Send + Sync + 'static> LookupCache<V> {
    pub fn new(name: &'static str, settings: Settings) -> Self {
        Self::build(name, settings, None)
    }

    /// A cache whose values say how long they stay fresh (at most `settings.ttl`).
    pub fn with_freshness(name: &'static str, settings: Settings, f: Freshness<V>) -> Self {
        Self::build(name, settings, Some(f))
    }

    fn build(name: &'static str, settings: Settings, freshness: Option<Freshness<V>>) -> Self {
        LookupCache {
            name,
            settings,
            freshness,
            entries: moka::sync::Cache::builder()
                .max_capacity(settings.capacity)
                .expire_after(Expiry(settings, freshness))
                .build(),
            flights: Arc::default(),
            stats: Arc::default(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// Entries held (approximate while evictions are pending).
    pub fn len(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forget one key; the next lookup asks the upstream.
    pub fn invalidate(&self, key: &str) -> bool {
        self.entries.remove(key).is_some()
    }

    /// Forget everything.
    pub fn invalidate_all(&self) {
        self.entries.invalidate_all();
        self.entries.run_pending_tasks();
    }

    /// The value for `key`: from the cache while fresh, else from `fetch` (one call per key at a
    /// time), else — when `fetch` fails — the old value while within the stale bound.
    /// `fetch` answers `Ok(None)` for "the upstream has none" (cached for `negative_ttl`).
    pub async fn get<F, Fut>(&self, key: &str, fetch: F) -> Result<Lookup<Option<V>>, LookupError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, LookupError>> + Send + 'static,
    {
        let now = Instant::now();
        let old = self.entries.get(key);
        if let Some(s) = &old {
            if now.saturating_duration_since(s.fetched_at)
                <= s.fresh_for(&self.settings, self.freshness)
            {
                self.stats.hits.inc();
                return Ok(Lookup::fresh(s.value.clone()));
            }
        }
        self.refetch(key, old, fetch).await
    }

    /// As [`LookupCache::get`], but asks the upstream even when the entry is fresh, unless it was
    /// fetched less than `min_age` ago (then the entry is the answer). For key sets, where an
    /// unknown key id means the issuer may have rotated its keys.
    pub async fn refresh<F, Fut>(
        &self,
        key: &str,
        min_age: Duration,
        fetch: F,
    ) -> Result<Lookup<Option<V>>, LookupError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, LookupError>> + Send + 'static,
    {
        let old = self.entries.get(key);
        if let Some(s) = &old {
            if s.fetched_at.elapsed() < min_age {
                self.stats.hits.inc();
                return Ok(Lookup::fresh(s.value.clone()));
            }
        }
        self.refetch(key, old, fetch).await
    }

    async fn refetch<F, Fut>(
        &self,
        key: &str,
        old: Option<Arc<Stored<V>>>,
        fetch: F,
    ) -> Result<Lookup<Option<V>>, LookupError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, LookupError>> + Send + 'static,
    {
        self.stats.misses.inc();
        let flight = self.flight(key, fetch);
        match flight.await {
            Ok(s) => Ok(Lookup::fresh(s.value.clone())),
            Err(e) => {
                // The failed call left the old entry in place; it may have been refreshed by
                // another call meanwhile, so look again.
                let Some(s) = self.entries.get(key).or(old) else {
                    return Err(e);
                };
                let age = s.fetched_at.elapsed();
                if age > s.fresh_for(&self.settings, self.freshness) + self.settings.max_stale {
                    return Err(e);
                }
                self.stats.stale.inc();
                tracing::warn!(cache = self.name, age_secs = age.as_secs(), error = %e,
                    "upstream failed; serving a stale answer");
                Ok(Lookup {
                    value: s.value.clone(),
                    stale: true,
                    age,
                })
            }
        }
    }

    /// The upstream call under way for `key`, or a new one.
    fn flight<F, Fut>(&self, key: &str, fetch: F) -> Flight<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, LookupError>> + Send + 'static,
    {
        let mut flights = match self.flights.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(f) = flights.get(key) {
            self.stats.coalesced.inc();
            return f.clone();
        }
        let fut = fetch();
        let entries = self.entries.clone();
        let all = self.flights.clone();
        let stats = self.stats.clone();
        let owned = key.to_string();
        let name = self.name;
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let result = fut.await;
            stats.upstream_call(start.elapsed());
            let answer = match result {
                Ok(value) => {
                    let s = Arc::new(Stored {
                        value,
                        fetched_at: Instant::now(),
                    });
                    entries.insert(owned.clone(), s.clone());
                    Ok(s)
                }
                Err(e) => {
                    stats.errors.inc();
                    tracing::warn!(cache = name, error = %e, "upstream lookup failed");
                    Err(e)
                }
            };
            match all.lock() {
                Ok(mut f) => f.remove(&owned),
                Err(poisoned) => poisoned.into_inner().remove(&owned),
            };
            answer
        });
        let flight = async move {
            task.await
                .unwrap_or_else(|e| Err(LookupError::Internal(format!("lookup task failed: {e}"))))
        }
        .boxed()
        .shared();
        flights.insert(key.to_string(), flight.clone());
        flight
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn settings(ttl_ms: u64, negative_ms: u64, stale_ms: u64) -> Settings {
        Settings {
            capacity: 100,
            ttl: Duration::from_millis(ttl_ms),
            negative_ttl: Duration::from_millis(negative_ms),
            max_stale: Duration::from_millis(stale_ms),
        }
    }

    fn unavailable() -> LookupError {
        LookupError::Unavailable {
            upstream: "test",
            detail: "down".into(),
        }
    }

    #[tokio::test]
    async fn concurrent_misses_of_one_key_make_one_call() {
        let cache = Arc::new(LookupCache::<u32>::new("t", settings(60_000, 1_000, 0)));
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, calls, gate) = (cache.clone(), calls.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get("k", || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        Ok(Some(7))
                    })
                    .await
            }));
        }
        // Let every task reach the flight before the one call finishes.
        while cache.stats().misses.get() < 50 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        for t in tasks {
            let got = t.await.expect("task").expect("lookup");
            assert_eq!(got.value, Some(7));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(cache.stats().coalesced.get(), 49);
    }

    #[tokio::test]
    async fn failures_serve_the_old_value_within_the_bound_only() {
        let cache = LookupCache::<u32>::new("t", settings(1, 1, 60_000));
        cache.get("k", || async { Ok(Some(1)) }).await.expect("ok");
        tokio::time::sleep(Duration::from_millis(5)).await;
        let got = cache
            .get("k", || async { Err(unavailable()) })
            .await
            .expect("stale");
        assert!(got.stale);
        assert_eq!(got.value, Some(1));
        // A key never fetched has nothing to fall back on.
        assert!(cache
            .get("j", || async { Err(unavailable()) })
            .await
            .is_err());

        let strict = LookupCache::<u32>::new("t", settings(1, 1, 1));
        strict.get("k", || async { Ok(Some(1)) }).await.expect("ok");
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(strict
            .get("k", || async { Err(unavailable()) })
            .await
            .is_err());
    }

    #[tokio::test]
    async fn not_found_is_cached_and_refresh_respects_min_age() {
        let cache = LookupCache::<u32>::new("t", settings(60_000, 60_000, 0));
        let calls = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let c = calls.clone();
            let got = cache
                .get("k", || async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    Ok(None)
                })
                .await
                .expect("ok");
            assert_eq!(got.value, None);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let c = calls.clone();
        let fetch = || async move {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(Some(2))
        };
        let got = cache
            .refresh("k", Duration::from_secs(60), fetch)
            .await
            .expect("ok");
        assert_eq!((got.value, calls.load(Ordering::SeqCst)), (None, 1));
        let c = calls.clone();
        let got = cache
            .refresh("k", Duration::ZERO, || async move {
                c.fetch_add(1, Ordering::SeqCst);
                Ok(Some(2))
            })
            .await
            .expect("ok");
        assert_eq!((got.value, calls.load(Ordering::SeqCst)), (Some(2), 2));
    }
}
