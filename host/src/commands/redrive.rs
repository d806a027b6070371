//! `redrive`: move dead letters back into the source under their keys,
//! without their reasons, so that the next run processes them in order;
//! with `--handler`, only those the new handler would accept.
//!
//! A folder's dead letter moves back in one rename that never overwrites:
//! it is in one place at every moment. A bucket's is copied back on the
//! server and then deleted; see [`S3Source::redrive`] for a stop between
//! the two.

use super::UsageError;
use super::flags::{AwsArgs, LimitArgs, RequestPlace, RequestPlaceArgs, RequestSizeArgs};
use super::run::{DestinationArgs, open_sink_to_read};
use crate::aws::Aws;
use crate::contract::{Context, Destination};
use crate::handler::{self, CallError, Handler};
use crate::sink::Sink;
use crate::sink::memory::MemorySink;
use crate::source::dir::DirSource;
use crate::source::s3::S3Source;
use crate::source::{Fetched, Redriven, Version};
use clap::Args;
use std::io::Write;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub(crate) const EXAMPLES: &str = "\
Examples:
  widget-host redrive --requests-dir requests/ --dry-run
  widget-host redrive --requests-dir requests/ --handler fixed.wasm --widgets-dir widgets/
  widget-host redrive -rb requests --handler fixed.wasm -dwt widgets";

/// `redrive`'s flags.
#[derive(Debug, Clone, Args)]
pub struct RedriveArgs {
    #[command(flatten)]
    requests: RequestPlaceArgs,

    /// Move back only the dead letters this handler accepts (a component
    /// file, or `builtin`), judged against the destination given (read
    /// only), or an empty store if none is.
    #[arg(long, value_name = "FILE.wasm|builtin")]
    handler: Option<handler::Choice>,

    /// Say what would be moved back, and move nothing.
    #[arg(long)]
    dry_run: bool,

    #[command(flatten)]
    destination: DestinationArgs,

    #[command(flatten)]
    aws: AwsArgs,

    #[command(flatten)]
    limits: LimitArgs,

    #[command(flatten)]
    request_size: RequestSizeArgs,
}

/// The place the dead letters are in.
enum Place {
    Dir(DirSource),
    Bucket(S3Source),
}

pub(super) async fn execute(
    args: &RedriveArgs,
    stop: &CancellationToken,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let place = args.requests.place("request source")?;
    let destination = args.destination.sink_if_given()?;
    let aws = match place.uses_aws() || destination.as_ref().is_some_and(|d| d.uses_aws()) {
        true => Some(Aws::connect(&args.aws.settings()).await),
        false => None,
    };
    let place = match place {
        // A dry run writes nothing; a redrive moves dead letters with calls
        // of its own, and needs no probe of how the server deletes.
        RequestPlace::Dir(dir) if args.dry_run => Place::Dir(DirSource::open_read_only(dir)?),
        RequestPlace::Dir(dir) => Place::Dir(DirSource::open(dir)?),
        RequestPlace::Bucket(bucket) => {
            let aws = aws.as_ref().expect("set up for a bucket");
            Place::Bucket(S3Source::open_read_only(aws.s3.clone(), &bucket).await?)
        }
        RequestPlace::Queue(_) => {
            return Err(UsageError(
                "redrive moves dead letters back into a folder or a bucket; a queue's dead-letter queue is \
                 redriven by SQS itself (StartMessageMoveTask)"
                    .into(),
            )
            .into());
        }
    };
    let judge = match &args.handler {
        Some(choice) => {
            let handler = Handler::load(&args.limits.spec(choice.clone())?)?;
            let store: Arc<dyn Sink> = match &destination {
                Some(spec) => open_sink_to_read(spec, aws.as_ref()).await?,
                None => Arc::new(MemorySink::new(Destination::ObjectStore)),
            };
            Some((handler, store))
        }
        None => None,
    };

    let letters: Vec<(String, Version)> = match &place {
        Place::Dir(source) => source
            .dead_letters()?
            .into_iter()
            .map(|key| (key, Version::default()))
            .collect(),
        Place::Bucket(source) => source.dead_letters().await?,
    };
    let (mut moved, mut left) = (0, 0);
    for (key, version) in &letters {
        if stop.is_cancelled() {
            writeln!(out, "Stopped.")?;
            break;
        }
        let shown = crate::logging::escape(key);
        if let Some((handler, store)) = &judge {
            let limit = args.request_size.max_request_bytes;
            let fetched = match &place {
                Place::Dir(source) => source.read_dead_letter(key, limit)?,
                Place::Bucket(source) => source.read_dead_letter(key, limit).await?,
            };
            let body = match fetched {
                Fetched::Request(body, _) => body,
                Fetched::Gone => continue,
                Fetched::TooLarge(size, _) => {
                    // Not read, as `run` would not read it: it stays.
                    left += 1;
                    writeln!(
                        out,
                        "{shown}: left: {size} bytes, over the limit of {limit} (--max-request-bytes); not read"
                    )?;
                    continue;
                }
            };
            let context = Context {
                key: key.clone(),
                destination: store.destination(),
            };
            let refused = match handler.handle(&body, &context, store.clone()).await {
                Ok(handled) => handled.verdict.err().map(|reason| format!("rejected: {reason}")),
                Err(CallError::Handler(reason)) => Some(format!("handler failed: {reason}")),
                Err(CallError::Store(e)) => return Err(e.into()),
            };
            if let Some(reason) = refused {
                left += 1;
                writeln!(
                    out,
                    "{shown}: left: the handler still refuses it ({})",
                    crate::logging::escape(&reason)
                )?;
                continue;
            }
        }
        if args.dry_run {
            moved += 1;
            writeln!(out, "{shown}: would move back")?;
            continue;
        }
        let redriven = match &place {
            Place::Dir(source) => source.redrive(key)?,
            Place::Bucket(source) => source.redrive(key, version).await?,
        };
        match redriven {
            Redriven::Moved => {
                moved += 1;
                writeln!(out, "{shown}: moved back")?;
            }
            Redriven::Finished => {
                moved += 1;
                writeln!(
                    out,
                    "{shown}: already back (an interrupted redrive); dead letter removed"
                )?;
            }
            Redriven::Occupied => {
                left += 1;
                writeln!(out, "{shown}: left: a request {shown} is waiting in the source")?;
            }
        }
    }
    let verb = if args.dry_run { "Would move" } else { "Moved" };
    writeln!(
        out,
        "{verb} {moved} of {} dead letters back ({left} left).",
        letters.len()
    )?;
    Ok(())
}
