//! The QR image cache. A ticket's image never changes while the ticket lives, so images
//! are kept (bounded by bytes, not entries) until the ticket expires, or for a configured
//! time when it is permanent or of unknown age. Concurrent misses for one ticket share
//! one download; a 404 is remembered briefly, in a small memory of its own, so a stream
//! of bad tickets becomes neither a stream of downloads nor a reason to evict real
//! images. Images are `Bytes`: every hit shares the same buffer.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use moka::{Expiry, future::Cache};

use super::{QrImage, WeChatError};
use crate::metrics::AccountMetrics;

/// How long "no such ticket" is remembered.
pub const NOT_FOUND_TTL: Duration = Duration::from_secs(30);
/// Bytes of tickets WeChat did not know that are remembered (apart from the images, so
/// made-up tickets never push real images out).
const NOT_FOUND_BYTES: u64 = 4 * 1024 * 1024;

/// A cached answer of `showqrcode`.
#[derive(Debug, Clone)]
struct Cached {
    image: QrImage,
    ttl: Duration,
}

struct PerEntry;

impl Expiry<String, Cached> for PerEntry {
    fn expire_after_create(&self, _: &String, value: &Cached, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Images by ticket.
#[derive(Debug)]
pub struct ImageCache {
    images: Cache<String, Cached>,
    /// Tickets WeChat answered 404 for, each for [`NOT_FOUND_TTL`].
    unknown: Cache<String, ()>,
    metrics: Arc<AccountMetrics>,
}

impl ImageCache {
    /// A cache holding at most `max_bytes` of images.
    pub fn new(max_bytes: u64, metrics: Arc<AccountMetrics>) -> Self {
        Self {
            images: Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|ticket: &String, cached: &Cached| {
                    let bytes = cached.image.bytes.len();
                    u32::try_from(bytes + ticket.len() + 64).unwrap_or(u32::MAX)
                })
                .expire_after(PerEntry)
                .build(),
            unknown: Cache::builder()
                .max_capacity(NOT_FOUND_BYTES)
                .weigher(|ticket: &String, ()| u32::try_from(ticket.len() + 64).unwrap_or(u32::MAX))
                .time_to_live(NOT_FOUND_TTL)
                .build(),
            metrics,
        }
    }

    /// The image of `ticket`, downloading it (once for all concurrent callers) on a miss
    /// and keeping it for `ttl`. `download` is called only on a miss.
    pub async fn get_or_download<F, Fut>(
        &self,
        ticket: &str,
        ttl: Duration,
        download: F,
    ) -> Result<QrImage, WeChatError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<QrImage, WeChatError>>,
    {
        if self.unknown.contains_key(ticket) {
            self.metrics.image_unknown_ticket_hits.inc();
            return Err(WeChatError::TicketNotFound);
        }
        // A hit is the common case and needs none of the miss path's machinery. The
        // miss path's future (moka's shared initialisation, the download with its
        // retries and HTTP client) is tens of kilobytes: held inline, it was copied
        // whole at every layer of every call, hits included (40 % of a hit's
        // instructions were memcpy), so it lives in its own allocation, made on a miss.
        if let Some(cached) = self.images.get(ticket).await {
            self.metrics.image_cache_hits.inc();
            return Ok(cached.image);
        }
        Box::pin(self.download(ticket, ttl, download)).await
    }

    /// The miss path of [`Self::get_or_download`].
    async fn download<F, Fut>(
        &self,
        ticket: &str,
        ttl: Duration,
        download: F,
    ) -> Result<QrImage, WeChatError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<QrImage, WeChatError>>,
    {
        let downloaded = AtomicBool::new(false);
        let cached = self
            .images
            .try_get_with_by_ref(ticket, async {
                downloaded.store(true, Ordering::Relaxed);
                match download().await {
                    Ok(image) => Ok(Cached { image, ttl }),
                    // An error, so the image cache keeps nothing; every caller waiting
                    // on this download shares it.
                    Err(e) => Err(e),
                }
            })
            .await
            .map_err(|shared| (*shared).clone());
        let cached = match cached {
            Err(WeChatError::TicketNotFound) => {
                self.unknown.insert(ticket.to_owned(), ()).await;
                return Err(WeChatError::TicketNotFound);
            }
            other => other?,
        };
        if downloaded.load(Ordering::Relaxed) {
            self.metrics.image_cache_misses.inc();
            // moka settles sizes lazily; misses are rare enough to settle them here.
            self.images.run_pending_tasks().await;
            self.metrics
                .image_cache_bytes
                .set(i64::try_from(self.images.weighted_size()).unwrap_or(i64::MAX));
        } else {
            // Another caller's download, shared.
            self.metrics.image_cache_hits.inc();
        }
        Ok(cached.image)
    }
}
