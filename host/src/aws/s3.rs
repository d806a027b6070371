//! The S3 calls that the S3 source and the S3 sink both make, each returning
//! a classified [`StorageError`] that names the object.

use super::errors::{status, storage_error};
use crate::error::{Class, StorageError};
use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};

/// What a bucket is used for, named in errors about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BucketRole {
    /// Requests are read from it (or written to it by `produce`).
    Request,
    /// Widgets are stored in it.
    Widget,
}

impl std::fmt::Display for BucketRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BucketRole::Request => "request",
            BucketRole::Widget => "widget",
        })
    }
}

/// Fails with an error naming the bucket when it is missing or denied.
pub(crate) async fn check_bucket(
    client: &Client,
    bucket: &str,
    role: BucketRole,
) -> Result<(), StorageError> {
    match client.head_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let why = match status(&e) {
                Some(404) => "it does not exist",
                Some(403) => "access is denied",
                _ => return Err(storage_error(format!("reach {role} bucket {bucket:?}"), e)),
            };
            Err(StorageError::fatal(format!("use {role} bucket {bucket:?}"), why))
        }
    }
}

/// What a GET found.
pub(crate) enum Got {
    /// The object's body, and the ETag of the version read.
    Object(Vec<u8>, Option<String>),
    /// No such key.
    Missing,
    /// An object of this size, over the limit, left unread (its ETag).
    TooLarge(u64, Option<String>),
}

/// Reads an object, unless it is larger than `max_bytes`: then its body is
/// not downloaded (the connection is dropped after the headers).
pub(crate) async fn get_object(
    client: &Client,
    bucket: &str,
    key: &str,
    max_bytes: u64,
) -> Result<Got, StorageError> {
    let action = || format!("get s3://{bucket}/{key}");
    let object = match client.get_object().bucket(bucket).key(key).send().await {
        Ok(object) => object,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(Got::Missing),
        Err(e) => return Err(storage_error(action(), e)),
    };
    let etag = object.e_tag.clone();
    let size = object.content_length.unwrap_or(0).max(0) as u64;
    if size > max_bytes {
        return Ok(Got::TooLarge(size, etag));
    }
    // A body cut off mid-way is a network failure: transient.
    let body = object
        .body
        .collect()
        .await
        .map_err(|e| StorageError::new(action(), Class::Transient, e))?;
    Ok(Got::Object(body.into_bytes().to_vec(), etag))
}

/// Characters a key keeps in `x-amz-copy-source`; the rest is
/// percent-encoded, as S3 requires.
const COPY_SOURCE_KEEPS: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// What a conditional copy came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Copied {
    /// The version asked for is at `to`.
    Done,
    /// Another object has been written at `from` since the version was
    /// read (S3 honours `x-amz-copy-source-if-match`; a server that ignores
    /// it copies whatever is there).
    SourceChanged,
    /// Nothing is at `from` any more.
    SourceGone,
    /// An object is at `to` (of this ETag), and was left there.
    TargetTaken(Option<String>),
}

/// Copies the object at `from` to `to` inside the bucket, on the server,
/// if it still is the version `etag` names, with `meta` replacing its
/// metadata, and never over an object at `to`: a look first, then
/// `If-None-Match: *` on the copy for a writer in between (where the
/// server honours it; the look is what protects on one that does not).
pub(crate) async fn copy_object_if(
    client: &Client,
    bucket: &str,
    from: &str,
    to: &str,
    etag: Option<&str>,
    meta: ObjectMeta<'_>,
) -> Result<Copied, StorageError> {
    if let Some(etag) = head_etag(client, bucket, to).await? {
        return Ok(Copied::TargetTaken(etag));
    }
    let source = format!(
        "{bucket}/{}",
        percent_encoding::utf8_percent_encode(from, COPY_SOURCE_KEEPS)
    );
    let mut copy = client
        .copy_object()
        .bucket(bucket)
        .key(to)
        .copy_source(source)
        .set_copy_source_if_match(etag.map(str::to_owned))
        .if_none_match("*")
        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
        .set_content_type(meta.content_type.map(str::to_owned));
    for (name, value) in meta.metadata {
        copy = copy.metadata(*name, *value);
    }
    match copy.send().await {
        Ok(_) => Ok(Copied::Done),
        // Either condition: the one that failed is told by a look at `to`.
        Err(e) if status(&e) == Some(412) => Ok(match head_etag(client, bucket, to).await? {
            Some(etag) => Copied::TargetTaken(etag),
            None => Copied::SourceChanged,
        }),
        Err(e) if e.code() == Some("NoSuchKey") => Ok(Copied::SourceGone),
        Err(e) => Err(storage_error(format!("copy s3://{bucket}/{from} to {to}"), e)),
    }
}

