//! Prometheus metrics through one facade, the `prometheus-client` crate: one [`Registry`] per
//! process (in `AppState`), in which each component registers its own series when the app is
//! wired (`Lookups`, `Forwarder`, `Auditor` and `Authenticator` each have a `register_metrics`),
//! and one exporter, [`Metrics::render`], that writes `/metrics` in the Prometheus text format
//! (0.0.4) with label values escaped. Values known only at scrape time (queue depths, cache sizes,
//! circuit breakers) come from a component's [`Collector`].
//!
//! The HTTP series of the request middleware are here: [`Metrics::observe`] runs once per
//! request, so it finds its two handles (the counter of the route, method and status, and the
//! route and method's latency histogram) with one look-up in a small map and allocates nothing
//! once a combination has been seen.

use std::borrow::Cow;
use std::sync::RwLock;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric};
use rustc_hash::FxHashMap;

pub use prometheus_client::collector::Collector;
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
pub use prometheus_client::encoding::DescriptorEncoder;
pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::ConstGauge;
pub use prometheus_client::metrics::histogram::Histogram;
pub use prometheus_client::metrics::MetricType;
pub use prometheus_client::registry::Registry;

/// Upper bounds of the latency buckets, in seconds (every histogram of the gateway).
pub const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram with [`BUCKETS`].
pub fn histogram() -> Histogram {
    Histogram::new(BUCKETS.iter().copied())
}

/// The label set of a series without labels, for [`encode_family`].
pub const NO_LABELS: [(&str, &str); 0] = [];

/// One family written by a [`Collector`]: its `# HELP`/`# TYPE` lines (also when it has no
/// series yet), then one series per member. `name` is without `_total` (counters get it), `help`
/// is written as given.
pub fn encode_family<L: EncodeLabelSet, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    members: impl IntoIterator<Item = (L, M)>,
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, metric) in members {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: Cow<'static, str>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
    method: Cow<'static, str>,
}

/// A method as a label value: the standard ones without allocating.
fn method_label(method: &str) -> Cow<'static, str> {
    const STANDARD: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
    ];
    match STANDARD.iter().find(|m| **m == method) {
        Some(m) => Cow::Borrowed(m),
        None => Cow::Owned(method.to_string()),
    }
}

type Handles = FxHashMap<RequestLabels, (Counter, Histogram)>;

/// The registry, the exporter, and the request middleware's series.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// The two handles of each (route, method, status) seen so far.
    handles: RwLock<Handles>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let durations: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(histogram);
        // The registry adds the final full stop to a help text.
        registry.register(
            "sektorbro_http_requests",
            "HTTP requests answered, by route, method and status",
            requests.clone(),
        );
        registry.register(
            "sektorbro_http_request_duration_seconds",
            "Time to answer HTTP requests",
            durations.clone(),
        );
        Metrics {
            registry,
            requests,
            durations,
            handles: RwLock::default(),
        }
    }
}

impl Metrics {
    /// Where components register their series while the app is wired (before it is shared).
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Count one request. `route` is the matched pattern (`/fhir/{type}/{id}`), never the raw path,
    /// so the label set stays bounded and free of identifiers.
    pub fn observe(&self, route: &'static str, method: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let key = RequestLabels {
            route,
            method: method_label(method),
            status,
        };
        if let Ok(handles) = self.handles.read() {
            if let Some((count, latency)) = handles.get(&key) {
                count.inc();
                latency.observe(secs);
                return;
            }
        }
        // First of its kind: create its series and remember the handles.
        let count = self.requests.get_or_create_owned(&key);
        let latency = self.durations.get_or_create_owned(&RouteLabels {
            route,
            method: key.method.clone(),
        });
        count.inc();
        latency.observe(secs);
        if let Ok(mut handles) = self.handles.write() {
            handles.insert(key, (count, latency));
        }
    }

    /// Every registered series in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::warn!(error = %e, "cannot render /metrics");
        }
        out
    }
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
        assert!(text.contains("# TYPE sektorbro_http_requests_total counter\n"));
        assert!(text.contains(
            "# HELP sektorbro_http_requests_total HTTP requests answered, by route, method and status.\n"
        ));
        assert!(text.contains(
            "sektorbro_http_requests_total{route=\"/fhir/{type}\",method=\"GET\",status=\"200\"} 1"
        ));
        assert!(text.contains("# TYPE sektorbro_http_request_duration_seconds histogram\n"));
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
        assert!(text.contains(
            "sektorbro_http_request_duration_seconds_count{route=\"/fhir/{type}\",method=\"GET\"} 3"
        ));
    }

    #[test]
    fn methods_other_than_the_standard_ones_are_counted_as_sent() {
        let m = Metrics::default();
        m.observe("unmatched", "PROPFIND", 404, Duration::from_millis(1));
        m.observe("unmatched", "PROPFIND", 404, Duration::from_millis(1));
        assert!(m.render().contains(
            "sektorbro_http_requests_total{route=\"unmatched\",method=\"PROPFIND\",status=\"404\"} 2"
        ));
    }

    /// Label values are escaped as the text format requires: `\` → `\\`, `"` → `\"`, and a
    /// line feed → `\n`, whichever component registered the series.
    #[test]
    fn label_values_are_escaped() {
        #[derive(Debug)]
        struct Odd;
        impl Collector for Odd {
            fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
                encode_family(
                    &mut encoder,
                    "sektorbro_test",
                    "A test.",
                    MetricType::Gauge,
                    [([("name", "a\"b\\c\nd")], ConstGauge::new(1i64))],
                )
            }
        }
        let mut m = Metrics::default();
        m.registry().register_collector(Box::new(Odd));
        let text = m.render();
        assert!(
            text.contains("sektorbro_test{name=\"a\\\"b\\\\c\\nd\"} 1\n"),
            "{text}"
        );
        // Every line is a comment or a sample: the newline did not break the series.
        assert!(text
            .lines()
            .all(|l| l.starts_with('#') || l.starts_with("sektorbro_")));
    }
}
