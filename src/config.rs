//! Every setting of the service in one place: each is an environment variable with a
//! matching command-line flag, and [`ServeConfig::resolve`] turns them into the
//! [`Settings`] the rest of the crate uses, deciding whether the embedded simulator runs.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use url::Url;

use crate::{protocol::crypto::AesKey, secret::Secret};

mod faults;
mod file;
mod sharing;

pub use crate::protocol::EncryptMode;
pub use faults::Faults;

pub use file::{AccountConfig, ClientConfig, FileConfig, FileError, METHODS};
pub use sharing::{
    ForwardFailure, ForwardSettings, MAX_FORWARD_TIMEOUT_MS, NewsItem, ReplyMessage, ReplyOn,
    ReplyRule, SceneMatch, redact_url,
};

/// WeChat's production API host (token, qrcode/create).
pub const WECHAT_API_BASE: &str = "https://api.weixin.qq.com";
/// WeChat's host for `showqrcode`.
pub const WECHAT_MP_BASE: &str = "https://mp.weixin.qq.com";

/// `WECHAT_QR_REPLAY_GUARD_SEALS` by default (why this many: `events::DEFAULT_MAX_SEALS`).
pub const DEFAULT_REPLAY_GUARD_SEALS: usize = 1_800_000;

/// `WECHAT_QR_MAX_GROUPS_PER_ACCOUNT` by default. Every consumer group costs on every
/// event: its own read of the log (embedded) or its own consumer group on the stream
/// (Redis), a reaper waking ten times a second, and Redis round trips in every ListGroups.
/// A deployment uses one group per kind of back end, so a hundred is room for any real use
/// while a loop of CreateGroup stops long before it costs the other groups their pace.
pub const DEFAULT_MAX_GROUPS_PER_ACCOUNT: usize = 100;

/// Documented development defaults, used by the simulator when no credentials are set.
pub mod dev {
    /// The simulator's AppID (override with `WECHAT_APP_ID`).
    pub const APP_ID: &str = "wx0000000000devsim";
    /// The simulator's AppSecret; only ever sent to the simulator on loopback.
    pub const APP_SECRET: &str = "wechat-qr-simulator-secret";
    /// The webhook token pushes are signed with (override with `WECHAT_TOKEN`).
    pub const TOKEN: &str = "wechat-qr-dev-token";
    /// The account's original ID, WeChat's `ToUserName` in pushes.
    pub const ACCOUNT: &str = "gh_wechatqr0dev";
}

