//! The `--demo` identity provider and API: a loopback server that speaks the token dialects of
//! every supported provider (EqHub, OKQ8/Azure AD v2, Cube, Nextome, Everactive), validates each
//! request the way the real provider does, serves a canary API that only accepts the tokens it
//! issued, and renders the built-in exporter configuration that points at it.
//!
//! The demo has to fail the way the real services fail, otherwise a new user learns nothing from
//! it: wrong or missing fields get the RFC 6749 section 5.2 error the real provider would send,
//! and one provider in the configuration is deliberately broken.
//!
//! This file owns the server (start/stop, the token store every connection shares) and the one
//! routing table; `dialects.rs` holds the five token endpoints and the clients registered at them,
//! `certificate.rs` the OKQ8 app's certificate credential and Entra ID's check of a client
//! assertion, `api.rs` the canary APIs, `config.rs` the built-in configuration (`demo.toml`).

mod api;
mod certificate;
mod config;
mod dialects;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::web::server::{self as http_server, HttpResponse, respond};
use api::{canary, canary_teknos};
use certificate::CertificateCredential;
use dialects::{
    cube_token, eqhub_token, everactive_token, nextome_token, okq8_token, token_endpoint,
};

/// Issued tokens remembered for the canary API. The demo configuration issues roughly 6 tokens per
/// 5 s, about 4,300 per hour of 1 h tokens, so this holds every live one with room to spare while
/// a misbehaving client still cannot grow the map without bound.
const MAX_TOKENS: usize = 16_384;

/// How many issued tokens between two sweeps for expired ones.
const PRUNE_EVERY: u64 = 256;

const JSON: &str = "application/json; charset=utf-8";

// Paths. They mirror the real services' paths so the demo configuration reads like a real one.
const EQHUB_TOKEN_PATH: &str = "/eqhub-m2m/eqhub-api/v1/token";
const EQHUB_TEKNOS_PREFIX: &str = "/eqhub-m2m/eqhub-api/v1/legacy/Teknos/";
const CUBE_TOKEN_PATH: &str = "/connect/token";
const NEXTOME_TOKEN_PATH: &str = "/apps/auth";
const EVERACTIVE_TOKEN_PATH: &str = "/auth/token";
const OKQ8_CANARY_PATH: &str = "/okq8/api/v1/stations";
const CUBE_CANARY_PATH: &str = "/cube/api/v1/articles";
const NEXTOME_CANARY_PATH: &str = "/nextome/api/v1/venues";
const EVERACTIVE_SENSORS_PATH: &str = "/everactive/ds/v1/eversensors";
const EVERACTIVE_GATEWAYS_PATH: &str = "/everactive/ds/v1/gateways";

/// Which API a token was issued for: a token only opens its own provider's canary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    EqHub,
    Okq8,
    Cube,
    Nextome,
    Everactive,
}

/// The running demo server. Its `Debug` shows the address only: the token store is secret.
pub struct DemoServer {
    addr: SocketAddr,
    // Held for the configuration (the credential's files) and so tests can inspect and seed the
    // token store; the serving task has its own handle.
    state: Arc<State>,
}

impl fmt::Debug for DemoServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemoServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl DemoServer {
    /// Binds 127.0.0.1:0 and serves until `cancel` fires; the serving task is spawned on `tracker`.
    pub async fn start(
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> std::io::Result<DemoServer> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        // RSA key generation takes a moment: off the async workers.
        let certificate =
            tokio::task::spawn_blocking(|| CertificateCredential::create(&std::env::temp_dir()))
                .await
                .map_err(std::io::Error::other)??;
        let state = Arc::new(State::new(addr, certificate));
        let handler_state = Arc::clone(&state);
        tracker.spawn(http_server::serve(listener, cancel, move |request| {
            handle(Arc::clone(&handler_state), request)
        }));
        Ok(DemoServer { addr, state })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The built-in exporter configuration (TOML text) pointing at this server.
    pub fn config_toml(&self) -> String {
        config::render(self.addr, &self.state.certificate.files)
    }
}

/// Shared by every connection: the issued tokens and what makes new ones unpredictable.
struct State {
    tokens: Mutex<HashMap<String, Issued>>,
    counter: AtomicU64,
    /// Tokens remembered so far, to prune expired ones every `PRUNE_EVERY` inserts.
    inserts: AtomicU64,
    /// SipHash keys drawn from the OS at start-up: without them the next token cannot be guessed
    /// from the counter and the clock.
    keys: RandomState,
    /// `iss` of the Nextome JWTs.
    issuer: String,
    /// The OKQ8 tenant's token URL: the `aud` its client assertions must carry.
    okq8_token_url: String,
    /// The certificate credential registered for the OKQ8 certificate app.
    certificate: CertificateCredential,
}

#[derive(Clone, Copy)]
struct Issued {
    api: Api,
    expires: Instant,
}

impl State {
    fn new(addr: SocketAddr, certificate: CertificateCredential) -> State {
        State {
            okq8_token_url: format!("http://{addr}/{}/oauth2/v2.0/token", dialects::OKQ8_TENANT),
            certificate,
            tokens: Mutex::new(HashMap::new()),
            counter: AtomicU64::new(0),
            inserts: AtomicU64::new(0),
            keys: RandomState::new(),
            issuer: format!("http://{addr}{NEXTOME_TOKEN_PATH}"),
        }
    }

