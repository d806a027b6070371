//! A request's trace: one span from its read to its end, with a child for
//! each stage it passes through (its read, its ordering key, waiting
//! behind its widget's earlier requests, waiting for a grant, each handler
//! call, each store call, its removal or its dead letter) and what became
//! of it. The spans are made on [`SPANS`], which only the OpenTelemetry
//! layer takes (see `traces.rs`): with traces off each is a disabled span,
//! and nothing here does more than look at that.

use super::fate::Fate;
use crate::metrics;
use crate::source::Source;
use crate::traces::{self, Incoming, SPANS};
use futures::future::Either;
use opentelemetry::trace::{SpanContext, TraceContextExt as _, TraceId};
use std::future::Future;
use tracing::Instrument as _;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The stages of a request, as its trace names them.
pub(super) mod stage {
    pub(crate) const READ: &str = "read";
    pub(crate) const ORDERING_KEY: &str = "ordering key";
    pub(crate) const WAIT_FOR_WIDGET: &str = "wait for widget";
    pub(crate) const WAIT_FOR_GRANT: &str = "wait for grant";
    pub(crate) const HANDLE: &str = "handle";
    pub(crate) const PUT: &str = "store put";
    pub(crate) const DELETE: &str = "store delete";
    pub(crate) const REMOVE: &str = "remove";
    pub(crate) const DEAD_LETTER: &str = "dead-letter";
}

/// One request's span, and its context while traces are on.
pub(super) struct RequestSpan {
    span: tracing::Span,
    context: Option<SpanContext>,
}

impl RequestSpan {
    /// The span of the request `key`, continuing the trace it came with.
    /// (The span's fields are made only if it is enabled: with traces off,
    /// `source` is not even described.)
    pub(super) fn start(key: &str, source: &dyn Source, incoming: Option<&Incoming>) -> RequestSpan {
        let span = tracing::trace_span!(
            target: SPANS,
            "request",
            otel.kind = "consumer",
            request.key = %key,
            request.source = %source.describe(),
            widget.key = Empty,
            handler.generation = Empty,
            attempts = Empty,
            outcome = Empty,
            reason = Empty,
            otel.status_code = Empty,
        );
        if span.is_disabled() {
            return RequestSpan { span, context: None };
        }
        if let Some(parent) = incoming.and_then(Incoming::span_context) {
            // Before the span is entered: its parent is fixed from then on.
            let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
        }
        let context = span.context().span().span_context().clone();
        RequestSpan {
            span,
            context: context.is_valid().then_some(context),
        }
    }

    /// A child span for one stage, `key` naming what it touches (a
    /// widget's store key), if anything.
    pub(super) fn stage(&self, name: &'static str, key: Option<&str>) -> tracing::Span {
        if self.span.is_disabled() {
            return tracing::Span::none();
        }
        tracing::trace_span!(
            target: SPANS,
            parent: &self.span,
            "stage",
            otel.name = name,
            store.key = key,
            attempts = Empty,
        )
    }

    /// `work` as a stage: in its span, its log lines with the trace id.
    /// With traces off, `work` itself: an enum of the two, not an `async`
    /// block, whose state would hold `work` twice (a run's peak memory at
    /// 128 requests at once grew from 48 to 87 MB that way).
    pub(super) fn in_stage<F: Future>(
        &self,
        name: &'static str,
        key: Option<&str>,
        work: F,
    ) -> impl Future<Output = F::Output> {
        match self.trace_id() {
            None => Either::Left(work),
            Some(trace) => Either::Right(traces::within(trace, work.instrument(self.stage(name, key)))),
        }
    }

    /// `work` in the request's span, its log lines with the trace id.
    pub(super) fn within<F: Future>(&self, work: F) -> impl Future<Output = F::Output> {
        match self.trace_id() {
            None => Either::Left(work),
            Some(trace) => Either::Right(traces::within(trace, work.instrument(self.span.clone()))),
        }
    }

    /// Records an attribute of the request (see the fields of [`Self::start`]).
    pub(super) fn record(&self, field: &str, value: impl tracing::Value) {
        self.span.record(field, value);
    }

    /// Records what became of the request: its outcome as the metrics
    /// name it, and why it failed, if it did.
    pub(super) fn ended(&self, fate: &Fate) {
        if self.span.is_disabled() {
            return;
        }
        let (outcome, error) = match fate {
            Fate::Applied { .. } => (metrics::APPLIED, None),
            Fate::DeadLettered(reason) => (metrics::DEAD_LETTERED, Some(reason.clone())),
            Fate::Missed(_) => ("missed", None),
            Fate::Stopped => ("stopped", None),
            Fate::Stuck(e) => ("stuck", Some(e.to_string())),
            Fate::Fatal(e) => ("failed", Some(e.to_string())),
        };
        self.span.record("outcome", outcome);
        if let Some(reason) = error {
            self.span.record("reason", reason.as_str());
            self.span.record("otel.status_code", "ERROR");
        }
    }

    /// Records that the run let go of the request (its widget was busy or
    /// failing): listed again, or handed back to its queue, for a later
    /// turn, which is a trace of its own.
    pub(super) fn let_go(&self) {
        self.span.record("outcome", "let go");
    }

    /// The request's trace id, while traces are on.
    pub(super) fn trace_id(&self) -> Option<TraceId> {
        self.context.as_ref().map(SpanContext::trace_id)
    }

    /// The request's span as a W3C `traceparent`, for its dead letter.
    pub(super) fn traceparent(&self) -> Option<String> {
        self.context.as_ref().map(traces::traceparent)
    }
}
