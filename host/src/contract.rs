//! The handler contract's data, as plain Rust: what `wit/handler.wit` says a
//! handler is told and what it answers. Sinks and the pipeline use these
//! types; only `handler/` knows they cross a Wasm boundary.

/// The kind of store a handler plans for (`destination` in the WIT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// An S3 bucket or a local folder: one JSON document per key.
    ObjectStore,
    /// A DynamoDB table: one item per key, its attributes the document's
    /// top-level fields.
    Table,
}

/// What the host tells a handler about one request.
#[derive(Debug, Clone)]
pub struct Context {
    /// The request's key in its source.
    pub key: String,
    /// The kind of store the operations are for.
    pub destination: Destination,
}

/// One storage operation of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Store `document` at `key`, replacing what is there.
    Put {
        /// The store key.
        key: String,
        /// The JSON document.
        document: String,
    },
    /// Remove what is at this key; a missing key is not an error.
    Delete(String),
}

/// A handler's answer to a request it accepts.
#[derive(Debug, Clone)]
pub struct Plan {
    /// What the request was (`create`, ...), counted in the summary.
    pub kind: String,
    /// The operations, carried out in order.
    pub operations: Vec<Operation>,
}
