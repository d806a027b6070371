//! The only place AWS clients are built: credentials and region from the
//! standard chain (or `--profile` / `--region`), endpoint overrides from
//! `--endpoint-url` or the SDK's `AWS_ENDPOINT_URL*` variables, path-style
//! S3 addressing whenever an endpoint is overridden (local servers need it),
//! and the classification of SDK errors into transient and permanent.

use crate::error::StorageError;
use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, Metadata};
use aws_smithy_types::error::display::DisplayErrorContext;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How to reach AWS, from the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    /// The profile to read credentials and region from.
    pub profile: Option<String>,
    /// The region, over the chain's.
    pub region: Option<String>,
    /// One endpoint for every service (a local server).
    pub endpoint_url: Option<String>,
}

/// The region used when an endpoint is overridden and none is configured:
/// local servers accept any.
const LOCAL_DEFAULT_REGION: &str = "us-east-1";

/// A single attempt that takes longer than this is abandoned and retried:
/// a server that accepts connections but never answers must not hang a run.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The clients of one run, and the count of HTTP requests they sent.
#[derive(Clone)]
pub struct Aws {
    /// The S3 client.
    pub s3: aws_sdk_s3::Client,
    /// The DynamoDB client.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// The HTTP requests both have sent.
    pub calls: ApiCalls,
}

impl Aws {
    /// Loads the configuration chain and builds the clients.
    pub async fn connect(settings: &AwsSettings) -> Aws {
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
        Aws {
            s3: aws_sdk_s3::Client::from_conf(s3),
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb),
            calls,
        }
    }
}

/// Whether requests go somewhere other than AWS's own endpoints.
fn endpoint_overridden(settings: &AwsSettings) -> bool {
    settings.endpoint_url.is_some()
        || [
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "AWS_ENDPOINT_URL_DYNAMODB",
        ]
        .iter()
        .any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty()))
}

/// Classifies an SDK error once, at the boundary: throttling, 5xx,
/// timeouts and connection failures are transient; the rest is permanent.
pub fn storage_error<E>(action: impl Into<String>, error: SdkError<E, HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let transient = match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            status >= 500 || status == 429 || is_throttling(service.err().code())
        }
        _ => false,
    };
    StorageError::new(action, transient, DisplayErrorContext(&error).to_string())
}

fn is_throttling(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "Throttling"
                | "ThrottlingException"
                | "ThrottledException"
                | "RequestThrottled"
                | "RequestThrottledException"
                | "ProvisionedThroughputExceededException"
                | "RequestLimitExceeded"
                | "SlowDown"
                | "InternalError"
                | "ServiceUnavailable"
                | "TransactionInProgressException"
        )
    )
}

/// The HTTP status of a service error, if it is one.
pub fn status<E>(error: &SdkError<E, HttpResponse>) -> Option<u16> {
    match error {
        SdkError::ServiceError(service) => Some(service.raw().status().as_u16()),
        _ => None,
    }
}

/// Counts the HTTP requests the clients send, retries included, by
/// operation (`S3.GetObject`).
#[derive(Debug, Clone, Default)]
pub struct ApiCalls(Arc<Mutex<BTreeMap<String, u64>>>);

impl ApiCalls {
    /// The counts so far, by operation.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap().clone()
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
        *self.0.lock().unwrap().entry(name).or_default() += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::get_item::GetItemError;
    use aws_sdk_s3::error::ErrorMetadata;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    fn service_error(status: u16, code: &str) -> SdkError<GetItemError, HttpResponse> {
        let response = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        SdkError::service_error(
            GetItemError::generic(ErrorMetadata::builder().code(code).build()),
            response,
        )
    }

    #[test]
    fn throttling_and_server_errors_are_transient() {
        for (status, code) in [
            (503, "ServiceUnavailable"),
            (500, "InternalServerError"),
            (429, "TooManyRequests"),
            (400, "ThrottlingException"),
            (400, "ProvisionedThroughputExceededException"),
            (503, "SlowDown"),
        ] {
            let error = storage_error("get x", service_error(status, code));
            assert!(error.is_transient(), "{status} {code}");
            assert!(error.to_string().starts_with("get x: "), "{error}");
        }
    }

    #[test]
    fn client_errors_are_permanent() {
        for (status, code) in [
            (400, "ValidationException"),
            (403, "AccessDenied"),
            (404, "NoSuchBucket"),
        ] {
            assert!(
                !storage_error("get x", service_error(status, code)).is_transient(),
                "{status} {code}"
            );
        }
    }

    #[test]
    fn timeouts_and_connection_failures_are_transient() {
        let timeout: SdkError<GetItemError, HttpResponse> = SdkError::timeout_error("slow");
        assert!(storage_error("get x", timeout).is_transient());
        let refused: SdkError<GetItemError, HttpResponse> = SdkError::dispatch_failure(
            aws_smithy_runtime_api::client::result::ConnectorError::io("connection refused".into()),
        );
        assert!(storage_error("get x", refused).is_transient());
    }
}
