//! Scheduling by ordering key: one task per key that has requests in the
//! run, taking them one after the other, each to the end; different keys
//! side by side, as many at once as the run has grants of concurrency (see `grants/`).
//!
//! A key holds only so many requests behind its current one
//! ([`waiting_per_key`]: four for a source that lists again, half the
//! room for a queue); past that the key is busy, and its later requests
//! are let go of until it is not: a source that lists again (a folder, a
//! bucket) lists them on its next pass; a queue's messages are handed
//! back (a FIFO queue keeps them behind the group's messages in flight,
//! so their order holds; a standard one gives them again after a few
//! seconds). A key whose request fails and waits to retry holds that request
//! only ([`shed`]). So failing keys never fill the host with their
//! requests, and the requests of other keys keep coming in. Requests held
//! in all are bounded by [`HELD_PER_GRANT`] times the concurrency.
//!
//! A request without an ordering key may touch anything: it runs alone,
//! after what is in flight and before what follows. If a key in flight
//! keeps failing, it waits as long; the log names the keys it waits on
//! every [`KEYLESS_REPORT_EVERY`], and `/metrics` says how long it has
//! waited. (The built-in handler gives every request a key, the ones it
//! will reject too: those touch nothing.)

use super::fate::Fate;
use super::grants::Grant;
use super::process::{Turn, process};
use super::spans::stage;
use super::{Job, Shared};
use crate::batch;
use crate::retry::Hold;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

/// Requests of one key held behind the one in progress.
const WAITING_PER_KEY: usize = 4;

/// How often a request without an ordering key that is still waiting for
/// the requests in flight says so.
const KEYLESS_REPORT_EVERY: Duration = Duration::from_secs(10);

/// Requests held in all (in progress, waiting for a grant, waiting behind
/// their key), per grant of concurrency (of the ceiling).
const HELD_PER_GRANT: usize = 8;

/// The keys with requests in the run.
#[derive(Default)]
pub(super) struct Keys(Mutex<KeyState>);

#[derive(Default)]
struct KeyState {
    /// How many requests were admitted so far.
    admitted: u64,
    /// Per key with a task, the requests waiting behind its current one.
    waiting: HashMap<String, VecDeque<Job>>,
    /// Busy keys, whose later requests are let go of: until the next pass
    /// of a source that lists again, until the key has nothing left in
    /// the run for a queue.
    deferred: HashSet<String>,
    /// Keys whose current request waits to retry: they hold nothing else,
    /// and take nothing more, until it is done.
    failing: HashSet<String>,
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
    /// Let go of: its key is busy. It stays in the source (a queue's
    /// message is handed back) to be taken later.
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
    let cap = shared.options.concurrency.ceiling() * HELD_PER_GRANT;
    if !shared
        .fates
        .wait_until(|requests| requests.in_flight() < cap)
        .await
    {
        return Admission::Stopped;
    }
    // Decided under the lock; the hand-back call is made after it.
    let next = {
        let mut keys = shared.keys.0.lock().unwrap();
        let busy = keys.deferred.contains(&widget)
            || keys.failing.contains(&widget)
            || keys
                .waiting
                .get(&widget)
                .is_some_and(|held| held.len() >= waiting_per_key(shared, cap));
        if busy {
            if keys.deferred.insert(widget.clone()) {
                debug!(widget = %widget, "Key busy; its later requests are let go of until it is not.");
            }
            Next::Busy(job)
        } else {
            job.seq = keys.next_seq();
            shared.fates.take_in(&job.key);
            match keys.waiting.get_mut(&widget) {
                Some(held) => {
                    job.waiting = Some(job.span.stage(stage::WAIT_FOR_WIDGET, None));
                    held.push_back(job);
                    Next::Queued
                }
                None => {
                    keys.waiting.insert(widget.clone(), VecDeque::new());
                    Next::Start(job)
                }
            }
        }
    };
    match next {
        Next::Busy(job) => {
            let_go_of(shared, &job).await;
            return Admission::Deferred;
        }
        Next::Queued => {}
        Next::Start(job) => {
            running.spawn(batch::waits_counted(run_key(shared.clone(), Some(widget), job)));
        }
    }
    Admission::Taken
}

