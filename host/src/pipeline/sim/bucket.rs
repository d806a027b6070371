//! A simulated bucket: requests listed in key order, a page at a time, on
//! every pass again; removal by the version read.

use super::ledger::Ledger;
use super::scenario::Request;
use crate::error::StorageError;
use crate::source::{DeadLettering, Fetched, Listed, Page, Source, Version};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Requests listed per page.
const PAGE: usize = 5;

pub(super) struct SimBucket {
    requests: Vec<Request>,
    epoch: Instant,
    state: Mutex<State>,
    ledger: Arc<Ledger>,
}

#[derive(Default)]
struct State {
    /// Requests that have arrived and are not removed: key -> body.
    objects: BTreeMap<String, Vec<u8>>,
    /// Requests that have arrived (by index into `requests`).
    arrived: usize,
    /// The listing's watermark: the last key listed this pass.
    after: Option<String>,
}

impl SimBucket {
    pub(super) fn new(requests: Vec<Request>, epoch: Instant, ledger: Arc<Ledger>) -> SimBucket {
        SimBucket {
            requests,
            epoch,
            state: Mutex::default(),
            ledger,
        }
    }

    /// Puts the requests whose time has come into the bucket.
    fn arrive(&self, state: &mut State) {
        let now = self.epoch.elapsed();
        while let Some(request) = self.requests.get(state.arrived).filter(|r| r.arrives <= now) {
            state.objects.insert(request.key.clone(), request.body.clone());
            state.arrived += 1;
        }
    }

    /// A new host lists from the first key: the listing position was the
    /// last one's.
    pub(super) fn restart(&self) {
        self.state.lock().unwrap().after = None;
    }
}

#[async_trait::async_trait]
impl Source for SimBucket {
    fn describe(&self) -> String {
        "sim-bucket".into()
    }
    fn dead_letter_place(&self) -> String {
        "sim-dead-letters".into()
    }

    async fn list(&self) -> Result<Page, StorageError> {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let mut state = self.state.lock().unwrap();
        self.arrive(&mut state);
        let from_start = state.after.is_none();
        let after = state.after.clone().unwrap_or_default();
        let requests: Vec<Listed> = state
            .objects
            .range::<String, _>((std::ops::Bound::Excluded(&after), std::ops::Bound::Unbounded))
            .filter(|(key, _)| from_start || **key > after)
            .take(PAGE)
            .map(|(key, body)| Listed {
                key: key.clone(),
                size: body.len() as u64,
                version: Version(Some(key.clone())),
                modified: None,
                trace: None,
            })
            .collect();
        let reached_end = requests.len() < PAGE;
        state.after = match reached_end {
            true => None,
            false => requests.last().map(|r| r.key.clone()),
        };
        Ok(Page {
            requests,
            from_start,
            reached_end,
            set_aside: Vec::new(),
            full: false,
        })
    }

    async fn read(&self, key: &str, max_bytes: u64) -> Result<Fetched, StorageError> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let state = self.state.lock().unwrap();
        Ok(match state.objects.get(key) {
            None => Fetched::Gone,
            Some(body) if body.len() as u64 > max_bytes => {
                Fetched::TooLarge(body.len() as u64, Version(Some(key.to_owned())))
            }
            Some(body) => Fetched::Request(body.clone(), Version(Some(key.to_owned()))),
        })
    }

    async fn ack(&self, key: &str, _version: &Version) -> Result<(), StorageError> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        if self.state.lock().unwrap().objects.remove(key).is_some() {
            self.ledger.acked(key);
        }
        Ok(())
    }

    async fn dead_letter(
        &self,
        key: &str,
        _version: &Version,
        reason: &str,
        _traceparent: Option<&str>,
    ) -> Result<DeadLettering, StorageError> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        if self.state.lock().unwrap().objects.remove(key).is_some() {
            self.ledger.dead_lettered(key, reason);
            return Ok(DeadLettering::Kept);
        }
        Ok(DeadLettering::Missed)
    }
}
