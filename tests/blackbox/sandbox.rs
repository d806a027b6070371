//! The sandbox: a handler that loops, exhausts its memory or traps, floods
//! the log, plans too much or reaches for WASI has its request
//! dead-lettered with a reason naming the limit, and the host goes on,
//! bounded in memory and log.

use crate::util::*;
use std::path::Path;

/// The host's peak memory docs/limits.md promises for hostile handlers under
/// the default limits and 8 workers.
const PEAK_RSS_BOUND: u64 = 600 << 20;

/// Log docs/limits.md promises per hostile request, at most.
const LOG_PER_REQUEST_BOUND: u64 = 1 << 20;

/// Writes `requests` (name, body) into a new folder `requests/` of `root`.
fn write_requests(root: &Path, requests: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = root.join("requests");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, body) in requests {
        std::fs::write(dir.join(name), body).unwrap();
    }
    dir
}

/// Fails if a log line was forged by what a handler or request said, or
/// carries a terminal escape.
fn assert_no_forged_lines(log: &str, stderr: &str) {
    assert!(
        log.contains("forged line"),
        "the forged text is not in the log at all: {log}"
    );
    for line in log.lines().chain(stderr.lines()) {
        assert!(!line.starts_with("2026-01-01"), "forged: {line}");
        assert!(!line.contains('\x1b'), "terminal escape: {line:?}");
    }
}

/// `run --until-empty` with `handler` from `requests` into `scratch/widgets`.
fn run_until_empty(handler: &Path, requests: &Path, scratch: &Path) -> std::process::Command {
    let mut command = host();
    command
        .args(["run", "--until-empty", "--handler"])
        .arg(handler)
        .arg("--requests-dir")
        .arg(requests)
        .arg("--widgets-dir")
        .arg(scratch.join("widgets"));
    command
}

/// The reason beside a dead letter in a request folder.
fn reason(requests: &Path, key: &str) -> String {
    std::fs::read_to_string(requests.join(format!("dead-letter/{key}.reason")))
        .unwrap_or_else(|e| panic!("no dead letter {key}: {e}"))
}

#[test]
fn every_hostile_handler_costs_its_request_only_within_memory_and_log_bounds() {
    let scratch = tempfile::tempdir().unwrap();
    // A server the handler tries to reach: it must see no connection.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let wasi = format!("wasi {}", listener.local_addr().unwrap());
    let hostile: &[(&str, &str, &[&str])] = &[
        ("01", "loop", &["time limit exceeded", "--handler-timeout-ms"]),
        ("02", "recurse", &["out of bounds memory access"]),
        ("03", "bomb", &["memory limit exceeded", "--handler-memory-mb"]),
        ("04", "trap", &["deliberate trap"]),
        ("05", "log-flood", &["time limit exceeded"]),
        ("06", "many-ops", &["1000000 operations", "--max-plan-operations"]),
        ("07", "big-doc", &["100000006 bytes", "--max-plan-bytes"]),
        (
            "08",
            "key-trap",
            &["ordering-key", "deliberate trap in ordering-key"],
        ),
        ("09", "key-loop", &["ordering-key", "time limit exceeded"]),
        (
            "10",
            &wasi,
            &[
                "rejected: file: Err",
                "root: Err",
                "environment: []",
                "PermissionDenied",
            ],
        ),
    ];
    let mut requests: Vec<(&str, &str)> = hostile.iter().map(|(key, body, _)| (*key, *body)).collect();
    requests.extend([("11", "fine"), ("12", "log-forge"), ("13", "also fine")]);
    let dir = write_requests(scratch.path(), &requests);
    let widgets = scratch.path().join("widgets");
    let log = scratch.path().join("host.log");

    // The default limits; 8 workers, as docs/limits.md's bound says.
    let run = run_measured(
        run_until_empty(&test_guest("hostile_guest"), &dir, scratch.path())
            .args(["--concurrency", "8", "--log-file"])
            .arg(&log),
    );
    assert!(run.success, "{}", run.stderr);
    assert!(run.stdout.contains("dead-lettered: 10"), "{}", run.stdout);
    for (key, body, words) in hostile {
        assert_eq!(
            std::fs::read_to_string(dir.join("dead-letter").join(key)).unwrap(),
            *body
        );
        let reason = reason(&dir, key);
        for word in *words {
            assert!(reason.contains(word), "{body}: {reason:?} does not say {word:?}");
        }
    }
    assert_eq!(std::fs::read_to_string(widgets.join("echo/11")).unwrap(), "fine");
    assert_eq!(
        std::fs::read_to_string(widgets.join("echo/13")).unwrap(),
        "also fine"
    );
    assert!(listener.accept().is_err(), "the handler reached the network");
    eprintln!("peak RSS of the host: {} MB", run.peak_rss >> 20);
    assert!(
        run.peak_rss < PEAK_RSS_BOUND,
        "peak RSS {} MB",
        run.peak_rss >> 20
    );

    // The log: bounded, and no line forged by a handler.
    let text = std::fs::read_to_string(&log).unwrap();
    let bytes = text.len() as u64 + run.stderr.len() as u64;
    assert!(
        bytes < LOG_PER_REQUEST_BOUND * requests.len() as u64 && text.len() < (1 << 20),
        "{} bytes of log",
        text.len()
    );
    assert!(text.contains("reached its log limit"), "{text}");
    assert_no_forged_lines(&text, &run.stderr);
}

