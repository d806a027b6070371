//! The floor of the benchmark (`bench/run.sh`): what any consumer of widget
//! requests must at least do, done with the fewest calls and nothing else.
//! It lists a page, reads each request, reads the widget an update or a
//! delete needs, writes (S3: one call per widget; DynamoDB: BatchWriteItem,
//! 25 at a time), then removes the page's requests (S3: DeleteObjects, up
//! to 1,000 at a time). No Wasm, no validation, no merge (an update writes
//! the request as the widget), no per-widget order: a bound on speed, not a
//! consumer to use.
//!
//!     widget-bench-floor --requests-bucket B (--widget-bucket W | --table T) [--concurrency 8]
//!     widget-bench-floor --requests-dir D --widgets-dir W
//!
//! Prints one JSON line: requests, seconds, calls by operation, p50 and
//! p99 latency (from the listing that found a request to its removal).

use anyhow::Context as _;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use clap::Parser;
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    requests_bucket: Option<String>,
    #[arg(long)]
    widget_bucket: Option<String>,
    #[arg(long)]
    table: Option<String>,
    #[arg(long)]
    requests_dir: Option<PathBuf>,
    #[arg(long)]
    widgets_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

/// Calls made, by operation.
#[derive(Default, Clone)]
struct Calls(Arc<Mutex<BTreeMap<&'static str, u64>>>);

impl Calls {
    fn add(&self, operation: &'static str) {
        *self.0.lock().unwrap().entry(operation).or_default() += 1;
    }
}

/// What one request asks for, as far as the floor looks.
struct Request {
    kind: String,
    id: String,
    key: String,
}

fn read_request(bytes: &[u8]) -> Option<Request> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let id = value["widgetId"].as_str()?.to_owned();
    let owner = value["owner"].as_str()?.to_lowercase().replace(' ', "-");
    Some(Request {
        kind: value["type"].as_str()?.to_owned(),
        key: format!("widgets/{owner}/{id}"),
        id,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let calls = Calls::default();
    let latencies = match (&args.requests_dir, &args.requests_bucket) {
        (Some(dir), None) => folder(&args, dir).await?,
        (None, Some(bucket)) => bucket_run(&args, bucket, &calls).await?,
        _ => anyhow::bail!("give --requests-dir or --requests-bucket"),
    };
    let seconds = started.elapsed().as_secs_f64();
    let mut sorted = latencies.clone();
    sorted.sort_unstable();
    let quantile = |q: f64| {
        sorted
            .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0.0, |d: &Duration| d.as_secs_f64() * 1000.0)
    };
    let calls = calls.0.lock().unwrap().clone();
    println!(
        "{}",
        serde_json::json!({
            "requests": latencies.len(),
            "seconds": seconds,
            "calls": calls.values().sum::<u64>(),
            "calls_by_operation": calls,
            "p50_ms": quantile(0.5),
            "p99_ms": quantile(0.99),
        })
    );
    Ok(())
}

async fn bucket_run(args: &Args, bucket: &str, calls: &Calls) -> anyhow::Result<Vec<Duration>> {
    let config = aws_config::load_from_env().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let mut latencies = Vec::new();
    let mut after: Option<String> = None;
    loop {
        calls.add("S3.ListObjectsV2");
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .set_start_after(after.clone())
            .send()
            .await?;
        let keys: Vec<String> = page.contents().iter().filter_map(|o| o.key.clone()).collect();
        if keys.is_empty() {
            return Ok(latencies);
        }
        let listed = Instant::now();
        after = keys.last().cloned();
        // Read each request, and the widget it needs, `concurrency` at once.
        let read: Vec<(String, Option<Request>, Option<Vec<u8>>)> = futures::stream::iter(keys.clone())
            .map(|key| {
                let (s3, dynamodb, calls) = (s3.clone(), dynamodb.clone(), calls.clone());
                async move {
                    calls.add("S3.GetObject");
                    let body = s3.get_object().bucket(bucket).key(&key).send().await?;
                    let body = body.body.collect().await?.into_bytes().to_vec();
                    let request = read_request(&body);
                    if let Some(r) = request.as_ref().filter(|r| r.kind != "create") {
                        match (&args.widget_bucket, &args.table) {
                            (Some(widgets), _) => {
                                calls.add("S3.GetObject");
                                let _ = s3.get_object().bucket(widgets).key(&r.key).send().await;
                            }
                            (_, Some(table)) => {
                                calls.add("DynamoDB.GetItem");
                                dynamodb
                                    .get_item()
                                    .table_name(table)
                                    .key("id", AttributeValue::S(r.id.clone()))
                                    .consistent_read(true)
                                    .send()
                                    .await?;
                            }
                            _ => {}
                        }
                    }
                    anyhow::Ok((key, request, Some(body)))
                }
            })
            .buffer_unordered(args.concurrency)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        // Store.
        match (&args.widget_bucket, &args.table) {
            (Some(widgets), _) => {
                futures::stream::iter(
                    read.iter()
                        .filter_map(|(_, r, body)| Some((r.as_ref()?, body.clone()?))),
                )
                .map(|(r, body)| {
                    let (s3, calls) = (s3.clone(), calls.clone());
                    async move {
                        if r.kind == "delete" {
                            calls.add("S3.DeleteObject");
                            s3.delete_object().bucket(widgets).key(&r.key).send().await?;
                        } else {
                            calls.add("S3.PutObject");
                            s3.put_object()
                                .bucket(widgets)
                                .key(&r.key)
                                .body(body.into())
                                .send()
                                .await?;
                        }
                        anyhow::Ok(())
                    }
                })
                .buffer_unordered(args.concurrency)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?;
            }
            (_, Some(table)) => {
                // BatchWriteItem takes 25, and one key at most once a call.
                let mut batches: Vec<HashMap<String, WriteRequest>> = vec![HashMap::new()];
                for (_, r, _) in &read {
                    let Some(r) = r else { continue };
                    let write = if r.kind == "delete" {
                        WriteRequest::builder()
                            .delete_request(
                                aws_sdk_dynamodb::types::DeleteRequest::builder()
                                    .key("id", AttributeValue::S(r.id.clone()))
                                    .build()?,
                            )
                            .build()
                    } else {
                        WriteRequest::builder()
                            .put_request(
                                PutRequest::builder()
                                    .item("id", AttributeValue::S(r.id.clone()))
                                    .item("kind", AttributeValue::S(r.kind.clone()))
                                    .build()?,
                            )
                            .build()
                    };
                    let last = batches.last_mut().unwrap();
                    if last.len() == 25 || last.contains_key(&r.id) {
                        batches.push(HashMap::new());
                    }
                    batches.last_mut().unwrap().insert(r.id.clone(), write);
                }
                for batch in batches.into_iter().filter(|b| !b.is_empty()) {
                    let mut pending: Vec<WriteRequest> = batch.into_values().collect();
                    while !pending.is_empty() {
                        calls.add("DynamoDB.BatchWriteItem");
                        let out = dynamodb
                            .batch_write_item()
                            .request_items(table, pending)
                            .send()
                            .await?;
                        pending = out
                            .unprocessed_items
                            .and_then(|mut u| u.remove(table))
                            .unwrap_or_default();
                    }
                }
            }
            _ => anyhow::bail!("give --widget-bucket or --table"),
        }
        // Remove the page's requests: one call per 1,000.
        calls.add("S3.DeleteObjects");
        let objects = keys
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<Vec<_>, _>>()?;
        s3.delete_objects()
            .bucket(bucket)
            .delete(Delete::builder().set_objects(Some(objects)).quiet(true).build()?)
            .send()
            .await
            .context("DeleteObjects")?;
        let took = listed.elapsed();
        latencies.extend(std::iter::repeat_n(took, keys.len()));
    }
}

async fn folder(args: &Args, dir: &std::path::Path) -> anyhow::Result<Vec<Duration>> {
    let widgets = args.widgets_dir.clone().context("give --widgets-dir")?;
    let mut latencies = Vec::new();
    loop {
        let mut names: Vec<String> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        if names.is_empty() {
            return Ok(latencies);
        }
        names.sort_unstable();
        for page in names.chunks(1000) {
            let listed = Instant::now();
            futures::stream::iter(page.iter().cloned())
                .map(|name| {
                    let (dir, widgets) = (dir.to_path_buf(), widgets.clone());
                    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                        use std::io::Write as _;
                        let path = dir.join(&name);
                        let body = std::fs::read(&path)?;
                        if let Some(r) = read_request(&body) {
                            let target = widgets.join(&r.key);
                            std::fs::create_dir_all(target.parent().unwrap())?;
                            // The widget an update or a delete needs, as widget-host reads it.
                            if r.kind != "create" {
                                let _ = std::fs::read(&target);
                            }
                            if r.kind == "delete" {
                                let _ = std::fs::remove_file(&target);
                            } else {
                                // Durable, as widget-host writes: synced, renamed, folder synced.
                                // Named for the request: two requests about one widget may
                                // be written at once (the floor keeps no order).
                                let temp = target.with_file_name(format!(".{name}.tmp"));
                                let mut file = std::fs::File::create(&temp)?;
                                file.write_all(&body)?;
                                file.sync_all()?;
                                std::fs::rename(&temp, &target)?;
                                std::fs::File::open(target.parent().unwrap())?.sync_all()?;
                            }
                        }
                        std::fs::remove_file(&path)?;
                        Ok(())
                    })
                })
                .buffer_unordered(args.concurrency)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .map(|joined| joined.map_err(anyhow::Error::from).and_then(|r| r))
                .collect::<Result<Vec<_>, _>>()?;
            latencies.extend(std::iter::repeat_n(listed.elapsed(), page.len()));
        }
    }
}