/// `wechat-qr serve` (the default): settings from flags and environment.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address of the gRPC listener.
    #[arg(long, env = "WECHAT_QR_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// Address of the HTTP listener that receives WeChat's pushes at `/wechat`.
    #[arg(long, env = "WECHAT_QR_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Address of the admin listener (`/metrics`, `/healthz`), kept off the webhook
    /// listener that faces the internet.
    #[arg(long, env = "WECHAT_QR_ADMIN_ADDR", default_value = "127.0.0.1:9090")]
    pub admin_addr: SocketAddr,
    /// Most webhook connections open at once; at the cap the oldest idle or still-reading
    /// connection is closed to make room. Unset: sized from the descriptor limit (see
    /// `check-config`); a value that does not fit that limit is refused at start.
    #[arg(long, env = "WECHAT_QR_MAX_WEBHOOK_CONNECTIONS")]
    pub max_webhook_connections: Option<usize>,
    /// Most gRPC connections open at once; at the cap the oldest connection still in its
    /// handshake, else the oldest without a stream, is closed to make room. Unset: sized
    /// from the descriptor limit; a value that does not fit is refused at start.
    #[arg(long, env = "WECHAT_QR_MAX_GRPC_CONNECTIONS")]
    pub max_grpc_connections: Option<usize>,
    /// Most connections one client address holds open on the webhook; past it a new
    /// connection from that address is closed at once. WeChat's push servers stay far
    /// below the default. (The admin listener has no per-address limit: on loopback every
    /// client shares one address, so its cap is the bound.)
    #[arg(
        long,
        env = "WECHAT_QR_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 256
    )]
    pub max_connections_per_address: usize,
    /// Reverse proxies (IP addresses, comma-separated) in front of the webhook: their own
    /// connections are not counted per address; each is counted against the client
    /// address the proxy names (`X-Real-IP`, else the last `X-Forwarded-For` entry).
    #[arg(long, env = "WECHAT_QR_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// How long an HTTP client (webhook, admin) may take to send a request's head, from
    /// when the connection opens or its previous answer was sent, in milliseconds.
    #[arg(
        long,
        env = "WECHAT_QR_HEADER_READ_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    pub header_read_timeout_ms: u64,
    /// How long a gRPC connection may take to complete its HTTP/2 handshake (the client
    /// preface and first SETTINGS frame), in milliseconds; then it is closed.
    #[arg(
        long,
        env = "WECHAT_QR_GRPC_HANDSHAKE_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub grpc_handshake_timeout_ms: u64,
    /// A gRPC connection with no call or stream open for this long is closed, in seconds
    /// (0: never). A stream open for days keeps its connection, however quiet.
    #[arg(
        long,
        env = "WECHAT_QR_GRPC_IDLE_TIMEOUT_SECONDS",
        default_value_t = 600
    )]
    pub grpc_idle_timeout_seconds: u64,
    /// Address of the embedded simulator (only when no credentials are configured).
    #[arg(
        long,
        env = "WECHAT_QR_SIMULATOR_ADDR",
        default_value = "127.0.0.1:8081"
    )]
    pub simulator_addr: SocketAddr,
    /// Let the simulator listen on a non-loopback address, and the webhook take pushes
    /// signed with the public development token on one. Off: such a start is refused,
    /// since anyone who can reach them could mint tokens or forge scans.
    #[arg(
        long,
        env = "WECHAT_QR_ALLOW_SIMULATOR_ON_NETWORK",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub allow_simulator_on_network: bool,
    /// The Official Account's AppID.
    #[arg(long, env = "WECHAT_APP_ID")]
    pub app_id: Option<String>,
    /// The Official Account's AppSecret. With `WECHAT_APP_ID` it switches the simulator off.
    #[arg(long, env = "WECHAT_APP_SECRET", hide_env_values = true)]
    pub app_secret: Option<Secret>,
    /// The webhook token (3-32 characters) WeChat signs pushes with.
    #[arg(long, env = "WECHAT_TOKEN", hide_env_values = true)]
    pub token: Option<Secret>,
    /// The previous webhook token, still accepted during a rotation.
    #[arg(long, env = "WECHAT_PREVIOUS_TOKEN", hide_env_values = true)]
    pub previous_token: Option<Secret>,
    /// The 43-character EncodingAESKey for safe (encrypted) mode.
    #[arg(long, env = "WECHAT_ENCODING_AES_KEY", hide_env_values = true)]
    pub encoding_aes_key: Option<Secret>,
    /// The previous EncodingAESKey, still accepted during a rotation.
    #[arg(long, env = "WECHAT_PREVIOUS_ENCODING_AES_KEY", hide_env_values = true)]
    pub previous_encoding_aes_key: Option<Secret>,
    /// Which pushes are accepted. Default: `safe` with an EncodingAESKey, else `plaintext`.
    #[arg(long, env = "WECHAT_ENCRYPT_MODE", value_enum)]
    pub encrypt_mode: Option<EncryptMode>,
    /// The account's original ID (`gh_...`); the simulator uses it as `ToUserName`.
    #[arg(long, env = "WECHAT_ACCOUNT_ID")]
    pub account_id: Option<String>,
    /// Base URL of WeChat's API (token, qrcode/create).
    #[arg(long, env = "WECHAT_API_BASE")]
    pub api_base: Option<Url>,
    /// Base URL of WeChat's `showqrcode`.
    #[arg(long, env = "WECHAT_MP_BASE")]
    pub mp_base: Option<Url>,
    /// Pushes whose `timestamp` is further than this from now are rejected (0 = no check).
    #[arg(long, env = "WECHAT_QR_REPLAY_WINDOW_SECONDS", default_value_t = 300)]
    pub replay_window_seconds: u64,
    /// Most `(timestamp, nonce)` pairs the replay guard remembers (about 37 bytes each);
    /// when full it forgets the oldest and refuses as stale every timestamp not newer.
    #[arg(long, env = "WECHAT_QR_REPLAY_GUARD_SEALS", default_value_t = DEFAULT_REPLAY_GUARD_SEALS)]
    pub replay_guard_seals: usize,
    /// Largest push body accepted, in bytes.
    #[arg(long, env = "WECHAT_QR_MAX_PUSH_BYTES", default_value_t = 64 * 1024)]
    pub max_push_bytes: usize,
    /// How long a push body may take to arrive, in milliseconds.
    #[arg(long, env = "WECHAT_QR_PUSH_READ_TIMEOUT_MS", default_value_t = 2_000)]
    pub push_read_timeout_ms: u64,
    /// How many events the event log retains for resuming streams.
    #[arg(long, env = "WECHAT_QR_RETAIN_EVENTS", default_value_t = 100_000)]
    pub retain_events: usize,
    /// How long the event log retains events, in seconds.
    #[arg(long, env = "WECHAT_QR_RETAIN_SECONDS", default_value_t = 24 * 3600)]
    pub retain_seconds: u64,
    /// Most bytes of events the event log retains (as stored), on disk and in memory alike.
    #[arg(long, env = "WECHAT_QR_RETAIN_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub retain_bytes: u64,
    /// Where events, their de-duplication keys and permanent scenes are kept: `durable`
    /// (the data directory, synced before a push is acknowledged) or `memory` (lost when
    /// the process ends; for tests and throwaway runs).
    #[arg(long, env = "WECHAT_QR_EVENT_LOG", value_enum, default_value_t = EventLogKind::Durable)]
    pub event_log: EventLogKind,
    /// The data directory of the durable event log; created on start.
    #[arg(long, env = "WECHAT_QR_DATA_DIR", default_value = "./wechat-qr-data")]
    pub data_dir: PathBuf,
    /// Redis (`redis://` or `rediss://` with TLS, `redis://:password@host:6379/0`) for
    /// every replica's shared state: the event log, de-duplication, permanent scenes and
    /// the access_token. Set, it replaces `WECHAT_QR_EVENT_LOG`; see "Running several
    /// replicas" in the README. The password never reaches a log line.
    #[arg(long, env = "WECHAT_QR_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,
    /// Prefix of every Redis key, so deployments can share one Redis.
    #[arg(long, env = "WECHAT_QR_REDIS_PREFIX", default_value = "wechat-qr:")]
    pub redis_prefix: String,
    /// Days of channel statistics kept (ChannelStatsService), independently of the
    /// event log's retention.
    #[arg(long, env = "WECHAT_QR_STATS_RETAIN_DAYS", default_value_t = 400)]
    pub stats_retain_days: u32,
    /// Most StreamEvents subscriptions open at once, over all connections.
    #[arg(long, env = "WECHAT_QR_MAX_SUBSCRIPTIONS", default_value_t = 200_000)]
    pub max_subscriptions: usize,
    /// Most StreamEvents subscriptions on one gRPC connection (`RESOURCE_EXHAUSTED` past
    /// it); the connection's HTTP/2 `max_concurrent_streams` is this plus room for unary calls.
    #[arg(
        long,
        env = "WECHAT_QR_MAX_STREAMS_PER_CONNECTION",
        default_value_t = 20_000
    )]
    pub max_streams_per_connection: u32,
    /// Memory budget of all StreamEvents streams, in bytes: each open stream is charged
    /// for its filter and its buffers, and one connection's streams may hold a quarter of
    /// it; past either, a new stream is `RESOURCE_EXHAUSTED` before its memory is taken.
    /// Default: a quarter of the memory the process may use (its cgroup's limit, else the
    /// machine's physical memory).
    #[arg(long, env = "WECHAT_QR_MAX_SUBSCRIPTION_BYTES")]
    pub max_subscription_bytes: Option<u64>,
    /// Most consumer groups one account may have (on Redis: in the whole deployment);
    /// past it CreateGroup is RESOURCE_EXHAUSTED before anything is stored. Groups kept
    /// from before a lowered cap stay.
    #[arg(
        long,
        env = "WECHAT_QR_MAX_GROUPS_PER_ACCOUNT",
        default_value_t = DEFAULT_MAX_GROUPS_PER_ACCOUNT
    )]
    pub max_groups_per_account: usize,
    /// Most values in each StreamEvents filter (`tickets`, `scenes`).
    #[arg(long, env = "WECHAT_QR_MAX_FILTER_ENTRIES", default_value_t = 1_000)]
    pub max_filter_entries: usize,
    /// Longest value in a StreamEvents filter, in bytes (tickets are ~100, scenes ≤ 64
    /// characters).
    #[arg(long, env = "WECHAT_QR_MAX_FILTER_ENTRY_BYTES", default_value_t = 512)]
    pub max_filter_entry_bytes: usize,
    /// Where access_tokens come from: `stable` (cgi-bin/stable_token), `token`
    /// (cgi-bin/token) or `url` (GET `WECHAT_TOKEN_URL`, a central token service).
    #[arg(long, env = "WECHAT_TOKEN_SOURCE", value_enum, default_value_t = TokenSourceKind::Stable)]
    pub token_source: TokenSourceKind,
    /// The central token service for `WECHAT_TOKEN_SOURCE=url`; answers
    /// `{"access_token": "...", "expires_in": N}`.
    #[arg(long, env = "WECHAT_TOKEN_URL")]
    pub token_url: Option<Url>,
    /// Share of a token's life after which the next caller triggers a background refresh.
    #[arg(long, env = "WECHAT_QR_TOKEN_REFRESH_AT", default_value_t = 0.8)]
    pub token_refresh_at: f64,
    /// Ceiling on the time one upstream call (with its retries) may take, in milliseconds;
    /// a caller's shorter gRPC deadline wins.
    #[arg(long, env = "WECHAT_QR_UPSTREAM_TIMEOUT_MS", default_value_t = 10_000)]
    pub upstream_timeout_ms: u64,
    /// Most tries of one upstream call when WeChat is busy or unreachable.
    #[arg(long, env = "WECHAT_QR_UPSTREAM_ATTEMPTS", default_value_t = 3)]
    pub upstream_attempts: u32,
    /// Largest QR image read from `showqrcode`, in bytes; a longer answer is refused
    /// without being held in memory. It also sizes the largest gRPC response.
    #[arg(long, env = "WECHAT_QR_MAX_IMAGE_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_image_bytes: usize,
    /// Largest gRPC request accepted, in bytes (OUT_OF_RANGE past it): room for a
    /// StreamEvents filter of a thousand tickets and scenes; the other requests are
    /// under 1 KiB.
    #[arg(long, env = "WECHAT_QR_MAX_REQUEST_BYTES", default_value_t = 256 * 1024)]
    pub max_request_bytes: usize,
    /// Bytes of QR images kept in memory.
    #[arg(long, env = "WECHAT_QR_IMAGE_CACHE_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub image_cache_bytes: u64,
    /// How long images of permanent (or unknown) tickets stay cached, in seconds.
    #[arg(long, env = "WECHAT_QR_IMAGE_TTL_SECONDS", default_value_t = 7 * 24 * 3600)]
    pub image_ttl_seconds: u64,
    /// An older version's file of permanent tickets (JSON lines), imported once into the
    /// data directory on start. Default: `wechat-qr-permanent.jsonl` with real credentials.
    #[arg(long, env = "WECHAT_QR_PERMANENT_STORE")]
    pub permanent_store: Option<PathBuf>,
    /// Faults the simulator injects from the start, as the JSON `POST /sim/faults` takes.
    #[arg(long, env = "WECHAT_QR_SIM_FAULTS")]
    pub simulator_faults: Option<String>,
    /// Most permanent codes the data directory may hold for the account (those already
    /// minted count); past it a new permanent scene is RESOURCE_EXHAUSTED before WeChat
    /// is called. Unset: no cap but WeChat's own.
    #[arg(long, env = "WECHAT_QR_PERMANENT_BUDGET")]
    pub permanent_budget: Option<u64>,
    /// The gRPC server's certificate chain (PEM): with `--tls-key`, gRPC is served over
    /// TLS only.
    #[arg(long, env = "WECHAT_QR_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, env = "WECHAT_QR_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that gRPC clients' certificates must chain to: every
    /// connection then needs a client certificate (mTLS), and a `[[clients]]` entry with
    /// a `subject` is identified by its certificate's common name. Needs `--tls-cert`.
    #[arg(long, env = "WECHAT_QR_TLS_CLIENT_CA", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// Serve the accounts of the configuration file from the embedded simulator instead
    /// of WeChat: every `[[accounts]]` gets a fake WeChat on `--simulator-addr`, with its
    /// own tokens, tickets and signed pushes to its webhook. Their secrets go nowhere.
    #[arg(
        long,
        env = "WECHAT_QR_SIMULATOR",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub simulator: bool,
    /// The accounts of the configuration file (`[[accounts]]`); empty: the one account
    /// of the flags and environment (or the simulator's).
    #[arg(skip)]
    pub accounts: Vec<AccountConfig>,
    /// The callers allowed on the gRPC API (`[[clients]]` of the configuration file);
    /// empty leaves it open to whoever reaches the port.
    #[arg(skip)]
    pub clients: Vec<ClientConfig>,
    /// The account's existing handler: every push that is not a QR scan is forwarded to
    /// it verbatim and its answer relayed to WeChat (README, "Sharing the server URL").
    /// Shown redacted: its userinfo and query may hold credentials.
    #[arg(long, env = "WECHAT_QR_FORWARD_URL", hide_env_values = true)]
    pub forward_url: Option<Url>,
    /// Forward QR scans to `WECHAT_QR_FORWARD_URL` too, once they are stored.
    #[arg(
        long,
        env = "WECHAT_QR_FORWARD_SCANS",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub forward_scans: bool,
    /// The answer when the forward fails (handler down, too slow, 5xx): `retry` (502, so
    /// WeChat tries again) or `success`.
    #[arg(long, env = "WECHAT_QR_FORWARD_FAILURE", value_enum, default_value_t = ForwardFailure::Retry)]
    pub forward_failure: ForwardFailure,
    /// Deadline of one forward in milliseconds, below WeChat's 5 s.
    #[arg(long, env = "WECHAT_QR_FORWARD_TIMEOUT_MS", default_value_t = 4_000)]
    pub forward_timeout_ms: u64,
    /// Passive replies to scans (`[[accounts.replies]]` of the configuration file).
    #[arg(skip)]
    pub replies: Vec<ReplyRule>,
}

