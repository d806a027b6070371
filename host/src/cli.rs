//! The command line, as parsed: the subcommands and their flags (each
//! command's own are in its file under `commands/`), the global flags, and
//! the rewriting of the original tools' several-letter short flags. No
//! validation and no I/O here.

use crate::commands::{Command, RunArgs};
use clap::{FromArgMatches as _, Parser};
use std::ffi::OsString;
use std::path::PathBuf;

const EXAMPLES: &str = "\
Examples:
  widget-host demo
  widget-host run --requests-dir requests/ --widgets-dir widgets/ --until-empty
  widget-host -rb requests -dwt widgets --handler my-handler.wasm
  widget-host check my-handler.wasm

Exit status: 0 done, 1 failed, 2 the command line is wrong.";

/// The parsed command line.
#[derive(Debug, Parser)]
#[command(
    name = "widget-host",
    version,
    about = "Runs widget requests through a WebAssembly handler and stores the results.",
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Without a subcommand, `widget-host` runs: these are `run`'s flags.
    #[command(flatten)]
    pub(crate) run: RunArgs,

    /// Also write the log to this file (without colours).
    #[arg(long, global = true, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// How log lines are written: `text`, or `json` (one object per line,
    /// for log shippers), on stderr and in the log file alike; a fatal
    /// error too.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: crate::logging::LogFormat,

    /// Fewer log lines on stderr: warnings and errors (-q), errors only
    /// (-qq). `RUST_LOG` overrides both -q and -v.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,

    /// More log lines: each request's (-v, debug), everything (-vv, trace).
    /// `check -v` also shows the whole documents of a failing case, `diff
    /// -v` the requests both handlers treat alike.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Colours in log lines: `auto` (on a terminal, unless NO_COLOR is
    /// set), `always` or `never`.
    #[arg(long, global = true, value_enum, default_value = "auto", value_name = "WHEN")]
    pub color: crate::logging::Color,

    /// Export each request's trace to this OpenTelemetry collector, over
    /// OTLP/HTTP (protobuf): its base address, `/v1/traces` is added
    /// (`http://localhost:4318`). Without it, the standard
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
    /// names one; `OTEL_SDK_DISABLED=true` turns traces off.
    #[arg(long, global = true, value_name = "URL", value_parser = otlp_endpoint)]
    pub otlp_endpoint: Option<String>,
}

/// An `http://` or `https://` address, for `--otlp-endpoint`.
fn otlp_endpoint(text: &str) -> Result<String, String> {
    match text.split_once("://") {
        Some(("http" | "https", rest)) if !rest.is_empty() => Ok(text.to_owned()),
        _ => Err(format!(
            "{text:?} is not an http:// or https:// address: give the collector's OTLP/HTTP address, such as http://localhost:4318"
        )),
    }
}

impl Cli {
    /// Parses `args` (the program name first), accepting the original
    /// tools' several-letter short flags.
    pub fn parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        let mut definition = Cli::definition();
        let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        // `help --help` asks for help on help: the help it asks for.
        if args.len() == 3 && args[1] == "help" && matches!(args[2].to_str(), Some("--help" | "-h")) {
            args.truncate(2);
        }
        if let Some(error) = misspelled_legacy_flag(&args) {
            return Err(definition.error(clap::error::ErrorKind::UnknownArgument, error));
        }
        let matches = definition.try_get_matches_from_mut(rewrite_legacy_flags(args))?;
        // `run`'s flags given without a subcommand are `run`'s; given before
        // another command they would be silently dropped. (Global flags,
        // -v or --log-format, go anywhere: clap's own rule for this,
        // `args_conflicts_with_subcommands`, refused them too.)
        if let Some((name, _)) = matches.subcommand() {
            let run_flags = <RunArgs as clap::Args>::augment_args(clap::Command::new("run"));
            if let Some(flag) = run_flags.get_arguments().find(|arg| {
                matches.value_source(arg.get_id().as_str()) == Some(clap::parser::ValueSource::CommandLine)
            }) {
                let flag = flag
                    .get_long()
                    .map_or_else(|| flag.get_id().to_string(), |long| format!("--{long}"));
                return Err(definition.error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!("{flag} is a flag of `run`; put it after the command it belongs to (`widget-host {name} ... {flag}`), or leave out `{name}`"),
                ));
            }
        }
        Cli::from_arg_matches(&matches)
    }

    /// The command line's definition, every flag also read from the
    /// environment: what parsing, `completions` and `man` use.
    pub fn definition() -> clap::Command {
        with_env(<Cli as clap::CommandFactory>::command())
    }

    /// The command to run: `run` when none was named. The global `-v`
    /// also tells `check` and `diff` to show more.
    pub fn take_command(&mut self) -> Command {
        let mut command = self
            .command
            .take()
            .unwrap_or_else(|| Command::Run(Box::new(self.run.clone())));
        let verbose = self.verbose > 0;
        match &mut command {
            Command::Check(args) => args.verbose = verbose,
            Command::Diff(args) => args.verbose = verbose,
            _ => {}
        }
        command
    }
}

