//! The HTTP load client, one for every webhook (ours, the bare hyper baseline, wechatpy):
//! hyper HTTP/1.1 connections with keep-alive, each with one push in flight at a time,
//! reconnecting when the server closes (gunicorn's synchronous workers close after every
//! answer). Every answer must be `200 success` (or `200` with a passive reply, for a push
//! a reply rule answers); anything else fails the scenario.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    Request, StatusCode,
    client::conn::http1,
    header::{CONNECTION, CONTENT_TYPE, HOST, HeaderValue},
};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpStream, task::JoinSet};

use crate::{Result, histogram::Histogram, pushes::Push};

/// One keep-alive connection to a webhook.
pub(crate) struct Connection {
    addr: SocketAddr,
    /// `Host:` of every request.
    host: HeaderValue,
    /// `None` after the server said it closes.
    sender: Option<http1::SendRequest<Full<Bytes>>>,
}

impl Connection {
    /// Connects to `addr`.
    pub(crate) async fn open(addr: SocketAddr) -> Result<Self> {
        let mut connection = Self {
            addr,
            host: HeaderValue::from_str(&addr.to_string())?,
            sender: None,
        };
        connection.reconnect().await?;
        Ok(connection)
    }

    async fn reconnect(&mut self) -> Result<()> {
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        self.sender = Some(sender);
        Ok(())
    }

