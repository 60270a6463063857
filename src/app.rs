//! Wiring: binds the listeners, starts the simulator when there are no credentials,
//! builds the log, webhook, upstream client and gRPC service, and runs them until the
//! shutdown token is cancelled. `main` and the tests both start the service through
//! [`start`], so tests run exactly what users run.
//!
//! Shutdown runs in order, so no acknowledged push is lost to a subscriber: the webhook
//! stops accepting and answers its in-flight pushes first; only then do streams end
//! (UNAVAILABLE, with the cursor to resume after) and the gRPC server stop.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tonic::{
    service::Routes,
    transport::{Certificate, Identity, ServerTlsConfig},
};
use url::Url;

use crate::{
    config::{Settings, Storage, TlsSettings},
    console::Console,
    descriptors::{ConnectionPlan, current_limit},
    events::groups::{Groups, StoreError as GroupsStoreError},
    events::{Backend, EventLog, LogError, OpenError, Subscribers},
    grpc::{
        Access, AccessError, Accounts, ChannelStatsService, ConsumerGroupService,
        MAX_STATS_RESPONSE_BYTES, QrService, QrServiceRoutes,
    },
    grpc_listener::GrpcConnections,
    metrics::Metrics,
    pb::{
        self, channel_stats_service_server::ChannelStatsServiceServer,
        consumer_group_service_server::ConsumerGroupServiceServer,
        qr_service_server::QrServiceServer,
    },
    simulator::Simulator,
    stats::{ChannelStats, StatsError},
    webhook::{self, Webhook, Webhooks},
    wechat::{PermanentTickets, SharedToken, StoreError, WeChatClient, WeChatError},
};

