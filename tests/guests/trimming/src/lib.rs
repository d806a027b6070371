//! A subtly wrong handler, for the conformance suite's tests: the default
//! handler's planner, except that a request's `label` loses its
//! surrounding spaces first. The contract says values are stored exactly
//! as given; `widget-host check` must catch this.
//!
//! The planner's modules are the default handler's own files, included by
//! path (a dependency on `widget-guest` would bring its WIT export too),
//! and `default_planner.rs` puts them behind the world's types.

#[path = "../../../../guest/src/plan.rs"]
#[allow(dead_code)]
mod plan;
#[path = "../../../../guest/src/request.rs"]
#[allow(dead_code)]
mod request;
#[path = "../../../../guest/src/widget.rs"]
#[allow(dead_code)]
mod widget;

#[path = "../../default_planner.rs"]
mod default_planner;

wit_bindgen::generate!({
    path: "../../../wit",
    world: "widget-handler",
});

use serde_json::Value;

struct Trimming;

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
        default_planner::planned(&trimmed(request), &ctx)
    }
}

export!(Trimming);
