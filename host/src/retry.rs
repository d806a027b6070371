//! The one retry loop: a call that fails transiently is made again after an
//! exponential backoff with full jitter, until it succeeds, fails
//! permanently, or the run is stopped. Every retry is counted for the
//! summary, whichever part of the host made it.

use rand::Rng;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// An error that knows whether trying again may help.
pub(crate) trait Transient: std::fmt::Display {
    /// Whether the same call may succeed later.
    fn is_transient(&self) -> bool;

    /// Whether the service asked for fewer requests.
    fn is_throttling(&self) -> bool {
        false
    }
}

impl Transient for crate::error::StorageError {
    fn is_transient(&self) -> bool {
        crate::error::StorageError::is_transient(self)
    }

    fn is_throttling(&self) -> bool {
        self.throttling
    }
}

/// How a retried call ended.
#[derive(Debug)]
pub(crate) enum Attempt<T, E> {
    /// It succeeded.
    Done(T),
    /// It failed in a way that retrying will not mend.
    Failed(E),
    /// The run was stopped while it waited to try again.
    Stopped,
}

/// The backoff schedule: `base * 2^attempt`, capped, each wait drawn
/// uniformly below it so that many workers do not retry in step.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The first wait's ceiling.
    pub base: Duration,
    /// No wait is longer than this.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(50),
            cap: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The wait before retry number `attempt` (0-based).
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.base.saturating_mul(1 << attempt.min(20)).min(self.cap);
        JITTER.with_borrow_mut(|seeded| match seeded {
            Some(rng) => rng.random_range(Duration::ZERO..=ceiling),
            None => rand::rng().random_range(Duration::ZERO..=ceiling),
        })
    }
}

thread_local! {
    /// A seeded source of jitter for this thread, so that a simulation
    /// replays exactly; the process's random generator if none.
    static JITTER: std::cell::RefCell<Option<rand_chacha::ChaCha8Rng>> = const { std::cell::RefCell::new(None) };
}

/// Draws this thread's backoff jitter from `seed` from now on.
#[cfg(test)]
pub(crate) fn seed_jitter(seed: u64) {
    use rand::SeedableRng;
    JITTER.set(Some(rand_chacha::ChaCha8Rng::seed_from_u64(seed)));
}

/// A call failing for this long without a success is a place down, not a
/// blip: the host is not ready while one is (`/readyz`).
pub(crate) const FAILING_LONG: Duration = Duration::from_secs(30);

/// Retries made so far, shared by every retry loop of a run: all of them,
/// those after throttling, and the calls failing now for
/// [`FAILING_LONG`] or more.
#[derive(Debug, Clone, Default)]
pub(crate) struct RetryCount(Arc<(AtomicU64, AtomicU64, AtomicU64)>);

impl RetryCount {
    pub(crate) fn get(&self) -> u64 {
        self.0.0.load(Ordering::Relaxed)
    }

    /// The retries after the service asked to slow down.
    pub(crate) fn throttling(&self) -> u64 {
        self.0.1.load(Ordering::Relaxed)
    }

    /// Calls that have failed for [`FAILING_LONG`] or more, and are being
    /// tried again.
    pub(crate) fn failing_long(&self) -> u64 {
        self.0.2.load(Ordering::Relaxed)
    }

