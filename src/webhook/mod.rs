//! The webhook: WeChat's server URL, `/wechat/<app_id>` on the HTTP listener for each
//! account (and `/wechat` when only one is configured). `GET` answers the
//! handshake; `POST` takes a push, verifies its signature (and in safe mode its
//! `msg_signature`, then decrypts it), decodes it, appends the event to the log, and only
//! then answers `success` — so an acknowledged push is never lost, and a re-sent push is
//! acknowledged again without a second event. Bad input gets a 4xx and changes nothing.
//!
//! When the account shares its server URL (README, "Sharing the server URL"), a verified
//! push that is not a QR scan is forwarded to the existing handler and its answer relayed
//! (`forward.rs`), and a stored scan may be answered with a passive reply (`reply.rs`).

mod answer;
mod forward;
pub mod push;
mod reply;

use std::{
    borrow::Cow,
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::{Method, Request, body::Incoming};
use tracing::{Instrument, field::Empty};

use crate::{
    config::WebhookSettings,
    events::{
        Appended, DedupKey, Event, EventLog, LogError, Seal, SealBook, SealCheck, SealKind, Sealed,
    },
    http_server::{HttpResponse, text},
    logging::LogBudget,
    metrics::{AccountMetrics, Metrics},
    protocol::{EncryptMode, crypto, signature},
};
use push::{DecodeError, Push};
use sha2::{Digest, Sha256};

/// The path WeChat pushes to; each account's is `/wechat/<app_id>`.
pub const PATH: &str = "/wechat";

/// The webhook path of the account `app_id`.
pub fn path_of(app_id: &str) -> String {
    format!("{PATH}/{app_id}")
}

/// Refused requests logged per second; the rest are counted in one summary line a second
/// (and every one in `webhook_pushes_total` / `webhook_handshakes_total`).
pub const REFUSALS_LOGGED_PER_SECOND: u32 = 5;

/// Why a request was refused. Each maps to one HTTP status in [`PushError::status`].
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// A required query parameter is absent.
    #[error("missing query parameter {0}")]
    MissingParam(&'static str),
    /// A query parameter appears more than once.
    #[error("query parameter {0} given more than once")]
    RepeatedParam(&'static str),
    /// `timestamp` is not a number.
    #[error("timestamp is not a number")]
    BadTimestamp,
    /// `timestamp` is outside the replay window.
    #[error("timestamp outside the replay window")]
    StaleTimestamp,
    /// `signature` or `msg_signature` does not match any accepted token.
    #[error("signature mismatch")]
    BadSignature,
    /// A plaintext push while only safe mode is accepted.
    #[error("plaintext push refused: the webhook is in safe mode")]
    PlaintextRefused,
    /// An encrypted push while no EncodingAESKey is configured.
    #[error("encrypted push refused: no EncodingAESKey configured")]
    EncryptedRefused,
    /// An `encrypt_type` other than `aes` or `raw`.
    #[error("unknown encrypt_type")]
    UnknownEncryptType,
    /// The body exceeds the configured limit.
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    /// The body did not arrive within the read timeout.
    #[error("body not received in time")]
    BodyTimeout,
    /// The connection failed while reading the body.
    #[error("body could not be read")]
    BodyRead,
    /// This `(timestamp, nonce)` was already accepted with another body (or on a
    /// handshake): a captured query string carrying a forged body.
    #[error("timestamp and nonce already used with another body")]
    ReusedNonce,
    /// A POST carrying a handshake's `echostr`: a handshake query is never a push's.
    #[error("a handshake query is not accepted for a push")]
    HandshakeQuery,
    /// A push a wechat-qr forwarded, while this one forwards too: `forward_url` leads
    /// back here (or to another forwarding wechat-qr), and forwarding again would loop.
    #[error("forwarding loop: this push was forwarded by a wechat-qr, check forward_url")]
    ForwardLoop,
    /// The XML is not a push.
    #[error("bad push: {0}")]
    Decode(#[from] DecodeError),
    /// The encrypted body could not be decrypted.
    #[error("cannot decrypt: {0}")]
    Decrypt(#[from] crypto::CryptoError),
    /// The event log could not take the event; WeChat will retry.
    #[error("event log unavailable")]
    Log(#[from] LogError),
}

/// What became of an accepted push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accepted {
    /// A new event.
    New,
    /// WeChat's retry of a push already logged.
    Duplicate,
    /// Not a QR event.
    Ignored,
}

impl Accepted {
    fn label(self) -> &'static str {
        match self {
            Self::New => "accepted",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
        }
    }
}

impl PushError {
    /// The `outcome` label of `webhook_pushes_total` for this refusal.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::BadSignature => "bad_signature",
            Self::StaleTimestamp => "stale_timestamp",
            Self::TooLarge(_) => "too_large",
            Self::BodyTimeout => "body_timeout",
            Self::Decode(_) | Self::BodyRead => "malformed",
            Self::Decrypt(_) => "undecryptable",
            Self::PlaintextRefused | Self::EncryptedRefused | Self::UnknownEncryptType => {
                "wrong_mode"
            }
            Self::MissingParam(_) | Self::RepeatedParam(_) | Self::BadTimestamp => "bad_query",
            Self::ReusedNonce | Self::HandshakeQuery => "replayed",
            Self::ForwardLoop => "forward_loop",
            Self::Log(_) => "log_unavailable",
        }
    }

    /// The HTTP status answered.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadSignature
            | Self::StaleTimestamp
            | Self::PlaintextRefused
            | Self::ReusedNonce
            | Self::HandshakeQuery => 403,
            Self::ForwardLoop => 508,
            Self::Decrypt(crypto::CryptoError::AppId) => 403,
            Self::TooLarge(_) => 413,
            Self::BodyTimeout => 408,
            Self::Log(_) => 503,
            Self::MissingParam(_)
            | Self::RepeatedParam(_)
            | Self::BadTimestamp
            | Self::EncryptedRefused
            | Self::UnknownEncryptType
            | Self::BodyRead
            | Self::Decode(_)
            | Self::Decrypt(_) => 400,
        }
    }
}

