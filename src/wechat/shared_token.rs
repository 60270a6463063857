//! One access_token for every replica of a deployment, kept in Redis. WeChat keeps one
//! valid `cgi-bin/token` per AppID, so replicas fetching their own would invalidate each
//! other; and N replicas starting cold should cost one fetch, not N.
//!
//! - The token lives in the hash `{<prefix>token:<app_id>}:current` (the token, when it
//!   was fetched, its lifetime), expiring when it stops being usable.
//! - Whoever finds none (or finds it due for refresh) takes the lock
//!   `{<prefix>token:<app_id>}:lock` with `SET NX PX` and a random fencing value, fetches
//!   from WeChat, and stores the token only if it still holds the lock (one script), so a
//!   fetcher whose lock expired mid-fetch cannot overwrite a newer token. The others poll
//!   for the token the lock holder stores.
//! - A token WeChat rejected is deleted compare-and-delete: only if it is still the one
//!   that failed, never the fresh one another replica just stored.
//! - Redis unreachable: the process keeps the token it holds ([`super::token::TokenCache`])
//!   until it expires; without one it refuses to fetch on its own (that fetch could
//!   invalidate the token of every other replica) and the call fails `UNAVAILABLE`.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use redis::{Script, aio::ConnectionManager};

use super::{
    TransportKind, WeChatError,
    token::{AccessToken, FetchMode},
};
use crate::{
    events::{COMPARE_AND_DELETE, OpenError, connect_redis},
    secret::Secret,
};

/// How long the refresh lock is held at most: longer than one upstream fetch with its
/// retries (the upstream timeout's default ceiling is 10 s).
const LOCK_TTL: Duration = Duration::from_secs(15);
/// How often a replica waiting for the lock holder's token looks for it.
const POLL: Duration = Duration::from_millis(20);

/// Stores the token if `ARGV[1]` still holds the lock, then releases it.
/// KEYS: current, lock. ARGV: fence, token, fetched ms, lifetime s, ttl ms.
const STORE: &str = r"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'token', ARGV[2], 'fetched_ms', ARGV[3], 'lifetime_s', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('DEL', KEYS[2])
return 1
";

/// Deletes the token only if it is still `ARGV[1]`.
const EXPIRE: &str = r"
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// The deployment-wide token of one account.
pub struct SharedToken {
    conn: ConnectionManager,
    current: String,
    lock: String,
    /// Share of a token's life after which one replica refreshes it.
    refresh_at: f64,
    store: Script,
    expire: Script,
    release: Script,
}

impl std::fmt::Debug for SharedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedToken")
            .field("key", &self.current)
            .finish_non_exhaustive()
    }
}

fn unix_millis() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

fn unreachable(e: redis::RedisError) -> WeChatError {
    WeChatError::Unreachable {
        endpoint: "shared access_token (Redis)",
        kind: TransportKind::Connect,
        detail: e.to_string(),
    }
}

impl SharedToken {
    /// The shared token of `app_id` on `url`.
    pub async fn open(
        url: &Secret,
        prefix: &str,
        app_id: &str,
        refresh_at: f64,
    ) -> Result<Arc<Self>, OpenError> {
        let tag = format!("{{{prefix}token:{app_id}}}");
        Ok(Arc::new(Self {
            conn: connect_redis(url, Duration::from_secs(2)).await?,
            current: format!("{tag}:current"),
            lock: format!("{tag}:lock"),
            refresh_at,
            store: Script::new(STORE),
            expire: Script::new(EXPIRE),
            release: Script::new(COMPARE_AND_DELETE),
        }))
    }

