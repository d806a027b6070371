//! The sandbox one handler call runs in: a fresh wasmtime store per call,
//! with a time limit (epoch interruption, not counting time spent waiting
//! on `store.get`), a limit on all its memories and tables together
//! (`limiter.rs`), bounds on what it logs and plans (`output.rs`), and WASI
//! linked with nothing behind it:
//! no preopened directories, no environment, no network, clocks frozen at
//! zero, stdin closed and stdout dropped. What a handler writes to stderr (a
//! Rust panic message, say) is kept and quoted in the reason when the call
//! fails.

use super::CallError;
use super::limiter::{CallLimiter, count_exceeded};
use super::output::{LogBudget, Logs, PlanLimits};
use crate::error::StorageError;
use crate::logging::escape;
use crate::sink::Sink;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{Config, Engine, Store, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

/// How often the engine's epoch advances: the granularity of the deadline.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// How long a call may take beyond its time limit, not counting time spent
/// in `store.get`. The time limit is checked only while the guest computes;
/// this bounds a guest blocked in a WASI call (a poll, say).
const WALL_CLOCK_GRACE: Duration = Duration::from_secs(60);

/// How long one `store.get` may take. A read that takes longer abandons the
/// call, and the request is tried again later: a slow store is the
/// environment's fault, not the request's.
pub(super) const GET_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of the guest's stderr is kept for error messages.
const STDERR_CAPACITY: usize = 4096;

/// Limits on one handler call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time the guest may compute for, not counting time spent waiting on
    /// the host's `store.get`.
    pub time: Duration,
    /// Bytes the call's linear memories and tables may hold, all together.
    pub memory: usize,
    /// Bytes the call may log (each line counted with 100 bytes for what
    /// the host writes around it); the rest is cut and counted.
    pub log_bytes: usize,
    /// Operations a plan may have.
    pub plan_operations: usize,
    /// Bytes a plan's keys and documents may add up to.
    pub plan_bytes: usize,
    /// Requests one instance may serve in a row (`--handler-reuse`); 0 or 1:
    /// a fresh instance for every call, the default. Reuse lets a request
    /// see what the ones before it left in the instance's memory, and the
    /// memory limit then bounds the instance over all its calls.
    pub reuse: usize,
}

impl Limits {
    /// The default computing time per call, in milliseconds.
    pub const DEFAULT_TIME_MS: u64 = 2000;
    /// The default memory per call, in MiB.
    pub const DEFAULT_MEMORY_MIB: usize = 128;
    /// The default log per call, in bytes.
    pub const DEFAULT_LOG_BYTES: usize = 64 << 10;
    /// The default number of operations per plan.
    pub const DEFAULT_PLAN_OPERATIONS: usize = 1000;
    /// The default bytes per plan: four times the default request limit, room
    /// for a request's values merged into a stored document.
    pub const DEFAULT_PLAN_BYTES: usize = 4 << 20;

    pub(super) fn plan(&self) -> PlanLimits {
        PlanLimits {
            operations: self.plan_operations,
            bytes: self.plan_bytes,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            time: Duration::from_millis(Limits::DEFAULT_TIME_MS),
            memory: Limits::DEFAULT_MEMORY_MIB << 20,
            log_bytes: Limits::DEFAULT_LOG_BYTES,
            plan_operations: Limits::DEFAULT_PLAN_OPERATIONS,
            plan_bytes: Limits::DEFAULT_PLAN_BYTES,
            reuse: 0,
        }
    }
}

/// Creates an engine for handlers, and starts the thread that drives its
/// deadlines (it ends when the engine is dropped).
pub(crate) fn engine(cache: bool) -> anyhow::Result<Engine> {
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

/// What one handler instance may reach, and what it left behind.
pub(crate) struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: CallLimiter,
    /// The store `store.get` reads; `None` for calls that must not read it
    /// (`ordering-key`).
    pub(super) sink: Option<Arc<dyn Sink>>,
    pub(super) request_key: String,
    stderr: MemoryOutputPipe,
    pub(super) warnings: u32,
    pub(super) log: LogBudget,
    /// A read that failed for a reason other than the request: the call's
    /// answer is not to be trusted.
    pub(super) store_failure: Option<StorageError>,
    started: Instant,
    /// Time spent in `store.get`, which does not count against the limit.
    pub(super) waiting: WaitClock,
    time_limit: Duration,
}

/// The time a call has spent waiting on the host, shared with whatever
/// bounds the call from outside.
#[derive(Debug, Clone, Default)]
pub(super) struct WaitClock(Arc<Mutex<(Duration, Option<Instant>)>>);

impl WaitClock {
    /// Starts a wait.
    pub(super) fn start(&self) {
        self.0.lock().unwrap().1 = Some(Instant::now());
    }

    /// Ends the wait started last.
    pub(super) fn stop(&self) {
        let mut clock = self.0.lock().unwrap();
        if let Some(since) = clock.1.take() {
            clock.0 += since.elapsed();
        }
    }

