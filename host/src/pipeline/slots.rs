//! Slots of concurrency, handed out in request order: a request holds one
//! while it is processed (but not while it waits to retry), and when a slot
//! frees up it goes to the earliest request waiting for one, by the order
//! the dispatcher admitted them in; a key's next request takes its slot
//! over when no earlier request waits. So with one slot, requests that
//! succeed run strictly in key order, one at a time; with more, no request
//! is overtaken by many. A request back from waiting to retry joins a line
//! of its own, behind every request admitted so far, and such requests
//! hold at most half the slots while others wait (none of one slot): keys
//! that keep failing, as many as there are slots, would otherwise take
//! every slot that frees up, each for as long as a hung call takes, and
//! starve the rest (the simulation found both).
//!
//! How many slots there are follows the backend (additive increase,
//! multiplicative decrease, as TCP does), but only when the throttling is
//! broad: S3 throttles per prefix and DynamoDB per partition, so one hot
//! widget is not a slow backend. A throttled call counts against the key
//! it was made for; the slots are halved (at most once per
//! [`DECREASE_EVERY`], down to one) only when, within [`THROTTLE_WINDOW`],
//! calls of at least [`broad`] different keys were throttled. One key's
//! throttling is answered by that key's own backoff (its request lets go
//! of its slot while it waits). As many successes in a row as there are
//! slots add one back, up to `--concurrency`.
//!
//! Unless `--concurrency` fixes the number, it is found by measurement
//! (`gradient.rs`): each request that held its slot without failing
//! reports how long it held it, and the number of slots follows, between 1
//! and the ceiling (`--max-concurrency`); broad throttling halves it all
//! the same.

use super::gradient::Gradient;
use crate::retry::Hold;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// The calls already under way when a backend starts throttling answer
/// throttled too: they are one signal, not many.
const DECREASE_EVERY: Duration = Duration::from_millis(200);

/// How far back throttled calls count towards deciding that the backend,
/// not one key, is throttling.
const THROTTLE_WINDOW: Duration = Duration::from_secs(1);

/// How many different keys must have been throttled within
/// [`THROTTLE_WINDOW`] for the throttling to count as the backend's: a
/// quarter of the slots, and at least two.
fn broad(limit: usize) -> usize {
    (limit / 4).max(2)
}

/// The run's slots.
pub(super) struct Slots {
    state: Mutex<State>,
    /// The number of slots now, for the metrics.
    gauge: Gauge,
}

/// The measured number of slots is logged at most this often.
const LOG_CHANGES_EVERY: Duration = Duration::from_secs(5);

/// Whether a new measured number of slots goes on the log: moved by a
/// quarter since the log last said (`logged`, at `logged_at`), and not
/// within [`LOG_CHANGES_EVERY`] of it.
fn worth_logging(new: usize, logged: usize, logged_at: Option<Instant>) -> bool {
    let quiet = logged_at.is_some_and(|at| at.elapsed() < LOG_CHANGES_EVERY);
    !quiet && new.abs_diff(logged) >= (logged / 4).max(1)
}

struct State {
    /// Slots held.
    in_use: usize,
    /// Slots there are now.
    limit: usize,
    /// Slots there may be: `--concurrency`, or the ceiling.
    max: usize,
    /// Where the number of slots is found by measurement.
    gradient: Option<Gradient>,
    /// The number of slots the log last said, and when.
    logged: usize,
    logged_at: Option<Instant>,
    /// Successes since the last change of `limit`.
    successes: usize,
    last_decrease: Option<Instant>,
    /// Throttled calls within the last [`THROTTLE_WINDOW`]: when, and for
    /// which key.
    throttled: VecDeque<(Instant, String)>,
    /// Requests waiting for a slot, by their place in line (see
    /// [`Place`]).
    waiting: BTreeMap<Place, oneshot::Sender<()>>,
    /// Requests back from waiting to retry, waiting for a slot.
    retrying: BTreeMap<Place, oneshot::Sender<()>>,
    /// Slots held by requests that have failed before.
    retrying_in_use: usize,
    /// The latest admission seen, where a request that waited to retry
    /// joins the line again.
    latest: u64,
    /// Tells apart requests joining the line at the same admission.
    joined: u64,
}

impl State {
    /// Whether a request that has failed before may take a free slot: while
    /// such requests hold fewer than half the slots, or no other waits.
    fn retrier_may_run(&self) -> bool {
        self.retrying_in_use < self.limit / 2 || self.waiting.is_empty()
    }