    fn add_one(&self, throttling: bool) {
        self.0.0.fetch_add(1, Ordering::Relaxed);
        if throttling {
            self.0.1.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One call's failures in a row: counted among the calls failing long once
/// they have lasted [`FAILING_LONG`], until the call ends (or is dropped).
struct Failing<'a> {
    count: &'a RetryCount,
    since: Option<tokio::time::Instant>,
    long: bool,
}

impl Failing<'_> {
    fn failed(&mut self) {
        let since = *self.since.get_or_insert_with(tokio::time::Instant::now);
        if !self.long && since.elapsed() >= FAILING_LONG {
            self.long = true;
            self.count.0.2.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Failing<'_> {
    fn drop(&mut self) {
        if self.long {
            self.count.0.2.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Something a call holds that its retry loop lets go of while it waits
/// (a slot of the run's concurrency), and takes back before trying again.
pub(crate) trait Hold {
    /// Lets go, for the wait.
    fn release(&mut self);
    /// Takes it back, for the next attempt.
    fn reacquire(&mut self) -> impl Future<Output = ()>;
    /// The call was throttled: the service wants fewer calls.
    fn throttled(&mut self) {}
    /// The call failed and will be made again.
    fn failed(&mut self) {}
    /// The call succeeded.
    fn succeeded(&mut self) {}
}

impl Hold for () {
    fn release(&mut self) {}
    async fn reacquire(&mut self) {}
}

/// How a run retries: the schedule, the stop signal that ends the waiting,
/// and the count every retry adds to.
#[derive(Debug, Clone)]
pub(crate) struct Retry {
    pub(crate) backoff: Backoff,
    pub(crate) stop: CancellationToken,
    pub(crate) count: RetryCount,
}

impl Retry {
    /// The default schedule, ended by `stop`, with a count of its own.
    pub(crate) fn new(stop: CancellationToken) -> Retry {
        Retry {
            backoff: Backoff::default(),
            stop,
            count: RetryCount::default(),
        }
    }

    /// Makes `call` until it succeeds or fails permanently, waiting between
    /// transient failures.
    pub(crate) async fn run<T, E, F, Fut>(&self, call: F) -> Attempt<T, E>
    where
        E: Transient,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run_holding(&mut (), call).await
    }

    /// [`Retry::run`], letting go of `held` while waiting to try again.
    pub(crate) async fn run_holding<T, E, F, Fut>(&self, held: &mut impl Hold, mut call: F) -> Attempt<T, E>
    where
        E: Transient,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempt = 0;
        let mut failing = Failing {
            count: &self.count,
            since: None,
            long: false,
        };
        loop {
            let result = call().await;
            if attempt > 0 {
                // A call that took more than one attempt says how many in
                // its trace span, if it has one.
                tracing::Span::current().record("attempts", i64::from(attempt) + 1);
            }
            match result {
                Ok(value) => {
                    held.succeeded();
                    return Attempt::Done(value);
                }
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, attempt, "Transient failure; retrying.");
                    self.count.add_one(e.is_throttling());
                    failing.failed();
                    if e.is_throttling() {
                        held.throttled();
                    }
                    held.failed();
                    held.release();
                    tokio::select! {
                        biased;
                        _ = self.stop.cancelled() => return Attempt::Stopped,
                        _ = async {
                            tokio::time::sleep(self.backoff.delay(attempt)).await;
                            held.reacquire().await;
                        } => {}
                    }
                    attempt = attempt.saturating_add(1);
                }
                Err(e) => return Attempt::Failed(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Class, StorageError};

    fn retry() -> Retry {
        Retry::new(CancellationToken::new())
    }

    #[test]
    fn delays_grow_and_are_capped() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        for _ in 0..100 {
            assert!(b.delay(0) <= Duration::from_millis(100));
            assert!(b.delay(3) <= Duration::from_millis(800));
            assert!(b.delay(30) <= Duration::from_secs(1));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_failing_for_long_is_counted_until_it_succeeds() {
        let retry = retry();
        let count = retry.count.clone();
        let started = tokio::time::Instant::now();
        let call = retry.run(|| {
            let failing = started.elapsed() < Duration::from_secs(45);
            async move {
                match failing {
                    true => Err(StorageError::new("list x", Class::Transient, "server down")),
                    false => Ok(()),
                }
            }
        });
        let watch = async {
            tokio::time::sleep(Duration::from_secs(20)).await;
            let early = count.failing_long();
            tokio::time::sleep(Duration::from_secs(20)).await;
            (early, count.failing_long())
        };
        let (done, (at_20_s, at_40_s)) = tokio::join!(call, watch);
        assert!(matches!(done, Attempt::Done(())));
        assert_eq!(
            (at_20_s, at_40_s),
            (0, 1),
            "a blip is not counted; 30 s of failures are"
        );
        assert_eq!(count.failing_long(), 0, "not once it succeeded");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_failures_until_success_and_counts_each_retry() {
        let retry = retry();
        let mut calls = 0;
        let result = retry
            .run(|| {
                calls += 1;
                let n = calls;
                async move {
                    if n < 4 {
                        Err(StorageError::new("get x", Class::Transient, "throttled"))
                    } else {
                        Ok(n)
                    }
                }
            })
            .await;
        assert!(matches!(result, Attempt::Done(4)));
        assert_eq!(retry.count.get(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failures_return_at_once_and_a_stop_ends_the_waiting() {
        let retry = retry();
        let permanent = retry
            .run(|| async { Err::<(), _>(StorageError::fatal("get x", "denied")) })
            .await;
        assert!(matches!(permanent, Attempt::Failed(e) if !e.is_transient()));
        assert_eq!(retry.count.get(), 0);

        retry.stop.cancel();
        let stopped = retry
            .run(|| async { Err::<(), _>(StorageError::new("get x", Class::Transient, "down")) })
            .await;
        assert!(matches!(stopped, Attempt::Stopped));
        assert_eq!(retry.count.get(), 1);
    }
}
