//! Local-file helpers shared by the folder source and sink: key paths,
//! durable atomic writes, and the sweep of what crashed writers left.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The sub-folder of a source's or sink's folder where files are written
/// before they are renamed into place. A crash can leave files there, never
/// in the folder's own layout.
pub(crate) const TEMP_DIR: &str = ".tmp";

/// Temporary files older than this are left-overs of a crash.
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// The file for a `/`-separated key under `root`, refusing keys that would
/// leave it, that no file could stand for (empty segments, `.`, `..`), or
/// that fall in the temporary folder.
pub(crate) fn key_path(root: &Path, key: &str) -> Result<PathBuf, String> {
    let mut path = root.to_path_buf();
    for (i, segment) in key.split('/').enumerate() {
        if segment.is_empty()
            || segment == "."
            || segment == ".."
            || segment.contains('\0')
            || (i == 0 && segment == TEMP_DIR)
        {
            return Err(format!("key {key:?} cannot be stored in a local folder"));
        }
        path.push(segment);
    }
    Ok(path)
}

/// Writes a file so that readers, and a crash or a power loss, see either
/// the old content or the new, never a part: write a temporary file in
/// `root`'s temporary folder, sync it, rename it over the target (`path`,
/// under `root`), then sync the target's folder so that the rename itself
/// is on disk. A failed write removes its temporary file: a full disk is
/// not made fuller by the attempts to write to it.
pub async fn write_atomically(root: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let (root, path, bytes) = (root.to_owned(), path.to_owned(), bytes.to_vec());
    tokio::task::spawn_blocking(move || write_atomically_now(&root, &path, &bytes))
        .await
        .map_err(std::io::Error::other)?
}

fn write_atomically_now(root: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    written_then(root, path, bytes, |temp, path| std::fs::rename(temp, path))
}

