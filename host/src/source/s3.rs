//! An S3 bucket as a request source: objects in ascending key order, listed
//! a page of 1,000 at a time from a start-after watermark. Objects under
//! `dead-letter/` are never requests: rejected requests are copied there on
//! the server (a request too large to read never passes through the host),
//! bytes unchanged, with the reason in the object's metadata.

use super::{
    DeadLetter, DeadLettering, DeadLetters, Fetched, Listed, NewRequest, Page, Redriven, Source, Version,
    Writer, write_retried,
};
use crate::aws::errors::storage_error;
use crate::aws::s3::{
    BucketRole, Copied, Got, OLD_PROBE_PREFIX, ObjectMeta, Removal, batch_deletes_honour_etags, check_bucket,
    copy_object_if, delete_object_if, delete_objects_if, get_object, put_object,
};
use crate::batch::{Batcher, settle};
use crate::error::StorageError;
use crate::retry::Retry;
use aws_sdk_s3::Client;
use std::sync::Mutex;

/// The prefix dead-lettered requests are copied under.
pub(crate) const DEAD_LETTER_PREFIX: &str = "dead-letter/";

/// A start-after value past every key under the dead-letter prefix
/// (`0` follows `/`), so that a pass skips them in one step.
const PAST_DEAD_LETTERS: &str = "dead-letter0";

/// The metadata key (`x-amz-meta-reason`) holding a dead letter's reason.
const REASON_METADATA: &str = "reason";

/// S3 allows 2 KB of user metadata; the reason (and the request key, when
/// kept) are cut to fit.
const MAX_REASON_BYTES: usize = 1800;

/// The metadata key (`x-amz-meta-request-key`, percent-encoded) naming the
/// request a dead letter stands for where its name does not: a second dead
/// letter of one key, or a key cut short.
const KEY_METADATA: &str = "request-key";

/// The longest request key kept in metadata, percent-encoded. A dead
/// letter of a longer one that its name cannot stand for goes back under
/// its name.
const MAX_KEY_METADATA: usize = 600;

/// What numbers the second and later dead letters of one request key:
/// `dead-letter/KEY~dl2`.
const NUMBER: &str = "~dl";

/// S3's longest key, and the room kept in a dead letter's for its number.
const MAX_KEY_BYTES: usize = 1024;
const NUMBER_ROOM: usize = 16;

/// The longest part of a request key a dead letter's name holds.
const NAME_ROOM: usize = MAX_KEY_BYTES - DEAD_LETTER_PREFIX.len() - NUMBER_ROOM;

/// The object key of the `n`th dead letter of request `key` (from 1):
/// `dead-letter/KEY`, then `dead-letter/KEY~dl2` and on, so that a request
/// dead-lettered again under the same key never replaces the first; the
/// key cut to what S3 allows.
fn dead_letter_key(key: &str, n: u32) -> String {
    let kept = &key[..key.floor_char_boundary(NAME_ROOM)];
    match n {
        1 => format!("{DEAD_LETTER_PREFIX}{kept}"),
        _ => format!("{DEAD_LETTER_PREFIX}{kept}{NUMBER}{n}"),
    }
}

/// Whether a dead letter's name (below the prefix) may not be its request
/// key: numbered, or as long as a cut key. Its metadata says then.
fn may_not_be_its_key(name: &str) -> bool {
    let numbered = name
        .rsplit_once(NUMBER)
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    numbered || name.len() >= NAME_ROOM.saturating_sub(4)
}

/// Keys per ListObjectsV2 page (S3's maximum).
const PAGE_SIZE: i32 = 1000;

/// Keys per DeleteObjects call (S3's maximum).
const DELETE_BATCH: usize = 1000;

/// A request to remove, by key and the ETag read.
type Removing = (String, Option<String>);

/// Requests in an S3 bucket.
pub(crate) struct S3Source {
    client: Client,
    bucket: String,
    watermark: Mutex<Option<String>>,
    /// Removes requests many at a time, where the server honours each
    /// object's ETag in DeleteObjects; `None`: one DeleteObject each.
    deletions: Option<Batcher<Removing, Result<Removal, StorageError>>>,
}

