//! Log set-up: lines on stderr and, with `--log-file`, the same lines in a
//! file, as text for people or JSON for log shippers (`--log-format`).
//! `-q`/`-v` move the command's default level; `RUST_LOG` overrides it (a
//! filter that does not parse is an error, not ignored). Colours follow
//! `--color` and `NO_COLOR`. Stderr is written through the progress
//! display, which lifts its bar out of the way of each line.
//!
//! Every value in a text line is escaped of control characters (a newline
//! is written `\n`): log lines carry what requests and handlers say, and
//! neither may forge a line or send a terminal escape.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::Path;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::field::MakeExt as _;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::format::{Writer, debug_fn};
use tracing_subscriber::fmt::{FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::traces::SPANS;

/// The target of each request's line (`Request done.`): at debug, so that
/// stderr at info says what an operator acts on; the log file keeps them.
pub(crate) const REQUESTS: &str = "widget_host::requests";

/// The target of the line saying a slow compile is under way: shown on
/// stderr at info whatever the command's level (`check` shows only
/// errors), unless `RUST_LOG` says otherwise.
pub(crate) const COMPILING: &str = "widget_host::compiling";

/// The target of the fatal error's log line: it goes to the log file only,
/// since the binary prints it on stderr itself.
const FATAL: &str = "widget_host::fatal";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// For people: time, level, message, then `name=value` fields.
    #[default]
    Text,
    /// For log shippers: one JSON object per line, with the same fields
    /// (`timestamp`, `level`, `target`, `message`, then the event's own).
    Json,
}

/// Whether log lines on stderr are coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Color {
    /// On a terminal, unless `NO_COLOR` is set to something.
    #[default]
    Auto,
    /// Always, even into a pipe or a file.
    Always,
    /// Never.
    Never,
}

impl Color {
    /// Whether to colour, on a terminal or not (`terminal`), with
    /// `no_color` the value of `NO_COLOR` (https://no-color.org).
    fn wanted(self, terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => terminal && no_color.is_none_or(|value| value.is_empty()),
        }
    }
}

/// The levels, quietest first: `-q` and `-v` move along them.
const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// `level` moved by `-v` (up) and `-q` (down) steps, within [`LEVELS`].
pub fn moved(level: &str, verbose: u8, quiet: u8) -> &'static str {
    let at = LEVELS.iter().position(|l| *l == level).unwrap_or(2) as i32;
    let moved = (at + i32::from(verbose) - i32::from(quiet)).clamp(0, LEVELS.len() as i32 - 1);
    LEVELS[moved as usize]
}

/// The filter for `level`: more than info (-v, -vv) is the host's own
/// lines; its libraries' (wasmtime's, the AWS SDK's) stay at info, or
/// `-v` would bury each request's line under theirs. `RUST_LOG` reaches them.
fn own_lines(level: &str) -> String {
    match level {
        "debug" | "trace" => format!("info,widget_host={level}"),
        _ => level.to_owned(),
    }
}

/// The filter `RUST_LOG` sets, if it is set to something; an error if it
/// does not parse (a typo must not silently give the default).
fn env_filter() -> anyhow::Result<Option<String>> {
    match std::env::var("RUST_LOG") {
        Ok(text) if !text.trim().is_empty() => match EnvFilter::try_new(&text) {
            Ok(_) => Ok(Some(text)),
            Err(e) => Err(crate::error::UsageError(format!(
                "RUST_LOG={text:?} is not a log filter ({e}); write a level (`debug`) or `target=level` pairs (`widget_host=debug,warn`)"
            ))
            .into()),
        },
        _ => Ok(None),
    }
}

/// One destination of the log, filtered.
type BoxedLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// A layer writing `format` to `writer`; colours only where asked. A line
/// written while a request is processed with traces on carries its trace
/// id (see [`WithTraceId`]).
fn layer<W>(format: LogFormat, ansi: bool, writer: W) -> BoxedLayer
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::fmt::format::{Format, JsonFields};
    match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .fmt_fields(escaped_fields())
            .event_format(WithTraceId(Format::default().with_ansi(ansi), format))
            .with_writer(writer)
            .boxed(),
        // JSON escapes control characters itself.
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(WithTraceId(
                Format::default()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false),
                format,
            ))
            .with_writer(writer)
            .boxed(),
    }
}

/// A line format, with the trace id of the request being processed added
/// at the end (`trace_id=...`, or a `trace_id` key), so that a line leads
/// to its trace.
struct WithTraceId<F>(F, LogFormat);

impl<S, N, F> FormatEvent<S, N> for WithTraceId<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some(trace) = crate::traces::current_trace_id() else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let line = line.trim_end_matches('\n');
        match (self.1, line.strip_suffix('}')) {
            (LogFormat::Json, Some(object)) => writeln!(writer, "{object},\"trace_id\":\"{trace}\"}}"),
            _ => writeln!(writer, "{line} trace_id={trace}"),
        }
    }
}