/// The prefix of the environment variables that set flags.
const ENV_PREFIX: &str = "WIDGET_HOST_";

/// The variable that sets the flag `--long`: `--max-concurrency` from
/// `WIDGET_HOST_MAX_CONCURRENCY`.
fn env_name(long: &str) -> String {
    format!("{ENV_PREFIX}{}", long.replace('-', "_").to_uppercase())
}

/// `command` with every flag that takes a value or is a switch also read
/// from the environment ([`env_name`]; the command line wins, `--help`
/// shows the name), in every subcommand. Counted flags (`-v`, `-q`) and
/// help and version are left as they are.
fn with_env(command: clap::Command) -> clap::Command {
    command
        .mut_args(|arg| {
            let counted = matches!(
                arg.get_action(),
                clap::ArgAction::Count
                    | clap::ArgAction::Help
                    | clap::ArgAction::HelpShort
                    | clap::ArgAction::HelpLong
                    | clap::ArgAction::Version
            );
            match arg.get_long() {
                Some(long) if !counted => {
                    let name = env_name(long);
                    arg.env(name)
                }
                _ => arg,
            }
        })
        .mut_subcommands(with_env)
}

/// The original consumer.py and producer.jar used several-letter short
/// flags (`-mrt`), which clap does not parse: they are rewritten to their
/// long forms first.
const LEGACY_FLAGS: [(&str, &str); 7] = [
    ("-mrt", "--max-runtime"),
    ("-mwr", "--max-widget-requests"),
    ("-ird", "--inter-request-delay"),
    ("-rb", "--request-bucket"),
    ("-rq", "--request-queue"),
    ("-wb", "--widget-bucket"),
    ("-dwt", "--dynamodb-widget-table"),
];

/// The first argument that looks like one of the original tools' short
/// flags with its letters mixed up (`-mrw`), and what to say of it: clap
/// would take it for `-m -r -w` and name only `-m`.
fn misspelled_legacy_flag(args: &[OsString]) -> Option<String> {
    let sorted = |text: &str| {
        let mut letters: Vec<char> = text.chars().collect();
        letters.sort_unstable();
        letters
    };
    args.iter()
        .skip(1)
        .take_while(|arg| *arg != "--")
        .filter_map(|arg| arg.to_str())
        .find_map(|arg| {
            let (flag, _) = arg.split_once('=').unwrap_or((arg, ""));
            let letters = flag
                .strip_prefix('-')
                .filter(|l| l.len() >= 2 && !l.starts_with('-'))?;
            LEGACY_FLAGS.iter().find_map(|(short, long)| {
                (*short != flag && sorted(&short[1..]) == sorted(letters)).then(|| {
                    format!("unexpected argument '{flag}' found\n\n  tip: did you mean '{short}' ({long})?")
                })
            })
        })
}

