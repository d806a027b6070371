//! Calls that take many items at once (DeleteObjects, BatchWriteItem,
//! BatchGetItem, DeleteMessageBatch), made for callers that each have one.
//!
//! Each caller hands its item to a [`Batcher`] and waits for its own
//! outcome. One task makes the calls: what comes in while a call is under
//! way goes together in the next, up to the call's limit, and a full batch
//! goes beside the calls under way (up to [`MAX_PARALLEL_CALLS`]). So
//! nothing waits for a batch to fill: a lone item goes at once, under load
//! the batches grow by themselves, and where calls are slow full batches
//! overlap. Items whose keys are
//! the same never share a call (DynamoDB refuses such a batch); the later one
//! waits for the next.
//!
//! A caller's wait is partly its item's wait for a call to be made, which
//! grows with the load however fast the backend is. Inside
//! [`waits_counted`], that part is added up ([`waited`]), so that the
//! concurrency measure can take it out of a request's time and see the
//! backend's own.

use crate::error::{Class, StorageError};
use std::cell::Cell;
use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

/// Batch calls under way at once, at most. A call is made beside others
/// only for a full batch: on local servers four calls at once for any
/// batch made the batches smaller and the run slower (S3 -> DynamoDB 535
/// against 578 requests/s, 3.21 against 2.62 calls per request), but where
/// a call takes 20 ms one at a time caps a queue's deletions at 500 a
/// second (ten per call).
pub(crate) const MAX_PARALLEL_CALLS: usize = 8;

tokio::task_local! {
    /// How long the current task's items have waited for their calls to be
    /// made, in all.
    static WAITED: Cell<Duration>;
}

/// Runs `task` with its items' waits for a call added up: [`waited`] says
/// the sum so far, inside it.
pub(crate) async fn waits_counted<F: Future>(task: F) -> F::Output {
    WAITED.scope(Cell::new(Duration::ZERO), task).await
}

/// How long the current task's items have waited for their calls to be
/// made so far; zero outside [`waits_counted`].
pub(crate) fn waited() -> Duration {
    WAITED.try_with(Cell::get).unwrap_or_default()
}

/// An item, when it came, and who waits for its outcome and the time its
/// call was made.
type Waiting<I, O> = (I, Instant, oneshot::Sender<(O, Instant)>);

