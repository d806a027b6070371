//! The README's tour, run as it is written: its folder and handler blocks,
//! command by command, in an empty folder with the built `widget-host` on
//! the PATH, and what their comments promise checked. An edit to the
//! README that breaks a command, or a change to the host that makes a
//! command print nothing to act on, fails here.

use crate::util::*;
use std::path::Path;
use std::process::Command;

/// The commands of the README's `sh` block that follows `marker`: lines
/// continued with `\` joined, comment-only lines left out.
fn commands_after(readme: &str, marker: &str) -> Vec<String> {
    let from = readme
        .find(marker)
        .unwrap_or_else(|| panic!("README.md has no {marker:?}"));
    let block = readme[from..]
        .split("```sh\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let joined = block.replace("\\\n", " ");
    joined
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Runs `command` with bash in `dir`, `widget-host` first on the PATH;
/// its stdout, failing with its stderr if it failed.
fn run(dir: &Path, command: &str) -> String {
    let binary = Path::new(env!("CARGO_BIN_EXE_widget-host"));
    let path = format!(
        "{}:{}",
        binary.parent().unwrap().display(),
        std::env::var("PATH").unwrap()
    );
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", command])
        .current_dir(dir)
        .env("PATH", path)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "`{command}` failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_readmes_tour_runs_as_written() {
    let readme = std::fs::read_to_string(tests_dir().join("../README.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    let folders = commands_after(&readme, "**Folders.**");
    assert_eq!(folders.len(), 4, "{folders:?}");
    let mut said = Vec::new();
    for command in &folders {
        said.push(run(dir, command));
    }
    let listed: Vec<&str> = said[3].lines().collect();
    assert_eq!(
        listed,
        ["zz-incomplete", "zz-incomplete.reason"],
        "ls of the dead letters"
    );
    assert!(!files(&dir.join("widgets")).is_empty(), "widgets stored");

    let handler = commands_after(&readme, "**Your own handler.**");
    let mut said = std::collections::BTreeMap::new();
    for command in &handler {
        let verb = command.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        said.insert(verb.clone(), run(dir, command));
        if verb == "widget-host check" && command.contains("--cases-from-dead-letters") {
            // The dead letter became a case beside the project's own.
            let cases = files(&dir.join("my-handler/cases"));
            assert!(cases.len() >= 2, "{:?}", cases.keys());
        }
    }
    assert!(said["widget-host invoke"].contains("kind: create"), "{said:?}");
    assert!(
        said["widget-host diff"].contains("100 requests: "),
        "diff compares the requests waiting: {}",
        said["widget-host diff"]
    );
    assert!(
        said["widget-host redrive"].contains("Would move 1 of 1 dead letters back"),
        "{}",
        said["widget-host redrive"]
    );
    assert_eq!(
        files(&dir.join("requests"))
            .keys()
            .filter(|k| !k.starts_with("dead-letter/"))
            .count(),
        0
    );
}
