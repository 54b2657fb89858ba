//! Caches in front of the database: current versions by `Type/id`, immutable versions by
//! `Type/id/version`, and search results by their SQL. Kept coherent with writes by
//! *generations*, not by deleting entries.
//!
//! Every write bumps two counters after its commit is durable: the stripe of its `Type/id` and
//! the slot of its type. A reader notes the counters it depends on *before* it asks the
//! database, and stores that snapshot with what it read; an entry is served only while the
//! counters still equal its snapshot. Since a write bumps only after its commit, a reader whose
//! snapshot equals the current counters started after the last commit that could change its
//! answer had become visible, or the write has not bumped yet — in which case the write has also
//! not yet answered its client. Entries therefore need no explicit invalidation and there is no
//! race between a slow reader filling the cache and a writer: a stale fill carries an old
//! snapshot and is never served.
//!
//! On SQLite this process is the only writer of its file (see ARCHITECTURE.md), so the counters
//! see every write. On PostgreSQL, other instances' writes arrive as `NOTIFY` messages
//! (`store::notify`); the caches are bypassed whenever that listener is not connected, and every
//! entry also expires after `cache.max_staleness_secs`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

use super::{Dependencies, SearchHit, StoredResource};
use crate::config::CacheConfig;
use fhir_core::fhir::search::{Match, SearchQuery};

/// Stripes of per-resource generations: a write makes about 1/STRIPES of the cached current
/// versions re-read.
const STRIPES: usize = 4096;
/// Slots of per-type generations (types are few; a shared slot only costs extra re-reads).
const TYPE_SLOTS: usize = 64;

/// Stable FNV-1a, so that the slot of a key does not depend on the process.
fn fnv(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn stripe(rtype: &str, id: &str) -> usize {
    (fnv(&[rtype, id]) % STRIPES as u64) as usize
}

fn type_slot(rtype: &str) -> usize {
    (fnv(&[rtype]) % TYPE_SLOTS as u64) as usize
}

/// The write generations every cached entry is checked against.
pub(crate) struct Generations {
    stripes: Box<[AtomicU64]>,
    types: Box<[AtomicU64]>,
    /// Whether entries may be served and filled (PostgreSQL: only while the listener is
    /// connected).
    live: AtomicBool,
}

impl Generations {
    fn new(live: bool) -> Generations {
        Generations {
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            types: (0..TYPE_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            live: AtomicBool::new(live),
        }
    }

    /// A version of `rtype/id` was committed (locally, or by another instance).
    pub(crate) fn written(&self, rtype: &str, id: &str) {
        self.stripes[stripe(rtype, id)].fetch_add(1, Ordering::AcqRel);
        self.types[type_slot(rtype)].fetch_add(1, Ordering::AcqRel);
    }

    /// Anything may have changed (a lost notification channel).
    pub(crate) fn everything_changed(&self) {
        for g in self.stripes.iter().chain(self.types.iter()) {
            g.fetch_add(1, Ordering::AcqRel);
        }
    }

    pub(crate) fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::Release);
    }

    fn live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    fn resource(&self, rtype: &str, id: &str) -> u64 {
        self.stripes[stripe(rtype, id)].load(Ordering::Acquire)
    }

    fn all_types(&self) -> u64 {
        self.types
            .iter()
            .map(|g| g.load(Ordering::Acquire))
            .fold(0u64, u64::wrapping_add)
    }

    fn types_of(&self, slots: &[usize]) -> u64 {
        // Generations only grow, so the sum changes whenever one of them does.
        slots
            .iter()
            .map(|s| self.types[*s].load(Ordering::Acquire))
            .fold(0u64, u64::wrapping_add)
    }
}

/// A cached value and the generation it was read under.
#[derive(Clone)]
struct Entry<T> {
    generation: u64,
    value: T,
}

/// Where a search's answer comes from: the types it reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SearchKey {
    sql: String,
    binds: String,
}

impl SearchKey {
    pub(crate) fn new(kind: &str, sql: &str, binds: &impl std::fmt::Debug) -> SearchKey {
        SearchKey {
            sql: format!("{kind}:{sql}"),
            binds: format!("{binds:?}"),
        }
    }
}

/// What a cached search returned.
#[derive(Clone)]
pub(crate) enum SearchValue {
    Hits(Arc<Vec<SearchHit>>),
    Count(i64),
    Resources(Arc<Vec<StoredResource>>),
}

