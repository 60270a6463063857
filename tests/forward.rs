//! Sharing the account's one server URL (issue 17), with real parts: the real service,
//! an "existing handler" written here as a small hyper server that checks WeChat's
//! signature itself (and in safe mode decrypts) and answers with passive-reply XML,
//! real HTTP clients, and wechatpy to encrypt pushes and to read and decrypt replies.
//! Pushes that are not QR scans reach the handler verbatim and its answer comes back
//! byte for byte; scans are stored and streamed first; a failing handler gets the
//! documented answers and loses no scan, an answer over 256 KiB is a failed forward, and
//! failures are logged at a bounded pace; reply rules answer scans.

mod common;

use std::{
    collections::HashMap,
    net::SocketAddr,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use common::{
    TOKEN, TestService, config, exactly, now, scan_xml, signed_query, subscribe, wechat_signature,
};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::{Request, Response, body::Incoming, header::CONTENT_TYPE};
use tokio_util::sync::CancellationToken;
use wechat_qr::{
    config::{ForwardFailure, ServeConfig, dev},
    pb,
    protocol::crypto::AesKey,
    secret::Secret,
};

const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

/// What the handler does with the next request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Behaviour {
    /// Verify, then answer with a passive reply.
    Reply,
    /// Verify, then answer `success`.
    Silent,
    /// Answer after this long.
    Slow(Duration),
    /// Answer with this status at once.
    Status(u16),
    /// Answer 200 with a body of this many bytes: with a `Content-Length`, or chunked in
    /// 16 KiB pieces without one.
    Sized { bytes: usize, chunked: bool },
}

/// One request as the handler received it.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    query: String,
    content_type: Option<String>,
    body: Vec<u8>,
}

#[derive(Debug)]
struct HandlerState {
    behaviour: Mutex<Behaviour>,
    received: Mutex<Vec<Received>>,
    /// The bytes of its last reply.
    last_reply: Mutex<Option<Bytes>>,
    key: AesKey,
}

/// The existing handler of an account: verifies pushes like any WeChat back end.
struct Handler {
    addr: SocketAddr,
    state: Arc<HandlerState>,
    /// Stops the accept loop and every open connection.
    stop: CancellationToken,
}

impl Handler {
    async fn start() -> Self {
        let state = Arc::new(HandlerState {
            behaviour: Mutex::new(Behaviour::Reply),
            received: Mutex::default(),
            last_reply: Mutex::default(),
            key: KEY.parse().unwrap(),
        });
        let (addr, stop) = Self::listen("127.0.0.1:0".parse().unwrap(), state.clone()).await;
        Self { addr, state, stop }
    }

