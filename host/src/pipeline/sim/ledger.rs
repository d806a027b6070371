//! What the simulated sources saw the host do: which requests it removed,
//! as done or as dead letters, in the order it removed them.

use std::sync::Mutex;
use tokio::sync::Notify;

/// How a request left its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Removal {
    Acked,
    DeadLettered(String),
}

#[derive(Default)]
pub(super) struct Ledger {
    removed: Mutex<Vec<(String, Removal)>>,
    /// Told whenever a request is removed.
    pub(super) changed: Notify,
}

impl Ledger {
    pub(super) fn acked(&self, key: &str) {
        self.record(key, Removal::Acked);
    }

    pub(super) fn dead_lettered(&self, key: &str, reason: &str) {
        self.record(key, Removal::DeadLettered(reason.to_owned()));
    }

    fn record(&self, key: &str, removal: Removal) {
        self.removed.lock().unwrap().push((key.to_owned(), removal));
        self.changed.notify_waiters();
    }

    /// Requests removed, in the order they were.
    pub(super) fn removed(&self) -> Vec<(String, Removal)> {
        self.removed.lock().unwrap().clone()
    }

    pub(super) fn has_removed(&self, key: &str) -> bool {
        self.removed.lock().unwrap().iter().any(|(k, _)| k == key)
    }
}
