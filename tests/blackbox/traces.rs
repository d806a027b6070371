//! OpenTelemetry traces, exported over OTLP/HTTP to tests/otlp_receiver.py,
//! which decodes them with the official protobuf definitions, as a
//! collector does. Each test names its runs' service (OTEL_SERVICE_NAME) and
//! reads back only that service's spans.

use crate::aws::{block_on, create_bucket, moto, put_request, s3, shared_config, unique};
use crate::queue::{create_queue, fauxqs, sqs};
use crate::util::*;
use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeNameForSends, MessageSystemAttributeValue,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;

fn receiver() -> String {
    std::env::var("WIDGET_HOST_TEST_OTLP").expect(
        "WIDGET_HOST_TEST_OTLP is not set: run the tests with tests/run.sh, which starts the receiver",
    )
}

/// The spans the receiver decoded from `service`.
fn spans(service: &str) -> Vec<Value> {
    let address = receiver().trim_start_matches("http://").to_owned();
    let (status, body) = http(&address, "GET", &format!("/spans?service={service}"));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The host exporting its traces to the receiver as `service`.
fn traced_host(service: &str) -> Command {
    let mut command = host();
    command
        .args(["--otlp-endpoint", &receiver()])
        .env("OTEL_SERVICE_NAME", service);
    command
}

fn attribute<'a>(span: &'a Value, name: &str) -> &'a Value {
    &span["attributes"][name]
}

/// The root span of the request `key`, and its children's names.
fn request_trace<'a>(all: &'a [Value], key: &str) -> (&'a Value, Vec<&'a str>) {
    let roots: Vec<&Value> = all
        .iter()
        .filter(|span| span["name"] == "request" && attribute(span, "request.key") == key)
        .collect();
    assert_eq!(roots.len(), 1, "one span for request {key}: {roots:?}");
    let root = roots[0];
    let children = all
        .iter()
        .filter(|span| span["parent_span_id"] == root["span_id"])
        .inspect(|child| {
            assert_eq!(child["trace_id"], root["trace_id"]);
            let within = child["start_ns"].as_u64() >= root["start_ns"].as_u64()
                && child["end_ns"].as_u64() <= root["end_ns"].as_u64();
            assert!(within, "{child} within {root}");
        })
        .map(|child| child["name"].as_str().unwrap())
        .collect();
    (root, children)
}

#[test]
fn each_request_is_a_trace_with_a_span_per_stage_and_its_log_lines_carry_the_trace_id() {
    let service = unique("traces-folder");
    let root = tempfile::tempdir().unwrap();
    let (requests, widgets, log) = (
        root.path().join("requests"),
        root.path().join("widgets"),
        root.path().join("host.log"),
    );
    produce(&mut host(), "--requests-dir", &requests, 20, 5);
    std::fs::write(requests.join("zz-not-json"), "not json").unwrap();
    let keys: BTreeSet<String> = files(&requests).into_keys().collect();
    run_ok(
        traced_host(&service)
            .args(["--requests-dir", requests.to_str().unwrap()])
            .args(["--widgets-dir", widgets.to_str().unwrap(), "--until-empty"])
            .args(["--log-file", log.to_str().unwrap()]),
    );

    let all = spans(&service);
    for key in &keys {
        let (root, children) = request_trace(&all, key);
        assert_eq!(root["kind"], "SPAN_KIND_CONSUMER");
        assert_eq!(
            root["parent_span_id"], "",
            "a request from a folder starts its trace"
        );
        assert_eq!(attribute(root, "handler.generation"), 0);
        assert_eq!(attribute(root, "attempts"), 1);
        for stage in ["read", "ordering key", "wait for grant", "handle"] {
            assert!(children.contains(&stage), "{key}: {stage} in {children:?}");
        }
        if key == "zz-not-json" {
            assert_eq!(attribute(root, "outcome"), "dead-lettered");
            assert_eq!(root["status"], "STATUS_CODE_ERROR");
            let reason = attribute(root, "reason").as_str().unwrap();
            assert!(reason.starts_with("rejected: "), "{reason}");
            assert!(children.contains(&"dead-letter"), "{children:?}");
            let trace_id = root["trace_id"].as_str().unwrap();
            let log = std::fs::read_to_string(&log).unwrap();
            let line = log
                .lines()
                .find(|line| line.contains("Request dead-lettered."))
                .unwrap();
            assert!(line.ends_with(&format!("trace_id={trace_id}")), "{line}");
        } else {
            assert_eq!(attribute(root, "outcome"), "applied", "{root}");
            assert!(children.contains(&"remove"), "{children:?}");
            let stored = all.iter().find(|span| {
                span["parent_span_id"] == root["span_id"]
                    && span["name"].as_str().unwrap().starts_with("store ")
            });
            let stored = stored.unwrap_or_else(|| panic!("{key}: a store call in {children:?}"));
            let store_key = attribute(stored, "store.key").as_str().unwrap();
            assert!(store_key.starts_with("widgets/"), "{store_key}");
            assert!(!attribute(root, "widget.key").is_null(), "{root}");
        }
    }
    let resource = &all[0]["resource"];
    assert_eq!(resource["service.name"], service.as_str());
    assert_eq!(resource["telemetry.sdk.language"], "rust");
}

