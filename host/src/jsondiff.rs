//! Differences between two JSON documents, one line each, named by JSON
//! path (`.label`, `.otherAttributes[2]`): what `check` prints for a failing
//! case and `diff` for two handlers' plans.

use serde_json::Value;

/// How the two sides are called in the lines.
pub(crate) struct Sides {
    /// The first document (`expected`, `old`).
    pub(crate) left: &'static str,
    /// The second (`got`, `new`).
    pub(crate) right: &'static str,
    /// A field only the first has (`missing`).
    pub(crate) only_left: &'static str,
    /// A field only the second has (`not expected`).
    pub(crate) only_right: &'static str,
}

/// Pushes a line to `out` for each difference between `left` and `right`
/// below `path` (`.` names the whole document). Key order inside objects
/// does not matter, order inside arrays does.
pub(crate) fn differences(path: &str, left: &Value, right: &Value, sides: &Sides, out: &mut Vec<String>) {
    let here = if path.is_empty() { "." } else { path };
    match (left, right) {
        (Value::Object(left), Value::Object(right)) => {
            for (name, value) in left {
                let at = format!("{path}.{name}");
                match right.get(name) {
                    Some(other) => differences(&at, value, other, sides, out),
                    None => out.push(format!("{at}: {} ({} {value})", sides.only_left, sides.left)),
                }
            }
            for (name, value) in right {
                if !left.contains_key(name) {
                    out.push(format!(
                        "{path}.{name}: {} ({} {value})",
                        sides.only_right, sides.right
                    ));
                }
            }
        }
        (Value::Array(left), Value::Array(right)) => {
            for i in 0..left.len().max(right.len()) {
                let at = format!("{path}[{i}]");
                match (left.get(i), right.get(i)) {
                    (Some(value), Some(other)) => differences(&at, value, other, sides, out),
                    (Some(value), None) => {
                        out.push(format!("{at}: {} ({} {value})", sides.only_left, sides.left))
                    }
                    (None, Some(other)) => {
                        out.push(format!("{at}: {} ({} {other})", sides.only_right, sides.right))
                    }
                    (None, None) => {}
                }
            }
        }
        _ if left != right => out.push(format!("{here}: {} {left}, {} {right}", sides.left, sides.right)),
        _ => {}
    }
}

/// A document's text as JSON, or as a JSON string if it is not JSON.
pub(crate) fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}
