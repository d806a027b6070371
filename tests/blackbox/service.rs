//! Running it as a service: the health and readiness probes, every flag
//! from the environment, completions and a man page, and output manners
//! (-q, -v, NO_COLOR, a wrong RUST_LOG, fatal errors as JSON).

use crate::queue::{create_queue, fauxqs, sqs};
use crate::util::*;
use std::time::Duration;

#[test]
fn probes_say_alive_and_ready_while_running_and_not_ready_once_stopping() {
    let queue = create_queue(&sqs(), "probed", true);
    let widgets = tempfile::tempdir().unwrap();
    // An idle queue: a stop waits for the receive under way (5 s at most),
    // the window in which the host is stopping.
    let running = Running::start(
        host()
            .env("AWS_ENDPOINT_URL_SQS", fauxqs())
            .args([
                "run",
                "--metrics-addr",
                "127.0.0.1:0",
                "--queue-wait-seconds",
                "5",
                "-rq",
                &queue,
            ])
            .arg("--widgets-dir")
            .arg(widgets.path()),
    );
    let address = served_at(&running);
    assert_eq!(http(&address, "GET", "/healthz"), (200, "ok\n".into()));
    wait_until(Duration::from_secs(20), "ready", || {
        http(&address, "GET", "/readyz").0 == 200
    });
    assert_eq!(http(&address, "GET", "/readyz").1, "ready\n");
    let scrape = http(&address, "GET", "/metrics").1;
    for family in [
        "widget_host_requests_in_flight",
        "widget_host_build_info{version=",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(scrape.contains(family), "no {family} in:\n{scrape}");
    }
    assert!(
        !scrape.contains("candidate"),
        "no candidate, no candidate metrics:\n{scrape}"
    );
    assert_eq!(http(&address, "GET", "/").0, 404);
    assert_eq!(http(&address, "GET", "/healthz/x").0, 404);
    assert_eq!(http(&address, "POST", "/metrics").0, 405);
    running.signal("-TERM");
    running.wait_for(
        "Stopping: letting the receive under way end",
        Duration::from_secs(10),
    );
    let (status, body) = http(&address, "GET", "/readyz");
    assert_eq!(
        (status, body.as_str()),
        (503, "not ready: stopping: finishing the requests in flight\n")
    );
    assert_eq!(http(&address, "GET", "/healthz").0, 200, "alive while it stops");
    let (status, _, log) = running.finish();
    assert!(status.success(), "{log}");
    assert!(
        std::net::TcpStream::connect(&address).is_err(),
        "nothing answers once it has ended"
    );
}

#[test]
fn probes_say_not_ready_while_a_place_cannot_be_opened() {
    // Nothing listens on port 1: the bucket cannot be reached, and opening
    // it is tried again for a minute.
    let running = Running::start(
        host()
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .args([
                "run",
                "--metrics-addr",
                "127.0.0.1:0",
                "-rb",
                "requests",
                "-wb",
                "widgets",
            ]),
    );
    let address = served_at(&running);
    assert_eq!(http(&address, "GET", "/healthz").0, 200);
    // Loading the handler first, then opening the places, never ready.
    wait_until(Duration::from_secs(20), "opening", || {
        let (status, body) = http(&address, "GET", "/readyz");
        assert_eq!(status, 503, "{body}");
        body.contains("opening the request source")
    });
    running.signal("-TERM");
    let (status, _, log) = running.finish();
    assert!(
        !status.success(),
        "a run stopped before its source opened fails: {log}"
    );
}

