//! An S3 bucket as the widget store: one object per key, JSON bodies.

use super::{MAX_DOCUMENT_BYTES, Read, Sink, too_large};
use crate::aws::s3::{BucketRole, Got, ObjectMeta, check_bucket, delete_object, get_object, put_object};
use crate::contract::Destination;
use crate::error::StorageError;
use aws_sdk_s3::Client;

/// Widgets in an S3 bucket.
pub(crate) struct S3Sink {
    client: Client,
    bucket: String,
}

impl S3Sink {
    /// A store in `bucket`, which must exist and be reachable.
    pub(crate) async fn open(client: Client, bucket: &str) -> Result<S3Sink, StorageError> {
        check_bucket(&client, bucket, BucketRole::Widget).await?;
        Ok(S3Sink {
            client,
            bucket: bucket.to_owned(),
        })
    }
}

#[async_trait::async_trait]
impl Sink for S3Sink {
    fn destination(&self) -> Destination {
        Destination::ObjectStore
    }

    fn describe(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    async fn put(&self, key: &str, document: &str) -> Result<(), StorageError> {
        put_object(
            &self.client,
            &self.bucket,
            key,
            document.as_bytes(),
            ObjectMeta::JSON,
        )
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        delete_object(&self.client, &self.bucket, key).await
    }
}

#[async_trait::async_trait]
impl Read for S3Sink {
    async fn get(&self, key: &str) -> Result<Option<String>, StorageError> {
        match get_object(&self.client, &self.bucket, key, MAX_DOCUMENT_BYTES).await? {
            Got::Missing => Ok(None),
            Got::Object(body, _) => String::from_utf8(body)
                .map(Some)
                .map_err(|e| StorageError::request(format!("read s3://{}/{key} as text", self.bucket), e)),
            Got::TooLarge(size, _) => Err(too_large(format!("read s3://{}/{key}", self.bucket), size)),
        }
    }
}
