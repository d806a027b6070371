//! Rollback by policy (`--rollback-on-dead-letters P`): after a swap (a
//! reload on SIGHUP or `--watch`, a promoted candidate), the new handler's
//! dead-letter rate over its last `--rollback-window` requests is compared
//! with the previous handler's over its last window before the swap (0 %
//! if it handled none). When
//! the new one dead-letters more than P percentage points more (a trap or a
//! limit dead-letters too, so they count), the previous handler is put back
//! (`HandlerSlot::roll_back`), and the requests the new one dead-lettered in
//! the window are logged by key, and so is each one it dead-letters after
//! (a request under way at the rollback): `redrive` takes them back.
//! Watching stops
//! until the next swap; a rollback is not a swap to watch.
//!
//! Requests are counted under the generation of the handler that decided
//! them: one still in flight from before a swap does not count for the new
//! handler.

use crate::handler::swap::HandlerSlot;
use crate::logging::escape;
use crate::metrics::Metrics;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tracing::{info, warn};

/// The default number of requests a rate is taken over.
pub(crate) const DEFAULT_WINDOW: usize = 100;

/// The policy, and what it has seen.
pub(crate) struct Rollback {
    /// Percentage points of dead letters more that roll a swap back.
    points: f64,
    window: usize,
    handlers: Arc<HandlerSlot>,
    metrics: Arc<Metrics>,
    seen: Mutex<Seen>,
}

impl std::fmt::Debug for Rollback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollback")
            .field("points", &self.points)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Seen {
    /// The generation whose requests `recent` holds.
    generation: u64,
    /// Its last requests: dead-lettered or not, and their keys.
    recent: VecDeque<(bool, String)>,
    /// The previous generation's last window, when a swap is watched.
    baseline: Option<Vec<bool>>,
    /// The generation a rollback made: not watched.
    rolled_back_to: Option<u64>,
    /// The generation a rollback undid: its requests still under way then
    /// are logged as they end, not counted.
    rolled_back_from: Option<u64>,
}

impl Rollback {
    pub(crate) fn new(
        points: f64,
        window: usize,
        handlers: Arc<HandlerSlot>,
        metrics: Arc<Metrics>,
    ) -> Rollback {
        info!(
            points,
            window,
            "Rollback policy: after a swap, back to the previous handler if the new one dead-letters more than {points} percentage points more over {window} requests."
        );
        Rollback {
            points,
            window: window.max(1),
            handlers,
            metrics,
            seen: Mutex::default(),
        }
    }

    /// Counts a request the handler of `generation` decided; rolls back
    /// when the policy says so.
    pub(crate) fn record(&self, generation: u64, key: &str, dead_lettered: bool) {
        let mut seen = self.seen.lock().unwrap();
        if seen.rolled_back_from == Some(generation) {
            if dead_lettered {
                warn!(request_key = %escape(key), "Dead-lettered by the handler rolled back (it was under way at the rollback); `redrive` takes it back.");
            }
            return;
        }
        if generation < seen.generation {
            return;
        }
        if generation > seen.generation {
            // A swap: the last window before it is the baseline (none at
            // all, for a swap before any request: the trusted handler is
            // taken to dead-letter nothing), unless a rollback made it.
            let before: Vec<bool> = seen.recent.drain(..).map(|(dead, _)| dead).collect();
            seen.baseline = (seen.rolled_back_to != Some(generation)).then_some(before);
            seen.generation = generation;
        }
        seen.recent.push_back((dead_lettered, key.to_owned()));
        if seen.recent.len() > self.window {
            seen.recent.pop_front();
        }
        let Some(baseline) = &seen.baseline else {
            return;
        };
        if seen.recent.len() < self.window {
            return;
        }
        let new = percent(seen.recent.iter().map(|(dead, _)| *dead));
        let old = percent(baseline.iter().copied());
        if new - old <= self.points {
            return;
        }
        let Some(restored) = self.handlers.roll_back(generation) else {
            return;
        };
        seen.rolled_back_to = Some(restored);
        seen.rolled_back_from = Some(generation);
        seen.baseline = None;
        let keys: Vec<String> = seen
            .recent
            .iter()
            .filter(|(dead, _)| *dead)
            .map(|(_, key)| escape(key).into_owned())
            .collect();
        self.metrics.rolled_back();
        warn!(
            new_percent = new,
            previous_percent = old,
            window = self.window,
            dead_lettered = %keys.join(" "),
            "Rolled back to the previous handler: the new one dead-lettered {new:.0}% of its last {} requests, the previous one {old:.0}%. The new one's dead letters of the window are listed; `redrive` takes them back.",
            self.window
        );
    }
}

/// The share of `true`, in percent.
fn percent(dead: impl Iterator<Item = bool>) -> f64 {
    let (mut count, mut total) = (0u32, 0u32);
    for dead in dead {
        count += u32::from(dead);
        total += 1;
    }
    if total == 0 {
        0.0
    } else {
        f64::from(count) * 100.0 / f64::from(total)
    }
}
