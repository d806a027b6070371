//! The Wasm runtime: compiles a handler component once, then calls it in a
//! fresh, sandboxed instance per request under a time and a memory limit.
//!
//! A handler sees only the `widgets:handler` contract. WASI is linked because
//! components built by standard toolchains import parts of it, but with
//! nothing behind it: no preopened directories, no environment, no network,
//! clocks frozen at zero, stdin closed and stdout dropped. What a handler
//! writes to stderr (a Rust panic message, say) is kept and quoted in the
//! reason when the call fails.

use crate::sink::{Sink, SinkError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

#[allow(missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "widget-handler",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

pub use bindings::widgets::handler::types::{Context, Destination, Operation, Plan, Put};
use bindings::widgets::handler::{log, store, types};
use bindings::{WidgetHandler, WidgetHandlerPre};

/// The default widget handler, built from `guest/` by `build.rs`.
pub const DEFAULT_HANDLER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/widget_guest.wasm"));

/// How often the engine's epoch advances: the granularity of the deadline.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// How long a call may take in all, waiting included, beyond its time limit.
/// The time limit is checked only while the guest computes; this bounds a
/// guest blocked in a WASI call (a sleep, say) and very slow store reads.
const WALL_CLOCK_GRACE: Duration = Duration::from_secs(60);

/// How much of the guest's stderr is kept for error messages.
const STDERR_CAPACITY: usize = 4096;

/// Limits on one handler call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time the guest may compute for, not counting time spent waiting on
    /// the host's `store.get`.
    pub time: Duration,
    /// Linear memory, in bytes, that each of the component's memories may
    /// grow to.
    pub memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            time: Duration::from_secs(2),
            memory: 128 << 20,
        }
    }
}

/// Why a call produced no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The handler trapped, ran out of time or memory, or broke the
    /// contract: the request is to be dead-lettered.
    #[error("handler failed: {0}")]
    Handler(String),
    /// The store could not be read for a reason that may pass: the request
    /// is to be retried later, not dead-lettered.
    #[error("handler could not read the store: {0}")]
    StoreUnavailable(#[source] SinkError),
}

/// A handler's answer to one request.
#[derive(Debug)]
pub struct Handled {
    /// The plan, or the handler's reason for rejecting the request.
    pub result: Result<Plan, String>,
    /// How many `warn` lines the handler logged.
    pub warnings: u32,
    /// What the handler logged, in order: (level, message).
    pub logs: Logs,
}

/// A compiled handler, ready to be instantiated once per request.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    pre: WidgetHandlerPre<GuestState>,
    limits: Limits,
}

/// Creates the engine shared by every handler in this process, and starts
/// the thread that drives its deadlines.
pub fn engine(cache: bool) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    if cache {
        // Compiled components are cached on disk, keyed by their bytes and
        // the engine's settings: a large handler compiles once per machine.
        config.cache(Some(wasmtime::Cache::new(wasmtime::CacheConfig::new())?));
    }
    let engine = Engine::new(&config)?;
    let ticker = engine.weak();
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
    Ok(engine)
}

impl Runtime {
    /// Compiles a component and checks that it exports the widget-handler
    /// world and imports nothing the host does not provide.
    pub fn new(engine: &Engine, wasm: &[u8], limits: Limits) -> anyhow::Result<Runtime> {
        let component = Component::new(engine, wasm)?;
        let mut linker = Linker::<GuestState>::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        WidgetHandler::add_to_linker::<_, HasSelf<GuestState>>(&mut linker, |s| s)?;
        let pre = WidgetHandlerPre::new(linker.instantiate_pre(&component)?)?;
        Ok(Runtime {
            engine: engine.clone(),
            pre,
            limits,
        })
    }

    /// The engine the handler was compiled with.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The limits each call runs under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The handler's ordering key for a request.
    pub async fn ordering_key(&self, request: &[u8]) -> Result<Option<String>, CallError> {
        let mut store = self.store(None, String::new());
        let result = self
            .bounded(async {
                let handler = self.pre.instantiate_async(&mut store).await?;
                handler.call_ordering_key(&mut store, request).await
            })
            .await;
        finish(store, result).map(|(key, _, _)| key)
    }

    /// Asks the handler what to do with a request. The handler reads the
    /// destination through `sink`.
    pub async fn handle(
        &self,
        request: &[u8],
        context: Context,
        sink: Arc<dyn Sink>,
    ) -> Result<Handled, CallError> {
        let mut store = self.store(Some(sink), context.key.clone());
        let result = self
            .bounded(async {
                let handler = self.pre.instantiate_async(&mut store).await?;
                handler.call_handle(&mut store, request, &context).await
            })
            .await;
        let (result, warnings, logs) = finish(store, result)?;
        Ok(Handled {
            result: result.map_err(|rejection| rejection.reason),
            warnings,
            logs,
        })
    }

