//! Where requests come from.
//!
//! A source lists request keys in order, a page at a time, from a watermark
//! it keeps itself; the pipeline reads each request, and tells the source
//! to remove it (`ack`) only once its effects are stored, or to move it to
//! the dead-letter place with a reason.

pub(crate) mod dir;
pub(crate) mod s3;

use crate::error::StorageError;

/// One page of a listing.
#[derive(Debug, Default)]
pub(crate) struct Page {
    /// Request keys, ascending. Keys already being processed may be among
    /// them: the pipeline skips those.
    pub(crate) keys: Vec<String>,
    /// This page is the first of a pass over the whole source.
    pub(crate) from_start: bool,
    /// This page is the last of the pass: the next one starts from the
    /// first key again, so requests that arrive with smaller keys are seen.
    pub(crate) reached_end: bool,
}

#[async_trait::async_trait]
/// A place requests come from, in key order.
pub(crate) trait Source: Send + Sync {
    /// A short name for logs: `dir:./requests`, `s3://bucket`.
    fn describe(&self) -> String;

    /// Where dead-lettered requests end up, for the summary.
    fn dead_letter_place(&self) -> String;

    /// The next page of request keys after the watermark.
    async fn list(&self) -> Result<Page, StorageError>;

    /// A request's bytes; `None` if it is gone (processed meanwhile).
    async fn read(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;

    /// Removes a request whose effects are stored.
    async fn ack(&self, key: &str) -> Result<(), StorageError>;

    /// Moves a request, bytes unchanged, to the dead-letter place with the
    /// reason beside it, and removes it from the source.
    async fn dead_letter(&self, key: &str, body: &[u8], reason: &str) -> Result<(), StorageError>;
}
