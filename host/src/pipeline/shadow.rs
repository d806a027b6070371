//! Shadow: a candidate handler (`run --candidate NEW.wasm`) is asked about
//! every request the live handler answered, against what the live one read
//! from the store, and its verdict and plan are compared with the live
//! one's (`verdicts.rs`: the differences `diff` prints). Only the live plan
//! is carried out: the candidate reads nothing the live handler did not
//! (what it asks beyond that it reads, read only, from the store), writes
//! nothing, and its traps, limits and hangs are counted, never felt by a
//! request. Its calls run on tasks of their own, at most as many at once
//! as the run has requests (16 at least); a request finding no room is not
//! compared (counted as skipped), rather than waiting.
//!
//! With `--promote-after N` the candidate becomes the live handler, as a
//! reload does, once N requests were compared with no difference and no
//! candidate failure; one difference or failure disqualifies it for the
//! rest of the run.

use crate::contract::{Context, Destination};
use crate::error::StorageError;
use crate::handler::swap::LiveHandler;
use crate::handler::{CallError, Handler};
use crate::logging::escape;
use crate::metrics::{Candidate as Standing, Metrics};
use crate::sink::recorded::Recorded;
use crate::sink::{Read, Sink};
use crate::verdicts::{Comparison, Record, Verdict, compare};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tracing::{info, warn};

/// Difference lines logged per request: the rest are counted.
const MAX_LINES: usize = 20;

/// Comparisons under way at once, at least: a run of one request at a time
/// still leaves a slow candidate call room before the next is skipped.
const MIN_ROOM: usize = 16;

/// The candidate, and where it stands.
pub(crate) struct Shadow {
    candidate: Handler,
    promote_after: Option<u64>,
    /// The live handler, replaced on promotion.
    handlers: Arc<LiveHandler>,
    /// Where each difference is written as a JSON line
    /// (`--candidate-records`).
    records: Option<Mutex<std::fs::File>>,
    metrics: Arc<Metrics>,
    /// Room for comparisons under way, and how much there is.
    room: Arc<Semaphore>,
    capacity: usize,
    standing: Mutex<Standing>,
}

impl Shadow {
    /// A shadow of `candidate` beside the live handler in `handlers`,
    /// comparing at most `room` requests at once (at least 16), counting in
    /// `metrics`.
    pub(crate) fn new(
        candidate: Handler,
        promote_after: Option<u64>,
        room: usize,
        handlers: Arc<LiveHandler>,
        metrics: Arc<Metrics>,
        records: Option<std::fs::File>,
    ) -> Shadow {
        if let Some(n) = promote_after {
            info!(
                promote_after = n,
                "Candidate in shadow: promoted after {n} requests on which it agrees with the live handler and none on which it differs."
            );
        } else {
            info!("Candidate in shadow: compared on every request, never promoted (no --promote-after).");
        }
        Shadow {
            candidate,
            promote_after,
            handlers,
            records: records.map(Mutex::new),
            metrics,
            room: Arc::new(Semaphore::new(room.max(MIN_ROOM))),
            capacity: room.max(MIN_ROOM),
            standing: Mutex::default(),
        }
    }

    /// Waits, at most `within`, for the comparisons under way, so that the
    /// summary counts them.
    pub(crate) async fn wait_for_comparisons(&self, within: Duration) {
        let all = u32::try_from(self.capacity).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(within, self.room.acquire_many(all)).await;
    }

    /// Where the candidate stands now.
    pub(crate) fn standing(&self) -> Standing {
        *self.standing.lock().unwrap()
    }

    /// A recorder of what the live handler reads from `sink`, if the
    /// candidate is still in shadow.
    pub(crate) fn recorder(&self, sink: &Arc<dyn Sink>) -> Option<Arc<Recorded>> {
        (!self.standing().promoted).then(|| Arc::new(Recorded::new(sink.clone())))
    }

