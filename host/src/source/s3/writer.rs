//! Writing new requests into a bucket (`produce`, `demo`).

use crate::aws::s3::{BucketRole, ObjectMeta, check_bucket, put_object};
use crate::error::StorageError;
use crate::retry::Retry;
use crate::source::{NewRequest, Writer, write_retried};
use aws_sdk_s3::Client;

/// Writes new requests into a bucket, an object each, named by its key,
/// as JSON (`Content-Type: application/json`).
pub(crate) struct S3Writer {
    client: Client,
    bucket: String,
    retry: Retry,
}

impl S3Writer {
    /// A writer into `bucket`, which must exist and be reachable.
    pub(crate) async fn open(client: Client, bucket: &str, retry: Retry) -> Result<S3Writer, StorageError> {
        check_bucket(&client, bucket, BucketRole::Request).await?;
        Ok(S3Writer {
            client,
            bucket: bucket.to_owned(),
            retry,
        })
    }
}

#[async_trait::async_trait]
impl Writer for S3Writer {
    fn describe(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    async fn write(&mut self, request: NewRequest, _now: bool) -> Result<(), StorageError> {
        let action = || format!("write request s3://{}/{}", self.bucket, request.key);
        write_retried(&self.retry, action, || {
            put_object(
                &self.client,
                &self.bucket,
                &request.key,
                request.body.as_bytes(),
                ObjectMeta::JSON,
            )
        })
        .await
    }
}
