//! The SQS calls the queue source and `produce` share: a queue found by
//! name or URL, and the batch calls, which SQS answers entry by entry.

use super::errors::{batch_entry_error, storage_error};
use crate::error::StorageError;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    QueueAttributeName, SendMessageBatchRequestEntry,
};
use std::time::Duration;

/// Entries per batch call: SQS's maximum.
pub(crate) const BATCH: usize = 10;

/// A queue, as found at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Queue {
    pub(crate) url: String,
    /// Its name: the last part of the URL.
    pub(crate) name: String,
    /// A FIFO queue (`.fifo`): messages of one group are delivered in
    /// order, and never while another of the group is in flight.
    pub(crate) fifo: bool,
    /// It has a redrive policy: messages received too often go to the
    /// queue's own dead-letter queue.
    pub(crate) redrive: bool,
    /// The queue's default visibility timeout.
    pub(crate) visibility: Duration,
    /// The largest message it takes, body and attributes together
    /// (`MaximumMessageSize`; 256 KiB unless set lower).
    pub(crate) max_message_bytes: usize,
}

/// SQS's largest message unless a queue says less.
pub(crate) const MAX_MESSAGE_BYTES: usize = 256 * 1024;

impl Queue {
    /// Finds the queue `name_or_url` (a name is looked up with GetQueueUrl)
    /// and reads its attributes. A missing queue is a fatal error.
    pub(crate) async fn open(client: &Client, name_or_url: &str) -> Result<Queue, StorageError> {
        let url = if name_or_url.starts_with("http://") || name_or_url.starts_with("https://") {
            name_or_url.to_owned()
        } else {
            let found = client
                .get_queue_url()
                .queue_name(name_or_url)
                .send()
                .await
                .map_err(|e| storage_error(format!("find queue {name_or_url}"), e))?;
            found.queue_url.ok_or_else(|| {
                StorageError::fatal(format!("find queue {name_or_url}"), "no URL in the answer")
            })?
        };
        let attributes = client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .map_err(|e| storage_error(format!("read the attributes of queue {url}"), e))?;
        let attribute =
            |name: QueueAttributeName| attributes.attributes().and_then(|all| all.get(&name).cloned());
        let name = url.rsplit('/').next().unwrap_or(&url).to_owned();
        Ok(Queue {
            fifo: attribute(QueueAttributeName::FifoQueue).as_deref() == Some("true")
                || name.ends_with(".fifo"),
            redrive: attribute(QueueAttributeName::RedrivePolicy).is_some_and(|p| !p.is_empty()),
            visibility: Duration::from_secs(
                attribute(QueueAttributeName::VisibilityTimeout)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(30),
            ),
            max_message_bytes: attribute(QueueAttributeName::MaximumMessageSize)
                .and_then(|v| v.parse().ok())
                .unwrap_or(MAX_MESSAGE_BYTES),
            name,
            url,
        })
    }
}

/// Whether SQS counts no message in `queue`: none waiting, none in flight,
/// none delayed. Its counts are approximate: a message sent a moment ago
/// may not be counted yet.
pub(crate) async fn counts_none(client: &Client, queue: &Queue) -> Result<bool, StorageError> {
    let counts = [
        QueueAttributeName::ApproximateNumberOfMessages,
        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        QueueAttributeName::ApproximateNumberOfMessagesDelayed,
    ];
    let answer = client
        .get_queue_attributes()
        .queue_url(&queue.url)
        .set_attribute_names(Some(counts.to_vec()))
        .send()
        .await
        .map_err(|e| storage_error(format!("count the messages of queue {}", queue.name), e))?;
    let all = answer.attributes();
    // A count missing from the answer is not a zero.
    Ok(counts.iter().all(|name| {
        all.and_then(|all| all.get(name))
            .is_some_and(|count| count == "0")
    }))
}

/// What became of each entry of a batch call, in the order given.
pub(crate) type Outcomes = Vec<Result<(), StorageError>>;

/// Deletes the messages received with `receipts`.
pub(crate) async fn delete_batch(
    client: &Client,
    queue: &Queue,
    receipts: &[String],
) -> Result<Outcomes, StorageError> {
    let action = format!("delete messages from queue {}", queue.name);
    let entries = receipts.iter().enumerate().map(|(i, receipt)| {
        DeleteMessageBatchRequestEntry::builder()
            .id(i.to_string())
            .receipt_handle(receipt)
            .build()
            .expect("id and receipt handle are set")
    });
    let answer = client
        .delete_message_batch()
        .queue_url(&queue.url)
        .set_entries(Some(entries.collect()))
        .send()
        .await
        .map_err(|e| storage_error(&action, e))?;
    Ok(outcomes(receipts.len(), answer.failed(), &action))
}

/// Deletes the one message received with `receipt`: what a batch refused
/// as a whole falls back to, so that only a message at fault fails.
pub(crate) async fn delete_one(client: &Client, queue: &Queue, receipt: &str) -> Result<(), StorageError> {
    client
        .delete_message()
        .queue_url(&queue.url)
        .receipt_handle(receipt)
        .send()
        .await
        .map_err(|e| storage_error(format!("delete a message from queue {}", queue.name), e))?;
    Ok(())
}

