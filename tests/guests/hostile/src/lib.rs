//! A handler that misbehaves on request, for the host's sandbox tests.
//!
//! The request body chooses what it does:
//!
//! - `loop` spins forever, `recurse` recurses without end, `bomb` allocates
//!   until memory runs out, `trap` panics, `reject` is refused;
//! - `log-flood` logs 1 MiB lines in a loop, `log-forge` logs a line with
//!   a newline and a terminal escape in it;
//! - `many-ops` plans 1,000,000 deletes, `big-doc` one 100 MB document;
//! - `key-trap` and `key-loop` trap or spin in `ordering-key` (and are
//!   stored if `handle` is ever called); so does any request naming the
//!   widget `key-trap` (`"widgetId":"key-trap"`), and one naming the widget
//!   `handle-trap` traps in `handle`: valid widget requests, which another
//!   handler accepts;
//! - `wasi` tries to read a file, list the root, read the environment and
//!   open a TCP connection to the address after it (`wasi 127.0.0.1:PORT`),
//!   and is refused with what each attempt got;
//! - `chatty ...` writes a line to stderr, then is stored as below;
//! - `burn N` computes N million steps, then is stored as below (a
//!   handler that needs real processor time);
//! - `poison` is accepted and leaves its instance poisoned: every later
//!   call on the same instance traps (a reused instance's state gone bad);
//!   `key-poison` does the same to `ordering-key`: its key is answered,
//!   and every later `ordering-key` on the same instance traps;
//! - anything else is stored unchanged at `echo/{request key}`.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "widget-handler",
});

use widgets::handler::log::{Level, log};
use widgets::handler::types::{Operation, Put};

struct Hostile;

/// Set by `poison`: this instance traps on every call after.
static POISONED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Set by `key-poison`: this instance traps on every `ordering-key` after.
static KEY_POISONED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Guest for Hostile {
    fn ordering_key(request: Vec<u8>) -> Option<String> {
        if KEY_POISONED.load(std::sync::atomic::Ordering::SeqCst) {
            panic!("ordering-key poisoned by an earlier request on this instance");
        }
        if request == b"key-poison" {
            KEY_POISONED.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        if names_widget(&request, "key-trap") {
            panic!("deliberate trap in ordering-key");
        }
        match &request[..] {
            b"key-trap" => panic!("deliberate trap in ordering-key"),
            b"key-loop" => spin(),
            _ => String::from_utf8(request).ok(),
        }
    }

    fn handle(request: Vec<u8>, ctx: Context) -> Result<Plan, Rejection> {
        if POISONED.load(std::sync::atomic::Ordering::SeqCst) {
            panic!("poisoned by an earlier request on this instance");
        }
        if names_widget(&request, "handle-trap") {
            panic!("deliberate trap in handle");
        }
        if request.starts_with(b"chatty") {
            eprintln!("debug: handling request {}", String::from_utf8_lossy(&request));
        }
        match &request[..] {
            b"poison" => {
                POISONED.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(Plan {
                    kind: "poison".into(),
                    operations: Vec::new(),
                })
            }
            b"loop" => spin(),
            b"recurse" => Ok(Plan {
                kind: format!("depth {}", recurse(0)),
                operations: Vec::new(),
            }),
            b"bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            b"trap" => panic!("deliberate trap"),
            b"reject" => Err(Rejection {
                reason: "deliberate rejection".into(),
            }),
            b"log-flood" => {
                let line = "x".repeat(1 << 20);
                loop {
                    log(Level::Info, &line);
                }
            }
            b"log-forge" => {
                log(
                    Level::Warn,
                    "one\n2026-01-01T00:00:00.000000Z ERROR forged line \x1b[2J",
                );
                Ok(Plan {
                    kind: "forge".into(),
                    operations: Vec::new(),
                })
            }
            b"many-ops" => Ok(Plan {
                kind: "many".into(),
                operations: (0..1_000_000).map(|_| Operation::Delete(String::new())).collect(),
            }),
            b"big-doc" => Ok(Plan {
                kind: "big".into(),
                operations: vec![Operation::Put(Put {
                    key: "big".into(),
                    document: "x".repeat(100_000_000),
                })],
            }),
            _ if request.starts_with(b"burn ") => {
                let millions: u64 = String::from_utf8_lossy(&request[5..]).trim().parse().unwrap_or(1);
                let mut n: u64 = 0;
                for _ in 0..millions * 1_000_000 {
                    n = std::hint::black_box(n.wrapping_mul(31).wrapping_add(7));
                }
                Ok(Plan {
                    kind: format!("burnt {}", n % 2),
                    operations: Vec::new(),
                })
            }
            _ if request.starts_with(b"wasi ") => Err(Rejection {
                reason: try_wasi(&String::from_utf8_lossy(&request[5..])),
            }),
            _ => Ok(Plan {
                kind: "echo".into(),
                operations: vec![Operation::Put(Put {
                    key: format!("echo/{}", ctx.key),
                    document: String::from_utf8_lossy(&request).into_owned(),
                })],
            }),
        }
    }
}

/// Whether a request names the widget `id` (as the producer writes it).
fn names_widget(request: &[u8], id: &str) -> bool {
    let needle = format!("\"widgetId\":\"{id}\"");
    request.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Spins until the host stops it.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Recurses until the stack runs out.
#[allow(unconditional_recursion)] // The point.
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 64]);
    recurse(depth + 1) + frame[0]
}

/// What each of the host's refused capabilities gave this handler.
fn try_wasi(address: &str) -> String {
    let file = std::fs::read("/etc/hostname").map(|bytes| format!("read {} bytes", bytes.len()));
    let root = std::fs::read_dir("/").map(|entries| format!("{} entries", entries.count()));
    let environment: Vec<String> = std::env::vars().map(|(name, _)| name).collect();
    let connect = std::net::TcpStream::connect(address).map(|_| "connected");
    format!("file: {file:?}; root: {root:?}; environment: {environment:?}; connect: {connect:?}")
}

export!(Hostile);
