//! A bad change, for the rollback tests: the default handler's planner,
//! except that every update is rejected (the README's walk-through makes
//! the same change to a handler of its own). Swapped in for the default
//! handler, it dead-letters a share of any realistic stream.
//!
//! The planner's modules are the default handler's own files, included by
//! path (a dependency on `widget-guest` would bring its WIT export too).

#[path = "../../../../guest/src/plan.rs"]
#[allow(dead_code)]
mod plan;
#[path = "../../../../guest/src/request.rs"]
#[allow(dead_code)]
mod request;
#[path = "../../../../guest/src/widget.rs"]
#[allow(dead_code)]
mod widget;

wit_bindgen::generate!({
    path: "../../../wit",
    world: "widget-handler",
});

use plan::{Destination, Operation};
use widgets::handler::types as wit;

struct Refusing;

struct HostStore;

impl plan::Store for HostStore {
    fn get(&mut self, key: &str) -> Result<Option<String>, String> {
        widgets::handler::store::get(key)
    }
}

impl Guest for Refusing {
    fn ordering_key(request: Vec<u8>) -> Option<String> {
        request::ordering_key(&request)
    }

    fn handle(request: Vec<u8>, ctx: Context) -> Result<Plan, Rejection> {
        let destination = match ctx.destination {
            wit::Destination::ObjectStore => Destination::ObjectStore,
            wit::Destination::Table => Destination::Table,
        };
        if request::parse(&request).is_ok_and(|r| r.kind == request::Kind::Update) {
            return Err(Rejection {
                reason: "updates are off".into(),
            });
        }
        let planned = plan::plan(&request, &ctx.key, destination, &mut HostStore)
            .map_err(|invalid| Rejection { reason: invalid.0 })?;
        for warning in &planned.warnings {
            widgets::handler::log::log(widgets::handler::log::Level::Warn, warning);
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

export!(Refusing);
