//! The table every run ends with: one row per figure, our figure next to the baseline
//! measured in the same run, their ratio, the target and whether it is met. Formatting
//! of rates, durations and sizes lives here too, so every row reads the same way.

use std::time::Duration;

/// One line of the table.
pub(crate) struct Row {
    /// What was measured, and in which unit.
    pub(crate) scenario: String,
    /// Our figure.
    pub(crate) ours: String,
    /// The baseline's figure, with what the baseline is; "—" when there is none.
    pub(crate) baseline: String,
    /// Ours relative to the baseline; "—" when there is no baseline.
    pub(crate) ratio: String,
    /// The target from the issue; "—" when there is none.
    pub(crate) target: String,
    /// Whether the target is met; `None` when there is no target.
    pub(crate) met: Option<bool>,
}

impl Row {
    /// A row with only our figure.
    pub(crate) fn plain(scenario: impl Into<String>, ours: impl Into<String>) -> Self {
        Self {
            scenario: scenario.into(),
            ours: ours.into(),
            baseline: "—".into(),
            ratio: "—".into(),
            target: "—".into(),
            met: None,
        }
    }

    /// A throughput row: ours / baseline, and the least ratio wanted.
    pub(crate) fn throughput(
        scenario: impl Into<String>,
        ours: f64,
        baseline_name: &str,
        baseline: f64,
        min_ratio: Option<f64>,
    ) -> Self {
        let ratio = ours / baseline;
        Self {
            scenario: scenario.into(),
            ours: rate(ours),
            baseline: format!("{} ({baseline_name})", rate(baseline)),
            // Rounded down, so a ratio shown as meeting its two-decimal target does.
            ratio: format!("{:.2}", (ratio * 100.0).floor() / 100.0),
            target: min_ratio.map_or("—".into(), |m| format!("≥ {m}")),
            met: min_ratio.map(|m| ratio >= m),
        }
    }

    /// The same row with a target of our own figure (not of the ratio).
    pub(crate) fn with_target(mut self, target: impl Into<String>, met: bool) -> Self {
        self.target = target.into();
        self.met = Some(met);
        self
    }
}

/// A failed scenario becomes a row saying so, and the run exits non-zero.
pub(crate) fn failed(scenario: &str, error: &str) -> Row {
    Row::plain(scenario, format!("FAILED: {error}"))
}

/// Prints the rows as a Markdown table, columns padded so it reads in a terminal too.
pub(crate) fn print_table(rows: &[Row]) {
    let header = [
        "scenario",
        "ours",
        "baseline (same run)",
        "ratio",
        "target",
        "met?",
    ];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.scenario.clone(),
                r.ours.clone(),
                r.baseline.clone(),
                r.ratio.clone(),
                r.target.clone(),
                match r.met {
                    Some(true) => "yes".into(),
                    Some(false) => "**no**".into(),
                    None => "—".into(),
                },
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    line(&header.map(String::from));
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    println!("|-{}-|", rule.join("-|-"));
    for row in &cells {
        line(row);
    }
}

/// `12,345/s`.
pub(crate) fn rate(per_second: f64) -> String {
    format!("{}/s", thousands(per_second.round() as u64))
}

/// `12,345`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A factor, with two significant digits: `×0.21`, `×2.1`, `×73`.
pub(crate) fn times(factor: f64) -> String {
    if factor < 1.0 {
        format!("×{factor:.2}")
    } else if factor < 10.0 {
        format!("×{factor:.1}")
    } else {
        format!("×{factor:.0}")
    }
}

/// A latency in the unit that suits it: `850 µs`, `4.21 ms`, `1.30 s`.
pub(crate) fn duration(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 1_000.0 {
        format!("{micros:.0} µs")
    } else if micros < 1_000_000.0 {
        format!("{:.2} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

/// A size in KiB or MiB.
pub(crate) fn bytes(n: f64) -> String {
    if n.abs() < 1024.0 * 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else {
        format!("{:.1} MiB", n / (1024.0 * 1024.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_well() {
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(rate(2_000.4), "2,000/s");
        assert_eq!(duration(Duration::from_micros(850)), "850 µs");
        assert_eq!(duration(Duration::from_micros(4_210)), "4.21 ms");
        assert_eq!(bytes(16.0 * 1024.0), "16.0 KiB");
        assert_eq!(times(0.213), "×0.21");
        assert_eq!(times(73.4), "×73");
    }
}
