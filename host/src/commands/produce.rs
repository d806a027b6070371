//! `produce`: write realistic widget requests into a folder or a bucket,
//! with the flags of the original `producer.jar` (`-mwr`, `-ird`, `-mrt`).
//! Requests are written through the same sinks that store widgets, so a
//! file appears whole (written aside, then renamed) and an object carries
//! `Content-Type: application/json`.

use super::Controls;
use super::flags::{self, AwsArgs, RequestPlace, RequestPlaceArgs};
use crate::aws::Aws;
use crate::aws::s3::BucketRole;
use crate::producer::Producer;
use crate::progress;
use crate::sink::{Sink, dir::DirSink, s3::S3Sink};
use clap::Args;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

pub(crate) const EXAMPLES: &str = "\
Examples:
  widget-host produce --requests-dir requests/ -mwr 500 --seed 7
  widget-host produce -rb requests -mwr 1000 -ird 100 -mrt 30000";

/// `produce`'s flags.
#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    requests: RequestPlaceArgs,

    #[command(flatten)]
    aws: AwsArgs,

    /// Wait this long between requests, in milliseconds. Also `-ird`.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    inter_request_delay: u64,

    /// Stop after this many milliseconds even if fewer requests were
    /// written (0: no limit). Also `-mrt`.
    #[arg(long = "max-runtime", value_name = "MS", default_value_t = 0)]
    max_runtime_ms: u64,

    /// How many requests to write. Also `-mwr`.
    #[arg(long = "max-widget-requests", value_name = "N", default_value_t = 1000)]
    max_widget_requests: u64,

    /// Seed of the generator: the same seed (and --start-ms) writes the same
    /// requests.
    #[arg(long)]
    seed: Option<u64>,

    /// The first request's time, in epoch milliseconds (default: now).
    #[arg(long, value_name = "MS")]
    start_ms: Option<u64>,
}

/// How many requests, how fast, for how long.
pub(super) struct Pacing {
    /// How many requests to write.
    pub(super) count: u64,
    /// The wait between two requests.
    pub(super) delay: Duration,
    /// Stop after this long, even if fewer were written.
    pub(super) max_runtime: Option<Duration>,
}

pub(super) async fn execute(
    args: &ProduceArgs,
    controls: Controls,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let place = args.requests.place("place to write requests to")?;
    let target: Arc<dyn Sink> = match &place {
        RequestPlace::Dir(dir) => Arc::new(DirSink::open(dir)?),
        RequestPlace::Bucket(bucket) => {
            let aws = Aws::connect(&args.aws.settings()).await;
            Arc::new(S3Sink::open(aws.s3, bucket, BucketRole::Request).await?)
        }
    };
    let seed = args.seed.unwrap_or_else(rand::random);
    let pacing = Pacing {
        count: args.max_widget_requests,
        delay: Duration::from_millis(args.inter_request_delay),
        max_runtime: flags::max_runtime(args.max_runtime_ms),
    };
    let start_ms = args.start_ms.unwrap_or_else(now_ms);
    let progress = progress::Counts::default();
    progress.known_at_least(pacing.count);
    let shown = progress::show("requests written", progress.clone());
    let written = produce_into(
        target.as_ref(),
        seed,
        start_ms,
        &pacing,
        &progress,
        &controls.stop,
    )
    .await;
    shown.finish().await;
    let written = written?;
    writeln!(
        out,
        "Wrote {written} requests to {} (seed {seed}).",
        target.describe()
    )?;
    Ok(())
}

/// Writes requests to `target` as `pacing` says, until done or `stop`;
/// returns how many.
pub(super) async fn produce_into(
    target: &dyn Sink,
    seed: u64,
    start_ms: u64,
    pacing: &Pacing,
    progress: &progress::Counts,
    stop: &CancellationToken,
) -> anyhow::Result<u64> {
    // Tokio's clock, so that tests can run it paused.
    let started = tokio::time::Instant::now();
    let mut producer = Producer::new(seed, start_ms);
    for written in 0..pacing.count {
        if written > 0 && !pacing.delay.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(pacing.delay) => {}
                _ = stop.cancelled() => return Ok(written),
            }
        }
        let out_of_time = pacing.max_runtime.is_some_and(|max| started.elapsed() >= max);
        if out_of_time || stop.is_cancelled() {
            return Ok(written);
        }
        let request = producer.next_request();
        target.put(&request.key, &request.body).await?;
        progress.add_done(1);
    }
    Ok(pacing.count)
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn produce_paces_requests_and_stops_at_the_maximum_run_time() {
        let dir = tempfile::tempdir().unwrap();
        let pacing = Pacing {
            count: 1000,
            delay: Duration::from_millis(100),
            max_runtime: Some(Duration::from_secs(1)),
        };
        let target = DirSink::open(dir.path()).unwrap();
        let written = produce_into(
            &target,
            1,
            1_700_000_000_000,
            &pacing,
            &progress::Counts::default(),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(written, 10);
        let files = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_file())
            .count();
        assert_eq!(files, 10);
    }

    #[tokio::test(start_paused = true)]
    async fn produce_stops_when_told() {
        let dir = tempfile::tempdir().unwrap();
        let pacing = Pacing {
            count: 1000,
            delay: Duration::from_millis(100),
            max_runtime: None,
        };
        let target = DirSink::open(dir.path()).unwrap();
        let stop = CancellationToken::new();
        let cancel = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(450)).await;
            cancel.cancel();
        });
        let written = produce_into(&target, 1, 1_700_000_000_000, &pacing, &Default::default(), &stop)
            .await
            .unwrap();
        assert_eq!(written, 5);
    }
}