/// The ETag of the object at `key` (`Some(None)` where the server gives
/// none); `None` if there is no object.
pub(crate) async fn head_etag(
    client: &Client,
    bucket: &str,
    key: &str,
) -> Result<Option<Option<String>>, StorageError> {
    match client.head_object().bucket(bucket).key(key).send().await {
        Ok(object) => Ok(Some(object.e_tag)),
        Err(e) if status(&e) == Some(404) => Ok(None),
        Err(e) => Err(storage_error(format!("look for s3://{bucket}/{key}"), e)),
    }
}

/// What to write with an object besides its body.
#[derive(Debug, Default)]
pub(crate) struct ObjectMeta<'a> {
    /// The `Content-Type`; S3's default if `None`.
    pub(crate) content_type: Option<&'a str>,
    /// User metadata, sent as `x-amz-meta-*` headers.
    pub(crate) metadata: &'a [(&'a str, &'a str)],
}

impl ObjectMeta<'static> {
    /// A JSON document, with no user metadata.
    pub(crate) const JSON: ObjectMeta<'static> = ObjectMeta {
        content_type: Some("application/json"),
        metadata: &[],
    };
}

/// Writes an object, replacing what is at `key`.
pub(crate) async fn put_object(
    client: &Client,
    bucket: &str,
    key: &str,
    body: &[u8],
    meta: ObjectMeta<'_>,
) -> Result<(), StorageError> {
    let mut put = client
        .put_object()
        .bucket(bucket)
        .key(key)
        .set_content_type(meta.content_type.map(str::to_owned))
        .body(ByteStream::from(body.to_vec()));
    for (name, value) in meta.metadata {
        put = put.metadata(*name, *value);
    }
    put.send()
        .await
        .map_err(|e| storage_error(format!("put s3://{bucket}/{key}"), e))?;
    Ok(())
}

/// Deletes an object; a missing key is not an error (S3 says so too).
pub(crate) async fn delete_object(client: &Client, bucket: &str, key: &str) -> Result<(), StorageError> {
    delete_object_if(client, bucket, key, None).await.map(|_| ())
}

/// What a conditional delete (or copy) did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Removal {
    /// The object is gone (copied), or was never there.
    Removed,
    /// Another object was written under the key since `etag` was read; it
    /// is left in place.
    Replaced,
}

/// Deletes an object if it still is the version `etag` names (any version
/// when `None`). S3 general purpose buckets honour `If-Match` on
/// DeleteObject; a server that ignores the header deletes whatever is there.
pub(crate) async fn delete_object_if(
    client: &Client,
    bucket: &str,
    key: &str,
    etag: Option<&str>,
) -> Result<Removal, StorageError> {
    let deleted = client
        .delete_object()
        .bucket(bucket)
        .key(key)
        .set_if_match(etag.map(str::to_owned))
        .send()
        .await;
    match deleted {
        Ok(_) => Ok(Removal::Removed),
        Err(e) if status(&e) == Some(412) => Ok(Removal::Replaced),
        // With If-Match, a missing key is an error: it is gone, as wanted.
        Err(e) if status(&e) == Some(404) && e.code() == Some("NoSuchKey") => Ok(Removal::Removed),
        Err(e) => Err(storage_error(format!("delete s3://{bucket}/{key}"), e)),
    }
}