    /// Runs a call under the wall-clock bound.
    async fn bounded<R>(&self, call: impl Future<Output = wasmtime::Result<R>>) -> wasmtime::Result<R> {
        let bound = self.limits.time + WALL_CLOCK_GRACE;
        match tokio::time::timeout(bound, call).await {
            Ok(result) => result,
            Err(_) => Err(wasmtime::Error::new(TimeLimit(bound))),
        }
    }

    fn store(&self, sink: Option<Arc<dyn Sink>>, request_key: String) -> Store<GuestState> {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let mut wasi = WasiCtx::builder();
        wasi.stderr(stderr.clone())
            .wall_clock(Frozen)
            .monotonic_clock(Frozen)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let state = GuestState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(self.limits.memory)
                .trap_on_grow_failure(true)
                .build(),
            sink,
            request_key,
            stderr,
            warnings: 0,
            logs: Vec::new(),
            store_failure: None,
            started: Instant::now(),
            waiting: Duration::ZERO,
            time_limit: self.limits.time,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            let state = ctx.data();
            let computing = state.started.elapsed().saturating_sub(state.waiting);
            if computing > state.time_limit {
                Err(wasmtime::Error::new(TimeLimit(state.time_limit)))
            } else {
                // Yield so that a busy guest does not hold a Tokio worker.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }
}

#[derive(Debug, thiserror::Error)]
#[error("time limit of {0:?} exceeded")]
struct TimeLimit(Duration);

/// Turns a call's outcome into our error kinds, taking what the guest left
/// in its store into account.
fn finish<R>(store: Store<GuestState>, result: wasmtime::Result<R>) -> Result<(R, u32, Logs), CallError> {
    let mut state = store.into_data();
    if let Some(failure) = state.store_failure.take() {
        // Whatever the guest made of a failed read, its answer is not to be
        // trusted: retry the request once the store is back.
        return Err(CallError::StoreUnavailable(failure));
    }
    match result {
        Ok(value) => Ok((value, state.warnings, state.logs)),
        Err(error) => {
            let mut reason = if let Some(limit) = error.downcast_ref::<TimeLimit>() {
                limit.to_string()
            } else {
                format!("{error:#}")
            };
            let stderr = state.stderr.contents();
            let stderr = String::from_utf8_lossy(&stderr);
            if !stderr.trim().is_empty() {
                reason.push_str(&format!("; handler stderr: {}", stderr.trim()));
            }
            Err(CallError::Handler(reason))
        }
    }
}

/// What a handler logged: (level, message).
type Logs = Vec<(&'static str, String)>;

/// What one handler instance may reach.
struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    /// `None` for calls that must not read the store (`ordering-key`).
    sink: Option<Arc<dyn Sink>>,
    request_key: String,
    stderr: MemoryOutputPipe,
    warnings: u32,
    logs: Logs,
    store_failure: Option<SinkError>,
    started: Instant,
    /// Time spent in `store.get`, which does not count against the limit.
    waiting: Duration,
    time_limit: Duration,
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for GuestState {}

impl store::Host for GuestState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, String>> {
        let Some(sink) = self.sink.clone() else {
            wasmtime::bail!("the store may not be read from `ordering-key`");
        };
        let started = Instant::now();
        let result = sink.get(&key).await;
        self.waiting += started.elapsed();
        match result {
            Ok(document) => Ok(Ok(document)),
            Err(e) if e.is_transient() => {
                let message = e.to_string();
                self.store_failure = Some(e);
                // Trap: the guest's answer would be built on a failed read.
                wasmtime::bail!("store unavailable: {message}")
            }
            Err(e) => Ok(Err(e.to_string())),
        }
    }
}

impl log::Host for GuestState {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        /// Lines kept per call: a handler cannot fill the host's memory.
        const MAX_LINES: usize = 100;
        let key = &self.request_key;
        let name = match level {
            log::Level::Debug => {
                tracing::debug!(request_key = %key, "handler: {message}");
                "debug"
            }
            log::Level::Info => {
                tracing::info!(request_key = %key, "handler: {message}");
                "info"
            }
            log::Level::Warn => {
                self.warnings += 1;
                tracing::warn!(request_key = %key, "handler: {message}");
                "warn"
            }
            log::Level::Error => {
                tracing::error!(request_key = %key, "handler: {message}");
                "error"
            }
        };
        if self.logs.len() < MAX_LINES {
            self.logs.push((name, message));
        }
        Ok(())
    }
}

/// A clock that always reads zero: handlers get no time source.
struct Frozen;

impl HostWallClock for Frozen {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for Frozen {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}
