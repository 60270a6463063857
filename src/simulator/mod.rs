//! The embedded WeChat simulator: the parts of WeChat's API this service uses, on
//! loopback, applying WeChat's own rules and errcodes — `cgi-bin/stable_token` and
//! `cgi-bin/token` (counting fetches), `cgi-bin/qrcode/create`, and `cgi-bin/showqrcode`
//! rendering a real QR JPEG — plus the other half of WeChat: pushing signed scan events
//! to the webhook. It plays WeChat for one account or several (each with its own
//! credentials, tokens, tickets and signing keys; a ticket's scan is pushed to its own
//! account's webhook). It runs when no credentials are configured, and tests and benchmarks
//! drive it through its admin endpoints under `/sim/`:
//!
//! - `POST /sim/scan` `{"ticket": "...", "openid": "...", "new_follower": true}`: push
//!   the scan event for that ticket to the webhook, as WeChat would.
//! - `POST /sim/invalidate-token`: every issued access_token stops working (as when
//!   another process force-refreshes it); the next API call answers errcode 40001.
//! - `POST /sim/reset-secret` `{"app_id": "...", "app_secret": "..."}`: what an admin's
//!   "reset AppSecret" in WeChat's console does — the old secret stops working at once
//!   (token fetches with it answer 40125); tokens already issued keep working.
//! - `GET /sim/stats`: counters of token fetches, tickets created, images served, pushes.
//! - `POST /sim/faults` (a [`Faults`] as JSON) / `GET` / `DELETE`: inject WeChat's bad
//!   days — busy, quota, HTTP 500, connection resets, latency, token failures.

pub mod qr_image;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Response, body::Incoming};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    config::{SimulatedAccount, SimulatorSettings},
    http_server::{self, AbortConnection, HandlerResult, HttpResponse, text},
    protocol::push,
    wechat::{MAX_EXPIRE_SECONDS, MAX_PERMANENT_SCENE_ID, MAX_SCENE_STR_CHARS},
};
use push::{DeliveryReport, Scan, Signer};

pub use crate::config::Faults;

/// WeChat's access_token lifetime.
const TOKEN_LIFETIME: Duration = Duration::from_secs(7200);
/// How long a token minted by `cgi-bin/token` survives its successor.
const TOKEN_OVERLAP: Duration = Duration::from_secs(300);
/// WeChat's default lifetime of a temporary code.
const DEFAULT_EXPIRE_SECONDS: u32 = 60;

/// Takes one from a fault counter, saying whether the fault applies now.
fn take(count: &mut u32) -> bool {
    if *count > 0 {
        *count -= 1;
        true
    } else {
        false
    }
}

/// Counters of what the simulator served.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// `stable_token` and `token` calls that returned a token.
    pub token_fetches: u64,
    /// `stable_token` calls with `force_refresh: true` that minted a token.
    pub force_refreshes: u64,
    /// Token requests of any outcome.
    pub token_requests: u64,
    /// `qrcode/create` requests that arrived (all outcomes, injected faults included).
    pub qrcode_creates: u64,
    /// `showqrcode` requests that arrived (all outcomes, injected faults included).
    pub image_requests: u64,
    /// Pushes sent to the webhook (each try counts).
    pub pushes: u64,
}

#[derive(Debug, Default)]
struct Counters {
    token_fetches: AtomicU64,
    force_refreshes: AtomicU64,
    token_requests: AtomicU64,
    qrcode_creates: AtomicU64,
    image_requests: AtomicU64,
    pushes: AtomicU64,
    /// Token fetches per AppID.
    by_account: Mutex<BTreeMap<String, u64>>,
}

#[derive(Debug)]
struct Ticket {
    /// Index of the account that minted it.
    account: usize,
    url: String,
    scene: String,
    expires_at: Option<Instant>,
    /// Rendered on first request; a ticket's image never changes.
    jpeg: Option<Bytes>,
}

#[derive(Debug, Default)]
struct State {
    /// Tokens that still work, with when they stop.
    tokens: HashMap<String, Instant>,
    /// The account (index) each token was issued to.
    token_accounts: HashMap<String, usize>,
    /// The token `stable_token` hands out in normal mode, per account.
    stable: HashMap<usize, String>,
    tickets: HashMap<String, Ticket>,
    faults: Faults,
    /// AppSecrets reset since start (account index → the secret now accepted).
    reset_secrets: HashMap<usize, String>,
}

