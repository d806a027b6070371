//! What a call gives back, within bounds: its log lines within a byte
//! budget, and its plan within a number of operations and bytes. A handler
//! that logs in a loop or plans a million writes costs its own request,
//! never the host's log, memory or store.

use crate::contract::{Operation, Plan};

/// What one log line costs besides its message: the time, level and
/// request key the host writes around it. Counting it stops a flood of
/// empty messages too.
const LINE_COST: usize = 100;

/// Lines of a call's log kept for its caller (`invoke` prints them).
const MAX_KEPT_LINES: usize = 100;

/// What a handler logged: (level, message).
pub(crate) type Logs = Vec<(&'static str, String)>;

/// A call's log: what it may still write, and what was kept and dropped.
#[derive(Debug)]
pub(super) struct LogBudget {
    left: usize,
    limit: usize,
    pub(super) kept: Logs,
    pub(super) dropped_lines: u64,
    pub(super) dropped_bytes: u64,
}

impl LogBudget {
    pub(super) fn new(limit: usize) -> LogBudget {
        LogBudget {
            left: limit,
            limit,
            kept: Vec::new(),
            dropped_lines: 0,
            dropped_bytes: 0,
        }
    }

    /// The part of `message` that may be logged: all of it, its head (cut
    /// at a character boundary and marked), or nothing once the budget is
    /// spent.
    pub(super) fn admit(&mut self, level: &'static str, message: String) -> Option<String> {
        let cost = message.len() + LINE_COST;
        if self.left < LINE_COST {
            self.dropped_lines += 1;
            self.dropped_bytes += message.len() as u64;
            return None;
        }
        let admitted = if cost <= self.left {
            self.left -= cost;
            message
        } else {
            let cut = message.floor_char_boundary(self.left - LINE_COST);
            self.dropped_bytes += (message.len() - cut) as u64;
            self.left = 0;
            format!(
                "{}... [cut: log limit of {} bytes per call]",
                &message[..cut],
                self.limit
            )
        };
        if self.kept.len() < MAX_KEPT_LINES {
            self.kept.push((level, admitted.clone()));
        }
        Some(admitted)
    }
}

/// How large a plan may be.
#[derive(Debug, Clone, Copy)]
pub(super) struct PlanLimits {
    pub(super) operations: usize,
    pub(super) bytes: usize,
}

/// The longest `kind` a plan may name.
pub(crate) const MAX_KIND_BYTES: usize = 64;

/// What a plan's `kind` is counted and logged as: itself when it is a
/// short printable name (1 to [`MAX_KIND_BYTES`] bytes of ASCII letters,
/// digits and punctuation), `other` when it is not. It reaches every log
/// line, the summary and a metrics label: a handler naming megabytes, or
/// control characters, must not reach them.
pub(super) fn bounded_kind(kind: String) -> String {
    let fits = !kind.is_empty() && kind.len() <= MAX_KIND_BYTES && kind.bytes().all(|b| b.is_ascii_graphic());
    match fits {
        true => kind,
        false => "other".to_owned(),
    }
}

/// The longest ordering key kept as the handler gave it.
pub(crate) const MAX_KEY_BYTES: usize = 256;

/// An ordering key as the host keeps and logs it: as given up to
/// [`MAX_KEY_BYTES`], else its first 200 bytes and a hash of the whole, so
/// that different long keys stay different keys (and equal ones equal).
pub(super) fn bounded_key(key: String) -> String {
    if key.len() <= MAX_KEY_BYTES {
        return key;
    }
    let cut = key.floor_char_boundary(200);
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{}...#{hash:016x}", &key[..cut])
}

/// The longest rejection reason kept (it is logged, and stored beside the
/// dead letter).
pub(crate) const MAX_REASON_BYTES: usize = 4096;

/// A rejection reason as the host keeps it: cut past [`MAX_REASON_BYTES`],
/// saying how much was cut.
pub(super) fn bounded_reason(reason: String) -> String {
    if reason.len() <= MAX_REASON_BYTES {
        return reason;
    }
    let cut = reason.floor_char_boundary(MAX_REASON_BYTES);
    format!("{}... ({} more bytes)", &reason[..cut], reason.len() - cut)
}

/// Refuses a plan over its limits, with a reason naming the limit.
pub(super) fn check_plan(plan: &Plan, limits: PlanLimits) -> Result<(), String> {
    if plan.operations.len() > limits.operations {
        return Err(format!(
            "plan limit exceeded: {} operations, over the limit of {} (--max-plan-operations)",
            plan.operations.len(),
            limits.operations
        ));
    }
    let bytes: usize = plan.kind.len()
        + plan
            .operations
            .iter()
            .map(|op| match op {
                Operation::Put { key, document } => key.len() + document.len(),
                Operation::Delete(key) => key.len(),
            })
            .sum::<usize>();
    if bytes > limits.bytes {
        return Err(format!(
            "plan limit exceeded: {bytes} bytes, over the limit of {} (--max-plan-bytes)",
            limits.bytes
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_ordering_keys_and_reasons_are_cut_and_keys_stay_apart() {
        assert_eq!(bounded_key("w1".into()), "w1");
        let (a, b) = (
            format!("{}a", "k".repeat(3 << 20)),
            format!("{}b", "k".repeat(3 << 20)),
        );
        let (a, b) = (bounded_key(a.clone()), bounded_key(b));
        assert!(
            a.len() <= MAX_KEY_BYTES && b.len() <= MAX_KEY_BYTES,
            "{}",
            a.len()
        );
        assert_ne!(a, b, "different keys stay different");
        assert_eq!(
            a,
            bounded_key(format!("{}a", "k".repeat(3 << 20))),
            "the same key, the same bound"
        );
        assert_eq!(bounded_reason("too short".into()), "too short");
        let long = bounded_reason("é".repeat(1 << 20));
        assert!(
            long.len() < MAX_REASON_BYTES + 40 && long.ends_with("more bytes)"),
            "{}",
            long.len()
        );
    }

    #[test]
    fn a_kind_that_is_long_or_odd_is_counted_as_other() {
        assert_eq!(bounded_kind("create".into()), "create");
        assert_eq!(bounded_kind("a.b-c_d:e/f".into()), "a.b-c_d:e/f");
        assert_eq!(
            bounded_kind("k".repeat(MAX_KIND_BYTES)),
            "k".repeat(MAX_KIND_BYTES)
        );
        for odd in [
            "k".repeat(MAX_KIND_BYTES + 1),
            "x".repeat(3 << 20),
            String::new(),
            "two words".into(),
            "bell\u{7}".into(),
            "café".into(),
        ] {
            assert_eq!(bounded_kind(odd.clone()), "other", "{odd:.20}");
        }
    }

    #[test]
    fn a_log_past_its_budget_is_cut_then_dropped_and_counted() {
        let mut budget = LogBudget::new(1000);
        assert_eq!(budget.admit("info", "short".into()).as_deref(), Some("short"));
        let long = "é".repeat(1000);
        let cut = budget.admit("info", long).unwrap();
        assert!(cut.ends_with("[cut: log limit of 1000 bytes per call]"), "{cut}");
        assert!(cut.len() < 1000);
        assert_eq!(budget.admit("warn", "more".into()), None);
        assert_eq!(budget.admit("warn", String::new()), None);
        assert_eq!(budget.dropped_lines, 2);
        assert!(budget.dropped_bytes > 1000);
        assert_eq!(budget.kept.len(), 2);
    }

    #[test]
    fn empty_lines_cost_too() {
        let mut budget = LogBudget::new(1000);
        let admitted = (0..100)
            .filter(|_| budget.admit("info", String::new()).is_some())
            .count();
        assert_eq!(admitted, 10);
    }

    fn plan(operations: usize, document: usize) -> Plan {
        Plan {
            kind: "k".into(),
            operations: (0..operations)
                .map(|i| Operation::Put {
                    key: i.to_string(),
                    document: "x".repeat(document),
                })
                .collect(),
        }
    }

    #[test]
    fn plans_over_their_limits_are_refused_naming_the_limit() {
        let limits = PlanLimits {
            operations: 10,
            bytes: 1000,
        };
        assert!(check_plan(&plan(10, 10), limits).is_ok());
        let many = check_plan(&plan(11, 1), limits).unwrap_err();
        assert!(
            many.contains("11 operations") && many.contains("--max-plan-operations"),
            "{many}"
        );
        let big = check_plan(&plan(1, 1000), limits).unwrap_err();
        assert!(big.contains("--max-plan-bytes"), "{big}");
    }
}
