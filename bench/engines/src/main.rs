//! Measures candidate embedded storage engines (redb, fjall) for the service's durable
//! event log on its own access pattern: durable group-commit ingest, recovery after a
//! SIGKILL, and disk use under count-based retention; and (`wal`) the log-structured
//! designs of issue 21 (an own segment log, okaywal) against an `append + fdatasync`
//! floor. `all` runs the four measures and
//! prints markdown tables on stdout (progress on stderr); `--quick` shrinks every count
//! so the harness can be checked in seconds. See README.md and RESULTS.md.

mod disk;
mod fjall_store;
mod floor;
mod ingest;
mod memory;
mod okaywal_log;
mod record;
mod recovery;
mod redb_store;
mod seglog;
mod store;
mod util;
mod wal;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use clap::{Args, Parser, Subcommand};

use store::Engine;

/// Errors end the run with a message; the benchmark has nothing to recover.
pub type Result<T, E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

#[derive(Parser)]
#[command(about = "Event-log storage engine benchmark: redb, fjall, an own segment log, okaywal")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every measure: ingest, recovery, disk.
    All(Options),
    /// Durable group-commit ingest against the in-memory baseline.
    Ingest(Options),
    /// Reopen after SIGKILL mid-write, and after a clean close.
    Recovery(Options),
    /// Disk use per retained event, and its growth under retention.
    Disk(Options),
    /// Log-structured designs (own segment log, okaywal) against append + fdatasync.
    Wal(Options),
    /// (internal) Fill a store, then write until killed.
    #[command(hide = true)]
    ChildWrite {
        #[arg(long)]
        engine: Engine,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        retain: u64,
        #[arg(long)]
        fill: u64,
        #[arg(long)]
        batch: usize,
    },
    /// (internal) Time opening a store and reading its ends.
    #[command(hide = true)]
    ChildOpen {
        #[arg(long)]
        engine: Engine,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        retain: u64,
        #[arg(long)]
        tail: usize,
    },
}

#[derive(Args, Clone)]
struct Options {
    /// Tiny counts (seconds in all): checks the harness, not the engines.
    #[arg(long)]
    quick: bool,
    /// Engines to measure, comma-separated [default: redb, redb-tk, redb-tk-qr, fjall,
    /// fjall-tk, fjall-tk-8m; disk leaves out redb-tk-qr and fjall, whose disk use matched
    /// redb-tk's and fjall-tk's within 2%]. Ingest always adds the `memory` and
    /// `fsync-floor` baselines.
    #[arg(long, value_delimiter = ',')]
    engines: Option<Vec<Engine>>,
    /// Events retained [default: 100000; quick: 2000].
    #[arg(long)]
    retain: Option<u64>,
    /// Events written before recovery and the first disk measurement [default: 150000; quick: 3000].
    #[arg(long)]
    fill: Option<u64>,
    /// Events written after the fill in the disk measure [default: 500000; quick: 10000].
    #[arg(long)]
    extra: Option<u64>,
    /// Events between disk measurements [default: 100000; quick: 2000].
    #[arg(long)]
    step: Option<u64>,
    /// Ingest rounds over every engine and batch size [default: 3; quick: 1].
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds of writing per engine and batch size in one ingest round [default: 1; quick: 0.1].
    #[arg(long)]
    slice_secs: Option<f64>,
    /// Batch sizes for ingest.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    batches: Vec<usize>,
    /// Events per commit while filling (recovery and disk).
    #[arg(long, default_value_t = 64)]
    fill_batch: usize,
    /// Milliseconds the recovery writer keeps writing after the fill before SIGKILL.
    #[arg(long, default_value_t = 250)]
    kill_after_ms: u64,
    /// Newest events read after reopening.
    #[arg(long, default_value_t = 1_000)]
    tail: usize,
    /// `wal` ingest loads as `THREADSxBATCH` [default: 1x1,16x1,128x1,1x64; quick: 1x1,4x1].
    #[arg(long, value_delimiter = ',')]
    loads: Option<Vec<String>>,
    /// `wal` records written before the timed open [default: 1000000; quick: 20000].
    #[arg(long)]
    records: Option<u64>,
    /// `wal` records read from the middle of the log after the open [default: 200000; quick: 5000].
    #[arg(long)]
    read: Option<u64>,
    /// `wal` segment size of the own log in MiB [default: 64; quick: 4].
    #[arg(long)]
    segment_mib: Option<u64>,
}

/// The engines each measure runs unless `--engines` says otherwise.
const DEFAULT_ENGINES: [Engine; 6] = [
    Engine::Redb,
    Engine::RedbTk,
    Engine::RedbTkQr,
    Engine::Fjall,
    Engine::FjallTk,
    Engine::FjallTk8m,
];

impl Options {
    fn engines(&self, skip_by_default: &[Engine]) -> Vec<Engine> {
        self.engines.clone().unwrap_or_else(|| {
            DEFAULT_ENGINES
                .into_iter()
                .filter(|e| !skip_by_default.contains(e))
                .collect()
        })
    }

    fn pick<T>(&self, set: Option<T>, full: T, quick: T) -> T {
        set.unwrap_or(if self.quick { quick } else { full })
    }

    fn retain(&self) -> u64 {
        self.pick(self.retain, 100_000, 2_000)
    }

    fn fill(&self) -> u64 {
        self.pick(self.fill, 150_000, 3_000)
    }

