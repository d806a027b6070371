//! How many grants there may be: the limit controller. The grant queue
//! asks it after each event that may move the number; each kind of
//! controller decides from what it is told.
//!
//! - [`Aimd`]: `--concurrency N`: N, halved on broad throttling, one added
//!   back after as many successes in a row as there are grants (additive
//!   increase, multiplicative decrease, as TCP does);
//! - [`super::gradient::Gradient`]: found by measuring how long requests
//!   hold their grants, halved on broad throttling all the same.

use super::gradient::Gradient;
use std::time::Duration;

/// A controller of the number of grants.
pub(super) trait Limit: Send {
    /// The number of grants there may be now.
    fn current(&self) -> usize;

    /// The backend is throttling many keys (see `throttling.rs`): lower the
    /// number; what it is now.
    fn throttled(&mut self) -> usize;

    /// A request held its grant for `latency` without failing, while
    /// `in_use` grants were held; what the number is now.
    fn sample(&mut self, _latency: Duration, _in_use: usize) -> usize {
        self.current()
    }

    /// A call succeeded; what the number is now.
    fn succeeded(&mut self) -> usize {
        self.current()
    }
}

/// `--concurrency N`: the number stays at N unless the backend throttles
/// broadly; then halved (down to one), and given back one at a time.
pub(super) struct Aimd {
    limit: usize,
    max: usize,
    /// Successes since the number last changed.
    successes: usize,
}

impl Aimd {
    pub(super) fn new(max: usize) -> Aimd {
        Aimd {
            limit: max.max(1),
            max: max.max(1),
            successes: 0,
        }
    }
}

impl Limit for Aimd {
    fn current(&self) -> usize {
        self.limit
    }

    fn throttled(&mut self) -> usize {
        self.successes = 0;
        self.limit = (self.limit / 2).max(1);
        self.limit
    }

    /// After as many successes as there are grants, one more, up to N.
    fn succeeded(&mut self) -> usize {
        if self.limit == self.max {
            return self.limit;
        }
        self.successes += 1;
        if self.successes >= self.limit {
            self.successes = 0;
            self.limit += 1;
            if self.limit == self.max {
                tracing::info!(
                    concurrency = self.limit,
                    "The backend keeps up again: full concurrency."
                );
            }
        }
        self.limit
    }
}

impl Limit for Gradient {
    fn current(&self) -> usize {
        self.limit()
    }

    fn throttled(&mut self) -> usize {
        self.halve()
    }

    fn sample(&mut self, latency: Duration, in_use: usize) -> usize {
        Gradient::sample(self, latency, in_use)
    }
}
