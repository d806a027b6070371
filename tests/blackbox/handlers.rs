//! The handler platform: `check` against the conformance suite, `invoke`,
//! and swapping the handler of a running host.

use crate::util::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

#[test]
fn check_passes_the_built_in_handler_and_its_component_file() {
    for handler in [None, Some(test_guest("widget_guest"))] {
        let mut command = host();
        command.arg("check");
        if let Some(file) = &handler {
            command.arg(file);
        }
        let output = run_ok(&mut command);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.lines().any(|l| l.ends_with(" passed, 0 failed")),
            "{stdout}"
        );
        assert!(!stdout.contains("FAIL"), "{stdout}");
    }
}

#[test]
fn check_fails_a_wrong_handler_with_a_diff_that_names_the_case() {
    // The hostile test handler stores every request as is at echo/KEY.
    let output = host()
        .arg("check")
        .arg(test_guest("hostile_guest"))
        .arg("--verbose")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let failure = stdout
        .split("FAIL ")
        .find(|block| block.starts_with("create.json: create stores the widget (object-store)"))
        .unwrap_or_else(|| panic!("the case is not named:\n{stdout}"));
    assert!(failure.contains("widgets/mary-matthews/w1: missing"), "{failure}");
    assert!(
        failure.contains("expected: {"),
        "--verbose shows the document: {failure}"
    );
    assert!(
        failure.contains("echo/conformance/"),
        "the unexpected write is shown: {failure}"
    );
    assert!(
        stdout.contains("FAIL invalid.json: an empty request (table)"),
        "{stdout}"
    );
}

#[test]
fn check_catches_a_handler_that_trims_labels_with_one_line_per_difference() {
    // The default planner, except that it trims the label: the contract
    // says values are stored exactly as given.
    let output = host()
        .arg("check")
        .arg(test_guest("trimming_guest"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let failure = stdout
        .split("FAIL ")
        .find(|block| {
            block.starts_with(
                "create.json: create stores values exactly as given, spaces included (object-store)",
            )
        })
        .unwrap_or_else(|| panic!("the case is not named:\n{stdout}"));
    let lines: Vec<&str> = failure.lines().skip(1).filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines,
        [r#"  widgets/mary-matthews/w1: .label: expected "  Big  ", got "Big""#]
    );
    // The label cases of create and update, in both layouts, and no other.
    assert_eq!(stdout.matches("FAIL ").count(), 4, "{stdout}");
}

#[test]
fn check_runs_an_authors_own_cases() {
    let scratch = tempfile::tempdir().unwrap();
    std::fs::write(
        scratch.path().join("mine.json"),
        r#"{"cases": [{"name": "echo stores the body", "destination": "object-store",
            "request_text": "hello", "expect": {"store": {"echo/conformance/echo stores the body": "hello"}}}]}"#,
    )
    .unwrap();
    let output = run_ok(
        host()
            .arg("check")
            .arg(test_guest("hostile_guest"))
            .arg("--no-builtin-cases")
            .arg("--cases")
            .arg(scratch.path()),
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("1 passed, 0 failed"));
}

#[test]
fn invoke_prints_the_operations_and_the_logs() {
    let scratch = tempfile::tempdir().unwrap();
    let request = scratch.path().join("req.json");
    std::fs::write(
        &request,
        r#"{"type":"update","requestId":"r","widgetId":"w1","owner":"Sue Smith","label":"new"}"#,
    )
    .unwrap();
    // Without a store the widget is missing: a warning, no operations.
    let output = run_ok(host().arg("invoke").arg("builtin").arg(&request));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("log warn: update request r (req.json): widget w1 not found"),
        "{stdout}"
    );
    assert!(
        stdout.contains("kind: update") && stdout.contains("no operations"),
        "{stdout}"
    );

    let store = scratch.path().join("store");
    std::fs::create_dir_all(store.join("widgets/sue-smith")).unwrap();
    std::fs::write(
        store.join("widgets/sue-smith/w1"),
        r#"{"id":"w1","owner":"Sue Smith","label":"old"}"#,
    )
    .unwrap();
    let output = run_ok(
        host()
            .arg("invoke")
            .arg("builtin")
            .arg(&request)
            .arg("--store")
            .arg(&store),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(
            "put widgets/sue-smith/w1\n  {\"id\":\"w1\",\"owner\":\"Sue Smith\",\"label\":\"new\"}"
        ),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(store.join("widgets/sue-smith/w1")).unwrap(),
        r#"{"id":"w1","owner":"Sue Smith","label":"old"}"#,
        "invoke writes nothing"
    );
}

/// Replaces a file the way a deploy would: write beside it, rename over it.
fn replace(target: &Path, with: &[u8]) {
    let temp = target.with_extension("new");
    std::fs::write(&temp, with).unwrap();
    std::fs::rename(&temp, target).unwrap();
}

