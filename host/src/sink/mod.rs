//! Where widgets go: the stores a handler's operations are carried out on,
//! and that it reads through `store.get`. A sink knows keys and JSON
//! documents, never the Wasm runtime.

pub(crate) mod dir;
pub mod dynamodb;
pub mod memory;
pub(crate) mod recorded;
pub(crate) mod s3;
mod spec;

pub(crate) use spec::Spec;

use crate::contract::Destination;
use crate::error::StorageError;

/// The largest document `get` reads (64 MiB): a handler could not take in a
/// larger one under its default memory limit, and the host holds each
/// document read once per call in flight. A larger one is the request's
/// problem (`Class::Request`): its handler is told the document cannot be
/// read. (DynamoDB items are at most 400 KB anyway.)
pub(crate) const MAX_DOCUMENT_BYTES: u64 = 64 << 20;

/// The error for a document over [`MAX_DOCUMENT_BYTES`].
pub(crate) fn too_large(action: String, size: u64) -> StorageError {
    StorageError::request(
        action,
        format!("{size} bytes, more than a handler may be given ({MAX_DOCUMENT_BYTES})"),
    )
}

/// Read access to a store, and nothing else: what a handler's `store.get`
/// is given, so that no handler call can reach a put or a delete. Every
/// [`Sink`] reads too, and an `Arc<dyn Sink>` is given as an
/// `Arc<dyn Read>`; the recorded and replayed stores read only.
#[async_trait::async_trait]
pub trait Read: Send + Sync {
    /// The document at `key`, `None` when there is none.
    async fn get(&self, key: &str) -> Result<Option<String>, StorageError>;
}

/// A key-value store of JSON documents. Keys and documents are the
/// handler's; a sink only stores them (see `wit/handler.wit`).
#[async_trait::async_trait]
pub trait Sink: Read {
    /// What kind of store this is; the handler plans for it.
    fn destination(&self) -> Destination;

    /// A short name for logs: `dir:./widgets`, `s3://bucket`.
    fn describe(&self) -> String;

    /// Stores `document` at `key`, replacing what is there.
    async fn put(&self, key: &str, document: &str) -> Result<(), StorageError>;

    /// Removes the document at `key`; a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;
}
