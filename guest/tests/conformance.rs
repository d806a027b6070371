//! The conformance suite (`tests/conformance/*.json`, the cases
//! `widget-host check` runs against a handler component) run natively
//! against this crate's planner: the same case files, the same meaning,
//! no Wasm. `cargo mutants` runs this test alone to measure how much of
//! the planner the cases pin down (see docs/handlers.md).

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use widget_guest::plan::{Destination, Operation, Store, plan};
use widget_guest::request::ordering_key;

/// The store of one case, in memory.
struct Memory(BTreeMap<String, String>);

impl Store for Memory {
    fn get(&mut self, key: &str) -> Result<Option<String>, String> {
        Ok(self.0.get(key).cloned())
    }
}

/// A stored document's text: a JSON string is stored as is (a case can
/// hold a document that is not JSON), anything else as compact JSON.
fn document_text(document: &Value) -> String {
    match document {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn request_bytes(case: &Value) -> Vec<u8> {
    if let Some(request) = case.get("request") {
        return serde_json::to_vec(request).unwrap();
    }
    if let Some(text) = case.get("request_text").and_then(Value::as_str) {
        return text.as_bytes().to_vec();
    }
    let encoded = case["request_base64"].as_str().expect("a request in some form");
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()
}

/// Runs one case; `Err` says what differed.
fn run(case: &Value) -> Result<(), String> {
    let destination = match case["destination"].as_str() {
        Some("object-store") => Destination::ObjectStore,
        Some("table") => Destination::Table,
        other => return Err(format!("unknown destination {other:?}")),
    };
    let mut store = Memory(
        case.get("store")
            .and_then(Value::as_object)
            .map(|docs| docs.iter().map(|(k, v)| (k.clone(), document_text(v))).collect())
            .unwrap_or_default(),
    );
    if let Some(wanted) = case.get("ordering_key") {
        let got = ordering_key(&request_bytes(case)).map_or(Value::Null, Value::String);
        // `true`: some key, whichever the handler likes.
        let matches = match wanted {
            Value::Bool(true) => got.is_string(),
            wanted => got == *wanted,
        };
        if !matches {
            return Err(format!("ordering key: expected {wanted}, got {got}"));
        }
    }
    let name = case["name"].as_str().unwrap_or("?");
    let planned = plan(
        &request_bytes(case),
        &format!("conformance/{name}"),
        destination,
        &mut store,
    );
    let expect = &case["expect"];
    match (expect.get("rejected").and_then(Value::as_str), planned) {
        (Some(text), Err(invalid)) => {
            if !invalid.0.to_lowercase().contains(&text.to_lowercase()) {
                return Err(format!("rejected, but not for {text:?}: {:?}", invalid.0));
            }
        }
        (Some(text), Ok(plan)) => return Err(format!("expected a rejection for {text:?}, got {plan:?}")),
        (None, Err(invalid)) => return Err(format!("expected the request applied; rejected: {}", invalid.0)),
        (None, Ok(plan)) => {
            if let Some(wanted) = case.get("kind").and_then(Value::as_str)
                && plan.kind.name() != wanted
            {
                return Err(format!("kind: expected {wanted}, got {}", plan.kind.name()));
            }
            if let Some(warns) = case.get("warns").and_then(Value::as_bool)
                && warns == plan.warnings.is_empty()
            {
                return Err(format!("expected warnings: {warns}; got {:?}", plan.warnings));
            }
            for operation in plan.operations {
                match operation {
                    Operation::Put { key, document } => store.0.insert(key, document),
                    Operation::Delete(key) => store.0.remove(&key),
                };
            }
            let parse = |text: &String| serde_json::from_str(text).unwrap_or(Value::String(text.clone()));
            let got: BTreeMap<String, Value> = store.0.iter().map(|(k, v)| (k.clone(), parse(v))).collect();
            let want: BTreeMap<String, Value> = expect["store"]
                .as_object()
                .expect("expect.store or expect.rejected")
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if got != want {
                return Err(format!(
                    "store differs\n  expected: {want:?}\n  got:      {got:?}"
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn every_conformance_case_holds_for_the_planner() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/conformance");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut count = 0;
    let mut failures = Vec::new();
    for file in &files {
        let parsed: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        for case in parsed["cases"].as_array().unwrap() {
            count += 1;
            if let Err(why) = run(case) {
                failures.push(format!("{}: {}: {why}", file.display(), case["name"]));
            }
        }
    }
    assert!(count >= 100, "only {count} cases found in {}", dir.display());
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
