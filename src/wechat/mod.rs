//! The upstream WeChat client: access_tokens ([`token::TokenCache`], from
//! `cgi-bin/stable_token`, `cgi-bin/token` or a central token service),
//! `cgi-bin/qrcode/create` to mint tickets (permanent ones remembered in
//! [`PermanentTickets`]), `cgi-bin/showqrcode` for images ([`ImageCache`]). Every call is
//! bounded by a deadline and retried only where that is safe ([`RetryPolicy`]). It speaks to the
//! real hosts or, with the same code, to the simulator.
//!
//! An account's AppSecret and base URLs can change while it serves
//! ([`WeChatClient::reload`], on SIGHUP): each call takes one snapshot of them, so calls in
//! flight finish as they started and the next token fetch uses the new secret.

mod error;
mod images;
mod permanent;
mod retry;
mod shared_token;
pub mod token;

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use url::Url;

pub use error::{
    CREDENTIAL_ERRCODES, MAX_ERRMSG_BYTES, TOKEN_ERRCODES, TransportKind, WeChatError,
};
pub use images::{ImageCache, NOT_FOUND_TTL};
pub use permanent::{KnownTicket, PermanentTickets, StoreError};
pub use retry::RetryPolicy;
use retry::with_retries;
pub use shared_token::SharedToken;
use token::{AccessToken, FetchMode, TokenCache, TokenFetcher};

use crate::{
    config::{TokenSource, Upstream},
    metrics::{AccountMetrics, Metrics},
    secret::Secret,
};

/// Longest WeChat allows a temporary code to live: 30 days.
pub const MAX_EXPIRE_SECONDS: u32 = 2_592_000;
/// Highest `scene_id` of a permanent code.
pub const MAX_PERMANENT_SCENE_ID: u32 = 100_000;
/// Longest `scene_str`, in characters.
pub const MAX_SCENE_STR_CHARS: usize = 64;
/// Longest `Content-Type` of an image accepted from `showqrcode`.
const MAX_CONTENT_TYPE_BYTES: usize = 128;
/// Most bytes of a JSON answer read from WeChat or the token service. WeChat's are a few
/// hundred bytes; reading stops past this, so a gigabyte answer costs 64 KiB.
pub const MAX_JSON_BYTES: usize = 64 * 1024;

/// The scene a code carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scene {
    /// An integer scene (`scene_id`).
    Id(u32),
    /// A string scene (`scene_str`).
    Str(String),
}

/// A validated `qrcode/create` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrCodeRequest {
    /// The scene.
    pub scene: Scene,
    /// `None` for a permanent code; `Some(seconds)` (0 = WeChat's default) for temporary.
    pub expire_seconds: Option<u32>,
}

impl QrCodeRequest {
    /// WeChat's `action_name` for this kind of code.
    pub fn action_name(&self) -> &'static str {
        match (&self.scene, self.expire_seconds.is_some()) {
            (Scene::Id(_), true) => "QR_SCENE",
            (Scene::Str(_), true) => "QR_STR_SCENE",
            (Scene::Id(_), false) => "QR_LIMIT_SCENE",
            (Scene::Str(_), false) => "QR_LIMIT_STR_SCENE",
        }
    }

    fn body(&self) -> CreateBody<'_> {
        CreateBody {
            expire_seconds: self.expire_seconds.filter(|&s| s > 0),
            action_name: self.action_name(),
            action_info: ActionInfo {
                scene: match &self.scene {
                    Scene::Id(id) => SceneJson {
                        scene_id: Some(*id),
                        scene_str: None,
                    },
                    Scene::Str(s) => SceneJson {
                        scene_id: None,
                        scene_str: Some(s),
                    },
                },
            },
        }
    }
}

#[derive(Serialize)]
struct CreateBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    expire_seconds: Option<u32>,
    action_name: &'static str,
    action_info: ActionInfo<'a>,
}

#[derive(Serialize)]
struct ActionInfo<'a> {
    scene: SceneJson<'a>,
}

#[derive(Serialize)]
struct SceneJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    scene_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scene_str: Option<&'a str>,
}

/// A minted ticket, as `qrcode/create` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct QrTicket {
    /// The ticket.
    pub ticket: String,
    /// The URL the QR code encodes.
    pub url: String,
    /// Lifetime in seconds; absent for permanent codes.
    #[serde(default)]
    pub expire_seconds: Option<u64>,
}