/// `POST /sim/reset-secret`: the account's new AppSecret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResetSecret {
    /// The account.
    pub app_id: String,
    /// The AppSecret accepted from now on (the old one is refused).
    pub app_secret: String,
}

/// A request to push a scan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanRequest {
    /// The scanned ticket (must be one the simulator minted).
    pub ticket: String,
    /// The scanning user's OpenID.
    pub openid: String,
    /// True: `subscribe` (the user follows now); false: `SCAN` (already a follower).
    #[serde(default)]
    pub new_follower: bool,
    /// Send the identical push this many times (WeChat's retries); default 1.
    #[serde(default)]
    pub deliveries: Option<usize>,
}

/// Why a scan could not be simulated.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The simulator never minted that ticket, or it expired.
    #[error("unknown or expired ticket")]
    UnknownTicket,
    /// The service has not told the simulator where its webhook is.
    #[error("no webhook to push to")]
    NoWebhook,
}

/// The simulator: its state, and the client it pushes with.
#[derive(Debug)]
pub struct Simulator {
    settings: SimulatorSettings,
    state: Mutex<State>,
    counters: Counters,
    webhook_url: RwLock<Option<String>>,
    http: reqwest::Client,
}

impl Simulator {
    /// A simulator for the account in `settings`.
    pub fn new(settings: SimulatorSettings) -> Arc<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("a plain HTTP client builds");
        let state = State {
            faults: settings.faults.clone(),
            ..State::default()
        };
        Arc::new(Self {
            settings,
            state: Mutex::new(state),
            counters: Counters::default(),
            webhook_url: RwLock::new(None),
            http,
        })
    }

    /// Serves the fake API on `listener` until `shutdown`.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        http_server::serve(
            "simulator",
            listener,
            move |request| self.clone().handle(request),
            shutdown,
        )
        .await;
    }

    /// Serves the fake API with at most `cap` connections open at once (the service's
    /// share of the descriptor limit for it).
    pub async fn serve_capped(
        self: Arc<Self>,
        listener: TcpListener,
        cap: usize,
        shutdown: CancellationToken,
    ) {
        http_server::serve_capped(
            "simulator",
            listener,
            http_server::Limits::cap(cap),
            move |request| self.clone().handle(request),
            shutdown,
        )
        .await;
    }

    /// Where simulated pushes go (the service's webhook URL).
    pub fn set_webhook_url(&self, url: String) {
        *self.webhook_url.write().expect("lock poisoned") = Some(url);
    }

    /// Recognises a permanent ticket it minted in an earlier run, as WeChat remembers
    /// permanent codes forever: the service restores the ones its data directory holds.
    pub fn restore_permanent(&self, app_id: &str, ticket: String, url: String, scene: String) {
        self.state
            .lock()
            .expect("lock poisoned")
            .tickets
            .entry(ticket)
            .or_insert(Ticket {
                account: self
                    .settings
                    .accounts
                    .iter()
                    .position(|a| a.app_id == app_id)
                    .unwrap_or(0),
                url,
                scene,
                expires_at: None,
                jpeg: None,
            });
    }

    /// What the simulator has served so far.
    pub fn stats(&self) -> SimStats {
        SimStats {
            token_fetches: self.counters.token_fetches.load(Ordering::Relaxed),
            force_refreshes: self.counters.force_refreshes.load(Ordering::Relaxed),
            token_requests: self.counters.token_requests.load(Ordering::Relaxed),
            qrcode_creates: self.counters.qrcode_creates.load(Ordering::Relaxed),
            image_requests: self.counters.image_requests.load(Ordering::Relaxed),
            pushes: self.counters.pushes.load(Ordering::Relaxed),
        }
    }

    /// Replaces the injected faults.
    pub fn set_faults(&self, faults: Faults) {
        self.state.lock().expect("lock poisoned").faults = faults;
    }

    /// The faults still pending.
    pub fn faults(&self) -> Faults {
        self.state.lock().expect("lock poisoned").faults.clone()
    }

    /// Makes every issued access_token invalid, as a force refresh elsewhere would.
    pub fn invalidate_tokens(&self) {
        let mut state = self.state.lock().expect("lock poisoned");
        state.tokens.clear();
        state.token_accounts.clear();
        state.stable.clear();
    }

    /// Resets the AppSecret of `app_id`, as an admin does in WeChat's console: only
    /// `app_secret` is accepted from now on. False when the account is not simulated.
    pub fn reset_secret(&self, app_id: &str, app_secret: &str) -> bool {
        let Some(index) = self
            .settings
            .accounts
            .iter()
            .position(|a| a.app_id == app_id)
        else {
            return false;
        };
        self.state
            .lock()
            .expect("lock poisoned")
            .reset_secrets
            .insert(index, app_secret.to_owned());
        true
    }

    /// Token fetches that returned a token to `app_id`.
    pub fn token_fetches_of(&self, app_id: &str) -> u64 {
        self.counters
            .by_account
            .lock()
            .expect("lock poisoned")
            .get(app_id)
            .copied()
            .unwrap_or(0)
    }

    /// The AppID of the account that minted `ticket`, while the ticket is known.
    pub fn ticket_account(&self, ticket: &str) -> Option<String> {
        let state = self.state.lock().expect("lock poisoned");
        let ticket = state.tickets.get(ticket)?;
        Some(self.settings.accounts[ticket.account].app_id.clone())
    }

    /// Pushes the scan of `request.ticket` to the webhook of the account that minted it,
    /// signed (and encrypted) with that account's keys, as WeChat does.
    pub async fn scan(&self, request: &ScanRequest) -> Result<Vec<DeliveryReport>, ScanError> {
        let (scene, account) = {
            let state = self.state.lock().expect("lock poisoned");
            let ticket = state
                .tickets
                .get(&request.ticket)
                .filter(|t| t.expires_at.is_none_or(|at| at > Instant::now()))
                .ok_or(ScanError::UnknownTicket)?;
            (
                ticket.scene.clone(),
                &self.settings.accounts[ticket.account],
            )
        };
        let base = self
            .webhook_url
            .read()
            .expect("lock poisoned")
            .clone()
            .ok_or(ScanError::NoWebhook)?;
        // With several accounts each has its own webhook path, as each has its own
        // server URL at WeChat.
        let webhook_url = if self.settings.accounts.len() > 1 {
            format!("{}/{}", base.trim_end_matches('/'), account.app_id)
        } else {
            base
        };
        let scan = Scan {
            openid: request.openid.clone(),
            ticket: request.ticket.clone(),
            scene,
            new_follower: request.new_follower,
        };
        let xml = push::scan_xml(&account.account, &scan, push::now_secs());
        let signed = signer(account).sign(&xml, &scan.openid);
        let mut reports = Vec::new();
        for _ in 0..request.deliveries.unwrap_or(1).clamp(1, push::TRIES) {
            let report = push::deliver(&self.http, &webhook_url, &signed).await;
            self.counters
                .pushes
                .fetch_add(report.attempts as u64, Ordering::Relaxed);
            reports.push(report);
        }
        Ok(reports)
    }

    /// How this simulator signs (and encrypts) pushes of its first account.
    pub fn signer(&self) -> Signer {
        signer(&self.settings.accounts[0])
    }

    /// How this simulator signs (and encrypts) pushes of the account `app_id`.
    pub fn signer_for(&self, app_id: &str) -> Option<Signer> {
        self.settings
            .accounts
            .iter()
            .find(|a| a.app_id == app_id)
            .map(signer)
    }

    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> HandlerResult {
        let path = request.uri().path().to_owned();
        // Every request that arrives counts, faulted or not: tests assert calls made.
        let counter = match path.as_str() {
            "/cgi-bin/qrcode/create" => Some(&self.counters.qrcode_creates),
            "/cgi-bin/showqrcode" => Some(&self.counters.image_requests),
            "/cgi-bin/stable_token" | "/cgi-bin/token" => Some(&self.counters.token_requests),
            _ => None,
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if path.starts_with("/cgi-bin/") {
            let (delay, reset, http_500) = {
                let mut state = self.state.lock().expect("lock poisoned");
                let faults = &mut state.faults;
                let mut delay = faults.latency_ms;
                if path == "/cgi-bin/showqrcode" {
                    delay += faults.showqrcode_latency_ms;
                }
                (delay, take(&mut faults.reset), take(&mut faults.http_500))
            };
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            if reset {
                return Err(AbortConnection);
            }
            if http_500 {
                return Ok(text(500, "internal server error"));
            }
        }
        Ok(self.route(request).await)
    }

    async fn route(&self, request: Request<Incoming>) -> HttpResponse {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query: HashMap<String, String> =
            url::form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
                .into_owned()
                .collect();
        let body = match Limited::new(request.into_body(), 1 << 20).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return text(400, "body unreadable or over 1 MiB"),
        };
        match (method, path.as_str()) {
            (Method::POST, "/cgi-bin/stable_token") => self.stable_token(&body),
            (Method::GET, "/cgi-bin/token") => self.token(&query),
            (Method::POST, "/cgi-bin/qrcode/create") => self.qrcode_create(&query, &body),
            (Method::GET, "/cgi-bin/showqrcode") => self.showqrcode(&query),
            (Method::POST, "/sim/scan") => match serde_json::from_slice::<ScanRequest>(&body) {
                Ok(scan) => match self.scan(&scan).await {
                    Ok(reports) => json_response(200, &json!({ "deliveries": reports })),
                    Err(e @ ScanError::UnknownTicket) => text(404, e.to_string()),
                    Err(e @ ScanError::NoWebhook) => text(503, e.to_string()),
                },
                Err(e) => text(400, format!("bad scan request: {e}")),
            },
            (Method::POST, "/sim/reset-secret") => {
                match serde_json::from_slice::<ResetSecret>(&body) {
                    Ok(reset) if self.reset_secret(&reset.app_id, &reset.app_secret) => {
                        text(200, "ok")
                    }
                    Ok(reset) => text(404, format!("no simulated account {}", reset.app_id)),
                    Err(e) => text(400, format!("bad reset: {e}")),
                }
            }
            (Method::POST, "/sim/invalidate-token") => {
                self.invalidate_tokens();
                text(200, "ok")
            }
            (Method::GET, "/sim/stats") => json_response(200, &self.stats()),
            (Method::GET, "/sim/faults") => json_response(200, &self.faults()),
            (Method::POST, "/sim/faults") => match serde_json::from_slice::<Faults>(&body) {
                Ok(faults) => {
                    self.set_faults(faults);
                    json_response(200, &self.faults())
                }
                Err(e) => text(400, format!("bad faults: {e}")),
            },
            (Method::DELETE, "/sim/faults") => {
                self.set_faults(Faults::default());
                text(200, "ok")
            }
            _ => text(404, "not found"),
        }
    }

    /// The index of the account these credentials belong to.
    fn check_credentials(&self, appid: &str, secret: &str) -> Result<usize, ApiFailure> {
        let Some(index) = self
            .settings
            .accounts
            .iter()
            .position(|a| a.app_id == appid)
        else {
            return Err(ApiFailure(40013, "invalid appid".into()));
        };
        let accepted = match self
            .state
            .lock()
            .expect("lock poisoned")
            .reset_secrets
            .get(&index)
        {
            Some(reset) => secret == reset,
            None => secret == self.settings.accounts[index].app_secret.expose(),
        };
        if !accepted {
            return Err(ApiFailure(40125, "invalid appsecret".into()));
        }
        Ok(index)
    }

    fn count_fetch(&self, account: usize) {
        self.counters.token_fetches.fetch_add(1, Ordering::Relaxed);
        *self
            .counters
            .by_account
            .lock()
            .expect("lock poisoned")
            .entry(self.settings.accounts[account].app_id.clone())
            .or_default() += 1;
    }

    fn stable_token(&self, body: &[u8]) -> HttpResponse {
        #[derive(Deserialize)]
        struct StableTokenRequest {
            grant_type: String,
            appid: String,
            secret: String,
            #[serde(default)]
            force_refresh: bool,
        }
        let Ok(request) = serde_json::from_slice::<StableTokenRequest>(body) else {
            return wechat_error(47001, "data format error");
        };
        if request.grant_type != "client_credential" {
            return wechat_error(40002, "invalid grant_type");
        }
        let account = match self.check_credentials(&request.appid, &request.secret) {
            Ok(account) => account,
            Err(failure) => return failure.response(),
        };
        let now = Instant::now();
        let mut state = self.state.lock().expect("lock poisoned");
        if take(&mut state.faults.token_failures) {
            return ApiFailure(40164, "invalid ip, not in whitelist".into()).response();
        }
        let lifetime = token_lifetime(&state.faults);
        let current = state
            .stable
            .get(&account)
            .cloned()
            .and_then(|t| state.tokens.get(&t).map(|&until| (t, until)))
            .filter(|(_, until)| *until > now);
        let (token, until) = match current {
            Some(current) if !request.force_refresh => current,
            _ => {
                if request.force_refresh {
                    self.counters
                        .force_refreshes
                        .fetch_add(1, Ordering::Relaxed);
                }
                let token = new_token();
                let until = now + lifetime;
                state.tokens.insert(token.clone(), until);
                state.token_accounts.insert(token.clone(), account);
                state.stable.insert(account, token.clone());
                (token, until)
            }
        };
        drop(state);
        self.count_fetch(account);
        json_response(
            200,
            &json!({ "access_token": token, "expires_in": until.duration_since(now).as_secs() }),
        )
    }

    fn token(&self, query: &HashMap<String, String>) -> HttpResponse {
        let get = |k: &str| query.get(k).map(String::as_str).unwrap_or_default();
        if get("grant_type") != "client_credential" {
            return wechat_error(40002, "invalid grant_type");
        }
        let account = match self.check_credentials(get("appid"), get("secret")) {
            Ok(account) => account,
            Err(failure) => return failure.response(),
        };
        // Every call mints a new token; the others keep working for five minutes.
        let now = Instant::now();
        let token = new_token();
        let mut state = self.state.lock().expect("lock poisoned");
        if take(&mut state.faults.token_failures) {
            return ApiFailure(40164, "invalid ip, not in whitelist".into()).response();
        }
        let lifetime = token_lifetime(&state.faults);
        let stable = state.stable.get(&account).cloned();
        let owners = state.token_accounts.clone();
        for (t, until) in state.tokens.iter_mut() {
            // Only this account's older tokens are cut short.
            if Some(t) != stable.as_ref() && owners.get(t) == Some(&account) {
                *until = (*until).min(now + TOKEN_OVERLAP);
            }
        }
        state.tokens.insert(token.clone(), now + lifetime);
        state.token_accounts.insert(token.clone(), account);
        drop(state);
        self.count_fetch(account);
        json_response(
            200,
            &json!({ "access_token": token, "expires_in": lifetime.as_secs() }),
        )
    }

    fn qrcode_create(&self, query: &HashMap<String, String>, body: &[u8]) -> HttpResponse {
        let Some(token) = query.get("access_token").filter(|t| !t.is_empty()) else {
            return wechat_error(41001, "access_token missing");
        };
        let now = Instant::now();
        let account = {
            let mut state = self.state.lock().expect("lock poisoned");
            match state.tokens.get(token) {
                None => {
                    return wechat_error(
                        40001,
                        "invalid credential, access_token is invalid or not latest",
                    );
                }
                Some(&until) if until <= now => {
                    return wechat_error(42001, "access_token expired");
                }
                Some(_) => {}
            }
            if take(&mut state.faults.busy) {
                return wechat_error(-1, "system error");
            }
            if take(&mut state.faults.quota) {
                return wechat_error(45009, "reach max api daily quota limit");
            }
            state.token_accounts.get(token).copied().unwrap_or(0)
        };
        let request = match parse_create(body) {
            Ok(request) => request,
            Err(failure) => return failure.response(),
        };
        let id: String = (0..22)
            .map(|_| {
                const ALPHABET: &[u8] =
                    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
                ALPHABET[rand::random_range(0..ALPHABET.len())] as char
            })
            .collect();
        let url = format!("http://weixin.qq.com/q/{id}");
        let ticket = new_ticket(&url);
        let expire_seconds = request.expire_seconds;
        self.state.lock().expect("lock poisoned").tickets.insert(
            ticket.clone(),
            Ticket {
                account,
                url: url.clone(),
                scene: request.scene,
                expires_at: expire_seconds.map(|s| now + Duration::from_secs(u64::from(s))),
                jpeg: None,
            },
        );
        let mut answer = json!({ "ticket": ticket, "url": url });
        if let Some(seconds) = expire_seconds {
            answer["expire_seconds"] = json!(seconds);
        }
        json_response(200, &answer)
    }

    fn showqrcode(&self, query: &HashMap<String, String>) -> HttpResponse {
        let Some(ticket) = query.get("ticket") else {
            return text(404, "not found");
        };
        let url = {
            let mut state = self.state.lock().expect("lock poisoned");
            let Some(entry) = state
                .tickets
                .get_mut(ticket)
                .filter(|t| t.expires_at.is_none_or(|at| at > Instant::now()))
            else {
                return text(404, "not found");
            };
            if let Some(jpeg) = &entry.jpeg {
                return jpeg_response(jpeg.clone());
            }
            entry.url.clone()
        };
        // Rendered outside the lock: it is the slowest thing the simulator does.
        let jpeg = match qr_image::render_jpeg(&url) {
            Ok(jpeg) => Bytes::from(jpeg),
            Err(e) => return text(500, e.to_string()),
        };
        if let Some(entry) = self
            .state
            .lock()
            .expect("lock poisoned")
            .tickets
            .get_mut(ticket)
        {
            entry.jpeg = Some(jpeg.clone());
        }
        jpeg_response(jpeg)
    }
}

