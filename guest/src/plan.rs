//! Turning a valid request into storage operations (SPEC.md 3).

use crate::request::{self, Invalid, Kind, Request};
use crate::widget::{Widget, object_key};
use serde_json::Value;

/// The kind of store the operations are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// S3 bucket or local folder: widgets at `widgets/{owner-slug}/{id}`.
    ObjectStore,
    /// DynamoDB table: widgets by `id`, other attributes flattened.
    Table,
}

/// One storage operation for the host to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Store `document` at `key`, replacing what is there.
    Put {
        /// Where.
        key: String,
        /// The JSON text.
        document: String,
    },
    /// Remove the document at this key.
    Delete(String),
}

/// What to do with a valid request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// What the request was.
    pub kind: Kind,
    /// The operations to carry out, in order; empty when nothing changes.
    pub operations: Vec<Operation>,
    /// Things the host should log as warnings (a missing widget, say).
    pub warnings: Vec<String>,
}

/// Read access to the destination.
pub trait Store {
    /// The document at `key`, `None` when there is none.
    fn get(&mut self, key: &str) -> Result<Option<String>, String>;
}

/// Validates a request and plans its operations. `source_key` names the
/// request in warnings.
pub fn plan(
    bytes: &[u8],
    source_key: &str,
    destination: Destination,
    store: &mut dyn Store,
) -> Result<Plan, Invalid> {
    let request = request::parse(bytes)?;
    let key = match destination {
        Destination::ObjectStore => object_key(&request.owner, &request.widget_id),
        Destination::Table => request.widget_id.clone(),
    };
    let mut plan = Plan {
        kind: request.kind,
        operations: Vec::new(),
        warnings: Vec::new(),
    };
    if request.kind == Kind::Create {
        let widget = created(&request);
        plan.operations.push(put(key, &widget, destination));
        return Ok(plan);
    }

    let stored = store
        .get(&key)
        .map_err(|e| Invalid(format!("cannot read widget at {key:?}: {e}")))?;
    let Some(text) = stored else {
        plan.warnings.push(format!(
            "{} request {} ({source_key}): widget {} not found at {key:?}; nothing changed",
            request.kind.name(),
            request.request_id,
            request.widget_id,
        ));
        return Ok(plan);
    };
    match request.kind {
        Kind::Create => unreachable!("handled above"),
        Kind::Delete => plan.operations.push(Operation::Delete(key)),
        Kind::Update => {
            let current = match destination {
                Destination::ObjectStore => Widget::from_document(&text),
                Destination::Table => Widget::from_item(&text),
            }
            .map_err(|e| Invalid(format!("cannot update widget at {key:?}: {e}")))?;
            let updated = updated(current.clone(), &request);
            // An update that changes nothing needs no write.
            if updated != current {
                plan.operations.push(put(key, &updated, destination));
            }
        }
    }
    Ok(plan)
}

/// The widget a create stores: values exactly as given, `""` included.
fn created(request: &Request) -> Widget {
    let mut widget = Widget::new(&request.widget_id, &request.owner);
    widget.label = request.label.clone();
    widget.description = request.description.clone();
    for (name, value) in &request.other_attributes {
        widget.set_attribute(name, Value::String(value.clone()));
    }
    widget
}

/// An update: absent or `null` leaves a field, `""` removes it, any other
/// string sets it. `id` and `owner` never change.
fn updated(mut widget: Widget, request: &Request) -> Widget {
    apply_field(&mut widget.label, &request.label);
    apply_field(&mut widget.description, &request.description);
    for (name, value) in &request.other_attributes {
        if value.is_empty() {
            widget.remove_attribute(name);
        } else {
            widget.set_attribute(name, Value::String(value.clone()));
        }
    }
    widget
}

fn apply_field(field: &mut Option<String>, change: &Option<String>) {
    match change.as_deref() {
        None => {}
        Some("") => *field = None,
        Some(value) => *field = Some(value.to_owned()),
    }
}

