//! Deterministic simulation of the pipeline (after FoundationDB's
//! simulation testing and TigerBeetle's VOPR): a seed draws a scenario
//! (`scenario.rs`: requests, some malformed, some arriving later; a source
//! that lists again or a queue that does not; per-widget store faults:
//! transient, throttled, hung, refused, fatal; stops and crashes), and the
//! real pipeline, with the built-in handler, runs it on tokio's paused
//! clock against in-memory stand-ins (`bucket.rs`, `queue.rs`,
//! `store.rs`). Then:
//!
//! - **liveness**: every request of a widget that does not fail for ever
//!   is removed from the source within [`LIVENESS_BOUND`] of virtual time
//!   after the last fault, arrival or interruption, while other widgets
//!   keep failing;
//! - **order** (bucket, FIFO queue): each widget's requests leave the
//!   source in source order;
//! - **no valid request dead-lettered**: each dead letter is one the
//!   handler rejects in a sequential run, or one the store refused;
//! - **end state**: the store, less the widgets that fail for ever, equals
//!   a sequential run's, whatever stops and crashes came between (so no
//!   request was removed before its effects were stored);
//! - **a rolled-back swap changes nothing**: in one seed in four each run
//!   starts by swapping the handler for one that rejects every update,
//!   rolled back at its first refusal; the properties above hold as they
//!   are (what it refused on trial is decided again by the handler put
//!   back, in its widget's order);
//! - **throttling is attributed**: with one widget throttled for ever, the
//!   others finish in at most 1.25 times the virtual time they take
//!   without that fault.
//!
//! `WIDGET_SIM_SEEDS=N` runs seeds 0..N (default 10,000);
//! `WIDGET_SIM_SEED=S` replays one, printing the log; a failing seed
//! names the command that replays it.

mod bucket;
mod ledger;
mod queue;
mod scenario;
mod store;

use super::{Concurrency, Observers, Options, Rollback, run};
use crate::contract::{Context, Destination, Operation};
use crate::handler::swap::LiveHandler;
use crate::handler::{BUILTIN, Choice, Handler, Limits};
use crate::metrics::Metrics;
use crate::retry::Backoff;
use crate::sink::Sink;
use crate::sink::memory::MemorySink;
use crate::source::Source;
use bucket::SimBucket;
use ledger::{Ledger, Removal};
use queue::SimQueue;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use scenario::{Fault, Interruption, Scenario, SourceKind};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use store::{SimStore, widget_of};
use tokio_util::sync::CancellationToken;

/// How long after the last fault, arrival or interruption every request of
/// a healthy widget must be out of the source.
const LIVENESS_BOUND: Duration = Duration::from_secs(120);

/// How long a stopped host may take to finish what is in flight before the
/// simulation gives up on it (`--shutdown-timeout`'s default).
const SHUTDOWN: Duration = Duration::from_secs(30);

/// The test handler that rejects every update (a bad change), compiled
/// once for every seed.
fn refusing() -> Handler {
    static HANDLER: OnceLock<Handler> = OnceLock::new();
    HANDLER
        .get_or_init(|| {
            let wasm = std::fs::read(concat!(env!("WIDGET_HOST_TEST_GUESTS"), "/refusing_guest.wasm"))
                .expect("the build made the refusing test handler");
            let limits = Limits {
                reuse: 1000,
                ..Limits::default()
            };
            Handler::from_bytes(&wasm, limits).expect("the refusing handler compiles")
        })
        .clone()
}

/// The built-in handler, compiled once for every seed. Its instances are
/// reused (it keeps no state), which makes a seed cheap.
fn handler() -> Handler {
    static HANDLER: OnceLock<Handler> = OnceLock::new();
    HANDLER
        .get_or_init(|| {
            let limits = Limits {
                reuse: 1000,
                ..Limits::default()
            };
            Handler::from_bytes(BUILTIN, limits).expect("the built-in handler compiles")
        })
        .clone()
}

/// What one play of a scenario left.
struct Played {
    removed: Vec<(String, Removal)>,
    store: BTreeMap<String, String>,
    /// Virtual time when the last request the scenario expects to finish
    /// had left the source; `None` if some never did.
    finished: Option<Duration>,
}

/// The source a play runs on, kept to be told of crashes.
enum SimSource {
    Bucket(Arc<SimBucket>),
    Queue(Arc<SimQueue>),
}

impl SimSource {
    fn as_source(&self) -> Arc<dyn Source> {
        match self {
            SimSource::Bucket(bucket) => bucket.clone(),
            SimSource::Queue(queue) => queue.clone(),
        }
    }

    /// The host died without a word: a queue returns what it held after
    /// the visibility timeout.
    fn crashed(&self) {
        if let SimSource::Queue(queue) = self {
            queue.crashed();
        }
    }

