//! Hot swap: the running host replaces its handler when told to (SIGHUP) or
//! when the handler file changes (`--watch`). A new component is compiled
//! and checked against the world before it is switched in; a broken one is
//! refused and the current handler kept. A request that has started keeps
//! the handler it started with; the next one gets the new handler, so no
//! request is lost or repeated across the switch.

use crate::runtime::Runtime;
use crate::shutdown::Shutdown;
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// How often `--watch` looks at the handler file.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// The handler in use, replaceable while the host runs.
pub struct HandlerSlot {
    current: RwLock<Runtime>,
    /// The file reloads read; `None` for the built-in handler.
    file: Option<PathBuf>,
}

impl HandlerSlot {
    /// A slot holding `runtime`, reloadable from `file`; a reloaded handler
    /// gets the same engine and limits.
    pub fn new(runtime: Runtime, file: Option<PathBuf>) -> Arc<HandlerSlot> {
        Arc::new(HandlerSlot {
            current: RwLock::new(runtime),
            file,
        })
    }

    /// The handler for the next call.
    pub fn current(&self) -> Runtime {
        self.current.read().unwrap().clone()
    }

    /// Compiles the handler file again and switches to it if it is a valid
    /// widget-handler component; otherwise keeps the current one.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let Some(file) = self.file.clone() else {
            anyhow::bail!("the built-in handler cannot be reloaded; start with --handler FILE.wasm");
        };
        let current = self.current();
        let (engine, limits) = (current.engine().clone(), current.limits());
        let runtime = tokio::task::spawn_blocking(move || {
            let wasm = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            Runtime::new(&engine, &wasm, limits)
                .with_context(|| format!("{} is not a usable widget-handler component", file.display()))
        })
        .await??;
        *self.current.write().unwrap() = runtime;
        Ok(())
    }

    async fn reload_and_log(&self, why: &str) {
        match self.reload().await {
            Ok(()) => tracing::info!(trigger = why, "Handler reloaded."),
            Err(e) => {
                tracing::error!(trigger = why, error = %format!("{e:#}"), "Reload refused; keeping the current handler.")
            }
        }
    }

    /// Reloads on SIGHUP until shutdown.
    pub fn on_sighup(self: &Arc<Self>, shutdown: Shutdown) {
        #[cfg(unix)]
        {
            let slot = self.clone();
            tokio::spawn(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let Ok(mut hangups) = signal(SignalKind::hangup()) else {
                    return;
                };
                loop {
                    tokio::select! {
                        Some(()) = hangups.recv() => slot.reload_and_log("SIGHUP").await,
                        _ = shutdown.wait() => return,
                    }
                }
            });
        }
    }

    /// Reloads whenever the handler file's size or modification time
    /// changes, until shutdown.
    pub fn watch(self: &Arc<Self>, shutdown: Shutdown) {
        let Some(file) = self.file.clone() else { return };
        let slot = self.clone();
        tokio::spawn(async move {
            let mut seen = fingerprint(&file);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(WATCH_INTERVAL) => {}
                    _ = shutdown.wait() => return,
                }
                let now = fingerprint(&file);
                if now != seen && now.is_some() {
                    seen = now;
                    slot.reload_and_log("file changed").await;
                }
            }
        });
    }
}

/// What tells a changed file: its length and modification time.
fn fingerprint(file: &Path) -> Option<(u64, SystemTime)> {
    let meta = std::fs::metadata(file).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}
