//! The adaptive concurrency limit: how many requests may be in flight,
//! found by measuring how long each takes (a gradient, as TCP Vegas and
//! Netflix's concurrency-limits Gradient2 do). Where a store call takes
//! 20 ms, a request's time hardly changes with how many run at once, and
//! the limit grows towards its ceiling; where the host or the backend is
//! the bound, more at once only makes each take longer, and the limit falls
//! back.
//!
//! Each request that held a grant without failing gives a sample: the time
//! it held the grant (less its waits for shared batch calls, see
//! `grants/mod.rs`). Samples are averaged over a window (half the limit,
//! at least [`MIN_WINDOW`]); the lowest window average of the last
//! [`BASELINE_WINDOWS`] is the latency the backend gives when not crowded.
//! The gradient is that over the window's average, allowed [`TOLERANCE`]
//! before it counts, and between 0.5 and 1. After each window the limit
//! moves halfway towards `limit * gradient + headroom`, the headroom
//! [`HEADROOM`] or, while the latency holds, a quarter of the limit: it
//! grows by an eighth a window while requests take no longer (from 16 to
//! 128 in under twenty windows), and falls by up to a quarter at a time
//! when they take more than twice as long. The limit only grows while at
//! least half the grants were in use in the window: idle grants cannot
//! show that more help. Where more at once only makes each request slower
//! (the host's own CPU the bound), the baseline follows the latency up
//! window by window, and the limit creeps towards the ceiling: the ceiling
//! is what bounds memory then.

use std::collections::VecDeque;
use std::time::Duration;

/// How much slower than its baseline a window may be before the limit
/// stops growing. Bigger batches take a backend a little longer: at 1.5
/// a queue 20 ms from DynamoDB stopped near 45 at once, where 128 at once
/// went 1.7 times as fast (docs/benchmarks.md).
const TOLERANCE: f64 = 2.0;

/// Slots tried beyond the current limit, each window, at least: the probe
/// for more.
const HEADROOM: f64 = 4.0;

/// The share of the limit tried beyond it, each window, while the latency
/// holds (a gradient of 1): the limit grows in proportion, as TCP's slow
/// start does, rather than by [`HEADROOM`] alone.
const GROWTH: f64 = 0.25;

/// How far the limit moves towards its target after each window.
const SMOOTHING: f64 = 0.5;

/// Samples a window takes at least.
const MIN_WINDOW: usize = 8;

/// Windows the baseline is the lowest of: a backend that became slower
/// for good is the new normal after these.
const BASELINE_WINDOWS: usize = 64;

/// The limit, between 1 and a ceiling.
#[derive(Debug, Clone)]
pub(super) struct Gradient {
    estimate: f64,
    ceiling: f64,
    /// The current window: the sum of its samples, their count, and the
    /// most grants in use at one of them.
    sum: f64,
    count: usize,
    busiest: usize,
    /// The last windows' average latencies, in seconds.
    recent: VecDeque<f64>,
}

impl Gradient {
    /// Starts at `initial` (at most `ceiling`).
    pub(super) fn new(initial: usize, ceiling: usize) -> Gradient {
        let ceiling = ceiling.max(1) as f64;
        Gradient {
            estimate: (initial.max(1) as f64).min(ceiling),
            ceiling,
            sum: 0.0,
            count: 0,
            busiest: 0,
            recent: VecDeque::with_capacity(BASELINE_WINDOWS),
        }
    }

    /// The number of grants now.
    pub(super) fn limit(&self) -> usize {
        self.estimate as usize
    }

    /// A request held its grant for `latency`, with `in_use` grants held;
    /// returns the limit, new at the end of a window.
    pub(super) fn sample(&mut self, latency: Duration, in_use: usize) -> usize {
        self.sum += latency.as_secs_f64().max(1e-6);
        self.count += 1;
        self.busiest = self.busiest.max(in_use);
        if self.count < MIN_WINDOW.max(self.limit() / 2) {
            return self.limit();
        }
        let average = self.sum / self.count as f64;
        let busiest = std::mem::take(&mut self.busiest) as f64;
        (self.sum, self.count) = (0.0, 0);
        if self.recent.len() == BASELINE_WINDOWS {
            self.recent.pop_front();
        }
        self.recent.push_back(average);
        let baseline = self.recent.iter().copied().fold(f64::INFINITY, f64::min);
        let gradient = (TOLERANCE * baseline / average).clamp(0.5, 1.0);
        if gradient >= 1.0 && busiest < self.estimate / 2.0 {
            return self.limit();
        }
        let headroom = match gradient >= 1.0 {
            true => HEADROOM.max(self.estimate * GROWTH),
            false => HEADROOM,
        };
        let target = self.estimate * gradient + headroom;
        self.estimate = (self.estimate * (1.0 - SMOOTHING) + target * SMOOTHING).clamp(1.0, self.ceiling);
        self.limit()
    }

    /// The backend throttles: half as many grants at once.
    pub(super) fn halve(&mut self) -> usize {
        self.estimate = (self.estimate / 2.0).max(1.0);
        self.limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Feeds `samples` samples of `latency(limit)` with every grant in use.
    fn busy(gradient: &mut Gradient, samples: usize, latency: impl Fn(usize) -> Duration) {
        for _ in 0..samples {
            let limit = gradient.limit();
            gradient.sample(latency(limit), limit);
        }
    }

    #[test]
    fn a_steady_latency_grows_the_limit_to_its_ceiling_while_the_slots_are_used() {
        let mut gradient = Gradient::new(16, 64);
        busy(&mut gradient, 1000, |_| 60 * MS);
        assert_eq!(gradient.limit(), 64);
    }

    #[test]
    fn idle_slots_do_not_grow_it() {
        let mut gradient = Gradient::new(16, 64);
        for _ in 0..1000 {
            gradient.sample(60 * MS, 2);
        }
        assert_eq!(gradient.limit(), 16);
    }

    #[test]
    fn a_backend_that_slows_down_brings_the_limit_down_then_it_probes_again() {
        let mut gradient = Gradient::new(64, 64);
        busy(&mut gradient, 2000, |_| 60 * MS);
        // Four times slower at once: within a few windows, a quarter of
        // the grants or fewer.
        busy(&mut gradient, 200, |_| 240 * MS);
        assert!(gradient.limit() <= 16, "{}", gradient.limit());
        // Slower for good: once the baseline has forgotten the fast
        // windows, the limit grows again.
        busy(&mut gradient, 5000, |_| 240 * MS);
        assert_eq!(gradient.limit(), 64);
    }

    #[test]
    fn it_stays_between_one_and_the_ceiling() {
        let mut gradient = Gradient::new(100, 8);
        assert_eq!(gradient.limit(), 8);
        for _ in 0..10 {
            gradient.halve();
        }
        assert_eq!(gradient.limit(), 1);
        busy(&mut gradient, 100, |_| 10 * MS);
        busy(&mut gradient, 1000, |_| Duration::from_secs(100));
        assert!(gradient.limit() >= 1);
        assert!(Gradient::new(0, 0).limit() == 1);
    }
}