    /// A new host process starts: a bucket's listing begins again from
    /// the first key.
    fn restarted(&self) {
        if let SimSource::Bucket(bucket) = self {
            bucket.restart();
        }
    }
}

/// The requests every correct host finishes: all but those of widgets
/// that fail for ever.
fn expected(scenario: &Scenario) -> Vec<String> {
    scenario
        .requests
        .iter()
        .filter(|r| r.widget.as_deref().is_none_or(|w| !scenario.fails_for_ever(w)))
        .map(|r| r.key.clone())
        .collect()
}

/// When the scenario's last disturbance is over: the last arrival,
/// interruption or end of a fault that ends, and time for the transient
/// failures.
fn settles_at(scenario: &Scenario) -> Duration {
    let arrivals = scenario.requests.iter().map(|r| r.arrives);
    let interruptions = scenario.interruptions.iter().map(|(at, _)| *at);
    let faults = scenario.faults.values().filter_map(|fault| match fault {
        Fault::Throttled { until } | Fault::Hung { until } => *until,
        Fault::Fatal { until, .. } => Some(*until),
        Fault::Transient { .. } | Fault::Refused => None,
    });
    let settled = arrivals
        .chain(interruptions)
        .chain(faults)
        .max()
        .unwrap_or_default();
    // A widget whose next calls fail transiently has no end time: each
    // failure may cost a backoff and a wait for a slot that hung calls
    // hold (at concurrency 1, a whole hung attempt of every hung widget,
    // which take turns with it once no new request waits).
    let transient_calls = scenario
        .faults
        .values()
        .map(|fault| match fault {
            Fault::Transient { calls } => *calls,
            _ => 0,
        })
        .max()
        .unwrap_or(0);
    let hung = scenario
        .faults
        .values()
        .filter(|fault| matches!(fault, Fault::Hung { .. }))
        .count() as u32;
    settled + (store::HUNG_FOR * (hung + 1) + Backoff::default().cap) * transient_calls
}

