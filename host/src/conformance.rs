//! The conformance suite: cases as data (`tests/conformance/*.json`), run
//! against any handler in an in-memory store, with no AWS and no host I/O.
//!
//! A case file is `{"about": "...", "cases": [CASE, ...]}`; a case is
//!
//! ```json
//! {"name": "update of a missing widget warns (table)",
//!  "destination": "object-store" | "table",
//!  "store": {"KEY": DOCUMENT, ...},            // before; a string is stored as is
//!  "request": {...} | "request_text": "..." | "request_base64": "...",
//!  "expect": {"store": {"KEY": DOCUMENT, ...}} // after the operations
//!          | {"rejected": "TEXT"},             // a rejection whose reason mentions TEXT
//!  "warns": true | false,                      // optional: whether it logs a warning
//!  "kind": "create",                           // optional: the plan's kind
//!  "ordering_key": "w1" | true | null}         // optional: what `ordering-key` gives (true: some key)
//! ```

use crate::contract::{Context, Destination, Operation};
use crate::handler::Handler;
use crate::jsondiff::{self, Sides};
use crate::sink::Sink;
use crate::sink::memory::MemorySink;
use anyhow::Context as _;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

/// The built-in suite: every rule of SPEC.md 1-3, for both destinations.
const BUILTIN: [(&str, &str); 5] = [
    ("create.json", include_str!("../../tests/conformance/create.json")),
    ("update.json", include_str!("../../tests/conformance/update.json")),
    ("delete.json", include_str!("../../tests/conformance/delete.json")),
    (
        "invalid.json",
        include_str!("../../tests/conformance/invalid.json"),
    ),
    ("keys.json", include_str!("../../tests/conformance/keys.json")),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[allow(dead_code)]
    about: Option<String>,
    cases: Vec<Case>,
}

/// One conformance case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Case {
    /// What the case shows; printed with its result.
    pub(crate) name: String,
    /// The kind of store the handler plans for.
    pub(crate) destination: DestinationName,
    #[serde(default)]
    /// The store before the request, by key.
    pub(crate) store: BTreeMap<String, Value>,
    /// The request as a JSON value.
    pub(crate) request: Option<Value>,
    /// The request as raw text (broken JSON, say).
    pub(crate) request_text: Option<String>,
    /// The request as base64, for bytes that are not text.
    pub(crate) request_base64: Option<String>,
    /// What the handler must do.
    pub(crate) expect: Expect,
    /// Whether the handler must (or must not) log a warning.
    pub(crate) warns: Option<bool>,
    /// The kind the plan must have.
    pub(crate) kind: Option<String>,
    /// What `ordering-key` must give: a string, or `null` for none.
    pub(crate) ordering_key: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
/// The `destination` of a case.
pub(crate) enum DestinationName {
    /// An S3 bucket or a local folder.
    ObjectStore,
    /// A DynamoDB table.
    Table,
}

impl From<DestinationName> for Destination {
    fn from(name: DestinationName) -> Destination {
        match name {
            DestinationName::ObjectStore => Destination::ObjectStore,
            DestinationName::Table => Destination::Table,
        }
    }
}

/// What a case expects.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum Expect {
    /// The store after the handler's operations are carried out.
    Store(BTreeMap<String, Value>),
    /// A rejection whose reason contains this text (any case; `""`: any reason).
    Rejected(String),
}

/// A case and the file it came from.
pub(crate) struct Loaded {
    /// The case file's name.
    pub(crate) file: String,
    /// The case.
    pub(crate) case: Case,
}

/// The built-in suite.
pub(crate) fn builtin() -> Vec<Loaded> {
    BUILTIN
        .iter()
        .flat_map(|(file, text)| parse(file, text).expect("the built-in suite parses"))
        .collect()
}

/// Every `*.json` case file in `dir`, in name order.
pub(crate) fn load_dir(dir: &Path) -> anyhow::Result<Vec<Loaded>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read case folder {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut loaded = Vec::new();
    for path in files {
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        loaded.extend(parse(&path.display().to_string(), &text)?);
    }
    Ok(loaded)
}

