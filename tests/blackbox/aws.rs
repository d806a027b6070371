//! Against real protocol servers: moto (S3, DynamoDB) and Amazon's
//! DynamoDB Local, started by tests/run.sh. Every test makes its own
//! uniquely named buckets and tables.

use crate::proxy::Proxy;
use crate::slowdown::SlowDown;
use crate::util::*;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_s3::primitives::ByteStream;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use widget_host::sink::dynamodb::item_to_json;

fn server(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the tests with tests/run.sh, which starts the servers")
    })
}

pub(crate) fn moto() -> String {
    server("WIDGET_HOST_TEST_MOTO")
}

pub(crate) fn dynamodb_local() -> String {
    server("WIDGET_HOST_TEST_DYNAMODB_LOCAL")
}

/// A name no other test (or run) uses: lowercase, as S3 wants.
pub(crate) fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

pub(crate) async fn shared_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await
}

pub(crate) fn s3(endpoint: &str) -> aws_sdk_s3::Client {
    block_on(async {
        let config = aws_sdk_s3::config::Builder::from(&shared_config(endpoint).await)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    })
}

pub(crate) fn dynamodb(endpoint: &str) -> aws_sdk_dynamodb::Client {
    block_on(async { aws_sdk_dynamodb::Client::new(&shared_config(endpoint).await) })
}

pub(crate) fn create_bucket(client: &aws_sdk_s3::Client, prefix: &str) -> String {
    let bucket = unique(prefix);
    block_on(client.create_bucket().bucket(&bucket).send()).unwrap();
    bucket
}

pub(crate) fn create_table(client: &aws_sdk_dynamodb::Client, key: &str) -> String {
    let table = unique("widgets");
    create_table_named(client, &table, key);
    table
}

/// Creates table `table`, keyed by the string attribute `key`.
fn create_table_named(client: &aws_sdk_dynamodb::Client, table: &str, key: &str) {
    block_on(
        client
            .create_table()
            .table_name(table)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(key)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(key)
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send(),
    )
    .unwrap();
}

/// Writes one request object.
pub(crate) fn put_request(client: &aws_sdk_s3::Client, bucket: &str, key: &str, body: impl AsRef<[u8]>) {
    block_on(
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body.as_ref().to_vec()))
            .send(),
    )
    .unwrap();
}

/// Uploads the files of a folder as objects, keyed by file name.
fn upload(client: &aws_sdk_s3::Client, bucket: &str, dir: &Path) {
    for (key, bytes) in files(dir) {
        put_request(client, bucket, &key, bytes);
    }
}

/// A stored object, as the tests look at it.
struct Object {
    body: Vec<u8>,
    /// The `reason` metadata of a dead letter.
    reason: Option<String>,
    content_type: Option<String>,
}

/// Every object in a bucket, by key.
fn objects(client: &aws_sdk_s3::Client, bucket: &str) -> BTreeMap<String, Object> {
    block_on(async {
        let mut out = BTreeMap::new();
        let mut pages = client.list_objects_v2().bucket(bucket).into_paginator().send();
        while let Some(page) = pages.next().await {
            for object in page.unwrap().contents() {
                let key = object.key().unwrap().to_owned();
                let got = client.get_object().bucket(bucket).key(&key).send().await.unwrap();
                let reason = got.metadata().and_then(|m| m.get("reason").cloned());
                let content_type = got.content_type().map(str::to_owned);
                let body = got.body.collect().await.unwrap().into_bytes().to_vec();
                out.insert(
                    key,
                    Object {
                        body,
                        reason,
                        content_type,
                    },
                );
            }
        }
        out
    })
}

/// Asserts that `bucket` holds nothing, naming what it holds otherwise:
/// each object's key, size, reason (a dead letter's) and the start of its
/// body, so that a failure says whether a request, a dead letter or
/// something of the host's own was left.
#[track_caller]
fn assert_bucket_empty(client: &aws_sdk_s3::Client, bucket: &str) {
    let left = objects(client, bucket);
    if left.is_empty() {
        return;
    }
    let described: Vec<String> = left
        .iter()
        .take(20)
        .map(|(key, object)| {
            let start = String::from_utf8_lossy(&object.body[..object.body.len().min(120)]).into_owned();
            format!(
                "  {key:?}: {} bytes, reason {:?}, body {start:?}",
                object.body.len(),
                object.reason
            )
        })
        .collect();
    panic!(
        "bucket {bucket} still holds {} objects:\n{}{}",
        left.len(),
        described.join("\n"),
        if left.len() > 20 { "\n  ..." } else { "" }
    );
}

/// Every object's body, by key.
fn bodies(client: &aws_sdk_s3::Client, bucket: &str) -> BTreeMap<String, Vec<u8>> {
    objects(client, bucket)
        .into_iter()
        .map(|(k, o)| (k, o.body))
        .collect()
}

/// Every item of a table, as JSON, by `id`.
pub(crate) fn items(client: &aws_sdk_dynamodb::Client, table: &str) -> BTreeMap<String, Value> {
    block_on(async {
        let mut out = BTreeMap::new();
        let mut pages = client.scan().table_name(table).into_paginator().send();
        while let Some(page) = pages.next().await {
            for item in page.unwrap().items() {
                let json = item_to_json(item);
                out.insert(json["id"].as_str().unwrap().to_owned(), json);
            }
        }
        out
    })
}

