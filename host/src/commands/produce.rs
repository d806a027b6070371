//! `produce`: write realistic widget requests into a folder, a bucket or a
//! queue, with the flags of the original `producer.jar` (`-mwr`, `-ird`,
//! `-mrt`). A file appears whole (written aside, then renamed), an object
//! carries `Content-Type: application/json`, and messages go ten at a time
//! (SendMessageBatch) unless paced; see `source/` for each. Every write is
//! retried through the one retry loop: counted, and ended by a stop.

use super::Controls;
use super::flags::{AwsArgs, MaxRuntimeArgs, RequestPlaceArgs};
use crate::aws::Clients;
use crate::producer::write::{Pacing, now_ms, write_requests};
use crate::progress;
use crate::retry::Retry;
use crate::source::Use;
use clap::Args;
use std::io::Write;
use std::time::Duration;

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

    #[command(flatten)]
    max_runtime: MaxRuntimeArgs,

    /// How many requests to write. Also `-mwr`.
    #[arg(long = "max-widget-requests", value_name = "N", default_value_t = crate::producer::DEFAULT_REQUESTS)]
    max_widget_requests: u64,

    /// Seed of the generator: the same seed (and --start-ms) writes the same
    /// requests.
    #[arg(long)]
    seed: Option<u64>,

    /// The first request's time, in epoch milliseconds (default: now).
    #[arg(long, value_name = "MS")]
    start_ms: Option<u64>,
}

pub(super) async fn execute(
    args: &ProduceArgs,
    controls: Controls,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    // The flags, checked before anything is opened.
    let place = args.requests.place("place to write requests to")?;
    place.check(Use::Write)?;
    let pacing = Pacing {
        count: args.max_widget_requests,
        delay: Duration::from_millis(args.inter_request_delay),
        max_runtime: args.max_runtime.max_runtime(),
    };
    let seed = args.seed.unwrap_or_else(rand::random);
    let start_ms = args.start_ms.unwrap_or_else(now_ms);

    let retry = Retry::new(controls.stop.clone());
    let mut target = place
        .open_writer(&Clients::new(args.aws.settings()), retry.clone())
        .await?;
    let progress = progress::Counts::default();
    progress.known_at_least(pacing.count);
    let shown = progress::show("requests written", progress.clone());
    let written = write_requests(
        target.as_mut(),
        seed,
        start_ms,
        &pacing,
        &progress,
        &controls.stop,
    )
    .await;
    shown.finish().await;
    let written = written?;
    let retries = match retry.count.get() {
        0 => String::new(),
        n => format!(", {n} retries"),
    };
    writeln!(
        out,
        "Wrote {written} requests to {} (seed {seed}{retries}).",
        target.describe()
    )?;
    Ok(())
}
