//! OpenTelemetry traces over OTLP/HTTP (`[telemetry]`, docs/operations.md).
//!
//! The spans are the `tracing` spans the gateway opens anyway: `request` (`api::observe`),
//! `validation` (`Engine::validate_op`, `$validate`), `database` (the SQL side of the store) and
//! `forwarding` (one delivery attempt). The `request` span is at INFO, like the log lines it
//! frames; the others are at DEBUG, so with telemetry off (and the log filter at `info`) they are
//! disabled at their call sites and cost nothing. With telemetry on, the OpenTelemetry layer has
//! its own filter (this crate's spans at DEBUG and above), separate from the log filter.
//!
//! Export never holds up a request: finished spans go into a bounded queue, and the SDK's batch
//! processor sends them from its own thread (a full queue drops spans rather than blocking).
//! The HTTP post runs on the gateway's tokio runtime through the reqwest client the gateway
//! already has (rustls; the exporter crate's own clients would bring a second reqwest). A failed
//! export is counted (`sektorbro_telemetry_export_failures_total`) and logged when exporting
//! starts or stops failing, never once per batch.
//!
//! Person numbers never leave in a span: every exported span's name, attributes, events and
//! status pass through [`crate::logmask::mask`], as log lines do.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::trace::{Status, TracerProvider as _};
use opentelemetry::{KeyValue, StringValue, Value};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::Layer;

use crate::config::TelemetryConfig;

/// The largest collector answer read (an OTLP answer is a few bytes; a partial-success message
/// a few hundred).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The running exporter; [`Telemetry::shutdown`] sends what is still queued.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Export the spans still queued (waiting at most the export timeout) and stop. Blocking:
    /// call it outside the async runtime's worker threads, e.g. in `spawn_blocking`.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "telemetry: spans still queued at shutdown were not all sent");
        }
    }
}

/// Whether traces are exported, so that request handling can skip reading `traceparent` when
/// they are not.
pub fn enabled() -> bool {
    ENABLED.get().copied().unwrap_or(false)
}

static ENABLED: OnceLock<bool> = OnceLock::new();

/// The exporter's counters, process-wide like the tracing subscriber it belongs to (it is set up
/// before the metrics registry exists).
struct ExportStats {
    spans: Counter,
    failures: Counter,
    lost: Counter,
}

fn stats() -> &'static ExportStats {
    static STATS: OnceLock<ExportStats> = OnceLock::new();
    STATS.get_or_init(|| ExportStats {
        spans: Counter::default(),
        failures: Counter::default(),
        lost: Counter::default(),
    })
}

/// Put the exporter's counters on `/metrics` (zero while telemetry is off).
pub fn register_metrics(registry: &mut Registry) {
    let s = stats();
    registry.register(
        "sektorbro_telemetry_spans_exported",
        "Spans the OTLP collector accepted",
        s.spans.clone(),
    );
    registry.register(
        "sektorbro_telemetry_export_failures",
        "OTLP span exports that failed (collector unreachable, refused or too slow)",
        s.failures.clone(),
    );
    registry.register(
        "sektorbro_telemetry_spans_lost",
        "Spans in failed OTLP exports",
        s.lost.clone(),
    );
}

/// The OpenTelemetry layer for the tracing subscriber, and the exporter behind it; `None` when
/// `otlp_endpoint` is empty. `runtime` runs the exporter's HTTP posts.
pub fn layer<S>(
    config: &TelemetryConfig,
    runtime: tokio::runtime::Handle,
) -> anyhow::Result<Option<(impl Layer<S>, Telemetry)>>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    if config.otlp_endpoint.is_empty() {
        let _ = ENABLED.set(false);
        return Ok(None);
    }
    use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
    let timeout = Duration::from_millis(config.export_timeout_ms);
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .context("telemetry: the HTTP client")?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(OnRuntime { client, runtime })
        .with_endpoint(traces_url(&config.otlp_endpoint))
        .with_timeout(timeout)
        .build()
        .context("telemetry: the OTLP exporter")?;
    let processor = BatchSpanProcessor::builder(Masked {
        inner: exporter,
        failing: AtomicBool::new(false),
    })
    .with_batch_config(
        BatchConfigBuilder::default()
            .with_max_queue_size(config.max_queue)
            .with_max_export_batch_size(config.max_queue.min(512))
            .with_scheduled_delay(Duration::from_millis(config.batch_delay_ms))
            .build(),
    )
    .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(config.service_name.clone())
                .with_attribute(KeyValue::new(
                    "service.version",
                    env!("CARGO_PKG_VERSION").to_string(),
                ))
                .build(),
        )
        .build();
    let tracer = provider.tracer("sektorbro");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false)
        .with_filter(Targets::new().with_target("sektorbro", tracing::Level::DEBUG));
    let _ = ENABLED.set(true);
    Ok(Some((layer, Telemetry { provider })))
}

