//! `diff`: run two handlers on the same requests against the current store,
//! read only, and say where their verdicts or plans differ: the step before
//! swapping a handler into a running host (`--watch`, SIGHUP).
//!
//! Each request is judged against the store as it is now, on its own: what
//! the requests before it would have changed is not applied (nothing is
//! written, and nothing is removed from the source).

use super::flags::{AwsArgs, DestinationArgs, LimitArgs, RequestPlaceArgs, RequestSizeArgs};
use crate::aws::Clients;
use crate::contract::{Context, Operation, Plan};
use crate::handler::{self, CallError, Handler};
use crate::jsondiff::{self, Sides};
use crate::source::{Fetched, Place, Use};
use anyhow::Context as _;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

pub(crate) const EXAMPLES: &str = "\
Examples:
  widget-host diff builtin my-handler.wasm requests/ --widgets-dir widgets/
  widget-host diff old.wasm new.wasm -rb requests -dwt widgets";

/// `diff`'s flags.
#[derive(Debug, Clone, Args)]
pub struct DiffArgs {
    /// The handler in use: a component file, or `builtin`.
    #[arg(value_name = "OLD.wasm|builtin")]
    old: handler::Choice,

    /// The handler that would replace it.
    #[arg(value_name = "NEW.wasm|builtin")]
    new: handler::Choice,

    /// A folder of requests, read and left in place (or give
    /// --request-bucket).
    #[arg(value_name = "REQUESTS_DIR")]
    folder: Option<PathBuf>,

    #[command(flatten)]
    requests: RequestPlaceArgs,

    #[command(flatten)]
    request_size: RequestSizeArgs,

    #[command(flatten)]
    destination: DestinationArgs,

    #[command(flatten)]
    aws: AwsArgs,

    #[command(flatten)]
    limits: LimitArgs,

    /// Also name the requests both handlers treat alike.
    #[arg(long, short)]
    verbose: bool,
}

/// What a handler made of a request.
enum Verdict {
    Accepted(Plan),
    /// Rejected, or the handler failed on it (either way a dead letter).
    Refused(String),
}

/// How the two handlers compare on one request.
enum Comparison {
    Same,
    NewlyRejected(String),
    NewlyAccepted(Plan),
    /// Both accepted, with different plans: the differences, a line each.
    PlansDiffer(Vec<String>),
}

/// The counts of the summary.
#[derive(Default)]
struct Tally {
    requests: u64,
    same: u64,
    newly_rejected: u64,
    newly_accepted: u64,
    plans_differ: u64,
}

impl Tally {
    fn differ(&self) -> u64 {
        self.newly_rejected + self.newly_accepted + self.plans_differ
    }
}

/// How the two plans' documents are compared.
const OLD_NEW: Sides = Sides {
    left: "old",
    right: "new",
    only_left: "only in old",
    only_right: "only in new",
};

pub(super) async fn execute(args: &DiffArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    // The flags, checked before anything is opened.
    let place = args
        .requests
        .place_or("requests", args.folder.clone().map(Place::Dir))?;
    place.check(Use::Read)?;
    let sink_spec = args.destination.sink()?;
    let (old, new) = (
        args.limits.spec(args.old.clone())?,
        args.limits.spec(args.new.clone())?,
    );
    let max_request_bytes = args.request_size.max_request_bytes;

    let old = Handler::load(&old).context("cannot load the old handler")?;
    let new = Handler::load(&new).context("cannot load the new handler")?;
    let clients = Clients::new(args.aws.settings());
    let source = place.open_to_read(&clients).await?;
    let sink = sink_spec.open_to_read(&clients).await?;

    let mut tally = Tally::default();
    loop {
        let page = source.list().await?;
        for listed in &page.requests {
            let body = match source.read(&listed.key, max_request_bytes).await? {
                Fetched::Request(body, _) => body,
                Fetched::Gone => continue,
                Fetched::TooLarge(size, _) => {
                    writeln!(out, "{}: {size} bytes, too large to compare; skipped", listed.key)?;
                    continue;
                }
            };
            tally.requests += 1;
            let context = Context {
                key: listed.key.clone(),
                destination: sink.destination(),
            };
            let before = verdict(old.handle(&body, &context, sink.clone()).await)?;
            let after = verdict(new.handle(&body, &context, sink.clone()).await)?;
            report(&listed.key, compare(before, after), args.verbose, &mut tally, out)?;
        }
        if page.reached_end {
            break;
        }
    }
    writeln!(
        out,
        "{} requests: {} same, {} differ ({} newly rejected, {} newly accepted, {} with other plans)",
        tally.requests,
        tally.same,
        tally.differ(),
        tally.newly_rejected,
        tally.newly_accepted,
        tally.plans_differ
    )?;
    match tally.differ() {
        0 => Ok(()),
        n => anyhow::bail!("the handlers differ on {n} of {} requests", tally.requests),
    }
}

/// A handler's answer as a verdict; a store that cannot be read stops the
/// comparison.
fn verdict(handled: Result<handler::Handled, CallError>) -> anyhow::Result<Verdict> {
    Ok(match handled {
        Ok(handled) => match handled.verdict {
            Ok(plan) => Verdict::Accepted(plan),
            Err(reason) => Verdict::Refused(format!("rejected: {reason}")),
        },
        Err(CallError::Handler(reason)) => Verdict::Refused(format!("handler failed: {reason}")),
        Err(CallError::Store(e)) => return Err(e.into()),
    })
}

fn compare(before: Verdict, after: Verdict) -> Comparison {
    match (before, after) {
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

fn report(
    key: &str,
    comparison: Comparison,
    verbose: bool,
    tally: &mut Tally,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let key = crate::logging::escape(key);
    match comparison {
        Comparison::Same => {
            tally.same += 1;
            if verbose {
                writeln!(out, "{key}: same")?;
            }
        }
        Comparison::NewlyRejected(reason) => {
            tally.newly_rejected += 1;
            writeln!(out, "{key}: newly rejected: {}", crate::logging::escape(&reason))?;
        }
        Comparison::NewlyAccepted(plan) => {
            tally.newly_accepted += 1;
            writeln!(
                out,
                "{key}: newly accepted: {} ({} operations)",
                plan.kind,
                plan.operations.len()
            )?;
        }
        Comparison::PlansDiffer(lines) => {
            tally.plans_differ += 1;
            writeln!(out, "{key}: plans differ")?;
            for line in lines {
                writeln!(out, "  {}", crate::logging::escape(&line))?;
            }
        }
    }
    Ok(())
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
