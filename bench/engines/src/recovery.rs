//! Measure 2, recovery: a child process (this binary, `child-write`) fills the log with
//! `fill` events under retention, committing durable batches, then keeps writing and
//! reporting each acknowledged commit until the parent SIGKILLs it mid-write. A fresh
//! child (`child-open`) then times opening the store, reading the first and last keys and
//! reading the newest `tail` events, and checks that nothing acknowledged was lost and that
//! events and de-duplication keys still match. The same open is timed again after a clean
//! close. The kill is of a process, not of the machine: the page cache survives it.

use std::{
    fmt::Write as _,
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

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
    /// Events written before the kill window opens.
    pub fill: u64,
    /// Events per commit while writing.
    pub batch: usize,
    /// How long the child keeps writing after the fill before it is killed.
    pub kill_after: Duration,
    /// Newest events read after opening.
    pub tail: usize,
    /// Clean reopens timed (the median is reported).
    pub clean_runs: usize,
}

/// What one `child-open` measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Opened {
    /// Opening the engine (journal replay or repair included).
    pub open: Duration,
    /// Reading the first and last keys.
    pub bounds: Duration,
    /// Reading the newest `tail` events.
    pub tail: Duration,
    /// The oldest retained sequence number.
    pub first: u64,
    /// The newest retained sequence number.
    pub last: u64,
    /// Events counted after the timings.
    pub events: u64,
    /// De-duplication keys counted after the timings.
    pub keys: u64,
    /// Whether the engine reported a repair.
    pub repaired: bool,
}

impl Opened {
    /// Open, bounds and tail together: the time before the log can serve.
    #[must_use]
    pub fn total(&self) -> Duration {
        self.open + self.bounds + self.tail
    }

    fn to_line(self) -> String {
        format!(
            "opened open_ns={} bounds_ns={} tail_ns={} first={} last={} events={} keys={} repaired={}",
            self.open.as_nanos(),
            self.bounds.as_nanos(),
            self.tail.as_nanos(),
            self.first,
            self.last,
            self.events,
            self.keys,
            u8::from(self.repaired)
        )
    }

    fn parse(line: &str) -> Result<Self> {
        let mut opened = Self::default();
        for field in line.split_whitespace().skip(1) {
            let (name, value) = field.split_once('=').ok_or("malformed child-open line")?;
            let value: u64 = value.parse()?;
            match name {
                "open_ns" => opened.open = Duration::from_nanos(value),
                "bounds_ns" => opened.bounds = Duration::from_nanos(value),
                "tail_ns" => opened.tail = Duration::from_nanos(value),
                "first" => opened.first = value,
                "last" => opened.last = value,
                "events" => opened.events = value,
                "keys" => opened.keys = value,
                "repaired" => opened.repaired = value == 1,
                _ => return Err(format!("unknown field {name}").into()),
            }
        }
        Ok(opened)
    }
}

/// One engine's recovery.
#[derive(Debug, Clone)]
pub struct Row {
    /// The engine.
    pub engine: Engine,
    /// The newest sequence number the killed writer had seen committed.
    pub acked: u64,
    /// Disk use when the writer was killed.
    pub disk_at_kill: u64,
    /// The open after the kill.
    pub crashed: Opened,
    /// The clean reopens.
    pub clean: Vec<Opened>,
}

impl Row {
    /// Median clean reopen.
    #[must_use]
    pub fn clean_median(&self) -> Opened {
        let mut clean = self.clean.clone();
        clean.sort_by_key(Opened::total);
        clean.get(clean.len() / 2).copied().unwrap_or_default()
    }

    /// Whether every acknowledged event survived and the two tables agree.
    #[must_use]
    pub fn consistent(&self) -> bool {
        let c = &self.crashed;
        c.last >= self.acked && c.events == c.keys && c.events == c.last + 1 - c.first
    }
}

/// `child-write`: fills, announces, then writes until killed.
pub fn child_write(engine: Engine, dir: &Path, retain: u64, fill: u64, batch: usize) -> Result<()> {
    let mut store = store::open(engine, dir, retain)?;
    let mut next = store.recover_bounds()?.last.unwrap_or(0) + 1;
    let mut out = std::io::stdout().lock();
    let mut write = |next: &mut u64| -> Result<()> {
        let events: Vec<Event> = (*next..*next + batch as u64)
            .map(Event::synthetic)
            .collect();
        store.commit(&events)?;
        *next += batch as u64;
        Ok(())
    };
    while next <= fill {
        write(&mut next)?;
    }
    writeln!(out, "filled {}", next - 1)?;
    out.flush()?;
    loop {
        write(&mut next)?;
        writeln!(out, "acked {}", next - 1)?;
        out.flush()?;
    }
}

