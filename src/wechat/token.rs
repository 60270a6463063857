//! The access_token lifecycle for one deployment. What it guarantees:
//!
//! - **One fetch at a time** per account, however many callers miss together: moka's
//!   `try_get_with` runs one fetch and hands its result to every waiter; a failed fetch
//!   is not cached, so the next call tries again (no stampede, no poisoned cache).
//! - **Refresh ahead**: once a token is past `refresh_at` of its life, the next caller
//!   starts one background refresh and keeps using the still-valid token; nobody waits
//!   on a refresh unless there is no valid token at all.
//! - **Rejection**: when WeChat rejects a token (40001/40014/42001) it is dropped only if
//!   it is still the cached one — a concurrent caller may already have replaced it — and
//!   the refetch asks for `force_refresh` at most once every 30 s, WeChat's rate limit.
//! - **Expiry**: a token is never used in the last tenth of its life (at most 5 minutes).
//! - **Clamped lifetimes**: `expires_in` is taken within [`MIN_LIFETIME`, `MAX_LIFETIME`],
//!   so a broken token source answering 0 cannot make every call a fetch, nor one
//!   answering years keep a token cached forever.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use moka::{Expiry, future::Cache, ops::compute::Op};

use super::WeChatError;
use crate::{logging::LogBudget, metrics::AccountMetrics, secret::Secret};

/// WeChat allows a `force_refresh` of the stable token at most this often.
pub const FORCE_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// Shortest lifetime a token is given, whatever `expires_in` says: with the default
/// refresh share that is one fetch every 48 s at most, about 1,800 a day, under the
/// daily quota of `cgi-bin/token` (2,000). A token that really dies sooner is rejected
/// by WeChat (40001/42001), dropped and refetched.
pub const MIN_LIFETIME: Duration = Duration::from_secs(60);
/// Longest lifetime a token is given: WeChat's own, 7,200 s. No source can hand out a
/// longer-lived token, so anything above is a broken source.
pub const MAX_LIFETIME: Duration = Duration::from_secs(7200);

/// A token and when it was fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// The token itself.
    pub value: Secret,
    /// When it was fetched.
    pub fetched_at: Instant,
    /// `expires_in` as WeChat gave it, clamped to [`MIN_LIFETIME`, `MAX_LIFETIME`].
    pub lifetime: Duration,
}

impl AccessToken {
    /// A token WeChat just said lives `expires_in` seconds, its lifetime clamped to
    /// [`MIN_LIFETIME`, `MAX_LIFETIME`].
    pub fn new(value: Secret, expires_in: u64) -> Self {
        Self {
            value,
            fetched_at: Instant::now(),
            lifetime: Duration::from_secs(expires_in).clamp(MIN_LIFETIME, MAX_LIFETIME),
        }
    }

    /// How long after fetching it stops being used: its life less a tenth, at most
    /// five minutes (7,200 s → 6,900 s; 300 s → 270 s).
    pub fn usable_for(&self) -> Duration {
        self.lifetime - (self.lifetime / 10).min(Duration::from_secs(300))
    }

    pub(super) fn due_for_refresh(&self, refresh_at: f64) -> bool {
        self.fetched_at.elapsed() >= self.lifetime.mul_f64(refresh_at)
    }
}

/// How a fetch is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchMode {
    /// Ask WeChat for a new token even if the current one is valid.
    pub force_refresh: bool,
}

/// What fetches a token (stable_token, token, or a central service).
pub trait TokenFetcher: Send + Sync + 'static {
    /// Fetches a token for the account.
    fn fetch(
        &self,
        mode: FetchMode,
    ) -> impl Future<Output = Result<AccessToken, WeChatError>> + Send;

    /// WeChat rejected `token`: a fetcher that shares tokens beyond this process (see
    /// `shared_token.rs`) forgets it there too.
    fn rejected(&self, _token: &AccessToken) -> impl Future<Output = ()> + Send {
        async {}
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
        Some(
            token
                .usable_for()
                .saturating_sub(token.fetched_at.elapsed()),
        )
    }
}

/// Cached tokens of one account, and the fetcher that renews them.
pub struct TokenCache<F> {
    account: String,
    fetcher: Arc<F>,
    tokens: Cache<String, Arc<AccessToken>>,
    refresh_at: f64,
    /// Set while a background refresh runs, so only one does.
    refreshing: Arc<AtomicBool>,
    /// Set when a rejected token was dropped: the next fetch asks for `force_refresh`.
    force_next: AtomicBool,
    last_force: Mutex<Option<Instant>>,
    /// Counts fetches (and failures) in `token_fetches_total`, and flags a refused
    /// AppSecret in `app_secret_rejected`.
    metrics: Arc<AccountMetrics>,
    /// Paces the error logged while the AppSecret is refused (one a second at most).
    rejections_logged: Arc<LogBudget>,
}

