//! What became of each request: the one place a request's fate is
//! recorded. A request is taken in when it is admitted; it leaves when it
//! is applied, dead-lettered, let go of (a busy key's, listed again or
//! handed back), left stuck, or when the run stops. The dispatcher, the
//! key scheduler and the step that decides and stores all tell this type,
//! and nothing else keeps the set of requests in flight.

use crate::error::StorageError;
use crate::logging::REQUESTS;
use crate::metrics::{self, Metrics};
use crate::source::Listed;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// What became of a request in the end.
pub(super) enum Fate {
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

/// The requests of a run and what became of them.
pub(super) struct Fates {
    requests: Mutex<Requests>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    /// The failure of the environment that stopped the run, if one did.
    fatal: Mutex<Option<StorageError>>,
    /// Told whenever a request is done with.
    done: Notify,
}

/// The requests the run holds, and those it gave up on.
#[derive(Default)]
pub(super) struct Requests {
    /// Admitted and not yet removed from the source (or given up on).
    in_flight: HashSet<String>,
    /// Left in the source after a failure of their own this run (already
    /// logged); tried again by the next run.
    stuck: HashSet<String>,
}

impl Requests {
    /// How many requests are in flight.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

impl Fates {
    pub(super) fn new(metrics: Arc<Metrics>, stop: CancellationToken) -> Fates {
        Fates {
            requests: Mutex::default(),
            metrics,
            stop,
            fatal: Mutex::default(),
            done: Notify::new(),
        }
    }

    /// Counts a request as in flight.
    pub(super) fn take_in(&self, key: &str) {
        let mut requests = self.requests.lock().unwrap();
        requests.in_flight.insert(key.to_owned());
        self.metrics.set_in_flight(requests.in_flight.len());
    }

    /// A request is done with, or let go of for this pass (it stays in the
    /// source, or goes back to a queue).
    pub(super) fn let_go(&self, keys: &[&str]) {
        {
            let mut requests = self.requests.lock().unwrap();
            for key in keys {
                requests.in_flight.remove(*key);
            }
            self.metrics.set_in_flight(requests.in_flight.len());
        }
        self.done.notify_waiters();
    }

    /// A queue's message was handed back.
    pub(super) fn handed_back(&self) {
        self.metrics.handed_back();
    }

    /// Of `listed`, the requests the run neither holds nor gave up on;
    /// `pass_over` is told of each it gave up on.
    pub(super) fn not_held(&self, listed: Vec<Listed>, pass_over: impl Fn(&str)) -> Vec<Listed> {
        let requests = self.requests.lock().unwrap();
        listed
            .into_iter()
            .filter(|r| {
                if requests.stuck.contains(&r.key) {
                    pass_over(&r.key);
                    return false;
                }
                !requests.in_flight.contains(&r.key)
            })
            .collect()
    }

    /// A request that cannot be read: it stays in the source.
    pub(super) fn unreadable(&self, key: String, error: &StorageError) {
        error!(request_key = %key, error = %error, "Cannot read request; leaving it in place.");
        self.requests.lock().unwrap().stuck.insert(key);
    }

    /// How many requests are in flight.
    pub(super) fn in_flight(&self) -> usize {
        self.requests.lock().unwrap().in_flight()
    }

    /// Requests left in the source after a failure of their own.
    pub(super) fn stuck(&self) -> u64 {
        self.requests.lock().unwrap().stuck.len() as u64
    }

    /// Stops the run because of a failure every request would meet: nothing
    /// new is started, and what is not done stays in the source.
    pub(super) fn fail(&self, error: StorageError) {
        error!(error = %error, "Stopping: the environment is failing, not a request; what is not done stays in the source.");
        self.fatal.lock().unwrap().get_or_insert(error);
        self.stop.cancel();
    }

    /// The failure that stopped the run, if one did.
    pub(super) fn fatal(&self) -> Option<StorageError> {
        self.fatal.lock().unwrap().take()
    }

    /// Waits until `ready` holds of the requests; `false` if the run
    /// stopped first.
    pub(super) async fn wait_until(&self, ready: impl Fn(&Requests) -> bool) -> bool {
        loop {
            let done = self.done.notified();
            let mut done = std::pin::pin!(done);
            // Registered before the check, so a notice in between is not missed.
            done.as_mut().enable();
            if ready(&self.requests.lock().unwrap()) {
                return true;
            }
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return false,
                _ = done => {}
            }
        }
    }

    /// Records what request `key` (of `widget`, listed at `listed`) came
    /// to, counts and logs it, and lets go of it.
    pub(super) fn record(&self, key: &str, widget: Option<&str>, listed: Instant, fate: Fate) {
        let widget = widget.unwrap_or("-");
        let latency_ms = listed.elapsed().as_millis() as u64;
        if matches!(fate, Fate::Applied { .. } | Fate::DeadLettered(_)) {
            self.metrics.request_done(listed);
        }
        match fate {
            Fate::Stopped => {}
            Fate::Fatal(e) => self.fail(e),
            Fate::Stuck(e) => {
                error!(request_key = %key, error = %e, "Cannot remove request from the source; leaving it in place.");
                self.requests.lock().unwrap().stuck.insert(key.to_owned());
            }
            Fate::Applied {
                kind,
                operations,
                warnings,
            } => {
                self.metrics.applied(&kind, operations, warnings);
                debug!(target: REQUESTS, request_key = %key, kind = %kind, widget = %widget, operations, warnings, latency_ms, outcome = metrics::APPLIED, "Request done.");
            }
            Fate::DeadLettered(reason) => self.dead_lettered(key, widget, Some(latency_ms), &reason),
            Fate::Missed(reason) => {
                info!(request_key = %key, widget = %widget, reason = %reason, "The request was to be dead-lettered, but it had been removed or replaced in the source meanwhile; nothing was moved.");
            }
        }
        self.let_go(&[key]);
    }

    /// Counts and logs a request moved to the dead-letter place; `latency_ms`
    /// from its listing, when it was listed as a request (a file the listing
    /// set aside was not).
    pub(super) fn dead_lettered(&self, key: &str, widget: &str, latency_ms: Option<u64>, reason: &str) {
        self.metrics.dead_lettered();
        warn!(request_key = %key, widget = %widget, reason = %reason, latency_ms, outcome = metrics::DEAD_LETTERED, "Request dead-lettered.");
    }
}
