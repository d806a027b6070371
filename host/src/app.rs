//! The commands: each opens what its configuration names and runs.

use crate::aws::{Aws, AwsSettings, storage_error};
use crate::check;
use crate::cli::{CheckArgs, Cli, Command, DemoArgs, DestinationArg, InvokeArgs, ProduceArgs, RunArgs};
use crate::config::{HandlerSpec, RunConfig, SinkSpec, SourceSpec};
use crate::fsutil::write_atomically;
use crate::metrics::Summary;
use crate::pipeline::{self, Options};
use crate::producer::Producer;
use crate::reload::HandlerSlot;
use crate::runtime::{self, Context, DEFAULT_HANDLER, Destination, Limits, Operation, Runtime};
use crate::shutdown::Shutdown;
use crate::sink::memory::MemorySink;
use crate::sink::s3::{S3Sink, check_bucket};
use crate::sink::{Sink, dir::DirSink, dynamodb::DynamoDbSink};
use crate::source::{Source, dir::DirSource, s3::S3Source};
use anyhow::Context as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Runs the command line's command.
pub async fn main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        // Without a subcommand the flags are `run`'s.
        None => run_and_report(&cli.run).await,
        Some(Command::Run(args)) => run_and_report(&args).await,
        Some(Command::Produce(args)) => produce(&args).await,
        Some(Command::Demo(args)) => demo(&args).await,
        Some(Command::Check(args)) => check(&args).await,
        Some(Command::Invoke(args)) => invoke(&args).await,
    }
}

/// `check`: the conformance suite against a handler.
async fn check(args: &CheckArgs) -> anyhow::Result<()> {
    let runtime = load_handler(&HandlerSpec::new(args.handler.clone(), &args.limits)?)?;
    let mut cases = if args.no_builtin_cases {
        Vec::new()
    } else {
        check::builtin()
    };
    for dir in &args.cases {
        cases.extend(check::load_dir(dir)?);
    }
    if cases.is_empty() {
        anyhow::bail!("no cases to run");
    }
    match check::run_all(&runtime, &cases).await {
        0 => Ok(()),
        failures => anyhow::bail!("{failures} of {} cases failed", cases.len()),
    }
}

/// `invoke`: one request through a handler, its answer printed.
async fn invoke(args: &InvokeArgs) -> anyhow::Result<()> {
    let file = (args.handler.as_os_str() != "builtin").then(|| args.handler.clone());
    let runtime = load_handler(&HandlerSpec::new(file, &args.limits)?)?;
    let request = std::fs::read(&args.request)
        .with_context(|| format!("cannot read request {}", args.request.display()))?;
    let destination = match args.destination {
        DestinationArg::ObjectStore => Destination::ObjectStore,
        DestinationArg::Table => Destination::Table,
    };
    let store: Arc<dyn Sink> = match &args.store {
        Some(dir) => Arc::new(DirSink::open(dir)?.presented_as(destination)),
        None => Arc::new(MemorySink::new(destination)),
    };
    let context = Context {
        key: args
            .request
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        destination,
    };
    let handled = runtime.handle(&request, context, store).await?;
    for (level, message) in &handled.logs {
        println!("log {level}: {message}");
    }
    match handled.result {
        Err(reason) => println!("rejected: {reason}"),
        Ok(plan) => {
            println!("kind: {}", plan.kind);
            if plan.operations.is_empty() {
                println!("no operations");
            }
            for operation in plan.operations {
                match operation {
                    Operation::Put(put) => println!("put {}\n  {}", put.key, put.document),
                    Operation::Delete(key) => println!("delete {key}"),
                }
            }
        }
    }
    Ok(())
}

/// `run`: processes requests, then prints the summary.
async fn run_and_report(args: &RunArgs) -> anyhow::Result<()> {
    let summary = run(RunConfig::from_args(args)?).await?;
    println!("{summary}");
    Ok(())
}

