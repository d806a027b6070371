//! A simulated queue, FIFO (grouped by widget) or standard (no order, and
//! now and then a message delivered twice). A receive is a page; a message
//! is never listed again while the host holds it. What the host holds does
//! not time out (the heartbeat is taken as perfect); a message handed back
//! returns after its delay; on a crash, what was held returns after the
//! visibility timeout; at a stop, at once.

use super::ledger::Ledger;
use super::scenario::Request;
use crate::error::StorageError;
use crate::source::{DeadLettering, Fetched, Listed, Page, Source, Version};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Messages per receive, as SQS allows.
const RECEIVE: usize = 10;

/// How long a message a crashed host held stays invisible.
const VISIBILITY: Duration = Duration::from_secs(30);

/// How long a standard queue's message handed back stays away.
const HAND_BACK_DELAY: Duration = Duration::from_secs(5);

/// How long an empty receive waits (long polling).
const LONG_POLL: Duration = Duration::from_secs(1);

pub(super) struct SimQueue {
    fifo: bool,
    epoch: Instant,
    state: Mutex<State>,
    ledger: Arc<Ledger>,
}

struct State {
    messages: Vec<Message>,
    rng: ChaCha8Rng,
    receipts: u64,
}

struct Message {
    request: Request,
    deleted: bool,
    /// Received by the host and not handed back.
    held: bool,
    /// Not receivable before then (virtual time since the epoch).
    visible_at: Duration,
    /// Received at least once: in flight while invisible.
    received: bool,
    /// The receipt of its latest receive.
    receipt: String,
}

impl SimQueue {
    pub(super) fn new(
        requests: Vec<Request>,
        fifo: bool,
        epoch: Instant,
        rng: ChaCha8Rng,
        ledger: Arc<Ledger>,
    ) -> SimQueue {
        let messages = requests
            .into_iter()
            .map(|request| Message {
                visible_at: request.arrives,
                request,
                deleted: false,
                held: false,
                received: false,
                receipt: String::new(),
            })
            .collect();
        SimQueue {
            fifo,
            epoch,
            state: Mutex::new(State {
                messages,
                rng,
                receipts: 0,
            }),
            ledger,
        }
    }

    /// The host crashed: what it held returns after the visibility timeout.
    pub(super) fn crashed(&self) {
        let now = self.epoch.elapsed();
        for message in &mut self.state.lock().unwrap().messages {
            if message.held {
                message.held = false;
                message.visible_at = now + VISIBILITY;
            }
        }
    }

    /// One receive: the messages visible now, as SQS would hand them out.
    fn receive(&self) -> Vec<Listed> {
        let now = self.epoch.elapsed();
        let mut state = self.state.lock().unwrap();
        let State {
            messages,
            rng,
            receipts,
        } = &mut *state;
        let in_flight = |m: &Message| !m.deleted && (m.held || (m.received && m.visible_at > now));
        let mut chosen = Vec::new();
        if self.fifo {
            // A group with a message in flight is passed over whole; the
            // others give their visible messages in order.
            let mut locked: Vec<String> = messages
                .iter()
                .filter(|m| in_flight(m))
                .map(|m| group(&m.request))
                .collect();
            for (i, m) in messages.iter().enumerate() {
                if chosen.len() == RECEIVE {
                    break;
                }
                let g = group(&m.request);
                if m.deleted || locked.contains(&g) {
                    continue;
                }
                if m.visible_at > now {
                    // Not yet sent, or waiting out a delay: what follows in
                    // its group waits too.
                    locked.push(g);
                    continue;
                }
                chosen.push(i);
            }
        } else {
            for (i, m) in messages.iter().enumerate() {
                let duplicate = m.held && rng.random_bool(0.02);
                if !m.deleted && ((!in_flight(m) && m.visible_at <= now) || duplicate) {
                    chosen.push(i);
                }
            }
            // No order: a few swaps, then the first ten.
            for _ in 0..chosen.len() / 3 {
                let (a, b) = (
                    rng.random_range(0..chosen.len()),
                    rng.random_range(0..chosen.len()),
                );
                chosen.swap(a, b);
            }
            chosen.truncate(RECEIVE);
        }
        chosen
            .into_iter()
            .map(|i| {
                *receipts += 1;
                let m = &mut messages[i];
                m.held = true;
                m.received = true;
                m.receipt = format!("{}#{receipts}", m.request.key);
                Listed {
                    key: m.request.key.clone(),
                    size: m.request.body.len() as u64,
                    version: Version(Some(m.receipt.clone())),
                    modified: None,
                    trace: None,
                }
            })
            .collect()
    }

