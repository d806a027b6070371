//! The sandbox one handler call runs in: a fresh wasmtime store per call
//! (its instance's memory from the pool, `pool.rs`),
//! with a time limit on the processor time the call itself uses (checked
//! at each epoch tick; time spent waiting on `store.get`, or for a core
//! while other calls compute, is not counted), a limit on all its memories and tables together
//! (`limiter.rs`), bounds on what it logs and plans (`output.rs`), and WASI
//! linked with nothing behind it:
//! no preopened directories, no environment, no network, clocks frozen at
//! zero, stdin closed and stdout dropped. What a handler writes to stderr (a
//! Rust panic message, say) is kept and quoted in the reason when the call
//! fails.

use super::CallError;
use super::call::{Call, CpuClock, WaitClock};
use super::limiter::{CallLimiter, count_exceeded};
use super::output::{Logs, PlanLimits};
use super::stderr::StderrTail;
use crate::logging::escape;
use crate::sink::Read;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

/// Computing time after which a call yields its worker at each epoch tick;
/// before it, ticks let it go on (most calls compute well under this).
const YIELD_AFTER: Duration = Duration::from_millis(2);

/// How long a call may take beyond its time limit, not counting time spent
/// in `store.get`. The time limit is checked only while the guest computes;
/// this bounds a guest blocked in a WASI call (a poll, say).
const WALL_CLOCK_GRACE: Duration = Duration::from_secs(60);

/// How long one `store.get` may take. A read that takes longer abandons the
/// call, and the request is tried again later: a slow store is the
/// environment's fault, not the request's.
pub(super) const GET_TIMEOUT: Duration = Duration::from_secs(10);

/// Limits on one handler call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Processor time the call itself may use: not time spent waiting on
    /// the host's `store.get`, nor waiting for a core while other calls (or
    /// other processes) compute.
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

/// What one handler instance holds for as long as it lives: its WASI
/// context, its resources, its memory limit and its stderr. Everything
/// about the call under way is in [`Call`], made new for each call.
pub(crate) struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: CallLimiter,
    stderr: StderrTail,
    pub(super) call: Call,
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
    reader: Option<Arc<dyn Read>>,
    request_key: String,
) -> Store<GuestState> {
    let stderr = StderrTail::default();
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
        stderr,
        call: Call::new(limits, reader, request_key),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|ctx| {
        let call = &ctx.data().call;
        let computed = call.computing();
        if computed > call.time_limit {
            Err(wasmtime::Error::new(TimeLimit(call.time_limit)))
        } else if computed < YIELD_AFTER {
            // A short call goes on: the tick came from the wall clock, and
            // a yield would make its time depend on the machine's load (on
            // the simulation's paused clock, a yield can let time advance).
            Ok(UpdateDeadline::Continue(1))
        } else {
            // Yield so that a busy guest does not hold a Tokio worker.
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store
}

/// Readies a reused instance's store for the next call: a new [`Call`],
/// the stderr of the last one dropped, the deadline counted again.
pub(super) fn begin_call(
    store: &mut Store<GuestState>,
    limits: Limits,
    reader: Option<Arc<dyn Read>>,
    request_key: String,
) {
    let state = store.data_mut();
    state.call = Call::new(limits, reader, request_key);
    state.stderr.take();
    store.set_epoch_deadline(1);
}

/// Ends a reused instance's call: it keeps nothing of the call, the store
/// it read least of all.
pub(super) fn end_call(store: &mut Store<GuestState>, limits: Limits) {
    store.data_mut().call = Call::new(limits, None, String::new());
}

/// Runs a call with its polls measured on its processor clock (what its
/// time limit counts, in the epoch callback), under the wall-clock bound:
/// its time limit and a grace, plus whatever it spent waiting on
/// `store.get` (which has a deadline of its own).
pub(super) async fn bounded<R>(
    limits: Limits,
    (waiting, cpu): (WaitClock, CpuClock),
    call: impl Future<Output = wasmtime::Result<R>>,
) -> wasmtime::Result<R> {
    let started = tokio::time::Instant::now();
    let bound = limits.time + WALL_CLOCK_GRACE;
    let mut call = cpu.meter(call);
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
    let (stderr, stderr_dropped) = state.stderr.take();
    let call = &mut state.call;
    if call.log.dropped_lines > 0 || call.log.dropped_bytes > 0 {
        tracing::warn!(
            request_key = %call.request_key,
            dropped_lines = call.log.dropped_lines,
            dropped_bytes = call.log.dropped_bytes,
            "The handler reached its log limit (--handler-log-bytes); the rest of its log for this request was dropped."
        );
    }
    if let Some(failure) = call.store_failure.take() {
        // Whatever the guest made of a failed read, its answer is not to be
        // trusted: retry the request once the store is back, or stop.
        return Err(CallError::Store(failure));
    }
    match result {
        Ok(value) => Ok(Finished {
            value,
            warnings: call.warnings,
            logs: std::mem::take(&mut call.log.kept),
        }),
        Err(error) => {
            // The limit first, named as the user can change it; wasmtime's
            // words (a backtrace) after it.
            let mut reason = if let Some(limit) = error.downcast_ref::<TimeLimit>() {
                limit.to_string()
            } else if let Some(limit) = state.limiter.exceeded.take().or_else(|| count_exceeded(&error)) {
                limit.to_string()
            } else {
                tracing::debug!(request_key = %call.request_key, "Handler call failed: {error:?}");
                without_backtrace(&error)
            };
            // This call's stderr only: each call begins with it empty.
            let stderr = String::from_utf8_lossy(&stderr);
            if !stderr.trim().is_empty() {
                reason.push_str(&format!("; handler stderr: {}", escape(stderr.trim())));
                if stderr_dropped > 0 {
                    reason.push_str(&format!(" ... ({stderr_dropped} more bytes)"));
                }
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
