//! Turns parsed flags into a checked configuration. No I/O: opening the
//! source, the sink and the handler is `app.rs`'s job.

use crate::cli::{HandlerArgs, RunArgs};
use crate::pipeline::Options;
use crate::runtime::Limits;
use anyhow::{Context as _, bail};
use std::path::PathBuf;
use std::time::Duration;

/// Where requests come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    Dir(PathBuf),
}

/// Where widgets go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    Dir(PathBuf),
}

/// The handler to run.
#[derive(Debug, Clone)]
pub struct HandlerSpec {
    /// `None`: the built-in widget handler.
    pub file: Option<PathBuf>,
    pub limits: Limits,
    pub compile_cache: bool,
}

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub source: SourceSpec,
    pub sink: SinkSpec,
    pub handler: HandlerSpec,
    pub options: Options,
    pub max_runtime: Option<Duration>,
}

impl HandlerSpec {
    pub fn from_args(args: &HandlerArgs) -> anyhow::Result<HandlerSpec> {
        if args.handler_timeout_ms == 0 {
            bail!("--handler-timeout-ms must be at least 1");
        }
        if args.handler_memory_mb == 0 {
            bail!("--handler-memory-mb must be at least 1");
        }
        Ok(HandlerSpec {
            file: args.handler.clone(),
            limits: Limits {
                time: Duration::from_millis(args.handler_timeout_ms),
                memory: args
                    .handler_memory_mb
                    .checked_mul(1 << 20)
                    .context("--handler-memory-mb is too large")?,
            },
            compile_cache: !args.no_compile_cache,
        })
    }
}

impl RunConfig {
    pub fn from_args(args: &RunArgs) -> anyhow::Result<RunConfig> {
        let Some(requests) = &args.requests_dir else {
            bail!("no request source: give --requests-dir DIR");
        };
        let Some(widgets) = &args.widgets_dir else {
            bail!("no widget destination: give --widgets-dir DIR");
        };
        Ok(RunConfig {
            source: SourceSpec::Dir(requests.clone()),
            sink: SinkSpec::Dir(widgets.clone()),
            handler: HandlerSpec::from_args(&args.handler)?,
            options: Options {
                concurrency: usize::from(args.concurrency),
                until_empty: args.until_empty,
                ..Options::default()
            },
            max_runtime: (args.max_runtime_ms > 0).then(|| Duration::from_millis(args.max_runtime_ms)),
        })
    }
}
