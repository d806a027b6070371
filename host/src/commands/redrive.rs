//! `redrive`: move dead letters back into the source under their keys,
//! without their reasons, so that the next run processes them in order;
//! with `--handler`, only those the new handler would accept.
//!
//! A folder's dead letter moves back in one rename that never overwrites:
//! it is in one place at every moment. A bucket's is copied back on the
//! server and then deleted; see `source/s3/dead_letters.rs` for a stop between the two.

use super::flags::{AwsArgs, DestinationArgs, LimitArgs, RequestPlaceArgs, RequestSizeArgs};
use crate::aws::Clients;
use crate::contract::{Context, Destination};
use crate::handler::{self, CallError, Handler};
use crate::sink::Sink;
use crate::sink::memory::MemorySink;
use crate::source::{DeadLetter, DeadLetters, Fetched, Redriven, Use};
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

pub(super) async fn execute(
    args: &RedriveArgs,
    stop: &CancellationToken,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    // The flags, checked before anything is opened.
    let place = args.requests.place("request source")?;
    place.check(Use::Redrive)?;
    let destination = args.destination.sink_if_given()?;
    let handler = match &args.handler {
        Some(choice) => Some(args.limits.spec(choice.clone())?),
        None => None,
    };

    let clients = Clients::new(args.aws.settings());
    let dead_letters = place.open_dead_letters(&clients, args.dry_run).await?;
    let judge = match handler {
        Some(spec) => {
            let handler = Handler::load(&spec)?;
            let store: Arc<dyn Sink> = match &destination {
                Some(spec) => spec.open_to_read(&clients).await?,
                None => Arc::new(MemorySink::new(Destination::ObjectStore)),
            };
            Some((handler, store))
        }
        None => None,
    };

    // Whatever happens, what the listing holds is let go of at the end.
    let moved = match dead_letters.dead_letters().await {
        Ok(letters) => {
            let judge = judge.as_ref().map(|(handler, store)| (handler, store.clone()));
            move_back(&letters, dead_letters.as_ref(), judge, args, stop, out)
                .await
                .map(|counts| (counts, letters.len()))
        }
        Err(e) => Err(e.into()),
    };
    dead_letters.finish().await;
    let ((moved, left), listed) = moved?;
    let verb = if args.dry_run { "Would move" } else { "Moved" };
    writeln!(out, "{verb} {moved} of {listed} dead letters back ({left} left).")?;
    Ok(())
}

/// Moves `letters` back (only those `judge` accepts, if given), or says it
/// would; returns how many were moved and how many left.
async fn move_back(
    letters: &[DeadLetter],
    dead_letters: &dyn DeadLetters,
    judge: Option<(&Handler, Arc<dyn Sink>)>,
    args: &RedriveArgs,
    stop: &CancellationToken,
    out: &mut dyn Write,
) -> anyhow::Result<(u64, u64)> {
    let limit = args.request_size.max_request_bytes;
    let (mut moved, mut left) = (0, 0);
    for letter in letters {
        let key = &letter.key;
        if stop.is_cancelled() {
            writeln!(out, "Stopped.")?;
            break;
        }
        let shown = crate::logging::escape(key);
        if let Some((handler, store)) = &judge {
            let body = match dead_letters.read_dead_letter(letter, limit).await? {
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
        match dead_letters.redrive(letter).await? {
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
    Ok((moved, left))
}
