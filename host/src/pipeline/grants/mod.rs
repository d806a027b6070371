//! Grants of concurrency: a request holds one while it is processed (but
//! not while it waits to retry). Two parts, under one lock:
//!
//! - [`queue`]: who gets a grant that frees up, in admission order, in two
//!   lines (requests back from waiting to retry hold at most half); a key's
//!   next request takes its grant over when no earlier request waits. So
//!   with one grant, requests that succeed run strictly in key order, one
//!   at a time; with more, no request is overtaken by many.
//! - [`limit`]: how many grants there are: `--concurrency N` ([`limit::Aimd`])
//!   or measured ([`gradient`]), lowered only when the throttling is broad
//!   ([`throttling`]).
//!
//! A measured number is fed how long each request held its grant, less
//! what its calls waited for a shared batch call to be made
//! ([`crate::batch::waited`]): that wait grows with the load however fast
//! the backend answers, and read as the backend slowing it kept a queue
//! at 20 ms per call to a fraction of the concurrency it could use.

mod gradient;
mod limit;
mod queue;
mod throttling;

use crate::batch;
use crate::retry::Hold;
use gradient::Gradient;
use limit::{Aimd, Limit};
use prometheus_client::metrics::gauge::Gauge;
use queue::Queue;
use std::sync::Mutex;
use std::time::Duration;
use throttling::Throttling;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// The measured number of grants is logged at most this often.
const LOG_CHANGES_EVERY: Duration = Duration::from_secs(5);

/// Whether a new measured number of grants goes on the log: moved by a
/// quarter since the log last said (`logged`, at `logged_at`), and not
/// within [`LOG_CHANGES_EVERY`] of it.
fn worth_logging(new: usize, logged: usize, logged_at: Option<Instant>) -> bool {
    let quiet = logged_at.is_some_and(|at| at.elapsed() < LOG_CHANGES_EVERY);
    !quiet && new.abs_diff(logged) >= (logged / 4).max(1)
}

/// The run's grants.
pub(super) struct Grants {
    state: Mutex<State>,
    /// The number of grants now, for the metrics.
    gauge: Gauge,
}

struct State {
    queue: Queue,
    limit: Box<dyn Limit>,
    throttling: Throttling,
    /// The number of grants the log last said, and when.
    logged: usize,
    logged_at: Option<Instant>,
}

impl Grants {
    /// `count` grants, lowered only by broad throttling.
    pub(super) fn new(count: usize, gauge: Gauge) -> Grants {
        Grants::with(Box::new(Aimd::new(count)), gauge)
    }

    /// `initial` grants at first, then as many as measurement finds, up to
    /// `ceiling`.
    pub(super) fn adaptive(initial: usize, ceiling: usize, gauge: Gauge) -> Grants {
        Grants::with(Box::new(Gradient::new(initial, ceiling)), gauge)
    }

