//! An SQS queue as a request source: each message is a request. A page is
//! what one to eight receives side by side got (each up to 10 messages,
//! long polling; more of them while the queue keeps filling them all); a
//! message's id is its key, the receipt handle of its latest receive its
//! version.
//!
//! A received message is invisible to other consumers for the visibility
//! timeout; while the host holds it (read ahead, waiting for its turn, in
//! progress) a heartbeat extends that timeout well before it runs out, so
//! slow work is never handed to a second consumer. Messages are deleted in
//! batches (DeleteMessageBatch, through [`Batcher`]), each only after its
//! request's effects are stored. When the run ends, messages received and not done are made
//! visible again at once, for the next consumer.
//!
//! A queue cannot be listed again like a bucket: a message the host let go
//! of comes back only after its visibility timeout, maybe to another host.
//! So the pipeline holds every message it receives until it is done
//! ([`Source::relists`]) rather than deferring some to a later pass.
//!
//! Order: a FIFO queue hands out a message group's messages in order, and
//! none while one of the group is in flight (received and not deleted);
//! with the widget id as the group, one widget's requests are applied one
//! at a time, in order, across any number of hosts.

mod dead_letters;
mod held;
mod writer;

pub(crate) use dead_letters::QueueDeadLetters;
pub(crate) use writer::QueueWriter;

use super::{DeadLettering, Fetched, Listed, Page, Source, Version};
use crate::aws::errors::storage_error;
use crate::aws::sqs::{
    BATCH, Queue, change_visibility_batch, counts_none, delete_batch, delete_one, make_visible,
};
use crate::batch::{Batcher, per_item_outcomes};
use crate::error::{Class, StorageError};
use crate::traces::TRACEPARENT;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};
use held::{Held, Ledger};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{info, warn};

/// The longest long poll SQS allows, and the default.
pub(crate) const MAX_WAIT_SECONDS: u8 = 20;

/// The longest a receive waits, in a run to the end of the queue, while
/// the host holds messages: such a receive only looks for other groups'
/// messages, and the one under way when the last requests are done holds
/// the end back this long at most. Once the host holds none, a receive
/// waits the whole wait time: that one decides whether the queue is empty.
const BRIEF_WAIT: Duration = Duration::from_secs(1);

/// The message attribute holding a dead letter's reason.
pub(crate) const REASON_ATTRIBUTE: &str = "reason";

/// The message attribute naming the queue a dead letter came from.
const SOURCE_ATTRIBUTE: &str = "source-queue";

/// A reason is cut to this many bytes (SQS allows 256 KiB per message).
const MAX_REASON_BYTES: usize = 4096;

/// How long a standard queue's message handed back for its busy widget
/// stays away: visible at once, this host would receive it straight back.
const STANDARD_HAND_BACK_DELAY: Duration = Duration::from_secs(5);

/// Receives a list makes side by side, at most. Eight return up to 80
/// messages a round trip: at 20 ms a call, 4,000 a second.
const MAX_RECEIVES: usize = 8;

/// How many receives the next list makes, after `receives` of which `full`
/// came back with all ten messages: twice as many when all were full (the
/// queue has more than they can carry), half when none was, else the same.
fn next_receives(receives: usize, full: usize) -> usize {
    if full == receives {
        (receives * 2).min(MAX_RECEIVES)
    } else if full == 0 {
        (receives / 2).max(1)
    } else {
        receives
    }
}

/// Messages remembered as done though SQS refused to delete them.
const MAX_DONE: usize = 100_000;

/// How a queue is received from: part of the place, as the user named it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Receiving {
    /// How long a receive waits for messages (long polling), 0 to 20 s.
    pub(crate) wait: Duration,
    /// The visibility timeout the host asks for and keeps extending;
    /// `None`: the queue's own.
    pub(crate) visibility: Option<Duration>,
    /// A run to the end of the queue: receives wait at most
    /// [`BRIEF_WAIT`] while the host holds messages.
    pub(crate) until_empty: bool,
}

impl Default for Receiving {
    fn default() -> Self {
        Receiving {
            wait: Duration::from_secs(MAX_WAIT_SECONDS.into()),
            visibility: None,
            until_empty: false,
        }
    }
}

