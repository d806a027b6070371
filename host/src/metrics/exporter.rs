//! The HTTP endpoint of `--metrics-addr HOST:PORT`, over HTTP/1.1 (hyper),
//! from the start of a run to its end:
//! - `GET /metrics`: the run's metrics in the OpenMetrics text format;
//! - `GET /healthz`: 200 while the process answers (liveness);
//! - `GET /readyz`: 200 while the run takes requests, 503 with the reason
//!   otherwise (loading, opening, a place failing for 30 s, stopping);
//! - any other path 404, any other method 405.

use super::Metrics;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
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

/// Answers until `stop` is cancelled: `registry` on `/metrics`, and the
/// probes from `metrics`' health.
pub(crate) async fn serve(
    listener: TcpListener,
    registry: Registry,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let registry = Arc::new(registry);
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
        let (registry, metrics) = (registry.clone(), metrics.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let answer = answer(&request, &registry, &metrics);
                async move { Ok::<_, std::convert::Infallible>(answer) }
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

/// The answer to `request`.
fn answer(request: &Request<Incoming>, registry: &Registry, metrics: &Metrics) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n".into());
    }
    match request.uri().path() {
        "/metrics" => scrape(registry),
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match metrics.readiness() {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
        },
        path => text(
            StatusCode::NOT_FOUND,
            format!("no {path} here: /metrics, /healthz or /readyz\n"),
        ),
    }
}

/// A plain-text answer.
fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .expect("a response from valid parts")
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
