//! Fresh pushes, each signed (and in safe mode encrypted) exactly as WeChat does it, by
//! the crate's own [`Signer`]: a distinct `FromUserName` per push, the current
//! `CreateTime` and `timestamp`, a random nonce. So the service's de-duplication and
//! replay window see real traffic, never one push re-sent, and numbers cannot come easy.
//!
//! The OpenID carries the push's index, so a subscriber receiving the event knows which
//! push it was (for latency) without any table lookup.

use bytes::Bytes;
use hyper::Uri;
use wechat_qr::{
    config::{EncryptMode, dev},
    protocol::push::{self, Scan, Signer},
    secret::Secret,
    webhook,
};

/// The EncodingAESKey of safe-mode runs; the service and wechatpy get the same one.
pub(crate) const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
/// A ticket shaped like WeChat's; the webhook does not look it up.
pub(crate) const TICKET: &str =
    "gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xLzAyYmVuY2gzAAIEbenchAMEPAAAAA==";
/// The scene of every push.
pub(crate) const SCENE: &str = "bench";
/// OpenIDs are 28 characters: this prefix, 8 hex digits of the factory, 14 of the index.
const OPENID_PREFIX: &str = "oBench";

/// A push ready to POST.
#[derive(Clone)]
pub(crate) struct Push {
    /// `/wechat?signature=...`.
    pub(crate) uri: Uri,
    /// The XML (or encrypted envelope).
    pub(crate) body: Bytes,
    /// The answer must be a passive reply (`<xml>…`), not `success`: the service has a
    /// reply rule for the push's scene.
    pub(crate) expect_reply: bool,
}

/// Makes pushes for one mode.
pub(crate) struct PushFactory {
    signer: Signer,
    /// Distinguishes the OpenIDs of this factory from those of any other in the run.
    id: u32,
    /// Every `timestamp&nonce` this factory signed: the webhook's replay guard refuses a
    /// pair seen before with another body, and a random `u32` nonce repeats within one
    /// second's timestamp once pools of 100,000 pushes are signed in that second.
    used: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl PushFactory {
    /// Plaintext pushes checked by `signature`.
    pub(crate) fn plaintext() -> Self {
        Self::new(EncryptMode::Plaintext)
    }

    /// Safe-mode pushes: encrypted with [`AES_KEY`], checked by `msg_signature`.
    pub(crate) fn safe() -> Self {
        Self::new(EncryptMode::Safe)
    }

    fn new(mode: EncryptMode) -> Self {
        Self {
            signer: Signer {
                token: Secret::new(dev::TOKEN),
                mode,
                aes_key: (mode == EncryptMode::Safe).then(|| {
                    AES_KEY
                        .parse()
                        .expect("the bench key is a valid EncodingAESKey")
                }),
                app_id: dev::APP_ID.to_owned(),
                account: dev::ACCOUNT.to_owned(),
            },
            id: rand::random(),
            used: Default::default(),
        }
    }

    /// The push of a `SCAN` by the `index`th user, signed now.
    pub(crate) fn push(&self, index: u64) -> Push {
        self.push_of(index, TICKET)
    }

    /// The push of a `SCAN` of `ticket` by the `index`th user, signed now.
    pub(crate) fn push_of(&self, index: u64, ticket: &str) -> Push {
        let scan = Scan {
            openid: openid(self.id, index),
            ticket: ticket.to_owned(),
            scene: SCENE.to_owned(),
            new_follower: false,
        };
        let xml = push::scan_xml(dev::ACCOUNT, &scan, push::now_secs());
        let signed = loop {
            let signed = self.signer.sign(&xml, &scan.openid);
            if self
                .used
                .lock()
                .expect("nonce set")
                .insert(timestamp_and_nonce(&signed.query))
            {
                break signed;
            }
        };
        Push {
            uri: format!("{}?{}", webhook::PATH, signed.query)
                .parse()
                .expect("a signed query is a valid URI"),
            body: Bytes::from(signed.body),
            expect_reply: false,
        }
    }

    /// `count` pushes with indexes `from..from + count`.
    pub(crate) fn pool(&self, from: u64, count: u64) -> Vec<Push> {
        (from..from + count).map(|i| self.push(i)).collect()
    }
}

/// `timestamp=..&nonce=..` of a signed query, as one string.
fn timestamp_and_nonce(query: &str) -> String {
    let mut pair: Vec<&str> = query
        .split('&')
        .filter(|p| p.starts_with("timestamp=") || p.starts_with("nonce="))
        .collect();
    pair.sort_unstable();
    pair.join("&")
}

/// The OpenID of the `index`th user of factory `id`.
pub(crate) fn openid(id: u32, index: u64) -> String {
    format!("{OPENID_PREFIX}{id:08x}{index:014}")
}

/// The push index an OpenID made by a [`PushFactory`] carries.
pub(crate) fn index_of(openid: &str) -> Option<u64> {
    openid
        .strip_prefix(OPENID_PREFIX)
        .and_then(|rest| rest.get(8..))
        .and_then(|digits| digits.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openids_are_distinct_and_carry_their_index() {
        let factory = PushFactory::plaintext();
        let a = factory.push(7);
        let b = factory.push(8);
        assert_ne!(a.body, b.body);
        let body = std::str::from_utf8(&a.body).unwrap();
        let start = body.find(OPENID_PREFIX).unwrap();
        let openid = &body[start..start + 28];
        assert_eq!(index_of(openid), Some(7));
    }

    #[test]
    fn safe_pushes_are_encrypted() {
        let push = PushFactory::safe().push(1);
        assert!(push.uri.query().unwrap().contains("msg_signature="));
        assert!(
            std::str::from_utf8(&push.body)
                .unwrap()
                .contains("<Encrypt>")
        );
    }
}
