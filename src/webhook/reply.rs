//! Passive replies to scans (README, "Sharing the server URL"): the account's
//! `[[accounts.replies]]` rules, the first whose scene and event match answering the scan
//! with WeChat's passive-reply XML — a text message, or a news message with one article —
//! with `{openid}` and `{scene}` filled in. In safe mode the reply is encrypted with the
//! account's current EncodingAESKey and signed with its current token, with a fresh nonce.
//! The webhook builds the reply only once the scan is stored.

use std::fmt::Write as _;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::{
    config::{ReplyMessage, ReplyOn, ReplyRule, SceneMatch},
    events::{Event, EventKind},
    protocol::{crypto::AesKey, signature},
    secret::Secret,
};

/// Characters kept as they are when a value fills a placeholder in a news item's URL:
/// RFC 3986's unreserved ones.
const URL_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// What a reply needs of a stored scan.
#[derive(Debug, Clone)]
pub(crate) struct Scanned {
    kind: EventKind,
    /// The user, `ToUserName` of the reply.
    openid: String,
    scene: String,
    /// The account's original ID, `FromUserName` of the reply.
    account: String,
}

impl Scanned {
    /// The facts of `event` a reply uses.
    pub(crate) fn of(event: &Event) -> Self {
        Self {
            kind: event.kind,
            openid: event.openid.clone(),
            scene: event.scene.clone(),
            account: event.account.clone(),
        }
    }
}

/// Whether `event` is a scan of a QR code — what the service owns — rather than a plain
/// follow (no scene) or an unfollow, which go to the existing handler like any message.
pub(crate) fn is_qr_scan(event: &Event) -> bool {
    matches!(event.kind, EventKind::Subscribe | EventKind::Scan) && !event.scene.is_empty()
}

/// The first rule answering `scan`.
pub(crate) fn matching<'a>(rules: &'a [ReplyRule], scan: &Scanned) -> Option<&'a ReplyRule> {
    rules.iter().find(|rule| {
        let event = match rule.on {
            ReplyOn::Subscribe => scan.kind == EventKind::Subscribe,
            ReplyOn::Scan => scan.kind == EventKind::Scan,
            ReplyOn::Any => true,
        };
        let scene = match &rule.scene {
            SceneMatch::Exact(scene) => *scene == scan.scene,
            SceneMatch::Prefix(prefix) => scan.scene.starts_with(prefix.as_str()),
        };
        event && scene
    })
}

/// `rule`'s passive reply to `scan` as plaintext XML, created at `create_time`.
pub(crate) fn render(rule: &ReplyRule, scan: &Scanned, create_time: u64) -> String {
    let fill = |text: &str| -> String {
        if !text.contains('{') {
            return text.to_owned();
        }
        text.replace("{openid}", &scan.openid)
            .replace("{scene}", &scan.scene)
    };
    let mut xml = String::with_capacity(512);
    xml.push_str("<xml><ToUserName>");
    cdata(&mut xml, &scan.openid);
    xml.push_str("</ToUserName><FromUserName>");
    cdata(&mut xml, &scan.account);
    let _ = write!(xml, "</FromUserName><CreateTime>{create_time}</CreateTime>");
    match &rule.message {
        ReplyMessage::Text(text) => {
            xml.push_str("<MsgType><![CDATA[text]]></MsgType><Content>");
            cdata(&mut xml, &fill(text));
            xml.push_str("</Content>");
        }
        ReplyMessage::News(item) => {
            let fill_url = |url: &str| {
                url.replace(
                    "{openid}",
                    &utf8_percent_encode(&scan.openid, URL_VALUE).to_string(),
                )
                .replace(
                    "{scene}",
                    &utf8_percent_encode(&scan.scene, URL_VALUE).to_string(),
                )
            };
            xml.push_str(
                "<MsgType><![CDATA[news]]></MsgType><ArticleCount>1</ArticleCount><Articles><item><Title>",
            );
            cdata(&mut xml, &fill(&item.title));
            xml.push_str("</Title><Description>");
            cdata(&mut xml, &fill(&item.description));
            xml.push_str("</Description><PicUrl>");
            cdata(&mut xml, &fill_url(&item.pic_url));
            xml.push_str("</PicUrl><Url>");
            cdata(&mut xml, &fill_url(&item.url));
            xml.push_str("</Url></item></Articles>");
        }
    }
    xml.push_str("</xml>");
    xml
}

