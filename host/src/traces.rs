//! OpenTelemetry traces. When a collector is named (`--otlp-endpoint`, or
//! the standard `OTEL_EXPORTER_OTLP_ENDPOINT` and
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), each request's span and its
//! stages' (made in `pipeline/spans.rs`) are exported over OTLP,
//! HTTP/protobuf, by the SDK's batch processor on a thread of its own.
//! Otherwise nothing is set up, and the spans are disabled where they are
//! made (`tracing` checks a callsite's interest once).
//!
//! Trace context comes in with an SQS message (a `traceparent` message
//! attribute, or X-Ray's `AWSTraceHeader`): a request's span continues
//! that trace. It goes out with a dead letter, as a `traceparent`, and log
//! lines written while a request is processed carry its trace id.

use crate::error::UsageError;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{SpanContext, TraceContextExt as _, TraceId, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::collections::HashMap;
use std::time::Duration;
use tracing_subscriber::Layer as _;

/// The target of the request spans: only the OpenTelemetry layer takes
/// it, never a log line.
pub const SPANS: &str = "widget_host::spans";

/// How long the end of the process waits for the spans still to send.
const FLUSH_AT_EXIT: Duration = Duration::from_secs(5);

/// The W3C trace context attribute (an SQS message attribute, an S3 dead
/// letter's metadata): `00-TRACE_ID-SPAN_ID-FLAGS`.
pub(crate) const TRACEPARENT: &str = "traceparent";

/// Where spans go, as the flag or the environment named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Collector {
    /// The flag's base address: spans go to `ADDRESS/v1/traces`.
    Flag(String),
    /// The `OTEL_EXPORTER_OTLP_*` variables: the exporter reads them.
    Environment,
}

/// Whether traces are exported, and where: `flag` is `--otlp-endpoint`;
/// `env` reads a variable. Off unless a collector is named, and off
/// whatever is named where `OTEL_SDK_DISABLED=true` or
/// `OTEL_TRACES_EXPORTER=none`. A protocol other than HTTP/protobuf is a
/// usage error: it is the one built in.
pub fn collector(
    flag: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Collector>, UsageError> {
    let set = |name: &str| env(name).filter(|value| !value.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|value| value.trim().eq_ignore_ascii_case("true"))
        || set("OTEL_TRACES_EXPORTER").is_some_and(|value| value.trim() == "none")
    {
        return Ok(None);
    }
    let collector = match flag {
        Some(address) => Collector::Flag(address.trim_end_matches('/').to_owned()),
        None if set("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
            || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some() =>
        {
            Collector::Environment
        }
        None => return Ok(None),
    };
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(protocol) = set(name) {
            if protocol.trim() != "http/protobuf" {
                return Err(UsageError(format!(
                    "{name}={protocol}: widget-host exports traces over OTLP/HTTP only; set {name}=http/protobuf and name the collector's HTTP port (4318), or unset it"
                )));
            }
            break;
        }
    }
    Ok(Some(collector))
}

/// Traces being exported: shut down at the end, to send what is left.
pub struct Traces {
    provider: SdkTracerProvider,
}

/// A layer for the log's registry: the request spans, to OpenTelemetry.
pub type SpanLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

impl Traces {
    /// Starts exporting to `collector`. Call it outside the async runtime:
    /// the exporter's HTTP client blocks, on the processor's own thread.
    pub fn start(collector: &Collector) -> anyhow::Result<(Traces, SpanLayer)> {
        use opentelemetry_otlp::{Protocol, WithExportConfig as _};
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary);
        if let Collector::Flag(address) = collector {
            exporter = exporter.with_endpoint(format!("{address}/v1/traces"));
        }
        let exporter = exporter
            .build()
            .map_err(|e| anyhow::anyhow!("cannot set up the OTLP trace exporter: {e}"))?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        // The environment's name wins (OTEL_SERVICE_NAME, or service.name
        // in OTEL_RESOURCE_ATTRIBUTES); else this program's, not the SDK's
        // `unknown_service`.
        let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|name| !name.is_empty())
            || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|all| all.contains("service.name="));
        if !named {
            resource = resource.with_service_name("widget-host");
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                resource
                    .with_attribute(opentelemetry::KeyValue::new(
                        "service.version",
                        env!("CARGO_PKG_VERSION"),
                    ))
                    .build(),
            )
            .build();
        let tracer = provider.tracer("widget-host");
        // Only the spans' own attributes: no source locations, threads,
        // targets or busy times, which cost a little on every span.
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_level(false)
            .with_tracked_inactivity(false)
            // The request spans, and the host's warnings and errors: made
            // inside a request's span, they are events of that span.
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target(SPANS, tracing::Level::TRACE)
                    .with_target("widget_host", tracing::Level::WARN),
            )
            .boxed();
        Ok((Traces { provider }, layer))
    }

    /// Sends the spans not yet sent, for a few seconds at most. Call it
    /// outside the async runtime.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown_with_timeout(FLUSH_AT_EXIT) {
            eprintln!("warning: not every trace span was sent to the collector: {e}");
        }
    }
}