/// Sets the visibility timeout of the messages received with `receipts`:
/// 0 makes them visible again at once.
pub(crate) async fn change_visibility_batch(
    client: &Client,
    queue: &Queue,
    receipts: &[String],
    visibility: Duration,
) -> Result<Outcomes, StorageError> {
    let action = format!("change the visibility of messages in queue {}", queue.name);
    let seconds = i32::try_from(visibility.as_secs()).unwrap_or(i32::MAX);
    let entries = receipts.iter().enumerate().map(|(i, receipt)| {
        ChangeMessageVisibilityBatchRequestEntry::builder()
            .id(i.to_string())
            .receipt_handle(receipt)
            .visibility_timeout(seconds)
            .build()
            .expect("id and receipt handle are set")
    });
    let answer = client
        .change_message_visibility_batch()
        .queue_url(&queue.url)
        .set_entries(Some(entries.collect()))
        .send()
        .await
        .map_err(|e| storage_error(&action, e))?;
    Ok(outcomes(receipts.len(), answer.failed(), &action))
}

/// Makes the messages received with `receipts` visible again at once,
/// [`BATCH`] per call; returns how many SQS let go of. A call that fails is
/// logged: its messages come back after their visibility timeout anyway.
pub(crate) async fn make_visible(client: &Client, queue: &Queue, receipts: &[String]) -> usize {
    let mut released = 0;
    for chunk in receipts.chunks(BATCH) {
        match change_visibility_batch(client, queue, chunk, Duration::ZERO).await {
            Ok(outcomes) => released += outcomes.iter().filter(|o| o.is_ok()).count(),
            Err(e) => {
                tracing::warn!(error = %e, queue = %queue.name, "Could not make messages visible again; they return after their visibility timeout.")
            }
        }
    }
    released
}

/// One message to send.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) body: String,
    /// FIFO queues only: the group it is delivered in order within.
    pub(crate) group: Option<String>,
    /// FIFO queues only: a second message with this id within five minutes
    /// is dropped by SQS.
    pub(crate) deduplication: Option<String>,
}

/// Sends up to [`BATCH`] messages.
pub(crate) async fn send_batch(
    client: &Client,
    queue: &Queue,
    messages: &[Outgoing],
) -> Result<Outcomes, StorageError> {
    let action = format!("send messages to queue {}", queue.name);
    let entries = messages.iter().enumerate().map(|(i, message)| {
        SendMessageBatchRequestEntry::builder()
            .id(i.to_string())
            .message_body(&message.body)
            .set_message_group_id(message.group.clone())
            .set_message_deduplication_id(message.deduplication.clone())
            .build()
            .expect("id and body are set")
    });
    let answer = client
        .send_message_batch()
        .queue_url(&queue.url)
        .set_entries(Some(entries.collect()))
        .send()
        .await
        .map_err(|e| storage_error(&action, e))?;
    Ok(outcomes(messages.len(), answer.failed(), &action))
}

/// Each of `count` entries' outcome, from the failures SQS reported (by
/// the entry ids the calls above give: their index).
fn outcomes(count: usize, failed: &[BatchResultErrorEntry], action: &str) -> Outcomes {
    let mut outcomes: Outcomes = (0..count).map(|_| Ok(())).collect();
    for failure in failed {
        if let Some(slot) = failure.id.parse::<usize>().ok().and_then(|i| outcomes.get_mut(i)) {
            *slot = Err(entry_error(failure, action));
        }
    }
    outcomes
}

/// A failed entry: SQS says whether the sender is at fault; if not, the
/// entry may succeed when sent again.
fn entry_error(failure: &BatchResultErrorEntry, action: &str) -> StorageError {
    batch_entry_error(
        action,
        &failure.code,
        failure.message.as_deref(),
        failure.sender_fault,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Class;

    fn failure(id: &str, code: &str, sender_fault: bool) -> BatchResultErrorEntry {
        BatchResultErrorEntry::builder()
            .id(id)
            .code(code)
            .sender_fault(sender_fault)
            .build()
            .unwrap()
    }

    #[test]
    fn each_entry_gets_its_own_outcome_and_class() {
        let got = outcomes(
            4,
            &[
                failure("1", "ReceiptHandleIsInvalid", true),
                failure("3", "InternalError", false),
                failure("9", "ignored: no such entry", true),
            ],
            "delete",
        );
        assert!(got[0].is_ok() && got[2].is_ok());
        assert_eq!(got[1].as_ref().unwrap_err().class, Class::Request);
        assert_eq!(got[3].as_ref().unwrap_err().class, Class::Transient);
        let throttled = entry_error(&failure("0", "RequestThrottled", true), "send");
        assert!(throttled.throttling && throttled.class == Class::Transient);
    }
}