/// How the queue is consumed.
#[derive(Debug, Clone)]
pub(crate) struct QueueOptions {
    /// How it is received from.
    pub(crate) receiving: Receiving,
    /// Where rejected requests go; `None`: left to the queue's redrive
    /// policy.
    pub(crate) dead_letters: Option<String>,
    /// How long a receive under way when the run stops is let go on.
    pub(crate) stop_grace: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            receiving: Receiving::default(),
            dead_letters: None,
            stop_grace: Duration::from_secs(MAX_WAIT_SECONDS.into()),
        }
    }
}

/// Requests in an SQS queue.
pub(crate) struct SqsSource {
    client: Client,
    queue: Arc<Queue>,
    dead_letters: Option<Queue>,
    wait: Duration,
    /// Receives wait briefly while messages are held (`--until-empty`).
    brief_while_holding: bool,
    visibility: Duration,
    stop_grace: Duration,
    /// Messages received and not yet done with, by message id.
    held: Arc<Ledger>,
    /// Messages whose requests are done (applied, or sent to the
    /// dead-letter queue) but whose deletion SQS refused for good (a
    /// receipt handle outdated by a missed heartbeat): when one comes back,
    /// it is deleted with its new receipt, not processed again.
    done: Mutex<HashSet<String>>,
    /// How many receives the next list makes side by side (see
    /// [`next_receives`]).
    receives: AtomicUsize,
    /// Deletes messages many at a time, by receipt handle.
    deletions: Batcher<String, Result<(), StorageError>>,
    /// The run's stop: a receive under way when it comes is let end (see
    /// `list`).
    stop: CancellationToken,
    /// Ends the heartbeat when the source is dropped.
    _heartbeat: DropGuard,
}

impl SqsSource {
    /// A source reading the queue `name_or_url`, which must exist, as does
    /// the dead-letter queue if one is named. After `stop`, a receive under
    /// way is let end and no other is made.
    pub(crate) async fn open(
        client: Client,
        name_or_url: &str,
        options: QueueOptions,
        stop: CancellationToken,
    ) -> Result<SqsSource, StorageError> {
        let queue = Arc::new(Queue::open(&client, name_or_url).await?);
        let dead_letters = match &options.dead_letters {
            Some(name) => Some(Queue::open(&client, name).await?),
            None => None,
        };
        if let Some(dead_letters) = &dead_letters
            && queue.fifo != dead_letters.fifo
        {
            return Err(StorageError::fatal(
                format!("use {} as the dead-letter queue", dead_letters.name),
                format!(
                    "the dead-letter queue of a {} queue must be {} too",
                    if queue.fifo { "FIFO" } else { "standard" },
                    if queue.fifo {
                        "a FIFO queue"
                    } else {
                        "a standard queue"
                    }
                ),
            ));
        }
        if dead_letters.is_none() && !queue.redrive {
            warn!(queue = %queue.name, "No --dead-letter-queue and the queue has no redrive policy: a rejected request returns after each visibility timeout, for ever.");
        }
        let visibility = options
            .receiving
            .visibility
            .unwrap_or(queue.visibility)
            .max(Duration::from_secs(1));
        let held = Arc::new(Ledger::default());
        let deletions = {
            let (client, queue) = (client.clone(), queue.clone());
            Batcher::start(BATCH, String::clone, move |receipts: Vec<String>| {
                let (client, queue) = (client.clone(), queue.clone());
                async move {
                    let batched = delete_batch(&client, &queue, &receipts).await;
                    per_item_outcomes(batched, &receipts, |receipt| delete_one(&client, &queue, receipt))
                        .await
                }
            })
        };
        let heartbeat = CancellationToken::new();
        tokio::spawn(extend_visibility(
            client.clone(),
            queue.clone(),
            held.clone(),
            visibility,
            heartbeat.clone(),
        ));
        Ok(SqsSource {
            client,
            queue,
            dead_letters,
            wait: options.receiving.wait,
            brief_while_holding: options.receiving.until_empty,
            visibility,
            stop_grace: options.stop_grace,
            held,
            done: Mutex::default(),
            receives: AtomicUsize::new(1),
            deletions,
            stop,
            _heartbeat: heartbeat.drop_guard(),
        })
    }

    /// The receipt handle to use for `key`: that of its latest receive.
    fn receipt(&self, key: &str, version: &Version) -> Option<String> {
        let held = self.held.lock();
        held.get(key)
            .map(|held| held.receipt.clone())
            .or_else(|| version.0.clone())
    }

