//! File descriptors, so no caller can make the process run out of them: at start the
//! binary raises its soft `RLIMIT_NOFILE` to the hard limit (as Go's runtime does), and
//! [`ConnectionPlan`] divides that limit between the listeners after keeping a reserve
//! for everything else the process opens (the data directory, the log, Redis, the
//! upstream and forward connections). A cap set explicitly that does not fit is refused
//! at start and by `check-config`, which prints the plan.

use std::fmt;

use crate::config::ConnectionSettings;

/// Descriptors kept whatever the configuration: standard streams, the data directory's
/// files, the listening sockets, the runtime's epoll and event descriptors, TLS files.
const BASE_RESERVE: u64 = 128;
/// Per account: its upstream connection pool to WeChat (or the simulator) and the pool
/// forwarding to its existing handler.
const ACCOUNT_RESERVE: u64 = 64;
/// The Redis connections (a multiplexed connection, the token's and the hub's).
const REDIS_RESERVE: u64 = 32;
/// The admin listener's cap: scrapers, probes and a few console tabs (a browser keeps up
/// to six HTTP/1.1 connections per origin, one held by each live event stream).
const ADMIN_CONNECTIONS: usize = 64;
/// The simulator's cap, when it runs and the limit leaves room.
const SIMULATOR_CONNECTIONS: usize = 1024;
/// Largest cap sized automatically for the webhook and the gRPC listener each; an
/// operator may set more explicitly when the limit allows it.
const AUTO_CAP: usize = 16_384;

/// The process's descriptor limit before and after [`raise_limit`].
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// The soft limit the process was started with.
    pub soft_before: u64,
    /// The soft limit now in force.
    pub soft: u64,
    /// The hard limit, the ceiling of the soft one.
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (on macOS, to what the kernel
/// allows); the `rlimit` crate does it without `unsafe` here and knows each platform's
/// quirks.
pub fn raise_limit() -> std::io::Result<Limit> {
    let (soft_before, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    let soft = rlimit::increase_nofile_limit(hard)?;
    Ok(Limit {
        soft_before,
        soft,
        hard,
    })
}

/// The soft descriptor limit in force now.
pub fn current_limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024)
}

/// How the descriptor limit is shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionPlan {
    /// The soft descriptor limit planned for.
    pub limit: u64,
    /// Kept for the log, data directory, Redis, upstream and forward connections.
    pub reserve: u64,
    /// Webhook connections open at once.
    pub webhook: usize,
    /// gRPC connections open at once.
    pub grpc: usize,
    /// Admin connections open at once.
    pub admin: usize,
    /// Simulator connections open at once (0 when it does not run).
    pub simulator: usize,
}

/// An explicit cap that does not fit the descriptor limit.
#[derive(Debug, thiserror::Error)]
#[error(
    "{what} does not fit the descriptor limit: {plan}; lower it, leave it unset to size it \
     from the limit, or raise the hard limit (ulimit -Hn, systemd LimitNOFILE=)"
)]
pub struct PlanError {
    /// The setting, by its variable.
    pub what: String,
    /// The plan it was checked against.
    pub plan: String,
}

