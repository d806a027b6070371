//! A DynamoDB table as the widget store: a document is an item, its
//! top-level fields the item's attributes, the key the partition key's
//! value. The partition key's name is read from the table, not assumed.
//! Reads and writes go out many requests' at once ([`batched`]).

mod batched;

use super::{Read, Sink};
use crate::aws::errors::storage_error;
use crate::batch::Batcher;
use crate::contract::Destination;
use crate::error::StorageError;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeyType, ScalarAttributeType};
use batched::{Item, Table, Write};
use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Widgets in a DynamoDB table.
pub(crate) struct DynamoDbSink {
    table: Arc<Table>,
    reads: Batcher<String, Result<Option<Item>, StorageError>>,
    writes: Batcher<Write, Result<(), StorageError>>,
}

impl DynamoDbSink {
    /// A store in `table`, which must exist with a string partition key and
    /// no sort key.
    pub(crate) async fn open(client: Client, table: &str) -> Result<DynamoDbSink, StorageError> {
        let described = match client.describe_table().table_name(table).send().await {
            Ok(described) => described,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                return Err(StorageError::fatal(
                    format!("use DynamoDB table {table:?}"),
                    "it does not exist",
                ));
            }
            Err(e) => return Err(storage_error(format!("describe DynamoDB table {table:?}"), e)),
        };
        let refuse = |why: String| Err(StorageError::fatal(format!("use DynamoDB table {table:?}"), why));
        let Some(description) = described.table else {
            return refuse("DescribeTable returned no table".into());
        };
        let schema = description.key_schema();
        if schema.iter().any(|k| k.key_type == KeyType::Range) {
            return refuse("it has a sort key; widgets need a table keyed by a partition key alone".into());
        }
        let Some(hash) = schema.iter().find(|k| k.key_type == KeyType::Hash) else {
            return refuse("it has no partition key".into());
        };
        let key_name = hash.attribute_name.clone();
        let key_type = description
            .attribute_definitions()
            .iter()
            .find(|d| d.attribute_name == key_name)
            .map(|d| d.attribute_type.clone());
        if key_type != Some(ScalarAttributeType::S) {
            return refuse(format!("its partition key {key_name:?} is not a string"));
        }
        let table = Arc::new(Table {
            client,
            name: table.to_owned(),
            key_name,
        });
        Ok(DynamoDbSink {
            reads: batched::reads(table.clone()),
            writes: batched::writes(table.clone()),
            table,
        })
    }
}

#[async_trait::async_trait]
impl Sink for DynamoDbSink {
    fn destination(&self) -> Destination {
        Destination::Table
    }

    fn describe(&self) -> String {
        format!("dynamodb:{}", self.table.name)
    }

    async fn put(&self, key: &str, document: &str) -> Result<(), StorageError> {
        let action = || format!("put {key:?} into DynamoDB table {}", self.table.name);
        let mut item = match serde_json::from_str(document) {
            Ok(Value::Object(fields)) => json_to_item(fields),
            _ => {
                return Err(StorageError::request(
                    action(),
                    "the document is not a JSON object",
                ));
            }
        };
        item.insert(self.table.key_name.clone(), AttributeValue::S(key.to_owned()));
        self.writes.call(Write::Put(key.to_owned(), item), action).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.writes
            .call(Write::Delete(key.to_owned()), || format!("delete {key:?}"))
            .await
    }
}

#[async_trait::async_trait]
impl Read for DynamoDbSink {
    async fn get(&self, key: &str) -> Result<Option<String>, StorageError> {
        let found = self.reads.call(key.to_owned(), || format!("get {key:?}")).await?;
        Ok(found.map(|item| item_to_json(&item).to_string()))
    }
}

/// A JSON object as an item: strings as S, numbers as N, booleans as BOOL,
/// null as NULL, arrays as L and objects as M.
pub fn json_to_item(fields: Map<String, Value>) -> HashMap<String, AttributeValue> {
    fields
        .into_iter()
        .map(|(name, value)| (name, json_to_attribute(value)))
        .collect()
}

