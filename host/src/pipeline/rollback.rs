//! Rollback by policy (`--rollback-on-dead-letters P`): after a swap (a
//! reload on SIGHUP or `--watch`, a promoted candidate), the new handler's
//! dead-letter rate over its last `--rollback-window` requests is compared
//! with the previous handler's over its last window before the swap (0 %
//! if it handled none). When
//! the new one dead-letters more than P percentage points more (a trap or a
//! limit dead-letters too, so they count), the previous handler is put back
//! (`LiveHandler::roll_back`), and the requests the new one dead-lettered in
//! the window are logged by key, and so is each one it dead-letters after
//! (a request under way at the rollback): `redrive` takes them back.
//! Watching stops
//! until the next swap; a rollback is not a swap to watch.
//!
//! Requests are counted under the generation of the handler that decided
//! them: one still in flight from before a swap does not count for the new
//! handler.
//!
//! While a swap is on trial (its first window not yet full), a request the
//! new handler refuses is not dead-lettered: it is held (`process.rs`),
//! and so are its widget's later requests, counted here as a dead letter
//! ([`Rollback::held`]). Rolled back, the handler put back decides it
//! again, in its widget's order, as if the bad handler had never seen it;
//! kept, it is dead-lettered then. So a rollback leaves the store as the
//! trusted handler alone would have, and nothing to redrive.

use crate::handler::swap::LiveHandler;
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
    handlers: Arc<LiveHandler>,
    metrics: Arc<Metrics>,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// The generation whose requests `recent` holds.
    generation: u64,
    /// Its last requests: refused or not, their keys, and whether the
    /// refusal is held (the request waits for the verdict on the handler).
    recent: VecDeque<(bool, String, bool)>,
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
        handlers: Arc<LiveHandler>,
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

    /// Whether the handler of `generation` is on trial: the first window
    /// after the swap that made it live is not yet full, and what is left
    /// of it could still roll it back.
    pub(crate) fn on_trial(&self, generation: u64) -> bool {
        let seen = self.seen.lock().unwrap();
        if generation > seen.generation {
            // Swapped in, and nothing counted for it yet.
            return generation != seen.rolled_back_to.unwrap_or(u64::MAX);
        }
        let Some(baseline) = &seen.baseline else {
            return false;
        };
        let left = self.window.saturating_sub(seen.recent.len());
        let at_most = self.rate(refused(&seen.recent) + left);
        generation == seen.generation
            && seen.rolled_back_from != Some(generation)
            && left > 0
            && at_most - percent(baseline.iter().copied()) > self.points
    }

    /// Whether the handler of `generation` was rolled back.
    pub(crate) fn rolled_back(&self, generation: u64) -> bool {
        self.seen.lock().unwrap().rolled_back_from == Some(generation)
    }

    /// The rate of `refused` requests in a full window, in percent.
    fn rate(&self, refused: usize) -> f64 {
        refused as f64 * 100.0 / self.window as f64
    }

    /// Counts a refusal by the handler of `generation`, on trial, that its
    /// request holds on to until the verdict; rolls back when the policy
    /// says so.
    pub(crate) fn held(&self, generation: u64, key: &str) {
        self.count(generation, key, true, true);
    }

    /// Counts a request the handler of `generation` decided; rolls back
    /// when the policy says so.
    pub(crate) fn record(&self, generation: u64, key: &str, dead_lettered: bool) {
        self.count(generation, key, dead_lettered, false);
    }

    fn count(&self, generation: u64, key: &str, dead_lettered: bool, held: bool) {
        let mut seen = self.seen.lock().unwrap();
        if seen.rolled_back_from == Some(generation) {
            if dead_lettered && !held {
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
            let before: Vec<bool> = seen.recent.drain(..).map(|(dead, _, _)| dead).collect();
            seen.baseline = (seen.rolled_back_to != Some(generation)).then_some(before);
            seen.generation = generation;
        }
        seen.recent.push_back((dead_lettered, key.to_owned(), held));
        if seen.recent.len() > self.window {
            seen.recent.pop_front();
        }
        let Some(baseline) = &seen.baseline else {
            return;
        };
        // The window's rate once full is at least this, whatever the rest
        // of it brings: a rollback that is certain is made at once (a
        // pipeline full of held refusals would wait for the rest in vain).
        let new = self.rate(refused(&seen.recent));
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
        let keys = |held_ones: bool| -> Vec<String> {
            seen.recent
                .iter()
                .filter(|(dead, _, held)| *dead && *held == held_ones)
                .map(|(_, key, _)| escape(key).into_owned())
                .collect()
        };
        let (dead, held) = (keys(false), keys(true));
        self.metrics.rolled_back();
        warn!(
            new_percent = new,
            previous_percent = old,
            window = self.window,
            dead_lettered = %dead.join(" "),
            held = held.len(),
            "Rolled back to the previous handler: the new one refused {new:.0}% of its last {} requests (at least), the previous one {old:.0}%. The requests it refused on trial are decided again by the handler put back; any it dead-lettered are listed (`redrive` takes them back).",
            self.window
        );
    }
}

/// How many of `recent` were refused.
fn refused(recent: &VecDeque<(bool, String, bool)>) -> usize {
    recent.iter().filter(|(dead, _, _)| *dead).count()
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
