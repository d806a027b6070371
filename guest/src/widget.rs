//! A widget and its two stored layouts (SPEC.md 2): the object-store
//! document (`widgets/{owner-slug}/{id}`) and the flattened table item.

use crate::request::RESERVED_ATTRIBUTE_NAMES;
// `shift_remove` everywhere: a plain `remove` would reorder the fields left.
use serde_json::{Map, Value};

/// A stored widget.
#[derive(Debug, Clone, PartialEq)]
pub struct Widget {
    /// The widget's id (the request's `widgetId`).
    pub id: String,
    /// The owner's name, as the create gave it.
    pub owner: String,
    /// `None` when the widget has no label.
    pub label: Option<String>,
    /// `None` when the widget has no description.
    pub description: Option<String>,
    /// Other attributes in first-seen order, names unique. Values are
    /// strings when this handler wrote them; a value of another JSON type
    /// found in the store is kept as it is.
    pub attributes: Vec<(String, Value)>,
    /// Top-level fields of a stored document that this handler does not
    /// know: kept so that an update never drops what someone else stored.
    pub extra: Map<String, Value>,
}

/// The owner's slug: lower-cased, every space replaced by `-`.
pub fn owner_slug(owner: &str) -> String {
    owner.to_lowercase().replace(' ', "-")
}

/// The object-store key of a widget.
pub fn object_key(owner: &str, widget_id: &str) -> String {
    format!("widgets/{}/{widget_id}", owner_slug(owner))
}

const OTHER_ATTRIBUTES: &str = "otherAttributes";

impl Widget {
    /// A widget with no optional fields.
    pub fn new(id: &str, owner: &str) -> Widget {
        Widget {
            id: id.to_owned(),
            owner: owner.to_owned(),
            label: None,
            description: None,
            attributes: Vec::new(),
            extra: Map::new(),
        }
    }

    /// Sets an other attribute: in place when the name exists (the last
    /// value wins), appended otherwise.
    pub fn set_attribute(&mut self, name: &str, value: Value) {
        match self.attributes.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value,
            None => self.attributes.push((name.to_owned(), value)),
        }
    }

    /// Removes an other attribute, if the widget has it.
    pub fn remove_attribute(&mut self, name: &str) {
        self.attributes.retain(|(n, _)| n != name);
    }

    /// The object-store document: `id`, `owner`, then `label`,
    /// `description` and `otherAttributes` when the widget has them.
    pub fn to_document(&self) -> String {
        let mut doc = self.own_fields();
        if !self.attributes.is_empty() {
            let pairs = self
                .attributes
                .iter()
                .map(|(name, value)| {
                    let mut pair = Map::new();
                    pair.insert("name".into(), Value::String(name.clone()));
                    pair.insert("value".into(), value.clone());
                    Value::Object(pair)
                })
                .collect();
            doc.insert(OTHER_ATTRIBUTES.into(), Value::Array(pairs));
        }
        extend_missing(&mut doc, &self.extra);
        Value::Object(doc).to_string()
    }

    /// The table item: the widget's own fields and every other attribute as
    /// a top-level attribute of its own.
    pub fn to_item(&self) -> String {
        let mut item = self.own_fields();
        for (name, value) in &self.attributes {
            item.insert(name.clone(), value.clone());
        }
        extend_missing(&mut item, &self.extra);
        Value::Object(item).to_string()
    }

    /// Reads an object-store document.
    pub fn from_document(text: &str) -> Result<Widget, String> {
        let mut fields = parse_object(text)?;
        let mut widget = Widget::take_own_fields(&mut fields)?;
        match fields.shift_remove(OTHER_ATTRIBUTES) {
            None | Some(Value::Null) => {}
            Some(Value::Array(pairs)) => {
                for pair in pairs {
                    match (pair.get("name"), pair.get("value")) {
                        (Some(Value::String(name)), Some(value)) => widget.set_attribute(name, value.clone()),
                        _ => {
                            return Err(format!(
                                "stored {OTHER_ATTRIBUTES} entry {pair} has no name and value"
                            ));
                        }
                    }
                }
            }
            Some(other) => return Err(format!("stored {OTHER_ATTRIBUTES} is not an array: {other}")),
        }
        widget.extra = fields;
        Ok(widget)
    }

    /// Reads a table item.
    pub fn from_item(text: &str) -> Result<Widget, String> {
        let mut fields = parse_object(text)?;
        let mut widget = Widget::take_own_fields(&mut fields)?;
        widget.attributes = fields.into_iter().collect();
        Ok(widget)
    }

    fn own_fields(&self) -> Map<String, Value> {
        let mut fields = Map::new();
        fields.insert("id".into(), Value::String(self.id.clone()));
        fields.insert("owner".into(), Value::String(self.owner.clone()));
        if let Some(label) = &self.label {
            fields.insert("label".into(), Value::String(label.clone()));
        }
        if let Some(description) = &self.description {
            fields.insert("description".into(), Value::String(description.clone()));
        }
        fields
    }

    fn take_own_fields(fields: &mut Map<String, Value>) -> Result<Widget, String> {
        let mut take = |name: &str| match fields.shift_remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!("stored `{name}` is not a string: {other}")),
        };
        let id = take("id")?.ok_or("stored widget has no `id`")?;
        let owner = take("owner")?.ok_or("stored widget has no `owner`")?;
        let label = take("label")?;
        let description = take("description")?;
        debug_assert!(RESERVED_ATTRIBUTE_NAMES.iter().all(|n| !fields.contains_key(*n)));
        Ok(Widget {
            label,
            description,
            ..Widget::new(&id, &owner)
        })
    }
}