fn json_to_attribute(value: Value) -> AttributeValue {
    match value {
        Value::String(s) => AttributeValue::S(s),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::Bool(b) => AttributeValue::Bool(b),
        Value::Null => AttributeValue::Null(true),
        Value::Array(items) => AttributeValue::L(items.into_iter().map(json_to_attribute).collect()),
        Value::Object(fields) => AttributeValue::M(json_to_item(fields)),
    }
}

/// An item as a JSON object, the inverse of [`json_to_item`]. Sets become
/// arrays and binary values base64 strings. Attributes come out sorted by
/// name: DynamoDB keeps no order.
pub fn item_to_json(item: &HashMap<String, AttributeValue>) -> Value {
    let mut names: Vec<&String> = item.keys().collect();
    names.sort();
    Value::Object(
        names
            .into_iter()
            .map(|n| (n.clone(), attribute_to_json(&item[n])))
            .collect(),
    )
}

fn attribute_to_json(value: &AttributeValue) -> Value {
    let number = |n: &str| match n.parse::<Number>() {
        Ok(number) => Value::Number(number),
        // Beyond what JSON numbers carry here: keep the digits.
        Err(_) => Value::String(n.to_owned()),
    };
    let base64 =
        |b: &aws_sdk_dynamodb::primitives::Blob| Value::String(aws_smithy_types::base64::encode(b.as_ref()));
    match value {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => number(n),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::L(items) => Value::Array(items.iter().map(attribute_to_json).collect()),
        AttributeValue::M(fields) => item_to_json(fields),
        AttributeValue::Ss(items) => Value::Array(items.iter().cloned().map(Value::String).collect()),
        AttributeValue::Ns(items) => Value::Array(items.iter().map(|n| number(n)).collect()),
        AttributeValue::B(blob) => base64(blob),
        AttributeValue::Bs(blobs) => Value::Array(blobs.iter().map(base64).collect()),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_and_items_map_both_ways() {
        let doc = json!({"id":"w","owner":"O","color":"red","n":3,"f":1.5,"ok":true,"none":null,
            "list":["a",1],"map":{"k":"v"},"empty":""});
        let Value::Object(fields) = doc.clone() else {
            unreachable!()
        };
        let item = json_to_item(fields);
        assert_eq!(item["color"], AttributeValue::S("red".into()));
        assert_eq!(item["n"], AttributeValue::N("3".into()));
        assert_eq!(item["ok"], AttributeValue::Bool(true));
        assert_eq!(item["none"], AttributeValue::Null(true));
        assert_eq!(item["empty"], AttributeValue::S(String::new()));
        assert_eq!(item_to_json(&item), doc);
    }

    #[test]
    fn sets_and_binaries_read_as_arrays_and_base64() {
        let item = HashMap::from([
            ("ss".to_owned(), AttributeValue::Ss(vec!["a".into()])),
            ("ns".to_owned(), AttributeValue::Ns(vec!["2".into()])),
            (
                "b".to_owned(),
                AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(b"hi".to_vec())),
            ),
        ]);
        assert_eq!(item_to_json(&item), json!({"b":"aGk=","ns":[2],"ss":["a"]}));
    }

    #[test]
    fn numbers_keep_their_digits_both_ways() {
        let text = r#"{"id":"w","big":123456789012345678901234567890,"fine":0.10000000000000000001,"u":18446744073709551617}"#;
        let Value::Object(fields) = serde_json::from_str(text).unwrap() else {
            unreachable!()
        };
        let item = json_to_item(fields);
        assert_eq!(
            item["big"],
            AttributeValue::N("123456789012345678901234567890".into())
        );
        assert_eq!(item["fine"], AttributeValue::N("0.10000000000000000001".into()));
        assert_eq!(item["u"], AttributeValue::N("18446744073709551617".into()));
        let back = item_to_json(&item).to_string();
        for digits in [
            "123456789012345678901234567890",
            "0.10000000000000000001",
            "18446744073709551617",
        ] {
            assert!(back.contains(digits), "{back}");
        }
    }
}
