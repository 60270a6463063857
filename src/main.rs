//! The `wechat-qr` binary: parses flags and environment, sets up logging, then either runs
//! the service until SIGINT/SIGTERM or, with `simulate-scan`, asks a running simulator to
//! push a scan.

use std::process::ExitCode;

use std::{ffi::OsString, path::PathBuf};

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, parser::ValueSource};
use tokio_util::sync::CancellationToken;
use wechat_qr::{
    app,
    config::{FileConfig, ServeConfig},
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
    /// A TOML configuration file: server settings (named like their flags), [[accounts]]
    /// and [[clients]]. Flags and environment variables override it.
    #[arg(long, env = "WECHAT_QR_CONFIG", global = true)]
    config: Option<PathBuf>,
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
    /// Check a configuration file (default: --config) and print the effective
    /// configuration, secrets redacted.
    CheckConfig {
        /// The file to check.
        file: Option<PathBuf>,
    },
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
    let args: Vec<OsString> = std::env::args_os().collect();
    let (cli, matches, file) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("wechat-qr: {message}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::CheckConfig { .. }) = &cli.command {
        return match file {
            Some(file) => {
                print!("{}", effective(&matches, &file));
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("wechat-qr: check-config needs a file (check-config FILE, or --config)");
                ExitCode::FAILURE
            }
        };
    }
    logging::init(cli.log_format);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime starts");
    let result = match cli.command {
        None | Some(Command::Serve) => runtime.block_on(serve(cli.serve)),
        Some(Command::SimulateScan(args)) => runtime.block_on(simulate_scan(args)),
        Some(Command::CheckConfig { .. }) => unreachable!("answered before the runtime starts"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("wechat-qr: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The flags, environment and configuration file, merged: a flag or environment variable
/// wins over the file, the file over the default.
fn parse(args: &[OsString]) -> Result<(Cli, clap::ArgMatches, Option<FileConfig>), String> {
    let matches = Cli::command().get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).map_err(|e| e.to_string())?;
    let path = match &cli.command {
        Some(Command::CheckConfig { file: Some(file) }) => Some(file.clone()),
        _ => cli.config.clone(),
    };
    let Some(path) = path else {
        return Ok((cli, matches, None));
    };
    let command = Cli::command();
    let server_ids: Vec<String> = ServeConfig::augment_args(clap::Command::new("serve"))
        .get_arguments()
        .map(|arg| arg.get_id().to_string())
        .collect();
    let mut file = FileConfig::load(&path, &server_ids).map_err(|e| e.to_string())?;
    let long_of = |id: &str| {
        command
            .get_arguments()
            .find(|arg| arg.get_id() == id)
            .and_then(|arg| arg.get_long())
            .map(str::to_owned)
    };
    let merged = file.merged_args(args, &matches, long_of);
    let matches = Cli::command()
        .try_get_matches_from(merged)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.to_string())?;
    let given = |id: &str| {
        !file.applied.contains(id)
            && matches!(
                matches.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
    };
    file.apply_accounts(&mut cli.serve, given)
        .map_err(|e| e.to_string())?;
    Ok((cli, matches, Some(file)))
}

/// The effective configuration as TOML, each setting with where it came from; secrets
/// are never printed.
fn effective(matches: &clap::ArgMatches, file: &FileConfig) -> String {
    let quote = |s: &str| format!("{s:?}");
    let mut out = format!(
        "# {} is valid; effective configuration:\n",
        file.path.display()
    );
    for arg in ServeConfig::augment_args(clap::Command::new("serve")).get_arguments() {
        let id = arg.get_id().as_str();
        let secret = arg.is_hide_env_values_set();
        let from = if file.applied.contains(id) {
            "file"
        } else {
            match matches.value_source(id) {
                Some(ValueSource::CommandLine) => "flag",
                Some(ValueSource::EnvVariable) => "environment",
                Some(ValueSource::DefaultValue) => "default",
                _ => "unset",
            }
        };
        let value = match matches.get_raw(id) {
            _ if secret && from != "unset" => quote("<redacted>"),
            Some(mut raw) => raw
                .next()
                .map_or_else(String::new, |v| quote(&v.to_string_lossy())),
            None => continue,
        };
        out.push_str(&format!("{id} = {value}  # {from}\n"));
    }
    for account in &file.accounts {
        out.push_str(&format!(
            "\n[[accounts]]\napp_id = {}\napp_secret = \"<redacted>\"\n",
            quote(&account.app_id)
        ));
        for (name, present) in [
            ("token", account.token.is_some()),
            ("encoding_aes_key", account.encoding_aes_key.is_some()),
            ("previous_token", account.previous_token.is_some()),
            (
                "previous_encoding_aes_key",
                account.previous_encoding_aes_key.is_some(),
            ),
        ] {
            if present {
                out.push_str(&format!("{name} = \"<redacted>\"\n"));
            }
        }
        if let Some(mode) = account.encrypt_mode {
            out.push_str(&format!(
                "encrypt_mode = {}\n",
                quote(&format!("{mode:?}").to_lowercase())
            ));
        }
        for (name, value) in [
            ("original_id", &account.original_id),
            ("api_base", &account.api_base),
            ("mp_base", &account.mp_base),
        ] {
            if let Some(value) = value {
                out.push_str(&format!("{name} = {}\n", quote(value)));
            }
        }
    }
    out
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
    tracing::info!(console_url = %running.console_url(), "web console: open it in a browser");
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
