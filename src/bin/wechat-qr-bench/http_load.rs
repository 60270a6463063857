//! The HTTP load client, one for every webhook (ours, the bare hyper baseline, wechatpy):
//! hyper HTTP/1.1 connections with keep-alive, each with one push in flight at a time,
//! reconnecting when the server closes (gunicorn's synchronous workers close after every
//! answer). Every answer must be `200 success`; anything else fails the scenario.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
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

use crate::{Result, pushes::Push};

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
            let sender = match &mut self.sender {
                Some(sender) if sender.ready().await.is_ok() => sender,
                _ => {
                    self.reconnect().await?;
                    self.sender.as_mut().expect("just connected")
                }
            };
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
            if status != StatusCode::OK || body.as_ref() != b"success" {
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

/// What an open-loop run saw.
pub(crate) struct Paced {
    /// How late the latest push left against its schedule (a loaded machine or a slow
    /// webhook makes the load client fall behind).
    pub(crate) max_lag: Duration,
}

/// Sends `pushes[i]` at `start + i / rate`, whatever the answers take (an open loop, so a
/// slow webhook cannot slow the arrivals), over `connections` connections. `mark(i)` is
/// called right before push `i` is written.
pub(crate) async fn paced(
    addr: SocketAddr,
    pushes: Vec<Push>,
    rate: f64,
    connections: usize,
    mark: Arc<dyn Fn(usize) + Send + Sync>,
) -> Result<Paced> {
    let mut opened = Vec::with_capacity(connections);
    for _ in 0..connections {
        opened.push(Connection::open(addr).await?);
    }
    let pushes = Arc::new(pushes);
    let start = tokio::time::Instant::now() + Duration::from_millis(10);
    let max_lag = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    for (worker, mut connection) in opened.into_iter().enumerate() {
        let (pushes, mark, max_lag) = (pushes.clone(), mark.clone(), max_lag.clone());
        workers.spawn(async move {
            for i in (worker..pushes.len()).step_by(connections) {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(due).await;
                let lag = tokio::time::Instant::now().saturating_duration_since(due);
                max_lag.fetch_max(lag.as_nanos() as u64, Ordering::Relaxed);
                mark(i);
                connection.post(&pushes[i]).await?;
            }
            Ok::<_, crate::BoxError>(())
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined??;
    }
    Ok(Paced {
        max_lag: Duration::from_nanos(max_lag.load(Ordering::Relaxed)),
    })
}
