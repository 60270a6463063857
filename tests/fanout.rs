//! Fan-out by index, through real sockets: a waiter among thousands gets exactly its
//! ticket's events; replay joins the live index without gap or duplicate while pushes
//! arrive; a waiter that stopped reading catches up from the log and rejoins; the caps on
//! subscriptions and filters answer RESOURCE_EXHAUSTED and INVALID_ARGUMENT; and the
//! index and counts return to nothing after 10,000 streams cancel.

mod common;

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use common::{TestService, config, exactly, now, push, scan_xml, subscribe};
use tokio::task::JoinSet;
use tonic::{Code, Streaming, transport::Channel};
use wechat_qr::pb::{self, qr_service_client::QrServiceClient};

fn by_ticket(ticket: &str) -> pb::StreamEventsRequest {
    pb::StreamEventsRequest {
        tickets: vec![ticket.to_owned()],
        ..Default::default()
    }
}

/// `count` streams filtered on `ticket(i)`, `per_connection` to a connection.
async fn waiters(
    service: &TestService,
    count: usize,
    per_connection: usize,
    ticket: impl Fn(usize) -> String,
) -> Vec<Streaming<pb::StreamEventsResponse>> {
    let mut clients = Vec::new();
    for _ in 0..count.div_ceil(per_connection) {
        clients.push(service.client().await);
    }
    let mut opening = JoinSet::new();
    for i in 0..count {
        let mut client = clients[i / per_connection].clone();
        let request = by_ticket(&ticket(i));
        opening.spawn(async move {
            let stream = client.stream_events(request).await.unwrap().into_inner();
            (i, stream)
        });
    }
    let mut streams: Vec<_> = opening.join_all().await;
    streams.sort_by_key(|(i, _)| *i);
    streams.into_iter().map(|(_, s)| s).collect()
}