/// A QR image from `showqrcode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrImage {
    /// The encoded image.
    pub bytes: Bytes,
    /// Its MIME type (WeChat's `image/jpg` normalised to `image/jpeg`).
    pub content_type: String,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    expires_in: u64,
}

/// What one call needs of the account's settings: its HTTP client, endpoints, AppSecret
/// and limits. Replaced whole by a reload; a call holds one snapshot from start to end.
#[derive(Debug)]
struct Endpoint {
    http: reqwest::Client,
    upstream: Upstream,
    policy: RetryPolicy,
}

impl Endpoint {
    fn new(upstream: Upstream) -> Result<Self, WeChatError> {
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .user_agent(concat!("wechat-qr/", env!("CARGO_PKG_VERSION")));
        if is_loopback(&upstream.api_base) && is_loopback(&upstream.mp_base) {
            // The simulator (or a test double) on loopback must not go through a proxy
            // configured for the real WeChat.
            http = http.no_proxy();
        }
        let http = http
            .build()
            .map_err(|e| WeChatError::transport("client", e))?;
        Ok(Self {
            http,
            policy: RetryPolicy::new(upstream.attempts),
            upstream,
        })
    }
}

/// The HTTP side shared by the client and its token fetcher.
#[derive(Debug)]
struct Api {
    /// The settings in force; a std lock held only to clone the `Arc`.
    current: RwLock<Arc<Endpoint>>,
    /// The account's series, resolved at start.
    metrics: Arc<AccountMetrics>,
}

impl Api {
    /// The settings in force, for one call.
    fn current(&self) -> Arc<Endpoint> {
        self.current.read().expect("endpoint lock poisoned").clone()
    }

    async fn fetch_token(&self, mode: FetchMode) -> Result<AccessToken, WeChatError> {
        let current = self.current();
        let (http, upstream) = (&current.http, &current.upstream);
        let (endpoint, request) = match &upstream.token_source {
            TokenSource::Stable => (
                "stable_token",
                http.post(endpoint(&upstream.api_base, "cgi-bin/stable_token"))
                    .json(&serde_json::json!({
                        "grant_type": "client_credential",
                        "appid": upstream.app_id,
                        "secret": upstream.app_secret.expose(),
                        "force_refresh": mode.force_refresh,
                    })),
            ),
            TokenSource::Token => {
                let mut url = parse_url(&upstream.api_base, "cgi-bin/token", "token")?;
                url.query_pairs_mut()
                    .append_pair("grant_type", "client_credential")
                    .append_pair("appid", &upstream.app_id)
                    .append_pair("secret", upstream.app_secret.expose());
                ("token", http.get(url))
            }
            TokenSource::Url(url) => ("token service", http.get(url.clone())),
        };
        // Fetching a token changes nothing at WeChat (stable_token in normal mode, a
        // central service) or only mints one more (cgi-bin/token): safe to repeat. Nobody
        // waits on it directly (a background refresh), so it has its own deadline.
        let reply: TokenReply = with_retries(
            &self.metrics,
            endpoint,
            current.policy,
            Instant::now() + upstream.timeout,
            true,
            |left| {
                let request = request
                    .try_clone()
                    .expect("token requests have plain bodies")
                    .headers(crate::telemetry::inject());
                async move {
                    let response = request
                        .timeout(left)
                        .send()
                        .await
                        .map_err(|e| WeChatError::transport(endpoint, e))?;
                    read_json(endpoint, response).await
                }
            },
        )
        .await?;
        let token = AccessToken::new(Secret::new(reply.access_token), reply.expires_in);
        if token.lifetime.as_secs() != reply.expires_in {
            tracing::warn!(
                endpoint,
                expires_in = reply.expires_in,
                used = token.lifetime.as_secs(),
                "token source answered an implausible expires_in; clamped"
            );
        }
        Ok(token)
    }
}

impl Endpoint {
    async fn qrcode_create(
        &self,
        request: &QrCodeRequest,
        token: &AccessToken,
        left: Duration,
    ) -> Result<QrTicket, WeChatError> {
        const ENDPOINT: &str = "qrcode/create";
        let mut url = parse_url(&self.upstream.api_base, "cgi-bin/qrcode/create", ENDPOINT)?;
        url.query_pairs_mut()
            .append_pair("access_token", token.value.expose());
        let response = self
            .http
            .post(url)
            .headers(crate::telemetry::inject())
            .json(&request.body())
            .timeout(left)
            .send()
            .await
            .map_err(|e| WeChatError::transport(ENDPOINT, e))?;
        read_json(ENDPOINT, response).await
    }