    /// 256 bits, base64url: four SipHash outputs over (counter, time, lane) with secret keys.
    fn random_string(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let nanos = unix_now().as_nanos();
        let mut bytes = [0u8; 32];
        for (lane, chunk) in bytes.chunks_exact_mut(8).enumerate() {
            let word = self.keys.hash_one((n, nanos, lane));
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn issue_opaque(&self, api: Api, lifetime: Duration) -> String {
        let token = self.random_string();
        self.remember(token.clone(), api, lifetime);
        token
    }

    /// A Cognito-shaped but unsigned JWT (`alg: none`, empty signature): the exporter decodes the
    /// `exp` claim without verifying, which is the point of this dialect.
    fn issue_jwt(&self, api: Api, subject: &str, lifetime: Duration) -> String {
        let now = unix_now().as_secs();
        let header = json!({"alg": "none", "typ": "JWT"});
        let claims = json!({
            "sub": subject,
            "client_id": subject,
            "iss": self.issuer,
            "token_use": "access",
            "iat": now,
            "exp": now + lifetime.as_secs(),
            "jti": self.random_string(),
        });
        let token = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        self.remember(token.clone(), api, lifetime);
        token
    }

    fn remember(&self, token: String, api: Api, lifetime: Duration) {
        let now = Instant::now();
        let expires = now + lifetime;
        let inserts = self.inserts.fetch_add(1, Ordering::Relaxed) + 1;
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        // Pruning in batches keeps dead tokens from piling up without a full scan per token.
        if inserts % PRUNE_EVERY == 0 || tokens.len() >= MAX_TOKENS {
            tokens.retain(|_, issued| issued.expires > now);
        }
        if tokens.len() >= MAX_TOKENS {
            // Still full of live tokens: forget the eighth closest to expiry, which well-behaved
            // clients have replaced already. Evicting in bulk means a flood of token requests
            // costs one scan per MAX_TOKENS / 8 tokens, not one per token.
            let mut expiries: Vec<Instant> = tokens.values().map(|issued| issued.expires).collect();
            let (_, threshold, _) = expiries.select_nth_unstable(MAX_TOKENS / 8);
            let threshold = *threshold;
            tokens.retain(|_, issued| issued.expires > threshold);
        }
        tokens.insert(token, Issued { api, expires });
    }

    /// Whether `token` was issued for `api` and has not expired.
    fn accepts(&self, token: &str, api: Api) -> bool {
        let tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        tokens
            .get(token)
            .is_some_and(|issued| issued.api == api && issued.expires > Instant::now())
    }
}

fn unix_now() -> Duration {
    // A clock before 1970 is broken; 0 keeps the demo running rather than panicking.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

async fn handle(state: Arc<State>, request: Request<Incoming>) -> HttpResponse {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = route(&state, request).await;
    // Only method, path and status: bodies and headers carry secrets and tokens.
    tracing::debug!(%method, %path, status = response.status().as_u16(), "demo request");
    response
}

async fn route(state: &State, request: Request<Incoming>) -> HttpResponse {
    let path = request.uri().path();
    if let Some(tenant) = azure_tenant(path) {
        let tenant = tenant.to_owned();
        return token_endpoint(request, |headers, body| {
            okq8_token(state, &tenant, headers, body)
        })
        .await;
    }
    match path {
        EQHUB_TOKEN_PATH => {
            token_endpoint(request, |headers, body| eqhub_token(state, headers, body)).await
        }
        CUBE_TOKEN_PATH => {
            token_endpoint(request, |headers, body| cube_token(state, headers, body)).await
        }
        NEXTOME_TOKEN_PATH => {
            token_endpoint(request, |headers, body| nextome_token(state, headers, body)).await
        }
        EVERACTIVE_TOKEN_PATH => {
            token_endpoint(request, |headers, body| {
                everactive_token(state, headers, body)
            })
            .await
        }
        OKQ8_CANARY_PATH => canary(state, &request, Api::Okq8, || {
            json!({"stations": [
                {"id": "demo-1", "name": "OKQ8 Demo Station Nord", "open": true},
                {"id": "demo-2", "name": "OKQ8 Demo Station Syd", "open": false},
            ]})
        }),
        CUBE_CANARY_PATH => canary(
            state,
            &request,
            Api::Cube,
            || json!({"articles": [{"articleNumber": "DEMO-100", "description": "Demo article"}]}),
        ),
        NEXTOME_CANARY_PATH => canary(
            state,
            &request,
            Api::Nextome,
            || json!([{"id": 1, "name": "Demo venue", "floors": 2}]),
        ),
        EVERACTIVE_SENSORS_PATH => canary(state, &request, Api::Everactive, || {
            json!({"data": [{"macAddress": "00:00:5e:00:53:01", "type": "demo"}],
                   "paginationInfo": {"page": 1, "pageSize": 50, "totalItems": 1}})
        }),
        EVERACTIVE_GATEWAYS_PATH => canary(state, &request, Api::Everactive, || {
            json!({"data": [{"serialNumber": "DEMO-GW-1", "online": true}],
                   "paginationInfo": {"page": 1, "pageSize": 50, "totalItems": 1}})
        }),
        _ => match path.strip_prefix(EQHUB_TEKNOS_PREFIX) {
            Some(id) => {
                let id = id.to_owned();
                canary_teknos(state, &request, &id)
            }
            None => json_response(
                StatusCode::NOT_FOUND,
                &json!({"error": "not_found", "error_description": "no such demo endpoint"}),
            ),
        },
    }
}

/// `/{tenant}/oauth2/v2.0/token` -> `tenant`.
fn azure_tenant(path: &str) -> Option<&str> {
    let tenant = path.strip_prefix('/')?.strip_suffix("/oauth2/v2.0/token")?;
    (!tenant.is_empty() && !tenant.contains('/')).then_some(tenant)
}

fn json_response(status: StatusCode, body: &Value) -> HttpResponse {
    respond(status, JSON, body.to_string())
}

fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let mut response = json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &json!({"error": "method_not_allowed", "error_description": format!("use {allow}")}),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}