    /// The shared token, or one fetched by `upstream` under the lock.
    pub async fn fetch<Fut>(
        &self,
        mode: FetchMode,
        upstream: impl FnOnce(FetchMode) -> Fut,
    ) -> Result<AccessToken, WeChatError>
    where
        Fut: Future<Output = Result<AccessToken, WeChatError>>,
    {
        let deadline = Instant::now() + LOCK_TTL + Duration::from_secs(1);
        let fence = format!("{:032x}", rand::random::<u128>());
        loop {
            let current = self.read().await?;
            if let Some(token) = &current
                && !token.due_for_refresh(self.refresh_at)
            {
                return Ok(token.clone());
            }
            if self.try_lock(&fence).await? {
                // The holder before us may have stored a token since we looked.
                if let Some(token) = self.read().await?
                    && !token.due_for_refresh(self.refresh_at)
                {
                    self.unlock(&fence).await;
                    return Ok(token);
                }
                let fetched = upstream(mode).await;
                let token = match fetched {
                    Ok(token) => token,
                    Err(e) => {
                        self.unlock(&fence).await;
                        return Err(e);
                    }
                };
                self.publish(&fence, &token).await?;
                return Ok(token);
            }
            // Someone else refreshes: a token due for refresh is still valid meanwhile.
            if let Some(token) = current {
                return Ok(token);
            }
            if Instant::now() >= deadline {
                return Err(WeChatError::DeadlineExceeded {
                    endpoint: "shared access_token (Redis lock)",
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Deletes `rejected` from Redis if it is still the shared token.
    pub async fn reject(&self, rejected: &AccessToken) {
        let mut conn = self.conn.clone();
        let deleted: Result<i64, _> = self
            .expire
            .key(&self.current)
            .arg(rejected.value.expose())
            .invoke_async(&mut conn)
            .await;
        match deleted {
            Ok(1) => tracing::info!("expired the rejected shared access_token"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot expire the rejected shared access_token"),
        }
    }

    async fn read(&self) -> Result<Option<AccessToken>, WeChatError> {
        let mut conn = self.conn.clone();
        let (token, fetched_ms, lifetime_s): (Option<String>, Option<u64>, Option<u64>) =
            redis::cmd("HMGET")
                .arg(&self.current)
                .arg("token")
                .arg("fetched_ms")
                .arg("lifetime_s")
                .query_async(&mut conn)
                .await
                .map_err(unreachable)?;
        let (Some(token), Some(fetched_ms), Some(lifetime_s)) = (token, fetched_ms, lifetime_s)
        else {
            return Ok(None);
        };
        let age = Duration::from_millis(unix_millis().saturating_sub(fetched_ms));
        Ok(Some(AccessToken {
            value: Secret::new(token),
            // The same age on every replica, so each retires and refreshes it alike.
            fetched_at: Instant::now().checked_sub(age).unwrap_or_else(Instant::now),
            lifetime: Duration::from_secs(lifetime_s),
        }))
    }

    async fn try_lock(&self, fence: &str) -> Result<bool, WeChatError> {
        let mut conn = self.conn.clone();
        let taken: Option<String> = redis::cmd("SET")
            .arg(&self.lock)
            .arg(fence)
            .arg("NX")
            .arg("PX")
            .arg(LOCK_TTL.as_millis() as u64)
            .query_async(&mut conn)
            .await
            .map_err(unreachable)?;
        Ok(taken.is_some())
    }

    async fn unlock(&self, fence: &str) {
        let mut conn = self.conn.clone();
        let _: Result<i64, _> = self
            .release
            .key(&self.lock)
            .arg(fence)
            .invoke_async(&mut conn)
            .await;
    }

    /// Stores `token` if the lock is still ours.
    async fn publish(&self, fence: &str, token: &AccessToken) -> Result<(), WeChatError> {
        let ttl = token
            .usable_for()
            .saturating_sub(token.fetched_at.elapsed());
        let fetched_ms =
            unix_millis().saturating_sub(token.fetched_at.elapsed().as_millis() as u64);
        let mut conn = self.conn.clone();
        let stored: i64 = self
            .store
            .key(&self.current)
            .key(&self.lock)
            .arg(fence)
            .arg(token.value.expose())
            .arg(fetched_ms)
            .arg(token.lifetime.as_secs())
            .arg((ttl.as_millis() as u64).max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(unreachable)?;
        if stored == 0 {
            tracing::warn!(
                "the shared access_token lock expired during the fetch; the token was used but not shared"
            );
        }
        Ok(())
    }
}
