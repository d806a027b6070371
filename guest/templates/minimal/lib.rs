//! A minimal widget handler: the contract's shape, and little more. It
//! stores each create or update as the widget's own fields, removes a
//! widget on delete, and rejects what is not a widget request.
//! `widget-host check handler.wasm` lists what the full widget contract
//! asks beyond this (`new-handler` without `--minimal` writes a complete
//! one).

wit_bindgen::generate!({
    path: "wit",
    world: "widget-handler",
});

use serde_json::{Value, json};
use widgets::handler::types as wit;

struct Handler;

impl Guest for Handler {
    /// Requests about one widget are handled in order; one without a
    /// widget id runs alone.
    fn ordering_key(request: Vec<u8>) -> Option<String> {
        let request: Value = serde_json::from_slice(&request).ok()?;
        request["widgetId"].as_str().map(str::to_owned)
    }

    fn handle(request: Vec<u8>, ctx: Context) -> Result<Plan, Rejection> {
        let reject = |reason: String| Rejection { reason };
        let request: Value = serde_json::from_slice(&request)
            .map_err(|e| reject(format!("request is not valid JSON: {e}")))?;
        let field = |name: &str| {
            request[name]
                .as_str()
                .ok_or_else(|| reject(format!("missing required field `{name}`")))
        };
        let (kind, id, owner) = (field("type")?, field("widgetId")?, field("owner")?);
        let key = match ctx.destination {
            wit::Destination::Table => id.to_owned(),
            wit::Destination::ObjectStore => {
                format!("widgets/{}/{id}", owner.to_lowercase().replace(' ', "-"))
            }
        };
        let operation = match kind {
            "delete" => wit::Operation::Delete(key),
            "create" | "update" => {
                let mut widget = json!({ "id": id, "owner": owner });
                for name in ["label", "description"] {
                    if let Some(text) = request[name].as_str() {
                        widget[name] = json!(text);
                    }
                }
                wit::Operation::Put(wit::Put {
                    key,
                    document: widget.to_string(),
                })
            }
            other => return Err(reject(format!("field `type` must be create, update or delete, not {other:?}"))),
        };
        Ok(Plan {
            kind: kind.to_owned(),
            operations: vec![operation],
        })
    }
}

export!(Handler);