    /// Removes the message received as `version`, if that receipt is still
    /// good; `true` if it was there to remove.
    fn remove(&self, key: &str, version: &Version) -> Result<bool, StorageError> {
        let mut state = self.state.lock().unwrap();
        let Some(m) = state.messages.iter_mut().find(|m| m.request.key == key) else {
            return Ok(false);
        };
        if m.deleted {
            return Ok(false);
        }
        // A FIFO queue takes only the latest receipt; a standard queue any.
        if self.fifo && version.0.as_deref() != Some(m.receipt.as_str()) {
            return Err(StorageError::request(
                format!("delete message {key}"),
                "the receipt handle has expired",
            ));
        }
        m.deleted = true;
        m.held = false;
        Ok(true)
    }

    /// Hands a held message back: receivable again after `delay`.
    pub(super) fn hand_back_message(&self, key: &str, delay: Duration) {
        let now = self.epoch.elapsed();
        let mut state = self.state.lock().unwrap();
        if let Some(m) = state.messages.iter_mut().find(|m| m.request.key == key && m.held) {
            m.held = false;
            m.visible_at = now + delay;
        }
    }
}

/// A message's FIFO group: its widget (malformed requests have a group of
/// their own each).
fn group(request: &Request) -> String {
    request
        .widget
        .clone()
        .unwrap_or_else(|| format!("~{}", request.key))
}

#[async_trait::async_trait]
impl Source for SimQueue {
    fn describe(&self) -> String {
        format!("sim-queue({})", if self.fifo { "fifo" } else { "standard" })
    }
    fn dead_letter_place(&self) -> String {
        "sim-dead-letter-queue".into()
    }
    fn relists(&self) -> bool {
        false
    }

    async fn list(&self) -> Result<Page, StorageError> {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let started = tokio::time::Instant::now();
        let requests = loop {
            let received = self.receive();
            if !received.is_empty() || started.elapsed() >= LONG_POLL {
                break received;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Ok(Page {
            full: requests.len() == RECEIVE,
            requests,
            from_start: true,
            reached_end: true,
            set_aside: Vec::new(),
        })
    }

    async fn read(&self, key: &str, max_bytes: u64) -> Result<Fetched, StorageError> {
        let state = self.state.lock().unwrap();
        let Some(m) = state
            .messages
            .iter()
            .find(|m| m.request.key == key && m.held && !m.deleted)
        else {
            return Ok(Fetched::Gone);
        };
        let version = Version(Some(m.receipt.clone()));
        Ok(match m.request.body.len() as u64 {
            size if size > max_bytes => Fetched::TooLarge(size, version),
            _ => Fetched::Request(m.request.body.clone(), version),
        })
    }

    async fn ack(&self, key: &str, version: &Version) -> Result<(), StorageError> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        if self.remove(key, version)? {
            self.ledger.acked(key);
        }
        Ok(())
    }

    async fn dead_letter(
        &self,
        key: &str,
        version: &Version,
        reason: &str,
        _traceparent: Option<&str>,
    ) -> Result<DeadLettering, StorageError> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        if self.remove(key, version)? {
            self.ledger.dead_lettered(key, reason);
            return Ok(DeadLettering::Kept);
        }
        Ok(DeadLettering::Missed)
    }

    async fn hand_back(&self, key: &str, _version: &Version) {
        // As the SQS source: at once on a FIFO queue, which holds the group
        // back itself; later on a standard one.
        let delay = if self.fifo {
            Duration::ZERO
        } else {
            HAND_BACK_DELAY
        };
        self.hand_back_message(key, delay);
    }

    fn pass_over(&self, key: &str) {
        self.hand_back_message(key, VISIBILITY);
    }

    async fn finish(&self) {
        let now = self.epoch.elapsed();
        for m in &mut self.state.lock().unwrap().messages {
            if m.held {
                m.held = false;
                m.visible_at = now;
            }
        }
    }
}