    /// Serves `state` on `addr` until the returned token is cancelled.
    async fn listen(addr: SocketAddr, state: Arc<HandlerState>) -> (SocketAddr, CancellationToken) {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let (loop_state, loop_stop) = (state, stop.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => accepted.unwrap().0,
                    () = loop_stop.cancelled() => return,
                };
                let (state, stop) = (loop_state.clone(), loop_stop.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(state, request).await) }
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    tokio::select! {
                        _ = connection => {}
                        () = stop.cancelled() => {}
                    }
                });
            }
        });
        (addr, stop)
    }

    /// Down: nothing listens on its port any more, open connections are closed.
    fn down(&self) {
        self.stop.cancel();
    }

    /// Back up on the same port.
    async fn up(&mut self) {
        self.stop = Self::listen(self.addr, self.state.clone()).await.1;
    }

    fn url(&self) -> String {
        format!("http://{}/wx/handler", self.addr)
    }

    fn behave(&self, behaviour: Behaviour) {
        *self.state.behaviour.lock().unwrap() = behaviour;
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    fn last_reply(&self) -> Bytes {
        self.state
            .last_reply
            .lock()
            .unwrap()
            .clone()
            .expect("the handler replied")
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The text of `<name>` in `xml`, CDATA or not (enough for WeChat's flat XML).
fn field(xml: &str, name: &str) -> String {
    let open = format!("<{name}>");
    let Some(start) = xml.find(&open) else {
        return String::new();
    };
    let rest = &xml[start + open.len()..];
    let value = &rest[..rest.find(&format!("</{name}>")).unwrap()];
    value
        .strip_prefix("<![CDATA[")
        .and_then(|v| v.strip_suffix("]]>"))
        .unwrap_or(value)
        .to_owned()
}

/// The handler's answers: whole (with a `Content-Length`) or streamed.
type AnswerBody = BoxBody<Bytes, std::convert::Infallible>;

fn response(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<AnswerBody> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .body(Full::new(body.into()).boxed())
        .unwrap()
}

/// A 200 answer of `bytes` bytes, chunked (no `Content-Length`) or whole.
fn sized(bytes: usize, chunked: bool) -> Response<AnswerBody> {
    let body = vec![b'a'; bytes];
    if !chunked {
        return response(200, "text/plain", body);
    }
    let pieces: Vec<Result<hyper::body::Frame<Bytes>, std::convert::Infallible>> = body
        .chunks(16 * 1024)
        .map(|piece| Ok(hyper::body::Frame::data(Bytes::copy_from_slice(piece))))
        .collect();
    Response::builder()
        .status(200)
        .header(CONTENT_TYPE, "text/plain")
        .body(StreamBody::new(futures_util::stream::iter(pieces)).boxed())
        .unwrap()
}

async fn handle(state: Arc<HandlerState>, request: Request<Incoming>) -> Response<AnswerBody> {
    let received = Received {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
        query: request.uri().query().unwrap_or_default().to_owned(),
        content_type: request
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned()),
        body: request
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    };
    state.received.lock().unwrap().push(received.clone());
    let behaviour = *state.behaviour.lock().unwrap();
    match behaviour {
        Behaviour::Slow(pause) => tokio::time::sleep(pause).await,
        Behaviour::Status(status) => return response(status, "text/plain", "handler failure"),
        Behaviour::Sized { bytes, chunked } => return sized(bytes, chunked),
        Behaviour::Reply | Behaviour::Silent => {}
    }
    // The handler's own checks, as WeChat's SDKs do them.
    let params: HashMap<String, String> = url::form_urlencoded::parse(received.query.as_bytes())
        .into_owned()
        .collect();
    let param = |name: &str| params.get(name).cloned().unwrap_or_default();
    let (timestamp, nonce) = (param("timestamp"), param("nonce"));
    let body = String::from_utf8(received.body).unwrap();
    let encrypted = param("encrypt_type") == "aes";
    let inner = if encrypted {
        let encrypt = field(&body, "Encrypt");
        if wechat_signature(&[TOKEN, &timestamp, &nonce, &encrypt]) != param("msg_signature") {
            return response(403, "text/plain", "bad msg_signature");
        }
        String::from_utf8(state.key.decrypt(&encrypt, dev::APP_ID).unwrap()).unwrap()
    } else {
        if wechat_signature(&[TOKEN, &timestamp, &nonce]) != param("signature") {
            return response(403, "text/plain", "bad signature");
        }
        body
    };
    if behaviour == Behaviour::Silent {
        return response(200, "text/plain", "success");
    }
    let content = match field(&inner, "MsgType").as_str() {
        "text" => format!("echo: {}", field(&inner, "Content")),
        other => format!(
            "handler saw {other} {} {}",
            field(&inner, "Event"),
            field(&inner, "EventKey")
        ),
    };
    let reply = format!(
        "<xml><ToUserName><![CDATA[{}]]></ToUserName><FromUserName><![CDATA[{}]]></FromUserName>\
         <CreateTime>{}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content></xml>",
        field(&inner, "FromUserName"),
        field(&inner, "ToUserName"),
        now()
    );
    let reply = if encrypted {
        let encrypt = state.key.encrypt(reply.as_bytes(), dev::APP_ID);
        let (timestamp, nonce) = (now().to_string(), "handlernonce");
        format!(
            "<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt><MsgSignature><![CDATA[{}]]></MsgSignature>\
             <TimeStamp>{timestamp}</TimeStamp><Nonce><![CDATA[{nonce}]]></Nonce></xml>",
            wechat_signature(&[TOKEN, &timestamp, nonce, &encrypt])
        )
    } else {
        reply
    };
    let reply = Bytes::from(reply);
    *state.last_reply.lock().unwrap() = Some(reply.clone());
    response(200, "text/xml; charset=utf-8", reply)
}

/// Runs a wechatpy helper script in tests/ (the Python with wechatpy: `WECHAT_QR_PYTHON`,
/// or the virtualenv's that ./scripts/test puts first on the PATH). Missing wechatpy is
/// a failure.
async fn wechatpy(script: &str, args: &[&str], stdin: &str) -> String {
    common::wechatpy::run_script(script, args, stdin).await
}

/// `xml` encrypted by wechatpy as WeChat sends it in safe mode: (query, body).
async fn wechatpy_push(xml: &str) -> (String, String) {
    let ts = now().to_string();
    let nonce = rand::random::<u32>().to_string();
    let sealed: serde_json::Value = serde_json::from_str(
        &wechatpy(
            "wechatpy_crypto.py",
            &["encrypt", TOKEN, KEY, dev::APP_ID, &nonce, &ts],
            xml,
        )
        .await,
    )
    .unwrap();
    let query = format!(
        "signature={}&timestamp={ts}&nonce={nonce}&openid=o&encrypt_type=aes&msg_signature={}",
        wechat_signature(&[TOKEN, &ts, &nonce]),
        sealed["msg_signature"].as_str().unwrap()
    );
    let body = format!(
        "<xml><ToUserName><![CDATA[gh_test]]></ToUserName><Encrypt><![CDATA[{}]]></Encrypt></xml>",
        sealed["encrypt"].as_str().unwrap()
    );
    (query, body)
}

/// A reply as wechatpy reads it; in safe mode decrypted (and its signature checked).
async fn wechatpy_reply(reply: &str, encrypted: bool) -> serde_json::Value {
    let args: &[&str] = if encrypted {
        &[TOKEN, KEY, dev::APP_ID]
    } else {
        &[]
    };
    serde_json::from_str(&wechatpy("wechatpy_reply.py", args, reply).await).unwrap()
}

fn text_xml(openid: &str, content: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>\
         <CreateTime>{}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>\
         <MsgId>{}</MsgId></xml>",
        now(),
        rand::random::<u32>()
    )
}

/// A signed query string for a plaintext push, fresh nonce.
fn fresh_query() -> String {
    signed_query(
        TOKEN,
        &now().to_string(),
        &format!("n{}", rand::random::<u64>()),
    )
}

struct Answer {
    status: u16,
    content_type: Option<String>,
    body: Bytes,
}

/// POSTs a push as WeChat does (its Content-Type included) and reads the whole answer.
async fn post(service: &TestService, query: &str, body: &str) -> Answer {
    let response = service
        .http
        .post(format!("{}?{query}", service.webhook_url))
        .header(CONTENT_TYPE, "text/xml")
        .body(body.to_owned())
        .send()
        .await
        .expect("the webhook answers");
    Answer {
        status: response.status().as_u16(),
        content_type: response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned()),
        body: response.bytes().await.unwrap(),
    }
}

