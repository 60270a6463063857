//! `wechat-qr-bench`: the benchmark harness. One command starts everything itself on
//! loopback — the real `wechat-qr` binary on its embedded simulator, the baselines, the
//! wechatpy webhook under gunicorn, and the load clients in this process — runs each
//! scenario for a bounded time, and prints one table: every figure next to a baseline
//! measured in the same run, the ratio, the target and whether it is met.
//!
//! ```text
//! ./scripts/bench all            # installs the Python side, builds, runs everything
//! ./scripts/bench all --quick    # every scenario, tiny: seconds in all (CI)
//! ```
//!
//! The run exits non-zero when something is broken (an answer other than `200 success`,
//! an event not delivered, a stream out of order), never because of a timing.
//! BENCHMARKS.md explains how each scenario is measured.

mod baselines;
mod create_ticket;
mod device;
mod get_image;
mod groups;
mod grpc;
mod histogram;
mod http_load;
mod ingest;
mod latency;
mod memory;
mod processes;
mod pushes;
mod recovery;
mod replicas;
mod reply;
mod report;
mod resume;
mod rpc_load;
mod slow_clients;
mod stats;
mod traces;
mod waiters;

use std::{process::ExitCode, time::Duration};

use clap::Parser;

use baselines::BaselineKind;
use report::Row;

/// Every error of the harness: it only ever reports them.
type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Results of the harness.
type Result<T, E = BoxError> = std::result::Result<T, E>;

#[derive(Debug, Parser)]
#[command(
    name = "wechat-qr-bench",
    about = "Benchmarks wechat-qr against baselines measured in the same run, on loopback"
)]
struct Cli {
    /// Scenarios to run.
    #[arg(value_enum, default_value = "all")]
    scenarios: Vec<Scenario>,
    /// Every scenario, tiny (a few seconds in all): checks that the harness and the
    /// service work, not how fast.
    #[arg(long)]
    quick: bool,
    /// Leave out the wechatpy + gunicorn comparison (no Python needed).
    #[arg(long)]
    no_python: bool,
    /// Internal: serve a baseline in this process (the harness starts these itself).
    #[arg(long, hide = true, value_enum)]
    serve_baseline: Option<BaselineKind>,
    /// Internal: size of the tonic echo's image.
    #[arg(long, hide = true, default_value_t = 0)]
    image_bytes: usize,
}

/// The scenarios, in the order `all` runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    /// Everything below.
    All,
    /// Webhook pushes/s, plaintext and safe mode, vs bare hyper and wechatpy.
    Ingest,
    /// Webhook pushes/s with a reply rule answering every scan vs without (issue 17).
    Reply,
    /// Push → subscriber latency at 2,000 pushes/s, 1 to 10,000 subscribers.
    Latency,
    /// Genuine-push p99 from one address with and without 2,000 slow connections from
    /// another (issue 27).
    SlowClients,
    /// CreateTicket calls/s and p50 vs a direct call to the simulator.
    CreateTicket,
    /// GetImage (cache hit) calls/s vs a bare tonic echo.
    GetImage,
    /// RSS idle and per idle subscriber.
    Memory,
    /// Replay of retained events to a resuming subscriber.
    Resume,
    /// Consumer groups (issue 24): a group of three acknowledging members draining the
    /// log vs one plain subscriber, CPU per acknowledged event, redelivery after a member
    /// is dropped.
    Groups,
    /// CPU per push and bytes per stream with up to 100,000 idle ticket-filtered
    /// waiters; latency to the one a scan matches.
    Waiters,
    /// Restart after kill -9 on a full retention: time to serve, RSS, disk.
    Recovery,
    /// GetSceneStats over 30 days with 1,000,000 events counted, vs an empty range.
    Stats,
    /// Replicas on Redis: ingest through one vs the embedded store, CPU per push of the
    /// replica and redis-server, fan-out with subscribers spread over two replicas.
    Replicas,
    /// CreateTicket with traces exported over OTLP to a local sink vs traces off.
    Traces,
}

impl Scenario {
    const EACH: [Self; 14] = [
        Self::Ingest,
        Self::Reply,
        Self::Latency,
        Self::SlowClients,
        Self::CreateTicket,
        Self::GetImage,
        Self::Memory,
        Self::Resume,
        Self::Groups,
        Self::Recovery,
        Self::Waiters,
        Self::Stats,
        Self::Replicas,
        Self::Traces,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Ingest => "ingest",
            Self::Reply => "reply",
            Self::Latency => "latency",
            Self::SlowClients => "slow-clients",
            Self::CreateTicket => "create-ticket",
            Self::GetImage => "get-image",
            Self::Memory => "memory",
            Self::Resume => "resume",
            Self::Groups => "groups",
            Self::Waiters => "waiters",
            Self::Recovery => "recovery",
            Self::Stats => "stats",
            Self::Replicas => "replicas",
            Self::Traces => "traces",
        }
    }
}