    fn ingest(&self) -> ingest::Config {
        ingest::Config {
            retain: self.retain(),
            batches: self.batches.clone(),
            rounds: self.pick(self.rounds, 3, 1),
            slice: Duration::from_secs_f64(self.pick(self.slice_secs, 1.0, 0.1)),
        }
    }

    fn recovery(&self) -> recovery::Config {
        recovery::Config {
            retain: self.retain(),
            fill: self.fill(),
            batch: self.fill_batch,
            kill_after: Duration::from_millis(self.kill_after_ms),
            tail: self.tail,
            clean_runs: 3,
        }
    }

    fn wal(&self) -> Result<wal::Config> {
        let loads = match &self.loads {
            Some(loads) => loads
                .iter()
                .map(|l| {
                    let (t, b) = l.split_once('x').ok_or("a load is THREADSxBATCH")?;
                    Ok((t.parse()?, b.parse()?))
                })
                .collect::<Result<Vec<_>>>()?,
            None if self.quick => vec![(1, 1), (4, 1)],
            None => vec![(1, 1), (16, 1), (128, 1), (1, 64)],
        };
        Ok(wal::Config {
            loads,
            rounds: self.pick(self.rounds, 3, 1),
            slice: Duration::from_secs_f64(self.pick(self.slice_secs, 1.0, 0.1)),
            records: self.pick(self.records, 1_000_000, 20_000),
            read: self.pick(self.read, 200_000, 5_000),
            segment_bytes: self.pick(self.segment_mib, 64, 4) << 20,
        })
    }

    fn disk(&self) -> disk::Config {
        disk::Config {
            retain: self.retain(),
            fill: self.fill(),
            extra: self.pick(self.extra, 500_000, 10_000),
            step: self.pick(self.step, 100_000, 2_000),
            batch: self.fill_batch,
        }
    }
}

fn header(options: &Options) {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "engines: redb {}, fjall {} (lsm-tree {}), okaywal {}; {} cores; data under /tmp; retention {}{}\n",
        env!("REDB_VERSION"),
        env!("FJALL_VERSION"),
        env!("LSM_TREE_VERSION"),
        env!("OKAYWAL_VERSION"),
        cores,
        util::thousands(options.retain()),
        if options.quick {
            "; --quick: counts too small to mean anything"
        } else {
            ""
        },
    );
}

fn run_ingest(options: &Options) -> Result<()> {
    let config = options.ingest();
    let rows = ingest::run(&options.engines(&[]), &config)?;
    println!(
        "### 1. Ingest: durable group commit (log pre-filled to retention; {} rounds of {} s per engine and batch size, interleaved)\n\n{}",
        config.rounds,
        config.slice.as_secs_f64(),
        ingest::table(&rows)
    );
    Ok(())
}

fn run_recovery(options: &Options) -> Result<()> {
    let config = options.recovery();
    let rows = recovery::run(&options.engines(&[]), &config)?;
    println!(
        "### 2. Recovery: {} events written under retention {}, writer SIGKILLed mid-write, reopened in a fresh process\n\n{}",
        util::thousands(config.fill),
        util::thousands(config.retain),
        recovery::table(&rows, &config)
    );
    Ok(())
}

fn run_disk(options: &Options) -> Result<()> {
    let config = options.disk();
    let rows = disk::run(
        &options.engines(&[Engine::RedbTkQr, Engine::Fjall]),
        &config,
    )?;
    println!(
        "### 3. Disk: retention {}, durable batches of {}\n\n{}",
        util::thousands(config.retain),
        config.batch,
        disk::table(&rows)
    );
    Ok(())
}

fn run_wal(options: &Options) -> Result<()> {
    let config = options.wal()?;
    let ingest = wal::ingest(&wal::Subject::ALL, &config)?;
    println!(
        "### 4a. Log ingest: one push per record, group commit (fresh logs; {} rounds of {} s per subject and load, interleaved)\n\n{}",
        config.rounds,
        config.slice.as_secs_f64(),
        wal::ingest_table(&ingest)
    );
    let recovery = wal::recovery(&wal::Subject::ALL, &config)?;
    println!(
        "### 4b. Log recovery and read from an offset: {} records, reopened in the same process\n\n{}",
        util::thousands(config.records),
        wal::recovery_table(&recovery)
    );
    Ok(())
}

/// Runs one measure and says on stderr how long it took.
fn timed(name: &str, measure: fn(&Options) -> Result<()>, options: &Options) -> Result<()> {
    let start = Instant::now();
    measure(options)?;
    eprintln!("{name}: done in {:.0} s", start.elapsed().as_secs_f64());
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::All(options) => {
            header(&options);
            timed("ingest", run_ingest, &options)?;
            timed("recovery", run_recovery, &options)?;
            timed("disk", run_disk, &options)?;
            timed("wal", run_wal, &options)
        }
        Command::Ingest(options) => {
            header(&options);
            timed("ingest", run_ingest, &options)
        }
        Command::Recovery(options) => {
            header(&options);
            timed("recovery", run_recovery, &options)
        }
        Command::Disk(options) => {
            header(&options);
            timed("disk", run_disk, &options)
        }
        Command::Wal(options) => {
            header(&options);
            timed("wal", run_wal, &options)
        }
        Command::ChildWrite {
            engine,
            dir,
            retain,
            fill,
            batch,
        } => recovery::child_write(engine, &dir, retain, fill, batch),
        Command::ChildOpen {
            engine,
            dir,
            retain,
            tail,
        } => recovery::child_open(engine, &dir, retain, tail),
    }
}
