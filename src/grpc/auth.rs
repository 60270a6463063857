//! Who may call the gRPC API, checked in one place: [`AccessLayer`] wraps the whole gRPC
//! server, so the generated routes and the pre-encoded StreamEvents route alike are
//! behind it. With no `[[clients]]` configured every call passes, as before; with any,
//! each `QrService`, `ChannelStatsService` and `ConsumerGroupService` call must name a client — by
//! `authorization: Bearer <token>`, whose SHA-256 is compared in constant time with every
//! client's `token_sha256`, or by the subject (CN) of its verified TLS client certificate
//! — and that client must be allowed the method and the served account. Health and
//! reflection stay open, so probes and grpcurl's discovery work without credentials. The
//! client list sits behind a lock that [`Access::replace`] swaps on SIGHUP: calls already
//! admitted (open streams included) keep running, new calls see the new list. The one
//! permission the layer cannot see — minting a permanent code, which is in the request
//! body — is checked by the service from the [`Caller`] the layer attaches.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{Arc, RwLock},
    task::{Context, Poll},
};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::{
    Status,
    body::Body,
    codegen::{Service, http},
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};
use tower_layer::Layer;
use tracing::Instrument;

use super::ApiError;
use crate::{config::ClientConfig, metrics::Metrics};

/// The gRPC services whose calls need a client; everything else (health, reflection)
/// stays open.
const GUARDED: &[&str] = &[
    "/wechat.qr.v1.QrService/",
    "/wechat.qr.v1.ChannelStatsService/",
    "/wechat.qr.v1.ConsumerGroupService/",
];

/// Why a client list cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// A client names an account this process does not serve.
    #[error("clients[{index}].accounts: {app_id} is not a served account ({served})")]
    UnknownAccount {
        /// Position of the client in the file.
        index: usize,
        /// The AppID it names.
        app_id: String,
        /// The AppIDs served.
        served: String,
    },
    /// Two clients share a name, token or subject, so neither logs nor checks could tell
    /// them apart.
    #[error("clients[{index}]: {what} is also used by client {other:?}")]
    Duplicate {
        /// Position of the later client.
        index: usize,
        /// Which field repeats.
        what: &'static str,
        /// The earlier client's name.
        other: String,
    },
}

/// A configured caller, ready for checking.
#[derive(Debug)]
struct Client {
    name: Arc<str>,
    token_sha256: Option<[u8; 32]>,
    subject: Option<String>,
    /// RPC names; `None` = all.
    methods: Option<Vec<String>>,
    /// The AppIDs it may act for; `None` = all.
    accounts: Option<Arc<[String]>>,
    permanent: bool,
}

/// The caller a call was admitted for, in the request's extensions.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The client's name from the configuration.
    pub name: Arc<str>,
    /// Whether it may mint permanent codes.
    pub permanent: bool,
    /// The AppIDs it may act for and see events of; `None` = all.
    pub accounts: Option<Arc<[String]>>,
}

impl Caller {
    /// Whether the caller may act for (and see the events of) `app_id`.
    pub fn may_use(&self, app_id: &str) -> bool {
        self.accounts
            .as_ref()
            .is_none_or(|accounts| accounts.iter().any(|a| a == app_id))
    }

    /// The refusal of an account the caller may not use.
    pub fn denied(&self, app_id: &str) -> ApiError {
        ApiError::PermissionDenied {
            client: self.name.to_string(),
            permission: format!("account {app_id}"),
        }
    }
}

/// The current client list, shared by the layer and whoever reloads it.
#[derive(Debug, Clone)]
pub struct Access {
    clients: Arc<RwLock<Arc<Vec<Client>>>>,
    /// The accounts this process serves, which a client's `accounts` must be among.
    app_ids: Arc<[String]>,
    metrics: Arc<Metrics>,
}

