//! The `widget-host` binary: install the signal handlers before anything
//! else, parse the command line, set up logging, run the command, and
//! decide the exit code in one place: 0 done, 1 failed, 2 usage, 130
//! stopped at once by a second signal.

use std::io::Write;
use std::process::ExitCode;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use widget_host::cli::Cli;
use widget_host::commands::{Controls, UsageError};
use widget_host::logging::LogFormat;

/// The command line is wrong (clap uses the same code).
const USAGE: u8 = 2;

/// A second stop signal ended the process at once (as a shell reports Ctrl-C).
const INTERRUPTED: u8 = 130;

/// How long the runtime's leftover tasks and blocking threads get once the
/// command has returned.
const RUNTIME_SHUTDOWN: std::time::Duration = std::time::Duration::from_millis(500);

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            return fail(
                &anyhow::Error::new(e).context("cannot start the async runtime"),
                LogFormat::Text,
            );
        }
    };
    // First of all: until a signal has a handler, it kills the process
    // (SIGHUP with status 129), whatever the host is in the middle of.
    let signals = match runtime.block_on(async { Signals::install() }) {
        Ok(signals) => signals,
        Err(e) => {
            return fail(
                &anyhow::Error::new(e).context("cannot install signal handlers"),
                LogFormat::Text,
            );
        }
    };
    let mut cli = match Cli::parse_args(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout and exit 0; mistakes exit 2.
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    let format = cli.log_format;
    let fail = |error: &anyhow::Error| fail(error, format);
    let mut command = cli.take_command();
    if let Some(written) = command.write_documentation(Cli::definition(), &mut std::io::stdout()) {
        return match written {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => fail(&e.into()),
        };
    }
    let log = match command.prepare(cli.log_file.take()) {
        Ok(log) => log,
        Err(e) => return fail(&e),
    };
    // Traces are set up before the runtime runs the command: the
    // exporter's client blocks, on a thread of its own.
    let traces =
        match widget_host::traces::collector(cli.otlp_endpoint.as_deref(), |name| std::env::var(name).ok()) {
            Ok(None) => None,
            Ok(Some(collector)) => match widget_host::traces::Traces::start(&collector) {
                Ok(started) => Some(started),
                Err(e) => return fail(&e),
            },
            Err(e) => return fail(&e.into()),
        };
    let (traces, spans) = traces.unzip();
    let level = widget_host::logging::moved(log.stderr_level, cli.verbose, cli.quiet);
    if let Err(e) = widget_host::logging::init(level, log.file.as_deref(), format, cli.color, spans) {
        return fail(&e);
    }
    let result = runtime.block_on(async {
        let controls = signals.forward();
        let mut out = std::io::stdout();
        let done = command.execute(controls, &mut out).await;
        done.and_then(|()| Ok(out.flush()?))
    });
    // A read blocked in the kernel (a FIFO, a hung network file system)
    // holds a blocking thread that no stop can end, and dropping the
    // runtime would wait for it for ever: the command has returned, so
    // give such threads a moment and leave them behind.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    if let Some(traces) = traces {
        traces.shutdown();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Whoever read our output has gone (`widget-host check | head -1`):
        // nothing is wrong, and nobody is left to tell.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Reports a fatal error, once, with its causes, as `format` writes log
/// lines; returns the exit code.
fn fail(error: &anyhow::Error, format: LogFormat) -> ExitCode {
    widget_host::logging::fatal(error);
    eprintln!("{}", widget_host::logging::fatal_line(error, format));
    if error.is::<UsageError>() {
        if format == LogFormat::Text {
            eprintln!("(widget-host --help shows the flags, with examples)");
        }
        ExitCode::from(USAGE)
    } else {
        ExitCode::FAILURE
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The signals the host answers: Ctrl-C and SIGTERM stop it, SIGHUP
/// reloads the handler.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers; must run inside the Tokio runtime.
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Turns signals into the controls a command takes, on a task of its
    /// own. Signals that came before are not lost: a stop still stops. The
    /// second stop signal ends the process at once: what is not removed
    /// from its source stays there, so nothing is lost.
    fn forward(mut self) -> Controls {
        let stop = CancellationToken::new();
        let (reload, reload_requests) = watch::channel(0u64);
        let cancel = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = self.interrupt.recv() => {}
                    _ = self.terminate.recv() => {}
                    _ = self.hangup.recv() => {
                        reload.send_modify(|n| *n += 1);
                        continue;
                    }
                }
                if cancel.is_cancelled() {
                    eprintln!("Stopping at once: requests not yet done stay in their source.");
                    std::process::exit(INTERRUPTED.into());
                }
                tracing::info!("Stopping: finishing the requests in flight.");
                cancel.cancel();
            }
        });
        Controls {
            stop,
            reload: reload_requests,
        }
    }
}
