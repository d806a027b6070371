//! The pipeline: source -> handler -> sink, removing a request from its
//! source only after its effects are stored.
//!
//! One dispatcher lists the source in key order, reads each request, asks
//! the handler for its ordering key, and hands it to one of `concurrency`
//! workers chosen by that key. A worker takes its requests one at a time, to
//! the end: handle, store, then ack (or dead-letter). So requests about the
//! same widget run in source order, never at once, and an earlier one is
//! always removed before a later one is applied: whatever moment a crash
//! comes at, replaying what is left reaches the same end state.

use crate::metrics::{self, Metrics, Summary};
use crate::reload::HandlerSlot;
use crate::retry::{self, Backoff};
use crate::runtime::{CallError, Context, Operation};
use crate::shutdown::Shutdown;
use crate::sink::Sink;
use crate::source::Source;
use futures::StreamExt;
use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

/// How a run behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Workers, and so requests handled at once.
    pub concurrency: usize,
    /// Stop once a full pass over the source finds nothing to do.
    pub until_empty: bool,
    /// How long to wait before listing an empty source again.
    pub poll_interval: Duration,
    /// How transient failures are retried.
    pub backoff: Backoff,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            concurrency: 8,
            until_empty: false,
            poll_interval: Duration::from_millis(100),
            backoff: Backoff::default(),
        }
    }
}

/// Requests each worker may have waiting: enough to keep it busy, few
/// enough that a stop leaves little read for nothing.
const WORKER_QUEUE: usize = 4;

/// A request on its way to a worker.
struct Job {
    key: String,
    body: Vec<u8>,
    widget: Option<String>,
}

/// Keys the dispatcher must not hand out again.
#[derive(Default)]
struct Tracker {
    /// Handed to a worker and not yet removed from the source.
    in_flight: HashSet<String>,
    /// Left in the source after a permanent failure this run (already
    /// logged); retried by the next run.
    stuck: HashSet<String>,
}

struct Shared {
    source: Arc<dyn Source>,
    sink: Arc<dyn Sink>,
    handlers: Arc<HandlerSlot>,
    options: Options,
    metrics: Metrics,
    tracker: Mutex<Tracker>,
    shutdown: Shutdown,
}

/// Runs until the source is empty (with `until_empty`) or `shutdown`
/// triggers, then waits for the requests in flight and returns the summary.
pub async fn run(
    source: Arc<dyn Source>,
    sink: Arc<dyn Sink>,
    handlers: Arc<HandlerSlot>,
    options: Options,
    shutdown: Shutdown,
) -> anyhow::Result<Summary> {
    info!(source = %source.describe(), sink = %sink.describe(), concurrency = options.concurrency, "Starting.");
    let shared = Arc::new(Shared {
        source,
        sink,
        handlers,
        options,
        metrics: Metrics::default(),
        tracker: Mutex::default(),
        shutdown,
    });
    let mut workers = tokio::task::JoinSet::new();
    let mut queues = Vec::new();
    for _ in 0..shared.options.concurrency.max(1) {
        let (sender, receiver) = mpsc::channel(WORKER_QUEUE);
        queues.push(sender);
        workers.spawn(work(shared.clone(), receiver));
    }
    let dispatched = dispatch(&shared, &queues).await;
    drop(queues);
    while let Some(joined) = workers.join_next().await {
        if let Err(e) = joined {
            // A panicking worker is a bug: surface it, do not lose it.
            std::panic::resume_unwind(e.into_panic());
        }
    }
    dispatched?;
    Ok(shared.metrics.summary(shared.source.dead_letter_place()))
}

/// Lists, reads and distributes requests until told to stop.
async fn dispatch(shared: &Arc<Shared>, queues: &[mpsc::Sender<Job>]) -> anyhow::Result<()> {
    let options = &shared.options;
    let mut next_queue = 0;
    // Requests handed out during the current pass over the source.
    let mut found_this_pass = 0;
    while !shared.shutdown.is_triggered() {
        let Some(page) = retry::until_done(&options.backoff, &shared.shutdown, || shared.source.list()).await
        else {
            break;
        };
        let page = page?;
        if page.from_start {
            found_this_pass = 0;
        }
        let fresh: Vec<String> = {
            let tracker = shared.tracker.lock().unwrap();
            page.keys
                .into_iter()
                .filter(|k| !tracker.in_flight.contains(k) && !tracker.stuck.contains(k))
                .collect()
        };
        found_this_pass += fresh.len();
        if fresh.is_empty() {
            if page.reached_end {
                // A whole pass found nothing new and nothing is in flight:
                // whatever is left is stuck, and stays for the next run.
                let idle = shared.tracker.lock().unwrap().in_flight.is_empty();
                if options.until_empty && idle && found_this_pass == 0 {
                    info!("The source is empty.");
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(options.poll_interval) => {}
                    _ = shared.shutdown.wait() => break,
                }
            }
            continue;
        }

        // Read ahead, in source order, as many requests as there are
        // workers, each read and its ordering key on a task of its own: a
        // handler's ordering key costs a Wasm instance, and the dispatcher
        // must not do them one at a time.
        let mut prepared = futures::stream::iter(fresh)
            .map(|key| tokio::spawn(prepare(shared.clone(), key)))
            .buffered(options.concurrency.max(1));
        while let Some(next) = prepared.next().await {
            let (key, read) = next.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            let (body, widget) = match read {
                None => return Ok(()),
                Some(Ok(Some(ready))) => ready,
                // Processed and removed since it was listed.
                Some(Ok(None)) => continue,
                Some(Err(e)) => {
                    error!(request_key = %key, error = %e, "Cannot read request; leaving it in place.");
                    shared.tracker.lock().unwrap().stuck.insert(key);
                    continue;
                }
            };
            let queue = match &widget {
                Some(widget) => {
                    let mut hasher = DefaultHasher::new();
                    widget.hash(&mut hasher);
                    (hasher.finish() % queues.len() as u64) as usize
                }
                None => {
                    next_queue = (next_queue + 1) % queues.len();
                    next_queue
                }
            };
            shared.tracker.lock().unwrap().in_flight.insert(key.clone());
            let job = Job { key, body, widget };
            tokio::select! {
                sent = queues[queue].send(job) => if sent.is_err() { return Ok(()) },
                _ = shared.shutdown.wait() => return Ok(()),
            }
        }
    }
    Ok(())
}

