//! `run`: process requests from a folder or an S3 bucket into a folder, an
//! S3 bucket or a DynamoDB table, until the source is empty
//! (`--until-empty`), the maximum run time, or a stop signal.

use super::flags::{self, AwsArgs, LimitArgs, RequestPlace, RequestPlaceArgs, RequestSizeArgs};
use super::{Controls, UsageError};
use crate::aws::s3::BucketRole;
use crate::aws::{Aws, AwsSettings};
use crate::handler::swap::HandlerSlot;
use crate::handler::{self, Handler};
use crate::metrics::{Metrics, Summary, exporter};
use crate::pipeline::{self, DEFAULT_CONCURRENCY, Options};
use crate::progress;
use crate::sink::{Sink, dir::DirSink, dynamodb::DynamoDbSink, s3::S3Sink};
use crate::source::sqs::{MAX_WAIT_SECONDS, QueueOptions, SqsSource};
use crate::source::{Source, dir::DirSource, s3::S3Source};
use anyhow::Context as _;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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
    pub(crate) requests: RequestPlaceArgs,

    #[command(flatten)]
    pub(crate) queue: QueueArgs,

    #[command(flatten)]
    pub(crate) destination: DestinationArgs,

    #[command(flatten)]
    pub(crate) aws: AwsArgs,

    /// The handler: a component file (`.wasm`), or `builtin` for the
    /// built-in widget handler (the default).
    #[arg(long, value_name = "FILE.wasm|builtin", default_value = "builtin")]
    pub(crate) handler: handler::Choice,

    #[command(flatten)]
    pub(crate) limits: LimitArgs,

    /// Exit once a whole pass finds the source empty and nothing in flight.
    #[arg(long)]
    pub(crate) until_empty: bool,

    /// Reload the handler whenever its file changes (SIGHUP always reloads
    /// it). A broken replacement is refused and the running handler kept.
    #[arg(long)]
    pub(crate) watch: bool,

    /// Stop after this many milliseconds (0: no limit). Also `-mrt`.
    #[arg(long = "max-runtime", value_name = "MS", default_value_t = 0)]
    pub(crate) max_runtime_ms: u64,

    /// After a stop (Ctrl-C, SIGTERM, the maximum run time), wait at most
    /// this many seconds for the stores in flight; what is not done then
    /// stays in the source. A second Ctrl-C or SIGTERM exits at once.
    #[arg(long = "shutdown-timeout", value_name = "SECS", default_value_t = 30)]
    pub(crate) shutdown_timeout_secs: u64,

    /// Requests processed at once. Requests about the same widget are never
    /// processed at once, nor out of order.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) concurrency: u16,

    /// Serve Prometheus metrics on this address (`127.0.0.1:9898`; any
    /// path answers) while the run lasts.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) metrics_addr: Option<String>,

    #[command(flatten)]
    pub(crate) request_size: RequestSizeArgs,
}

/// How a queue of requests (`--request-queue`) is consumed.
#[derive(Debug, Clone, Args)]
pub(crate) struct QueueArgs {
    /// How long one receive waits for messages (SQS long polling), 0 to 20.
    /// With --until-empty, the run ends after a receive that waited this
    /// long and found nothing, with nothing in flight.
    #[arg(long, value_name = "SECS", default_value_t = MAX_WAIT_SECONDS,
          value_parser = clap::value_parser!(u8).range(0..=i64::from(MAX_WAIT_SECONDS)))]
    queue_wait_seconds: u8,

    /// The visibility timeout to receive messages with (default: the
    /// queue's). The host extends it while it holds a message, so this is
    /// how soon another host takes over the messages of one that died.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u32).range(1..=43_200))]
    queue_visibility_seconds: Option<u32>,

    /// Send rejected requests to this queue (a name or URL), body unchanged,
    /// the reason in the message attribute `reason`. Without it they are
    /// left in the request queue for its own redrive policy.
    #[arg(long, value_name = "URL_OR_NAME")]
    dead_letter_queue: Option<String>,
}