    /// Hands free slots to the earliest live waiters, requests that failed
    /// before only within their share.
    fn hand_out(&mut self) {
        while self.in_use < self.limit {
            let fresh = self.waiting.first_key_value().map(|(place, _)| *place);
            let retrier = self.retrying.first_key_value().map(|(place, _)| *place);
            let retrier_first = match (fresh, retrier) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(fresh), Some(retrier)) => retrier < fresh && self.retrier_may_run(),
            };
            let (line, retried) = match (retrier_first, fresh) {
                (true, _) => (&mut self.retrying, true),
                (false, Some(_)) => (&mut self.waiting, false),
                (false, None) => return,
            };
            let (_, grant) = line.pop_first().expect("seen above");
            if grant.send(()).is_ok() {
                self.in_use += 1;
                self.retrying_in_use += usize::from(retried);
            }
        }
    }
}

impl Slots {
    /// `count` slots; `gauge` is kept at the number there are now.
    pub(super) fn new(count: usize, gauge: Gauge) -> Slots {
        Slots::with(count, count, None, gauge)
    }

    /// `initial` slots at first, then as many as measurement finds, up to
    /// `ceiling`.
    pub(super) fn adaptive(initial: usize, ceiling: usize, gauge: Gauge) -> Slots {
        let gradient = Gradient::new(initial, ceiling);
        Slots::with(gradient.limit(), ceiling, Some(gradient), gauge)
    }

    fn with(count: usize, max: usize, gradient: Option<Gradient>, gauge: Gauge) -> Slots {
        gauge.set(count.max(1) as i64);
        Slots {
            state: Mutex::new(State {
                in_use: 0,
                limit: count.max(1),
                max: max.max(1),
                gradient,
                logged: count.max(1),
                logged_at: None,
                successes: 0,
                last_decrease: None,
                throttled: VecDeque::new(),
                waiting: BTreeMap::new(),
                retrying: BTreeMap::new(),
                retrying_in_use: 0,
                latest: 0,
                joined: 0,
            }),
            gauge,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Waits for a slot for the request admitted `seq`-th, whose calls are
    /// made for ordering key `key`.
    pub(super) async fn acquire(&self, seq: u64, key: &str) -> Slot<'_> {
        self.join(seq, key, false).await
    }

    /// Waits for a slot in line for the request admitted `seq`-th, or,
    /// when it comes back from waiting to retry (`again`), in the line of
    /// requests that failed before, behind every request admitted so far.
    /// Those take at most half the slots while others wait: keys that keep
    /// failing (a hung call holds its slot until it times out) must not
    /// take every slot that frees up from the requests that would succeed.
    async fn join(&self, seq: u64, key: &str, again: bool) -> Slot<'_> {
        let granted = {
            let mut state = self.lock();
            state.latest = state.latest.max(seq);
            state.joined += 1;
            let place = Place {
                seq: if again { state.latest } else { seq },
                joined: state.joined,
            };
            let line = if again { &state.retrying } else { &state.waiting };
            let first_in_line = line.first_key_value().is_none_or(|(first, _)| *first > place);
            let may_run = !again || state.retrier_may_run();
            if state.in_use < state.limit && first_in_line && may_run {
                state.in_use += 1;
                state.retrying_in_use += usize::from(again);
                return self.granted(seq, key, again);
            }
            let (grant, granted) = oneshot::channel();
            match again {
                true => state.retrying.insert(place, grant),
                false => state.waiting.insert(place, grant),
            };
            granted
        };
        let mut waiting = Waiting {
            slots: self,
            granted: Some(granted),
            retried: again,
        };
        // The sender lives until it grants the slot: it is only taken out
        // of the map to be used.
        let _ = waiting.granted.as_mut().expect("set above").await;
        waiting.granted = None;
        self.granted(seq, key, again)
    }

