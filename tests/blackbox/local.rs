//! The embedded default: a local folder of requests into a local folder of
//! widgets, with the built-in handler.

use crate::util::{self, *};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn run_folder(requests: &Path, widgets: &Path) -> Command {
    let mut command = host();
    command
        .arg("run")
        .arg("--requests-dir")
        .arg(requests)
        .arg("--widgets-dir")
        .arg(widgets);
    command
}

fn produce(requests: &Path, count: u32, seed: u32) {
    util::produce(&mut host(), "--requests-dir", requests, count, seed);
}

/// Produces `count` requests into `scratch/base` and runs a copy of them to
/// the end without interruption; returns the requests' folder and the
/// widgets that run left, the state any other run must reach.
fn uninterrupted_run(scratch: &Path, count: u32, seed: u32) -> (std::path::PathBuf, std::path::PathBuf) {
    let base = scratch.join("base");
    produce(&base, count, seed);
    let reference = scratch.join("reference");
    copy_requests(&base, &reference);
    let reference_widgets = scratch.join("reference-widgets");
    run_ok(run_folder(&reference, &reference_widgets).arg("--until-empty"));
    (base, reference_widgets)
}

/// The requests waiting in `dir`: its files, not its sub-folders nor hidden
/// files, by name (read while the host may be removing them).
fn pending(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| !name.starts_with('.'))
        .collect();
    names.sort();
    names
}

#[test]
fn instructor_samples_leave_exactly_the_expected_widgets_and_dead_letters() {
    let scratch = tempfile::tempdir().unwrap();
    let requests = scratch.path().join("requests");
    let widgets = scratch.path().join("widgets");
    copy_requests(&tests_dir().join("fixtures/instructor-2022"), &requests);

    let output = run_ok(run_folder(&requests, &widgets).arg("--until-empty"));

    // Expected files come from tests/reference/model.py, an independent
    // model of SPEC.md.
    let expected = tests_dir().join("fixtures/instructor-2022-expected");
    assert_same_documents(&widgets.join("widgets"), &expected.join("widgets"));
    assert!(
        files(&widgets).keys().all(|k| k.starts_with("widgets/")),
        "nothing but widgets/ in the store"
    );
    assert_eq!(pending(&requests), Vec::<String>::new(), "every request is taken");

    let dead = files(&requests.join("dead-letter"));
    let expected_dead = files(&expected.join("dead-letter"));
    assert_eq!(expected_dead.len(), 3);
    for (key, bytes) in &expected_dead {
        assert_eq!(dead.get(key), Some(bytes), "dead-letter/{key} keeps its bytes");
        let reason = String::from_utf8(dead[&format!("{key}.reason")].clone()).unwrap();
        assert!(!reason.trim().is_empty(), "dead-letter/{key}.reason says why");
    }
    assert_eq!(
        dead.len(),
        6,
        "only the three bad requests and their reasons: {:?}",
        dead.keys()
    );
    assert!(
        String::from_utf8_lossy(&dead["1612306375892.reason"]).contains("owner"),
        "the create without owner says so"
    );

    let summary = String::from_utf8(output.stdout).unwrap();
    assert!(summary.contains("Processed 35 requests"), "{summary}");
    assert!(summary.contains("dead-lettered: 3"), "{summary}");
    assert!(summary.contains("create 17, delete 5, update 10"), "{summary}");
    // The update of 6984abeb comes after its delete.
    assert!(summary.contains("warnings:      1"), "{summary}");
}

#[test]
fn many_workers_reach_the_same_end_state_as_one() {
    let scratch = tempfile::tempdir().unwrap();
    let base = scratch.path().join("base");
    produce(&base, 1500, 11);
    let mut ends = Vec::new();
    for concurrency in ["1", "16"] {
        let requests = scratch.path().join(format!("requests-{concurrency}"));
        let widgets = scratch.path().join(format!("widgets-{concurrency}"));
        copy_requests(&base, &requests);
        run_ok(run_folder(&requests, &widgets).args(["--until-empty", "--concurrency", concurrency]));
        assert_eq!(pending(&requests), Vec::<String>::new());
        ends.push(files(&widgets));
    }
    assert!(
        ends[0].len() > 300,
        "a realistic run leaves many widgets: {}",
        ends[0].len()
    );
    assert!(ends[0] == ends[1], "concurrency changed the end state");
}

