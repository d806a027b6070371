//! What the Wasm boundary costs per request: the default handler's logic
//! called natively (the baseline), against handler components called
//! through the host's runtime, side by side in one run: the built-in Rust
//! component and, when guest/build-handlers.sh has built them, the Python
//! and JavaScript handlers. Reported as calls per second and as the ratio
//! to the native baseline. `key` is `ordering-key`, a call that does almost
//! nothing: through the host it is about the cost of a fresh instance.
//! Each component is measured three times: a fresh instance per call
//! mapping its own memory, a fresh instance per call from the pooling
//! allocator (`run`'s default), and an instance serving 1,000 calls
//! (`--handler-reuse 1000`).
//!
//! `cargo bench -p widget-host --bench guest_cost`

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use widget_guest::plan::{self, Destination as NativeDestination, Store};
use widget_host::contract::{Context, Destination};
use widget_host::handler::{BUILTIN, Handler, Limits};
use widget_host::sink::Sink;
use widget_host::sink::memory::MemorySink;

/// How long each measurement runs.
const WINDOW: Duration = Duration::from_secs(3);

/// The instructor's update of widget 5c94f104, against its create.
const CREATE: &str = include_str!("../../tests/fixtures/instructor-2022/1612306370099");
const UPDATE: &str = include_str!("../../tests/fixtures/instructor-2022/1612306370542");

struct NativeStore(Option<String>);

impl Store for NativeStore {
    fn get(&mut self, _key: &str) -> Result<Option<String>, String> {
        Ok(self.0.clone())
    }
}

/// Calls `f` repeatedly for the window; returns calls per second.
fn rate(mut f: impl FnMut()) -> f64 {
    for _ in 0..20 {
        f();
    }
    let started = Instant::now();
    let mut calls = 0u64;
    while started.elapsed() < WINDOW {
        for _ in 0..10 {
            f();
        }
        calls += 10;
    }
    calls as f64 / started.elapsed().as_secs_f64()
}

fn row(name: &str, size: &str, create: f64, update: f64, key: f64, baseline: (f64, f64, f64)) {
    println!(
        "{name:<30} {size:>9} {create:>10.0} {update:>10.0} {key:>10.0} {:>8.1}x {:>8.1}x {:>8.1}x",
        baseline.0 / create,
        baseline.1 / update,
        baseline.2 / key
    );
}

fn main() {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // The stored widget an update reads.
    let stored = match plan::plan(
        CREATE.as_bytes(),
        "k",
        NativeDestination::ObjectStore,
        &mut NativeStore(None),
    )
    .unwrap()
    .operations
    .remove(0)
    {
        plan::Operation::Put { key, document } => (key, document),
        other => panic!("unexpected {other:?}"),
    };
    let sink = Arc::new(MemorySink::new(Destination::ObjectStore));
    tokio.block_on(sink.put(&stored.0, &stored.1)).unwrap();
    let sink: Arc<dyn Sink> = sink;
    let context = Context {
        key: "k".into(),
        destination: Destination::ObjectStore,
    };

    let native = |request: &str, current: Option<String>| {
        rate(|| {
            let mut store = NativeStore(current.clone());
            std::hint::black_box(
                plan::plan(
                    request.as_bytes(),
                    "k",
                    NativeDestination::ObjectStore,
                    &mut store,
                )
                .unwrap(),
            );
        })
    };
    let hosted = |handler: &Handler, request: &str| {
        rate(|| {
            let handled = tokio
                .block_on(handler.handle(request.as_bytes(), &context, sink.clone()))
                .unwrap();
            assert!(handled.verdict.unwrap().operations.len() == 1);
        })
    };

    println!("calls per second; ratio = native / through the host (how many times slower)");
    println!(
        "{:<30} {:>9} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9}",
        "handler", "size", "create/s", "update/s", "key/s", "create", "update", "key"
    );
    let native_key = rate(|| {
        std::hint::black_box(widget_guest::request::ordering_key(UPDATE.as_bytes()));
    });
    let baseline = (
        native(CREATE, None),
        native(UPDATE, Some(stored.1.clone())),
        native_key,
    );
    row(
        "native Rust (baseline)",
        "-",
        baseline.0,
        baseline.1,
        baseline.2,
        baseline,
    );

    let mut components = vec![("Rust component (built-in)".to_owned(), BUILTIN.to_vec())];
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/handlers");
    for (name, file) in [
        ("Python (componentize-py)", "widget_handler_py.wasm"),
        ("JavaScript (componentize-js)", "widget_handler_js.wasm"),
    ] {
        match std::fs::read(built.join(file)) {
            Ok(wasm) => components.push((name.to_owned(), wasm)),
            Err(_) => println!("{name}: not built (run guest/build-handlers.sh)"),
        }
    }
    for (name, wasm) in components {
        let compile_started = Instant::now();
        let handler = Handler::from_bytes(&wasm, Limits::default()).unwrap();
        let compile = compile_started.elapsed();
        let size = format!("{:.1} MB", wasm.len() as f64 / 1e6);
        let measure = |handler: &Handler| {
            let key = rate(|| {
                let key = tokio.block_on(handler.ordering_key(UPDATE.as_bytes())).unwrap();
                assert!(key.is_some());
            });
            (hosted(handler, CREATE), hosted(handler, UPDATE), key)
        };
        let (create, update, key) = measure(&handler);
        row(&name, &size, create, update, key, baseline);
        println!("{:<30} compiled in {:.2} s (uncached)", "", compile.as_secs_f64());
        // As `run` has it: fresh instances from the pooling allocator's
        // slots (the row above maps a new memory for each).
        let pooled = Handler::from_bytes_pooled(&wasm, Limits::default(), 128).unwrap();
        if pooled.pooled() {
            let (create, update, key) = measure(&pooled);
            row("  pooled (run's default)", &size, create, update, key, baseline);
        } else {
            println!("  pooled: does not fit a pool slot; run maps its memory as above");
        }
        // The same component, an instance serving up to 1,000 requests
        // (`--handler-reuse 1000`): the isolation the default buys, priced.
        let reused = Handler::from_bytes(
            &wasm,
            Limits {
                reuse: 1000,
                ..Limits::default()
            },
        )
        .unwrap();
        let (create, update, key) = measure(&reused);
        row("  reused x1000", &size, create, update, key, baseline);
    }
}