/// Which event log backend runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EventLogKind {
    /// The embedded store in the data directory: survives restarts and crashes.
    Durable,
    /// A ring in memory: lost when the process ends.
    Memory,
}

/// Where access_tokens come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenSourceKind {
    /// `cgi-bin/stable_token`: the same token for every holder until it expires.
    Stable,
    /// `cgi-bin/token`: every fetch mints a new token (older accounts' integrations).
    Token,
    /// A central token service at `WECHAT_TOKEN_URL`.
    Url,
}

/// Where access_tokens come from, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `cgi-bin/stable_token`.
    Stable,
    /// `cgi-bin/token`.
    Token,
    /// GET this URL.
    Url(Url),
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// One of the two credentials without the other: neither WeChat nor the simulator
    /// is what the operator asked for.
    #[error(
        "{set} is set but {missing} is not: set both to use WeChat, or neither to run the \
         embedded simulator"
    )]
    MissingCredential {
        /// The variable that is set.
        set: &'static str,
        /// The variable that is missing.
        missing: &'static str,
    },
    /// The simulator, or the webhook with the public development token, on a
    /// non-loopback address without `--allow-simulator-on-network`.
    #[error(
        "{what} would listen on {addr}, which is not a loopback address: with no \
         WECHAT_APP_ID/WECHAT_APP_SECRET the service runs the embedded simulator, whose \
         credentials and development token are public. Use a loopback address, configure \
         real credentials, or set --allow-simulator-on-network \
         (WECHAT_QR_ALLOW_SIMULATOR_ON_NETWORK=true) if you mean it"
    )]
    SimulatorOnNetwork {
        /// Which listener, by its variable.
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
    },
    /// Credentials are set but the webhook would have nothing to check signatures with.
    #[error("{0} is required with real credentials: WeChat signs every push with it")]
    MissingToken(String),
    /// A token outside WeChat's 3..=32 characters.
    #[error("{0} must be 3 to 32 characters")]
    BadToken(String),
    /// An EncodingAESKey that is not 43 base64 characters.
    #[error("{0} is not a valid EncodingAESKey: {1}")]
    BadAesKey(String, crate::protocol::crypto::CryptoError),
    /// Safe or compatible mode without a key.
    #[error("{0}={1:?} needs {2}")]
    ModeNeedsKey(String, EncryptMode, String),
    /// `--simulator` without accounts to simulate.
    #[error(
        "WECHAT_QR_SIMULATOR serves the [[accounts]] of a configuration file; with none, \
         leave WECHAT_APP_ID/WECHAT_APP_SECRET unset to run the simulator's own account"
    )]
    SimulatorWithoutAccounts,
    /// An account's base URL does not parse.
    #[error("{0} is not a URL: {1}")]
    BadUrl(String, url::ParseError),
    /// `WECHAT_TOKEN_SOURCE=url` without a URL.
    #[error("WECHAT_TOKEN_SOURCE=url needs WECHAT_TOKEN_URL")]
    TokenUrlMissing,
    /// A refresh share outside (0, 1].
    #[error("WECHAT_QR_TOKEN_REFRESH_AT must be in (0, 1]")]
    BadRefreshShare,
    /// A forward deadline WeChat would not wait for.
    #[error("WECHAT_QR_FORWARD_TIMEOUT_MS must be 1 to {MAX_FORWARD_TIMEOUT_MS}: WeChat waits 5 s")]
    BadForwardTimeout,
    /// A forward URL that is not HTTP.
    #[error("WECHAT_QR_FORWARD_URL must be an http:// or https:// URL")]
    BadForwardUrl,
    /// `WECHAT_QR_FORWARD_SCANS` with nowhere to forward to.
    #[error("WECHAT_QR_FORWARD_SCANS needs WECHAT_QR_FORWARD_URL")]
    ForwardScansWithoutUrl,
    /// Simulator faults that do not parse.
    #[error("WECHAT_QR_SIM_FAULTS is not valid: {0}")]
    BadFaults(String),
    /// A TLS file cannot be read.
    #[error("cannot read {what} {path}: {source}")]
    TlsFile {
        /// Which setting, by its variable.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The upstream WeChat account the service talks to.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Base of `cgi-bin/stable_token` and `cgi-bin/qrcode/create`.
    pub api_base: Url,
    /// Base of `cgi-bin/showqrcode`.
    pub mp_base: Url,
    /// The account's AppID.
    pub app_id: String,
    /// The account's AppSecret.
    pub app_secret: Secret,
    /// Where access_tokens come from.
    pub token_source: TokenSource,
    /// Share of a token's life after which it is refreshed in the background.
    pub refresh_at: f64,
    /// Ceiling on one upstream call, retries included.
    pub timeout: Duration,
    /// Most tries of one upstream call.
    pub attempts: u32,
    /// Largest image read from `showqrcode`.
    pub max_image_bytes: usize,
    /// Bytes of images cached.
    pub image_cache_bytes: u64,
    /// Cache lifetime of images of permanent or unknown tickets.
    pub image_ttl: Duration,
}

