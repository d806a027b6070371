//! The engines handlers are compiled on, and the instance pool.
//!
//! Every call gets a fresh instance (or, with `--handler-reuse`, one that
//! served few enough calls). Made the ordinary way, an instance maps its
//! memories when it starts and unmaps them when it ends: system calls and,
//! with the Tokio workers on several cores, a TLB shootdown on each of
//! them, twice a request. With wasmtime's pooling allocator the memories,
//! tables and stacks are slots made once with the engine; an instance takes
//! slots and gives them back, its memory image mapped copy-on-write and
//! reset with `madvise`, so starting one maps nothing.
//!
//! The pool has a fixed number of instance slots, and wasmtime refuses an
//! instance when all are taken: here a call waits for a slot instead
//! ([`InstanceSlots`]), so a full pool slows calls and never fails one. A handler
//! that does not fit a slot (more core instances, memories or tables than a
//! slot has, a larger table) is compiled on an engine without the pool, as
//! every handler was before; it runs as it did, only without the saving.

use crate::metrics::InstancesMade;
use anyhow::Context as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the engine's epoch advances: the granularity of a call's time limit (`sandbox.rs` checks it at each tick).
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Instance slots: twice the default ceiling of requests at once (each
/// request's handling has its own instance; the kept ones that answer
/// ordering keys, and a candidate's in shadow, take the rest). A slot is
/// address space reserved, not memory.
pub(super) const INSTANCES: u32 = 256;

/// Core instances a pooled component may create: the built-in handler
/// makes a handful, a Python one 38 (which the pool takes), well under the
/// call limit of [`super::limiter::MAX_INSTANCES`].
const CORE_INSTANCES_PER_COMPONENT: u32 = 64;

/// Memories a pooled component may create: each is a slot with the
/// address space of a 32-bit memory and its guard (4 GiB), reserved, not
/// allocated.
const MEMORIES_PER_COMPONENT: u32 = 4;

/// Tables a pooled component may create.
const TABLES_PER_COMPONENT: u32 = 16;

/// Elements one pooled table may grow to (a megabyte of address space per
/// table).
const TABLE_ELEMENTS: usize = 1 << 17;

/// The engines a handler, and the handlers that replace it, compile on.
pub(crate) struct Engines {
    /// With the instance pool; `None` where the pool could not be made
    /// (an address space too small for it, say).
    pooled: Option<(Engine, InstanceSlots)>,
    /// Without: for handlers that do not fit the pool.
    on_demand: Engine,
    /// Instances made on them for each export, for the metrics.
    pub(super) made: Arc<InstancesMade>,
}

impl Engines {
    /// Both engines, the pooled one with `instances` slots whose memories
    /// may each grow to `memory` bytes (the call's limit: no one memory can
    /// pass it).
    pub(super) fn new(cache: bool, memory: usize, instances: u32) -> anyhow::Result<Engines> {
        let pooled = match engine(cache, Some(config(memory, instances))) {
            Ok(engine) => Some((
                engine,
                InstanceSlots(Arc::new(Semaphore::new(instances as usize))),
            )),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "Cannot make the handler instance pool; every instance maps its own memory.");
                None
            }
        };
        Ok(Engines {
            pooled,
            on_demand: engine(cache, None)?,
            made: Arc::default(),
        })
    }

    /// The engine without the pool only.
    pub(super) fn on_demand(cache: bool) -> anyhow::Result<Engines> {
        Ok(Engines {
            pooled: None,
            on_demand: engine(cache, None)?,
            made: Arc::default(),
        })
    }

    /// Compiles `wasm` with `compile` on the pooled engine, or on the other
    /// if it does not fit the pool; the engine, and the slots its
    /// instances wait for.
    pub(super) fn compile<T>(
        &self,
        compile: impl Fn(&Engine) -> anyhow::Result<T>,
    ) -> anyhow::Result<(T, Engine, Option<InstanceSlots>)> {
        if let Some((engine, slots)) = &self.pooled {
            match compile(engine) {
                Ok(compiled) => return Ok((compiled, engine.clone(), Some(slots.clone()))),
                Err(e) => {
                    // Refused for what it needs of a slot, or not a valid
                    // component at all: the other engine tells.
                    let compiled = compile(&self.on_demand)?;
                    tracing::info!(reason = %format!("{e:#}"), "The handler does not fit the instance pool; its instances map their own memory.");
                    return Ok((compiled, self.on_demand.clone(), None));
                }
            }
        }
        let compiled = compile(&self.on_demand).context("cannot compile the handler")?;
        Ok((compiled, self.on_demand.clone(), None))
    }
}

/// How a finished instance's slot is made ready for the next: the part of
/// the profile an instance costs in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reset {
    /// Bytes of each memory reset by copying rather than released with
    /// `madvise` (which flushes the TLB of every core running the process,
    /// and makes the next instance fault its pages in again).
    keep_resident: usize,
    /// Where Linux has `PAGEMAP_SCAN` (6.7 and later), only the pages the
    /// instance wrote are reset, not the first `keep_resident` bytes.
    pagemap_scan: bool,
    /// Slots released to the kernel together, in one batch.
    decommit_batch: usize,
}