/// Processes requests as configured, until the source is empty (with
/// `--until-empty`), the maximum run time, or a signal.
pub async fn run(config: RunConfig) -> anyhow::Result<Summary> {
    let runtime = load_handler(&config.handler)?;
    let handlers = HandlerSlot::new(runtime, config.handler.file.clone());
    let aws = match config.uses_aws() {
        true => Some(Aws::connect(&config.aws).await),
        false => None,
    };
    let client = || aws.clone().context("AWS clients are not set up");
    let source: Arc<dyn Source> = match &config.source {
        SourceSpec::Dir(path) => Arc::new(DirSource::open(path)?),
        SourceSpec::S3Bucket(bucket) => Arc::new(S3Source::open(client()?.s3, bucket).await?),
    };
    let sink: Arc<dyn Sink> = match &config.sink {
        SinkSpec::Dir(path) => Arc::new(DirSink::open(path)?),
        SinkSpec::S3Bucket(bucket) => Arc::new(S3Sink::open(client()?.s3, bucket).await?),
        SinkSpec::DynamoDbTable(table) => Arc::new(DynamoDbSink::open(client()?.dynamodb, table).await?),
    };
    let shutdown = Shutdown::default();
    shutdown.on_signals();
    if let Some(max_runtime) = config.max_runtime {
        shutdown.after(max_runtime);
    }
    handlers.on_sighup(shutdown.clone());
    if config.watch {
        handlers.watch(shutdown.clone());
    }
    let mut summary = pipeline::run(source, sink, handlers, config.options, shutdown).await?;
    if let Some(aws) = aws {
        summary.api_calls = aws.calls.snapshot();
    }
    Ok(summary)
}

/// Compiles the configured handler, or the built-in one.
pub fn load_handler(spec: &HandlerSpec) -> anyhow::Result<Runtime> {
    let engine = runtime::engine(spec.compile_cache)?;
    let (name, wasm) = match &spec.file {
        Some(path) => (
            path.display().to_string(),
            std::fs::read(path).with_context(|| format!("cannot read handler {}", path.display()))?,
        ),
        None => ("built-in widget handler".to_owned(), DEFAULT_HANDLER.to_vec()),
    };
    let started = std::time::Instant::now();
    let runtime = Runtime::new(&engine, &wasm, spec.limits)
        .with_context(|| format!("{name} is not a usable widget-handler component"))?;
    tracing::info!(handler = %name, bytes = wasm.len(), compile_ms = started.elapsed().as_millis() as u64, "Handler loaded.");
    Ok(runtime)
}

async fn produce(args: &ProduceArgs) -> anyhow::Result<()> {
    let target = match (&args.requests_dir, &args.request_bucket) {
        (Some(dir), None) => Target::Dir(dir.clone()),
        (None, Some(bucket)) => {
            let aws = Aws::connect(&(&args.aws).into()).await;
            check_bucket(&aws.s3, bucket, "request").await?;
            Target::S3 {
                client: aws.s3,
                bucket: bucket.clone(),
            }
        }
        _ => anyhow::bail!("give one place to write to: --requests-dir DIR or --request-bucket BUCKET"),
    };
    let seed = args.seed.unwrap_or_else(rand::random);
    let pacing = Pacing {
        count: args.max_widget_requests,
        delay: Duration::from_millis(args.inter_request_delay),
        max_runtime: (args.max_runtime_ms > 0).then(|| Duration::from_millis(args.max_runtime_ms)),
    };
    let start_ms = args.start_ms.unwrap_or_else(now_ms);
    let written = produce_into(&target, seed, start_ms, &pacing).await?;
    println!("Wrote {written} requests to {target} (seed {seed}).");
    Ok(())
}

/// Where `produce` writes.
pub enum Target {
    /// A local folder: one file per request.
    Dir(PathBuf),
    /// An S3 bucket: one object per request.
    S3 {
        /// The client to write with.
        client: aws_sdk_s3::Client,
        /// The bucket to write into.
        bucket: String,
    },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Dir(dir) => write!(f, "{}", dir.display()),
            Target::S3 { bucket, .. } => write!(f, "s3://{bucket}"),
        }
    }
}

impl Target {
    /// Writes one request; into a folder atomically, so that a host reading
    /// the folder meanwhile never sees half a request.
    async fn write(&self, key: &str, body: &str) -> anyhow::Result<()> {
        match self {
            Target::Dir(dir) => {
                let path = dir.join(key);
                write_atomically(dir, &path, body.as_bytes())
                    .await
                    .with_context(|| format!("cannot write {}", path.display()))
            }
            Target::S3 { client, bucket } => {
                client
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .content_type("application/json")
                    .body(body.as_bytes().to_vec().into())
                    .send()
                    .await
                    .map_err(|e| storage_error(format!("put s3://{bucket}/{key}"), e))?;
                Ok(())
            }
        }
    }
}