/// Waits until `condition` holds, or fails after `limit` saying what it saw.
async fn eventually(limit: Duration, what: &str, mut condition: impl FnMut() -> (bool, String)) {
    let deadline = Instant::now() + limit;
    loop {
        let (done, seen) = condition();
        if done {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {seen}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Pushes SCANs of `ticket` by `openid(i)` for every `i` in `range`, `parallel` at a time.
async fn pushes(
    service: &TestService,
    ticket: &str,
    range: std::ops::Range<usize>,
    parallel: usize,
    openid: impl Fn(usize) -> String,
) {
    let t = now();
    let xmls: Vec<String> = range
        .map(|i| scan_xml("SCAN", &openid(i), "1", ticket, t))
        .collect();
    for chunk in xmls.chunks(parallel) {
        futures_util::future::join_all(chunk.iter().map(|xml| push(service, xml))).await;
    }
}

#[tokio::test]
async fn a_waiter_gets_exactly_its_tickets_events_among_thousands() {
    let service = TestService::start().await;
    let count = 2_000;
    let mut streams = waiters(&service, count, 500, |i| format!("T{i}")).await;
    let mut everything = subscribe(&service, pb::StreamEventsRequest::default()).await;
    assert_eq!(service.running().subscribers.index_size(), count + 1);

    // Every 7th waiter's ticket is scanned (the 70th's twice), among scans of tickets
    // nobody waits for.
    let t = now();
    let mut scanned = Vec::new();
    for i in (0..count).step_by(7) {
        scanned.push(i);
    }
    scanned.push(70);
    let mut expected = vec![Vec::new(); count];
    for (n, &i) in scanned.iter().enumerate() {
        let openid = format!("o{n}");
        push(
            &service,
            &scan_xml("SCAN", &openid, "1", &format!("T{i}"), t),
        )
        .await;
        expected[i].push(openid);
        push(
            &service,
            &scan_xml("SCAN", &format!("x{n}"), "1", &format!("NOBODY{n}"), t),
        )
        .await;
    }

    let mut readers = JoinSet::new();
    for (i, mut stream) in streams.drain(..).enumerate() {
        let want = std::mem::take(&mut expected[i]);
        readers.spawn(async move {
            let got: Vec<String> = exactly(&mut stream, want.len())
                .await
                .into_iter()
                .map(|e| e.openid)
                .collect();
            assert_eq!(got, want, "waiter {i}");
        });
    }
    while let Some(done) = readers.join_next().await {
        done.unwrap();
    }
    exactly(&mut everything, scanned.len() * 2).await;
}

#[tokio::test]
async fn resume_then_live_across_the_index_seam_under_concurrent_pushes() {
    let service = TestService::start().await;
    let ticket = "SEAM";
    let openid = |i: usize| format!("s{i:05}");
    // A first waiter takes the events so far and remembers its cursor.
    let mut first = subscribe(&service, by_ticket(ticket)).await;
    pushes(&service, ticket, 0..50, 8, openid).await;
    let mut cursor = String::new();
    for _ in 0..50 {
        cursor = first.message().await.unwrap().unwrap().cursor;
    }
    drop(first);

    // Rounds of: pushes keep arriving (for this ticket and others) while a waiter resumes
    // from the last cursor; it must get every event after it once, in order, then live.
    let mut next = 50;
    for round in 0..6 {
        let batch = 150;
        let range = next..next + batch;
        let pushing = pushes(&service, ticket, range.clone(), 4, openid);
        let others = pushes(&service, "OTHER", range.clone(), 4, |i| format!("x{i}"));
        let resuming = async {
            // Different moments of the replay in each round.
            tokio::time::sleep(Duration::from_millis(round * 7)).await;
            service
                .client()
                .await
                .stream_events(pb::StreamEventsRequest {
                    tickets: vec![ticket.to_owned()],
                    resume_after: cursor.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
        };
        let ((), (), mut stream) = tokio::join!(pushing, others, resuming);
        let mut seen = HashSet::new();
        let mut last = cursor.clone();
        for _ in 0..batch {
            let response = tokio::time::timeout(Duration::from_secs(5), stream.message())
                .await
                .unwrap_or_else(|_| panic!("round {round}: gap after {} events", seen.len()))
                .unwrap()
                .unwrap();
            assert!(
                response.cursor > last,
                "round {round}: out of order or duplicate"
            );
            last = response.cursor;
            let event = response.event.unwrap();
            assert_eq!(event.ticket, ticket);
            assert!(seen.insert(event.openid), "round {round}: duplicate");
        }
        let expected: HashSet<String> = range.clone().map(openid).collect();
        assert_eq!(seen, expected, "round {round}");
        // Live after the seam: one more event arrives, nothing else.
        push(
            &service,
            &scan_xml("SCAN", &format!("live{round}"), "1", ticket, now()),
        )
        .await;
        let live = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("the live event arrives")
            .unwrap()
            .unwrap();
        assert_eq!(live.event.unwrap().openid, format!("live{round}"));
        assert!(live.cursor > last);
        exactly(&mut stream, 0).await;
        cursor = live.cursor;
        next += batch;
    }
}

#[tokio::test]
async fn a_waiter_that_stopped_reading_catches_up_from_the_log_and_rejoins() {
    let service = TestService::start().await;
    let ticket = "SLOW";
    // A 16 KiB window: the client cannot absorb the burst, so the service must hold back
    // and the waiter's inbox overflows.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", service.grpc_addr))
        .unwrap()
        .initial_stream_window_size(Some(16 * 1024))
        .initial_connection_window_size(Some(16 * 1024))
        .connect()
        .await
        .unwrap();
    let mut slow = QrServiceClient::new(channel)
        .stream_events(by_ticket(ticket))
        .await
        .unwrap()
        .into_inner();
    let total = 1_200;
    pushes(&service, ticket, 0..total, 8, |i| format!("w{i:05}")).await;

    let mut seen = HashSet::new();
    let mut last = String::new();
    while seen.len() < total {
        let response = tokio::time::timeout(Duration::from_secs(5), slow.message())
            .await
            .unwrap_or_else(|_| panic!("stalled after {} of {total}", seen.len()))
            .unwrap()
            .unwrap();
        assert!(response.cursor > last, "out of order or duplicate");
        last = response.cursor;
        assert!(seen.insert(response.event.unwrap().openid), "duplicate");
    }
    // It overflowed its inbox and read a full batch from the log on its own.
    assert!(
        service.running().metrics.subscriber_lag.get_sample_count() > 0,
        "the waiter caught up from the log"
    );
    // Back in the index: a new event arrives live, and only it.
    push(&service, &scan_xml("SCAN", "after", "1", ticket, now())).await;
    assert_eq!(exactly(&mut slow, 1).await[0].openid, "after");
}

async fn open(
    client: &mut QrServiceClient<Channel>,
    request: pb::StreamEventsRequest,
) -> Result<Streaming<pb::StreamEventsResponse>, tonic::Status> {
    client.stream_events(request).await.map(|r| r.into_inner())
}

#[tokio::test]
async fn subscription_caps_answer_resource_exhausted() {
    let mut cfg = config();
    cfg.max_subscriptions = 5;
    cfg.max_streams_per_connection = 3;
    let service = TestService::start_with(cfg).await;

    let mut a = service.client().await;
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(open(&mut a, by_ticket(&format!("A{i}"))).await.unwrap());
    }
    let status = open(&mut a, by_ticket("A3")).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("this connection") && status.message().contains('3'),
        "{status:?}"
    );
    // Unary calls still fit on the full connection.
    a.get_image(pb::GetImageRequest {
        ticket: "T".into(),
        url_only: true,
        ..Default::default()
    })
    .await
    .unwrap();

    let mut b = service.client().await;
    for _ in 0..2 {
        held.push(
            open(&mut b, pb::StreamEventsRequest::default())
                .await
                .unwrap(),
        );
    }
    let status = open(&mut b, pb::StreamEventsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("service"), "{status:?}");

    // A cancelled stream frees its place.
    held.remove(0);
    let subscribers = service.running().subscribers.clone();
    eventually(Duration::from_secs(5), "a place frees up", || {
        (
            subscribers.count() == 4,
            format!("{} open", subscribers.count()),
        )
    })
    .await;
    held.push(open(&mut a, by_ticket("A4")).await.unwrap());
}

#[tokio::test]
async fn filter_caps_answer_invalid_argument_naming_the_field_and_limit() {
    let mut cfg = config();
    cfg.max_filter_entries = 3;
    cfg.max_filter_entry_bytes = 64;
    let service = TestService::start_with(cfg).await;
    let mut client = service.client().await;

    let too_many = pb::StreamEventsRequest {
        scenes: (0..4).map(|i| i.to_string()).collect(),
        ..Default::default()
    };
    let status = open(&mut client, too_many).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with("scenes: at most 3 values"),
        "{status:?}"
    );

    // 30 characters, 90 bytes: the cap counts bytes.
    let long = pb::StreamEventsRequest {
        tickets: vec!["ok".into(), "码".repeat(30)],
        ..Default::default()
    };
    let status = open(&mut client, long).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("tickets: value 1 is 90 bytes; at most 64 bytes"),
        "{status:?}"
    );

    open(&mut client, by_ticket(&"x".repeat(64))).await.unwrap();
}

#[tokio::test]
async fn the_index_empties_after_10000_streams_cancel() {
    let service = TestService::start().await;
    let subscribers = service.running().subscribers.clone();
    let count = 10_000;
    let streams = waiters(&service, count, 2_500, |i| format!("M{i}")).await;
    assert_eq!(subscribers.count(), count);
    assert_eq!(subscribers.index_size(), count);
    // One of them still works among the rest.
    push(&service, &scan_xml("SCAN", "m", "1", "M9999", now())).await;
    let mut streams = streams;
    let mut last = streams.pop().unwrap();
    assert_eq!(exactly(&mut last, 1).await[0].openid, "m");

    drop(streams);
    drop(last);
    eventually(Duration::from_secs(20), "every stream left", || {
        (
            subscribers.count() == 0 && subscribers.index_size() == 0,
            format!(
                "{} open, {} index entries",
                subscribers.count(),
                subscribers.index_size()
            ),
        )
    })
    .await;
}