impl S3Source {
    /// A source reading `bucket`, which must exist and be reachable.
    pub(crate) async fn open(client: Client, bucket: &str) -> Result<S3Source, StorageError> {
        check_bucket(&client, bucket, BucketRole::Request).await?;
        let deletions = batch_deletes_honour_etags(&client, bucket)
            .await
            .then(|| deleting_in_batches(client.clone(), bucket.to_owned()));
        tracing::info!(
            bucket,
            batched = deletions.is_some(),
            "Requests are removed with {}.",
            if deletions.is_some() {
                "DeleteObjects, many per call (the server honours each object's ETag)"
            } else {
                "one conditional DeleteObject each (the server ignores ETags in DeleteObjects)"
            }
        );
        Ok(S3Source {
            client,
            bucket: bucket.to_owned(),
            watermark: Mutex::new(None),
            deletions,
        })
    }

    /// A source reading `bucket`, which must exist and be reachable, that
    /// writes nothing there (for `diff` and `redrive`): no probe of how
    /// the server deletes, since it will not remove requests.
    pub(crate) async fn open_read_only(client: Client, bucket: &str) -> Result<S3Source, StorageError> {
        check_bucket(&client, bucket, BucketRole::Request).await?;
        Ok(S3Source {
            client,
            bucket: bucket.to_owned(),
            watermark: Mutex::new(None),
            deletions: None,
        })
    }
}

/// A batcher of conditional deletes. A call the server refuses as a whole
/// for a reason of its data is made again one object at a time, so that
/// only the object at fault fails.
fn deleting_in_batches(client: Client, bucket: String) -> Batcher<Removing, Result<Removal, StorageError>> {
    Batcher::start(
        DELETE_BATCH,
        |(key, _): &Removing| key.clone(),
        move |objects: Vec<Removing>| {
            let (client, bucket) = (client.clone(), bucket.clone());
            async move {
                let batched = delete_objects_if(&client, &bucket, &objects).await;
                settle(batched, &objects, |(key, etag)| {
                    delete_object_if(&client, &bucket, key, etag.as_deref())
                })
                .await
            }
        },
    )
}

#[async_trait::async_trait]
impl DeadLetters for S3Source {
    /// The dead letters, in key order: by name below the prefix, request
    /// key (the name, or its metadata where the name may not say) and ETag.
    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StorageError> {
        let mut found = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(DEAD_LETTER_PREFIX)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page
                .map_err(|e| storage_error(format!("list s3://{}/{DEAD_LETTER_PREFIX}", self.bucket), e))?;
            for object in page.contents() {
                let Some(full) = object.key() else { continue };
                let Some(key) = full.strip_prefix(DEAD_LETTER_PREFIX) else {
                    continue;
                };
                // The prefix itself is the probe's key (`aws::s3::PROBE_KEY`).
                if !key.is_empty() && !full.starts_with(OLD_PROBE_PREFIX) {
                    found.push(DeadLetter {
                        id: key.to_owned(),
                        key: key.to_owned(),
                        version: Version(object.e_tag.clone()),
                    });
                }
            }
        }
        for letter in &mut found {
            if may_not_be_its_key(&letter.id)
                && let Some(key) = self.metadata(&letter.id, KEY_METADATA).await?
                && let Ok(key) = percent_encoding::percent_decode_str(&key).decode_utf8()
            {
                letter.key = key.into_owned();
            }
        }
        found.sort_by(|a, b| (&a.key, numbered(&a.id)).cmp(&(&b.key, numbered(&b.id))));
        Ok(found)
    }

    /// The reason in the dead letter's metadata.
    async fn reason(&self, letter: &DeadLetter) -> Result<Option<String>, StorageError> {
        self.metadata(&letter.id, REASON_METADATA).await
    }

    /// A dead letter's bytes, unless it is gone or larger than
    /// `max_bytes` (then it is not read).
    async fn read_dead_letter(&self, letter: &DeadLetter, max_bytes: u64) -> Result<Fetched, StorageError> {
        let target = format!("{DEAD_LETTER_PREFIX}{}", letter.id);
        Ok(
            match get_object(&self.client, &self.bucket, &target, max_bytes).await? {
                Got::Object(body, etag) => Fetched::Request(body, Version(etag)),
                Got::Missing => Fetched::Gone,
                Got::TooLarge(size, etag) => Fetched::TooLarge(size, Version(etag)),
            },
        )
    }

    /// Moves the dead letter back under its request key, without its
    /// reason: a server-side copy (never over an object there), then the
    /// conditional delete of the dead letter. S3 has no atomic move: if the
    /// run stops between the two, the request is in both places until the
    /// next redrive finds its copy in place (same ETag) and removes the dead
    /// letter ([`Redriven::Finished`]).
    async fn redrive(&self, letter: &DeadLetter) -> Result<Redriven, StorageError> {
        let dead_letter = format!("{DEAD_LETTER_PREFIX}{}", letter.id);
        let etag = letter.version.0.as_deref();
        let copied = copy_object_if(
            &self.client,
            &self.bucket,
            &dead_letter,
            &letter.key,
            etag,
            ObjectMeta::JSON,
        )
        .await?;
        let outcome = match copied {
            Copied::Done => Redriven::Moved,
            Copied::TargetTaken(waiting) if waiting.is_some() && waiting.as_deref() == etag => {
                Redriven::Finished
            }
            // A request waits under the key, or the dead letter changed
            // since it was listed: it stays.
            Copied::TargetTaken(_) | Copied::SourceChanged => return Ok(Redriven::Occupied),
            Copied::SourceGone => return Ok(Redriven::Finished),
        };
        delete_object_if(&self.client, &self.bucket, &dead_letter, etag).await?;
        Ok(outcome)
    }
}

