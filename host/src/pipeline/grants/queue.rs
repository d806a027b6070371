//! The grant queue: grants handed out in admission order, in two lines.
//! When a grant frees up it goes to the earliest request waiting for one,
//! by the order the dispatcher admitted them in. A request back from
//! waiting to retry joins a line of its own, behind every request admitted
//! so far, and such requests hold at most half the grants while others
//! wait (none of one grant): keys that keep failing, as many as there are
//! grants, would otherwise take every grant that frees up, each for as
//! long as a hung call takes, and starve the rest (the simulation found
//! both). How many grants there are is not decided here (see `limit.rs`).

use std::collections::BTreeMap;
use tokio::sync::oneshot;

/// A request's place in a line: by admission, and among those joining at
/// the same admission, by who came first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Place {
    seq: u64,
    joined: u64,
}

/// The lines, and the grants held.
#[derive(Default)]
pub(super) struct Queue {
    /// Grants held.
    pub(super) in_use: usize,
    /// Requests waiting for a grant, by their place in line.
    waiting: BTreeMap<Place, oneshot::Sender<()>>,
    /// Requests back from waiting to retry, waiting for a grant.
    retrying: BTreeMap<Place, oneshot::Sender<()>>,
    /// Grants held by requests that have failed before.
    pub(super) retrying_in_use: usize,
    /// The latest admission seen, where a request that waited to retry
    /// joins the line again.
    latest: u64,
    /// Tells apart requests joining the line at the same admission.
    joined: u64,
}

impl Queue {
    /// Whether a request that has failed before may take a free grant, of
    /// `limit`: while such requests hold fewer than half, or no other waits.
    fn retrier_may_run(&self, limit: usize) -> bool {
        self.retrying_in_use < limit / 2 || self.waiting.is_empty()
    }

    /// A grant for the request admitted `seq`-th (`again`: back from
    /// waiting to retry), of `limit`: taken now if it is free and no one
    /// is before it, else the receiver that is told when it is granted.
    pub(super) fn join(&mut self, seq: u64, again: bool, limit: usize) -> Option<oneshot::Receiver<()>> {
        self.latest = self.latest.max(seq);
        self.joined += 1;
        let place = Place {
            seq: if again { self.latest } else { seq },
            joined: self.joined,
        };
        let line = if again { &self.retrying } else { &self.waiting };
        let first_in_line = line.first_key_value().is_none_or(|(first, _)| *first > place);
        let may_run = !again || self.retrier_may_run(limit);
        if self.in_use < limit && first_in_line && may_run {
            self.in_use += 1;
            self.retrying_in_use += usize::from(again);
            return None;
        }
        let (grant, granted) = oneshot::channel();
        match again {
            true => self.retrying.insert(place, grant),
            false => self.waiting.insert(place, grant),
        };
        Some(granted)
    }

    /// Gives a grant back (`retried`: held by a request that failed
    /// before), and hands out what is free.
    pub(super) fn give_back(&mut self, retried: bool, limit: usize) {
        self.in_use -= 1;
        self.retrying_in_use -= usize::from(retried);
        self.hand_out(limit);
    }

    /// Whether a grant held may pass to the same key's next request,
    /// admitted `seq`-th: no earlier request waits, and no more are held
    /// than `limit`.
    pub(super) fn may_keep_for(&self, seq: u64, limit: usize) -> bool {
        let earlier_waiting = self
            .waiting
            .first_key_value()
            .is_some_and(|(first, _)| first.seq < seq);
        !earlier_waiting && self.in_use <= limit
    }

    /// How many requests wait for a grant, in both lines.
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        self.waiting.len() + self.retrying.len()
    }

    /// Hands free grants, of `limit`, to the earliest live waiters,
    /// requests that failed before only within their share.
    pub(super) fn hand_out(&mut self, limit: usize) {
        while self.in_use < limit {
            let fresh = self.waiting.first_key_value().map(|(place, _)| *place);
            let retrier = self.retrying.first_key_value().map(|(place, _)| *place);
            let retrier_first = match (fresh, retrier) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(fresh), Some(retrier)) => retrier < fresh && self.retrier_may_run(limit),
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
