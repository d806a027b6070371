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
    /// Time spent in `store.get`, which bounds the call from outside.
    pub(super) waiting: WaitClock,
    /// The processor time the call itself has used: what its limit counts.
    pub(super) cpu: CpuClock,
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
            waiting: WaitClock::default(),
            cpu: CpuClock::default(),
            time_limit: limits.time,
        }
    }

    /// Time the guest has computed: the processor time of the call's own
    /// polls. Not the time since it started: that counts the time it waited
    /// for a worker while other calls computed, and a busy host would fail
    /// valid requests for its own load.
    pub(super) fn computing(&self) -> Duration {
        self.cpu.used()
    }

    /// The clocks that bound the call from outside ([`super::sandbox::bounded`]).
    pub(super) fn clocks(&self) -> (WaitClock, CpuClock) {
        (self.waiting.clone(), self.cpu.clone())
    }
}

/// The processor time a call has used: summed over the polls of its
/// future, each measured with its thread's own clock (a call runs on the
/// thread that polls it, and no other call runs there meanwhile). Time the
/// thread was not scheduled, because other processes or other calls had
/// the cores, is not counted.
#[derive(Debug, Clone, Default)]
pub(crate) struct CpuClock(Arc<Mutex<(Duration, Option<Duration>)>>);

impl CpuClock {
    /// A poll begins on this thread.
    fn enter(&self) {
        self.0.lock().unwrap().1 = Some(thread_cpu_time());
    }

    /// The poll begun last ends.
    fn leave(&self) {
        let mut clock = self.0.lock().unwrap();
        if let Some(since) = clock.1.take() {
            clock.0 += thread_cpu_time().saturating_sub(since);
        }
    }

    /// All the time used, the poll under way included (read from inside
    /// it, on its thread).
    pub(super) fn used(&self) -> Duration {
        let clock = self.0.lock().unwrap();
        clock.0
            + clock
                .1
                .map_or(Duration::ZERO, |since| thread_cpu_time().saturating_sub(since))
    }

    /// `call`, its polls measured on this clock.
    pub(super) fn meter<F: Future>(&self, call: F) -> Metered<F> {
        Metered {
            call: Box::pin(call),
            clock: self.clone(),
        }
    }
}

/// The processor time this thread has used.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write to.
    let done = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(done, 0, "every Linux thread has a CPU-time clock");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// A future whose polls are measured on a [`CpuClock`].
pub(super) struct Metered<F> {
    call: std::pin::Pin<Box<F>>,
    clock: CpuClock,
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        self.clock.enter();
        let polled = self.call.as_mut().poll(cx);
        self.clock.leave();
        polled
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
