//! Where requests are, as the user named it: a folder, a bucket or a queue.
//! Checked for what a command means to do with it before any I/O
//! ([`Place::check`]), then opened for that, here and nowhere else.

use super::dir::{DirSource, DirWriter};
use super::s3::{S3Source, S3Writer};
use super::sqs::{QueueDeadLetters, QueueOptions, QueueWriter, Receiving, SqsSource};
use super::{DeadLetters, Source, Writer};
use crate::aws::Clients;
use crate::error::{StorageError, UsageError};
use crate::retry::Retry;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A folder, a bucket or a queue of requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    /// A local folder.
    Dir(PathBuf),
    /// An S3 bucket.
    Bucket(String),
    /// An SQS queue, by name or URL, the queue its rejected requests go
    /// to, if one is named, and how it is received from.
    Queue {
        queue: String,
        dead_letters: Option<String>,
        receiving: Receiving,
    },
}

/// What a command does with a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// Take requests and remove them once done (`run`).
    Consume,
    /// Read requests and leave them where they are (`diff`).
    Read,
    /// Move dead letters back (`redrive`).
    Redrive,
    /// Write new requests (`produce`, `demo`).
    Write,
}

impl Place {
    /// Whether this kind of place can be used so; a usage error saying why
    /// not. No I/O.
    pub(crate) fn check(&self, wanted: Use) -> Result<(), UsageError> {
        match (self, wanted) {
            (Place::Queue { .. }, Use::Read) => Err(UsageError(
                "a queue's messages cannot be read and left in place (receiving one hides it from \
                 every other consumer): give a folder or a bucket of requests"
                    .into(),
            )),
            (
                Place::Queue {
                    dead_letters: None, ..
                },
                Use::Redrive,
            ) => Err(UsageError(
                "redrive -rq needs --dead-letter-queue QUEUE, the queue `run` sent the rejected requests \
                 to; a queue's own redrive policy is redriven by SQS itself (StartMessageMoveTask)"
                    .into(),
            )),
            (
                Place::Queue {
                    dead_letters: Some(_),
                    ..
                },
                Use::Write,
            ) => Err(UsageError(
                "--dead-letter-queue is for run and redrive: produce writes requests only".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Opens the place to take requests from and remove them once done.
    /// A receive under way at `stop` is let end within `stop_grace`; a
    /// queue's rejected requests go to its dead-letter queue if it names
    /// one.
    pub(crate) async fn open(
        &self,
        clients: &Clients,
        stop: CancellationToken,
        stop_grace: std::time::Duration,
    ) -> Result<Arc<dyn Source>, StorageError> {
        Ok(match self {
            Place::Dir(path) => Arc::new(DirSource::open(path)?),
            Place::Bucket(bucket) => Arc::new(S3Source::open(clients.get().await.s3.clone(), bucket).await?),
            Place::Queue {
                queue: name,
                dead_letters,
                receiving,
            } => {
                let options = QueueOptions {
                    receiving: *receiving,
                    dead_letters: dead_letters.clone(),
                    stop_grace,
                };
                Arc::new(SqsSource::open(clients.get().await.sqs.clone(), name, options, stop).await?)
            }
        })
    }

    /// Opens the place to read requests and leave them: nothing in it is
    /// written, swept or removed.
    pub(crate) async fn open_to_read(&self, clients: &Clients) -> Result<Arc<dyn Source>, StorageError> {
        Ok(match self {
            Place::Dir(path) => Arc::new(DirSource::open_read_only(path)?),
            Place::Bucket(bucket) => {
                Arc::new(S3Source::open_read_only(clients.get().await.s3.clone(), bucket).await?)
            }
            Place::Queue { .. } => return Err(self.refused(Use::Read)),
        })
    }

    /// Opens the place's dead letters; with `look_only`, for a look that
    /// moves nothing (a queue's are received all the same, and made
    /// visible again when the look is over).
    pub(crate) async fn open_dead_letters(
        &self,
        clients: &Clients,
        look_only: bool,
    ) -> Result<Box<dyn DeadLetters>, StorageError> {
        Ok(match self {
            Place::Dir(path) if look_only => Box::new(DirSource::open_read_only(path)?),
            Place::Dir(path) => Box::new(DirSource::open(path)?),
            // A redrive moves dead letters with calls of its own: no probe
            // of how the server deletes.
            Place::Bucket(bucket) => {
                Box::new(S3Source::open_read_only(clients.get().await.s3.clone(), bucket).await?)
            }
            Place::Queue {
                queue,
                dead_letters: Some(dead_letters),
                ..
            } => {
                Box::new(QueueDeadLetters::open(clients.get().await.sqs.clone(), queue, dead_letters).await?)
            }
            Place::Queue {
                dead_letters: None, ..
            } => return Err(self.refused(Use::Redrive)),
        })
    }

    /// Opens the place to write new requests into, each write retried
    /// through `retry`.
    pub(crate) async fn open_writer(
        &self,
        clients: &Clients,
        retry: Retry,
    ) -> Result<Box<dyn Writer>, StorageError> {
        Ok(match self {
            Place::Dir(path) => Box::new(DirWriter::open(path, retry)?),
            Place::Bucket(bucket) => {
                Box::new(S3Writer::open(clients.get().await.s3.clone(), bucket, retry).await?)
            }
            Place::Queue { queue, .. } => {
                Box::new(QueueWriter::open(clients.get().await.sqs.clone(), queue, retry).await?)
            }
        })
    }

    /// What [`Place::check`] says, as the error of an open: a command that
    /// skipped its check gets the same answer, never a panic.
    fn refused(&self, wanted: Use) -> StorageError {
        let why = self
            .check(wanted)
            .err()
            .map_or_else(|| "not supported".into(), |e| e.0);
        StorageError::fatal(format!("open {} ({wanted:?})", self.describe()), why)
    }

    /// A short name for messages: `dir:requests`, `s3://requests`,
    /// `sqs:requests.fifo`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Place::Dir(path) => format!("dir:{}", path.display()),
            Place::Bucket(bucket) => format!("s3://{bucket}"),
            Place::Queue { queue, .. } => format!("sqs:{queue}"),
        }
    }
}
