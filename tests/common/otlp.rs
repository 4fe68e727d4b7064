//! An OTLP collector for the tests: over HTTP it accepts `POST /v1/traces` in protobuf and
//! decodes each request with `opentelemetry-proto`; over gRPC it serves the trace service.
//! Either way it keeps every span with its resource's attributes, for the test to search.
//! Both can listen over TLS, with a certificate from a test CA.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One span as received.
#[derive(Clone, Debug)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    /// The span's own attributes, as text.
    pub attributes: HashMap<String, String>,
    /// Its resource's attributes (`service.name`, `OTEL_RESOURCE_ATTRIBUTES`).
    pub resource: HashMap<String, String>,
    /// Every other string the span carries: event names and attributes, link attributes,
    /// the status message.
    pub other_text: Vec<String>,
    /// The trace ids of its links.
    pub links: Vec<String>,
}

/// The collector; it stops with the test's runtime.
pub struct Collector {
    pub addr: SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Collector {
    /// Listens on a free loopback port.
    pub async fn start() -> Self {
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let app = http_app(spans.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, spans }
    }

    /// Listens for OTLP over gRPC on a free loopback port.
    pub async fn start_grpc() -> Self {
        use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(Grpc(spans.clone()));
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await
                .unwrap()
        });
        Self { addr, spans }
    }

    /// Listens on a free loopback port over TLS, with a certificate for `127.0.0.1` from
    /// `ca`: OTLP over HTTP, or over gRPC with `grpc` (then HTTP/2, offered by ALPN).
    pub async fn start_tls(ca: &super::tls::TestCa, grpc: bool) -> Self {
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let certificate = ca
            .cert_for("127.0.0.1")
            .expect("a certificate for 127.0.0.1");
        let mut config = super::tls::TestCa::server_config(Arc::new(Always(certificate)));
        if grpc {
            config.alpn_protocols = vec![b"h2".to_vec()];
        }
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Connections whose handshake failed are skipped: the exporter retries with a new one.
        let connections =
            futures::stream::unfold((listener, acceptor), |(listener, acceptor)| async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        return Some((Ok::<_, std::io::Error>(TlsConn(tls)), (listener, acceptor)));
                    }
                }
            });
        if grpc {
            use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
            let service = TraceServiceServer::new(Grpc(spans.clone()));
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming(connections),
            );
        } else {
            let app = http_app(spans.clone());
            tokio::spawn(async move {
                let mut connections = std::pin::pin!(connections);
                while let Some(Ok(TlsConn(tls))) = futures::StreamExt::next(&mut connections).await
                {
                    let service = hyper_util::service::TowerToHyperService::new(app.clone());
                    tokio::spawn(
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(tls), service),
                    );
                }
            });
        }
        Self { addr, spans }
    }

    /// `OTEL_EXPORTER_OTLP_ENDPOINT` for a process that should export here.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The same over TLS, for a collector from [`Collector::start_tls`].
    pub fn tls_endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits (up to `within`) until `found` holds of the spans received, and returns them.
    pub async fn wait_for(
        &self,
        what: &str,
        within: Duration,
        found: impl Fn(&[Span]) -> bool,
    ) -> Vec<Span> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let spans = self.spans();
            if found(&spans) {
                return spans;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {what} within {within:?}; spans received: {:#?}",
                spans
                    .iter()
                    .map(|s| (&s.name, &s.trace_id))
                    .collect::<Vec<_>>()
            );
            // Wall-clock: the spans come from other processes' export batches.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Whether `span` descends from the span `ancestor` within `spans` (up to 16 levels).
pub fn descends<S: std::borrow::Borrow<Span>>(spans: &[S], span: &Span, ancestor: &str) -> bool {
    let mut up = span.parent_span_id.clone();
    for _ in 0..16 {
        if up == ancestor {
            return true;
        }
        match spans.iter().map(S::borrow).find(|s| s.span_id == up) {
            Some(parent) => up = parent.parent_span_id.clone(),
            None => return false,
        }
    }
    false
}

/// OTLP over HTTP: `POST /v1/traces` in protobuf, its spans kept in `spans`.
fn http_app(spans: Arc<Mutex<Vec<Span>>>) -> axum::Router {
    axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let kept = spans.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).unwrap();
                kept.lock().unwrap().extend(flatten(request));
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    )
}

/// Answers every handshake with one certificate: a client connecting to an address sends no
/// server name to pick one by.
#[derive(Debug)]
struct Always(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Always {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// One accepted TLS connection, as tonic's server takes connections.
struct TlsConn(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl tokio::io::AsyncRead for TlsConn {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsConn {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// The gRPC trace service, keeping what it is sent.
struct Grpc(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        self.0.lock().unwrap().extend(flatten(request.into_inner()));
        Ok(tonic::Response::new(Default::default()))
    }
}

fn flatten(request: ExportTraceServiceRequest) -> Vec<Span> {
    let mut out = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                let mut other_text = Vec::new();
                for event in &span.events {
                    other_text.push(event.name.clone());
                    other_text.extend(attributes(&event.attributes).into_values());
                }
                for link in &span.links {
                    other_text.extend(attributes(&link.attributes).into_values());
                }
                if let Some(status) = &span.status {
                    other_text.push(status.message.clone());
                }
                out.push(Span {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name.clone(),
                    attributes: attributes(&span.attributes),
                    resource: resource.clone(),
                    other_text,
                    links: span.links.iter().map(|l| hex(&l.trace_id)).collect(),
                });
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(text).unwrap_or_default(),
            )
        })
        .collect()
}

fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(any_value::Value::ArrayValue(a)) => {
            a.values.iter().map(text).collect::<Vec<_>>().join(",")
        }
        Some(any_value::Value::KvlistValue(kv)) => attributes(&kv.values)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(),
    }
}
