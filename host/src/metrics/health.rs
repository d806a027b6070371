//! Whether the host is alive and ready, for `/healthz` and `/readyz`
//! (Kubernetes probes, ECS and load balancer health checks). Alive: the
//! process answers. Ready: the handler is loaded, the source and the store
//! are open, the run is not stopping, and no call to them has been failing
//! for [`FAILING_LONG`] (a place down: requests wait for it, and a
//! balancer or scaler should know).

use crate::retry::{FAILING_LONG, RetryCount};
use std::sync::atomic::{AtomicU8, Ordering};

/// Where a run is, from start to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Stage {
    /// Loading and checking the handler.
    Loading = 0,
    /// Opening the source and the store (retried while they are down).
    Opening = 1,
    /// Taking requests.
    Running = 2,
    /// Stopping: finishing the requests in flight, taking no more.
    Stopping = 3,
}

impl Stage {
    fn from_u8(value: u8) -> Stage {
        match value {
            0 => Stage::Loading,
            1 => Stage::Opening,
            2 => Stage::Running,
            _ => Stage::Stopping,
        }
    }
}

/// A run's stage, and the retries that tell whether its places answer.
#[derive(Debug, Default)]
pub(crate) struct Health {
    stage: AtomicU8,
}

impl Health {
    /// The run has reached `stage`. A run never goes back: once stopping,
    /// it stays so.
    pub(crate) fn reached(&self, stage: Stage) {
        self.stage.fetch_max(stage as u8, Ordering::Relaxed);
    }

    pub(crate) fn stage(&self) -> Stage {
        Stage::from_u8(self.stage.load(Ordering::Relaxed))
    }

    /// `Ok` when ready to take requests; otherwise why not, for the probe's
    /// answer.
    pub(crate) fn readiness(&self, retries: &RetryCount) -> Result<(), String> {
        match self.stage() {
            Stage::Loading => Err("loading the handler".into()),
            Stage::Opening => Err("opening the request source and the widget store".into()),
            Stage::Stopping => Err("stopping: finishing the requests in flight".into()),
            Stage::Running => match retries.failing_long() {
                0 => Ok(()),
                calls => Err(format!(
                    "{calls} calls to the source or the store have failed for {} s or more",
                    FAILING_LONG.as_secs()
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_while_running_and_never_again_once_stopping() {
        let health = Health::default();
        let retries = RetryCount::default();
        assert!(health.readiness(&retries).unwrap_err().contains("loading"));
        health.reached(Stage::Opening);
        assert!(health.readiness(&retries).unwrap_err().contains("opening"));
        health.reached(Stage::Running);
        assert_eq!(health.readiness(&retries), Ok(()));
        health.reached(Stage::Stopping);
        health.reached(Stage::Running);
        assert!(health.readiness(&retries).unwrap_err().contains("stopping"));
    }
}
