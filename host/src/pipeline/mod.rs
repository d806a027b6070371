//! The pipeline: source -> handler -> sink, removing a request from its
//! source only after its effects are stored.
//!
//! - [`dispatch`] lists the source in key order, reads requests ahead and
//!   asks the handler for each one's ordering key (the widget);
//! - [`keys`] runs each ordering key's requests one after the other, each
//!   to the end, and different keys side by side: a key whose request keeps
//!   failing holds up only its own requests;
//! - [`process`] takes one request to the end: handle, store, then ack (or
//!   dead-letter), and returns what became of it;
//! - [`fate`] records what became of each request: the one owner of the
//!   set of requests in flight;
//! - [`shadow`] asks a candidate handler too, and compares;
//! - [`rollback`] undoes a swap whose handler dead-letters more.
//!
//! The arrows go one way: dispatch -> keys -> process, each of them ->
//! fate. The scheduler (keys) owns a request's grant of concurrency and its
//! key's place, hands them to process as a [`process::Turn`], and records
//! the fate process returns.
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
mod fate;
mod grants;
mod keys;
mod process;
mod rollback;
mod shadow;
#[cfg(test)]
mod sim;
mod spans;
#[cfg(test)]
mod tests;

use crate::handler::swap::LiveHandler;
use crate::metrics::{Metrics, Summary};
use crate::retry::{Backoff, Retry};
use crate::sink::Sink;
use crate::source::Source;
pub(crate) use rollback::{DEFAULT_WINDOW as DEFAULT_ROLLBACK_WINDOW, Rollback};
pub(crate) use shadow::Shadow;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Where the measured number of requests at once starts. Most of a
/// request's time is spent waiting on the store, and batched calls grow
/// with the requests waiting: in the benchmark S3 -> DynamoDB took 771
/// requests/s at 8, 996 at 16 and 1,058 at 32 on local servers.
pub(crate) const DEFAULT_CONCURRENCY: u16 = 16;

/// The most requests an adaptive run processes at once, unless told
/// otherwise: where a store call takes 20 ms, a queue's host at 128 went
/// 1.7 times as fast as at 64 (docs/benchmarks.md), and it bounds the
/// worst-case memory (see docs/limits.md).
pub(crate) const DEFAULT_MAX_CONCURRENCY: u16 = 128;

/// How many requests are processed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Concurrency {
    /// Exactly this many (fewer only while the backend throttles many
    /// keys): `--concurrency N`.
    Fixed(usize),
    /// As many as measurement finds (see `grants/gradient.rs`), from
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
const SHADOW_WAIT: Duration = Duration::from_secs(20);

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
}

/// What watches a run's decisions beside the live handler, given to the run
/// (not configuration: each holds the state of what it has seen).
#[derive(Default, Clone)]
pub(crate) struct Observers {
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
    /// Its place in the order requests were admitted in: who gets a grant
    /// first.
    seq: u64,
    /// When the listing found it, for the latency metric.
    listed: std::time::Instant,
    /// Its trace.
    span: spans::RequestSpan,
    /// Its wait behind its widget's earlier requests, while it waits.
    waiting: Option<tracing::Span>,
}

struct Shared {
    source: Arc<dyn Source>,
    sink: Arc<dyn Sink>,
    handlers: Arc<LiveHandler>,
    options: Options,
    observers: Observers,
    metrics: Arc<Metrics>,
    retry: Retry,
    /// What became of each request, and which are in flight.
    fates: fate::Fates,
    /// Per ordering key, the requests waiting behind the one in progress.
    keys: keys::Keys,
    /// Grants of concurrency for requests in progress.
    grants: grants::Grants,
    stop: CancellationToken,
}

/// Runs until the source is empty (with `until_empty`) or `stop` is
/// cancelled, then waits for the requests in flight and returns the summary.
pub(crate) async fn run(
    source: Arc<dyn Source>,
    sink: Arc<dyn Sink>,
    handlers: Arc<LiveHandler>,
    options: Options,
    observers: Observers,
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
        grants: match options.concurrency {
            Concurrency::Fixed(count) => grants::Grants::new(count, metrics.concurrency.clone()),
            Concurrency::Adaptive(ceiling) => grants::Grants::adaptive(
                usize::from(DEFAULT_CONCURRENCY),
                ceiling,
                metrics.concurrency.clone(),
            ),
        },
        options,
        observers,
        fates: fate::Fates::new(metrics.clone(), stop.clone()),
        metrics,
        retry,
        keys: keys::Keys::default(),
        stop,
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
        shared.fates.fail(e);
    }
    shared.source.finish().await;
    if let Some(fatal) = shared.fates.fatal() {
        return Err(fatal.into());
    }
    let mut summary = shared.metrics.summary(shared.source.dead_letter_place());
    summary.left_in_source = shared.fates.stuck();
    if let Some(shadow) = &shared.observers.shadow {
        shadow.wait_for_comparisons(SHADOW_WAIT).await;
        summary.candidate = Some(shadow.standing());
    }
    Ok(summary)
}
