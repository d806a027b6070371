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
/// The whole command line.
pub struct Cli {
    #[command(subcommand)]
    /// The subcommand; `run` if none.
    pub command: Option<Command>,

    /// Without a subcommand, `widget-host` runs: these are `run`'s options.
    #[command(flatten)]
    pub run: RunArgs,

    /// Also write the log to this file (without colours).
    #[arg(long, global = true, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
/// The subcommands.
pub enum Command {
    /// Process requests: read them from a source, hand each to the handler,
    /// store the results.
    Run(RunArgs),
    /// Write realistic widget requests, as the course's producer does.
    Produce(ProduceArgs),
    /// Produce requests into a fresh local folder, process them until none
    /// is left, and print the summary and where to look.
    Demo(DemoArgs),
    /// Run a handler against the conformance suite, in memory: pass or fail
    /// per case, with the differences. Exits non-zero on any failure.
    Check(CheckArgs),
    /// Call a handler once on one request and print the operations it
    /// returns and what it logged. Nothing is written anywhere.
    Invoke(InvokeArgs),
}

#[derive(Debug, Clone, Args)]
/// `check`'s flags.
pub struct CheckArgs {
    /// The handler component; the built-in widget handler if absent.
    #[arg(value_name = "HANDLER.wasm")]
    pub handler: Option<PathBuf>,

    /// Also run the cases in this folder (`*.json`, the suite's format).
    /// May be given more than once.
    #[arg(long, value_name = "DIR")]
    pub cases: Vec<PathBuf>,

    /// Run only the cases given with --cases, not the built-in suite.
    #[arg(long)]
    pub no_builtin_cases: bool,

    #[command(flatten)]
    /// The limits the handler runs under.
    pub limits: LimitArgs,
}

#[derive(Debug, Clone, Args)]
/// `invoke`'s flags.
pub struct InvokeArgs {
    /// The handler component (`builtin` for the built-in widget handler).
    #[arg(value_name = "HANDLER.wasm")]
    pub handler: PathBuf,

    /// The request file, passed to the handler byte for byte.
    #[arg(value_name = "REQUEST")]
    pub request: PathBuf,

    /// A folder the handler's `store.get` reads from (a key is a path under
    /// it); empty if absent.
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,

    /// What kind of store the handler plans for.
    #[arg(long, value_enum, default_value = "object-store")]
    pub destination: DestinationArg,

    #[command(flatten)]
    /// The limits the handler runs under.
    pub limits: LimitArgs,
}

/// `--destination` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DestinationArg {
    /// An S3 bucket or a local folder.
    ObjectStore,
    /// A DynamoDB table.
    Table,
}

#[derive(Debug, Clone, Args)]
/// `run`'s flags (also the flags of a bare `widget-host`).
pub struct RunArgs {
    /// Read requests from this folder (files in name order).
    #[arg(long, value_name = "DIR")]
    pub requests_dir: Option<PathBuf>,

    /// Read requests from this S3 bucket (keys in order). Also `-rb`,
    /// `--requests_bucket`.
    #[arg(
        long,
        value_name = "BUCKET",
        visible_alias = "requests_bucket",
        alias = "requests-bucket"
    )]
    pub request_bucket: Option<String>,

    /// Store widgets in this folder, in the S3 layout.
    #[arg(long, value_name = "DIR")]
    pub widgets_dir: Option<PathBuf>,

    /// Store widgets in this S3 bucket. Also `-wb`.
    #[arg(long, value_name = "BUCKET")]
    pub widget_bucket: Option<String>,

    /// Store widgets in this DynamoDB table. Also `-dwt`.
    #[arg(long, value_name = "TABLE")]
    pub dynamodb_widget_table: Option<String>,

    /// The seed's way to name the destination: `wb` (S3 bucket) or `dwt`
    /// (DynamoDB table), with --destination_name.
    #[arg(long = "destination_flag", alias = "destination-flag", value_name = "wb|dwt")]
    pub destination_flag: Option<DestinationFlag>,

    /// The bucket or table --destination_flag refers to.
    #[arg(long = "destination_name", alias = "destination-name", value_name = "NAME")]
    pub destination_name: Option<String>,

    #[command(flatten)]
    /// How to reach AWS.
    pub aws: AwsArgs,

    #[command(flatten)]
    /// Which handler to run, and its limits.
    pub handler: HandlerArgs,

    /// Exit once the source is empty.
    #[arg(long)]
    pub until_empty: bool,

    /// Reload the handler whenever its file changes (SIGHUP always reloads
    /// it). A broken replacement is refused and the running handler kept.
    #[arg(long)]
    pub watch: bool,

    /// Stop after this many milliseconds (0: no limit). Also `-mrt`.
    #[arg(long = "max-runtime", value_name = "MS", default_value_t = 0)]
    pub max_runtime_ms: u64,

    /// Requests processed at once. Requests about the same widget are never
    /// processed at once, nor out of order.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
}

