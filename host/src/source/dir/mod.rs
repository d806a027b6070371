//! A local folder as a request source: each file is a request, taken in
//! file-name order. Hidden files (a producer's temporary files) and
//! sub-folders (`.tmp/`, where writes are staged) are not requests;
//! `dead-letter/` holds the rejected ones, each with a `.reason` file
//! beside it.
//!
//! Only regular files inside the folder are ever read: a symbolic link is
//! not followed (it could point anywhere), and it, a file whose name is not
//! UTF-8 text, or a FIFO, socket or device is moved to `dead-letter/` as
//! met, unread, under an escaped name, with the reason.

mod dead_letters;
mod writer;

pub(crate) use writer::DirWriter;

use super::{DeadLettering, Fetched, Listed, Page, SetAside, Source, Version};
use crate::error::StorageError;
use crate::folder::{rename_no_replace, sweep_stale_temp_files, sync_dir};
use dead_letters::move_to_dead_letters;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{ErrorKind, Read as _};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The sub-folder rejected requests are moved to.
const DEAD_LETTER: &str = "dead-letter";

/// Keys listed per page, as S3's ListObjectsV2 does.
const PAGE_SIZE: usize = 1000;

/// Requests in a local folder.
pub(crate) struct DirSource {
    root: PathBuf,
    /// The names the current pass has yet to list, in order; empty starts
    /// a new pass. A pass reads the folder once and then hands out a page
    /// at a time: a page costs its own 1,000 entries, not the whole folder.
    /// Files written meanwhile are seen by the next pass.
    pass: Mutex<VecDeque<Box<str>>>,
    /// Opened to look, not to change: nothing is swept, and what can never
    /// be a request is passed over rather than moved to the dead letters.
    read_only: bool,
}

/// A request file named like the dead-letter folder, set aside under this
/// hidden name so that the folder can be made (and found there by a start
/// after a crash in between).
const ASIDE: &str = ".dead-letter.aside";

/// Why a request file named like the dead-letter folder is not read.
const NAMED_LIKE_THE_FOLDER: &str = "a file named dead-letter, the name of the dead-letter folder: set aside unread so that the folder can be made";

/// A folder entry that can never be a request, and why.
struct Odd {
    name: OsString,
    reason: &'static str,
}

impl DirSource {
    /// A source reading `root`, which must exist.
    pub(crate) fn open(root: impl Into<PathBuf>) -> Result<DirSource, StorageError> {
        DirSource::opened(root.into(), false)
    }

    /// A source reading `root`, which must exist, that writes nothing
    /// there (for `diff` and `redrive --dry-run`): no stale temporary file
    /// swept, no folder made, no odd entry moved (it is passed over).
    pub(crate) fn open_read_only(root: impl Into<PathBuf>) -> Result<DirSource, StorageError> {
        DirSource::opened(root.into(), true)
    }

