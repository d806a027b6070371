//! What a handler made of a request, and how two handlers' answers to the
//! same request compare: `diff` prints it for the requests waiting now,
//! `run --candidate` counts it on live traffic (`pipeline/shadow.rs`).

use crate::contract::{Operation, Plan};
use crate::error::StorageError;
use crate::handler::{CallError, Handled};
use crate::jsondiff::{self, Sides};
use crate::logging::escape;
use serde::{Deserialize, Serialize};

/// What a handler made of a request.
#[derive(Debug, Clone)]
pub(crate) enum Verdict {
    Accepted(Plan),
    /// Rejected, or the handler failed on it (either way a dead letter).
    Refused(String),
}

impl Verdict {
    /// The verdict of a call; a store that could not be read gives none.
    pub(crate) fn of(handled: Result<Handled, CallError>) -> Result<Verdict, StorageError> {
        Ok(match handled {
            Ok(handled) => Verdict::answered(handled.verdict),
            Err(CallError::Handler(reason)) => Verdict::Refused(format!("handler failed: {reason}")),
            Err(CallError::Store(e)) => return Err(e),
        })
    }

    /// The verdict of a call that answered.
    pub(crate) fn answered(verdict: Result<Plan, String>) -> Verdict {
        match verdict {
            Ok(plan) => Verdict::Accepted(plan),
            Err(reason) => Verdict::Refused(format!("rejected: {reason}")),
        }
    }
}

/// How two handlers compare on one request.
#[derive(Debug)]
pub(crate) enum Comparison {
    Same,
    NewlyRejected(String),
    NewlyAccepted(Plan),
    /// Both accepted, with different plans: the differences, a line each.
    PlansDiffer(Vec<String>),
}

impl Comparison {
    /// The kind of difference, as `/metrics` labels it.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Comparison::Same => "same",
            Comparison::NewlyRejected(_) => "newly-rejected",
            Comparison::NewlyAccepted(_) => "newly-accepted",
            Comparison::PlansDiffer(_) => "plans-differ",
        }
    }
}

/// One difference between two handlers on one request, as `diff` prints it
/// and `run --candidate-records FILE` keeps it (a JSON line each), for
/// `diff --records FILE` to print later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) request_key: String,
    /// `newly-rejected`, `newly-accepted`, `plans-differ` or
    /// `candidate-failed`.
    pub(crate) difference: String,
    /// The new handler's reason (newly rejected, failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// The new handler's plan (newly accepted): its kind and size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) operations: Option<usize>,
    /// The plans' differences, a line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) lines: Vec<String>,
}

impl Record {
    /// The record of `comparison` on the request `key`; none if the two
    /// agree.
    pub(crate) fn of(key: &str, comparison: &Comparison) -> Option<Record> {
        let mut record = Record {
            request_key: key.to_owned(),
            difference: comparison.label().to_owned(),
            reason: None,
            kind: None,
            operations: None,
            lines: Vec::new(),
        };
        match comparison {
            Comparison::Same => return None,
            Comparison::NewlyRejected(reason) => record.reason = Some(reason.clone()),
            Comparison::NewlyAccepted(plan) => {
                record.kind = Some(plan.kind.clone());
                record.operations = Some(plan.operations.len());
            }
            Comparison::PlansDiffer(lines) => record.lines = lines.clone(),
        }
        Some(record)
    }

    /// The record of a new handler failing (trap, limit) on the request
    /// `key`, where the old one did not.
    pub(crate) fn failed(key: &str, reason: &str) -> Record {
        Record {
            request_key: key.to_owned(),
            difference: "candidate-failed".into(),
            reason: Some(reason.to_owned()),
            kind: None,
            operations: None,
            lines: Vec::new(),
        }
    }

    /// Prints it as `diff` does, every value escaped.
    pub(crate) fn print(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        let key = escape(&self.request_key);
        let reason = escape(self.reason.as_deref().unwrap_or_default());
        match self.difference.as_str() {
            "newly-rejected" => writeln!(out, "{key}: newly rejected: {reason}"),
            "newly-accepted" => writeln!(
                out,
                "{key}: newly accepted: {} ({} operations)",
                escape(self.kind.as_deref().unwrap_or_default()),
                self.operations.unwrap_or_default()
            ),
            "candidate-failed" => writeln!(out, "{key}: new handler failed: {reason}"),
            _ => {
                writeln!(out, "{key}: plans differ")?;
                for line in &self.lines {
                    writeln!(out, "  {}", escape(line))?;
                }
                Ok(())
            }
        }
    }
}

