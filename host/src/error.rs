//! The one error type of sources and sinks: what was being done, and which
//! of three classes the failure falls in. The class is decided once, where
//! the error is met (`aws/errors.rs` for the SDK, [`StorageError::io`] for
//! the file system), and decides everything after: retry, stop the run, or
//! dead-letter the one request.

use std::error::Error as StdError;

/// Flags that contradict each other, name nothing, or ask a place for what
/// it cannot do: the command line is wrong, not the world (exit code 2).
/// Found before any I/O.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub(crate) String);

/// Who a failure is the fault of, and so what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The world is slow or busy (throttling, a server down, a timeout, a
    /// full disk, no file handles left): retry with backoff, leaving the
    /// request where it is.
    Transient,
    /// The world is misconfigured for every request alike (expired or
    /// invalid credentials, access denied, a missing bucket or table, clock
    /// skew): stop the run, leaving the request where it is.
    Fatal,
    /// Only this request causes it (a key the store cannot hold, an item too
    /// large): the request is dead-lettered with the reason.
    Request,
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
    /// The service asked for fewer requests (a transient failure that the
    /// run answers by lowering its concurrency too).
    pub throttling: bool,
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
            throttling: false,
        }
    }

    /// A failure of the environment that every request would meet.
    pub fn fatal(action: impl Into<String>, cause: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        StorageError::new(action, Class::Fatal, cause)
    }

    /// A failure that only this request causes.
    pub fn request(action: impl Into<String>, cause: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        StorageError::new(action, Class::Request, cause)
    }

    /// A local I/O error, classified by its kind: running out of something
    /// (disk space, file handles, memory) or an I/O error of the device is
    /// transient; a path that a key makes impossible is the request's; the
    /// rest (permissions, a read-only or vanished folder) is fatal.
    pub fn io(action: impl Into<String>, error: std::io::Error) -> Self {
        StorageError::new(action, io_class(&error), error)
    }

    /// The same failure, told to a second waiter: one batch call fails for
    /// every entry in it.
    pub(crate) fn duplicate(&self) -> StorageError {
        let mut copy = StorageError::new(self.action.clone(), self.class, self.cause.to_string());
        copy.throttling = self.throttling;
        copy
    }

    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        self.class == Class::Transient
    }
}

fn io_class(error: &std::io::Error) -> Class {
    use std::io::ErrorKind::*;
    const EXHAUSTED: [i32; 6] = [
        libc::EMFILE,
        libc::ENFILE,
        libc::ENOMEM,
        libc::EIO,
        libc::ENOBUFS,
        libc::EAGAIN,
    ];
    if error.raw_os_error().is_some_and(|code| EXHAUSTED.contains(&code)) {
        return Class::Transient;
    }
    match error.kind() {
        Interrupted | WouldBlock | TimedOut | StorageFull | ResourceBusy | QuotaExceeded | OutOfMemory => {
            Class::Transient
        }
        InvalidFilename | NotADirectory | IsADirectory | DirectoryNotEmpty => Class::Request,
        _ => Class::Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Error;

    #[test]
    fn running_out_of_handles_space_or_memory_is_transient() {
        for code in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOMEM,
            libc::EIO,
            libc::ENOSPC,
            libc::EDQUOT,
        ] {
            let error = StorageError::io("write x", Error::from_raw_os_error(code));
            assert_eq!(error.class, Class::Transient, "{error}");
        }
    }

    #[test]
    fn a_path_the_key_makes_impossible_is_the_requests_fault() {
        for code in [libc::ENAMETOOLONG, libc::ENOTDIR, libc::EISDIR] {
            let error = StorageError::io("write x", Error::from_raw_os_error(code));
            assert_eq!(error.class, Class::Request, "{error}");
        }
    }

    #[test]
    fn permissions_and_a_read_only_or_vanished_folder_are_fatal() {
        for code in [libc::EACCES, libc::EPERM, libc::EROFS, libc::ENOENT] {
            let error = StorageError::io("write x", Error::from_raw_os_error(code));
            assert_eq!(error.class, Class::Fatal, "{error}");
        }
    }
}