#[test]
fn killed_and_restarted_runs_reach_the_end_state_of_an_uninterrupted_run() {
    let scratch = tempfile::tempdir().unwrap();
    let base = scratch.path().join("base");
    produce(&base, 1500, 12);

    let reference = scratch.path().join("reference");
    copy_requests(&base, &reference);
    let reference_widgets = scratch.path().join("reference-widgets");
    run_ok(run_folder(&reference, &reference_widgets).arg("--until-empty"));

    let requests = scratch.path().join("requests");
    let widgets = scratch.path().join("widgets");
    copy_requests(&base, &requests);
    // SIGKILL at varied moments, restarting each time, until a run finishes.
    let kills = kill_repeatedly(
        || {
            let mut command = run_folder(&requests, &widgets);
            command.args(["--until-empty", "--concurrency", "8"]);
            command
        },
        &[60, 150, 90, 240, 120, 200, 80, 300],
    );
    run_ok(run_folder(&requests, &widgets).arg("--until-empty"));
    assert!(
        kills >= 2,
        "the test must actually interrupt runs ({kills} kills)"
    );
    assert_eq!(pending(&requests), Vec::<String>::new());
    let got = files(&widgets);
    let want = files(&reference_widgets);
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    assert!(got == want, "interrupted runs changed the end state");
}