/// `{endpoint}/v1/traces`, unless the endpoint already names that path.
fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    }
}

/// Continue the caller's trace when the request carries a W3C `traceparent` (and `tracestate`).
pub fn adopt_parent(span: &tracing::Span, headers: &actix_web::http::header::HeaderMap) {
    use opentelemetry::propagation::TextMapPropagator as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if !enabled() || !headers.contains_key("traceparent") {
        return;
    }
    struct Headers<'a>(&'a actix_web::http::header::HeaderMap);
    impl opentelemetry::propagation::Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }
    let cx =
        opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&Headers(headers));
    let _ = span.set_parent(cx);
}

/// The W3C `traceparent` of the current span, for a request the gateway makes; `None` when
/// traces are not exported (or the current span is not recorded).
pub fn traceparent() -> Option<String> {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if !enabled() {
        return None;
    }
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// Posts the exporter's requests on the gateway's runtime. The batch processor awaits an
/// export on its own thread, outside any runtime; reqwest needs one, so the post is spawned onto
/// it and its handle awaited (a `JoinHandle` can be awaited from any executor).
#[derive(Debug)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        self.runtime
            .spawn(async move {
                let mut answer = client.execute(request).await.map_err(HttpError::from)?;
                let mut out = Response::builder().status(answer.status());
                if let Some(headers) = out.headers_mut() {
                    *headers = std::mem::take(answer.headers_mut());
                }
                let mut body = Vec::new();
                while let Some(chunk) = answer.chunk().await.map_err(HttpError::from)? {
                    if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                        return Err::<_, HttpError>("the collector's answer is too large".into());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok::<_, HttpError>(out.body(Bytes::from(body))?)
            })
            .await?
    }
}

/// The OTLP exporter with person numbers masked in what it sends, and its results counted.
#[derive(Debug)]
struct Masked<E> {
    inner: E,
    /// Whether the last export failed: failures are logged when they start and when they end.
    failing: AtomicBool,
}

impl<E: SpanExporter> SpanExporter for Masked<E> {
    async fn export(&self, mut batch: Vec<SpanData>) -> OTelSdkResult {
        for span in &mut batch {
            mask_span(span);
        }
        let n = batch.len() as u64;
        let result = self.inner.export(batch).await;
        let s = stats();
        match &result {
            Ok(()) => {
                s.spans.inc_by(n);
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("telemetry: span export to the OTLP collector works again");
                }
            }
            Err(e) => {
                s.failures.inc();
                s.lost.inc_by(n);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, spans = n,
                        "telemetry: span export to the OTLP collector failed; spans are dropped until it works again");
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// Mask person numbers in everything of a span that carries text.
fn mask_span(span: &mut SpanData) {
    mask_cow(&mut span.name);
    mask_attributes(&mut span.attributes);
    for event in &mut span.events.events {
        mask_cow(&mut event.name);
        mask_attributes(&mut event.attributes);
    }
    for link in &mut span.links.links {
        mask_attributes(&mut link.attributes);
    }
    if let Status::Error { description } = &mut span.status {
        mask_cow(description);
    }
}

fn mask_cow(text: &mut Cow<'static, str>) {
    if let Cow::Owned(masked) = crate::logmask::mask(text) {
        *text = Cow::Owned(masked);
    }
}

fn mask_attributes(attributes: &mut [KeyValue]) {
    for kv in attributes {
        match &mut kv.value {
            Value::String(s) => mask_string(s),
            Value::Array(opentelemetry::Array::String(items)) => {
                items.iter_mut().for_each(mask_string)
            }
            _ => {}
        }
    }
}

fn mask_string(s: &mut StringValue) {
    if let Cow::Owned(masked) = crate::logmask::mask(s.as_str()) {
        *s = StringValue::from(masked);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_added_once() {
        assert_eq!(
            traces_url("http://c:4318"),
            "http://c:4318/v1/traces".to_string()
        );
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }

    #[test]
    fn person_numbers_are_masked_in_attributes_events_and_status() {
        let mut attrs = vec![
            KeyValue::new("url.path", "/fhir/Patient/0703451234"),
            KeyValue::new(
                "ids",
                Value::Array(opentelemetry::Array::String(vec![StringValue::from(
                    "19451107-1234".to_string(),
                )])),
            ),
            KeyValue::new("http.response.status_code", 200_i64),
        ];
        mask_attributes(&mut attrs);
        assert_eq!(attrs[0].value.as_str(), "/fhir/Patient/070345xxxx");
        match &attrs[1].value {
            Value::Array(opentelemetry::Array::String(items)) => {
                assert_eq!(items[0].as_str(), "19451107-xxxx")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(attrs[2].value, Value::I64(200));
        let mut status: Cow<'static, str> = Cow::Borrowed("no patient 070345-1234");
        mask_cow(&mut status);
        assert_eq!(status, "no patient 070345-xxxx");
    }
}
