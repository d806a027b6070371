//! Realistic widget requests, as the original `producer.jar` writes them
//! (SPEC.md 6): keys are 13-digit epoch milliseconds in time order; creates
//! come first, updates and deletes target widgets created earlier in the
//! run; updates often omit `label` and sometimes blank it with `""`.
//!
//! Everything is drawn from one seeded ChaCha generator, so a seed and a
//! start time give the same requests on every machine. [`write`] paces
//! them into a place.

pub(crate) mod write;

use crate::source::NewRequest;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// The owners producer.jar used.
pub(crate) const OWNERS: [&str; 4] = ["Mary Matthews", "John Jones", "Sue Smith", "Henry Hops"];

/// The other attribute names producer.jar used, in its order.
pub(crate) const ATTRIBUTE_NAMES: [&str; 14] = [
    "color",
    "size",
    "size-unit",
    "height",
    "height-unit",
    "width",
    "width-unit",
    "length",
    "length-unit",
    "rating",
    "price",
    "quantity",
    "vendor",
    "note",
];

const COLORS: [&str; 8] = [
    "red", "orange", "yellow", "green", "blue", "indigo", "violet", "pink",
];

/// A request body and the ids in it.
struct Drawn {
    widget_id: String,
    request_id: String,
    body: String,
}

/// The request body, fields in producer.jar's order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    request_id: String,
    widget_id: &'a str,
    owner: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    other_attributes: Vec<Attribute>,
}

#[derive(Serialize)]
struct Attribute {
    name: &'static str,
    value: String,
}

impl Drawn {
    fn of(body: &Body<'_>) -> Drawn {
        Drawn {
            widget_id: body.widget_id.to_owned(),
            request_id: body.request_id.clone(),
            body: serde_json::to_string(body).unwrap(),
        }
    }
}

/// How many requests `produce` and `demo` write unless told: enough for
/// every kind of request and many widgets, done in seconds.
pub(crate) const DEFAULT_REQUESTS: u64 = 1000;

/// A stream of requests.
pub(crate) struct Producer {
    rng: ChaCha8Rng,
    /// Widgets created and not yet deleted: (id, owner).
    live: Vec<(String, &'static str)>,
    clock_ms: u64,
}

impl Producer {
    /// Requests drawn from `seed`, keyed from `start_ms` on.
    pub(crate) fn new(seed: u64, start_ms: u64) -> Producer {
        Producer {
            rng: ChaCha8Rng::seed_from_u64(seed),
            live: Vec::new(),
            clock_ms: start_ms,
        }
    }

    /// The next request: its key (13-digit epoch milliseconds, strictly
    /// increasing, so name order is time order), its JSON text, its widget
    /// id as the ordering key and its `requestId` as its id.
    pub(crate) fn next_request(&mut self) -> NewRequest {
        self.clock_ms += self.rng.random_range(1..=400);
        let key = format!("{:013}", self.clock_ms);
        let roll = self.rng.random_range(0..100);
        let drawn = if self.live.is_empty() || roll < 55 {
            self.create()
        } else if roll < 85 {
            self.update()
        } else {
            self.delete()
        };
        NewRequest {
            key,
            body: drawn.body,
            ordering_key: drawn.widget_id,
            id: drawn.request_id,
        }
    }

    fn create(&mut self) -> Drawn {
        let widget_id = self.uuid();
        let owner = *OWNERS.choose(&mut self.rng).unwrap();
        let label = Some(self.letters(1, 10));
        // A few creates carry an empty description, as producer.jar's did.
        let description = Some(if self.rng.random_bool(0.05) {
            String::new()
        } else {
            self.letters(1, 100)
        });
        let other_attributes = self.attributes(false);
        let body = Body {
            kind: "create",
            request_id: self.uuid(),
            widget_id: &widget_id,
            owner,
            label,
            description,
            other_attributes,
        };
        let drawn = Drawn::of(&body);
        self.live.push((widget_id, owner));
        drawn
    }

    fn update(&mut self) -> Drawn {
        let (widget_id, owner) = self.live.choose(&mut self.rng).cloned().unwrap();
        let label = match self.rng.random_range(0..10) {
            0..=5 => None,
            6 => Some(String::new()),
            _ => Some(self.letters(1, 10)),
        };
        let description = self.rng.random_bool(0.8).then(|| self.letters(1, 100));
        let other_attributes = self.attributes(true);
        let body = Body {
            kind: "update",
            request_id: self.uuid(),
            widget_id: &widget_id,
            owner,
            label,
            description,
            other_attributes,
        };
        Drawn::of(&body)
    }

