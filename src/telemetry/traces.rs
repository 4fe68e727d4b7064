//! The OpenTelemetry pipeline: a tracer provider with the configured sampler and resource,
//! and a bounded batching span processor in front of the OTLP exporter.
//!
//! The SDK's own batch processor counts the spans it drops only in a log line at shutdown; an
//! operator needs the count while it happens, in `/metrics`. So finished spans go into a
//! bounded queue here instead: when it is full (a collector that is down or slow), a span is
//! dropped and counted in `favicon_finder_trace_spans_dropped_total`, never waited for, so
//! neither a request nor a worker is held up by export. One task sends batches, one at a time,
//! each within [`EXPORT_TIMEOUT`].

use crate::config::{OtlpProtocol, Sampler, TracesConfig};
use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter, SpanProcessor};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The most spans sent in one export request.
const MAX_BATCH: usize = 512;
/// How long a span waits for others before a partial batch is sent.
const BATCH_DELAY: Duration = Duration::from_secs(1);
/// One export request's whole time; past it the batch is given up (its spans counted as
/// dropped).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The OTLP exporter for `config`'s protocol and endpoint. A collector's TLS certificate is
/// checked against the system's CAs and `config.certificate`'s.
fn exporter(config: &TracesConfig) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    use opentelemetry_otlp::WithExportConfig;
    Ok(match config.protocol {
        OtlpProtocol::HttpProtobuf => {
            use opentelemetry_otlp::WithHttpConfig;
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(config.endpoint.clone())
                .with_timeout(EXPORT_TIMEOUT);
            if let Some(pem) = &config.certificate {
                // The exporter's own client trusts the system's CAs only.
                let mut client = reqwest::Client::builder().timeout(EXPORT_TIMEOUT);
                for certificate in reqwest::Certificate::from_pem_bundle(pem)? {
                    client = client.add_root_certificate(certificate);
                }
                builder = builder.with_http_client(client.build()?);
            }
            builder.build()?
        }
        OtlpProtocol::Grpc => {
            use opentelemetry_otlp::WithTonicConfig;
            use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig};
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(config.endpoint.clone())
                .with_timeout(EXPORT_TIMEOUT);
            if config.endpoint.starts_with("https://") {
                let mut tls = ClientTlsConfig::new().with_native_roots();
                if let Some(pem) = &config.certificate {
                    tls = tls.ca_certificate(Certificate::from_pem(pem));
                }
                builder = builder.with_tls_config(tls);
            }
            builder.build()?
        }
    })
}

/// The resource every span is reported with: `OTEL_SERVICE_NAME`, our version, and
/// `OTEL_RESOURCE_ATTRIBUTES`.
fn resource(config: &TracesConfig) -> Resource {
    let mut resource = Resource::builder_empty()
        .with_service_name(config.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    for (key, value) in &config.resource_attributes {
        resource = resource.with_attribute(KeyValue::new(key.clone(), value.clone()));
    }
    resource.build()
}

/// The tracer provider: `config`'s sampler and `resource`, spans ending in `processor`.
fn provider(config: &TracesConfig, resource: Resource, processor: Bounded) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_sampler(sampler(config.sampler))
        .with_resource(resource)
        .with_span_processor(processor)
        .build()
}

/// The SDK's sampler for the configured one.
fn sampler(sampler: Sampler) -> opentelemetry_sdk::trace::Sampler {
    use opentelemetry_sdk::trace::Sampler as Sdk;
    match sampler {
        Sampler::AlwaysOn => Sdk::AlwaysOn,
        Sampler::AlwaysOff => Sdk::AlwaysOff,
        Sampler::TraceIdRatio(ratio) => Sdk::TraceIdRatioBased(ratio),
        Sampler::ParentBasedAlwaysOn => Sdk::ParentBased(Box::new(Sdk::AlwaysOn)),
        Sampler::ParentBasedAlwaysOff => Sdk::ParentBased(Box::new(Sdk::AlwaysOff)),
        Sampler::ParentBasedTraceIdRatio(ratio) => {
            Sdk::ParentBased(Box::new(Sdk::TraceIdRatioBased(ratio)))
        }
    }
}

/// A span processor with a bounded queue: `on_end` never waits, and a span that finds the
/// queue full is counted and dropped.
#[derive(Debug)]
struct Bounded {
    spans: mpsc::Sender<SpanData>,
    flushes: mpsc::UnboundedSender<oneshot::Sender<()>>,
    dropped: prometheus::IntCounter,
}