/// How many requests of one key may wait behind its current one. A source
/// that lists again gives the rest again on its next pass; a queue's
/// messages handed back cost calls and, on a standard queue, seconds, so
/// a busy but healthy key may fill up to half the room there; a failing
/// one holds only its current request (see [`shed`]).
fn waiting_per_key(shared: &Shared, cap: usize) -> usize {
    match shared.source.relists() {
        true => WAITING_PER_KEY,
        false => (cap / 2).max(WAITING_PER_KEY),
    }
}

/// Where [`admit`] puts a request with an ordering key.
enum Next {
    /// Its key is busy: let go of it.
    Busy(Job),
    /// Behind its key's current request.
    Queued,
    /// Its key had no task: start one with it.
    Start(Job),
}

/// A request of `widget` failed and waits to retry: the requests waiting
/// behind it are let go of (as a busy key's are), and the key takes no
/// more until that request is done. So a key that keeps failing holds one
/// request, not five, and many failing keys cannot fill the run's room for
/// requests (the simulation found that stall: four hung widgets at
/// concurrency 2).
fn shed(shared: &Arc<Shared>, widget: &str) {
    let shed: Vec<Job> = {
        let mut keys = shared.keys.0.lock().unwrap();
        if !keys.failing.insert(widget.to_owned()) {
            return;
        }
        // Deferred too: requests of the key listed while these were held
        // were passed over as in flight, so the key must take nothing more
        // this pass, or a later one could overtake them.
        keys.deferred.insert(widget.to_owned());
        keys.waiting
            .get_mut(widget)
            .map(|held| held.drain(..).collect())
            .unwrap_or_default()
    };
    if shed.is_empty() {
        return;
    }
    debug!(widget = %widget, requests = shed.len(), "Key failing; the requests waiting behind it are let go of until it recovers.");
    for job in &shed {
        job.span.let_go();
    }
    let keys: Vec<&str> = shed.iter().map(|job| job.key.as_str()).collect();
    shared.fates.let_go(&keys);
    if !shared.source.relists() {
        let shared = shared.clone();
        tokio::spawn(async move {
            for job in shed {
                hand_back(&shared, &job).await;
            }
        });
    }
}

/// Lets go of a request of a busy key: a source that lists again has it
/// listed on its next pass; a queue's message is handed back.
async fn let_go_of(shared: &Shared, job: &Job) {
    job.span.let_go();
    if !shared.source.relists() {
        hand_back(shared, job).await;
    }
}

/// Hands a queue's message back, and counts it.
async fn hand_back(shared: &Shared, job: &Job) {
    shared.source.hand_back(&job.key, &job.version).await;
    shared.fates.handed_back();
}

