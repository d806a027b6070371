//! The simulated widget store: an in-memory object store whose calls take
//! a little virtual time each and fail as the scenario says, per widget and
//! per moment.

use super::scenario::Fault;
use crate::contract::Destination;
use crate::error::{Class, StorageError};
use crate::sink::memory::MemorySink;
use crate::sink::{Read, Sink};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How long a hung call goes unanswered before the caller's timeout gives
/// up on it (the SDK's attempt timeout, `store.get`'s 10 s).
pub(super) const HUNG_FOR: Duration = Duration::from_secs(10);

pub(super) struct SimStore {
    inner: MemorySink,
    faults: HashMap<String, Fault>,
    /// When the scenario's clock started.
    epoch: Instant,
    rng: Mutex<ChaCha8Rng>,
    latency_us: std::ops::Range<u64>,
    /// Transient failures left, per widget with a `Fault::Transient`.
    transient_left: Mutex<HashMap<String, u32>>,
}

impl SimStore {
    pub(super) fn new(
        faults: HashMap<String, Fault>,
        latency_us: std::ops::Range<u64>,
        epoch: Instant,
        rng: ChaCha8Rng,
    ) -> SimStore {
        let transient_left = faults
            .iter()
            .filter_map(|(widget, fault)| match fault {
                Fault::Transient { calls } => Some((widget.clone(), *calls)),
                _ => None,
            })
            .collect();
        SimStore {
            inner: MemorySink::new(Destination::ObjectStore),
            faults,
            epoch,
            rng: Mutex::new(rng),
            latency_us,
            transient_left: Mutex::new(transient_left),
        }
    }

    pub(super) fn contents(&self) -> std::collections::BTreeMap<String, String> {
        self.inner.contents()
    }

    /// Waits as long as a call takes, then fails it as the widget's fault
    /// says, if it does now.
    async fn call(&self, action: &str, key: &str, write: bool) -> Result<(), StorageError> {
        let latency = Duration::from_micros(self.rng.lock().unwrap().random_range(self.latency_us.clone()));
        tokio::time::sleep(latency).await;
        let widget = widget_of(key);
        let now = self.epoch.elapsed();
        let failure =
            |class, message: &str| Err(StorageError::new(format!("{action} {key}"), class, message));
        match self.faults.get(widget) {
            None => Ok(()),
            Some(Fault::Transient { .. }) => {
                let mut left = self.transient_left.lock().unwrap();
                let left = left.get_mut(widget).expect("set up with the faults");
                if *left == 0 {
                    return Ok(());
                }
                *left -= 1;
                failure(Class::Transient, "service unavailable")
            }
            Some(Fault::Throttled { until }) if until.is_none_or(|until| now < until) => {
                let mut error = StorageError::new(format!("{action} {key}"), Class::Transient, "SlowDown");
                error.throttling = true;
                Err(error)
            }
            Some(Fault::Hung { until }) if until.is_none_or(|until| now < until) => {
                tokio::time::sleep(HUNG_FOR).await;
                failure(Class::Transient, "no answer in time")
            }
            Some(Fault::Refused) if write => failure(Class::Request, "item too large"),
            Some(Fault::Fatal { from, until }) if now >= *from && now < *until => {
                failure(Class::Fatal, "expired credentials")
            }
            Some(_) => Ok(()),
        }
    }
}

/// The widget an object key names: its last segment.
pub(super) fn widget_of(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

#[async_trait::async_trait]
impl Sink for SimStore {
    fn destination(&self) -> Destination {
        Destination::ObjectStore
    }
    fn describe(&self) -> String {
        "sim-store".into()
    }
    async fn put(&self, key: &str, document: &str) -> Result<(), StorageError> {
        self.call("put", key, true).await?;
        self.inner.put(key, document).await
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.call("delete", key, true).await?;
        self.inner.delete(key).await
    }
}

#[async_trait::async_trait]
impl Read for SimStore {
    async fn get(&self, key: &str) -> Result<Option<String>, StorageError> {
        self.call("get", key, false).await?;
        self.inner.get(key).await
    }
}
