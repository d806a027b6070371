//! Builds the WebAssembly handlers in this workspace for `wasm32-wasip2`:
//! the default widget handler (`guest/`), which the binary embeds, and the
//! test handlers (`tests/guests/`), whose paths the tests read from
//! `WIDGET_HOST_TEST_GUESTS`.
//!
//! They are built by a nested `cargo build` into a target folder of their
//! own, so that it does not wait on the lock of the build that runs this
//! script. The target's standard library is installed first if it is
//! missing (`build/wasm_target.rs`).

#[path = "build/wasm_target.rs"]
mod wasm_target;

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "guest";
const GUESTS: [(&str, &str); 4] = [
    ("widget-guest", "widget_guest"),
    ("hostile-guest", "hostile_guest"),
    ("trimming-guest", "trimming_guest"),
    ("refusing-guest", "refusing_guest"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap();
    for watched in ["guest", "wit", "tests/guests", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(watched).display());
    }
    println!("cargo:rerun-if-changed=build");

    let rustc = PathBuf::from(env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()));
    let toolchain = env::var("RUSTUP_TOOLCHAIN").ok();
    match wasm_target::ensure(&rustc, Path::new("rustup"), toolchain.as_deref(), TARGET) {
        Ok(wasm_target::Outcome::Present) => {}
        Ok(wasm_target::Outcome::Installed) => {
            println!("cargo:warning=installed the {TARGET} target with rustup, to build the handlers");
        }
        Err(why) => panic!("{why}"),
    }
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("guests");

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args(["build", "--target", TARGET, "--profile", PROFILE, "--target-dir"])
        .arg(&target_dir);
    for (package, _) in GUESTS {
        command.args(["-p", package]);
    }
    // Settings meant for the host build must not leak into the guest build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
    ] {
        command.env_remove(var);
    }
    let status = command.status().expect("cannot run cargo to build the guests");
    if !status.success() {
        panic!("building the guests for {TARGET} failed (the output above says why)");
    }

    let built = target_dir.join(TARGET).join(PROFILE);
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    for (_, file) in GUESTS {
        copy(
            &built.join(format!("{file}.wasm")),
            &out_dir.join(format!("{file}.wasm")),
        );
    }
    println!("cargo:rustc-env=WIDGET_HOST_TEST_GUESTS={}", out_dir.display());
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
}
