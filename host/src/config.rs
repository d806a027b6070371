//! Turns parsed flags into a checked configuration. No I/O: opening the
//! source, the sink and the handler is `app.rs`'s job.

use crate::aws::AwsSettings;
use crate::cli::{AwsArgs, DestinationFlag, HandlerArgs, LimitArgs, RunArgs};
use crate::pipeline::Options;
use crate::runtime::Limits;
use anyhow::{Context as _, bail};
use std::path::PathBuf;
use std::time::Duration;

/// Where requests come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A local folder.
    Dir(PathBuf),
    /// An S3 bucket.
    S3Bucket(String),
}

/// Where widgets go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    /// A local folder, in the S3 layout.
    Dir(PathBuf),
    /// An S3 bucket.
    S3Bucket(String),
    /// A DynamoDB table.
    DynamoDbTable(String),
}

/// The handler to run.
#[derive(Debug, Clone)]
pub struct HandlerSpec {
    /// `None`: the built-in widget handler.
    pub file: Option<PathBuf>,
    /// Time and memory per call.
    pub limits: Limits,
    /// Whether compiled components go to wasmtime's disk cache.
    pub compile_cache: bool,
}

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Where requests come from.
    pub source: SourceSpec,
    /// Where widgets go.
    pub sink: SinkSpec,
    /// The handler and its limits.
    pub handler: HandlerSpec,
    /// Workers, polling, backoff.
    pub options: Options,
    /// Stop after this long (`-mrt`).
    pub max_runtime: Option<Duration>,
    /// Reload the handler when its file changes.
    pub watch: bool,
    /// How to reach AWS.
    pub aws: AwsSettings,
}

impl RunConfig {
    /// Whether any part of the run talks to AWS.
    pub fn uses_aws(&self) -> bool {
        matches!(self.source, SourceSpec::S3Bucket(_)) || !matches!(self.sink, SinkSpec::Dir(_))
    }
}

impl From<&AwsArgs> for AwsSettings {
    fn from(args: &AwsArgs) -> AwsSettings {
        AwsSettings {
            profile: args.profile.clone(),
            region: args.region.clone(),
            endpoint_url: args.endpoint_url.clone(),
        }
    }
}

impl HandlerSpec {
    /// The handler `--handler` and the limit flags name.
    pub fn from_args(args: &HandlerArgs) -> anyhow::Result<HandlerSpec> {
        HandlerSpec::new(args.handler.clone(), &args.limits)
    }

    /// The handler in `file` (`None`: the built-in one) under `args`' limits.
    pub fn new(file: Option<PathBuf>, args: &LimitArgs) -> anyhow::Result<HandlerSpec> {
        if args.handler_timeout_ms == 0 {
            bail!("--handler-timeout-ms must be at least 1");
        }
        if args.handler_memory_mb == 0 {
            bail!("--handler-memory-mb must be at least 1");
        }
        Ok(HandlerSpec {
            file,
            limits: Limits {
                time: Duration::from_millis(args.handler_timeout_ms),
                memory: args
                    .handler_memory_mb
                    .checked_mul(1 << 20)
                    .context("--handler-memory-mb is too large")?,
            },
            compile_cache: !args.no_compile_cache,
        })
    }
}

impl RunConfig {
    /// Checks `run`'s flags: one source, one destination.
    pub fn from_args(args: &RunArgs) -> anyhow::Result<RunConfig> {
        let source = match (&args.requests_dir, &args.request_bucket) {
            (Some(dir), None) => SourceSpec::Dir(dir.clone()),
            (None, Some(bucket)) => SourceSpec::S3Bucket(bucket.clone()),
            (None, None) => bail!("no request source: give --requests-dir DIR or --request-bucket BUCKET"),
            (Some(_), Some(_)) => {
                bail!("give one request source: --requests-dir or --request-bucket, not both")
            }
        };
        let named = match (args.destination_flag, &args.destination_name) {
            (Some(DestinationFlag::Wb), Some(name)) => Some(SinkSpec::S3Bucket(name.clone())),
            (Some(DestinationFlag::Dwt), Some(name)) => Some(SinkSpec::DynamoDbTable(name.clone())),
            (None, None) => None,
            (Some(_), None) => bail!("--destination_flag needs --destination_name"),
            (None, Some(_)) => bail!("--destination_name needs --destination_flag wb|dwt"),
        };
        let mut sinks: Vec<SinkSpec> = [
            named,
            args.widgets_dir.clone().map(SinkSpec::Dir),
            args.widget_bucket.clone().map(SinkSpec::S3Bucket),
            args.dynamodb_widget_table.clone().map(SinkSpec::DynamoDbTable),
        ]
        .into_iter()
        .flatten()
        .collect();
        if args.watch && args.handler.handler.is_none() {
            bail!("--watch needs --handler FILE.wasm: the built-in handler has no file to watch");
        }
        let sink = match sinks.len() {
            0 => bail!(
                "no widget destination: give --widgets-dir DIR, --widget-bucket BUCKET, \
                 --dynamodb-widget-table TABLE or --destination_flag wb|dwt --destination_name NAME"
            ),
            1 => sinks.remove(0),
            _ => bail!("give one widget destination, not {}: {sinks:?}", sinks.len()),
        };
        Ok(RunConfig {
            source,
            sink,
            aws: AwsSettings::from(&args.aws),
            watch: args.watch,
            handler: HandlerSpec::from_args(&args.handler)?,
            options: Options {
                concurrency: usize::from(args.concurrency),
                until_empty: args.until_empty,
                ..Options::default()
            },
            max_runtime: (args.max_runtime_ms > 0).then(|| Duration::from_millis(args.max_runtime_ms)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn config(args: &[&str]) -> anyhow::Result<RunConfig> {
        let mut all = vec!["widget-host"];
        all.extend_from_slice(args);
        RunConfig::from_args(&Cli::try_parse_from(all).unwrap().run)
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
            (SourceSpec::S3Bucket("r".into()), SinkSpec::S3Bucket("w".into()))
        );
        let c = config(&["--requests-dir", "r", "--dynamodb-widget-table", "t"]).unwrap();
        assert_eq!(c.sink, SinkSpec::DynamoDbTable("t".into()));
        assert!(c.uses_aws());
        let c = config(&["--requests-dir", "r", "--widgets-dir", "w"]).unwrap();
        assert!(!c.uses_aws());
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
            .contains("not both")
        );
    }
}
