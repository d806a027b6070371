//! Log set-up: human-readable lines on stderr and, with `--log-file`, the
//! same lines in a file. `RUST_LOG` overrides the default level.

use std::io::IsTerminal;
use std::path::Path;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The target of the fatal error's log line: it goes to the log file only,
/// since the binary prints it on stderr itself.
const FATAL: &str = "widget_host::fatal";

/// Installs the global subscriber. `stderr_level` is the default for the
/// terminal; the file always gets `info` and above.
pub fn init(stderr_level: &str, log_file: Option<&Path>) -> anyhow::Result<()> {
    let filter = |level: &str| EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let stderr = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_filter(filter(stderr_level))
        .with_filter(filter_fn(|meta| meta.target() != FATAL));
    let file = match log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("cannot open log file {}: {e}", path.display()))?;
            Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(std::sync::Mutex::new(file))
                    .with_filter(filter("info")),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init()?;
    Ok(())
}

/// Records the error that ends the process in the log file, if there is one.
pub fn fatal(error: &anyhow::Error) {
    tracing::error!(target: FATAL, "{error:#}");
}