/// Runs a request without an ordering key on its own, once nothing else
/// is in flight; says which keys it waits on while it waits.
async fn alone(shared: &Arc<Shared>, running: &mut JoinSet<()>, job: Job) -> Admission {
    let started = tokio::time::Instant::now();
    let nothing_in_flight = shared.fates.wait_until(|requests| requests.in_flight() == 0);
    let mut nothing_in_flight = std::pin::pin!(nothing_in_flight);
    let idle = loop {
        tokio::select! {
            biased;
            idle = &mut nothing_in_flight => break idle,
            _ = tokio::time::sleep(KEYLESS_REPORT_EVERY) => {
                let waited = started.elapsed();
                shared.metrics.set_keyless_wait(waited);
                let keys: Vec<String> = shared.keys.0.lock().unwrap().waiting.keys().take(5).cloned().collect();
                warn!(
                    request_key = %job.key,
                    waited_s = waited.as_secs(),
                    waiting_on = %keys.join(", "),
                    "A request without an ordering key waits for the requests in flight; every request after it waits too. If a key it waits on keeps failing, fix that key's store or remove its requests."
                );
            }
        }
    };
    shared.metrics.set_keyless_wait(Duration::ZERO);
    if !idle {
        return Admission::Stopped;
    }
    if started.elapsed() >= KEYLESS_REPORT_EVERY {
        info!(request_key = %job.key, waited_s = started.elapsed().as_secs(), "The request without an ordering key runs now.");
    }
    shared.fates.take_in(&job.key);
    running.spawn(batch::waits_counted(run_key(shared.clone(), None, job)));
    match shared
        .fates
        .wait_until(|requests| requests.in_flight() == 0)
        .await
    {
        true => Admission::Taken,
        false => Admission::Stopped,
    }
}

/// A key's task: its requests one after the other, each to the end. It
/// runs inside [`batch::waits_counted`], for its grant's measure.
async fn run_key(shared: Arc<Shared>, widget: Option<String>, first: Job) {
    let mut job = first;
    let mut grant = None;
    loop {
        // Its wait behind its widget's earlier requests is over.
        job.waiting = None;
        // After a stop only what has started is finished; the rest stays in
        // the source for the next run.
        if grant.is_none() {
            let acquire = shared
                .grants
                .acquire(job.seq, widget.as_deref().unwrap_or(&job.key));
            grant = tokio::select! {
                biased;
                grant = job.span.in_stage(stage::WAIT_FOR_GRANT, None, acquire) => Some(grant),
                _ = shared.stop.cancelled() => None,
            };
        }
        let fate = match &mut grant {
            Some(grant) if !shared.stop.is_cancelled() => {
                let mut turn = KeyTurn {
                    grant,
                    shared: &shared,
                    widget: widget.as_deref(),
                };
                job.span.within(process(&shared, &job, &mut turn)).await
            }
            _ => Fate::Stopped,
        };
        job.span.ended(&fate);
        let next = widget.as_ref().and_then(|widget| {
            let mut keys = shared.keys.0.lock().unwrap();
            // Its request is done, one way or another: failing no more.
            keys.failing.remove(widget);
            let next = keys.waiting.get_mut(widget).and_then(VecDeque::pop_front);
            if next.is_none() {
                keys.waiting.remove(widget);
                // A queue's busy key is busy no more: its messages handed
                // back are taken when they come again.
                if !shared.source.relists() {
                    keys.deferred.remove(widget);
                }
            }
            next
        });
        job.span
            .within(async {
                shared
                    .fates
                    .record(&job.key, job.widget.as_deref(), job.listed, fate)
            })
            .await;
        match next {
            Some(next) => {
                if !grant.as_mut().is_some_and(|grant| grant.keep_for(next.seq)) {
                    grant = None;
                }
                job = next;
            }
            None => return,
        }
    }
}

/// A request's turn in its key's task: its grant of concurrency, and its
/// key's place. Waiting to retry, it lets go of both (see [`shed`]).
struct KeyTurn<'a, 'b> {
    grant: &'a mut Grant<'b>,
    shared: &'a Arc<Shared>,
    widget: Option<&'a str>,
}

impl Hold for KeyTurn<'_, '_> {
    fn release(&mut self) {
        self.grant.release();
        if let Some(widget) = self.widget {
            shed(self.shared, widget);
        }
    }

    async fn reacquire(&mut self) {
        self.grant.reacquire().await;
    }

    fn throttled(&mut self) {
        self.grant.throttled();
    }

    fn failed(&mut self) {
        self.grant.failed();
    }

    fn succeeded(&mut self) {
        self.grant.succeeded();
    }
}

impl Turn for KeyTurn<'_, '_> {
    fn stored(&mut self) {
        self.grant.release();
    }
}