    /// All the waiting so far, the wait in progress included.
    fn waited(&self) -> Duration {
        let clock = self.0.lock().unwrap();
        clock.0 + clock.1.map_or(Duration::ZERO, |since| since.elapsed())
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A fresh store for one call under `limits`.
pub(super) fn new_store(
    engine: &Engine,
    limits: Limits,
    sink: Option<Arc<dyn Sink>>,
    request_key: String,
) -> Store<GuestState> {
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
        limiter: CallLimiter::new(limits.memory),
        sink,
        request_key,
        stderr,
        warnings: 0,
        log: LogBudget::new(limits.log_bytes),
        store_failure: None,
        started: Instant::now(),
        waiting: WaitClock::default(),
        time_limit: limits.time,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|ctx| {
        let state = ctx.data();
        let computing = state.started.elapsed().saturating_sub(state.waiting.waited());
        if computing > state.time_limit {
            Err(wasmtime::Error::new(TimeLimit(state.time_limit)))
        } else {
            // Yield so that a busy guest does not hold a Tokio worker.
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store
}

/// Readies a reused instance's store for the next call: its own store to
/// read, key, log budget, warnings and clocks; the time limit starts again.
pub(super) fn reset_for_call(
    store: &mut Store<GuestState>,
    limits: Limits,
    sink: Option<Arc<dyn Sink>>,
    request_key: String,
) {
    let state = store.data_mut();
    state.sink = sink;
    state.request_key = request_key;
    state.warnings = 0;
    state.log = LogBudget::new(limits.log_bytes);
    state.store_failure = None;
    state.started = Instant::now();
    state.waiting = WaitClock::default();
    store.set_epoch_deadline(1);
}

/// Runs a call under the wall-clock bound: its time limit and a grace,
/// plus whatever it spent waiting on `store.get` (which has a deadline of
/// its own).
pub(super) async fn bounded<R>(
    limits: Limits,
    waiting: WaitClock,
    call: impl Future<Output = wasmtime::Result<R>>,
) -> wasmtime::Result<R> {
    let started = tokio::time::Instant::now();
    let bound = limits.time + WALL_CLOCK_GRACE;
    let mut call = std::pin::pin!(call);
    loop {
        let deadline = started + bound + waiting.waited();
        if let Ok(result) = tokio::time::timeout_at(deadline, &mut call).await {
            return result;
        }
        // Past the deadline only if no waiting moved it meanwhile.
        if tokio::time::Instant::now() >= started + bound + waiting.waited() {
            return Err(wasmtime::Error::new(TimeLimit(bound)));
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("time limit exceeded: the call computed for more than {0:?} (--handler-timeout-ms)")]
struct TimeLimit(Duration);

/// What a finished call left: its value, the warnings it logged, its logs.
pub(super) struct Finished<R> {
    pub(super) value: R,
    pub(super) warnings: u32,
    pub(super) logs: Logs,
}

/// Turns a call's outcome into our error kinds, taking what the guest left
/// in its store into account.
pub(super) fn finish<R>(
    mut store: Store<GuestState>,
    result: wasmtime::Result<R>,
) -> Result<Finished<R>, CallError> {
    finish_call(&mut store, result)
}

/// [`finish`], leaving the store to serve another call.
pub(super) fn finish_call<R>(
    store: &mut Store<GuestState>,
    result: wasmtime::Result<R>,
) -> Result<Finished<R>, CallError> {
    let state = store.data_mut();
    if state.log.dropped_lines > 0 || state.log.dropped_bytes > 0 {
        tracing::warn!(
            request_key = %state.request_key,
            dropped_lines = state.log.dropped_lines,
            dropped_bytes = state.log.dropped_bytes,
            "The handler reached its log limit (--handler-log-bytes); the rest of its log for this request was dropped."
        );
    }
    if let Some(failure) = state.store_failure.take() {
        // Whatever the guest made of a failed read, its answer is not to be
        // trusted: retry the request once the store is back, or stop.
        return Err(CallError::Store(failure));
    }
    match result {
        Ok(value) => Ok(Finished {
            value,
            warnings: state.warnings,
            logs: std::mem::take(&mut state.log.kept),
        }),
        Err(error) => {
            // The limit first, named as the user can change it; wasmtime's
            // words (a backtrace) after it.
            let mut reason = if let Some(limit) = error.downcast_ref::<TimeLimit>() {
                limit.to_string()
            } else if let Some(limit) = state.limiter.exceeded.take().or_else(|| count_exceeded(&error)) {
                limit.to_string()
            } else {
                tracing::debug!(request_key = %state.request_key, "Handler call failed: {error:?}");
                without_backtrace(&error)
            };
            let stderr = state.stderr.contents();
            let stderr = String::from_utf8_lossy(&stderr);
            if !stderr.trim().is_empty() {
                reason.push_str(&format!("; handler stderr: {}", escape(stderr.trim())));
            }
            Err(CallError::Handler(reason))
        }
    }
}

/// A failed call's error, cause by cause, without the Wasm backtrace
/// wasmtime adds (dozens of lines in a reason that names the cause).
fn without_backtrace(error: &wasmtime::Error) -> String {
    error
        .chain()
        .map(ToString::to_string)
        .filter(|cause| !cause.starts_with("error while executing at wasm backtrace"))
        .collect::<Vec<_>>()
        .join(": ")
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