/// What the webhook needs to verify and decode one account's pushes.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// The account's AppID, checked inside decrypted pushes.
    pub app_id: String,
    /// Accepted webhook tokens: the current one first, then the previous one.
    pub tokens: Vec<Secret>,
    /// Accepted EncodingAESKeys: the current one first, then the previous one.
    pub aes_keys: Vec<AesKey>,
    /// Which pushes are accepted.
    pub mode: EncryptMode,
    /// Maximum distance between a push's `timestamp` and now; `None` disables the check.
    pub replay_window: Option<Duration>,
    /// Largest body accepted.
    pub max_body_bytes: usize,
    /// Deadline for receiving a whole body.
    pub body_read_timeout: Duration,
    /// The account's existing handler, for pushes that are not QR scans; `None`: they
    /// are answered `success` and dropped.
    pub forward: Option<ForwardSettings>,
    /// Passive replies to scans; the first matching rule answers.
    pub replies: Vec<ReplyRule>,
}

impl WebhookSettings {
    /// How long the replay guard remembers an accepted `(timestamp, nonce)`: as long as
    /// the replay window lets that query through (five minutes when the window is off,
    /// so the memory stays bounded).
    pub fn seal_keep(&self) -> Duration {
        self.replay_window.unwrap_or(Duration::from_secs(300))
    }
}

