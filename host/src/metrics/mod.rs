//! What a run counts, recorded as it goes ([`Metrics`], here), and shown
//! two ways: the end-of-run report ([`summary`]) and the same counts with
//! histograms and gauges for Prometheus ([`scrape`] makes the registry,
//! [`exporter`] serves it on `--metrics-addr`).

pub(crate) mod exporter;
pub(crate) mod health;
mod process;
mod scrape;
mod summary;

pub use summary::Summary;

use crate::retry::RetryCount;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime};

/// Distinct request kinds counted under their own name, in the summary and
/// the metrics; the kind is the handler's word, and a handler could make up
/// a new one per request.
const MAX_KINDS: usize = 32;

/// The kind label of requests past [`MAX_KINDS`], and of dead letters
/// (no plan, no kind).
const OTHER_KIND: &str = "other";

/// What happened to the requests of one run.
#[derive(Debug)]
pub(crate) struct Metrics {
    started: Instant,
    /// The time requests were in progress: the summary's rate is over it.
    busy: Mutex<Busy>,
    counts: Mutex<Counts>,
    /// Every retry loop of the run adds to this.
    pub(crate) retries: RetryCount,
    /// Where the run is, for `/readyz`.
    pub(crate) health: health::Health,
    /// Requests done, by kind and outcome.
    requests: Family<RequestLabels, Counter>,
    /// Seconds per handler call (`handle`).
    handler_seconds: Histogram,
    /// Seconds from a request's listing to its removal from the source.
    latency_seconds: Histogram,
    /// Requests admitted and not yet done.
    in_flight: Gauge,
    /// Age of the oldest request the last full pass over the source saw.
    source_lag_seconds: Gauge<f64, AtomicU64>,
    /// How long the request without an ordering key now waiting for the
    /// requests in flight has waited; 0 when none waits.
    keyless_wait_seconds: Gauge<f64, AtomicU64>,
    /// Requests the run may process at once now (lowered while the backend
    /// throttles broadly).
    pub(crate) concurrency: Gauge,
    /// Messages of a busy key handed back to their queue, to return later.
    handed_back: Counter,
    /// Requests the candidate handler was compared on, by outcome.
    candidate_requests: Family<CandidateLabels, Counter>,
    /// Seconds per candidate call (`handle`, in shadow).
    candidate_seconds: Histogram,
    /// 1 while the live handler is the promoted candidate.
    candidate_promoted: Gauge,
    /// Swaps of the live handler, by kind: reload, promotion, rollback.
    handler_swaps: Family<SwapLabels, Counter>,
    /// Swaps undone by the rollback policy.
    rollbacks: Counter,
    /// Requests done, and known of, for the progress display.
    pub(crate) progress: crate::progress::Counts,
    /// The live handler's instance counts (shared by its replacements),
    /// once it reports them.
    instances: std::sync::OnceLock<std::sync::Arc<InstancesMade>>,
}

/// The time some request was in flight: closed spells, and the open one.
#[derive(Debug, Default)]
struct Busy {
    total: Duration,
    since: Option<Instant>,
}

/// How many handler instances were made for each export: what a request
/// costs in instances. Counted by the handler's engines.
#[derive(Debug, Default)]
pub(crate) struct InstancesMade {
    ordering_key: AtomicU64,
    handle: AtomicU64,
}

