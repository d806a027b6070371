//! The pipeline against test stores: classes of failure, order, counting.

use super::*;
use crate::contract::Destination;
use crate::error::{Class, StorageError};
use crate::handler::{BUILTIN, Choice, Handler, Limits};
use crate::producer::Producer;
use crate::sink::Read;
use crate::sink::memory::MemorySink;
use crate::source::dir::DirSource;
use crate::source::{DeadLettering, Fetched, Listed, Page, Version};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// A store whose first `failures` writes (of keys ending in `only`, if
/// given) fail transiently.
struct Flaky {
    inner: MemorySink,
    failures: AtomicU32,
    only: Option<&'static str>,
}

impl Flaky {
    fn fail_once_more(&self, key: &str) -> Result<(), StorageError> {
        if self.only.is_some_and(|only| !key.ends_with(only)) {
            return Ok(());
        }
        let left = self.failures.load(Ordering::SeqCst);
        if left == 0 {
            return Ok(());
        }
        self.failures.store(left - 1, Ordering::SeqCst);
        Err(StorageError::new("put", Class::Transient, "slow down"))
    }
}

#[async_trait::async_trait]
impl Sink for Flaky {
    fn destination(&self) -> Destination {
        self.inner.destination()
    }
    fn describe(&self) -> String {
        "flaky".into()
    }
    async fn put(&self, key: &str, document: &str) -> Result<(), StorageError> {
        self.fail_once_more(key)?;
        self.inner.put(key, document).await
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.fail_once_more(key)?;
        self.inner.delete(key).await
    }
}

#[async_trait::async_trait]
impl Read for Flaky {
    async fn get(&self, key: &str) -> Result<Option<String>, StorageError> {
        self.inner.get(key).await
    }
}

/// A store whose writes fail as `verdict` says for their key, after
/// `delay`; it notes whether a write without an ordering key (the
/// hostile handler stores those with U+FFFD in their document) ever
/// overlapped another.
struct Scripted {
    inner: MemorySink,
    verdict: fn(&str) -> Option<Class>,
    delay: Duration,
    writing: Mutex<(u32, bool)>,
    overlapped: std::sync::atomic::AtomicBool,
}

impl Scripted {
    fn new(verdict: fn(&str) -> Option<Class>, delay: Duration) -> Arc<Scripted> {
        Arc::new(Scripted {
            inner: MemorySink::new(Destination::ObjectStore),
            verdict,
            delay,
            writing: Mutex::default(),
            overlapped: Default::default(),
        })
    }
}

#[async_trait::async_trait]
impl Sink for Scripted {
    fn destination(&self) -> Destination {
        self.inner.destination()
    }
    fn describe(&self) -> String {
        "scripted".into()
    }
    async fn put(&self, key: &str, document: &str) -> Result<(), StorageError> {
        let alone = document.contains('\u{FFFD}');
        {
            let mut writing = self.writing.lock().unwrap();
            if writing.0 > 0 && (alone || writing.1) {
                self.overlapped.store(true, Ordering::SeqCst);
            }
            *writing = (writing.0 + 1, writing.1 || alone);
        }
        tokio::time::sleep(self.delay).await;
        {
            let mut writing = self.writing.lock().unwrap();
            *writing = (writing.0 - 1, writing.1 && !alone);
        }
        if let Some(class) = (self.verdict)(key) {
            return Err(StorageError::new(format!("put {key}"), class, "scripted failure"));
        }
        self.inner.put(key, document).await
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.inner.delete(key).await
    }
}

#[async_trait::async_trait]
impl Read for Scripted {
    async fn get(&self, key: &str) -> Result<Option<String>, StorageError> {
        self.inner.get(key).await
    }
}

fn quick() -> Options {
    Options {
        until_empty: true,
        backoff: Backoff {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
        },
        ..Options::default()
    }
}

