//! Progress of a long command (`produce`, `run --until-empty`): on a
//! terminal, a bar with the rate and the time left (indicatif); elsewhere,
//! a log line every few seconds, which a file or a log shipper can keep.
//!
//! The command only counts; a task reads the counts and draws. Log lines
//! written while a bar is shown go through [`terminal_writer`], which lifts
//! the bar out of the way, so lines and bar never mix.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Every bar of the process, drawn on stderr.
static TERMINAL: LazyLock<MultiProgress> =
    LazyLock::new(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));

/// How often the bar is brought up to date.
const BAR_TICK: Duration = Duration::from_millis(100);

/// How often a line is logged when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(3);

/// What a command has done so far, and how much it knows of in all.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counts(Arc<(AtomicU64, AtomicU64)>);

impl Counts {
    /// One more done.
    pub(crate) fn add_done(&self, n: u64) {
        self.0.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Everything known of is at least `total` (it only grows).
    pub(crate) fn known_at_least(&self, total: u64) {
        self.0.1.fetch_max(total, Ordering::Relaxed);
    }

    fn read(&self) -> (u64, u64) {
        let done = self.0.0.load(Ordering::Relaxed);
        (done, self.0.1.load(Ordering::Relaxed).max(done))
    }
}

/// Shows `counts` as progress of `what` ("requests written") until the
/// returned guard is dropped.
pub(crate) fn show(what: &'static str, counts: Counts) -> Shown {
    let stop = CancellationToken::new();
    let task = if std::io::stderr().is_terminal() {
        tokio::spawn(bar(what, counts, stop.clone()))
    } else {
        tokio::spawn(lines(what, counts, stop.clone()))
    };
    Shown {
        stop,
        task: Some(task),
    }
}

/// Ends the progress display when dropped (the bar is cleared).
pub(crate) struct Shown {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Shown {
    /// Ends the display and waits until the bar is gone from the screen.
    pub(crate) async fn finish(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Shown {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn bar(what: &'static str, counts: Counts, stop: CancellationToken) {
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] [{bar:30}] {pos}/{len} {msg} ({per_sec}, {eta} left)",
    )
    .expect("a valid template")
    .progress_chars("=> ");
    let bar = TERMINAL.add(ProgressBar::new(0).with_style(style).with_message(what));
    loop {
        let (done, known) = counts.read();
        bar.set_length(known);
        bar.set_position(done);
        tokio::select! {
            _ = tokio::time::sleep(BAR_TICK) => {}
            _ = stop.cancelled() => break,
        }
    }
    bar.finish_and_clear();
    TERMINAL.remove(&bar);
}

async fn lines(what: &'static str, counts: Counts, stop: CancellationToken) {
    let started = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(LINE_EVERY) => {}
            _ = stop.cancelled() => return,
        }
        let (done, known) = counts.read();
        let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
        tracing::info!(
            done,
            known,
            per_second = format!("{rate:.1}"),
            "Progress: {done} of {known} {what}."
        );
    }
}

/// A writer for log lines on stderr that first lifts any progress bar out
/// of the way, writes the line, then draws the bar again below it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TerminalWriter;

/// The writer the log's stderr layer uses.
pub(crate) fn terminal_writer() -> TerminalWriter {
    TerminalWriter
}

impl Write for TerminalWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        TERMINAL.suspend(|| std::io::stderr().write_all(bytes))?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for TerminalWriter {
    type Writer = TerminalWriter;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_known_never_falls_below_what_is_done() {
        let counts = Counts::default();
        counts.known_at_least(10);
        counts.known_at_least(4);
        counts.add_done(3);
        assert_eq!(counts.read(), (3, 10));
        counts.add_done(9);
        assert_eq!(counts.read(), (12, 12));
    }
}