impl Access {
    /// Access for `clients` to the accounts `app_ids`.
    pub fn new(
        clients: &[ClientConfig],
        app_ids: &[String],
        metrics: Arc<Metrics>,
    ) -> Result<Self, AccessError> {
        let access = Self {
            clients: Arc::default(),
            app_ids: app_ids.into(),
            metrics,
        };
        access.replace(clients)?;
        Ok(access)
    }

    /// Swaps in a new client list, or refuses it and keeps the current one.
    pub fn replace(&self, clients: &[ClientConfig]) -> Result<(), AccessError> {
        let mut checked: Vec<Client> = Vec::with_capacity(clients.len());
        for (index, config) in clients.iter().enumerate() {
            if let Some(app_id) = config
                .accounts
                .iter()
                .flatten()
                .find(|a| !self.app_ids.contains(a))
            {
                return Err(AccessError::UnknownAccount {
                    index,
                    app_id: app_id.clone(),
                    served: self.app_ids.join(", "),
                });
            }
            let client = Client {
                name: config.name.as_str().into(),
                token_sha256: config.token_sha256.as_deref().map(|hex_digest| {
                    let mut digest = [0u8; 32];
                    hex::decode_to_slice(hex_digest, &mut digest)
                        .expect("token_sha256 is checked to be 64 hex digits when read");
                    digest
                }),
                subject: config.subject.clone(),
                methods: config.methods.clone(),
                accounts: config.accounts.as_deref().map(Arc::from),
                permanent: config.permanent,
            };
            for other in &checked {
                let what = if other.name == client.name {
                    "name"
                } else if other.token_sha256.is_some() && other.token_sha256 == client.token_sha256
                {
                    "token_sha256"
                } else if other.subject.is_some() && other.subject == client.subject {
                    "subject"
                } else {
                    continue;
                };
                return Err(AccessError::Duplicate {
                    index,
                    what,
                    other: other.name.to_string(),
                });
            }
            checked.push(client);
        }
        *self.clients.write().expect("client list lock") = Arc::new(checked);
        Ok(())
    }

    /// The served AppIDs, in configuration order.
    pub(crate) fn served(&self) -> &[String] {
        &self.app_ids
    }

    /// How many clients are configured (0: the API is open).
    pub fn len(&self) -> usize {
        self.current().len()
    }

    /// Whether no client is configured, which leaves the API open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The layer that enforces this access on a gRPC server.
    pub fn layer(&self) -> AccessLayer {
        AccessLayer(self.clone())
    }

    fn current(&self) -> Arc<Vec<Client>> {
        self.clients.read().expect("client list lock").clone()
    }

    /// The caller of `request` and whether it may call `method`.
    fn admit(&self, request: &http::Request<Body>, method: &str) -> Result<Caller, ApiError> {
        let clients = self.current();
        let client = identify(&clients, request.headers(), || certificate_subject(request))?;
        self.allow(client, method)
    }

    /// The console's own actions (simulate-scan): with clients configured, the request
    /// must carry the bearer token of a client allowed `method` and the account `app_id`.
    /// `None` when no client is configured (the API is open, and so is the console).
    pub(crate) fn admit_console(
        &self,
        headers: &http::HeaderMap,
        method: &str,
        app_id: &str,
    ) -> Result<Option<Caller>, ApiError> {
        let clients = self.current();
        if clients.is_empty() {
            return Ok(None);
        }
        let client = identify(&clients, headers, || None)?;
        let caller = self.allow(client, method)?;
        if !caller.may_use(app_id) {
            return Err(caller.denied(app_id));
        }
        Ok(Some(caller))
    }

