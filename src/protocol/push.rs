//! How WeChat delivers a push, reproduced: the event XML, the signed query string (and in
//! safe mode the encrypted envelope with its `msg_signature`), and delivery with WeChat's
//! rule of three tries, each given 5 seconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{EncryptMode, crypto::AesKey, signature};
use crate::secret::Secret;

/// WeChat's wait for an answer before it retries.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// WeChat's tries per push.
pub const TRIES: usize = 3;

/// A user scanning a parametric code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The user's OpenID.
    pub openid: String,
    /// The scanned code's ticket.
    pub ticket: String,
    /// The code's scene (decimal `scene_id` or `scene_str`).
    pub scene: String,
    /// True: the user was not following and followed (`subscribe`); false: `SCAN`.
    pub new_follower: bool,
}

/// Wraps text in CDATA, splitting any `]]>` so no value can end the section early.
fn cdata(value: &str) -> String {
    format!("<![CDATA[{}]]>", value.replace("]]>", "]]]]><![CDATA[>"))
}

/// The XML WeChat pushes for `scan`.
pub fn scan_xml(account: &str, scan: &Scan, create_time: u64) -> String {
    let (event, key) = if scan.new_follower {
        ("subscribe", format!("qrscene_{}", scan.scene))
    } else {
        ("SCAN", scan.scene.clone())
    };
    format!(
        "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName><CreateTime>{create_time}</CreateTime>\
         <MsgType><![CDATA[event]]></MsgType><Event>{}</Event><EventKey>{}</EventKey><Ticket>{}</Ticket></xml>",
        cdata(account),
        cdata(&scan.openid),
        cdata(event),
        cdata(&key),
        cdata(&scan.ticket),
    )
}

/// A push ready to POST: the query string and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPush {
    /// `signature=...&timestamp=...&nonce=...&openid=...` (and the safe-mode parameters).
    pub query: String,
    /// The XML body (the encrypted envelope in safe mode).
    pub body: String,
}

/// How a push is to be signed and, in safe or compatible mode, encrypted.
#[derive(Debug, Clone)]
pub struct Signer {
    /// The webhook token.
    pub token: Secret,
    /// Plaintext, or encrypted (compatible and safe both send the encrypted form).
    pub mode: EncryptMode,
    /// The key for encrypted pushes.
    pub aes_key: Option<AesKey>,
    /// The AppID framed into encrypted pushes.
    pub app_id: String,
    /// `ToUserName` of the envelope.
    pub account: String,
}

impl Signer {
    /// Signs (and encrypts) `xml` for `openid` as WeChat would, at the current time.
    pub fn sign(&self, xml: &str, openid: &str) -> SignedPush {
        let timestamp = now_secs().to_string();
        let nonce = rand::random::<u32>().to_string();
        let signature = signature::sign(&[self.token.expose(), &timestamp, &nonce]);
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("signature", &signature)
            .append_pair("timestamp", &timestamp)
            .append_pair("nonce", &nonce)
            .append_pair("openid", openid);
        let body = match (&self.aes_key, self.mode) {
            (Some(key), EncryptMode::Safe | EncryptMode::Compatible) => {
                let encrypt = key.encrypt(xml.as_bytes(), &self.app_id);
                let msg_signature =
                    signature::sign(&[self.token.expose(), &timestamp, &nonce, &encrypt]);
                query
                    .append_pair("encrypt_type", "aes")
                    .append_pair("msg_signature", &msg_signature);
                format!(
                    "<xml><ToUserName>{}</ToUserName><Encrypt>{}</Encrypt></xml>",
                    cdata(&self.account),
                    cdata(&encrypt)
                )
            }
            _ => xml.to_owned(),
        };
        SignedPush {
            query: query.finish(),
            body,
        }
    }
}

/// What the webhook answered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeliveryReport {
    /// HTTP status of the last answer (0 when none came).
    pub status: u16,
    /// Body of the last answer, or the last transport error.
    pub body: String,
    /// How many times the push was sent.
    pub attempts: usize,
}

/// POSTs `push` to `webhook_url`, retrying like WeChat when no answer comes in time.
pub async fn deliver(
    http: &reqwest::Client,
    webhook_url: &str,
    push: &SignedPush,
) -> DeliveryReport {
    let url = format!("{webhook_url}?{}", push.query);
    let mut report = DeliveryReport {
        status: 0,
        body: String::new(),
        attempts: 0,
    };
    for _ in 0..TRIES {
        report.attempts += 1;
        let sent = http
            .post(&url)
            .header("content-type", "text/xml")
            .body(push.body.clone())
            .timeout(ANSWER_TIMEOUT)
            .send()
            .await;
        match sent {
            Ok(response) => {
                report.status = response.status().as_u16();
                report.body = response.text().await.unwrap_or_default();
                return report;
            }
            Err(e) => report.body = e.without_url().to_string(),
        }
    }
    report
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}
