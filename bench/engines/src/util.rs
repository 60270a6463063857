//! Measuring helpers: disk use as `du` counts it, process CPU time (every thread, so the
//! engines' background work is included), percentiles, number formatting, and the
//! temporary data directories under /tmp that remove themselves.

use std::{fs, io, path::Path, time::Duration};

use tempfile::TempDir;

use crate::Result;

/// A fresh, empty data directory under /tmp, removed when dropped.
pub fn data_dir(label: &str) -> Result<TempDir> {
    Ok(tempfile::Builder::new()
        .prefix(&format!("engine-bench-{label}-"))
        .tempdir_in("/tmp")?)
}

/// Disk use of a directory tree: allocated blocks, as `du` reports.
pub fn du(path: &Path) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::symlink_metadata(path)?;
    let mut total = meta.blocks() * 512;
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            total += du(&entry?.path())?;
        }
    }
    Ok(total)
}

/// Disk use of each entry directly under `path`, largest first.
pub fn du_entries(path: &Path) -> io::Result<Vec<(String, u64)>> {
    let mut sizes = Vec::new();
    for entry in fs::read_dir(path)? {
        let entry = entry?;
        sizes.push((
            entry.file_name().to_string_lossy().into_owned(),
            du(&entry.path())?,
        ));
    }
    sizes.sort_by_key(|&(_, bytes)| std::cmp::Reverse(bytes));
    Ok(sizes)
}

/// User + system CPU time of this process so far, all threads.
#[must_use]
pub fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage only writes the struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Bytes this process (every thread) has caused to be written to storage so far, from
/// `write_bytes` in `/proc/self/io`; 0 where that is unavailable.
#[must_use]
pub fn written_bytes() -> u64 {
    fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The `q` quantile (0..=1) of sorted samples, nearest rank.
#[must_use]
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A count with thousands separators: `1234567` → `1,234,567`.
#[must_use]
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration in the most readable unit: `850 µs`, `12.3 ms`, `1.20 s`.
#[must_use]
pub fn duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 10.0 {
        format!("{us:.1} µs")
    } else if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// Bytes in MiB with one decimal.
#[must_use]
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(100), "100");
        assert_eq!(duration(Duration::from_micros(850)), "850 µs");
        assert_eq!(duration(Duration::from_micros(12_340)), "12.3 ms");
    }

    #[test]
    fn quantiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&samples, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&samples, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