fn forwarding_to(handler: &Handler) -> ServeConfig {
    let mut cfg = config();
    cfg.forward_url = Some(handler.url().parse().unwrap());
    cfg
}

/// `wechat_qr_webhook_forwards_total{app_id,outcome}` of the simulator account from /metrics.
async fn forwards(service: &TestService, outcome: &str) -> u64 {
    let text = service.metrics().await;
    let needle = format!(
        "wechat_qr_webhook_forwards_total{{app_id=\"wx0000000000devsim\",outcome=\"{outcome}\"}} "
    );
    text.lines()
        .find_map(|l| l.strip_prefix(needle.as_str()))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn a_text_message_reaches_the_handler_verbatim_and_its_reply_comes_back_byte_for_byte() {
    let handler = Handler::start().await;
    let service = TestService::start_with(forwarding_to(&handler)).await;

    let query = fresh_query();
    let xml = text_xml("o-text", "hello");
    let answer = post(&service, &query, &xml).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, handler.last_reply(), "relayed byte for byte");
    assert_eq!(
        answer.content_type.as_deref(),
        Some("text/xml; charset=utf-8")
    );
    let reply = wechatpy_reply(std::str::from_utf8(&answer.body).unwrap(), false).await;
    assert_eq!(
        (reply["content"].as_str(), reply["target"].as_str()),
        (Some("echo: hello"), Some("o-text"))
    );
    let received = handler.received();
    assert_eq!(received.len(), 1);
    let got = &received[0];
    assert_eq!(
        (got.method.as_str(), got.path.as_str()),
        ("POST", "/wx/handler")
    );
    assert_eq!(
        got.query, query,
        "the query string arrives as WeChat sent it"
    );
    assert_eq!(got.body, xml.as_bytes());
    assert_eq!(got.content_type.as_deref(), Some("text/xml"));
    assert_eq!(forwards(&service, "relayed").await, 1);

    // The handshake is answered here, with the same token; a forged push is refused here.
    // Neither reaches the handler.
    let (ts, nonce) = (now().to_string(), "hs1");
    let echo = service
        .http
        .get(format!(
            "{}?signature={}&timestamp={ts}&nonce={nonce}&echostr=e-123",
            service.webhook_url,
            wechat_signature(&[TOKEN, &ts, nonce])
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(echo.text().await.unwrap(), "e-123");
    let forged = signed_query("not-the-token", &now().to_string(), "forged");
    assert_eq!(
        post(&service, &forged, &text_xml("o-x", "hi")).await.status,
        403
    );
    assert_eq!(handler.received().len(), 1);
}

#[tokio::test]
async fn a_safe_mode_push_reaches_the_handler_verbatim_and_its_encrypted_reply_decrypts_with_wechatpy()
 {
    let handler = Handler::start().await;
    let mut cfg = forwarding_to(&handler);
    cfg.encoding_aes_key = Some(Secret::new(KEY));
    let service = TestService::start_with(cfg).await;

    let (query, body) = wechatpy_push(&text_xml("o-safe", "secret hello")).await;
    let answer = post(&service, &query, &body).await;
    assert_eq!(answer.status, 200);
    let received = handler.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].query, query);
    assert_eq!(
        received[0].body,
        body.as_bytes(),
        "the envelope as WeChat sent it"
    );
    assert_eq!(
        answer.body,
        handler.last_reply(),
        "the handler's envelope, untouched"
    );
    let reply = wechatpy_reply(std::str::from_utf8(&answer.body).unwrap(), true).await;
    assert_eq!(reply["encrypted"], true);
    assert_eq!(reply["content"], "echo: secret hello");
    assert_eq!(reply["target"], "o-safe");
}

