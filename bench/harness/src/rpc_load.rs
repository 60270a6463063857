//! Closed-loop load for request/response calls (CreateTicket, GetImage and their
//! baselines): `concurrency` tasks each make their next call as soon as the previous one
//! answers, for a fixed window. Targets are compared in interleaved rounds, best round
//! kept, so a burst of load from something else on the machine hurts one round of one
//! target rather than a whole figure.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::task::JoinSet;

use crate::{Result, histogram::Histogram};

/// One call of a target; the argument numbers the calls, so each can differ.
pub(crate) type Call =
    Arc<dyn Fn(u64) -> Pin<Box<dyn Future<Output = Result<()>> + Send>> + Send + Sync>;

/// What a window of calls achieved.
pub(crate) struct Measured {
    /// Calls answered successfully.
    pub(crate) calls: u64,
    /// How long the window really took (the last calls finish after it closes).
    pub(crate) elapsed: Duration,
    /// Latency of each call.
    pub(crate) latency: Histogram,
}

impl Measured {
    /// Calls per second.
    pub(crate) fn rate(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `call` from `concurrency` tasks for `window`. Any failed call fails the run.
pub(crate) async fn closed_loop(
    call: &Call,
    concurrency: usize,
    window: Duration,
) -> Result<Measured> {
    let latency = Arc::new(Histogram::new());
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + window;
    let mut workers = JoinSet::new();
    for _ in 0..concurrency {
        let (call, latency, next) = (call.clone(), latency.clone(), next.clone());
        workers.spawn(async move {
            let mut calls = 0u64;
            while Instant::now() < deadline {
                let sent = Instant::now();
                call(next.fetch_add(1, Ordering::Relaxed)).await?;
                latency.record(sent.elapsed());
                calls += 1;
            }
            Ok::<_, crate::BoxError>(calls)
        });
    }
    let mut calls = 0;
    while let Some(joined) = workers.join_next().await {
        calls += joined??;
    }
    let elapsed = start.elapsed();
    Ok(Measured {
        calls,
        elapsed,
        latency: Arc::into_inner(latency).expect("workers are done"),
    })
}

/// Each target's best window over `rounds` interleaved rounds, after one short warm-up
/// window per target (connections, caches, the allocator).
pub(crate) async fn best_of(
    targets: &[&Call],
    rounds: usize,
    concurrency: usize,
    window: Duration,
) -> Result<Vec<Measured>> {
    for target in targets {
        closed_loop(target, concurrency, window / 4).await?;
    }
    let mut best: Vec<Option<Measured>> = targets.iter().map(|_| None).collect();
    for _ in 0..rounds {
        for (target, best) in targets.iter().zip(best.iter_mut()) {
            let measured = closed_loop(target, concurrency, window).await?;
            if best.as_ref().is_none_or(|b| measured.rate() > b.rate()) {
                *best = Some(measured);
            }
        }
    }
    Ok(best
        .into_iter()
        .map(|b| b.expect("at least one round"))
        .collect())
}