    /// Deletes the message `key` with `receipt`; once deleted, or refused
    /// for good, it is no longer this host's to extend.
    async fn delete(&self, key: &str, receipt: String) -> Result<(), StorageError> {
        let deleted = self
            .deletions
            .call(receipt, || format!("delete message {key}"))
            .await;
        if deleted.as_ref().is_ok() || deleted.as_ref().is_err_and(|e| e.class == Class::Request) {
            self.held.lock().remove(key);
        }
        deleted
    }

    /// Notes that the request `key` is done though its message is not
    /// deleted. The note is bounded: at [`MAX_DONE`] it is emptied (a
    /// message forgotten so is processed again when it comes back, which
    /// its plan's idempotence allows).
    fn remember_done(&self, key: &str) {
        let mut done = self.done.lock().unwrap();
        if done.len() >= MAX_DONE {
            done.clear();
        }
        done.insert(key.to_owned());
    }

    /// Deletes, with their new receipts, messages received again whose
    /// requests are done; the rest are for the pipeline.
    async fn delete_done(&self, received: Vec<Listed>) -> Vec<Listed> {
        let mut fresh = Vec::with_capacity(received.len());
        for listed in received {
            if !self.done.lock().unwrap().contains(&listed.key) {
                fresh.push(listed);
                continue;
            }
            let receipt = listed.version.0.clone().unwrap_or_default();
            match self.delete(&listed.key, receipt).await {
                Ok(()) => {
                    self.done.lock().unwrap().remove(&listed.key);
                    info!(request_key = %listed.key, "Deleted a message received again whose request was already done.");
                }
                Err(e) => {
                    warn!(request_key = %listed.key, error = %e, "Could not delete a message whose request is done; trying again when it comes back.");
                    self.held.lock().remove(&listed.key);
                }
            }
        }
        fresh
    }

    /// One receive: up to ten messages, held from now on. A stop lets the
    /// receive under way end rather than drop it: SQS may already have
    /// handed it messages, which would stay invisible for the visibility
    /// timeout; received, they are held, and made visible again when the
    /// run ends. But only for the stop's grace (the shutdown timeout): an
    /// idle queue's long poll can last 20 s, and a routine stop must not
    /// fail for it. A receive dropped then loses nothing: what SQS may have
    /// handed it returns after the visibility timeout.
    async fn receive(&self, wait: Duration) -> Result<Vec<Listed>, StorageError> {
        let receive = self
            .client
            .receive_message()
            .queue_url(&self.queue.url)
            .max_number_of_messages(BATCH as i32)
            .wait_time_seconds(wait.as_secs() as i32)
            .visibility_timeout(self.visibility.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .message_system_attribute_names(MessageSystemAttributeName::AwsTraceHeader)
            .message_attribute_names(TRACEPARENT)
            .message_attribute_names(held::TRACESTATE)
            .send();
        let mut receive = std::pin::pin!(receive);
        let received = tokio::select! {
            received = &mut receive => received,
            _ = self.stop.cancelled() => {
                info!(?wait, grace = ?self.stop_grace, "Stopping: letting the receive under way end, to hand back what it gets.");
                match tokio::time::timeout(self.stop_grace, receive).await {
                    Ok(received) => received,
                    Err(_) => {
                        info!(visibility = ?self.visibility, "The receive under way did not end within the grace; any message it got returns after the visibility timeout.");
                        return Ok(Vec::new());
                    }
                }
            }
        };
        let received =
            received.map_err(|e| storage_error(format!("receive from queue {}", self.queue.name), e))?;
        let mut requests = Vec::new();
        let mut held = self.held.lock();
        for message in received.messages() {
            let Some((id, message_held)) = Held::received(message, self.visibility) else {
                continue;
            };
            requests.push(Listed {
                key: id.clone(),
                size: message_held.body.len() as u64,
                version: message_held.version(),
                modified: message
                    .attributes()
                    .and_then(|all| all.get(&MessageSystemAttributeName::SentTimestamp))
                    .and_then(|ms| ms.parse().ok())
                    .map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
                trace: held::trace_context(message),
            });
            // A message received again (its visibility ran out) keeps its
            // place; only the latest receipt handle can delete it.
            held.insert(id, message_held);
        }
        Ok(requests)
    }

    /// Sends the request `key` to the dead-letter queue with `reason`, cut
    /// to what the queue's size limit leaves beside the body; `false` if
    /// even the body and the source attribute do not fit (then nothing is
    /// sent).
    async fn send_to_dead_letters(
        &self,
        queue: &Queue,
        key: &str,
        reason: &str,
        traceparent: Option<&str>,
    ) -> Result<bool, StorageError> {
        let (body, group) = {
            let held = self.held.lock();
            let held = held.get(key).ok_or_else(|| {
                StorageError::request(
                    format!("dead-letter message {key}"),
                    "the message is no longer held",
                )
            })?;
            (held.body.clone(), held.group.clone())
        };
        // The trace's attribute counts as the body does: it is kept whole.
        let trace_bytes = traceparent.map_or(0, |value| TRACEPARENT.len() + "String".len() + value.len());
        let Some(reason) = fit_reason(
            reason,
            body.len() + trace_bytes,
            &self.queue.name,
            queue.max_message_bytes,
        ) else {
            return Ok(false);
        };
        let attribute = |value: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .expect("data type is set")
        };
        let mut send = self
            .client
            .send_message()
            .queue_url(&queue.url)
            .message_body(body)
            .message_attributes(REASON_ATTRIBUTE, attribute(&reason))
            .message_attributes(SOURCE_ATTRIBUTE, attribute(&self.queue.name));
        if let Some(traceparent) = traceparent {
            send = send.message_attributes(TRACEPARENT, attribute(traceparent));
        }
        send
            // A FIFO dead-letter queue keeps the group, and the message id
            // makes a retried send a duplicate SQS drops.
            .set_message_group_id(queue.fifo.then(|| group.unwrap_or_else(|| "dead-letters".into())))
            .set_message_deduplication_id(queue.fifo.then(|| key.to_owned()))
            .send()
            .await
            .map_err(|e| storage_error(format!("send message {key} to queue {}", queue.name), e))?;
        Ok(true)
    }
}