#[tokio::test]
async fn scans_are_streamed_first_and_reach_the_handler_only_with_forward_scans() {
    let handler = Handler::start().await;
    let plain = TestService::start_with(forwarding_to(&handler)).await;
    let mut stream = subscribe(&plain, pb::StreamEventsRequest::default()).await;
    let scan = scan_xml("SCAN", "o-scan", "poster-A", "T1", now());
    let answer = post(&plain, &fresh_query(), &scan).await;
    assert_eq!((answer.status, &answer.body[..]), (200, &b"success"[..]));
    assert_eq!(exactly(&mut stream, 1).await[0].scene, "poster-A");
    assert!(
        handler.received().is_empty(),
        "scans are ours without forward_scans"
    );
    // A follow without a scene and an unfollow are the handler's too (and still streamed).
    let follow = scan_xml("subscribe", "o-follow", "", "", now());
    assert_eq!(
        post(&plain, &fresh_query(), &follow).await.body,
        handler.last_reply()
    );
    assert_eq!(handler.received().len(), 1);

    let mut cfg = forwarding_to(&handler);
    cfg.forward_scans = true;
    let both = TestService::start_with(cfg).await;
    let mut stream = subscribe(&both, pb::StreamEventsRequest::default()).await;
    let scan = scan_xml("subscribe", "o-new", "qrscene_poster-A", "T2", now());
    let query = fresh_query();
    let answer = post(&both, &query, &scan).await;
    assert_eq!(answer.body, handler.last_reply());
    let reply = wechatpy_reply(std::str::from_utf8(&answer.body).unwrap(), false).await;
    assert_eq!(
        reply["content"],
        "handler saw event subscribe qrscene_poster-A"
    );
    let event = exactly(&mut stream, 1).await.remove(0);
    assert_eq!(
        (event.openid.as_str(), event.scene.as_str()),
        ("o-new", "poster-A")
    );
    let received = handler.received();
    assert_eq!(received.len(), 2);
    assert_eq!(
        (received[1].query.as_str(), &received[1].body[..]),
        (query.as_str(), scan.as_bytes())
    );
}

