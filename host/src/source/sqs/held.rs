//! The messages a host holds: received, not yet deleted or made visible
//! again. The request queue's source and a queue's dead letters keep the
//! same ledger, by message id: what was received, the latest receipt
//! handle (the only one that can delete it), and when it becomes visible
//! again.

use super::REASON_ATTRIBUTE;
use crate::source::{Fetched, Version};
use crate::traces::{Incoming, TRACEPARENT};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

/// A message held.
pub(super) struct Held {
    pub(super) receipt: String,
    pub(super) body: String,
    /// Its FIFO message group.
    pub(super) group: Option<String>,
    /// Its `reason` attribute: why `run` dead-lettered it (a dead letter's).
    pub(super) reason: Option<String>,
    /// When its visibility timeout runs out, as last set.
    pub(super) visible_at: Instant,
}

impl Held {
    /// A received message, visible again after `visibility`: its id and
    /// what is held of it; `None` without an id or a receipt handle.
    pub(super) fn received(message: &Message, visibility: Duration) -> Option<(String, Held)> {
        let (id, receipt) = (message.message_id()?, message.receipt_handle()?);
        let held = Held {
            receipt: receipt.to_owned(),
            body: message.body().unwrap_or_default().to_owned(),
            group: message
                .attributes()
                .and_then(|all| all.get(&MessageSystemAttributeName::MessageGroupId))
                .cloned(),
            reason: message
                .message_attributes()
                .and_then(|all| all.get(REASON_ATTRIBUTE))
                .and_then(|value| value.string_value())
                .map(str::to_owned),
            visible_at: Instant::now() + visibility,
        };
        Some((id.to_owned(), held))
    }

    /// The version it was received as: its receipt handle.
    pub(super) fn version(&self) -> Version {
        Version(Some(self.receipt.clone()))
    }
}

/// The trace context `message` carries: W3C's attributes first (what an
/// OpenTelemetry producer sets), else X-Ray's system attribute (SQS sets
/// it where X-Ray traces the sender).
pub(super) fn trace_context(message: &Message) -> Option<Incoming> {
    let attribute = |name: &str| {
        message
            .message_attributes()
            .and_then(|all| all.get(name))
            .and_then(|value| value.string_value())
            .map(str::to_owned)
    };
    if let Some(traceparent) = attribute(TRACEPARENT) {
        return Some(Incoming::W3c {
            traceparent,
            tracestate: attribute(TRACESTATE),
        });
    }
    message
        .attributes()
        .and_then(|all| all.get(&MessageSystemAttributeName::AwsTraceHeader))
        .map(|header| Incoming::XRay(header.clone()))
}

/// The W3C attribute beside `traceparent`: vendors' own trace state.
pub(super) const TRACESTATE: &str = "tracestate";

/// The messages held, by id.
#[derive(Default)]
pub(super) struct Ledger(Mutex<HashMap<String, Held>>);

impl Ledger {
    /// The held messages, to look at or change.
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.0.lock().unwrap()
    }

    /// The message `id` as a request read: gone if no longer held, too
    /// large past `max_bytes`, else its body.
    pub(super) fn fetch(&self, id: &str, max_bytes: u64) -> Fetched {
        match self.lock().get(id) {
            None => Fetched::Gone,
            Some(held) => match held.body.len() as u64 {
                size if size > max_bytes => Fetched::TooLarge(size, held.version()),
                _ => Fetched::Request(held.body.clone().into_bytes(), held.version()),
            },
        }
    }

    /// Lets go of every message: their receipt handles, to make them
    /// visible again.
    pub(super) fn release_all(&self) -> Vec<String> {
        self.lock().drain().map(|(_, held)| held.receipt).collect()
    }
}
