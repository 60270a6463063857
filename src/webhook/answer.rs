//! What a verified push is answered with when the account shares its server URL: the
//! existing handler's answer, a reply rule's passive reply, or `success` — decided here,
//! in one place, only after the push (and a scan's event) is durably stored.

use std::time::{SystemTime, UNIX_EPOCH};

use hyper::header::{CONTENT_TYPE, HeaderValue};

use super::{Webhook, forward, reply};
use crate::{
    config::{ForwardFailure, WebhookSettings},
    http_server::{HttpResponse, text},
};

impl Webhook {
    /// What WeChat is answered for a stored (or not-owned) push: the existing handler's
    /// answer when the push goes there and it has something to say, else a reply rule's
    /// passive reply for a scan, else `success`. A failed forward answers as
    /// `forward_failure` says: 502 (WeChat retries; a stored scan is de-duplicated) or as
    /// if the handler had been silent.
    pub(super) async fn answer(
        &self,
        settings: &WebhookSettings,
        qr_scan: bool,
        scanned: Option<reply::Scanned>,
        verbatim: Option<forward::Verbatim>,
        encrypted: bool,
    ) -> HttpResponse {
        if let (Some(forwarder), Some(verbatim)) = (self.forwarder(), verbatim)
            && forwarder.takes(qr_scan)
        {
            match forwarder.forward(verbatim).await {
                Ok(relayed) if !(qr_scan && relayed.is_silent()) => {
                    return relayed.into_response();
                }
                Ok(_silent) => {}
                Err(_) if forwarder.on_failure() == ForwardFailure::Retry => {
                    return text(502, "the existing handler failed; WeChat will retry");
                }
                Err(_) => {}
            }
        }
        let Some(scanned) = scanned else {
            return text(200, "success");
        };
        let Some(rule) = reply::matching(&settings.replies, &scanned) else {
            return text(200, "success");
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        self.metrics.replies.inc();
        let xml = reply::render(rule, &scanned, now);
        let body = match (
            encrypted,
            settings.aes_keys.first(),
            settings.tokens.first(),
        ) {
            (true, Some(key), Some(token)) => reply::seal(&xml, key, &settings.app_id, token, now),
            _ => xml,
        };
        let mut response = text(200, body);
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/xml; charset=utf-8"),
        );
        response
    }
}