struct CreateRequest {
    scene: String,
    expire_seconds: Option<u32>,
}

/// Applies WeChat's rules to a `qrcode/create` body.
fn parse_create(body: &[u8]) -> Result<CreateRequest, ApiFailure> {
    #[derive(Deserialize)]
    struct Body {
        expire_seconds: Option<u64>,
        action_name: String,
        action_info: ActionInfo,
    }
    #[derive(Deserialize)]
    struct ActionInfo {
        scene: SceneJson,
    }
    #[derive(Deserialize)]
    struct SceneJson {
        scene_id: Option<u64>,
        scene_str: Option<String>,
    }
    let invalid = |what: &str| ApiFailure(40097, format!("invalid args: {what}"));
    let body: Body =
        serde_json::from_slice(body).map_err(|_| ApiFailure(47001, "data format error".into()))?;
    let temporary = match body.action_name.as_str() {
        "QR_SCENE" | "QR_STR_SCENE" => true,
        "QR_LIMIT_SCENE" | "QR_LIMIT_STR_SCENE" => false,
        _ => return Err(ApiFailure(40053, "invalid action info".into())),
    };
    let scene = if body.action_name.ends_with("STR_SCENE") {
        let s = body.action_info.scene.scene_str.unwrap_or_default();
        if s.is_empty() || s.chars().count() > MAX_SCENE_STR_CHARS {
            return Err(invalid("scene_str"));
        }
        s
    } else {
        let id = body.action_info.scene.scene_id.unwrap_or(0);
        let valid = if temporary {
            id != 0 && id <= u64::from(u32::MAX)
        } else {
            (1..=u64::from(MAX_PERMANENT_SCENE_ID)).contains(&id)
        };
        if !valid {
            return Err(invalid("scene_id"));
        }
        id.to_string()
    };
    let expire_seconds = temporary.then(|| {
        // WeChat caps the lifetime at 30 days and defaults it to 60 seconds.
        body.expire_seconds.map_or(DEFAULT_EXPIRE_SECONDS, |s| {
            s.min(u64::from(MAX_EXPIRE_SECONDS)) as u32
        })
    });
    Ok(CreateRequest {
        scene,
        expire_seconds,
    })
}