/// Hands items to the task that batches them.
pub(crate) struct Batcher<I, O> {
    items: mpsc::UnboundedSender<Waiting<I, O>>,
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the task: `call` takes up to `limit` items (no two with the
    /// same `key`) and returns an outcome for each, in order. The task ends
    /// when the batcher is dropped.
    pub(crate) fn start<K, F, Fut>(limit: usize, key: K, call: F) -> Batcher<I, O>
    where
        K: Fn(&I) -> String + Send + Sync + 'static,
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<O>> + Send + 'static,
    {
        let (items, waiting) = mpsc::unbounded_channel();
        tokio::spawn(run(limit.max(1), key, call, waiting));
        Batcher { items }
    }

    /// Hands `item` over and waits for its outcome; `None` if the task is
    /// gone (the runtime is shutting down).
    pub(crate) async fn submit(&self, item: I) -> Option<O> {
        let (done, outcome) = oneshot::channel();
        let came = Instant::now();
        self.items.send((item, came, done)).ok()?;
        let (outcome, made) = outcome.await.ok()?;
        let _ = WAITED.try_with(|waited| waited.set(waited.get() + made.saturating_duration_since(came)));
        Some(outcome)
    }
}

impl<I: Send + 'static, T: Send + 'static> Batcher<I, Result<T, StorageError>> {
    /// [`Batcher::submit`] for a call that can fail: if the task is gone
    /// (the runtime is shutting down), `action` fails as fatal.
    pub(crate) async fn call(&self, item: I, action: impl FnOnce() -> String) -> Result<T, StorageError> {
        self.submit(item)
            .await
            .unwrap_or_else(|| Err(StorageError::fatal(action(), "shutting down")))
    }
}

/// Each item's outcome from a batch call's answer: a call refused for its
/// data is made again one item at a time (`one`), so that only the item at
/// fault fails, with its own error; any other failure is every item's.
pub(crate) async fn per_item_outcomes<'a, I, T, F, Fut>(
    batched: Result<Vec<Result<T, StorageError>>, StorageError>,
    items: &'a [I],
    one: F,
) -> Vec<Result<T, StorageError>>
where
    F: Fn(&'a I) -> Fut,
    Fut: std::future::Future<Output = Result<T, StorageError>>,
{
    match batched {
        Ok(outcomes) => outcomes,
        Err(e) if e.class == Class::Request => {
            let mut outcomes = Vec::new();
            for item in items {
                outcomes.push(one(item).await);
            }
            outcomes
        }
        Err(e) => items.iter().map(|_| Err(e.duplicate())).collect(),
    }
}

async fn run<I, O, K, F, Fut>(
    limit: usize,
    key: K,
    call: F,
    mut waiting: mpsc::UnboundedReceiver<Waiting<I, O>>,
) where
    I: Send + 'static,
    O: Send + 'static,
    K: Fn(&I) -> String,
    F: Fn(Vec<I>) -> Fut,
    Fut: Future<Output = Vec<O>> + Send + 'static,
{
    let in_flight = Arc::new(AtomicUsize::new(0));
    // Keys in the calls under way: an item with one of them waits for a
    // later call, so that one key's items go in the order they came.
    let busy = Arc::new(Mutex::new(HashSet::new()));
    let finished = Arc::new(Notify::new());
    // Items received and not yet sent, in order; those that met a key
    // already in a batch come first in the next one.
    let mut carried: VecDeque<Waiting<I, O>> = VecDeque::new();
    let mut closed = false;
    loop {
        // A call is made for whatever waits when none is under way, and
        // beside the ones under way only for a full batch.
        loop {
            let calls = in_flight.load(Ordering::Acquire);
            let ready = match calls {
                0 => !carried.is_empty(),
                calls => {
                    calls < MAX_PARALLEL_CALLS && (carried.len() >= limit || closed && !carried.is_empty())
                }
            };
            if ready {
                break;
            }
            if closed && carried.is_empty() && calls == 0 {
                return;
            }
            tokio::select! {
                item = waiting.recv(), if !closed => match item {
                    Some(item) => carried.push_back(item),
                    None => closed = true,
                },
                () = finished.notified() => {}
            }
        }
        while let Ok(item) = waiting.try_recv() {
            carried.push_back(item);
        }
        let mut batch: Vec<Waiting<I, O>> = Vec::new();
        let mut keys = HashSet::new();
        let mut later = VecDeque::new();
        {
            let busy = busy.lock().unwrap();
            while batch.len() < limit {
                let Some(item) = carried.pop_front() else { break };
                let item_key = key(&item.0);
                if !busy.contains(&item_key) && keys.insert(item_key) {
                    batch.push(item);
                } else {
                    later.push_back(item);
                }
            }
        }
        // Skipped items go first next time, ahead of the ones not reached.
        later.extend(carried.drain(..));
        carried = later;
        if batch.is_empty() {
            // All that waits is behind a call under way: wait for it.
            finished.notified().await;
            continue;
        }
        busy.lock().unwrap().extend(keys.iter().cloned());
        let (items, outcomes): (Vec<I>, Vec<oneshot::Sender<(O, Instant)>>) =
            batch.into_iter().map(|(item, _, done)| (item, done)).unzip();
        let made = Instant::now();
        let results = call(items);
        in_flight.fetch_add(1, Ordering::AcqRel);
        let (in_flight, finished, busy) = (in_flight.clone(), finished.clone(), busy.clone());
        tokio::spawn(async move {
            let results = results.await;
            busy.lock().unwrap().retain(|k| !keys.contains(k));
            in_flight.fetch_sub(1, Ordering::AcqRel);
            finished.notify_one();
            debug_assert_eq!(results.len(), outcomes.len(), "one outcome per item");
            for (done, result) in outcomes.into_iter().zip(results) {
                // The caller may have given up (the run stopped): nothing to tell.
                let _ = done.send((result, made));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// The batches a call was made with.
    type Calls = Arc<Mutex<Vec<Vec<String>>>>;

    /// A batcher whose call records its batches, taking 20 ms.
    fn recording(limit: usize) -> (Arc<Batcher<String, usize>>, Calls) {
        let (batcher, calls, _) = overlapping(limit);
        (batcher, calls)
    }

    /// Calls under way now, and the most that were at once.
    type AtOnce = Arc<Mutex<(usize, usize)>>;

    /// [`recording`], and the calls under way at once.
    fn overlapping(limit: usize) -> (Arc<Batcher<String, usize>>, Calls, AtOnce) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let at_once = Arc::new(Mutex::new((0, 0)));
        let (seen, counted) = (calls.clone(), at_once.clone());
        let batcher = Batcher::start(
            limit,
            |item: &String| item.split(':').next().unwrap().to_owned(),
            move |items: Vec<String>| {
                let (seen, counted) = (seen.clone(), counted.clone());
                async move {
                    {
                        let mut c = counted.lock().unwrap();
                        c.0 += 1;
                        c.1 = c.1.max(c.0);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    counted.lock().unwrap().0 -= 1;
                    let sizes = vec![items.len(); items.len()];
                    seen.lock().unwrap().push(items);
                    sizes
                }
            },
        );
        (Arc::new(batcher), calls, at_once)
    }

    /// Submits `items` side by side and waits for all of them.
    async fn submit_all(batcher: &Arc<Batcher<String, usize>>, items: impl Iterator<Item = String>) {
        let waits: Vec<_> = items
            .map(|item| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.submit(item).await })
            })
            .collect();
        for w in waits {
            w.await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn full_batches_go_side_by_side_and_part_batches_one_at_a_time() {
        // Twelve items at once, three per call: four full batches overlap.
        let (batcher, calls, at_once) = overlapping(3);
        submit_all(&batcher, (0..12).map(|i| format!("i{i}"))).await;
        assert!(calls.lock().unwrap().iter().all(|b| b.len() <= 3));
        assert!(at_once.lock().unwrap().1 >= 2, "full batches overlap");
        // Two at a time, never a full batch: one call at a time.
        let (batcher, _, at_once) = overlapping(3);
        for round in 0..4 {
            submit_all(&batcher, (0..2).map(|i| format!("r{round}-{i}"))).await;
        }
        assert_eq!(at_once.lock().unwrap().1, 1);
    }

    #[tokio::test]
    async fn one_keys_items_never_go_in_calls_under_way_at_once() {
        let (batcher, calls, at_once) = overlapping(2);
        submit_all(&batcher, (0..12).map(|i| format!("k:{i}"))).await;
        let calls = calls.lock().unwrap().clone();
        assert!(calls.iter().all(|b| b.len() == 1), "{calls:?}");
        assert_eq!(at_once.lock().unwrap().1, 1, "one call at a time for one key");
        assert_eq!(calls.concat().len(), 12);
    }

    #[tokio::test]
    async fn a_lone_item_goes_at_once_and_later_ones_go_together() {
        let (batcher, calls) = recording(10);
        assert_eq!(batcher.submit("a".into()).await, Some(1));
        // While "b" is under way, eight more come in: one call for them.
        let first = tokio::spawn({
            let batcher = batcher.clone();
            async move { batcher.submit("b".into()).await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let rest: Vec<_> = (0..8)
            .map(|i| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.submit(format!("c{i}")).await })
            })
            .collect();
        assert_eq!(first.await.unwrap(), Some(1));
        for r in rest {
            assert_eq!(r.await.unwrap(), Some(8));
        }
        assert_eq!(calls.lock().unwrap().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_tasks_wait_for_a_call_to_be_made_is_counted_and_the_call_itself_is_not() {
        let (batcher, _) = recording(10);
        // "a" goes at once: its 20 ms are the call's, not a wait.
        let alone = waits_counted(async {
            batcher.submit("a".into()).await;
            waited()
        });
        assert_eq!(alone.await, Duration::ZERO);
        // "c" comes 5 ms into the call for "b": it waits 15 ms for it to
        // end, then 20 ms for its own.
        let under_way = tokio::spawn({
            let batcher = batcher.clone();
            async move { batcher.submit("b".into()).await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let behind = waits_counted(async {
            batcher.submit("c".into()).await;
            waited()
        });
        assert_eq!(behind.await, Duration::from_millis(15));
        under_way.await.unwrap();
        assert_eq!(
            waited(),
            Duration::ZERO,
            "nothing is counted outside a task that asks"
        );
    }

    #[tokio::test]
    async fn batches_keep_to_the_limit_and_never_hold_one_key_twice() {
        let (batcher, calls) = recording(3);
        let blocker = tokio::spawn({
            let batcher = batcher.clone();
            async move { batcher.submit("x".into()).await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let items = ["k:1", "k:2", "m", "n", "o"];
        let waits: Vec<_> = items
            .iter()
            .map(|item| {
                let batcher = batcher.clone();
                let item = item.to_string();
                tokio::spawn(async move { batcher.submit(item).await })
            })
            .collect();
        blocker.await.unwrap();
        for w in waits {
            w.await.unwrap().unwrap();
        }
        let calls = calls.lock().unwrap().clone();
        assert!(calls.iter().all(|batch| batch.len() <= 3), "{calls:?}");
        for batch in &calls {
            let ks: Vec<_> = batch.iter().filter(|i| i.starts_with("k:")).collect();
            assert!(ks.len() <= 1, "one key twice in {batch:?}");
        }
        // Every item went exactly once, and k:1 before k:2.
        let all: Vec<String> = calls.concat();
        assert_eq!(all.len(), 6);
        let at = |x: &str| all.iter().position(|i| i == x).unwrap();
        assert!(at("k:1") < at("k:2"));
    }
}
