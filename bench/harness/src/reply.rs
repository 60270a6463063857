//! Passive replies to scans (issue 17): webhook ingest with a reply rule answering every
//! push against the same service without one, in interleaved rounds of the same run, in
//! plaintext and in safe mode (where each reply is also encrypted and signed).
//!
//! Both services are configured by a file with one account — reply rules live in
//! `[[accounts.replies]]` — so neither runs the simulator; the ingest path does not need
//! it. Both use the in-memory log: with no disk sync in the acknowledgement, the reply is
//! the largest share of a push it can be, so the ratio is the strictest one.

use std::path::Path;

use crate::{
    Outcome, Result, Scale,
    ingest::{self, Subscribed, Target},
    processes::{DataDir, Service},
    pushes::{AES_KEY, PushFactory, SCENE},
    report::Row,
};

/// The least share of ingest kept when a reply rule answers every push (issue 17: the
/// reply costs the ingest path no more than 10 %).
const TARGET_RATIO: f64 = 0.9;

/// The most CPU per push the reply may add (the same 10 %, measured as the service's own
/// CPU time, which other work on the machine disturbs far less than throughput).
const TARGET_CPU_RATIO: f64 = 1.1;

/// Rounds of the comparison: the two targets differ by a few per cent, so each keeps the
/// best of more rounds than the other throughput comparisons take.
const MIN_ROUNDS: usize = 5;

/// Runs plaintext then safe mode.
pub(crate) async fn run(scale: &Scale) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    let scale = Scale {
        rounds: scale.rounds.max(if scale.window.as_secs() >= 1 {
            MIN_ROUNDS
        } else {
            1
        }),
        ..scale.clone()
    };
    let dir = DataDir::new()?;
    for safe in [false, true] {
        let mode = if safe { "safe mode (AES)" } else { "plaintext" };
        let plain = write_config(&dir.0, "plain.toml", safe, "")?;
        let rule = format!(
            "\n[[accounts.replies]]\nscene = \"{SCENE}\"\non = \"any\"\ntext = \"Welcome {{openid}}! Your coupon for {{scene}}: WELCOME10\"\n"
        );
        let replying = write_config(&dir.0, "reply.toml", safe, &rule)?;
        let env = [("WECHAT_QR_EVENT_LOG", "memory")];
        let without = Subscribed::subscribe(Service::start_configured(&plain, &env).await?).await?;
        let with = Subscribed::subscribe(Service::start_configured(&replying, &env).await?).await?;
        let connections = scale.connections;
        let mut targets = [
            Target::service("wechat-qr, reply rule", &with, connections).replying(),
            Target::service("wechat-qr, no rule", &without, connections),
        ];
        let factory = if safe {
            PushFactory::safe()
        } else {
            PushFactory::plaintext()
        };
        ingest::compare(&scale, &factory, &mut targets).await?;
        outcome.rows.push(Row::throughput(
            format!(
                "webhook ingest, {mode}, in-memory log, {connections} conns: a reply rule answering every scan"
            ),
            targets[0].best,
            "same, no rule: `success`",
            targets[1].best,
            Some(TARGET_RATIO),
        ));
        let (ours, base) = (targets[0].cpu_per_push(), targets[1].cpu_per_push());
        let ratio = ours.as_secs_f64() / base.as_secs_f64().max(1e-12);
        let mut row = Row::plain(
            format!(
                "webhook ingest, {mode}, in-memory log, {connections} conns: service CPU per push with the reply rule"
            ),
            micros(ours),
        );
        row.baseline = format!("{} (same, no rule)", micros(base));
        row.ratio = format!("×{ratio:.2}");
        outcome
            .rows
            .push(row.with_target(format!("≤ ×{TARGET_CPU_RATIO}"), ratio <= TARGET_CPU_RATIO));
    }
    outcome.notes.push(format!(
        "reply: best of {} interleaved rounds per target; every answer of the replying service was checked to be a passive reply, every other `success`, and every acknowledged scan reached the subscriber",
        scale.rounds
    ));
    Ok(outcome)
}

/// `12.3 µs`: a push's CPU time needs the decimal.
fn micros(d: std::time::Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// A configuration file with the one account the pushes are signed for, plus `extra`.
fn write_config(dir: &Path, name: &str, safe: bool, extra: &str) -> Result<std::path::PathBuf> {
    use wechat_qr::config::dev;
    let aes = if safe {
        format!("encoding_aes_key = \"{AES_KEY}\"\n")
    } else {
        String::new()
    };
    // The upstream is never called on the ingest path: a closed loopback port.
    let text = format!(
        "[[accounts]]\napp_id = \"{}\"\napp_secret = \"bench-secret\"\ntoken = \"{}\"\n\
         original_id = \"{}\"\napi_base = \"http://127.0.0.1:9\"\nmp_base = \"http://127.0.0.1:9\"\n{aes}{extra}",
        dev::APP_ID,
        dev::TOKEN,
        dev::ACCOUNT,
    );
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}