#[test]
fn requests_arriving_while_running_are_picked_up_and_sigterm_exits_cleanly() {
    let scratch = tempfile::tempdir().unwrap();
    let requests = scratch.path().join("requests");
    let widgets = scratch.path().join("widgets");
    std::fs::create_dir_all(&requests).unwrap();
    let child = run_folder(&requests, &widgets)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // A later key first, then an earlier one: both must be seen.
    let create =
        |id: &str| format!(r#"{{"type":"create","requestId":"r","widgetId":"{id}","owner":"Sue Smith"}}"#);
    std::fs::write(requests.join("2000000000000"), create("late")).unwrap();
    std::fs::write(requests.join("1000000000000"), create("early")).unwrap();
    let deadline = Instant::now() + patience(Duration::from_secs(20));
    while !(widgets.join("widgets/sue-smith/late").exists()
        && widgets.join("widgets/sue-smith/early").exists())
    {
        assert!(Instant::now() < deadline, "the new requests were not processed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = terminate(child);
    assert!(String::from_utf8_lossy(&output.stdout).contains("Processed 2 requests"));
}

#[test]
fn produce_is_deterministic_with_a_seed() {
    let scratch = tempfile::tempdir().unwrap();
    let (a, b) = (scratch.path().join("a"), scratch.path().join("b"));
    produce(&a, 200, 3);
    produce(&b, 200, 3);
    let a = files(&a);
    assert_eq!(a.len(), 200);
    assert!(a == files(&b));
    assert!(a.keys().all(|k| k.len() == 13 && k.starts_with("17000000")));
}

#[test]
fn a_missing_request_folder_is_a_clear_error() {
    let scratch = tempfile::tempdir().unwrap();
    let stderr =
        run_fails(run_folder(&scratch.path().join("nope"), &scratch.path().join("w")).arg("--until-empty"));
    assert!(
        stderr.contains("nope") && stderr.contains("no such folder"),
        "{stderr}"
    );
}

#[test]
fn demo_runs_and_prints_its_summary() {
    let scratch = tempfile::tempdir().unwrap();
    let output = run_ok(
        host()
            .args(["demo", "--requests", "200", "--dir"])
            .arg(scratch.path()),
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("Processed 203 requests"), "{stdout}");
    assert!(stdout.contains("dead-lettered: 3"), "{stdout}");
    assert!(scratch.path().join("widget-host.log").metadata().unwrap().len() > 0);
}

#[test]
fn max_runtime_stops_a_polling_host_cleanly() {
    let scratch = tempfile::tempdir().unwrap();
    let requests = scratch.path().join("requests");
    std::fs::create_dir_all(&requests).unwrap();
    // Without --until-empty the host would poll forever; -mrt stops it.
    let output = run_ok(run_folder(&requests, &scratch.path().join("widgets")).args(["-mrt", "800"]));
    assert!(String::from_utf8_lossy(&output.stdout).contains("Processed 0 requests"));
    assert!(String::from_utf8_lossy(&output.stderr).contains("Maximum run time reached"));
}

#[test]
fn a_request_naming_its_widget_twice_is_refused_not_run_out_of_order() {
    // Readers disagree on which copy of a repeated field counts: the
    // request is refused, and so cannot run beside its widget's others.
    let scratch = tempfile::tempdir().unwrap();
    let requests = scratch.path().join("requests");
    std::fs::create_dir_all(&requests).unwrap();
    for i in 0..200 {
        let create =
            format!(r#"{{"type":"create","requestId":"c{i}","widgetId":"w{i}","owner":"Sue Smith"}}"#);
        let delete = format!(
            r#"{{"type":"delete","requestId":"d{i}","widgetId":"other","widgetId":"w{i}","owner":"Sue Smith"}}"#
        );
        std::fs::write(requests.join(format!("{:05}a", i)), create).unwrap();
        std::fs::write(requests.join(format!("{:05}b", i)), delete).unwrap();
    }
    let widgets = scratch.path().join("widgets");
    let output = run_ok(run_folder(&requests, &widgets).args(["--until-empty", "--concurrency", "16"]));
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(summary.contains("dead-lettered: 200"), "{summary}");
    let stored = files(&widgets.join("widgets/sue-smith"));
    assert_eq!(stored.len(), 200, "every widget stays: its delete was refused");
    let reason = std::fs::read_to_string(requests.join("dead-letter/00007b.reason")).unwrap();
    assert!(
        reason.contains("field `widgetId` appears more than once"),
        "{reason}"
    );
}

#[test]
fn running_out_of_file_handles_is_retried_not_dead_lettered() {
    let scratch = tempfile::tempdir().unwrap();
    let (base, reference_widgets) = uninterrupted_run(scratch.path(), 400, 5);

    // 16 file handles for 32 requests at once: opening files fails with
    // EMFILE again and again.
    let requests = scratch.path().join("requests");
    copy_requests(&base, &requests);
    let widgets = scratch.path().join("widgets");
    let output = run_ok(
        Command::new("sh")
            .args(["-c", "ulimit -n 16 && exec \"$0\" \"$@\""])
            .arg(env!("CARGO_BIN_EXE_widget-host"))
            .args(["run", "--until-empty", "--concurrency", "32", "--requests-dir"])
            .arg(&requests)
            .arg("--widgets-dir")
            .arg(&widgets)
            .env("RUST_LOG", "warn"),
    );
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(summary.contains("Processed 400 requests"), "{summary}");
    assert!(summary.contains("dead-lettered: 0"), "{summary}");
    assert_eq!(pending(&requests), Vec::<String>::new());
    assert!(
        files(&widgets) == files(&reference_widgets),
        "the end state differs"
    );
}

#[test]
fn twenty_kills_at_random_moments_over_2000_requests_change_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let (base, reference_widgets) = uninterrupted_run(scratch.path(), 2000, 13);

    let requests = scratch.path().join("requests");
    let widgets = scratch.path().join("widgets");
    copy_requests(&base, &requests);
    let kills = kill_repeatedly(
        || {
            let mut command = run_folder(&requests, &widgets);
            command.arg("--until-empty");
            command
        },
        // Short moments: a whole run over 2,000 requests takes about 2 s.
        &kill_moments(20, 10, 100),
    );
    run_ok(run_folder(&requests, &widgets).arg("--until-empty"));
    assert!(
        kills >= 15,
        "the test must actually interrupt runs ({kills} kills)"
    );
    assert_eq!(pending(&requests), Vec::<String>::new());
    assert!(
        files(&widgets) == files(&reference_widgets),
        "interrupted runs changed the end state"
    );
}

/// A tmpfs of `size` mounted at `at` (the tests run as root, as CI does),
/// unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mounting a small tmpfs needs root, as tests/run.sh has"
        );
        SmallDisk(at.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_keeps_room_for_the_requests_that_fit() {
    let scratch = tempfile::tempdir().unwrap();
    let requests = scratch.path().join("requests");
    std::fs::create_dir_all(&requests).unwrap();
    let widgets = scratch.path().join("widgets");
    let _disk = SmallDisk::mount(&widgets, "1m");
    // A 3 MB widget cannot fit on the 1 MB disk; twenty small ones can.
    let big = format!(
        r#"{{"type":"create","requestId":"b","widgetId":"big","owner":"Sue Smith","description":"{}"}}"#,
        "x".repeat(3 << 20)
    );
    std::fs::write(requests.join("1700000000000"), big).unwrap();
    let running = Running::start(run_folder(&requests, &widgets).args([
        "-mrt",
        "60000",
        "--max-request-bytes",
        "4194304",
    ]));
    running.wait_for("No space left on device", Duration::from_secs(30));
    // The disk has been found full; the small ones come now.
    for i in 1..=20 {
        let small = format!(r#"{{"type":"create","requestId":"s","widgetId":"w{i}","owner":"Sue Smith"}}"#);
        std::fs::write(requests.join(format!(".{i}")), small).unwrap();
        std::fs::rename(
            requests.join(format!(".{i}")),
            requests.join(format!("17000000000{i:02}")),
        )
        .unwrap();
    }
    let deadline = Instant::now() + patience(Duration::from_secs(30));
    while pending(&requests).len() > 1 {
        assert!(
            Instant::now() < deadline,
            "the small requests did not get through: {:?}",
            pending(&requests)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    running.signal("-TERM");
    let (status, stdout, log) = running.finish();
    assert!(status.success(), "{log}");
    assert!(stdout.contains("dead-lettered: 0"), "{stdout}");
    assert_eq!(files(&widgets.join("widgets/sue-smith")).len(), 20);
    // The big one waits in its source; no partial copy of it is left.
    assert_eq!(pending(&requests), ["1700000000000"]);
    let leftovers = std::fs::read_dir(widgets.join(".tmp"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(leftovers, 0, "temporary files left on the full disk");
}