    fn delete(&mut self) -> Drawn {
        let index = self.rng.random_range(0..self.live.len());
        let (widget_id, owner) = self.live.swap_remove(index);
        let body = Body {
            kind: "delete",
            request_id: self.uuid(),
            widget_id: &widget_id,
            owner,
            label: None,
            description: None,
            other_attributes: Vec::new(),
        };
        Drawn::of(&body)
    }

    /// A random subset of the attribute names, in their usual order. In an
    /// update a few values are `""`, which removes the attribute.
    fn attributes(&mut self, blanks: bool) -> Vec<Attribute> {
        let mut chosen = Vec::new();
        for name in ATTRIBUTE_NAMES {
            if self.rng.random_bool(0.45) {
                let value = if blanks && self.rng.random_bool(0.05) {
                    String::new()
                } else {
                    self.attribute_value(name)
                };
                chosen.push(Attribute { name, value });
            }
        }
        chosen
    }

    fn attribute_value(&mut self, name: &str) -> String {
        match name {
            "color" => COLORS.choose(&mut self.rng).unwrap().to_string(),
            "size" | "height" | "width" | "length" | "quantity" => self.rng.random_range(1..1000).to_string(),
            "size-unit" | "height-unit" | "width-unit" | "length-unit" => "cm".into(),
            "rating" => format!("{:.7}", self.rng.random_range(0.0..5.0)),
            "price" => format!("{:.2}", self.rng.random_range(1.0..100.0)),
            "vendor" => self.letters(1, 15),
            _ => self.letters(0, 500),
        }
    }

    fn letters(&mut self, min: usize, max: usize) -> String {
        let len = self.rng.random_range(min..=max);
        (0..len)
            .map(|_| self.rng.random_range(b'A'..=b'Z') as char)
            .collect()
    }

    fn uuid(&mut self) -> String {
        uuid::Builder::from_random_bytes(self.rng.random())
            .into_uuid()
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn requests(n: usize) -> Vec<NewRequest> {
        let mut p = Producer::new(7, 1_612_306_368_338);
        (0..n).map(|_| p.next_request()).collect()
    }

    #[test]
    fn keys_are_13_digit_milliseconds_in_time_order() {
        let keys: Vec<String> = requests(500).into_iter().map(|r| r.key).collect();
        assert!(
            keys.iter()
                .all(|k| k.len() == 13 && k.bytes().all(|b| b.is_ascii_digit()))
        );
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn the_same_seed_gives_the_same_requests() {
        assert_eq!(requests(100), requests(100));
        assert_ne!(requests(10), {
            let mut p = Producer::new(8, 1_612_306_368_338);
            (0..10).map(|_| p.next_request()).collect::<Vec<_>>()
        });
    }

    #[test]
    fn updates_and_deletes_target_live_widgets_and_bodies_are_valid() {
        let mut live = std::collections::HashSet::new();
        let mut kinds = std::collections::HashMap::<String, usize>::new();
        let mut blank_labels = 0;
        for r in requests(2000) {
            let v: Value = serde_json::from_str(&r.body).unwrap();
            let id = v["widgetId"].as_str().unwrap().to_owned();
            assert!(OWNERS.contains(&v["owner"].as_str().unwrap()));
            let kind = v["type"].as_str().unwrap().to_owned();
            match kind.as_str() {
                "create" => assert!(live.insert(id)),
                "update" => {
                    assert!(live.contains(&id));
                    blank_labels += usize::from(v["label"] == "");
                }
                "delete" => assert!(live.remove(&id)),
                other => panic!("unexpected type {other}"),
            }
            for attr in v["otherAttributes"].as_array().into_iter().flatten() {
                assert!(ATTRIBUTE_NAMES.contains(&attr["name"].as_str().unwrap()));
                assert!(attr["value"].is_string());
            }
            *kinds.entry(kind).or_default() += 1;
        }
        assert!(
            kinds["create"] > 800 && kinds["update"] > 300 && kinds["delete"] > 100,
            "{kinds:?}"
        );
        assert!(blank_labels > 0);
    }
}
