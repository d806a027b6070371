//! Where requests come from.
//!
//! A source lists request keys in order, a page at a time, from a watermark
//! it keeps itself; the pipeline reads each request, and tells the source
//! to remove it (`ack`) only once its effects are stored, or to move it to
//! the dead-letter place with a reason. Removing takes the [`Version`] that
//! was read: a request written under the same key meanwhile is a new
//! request, left for its own turn.
//!
//! A request larger than the run's limit is never read whole: the listing
//! says its size, and a read stops at the limit. It is dead-lettered as it
//! lies (a rename, a server-side copy).
//!
//! Everything a kind of place does lives in its own file: consuming it
//! ([`Source`]), moving its dead letters back ([`DeadLetters`]) and writing
//! new requests into it ([`Writer`]). [`Place`] is the one place that turns
//! the name a user gave into an opened one, so a new kind of place touches
//! this folder and the flag that names it, and no command.

pub(crate) mod dir;
mod place;
pub(crate) mod s3;
pub(crate) mod sqs;

pub(crate) use place::{Place, Use};

use crate::error::StorageError;
use crate::retry::{Attempt, Retry};

/// One page of a listing.
#[derive(Debug, Default)]
pub(crate) struct Page {
    /// Requests, in ascending key order. Keys already being processed may
    /// be among them: the pipeline skips those.
    pub(crate) requests: Vec<Listed>,
    /// This page is the first of a pass over the whole source.
    pub(crate) from_start: bool,
    /// This page is the last of the pass: the next one starts from the
    /// first key again, so requests that arrive with smaller keys are seen.
    pub(crate) reached_end: bool,
    /// What the listing dead-lettered on its way.
    pub(crate) set_aside: Vec<SetAside>,
    /// The listing came back as full as it could: more is likely waiting
    /// (a queue is received from ahead then, while this page is admitted).
    pub(crate) full: bool,
}

/// A request as the listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub(crate) key: String,
    /// Its size in bytes.
    pub(crate) size: u64,
    /// The version listed; a read may find a newer one.
    pub(crate) version: Version,
    /// When it was last written, if the source says.
    pub(crate) modified: Option<std::time::SystemTime>,
    /// The trace context it came with (an SQS message's), if any.
    pub(crate) trace: Option<crate::traces::Incoming>,
}

/// Something the listing met that can never be a request (a symbolic
/// link, a file name that is not text), moved to the dead-letter place as
/// it was met, unread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SetAside {
    /// Its name, escaped to text.
    pub(crate) name: String,
    pub(crate) reason: String,
}

/// Which version of a request was read, so that exactly that one is
/// removed: an S3 object's ETag, a file's identity. `None` where the
/// source cannot tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Version(pub(crate) Option<String>);

/// What reading a request found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fetched {
    /// The request's bytes, and which version they are.
    Request(Vec<u8>, Version),
    /// Nothing: it was processed and removed meanwhile.
    Gone,
    /// A request larger than the limit, of this size, left unread.
    TooLarge(u64, Version),
}

/// What moving a request to its dead-letter place came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeadLettering {
    /// It is kept there, with its reason, beside every earlier dead letter.
    Kept,
    /// It was no longer there to move: removed by another hand since it
    /// was read, or replaced by a newer request under its key (left for its
    /// own turn). Nothing was dead-lettered.
    Missed,
}

/// A dead letter, as its place lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadLetter {
    /// What names it in its place, unique there: its file name in a
    /// folder's `dead-letter/`, its object key below a bucket's
    /// `dead-letter/`, its message id in a dead-letter queue. A request
    /// dead-lettered twice under one key has two.
    pub(crate) id: String,
    /// The request key it goes back under.
    pub(crate) key: String,
    /// The version listed.
    pub(crate) version: Version,
}

/// What `redrive` did with one dead letter.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Redriven {
    /// Back in the source under its key.
    Moved,
    /// A request is waiting under the same key: the dead letter is left.
    Occupied,
    /// Already back in the source (a redrive stopped between moving it and
    /// removing the dead letter): the dead letter is removed.
    Finished,
}

#[async_trait::async_trait]
/// A place requests come from, in key order.
pub(crate) trait Source: Send + Sync {
    /// A short name for logs: `dir:./requests`, `s3://bucket`.
    fn describe(&self) -> String;

    /// Where dead-lettered requests end up, for the summary.
    fn dead_letter_place(&self) -> String;

    /// The next page of request keys after the watermark.
    async fn list(&self) -> Result<Page, StorageError>;

    /// A request's bytes and version, unless it is gone or larger than
    /// `max_bytes` (then it is not read).
    async fn read(&self, key: &str, max_bytes: u64) -> Result<Fetched, StorageError>;

