//! A scenario, drawn from a seed: the requests (some malformed, some
//! arriving later), the source they sit in, the faults of each widget, the
//! run's concurrency, and the stops and crashes along the way.

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

/// The owner of every simulated widget; its object keys are
/// `widgets/sue-smith/{widget}`.
pub(super) const OWNER: &str = "Sue Smith";

/// How a widget's store calls fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Fault {
    /// Its first `calls` calls fail transiently.
    Transient { calls: u32 },
    /// Every call is throttled (`SlowDown`) until then; `None`: for ever.
    Throttled { until: Option<Duration> },
    /// Every call hangs until the caller's timeout, until then; `None`: for
    /// ever.
    Hung { until: Option<Duration> },
    /// Every write is refused as the request's fault (an item too large).
    Refused,
    /// Every call fails as the environment's fault (expired credentials)
    /// in this window: the run stops, and is started again after it.
    Fatal { from: Duration, until: Duration },
}

impl Fault {
    /// The widget's requests never complete.
    pub(super) fn for_ever(&self) -> bool {
        matches!(
            self,
            Fault::Throttled { until: None } | Fault::Hung { until: None }
        )
    }
}

/// Where the requests sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SourceKind {
    /// Listed again on every pass, in key order (a folder, a bucket).
    Bucket,
    /// A FIFO queue, grouped by widget: never listed again; a message
    /// handed back returns after its delay.
    FifoQueue,
    /// A standard queue: no order, and now and then a message delivered
    /// twice.
    StandardQueue,
}

/// An interruption of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Interruption {
    /// A stop signal: what is in flight is finished, then the host starts again.
    Stop,
    /// A crash: all in-memory state is lost, then the host starts again.
    Crash,
}

/// One request.
#[derive(Debug, Clone)]
pub(super) struct Request {
    /// Its key in the source; keys sort in source order.
    pub(super) key: String,
    pub(super) body: Vec<u8>,
    /// The widget it names, if it names one.
    pub(super) widget: Option<String>,
    /// When it reaches the source.
    pub(super) arrives: Duration,
}

#[derive(Debug, Clone)]
pub(super) struct Scenario {
    pub(super) seed: u64,
    pub(super) source: SourceKind,
    pub(super) concurrency: usize,
    /// The number of slots is measured (four times `concurrency` its
    /// ceiling), as without `--concurrency`: one seed in three, other than
    /// the throttling comparisons.
    pub(super) adaptive: bool,
    pub(super) requests: Vec<Request>,
    pub(super) faults: HashMap<String, Fault>,
    pub(super) interruptions: Vec<(Duration, Interruption)>,
    /// How long a store call takes: drawn from this range, in microseconds.
    pub(super) latency_us: std::ops::Range<u64>,
    /// Each run starts by swapping its handler for one that rejects every
    /// update, under a rollback policy that rolls it back at its first
    /// refusal (one seed in four): what it refused must be decided again,
    /// in order, by the handler put back.
    pub(super) swap: bool,
}

