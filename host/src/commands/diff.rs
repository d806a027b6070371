//! `diff`: run two handlers on the same requests against the current store,
//! read only, and say where their verdicts or plans differ: the step before
//! swapping a handler into a running host (`--watch`, SIGHUP).
//!
//! Each request is judged against the store as it is now, on its own: what
//! the requests before it would have changed is not applied (nothing is
//! written, and nothing is removed from the source).

use super::flags::{AwsArgs, DestinationArgs, LimitArgs, RequestPlaceArgs, RequestSizeArgs};
use crate::aws::Clients;
use crate::contract::Context;
use crate::handler::{self, Handler};
use crate::source::{Fetched, Place, Use};
use crate::verdicts::{Comparison, Record, Verdict, compare};
use anyhow::Context as _;
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};

pub(crate) const EXAMPLES: &str = "\
Examples:
  widget-host diff builtin my-handler.wasm requests/ --widgets-dir widgets/
  widget-host diff old.wasm new.wasm -rb requests -dwt widgets
  widget-host diff --records candidate-differences.jsonl";

/// `diff`'s flags.
#[derive(Debug, Clone, Args)]
pub struct DiffArgs {
    /// The handler in use: a component file, or `builtin`.
    #[arg(value_name = "OLD.wasm|builtin", required_unless_present = "records")]
    old: Option<handler::Choice>,

    /// The handler that would replace it.
    #[arg(value_name = "NEW.wasm|builtin", required_unless_present = "records")]
    new: Option<handler::Choice>,

    /// Print the differences a candidate in shadow recorded (`run
    /// --candidate-records FILE`) instead of comparing two handlers.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["old", "new", "folder"])]
    records: Option<PathBuf>,

    /// A folder of requests, read and left in place (or give
    /// --request-bucket).
    #[arg(value_name = "REQUESTS_DIR")]
    folder: Option<PathBuf>,

    #[command(flatten)]
    requests: RequestPlaceArgs,

    #[command(flatten)]
    request_size: RequestSizeArgs,

    #[command(flatten)]
    destination: DestinationArgs,

    #[command(flatten)]
    aws: AwsArgs,

    #[command(flatten)]
    limits: LimitArgs,

    /// Also name the requests both handlers treat alike.
    /// Set by the global `-v` (`Cli::take_command`).
    #[arg(skip)]
    pub(crate) verbose: bool,
}

/// The counts of the summary.
#[derive(Default)]
struct Tally {
    requests: u64,
    same: u64,
    newly_rejected: u64,
    newly_accepted: u64,
    plans_differ: u64,
}

impl Tally {
    fn differ(&self) -> u64 {
        self.newly_rejected + self.newly_accepted + self.plans_differ
    }
}

pub(super) async fn execute(args: &DiffArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if let Some(records) = &args.records {
        return print_records(records, out);
    }
    // The flags, checked before anything is opened.
    let place = args
        .requests
        .place_or("requests", args.folder.clone().map(Place::Dir))?;
    place.check(Use::Read)?;
    let sink_spec = args.destination.sink()?;
    let (old, new) = (
        args.limits.spec(args.old.clone().unwrap_or_default())?,
        args.limits.spec(args.new.clone().unwrap_or_default())?,
    );
    let max_request_bytes = args.request_size.max_request_bytes;

    let old = Handler::load(&old).context("cannot load the old handler")?;
    let new = Handler::load(&new).context("cannot load the new handler")?;
    let clients = Clients::new(args.aws.settings());
    let source = place.open_to_read(&clients).await?;
    let sink = sink_spec.open_to_read(&clients).await?;

    let mut tally = Tally::default();
    loop {
        let page = source.list().await?;
        for listed in &page.requests {
            let body = match source.read(&listed.key, max_request_bytes).await? {
                Fetched::Request(body, _) => body,
                Fetched::Gone => continue,
                Fetched::TooLarge(size, _) => {
                    writeln!(out, "{}: {size} bytes, too large to compare; skipped", listed.key)?;
                    continue;
                }
            };
            tally.requests += 1;
            let context = Context {
                key: listed.key.clone(),
                destination: sink.destination(),
            };
            let before = Verdict::of(old.handle(&body, &context, sink.clone()).await)?;
            let after = Verdict::of(new.handle(&body, &context, sink.clone()).await)?;
            report(&listed.key, compare(before, after), args.verbose, &mut tally, out)?;
        }
        if page.reached_end {
            break;
        }
    }
    writeln!(
        out,
        "{} requests: {} same, {} differ ({} newly rejected, {} newly accepted, {} with other plans)",
        tally.requests,
        tally.same,
        tally.differ(),
        tally.newly_rejected,
        tally.newly_accepted,
        tally.plans_differ
    )?;
    match tally.differ() {
        0 => Ok(()),
        n => anyhow::bail!("the handlers differ on {n} of {} requests", tally.requests),
    }
}

/// A handler's answer as a verdict; a store that cannot be read stops the
/// comparison.
fn report(
    key: &str,
    comparison: Comparison,
    verbose: bool,
    tally: &mut Tally,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    match &comparison {
        Comparison::Same => tally.same += 1,
        Comparison::NewlyRejected(_) => tally.newly_rejected += 1,
        Comparison::NewlyAccepted(_) => tally.newly_accepted += 1,
        Comparison::PlansDiffer(_) => tally.plans_differ += 1,
    }
    match Record::of(key, &comparison) {
        Some(record) => record.print(out),
        None if verbose => writeln!(out, "{}: same", crate::logging::escape(key)),
        None => Ok(()),
    }
}

/// `diff --records FILE`: prints the differences a candidate in shadow
/// recorded (`run --candidate-records FILE`), as `diff` prints its own.
fn print_records(file: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    for (number, line) in text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
    {
        let record: Record = serde_json::from_str(line)
            .with_context(|| format!("{} line {}: not a record", file.display(), number + 1))?;
        record.print(out)?;
        *counts.entry(record.difference).or_default() += 1;
    }
    let total: u64 = counts.values().sum();
    let by_kind: Vec<String> = counts.iter().map(|(kind, n)| format!("{n} {kind}")).collect();
    writeln!(
        out,
        "{total} recorded differences{}",
        if by_kind.is_empty() {
            String::new()
        } else {
            format!(" ({})", by_kind.join(", "))
        }
    )?;
    match total {
        0 => Ok(()),
        n => anyhow::bail!("the candidate differed on {n} requests"),
    }
}
