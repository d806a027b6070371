//! The error every source and sink returns: what was being done, and whether
//! trying again later may succeed.

use std::error::Error as StdError;

/// A failed storage call.
#[derive(Debug, thiserror::Error)]
#[error("{action}: {cause}")]
pub struct StorageError {
    /// What was being done, naming the resource: `put widgets/a/1 in ./widgets`.
    pub action: String,
    /// Throttling, a server down, a timeout: retry with backoff. Anything
    /// else (access denied, a missing bucket, a malformed key) will fail
    /// again the same way.
    pub transient: bool,
    /// What went wrong. Not the error's `source()`: the message already
    /// includes it, and error chains (`{:#}`) would say it twice.
    pub cause: Box<dyn StdError + Send + Sync>,
}

impl StorageError {
    /// A failure of `action`, transient or not, because of `cause`.
    pub fn new(
        action: impl Into<String>,
        transient: bool,
        cause: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        StorageError {
            action: action.into(),
            transient,
            cause: cause.into(),
        }
    }

    /// A local I/O error, classified by its kind.
    pub fn io(action: impl Into<String>, error: std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        let transient = matches!(
            error.kind(),
            Interrupted | WouldBlock | TimedOut | StorageFull | ResourceBusy | QuotaExceeded
        );
        StorageError::new(action, transient, error)
    }

    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        self.transient
    }
}
