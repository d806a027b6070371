//! Whether throttling is the backend's or one key's. S3 throttles per
//! prefix and DynamoDB per partition, so one hot widget is not a slow
//! backend: a throttled call counts against the key it was made for, and
//! the throttling is broad only when, within [`THROTTLE_WINDOW`], calls of
//! at least [`broad`] different keys were throttled. One key's throttling
//! is answered by that key's own backoff (its request lets go of its grant
//! while it waits).

use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// The calls already under way when a backend starts throttling answer
/// throttled too: they are one signal, not many.
pub(super) const DECREASE_EVERY: Duration = Duration::from_millis(200);

/// How far back throttled calls count towards deciding that the backend,
/// not one key, is throttling.
const THROTTLE_WINDOW: Duration = Duration::from_secs(1);

/// How many different keys must have been throttled within
/// [`THROTTLE_WINDOW`] for the throttling to count as the backend's: a
/// quarter of the grants, and at least two.
fn broad(limit: usize) -> usize {
    (limit / 4).max(2)
}

/// The throttled calls of the last moments.
#[derive(Default)]
pub(super) struct Throttling {
    /// Throttled calls within the last [`THROTTLE_WINDOW`]: when, and for
    /// which key.
    throttled: VecDeque<(Instant, String)>,
    /// When the number of grants was last lowered for throttling.
    pub(super) last_decrease: Option<Instant>,
}

impl Throttling {
    /// A call for `key` was throttled, with `limit` grants: how many keys
    /// were throttled lately, if that is broad throttling the number should
    /// answer (at most once per [`DECREASE_EVERY`]).
    pub(super) fn broad(&mut self, key: &str, limit: usize) -> Option<usize> {
        let now = Instant::now();
        while self
            .throttled
            .front()
            .is_some_and(|(when, _)| now.duration_since(*when) > THROTTLE_WINDOW)
        {
            self.throttled.pop_front();
        }
        self.throttled.push_back((now, key.to_owned()));
        let mut keys: Vec<&str> = self.throttled.iter().map(|(_, key)| key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        let keys_throttled = keys.len();
        if keys_throttled < broad(limit)
            || self
                .last_decrease
                .is_some_and(|last| last.elapsed() < DECREASE_EVERY)
        {
            return None;
        }
        self.last_decrease = Some(now);
        Some(keys_throttled)
    }
}
