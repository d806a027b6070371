//! What durability costs the folder store: `folder::write_atomically` (write
//! aside, sync the file, rename, sync the folder) against the same write
//! without the two syncs, side by side in one run, on the disk that holds
//! `target/`. Reported as writes per second and the ratio.
//!
//! `cargo bench -p widget-host --bench durable_write`

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long each measurement runs.
const WINDOW: Duration = Duration::from_secs(3);

/// A widget document of a typical size.
const DOCUMENT: &[u8] = include_bytes!("../../tests/fixtures/instructor-2022/1612306370099");

/// The baseline: the same write aside and rename, without syncing.
fn write_without_sync(root: &Path, path: &Path, n: u64) -> std::io::Result<()> {
    let temp = root.join(".tmp").join(format!("plain-{n}"));
    std::fs::File::create(&temp)?.write_all(DOCUMENT)?;
    std::fs::rename(&temp, path)
}

/// Calls `write` for the window; returns writes per second.
fn rate(mut write: impl FnMut(u64)) -> f64 {
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < WINDOW {
        write(n);
        n += 1;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let dir = tempfile::tempdir_in(&target).unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join(".tmp")).unwrap();
    std::fs::create_dir_all(root.join("widgets/sue-smith")).unwrap();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = |n: u64| root.join(format!("widgets/sue-smith/w{}", n % 500));

    let plain = rate(|n| write_without_sync(root, &key(n), n).unwrap());
    let durable = rate(|n| {
        tokio
            .block_on(widget_host::folder::write_atomically(root, &key(n), DOCUMENT))
            .unwrap()
    });
    println!(
        "writes per second of a {}-byte widget, same disk, same run",
        DOCUMENT.len()
    );
    println!("{:<40} {:>10.0}", "without sync (baseline)", plain);
    println!(
        "{:<40} {:>10.0}  ({:.1}x slower)",
        "write_atomically (file and folder synced)",
        durable,
        plain / durable
    );
}
