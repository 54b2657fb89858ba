//! Per-cache counters and the upstream latency histogram, and the collector that writes them to
//! `/metrics` (`sektorbro_lookup_*{cache}`), registered by [`super::Lookups::register_metrics`].

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::{
    encode_family, ConstGauge, Counter, DescriptorEncoder, Histogram, MetricType,
};

/// What one cache has done since start. The handles are the series themselves: counting is an
/// atomic add.
pub struct CacheStats {
    /// Answered from the cache (fresh entry).
    pub hits: Counter,
    /// Not in the cache, or older than its TTL: an upstream call was needed (made or joined).
    pub misses: Counter,
    /// Misses that joined an upstream call already under way for the same key.
    pub coalesced: Counter,
    /// Answers served past their TTL because the upstream failed.
    pub stale: Counter,
    /// Upstream calls that failed (timeouts, refused connections, bad answers).
    pub errors: Counter,
    /// Upstream call durations.
    latency: Histogram,
    /// Upstream calls made (the histogram's count, for `/admin/caches`).
    calls: Counter,
}

impl Default for CacheStats {
    fn default() -> CacheStats {
        CacheStats {
            hits: Counter::default(),
            misses: Counter::default(),
            coalesced: Counter::default(),
            stale: Counter::default(),
            errors: Counter::default(),
            latency: crate::metrics::histogram(),
            calls: Counter::default(),
        }
    }
}

impl CacheStats {
    pub(crate) fn upstream_call(&self, elapsed: Duration) {
        self.latency.observe(elapsed.as_secs_f64());
        self.calls.inc();
    }

    /// Upstream calls made so far (successful or not).
    pub fn upstream_calls(&self) -> u64 {
        self.calls.get()
    }
}

/// The lookup caches' series, read at each scrape.
pub(crate) struct Collector(pub Arc<super::Lookups>);

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("lookup::stats::Collector")
    }
}

impl crate::metrics::Collector for Collector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let caches = self.0.caches();
        if caches.is_empty() {
            return Ok(());
        }
        type Pick = fn(&CacheStats) -> &Counter;
        let counters: [(&str, &str, Pick); 5] = [
            ("hits", "Lookups answered from the cache.", |s| &s.hits),
            (
                "misses",
                "Lookups that needed an upstream call (made or joined).",
                |s| &s.misses,
            ),
            (
                "coalesced_waits",
                "Lookups that waited for an upstream call already under way for the same key.",
                |s| &s.coalesced,
            ),
            (
                "stale_served",
                "Answers served past their TTL because the upstream failed.",
                |s| &s.stale,
            ),
            ("upstream_errors", "Upstream calls that failed.", |s| {
                &s.errors
            }),
        ];
        for (name, help, pick) in counters {
            encode_family(
                &mut encoder,
                &format!("sektorbro_lookup_{name}"),
                help,
                MetricType::Counter,
                caches
                    .iter()
                    .map(|c| ([("cache", c.name())], pick(c.stats()).clone())),
            )?;
        }
        encode_family(
            &mut encoder,
            "sektorbro_lookup_entries",
            "Entries held by each lookup cache.",
            MetricType::Gauge,
            caches
                .iter()
                .map(|c| ([("cache", c.name())], ConstGauge::new(c.len() as i64))),
        )?;
        encode_family(
            &mut encoder,
            "sektorbro_lookup_upstream_duration_seconds",
            "Time upstream calls took.",
            MetricType::Histogram,
            caches
                .iter()
                .map(|c| ([("cache", c.name())], c.stats().latency.clone())),
        )
    }
}
