//! The commands, one file each: its flags (with their meaning and
//! defaults, defined once), the checks that turn them into a configuration,
//! and what it does. Shared flag groups are in [`flags`].
//!
//! A command takes its stop and reload signals from the caller as
//! [`Controls`]: the library never installs signal handlers.

mod check;
mod demo;
mod diff;
mod flags;
mod invoke;
mod manuals;
mod new_handler;
mod produce;
mod redrive;
mod run;

use clap::Subcommand;
use std::io::Write;
use std::path::PathBuf;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use check::CheckArgs;
pub use demo::DemoArgs;
pub use diff::DiffArgs;
pub use invoke::InvokeArgs;
pub use manuals::CompletionsArgs;
pub use new_handler::NewHandlerArgs;
pub use produce::ProduceArgs;
pub use redrive::RedriveArgs;
pub use run::RunArgs;

/// A subcommand and its flags.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Process requests: read them from a source, hand each to the handler,
    /// store the results.
    #[command(after_help = run::EXAMPLES)]
    Run(Box<RunArgs>),
    /// Write realistic widget requests, as the original producer.jar did
    /// (`-mwr`, `-ird`, `-mrt`).
    #[command(after_help = produce::EXAMPLES)]
    Produce(ProduceArgs),
    /// Produce requests into a fresh local folder, process them until none
    /// is left, and print the summary and where to look.
    #[command(after_help = demo::EXAMPLES)]
    Demo(DemoArgs),
    /// Run a handler against the conformance suite, in memory: pass or fail
    /// per case, with the differences. Exits 1 on any failure.
    #[command(after_help = check::EXAMPLES)]
    Check(CheckArgs),
    /// Call a handler once on one request and print the operations it
    /// returns and what it logged. Nothing is written anywhere.
    #[command(after_help = invoke::EXAMPLES)]
    Invoke(InvokeArgs),
    /// Run two handlers on the same requests against the current store,
    /// read only, and print where their verdicts or plans differ; exits 1
    /// if they differ anywhere. The step before swapping a handler in.
    #[command(after_help = diff::EXAMPLES)]
    Diff(DiffArgs),
    /// Move dead letters back into the source under their keys, without
    /// their reasons, for the next run; with --handler, only those it
    /// accepts.
    #[command(after_help = redrive::EXAMPLES)]
    Redrive(RedriveArgs),
    /// Write a ready handler project (Rust, Python or JavaScript): the WIT,
    /// a handler that passes `check`, its build script, an example case and
    /// a README.
    #[command(after_help = new_handler::EXAMPLES)]
    NewHandler(NewHandlerArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    #[command(after_help = manuals::COMPLETIONS_EXAMPLES)]
    Completions(CompletionsArgs),
    /// Print the man page (roff), every command's flags included.
    #[command(after_help = manuals::MAN_EXAMPLES)]
    Man,
}

/// What the caller tells a running command.
#[derive(Debug, Clone)]
pub struct Controls {
    /// Cancelled to stop: the requests in flight finish, then the command
    /// returns.
    pub stop: CancellationToken,
    /// Each change asks `run` to reload its handler from its file.
    pub reload: watch::Receiver<u64>,
}

pub use crate::error::UsageError;

/// How a command wants its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPlan {
    /// The default level on stderr (`RUST_LOG` overrides it).
    pub stderr_level: &'static str,
    /// A file that gets the log too.
    pub file: Option<PathBuf>,
}

impl Command {
    /// Settles what must be known before logging starts (the demo's folder,
    /// where its log goes) and says how this command logs. `log_file` is
    /// the user's `--log-file`.
    pub fn prepare(&mut self, log_file: Option<PathBuf>) -> anyhow::Result<LogPlan> {
        Ok(match self {
            // The demo prints its own report; its per-request log goes to a
            // file in its folder.
            Command::Demo(demo) => {
                let own = demo.settle_folder()?;
                LogPlan {
                    stderr_level: "warn",
                    file: Some(log_file.unwrap_or(own)),
                }
            }
            // `check`, `invoke` and `diff` print their own report on stdout.
            Command::Check(_)
            | Command::Invoke(_)
            | Command::Diff(_)
            | Command::Redrive(_)
            | Command::NewHandler(_)
            | Command::Completions(_)
            | Command::Man => LogPlan {
                stderr_level: "error",
                file: log_file,
            },
            Command::Run(_) | Command::Produce(_) => LogPlan {
                stderr_level: "info",
                file: log_file,
            },
        })
    }

    /// Writes the completions or the man page, for those two commands,
    /// from `definition` (the binary's command line); `None` for the others.
    pub fn write_documentation(
        &self,
        definition: clap::Command,
        out: &mut dyn Write,
    ) -> Option<std::io::Result<()>> {
        match self {
            Command::Completions(args) => {
                manuals::completions(args, definition, out);
                Some(Ok(()))
            }
            Command::Man => Some(manuals::man(definition, out)),
            _ => None,
        }
    }

    /// Runs the command, writing its report to `out`.
    pub async fn execute(self, controls: Controls, out: &mut dyn Write) -> anyhow::Result<()> {
        match self {
            Command::Run(args) => run::execute(&args, controls, out).await,
            Command::Produce(args) => produce::execute(&args, controls, out).await,
            Command::Demo(args) => demo::execute(&args, controls, out).await,
            // Short commands: a stop ends them where they are.
            Command::Check(args) => until_stopped(&controls.stop, check::execute(&args, out)).await,
            Command::Invoke(args) => until_stopped(&controls.stop, invoke::execute(&args, out)).await,
            Command::Diff(args) => until_stopped(&controls.stop, diff::execute(&args, out)).await,
            Command::NewHandler(args) => new_handler::execute(&args, out),
            // Written before any command runs (`write_documentation`): the
            // binary holds the definition they are made from.
            Command::Completions(_) | Command::Man => Ok(()),
            // A stop ends it between two moves, never inside one.
            Command::Redrive(args) => redrive::execute(&args, &controls.stop, out).await,
        }
    }
}

/// Runs `work` unless `stop` comes first.
async fn until_stopped(
    stop: &CancellationToken,
    work: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    tokio::select! {
        done = work => done,
        _ = stop.cancelled() => anyhow::bail!("interrupted"),
    }
}
