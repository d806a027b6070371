//! Flag groups that several commands share, each defined once with its
//! default, and turned into checked values here, with no I/O: the name of
//! a place becomes a [`Place`] or a [`sink::Spec`], which the command then
//! opens.

use super::UsageError;
use crate::aws::AwsSettings;
use crate::handler::{self, Limits};
use crate::sink;
use crate::source::Place;
use crate::source::sqs::{MAX_WAIT_SECONDS, Receiving};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// Where requests are: `run` takes them from there, `produce` writes them
/// there, `diff` reads them, `redrive` moves dead letters back there.
#[derive(Debug, Clone, Default, Args)]
pub struct RequestPlaceArgs {
    /// Requests in this folder, one file each, taken in file-name order.
    #[arg(long, value_name = "DIR")]
    pub requests_dir: Option<PathBuf>,

    /// Requests in this S3 bucket, one object each, taken in key order.
    /// Also `-rb` and `--requests_bucket`, as the original consumer.py spelled it.
    #[arg(
        long,
        value_name = "BUCKET",
        visible_alias = "requests_bucket",
        alias = "requests-bucket"
    )]
    pub request_bucket: Option<String>,

    /// Requests in this SQS queue (a name or a queue URL), one message
    /// each; a FIFO queue keeps each widget's requests in order. Also `-rq`.
    #[arg(long, value_name = "URL_OR_NAME", visible_alias = "request_queue")]
    pub request_queue: Option<String>,

    /// With --request-queue: the queue (a name or URL) `run` sends rejected
    /// requests to, body unchanged, the reason in the message attribute
    /// `reason`, and `redrive` takes them back from. Without it, `run`
    /// leaves them in the request queue for its own redrive policy.
    #[arg(long, value_name = "URL_OR_NAME")]
    pub dead_letter_queue: Option<String>,
}

impl RequestPlaceArgs {
    /// The one place given; `role` names it in errors ("request source").
    pub(crate) fn place(&self, role: &str) -> Result<Place, UsageError> {
        self.place_or(role, None)
    }

    /// The one place given, counting `also` (a command's own spelling of
    /// one, like `diff`'s REQUESTS_DIR) among them.
    pub(crate) fn place_or(&self, role: &str, also: Option<Place>) -> Result<Place, UsageError> {
        if self.dead_letter_queue.is_some() && self.request_queue.is_none() {
            return Err(UsageError("--dead-letter-queue needs --request-queue".into()));
        }
        let given = [
            also,
            self.requests_dir.clone().map(Place::Dir),
            self.request_bucket.clone().map(Place::Bucket),
            self.request_queue.clone().map(|queue| Place::Queue {
                queue,
                dead_letters: self.dead_letter_queue.clone(),
                receiving: Receiving::default(),
            }),
        ];
        exactly_one(given, || {
            format!("{role}: --requests-dir DIR, --request-bucket BUCKET or --request-queue QUEUE")
        })
    }
}

/// Where `run` takes requests from, and how: the place, and what only
/// consuming it needs.
#[derive(Debug, Clone, Args)]
pub(crate) struct ConsumedPlaceArgs {
    #[command(flatten)]
    pub(crate) place: RequestPlaceArgs,

    /// How long one receive waits for messages (SQS long polling), 0 to 20.
    /// With --until-empty, the run ends once nothing is in flight and SQS
    /// counts no message in the queue, or a receive waited this long and
    /// found nothing (while the host holds messages, its receives wait at
    /// most 1 s).
    #[arg(long, value_name = "SECS", default_value_t = MAX_WAIT_SECONDS,
          value_parser = clap::value_parser!(u8).range(0..=i64::from(MAX_WAIT_SECONDS)))]
    queue_wait_seconds: u8,

    /// The visibility timeout to receive messages with (default: the
    /// queue's). The host extends it while it holds a message, so this is
    /// how soon another host takes over the messages of one that died.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u32).range(1..=43_200))]
    queue_visibility_seconds: Option<u32>,
}

impl ConsumedPlaceArgs {
    /// The one place given, a queue with how it is received from, for a
    /// run to its end or not (`until_empty`).
    pub(crate) fn place(&self, role: &str, until_empty: bool) -> Result<Place, UsageError> {
        Ok(match self.place.place(role)? {
            Place::Queue {
                queue, dead_letters, ..
            } => Place::Queue {
                queue,
                dead_letters,
                receiving: Receiving {
                    wait: Duration::from_secs(self.queue_wait_seconds.into()),
                    visibility: self
                        .queue_visibility_seconds
                        .map(|s| Duration::from_secs(s.into())),
                    until_empty,
                },
            },
            place => place,
        })
    }
}

/// Where widgets go.
#[derive(Debug, Clone, Default, Args)]
pub struct DestinationArgs {
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

impl DestinationArgs {
    /// The destination if one is given (more than one is an error).
    pub(crate) fn sink_if_given(&self) -> Result<Option<sink::Spec>, UsageError> {
        if self.is_empty() {
            return Ok(None);
        }
        self.sink().map(Some)
    }

    fn is_empty(&self) -> bool {
        self.widgets_dir.is_none()
            && self.widget_bucket.is_none()
            && self.dynamodb_widget_table.is_none()
            && self.destination_flag.is_none()
            && self.destination_name.is_none()
    }

