//! Decoding one push body (WeChat's XML) into an [`events::Event`](crate::events::Event),
//! or into the reason it is not one. Hostile input is stopped here: bodies that are not
//! UTF-8, carry a DOCTYPE (entity expansion), nest deeper than any WeChat push, miss a
//! field an event needs, hold a field longer (in bytes) than WeChat ever sends, or a
//! control character in a field that names something are errors; messages that are not
//! scan events are `Ignored`.

use std::time::SystemTime;

use quick_xml::{Reader, events::Event as XmlEvent};
use serde::Deserialize;

use crate::events::{DedupKey, Event, EventKind};

/// The deepest element nesting in any WeChat push (menu events reach 5).
const MAX_DEPTH: usize = 8;
/// How far ahead of its arrival a push's `CreateTime` may be: a day covers any clock.
pub const MAX_CREATE_TIME_AHEAD_SECONDS: u64 = 24 * 3600;
/// The last second a protobuf `Timestamp` holds: 9999-12-31T23:59:59Z.
const MAX_TIMESTAMP_SECONDS: u64 = 253_402_300_799;

/// Why a body is not an acceptable push.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body is not UTF-8.
    #[error("body is not UTF-8")]
    NotUtf8,
    /// A DOCTYPE or entity declaration: never sent by WeChat, the door to XXE.
    #[error("DOCTYPE is not allowed")]
    DocType,
    /// Nesting deeper than any WeChat push.
    #[error("XML nests deeper than {MAX_DEPTH} elements")]
    TooDeep,
    /// Not well-formed, or not shaped like a push.
    #[error("malformed XML: {0}")]
    Malformed(String),
    /// A field the push needs is absent or empty.
    #[error("missing field {0}")]
    MissingField(&'static str),
    /// `CreateTime` is not a number of seconds a protobuf `Timestamp` can carry
    /// (0001-01-01 to 9999-12-31), so no subscriber could read it.
    #[error("CreateTime is not a Unix timestamp within protobuf Timestamp's range")]
    BadCreateTime,
    /// `CreateTime` is further ahead of the time the push arrived than any clock skew.
    #[error(
        "CreateTime is more than {MAX_CREATE_TIME_AHEAD_SECONDS} seconds ahead of the time the push was received"
    )]
    CreateTimeAhead,
    /// A field far longer than WeChat ever sends (a huge CDATA, say), in UTF-8 bytes.
    #[error("field {0} longer than {1} bytes")]
    FieldTooLong(&'static str, usize),
    /// A control character, raw or as a character reference (`&#0;`, `&#x1b;` decode to
    /// one): openids, scenes and tickets are printable, and a control character in them
    /// could only confuse logs, terminals and the systems subscribers feed.
    #[error("field {0} contains a control character")]
    ControlCharacter(&'static str),
}

/// Longest value accepted per field, in UTF-8 bytes: generous multiples of what WeChat
/// sends, so an absurd value is refused instead of being stored and streamed to every
/// subscriber. Bytes, not characters: bytes are what an event costs in memory and on
/// disk, and a limit in characters lets 4-byte characters take four times as much.
/// `EventKey` fits the largest scene CreateTicket mints — 64 characters of 4 bytes —
/// behind the `qrscene_` of a new follower's push: a code that was minted can be scanned.
const FIELD_LIMITS: [(&str, usize); 6] = [
    ("ToUserName", 64),
    ("FromUserName", 128),
    ("MsgType", 32),
    ("Event", 64),
    ("EventKey", MAX_EVENT_KEY_BYTES),
    ("Ticket", 1024),
];

/// The longest `EventKey`: `qrscene_` and the largest scene_str in bytes.
pub const MAX_EVENT_KEY_BYTES: usize = "qrscene_".len() + 4 * crate::wechat::MAX_SCENE_STR_CHARS;

/// The fields of a push we read; everything else is ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename = "xml")]
struct PushXml {
    #[serde(rename = "ToUserName")]
    to_user_name: Option<String>,
    #[serde(rename = "FromUserName")]
    from_user_name: Option<String>,
    #[serde(rename = "CreateTime")]
    create_time: Option<String>,
    #[serde(rename = "MsgType")]
    msg_type: Option<String>,
    #[serde(rename = "Event")]
    event: Option<String>,
    #[serde(rename = "EventKey")]
    event_key: Option<String>,
    #[serde(rename = "Ticket")]
    ticket: Option<String>,
    #[serde(rename = "Encrypt")]
    encrypt: Option<String>,
}

/// A decoded push.
#[derive(Debug, Clone, PartialEq)]
pub enum Push {
    /// A scan or follow event, to be emitted once.
    Event(Event, DedupKey),
    /// A valid message that is not a QR event (text, menu click, ...): acknowledged only.
    Ignored {
        /// WeChat's `MsgType`.
        msg_type: String,
    },
}

/// The outer envelope of a safe-mode push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The base64 `Encrypt` field, when present.
    pub encrypt: Option<String>,
}

