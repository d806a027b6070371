//! The command line, as parsed: no validation and no I/O here (see
//! `config.rs` for that).

use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "widget-host",
    version,
    about = "Runs widget requests through a WebAssembly handler and stores the results.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Without a subcommand, `widget-host` runs: these are `run`'s options.
    #[command(flatten)]
    pub run: RunArgs,

    /// Also write the log to this file (without colours).
    #[arg(long, global = true, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Process requests: read them from a source, hand each to the handler,
    /// store the results.
    Run(RunArgs),
    /// Write realistic widget requests, as the course's producer does.
    Produce(ProduceArgs),
    /// Produce requests into a fresh local folder, process them until none
    /// is left, and print the summary and where to look.
    Demo(DemoArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Read requests from this folder (files in name order).
    #[arg(long, value_name = "DIR")]
    pub requests_dir: Option<PathBuf>,

    /// Store widgets in this folder, in the S3 layout.
    #[arg(long, value_name = "DIR")]
    pub widgets_dir: Option<PathBuf>,

    #[command(flatten)]
    pub handler: HandlerArgs,

    /// Exit once the source is empty.
    #[arg(long)]
    pub until_empty: bool,

    /// Stop after this many milliseconds (0: no limit). Also `-mrt`.
    #[arg(long = "max-runtime", value_name = "MS", default_value_t = 0)]
    pub max_runtime_ms: u64,

    /// Requests processed at once. Requests about the same widget are never
    /// processed at once, nor out of order.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
}

/// Which handler to run and under what limits.
#[derive(Debug, Clone, Args)]
pub struct HandlerArgs {
    /// The handler component (`.wasm`); the built-in widget handler if absent.
    #[arg(long, value_name = "FILE.wasm")]
    pub handler: Option<PathBuf>,

    /// Computing time one handler call may take, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub handler_timeout_ms: u64,

    /// Memory one handler call may use, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 128)]
    pub handler_memory_mb: usize,

    /// Do not keep compiled handlers in wasmtime's on-disk cache.
    #[arg(long)]
    pub no_compile_cache: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    /// Write the requests into this folder.
    #[arg(long, value_name = "DIR")]
    pub requests_dir: PathBuf,

    /// How many requests to write. Also `-mwr`.
    #[arg(long = "max-widget-requests", value_name = "N", default_value_t = 1000)]
    pub max_widget_requests: u64,

    /// Seed of the generator: the same seed (and --start-ms) writes the same
    /// requests.
    #[arg(long)]
    pub seed: Option<u64>,

    /// The first request's time, in epoch milliseconds (default: now).
    #[arg(long, value_name = "MS")]
    pub start_ms: Option<u64>,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// How many requests to produce.
    #[arg(long, default_value_t = 1000)]
    pub requests: u64,

    /// The folder to work in (default: a fresh one in the system's temporary folder).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Seed of the generator.
    #[arg(long, default_value_t = 2022)]
    pub seed: u64,
}

/// The course's tools used several-letter short flags (`-mrt`), which clap
/// does not parse: they are rewritten to their long forms first.
const COURSE_FLAGS: [(&str, &str); 2] = [("-mrt", "--max-runtime"), ("-mwr", "--max-widget-requests")];

/// Rewrites the course's flags in `args` to the ones clap knows.
pub fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    args.into_iter()
        .map(|arg| {
            let text = arg.to_string_lossy();
            for (short, long) in COURSE_FLAGS {
                if text == short {
                    return OsString::from(long);
                }
                if let Some(value) = text.strip_prefix(short).and_then(|rest| rest.strip_prefix('=')) {
                    return OsString::from(format!("{long}={value}"));
                }
            }
            arg
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(normalize_args(args.iter().map(OsString::from))).unwrap()
    }

    #[test]
    fn course_flags_are_accepted() {
        let cli = parse(&["widget-host", "run", "-mrt", "500", "--requests-dir", "r"]);
        let Some(Command::Run(run)) = cli.command else {
            panic!()
        };
        assert_eq!(run.max_runtime_ms, 500);
        let cli = parse(&["widget-host", "produce", "--requests-dir", "r", "-mwr=7"]);
        let Some(Command::Produce(produce)) = cli.command else {
            panic!()
        };
        assert_eq!(produce.max_widget_requests, 7);
    }

    #[test]
    fn no_subcommand_means_run() {
        let cli = parse(&[
            "widget-host",
            "--requests-dir",
            "r",
            "--widgets-dir",
            "w",
            "--until-empty",
        ]);
        assert!(cli.command.is_none());
        assert!(cli.run.until_empty);
        assert_eq!(cli.run.widgets_dir, Some(PathBuf::from("w")));
    }
}
