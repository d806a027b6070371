//! Slots of concurrency, handed out in request order: a request holds one
//! while it is processed (but not while it waits to retry), and when a slot
//! frees up it goes to the earliest request waiting for one, by the order
//! the dispatcher admitted them in; a key's next request takes its slot
//! over when no earlier request waits. So with one slot, requests run
//! strictly in key order, one at a time; with more, no request is overtaken
//! by many.
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

use crate::retry::Hold;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;
use tokio::sync::oneshot;

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

struct State {
    /// Slots held.
    in_use: usize,
    /// Slots there are now.
    limit: usize,
    /// Slots there may be: `--concurrency`.
    max: usize,
    /// Successes since the last change of `limit`.
    successes: usize,
    last_decrease: Option<Instant>,
    /// Throttled calls within the last [`THROTTLE_WINDOW`]: when, and for
    /// which key.
    throttled: VecDeque<(Instant, String)>,
    /// Requests waiting for a slot, by admission order.
    waiting: BTreeMap<u64, oneshot::Sender<()>>,
}

impl State {
    /// Hands free slots to the earliest live waiters.
    fn hand_out(&mut self) {
        while self.in_use < self.limit {
            let Some((_, grant)) = self.waiting.pop_first() else {
                return;
            };
            if grant.send(()).is_ok() {
                self.in_use += 1;
            }
        }
    }
}

impl Slots {
    /// `count` slots; `gauge` is kept at the number there are now.
    pub(super) fn new(count: usize, gauge: Gauge) -> Slots {
        gauge.set(count.max(1) as i64);
        Slots {
            state: Mutex::new(State {
                in_use: 0,
                limit: count.max(1),
                max: count.max(1),
                successes: 0,
                last_decrease: None,
                throttled: VecDeque::new(),
                waiting: BTreeMap::new(),
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
        let granted = {
            let mut state = self.lock();
            let first_in_line = state
                .waiting
                .first_key_value()
                .is_none_or(|(first, _)| *first > seq);
            if state.in_use < state.limit && first_in_line {
                state.in_use += 1;
                return Slot {
                    slots: self,
                    seq,
                    key: key.to_owned(),
                    held: true,
                };
            }
            let (grant, granted) = oneshot::channel();
            state.waiting.insert(seq, grant);
            granted
        };
        let mut waiting = Waiting {
            slots: self,
            granted: Some(granted),
        };
        // The sender lives until it grants the slot: it is only taken out
        // of the map to be used.
        let _ = waiting.granted.as_mut().expect("set above").await;
        waiting.granted = None;
        Slot {
            slots: self,
            seq,
            key: key.to_owned(),
            held: true,
        }
    }

    /// Gives a slot back: to the earliest waiting request, or to the pool.
    fn release(&self) {
        let mut state = self.lock();
        state.in_use -= 1;
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
        if keys.len() < broad(state.limit) {
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
        let lowered = (state.limit / 2).max(1);
        if lowered < state.limit {
            state.limit = lowered;
            self.gauge.set(lowered as i64);
            tracing::warn!(
                concurrency = lowered,
                keys_throttled = keys.len(),
                "The backend is throttling many keys: fewer requests at once."
            );
        }
    }

    /// A call succeeded: after as many as there are slots, add one.
    fn succeeded(&self) {
        let mut state = self.lock();
        if state.limit == state.max {
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

/// A request's wait for a slot. If it is given up (the run stopped) just as
/// the slot was granted, the slot goes back.
struct Waiting<'a> {
    slots: &'a Slots,
    granted: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(mut granted) = self.granted.take() {
            granted.close();
            if granted.try_recv().is_ok() {
                self.slots.release();
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
}

impl Slot<'_> {
    /// Keeps the slot for the next request of the same key, admitted
    /// `seq`-th, unless an earlier request is waiting for one or there are
    /// fewer slots now; `false` then (drop this slot and wait for another).
    pub(super) fn keep_for(&mut self, seq: u64) -> bool {
        let state = self.slots.lock();
        let earlier_waiting = state
            .waiting
            .first_key_value()
            .is_some_and(|(first, _)| *first < seq);
        if self.held && !earlier_waiting && state.in_use <= state.limit {
            self.seq = seq;
            return true;
        }
        false
    }
}

impl Hold for Slot<'_> {
    fn release(&mut self) {
        if std::mem::take(&mut self.held) {
            self.slots.release();
        }
    }

    async fn reacquire(&mut self) {
        if !self.held {
            let slot = self.slots.acquire(self.seq, &self.key).await;
            std::mem::forget(slot);
            self.held = true;
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

    #[test]
    fn one_throttled_key_leaves_the_slots_and_many_halve_them() {
        let slots = Slots::new(16, Gauge::default());
        for _ in 0..100 {
            slots.throttled("hot");
        }
        assert_eq!(slots.limit(), 16, "one hot key is not a slow backend");
        // A quarter of the slots' worth of keys throttled at once is.
        for key in ["a", "b", "c"] {
            slots.throttled(key);
            assert_eq!(slots.limit(), 16);
        }
        slots.throttled("d");
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
}
