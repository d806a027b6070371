//! The host side of the functions a handler may call: `store.get` reads the
//! destination, `log.log` writes to the host's log.

use super::bindings::{log, store, types};
use super::sandbox::GuestState;
use std::time::Instant;

/// Lines of a call's log kept for its caller (`invoke` prints them): a
/// handler cannot fill the host's memory.
const MAX_KEPT_LINES: usize = 100;

impl types::Host for GuestState {}

impl store::Host for GuestState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, String>> {
        let Some(sink) = self.sink.clone() else {
            wasmtime::bail!("the store may not be read from `ordering-key`");
        };
        let started = Instant::now();
        let result = sink.get(&key).await;
        self.waiting += started.elapsed();
        match result {
            Ok(document) => Ok(Ok(document)),
            Err(e) if e.is_transient() => {
                let message = e.to_string();
                self.store_failure = Some(e);
                // Trap: the guest's answer would be built on a failed read.
                wasmtime::bail!("store unavailable: {message}")
            }
            Err(e) => Ok(Err(e.to_string())),
        }
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
