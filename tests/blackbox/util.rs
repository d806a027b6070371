//! Helpers shared by the black-box tests: the binary, scratch folders, and
//! comparing folders file by file.

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The `widget-host` binary cargo built for these tests.
pub fn host() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_widget-host"));
    // Each request's line (`Request done.`) is at debug: the tests wait on it.
    command.env("RUST_LOG", "info,widget_host::requests=debug");
    command
}

/// Runs the host and returns its output, failing with its stderr if it
/// did not succeed.
pub fn run_ok(command: &mut Command) -> Output {
    let output = command.output().expect("run widget-host");
    assert!(
        output.status.success(),
        "widget-host failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs `produce` with `command` (the host, with whatever environment the
/// place needs) into `place` given by `flag` (`--requests-dir`, `-rb`,
/// `-rq`): `count` requests drawn from `seed`, keyed from the same start
/// time on every run, so that two calls write the same requests.
pub fn produce(command: &mut Command, flag: &str, place: impl AsRef<std::ffi::OsStr>, count: u32, seed: u32) {
    run_ok(
        command
            .args([
                "produce",
                "--start-ms",
                "1700000000000",
                "--seed",
                &seed.to_string(),
            ])
            .args(["-mwr", &count.to_string(), flag])
            .arg(place),
    );
}

/// Runs the host expecting it to fail; returns its stderr.
pub fn run_fails(command: &mut Command) -> String {
    let output = command.output().expect("run widget-host");
    assert!(!output.status.success(), "widget-host should have failed");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The repository's `tests/` folder.
pub fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests")
}

/// A test handler built by `host/build.rs`.
pub fn test_guest(name: &str) -> PathBuf {
    Path::new(env!("WIDGET_HOST_TEST_GUESTS")).join(format!("{name}.wasm"))
}

/// Copies the files of `from` (not its sub-folders) into a new folder.
pub fn copy_requests(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Every file under `root`, by its `/`-separated path, with its bytes;
/// the host's staging folder `.tmp/` is not part of a layout and is skipped.
pub fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path == root.join(".tmp") {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let name = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Asserts that two folders of JSON documents hold the same files with the
/// same JSON values, naming the first file that differs.
pub fn assert_same_documents(actual: &Path, expected: &Path) {
    let actual = files(actual);
    let expected = files(expected);
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the stored files differ"
    );
    for (name, bytes) in &expected {
        let want: Value = serde_json::from_slice(bytes).unwrap();
        let got: Value =
            serde_json::from_slice(&actual[name]).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        assert_eq!(got, want, "{name} differs");
    }
}

/// Starts the host `command()` builds and SIGKILLs it after each delay in
/// turn, restarting it each time; returns how many runs were killed (a run
/// may finish first).
pub fn kill_repeatedly(command: impl Fn() -> Command, delays_ms: &[u64]) -> usize {
    let mut kills = 0;
    for delay in delays_ms {
        let mut child = command()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(*delay));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
    }
    kills
}

/// Sends SIGTERM to a running host and waits for it: it must exit 0.
pub fn terminate(child: Child) -> Output {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "SIGTERM exits 0: {}", output.status);
    output
}

/// A bound against a hang, made `WIDGET_TEST_PATIENCE` times (4 unless
/// set) as long: a test waits for progress (a log line, a file gone), and
/// a slower or busier machine must make it slower, never red.
pub fn patience(bound: Duration) -> Duration {
    let factor = std::env::var("WIDGET_TEST_PATIENCE")
        .ok()
        .and_then(|f| f.parse::<u32>().ok())
        .unwrap_or(4);
    bound * factor.max(1)
}

/// Waits until `done` holds, looking every 10 ms; fails naming `what`
/// after `within` (a bound against a hang, not a guess at how long it
/// takes: keep it generous).
#[track_caller]
pub fn wait_until(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + patience(within);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A host running in the background, its stderr collected as it comes.
pub struct Running {
    pub child: Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Starts `command` with its output piped.
    pub fn start(command: &mut Command) -> Running {
        use std::io::Read;
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n @ 1..) = stderr.read(&mut chunk) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        Running {
            child,
            log,
            reader: Some(reader),
        }
    }

    /// Waits until the log contains `text` (at most `within`).
    pub fn wait_for(&self, text: &str, within: Duration) {
        let deadline = std::time::Instant::now() + patience(within);
        while !self.log.lock().unwrap().contains(text) {
            assert!(
                std::time::Instant::now() < deadline,
                "the host never logged {text:?}:\n{}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The host's stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends a signal (`-TERM`, `-HUP`) to the host.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args([signal, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Waits for the host to end: its status, stdout and whole stderr.
    pub fn finish(mut self) -> (std::process::ExitStatus, String, String) {
        let mut stdout = String::new();
        std::io::Read::read_to_string(self.child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
        let status = self.child.wait().unwrap();
        self.reader.take().unwrap().join().unwrap();
        let log = self.log.lock().unwrap().clone();
        (status, stdout, log)
    }
}

/// `count` moments to kill a host at, in milliseconds after its start,
/// spread over `from..to`: drawn from a fixed seed, so every run of a test
/// kills at the same moments.
pub fn kill_moments(count: usize, from: u64, to: u64) -> Vec<u64> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..count)
        .map(|_| {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            from + state % (to - from)
        })
        .collect()
}

/// What a finished host left: its exit status, stdout, stderr, and the
/// most memory it held at once (peak resident set, in bytes).
pub struct Measured {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
    pub peak_rss: u64,
}

/// Runs the host to its end and measures its peak memory: the kernel's
/// high-water mark of the process's own memory (`VmHWM`), read until it
/// exits. (Not `wait4`'s `ru_maxrss`: that starts from the peak of the
/// process that spawned it, this test binary.) Only growth in its last
/// few milliseconds could be missed.
pub fn run_measured(command: &mut Command) -> Measured {
    let scratch = tempfile::tempdir().unwrap();
    let (out, err) = (scratch.path().join("out"), scratch.path().join("err"));
    let mut child = command
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("run widget-host");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_rss = 0;
    let status = loop {
        if let Ok(status) = std::fs::read_to_string(&status_file)
            && let Some(kib) = status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak_rss = peak_rss.max(kib * 1024);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    Measured {
        success: status.success(),
        stdout: std::fs::read_to_string(out).unwrap(),
        stderr: std::fs::read_to_string(err).unwrap(),
        peak_rss,
    }
}

/// `method path` on `address` over HTTP/1.1: the status code and the body.
pub fn http(address: &str, method: &str, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    (status, response.split_once("\r\n\r\n").unwrap().1.to_owned())
}

/// The address the host said it serves on.
pub fn served_at(running: &Running) -> String {
    running.wait_for("Serving metrics and health.", Duration::from_secs(20));
    running
        .log()
        .lines()
        .find_map(|line| line.split("address=").nth(1).map(str::to_owned))
        .unwrap()
}