/// A message attribute of type String.
fn string(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .unwrap()
}

#[test]
fn a_messages_trace_context_is_continued_and_carried_to_its_dead_letter() {
    let service = unique("traces-queue");
    let client = sqs();
    let queue = create_queue(&client, "traced", true);
    let dead_letters = create_queue(&client, "traced-rejected", true);
    let good = std::fs::read_to_string(tests_dir().join("fixtures/instructor-2022/1612306368338")).unwrap();
    let sent = [
        (
            good.as_str(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        (
            "not json",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    ];
    let mut ids = Vec::new();
    for (i, (body, traceparent)) in sent.iter().enumerate() {
        let answer = block_on(
            client
                .send_message()
                .queue_url(&queue)
                .message_body(*body)
                .message_group_id(format!("g{i}"))
                .message_deduplication_id(format!("d{i}"))
                .message_attributes("traceparent", string(traceparent))
                .send(),
        )
        .unwrap();
        ids.push(answer.message_id.unwrap());
    }
    let widgets = tempfile::tempdir().unwrap();
    run_ok(
        traced_host(&service)
            .env("AWS_ENDPOINT_URL_SQS", fauxqs())
            .args(["-rq", &queue, "--dead-letter-queue", &dead_letters])
            .args(["--widgets-dir", widgets.path().to_str().unwrap()])
            .args(["--until-empty", "--queue-wait-seconds", "1"]),
    );

    let all = spans(&service);
    let mut roots = Vec::new();
    for (id, (_, traceparent)) in ids.iter().zip(sent) {
        let (root, _) = request_trace(&all, id);
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(root["trace_id"], parts[1], "the producer's trace, continued");
        assert_eq!(root["parent_span_id"], parts[2], "under the producer's span");
        roots.push(root);
    }
    assert_eq!(attribute(roots[0], "outcome"), "applied");
    assert_eq!(attribute(roots[1], "outcome"), "dead-lettered");

    let got = block_on(
        client
            .receive_message()
            .queue_url(&dead_letters)
            .message_attribute_names("All")
            .send(),
    )
    .unwrap();
    let letter = &got.messages()[0];
    assert_eq!(letter.body(), Some("not json"));
    let carried = letter.message_attributes().unwrap()["traceparent"]
        .string_value()
        .unwrap();
    assert_eq!(
        carried,
        format!(
            "00-{}-{}-01",
            roots[1]["trace_id"].as_str().unwrap(),
            roots[1]["span_id"].as_str().unwrap()
        ),
        "the dead letter leads to the span of the request that was refused"
    );
}

#[test]
fn nothing_is_exported_when_traces_are_turned_off_and_a_grpc_collector_is_a_usage_error() {
    let service = unique("traces-off");
    let root = tempfile::tempdir().unwrap();
    let requests = root.path().join("requests");
    produce(&mut host(), "--requests-dir", &requests, 5, 1);
    run_ok(
        traced_host(&service)
            .env("OTEL_SDK_DISABLED", "true")
            .args(["--requests-dir", requests.to_str().unwrap()])
            .args(["--widgets-dir", root.path().join("widgets").to_str().unwrap()])
            .arg("--until-empty"),
    );
    assert_eq!(files(&requests).len(), 0, "the run took every request");
    assert_eq!(spans(&service), Vec::<Value>::new());

    let output = host()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .args(["--requests-dir", "no-such-folder", "--widgets-dir", "w"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"),
        "{stderr}"
    );
}

/// moto's SQS, which keeps a message's `AWSTraceHeader` (fauxqs does not).
#[test]
fn a_message_traced_by_x_ray_continues_its_trace() {
    let service = unique("traces-x-ray");
    let client = block_on(async { aws_sdk_sqs::Client::new(&shared_config(&moto()).await) });
    let queue = create_queue(&client, "x-ray", false);
    let good = std::fs::read_to_string(tests_dir().join("fixtures/instructor-2022/1612306368338")).unwrap();
    let id = block_on(
        client
            .send_message()
            .queue_url(&queue)
            .message_body(good)
            .message_system_attributes(
                MessageSystemAttributeNameForSends::AwsTraceHeader,
                MessageSystemAttributeValue::builder()
                    .data_type("String")
                    .string_value(
                        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
                    )
                    .build()
                    .unwrap(),
            )
            .send(),
    )
    .unwrap()
    .message_id
    .unwrap();
    let widgets = tempfile::tempdir().unwrap();
    run_ok(
        traced_host(&service)
            .env("AWS_ENDPOINT_URL_SQS", moto())
            .args(["-rq", &queue, "--widgets-dir", widgets.path().to_str().unwrap()])
            .args(["--until-empty", "--queue-wait-seconds", "1"]),
    );
    let all = spans(&service);
    let (root, _) = request_trace(&all, &id);
    assert_eq!(root["trace_id"], "5759e988bd862e3fe1be46a994272793");
    assert_eq!(root["parent_span_id"], "53995c3f42cd8ad8");
    assert_eq!(attribute(root, "outcome"), "applied");
}

#[test]
fn a_bucket_dead_letter_carries_the_trace_of_the_request_refused() {
    let service = unique("traces-bucket");
    let client = s3(&moto());
    let bucket = create_bucket(&client, "traced");
    put_request(&client, &bucket, "1-bad", "not json");
    let widgets = tempfile::tempdir().unwrap();
    run_ok(
        traced_host(&service)
            .env("AWS_ENDPOINT_URL_S3", moto())
            .args([
                "--request-bucket",
                &bucket,
                "--widgets-dir",
                widgets.path().to_str().unwrap(),
            ])
            .arg("--until-empty"),
    );
    let all = spans(&service);
    let (root, _) = request_trace(&all, "1-bad");
    let letter = block_on(
        client
            .head_object()
            .bucket(&bucket)
            .key("dead-letter/1-bad")
            .send(),
    )
    .unwrap();
    let carried = letter.metadata().unwrap()["traceparent"].clone();
    assert_eq!(
        carried,
        format!(
            "00-{}-{}-01",
            root["trace_id"].as_str().unwrap(),
            root["span_id"].as_str().unwrap()
        )
    );
}

/// A request refused before its turn (too large to read) from a queue,
/// which never lists again: its dead letter carries its trace all the same.
#[test]
fn a_message_refused_unread_carries_its_trace_to_the_dead_letter_queue() {
    let service = unique("traces-too-large");
    let client = sqs();
    let queue = create_queue(&client, "traced-large", true);
    let dead_letters = create_queue(&client, "traced-large-rejected", true);
    let traceparent = "00-6e0c63257de34c92bf9efcd03927272e-d75597dee50b0cac-01";
    let id = block_on(
        client
            .send_message()
            .queue_url(&queue)
            .message_body("x".repeat(2000))
            .message_group_id("g")
            .message_deduplication_id("d")
            .message_attributes("traceparent", string(traceparent))
            .send(),
    )
    .unwrap()
    .message_id
    .unwrap();
    let widgets = tempfile::tempdir().unwrap();
    run_ok(
        traced_host(&service)
            .env("AWS_ENDPOINT_URL_SQS", fauxqs())
            .args(["-rq", &queue, "--dead-letter-queue", &dead_letters])
            .args(["--widgets-dir", widgets.path().to_str().unwrap()])
            .args([
                "--until-empty",
                "--queue-wait-seconds",
                "1",
                "--max-request-bytes",
                "1000",
            ]),
    );
    let all = spans(&service);
    let (root, children) = request_trace(&all, &id);
    assert_eq!(root["trace_id"], "6e0c63257de34c92bf9efcd03927272e");
    assert_eq!(attribute(root, "outcome"), "dead-lettered", "{root}");
    assert!(children.contains(&"dead-letter"), "{children:?}");
    let got = block_on(
        client
            .receive_message()
            .queue_url(&dead_letters)
            .message_attribute_names("All")
            .send(),
    )
    .unwrap();
    let letter = got.messages().first().expect("the dead letter");
    let carried = letter.message_attributes().unwrap()["traceparent"]
        .string_value()
        .unwrap();
    assert_eq!(
        carried,
        format!(
            "00-6e0c63257de34c92bf9efcd03927272e-{}-01",
            root["span_id"].as_str().unwrap()
        )
    );
}
