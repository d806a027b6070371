//! The commands: each opens what its configuration names and runs.

use crate::cli::{Cli, Command, DemoArgs, ProduceArgs};
use crate::config::{HandlerSpec, RunConfig, SinkSpec, SourceSpec};
use crate::fsutil::write_atomically;
use crate::metrics::Summary;
use crate::pipeline;
use crate::producer::Producer;
use crate::runtime::{self, DEFAULT_HANDLER, Runtime};
use crate::shutdown::Shutdown;
use crate::sink::{Sink, dir::DirSink};
use crate::source::{Source, dir::DirSource};
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Runs the command line's command.
pub async fn main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => run(RunConfig::from_args(&cli.run)?)
            .await
            .map(|summary| println!("{summary}")),
        Some(Command::Run(args)) => run(RunConfig::from_args(&args)?)
            .await
            .map(|summary| println!("{summary}")),
        Some(Command::Produce(args)) => produce(&args).await,
        Some(Command::Demo(args)) => demo(&args).await,
    }
}

/// Processes requests as configured, until the source is empty (with
/// `--until-empty`), the maximum run time, or a signal.
pub async fn run(config: RunConfig) -> anyhow::Result<Summary> {
    let runtime = load_handler(&config.handler)?;
    let source: Arc<dyn Source> = match &config.source {
        SourceSpec::Dir(path) => Arc::new(DirSource::open(path)?),
    };
    let sink: Arc<dyn Sink> = match &config.sink {
        SinkSpec::Dir(path) => Arc::new(DirSink::open(path)?),
    };
    let shutdown = Shutdown::default();
    shutdown.on_signals();
    if let Some(max_runtime) = config.max_runtime {
        shutdown.after(max_runtime);
    }
    pipeline::run(source, sink, runtime, config.options, shutdown).await
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
    let seed = args.seed.unwrap_or_else(rand::random);
    let start_ms = args.start_ms.unwrap_or_else(now_ms);
    let written = produce_into(&args.requests_dir, seed, start_ms, args.max_widget_requests).await?;
    println!(
        "Wrote {written} requests to {} (seed {seed}).",
        args.requests_dir.display()
    );
    Ok(())
}

/// Writes `count` requests into `dir`, each atomically, so that a host
/// reading the folder meanwhile never sees half a request.
pub async fn produce_into(dir: &Path, seed: u64, start_ms: u64, count: u64) -> anyhow::Result<u64> {
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let mut producer = Producer::new(seed, start_ms);
    for _ in 0..count {
        let request = producer.next_request();
        let path = dir.join(&request.key);
        write_atomically(dir, &path, request.body.as_bytes())
            .await
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(count)
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
    produce_into(&requests, args.seed, start_ms, args.requests).await?;
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
    let args = crate::cli::RunArgs {
        requests_dir: Some(requests.clone()),
        widgets_dir: Some(widgets.clone()),
        handler: crate::cli::HandlerArgs {
            handler: None,
            handler_timeout_ms: 2000,
            handler_memory_mb: 128,
            no_compile_cache: false,
        },
        until_empty: true,
        max_runtime_ms: 0,
        concurrency: 8,
    };
    let summary = run(RunConfig::from_args(&args)?).await?;
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