/// A fill in progress: the snapshot taken before the database was asked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    generation: u64,
}

/// The caches of one store.
pub(crate) struct StoreCache {
    generations: Arc<Generations>,
    current: Cache<String, Entry<Arc<StoredResource>>>,
    versions: Cache<String, Arc<StoredResource>>,
    searches: Cache<SearchKey, Entry<SearchValue>>,
}

fn resource_weight(r: &StoredResource) -> u32 {
    let bytes = r.content.as_ref().map_or(0, String::len) + r.rtype.len() + r.id.len() + 96;
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

fn search_weight(key: &SearchKey, v: &SearchValue) -> u32 {
    let body: usize = match v {
        SearchValue::Hits(h) => h
            .iter()
            .map(|h| resource_weight(&h.resource) as usize + 32)
            .sum(),
        SearchValue::Count(_) => 8,
        SearchValue::Resources(r) => r.iter().map(|r| resource_weight(r) as usize).sum(),
    };
    u32::try_from(body + key.sql.len() + key.binds.len() + 64).unwrap_or(u32::MAX)
}

impl StoreCache {
    /// `live`: whether entries may be served from the start (PostgreSQL waits for its listener).
    pub(crate) fn new(config: &CacheConfig, live: bool) -> StoreCache {
        let ttl = Duration::from_secs(config.max_staleness_secs.max(1));
        let mib = |n: u64| n.saturating_mul(1 << 20);
        StoreCache {
            generations: Arc::new(Generations::new(live)),
            current: Cache::builder()
                .max_capacity(mib(config.resources_mib))
                .weigher(|k: &String, e: &Entry<Arc<StoredResource>>| {
                    resource_weight(&e.value).saturating_add(k.len() as u32)
                })
                .time_to_live(ttl)
                .build(),
            versions: Cache::builder()
                .max_capacity(mib(config.resources_mib / 4))
                .weigher(|k: &String, r: &Arc<StoredResource>| {
                    resource_weight(r).saturating_add(k.len() as u32)
                })
                .time_to_live(ttl)
                .build(),
            searches: Cache::builder()
                .max_capacity(mib(config.searches_mib))
                .weigher(|k: &SearchKey, e: &Entry<SearchValue>| search_weight(k, &e.value))
                .time_to_live(ttl)
                .build(),
        }
    }

    pub(crate) fn generations(&self) -> &Arc<Generations> {
        &self.generations
    }

    fn key(rtype: &str, id: &str) -> String {
        let mut k = String::with_capacity(rtype.len() + id.len() + 1);
        k.push_str(rtype);
        k.push('/');
        k.push_str(id);
        k
    }

    /// The current version of `rtype/id`, if cached and still current.
    pub(crate) fn current(&self, rtype: &str, id: &str) -> Option<Arc<StoredResource>> {
        if !self.generations.live() {
            return None;
        }
        let e = self.current.get(&Self::key(rtype, id))?;
        (e.generation == self.generations.resource(rtype, id)).then_some(e.value)
    }

    /// Note the generation before reading `rtype/id` from the database.
    pub(crate) fn current_ticket(&self, rtype: &str, id: &str) -> Option<Ticket> {
        self.generations.live().then(|| Ticket {
            generation: self.generations.resource(rtype, id),
        })
    }

    /// Keep what the database returned under the ticket taken before asking it.
    pub(crate) fn fill_current(&self, ticket: Ticket, r: Arc<StoredResource>) {
        self.current.insert(
            Self::key(&r.rtype, &r.id),
            Entry {
                generation: ticket.generation,
                value: r,
            },
        );
    }

    /// A stored version never changes once committed, so it is cached without a generation.
    pub(crate) fn version(
        &self,
        rtype: &str,
        id: &str,
        version: i64,
    ) -> Option<Arc<StoredResource>> {
        if !self.generations.live() {
            return None;
        }
        self.versions.get(&format!("{rtype}/{id}/{version}"))
    }

    pub(crate) fn fill_version(&self, r: Arc<StoredResource>) {
        if self.generations.live() {
            self.versions
                .insert(format!("{}/{}/{}", r.rtype, r.id, r.version), r);
        }
    }

    /// The types (slots) a search reads: its own, every chain's target and every `_has` source.
    pub(crate) fn query_slots(q: &SearchQuery) -> Vec<usize> {
        fn walk(m: &Match, out: &mut Vec<usize>) {
            if let Some((target, inner)) = m.sub_search() {
                out.push(type_slot(target));
                for m in &inner.any_of {
                    walk(m, out);
                }
            }
        }
        let mut out = vec![type_slot(&q.rtype)];
        for f in &q.filters {
            for m in &f.any_of {
                walk(m, &mut out);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    pub(crate) fn type_slots(types: &[&str]) -> Vec<usize> {
        let mut out: Vec<usize> = types.iter().map(|t| type_slot(t)).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The generation of `deps`, for caches outside the store; `None` while not live.
    pub(crate) fn generation(&self, deps: &Dependencies) -> Option<u64> {
        if !self.generations.live() {
            return None;
        }
        Some(match deps {
            Dependencies::Types(types) => {
                let types: Vec<&str> = types.iter().map(String::as_str).collect();
                self.generations.types_of(&Self::type_slots(&types))
            }
            Dependencies::All => self.generations.all_types(),
        })
    }

    pub(crate) fn search(&self, key: &SearchKey, slots: &[usize]) -> Option<SearchValue> {
        if !self.generations.live() {
            return None;
        }
        let e = self.searches.get(key)?;
        (e.generation == self.generations.types_of(slots)).then_some(e.value)
    }

    pub(crate) fn search_ticket(&self, slots: &[usize]) -> Option<Ticket> {
        self.generations.live().then(|| Ticket {
            generation: self.generations.types_of(slots),
        })
    }

    pub(crate) fn fill_search(&self, ticket: Ticket, key: SearchKey, value: SearchValue) {
        self.searches.insert(
            key,
            Entry {
                generation: ticket.generation,
                value,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> CacheConfig {
        CacheConfig {
            enabled: true,
            resources_mib: 1,
            searches_mib: 1,
            max_staleness_secs: 60,
        }
    }

    fn patient(version: i64) -> Arc<StoredResource> {
        Arc::new(StoredResource {
            rtype: "Patient".into(),
            id: "p1".into(),
            version,
            last_updated_ms: 1,
            deleted: false,
            content: Some(format!("{{\"v\":{version}}}")),
            method: String::new(),
            owner: None,
            citizen: None,
        })
    }

    #[test]
    fn a_fill_read_before_a_write_is_never_served() {
        let c = StoreCache::new(&config(), true);
        // A reader notes the generation, then a write commits, then the reader fills.
        let ticket = c.current_ticket("Patient", "p1").expect("live");
        c.generations().written("Patient", "p1");
        c.fill_current(ticket, patient(1));
        assert!(c.current("Patient", "p1").is_none());
        // A fill after the write is served until the next write.
        let ticket = c.current_ticket("Patient", "p1").expect("live");
        c.fill_current(ticket, patient(2));
        assert_eq!(c.current("Patient", "p1").map(|r| r.version), Some(2));
        c.generations().written("Patient", "p1");
        assert!(c.current("Patient", "p1").is_none());
    }

    #[test]
    fn searches_depend_on_their_types_only() {
        let c = StoreCache::new(&config(), true);
        let slots = StoreCache::type_slots(&["CarePlan", "Patient"]);
        let key = SearchKey::new("page", "SELECT …", &["x"]);
        let ticket = c.search_ticket(&slots).expect("live");
        c.fill_search(ticket, key.clone(), SearchValue::Count(3));
        assert!(matches!(
            c.search(&key, &slots),
            Some(SearchValue::Count(3))
        ));
        // A type whose slot differs from both leaves the entry alone.
        let other = fhir_core::fhir::SUPPORTED_TYPES
            .iter()
            .find(|t| !slots.contains(&type_slot(t)))
            .expect("a type in another slot");
        c.generations().written(other, "x");
        assert!(c.search(&key, &slots).is_some());
        c.generations().written("Patient", "anyone");
        assert!(c.search(&key, &slots).is_none());
    }

    #[test]
    fn nothing_is_served_while_not_live() {
        let c = StoreCache::new(&config(), true);
        let ticket = c.current_ticket("Patient", "p1").expect("live");
        c.fill_current(ticket, patient(1));
        c.generations().set_live(false);
        assert!(c.current("Patient", "p1").is_none());
        assert!(c.current_ticket("Patient", "p1").is_none());
        c.generations().everything_changed();
        c.generations().set_live(true);
        assert!(c.current("Patient", "p1").is_none());
    }
}
