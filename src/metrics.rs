//! Prometheus metrics: HTTP requests by route, method and status, and latency histograms, in
//! the text exposition format. Small enough to own rather than pull in a metrics framework.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
pub(crate) const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Counters of one (route, method): by status, and the latency histogram.
#[derive(Default)]
struct Series {
    statuses: Vec<(u16, u64)>,
    latency: Histogram,
}

/// route → method → series. Looked up by `&str`, so counting a request allocates only the first
/// time a route and method are seen.
#[derive(Default)]
struct Inner {
    routes: HashMap<String, HashMap<String, Series>>,
}

/// Process-wide HTTP metrics.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    /// Count one request. `route` is the matched pattern (`/fhir/{type}/{id}`), never the raw path,
    /// so the label set stays bounded and free of identifiers.
    pub fn observe(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        // The bucket is found before taking the lock.
        let bucket = BUCKETS.iter().position(|b| secs <= *b);
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if !inner.routes.contains_key(route) {
            inner.routes.insert(route.to_string(), HashMap::new());
        }
        let Some(methods) = inner.routes.get_mut(route) else {
            return;
        };
        if !methods.contains_key(method) {
            methods.insert(method.to_string(), Series::default());
        }
        let Some(series) = methods.get_mut(method) else {
            return;
        };
        match series.statuses.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => series.statuses.push((status, 1)),
        }
        let h = &mut series.latency;
        h.count += 1;
        h.sum += secs;
        // Non-cumulative here; `render` accumulates.
        if let Some(i) = bucket {
            h.counts[i] += 1;
        }
    }

    /// The text exposition format, series sorted by their labels.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let Ok(inner) = self.inner.lock() else {
            return out;
        };
        let mut series: Vec<(&str, &str, &Series)> = inner
            .routes
            .iter()
            .flat_map(|(route, methods)| {
                methods
                    .iter()
                    .map(move |(method, s)| (route.as_str(), method.as_str(), s))
            })
            .collect();
        series.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        out.push_str("# HELP sektorbro_http_requests_total HTTP requests answered, by route, method and status.\n");
        out.push_str("# TYPE sektorbro_http_requests_total counter\n");
        for (route, method, s) in &series {
            let mut statuses = s.statuses.clone();
            statuses.sort_unstable();
            for (status, n) in statuses {
                let _ = writeln!(
                    out,
                    "sektorbro_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str(
            "# HELP sektorbro_http_request_duration_seconds Time to answer HTTP requests.\n",
        );
        out.push_str("# TYPE sektorbro_http_request_duration_seconds histogram\n");
        for (route, method, s) in &series {
            let h = &s.latency;
            let labels = format!("route=\"{route}\",method=\"{method}\"");
            write_histogram(
                &mut out,
                "sektorbro_http_request_duration_seconds",
                &labels,
                &h.counts,
                h.count,
                h.sum,
            );
        }
        out
    }
}

/// One histogram's series in the text format: `counts` per bucket of [`BUCKETS`] (not yet
/// cumulative; observations above the last bound are only in `count`), their `count` and `sum`.
pub(crate) fn write_histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    counts: &[u64],
    count: u64,
    sum: f64,
) {
    let mut cumulative = 0;
    for (n, bound) in counts.iter().zip(BUCKETS) {
        cumulative += n;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.observe("/fhir/{type}", "GET", 200, Duration::from_micros(700));
        m.observe("/fhir/{type}", "GET", 404, Duration::from_millis(30));
        let text = m.render();
        assert!(text.contains(
            "sektorbro_http_requests_total{route=\"/fhir/{type}\",method=\"GET\",status=\"200\"} 1"
        ));
        assert!(text.contains("le=\"0.001\"} 1"));
        assert!(text.contains("le=\"0.05\"} 2"));
        assert!(text.contains("le=\"+Inf\"} 2"));
        assert!(text.contains("le=\"0.0005\"} 0"));
        // Over the largest bound: counted in +Inf only.
        m.observe("/fhir/{type}", "GET", 200, Duration::from_secs(11));
        let text = m.render();
        assert!(text.contains("le=\"10\"} 2"));
        assert!(text.contains("le=\"+Inf\"} 3"));
        assert!(text.contains("status=\"200\"} 2"));
    }
}
