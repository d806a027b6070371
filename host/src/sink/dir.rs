//! A local folder as an object store: the document at key `a/b/c` is the
//! file `DIR/a/b/c`. Writes and removals are committed in groups
//! ([`crate::folder::commit`], through a [`Batcher`]): a lone change goes
//! at once; those that come while a commit is under way go together in the
//! next, made durable by one sync of the file system instead of one each.

use super::{MAX_DOCUMENT_BYTES, Read, Sink, too_large};
use crate::batch::Batcher;
use crate::contract::Destination;
use crate::error::StorageError;
use crate::folder::{Change, commit, key_path, sweep_stale_temp_files};
use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// Changes one commit takes at most.
const COMMIT_BATCH: usize = 64;

/// The changes waiting to be committed, and their outcomes.
type Commits = Batcher<Change, Result<(), StorageError>>;

/// Documents in a local folder: widgets (or, for `invoke`, a handler's
/// store).
pub(crate) struct DirSink {
    root: PathBuf,
    destination: Destination,
    /// Started with the first change: opening a folder needs no runtime.
    commits: OnceLock<Commits>,
}

impl DirSink {
    /// A store in `root`, created if missing.
    pub(crate) fn open(root: impl Into<PathBuf>) -> Result<DirSink, StorageError> {
        let root = root.into();
        std::fs::create_dir_all(&root)
            .map_err(|e| StorageError::io(format!("create folder {}", root.display()), e))?;
        sweep_stale_temp_files(&root);
        Ok(DirSink {
            root,
            destination: Destination::ObjectStore,
            commits: OnceLock::new(),
        })
    }

    /// The folder `root` as a store that is only read: not made if it is
    /// missing (every document is then absent), nothing swept.
    pub(crate) fn open_read_only(root: impl Into<PathBuf>) -> DirSink {
        DirSink {
            root: root.into(),
            destination: Destination::ObjectStore,
            commits: OnceLock::new(),
        }
    }

    /// The same folder presented to handlers as another kind of store (a
    /// table whose items are files named by key), for `invoke`.
    pub(crate) fn presented_as(self, destination: Destination) -> DirSink {
        DirSink { destination, ..self }
    }

    /// Commits `change` with whatever else comes meanwhile.
    async fn change(&self, change: Change) -> Result<(), StorageError> {
        let action = change.action();
        let commits = self.commits.get_or_init(|| {
            let root = Arc::new(self.root.clone());
            Batcher::start(
                COMMIT_BATCH,
                |change: &Change| change.path().to_string_lossy().into_owned(),
                move |changes: Vec<Change>| {
                    let root = root.clone();
                    async move {
                        let count = changes.len();
                        let committed = tokio::task::spawn_blocking(move || {
                            let outcomes = commit(&root, &changes);
                            changes
                                .iter()
                                .zip(outcomes)
                                .map(|(change, outcome)| {
                                    outcome.map_err(|e| StorageError::io(change.action(), e))
                                })
                                .collect::<Vec<_>>()
                        })
                        .await;
                        committed.unwrap_or_else(|e| {
                            (0..count)
                                .map(|_| Err(StorageError::fatal("commit to a folder", e.to_string())))
                                .collect()
                        })
                    }
                },
            )
        });
        commits.call(change, || action).await
    }

    fn path(&self, action: &str, key: &str) -> Result<PathBuf, StorageError> {
        key_path(&self.root, key)
            .map_err(|why| StorageError::request(format!("{action} {key:?} in {}", self.root.display()), why))
    }
}

#[async_trait::async_trait]
impl Sink for DirSink {
    fn destination(&self) -> Destination {
        self.destination
    }

    fn describe(&self) -> String {
        format!("dir:{}", self.root.display())
    }

    async fn put(&self, key: &str, document: &str) -> Result<(), StorageError> {
        let path = self.path("put", key)?;
        self.change(Change::Put(path, document.as_bytes().to_vec())).await
    }

    /// The removal is durable too (its folder synced): a deleted widget
    /// does not come back after a power loss, once its request is gone.
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path("delete", key)?;
        self.change(Change::Delete(path)).await
    }
}

#[async_trait::async_trait]
impl Read for DirSink {
    async fn get(&self, key: &str) -> Result<Option<String>, StorageError> {
        let path = self.path("get", key)?;
        if let Ok(meta) = tokio::fs::metadata(&path).await
            && meta.len() > MAX_DOCUMENT_BYTES
        {
            return Err(too_large(format!("read {}", path.display()), meta.len()));
        }
        match tokio::fs::read(&path).await {
            Ok(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|e| StorageError::request(format!("read {}", path.display()), e)),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => Ok(None),
            Err(e) => Err(StorageError::io(format!("read {}", path.display()), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_document_too_large_for_a_handler_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let sink = DirSink::open(dir.path()).unwrap();
        sink.put("widgets/a/1", "{}").await.unwrap();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("widgets/a/1"))
            .unwrap();
        file.set_len(MAX_DOCUMENT_BYTES + 1).unwrap();
        let error = sink.get("widgets/a/1").await.unwrap_err();
        assert_eq!(error.class, crate::error::Class::Request, "{error}");
        assert!(
            error.to_string().contains("more than a handler may be given"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn put_get_delete_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let sink = DirSink::open(dir.path()).unwrap();
        assert_eq!(sink.get("widgets/a/1").await.unwrap(), None);
        sink.put("widgets/a/1", "{}").await.unwrap();
        assert_eq!(sink.get("widgets/a/1").await.unwrap().as_deref(), Some("{}"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("widgets/a/1")).unwrap(),
            "{}"
        );
        sink.delete("widgets/a/1").await.unwrap();
        sink.delete("widgets/a/1").await.unwrap();
        assert_eq!(sink.get("widgets/a/1").await.unwrap(), None);
    }

    #[tokio::test]
    async fn keys_that_would_leave_the_folder_are_the_requests_fault() {
        let dir = tempfile::tempdir().unwrap();
        let sink = DirSink::open(dir.path().join("w")).unwrap();
        for key in [
            "../x",
            "widgets/../../x",
            "/etc/passwd",
            "",
            "a//b",
            "widgets/a/.",
        ] {
            let err = sink.put(key, "{}").await.unwrap_err();
            assert!(!err.is_transient(), "{key}: {err}");
        }
        assert!(!dir.path().join("x").exists());
    }
}
