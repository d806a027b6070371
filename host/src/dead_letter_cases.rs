//! Dead letters become conformance cases (`check --cases-from-dead-letters
//! DIR`): one case per distinct reason, the first dead letter with that
//! reason as its request, so that a fix is tested against what actually
//! failed. Without a fixed handler a case expects the rejection the dead
//! letter carries; with one, it expects what the fixed handler makes of the
//! request against the store as it reads it now (its plan applied to the
//! documents it read, or its own rejection). The cases go to
//! `DIR/dead-letters.json`, in the suite's format (`conformance.rs`), for
//! `check --cases DIR` and for the author to keep beside the handler.

use crate::conformance;
use crate::contract::{Context, Destination};
use crate::error::StorageError;
use crate::handler::{CallError, Handler};
use crate::jsondiff;
use crate::sink::Sink;
use crate::sink::memory::MemorySink;
use crate::sink::recorded::Recorded;
use crate::source::{DeadLetters, Fetched};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// The file the cases are written to, in the cases folder.
pub(crate) const FILE: &str = "dead-letters.json";

/// A case's name is cut to this many characters.
const MAX_NAME: usize = 200;

/// The cases made, and the dead letters that made none, with why.
pub(crate) struct Made {
    pub(crate) cases: Vec<Value>,
    pub(crate) skipped: Vec<String>,
}

impl Made {
    /// The case file's text.
    pub(crate) fn file(&self) -> String {
        let file = json!({
            "about": "Dead letters, one per distinct reason (widget-host check --cases-from-dead-letters)",
            "cases": self.cases,
        });
        serde_json::to_string_pretty(&file).expect("JSON values serialize") + "\n"
    }
}

/// Makes the cases from `dead_letters`, read no larger than `max_bytes`,
/// planned for `destination`; with `fixed`, its verdicts are the expected
/// ones, against `store` (read only; an empty store if none).
pub(crate) async fn make(
    dead_letters: &dyn DeadLetters,
    destination: Destination,
    store: Option<Arc<dyn Sink>>,
    fixed: Option<&Handler>,
    max_bytes: u64,
) -> Result<Made, StorageError> {
    let mut made = Made {
        cases: Vec::new(),
        skipped: Vec::new(),
    };
    let mut reasons = HashSet::new();
    let mut names = HashSet::new();
    for letter in dead_letters.dead_letters().await? {
        let key = &letter.key;
        let Some(reason) = dead_letters.reason(&letter).await? else {
            made.skipped.push(format!("{key}: it has no reason"));
            continue;
        };
        if reasons.contains(&reason) {
            continue;
        }
        let body = match dead_letters.read_dead_letter(&letter, max_bytes).await? {
            Fetched::Request(body, _) => body,
            Fetched::Gone => continue,
            Fetched::TooLarge(size, _) => {
                made.skipped
                    .push(format!("{key}: {size} bytes, over --max-request-bytes"));
                continue;
            }
        };
        // Escaped (a key may hold a newline), cut, and told apart from
        // every earlier name where the cut made them one.
        let mut name: String = format!("dead letter {}: {reason}", crate::logging::escape(key))
            .chars()
            .take(MAX_NAME)
            .collect();
        if names.contains(&name) {
            name = (2..)
                .map(|n| format!("{name} #{n}"))
                .find(|numbered| !names.contains(numbered))
                .expect("a free number");
        }
        let (before, expect) = match fixed {
            None => match reason.strip_prefix("rejected: ") {
                Some(text) => (BTreeMap::new(), json!({ "rejected": text })),
                None => {
                    made.skipped.push(format!(
                        "{key}: not a rejection ({reason}); a case can expect only a plan or a rejection"
                    ));
                    continue;
                }
            },
            Some(handler) => {
                let store = store
                    .clone()
                    .unwrap_or_else(|| Arc::new(MemorySink::new(destination)));
                match expected(handler, &name, &body, destination, store).await? {
                    Ok(expected) => expected,
                    Err(failure) => {
                        made.skipped
                            .push(format!("{key}: the fixed handler fails on it too: {failure}"));
                        continue;
                    }
                }
            }
        };
        reasons.insert(reason.clone());
        names.insert(name.clone());
        let mut case = Map::new();
        case.insert("name".into(), name.into());
        case.insert(
            "destination".into(),
            match destination {
                Destination::ObjectStore => "object-store",
                Destination::Table => "table",
            }
            .into(),
        );
        case.insert("store".into(), documents(before));
        match String::from_utf8(body) {
            Ok(text) => case.insert("request_text".into(), text.into()),
            Err(bytes) => case.insert(
                "request_base64".into(),
                aws_smithy_types::base64::encode(bytes.into_bytes()).into(),
            ),
        };
        case.insert("expect".into(), expect);
        made.cases.push(Value::Object(case));
    }
    Ok(made)
}

/// What `handler` makes of the request, called as `check` will call it
/// for the case `name`: the documents it read (the case's store) and the
/// expectation, or why it failed.
async fn expected(
    handler: &Handler,
    name: &str,
    body: &[u8],
    destination: Destination,
    store: Arc<dyn Sink>,
) -> Result<Result<(BTreeMap<String, String>, Value), String>, StorageError> {
    let recorded = Arc::new(Recorded::new(store));
    let context = Context {
        key: conformance::context_key(name),
        destination,
    };
    let handled = match handler.handle(body, &context, recorded.clone()).await {
        Ok(handled) => handled,
        Err(CallError::Handler(failure)) => return Ok(Err(failure)),
        Err(CallError::Store(e)) => return Err(e),
    };
    let before: BTreeMap<String, String> = recorded
        .reads()
        .into_iter()
        .filter_map(|(key, document)| Some((key, document?)))
        .collect();
    let plan = match handled.verdict {
        Ok(plan) => plan,
        Err(reason) => return Ok(Ok((before, json!({ "rejected": reason })))),
    };
    // The plan carried out on the documents it was made from, as `check`
    // will carry it out.
    let memory = MemorySink::new(destination);
    for (key, document) in &before {
        memory.put(key, document).await?;
    }
    memory.apply(&plan.operations).await?;
    Ok(Ok((before, json!({ "store": documents(memory.contents()) }))))
}

/// Stored documents as a case holds them: JSON as JSON, anything else as
/// a string.
fn documents(documents: BTreeMap<String, String>) -> Value {
    Value::Object(
        documents
            .into_iter()
            .map(|(key, text)| (key, jsondiff::parse(&text)))
            .collect(),
    )
}
