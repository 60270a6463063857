//! A subscriber's filter: which tickets, scenes and kinds it wants. Values within one
//! dimension are alternatives; non-empty dimensions must all match; empty means all.
//! Each ticket and scene is held once, as an `Arc<str>` the fan-out index shares, and
//! [`Filter::charge`] says what a filter costs before any of it is built, so the
//! subscription memory budget can refuse a stream before its memory is taken.

use std::{collections::HashSet, sync::Arc};

use super::{Event, EventKind};

/// Bytes a ticket, scene or account costs beyond its text: its place in the filter's
/// set and in the fan-out index (hash slots, the shared `Arc` header, the index's list
/// entry) with allocator rounding. Measured with the bench's `memory` scenario, rounded up.
pub const ENTRY_OVERHEAD_BYTES: u64 = 224;

/// Which events a subscriber receives.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    tickets: HashSet<Arc<str>>,
    scenes: HashSet<Arc<str>>,
    kinds: HashSet<EventKind>,
    /// AppIDs; empty: every account.
    accounts: HashSet<Arc<str>>,
}

impl Filter {
    /// A filter; empty collections match everything in that dimension.
    pub fn new(
        tickets: impl IntoIterator<Item = String>,
        scenes: impl IntoIterator<Item = String>,
        kinds: impl IntoIterator<Item = EventKind>,
    ) -> Self {
        Self {
            tickets: tickets.into_iter().map(Arc::from).collect(),
            scenes: scenes.into_iter().map(Arc::from).collect(),
            kinds: kinds.into_iter().collect(),
            accounts: HashSet::new(),
        }
    }

    /// Only events received for these accounts (AppIDs); empty: every account.
    pub fn with_accounts(mut self, accounts: impl IntoIterator<Item = String>) -> Self {
        self.accounts = accounts.into_iter().map(Arc::from).collect();
        self
    }

    /// What a filter of these values costs in memory, in bytes, counted before it is
    /// built: each value's text plus [`ENTRY_OVERHEAD_BYTES`].
    pub fn charge<'a>(values: impl IntoIterator<Item = &'a String>) -> u64 {
        values
            .into_iter()
            .map(|v| v.len() as u64 + ENTRY_OVERHEAD_BYTES)
            .sum()
    }

    /// Whether the subscriber wants this event.
    pub fn matches(&self, event: &Event) -> bool {
        (self.tickets.is_empty() || self.tickets.contains(event.ticket.as_str()))
            && (self.scenes.is_empty() || self.scenes.contains(event.scene.as_str()))
            && (self.kinds.is_empty() || self.kinds.contains(&event.kind))
            && (self.accounts.is_empty() || self.accounts.contains(event.app_id.as_str()))
    }

    /// The tickets asked for; empty means any.
    pub(super) fn tickets(&self) -> &HashSet<Arc<str>> {
        &self.tickets
    }

    /// The scenes asked for; empty means any.
    pub(super) fn scenes(&self) -> &HashSet<Arc<str>> {
        &self.scenes
    }
}