/// The host, pointed at local servers through the SDK's own variables.
fn aws_host(s3_endpoint: &str, dynamodb_endpoint: &str) -> Command {
    let mut command = host();
    command
        .env("AWS_ENDPOINT_URL_S3", s3_endpoint)
        .env("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint);
    command
}

fn expected_widgets() -> BTreeMap<String, Vec<u8>> {
    files(&tests_dir().join("fixtures/instructor-2022-expected"))
        .into_iter()
        .filter(|(k, _)| k.starts_with("widgets/"))
        .collect()
}

/// Checks the request bucket after a run over the instructor samples:
/// nothing left but the three bad requests under dead-letter/, each with
/// its bytes and a reason.
fn assert_instructor_dead_letters(client: &aws_sdk_s3::Client, bucket: &str) {
    let left = objects(client, bucket);
    let expected = files(&tests_dir().join("fixtures/instructor-2022-expected/dead-letter"));
    assert_eq!(
        left.keys().cloned().collect::<Vec<_>>(),
        expected
            .keys()
            .map(|k| format!("dead-letter/{k}"))
            .collect::<Vec<_>>()
    );
    for (key, bytes) in expected {
        let dead = &left[&format!("dead-letter/{key}")];
        assert_eq!(dead.body, bytes, "dead-letter/{key} keeps its bytes");
        assert!(
            dead.reason.as_deref().is_some_and(|r| !r.is_empty()),
            "dead-letter/{key} has a reason"
        );
    }
}

#[test]
fn seed_command_line_wb_stores_the_spec_layout_in_s3() {
    let client = s3(&moto());
    let requests = create_bucket(&client, "requests");
    let widgets = create_bucket(&client, "widgets");
    upload(&client, &requests, &tests_dir().join("fixtures/instructor-2022"));

    let output = run_ok(
        host()
            .env("AWS_ENDPOINT_URL", moto())
            .args([
                "--requests_bucket",
                &requests,
                "--destination_flag",
                "wb",
                "--destination_name",
                &widgets,
            ])
            .arg("--until-empty"),
    );

    let stored = objects(&client, &widgets);
    let expected = expected_widgets();
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (key, want) in &expected {
        let got: Value = serde_json::from_slice(&stored[key].body).unwrap();
        assert_eq!(got, serde_json::from_slice::<Value>(want).unwrap(), "{key}");
        assert_eq!(
            stored[key].content_type.as_deref(),
            Some("application/json"),
            "{key}"
        );
    }
    assert_instructor_dead_letters(&client, &requests);
    let summary = String::from_utf8(output.stdout).unwrap();
    assert!(summary.contains("AWS calls:"), "{summary}");
}

fn seed_command_line_dwt(dynamodb_endpoint: &str) {
    let s3_client = s3(&moto());
    let ddb = dynamodb(dynamodb_endpoint);
    let requests = create_bucket(&s3_client, "requests");
    let table = create_table(&ddb, "id");
    upload(
        &s3_client,
        &requests,
        &tests_dir().join("fixtures/instructor-2022"),
    );

    run_ok(
        aws_host(&moto(), dynamodb_endpoint)
            .args([
                "--requests_bucket",
                &requests,
                "--destination_flag",
                "dwt",
                "--destination_name",
                &table,
            ])
            .arg("--until-empty"),
    );

    let stored = items(&ddb, &table);
    let expected = files(&tests_dir().join("fixtures/instructor-2022-expected-table/items"));
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (id, want) in expected {
        assert_eq!(
            stored[&id],
            serde_json::from_slice::<Value>(&want).unwrap(),
            "item {id}"
        );
    }
    assert_instructor_dead_letters(&s3_client, &requests);
}

#[test]
fn seed_command_line_dwt_stores_flat_items_in_moto() {
    seed_command_line_dwt(&moto());
}

#[test]
fn seed_command_line_dwt_stores_flat_items_in_dynamodb_local() {
    seed_command_line_dwt(&dynamodb_local());
}

#[test]
fn a_table_keyed_by_another_name_is_written_by_that_name() {
    let ddb = dynamodb(&dynamodb_local());
    let table = create_table(&ddb, "widgetKey");
    let scratch = tempfile::tempdir().unwrap();
    std::fs::write(
        scratch.path().join("1"),
        r#"{"type":"create","requestId":"r","widgetId":"w1","owner":"Sue Smith","otherAttributes":[{"name":"color","value":"red"}]}"#,
    )
    .unwrap();
    run_ok(
        aws_host(&moto(), &dynamodb_local())
            .args(["run", "--until-empty", "-dwt", &table, "--requests-dir"])
            .arg(scratch.path()),
    );
    let item = block_on(ddb.scan().table_name(&table).send()).unwrap().items()[0].clone();
    assert_eq!(
        item_to_json(&item),
        serde_json::json!({"color":"red","id":"w1","owner":"Sue Smith","widgetKey":"w1"})
    );
}

#[test]
fn requests_are_taken_in_key_order() {
    let client = s3(&moto());
    let requests = create_bucket(&client, "requests");
    let widgets = create_bucket(&client, "widgets");
    upload(&client, &requests, &tests_dir().join("fixtures/instructor-2022"));
    let output = run_ok(host().env("AWS_ENDPOINT_URL", moto()).args([
        "-rb",
        &requests,
        "-wb",
        &widgets,
        "--until-empty",
        "--concurrency",
        "1",
    ]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let taken: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("Request done.") || l.contains("Request dead-lettered."))
        .filter_map(|l| l.split("request_key=").nth(1)?.split_whitespace().next())
        .collect();
    let mut sorted = taken.clone();
    sorted.sort();
    assert_eq!(taken.len(), 35);
    assert_eq!(taken, sorted);
}

#[test]
fn requests_added_while_running_are_picked_up_even_with_smaller_keys() {
    let client = s3(&moto());
    let requests = create_bucket(&client, "requests");
    let widgets = create_bucket(&client, "widgets");
    let create =
        |id: &str| format!(r#"{{"type":"create","requestId":"r","widgetId":"{id}","owner":"Sue Smith"}}"#);
    let put = |key: &str, id: &str| put_request(&client, &requests, key, create(id));
    put("1500000000000", "first");
    let child = host()
        .env("AWS_ENDPOINT_URL", moto())
        .args(["-rb", &requests, "-wb", &widgets])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let wait_for = |key: &str| {
        let deadline = Instant::now() + patience(Duration::from_secs(30));
        while block_on(client.head_object().bucket(&widgets).key(key).send()).is_err() {
            assert!(Instant::now() < deadline, "{key} was never stored");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for("widgets/sue-smith/first");
    put("2000000000000", "later");
    put("1000000000000", "earlier");
    wait_for("widgets/sue-smith/later");
    wait_for("widgets/sue-smith/earlier");
    let output = terminate(child);
    assert!(String::from_utf8_lossy(&output.stdout).contains("Processed 3 requests"));
    assert_bucket_empty(&client, &requests);
}

#[test]
fn empty_large_and_too_large_requests_are_handled() {
    let client = s3(&moto());
    let requests = create_bucket(&client, "requests");
    let widgets = create_bucket(&client, "widgets");
    let description = "D".repeat(3 << 20);
    let large = format!(
        r#"{{"type":"create","requestId":"r","widgetId":"big","owner":"Sue Smith","description":"{description}"}}"#
    );
    // Over the limit, under a key that needs escaping in a copy source.
    let too_large_key = "3 too+large é?.json";
    let too_large = vec![b'x'; 5 << 20];
    for (key, body) in [
        ("1", Vec::new()),
        ("2", large.into_bytes()),
        (too_large_key, too_large.clone()),
    ] {
        put_request(&client, &requests, key, body);
    }
    let output = run_ok(host().env("AWS_ENDPOINT_URL", moto()).args([
        "-rb",
        &requests,
        "-wb",
        &widgets,
        "--until-empty",
        "--max-request-bytes",
        "4194304",
    ]));
    // Two requests read; the third dead-lettered from its listed size.
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(summary.contains("S3.GetObject 2,"), "{summary}");
    let stored = objects(&client, &widgets);
    let big: Value = serde_json::from_slice(&stored["widgets/sue-smith/big"].body).unwrap();
    assert_eq!(big["description"].as_str().unwrap().len(), 3 << 20);
    let left = objects(&client, &requests);
    let dead_too_large = format!("dead-letter/{too_large_key}");
    assert_eq!(
        left.keys().collect::<Vec<_>>(),
        ["dead-letter/1", dead_too_large.as_str()]
    );
    assert_eq!(left["dead-letter/1"].body, b"");
    assert_eq!(
        left["dead-letter/1"].reason.as_deref(),
        Some("rejected: request is empty")
    );
    // Copied on the server, bytes unchanged, never read by the host.
    assert!(left[&dead_too_large].body == too_large);
    assert_eq!(
        left[&dead_too_large].reason.as_deref(),
        Some("request too large: 5242880 bytes, over the limit of 4194304 (--max-request-bytes); not read")
    );
}

#[test]
fn numbers_in_a_stored_item_keep_their_digits_through_an_update() {
    let client = dynamodb(&dynamodb_local());
    let table = create_table(&client, "id");
    let digits = [
        ("big", "123456789012345678901234567890"),
        ("fine", "0.10000000000000000001"),
        ("past_u64", "18446744073709551617"),
    ];
    let mut put = client
        .put_item()
        .table_name(&table)
        .item("id", AttributeValue::S("w1".into()))
        .item("owner", AttributeValue::S("Sue Smith".into()));
    for (name, n) in digits {
        put = put.item(name, AttributeValue::N(n.into()));
    }
    block_on(put.send()).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    std::fs::write(
        scratch.path().join("1"),
        r#"{"type":"update","requestId":"r","widgetId":"w1","owner":"Sue Smith","label":"new"}"#,
    )
    .unwrap();
    run_ok(
        host()
            .env("AWS_ENDPOINT_URL", dynamodb_local())
            .arg("--requests-dir")
            .arg(scratch.path())
            .args(["-dwt", &table, "--until-empty"]),
    );
    let item = block_on(
        client
            .get_item()
            .table_name(&table)
            .key("id", AttributeValue::S("w1".into()))
            .send(),
    )
    .unwrap()
    .item
    .unwrap();
    assert_eq!(item["label"], AttributeValue::S("new".into()));
    for (name, n) in digits {
        assert_eq!(item[name], AttributeValue::N(n.into()), "{name}");
    }
}

#[test]
fn a_missing_bucket_or_table_is_a_start_up_error_that_names_it() {
    let client = s3(&moto());
    let requests = create_bucket(&client, "requests");
    for (args, name) in [
        (
            vec!["-rb", "no-such-requests", "-wb", &requests],
            "no-such-requests",
        ),
        (
            vec!["-rb", &requests, "-wb", "no-such-widgets"],
            "no-such-widgets",
        ),
        (vec!["-rb", &requests, "-dwt", "no-such-table"], "no-such-table"),
    ] {
        let stderr = run_fails(
            aws_host(&moto(), &dynamodb_local())
                .args(&args)
                .arg("--until-empty"),
        );
        assert!(
            stderr.contains(name) && stderr.contains("does not exist"),
            "{stderr}"
        );
    }
}

/// Produces the same requests into a new bucket.
fn produce_into_bucket(client: &aws_sdk_s3::Client, count: u32, seed: u32) -> String {
    let bucket = create_bucket(client, "requests");
    produce(
        host().env("AWS_ENDPOINT_URL", moto()),
        "-rb",
        &bucket,
        count,
        seed,
    );
    bucket
}

/// An uninterrupted run's end state, for comparison.
fn reference_end_state(client: &aws_sdk_s3::Client, count: u32, seed: u32) -> BTreeMap<String, Vec<u8>> {
    let requests = produce_into_bucket(client, count, seed);
    let widgets = create_bucket(client, "widgets");
    run_ok(
        host()
            .env("AWS_ENDPOINT_URL", moto())
            .args(["-rb", &requests, "-wb", &widgets, "--until-empty"]),
    );
    bodies(client, &widgets)
}

#[test]
fn a_server_that_goes_away_and_comes_back_loses_no_request() {
    let client = s3(&moto());
    let want = reference_end_state(&client, 300, 21);
    let requests = produce_into_bucket(&client, 300, 21);
    let widgets = create_bucket(&client, "widgets");

    let proxy = Proxy::start(&moto());
    let running = Running::start(host().env("AWS_ENDPOINT_URL", &proxy.url).args([
        "-rb",
        &requests,
        "-wb",
        &widgets,
        "--until-empty",
    ]));
    // Down once the host is under way, however long its start took on
    // this machine.
    running.wait_for("Request done.", Duration::from_secs(60));
    proxy.down();
    std::thread::sleep(Duration::from_secs(3));
    proxy.up();
    let (status, summary, log) = running.finish();
    assert!(status.success(), "{status}: {log}");
    assert!(summary.contains("Processed 300 requests"), "{summary}");
    assert!(
        log.contains("Transient failure; retrying."),
        "the outage must have been seen and retried"
    );
    // The SDK's own attempts within one call are counted too.
    assert!(
        summary.contains("of them the AWS SDK's retries"),
        "the SDK retried the refused connections: {summary}"
    );

    let got = bodies(&client, &widgets);
    assert!(got == want, "the outage changed the end state");
    assert_bucket_empty(&client, &requests);
}

#[test]
fn a_server_down_when_the_host_starts_is_waited_for() {
    let client = s3(&moto());
    let requests = produce_into_bucket(&client, 50, 28);
    let widgets = create_bucket(&client, "widgets");
    let proxy = Proxy::start(&moto());
    proxy.down();
    let running = Running::start(host().env("AWS_ENDPOINT_URL", &proxy.url).args([
        "-rb",
        &requests,
        "-wb",
        &widgets,
        "--until-empty",
    ]));
    running.wait_for("Transient failure; retrying.", Duration::from_secs(60));
    proxy.up();
    let (status, summary, log) = running.finish();
    assert!(status.success(), "{status}: {log}");
    assert!(summary.contains("Processed 50 requests"), "{summary}");
    assert_bucket_empty(&client, &requests);
}

#[test]
fn a_start_killed_while_it_probes_the_bucket_leaves_nothing_behind() {
    // A start probes how the server deletes with an object of its own; a
    // kill between writing and removing it left one object per kill in
    // the bucket, for good. Held here: the probe's DeleteObjects never
    // answers while the proxy stalls, so the kill lands in that window.
    let client = s3(&moto());
    let requests = produce_into_bucket(&client, 20, 29);
    let widgets = create_bucket(&client, "widgets");
    let proxy = SlowDown::holding(&moto(), "?delete");
    let mut held = Running::start(host().env("AWS_ENDPOINT_URL", &proxy.url).args([
        "-rb",
        &requests,
        "-wb",
        &widgets,
        "--until-empty",
    ]));
    wait_until(
        Duration::from_secs(60),
        "the probe's DeleteObjects was sent",
        || proxy.refused.load(std::sync::atomic::Ordering::SeqCst) > 0,
    );
    held.child.kill().unwrap();
    let _ = held.finish();
    run_ok(
        host()
            .env("AWS_ENDPOINT_URL", moto())
            .args(["-rb", &requests, "-wb", &widgets, "--until-empty"]),
    );
    assert_bucket_empty(&client, &requests);
}

#[test]
fn killed_and_restarted_hosts_reach_the_uninterrupted_end_state() {
    let client = s3(&moto());
    let want = reference_end_state(&client, 600, 22);
    let requests = produce_into_bucket(&client, 600, 22);
    let widgets = create_bucket(&client, "widgets");
    let kills = kill_repeatedly(
        || {
            let mut command = host();
            command.env("AWS_ENDPOINT_URL", moto()).args([
                "-rb",
                &requests,
                "-wb",
                &widgets,
                "--until-empty",
            ]);
            command
        },
        &[700, 400, 900, 300, 600],
    );
    run_ok(
        host()
            .env("AWS_ENDPOINT_URL", moto())
            .args(["-rb", &requests, "-wb", &widgets, "--until-empty"]),
    );
    assert!(
        kills >= 2,
        "the test must actually interrupt runs ({kills} kills)"
    );
    let got = bodies(&client, &widgets);
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    assert!(got == want, "interrupted runs changed the end state");
    assert_bucket_empty(&client, &requests);
}

/// Objects under `dead-letter/` in `bucket`.
fn dead_letters(client: &aws_sdk_s3::Client, bucket: &str) -> usize {
    objects(client, bucket)
        .keys()
        .filter(|k| k.starts_with("dead-letter/"))
        .count()
}

#[test]
fn a_table_deleted_mid_run_stops_the_host_and_dead_letters_nothing() {
    let s3_client = s3(&moto());
    let ddb = dynamodb(&dynamodb_local());
    let requests = produce_into_bucket(&s3_client, 600, 31);
    let table = create_table(&ddb, "id");
    let running = Running::start(aws_host(&moto(), &dynamodb_local()).args([
        "-rb",
        &requests,
        "-dwt",
        &table,
        "--until-empty",
    ]));
    running.wait_for("Request done.", Duration::from_secs(30));
    block_on(ddb.delete_table().table_name(&table).send()).unwrap();
    let (status, _, log) = running.finish();
    assert_eq!(status.code(), Some(1), "{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(
        errors[0].contains(&table) && errors[0].contains("ResourceNotFoundException"),
        "{log}"
    );
    assert_eq!(
        dead_letters(&s3_client, &requests),
        0,
        "an environment fault is no request's"
    );
    let left = objects(&s3_client, &requests).len();
    assert!(left > 0 && left < 600, "{left} requests left");

    // With the table back, a new run takes the rest, as if nothing happened.
    create_table_named(&ddb, &table, "id");
    run_ok(aws_host(&moto(), &dynamodb_local()).args(["-rb", &requests, "-dwt", &table, "--until-empty"]));
    assert_bucket_empty(&s3_client, &requests);
}

/// Starts a host on `requests` -> `widgets` through `proxy` and stalls the
/// proxy once the host is under way.
fn host_on_a_stalled_server(proxy: &Proxy, requests: &str, widgets: &str, extra: &[&str]) -> Running {
    let running = Running::start(
        host()
            .env("AWS_ENDPOINT_URL", &proxy.url)
            .args(["-rb", requests, "-wb", widgets])
            .args(extra),
    );
    running.wait_for("Request done.", Duration::from_secs(30));
    proxy.stall();
    // Long enough for calls to be hanging on the stalled server.
    std::thread::sleep(Duration::from_millis(500));
    running
}

#[test]
fn a_stop_waits_for_stores_in_flight_no_longer_than_the_shutdown_timeout() {
    let client = s3(&moto());
    let want = reference_end_state(&client, 300, 41);
    let requests = produce_into_bucket(&client, 300, 41);
    let widgets = create_bucket(&client, "widgets");
    let proxy = Proxy::start(&moto());
    let running = host_on_a_stalled_server(&proxy, &requests, &widgets, &["--shutdown-timeout", "1"]);
    let stopped = Instant::now();
    running.signal("-TERM");
    let (status, _, log) = running.finish();
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "{:?}",
        stopped.elapsed()
    );
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("error: stopped without waiting longer than --shutdown-timeout"),
        "{log}"
    );

    // Nothing was lost: a run against the server itself ends where an
    // uninterrupted run does.
    run_ok(
        host()
            .env("AWS_ENDPOINT_URL", moto())
            .args(["-rb", &requests, "-wb", &widgets, "--until-empty"]),
    );
    assert!(
        bodies(&client, &widgets) == want,
        "the stop changed the end state"
    );
}

#[test]
fn a_second_stop_signal_exits_at_once() {
    let client = s3(&moto());
    let want = reference_end_state(&client, 300, 43);
    let requests = produce_into_bucket(&client, 300, 43);
    let widgets = create_bucket(&client, "widgets");
    let proxy = Proxy::start(&moto());
    let running = host_on_a_stalled_server(&proxy, &requests, &widgets, &[]);
    let stopped = Instant::now();
    running.signal("-TERM");
    std::thread::sleep(Duration::from_millis(300));
    running.signal("-INT");
    let (status, _, log) = running.finish();
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopped.elapsed()
    );
    assert_eq!(status.code(), Some(130), "{log}");

    run_ok(
        host()
            .env("AWS_ENDPOINT_URL", moto())
            .args(["-rb", &requests, "-wb", &widgets, "--until-empty"]),
    );
    assert!(
        bodies(&client, &widgets) == want,
        "the stop changed the end state"
    );
}

/// The keys in a bucket (a listing only: the host may be deleting them).
fn listed(client: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let listing = block_on(client.list_objects_v2().bucket(bucket).send()).unwrap();
    listing.contents().iter().filter_map(|o| o.key.clone()).collect()
}

/// Waits (40 s at most) until `bucket` holds no object.
fn wait_until_empty(client: &aws_sdk_s3::Client, bucket: &str, otherwise: &str) {
    let deadline = Instant::now() + patience(Duration::from_secs(40));
    while !listed(client, bucket).is_empty() {
        assert!(Instant::now() < deadline, "{otherwise}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_request_replaced_while_in_flight_is_not_removed_with_the_old_one() {
    let s3_client = s3(&moto());
    let ddb = dynamodb(&dynamodb_local());
    let requests = create_bucket(&s3_client, "requests");
    let table = create_table(&ddb, "id");
    let proxy = Proxy::start(&dynamodb_local());
    let running = Running::start(
        aws_host(&moto(), &proxy.url).args(["-rb", &requests, "-dwt", &table, "-mrt", "20000"]),
    );
    running.wait_for("Starting.", Duration::from_secs(30));
    // The table's server holds the first write; meanwhile the request is
    // replaced under the same key.
    proxy.stall();
    let create = |label: &str| {
        format!(
            r#"{{"type":"create","requestId":"r","widgetId":"w1","owner":"Sue Smith","label":"{label}"}}"#
        )
    };
    put_request(&s3_client, &requests, "1700000000000", create("first"));
    let deadline = Instant::now() + patience(Duration::from_secs(20));
    while proxy.held() == 0 {
        assert!(Instant::now() < deadline, "the write never reached the server");
        std::thread::sleep(Duration::from_millis(10));
    }
    put_request(&s3_client, &requests, "1700000000000", create("second"));
    proxy.resume();
    wait_until_empty(&s3_client, &requests, "the replacement was never processed");
    running.signal("-TERM");
    let (status, stdout, log) = running.finish();
    assert!(status.success(), "{log}");
    assert!(stdout.contains("Processed 2 requests"), "{stdout}");
    assert!(
        log.contains("The request was replaced while it was processed"),
        "{log}"
    );
    assert_eq!(items(&ddb, &table)["w1"]["label"], "second");
}

#[test]
fn a_store_read_that_never_answers_delays_the_request_but_never_dead_letters_it() {
    let s3_client = s3(&moto());
    let ddb = dynamodb(&dynamodb_local());
    let requests = create_bucket(&s3_client, "requests");
    let table = create_table(&ddb, "id");
    let proxy = Proxy::start(&dynamodb_local());
    put_request(
        &s3_client,
        &requests,
        "1700000000000",
        r#"{"type":"create","requestId":"c","widgetId":"w1","owner":"Sue Smith","label":"first"}"#,
    );
    let running = Running::start(
        aws_host(&moto(), &proxy.url).args(["-rb", &requests, "-dwt", &table, "-mrt", "60000"]),
    );
    running.wait_for("Request done.", Duration::from_secs(30));
    // The update's read of the widget reaches a server that never answers.
    proxy.stall();
    put_request(
        &s3_client,
        &requests,
        "1700000000001",
        r#"{"type":"update","requestId":"u","widgetId":"w1","owner":"Sue Smith","label":"second"}"#,
    );
    running.wait_for("no answer within 10s", Duration::from_secs(40));
    proxy.resume();
    wait_until_empty(&s3_client, &requests, "the update was never applied");
    running.signal("-TERM");
    let (status, stdout, log) = running.finish();
    assert!(status.success(), "{log}");
    assert!(stdout.contains("dead-lettered: 0"), "{stdout}");
    assert_eq!(items(&ddb, &table)["w1"]["label"], "second");
}

#[test]
fn twenty_kills_at_random_moments_over_2000_bucket_requests_change_nothing() {
    let client = s3(&moto());
    let want = reference_end_state(&client, 2000, 23);
    let requests = produce_into_bucket(&client, 2000, 23);
    let widgets = create_bucket(&client, "widgets");
    let command = || {
        let mut command = host();
        command
            .env("AWS_ENDPOINT_URL", moto())
            .args(["-rb", &requests, "-wb", &widgets, "--until-empty"]);
        command
    };
    let kills = kill_repeatedly(command, &kill_moments(20, 200, 900));
    run_ok(&mut command());
    assert!(
        kills >= 10,
        "the test must actually interrupt runs ({kills} kills)"
    );
    assert!(
        bodies(&client, &widgets) == want,
        "interrupted runs changed the end state"
    );
    assert_bucket_empty(&client, &requests);
}

#[test]
fn both_servers_gone_for_ten_seconds_lose_nothing() {
    let s3_client = s3(&moto());
    let ddb = dynamodb(&dynamodb_local());
    let requests = produce_into_bucket(&s3_client, 600, 27);
    let table = create_table(&ddb, "id");
    let reference_table = create_table(&ddb, "id");
    let reference_requests = produce_into_bucket(&s3_client, 600, 27);
    run_ok(aws_host(&moto(), &dynamodb_local()).args([
        "-rb",
        &reference_requests,
        "-dwt",
        &reference_table,
        "--until-empty",
    ]));

    let s3_proxy = Proxy::start(&moto());
    let ddb_proxy = Proxy::start(&dynamodb_local());
    let running = Running::start(aws_host(&s3_proxy.url, &ddb_proxy.url).args([
        "-rb",
        &requests,
        "-dwt",
        &table,
        "--until-empty",
    ]));
    running.wait_for("Request done.", Duration::from_secs(30));
    s3_proxy.down();
    ddb_proxy.down();
    std::thread::sleep(Duration::from_secs(10));
    s3_proxy.up();
    ddb_proxy.up();
    let (status, stdout, log) = running.finish();
    assert!(status.success(), "{log}");
    assert!(stdout.contains("Processed 600 requests"), "{stdout}");
    assert!(stdout.contains("dead-lettered: 0"), "{stdout}");
    assert!(
        log.contains("Transient failure; retrying."),
        "the outage was seen"
    );
    assert_eq!(
        items(&ddb, &table),
        items(&ddb, &reference_table),
        "the outage changed the end state"
    );
    assert_bucket_empty(&s3_client, &requests);
}

#[test]
fn until_empty_fails_when_a_request_could_not_be_processed() {
    let client = s3(&moto());
    let requests = create_bucket(&client, "requests");
    let widgets = create_bucket(&client, "widgets");
    for i in 1..=3 {
        let create = format!(r#"{{"type":"create","requestId":"r","widgetId":"w{i}","owner":"Sue Smith"}}"#);
        put_request(&client, &requests, &format!("170000000000{i}"), &create);
    }
    // An archived object cannot be read: that request's own problem.
    block_on(
        client
            .put_object()
            .bucket(&requests)
            .key("1700000000009")
            .storage_class(aws_sdk_s3::types::StorageClass::Glacier)
            .body(ByteStream::from_static(b"{}"))
            .send(),
    )
    .unwrap();
    let output = host()
        .env("AWS_ENDPOINT_URL", moto())
        .args(["-rb", &requests, "-wb", &widgets, "--until-empty"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stdout.contains("Processed 3 requests") && stdout.contains("left in source: 1"),
        "{stdout}"
    );
    assert!(
        stderr.contains("error: 1 requests could not be processed"),
        "{stderr}"
    );
    assert_eq!(listed(&client, &requests), ["1700000000009"]);
}

#[test]
fn redrive_moves_a_buckets_dead_letters_back_under_their_keys() {
    let client = s3(&moto());
    let requests = create_bucket(&client, "requests");
    let widgets = create_bucket(&client, "widgets");
    let big = format!(
        r#"{{"type":"create","requestId":"r","widgetId":"big","owner":"Sue Smith","description":"{}"}}"#,
        "d".repeat(5000)
    );
    put_request(&client, &requests, "1", &big);
    put_request(&client, &requests, "2", "not json");
    put_request(
        &client,
        &requests,
        "3",
        r#"{"type":"create","requestId":"r","widgetId":"small","owner":"Sue Smith"}"#,
    );
    let run = |extra: &[&str]| {
        run_ok(
            host()
                .env("AWS_ENDPOINT_URL", moto())
                .args(["-rb", &requests, "-wb", &widgets, "--until-empty"])
                .args(extra),
        )
    };
    run(&["--max-plan-bytes", "3000"]);
    assert_eq!(listed(&client, &requests), ["dead-letter/1", "dead-letter/2"]);

    let output = run_ok(host().env("AWS_ENDPOINT_URL", moto()).args([
        "redrive",
        "-rb",
        &requests,
        "--handler",
        "builtin",
        "-wb",
        &widgets,
    ]));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("1: moved back"), "{stdout}");
    assert!(
        stdout.contains("Moved 1 of 2 dead letters back (1 left)."),
        "{stdout}"
    );
    let back = &objects(&client, &requests)["1"];
    assert_eq!(back.body, big.as_bytes(), "the bytes are unchanged");
    assert_eq!(back.reason, None, "the reason is gone");

    run(&[]);
    assert_eq!(listed(&client, &requests), ["dead-letter/2"]);
    assert!(bodies(&client, &widgets).contains_key("widgets/sue-smith/big"));
}

#[test]
fn one_widget_throttled_for_ever_slows_no_other_and_holds_up_no_request_naming_no_widget() {
    use crate::stalls::create;
    let client = s3(&moto());
    let (requests, widgets) = (
        create_bucket(&client, "hot-requests"),
        create_bucket(&client, "hot-widgets"),
    );
    // Every call about the hot widget's object answers SlowDown, as S3
    // does for a hot prefix; the rest of the bucket is served.
    let proxy = SlowDown::start(&moto(), "/widgets/sue-smith/hot");
    put_request(&client, &requests, "1700000000000", create("hot", 0));
    put_request(&client, &requests, "1700000000001", "{}");
    for i in 0..60 {
        put_request(
            &client,
            &requests,
            &format!("{}", 1_700_000_000_002u64 + i),
            create(&format!("w{i}"), i as usize),
        );
    }
    put_request(&client, &requests, "1700000000100", "not json");
    let output = aws_host(&proxy.url, &dynamodb_local())
        .args([
            "-rb",
            &requests,
            "-wb",
            &widgets,
            "-mrt",
            "8000",
            "--shutdown-timeout",
            "2",
        ])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    let stored: Vec<String> = objects(&client, &widgets).into_keys().collect();
    let others = (0..60)
        .filter(|i| stored.contains(&format!("widgets/sue-smith/w{i}")))
        .count();
    assert_eq!(others, 60, "every other widget is stored:\n{log}");
    assert!(
        proxy.refused.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "the hot widget was throttled"
    );
    assert!(
        !log.contains("fewer requests at once"),
        "one throttled widget does not lower the concurrency:\n{log}"
    );
    let left = listed(&client, &requests);
    assert!(
        left.contains(&"1700000000000".to_owned()),
        "the hot widget's request stays: {left:?}"
    );
    for malformed in ["1700000000001", "1700000000100"] {
        assert!(
            left.contains(&format!("dead-letter/{malformed}")),
            "{malformed} is dead-lettered: {left:?}\n{log}"
        );
    }
}

#[test]
fn diff_and_redrive_write_nothing_to_a_bucket_they_only_read() {
    let client = s3(&moto());
    let bucket = produce_into_bucket(&client, 20, 9);
    put_request(&client, &bucket, "dead-letter/1600000000000", "{}");
    let proxy = SlowDown::start(&moto(), "no such key anywhere");
    let widgets = tempfile::tempdir().unwrap();
    run_ok(
        aws_host(&proxy.url, &dynamodb_local())
            .args(["diff", "builtin", "builtin", "-rb", &bucket, "--widgets-dir"])
            .arg(widgets.path()),
    );
    run_ok(aws_host(&proxy.url, &dynamodb_local()).args(["redrive", "-rb", &bucket, "--dry-run"]));
    assert_eq!(
        proxy.writes.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no PUT, POST or DELETE reached the bucket"
    );
}

#[test]
fn where_every_call_takes_20_ms_the_measured_concurrency_grows_and_a_fixed_one_does_not() {
    let client = s3(&moto());
    let expected = reference_end_state(&client, 600, 23);
    let proxy = SlowDown::delaying(&moto(), Duration::from_millis(20));
    let run = |extra: &[&str]| {
        let requests = produce_into_bucket(&client, 600, 23);
        let widgets = create_bucket(&client, "widgets");
        let output = run_ok(
            host()
                .env("AWS_ENDPOINT_URL", &proxy.url)
                .args(["-rb", &requests, "-wb", &widgets, "--until-empty"])
                .args(extra),
        );
        assert_eq!(
            bodies(&client, &widgets),
            expected,
            "the end state of an undelayed run"
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    // The largest limit the log reported.
    let largest = |log: &str| {
        log.lines()
            .filter(|line| line.contains("Concurrency limit changed."))
            .filter_map(|line| {
                line.split("concurrency=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse::<u32>()
                    .ok()
            })
            .max()
    };
    let measured = run(&[]);
    let grown = largest(&measured).unwrap_or(0);
    assert!(
        grown > 16,
        "the limit grew past where it starts (16): {grown}\n{measured}"
    );
    assert!(grown <= 128, "and no further than its ceiling: {grown}");
    let fixed = run(&["--concurrency", "16"]);
    assert_eq!(largest(&fixed), None, "a fixed number never changes:\n{fixed}");
}

#[test]
fn a_bucket_keeps_every_dead_letter_of_a_key() {
    let client = s3(&moto());
    let requests = create_bucket(&client, "requests");
    let widgets = create_bucket(&client, "widgets");
    let run = || {
        let output = run_ok(host().env("AWS_ENDPOINT_URL", moto()).args([
            "-rb",
            &requests,
            "-wb",
            &widgets,
            "--until-empty",
        ]));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    // One key, refused twice: two runs, a request each.
    for body in ["not json 1", "not json 2"] {
        put_request(&client, &requests, "order.json", body);
        assert!(run().contains("dead-lettered: 1"));
    }
    let kept = objects(&client, &requests);
    assert_eq!(
        kept.keys().collect::<Vec<_>>(),
        ["dead-letter/order.json", "dead-letter/order.json~dl2"]
    );
    assert_eq!(kept["dead-letter/order.json"].body, b"not json 1");
    assert_eq!(kept["dead-letter/order.json~dl2"].body, b"not json 2");
    assert!(kept.values().all(|o| o.reason.is_some()), "each with its reason");
    // Redrive takes the first back under the key, and the second once the
    // key is free again.
    let redrive = || {
        let output = run_ok(
            host()
                .env("AWS_ENDPOINT_URL", moto())
                .args(["redrive", "-rb", &requests]),
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let moved = redrive();
    assert!(
        moved.contains("Moved 1 of 2 dead letters back (1 left)."),
        "{moved}"
    );
    assert_eq!(objects(&client, &requests)["order.json"].body, b"not json 1");
    block_on(client.delete_object().bucket(&requests).key("order.json").send()).unwrap();
    let moved = redrive();
    assert!(
        moved.contains("Moved 1 of 1 dead letters back (0 left)."),
        "{moved}"
    );
    assert_eq!(objects(&client, &requests)["order.json"].body, b"not json 2");
}
