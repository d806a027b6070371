//! Local-file helpers shared by the folder source and sink.

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

/// Writes a file so that readers, and a crash, see either the old content or
/// the new, never a part: write a temporary file in `root`'s temporary
/// folder, then rename it over the target (`path`, under `root`).
pub(crate) async fn write_atomically(root: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp_dir = root.join(TEMP_DIR);
    tokio::fs::create_dir_all(&temp_dir).await?;
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let temp = temp_dir.join(unique_name());
    tokio::fs::write(&temp, bytes).await?;
    if let Err(e) = tokio::fs::rename(&temp, path).await {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(e);
    }
    Ok(())
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
