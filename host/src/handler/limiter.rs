//! What one handler call may allocate: all its linear memories and tables
//! together, and how many instances, memories and tables it may create.
//!
//! wasmtime's own `StoreLimits` caps each memory and each table on its own:
//! a component with ten memories, or one huge table, gets past it. Every
//! call has a store of its own, so the sum over the store is the call's.

use wasmtime::ResourceLimiter;

/// Core instances one call may create: a component instantiates one per
/// core module it embeds. The Python and JavaScript handlers run well
/// within these counts (their tests say so).
pub(super) const MAX_INSTANCES: usize = 100;

/// Linear memories one call may create.
pub(super) const MAX_MEMORIES: usize = 10;

/// Tables one call may create.
pub(super) const MAX_TABLES: usize = 100;

/// Bytes one table element takes in wasmtime: a pointer.
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// Counts what a call has allocated against its limit.
#[derive(Debug)]
pub(super) struct CallLimiter {
    /// Bytes of linear memory and tables the call may hold in all.
    limit: usize,
    /// Bytes it holds now.
    held: usize,
    /// The limit that stopped the call, if one did: its reason names it.
    pub(super) exceeded: Option<LimitExceeded>,
}

/// A limit a call ran into.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum LimitExceeded {
    #[error(
        "memory limit exceeded: the call's memories and tables would hold {wanted} bytes, over the limit of {limit} (--handler-memory-mb)"
    )]
    Memory { wanted: usize, limit: usize },
    #[error("instance limit exceeded: a call may create at most {MAX_INSTANCES} instances")]
    Instances,
    #[error("memory count limit exceeded: a call may create at most {MAX_MEMORIES} memories")]
    Memories,
    #[error("table count limit exceeded: a call may create at most {MAX_TABLES} tables")]
    Tables,
}

impl CallLimiter {
    pub(super) fn new(limit: usize) -> CallLimiter {
        CallLimiter {
            limit,
            held: 0,
            exceeded: None,
        }
    }

    /// Grants `more` bytes if the call stays within its limit; traps the
    /// call otherwise (a failed grow the guest could ignore would leave the
    /// reason unsaid).
    fn grow(&mut self, more: usize) -> wasmtime::Result<bool> {
        let wanted = self.held.saturating_add(more);
        if wanted > self.limit {
            let exceeded = LimitExceeded::Memory {
                wanted,
                limit: self.limit,
            };
            self.exceeded = Some(exceeded.clone());
            return Err(wasmtime::Error::new(exceeded));
        }
        self.held = wanted;
        Ok(true)
    }
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(desired.saturating_sub(current))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(
            desired
                .saturating_sub(current)
                .saturating_mul(TABLE_ELEMENT_BYTES),
        )
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// The count limit wasmtime's error about too many instances, memories or
/// tables stands for (wasmtime words it as "resource limit exceeded: memory
/// count too high at 11").
pub(super) fn count_exceeded(error: &wasmtime::Error) -> Option<LimitExceeded> {
    let text = format!("{error:#}");
    if !text.contains("resource limit exceeded") {
        return None;
    }
    [
        ("instance count", LimitExceeded::Instances),
        ("memory count", LimitExceeded::Memories),
        ("table count", LimitExceeded::Tables),
    ]
    .into_iter()
    .find_map(|(words, limit)| text.contains(words).then_some(limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memories_and_tables_count_against_one_limit() {
        let mut limiter = CallLimiter::new(1 << 20);
        assert!(limiter.memory_growing(0, 512 << 10, None).unwrap());
        // A table of 64 Ki pointers: 512 KiB, which fills the limit.
        assert!(limiter.table_growing(0, 64 << 10, None).unwrap());
        let error = limiter
            .memory_growing(512 << 10, (512 << 10) + 65536, None)
            .unwrap_err();
        assert!(error.to_string().contains("memory limit exceeded"), "{error}");
        assert!(matches!(limiter.exceeded, Some(LimitExceeded::Memory { .. })));
    }

    #[test]
    fn wasmtimes_count_errors_are_named() {
        let error = wasmtime::Error::msg("resource limit exceeded: memory count too high at 11");
        assert!(matches!(count_exceeded(&error), Some(LimitExceeded::Memories)));
        assert!(count_exceeded(&wasmtime::Error::msg("unreachable")).is_none());
    }
}
