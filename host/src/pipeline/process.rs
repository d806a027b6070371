//! One request, to the end: ask the handler, carry out its operations,
//! then remove the request from its source, or dead-letter it. The request
//! holds a slot of the run's concurrency until its effects are stored,
//! except while it waits to retry a call (see
//! [`crate::retry::Retry::run_holding`]); its removal needs none, unless
//! the run has only one.

use super::keys;
use super::slots::Slot;
use super::{Job, Shared};
use crate::contract::{Context, Operation, Plan};
use crate::error::{Class, StorageError};
use crate::handler::CallError;
use crate::metrics;
use crate::retry::{Attempt, Hold};
use crate::sink::Sink;
use crate::source::Version;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tracing::{error, info, warn};

/// What the handler and the sink made of a request.
enum Decision {
    /// Its operations are stored: remove it.
    Applied { plan: Plan, warnings: u32 },
    /// Move it to the dead-letter place with this reason.
    DeadLetter(String),
    /// The run stopped first: it stays in the source.
    Stopped,
    /// The environment failed: it stays in the source, and the run stops.
    Fatal(StorageError),
}

/// What became of a request in the end.
enum Fate {
    Applied {
        kind: String,
        operations: usize,
        warnings: u32,
    },
    DeadLettered(String),
    /// Stopped before it was done: it stays in the source.
    Stopped,
    /// It could not be removed from the source (logged): it stays there.
    Stuck(StorageError),
    /// The environment failed: it stays in the source, and the run stops.
    Fatal(StorageError),
}

impl Fate {
    /// What a request comes to when moving it to the dead-letter place
    /// ended as `moved` says.
    fn dead_lettered(moved: Attempt<(), StorageError>, reason: String) -> Fate {
        match moved {
            Attempt::Done(()) => Fate::DeadLettered(reason),
            Attempt::Failed(e) => Fate::not_removed(e),
            Attempt::Stopped => Fate::Stopped,
        }
    }

    /// What a request whose removal from the source failed comes to.
    fn not_removed(error: StorageError) -> Fate {
        match error.class {
            Class::Request => Fate::Stuck(error),
            Class::Transient | Class::Fatal => Fate::Fatal(error),
        }
    }
}

/// Takes `job` to the end, in `slot`.
pub(super) async fn process(shared: &Shared, job: &Job, slot: &mut Slot<'_>) {
    let key = &job.key;
    let widget = job.widget.as_deref().unwrap_or("-");
    // The generation of the handler that decided, for the rollback policy.
    let generation = AtomicU64::new(u64::MAX);
    let fate = match decide_and_store(shared, job, slot, &generation).await {
        Decision::Stopped => Fate::Stopped,
        Decision::Fatal(e) => Fate::Fatal(e),
        Decision::Applied { plan, warnings } => {
            // The slot goes to the next request while this one is removed:
            // removals then come in together and go out in one batch call
            // (the key's next request still waits for this removal). With
            // one slot the run stays strictly one request at a time.
            if shared.options.concurrency.ceiling() > 1 {
                slot.release();
            }
            match shared.retry.run(|| shared.source.ack(key, &job.version)).await {
                Attempt::Done(()) => Fate::Applied {
                    kind: plan.kind,
                    operations: plan.operations.len(),
                    warnings,
                },
                Attempt::Failed(e) => Fate::not_removed(e),
                Attempt::Stopped => Fate::Stopped,
            }
        }
        Decision::DeadLetter(reason) => {
            let moved = shared
                .retry
                .run_holding(slot, || shared.source.dead_letter(key, &job.version, &reason))
                .await;
            Fate::dead_lettered(moved, reason)
        }
    };
    if let Some(rollback) = &shared.options.rollback {
        let generation = generation.load(Ordering::Relaxed);
        match &fate {
            Fate::Applied { .. } if generation != u64::MAX => rollback.record(generation, key, false),
            Fate::DeadLettered(_) if generation != u64::MAX => rollback.record(generation, key, true),
            _ => {}
        }
    }
    settle(shared, key, widget, job.listed, fate);
}

/// Dead-letters a request the pipeline refused before its turn: too large
/// to read, or its ordering key could not be had. It changes nothing in
/// the store, so it needs no place in its key's order.
pub(super) async fn refuse(shared: &Shared, key: &str, version: &Version, listed: Instant, reason: String) {
    let moved = shared
        .retry
        .run(|| shared.source.dead_letter(key, version, &reason))
        .await;
    settle(shared, key, "-", listed, Fate::dead_lettered(moved, reason));
}