    /// Asks the candidate about the request `key` with `body`, to which
    /// the live handler gave the ordering key `live_key` and the verdict
    /// `live` (`Verdict::Refused` where it failed) after the reads in
    /// `recorded`; compares and counts on a task of its own. Both of the
    /// candidate's exports are asked: a trap in its `ordering-key` fails it
    /// as a trap in `handle` does, and another ordering key is a
    /// difference where the verdicts agree.
    pub(crate) fn compare(
        self: &Arc<Self>,
        context: &Context,
        body: &[u8],
        live_key: Option<String>,
        live: Verdict,
        recorded: Arc<Recorded>,
    ) {
        let destination = context.destination;
        self.spawn(&context.key, body, move |shadow, key, body| async move {
            let candidate_key = match shadow.candidate.ordering_key(&body).await {
                Ok(candidate_key) => candidate_key,
                Err(CallError::Handler(reason)) => {
                    return match live {
                        // Both end in a dead letter: they agree.
                        Verdict::Refused(_) => Outcome::Compared(Comparison::Same),
                        Verdict::Accepted(_) => Outcome::Failed(format!("in ordering-key: {reason}")),
                    };
                }
                Err(CallError::Store(e)) => return Outcome::Unread(e),
            };
            match shadow
                .handled_outcome(&key, destination, &body, live, recorded)
                .await
            {
                Outcome::Compared(Comparison::Same) if candidate_key != live_key => {
                    Outcome::Compared(Comparison::PlansDiffer(vec![format!(
                        "ordering key: old {}, new {}",
                        shown_key(&live_key),
                        shown_key(&candidate_key)
                    )]))
                }
                outcome => outcome,
            }
        });
    }

    /// Asks the candidate about the request `key` with `body`, whose
    /// ordering key the live handler failed on (`reason`): it is
    /// dead-lettered before its handling, so the candidate's own key and
    /// verdict are what it is compared on, against the store (`sink`, read
    /// only).
    pub(crate) fn compare_failed_key(
        self: &Arc<Self>,
        key: &str,
        body: &[u8],
        reason: String,
        sink: &Arc<dyn Sink>,
    ) {
        if self.standing().promoted {
            return;
        }
        let (destination, sink) = (sink.destination(), sink.clone());
        self.spawn(key, body, move |shadow, key, body| async move {
            match shadow.candidate.ordering_key(&body).await {
                Ok(_) => {
                    let recorded = Arc::new(Recorded::new(sink));
                    shadow
                        .handled_outcome(&key, destination, &body, Verdict::Refused(reason), recorded)
                        .await
                }
                Err(CallError::Handler(_)) => Outcome::Compared(Comparison::Same),
                Err(CallError::Store(e)) => Outcome::Unread(e),
            }
        });
    }

