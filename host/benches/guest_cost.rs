//! What the Wasm boundary costs per request: the default handler's logic
//! called natively (the baseline) against the same logic compiled to a
//! component and called through the host's runtime, side by side in one
//! run. Reported as calls per second and as a ratio.
//!
//! `cargo bench -p widget-host --bench guest_cost`

use std::sync::Arc;
use std::time::{Duration, Instant};
use widget_guest::plan::{self, Destination as NativeDestination, Store};
use widget_host::runtime::{self, Context, DEFAULT_HANDLER, Destination, Limits, Runtime};
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
    for _ in 0..100 {
        f();
    }
    let started = Instant::now();
    let mut calls = 0u64;
    while started.elapsed() < WINDOW {
        for _ in 0..50 {
            f();
        }
        calls += 50;
    }
    calls as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = runtime::engine(false).unwrap();
    let compile_started = Instant::now();
    let host = Runtime::new(&engine, DEFAULT_HANDLER, Limits::default()).unwrap();
    let compile = compile_started.elapsed();

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

    println!(
        "handler: built-in widget handler, {} bytes, compiled in {compile:?}",
        DEFAULT_HANDLER.len()
    );
    println!(
        "{:<28} {:>14} {:>14} {:>8}",
        "call", "native/s", "through host/s", "ratio"
    );
    for (name, request, current) in [
        ("handle(create)", CREATE, None),
        ("handle(update)", UPDATE, Some(stored.1.clone())),
    ] {
        let native = rate(|| {
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
        });
        let hosted = rate(|| {
            let handled = tokio
                .block_on(host.handle(request.as_bytes(), context.clone(), sink.clone()))
                .unwrap();
            std::hint::black_box(handled.result.unwrap());
        });
        println!(
            "{name:<28} {native:>14.0} {hosted:>14.0} {:>7.1}x",
            native / hosted
        );
    }
    let native = rate(|| {
        std::hint::black_box(widget_guest::request::ordering_key(UPDATE.as_bytes()));
    });
    let hosted = rate(|| {
        std::hint::black_box(tokio.block_on(host.ordering_key(UPDATE.as_bytes())).unwrap());
    });
    println!(
        "{:<28} {native:>14.0} {hosted:>14.0} {:>7.1}x",
        "ordering_key",
        native / hosted
    );
}