/// A request's body and ordering key, read for the dispatcher. `None` if
/// shutdown interrupted the read; `Some(Ok(None))` if the request is gone.
type Prepared = Option<Result<Option<(Vec<u8>, Option<String>)>, crate::source::SourceError>>;

async fn prepare(shared: Arc<Shared>, key: String) -> (String, Prepared) {
    let read = retry::until_done(&shared.options.backoff, &shared.shutdown, || {
        shared.source.read(&key)
    })
    .await;
    let Some(Ok(Some(body))) = read else {
        return (key, read.map(|r| r.map(|_| None)));
    };
    let widget = match shared.handlers.current().ordering_key(&body).await {
        Ok(widget) => widget,
        Err(e) => {
            // The handler will most likely fail on it again, and the
            // request be dead-lettered with the reason.
            warn!(request_key = %key, error = %e, "Handler gave no ordering key.");
            None
        }
    };
    (key, Some(Ok(Some((body, widget)))))
}

/// One worker: takes its requests one at a time, each to the end.
async fn work(shared: Arc<Shared>, mut jobs: mpsc::Receiver<Job>) {
    while let Some(job) = jobs.recv().await {
        // After a stop only what has started is finished; the rest stays in
        // the source for the next run.
        if !shared.shutdown.is_triggered() {
            process(&shared, &job).await;
        }
        shared.tracker.lock().unwrap().in_flight.remove(&job.key);
    }
}

/// What became of a request.
enum Fate {
    Applied {
        kind: String,
        operations: usize,
        warnings: u32,
    },
    DeadLetter(String),
    /// Stopped before it was done: it stays in the source.
    Interrupted,
}

async fn process(shared: &Shared, job: &Job) {
    let key = &job.key;
    let widget = job.widget.as_deref().unwrap_or("-");
    let fate = decide_and_store(shared, job).await;
    let finished = match &fate {
        Fate::Interrupted => return,
        Fate::Applied { .. } => {
            retry::until_done(&shared.options.backoff, &shared.shutdown, || {
                shared.source.ack(key)
            })
            .await
        }
        Fate::DeadLetter(reason) => {
            retry::until_done(&shared.options.backoff, &shared.shutdown, || {
                shared.source.dead_letter(key, &job.body, reason)
            })
            .await
        }
    };
    match (finished, fate) {
        (None, _) | (_, Fate::Interrupted) => {}
        (Some(Err(e)), _) => {
            error!(request_key = %key, error = %e, "Cannot remove request from the source; leaving it in place.");
            shared.tracker.lock().unwrap().stuck.insert(key.clone());
        }
        (
            Some(Ok(())),
            Fate::Applied {
                kind,
                operations,
                warnings,
            },
        ) => {
            shared.metrics.applied(&kind, operations, warnings);
            info!(request_key = %key, kind = %kind, widget = %widget, operations, warnings, outcome = metrics::APPLIED, "Request done.");
        }
        (Some(Ok(())), Fate::DeadLetter(reason)) => {
            shared.metrics.dead_lettered();
            warn!(request_key = %key, widget = %widget, reason = %reason, outcome = metrics::DEAD_LETTERED, "Request dead-lettered.");
        }
    }
}

/// Asks the handler, then carries out its operations. Transient failures
/// are retried here, with backoff, for as long as it takes.
async fn decide_and_store(shared: &Shared, job: &Job) -> Fate {
    let options = &shared.options;
    let context = Context {
        key: job.key.clone(),
        destination: shared.sink.destination(),
    };
    let mut attempt = 0;
    let handled = loop {
        // Each attempt takes the handler current when it starts.
        let runtime = shared.handlers.current();
        match runtime
            .handle(&job.body, context.clone(), shared.sink.clone())
            .await
        {
            Ok(handled) => break handled,
            Err(CallError::Handler(reason)) => return Fate::DeadLetter(reason),
            Err(e @ CallError::StoreUnavailable(_)) => {
                warn!(request_key = %job.key, error = %e, attempt, "Retrying request.");
                shared.metrics.retried();
                if !options.backoff.wait(attempt, &shared.shutdown).await {
                    return Fate::Interrupted;
                }
                attempt += 1;
            }
        }
    };
    let plan = match handled.result {
        Ok(plan) => plan,
        Err(reason) => return Fate::DeadLetter(format!("rejected: {reason}")),
    };
    for operation in &plan.operations {
        let stored = retry::until_done(&options.backoff, &shared.shutdown, || async {
            match operation {
                Operation::Put(put) => shared.sink.put(&put.key, &put.document).await,
                Operation::Delete(key) => shared.sink.delete(key).await,
            }
        })
        .await;
        match stored {
            None => return Fate::Interrupted,
            Some(Ok(())) => {}
            Some(Err(e)) => return Fate::DeadLetter(format!("store refused an operation: {e}")),
        }
    }
    Fate::Applied {
        kind: plan.kind,
        operations: plan.operations.len(),
        warnings: handled.warnings,
    }
}
