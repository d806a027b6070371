//! The WIT export: adapts the `widgets:handler` world to [`crate::plan`].

use crate::plan::{self, Destination, Operation};
use crate::request;

wit_bindgen::generate!({
    path: "../wit",
    world: "widget-handler",
});

use widgets::handler::log::{Level, log};
use widgets::handler::types as wit;

struct Handler;

/// The destination, read through the host's `store.get`.
struct HostStore;

impl plan::Store for HostStore {
    fn get(&mut self, key: &str) -> Result<Option<String>, String> {
        widgets::handler::store::get(key)
    }
}

impl Guest for Handler {
    fn ordering_key(request: Vec<u8>) -> Option<String> {
        request::ordering_key(&request)
    }

    fn handle(request: Vec<u8>, ctx: Context) -> Result<Plan, Rejection> {
        let destination = match ctx.destination {
            wit::Destination::ObjectStore => Destination::ObjectStore,
            wit::Destination::Table => Destination::Table,
        };
        let planned = plan::plan(&request, &ctx.key, destination, &mut HostStore)
            .map_err(|invalid| Rejection { reason: invalid.0 })?;
        for warning in &planned.warnings {
            log(Level::Warn, warning);
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
}

export!(Handler);
