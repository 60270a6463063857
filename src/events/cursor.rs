//! Cursors: opaque, increasing positions in the event log. A cursor names the log's epoch
//! (one per in-memory log, so a cursor from before a restart is recognised as lost rather
//! than silently skipping events) and a sequence number within it.

use std::{fmt, str::FromStr};

/// A position in the event log: "after the event with this sequence number".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    /// Which log instance issued it.
    pub epoch: u32,
    /// The event's sequence number; 0 is the position before the first event.
    pub seq: u64,
}

/// A string that is not a cursor this service issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a cursor issued by this service")]
pub struct CursorParseError;

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Fixed width, so cursors of one epoch also sort as strings.
        write!(f, "{:08x}{:016x}", self.epoch, self.seq)
    }
}

impl FromStr for Cursor {
    type Err = CursorParseError;

    fn from_str(s: &str) -> Result<Self, CursorParseError> {
        if s.len() != 24 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CursorParseError);
        }
        Ok(Self {
            epoch: u32::from_str_radix(&s[..8], 16).map_err(|_| CursorParseError)?,
            seq: u64::from_str_radix(&s[8..], 16).map_err(|_| CursorParseError)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_sorts_as_text() {
        let a = Cursor { epoch: 7, seq: 9 };
        let b = Cursor { epoch: 7, seq: 10 };
        assert_eq!(a.to_string().parse::<Cursor>(), Ok(a));
        assert!(a.to_string() < b.to_string());
        assert!("xyz".parse::<Cursor>().is_err());
    }
}