impl S3Source {
    /// One user metadata value of the dead letter named `name`.
    async fn metadata(&self, name: &str, field: &str) -> Result<Option<String>, StorageError> {
        let dead_letter = format!("{DEAD_LETTER_PREFIX}{name}");
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&dead_letter)
            .send()
            .await
        {
            Ok(object) => Ok(object.metadata().and_then(|m| m.get(field)).cloned()),
            Err(e) if crate::aws::errors::status(&e) == Some(404) => Ok(None),
            Err(e) => Err(storage_error(
                format!("read s3://{}/{dead_letter}", self.bucket),
                e,
            )),
        }
    }
}

/// A dead letter's number: 1 for the first of its key.
fn numbered(name: &str) -> u32 {
    name.rsplit_once(NUMBER)
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(1)
}

#[async_trait::async_trait]
impl Source for S3Source {
    fn describe(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    fn dead_letter_place(&self) -> String {
        format!("s3://{}/{DEAD_LETTER_PREFIX}", self.bucket)
    }

    async fn list(&self) -> Result<Page, StorageError> {
        let after = self.watermark.lock().unwrap().clone();
        let listed = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .max_keys(PAGE_SIZE)
            .set_start_after(after.clone())
            .send()
            .await
            .map_err(|e| storage_error(format!("list s3://{}", self.bucket), e))?;
        let reached_end = !listed.is_truncated.unwrap_or(false);
        let mut next = listed.contents().last().and_then(|o| o.key.clone());
        if next.as_deref().is_some_and(|k| k.starts_with(DEAD_LETTER_PREFIX)) {
            next = Some(PAST_DEAD_LETTERS.to_owned());
        }
        *self.watermark.lock().unwrap() = if reached_end { None } else { next };
        let requests = listed
            .contents()
            .iter()
            .filter_map(|object| {
                let key = object.key.clone()?;
                (!key.starts_with(DEAD_LETTER_PREFIX)).then(|| Listed {
                    key,
                    size: object.size.unwrap_or(0).max(0) as u64,
                    version: Version(object.e_tag.clone()),
                    modified: object
                        .last_modified
                        .and_then(|t| std::time::SystemTime::try_from(t).ok()),
                })
            })
            .collect();
        Ok(Page {
            requests,
            from_start: after.is_none(),
            reached_end,
            set_aside: Vec::new(),
            full: false,
        })
    }

    async fn read(&self, key: &str, max_bytes: u64) -> Result<Fetched, StorageError> {
        Ok(
            match get_object(&self.client, &self.bucket, key, max_bytes).await? {
                Got::Object(body, etag) => Fetched::Request(body, Version(etag)),
                Got::Missing => Fetched::Gone,
                Got::TooLarge(size, etag) => Fetched::TooLarge(size, Version(etag)),
            },
        )
    }

    async fn ack(&self, key: &str, version: &Version) -> Result<(), StorageError> {
        let removal = match &self.deletions {
            Some(batcher) => {
                batcher
                    .call((key.to_owned(), version.0.clone()), || {
                        format!("delete s3://{}/{key}", self.bucket)
                    })
                    .await?
            }
            None => delete_object_if(&self.client, &self.bucket, key, version.0.as_deref()).await?,
        };
        if removal == Removal::Replaced {
            tracing::info!(request_key = %key, "The request was replaced while it was processed; the new one waits for its turn.");
        }
        Ok(())
    }

    /// Copies the request, as read, to the first of its key's dead-letter
    /// names that no object holds (never over one: see `copy_object_if`),
    /// then removes it. A copy that succeeded before a failed removal is
    /// found again on the retry (the same ETag at a name of its key) and not
    /// made twice.
    async fn dead_letter(
        &self,
        key: &str,
        version: &Version,
        reason: &str,
    ) -> Result<DeadLettering, StorageError> {
        let encoded =
            percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC).to_string();
        let keep_key = encoded.len() <= MAX_KEY_METADATA;
        let reason = metadata_safe(
            reason,
            MAX_REASON_BYTES - if keep_key { encoded.len() } else { 0 },
        );
        for n in 1..=u32::MAX {
            let target = dead_letter_key(key, n);
            let mut metadata = vec![(REASON_METADATA, reason.as_str())];
            if keep_key && target[DEAD_LETTER_PREFIX.len()..] != *key {
                metadata.push((KEY_METADATA, encoded.as_str()));
            }
            let meta = ObjectMeta {
                content_type: None,
                metadata: &metadata,
            };
            // Copied on the server, and only the version read: the dead
            // letter is exactly the request judged.
            match copy_object_if(
                &self.client,
                &self.bucket,
                key,
                &target,
                version.0.as_deref(),
                meta,
            )
            .await?
            {
                Copied::Done => break,
                Copied::TargetTaken(etag) if etag.is_some() && etag == version.0 => break,
                Copied::TargetTaken(_) => continue,
                Copied::SourceChanged => {
                    tracing::info!(request_key = %key, "The request was replaced while it was processed; the new one waits for its turn.");
                    return Ok(DeadLettering::Missed);
                }
                Copied::SourceGone => return Ok(DeadLettering::Missed),
            }
        }
        self.ack(key, version).await?;
        Ok(DeadLettering::Kept)
    }
}