impl InstancesMade {
    /// One more instance made, for `ordering-key` (`key`) or `handle`.
    pub(crate) fn one_more(&self, key: bool) {
        let counter = if key { &self.ordering_key } else { &self.handle };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Instances made for `ordering-key`, and for `handle`.
    pub(crate) fn get(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.ordering_key.load(Relaxed), self.handle.load(Relaxed))
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    kind: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SwapLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CandidateLabels {
    outcome: &'static str,
}

/// What a run saw of its candidate handler (`--candidate`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Requests on which it agreed with the live handler.
    pub agreed: u64,
    /// Requests on which it did not: another verdict or another plan.
    pub differed: u64,
    /// Requests it failed on (trap, limit) where the live one did not.
    pub failed: u64,
    /// Requests not compared: no room, or a store read failed.
    pub skipped: u64,
    /// It became the live handler (`--promote-after`).
    pub promoted: bool,
}

impl Candidate {
    /// Whether a difference or a failure rules promotion out.
    pub fn disqualified(&self) -> bool {
        self.differed + self.failed > 0
    }
}

#[derive(Debug, Default, Clone)]
struct Counts {
    /// Applied requests by the kind the handler named.
    applied: BTreeMap<String, u64>,
    warnings: u64,
    dead_lettered: u64,
    operations: u64,
}

/// Requests taken out of the source: applied (by kind) or dead-lettered.
fn processed(applied: &BTreeMap<String, u64>, dead_lettered: u64) -> u64 {
    applied.values().sum::<u64>() + dead_lettered
}

/// Outcome label of a request whose operations are stored, for logs.
pub(crate) const APPLIED: &str = "applied";
/// Outcome label of a request moved to the dead-letter place.
pub(crate) const DEAD_LETTERED: &str = "dead-lettered";

impl Default for Metrics {
    fn default() -> Self {
        // 1 ms to about 65 s, doubling.
        let seconds = || Histogram::new(exponential_buckets(0.001, 2.0, 17));
        Metrics {
            started: Instant::now(),
            busy: Mutex::default(),
            counts: Mutex::default(),
            retries: RetryCount::default(),
            health: health::Health::default(),
            requests: Family::default(),
            handler_seconds: seconds(),
            latency_seconds: seconds(),
            in_flight: Gauge::default(),
            source_lag_seconds: Gauge::default(),
            keyless_wait_seconds: Gauge::default(),
            concurrency: Gauge::default(),
            handed_back: Counter::default(),
            candidate_requests: Family::default(),
            candidate_seconds: seconds(),
            candidate_promoted: Gauge::default(),
            handler_swaps: Family::default(),
            rollbacks: Counter::default(),
            progress: Default::default(),
            instances: std::sync::OnceLock::new(),
        }
    }
}

impl Metrics {
    /// Counts a request whose operations are stored.
    pub(crate) fn applied(&self, kind: &str, operations: usize, warnings: u32) {
        let mut c = self.counts.lock().unwrap();
        // The summary and the metrics alike keep at most MAX_KINDS kinds:
        // a handler naming a new kind per request must not grow the host.
        let kind = if c.applied.contains_key(kind) || c.applied.len() < MAX_KINDS {
            kind
        } else {
            OTHER_KIND
        };
        *c.applied.entry(kind.to_owned()).or_default() += 1;
        c.operations += operations as u64;
        c.warnings += u64::from(warnings);
        drop(c);
        self.finished(kind, APPLIED);
    }

    /// Counts a request moved to the dead-letter place.
    pub(crate) fn dead_lettered(&self) {
        self.counts.lock().unwrap().dead_lettered += 1;
        self.finished(OTHER_KIND, DEAD_LETTERED);
    }

    /// A request is out of the source: for the progress display, and by
    /// kind and outcome for Prometheus.
    fn finished(&self, kind: &str, outcome: &'static str) {
        self.progress.add_done(1);
        self.requests
            .get_or_create(&RequestLabels {
                kind: kind.to_owned(),
                outcome,
            })
            .inc();
    }

    /// Requests taken out of the source so far.
    pub(crate) fn processed(&self) -> u64 {
        let c = self.counts.lock().unwrap();
        processed(&c.applied, c.dead_lettered)
    }

    /// Records how long one handler call took.
    pub(crate) fn handler_call(&self, took: Duration) {
        self.handler_seconds.observe(took.as_secs_f64());
    }

    /// Records how long one candidate call took.
    pub(crate) fn candidate_call(&self, took: Duration) {
        self.candidate_seconds.observe(took.as_secs_f64());
    }

    /// Counts a request the candidate was compared on (or not), by outcome.
    pub(crate) fn candidate(&self, outcome: &'static str) {
        self.candidate_requests
            .get_or_create(&CandidateLabels { outcome })
            .inc();
    }

    /// Counts a swap of the live handler (`kind`: reload, promotion,
    /// rollback); `promoted`: the live handler is the promoted candidate
    /// now.
    pub(crate) fn handler_swapped(&self, kind: &'static str, promoted: bool) {
        self.handler_swaps.get_or_create(&SwapLabels { kind }).inc();
        self.candidate_promoted.set(i64::from(promoted));
    }

    /// Counts a swap the rollback policy undid.
    pub(crate) fn rolled_back(&self) {
        self.rollbacks.inc();
    }

    /// Records how long a request took from its listing to its removal.
    pub(crate) fn request_done(&self, listed: Instant) {
        self.latency_seconds.observe(listed.elapsed().as_secs_f64());
    }

