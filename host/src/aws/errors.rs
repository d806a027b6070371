//! SDK errors classified once, at the boundary, into the host's two
//! classes. The codes are the SDK's own lists (`aws-runtime`'s
//! `THROTTLING_ERRORS` and `TRANSIENT_ERRORS`), not a copy of them.

use crate::error::{Class, StorageError};
use aws_runtime::retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::error::display::DisplayErrorContext;

/// `error`, met while doing `action`, as a [`StorageError`]: a server error
/// (5xx), 429, a throttling or transient error code, a timeout or a
/// connection failure is transient; the rest is permanent.
pub(crate) fn storage_error<E>(action: impl Into<String>, error: SdkError<E, HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let class = match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Class::Transient
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code();
            if is_server_error(status) || status == 429 || is_throttling(code) || is_transient_code(code) {
                Class::Transient
            } else {
                Class::Permanent
            }
        }
        _ => Class::Permanent,
    };
    StorageError::new(action, class, DisplayErrorContext(&error).to_string())
}

fn is_server_error(status: u16) -> bool {
    (500..600).contains(&status)
}

/// The service asks the caller to slow down.
fn is_throttling(code: Option<&str>) -> bool {
    code.is_some_and(|code| THROTTLING_ERRORS.contains(&code))
}

/// The service timed out on its side (`RequestTimeout`).
fn is_transient_code(code: Option<&str>) -> bool {
    code.is_some_and(|code| TRANSIENT_ERRORS.contains(&code))
}

/// The HTTP status of a service error, if it is one.
pub(crate) fn status<E>(error: &SdkError<E, HttpResponse>) -> Option<u16> {
    match error {
        SdkError::ServiceError(service) => Some(service.raw().status().as_u16()),
        _ => None,
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
            (400, "RequestTimeout"),
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
