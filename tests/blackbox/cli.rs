//! The command line as a Unix tool: one error line, documented exit codes,
//! a quiet end when the reader of its output goes away, and signals
//! answered from the first moment.

use crate::util::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn a_fatal_error_is_printed_once_with_exit_code_1() {
    // The hostile handler fails the suite.
    let output = host()
        .arg("check")
        .arg(test_guest("hostile_guest"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("cases failed")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    // Every case fails: "error: N of N cases failed".
    let counts: Vec<&str> = lines[0]
        .strip_prefix("error: ")
        .and_then(|rest| rest.strip_suffix(" cases failed"))
        .map(|rest| rest.split(" of ").collect())
        .unwrap_or_default();
    assert!(counts.len() == 2 && counts[0] == counts[1], "{stderr}");

    // Causes are printed on the same line, outermost first.
    let missing = host().args(["check", "no-such-handler.wasm"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error: ")).count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("cannot read handler no-such-handler.wasm: "),
        "{stderr}"
    );
}

#[test]
fn a_wrong_command_line_exits_2() {
    let scratch = tempfile::tempdir().unwrap();
    let no_destination = host()
        .args(["run", "--requests-dir"])
        .arg(scratch.path())
        .output()
        .unwrap();
    assert_eq!(no_destination.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_destination.stderr).contains("error: no widget destination"));
    let unknown_flag = host().args(["run", "--no-such-flag"]).output().unwrap();
    assert_eq!(unknown_flag.status.code(), Some(2));
    let help = host().args(["run", "--help"]).output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("Examples:"));
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    // As `widget-host check | head -0`: the reader is gone before the first
    // line is written.
    let mut child = host()
        .arg("check")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}: {stderr}", output.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
}

/// Whether process `pid` has a handler for SIGHUP (bit 0 of `SigCgt`).
fn catches_sighup(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & 1 == 1)
}

#[test]
fn a_sighup_at_start_does_not_kill_the_host() {
    let scratch = tempfile::tempdir().unwrap();
    let requests = scratch.path().join("requests");
    std::fs::create_dir(&requests).unwrap();
    // The handler file is a named pipe: the host blocks reading it, at the
    // very start of its work, until the test writes the component.
    let handler = scratch.path().join("handler.wasm");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&handler)
            .status()
            .unwrap()
            .success()
    );
    let mut child = host()
        .args(["run", "-mrt", "1000", "--handler"])
        .arg(&handler)
        .arg("--requests-dir")
        .arg(&requests)
        .arg("--widgets-dir")
        .arg(scratch.path().join("widgets"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + patience(Duration::from_secs(20));
    while !catches_sighup(child.id()) {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("no SIGHUP handler while the host loads its handler");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(100));
    if let Some(status) = child.try_wait().unwrap() {
        panic!("the host died of the SIGHUP: {status}");
    }
    std::fs::write(&handler, std::fs::read(test_guest("widget_guest")).unwrap()).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}: {stderr}", output.status);
    assert!(stderr.contains("Handler loaded."), "{stderr}");
}

#[test]
fn commands_check_every_flag_before_they_open_anything() {
    // Nothing listens on port 1: a command that opened the bucket first
    // would fail on the connection (exit 1), not on its flags (exit 2).
    let unreachable = |command: &mut std::process::Command| {
        command
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .output()
            .unwrap()
    };
    let cases: [(&[&str], &str); 6] = [
        (
            &[
                "redrive",
                "-rb",
                "requests",
                "--handler",
                "builtin",
                "--handler-memory-mb",
                "0",
            ],
            "--handler-memory-mb",
        ),
        (
            &["redrive", "-rq", "requests.fifo"],
            "redrive -rq needs --dead-letter-queue",
        ),
        (
            &["produce", "-rq", "requests.fifo", "--dead-letter-queue", "d.fifo"],
            "for run and redrive",
        ),
        (
            &[
                "run",
                "-rb",
                "requests",
                "--dead-letter-queue",
                "d.fifo",
                "-wb",
                "w",
            ],
            "needs --request-queue",
        ),
        (
            &["diff", "builtin", "builtin", "-rq", "requests.fifo", "-wb", "w"],
            "cannot be read and left in place",
        ),
        (
            &[
                "diff",
                "builtin",
                "builtin",
                "-rb",
                "requests",
                "--handler-timeout-ms",
                "0",
                "-wb",
                "w",
            ],
            "--handler-timeout-ms",
        ),
    ];
    for (args, says) in cases {
        let output = unreachable(host().args(args));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn each_mistake_is_one_line_naming_its_cause_and_the_fix() {
    let scratch = tempfile::tempdir().unwrap();
    let text = scratch.path().join("handler.wasm");
    std::fs::write(&text, "hello\n").unwrap();
    let not_wasm = host().arg("check").arg(&text).output().unwrap();
    assert_eq!(not_wasm.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&not_wasm.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("is not a Wasm component: a component starts with the bytes \\0asm, and this starts with \"hello\\n\"; build one"), "{stderr}");

    let missing = scratch.path().join("no-such-folder");
    let output = host()
        .arg("--requests-dir")
        .arg(&missing)
        .arg("--widgets-dir")
        .arg(scratch.path().join("w"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("create it (mkdir -p {})", missing.display())),
        "{stderr}"
    );

    let cases: [(&[&str], &str); 3] = [
        (
            &[
                "--requests-dir",
                "r",
                "--widgets-dir",
                "w",
                "--candidate",
                "builtin",
                "--promote-after",
                "0",
            ],
            "a candidate is promoted after at least 1 request it agrees on",
        ),
        (
            &["produce", "-mrw", "5", "--requests-dir", "r"],
            "tip: did you mean '-mwr' (--max-widget-requests)?",
        ),
        (
            &["-br", "b", "-wb", "w"],
            "tip: did you mean '-rb' (--request-bucket)?",
        ),
    ];
    for (args, says) in cases {
        let output = host().current_dir(scratch.path()).args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let help = host().args(["help", "--help"]).output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage: widget-host"));
}

#[test]
fn a_slow_first_compile_says_it_is_under_way_even_where_only_errors_are_shown() {
    let python = crate::handlers::other_language_handler("widget_handler_py.wasm");
    let request = tests_dir().join("fixtures/instructor-2022/1612306368338");
    let output = host()
        .env_remove("RUST_LOG")
        .args(["invoke", "--no-compile-cache"])
        .arg(&python)
        .arg(&request)
        .output()
        .unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("to machine code: a first compile takes up to a minute"),
        "{stderr}"
    );
    // The built-in handler compiles in milliseconds: nothing to say.
    let output = host()
        .env_remove("RUST_LOG")
        .args(["invoke", "builtin"])
        .arg(&request)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
}
