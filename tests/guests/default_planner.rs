//! The default handler's planner behind this world's types, for the test
//! handlers that change one thing about it (`trimming`, `refusing`). Each
//! includes this file by path, beside the planner's own modules, so its
//! `crate::` names are the including handler's.

use crate::plan::{self, Destination, Operation};
use crate::widgets::handler::types as wit;
use crate::{Context, Plan, Rejection};

/// The destination, read through the host's `store.get`.
struct HostStore;

impl plan::Store for HostStore {
    fn get(&mut self, key: &str) -> Result<Option<String>, String> {
        crate::widgets::handler::store::get(key)
    }
}

/// What the default handler makes of `request`: its plan, its warnings
/// logged, or its rejection.
pub(crate) fn planned(request: &[u8], ctx: &Context) -> Result<Plan, Rejection> {
    let destination = match ctx.destination {
        wit::Destination::ObjectStore => Destination::ObjectStore,
        wit::Destination::Table => Destination::Table,
    };
    let planned = plan::plan(request, &ctx.key, destination, &mut HostStore)
        .map_err(|invalid| Rejection { reason: invalid.0 })?;
    for warning in &planned.warnings {
        crate::widgets::handler::log::log(crate::widgets::handler::log::Level::Warn, warning);
    }
    Ok(Plan {
        kind: planned.kind.name().to_owned(),
        operations: planned
            .operations
            .into_iter()
            .map(|op| match op {
                Operation::Put { key, document } => wit::Operation::Put(wit::Put { key, document }),
                Operation::Delete(key) => wit::Operation::Delete(key),
            })
            .collect(),
    })
}