/// How big and how long each scenario runs: the full run, or `--quick`.
#[derive(Debug, Clone)]
struct Scale {
    /// Length of one measured window of a throughput comparison.
    window: Duration,
    /// Interleaved rounds of each throughput comparison; each target keeps its best.
    rounds: usize,
    /// Pushes each webhook gets to warm up (and to size its first pool).
    warmup_pushes: u64,
    /// HTTP/1.1 connections of the push load.
    connections: usize,
    /// Calls in flight in the RPC comparisons.
    concurrency: usize,
    /// Pushes of each latency run (at 2,000/s).
    latency_pushes: u64,
    /// Subscriber counts of the latency runs.
    latency_subscribers: &'static [usize],
    /// How long after the last push deliveries still count as on time.
    latency_drain: Duration,
    /// Idle subscribers of the memory scenario.
    idle_subscribers: usize,
    /// Pause before reading RSS, for the process to settle.
    settle: Duration,
    /// Events replayed by the resume scenario.
    resume_events: u64,
    /// Events retained when the recovery scenario kills and restarts (issue 21: 1,000,000).
    recovery_events: u64,
    /// Events counted into the statistics before the stats scenario's queries.
    stats_events: u64,
    /// Events in the log that the groups scenario drains.
    group_events: u64,
    /// Events the groups scenario's dropped member holds.
    group_held: u64,
}

impl Scale {
    fn full() -> Self {
        Self {
            window: Duration::from_millis(2_500),
            rounds: 2,
            warmup_pushes: 5_000,
            connections: 16,
            concurrency: 32,
            latency_pushes: 4_000,
            latency_subscribers: &[1, 100, 1_000, 10_000],
            latency_drain: Duration::from_secs(10),
            idle_subscribers: 10_000,
            settle: Duration::from_secs(1),
            resume_events: 100_000,
            recovery_events: 1_000_000,
            stats_events: 1_000_000,
            group_events: 100_000,
            group_held: 100,
        }
    }

    fn quick() -> Self {
        Self {
            window: Duration::from_millis(200),
            rounds: 1,
            warmup_pushes: 50,
            connections: 4,
            concurrency: 4,
            latency_pushes: 100,
            latency_subscribers: &[1, 10, 100],
            latency_drain: Duration::from_secs(5),
            idle_subscribers: 100,
            settle: Duration::from_millis(200),
            resume_events: 1_000,
            recovery_events: 1_000,
            stats_events: 20_000,
            group_events: 300,
            group_held: 10,
        }
    }
}

/// What a scenario reports.
#[derive(Default)]
struct Outcome {
    /// Its lines of the table.
    rows: Vec<Row>,
    /// Observations printed under the table.
    notes: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime starts");
    if let Some(kind) = cli.serve_baseline {
        return match runtime.block_on(baselines::serve(kind, cli.image_bytes)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("baseline {}: {e}", kind.arg());
                ExitCode::FAILURE
            }
        };
    }
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            processes::kill_all();
            std::process::exit(130);
        }
    });
    let scale = if cli.quick {
        Scale::quick()
    } else {
        Scale::full()
    };
    let scenarios: Vec<Scenario> = if cli.scenarios.contains(&Scenario::All) {
        Scenario::EACH.to_vec()
    } else {
        Scenario::EACH
            .into_iter()
            .filter(|s| cli.scenarios.contains(s))
            .collect()
    };
    println!("{}", machine());
    println!("load average before: {}", load_average());

    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let mut broken = false;
    for scenario in scenarios {
        eprintln!("== {}", scenario.name());
        let started = std::time::Instant::now();
        let result = match scenario {
            Scenario::All => unreachable!("expanded above"),
            Scenario::Ingest => ingest::run(&scale, !cli.no_python).await,
            Scenario::Reply => reply::run(&scale).await,
            Scenario::Latency => latency::run(&scale).await,
            Scenario::SlowClients => slow_clients::run(&scale).await,
            Scenario::CreateTicket => create_ticket::run(&scale).await,
            Scenario::GetImage => get_image::run(&scale).await,
            Scenario::Memory => memory::run(&scale).await,
            Scenario::Resume => resume::run(&scale).await,
            Scenario::Groups => groups::run(&scale).await,
            Scenario::Waiters => waiters::run(&scale).await,
            Scenario::Recovery => recovery::run(&scale).await,
            Scenario::Stats => stats::run(&scale).await,
            Scenario::Replicas => replicas::run(&scale).await,
            Scenario::Traces => traces::run(&scale).await,
        };
        eprintln!(
            "   {} done in {:.1} s",
            scenario.name(),
            started.elapsed().as_secs_f64()
        );
        match result {
            Ok(outcome) => {
                broken |= outcome.rows.iter().any(|r| r.ours.starts_with("FAILED"));
                rows.extend(outcome.rows);
                notes.extend(outcome.notes);
            }
            Err(e) => {
                broken = true;
                rows.push(report::failed(scenario.name(), &e.to_string()));
            }
        }
    }

    println!("load average after: {}", load_average());
    println!();
    report::print_table(&rows);
    if !notes.is_empty() {
        println!();
        for note in notes {
            println!("- {note}");
        }
    }
    if cli.quick {
        println!("\n(--quick: tiny runs that check the harness works; the figures mean nothing)");
    }
    if broken {
        eprintln!("wechat-qr-bench: a scenario failed (see the table)");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Cores, CPU, memory, toolchain and build profile, for the record.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or_else(
            || "unknown memory".into(),
            |kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0),
        );
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "rustc unknown".into(), |v| v.trim().to_owned());
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    format!("machine: {cores} cores, {cpu}, {memory} RAM; {rustc}; {profile} build")
}

/// `/proc/loadavg`'s three averages: a busy machine shows here.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