fn parse(file: &str, text: &str) -> anyhow::Result<Vec<Loaded>> {
    let parsed: CaseFile =
        serde_json::from_str(text).with_context(|| format!("{file} is not a case file"))?;
    Ok(parsed
        .cases
        .into_iter()
        .map(|case| Loaded {
            file: file.to_owned(),
            case,
        })
        .collect())
}

impl Case {
    /// The request's raw bytes.
    pub(crate) fn request_bytes(&self) -> anyhow::Result<Vec<u8>> {
        match (&self.request, &self.request_text, &self.request_base64) {
            (Some(value), None, None) => Ok(serde_json::to_vec(value)?),
            (None, Some(text), None) => Ok(text.clone().into_bytes()),
            (None, None, Some(b64)) => aws_smithy_types::base64::decode(b64)
                .map_err(|e| anyhow::anyhow!("case {:?}: bad request_base64: {e}", self.name)),
            _ => anyhow::bail!(
                "case {:?} needs exactly one of request, request_text, request_base64",
                self.name
            ),
        }
    }
}

/// The request key a case's request is handled under.
pub(crate) fn context_key(case_name: &str) -> String {
    format!("conformance/{case_name}")
}

/// Runs one case; `Err` holds a readable account of what differed (the
/// documents too, if `verbose`).
async fn run_case(handler: &Handler, case: &Case, verbose: bool) -> Result<(), String> {
    let request = case.request_bytes().map_err(|e| e.to_string())?;
    let memory = Arc::new(MemorySink::new(case.destination.into()));
    for (key, document) in &case.store {
        memory
            .put(key, &document_text(document))
            .await
            .map_err(|e| e.to_string())?;
    }
    let context = Context {
        key: context_key(&case.name),
        destination: case.destination.into(),
    };
    let handled = handler
        .handle(&request, &context, memory.clone())
        .await
        .map_err(|e| format!("the handler failed: {e}"))?;
    let mut problems = String::new();
    if let Some(wanted) = &case.ordering_key {
        let got = handler
            .ordering_key(&request)
            .await
            .map_err(|e| format!("the handler failed in ordering-key: {e}"))?;
        let got = got.map_or(Value::Null, Value::String);
        // `true`: some key, whichever the handler likes.
        let matches = match wanted {
            Value::Bool(true) => got.is_string(),
            wanted => got == *wanted,
        };
        if !matches {
            let _ = writeln!(problems, "  ordering-key: expected {wanted}, got {got}");
        }
    }
    if let (Some(wanted), Ok(plan)) = (&case.kind, &handled.verdict)
        && plan.kind != *wanted
    {
        let _ = writeln!(problems, "  kind: expected {wanted:?}, got {:?}", plan.kind);
    }
    match (&case.expect, handled.verdict) {
        (Expect::Rejected(text), Err(reason)) => {
            if !reason.to_lowercase().contains(&text.to_lowercase()) {
                let _ = writeln!(
                    problems,
                    "  rejected, but the reason does not mention {text:?}: {reason:?}"
                );
            }
        }
        (Expect::Rejected(text), Ok(plan)) => {
            let _ = writeln!(
                problems,
                "  expected a rejection (mentioning {text:?}); got a {:?} plan: {}",
                plan.kind,
                describe_operations(&plan.operations)
            );
        }
        (Expect::Store(_), Err(reason)) => {
            let _ = writeln!(
                problems,
                "  expected the request applied; it was rejected: {reason}"
            );
        }
        (Expect::Store(expected), Ok(plan)) => {
            memory.apply(&plan.operations).await.map_err(|e| e.to_string())?;
            diff_store(expected, &memory.contents(), verbose, &mut problems);
        }
    }
    if let Some(warns) = case.warns
        && warns != (handled.warnings > 0)
    {
        let _ = writeln!(
            problems,
            "  expected {}a warning; the handler logged {} warning(s)",
            if warns { "" } else { "no " },
            handled.warnings
        );
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// A stored document's text: a JSON string is stored as is (so a case can
/// hold a document that is not JSON), anything else as compact JSON.
fn document_text(document: &Value) -> String {
    match document {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn describe_operations(operations: &[Operation]) -> String {
    if operations.is_empty() {
        return "no operations".into();
    }
    operations
        .iter()
        .map(|op| match op {
            Operation::Put { key, document } => format!("put {key:?} = {document}"),
            Operation::Delete(key) => format!("delete {key:?}"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// How a case's documents are compared.
const EXPECTED_GOT: Sides = Sides {
    left: "expected",
    right: "got",
    only_left: "missing",
    only_right: "not expected",
};

/// Compares documents as JSON values (key order inside objects does not
/// matter, order inside arrays does), one line per difference, by JSON
/// path: `widgets/sue-smith/w1: .label: expected "  Big  ", got "Big"`.
/// With `verbose`, each differing document follows whole.
fn diff_store(
    expected: &BTreeMap<String, Value>,
    actual: &BTreeMap<String, String>,
    verbose: bool,
    out: &mut String,
) {
    for (key, want) in expected {
        match actual.get(key) {
            None => {
                let _ = writeln!(out, "  {key}: missing");
                if verbose {
                    let _ = writeln!(out, "    expected: {want}");
                }
            }
            Some(text) if jsondiff::parse(text) != *want && text != &document_text(want) => {
                let mut lines = Vec::new();
                jsondiff::differences("", want, &jsondiff::parse(text), &EXPECTED_GOT, &mut lines);
                for line in lines {
                    let _ = writeln!(out, "  {key}: {line}");
                }
                if verbose {
                    let _ = writeln!(out, "    expected: {want}\n    got:      {text}");
                }
            }
            Some(_) => {}
        }
    }
    for (key, text) in actual {
        if !expected.contains_key(key) {
            let _ = writeln!(out, "  {key}: not expected");
            if verbose {
                let _ = writeln!(out, "    got:      {text}");
            }
        }
    }
}

/// Runs cases and writes a line per case to `out`, and the differences of
/// each failure (with the whole documents if `verbose`). Returns the
/// number of failures.
pub(crate) async fn run_all(
    handler: &Handler,
    cases: &[Loaded],
    verbose: bool,
    out: &mut dyn std::io::Write,
) -> std::io::Result<usize> {
    let mut failures = 0;
    for Loaded { file, case } in cases {
        match run_case(handler, case, verbose).await {
            Ok(()) => writeln!(out, "ok   {file}: {}", case.name)?,
            Err(problems) => {
                failures += 1;
                writeln!(out, "FAIL {file}: {}\n{problems}", case.name)?;
            }
        }
    }
    writeln!(out, "{} passed, {failures} failed", cases.len() - failures)?;
    Ok(failures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(want: Value, got: Value) -> Vec<String> {
        let mut out = Vec::new();
        jsondiff::differences("", &want, &got, &EXPECTED_GOT, &mut out);
        out
    }

    #[test]
    fn differences_are_named_by_json_path_one_per_line() {
        let want =
            json!({"label": "  Big  ", "otherAttributes": [{"name": "a"}, {"name": "b"}, {"name": "c"}]});
        let got = json!({"label": "Big", "otherAttributes": [{"name": "a"}, {"name": "x"}], "extra": 1});
        assert_eq!(
            lines(want, got),
            [
                r#".label: expected "  Big  ", got "Big""#,
                r#".otherAttributes[1].name: expected "b", got "x""#,
                r#".otherAttributes[2]: missing (expected {"name":"c"})"#,
                ".extra: not expected (got 1)",
            ]
        );
        assert_eq!(lines(json!(1), json!("1")), [r#".: expected 1, got "1""#]);
        assert!(lines(json!({"a": [1, {"b": null}]}), json!({"a": [1, {"b": null}]})).is_empty());
    }

    #[test]
    fn a_store_difference_names_the_key_and_shows_documents_only_when_verbose() {
        let expected = BTreeMap::from([("widgets/sue-smith/w1".to_owned(), json!({"label": "  Big  "}))]);
        let actual = BTreeMap::from([("widgets/sue-smith/w1".to_owned(), r#"{"label":"Big"}"#.to_owned())]);
        let mut short = String::new();
        diff_store(&expected, &actual, false, &mut short);
        assert_eq!(
            short,
            "  widgets/sue-smith/w1: .label: expected \"  Big  \", got \"Big\"\n"
        );
        let mut long = String::new();
        diff_store(&expected, &actual, true, &mut long);
        assert!(long.starts_with(&short) && long.contains("expected: {") && long.contains("got:      {"));
    }
}