/// S3 metadata travels in HTTP headers: printable ASCII only, and short
/// (at most `max_bytes` and an ellipsis). Other characters are escaped as
/// `\u{..}`.
fn metadata_safe(reason: &str, max_bytes: usize) -> String {
    let mut safe = String::new();
    for c in reason.chars() {
        let piece = if c == ' ' || c.is_ascii_graphic() {
            c.to_string()
        } else {
            c.escape_unicode().to_string()
        };
        if safe.len() + piece.len() > max_bytes {
            safe.push_str("...");
            break;
        }
        safe.push_str(&piece);
    }
    safe
}

/// Writes new requests into a bucket, an object each, named by its key,
/// as JSON (`Content-Type: application/json`).
pub(crate) struct S3Writer {
    client: Client,
    bucket: String,
    retry: Retry,
}

impl S3Writer {
    /// A writer into `bucket`, which must exist and be reachable.
    pub(crate) async fn open(client: Client, bucket: &str, retry: Retry) -> Result<S3Writer, StorageError> {
        check_bucket(&client, bucket, BucketRole::Request).await?;
        Ok(S3Writer {
            client,
            bucket: bucket.to_owned(),
            retry,
        })
    }
}

#[async_trait::async_trait]
impl Writer for S3Writer {
    fn describe(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    async fn write(&mut self, request: NewRequest, _now: bool) -> Result<(), StorageError> {
        let action = || format!("write request s3://{}/{}", self.bucket, request.key);
        write_retried(&self.retry, action, || {
            put_object(
                &self.client,
                &self.bucket,
                &request.key,
                request.body.as_bytes(),
                ObjectMeta::JSON,
            )
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_made_header_safe_and_short() {
        assert_eq!(metadata_safe("bad \"type\"", MAX_REASON_BYTES), "bad \"type\"");
        assert_eq!(metadata_safe("a\nb é", MAX_REASON_BYTES), "a\\u{a}b \\u{e9}");
        let long = metadata_safe(&"x".repeat(5000), MAX_REASON_BYTES);
        assert!(long.len() <= MAX_REASON_BYTES + 3 && long.ends_with("..."));
    }

    #[test]
    fn the_skip_past_dead_letters_sorts_after_every_dead_letter_key() {
        for key in ["dead-letter/1", "dead-letter/\u{10FFFF}", "dead-letter/zzz/yyy"] {
            assert!(key < PAST_DEAD_LETTERS);
        }
        assert!("dead-letter" < PAST_DEAD_LETTERS);
    }
}