    fn with(limit: Box<dyn Limit>, gauge: Gauge) -> Grants {
        let count = limit.current();
        gauge.set(count as i64);
        Grants {
            state: Mutex::new(State {
                queue: Queue::default(),
                limit,
                throttling: Throttling::default(),
                logged: count,
                logged_at: None,
            }),
            gauge,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Waits for a grant for the request admitted `seq`-th, whose calls are
    /// made for ordering key `key`.
    pub(super) async fn acquire(&self, seq: u64, key: &str) -> Grant<'_> {
        self.join(seq, false).await;
        Grant {
            grants: self,
            seq,
            key: key.to_owned(),
            held: true,
            retried: false,
            since: Clock::start(),
            clean: true,
        }
    }

    /// Waits for a grant in line for the request admitted `seq`-th, or,
    /// back from waiting to retry (`again`), in the line of requests that
    /// failed before (see `queue.rs`).
    async fn join(&self, seq: u64, again: bool) {
        let granted = {
            let mut state = self.lock();
            let limit = state.limit.current();
            match state.queue.join(seq, again, limit) {
                None => return,
                Some(granted) => granted,
            }
        };
        let mut waiting = Waiting {
            grants: self,
            granted: Some(granted),
            retried: again,
        };
        // The sender lives until it grants: it is only taken out of the
        // line to be used.
        let _ = waiting.granted.as_mut().expect("set above").await;
        waiting.granted = None;
    }

    /// Gives a grant back: to the earliest waiting request, or to the pool.
    fn release(&self, retried: bool) {
        let mut state = self.lock();
        let limit = state.limit.current();
        state.queue.give_back(retried, limit);
    }

    /// Applies what the controller now says, `new` grants after `old`.
    fn moved(&self, state: &mut State, old: usize, new: usize) {
        if new != old {
            self.gauge.set(new as i64);
        }
        if new > old {
            state.queue.hand_out(new);
        }
    }

    /// A call for `key` was throttled: fewer grants if calls of enough
    /// different keys were throttled lately.
    fn throttled(&self, key: &str) {
        let mut state = self.lock();
        let old = state.limit.current();
        let Some(keys_throttled) = state.throttling.broad(key, old) else {
            return;
        };
        let lowered = state.limit.throttled();
        if lowered < old {
            state.logged = lowered;
            self.moved(&mut state, old, lowered);
            tracing::warn!(
                concurrency = lowered,
                keys_throttled,
                "The backend is throttling many keys: fewer requests at once."
            );
        }
    }

    /// A request held its grant for `latency` without failing: a measured
    /// number follows.
    fn sample(&self, latency: Duration) {
        let mut state = self.lock();
        let (old, in_use) = (state.limit.current(), state.queue.in_use);
        let new = state.limit.sample(latency, in_use);
        self.moved(&mut state, old, new);
        // On the log when it has moved by a quarter since it last said,
        // and at most every few seconds: a measured number moves all the
        // time, and the gauge shows every move.
        if new != old && worth_logging(new, state.logged, state.logged_at) {
            state.logged = new;
            state.logged_at = Some(Instant::now());
            tracing::info!(
                concurrency = new,
                latency_ms = latency.as_millis() as u64,
                "Concurrency limit changed."
            );
        }
    }

    /// A call succeeded: a fixed number lowered by throttling comes back.
    fn succeeded(&self) {
        let mut state = self.lock();
        let old = state.limit.current();
        let new = state.limit.succeeded();
        self.moved(&mut state, old, new);
    }

    /// How many grants there are now.
    #[cfg(test)]
    pub(super) fn limit(&self) -> usize {
        self.lock().limit.current()
    }
}

/// A request's wait for a grant. If it is given up (the run stopped) just
/// as the grant came, the grant goes back.
struct Waiting<'a> {
    grants: &'a Grants,
    granted: Option<oneshot::Receiver<()>>,
    /// In the line of requests that failed before.
    retried: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(mut granted) = self.granted.take() {
            granted.close();
            if granted.try_recv().is_ok() {
                self.grants.release(self.retried);
            }
        }
    }
}

/// A grant, held by one request (and passed on to its key's next).
pub(super) struct Grant<'a> {
    grants: &'a Grants,
    seq: u64,
    /// The ordering key its calls are made for: throttling counts against it.
    key: String,
    held: bool,
    /// Taken by a request that failed before (it counts in their share).
    retried: bool,
    /// When its request took it.
    since: Clock,
    /// Its request has not failed: how long it holds the grant is a sample.
    clean: bool,
}

impl Grant<'_> {
    /// Keeps the grant for the next request of the same key, admitted
    /// `seq`-th, unless an earlier request is waiting for one or there are
    /// fewer grants now; `false` then (drop this one and wait for another).
    pub(super) fn keep_for(&mut self, seq: u64) -> bool {
        // The request it was held for is done.
        self.report();
        let mut state = self.grants.lock();
        let limit = state.limit.current();
        if self.held && state.queue.may_keep_for(seq, limit) {
            self.seq = seq;
            (self.since, self.clean) = (Clock::start(), true);
            // The next request has not failed: the grant leaves the share
            // of those that did.
            if std::mem::take(&mut self.retried) {
                state.queue.retrying_in_use -= 1;
            }
            return true;
        }
        false
    }

    /// Reports how long its request has held it, if it has not failed.
    fn report(&mut self) {
        if self.held && std::mem::take(&mut self.clean) {
            self.grants.sample(self.since.elapsed());
        }
    }
}