    fn image_url(&self, ticket: &str) -> String {
        let encoded: String = url::form_urlencoded::byte_serialize(ticket.as_bytes()).collect();
        format!(
            "{}?ticket={encoded}",
            endpoint(&self.upstream.mp_base, "cgi-bin/showqrcode")
        )
    }

    async fn showqrcode(&self, ticket: &str, left: Duration) -> Result<QrImage, WeChatError> {
        const ENDPOINT: &str = "showqrcode";
        let response = self
            .http
            .get(self.image_url(ticket))
            .headers(crate::telemetry::inject())
            .timeout(left)
            .send()
            .await
            .map_err(|e| WeChatError::transport(ENDPOINT, e))?;
        match response.status().as_u16() {
            200 => {}
            404 => return Err(WeChatError::TicketNotFound),
            status => {
                return Err(WeChatError::HttpStatus {
                    endpoint: ENDPOINT,
                    status,
                });
            }
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        // A MIME type is a few words; a longer one would only inflate every response.
        if !content_type.starts_with("image/") || content_type.len() > MAX_CONTENT_TYPE_BYTES {
            return Err(WeChatError::bad_response(
                ENDPOINT,
                format_args!("content type {content_type:?} is not an image"),
            ));
        }
        let bytes = read_body(ENDPOINT, response, self.upstream.max_image_bytes).await?;
        Ok(QrImage {
            bytes,
            content_type: if content_type == "image/jpg" {
                "image/jpeg".to_owned()
            } else {
                content_type
            },
        })
    }
}

/// Fetches tokens for the [`TokenCache`]: from WeChat, or through the token every
/// replica shares when one is configured.
#[derive(Debug)]
struct Fetcher {
    api: Arc<Api>,
    shared: Option<Arc<SharedToken>>,
}

impl TokenFetcher for Fetcher {
    fn fetch(
        &self,
        mode: FetchMode,
    ) -> impl Future<Output = Result<AccessToken, WeChatError>> + Send {
        let api = self.api.clone();
        let shared = self.shared.clone();
        async move {
            match shared {
                Some(shared) => shared.fetch(mode, |mode| api.fetch_token(mode)).await,
                None => api.fetch_token(mode).await,
            }
        }
    }

    fn rejected(&self, token: &AccessToken) -> impl Future<Output = ()> + Send {
        let shared = self.shared.clone();
        let token = token.clone();
        async move {
            if let Some(shared) = shared {
                shared.reject(&token).await;
            }
        }
    }
}

/// The client for one account: tokens, tickets, images.
#[derive(Debug)]
pub struct WeChatClient {
    /// The AppID, fixed for the process's life (adding an account takes a restart).
    app_id: String,
    api: Arc<Api>,
    tokens: Arc<TokenCache<Fetcher>>,
    images: ImageCache,
    /// Shared by every account's client: one store, keyed by AppID.
    permanent: Arc<PermanentTickets>,
    /// When the temporary tickets minted here expire, so their images are cached
    /// exactly as long as they live.
    expiries: moka::sync::Cache<String, Instant>,
}

impl WeChatClient {
    /// A client for `upstream`, remembering permanent tickets in `permanent`, its token
    /// shared with other replicas through `shared` when given.
    pub fn new(
        upstream: Upstream,
        permanent: Arc<PermanentTickets>,
        shared: Option<Arc<SharedToken>>,
        metrics: &Metrics,
    ) -> Result<Self, WeChatError> {
        let metrics = metrics.account(&upstream.app_id);
        let images = ImageCache::new(upstream.image_cache_bytes, metrics.clone());
        let refresh_at = upstream.refresh_at;
        let app_id = upstream.app_id.clone();
        let api = Arc::new(Api {
            current: RwLock::new(Arc::new(Endpoint::new(upstream)?)),
            metrics: metrics.clone(),
        });
        Ok(Self {
            app_id,
            tokens: TokenCache::new(
                api.metrics.app_id.clone(),
                Fetcher {
                    api: api.clone(),
                    shared,
                },
                refresh_at,
                metrics,
            ),
            api,
            images,
            permanent,
            expiries: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(Duration::from_secs(u64::from(MAX_EXPIRE_SECONDS)))
                .build(),
        })
    }