/// Installs the global subscriber. `stderr_level` is the default for the
/// terminal; the file gets `info` and above, or more where that is more.
pub fn init(
    stderr_level: &str,
    log_file: Option<&Path>,
    format: LogFormat,
    color: Color,
    spans: Option<crate::traces::SpanLayer>,
) -> anyhow::Result<()> {
    let from_env = env_filter()?;
    // The command's directives, unless RUST_LOG gives its own.
    let filter = |directives: &str| EnvFilter::new(from_env.as_deref().unwrap_or(directives));
    let file_level = match LEVELS.iter().position(|l| *l == stderr_level) {
        Some(at) if at > 2 => stderr_level,
        _ => "info",
    };
    let ansi = color.wanted(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR"));
    // Through the progress display, which lifts its bar out of the way.
    let stderr = layer(format, ansi, crate::progress::terminal_writer())
        .with_filter(filter(&format!("{},{COMPILING}=info", own_lines(stderr_level))))
        .with_filter(filter_fn(|meta| meta.target() != FATAL && meta.target() != SPANS))
        .boxed();
    let file = match log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("cannot open log file {}: {e}", path.display()))?;
            Some(
                layer(format, false, std::sync::Mutex::new(file))
                    .with_filter(filter(&format!("{},{REQUESTS}=debug", own_lines(file_level))))
                    .with_filter(filter_fn(|meta| meta.target() != SPANS))
                    .boxed(),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(
            vec![Some(stderr), file, spans]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>(),
        )
        .try_init()?;
    Ok(())
}

/// Records the error that ends the process in the log file, if there is one.
pub fn fatal(error: &anyhow::Error) {
    tracing::error!(target: FATAL, "{error:#}");
}

/// The time now as the log lines give it (RFC 3339, UTC).
fn now() -> String {
    use tracing_subscriber::fmt::time::FormatTime as _;
    let mut text = String::new();
    let _ = tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut text));
    text
}

/// The fatal error as stderr shows it: `error: ...` for people, or, under
/// `--log-format json`, one object as the log lines are.
pub fn fatal_line(error: &anyhow::Error, format: LogFormat) -> String {
    match format {
        LogFormat::Text => format!("error: {error:#}"),
        LogFormat::Json => serde_json::json!({
            "timestamp": now(),
            "level": "ERROR",
            "target": FATAL,
            "message": format!("{error:#}"),
            "fatal": true,
        })
        .to_string(),
    }
}

/// `text` with its control characters (and the Unicode controls that
/// reorder text on screen) escaped as Rust writes them: `\n`, `\u{1b}`.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    Escaping(&mut escaped)
        .write_str(text)
        .expect("a String takes any text");
    Cow::Owned(escaped)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A writer that escapes what passes through it.
struct Escaping<'a, W: ?Sized>(&'a mut W);

impl<W: std::fmt::Write + ?Sized> std::fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        for c in text.chars() {
            if needs_escape(c) {
                write!(self.0, "{}", c.escape_default())?;
            } else {
                self.0.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// Formats an event's fields as `tracing_subscriber` does (`message`
/// first and bare, then `name=value`), with every value escaped.
fn escaped_fields() -> impl for<'w> FormatFields<'w> + 'static {
    debug_fn(
        |writer: &mut Writer<'_>, field: &tracing::field::Field, value: &dyn std::fmt::Debug| {
            if field.name() != "message" {
                write!(writer, "{}=", field.name())?;
            }
            write!(Escaping(writer), "{value:?}")
        },
    )
    .delimited(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_and_verbose_move_the_level_and_stop_at_the_ends() {
        assert_eq!(moved("info", 0, 0), "info");
        assert_eq!(moved("info", 0, 1), "warn");
        assert_eq!(moved("info", 0, 5), "error");
        assert_eq!(moved("info", 1, 0), "debug");
        assert_eq!(moved("error", 2, 0), "info");
        assert_eq!(moved("info", 9, 0), "trace");
    }

    #[test]
    fn verbose_shows_the_hosts_own_lines_and_not_its_libraries() {
        assert_eq!(own_lines("debug"), "info,widget_host=debug");
        assert_eq!(own_lines("trace"), "info,widget_host=trace");
        assert_eq!(own_lines("warn"), "warn");
    }

    #[test]
    fn no_color_set_to_anything_turns_colours_off_unless_they_are_asked_for() {
        let set = || Some(std::ffi::OsString::from("1"));
        assert!(Color::Auto.wanted(true, None));
        assert!(!Color::Auto.wanted(true, set()));
        assert!(Color::Auto.wanted(true, Some("".into())), "empty is unset");
        assert!(!Color::Auto.wanted(false, None));
        assert!(Color::Always.wanted(false, set()));
        assert!(!Color::Never.wanted(true, None));
    }

    #[test]
    fn a_fatal_error_under_json_is_one_object() {
        let error = anyhow::anyhow!("cannot open x").context("cannot start");
        let line = fatal_line(&error, LogFormat::Json);
        let object: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(object["level"], "ERROR");
        assert_eq!(object["message"], "cannot start: cannot open x");
        assert_eq!(
            fatal_line(&error, LogFormat::Text),
            "error: cannot start: cannot open x"
        );
    }

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(escape("plain é"), "plain é");
        assert_eq!(escape("a\nb\rc\x1b[31m\u{202E}"), "a\\nb\\rc\\u{1b}[31m\\u{202e}");
    }

    #[test]
    fn log_lines_cannot_be_forged() {
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .fmt_fields(escaped_fields())
            .with_writer(move || Capture(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let key = "k\n2026-01-01T00:00:00Z  INFO forged";
            tracing::info!(request_key = %key, "handler: {}", "a\nb");
        });
        let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("handler: a\\nb request_key=k\\n2026"), "{text}");
    }

    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