/// `xml` as a safe-mode reply: encrypted with `key` for `app_id`, signed with `token`
/// over a fresh nonce and `timestamp`, in WeChat's envelope.
pub(crate) fn seal(
    xml: &str,
    key: &AesKey,
    app_id: &str,
    token: &Secret,
    timestamp: u64,
) -> String {
    let encrypt = key.encrypt(xml.as_bytes(), app_id);
    let nonce = rand::random::<u32>().to_string();
    let timestamp = timestamp.to_string();
    let msg_signature = signature::sign(&[token.expose(), &timestamp, &nonce, &encrypt]);
    format!(
        "<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt><MsgSignature><![CDATA[{msg_signature}]]></MsgSignature>\
         <TimeStamp>{timestamp}</TimeStamp><Nonce><![CDATA[{nonce}]]></Nonce></xml>"
    )
}

/// `text` as CDATA; a `]]>` inside it is split across two sections.
fn cdata(xml: &mut String, text: &str) {
    xml.push_str("<![CDATA[");
    if text.contains("]]>") {
        xml.push_str(&text.replace("]]>", "]]]]><![CDATA[>"));
    } else {
        xml.push_str(text);
    }
    xml.push_str("]]>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NewsItem;

    fn scan(kind: EventKind, scene: &str) -> Scanned {
        Scanned {
            kind,
            openid: "o-1".into(),
            scene: scene.into(),
            account: "gh_a".into(),
        }
    }

    fn rule(scene: SceneMatch, on: ReplyOn, text: &str) -> ReplyRule {
        ReplyRule {
            scene,
            on,
            message: ReplyMessage::Text(text.into()),
        }
    }

    #[test]
    fn the_first_matching_rule_answers() {
        let rules = [
            rule(
                SceneMatch::Exact("poster-A".into()),
                ReplyOn::Subscribe,
                "a",
            ),
            rule(SceneMatch::Prefix("poster-".into()), ReplyOn::Any, "b"),
        ];
        let text = |s: &Scanned| match matching(&rules, s).map(|r| &r.message) {
            Some(ReplyMessage::Text(t)) => Some(t.as_str()),
            _ => None,
        };
        assert_eq!(text(&scan(EventKind::Subscribe, "poster-A")), Some("a"));
        assert_eq!(text(&scan(EventKind::Scan, "poster-A")), Some("b"));
        assert_eq!(text(&scan(EventKind::Scan, "flyer")), None);
    }

    #[test]
    fn replies_fill_placeholders_and_keep_cdata_whole() {
        let r = rule(
            SceneMatch::Prefix(String::new()),
            ReplyOn::Any,
            "hi {openid} ]]> {scene}",
        );
        let xml = render(&r, &scan(EventKind::Scan, "s"), 7);
        assert_eq!(
            xml,
            "<xml><ToUserName><![CDATA[o-1]]></ToUserName><FromUserName><![CDATA[gh_a]]></FromUserName>\
             <CreateTime>7</CreateTime><MsgType><![CDATA[text]]></MsgType>\
             <Content><![CDATA[hi o-1 ]]]]><![CDATA[> s]]></Content></xml>"
        );
        let news = ReplyRule {
            message: ReplyMessage::News(NewsItem {
                title: "T {scene}".into(),
                description: String::new(),
                url: "https://x.example/c?s={scene}".into(),
                pic_url: String::new(),
            }),
            ..r
        };
        let xml = render(&news, &scan(EventKind::Scan, "a b&c"), 7);
        assert!(xml.contains("<Title><![CDATA[T a b&c]]></Title>"), "{xml}");
        assert!(
            xml.contains("<Url><![CDATA[https://x.example/c?s=a%20b%26c]]></Url>"),
            "{xml}"
        );
    }
}
