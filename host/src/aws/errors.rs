//! SDK errors classified once, at the boundary, into the host's three
//! classes (see [`Class`]). The retryable codes are the SDK's own lists
//! (`aws-runtime`'s `THROTTLING_ERRORS` and `TRANSIENT_ERRORS`), not a copy.

use crate::error::{Class, StorageError};
use aws_runtime::retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::error::display::DisplayErrorContext;

/// Codes that say the caller's credentials, permissions, clock or
/// configuration are wrong, for every request alike.
const ENVIRONMENT_ERRORS: &[&str] = &[
    // Credentials.
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidToken",
    "InvalidAccessKeyId",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "MissingAuthenticationTokenException",
    "AuthFailure",
    // Permissions.
    "AccessDenied",
    "AccessDeniedException",
    "AllAccessDisabled",
    "AccountProblem",
    // Clock skew.
    "RequestTimeTooSkewed",
    "RequestExpired",
    // The bucket, table or queue is gone.
    "NoSuchBucket",
    "ResourceNotFoundException",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
];

/// `error`, met while doing `action`, as a [`StorageError`]:
/// - transient: a timeout, a connection failure, a server error (5xx), 429,
///   a throttling or transient code;
/// - fatal: 401, 403, or a code in [`ENVIRONMENT_ERRORS`], or a request the
///   SDK could not even build (no credentials, say);
/// - the request's: any other answer of the service (a 4xx about this
///   request's data: a key too long, an item too large).
pub(crate) fn storage_error<E>(action: impl Into<String>, error: SdkError<E, HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (class, throttling) = match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            (Class::Transient, false)
        }
        SdkError::ServiceError(service) => {
            let (status, code) = (service.raw().status().as_u16(), service.err().code());
            (service_error_class(status, code), asks_to_slow_down(status, code))
        }
        // ConstructionFailure and whatever comes later: nothing was sent, so
        // nothing about this request was judged.
        _ => (Class::Fatal, false),
    };
    let mut storage_error = StorageError::new(action, class, describe(&error));
    storage_error.throttling = throttling;
    storage_error
}

/// The longest description of an SDK error that is not the service's
/// answer (a timeout, a connection failure): their chains can carry whole
/// debug dumps.
const MAX_DESCRIPTION: usize = 300;

/// One short line for an SDK error: for the service's answer its error
/// code and message, HTTP status and request id, never the SDK's debug
/// dump of headers and body bytes (a retry logs it every time).
fn describe<E>(error: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let SdkError::ServiceError(service) = error else {
        let mut text = DisplayErrorContext(error).to_string();
        if text.len() > MAX_DESCRIPTION {
            text.truncate(text.floor_char_boundary(MAX_DESCRIPTION));
            text.push_str("...");
        }
        return text;
    };
    let (err, raw) = (service.err(), service.raw());
    let mut text = format!(
        "{}: {} (HTTP {}",
        err.code().unwrap_or("no error code"),
        err.message().unwrap_or("no message"),
        raw.status().as_u16()
    );
    let headers = raw.headers();
    if let Some(id) = headers
        .get("x-amz-request-id")
        .or_else(|| headers.get("x-amzn-requestid"))
    {
        text.push_str(", request id ");
        text.push_str(id);
    }
    text.push(')');
    text
}

/// Codes about one object that a 403 carries: not the caller's fault.
const OBJECT_ERRORS: &[&str] = &[
    // An object in an archive storage class (Glacier) cannot be read.
    "InvalidObjectState",
];

fn service_error_class(status: u16, code: Option<&str>) -> Class {
    if is_server_error(status) || asks_to_slow_down(status, code) || is_transient_code(code) {
        Class::Transient
    } else if code.is_some_and(|c| OBJECT_ERRORS.contains(&c)) {
        Class::Request
    } else if status == 401 || status == 403 || code.is_some_and(|c| ENVIRONMENT_ERRORS.contains(&c)) {
        Class::Fatal
    } else {
        Class::Request
    }
}

fn is_server_error(status: u16) -> bool {
    (500..600).contains(&status)
}

/// The service asks the caller to slow down: 429, or a throttling code.
fn asks_to_slow_down(status: u16, code: Option<&str>) -> bool {
    status == 429 || is_throttling(code)
}

