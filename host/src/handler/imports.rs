//! The host side of the functions a handler may call: `store.get` reads the
//! destination, `log.log` writes to the host's log.

use super::bindings::{log, store, types};
use super::sandbox::{GET_TIMEOUT, GuestState};
use crate::error::{Class, StorageError};

impl types::Host for GuestState {}

impl store::Host for GuestState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, String>> {
        let call = &mut self.call;
        let Some(reader) = call.reader.clone() else {
            wasmtime::bail!("the store may not be read from `ordering-key`");
        };
        call.waiting.start();
        let result = tokio::time::timeout(GET_TIMEOUT, reader.get(&key)).await;
        call.waiting.stop();
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
        call.store_failure = Some(failure);
        // Trap: the guest's answer would be built on a failed read.
        wasmtime::bail!("store unavailable: {message}")
    }
}

impl log::Host for GuestState {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let name = match level {
            log::Level::Debug => "debug",
            log::Level::Info => "info",
            log::Level::Warn => {
                self.call.warnings += 1;
                "warn"
            }
            log::Level::Error => "error",
        };
        // Over the call's budget: cut, then dropped (and counted).
        let Some(message) = self.call.log.admit(name, message) else {
            return Ok(());
        };
        let key = &self.call.request_key;
        match level {
            log::Level::Debug => tracing::debug!(request_key = %key, "handler: {message}"),
            log::Level::Info => tracing::info!(request_key = %key, "handler: {message}"),
            log::Level::Warn => tracing::warn!(request_key = %key, "handler: {message}"),
            log::Level::Error => tracing::error!(request_key = %key, "handler: {message}"),
        }
        Ok(())
    }
}
