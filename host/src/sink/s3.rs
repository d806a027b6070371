//! An S3 bucket as the widget store: one object per key, JSON bodies.

use super::{Sink, SinkError};
use crate::aws::{status, storage_error};
use crate::runtime::Destination;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;

/// Widgets in an S3 bucket.
pub struct S3Sink {
    client: Client,
    bucket: String,
}

impl S3Sink {
    /// A store in `bucket`, which must exist and be reachable.
    pub async fn open(client: Client, bucket: &str) -> Result<S3Sink, SinkError> {
        check_bucket(&client, bucket, "widget").await?;
        Ok(S3Sink {
            client,
            bucket: bucket.to_owned(),
        })
    }
}

/// Fails with an error naming the bucket when it is missing or denied.
pub async fn check_bucket(client: &Client, bucket: &str, role: &str) -> Result<(), SinkError> {
    match client.head_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let why = match status(&e) {
                Some(404) => "it does not exist".to_owned(),
                Some(403) => "access is denied".to_owned(),
                _ => return Err(storage_error(format!("reach {role} bucket {bucket:?}"), e)),
            };
            Err(SinkError::new(
                format!("use {role} bucket {bucket:?}"),
                false,
                why,
            ))
        }
    }
}

/// Reads an object's body; `None` if there is no such key.
pub async fn get_object(client: &Client, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, SinkError> {
    let action = || format!("get s3://{bucket}/{key}");
    let object = match client.get_object().bucket(bucket).key(key).send().await {
        Ok(object) => object,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
        Err(e) => return Err(storage_error(action(), e)),
    };
    // A body cut off mid-way is a network failure: transient.
    let body = object
        .body
        .collect()
        .await
        .map_err(|e| SinkError::new(action(), true, e))?;
    Ok(Some(body.into_bytes().to_vec()))
}

/// Deletes an object; a missing key is not an error (S3 says so too).
pub async fn delete_object(client: &Client, bucket: &str, key: &str) -> Result<(), SinkError> {
    client
        .delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| storage_error(format!("delete s3://{bucket}/{key}"), e))?;
    Ok(())
}

#[async_trait::async_trait]
impl Sink for S3Sink {
    fn destination(&self) -> Destination {
        Destination::ObjectStore
    }

    fn describe(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    async fn get(&self, key: &str) -> Result<Option<String>, SinkError> {
        match get_object(&self.client, &self.bucket, key).await? {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|e| SinkError::new(format!("read s3://{}/{key} as text", self.bucket), false, e)),
        }
    }

    async fn put(&self, key: &str, document: &str) -> Result<(), SinkError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(document.as_bytes().to_vec()))
            .send()
            .await
            .map_err(|e| storage_error(format!("put s3://{}/{key}", self.bucket), e))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), SinkError> {
        delete_object(&self.client, &self.bucket, key).await
    }
}