/// How many requests, how fast, for how long.
pub struct Pacing {
    /// How many requests to write.
    pub count: u64,
    /// The wait between two requests.
    pub delay: Duration,
    /// Stop after this long, even if fewer were written.
    pub max_runtime: Option<Duration>,
}

/// Writes requests to `target` as `pacing` says; returns how many.
pub async fn produce_into(target: &Target, seed: u64, start_ms: u64, pacing: &Pacing) -> anyhow::Result<u64> {
    if let Target::Dir(dir) = target {
        tokio::fs::create_dir_all(dir)
            .await
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // Tokio's clock, so that tests can run it paused.
    let started = tokio::time::Instant::now();
    let mut producer = Producer::new(seed, start_ms);
    for written in 0..pacing.count {
        if written > 0 && !pacing.delay.is_zero() {
            tokio::time::sleep(pacing.delay).await;
        }
        if pacing.max_runtime.is_some_and(|max| started.elapsed() >= max) {
            return Ok(written);
        }
        let request = producer.next_request();
        target.write(&request.key, &request.body).await?;
    }
    Ok(pacing.count)
}

/// Three requests the handler must refuse, to show dead-lettering: the
/// course's own bad samples.
const DEMO_BAD_REQUESTS: [&str; 3] = [
    "",
    r#"{"type":"bad","requestId":"r","widgetId":"w","owner":"Sue Smith"}"#,
    r#"{"type":"create","requestId":"r","widgetId":"bad"}"#,
];

/// Settles the demo's folder (a fresh temporary one unless given) and
/// returns where its log goes.
pub fn prepare_demo(args: &mut DemoArgs) -> anyhow::Result<PathBuf> {
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => tempfile::Builder::new()
            .prefix("widget-host-demo-")
            .tempdir()
            .context("cannot create the demo folder")?
            .keep(),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    args.dir = Some(dir.clone());
    Ok(dir.join("widget-host.log"))
}

async fn demo(args: &DemoArgs) -> anyhow::Result<()> {
    let dir = args.dir.clone().context("the demo folder is not set")?;
    let requests = dir.join("requests");
    let widgets = dir.join("widgets");
    let start_ms = now_ms();
    let pacing = Pacing {
        count: args.requests,
        delay: Duration::ZERO,
        max_runtime: None,
    };
    produce_into(&Target::Dir(requests.clone()), args.seed, start_ms, &pacing).await?;
    for (i, body) in DEMO_BAD_REQUESTS.iter().enumerate() {
        // Keys just after the first produced request, so they sort among them.
        let key = format!("{:013}", start_ms + 1 + i as u64);
        write_atomically(&requests, &requests.join(key), body.as_bytes()).await?;
    }
    println!(
        "Produced {} requests (seed {}) into {}; processing them with the built-in handler...",
        args.requests + DEMO_BAD_REQUESTS.len() as u64,
        args.seed,
        requests.display()
    );
    let config = RunConfig {
        source: SourceSpec::Dir(requests.clone()),
        sink: SinkSpec::Dir(widgets.clone()),
        handler: HandlerSpec {
            file: None,
            limits: Limits::default(),
            compile_cache: true,
        },
        options: Options {
            until_empty: true,
            ..Options::default()
        },
        max_runtime: None,
        watch: false,
        aws: AwsSettings::default(),
    };
    let summary = run(config).await?;
    println!("{summary}");
    println!();
    println!("Where to look:");
    println!(
        "  widgets:        {}/widgets/<owner>/<widget id>",
        widgets.display()
    );
    println!(
        "  dead letters:   {}/dead-letter/ (each with a .reason file)",
        requests.display()
    );
    println!("  log:            {}", dir.join("widget-host.log").display());
    println!("Run it again on your own requests with:");
    println!(
        "  widget-host run --requests-dir {} --widgets-dir {} --until-empty",
        requests.display(),
        widgets.display()
    );
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn produce_paces_requests_and_stops_at_the_maximum_run_time() {
        let dir = tempfile::tempdir().unwrap();
        let pacing = Pacing {
            count: 1000,
            delay: Duration::from_millis(100),
            max_runtime: Some(Duration::from_secs(1)),
        };
        let target = Target::Dir(dir.path().to_owned());
        let written = produce_into(&target, 1, 1_700_000_000_000, &pacing)
            .await
            .unwrap();
        assert_eq!(written, 10);
        let files = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_file())
            .count();
        assert_eq!(files, 10);
    }
}
