//! A bucket's dead letters: `dead-letter/KEY` (then `KEY~dl2` and on),
//! copied on the server with the reason in the object's metadata, never
//! replacing another; moved back under their keys by `redrive`.

use super::{DEAD_LETTER_PREFIX, S3Source};
use crate::aws::errors::storage_error;
use crate::aws::s3::{
    Copied, Got, OLD_PROBE_PREFIX, ObjectMeta, copy_object_if, delete_object_if, get_object,
};
use crate::error::StorageError;
use crate::source::{DeadLetter, DeadLetters, Fetched, Redriven, Version};

/// A start-after value past every key under the dead-letter prefix
/// (`0` follows `/`), so that a pass skips them in one step.
pub(super) const PAST_DEAD_LETTERS: &str = "dead-letter0";

/// The metadata key (`x-amz-meta-reason`) holding a dead letter's reason.
pub(super) const REASON_METADATA: &str = "reason";

/// S3 allows 2 KB of user metadata; the reason (and the request key, when
/// kept) are cut to fit.
pub(super) const MAX_REASON_BYTES: usize = 1800;

/// The metadata key (`x-amz-meta-request-key`, percent-encoded) naming the
/// request a dead letter stands for where its name does not: a second dead
/// letter of one key, or a key cut short.
pub(super) const KEY_METADATA: &str = "request-key";

/// The longest request key kept in metadata, percent-encoded. A dead
/// letter of a longer one that its name cannot stand for goes back under
/// its name.
pub(super) const MAX_KEY_METADATA: usize = 600;

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
pub(super) fn dead_letter_key(key: &str, n: u32) -> String {
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

/// S3 metadata travels in HTTP headers: printable ASCII only, and short
/// (at most `max_bytes` and an ellipsis). Other characters are escaped as
/// `\u{..}`.
pub(super) fn metadata_safe(reason: &str, max_bytes: usize) -> String {
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