/// Reads the `Encrypt` field of an (outer) push body.
pub fn decode_envelope(body: &[u8]) -> Result<Envelope, DecodeError> {
    let xml = parse(body)?;
    Ok(Envelope {
        encrypt: xml.encrypt.filter(|e| !e.trim().is_empty()),
    })
}

/// Decodes a plaintext push body.
pub fn decode_push(body: &[u8], received_time: SystemTime) -> Result<Push, DecodeError> {
    let xml = parse(body)?;
    check_lengths(&xml)?;
    let msg_type = required(xml.msg_type, "MsgType")?;
    let account = required(xml.to_user_name, "ToUserName")?;
    let openid = required(xml.from_user_name, "FromUserName")?;
    let create_time_text = required(xml.create_time, "CreateTime")?;
    let create_time: u64 = create_time_text
        .trim()
        .parse()
        .ok()
        .filter(|&t| t <= MAX_TIMESTAMP_SECONDS)
        .ok_or(DecodeError::BadCreateTime)?;
    let received_secs = received_time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if create_time > received_secs.saturating_add(MAX_CREATE_TIME_AHEAD_SECONDS) {
        return Err(DecodeError::CreateTimeAhead);
    }
    if msg_type != "event" {
        return Ok(Push::Ignored { msg_type });
    }
    let event_name = required(xml.event, "Event")?;
    let event_key = xml.event_key.unwrap_or_default();
    let ticket = xml.ticket.unwrap_or_default();
    let (kind, scene) = match event_name.as_str() {
        "subscribe" => (
            EventKind::Subscribe,
            event_key
                .strip_prefix("qrscene_")
                .unwrap_or(&event_key)
                .to_owned(),
        ),
        "SCAN" => {
            if event_key.is_empty() {
                return Err(DecodeError::MissingField("EventKey"));
            }
            (EventKind::Scan, event_key.clone())
        }
        "unsubscribe" => (EventKind::Unsubscribe, String::new()),
        _ => return Ok(Push::Ignored { msg_type }),
    };
    let key = DedupKey::new(&openid, create_time, &event_name, &event_key);
    let event = Event {
        kind,
        openid,
        scene,
        ticket,
        account,
        // Filled in by the webhook that received it.
        app_id: String::new(),
        create_time,
        received_time,
        new_follower: kind == EventKind::Subscribe,
    };
    Ok(Push::Event(event, key))
}

fn required(value: Option<String>, name: &'static str) -> Result<String, DecodeError> {
    value
        .filter(|v| !v.trim().is_empty())
        .ok_or(DecodeError::MissingField(name))
}

fn check_lengths(xml: &PushXml) -> Result<(), DecodeError> {
    let values = [
        &xml.to_user_name,
        &xml.from_user_name,
        &xml.msg_type,
        &xml.event,
        &xml.event_key,
        &xml.ticket,
    ];
    for ((name, limit), value) in FIELD_LIMITS.iter().zip(values) {
        let Some(value) = value else { continue };
        if value.len() > *limit {
            return Err(DecodeError::FieldTooLong(name, *limit));
        }
        if value.chars().any(char::is_control) {
            return Err(DecodeError::ControlCharacter(name));
        }
    }
    Ok(())
}

fn parse(body: &[u8]) -> Result<PushXml, DecodeError> {
    let text = std::str::from_utf8(body).map_err(|_| DecodeError::NotUtf8)?;
    check_shape(text)?;
    quick_xml::de::from_str(text).map_err(|e| DecodeError::Malformed(e.to_string()))
}

