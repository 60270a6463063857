//! The `wechat.qr.v1.QrService` implementation: validates requests, calls the upstream
//! client for tickets and images, and turns event-log subscriptions into gRPC streams;
//! `stats.rs` serves `wechat.qr.v1.ChannelStatsService` from the channel statistics, and
//! `groups.rs` serves `wechat.qr.v1.ConsumerGroupService` from the consumer groups.
//! Who may call is decided in `auth.rs`, a layer around the whole server.
//! Every failure goes through [`ApiError`] and becomes a `Status` in `error.rs`.

mod auth;
mod error;
mod groups;
mod stats;
mod validate;
mod wire;

use std::{
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

pub use auth::{Access, AccessError, AccessLayer, Caller, Guarded};
pub use error::{ApiError, ERROR_DOMAIN, MAX_QUOTED_BYTES, quote};
pub use groups::ConsumerGroupService;
pub use stats::{ChannelStatsService, MAX_RESPONSE_BYTES as MAX_STATS_RESPONSE_BYTES};
pub use wire::QrServiceRoutes;

use crate::{
    events::{Delivery, Event, EventKind, StreamEnd, Subscribers, Subscription},
    metrics::Metrics,
    pb,
    wechat::WeChatClient,
};

/// The accounts served, each with its upstream client, for the calls that act for one.
#[derive(Debug, Clone)]
pub struct Accounts {
    /// In configuration order; never empty.
    clients: Arc<[Arc<WeChatClient>]>,
}

impl Accounts {
    /// The accounts of these clients, in configuration order (at least one).
    pub fn new(clients: Vec<Arc<WeChatClient>>) -> Self {
        assert!(
            !clients.is_empty(),
            "the service serves at least one account"
        );
        Self {
            clients: clients.into(),
        }
    }

    /// Every served account's client, in configuration order.
    pub fn clients(&self) -> &[Arc<WeChatClient>] {
        &self.clients
    }

    fn configured(&self) -> String {
        let ids: Vec<&str> = self.clients.iter().map(|c| c.app_id()).collect();
        ids.join(", ")
    }

    /// The account a request names in `field`: empty is the only account (with several,
    /// INVALID_ARGUMENT naming the choices); an AppID not served is NOT_FOUND.
    pub fn select(
        &self,
        field: &'static str,
        account: &str,
    ) -> Result<&Arc<WeChatClient>, ApiError> {
        match (account, &*self.clients) {
            ("", [only]) => Ok(only),
            ("", _) => Err(ApiError::invalid(
                field,
                format!(
                    "several accounts are configured; name one: {}",
                    self.configured()
                ),
            )),
            (app_id, clients) => clients
                .iter()
                .find(|c| c.app_id() == app_id)
                .ok_or_else(|| ApiError::unknown_account(field, app_id, self.configured())),
        }
    }

    /// The accounts a StreamEvents caller asked for (`accounts`), checked against those
    /// served and those the caller may see; empty when every account passes.
    fn stream_filter(
        &self,
        asked: Vec<String>,
        caller: Option<&Caller>,
    ) -> Result<Vec<String>, ApiError> {
        for app_id in &asked {
            self.select("accounts", app_id)?;
            if let Some(caller) = caller
                && !caller.may_use(app_id)
            {
                return Err(caller.denied(app_id));
            }
        }
        if !asked.is_empty() {
            return Ok(asked);
        }
        // A caller restricted to some accounts only ever sees theirs.
        Ok(match caller {
            Some(caller) if caller.accounts.is_some() => self
                .clients
                .iter()
                .map(|c| c.app_id())
                .filter(|a| caller.may_use(a))
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        })
    }
}

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct QrService {
    accounts: Accounts,
    /// The fan-out hub every StreamEvents subscribes through; it also ends every stream
    /// with UNAVAILABLE (and its resume cursor) at shutdown.
    subscribers: Subscribers,
    metrics: Arc<Metrics>,
}

impl QrService {
    /// A service acting for `accounts`, delivering events through `subscribers`.
    pub fn new(accounts: Accounts, subscribers: Subscribers, metrics: Arc<Metrics>) -> Self {
        Self {
            accounts,
            subscribers,
            metrics,
        }
    }

    /// Runs one RPC, recording its status code and latency.
    async fn observed<T>(
        &self,
        method: &'static str,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        observed(&self.metrics, method, call).await
    }
}

/// Runs one RPC of any service, recording its status code and latency and logging a
/// failure: the one place every call's outcome is observed.
pub(crate) async fn observed<T>(
    metrics: &Metrics,
    method: &'static str,
    call: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let started = Instant::now();
    let result = call.await;
    let code = result
        .as_ref()
        .map_or_else(Status::code, |_| tonic::Code::Ok);
    metrics.observe_rpc(method, code, started.elapsed());
    if let Err(status) = &result {
        // Any caller can fail calls at will: each is counted above, but only a few a
        // second of each kind are logged, then one line with how many were not.
        if failure_budget(method, code).admit() {
            tracing::info!(code = ?status.code(), message = status.message(), "call failed");
        } else {
            metrics
                .grpc_failures_unlogged
                .with_label_values(&[method, crate::metrics::code_name(code)])
                .inc();
        }
    }
    result
}

/// Lines a second logged for failed calls of one method and code.
const FAILURES_LOGGED_PER_SECOND: u32 = 5;

/// The log budget of failed `method` calls with `code`. One per kind for the process,
/// like the log itself: the kinds are few (methods × codes), so the map stays small.
fn failure_budget(method: &'static str, code: tonic::Code) -> Arc<crate::logging::LogBudget> {
    type Budgets = std::collections::HashMap<(&'static str, i32), Arc<crate::logging::LogBudget>>;
    static BUDGETS: std::sync::OnceLock<std::sync::Mutex<Budgets>> = std::sync::OnceLock::new();
    let mut budgets = BUDGETS
        .get_or_init(Default::default)
        .lock()
        .expect("lock poisoned");
    budgets
        .entry((method, code as i32))
        .or_insert_with(|| {
            let what: &'static str = Box::leak(
                format!(
                    "failed {method} calls ({})",
                    crate::metrics::code_name(code)
                )
                .into_boxed_str(),
            );
            crate::logging::LogBudget::new(what, FAILURES_LOGGED_PER_SECOND)
        })
        .clone()
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::StreamEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::qr_service_server::QrService for QrService {
    #[tracing::instrument(skip_all, fields(rpc = "CreateTicket", request_id = %request_id(&request)))]
    async fn create_ticket(
        &self,
        request: Request<pb::CreateTicketRequest>,
    ) -> Result<Response<pb::CreateTicketResponse>, Status> {
        self.observed("CreateTicket", self.create_ticket_inner(request))
            .await
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetImage", request_id = %request_id(&request)))]
    async fn get_image(
        &self,
        request: Request<pb::GetImageRequest>,
    ) -> Result<Response<pb::GetImageResponse>, Status> {
        self.observed("GetImage", self.get_image_inner(request))
            .await
    }

    type StreamEventsStream = EventStream;

    /// The typed path; [`QrServiceRoutes`] serves StreamEvents pre-encoded instead.
    async fn stream_events(
        &self,
        request: Request<pb::StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let deliveries = self.observed_stream(request).await?;
        let stream: EventStream =
            Box::pin(deliveries.map(|item| item.map(|delivery| to_response(&delivery))));
        Ok(Response::new(stream))
    }
}

impl QrService {
    async fn create_ticket_inner(
        &self,
        request: Request<pb::CreateTicketRequest>,
    ) -> Result<Response<pb::CreateTicketResponse>, Status> {
        let client = self
            .accounts
            .select("account", &request.get_ref().account)?;
        let qr = validate::create_ticket(request.get_ref())?;
        // The access layer admitted the caller for CreateTicket; the account and a
        // permanent code are permissions of their own, named only in the request body.
        if let Some(caller) = request.extensions().get::<Caller>() {
            if !caller.may_use(client.app_id()) {
                return Err(caller.denied(client.app_id()).into());
            }
            if qr.expire_seconds.is_none() && !caller.permanent {
                return Err(ApiError::PermissionDenied {
                    client: caller.name.to_string(),
                    permission: "permanent".to_owned(),
                }
                .into());
            }
        }
        let deadline = client.deadline(caller_timeout(&request));
        let minted = client
            .create_ticket(&qr, deadline)
            .await
            .map_err(ApiError::from)?;
        tracing::debug!(action = qr.action_name(), "ticket created");
        let expire_time = match (qr.expire_seconds, minted.expire_seconds) {
            (None, _) => None,
            // WeChat answers with the lifetime it applied (60 s when none was asked for).
            (Some(_), Some(seconds)) => Some(seconds),
            (Some(0), None) => Some(60),
            (Some(asked), None) => Some(u64::from(asked)),
        }
        .map(|seconds| {
            prost_types::Timestamp::from(
                SystemTime::now() + std::time::Duration::from_secs(seconds),
            )
        });
        Ok(Response::new(pb::CreateTicketResponse {
            image_url: client.image_url(&minted.ticket),
            ticket: minted.ticket,
            url: minted.url,
            expire_time,
        }))
    }

    async fn get_image_inner(
        &self,
        request: Request<pb::GetImageRequest>,
    ) -> Result<Response<pb::GetImageResponse>, Status> {
        let ticket = validate::ticket(&request.get_ref().ticket)?;
        // showqrcode takes no credentials: with several accounts and none named, the
        // first account's client (and image cache) serves it.
        let client = match &*request.get_ref().account {
            "" => &self.accounts.clients()[0],
            account => self.accounts.select("account", account)?,
        };
        if let Some(caller) = request.extensions().get::<Caller>()
            && !caller.may_use(client.app_id())
        {
            return Err(caller.denied(client.app_id()).into());
        }
        let image_url = client.image_url(ticket);
        if request.get_ref().url_only {
            return Ok(Response::new(pb::GetImageResponse {
                image_url,
                ..Default::default()
            }));
        }
        let deadline = client.deadline(caller_timeout(&request));
        let image = client
            .image(ticket, deadline)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::GetImageResponse {
            image: image.bytes,
            content_type: image.content_type,
            image_url,
        }))
    }

    /// StreamEvents up to the wire: validation, the subscription, metrics, and each end
    /// of stream as its status. Both the typed and the pre-encoded path serve this.
    #[tracing::instrument(skip_all, fields(rpc = "StreamEvents", request_id = %request_id(&request)))]
    pub(crate) async fn observed_stream(
        &self,
        request: Request<pb::StreamEventsRequest>,
    ) -> Result<impl Stream<Item = Result<Delivery, Status>> + Send + 'static, Status> {
        self.observed("StreamEvents", self.stream_events_inner(request))
            .await
    }

    async fn stream_events_inner(
        &self,
        request: Request<pb::StreamEventsRequest>,
    ) -> Result<impl Stream<Item = Result<Delivery, Status>> + Send + 'static, Status> {
        // The peer address names the connection, for the per-connection cap.
        let peer = request.remote_addr();
        let caller = request.extensions().get::<Caller>().cloned();
        let mut request = request.into_inner();
        let asked = std::mem::take(&mut request.accounts);
        let limits = self.subscribers.limits();
        if asked.len() > limits.max_filter_entries {
            return Err(ApiError::invalid(
                "accounts",
                format!("at most {} accounts", limits.max_filter_entries),
            )
            .into());
        }
        let accounts = self.accounts.stream_filter(asked, caller.as_ref())?;
        let request = validate::stream_events(request, &limits)?;
        // Charged before the filter is built: a refused stream never takes its memory.
        let admission = self
            .subscribers
            .admit(peer, request.charge(&accounts))
            .map_err(ApiError::from)?;
        let resume_after = request.resume_after;
        let filter = request.into_filter(accounts);
        let subscription = Subscription::start(admission, filter, resume_after, &self.subscribers)
            .await
            .map_err(ApiError::from)?;
        let metrics = self.metrics.clone();
        let stream = subscription.events.map(move |item| match item {
            Ok(delivery) => {
                metrics.event_delivered(&delivery.event.app_id);
                Ok(delivery)
            }
            Err(end) => {
                let reason = match &end {
                    StreamEnd::ShuttingDown { .. } => "shutdown",
                    StreamEnd::FellBehind { .. } => "fell_behind",
                    StreamEnd::LogFailed { .. } => "log_failed",
                };
                metrics.subscriber_drops.with_label_values(&[reason]).inc();
                Err(ApiError::StreamEnded(end).into())
            }
        });
        Ok(stream)
    }
}

