//! `run`: process requests from a folder or an S3 bucket into a folder, an
//! S3 bucket or a DynamoDB table, until the source is empty
//! (`--until-empty`), the maximum run time, or a stop signal.

use super::flags::{AwsArgs, ConsumedPlaceArgs, DestinationArgs, LimitArgs, MaxRuntimeArgs, RequestSizeArgs};
use super::{Controls, UsageError};
use crate::handler;
use crate::pipeline::{Concurrency, DEFAULT_MAX_CONCURRENCY, DEFAULT_ROLLBACK_WINDOW};
use crate::runner::{self, Config, DEFAULT_SHUTDOWN_TIMEOUT_SECS};
use crate::source::Use;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

pub(crate) const EXAMPLES: &str = "\
Examples:
  widget-host run --requests-dir requests/ --widgets-dir widgets/ --until-empty
  widget-host run -rb requests -dwt widgets --handler my-handler.wasm
  widget-host --requests_bucket requests --destination_flag wb --destination_name widgets
  widget-host run -rq requests.fifo -dwt widgets --dead-letter-queue rejected.fifo";

/// `run`'s flags (also the flags of a bare `widget-host`).
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub(crate) requests: ConsumedPlaceArgs,

    #[command(flatten)]
    pub(crate) destination: DestinationArgs,

    #[command(flatten)]
    pub(crate) aws: AwsArgs,

    /// The handler: a component file (`.wasm`), or `builtin` for the
    /// built-in widget handler (the default).
    #[arg(long, value_name = "FILE.wasm|builtin", default_value = "builtin")]
    pub(crate) handler: handler::Choice,

    /// A candidate handler to run in shadow: asked about every request
    /// beside the live one, against what the live one read, its verdict and
    /// plan compared and counted (summary, /metrics, a log line per
    /// difference); it writes nothing and never affects a request.
    #[arg(long, value_name = "FILE.wasm|builtin")]
    pub(crate) candidate: Option<handler::Choice>,

    /// Append each difference of the candidate's (and each failure) to
    /// FILE, a JSON object per line, for `widget-host diff --records FILE`.
    #[arg(long, value_name = "FILE", requires = "candidate")]
    pub(crate) candidate_records: Option<PathBuf>,

    /// Make the candidate the live handler, as a reload does, after N
    /// requests on which it agrees with the live one and none on which it
    /// differs or fails.
    #[arg(long, value_name = "N", requires = "candidate", value_parser = promote_after)]
    pub(crate) promote_after: Option<u64>,

    /// After a swap (SIGHUP, --watch, a promotion), put the previous
    /// handler back if the new one dead-letters more than P percentage
    /// points more than it did, over the last --rollback-window requests;
    /// the new one's dead letters of the window are logged.
    #[arg(long, value_name = "P", value_parser = percentage_points)]
    pub(crate) rollback_on_dead_letters: Option<f64>,

    /// How many requests the rollback policy compares over.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ROLLBACK_WINDOW as u64, requires = "rollback_on_dead_letters", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) rollback_window: u64,

    #[command(flatten)]
    pub(crate) limits: LimitArgs,

    /// Exit once a whole pass finds the source empty and nothing in flight.
    #[arg(long)]
    pub(crate) until_empty: bool,

    /// Reload the handler whenever its file changes (SIGHUP always reloads
    /// it). A broken replacement is refused and the running handler kept.
    #[arg(long)]
    pub(crate) watch: bool,

    #[command(flatten)]
    pub(crate) max_runtime: MaxRuntimeArgs,

    /// After a stop (Ctrl-C, SIGTERM, the maximum run time), wait at most
    /// this many seconds for the stores in flight; what is not done then
    /// stays in the source. A second Ctrl-C or SIGTERM exits at once.
    #[arg(long = "shutdown-timeout", value_name = "SECS", default_value_t = DEFAULT_SHUTDOWN_TIMEOUT_SECS)]
    pub(crate) shutdown_timeout_secs: u64,

    /// Process exactly N requests at once (fewer only while the backend
    /// throttles many widgets). Without it the number is found by
    /// measurement: it grows while requests take no longer, and falls when
    /// they take longer or the backend throttles. Requests about the same
    /// widget are never processed at once, nor out of order.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) concurrency: Option<u16>,

    /// The most requests processed at once when the number is measured
    /// (without --concurrency): memory is sized for this many.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONCURRENCY, conflicts_with = "concurrency",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) max_concurrency: u16,

    /// How the end-of-run summary is printed on stdout: `text`, or `json`
    /// (one object, for tools).
    #[arg(long, value_enum, default_value = "text", value_name = "FORMAT")]
    pub(crate) summary_format: SummaryFormat,

    /// Serve HTTP on this address (`127.0.0.1:9898`, `[::]:9898`,
    /// `localhost:9898`) from the start of the run to its end: Prometheus
    /// metrics on /metrics, liveness on /healthz, readiness on /readyz.
    #[arg(long, value_name = "HOST:PORT", value_parser = host_and_port)]
    pub(crate) metrics_addr: Option<String>,

    #[command(flatten)]
    pub(crate) request_size: RequestSizeArgs,
}