impl QueueArgs {
    fn options(&self) -> QueueOptions {
        QueueOptions {
            wait: Duration::from_secs(self.queue_wait_seconds.into()),
            visibility: self
                .queue_visibility_seconds
                .map(|s| Duration::from_secs(s.into())),
            dead_letters: self.dead_letter_queue.clone(),
            ..QueueOptions::default()
        }
    }
}

/// Where widgets go.
#[derive(Debug, Clone, Args)]
pub(crate) struct DestinationArgs {
    /// Store widgets in this folder, in the S3 layout.
    #[arg(long, value_name = "DIR")]
    widgets_dir: Option<PathBuf>,

    /// Store widgets in this S3 bucket. Also `-wb`.
    #[arg(long, value_name = "BUCKET")]
    widget_bucket: Option<String>,

    /// Store widgets in this DynamoDB table. Also `-dwt`.
    #[arg(long, value_name = "TABLE")]
    dynamodb_widget_table: Option<String>,

    /// The original consumer.py's way to name the destination: `wb` (an S3
    /// bucket) or `dwt` (a DynamoDB table), with --destination_name.
    #[arg(long = "destination_flag", alias = "destination-flag", value_name = "wb|dwt")]
    destination_flag: Option<DestinationFlag>,

    /// The bucket or table --destination_flag refers to.
    #[arg(long = "destination_name", alias = "destination-name", value_name = "NAME")]
    destination_name: Option<String>,
}

/// `--destination_flag` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DestinationFlag {
    /// An S3 bucket.
    Wb,
    /// A DynamoDB table.
    Dwt,
}

/// Where widgets go, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SinkSpec {
    /// A local folder, in the S3 layout.
    Dir(PathBuf),
    /// An S3 bucket.
    S3Bucket(String),
    /// A DynamoDB table.
    DynamoDbTable(String),
}

