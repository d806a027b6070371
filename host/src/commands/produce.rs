//! `produce`: write realistic widget requests into a folder, a bucket or a
//! queue, with the flags of the original `producer.jar` (`-mwr`, `-ird`,
//! `-mrt`). Files and objects are written through the same sinks that store
//! widgets, so a file appears whole (written aside, then renamed) and an
//! object carries `Content-Type: application/json`. Messages are sent ten
//! at a time (SendMessageBatch) unless paced; to a FIFO queue with the
//! widget id as the message group and the request id as the deduplication
//! id.

use super::Controls;
use super::flags::{self, AwsArgs, RequestPlace, RequestPlaceArgs};
use crate::aws::Aws;
use crate::aws::s3::BucketRole;
use crate::aws::sqs::{BATCH, Outgoing, Queue, send_batch};
use crate::error::Class;
use crate::producer::{Produced, Producer};
use crate::progress;
use crate::retry::Backoff;
use crate::sink::{Sink, dir::DirSink, s3::S3Sink};
use clap::Args;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

pub(crate) const EXAMPLES: &str = "\
Examples:
  widget-host produce --requests-dir requests/ -mwr 500 --seed 7
  widget-host produce -rb requests -mwr 1000 -ird 100 -mrt 30000
  widget-host produce -rq requests.fifo -mwr 2000 --seed 7";

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
    let mut target = match &place {
        RequestPlace::Dir(dir) => Target::Store(Arc::new(DirSink::open(dir)?)),
        RequestPlace::Bucket(bucket) => {
            let aws = Aws::connect(&args.aws.settings()).await;
            Target::Store(Arc::new(S3Sink::open(aws.s3, bucket, BucketRole::Request).await?))
        }
        RequestPlace::Queue(queue) => {
            let aws = Aws::connect(&args.aws.settings()).await;
            let queue = Queue::open(&aws.sqs, queue).await?;
            Target::Queue(QueueWriter {
                client: aws.sqs,
                queue,
                pending: Vec::new(),
            })
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
    let written = produce_into(&mut target, seed, start_ms, &pacing, &progress, &controls.stop).await;
    shown.finish().await;
    let written = written?;
    writeln!(
        out,
        "Wrote {written} requests to {} (seed {seed}).",
        target.describe()
    )?;
    Ok(())
}

/// Where produced requests go.
pub(super) enum Target {
    /// A folder or a bucket: a file or object per request, named by its key.
    Store(Arc<dyn Sink>),
    /// A queue: a message per request.
    Queue(QueueWriter),
}

impl Target {
    fn describe(&self) -> String {
        match self {
            Target::Store(sink) => sink.describe(),
            Target::Queue(writer) => format!("sqs:{}", writer.queue.name),
        }
    }

    /// Writes `request`; a queue may hold it for the next batch unless
    /// `now`.
    async fn write(&mut self, request: Produced, now: bool) -> anyhow::Result<()> {
        match self {
            Target::Store(sink) => Ok(sink.put(&request.key, &request.body).await?),
            Target::Queue(writer) => {
                let message = writer.message(request);
                // One message per FIFO group in a batch: a batch's failed
                // entries are sent again after the others have landed, and
                // a later message of the same group must not land first.
                if message.group.is_some() && writer.pending.iter().any(|m| m.group == message.group) {
                    writer.flush().await?;
                }
                writer.pending.push(message);
                if now || writer.pending.len() == BATCH {
                    writer.flush().await?;
                }
                Ok(())
            }
        }
    }

    /// Writes whatever is held.
    async fn flush(&mut self) -> anyhow::Result<()> {
        match self {
            Target::Store(_) => Ok(()),
            Target::Queue(writer) => writer.flush().await,
        }
    }
}

/// Sends requests to a queue, [`BATCH`] at a time.
pub(super) struct QueueWriter {
    client: aws_sdk_sqs::Client,
    queue: Queue,
    pending: Vec<Outgoing>,
}

/// Times a batch's entries that failed on the service's side are sent
/// again before `produce` gives up.
const SEND_ATTEMPTS: u32 = 5;

impl QueueWriter {
    fn message(&self, request: Produced) -> Outgoing {
        Outgoing {
            body: request.body,
            group: self.queue.fifo.then_some(request.widget_id),
            deduplication: self.queue.fifo.then_some(request.request_id),
        }
    }

    /// Sends the pending messages; entries that fail transiently are sent
    /// again with backoff.
    async fn flush(&mut self) -> anyhow::Result<()> {
        let backoff = Backoff::default();
        for attempt in 1..=SEND_ATTEMPTS {
            if self.pending.is_empty() {
                return Ok(());
            }
            let outcomes = send_batch(&self.client, &self.queue, &self.pending).await;
            let failed: Vec<(Outgoing, crate::error::StorageError)> = match outcomes {
                Ok(outcomes) => std::mem::take(&mut self.pending)
                    .into_iter()
                    .zip(outcomes)
                    .filter_map(|(message, outcome)| outcome.err().map(|e| (message, e)))
                    .collect(),
                Err(e) if e.class == Class::Transient => std::mem::take(&mut self.pending)
                    .into_iter()
                    .map(|m| (m, e.duplicate()))
                    .collect(),
                Err(e) => return Err(e.into()),
            };
            if let Some((_, e)) = failed.iter().find(|(_, e)| e.class != Class::Transient) {
                return Err(e.duplicate().into());
            }
            if let Some((_, e)) = failed.first()
                && attempt == SEND_ATTEMPTS
            {
                return Err(e.duplicate().into());
            }
            self.pending = failed.into_iter().map(|(message, _)| message).collect();
            if !self.pending.is_empty() {
                tokio::time::sleep(backoff.delay(attempt)).await;
            }
        }
        Ok(())
    }
}

/// Writes requests to `target` as `pacing` says, until done or `stop`;
/// returns how many.
pub(super) async fn produce_into(
    target: &mut Target,
    seed: u64,
    start_ms: u64,
    pacing: &Pacing,
    progress: &progress::Counts,
    stop: &CancellationToken,
) -> anyhow::Result<u64> {
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
        let mut target = Target::Store(Arc::new(DirSink::open(dir.path()).unwrap()));
        let written = produce_into(
            &mut target,
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
        let mut target = Target::Store(Arc::new(DirSink::open(dir.path()).unwrap()));
        let stop = CancellationToken::new();
        let cancel = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(450)).await;
            cancel.cancel();
        });
        let written = produce_into(
            &mut target,
            1,
            1_700_000_000_000,
            &pacing,
            &Default::default(),
            &stop,
        )
        .await
        .unwrap();
        assert_eq!(written, 5);
    }
}