impl RunArgs {
    /// Checks `run`'s flags: one source, one destination. No I/O.
    pub(crate) fn config(&self) -> Result<Config, UsageError> {
        let args = self;
        let source = args.requests.place("request source", args.until_empty)?;
        source.check(Use::Consume)?;
        let sink = args.destination.sink()?;
        if args.watch && args.handler == handler::Choice::Builtin {
            return Err(UsageError(
                "--watch needs --handler FILE.wasm: the built-in handler has no file to watch".into(),
            ));
        }
        let mut config = Config::new(source, sink);
        config.aws = args.aws.settings();
        config.watch = args.watch;
        config.handler = args.limits.spec(args.handler.clone())?;
        config.candidate = match &args.candidate {
            Some(choice) => Some(args.limits.spec(choice.clone())?),
            None => None,
        };
        config.promote_after = args.promote_after;
        config.candidate_records = args.candidate_records.clone();
        config.rollback = args.rollback_on_dead_letters.map(|points| {
            (
                points,
                usize::try_from(args.rollback_window).unwrap_or(usize::MAX),
            )
        });
        config.options.concurrency = match args.concurrency {
            Some(count) => Concurrency::Fixed(usize::from(count)),
            None => Concurrency::Adaptive(usize::from(args.max_concurrency)),
        };
        config.options.until_empty = args.until_empty;
        config.options.max_request_bytes = args.request_size.max_request_bytes;
        config.max_runtime = args.max_runtime.max_runtime();
        config.metrics_addr = args.metrics_addr.clone();
        config.shutdown_timeout = Duration::from_secs(args.shutdown_timeout_secs);
        Ok(config)
    }
}

/// How `run` prints its summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum SummaryFormat {
    /// For people.
    #[default]
    Text,
    /// One JSON object.
    Json,
}

/// An address to listen on: a host, a colon and a port number.
fn host_and_port(text: &str) -> Result<String, String> {
    let port = text
        .rsplit_once(':')
        .map(|(host, port)| (host, port.parse::<u16>()));
    match port {
        Some((host, Ok(_))) if !host.is_empty() => Ok(text.to_owned()),
        _ => Err(format!(
            "{text:?} is not HOST:PORT; write the port too, as in 127.0.0.1:9898 or localhost:9898 (port 0: any free one)"
        )),
    }
}

/// A number of percentage points, 0 to 100.
fn percentage_points(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(points) if (0.0..=100.0).contains(&points) => Ok(points),
        _ => Err(format!(
            "{text} is not a number of percentage points from 0 to 100"
        )),
    }
}

/// `run`: processes requests, then prints the summary.
pub(super) async fn execute(args: &RunArgs, controls: Controls, out: &mut dyn Write) -> anyhow::Result<()> {
    let config = args.config()?;
    let until_empty = config.options.until_empty;
    let summary = runner::run(config, controls.stop, controls.reload).await?;
    match args.summary_format {
        SummaryFormat::Text => writeln!(out, "{summary}")?,
        SummaryFormat::Json => writeln!(out, "{}", summary.to_json())?,
    }
    if until_empty && summary.left_in_source > 0 {
        anyhow::bail!(
            "{} requests could not be processed and are still in the source (the log says why)",
            summary.left_in_source
        );
    }
    Ok(())
}

