//! The pipeline: source -> handler -> sink, removing a request from its
//! source only after its effects are stored.
//!
//! - [`dispatch`] lists the source in key order, reads requests ahead and
//!   asks the handler for each one's ordering key (the widget);
//! - [`keys`] runs each ordering key's requests one after the other, each
//!   to the end, and different keys side by side: a key whose request keeps
//!   failing holds up only its own requests;
//! - [`process`] takes one request to the end: handle, store, then ack (or
//!   dead-letter);
//! - [`shadow`] asks a candidate handler too, and compares;
//! - [`rollback`] undoes a swap whose handler dead-letters more.
//!
//! So requests about the same widget run in source order, never at once,
//! and an earlier one is always removed before a later one is applied:
//! whatever moment a crash comes at, replaying what is left reaches the same
//! end state.
//!
//! Every call that can fail transiently goes through [`Retry`], which waits
//! and tries again until it succeeds, fails for good, or the run stops. What
//! a failure then does depends on its [`Class`](crate::error::Class): a
//! request's own fault dead-letters that request; a fault of the
//! environment (credentials, permissions, a missing bucket) stops the run,
//! leaving every request that is not done where it is. A stop cancels
//! handler calls in flight; stores that have started finish.

mod dispatch;
mod gradient;
mod keys;
mod process;
mod rollback;
mod shadow;
#[cfg(test)]
mod sim;
mod slots;
#[cfg(test)]
mod tests;

use crate::error::StorageError;
use crate::handler::swap::HandlerSlot;
use crate::metrics::{Metrics, Summary};
use crate::retry::{Backoff, Retry};
use crate::sink::Sink;
use crate::source::Source;
pub(crate) use rollback::{DEFAULT_WINDOW as DEFAULT_ROLLBACK_WINDOW, Rollback};
pub(crate) use shadow::Shadow;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Where the measured number of requests at once starts. Most of a
/// request's time is spent waiting on the store, and batched calls grow
/// with the requests waiting: in the benchmark S3 -> DynamoDB took 771
/// requests/s at 8, 996 at 16 and 1,058 at 32 on local servers.
pub(crate) const DEFAULT_CONCURRENCY: u16 = 16;

/// The most requests an adaptive run processes at once, unless told
/// otherwise: where a store call takes 20 ms, 64 at once is what a bare
/// SDK loop needs to be bound by the backend rather than by waiting, and
/// it bounds the worst-case memory (see docs/limits.md).
pub(crate) const DEFAULT_MAX_CONCURRENCY: u16 = 64;

/// How many requests are processed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Concurrency {
    /// Exactly this many (fewer only while the backend throttles many
    /// keys): `--concurrency N`.
    Fixed(usize),
    /// As many as measurement finds (see `gradient.rs`), from
    /// [`DEFAULT_CONCURRENCY`], between 1 and this ceiling.
    Adaptive(usize),
}

impl Concurrency {
    /// The most requests processed at once: what memory is sized for.
    pub(crate) fn ceiling(self) -> usize {
        match self {
            Concurrency::Fixed(n) | Concurrency::Adaptive(n) => n.max(1),
        }
    }
}

/// How long a run's end waits for the candidate's comparisons under way
/// (`--candidate`): one still going then is not in the summary. Each is
/// bounded by the candidate's limits; a busy machine makes them slow, and
/// 5 s left comparisons out of the summary of a run among many.
const SHADOW_SETTLE: Duration = Duration::from_secs(20);

/// How a run behaves.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Requests processed at once (a request waiting to retry does not
    /// count).
    pub(crate) concurrency: Concurrency,
    /// Stop once a full pass over the source finds nothing to do.
    pub(crate) until_empty: bool,
    /// How long to wait before listing an empty source again.
    pub(crate) poll_interval: Duration,
    /// How transient failures are retried.
    pub(crate) backoff: Backoff,
    /// Requests larger than this are dead-lettered unread.
    pub(crate) max_request_bytes: u64,
    /// A candidate handler asked beside the live one (`--candidate`).
    pub(crate) shadow: Option<Arc<Shadow>>,
    /// Swaps undone when the new handler dead-letters more
    /// (`--rollback-on-dead-letters`).
    pub(crate) rollback: Option<Arc<Rollback>>,
}

/// The default largest request, in bytes: far above any widget request,
/// and above DynamoDB's own item limit (400 KB).
pub(crate) const DEFAULT_MAX_REQUEST_BYTES: u64 = 1 << 20;

impl Default for Options {
    fn default() -> Self {
        Options {
            concurrency: Concurrency::Adaptive(usize::from(DEFAULT_MAX_CONCURRENCY)),
            until_empty: false,
            poll_interval: Duration::from_millis(100),
            backoff: Backoff::default(),
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            shadow: None,
            rollback: None,
        }
    }
}

