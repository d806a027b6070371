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
//!
//! Every call that can fail transiently goes through [`Retry`], which waits
//! and tries again until it succeeds, fails for good, or the run stops. What
//! a failure then does depends on its [`Class`]: a request's own fault
//! dead-letters that request; a fault of the environment (credentials,
//! permissions, a missing bucket) stops the run, leaving every request that
//! is not done where it is. A stop cancels handler calls in flight; stores
//! that have started finish.

use crate::contract::{Context, Operation, Plan};
use crate::error::{Class, StorageError};
use crate::handler::CallError;
use crate::handler::swap::HandlerSlot;
use crate::metrics::{self, Metrics, Summary};
use crate::retry::{Attempt, Backoff, Retry};
use crate::sink::Sink;
use crate::source::Source;
use futures::StreamExt;
use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Requests processed at once unless told otherwise.
pub(crate) const DEFAULT_CONCURRENCY: u16 = 8;

/// How a run behaves.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Workers, and so requests handled at once.
    pub(crate) concurrency: usize,
    /// Stop once a full pass over the source finds nothing to do.
    pub(crate) until_empty: bool,
    /// How long to wait before listing an empty source again.
    pub(crate) poll_interval: Duration,
    /// How transient failures are retried.
    pub(crate) backoff: Backoff,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            concurrency: usize::from(DEFAULT_CONCURRENCY),
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
    /// The handler's ordering key (the widget id), if it gave one.
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
    retry: Retry,
    tracker: Mutex<Tracker>,
    stop: CancellationToken,
    /// The failure of the environment that stopped the run, if one did.
    fatal: Mutex<Option<StorageError>>,
    /// Told whenever the last request in flight is done.
    idle: tokio::sync::Notify,
}

impl Shared {
    /// Stops the run because of a failure every request would meet: nothing
    /// new is started, and what is not done stays in the source.
    fn fail(&self, error: StorageError) {
        error!(error = %error, "Stopping: the environment is failing, not a request; what is not done stays in the source.");
        self.fatal.lock().unwrap().get_or_insert(error);
        self.stop.cancel();
    }
}

