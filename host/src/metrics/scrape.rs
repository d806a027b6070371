//! The run's metrics as Prometheus reads them: the registry the exporter
//! serves, and the counters kept for the summary, read at each scrape.

use super::Metrics;
use crate::aws::ApiCalls;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::fmt;

impl Metrics {
    /// A registry of this run's metrics for the exporter, with the AWS
    /// clients' call counts when the run talks to AWS, the candidate's
    /// when it has one (`with_candidate`), and the process's own.
    pub(crate) fn registry(
        self: &std::sync::Arc<Self>,
        api_calls: Option<ApiCalls>,
        with_candidate: bool,
    ) -> Registry {
        let mut root = Registry::default();
        root.register_collector(Box::new(super::process::Process));
        let registry = root.sub_registry_with_prefix("widget_host");
        registry.register(
            "requests",
            "Requests taken out of the source, by the kind the handler named and outcome",
            self.requests.clone(),
        );
        registry.register(
            "handler_seconds",
            "Time of one handler call (handle), in seconds",
            self.handler_seconds.clone(),
        );
        registry.register(
            "request_latency_seconds",
            "Time from a request's listing to its removal from the source, in seconds",
            self.latency_seconds.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Requests admitted and not yet done",
            self.in_flight.clone(),
        );
        registry.register(
            "source_lag_seconds",
            "Age of the oldest request the last full pass over the source saw, in seconds",
            self.source_lag_seconds.clone(),
        );
        registry.register(
            "keyless_wait_seconds",
            "How long the request without an ordering key now waiting for the requests in flight has waited (0: none waits)",
            self.keyless_wait_seconds.clone(),
        );
        registry.register(
            "concurrency_limit",
            "Requests the run may process at once now; lowered while the backend throttles many keys",
            self.concurrency.clone(),
        );
        registry.register(
            "requests_handed_back",
            "Messages of a busy ordering key handed back to their queue, to be received again later",
            self.handed_back.clone(),
        );
        if with_candidate {
            self.register_candidate(registry);
        }
        registry.register(
            "handler_swaps",
            "Swaps of the live handler, by kind: reload (SIGHUP, --watch), promotion, rollback",
            self.handler_swaps.clone(),
        );
        registry.register(
            "handler_rollbacks",
            "Swaps of the handler undone by --rollback-on-dead-letters",
            self.rollbacks.clone(),
        );
        registry.register_collector(Box::new(Snapshot {
            metrics: self.clone(),
            api_calls,
        }));
        root
    }

    /// The candidate handler's metrics.
    fn register_candidate(&self, registry: &mut Registry) {
        registry.register(
            "candidate_requests",
            "Requests the candidate handler (--candidate) was asked about, by outcome: same, newly-rejected, newly-accepted, plans-differ, candidate-failed, skipped",
            self.candidate_requests.clone(),
        );
        registry.register(
            "candidate_handler_seconds",
            "Time of one candidate handler call (handle, in shadow), in seconds",
            self.candidate_seconds.clone(),
        );
        registry.register(
            "candidate_promoted",
            "1 while the live handler is the promoted candidate (--promote-after); 0 again once a reload or a rollback replaced it",
            self.candidate_promoted.clone(),
        );
    }
}

/// The counters kept for the summary, read when Prometheus scrapes.
#[derive(Debug)]
struct Snapshot {
    metrics: std::sync::Arc<Metrics>,
    api_calls: Option<ApiCalls>,
}

impl Snapshot {
    /// Encodes one counter family from (labels, value) pairs.
    fn counters(
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        values: impl IntoIterator<Item = (Vec<(&'static str, String)>, u64)>,
    ) -> Result<(), fmt::Error> {
        let family = Family::<Vec<(&'static str, String)>, Counter>::default();
        for (labels, value) in values {
            family.get_or_create(&labels).inc_by(value);
        }
        family.encode(encoder.encode_descriptor(name, help, None, family.metric_type())?)
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let counts = self.metrics.counts.lock().unwrap().clone();
        Self::counters(
            &mut encoder,
            "dead_letters",
            "Requests moved to the dead-letter place",
            [(Vec::new(), counts.dead_lettered)],
        )?;
        Self::counters(
            &mut encoder,
            "handler_warnings",
            "Warnings the handler logged",
            [(Vec::new(), counts.warnings)],
        )?;
        Self::counters(
            &mut encoder,
            "store_operations",
            "Store operations carried out",
            [(Vec::new(), counts.operations)],
        )?;
        let retries = &self.metrics.retries;
        Self::counters(
            &mut encoder,
            "retries",
            "Calls made again after a transient failure, by class",
            [
                (vec![("class", "throttling".to_owned())], retries.throttling()),
                (
                    vec![("class", "transient".to_owned())],
                    retries.get() - retries.throttling(),
                ),
            ],
        )?;
        if let Some((ordering_key, handle)) = self.metrics.instances() {
            Self::counters(
                &mut encoder,
                "handler_instances",
                "Handler instances made, by the export they were made for (ordering-key, handle): their sum over requests taken is what a request costs in instances",
                [
                    (vec![("export", "ordering-key".to_owned())], ordering_key),
                    (vec![("export", "handle".to_owned())], handle),
                ],
            )?;
        }
        if let Some(calls) = &self.api_calls {
            Self::counters(
                &mut encoder,
                "aws_calls",
                "HTTP requests sent to AWS, retries included, by operation",
                calls
                    .snapshot()
                    .into_iter()
                    .map(|(operation, n)| (vec![("operation", operation)], n)),
            )?;
            Self::counters(
                &mut encoder,
                "aws_sdk_retries",
                "Of those, the AWS SDK's own retries within one call of the host",
                [(vec![], calls.sdk_retries())],
            )?;
        }
        Ok(())
    }
}
