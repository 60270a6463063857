//! wechat-qr: one typed gRPC door to WeChat Official Account parametric QR codes.
//!
//! One scan, followed through the crate:
//!
//! ```text
//!  WeChat (or the embedded simulator)
//!     │  POST /wechat  signed (optionally AES-encrypted) XML push
//!     ▼
//!  webhook ── verify signature ─ decrypt ─ decode XML ─▶ events::EventLog (append, de-duplicate)
//!                    synced to the data directory (events::DurableLog) │ before `success`;
//!                                                              │ cursor-ordered log + wake-up
//!                                                              ▼
//!                                        events::Subscribers: the fan-out hub, the one
//!                                        live reader; finds an event's subscribers by
//!                                        ticket / scene index plus the broadcast set
//!                                                              │ one shared delivery each
//!                                                              ▼
//!  grpc::wire (StreamEvents) ◀── events::Subscription (one stream per subscriber: its
//!     │  each event encoded once       inbox when live, the log when replaying or behind)
//!     ▼
//!  gRPC clients (Python, Go, TypeScript, grpcurl)
//!
//!  grpc::QrService::{create_ticket, get_image} ──▶ wechat::WeChatClient ──▶ qrcode/create, showqrcode
//!                          (deadline-bounded retries) ├─ wechat::token (single flight, refresh ahead)
//!                                                     ├─ wechat::ImageCache, wechat::PermanentTickets
//! ```
//!
//! [`app::start`] wires it together: it binds the gRPC, webhook and admin listeners (and,
//! when no WeChat credentials are configured, the [`simulator`]), and stops everything on
//! one [`tokio_util::sync::CancellationToken`] — the webhook first, then the streams.
//! [`metrics`] (served by the admin listener, apart from the webhook), [`logging`] and,
//! when an OTLP endpoint is configured, [`telemetry`]'s traces are what operators see;
//! the web console (`/console/` on the admin listener) is what people
//! look at: a page embedded in the binary, calling the same services over gRPC-Web.
//!
//! No caller can hold the process's connections or descriptors: [`descriptors`] raises
//! the descriptor limit and sizes every listener's cap from it; each accept loop
//! registers its connections with a `connections::Registry` (per-address limits, and
//! at the cap the oldest waiting connection closed to make room).
//!
//! An account that shares its one server URL with an existing back end has the webhook
//! forward every verified push that is not a QR scan there and relay the answer, and may
//! answer stored scans with passive replies (README, "Sharing the server URL").
//!
//! [`stats`] follows the same log from a cursor of its own and keeps per-scene counts
//! (scans, new followers, distinct users, attributed unfollows in 15-minute slots) in a
//! store of its own, which `grpc::ChannelStatsService` answers from.

mod admin;
pub mod app;
pub mod config;
mod connections;
mod console;
pub mod descriptors;
pub mod events;
pub mod grpc;
mod grpc_listener;
mod http_server;
pub mod logging;
pub mod metrics;
pub mod protocol;
pub mod secret;
pub mod simulator;
pub mod stats;
pub mod telemetry;
pub mod webhook;
pub mod wechat;

/// Code generated from `proto/wechat/qr/v1/qr_service.proto` and `channel_stats.proto`.
pub mod pb {
    #![allow(missing_docs, unreachable_pub, clippy::all)]
    tonic::include_proto!("wechat.qr.v1");

    /// The encoded descriptor set, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("wechat_qr_descriptor");
}
