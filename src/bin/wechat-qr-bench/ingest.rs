//! Webhook ingest: how many signed pushes per second the webhook takes — verified,
//! (decrypted,) decoded, de-duplicated, logged and streamed to one live subscriber — in
//! plaintext and in safe mode, against a bare hyper server answering `success` to the same
//! requests and against the wechatpy webhook under gunicorn, all driven by the same
//! hyper load client with fresh pushes.
//!
//! Every target is a separate process. They run in interleaved rounds (ours, bare,
//! wechatpy, ours, ...) and each keeps its best round.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use wechat_qr::pb;

use crate::{
    Outcome, Result, Scale,
    grpc::{self, Tally, Waited},
    http_load,
    processes::{self, Baseline, PythonWebhook, Service},
    pushes::{AES_KEY, PushFactory},
    report::{self, Row},
};

/// Pushes are sent for at most this long to size a target's first pool.
const WARMUP: Duration = Duration::from_millis(300);
/// Largest pool of pre-signed pushes (a few hundred bytes each).
const MAX_POOL: u64 = 600_000;

/// One webhook under test.
struct Target {
    /// For messages.
    name: &'static str,
    /// Its listener.
    addr: SocketAddr,
    /// Pushes per second seen last, to size the next pool.
    estimate: f64,
    /// Best round.
    best: f64,
    /// Pushes it answered `success`, warm-up included.
    answered: u64,
}

/// Runs plaintext then safe mode.
pub(crate) async fn run(scale: &Scale, python: bool) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    let bare = Baseline::start("hyper", &[]).await?;
    for safe in [false, true] {
        let mode = if safe { "safe mode (AES)" } else { "plaintext" };
        let env: &[(&str, &str)] = if safe {
            &[("WECHAT_ENCODING_AES_KEY", AES_KEY)]
        } else {
            &[]
        };
        let service = Service::start(env).await?;
        let tally = Arc::new(Tally::default());
        let subscriber = grpc::subscribe(service.grpc_addr, 1).await?;
        let _reader = grpc::read_all(subscriber, tally.clone(), Arc::new(|_: &pb::Event| {}));

        let python_webhook = if python {
            match PythonWebhook::start(safe.then_some(AES_KEY)).await {
                Ok(webhook) => Some(webhook),
                Err(e) => {
                    outcome.rows.push(report::failed(
                        &format!("webhook ingest, {mode}: vs wechatpy + gunicorn"),
                        &e.to_string(),
                    ));
                    None
                }
            }
        } else {
            None
        };

        let mut targets = vec![
            Target::new("wechat-qr", service.webhook_addr),
            Target::new("bare hyper", bare.addr),
        ];
        if let Some(webhook) = &python_webhook {
            targets.push(Target::new("wechatpy", webhook.addr));
        }
        let factory = if safe {
            PushFactory::safe()
        } else {
            PushFactory::plaintext()
        };
        compare(scale, &factory, &mut targets, &tally).await?;
        let accepted = targets[0].answered;

        let target_ratio = if safe { 0.45 } else { 0.6 };
        let title = if safe {
            "webhook ingest, safe mode (AES), 1 subscriber: pushes/s"
        } else {
            "webhook ingest, plaintext, signed, 1 subscriber: pushes/s"
        };
        outcome.rows.push(Row::throughput(
            title,
            targets[0].best,
            "bare hyper `success`",
            targets[1].best,
            Some(target_ratio),
        ));
        if let Some(py) = targets.get(2) {
            outcome.rows.push(Row::throughput(
                format!(
                    "webhook ingest, {mode}: vs wechatpy + gunicorn ({} sync workers)",
                    processes::python_workers()
                ),
                targets[0].best,
                "wechatpy",
                py.best,
                None,
            ));
        }
        outcome.notes.push(format!(
            "ingest, {mode}: {} pushes acknowledged by wechat-qr, {} delivered to its subscriber",
            report::thousands(accepted),
            report::thousands(tally.delivered())
        ));
    }
    Ok(outcome)
}

impl Target {
    fn new(name: &'static str, addr: SocketAddr) -> Self {
        Self {
            name,
            addr,
            estimate: 0.0,
            best: 0.0,
            answered: 0,
        }
    }
}

/// Warms every target up, then runs `scale.rounds` interleaved rounds of
/// `scale.window` each. Each round gets a pool of fresh pushes sized from the target's
/// last rate, so pools are neither exhausted early nor signed in vain. After each window
/// of ours (`targets[0]`), waits until its subscriber has every acknowledged event, so
/// no delivery backlog runs into the next target's window — and a lost event fails.
async fn compare(
    scale: &Scale,
    factory: &PushFactory,
    targets: &mut [Target],
    tally: &Tally,
) -> Result<()> {
    let mut next_index = 0;
    let mut pool = |count: u64| {
        let pool = factory.pool(next_index, count);
        next_index += count;
        pool
    };
    for target in targets.iter_mut() {
        let warmup = http_load::closed_loop(
            target.addr,
            pool(scale.warmup_pushes),
            scale.connections,
            WARMUP,
        )
        .await
        .map_err(|e| format!("{}: {e}", target.name))?;
        target.estimate = warmup.rate();
        target.answered += warmup.pushes;
    }
    caught_up(tally, targets[0].answered).await?;
    for _ in 0..scale.rounds {
        for (i, target) in targets.iter_mut().enumerate() {
            let size = ((target.estimate * scale.window.as_secs_f64() * 1.5) as u64)
                .clamp(1_000, MAX_POOL);
            let measured =
                http_load::closed_loop(target.addr, pool(size), scale.connections, scale.window)
                    .await
                    .map_err(|e| format!("{}: {e}", target.name))?;
            target.estimate = measured.rate();
            target.best = target.best.max(measured.rate());
            target.answered += measured.pushes;
            if i == 0 {
                caught_up(tally, target.answered).await?;
            }
        }
    }
    Ok(())
}

/// Waits until the subscriber has all `accepted` events.
async fn caught_up(tally: &Tally, accepted: u64) -> Result<()> {
    let waited = tally
        .wait_for(
            accepted,
            Duration::from_secs(10),
            Instant::now() + Duration::from_secs(60),
        )
        .await?;
    match waited {
        Waited::Complete => Ok(()),
        Waited::OutOfTime => Err(format!(
            "the subscriber had {} of {accepted} acknowledged events a minute later",
            tally.delivered()
        )
        .into()),
    }
}
