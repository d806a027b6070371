//! Everything AWS-specific that sources and sinks share.
//!
//! This file is the only place clients are built: credentials and region
//! from the standard chain (or `--profile` / `--region`), endpoint overrides
//! from `--endpoint-url` or the SDK's `AWS_ENDPOINT_URL*` variables,
//! path-style S3 addressing whenever an endpoint is overridden (local
//! servers need it), and a count of the HTTP requests sent. [`errors`]
//! classifies SDK errors, once; [`s3`] holds the S3 calls that both the S3
//! source and the S3 sink make, [`sqs`] the SQS calls of the queue source
//! and of `produce`.

pub(crate) mod errors;
pub(crate) mod s3;
pub(crate) mod sqs;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How to reach AWS, from the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AwsSettings {
    /// The profile to read credentials and region from.
    pub(crate) profile: Option<String>,
    /// The region, over the chain's.
    pub(crate) region: Option<String>,
    /// One endpoint for every service (a local server).
    pub(crate) endpoint_url: Option<String>,
}

/// The region used when an endpoint is overridden and none is configured:
/// local servers accept any.
const LOCAL_DEFAULT_REGION: &str = "us-east-1";

/// A single attempt that takes longer than this is abandoned and retried:
/// a server that accepts connections but never answers must not hang a run.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The clients of one run, and the count of HTTP requests they sent.
#[derive(Clone)]
pub(crate) struct Aws {
    /// The S3 client.
    pub(crate) s3: aws_sdk_s3::Client,
    /// The DynamoDB client.
    pub(crate) dynamodb: aws_sdk_dynamodb::Client,
    /// The SQS client.
    pub(crate) sqs: aws_sdk_sqs::Client,
    /// The HTTP requests they have sent.
    pub(crate) calls: ApiCalls,
}

impl Aws {
    /// Loads the configuration chain and builds the clients.
    pub(crate) async fn connect(settings: &AwsSettings) -> Aws {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        );
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &settings.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let mut shared = loader.load().await;
        let overridden = endpoint_overridden(settings);
        if shared.region().is_none() && overridden {
            shared = shared
                .into_builder()
                .region(aws_config::Region::new(LOCAL_DEFAULT_REGION))
                .build();
        }
        let calls = ApiCalls::default();
        let s3 = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(overridden)
            .interceptor(calls.clone())
            .build();
        let dynamodb = aws_sdk_dynamodb::config::Builder::from(&shared)
            .interceptor(calls.clone())
            .build();
        let sqs = aws_sdk_sqs::config::Builder::from(&shared)
            .interceptor(calls.clone())
            .build();
        Aws {
            s3: aws_sdk_s3::Client::from_conf(s3),
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb),
            sqs: aws_sdk_sqs::Client::from_conf(sqs),
            calls,
        }
    }
}

/// The AWS clients of one command, connected on first use: a command
/// whose places are all local folders never loads the configuration chain,
/// and no command asks in advance whether it will need AWS.
pub(crate) struct Clients {
    settings: AwsSettings,
    connected: tokio::sync::OnceCell<Aws>,
}

impl Clients {
    /// Clients that will connect with `settings` when first asked for.
    pub(crate) fn new(settings: AwsSettings) -> Clients {
        Clients {
            settings,
            connected: tokio::sync::OnceCell::new(),
        }
    }

    /// The clients, connected now if they were not yet.
    pub(crate) async fn get(&self) -> &Aws {
        self.connected.get_or_init(|| Aws::connect(&self.settings)).await
    }

    /// The count of HTTP requests sent, if anything was connected.
    pub(crate) fn calls(&self) -> Option<ApiCalls> {
        self.connected.get().map(|aws| aws.calls.clone())
    }
}

/// Whether requests go somewhere other than AWS's own endpoints.
fn endpoint_overridden(settings: &AwsSettings) -> bool {
    settings.endpoint_url.is_some()
        || [
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "AWS_ENDPOINT_URL_DYNAMODB",
            "AWS_ENDPOINT_URL_SQS",
        ]
        .iter()
        .any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty()))
}

/// Counts the HTTP requests the clients send, retries included, by
/// operation (`S3.GetObject`), and how many of them were the SDK's own
/// retries: the SDK's standard retry (up to 3 attempts of one call) runs
/// inside each call the host makes, and the host's `retry::Retry` around
/// it. Both are counted: the host's in the summary's `retries`, the SDK's
/// here.
#[derive(Debug, Clone, Default)]
pub(crate) struct ApiCalls {
    by_operation: Arc<Mutex<BTreeMap<String, u64>>>,
    sdk_retries: Arc<std::sync::atomic::AtomicU64>,
}

impl ApiCalls {
    /// The counts so far, by operation.
    pub(crate) fn snapshot(&self) -> BTreeMap<String, u64> {
        self.by_operation.lock().unwrap().clone()
    }

    /// How many of the requests sent were the SDK's retries of an attempt
    /// that failed.
    pub(crate) fn sdk_retries(&self) -> u64 {
        self.sdk_retries.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Intercept for ApiCalls {
    fn name(&self) -> &'static str {
        "ApiCalls"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let name = match cfg.load::<Metadata>() {
            Some(m) => format!("{}.{}", m.service(), m.name()),
            None => "unknown".to_owned(),
        };
        *self.by_operation.lock().unwrap().entry(name).or_default() += 1;
        if cfg
            .load::<RequestAttempts>()
            .is_some_and(|attempts| attempts.attempts() > 1)
        {
            self.sdk_retries
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }
}