/// Deletes objects in one call (DeleteObjects, up to 1,000), each only if it
/// still is the version its ETag names: what [`delete_object_if`] does for
/// one, per object. Only for a server that honours the per-object ETag (see
/// [`batch_deletes_honour_etags`]).
pub(crate) async fn delete_objects_if(
    client: &Client,
    bucket: &str,
    objects: &[(String, Option<String>)],
) -> Result<Vec<Result<Removal, StorageError>>, StorageError> {
    let identifiers = objects
        .iter()
        .map(|(key, etag)| {
            ObjectIdentifier::builder()
                .key(key)
                .set_e_tag(etag.clone())
                .build()
                .expect("the key is set")
        })
        .collect();
    let delete = Delete::builder()
        .set_objects(Some(identifiers))
        .quiet(true)
        .build()
        .expect("objects are set");
    let answer = client
        .delete_objects()
        .bucket(bucket)
        .delete(delete)
        .send()
        .await
        .map_err(|e| storage_error(format!("delete {} objects from s3://{bucket}", objects.len()), e))?;
    let mut outcomes: Vec<Result<Removal, StorageError>> =
        objects.iter().map(|_| Ok(Removal::Removed)).collect();
    for error in answer.errors() {
        let Some(at) = objects
            .iter()
            .position(|(key, _)| Some(key.as_str()) == error.key())
        else {
            continue;
        };
        let code = error.code().unwrap_or("");
        outcomes[at] = match code {
            "PreconditionFailed" => Ok(Removal::Replaced),
            "NoSuchKey" => Ok(Removal::Removed),
            _ => Err(StorageError::new(
                format!("delete s3://{bucket}/{}", objects[at].0),
                object_error_class(code),
                format!("{code}: {}", error.message().unwrap_or("no message")),
            )),
        };
    }
    Ok(outcomes)
}

/// The class of a DeleteObjects error about one object, by its code.
fn object_error_class(code: &str) -> Class {
    match code {
        "InternalError" | "ServiceUnavailable" | "SlowDown" | "RequestTimeout" => Class::Transient,
        "AccessDenied" | "AllAccessDisabled" | "InvalidAccessKeyId" => Class::Fatal,
        _ => Class::Request,
    }
}

/// What the probe objects of earlier versions were named with (and a
/// random suffix): one was left behind by every start killed while it
/// probed. `redrive` still passes such leftovers over.
pub(crate) const OLD_PROBE_PREFIX: &str = "dead-letter/.widget-host-probe-";

/// The one key every host probes with: the dead-letter prefix itself. It
/// is never a request (it is under the prefix) and never a dead letter (S3
/// keys are not empty, so no request is dead-lettered as `dead-letter/`);
/// a random key below the prefix could be some request's dead letter. A
/// host killed between writing and removing its probe leaves it behind;
/// the next start writes the same key again and removes it, so a bucket
/// holds at most one probe, and none after a start that finished.
const PROBE_KEY: &str = "dead-letter/";

/// Whether the server behind `bucket` honours the ETag of each object in a
/// DeleteObjects call (S3 does; some servers ignore it and delete whatever
/// is there, which would remove a request replaced while it was processed).
/// Found out by trying: a probe object, a DeleteObjects with a wrong ETag,
/// then a look whether it survived; the probe is removed after. Any failure
/// on the way answers no. Hosts starting at the same moment share the
/// probe's key: one may remove it while another looks, which reads as "not
/// honoured", so a no is tried once more before it is believed.
pub(crate) async fn batch_deletes_honour_etags(client: &Client, bucket: &str) -> bool {
    for attempt in 0..2 {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(rand::random_range(50..250))).await;
        }
        if probe_once(client, bucket).await {
            return true;
        }
    }
    false
}

/// One probe: write, delete with a wrong ETag, look, remove.
async fn probe_once(client: &Client, bucket: &str) -> bool {
    let meta = ObjectMeta {
        content_type: None,
        metadata: &[],
    };
    if put_object(client, bucket, PROBE_KEY, b"probe", meta)
        .await
        .is_err()
    {
        return false;
    }
    let wrong = Some("\"00000000000000000000000000000000\"".to_owned());
    let tried = delete_objects_if(client, bucket, &[(PROBE_KEY.to_owned(), wrong)]).await;
    let survived = client
        .head_object()
        .bucket(bucket)
        .key(PROBE_KEY)
        .send()
        .await
        .is_ok();
    let _ = delete_object(client, bucket, PROBE_KEY).await;
    matches!(tried.as_deref(), Ok([Ok(Removal::Replaced)])) && survived
}
