//! A subscriber's filter: which tickets, scenes and kinds it wants. Values within one
//! dimension are alternatives; non-empty dimensions must all match; empty means all.

use std::collections::HashSet;

use super::{Event, EventKind};

/// Which events a subscriber receives.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    tickets: HashSet<String>,
    scenes: HashSet<String>,
    kinds: HashSet<EventKind>,
    /// AppIDs; empty: every account.
    accounts: HashSet<String>,
}

impl Filter {
    /// A filter; empty collections match everything in that dimension.
    pub fn new(
        tickets: impl IntoIterator<Item = String>,
        scenes: impl IntoIterator<Item = String>,
        kinds: impl IntoIterator<Item = EventKind>,
    ) -> Self {
        Self {
            tickets: tickets.into_iter().collect(),
            scenes: scenes.into_iter().collect(),
            kinds: kinds.into_iter().collect(),
            accounts: HashSet::new(),
        }
    }

    /// Only events received for these accounts (AppIDs); empty: every account.
    pub fn with_accounts(mut self, accounts: impl IntoIterator<Item = String>) -> Self {
        self.accounts = accounts.into_iter().collect();
        self
    }

    /// Whether the subscriber wants this event.
    pub fn matches(&self, event: &Event) -> bool {
        (self.tickets.is_empty() || self.tickets.contains(&event.ticket))
            && (self.scenes.is_empty() || self.scenes.contains(&event.scene))
            && (self.kinds.is_empty() || self.kinds.contains(&event.kind))
            && (self.accounts.is_empty() || self.accounts.contains(&event.app_id))
    }

    /// The tickets asked for; empty means any.
    pub(super) fn tickets(&self) -> &HashSet<String> {
        &self.tickets
    }

    /// The scenes asked for; empty means any.
    pub(super) fn scenes(&self) -> &HashSet<String> {
        &self.scenes
    }
}