/// A request read from the source, on its way through.
struct Job {
    key: String,
    body: Vec<u8>,
    /// Which version of the request was read: the one to remove.
    version: crate::source::Version,
    /// The handler's ordering key (the widget id), if it gave one.
    widget: Option<String>,
    /// Its place in the order requests were admitted in: who gets a slot
    /// first.
    seq: u64,
    /// When the listing found it, for the latency metric.
    listed: std::time::Instant,
}

/// What the run is doing with the source's requests.
#[derive(Default)]
struct Tracker {
    /// Admitted and not yet removed from the source (or given up on).
    in_flight: std::collections::HashSet<String>,
    /// Left in the source after a failure of their own this run (already
    /// logged); tried again by the next run.
    stuck: std::collections::HashSet<String>,
}

struct Shared {
    source: Arc<dyn Source>,
    sink: Arc<dyn Sink>,
    handlers: Arc<HandlerSlot>,
    options: Options,
    metrics: Arc<Metrics>,
    retry: Retry,
    tracker: Mutex<Tracker>,
    /// Per ordering key, the requests waiting behind the one in progress.
    keys: keys::Keys,
    /// Slots for requests in progress: `concurrency` of them.
    slots: slots::Slots,
    stop: CancellationToken,
    /// The failure of the environment that stopped the run, if one did.
    fatal: Mutex<Option<StorageError>>,
    /// Told whenever a request is done with.
    done: Notify,
}

impl Shared {
    /// Counts a request as in flight.
    fn take_in(&self, key: &str) {
        let mut tracker = self.tracker.lock().unwrap();
        tracker.in_flight.insert(key.to_owned());
        self.metrics.set_in_flight(tracker.in_flight.len());
    }

    /// A request is done with (or given up on this run).
    fn let_go(&self, key: &str) {
        let mut tracker = self.tracker.lock().unwrap();
        tracker.in_flight.remove(key);
        self.metrics.set_in_flight(tracker.in_flight.len());
    }

    /// Stops the run because of a failure every request would meet: nothing
    /// new is started, and what is not done stays in the source.
    fn fail(&self, error: StorageError) {
        error!(error = %error, "Stopping: the environment is failing, not a request; what is not done stays in the source.");
        self.fatal.lock().unwrap().get_or_insert(error);
        self.stop.cancel();
    }

    /// Waits until `ready` holds of the tracker; `false` if the run stopped
    /// first.
    async fn wait_until(&self, ready: impl Fn(&Tracker) -> bool) -> bool {
        loop {
            let done = self.done.notified();
            let mut done = std::pin::pin!(done);
            // Registered before the check, so a notice in between is not missed.
            done.as_mut().enable();
            if ready(&self.tracker.lock().unwrap()) {
                return true;
            }
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return false,
                _ = done => {}
            }
        }
    }
}

/// Runs until the source is empty (with `until_empty`) or `stop` is
/// cancelled, then waits for the requests in flight and returns the summary.
pub(crate) async fn run(
    source: Arc<dyn Source>,
    sink: Arc<dyn Sink>,
    handlers: Arc<HandlerSlot>,
    options: Options,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> anyhow::Result<Summary> {
    info!(source = %source.describe(), sink = %sink.describe(), concurrency = ?options.concurrency, "Starting.");
    let retry = Retry {
        backoff: options.backoff,
        stop: stop.clone(),
        count: metrics.retries.clone(),
    };
    let shared = Arc::new(Shared {
        source,
        sink,
        handlers,
        slots: match options.concurrency {
            Concurrency::Fixed(count) => slots::Slots::new(count, metrics.concurrency.clone()),
            Concurrency::Adaptive(ceiling) => slots::Slots::adaptive(
                usize::from(DEFAULT_CONCURRENCY),
                ceiling,
                metrics.concurrency.clone(),
            ),
        },
        options,
        metrics,
        retry,
        tracker: Mutex::default(),
        keys: keys::Keys::default(),
        stop,
        fatal: Mutex::default(),
        done: Notify::new(),
    });
    let mut running = tokio::task::JoinSet::new();
    let dispatched = dispatch::dispatch(&shared, &mut running).await;
    while let Some(joined) = running.join_next().await {
        if let Err(e) = joined {
            // A panicking task is a bug: surface it, do not lose it.
            std::panic::resume_unwind(e.into_panic());
        }
    }
    if let Err(e) = dispatched {
        shared.fail(e);
    }
    shared.source.finish().await;
    if let Some(fatal) = shared.fatal.lock().unwrap().take() {
        return Err(fatal.into());
    }
    let mut summary = shared.metrics.summary(shared.source.dead_letter_place());
    summary.left_in_source = shared.tracker.lock().unwrap().stuck.len() as u64;
    if let Some(shadow) = &shared.options.shadow {
        shadow.settle(SHADOW_SETTLE).await;
        summary.candidate = Some(shadow.standing());
    }
    Ok(summary)
}