/// One Official Account the service serves.
#[derive(Debug, Clone)]
pub struct AccountSettings {
    /// Its API client. When the simulator runs, its bases are filled in at start.
    pub upstream: Upstream,
    /// Its webhook (`/wechat/<app_id>`, and `/wechat` when it is the only account).
    pub webhook: WebhookSettings,
    /// Most permanent codes kept for it.
    pub permanent_budget: Option<u64>,
}

impl AccountSettings {
    /// The AppID.
    pub fn app_id(&self) -> &str {
        &self.upstream.app_id
    }
}

/// One account of the simulator.
#[derive(Debug, Clone)]
pub struct SimulatedAccount {
    /// AppID the simulator accepts and puts in encrypted pushes.
    pub app_id: String,
    /// AppSecret the simulator accepts.
    pub app_secret: Secret,
    /// `ToUserName` of simulated pushes.
    pub account: String,
    /// The webhook token simulated pushes are signed with.
    pub token: Secret,
    /// When set, simulated pushes are encrypted with it.
    pub aes_key: Option<AesKey>,
    /// Which form simulated pushes take.
    pub mode: EncryptMode,
}

/// The simulator's accounts, when it runs.
#[derive(Debug, Clone)]
pub struct SimulatorSettings {
    /// Where the simulator listens.
    pub addr: SocketAddr,
    /// The accounts it plays WeChat for; the first is the default of `/sim/scan`.
    pub accounts: Vec<SimulatedAccount>,
    /// Faults injected from the start.
    pub faults: Faults,
}

/// gRPC over TLS, the PEM files read.
#[derive(Clone)]
pub struct TlsSettings {
    /// The certificate chain.
    pub cert: Vec<u8>,
    /// Its private key.
    pub key: Secret,
    /// CAs a client certificate must chain to; `Some` makes client certificates required.
    pub client_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("client_ca", &self.client_ca.is_some())
            .finish_non_exhaustive()
    }
}

/// Retention of the event log.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Most events kept.
    pub max_events: usize,
    /// Oldest event kept.
    pub max_age: Duration,
    /// Most bytes of events kept, counted as stored.
    pub max_bytes: u64,
}

/// Where state is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// The embedded store in this data directory.
    Durable {
        /// The data directory.
        dir: PathBuf,
    },
    /// Memory only.
    Memory,
    /// Redis, shared by every replica.
    Redis {
        /// Its URL; the password is secret.
        url: Secret,
        /// Prefix of every key.
        prefix: String,
    },
}

/// Caps on StreamEvents, so filters and streams cannot be used to take memory: counts,
/// and a budget in bytes that every stream is charged against.
#[derive(Debug, Clone, Copy)]
pub struct SubscriptionLimits {
    /// Bytes all streams may be charged (filters and buffers).
    pub max_subscription_bytes: u64,
    /// Subscriptions open at once, in total.
    pub max_subscriptions: usize,
    /// Subscriptions on one connection (HTTP/2 allows a few more streams, for unary calls).
    pub max_streams_per_connection: u32,
    /// Values in one filter dimension.
    pub max_filter_entries: usize,
    /// Bytes of one filter value.
    pub max_filter_entry_bytes: usize,
}

impl SubscriptionLimits {
    /// Bytes the streams of one connection may be charged: a quarter of the budget, so
    /// one caller cannot hold it all, while one connection still fits thousands of
    /// one-ticket waiters.
    pub fn connection_bytes(&self) -> u64 {
        (self.max_subscription_bytes / 4).max(1)
    }
}

/// The default subscription memory budget: a quarter of [`process_memory_limit`].
fn default_subscription_bytes() -> u64 {
    process_memory_limit() / 4
}

/// The memory this process may use, in bytes: its cgroup's limit (v2 `memory.max`, v1
/// `memory.limit_in_bytes`) when it has one below the machine's physical memory, else
/// the physical memory (1 GiB when neither can be read).
pub fn process_memory_limit() -> u64 {
    let physical = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(1 << 30);
    cgroup_memory_limit().map_or(physical, |limit| limit.min(physical))
}