#[test]
fn a_metrics_address_without_a_port_is_a_usage_error_before_anything_is_opened() {
    let output = host()
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
        .args([
            "run",
            "--metrics-addr",
            "localhost",
            "-rb",
            "requests",
            "-wb",
            "widgets",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is not HOST:PORT") && stderr.contains("localhost:9898"),
        "{stderr}"
    );
}

#[test]
fn every_flag_can_be_set_from_the_environment_and_the_command_line_wins() {
    let scratch = tempfile::tempdir().unwrap();
    let requests = scratch.path().join("requests");
    // `produce` takes its folder from the environment too.
    run_ok(
        host()
            .env("WIDGET_HOST_REQUESTS_DIR", &requests)
            .env("WIDGET_HOST_MAX_WIDGET_REQUESTS", "12")
            .args(["produce", "--seed", "3"]),
    );
    let written = std::fs::read_dir(&requests)
        .unwrap()
        .filter(|e| !e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.'))
        .count();
    assert_eq!(written, 12);
    let run = |extra: &[&str]| {
        let output = run_ok(
            host()
                .env("WIDGET_HOST_REQUESTS_DIR", &requests)
                .env("WIDGET_HOST_WIDGETS_DIR", scratch.path().join("widgets"))
                .env("WIDGET_HOST_CONCURRENCY", "3")
                .env("WIDGET_HOST_UNTIL_EMPTY", "true")
                .args(extra),
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    // With no subcommand, as the original consumer was run.
    let log = run(&[]);
    assert!(log.contains("concurrency=Fixed(3)"), "{log}");
    assert!(
        scratch.path().join("widgets/widgets").is_dir(),
        "the run stored widgets: {log}"
    );
    let log = run(&["run", "--concurrency", "5"]);
    assert!(
        log.contains("concurrency=Fixed(5)"),
        "the command line wins: {log}"
    );
    let help = run_ok(host().args(["run", "--help"]));
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("[env: WIDGET_HOST_MAX_CONCURRENCY="), "{help}");
}

#[test]
fn completions_and_the_man_page_are_made_from_the_flags() {
    let bash = run_ok(host().args(["completions", "bash"]));
    let bash = String::from_utf8_lossy(&bash.stdout);
    assert!(
        bash.contains("--max-concurrency") && bash.contains("new-handler"),
        "{bash}"
    );
    let man = run_ok(host().arg("man"));
    let man = String::from_utf8_lossy(&man.stdout);
    assert!(man.starts_with(".ie") || man.contains(".TH widget-host"), "{man}");
    // Every command's flags, roff escaping the hyphens.
    for flag in [
        "max\\-concurrency",
        "cases\\-from\\-dead\\-letters",
        "WIDGET_HOST_METRICS_ADDR",
    ] {
        assert!(man.contains(flag), "no {flag} in the man page");
    }
    let wrong = host().args(["completions", "cmd.exe"]).output().unwrap();
    assert_eq!(wrong.status.code(), Some(2));
}

#[test]
fn quiet_and_verbose_move_the_log_level_and_a_wrong_rust_log_is_an_error() {
    let scratch = tempfile::tempdir().unwrap();
    let requests = scratch.path().join("requests");
    produce(&mut host(), "--requests-dir", &requests, 5, 8);
    let log = |flags: &[&str], rust_log: Option<&str>| {
        copy_requests(&scratch.path().join("requests"), &scratch.path().join("r"));
        let mut command = host();
        command.env_remove("RUST_LOG");
        if let Some(filter) = rust_log {
            command.env("RUST_LOG", filter);
        }
        let output = command
            .args(flags)
            .args(["run", "--until-empty", "--requests-dir"])
            .arg(scratch.path().join("r"))
            .arg("--widgets-dir")
            .arg(scratch.path().join("w"))
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    // By default: what an operator acts on, not a line per request.
    let (code, default) = log(&[], None);
    assert_eq!(code, Some(0), "{default}");
    assert!(
        default.contains(" INFO ") && !default.contains("Request done."),
        "{default}"
    );
    let (_, quiet) = log(&["-q"], None);
    assert!(!quiet.contains(" INFO "), "{quiet}");
    let (_, verbose) = log(&["-v"], None);
    assert_eq!(verbose.matches("Request done.").count(), 5, "{verbose}");
    let (code, wrong) = log(&[], Some("widget_host=loud"));
    assert_eq!(code, Some(2), "{wrong}");
    assert!(
        wrong.contains("RUST_LOG=\"widget_host=loud\" is not a log filter"),
        "{wrong}"
    );
}

#[test]
fn a_fatal_error_under_json_logs_is_one_json_object() {
    let output = host()
        .args([
            "--log-format",
            "json",
            "run",
            "--until-empty",
            "--handler",
            "/no/such/handler.wasm",
        ])
        .args(["--requests-dir", "r", "--widgets-dir", "w"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap();
    let error: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(error["level"], "ERROR");
    assert_eq!(error["fatal"], true);
    assert!(
        error["message"].as_str().unwrap().contains("handler.wasm"),
        "{error}"
    );
}

#[test]
fn the_summary_can_be_one_json_object() {
    let scratch = tempfile::tempdir().unwrap();
    let requests = scratch.path().join("requests");
    produce(&mut host(), "--requests-dir", &requests, 7, 12);
    let output = run_ok(
        host()
            .args([
                "run",
                "--until-empty",
                "--summary-format",
                "json",
                "--requests-dir",
            ])
            .arg(&requests)
            .arg("--widgets-dir")
            .arg(scratch.path().join("widgets")),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(summary["processed"], 7, "{summary}");
    let applied: u64 = summary["applied"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(
        applied + summary["dead_lettered"].as_u64().unwrap(),
        7,
        "{summary}"
    );
    assert_eq!(summary["instances"]["handle"], 7, "{summary}");
    assert!(summary["busy_seconds"].as_f64().unwrap() <= summary["elapsed_seconds"].as_f64().unwrap());
}
