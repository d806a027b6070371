//! `check`: run a handler against the conformance suite, in memory, and
//! exit non-zero if any case fails; or, with `--cases-from-dead-letters`,
//! write cases made from a place's dead letters (`dead_letter_cases.rs`).

use super::UsageError;
use super::flags::{AwsArgs, DestinationArgs, LimitArgs, RequestPlaceArgs, RequestSizeArgs};
use crate::aws::Clients;
use crate::contract::Destination;
use crate::handler::{self, Handler};
use crate::source::Place;
use crate::{conformance, dead_letter_cases, folder, sink};
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};

pub(crate) const EXAMPLES: &str = "\
Examples:
  widget-host check
  widget-host check my-handler.wasm --cases my-cases/
  widget-host check my-handler.wasm --cases my-cases/ --no-builtin-cases
  widget-host check --cases-from-dead-letters my-cases/ --requests-dir requests/
  widget-host check fixed.wasm --cases-from-dead-letters my-cases/ --requests-dir requests/ --widgets-dir widgets/";

/// `check`'s flags.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// The handler: a component file, or `builtin` (the default). With
    /// --cases-from-dead-letters, the fixed handler whose verdicts the cases
    /// expect (without it they expect the dead letters' rejections).
    #[arg(value_name = "HANDLER.wasm|builtin")]
    handler: Option<handler::Choice>,

    /// Write cases instead of running them: one per distinct reason among
    /// the dead letters of --requests-dir or -rb, into DIR/dead-letters.json.
    #[arg(long, value_name = "DIR")]
    cases_from_dead_letters: Option<PathBuf>,

    #[command(flatten)]
    requests: RequestPlaceArgs,

    /// The store the fixed handler reads, for the documents an update or a
    /// delete needs (none: an empty store); also names the destination.
    #[command(flatten)]
    destination: DestinationArgs,

    #[command(flatten)]
    request_size: RequestSizeArgs,

    #[command(flatten)]
    aws: AwsArgs,

    /// Also run the cases in this folder (`*.json`, the suite's format).
    /// May be given more than once.
    #[arg(long, value_name = "DIR")]
    cases: Vec<PathBuf>,

    /// Run only the cases given with --cases, not the built-in suite.
    #[arg(long)]
    no_builtin_cases: bool,

    /// Show the whole expected and actual documents of a failing case, not
    /// only the differing fields.
    /// Set by the global `-v` (`Cli::take_command`).
    #[arg(skip)]
    pub(crate) verbose: bool,

    #[command(flatten)]
    limits: LimitArgs,
}

pub(super) async fn execute(args: &CheckArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if let Some(dir) = &args.cases_from_dead_letters {
        return write_cases(args, dir, out).await;
    }
    let choice = args.handler.clone().unwrap_or_default();
    let handler = Handler::load(&args.limits.spec(choice)?)?;
    let mut cases = if args.no_builtin_cases {
        Vec::new()
    } else {
        conformance::builtin()
    };
    for dir in &args.cases {
        cases.extend(conformance::load_dir(dir)?);
    }
    if cases.is_empty() {
        anyhow::bail!("no cases to run");
    }
    match conformance::run_all(&handler, &cases, args.verbose, out).await? {
        0 => Ok(()),
        failures => anyhow::bail!("{failures} of {} cases failed", cases.len()),
    }
}

/// `--cases-from-dead-letters DIR`: the flags checked, then the cases
/// made and written.
async fn write_cases(args: &CheckArgs, dir: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let place = args.requests.place("place of the dead letters")?;
    if matches!(place, Place::Queue { .. }) {
        return Err(UsageError(
            "cases come from a folder's or a bucket's dead letters (--requests-dir, -rb)".into(),
        )
        .into());
    }
    let store = args.destination.sink_if_given()?;
    let fixed = match &args.handler {
        Some(choice) => Some(args.limits.spec(choice.clone())?),
        None => None,
    };
    let destination = match &store {
        Some(sink::Spec::DynamoDbTable(_)) => Destination::Table,
        _ => Destination::ObjectStore,
    };
    let fixed = match &fixed {
        Some(spec) => Some(Handler::load(spec)?),
        None => None,
    };
    let clients = Clients::new(args.aws.settings());
    let dead_letters = place.open_dead_letters(&clients, true).await?;
    let store = match &store {
        Some(spec) => Some(spec.open_to_read(&clients).await?),
        None => None,
    };
    let made = dead_letter_cases::make(
        dead_letters.as_ref(),
        destination,
        store,
        fixed.as_ref(),
        args.request_size.max_request_bytes,
    )
    .await?;
    dead_letters.finish().await;
    for skipped in &made.skipped {
        writeln!(out, "skipped {}", crate::logging::escape(skipped))?;
    }
    if made.cases.is_empty() {
        anyhow::bail!("no dead letter made a case");
    }
    std::fs::create_dir_all(dir)?;
    // Never over an earlier file of cases: the next free name.
    let text = made.file();
    let mut file = dir.join(dead_letter_cases::FILE);
    for n in 2.. {
        if folder::write_new(dir, &file, text.as_bytes())? {
            break;
        }
        let stem = dead_letter_cases::FILE.trim_end_matches(".json");
        file = dir.join(format!("{stem}-{n}.json"));
    }
    writeln!(
        out,
        "Wrote {} cases (one per distinct reason) to {}; run them with: widget-host check {} --cases {}",
        made.cases.len(),
        file.display(),
        args.handler
            .as_ref()
            .map_or("HANDLER.wasm".into(), ToString::to_string),
        dir.display()
    )?;
    Ok(())
}