    /// Runs `comparison` of the request `key` on a task of its own, if
    /// there is room for one (else it is counted as not compared), and
    /// counts its outcome.
    fn spawn<F, Fut>(self: &Arc<Self>, key: &str, body: &[u8], comparison: F)
    where
        F: FnOnce(Arc<Shadow>, String, Vec<u8>) -> Fut + Send + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let Ok(room) = self.room.clone().try_acquire_owned() else {
            self.count(key, Outcome::Skipped);
            return;
        };
        let shadow = self.clone();
        let key = key.to_owned();
        let body = body.to_vec();
        tokio::spawn(async move {
            let _room = room;
            let outcome = comparison(shadow.clone(), key.clone(), body).await;
            shadow.count(&key, outcome);
        });
    }

    /// The candidate's handling of a request compared with the live
    /// handler's verdict `live`, reading as `recorded` read.
    async fn handled_outcome(
        &self,
        key: &str,
        destination: Destination,
        body: &[u8],
        live: Verdict,
        recorded: Arc<Recorded>,
    ) -> Outcome {
        let context = Context {
            key: key.to_owned(),
            destination,
        };
        let replayed: Arc<dyn Read> = Arc::new(Replayed(recorded));
        let started = Instant::now();
        let handled = self.candidate.handle(body, &context, replayed).await;
        self.metrics.candidate_call(started.elapsed());
        match handled {
            Ok(handled) => Outcome::Compared(compare(live, Verdict::answered(handled.verdict))),
            Err(CallError::Handler(reason)) => match live {
                // Both end in a dead letter: they agree.
                Verdict::Refused(_) => Outcome::Compared(Comparison::Same),
                Verdict::Accepted(_) => Outcome::Failed(reason),
            },
            Err(CallError::Store(e)) => Outcome::Unread(e),
        }
    }

    /// Counts, logs, and promotes the candidate when it has earned it.
    fn count(&self, raw_key: &str, outcome: Outcome) {
        let key = escape(raw_key);
        self.metrics.candidate(outcome.label());
        let (promote, disqualified_now) = {
            let mut standing = self.standing.lock().unwrap();
            if standing.promoted {
                return;
            }
            let was_disqualified = standing.disqualified();
            match &outcome {
                Outcome::Compared(Comparison::Same) => standing.agreed += 1,
                Outcome::Compared(_) => standing.differed += 1,
                Outcome::Failed(_) => standing.failed += 1,
                Outcome::Skipped | Outcome::Unread(_) => standing.skipped += 1,
            }
            let earned = self
                .promote_after
                .is_some_and(|n| standing.agreed >= n && !standing.disqualified());
            standing.promoted = earned;
            (earned, !was_disqualified && standing.disqualified())
        };
        // The key as it is: a record is data, read back by `diff --records`.
        self.record(raw_key, &outcome);
        match outcome {
            Outcome::Compared(Comparison::Same) => {}
            Outcome::Compared(Comparison::NewlyRejected(reason)) => {
                warn!(request_key = %key, difference = "newly-rejected", reason = %escape(&reason), "The candidate differs: it would reject a request the live handler accepted.")
            }
            Outcome::Compared(Comparison::NewlyAccepted(plan)) => {
                warn!(request_key = %key, difference = "newly-accepted", kind = %plan.kind, operations = plan.operations.len(), "The candidate differs: it would accept a request the live handler rejected.")
            }
            Outcome::Compared(Comparison::PlansDiffer(lines)) => {
                let more = lines.len().saturating_sub(MAX_LINES);
                let shown: Vec<String> = lines
                    .iter()
                    .take(MAX_LINES)
                    .map(|l| escape(l).into_owned())
                    .collect();
                warn!(request_key = %key, difference = "plans-differ", differences = %shown.join("; "), more, "The candidate differs: its plan is another.")
            }
            Outcome::Failed(reason) => {
                warn!(request_key = %key, reason = %escape(&reason), "The candidate failed on a request the live handler accepted.")
            }
            Outcome::Unread(e) => {
                info!(request_key = %key, error = %e, "The candidate could not read the store; request not compared.")
            }
            Outcome::Skipped => {}
        }
        if disqualified_now && self.promote_after.is_some() {
            // Said once, at the first difference or failure.
            warn!("The candidate differs from the live handler: it will not be promoted in this run.");
        }
        if promote {
            self.handlers.promote(self.candidate.clone());
            let standing = self.standing();
            info!(
                agreed = standing.agreed,
                skipped = standing.skipped,
                "Candidate promoted: it is the live handler for every request from now on."
            );
        }
    }
}

impl Shadow {
    /// Writes the difference `outcome` shows on the request `key`, if it
    /// shows one, to the records file. A write that fails is logged: the
    /// records are a report, the run goes on.
    fn record(&self, key: &str, outcome: &Outcome) {
        let Some(file) = &self.records else { return };
        let record = match outcome {
            Outcome::Compared(comparison) => Record::of(key, comparison),
            Outcome::Failed(reason) => Some(Record::failed(key, reason)),
            Outcome::Skipped | Outcome::Unread(_) => None,
        };
        let Some(record) = record else { return };
        let mut line = serde_json::to_string(&record).expect("a record serializes");
        line.push('\n');
        if let Err(e) = std::io::Write::write_all(&mut *file.lock().unwrap(), line.as_bytes()) {
            warn!(error = %e, "Cannot write a candidate record (--candidate-records).");
        }
    }
}

/// An ordering key as a difference line shows it.
fn shown_key(key: &Option<String>) -> String {
    match key {
        Some(key) => format!("{:?}", escape(key)),
        None => "none".to_owned(),
    }
}

/// What became of one request's comparison.
enum Outcome {
    Compared(Comparison),
    /// The candidate failed (trap, limit) where the live handler did not.
    Failed(String),
    /// No room for the comparison.
    Skipped,
    /// The store failed a read the live handler did not make.
    Unread(StorageError),
}

impl Outcome {
    /// The metrics label.
    fn label(&self) -> &'static str {
        match self {
            Outcome::Compared(comparison) => comparison.label(),
            Outcome::Failed(_) => "candidate-failed",
            Outcome::Skipped | Outcome::Unread(_) => "skipped",
        }
    }
}

/// What the candidate reads: the live handler's reads as they were, and
/// the store for anything else. It writes nothing.
struct Replayed(Arc<Recorded>);

#[async_trait::async_trait]
impl Read for Replayed {
    async fn get(&self, key: &str) -> Result<Option<String>, StorageError> {
        match self.0.read(key) {
            Some(read) => Ok(read),
            None => self.0.inner().get(key).await,
        }
    }
}
