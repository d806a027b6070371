//! Hot swap: the running host replaces its handler when told to (a reload
//! signal: the binary sends one on SIGHUP) or when the handler file changes
//! (`--watch`). A new component is compiled and checked against the world
//! before it is switched in; a broken one is refused and the current handler
//! kept. A request that has started keeps the handler it started with; the
//! next one gets the new handler, so no request is lost or repeated across
//! the switch.
//!
//! Every swap (a reload, a promoted candidate) keeps the handler it
//! replaced, and counts a generation: a rollback (`pipeline/rollback.rs`)
//! puts the previous handler back, if the one it judged is still current.

use super::{Choice, Handler};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often `--watch` looks at the handler file.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// The handler in use, replaceable while the host runs.
pub(crate) struct HandlerSlot {
    current: RwLock<Live>,
    /// What reloads read: the built-in handler cannot be reloaded.
    choice: Choice,
    /// The handler file as it was when the slot was made, just after it
    /// was read: `--watch` compares with this, so a file replaced before
    /// the watch's first look is still a change.
    loaded: Option<(u64, SystemTime)>,
}

/// The handler in use, which swap it came with, and the one it replaced.
struct Live {
    handler: Handler,
    generation: u64,
    previous: Option<Handler>,
}

impl HandlerSlot {
    /// A slot holding `handler`, reloadable from `choice`; a reloaded
    /// handler gets the same engine and limits.
    pub(crate) fn new(handler: Handler, choice: Choice) -> Arc<HandlerSlot> {
        let loaded = match &choice {
            Choice::File(file) => fingerprint(file),
            Choice::Builtin => None,
        };
        Arc::new(HandlerSlot {
            loaded,
            current: RwLock::new(Live {
                handler,
                generation: 0,
                previous: None,
            }),
            choice,
        })
    }

    /// The handler for the next call.
    pub(crate) fn current(&self) -> Handler {
        self.current.read().unwrap().handler.clone()
    }

    /// The handler for the next call, and its generation (0 for the one
    /// the run started with, one more for each swap).
    pub(crate) fn current_generation(&self) -> (Handler, u64) {
        let live = self.current.read().unwrap();
        (live.handler.clone(), live.generation)
    }

    /// Makes `handler` (a candidate that earned it) the handler for every
    /// call from now on, as a reload does.
    pub(crate) fn promote(&self, handler: Handler) {
        self.swap(handler);
    }

    /// Switches to `handler`, keeping the one it replaces.
    fn swap(&self, handler: Handler) {
        let mut live = self.current.write().unwrap();
        let replaced = std::mem::replace(&mut live.handler, handler);
        live.previous = Some(replaced);
        live.generation += 1;
    }

    /// Puts the previous handler back if generation `judged` is still the
    /// current one and one was kept; the new generation if so.
    pub(crate) fn roll_back(&self, judged: u64) -> Option<u64> {
        let mut live = self.current.write().unwrap();
        if live.generation != judged {
            return None;
        }
        live.handler = live.previous.take()?;
        live.generation += 1;
        Some(live.generation)
    }

    /// Compiles the handler file again and switches to it if it is a valid
    /// widget-handler component; otherwise keeps the current one.
    async fn reload(&self) -> anyhow::Result<()> {
        if self.choice == Choice::Builtin {
            anyhow::bail!("the built-in handler cannot be reloaded; start with --handler FILE.wasm");
        }
        let current = self.current();
        let choice = self.choice.clone();
        let handler = tokio::task::spawn_blocking(move || {
            Handler::load_on(current.engines(), &choice, current.limits())
        })
        .await??;
        self.swap(handler);
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

    /// Reloads whenever `requests` changes, until `stop`. Requests made
    /// before this call are taken as seen: the handler was just loaded.
    pub(crate) fn reload_on(self: &Arc<Self>, mut requests: watch::Receiver<u64>, stop: CancellationToken) {
        requests.borrow_and_update();
        let slot = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = requests.changed() => match changed {
                        Ok(()) => slot.reload_and_log("SIGHUP").await,
                        Err(_) => return,
                    },
                    _ = stop.cancelled() => return,
                }
            }
        });
    }

    /// Reloads whenever the handler file's size or modification time
    /// changes, until `stop`.
    pub(crate) fn watch(self: &Arc<Self>, stop: CancellationToken) {
        let Choice::File(file) = self.choice.clone() else {
            return;
        };
        let slot = self.clone();
        let mut seen = self.loaded;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(WATCH_INTERVAL) => {}
                    _ = stop.cancelled() => return,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::{BUILTIN, Limits, Spec};

    #[tokio::test(flavor = "current_thread")]
    async fn a_handler_file_replaced_before_the_watch_first_looks_is_reloaded() {
        let scratch = tempfile::tempdir().unwrap();
        let file = scratch.path().join("handler.wasm");
        std::fs::write(&file, BUILTIN).unwrap();
        let spec = Spec {
            choice: Choice::File(file.clone()),
            limits: Limits::default(),
            compile_cache: false,
        };
        let slot = HandlerSlot::new(Handler::load(&spec).unwrap(), spec.choice.clone());
        let stop = CancellationToken::new();
        slot.watch(stop.clone());
        // On this one thread the watch has not run yet: the file changes
        // before its first look.
        let hostile = std::fs::read(concat!(env!("WIDGET_HOST_TEST_GUESTS"), "/hostile_guest.wasm")).unwrap();
        std::fs::write(&file, hostile).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while slot.current_generation().1 == 0 {
            assert!(std::time::Instant::now() < deadline, "the change was never seen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.cancel();
    }
}
