//! Property tests of the default handler's parse-and-plan: on any bytes it
//! never panics, and either plans or rejects with a reason; any request it
//! accepts, applied twice in a row, changes nothing the second time.
//!
//! `proptest`, not `cargo fuzz`: it runs on the pinned stable toolchain
//! inside `cargo test` (cargo fuzz needs a nightly toolchain and a
//! sanitizer runtime CI would have to fetch), its runs are reproducible
//! from a seed, and it shrinks a failure to a small input. It is not
//! coverage-guided; to reach deep into the parser anyway, most inputs are
//! real requests (the fixtures and the conformance cases) with random
//! mutations, the rest random bytes and generated JSON.
//!
//! `WIDGET_FUZZ_CASES` sets how many inputs each property tries (default
//! 2,000; CI's longer run sets more, see `.ci/run`).

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use std::collections::BTreeMap;
use std::path::Path;
use widget_guest::plan::{Destination, Operation, Store, plan};
use widget_guest::request::ordering_key;

/// A store in memory; `get` of any missing key finds `fallback`, so that
/// updates and deletes of arbitrary widgets meet a stored document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Memory {
    documents: BTreeMap<String, String>,
    fallback: Option<String>,
}

impl Store for Memory {
    fn get(&mut self, key: &str) -> Result<Option<String>, String> {
        Ok(self.documents.get(key).cloned().or_else(|| self.fallback.clone()))
    }
}

impl Memory {
    fn apply(&mut self, operations: &[Operation]) {
        for operation in operations {
            match operation {
                Operation::Put { key, document } => {
                    self.documents.insert(key.clone(), document.clone());
                }
                Operation::Delete(key) => {
                    self.documents.remove(key);
                }
            }
        }
    }
}

const DESTINATIONS: [Destination; 2] = [Destination::ObjectStore, Destination::Table];

fn config() -> Config {
    let cases = std::env::var("WIDGET_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    Config {
        cases,
        // Failures found are kept beside this file and tried first next
        // time: commit them.
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..Config::default()
    }
}

/// The seed corpus: every request in `tests/fixtures/` and every request of
/// the conformance cases, as bytes.
fn seeds() -> Vec<Vec<u8>> {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests");
    let mut seeds = Vec::new();
    for entry in std::fs::read_dir(tests.join("fixtures/instructor-2022")).unwrap() {
        seeds.push(std::fs::read(entry.unwrap().path()).unwrap());
    }
    for entry in std::fs::read_dir(tests.join("conformance")).unwrap() {
        let suite: serde_json::Value =
            serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
        for case in suite["cases"].as_array().unwrap() {
            let request = &case["request"];
            seeds.push(match request.as_str() {
                Some(text) => text.as_bytes().to_vec(),
                None => request.to_string().into_bytes(),
            });
        }
    }
    assert!(
        seeds.len() > 100,
        "the seed corpus is missing: {} seeds",
        seeds.len()
    );
    seeds
}

/// One change to a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize, usize),
    Repeat(usize, usize),
    /// Put in a piece of JSON likely to matter.
    Splice(usize, &'static str),
}

const PIECES: [&str; 16] = [
    "\"",
    "\\",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "null",
    "true",
    "1e999",
    "-0",
    "\"\\u0000\"",
    "\"\\ud800\"",
    r#""widgetId":"w2","#,
    r#""type":"update","#,
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Flip(at, byte)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        (any::<usize>(), 1..16usize).prop_map(|(at, len)| Mutation::Remove(at, len)),
        (any::<usize>(), 1..16usize).prop_map(|(at, len)| Mutation::Repeat(at, len)),
        (any::<usize>(), prop::sample::select(&PIECES[..]))
            .prop_map(|(at, piece)| Mutation::Splice(at, piece)),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        let at = |n: usize| {
            if bytes.is_empty() {
                0
            } else {
                n % (bytes.len() + 1)
            }
        };
        match *mutation {
            Mutation::Flip(n, byte) if !bytes.is_empty() => {
                let i = n % bytes.len();
                bytes[i] ^= byte | 1;
            }
            Mutation::Flip(..) => {}
            Mutation::Insert(n, byte) => {
                let i = at(n);
                bytes.insert(i, byte);
            }
            Mutation::Remove(n, len) => {
                let i = at(n);
                let end = (i + len).min(bytes.len());
                bytes.drain(i..end);
            }
            Mutation::Repeat(n, len) => {
                let i = at(n);
                let end = (i + len).min(bytes.len());
                let piece = bytes[i..end].to_vec();
                bytes.splice(i..i, piece);
            }
            Mutation::Splice(n, piece) => {
                let i = at(n);
                bytes.splice(i..i, piece.bytes());
            }
        }
    }
    bytes
}

