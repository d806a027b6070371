//! What belongs to one handler call and to no other: its request key, the
//! store it may read, what it logged and warned, a read that failed, and
//! its clocks. A [`Call`] is made new for every call, on a fresh instance
//! or a reused one, so nothing of an earlier call can leak into it: there
//! is no field to forget to reset.

use super::Limits;
use super::output::LogBudget;
use crate::error::StorageError;
use crate::sink::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) struct Call {
    /// The store `store.get` reads, read only; `None` for calls that must
    /// not read it (`ordering-key`).
    pub(super) reader: Option<Arc<dyn Read>>,
    pub(super) request_key: String,
    pub(super) warnings: u32,
    pub(super) log: LogBudget,
    /// A read that failed for a reason other than the request: the call's
    /// answer is not to be trusted.
    pub(super) store_failure: Option<StorageError>,
    pub(super) started: Instant,
    /// Time spent in `store.get`, which does not count against the limit.
    pub(super) waiting: WaitClock,
    pub(super) time_limit: Duration,
}

impl Call {
    pub(super) fn new(limits: Limits, reader: Option<Arc<dyn Read>>, request_key: String) -> Call {
        Call {
            reader,
            request_key,
            warnings: 0,
            log: LogBudget::new(limits.log_bytes),
            store_failure: None,
            started: Instant::now(),
            waiting: WaitClock::default(),
            time_limit: limits.time,
        }
    }

    /// Time the guest has computed: since the start, less the waiting.
    pub(super) fn computing(&self) -> Duration {
        self.started.elapsed().saturating_sub(self.waiting.waited())
    }
}

/// The time a call has spent waiting on the host, shared with whatever
/// bounds the call from outside.
#[derive(Debug, Clone, Default)]
pub(super) struct WaitClock(Arc<Mutex<(Duration, Option<Instant>)>>);

impl WaitClock {
    /// Starts a wait.
    pub(super) fn start(&self) {
        self.0.lock().unwrap().1 = Some(Instant::now());
    }

    /// Ends the wait started last.
    pub(super) fn stop(&self) {
        let mut clock = self.0.lock().unwrap();
        if let Some(since) = clock.1.take() {
            clock.0 += since.elapsed();
        }
    }

    /// All the waiting so far, the wait in progress included.
    pub(super) fn waited(&self) -> Duration {
        let clock = self.0.lock().unwrap();
        clock.0 + clock.1.map_or(Duration::ZERO, |since| since.elapsed())
    }
}
