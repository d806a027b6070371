//! Setting up on a fresh machine: the pinned toolchain may be installed
//! without the wasm32-wasip2 target (rustup adds a toolchain file's targets
//! only when it installs the toolchain), and the first build must install
//! it before it compiles anything. `tools/rustc-wrapper` does; here it runs
//! against a stand-in rustc and rustup, so no network is needed.

use crate::util::tests_dir;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A stand-in toolchain in `dir`: `rustc` names `dir/sysroot` as its
/// sysroot and logs every other call; `rustup` logs its arguments and, if
/// `works`, installs the target as the real one would.
fn toolchain(dir: &Path, works: bool) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let sysroot = dir.join("sysroot");
    let log = dir.join("calls.log");
    let script = |name: &str, body: String| {
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    script(
        "rustc",
        format!(
            "if [ \"$1\" = --print ]; then echo '{}'; else echo \"rustc $*\" >> '{}'; fi",
            sysroot.display(),
            log.display()
        ),
    );
    let install = match works {
        true => format!("mkdir -p '{}/lib/rustlib/wasm32-wasip2/lib'", sysroot.display()),
        false => "exit 1".to_owned(),
    };
    script(
        "rustup",
        format!("echo \"rustup $*\" >> '{}'\n{install}", log.display()),
    );
    bin
}

fn wrap(dir: &Path, bin: &Path, args: &[&str]) -> Output {
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    Command::new(tests_dir().join("../tools/rustc-wrapper"))
        .arg(bin.join("rustc"))
        .args(args)
        .env("PATH", path)
        .env("RUSTUP_TOOLCHAIN", "1.95.0")
        .env("WIDGET_HOST_STAMPS", dir.join("stamps"))
        .output()
        .unwrap()
}

fn calls(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("calls.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_first_compilation_installs_a_missing_wasm_target_first() {
    let scratch = tempfile::tempdir().unwrap();
    let bin = toolchain(scratch.path(), true);
    assert!(wrap(scratch.path(), &bin, &["-vV"]).status.success());
    assert!(
        wrap(scratch.path(), &bin, &["--crate-name", "libc"])
            .status
            .success()
    );
    assert_eq!(
        calls(scratch.path()),
        [
            "rustup target add --toolchain 1.95.0 wasm32-wasip2",
            "rustc -vV",
            "rustc --crate-name libc",
        ],
        "installed once, before anything is compiled"
    );
}

#[test]
fn a_target_that_cannot_be_installed_stops_the_build_with_the_command_that_fixes_it() {
    let scratch = tempfile::tempdir().unwrap();
    let bin = toolchain(scratch.path(), false);
    let output = wrap(scratch.path(), &bin, &["-vV"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("run: rustup target add wasm32-wasip2"),
        "{stderr}"
    );
    assert!(
        !calls(scratch.path()).iter().any(|c| c.starts_with("rustc")),
        "nothing compiled"
    );
}