    /// The AppID this client acts for.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// Puts a reloaded AppSecret and base URLs (and the account's limits) in force.
    /// Calls in flight finish with the settings they started with. A new AppSecret or
    /// API base drops the cached access_token, so the next call fetches one with the
    /// new secret at once: a wrong secret shows now, not at the next refresh hours
    /// later. Says what changed (names only, never a value).
    pub async fn reload(&self, upstream: Upstream) -> Result<Vec<&'static str>, WeChatError> {
        let old = self.api.current();
        let mut changed = Vec::new();
        if old.upstream.app_secret != upstream.app_secret {
            changed.push("app_secret");
        }
        if old.upstream.api_base != upstream.api_base {
            changed.push("api_base");
        }
        if old.upstream.mp_base != upstream.mp_base {
            changed.push("mp_base");
        }
        let fresh = Endpoint::new(upstream)?;
        *self.api.current.write().expect("endpoint lock poisoned") = Arc::new(fresh);
        if changed
            .iter()
            .any(|c| matches!(*c, "app_secret" | "api_base"))
        {
            self.tokens.forget().await;
        }
        Ok(changed)
    }

    /// Every permanent ticket this deployment minted.
    pub async fn permanent_tickets(&self) -> Vec<KnownTicket> {
        self.permanent.known().await
    }

    /// How many more permanent codes may be minted; `None` without a budget.
    pub async fn permanent_remaining(&self) -> Option<u64> {
        self.permanent.remaining(&self.app_id).await
    }

    /// Sets the budget gauges from the store (after a code is minted, at start and on a
    /// reload).
    pub async fn report_permanent_budget(&self) {
        let budget = self.permanent.budget(&self.app_id);
        let left = self.permanent.remaining(&self.app_id).await;
        self.api.metrics.set_permanent_budget(budget.zip(left));
    }

    /// The account's series.
    pub fn metrics(&self) -> &AccountMetrics {
        &self.api.metrics
    }

    /// How many token fetches this client started.
    pub fn token_fetches(&self) -> u64 {
        self.tokens.fetches()
    }

    /// WeChat's `showqrcode` URL for a ticket, the ticket URL-encoded.
    pub fn image_url(&self, ticket: &str) -> String {
        self.api.current().image_url(ticket)
    }

    /// The deadline of a call: the caller's own, if any, capped by the configured ceiling.
    pub fn deadline(&self, caller_timeout: Option<Duration>) -> Instant {
        let ceiling = self.api.current().upstream.timeout;
        Instant::now() + caller_timeout.map_or(ceiling, |t| t.min(ceiling))
    }

    /// Mints a ticket. A permanent scene minted before is answered from the store; a
    /// rejected token is dropped, refetched and the call retried once.
    pub async fn create_ticket(
        &self,
        request: &QrCodeRequest,
        deadline: Instant,
    ) -> Result<QrTicket, WeChatError> {
        if request.expire_seconds.is_none() {
            // Boxed: the store's future is large and only permanent codes need it; inline,
            // every temporary code's future would carry (and copy) it.
            return Box::pin(self.create_permanent(request, deadline)).await;
        }
        let ticket = self.create_qrcode(request, deadline).await?;
        if let Some(seconds) = ticket.expire_seconds {
            self.expiries.insert(
                ticket.ticket.clone(),
                Instant::now() + Duration::from_secs(seconds),
            );
        }
        Ok(ticket)
    }

    /// A permanent code: answered from the store when its scene was minted before.
    async fn create_permanent(
        &self,
        request: &QrCodeRequest,
        deadline: Instant,
    ) -> Result<QrTicket, WeChatError> {
        let (ticket, minted) = self
            .permanent
            .get_or_create(
                &self.app_id,
                &request.scene,
                self.create_qrcode(request, deadline),
            )
            .await?;
        if minted {
            self.api.metrics.permanent_minted.inc();
            self.report_permanent_budget().await;
        } else {
            tracing::debug!("permanent scene already minted; answered from the store");
        }
        Ok(ticket)
    }

    async fn create_qrcode(
        &self,
        request: &QrCodeRequest,
        deadline: Instant,
    ) -> Result<QrTicket, WeChatError> {
        let token = self.token(deadline).await?;
        match self.create_qrcode_with(request, &token, deadline).await {
            Err(e) if e.is_token_rejected() => {
                // Rare, so boxed: its futures would otherwise double the size of every
                // call's future (and the bytes copied to start it).
                Box::pin(self.create_qrcode_with_new_token(request, &token, e, deadline)).await
            }
            result => result,
        }
    }

