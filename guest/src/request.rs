//! Parsing and validating one widget request (SPEC.md 1).
//!
//! The request is read as a generic JSON value and every field is checked
//! explicitly, so that a rejection names the field and the rule it broke.
//! The JSON is read strictly: an object that names a field twice is
//! refused, because readers disagree on which copy counts, and the ordering
//! key and the request itself must be read the same way.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Store a new widget, replacing any at the same place.
    Create,
    /// Change some fields of an existing widget.
    Update,
    /// Remove an existing widget.
    Delete,
}

impl Kind {
    /// The short name the host counts requests by.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Create => "create",
            Kind::Update => "update",
            Kind::Delete => "delete",
        }
    }

    /// Both spellings of `type`: the short one and the one a published copy
    /// of the schema uses.
    fn parse(text: &str) -> Option<Kind> {
        match text {
            "create" | "WidgetCreateRequest" => Some(Kind::Create),
            "update" | "WidgetUpdateRequest" => Some(Kind::Update),
            "delete" | "WidgetDeleteRequest" => Some(Kind::Delete),
            _ => None,
        }
    }
}

/// A valid widget request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// What the request asks for.
    pub kind: Kind,
    /// The request's own id (a UUID in practice).
    pub request_id: String,
    /// The widget's id: non-empty, without `/`.
    pub widget_id: String,
    /// Letters and spaces only.
    pub owner: String,
    /// `None` when absent or `null`.
    pub label: Option<String>,
    /// `None` when absent or `null`.
    pub description: Option<String>,
    /// In request order; a name may repeat (the last value wins when applied).
    pub other_attributes: Vec<(String, String)>,
}

/// Why a request is invalid. The text is what the dead-letter reason says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Names an other attribute may not take: flattened into a table item they
/// would overwrite the widget's own fields.
pub const RESERVED_ATTRIBUTE_NAMES: [&str; 4] = ["id", "owner", "label", "description"];

macro_rules! invalid {
    ($($arg:tt)*) => { Invalid(format!($($arg)*)) };
}

/// Parses and validates a request's raw bytes.
pub fn parse(bytes: &[u8]) -> Result<Request, Invalid> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid!("request is empty"));
    }
    let value = strict_json(bytes).map_err(|e| invalid!("request is not valid JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err(invalid!(
            "request must be a JSON object, not {}",
            json_type(&value)
        ));
    };

    let kind_text = required_string(&fields, "type")?;
    let kind = Kind::parse(kind_text).ok_or_else(|| {
        invalid!(
            "field `type` must be create, update or delete \
             (or WidgetCreateRequest, WidgetUpdateRequest, WidgetDeleteRequest), not {kind_text:?}"
        )
    })?;
    let request_id = required_string(&fields, "requestId")?.to_owned();

    let widget_id = required_string(&fields, "widgetId")?;
    if widget_id.is_empty() {
        return Err(invalid!("field `widgetId` must not be empty"));
    }
    if widget_id.contains('/') {
        return Err(invalid!(
            "field `widgetId` must not contain '/', got {widget_id:?}"
        ));
    }

    let owner = required_string(&fields, "owner")?;
    if !is_valid_owner(owner) {
        return Err(invalid!(
            "field `owner` must be letters and spaces only (^[A-Za-z ]+$), got {owner:?}"
        ));
    }

    Ok(Request {
        kind,
        request_id,
        widget_id: widget_id.to_owned(),
        owner: owner.to_owned(),
        label: optional_string(&fields, "label")?,
        description: optional_string(&fields, "description")?,
        other_attributes: other_attributes(&fields)?,
    })
}

/// The widget a request concerns: its `widgetId`, read by the same parser
/// as [`parse`], even when the rest of the request is invalid (requests
/// about one widget must stay in order even when one of them is invalid).
///
/// A request with no string `widgetId` in a JSON object is one [`parse`]
/// rejects: it will touch nothing, so it needs no order with anything. It
/// still gets a key, of its own bytes ([`UNREADABLE`] and a hash): a request
/// without one would run alone, after everything in flight, and wait for
/// ever behind a widget whose store keeps failing.
pub fn ordering_key(bytes: &[u8]) -> Option<String> {
    let widget = match strict_json(bytes) {
        Ok(Value::Object(mut fields)) => match fields.swap_remove("widgetId") {
            Some(Value::String(id)) => Some(id),
            _ => None,
        },
        _ => None,
    };
    Some(widget.unwrap_or_else(|| format!("{UNREADABLE}{:016x}", fnv1a(bytes))))
}