/// How the two plans' documents are compared.
const OLD_NEW: Sides = Sides {
    left: "old",
    right: "new",
    only_left: "only in old",
    only_right: "only in new",
};

/// How the `old` handler's verdict and the `new` one's compare: two
/// refusals are the same, whatever their reasons.
pub(crate) fn compare(old: Verdict, new: Verdict) -> Comparison {
    match (old, new) {
        (Verdict::Refused(_), Verdict::Refused(_)) => Comparison::Same,
        (Verdict::Accepted(_), Verdict::Refused(reason)) => Comparison::NewlyRejected(reason),
        (Verdict::Refused(_), Verdict::Accepted(plan)) => Comparison::NewlyAccepted(plan),
        (Verdict::Accepted(old), Verdict::Accepted(new)) => {
            let lines = plan_differences(&old, &new);
            if lines.is_empty() {
                Comparison::Same
            } else {
                Comparison::PlansDiffer(lines)
            }
        }
    }
}

/// Where two plans differ, operation by operation; a put to the same key
/// in both is compared field by field.
fn plan_differences(old: &Plan, new: &Plan) -> Vec<String> {
    let mut lines = Vec::new();
    if old.kind != new.kind {
        lines.push(format!("kind: old {:?}, new {:?}", old.kind, new.kind));
    }
    for i in 0..old.operations.len().max(new.operations.len()) {
        match (old.operations.get(i), new.operations.get(i)) {
            (
                Some(Operation::Put { key, document }),
                Some(Operation::Put {
                    key: new_key,
                    document: new_document,
                }),
            ) if key == new_key => {
                let mut fields = Vec::new();
                let (before, after) = (jsondiff::parse(document), jsondiff::parse(new_document));
                jsondiff::differences("", &before, &after, &OLD_NEW, &mut fields);
                lines.extend(fields.into_iter().map(|field| format!("put {key}: {field}")));
            }
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => lines.push(format!(
                "operation {}: old {}, new {}",
                i + 1,
                describe(a),
                describe(b)
            )),
            (Some(a), None) => lines.push(format!("operation {}: only in old: {}", i + 1, describe(a))),
            (None, Some(b)) => lines.push(format!("operation {}: only in new: {}", i + 1, describe(b))),
            (None, None) => {}
        }
    }
    lines
}

fn describe(operation: &Operation) -> String {
    match operation {
        Operation::Put { key, .. } => format!("put {key}"),
        Operation::Delete(key) => format!("delete {key}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(operations: Vec<Operation>) -> Plan {
        Plan {
            kind: "update".into(),
            operations,
        }
    }

    fn put(key: &str, document: &str) -> Operation {
        Operation::Put {
            key: key.into(),
            document: document.into(),
        }
    }

    #[test]
    fn plans_differ_field_by_field_and_operation_by_operation() {
        let old = plan(vec![
            put("w/1", r#"{"label":"Big","n":1}"#),
            Operation::Delete("w/2".into()),
        ]);
        let new = plan(vec![put("w/1", r#"{"label":"big","n":1}"#)]);
        assert_eq!(
            plan_differences(&old, &new),
            [
                r#"put w/1: .label: old "Big", new "big""#,
                "operation 2: only in old: delete w/2",
            ]
        );
        assert!(plan_differences(&old, &old).is_empty());
    }

    #[test]
    fn verdicts_compare_as_the_summary_counts_them() {
        let accepted = || Verdict::Accepted(plan(vec![put("k", "{}")]));
        let refused = || Verdict::Refused("rejected: no".into());
        assert!(matches!(compare(accepted(), accepted()), Comparison::Same));
        assert!(matches!(compare(refused(), refused()), Comparison::Same));
        assert!(matches!(
            compare(accepted(), refused()),
            Comparison::NewlyRejected(_)
        ));
        assert!(matches!(
            compare(refused(), accepted()),
            Comparison::NewlyAccepted(_)
        ));
    }
}