/// Gap between HTTP/2 keepalive pings, so streams kept open for days survive idle
/// timeouts of proxies and NATs in between.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// How long a gRPC client may take to complete its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long streams may take to deliver their last events at shutdown.
const STREAM_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// HTTP/2 streams a connection may open beyond its subscription cap, so one whose
/// subscriptions are all open can still make unary calls (CreateTicket, GetImage).
const UNARY_STREAM_HEADROOM: u32 = 100;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind.
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The upstream client could not be built.
    #[error("cannot build the WeChat client: {0}")]
    Client(#[from] WeChatError),
    /// The data directory cannot be used.
    #[error(transparent)]
    Storage(#[from] OpenError),
    /// The permanent tickets could not be loaded.
    #[error(transparent)]
    Permanent(#[from] StoreError),
    /// The event log could not tell its head, where the fan-out hub starts.
    #[error("cannot read the event log: {0}")]
    Log(#[from] LogError),
    /// The channel statistics could not be opened.
    #[error(transparent)]
    Stats(#[from] StatsError),
    /// The consumer groups' file could not be opened.
    #[error(transparent)]
    Groups(#[from] GroupsStoreError),
    /// The reflection service could not read the descriptor set.
    #[error("cannot build gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The `[[clients]]` cannot be used with this account.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// A connection cap does not fit the descriptor limit.
    #[error(transparent)]
    Descriptors(#[from] crate::descriptors::PlanError),
    /// The TLS certificate, key or client CA is not usable PEM.
    #[error(
        "cannot serve gRPC over TLS with WECHAT_QR_TLS_CERT / WECHAT_QR_TLS_KEY / WECHAT_QR_TLS_CLIENT_CA: {0}"
    )]
    Tls(#[source] tonic::transport::Error),
}

/// The embedded simulator of a running service.
#[derive(Debug, Clone)]
pub struct RunningSimulator {
    /// Where its fake API and admin endpoints listen.
    pub addr: SocketAddr,
    /// Its state and knobs.
    pub simulator: Arc<Simulator>,
}

/// A started service.
#[derive(Debug)]
pub struct Running {
    /// The bound gRPC address.
    pub grpc_addr: SocketAddr,
    /// The bound webhook address.
    pub http_addr: SocketAddr,
    /// The bound admin address (`/metrics`, `/healthz`).
    pub admin_addr: SocketAddr,
    /// The simulator, when no credentials are configured.
    pub simulator: Option<RunningSimulator>,
    /// The first account's upstream client (its token cache counts fetches).
    pub client: Arc<WeChatClient>,
    /// Every account's upstream client, in configuration order.
    pub accounts: Accounts,
    /// Every account's webhook; [`Running::reload`] rotates their tokens and keys.
    pub webhooks: Webhooks,
    /// The event log.
    pub log: Arc<dyn EventLog>,
    /// How many StreamEvents subscriptions are running.
    pub subscribers: Subscribers,
    /// The channel statistics of each account, in configuration order.
    pub stats: Vec<ChannelStats>,
    /// Every metric, as `/metrics` serves them.
    pub metrics: Arc<Metrics>,
    /// The consumer groups.
    pub groups: Groups,
    /// Who may call the gRPC API; [`Access::replace`] reloads it.
    pub access: Access,
    /// Every account's permanent tickets and budgets; [`Running::reload`] replaces budgets.
    permanent: Arc<PermanentTickets>,
    /// The simulator's base URL, put in place of the accounts' bases on a reload too.
    simulator_base: Option<Url>,
    tasks: JoinSet<()>,
}

impl Running {
    /// The webhook's URL (`/wechat`, the only account's; with several, each account's
    /// is [`Running::webhook_url_of`]).
    pub fn webhook_url(&self) -> String {
        format!("http://{}{}", self.http_addr, webhook::PATH)
    }

    /// The webhook URL of the account `app_id`.
    pub fn webhook_url_of(&self, app_id: &str) -> String {
        format!("http://{}{}", self.http_addr, webhook::path_of(app_id))
    }

    /// Puts reloaded settings in force without dropping a connection or stream: every
    /// per-account setting — the AppSecret and base URLs (the next token fetch uses the new
    /// secret; calls in flight finish with the old one), the permanent budget, the webhook
    /// tokens and keys, forwarding and replies — and the `[[clients]]`. Refused as a
    /// whole, changing nothing, when the clients do not fit or accounts were added or
    /// removed (that takes a restart). Says what changed.
    pub async fn reload(&self, mut settings: Settings) -> Result<String, String> {
        let served: Vec<&str> = self.accounts.clients().iter().map(|c| c.app_id()).collect();
        let mut wanted: Vec<&str> = settings.accounts.iter().map(|a| a.app_id()).collect();
        let mut sorted = served.clone();
        sorted.sort_unstable();
        wanted.sort_unstable();
        if sorted != wanted {
            return Err(format!(
                "the accounts changed (serving {}, the file now has {}): adding or removing \
                 an account takes a restart",
                served.join(", "),
                wanted.join(", ")
            ));
        }
        if let Some(base) = &self.simulator_base {
            for account in &mut settings.accounts {
                account.upstream.api_base = base.clone();
                account.upstream.mp_base = base.clone();
            }
        }
        self.access
            .replace(&settings.clients)
            .map_err(|e| e.to_string())?;
        let mut upstream_changes = Vec::new();
        for account in &settings.accounts {
            if let Some(webhook) = self.webhooks.get(account.app_id()) {
                webhook.reload(account.webhook.clone());
            }
            let Some(client) = self
                .accounts
                .clients()
                .iter()
                .find(|c| c.app_id() == account.app_id())
            else {
                continue;
            };
            let changed = client
                .reload(account.upstream.clone())
                .await
                .map_err(|e| format!("account {}: {e}", account.app_id()))?;
            if !changed.is_empty() {
                upstream_changes.push(format!("{} ({})", account.app_id(), changed.join(", ")));
            }
            self.permanent
                .set_budget(account.app_id(), account.permanent_budget);
            client.report_permanent_budget().await;
        }
        let upstream = if upstream_changes.is_empty() {
            String::new()
        } else {
            format!(
                "; new upstream settings for {}",
                upstream_changes.join(", ")
            )
        };
        Ok(format!(
            "{} account(s) and {} client(s){upstream}",
            settings.accounts.len(),
            settings.clients.len()
        ))
    }

    /// The admin listener's base URL (`/metrics` and `/healthz` below it).
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    /// The web console's URL, on the admin listener.
    pub fn console_url(&self) -> String {
        format!("http://{}{}", self.admin_addr, crate::console::PATH)
    }

    /// Waits until every listener has stopped (after the shutdown token is cancelled).
    pub async fn wait(mut self) {
        while let Some(result) = self.tasks.join_next().await {
            if let Err(e) = result {
                tracing::error!(error = %e, "a server task failed");
            }
        }
        // Every listener has stopped: nothing appends or counts any more.
        for stats in &self.stats {
            stats.close();
        }
        self.log.close().await;
    }
}

/// Mirrors whether the event log accepts writes into gRPC health and a metric: a full or
/// failing disk makes the service NOT_SERVING (so a load balancer stops sending it work)
/// until writes succeed again.
async fn report_writability(
    mut writable: tokio::sync::watch::Receiver<bool>,
    health: tonic_health::server::HealthReporter,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    loop {
        let now = *writable.borrow_and_update();
        metrics.event_log_writable.set(i64::from(now));
        // With Redis, the log is writable exactly while Redis answers (the log's reader
        // polls it continuously, so an outage shows within a second or so).
        if let Some(redis_up) = &metrics.redis_up {
            redis_up.set(i64::from(now));
        }
        if !shutdown.is_cancelled() {
            if now {
                health.set_serving::<QrServiceServer<QrService>>().await;
                health
                    .set_service_status("", tonic_health::ServingStatus::Serving)
                    .await;
            } else {
                tracing::warn!("event log not writable: gRPC health reports NOT_SERVING");
                health.set_not_serving::<QrServiceServer<QrService>>().await;
                health
                    .set_service_status("", tonic_health::ServingStatus::NotServing)
                    .await;
            }
        }
        tokio::select! {
            changed = writable.changed() => if changed.is_err() { return },
            () = shutdown.cancelled() => return,
        }
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound TCP listener has an address")
}

/// Binds every listener and starts serving; returns once all are accepting.
pub async fn start(
    mut settings: Settings,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    let mut tasks = JoinSet::new();
    let plan = ConnectionPlan::new(current_limit(), &settings.connections)?;
    tracing::info!(%plan, "connection caps sized from the descriptor limit");

    let simulator = match settings.simulator.clone() {
        Some(sim_settings) => {
            let listener = bind("the WeChat simulator", sim_settings.addr).await?;
            let addr = local_addr(&listener);
            let base = Url::parse(&format!("http://{addr}")).expect("socket address URL");
            for account in &mut settings.accounts {
                account.upstream.api_base = base.clone();
                account.upstream.mp_base = base.clone();
            }
            let simulator = Simulator::new(sim_settings);
            tasks.spawn(
                simulator
                    .clone()
                    .serve_capped(listener, plan.simulator, shutdown.clone()),
            );
            Some(RunningSimulator { addr, simulator })
        }
        None => None,
    };

    let http_listener = bind("WeChat pushes", settings.http_addr).await?;
    let http_addr = local_addr(&http_listener);
    let grpc_listener = bind("gRPC", settings.grpc_addr).await?;
    let grpc_addr = local_addr(&grpc_listener);
    let admin_listener = bind("the admin endpoints", settings.admin_addr).await?;
    let admin_addr = local_addr(&admin_listener);

    let app_ids = settings.app_ids();
    let metrics = Arc::new(Metrics::new(
        &app_ids,
        matches!(settings.storage, Storage::Redis { .. }),
    ));
    // One replay window for all: the seal book is shared by every account's webhook.
    let seal_keep = settings.accounts[0].webhook.seal_keep();
    let backend = Backend::open(
        &settings.storage,
        &app_ids,
        settings.retention,
        seal_keep,
        settings.replay_guard_seals,
    )
    .await?;
    let log = backend.log.clone();
    let webhooks = Webhooks::new(
        settings
            .accounts
            .iter()
            .enumerate()
            .map(|(i, account)| {
                Webhook::new(
                    account.webhook.clone(),
                    i == 0,
                    log.clone(),
                    backend.seals.clone(),
                    metrics.clone(),
                )
            })
            .collect(),
    );
    let mut permanent =
        PermanentTickets::open(backend.records.clone(), settings.permanent_store.as_deref())
            .await?;
    for account in &settings.accounts {
        permanent = permanent.with_budget(account.app_id(), account.permanent_budget);
    }
    let permanent = Arc::new(permanent);
    let mut clients = Vec::with_capacity(settings.accounts.len());
    for account in &settings.accounts {
        // With several replicas on Redis, one access_token per AppID for all of them.
        let shared_token = match &settings.storage {
            Storage::Redis { url, prefix } => Some(
                SharedToken::open(url, prefix, account.app_id(), account.upstream.refresh_at)
                    .await?,
            ),
            Storage::Durable { .. } | Storage::Memory => None,
        };
        let client = Arc::new(WeChatClient::new(
            account.upstream.clone(),
            permanent.clone(),
            shared_token,
            &metrics,
        )?);
        client.report_permanent_budget().await;
        clients.push(client);
    }
    let client = clients[0].clone();
    let accounts = Accounts::new(clients);
    let access = Access::new(&settings.clients, &app_ids, metrics.clone())?;
    if let Some(sim) = &simulator {
        sim.simulator
            .set_webhook_url(format!("http://{http_addr}{}", webhook::PATH));
        // WeChat remembers permanent codes forever; a restarted simulator must too.
        for known in permanent.known().await {
            let scene = match known.scene {
                crate::wechat::Scene::Id(id) => id.to_string(),
                crate::wechat::Scene::Str(s) => s,
            };
            sim.simulator.restore_permanent(
                &known.app_id,
                known.ticket.ticket,
                known.ticket.url,
                scene,
            );
        }
    }

    let http_limits = |cap: usize| crate::http_server::Limits {
        cap,
        per_address: settings.connections.per_address,
        trusted_proxies: settings.connections.trusted_proxies.clone(),
        header_read_timeout: settings.connections.header_read_timeout,
        metrics: Some(metrics.clone()),
    };
    // Streams and the gRPC server stop only after the webhook has drained.
    let streams_shutdown = CancellationToken::new();
    {
        let webhooks = webhooks.clone();
        let serve_webhook = crate::http_server::serve_capped(
            "webhook",
            http_listener,
            http_limits(plan.webhook),
            move |request| {
                let webhooks = webhooks.clone();
                async move { Ok(webhooks.handle(request).await) }
            },
            shutdown.clone(),
        );
        let streams_shutdown = streams_shutdown.clone();
        tasks.spawn(async move {
            serve_webhook.await;
            streams_shutdown.cancel();
        });
    }

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<QrServiceServer<QrService>>().await;
    tasks.spawn(report_writability(
        log.writable(),
        health.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // google.rpc.ErrorInfo, BadRequest…: grpcurl prints an error's details only
            // when reflection can describe them.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    // grpcurl releases before 1.8.8 only speak the v1alpha reflection protocol.
    // Every service refuses requests beyond the configured size, not tonic's 4 MB default.
    let max_request = settings.messages.max_request_bytes;
    let health_service = health_service.max_decoding_message_size(max_request);
    let reflection_v1 = reflection()
        .build_v1()?
        .max_decoding_message_size(max_request);
    let reflection_v1alpha = reflection()
        .build_v1alpha()?
        .max_decoding_message_size(max_request);
    // The hub is the one live reader of the log; it drains the log into the streams once
    // the webhook has stopped, so it runs until the server's tasks are done.
    let (subscribers, hub) = Subscribers::start(
        log.clone(),
        settings.limits,
        &metrics,
        streams_shutdown.clone(),
    )
    .await?;
    tasks.spawn(hub);
    // Counts from its own cursor; stops with the shutdown and resumes there next start.
    // Each account's statistics count its own events.
    let mut stats = Vec::with_capacity(app_ids.len());
    for (i, app_id) in app_ids.iter().enumerate() {
        let (account_stats, stats_follower) = ChannelStats::start(
            &settings.storage,
            app_id,
            i == 0,
            settings.stats_retain_days,
            log.clone(),
            shutdown.clone(),
        )
        .await?;
        tasks.spawn(stats_follower);
        stats.push(account_stats);
    }
    health
        .set_serving::<ChannelStatsServiceServer<ChannelStatsService>>()
        .await;
    let stats_service = ChannelStatsServiceServer::new(ChannelStatsService::new(
        app_ids.iter().cloned().zip(stats.iter().cloned()).collect(),
        metrics.clone(),
    ))
    .max_decoding_message_size(max_request)
    .max_encoding_message_size(MAX_STATS_RESPONSE_BYTES);
    // Consumer groups follow the log like the statistics do, with state of their own
    // beside it (on Redis: Redis consumer groups on the log's stream).
    let groups = Groups::open(
        log.clone(),
        match &settings.storage {
            Storage::Durable { dir } => Some(dir.as_path()),
            Storage::Memory | Storage::Redis { .. } => None,
        },
        backend.redis.clone(),
        settings.max_groups_per_account,
        metrics.clone(),
        streams_shutdown.clone(),
    )
    .await?;
    health
        .set_serving::<ConsumerGroupServiceServer<ConsumerGroupService>>()
        .await;
    let groups_service = ConsumerGroupServiceServer::new(ConsumerGroupService::new(
        accounts.clone(),
        groups.clone(),
        metrics.clone(),
        settings.limits,
    ))
    .max_decoding_message_size(max_request);
    let service = QrService::new(accounts.clone(), subscribers.clone(), metrics.clone());
    let qr_routes = QrServiceRoutes::new(service, settings.messages);
    // The console's gRPC-Web reaches these very instances: one hub, one set of caps, and
    // the same caller check as the gRPC port.
    let console_services = tower_layer::Layer::layer(
        &access.layer(),
        Routes::new(qr_routes.clone()).add_service(stats_service.clone()),
    );
    tasks.spawn(crate::admin::serve(
        admin_listener,
        metrics.clone(),
        Console::new(
            console_services,
            simulator.as_ref().map(|sim| sim.simulator.clone()),
            access.clone(),
            app_ids.clone(),
        ),
        // Loopback by default, where every client shares one address: the cap (with its
        // oldest-waiting eviction) is the bound, not a per-address share.
        crate::http_server::Limits {
            per_address: usize::MAX,
            ..http_limits(plan.admin)
        },
        shutdown.clone(),
    ));
    let grpc_connections = GrpcConnections::new(
        plan.grpc,
        &settings.connections,
        settings.tls.is_some(),
        metrics.clone(),
    );
    let mut grpc = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        // Subscriptions per connection are counted by the service (RESOURCE_EXHAUSTED
        // past the cap, which a client can act on); HTTP/2's own limit sits above it, so
        // a client that ignores the answer still cannot open streams without bound.
        .max_concurrent_streams(
            settings
                .limits
                .max_streams_per_connection
                .saturating_add(UNARY_STREAM_HEADROOM),
        );
    if let Some(tls) = &settings.tls {
        grpc = grpc.tls_config(tls_config(tls)).map_err(StartError::Tls)?;
    }
    let grpc = grpc
        // Outermost, so the caller's trace is the parent of everything the call does.
        .layer(crate::telemetry::GrpcTraceLayer)
        // Each call marks its connection busy (not idle, not to be closed to make room).
        .layer(grpc_connections.layer())
        // Callers are checked once, around every service; health and reflection pass.
        .layer(access.layer())
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(qr_routes)
        .add_service(stats_service)
        .add_service(groups_service)
        .serve_with_incoming_shutdown(
            grpc_connections.serve(grpc_listener, shutdown.clone(), streams_shutdown.clone()),
            {
                let shutdown = shutdown.clone();
                let streams_shutdown = streams_shutdown.clone();
                async move {
                    shutdown.cancelled().await;
                    health.set_not_serving::<QrServiceServer<QrService>>().await;
                    streams_shutdown.cancelled().await;
                }
            },
        );
    tasks.spawn(async move {
        // A client that stopped reading never takes its final status; do not let it hold
        // the process hostage.
        let stalled_clients = async {
            streams_shutdown.cancelled().await;
            tokio::time::sleep(STREAM_DRAIN_TIMEOUT).await;
        };
        tokio::select! {
            served = grpc => if let Err(e) = served {
                tracing::error!(error = %e, "gRPC server failed");
            },
            () = stalled_clients => {
                tracing::warn!("streams still open after the drain timeout; closing them");
            }
        }
    });

    let simulator_base = simulator
        .as_ref()
        .map(|sim| Url::parse(&format!("http://{}", sim.addr)).expect("socket address URL"));
    Ok(Running {
        grpc_addr,
        http_addr,
        admin_addr,
        simulator,
        client,
        accounts,
        webhooks,
        log,
        subscribers,
        stats,
        metrics,
        groups,
        access,
        permanent,
        simulator_base,
        tasks,
    })
}

/// rustls for gRPC: the server's certificate, and with a client CA, client certificates
/// required (a connection without one fails its handshake).
fn tls_config(tls: &TlsSettings) -> ServerTlsConfig {
    let config = ServerTlsConfig::new()
        .identity(Identity::from_pem(&tls.cert, tls.key.expose()))
        // A connection that never finishes its handshake does not hold a slot for long.
        .timeout(TLS_HANDSHAKE_TIMEOUT);
    match &tls.client_ca {
        Some(ca) => config.client_ca_root(Certificate::from_pem(ca)),
        None => config,
    }
}