/// The trace context a request came with, as its source carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// W3C trace context: `traceparent`, and `tracestate` if any.
    W3c {
        traceparent: String,
        tracestate: Option<String>,
    },
    /// X-Ray's header (an SQS message's `AWSTraceHeader`).
    XRay(String),
}

impl Incoming {
    /// The span context it names, if it is well formed.
    pub(crate) fn span_context(&self) -> Option<SpanContext> {
        let context = match self {
            Incoming::W3c {
                traceparent,
                tracestate,
            } => {
                let mut carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.clone())]);
                if let Some(state) = tracestate {
                    carrier.insert("tracestate".to_owned(), state.clone());
                }
                TraceContextPropagator::new()
                    .extract(&carrier)
                    .span()
                    .span_context()
                    .clone()
            }
            Incoming::XRay(header) => {
                opentelemetry_aws::trace::xray_propagator::span_context_from_str(header)?
            }
        };
        context.is_valid().then_some(context)
    }
}

/// `context` as a W3C `traceparent`.
pub(crate) fn traceparent(context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

tokio::task_local! {
    /// The trace of the request a task is processing, for its log lines.
    static CURRENT: TraceId;
}

/// `work` with `trace` as the current request's trace: log lines written
/// while it runs carry its id.
pub(crate) fn within<F: std::future::Future>(
    trace: TraceId,
    work: F,
) -> tokio::task::futures::TaskLocalFuture<TraceId, F> {
    CURRENT.scope(trace, work)
}

/// The trace id of the request being processed here, if traces are on.
pub(crate) fn current_trace_id() -> Option<TraceId> {
    CURRENT.try_with(|trace| *trace).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn traces_are_off_unless_a_collector_is_named_and_off_when_disabled() {
        assert_eq!(collector(None, env(&[])), Ok(None));
        assert_eq!(
            collector(None, env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")])),
            Ok(Some(Collector::Environment))
        );
        assert_eq!(
            collector(
                None,
                env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/v1/traces")])
            ),
            Ok(Some(Collector::Environment))
        );
        assert_eq!(
            collector(Some("http://c:4318/"), env(&[])),
            Ok(Some(Collector::Flag("http://c:4318".into())))
        );
        for off in [("OTEL_SDK_DISABLED", "true"), ("OTEL_TRACES_EXPORTER", "none")] {
            assert_eq!(collector(Some("http://c:4318"), env(&[off])), Ok(None), "{off:?}");
        }
        assert_eq!(
            collector(None, env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])),
            Ok(None)
        );
    }

    #[test]
    fn a_protocol_other_than_http_protobuf_is_a_usage_error_naming_the_fix() {
        let error = collector(
            None,
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ]),
        )
        .unwrap_err();
        assert!(
            error.0.contains("OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"),
            "{}",
            error.0
        );
        // The signal's own variable is the one that counts.
        assert!(
            collector(
                None,
                env(&[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ]),
            )
            .is_ok()
        );
    }

    #[test]
    fn incoming_context_is_read_from_w3c_and_from_x_ray_and_goes_out_as_a_traceparent() {
        let w3c = Incoming::W3c {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            tracestate: None,
        };
        let context = w3c.span_context().unwrap();
        assert_eq!(
            traceparent(&context),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        let x_ray = Incoming::XRay(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".into(),
        );
        let context = x_ray.span_context().unwrap();
        assert_eq!(context.trace_id().to_string(), "5759e988bd862e3fe1be46a994272793");
        assert_eq!(context.span_id().to_string(), "53995c3f42cd8ad8");
        assert!(context.is_sampled());
        for bad in [
            Incoming::XRay("nonsense".into()),
            Incoming::W3c {
                traceparent: "00-00000000000000000000000000000000-00f067aa0ba902b7-01".into(),
                tracestate: None,
            },
        ] {
            assert_eq!(bad.span_context(), None, "{bad:?}");
        }
    }
}
