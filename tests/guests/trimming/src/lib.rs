//! A subtly wrong handler, for the conformance suite's tests: the default
//! handler's planner, except that a request's `label` loses its
//! surrounding spaces first. The contract says values are stored exactly
//! as given; `widget-host check` must catch this.
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
use serde_json::Value;
use widgets::handler::types as wit;

struct Trimming;

struct HostStore;

impl plan::Store for HostStore {
    fn get(&mut self, key: &str) -> Result<Option<String>, String> {
        widgets::handler::store::get(key)
    }
}

/// The request with its label trimmed, if it is a JSON object with one.
fn trimmed(request: Vec<u8>) -> Vec<u8> {
    match serde_json::from_slice::<Value>(&request) {
        Ok(Value::Object(mut fields)) => {
            if let Some(Value::String(label)) = fields.get_mut("label") {
                *label = label.trim().to_owned();
            }
            serde_json::to_vec(&fields).unwrap_or(request)
        }
        _ => request,
    }
}

impl Guest for Trimming {
    fn ordering_key(request: Vec<u8>) -> Option<String> {
        request::ordering_key(&request)
    }

    fn handle(request: Vec<u8>, ctx: Context) -> Result<Plan, Rejection> {
        let destination = match ctx.destination {
            wit::Destination::ObjectStore => Destination::ObjectStore,
            wit::Destination::Table => Destination::Table,
        };
        let planned = plan::plan(&trimmed(request), &ctx.key, destination, &mut HostStore)
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

export!(Trimming);