/// `--destination_flag` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DestinationFlag {
    /// An S3 bucket.
    Wb,
    /// A DynamoDB table.
    Dwt,
}

/// How to reach AWS. Credentials come from the standard chain
/// (environment, profile, SSO, instance role).
#[derive(Debug, Clone, Default, Args)]
pub struct AwsArgs {
    /// The AWS profile to use.
    #[arg(short = 'p', long, value_name = "NAME")]
    pub profile: Option<String>,

    /// The AWS region (default: from the environment or profile).
    #[arg(short = 'r', long, value_name = "REGION")]
    pub region: Option<String>,

    /// Send every AWS request to this endpoint (a local S3 or DynamoDB
    /// server); `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3` and
    /// `AWS_ENDPOINT_URL_DYNAMODB` work too. S3 then uses path-style URLs.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
}

/// Which handler to run and under what limits.
#[derive(Debug, Clone, Args)]
pub struct HandlerArgs {
    /// The handler component (`.wasm`); the built-in widget handler if absent.
    #[arg(long, value_name = "FILE.wasm")]
    pub handler: Option<PathBuf>,

    #[command(flatten)]
    /// The limits the handler runs under.
    pub limits: LimitArgs,
}

/// The limits a handler runs under.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
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
/// `produce`'s flags.
pub struct ProduceArgs {
    /// Write the requests into this folder.
    #[arg(long, value_name = "DIR")]
    pub requests_dir: Option<PathBuf>,

    /// Write the requests into this S3 bucket. Also `-rb`.
    #[arg(long, value_name = "BUCKET")]
    pub request_bucket: Option<String>,

    #[command(flatten)]
    /// How to reach AWS.
    pub aws: AwsArgs,

    /// Wait this long between requests, in milliseconds. Also `-ird`.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub inter_request_delay: u64,

    /// Stop after this many milliseconds even if fewer requests were
    /// written (0: no limit). Also `-mrt`.
    #[arg(long = "max-runtime", value_name = "MS", default_value_t = 0)]
    pub max_runtime_ms: u64,

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
/// `demo`'s flags.
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
const COURSE_FLAGS: [(&str, &str); 6] = [
    ("-mrt", "--max-runtime"),
    ("-mwr", "--max-widget-requests"),
    ("-ird", "--inter-request-delay"),
    ("-rb", "--request-bucket"),
    ("-wb", "--widget-bucket"),
    ("-dwt", "--dynamodb-widget-table"),
];

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
    fn the_seeds_command_line_works_as_written() {
        let cli = parse(&[
            "widget-host",
            "--requests_bucket",
            "requests",
            "--destination_flag",
            "dwt",
            "--destination_name",
            "widgets",
        ]);
        assert!(cli.command.is_none());
        assert_eq!(cli.run.request_bucket.as_deref(), Some("requests"));
        assert_eq!(cli.run.destination_flag, Some(DestinationFlag::Dwt));
        assert_eq!(cli.run.destination_name.as_deref(), Some("widgets"));
        let cli = parse(&[
            "widget-host",
            "-rb",
            "r",
            "-wb",
            "w",
            "-p",
            "prof",
            "-r",
            "eu-west-1",
        ]);
        assert_eq!(cli.run.widget_bucket.as_deref(), Some("w"));
        assert_eq!(cli.run.aws.profile.as_deref(), Some("prof"));
        assert_eq!(cli.run.aws.region.as_deref(), Some("eu-west-1"));
        let cli = parse(&["widget-host", "-rb", "r", "-dwt", "t"]);
        assert_eq!(cli.run.dynamodb_widget_table.as_deref(), Some("t"));
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