impl ConnectionPlan {
    /// The plan for `settings` under a soft limit of `limit` descriptors.
    pub fn new(limit: u64, settings: &ConnectionSettings) -> Result<Self, PlanError> {
        let accounts = u64::try_from(settings.accounts).unwrap_or(u64::MAX);
        let reserve = BASE_RESERVE
            .saturating_add(ACCOUNT_RESERVE.saturating_mul(accounts))
            .saturating_add(if settings.redis { REDIS_RESERVE } else { 0 });
        let available = usize::try_from(limit.saturating_sub(reserve)).unwrap_or(usize::MAX);
        let admin = ADMIN_CONNECTIONS.min(available / 8).max(1);
        let simulator = if settings.simulator {
            SIMULATOR_CONNECTIONS.min(available / 8).max(1)
        } else {
            0
        };
        let rest = available.saturating_sub(admin + simulator);
        let (webhook, grpc) = match (settings.max_webhook, settings.max_grpc) {
            (Some(webhook), Some(grpc)) => (webhook, grpc),
            (Some(webhook), None) => (webhook, rest.saturating_sub(webhook).min(AUTO_CAP)),
            (None, Some(grpc)) => (rest.saturating_sub(grpc).min(AUTO_CAP), grpc),
            (None, None) => ((rest / 2).min(AUTO_CAP), (rest - rest / 2).min(AUTO_CAP)),
        };
        let plan = Self {
            limit,
            reserve,
            webhook,
            grpc,
            admin,
            simulator,
        };
        let refuse = |what: &str| PlanError {
            what: what.to_owned(),
            plan: plan.to_string(),
        };
        let explicit = |value: Option<usize>, name: &str| {
            value.map_or_else(|| name.to_owned(), |v| format!("{name}={v}"))
        };
        if webhook.saturating_add(grpc) > rest || webhook == 0 || grpc == 0 {
            let what = match (settings.max_webhook, settings.max_grpc) {
                (Some(_), Some(_)) => format!(
                    "{} with {}",
                    explicit(settings.max_webhook, "WECHAT_QR_MAX_WEBHOOK_CONNECTIONS"),
                    explicit(settings.max_grpc, "WECHAT_QR_MAX_GRPC_CONNECTIONS")
                ),
                (Some(_), None) => {
                    explicit(settings.max_webhook, "WECHAT_QR_MAX_WEBHOOK_CONNECTIONS")
                }
                (None, Some(_)) => explicit(settings.max_grpc, "WECHAT_QR_MAX_GRPC_CONNECTIONS"),
                (None, None) => "the listeners' connections".to_owned(),
            };
            return Err(refuse(&what));
        }
        Ok(plan)
    }

    /// Descriptors left over after the reserve and every listener's cap.
    pub fn spare(&self) -> u64 {
        let caps = self.webhook + self.grpc + self.admin + self.simulator;
        self.limit
            .saturating_sub(self.reserve)
            .saturating_sub(u64::try_from(caps).unwrap_or(u64::MAX))
    }
}

impl fmt::Display for ConnectionPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "limit {} descriptors = reserve {} (log, data directory, Redis, upstream and \
             forward connections) + webhook {} + gRPC {} + admin {}",
            self.limit, self.reserve, self.webhook, self.grpc, self.admin
        )?;
        if self.simulator > 0 {
            write!(f, " + simulator {}", self.simulator)?;
        }
        write!(f, " + spare {}", self.spare())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn settings(webhook: Option<usize>, grpc: Option<usize>) -> ConnectionSettings {
        ConnectionSettings {
            max_webhook: webhook,
            max_grpc: grpc,
            per_address: 256,
            trusted_proxies: Vec::new(),
            header_read_timeout: Duration::from_secs(5),
            grpc_handshake_timeout: Duration::from_secs(10),
            grpc_idle_timeout: None,
            accounts: 1,
            redis: false,
            simulator: true,
        }
    }

    #[test]
    fn the_caps_fit_the_limit() {
        for limit in [256, 1024, 4096, 65_536, 1 << 20] {
            let plan = ConnectionPlan::new(limit, &settings(None, None)).unwrap();
            let used = plan.reserve
                + u64::try_from(plan.webhook + plan.grpc + plan.admin + plan.simulator).unwrap();
            assert!(used <= limit, "{plan}");
            assert!(plan.webhook >= 1 && plan.grpc >= 1, "{plan}");
        }
    }

    #[test]
    fn an_explicit_cap_that_does_not_fit_is_refused() {
        let error = ConnectionPlan::new(1024, &settings(Some(5_000), None)).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("WECHAT_QR_MAX_WEBHOOK_CONNECTIONS=5000"),
            "{error}"
        );
        assert!(error.to_string().contains("limit 1024"), "{error}");
        ConnectionPlan::new(1 << 20, &settings(Some(5_000), Some(5_000))).unwrap();
    }
}