/// Runs until the source is empty (with `until_empty`) or `stop` is
/// cancelled, then waits for the requests in flight and returns the summary.
pub(crate) async fn run(
    source: Arc<dyn Source>,
    sink: Arc<dyn Sink>,
    handlers: Arc<HandlerSlot>,
    options: Options,
    stop: CancellationToken,
) -> anyhow::Result<Summary> {
    info!(source = %source.describe(), sink = %sink.describe(), concurrency = options.concurrency, "Starting.");
    let metrics = Metrics::default();
    let retry = Retry {
        backoff: options.backoff,
        stop: stop.clone(),
        count: metrics.retries.clone(),
    };
    let shared = Arc::new(Shared {
        source,
        sink,
        handlers,
        options,
        metrics,
        retry,
        tracker: Mutex::default(),
        stop,
        fatal: Mutex::default(),
        idle: tokio::sync::Notify::new(),
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
    if let Err(e) = dispatched {
        shared.fail(e);
    }
    if let Some(fatal) = shared.fatal.lock().unwrap().take() {
        return Err(fatal.into());
    }
    let mut summary = shared.metrics.summary(shared.source.dead_letter_place());
    summary.left_in_source = shared.tracker.lock().unwrap().stuck.len() as u64;
    Ok(summary)
}

/// Lists, reads and distributes requests until told to stop.
async fn dispatch(shared: &Arc<Shared>, queues: &[mpsc::Sender<Job>]) -> Result<(), StorageError> {
    let options = &shared.options;
    // Requests handed out during the current pass over the source.
    let mut found_this_pass = 0;
    while !shared.stop.is_cancelled() {
        let page = match shared.retry.run(|| shared.source.list()).await {
            Attempt::Done(page) => page,
            Attempt::Failed(e) => return Err(e),
            Attempt::Stopped => break,
        };
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
                    _ = shared.stop.cancelled() => break,
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
            let job = match next.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())) {
                Prepared::Ready(job) => job,
                Prepared::Gone => continue,
                Prepared::Unreadable(key, e) if e.class == Class::Request => {
                    error!(request_key = %key, error = %e, "Cannot read request; leaving it in place.");
                    shared.tracker.lock().unwrap().stuck.insert(key);
                    continue;
                }
                Prepared::Unreadable(_, e) => {
                    shared.fail(e);
                    return Ok(());
                }
                Prepared::Stopped => return Ok(()),
            };
            // A request without an ordering key may touch any widget: it
            // runs alone, after what is in flight and before what follows.
            let alone = job.widget.is_none();
            let queue = match &job.widget {
                Some(widget) => {
                    let mut hasher = DefaultHasher::new();
                    widget.hash(&mut hasher);
                    (hasher.finish() % queues.len() as u64) as usize
                }
                None => 0,
            };
            if alone && !wait_until_idle(shared).await {
                return Ok(());
            }
            shared.tracker.lock().unwrap().in_flight.insert(job.key.clone());
            tokio::select! {
                sent = queues[queue].send(job) => if sent.is_err() { return Ok(()) },
                _ = shared.stop.cancelled() => return Ok(()),
            }
            if alone && !wait_until_idle(shared).await {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// A listed request, read for the dispatcher.
enum Prepared {
    /// Read, with its ordering key.
    Ready(Job),
    /// Processed and removed since it was listed.
    Gone,
    /// It cannot be read; it stays in the source.
    Unreadable(String, StorageError),
    /// The run stopped while the read waited to be retried.
    Stopped,
}

async fn prepare(shared: Arc<Shared>, key: String) -> Prepared {
    let body = match shared.retry.run(|| shared.source.read(&key)).await {
        Attempt::Done(Some(body)) => body,
        Attempt::Done(None) => return Prepared::Gone,
        Attempt::Failed(e) => return Prepared::Unreadable(key, e),
        Attempt::Stopped => return Prepared::Stopped,
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
    Prepared::Ready(Job { key, body, widget })
}

/// One worker: takes its requests one at a time, each to the end.
async fn work(shared: Arc<Shared>, mut jobs: mpsc::Receiver<Job>) {
    while let Some(job) = jobs.recv().await {
        // After a stop only what has started is finished; the rest stays in
        // the source for the next run.
        if !shared.stop.is_cancelled() {
            process(&shared, &job).await;
        }
        let mut tracker = shared.tracker.lock().unwrap();
        tracker.in_flight.remove(&job.key);
        if tracker.in_flight.is_empty() {
            shared.idle.notify_waiters();
        }
    }
}

/// Waits until no request is in flight; `false` if the run stopped first.
async fn wait_until_idle(shared: &Shared) -> bool {
    loop {
        let idle = shared.idle.notified();
        let mut idle = std::pin::pin!(idle);
        // Registered before the check, so a notice in between is not missed.
        idle.as_mut().enable();
        if shared.tracker.lock().unwrap().in_flight.is_empty() {
            return true;
        }
        tokio::select! {
            _ = idle => {}
            _ = shared.stop.cancelled() => return false,
        }
    }
}

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
    /// What a request whose removal from the source failed comes to.
    fn not_removed(error: StorageError) -> Fate {
        match error.class {
            Class::Request => Fate::Stuck(error),
            Class::Transient | Class::Fatal => Fate::Fatal(error),
        }
    }
}

async fn process(shared: &Shared, job: &Job) {
    let key = &job.key;
    let widget = job.widget.as_deref().unwrap_or("-");
    let fate = match decide_and_store(shared, job).await {
        Decision::Stopped => Fate::Stopped,
        Decision::Fatal(e) => Fate::Fatal(e),
        Decision::Applied { plan, warnings } => match shared.retry.run(|| shared.source.ack(key)).await {
            Attempt::Done(()) => Fate::Applied {
                kind: plan.kind,
                operations: plan.operations.len(),
                warnings,
            },
            Attempt::Failed(e) => Fate::not_removed(e),
            Attempt::Stopped => Fate::Stopped,
        },
        Decision::DeadLetter(reason) => {
            match shared
                .retry
                .run(|| shared.source.dead_letter(key, &job.body, &reason))
                .await
            {
                Attempt::Done(()) => Fate::DeadLettered(reason),
                Attempt::Failed(e) => Fate::not_removed(e),
                Attempt::Stopped => Fate::Stopped,
            }
        }
    };
    match fate {
        Fate::Stopped => {}
        Fate::Fatal(e) => shared.fail(e),
        Fate::Stuck(e) => {
            error!(request_key = %key, error = %e, "Cannot remove request from the source; leaving it in place.");
            shared.tracker.lock().unwrap().stuck.insert(key.clone());
        }
        Fate::Applied {
            kind,
            operations,
            warnings,
        } => {
            shared.metrics.applied(&kind, operations, warnings);
            info!(request_key = %key, kind = %kind, widget = %widget, operations, warnings, outcome = metrics::APPLIED, "Request done.");
        }
        Fate::DeadLettered(reason) => {
            shared.metrics.dead_lettered();
            warn!(request_key = %key, widget = %widget, reason = %reason, outcome = metrics::DEAD_LETTERED, "Request dead-lettered.");
        }
    }
}

/// Asks the handler, then carries out its operations. Transient failures
/// are retried, with backoff, for as long as it takes.
async fn decide_and_store(shared: &Shared, job: &Job) -> Decision {
    let context = Context {
        key: job.key.clone(),
        destination: shared.sink.destination(),
    };
    // Each attempt takes the handler current when it starts.
    // A stop cancels the call: nothing is stored yet, so the request
    // simply stays in the source.
    let handled = shared
        .retry
        .run(|| async {
            let handler = shared.handlers.current();
            tokio::select! {
                handled = handler.handle(&job.body, &context, shared.sink.clone()) => handled.map(Some),
                _ = shared.stop.cancelled() => Ok(None),
            }
        })
        .await;
    let handled = match handled {
        Attempt::Done(Some(handled)) => handled,
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
            .run(|| async {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Destination;
    use crate::error::Class;
    use crate::handler::{BUILTIN, Choice, Handler, Limits};
    use crate::producer::Producer;
    use crate::sink::memory::MemorySink;
    use crate::source::dir::DirSource;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A store whose first `failures` writes fail transiently.
    struct Flaky {
        inner: MemorySink,
        failures: AtomicU32,
    }

    impl Flaky {
        fn fail_once_more(&self) -> Result<(), StorageError> {
            let left = self.failures.load(Ordering::SeqCst);
            if left == 0 {
                return Ok(());
            }
            self.failures.store(left - 1, Ordering::SeqCst);
            Err(StorageError::new("put", Class::Transient, "slow down"))
        }
    }

    #[async_trait::async_trait]
    impl Sink for Flaky {
        fn destination(&self) -> Destination {
            self.inner.destination()
        }
        fn describe(&self) -> String {
            "flaky".into()
        }
        async fn get(&self, key: &str) -> Result<Option<String>, StorageError> {
            self.inner.get(key).await
        }
        async fn put(&self, key: &str, document: &str) -> Result<(), StorageError> {
            self.fail_once_more()?;
            self.inner.put(key, document).await
        }
        async fn delete(&self, key: &str) -> Result<(), StorageError> {
            self.fail_once_more()?;
            self.inner.delete(key).await
        }
    }

    /// A store whose writes fail as `verdict` says for their key, after
    /// `delay`; it notes whether a write without an ordering key (the
    /// hostile handler stores those with U+FFFD in their document) ever
    /// overlapped another.
    struct Scripted {
        inner: MemorySink,
        verdict: fn(&str) -> Option<Class>,
        delay: Duration,
        writing: Mutex<(u32, bool)>,
        overlapped: std::sync::atomic::AtomicBool,
    }

    impl Scripted {
        fn new(verdict: fn(&str) -> Option<Class>, delay: Duration) -> Arc<Scripted> {
            Arc::new(Scripted {
                inner: MemorySink::new(Destination::ObjectStore),
                verdict,
                delay,
                writing: Mutex::default(),
                overlapped: Default::default(),
            })
        }
    }

    #[async_trait::async_trait]
    impl Sink for Scripted {
        fn destination(&self) -> Destination {
            self.inner.destination()
        }
        fn describe(&self) -> String {
            "scripted".into()
        }
        async fn get(&self, key: &str) -> Result<Option<String>, StorageError> {
            self.inner.get(key).await
        }
        async fn put(&self, key: &str, document: &str) -> Result<(), StorageError> {
            let alone = document.contains('\u{FFFD}');
            {
                let mut writing = self.writing.lock().unwrap();
                if writing.0 > 0 && (alone || writing.1) {
                    self.overlapped.store(true, Ordering::SeqCst);
                }
                *writing = (writing.0 + 1, writing.1 || alone);
            }
            tokio::time::sleep(self.delay).await;
            {
                let mut writing = self.writing.lock().unwrap();
                *writing = (writing.0 - 1, writing.1 && !alone);
            }
            if let Some(class) = (self.verdict)(key) {
                return Err(StorageError::new(format!("put {key}"), class, "scripted failure"));
            }
            self.inner.put(key, document).await
        }
        async fn delete(&self, key: &str) -> Result<(), StorageError> {
            self.inner.delete(key).await
        }
    }

    fn quick() -> Options {
        Options {
            until_empty: true,
            backoff: Backoff {
                base: Duration::from_millis(1),
                cap: Duration::from_millis(2),
            },
            ..Options::default()
        }
    }

    fn create(widget: &str, owner: &str) -> String {
        format!(r#"{{"type":"create","requestId":"r","widgetId":"{widget}","owner":"{owner}","label":"L"}}"#)
    }

    fn requests(dir: &std::path::Path, bodies: &[Vec<u8>]) {
        for (i, body) in bodies.iter().enumerate() {
            std::fs::write(dir.join(format!("{i:04}")), body).unwrap();
        }
    }

    fn builtin() -> Arc<HandlerSlot> {
        HandlerSlot::new(
            Handler::from_bytes(BUILTIN, Limits::default()).unwrap(),
            Choice::Builtin,
        )
    }

    #[tokio::test]
    async fn a_store_refusing_one_requests_data_dead_letters_that_request_only() {
        let dir = tempfile::tempdir().unwrap();
        let bodies: Vec<Vec<u8>> = (0..10)
            .map(|i| {
                create(
                    &format!("w{i}"),
                    if i % 3 == 0 { "Sue Smith" } else { "Mary Matthews" },
                )
                .into()
            })
            .collect();
        requests(dir.path(), &bodies);
        let sink = Scripted::new(
            |key| key.contains("sue-smith").then_some(Class::Request),
            Duration::ZERO,
        );
        let source = Arc::new(DirSource::open(dir.path()).unwrap());
        let summary = run(source, sink.clone(), builtin(), quick(), CancellationToken::new())
            .await
            .unwrap();
        assert_eq!((summary.processed(), summary.dead_lettered), (10, 4));
        let reason = std::fs::read_to_string(dir.path().join("dead-letter/0000.reason")).unwrap();
        assert!(
            reason.contains("store refused an operation: put widgets/sue-smith/w0"),
            "{reason}"
        );
        assert_eq!(sink.inner.contents().len(), 6);
    }

    #[tokio::test]
    async fn a_failing_environment_stops_the_run_and_dead_letters_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let bodies: Vec<Vec<u8>> = (0..30)
            .map(|i| create(&format!("w{i}"), "Sue Smith").into())
            .collect();
        requests(dir.path(), &bodies);
        // Every write after the fifth meets expired credentials.
        let sink = Scripted::new(
            |key| {
                let n: u32 = key.trim_start_matches("widgets/sue-smith/w").parse().unwrap();
                (n >= 5).then_some(Class::Fatal)
            },
            Duration::ZERO,
        );
        let source = Arc::new(DirSource::open(dir.path()).unwrap());
        let options = Options {
            concurrency: 1,
            ..quick()
        };
        let error = run(source, sink.clone(), builtin(), options, CancellationToken::new())
            .await
            .unwrap_err();
        assert!(error.to_string().contains("scripted failure"), "{error}");
        assert!(!dir.path().join("dead-letter").exists());
        let left = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_file())
            .count();
        assert_eq!(left, 25, "exactly the requests not stored stay");
        assert_eq!(sink.inner.contents().len(), 5);
    }

    #[tokio::test]
    async fn a_request_without_an_ordering_key_runs_alone() {
        let guest = std::path::Path::new(env!("WIDGET_HOST_TEST_GUESTS")).join("hostile_guest.wasm");
        let handler = Handler::from_bytes(&std::fs::read(guest).unwrap(), Limits::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        // The hostile handler's ordering key is the body as text: none for
        // bytes that are not UTF-8.
        let bodies: Vec<Vec<u8>> = (0..24)
            .map(|i| {
                if i % 6 == 3 {
                    vec![0xff, i]
                } else {
                    format!("echo {i}").into_bytes()
                }
            })
            .collect();
        requests(dir.path(), &bodies);
        let sink = Scripted::new(|_| None, Duration::from_millis(20));
        let source = Arc::new(DirSource::open(dir.path()).unwrap());
        let summary = run(
            source,
            sink.clone(),
            HandlerSlot::new(handler, Choice::Builtin),
            quick(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(summary.processed(), 24);
        assert_eq!(sink.inner.contents().len(), 24);
        assert!(
            !sink.overlapped.load(Ordering::SeqCst),
            "a keyless request ran beside another"
        );
    }

    #[tokio::test]
    async fn every_retried_store_write_is_counted_in_the_summary() {
        let dir = tempfile::tempdir().unwrap();
        let mut producer = Producer::new(3, 1_700_000_000_000);
        for _ in 0..20 {
            let request = producer.next_request();
            std::fs::write(dir.path().join(request.key), request.body).unwrap();
        }
        let sink = Arc::new(Flaky {
            inner: MemorySink::new(Destination::ObjectStore),
            failures: AtomicU32::new(7),
        });
        let handler = Handler::from_bytes(BUILTIN, Limits::default()).unwrap();
        let options = Options {
            until_empty: true,
            backoff: Backoff {
                base: Duration::from_millis(1),
                cap: Duration::from_millis(2),
            },
            ..Options::default()
        };
        let summary = run(
            Arc::new(DirSource::open(dir.path()).unwrap()),
            sink.clone(),
            HandlerSlot::new(handler, Choice::Builtin),
            options,
            CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!((summary.processed(), summary.dead_lettered), (20, 0));
        assert_eq!(summary.retries, 7);
        assert_eq!(sink.failures.load(Ordering::SeqCst), 0);
    }
}