fn parse_object(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str(text) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(other) => Err(format!("stored widget is not a JSON object: {other}")),
        Err(e) => Err(format!("stored widget is not valid JSON: {e}")),
    }
}

fn extend_missing(fields: &mut Map<String, Value>, extra: &Map<String, Value>) {
    for (name, value) in extra {
        fields.entry(name.clone()).or_insert_with(|| value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Widget {
        let mut w = Widget::new("w1", "Mary Matthews");
        w.label = Some("L".into());
        w.set_attribute("color", json!("red"));
        w.set_attribute("size", json!("9"));
        w
    }

    #[test]
    fn slug_lower_cases_and_replaces_every_space() {
        assert_eq!(owner_slug("Mary Matthews"), "mary-matthews");
        assert_eq!(owner_slug("Henry  Hops "), "henry--hops-");
        assert_eq!(object_key("Sue Smith", "abc"), "widgets/sue-smith/abc");
    }

    #[test]
    fn document_has_the_spec_layout_and_field_order() {
        assert_eq!(
            sample().to_document(),
            r#"{"id":"w1","owner":"Mary Matthews","label":"L","otherAttributes":[{"name":"color","value":"red"},{"name":"size","value":"9"}]}"#
        );
        assert_eq!(Widget::new("w", "O").to_document(), r#"{"id":"w","owner":"O"}"#);
    }

    #[test]
    fn item_flattens_other_attributes() {
        assert_eq!(
            sample().to_item(),
            r#"{"id":"w1","owner":"Mary Matthews","label":"L","color":"red","size":"9"}"#
        );
    }

    #[test]
    fn setting_an_attribute_twice_keeps_its_place_and_the_last_value() {
        let mut w = sample();
        w.set_attribute("color", json!("blue"));
        assert_eq!(
            w.attributes,
            vec![("color".into(), json!("blue")), ("size".into(), json!("9"))]
        );
        w.remove_attribute("color");
        assert_eq!(w.attributes, vec![("size".into(), json!("9"))]);
    }

    #[test]
    fn both_layouts_read_back_what_they_wrote() {
        let w = sample();
        assert_eq!(Widget::from_document(&w.to_document()).unwrap(), w);
        assert_eq!(Widget::from_item(&w.to_item()).unwrap(), w);
    }

    #[test]
    fn unknown_stored_fields_survive_a_round_trip() {
        let doc =
            r#"{"id":"w","owner":"O","createdBy":"someone","otherAttributes":[{"name":"n","value":3}]}"#;
        let w = Widget::from_document(doc).unwrap();
        assert_eq!(w.attributes, vec![("n".into(), json!(3))]);
        assert_eq!(
            w.to_document(),
            r#"{"id":"w","owner":"O","otherAttributes":[{"name":"n","value":3}],"createdBy":"someone"}"#
        );
    }

    #[test]
    fn unreadable_stored_widgets_are_errors() {
        assert!(
            Widget::from_document("nope")
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(
            Widget::from_document("[]")
                .unwrap_err()
                .contains("not a JSON object")
        );
        assert!(
            Widget::from_document(r#"{"owner":"O"}"#)
                .unwrap_err()
                .contains("`id`")
        );
        assert!(
            Widget::from_item(r#"{"id":"w","owner":1}"#)
                .unwrap_err()
                .contains("`owner`")
        );
        assert!(
            Widget::from_document(r#"{"id":"w","owner":"O","otherAttributes":{}}"#)
                .unwrap_err()
                .contains("not an array")
        );
    }
}