/// Every account's webhook on the one HTTP listener, by path.
#[derive(Debug, Clone)]
pub struct Webhooks {
    by_app_id: Arc<HashMap<String, Arc<Webhook>>>,
    /// The webhook `/wechat` reaches: the only account's, when only one is configured.
    only: Option<Arc<Webhook>>,
}

impl Webhooks {
    /// The router over these accounts' webhooks.
    pub fn new(webhooks: Vec<Arc<Webhook>>) -> Self {
        let only = match webhooks.as_slice() {
            [only] => Some(only.clone()),
            _ => None,
        };
        Self {
            by_app_id: Arc::new(
                webhooks
                    .into_iter()
                    .map(|w| (w.settings().app_id.clone(), w))
                    .collect(),
            ),
            only,
        }
    }

    /// The webhook of the account `app_id`.
    pub fn get(&self, app_id: &str) -> Option<&Arc<Webhook>> {
        self.by_app_id.get(app_id)
    }

    /// Routes one HTTP request to its account's webhook. Nothing else lives here (404):
    /// this listener faces the internet, so metrics and health live on the admin listener.
    pub async fn handle(&self, request: Request<Incoming>) -> HttpResponse {
        let path = request.uri().path();
        let webhook = if path == PATH {
            match &self.only {
                Some(only) => only,
                None => {
                    return text(
                        404,
                        "several accounts are configured: push to /wechat/<app_id>",
                    );
                }
            }
        } else {
            match path
                .strip_prefix(PATH)
                .and_then(|rest| rest.strip_prefix('/'))
                .and_then(|app_id| self.by_app_id.get(app_id))
            {
                Some(webhook) => webhook,
                None => return text(404, "not found"),
            }
        };
        webhook.clone().handle(request).await
    }
}