/// A throttling code.
fn is_throttling(code: Option<&str>) -> bool {
    code.is_some_and(|code| THROTTLING_ERRORS.contains(&code))
}

/// The service timed out on its side (`RequestTimeout`).
fn is_transient_code(code: Option<&str>) -> bool {
    code.is_some_and(|code| TRANSIENT_ERRORS.contains(&code))
}

/// One entry of a batch call that failed while the call succeeded (SQS's
/// `BatchResultErrorEntry`), as a [`StorageError`]: throttling (a code in
/// the SDK's list, or one of SQS's entry codes that say so) is transient
/// and slows down; otherwise the service says whether the sender is at
/// fault (the request's) or not (transient: the entry may succeed when sent
/// again).
pub(crate) fn batch_entry_error(
    action: &str,
    code: &str,
    message: Option<&str>,
    sender_fault: bool,
) -> StorageError {
    // SQS's entry codes for throttling are not all in the SDK's list
    // (`AWS.SimpleQueueService.Throttled`...).
    let throttling = is_throttling(Some(code)) || code.contains("Throttl");
    let class = match throttling || !sender_fault {
        true => Class::Transient,
        false => Class::Request,
    };
    let cause = format!("{code}: {}", message.unwrap_or("no message"));
    let mut error = StorageError::new(action, class, cause);
    error.throttling = throttling;
    error
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
    fn a_service_error_is_one_short_line_with_code_message_status_and_request_id() {
        let mut response = HttpResponse::new(
            StatusCode::try_from(503).unwrap(),
            SdkBody::from("x".repeat(4000)),
        );
        response.headers_mut().insert("x-amz-request-id", "REQ123");
        let error: SdkError<GetItemError, HttpResponse> = SdkError::service_error(
            GetItemError::generic(
                ErrorMetadata::builder()
                    .code("SlowDown")
                    .message("Please reduce your request rate.")
                    .build(),
            ),
            response,
        );
        let error = storage_error("put widgets/a/w1 in bucket b", error);
        assert_eq!(
            error.to_string(),
            "put widgets/a/w1 in bucket b: SlowDown: Please reduce your request rate. (HTTP 503, request id REQ123)"
        );
        let timeout: SdkError<GetItemError, HttpResponse> = SdkError::timeout_error("y".repeat(5000));
        assert!(storage_error("get x", timeout).to_string().len() < 400);
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
            (400, "TooManyRequestsException"),
            (400, "LimitExceededException"),
        ] {
            let error = storage_error("get x", service_error(status, code));
            assert!(error.is_transient(), "{status} {code}");
            assert!(error.to_string().starts_with("get x: "), "{error}");
            // Only the answers that ask for fewer requests lower concurrency.
            let asks_to_slow_down = !matches!(
                code,
                "ServiceUnavailable" | "InternalServerError" | "RequestTimeout"
            );
            assert_eq!(error.throttling, asks_to_slow_down, "{status} {code}");
        }
    }

    #[test]
    fn credentials_permissions_clock_skew_and_missing_resources_are_fatal() {
        for (status, code) in [
            (400, "ExpiredTokenException"),
            (400, "ExpiredToken"),
            (403, "ExpiredToken"),
            (403, "InvalidAccessKeyId"),
            (403, "SignatureDoesNotMatch"),
            (403, "RequestTimeTooSkewed"),
            (400, "UnrecognizedClientException"),
            (400, "AccessDeniedException"),
            (403, "AccessDenied"),
            (403, ""),
            (401, ""),
            (404, "NoSuchBucket"),
            (400, "ResourceNotFoundException"),
        ] {
            let error = storage_error("put x", service_error(status, code));
            assert_eq!(error.class, Class::Fatal, "{status} {code}");
        }
    }

    #[test]
    fn errors_about_the_requests_own_data_are_the_requests() {
        for (status, code) in [
            (400, "ValidationException"),
            (400, "KeyTooLongError"),
            (403, "InvalidObjectState"),
            (400, "EntityTooLarge"),
            (400, "InvalidArgument"),
        ] {
            let error = storage_error("put x", service_error(status, code));
            assert_eq!(error.class, Class::Request, "{status} {code}");
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
