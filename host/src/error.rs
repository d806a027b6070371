//! The one error type of sources and sinks: what was being done, and whether
//! trying again later may succeed.

use std::error::Error as StdError;

/// Whether a failure may pass if the same call is made again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Throttling, a server down, a timeout: retry with backoff.
    Transient,
    /// Access denied, a missing bucket, a malformed key: the same call will
    /// fail the same way.
    Permanent,
}

/// A failed storage call, on a source or a sink.
#[derive(Debug, thiserror::Error)]
#[error("{action}: {cause}")]
pub struct StorageError {
    /// What was being done, naming the resource: `put widgets/a/1 in ./widgets`.
    pub action: String,
    /// Whether trying again may help.
    pub class: Class,
    /// What went wrong. Not the error's `source()`: the message already
    /// includes it, and error chains (`{:#}`) would say it twice.
    pub cause: Box<dyn StdError + Send + Sync>,
}

impl StorageError {
    /// A failure of `action` because of `cause`.
    pub fn new(
        action: impl Into<String>,
        class: Class,
        cause: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        StorageError {
            action: action.into(),
            class,
            cause: cause.into(),
        }
    }

    /// A failure that the same call will meet again.
    pub fn permanent(action: impl Into<String>, cause: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        StorageError::new(action, Class::Permanent, cause)
    }

    /// A local I/O error, classified by its kind.
    pub fn io(action: impl Into<String>, error: std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        let class = match error.kind() {
            Interrupted | WouldBlock | TimedOut | StorageFull | ResourceBusy | QuotaExceeded => {
                Class::Transient
            }
            _ => Class::Permanent,
        };
        StorageError::new(action, class, error)
    }

    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        self.class == Class::Transient
    }
}