/// One streaming pass before serde sees the text: refuses DOCTYPEs (quick-xml would not
/// expand their entities, but a push never has one) and nesting no push has, so neither
/// entity tricks nor deep recursion reach the deserializer.
fn check_shape(text: &str) -> Result<(), DecodeError> {
    let mut reader = Reader::from_str(text);
    let mut depth = 0usize;
    let mut roots = 0usize;
    loop {
        match reader.read_event() {
            Ok(XmlEvent::DocType(_)) => return Err(DecodeError::DocType),
            Ok(XmlEvent::Start(_)) => {
                if depth == 0 {
                    roots += 1;
                }
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(DecodeError::TooDeep);
                }
            }
            Ok(XmlEvent::Empty(_)) if depth == 0 => roots += 1,
            Ok(XmlEvent::End(_)) => depth = depth.saturating_sub(1),
            Ok(XmlEvent::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(DecodeError::Malformed(e.to_string())),
        }
    }
    if roots != 1 || depth != 0 {
        return Err(DecodeError::Malformed("expected one <xml> root".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(xml: &str) -> Result<Push, DecodeError> {
        decode_push(xml.as_bytes(), SystemTime::UNIX_EPOCH)
    }

    #[test]
    fn subscribe_with_scene_strips_prefix() {
        let xml = "<xml><ToUserName><![CDATA[gh_a]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName>\
            <CreateTime>123</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event>\
            <EventKey><![CDATA[qrscene_42]]></EventKey><Ticket><![CDATA[T]]></Ticket></xml>";
        let Push::Event(event, _) = decode(xml).unwrap() else {
            panic!("not an event")
        };
        assert_eq!(
            (event.kind, event.scene.as_str()),
            (EventKind::Subscribe, "42")
        );
        assert!(event.new_follower);
    }

    fn scan_with(openid: &str, scene: &str, ticket: &str) -> String {
        format!(
            "<xml><ToUserName>gh_a</ToUserName><FromUserName>{openid}</FromUserName>\
             <CreateTime>123</CreateTime><MsgType>event</MsgType><Event>SCAN</Event>\
             <EventKey>{scene}</EventKey><Ticket>{ticket}</Ticket></xml>"
        )
    }

    #[test]
    fn limits_count_bytes_not_characters() {
        // 32 four-byte characters: 32 characters, 128 bytes, FromUserName's limit.
        let at_limit = "\u{1D54F}".repeat(32);
        assert!(decode(&scan_with(&at_limit, "1", "T")).is_ok());
        let over = format!("{at_limit}a");
        assert_eq!(
            decode(&scan_with(&over, "1", "T")),
            Err(DecodeError::FieldTooLong("FromUserName", 128))
        );
        assert_eq!(
            DecodeError::FieldTooLong("Ticket", 1024).to_string(),
            "field Ticket longer than 1024 bytes"
        );
    }

    #[test]
    fn control_characters_are_refused_raw_or_as_references() {
        // quick-xml itself refuses `&#0;` (not a legal XML character); the other control
        // characters are legal XML and are refused here.
        let refused = |result: Result<Push, DecodeError>, field: &'static str| match result {
            Err(DecodeError::ControlCharacter(name)) => name == field,
            Err(DecodeError::Malformed(message)) => message.contains("not permitted"),
            _ => false,
        };
        for bad in [
            "o&#0;x",
            "o&#x1b;[2J",
            "o&#10;x",
            "o&#x7f;",
            "o&#x85;",
            "o\u{7}x",
        ] {
            let openid = decode(&scan_with(bad, "1", "T"));
            assert!(refused(openid, "FromUserName"), "openid {bad:?}");
            let scene = decode(&scan_with("o", bad, "T"));
            assert!(refused(scene, "EventKey"), "scene {bad:?}");
            let ticket = decode(&scan_with("o", "1", bad));
            assert!(refused(ticket, "Ticket"), "ticket {bad:?}");
        }
        assert_eq!(
            decode(&scan_with("o&#x1b;[2J", "1", "T")),
            Err(DecodeError::ControlCharacter("FromUserName"))
        );
        assert!(decode(&scan_with("o-Ünï_cödé", "scène 1", "T")).is_ok());
    }

    #[test]
    fn hostile_shapes_are_refused() {
        let doctype = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">]><xml><ToUserName>&lol;</ToUserName></xml>";
        assert_eq!(decode(doctype), Err(DecodeError::DocType));
        let deep = format!("<xml>{}{}</xml>", "<a>".repeat(50), "</a>".repeat(50));
        assert_eq!(decode(&deep), Err(DecodeError::TooDeep));
        assert_eq!(
            decode_push(b"<xml>\xff</xml>", SystemTime::UNIX_EPOCH),
            Err(DecodeError::NotUtf8)
        );
        assert!(matches!(
            decode("<xml><a></b></xml>"),
            Err(DecodeError::Malformed(_))
        ));
    }
}