#[test]
fn swapping_handlers_under_load_loses_and_repeats_no_request() {
    let scratch = tempfile::tempdir().unwrap();
    let requests = scratch.path().join("requests");
    let widgets = scratch.path().join("widgets");
    std::fs::create_dir_all(&requests).unwrap();
    let handler = scratch.path().join("handler.wasm");
    let widget_handler = std::fs::read(test_guest("widget_guest")).unwrap();
    let echo_handler = std::fs::read(test_guest("hostile_guest")).unwrap();
    std::fs::write(&handler, &widget_handler).unwrap();

    // Its log is read as it comes: a pipe nobody reads would fill and
    // block the host.
    let running = Running::start(
        host()
            .args(["run", "--watch", "--requests-dir"])
            .arg(&requests)
            .arg("--widgets-dir")
            .arg(&widgets)
            .arg("--handler")
            .arg(&handler),
    );

    // Requests flow in for about three seconds while the handler is
    // replaced: by the echo handler, by a broken file (refused), and by the
    // widget handler again.
    let total = 300;
    let mut bodies = BTreeMap::new();
    for i in 0..total {
        let key = format!("{:013}", 1_700_000_000_000u64 + i);
        let body = format!(r#"{{"type":"create","requestId":"r{i}","widgetId":"w{i}","owner":"Sue Smith"}}"#);
        let temp = requests.join(format!(".{key}"));
        std::fs::write(&temp, &body).unwrap();
        std::fs::rename(&temp, requests.join(&key)).unwrap();
        bodies.insert(key, body);
        match i {
            75 => replace(&handler, &echo_handler),
            150 => replace(&handler, b"\0asm broken"),
            225 => replace(&handler, &widget_handler),
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let deadline = Instant::now() + patience(Duration::from_secs(60));
    while std::fs::read_dir(&requests)
        .unwrap()
        .flatten()
        .any(|e| e.path().is_file())
    {
        assert!(Instant::now() < deadline, "requests were left unprocessed");
        std::thread::sleep(Duration::from_millis(50));
    }
    running.signal("-TERM");
    let (status, _, log) = running.finish();
    assert!(status.success(), "SIGTERM exits 0: {status}");

    assert_eq!(
        log.matches("Handler reloaded.").count(),
        2,
        "two good replacements:\n{log}"
    );
    assert_eq!(
        log.matches("Reload refused; keeping the current handler.")
            .count(),
        1,
        "{log}"
    );

    // Every request was done exactly once, by one handler or the other,
    // and left exactly what that handler prescribes.
    let mut done = BTreeMap::new();
    for line in log.lines().filter(|l| l.contains("Request done.")) {
        let field = |name: &str| {
            line.split(&format!("{name}="))
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
        };
        assert!(
            done.insert(field("request_key").to_owned(), field("kind").to_owned())
                .is_none(),
            "{line}"
        );
    }
    assert_eq!(
        done.keys().cloned().collect::<BTreeSet<_>>(),
        bodies.keys().cloned().collect::<BTreeSet<_>>()
    );
    let stored = files(&widgets);
    let mut kinds = BTreeSet::new();
    for (key, kind) in &done {
        kinds.insert(kind.clone());
        let i: u64 = key.parse::<u64>().unwrap() - 1_700_000_000_000;
        match kind.as_str() {
            "echo" => assert_eq!(stored[&format!("echo/{key}")], bodies[key].as_bytes()),
            "create" => assert_eq!(
                serde_json::from_slice::<serde_json::Value>(&stored[&format!("widgets/sue-smith/w{i}")])
                    .unwrap(),
                serde_json::json!({"id": format!("w{i}"), "owner": "Sue Smith"})
            ),
            other => panic!("unexpected kind {other}"),
        }
    }
    assert_eq!(
        stored.len(),
        total as usize,
        "nothing but what the handlers prescribed"
    );
    assert_eq!(
        kinds,
        BTreeSet::from(["create".to_owned(), "echo".to_owned()]),
        "both handlers ran"
    );
}

/// Writes requests `from..to` (plain text: the echoing handler accepts
/// them, the widget handler rejects them) and waits until they are all out
/// of `requests`.
fn feed_plain_requests(requests: &Path, from: u32, to: u32) {
    for i in from..to {
        let temp = requests.join(format!(".{i:04}"));
        std::fs::write(&temp, format!("hello {i}")).unwrap();
        std::fs::rename(&temp, requests.join(format!("{i:04}"))).unwrap();
    }
    let deadline = Instant::now() + patience(Duration::from_secs(60));
    while std::fs::read_dir(requests)
        .unwrap()
        .flatten()
        .any(|e| e.path().is_file())
    {
        assert!(Instant::now() < deadline, "requests were left unprocessed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A host running the echoing handler from a file, watched, with the
/// rollback policy at 50 points over 10 requests and `flags`; its requests
/// folder and handler file.
fn start_with_rollback(scratch: &Path, flags: &[&str]) -> (std::path::PathBuf, std::path::PathBuf, Running) {
    let (requests, widgets) = (scratch.join("requests"), scratch.join("widgets"));
    std::fs::create_dir_all(&requests).unwrap();
    let handler = scratch.join("handler.wasm");
    std::fs::copy(test_guest("hostile_guest"), &handler).unwrap();
    let running = Running::start(
        host()
            .args([
                "run",
                "--watch",
                "--rollback-on-dead-letters",
                "50",
                "--rollback-window",
                "10",
            ])
            .args(flags)
            .arg("--requests-dir")
            .arg(&requests)
            .arg("--widgets-dir")
            .arg(&widgets)
            .arg("--handler")
            .arg(&handler),
    );
    running.wait_for("Starting.", Duration::from_secs(30));
    (requests, handler, running)
}

#[test]
fn a_swap_that_refuses_more_is_rolled_back_and_what_it_refused_is_decided_again() {
    let scratch = tempfile::tempdir().unwrap();
    let (requests, handler, running) = start_with_rollback(scratch.path(), &["--concurrency", "1"]);
    // The echoing handler applies twenty: none dead-lettered.
    feed_plain_requests(&requests, 0, 20);
    // Swapped for the widget handler, which rejects every one of them.
    replace(&handler, &std::fs::read(test_guest("widget_guest")).unwrap());
    running.wait_for("Handler reloaded.", Duration::from_secs(30));
    feed_plain_requests(&requests, 20, 50);
    running.signal("-TERM");
    let (status, summary, log) = running.finish();
    assert!(status.success(), "{log}");
    assert!(log.contains("Rolled back to the previous handler"), "{log}");
    assert!(summary.contains("rolled back:   1"), "{summary}");
    // What it refused on trial (one request at a time) was held: six
    // refusals of a window of ten make more than 50 points whatever the
    // other four bring, so it is rolled back then, and the echoing handler
    // decides the six again: nothing to redrive.
    assert!(log.contains("held=6"), "{log}");
    assert_eq!(log.matches("Refused by a handler on trial").count(), 6, "{log}");
    assert!(summary.contains("dead-lettered: 0"), "{summary}");
    assert!(summary.contains("applied:       50 (echo 50)"), "{summary}");
    assert!(!requests.join("dead-letter").exists());
}

#[test]
fn every_request_a_rolled_back_handler_refused_is_decided_again_even_with_many_at_once() {
    let scratch = tempfile::tempdir().unwrap();
    // Swapped before any request: the trusted handler counts as
    // dead-lettering none.
    let (requests, handler, running) = start_with_rollback(scratch.path(), &[]);
    replace(&handler, &std::fs::read(test_guest("widget_guest")).unwrap());
    running.wait_for("Handler reloaded.", Duration::from_secs(30));
    feed_plain_requests(&requests, 0, 200);
    running.signal("-TERM");
    let (status, summary, log) = running.finish();
    assert!(status.success(), "{log}");
    assert!(summary.contains("rolled back:   1"), "{summary}");
    // Those under way at the rollback too: the handler that refused them is
    // no longer live, so the one put back decides them.
    assert!(
        summary.contains("applied:       200 (echo 200)"),
        "{summary}\n{log}"
    );
    assert!(summary.contains("dead-lettered: 0"), "{summary}");
}

#[test]
fn a_rolled_back_swap_leaves_the_end_state_of_the_trusted_handler_alone() {
    let scratch = tempfile::tempdir().unwrap();
    // What the built-in handler alone makes of the stream.
    let reference = scratch.path().join("reference");
    let reference_widgets = scratch.path().join("reference-widgets");
    produce(&mut host(), "--requests-dir", &reference, 400, 11);
    let output = run_ok(
        host()
            .args(["run", "--until-empty", "--requests-dir"])
            .arg(&reference)
            .arg("--widgets-dir")
            .arg(&reference_widgets),
    );
    let reference_summary = String::from_utf8_lossy(&output.stdout).into_owned();
    // The same stream, into a host whose handler was just swapped for one
    // that rejects every update: rolled back, and the updates it refused
    // decided again, each in its widget's order.
    let (requests, widgets) = (scratch.path().join("requests"), scratch.path().join("widgets"));
    std::fs::create_dir_all(&requests).unwrap();
    let handler = scratch.path().join("handler.wasm");
    std::fs::copy(test_guest("widget_guest"), &handler).unwrap();
    let running = Running::start(
        host()
            .args([
                "run",
                "--watch",
                "--rollback-on-dead-letters",
                "5",
                "--rollback-window",
                "30",
            ])
            .arg("--handler")
            .arg(&handler)
            .arg("--requests-dir")
            .arg(&requests)
            .arg("--widgets-dir")
            .arg(&widgets),
    );
    running.wait_for("Starting.", Duration::from_secs(60));
    replace(&handler, &std::fs::read(test_guest("refusing_guest")).unwrap());
    running.wait_for("Handler reloaded.", Duration::from_secs(60));
    produce(&mut host(), "--requests-dir", &requests, 400, 11);
    wait_until(Duration::from_secs(60), "every request taken", || {
        std::fs::read_dir(&requests)
            .unwrap()
            .flatten()
            .all(|e| !e.path().is_file())
    });
    running.signal("-TERM");
    let (status, summary, log) = running.finish();
    assert!(status.success(), "{log}");
    assert!(log.contains("Rolled back to the previous handler"), "{log}");
    let dead = |summary: &str| {
        summary
            .lines()
            .find(|l| l.contains("dead-lettered:"))
            .map(|l| l.split_whitespace().nth(1).unwrap().to_owned())
    };
    assert_eq!(
        dead(&summary),
        dead(&reference_summary),
        "{summary}\n{reference_summary}"
    );
    assert_same_documents(&widgets.join("widgets"), &reference_widgets.join("widgets"));
}

#[test]
fn dead_letters_become_one_case_per_distinct_reason_that_check_runs() {
    let scratch = tempfile::tempdir().unwrap();
    let (requests, widgets, cases) = (
        scratch.path().join("requests"),
        scratch.path().join("widgets"),
        scratch.path().join("cases"),
    );
    std::fs::create_dir_all(&requests).unwrap();
    // Two requests refused for one reason, one for another, one applied.
    std::fs::write(requests.join("1"), "not json").unwrap();
    std::fs::write(requests.join("2"), "not json either").unwrap();
    std::fs::write(
        requests.join("3"),
        r#"{"type":"explode","requestId":"r3","widgetId":"w3","owner":"Sue Smith"}"#,
    )
    .unwrap();
    std::fs::write(requests.join("4"), create_request("w4", "fine", 5)).unwrap();
    run_ok(
        host()
            .args(["run", "--until-empty", "--requests-dir"])
            .arg(&requests)
            .arg("--widgets-dir")
            .arg(&widgets),
    );
    let check = |args: &[&str]| {
        host()
            .arg("check")
            .args(args)
            .arg("--cases")
            .arg(&cases)
            .output()
            .unwrap()
    };

    // Without a fixed handler: the rejections, expected.
    let output = run_ok(
        host()
            .args(["check", "--cases-from-dead-letters"])
            .arg(&cases)
            .arg("--requests-dir")
            .arg(&requests),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("Wrote 2 cases (one per distinct reason)"),
        "{stdout}"
    );
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cases.join("dead-letters.json")).unwrap()).unwrap();
    let made = file["cases"].as_array().unwrap();
    assert_eq!(made.len(), 2, "{file}");
    assert_eq!(made[0]["request_text"], "not json");
    assert!(made[0]["expect"]["rejected"].is_string(), "{file}");
    // The built-in handler passes them; the echoing one, accepting all, fails both.
    let passed = check(&["builtin", "--no-builtin-cases"]);
    assert!(
        passed.status.success(),
        "{}",
        String::from_utf8_lossy(&passed.stdout)
    );
    let hostile = test_guest("hostile_guest");
    let failed = check(&[hostile.to_str().unwrap(), "--no-builtin-cases"]);
    assert!(!failed.status.success());
    assert!(
        String::from_utf8_lossy(&failed.stdout).contains("FAIL"),
        "{failed:?}"
    );

    // With the echoing handler as the fix: its plans, expected, in a file
    // of their own (the first is never written over), which alone is run.
    let first = std::fs::read(cases.join("dead-letters.json")).unwrap();
    let output = run_ok(
        host()
            .arg("check")
            .arg(&hostile)
            .arg("--cases-from-dead-letters")
            .arg(&cases)
            .arg("--requests-dir")
            .arg(&requests)
            .arg("--widgets-dir")
            .arg(&widgets),
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("Wrote 2 cases"));
    assert_eq!(
        std::fs::read(cases.join("dead-letters.json")).unwrap(),
        first,
        "left as it was"
    );
    std::fs::rename(cases.join("dead-letters.json"), scratch.path().join("first.json")).unwrap();
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cases.join("dead-letters-2.json")).unwrap()).unwrap();
    let expected = &file["cases"][0]["expect"]["store"];
    assert_eq!(
        expected.as_object().unwrap().values().collect::<Vec<_>>(),
        ["not json"],
        "{file}"
    );
    let passed = check(&[hostile.to_str().unwrap(), "--no-builtin-cases"]);
    assert!(
        passed.status.success(),
        "{}",
        String::from_utf8_lossy(&passed.stdout)
    );
    assert!(!check(&["builtin", "--no-builtin-cases"]).status.success());
    // Only read: the dead letters are all still there.
    assert_eq!(
        std::fs::read_dir(requests.join("dead-letter")).unwrap().count(),
        6,
        "three dead letters and their reasons"
    );
}

/// A handler built by guest/build-handlers.sh (tests/run.sh runs it).
pub(crate) fn other_language_handler(name: &str) -> std::path::PathBuf {
    let dir = std::env::var("WIDGET_HOST_TEST_HANDLERS").expect(
        "WIDGET_HOST_TEST_HANDLERS is not set: run the tests with tests/run.sh, which builds the handlers",
    );
    Path::new(&dir).join(name)
}

#[test]
fn check_passes_the_python_and_javascript_handlers_with_their_own_cases() {
    for (file, cases) in [
        ("widget_handler_py.wasm", "guest/python/cases"),
        ("widget_handler_js.wasm", "guest/javascript/cases"),
    ] {
        let output = run_ok(
            host()
                .arg("check")
                .arg(other_language_handler(file))
                .arg("--cases")
                .arg(tests_dir().join("..").join(cases)),
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        // The built-in suite and the handler's own two cases, all passed.
        let passed = stdout.lines().filter(|l| l.starts_with("ok   ")).count();
        assert!(
            stdout.contains(&format!("{passed} passed, 0 failed")),
            "{file}:\n{stdout}"
        );
        assert!(
            stdout.contains("ok   ")
                && stdout
                    .lines()
                    .any(|l| l.starts_with("ok   ") && l.contains("/cases/")),
            "{file}:\n{stdout}"
        );
    }
}

/// A create request for widget `id`, with `label` and a description of
/// `description_len` letters.
fn create_request(id: &str, label: &str, description_len: usize) -> String {
    format!(
        r#"{{"type":"create","requestId":"r-{id}","widgetId":"{id}","owner":"Sue Smith","label":"{label}","description":"{}"}}"#,
        "d".repeat(description_len)
    )
}

#[test]
fn diff_names_each_request_whose_verdict_or_plan_differs_and_changes_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let requests = scratch.path().join("requests");
    let widgets = scratch.path().join("widgets");
    std::fs::create_dir_all(&requests).unwrap();
    std::fs::write(requests.join("1"), create_request("w1", "  Big  ", 5)).unwrap();
    std::fs::write(requests.join("2"), create_request("w2", "plain", 5)).unwrap();
    std::fs::write(requests.join("3"), "not json").unwrap();
    let before = files(&requests);

    let diff = |old: &str, new: &Path| {
        host()
            .args(["diff", old])
            .arg(new)
            .arg(&requests)
            .arg("--widgets-dir")
            .arg(&widgets)
            .output()
            .unwrap()
    };

    // Against itself: all the same.
    let output = diff("builtin", Path::new("builtin"));
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("3 requests: 3 same, 0 differ"), "{stdout}");

    // The label-trimming handler differs on one request, field by field.
    let output = diff("builtin", &test_guest("trimming_guest"));
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout
            .contains("1: plans differ\n  put widgets/sue-smith/w1: .label: old \"  Big  \", new \"Big\"\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "3 requests: 2 same, 1 differ (0 newly rejected, 0 newly accepted, 1 with other plans)"
        ),
        "{stdout}"
    );

    // The echoing test handler accepts what the built-in one rejects.
    let output = diff("builtin", &test_guest("hostile_guest"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("3: newly accepted: echo (1 operations)"),
        "{stdout}"
    );

    // Read only: the requests are all there, nothing was stored.
    assert_eq!(files(&requests), before);
    assert!(!widgets.join("widgets").exists());
}

/// The label stored for widget `id` of Sue Smith under `widgets`.
fn stored_label(widgets: &Path, id: &str) -> String {
    let stored = std::fs::read(widgets.join("widgets/sue-smith").join(id)).unwrap();
    let stored: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    stored["label"].as_str().unwrap().to_owned()
}

/// Runs the built-in handler over `requests` with `candidate` in shadow
/// and `flags`; the summary and the log.
fn run_with_candidate(requests: &Path, widgets: &Path, candidate: &str, flags: &[&str]) -> (String, String) {
    let output = run_ok(
        host()
            .args(["run", "--until-empty", "--concurrency", "1", "--requests-dir"])
            .arg(requests)
            .arg("--widgets-dir")
            .arg(widgets)
            .arg("--candidate")
            .arg(test_guest(candidate))
            .args(flags),
    );
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_candidate_in_shadow_is_compared_on_every_request_and_changes_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let (requests, widgets) = (scratch.path().join("requests"), scratch.path().join("widgets"));
    std::fs::create_dir_all(&requests).unwrap();
    std::fs::write(requests.join("1"), create_request("w1", "  Big  ", 5)).unwrap();
    std::fs::write(requests.join("2"), create_request("w2", "plain", 5)).unwrap();
    std::fs::write(requests.join("3"), "not json").unwrap();

    // The label-trimming candidate differs on one request, the echoing
    // one accepts what the live handler rejects.
    let records = scratch.path().join("records.jsonl");
    let (summary, log) = run_with_candidate(
        &requests,
        &widgets,
        "trimming_guest",
        &[
            "--promote-after",
            "1",
            "--candidate-records",
            records.to_str().unwrap(),
        ],
    );
    assert!(
        summary.contains("candidate:     2 agreed, 1 differed, 0 failed, 0 not compared\n")
            || summary.ends_with("candidate:     2 agreed, 1 differed, 0 failed, 0 not compared"),
        "{summary}"
    );
    assert!(
        !summary.contains("promoted"),
        "a candidate that differs is never promoted: {summary}"
    );
    assert_eq!(
        log.matches("it will not be promoted in this run").count(),
        1,
        "said once: {log}"
    );
    assert!(
        log.contains("The candidate differs: its plan is another.")
            && log.contains(r#"put widgets/sue-smith/w1: .label: old "  Big  ", new "Big""#),
        "{log}"
    );
    // Only the live plans were carried out.
    assert_eq!(stored_label(&widgets, "w1"), "  Big  ");
    // The difference was recorded; diff prints it as it prints its own.
    let printed = host().args(["diff", "--records"]).arg(&records).output().unwrap();
    assert_eq!(printed.status.code(), Some(1), "differences exit 1");
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert_eq!(
        printed,
        "1: plans differ\n  put widgets/sue-smith/w1: .label: old \"  Big  \", new \"Big\"\n1 recorded differences (1 plans-differ)\n"
    );
    assert!(summary.contains("dead-lettered: 1"), "{summary}");

    std::fs::write(requests.join("4"), "not json either").unwrap();
    let (summary, log) = run_with_candidate(&requests, &widgets, "hostile_guest", &[]);
    assert!(summary.contains("0 agreed, 1 differed"), "{summary}");
    assert!(log.contains("difference=\"newly-accepted\""), "{log}");
    assert!(
        requests.join("dead-letter").join("4").exists(),
        "the request is dead-lettered, as the live handler says"
    );
}

#[test]
fn a_candidate_reads_the_store_as_the_live_handler_read_it() {
    let scratch = tempfile::tempdir().unwrap();
    let (requests, widgets) = (scratch.path().join("requests"), scratch.path().join("widgets"));
    std::fs::create_dir_all(&requests).unwrap();
    // Each request's own plan changes what the next read finds: the
    // candidate, asked after the live plan is stored, must see the store
    // as it was before it.
    for (i, request) in [
        create_request("w1", "one", 5),
        r#"{"type":"update","requestId":"u1","widgetId":"w1","owner":"Sue Smith","label":"two"}"#.into(),
        r#"{"type":"delete","requestId":"d1","widgetId":"w1","owner":"Sue Smith"}"#.into(),
        create_request("w1", "three", 5),
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(requests.join(format!("{i}")), request).unwrap();
    }
    let output = run_ok(
        host()
            .args([
                "run",
                "--until-empty",
                "--concurrency",
                "1",
                "--candidate",
                "builtin",
                "--requests-dir",
            ])
            .arg(&requests)
            .arg("--widgets-dir")
            .arg(&widgets),
    );
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(
        summary.contains("candidate:     4 agreed, 0 differed, 0 failed, 0 not compared"),
        "{summary}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stored_label(&widgets, "w1"), "three");
}

#[test]
fn a_candidate_that_agrees_is_promoted_after_n_requests_and_then_handles_the_rest() {
    let scratch = tempfile::tempdir().unwrap();
    let (requests, widgets) = (scratch.path().join("requests"), scratch.path().join("widgets"));
    std::fs::create_dir_all(&requests).unwrap();
    // Twenty requests both handlers treat alike, then one they would not.
    for i in 1..=20 {
        std::fs::write(
            requests.join(format!("{i:02}")),
            create_request(&format!("w{i}"), "plain", 5),
        )
        .unwrap();
    }
    std::fs::write(requests.join("21"), create_request("w21", "  Big  ", 5)).unwrap();

    let (summary, log) = run_with_candidate(&requests, &widgets, "trimming_guest", &["--promote-after", "3"]);
    assert!(summary.contains("; promoted"), "{summary}");
    assert!(log.contains("Candidate promoted"), "{log}");
    // Promoted: the last request was handled by the candidate, and no
    // longer compared.
    assert_eq!(stored_label(&widgets, "w21"), "Big");
    assert!(!log.contains("The candidate differs"), "{log}");
}

#[test]
fn redrive_after_a_fix_reaches_the_end_state_of_the_fixed_run() {
    let scratch = tempfile::tempdir().unwrap();
    let requests = scratch.path().join("requests");
    produce(&mut host(), "--requests-dir", &requests, 200, 61);
    // Three creates with long descriptions, of widgets of their own, and
    // one request no handler accepts.
    for (key, id) in [
        ("1700000000001", "big-1"),
        ("1700000000002", "big-2"),
        ("1800000000000", "big-3"),
    ] {
        std::fs::write(requests.join(key), create_request(id, "L", 5000)).unwrap();
    }
    std::fs::write(requests.join("1700000000003"), "not json").unwrap();
    let reference = scratch.path().join("reference");
    copy_requests(&requests, &reference);

    // The fixed run, on the original requests.
    let want = scratch.path().join("want");
    run_ok(
        host()
            .arg("run")
            .arg("--requests-dir")
            .arg(&reference)
            .arg("--widgets-dir")
            .arg(&want)
            .arg("--until-empty"),
    );

    // The broken run: plans over 3,000 bytes are refused.
    let widgets = scratch.path().join("widgets");
    let run = |extra: &[&str]| {
        run_ok(
            host()
                .arg("run")
                .arg("--requests-dir")
                .arg(&requests)
                .arg("--widgets-dir")
                .arg(&widgets)
                .arg("--until-empty")
                .args(extra),
        )
    };
    run(&["--max-plan-bytes", "3000"]);
    let dead = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = files(&dir.join("dead-letter"))
            .into_keys()
            .filter(|k| !k.ends_with(".reason"))
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        dead(&requests),
        ["1700000000001", "1700000000002", "1700000000003", "1800000000000"]
    );

    // A dry run moves nothing.
    let output = run_ok(
        host()
            .arg("redrive")
            .arg("--requests-dir")
            .arg(&requests)
            .arg("--dry-run"),
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("Would move 4 of 4 dead letters back (0 left).")
    );
    assert_eq!(dead(&requests).len(), 4);

    // With the handler as judge, the request it still refuses stays.
    let output = run_ok(
        host()
            .arg("redrive")
            .arg("--requests-dir")
            .arg(&requests)
            .args(["--handler", "builtin", "--widgets-dir"])
            .arg(&widgets),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("1700000000003: left: the handler still refuses it"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Moved 3 of 4 dead letters back (1 left)."),
        "{stdout}"
    );
    assert_eq!(dead(&requests), ["1700000000003"]);
    assert!(!requests.join("dead-letter/1700000000001.reason").exists());

    run(&[]);
    let widgets_of = |dir: &Path| -> BTreeMap<String, Vec<u8>> {
        files(dir)
            .into_iter()
            .filter(|(k, _)| k.starts_with("widgets/"))
            .collect()
    };
    assert!(
        widgets_of(&widgets) == widgets_of(&want),
        "the redriven run's end state differs"
    );
    assert_eq!(dead(&requests), dead(&reference));
}

#[test]
fn every_minimal_template_builds_handles_its_sample_request_and_passes_its_own_case() {
    let scratch = tempfile::tempdir().unwrap();
    for (lang, build, source) in [
        ("rust", "./build.sh", "src/lib.rs"),
        ("python", "./build.sh", "handler.py"),
        (
            "javascript",
            "npm ci --no-audit --no-fund --silent && node build.mjs",
            "handler.js",
        ),
    ] {
        let dir = scratch.path().join(format!("minimal-{lang}"));
        run_ok(
            host()
                .args(["new-handler", "--minimal", "--lang", lang])
                .arg(&dir),
        );
        let lines = std::fs::read_to_string(dir.join(source)).unwrap().lines().count();
        assert!(lines <= 70, "{lang}: the minimal handler is {lines} lines");
        build_as_an_author(&dir, lang, build);
        let invoked = run_ok(
            host()
                .current_dir(&dir)
                .args(["invoke", "handler.wasm", "request.json"]),
        );
        let stdout = String::from_utf8_lossy(&invoked.stdout);
        assert!(
            stdout.contains("kind: create")
                && stdout.contains("put widgets/mary-matthews/8123f304-f23f-440b-a6d3-80e979fa4cd6"),
            "{lang}: {stdout}"
        );
        let own = run_ok(host().current_dir(&dir).args([
            "check",
            "handler.wasm",
            "--no-builtin-cases",
            "--cases",
            "cases",
        ]));
        assert!(
            String::from_utf8_lossy(&own.stdout).contains("2 passed, 0 failed"),
            "{lang}"
        );
        // The built-in suite shows what the full contract asks beyond it.
        let full = host()
            .current_dir(&dir)
            .args(["check", "handler.wasm"])
            .output()
            .unwrap();
        assert_eq!(full.status.code(), Some(1), "{lang}");
    }
}

/// Builds the project in `dir` with `build`, as its author would, outside
/// this workspace's build.
fn build_as_an_author(dir: &Path, lang: &str, build: &str) {
    let built = std::process::Command::new("bash")
        .args(["-c", build])
        .current_dir(dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{lang} template did not build:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
}

#[test]
fn every_template_builds_and_passes_check_with_its_own_cases() {
    let scratch = tempfile::tempdir().unwrap();
    for (lang, build) in [
        ("rust", "./build.sh"),
        ("python", "./build.sh"),
        (
            "javascript",
            "npm ci --no-audit --no-fund --silent && node build.mjs",
        ),
    ] {
        let dir = scratch.path().join(format!("my-{lang}-handler"));
        run_ok(host().args(["new-handler", "--lang", lang]).arg(&dir));
        for file in ["README.md", "wit/handler.wit", "cases/example.json"] {
            assert!(dir.join(file).is_file(), "{lang}: no {file}");
        }
        build_as_an_author(&dir, lang, build);
        // The README's `invoke handler.wasm request.json`.
        let invoked = run_ok(
            host()
                .current_dir(&dir)
                .args(["invoke", "handler.wasm", "request.json"]),
        );
        assert!(
            String::from_utf8_lossy(&invoked.stdout).contains("kind: create"),
            "{lang}"
        );
        let output = run_ok(
            host()
                .arg("check")
                .arg(dir.join("handler.wasm"))
                .arg("--cases")
                .arg(dir.join("cases")),
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains(" passed, 0 failed"), "{lang}: {stdout}");
        assert!(
            stdout.contains("ok   ") && stdout.contains("example.json"),
            "{lang}: {stdout}"
        );
        // What a request costs it in instances: its handling's own, and a
        // share of the few kept instances that answer ordering keys.
        let requests = scratch.path().join(format!("{lang}-requests"));
        produce(&mut host(), "--requests-dir", &requests, 60, 64);
        let output = run_ok(
            host()
                .arg("run")
                .arg("--requests-dir")
                .arg(&requests)
                .arg("--widgets-dir")
                .arg(scratch.path().join(format!("{lang}-widgets")))
                .arg("--until-empty")
                .arg("--handler")
                .arg(dir.join("handler.wasm")),
        );
        let summary = String::from_utf8_lossy(&output.stdout);
        let (keys, handling) = instances(&summary);
        assert_eq!(
            handling, 60,
            "{lang}: one instance per request's handling\n{summary}"
        );
        assert!(
            (1..=8).contains(&keys),
            "{lang}: ordering keys answered by a few kept instances, not one each: {keys}\n{summary}"
        );
    }
}

/// The instances a run's summary says it made: for ordering keys, and for
/// handling.
fn instances(summary: &str) -> (u64, u64) {
    let line = summary
        .lines()
        .find(|line| line.trim_start().starts_with("instances:"))
        .unwrap_or_else(|| panic!("no instances line in {summary}"));
    let number_before = |label: &str| -> u64 {
        let before = &line[..line
            .find(label)
            .unwrap_or_else(|| panic!("no {label:?} in {line}"))];
        before.split_whitespace().last().unwrap().parse().unwrap()
    };
    (
        number_before(" for ordering keys"),
        number_before(" for handling"),
    )
}

#[test]
fn reused_python_instances_reach_the_end_state_of_fresh_ones() {
    let scratch = tempfile::tempdir().unwrap();
    let requests = scratch.path().join("requests");
    produce(&mut host(), "--requests-dir", &requests, 300, 62);
    let reference = scratch.path().join("reference");
    copy_requests(&requests, &reference);
    let run = |requests: &Path, widgets: &Path, extra: &[&str]| {
        run_ok(
            host()
                .arg("run")
                .arg("--requests-dir")
                .arg(requests)
                .arg("--widgets-dir")
                .arg(widgets)
                .arg("--until-empty")
                .arg("--handler")
                .arg(other_language_handler("widget_handler_py.wasm"))
                .args(extra),
        )
    };
    let (fresh, reused) = (scratch.path().join("fresh"), scratch.path().join("reused"));
    run(&reference, &fresh, &[]);
    run(&requests, &reused, &["--handler-reuse", "50"]);
    assert!(
        files(&fresh) == files(&reused),
        "reusing instances changed the end state"
    );
    assert!(files(&reused).keys().any(|k| k.starts_with("widgets/")));
}

#[test]
fn redrive_leaves_a_dead_letter_over_the_request_limit_unread() {
    let scratch = tempfile::tempdir().unwrap();
    let requests = scratch.path().join("requests");
    let dead = requests.join("dead-letter");
    std::fs::create_dir_all(&dead).unwrap();
    // A 2 MiB dead letter (over the default 1 MiB limit) and a small one.
    let big = format!(
        r#"{{"type":"create","requestId":"r","widgetId":"big","owner":"Sue Smith","label":"{}"}}"#,
        "x".repeat(2 << 20)
    );
    std::fs::write(dead.join("1700000000001"), &big).unwrap();
    std::fs::write(dead.join("1700000000001.reason"), "request too large\n").unwrap();
    let small = r#"{"type":"create","requestId":"r","widgetId":"small","owner":"Sue Smith","label":"L"}"#;
    std::fs::write(dead.join("1700000000002"), small).unwrap();
    std::fs::write(dead.join("1700000000002.reason"), "rejected\n").unwrap();
    let output = run_ok(
        host()
            .arg("redrive")
            .arg("--requests-dir")
            .arg(&requests)
            .args(["--handler", "builtin"]),
    );
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        out.contains(
            "1700000000001: left: 2097233 bytes, over the limit of 1048576 (--max-request-bytes); not read"
        ),
        "{out}"
    );
    assert!(out.contains("Moved 1 of 2 dead letters back (1 left)."), "{out}");
    assert_eq!(
        std::fs::read_to_string(dead.join("1700000000001")).unwrap(),
        big,
        "left where it was"
    );
    assert!(requests.join("1700000000002").is_file(), "the small one is back");
}

/// Writes `requests` (name, body) into a running host's folder, each whole
/// (written aside, then renamed), and waits until it has taken them all.
fn feed(folder: &Path, requests: &[(String, String)]) {
    for (name, body) in requests {
        let temp = folder.join(format!(".{name}"));
        std::fs::write(&temp, body).unwrap();
        std::fs::rename(&temp, folder.join(name)).unwrap();
    }
    wait_until(Duration::from_secs(60), "the host took every request fed", || {
        requests.iter().all(|(name, _)| !folder.join(name).exists())
    });
}

#[test]
fn a_reload_after_a_promotion_keeps_the_candidate_unless_the_file_changed() {
    let scratch = tempfile::tempdir().unwrap();
    let (requests, widgets) = (scratch.path().join("requests"), scratch.path().join("widgets"));
    std::fs::create_dir_all(&requests).unwrap();
    let handler = scratch.path().join("handler.wasm");
    std::fs::copy(test_guest("widget_guest"), &handler).unwrap();
    let running = Running::start(
        host()
            .args(["run", "--concurrency", "1", "--promote-after", "3", "--candidate"])
            .arg(test_guest("trimming_guest"))
            .arg("--handler")
            .arg(&handler)
            .arg("--requests-dir")
            .arg(&requests)
            .arg("--widgets-dir")
            .arg(&widgets),
    );
    running.wait_for("Starting.", Duration::from_secs(60));
    let creates = |from: u32, to: u32, label: &str| -> Vec<(String, String)> {
        (from..to)
            .map(|i| (format!("{i:02}"), create_request(&format!("w{i}"), label, 5)))
            .collect()
    };
    feed(&requests, &creates(1, 6, "plain"));
    running.wait_for("Candidate promoted", Duration::from_secs(60));
    // The file still holds the handler the candidate replaced: kept.
    running.signal("-HUP");
    running.wait_for("Reload kept the promoted candidate", Duration::from_secs(60));
    feed(&requests, &creates(10, 11, "  Big  "));
    assert_eq!(
        stored_label(&widgets, "w10"),
        "Big",
        "the candidate still handles requests"
    );
    // A file that changed is loaded, and the log says what it replaced.
    replace(&handler, &std::fs::read(test_guest("hostile_guest")).unwrap());
    running.signal("-HUP");
    running.wait_for("REPLACING THE PROMOTED CANDIDATE", Duration::from_secs(60));
    running.signal("-TERM");
    let (status, summary, log) = running.finish();
    assert!(status.success(), "{log}");
    assert!(
        summary.contains(
            "handler swaps: 1 candidate promoted; 2 reloaded (SIGHUP), replacing the promoted candidate"
        ),
        "{summary}"
    );
}

#[test]
fn a_swap_to_a_handler_failing_in_ordering_key_is_rolled_back() {
    let scratch = tempfile::tempdir().unwrap();
    let (requests, handler, running) = start_with_rollback(scratch.path(), &["--concurrency", "1"]);
    feed_plain_requests(&requests, 0, 20);
    // The same handler again (a swap all the same), then requests it traps
    // on in ordering-key.
    replace(&handler, &std::fs::read(test_guest("hostile_guest")).unwrap());
    running.wait_for("Handler reloaded.", Duration::from_secs(60));
    let traps: Vec<(String, String)> = (20..30)
        .map(|i| (format!("{i:04}"), r#"{"widgetId":"key-trap"}"#.to_owned()))
        .collect();
    feed(&requests, &traps);
    running.signal("-TERM");
    let (status, summary, log) = running.finish();
    assert!(status.success(), "{log}");
    assert!(log.contains("Rolled back to the previous handler"), "{log}");
    assert!(summary.contains("rolled back:   1"), "{summary}");
    assert!(
        summary.contains("handler swaps: 1 reloaded (file changed); 2 rolled back"),
        "{summary}"
    );
}

#[test]
fn a_candidate_is_asked_both_exports_and_about_requests_the_live_handler_fails_on() {
    let scratch = tempfile::tempdir().unwrap();
    let (requests, widgets) = (scratch.path().join("requests"), scratch.path().join("widgets"));
    let write_requests = || {
        std::fs::create_dir_all(&requests).unwrap();
        for (name, id) in [("1", "w1"), ("2", "key-trap"), ("3", "handle-trap")] {
            std::fs::write(requests.join(name), create_request(id, "plain", 5)).unwrap();
        }
    };
    let run = |live: &str, candidate: &str| {
        let output = run_ok(
            host()
                .args([
                    "run",
                    "--until-empty",
                    "--concurrency",
                    "1",
                    "--handler",
                    live,
                    "--candidate",
                    candidate,
                ])
                .arg("--requests-dir")
                .arg(&requests)
                .arg("--widgets-dir")
                .arg(&widgets),
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let hostile = test_guest("hostile_guest").display().to_string();
    // The live handler accepts all three; the candidate's plan for w1 is
    // another, and it traps in ordering-key on one and in handle on the
    // other.
    write_requests();
    let summary = run("builtin", &hostile);
    assert!(
        summary.contains("candidate:     0 agreed, 1 differed, 2 failed, 0 not compared"),
        "{summary}"
    );
    // The other way round: the live handler fails on two, which the
    // candidate accepts.
    std::fs::remove_dir_all(&requests).unwrap();
    write_requests();
    let summary = run(&hostile, "builtin");
    assert!(
        summary.contains("candidate:     0 agreed, 3 differed, 0 failed, 0 not compared"),
        "{summary}"
    );
}

#[test]
fn a_promoted_candidate_that_refuses_is_rolled_back_and_the_history_says_so() {
    let scratch = tempfile::tempdir().unwrap();
    let (requests, widgets) = (scratch.path().join("requests"), scratch.path().join("widgets"));
    std::fs::create_dir_all(&requests).unwrap();
    // A candidate that agrees on creates, is promoted, then rejects updates.
    let running = Running::start(
        host()
            .args(["run", "--concurrency", "1", "--promote-after", "3", "--candidate"])
            .arg(test_guest("refusing_guest"))
            .args(["--rollback-on-dead-letters", "5", "--rollback-window", "10"])
            .arg("--requests-dir")
            .arg(&requests)
            .arg("--widgets-dir")
            .arg(&widgets),
    );
    running.wait_for("Starting.", Duration::from_secs(60));
    let creates: Vec<(String, String)> = (1..=5)
        .map(|i| (format!("1{i}"), create_request(&format!("w{i}"), "plain", 5)))
        .collect();
    feed(&requests, &creates);
    running.wait_for("Candidate promoted", Duration::from_secs(60));
    let updates: Vec<(String, String)> = (1..=5)
        .map(|i| {
            let update = format!(
                r#"{{"type":"update","requestId":"u{i}","widgetId":"w{i}","owner":"Sue Smith","label":"U"}}"#
            );
            (format!("2{i}"), update)
        })
        .collect();
    feed(&requests, &updates);
    running.signal("-TERM");
    let (status, summary, log) = running.finish();
    assert!(status.success(), "{log}");
    assert!(
        summary
            .contains("handler swaps: 1 candidate promoted; 2 rolled back, replacing the promoted candidate"),
        "{summary}"
    );
    assert!(summary.contains("dead-lettered: 0"), "{summary}");
    for i in 1..=5 {
        assert_eq!(
            stored_label(&widgets, &format!("w{i}")),
            "U",
            "w{i}: the update, by the handler put back"
        );
    }
}

#[test]
fn candidate_records_keep_each_request_key_as_it_is() {
    let scratch = tempfile::tempdir().unwrap();
    let (requests, widgets) = (scratch.path().join("requests"), scratch.path().join("widgets"));
    std::fs::create_dir_all(&requests).unwrap();
    let key = "odd\tname \u{e9}";
    std::fs::write(requests.join(key), create_request("w1", "  Big  ", 5)).unwrap();
    let records = scratch.path().join("records.jsonl");
    run_with_candidate(
        &requests,
        &widgets,
        "trimming_guest",
        &["--candidate-records", records.to_str().unwrap()],
    );
    let line = std::fs::read_to_string(&records).unwrap();
    let record: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert_eq!(record["request_key"], key, "{line}");
}
