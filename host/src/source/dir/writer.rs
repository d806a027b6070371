//! Writing new requests into a folder (`produce`, `demo`).

use crate::error::StorageError;
use crate::folder::{key_path, sweep_stale_temp_files, write_atomically};
use crate::retry::Retry;
use crate::source::{NewRequest, Writer, write_retried};
use std::path::PathBuf;

/// Writes new requests into a folder, a file each, named by its key: each
/// appears whole (written aside, then renamed), as a producer's should.
pub(crate) struct DirWriter {
    root: PathBuf,
    retry: Retry,
}

impl DirWriter {
    /// A writer into `root`, made if missing.
    pub(crate) fn open(root: impl Into<PathBuf>, retry: Retry) -> Result<DirWriter, StorageError> {
        let root = root.into();
        std::fs::create_dir_all(&root)
            .map_err(|e| StorageError::io(format!("create folder {}", root.display()), e))?;
        sweep_stale_temp_files(&root);
        Ok(DirWriter { root, retry })
    }
}

#[async_trait::async_trait]
impl Writer for DirWriter {
    fn describe(&self) -> String {
        format!("dir:{}", self.root.display())
    }

    async fn write(&mut self, request: NewRequest, _now: bool) -> Result<(), StorageError> {
        let action = || format!("write request {} into {}", request.key, self.root.display());
        let path = key_path(&self.root, &request.key).map_err(|why| StorageError::request(action(), why))?;
        write_retried(&self.retry, action, || async {
            write_atomically(&self.root, &path, request.body.as_bytes())
                .await
                .map_err(|e| StorageError::io(action(), e))
        })
        .await
    }
}