/// How the simulator signs (and encrypts) the pushes of `account`.
fn signer(account: &SimulatedAccount) -> Signer {
    Signer {
        token: account.token.clone(),
        mode: account.mode,
        aes_key: account.aes_key.clone(),
        app_id: account.app_id.clone(),
        account: account.account.clone(),
    }
}

fn token_lifetime(faults: &Faults) -> Duration {
    faults
        .token_ttl_seconds
        .map_or(TOKEN_LIFETIME, Duration::from_secs)
}

fn new_token() -> String {
    let bytes: [u8; 48] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A ticket shaped like WeChat's: standard base64 (so it has `+`, `/` and `=` that must be
/// URL-encoded) of random bytes and the URL.
fn new_ticket(url: &str) -> String {
    let mut bytes = vec![0x81, 0x07, 0xfb, 0xef, 0xff];
    bytes.extend_from_slice(&rand::random::<[u8; 12]>());
    bytes.extend_from_slice(url.as_bytes());
    // A length that leaves padding, as WeChat's tickets have.
    if bytes.len() % 3 == 0 {
        bytes.push(0x3f);
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// An API error as WeChat answers it: HTTP 200, `{"errcode": N, "errmsg": "..."}`.
struct ApiFailure(i64, String);

impl ApiFailure {
    fn response(&self) -> HttpResponse {
        wechat_error(self.0, &self.1)
    }
}

fn wechat_error(errcode: i64, errmsg: &str) -> HttpResponse {
    // WeChat appends a request id to every error message.
    let rid = format!(
        "{:08x}-{:08x}",
        rand::random::<u32>(),
        rand::random::<u32>()
    );
    json_response(
        200,
        &json!({ "errcode": errcode, "errmsg": format!("{errmsg} rid: {rid}") }),
    )
}

fn json_response(status: u16, value: &impl Serialize) -> HttpResponse {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(value).expect("JSON values serialize"),
        )))
        .expect("static response parts are valid")
}

fn jpeg_response(jpeg: Bytes) -> HttpResponse {
    // WeChat's own (non-standard) content type and caching header.
    Response::builder()
        .status(200)
        .header("content-type", "image/jpg")
        .header("cache-control", "max-age=604800")
        .body(Full::new(jpeg))
        .expect("static response parts are valid")
}
