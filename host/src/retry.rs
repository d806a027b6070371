//! Retrying transient failures with exponential backoff and full jitter.

use crate::error::StorageError;
use crate::shutdown::Shutdown;
use rand::Rng;
use std::time::Duration;

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
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.base.saturating_mul(1 << attempt.min(20)).min(self.cap);
        rand::rng().random_range(Duration::ZERO..=ceiling)
    }

    /// Waits before retry `attempt`; `false` if shutdown came first.
    pub async fn wait(&self, attempt: u32, shutdown: &Shutdown) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(self.delay(attempt)) => true,
            _ = shutdown.wait() => false,
        }
    }
}

/// Runs `call` until it succeeds or fails permanently, waiting between
/// transient failures; `None` if shutdown interrupted the waiting.
pub async fn until_done<T, F, Fut>(
    backoff: &Backoff,
    shutdown: &Shutdown,
    mut call: F,
) -> Option<Result<T, StorageError>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StorageError>>,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, attempt, "Transient failure; retrying.");
                if !backoff.wait(attempt, shutdown).await {
                    return None;
                }
                attempt += 1;
            }
            done => return Some(done),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    async fn retries_transient_failures_until_success() {
        let mut calls = 0;
        let result = until_done(&Backoff::default(), &Shutdown::default(), || {
            calls += 1;
            let n = calls;
            async move {
                if n < 4 {
                    Err(StorageError::new("get x", true, "throttled"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(result.unwrap().unwrap(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failures_return_at_once_and_shutdown_stops_waiting() {
        let permanent = until_done(&Backoff::default(), &Shutdown::default(), || async {
            Err::<(), _>(StorageError::new("get x", false, "denied"))
        })
        .await;
        assert!(!permanent.unwrap().unwrap_err().is_transient());

        let shutdown = Shutdown::default();
        shutdown.trigger();
        let interrupted = until_done(&Backoff::default(), &shutdown, || async {
            Err::<(), _>(StorageError::new("get x", true, "down"))
        })
        .await;
        assert!(interrupted.is_none());
    }
}