/// `child-open`: times the open and the reads, then counts, and prints one line.
pub fn child_open(engine: Engine, dir: &Path, retain: u64, tail: usize) -> Result<()> {
    let t = Instant::now();
    let mut store = store::open(engine, dir, retain)?;
    let open = t.elapsed();
    let t = Instant::now();
    let bounds = store.recover_bounds()?;
    let bounds_took = t.elapsed();
    let t = Instant::now();
    store.read_tail(tail)?;
    let tail_took = t.elapsed();
    let (events, keys) = store.count()?;
    let opened = Opened {
        open,
        bounds: bounds_took,
        tail: tail_took,
        first: bounds.first.unwrap_or(0),
        last: bounds.last.unwrap_or(0),
        events,
        keys,
        repaired: store.repaired(),
    };
    println!("{}", opened.to_line());
    Ok(())
}

fn open_in_child(engine: Engine, dir: &Path, config: &Config) -> Result<Opened> {
    let output = Command::new(std::env::current_exe()?)
        .args(["child-open", "--engine", engine.name(), "--dir"])
        .arg(dir)
        .args([
            "--retain",
            &config.retain.to_string(),
            "--tail",
            &config.tail.to_string(),
        ])
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        return Err(format!("child-open failed: {}", output.status).into());
    }
    let stdout = String::from_utf8(output.stdout)?;
    let line = stdout
        .lines()
        .find(|l| l.starts_with("opened "))
        .ok_or("child-open said nothing")?;
    Opened::parse(line)
}

fn run_engine(engine: Engine, dir: &Path, config: &Config) -> Result<Row> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["child-write", "--engine", engine.name(), "--dir"])
        .arg(dir)
        .args(["--retain", &config.retain.to_string()])
        .args(["--fill", &config.fill.to_string()])
        .args(["--batch", &config.batch.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no child stdout")?).lines();
    match lines.next() {
        Some(Ok(line)) if line.starts_with("filled ") => {}
        other => {
            child.kill()?;
            child.wait()?;
            return Err(format!("child-write did not fill: {other:?}").into());
        }
    }
    let reader = thread::spawn(move || {
        let mut acked = 0;
        for line in lines.map_while(std::result::Result::ok) {
            if let Some(n) = line.strip_prefix("acked ").and_then(|n| n.parse().ok()) {
                acked = n;
            }
        }
        acked
    });
    thread::sleep(config.kill_after);
    child.kill()?; // SIGKILL
    let status = child.wait()?;
    let acked = reader.join().map_err(|_| "reader thread panicked")?;
    eprintln!("recovery: {engine}: writer killed ({status}) after acknowledging seq {acked}");
    let disk_at_kill = util::du(dir)?;
    let crashed = open_in_child(engine, dir, config)?;
    let clean = (0..config.clean_runs)
        .map(|_| open_in_child(engine, dir, config))
        .collect::<Result<Vec<_>>>()?;
    Ok(Row {
        engine,
        acked,
        disk_at_kill,
        crashed,
        clean,
    })
}

/// Runs the crash and the clean reopens for every engine.
pub fn run(engines: &[Engine], config: &Config) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &engine in engines.iter().filter(|e| e.is_candidate()) {
        let dir = util::data_dir(engine.name())?;
        eprintln!(
            "recovery: {engine}: writing {} events (retention {}), then SIGKILL",
            config.fill, config.retain
        );
        rows.push(run_engine(engine, dir.path(), config)?);
    }
    Ok(rows)
}

/// The results as a markdown table.
#[must_use]
pub fn table(rows: &[Row], config: &Config) -> String {
    let mut out = format!(
        "| engine | after SIGKILL: open | first+last key | last {} events | total | repaired | clean reopen: total (open) | acked seq kept, events = keys | retained | disk at kill |\n\
         | --- | ---: | ---: | ---: | ---: | --- | ---: | --- | ---: | ---: |\n",
        util::thousands(config.tail as u64)
    );
    for row in rows {
        let c = &row.crashed;
        let clean = row.clean_median();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | **{}** | {} | {} ({}) | {} (acked {}, last {}) | {} | {} |",
            row.engine,
            util::duration(c.open),
            util::duration(c.bounds),
            util::duration(c.tail),
            util::duration(c.total()),
            if c.repaired { "yes" } else { "no" },
            util::duration(clean.total()),
            util::duration(clean.open),
            if row.consistent() { "yes" } else { "**NO**" },
            util::thousands(row.acked),
            util::thousands(c.last),
            util::thousands(c.events),
            util::mib(row.disk_at_kill),
        );
    }
    out
}
