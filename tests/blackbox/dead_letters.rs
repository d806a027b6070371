//! Dead letters on the embedded default: each is the only copy of a request
//! the host refused, so none is ever replaced, and none can stall a run.

use crate::util::*;
use std::path::Path;

/// `run --until-empty` over `requests` into `scratch/widgets`; its summary.
fn run_until_empty(requests: &Path) -> String {
    let widgets = requests.parent().unwrap().join("widgets");
    let output = run_ok(
        host()
            .args(["run", "--until-empty", "--requests-dir"])
            .arg(requests)
            .arg("--widgets-dir")
            .arg(&widgets),
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The dead letters in `requests/dead-letter`, by file name: their bytes.
fn dead_letters(requests: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    files(&requests.join("dead-letter"))
        .into_iter()
        .filter(|(name, _)| !name.ends_with(".reason"))
        .collect()
}

#[test]
fn a_request_dead_lettered_under_a_name_already_taken_keeps_both() {
    let scratch = tempfile::tempdir().unwrap();
    let requests = scratch.path().join("requests");
    std::fs::create_dir_all(&requests).unwrap();
    let bad = |n: u32| {
        format!(r#"{{"type":"create","requestId":"r{n}","widgetId":"w{n}","owner":"Bad Owner {n}"}}"#)
    };
    // Two runs, one request each, under one name.
    for n in 1..=2 {
        std::fs::write(requests.join("order.json"), bad(n)).unwrap();
        let summary = run_until_empty(&requests);
        assert!(summary.contains("dead-lettered: 1"), "{summary}");
    }
    let kept = dead_letters(&requests);
    assert_eq!(kept.len(), 2, "both kept: {:?}", kept.keys());
    let mut bodies: Vec<Vec<u8>> = kept.into_values().collect();
    bodies.sort();
    assert_eq!(bodies, [bad(1).into_bytes(), bad(2).into_bytes()]);
    // Each with its own reason; redrive takes the first back, and the
    // second once its key is free again.
    let reasons = files(&requests.join("dead-letter"))
        .keys()
        .filter(|name| name.ends_with(".reason"))
        .count();
    assert_eq!(reasons, 2);
    let redrive = |requests: &Path| {
        let output = run_ok(host().args(["redrive", "--requests-dir"]).arg(requests));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let moved = redrive(&requests);
    assert!(
        moved.contains("Moved 1 of 2 dead letters back (1 left)"),
        "{moved}"
    );
    assert_eq!(
        std::fs::read(requests.join("order.json")).unwrap(),
        bad(1).into_bytes()
    );
    std::fs::remove_file(requests.join("order.json")).unwrap();
    let moved = redrive(&requests);
    assert!(
        moved.contains("Moved 1 of 1 dead letters back (0 left)"),
        "{moved}"
    );
    assert_eq!(
        std::fs::read(requests.join("order.json")).unwrap(),
        bad(2).into_bytes()
    );
}

#[test]
fn two_names_that_escape_alike_are_both_kept_in_one_run() {
    use std::os::unix::ffi::OsStrExt;
    let scratch = tempfile::tempdir().unwrap();
    let requests = scratch.path().join("requests");
    std::fs::create_dir_all(&requests).unwrap();
    // A name that is not text is kept under its escaped form, `3\xff`,
    // which is also the name of the other file.
    std::fs::write(requests.join(std::ffi::OsStr::from_bytes(b"3\xff")), b"not text").unwrap();
    std::fs::write(requests.join("3\\xff"), b"not json").unwrap();
    let summary = run_until_empty(&requests);
    assert!(summary.contains("dead-lettered: 2"), "{summary}");
    let mut bodies: Vec<Vec<u8>> = dead_letters(&requests).into_values().collect();
    bodies.sort();
    assert_eq!(bodies, [b"not json".to_vec(), b"not text".to_vec()]);
}

#[test]
fn a_request_whose_name_leaves_no_room_for_its_reason_is_dead_lettered_and_the_run_ends() {
    let scratch = tempfile::tempdir().unwrap();
    let requests = scratch.path().join("requests");
    std::fs::create_dir_all(&requests).unwrap();
    // 252 bytes: `NAME.reason` would pass the 255 a file name may have.
    let name = format!("{}.json", "7".repeat(247));
    std::fs::write(requests.join(&name), b"not json").unwrap();
    let summary = run_until_empty(&requests);
    assert!(summary.contains("dead-lettered: 1"), "{summary}");
    assert!(!requests.join(&name).exists());
    let kept = files(&requests.join("dead-letter"));
    let reason = kept
        .iter()
        .find(|(name, _)| name.ends_with(".reason"))
        .map(|(_, reason)| String::from_utf8_lossy(reason).into_owned())
        .expect("a reason");
    assert!(
        reason.contains(&format!("the request's key was {name}")),
        "{reason}"
    );
    assert_eq!(
        dead_letters(&requests).into_values().collect::<Vec<_>>(),
        [b"not json".to_vec()]
    );
}

#[test]
fn a_request_file_named_dead_letter_is_set_aside_and_runs_go_on() {
    let scratch = tempfile::tempdir().unwrap();
    let requests = scratch.path().join("requests");
    std::fs::create_dir_all(&requests).unwrap();
    std::fs::write(requests.join("dead-letter"), b"not json").unwrap();
    std::fs::write(requests.join("also-bad"), b"not json either").unwrap();
    let summary = run_until_empty(&requests);
    assert!(summary.contains("dead-lettered: 2"), "{summary}");
    assert!(requests.join("dead-letter").is_dir());
    let kept = dead_letters(&requests);
    assert_eq!(kept["dead-letter"], b"not json");
    assert_eq!(kept["also-bad"], b"not json either");
    // And the next run has nothing to trip on.
    let summary = run_until_empty(&requests);
    assert!(summary.contains("Processed 0 requests"), "{summary}");
}

#[test]
fn a_handler_that_cannot_start_within_its_memory_limit_is_refused_before_any_request() {
    let scratch = tempfile::tempdir().unwrap();
    let requests = scratch.path().join("requests");
    std::fs::create_dir_all(&requests).unwrap();
    let create = r#"{"type":"create","requestId":"r1","widgetId":"w1","owner":"Sue Smith"}"#;
    std::fs::write(requests.join("1"), create).unwrap();
    let stderr = run_fails(
        host()
            .args([
                "run",
                "--until-empty",
                "--handler-memory-mb",
                "1",
                "--requests-dir",
            ])
            .arg(&requests)
            .arg("--widgets-dir")
            .arg(scratch.path().join("widgets")),
    );
    assert!(
        stderr.contains("the handler cannot start under its limits"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(requests.join("1")).unwrap(),
        create.as_bytes(),
        "left in place"
    );
    assert!(!requests.join("dead-letter").exists(), "nothing dead-lettered");
}

#[test]
fn cases_from_dead_letters_have_escaped_names_that_stay_apart() {
    let scratch = tempfile::tempdir().unwrap();
    let requests = scratch.path().join("requests");
    std::fs::create_dir_all(&requests).unwrap();
    // Two keys alike for longer than a case name keeps, refused for two
    // reasons, and a key with a newline in it.
    let long = "k".repeat(230);
    std::fs::write(requests.join(format!("{long}1")), b"not json").unwrap();
    std::fs::write(requests.join(format!("{long}2")), br#"{"type":"explode"}"#).unwrap();
    std::fs::write(requests.join("line\nbreak"), br#"{"type":"create"}"#).unwrap();
    let summary = run_until_empty(&requests);
    assert!(summary.contains("dead-lettered: 3"), "{summary}");
    let cases = scratch.path().join("cases");
    run_ok(
        host()
            .args(["check", "--cases-from-dead-letters"])
            .arg(&cases)
            .arg("--requests-dir")
            .arg(&requests),
    );
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cases.join("dead-letters.json")).unwrap()).unwrap();
    let names: Vec<&str> = file["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| case["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.iter().all(|name| !name.contains('\n')), "{names:?}");
    let distinct: std::collections::BTreeSet<&&str> = names.iter().collect();
    assert_eq!(distinct.len(), 3, "{names:?}");
}
