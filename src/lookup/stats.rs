//! Per-cache counters and the upstream latency histogram, lock-free (atomics), rendered into
//! `/metrics` next to the HTTP metrics.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::metrics::{write_histogram, BUCKETS};

/// What one cache has done since start.
#[derive(Default)]
pub struct CacheStats {
    /// Answered from the cache (fresh entry).
    pub hits: AtomicU64,
    /// Not in the cache, or older than its TTL: an upstream call was needed (made or joined).
    pub misses: AtomicU64,
    /// Misses that joined an upstream call already under way for the same key.
    pub coalesced: AtomicU64,
    /// Answers served past their TTL because the upstream failed.
    pub stale: AtomicU64,
    /// Upstream calls that failed (timeouts, refused connections, bad answers).
    pub errors: AtomicU64,
    latency: Latency,
}

/// Upstream call durations, bucketed as [`BUCKETS`].
#[derive(Default)]
struct Latency {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl CacheStats {
    pub(crate) fn upstream_call(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.latency.counts[i].fetch_add(1, Relaxed);
        }
        self.latency.count.fetch_add(1, Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency.sum_micros.fetch_add(micros, Relaxed);
    }

    /// Upstream calls made so far (successful or not).
    pub fn upstream_calls(&self) -> u64 {
        self.latency.count.load(Relaxed)
    }
}

/// One cache's series, by name, for [`render`].
pub(crate) struct Named<'a> {
    pub name: &'a str,
    pub entries: u64,
    pub stats: &'a CacheStats,
}

/// The lookup caches' series in the Prometheus text format, `# TYPE` line first for each family.
pub(crate) fn render(out: &mut String, caches: &[Named<'_>]) {
    if caches.is_empty() {
        return;
    }
    type Pick = fn(&CacheStats) -> &AtomicU64;
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
        let _ = writeln!(out, "# HELP sektorbro_lookup_{name}_total {help}");
        let _ = writeln!(out, "# TYPE sektorbro_lookup_{name}_total counter");
        for c in caches {
            let _ = writeln!(
                out,
                "sektorbro_lookup_{name}_total{{cache=\"{}\"}} {}",
                c.name,
                pick(c.stats).load(Relaxed)
            );
        }
    }
    out.push_str("# HELP sektorbro_lookup_entries Entries held by each lookup cache.\n");
    out.push_str("# TYPE sektorbro_lookup_entries gauge\n");
    for c in caches {
        let _ = writeln!(
            out,
            "sektorbro_lookup_entries{{cache=\"{}\"}} {}",
            c.name, c.entries
        );
    }
    out.push_str("# HELP sektorbro_lookup_upstream_duration_seconds Time upstream calls took.\n");
    out.push_str("# TYPE sektorbro_lookup_upstream_duration_seconds histogram\n");
    for c in caches {
        let l = &c.stats.latency;
        let counts: Vec<u64> = l.counts.iter().map(|n| n.load(Relaxed)).collect();
        write_histogram(
            out,
            "sektorbro_lookup_upstream_duration_seconds",
            &format!("cache=\"{}\"", c.name),
            &counts,
            l.count.load(Relaxed),
            l.sum_micros.load(Relaxed) as f64 / 1e6,
        );
    }
}
