//! A store that keeps what each read answered: the candidate in shadow
//! (`pipeline/shadow.rs`) reads what the live handler read, and a case made
//! from a dead letter (`dead_letter_cases.rs`) holds the documents its
//! handler read.

use super::Read;
use crate::error::StorageError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The store as a handler read it: every answer kept (for the candidate,
/// or for a case made from a dead letter). It reads, and nothing else.
pub(crate) struct Recorded {
    inner: Arc<dyn Read>,
    reads: Mutex<HashMap<String, Option<String>>>,
}

impl Recorded {
    /// Reads `inner`, keeping what it answers.
    pub(crate) fn new(inner: Arc<dyn Read>) -> Recorded {
        Recorded {
            inner,
            reads: Mutex::default(),
        }
    }

    /// What was read so far, by key (`None`: not found).
    pub(crate) fn reads(&self) -> HashMap<String, Option<String>> {
        self.reads.lock().unwrap().clone()
    }

    /// What the read of `key` answered, if it was read.
    pub(crate) fn read(&self, key: &str) -> Option<Option<String>> {
        self.reads.lock().unwrap().get(key).cloned()
    }

    /// The store it reads.
    pub(crate) fn inner(&self) -> &Arc<dyn Read> {
        &self.inner
    }
}

#[async_trait::async_trait]
impl Read for Recorded {
    async fn get(&self, key: &str) -> Result<Option<String>, StorageError> {
        let read = self.inner.get(key).await?;
        self.reads.lock().unwrap().insert(key.to_owned(), read.clone());
        Ok(read)
    }
}
