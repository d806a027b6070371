//! Local-file helpers shared by the folder source and sink.

use std::path::{Path, PathBuf};

/// The file for a `/`-separated key under `root`, refusing keys that would
/// leave it or that no file could stand for (empty segments, `.`, `..`).
pub fn key_path(root: &Path, key: &str) -> Result<PathBuf, String> {
    let mut path = root.to_path_buf();
    for segment in key.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." || segment.contains('\0') {
            return Err(format!("key {key:?} cannot be stored in a local folder"));
        }
        path.push(segment);
    }
    Ok(path)
}

/// Writes a file so that readers, and a crash, see either the old content or
/// the new, never a part: write a hidden temporary file beside it, then
/// rename it over the target.
pub async fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(parent).await?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = parent.join(format!(".{name}.{}.tmp", unique_suffix()));
    tokio::fs::write(&temp, bytes).await?;
    if let Err(e) = tokio::fs::rename(&temp, path).await {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(e);
    }
    Ok(())
}

/// Distinguishes temporary files of concurrent writers.
fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}
