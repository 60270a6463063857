//! The web console, on the admin listener: the page under `/console/` (its built bundle,
//! `console/dist/`, embedded in the binary at compile time, so the binary still builds
//! with the Rust toolchain alone), gRPC-Web for the page's calls, and — only when the
//! embedded simulator runs — `POST /console/simulate-scan`.
//!
//! gRPC-Web is served same-origin with the page: a `POST /wechat.qr.v1.<Service>/<Method>`
//! reaching the admin listener goes through `tonic_web`'s translation to the very service
//! instances the gRPC port serves (the same fan-out hub, caps, metrics), so the browser
//! needs no CORS and there is no second API. Nothing here widens exposure: the console is
//! exactly as reachable as the admin listener (`WECHAT_QR_ADMIN_ADDR`, loopback by
//! default), and every action passes the same caller check as the gRPC port: with
//! `[[clients]]` configured the page asks for a caller token and sends it on every call,
//! gRPC-Web and `simulate-scan` alike (a scan needs a client allowed `CreateTicket` for
//! the ticket's account).
//!
//! Two guards keep other web pages in the operator's browser out:
//! - the `Host` must be an IP address or `localhost` (a DNS-rebinding page names its own
//!   domain), and an `Origin`, when the browser sends one, must be this very origin;
//! - writes need a non-form content type (`application/grpc-web*`, `application/json`),
//!   so a cross-site request needs a CORS preflight, which this listener never grants.

use std::{convert::Infallible, net::IpAddr, sync::Arc};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{self, HeaderValue},
};
use serde::Deserialize;
use tonic::{codegen::Service, service::Routes};
use tonic_web::GrpcWebService;
use tower_layer::Layer;

use crate::{
    grpc::{Access, ApiError, Guarded},
    simulator::{ScanError, ScanRequest, Simulator},
};

/// The console's path prefix on the admin listener.
pub(crate) const PATH: &str = "/console/";

/// Every package whose services the console may call over gRPC-Web.
const GRPC_PREFIX: &str = "/wechat.qr.v1.";

/// The largest `simulate-scan` request: a ticket and an OpenID.
const MAX_SCAN_REQUEST_BYTES: usize = 4 * 1024;

/// Responses on the admin listener: buffered text for most, a streamed body for gRPC-Web.
pub(crate) type Body = tonic::body::Body;

/// One embedded file of `console/dist/`.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// The built page. `scripts/build-console` writes these files; `./scripts/test` checks
/// they are what the sources under `console/` build to.
const ASSETS: &[Asset] = &[
    Asset {
        path: "/console/",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../console/dist/index.html"),
    },
    Asset {
        path: "/console/app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../console/dist/app.js"),
    },
    Asset {
        path: "/console/app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../console/dist/app.css"),
    },
];

/// The page may load only itself, and show images it made from bytes it fetched.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' blob: data:; \
     style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'none'";

/// The console's routes.
#[derive(Clone)]
pub(crate) struct Console {
    /// gRPC-Web translation in front of the services the gRPC port serves, behind the
    /// same caller check: with `[[clients]]` configured, the console is no way around it.
    grpc_web: GrpcWebService<Guarded<Routes>>,
    /// The embedded simulator, when it runs: the "simulate scan" button's backend.
    simulator: Option<Arc<Simulator>>,
    /// The caller check's client list, read per request (SIGHUP may change it), so the
    /// page knows whether to ask for a token before its first call.
    access: Access,
    /// The served AppIDs, for the page's account picker.
    accounts: Vec<String>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("simulator", &self.simulator.is_some())
            .finish_non_exhaustive()
    }
}

/// What the page asks before it draws: whether to offer "simulate scan", and whether to
/// ask for a caller token up front.
#[derive(Debug, serde::Serialize)]
struct Info {
    simulator: bool,
    auth_required: bool,
    /// The served AppIDs, in configuration order: with several, the page asks which.
    accounts: Vec<String>,
}

/// `POST /console/simulate-scan`.
#[derive(Debug, Deserialize)]
struct SimulateScan {
    ticket: String,
    openid: String,
    #[serde(default)]
    new_follower: bool,
}

impl Console {
    /// The console over `services` (the gRPC services, by name, behind `access`), with the
    /// "simulate scan" endpoint when `simulator` is given.
    pub(crate) fn new(
        services: Guarded<Routes>,
        simulator: Option<Arc<Simulator>>,
        access: Access,
        accounts: Vec<String>,
    ) -> Self {
        Self {
            grpc_web: tonic_web::GrpcWebLayer::new().layer(services),
            simulator,
            access,
            accounts,
        }
    }

    /// Whether `path` is the console's (the page or its gRPC-Web calls).
    pub(crate) fn owns(path: &str) -> bool {
        path == "/console" || path.starts_with(PATH) || path.starts_with(GRPC_PREFIX)
    }