/// Inputs: mutated seeds mostly, random bytes and random JSON-ish text too.
fn input(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => (prop::sample::select(seeds), prop::collection::vec(mutation(), 0..8))
            .prop_map(|(seed, mutations)| mutate(seed, &mutations)),
        1 => prop::collection::vec(any::<u8>(), 0..256),
        1 => "[ -~]{0,200}".prop_map(String::into_bytes),
    ]
}

/// What a store may hold where a request looks: a widget, or junk.
fn stored() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some(
            r#"{"id":"w1","owner":"Mary Matthews","label":"L","otherAttributes":[{"name":"c","value":"red"}],"n":1e5}"#
                .to_owned()
        )),
        Just(Some(r#"{"id":"w1","owner":"Mary Matthews","label":"L","c":"red","n":12345678901234567890123}"#.to_owned())),
        "[ -~]{0,40}".prop_map(Some),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_bytes_are_planned_or_rejected_with_a_reason_never_a_panic(
        bytes in input(seeds()),
        fallback in stored(),
    ) {
        let key = ordering_key(&bytes);
        for destination in DESTINATIONS {
            let mut store = Memory { fallback: fallback.clone(), ..Memory::default() };
            match plan(&bytes, "k", destination, &mut store) {
                Ok(planned) => {
                    // An accepted request names its widget, so the host can
                    // keep its order.
                    prop_assert!(key.is_some(), "accepted without an ordering key: {:?}", String::from_utf8_lossy(&bytes));
                    for operation in &planned.operations {
                        if let Operation::Put { document, .. } = operation {
                            prop_assert!(serde_json::from_str::<serde_json::Value>(document).is_ok(), "not JSON: {document}");
                        }
                    }
                }
                Err(invalid) => prop_assert!(!invalid.0.trim().is_empty(), "a rejection without a reason"),
            }
        }
    }
}

/// Valid requests about a few widgets, so that they meet each other.
fn request() -> impl Strategy<Value = String> {
    let text = prop_oneof![Just(String::new()), "[a-z ]{1,8}", "[\\u{0}-\\u{10FFFF}]{0,6}"];
    let optional = prop_oneof![
        Just(None),
        Just(Some("null".to_owned())),
        text.clone()
            .prop_map(|t| Some(serde_json::to_string(&t).unwrap())),
    ];
    let attribute =
        (prop::sample::select(&["color", "size", "weight"][..]), text).prop_map(|(name, value)| {
            format!(
                r#"{{"name":"{name}","value":{}}}"#,
                serde_json::to_string(&value).unwrap()
            )
        });
    (
        prop::sample::select(&["create", "update", "delete"][..]),
        prop::sample::select(&["w1", "w2"][..]),
        prop::sample::select(&["Mary Matthews", "Sue Smith"][..]),
        optional.clone(),
        optional,
        prop::option::of(prop::collection::vec(attribute, 0..4)),
    )
        .prop_map(|(kind, id, owner, label, description, attributes)| {
            let mut fields =
                format!(r#""type":"{kind}","requestId":"r","widgetId":"{id}","owner":"{owner}""#);
            if let Some(label) = label {
                fields.push_str(&format!(r#","label":{label}"#));
            }
            if let Some(description) = description {
                fields.push_str(&format!(r#","description":{description}"#));
            }
            if let Some(attributes) = attributes {
                fields.push_str(&format!(r#","otherAttributes":[{}]"#, attributes.join(",")));
            }
            format!("{{{fields}}}")
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn an_accepted_request_applied_twice_changes_nothing_the_second_time(
        history in prop::collection::vec(request(), 0..6),
        again in request(),
    ) {
        for destination in DESTINATIONS {
            let mut store = Memory::default();
            for earlier in &history {
                if let Ok(planned) = plan(earlier.as_bytes(), "k", destination, &mut store) {
                    store.apply(&planned.operations);
                }
            }
            let Ok(first) = plan(again.as_bytes(), "k", destination, &mut store) else {
                continue;
            };
            store.apply(&first.operations);
            let once = store.clone();
            let second = plan(again.as_bytes(), "k", destination, &mut store)
                .expect("accepted once, accepted again");
            store.apply(&second.operations);
            prop_assert_eq!(&store, &once, "{} changed the store again", again);
        }
    }
}
