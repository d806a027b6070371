//! A local folder as a request source: each file is a request, taken in
//! file-name order. Hidden files (a producer's temporary files) and
//! sub-folders (`.tmp/`, where writes are staged) are not requests; `dead-letter/` holds the rejected ones, each
//! with a `.reason` file beside it.

use super::{Page, Source, Version};
use crate::error::StorageError;
use crate::folder::{sweep_stale_temp_files, sync_dir, write_atomically};
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The sub-folder rejected requests are moved to.
const DEAD_LETTER: &str = "dead-letter";

/// Keys listed per page, as S3's ListObjectsV2 does.
const PAGE_SIZE: usize = 1000;

/// Requests in a local folder.
pub(crate) struct DirSource {
    root: PathBuf,
    /// The last key of the previous page; `None` starts a new pass.
    watermark: Mutex<Option<String>>,
}

impl DirSource {
    /// A source reading `root`, which must exist.
    pub(crate) fn open(root: impl Into<PathBuf>) -> Result<DirSource, StorageError> {
        let root = root.into();
        if !root.is_dir() {
            return Err(StorageError::fatal(
                format!("open request folder {}", root.display()),
                "no such folder",
            ));
        }
        sweep_stale_temp_files(&root);
        Ok(DirSource {
            root,
            watermark: Mutex::new(None),
        })
    }

    /// Whether the file at `path` is another than the one read as
    /// `version`: a request written under the same name meanwhile (a
    /// producer's atomic rename makes a new file). It is left for its own
    /// turn. (Between this look and the removal that follows, a replacement
    /// would still be removed: a window of a system call.)
    async fn replaced(&self, path: &Path, version: &Version) -> Result<bool, StorageError> {
        let Version(Some(read)) = version else {
            return Ok(false);
        };
        match tokio::fs::metadata(path).await {
            Ok(meta) if file_version(&meta).0.as_ref() != Some(read) => {
                tracing::info!(file = %path.display(), "The request was replaced while it was processed; the new one waits for its turn.");
                Ok(true)
            }
            Ok(_) => Ok(false),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StorageError::io(format!("look at {}", path.display()), e)),
        }
    }

    fn request_path(&self, key: &str) -> Result<PathBuf, StorageError> {
        if key.is_empty() || key.contains('/') || key.starts_with('.') {
            return Err(StorageError::request(
                format!("use request {key:?}"),
                "not a request file name",
            ));
        }
        Ok(self.root.join(key))
    }
}

#[async_trait::async_trait]
impl Source for DirSource {
    fn describe(&self) -> String {
        format!("dir:{}", self.root.display())
    }

    fn dead_letter_place(&self) -> String {
        self.root.join(DEAD_LETTER).display().to_string()
    }

    async fn list(&self) -> Result<Page, StorageError> {
        let after = self.watermark.lock().unwrap().clone();
        let mut keys = Vec::new();
        let listing_error = |e| StorageError::io(format!("list {}", self.root.display()), e);
        let mut entries = tokio::fs::read_dir(&self.root).await.map_err(listing_error)?;
        while let Some(entry) = entries.next_entry().await.map_err(listing_error)? {
            let Ok(name) = entry.file_name().into_string() else {
                tracing::warn!(file = ?entry.path(), "Skipping a request file whose name is not UTF-8.");
                continue;
            };
            if name.starts_with('.') || after.as_deref().is_some_and(|after| name.as_str() <= after) {
                continue;
            }
            let is_file = entry.file_type().await.map_err(listing_error)?.is_file();
            if is_file {
                keys.push(name);
            }
        }
        keys.sort_unstable();
        let reached_end = keys.len() <= PAGE_SIZE;
        keys.truncate(PAGE_SIZE);
        *self.watermark.lock().unwrap() = if reached_end { None } else { keys.last().cloned() };
        Ok(Page {
            keys,
            from_start: after.is_none(),
            reached_end,
        })
    }

    async fn read(&self, key: &str) -> Result<Option<(Vec<u8>, Version)>, StorageError> {
        let path = self.request_path(key)?;
        let read = tokio::task::spawn_blocking(move || {
            use std::io::Read as _;
            let mut file = std::fs::File::open(&path)?;
            // The version of the very file read, not of whatever the name
            // points at later.
            let version = file_version(&file.metadata()?);
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            Ok::<_, std::io::Error>((bytes, version))
        })
        .await
        .map_err(std::io::Error::other);
        match read.and_then(|read| read) {
            Ok(read) => Ok(Some(read)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::io(
                format!("read {}", self.root.join(key).display()),
                e,
            )),
        }
    }

