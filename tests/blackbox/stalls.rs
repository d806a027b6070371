//! Two faults at once on the folder source: a widget whose store read
//! hangs for ever (its file is a FIFO nobody writes), and a request that
//! names no widget behind it. The other widgets must not wait, and a stop
//! must end the process in time although a read stays blocked in the
//! kernel.

use crate::util::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A widget file that blocks every read: a FIFO no one writes to.
pub fn hang_widget(widgets: &Path, owner_slug: &str, widget: &str) {
    let dir = widgets.join("widgets").join(owner_slug);
    std::fs::create_dir_all(&dir).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(dir.join(widget))
            .status()
            .unwrap()
            .success()
    );
}

pub fn update(widget: &str, i: usize) -> String {
    format!(
        r#"{{"type":"update","requestId":"u{i}","widgetId":"{widget}","owner":"Sue Smith","label":"U{i}"}}"#
    )
}

pub fn create(widget: &str, i: usize) -> String {
    format!(
        r#"{{"type":"create","requestId":"c{i}","widgetId":"{widget}","owner":"Sue Smith","label":"C{i}"}}"#
    )
}

#[test]
fn a_request_without_a_widget_behind_a_hung_widget_holds_up_no_other_widget_and_a_stop_ends_in_time() {
    let (requests, widgets) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    hang_widget(widgets.path(), "sue-smith", "X");
    let mut bodies: Vec<String> = (0..3).map(|i| update("X", i)).collect();
    bodies.push("{}".into());
    bodies.extend((0..30).map(|i| create(&format!("w{i}"), i)));
    for (i, body) in bodies.iter().enumerate() {
        std::fs::write(
            requests
                .path()
                .join(format!("{}", 1_700_000_000_000u64 + i as u64)),
            body,
        )
        .unwrap();
    }
    let started = Instant::now();
    let running = Running::start(
        host()
            .arg("--requests-dir")
            .arg(requests.path())
            .arg("--widgets-dir")
            .arg(widgets.path())
            .args(["-mrt", "6000", "--shutdown-timeout", "2"]),
    );
    // The run stops at 6 s and must be gone 2 s (shutdown timeout) and a
    // second later, whatever the blocked read does.
    let deadline = Duration::from_secs(6 + 2 + 1 + 2);
    let mut running = running;
    while running.child.try_wait().unwrap().is_none() {
        if started.elapsed() > deadline {
            let _ = running.child.kill();
            panic!(
                "the host did not exit {deadline:?} after its start:\n{}",
                running.log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, _, log) = running.finish();
    let stored = (0..30)
        .filter(|i| widgets.path().join(format!("widgets/sue-smith/w{i}")).is_file())
        .count();
    assert_eq!(stored, 30, "every other widget is stored:\n{log}");
    let dead: Vec<String> = std::fs::read_dir(requests.path().join("dead-letter"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        dead.contains(&"1700000000003".to_owned()),
        "the request naming no widget is dead-lettered: {dead:?}\n{log}"
    );
    for i in 0..3 {
        assert!(
            requests
                .path()
                .join(format!("{}", 1_700_000_000_000u64 + i))
                .is_file(),
            "the hung widget's updates stay in the source"
        );
    }
}

/// Every entry below `root`: its path, its kind, and a file's bytes or a
/// link's target.
fn snapshot(root: &Path) -> Vec<(String, String)> {
    let mut entries = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            let path = entry.path();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            let kind = entry.file_type().unwrap();
            let what = if kind.is_symlink() {
                format!("link to {}", std::fs::read_link(&path).unwrap().display())
            } else if kind.is_dir() {
                folders.push(path.clone());
                "folder".into()
            } else if kind.is_file() {
                format!("file {:?}", std::fs::read(&path).unwrap())
            } else {
                "special".into()
            };
            entries.push((name, what));
        }
    }
    entries.sort();
    entries
}

#[test]
fn diff_and_a_dry_run_of_redrive_write_nothing_to_the_folders() {
    let scratch = tempfile::tempdir().unwrap();
    let requests = scratch.path().join("requests");
    produce(&mut host(), "--requests-dir", &requests, 20, 5);
    // What a run would move aside: a link and a FIFO; and a dead letter.
    std::os::unix::fs::symlink("/etc/hostname", requests.join("1700000000500")).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(requests.join("1700000000501"))
            .status()
            .unwrap()
            .success()
    );
    std::fs::create_dir(requests.join("dead-letter")).unwrap();
    std::fs::write(requests.join("dead-letter/1600000000000"), create("d", 1)).unwrap();
    std::fs::write(requests.join("dead-letter/1600000000000.reason"), "rejected\n").unwrap();
    let widgets = scratch.path().join("widgets");
    let before = snapshot(scratch.path());
    run_ok(
        host()
            .args(["diff", "builtin", "builtin"])
            .arg(&requests)
            .arg("--widgets-dir")
            .arg(&widgets),
    );
    assert_eq!(snapshot(scratch.path()), before, "diff changed nothing");
    run_ok(
        host()
            .arg("redrive")
            .arg("--requests-dir")
            .arg(&requests)
            .arg("--dry-run")
            .args(["--handler", "builtin", "--widgets-dir"])
            .arg(&widgets),
    );
    assert_eq!(
        snapshot(scratch.path()),
        before,
        "redrive --dry-run changed nothing"
    );
    assert!(!widgets.exists(), "no widgets folder made");
}