    /// Records how many requests are in flight, and so the time the run
    /// was busy: some request in flight.
    pub(crate) fn set_in_flight(&self, requests: usize) {
        self.in_flight.set(requests as i64);
        let mut busy = self.busy.lock().unwrap();
        match (requests, busy.since) {
            (0, Some(since)) => {
                busy.total += since.elapsed();
                busy.since = None;
            }
            (1.., None) => busy.since = Some(Instant::now()),
            _ => {}
        }
    }

    /// The time some request was in flight, so far.
    fn busy(&self) -> Duration {
        let busy = self.busy.lock().unwrap();
        busy.total + busy.since.map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// Records how long a request without an ordering key has waited for
    /// the requests in flight (zero: none waits).
    pub(crate) fn set_keyless_wait(&self, waited: Duration) {
        self.keyless_wait_seconds.set(waited.as_secs_f64());
    }

    /// Counts a message handed back to its queue.
    pub(crate) fn handed_back(&self) {
        self.handed_back.inc();
    }

    /// Records the oldest request a full pass over the source saw (`None`:
    /// the pass found none).
    pub(crate) fn set_oldest_waiting(&self, oldest: Option<SystemTime>) {
        let age = oldest.and_then(|t| t.elapsed().ok()).unwrap_or_default();
        self.source_lag_seconds.set(age.as_secs_f64());
    }

    /// The counts so far, as the end-of-run report.
    /// Reads the handler's instance counts from `made` from now on.
    pub(crate) fn count_instances_in(&self, made: std::sync::Arc<InstancesMade>) {
        let _ = self.instances.set(made);
    }

    /// Handler instances made so far, for `ordering-key` and for `handle`.
    pub(crate) fn instances(&self) -> Option<(u64, u64)> {
        self.instances.get().map(|made| made.get())
    }

    /// `Ok` when the run is ready to take requests; otherwise why not.
    pub(crate) fn readiness(&self) -> Result<(), String> {
        self.health.readiness(&self.retries)
    }

    pub(crate) fn summary(&self, dead_letter_place: String) -> Summary {
        let c = self.counts.lock().unwrap().clone();
        Summary {
            elapsed: self.started.elapsed(),
            busy: self.busy(),
            applied: c.applied,
            warnings: c.warnings,
            dead_lettered: c.dead_lettered,
            retries: self.retries.get(),
            operations: c.operations,
            dead_letter_place,
            left_in_source: 0,
            api_calls: BTreeMap::new(),
            sdk_retries: 0,
            candidate: None,
            rolled_back: self.rollbacks.get(),
            swaps: Vec::new(),
            instances: self.instances(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_rate_is_over_the_time_requests_were_in_progress() {
        let metrics = Metrics::default();
        let idle = Duration::from_millis(60);
        std::thread::sleep(idle);
        metrics.set_in_flight(1);
        metrics.set_in_flight(2);
        std::thread::sleep(Duration::from_millis(30));
        metrics.set_in_flight(0);
        std::thread::sleep(idle);
        let summary = metrics.summary("nowhere".into());
        assert!(summary.busy >= Duration::from_millis(30), "{:?}", summary.busy);
        assert!(
            summary.busy + 2 * idle <= summary.elapsed,
            "the idle time is left out: {:?} of {:?}",
            summary.busy,
            summary.elapsed
        );
        assert!(summary.to_string().contains("with requests in progress"));
    }

    #[test]
    fn the_scheduling_gauges_and_hand_backs_are_scraped() {
        let metrics = std::sync::Arc::new(Metrics::default());
        metrics.concurrency.set(4);
        metrics.set_keyless_wait(Duration::from_secs(12));
        metrics.handed_back();
        metrics.handed_back();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry(None, true)).unwrap();
        for line in [
            "widget_host_concurrency_limit 4",
            "widget_host_keyless_wait_seconds 12.0",
            "widget_host_requests_handed_back_total 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
    }

    #[test]
    fn kinds_past_the_limit_are_counted_as_other() {
        let metrics = Metrics::default();
        for i in 0..MAX_KINDS + 10 {
            metrics.applied(&format!("kind{i}"), 1, 0);
        }
        metrics.applied("kind0", 1, 0);
        let summary = metrics.summary(String::new());
        assert_eq!(summary.applied.len(), MAX_KINDS + 1);
        assert_eq!(summary.applied[OTHER_KIND], 10);
        assert_eq!(summary.applied["kind0"], 2);
        assert_eq!(summary.processed(), MAX_KINDS as u64 + 11);
    }
}
