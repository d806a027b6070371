//! Slots of concurrency, handed out in request order: a request holds one
//! while it is processed (but not while it waits to retry), and when a slot
//! frees up it goes to the earliest request waiting for one, by the order
//! the dispatcher admitted them in; a key's next request takes its slot
//! over when no earlier request waits. So with one slot, requests run
//! strictly in key order, one at a time; with more, no request is overtaken
//! by many.

use crate::retry::Hold;
use std::collections::BTreeMap;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// The run's slots.
pub(super) struct Slots(Mutex<State>);

struct State {
    free: usize,
    /// Requests waiting for a slot, by admission order.
    waiting: BTreeMap<u64, oneshot::Sender<()>>,
}

impl Slots {
    pub(super) fn new(count: usize) -> Slots {
        Slots(Mutex::new(State {
            free: count.max(1),
            waiting: BTreeMap::new(),
        }))
    }

    /// Waits for a slot for the request admitted `seq`-th.
    pub(super) async fn acquire(&self, seq: u64) -> Slot<'_> {
        let granted = {
            let mut state = self.0.lock().unwrap();
            let first_in_line = state
                .waiting
                .first_key_value()
                .is_none_or(|(first, _)| *first > seq);
            if state.free > 0 && first_in_line {
                state.free -= 1;
                return Slot {
                    slots: self,
                    seq,
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
            held: true,
        }
    }

    /// Gives a slot back: to the earliest waiting request, or to the pool.
    fn release(&self) {
        let mut state = self.0.lock().unwrap();
        while let Some((_, grant)) = state.waiting.pop_first() {
            if grant.send(()).is_ok() {
                return;
            }
        }
        state.free += 1;
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
    held: bool,
}

impl Slot<'_> {
    /// Keeps the slot for the next request of the same key, admitted
    /// `seq`-th, unless an earlier request is waiting for one; `false` then
    /// (drop this slot and wait for another).
    pub(super) fn keep_for(&mut self, seq: u64) -> bool {
        let state = self.slots.0.lock().unwrap();
        let earlier_waiting = state
            .waiting
            .first_key_value()
            .is_some_and(|(first, _)| *first < seq);
        if self.held && !earlier_waiting {
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
            let slot = self.slots.acquire(self.seq).await;
            std::mem::forget(slot);
            self.held = true;
        }
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

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_earliest_request_waiting() {
        let slots = Arc::new(Slots::new(1));
        let first = slots.acquire(1).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        // They ask in the order 5, 3, 4; they must get it as 3, 4, 5.
        for seq in [5, 3, 4] {
            let (slots, order) = (slots.clone(), order.clone());
            waiting.push(tokio::spawn(async move {
                let _slot = slots.acquire(seq).await;
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
        let slots = Slots::new(1);
        let mut retrying = slots.acquire(1).await;
        retrying.release();
        let other = slots.acquire(2).await;
        drop(other);
        retrying.reacquire().await;
        assert!(slots.0.lock().unwrap().free == 0);
        drop(retrying);
        assert!(slots.0.lock().unwrap().free == 1);
    }

    #[tokio::test]
    async fn a_wait_given_up_leaves_no_slot_behind() {
        let slots = Slots::new(1);
        let held = slots.acquire(1).await;
        let gave_up = tokio::time::timeout(std::time::Duration::from_millis(10), slots.acquire(2)).await;
        assert!(gave_up.is_err());
        drop(held);
        assert_eq!(slots.0.lock().unwrap().free, 1);
        assert!(slots.0.lock().unwrap().waiting.is_empty());
    }
}
