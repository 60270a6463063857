//! The gRPC side of the load client: connections to a QrService (ours or the echo
//! baseline), subscribers spread over several HTTP/2 connections, and the readers that
//! drain their streams, count deliveries and check the stream contract (cursors strictly
//! increase: no duplicate, no reordering); and the filling of a log whose first cursor a
//! scenario needs.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::task::JoinSet;
use tonic::{Streaming, transport::Channel};
use wechat_qr::{
    events::Cursor,
    pb::{self, qr_service_client::QrServiceClient},
};

use crate::{
    Result,
    http_load::{self, Connection},
    processes::Service,
    pushes::PushFactory,
};

/// Streams opened per HTTP/2 connection. The server's default limit of concurrent streams
/// (hyper's 200) would make the client queue the rest; 100 stays well under it.
pub(crate) const STREAMS_PER_CONNECTION: usize = 100;

/// A client on a new HTTP/2 connection.
pub(crate) async fn connect(addr: SocketAddr) -> Result<QrServiceClient<Channel>> {
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    Ok(QrServiceClient::new(channel).max_decoding_message_size(16 << 20))
}

/// Fills `service`'s log with `count` fresh pushes of `factory` and returns the first
/// one's cursor, which names the log's epoch and the first sequence number. The first
/// push goes alone, its cursor read from a live subscriber (waiting at most
/// `first_within`); the rest go over `connections` keep-alive connections.
pub(crate) async fn fill_log(
    service: &Service,
    factory: &PushFactory,
    count: u64,
    connections: usize,
    first_within: Duration,
) -> Result<Cursor> {
    let mut live = connect(service.grpc_addr)
        .await?
        .stream_events(pb::StreamEventsRequest::default())
        .await?
        .into_inner();
    Connection::open(service.webhook_addr)
        .await?
        .post(&factory.push(0))
        .await?;
    let first = tokio::time::timeout(first_within, live.message())
        .await
        .map_err(|_| "the first event did not arrive")??
        .ok_or("the live stream ended")?;
    drop(live);
    let first: Cursor = first.cursor.parse()?;
    let filled = http_load::closed_loop(
        service.webhook_addr,
        factory.pool(1, count - 1),
        connections,
        Duration::from_secs(600),
    )
    .await?;
    if filled.pushes != count - 1 {
        return Err(format!("only {} of {} pushes were sent", filled.pushes, count - 1).into());
    }
    Ok(first)
}

/// `count` live subscriptions to every event, `STREAMS_PER_CONNECTION` per connection.
/// Each has its response headers, so the service has started its reader: every event
/// accepted from now on reaches it.
pub(crate) async fn subscribe(
    addr: SocketAddr,
    count: usize,
) -> Result<Vec<Streaming<pb::StreamEventsResponse>>> {
    let mut clients = Vec::new();
    for _ in 0..count.div_ceil(STREAMS_PER_CONNECTION) {
        clients.push(connect(addr).await?);
    }
    let mut opening = JoinSet::new();
    for i in 0..count {
        let mut client = clients[i / STREAMS_PER_CONNECTION].clone();
        opening.spawn(async move {
            let stream = client
                .stream_events(pb::StreamEventsRequest::default())
                .await?
                .into_inner();
            Ok::<_, crate::BoxError>(stream)
        });
    }
    let mut streams = Vec::with_capacity(count);
    while let Some(opened) = opening.join_next().await {
        streams.push(opened??);
    }
    Ok(streams)
}

/// Deliveries counted across readers, and the first broken promise seen.
#[derive(Default)]
pub(crate) struct Tally {
    delivered: AtomicU64,
    failure: Mutex<Option<String>>,
}

/// How waiting for deliveries ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waited {
    /// Everything expected arrived.
    Complete,
    /// Deliveries were still coming when the time bound passed (a timing, not a fault).
    OutOfTime,
}

impl Tally {
    /// Deliveries so far.
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    fn fail(&self, why: String) {
        self.failure.lock().expect("tally lock").get_or_insert(why);
    }

    /// Waits for `expected` deliveries until `bound`. Fails if a reader saw a broken
    /// contract, or if deliveries stop coming for `stall` while some are missing: that
    /// is a lost event, not a slow one.
    pub(crate) async fn wait_for(
        &self,
        expected: u64,
        stall: Duration,
        bound: Instant,
    ) -> Result<Waited> {
        let mut last = self.delivered();
        let mut last_progress = Instant::now();
        loop {
            if let Some(why) = self.failure.lock().expect("tally lock").clone() {
                return Err(why.into());
            }
            let now_delivered = self.delivered();
            if now_delivered >= expected {
                return Ok(Waited::Complete);
            }
            let now = Instant::now();
            if now_delivered > last {
                last = now_delivered;
                last_progress = now;
            } else if now.duration_since(last_progress) > stall {
                return Err(format!(
                    "deliveries stopped at {now_delivered} of {expected} (nothing for {stall:?})"
                )
                .into());
            }
            if now >= bound {
                return Ok(Waited::OutOfTime);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Drains every stream on its own task, calling `on_event` for each event. The tasks end
/// when the returned set is dropped.
pub(crate) fn read_all(
    streams: Vec<Streaming<pb::StreamEventsResponse>>,
    tally: Arc<Tally>,
    on_event: Arc<dyn Fn(&pb::Event) + Send + Sync>,
) -> JoinSet<()> {
    let mut readers = JoinSet::new();
    for mut stream in streams {
        let (tally, on_event) = (tally.clone(), on_event.clone());
        readers.spawn(async move {
            let mut last_cursor = String::new();
            loop {
                match stream.message().await {
                    Ok(Some(response)) => {
                        if response.cursor <= last_cursor {
                            tally.fail(format!(
                                "cursor {} after {last_cursor}: duplicate or out of order",
                                response.cursor
                            ));
                        }
                        if let Some(event) = &response.event {
                            on_event(event);
                        }
                        last_cursor = response.cursor;
                        tally.delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(None) => {
                        tally.fail("a stream ended while the service runs".into());
                        return;
                    }
                    Err(status) => {
                        tally.fail(format!("a stream failed: {status}"));
                        return;
                    }
                }
            }
        });
    }
    readers
}
