//! The Prometheus endpoint: `--metrics-addr HOST:PORT` serves the run's
//! metrics in the OpenMetrics text format on any path (`/metrics` by
//! convention), over HTTP/1.1 (hyper), until the run ends.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The content type Prometheus asks for and the encoder writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds the endpoint: a port that is taken is a start-up error, not a
/// surprise at the first scrape.
pub(crate) async fn bind(address: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("cannot serve metrics on {address}: {e}"))
}

/// Answers scrapes until `stop` is cancelled.
pub(crate) async fn serve(listener: TcpListener, registry: Registry, stop: CancellationToken) {
    let registry = Arc::new(registry);
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "Serving metrics.");
    }
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.cancelled() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file handles, say: the run goes on, and so do we.
                tracing::warn!(error = %e, "Cannot accept a metrics connection.");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_: Request<Incoming>| {
                let registry = registry.clone();
                async move { Ok::<_, std::convert::Infallible>(scrape(&registry)) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "A metrics connection ended badly.");
            }
        });
    }
}

fn scrape(registry: &Registry) -> Response<Full<Bytes>> {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, registry) {
        Ok(()) => Response::builder()
            .header(hyper::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(Full::new(Bytes::from(text))),
        Err(e) => Response::builder()
            .status(500)
            .body(Full::new(Bytes::from(format!("cannot encode metrics: {e}\n")))),
    }
    .expect("a response from valid parts")
}
