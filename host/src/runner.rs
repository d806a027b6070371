//! One run of the host, from a checked [`Config`] to its summary: the
//! handler loaded, the source and the sink opened, the maximum run time,
//! the handler's reloads, the metrics endpoint and the progress display
//! started, the pipeline run, and a stop given at most the shutdown
//! timeout. `run` and `demo` both come here, from [`Config::new`].

use crate::aws::{AwsSettings, Clients};
use crate::error::StorageError;
use crate::handler::swap::LiveHandler;
use crate::handler::{self, Handler};
use crate::metrics::health::Stage;
use crate::metrics::{Metrics, Summary, exporter};
use crate::pipeline::{self, Options, Rollback, Shadow};
use crate::progress;
use crate::retry::{Attempt, Retry};
use crate::sink;
use crate::source::Place;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long a stop waits for the stores in flight, unless told otherwise.
pub(crate) const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 30;

/// Everything a run needs, checked.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) source: Place,
    pub(crate) sink: sink::Spec,
    pub(crate) handler: handler::Spec,
    /// A candidate handler in shadow (`--candidate`).
    pub(crate) candidate: Option<handler::Spec>,
    /// Promote the candidate after this many agreeing requests.
    pub(crate) promote_after: Option<u64>,
    /// Where the candidate's differences are written.
    pub(crate) candidate_records: Option<std::path::PathBuf>,
    /// Undo a swap whose handler dead-letters this many percentage points
    /// more, over this many requests.
    pub(crate) rollback: Option<(f64, usize)>,
    pub(crate) options: Options,
    /// Stop after this long (`-mrt`).
    pub(crate) max_runtime: Option<Duration>,
    /// Where to serve Prometheus metrics.
    pub(crate) metrics_addr: Option<String>,
    /// Reload the handler when its file changes.
    pub(crate) watch: bool,
    /// How long a stop waits for the stores in flight.
    pub(crate) shutdown_timeout: Duration,
    pub(crate) aws: AwsSettings,
}

impl Config {
    /// A run from `source` into `sink` with every default: the built-in
    /// handler under the default limits, the default concurrency, no time
    /// limit, polling until stopped.
    pub(crate) fn new(source: Place, sink: sink::Spec) -> Config {
        Config {
            source,
            sink,
            handler: handler::Spec::default(),
            candidate: None,
            promote_after: None,
            candidate_records: None,
            rollback: None,
            options: Options::default(),
            max_runtime: None,
            metrics_addr: None,
            watch: false,
            shutdown_timeout: Duration::from_secs(DEFAULT_SHUTDOWN_TIMEOUT_SECS),
            aws: AwsSettings::default(),
        }
    }
}

/// How long a start waits for a place that fails transiently (a server
/// down or restarting, throttling) before it gives up. A place that does
/// not exist, or refuses access, fails at once.
const OPEN_PATIENCE: Duration = Duration::from_secs(60);

/// Opens a place, trying again after transient failures (each logged) for
/// up to [`OPEN_PATIENCE`], or until `stop`.
async fn opened<T, F, Fut>(what: &str, stop: &CancellationToken, open: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StorageError>>,
{
    let patience = stop.child_token();
    let _ended = patience.clone().drop_guard();
    let timer = patience.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = tokio::time::sleep(OPEN_PATIENCE) => timer.cancel(),
            () = timer.cancelled() => {}
        }
    });
    let last = std::sync::Mutex::new(None);
    let mut open = open;
    let attempt = Retry::new(patience)
        .run(|| {
            let tried = open();
            async {
                let result = tried.await;
                if let Err(e) = &result {
                    *last.lock().unwrap() = Some(e.to_string());
                }
                result
            }
        })
        .await;
    match attempt {
        Attempt::Done(place) => Ok(place),
        Attempt::Failed(e) => Err(e.into()),
        Attempt::Stopped if stop.is_cancelled() => Err(anyhow::anyhow!("stopped while opening {what}")),
        Attempt::Stopped => Err(anyhow::anyhow!(
            "cannot open {what}: still failing after {OPEN_PATIENCE:?}: {}",
            last.into_inner().unwrap().unwrap_or_default()
        )),
    }
}

