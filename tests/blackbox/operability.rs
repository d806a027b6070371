//! Operability: Prometheus metrics that count what was processed, JSON
//! logs a shipper can parse, progress on a terminal and off it.

use crate::util::{self, *};
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// Writes `count` produced requests (seeded) into `dir`.
fn produce(dir: &Path, count: u32, seed: u32) {
    util::produce(&mut host(), "--requests-dir", dir, count, seed);
}

/// The value of the sample `name` (with its labels, exactly as written) in
/// a scrape.
fn sample(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{scrape}"))
}

#[test]
fn metrics_count_exactly_what_was_processed() {
    let scratch = tempfile::tempdir().unwrap();
    let requests = scratch.path().join("requests");
    produce(&requests, 40, 9);
    std::fs::write(requests.join("9999999999999"), "not json").unwrap();
    let running = Running::start(
        host()
            .args(["run", "--metrics-addr", "127.0.0.1:0", "--requests-dir"])
            .arg(&requests)
            .arg("--widgets-dir")
            .arg(scratch.path().join("widgets")),
    );
    let address = served_at(&running);
    // Everything done: no request file left in the folder.
    let deadline = std::time::Instant::now() + patience(Duration::from_secs(30));
    let waiting = || {
        std::fs::read_dir(&requests)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_type().unwrap().is_file())
            .count()
    };
    while waiting() > 0 {
        assert!(std::time::Instant::now() < deadline, "requests left");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let (status, scrape) = http(&address, "GET", "/metrics");
    assert_eq!(status, 200, "{scrape}");
    running.signal("-TERM");
    let (status, stdout, _) = running.finish();
    assert!(status.success());

    // The summary's counts, by kind, equal the scrape's.
    let applied = stdout.lines().find(|l| l.contains("applied:")).unwrap();
    let mut total = 0.0;
    for kind in ["create", "update", "delete"] {
        let n: f64 = applied.split(&format!("{kind} ")).nth(1).map_or(0.0, |rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap()
        });
        let label = format!(r#"widget_host_requests_total{{kind="{kind}",outcome="applied"}}"#);
        if n > 0.0 {
            assert_eq!(sample(&scrape, &label), n, "{kind}");
        }
        total += n;
    }
    assert_eq!(total, 40.0, "{stdout}");
    assert_eq!(sample(&scrape, "widget_host_dead_letters_total"), 1.0);
    assert_eq!(
        sample(
            &scrape,
            r#"widget_host_requests_total{kind="other",outcome="dead-lettered"}"#
        ),
        1.0
    );
    assert_eq!(sample(&scrape, "widget_host_handler_seconds_count"), 41.0);
    assert_eq!(sample(&scrape, "widget_host_request_latency_seconds_count"), 41.0);
    assert_eq!(sample(&scrape, "widget_host_requests_in_flight"), 0.0);
    assert_eq!(
        sample(&scrape, r#"widget_host_retries_total{class="transient"}"#),
        0.0
    );
    assert!(sample(&scrape, "widget_host_source_lag_seconds") >= 0.0);
    // A request costs one instance, its handling's: ordering keys are
    // answered by kept instances (as many as were asked at once).
    assert_eq!(
        sample(&scrape, r#"widget_host_handler_instances_total{export="handle"}"#),
        41.0
    );
    let for_keys = sample(
        &scrape,
        r#"widget_host_handler_instances_total{export="ordering-key"}"#,
    );
    assert!(
        (1.0..=8.0).contains(&for_keys),
        "{for_keys} instances for 41 ordering keys"
    );
    assert!(scrape.ends_with("# EOF\n"), "{scrape}");
}

#[test]
fn a_metrics_address_that_is_taken_is_a_start_up_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let scratch = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(scratch.path().join("r")).unwrap();
    let stderr = run_fails(
        host()
            .args([
                "run",
                "--until-empty",
                "--metrics-addr",
                &address,
                "--requests-dir",
            ])
            .arg(scratch.path().join("r"))
            .arg("--widgets-dir")
            .arg(scratch.path().join("w")),
    );
    assert!(
        stderr.contains(&format!("cannot serve metrics on {address}")),
        "{stderr}"
    );
}

#[test]
fn json_logs_are_one_object_per_line_with_the_text_logs_fields() {
    let scratch = tempfile::tempdir().unwrap();
    let requests = scratch.path().join("requests");
    run_ok(
        host()
            .args(["produce", "-mwr", "20", "--seed", "4", "--requests-dir"])
            .arg(&requests),
    );
    // One request the built-in handler rejects, with a newline in its key.
    std::fs::write(requests.join("bad\nkey"), "{").unwrap();
    let log = scratch.path().join("host.log");
    let output = run_ok(
        host()
            .args(["run", "--until-empty", "--log-format", "json", "--requests-dir"])
            .arg(&requests)
            .arg("--widgets-dir")
            .arg(scratch.path().join("widgets"))
            .arg("--log-file")
            .arg(&log),
    );
    let file = std::fs::read_to_string(&log).unwrap();
    for text in [file.as_str(), &String::from_utf8_lossy(&output.stderr)] {
        let events: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect();
        let done: Vec<_> = events
            .iter()
            .filter(|e| e["message"] == "Request done.")
            .collect();
        assert_eq!(done.len(), 20, "{text}");
        for event in done {
            for field in ["timestamp", "level", "request_key", "kind", "widget", "outcome"] {
                assert!(event.get(field).is_some(), "no {field} in {event}");
            }
        }
        let dead = events
            .iter()
            .find(|e| e["message"] == "Request dead-lettered.")
            .expect("the bad request is logged");
        assert_eq!(dead["request_key"], "bad\nkey");
        assert_eq!(dead["outcome"], "dead-lettered");
    }
}

/// Runs `command` with its stderr on a new pseudo-terminal (120 columns)
/// and returns everything written there.
fn on_a_terminal(mut command: std::process::Command) -> String {
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut master, mut slave) = (0, 0);
    let size = libc::winsize {
        ws_row: 24,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty fills two fds we then own; the name may be null.
    let opened = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(opened, 0, "openpty failed");
    // SAFETY: both fds are open and ours alone.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(slave))
        .spawn()
        .unwrap();
    // Our copy of the terminal's far end goes with the command, so reading
    // ends when the child's does.
    drop(command);
    let reader = std::thread::spawn(move || {
        let mut master = std::fs::File::from(master);
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        // Linux answers EIO once every far end is closed.
        while let Ok(n @ 1..) = master.read(&mut chunk) {
            seen.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    assert!(child.wait().unwrap().success());
    reader.join().unwrap()
}

#[test]
fn log_lines_on_a_terminal_are_coloured_unless_no_color_is_set() {
    let scratch = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(scratch.path().join("r")).unwrap();
    let produce_into = |folder: &str, no_color: Option<&str>| {
        let mut run = host();
        run.args(["run", "--until-empty", "--requests-dir"])
            .arg(scratch.path().join("r"))
            .arg("--widgets-dir")
            .arg(scratch.path().join(folder));
        if let Some(value) = no_color {
            run.env("NO_COLOR", value);
        }
        on_a_terminal(run)
    };
    // tracing's colours: the level in green, the time dimmed.
    let coloured = |screen: &str| screen.contains("\x1b[32m") || screen.contains("\x1b[2m");
    let screen = produce_into("a", None);
    assert!(coloured(&screen), "{screen:?}");
    let screen = produce_into("b", Some("1"));
    assert!(screen.contains("INFO") && !coloured(&screen), "{screen:?}");
}

#[test]
fn progress_is_a_bar_on_a_terminal_and_a_line_every_few_seconds_elsewhere() {
    let scratch = tempfile::tempdir().unwrap();
    let mut produce = host();
    produce
        .args(["produce", "-mwr", "100", "-ird", "10", "--requests-dir"])
        .arg(scratch.path().join("a"));
    let screen = on_a_terminal(produce);
    assert!(screen.contains("/100 requests written"), "{screen:?}");
    assert!(screen.contains("left)") && screen.contains("/s,"), "{screen:?}");
    // Drawn in place: the cursor is moved back over the bar.
    assert!(screen.contains("\x1b[2K"), "{screen:?}");

    // The same run into a pipe: no bar, a log line every 3 s.
    let output = run_ok(
        host()
            .args(["produce", "-mwr", "200", "-ird", "20", "--requests-dir"])
            .arg(scratch.path().join("b")),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(" of 200 requests written."), "{stderr}");
    assert!(!stderr.contains("\x1b["), "{stderr}");

    // A run that ends shows its progress too.
    let mut run = host();
    run.args(["run", "--until-empty", "--requests-dir"])
        .arg(scratch.path().join("b"))
        .arg("--widgets-dir")
        .arg(scratch.path().join("w"));
    let screen = on_a_terminal(run);
    assert!(screen.contains("/200 requests"), "{screen:?}");
}
