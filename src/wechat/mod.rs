//! The upstream WeChat client: `cgi-bin/stable_token` for the access_token (cached in
//! [`token::TokenCache`]), `cgi-bin/qrcode/create` to mint tickets, `cgi-bin/showqrcode`
//! for images. It speaks to the real hosts or, with the same code, to the simulator.

mod error;
pub mod token;

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use url::Url;

pub use error::{TOKEN_ERRCODES, WeChatError};
use token::{AccessToken, TokenCache};

use crate::config::Upstream;

/// Longest WeChat allows a temporary code to live: 30 days.
pub const MAX_EXPIRE_SECONDS: u32 = 2_592_000;
/// Highest `scene_id` of a permanent code.
pub const MAX_PERMANENT_SCENE_ID: u32 = 100_000;
/// Longest `scene_str`, in characters.
pub const MAX_SCENE_STR_CHARS: usize = 64;

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

/// The client for one account.
#[derive(Debug)]
pub struct WeChatClient {
    http: reqwest::Client,
    upstream: Upstream,
    tokens: TokenCache,
}

impl WeChatClient {
    /// A client for `upstream`.
    pub fn new(upstream: Upstream) -> Result<Self, WeChatError> {
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
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
            upstream,
            tokens: TokenCache::default(),
        })
    }

    /// The AppID this client acts for.
    pub fn app_id(&self) -> &str {
        &self.upstream.app_id
    }

    /// The token cache (its fetch count is useful to tests and logs).
    pub fn tokens(&self) -> &TokenCache {
        &self.tokens
    }

    /// WeChat's `showqrcode` URL for a ticket, the ticket URL-encoded.
    pub fn image_url(&self, ticket: &str) -> String {
        let encoded: String = url::form_urlencoded::byte_serialize(ticket.as_bytes()).collect();
        format!(
            "{}?ticket={encoded}",
            endpoint(&self.upstream.mp_base, "cgi-bin/showqrcode")
        )
    }

    /// The cached access_token, fetched (once for all concurrent callers) when missing.
    pub async fn access_token(&self) -> Result<std::sync::Arc<AccessToken>, WeChatError> {
        self.tokens
            .get_or_fetch(&self.upstream.app_id, self.fetch_stable_token())
            .await
    }

    async fn fetch_stable_token(&self) -> Result<AccessToken, WeChatError> {
        const ENDPOINT: &str = "stable_token";
        let body = serde_json::json!({
            "grant_type": "client_credential",
            "appid": self.upstream.app_id,
            "secret": self.upstream.app_secret.expose(),
            "force_refresh": false,
        });
        let response = self
            .http
            .post(endpoint(&self.upstream.api_base, "cgi-bin/stable_token"))
            .json(&body)
            .send()
            .await
            .map_err(|e| WeChatError::transport(ENDPOINT, e))?;
        let reply: TokenReply = read_json(ENDPOINT, response).await?;
        tracing::info!(expires_in = reply.expires_in, "fetched access_token");
        Ok(AccessToken::new(
            crate::secret::Secret::new(reply.access_token),
            reply.expires_in,
        ))
    }

    /// Mints a ticket. A rejected token is dropped, refetched and the call retried once.
    pub async fn create_qrcode(&self, request: &QrCodeRequest) -> Result<QrTicket, WeChatError> {
        let token = self.access_token().await?;
        match self.create_qrcode_with(request, &token).await {
            Err(e) if e.is_token_rejected() => {
                tracing::warn!(error = %e, "access_token rejected; refetching once");
                self.tokens
                    .invalidate_if_current(&self.upstream.app_id, &token)
                    .await;
                let token = self.access_token().await?;
                self.create_qrcode_with(request, &token).await
            }
            result => result,
        }
    }

    async fn create_qrcode_with(
        &self,
        request: &QrCodeRequest,
        token: &AccessToken,
    ) -> Result<QrTicket, WeChatError> {
        const ENDPOINT: &str = "qrcode/create";
        let mut url = Url::parse(&endpoint(&self.upstream.api_base, "cgi-bin/qrcode/create"))
            .map_err(|e| WeChatError::BadResponse {
                endpoint: ENDPOINT,
                detail: format!("bad API base URL: {e}"),
            })?;
        url.query_pairs_mut()
            .append_pair("access_token", token.value.expose());
        let response = self
            .http
            .post(url)
            .json(&request.body())
            .send()
            .await
            .map_err(|e| WeChatError::transport(ENDPOINT, e))?;
        read_json(ENDPOINT, response).await
    }

    /// Downloads a ticket's image.
    pub async fn show_qrcode(&self, ticket: &str) -> Result<QrImage, WeChatError> {
        const ENDPOINT: &str = "showqrcode";
        let response = self
            .http
            .get(self.image_url(ticket))
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
        if !content_type.starts_with("image/") {
            return Err(WeChatError::BadResponse {
                endpoint: ENDPOINT,
                detail: format!("content type {content_type:?} is not an image"),
            });
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| WeChatError::transport(ENDPOINT, e))?;
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
    let body = response
        .bytes()
        .await
        .map_err(|e| WeChatError::transport(endpoint, e))?;
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| WeChatError::BadResponse {
            endpoint,
            detail: format!("not JSON: {e}"),
        })?;
    let errcode = value.get("errcode").and_then(|c| c.as_i64()).unwrap_or(0);
    if errcode != 0 {
        let errmsg = value
            .get("errmsg")
            .and_then(|m| m.as_str())
            .unwrap_or_default()
            .to_owned();
        return Err(WeChatError::Api {
            endpoint,
            errcode,
            errmsg,
        });
    }
    serde_json::from_value(value).map_err(|e| WeChatError::BadResponse {
        endpoint,
        detail: e.to_string(),
    })
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