#[tokio::test]
async fn a_failing_handler_gets_the_documented_answers_and_no_scan_is_lost() {
    for failure in [ForwardFailure::Retry, ForwardFailure::Success] {
        let mut handler = Handler::start().await;
        let mut cfg = forwarding_to(&handler);
        cfg.forward_scans = true;
        cfg.forward_failure = failure;
        cfg.forward_timeout_ms = 300;
        let service = TestService::start_with(cfg).await;
        let mut stream = subscribe(&service, pb::StreamEventsRequest::default()).await;
        let expected: (u16, &[u8]) = match failure {
            ForwardFailure::Retry => (502, b"the existing handler failed; WeChat will retry"),
            ForwardFailure::Success => (200, b"success"),
        };
        let mut scans = Vec::new();
        for (i, how) in ["5xx", "slow", "down"].into_iter().enumerate() {
            match how {
                "5xx" => handler.behave(Behaviour::Status(503)),
                "slow" => handler.behave(Behaviour::Slow(Duration::from_secs(2))),
                _ => {
                    handler.behave(Behaviour::Reply);
                    handler.down();
                }
            }
            let text = post(&service, &fresh_query(), &text_xml("o-t", "hi")).await;
            assert_eq!(
                (text.status, &text.body[..]),
                expected,
                "{failure:?}, handler {how}: text"
            );
            let query = fresh_query();
            let scan = scan_xml("SCAN", &format!("o-{how}"), &format!("s{i}"), "T", now());
            let answer = post(&service, &query, &scan).await;
            assert_eq!(
                (answer.status, &answer.body[..]),
                expected,
                "{failure:?}, handler {how}: scan"
            );
            scans.push((query, scan));
        }
        assert_eq!(forwards(&service, "upstream_5xx").await, 2);
        assert_eq!(forwards(&service, "timeout").await, 2);
        assert_eq!(forwards(&service, "unreachable").await, 2);

        // The handler is back; WeChat's retries of the scans are relayed and not stored twice.
        handler.up().await;
        for (query, scan) in &scans {
            let answer = post(&service, query, scan).await;
            assert_eq!(answer.status, 200);
            assert_eq!(answer.body, handler.last_reply());
        }
        let scenes: Vec<String> = exactly(&mut stream, 3)
            .await
            .into_iter()
            .map(|e| e.scene)
            .collect();
        assert_eq!(scenes, ["s0", "s1", "s2"], "{failure:?}: every scan once");
        assert_eq!(forwards(&service, "relayed").await, 3);
    }
}

/// The handler's answer is relayed up to 256 KiB, with a `Content-Length` or chunked; one
/// byte more is a failed forward (WeChat is answered as `forward_failure` says).
#[tokio::test]
async fn an_answer_over_256_kib_is_a_failed_forward() {
    const LIMIT: usize = 256 * 1024;
    let handler = Handler::start().await;
    let service = TestService::start_with(forwarding_to(&handler)).await;
    for chunked in [false, true] {
        handler.behave(Behaviour::Sized {
            bytes: LIMIT,
            chunked,
        });
        let at = post(&service, &fresh_query(), &text_xml("o-big", "hi")).await;
        assert_eq!(at.status, 200, "chunked: {chunked}");
        assert_eq!(at.body.len(), LIMIT, "relayed whole, chunked: {chunked}");
        handler.behave(Behaviour::Sized {
            bytes: LIMIT + 1,
            chunked,
        });
        let over = post(&service, &fresh_query(), &text_xml("o-big", "hi")).await;
        assert_eq!(
            (over.status, &over.body[..]),
            (502, &b"the existing handler failed; WeChat will retry"[..]),
            "chunked: {chunked}"
        );
    }
    assert_eq!(forwards(&service, "relayed").await, 2);
    assert_eq!(forwards(&service, "oversized").await, 2);
}

