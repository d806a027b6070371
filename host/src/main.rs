//! The `widget-host` binary: parse flags, set up logging, run, and decide
//! the exit code in one place.

use clap::Parser;
use std::process::ExitCode;
use widget_host::cli::{Cli, Command, normalize_args};

fn main() -> ExitCode {
    let mut cli = Cli::parse_from(normalize_args(std::env::args_os()));
    // The demo prints its own report; its per-request log goes to a file in
    // its folder.
    let (level, log_file) = match &mut cli.command {
        Some(Command::Demo(demo)) => match widget_host::app::prepare_demo(demo) {
            Ok(log) => ("warn", Some(cli.log_file.clone().unwrap_or(log))),
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        },
        // `check` and `invoke` print their own report on stdout.
        Some(Command::Check(_) | Command::Invoke(_)) => ("error", cli.log_file.clone()),
        _ => ("info", cli.log_file.clone()),
    };
    if let Err(e) = widget_host::logging::init(level, log_file.as_deref()) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(widget_host::app::main(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
