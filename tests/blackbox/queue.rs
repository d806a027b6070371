//! An SQS queue as the request source, against fauxqs (SQS) and DynamoDB
//! Local, started by tests/run.sh. Every test makes its own queues.

use crate::aws::{block_on, create_table, dynamodb, dynamodb_local, items, shared_config, unique};
use crate::util::{self, *};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

pub(crate) fn fauxqs() -> String {
    std::env::var("WIDGET_HOST_TEST_FAUXQS").expect(
        "WIDGET_HOST_TEST_FAUXQS is not set: run the tests with tests/run.sh, which starts the servers",
    )
}

pub(crate) fn sqs() -> aws_sdk_sqs::Client {
    block_on(async { aws_sdk_sqs::Client::new(&shared_config(&fauxqs()).await) })
}

/// Creates a queue (FIFO if `fifo`); returns its URL.
pub(crate) fn create_queue(client: &aws_sdk_sqs::Client, prefix: &str, fifo: bool) -> String {
    let name = match fifo {
        true => format!("{}.fifo", unique(prefix)),
        false => unique(prefix),
    };
    let mut create = client.create_queue().queue_name(name);
    if fifo {
        create = create.attributes(QueueAttributeName::FifoQueue, "true");
    }
    block_on(create.send()).unwrap().queue_url.unwrap()
}

fn send(client: &aws_sdk_sqs::Client, queue: &str, body: &str) {
    block_on(client.send_message().queue_url(queue).message_body(body).send()).unwrap();
}

/// Sends `body` to a FIFO queue in its own message group `id` (also its
/// deduplication id).
fn send_in_group(client: &aws_sdk_sqs::Client, queue: &str, body: &str, id: &str) {
    block_on(
        client
            .send_message()
            .queue_url(queue)
            .message_body(body)
            .message_group_id(id)
            .message_deduplication_id(id)
            .send(),
    )
    .unwrap();
}