    /// The slot just granted to the request admitted `seq`-th (`again`:
    /// back from waiting to retry), from now on.
    fn granted(&self, seq: u64, key: &str, again: bool) -> Slot<'_> {
        Slot {
            slots: self,
            seq,
            key: key.to_owned(),
            held: true,
            retried: again,
            since: Instant::now(),
            clean: !again,
        }
    }

    /// Gives a slot back: to the earliest waiting request, or to the pool.
    fn release(&self, retried: bool) {
        let mut state = self.lock();
        state.in_use -= 1;
        state.retrying_in_use -= usize::from(retried);
        state.hand_out();
    }

    /// A call for `key` was throttled: halve the slots if calls of enough
    /// different keys were throttled lately.
    fn throttled(&self, key: &str) {
        let mut state = self.lock();
        let now = Instant::now();
        while state
            .throttled
            .front()
            .is_some_and(|(when, _)| now.duration_since(*when) > THROTTLE_WINDOW)
        {
            state.throttled.pop_front();
        }
        state.throttled.push_back((now, key.to_owned()));
        let mut keys: Vec<&str> = state.throttled.iter().map(|(_, key)| key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        let keys_throttled = keys.len();
        if keys_throttled < broad(state.limit) {
            return;
        }
        if state
            .last_decrease
            .is_some_and(|last| last.elapsed() < DECREASE_EVERY)
        {
            return;
        }
        state.last_decrease = Some(now);
        state.successes = 0;
        let lowered = match &mut state.gradient {
            Some(gradient) => gradient.halve(),
            None => (state.limit / 2).max(1),
        };
        if lowered < state.limit {
            state.limit = lowered;
            state.logged = lowered;
            self.gauge.set(lowered as i64);
            tracing::warn!(
                concurrency = lowered,
                keys_throttled,
                "The backend is throttling many keys: fewer requests at once."
            );
        }
    }

    /// A request held its slot for `latency` without failing: where the
    /// number of slots is measured, it follows.
    fn sample(&self, latency: Duration) {
        let mut state = self.lock();
        let in_use = state.in_use;
        let Some(gradient) = &mut state.gradient else {
            return;
        };
        let limit = gradient.limit();
        let new = gradient.sample(latency, in_use);
        if new == limit {
            return;
        }
        state.limit = new;
        self.gauge.set(new as i64);
        // On the log when it has moved by a quarter since it last said,
        // and at most every few seconds: a measured number moves all the
        // time, and the gauge shows every move.
        if worth_logging(new, state.logged, state.logged_at) {
            state.logged = new;
            state.logged_at = Some(Instant::now());
            tracing::info!(
                concurrency = new,
                latency_ms = latency.as_millis() as u64,
                "Concurrency limit changed."
            );
        }
        if new > limit {
            state.hand_out();
        }
    }

    /// A call succeeded: after as many as there are slots, add one (where
    /// the number is fixed; a measured one follows [`Slots::sample`]).
    fn succeeded(&self) {
        let mut state = self.lock();
        if state.limit == state.max || state.gradient.is_some() {
            return;
        }
        state.successes += 1;
        if state.successes >= state.limit {
            state.successes = 0;
            state.limit += 1;
            self.gauge.set(state.limit as i64);
            if state.limit == state.max {
                tracing::info!(
                    concurrency = state.limit,
                    "The backend keeps up again: full concurrency."
                );
            }
            state.hand_out();
        }
    }

    /// How many slots there are now.
    #[cfg(test)]
    pub(super) fn limit(&self) -> usize {
        self.lock().limit
    }
}

/// A request's place in the line for a slot: by admission, and among
/// those joining at the same admission, by who came first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Place {
    seq: u64,
    joined: u64,
}

/// A request's wait for a slot. If it is given up (the run stopped) just as
/// the slot was granted, the slot goes back.
struct Waiting<'a> {
    slots: &'a Slots,
    granted: Option<oneshot::Receiver<()>>,
    /// In the line of requests that failed before.
    retried: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(mut granted) = self.granted.take() {
            granted.close();
            if granted.try_recv().is_ok() {
                self.slots.release(self.retried);
            }
        }
    }
}

/// A slot, held by one request.
pub(super) struct Slot<'a> {
    slots: &'a Slots,
    seq: u64,
    /// The ordering key its calls are made for: throttling counts against it.
    key: String,
    held: bool,
    /// Taken by a request that failed before (it counts in their share).
    retried: bool,
    /// When its request took it.
    since: Instant,
    /// Its request has not failed: how long it holds the slot is a sample.
    clean: bool,
}

impl Slot<'_> {
    /// Keeps the slot for the next request of the same key, admitted
    /// `seq`-th, unless an earlier request is waiting for one or there are
    /// fewer slots now; `false` then (drop this slot and wait for another).
    pub(super) fn keep_for(&mut self, seq: u64) -> bool {
        // The request it was held for is done.
        self.report();
        let state = self.slots.lock();
        let earlier_waiting = state
            .waiting
            .first_key_value()
            .is_some_and(|(first, _)| first.seq < seq);
        if self.held && !earlier_waiting && state.in_use <= state.limit {
            self.seq = seq;
            (self.since, self.clean) = (Instant::now(), true);
            // The next request has not failed: the slot leaves the share
            // of those that did.
            if std::mem::take(&mut self.retried) {
                let mut state = state;
                state.retrying_in_use -= 1;
            }
            return true;
        }
        false
    }

    /// Reports how long its request has held it, if it has not failed.
    fn report(&mut self) {
        if self.held && std::mem::take(&mut self.clean) {
            self.slots.sample(self.since.elapsed());
        }
    }
}

