//! Counters for the end-of-run summary.

use crate::retry::RetryCount;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What happened to the requests of one run.
#[derive(Debug)]
pub(crate) struct Metrics {
    started: Instant,
    counts: Mutex<Counts>,
    /// Every retry loop of the run adds to this.
    pub(crate) retries: RetryCount,
}

#[derive(Debug, Default, Clone)]
struct Counts {
    /// Applied requests by the kind the handler named.
    applied: BTreeMap<String, u64>,
    warnings: u64,
    dead_lettered: u64,
    operations: u64,
}

/// Outcome label of a request whose operations are stored, for logs.
pub(crate) const APPLIED: &str = "applied";
/// Outcome label of a request moved to the dead-letter place.
pub(crate) const DEAD_LETTERED: &str = "dead-lettered";

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started: Instant::now(),
            counts: Mutex::default(),
            retries: RetryCount::default(),
        }
    }
}

impl Metrics {
    /// Counts a request whose operations are stored.
    pub(crate) fn applied(&self, kind: &str, operations: usize, warnings: u32) {
        let mut c = self.counts.lock().unwrap();
        *c.applied.entry(kind.to_owned()).or_default() += 1;
        c.operations += operations as u64;
        c.warnings += u64::from(warnings);
    }

    /// Counts a request moved to the dead-letter place.
    pub(crate) fn dead_lettered(&self) {
        self.counts.lock().unwrap().dead_lettered += 1;
    }

    /// The counts so far, as the end-of-run report.
    pub(crate) fn summary(&self, dead_letter_place: String) -> Summary {
        let c = self.counts.lock().unwrap().clone();
        Summary {
            elapsed: self.started.elapsed(),
            applied: c.applied,
            warnings: c.warnings,
            dead_lettered: c.dead_lettered,
            retries: self.retries.get(),
            operations: c.operations,
            dead_letter_place,
            left_in_source: 0,
            api_calls: BTreeMap::new(),
        }
    }
}

/// The end-of-run report.
#[derive(Debug, Clone)]
pub struct Summary {
    /// How long the run took.
    pub elapsed: Duration,
    /// Applied requests by the kind the handler named.
    pub applied: BTreeMap<String, u64>,
    /// Warnings the handler logged.
    pub warnings: u64,
    /// Requests moved to the dead-letter place.
    pub dead_lettered: u64,
    /// Calls made again after a transient failure: listing, reading,
    /// handling, storing, removing.
    pub retries: u64,
    /// Store operations carried out.
    pub operations: u64,
    /// Where dead-lettered requests are.
    pub dead_letter_place: String,
    /// Requests that could be neither processed nor dead-lettered (each is
    /// logged with why); they stay in the source for the next run.
    pub left_in_source: u64,
    /// HTTP requests sent to AWS, by operation (`S3.GetObject`).
    pub api_calls: BTreeMap<String, u64>,
}

impl Summary {
    /// Requests taken out of the source: applied or dead-lettered.
    pub fn processed(&self) -> u64 {
        self.applied.values().sum::<u64>() + self.dead_lettered
    }

    /// Requests taken out of the source per second.
    pub fn requests_per_second(&self) -> f64 {
        self.processed() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Processed {} requests in {:.2} s ({:.1} requests/s)",
            self.processed(),
            self.elapsed.as_secs_f64(),
            self.requests_per_second()
        )?;
        let by_kind: Vec<String> = self.applied.iter().map(|(k, n)| format!("{k} {n}")).collect();
        writeln!(
            f,
            "  applied:       {} ({})",
            self.applied.values().sum::<u64>(),
            if by_kind.is_empty() {
                "none".into()
            } else {
                by_kind.join(", ")
            }
        )?;
        writeln!(f, "  store writes:  {}", self.operations)?;
        writeln!(f, "  warnings:      {}", self.warnings)?;
        write!(f, "  dead-lettered: {}", self.dead_lettered)?;
        if self.dead_lettered > 0 {
            write!(f, " (in {})", self.dead_letter_place)?;
        }
        writeln!(f)?;
        write!(f, "  retries:       {}", self.retries)?;
        if self.left_in_source > 0 {
            write!(f, "\n  left in source: {} (see the log)", self.left_in_source)?;
        }
        if !self.api_calls.is_empty() {
            let total: u64 = self.api_calls.values().sum();
            let calls: Vec<String> = self.api_calls.iter().map(|(op, n)| format!("{op} {n}")).collect();
            write!(f, "\n  AWS calls:     {total} ({})", calls.join(", "))?;
        }
        Ok(())
    }
}