impl<F> std::fmt::Debug for TokenCache<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("account", &self.account)
            .field("fetches", &self.metrics.token_fetches.get())
            .finish_non_exhaustive()
    }
}

impl<F: TokenFetcher> TokenCache<F> {
    /// A cache for `account` that refreshes once a token is `refresh_at` (0..=1) old.
    pub fn new(
        account: String,
        fetcher: F,
        refresh_at: f64,
        metrics: Arc<AccountMetrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            account,
            fetcher: Arc::new(fetcher),
            tokens: Cache::builder()
                .max_capacity(16)
                .expire_after(UntilUnusable)
                .build(),
            refresh_at,
            refreshing: Arc::new(AtomicBool::new(false)),
            force_next: AtomicBool::new(false),
            last_force: Mutex::new(None),
            metrics,
            rejections_logged: LogBudget::new("AppSecret refused", 1),
        })
    }

    /// A usable token: the cached one (starting a background refresh when it is due), or
    /// one fetch shared by every caller waiting for it.
    pub async fn get(self: &Arc<Self>) -> Result<Arc<AccessToken>, WeChatError> {
        if let Some(token) = self.tokens.get(&self.account).await {
            if token.due_for_refresh(self.refresh_at) {
                self.refresh_in_background();
            }
            return Ok(token);
        }
        // The miss path's future (moka's shared initialisation and the fetch) is many
        // kilobytes; boxed, it is built only on a miss instead of being copied whole
        // through every caller's future on every hit.
        Box::pin(self.fetch_shared()).await
    }

    /// The miss path of [`Self::get`]: one fetch shared by every caller waiting for it.
    async fn fetch_shared(self: &Arc<Self>) -> Result<Arc<AccessToken>, WeChatError> {
        self.tokens
            .try_get_with_by_ref(&self.account, self.fetch_counted())
            .await
            .map_err(|shared| (*shared).clone())
    }

    /// Drops `rejected` if it is still the cached token, and marks the next fetch as a
    /// forced refresh.
    pub async fn reject(&self, rejected: &AccessToken) {
        self.fetcher.rejected(rejected).await;
        let dropped = self
            .tokens
            .entry_by_ref(&self.account)
            .and_compute_with(|current| async move {
                match current {
                    Some(entry) if **entry.value() == *rejected => Op::Remove,
                    _ => Op::Nop,
                }
            })
            .await;
        if matches!(dropped, moka::ops::compute::CompResult::Removed(_)) {
            self.force_next.store(true, Ordering::Relaxed);
        }
    }

    /// Drops the cached token whatever it is (the AppSecret or API base changed), so the
    /// next call fetches one. A fetch already running finishes and may still cache its
    /// token: it was valid when fetched.
    pub async fn forget(&self) {
        self.tokens.invalidate(&self.account).await;
    }

    /// Fetches started (for logs and tests).
    pub fn fetches(&self) -> u64 {
        self.metrics.token_fetches.get()
    }

    fn refresh_in_background(self: &Arc<Self>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            match this.fetch_counted().await {
                Ok(token) => this.tokens.insert(this.account.clone(), token).await,
                // The current token is still valid; the next caller past the mark retries.
                Err(e) => tracing::warn!(error = %e, "background access_token refresh failed"),
            }
            this.refreshing.store(false, Ordering::Release);
        });
    }

    async fn fetch_counted(&self) -> Result<Arc<AccessToken>, WeChatError> {
        self.metrics.token_fetches.inc();
        let mode = FetchMode {
            force_refresh: self.force_next.swap(false, Ordering::Relaxed) && self.may_force(),
        };
        let token = self.fetcher.fetch(mode).await.inspect_err(|error| {
            self.metrics.token_fetch_failures.inc();
            if error.is_credential_rejected() {
                self.metrics.app_secret_rejected.set(1);
                if self.rejections_logged.admit() {
                    tracing::error!(
                        app_id = self.account.as_str(),
                        %error,
                        "WeChat refused the AppSecret of account {}: it was reset in the \
                         WeChat console or is wrong. Put the account's current AppSecret in \
                         the configuration (app_secret, app_secret_file or app_secret_env) \
                         and send SIGHUP; no restart is needed",
                        self.account
                    );
                }
            }
        })?;
        self.metrics.app_secret_rejected.set(0);
        tracing::info!(
            expires_in = token.lifetime.as_secs(),
            force_refresh = mode.force_refresh,
            "fetched access_token"
        );
        Ok(Arc::new(token))
    }

    /// Whether WeChat's rate limit allows a forced refresh now (and records it if so).
    fn may_force(&self) -> bool {
        let mut last = self.last_force.lock().expect("lock poisoned");
        if last.is_some_and(|at| at.elapsed() < FORCE_REFRESH_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }
}
