//! The sandbox: a handler that loops, exhausts its memory or traps has its
//! request dead-lettered, and the host goes on.

use crate::util::*;

#[test]
fn hostile_requests_are_dead_lettered_and_the_host_goes_on() {
    let scratch = tempfile::tempdir().unwrap();
    let requests = scratch.path().join("requests");
    let widgets = scratch.path().join("widgets");
    std::fs::create_dir_all(&requests).unwrap();
    for (key, body) in [
        ("1", "loop"),
        ("2", "bomb"),
        ("3", "trap"),
        ("4", "reject"),
        ("5", "fine"),
    ] {
        std::fs::write(requests.join(key), body).unwrap();
    }
    let output = run_ok(
        host()
            .args([
                "run",
                "--until-empty",
                "--handler-timeout-ms",
                "300",
                "--handler-memory-mb",
                "32",
            ])
            .arg("--handler")
            .arg(test_guest("hostile_guest"))
            .arg("--requests-dir")
            .arg(&requests)
            .arg("--widgets-dir")
            .arg(&widgets),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("dead-lettered: 4"), "{stdout}");
    assert_eq!(std::fs::read_to_string(widgets.join("echo/5")).unwrap(), "fine");

    let reason =
        |key: &str| std::fs::read_to_string(requests.join(format!("dead-letter/{key}.reason"))).unwrap();
    for (key, body) in [("1", "loop"), ("2", "bomb"), ("3", "trap"), ("4", "reject")] {
        assert_eq!(
            std::fs::read_to_string(requests.join("dead-letter").join(key)).unwrap(),
            body
        );
    }
    assert!(reason("1").contains("time limit"), "{}", reason("1"));
    assert!(reason("2").contains("memory"), "{}", reason("2"));
    assert!(reason("3").contains("deliberate trap"), "{}", reason("3"));
    assert!(
        reason("4").contains("rejected: deliberate rejection"),
        "{}",
        reason("4")
    );
}

#[test]
fn a_file_that_is_not_a_handler_component_is_refused_at_start() {
    let scratch = tempfile::tempdir().unwrap();
    let bogus = scratch.path().join("bogus.wasm");
    std::fs::write(&bogus, b"\0asm not really").unwrap();
    std::fs::create_dir_all(scratch.path().join("r")).unwrap();
    let stderr = run_fails(
        host()
            .args(["run", "--until-empty", "--handler"])
            .arg(&bogus)
            .arg("--requests-dir")
            .arg(scratch.path().join("r"))
            .arg("--widgets-dir")
            .arg(scratch.path().join("w")),
    );
    assert!(
        stderr.contains("not a usable widget-handler component"),
        "{stderr}"
    );
}

#[test]
fn a_stop_cancels_a_long_handler_call_and_leaves_its_request() {
    let scratch = tempfile::tempdir().unwrap();
    let requests = scratch.path().join("requests");
    std::fs::create_dir_all(&requests).unwrap();
    std::fs::write(requests.join("1"), "loop").unwrap();
    let child = host()
        .args(["run", "--handler-timeout-ms", "120000", "--handler"])
        .arg(test_guest("hostile_guest"))
        .arg("--requests-dir")
        .arg(&requests)
        .arg("--widgets-dir")
        .arg(scratch.path().join("widgets"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Long enough for the call to be under way.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let stopped = std::time::Instant::now();
    let output = terminate(child);
    assert!(
        stopped.elapsed() < std::time::Duration::from_secs(10),
        "the stop waited for the call: {:?}",
        stopped.elapsed()
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("Processed 0 requests"), "{stdout}");
    assert_eq!(std::fs::read_to_string(requests.join("1")).unwrap(), "loop");
    assert!(!requests.join("dead-letter").exists());
}