/// Runs the built-in handler over the folder `dir` into `sink`, to the end.
async fn run_dir(dir: &std::path::Path, sink: Arc<dyn Sink>) -> anyhow::Result<crate::metrics::Summary> {
    let source = Arc::new(DirSource::open(dir).unwrap());
    run(
        source,
        sink,
        builtin(),
        quick(),
        Observers::default(),
        Arc::default(),
        CancellationToken::new(),
    )
    .await
}

fn create(widget: &str, owner: &str) -> String {
    format!(r#"{{"type":"create","requestId":"r","widgetId":"{widget}","owner":"{owner}","label":"L"}}"#)
}

fn requests(dir: &std::path::Path, bodies: &[Vec<u8>]) {
    for (i, body) in bodies.iter().enumerate() {
        std::fs::write(dir.join(format!("{i:04}")), body).unwrap();
    }
}

fn builtin() -> Arc<LiveHandler> {
    LiveHandler::new(
        Handler::from_bytes(BUILTIN, Limits::default()).unwrap(),
        Choice::Builtin,
    )
}

#[tokio::test]
async fn a_store_refusing_one_requests_data_dead_letters_that_request_only() {
    let dir = tempfile::tempdir().unwrap();
    let bodies: Vec<Vec<u8>> = (0..10)
        .map(|i| {
            create(
                &format!("w{i}"),
                if i % 3 == 0 { "Sue Smith" } else { "Mary Matthews" },
            )
            .into()
        })
        .collect();
    requests(dir.path(), &bodies);
    let sink = Scripted::new(
        |key| key.contains("sue-smith").then_some(Class::Request),
        Duration::ZERO,
    );
    let summary = run_dir(dir.path(), sink.clone()).await.unwrap();
    assert_eq!((summary.processed(), summary.dead_lettered), (10, 4));
    let reason = std::fs::read_to_string(dir.path().join("dead-letter/0000.reason")).unwrap();
    assert!(
        reason.contains("store refused an operation: put widgets/sue-smith/w0"),
        "{reason}"
    );
    assert_eq!(sink.inner.contents().len(), 6);
}

#[tokio::test]
async fn a_failing_environment_stops_the_run_and_dead_letters_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bodies: Vec<Vec<u8>> = (0..30)
        .map(|i| create(&format!("w{i}"), "Sue Smith").into())
        .collect();
    requests(dir.path(), &bodies);
    // Every write after the fifth meets expired credentials.
    let sink = Scripted::new(
        |key| {
            let n: u32 = key.trim_start_matches("widgets/sue-smith/w").parse().unwrap();
            (n >= 5).then_some(Class::Fatal)
        },
        Duration::ZERO,
    );
    let source = Arc::new(DirSource::open(dir.path()).unwrap());
    let options = Options {
        concurrency: Concurrency::Fixed(1),
        ..quick()
    };
    let error = run(
        source,
        sink.clone(),
        builtin(),
        options,
        Observers::default(),
        Arc::default(),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("scripted failure"), "{error}");
    assert!(!dir.path().join("dead-letter").exists());
    let left = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
        .count();
    assert_eq!(left, 25, "exactly the requests not stored stay");
    assert_eq!(sink.inner.contents().len(), 5);
}

