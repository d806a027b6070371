//! One request, to the end: ask the handler, carry out its operations,
//! then remove the request from its source, or dead-letter it, and say
//! what became of it. The request holds its turn (a grant of the run's
//! concurrency, its key's place) until its effects are stored, except
//! while it waits to retry a call (see
//! [`crate::retry::Retry::run_holding`]); its removal needs none, unless
//! the run has only one. The scheduler gives the turn, and records the
//! fate this returns: nothing here calls back up.

use super::Rollback;
use super::fate::Fate;
use super::spans::{RequestSpan, stage};
use super::{Job, Shared};
use crate::contract::{Context, Operation, Plan};
use crate::error::{Class, StorageError};
use crate::handler::CallError;
use crate::retry::{Attempt, Hold};
use crate::sink::Read;
use crate::source::{DeadLettering, Version};
use crate::verdicts::Verdict;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tracing::info;

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

/// What a request comes to when moving it to the dead-letter place ended
/// as `moved` says.
fn dead_lettered(moved: Attempt<DeadLettering, StorageError>, reason: String) -> Fate {
    match moved {
        Attempt::Done(DeadLettering::Kept) => Fate::DeadLettered(reason),
        Attempt::Done(DeadLettering::Missed) => Fate::Missed(reason),
        Attempt::Failed(e) => not_removed(e),
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

/// What a request holds while it is decided and stored, given by the
/// scheduler: a grant of concurrency, and its key's place. While a call
/// waits to retry, [`Hold::release`] lets go of both (the key's waiting
/// requests too); once its effects are stored, [`Turn::stored`] lets go of
/// the grant alone.
pub(super) trait Turn: Hold {
    /// Its effects are stored: the grant may go to the next request while
    /// this one is removed from the source.
    fn stored(&mut self);
}

/// Takes `job` to the end, in its `turn`; what became of it.
pub(super) async fn process(shared: &Shared, job: &Job, turn: &mut impl Turn) -> Fate {
    let key = &job.key;
    // The generation of the handler that decided, for the rollback policy.
    let generation = AtomicU64::new(u64::MAX);
    // The generation a held refusal was counted against already.
    let mut counted = None;
    let decision = loop {
        let decision = decide_and_store(shared, job, turn, &generation).await;
        let (Decision::Refused(_), Some(rollback)) = (&decision, &shared.observers.rollback) else {
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
        match hold_for_verdict(shared, job, turn, rollback, judged).await {
            Trial::DecideAgain => continue,
            Trial::Kept => break decision,
            Trial::Stopped => break Decision::Stopped,
        }
    };
    let fate = match decision {
        Decision::Stopped => Fate::Stopped,
        Decision::Fatal(e) => Fate::Fatal(e),
        Decision::Applied { plan, warnings } => {
            // The grant goes to the next request while this one is removed:
            // removals then come in together and go out in one batch call
            // (the key's next request still waits for this removal). With
            // one grant the run stays strictly one request at a time.
            if shared.options.concurrency.ceiling() > 1 {
                turn.stored();
            }
            let removed = shared.retry.run(|| shared.source.ack(key, &job.version));
            match job.span.in_stage(stage::REMOVE, None, removed).await {
                Attempt::Done(()) => Fate::Applied {
                    kind: plan.kind,
                    operations: plan.operations.len(),
                    warnings,
                },
                Attempt::Failed(e) => not_removed(e),
                Attempt::Stopped => Fate::Stopped,
            }
        }
        Decision::Refused(reason) | Decision::DeadLetter(reason) => {
            let traceparent = job.span.traceparent();
            let moved = shared.retry.run_holding(turn, || {
                shared
                    .source
                    .dead_letter(key, &job.version, &reason, traceparent.as_deref())
            });
            let moved = job.span.in_stage(stage::DEAD_LETTER, None, moved).await;
            dead_lettered(moved, reason)
        }
    };
    if let Some(rollback) = &shared.observers.rollback {
        let generation = generation.load(Ordering::Relaxed);
        match &fate {
            _ if generation == u64::MAX || counted == Some(generation) => {}
            Fate::Applied { .. } => rollback.record(generation, key, false),
            Fate::DeadLettered(_) => rollback.record(generation, key, true),
            _ => {}
        }
    }
    fate
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
/// the rollback policy has judged that handler: its grant and its widget's
/// later requests let go of meanwhile (as while a failing call waits to
/// retry), so that they wait behind it and other widgets go on.
async fn hold_for_verdict(
    shared: &Shared,
    job: &Job,
    turn: &mut impl Turn,
    rollback: &Rollback,
    generation: u64,
) -> Trial {
    info!(request_key = %job.key, "Refused by a handler on trial (--rollback-on-dead-letters): held, with its widget's later requests, until the policy has judged the handler.");
    turn.release();
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
    turn.reacquire().await;
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
    reason: String,
    generation: Option<u64>,
    span: &RequestSpan,
) -> Fate {
    let traceparent = span.traceparent();
    let moved = shared.retry.run(|| {
        shared
            .source
            .dead_letter(key, version, &reason, traceparent.as_deref())
    });
    let moved = span.in_stage(stage::DEAD_LETTER, None, moved).await;
    let fate = dead_lettered(moved, reason);
    if let (Some(rollback), Some(generation), Fate::DeadLettered(_)) =
        (&shared.observers.rollback, generation, &fate)
    {
        rollback.record(generation, key, true);
    }
    fate
}

/// Asks the handler, then carries out its operations. Transient failures
/// are retried, with backoff, for as long as it takes.
async fn decide_and_store(
    shared: &Shared,
    job: &Job,
    turn: &mut impl Turn,
    generation: &AtomicU64,
) -> Decision {
    let context = Context {
        key: job.key.clone(),
        destination: shared.sink.destination(),
    };
    // Each attempt takes the handler current when it starts.
    // A stop cancels the call: nothing is stored yet, so the request
    // simply stays in the source.
    let shadow = shared.observers.shadow.as_ref();
    let mut attempts = 0u32;
    let handled = shared
        .retry
        .run_holding(turn, || {
            attempts += 1;
            job.span.in_stage(stage::HANDLE, None, async {
                let (handler, current) = shared.handlers.current_generation();
                generation.store(current, Ordering::Relaxed);
                job.span.record("handler.generation", current as i64);
                // With a candidate in shadow, what the live handler reads is
                // kept for it.
                let recorded = shadow.and_then(|shadow| shadow.recorder(&shared.sink));
                let store: Arc<dyn Read> = match &recorded {
                    Some(recorded) => recorded.clone(),
                    None => shared.sink.clone(),
                };
                let started = std::time::Instant::now();
                tokio::select! {
                    biased;
                    handled = handler.handle(&job.body, &context, store) => {
                        shared.metrics.handler_call(started.elapsed());
                        handled.map(|handled| Some((handled, recorded)))
                    }
                    _ = shared.stop.cancelled() => Ok(None),
                }
            })
        })
        .await;
    job.span.record("attempts", i64::from(attempts));
    let handled = match handled {
        Attempt::Done(Some((handled, recorded))) => {
            if let (Some(shadow), Some(recorded)) = (shadow, recorded) {
                let live = Verdict::answered(handled.verdict.clone());
                shadow.compare(&context, &job.body, job.widget.clone(), live, recorded);
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
                shadow.compare(&context, &job.body, job.widget.clone(), live, recorded);
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
        let (name, key) = match operation {
            Operation::Put { key, .. } => (stage::PUT, key),
            Operation::Delete(key) => (stage::DELETE, key),
        };
        let stored = shared.retry.run_holding(turn, || async {
            match operation {
                Operation::Put { key, document } => shared.sink.put(key, document).await,
                Operation::Delete(key) => shared.sink.delete(key).await,
            }
        });
        let stored = job.span.in_stage(name, Some(key), stored).await;
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