/// Plays `scenario` on a paused clock.
fn play(scenario: &Scenario) -> Played {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    crate::retry::seed_jitter(scenario.seed);
    runtime.block_on(async {
        let epoch = tokio::time::Instant::now();
        let rng = ChaCha8Rng::seed_from_u64(scenario.seed ^ 0x5eed);
        let ledger = Arc::new(Ledger::default());
        let store = Arc::new(SimStore::new(
            scenario.faults.clone(),
            scenario.latency_us.clone(),
            epoch,
            rng.clone(),
        ));
        let source = match scenario.source {
            SourceKind::Bucket => SimSource::Bucket(Arc::new(SimBucket::new(
                scenario.requests.clone(),
                epoch,
                ledger.clone(),
            ))),
            kind => SimSource::Queue(Arc::new(SimQueue::new(
                scenario.requests.clone(),
                kind == SourceKind::FifoQueue,
                epoch,
                rng,
                ledger.clone(),
            ))),
        };
        let expected = expected(scenario);
        let deadline = epoch + settles_at(scenario) + LIVENESS_BOUND;
        let mut interruptions = scenario.interruptions.iter().peekable();
        let all_done = || expected.iter().all(|key| ledger.has_removed(key));
        let mut finished = None;
        while finished.is_none() && tokio::time::Instant::now() < deadline {
            source.restarted();
            let stop = CancellationToken::new();
            let options = Options {
                concurrency: match scenario.adaptive {
                    true => Concurrency::Adaptive(scenario.concurrency * 4),
                    false => Concurrency::Fixed(scenario.concurrency),
                },
                until_empty: false,
                backoff: Backoff::default(),
                ..Options::default()
            };
            let handlers = LiveHandler::new(handler(), Choice::Builtin);
            let metrics = Arc::new(Metrics::default());
            // The swap is made before the run takes a request, so the
            // trusted handler counts as refusing none: the first refusal of
            // a window longer than any stream rolls it back.
            let observers = Observers {
                rollback: scenario.swap.then(|| {
                    handlers.promote(refusing());
                    Arc::new(Rollback::new(0.0, 1_000_000, handlers.clone(), metrics.clone()))
                }),
                ..Observers::default()
            };
            let mut host = tokio::spawn(run(
                source.as_source(),
                store.clone(),
                handlers,
                options,
                observers,
                metrics,
                stop.clone(),
            ));
            let next = interruptions.peek().map(|(at, what)| (epoch + *at, *what));
            let until_next = async {
                match next {
                    Some((at, _)) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let done = async {
                loop {
                    let changed = ledger.changed.notified();
                    if all_done() {
                        return;
                    }
                    changed.await;
                }
            };
            tokio::select! {
                biased;
                () = done => {
                    finished = Some(epoch.elapsed());
                    stop.cancel();
                    finish_within(&mut host).await;
                }
                ended = &mut host => {
                    // The run stopped itself: the environment failed. Its
                    // operator starts it again a little later.
                    assert!(ended.unwrap().is_err(), "a run without --until-empty ended by itself");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                () = until_next => {
                    interruptions.next();
                    match next.expect("slept until it").1 {
                        Interruption::Stop => {
                            stop.cancel();
                            finish_within(&mut host).await;
                        }
                        Interruption::Crash => {
                            host.abort();
                            let _ = host.await;
                            source.crashed();
                        }
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    stop.cancel();
                    finish_within(&mut host).await;
                }
            }
        }
        Played {
            removed: ledger.removed(),
            store: store.contents(),
            finished,
        }
    })
}

/// Waits for a stopped host to finish; one that takes longer than the
/// shutdown timeout is ended as the binary would end it.
async fn finish_within(host: &mut tokio::task::JoinHandle<anyhow::Result<crate::metrics::Summary>>) {
    if tokio::time::timeout(SHUTDOWN, &mut *host).await.is_err() {
        host.abort();
        let _ = (&mut *host).await;
    }
}

/// A sequential run: the requests one at a time in source order, against
/// a store without faults but the refusals, leaving out the widgets that
/// fail for ever. What each request came to, and the store.
fn sequential(scenario: &Scenario) -> (BTreeMap<String, bool>, BTreeMap<String, String>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let handler = handler();
        let store = Arc::new(MemorySink::new(Destination::ObjectStore));
        let mut applied = BTreeMap::new();
        for request in &scenario.requests {
            if request
                .widget
                .as_deref()
                .is_some_and(|w| scenario.fails_for_ever(w))
            {
                continue;
            }
            let context = Context {
                key: request.key.clone(),
                destination: Destination::ObjectStore,
            };
            let handled = handler
                .handle(&request.body, &context, store.clone())
                .await
                .expect("the built-in handler answers");
            let ok = match handled.verdict {
                Err(_) => false,
                Ok(plan) => {
                    let refused = plan.operations.iter().any(|op| {
                        let key = match op {
                            Operation::Put { key, .. } | Operation::Delete(key) => key,
                        };
                        scenario.faults.get(widget_of(key)) == Some(&Fault::Refused)
                    });
                    if !refused {
                        for op in &plan.operations {
                            match op {
                                Operation::Put { key, document } => store.put(key, document).await.unwrap(),
                                Operation::Delete(key) => store.delete(key).await.unwrap(),
                            }
                        }
                    }
                    !refused
                }
            };
            applied.insert(request.key.clone(), ok);
        }
        (applied, store.contents())
    })
}

/// Runs one seed and checks every property; the error says which failed.
fn check(seed: u64) -> Result<(), String> {
    let scenario = Scenario::draw(seed);
    let played = play(&scenario);
    let fail = |what: String| Err(format!("{scenario}\n{what}"));
    // Liveness.
    if played.finished.is_none() {
        let removed: Vec<&String> = played.removed.iter().map(|(k, _)| k).collect();
        let missing: Vec<String> = expected(&scenario)
            .into_iter()
            .filter(|k| !removed.contains(&k))
            .collect();
        let behind = match scenario.keyless_behind_failing() {
            true => " (a request naming no widget follows one of a widget that fails for ever)",
            false => "",
        };
        return fail(format!(
            "liveness: requests of healthy widgets still in the source {LIVENESS_BOUND:?} after the last disturbance{behind}: {missing:?}"
        ));
    }
    let widget_of_request = |key: &str| {
        scenario
            .requests
            .iter()
            .find(|r| r.key == key)
            .and_then(|r| r.widget.clone())
    };
    let ordered = scenario.source != SourceKind::StandardQueue;
    // Order.
    if ordered {
        let mut last: BTreeMap<String, &str> = BTreeMap::new();
        for (key, _) in &played.removed {
            if let Some(widget) = widget_of_request(key) {
                if let Some(before) = last.get(&widget)
                    && *before > key.as_str()
                {
                    return fail(format!("order: {key} of {widget} left the source after {before}"));
                }
                last.insert(widget, key);
            }
        }
    }
    let (reference, reference_store) = sequential(&scenario);
    // No valid request dead-lettered.
    for (key, removal) in &played.removed {
        let Removal::DeadLettered(reason) = removal else {
            continue;
        };
        let refused =
            widget_of_request(key).is_some_and(|w| scenario.faults.get(&w) == Some(&Fault::Refused));
        let rejected = reference.get(key) == Some(&false);
        let may = match ordered {
            true => rejected || (refused && reason.contains("store refused")),
            false => !reason.contains("transient"),
        };
        if !may {
            return fail(format!(
                "dead letter: {key} is valid, dead-lettered as {reason:?}"
            ));
        }
    }
    // End state.
    if ordered {
        let healthy = |key: &String| !scenario.fails_for_ever(widget_of(key));
        let got: BTreeMap<_, _> = played.store.iter().filter(|(k, _)| healthy(k)).collect();
        let wanted: BTreeMap<_, _> = reference_store.iter().filter(|(k, _)| healthy(k)).collect();
        if got != wanted {
            return fail(format!("end state: got {got:#?}\nwanted {wanted:#?}"));
        }
    }
    // Throttling is attributed.
    let throttled: Vec<&String> = scenario
        .faults
        .iter()
        .filter(|(_, f)| **f == Fault::Throttled { until: None })
        .map(|(w, _)| w)
        .collect();
    let other_faults = scenario.faults.len() > 1 || !scenario.interruptions.is_empty();
    if let ([widget], false) = (&throttled[..], other_faults) {
        let clean = play(&scenario.without_fault(widget));
        let (with, without) = (played.finished.unwrap(), clean.finished.unwrap());
        if std::env::var_os("WIDGET_SIM_REPORT").is_some() {
            eprintln!(
                "throttling: seed {seed}: others took {with:?} with {widget} throttled, {without:?} without"
            );
        }
        // A standard queue hands a busy widget's messages back for 5 s: a
        // difference of one such delay is the queue's, not the throttling's.
        let slack = match scenario.source {
            SourceKind::StandardQueue => Duration::from_secs(5),
            _ => Duration::from_millis(50),
        };
        if with > without.mul_f64(1.1) + slack {
            return fail(format!(
                "throttling: with {widget} throttled the others took {with:?}, without {without:?}"
            ));
        }
    }
    Ok(())
}

/// The seeds to run: `WIDGET_SIM_SEED` alone, or `0..WIDGET_SIM_SEEDS`.
fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("WIDGET_SIM_SEED") {
        return vec![seed.parse().expect("WIDGET_SIM_SEED is a number")];
    }
    let count = std::env::var("WIDGET_SIM_SEEDS")
        .map_or(10_000, |n| n.parse().expect("WIDGET_SIM_SEEDS is a number"));
    let first = std::env::var("WIDGET_SIM_FIRST_SEED").map_or(0, |n| n.parse().expect("a number"));
    (first..first + count).collect()
}

#[test]
fn the_pipeline_stays_live_ordered_and_lossless_under_simulated_faults() {
    let seeds = seeds();
    let replaying = seeds.len() == 1;
    if replaying {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_ansi(false)
            .without_time()
            .with_env_filter(tracing_subscriber::EnvFilter::new("widget_host=debug"))
            .try_init();
    }
    // `WIDGET_SIM_KEEP_GOING=1`: run every seed and tally the failures
    // by property and source (to measure what a change fixes).
    let keep_going = std::env::var_os("WIDGET_SIM_KEEP_GOING").is_some();
    let started = std::time::Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(4);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&seed) = seeds.get(i) else { return };
                    if !failures.lock().unwrap().is_empty() && !replaying && !keep_going {
                        return;
                    }
                    if let Err(failure) = check(seed) {
                        failures.lock().unwrap().push((seed, failure));
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap();
    failures.sort_by_key(|(seed, _)| *seed);
    if keep_going {
        let mut tally: BTreeMap<String, (usize, u64)> = BTreeMap::new();
        for (seed, failure) in &failures {
            let mut lines = failure.lines();
            let source = lines
                .next()
                .and_then(|l| l.split(", ").next())
                .and_then(|l| l.split(": ").nth(1))
                .unwrap_or("?");
            let property = lines
                .next()
                .map(|l| match l.split_once(": ") {
                    Some((property, rest)) if rest.contains("naming no widget") => {
                        format!("{property}, keyless behind failing")
                    }
                    Some((property, _)) => property.to_owned(),
                    None => "?".to_owned(),
                })
                .unwrap_or_default();
            let entry = tally
                .entry(format!("{property} ({source})"))
                .or_insert((0, *seed));
            entry.0 += 1;
        }
        for (what, (count, first)) in tally {
            eprintln!("  {what}: {count} seeds, first {first}");
        }
    }
    eprintln!(
        "simulation: {} seeds in {:.1} s, {} failed",
        seeds.len(),
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    if let Some((seed, failure)) = failures.first() {
        panic!(
            "{failure}\nreplay: WIDGET_SIM_SEED={seed} cargo test -p widget-host --lib pipeline::sim -- --nocapture"
        );
    }
}
