//! The `wechat-qr` binary: parses flags and environment, sets up logging, then either runs
//! the service until SIGINT/SIGTERM or, with `simulate-scan`, asks a running simulator to
//! push a scan.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use wechat_qr::{
    app,
    config::ServeConfig,
    logging::{self, LogFormat},
    simulator::ScanRequest,
};

#[derive(Debug, Parser)]
#[command(name = "wechat-qr", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeConfig,
    /// How log lines are written.
    #[arg(long, env = "WECHAT_QR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Make the running simulator push a signed scan event for a ticket to the webhook.
    SimulateScan(SimulateScan),
}

#[derive(Debug, clap::Args)]
struct SimulateScan {
    /// The scanned ticket, as CreateTicket returned it.
    #[arg(long)]
    ticket: String,
    /// The scanning user's OpenID.
    #[arg(long)]
    openid: String,
    /// The user follows the account with this scan (`subscribe`); otherwise `SCAN`.
    #[arg(long)]
    new_follower: bool,
    /// Send the identical push this many times, as WeChat's retries do (1-3).
    #[arg(long, default_value_t = 1)]
    deliveries: usize,
    /// The simulator's address, as the service logged it.
    #[arg(
        long,
        env = "WECHAT_QR_SIMULATOR_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    simulator: url::Url,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime starts");
    let result = match cli.command {
        None | Some(Command::Serve) => runtime.block_on(serve(cli.serve)),
        Some(Command::SimulateScan(args)) => runtime.block_on(simulate_scan(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("wechat-qr: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: ServeConfig) -> Result<(), String> {
    let settings = config.resolve().map_err(|e| e.to_string())?;
    let shutdown = CancellationToken::new();
    let running = app::start(settings, shutdown.clone())
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(grpc_addr = %running.grpc_addr, "gRPC listening (reflection and health enabled)");
    tracing::info!(webhook_url = %running.webhook_url(), "webhook listening for WeChat pushes");
    tracing::info!(admin_url = %running.admin_url(), "admin listening: /metrics, /healthz");
    // One line that says which WeChat this is; the simulator at WARN, so a production
    // deployment that lost its credentials is noticed.
    match &running.simulator {
        Some(sim) => tracing::warn!(
            mode = "simulator",
            simulator_url = %format!("http://{}", sim.addr),
            "no WECHAT_APP_ID/WECHAT_APP_SECRET: running on the embedded WeChat simulator, \
             NOT WeChat (public development credentials); simulate a scan with: \
             wechat-qr simulate-scan --simulator http://{} --ticket <TICKET> --openid <OPENID> [--new-follower]",
            sim.addr
        ),
        None => tracing::info!(
            mode = "wechat",
            app_id = running.client.app_id(),
            "talking to WeChat for the configured account"
        ),
    }
    wait_for_signal().await;
    tracing::info!("shutting down: no new pushes, ending streams with their resume cursors");
    shutdown.cancel();
    running.wait().await;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn simulate_scan(args: SimulateScan) -> Result<(), String> {
    let request = ScanRequest {
        ticket: args.ticket.clone(),
        openid: args.openid,
        new_follower: args.new_follower,
        deliveries: Some(args.deliveries),
    };
    let url = format!("{}/sim/scan", args.simulator.as_str().trim_end_matches('/'));
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?
        .post(&url)
        .json(&request)
        .send()
        .await
        .map_err(|e| format!("cannot reach the simulator at {}: {e}", args.simulator))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!("simulator answered {status}: {body}"));
    }
    let answer: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("unexpected simulator answer: {e}"))?;
    let deliveries = answer["deliveries"].as_array().cloned().unwrap_or_default();
    let mut all_ok = !deliveries.is_empty();
    for delivery in &deliveries {
        let status = delivery["status"].as_u64().unwrap_or(0);
        let body = delivery["body"].as_str().unwrap_or_default();
        println!(
            "pushed {} for ticket {}: webhook answered {status} {body}",
            if args.new_follower {
                "subscribe"
            } else {
                "SCAN"
            },
            args.ticket
        );
        all_ok &= status == 200 && body == "success";
    }
    if all_ok {
        Ok(())
    } else {
        Err("the webhook did not accept the push".to_owned())
    }
}