    /// Removes the request read as `version`, whose effects are stored.
    async fn ack(&self, key: &str, version: &Version) -> Result<(), StorageError>;

    /// Moves the request read (or listed) as `version` to the dead-letter
    /// place, bytes unchanged, with the reason beside it, never over an
    /// earlier dead letter. A request written under the key meanwhile is
    /// left in place. `traceparent`, the trace the request was processed
    /// in, goes with it where its place has room: an S3 object's metadata,
    /// an SQS message's attributes (a folder's layout, SPEC.md's, has none:
    /// the log line says the trace id).
    async fn dead_letter(
        &self,
        key: &str,
        version: &Version,
        reason: &str,
        traceparent: Option<&str>,
    ) -> Result<DeadLettering, StorageError>;

    /// Whether a listed request the pipeline does not take now is listed
    /// again by a later pass, as a folder's or a bucket's is. A queue's
    /// message comes back only after its visibility timeout, maybe to
    /// another consumer: the pipeline holds everything such a source hands
    /// it.
    fn relists(&self) -> bool {
        true
    }

    /// The pipeline lets go of the request `key` it was handed (its
    /// ordering key is busy): a queue stops holding the message and makes
    /// it visible again, at once where the queue itself keeps it behind
    /// its group's messages in flight (FIFO), after a few seconds where
    /// nothing would keep the host from receiving it straight back. A
    /// source that lists again has nothing to do. Failures are logged, not
    /// returned: a message not handed back returns after its visibility
    /// timeout all the same.
    async fn hand_back(&self, _key: &str, _version: &Version) {}

    /// The pipeline leaves the listed request `key` alone this run (it
    /// could not be removed earlier): a queue stops holding it.
    fn pass_over(&self, _key: &str) {}

    /// Whether the source is known to hold no request now, without
    /// waiting: for `--until-empty`, once nothing is in flight. A queue's
    /// receive can only find it empty by waiting out its long poll; it
    /// asks SQS for its counts instead. A folder or a bucket says `false`:
    /// its listing tells at once.
    async fn known_empty(&self) -> bool {
        false
    }

    /// The run is over: whatever was listed and not done is handed back (a
    /// queue makes such messages visible again at once).
    async fn finish(&self) {}
}

/// The dead letters of a place, for `redrive`: listed, read, and moved back
/// under their keys without their reasons.
#[async_trait::async_trait]
pub(crate) trait DeadLetters: Send + Sync {
    /// The dead letters, in key order (then in the order they were made,
    /// where one key has several).
    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StorageError>;

    /// A dead letter's bytes, unless it is gone or larger than `max_bytes`
    /// (then it is not read).
    async fn read_dead_letter(&self, letter: &DeadLetter, max_bytes: u64) -> Result<Fetched, StorageError>;

    /// The reason kept with the dead letter, if it has one.
    async fn reason(&self, letter: &DeadLetter) -> Result<Option<String>, StorageError>;

    /// Moves the dead letter (as listed) back under its key, without its
    /// reason; never over a request waiting there.
    async fn redrive(&self, letter: &DeadLetter) -> Result<Redriven, StorageError>;

    /// The redrive is over: whatever listing held and did not move is let
    /// go (a queue makes its dead letters visible again).
    async fn finish(&self) {}
}

/// A request to write into a place (`produce`, `demo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewRequest {
    /// Its key: the file or object name (a queue names messages itself).
    pub(crate) key: String,
    /// Its JSON text.
    pub(crate) body: String,
    /// What orders it (the widget id): a FIFO queue's message group.
    pub(crate) ordering_key: String,
    /// Its own id (the request id): a FIFO queue's deduplication id.
    pub(crate) id: String,
}

/// Writes new requests into a place. Each write is retried through the
/// run's [`Retry`], so its retries are counted and a stop ends the waiting.
#[async_trait::async_trait]
pub(crate) trait Writer: Send {
    /// A short name for the report: `dir:./requests`, `sqs:requests.fifo`.
    fn describe(&self) -> String;

    /// Writes `request`, or holds it for a batch unless `now`.
    async fn write(&mut self, request: NewRequest, now: bool) -> Result<(), StorageError>;

    /// Writes whatever is held.
    async fn flush(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
}

/// A retried write's outcome: a stop while it waited to try again leaves
/// the request unwritten, which the caller must hear of.
pub(crate) async fn write_retried<F, Fut>(
    retry: &Retry,
    action: impl Fn() -> String,
    call: F,
) -> Result<(), StorageError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), StorageError>>,
{
    match retry.run(call).await {
        Attempt::Done(()) => Ok(()),
        Attempt::Failed(e) => Err(e),
        Attempt::Stopped => Err(StorageError::fatal(
            action(),
            "stopped while waiting to try again",
        )),
    }
}