fn rewrite_legacy_flags(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    args.into_iter()
        .map(|arg| {
            let text = arg.to_string_lossy();
            for (short, long) in LEGACY_FLAGS {
                if text == short {
                    return OsString::from(long);
                }
                if let Some(value) = text.strip_prefix(short).and_then(|rest| rest.strip_prefix('=')) {
                    return OsString::from(format!("{long}={value}"));
                }
            }
            arg
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::parse_args(args).unwrap()
    }

    #[test]
    fn a_legacy_flag_with_its_letters_mixed_up_is_named_with_the_one_meant() {
        let error =
            Cli::parse_args(["widget-host", "produce", "-mrw", "5", "--requests-dir", "r"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        let text = error.to_string();
        assert!(
            text.contains("did you mean '-mwr' (--max-widget-requests)?"),
            "{text}"
        );
        let error = Cli::parse_args(["widget-host", "-br", "b", "--widgets-dir", "w"]).unwrap_err();
        assert!(error.to_string().contains("'-rb' (--request-bucket)"), "{error}");
        // After `--`, and the flags themselves, are left alone.
        assert!(misspelled_legacy_flag(&["widget-host".into(), "--".into(), "-mrw".into()]).is_none());
        assert!(misspelled_legacy_flag(&["widget-host".into(), "-mwr".into(), "5".into()]).is_none());
    }

    #[test]
    fn help_on_help_is_the_help() {
        let error = Cli::parse_args(["widget-host", "help", "--help"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::DisplayHelp);
        assert_eq!(error.exit_code(), 0);
    }

    #[test]
    fn global_flags_go_before_or_after_the_command_and_runs_flags_only_with_run() {
        let cli = parse(&[
            "widget-host",
            "-v",
            "--log-format",
            "json",
            "run",
            "--requests-dir",
            "r",
        ]);
        assert_eq!(cli.verbose, 1);
        assert_eq!(cli.log_format, crate::logging::LogFormat::Json);
        let cli = parse(&["widget-host", "run", "-qq", "--requests-dir", "r"]);
        assert_eq!(cli.quiet, 2);
        let error = Cli::parse_args([
            "widget-host",
            "--requests-dir",
            "r",
            "produce",
            "--requests-dir",
            "x",
        ])
        .unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(
            error.to_string().contains("--requests-dir is a flag of `run`"),
            "{error}"
        );
        assert!(
            Cli::parse_args(["widget-host", "-q", "-v", "run"]).is_err(),
            "-q and -v conflict"
        );
        // Commands that had their own -v take the global one.
        for args in [
            ["widget-host", "check", "-v", "builtin"],
            ["widget-host", "-v", "check", "builtin"],
        ] {
            let Command::Check(check) = Cli::parse_args(args).unwrap().take_command() else {
                panic!()
            };
            assert!(check.verbose, "{args:?}");
        }
    }

    #[test]
    fn the_original_tools_flags_are_accepted() {
        let Command::Run(run) =
            parse(&["widget-host", "run", "-mrt", "500", "--requests-dir", "r"]).take_command()
        else {
            panic!()
        };
        assert_eq!(
            run.max_runtime.max_runtime(),
            Some(std::time::Duration::from_millis(500))
        );
        let cli = parse(&["widget-host", "produce", "--requests-dir", "r", "-mwr=7"]);
        assert!(format!("{:?}", cli.command).contains("max_widget_requests: 7"));
    }

    #[test]
    fn the_original_consumer_command_line_works_as_written() {
        let mut cli = parse(&[
            "widget-host",
            "--requests_bucket",
            "requests",
            "--destination_flag",
            "dwt",
            "--destination_name",
            "widgets",
        ]);
        assert!(cli.command.is_none());
        assert_eq!(cli.run.requests.place.request_bucket.as_deref(), Some("requests"));
        assert!(matches!(cli.take_command(), Command::Run(_)));
        let cli = parse(&[
            "widget-host",
            "-rb",
            "r",
            "-wb",
            "w",
            "-p",
            "prof",
            "-r",
            "eu-west-1",
        ]);
        assert_eq!(cli.run.aws.profile.as_deref(), Some("prof"));
        assert_eq!(cli.run.aws.region.as_deref(), Some("eu-west-1"));
        assert_eq!(cli.run.requests.place.request_bucket.as_deref(), Some("r"));
    }

    #[test]
    fn no_subcommand_means_run() {
        let cli = parse(&[
            "widget-host",
            "--requests-dir",
            "r",
            "--widgets-dir",
            "w",
            "--until-empty",
        ]);
        assert!(cli.command.is_none());
        assert!(cli.run.until_empty);
    }

    #[test]
    fn every_command_has_an_example_in_its_help() {
        let mut cli = <Cli as clap::CommandFactory>::command();
        assert!(cli.render_long_help().to_string().contains("Examples:"));
        cli.build();
        for sub in cli.get_subcommands_mut().filter(|sub| sub.get_name() != "help") {
            let help = sub.render_long_help().to_string();
            assert!(
                help.contains("Examples:\n  widget-host "),
                "{}: {help}",
                sub.get_name()
            );
        }
    }
}
