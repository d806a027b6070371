//! Flag groups that several commands share, each defined once with its
//! default, and turned into checked values here.

use super::UsageError;
use crate::aws::AwsSettings;
use crate::handler::{self, Limits};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// Where requests are: `run` reads them there, `produce` writes them there.
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
}

/// A folder, a bucket or a queue of requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestPlace {
    /// A local folder.
    Dir(PathBuf),
    /// An S3 bucket.
    Bucket(String),
    /// An SQS queue, by name or URL.
    Queue(String),
}

impl RequestPlace {
    /// Whether the place is on AWS.
    pub(crate) fn uses_aws(&self) -> bool {
        !matches!(self, RequestPlace::Dir(_))
    }
}

impl RequestPlaceArgs {
    /// The one place given; `role` names it in errors ("request source").
    pub(crate) fn place(&self, role: &str) -> Result<RequestPlace, UsageError> {
        let mut places: Vec<RequestPlace> = [
            self.requests_dir.clone().map(RequestPlace::Dir),
            self.request_bucket.clone().map(RequestPlace::Bucket),
            self.request_queue.clone().map(RequestPlace::Queue),
        ]
        .into_iter()
        .flatten()
        .collect();
        match places.len() {
            1 => Ok(places.remove(0)),
            0 => Err(UsageError(format!(
                "no {role}: give --requests-dir DIR, --request-bucket BUCKET or --request-queue QUEUE"
            ))),
            _ => Err(UsageError(format!(
                "give one {role}: --requests-dir, --request-bucket or --request-queue, not more"
            ))),
        }
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
    /// concurrency times this limit (see the README).
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

/// What a `--max-runtime MS` flag means: 0 is no limit.
pub(crate) fn max_runtime(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}