/// The memory limit of this process's cgroup, if it has one.
fn cgroup_memory_limit() -> Option<u64> {
    let read =
        |path: String| -> Option<u64> { std::fs::read_to_string(path).ok()?.trim().parse().ok() };
    let membership = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut candidates = Vec::new();
    for line in membership.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let path = path.trim_end_matches('/');
        if controllers.is_empty() {
            candidates.push(format!("/sys/fs/cgroup{path}/memory.max"));
        } else if controllers.split(',').any(|c| c == "memory") {
            candidates.push(format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"));
        }
    }
    // Inside a container's cgroup namespace the paths above may not exist; its own
    // limit then sits at the root of the mount.
    candidates.push("/sys/fs/cgroup/memory.max".into());
    candidates.push("/sys/fs/cgroup/memory/memory.limit_in_bytes".into());
    // "max" (v2) does not parse: no limit at that level.
    candidates.into_iter().find_map(read)
}

/// Sizes of gRPC messages, so a request cannot take megabytes before it is validated.
#[derive(Debug, Clone, Copy)]
pub struct MessageLimits {
    /// Largest decoded request.
    pub max_request_bytes: usize,
    /// Largest encoded response: the largest image and room for the rest of its message.
    pub max_response_bytes: usize,
}

/// Room in a GetImage response for what accompanies the image (its URL, content type).
const RESPONSE_HEADROOM_BYTES: usize = 64 * 1024;

/// What bounds the listeners' connections; [`crate::descriptors::ConnectionPlan`] turns
/// it into caps that fit the descriptor limit.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// The webhook's cap as configured; `None`: sized from the descriptor limit.
    pub max_webhook: Option<usize>,
    /// The gRPC listener's cap as configured; `None`: sized from the descriptor limit.
    pub max_grpc: Option<usize>,
    /// Connections one client address may hold on the webhook (the admin listener has none).
    pub per_address: usize,
    /// Proxies whose connections are counted against the address they forward for.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Deadline for an HTTP request's head (webhook, admin, simulator).
    pub header_read_timeout: Duration,
    /// Deadline for a gRPC connection's HTTP/2 handshake.
    pub grpc_handshake_timeout: Duration,
    /// A gRPC connection without a call for this long is closed; `None`: never.
    pub grpc_idle_timeout: Option<Duration>,
    /// Accounts served: each has an upstream (and maybe a forward) connection pool.
    pub accounts: usize,
    /// Whether Redis connections need descriptors.
    pub redis: bool,
    /// Whether the embedded simulator's listener needs descriptors.
    pub simulator: bool,
}

/// Everything [`crate::app::start`] needs, resolved and validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// gRPC listener address.
    pub grpc_addr: SocketAddr,
    /// Webhook listener address.
    pub http_addr: SocketAddr,
    /// Admin listener address (`/metrics`, `/healthz`).
    pub admin_addr: SocketAddr,
    /// The accounts served, at least one, in configuration order.
    pub accounts: Vec<AccountSettings>,
    /// Connection caps and deadlines of the listeners.
    pub connections: ConnectionSettings,
    /// An older version's permanent-ticket file to import once, if it exists.
    pub permanent_store: Option<PathBuf>,
    /// `Some` when the embedded simulator runs instead of WeChat.
    pub simulator: Option<SimulatorSettings>,
    /// Event log retention.
    pub retention: Retention,
    /// Most seals the replay guard remembers (shared by every account).
    pub replay_guard_seals: usize,
    /// Where events and permanent scenes are kept.
    pub storage: Storage,
    /// Days of channel statistics kept.
    pub stats_retain_days: u32,
    /// Caps on subscriptions.
    pub limits: SubscriptionLimits,
    /// Caps on gRPC message sizes.
    pub messages: MessageLimits,
    /// Consumer groups one account may have.
    pub max_groups_per_account: usize,
    /// gRPC over TLS (and mTLS); `None`: plaintext.
    pub tls: Option<TlsSettings>,
    /// The callers allowed on the gRPC API; empty: open.
    pub clients: Vec<ClientConfig>,
}

impl Settings {
    /// Every configured AppID, in configuration order.
    pub fn app_ids(&self) -> Vec<String> {
        self.accounts
            .iter()
            .map(|a| a.app_id().to_owned())
            .collect()
    }
}

/// How errors name an account's settings: by environment variable for the one account
/// of the environment, by key path for the configuration file's.
#[derive(Clone, Copy)]
enum Naming {
    Env,
    File(usize),
}

impl Naming {
    fn name(self, field: &str) -> String {
        match self {
            Self::File(i) => format!("accounts[{i}].{field}"),
            Self::Env => match field {
                "token" => "WECHAT_TOKEN".into(),
                "previous_token" => "WECHAT_PREVIOUS_TOKEN".into(),
                "encoding_aes_key" => "WECHAT_ENCODING_AES_KEY".into(),
                "previous_encoding_aes_key" => "WECHAT_PREVIOUS_ENCODING_AES_KEY".into(),
                "encrypt_mode" => "WECHAT_ENCRYPT_MODE".into(),
                "api_base" => "WECHAT_API_BASE".into(),
                "mp_base" => "WECHAT_MP_BASE".into(),
                other => other.to_ascii_uppercase(),
            },
        }
    }
}

