//! A handler that misbehaves on request, for the host's sandbox tests.
//!
//! The request body chooses: `loop` spins forever, `bomb` allocates until
//! memory runs out, `trap` panics, `reject` is refused; anything else is
//! stored unchanged at `echo/{request key}`.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "widget-handler",
});

use widgets::handler::types::{Operation, Put};

struct Hostile;

impl Guest for Hostile {
    fn ordering_key(request: Vec<u8>) -> Option<String> {
        String::from_utf8(request).ok()
    }

    fn handle(request: Vec<u8>, ctx: Context) -> Result<Plan, Rejection> {
        match &request[..] {
            b"loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            b"bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            b"trap" => panic!("deliberate trap"),
            b"reject" => Err(Rejection {
                reason: "deliberate rejection".into(),
            }),
            _ => Ok(Plan {
                kind: "echo".into(),
                operations: vec![Operation::Put(Put {
                    key: format!("echo/{}", ctx.key),
                    document: String::from_utf8_lossy(&request).into_owned(),
                })],
            }),
        }
    }
}

export!(Hostile);
