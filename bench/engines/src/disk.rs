//! Measure 3, disk: writes `fill` events in durable batches under retention and takes the
//! directory's disk use (allocated blocks, as `du` counts) per retained event, then keeps
//! writing `extra` events and takes the disk use after every `step`, to see whether it
//! levels off once deletions are reused or compacted away. Sizes are taken with the store
//! open, as a running service would leave them.

use std::{fmt::Write as _, path::Path};

use crate::{
    Result,
    record::Event,
    store::{self, Engine},
    util,
};

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Events retained.
    pub retain: u64,
    /// Events written before the first measurement.
    pub fill: u64,
    /// Events written after it.
    pub extra: u64,
    /// Events between measurements after the first.
    pub step: u64,
    /// Events per commit.
    pub batch: usize,
}

/// Disk use at one point.
#[derive(Debug, Clone)]
pub struct Point {
    /// Events written so far.
    pub written: u64,
    /// Events retained.
    pub retained: u64,
    /// Disk use of the data directory.
    pub bytes: u64,
    /// The largest entries of the directory, for the notes.
    pub largest: Vec<(String, u64)>,
}

/// One engine's series.
#[derive(Debug, Clone)]
pub struct Row {
    /// The engine.
    pub engine: Engine,
    /// Disk use after `fill`, then after every step.
    pub points: Vec<Point>,
}

fn run_engine(engine: Engine, dir: &Path, config: &Config) -> Result<Row> {
    let mut store = store::open_for_writing(engine, dir, config.retain)?;
    let mut written = 0;
    let mut points = Vec::new();
    let mut target = config.fill;
    while target <= config.fill + config.extra {
        while written < target {
            let len = (target - written).min(config.batch as u64);
            let events: Vec<Event> = (written + 1..=written + len)
                .map(Event::synthetic)
                .collect();
            store.commit(&events)?;
            written += len;
        }
        let point = Point {
            written,
            retained: store.retained(),
            bytes: util::du(dir)?,
            largest: util::du_entries(dir)?.into_iter().take(3).collect(),
        };
        eprintln!(
            "disk: {engine}: {} written, {} ({:?})",
            util::thousands(written),
            util::mib(point.bytes),
            point.largest
        );
        points.push(point);
        target += config.step;
    }
    Ok(Row { engine, points })
}

/// Runs every durable engine.
pub fn run(engines: &[Engine], config: &Config) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &engine in engines.iter().filter(|e| e.is_candidate()) {
        let dir = util::data_dir(engine.name())?;
        rows.push(run_engine(engine, dir.path(), config)?);
    }
    Ok(rows)
}

/// Bytes per retained event after the fill.
fn per_event(point: &Point) -> f64 {
    point.bytes as f64 / point.retained.max(1) as f64
}

/// The results as markdown: bytes per event after the fill, then the growth series.
#[must_use]
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| engine | events written | retained | disk | bytes / retained event | largest entries |\n\
         | --- | ---: | ---: | ---: | ---: | --- |\n",
    );
    for row in rows {
        for point in &row.points {
            let largest: Vec<String> = point
                .largest
                .iter()
                .map(|(name, bytes)| format!("`{name}` {}", util::mib(*bytes)))
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.0} | {} |",
                row.engine,
                util::thousands(point.written),
                util::thousands(point.retained),
                util::mib(point.bytes),
                per_event(point),
                largest.join(", "),
            );
        }
    }
    out
}