    /// The one destination given, in whichever spelling.
    pub(crate) fn sink(&self) -> Result<sink::Spec, UsageError> {
        let named = match (self.destination_flag, &self.destination_name) {
            (Some(DestinationFlag::Wb), Some(name)) => Some(sink::Spec::S3Bucket(name.clone())),
            (Some(DestinationFlag::Dwt), Some(name)) => Some(sink::Spec::DynamoDbTable(name.clone())),
            (None, None) => None,
            (Some(_), None) => return Err(UsageError("--destination_flag needs --destination_name".into())),
            (None, Some(_)) => {
                return Err(UsageError(
                    "--destination_name needs --destination_flag wb|dwt".into(),
                ));
            }
        };
        let given = [
            named,
            self.widgets_dir.clone().map(sink::Spec::Dir),
            self.widget_bucket.clone().map(sink::Spec::S3Bucket),
            self.dynamodb_widget_table.clone().map(sink::Spec::DynamoDbTable),
        ];
        exactly_one(given, || {
            "widget destination: --widgets-dir DIR, --widget-bucket BUCKET, --dynamodb-widget-table TABLE \
             or --destination_flag wb|dwt --destination_name NAME"
                .into()
        })
    }
}

/// The one value given among `given`; `choices` says what they are,
/// `"<role>: <the flags>"`, for the errors: "no <role>: give <the flags>",
/// "give one <role>: <the flags>, not more (N given)".
fn exactly_one<T, const N: usize>(
    given: [Option<T>; N],
    choices: impl FnOnce() -> String,
) -> Result<T, UsageError> {
    let mut given: Vec<T> = given.into_iter().flatten().collect();
    match given.len() {
        1 => Ok(given.remove(0)),
        n => {
            let choices = choices();
            let (role, flags) = choices.split_once(": ").unwrap_or((&choices, ""));
            Err(UsageError(match n {
                0 => format!("no {role}: give {flags}"),
                _ => format!("give one {role}: {flags}, not more ({n} given)"),
            }))
        }
    }
}

/// Stop after a while: `run` finishes the requests in flight, `produce`
/// stops writing.
#[derive(Debug, Clone, Default, Args)]
pub struct MaxRuntimeArgs {
    /// Stop after this many milliseconds (0: no limit): `run` finishes the
    /// requests in flight, `produce` writes no more. Also `-mrt`.
    #[arg(long = "max-runtime", value_name = "MS", default_value_t = 0)]
    max_runtime_ms: u64,
}

impl MaxRuntimeArgs {
    /// The limit, if any.
    pub(crate) fn max_runtime(&self) -> Option<Duration> {
        (self.max_runtime_ms > 0).then(|| Duration::from_millis(self.max_runtime_ms))
    }
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

    /// Send every AWS request to this endpoint (a local S3, DynamoDB or SQS
    /// server); `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`,
    /// `AWS_ENDPOINT_URL_DYNAMODB` and `AWS_ENDPOINT_URL_SQS` work too. S3
    /// then uses path-style URLs.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
}

impl AwsArgs {
    pub(crate) fn settings(&self) -> AwsSettings {
        AwsSettings {
            profile: self.profile.clone(),
            region: self.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
        }
    }
}

/// The largest request a command reads.
#[derive(Debug, Clone, Args)]
pub struct RequestSizeArgs {
    /// Requests larger than this many bytes are dead-lettered unread (the
    /// listing's size is checked before reading), and `redrive` leaves dead
    /// letters larger than this unread. Memory then stays bounded by the
    /// concurrency times this limit (see docs/limits.md).
    #[arg(long, value_name = "BYTES", default_value_t = crate::pipeline::DEFAULT_MAX_REQUEST_BYTES,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_request_bytes: u64,
}

/// The handler's limits, for every command that runs one.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Computing time one handler call may take, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = Limits::DEFAULT_TIME_MS)]
    pub handler_timeout_ms: u64,

    /// Memory one handler call may use, in MiB: all its linear memories and
    /// tables together.
    #[arg(long, value_name = "MIB", default_value_t = Limits::DEFAULT_MEMORY_MIB)]
    pub handler_memory_mb: usize,

    /// Bytes one handler call may log (each line counts 100 bytes more);
    /// past it the message is cut and the rest of the call's log dropped.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::DEFAULT_LOG_BYTES)]
    pub handler_log_bytes: usize,

    /// Operations one plan may have; a plan with more dead-letters its request.
    #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT_PLAN_OPERATIONS)]
    pub max_plan_operations: usize,

    /// Bytes of keys and documents one plan may hold; a larger plan
    /// dead-letters its request.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::DEFAULT_PLAN_BYTES)]
    pub max_plan_bytes: usize,

    /// Let one handler instance serve up to N requests in a row (0: a
    /// fresh instance for every request, the default). Much faster for
    /// interpreted handlers (Python, JavaScript), at a cost in isolation: a
    /// request can see what earlier ones left in the instance's memory, and
    /// --handler-memory-mb bounds the instance over all its calls. An
    /// instance whose call fails is never reused.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub handler_reuse: usize,

    /// Do not keep compiled handlers in wasmtime's on-disk cache.
    #[arg(long)]
    pub no_compile_cache: bool,
}

impl LimitArgs {
    /// The handler `choice` under these limits.
    pub(crate) fn spec(&self, choice: handler::Choice) -> Result<handler::Spec, UsageError> {
        if self.handler_timeout_ms == 0 {
            return Err(UsageError("--handler-timeout-ms must be at least 1".into()));
        }
        if self.handler_memory_mb == 0 {
            return Err(UsageError("--handler-memory-mb must be at least 1".into()));
        }
        let memory = self
            .handler_memory_mb
            .checked_mul(1 << 20)
            .ok_or_else(|| UsageError("--handler-memory-mb is too large".into()))?;
        Ok(handler::Spec {
            choice,
            limits: Limits {
                time: Duration::from_millis(self.handler_timeout_ms),
                memory,
                log_bytes: self.handler_log_bytes,
                plan_operations: self.max_plan_operations,
                plan_bytes: self.max_plan_bytes,
                reuse: self.handler_reuse,
            },
            compile_cache: !self.no_compile_cache,
        })
    }
}
