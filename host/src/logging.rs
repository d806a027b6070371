//! Log set-up: lines on stderr and, with `--log-file`, the same lines in a
//! file, as text for people or JSON for log shippers (`--log-format`).
//! `RUST_LOG` overrides the default level. Stderr is written through the
//! progress display, which lifts its bar out of the way of each line.
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
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{Writer, debug_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

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

/// One destination of the log, filtered.
type BoxedLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// A layer writing `format` to `writer`; colours only where asked.
fn layer<W>(format: LogFormat, ansi: bool, writer: W) -> BoxedLayer
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .fmt_fields(escaped_fields())
            .with_writer(writer)
            .boxed(),
        // JSON escapes control characters itself.
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(writer)
            .boxed(),
    }
}

/// Installs the global subscriber. `stderr_level` is the default for the
/// terminal; the file always gets `info` and above.
pub fn init(stderr_level: &str, log_file: Option<&Path>, format: LogFormat) -> anyhow::Result<()> {
    let filter = |level: &str| EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // Through the progress display, which lifts its bar out of the way.
    let stderr = layer(
        format,
        std::io::stderr().is_terminal(),
        crate::progress::terminal_writer(),
    )
    .with_filter(filter(stderr_level))
    .with_filter(filter_fn(|meta| meta.target() != FATAL))
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
                    .with_filter(filter("info"))
                    .boxed(),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(vec![Some(stderr), file].into_iter().flatten().collect::<Vec<_>>())
        .try_init()?;
    Ok(())
}

/// Records the error that ends the process in the log file, if there is one.
pub fn fatal(error: &anyhow::Error) {
    tracing::error!(target: FATAL, "{error:#}");
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