/// How the ordering key of a request without a widget id begins.
pub const UNREADABLE: &str = "!no-widget-id:";

/// FNV-1a, 64 bits: a cheap, stable hash that spreads unreadable requests
/// over keys of their own.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// JSON text as a value, refusing an object that names a field twice.
fn strict_json(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue::deserialize(&mut reader)?;
    reader.end()?;
    Ok(value.0)
}

/// A JSON value whose objects name each field once.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

/// The key serde_json's `arbitrary_precision` passes a number's text under.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            // How serde_json hands over a number kept as written
            // (`arbitrary_precision`): its text under a reserved key.
            if fields.is_empty() && name == NUMBER_TOKEN {
                let text: String = map.next_value()?;
                return text
                    .parse::<Number>()
                    .map(Value::Number)
                    .map_err(de::Error::custom);
            }
            if fields.contains_key(&name) {
                return Err(de::Error::custom(format_args!(
                    "field `{name}` appears more than once"
                )));
            }
            let StrictValue(value) = map.next_value()?;
            fields.insert(name, value);
        }
        Ok(Value::Object(fields))
    }
}

/// `^[A-Za-z ]+$`, anchored (the published schema forgot the anchors).
fn is_valid_owner(owner: &str) -> bool {
    !owner.is_empty() && owner.chars().all(|c| c.is_ascii_alphabetic() || c == ' ')
}

fn required_string<'a>(fields: &'a Map<String, Value>, name: &str) -> Result<&'a str, Invalid> {
    match fields.get(name) {
        None => Err(invalid!("missing required field `{name}`")),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(invalid!(
            "field `{name}` must be a string, not {}",
            json_type(other)
        )),
    }
}

fn optional_string(fields: &Map<String, Value>, name: &str) -> Result<Option<String>, Invalid> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid!(
            "field `{name}` must be a string or null, not {}",
            json_type(other)
        )),
    }
}

fn other_attributes(fields: &Map<String, Value>) -> Result<Vec<(String, String)>, Invalid> {
    let items = match fields.get("otherAttributes") {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(invalid!(
                "field `otherAttributes` must be an array, not {}",
                json_type(other)
            ));
        }
    };
    // A name given twice: the last value wins (SPEC.md 2), in the place
    // the name first took. Applying the pairs one by one instead would let
    // an update that removes then sets a name move it to the end, and a
    // second application move it again: not the same result twice.
    let mut attributes: Vec<(String, String)> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let (name, value) = other_attribute(i, item)?;
        match attributes.iter_mut().find(|(n, _)| *n == name) {
            Some((_, earlier)) => *earlier = value,
            None => attributes.push((name, value)),
        }
    }
    Ok(attributes)
}