/// A request's time with its grant, less its calls' waits for a batch
/// call to be made: counted in the task that holds the grant.
struct Clock {
    started: Instant,
    /// The task's waits for batch calls when the clock started.
    waited: Duration,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            started: Instant::now(),
            waited: batch::waited(),
        }
    }

    fn elapsed(&self) -> Duration {
        let waited = batch::waited().saturating_sub(self.waited);
        self.started.elapsed().saturating_sub(waited)
    }
}

impl Hold for Grant<'_> {
    fn release(&mut self) {
        self.report();
        if std::mem::take(&mut self.held) {
            self.grants.release(std::mem::take(&mut self.retried));
        }
    }

    fn failed(&mut self) {
        self.clean = false;
    }

    async fn reacquire(&mut self) {
        if !self.held {
            self.grants.join(self.seq, true).await;
            self.held = true;
            self.retried = true;
            self.since = Clock::start();
        }
    }

    fn throttled(&mut self) {
        self.grants.throttled(&self.key);
    }

    fn succeeded(&mut self) {
        self.grants.succeeded();
    }
}

impl Drop for Grant<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn in_use(grants: &Grants) -> usize {
        grants.lock().queue.in_use
    }

    #[tokio::test]
    async fn a_freed_grant_goes_to_the_earliest_request_waiting() {
        let grants = Arc::new(Grants::new(1, Gauge::default()));
        let first = grants.acquire(1, "k").await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        // They ask in the order 5, 3, 4; they must get it as 3, 4, 5.
        for seq in [5, 3, 4] {
            let (grants, order) = (grants.clone(), order.clone());
            waiting.push(tokio::spawn(async move {
                let _grant = grants.acquire(seq, "k").await;
                order.lock().unwrap().push(seq);
            }));
            tokio::task::yield_now().await;
        }
        drop(first);
        for task in waiting {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [3, 4, 5]);
    }

    #[tokio::test]
    async fn a_grant_let_go_while_waiting_to_retry_is_used_by_others() {
        let grants = Grants::new(1, Gauge::default());
        let mut retrying = grants.acquire(1, "k").await;
        retrying.release();
        let other = grants.acquire(2, "k").await;
        drop(other);
        retrying.reacquire().await;
        assert_eq!(in_use(&grants), 1);
        drop(retrying);
        assert_eq!(in_use(&grants), 0);
    }

    #[tokio::test]
    async fn a_wait_given_up_leaves_no_grant_behind() {
        let grants = Grants::new(1, Gauge::default());
        let held = grants.acquire(1, "k").await;
        let gave_up = tokio::time::timeout(Duration::from_millis(10), grants.acquire(2, "k")).await;
        assert!(gave_up.is_err());
        drop(held);
        assert_eq!(in_use(&grants), 0);
        assert_eq!(grants.lock().queue.waiting(), 0);
        let _again = grants.acquire(3, "k").await;
    }

    #[tokio::test]
    async fn requests_that_failed_before_hold_at_most_half_the_grants_while_others_wait() {
        let grants = Grants::new(2, Gauge::default());
        // `a` and `b` failed; `a` is back and holds one grant of two, the
        // share of requests that failed before; `c` holds the other.
        let mut a = grants.acquire(1, "a").await;
        let mut b = grants.acquire(2, "b").await;
        a.release();
        b.release();
        a.reacquire().await;
        let c = grants.acquire(3, "c").await;
        let order = Mutex::new(Vec::new());
        // `b` asks for its grant back first, then `d`, new, asks; then `c`
        // frees one.
        let retrying = async {
            b.reacquire().await;
            order.lock().unwrap().push("b");
        };
        let fresh = async {
            tokio::task::yield_now().await;
            let d = grants.acquire(4, "d").await;
            order.lock().unwrap().push("d");
            tokio::task::yield_now().await;
            drop(d);
        };
        let freeing = async {
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            drop(c);
        };
        tokio::join!(retrying, fresh, freeing);
        assert_eq!(*order.lock().unwrap(), ["d", "b"], "the new request first");
        drop((a, b));
        assert_eq!(in_use(&grants), 0);
        assert_eq!(grants.lock().queue.retrying_in_use, 0);
    }

    #[test]
    fn one_throttled_key_leaves_the_grants_and_many_halve_them() {
        let grants = Grants::new(16, Gauge::default());
        for _ in 0..100 {
            grants.throttled("hot");
        }
        assert_eq!(grants.limit(), 16, "one hot key is not a slow backend");
        // A quarter of the grants' worth of keys throttled within a second
        // is: the hot one and three more.
        for key in ["a", "b"] {
            grants.throttled(key);
            assert_eq!(grants.limit(), 16);
        }
        grants.throttled("c");
        assert_eq!(grants.limit(), 8);
    }

    #[test]
    fn throttling_halves_the_grants_and_successes_bring_them_back() {
        let gauge = Gauge::default();
        let grants = Grants::new(8, gauge.clone());
        grants.throttled("a");
        grants.throttled("b");
        assert_eq!(grants.limit(), 4);
        assert_eq!(gauge.get(), 4, "the metric follows");
        // Throttled answers to calls already under way count once.
        grants.throttled("c");
        assert_eq!(grants.limit(), 4);
        for _ in 0..3 {
            grants.lock().throttling.last_decrease = None;
            grants.throttled("d");
        }
        assert_eq!(grants.limit(), 1, "never below one");
        // One grant back after as many successes as there are grants.
        let mut successes = 0;
        while grants.limit() < 8 {
            grants.succeeded();
            successes += 1;
        }
        assert_eq!(successes, 1 + 2 + 3 + 4 + 5 + 6 + 7);
        grants.succeeded();
        assert_eq!(grants.limit(), 8, "never above --concurrency");
        assert_eq!(gauge.get(), 8);
    }

    /// A limit of 8 that keeps the samples it is given.
    struct Samples(Arc<Mutex<Vec<Duration>>>);

    impl Limit for Samples {
        fn current(&self) -> usize {
            8
        }
        fn throttled(&mut self) -> usize {
            8
        }
        fn sample(&mut self, latency: Duration, _in_use: usize) -> usize {
            self.0.lock().unwrap().push(latency);
            8
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_requests_wait_for_a_shared_batch_call_is_not_counted_as_its_backends_time() {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let grants = Grants::with(Box::new(Samples(samples.clone())), Gauge::default());
        // A batch call takes 20 ms; one is under way when the request's
        // own item comes, 5 ms in.
        let batcher = Arc::new(batch::Batcher::start(
            10,
            String::clone,
            |items: Vec<String>| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                vec![(); items.len()]
            },
        ));
        let under_way = tokio::spawn({
            let batcher = batcher.clone();
            async move { batcher.submit("other".into()).await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        batch::waits_counted(async {
            let grant = grants.acquire(1, "k").await;
            batcher.submit("mine".into()).await;
            drop(grant);
        })
        .await;
        under_way.await.unwrap();
        // Held 35 ms: 15 waiting for the call under way, 20 its own call.
        assert_eq!(*samples.lock().unwrap(), [Duration::from_millis(20)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_measured_number_of_grants_is_logged_at_most_every_five_seconds() {
        // Moved by a quarter, never said: logged.
        assert!(worth_logging(20, 16, None));
        // Moved by less: not.
        assert!(!worth_logging(17, 16, None));
        // Said a moment ago: not, however far it moved; later, it is.
        let said = Instant::now();
        assert!(!worth_logging(64, 16, Some(said)));
        tokio::time::advance(LOG_CHANGES_EVERY).await;
        assert!(worth_logging(64, 16, Some(said)));
    }
}