/// Processes requests as configured, until the source is empty (with
/// `until_empty`), the maximum run time, or `stop`; each change of
/// `reload` reloads the handler from its file.
pub(crate) async fn run(
    config: Config,
    stop: CancellationToken,
    reload: watch::Receiver<u64>,
) -> anyhow::Result<Summary> {
    let metrics = Arc::new(Metrics::default());
    let clients = Clients::new(config.aws.clone());
    // The endpoint answers from the start, so that probes see a run that
    // is loading or waiting for its places as alive and not ready; and
    // until the run has ended, shutdown included.
    let exporter_stop = CancellationToken::new();
    let _exporter_stopped = exporter_stop.clone().drop_guard();
    if let Some(address) = &config.metrics_addr {
        let listener = exporter::bind(address).await?;
        if let Ok(address) = listener.local_addr() {
            tracing::info!(%address, "Serving metrics and health.");
        }
        let registry = metrics.registry(clients.calls(), config.candidate.is_some());
        tokio::spawn(exporter::serve(
            listener,
            registry,
            metrics.clone(),
            exporter_stop.clone(),
        ));
    }
    let handler = Handler::load(&config.handler)?;
    handler.check_starts().await?;
    // The candidate compiles on the live handler's engines: a promotion
    // swaps one handler for another on them, as a reload does.
    let candidate = match &config.candidate {
        Some(spec) => {
            let candidate = Handler::load_on(handler.engines(), &spec.choice, spec.limits)
                .map_err(|e| e.context("cannot load the candidate handler"))?;
            candidate
                .check_starts()
                .await
                .map_err(|e| e.context("cannot use the candidate handler"))?;
            Some(candidate)
        }
        None => None,
    };
    let handlers = LiveHandler::new(handler, config.handler.choice.clone());
    handlers.report_to(metrics.clone());
    metrics.health.reached(Stage::Opening);
    // The run's own stop: the caller's, or the maximum run time.
    let stop = stop.child_token();
    // A receive under way at a stop is let end only within the shutdown
    // timeout, with a second to spare for the rest.
    let stop_grace = config.shutdown_timeout.saturating_sub(Duration::from_secs(1));
    let source = opened("the request source", &stop, || {
        config.source.open(&clients, stop.clone(), stop_grace)
    })
    .await?;
    let sink = opened("the widget store", &stop, || config.sink.open(&clients)).await?;
    if let Some(max_runtime) = config.max_runtime {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(max_runtime) => {
                    tracing::info!(?max_runtime, "Maximum run time reached: finishing the requests in flight.");
                    stop.cancel();
                }
                _ = stop.cancelled() => {}
            }
        });
    }
    handlers.reload_on(reload, stop.clone());
    if config.watch {
        handlers.watch(stop.clone());
    }
    let options = config.options.clone();
    let mut observers = pipeline::Observers::default();
    if let Some((points, window)) = config.rollback {
        observers.rollback = Some(Arc::new(Rollback::new(
            points,
            window,
            handlers.clone(),
            metrics.clone(),
        )));
    }
    if let Some(candidate) = candidate {
        let records = match &config.candidate_records {
            Some(path) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        anyhow::anyhow!("cannot open {} (--candidate-records): {e}", path.display())
                    })?,
            ),
            None => None,
        };
        observers.shadow = Some(Arc::new(Shadow::new(
            candidate,
            config.promote_after,
            options.concurrency.ceiling(),
            handlers.clone(),
            metrics.clone(),
            records,
        )));
    }
    // Not ready from the moment a stop is asked for: a balancer sends no
    // more, a scaler sees the host going.
    metrics.health.reached(Stage::Running);
    {
        let (stop, metrics) = (stop.clone(), metrics.clone());
        tokio::spawn(async move {
            stop.cancelled().await;
            metrics.health.reached(Stage::Stopping);
        });
    }
    // Progress is for a run that ends: one that polls forever has no end to
    // show.
    let shown = config
        .options
        .until_empty
        .then(|| progress::show("requests", metrics.progress.clone()));
    let pipeline = pipeline::run(
        source,
        sink,
        handlers.clone(),
        options,
        observers,
        metrics,
        stop.clone(),
    );
    let shutdown_timeout = config.shutdown_timeout;
    let late = async {
        stop.cancelled().await;
        tokio::time::sleep(shutdown_timeout).await;
    };
    let summary = tokio::select! {
        summary = pipeline => summary,
        () = late => Err(anyhow::anyhow!(
            "stopped without waiting longer than --shutdown-timeout ({shutdown_timeout:?}) for the \
             stores in flight; their requests stay in the source"
        )),
    };
    // Ends the timer and the reload tasks.
    stop.cancel();
    if let Some(shown) = shown {
        shown.finish().await;
    }
    let mut summary = summary?;
    summary.swaps = handlers
        .history()
        .iter()
        .map(|swap| format!("{} {swap}", swap.generation))
        .collect();
    if let Some(calls) = clients.calls() {
        summary.api_calls = calls.snapshot();
        summary.sdk_retries = calls.sdk_retries();
    }
    Ok(summary)
}