fn other_attribute(index: usize, item: &Value) -> Result<(String, String), Invalid> {
    let Value::Object(pair) = item else {
        return Err(invalid!(
            "otherAttributes[{index}] must be an object with `name` and `value`, not {}",
            json_type(item)
        ));
    };
    let field = |name: &str| match pair.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        None => Err(invalid!(
            "otherAttributes[{index}] is missing required field `{name}`"
        )),
        Some(other) => Err(invalid!(
            "otherAttributes[{index}].{name} must be a string, not {}",
            json_type(other)
        )),
    };
    let name = field("name")?;
    let value = field("value")?;
    if name.is_empty() {
        return Err(invalid!("otherAttributes[{index}].name must not be empty"));
    }
    if RESERVED_ATTRIBUTE_NAMES.contains(&name.as_str()) {
        return Err(invalid!(
            "otherAttributes[{index}].name {name:?} is reserved: it would overwrite the widget's own field"
        ));
    }
    Ok((name, value))
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATE: &str = r#"{"type":"create","requestId":"r1","widgetId":"w1","owner":"Mary Matthews",
        "label":"L","description":"D","otherAttributes":[{"name":"color","value":"red"},{"name":"size","value":"9"}]}"#;

    fn with(field: &str, value: &str) -> String {
        let mut v: Value = serde_json::from_str(CREATE).unwrap();
        v[field] = serde_json::from_str(value).unwrap();
        v.to_string()
    }

    fn without(field: &str) -> String {
        let mut v: Value = serde_json::from_str(CREATE).unwrap();
        v.as_object_mut().unwrap().remove(field);
        v.to_string()
    }

    fn reason(json: &str) -> String {
        parse(json.as_bytes()).unwrap_err().0
    }

    #[test]
    fn parses_a_full_create() {
        let r = parse(CREATE.as_bytes()).unwrap();
        assert_eq!(r.kind, Kind::Create);
        assert_eq!(r.request_id, "r1");
        assert_eq!(r.widget_id, "w1");
        assert_eq!(r.owner, "Mary Matthews");
        assert_eq!(r.label.as_deref(), Some("L"));
        assert_eq!(r.description.as_deref(), Some("D"));
        assert_eq!(
            r.other_attributes,
            vec![("color".into(), "red".into()), ("size".into(), "9".into())]
        );
    }

    #[test]
    fn accepts_both_spellings_of_type() {
        for (text, kind) in [
            ("create", Kind::Create),
            ("update", Kind::Update),
            ("delete", Kind::Delete),
            ("WidgetCreateRequest", Kind::Create),
            ("WidgetUpdateRequest", Kind::Update),
            ("WidgetDeleteRequest", Kind::Delete),
        ] {
            let r = parse(with("type", &format!("{text:?}")).as_bytes()).unwrap();
            assert_eq!(r.kind, kind, "{text}");
        }
    }

    #[test]
    fn rejects_other_types() {
        for text in [r#""bad""#, r#""Create""#, r#""""#, r#""WidgetCreateRequestX""#] {
            assert!(reason(&with("type", text)).contains("`type`"), "{text}");
        }
        assert!(reason(&with("type", "1")).contains("must be a string"));
    }

    #[test]
    fn requires_type_request_id_widget_id_and_owner() {
        for field in ["type", "requestId", "widgetId", "owner"] {
            assert_eq!(
                reason(&without(field)),
                format!("missing required field `{field}`")
            );
            assert!(reason(&with(field, "null")).contains("must be a string"));
            assert!(reason(&with(field, "5")).contains("must be a string"));
        }
    }

    #[test]
    fn widget_id_must_be_non_empty_without_slash() {
        assert!(reason(&with("widgetId", r#""""#)).contains("must not be empty"));
        assert!(reason(&with("widgetId", r#""a/b""#)).contains("'/'"));
    }

    #[test]
    fn owner_must_match_the_anchored_pattern() {
        for ok in ["Mary Matthews", "x", " ", "ABC def"] {
            assert!(
                parse(with("owner", &format!("{ok:?}")).as_bytes()).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "",
            "Mary3",
            "Mary-Matthews",
            "Mary\nMatthews",
            "Zoë",
            "Mary Matthews!",
        ] {
            assert!(
                reason(&with("owner", &format!("{bad:?}"))).contains("`owner`"),
                "{bad}"
            );
        }
    }

    #[test]
    fn label_and_description_may_be_absent_null_or_string() {
        for field in ["label", "description"] {
            assert!(parse(without(field).as_bytes()).is_ok());
            let r = parse(with(field, "null").as_bytes()).unwrap();
            assert_eq!(if field == "label" { r.label } else { r.description }, None);
            let r = parse(with(field, r#""""#).as_bytes()).unwrap();
            assert_eq!(
                if field == "label" { r.label } else { r.description }.as_deref(),
                Some("")
            );
            assert!(reason(&with(field, "3")).contains(&format!("`{field}`")));
            assert!(reason(&with(field, "[]")).contains("string or null"));
        }
    }

    #[test]
    fn other_attributes_must_be_an_array_of_name_value_strings() {
        assert!(parse(without("otherAttributes").as_bytes()).is_ok());
        assert!(parse(with("otherAttributes", "[]").as_bytes()).is_ok());
        assert!(reason(&with("otherAttributes", "null")).contains("must be an array"));
        assert!(reason(&with("otherAttributes", "{}")).contains("must be an array"));
        assert!(reason(&with("otherAttributes", "[1]")).contains("otherAttributes[0]"));
        assert!(
            reason(&with("otherAttributes", r#"[{"name":"a"}]"#)).contains("missing required field `value`")
        );
        assert!(
            reason(&with("otherAttributes", r#"[{"value":"a"}]"#)).contains("missing required field `name`")
        );
        assert!(
            reason(&with("otherAttributes", r#"[{"name":"a","value":1}]"#))
                .contains("otherAttributes[0].value must be a string")
        );
    }

    #[test]
    fn every_other_attribute_is_checked_not_only_the_first() {
        let bad_second = r#"[{"name":"a","value":"1"},{"name":"b","value":2}]"#;
        assert!(reason(&with("otherAttributes", bad_second)).contains("otherAttributes[1].value"));
        let bad_third = r#"[{"name":"a","value":"1"},{"name":"b","value":"2"},{"name":""}]"#;
        assert!(reason(&with("otherAttributes", bad_third)).contains("otherAttributes[2]"));
    }

    #[test]
    fn rejects_empty_and_reserved_attribute_names() {
        assert!(
            reason(&with("otherAttributes", r#"[{"name":"","value":"x"}]"#)).contains("must not be empty")
        );
        for name in RESERVED_ATTRIBUTE_NAMES {
            let attrs = format!(r#"[{{"name":"ok","value":"1"}},{{"name":"{name}","value":"x"}}]"#);
            assert!(
                reason(&with("otherAttributes", &attrs)).contains("reserved"),
                "{name}"
            );
        }
    }

    #[test]
    fn empty_attribute_values_and_extra_fields_are_allowed() {
        let r = parse(
            with(
                "otherAttributes",
                r#"[{"name":"a","value":"","extra":1},{"name":"b","value":"x"},{"name":"a","value":"2"}]"#,
            )
            .as_bytes(),
        )
        .unwrap();
        // A name given twice: the last value, in the first place.
        assert_eq!(
            r.other_attributes,
            vec![("a".into(), "2".into()), ("b".into(), "x".into())]
        );
        assert!(parse(with("somethingElse", "[1,2]").as_bytes()).is_ok());
    }

    #[test]
    fn rejects_what_is_not_a_json_object() {
        assert_eq!(reason(""), "request is empty");
        assert_eq!(reason(" \n"), "request is empty");
        assert!(reason("{").starts_with("request is not valid JSON"));
        assert!(reason("[]").contains("must be a JSON object, not an array"));
        assert!(reason("\"create\"").contains("not a string"));
        assert!(reason("null").contains("not null"));
        assert!(
            parse(&[0xff, 0xfe])
                .unwrap_err()
                .0
                .starts_with("request is not valid JSON")
        );
    }

    #[test]
    fn rejects_the_empty_object() {
        assert_eq!(reason("{}"), "missing required field `type`");
    }

    #[test]
    fn ordering_key_reads_the_widget_id_even_of_invalid_requests() {
        assert_eq!(ordering_key(CREATE.as_bytes()).as_deref(), Some("w1"));
        assert_eq!(
            ordering_key(br#"{"type":"bad","widgetId":"w2"}"#).as_deref(),
            Some("w2")
        );
    }

    #[test]
    fn a_request_without_a_widget_id_gets_a_key_of_its_own() {
        let unreadable: [&[u8]; 5] = [br#"{"widgetId":3}"#, b"{}", b"not json", b"[]", &[0xff, 0xfe]];
        let keys: Vec<String> = unreadable.iter().map(|r| ordering_key(r).unwrap()).collect();
        for (request, key) in unreadable.iter().zip(&keys) {
            assert!(key.starts_with(UNREADABLE), "{key}");
            assert!(
                parse(request).is_err(),
                "a request keyed as unreadable is rejected"
            );
            assert_eq!(
                ordering_key(request).as_ref(),
                Some(key),
                "the same bytes, the same key"
            );
        }
        let distinct: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len(), "different requests, different keys");
    }

    #[test]
    fn a_field_named_twice_is_refused_and_gives_no_widget_as_ordering_key() {
        let twice =
            br#"{"type":"delete","requestId":"r","widgetId":"other","widgetId":"w7","owner":"Sue Smith"}"#;
        assert!(ordering_key(twice).unwrap().starts_with(UNREADABLE));
        let reason = parse(twice).unwrap_err().0;
        assert!(
            reason.contains("field `widgetId` appears more than once"),
            "{reason}"
        );
        let nested = br#"{"type":"create","requestId":"r","widgetId":"w","owner":"O",
            "otherAttributes":[{"name":"a","name":"b","value":"v"}]}"#;
        assert!(
            parse(nested)
                .unwrap_err()
                .0
                .contains("field `name` appears more than once")
        );
        // Numbers, nulls and nesting read as before.
        let fine = br#"{"type":"create","requestId":"r","widgetId":"w","owner":"O","label":null,
            "otherAttributes":[{"name":"n","value":"1"}],"extra":[1,-2,3.5,true,{"k":null}]}"#;
        assert!(parse(fine).is_ok());
        assert_eq!(ordering_key(fine).as_deref(), Some("w"));
    }
}
