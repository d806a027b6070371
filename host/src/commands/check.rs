//! `check`: run a handler against the conformance suite, in memory, and
//! exit non-zero if any case fails.

use super::flags::LimitArgs;
use crate::conformance;
use crate::handler::{self, Handler};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

pub(crate) const EXAMPLES: &str = "\
Examples:
  widget-host check
  widget-host check my-handler.wasm --cases my-cases/
  widget-host check my-handler.wasm --cases my-cases/ --no-builtin-cases";

/// `check`'s flags.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// The handler: a component file, or `builtin` (the default).
    #[arg(value_name = "HANDLER.wasm|builtin", default_value = "builtin")]
    handler: handler::Choice,

    /// Also run the cases in this folder (`*.json`, the suite's format).
    /// May be given more than once.
    #[arg(long, value_name = "DIR")]
    cases: Vec<PathBuf>,

    /// Run only the cases given with --cases, not the built-in suite.
    #[arg(long)]
    no_builtin_cases: bool,

    /// Show the whole expected and actual documents of a failing case, not
    /// only the differing fields.
    #[arg(long, short)]
    verbose: bool,

    #[command(flatten)]
    limits: LimitArgs,
}

pub(super) async fn execute(args: &CheckArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let handler = Handler::load(&args.limits.spec(args.handler.clone())?)?;
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