/// [`write_atomically`], but never over a file already at `path`: `false`
/// (and nothing written) if there is one. The check and the write are one
/// step (a rename that does not replace), so two writers never both win.
pub(crate) fn write_new(root: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    match written_then(root, path, bytes, rename_no_replace) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` to a synced temporary file, moves it to `path` with
/// `place`, and syncs `path`'s folder.
fn written_then(
    root: &Path,
    path: &Path,
    bytes: &[u8],
    place: impl FnOnce(&Path, &Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let temp = written(root, path, bytes, true)?;
    if let Err(e) = place(&temp, path) {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    sync_dir(path.parent().unwrap_or(root))
}

/// A change to a file under a folder, made durable together with others
/// ([`commit`]).
#[derive(Debug)]
pub(crate) enum Change {
    /// Write these bytes as the file, whole.
    Put(PathBuf, Vec<u8>),
    /// Remove the file (already gone is done).
    Delete(PathBuf),
}

impl Change {
    /// The file it changes.
    pub(crate) fn path(&self) -> &Path {
        match self {
            Change::Put(path, _) | Change::Delete(path) => path,
        }
    }

    /// What it does, for an error: `write PATH`, `remove PATH`.
    pub(crate) fn action(&self) -> String {
        match self {
            Change::Put(path, _) => format!("write {}", path.display()),
            Change::Delete(path) => format!("remove {}", path.display()),
        }
    }
}

/// Makes `changes` under `root` (no two to one file) durable together, a
/// group commit: each put is written to a temporary file, one `syncfs`
/// makes all of them durable, then each is renamed into place and each
/// delete removed, and each folder changed is synced once. A reader, a
/// crash or a power loss sees each file old or new, never a part, and a
/// change reported done is on disk. Each change's outcome, in order: one
/// that fails (its folder cannot be made, say) fails alone; the sync fails
/// every put it was for.
pub(crate) fn commit(root: &Path, changes: &[Change]) -> Vec<std::io::Result<()>> {
    let copy = |e: &std::io::Error| std::io::Error::new(e.kind(), e.to_string());
    // 1. Each put's bytes in a temporary file of its own.
    let mut temps: Vec<Option<PathBuf>> = Vec::with_capacity(changes.len());
    let mut outcomes: Vec<std::io::Result<()>> = Vec::with_capacity(changes.len());
    for change in changes {
        let (temp, outcome) = match change {
            Change::Put(path, bytes) => match written(root, path, bytes, false) {
                Ok(temp) => (Some(temp), Ok(())),
                Err(e) => (None, Err(e)),
            },
            Change::Delete(_) => (None, Ok(())),
        };
        temps.push(temp);
        outcomes.push(outcome);
    }
    // 2. One sync for all of them.
    if temps.iter().any(Option::is_some)
        && let Err(e) = sync_file_system(root)
    {
        for (temp, outcome) in temps.iter_mut().zip(&mut outcomes) {
            if let Some(temp) = temp.take() {
                let _ = std::fs::remove_file(&temp);
                *outcome = Err(copy(&e));
            }
        }
    }
    // 3. Into place.
    let mut folders: Vec<PathBuf> = Vec::new();
    for ((change, temp), outcome) in changes.iter().zip(&temps).zip(&mut outcomes) {
        if outcome.is_err() {
            continue;
        }
        let placed = match (change, temp) {
            (Change::Put(path, _), Some(temp)) => std::fs::rename(temp, path).inspect_err(|_| {
                let _ = std::fs::remove_file(temp);
            }),
            (Change::Delete(path), _) => match std::fs::remove_file(path) {
                Err(e)
                    if !matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                    ) =>
                {
                    Err(e)
                }
                _ => Ok(()),
            },
            (Change::Put(..), None) => Ok(()),
        };
        match placed {
            Ok(()) => {
                let folder = change.path().parent().unwrap_or(root).to_owned();
                if !folders.contains(&folder) {
                    folders.push(folder);
                }
            }
            Err(e) => *outcome = Err(e),
        }
    }
    // 4. Each folder changed synced once: the renames and removals on disk.
    for folder in folders {
        if let Err(e) = sync_dir(&folder) {
            for (change, outcome) in changes.iter().zip(&mut outcomes) {
                if outcome.is_ok() && change.path().parent().unwrap_or(root) == folder {
                    *outcome = Err(copy(&e));
                }
            }
        }
    }
    outcomes
}

/// `bytes` in a new temporary file in `root`'s temporary folder, synced to
/// disk if `sync` (a group commit syncs them all at once), with the
/// folders `path` needs made; a failed write leaves no file.
fn written(root: &Path, path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<PathBuf> {
    let temp_dir = root.join(TEMP_DIR);
    std::fs::create_dir_all(&temp_dir)?;
    std::fs::create_dir_all(path.parent().unwrap_or(root))?;
    let temp = temp_dir.join(unique_name());
    let written = std::fs::File::create(&temp).and_then(|mut file| {
        file.write_all(bytes)?;
        if sync {
            file.sync_all()?;
        }
        Ok(())
    });
    match written {
        Ok(()) => Ok(temp),
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            Err(e)
        }
    }
}

/// Makes everything written to the file system `root` is on durable, in
/// one call (`syncfs`).
fn sync_file_system(root: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let folder = std::fs::File::open(root)?;
    // SAFETY: the descriptor is open for the length of the call.
    match unsafe { libc::syncfs(folder.as_raw_fd()) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Renames `from` to `to` unless `to` exists (then `AlreadyExists`), in
/// one step (`renameat2` with `RENAME_NOREPLACE`).
pub(crate) fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let done = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    match done {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Makes the entries of `dir` (a rename into it, a removal) durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Removes what crashed writers left in `root`'s temporary folder. Recent
/// files are kept: another process may be writing them now.
pub(crate) fn sweep_stale_temp_files(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root.join(TEMP_DIR)) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > STALE_AFTER);
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Distinguishes temporary files of concurrent writers and processes.
fn unique_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_commit_places_every_change_and_fails_only_the_one_at_fault() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        std::fs::write(root.join("old"), "x").unwrap();
        // A file where a folder would have to be: that put cannot be made.
        std::fs::write(root.join("file"), "x").unwrap();
        let changes = [
            Change::Put(root.join("a/1"), b"one".to_vec()),
            Change::Put(root.join("file/2"), b"two".to_vec()),
            Change::Delete(root.join("old")),
            Change::Delete(root.join("never-was")),
            Change::Put(root.join("a/3"), b"three".to_vec()),
        ];
        let outcomes = commit(root, &changes);
        let failed: Vec<bool> = outcomes.iter().map(Result::is_err).collect();
        assert_eq!(failed, [false, true, false, false, false]);
        assert_eq!(std::fs::read(root.join("a/1")).unwrap(), b"one");
        assert_eq!(std::fs::read(root.join("a/3")).unwrap(), b"three");
        assert!(!root.join("old").exists());
        assert_eq!(
            std::fs::read_dir(root.join(TEMP_DIR)).unwrap().count(),
            0,
            "no temporary file is left"
        );
    }

    #[tokio::test]
    async fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a folder: the rename fails after the data is written.
        let target = dir.path().join("taken");
        std::fs::create_dir_all(target.join("inside")).unwrap();
        assert!(
            write_atomically(dir.path(), &target, &[7u8; 1 << 20])
                .await
                .is_err()
        );
        let left: Vec<_> = std::fs::read_dir(dir.path().join(TEMP_DIR)).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[tokio::test]
    async fn a_write_replaces_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a/b");
        write_atomically(dir.path(), &target, b"first, longer")
            .await
            .unwrap();
        write_atomically(dir.path(), &target, b"second").await.unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"second");
    }
}