impl Reset {
    /// What the benchmark measured best (docs/benchmarks.md: on folders in
    /// memory, 0.29 to 0.31 CPU ms per request against 0.46 to 0.49 with
    /// every slot released by `madvise`): up to 1 MiB of each memory kept,
    /// only its written pages reset. Where `PAGEMAP_SCAN` is missing,
    /// keeping the first megabyte reset by copying gained nothing and cost
    /// 24 MB: everything is released then, as before.
    const CHOSEN: Reset = Reset {
        keep_resident: 1 << 20,
        pagemap_scan: true,
        decommit_batch: 1,
    };

    /// Everything released with `madvise`.
    const RELEASED: Reset = Reset {
        keep_resident: 0,
        pagemap_scan: false,
        decommit_batch: 1,
    };

    /// [`Reset::CHOSEN`] where the kernel has `PAGEMAP_SCAN`, else
    /// [`Reset::RELEASED`]; or, for measuring others, what
    /// `WIDGET_HOST_POOL_RESET` says (`keep=BYTES,pagemap=0|1,batch=N`,
    /// any of them); an unreadable setting is logged and ignored.
    fn from_env() -> Reset {
        let Ok(text) = std::env::var("WIDGET_HOST_POOL_RESET") else {
            return match PoolingAllocationConfig::is_pagemap_scan_available() {
                true => Reset::CHOSEN,
                false => Reset::RELEASED,
            };
        };
        Reset::parse(&text).unwrap_or_else(|e| {
            tracing::warn!(setting = %text, error = %e, "WIDGET_HOST_POOL_RESET ignored: everything is released.");
            Reset::RELEASED
        })
    }

    fn parse(text: &str) -> Result<Reset, String> {
        // Settings name what they change from everything released.
        let mut reset = Reset::RELEASED;
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or(format!("{part:?} is not NAME=VALUE"))?;
            let number: usize = value.parse().map_err(|_| format!("{value:?} is not a number"))?;
            match name {
                "keep" => reset.keep_resident = number,
                "pagemap" => reset.pagemap_scan = number != 0,
                "batch" => reset.decommit_batch = number.max(1),
                _ => return Err(format!("no setting {name:?} (keep, pagemap, batch)")),
            }
        }
        Ok(reset)
    }
}

/// The pooling allocator's settings.
fn config(memory: usize, instances: u32) -> PoolingAllocationConfig {
    let reset = Reset::from_env();
    let mut pool = PoolingAllocationConfig::new();
    pool.linear_memory_keep_resident(reset.keep_resident)
        .table_keep_resident(reset.keep_resident.min(TABLE_ELEMENTS * 8))
        .decommit_batch_size(reset.decommit_batch)
        .pagemap_scan(match reset.pagemap_scan {
            true => wasmtime::Enabled::Auto,
            false => wasmtime::Enabled::No,
        });
    pool.total_component_instances(instances)
        .total_core_instances(instances * CORE_INSTANCES_PER_COMPONENT)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .total_memories(instances * MEMORIES_PER_COMPONENT)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .max_memories_per_module(MEMORIES_PER_COMPONENT)
        .total_tables(instances * TABLES_PER_COMPONENT)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .max_tables_per_module(TABLES_PER_COMPONENT)
        .table_elements(TABLE_ELEMENTS)
        .total_stacks(instances)
        .max_memory_size(memory);
    pool
}

/// The pool's instance slots, one permit each: a call holds one for as long
/// as its instance lives.
#[derive(Clone)]
pub(super) struct InstanceSlots(Arc<Semaphore>);

impl InstanceSlots {
    /// A slot, waiting for one if all are taken.
    pub(super) async fn take(&self) -> OwnedSemaphorePermit {
        self.0
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Whether a slot is free now: an instance kept for later use would
    /// otherwise hold a slot a waiting call needs.
    pub(super) fn any_free(&self) -> bool {
        self.0.available_permits() > 0
    }
}

/// Creates an engine for handlers, its instances from `pool` if given (see
/// `pool.rs`), and starts the thread that drives its deadlines (it ends
/// when the engine is dropped).
fn engine(cache: bool, pool: Option<PoolingAllocationConfig>) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    if let Some(pool) = pool {
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_reset_setting_names_what_it_changes_and_keeps_the_rest() {
        let reset = Reset::parse("keep=1048576,pagemap=1").unwrap();
        assert_eq!(reset.keep_resident, 1 << 20);
        assert!(reset.pagemap_scan);
        assert_eq!(reset.decommit_batch, 1);
        assert_eq!(Reset::parse("").unwrap(), Reset::RELEASED);
        assert!(Reset::parse("keep=lots").is_err());
        assert!(Reset::parse("resident=1").is_err());
    }
}