/// Failed forwards are logged at most 5 a second, the rest counted: 200 pushes to a
/// handler that is down (the real binary, its log read) give a bounded number of lines,
/// every failure in `webhook_forwards_total`, and a summary naming the lines not written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_forwards_are_logged_at_most_five_a_second_and_all_counted() {
    const PUSHES: usize = 200;
    // A port nothing listens on: each forward fails at once, unreachable.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}/wx/handler", closed.local_addr().unwrap());
    drop(closed);
    let data = tempfile::tempdir().unwrap();
    let binary = common::binary::Binary::spawn(common::data_dir::command(
        data.path(),
        &[("WECHAT_QR_FORWARD_URL", nowhere.as_str())],
    ))
    .await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let started = std::time::Instant::now();
    for _ in 0..PUSHES {
        let answer = http
            .post(format!("{}?{}", binary.webhook_url, fresh_query()))
            .header(CONTENT_TYPE, "text/xml")
            .body(text_xml("o-down", "hi"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 502);
    }
    let windows = started.elapsed().as_secs() + 1;
    // Each second's summary comes at its end: wait until the lines written and the ones
    // summarised account for every failure.
    let tally = || {
        let lines = binary.log_lines();
        let about = |l: &&String| l.contains("push forward failed");
        let written = lines
            .iter()
            .filter(about)
            .filter(|l| !l.contains("suppressed"))
            .count();
        let suppressed: usize = lines
            .iter()
            .filter(about)
            .filter_map(|l| {
                l.split("suppressed=")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .sum();
        (written, suppressed)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (written, suppressed) = loop {
        let (written, suppressed) = tally();
        if written + suppressed >= PUSHES || std::time::Instant::now() > deadline {
            break (written, suppressed);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        written + suppressed,
        PUSHES,
        "every failure is written or summarised"
    );
    assert!(
        (1..=5 * windows as usize).contains(&written),
        "{written} lines for {PUSHES} failures over {windows} s"
    );
    let counted = binary
        .metric_total("wechat_qr_webhook_forwards_total")
        .await;
    assert_eq!(counted as usize, PUSHES, "every failure is counted");
    binary.stop().await;
}

/// A service configured by a real configuration file with one account and `replies`.
async fn with_replies(safe: bool, extra: &str) -> (TestService, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wechat-qr.toml");
    let aes = if safe {
        format!("encoding_aes_key = \"{KEY}\"\n")
    } else {
        String::new()
    };
    std::fs::write(
        &path,
        format!(
            r#"
[[accounts]]
app_id = "{}"
app_secret = "not-used-here"
token = "{TOKEN}"
{aes}api_base = "http://127.0.0.1:9"
mp_base = "http://127.0.0.1:9"
{extra}

[[accounts.replies]]
scene = "poster-A"
on = "subscribe"
text = "Welcome {{openid}}! Your coupon for {{scene}}: WELCOME10"

[[accounts.replies]]
scene_prefix = "news-"
on = "any"
title = "Hello from {{scene}}"
description = "Tap to read"
url = "https://shop.example/landing?scene={{scene}}"
pic_url = "https://shop.example/banner.jpg"
"#,
            dev::APP_ID
        ),
    )
    .unwrap();
    let file = wechat_qr::config::FileConfig::load(&path, &[]).expect("the file is valid");
    let mut cfg = config();
    file.apply_accounts(&mut cfg, |_| false).unwrap();
    (TestService::start_with(cfg).await, dir)
}

#[tokio::test]
async fn a_reply_rule_welcomes_a_new_follower_of_poster_a_and_nothing_else() {
    let (service, _dir) = with_replies(false, "").await;
    let mut stream = subscribe(&service, pb::StreamEventsRequest::default()).await;

    let query = fresh_query();
    let scan = scan_xml("subscribe", "o-new", "qrscene_poster-A", "T", now());
    let answer = post(&service, &query, &scan).await;
    assert_eq!(answer.status, 200);
    let reply = wechatpy_reply(std::str::from_utf8(&answer.body).unwrap(), false).await;
    assert_eq!(reply["type"], "text");
    assert_eq!(
        reply["content"],
        "Welcome o-new! Your coupon for poster-A: WELCOME10"
    );
    assert_eq!(
        (reply["target"].as_str(), reply["source"].as_str()),
        (Some("o-new"), Some("gh_test"))
    );
    // WeChat's retry gets the reply again, and no second event.
    let again = post(&service, &query, &scan).await;
    let again = wechatpy_reply(std::str::from_utf8(&again.body).unwrap(), false).await;
    assert_eq!(again["content"], reply["content"]);
    assert_eq!(exactly(&mut stream, 1).await[0].scene, "poster-A");

    // A follower's SCAN of poster-A (the rule is on subscribe), another scene: `success`.
    for scan in [
        scan_xml("SCAN", "o-old", "poster-A", "T", now()),
        scan_xml("subscribe", "o-new2", "qrscene_poster-B", "T", now()),
    ] {
        let answer = post(&service, &fresh_query(), &scan).await;
        assert_eq!((answer.status, &answer.body[..]), (200, &b"success"[..]));
    }

    // A news reply, its URL's placeholder percent-encoded.
    let scan = scan_xml("SCAN", "o-news", "news-7 b", "T", now());
    let reply = post(&service, &fresh_query(), &scan).await;
    let reply = wechatpy_reply(std::str::from_utf8(&reply.body).unwrap(), false).await;
    let item = &reply["fields"]["Articles"]["item"];
    assert_eq!(reply["fields"]["MsgType"], "news");
    assert_eq!(reply["fields"]["ArticleCount"], "1");
    assert_eq!(item["Title"], "Hello from news-7 b");
    assert_eq!(item["Url"], "https://shop.example/landing?scene=news-7%20b");
    assert_eq!(item["PicUrl"], "https://shop.example/banner.jpg");
}

#[tokio::test]
async fn in_safe_mode_the_reply_is_encrypted_and_decrypts_with_wechatpy() {
    let (service, _dir) = with_replies(true, "").await;
    let scan = scan_xml("subscribe", "o-safe", "qrscene_poster-A", "T", now());
    let (query, body) = wechatpy_push(&scan).await;
    let answer = post(&service, &query, &body).await;
    assert_eq!(answer.status, 200);
    let text = std::str::from_utf8(&answer.body).unwrap();
    assert!(
        !text.contains("Welcome"),
        "the reply is not in the clear: {text}"
    );
    let reply = wechatpy_reply(text, true).await;
    assert_eq!(
        reply["content"],
        "Welcome o-safe! Your coupon for poster-A: WELCOME10"
    );
    assert_eq!(reply["target"], "o-safe");
}

#[tokio::test]
async fn with_a_rule_and_forward_scans_the_handlers_reply_wins_and_its_success_leaves_the_rule() {
    let handler = Handler::start().await;
    let extra = format!("forward_url = \"{}\"\nforward_scans = true", handler.url());
    let (service, _dir) = with_replies(false, &extra).await;
    let scan = scan_xml("subscribe", "o-both", "qrscene_poster-A", "T", now());
    let answer = post(&service, &fresh_query(), &scan).await;
    assert_eq!(
        answer.body,
        handler.last_reply(),
        "the handler's reply wins"
    );

    handler.behave(Behaviour::Silent);
    let scan = scan_xml("subscribe", "o-both2", "qrscene_poster-A", "T", now());
    let answer = post(&service, &fresh_query(), &scan).await;
    let reply = wechatpy_reply(std::str::from_utf8(&answer.body).unwrap(), false).await;
    assert_eq!(
        reply["content"],
        "Welcome o-both2! Your coupon for poster-A: WELCOME10"
    );
    assert_eq!(handler.received().len(), 2);
}

async fn check_config(text: &str) -> (bool, String) {
    check_config_with(text, &[]).await
}

async fn check_config_with(text: &str, env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wechat-qr.toml");
    std::fs::write(&path, text).unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_wechat-qr"));
    for (key, _) in std::env::vars() {
        if key.starts_with("WECHAT_") {
            command.env_remove(key);
        }
    }
    let output = command
        .envs(env.iter().copied())
        .arg("check-config")
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), out)
}

#[tokio::test]
async fn check_config_shows_the_sharing_settings_redacted_and_names_bad_keys() {
    let account =
        "[[accounts]]\napp_id = \"wx1\"\napp_secret = \"s3cret-app\"\ntoken = \"tok123\"\n";
    let (ok, out) = check_config(&format!(
        "{account}forward_url = \"https://bob:pa55@handler.example/wx?key=k3y\"\nforward_scans = true\n\
         forward_failure = \"success\"\nforward_timeout_ms = 1500\n\
         [[accounts.replies]]\nscene = \"poster-A\"\non = \"subscribe\"\ntext = \"Hi {{openid}}\"\n"
    ))
    .await;
    assert!(ok, "{out}");
    for shown in [
        "forward_url = \"https://<redacted>:<redacted>@handler.example/wx?key=<redacted>\"",
        "forward_scans = true",
        "forward_failure = \"success\"",
        "forward_timeout_ms = 1500",
        "[[accounts.replies]]\nscene = \"poster-A\"\non = \"subscribe\"\ntext = \"Hi {openid}\"",
    ] {
        assert!(out.contains(shown), "{shown} missing from:\n{out}");
    }
    for secret in ["pa55", "k3y", "bob"] {
        assert!(!out.contains(secret), "{secret} printed:\n{out}");
    }

    for (bad, key) in [
        (
            "forward_failure = \"maybe\"\n",
            "accounts[0].forward_failure: \"maybe\" is not one of retry, success",
        ),
        (
            "forward_timeout_ms = 5000\n",
            "accounts[0].forward_timeout_ms: must be 1 to 4900",
        ),
        (
            "forward_url = \"ftp://x\"\n",
            "accounts[0].forward_url: must be an http:// or https:// URL",
        ),
        (
            "forward_scans = true\n",
            "accounts[0].forward_scans: needs forward_url",
        ),
        (
            "[[accounts.replies]]\nscene = \"a\"\non = \"any\"\ntext = \"x\"\n\
             [[accounts.replies]]\nscene = \"b\"\non = \"sometimes\"\ntext = \"x\"\n",
            "accounts[0].replies[1].on: \"sometimes\" is not one of subscribe, scan, any",
        ),
        (
            "[[accounts.replies]]\nscene = \"a\"\non = \"any\"\ntext = \"Hi {name}\"\n",
            "accounts[0].replies[0].text: unknown placeholder {name}",
        ),
        (
            "[[accounts.replies]]\non = \"any\"\ntext = \"x\"\n",
            "accounts[0].replies[0]: needs scene or scene_prefix",
        ),
    ] {
        let (ok, out) = check_config(&format!("{account}{bad}")).await;
        assert!(!ok && out.contains(key), "{bad}: {out}");
    }
    let (ok, out) = check_config("forward_url = \"http://x\"\n").await;
    assert!(
        !ok && out.contains("forward_url: an account setting"),
        "{out}"
    );

    // One account configured by the environment: the URL is shown redacted too.
    let (ok, out) = check_config_with(
        "retain_events = 5000\n",
        &[(
            "WECHAT_QR_FORWARD_URL",
            "https://bob:pa55@handler.example/wx?key=k3y",
        )],
    )
    .await;
    assert!(ok, "{out}");
    assert!(
        out.contains(
            "forward_url = \"https://<redacted>:<redacted>@handler.example/wx?key=<redacted>\"  # environment"
        ),
        "{out}"
    );
    assert!(!out.contains("pa55") && !out.contains("k3y"), "{out}");
}

#[tokio::test]
async fn a_forward_that_leads_to_another_forwarding_wechat_qr_stops_at_the_first_hop() {
    let handler = Handler::start().await;
    let second = TestService::start_with(forwarding_to(&handler)).await;
    let mut cfg = config();
    cfg.forward_url = Some(second.webhook_url.parse().unwrap());
    let first = TestService::start_with(cfg).await;

    let answer = post(&first, &fresh_query(), &text_xml("o-loop", "hi")).await;
    assert_eq!(
        answer.status, 502,
        "the second answered 508, a failed forward"
    );
    assert_eq!(forwards(&first, "upstream_5xx").await, 1);
    assert!(handler.received().is_empty(), "the push went no further");
    let metrics = second
        .http
        .get(format!("{}/metrics", second.admin_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("wechat_qr_webhook_pushes_total{app_id=\"wx0000000000devsim\",outcome=\"forward_loop\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn each_account_forwards_and_replies_by_its_own_settings() {
    let handler = Handler::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wechat-qr.toml");
    // Two accounts on the simulator: the first hands its other traffic to an existing
    // handler, the second has none but greets the followers of its poster.
    std::fs::write(
        &path,
        format!(
            r#"
[[accounts]]
app_id = "wxforwarding000001"
app_secret = "s1"
token = "{TOKEN}"
forward_url = "{url}"

[[accounts]]
app_id = "wxreplying00000002"
app_secret = "s2"
token = "{TOKEN}"

[[accounts.replies]]
scene = "poster-A"
on = "subscribe"
text = "Welcome {{openid}}"
"#,
            url = handler.url()
        ),
    )
    .unwrap();
    let file = wechat_qr::config::FileConfig::load(&path, &[]).expect("the file is valid");
    let mut cfg = config();
    cfg.simulator = true;
    file.apply_accounts(&mut cfg, |_| false).unwrap();
    let service = TestService::start_with(cfg).await;
    let at = |app_id: &str, query: &str| format!("{}/{app_id}?{query}", service.webhook_url);
    let send = |url: String, body: String| {
        let http = service.http.clone();
        async move {
            let response = http
                .post(url)
                .header(CONTENT_TYPE, "text/xml")
                .body(body)
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };

    let relayed = send(
        at("wxforwarding000001", &fresh_query()),
        text_xml("o-a", "hello"),
    )
    .await;
    assert_eq!(relayed.0, 200);
    assert!(relayed.1.contains("echo: hello"), "{relayed:?}");
    let kept = send(
        at("wxreplying00000002", &fresh_query()),
        text_xml("o-b", "hello"),
    )
    .await;
    assert_eq!(kept, (200, "success".to_owned()), "no handler for this one");
    assert_eq!(handler.received().len(), 1);

    let follow = scan_xml("subscribe", "o-new", "qrscene_poster-A", "T-A", now());
    let greeted = send(at("wxreplying00000002", &fresh_query()), follow.clone()).await;
    assert!(greeted.1.contains("Welcome o-new"), "{greeted:?}");
    let not_greeted = send(at("wxforwarding000001", &fresh_query()), follow).await;
    assert_eq!(
        not_greeted,
        (200, "success".to_owned()),
        "no rule for this one"
    );
    service.stop().await;
}