    async fn ack(&self, key: &str, version: &Version) -> Result<(), StorageError> {
        let path = self.request_path(key)?;
        if self.replaced(&path, version).await? {
            return Ok(());
        }
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(format!("remove {}", path.display()), e)),
        }
    }

    async fn dead_letter(
        &self,
        key: &str,
        version: &Version,
        _body: &[u8],
        reason: &str,
    ) -> Result<(), StorageError> {
        let path = self.request_path(key)?;
        if self.replaced(&path, version).await? {
            return Ok(());
        }
        let folder = self.root.join(DEAD_LETTER);
        // The reason first, then the request: a crash in between leaves the
        // request in place, to be dead-lettered again, never a request
        // without its reason.
        let reason_path = folder.join(format!("{key}.reason"));
        write_atomically(&self.root, &reason_path, format!("{reason}\n").as_bytes())
            .await
            .map_err(|e| StorageError::io(format!("write {}", reason_path.display()), e))?;
        // A rename keeps the bytes exactly as they were.
        match tokio::fs::rename(&path, folder.join(key)).await {
            Ok(()) => {
                sync_dir(&folder).map_err(|e| StorageError::io(format!("sync {}", folder.display()), e))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(
                format!("move {} to {}", path.display(), folder.display()),
                e,
            )),
        }
    }
}

/// What tells one file from another written under the same name: its
/// device and inode, size and modification time.
fn file_version(meta: &std::fs::Metadata) -> Version {
    Version(Some(format!(
        "{}:{}:{}:{}.{}",
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(names: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for name in names {
            std::fs::write(dir.path().join(name), name.as_bytes()).unwrap();
        }
        dir
    }

    #[tokio::test]
    async fn lists_files_in_name_order_skipping_hidden_files_and_folders() {
        let dir = folder(&["3", "1", ".2.tmp", "10"]);
        std::fs::create_dir(dir.path().join(DEAD_LETTER)).unwrap();
        let source = DirSource::open(dir.path()).unwrap();
        let page = source.list().await.unwrap();
        assert_eq!(page.keys, ["1", "10", "3"]);
        assert!(page.from_start && page.reached_end);
    }

    #[tokio::test]
    async fn pages_follow_the_watermark_then_start_again() {
        let names: Vec<String> = (0..2500).map(|i| format!("{i:05}")).collect();
        let dir = folder(&names.iter().map(String::as_str).collect::<Vec<_>>());
        let source = DirSource::open(dir.path()).unwrap();
        let first = source.list().await.unwrap();
        assert_eq!(
            (first.keys.len(), first.from_start, first.reached_end),
            (1000, true, false)
        );
        let second = source.list().await.unwrap();
        assert_eq!(second.keys[0], "01000");
        assert!(!second.from_start);
        // A request with a smaller key arrives: the next pass sees it.
        std::fs::write(dir.path().join("00000a"), b"late").unwrap();
        let third = source.list().await.unwrap();
        assert_eq!((third.keys.len(), third.reached_end), (500, true));
        let again = source.list().await.unwrap();
        assert!(again.from_start);
        assert_eq!(&again.keys[..2], ["00000", "00000a"]);
    }

    #[tokio::test]
    async fn dead_letter_moves_the_bytes_unchanged_with_a_reason() {
        let dir = folder(&[]);
        std::fs::write(dir.path().join("7"), b"\xff not json").unwrap();
        let source = DirSource::open(dir.path()).unwrap();
        let (_, version) = source.read("7").await.unwrap().unwrap();
        source
            .dead_letter("7", &version, b"ignored", "bad request")
            .await
            .unwrap();
        assert!(!dir.path().join("7").exists());
        assert_eq!(
            std::fs::read(dir.path().join("dead-letter/7")).unwrap(),
            b"\xff not json"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("dead-letter/7.reason")).unwrap(),
            "bad request\n"
        );
        assert_eq!(source.list().await.unwrap().keys, Vec::<String>::new());
    }

    #[tokio::test]
    async fn read_and_ack_treat_a_vanished_request_as_done() {
        let dir = folder(&["1"]);
        let source = DirSource::open(dir.path()).unwrap();
        let (body, version) = source.read("1").await.unwrap().unwrap();
        assert_eq!(body, b"1");
        source.ack("1", &version).await.unwrap();
        source.ack("1", &version).await.unwrap();
        assert_eq!(source.read("1").await.unwrap(), None);
        assert!(source.read("../x").await.is_err());
    }

    #[tokio::test]
    async fn a_request_replaced_while_in_flight_is_left_for_its_own_turn() {
        let dir = folder(&["1", "2"]);
        let source = DirSource::open(dir.path()).unwrap();
        let (_, first) = source.read("1").await.unwrap().unwrap();
        let (_, second) = source.read("2").await.unwrap().unwrap();
        // As a producer replaces a file: written aside, renamed over it.
        for name in ["1", "2"] {
            std::fs::write(dir.path().join(".new"), b"newer").unwrap();
            std::fs::rename(dir.path().join(".new"), dir.path().join(name)).unwrap();
        }
        source.ack("1", &first).await.unwrap();
        source.dead_letter("2", &second, b"2", "bad").await.unwrap();
        for name in ["1", "2"] {
            assert_eq!(std::fs::read(dir.path().join(name)).unwrap(), b"newer");
        }
        assert!(!dir.path().join("dead-letter/2").exists());
        // The new ones go when their own turn comes.
        let (_, newer) = source.read("1").await.unwrap().unwrap();
        source.ack("1", &newer).await.unwrap();
        assert!(!dir.path().join("1").exists());
    }
}
