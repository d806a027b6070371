//! The dead letters of a queue, for `redrive -rq QUEUE --dead-letter-queue
//! REJECTED`: the messages `run` sent to the dead-letter queue (body
//! unchanged, the reason in an attribute), sent back to the request queue
//! without their reasons.
//!
//! A queue cannot be listed without receiving: listing receives every
//! message of the dead-letter queue and holds it invisible while the
//! redrive lasts; a message is deleted from there only after it was sent
//! back, and every one not sent back is made visible again at the end. A
//! stop between the send and the delete leaves the request in both queues:
//! the next redrive sends it again with the same deduplication id (FIFO:
//! SQS drops it within five minutes), and `run` applies a request twice
//! with the same result.

use super::REASON_ATTRIBUTE;
use super::held::{Held, Ledger};
use crate::aws::errors::storage_error;
use crate::aws::sqs::{BATCH, Queue, make_visible};
use crate::error::StorageError;
use crate::source::{DeadLetter, DeadLetters, Fetched, Redriven};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use std::time::Duration;

/// How long a listed dead letter stays invisible to others: the redrive
/// must move it within this time (SQS's maximum is 12 hours).
const HOLD: Duration = Duration::from_secs(3600);

/// Dead letters one redrive takes at most: their bodies are held in memory,
/// and SQS lets only so many be in flight (20,000 in a FIFO queue). The
/// rest wait for the next redrive.
const MAX_LISTED: usize = 10_000;

/// The dead-letter queue of a request queue.
pub(crate) struct QueueDeadLetters {
    client: Client,
    requests: Queue,
    dead_letters: Queue,
    held: Ledger,
}

impl QueueDeadLetters {
    /// The dead letters `run` sent from `requests` to `dead_letters`; both
    /// queues must exist, and be FIFO or not alike.
    pub(crate) async fn open(
        client: Client,
        requests: &str,
        dead_letters: &str,
    ) -> Result<QueueDeadLetters, StorageError> {
        let requests = Queue::open(&client, requests).await?;
        let dead_letters = Queue::open(&client, dead_letters).await?;
        if requests.fifo != dead_letters.fifo {
            return Err(StorageError::fatal(
                format!("redrive {} into {}", dead_letters.name, requests.name),
                "one queue is FIFO and the other is not",
            ));
        }
        Ok(QueueDeadLetters {
            client,
            requests,
            dead_letters,
            held: Ledger::default(),
        })
    }
}

#[async_trait::async_trait]
impl DeadLetters for QueueDeadLetters {
    /// Receives the messages of the dead-letter queue (up to
    /// [`MAX_LISTED`]), in the order received, by message id; the version is
    /// the receipt handle.
    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StorageError> {
        let action = || format!("receive dead letters from queue {}", self.dead_letters.name);
        let mut listed = Vec::new();
        loop {
            let received = self
                .client
                .receive_message()
                .queue_url(&self.dead_letters.url)
                .max_number_of_messages(BATCH as i32)
                .visibility_timeout(HOLD.as_secs() as i32)
                // Long enough for SQS to look at all its servers.
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
                .message_attribute_names(REASON_ATTRIBUTE)
                .send()
                .await
                .map_err(|e| storage_error(action(), e))?;
            if received.messages().is_empty() {
                return Ok(listed);
            }
            if listed.len() >= MAX_LISTED {
                tracing::warn!(
                    queue = %self.dead_letters.name,
                    "Took the first {MAX_LISTED} dead letters; run redrive again for the rest."
                );
                let more: Vec<String> = received
                    .messages()
                    .iter()
                    .filter_map(|m| m.receipt_handle().map(str::to_owned))
                    .collect();
                // Not held: visible again at once.
                make_visible(&self.client, &self.dead_letters, &more).await;
                return Ok(listed);
            }
            let mut held = self.held.lock();
            for message in received.messages() {
                let Some((id, letter)) = Held::received(message, self.dead_letters.visibility) else {
                    continue;
                };
                listed.push(DeadLetter {
                    id: id.clone(),
                    key: id.clone(),
                    version: letter.version(),
                });
                held.insert(id, letter);
            }
        }
    }

    /// The reason attribute `run` sent the dead letter with.
    async fn reason(&self, letter: &DeadLetter) -> Result<Option<String>, StorageError> {
        Ok(self
            .held
            .lock()
            .get(&letter.id)
            .and_then(|letter| letter.reason.clone()))
    }

    async fn read_dead_letter(&self, letter: &DeadLetter, max_bytes: u64) -> Result<Fetched, StorageError> {
        Ok(self.held.fetch(&letter.id, max_bytes))
    }

    /// Sends the message back to the request queue without its reason (a
    /// FIFO queue: in its group, deduplicated by the dead letter's id),
    /// then deletes the dead letter.
    async fn redrive(&self, letter: &DeadLetter) -> Result<Redriven, StorageError> {
        let key = &letter.id;
        let Some((body, receipt, group)) = self
            .held
            .lock()
            .get(key)
            .map(|l| (l.body.clone(), l.receipt.clone(), l.group.clone()))
        else {
            return Err(StorageError::request(
                format!("redrive message {key}"),
                "it is not held",
            ));
        };
        let fifo = self.requests.fifo;
        self.client
            .send_message()
            .queue_url(&self.requests.url)
            .message_body(body)
            .set_message_group_id(fifo.then(|| group.unwrap_or_else(|| "redriven".into())))
            .set_message_deduplication_id(fifo.then(|| key.to_owned()))
            .send()
            .await
            .map_err(|e| {
                storage_error(
                    format!("send message {key} back to queue {}", self.requests.name),
                    e,
                )
            })?;
        self.client
            .delete_message()
            .queue_url(&self.dead_letters.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| {
                storage_error(
                    format!("delete message {key} from queue {}", self.dead_letters.name),
                    e,
                )
            })?;
        self.held.lock().remove(key);
        Ok(Redriven::Moved)
    }

    /// Makes every dead letter not sent back visible again at once.
    async fn finish(&self) {
        let receipts = self.held.release_all();
        make_visible(&self.client, &self.dead_letters, &receipts).await;
    }
}
