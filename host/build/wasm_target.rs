//! Makes sure the Rust standard library for the guests' target is installed
//! before the guests are built.
//!
//! rustup installs the `targets` of `rust-toolchain.toml` only when it
//! installs the toolchain itself; on a machine where the pinned toolchain
//! was already there, the target is missing and the guest build would fail
//! with "can't find crate for `std`". So: look in the toolchain's sysroot,
//! and if the target is not there, ask rustup to add it; without rustup,
//! fail with the one command that fixes it.

use std::path::Path;
use std::process::Command;

/// What [`ensure`] found or did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The target was installed already.
    Present,
    /// rustup installed it just now.
    Installed,
}

/// Checks that `rustc` (the compiler cargo builds with) has `target`'s
/// standard library, installing it with `rustup` (the program to run) if
/// not. The error says what to run instead.
pub fn ensure(rustc: &Path, rustup: &Path, toolchain: Option<&str>, target: &str) -> Result<Outcome, String> {
    if has_target(rustc, target)? {
        return Ok(Outcome::Present);
    }
    let fix = format!("rustup target add {target}");
    let mut add = Command::new(rustup);
    if let Some(toolchain) = toolchain {
        add.args(["target", "add", "--toolchain", toolchain, target]);
    } else {
        add.args(["target", "add", target]);
    }
    match add.status() {
        Ok(status) if status.success() && has_target(rustc, target)? => Ok(Outcome::Installed),
        Ok(status) => Err(format!(
            "the {target} target is not installed, and `{fix}` failed ({status}); run it yourself, then build again"
        )),
        Err(e) => Err(format!(
            "the {target} target is not installed, and rustup cannot be run ({e}); install the target with `{fix}`, then build again"
        )),
    }
}

/// Whether `rustc`'s sysroot holds the standard library for `target`.
fn has_target(rustc: &Path, target: &str) -> Result<bool, String> {
    let output = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", rustc.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} --print sysroot failed ({})",
            rustc.display(),
            output.status
        ));
    }
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    Ok(Path::new(&sysroot)
        .join("lib/rustlib")
        .join(target)
        .join("lib")
        .is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    const TARGET: &str = "wasm32-wasip2";

    /// A fake toolchain: a `rustc` that names `sysroot` as its sysroot, and
    /// a `rustup` that logs its arguments and, if `works`, installs the
    /// target there as the real one would.
    fn toolchain(dir: &Path, works: bool) -> (PathBuf, PathBuf, PathBuf) {
        let sysroot = dir.join("sysroot");
        std::fs::create_dir_all(sysroot.join("lib/rustlib/x86_64-unknown-linux-gnu/lib")).unwrap();
        let script = |name: &str, body: String| {
            let path = dir.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path
        };
        let rustc = script("rustc", format!("echo '{}'", sysroot.display()));
        let install = if works {
            format!("mkdir -p '{}/lib/rustlib/{TARGET}/lib'", sysroot.display())
        } else {
            "exit 1".to_owned()
        };
        let log = dir.join("rustup.log");
        let rustup = script("rustup", format!("echo \"$@\" >> '{}'\n{install}", log.display()));
        (rustc, rustup, log)
    }

    #[test]
    fn a_missing_target_is_installed_for_the_pinned_toolchain() {
        let dir = tempfile::tempdir().unwrap();
        let (rustc, rustup, log) = toolchain(dir.path(), true);
        assert_eq!(
            ensure(&rustc, &rustup, Some("1.95.0"), TARGET),
            Ok(Outcome::Installed)
        );
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            format!("target add --toolchain 1.95.0 {TARGET}\n")
        );
        // Once there, rustup is not asked again.
        assert_eq!(
            ensure(&rustc, &rustup, Some("1.95.0"), TARGET),
            Ok(Outcome::Present)
        );
        assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1);
    }

    #[test]
    fn without_a_working_rustup_the_error_names_the_command_that_fixes_it() {
        let dir = tempfile::tempdir().unwrap();
        let (rustc, rustup, _) = toolchain(dir.path(), false);
        let failed = ensure(&rustc, &rustup, None, TARGET).unwrap_err();
        assert!(failed.contains("`rustup target add wasm32-wasip2`"), "{failed}");
        let missing = ensure(&rustc, &dir.path().join("no-rustup"), None, TARGET).unwrap_err();
        assert!(missing.contains("`rustup target add wasm32-wasip2`"), "{missing}");
    }
}
