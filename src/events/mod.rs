//! The events a push becomes, and the log that delivers them. Delivery semantics in one
//! sentence: every event the webhook accepts is appended once (re-sent pushes are
//! de-duplicated) to an ordered log, and every subscriber reads that log from its own
//! cursor, so it sees each matching event once, in order, across reconnects, at its own
//! pace.

mod cursor;
mod filter;
mod log;
mod memory;
mod subscription;

use std::time::SystemTime;

pub use cursor::{Cursor, CursorParseError};
pub use filter::Filter;
pub use log::{Appended, Entry, EventLog, LogError};
pub use memory::MemoryLog;
pub use subscription::{Delivery, StreamEnd, Subscribers, Subscription};

/// The kinds of push the service emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// WeChat `subscribe`: the user followed (with a scene: through a QR code).
    Subscribe,
    /// WeChat `SCAN`: a follower scanned a QR code.
    Scan,
    /// WeChat `unsubscribe`.
    Unsubscribe,
}

/// One user event, as WeChat pushed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The user's OpenID (`FromUserName`).
    pub openid: String,
    /// The scanned code's scene without the `qrscene_` prefix; empty when none.
    pub scene: String,
    /// The scanned code's ticket; empty when none.
    pub ticket: String,
    /// The account's original ID (`ToUserName`).
    pub account: String,
    /// WeChat's `CreateTime`, Unix seconds.
    pub create_time: u64,
    /// When the webhook accepted the push.
    pub received_time: SystemTime,
    /// True for a `subscribe`: the user has just followed.
    pub new_follower: bool,
}

/// What makes two pushes the same push re-sent: WeChat events carry no MsgId, so
/// `FromUserName` + `CreateTime` + `Event` + `EventKey` (see the API notes, §5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DedupKey(Box<str>);

impl DedupKey {
    /// The key of a push with these fields.
    pub fn new(openid: &str, create_time: u64, event: &str, event_key: &str) -> Self {
        // A separator that cannot occur in XML text keeps field boundaries unambiguous.
        Self(format!("{openid}\u{0}{create_time}\u{0}{event}\u{0}{event_key}").into_boxed_str())
    }
}