impl ServeConfig {
    /// Validates the settings and decides whether the simulator runs.
    pub fn resolve(&self) -> Result<Settings, ConfigError> {
        let token_source = match (self.token_source, &self.token_url) {
            (TokenSourceKind::Stable, _) => TokenSource::Stable,
            (TokenSourceKind::Token, _) => TokenSource::Token,
            (TokenSourceKind::Url, Some(url)) => TokenSource::Url(url.clone()),
            (TokenSourceKind::Url, None) => return Err(ConfigError::TokenUrlMissing),
        };
        if !(self.token_refresh_at > 0.0 && self.token_refresh_at <= 1.0) {
            return Err(ConfigError::BadRefreshShare);
        }
        let faults = match &self.simulator_faults {
            Some(json) => {
                serde_json::from_str(json).map_err(|e| ConfigError::BadFaults(e.to_string()))?
            }
            None => Faults::default(),
        };
        let (accounts, naming, simulated) = if self.accounts.is_empty() {
            if self.simulator {
                return Err(ConfigError::SimulatorWithoutAccounts);
            }
            let (account, real_credentials) = self.environment_account()?;
            (vec![account], Naming::Env, !real_credentials)
        } else {
            (self.accounts.clone(), Naming::File(0), self.simulator)
        };
        if simulated && !self.allow_simulator_on_network {
            // The simulator hands out tokens and pushes scans to anyone who asks; the dev
            // token is in the README, so a webhook checking it authenticates nobody. An
            // operator-chosen WECHAT_TOKEN makes the webhook as safe as with WeChat.
            let public_token = self.accounts.is_empty() && self.token.is_none();
            let public_webhook = public_token.then_some(self.http_addr);
            for (what, addr) in [
                (
                    "the embedded simulator (WECHAT_QR_SIMULATOR_ADDR)",
                    Some(self.simulator_addr),
                ),
                (
                    "the webhook with the public development token (WECHAT_QR_HTTP_ADDR)",
                    public_webhook,
                ),
            ] {
                if let Some(addr) = addr.filter(|a| !a.ip().is_loopback()) {
                    return Err(ConfigError::SimulatorOnNetwork { what, addr });
                }
            }
        }
        let mut resolved = Vec::with_capacity(accounts.len());
        let mut simulated_accounts = Vec::new();
        for (i, account) in accounts.iter().enumerate() {
            let naming = match naming {
                Naming::Env => Naming::Env,
                Naming::File(_) => Naming::File(i),
            };
            let (settings, sim) = self.account(account, naming, &token_source)?;
            resolved.push(settings);
            simulated_accounts.push(sim);
        }
        let simulator = simulated.then_some(SimulatorSettings {
            addr: self.simulator_addr,
            accounts: simulated_accounts,
            faults,
        });
        let permanent_store = self.permanent_store.clone().or_else(|| {
            (!simulated && self.accounts.is_empty())
                .then(|| PathBuf::from("wechat-qr-permanent.jsonl"))
        });
        let read = |what: &'static str, path: &PathBuf| {
            std::fs::read(path).map_err(|source| ConfigError::TlsFile {
                what,
                path: path.clone(),
                source,
            })
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsSettings {
                cert: read("WECHAT_QR_TLS_CERT", cert)?,
                key: Secret::new(
                    String::from_utf8_lossy(&read("WECHAT_QR_TLS_KEY", key)?).into_owned(),
                ),
                client_ca: self
                    .client_ca
                    .as_ref()
                    .map(|ca| read("WECHAT_QR_TLS_CLIENT_CA", ca))
                    .transpose()?,
            }),
            // clap's `requires` refuses one without the other.
            _ => None,
        };
        Ok(Settings {
            grpc_addr: self.grpc_addr,
            http_addr: self.http_addr,
            admin_addr: self.admin_addr,
            accounts: resolved,
            connections: self.connection_settings(),
            permanent_store,
            simulator,
            retention: Retention {
                max_events: self.retain_events.max(1),
                max_age: Duration::from_secs(self.retain_seconds.max(1)),
                max_bytes: self.retain_bytes.max(1),
            },
            replay_guard_seals: self.replay_guard_seals.max(1),
            storage: match (&self.redis_url, self.event_log) {
                (Some(url), _) => Storage::Redis {
                    url: url.clone(),
                    prefix: self.redis_prefix.clone(),
                },
                (None, EventLogKind::Durable) => Storage::Durable {
                    dir: self.data_dir.clone(),
                },
                (None, EventLogKind::Memory) => Storage::Memory,
            },
            stats_retain_days: self.stats_retain_days.max(1),
            limits: SubscriptionLimits {
                max_subscription_bytes: self
                    .max_subscription_bytes
                    .unwrap_or_else(default_subscription_bytes)
                    .max(1),
                max_subscriptions: self.max_subscriptions.max(1),
                max_streams_per_connection: self.max_streams_per_connection.max(1),
                max_filter_entries: self.max_filter_entries.max(1),
                max_filter_entry_bytes: self.max_filter_entry_bytes.max(1),
            },
            messages: MessageLimits {
                max_request_bytes: self.max_request_bytes.max(1),
                max_response_bytes: self
                    .max_image_bytes
                    .max(1)
                    .saturating_add(RESPONSE_HEADROOM_BYTES),
            },
            max_groups_per_account: self.max_groups_per_account.max(1),
            tls,
            clients: self.clients.clone(),
        })
    }

    /// The one account of the flags and environment: WeChat's with both credentials,
    /// the simulator's development account with neither. Also says which.
    fn environment_account(&self) -> Result<(AccountConfig, bool), ConfigError> {
        let real_credentials = match (&self.app_id, &self.app_secret) {
            (Some(_), Some(_)) => true,
            (None, None) => false,
            (Some(_), None) => {
                return Err(ConfigError::MissingCredential {
                    set: "WECHAT_APP_ID",
                    missing: "WECHAT_APP_SECRET",
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::MissingCredential {
                    set: "WECHAT_APP_SECRET",
                    missing: "WECHAT_APP_ID",
                });
            }
        };
        let token = match (&self.token, real_credentials) {
            (Some(token), _) => token.clone(),
            (None, true) => return Err(ConfigError::MissingToken("WECHAT_TOKEN".into())),
            (None, false) => Secret::new(dev::TOKEN),
        };
        Ok((
            AccountConfig {
                app_id: self
                    .app_id
                    .clone()
                    .unwrap_or_else(|| dev::APP_ID.to_owned()),
                app_secret: self
                    .app_secret
                    .clone()
                    .unwrap_or_else(|| Secret::new(dev::APP_SECRET)),
                token: Some(token),
                encoding_aes_key: self.encoding_aes_key.clone(),
                previous_token: self.previous_token.clone(),
                previous_encoding_aes_key: self.previous_encoding_aes_key.clone(),
                encrypt_mode: self.encrypt_mode,
                original_id: self.account_id.clone(),
                api_base: self.api_base.as_ref().map(Url::to_string),
                mp_base: self.mp_base.as_ref().map(Url::to_string),
                permanent_budget: self.permanent_budget,
                forward_url: self.forward_url.clone(),
                forward_scans: Some(self.forward_scans),
                forward_failure: Some(self.forward_failure),
                forward_timeout_ms: Some(self.forward_timeout_ms),
                replies: self.replies.clone(),
            },
            real_credentials,
        ))
    }

    /// One account's settings, checked; errors name the setting by `naming`.
    fn account(
        &self,
        account: &AccountConfig,
        naming: Naming,
        token_source: &TokenSource,
    ) -> Result<(AccountSettings, SimulatedAccount), ConfigError> {
        let token = account
            .token
            .clone()
            .ok_or_else(|| ConfigError::MissingToken(naming.name("token")))?;
        check_token(naming.name("token"), &token)?;
        let mut tokens = vec![token.clone()];
        if let Some(previous) = &account.previous_token {
            check_token(naming.name("previous_token"), previous)?;
            tokens.push(previous.clone());
        }
        let mut aes_keys: Vec<AesKey> = Vec::new();
        for (field, key) in [
            ("encoding_aes_key", &account.encoding_aes_key),
            (
                "previous_encoding_aes_key",
                &account.previous_encoding_aes_key,
            ),
        ] {
            if let Some(key) = key {
                aes_keys.push(
                    key.expose()
                        .parse()
                        .map_err(|e| ConfigError::BadAesKey(naming.name(field), e))?,
                );
            }
        }
        let mode = account.encrypt_mode.unwrap_or(if aes_keys.is_empty() {
            EncryptMode::Plaintext
        } else {
            EncryptMode::Safe
        });
        if mode != EncryptMode::Plaintext && aes_keys.is_empty() {
            return Err(ConfigError::ModeNeedsKey(
                naming.name("encrypt_mode"),
                mode,
                naming.name("encoding_aes_key"),
            ));
        }
        let url = |field: &str, value: &Option<String>, default: &str| {
            Url::parse(value.as_deref().unwrap_or(default))
                .map_err(|e| ConfigError::BadUrl(naming.name(field), e))
        };
        let upstream = Upstream {
            api_base: url("api_base", &account.api_base, WECHAT_API_BASE)?,
            mp_base: url("mp_base", &account.mp_base, WECHAT_MP_BASE)?,
            app_id: account.app_id.clone(),
            app_secret: account.app_secret.clone(),
            token_source: token_source.clone(),
            refresh_at: self.token_refresh_at,
            timeout: Duration::from_millis(self.upstream_timeout_ms.max(1)),
            attempts: self.upstream_attempts.max(1),
            max_image_bytes: self.max_image_bytes.max(1),
            image_cache_bytes: self.image_cache_bytes,
            image_ttl: Duration::from_secs(self.image_ttl_seconds.max(1)),
        };
        let simulated = SimulatedAccount {
            app_id: account.app_id.clone(),
            app_secret: account.app_secret.clone(),
            account: account
                .original_id
                .clone()
                .unwrap_or_else(|| dev::ACCOUNT.to_owned()),
            token,
            aes_key: aes_keys.first().cloned(),
            mode,
        };
        let webhook = WebhookSettings {
            app_id: account.app_id.clone(),
            tokens,
            aes_keys,
            mode,
            replay_window: (self.replay_window_seconds > 0)
                .then(|| Duration::from_secs(self.replay_window_seconds)),
            max_body_bytes: self.max_push_bytes,
            body_read_timeout: Duration::from_millis(self.push_read_timeout_ms),
            forward: self.forward_settings(account)?,
            replies: account.replies.clone(),
        };
        Ok((
            AccountSettings {
                upstream,
                webhook,
                permanent_budget: account.permanent_budget,
            },
            simulated,
        ))
    }
}

