//! CreateTicket with a warm access_token, against the simulator: calls/s and p50 through
//! the service, next to the same `qrcode/create` made directly with reqwest against the
//! same simulator (inside the service's process) in the same run — the cost of the
//! upstream call itself, which the service cannot go below.

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};
use wechat_qr::{config::dev, pb};

use crate::{
    Outcome, Result, Scale, grpc,
    processes::Service,
    report::{self, Row},
    rpc_load::{self, Call},
};

/// Lifetime of the minted temporary codes.
const EXPIRE_SECONDS: u32 = 3_600;

/// A temporary code with a distinct scene per call.
fn request(i: u64) -> pb::CreateTicketRequest {
    pb::CreateTicketRequest {
        scene: Some(pb::create_ticket_request::Scene::SceneId(
            (i % u64::from(u32::MAX)) as u32 + 1,
        )),
        expire_seconds: EXPIRE_SECONDS,
        ..Default::default()
    }
}

/// Runs both targets.
pub(crate) async fn run(scale: &Scale) -> Result<Outcome> {
    let service = Service::start(&[]).await?;
    let client = grpc::connect(service.grpc_addr).await?;
    // Warm the token cache: every measured call finds a valid access_token.
    client.clone().create_ticket(request(0)).await?;

    let ours: Call = Arc::new(move |i| {
        let mut client = client.clone();
        Box::pin(async move {
            let minted = client.create_ticket(request(i)).await?.into_inner();
            if minted.ticket.is_empty() {
                return Err("CreateTicket answered no ticket".into());
            }
            Ok(())
        })
    });

    let http = reqwest::Client::builder().no_proxy().build()?;
    let token: Value = http
        .post(format!("{}/cgi-bin/stable_token", service.simulator_url))
        .json(&json!({
            "grant_type": "client_credential",
            "appid": dev::APP_ID,
            "secret": dev::APP_SECRET,
        }))
        .send()
        .await?
        .json()
        .await?;
    let token = token["access_token"]
        .as_str()
        .ok_or("the simulator gave no access_token")?;
    let url = format!(
        "{}/cgi-bin/qrcode/create?access_token={token}",
        service.simulator_url
    );
    let direct: Call = Arc::new(move |i| {
        let (http, url) = (http.clone(), url.clone());
        Box::pin(async move {
            let body = json!({
                "expire_seconds": EXPIRE_SECONDS,
                "action_name": "QR_SCENE",
                "action_info": {"scene": {"scene_id": (i % u64::from(u32::MAX)) + 1}},
            });
            let answer: Value = http.post(&url).json(&body).send().await?.json().await?;
            if answer["ticket"].as_str().is_none() {
                return Err(format!("qrcode/create answered {answer}").into());
            }
            Ok(())
        })
    });

    let measured = rpc_load::best_of(
        &[&ours, &direct],
        scale.rounds,
        scale.concurrency,
        scale.window,
    )
    .await?;
    let (ours, direct) = (&measured[0], &measured[1]);
    let p50 = |m: &rpc_load::Measured| m.latency.quantile(0.5).unwrap_or(Duration::ZERO);
    let mut latency = Row::plain(
        "CreateTicket, warm token, simulator: p50",
        report::duration(p50(ours)),
    );
    latency.baseline = format!(
        "{} (reqwest → qrcode/create)",
        report::duration(p50(direct))
    );
    latency.ratio = report::times(p50(ours).as_secs_f64() / p50(direct).as_secs_f64().max(1e-9));
    Ok(Outcome {
        rows: vec![
            Row::throughput(
                format!(
                    "CreateTicket, warm token, simulator: calls/s ({} in flight)",
                    scale.concurrency
                ),
                ours.rate(),
                "reqwest → qrcode/create",
                direct.rate(),
                Some(0.6),
            ),
            latency,
        ],
        notes: Vec::new(),
    })
}