impl Scenario {
    pub(super) fn draw(seed: u64) -> Scenario {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let source = *[
            SourceKind::Bucket,
            SourceKind::FifoQueue,
            SourceKind::StandardQueue,
        ]
        .choose(&mut rng)
        .unwrap();
        let concurrency = *[1, 2, 4, 8, 16].choose(&mut rng).unwrap();
        let widgets: Vec<String> = (0..rng.random_range(2..10)).map(|i| format!("w{i}")).collect();
        // Now and then one widget takes most of the traffic.
        let hot = rng.random_bool(0.3).then(|| widgets[0].clone());
        let count = rng.random_range(10..60);
        let mut requests = Vec::with_capacity(count);
        let mut arrives = Duration::ZERO;
        for i in 0..count {
            if rng.random_bool(0.2) {
                arrives += Duration::from_millis(rng.random_range(0..3000));
            }
            let key = format!("{i:04}");
            let request_id = format!("r{i}");
            let malformed = rng.random_bool(0.08);
            let widget = match &hot {
                Some(hot) if rng.random_bool(0.6) => hot.clone(),
                _ => widgets.choose(&mut rng).unwrap().clone(),
            };
            let (body, widget) = if malformed {
                let body: &[u8] = match rng.random_range(0..3) {
                    0 => b"{}",
                    1 => b"not json",
                    _ => br#"{"type":"create","owner":"Sue Smith"}"#,
                };
                (body.to_vec(), None)
            } else {
                let body = match rng.random_range(0..10) {
                    0..4 => format!(
                        r#"{{"type":"create","requestId":"{request_id}","widgetId":"{widget}","owner":"{OWNER}","label":"L{i}"}}"#
                    ),
                    4..8 => format!(
                        r#"{{"type":"update","requestId":"{request_id}","widgetId":"{widget}","owner":"{OWNER}","label":"U{i}"}}"#
                    ),
                    _ => format!(
                        r#"{{"type":"delete","requestId":"{request_id}","widgetId":"{widget}","owner":"{OWNER}"}}"#
                    ),
                };
                (body.into_bytes(), Some(widget))
            };
            requests.push(Request {
                key,
                body,
                widget,
                arrives,
            });
        }
        let mut faults = HashMap::new();
        // One seed in fifty: a longer stream over more widgets, one of
        // them throttled for the whole run and nothing else wrong, all
        // there from the start (so that the time taken is the host's), to
        // measure what one throttled widget costs the others.
        if rng.random_bool(0.02) {
            let widgets: Vec<String> = (0..20).map(|i| format!("w{i}")).collect();
            let requests = (0..300)
                .map(|i| {
                    let widget = widgets.choose(&mut rng).unwrap().clone();
                    let body = format!(
                        r#"{{"type":"create","requestId":"r{i}","widgetId":"{widget}","owner":"{OWNER}","label":"L{i}"}}"#
                    );
                    Request {
                        key: format!("{i:04}"),
                        body: body.into_bytes(),
                        widget: Some(widget),
                        arrives: Duration::ZERO,
                    }
                })
                .collect();
            faults.insert(widgets[0].clone(), Fault::Throttled { until: None });
            return Scenario {
                seed,
                source,
                concurrency: concurrency.max(8),
                // The comparison is of one throttled widget's cost at a
                // given number of slots.
                adaptive: false,
                requests,
                faults,
                interruptions: Vec::new(),
                // Calls as slow as a region's, so the run lasts seconds.
                latency_us: 30_000..60_000,
                swap: false,
            };
        }
        for widget in &widgets {
            let fault = match rng.random_range(0..100) {
                0..60 => continue,
                60..70 => Fault::Transient {
                    calls: rng.random_range(1..20),
                },
                70..78 => Fault::Throttled {
                    until: rng
                        .random_bool(0.5)
                        .then(|| Duration::from_secs(rng.random_range(1..60))),
                },
                78..86 => Fault::Hung {
                    until: rng
                        .random_bool(0.5)
                        .then(|| Duration::from_secs(rng.random_range(1..60))),
                },
                86..93 => Fault::Refused,
                _ => {
                    let from = Duration::from_millis(rng.random_range(0..5000));
                    Fault::Fatal {
                        from,
                        until: from + Duration::from_millis(rng.random_range(100..10_000)),
                    }
                }
            };
            faults.insert(widget.clone(), fault);
        }
        let mut interruptions = Vec::new();
        let mut at = Duration::ZERO;
        for _ in 0..rng.random_range(0..3) {
            at += Duration::from_millis(rng.random_range(10..5000));
            let what = match rng.random_bool(0.5) {
                true => Interruption::Stop,
                false => Interruption::Crash,
            };
            interruptions.push((at, what));
        }
        Scenario {
            seed,
            source,
            concurrency,
            adaptive: seed.is_multiple_of(3),
            requests,
            faults,
            interruptions,
            latency_us: 1_000..20_000,
            // Not drawn: the rest of every scenario is what it was before.
            swap: seed % 4 == 2,
        }
    }

    /// Whether `widget`'s requests never complete.
    pub(super) fn fails_for_ever(&self, widget: &str) -> bool {
        self.faults.get(widget).is_some_and(Fault::for_ever)
    }

    /// Whether a request naming no widget comes after one of a widget that
    /// fails for ever (what the first compound stall was made of).
    pub(super) fn keyless_behind_failing(&self) -> bool {
        let first_failing = self
            .requests
            .iter()
            .position(|r| r.widget.as_deref().is_some_and(|w| self.fails_for_ever(w)));
        first_failing.is_some_and(|i| self.requests[i..].iter().any(|r| r.widget.is_none()))
    }

    /// The same scenario without `widget`'s fault.
    pub(super) fn without_fault(&self, widget: &str) -> Scenario {
        let mut clean = self.clone();
        clean.faults.remove(widget);
        clean
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let malformed = self.requests.iter().filter(|r| r.widget.is_none()).count();
        write!(
            f,
            "seed {}: {:?}, concurrency {}{}, {} requests ({malformed} malformed), faults {:?}, interruptions {:?}{}",
            self.seed,
            self.source,
            self.concurrency,
            if self.adaptive { " (adaptive)" } else { "" },
            self.requests.len(),
            self.faults,
            self.interruptions,
            if self.swap { ", a swap rolled back" } else { "" }
        )
    }
}
//