/// `--promote-after N`: at least one agreement, or nothing was compared.
fn promote_after(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(0) => Err("a candidate is promoted after at least 1 request it agrees on; to keep it in shadow for good, leave out --promote-after".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{text:?} is not a number of requests")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use crate::sink::Spec as SinkSpec;
    use crate::source::Place;

    fn config(args: &[&str]) -> Result<Config, UsageError> {
        let mut all = vec!["widget-host"];
        all.extend_from_slice(args);
        Cli::parse_args(all).unwrap().run.config()
    }

    #[test]
    fn destinations_are_named_once_in_any_spelling() {
        let c = config(&[
            "--requests_bucket",
            "r",
            "--destination_flag",
            "wb",
            "--destination_name",
            "w",
        ])
        .unwrap();
        assert_eq!(
            (c.source, c.sink),
            (Place::Bucket("r".into()), SinkSpec::S3Bucket("w".into()))
        );
        let c = config(&["--requests-dir", "r", "--dynamodb-widget-table", "t"]).unwrap();
        assert_eq!(c.sink, SinkSpec::DynamoDbTable("t".into()));
        let c = config(&["--requests-dir", "r", "--widgets-dir", "w"]).unwrap();
        assert_eq!(
            (c.source, c.sink),
            (Place::Dir("r".into()), SinkSpec::Dir("w".into()))
        );
        let c = config(&[
            "--requests_bucket",
            "r",
            "--destination_flag",
            "dwt",
            "--destination_name",
            "t",
        ])
        .unwrap();
        assert_eq!(c.sink, SinkSpec::DynamoDbTable("t".into()));
        let c = config(&["-rb", "r", "-dwt", "t"]).unwrap();
        assert_eq!(c.sink, SinkSpec::DynamoDbTable("t".into()));
        let c = config(&["-rb", "r", "-wb", "w"]).unwrap();
        assert_eq!(c.sink, SinkSpec::S3Bucket("w".into()));
    }

    #[test]
    fn missing_or_conflicting_places_are_errors() {
        let err = |args: &[&str]| config(args).unwrap_err().to_string();
        assert!(err(&["--widgets-dir", "w"]).contains("no request source"));
        assert!(err(&["--requests-dir", "r"]).contains("no widget destination"));
        assert!(
            err(&[
                "--requests-dir",
                "r",
                "--widget-bucket",
                "b",
                "--widgets-dir",
                "w"
            ])
            .contains("give one")
        );
        assert!(err(&["--requests-dir", "r", "--destination_flag", "wb"]).contains("--destination_name"));
        assert!(
            err(&[
                "--requests-dir",
                "r",
                "--request-bucket",
                "b",
                "--widgets-dir",
                "w"
            ])
            .contains("not more")
        );
    }

    #[test]
    fn the_concurrency_is_measured_unless_a_number_is_given() {
        let c = config(&["--requests-dir", "r", "--widgets-dir", "w"]).unwrap();
        assert_eq!(
            c.options.concurrency,
            Concurrency::Adaptive(usize::from(DEFAULT_MAX_CONCURRENCY))
        );
        let c = config(&[
            "--requests-dir",
            "r",
            "--widgets-dir",
            "w",
            "--max-concurrency",
            "8",
        ])
        .unwrap();
        assert_eq!(c.options.concurrency, Concurrency::Adaptive(8));
        let c = config(&["--requests-dir", "r", "--widgets-dir", "w", "--concurrency", "3"]).unwrap();
        assert_eq!(c.options.concurrency, Concurrency::Fixed(3));
        let both = [
            "widget-host",
            "-rb",
            "r",
            "-wb",
            "w",
            "--concurrency",
            "3",
            "--max-concurrency",
            "8",
        ];
        assert!(Cli::parse_args(both).is_err(), "one or the other");
    }

    #[test]
    fn the_handler_is_builtin_unless_a_file_is_named() {
        let c = config(&["--requests-dir", "r", "--widgets-dir", "w"]).unwrap();
        assert_eq!(c.handler.choice, handler::Choice::Builtin);
        let c = config(&["--requests-dir", "r", "--widgets-dir", "w", "--handler", "h.wasm"]).unwrap();
        assert_eq!(c.handler.choice, handler::Choice::File("h.wasm".into()));
        assert!(config(&["--requests-dir", "r", "--widgets-dir", "w", "--watch"]).is_err());
    }
}
