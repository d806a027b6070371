//! Scheduling by ordering key: one task per key that has requests in the
//! run, taking them one after the other, each to the end; different keys
//! side by side, as many at once as the run has slots (see `slots.rs`).
//!
//! A key whose request keeps failing (retried with backoff) holds up only
//! its own later requests. Few of those are held in memory
//! ([`WAITING_PER_KEY`]); past that, the key's later requests are left in
//! the source for this pass (and so, to keep their order, are all its
//! requests after them) and read again on the next pass (a source that
//! cannot list them again, a queue, has them all held instead; the
//! in-flight cap still bounds them). Requests held in
//! all are bounded by [`HELD_PER_SLOT`] times the concurrency. A request
//! without an ordering key may touch any widget: it runs alone, after what
//! is in flight and before what follows.

use super::process::process;
use super::{Job, Shared};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::task::JoinSet;
use tracing::debug;

/// Requests of one key held behind the one in progress.
const WAITING_PER_KEY: usize = 4;

/// Requests held in all (in progress, waiting for a slot, waiting behind
/// their key), per slot of concurrency.
const HELD_PER_SLOT: usize = 8;

/// The keys with requests in the run.
#[derive(Default)]
pub(super) struct Keys(Mutex<KeyState>);

#[derive(Default)]
struct KeyState {
    /// How many requests were admitted so far.
    admitted: u64,
    /// Per key with a task, the requests waiting behind its current one.
    waiting: HashMap<String, VecDeque<Job>>,
    /// Keys whose later requests stay in the source until the next pass.
    deferred: HashSet<String>,
}

impl Keys {
    /// A new pass over the source starts: deferred keys are taken again.
    pub(super) fn new_pass(&self) {
        self.0.lock().unwrap().deferred.clear();
    }

    fn next_seq(&self) -> u64 {
        self.0.lock().unwrap().next_seq()
    }
}

impl KeyState {
    /// The next request's place in the admission order.
    fn next_seq(&mut self) -> u64 {
        self.admitted += 1;
        self.admitted
    }
}

/// What became of a request offered to [`admit`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Admission {
    /// Taken: it runs after the requests of its key before it.
    Taken,
    /// Left in the source until the next pass: its key is busy.
    Deferred,
    /// The run stopped while it waited for room.
    Stopped,
}

/// Hands `job` to its key's task, starting one if the key has none.
pub(super) async fn admit(shared: &Arc<Shared>, running: &mut JoinSet<()>, mut job: Job) -> Admission {
    let Some(widget) = job.widget.clone() else {
        job.seq = shared.keys.next_seq();
        return alone(shared, running, job).await;
    };
    let cap = shared.options.concurrency.max(1) * HELD_PER_SLOT;
    if !shared.wait_until(|tracker| tracker.in_flight.len() < cap).await {
        return Admission::Stopped;
    }
    let mut keys = shared.keys.0.lock().unwrap();
    if keys.deferred.contains(&widget) {
        return Admission::Deferred;
    }
    job.seq = keys.next_seq();
    // A source that does not list again what is left (a queue) has all
    // its requests held, however many wait behind one key.
    let relists = shared.source.relists();
    match keys.waiting.get(&widget).map(VecDeque::len) {
        Some(held) if held >= WAITING_PER_KEY && relists => {
            debug!(widget = %widget, "Key busy; its later requests wait for the next pass.");
            keys.deferred.insert(widget);
            return Admission::Deferred;
        }
        Some(_) => {
            shared.take_in(&job.key);
            keys.waiting
                .get_mut(&widget)
                .expect("checked above")
                .push_back(job);
        }
        None => {
            shared.take_in(&job.key);
            keys.waiting.insert(widget.clone(), VecDeque::new());
            drop(keys);
            running.spawn(run_key(shared.clone(), Some(widget), job));
        }
    }
    Admission::Taken
}

/// Runs a request without an ordering key on its own.
async fn alone(shared: &Arc<Shared>, running: &mut JoinSet<()>, job: Job) -> Admission {
    if !shared.wait_until(|tracker| tracker.in_flight.is_empty()).await {
        return Admission::Stopped;
    }
    shared.take_in(&job.key);
    running.spawn(run_key(shared.clone(), None, job));
    match shared.wait_until(|tracker| tracker.in_flight.is_empty()).await {
        true => Admission::Taken,
        false => Admission::Stopped,
    }
}

/// A key's task: its requests one after the other, each to the end.
async fn run_key(shared: Arc<Shared>, widget: Option<String>, first: Job) {
    let mut job = first;
    let mut slot = None;
    loop {
        // After a stop only what has started is finished; the rest stays in
        // the source for the next run.
        if slot.is_none() {
            slot = tokio::select! {
                slot = shared.slots.acquire(job.seq) => Some(slot),
                _ = shared.stop.cancelled() => None,
            };
        }
        if let Some(slot) = &mut slot
            && !shared.stop.is_cancelled()
        {
            process(&shared, &job, slot).await;
        }
        let next = widget.as_ref().and_then(|widget| {
            let mut keys = shared.keys.0.lock().unwrap();
            let next = keys.waiting.get_mut(widget).and_then(VecDeque::pop_front);
            if next.is_none() {
                keys.waiting.remove(widget);
            }
            next
        });
        shared.let_go(&job.key);
        shared.done.notify_waiters();
        match next {
            Some(next) => {
                if !slot.as_mut().is_some_and(|slot| slot.keep_for(next.seq)) {
                    slot = None;
                }
                job = next;
            }
            None => return,
        }
    }
}
