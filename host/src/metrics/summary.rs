//! The end-of-run report: what `run` prints, and what the library returns.

use super::Candidate;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The end-of-run report.
#[derive(Debug, Clone)]
pub struct Summary {
    /// How long the run took.
    pub elapsed: Duration,
    /// How long some request was in progress: a run that waits for work
    /// is not slower for it.
    pub busy: Duration,
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
    /// How many of those were the AWS SDK's own retries within one call.
    pub sdk_retries: u64,
    /// What the candidate handler made of the run, if there was one.
    pub candidate: Option<Candidate>,
    /// Swaps the rollback policy undid.
    pub rolled_back: u64,
    /// Every swap of the live handler, in order (`generation kind`).
    pub swaps: Vec<String>,
    /// Handler instances made for `ordering-key` and for `handle`, where a
    /// Wasm handler ran: what the run's requests cost in instances.
    pub instances: Option<(u64, u64)>,
}

impl Summary {
    /// Requests taken out of the source: applied or dead-lettered.
    pub fn processed(&self) -> u64 {
        super::processed(&self.applied, self.dead_lettered)
    }

    /// Requests taken out of the source per second of work (while some
    /// request was in progress).
    pub fn requests_per_second(&self) -> f64 {
        self.processed() as f64 / self.busy.as_secs_f64().max(1e-9)
    }
}

impl Summary {
    /// The same report as one JSON object, for tools (`--summary-format
    /// json`): the counts under the names the text gives them.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "processed": self.processed(),
            "elapsed_seconds": self.elapsed.as_secs_f64(),
            "busy_seconds": self.busy.as_secs_f64(),
            "requests_per_second": self.requests_per_second(),
            "applied": self.applied,
            "store_writes": self.operations,
            "warnings": self.warnings,
            "dead_lettered": self.dead_lettered,
            "dead_letter_place": self.dead_letter_place,
            "retries": self.retries,
            "left_in_source": self.left_in_source,
            "instances": self.instances.map(|(ordering_key, handle)| serde_json::json!({
                "ordering_key": ordering_key,
                "handle": handle,
            })),
            "aws_calls": self.api_calls,
            "aws_sdk_retries": self.sdk_retries,
            "candidate": self.candidate.as_ref().map(|c| serde_json::json!({
                "agreed": c.agreed,
                "differed": c.differed,
                "failed": c.failed,
                "skipped": c.skipped,
                "promoted": c.promoted,
            })),
            "rolled_back": self.rolled_back,
            "handler_swaps": self.swaps,
        })
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Processed {} requests in {:.2} s ({:.1} requests/s over {:.2} s with requests in progress)",
            self.processed(),
            self.elapsed.as_secs_f64(),
            self.requests_per_second(),
            self.busy.as_secs_f64()
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
        if let Some((ordering_key, handle)) = self.instances {
            // Per request taken from the source; dead letters refused
            // before their turn may cost none.
            let per_request = (ordering_key + handle) as f64 / self.processed().max(1) as f64;
            write!(
                f,
                "\n  instances:     {} ({per_request:.3} per request; {ordering_key} for ordering keys, {handle} for handling)",
                ordering_key + handle
            )?;
        }
        if self.left_in_source > 0 {
            write!(f, "\n  left in source: {} (see the log)", self.left_in_source)?;
        }
        if let Some(c) = &self.candidate {
            write!(
                f,
                "\n  candidate:     {} agreed, {} differed, {} failed, {} not compared{}",
                c.agreed,
                c.differed,
                c.failed,
                c.skipped,
                if c.promoted { "; promoted" } else { "" }
            )?;
        }
        if self.rolled_back > 0 {
            write!(
                f,
                "\n  rolled back:   {} (the dead letters of each are in the log)",
                self.rolled_back
            )?;
        }
        if !self.swaps.is_empty() {
            write!(f, "\n  handler swaps: {}", self.swaps.join("; "))?;
        }
        if !self.api_calls.is_empty() {
            let total: u64 = self.api_calls.values().sum();
            let calls: Vec<String> = self.api_calls.iter().map(|(op, n)| format!("{op} {n}")).collect();
            write!(f, "\n  AWS calls:     {total} ({})", calls.join(", "))?;
            if self.sdk_retries > 0 {
                write!(f, "; {} of them the AWS SDK's retries", self.sdk_retries)?;
            }
        }
        Ok(())
    }
}