/// One account's webhook: its state, shared by every connection.
#[derive(Debug)]
pub struct Webhook {
    /// Replaced whole on a reload (token or key rotation); a push uses one snapshot.
    settings: RwLock<Arc<WebhookSettings>>,
    log: Arc<dyn EventLog>,
    /// Every `(timestamp, nonce)` accepted within the replay window, with its body's digest.
    seals: Arc<SealBook>,
    /// Whose seals these are in the book every account shares: `None` for the first
    /// account (seals as they were before several accounts), the AppID for the others, so
    /// one account's `(timestamp, nonce)` never refuses another's push.
    seal_scope: Option<String>,
    /// The account's series, resolved at start.
    metrics: Arc<AccountMetrics>,
    /// Paces the log lines of refused requests (see [`REFUSALS_LOGGED_PER_SECOND`]).
    refusals_logged: Arc<LogBudget>,
    /// The account's existing handler, when it has one; rebuilt on a reload.
    forwarder: RwLock<Option<Arc<forward::Forwarder>>>,
}

impl Webhook {
    /// A webhook appending to `log` and counting into `metrics`; `first` for the first
    /// configured account (see `seal_scope`).
    pub fn new(
        settings: WebhookSettings,
        first: bool,
        log: Arc<dyn EventLog>,
        seals: Arc<SealBook>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let metrics = metrics.account(&settings.app_id);
        let forwarder = Self::forwarder_for(&settings, &metrics);
        Arc::new(Self {
            seal_scope: (!first).then(|| settings.app_id.clone()),
            settings: RwLock::new(Arc::new(settings)),
            log,
            seals,
            metrics,
            forwarder: RwLock::new(forwarder),
            refusals_logged: LogBudget::new("webhook request refused", REFUSALS_LOGGED_PER_SECOND),
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> Arc<WebhookSettings> {
        self.settings
            .read()
            .expect("settings lock poisoned")
            .clone()
    }

    /// Puts new settings (a rotated token or key, another handler or reply rules) in
    /// force for the next request; pushes already being verified finish with the old ones.
    pub fn reload(&self, settings: WebhookSettings) {
        *self.forwarder.write().expect("forwarder lock poisoned") =
            Self::forwarder_for(&settings, &self.metrics);
        *self.settings.write().expect("settings lock poisoned") = Arc::new(settings);
    }

    fn forwarder_for(
        settings: &WebhookSettings,
        metrics: &Arc<AccountMetrics>,
    ) -> Option<Arc<forward::Forwarder>> {
        settings
            .forward
            .clone()
            .map(|forward| Arc::new(forward::Forwarder::new(forward, metrics.clone())))
    }

    /// The account's existing handler in force, if any.
    fn forwarder(&self) -> Option<Arc<forward::Forwarder>> {
        self.forwarder
            .read()
            .expect("forwarder lock poisoned")
            .clone()
    }

    /// Answers one request already routed to this account.
    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> HttpResponse {
        if !matches!(*request.method(), Method::GET | Method::POST) {
            return text(405, "method not allowed");
        }
        // Validated to a plain id (or replaced), so it cannot pose as extra fields.
        let request_id = crate::logging::request_id(
            request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok()),
        );
        // One snapshot per request: a reload mid-request does not mix old and new keys.
        let settings = self.settings();
        // For traces only (DEBUG, so never created while traces are off): the request as a
        // server span, under the sender's `traceparent` if it sent one.
        let server = tracing::debug_span!(
            "webhook.request",
            otel.name = %format_args!("webhook {}", request.method()),
            otel.kind = "server",
            otel.status_code = Empty,
            http.request.method = request.method().as_str(),
            http.response.status_code = Empty,
            wechat.app_id = settings.app_id.as_str(),
        );
        crate::telemetry::extract(request.headers(), &server);
        let span = server.in_scope(
            || tracing::info_span!("push", %request_id, method = request.method().as_str()),
        );
        let answer = async move {
            // Handshakes and pushes are counted apart, so the push counter counts pushes.
            let (counter, outcome, result) = if request.method() == Method::GET {
                let counter = &self.metrics.handshakes;
                match self.handshake(&settings, request.uri().query()).await {
                    Ok(echo) => (counter, "accepted", Ok(text(200, echo))),
                    Err(e) => (counter, e.outcome(), Err(e)),
                }
            } else {
                let counter = &self.metrics.pushes;
                match self.push(&settings, request).await {
                    Ok((outcome, answer)) => (counter, outcome.label(), Ok(answer)),
                    Err(e) => (counter, e.outcome(), Err(e)),
                }
            };
            counter.inc(outcome);
            let status = match &result {
                Ok(answer) => answer.status().as_u16(),
                Err(error) => error.status(),
            };
            self.metrics.responses.inc(match status {
                500.. => "5xx",
                400.. => "4xx",
                _ => "2xx",
            });
            match result {
                Ok(answer) => {
                    tracing::debug!(outcome, status = answer.status().as_u16(), "push answered");
                    answer
                }
                Err(error) => {
                    // Anyone can cause these: every one is counted, only a few a second
                    // are written. The message is a quoted value, never raw text, as
                    // decode errors may quote the sender's input.
                    if self.refusals_logged.admit() {
                        tracing::info!(
                            error = error.to_string().as_str(),
                            outcome,
                            "webhook request refused"
                        );
                    }
                    text(error.status(), error.to_string())
                }
            }
        }
        .instrument(span)
        .instrument(server.clone())
        .await;
        server.record("http.response.status_code", answer.status().as_u16());
        if answer.status().is_server_error() {
            server.record("otel.status_code", "ERROR");
        }
        answer
    }

    /// WeChat's server-URL check: answer `echostr` verbatim if the signature holds.
    async fn handshake(
        &self,
        settings: &WebhookSettings,
        query: Option<&str>,
    ) -> Result<Bytes, PushError> {
        let query = Query::parse(query);
        let signature = query.required("signature")?;
        let timestamp = query.required("timestamp")?;
        let nonce = query.required("nonce")?;
        let echostr = query.required("echostr")?;
        check_timestamp(settings, &timestamp)?;
        check_signature(settings, &timestamp, &nonce, &signature)?;
        // Remembered, so this query can never carry a push afterwards.
        self.seal(
            settings,
            &timestamp,
            &nonce,
            echostr.as_bytes(),
            SealKind::Handshake,
        )
        .await?;
        Ok(Bytes::from(echostr.into_owned()))
    }

    /// Checks the `(timestamp, nonce)` of a request whose signature holds against those
    /// already accepted, and remembers it: the same body again is WeChat's retry, another
    /// body a forgery on a captured query string.
    async fn seal(
        &self,
        settings: &WebhookSettings,
        timestamp: &str,
        nonce: &str,
        body: &[u8],
        kind: SealKind,
    ) -> Result<Sealed, PushError> {
        let seal = Seal {
            timestamp: timestamp.parse().map_err(|_| PushError::BadTimestamp)?,
            nonce: match &self.seal_scope {
                None => nonce.to_owned(),
                Some(app_id) => format!("{app_id}\u{0}{nonce}"),
            },
            digest: Sha256::digest(body).into(),
            kind,
        };
        // Several replicas: the query may have reached another one first. The shared
        // memory is asked first, so a forgery refused there leaves nothing behind here
        // that would refuse WeChat's genuine retry. Safe mode needs no shared memory
        // (and spends no Redis call on it): its bodies are authenticated by their own
        // `msg_signature`, and a plaintext body is refused whatever its query.
        // A pair the full local memory had to forget the like of is refused first.
        if self.seals.is_stale(&seal) {
            return Err(PushError::StaleTimestamp);
        }
        if settings.mode != EncryptMode::Safe {
            match self.seals.check_shared(&seal).await? {
                SealCheck::Reused => return Err(PushError::ReusedNonce),
                SealCheck::Stale => return Err(PushError::StaleTimestamp),
                SealCheck::Fresh | SealCheck::Retry => {}
            }
        }
        let sealed = self.seals.check(seal);
        match sealed.check {
            SealCheck::Fresh | SealCheck::Retry => Ok(sealed),
            SealCheck::Reused => Err(PushError::ReusedNonce),
            // The full memory shortened the window past this timestamp meanwhile.
            SealCheck::Stale => Err(PushError::StaleTimestamp),
        }
    }

    async fn push(
        &self,
        settings: &WebhookSettings,
        request: Request<Incoming>,
    ) -> Result<(Accepted, HttpResponse), PushError> {
        let received_time = SystemTime::now();
        let forwards = self.forwarder().is_some();
        if forwards && forward::forwarded_by_us(request.headers()) {
            return Err(PushError::ForwardLoop);
        }
        // What a forward repeats, taken before the request is consumed.
        let verbatim_head = forwards.then(|| {
            (
                request.uri().query().map(str::to_owned),
                request.headers().get(hyper::header::CONTENT_TYPE).cloned(),
            )
        });
        // The head stays borrowed by the query; only the body is consumed.
        let (head, body) = request.into_parts();
        let query = Query::parse(head.uri.query());
        let timestamp = query.required("timestamp")?.into_owned();
        let nonce = query.required("nonce")?.into_owned();
        check_timestamp(settings, &timestamp)?;
        if query.optional("echostr")?.is_some() {
            return Err(PushError::HandshakeQuery);
        }
        let encrypted = match query.optional("encrypt_type")?.as_deref() {
            None | Some("raw") => false,
            Some("aes") => true,
            Some(_) => return Err(PushError::UnknownEncryptType),
        };
        // Signature, replay seal and (safe mode) decryption: nothing is believed before.
        let verified = async {
            if encrypted {
                if settings.mode == EncryptMode::Plaintext {
                    return Err(PushError::EncryptedRefused);
                }
                let msg_signature = query.required("msg_signature")?.into_owned();
                let body = read_body(settings, &head.headers, body).await?;
                let encrypt = push::decode_envelope(&body)?
                    .encrypt
                    .ok_or(DecodeError::MissingField("Encrypt"))?;
                if !signature::verify(
                    &settings.tokens,
                    &[&timestamp, &nonce, &encrypt],
                    &msg_signature,
                ) {
                    return Err(PushError::BadSignature);
                }
                let sealed = self
                    .seal(settings, &timestamp, &nonce, &body, SealKind::Encrypted)
                    .await?;
                Ok::<_, PushError>((Bytes::from(decrypt(settings, &encrypt)?), body, sealed))
            } else {
                if settings.mode == EncryptMode::Safe {
                    return Err(PushError::PlaintextRefused);
                }
                // Checked before the body is read: a forged push costs us no body.
                check_signature(settings, &timestamp, &nonce, &query.required("signature")?)?;
                let body = read_body(settings, &head.headers, body).await?;
                let sealed = self
                    .seal(settings, &timestamp, &nonce, &body, SealKind::Plaintext)
                    .await?;
                Ok::<_, PushError>((body.clone(), body, sealed))
            }
        };
        let (xml, raw, sealed) = verified
            .instrument(tracing::debug_span!("webhook.verify", encrypted))
            .await?;
        let mut qr_scan = false;
        let mut scanned = None;
        let decoded = tracing::debug_span!("webhook.decode")
            .in_scope(|| push::decode_push(&xml, received_time))?;
        let accepted = match decoded {
            Push::Event(mut event, key) => {
                let key = key.for_account(&settings.app_id);
                event.app_id = settings.app_id.clone();
                qr_scan = reply::is_qr_scan(&event);
                if qr_scan && !settings.replies.is_empty() {
                    scanned = Some(reply::Scanned::of(&event));
                }
                self.append(event, key)
                    .instrument(tracing::debug_span!("webhook.append"))
                    .await?
            }
            Push::Ignored { msg_type } => {
                tracing::debug!(
                    msg_type = msg_type.as_str(),
                    "push is not a QR event; acknowledged"
                );
                Accepted::Ignored
            }
        };
        // The answer only once the seal is durable too, so after a restart this query still
        // cannot carry another body (after an append this has already happened).
        sealed
            .durable()
            .instrument(tracing::debug_span!("webhook.sync"))
            .await?;
        let verbatim = verbatim_head.map(|(query, content_type)| forward::Verbatim {
            query,
            content_type,
            body: raw,
        });
        let answer = self
            .answer(settings, qr_scan, scanned, verbatim, encrypted)
            .instrument(tracing::debug_span!("webhook.answer", qr_scan))
            .await;
        Ok((accepted, answer))
    }

    /// Appends a scan event once (WeChat's retries are de-duplicated).
    async fn append(&self, event: Event, key: DedupKey) -> Result<Accepted, PushError> {
        Ok(match self.log.append(event, key).await? {
            Appended::New(cursor) => {
                self.metrics.events_emitted.inc();
                tracing::debug!(%cursor, "push accepted");
                Accepted::New
            }
            Appended::Duplicate(cursor) => {
                tracing::debug!(%cursor, "re-sent push acknowledged again");
                Accepted::Duplicate
            }
        })
    }
}

/// WeChat's `signature` over (token, timestamp, nonce), against every accepted token.
fn check_signature(
    settings: &WebhookSettings,
    timestamp: &str,
    nonce: &str,
    signature: &str,
) -> Result<(), PushError> {
    if signature::verify(&settings.tokens, &[timestamp, nonce], signature) {
        Ok(())
    } else {
        Err(PushError::BadSignature)
    }
}

/// Tries the current key, then the previous one (a rotation in progress).
fn decrypt(settings: &WebhookSettings, encrypt: &str) -> Result<Vec<u8>, PushError> {
    let mut first_error = None;
    for key in &settings.aes_keys {
        match key.decrypt(encrypt, &settings.app_id) {
            Ok(xml) => return Ok(xml),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or(crypto::CryptoError::BadKey).into())
}

fn check_timestamp(settings: &WebhookSettings, timestamp: &str) -> Result<(), PushError> {
    let sent: u64 = timestamp.parse().map_err(|_| PushError::BadTimestamp)?;
    if let Some(window) = settings.replay_window {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        if now.abs_diff(sent) > window.as_secs() {
            return Err(PushError::StaleTimestamp);
        }
    }
    Ok(())
}

/// Reads the whole body within the size limit and the read timeout.
async fn read_body(
    settings: &WebhookSettings,
    headers: &hyper::HeaderMap,
    body: Incoming,
) -> Result<Bytes, PushError> {
    let limit = settings.max_body_bytes;
    let declared = headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(PushError::TooLarge(limit));
    }
    let body = Limited::new(body, limit);
    match tokio::time::timeout(settings.body_read_timeout, body.collect()).await {
        Err(_elapsed) => Err(PushError::BodyTimeout),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(PushError::TooLarge(limit))
        }
        Ok(Err(_)) => Err(PushError::BodyRead),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// The query string, with each parameter allowed at most once.
struct Query<'a> {
    pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> Query<'a> {
    fn parse(query: Option<&'a str>) -> Self {
        Self {
            pairs: url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).collect(),
        }
    }

    fn optional(&self, name: &'static str) -> Result<Option<Cow<'a, str>>, PushError> {
        let mut found = self.pairs.iter().filter(|(k, _)| k == name);
        let first = found.next().map(|(_, v)| v.clone());
        if found.next().is_some() {
            return Err(PushError::RepeatedParam(name));
        }
        Ok(first)
    }

    fn required(&self, name: &'static str) -> Result<Cow<'a, str>, PushError> {
        self.optional(name)?
            .filter(|v| !v.is_empty())
            .ok_or(PushError::MissingParam(name))
    }
}
