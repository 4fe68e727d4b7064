//! A span around each new connection reqwest opens: the name lookup (its own `dns.lookup`
//! child), the TCP connect and the TLS handshake, which reqwest does not show one by one. A
//! request that reuses a pooled connection has no such span.

use std::task::{Context, Poll};
use tracing::Instrument;

/// The connector layer that adds the span.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ConnectSpanLayer;

impl<S> tower::Layer<S> for ConnectSpanLayer {
    type Service = ConnectSpan<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConnectSpan(inner)
    }
}

/// The connector wrapped by [`ConnectSpanLayer`].
#[derive(Clone, Debug)]
pub(crate) struct ConnectSpan<S>(S);

impl<S, R> tower::Service<R> for ConnectSpan<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = tracing::instrument::Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.0
            .call(request)
            .instrument(tracing::debug_span!("http.connect", otel.kind = "client"))
    }
}