fn put(key: String, widget: &Widget, destination: Destination) -> Operation {
    let document = match destination {
        Destination::ObjectStore => widget.to_document(),
        Destination::Table => widget.to_item(),
    };
    Operation::Put { key, document }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// An in-memory store that applies operations, so tests can check end
    /// states over several requests.
    #[derive(Default)]
    struct Memory(BTreeMap<String, String>);

    impl Store for Memory {
        fn get(&mut self, key: &str) -> Result<Option<String>, String> {
            Ok(self.0.get(key).cloned())
        }
    }

    impl Memory {
        fn run(&mut self, destination: Destination, request: &str) -> Result<Plan, Invalid> {
            let plan = plan(request.as_bytes(), "k", destination, self)?;
            for op in &plan.operations {
                match op {
                    Operation::Put { key, document } => {
                        self.0.insert(key.clone(), document.clone());
                    }
                    Operation::Delete(key) => {
                        self.0.remove(key);
                    }
                }
            }
            Ok(plan)
        }

        fn json(&self, key: &str) -> Value {
            serde_json::from_str(&self.0[key]).unwrap()
        }
    }

    const OBJ: Destination = Destination::ObjectStore;
    const TABLE: Destination = Destination::Table;
    const KEY: &str = "widgets/mary-matthews/w1";

    fn create(extra: &str) -> String {
        format!(r#"{{"type":"create","requestId":"r1","widgetId":"w1","owner":"Mary Matthews"{extra}}}"#)
    }
    fn update(extra: &str) -> String {
        format!(r#"{{"type":"update","requestId":"r2","widgetId":"w1","owner":"Mary Matthews"{extra}}}"#)
    }
    const DELETE: &str = r#"{"type":"delete","requestId":"r3","widgetId":"w1","owner":"Mary Matthews"}"#;

    fn full_create() -> String {
        create(
            r#","label":"L","description":"D","otherAttributes":[{"name":"color","value":"red"},{"name":"size","value":"9"}]"#,
        )
    }

    /// Numbers beyond a float's precision, as other tools may store them,
    /// and how they are written back: the same digits; an exponent in
    /// serde_json's spelling (a lower-case `e` and a sign).
    const NUMBERS: [(&str, &str); 5] = [
        ("123456789012345678901234567890", "123456789012345678901234567890"),
        ("0.10000000000000000001", "0.10000000000000000001"),
        ("18446744073709551617", "18446744073709551617"),
        ("-0.0", "-0.0"),
        ("1E400", "1e+400"),
    ];

    #[test]
    fn numbers_the_handler_does_not_change_survive_byte_for_byte() {
        let stored = |fields: &str| format!(r#"{{"id":"w1","owner":"Mary Matthews","label":"x",{fields}}}"#);
        for (destination, key) in [(OBJ, KEY), (TABLE, "w1")] {
            let fields = match destination {
                // An attribute value in the object layout, a top-level
                // field in the table layout.
                OBJ => format!(
                    r#""otherAttributes":[{}]"#,
                    NUMBERS
                        .iter()
                        .enumerate()
                        .map(|(i, (n, _))| format!(r#"{{"name":"n{i}","value":{n}}}"#))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                TABLE => NUMBERS
                    .iter()
                    .enumerate()
                    .map(|(i, (n, _))| format!(r#""n{i}":{n}"#))
                    .collect::<Vec<_>>()
                    .join(","),
            };
            let mut store = Memory::default();
            store.0.insert(key.into(), stored(&fields));
            store.run(destination, &update(r#","label":"y""#)).unwrap();
            let document = &store.0[key];
            for (i, (_, written)) in NUMBERS.iter().enumerate() {
                let field = match destination {
                    OBJ => format!(r#""name":"n{i}","value":{written}}}"#),
                    TABLE => format!(r#""n{i}":{written}"#),
                };
                assert!(document.contains(&field), "{written} changed in {document}");
            }
            assert!(document.contains(r#""label":"y""#), "{document}");
        }
    }

    #[test]
    fn create_stores_the_s3_layout_at_the_owner_slug_key() {
        let mut store = Memory::default();
        let plan = store.run(OBJ, &full_create()).unwrap();
        assert_eq!(plan.kind, Kind::Create);
        assert_eq!(
            store.json(KEY),
            serde_json::json!({"id":"w1","owner":"Mary Matthews","label":"L","description":"D",
                "otherAttributes":[{"name":"color","value":"red"},{"name":"size","value":"9"}]})
        );
    }

    #[test]
    fn create_stores_a_flat_item_by_id_in_a_table() {
        let mut store = Memory::default();
        store.run(TABLE, &full_create()).unwrap();
        assert_eq!(
            store.json("w1"),
            serde_json::json!({"id":"w1","owner":"Mary Matthews","label":"L","description":"D",
                "color":"red","size":"9"})
        );
    }

    #[test]
    fn create_keeps_empty_strings_and_omits_absent_and_null_fields() {
        let mut store = Memory::default();
        store
            .run(
                OBJ,
                &create(r#","label":"","description":null,"otherAttributes":[{"name":"a","value":""}]"#),
            )
            .unwrap();
        assert_eq!(
            store.json(KEY),
            serde_json::json!({"id":"w1","owner":"Mary Matthews","label":"",
                "otherAttributes":[{"name":"a","value":""}]})
        );
        store.run(OBJ, &create("")).unwrap();
        assert_eq!(
            store.json(KEY),
            serde_json::json!({"id":"w1","owner":"Mary Matthews"})
        );
    }

    #[test]
    fn create_replaces_an_existing_widget() {
        let mut store = Memory::default();
        store.run(OBJ, &full_create()).unwrap();
        store.run(OBJ, &create(r#","label":"new""#)).unwrap();
        assert_eq!(
            store.json(KEY),
            serde_json::json!({"id":"w1","owner":"Mary Matthews","label":"new"})
        );
    }

    #[test]
    fn an_update_naming_an_attribute_twice_gives_the_same_result_applied_twice() {
        // Found by tests/fuzz.rs: removed then set, one by one, `color`
        // moved to the end each time.
        let twice = r#","otherAttributes":[{"name":"color","value":""},{"name":"color","value":"blue"}]"#;
        let mut store = Memory::default();
        store.run(OBJ, &full_create()).unwrap();
        store.run(OBJ, &update(twice)).unwrap();
        let once = store.0.clone();
        store.run(OBJ, &update(twice)).unwrap();
        assert_eq!(store.0, once);
        assert_eq!(
            store.json(KEY)["otherAttributes"],
            serde_json::json!([{"name":"color","value":"blue"},{"name":"size","value":"9"}])
        );
    }

    #[test]
    fn a_repeated_attribute_name_keeps_the_last_value() {
        let attrs = r#","otherAttributes":[{"name":"c","value":"1"},{"name":"d","value":"2"},{"name":"c","value":"3"}]"#;
        let mut store = Memory::default();
        store.run(OBJ, &create(attrs)).unwrap();
        assert_eq!(
            store.json(KEY)["otherAttributes"],
            serde_json::json!([{"name":"c","value":"3"},{"name":"d","value":"2"}])
        );
        store.run(TABLE, &create(attrs)).unwrap();
        assert_eq!(store.json("w1")["c"], "3");
    }

    #[test]
    fn update_sets_removes_and_leaves_fields() {
        for destination in [OBJ, TABLE] {
            let mut store = Memory::default();
            store.run(destination, &full_create()).unwrap();
            let plan = store
                .run(
                    destination,
                    &update(
                        r#","label":"","description":"D2","otherAttributes":[{"name":"color","value":""},{"name":"weight","value":"5"}]"#,
                    ),
                )
                .unwrap();
            assert_eq!(plan.kind, Kind::Update);
            assert!(plan.warnings.is_empty());
            let expected = match destination {
                OBJ => serde_json::json!({"id":"w1","owner":"Mary Matthews","description":"D2",
                    "otherAttributes":[{"name":"size","value":"9"},{"name":"weight","value":"5"}]}),
                TABLE => serde_json::json!({"id":"w1","owner":"Mary Matthews","description":"D2",
                    "size":"9","weight":"5"}),
            };
            let key = if destination == OBJ { KEY } else { "w1" };
            assert_eq!(store.json(key), expected, "{destination:?}");
        }
    }

    #[test]
    fn update_with_absent_or_null_fields_changes_nothing() {
        let mut store = Memory::default();
        store.run(OBJ, &full_create()).unwrap();
        let before = store.json(KEY);
        let plan = store.run(OBJ, &update(r#","label":null"#)).unwrap();
        assert_eq!(
            plan.operations,
            vec![],
            "an update that changes nothing writes nothing"
        );
        assert_eq!(store.json(KEY), before);
    }

    #[test]
    fn update_changes_an_existing_attribute_in_place() {
        let mut store = Memory::default();
        store.run(OBJ, &full_create()).unwrap();
        store
            .run(
                OBJ,
                &update(r#","otherAttributes":[{"name":"color","value":"blue"}]"#),
            )
            .unwrap();
        assert_eq!(
            store.json(KEY)["otherAttributes"],
            serde_json::json!([{"name":"color","value":"blue"},{"name":"size","value":"9"}])
        );
    }

    #[test]
    fn removing_the_last_attribute_drops_other_attributes() {
        let mut store = Memory::default();
        store
            .run(OBJ, &create(r#","otherAttributes":[{"name":"a","value":"1"}]"#))
            .unwrap();
        store
            .run(OBJ, &update(r#","otherAttributes":[{"name":"a","value":""}]"#))
            .unwrap();
        assert_eq!(
            store.json(KEY),
            serde_json::json!({"id":"w1","owner":"Mary Matthews"})
        );
    }

    #[test]
    fn update_never_changes_id_or_owner() {
        let mut store = Memory::default();
        store.run(TABLE, &full_create()).unwrap();
        let other_owner =
            r#"{"type":"update","requestId":"r","widgetId":"w1","owner":"John Jones","label":"X"}"#;
        store.run(TABLE, other_owner).unwrap();
        assert_eq!(store.json("w1")["owner"], "Mary Matthews");
        assert_eq!(store.json("w1")["label"], "X");
    }

    #[test]
    fn update_finds_an_s3_widget_by_the_requests_owner() {
        let mut store = Memory::default();
        store.run(OBJ, &full_create()).unwrap();
        let other_owner =
            r#"{"type":"update","requestId":"r","widgetId":"w1","owner":"John Jones","label":"X"}"#;
        let plan = store.run(OBJ, other_owner).unwrap();
        assert!(plan.operations.is_empty());
        assert!(plan.warnings[0].contains("widgets/john-jones/w1"));
        assert_eq!(store.json(KEY)["label"], "L");
    }

    #[test]
    fn update_or_delete_of_a_missing_widget_warns_and_changes_nothing() {
        for destination in [OBJ, TABLE] {
            for request in [update(r#","label":"x""#), DELETE.to_owned()] {
                let mut store = Memory::default();
                let plan = store.run(destination, &request).unwrap();
                assert!(plan.operations.is_empty());
                assert_eq!(plan.warnings.len(), 1);
                assert!(plan.warnings[0].contains("w1"), "{}", plan.warnings[0]);
                assert!(plan.warnings[0].contains("not found"), "{}", plan.warnings[0]);
                assert!(store.0.is_empty());
            }
        }
    }

    #[test]
    fn delete_removes_the_widget() {
        for destination in [OBJ, TABLE] {
            let mut store = Memory::default();
            store.run(destination, &full_create()).unwrap();
            let plan = store.run(destination, DELETE).unwrap();
            assert_eq!(plan.kind, Kind::Delete);
            assert!(plan.warnings.is_empty());
            assert!(store.0.is_empty(), "{destination:?}");
        }
    }

    #[test]
    fn applying_a_request_twice_gives_the_same_result() {
        for request in [
            full_create(),
            update(r#","label":"","otherAttributes":[{"name":"x","value":"1"}]"#),
        ] {
            let mut store = Memory::default();
            store.run(OBJ, &full_create()).unwrap();
            store.run(OBJ, &request).unwrap();
            let once = store.0.clone();
            store.run(OBJ, &request).unwrap();
            assert_eq!(store.0, once);
        }
    }

    #[test]
    fn an_unreadable_stored_widget_rejects_the_update() {
        let mut store = Memory::default();
        store.0.insert(KEY.into(), "garbage".into());
        let err = store.run(OBJ, &update(r#","label":"x""#)).unwrap_err();
        assert!(err.0.contains("not valid JSON"), "{err}");
    }

    #[test]
    fn invalid_requests_are_rejected_before_touching_the_store() {
        struct Unreachable;
        impl Store for Unreachable {
            fn get(&mut self, _: &str) -> Result<Option<String>, String> {
                panic!("an invalid request must not read the store")
            }
        }
        let err = plan(b"{}", "k", OBJ, &mut Unreachable).unwrap_err();
        assert_eq!(err.0, "missing required field `type`");
    }
}
