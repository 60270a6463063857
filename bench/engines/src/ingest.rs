//! Measure 1, ingest: one writer commits batches of 1, 8 and 64 events (a batch stands for
//! the pushes that arrive while the previous commit syncs and then share one fsync) to a
//! log already holding a full retention, so every commit also drops as many old events.
//! The disk of a shared VM changes speed over seconds, so the engines are interleaved: in
//! each round every engine writes for one slice at each batch size, and a row adds up its
//! slices. Wall time counts only the commit calls. CPU time counts every thread of the
//! process (background flushes and compactions included, which may spill into the next
//! engine's slice) less the cost of generating the events, calibrated once; written bytes
//! are what the process sent to storage (`/proc/self/io`), the same way.

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use tempfile::TempDir;

use crate::{
    Result,
    record::Event,
    store::{self, Engine, Store},
    util,
};

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Events retained (and pre-filled before measuring).
    pub retain: u64,
    /// Batch sizes.
    pub batches: Vec<usize>,
    /// Rounds over every engine and batch size.
    pub rounds: usize,
    /// Wall time of one engine at one batch size in one round.
    pub slice: Duration,
}

/// One engine at one batch size, summed over the rounds.
#[derive(Debug, Clone)]
pub struct Row {
    /// The engine.
    pub engine: Engine,
    /// Events per commit.
    pub batch: usize,
    /// Events appended.
    pub events: u64,
    /// Time spent inside commits.
    pub busy: Duration,
    /// Every commit's duration (sorted once all rounds are in).
    pub latencies: Vec<Duration>,
    /// CPU time of the process spent on the store (all threads, generation excluded).
    pub cpu: Duration,
    /// Bytes sent to storage.
    pub written: u64,
}

impl Row {
    fn new(engine: Engine, batch: usize) -> Self {
        Self {
            engine,
            batch,
            events: 0,
            busy: Duration::ZERO,
            latencies: Vec::new(),
            cpu: Duration::ZERO,
            written: 0,
        }
    }

    /// Events per second of commit time.
    #[must_use]
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.busy.as_secs_f64()
    }

    /// Commits per second of commit time.
    #[must_use]
    pub fn commits_per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.busy.as_secs_f64()
    }

    /// CPU microseconds per event.
    #[must_use]
    pub fn cpu_us_per_event(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.events as f64
    }

    /// Bytes written to storage per event.
    #[must_use]
    pub fn written_per_event(&self) -> f64 {
        self.written as f64 / self.events as f64
    }
}

/// The events numbered `from..from + len`.
fn batch_from(from: u64, len: usize) -> Vec<Event> {
    (from..from + len as u64).map(Event::synthetic).collect()
}

/// CPU time to generate one event, subtracted from every row.
fn generation_cost() -> Duration {
    const N: u32 = 50_000;
    let start = util::cpu_time();
    let mut bytes = 0;
    for n in 0..N {
        bytes += Event::synthetic(n.into()).record.len();
    }
    std::hint::black_box(bytes);
    util::cpu_time().saturating_sub(start) / N
}

/// An engine's open log and the number of the next event it writes.
struct Subject {
    engine: Engine,
    store: Box<dyn Store>,
    next: u64,
    _dir: TempDir,
}

impl Subject {
    fn prefilled(engine: Engine, retain: u64) -> Result<Self> {
        let dir = util::data_dir(engine.name())?;
        let mut store = store::open_for_writing(engine, dir.path(), retain)?;
        let mut next = 0;
        while store.retained() < retain {
            let len = (retain - store.retained()).min(512) as usize;
            store.commit(&batch_from(next, len))?;
            next += len as u64;
        }
        Ok(Self {
            engine,
            store,
            next,
            _dir: dir,
        })
    }

    /// Writes batches of `batch` for `slice`, adding to `row`.
    fn slice(&mut self, row: &mut Row, slice: Duration, per_event: Duration) -> Result<()> {
        let cpu_start = util::cpu_time();
        let written_start = util::written_bytes();
        let mut events = 0;
        let start = Instant::now();
        while start.elapsed() < slice {
            let batch = batch_from(self.next, row.batch);
            self.next += row.batch as u64;
            let t = Instant::now();
            let added = self.store.commit(&batch)?;
            let took = t.elapsed();
            assert_eq!(added, row.batch, "synthetic events are never duplicates");
            row.busy += took;
            row.latencies.push(took);
            events += row.batch as u64;
        }
        let generation = per_event * u32::try_from(events)?;
        row.cpu += util::cpu_time()
            .saturating_sub(cpu_start)
            .saturating_sub(generation);
        row.written += util::written_bytes().saturating_sub(written_start);
        row.events += events;
        Ok(())
    }
}

/// Runs the baselines and every engine, interleaved.
pub fn run(engines: &[Engine], config: &Config) -> Result<Vec<Row>> {
    let per_event = generation_cost();
    eprintln!(
        "ingest: generating one event costs {} of CPU (subtracted)",
        util::duration(per_event)
    );
    let mut subjects = Vec::new();
    for &engine in [Engine::Memory, Engine::Floor].iter().chain(engines) {
        if subjects.iter().any(|s: &Subject| s.engine == engine) {
            continue;
        }
        eprintln!(
            "ingest: {engine}: pre-filling {} events",
            util::thousands(config.retain)
        );
        subjects.push(Subject::prefilled(engine, config.retain)?);
    }
    let mut rows: Vec<Row> = subjects
        .iter()
        .flat_map(|s| config.batches.iter().map(|&b| Row::new(s.engine, b)))
        .collect();
    for round in 1..=config.rounds {
        eprintln!("ingest: round {round} of {}", config.rounds);
        for (i, subject) in subjects.iter_mut().enumerate() {
            for j in 0..config.batches.len() {
                subject.slice(
                    &mut rows[i * config.batches.len() + j],
                    config.slice,
                    per_event,
                )?;
            }
        }
    }
    for row in &mut rows {
        row.latencies.sort_unstable();
    }
    Ok(rows)
}

/// The results as a markdown table.
#[must_use]
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| engine | batch | events/s | commits/s | × memory | commit p50 | commit p99 | commit max | CPU µs/event | written B/event |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for row in rows {
        let baseline = rows
            .iter()
            .find(|r| r.engine == Engine::Memory && r.batch == row.batch)
            .map_or(f64::NAN, Row::events_per_sec);
        let p99 = util::duration(util::quantile(&row.latencies, 0.99));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.4} | {} | {} | {} | {:.2} | {} |",
            row.engine,
            row.batch,
            util::thousands(row.events_per_sec() as u64),
            util::thousands(row.commits_per_sec() as u64),
            row.events_per_sec() / baseline,
            util::duration(util::quantile(&row.latencies, 0.5)),
            if row.batch == 8 {
                format!("**{p99}**")
            } else {
                p99
            },
            util::duration(util::quantile(&row.latencies, 1.0)),
            row.cpu_us_per_event(),
            util::thousands(row.written_per_event() as u64),
        );
    }
    out
}