    /// Answers a request whose path [`Console::owns`].
    pub(crate) async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        if let Err(refusal) = same_origin(&request) {
            return text(StatusCode::FORBIDDEN, refusal);
        }
        let path = request.uri().path();
        if path.starts_with(GRPC_PREFIX) {
            let mut grpc_web = self.grpc_web.clone();
            let Ok(()) = std::future::poll_fn(|cx| {
                Service::<Request<Incoming>>::poll_ready(&mut grpc_web, cx)
            })
            .await;
            let Ok(response) = grpc_web.call(request).await;
            return response;
        }
        match (request.method(), path) {
            (&Method::GET | &Method::HEAD, "/console") => Response::builder()
                .status(StatusCode::PERMANENT_REDIRECT)
                .header(header::LOCATION, PATH)
                .body(Body::empty())
                .expect("static response parts are valid"),
            (&Method::GET | &Method::HEAD, "/console/info.json") => json(
                StatusCode::OK,
                &Info {
                    simulator: self.simulator.is_some(),
                    auth_required: !self.access.is_empty(),
                    accounts: self.accounts.clone(),
                },
            ),
            (&Method::POST, "/console/simulate-scan") => match &self.simulator {
                Some(simulator) => simulate_scan(simulator, &self.access, request).await,
                None => text(StatusCode::NOT_FOUND, "not found"),
            },
            (&Method::GET | &Method::HEAD, path) => {
                let path = if path == "/console/index.html" {
                    PATH
                } else {
                    path
                };
                match ASSETS.iter().find(|asset| asset.path == path) {
                    Some(asset) => asset_response(asset),
                    None => text(StatusCode::NOT_FOUND, "not found"),
                }
            }
            _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        }
    }
}

/// Whether the request's `Host` is one no other site can point at this listener by DNS
/// (an IP address or `localhost`); `/metrics` applies it too.
pub(crate) fn local_host(request: &Request<Incoming>) -> bool {
    host_is_local_name(host(request))
}

fn host(request: &Request<Incoming>) -> &str {
    request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
}

/// Refuses requests another site's page could have sent (see the module docs).
fn same_origin(request: &Request<Incoming>) -> Result<(), &'static str> {
    let host = host(request);
    if !host_is_local_name(host) {
        return Err("the console answers only to an IP address or localhost in the Host header");
    }
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let expected = format!("http://{host}");
        if origin.as_bytes() != expected.as_bytes() {
            return Err("cross-origin requests are not accepted");
        }
    }
    Ok(())
}

/// `127.0.0.1:9090`, `[::1]:9090`, `localhost:9090` (the port optional): names no other
/// site can point at this listener by DNS.
fn host_is_local_name(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // An IPv6 literal: `[addr]` or `[addr]:port`; an unclosed bracket is no host.
        Some(bracketed) => match bracketed.split_once(']') {
            Some((name, "")) => name,
            Some((name, port)) if port.starts_with(':') => name,
            _ => return false,
        },
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok()
}

/// The permission a simulated scan needs with `[[clients]]` configured: the method that
/// mints the codes being scanned, for the ticket's account.
const SIMULATE_SCAN_METHOD: &str = "CreateTicket";

async fn simulate_scan(
    simulator: &Simulator,
    access: &Access,
    request: Request<Incoming>,
) -> Response<Body> {
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next() == Some("application/json"));
    if !is_json {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content-type must be application/json",
        );
    }
    let headers = request.headers().clone();
    let body = match Limited::new(request.into_body(), MAX_SCAN_REQUEST_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return text(StatusCode::BAD_REQUEST, "body unreadable or too large"),
    };
    let scan: SimulateScan = match serde_json::from_slice(&body) {
        Ok(scan) => scan,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("bad scan request: {e}")),
    };
    // The account is the ticket's; an unknown ticket is checked against the first served
    // account, so a caller without a token learns nothing about which tickets exist.
    let app_id = simulator
        .ticket_account(&scan.ticket)
        .or_else(|| access.served().first().cloned())
        .unwrap_or_default();
    if let Err(refusal) = access.admit_console(&headers, SIMULATE_SCAN_METHOD, &app_id) {
        let status = match refusal {
            ApiError::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            _ => StatusCode::FORBIDDEN,
        };
        tracing::info!(error = %refusal, "console simulate-scan refused");
        return text(status, refusal.to_string());
    }
    let request = ScanRequest {
        ticket: scan.ticket,
        openid: scan.openid,
        new_follower: scan.new_follower,
        deliveries: None,
    };
    match simulator.scan(&request).await {
        Ok(deliveries) => json(
            StatusCode::OK,
            &serde_json::json!({ "deliveries": deliveries }),
        ),
        Err(e @ ScanError::UnknownTicket) => text(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ ScanError::NoWebhook) => text(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

fn asset_response(asset: &Asset) -> Response<Body> {
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, asset.content_type)
        // A new binary may carry a new page: always revalidate.
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "no-referrer");
    if asset.path == PATH {
        response = response.header(
            "content-security-policy",
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
    }
    response
        .body(full(Bytes::from_static(asset.bytes)))
        .expect("static response parts are valid")
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(full(Bytes::from(
            serde_json::to_vec(value).expect("plain data serializes"),
        )))
        .expect("static response parts are valid")
}

/// A plain-text answer.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(body.into()))
        .expect("static response parts are valid")
}

/// A buffered body as the admin listener's body type.
pub(crate) fn full(bytes: Bytes) -> Body {
    Body::new(Full::new(bytes).map_err(|never: Infallible| match never {}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hosts_only() {
        for host in [
            "127.0.0.1:9090",
            "127.0.0.1",
            "[::1]:9090",
            "localhost:9090",
            "LOCALHOST",
            "10.0.0.7:9090",
        ] {
            assert!(host_is_local_name(host), "{host}");
        }
        for host in ["", "evil.example:9090", "localhost.evil.example", "[::1"] {
            assert!(!host_is_local_name(host), "{host}");
        }
    }
}