#[async_trait::async_trait]
impl Source for SqsSource {
    fn describe(&self) -> String {
        format!("sqs:{}", self.queue.name)
    }

    fn dead_letter_place(&self) -> String {
        match (&self.dead_letters, self.queue.redrive) {
            (Some(queue), _) => format!("queue {}", queue.name),
            (None, true) => format!("queue {}'s redrive policy", self.queue.name),
            (None, false) => format!("nowhere: they return to queue {}", self.queue.name),
        }
    }

    fn relists(&self) -> bool {
        false
    }

    async fn list(&self) -> Result<Page, StorageError> {
        // Receives run side by side: one returns at most ten messages, and
        // a host taking more than ten per round trip would wait on it.
        let receives = self.receives.load(Ordering::Relaxed);
        let wait = match self.brief_while_holding && !self.held.lock().is_empty() {
            true => self.wait.min(BRIEF_WAIT),
            false => self.wait,
        };
        let started = Instant::now();
        let answers = futures::future::join_all((0..receives).map(|_| self.receive(wait))).await;
        let (mut requests, mut full, mut failure) = (Vec::new(), 0, None);
        for answer in answers {
            match answer {
                Ok(received) => {
                    full += usize::from(received.len() == BATCH);
                    requests.extend(received);
                }
                Err(e) => failure = Some(e),
            }
        }
        self.receives
            .store(next_receives(receives, full), Ordering::Relaxed);
        if let Some(e) = failure {
            // What the other receives got is held: it is handed on, or it
            // would stay invisible, extended, until the run ends.
            if requests.is_empty() {
                return Err(e);
            }
            warn!(error = %e, "A receive failed; going on with what the others received.");
        }
        // An empty answer before the wait time is up proves nothing (a
        // server may wake a poll for a message another consumer then
        // takes): only one that waited its time counts as the queue found
        // empty.
        // A brief receive (made while messages were held) proves nothing
        // either: only one that waited the whole wait time.
        let waited = wait == self.wait && started.elapsed() + Duration::from_millis(100) >= wait;
        let requests = self.delete_done(requests).await;
        Ok(Page {
            reached_end: !requests.is_empty() || waited || self.stop.is_cancelled(),
            requests,
            from_start: true,
            set_aside: Vec::new(),
            full: full == receives,
        })
    }

    async fn read(&self, key: &str, max_bytes: u64) -> Result<Fetched, StorageError> {
        Ok(self.held.fetch(key, max_bytes))
    }

