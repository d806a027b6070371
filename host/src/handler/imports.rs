//! The host side of the functions a handler may call: `store.get` reads the
//! destination, `log.log` writes to the host's log.

use super::bindings::{log, store, types};
use super::sandbox::{GET_TIMEOUT, GuestState};
use crate::error::{Class, StorageError};

/// Lines of a call's log kept for its caller (`invoke` prints them): a
/// handler cannot fill the host's memory.
const MAX_KEPT_LINES: usize = 100;

impl types::Host for GuestState {}

impl store::Host for GuestState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, String>> {
        let Some(sink) = self.sink.clone() else {
            wasmtime::bail!("the store may not be read from `ordering-key`");
        };
        self.waiting.start();
        let result = tokio::time::timeout(GET_TIMEOUT, sink.get(&key)).await;
        self.waiting.stop();
        let failure = match result {
            Ok(Ok(document)) => return Ok(Ok(document)),
            // The request's own doing (a key the store cannot hold): the
            // handler decides what that means.
            Ok(Err(e)) if e.class == Class::Request => return Ok(Err(e.to_string())),
            Ok(Err(e)) => e,
            Err(_) => StorageError::new(
                format!("read {key:?} for the handler"),
                Class::Transient,
                format!("no answer within {GET_TIMEOUT:?}"),
            ),
        };
        let message = failure.to_string();
        self.store_failure = Some(failure);
        // Trap: the guest's answer would be built on a failed read.
        wasmtime::bail!("store unavailable: {message}")
    }
}

impl log::Host for GuestState {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let key = &self.request_key;
        let name = match level {
            log::Level::Debug => {
                tracing::debug!(request_key = %key, "handler: {message}");
                "debug"
            }
            log::Level::Info => {
                tracing::info!(request_key = %key, "handler: {message}");
                "info"
            }
            log::Level::Warn => {
                self.warnings += 1;
                tracing::warn!(request_key = %key, "handler: {message}");
                "warn"
            }
            log::Level::Error => {
                tracing::error!(request_key = %key, "handler: {message}");
                "error"
            }
        };
        if self.logs.len() < MAX_KEPT_LINES {
            self.logs.push((name, message));
        }
        Ok(())
    }
}
