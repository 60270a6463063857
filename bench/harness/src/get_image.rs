//! GetImage of a ticket whose image the service already holds (a cache hit), next to a
//! bare tonic server answering the same `GetImageResponse` with as many bytes: the cost
//! of a gRPC unary call carrying the image, which the service cannot go below.

use std::sync::Arc;

use wechat_qr::pb;

use crate::{
    Outcome, Result, Scale, grpc,
    processes::{Baseline, Service},
    report::{self, Row},
    rpc_load::{self, Call},
};

/// Calls `GetImage` for `ticket` on `client` and checks the size of the answer.
fn call(
    client: pb::qr_service_client::QrServiceClient<tonic::transport::Channel>,
    ticket: String,
    expected_bytes: usize,
) -> Call {
    Arc::new(move |_| {
        let mut client = client.clone();
        let request = pb::GetImageRequest {
            ticket: ticket.clone(),
            ..Default::default()
        };
        Box::pin(async move {
            let image = client.get_image(request).await?.into_inner().image;
            if image.len() != expected_bytes {
                return Err(format!(
                    "GetImage answered {} bytes, expected {expected_bytes}",
                    image.len()
                )
                .into());
            }
            Ok(())
        })
    })
}

/// Runs both targets.
pub(crate) async fn run(scale: &Scale) -> Result<Outcome> {
    let service = Service::start(&[]).await?;
    let mut client = grpc::connect(service.grpc_addr).await?;
    let ticket = client
        .create_ticket(pb::CreateTicketRequest {
            scene: Some(pb::create_ticket_request::Scene::SceneStr("bench".into())),
            expire_seconds: 3_600,
            ..Default::default()
        })
        .await?
        .into_inner()
        .ticket;
    // The first call fetches the image; every measured one is a hit.
    let image = client
        .get_image(pb::GetImageRequest {
            ticket: ticket.clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .image;
    let bytes = image.len();
    let echo = Baseline::start("tonic-echo", &["--image-bytes".into(), bytes.to_string()]).await?;
    let echo_client = grpc::connect(echo.addr).await?;

    let ours = call(client, ticket.clone(), bytes);
    let bare = call(echo_client, ticket, bytes);
    let measured = rpc_load::best_of(
        &[&ours, &bare],
        scale.rounds,
        scale.concurrency,
        scale.window,
    )
    .await?;
    Ok(Outcome {
        rows: vec![Row::throughput(
            format!(
                "GetImage, cache hit ({} B JPEG): calls/s ({} in flight)",
                report::thousands(bytes as u64),
                scale.concurrency
            ),
            measured[0].rate(),
            "bare tonic echo, same bytes",
            measured[1].rate(),
            Some(0.8),
        )],
        notes: Vec::new(),
    })
}
