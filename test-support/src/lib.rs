//! What the integration tests (`tests/`) and the bench harness (`bench/harness/`) both
//! need to run the real thing as child processes: the `wechat-qr` binary with a clean
//! environment and its announced addresses ([`binary`]), a `redis-server` on a free
//! loopback port ([`redis_server`]), the process handle beneath both ([`process`]: stopped
//! on drop, stopped all at once on the harness's Ctrl-C, read from `/proc`), and
//! certificates made with `openssl` ([`tls`]). Not part of the service.

pub mod binary;
pub mod process;
pub mod redis_server;
pub mod tls;

/// Errors of starting and watching processes: reported, never matched on.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// Results of starting and watching processes.
pub type Result<T, E = Error> = std::result::Result<T, E>;
