//! Writes new requests into an SQS queue (`produce -rq`): ten messages per
//! SendMessageBatch unless paced; to a FIFO queue with the request's
//! ordering key (the widget id) as the message group and its id as the
//! deduplication id, so that a batch sent twice is delivered once.

use crate::aws::sqs::{BATCH, Outgoing, Queue, send_batch};
use crate::error::StorageError;
use crate::retry::Retry;
use crate::source::{NewRequest, Writer, write_retried};
use aws_sdk_sqs::Client;
use std::sync::Mutex;

/// Sends requests to a queue, [`BATCH`] at a time.
pub(crate) struct QueueWriter {
    client: Client,
    queue: Queue,
    pending: Vec<Outgoing>,
    retry: Retry,
}

impl QueueWriter {
    /// A writer into the queue `name_or_url`, which must exist.
    pub(crate) async fn open(
        client: Client,
        name_or_url: &str,
        retry: Retry,
    ) -> Result<QueueWriter, StorageError> {
        let queue = Queue::open(&client, name_or_url).await?;
        Ok(QueueWriter {
            client,
            queue,
            pending: Vec::new(),
            retry,
        })
    }
}

#[async_trait::async_trait]
impl Writer for QueueWriter {
    fn describe(&self) -> String {
        format!("sqs:{}", self.queue.name)
    }

    async fn write(&mut self, request: NewRequest, now: bool) -> Result<(), StorageError> {
        let fifo = self.queue.fifo;
        let message = Outgoing {
            body: request.body,
            group: fifo.then_some(request.ordering_key),
            deduplication: fifo.then_some(request.id),
        };
        // One message per FIFO group in a batch: a batch's failed entries
        // are sent again after the others have landed, and a later message
        // of the same group must not land first.
        if message.group.is_some() && self.pending.iter().any(|m| m.group == message.group) {
            self.flush().await?;
        }
        self.pending.push(message);
        if now || self.pending.len() == BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends the pending messages; the entries that fail transiently are
    /// sent again through the retry loop. What could not be sent stays
    /// pending, and the error says why.
    async fn flush(&mut self) -> Result<(), StorageError> {
        let pending = Mutex::new(std::mem::take(&mut self.pending));
        let (client, queue) = (&self.client, &self.queue);
        let action = || {
            format!(
                "send {} messages to queue {}",
                pending.lock().unwrap().len(),
                queue.name
            )
        };
        let sent = write_retried(&self.retry, action, || async {
            let batch = std::mem::take(&mut *pending.lock().unwrap());
            if batch.is_empty() {
                return Ok(());
            }
            let (left, error) = send_once(client, queue, batch).await;
            *pending.lock().unwrap() = left;
            error.map_or(Ok(()), Err)
        })
        .await;
        self.pending = pending.into_inner().unwrap();
        sent
    }
}

/// Sends `batch` once: the messages not sent, and the error to answer with
/// (a permanent one over a transient one, which the retry loop would
/// otherwise try again).
async fn send_once(
    client: &Client,
    queue: &Queue,
    batch: Vec<Outgoing>,
) -> (Vec<Outgoing>, Option<StorageError>) {
    let outcomes = match send_batch(client, queue, &batch).await {
        Ok(outcomes) => outcomes,
        Err(e) => return (batch, Some(e)),
    };
    let mut left = Vec::new();
    let mut worst: Option<StorageError> = None;
    for (message, outcome) in batch.into_iter().zip(outcomes) {
        if let Err(e) = outcome {
            left.push(message);
            if worst
                .as_ref()
                .is_none_or(|w| w.is_transient() && !e.is_transient())
            {
                worst = Some(e);
            }
        }
    }
    (left, worst)
}
