//! The access_token cache. moka gives the two properties that matter: one fetch at a time
//! per account however many callers miss together (`try_get_with` coalesces them, and a
//! failed fetch is not cached), and per-entry expiry a safety margin before WeChat's
//! `expires_in`, so a cached token is never used in its last minutes.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use moka::{Expiry, future::Cache, ops::compute::Op};

use super::WeChatError;
use crate::secret::Secret;

/// A token and how long it may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// The token itself.
    pub value: Secret,
    /// How long to keep using it: `expires_in` less the safety margin.
    pub usable_for: Duration,
}

impl AccessToken {
    /// A token WeChat said lives `expires_in` seconds. The margin is a tenth of its life,
    /// at most five minutes: 7,200 s → used for 6,900 s; 300 s → 270 s.
    pub fn new(value: Secret, expires_in: u64) -> Self {
        let life = Duration::from_secs(expires_in);
        let margin = (life / 10).min(Duration::from_secs(300));
        Self {
            value,
            usable_for: life - margin,
        }
    }
}

struct UntilUnusable;

impl Expiry<String, Arc<AccessToken>> for UntilUnusable {
    fn expire_after_create(
        &self,
        _account: &String,
        token: &Arc<AccessToken>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(token.usable_for)
    }
}

/// Cached tokens, one per account (AppID).
pub struct TokenCache {
    tokens: Cache<String, Arc<AccessToken>>,
    fetches: AtomicU64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("fetches", &self.fetches)
            .finish_non_exhaustive()
    }
}

impl Default for TokenCache {
    fn default() -> Self {
        Self {
            tokens: Cache::builder()
                .max_capacity(1024)
                .expire_after(UntilUnusable)
                .build(),
            fetches: AtomicU64::new(0),
        }
    }
}

impl TokenCache {
    /// The cached token for `account`, or the result of `fetch` run once for all callers
    /// waiting on it.
    pub async fn get_or_fetch<F>(
        &self,
        account: &str,
        fetch: F,
    ) -> Result<Arc<AccessToken>, WeChatError>
    where
        F: Future<Output = Result<AccessToken, WeChatError>>,
    {
        self.tokens
            .try_get_with_by_ref(account, async {
                self.fetches.fetch_add(1, Ordering::Relaxed);
                fetch.await.map(Arc::new)
            })
            .await
            .map_err(|shared| (*shared).clone())
    }

    /// Drops `account`'s token if it is still `rejected`: a concurrent caller may already
    /// have replaced it with a good one, which must survive.
    pub async fn invalidate_if_current(&self, account: &str, rejected: &AccessToken) {
        self.tokens
            .entry_by_ref(account)
            .and_compute_with(|current| async move {
                match current {
                    Some(entry) if **entry.value() == *rejected => Op::Remove,
                    _ => Op::Nop,
                }
            })
            .await;
    }

    /// How many fetches this cache started (for logs and tests).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }
}