impl DestinationArgs {
    /// The destination if one is given (more than one is an error).
    pub(super) fn sink_if_given(&self) -> Result<Option<SinkSpec>, UsageError> {
        match self.sink() {
            Ok(spec) => Ok(Some(spec)),
            Err(_) if self.is_empty() => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn is_empty(&self) -> bool {
        self.widgets_dir.is_none()
            && self.widget_bucket.is_none()
            && self.dynamodb_widget_table.is_none()
            && self.destination_flag.is_none()
            && self.destination_name.is_none()
    }

    /// The one destination given, in whichever spelling.
    pub(super) fn sink(&self) -> Result<SinkSpec, UsageError> {
        let named = match (self.destination_flag, &self.destination_name) {
            (Some(DestinationFlag::Wb), Some(name)) => Some(SinkSpec::S3Bucket(name.clone())),
            (Some(DestinationFlag::Dwt), Some(name)) => Some(SinkSpec::DynamoDbTable(name.clone())),
            (None, None) => None,
            (Some(_), None) => return Err(UsageError("--destination_flag needs --destination_name".into())),
            (None, Some(_)) => {
                return Err(UsageError(
                    "--destination_name needs --destination_flag wb|dwt".into(),
                ));
            }
        };
        let mut sinks: Vec<SinkSpec> = [
            named,
            self.widgets_dir.clone().map(SinkSpec::Dir),
            self.widget_bucket.clone().map(SinkSpec::S3Bucket),
            self.dynamodb_widget_table.clone().map(SinkSpec::DynamoDbTable),
        ]
        .into_iter()
        .flatten()
        .collect();
        match sinks.len() {
            0 => Err(UsageError(
                "no widget destination: give --widgets-dir DIR, --widget-bucket BUCKET, \
                 --dynamodb-widget-table TABLE or --destination_flag wb|dwt --destination_name NAME"
                    .into(),
            )),
            1 => Ok(sinks.remove(0)),
            n => Err(UsageError(format!(
                "give one widget destination, not {n}: {sinks:?}"
            ))),
        }
    }
}

/// Everything a run needs, checked.
#[derive(Debug, Clone)]
pub(crate) struct RunConfig {
    pub(crate) source: RequestPlace,
    /// How a queue source is consumed.
    pub(crate) queue: QueueOptions,
    pub(crate) sink: SinkSpec,
    pub(crate) handler: handler::Spec,
    pub(crate) options: Options,
    /// Stop after this long (`-mrt`).
    pub(crate) max_runtime: Option<Duration>,
    /// Where to serve Prometheus metrics.
    pub(crate) metrics_addr: Option<String>,
    /// Reload the handler when its file changes.
    pub(crate) watch: bool,
    /// How long a stop waits for the stores in flight.
    pub(crate) shutdown_timeout: Duration,
    pub(crate) aws: AwsSettings,
}

impl RunConfig {
    /// Checks `run`'s flags: one source, one destination. No I/O.
    pub(crate) fn from_args(args: &RunArgs) -> Result<RunConfig, UsageError> {
        let source = args.requests.place("request source")?;
        let sink = args.destination.sink()?;
        if args.watch && args.handler == handler::Choice::Builtin {
            return Err(UsageError(
                "--watch needs --handler FILE.wasm: the built-in handler has no file to watch".into(),
            ));
        }
        Ok(RunConfig {
            source,
            queue: args.queue.options(),
            sink,
            aws: args.aws.settings(),
            watch: args.watch,
            handler: args.limits.spec(args.handler.clone())?,
            options: Options {
                concurrency: usize::from(args.concurrency),
                until_empty: args.until_empty,
                max_request_bytes: args.request_size.max_request_bytes,
                ..Options::default()
            },
            max_runtime: flags::max_runtime(args.max_runtime_ms),
            metrics_addr: args.metrics_addr.clone(),
            shutdown_timeout: Duration::from_secs(args.shutdown_timeout_secs),
        })
    }

    /// Whether any part of the run talks to AWS.
    fn uses_aws(&self) -> bool {
        self.source.uses_aws() || self.sink.uses_aws()
    }
}

impl SinkSpec {
    /// Whether the destination is on AWS.
    pub(super) fn uses_aws(&self) -> bool {
        !matches!(self, SinkSpec::Dir(_))
    }
}

/// Opens the destination; `aws` must be set up if it is on AWS.
pub(super) async fn open_sink(spec: &SinkSpec, aws: Option<&Aws>) -> anyhow::Result<Arc<dyn Sink>> {
    let client = || aws.context("AWS clients are not set up");
    Ok(match spec {
        SinkSpec::Dir(path) => Arc::new(DirSink::open(path)?),
        SinkSpec::S3Bucket(bucket) => {
            Arc::new(S3Sink::open(client()?.s3.clone(), bucket, BucketRole::Widget).await?)
        }
        SinkSpec::DynamoDbTable(table) => {
            Arc::new(DynamoDbSink::open(client()?.dynamodb.clone(), table).await?)
        }
    })
}

/// [`open_sink`] for a command that only reads the store (`diff`,
/// `redrive --handler`): a folder is neither made nor swept.
pub(super) async fn open_sink_to_read(spec: &SinkSpec, aws: Option<&Aws>) -> anyhow::Result<Arc<dyn Sink>> {
    match spec {
        SinkSpec::Dir(path) => Ok(Arc::new(DirSink::open_read_only(path))),
        spec => open_sink(spec, aws).await,
    }
}

/// `run`: processes requests, then prints the summary.
pub(super) async fn execute(args: &RunArgs, controls: Controls, out: &mut dyn Write) -> anyhow::Result<()> {
    let config = RunConfig::from_args(args)?;
    let until_empty = config.options.until_empty;
    let summary = run(config, controls).await?;
    writeln!(out, "{summary}")?;
    if until_empty && summary.left_in_source > 0 {
        anyhow::bail!(
            "{} requests could not be processed and are still in the source (the log says why)",
            summary.left_in_source
        );
    }
    Ok(())
}

/// Processes requests as configured, until the source is empty (with
/// `--until-empty`), the maximum run time, or `controls.stop`.
pub(super) async fn run(config: RunConfig, controls: Controls) -> anyhow::Result<Summary> {
    let handler = Handler::load(&config.handler)?;
    let handlers = HandlerSlot::new(handler, config.handler.choice.clone());
    let aws = match config.uses_aws() {
        true => Some(Aws::connect(&config.aws).await),
        false => None,
    };
    let client = || aws.clone().context("AWS clients are not set up");
    // The run's own stop: the binary's signal, or the maximum run time.
    let stop = controls.stop.child_token();
    let source: Arc<dyn Source> = match &config.source {
        RequestPlace::Dir(path) => Arc::new(DirSource::open(path)?),
        RequestPlace::Bucket(bucket) => Arc::new(S3Source::open(client()?.s3, bucket).await?),
        RequestPlace::Queue(queue) => {
            // A receive under way at a stop is let end only within the
            // shutdown timeout, with a second to spare for the rest.
            let queue_options = QueueOptions {
                stop_grace: config.shutdown_timeout.saturating_sub(Duration::from_secs(1)),
                ..config.queue.clone()
            };
            Arc::new(SqsSource::open(client()?.sqs, queue, queue_options, stop.clone()).await?)
        }
    };
    let sink = open_sink(&config.sink, aws.as_ref()).await?;
    if let Some(max_runtime) = config.max_runtime {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(max_runtime) => {
                    tracing::info!(?max_runtime, "Maximum run time reached: finishing the requests in flight.");
                    stop.cancel();
                }
                _ = stop.cancelled() => {}
            }
        });
    }
    handlers.reload_on(controls.reload, stop.clone());
    if config.watch {
        handlers.watch(stop.clone());
    }
    let metrics = Arc::new(Metrics::default());
    // Scrapes are answered until the run has ended, shutdown included.
    let exporter_stop = CancellationToken::new();
    let _exporter_stopped = exporter_stop.clone().drop_guard();
    if let Some(address) = &config.metrics_addr {
        let listener = exporter::bind(address).await?;
        let registry = metrics.registry(aws.as_ref().map(|aws| aws.calls.clone()));
        tokio::spawn(exporter::serve(listener, registry, exporter_stop.clone()));
    }
    // Progress is for a run that ends: one that polls forever has no end to
    // show.
    let shown = config
        .options
        .until_empty
        .then(|| progress::show("requests", metrics.progress.clone()));
    let pipeline = pipeline::run(source, sink, handlers, config.options, metrics, stop.clone());
    let shutdown_timeout = config.shutdown_timeout;
    let late = async {
        stop.cancelled().await;
        tokio::time::sleep(shutdown_timeout).await;
    };
    let summary = tokio::select! {
        summary = pipeline => summary,
        () = late => Err(anyhow::anyhow!(
            "stopped without waiting longer than --shutdown-timeout ({shutdown_timeout:?}) for the \
             stores in flight; their requests stay in the source"
        )),
    };
    // Ends the timer and the reload tasks.
    stop.cancel();
    if let Some(shown) = shown {
        shown.finish().await;
    }
    let mut summary = summary?;
    if let Some(aws) = aws {
        summary.api_calls = aws.calls.snapshot();
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;

    fn config(args: &[&str]) -> Result<RunConfig, UsageError> {
        let mut all = vec!["widget-host"];
        all.extend_from_slice(args);
        RunConfig::from_args(&Cli::parse_args(all).unwrap().run)
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
            (RequestPlace::Bucket("r".into()), SinkSpec::S3Bucket("w".into()))
        );
        let c = config(&["--requests-dir", "r", "--dynamodb-widget-table", "t"]).unwrap();
        assert_eq!(c.sink, SinkSpec::DynamoDbTable("t".into()));
        assert!(c.uses_aws());
        let c = config(&["--requests-dir", "r", "--widgets-dir", "w"]).unwrap();
        assert!(!c.uses_aws());
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
    fn the_handler_is_builtin_unless_a_file_is_named() {
        let c = config(&["--requests-dir", "r", "--widgets-dir", "w"]).unwrap();
        assert_eq!(c.handler.choice, handler::Choice::Builtin);
        let c = config(&["--requests-dir", "r", "--widgets-dir", "w", "--handler", "h.wasm"]).unwrap();
        assert_eq!(c.handler.choice, handler::Choice::File("h.wasm".into()));
        assert!(config(&["--requests-dir", "r", "--widgets-dir", "w", "--watch"]).is_err());
    }
}