    /// POSTs `push` and fails unless the answer is `200 success`. A push whose connection
    /// turned out closed is sent again once on a new connection.
    pub(crate) async fn post(&mut self, push: &Push) -> Result<()> {
        let mut retried = false;
        loop {
            let open = match &mut self.sender {
                Some(sender) => sender.ready().await.is_ok(),
                None => false,
            };
            if !open {
                self.reconnect().await?;
            }
            let sender = self.sender.as_mut().expect("connected above");
            let request = Request::post(push.uri.clone())
                .header(HOST, self.host.clone())
                .header(CONTENT_TYPE, "text/xml")
                .body(Full::new(push.body.clone()))?;
            let response = match sender.send_request(request).await {
                Ok(response) => response,
                // The server closed the connection just as the push went out (normal for
                // servers without keep-alive): send it again on a new connection, once.
                Err(_) if !retried => {
                    retried = true;
                    self.sender = None;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let closes = response
                .headers()
                .get(CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            if closes {
                self.sender = None;
            }
            let expected = if push.expect_reply {
                body.starts_with(b"<xml>")
            } else {
                body.as_ref() == b"success"
            };
            if status != StatusCode::OK || !expected {
                return Err(format!(
                    "{} answered {status} {:?} to a valid push",
                    self.addr,
                    String::from_utf8_lossy(&body)
                )
                .into());
            }
            return Ok(());
        }
    }
}

/// What a closed loop achieved.
pub(crate) struct Throughput {
    /// Pushes answered `200 success`.
    pub(crate) pushes: u64,
    /// From the first send to the last answer.
    pub(crate) elapsed: Duration,
}

impl Throughput {
    /// Pushes per second.
    pub(crate) fn rate(&self) -> f64 {
        self.pushes as f64 / self.elapsed.as_secs_f64()
    }
}

/// Sends `pool` over `connections` keep-alive connections, each sending its next push as
/// soon as the previous one is answered, until the pool is used up or `window` has passed.
pub(crate) async fn closed_loop(
    addr: SocketAddr,
    pool: Vec<Push>,
    connections: usize,
    window: Duration,
) -> Result<Throughput> {
    let mut opened = Vec::with_capacity(connections);
    for _ in 0..connections {
        opened.push(Connection::open(addr).await?);
    }
    let pool = Arc::new(pool);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + window;
    let mut workers = JoinSet::new();
    for mut connection in opened {
        let (pool, next) = (pool.clone(), next.clone());
        workers.spawn(async move {
            let mut sent = 0u64;
            while Instant::now() < deadline {
                let Some(push) = pool.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                connection.post(push).await?;
                sent += 1;
            }
            Ok::<_, crate::BoxError>(sent)
        });
    }
    let mut pushes = 0;
    while let Some(joined) = workers.join_next().await {
        pushes += joined??;
    }
    Ok(Throughput {
        pushes,
        elapsed: start.elapsed(),
    })
}

/// When each push of an open-loop run is due: `start + i / rate`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    /// When push 0 is due.
    pub(crate) start: Instant,
    /// Pushes per second.
    pub(crate) rate: f64,
}

impl Schedule {
    /// `rate` pushes per second, the first one `lead` from now.
    pub(crate) fn new(rate: f64, lead: Duration) -> Self {
        Self {
            start: Instant::now() + lead,
            rate,
        }
    }

    /// When push `i` is due.
    pub(crate) fn due(&self, i: usize) -> Instant {
        self.start + Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// Sleeps the thread until push `i` is due (to the OS timer's precision, tens of
    /// microseconds, where tokio's timer has whole milliseconds).
    pub(crate) fn sleep_until(&self, i: usize) {
        std::thread::sleep(self.due(i).saturating_duration_since(Instant::now()));
    }
}

/// What an open-loop run saw.
pub(crate) struct Paced {
    /// How much later than due the latest push was written: all connections were waiting
    /// for answers (a saturated webhook).
    pub(crate) max_lag: Duration,
}

/// Writes `pushes[i]` when the schedule says, whatever the answers take (an open loop: a
/// slow webhook cannot slow the arrivals down), each on a connection not waiting for an
/// answer, of at most `connections`.
///
/// A ticker thread keeps the schedule; the connections live on a runtime and thread of
/// their own. Neither can be held back by the subscribers' readers on the main runtime,
/// which are busy for seconds when the service fans out to thousands of them.
pub(crate) async fn paced(
    addr: SocketAddr,
    pushes: Vec<Push>,
    schedule: Schedule,
    connections: usize,
) -> Result<Paced> {
    paced_acks(addr, pushes, schedule, connections, None).await
}

/// [`paced`], recording into `acks` each push's acknowledgement latency: from when it was
/// due on the schedule (not when a connection was free to write it, so a webhook slow to
/// answer counts in full: no coordinated omission) until its `200 success` was read.
pub(crate) async fn paced_acks(
    addr: SocketAddr,
    pushes: Vec<Push>,
    schedule: Schedule,
    connections: usize,
    acks: Option<Arc<Histogram>>,
) -> Result<Paced> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("pusher".into())
        .spawn(move || {
            let sent = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(crate::BoxError::from)
                .and_then(|runtime| {
                    runtime.block_on(send_paced(addr, pushes, schedule, connections, acks))
                });
            let _ = done.send(sent);
        })?;
    result.await?
}

async fn send_paced(
    addr: SocketAddr,
    pushes: Vec<Push>,
    schedule: Schedule,
    connections: usize,
    acks: Option<Arc<Histogram>>,
) -> Result<Paced> {
    let (idle_tx, mut idle) = tokio::sync::mpsc::channel(connections);
    for _ in 0..connections {
        idle_tx
            .send(Connection::open(addr).await?)
            .await
            .expect("room for every connection");
    }
    let count = pushes.len();
    let (tick, mut ticks) = tokio::sync::mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("push-ticker".into())
        .spawn(move || {
            for i in 0..count {
                schedule.sleep_until(i);
                if tick.send(i).is_err() {
                    return;
                }
            }
        })?;
    let pushes = Arc::new(pushes);
    let mut max_lag = Duration::ZERO;
    let mut in_flight = JoinSet::new();
    while let Some(i) = ticks.recv().await {
        let mut connection = idle.recv().await.expect("connections come back");
        max_lag = max_lag.max(Instant::now().saturating_duration_since(schedule.due(i)));
        let (pushes, idle_tx, acks) = (pushes.clone(), idle_tx.clone(), acks.clone());
        in_flight.spawn(async move {
            let posted = connection.post(&pushes[i]).await;
            if let (Ok(()), Some(acks)) = (&posted, &acks) {
                acks.record(schedule.due(i).elapsed());
            }
            let _ = idle_tx.send(connection).await;
            posted
        });
        while let Some(finished) = in_flight.try_join_next() {
            finished??;
        }
    }
    while let Some(finished) = in_flight.join_next().await {
        finished??;
    }
    Ok(Paced { max_lag })
}
