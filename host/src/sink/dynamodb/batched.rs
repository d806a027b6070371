//! The table's reads and writes, many requests' at once: BatchGetItem (up
//! to 100 keys, strongly consistent) and BatchWriteItem (up to 25 puts and
//! deletes), through [`Batcher`]: what several requests ask for while a
//! call is under way goes in the next one. Per-widget order holds as
//! before: a request's write is stored before it is removed, and its
//! widget's next request starts only after that.
//!
//! What a batch does not settle is settled one key at a time: keys the
//! table left unprocessed (its throughput was exceeded) fail as throttled,
//! and their requests retry them with backoff; a batch the service refuses
//! for its data (an item over 400 KB makes DynamoDB refuse the whole batch)
//! is made again one call per key, so only the request at fault fails.

use crate::aws::errors::storage_error;
use crate::batch::{Batcher, per_item_outcomes};
use crate::error::{Class, StorageError};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, KeysAndAttributes, PutRequest, WriteRequest};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// An item, by attribute name.
pub(super) type Item = HashMap<String, AttributeValue>;

/// Keys per BatchGetItem call (DynamoDB's maximum).
const READ_BATCH: usize = 100;

/// Puts and deletes per BatchWriteItem call (DynamoDB's maximum).
const WRITE_BATCH: usize = 25;

/// The table, and how its items are keyed.
pub(super) struct Table {
    pub(super) client: Client,
    pub(super) name: String,
    /// The name of the table's partition key.
    pub(super) key_name: String,
}

/// One write.
pub(super) enum Write {
    /// Store the item (its key attribute set) under the key.
    Put(String, Item),
    Delete(String),
}

impl Write {
    fn key(&self) -> &str {
        match self {
            Write::Put(key, _) | Write::Delete(key) => key,
        }
    }
}

impl Table {
    fn key(&self, key: &str) -> Item {
        HashMap::from([(self.key_name.clone(), AttributeValue::S(key.to_owned()))])
    }

    /// The key an item or key map holds.
    fn key_of(&self, item: &Item) -> Option<String> {
        match item.get(&self.key_name) {
            Some(AttributeValue::S(key)) => Some(key.clone()),
            _ => None,
        }
    }

    /// One GetItem.
    async fn get_one(&self, key: &str) -> Result<Option<Item>, StorageError> {
        let found = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(self.key(key)))
            // An update must see the previous request's write.
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| storage_error(format!("get {key:?} from DynamoDB table {}", self.name), e))?;
        Ok(found.item)
    }

    /// One PutItem or DeleteItem.
    async fn write_one(&self, write: &Write) -> Result<(), StorageError> {
        match write {
            Write::Put(key, item) => {
                self.client
                    .put_item()
                    .table_name(&self.name)
                    .set_item(Some(item.clone()))
                    .send()
                    .await
                    .map_err(|e| {
                        storage_error(format!("put {key:?} into DynamoDB table {}", self.name), e)
                    })?;
            }
            Write::Delete(key) => {
                self.client
                    .delete_item()
                    .table_name(&self.name)
                    .set_key(Some(self.key(key)))
                    .send()
                    .await
                    .map_err(|e| {
                        storage_error(format!("delete {key:?} from DynamoDB table {}", self.name), e)
                    })?;
            }
        }
        Ok(())
    }

    /// The error of a key the table left unprocessed.
    fn unprocessed(&self, what: &str, key: &str) -> StorageError {
        let mut error = StorageError::new(
            format!("{what} {key:?} in DynamoDB table {}", self.name),
            Class::Transient,
            "left unprocessed: the table's throughput is exceeded",
        );
        error.throttling = true;
        error
    }

    /// One BatchGetItem for `keys`.
    async fn get_many(
        &self,
        keys: &[String],
    ) -> Result<Vec<Result<Option<Item>, StorageError>>, StorageError> {
        let request = KeysAndAttributes::builder()
            .set_keys(Some(keys.iter().map(|key| self.key(key)).collect()))
            .consistent_read(true)
            .build()
            .expect("keys are set");
        let answer = self
            .client
            .batch_get_item()
            .request_items(&self.name, request)
            .send()
            .await
            .map_err(|e| {
                storage_error(
                    format!("get {} keys from DynamoDB table {}", keys.len(), self.name),
                    e,
                )
            })?;
        let mut found: HashMap<String, Item> = answer
            .responses()
            .and_then(|tables| tables.get(&self.name))
            .into_iter()
            .flatten()
            .filter_map(|item| Some((self.key_of(item)?, item.clone())))
            .collect();
        let unprocessed: HashSet<String> = answer
            .unprocessed_keys()
            .and_then(|tables| tables.get(&self.name))
            .map(|left| left.keys().iter().filter_map(|key| self.key_of(key)).collect())
            .unwrap_or_default();
        Ok(keys
            .iter()
            .map(|key| match unprocessed.contains(key) {
                true => Err(self.unprocessed("get", key)),
                false => Ok(found.remove(key)),
            })
            .collect())
    }

    /// One BatchWriteItem for `writes`.
    async fn write_many(&self, writes: &[Write]) -> Result<Vec<Result<(), StorageError>>, StorageError> {
        let requests = writes
            .iter()
            .map(|write| match write {
                Write::Put(_, item) => WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .set_item(Some(item.clone()))
                            .build()
                            .expect("item is set"),
                    )
                    .build(),
                Write::Delete(key) => WriteRequest::builder()
                    .delete_request(
                        DeleteRequest::builder()
                            .set_key(Some(self.key(key)))
                            .build()
                            .expect("key is set"),
                    )
                    .build(),
            })
            .collect();
        let answer = self
            .client
            .batch_write_item()
            .request_items(&self.name, requests)
            .send()
            .await
            .map_err(|e| {
                storage_error(
                    format!("write {} items to DynamoDB table {}", writes.len(), self.name),
                    e,
                )
            })?;
        let unprocessed: HashSet<String> = answer
            .unprocessed_items()
            .and_then(|tables| tables.get(&self.name))
            .into_iter()
            .flatten()
            .filter_map(|left| match (left.put_request(), left.delete_request()) {
                (Some(put), _) => self.key_of(put.item()),
                (_, Some(delete)) => self.key_of(delete.key()),
                _ => None,
            })
            .collect();
        Ok(writes
            .iter()
            .map(|write| match unprocessed.contains(write.key()) {
                true => Err(self.unprocessed("write", write.key())),
                false => Ok(()),
            })
            .collect())
    }
}

/// Reads through BatchGetItem.
pub(super) fn reads(table: Arc<Table>) -> Batcher<String, Result<Option<Item>, StorageError>> {
    Batcher::start(READ_BATCH, String::clone, move |keys: Vec<String>| {
        let table = table.clone();
        async move {
            let batched = table.get_many(&keys).await;
            per_item_outcomes(batched, &keys, |key| table.get_one(key)).await
        }
    })
}

/// Writes through BatchWriteItem.
pub(super) fn writes(table: Arc<Table>) -> Batcher<Write, Result<(), StorageError>> {
    Batcher::start(
        WRITE_BATCH,
        |write: &Write| write.key().to_owned(),
        move |writes: Vec<Write>| {
            let table = table.clone();
            async move {
                let batched = table.write_many(&writes).await;
                per_item_outcomes(batched, &writes, |write| table.write_one(write)).await
            }
        },
    )
}
