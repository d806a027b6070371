//! Generated requests written into a place (`produce`, `demo`), as many
//! and as fast as asked, until done, the maximum run time, or a stop.

use super::Producer;
use crate::error::StorageError;
use crate::progress;
use crate::source::Writer;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// How many requests, how fast, for how long.
pub(crate) struct Pacing {
    /// How many requests to write.
    pub(crate) count: u64,
    /// The wait between two requests.
    pub(crate) delay: Duration,
    /// Stop after this long, even if fewer were written.
    pub(crate) max_runtime: Option<Duration>,
}

/// Writes requests drawn from `seed` (the first at `start_ms`) to `target`
/// as `pacing` says, until done or `stop`; returns how many.
pub(crate) async fn write_requests(
    target: &mut dyn Writer,
    seed: u64,
    start_ms: u64,
    pacing: &Pacing,
    progress: &progress::Counts,
    stop: &CancellationToken,
) -> Result<u64, StorageError> {
    // Tokio's clock, so that tests can run it paused.
    let started = tokio::time::Instant::now();
    let mut producer = Producer::new(seed, start_ms);
    // Paced requests go out one by one, each when its time comes.
    let paced = !pacing.delay.is_zero();
    let mut written = 0;
    while written < pacing.count {
        if written > 0 && paced {
            tokio::select! {
                _ = tokio::time::sleep(pacing.delay) => {}
                _ = stop.cancelled() => break,
            }
        }
        let out_of_time = pacing.max_runtime.is_some_and(|max| started.elapsed() >= max);
        if out_of_time || stop.is_cancelled() {
            break;
        }
        target.write(producer.next_request(), paced).await?;
        written += 1;
        progress.add_done(1);
    }
    target.flush().await?;
    Ok(written)
}

/// Now, in epoch milliseconds: where generated keys start by default.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::Clients;
    use crate::retry::Retry;
    use crate::source::Place;

    async fn folder_writer(dir: &std::path::Path) -> Box<dyn Writer> {
        let place = Place::Dir(dir.to_owned());
        place
            .open_writer(
                &Clients::new(Default::default()),
                Retry::new(CancellationToken::new()),
            )
            .await
            .unwrap()
    }

    fn files(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_file())
            .count()
    }

    #[tokio::test(start_paused = true)]
    async fn produce_paces_requests_and_stops_at_the_maximum_run_time() {
        let dir = tempfile::tempdir().unwrap();
        let pacing = Pacing {
            count: 1000,
            delay: Duration::from_millis(100),
            max_runtime: Some(Duration::from_secs(1)),
        };
        let mut target = folder_writer(dir.path()).await;
        let written = write_requests(
            target.as_mut(),
            1,
            1_700_000_000_000,
            &pacing,
            &progress::Counts::default(),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(written, 10);
        assert_eq!(files(dir.path()), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn produce_stops_when_told() {
        let dir = tempfile::tempdir().unwrap();
        let pacing = Pacing {
            count: 1000,
            delay: Duration::from_millis(100),
            max_runtime: None,
        };
        let mut target = folder_writer(dir.path()).await;
        let stop = CancellationToken::new();
        let cancel = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(450)).await;
            cancel.cancel();
        });
        let written = write_requests(
            target.as_mut(),
            1,
            1_700_000_000_000,
            &pacing,
            &Default::default(),
            &stop,
        )
        .await
        .unwrap();
        assert_eq!(written, 5);
        assert_eq!(files(dir.path()), 5);
    }
}