    async fn ack(&self, key: &str, version: &Version) -> Result<(), StorageError> {
        let Some(receipt) = self.receipt(key, version) else {
            return Ok(());
        };
        match self.delete(key, receipt).await {
            // Refused for good (a receipt handle outdated by another
            // receive): the request is done all the same, and the message
            // is deleted when it comes back.
            Err(e) if e.class == Class::Request => {
                warn!(request_key = %key, error = %e, "The request is done but SQS refused to delete its message; it is deleted, not processed again, when it comes back.");
                self.remember_done(key);
                Ok(())
            }
            deleted => deleted,
        }
    }

    async fn dead_letter(
        &self,
        key: &str,
        version: &Version,
        reason: &str,
        traceparent: Option<&str>,
    ) -> Result<DeadLettering, StorageError> {
        match &self.dead_letters {
            Some(queue) => {
                if self.send_to_dead_letters(queue, key, reason, traceparent).await? {
                    // Each a message of its own: SQS never replaces one. The
                    // deduplication id (a FIFO queue's) is the source
                    // message's id, so only a retried send of the same
                    // message is dropped as a duplicate.
                    self.ack(key, version).await?;
                    return Ok(DeadLettering::Kept);
                }
                // Too large for the dead-letter queue with any reason:
                // left for the queue's redrive policy, as with none.
                warn!(request_key = %key, queue = %queue.name, reason = %reason, "The message is too large to send to the dead-letter queue with its reason; left in the queue for its redrive policy.");
                self.held.lock().remove(key);
                Ok(DeadLettering::Kept)
            }
            None => {
                // Left invisible until its timeout runs out: it comes back
                // no sooner, and the queue's redrive policy counts it.
                self.held.lock().remove(key);
                info!(request_key = %key, queue = %self.queue.name, "Left in the queue for its redrive policy.");
                Ok(DeadLettering::Kept)
            }
        }
    }

    async fn hand_back(&self, key: &str, version: &Version) {
        // A FIFO queue delivers none of the group while its earlier
        // messages are held: visible at once, it comes when its turn does.
        let delay = if self.queue.fifo {
            Duration::ZERO
        } else {
            STANDARD_HAND_BACK_DELAY
        };
        // No longer extended by the heartbeat, whatever the call does.
        let Some(receipt) = self
            .held
            .lock()
            .remove(key)
            .map(|held| held.receipt)
            .or_else(|| version.0.clone())
        else {
            return;
        };
        match change_visibility_batch(&self.client, &self.queue, &[receipt], delay).await {
            Ok(outcomes) => {
                if let Some(Err(e)) = outcomes.into_iter().next() {
                    warn!(request_key = %key, error = %e, "Could not hand a message back; it returns after its visibility timeout.");
                }
            }
            Err(e) => {
                warn!(request_key = %key, error = %e, "Could not hand a message back; it returns after its visibility timeout.")
            }
        }
    }

    fn pass_over(&self, key: &str) {
        self.held.lock().remove(key);
    }

    async fn known_empty(&self) -> bool {
        // A message this host holds is one SQS counts in flight anyway;
        // asking would only cost a call.
        if !self.held.lock().is_empty() {
            return false;
        }
        match counts_none(&self.client, &self.queue).await {
            Ok(none) => none,
            Err(e) => {
                // Not knowing is no harm: the receive finds out by waiting.
                warn!(error = %e, "Could not count the queue's messages; a receive waits to find it empty.");
                false
            }
        }
    }

    async fn finish(&self) {
        let receipts = self.held.release_all();
        if receipts.is_empty() {
            return;
        }
        let released = make_visible(&self.client, &self.queue, &receipts).await;
        info!(messages = released, queue = %self.queue.name, "Messages received and not done are visible again.");
    }
}

/// Keeps the messages the host holds invisible to other consumers: each
/// quarter of the visibility timeout, the timeout of every message with
/// less than half of it left is set to the whole again.
async fn extend_visibility(
    client: Client,
    queue: Arc<Queue>,
    held: Arc<Ledger>,
    visibility: Duration,
    stop: CancellationToken,
) {
    let beat = visibility / 4;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(beat) => {}
            _ = stop.cancelled() => return,
        }
        let now = Instant::now();
        let due: Vec<(String, String)> = held
            .lock()
            .iter()
            .filter(|(_, message)| message.visible_at < now + visibility / 2)
            .map(|(id, message)| (id.clone(), message.receipt.clone()))
            .collect();
        for chunk in due.chunks(BATCH) {
            let receipts: Vec<String> = chunk.iter().map(|(_, receipt)| receipt.clone()).collect();
            // A call that hangs is given up at half a beat, so that the next
            // beat comes while there is still time left to extend.
            let extended = tokio::time::timeout(
                beat / 2,
                change_visibility_batch(&client, &queue, &receipts, visibility),
            )
            .await
            .unwrap_or_else(|_| {
                Err(StorageError::new(
                    format!("change the visibility of messages in queue {}", queue.name),
                    Class::Transient,
                    "no answer within half a heartbeat",
                ))
            });
            match extended {
                Ok(outcomes) => {
                    let mut held = held.lock();
                    for ((id, receipt), outcome) in chunk.iter().zip(outcomes) {
                        match outcome {
                            Ok(()) => {
                                if let Some(message) = held.get_mut(id).filter(|m| &m.receipt == receipt) {
                                    message.visible_at = now + visibility;
                                }
                            }
                            Err(e) => {
                                warn!(request_key = %id, error = %e, "Could not extend a message's visibility: another consumer may receive it.");
                            }
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, "Could not extend the visibility of messages in flight; trying again at the next beat.");
                }
            }
        }
    }
}