    /// The retry of [`Self::create_qrcode`] after WeChat rejected `token`.
    async fn create_qrcode_with_new_token(
        &self,
        request: &QrCodeRequest,
        token: &AccessToken,
        error: WeChatError,
        deadline: Instant,
    ) -> Result<QrTicket, WeChatError> {
        tracing::warn!(error = %error, "access_token rejected; refetching once");
        self.tokens.reject(token).await;
        let token = self.token(deadline).await?;
        self.create_qrcode_with(request, &token, deadline).await
    }

    async fn create_qrcode_with(
        &self,
        request: &QrCodeRequest,
        token: &AccessToken,
        deadline: Instant,
    ) -> Result<QrTicket, WeChatError> {
        // Not idempotent: a request that timed out may have minted a code already.
        let current = self.api.current();
        with_retries(
            &self.api.metrics,
            "qrcode/create",
            current.policy,
            deadline,
            false,
            |left| current.qrcode_create(request, token, left),
        )
        .await
    }

    async fn token(&self, deadline: Instant) -> Result<Arc<AccessToken>, WeChatError> {
        tokio::time::timeout_at(deadline, self.tokens.get())
            .await
            .map_err(|_| WeChatError::DeadlineExceeded {
                endpoint: "access_token",
            })?
    }

    /// A ticket's image, from the cache or downloaded once for all concurrent callers.
    pub async fn image(&self, ticket: &str, deadline: Instant) -> Result<QrImage, WeChatError> {
        let current = self.api.current();
        let ceiling = current.upstream.image_ttl;
        let ttl = self.expiries.get(ticket).map_or(ceiling, |expires| {
            expires
                .saturating_duration_since(Instant::now())
                .min(ceiling)
        });
        if ttl.is_zero() {
            return Err(WeChatError::TicketNotFound);
        }
        let download = || {
            with_retries(
                &self.api.metrics,
                "showqrcode",
                current.policy,
                deadline,
                true,
                |left| current.showqrcode(ticket, left),
            )
        };
        tokio::time::timeout_at(deadline, self.images.get_or_download(ticket, ttl, download))
            .await
            .map_err(|_| WeChatError::DeadlineExceeded {
                endpoint: "showqrcode",
            })?
    }
}

fn parse_url(base: &Url, path: &str, endpoint_name: &'static str) -> Result<Url, WeChatError> {
    Url::parse(&endpoint(base, path))
        .map_err(|e| WeChatError::bad_response(endpoint_name, format_args!("bad base URL: {e}")))
}

/// Reads a WeChat JSON answer: an `errcode` other than 0 is an error, anything else must
/// parse as `T`.
async fn read_json<T: serde::de::DeserializeOwned>(
    endpoint: &'static str,
    response: reqwest::Response,
) -> Result<T, WeChatError> {
    let status = response.status().as_u16();
    if status != 200 {
        return Err(WeChatError::HttpStatus { endpoint, status });
    }
    let body = read_body(endpoint, response, MAX_JSON_BYTES).await?;
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| WeChatError::bad_response(endpoint, format_args!("not JSON: {e}")))?;
    let errcode = value.get("errcode").and_then(|c| c.as_i64()).unwrap_or(0);
    if errcode != 0 {
        let errmsg = error::truncated(
            value
                .get("errmsg")
                .and_then(|m| m.as_str())
                .unwrap_or_default(),
            MAX_ERRMSG_BYTES,
        );
        return Err(WeChatError::Api {
            endpoint,
            errcode,
            errmsg,
        });
    }
    serde_json::from_value(value).map_err(|e| WeChatError::bad_response(endpoint, e))
}

/// The body of `response`, refused as soon as it is known to exceed `limit` bytes — from
/// its `Content-Length`, or while it streams in — so an answer never takes more memory
/// than its limit.
async fn read_body(
    endpoint: &'static str,
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, WeChatError> {
    let too_large = WeChatError::TooLarge { endpoint, limit };
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(too_large);
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| WeChatError::transport(endpoint, e))?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// `base` + `path`, keeping any path prefix `base` has (unlike `Url::join`).
fn endpoint(base: &Url, path: &str) -> String {
    format!("{}/{path}", base.as_str().trim_end_matches('/'))
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}
