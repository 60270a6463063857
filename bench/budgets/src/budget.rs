//! The budget file and the verdict: each operation's instruction budget, why it costs
//! that, and whether a measured count is within the tolerance over it.

use std::{collections::BTreeMap, fmt::Write as _};

/// How far over its budget a count may go before the check fails: callgrind counts
/// vary by well under 1 % across runs of one build (BENCHMARKS.md), so 5 % over is a
/// change in the code, not noise.
pub(crate) const TOLERANCE: f64 = 0.05;

/// One operation's budget.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub(crate) struct Budget {
    /// Instructions per operation, as last measured on purpose.
    pub(crate) instructions: u64,
    /// What the operation is and what its cost covers.
    pub(crate) about: String,
}

/// Every budget, by operation name.
pub(crate) type Budgets = BTreeMap<String, Budget>;

/// Parses a budget file.
pub(crate) fn parse(text: &str) -> Result<Budgets, String> {
    toml::from_str(text).map_err(|e| format!("budget file: {e}"))
}

/// The budget file for `entries` (name, instructions, about), in the given order.
pub(crate) fn render(entries: &[(&str, u64, &str)]) -> String {
    let mut out = String::from(
        "# Instruction-count budgets of the hot paths: instructions per operation, counted by\n\
         # callgrind (./scripts/budgets; README, Benchmarks). The check fails when a count is\n\
         # more than 5 % over its budget. A change that must cost more runs\n\
         # `./scripts/budgets --update` and commits this file with it, saying why.\n",
    );
    for (name, instructions, about) in entries {
        let about = about.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = write!(
            out,
            "\n[{name}]\n# {about}\ninstructions = {instructions}\nabout = \"{about}\"\n"
        );
    }
    out
}

/// A count against its budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Verdict {
    /// Measured instructions per operation.
    pub(crate) measured: u64,
    /// The budget.
    pub(crate) budget: u64,
}

impl Verdict {
    /// measured / budget.
    pub(crate) fn ratio(self) -> f64 {
        self.measured as f64 / self.budget.max(1) as f64
    }

    /// Over budget by more than [`TOLERANCE`].
    pub(crate) fn fails(self) -> bool {
        // Integer arithmetic, so the boundary is exact: measured > budget * 1.05.
        u128::from(self.measured) * 100 > u128::from(self.budget) * 105
    }
}

/// Per-operation instructions from the totals of a run with `ops` operations and one
/// with none; `None` when the difference is negative (a run that cannot be right).
pub(crate) fn per_operation(with_ops: u64, without: u64, ops: u64) -> Option<u64> {
    let difference = with_ops.checked_sub(without)?;
    Some((difference + ops / 2) / ops.max(1))
}

/// The table `./scripts/budgets` prints; `rows` are (name, verdict).
pub(crate) fn table(rows: &[(String, Verdict)]) -> String {
    let mut out = format!(
        "{:<16} {:>14} {:>14} {:>7}\n",
        "operation", "measured", "budget", "ratio"
    );
    for (name, verdict) in rows {
        let _ = writeln!(
            out,
            "{:<16} {:>14} {:>14} {:>7.3}{}",
            name,
            verdict.measured,
            verdict.budget,
            verdict.ratio(),
            if verdict.fails() { "  OVER BUDGET" } else { "" }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_percent_over_fails_four_percent_passes() {
        let budget = 1_000_000;
        assert!(
            Verdict {
                measured: 1_060_000,
                budget
            }
            .fails()
        );
        assert!(
            !Verdict {
                measured: 1_040_000,
                budget
            }
            .fails()
        );
        // Exactly 5 % is still within; one instruction more is not.
        assert!(
            !Verdict {
                measured: 1_050_000,
                budget
            }
            .fails()
        );
        assert!(
            Verdict {
                measured: 1_050_001,
                budget
            }
            .fails()
        );
        // Cheaper than budget never fails.
        assert!(
            !Verdict {
                measured: 10,
                budget
            }
            .fails()
        );
    }

    #[test]
    fn per_operation_divides_the_difference() {
        assert_eq!(per_operation(5_000_000, 1_000_000, 100), Some(40_000));
        assert_eq!(per_operation(1_000_149, 1_000_000, 100), Some(1));
        assert_eq!(per_operation(1_000_000, 1_000_001, 100), None);
    }

    #[test]
    fn a_rendered_file_parses_back() {
        let text = render(&[
            ("plaintext-push", 123_456, "a push, \"quoted\""),
            ("get-image", 7, "a hit"),
        ]);
        let budgets = parse(&text).unwrap();
        assert_eq!(budgets.len(), 2);
        assert_eq!(budgets["plaintext-push"].instructions, 123_456);
        assert_eq!(budgets["plaintext-push"].about, "a push, \"quoted\"");
        assert_eq!(budgets["get-image"].instructions, 7);
    }

    #[test]
    fn the_table_marks_what_is_over() {
        let rows = vec![
            (
                "a".to_owned(),
                Verdict {
                    measured: 106,
                    budget: 100,
                },
            ),
            (
                "b".to_owned(),
                Verdict {
                    measured: 104,
                    budget: 100,
                },
            ),
        ];
        let table = table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[1].starts_with('a') && lines[1].ends_with("OVER BUDGET"));
        assert!(lines[2].starts_with('b') && !lines[2].contains("OVER"));
    }
}