/// The reason attribute for a dead letter of `body_bytes` from the queue
/// named `source`, cut so that body and attributes (names, data types and
/// values, as SQS counts them) stay within `max_bytes`; `None` when not
/// even the body, the source and a marker fit.
fn fit_reason(reason: &str, body_bytes: usize, source: &str, max_bytes: usize) -> Option<String> {
    const DATA_TYPE: &str = "String";
    let fixed = body_bytes
        + REASON_ATTRIBUTE.len()
        + DATA_TYPE.len()
        + SOURCE_ATTRIBUTE.len()
        + DATA_TYPE.len()
        + source.len();
    let room = max_bytes.checked_sub(fixed)?.min(MAX_REASON_BYTES);
    let reason = attribute_safe(reason, room);
    (reason.len() <= room).then_some(reason)
}

/// SQS message attributes are XML text: control characters other than
/// tab and newlines are escaped, and the reason is cut to a few KiB.
fn attribute_safe(reason: &str, max_bytes: usize) -> String {
    let mut safe = String::new();
    for c in reason.chars() {
        let piece = match c {
            '\t' | '\n' | '\r' => c.to_string(),
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        };
        if safe.len() + piece.len() + 3 > max_bytes {
            safe.push_str("...");
            break;
        }
        safe.push_str(&piece);
    }
    if safe.is_empty() {
        safe.push_str("(no reason given)");
    }
    safe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_made_attribute_safe_and_short() {
        assert_eq!(
            attribute_safe("bad\u{1b}[31m type\n", MAX_REASON_BYTES),
            "bad\\u{1b}[31m type\n"
        );
        assert_eq!(attribute_safe("", MAX_REASON_BYTES), "(no reason given)");
        let long = attribute_safe(&"é".repeat(5000), MAX_REASON_BYTES);
        assert!(long.len() <= MAX_REASON_BYTES && long.ends_with("..."));
    }

    #[test]
    fn a_dead_letters_reason_is_cut_to_fit_the_queues_size_limit() {
        let limit = crate::aws::sqs::MAX_MESSAGE_BYTES;
        let reason = "rejected: ".repeat(100);
        // A small body: the reason as it is (within its own cap).
        assert_eq!(fit_reason(&reason, 100, "requests", limit).unwrap(), reason);
        // A body near the limit: what is left, and not a byte more.
        for body in [limit - 300, limit - 60, limit - 40] {
            if let Some(cut) = fit_reason(&reason, body, "requests", limit) {
                let total = body
                    + cut.len()
                    + "reason".len()
                    + "source-queue".len()
                    + "requests".len()
                    + 2 * "String".len();
                assert!(total <= limit, "{total} for a body of {body}");
            }
        }
        assert!(
            fit_reason(&reason, limit - 300, "requests", limit)
                .unwrap()
                .ends_with("...")
        );
        // A body at the limit leaves no room for the attributes.
        assert_eq!(fit_reason(&reason, limit, "requests", limit), None);
    }

    #[test]
    fn receives_double_while_all_come_back_full_and_halve_when_none_does() {
        assert_eq!(next_receives(1, 1), 2);
        assert_eq!(next_receives(4, 4), 8);
        assert_eq!(next_receives(8, 8), MAX_RECEIVES, "at most eight");
        assert_eq!(next_receives(8, 3), 8, "some full: as many again");
        assert_eq!(next_receives(8, 0), 4);
        assert_eq!(next_receives(1, 0), 1, "at least one");
    }
}
