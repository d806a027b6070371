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
//! The swaps are one history, in order: the log says each as it happens,
//! `/metrics` counts them (`metrics::Metrics::handler_swapped`), and the
//! summary lists them.
//!
//! A promoted candidate lives in memory only. A reload after a promotion
//! that would load the very handler file the candidate replaced keeps the
//! candidate, and says so; a handler file that changed since is loaded, and
//! the log says loudly that it replaced the promoted candidate.

use super::{Choice, Handler};
use crate::metrics::Metrics;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often `--watch` looks at the handler file.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// The handler in use, replaceable while the host runs.
pub(crate) struct LiveHandler {
    current: RwLock<Live>,
    /// What reloads read: the built-in handler cannot be reloaded.
    choice: Choice,
    /// The handler file as it was when the slot was made, just after it
    /// was read: `--watch` compares with this, so a file replaced before
    /// the watch's first look is still a change.
    loaded: Option<(u64, SystemTime)>,
    /// A digest of the handler file's bytes as last loaded.
    file_digest: Mutex<Option<u64>>,
    /// Where swaps are counted, once the run has its metrics.
    metrics: OnceLock<Arc<Metrics>>,
}

/// The handler in use, which swap it came with, the one it replaced, and
/// every swap so far.
struct Live {
    handler: Handler,
    generation: u64,
    /// The live handler is a promoted candidate.
    promoted: bool,
    previous: Option<(Handler, bool)>,
    history: Vec<Swap>,
}

/// One swap of the live handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swap {
    /// The generation it made live.
    pub generation: u64,
    pub kind: SwapKind,
    /// The handler it replaced was a promoted candidate.
    pub replaced_promoted: bool,
}

/// How a handler came to be the live one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapKind {
    /// Loaded again from its file, on this trigger.
    Reloaded(&'static str),
    /// The candidate, after it agreed long enough.
    Promoted,
    /// The handler before, put back by the rollback policy.
    RolledBack,
}

impl SwapKind {
    /// The label `/metrics` counts it under.
    pub(crate) fn label(self) -> &'static str {
        match self {
            SwapKind::Reloaded(_) => "reload",
            SwapKind::Promoted => "promotion",
            SwapKind::RolledBack => "rollback",
        }
    }
}

impl std::fmt::Display for Swap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            SwapKind::Reloaded(trigger) => write!(f, "reloaded ({trigger})")?,
            SwapKind::Promoted => write!(f, "candidate promoted")?,
            SwapKind::RolledBack => write!(f, "rolled back")?,
        }
        if self.replaced_promoted {
            write!(f, ", replacing the promoted candidate")?;
        }
        Ok(())
    }
}

/// What a reload came to.
enum Reloaded {
    /// The file's handler is live.
    Swapped { replaced_promoted: bool },
    /// The file still holds the handler a promoted candidate replaced: the
    /// candidate stays.
    KeptPromoted,
}

impl LiveHandler {
    /// A slot holding `handler`, reloadable from `choice`; a reloaded
    /// handler gets the same engine and limits.
    pub(crate) fn new(handler: Handler, choice: Choice) -> Arc<LiveHandler> {
        // The digest of the bytes the handler was compiled from: the file
        // is not read again (it may be a pipe, read once).
        let (loaded, file_digest) = match &choice {
            Choice::File(file) => (fingerprint(file), Some(handler.digest())),
            Choice::Builtin => (None, None),
        };
        Arc::new(LiveHandler {
            loaded,
            file_digest: Mutex::new(file_digest),
            metrics: OnceLock::new(),
            current: RwLock::new(Live {
                handler,
                generation: 0,
                promoted: false,
                previous: None,
                history: Vec::new(),
            }),
            choice,
        })
    }

    /// Counts every swap from now on in `metrics`.
    /// The instances made, counted on the engines every replacement shares,
    /// are read by `metrics` too.
    pub(crate) fn report_to(&self, metrics: Arc<Metrics>) {
        metrics.count_instances_in(self.current().engines().made.clone());
        let _ = self.metrics.set(metrics);
    }

