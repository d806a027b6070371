//! A bad change, for the rollback tests: the default handler's planner,
//! except that every update is rejected (the README's walk-through makes
//! the same change to a handler of its own). Swapped in for the default
//! handler, it dead-letters a share of any realistic stream.
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

struct Refusing;

impl Guest for Refusing {
    fn ordering_key(request: Vec<u8>) -> Option<String> {
        request::ordering_key(&request)
    }

    fn handle(request: Vec<u8>, ctx: Context) -> Result<Plan, Rejection> {
        if request::parse(&request).is_ok_and(|r| r.kind == request::Kind::Update) {
            return Err(Rejection {
                reason: "updates are off".into(),
            });
        }
        default_planner::planned(&request, &ctx)
    }
}

export!(Refusing);
