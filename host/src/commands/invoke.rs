//! `invoke`: call a handler once on one request and print what it logged and
//! the operations it returned. Nothing is written anywhere.

use super::flags::LimitArgs;
use crate::contract::{Context, Destination, Operation};
use crate::handler::{self, Handler};
use crate::sink::Sink;
use crate::sink::dir::DirSink;
use crate::sink::memory::MemorySink;
use anyhow::Context as _;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

pub(crate) const EXAMPLES: &str = "\
Examples:
  widget-host invoke builtin request.json
  widget-host invoke my-handler.wasm request.json --store widgets/
  widget-host invoke builtin request.json --destination table";

/// `invoke`'s flags.
#[derive(Debug, Clone, Args)]
pub struct InvokeArgs {
    /// The handler: a component file, or `builtin`.
    #[arg(value_name = "HANDLER.wasm|builtin")]
    handler: handler::Choice,

    /// The request file, passed to the handler byte for byte.
    #[arg(value_name = "REQUEST")]
    request: PathBuf,

    /// A folder the handler's `store.get` reads from (a key is a path under
    /// it); empty if absent.
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,

    /// What kind of store the handler plans for.
    #[arg(long, value_enum, default_value = "object-store")]
    destination: DestinationArg,

    #[command(flatten)]
    limits: LimitArgs,
}

/// `--destination` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DestinationArg {
    /// An S3 bucket or a local folder.
    ObjectStore,
    /// A DynamoDB table.
    Table,
}

pub(super) async fn execute(args: &InvokeArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let handler = Handler::load(&args.limits.spec(args.handler.clone())?)?;
    let request = std::fs::read(&args.request)
        .with_context(|| format!("cannot read request {}", args.request.display()))?;
    let destination = match args.destination {
        DestinationArg::ObjectStore => Destination::ObjectStore,
        DestinationArg::Table => Destination::Table,
    };
    let store: Arc<dyn Sink> = match &args.store {
        Some(dir) => Arc::new(DirSink::open(dir)?.presented_as(destination)),
        None => Arc::new(MemorySink::new(destination)),
    };
    let context = Context {
        key: args
            .request
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        destination,
    };
    let handled = handler.handle(&request, &context, store).await?;
    for (level, message) in &handled.logs {
        writeln!(out, "log {level}: {}", crate::logging::escape(message))?;
    }
    match handled.verdict {
        Err(reason) => writeln!(out, "rejected: {reason}")?,
        Ok(plan) => {
            writeln!(out, "kind: {}", plan.kind)?;
            if plan.operations.is_empty() {
                writeln!(out, "no operations")?;
            }
            for operation in plan.operations {
                match operation {
                    Operation::Put { key, document } => writeln!(out, "put {key}\n  {document}")?,
                    Operation::Delete(key) => writeln!(out, "delete {key}")?,
                }
            }
        }
    }
    Ok(())
}
