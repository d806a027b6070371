//! Where widgets go, as the user named it: a folder, a bucket or a table.
//! Opened here and nowhere else, to be written (`run`) or only read
//! (`diff`, `redrive --handler`).

use super::Sink;
use super::dir::DirSink;
use super::dynamodb::DynamoDbSink;
use super::s3::S3Sink;
use crate::aws::Clients;
use crate::error::StorageError;
use std::path::PathBuf;
use std::sync::Arc;

/// A widget store, named and not yet opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Spec {
    /// A local folder, in the S3 layout.
    Dir(PathBuf),
    /// An S3 bucket.
    S3Bucket(String),
    /// A DynamoDB table.
    DynamoDbTable(String),
}

impl Spec {
    /// Opens the store to write widgets into: a folder is made if missing.
    pub(crate) async fn open(&self, clients: &Clients) -> Result<Arc<dyn Sink>, StorageError> {
        Ok(match self {
            Spec::Dir(path) => Arc::new(DirSink::open(path)?),
            Spec::S3Bucket(bucket) => Arc::new(S3Sink::open(clients.get().await.s3.clone(), bucket).await?),
            Spec::DynamoDbTable(table) => {
                Arc::new(DynamoDbSink::open(clients.get().await.dynamodb.clone(), table).await?)
            }
        })
    }

    /// Opens the store only to read it: a folder is neither made nor swept.
    pub(crate) async fn open_to_read(&self, clients: &Clients) -> Result<Arc<dyn Sink>, StorageError> {
        match self {
            Spec::Dir(path) => Ok(Arc::new(DirSink::open_read_only(path))),
            spec => spec.open(clients).await,
        }
    }
}
