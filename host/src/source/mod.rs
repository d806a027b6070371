//! Where requests come from.
//!
//! A source lists request keys in order, a page at a time, from a watermark
//! it keeps itself; the pipeline reads each request, and tells the source
//! to remove it (`ack`) only once its effects are stored, or to move it to
//! the dead-letter place with a reason. Removing takes the [`Version`] that
//! was read: a request written under the same key meanwhile is a new
//! request, left for its own turn.

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

/// Which version of a request was read, so that exactly that one is
/// removed: an S3 object's ETag. `None` where the source cannot tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Version(pub(crate) Option<String>);

#[async_trait::async_trait]
/// A place requests come from, in key order.
pub(crate) trait Source: Send + Sync {
    /// A short name for logs: `dir:./requests`, `s3://bucket`.
    fn describe(&self) -> String;

    /// Where dead-lettered requests end up, for the summary.
    fn dead_letter_place(&self) -> String;

    /// The next page of request keys after the watermark.
    async fn list(&self) -> Result<Page, StorageError>;

    /// A request's bytes and version; `None` if it is gone (processed
    /// meanwhile).
    async fn read(&self, key: &str) -> Result<Option<(Vec<u8>, Version)>, StorageError>;

    /// Removes the request read as `version`, whose effects are stored.
    async fn ack(&self, key: &str, version: &Version) -> Result<(), StorageError>;

    /// Puts `body`, the request read as `version`, in the dead-letter place
    /// with the reason beside it, and removes it from the source.
    async fn dead_letter(
        &self,
        key: &str,
        version: &Version,
        body: &[u8],
        reason: &str,
    ) -> Result<(), StorageError>;
}