    fn opened(root: PathBuf, read_only: bool) -> Result<DirSource, StorageError> {
        if !root.is_dir() {
            let shown = root.display();
            return Err(StorageError::fatal(
                format!("open request folder {shown}"),
                format!(
                    "no such folder: create it (mkdir -p {shown}), or write requests into it (widget-host produce --requests-dir {shown})"
                ),
            ));
        }
        if !read_only {
            sweep_stale_temp_files(&root);
            // A file named like the dead-letter folder, moved aside by a
            // run that stopped before it was dead-lettered.
            let aside = root.join(ASIDE);
            if std::fs::symlink_metadata(&aside).is_ok() {
                let reason = format!("{NAMED_LIKE_THE_FOLDER}; its name, escaped: {DEAD_LETTER}");
                move_to_dead_letters(&root, &aside, DEAD_LETTER, &reason)?;
            }
        }
        Ok(DirSource {
            root,
            pass: Mutex::default(),
            read_only,
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
        match tokio::fs::symlink_metadata(path).await {
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

    /// Dead-letters an entry that can never be a request.
    async fn set_aside(&self, odd: Odd) -> Result<SetAside, StorageError> {
        let name = odd.name.as_bytes().escape_ascii().to_string();
        let reason = format!("{}; its name, escaped: {name}", odd.reason);
        let mut from = self.root.join(&odd.name);
        if odd.name == DEAD_LETTER {
            // It holds the folder's name: moved aside first, so that the
            // folder can be made.
            let aside = self.root.join(ASIDE);
            match rename_no_replace(&from, &aside) {
                Ok(()) => sync_dir(&self.root)
                    .map_err(|e| StorageError::io(format!("sync {}", self.root.display()), e))?,
                Err(e) => return Err(StorageError::io(format!("move {} aside", from.display()), e)),
            }
            from = aside;
        }
        self.move_to_dead_letters(&from, &name, &reason).await?;
        Ok(SetAside { name, reason })
    }
}

/// Why a folder entry of this type can never be a request, if it cannot.
fn unusable(name: &std::ffi::OsStr, kind: std::fs::FileType) -> Option<&'static str> {
    if name == DEAD_LETTER {
        Some(NAMED_LIKE_THE_FOLDER)
    } else if kind.is_symlink() {
        Some("a symbolic link: only files inside the request folder are read")
    } else if !kind.is_file() {
        Some("not a regular file (a FIFO, socket or device)")
    } else if name.to_str().is_none() {
        Some("a file name that is not UTF-8 text")
    } else {
        None
    }
}

/// The names of the requests in `root`, sorted, and the entries that can
/// never be requests. Only names and types are read (the directory entry's
/// own type, no `stat` per file where the file system gives it).
fn scan(root: &Path) -> std::io::Result<(VecDeque<Box<str>>, Vec<Odd>)> {
    let mut names = Vec::new();
    let mut odd = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.as_bytes().starts_with(b".") {
            continue;
        }
        let kind = match entry.file_type() {
            Ok(kind) => kind,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if kind.is_dir() {
            continue;
        }
        match unusable(&name, kind) {
            Some(reason) => odd.push(Odd { name, reason }),
            None => names.push(name.into_string().expect("checked as text").into_boxed_str()),
        }
    }
    names.sort_unstable();
    Ok((names.into(), odd))
}

/// Looks at the files `names` name, as they are now: each a request, or
/// odd, or gone since the scan (left out).
fn look_at(root: &Path, names: Vec<Box<str>>) -> std::io::Result<(Vec<Listed>, Vec<Odd>)> {
    let mut requests = Vec::with_capacity(names.len());
    let mut odd = Vec::new();
    for name in names {
        // The entry itself, not what a link points at.
        let meta = match std::fs::symlink_metadata(root.join(&*name)) {
            Ok(meta) => meta,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.is_dir() {
            continue;
        }
        match unusable(std::ffi::OsStr::new(&*name), meta.file_type()) {
            Some(reason) => odd.push(Odd {
                name: OsString::from(&*name),
                reason,
            }),
            None => requests.push(Listed {
                key: name.into(),
                size: meta.len(),
                version: file_version(&meta),
                modified: meta.modified().ok(),
                trace: None,
            }),
        }
    }
    Ok((requests, odd))
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
        let listing_error = |e| StorageError::io(format!("list {}", self.root.display()), e);
        let root = self.root.clone();
        let mut odd = Vec::new();
        let from_start = self.pass.lock().unwrap().is_empty();
        if from_start {
            let scanned = tokio::task::spawn_blocking(move || scan(&root))
                .await
                .map_err(std::io::Error::other)
                .and_then(|scanned| scanned)
                .map_err(listing_error)?;
            *self.pass.lock().unwrap() = scanned.0;
            odd = scanned.1;
        }
        let (names, reached_end) = {
            let mut pass = self.pass.lock().unwrap();
            let take = pass.len().min(PAGE_SIZE);
            let names: Vec<Box<str>> = pass.drain(..take).collect();
            (names, pass.is_empty())
        };
        let root = self.root.clone();
        let (requests, odd_now) = tokio::task::spawn_blocking(move || look_at(&root, names))
            .await
            .map_err(std::io::Error::other)
            .and_then(|looked| looked)
            .map_err(listing_error)?;
        let mut set_aside = Vec::new();
        for odd in odd.into_iter().chain(odd_now) {
            if !self.read_only {
                set_aside.push(self.set_aside(odd).await?);
            }
        }
        Ok(Page {
            requests,
            from_start,
            reached_end,
            set_aside,
            full: false,
        })
    }

    async fn read(&self, key: &str, max_bytes: u64) -> Result<Fetched, StorageError> {
        let path = self.request_path(key)?;
        let read = tokio::task::spawn_blocking(move || {
            // Never through a link (it could lead out of the folder), and
            // never waiting on a FIFO put in a file's place.
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(&path)?;
            // The version of the very file read, not of whatever the name
            // points at later.
            let meta = file.metadata()?;
            if !meta.is_file() {
                // Listed as a file, something else now: the next listing
                // sets it aside.
                return Ok(Fetched::Gone);
            }
            let version = file_version(&meta);
            if meta.len() > max_bytes {
                return Ok(Fetched::TooLarge(meta.len(), version));
            }
            // No further than the limit, should the file grow meanwhile.
            let mut bytes = Vec::with_capacity(meta.len() as usize);
            (&mut file)
                .take(max_bytes.saturating_add(1))
                .read_to_end(&mut bytes)?;
            if bytes.len() as u64 > max_bytes {
                return Ok(Fetched::TooLarge(bytes.len() as u64, version));
            }
            Ok::<_, std::io::Error>(Fetched::Request(bytes, version))
        })
        .await
        .map_err(std::io::Error::other);
        match read.and_then(|read| read) {
            Ok(fetched) => Ok(fetched),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Fetched::Gone),
            // A link put in the file's place: the next listing sets it aside.
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Ok(Fetched::Gone),
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
        reason: &str,
        _traceparent: Option<&str>,
    ) -> Result<DeadLettering, StorageError> {
        let path = self.request_path(key)?;
        if self.replaced(&path, version).await? {
            return Ok(DeadLettering::Missed);
        }
        self.move_to_dead_letters(&path, key, reason).await
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
    use super::dead_letters::{NAME_MAX, REASON, dead_letter_name, key_of};
    use super::*;
    use crate::source::{DeadLetter, DeadLetters, Redriven};
    use std::os::unix::ffi::OsStringExt;

    fn keys(page: &Page) -> Vec<&str> {
        page.requests.iter().map(|r| r.key.as_str()).collect()
    }

    async fn version(source: &DirSource, key: &str) -> Version {
        match source.read(key, 1000).await.unwrap() {
            Fetched::Request(_, version) => version,
            other => panic!("{other:?}"),
        }
    }

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
        assert_eq!(keys(&page), ["1", "10", "3"]);
        assert_eq!(page.requests[0].size, 1);
        assert!(page.from_start && page.reached_end);
    }

    #[tokio::test]
    async fn pages_follow_the_watermark_then_start_again() {
        let names: Vec<String> = (0..2500).map(|i| format!("{i:05}")).collect();
        let dir = folder(&names.iter().map(String::as_str).collect::<Vec<_>>());
        let source = DirSource::open(dir.path()).unwrap();
        let first = source.list().await.unwrap();
        assert_eq!(
            (first.requests.len(), first.from_start, first.reached_end),
            (1000, true, false)
        );
        let second = source.list().await.unwrap();
        assert_eq!(second.requests[0].key, "01000");
        assert!(!second.from_start);
        // A request with a smaller key arrives: the next pass sees it.
        std::fs::write(dir.path().join("00000a"), b"late").unwrap();
        let third = source.list().await.unwrap();
        assert_eq!((third.requests.len(), third.reached_end), (500, true));
        let again = source.list().await.unwrap();
        assert!(again.from_start);
        assert_eq!(&keys(&again)[..2], ["00000", "00000a"]);
    }

    #[tokio::test]
    async fn dead_letter_moves_the_bytes_unchanged_with_a_reason() {
        let dir = folder(&[]);
        std::fs::write(dir.path().join("7"), b"\xff not json").unwrap();
        let source = DirSource::open(dir.path()).unwrap();
        let Fetched::Request(_, version) = source.read("7", 100).await.unwrap() else {
            panic!()
        };
        source
            .dead_letter("7", &version, "bad request", None)
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
        assert!(source.list().await.unwrap().requests.is_empty());
    }

    #[tokio::test]
    async fn read_and_ack_treat_a_vanished_request_as_done() {
        let dir = folder(&["1"]);
        let source = DirSource::open(dir.path()).unwrap();
        let Fetched::Request(body, version) = source.read("1", 100).await.unwrap() else {
            panic!()
        };
        assert_eq!(body, b"1");
        source.ack("1", &version).await.unwrap();
        source.ack("1", &version).await.unwrap();
        assert_eq!(source.read("1", 100).await.unwrap(), Fetched::Gone);
        assert!(source.read("../x", 100).await.is_err());
    }

    #[tokio::test]
    async fn a_request_replaced_while_in_flight_is_left_for_its_own_turn() {
        let dir = folder(&["1", "2"]);
        let source = DirSource::open(dir.path()).unwrap();
        let first = version(&source, "1").await;
        let second = version(&source, "2").await;
        // As a producer replaces a file: written aside, renamed over it.
        for name in ["1", "2"] {
            std::fs::write(dir.path().join(".new"), b"newer").unwrap();
            std::fs::rename(dir.path().join(".new"), dir.path().join(name)).unwrap();
        }
        source.ack("1", &first).await.unwrap();
        source.dead_letter("2", &second, "bad", None).await.unwrap();
        for name in ["1", "2"] {
            assert_eq!(std::fs::read(dir.path().join(name)).unwrap(), b"newer");
        }
        assert!(!dir.path().join("dead-letter/2").exists());
        // The new ones go when their own turn comes.
        let newer = version(&source, "1").await;
        source.ack("1", &newer).await.unwrap();
        assert!(!dir.path().join("1").exists());
    }

    #[tokio::test]
    async fn a_request_over_the_limit_is_not_read() {
        let dir = folder(&["small"]);
        std::fs::write(dir.path().join("big"), vec![b'x'; 101]).unwrap();
        let source = DirSource::open(dir.path()).unwrap();
        assert_eq!(source.list().await.unwrap().requests[0].size, 101);
        assert!(matches!(
            source.read("big", 100).await.unwrap(),
            Fetched::TooLarge(101, _)
        ));
        assert!(matches!(
            source.read("small", 100).await.unwrap(),
            Fetched::Request(..)
        ));
    }

    #[tokio::test]
    async fn links_odd_names_and_fifos_are_dead_lettered_once_unread() {
        let dir = folder(&["1"]);
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"outside").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("2")).unwrap();
        let odd_name = std::ffi::OsStr::from_bytes(b"3\xff\nx");
        std::fs::write(dir.path().join(odd_name), b"odd").unwrap();
        let fifo = std::ffi::CString::new(dir.path().join("4").into_os_string().into_vec()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let source = DirSource::open(dir.path()).unwrap();

        // A link is never followed, even when read by name.
        assert_eq!(source.read("2", 100).await.unwrap(), Fetched::Gone);
        let page = source.list().await.unwrap();
        assert_eq!(keys(&page), ["1"]);
        let mut names: Vec<&str> = page.set_aside.iter().map(|s| s.name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["2", "3\\xff\\nx", "4"]);
        let dead = dir.path().join(DEAD_LETTER);
        assert!(
            std::fs::symlink_metadata(dead.join("2"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(dead.join("3\\xff\\nx")).unwrap(), b"odd");
        let reason = std::fs::read_to_string(dead.join("2.reason")).unwrap();
        assert!(reason.contains("symbolic link"), "{reason}");
        assert_eq!(std::fs::read(outside.path().join("secret")).unwrap(), b"outside");
        // Once: the next listing meets nothing odd.
        assert!(source.list().await.unwrap().set_aside.is_empty());
    }

    /// The dead letters' request keys.
    async fn dead_letter_keys(source: &DirSource) -> Vec<String> {
        let letters = source.dead_letters().await.unwrap();
        letters.into_iter().map(|letter| letter.key).collect()
    }

    /// The one dead letter of `key`.
    async fn letter(source: &DirSource, key: &str) -> DeadLetter {
        let mut letters = source.dead_letters().await.unwrap();
        letters.retain(|letter| letter.key == key);
        assert_eq!(letters.len(), 1, "{key}: {letters:?}");
        letters.remove(0)
    }

    #[tokio::test]
    async fn a_redriven_dead_letter_goes_back_under_its_key_without_its_reason() {
        let dir = folder(&["1", "2"]);
        let source = DirSource::open(dir.path()).unwrap();
        for key in ["1", "2"] {
            let version = version(&source, key).await;
            source.dead_letter(key, &version, "bad", None).await.unwrap();
        }
        assert_eq!(dead_letter_keys(&source).await, ["1", "2"]);
        assert_eq!(
            source.redrive(&letter(&source, "1").await).await.unwrap(),
            Redriven::Moved
        );
        assert!(dir.path().join("1").is_file());
        assert!(!dir.path().join("dead-letter/1").exists());
        assert!(!dir.path().join("dead-letter/1.reason").exists());
        // A request waiting under the key is never overwritten.
        std::fs::write(dir.path().join("2"), b"newer").unwrap();
        assert_eq!(
            source.redrive(&letter(&source, "2").await).await.unwrap(),
            Redriven::Occupied
        );
        assert_eq!(std::fs::read(dir.path().join("2")).unwrap(), b"newer");
        assert!(dir.path().join("dead-letter/2").exists());
        assert!(
            dir.path().join("dead-letter/2.reason").exists(),
            "with its reason"
        );
    }

    #[tokio::test]
    async fn no_request_name_collides_with_a_reason_and_every_one_is_redriven() {
        let names = ["K", "K.reason", "K%2Ereason", "100%", "x.reason.reason"];
        let dir = folder(&names);
        let source = DirSource::open(dir.path()).unwrap();
        for key in names {
            let version = version(&source, key).await;
            source
                .dead_letter(key, &version, &format!("why {key}"), None)
                .await
                .unwrap();
        }
        let mut keys = names.map(str::to_owned).to_vec();
        keys.sort();
        assert_eq!(
            dead_letter_keys(&source).await,
            keys,
            "each dead letter listed once, by its key"
        );
        for key in names {
            let reason = std::fs::read_to_string(
                dir.path()
                    .join(format!("dead-letter/{}.reason", dead_letter_name(key, 1))),
            );
            assert_eq!(reason.unwrap(), format!("why {key}\n"), "{key}'s own reason");
            assert_eq!(key_of(&dead_letter_name(key, 1)), key);
            assert_eq!(key_of(&dead_letter_name(key, 7)), key);
        }
        for key in names {
            assert_eq!(
                source.redrive(&letter(&source, key).await).await.unwrap(),
                Redriven::Moved,
                "{key}"
            );
            assert_eq!(
                std::fs::read(dir.path().join(key)).unwrap(),
                key.as_bytes(),
                "{key} back, bytes unchanged"
            );
        }
        let left: Vec<_> = std::fs::read_dir(dir.path().join("dead-letter"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "nothing left behind: {left:?}");
        // A stop between a redrive's two steps leaves a dead letter whose
        // reason is already gone: it is listed and moved all the same.
        let version = version(&source, "K").await;
        source.dead_letter("K", &version, "again", None).await.unwrap();
        std::fs::remove_file(dir.path().join("dead-letter/K.reason")).unwrap();
        assert_eq!(dead_letter_keys(&source).await, ["K"]);
        assert_eq!(
            source.redrive(&letter(&source, "K").await).await.unwrap(),
            Redriven::Moved
        );
        assert!(dir.path().join("K").is_file());
        // A file an earlier version left under a name ending in .reason,
        // whose own dead letter is gone, is never removed.
        std::fs::write(dir.path().join("dead-letter/9.reason"), b"a request, or a reason").unwrap();
        assert!(dead_letter_keys(&source).await.is_empty());
        assert!(dir.path().join("dead-letter/9.reason").exists());
    }

    #[tokio::test]
    async fn a_key_dead_lettered_again_keeps_every_earlier_dead_letter() {
        let dir = folder(&["order.json"]);
        let source = DirSource::open(dir.path()).unwrap();
        for round in 1..=3 {
            std::fs::write(dir.path().join("order.json"), format!("request {round}")).unwrap();
            let version = version(&source, "order.json").await;
            let kept = source
                .dead_letter("order.json", &version, &format!("why {round}"), None)
                .await;
            assert_eq!(kept.unwrap(), DeadLettering::Kept);
        }
        let letters = source.dead_letters().await.unwrap();
        assert_eq!(letters.len(), 3, "{letters:?}");
        for (round, letter) in (1..).zip(&letters) {
            assert_eq!(letter.key, "order.json");
            let body = source.read_dead_letter(letter, 100).await.unwrap();
            assert_eq!(
                body,
                Fetched::Request(format!("request {round}").into_bytes(), Version::default())
            );
            assert_eq!(
                source.reason(letter).await.unwrap().unwrap(),
                format!("why {round}")
            );
        }
        // The first goes back; the next waits until its key is free again.
        assert_eq!(source.redrive(&letters[0]).await.unwrap(), Redriven::Moved);
        assert_eq!(source.redrive(&letters[1]).await.unwrap(), Redriven::Occupied);
        assert_eq!(
            std::fs::read(dir.path().join("order.json")).unwrap(),
            b"request 1"
        );
    }

    #[tokio::test]
    async fn names_that_escape_to_one_dead_letter_name_both_keep_theirs() {
        // A file whose name is not text is kept under its escaped name,
        // which a file of that very text name also has.
        let dir = folder(&["3\\xff"]);
        std::fs::write(
            dir.path().join(std::ffi::OsString::from_vec(b"3\xff".to_vec())),
            b"odd",
        )
        .unwrap();
        let source = DirSource::open(dir.path()).unwrap();
        let page = source.list().await.unwrap();
        assert_eq!(page.set_aside.len(), 1);
        let version = version(&source, "3\\xff").await;
        source.dead_letter("3\\xff", &version, "bad", None).await.unwrap();
        let letters = source.dead_letters().await.unwrap();
        assert_eq!(letters.len(), 2, "{letters:?}");
        let mut bodies = Vec::new();
        for letter in &letters {
            assert_eq!(letter.key, "3\\xff");
            match source.read_dead_letter(letter, 100).await.unwrap() {
                Fetched::Request(body, _) => bodies.push(body),
                other => panic!("{other:?}"),
            }
        }
        bodies.sort();
        assert_eq!(bodies, [b"3\\xff".to_vec(), b"odd".to_vec()]);
    }

    #[tokio::test]
    async fn a_name_too_long_for_its_reason_is_dead_lettered_under_a_shorter_one() {
        let long = "a".repeat(250);
        let percent = "%".repeat(200);
        let dir = folder(&[&long, &percent]);
        let source = DirSource::open(dir.path()).unwrap();
        for key in [&long, &percent] {
            let version = version(&source, key).await;
            let kept = source.dead_letter(key, &version, "bad", None).await.unwrap();
            assert_eq!(kept, DeadLettering::Kept, "{key}");
            assert!(!dir.path().join(key).exists());
        }
        let letters = source.dead_letters().await.unwrap();
        assert_eq!(letters.len(), 2);
        for letter in &letters {
            assert!(letter.id.len() + REASON.len() <= NAME_MAX, "{}", letter.id);
            let reason = source.reason(letter).await.unwrap().unwrap();
            assert!(
                reason.starts_with("bad; kept under a shortened name: the request's key was "),
                "{reason}"
            );
            // Back under the shortened name, which is a file name too.
            assert_eq!(source.redrive(letter).await.unwrap(), Redriven::Moved);
            assert!(dir.path().join(&letter.key).is_file());
        }
    }

    #[tokio::test]
    async fn a_file_named_like_the_dead_letter_folder_is_set_aside_into_it() {
        let dir = folder(&["dead-letter", "1"]);
        let source = DirSource::open(dir.path()).unwrap();
        let page = source.list().await.unwrap();
        assert_eq!(keys(&page), ["1"]);
        assert_eq!(page.set_aside.len(), 1);
        assert!(dir.path().join("dead-letter").is_dir());
        assert_eq!(
            std::fs::read(dir.path().join("dead-letter/dead-letter")).unwrap(),
            b"dead-letter"
        );
        // Other dead letters go beside it.
        let version = version(&source, "1").await;
        assert_eq!(
            source.dead_letter("1", &version, "bad", None).await.unwrap(),
            DeadLettering::Kept
        );
        // A run that stopped after moving it aside finishes the move.
        drop(source);
        std::fs::write(dir.path().join(ASIDE), b"again").unwrap();
        let source = DirSource::open(dir.path()).unwrap();
        assert!(!dir.path().join(ASIDE).exists());
        assert_eq!(
            dead_letter_keys(&source).await,
            ["1", "dead-letter", "dead-letter"]
        );
    }

    #[tokio::test]
    async fn a_request_removed_by_another_hand_is_not_dead_lettered() {
        let dir = folder(&["1"]);
        let source = DirSource::open(dir.path()).unwrap();
        let version = version(&source, "1").await;
        std::fs::remove_file(dir.path().join("1")).unwrap();
        assert_eq!(
            source.dead_letter("1", &version, "bad", None).await.unwrap(),
            DeadLettering::Missed
        );
        let left: Vec<_> = std::fs::read_dir(dir.path().join("dead-letter"))
            .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "no reason left without its request: {left:?}");
    }
}