#[tokio::test]
async fn a_request_without_an_ordering_key_runs_alone() {
    let guest = std::path::Path::new(env!("WIDGET_HOST_TEST_GUESTS")).join("hostile_guest.wasm");
    let handler = Handler::from_bytes(&std::fs::read(guest).unwrap(), Limits::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The hostile handler's ordering key is the body as text: none for
    // bytes that are not UTF-8.
    let bodies: Vec<Vec<u8>> = (0..24)
        .map(|i| {
            if i % 6 == 3 {
                vec![0xff, i]
            } else {
                format!("echo {i}").into_bytes()
            }
        })
        .collect();
    requests(dir.path(), &bodies);
    let sink = Scripted::new(|_| None, Duration::from_millis(20));
    let source = Arc::new(DirSource::open(dir.path()).unwrap());
    let summary = run(
        source,
        sink.clone(),
        LiveHandler::new(handler, Choice::Builtin),
        quick(),
        Observers::default(),
        Arc::default(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(summary.processed(), 24);
    assert_eq!(sink.inner.contents().len(), 24);
    assert!(
        !sink.overlapped.load(Ordering::SeqCst),
        "a keyless request ran beside another"
    );
}

#[tokio::test]
async fn every_retried_store_write_is_counted_in_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let mut producer = Producer::new(3, 1_700_000_000_000);
    for _ in 0..20 {
        let request = producer.next_request();
        std::fs::write(dir.path().join(request.key), request.body).unwrap();
    }
    let sink = Arc::new(Flaky {
        inner: MemorySink::new(Destination::ObjectStore),
        failures: AtomicU32::new(7),
        only: None,
    });
    let handler = Handler::from_bytes(BUILTIN, Limits::default()).unwrap();
    let options = Options {
        until_empty: true,
        backoff: Backoff {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
        },
        ..Options::default()
    };
    let summary = run(
        Arc::new(DirSource::open(dir.path()).unwrap()),
        sink.clone(),
        LiveHandler::new(handler, Choice::Builtin),
        options,
        Observers::default(),
        Arc::default(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!((summary.processed(), summary.dead_lettered), (20, 0));
    assert_eq!(summary.retries, 7);
    assert_eq!(sink.failures.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_key_that_keeps_failing_holds_up_only_its_own_requests() {
    let dir = tempfile::tempdir().unwrap();
    let mut bodies: Vec<Vec<u8>> = (0..=300)
        .map(|i| create(&format!("w{i}"), "Sue Smith").into())
        .collect();
    // Later requests about the stuck widget must wait behind it, in order:
    // more of them than are held in memory behind one key.
    for at in [40, 80, 120, 160, 200, 240] {
        let update = r#"{"type":"update","requestId":"u","widgetId":"w0","owner":"Sue Smith","label":"new"}"#;
        bodies.insert(at, update.into());
    }
    requests(dir.path(), &bodies);
    // Every write of w0 is throttled, for as long as the test runs.
    let sink = Scripted::new(
        |key| key.ends_with("/w0").then_some(Class::Transient),
        Duration::ZERO,
    );
    let source = Arc::new(DirSource::open(dir.path()).unwrap());
    let stop = CancellationToken::new();
    let running = tokio::spawn(run(
        source,
        sink.clone(),
        builtin(),
        quick(),
        Observers::default(),
        Arc::default(),
        stop.clone(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sink.inner.contents().len() < 300 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the other widgets stalled behind w0"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    let summary = running.await.unwrap().unwrap();
    assert_eq!(summary.processed(), 300);
    assert!(!sink.inner.contents().contains_key("widgets/sue-smith/w0"));
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    assert_eq!(left.len(), 7, "w0's create and its six updates stay: {left:?}");
}

#[tokio::test]
async fn a_key_that_recovers_takes_its_held_back_requests_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut bodies: Vec<Vec<u8>> = (0..=100)
        .map(|i| create(&format!("w{i}"), "Sue Smith").into())
        .collect();
    for n in 1..=8 {
        let update = format!(
            r#"{{"type":"update","requestId":"u","widgetId":"w0","owner":"Sue Smith","label":"u{n}"}}"#
        );
        bodies.insert(n * 11, update.into());
    }
    requests(dir.path(), &bodies);
    let sink = Arc::new(Flaky {
        inner: MemorySink::new(Destination::ObjectStore),
        failures: AtomicU32::new(200),
        only: Some("/w0"),
    });
    let summary = run_dir(dir.path(), sink.clone()).await.unwrap();
    assert_eq!((summary.processed(), summary.dead_lettered), (109, 0));
    let w0: serde_json::Value = serde_json::from_str(&sink.inner.contents()["widgets/sue-smith/w0"]).unwrap();
    assert_eq!(w0["label"], "u8", "the updates ran in order: {w0}");
}

/// A backend that throttles every write for its first `throttled_for`, and
/// notes how many writes were under way at each attempt, and when.
struct Throttling {
    inner: MemorySink,
    throttled_for: Duration,
    started: Mutex<Option<tokio::time::Instant>>,
    active: AtomicU32,
    /// (time since the first write, writes under way counting this one).
    attempts: Mutex<Vec<(Duration, u32)>>,
}

#[async_trait::async_trait]
impl Sink for Throttling {
    fn destination(&self) -> Destination {
        self.inner.destination()
    }
    fn describe(&self) -> String {
        "throttling".into()
    }
    async fn put(&self, key: &str, document: &str) -> Result<(), StorageError> {
        let since = self
            .started
            .lock()
            .unwrap()
            .get_or_insert_with(tokio::time::Instant::now)
            .elapsed();
        let active = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.attempts.lock().unwrap().push((since, active));
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.active.fetch_sub(1, Ordering::SeqCst);
        if since < self.throttled_for {
            let mut error = StorageError::new(format!("put {key}"), Class::Transient, "SlowDown");
            error.throttling = true;
            return Err(error);
        }
        self.inner.put(key, document).await
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.inner.delete(key).await
    }
}

#[async_trait::async_trait]
impl Read for Throttling {
    async fn get(&self, key: &str) -> Result<Option<String>, StorageError> {
        self.inner.get(key).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_backend_gets_fewer_requests_at_once_until_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    // Enough that after the throttling some 300 ms of work is left even
    // at full concurrency.
    let bodies: Vec<Vec<u8>> = (0..1500)
        .map(|i| create(&format!("w{i}"), "Sue Smith").into())
        .collect();
    requests(dir.path(), &bodies);
    let throttled_for = Duration::from_secs(2);
    let sink = Arc::new(Throttling {
        inner: MemorySink::new(Destination::ObjectStore),
        throttled_for,
        started: Mutex::default(),
        active: AtomicU32::new(0),
        attempts: Mutex::default(),
    });
    let summary = run_dir(dir.path(), sink.clone()).await.unwrap();
    assert_eq!(
        (summary.processed(), summary.dead_lettered),
        (1500, 0),
        "nothing lost"
    );
    let attempts = sink.attempts.lock().unwrap();
    let most_at_once = |from: Duration, to: Duration| {
        attempts
            .iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0)
    };
    let at_first = most_at_once(Duration::ZERO, Duration::from_millis(100));
    let late_in_throttling = most_at_once(throttled_for - Duration::from_millis(800), throttled_for);
    let after = most_at_once(throttled_for + Duration::from_millis(300), Duration::MAX);
    assert!(at_first >= 4, "{at_first} at once before any throttling");
    assert!(
        late_in_throttling <= 2,
        "{late_in_throttling} at once while throttled"
    );
    assert!(after >= 4, "{after} at once after the throttling stopped");
}

/// A source that hands out each request once, as a FIFO queue with one
/// message group does: what it lists it never lists again, unless the
/// pipeline hands it back (then at once, in key order), and it lists
/// nothing that comes after a message it has handed out and not had back
/// (acked or handed back). Without that last rule, a message handed back
/// early (its hand-back is a task of its own) overtook earlier ones still
/// on their way back, under load: an order no FIFO queue gives.
struct OneShot {
    waiting: Mutex<Vec<Listed>>,
    /// Handed out, not yet acked or handed back.
    out: Mutex<std::collections::BTreeSet<String>>,
    bodies: BTreeMap<String, Vec<u8>>,
    acked: Mutex<Vec<String>>,
    handed_back: AtomicU32,
}

#[async_trait::async_trait]
impl Source for OneShot {
    fn describe(&self) -> String {
        "one-shot".into()
    }
    fn dead_letter_place(&self) -> String {
        "nowhere".into()
    }
    fn relists(&self) -> bool {
        false
    }
    async fn list(&self) -> Result<Page, StorageError> {
        let mut out = self.out.lock().unwrap();
        let mut waiting = self.waiting.lock().unwrap();
        // Only what comes before every message still out.
        let first_out = out.first().cloned();
        let (listed, later): (Vec<Listed>, Vec<Listed>) = std::mem::take(&mut *waiting)
            .into_iter()
            .partition(|l| first_out.as_ref().is_none_or(|first| l.key < *first));
        *waiting = later;
        out.extend(listed.iter().map(|l| l.key.clone()));
        Ok(Page {
            requests: listed,
            from_start: true,
            reached_end: true,
            set_aside: Vec::new(),
            full: false,
        })
    }
    async fn read(&self, key: &str, _max_bytes: u64) -> Result<Fetched, StorageError> {
        Ok(Fetched::Request(self.bodies[key].clone(), Version::default()))
    }
    async fn ack(&self, key: &str, _version: &Version) -> Result<(), StorageError> {
        self.out.lock().unwrap().remove(key);
        self.acked.lock().unwrap().push(key.to_owned());
        Ok(())
    }
    async fn dead_letter(
        &self,
        key: &str,
        _version: &Version,
        reason: &str,
        _traceparent: Option<&str>,
    ) -> Result<DeadLettering, StorageError> {
        panic!("{key} dead-lettered: {reason}")
    }
    async fn hand_back(&self, key: &str, version: &Version) {
        self.handed_back.fetch_add(1, Ordering::SeqCst);
        self.out.lock().unwrap().remove(key);
        let mut waiting = self.waiting.lock().unwrap();
        waiting.push(Listed {
            key: key.to_owned(),
            size: 0,
            version: version.clone(),
            modified: None,
            trace: None,
        });
        waiting.sort_by(|a, b| a.key.cmp(&b.key));
    }
}

#[tokio::test]
async fn a_source_that_does_not_list_again_has_a_busy_keys_requests_handed_back_and_applied_in_order() {
    // Far more requests on one widget than a key holds; each store write
    // is slow, so they pile up behind it: past four waiting, the rest go
    // back to the queue, and come again.
    let mut bodies = BTreeMap::new();
    bodies.insert("00".to_owned(), create("w", "Ann").into_bytes());
    for i in 1..=20 {
        let update =
            format!(r#"{{"type":"update","requestId":"r","widgetId":"w","owner":"Ann","label":"{i}"}}"#);
        bodies.insert(format!("{i:02}"), update.into_bytes());
    }
    let listed = bodies
        .keys()
        .map(|key| Listed {
            key: key.clone(),
            size: 0,
            version: Version::default(),
            modified: None,
            trace: None,
        })
        .collect();
    let source = Arc::new(OneShot {
        waiting: Mutex::new(listed),
        out: Mutex::default(),
        bodies,
        acked: Mutex::default(),
        handed_back: AtomicU32::new(0),
    });
    let sink = Scripted::new(|_| None, Duration::from_millis(2));
    // One slot: room for 8 requests, of which one key may hold half.
    let options = Options {
        concurrency: Concurrency::Fixed(1),
        ..quick()
    };
    let summary = run(
        source.clone(),
        sink.clone(),
        builtin(),
        options,
        Observers::default(),
        Arc::default(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(summary.processed(), 21);
    let acked = source.acked.lock().unwrap().clone();
    let in_order: Vec<String> = (0..=20).map(|i| format!("{i:02}")).collect();
    assert_eq!(acked, in_order);
    assert!(
        source.handed_back.load(Ordering::SeqCst) >= 16,
        "all past the first five were handed back at least once"
    );
    let stored = sink.inner.contents();
    let document: serde_json::Value = serde_json::from_str(stored.values().next().unwrap()).unwrap();
    assert_eq!(document["label"], "20");
}
