//! An in-memory object store: for benchmarks, and for running a handler
//! without any I/O.

use super::{Read, Sink};
use crate::contract::{Destination, Operation};
use crate::error::StorageError;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Documents in memory, by key.
pub struct MemorySink {
    destination: Destination,
    documents: Mutex<BTreeMap<String, String>>,
}

impl MemorySink {
    /// An empty store that presents itself as `destination`.
    pub fn new(destination: Destination) -> MemorySink {
        MemorySink {
            destination,
            documents: Mutex::default(),
        }
    }

    /// Everything stored, by key.
    pub fn contents(&self) -> BTreeMap<String, String> {
        self.documents.lock().unwrap().clone()
    }

    /// Carries out `operations`, in order: what `check` checks a plan by.
    pub(crate) async fn apply(&self, operations: &[Operation]) -> Result<(), StorageError> {
        for operation in operations {
            match operation {
                Operation::Put { key, document } => self.put(key, document).await?,
                Operation::Delete(key) => self.delete(key).await?,
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Sink for MemorySink {
    fn destination(&self) -> Destination {
        self.destination
    }

    fn describe(&self) -> String {
        "memory".into()
    }

    async fn put(&self, key: &str, document: &str) -> Result<(), StorageError> {
        self.documents
            .lock()
            .unwrap()
            .insert(key.to_owned(), document.to_owned());
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.documents.lock().unwrap().remove(key);
        Ok(())
    }
}

#[async_trait::async_trait]
impl Read for MemorySink {
    async fn get(&self, key: &str) -> Result<Option<String>, StorageError> {
        Ok(self.documents.lock().unwrap().get(key).cloned())
    }
}