/// Messages (visible, in flight) in a queue, as SQS counts them.
fn counts(client: &aws_sdk_sqs::Client, queue: &str) -> (u64, u64) {
    let got = block_on(
        client
            .get_queue_attributes()
            .queue_url(queue)
            .attribute_names(QueueAttributeName::All)
            .send(),
    )
    .unwrap();
    let count = |name| {
        got.attributes()
            .and_then(|all| all.get(&name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (
        count(QueueAttributeName::ApproximateNumberOfMessages),
        count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

/// Receives every visible message: (body, `reason` attribute).
fn drain(client: &aws_sdk_sqs::Client, queue: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    loop {
        let got = block_on(
            client
                .receive_message()
                .queue_url(queue)
                .max_number_of_messages(10)
                .message_attribute_names("All")
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send(),
        )
        .unwrap();
        if got.messages().is_empty() {
            return out;
        }
        for message in got.messages() {
            let reason = message
                .message_attributes()
                .and_then(|a| a.get("reason"))
                .and_then(|v| v.string_value().map(str::to_owned));
            out.push((message.body().unwrap().to_owned(), reason));
            block_on(
                client
                    .delete_message()
                    .queue_url(queue)
                    .receipt_handle(message.receipt_handle().unwrap())
                    .send(),
            )
            .unwrap();
        }
    }
}

/// The host, with SQS at fauxqs and DynamoDB at DynamoDB Local.
fn queue_host() -> Command {
    let mut command = host();
    command
        .env("AWS_ENDPOINT_URL_SQS", fauxqs())
        .env("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_local());
    command
}

/// Produces `count` requests drawn from `seed` into `queue`.
fn produce(queue: &str, count: u32, seed: u32) {
    util::produce(&mut queue_host(), "-rq", queue, count, seed);
}

/// The table one sequential consumer (one host, one request at a time)
/// makes of the requests drawn from `seed`.
fn sequential_end_state(count: u32, seed: u32) -> BTreeMap<String, Value> {
    let queue = create_queue(&sqs(), "sequential", true);
    produce(&queue, count, seed);
    let db = dynamodb(&dynamodb_local());
    let table = create_table(&db, "id");
    run_ok(queue_host().args([
        "-rq",
        &queue,
        "-dwt",
        &table,
        "--concurrency",
        "1",
        "--until-empty",
        "--queue-wait-seconds",
        "1",
    ]));
    items(&db, &table)
}

/// A host on `queue` whose handler spins on each "loop" request until its
/// time limit (`timeout_ms`); its widgets folder lives as long as it.
fn spinning_host(queue: &str, timeout_ms: &str, extra: &[&str]) -> (Running, tempfile::TempDir) {
    let widgets = tempfile::tempdir().unwrap();
    let running = Running::start(
        queue_host()
            .args(["-rq", queue, "--widgets-dir"])
            .arg(widgets.path())
            .arg("--handler")
            .arg(test_guest("hostile_guest"))
            .args(["--handler-timeout-ms", timeout_ms])
            .args(extra),
    );
    (running, widgets)
}

/// Waits until `count` messages of `queue` are in flight and none visible.
fn wait_until_held(client: &aws_sdk_sqs::Client, queue: &str, count: u64) {
    let deadline = Instant::now() + patience(Duration::from_secs(10));
    while counts(client, queue) != (0, count) {
        assert!(Instant::now() < deadline, "the host never received the messages");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The number after `label` in a summary (`Processed 12 requests`).
fn count_after(summary: &str, label: &str) -> u64 {
    let rest = &summary[summary
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in {summary}"))
        + label.len()..];
    rest.trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_fifo_queue_is_received_and_deleted_in_batches_to_the_sequential_end_state() {
    let want = sequential_end_state(600, 51);
    let client = sqs();
    let queue = create_queue(&client, "requests", true);
    produce(&queue, 600, 51);
    let db = dynamodb(&dynamodb_local());
    let table = create_table(&db, "id");
    let output = run_ok(queue_host().args([
        "-rq",
        &queue,
        "-dwt",
        &table,
        "--until-empty",
        "--queue-wait-seconds",
        "1",
    ]));
    let summary = String::from_utf8_lossy(&output.stdout);
    assert_eq!(count_after(&summary, "Processed"), 600, "{summary}");
    assert!(items(&db, &table) == want, "the queue's end state differs");
    assert_eq!(counts(&client, &queue), (0, 0), "every message is deleted");
    // Batches: ten messages per receive at most, several per delete.
    let receives = count_after(&summary, "SQS.ReceiveMessage");
    let deletes = count_after(&summary, "SQS.DeleteMessageBatch");
    assert!(receives * 2 < 600, "{receives} receives for 600 messages");
    assert!(deletes * 2 < 600, "{deletes} batch deletes for 600 messages");
}

#[test]
fn a_run_to_the_end_of_a_queue_ends_when_sqs_counts_nothing_without_waiting_out_a_long_poll() {
    // Asked to wait 20 s per receive: a run that ended only after a receive
    // waited that long and found nothing would last 20 s at least.
    let client = sqs();
    let queue = create_queue(&client, "known-empty", true);
    produce(&queue, 60, 53);
    let widgets = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let output = run_ok(
        queue_host()
            .args([
                "-rq",
                &queue,
                "--until-empty",
                "--queue-wait-seconds",
                "20",
                "--widgets-dir",
            ])
            .arg(widgets.path()),
    );
    let took = started.elapsed();
    let summary = String::from_utf8_lossy(&output.stdout);
    assert_eq!(count_after(&summary, "Processed"), 60, "{summary}");
    assert_eq!(counts(&client, &queue), (0, 0), "every message is deleted");
    assert!(
        took < Duration::from_secs(20),
        "the run took {took:?}: it waited out a long poll\n{summary}"
    );
    // An empty queue at the start: the run ends at once, and says so.
    let empty = create_queue(&client, "empty", true);
    let output = run_ok(
        queue_host()
            .args(["-rq", &empty, "--until-empty", "--widgets-dir"])
            .arg(widgets.path()),
    );
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(
        !summary.contains("SQS.ReceiveMessage"),
        "no receive was needed: {summary}"
    );
    assert!(summary.contains("SQS.GetQueueAttributes"), "{summary}");
}

#[test]
fn a_message_whose_processing_outlives_its_visibility_timeout_is_not_handed_to_another_host() {
    let client = sqs();
    let queue = create_queue(&client, "requests", false);
    let dead_letters = create_queue(&client, "rejected", false);
    // Each spins until the handler's time limit, 6 s: three times the
    // visibility timeout.
    for _ in 0..3 {
        send(&client, &queue, "loop");
    }
    let (slow, _widgets) = spinning_host(
        &queue,
        "6000",
        &[
            "--queue-visibility-seconds",
            "2",
            "--dead-letter-queue",
            &dead_letters,
            "--until-empty",
            "--queue-wait-seconds",
            "1",
        ],
    );
    wait_until_held(&client, &queue, 3);
    // A second host polls the queue throughout: it would take the three
    // messages 2 s in unless the first keeps them invisible.
    let scratch = tempfile::tempdir().unwrap();
    let other = run_ok(queue_host().args([
        "-rq",
        &queue,
        "--widgets-dir",
        scratch.path().to_str().unwrap(),
        "--dead-letter-queue",
        &dead_letters,
        "--max-runtime",
        "5000",
        "--queue-wait-seconds",
        "1",
    ]));
    let other = String::from_utf8_lossy(&other.stdout);
    assert_eq!(count_after(&other, "Processed"), 0, "{other}");

    let (status, summary, log) = slow.finish();
    assert!(status.success(), "{log}");
    assert_eq!(count_after(&summary, "dead-lettered:"), 3, "{summary}");
    assert!(
        summary.contains(&format!("queue {}", dead_letters.rsplit('/').next().unwrap())),
        "{summary}"
    );
    assert_eq!(counts(&client, &queue), (0, 0));
    // Each went to the dead-letter queue once, body unchanged, with why.
    let letters = drain(&client, &dead_letters);
    assert_eq!(letters.len(), 3, "{letters:?}");
    for (body, reason) in letters {
        assert_eq!(body, "loop");
        let reason = reason.expect("a reason attribute");
        assert!(reason.contains("time limit exceeded"), "{reason}");
    }
}

#[test]
fn a_stop_makes_the_messages_not_done_visible_again_at_once() {
    let client = sqs();
    let queue = create_queue(&client, "requests", false);
    for _ in 0..3 {
        send(&client, &queue, "loop");
    }
    let (running, _widgets) = spinning_host(
        &queue,
        "60000",
        &["--concurrency", "1", "--queue-visibility-seconds", "300"],
    );
    wait_until_held(&client, &queue, 3);
    running.signal("-TERM");
    let (status, _, log) = running.finish();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("Messages received and not done are visible again. messages=3"),
        "{log}"
    );
    // Visible now, not in five minutes.
    assert_eq!(counts(&client, &queue), (3, 0));
}

#[test]
fn rejected_requests_without_a_dead_letter_queue_are_left_for_the_redrive_policy() {
    let client = sqs();
    let queue = create_queue(&client, "requests", false);
    send(&client, &queue, "not json");
    let scratch = tempfile::tempdir().unwrap();
    let output = run_ok(queue_host().args([
        "-rq",
        &queue,
        "--widgets-dir",
        scratch.path().to_str().unwrap(),
        "--until-empty",
        "--queue-wait-seconds",
        "1",
        "--queue-visibility-seconds",
        "60",
    ]));
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("no redrive policy"),
        "the missing policy is warned about: {log}"
    );
    assert!(log.contains("Left in the queue for its redrive policy."), "{log}");
    // Still in the queue, in flight until its visibility timeout runs out.
    assert_eq!(counts(&client, &queue), (0, 1));
}

#[test]
fn three_hosts_on_one_fifo_queue_reach_the_sequential_end_state() {
    let want = sequential_end_state(2000, 52);
    let queue = create_queue(&sqs(), "requests", true);
    produce(&queue, 2000, 52);
    let db = dynamodb(&dynamodb_local());
    let table = create_table(&db, "id");
    let hosts: Vec<Running> = (0..3)
        .map(|_| {
            Running::start(queue_host().args([
                "-rq",
                &queue,
                "-dwt",
                &table,
                "--until-empty",
                "--queue-wait-seconds",
                "2",
            ]))
        })
        .collect();
    let mut processed = Vec::new();
    for host in hosts {
        let (status, summary, log) = host.finish();
        assert!(status.success(), "{log}");
        processed.push(count_after(&summary, "Processed"));
    }
    assert_eq!(processed.iter().sum::<u64>(), 2000, "{processed:?}");
    assert!(
        processed.iter().all(|&n| n > 0),
        "every host took a share: {processed:?}"
    );
    let got = items(&db, &table);
    assert_eq!(got.len(), want.len());
    assert!(got == want, "three hosts reached another end state");
}

#[test]
fn a_host_killed_mid_stream_loses_nothing() {
    // Enough requests that a run is still under way at each kill: the host
    // got faster, and 1,000 were sometimes done before the second.
    let want = sequential_end_state(3000, 53);
    let client = sqs();
    let queue = create_queue(&client, "requests", true);
    produce(&queue, 3000, 53);
    let db = dynamodb(&dynamodb_local());
    let table = create_table(&db, "id");
    let host_command = || {
        let mut command = queue_host();
        command.args([
            "-rq",
            &queue,
            "-dwt",
            &table,
            "--until-empty",
            "--queue-wait-seconds",
            "4",
            "--queue-visibility-seconds",
            "2",
        ]);
        command
    };
    let kills = kill_repeatedly(host_command, &[700, 500, 900]);
    assert!(
        kills >= 2,
        "the test must actually interrupt runs ({kills} kills)"
    );
    // The killed hosts' messages come back after their visibility timeout
    // and are applied once more, harmlessly.
    run_ok(&mut host_command());
    assert_eq!(counts(&client, &queue), (0, 0));
    assert!(items(&db, &table) == want, "the kills changed the end state");
}

#[test]
fn one_hung_widget_on_a_queue_does_not_stop_the_other_widgets() {
    use crate::stalls::{create, hang_widget, update};
    let client = sqs();
    let queue = create_queue(&client, "hung", false);
    let widgets = tempfile::tempdir().unwrap();
    hang_widget(widgets.path(), "sue-smith", "X");
    for i in 0..40 {
        send(&client, &queue, &update("X", i));
    }
    for i in 0..30 {
        send(&client, &queue, &create(&format!("w{i}"), i));
    }
    let running = Running::start(
        queue_host()
            .args(["-rq", &queue, "--widgets-dir"])
            .arg(widgets.path())
            .args([
                "--concurrency",
                "4",
                "--queue-wait-seconds",
                "1",
                "--shutdown-timeout",
                "3",
            ]),
    );
    let stored = || {
        (0..30)
            .filter(|i| widgets.path().join(format!("widgets/sue-smith/w{i}")).is_file())
            .count()
    };
    let deadline = Instant::now() + patience(Duration::from_secs(30));
    while stored() < 30 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let done = stored();
    running.signal("-TERM");
    let (status, _, log) = running.finish();
    assert_eq!(done, 30, "every other widget is stored within 30 s:\n{log}");
    assert!(status.success(), "a stop exits 0: {status}\n{log}");
    // Nothing of the hung widget is lost: its 40 messages are all still in
    // the queue (visible, or handed back and returning).
    let (visible, in_flight) = counts(&client, &queue);
    assert_eq!(
        visible + in_flight,
        40,
        "the hung widget's messages stay in the queue"
    );
}

#[test]
fn an_idle_host_on_a_queue_stops_at_once_with_a_short_shutdown_timeout() {
    let queue = create_queue(&sqs(), "idle", false);
    let widgets = tempfile::tempdir().unwrap();
    let running = Running::start(
        queue_host()
            .args(["-rq", &queue, "--widgets-dir"])
            .arg(widgets.path())
            .args(["--shutdown-timeout", "3"]),
    );
    running.wait_for("Starting", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    let stopped = Instant::now();
    running.signal("-TERM");
    let (status, _, log) = running.finish();
    assert!(
        status.success(),
        "a routine stop of an idle host exits 0: {status}\n{log}"
    );
    assert!(
        stopped.elapsed() < Duration::from_secs(3 + 1 + 2),
        "it exits within the shutdown timeout and a second: {:?}",
        stopped.elapsed()
    );
}

#[test]
fn produce_sends_a_refused_batch_again_through_the_retry_loop_and_counts_it() {
    let client = sqs();
    let queue = create_queue(&client, "produce-retried", true);
    // Four refusals: more than the SDK's own three attempts at one call, so
    // the host's retry loop must send the batch again.
    let proxy = crate::slowdown::SlowDown::first(&fauxqs(), "AmazonSQS.SendMessageBatch", 4);
    let output = run_ok(
        host()
            .env("AWS_ENDPOINT_URL_SQS", &proxy.url)
            .args(["produce", "-rq", &queue, "-mwr", "25", "--seed", "3"]),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("Wrote 25 requests"), "{stdout}");
    assert!(
        count_after(&stdout, "seed 3, ") >= 1,
        "the retries are counted: {stdout}"
    );
    assert_eq!(proxy.refused.load(std::sync::atomic::Ordering::SeqCst), 4);
    assert_eq!(drain(&client, &queue).len(), 25, "every request sent once");
}

#[test]
fn a_queues_dead_letters_are_redriven_back_without_their_reasons() {
    let client = sqs();
    let queue = create_queue(&client, "redrive", true);
    let dead_letters = create_queue(&client, "redrive-rejected", true);
    produce(&queue, 20, 11);
    for (i, body) in ["{}", "not json"].into_iter().enumerate() {
        send_in_group(&client, &queue, body, &format!("bad-{i}"));
    }
    let widgets = tempfile::tempdir().unwrap();
    let widgets = widgets.path().to_str().unwrap();
    let dlq = ["--dead-letter-queue", dead_letters.as_str()];
    let run = run_ok(
        queue_host()
            .args(["-rq", &queue, "--widgets-dir", widgets, "--until-empty"])
            .args(dlq)
            .args(["--queue-wait-seconds", "1"]),
    );
    assert_eq!(
        count_after(&String::from_utf8_lossy(&run.stdout), "dead-lettered:"),
        2
    );
    let redrive = |extra: &[&str]| {
        let output = run_ok(
            queue_host()
                .args(["redrive", "-rq", &queue])
                .args(dlq)
                .args(extra),
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };

    // A look, and a handler that still refuses both: nothing moves, and
    // every dead letter is visible again at once.
    assert!(redrive(&["--dry-run"]).contains("Would move 2 of 2 dead letters back (0 left)."));
    assert_eq!(counts(&client, &dead_letters), (2, 0));
    let judged = redrive(&["--handler", "builtin"]);
    assert!(
        judged.contains("Moved 0 of 2 dead letters back (2 left)."),
        "{judged}"
    );
    assert_eq!(counts(&client, &dead_letters), (2, 0));

    let moved = redrive(&[]);
    assert!(
        moved.contains("Moved 2 of 2 dead letters back (0 left)."),
        "{moved}"
    );
    assert_eq!(counts(&client, &dead_letters), (0, 0));
    let mut back = drain(&client, &queue);
    back.sort();
    assert_eq!(
        back,
        [("not json".to_owned(), None), ("{}".to_owned(), None)],
        "both back in the request queue, without their reasons"
    );
}

#[test]
fn a_queue_redrive_that_fails_half_way_leaves_every_dead_letter_it_held_visible() {
    let client = sqs();
    let queue = create_queue(&client, "redrive-fails", true);
    let dead_letters = create_queue(&client, "redrive-fails-rejected", true);
    for i in 0..3 {
        send_in_group(
            &client,
            &dead_letters,
            &format!("{{\"n\":{i}}}"),
            &format!("w{i}"),
        );
    }
    // Every SendMessage (moving one back) fails; receiving them works.
    let proxy = crate::slowdown::SlowDown::first(&fauxqs(), "AmazonSQS.SendMessage\r\n", u64::MAX);
    let output = host()
        .env("AWS_ENDPOINT_URL_SQS", &proxy.url)
        .args(["redrive", "-rq", &queue, "--dead-letter-queue", &dead_letters])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        proxy.refused.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "a move was tried"
    );
    assert_eq!(
        counts(&client, &queue),
        (0, 0),
        "nothing reached the request queue"
    );
    assert_eq!(
        counts(&client, &dead_letters),
        (3, 0),
        "all three dead letters visible again at once, not held for an hour"
    );
}

#[test]
fn a_stop_while_produce_waits_to_send_a_refused_batch_again_ends_it_and_says_so() {
    let client = sqs();
    let queue = create_queue(&client, "produce-stopped", true);
    // SQS refuses every batch: only a stop ends the retrying.
    let proxy = crate::slowdown::SlowDown::first(&fauxqs(), "AmazonSQS.SendMessageBatch", u64::MAX);
    let running = Running::start(
        host()
            .env("AWS_ENDPOINT_URL_SQS", &proxy.url)
            .args(["produce", "-rq", &queue, "-mwr", "25", "--seed", "3"]),
    );
    running.wait_for("Transient failure; retrying.", Duration::from_secs(30));
    let stopped = Instant::now();
    running.signal("-TERM");
    let (status, _, log) = running.finish();
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "the stop ended the waiting: {:?}",
        stopped.elapsed()
    );
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("stopped while waiting to try again"),
        "the batch not sent is named: {log}"
    );
    assert_eq!(counts(&client, &queue), (0, 0));
}