/// Counts and logs what a request came to.
fn settle(shared: &Shared, key: &str, widget: &str, listed: Instant, fate: Fate) {
    let latency_ms = listed.elapsed().as_millis() as u64;
    if matches!(fate, Fate::Applied { .. } | Fate::DeadLettered(_)) {
        shared.metrics.request_done(listed);
    }
    match fate {
        Fate::Stopped => {}
        Fate::Fatal(e) => shared.fail(e),
        Fate::Stuck(e) => {
            error!(request_key = %key, error = %e, "Cannot remove request from the source; leaving it in place.");
            shared.tracker.lock().unwrap().stuck.insert(key.to_owned());
        }
        Fate::Applied {
            kind,
            operations,
            warnings,
        } => {
            shared.metrics.applied(&kind, operations, warnings);
            info!(request_key = %key, kind = %kind, widget = %widget, operations, warnings, latency_ms, outcome = metrics::APPLIED, "Request done.");
        }
        Fate::DeadLettered(reason) => dead_lettered(shared, key, widget, Some(latency_ms), &reason),
    }
}

/// Counts and logs a request moved to the dead-letter place; `latency_ms`
/// from its listing, when it was listed as a request.
pub(super) fn dead_lettered(shared: &Shared, key: &str, widget: &str, latency_ms: Option<u64>, reason: &str) {
    shared.metrics.dead_lettered();
    warn!(request_key = %key, widget = %widget, reason = %reason, latency_ms, outcome = metrics::DEAD_LETTERED, "Request dead-lettered.");
}

/// What a request lets go of while it waits to retry: its slot, and its
/// key's requests waiting behind it (see [`keys::shed`]).
struct Retrying<'a, 'b> {
    slot: &'a mut Slot<'b>,
    shared: &'a Shared,
    widget: Option<&'a str>,
}

impl Hold for Retrying<'_, '_> {
    fn release(&mut self) {
        self.slot.release();
        if let Some(widget) = self.widget {
            keys::shed(self.shared, widget);
        }
    }

    async fn reacquire(&mut self) {
        self.slot.reacquire().await;
    }

    fn throttled(&mut self) {
        self.slot.throttled();
    }

    fn failed(&mut self) {
        self.slot.failed();
    }

    fn succeeded(&mut self) {
        self.slot.succeeded();
    }
}

/// Asks the handler, then carries out its operations. Transient failures
/// are retried, with backoff, for as long as it takes.
async fn decide_and_store(
    shared: &Shared,
    job: &Job,
    slot: &mut Slot<'_>,
    generation: &AtomicU64,
) -> Decision {
    let slot = &mut Retrying {
        slot,
        shared,
        widget: job.widget.as_deref(),
    };
    let context = Context {
        key: job.key.clone(),
        destination: shared.sink.destination(),
    };
    // Each attempt takes the handler current when it starts.
    // A stop cancels the call: nothing is stored yet, so the request
    // simply stays in the source.
    let shadow = shared.options.shadow.as_ref();
    let handled = shared
        .retry
        .run_holding(slot, || async {
            let (handler, current) = shared.handlers.current_generation();
            generation.store(current, Ordering::Relaxed);
            // With a candidate in shadow, what the live handler reads is
            // kept for it.
            let recorded = shadow.and_then(|shadow| shadow.recorder(&shared.sink));
            let sink = match &recorded {
                Some(recorded) => recorded.clone() as Arc<dyn Sink>,
                None => shared.sink.clone(),
            };
            let started = std::time::Instant::now();
            tokio::select! {
                biased;
                handled = handler.handle(&job.body, &context, sink) => {
                    shared.metrics.handler_call(started.elapsed());
                    handled.map(|handled| Some((handled, recorded)))
                }
                _ = shared.stop.cancelled() => Ok(None),
            }
        })
        .await;
    let handled = match handled {
        Attempt::Done(Some((handled, recorded))) => {
            if let (Some(shadow), Some(recorded)) = (shadow, recorded) {
                shadow.compare(&job.key, &job.body, &handled, recorded);
            }
            handled
        }
        Attempt::Done(None) | Attempt::Stopped => return Decision::Stopped,
        Attempt::Failed(CallError::Handler(reason)) => return Decision::DeadLetter(reason),
        Attempt::Failed(CallError::Store(e)) => return Decision::Fatal(e),
    };
    let plan = match handled.verdict {
        Ok(plan) => plan,
        Err(reason) => return Decision::DeadLetter(format!("rejected: {reason}")),
    };
    for operation in &plan.operations {
        let stored = shared
            .retry
            .run_holding(slot, || async {
                match operation {
                    Operation::Put { key, document } => shared.sink.put(key, document).await,
                    Operation::Delete(key) => shared.sink.delete(key).await,
                }
            })
            .await;
        match stored {
            Attempt::Done(()) => {}
            Attempt::Failed(e) if e.class == Class::Request => {
                return Decision::DeadLetter(format!("store refused an operation: {e}"));
            }
            Attempt::Failed(e) => return Decision::Fatal(e),
            Attempt::Stopped => return Decision::Stopped,
        }
    }
    Decision::Applied {
        plan,
        warnings: handled.warnings,
    }
}