impl Bounded {
    /// Starts the export task on the current runtime.
    fn start<E: SpanExporter + 'static>(
        exporter: E,
        max_queue: usize,
        dropped: prometheus::IntCounter,
    ) -> Self {
        let (spans, rx) = mpsc::channel(max_queue);
        let (flushes, flush_rx) = mpsc::unbounded_channel();
        tokio::spawn(export_loop(exporter, rx, flush_rx, dropped.clone()));
        Self {
            spans,
            flushes,
            dropped,
        }
    }
}

impl SpanProcessor for Bounded {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.spans.try_send(span).is_err() {
            self.dropped.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        // Waiting here would block a runtime thread on the export task of the same runtime;
        // `Pipeline::flush` flushes asynchronously instead.
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Sends the queued spans in batches of up to [`MAX_BATCH`], at the latest [`BATCH_DELAY`]
/// after the first of a batch arrived, and at once when a flush is asked for. Ends when the
/// processor is dropped.
async fn export_loop<E: SpanExporter>(
    exporter: E,
    mut spans: mpsc::Receiver<SpanData>,
    mut flushes: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    dropped: prometheus::IntCounter,
) {
    let mut batch: Vec<SpanData> = Vec::with_capacity(MAX_BATCH);
    let mut due: Option<tokio::time::Instant> = None;
    loop {
        let timer = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let flush = tokio::select! {
            span = spans.recv() => match span {
                Some(span) => {
                    batch.push(span);
                    due.get_or_insert_with(|| tokio::time::Instant::now() + BATCH_DELAY);
                    if batch.len() < MAX_BATCH {
                        continue;
                    }
                    None
                }
                None => {
                    send(&exporter, &mut batch, &dropped).await;
                    return;
                }
            },
            () = timer => None,
            Some(done) = flushes.recv() => {
                while let Ok(span) = spans.try_recv() {
                    batch.push(span);
                    if batch.len() >= MAX_BATCH {
                        send(&exporter, &mut batch, &dropped).await;
                    }
                }
                Some(done)
            }
        };
        send(&exporter, &mut batch, &dropped).await;
        due = None;
        if let Some(done) = flush {
            let _ = done.send(());
        }
    }
}

/// Exports `batch` (emptying it) within [`EXPORT_TIMEOUT`]; spans of a failed export are
/// counted as dropped: they are not retried, so a collector that stays down costs no more
/// than the queue.
async fn send<E: SpanExporter>(
    exporter: &E,
    batch: &mut Vec<SpanData>,
    dropped: &prometheus::IntCounter,
) {
    if batch.is_empty() {
        return;
    }
    let spans = std::mem::replace(batch, Vec::with_capacity(MAX_BATCH));
    let count = spans.len() as u64;
    let outcome = match tokio::time::timeout(EXPORT_TIMEOUT, exporter.export(spans)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(OTelSdkError::Timeout(EXPORT_TIMEOUT)),
    };
    if let Err(error) = outcome {
        dropped.inc_by(count);
        tracing::debug!(target: "otel_export", error = %error, spans = count, "could not export spans");
    }
}

/// The tracing pipeline of a process: the provider the tracing layer's tracer comes from, and
/// a handle on its queue to flush it at exit.
pub(super) struct Pipeline {
    /// The provider of the tracer.
    pub(super) provider: SdkTracerProvider,
    /// Asks the export task to send what is queued.
    flushes: mpsc::UnboundedSender<oneshot::Sender<()>>,
}

impl Pipeline {
    /// Builds the exporter, the queue and the provider; call inside the Tokio runtime.
    pub(super) fn start(
        config: &TracesConfig,
        dropped: prometheus::IntCounter,
    ) -> anyhow::Result<Self> {
        let mut exporter = exporter(config)?;
        let resource = resource(config);
        // The exporter sends the resource with each batch; the provider would hand it over
        // through the processor, which no longer holds the exporter once its task started.
        exporter.set_resource(&resource);
        let processor = Bounded::start(exporter, config.max_queue, dropped);
        let flushes = processor.flushes.clone();
        Ok(Self {
            provider: provider(config, resource, processor),
            flushes,
        })
    }

    /// Sends what is queued, waiting at most `within`.
    pub(super) async fn flush(&self, within: Duration) {
        let (done, wait) = oneshot::channel();
        if self.flushes.send(done).is_ok() {
            let _ = tokio::time::timeout(within, wait).await;
        }
    }
}
