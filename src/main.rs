//! The `wechat-qr` binary: parses flags and environment, sets up logging, then either runs
//! the service until SIGINT/SIGTERM or, with `simulate-scan`, asks a running simulator to
//! push a scan.

use std::process::ExitCode;

use std::{ffi::OsString, path::PathBuf};

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, parser::ValueSource};
use tokio_util::sync::CancellationToken;
use wechat_qr::{
    app,
    config::{FileConfig, ReplyMessage, ReplyOn, ReplyRule, SceneMatch, ServeConfig, redact_url},
    descriptors::{self, ConnectionPlan},
    logging::{self, LogFormat},
    simulator::ScanRequest,
    telemetry,
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
    /// The simulator, as a URL (`http://127.0.0.1:8081`) or an address (`127.0.0.1:8081`,
    /// taken as `http://`). Default: the service's own setting, WECHAT_QR_SIMULATOR_ADDR
    /// (or `simulator_addr` in --config), so both reach the same instance.
    #[arg(long)]
    simulator: Option<String>,
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
                // The plan serve would make: it raises the soft limit to the hard one.
                let limit = rlimit::getrlimit(rlimit::Resource::NOFILE)
                    .map_or_else(|_| descriptors::current_limit(), |(_, hard)| hard);
                match ConnectionPlan::new(limit, &cli.serve.connection_settings()) {
                    Ok(plan) => {
                        println!("\n# descriptors: {plan}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("wechat-qr: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            None => {
                eprintln!("wechat-qr: check-config needs a file (check-config FILE, or --config)");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime starts");
    // The OTLP exporter's gRPC transport runs its connection on this runtime.
    let traces = match runtime.block_on(async { telemetry::Traces::from_env() }) {
        Ok(traces) => traces,
        Err(message) => {
            eprintln!("wechat-qr: {message}");
            return ExitCode::FAILURE;
        }
    };
    logging::init(cli.log_format, traces.as_ref());
    if traces.is_some() {
        tracing::info!(
            // Without userinfo, query or fragment: a collector's API key may be there
            // (headers, which may carry one too, are never shown).
            endpoint = url::Url::parse(&telemetry::endpoint())
                .map_or_else(|_| "<not a URL>".to_owned(), |url| redact_url(&url))
                .as_str(),
            "exporting traces over OTLP"
        );
    }
    // Before anything else opens a descriptor: a soft limit of 1,024 (a common default) is
    // far below what the listeners' caps need, and the hard limit is ours to use.
    match descriptors::raise_limit() {
        Ok(limit) => tracing::info!(
            soft_before = limit.soft_before,
            soft = limit.soft,
            hard = limit.hard,
            "descriptor limit (RLIMIT_NOFILE) raised to the hard limit"
        ),
        Err(error) => tracing::warn!(
            %error,
            soft = descriptors::current_limit(),
            "cannot raise the descriptor limit; the connection caps are sized from the soft limit"
        ),
    }
    let result = match cli.command {
        None | Some(Command::Serve) => runtime.block_on(serve(cli.serve, cli.config)),
        Some(Command::SimulateScan(args)) => {
            runtime.block_on(simulate_scan(args, cli.serve.simulator_addr))
        }
        Some(Command::CheckConfig { .. }) => unreachable!("answered before the runtime starts"),
    };
    // The last spans go out while the runtime still drives the exporter's connection.
    if let Some(traces) = traces {
        traces.shutdown();
    }
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
            .and_then(|arg| Some((arg.get_long()?.to_owned(), arg.get_action().takes_values())))
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
        if id.starts_with("forward_") && !file.accounts.is_empty() {
            // Set per account: printed in its [[accounts]] table below.
            continue;
        }
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
            // Not a secret, but its userinfo and query may hold one.
            _ if id == "forward_url" && from != "unset" => match matches.get_one::<url::Url>(id) {
                Some(url) => quote(&redact_url(url)),
                None => continue,
            },
            // Its password is a secret; the rest says which Redis.
            _ if id == "redis_url" && from != "unset" => {
                match matches.get_one::<wechat_qr::secret::Secret>(id) {
                    Some(url) => quote(&wechat_qr::events::redact(url)),
                    None => continue,
                }
            }
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
        if let Some(budget) = account.permanent_budget {
            out.push_str(&format!("permanent_budget = {budget}\n"));
        }
        if let Some(url) = &account.forward_url {
            out.push_str(&format!("forward_url = {}\n", quote(&redact_url(url))));
        }
        if let Some(scans) = account.forward_scans {
            out.push_str(&format!("forward_scans = {scans}\n"));
        }
        if let Some(failure) = account.forward_failure {
            out.push_str(&format!(
                "forward_failure = {}\n",
                quote(&format!("{failure:?}").to_lowercase())
            ));
        }
        if let Some(ms) = account.forward_timeout_ms {
            out.push_str(&format!("forward_timeout_ms = {ms}\n"));
        }
        for rule in &account.replies {
            out.push_str(&reply_table(rule));
        }
    }
    let list = |items: &[String]| {
        let quoted: Vec<String> = items.iter().map(|i| quote(i)).collect();
        format!("[{}]", quoted.join(", "))
    };
    for client in &file.clients {
        out.push_str(&format!("\n[[clients]]\nname = {}\n", quote(&client.name)));
        if let Some(digest) = &client.token_sha256 {
            out.push_str(&format!("token_sha256 = {}\n", quote(digest)));
        }
        if let Some(subject) = &client.subject {
            out.push_str(&format!("subject = {}\n", quote(subject)));
        }
        match &client.methods {
            Some(methods) => out.push_str(&format!("methods = {}\n", list(methods))),
            None => out.push_str("# methods: all\n"),
        }
        match &client.accounts {
            Some(accounts) => out.push_str(&format!("accounts = {}\n", list(accounts))),
            None => out.push_str("# accounts: all\n"),
        }
        out.push_str(&format!("permanent = {}\n", client.permanent));
    }
    out
}

/// One `[[accounts.replies]]` table, as `check-config` prints it.
fn reply_table(rule: &ReplyRule) -> String {
    let quote = |s: &str| format!("{s:?}");
    let mut out = String::from("\n[[accounts.replies]]\n");
    match &rule.scene {
        SceneMatch::Exact(scene) => out.push_str(&format!("scene = {}\n", quote(scene))),
        SceneMatch::Prefix(prefix) => {
            out.push_str(&format!("scene_prefix = {}\n", quote(prefix)));
        }
    }
    let on = match rule.on {
        ReplyOn::Subscribe => "subscribe",
        ReplyOn::Scan => "scan",
        ReplyOn::Any => "any",
    };
    out.push_str(&format!("on = {}\n", quote(on)));
    match &rule.message {
        ReplyMessage::Text(text) => out.push_str(&format!("text = {}\n", quote(text))),
        ReplyMessage::News(item) => {
            for (name, value) in [
                ("title", &item.title),
                ("description", &item.description),
                ("url", &item.url),
                ("pic_url", &item.pic_url),
            ] {
                out.push_str(&format!("{name} = {}\n", quote(value)));
            }
        }
    }
    out
}

async fn serve(config: ServeConfig, file: Option<PathBuf>) -> Result<(), String> {
    let signals = Signals::install();
    let settings = config.resolve().map_err(|e| e.to_string())?;
    // Anyone on the path can read tokens, tickets and openids off a plaintext port.
    if settings.tls.is_none() && !settings.grpc_addr.ip().is_loopback() {
        tracing::warn!(
            grpc_addr = %settings.grpc_addr,
            "gRPC is plaintext on a non-loopback address: bearer tokens, tickets and openids \
             cross the network unencrypted; set WECHAT_QR_TLS_CERT and WECHAT_QR_TLS_KEY"
        );
    }
    let tls = match &settings.tls {
        None => "off",
        Some(tls) if tls.client_ca.is_some() => "mutual (client certificates required)",
        Some(_) => "on",
    };
    let shutdown = CancellationToken::new();
    let base = config.clone();
    let running = app::start(settings, shutdown.clone())
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(
        grpc_addr = %running.grpc_addr,
        tls,
        clients = running.access.len(),
        "gRPC listening (reflection and health enabled)"
    );
    if running.accounts.clients().len() == 1 {
        tracing::info!(webhook_url = %running.webhook_url(), "webhook listening for WeChat pushes");
    } else {
        for client in running.accounts.clients() {
            tracing::info!(
                app_id = client.app_id(),
                webhook_url = %running.webhook_url_of(client.app_id()),
                "webhook listening for this account's WeChat pushes"
            );
        }
    }
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
            app_ids = %running
                .accounts
                .clients()
                .iter()
                .map(|c| c.app_id())
                .collect::<Vec<_>>()
                .join(","),
            "talking to WeChat for the configured accounts"
        ),
    }
    signals
        .wait(|| reload(file.as_deref(), &base, &running))
        .await;
    tracing::info!("shutting down: no new pushes, ending streams with their resume cursors");
    shutdown.cancel();
    running.wait().await;
    Ok(())
}

/// SIGTERM and SIGHUP handlers, installed before the service announces itself: a SIGHUP
/// that arrives once the addresses are logged must reload, not end the process.
#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        Self {
            term: signal(SignalKind::terminate()).expect("SIGTERM handler installs"),
            hup: signal(SignalKind::hangup()).expect("SIGHUP handler installs"),
        }
    }

    /// Waits for SIGINT or SIGTERM; each SIGHUP in between runs `reload`.
    async fn wait<F: Future<Output = ()>>(mut self, reload: impl Fn() -> F) {
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            tokio::select! {
                _ = &mut ctrl_c => return,
                _ = self.term.recv() => return,
                _ = self.hup.recv() => reload().await,
            }
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> Self {
        Self
    }

    async fn wait<F: Future<Output = ()>>(self, _reload: impl Fn() -> F) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// SIGHUP: reads the configuration file (and the secret files it names) again and puts
/// every per-account setting — AppSecret, base URLs, permanent budget, webhook tokens and
/// keys, forwarding, replies — and its `[[clients]]` in force; connections and streams,
/// and calls already admitted, keep running. A file that does not load or resolve,
/// clients that do not fit, or added or removed accounts are refused as a whole, and the
/// configuration in force keeps serving. Top-level server settings take effect at the
/// next start.
async fn reload(file: Option<&std::path::Path>, base: &ServeConfig, running: &app::Running) {
    let Some(path) = file else {
        tracing::warn!("SIGHUP ignored: no configuration file (--config) to reload");
        return;
    };
    let server_ids: Vec<String> = ServeConfig::augment_args(clap::Command::new("serve"))
        .get_arguments()
        .map(|arg| arg.get_id().to_string())
        .collect();
    let resolved = FileConfig::load(path, &server_ids)
        .map_err(|e| e.to_string())
        .and_then(|file| {
            let mut config = base.clone();
            config.clients = file.clients.clone();
            if !file.accounts.is_empty() {
                config.accounts = file.accounts.clone();
            }
            config
                .resolve()
                .map_err(|e| format!("{}: {e}", path.display()))
        });
    let reloaded = match resolved {
        Ok(settings) => running.reload(settings).await,
        Err(e) => Err(e),
    };
    match reloaded {
        Ok(what) => tracing::info!(
            path = %path.display(),
            "SIGHUP: reloaded {what}; top-level server settings change at the next start"
        ),
        Err(error) => tracing::error!(
            %error,
            "SIGHUP: reload refused; the configuration in force keeps serving"
        ),
    }
}

/// The simulator's base URL: `--simulator` as given (a bare address taken as `http://`),
/// else the service's own WECHAT_QR_SIMULATOR_ADDR, an unspecified IP reached on loopback.
fn simulator_url(given: Option<&str>, addr: std::net::SocketAddr) -> Result<url::Url, String> {
    let text = match given {
        Some(value) if value.contains("://") => value.to_owned(),
        Some(value) => format!("http://{value}"),
        None => {
            let mut addr = addr;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}")
        }
    };
    url::Url::parse(&text)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
        .ok_or_else(|| {
            format!(
                "--simulator {text:?} is neither an http:// URL nor a host:port address \
                 (an address without a scheme is taken as http://)"
            )
        })
}

async fn simulate_scan(args: SimulateScan, addr: std::net::SocketAddr) -> Result<(), String> {
    let simulator = simulator_url(args.simulator.as_deref(), addr)?;
    let request = ScanRequest {
        ticket: args.ticket.clone(),
        openid: args.openid,
        new_follower: args.new_follower,
        deliveries: Some(args.deliveries),
    };
    let url = format!("{}/sim/scan", simulator.as_str().trim_end_matches('/'));
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?
        .post(&url)
        .json(&request)
        .send()
        .await
        .map_err(|e| format!("cannot reach the simulator at {simulator}: {e}"))?;
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