impl ServeConfig {
    /// The connection caps and deadlines as configured (`check-config` plans with them
    /// before anything else is resolved).
    pub fn connection_settings(&self) -> ConnectionSettings {
        let simulator = self.simulator || (self.accounts.is_empty() && self.app_id.is_none());
        ConnectionSettings {
            max_webhook: self.max_webhook_connections,
            max_grpc: self.max_grpc_connections,
            per_address: self.max_connections_per_address.max(1),
            trusted_proxies: self.trusted_proxies.clone(),
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms.max(1)),
            grpc_handshake_timeout: Duration::from_millis(self.grpc_handshake_timeout_ms.max(1)),
            grpc_idle_timeout: (self.grpc_idle_timeout_seconds > 0)
                .then(|| Duration::from_secs(self.grpc_idle_timeout_seconds)),
            accounts: self.accounts.len().max(1),
            redis: self.redis_url.is_some(),
            simulator,
        }
    }

    /// An account's forward settings, checked: an HTTP URL and a deadline WeChat waits
    /// for (the file's accounts were checked as they were read, naming their keys).
    fn forward_settings(
        &self,
        account: &AccountConfig,
    ) -> Result<Option<ForwardSettings>, ConfigError> {
        let scans = account.forward_scans.unwrap_or(false);
        let Some(url) = &account.forward_url else {
            return if scans {
                Err(ConfigError::ForwardScansWithoutUrl)
            } else {
                Ok(None)
            };
        };
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::BadForwardUrl);
        }
        let timeout_ms = account
            .forward_timeout_ms
            .unwrap_or(self.forward_timeout_ms);
        if !(1..=MAX_FORWARD_TIMEOUT_MS).contains(&timeout_ms) {
            return Err(ConfigError::BadForwardTimeout);
        }
        Ok(Some(ForwardSettings {
            url: url.clone(),
            scans,
            failure: account.forward_failure.unwrap_or(self.forward_failure),
            timeout: Duration::from_millis(timeout_ms),
        }))
    }
}

fn check_token(name: String, token: &Secret) -> Result<(), ConfigError> {
    let len = token.expose().chars().count();
    if (3..=32).contains(&len) {
        Ok(())
    } else {
        Err(ConfigError::BadToken(name))
    }
}
