//! Calls that take many items at once (DeleteObjects, BatchWriteItem,
//! BatchGetItem, DeleteMessageBatch), made for callers that each have one.
//!
//! Each caller hands its item to a [`Batcher`] and waits for its own
//! outcome. One task makes the calls, [`PARALLEL_CALLS`] at a time: what
//! comes in while a call is under way goes together in the next, up to the
//! call's limit. So nothing waits for a batch to fill: a lone item goes at
//! once, and under load the batches grow by themselves. Items whose keys are
//! the same never share a call (DynamoDB refuses such a batch); the later one
//! waits for the next.

use crate::error::{Class, StorageError};
use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Batch calls under way at once. One: in the benchmark four at once made
/// the batches smaller and the run slower (S3 -> DynamoDB 535 against 578
/// requests/s, 3.21 against 2.62 calls per request).
pub(crate) const PARALLEL_CALLS: usize = 1;

/// An item, and who waits for its outcome.
type Waiting<I, O> = (I, oneshot::Sender<O>);

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
        self.items.send((item, done)).ok()?;
        outcome.await.ok()
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
pub(crate) async fn settle<'a, I, T, F, Fut>(
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
    let calls = Arc::new(Semaphore::new(PARALLEL_CALLS));
    // Items that met a key already in the batch: first in the next one.
    let mut carried: VecDeque<Waiting<I, O>> = VecDeque::new();
    loop {
        // Collected only once a call can be made: meanwhile items gather.
        let permit = calls.clone().acquire_owned().await.expect("never closed");
        let mut batch: Vec<Waiting<I, O>> = Vec::new();
        let mut keys = HashSet::new();
        let mut later = VecDeque::new();
        let mut take = |item: Waiting<I, O>, batch: &mut Vec<Waiting<I, O>>| {
            if keys.insert(key(&item.0)) {
                batch.push(item);
            } else {
                later.push_back(item);
            }
        };
        while batch.len() < limit {
            let Some(item) = carried.pop_front() else { break };
            take(item, &mut batch);
        }
        if batch.is_empty() {
            match waiting.recv().await {
                Some(item) => take(item, &mut batch),
                None => return,
            }
        }
        while batch.len() < limit {
            match waiting.try_recv() {
                Ok(item) => take(item, &mut batch),
                Err(_) => break,
            }
        }
        // Unused carried items keep their place, ahead of the skipped ones.
        later.extend(carried.drain(..));
        carried = later;
        let (items, outcomes): (Vec<I>, Vec<oneshot::Sender<O>>) = batch.into_iter().unzip();
        let results = call(items);
        tokio::spawn(async move {
            let results = results.await;
            drop(permit);
            debug_assert_eq!(results.len(), outcomes.len(), "one outcome per item");
            for (done, result) in outcomes.into_iter().zip(results) {
                // The caller may have given up (the run stopped): nothing to tell.
                let _ = done.send(result);
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
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = calls.clone();
        let batcher = Batcher::start(
            limit,
            |item: &String| item.split(':').next().unwrap().to_owned(),
            move |items: Vec<String>| {
                let seen = seen.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let sizes = vec![items.len(); items.len()];
                    seen.lock().unwrap().push(items);
                    sizes
                }
            },
        );
        (Arc::new(batcher), calls)
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