#[test]
fn table_and_many_memory_bombs_are_stopped_by_one_limit_on_the_whole_call() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = write_requests(scratch.path(), &[("1", "t"), ("2", "m"), ("3", "calm")]);
    let run = run_measured(&mut run_until_empty(
        &tests_dir().join("guests/bombs/bombs.wat"),
        &dir,
        scratch.path(),
    ));
    assert!(run.success, "{}", run.stderr);
    assert!(run.stdout.contains("dead-lettered: 2"), "{}", run.stdout);
    for key in ["1", "2"] {
        let reason = reason(&dir, key);
        assert!(
            reason.contains("memory limit exceeded") && reason.contains("memories and tables"),
            "{reason}"
        );
    }
    assert!(!dir.join("3").exists() && !dir.join("dead-letter/3").exists());
    assert!(
        run.peak_rss < PEAK_RSS_BOUND,
        "peak RSS {} MB",
        run.peak_rss >> 20
    );
}

#[test]
fn requests_over_the_size_limit_are_dead_lettered_unread() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = write_requests(scratch.path(), &[("2", "fine")]);
    // 1 GiB that takes no disk: were it read, the host would hold it all.
    let huge = std::fs::File::create(dir.join("1")).unwrap();
    huge.set_len(1 << 30).unwrap();
    std::fs::write(dir.join("3"), vec![b' '; (1 << 20) + 1]).unwrap();
    let run = run_measured(&mut run_until_empty(
        &test_guest("hostile_guest"),
        &dir,
        scratch.path(),
    ));
    assert!(run.success, "{}", run.stderr);
    assert!(run.stdout.contains("dead-lettered: 2"), "{}", run.stdout);
    assert_eq!(
        std::fs::metadata(dir.join("dead-letter/1")).unwrap().len(),
        1 << 30
    );
    assert!(reason(&dir, "1").contains("1073741824 bytes, over the limit of 1048576 (--max-request-bytes)"));
    assert!(reason(&dir, "3").contains("1048577 bytes"));
    assert_eq!(
        std::fs::read_to_string(scratch.path().join("widgets/echo/2")).unwrap(),
        "fine"
    );
    assert!(run.peak_rss < 200 << 20, "peak RSS {} MB", run.peak_rss >> 20);
}

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

#[test]
fn request_values_cannot_forge_log_lines() {
    let scratch = tempfile::tempdir().unwrap();
    let forged = "\\n2026-01-01T00:00:00.000000Z ERROR forged line \\u001b[2J";
    let dir = write_requests(
        scratch.path(),
        &[
            // Rejected by the built-in handler (its reason quotes the id),
            // and a valid request whose warning names the widget.
            (
                "1",
                &format!(r#"{{"type":"create","requestId":"r","widgetId":"w{forged}","owner":"Sue 7"}}"#),
            ),
            (
                "2",
                &format!(
                    r#"{{"type":"delete","requestId":"r{forged}","widgetId":"w{forged}","owner":"Sue Smith"}}"#
                ),
            ),
        ],
    );
    let log = scratch.path().join("host.log");
    let run = run_measured(
        host()
            .args(["run", "--until-empty", "--requests-dir"])
            .arg(&dir)
            .arg("--widgets-dir")
            .arg(scratch.path().join("widgets"))
            .arg("--log-file")
            .arg(&log),
    );
    assert!(run.success, "{}", run.stderr);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_no_forged_lines(&text, &run.stderr);
}

#[test]
fn links_and_odd_names_in_the_request_folder_are_dead_lettered_once_and_never_followed() {
    use std::os::unix::ffi::OsStrExt;
    let scratch = tempfile::tempdir().unwrap();
    let dir = write_requests(scratch.path(), &[("2", "fine")]);
    let secret = scratch.path().join("secret");
    std::fs::write(&secret, "outside the folder").unwrap();
    std::os::unix::fs::symlink(&secret, dir.join("1")).unwrap();
    std::fs::write(dir.join(std::ffi::OsStr::from_bytes(b"3\xff")), "odd name").unwrap();
    let log = scratch.path().join("host.log");
    let run = run_measured(
        run_until_empty(&test_guest("hostile_guest"), &dir, scratch.path())
            .arg("--log-file")
            .arg(&log),
    );
    assert!(run.success, "{}", run.stderr);
    assert!(run.stdout.contains("dead-lettered: 2"), "{}", run.stdout);
    assert!(reason(&dir, "1").contains("symbolic link"));
    assert!(reason(&dir, "3\\xff").contains("not UTF-8"));
    assert_eq!(
        std::fs::read(dir.join("dead-letter/3\\xff")).unwrap(),
        b"odd name"
    );
    // Nothing outside the folder was read or stored.
    let widgets = files(&scratch.path().join("widgets"));
    assert_eq!(widgets.keys().collect::<Vec<_>>(), ["echo/2"]);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("Request dead-lettered.").count(), 2, "{text}");
}
