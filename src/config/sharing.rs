//! Settings for sharing an account's one server URL (README, "Sharing the server URL"):
//! where pushes the service does not own are forwarded, and the passive replies sent to
//! scans. Plain values only; `src/webhook/forward.rs` and `src/webhook/reply.rs` act on
//! them. Each account has its own, in its [`WebhookSettings`](super::WebhookSettings).

use std::time::Duration;

use serde::Deserialize;
use url::Url;

/// WeChat waits 5 s for an answer: a forward must give up before that, with room left
/// to answer.
pub const MAX_FORWARD_TIMEOUT_MS: u64 = 4_900;

/// Where pushes that are not QR scans go, and what happens when that handler fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSettings {
    /// The existing handler's URL; the push's own query string is appended verbatim.
    pub url: Url,
    /// Forward QR scans too (after they are stored and streamed).
    pub scans: bool,
    /// The answer when the handler is unreachable, too slow or answers 5xx.
    pub failure: ForwardFailure,
    /// The deadline of one forward, connecting and reading the answer included.
    pub timeout: Duration,
}

/// What WeChat is answered when the handler a push was forwarded to fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ForwardFailure {
    /// 502: WeChat tries again, as it would have with the handler alone.
    Retry,
    /// `success`: the push is dropped, and the user never sees WeChat's "service
    /// unavailable" notice.
    Success,
}

/// One passive reply to scans, from `[[accounts.replies]]`; the first matching rule
/// answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyRule {
    /// Which scenes it answers.
    pub scene: SceneMatch,
    /// Which scans it answers.
    pub on: ReplyOn,
    /// What it answers, with `{openid}` and `{scene}` still in it.
    pub message: ReplyMessage,
}

/// How a rule names its scenes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SceneMatch {
    /// This scene only (`scene`).
    Exact(String),
    /// Every scene starting with this (`scene_prefix`; empty: every scene).
    Prefix(String),
}

/// Which scans a rule answers, by WeChat's event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyOn {
    /// `subscribe`: the user followed with this scan.
    Subscribe,
    /// `SCAN`: the user already followed.
    Scan,
    /// Both.
    Any,
}

/// A passive reply's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyMessage {
    /// A text message (`text`).
    Text(String),
    /// A news message with one article (`title`, `description`, `url`, `pic_url`).
    News(NewsItem),
}

/// One news article.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewsItem {
    /// Its title.
    pub title: String,
    /// Its summary.
    pub description: String,
    /// Where a tap leads.
    pub url: String,
    /// Its picture.
    pub pic_url: String,
}

/// One `[[accounts.replies]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyFile {
    scene: Option<String>,
    scene_prefix: Option<String>,
    on: String,
    text: Option<String>,
    title: Option<String>,
    description: Option<String>,
    url: Option<String>,
    pic_url: Option<String>,
}

/// Reads `[[accounts.replies]]` entry `value`; an error names the field below the entry
/// (empty: the entry itself) and the reason.
pub(super) fn reply_rule(value: toml::Value) -> Result<ReplyRule, (&'static str, String)> {
    let rule: ReplyFile = value
        .try_into()
        .map_err(|e: toml::de::Error| ("", e.message().to_owned()))?;
    let scene = match (rule.scene, rule.scene_prefix) {
        (Some(scene), None) if !scene.is_empty() => SceneMatch::Exact(scene),
        (Some(_), None) => return Err(("scene", "must not be empty".into())),
        (None, Some(prefix)) => SceneMatch::Prefix(prefix),
        _ => return Err(("", "needs scene or scene_prefix (one of them)".into())),
    };
    let on = match rule.on.as_str() {
        "subscribe" => ReplyOn::Subscribe,
        "scan" => ReplyOn::Scan,
        "any" => ReplyOn::Any,
        other => {
            return Err((
                "on",
                format!("{other:?} is not one of subscribe, scan, any"),
            ));
        }
    };
    let news_given = rule.title.is_some()
        || rule.description.is_some()
        || rule.url.is_some()
        || rule.pic_url.is_some();
    let message = match (rule.text, news_given) {
        (Some(text), false) => {
            check_placeholders(&text).map_err(|reason| ("text", reason))?;
            ReplyMessage::Text(text)
        }
        (None, true) => {
            let title = rule
                .title
                .ok_or(("title", "a news reply needs a title".to_owned()))?;
            let item = NewsItem {
                title,
                description: rule.description.unwrap_or_default(),
                url: rule.url.unwrap_or_default(),
                pic_url: rule.pic_url.unwrap_or_default(),
            };
            for (field, value) in [
                ("title", &item.title),
                ("description", &item.description),
                ("url", &item.url),
                ("pic_url", &item.pic_url),
            ] {
                check_placeholders(value).map_err(|reason| (field, reason))?;
            }
            ReplyMessage::News(item)
        }
        (Some(_), true) => {
            return Err((
                "",
                "text or a news item (title, description, url, pic_url), not both".into(),
            ));
        }
        (None, false) => {
            return Err((
                "",
                "needs text, or a news item (title, description, url, pic_url)".into(),
            ));
        }
    };
    Ok(ReplyRule { scene, on, message })
}

/// Refuses `{name}` placeholders other than `{openid}` and `{scene}`, which would
/// otherwise reach users as written.
fn check_placeholders(text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let name = &after[..close];
        let is_name =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if is_name && name != "openid" && name != "scene" {
            return Err(format!(
                "unknown placeholder {{{name}}}: only {{openid}} and {{scene}} are filled in"
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// `url` with its password, username and query values hidden, for printing: the URL is
/// not a secret, but its userinfo and query may carry one.
pub fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    if !shown.username().is_empty() {
        let _ = shown.set_username("<redacted>");
    }
    if shown.password().is_some() {
        let _ = shown.set_password(Some("<redacted>"));
    }
    if shown.query().is_some() {
        let names: Vec<String> = shown
            .query_pairs()
            .map(|(name, _)| name.into_owned())
            .collect();
        shown
            .query_pairs_mut()
            .clear()
            .extend_pairs(names.iter().map(|name| (name.as_str(), "<redacted>")));
    }
    // `<` and `>` were percent-encoded by the setters; show the marker as written.
    shown.as_str().replace("%3Credacted%3E", "<redacted>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_userinfo_and_query_values_only() {
        let url =
            Url::parse("https://bob:hunter2@handler.example:8443/wx/in?key=s3cret&v=1").unwrap();
        assert_eq!(
            redact_url(&url),
            "https://<redacted>:<redacted>@handler.example:8443/wx/in?key=<redacted>&v=<redacted>"
        );
        let plain = Url::parse("http://10.0.0.5:8000/wechat").unwrap();
        assert_eq!(redact_url(&plain), "http://10.0.0.5:8000/wechat");
    }

    #[test]
    fn placeholders_are_checked() {
        assert!(check_placeholders("Hi {openid}, scene {scene} {}").is_ok());
        assert!(check_placeholders("{\"json\": 1}").is_ok());
        assert_eq!(
            check_placeholders("Hi {name}"),
            Err("unknown placeholder {name}: only {openid} and {scene} are filled in".into())
        );
    }
}
