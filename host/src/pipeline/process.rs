//! One request, to the end: ask the handler, carry out its operations,
//! then remove the request from its source, or dead-letter it. The request
//! holds a slot of the run's concurrency until its effects are stored,
//! except while it waits to retry a call (see
//! [`crate::retry::Retry::run_holding`]); its removal needs none, unless
//! the run has only one.

use super::Rollback;
use super::keys;
use super::slots::Slot;
use super::{Job, Shared};
use crate::contract::{Context, Operation, Plan};
use crate::error::{Class, StorageError};
use crate::handler::CallError;
use crate::metrics;
use crate::retry::{Attempt, Hold};
use crate::sink::Sink;
use crate::source::{DeadLettering, Version};
use crate::verdicts::Verdict;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// What the handler and the sink made of a request.
enum Decision {
    /// Its operations are stored: remove it.
    Applied { plan: Plan, warnings: u32 },
    /// The handler refused it (rejected it, or failed on it): move it to
    /// the dead-letter place with this reason, unless the handler is on
    /// trial.
    Refused(String),
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
    /// Gone from the source, or replaced there, before it could be moved
    /// to the dead-letter place: nothing was dead-lettered.
    Missed(String),
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
    fn dead_lettered(moved: Attempt<DeadLettering, StorageError>, reason: String) -> Fate {
        match moved {
            Attempt::Done(DeadLettering::Kept) => Fate::DeadLettered(reason),
            Attempt::Done(DeadLettering::Missed) => Fate::Missed(reason),
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
    // The generation a held refusal was counted against already.
    let mut counted = None;
    let decision = loop {
        let decision = decide_and_store(shared, job, slot, &generation).await;
        let (Decision::Refused(_), Some(rollback)) = (&decision, &shared.options.rollback) else {
            break decision;
        };
        let judged = generation.load(Ordering::Relaxed);
        if rollback.rolled_back(judged) {
            // Refused by a handler rolled back while it decided: the one
            // put back decides it.
            continue;
        }
        if job.widget.is_none() {
            // A request without an ordering key runs alone: held, it
            // would hold up every other. It is dead-lettered, and counted.
            break decision;
        }
        if !rollback.on_trial(judged) {
            break decision;
        }
        if counted != Some(judged) {
            rollback.held(judged, key);
            counted = Some(judged);
        }
        match hold_for_verdict(shared, job, slot, rollback, judged).await {
            Trial::DecideAgain => continue,
            Trial::Kept => break decision,
            Trial::Stopped => break Decision::Stopped,
        }
    };
    let fate = match decision {
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
        Decision::Refused(reason) | Decision::DeadLetter(reason) => {
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
            _ if generation == u64::MAX || counted == Some(generation) => {}
            Fate::Applied { .. } => rollback.record(generation, key, false),
            Fate::DeadLettered(_) => rollback.record(generation, key, true),
            _ => {}
        }
    }
    settle(shared, key, widget, job.listed, fate);
}

/// How often a held request looks whether its handler was judged.
const HOLD_POLL: Duration = Duration::from_millis(50);

/// How long a refusal is held at most while its handler is on trial: a
/// stream of one widget, all of it held behind the refusal, would never
/// fill the window.
const HOLD_AT_MOST: Duration = Duration::from_secs(60);

/// What became of a refusal held while its handler was on trial.
enum Trial {
    /// The handler that refused it is no longer live (rolled back, or
    /// replaced): the live one decides it.
    DecideAgain,
    /// The handler was kept: the refusal stands.
    Kept,
    /// The run stopped meanwhile: it stays in the source.
    Stopped,
}

/// Holds a request refused by the handler of `generation`, on trial, until
/// the rollback policy has judged that handler: its slot and its widget's
/// later requests let go of meanwhile (as while a failing call waits to
/// retry), so that they wait behind it and other widgets go on.
async fn hold_for_verdict(
    shared: &Shared,
    job: &Job,
    slot: &mut Slot<'_>,
    rollback: &Rollback,
    generation: u64,
) -> Trial {
    info!(request_key = %job.key, "Refused by a handler on trial (--rollback-on-dead-letters): held, with its widget's later requests, until the policy has judged the handler.");
    let mut holding = Retrying {
        slot,
        shared,
        widget: job.widget.as_deref(),
    };
    holding.release();
    let since = Instant::now();
    let verdict = loop {
        tokio::select! {
            biased;
            _ = shared.stop.cancelled() => return Trial::Stopped,
            () = tokio::time::sleep(HOLD_POLL) => {}
        }
        if shared.handlers.current_generation().1 != generation {
            break Trial::DecideAgain;
        }
        if !rollback.on_trial(generation) || since.elapsed() >= HOLD_AT_MOST {
            break Trial::Kept;
        }
    };
    holding.reacquire().await;
    verdict
}

/// Dead-letters a request the pipeline refused before its turn: too large
/// to read, or its ordering key could not be had (from the handler of
/// `generation`, which the rollback policy counts it against). It changes
/// nothing in the store, so it needs no place in its key's order.
pub(super) async fn refuse(
    shared: &Shared,
    key: &str,
    version: &Version,
    listed: Instant,
    reason: String,
    generation: Option<u64>,
) {
    let moved = shared
        .retry
        .run(|| shared.source.dead_letter(key, version, &reason))
        .await;
    let fate = Fate::dead_lettered(moved, reason);
    if let (Some(rollback), Some(generation), Fate::DeadLettered(_)) =
        (&shared.options.rollback, generation, &fate)
    {
        rollback.record(generation, key, true);
    }
    settle(shared, key, "-", listed, fate);
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
        Fate::Missed(reason) => {
            info!(request_key = %key, widget = %widget, reason = %reason, "The request was to be dead-lettered, but it had been removed or replaced in the source meanwhile; nothing was moved.");
        }
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
                let live = Verdict::answered(handled.verdict.clone());
                shadow.compare(&job.key, &job.body, job.widget.clone(), live, recorded);
            }
            handled
        }
        Attempt::Done(None) | Attempt::Stopped => return Decision::Stopped,
        Attempt::Failed(CallError::Handler(reason)) => {
            // A candidate that handles what the live handler fails on is
            // what an operator wants to see: compared too, against the
            // store as it is (nothing of this request was stored).
            if let Some(shadow) = shadow
                && let Some(recorded) = shadow.recorder(&shared.sink)
            {
                let live = Verdict::Refused(format!("handler failed: {reason}"));
                shadow.compare(&job.key, &job.body, job.widget.clone(), live, recorded);
            }
            return Decision::Refused(reason);
        }
        Attempt::Failed(CallError::Store(e)) => return Decision::Fatal(e),
    };
    let plan = match handled.verdict {
        Ok(plan) => plan,
        Err(reason) => return Decision::Refused(format!("rejected: {reason}")),
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
