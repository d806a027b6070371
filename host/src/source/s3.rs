//! An S3 bucket as a request source: objects in ascending key order, listed
//! a page of 1,000 at a time from a start-after watermark. Objects under
//! `dead-letter/` are never requests: rejected requests are copied there on
//! the server (a request too large to read never passes through the host),
//! bytes unchanged, with the reason in the object's metadata.

use super::{
    DeadLetters, Fetched, Listed, NewRequest, Page, Redriven, Source, Version, Writer, write_retried,
};
use crate::aws::errors::storage_error;
use crate::aws::s3::{
    BucketRole, Got, ObjectMeta, PROBE_PREFIX, Removal, batch_deletes_honour_etags, check_bucket,
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

/// S3 allows 2 KB of user metadata; the reason is cut to fit.
const MAX_REASON_BYTES: usize = 1800;

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
    /// The dead letters, in key order, by their request key (without the
    /// prefix) and ETag.
    async fn dead_letters(&self) -> Result<Vec<(String, Version)>, StorageError> {
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
                if !full.starts_with(PROBE_PREFIX) {
                    found.push((key.to_owned(), Version(object.e_tag.clone())));
                }
            }
        }
        Ok(found)
    }

    /// A dead letter's bytes, unless it is gone or larger than
    /// `max_bytes` (then it is not read).
    /// The reason in the dead letter's metadata.
    async fn reason(&self, key: &str) -> Result<Option<String>, StorageError> {
        let dead_letter = format!("{DEAD_LETTER_PREFIX}{key}");
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&dead_letter)
            .send()
            .await
        {
            Ok(object) => Ok(object.metadata().and_then(|m| m.get(REASON_METADATA)).cloned()),
            Err(e) if crate::aws::errors::status(&e) == Some(404) => Ok(None),
            Err(e) => Err(storage_error(
                format!("read s3://{}/{dead_letter}", self.bucket),
                e,
            )),
        }
    }

    async fn read_dead_letter(&self, key: &str, max_bytes: u64) -> Result<Fetched, StorageError> {
        let target = format!("{DEAD_LETTER_PREFIX}{key}");
        Ok(
            match get_object(&self.client, &self.bucket, &target, max_bytes).await? {
                Got::Object(body, etag) => Fetched::Request(body, Version(etag)),
                Got::Missing => Fetched::Gone,
                Got::TooLarge(size, etag) => Fetched::TooLarge(size, Version(etag)),
            },
        )
    }

    /// Moves the dead letter `key` (the version `version`) back under its
    /// key, without its reason: a server-side copy, then the conditional
    /// delete of the dead letter. S3 has no atomic move: if the run stops
    /// between the two, the request is in both places until the next
    /// redrive finds its copy in place (same ETag) and removes the dead
    /// letter ([`Redriven::Finished`]).
    async fn redrive(&self, key: &str, version: &Version) -> Result<Redriven, StorageError> {
        let dead_letter = format!("{DEAD_LETTER_PREFIX}{key}");
        let waiting = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        let outcome = match waiting {
            Ok(object) if object.e_tag.is_some() && object.e_tag == version.0 => Redriven::Finished,
            Ok(_) => return Ok(Redriven::Occupied),
            Err(e) if crate::aws::errors::status(&e) == Some(404) => {
                let copied = copy_object_if(
                    &self.client,
                    &self.bucket,
                    &dead_letter,
                    key,
                    version.0.as_deref(),
                    ObjectMeta::JSON,
                )
                .await?;
                if copied == Removal::Replaced {
                    // The dead letter changed since it was listed: leave it.
                    return Ok(Redriven::Occupied);
                }
                Redriven::Moved
            }
            Err(e) => return Err(storage_error(format!("look for s3://{}/{key}", self.bucket), e)),
        };
        delete_object_if(&self.client, &self.bucket, &dead_letter, version.0.as_deref()).await?;
        Ok(outcome)
    }
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

    async fn dead_letter(&self, key: &str, version: &Version, reason: &str) -> Result<(), StorageError> {
        let target = format!("{DEAD_LETTER_PREFIX}{key}");
        let reason = metadata_safe(reason);
        let meta = ObjectMeta {
            content_type: None,
            metadata: &[(REASON_METADATA, &reason)],
        };
        // Copied on the server, and only the version read: the dead letter
        // is exactly the request judged.
        let copied = copy_object_if(
            &self.client,
            &self.bucket,
            key,
            &target,
            version.0.as_deref(),
            meta,
        )
        .await?;
        if copied == Removal::Replaced {
            tracing::info!(request_key = %key, "The request was replaced while it was processed; the new one waits for its turn.");
            return Ok(());
        }
        self.ack(key, version).await
    }
}

/// S3 metadata travels in HTTP headers: printable ASCII only, and short.
/// Other characters are escaped as `\u{..}`.
fn metadata_safe(reason: &str) -> String {
    let mut safe = String::new();
    for c in reason.chars() {
        let piece = if c == ' ' || c.is_ascii_graphic() {
            c.to_string()
        } else {
            c.escape_unicode().to_string()
        };
        if safe.len() + piece.len() > MAX_REASON_BYTES {
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
        assert_eq!(metadata_safe("bad \"type\""), "bad \"type\"");
        assert_eq!(metadata_safe("a\nb é"), "a\\u{a}b \\u{e9}");
        let long = metadata_safe(&"x".repeat(5000));
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