    /// Whether `client` may call `method` on any served account.
    fn allow(&self, client: &Client, method: &str) -> Result<Caller, ApiError> {
        if client
            .methods
            .as_ref()
            .is_some_and(|methods| !methods.iter().any(|m| m == method))
        {
            return Err(ApiError::PermissionDenied {
                client: client.name.to_string(),
                permission: format!("method {method}"),
            });
        }
        let caller = Caller {
            name: client.name.clone(),
            permanent: client.permanent,
            accounts: client.accounts.clone(),
        };
        // Which account a call acts for is in its body, checked by the service; a client
        // allowed none of the served accounts can do nothing at all.
        if let Some(first) = self.app_ids.first()
            && !self.app_ids.iter().any(|a| caller.may_use(a))
        {
            return Err(caller.denied(first));
        }
        Ok(caller)
    }
}

/// The client a request names, by bearer token or else by certificate subject.
fn identify<'a>(
    clients: &'a [Client],
    headers: &http::HeaderMap,
    subject: impl FnOnce() -> Option<String>,
) -> Result<&'a Client, ApiError> {
    let unauthenticated = |reason: &str| ApiError::Unauthenticated {
        reason: reason.to_owned(),
    };
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthenticated("the authorization header is not `Bearer <token>`"))?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Every client is compared, match or not, so the time taken says nothing about
        // which (or whether one) matched.
        let mut found = None;
        for client in clients {
            if let Some(expected) = &client.token_sha256
                && bool::from(expected.ct_eq(&digest))
            {
                found = Some(client);
            }
        }
        return found.ok_or_else(|| unauthenticated("unknown token"));
    }
    if let Some(subject) = subject() {
        return clients
            .iter()
            .find(|c| c.subject.as_deref() == Some(subject.as_str()))
            .ok_or_else(|| {
                unauthenticated(&format!(
                    "no client has the subject {subject:?} of this certificate"
                ))
            });
    }
    Err(unauthenticated(
        "missing credentials: send `authorization: Bearer <token>`",
    ))
}

/// The common name of the client's TLS certificate, verified against `client_ca`.
fn certificate_subject(request: &http::Request<Body>) -> Option<String> {
    let certs = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()?
        .peer_certs()?;
    let (_, cert) = x509_parser::parse_x509_certificate(certs.first()?.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

/// Enforces [`Access`] on every guarded call of the service it wraps.
#[derive(Debug, Clone)]
pub struct AccessLayer(Access);

impl<S> Layer<S> for AccessLayer {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Guarded<S> {
        Guarded {
            inner,
            access: self.0.clone(),
        }
    }
}

/// A gRPC server behind [`AccessLayer`].
#[derive(Debug, Clone)]
pub struct Guarded<S> {
    inner: S,
    access: Access,
}

impl<S> Service<http::Request<Body>> for Guarded<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path();
        let guarded = GUARDED.iter().any(|prefix| path.starts_with(prefix));
        if !guarded || self.access.is_empty() {
            return Box::pin(self.inner.call(request));
        }
        let method = path.rsplit('/').next().unwrap_or_default().to_owned();
        // The service that was ready is the one called; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let metrics = self.access.metrics.clone();
        match self.access.admit(&request, &method) {
            Ok(caller) => {
                let span = tracing::info_span!("grpc", client = &*caller.name);
                let name = caller.name.clone();
                request.extensions_mut().insert(caller);
                Box::pin(
                    async move {
                        let response = inner.call(request).await?;
                        metrics.observe_client(&name, &method, response_code(&response));
                        Ok(response)
                    }
                    .instrument(span),
                )
            }
            Err(error) => {
                let client = match &error {
                    ApiError::PermissionDenied { client, .. } => client.clone(),
                    _ => String::new(),
                };
                let status = Status::from(error);
                // Refusals are the caller's to cause at will: a few a second are logged.
                if super::failure_budget("access control", status.code()).admit() {
                    let rpc = super::quote(&method);
                    tracing::info!(rpc, client, error = status.message(), "call refused");
                }
                metrics.observe_client(&client, &method, status.code());
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

/// The status of a call as its response headers show it: a failure before the first
/// message is a trailers-only response carrying `grpc-status`; without one the call
/// (or stream) was answered.
fn response_code(response: &http::Response<Body>) -> tonic::Code {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from_i32)
}