    /// Every swap so far, in order.
    pub(crate) fn history(&self) -> Vec<Swap> {
        self.current.read().unwrap().history.clone()
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
        self.swap(handler, SwapKind::Promoted);
    }

    /// Switches to `handler`, keeping the one it replaces; the swap made.
    fn swap(&self, handler: Handler, kind: SwapKind) -> Swap {
        let mut live = self.current.write().unwrap();
        let replaced = std::mem::replace(&mut live.handler, handler);
        let replaced_promoted = std::mem::replace(&mut live.promoted, kind == SwapKind::Promoted);
        live.previous = Some((replaced, replaced_promoted));
        self.record(&mut live, kind, replaced_promoted)
    }

    /// Counts a swap just made: a new generation, in the history and the
    /// metrics, under the same lock as the swap (so they agree on order).
    fn record(&self, live: &mut Live, kind: SwapKind, replaced_promoted: bool) -> Swap {
        live.generation += 1;
        let swap = Swap {
            generation: live.generation,
            kind,
            replaced_promoted,
        };
        live.history.push(swap.clone());
        if let Some(metrics) = self.metrics.get() {
            metrics.handler_swapped(kind.label(), live.promoted);
        }
        swap
    }

    /// Puts the previous handler back if generation `judged` is still the
    /// current one and one was kept; the new generation if so.
    pub(crate) fn roll_back(&self, judged: u64) -> Option<u64> {
        let mut live = self.current.write().unwrap();
        if live.generation != judged {
            return None;
        }
        let (previous, was_promoted) = live.previous.take()?;
        live.handler = previous;
        let replaced_promoted = std::mem::replace(&mut live.promoted, was_promoted);
        Some(
            self.record(&mut live, SwapKind::RolledBack, replaced_promoted)
                .generation,
        )
    }

    /// Compiles the handler file again and switches to it if it is a valid
    /// widget-handler component; otherwise keeps the current one. After a
    /// promotion, a file that still holds the handler the candidate
    /// replaced is not loaded.
    async fn reload(&self, trigger: &'static str) -> anyhow::Result<Reloaded> {
        let Choice::File(file) = self.choice.clone() else {
            anyhow::bail!("the built-in handler cannot be reloaded; start with --handler FILE.wasm");
        };
        let current = self.current();
        let handler = tokio::task::spawn_blocking(move || {
            Handler::load_on(current.engines(), &Choice::File(file), current.limits())
        })
        .await??;
        let digest = handler.digest();
        let mut last = self.file_digest.lock().unwrap();
        if self.current.read().unwrap().promoted && *last == Some(digest) {
            return Ok(Reloaded::KeptPromoted);
        }
        *last = Some(digest);
        let swap = self.swap(handler, SwapKind::Reloaded(trigger));
        Ok(Reloaded::Swapped {
            replaced_promoted: swap.replaced_promoted,
        })
    }

    async fn reload_and_log(&self, why: &'static str) {
        match self.reload(why).await {
            Ok(Reloaded::Swapped {
                replaced_promoted: false,
            }) => tracing::info!(trigger = why, "Handler reloaded."),
            Ok(Reloaded::Swapped {
                replaced_promoted: true,
            }) => tracing::warn!(
                trigger = why,
                "Handler reloaded from its file, REPLACING THE PROMOTED CANDIDATE: the file changed since the promotion, and its handler is live now."
            ),
            Ok(Reloaded::KeptPromoted) => tracing::warn!(
                trigger = why,
                "Reload kept the promoted candidate: the handler file still holds the handler the candidate replaced. Copy the candidate over the handler file to keep it after a restart."
            ),
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
        let slot = LiveHandler::new(Handler::load(&spec).unwrap(), spec.choice.clone());
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