/// The request id of an RPC's span.
fn request_id<T>(request: &Request<T>) -> String {
    crate::logging::request_id(
        request
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
    )
}

/// The caller's time budget from its `grpc-timeout` header, less a small margin so our
/// DEADLINE_EXCEEDED (with its details) reaches the caller before tonic's own timer ends
/// the call with a bare CANCELLED.
fn caller_timeout<T>(request: &Request<T>) -> Option<Duration> {
    let value = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    let split = value.len().checked_sub(1)?;
    let amount: u64 = value[..split].parse().ok()?;
    let timeout = match &value[split..] {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    };
    Some(timeout.saturating_sub((timeout / 10).min(Duration::from_millis(50))))
}

fn to_response(delivery: &Delivery) -> pb::StreamEventsResponse {
    pb::StreamEventsResponse {
        event: Some(to_pb_event(&delivery.event)),
        cursor: delivery.cursor.to_string(),
    }
}

/// The wire form of an event.
pub fn to_pb_event(event: &Event) -> pb::Event {
    let kind = match event.kind {
        EventKind::Subscribe => pb::EventType::Subscribe,
        EventKind::Scan => pb::EventType::Scan,
        EventKind::Unsubscribe => pb::EventType::Unsubscribe,
    };
    pb::Event {
        r#type: kind.into(),
        openid: event.openid.clone(),
        scene: event.scene.clone(),
        ticket: event.ticket.clone(),
        account: event.account.clone(),
        create_time: Some(prost_types::Timestamp {
            // The webhook refuses a CreateTime past 9999; an event stored before it did
            // is clamped there, so every client can still read it.
            seconds: i64::try_from(event.create_time)
                .unwrap_or(i64::MAX)
                .min(253_402_300_799),
            nanos: 0,
        }),
        received_time: Some(event.received_time.into()),
        new_follower: event.new_follower,
        app_id: event.app_id.clone(),
    }
}
