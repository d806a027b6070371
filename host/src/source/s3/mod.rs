//! An S3 bucket as a request source: objects in ascending key order, listed
//! a page of 1,000 at a time from a start-after watermark. Objects under
//! `dead-letter/` are never requests: rejected requests are copied there on
//! the server (a request too large to read never passes through the host),
//! bytes unchanged, with the reason in the object's metadata.

mod dead_letters;
mod writer;

pub(crate) use writer::S3Writer;

use super::{DeadLettering, Fetched, Listed, Page, Source, Version};
use crate::aws::errors::storage_error;
use crate::aws::s3::{
    BucketRole, Copied, Got, ObjectMeta, Removal, batch_deletes_honour_etags, check_bucket, copy_object_if,
    delete_object_if, delete_objects_if, get_object,
};
use crate::batch::{Batcher, per_item_outcomes};
use crate::error::StorageError;
use aws_sdk_s3::Client;
use dead_letters::{
    KEY_METADATA, MAX_KEY_METADATA, MAX_REASON_BYTES, PAST_DEAD_LETTERS, REASON_METADATA, dead_letter_key,
    metadata_safe,
};
use std::sync::Mutex;

/// The prefix dead-lettered requests are copied under.
pub(crate) const DEAD_LETTER_PREFIX: &str = "dead-letter/";

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
                per_item_outcomes(batched, &objects, |(key, etag)| {
                    delete_object_if(&client, &bucket, key, etag.as_deref())
                })
                .await
            }
        },
    )
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
                    trace: None,
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
        traceparent: Option<&str>,
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
            if let Some(traceparent) = traceparent {
                metadata.push((crate::traces::TRACEPARENT, traceparent));
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