impl Hold for Slot<'_> {
    fn release(&mut self) {
        self.report();
        if std::mem::take(&mut self.held) {
            self.slots.release(std::mem::take(&mut self.retried));
        }
    }

    fn failed(&mut self) {
        self.clean = false;
    }

    async fn reacquire(&mut self) {
        if !self.held {
            let slot = self.slots.join(self.seq, &self.key, true).await;
            std::mem::forget(slot);
            self.held = true;
            self.retried = true;
            self.since = Instant::now();
        }
    }

    fn throttled(&mut self) {
        self.slots.throttled(&self.key);
    }

    fn succeeded(&mut self) {
        self.slots.succeeded();
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn in_use(slots: &Slots) -> usize {
        slots.lock().in_use
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_earliest_request_waiting() {
        let slots = Arc::new(Slots::new(1, Gauge::default()));
        let first = slots.acquire(1, "k").await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        // They ask in the order 5, 3, 4; they must get it as 3, 4, 5.
        for seq in [5, 3, 4] {
            let (slots, order) = (slots.clone(), order.clone());
            waiting.push(tokio::spawn(async move {
                let _slot = slots.acquire(seq, "k").await;
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
    async fn a_slot_let_go_while_waiting_to_retry_is_used_by_others() {
        let slots = Slots::new(1, Gauge::default());
        let mut retrying = slots.acquire(1, "k").await;
        retrying.release();
        let other = slots.acquire(2, "k").await;
        drop(other);
        retrying.reacquire().await;
        assert_eq!(in_use(&slots), 1);
        drop(retrying);
        assert_eq!(in_use(&slots), 0);
    }

    #[tokio::test]
    async fn a_wait_given_up_leaves_no_slot_behind() {
        let slots = Slots::new(1, Gauge::default());
        let held = slots.acquire(1, "k").await;
        let gave_up = tokio::time::timeout(Duration::from_millis(10), slots.acquire(2, "k")).await;
        assert!(gave_up.is_err());
        drop(held);
        assert_eq!(in_use(&slots), 0);
        assert!(slots.lock().waiting.is_empty());
        let _again = slots.acquire(3, "k").await;
    }

    #[tokio::test]
    async fn requests_that_failed_before_hold_at_most_half_the_slots_while_others_wait() {
        let slots = Slots::new(2, Gauge::default());
        // `a` and `b` failed; `a` is back and holds one slot of two, the
        // share of requests that failed before; `c` holds the other.
        let mut a = slots.acquire(1, "a").await;
        let mut b = slots.acquire(2, "b").await;
        a.release();
        b.release();
        a.reacquire().await;
        let c = slots.acquire(3, "c").await;
        let order = Mutex::new(Vec::new());
        // `b` asks for its slot back first, then `d`, new, asks; then `c`
        // frees one.
        let retrying = async {
            b.reacquire().await;
            order.lock().unwrap().push("b");
        };
        let fresh = async {
            tokio::task::yield_now().await;
            let d = slots.acquire(4, "d").await;
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
        assert_eq!(in_use(&slots), 0);
        assert_eq!(slots.lock().retrying_in_use, 0);
    }

    #[test]
    fn one_throttled_key_leaves_the_slots_and_many_halve_them() {
        let slots = Slots::new(16, Gauge::default());
        for _ in 0..100 {
            slots.throttled("hot");
        }
        assert_eq!(slots.limit(), 16, "one hot key is not a slow backend");
        // A quarter of the slots' worth of keys throttled within a second
        // is: the hot one and three more.
        for key in ["a", "b"] {
            slots.throttled(key);
            assert_eq!(slots.limit(), 16);
        }
        slots.throttled("c");
        assert_eq!(slots.limit(), 8);
    }

    #[test]
    fn throttling_halves_the_slots_and_successes_bring_them_back() {
        let gauge = Gauge::default();
        let slots = Slots::new(8, gauge.clone());
        slots.throttled("a");
        slots.throttled("b");
        assert_eq!(slots.limit(), 4);
        assert_eq!(gauge.get(), 4, "the metric follows");
        // Throttled answers to calls already under way count once.
        slots.throttled("c");
        assert_eq!(slots.limit(), 4);
        for _ in 0..3 {
            slots.lock().last_decrease = None;
            slots.throttled("d");
        }
        assert_eq!(slots.limit(), 1, "never below one");
        // One slot back after as many successes as there are slots.
        let mut successes = 0;
        while slots.limit() < 8 {
            slots.succeeded();
            successes += 1;
        }
        assert_eq!(successes, 1 + 2 + 3 + 4 + 5 + 6 + 7);
        slots.succeeded();
        assert_eq!(slots.limit(), 8, "never above --concurrency");
        assert_eq!(gauge.get(), 8);
    }

    #[tokio::test(start_paused = true)]
    async fn a_measured_number_of_slots_is_logged_at_most_every_five_seconds() {
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
