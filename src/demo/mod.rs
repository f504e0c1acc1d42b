//! The `--demo` identity provider and API: a loopback server that speaks the token dialects of
//! every supported provider (EqHub, OKQ8/Azure AD v2, Cube, Nextome, Everactive), validates each
//! request the way the real provider does, serves a canary API that only accepts the tokens it
//! issued, and renders the built-in exporter configuration that points at it.
//!
//! The demo has to fail the way the real services fail, otherwise a new user learns nothing from
//! it: wrong or missing fields get the RFC 6749 section 5.2 error the real provider would send,
//! and one provider in the configuration is deliberately broken.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http_server::{self, HttpResponse, respond};

/// Token request bodies are a few hundred bytes; anything near this is not a token request.
const MAX_BODY_BYTES: usize = 64 * 1024;

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

// Demo-only values: they exist nowhere but in this file, and the server below checks exactly
// these, so the generated configuration and the server cannot drift apart.
const OKQ8_TENANT: &str = "okq8-demo.onmicrosoft.com";
const OKQ8_RESOURCE: &str = "api://apim-okq8-demo-api";
/// The secret the broken `okq8-rotated-secret` provider still uses after "rotation".
const OKQ8_ROTATED_AWAY_SECRET: &str = "okq8-demo-secret-before-rotation";
const CUBE_TENANT: &str = "cube-demo";
const CUBE_SCOPE: &str = "profile";
const CUBE_RESOURCE: &str = "connectapi";
const EQHUB_TEKNO: &str = "1234567";
const EVERACTIVE_USERNAME: &str = "demo.operator@example.com";
const EVERACTIVE_PASSWORD: &str = "demo operator password";

/// A client registered at one of the demo token endpoints.
#[derive(Clone, Copy)]
struct Registration {
    client_id: &'static str,
    secret: &'static str,
    /// Accepts credentials in the form body (`client_secret_post`).
    post: bool,
    /// Accepts credentials in an HTTP Basic header (`client_secret_basic`).
    basic: bool,
    grants: &'static [&'static str],
}

const EQHUB_CLIENT: Registration = Registration {
    client_id: "eqhub-demo-client",
    secret: "eqhub-demo-secret",
    post: true,
    basic: false,
    grants: &["client_credentials"],
};
const OKQ8_CLIENT: Registration = Registration {
    client_id: "okq8-demo-client",
    secret: "okq8-demo-secret",
    post: true,
    basic: true,
    grants: &["client_credentials"],
};
const CUBE_CLIENT: Registration = Registration {
    client_id: "cube-demo-client",
    secret: "cube-demo-secret",
    post: true,
    basic: true,
    grants: &["client_credentials"],
};
const NEXTOME_CLIENT: Registration = Registration {
    client_id: "nextome-demo-client-id",
    secret: "nextome-demo-client-secret",
    post: false,
    basic: false,
    grants: &[],
};
/// Registered for Basic only, with a secret holding every character RFC 6749 2.3.1 makes a client
/// form-encode before base64: an exporter that skips the encoding gets `invalid_client`.
const EVERACTIVE_CLIENT: Registration = Registration {
    client_id: "everactive-demo-client",
    secret: "everactive demo+secret:/%",
    post: false,
    basic: true,
    grants: &["client_credentials"],
};
const EVERACTIVE_PASSWORD_CLIENT: Registration = Registration {
    client_id: "everactive-insights-demo",
    secret: "everactive-insights-demo-secret",
    post: true,
    basic: true,
    grants: &["password"],
};

/// Which API a token was issued for: a token only opens its own provider's canary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    EqHub,
    Okq8,
    Cube,
    Nextome,
    Everactive,
}

/// Lifetimes as the real providers document them.
const AZURE_LIFETIME: Duration = Duration::from_secs(3599);
const CUBE_LIFETIME: Duration = Duration::from_secs(86_400);
const ONE_HOUR: Duration = Duration::from_secs(3600);

/// The running demo server. Its `Debug` shows the address only: the token store is secret.
pub struct DemoServer {
    addr: SocketAddr,
    // Held so tests can inspect and seed the token store; the serving task has its own handle.
    #[cfg_attr(not(test), allow(dead_code))]
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
        let state = Arc::new(State::new(addr));
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
        demo_config(self.addr)
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
}

#[derive(Clone, Copy)]
struct Issued {
    api: Api,
    expires: Instant,
}

impl State {
    fn new(addr: SocketAddr) -> State {
        State {
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

// ---------------------------------------------------------------------------------------------
// Token endpoints
// ---------------------------------------------------------------------------------------------

/// Method check and body read shared by every token endpoint, then the dialect's own validation.
async fn token_endpoint<F>(request: Request<Incoming>, dialect: F) -> HttpResponse
where
    F: FnOnce(&HeaderMap, &[u8]) -> Result<HttpResponse, TokenError>,
{
    if request.method() != Method::POST {
        return method_not_allowed("POST");
    }
    let (parts, body) = request.into_parts();
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(error) => return error.render(),
    };
    match dialect(&parts.headers, &body) {
        Ok(response) => response,
        Err(error) => error.render(),
    }
}

async fn read_body(body: Incoming) -> Result<Bytes, TokenError> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(TokenError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            ..TokenError::invalid_request("request body too large")
        }),
        Err(_) => Err(TokenError::invalid_request(
            "could not read the request body",
        )),
    }
}

/// EqHub: form, `client_credentials`, `client_secret_post`. Its gateway fronts an Azure AD v1
/// style endpoint, which sends `expires_in` as a string: the demo does too, so the exporter's
/// string path gets exercised.
fn eqhub_token(
    state: &State,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<HttpResponse, TokenError> {
    let form = Form::parse(headers, body, Dialect::Rfc)?;
    require_grant(&form, &["client_credentials"], Dialect::Rfc)?;
    authenticate(headers, &form, &[EQHUB_CLIENT], Dialect::Rfc)?;
    let token = state.issue_opaque(Api::EqHub, AZURE_LIFETIME);
    let now = unix_now().as_secs();
    let lifetime = AZURE_LIFETIME.as_secs();
    Ok(token_response(&json!({
        "token_type": "Bearer",
        "expires_in": lifetime.to_string(),
        "ext_expires_in": lifetime.to_string(),
        "expires_on": (now + lifetime).to_string(),
        "not_before": now.to_string(),
        "access_token": token,
    })))
}

/// OKQ8: Azure AD v2 `client_credentials`, one `api://<resource>/.default` scope, AADSTS errors.
fn okq8_token(
    state: &State,
    tenant: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<HttpResponse, TokenError> {
    let azure = Dialect::Azure;
    if tenant != OKQ8_TENANT {
        return Err(TokenError::invalid_request(
            "AADSTS90002: Tenant not found. Check to make sure you have the correct tenant ID.",
        )
        .code(90002)
        .in_dialect(azure));
    }
    let form = Form::parse(headers, body, azure)?;
    require_grant(&form, &["client_credentials"], azure)?;
    authenticate(headers, &form, &[OKQ8_CLIENT], azure)?;
    let scope = form.require("scope", azure)?;
    let Some(resource) = scope.strip_suffix("/.default").filter(|r| !r.contains(' ')) else {
        return Err(TokenError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "AADSTS1002012: The provided value for scope is not valid. Client credential flows \
             must have a scope value with /.default suffixed to the resource identifier.",
        )
        .code(1_002_012)
        .in_dialect(azure));
    };
    if resource != OKQ8_RESOURCE {
        return Err(TokenError::new(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            "AADSTS500011: The resource principal was not found in the tenant.",
        )
        .code(500_011)
        .in_dialect(azure));
    }
    let token = state.issue_opaque(Api::Okq8, AZURE_LIFETIME);
    Ok(token_response(&json!({
        "token_type": "Bearer",
        "expires_in": AZURE_LIFETIME.as_secs(),
        "ext_expires_in": AZURE_LIFETIME.as_secs(),
        "access_token": token,
    })))
}

/// Cube: IdentityServer with `scope=profile`, `resource=connectapi` (RFC 8707) and the tenant in
/// `acr_values=tenant:<name>`; 24 h tokens.
fn cube_token(state: &State, headers: &HeaderMap, body: &[u8]) -> Result<HttpResponse, TokenError> {
    let rfc = Dialect::Rfc;
    let form = Form::parse(headers, body, rfc)?;
    require_grant(&form, &["client_credentials"], rfc)?;
    authenticate(headers, &form, &[CUBE_CLIENT], rfc)?;
    let scope = form.require("scope", rfc)?;
    if scope.split(' ').any(|s| s != CUBE_SCOPE) {
        return Err(TokenError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "only the scope 'profile' is allowed for this client",
        ));
    }
    let resource = form.require("resource", rfc)?;
    if resource != CUBE_RESOURCE {
        return Err(TokenError::new(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            "the requested resource is not allowed for this client",
        ));
    }
    let acr_values = form.require("acr_values", rfc)?;
    let tenant = acr_values
        .split(' ')
        .find_map(|value| value.strip_prefix("tenant:"));
    match tenant {
        Some(CUBE_TENANT) => {}
        Some(_) => return Err(TokenError::invalid_request("unknown tenant in acr_values")),
        None => {
            return Err(TokenError::invalid_request(
                "acr_values must contain tenant:<name>",
            ));
        }
    }
    let token = state.issue_opaque(Api::Cube, CUBE_LIFETIME);
    Ok(token_response(&json!({
        "access_token": token,
        "expires_in": CUBE_LIFETIME.as_secs(),
        "token_type": "Bearer",
        "scope": CUBE_SCOPE,
    })))
}

/// Nextome: a JSON body `{"clientId", "clientSecret"}`; the reply carries only `accessToken`, a
/// JWT whose `exp` is the sole source of its lifetime.
fn nextome_token(
    state: &State,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<HttpResponse, TokenError> {
    if !content_type_is(headers, "application/json") {
        return Err(TokenError::invalid_request(
            "Content-Type must be application/json",
        ));
    }
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return Err(TokenError::invalid_request(
            "the body must be a JSON object with clientId and clientSecret",
        ));
    };
    let field = |name: &str| match fields.get(name) {
        Some(Value::String(value)) if !value.is_empty() => Ok(value.as_str()),
        Some(_) => Err(TokenError::invalid_request(format!(
            "'{name}' must be a non-empty string"
        ))),
        None => Err(TokenError::invalid_request(format!(
            "missing required field '{name}'"
        ))),
    };
    let client_id = field("clientId")?;
    let client_secret = field("clientSecret")?;
    if client_id != NEXTOME_CLIENT.client_id
        || !constant_time_eq(client_secret, NEXTOME_CLIENT.secret)
    {
        return Err(TokenError::invalid_client(
            "invalid clientId or clientSecret",
        ));
    }
    let token = state.issue_jwt(Api::Nextome, client_id, ONE_HOUR);
    Ok(token_response(&json!({"accessToken": token})))
}

/// Everactive: one endpoint, two grants. The integration client uses `client_credentials` with
/// HTTP Basic only; the Insights-style client uses the `password` grant.
fn everactive_token(
    state: &State,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<HttpResponse, TokenError> {
    let rfc = Dialect::Rfc;
    let form = Form::parse(headers, body, rfc)?;
    let grant = require_grant(&form, &["client_credentials", "password"], rfc)?;
    let client = authenticate(
        headers,
        &form,
        &[EVERACTIVE_CLIENT, EVERACTIVE_PASSWORD_CLIENT],
        rfc,
    )?;
    if !client.grants.contains(&grant) {
        return Err(TokenError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "the client is not allowed to use this grant type",
        ));
    }
    if grant == "password" {
        let username = form.require("username", rfc)?;
        let password = form.require("password", rfc)?;
        if username != EVERACTIVE_USERNAME || !constant_time_eq(password, EVERACTIVE_PASSWORD) {
            return Err(TokenError::new(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "invalid username or password",
            ));
        }
    }
    let token = state.issue_opaque(Api::Everactive, ONE_HOUR);
    Ok(token_response(&json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": ONE_HOUR.as_secs(),
    })))
}

/// `grant_type` present and one of `supported`.
fn require_grant<'a>(
    form: &'a Form,
    supported: &[&str],
    dialect: Dialect,
) -> Result<&'a str, TokenError> {
    let grant = form.require("grant_type", dialect)?;
    if supported.contains(&grant) {
        return Ok(grant);
    }
    Err(TokenError::new(
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
        match dialect {
            Dialect::Azure => "AADSTS70003: The app requested an unsupported grant type.",
            Dialect::Rfc => "the grant type is not supported by this server",
        },
    )
    .code(70003)
    .in_dialect(dialect))
}

/// RFC 6749 2.3.1 client authentication against the clients registered at one endpoint.
fn authenticate(
    headers: &HeaderMap,
    form: &Form,
    clients: &[Registration],
    dialect: Dialect,
) -> Result<Registration, TokenError> {
    let basic = basic_credentials(headers)?;
    let body_id = form.get("client_id");
    let body_secret = form.get("client_secret");
    let (client_id, secret, via_basic) = match &basic {
        Some((id, secret)) => {
            // RFC 6749 2.3: one authentication method per request.
            if body_secret.is_some() {
                return Err(TokenError::invalid_request(
                    "the client used more than one authentication method",
                )
                .in_dialect(dialect));
            }
            if body_id.is_some_and(|body_id| body_id != id) {
                return Err(TokenError::invalid_request(
                    "client_id in the body differs from the Basic credentials",
                )
                .in_dialect(dialect));
            }
            (id.as_str(), Some(secret.as_str()), true)
        }
        None => match body_id {
            Some(id) => (id, body_secret, false),
            None if dialect == Dialect::Azure => {
                return Err(TokenError::invalid_request(
                    "AADSTS900144: The request body must contain the following parameter: \
                     'client_id'.",
                )
                .code(900_144)
                .in_dialect(dialect));
            }
            None => {
                return Err(
                    TokenError::invalid_client("client authentication is required").basic(),
                );
            }
        },
    };
    let challenge = |error: TokenError| if via_basic { error.basic() } else { error };
    let Some(client) = clients.iter().find(|c| c.client_id == client_id) else {
        if dialect == Dialect::Azure {
            return Err(TokenError::new(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "AADSTS700016: Application was not found in the directory.",
            )
            .code(700_016)
            .in_dialect(dialect));
        }
        return Err(challenge(TokenError::invalid_client("unknown client")));
    };
    if via_basic && !client.basic || !via_basic && !client.post {
        let registered = if client.basic {
            "client_secret_basic"
        } else {
            "client_secret_post"
        };
        return Err(challenge(TokenError::invalid_client(format!(
            "this client must authenticate with {registered}"
        ))));
    }
    let Some(secret) = secret else {
        return Err(TokenError::invalid_client(match dialect {
            Dialect::Azure => {
                "AADSTS7000218: The request body must contain the following parameter: \
                 'client_assertion' or 'client_secret'."
            }
            Dialect::Rfc => "client_secret is required",
        })
        .code(7_000_218)
        .in_dialect(dialect));
    };
    if !constant_time_eq(secret, client.secret) {
        return Err(challenge(
            TokenError::invalid_client(match dialect {
                Dialect::Azure => {
                    "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent \
                     in the request is the client secret value, not the client secret ID."
                }
                Dialect::Rfc => "invalid client credentials",
            })
            .code(7_000_215)
            .in_dialect(dialect),
        ));
    }
    Ok(*client)
}

/// `Ok(None)` without a Basic header; an error for a Basic header that does not decode.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, TokenError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or_default();
    let is_basic = value
        .split_once(' ')
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"));
    if !is_basic {
        return Ok(None);
    }
    decode_basic(value)
        .map(Some)
        .ok_or_else(|| TokenError::invalid_client("malformed Basic credentials").basic())
}

/// Decodes `Basic base64(urlencode(id) ":" urlencode(secret))` per RFC 6749 2.3.1.
fn decode_basic(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    // The id is form-encoded, so the first ':' is the separator.
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

/// `application/x-www-form-urlencoded` decoding of one value; `None` on a broken `%` escape or
/// invalid UTF-8 rather than guessing.
fn form_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = value.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Compares without an early exit, so response timing does not reveal how much of a guessed
/// secret was right.
fn constant_time_eq(given: &str, expected: &str) -> bool {
    let (given, expected) = (given.as_bytes(), expected.as_bytes());
    let mut diff = u8::from(given.len() != expected.len());
    for (i, byte) in expected.iter().enumerate() {
        diff |= byte ^ given.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// A token request's form body, per RFC 6749 3.2 and 3.1: repeated parameters are an error,
/// empty ones count as omitted.
struct Form {
    fields: HashMap<String, String>,
}

impl Form {
    fn parse(headers: &HeaderMap, body: &[u8], dialect: Dialect) -> Result<Form, TokenError> {
        if !content_type_is(headers, "application/x-www-form-urlencoded") {
            let description = match dialect {
                Dialect::Azure => {
                    "AADSTS900144: The request body must contain the following parameter: \
                     'grant_type'."
                }
                Dialect::Rfc => "Content-Type must be application/x-www-form-urlencoded",
            };
            return Err(TokenError::invalid_request(description)
                .code(900_144)
                .in_dialect(dialect));
        }
        let mut fields = HashMap::new();
        for (name, value) in url::form_urlencoded::parse(body) {
            if value.is_empty() {
                continue;
            }
            if fields
                .insert(name.to_string(), value.into_owned())
                .is_some()
            {
                return Err(TokenError::invalid_request(format!(
                    "the parameter '{name}' was sent more than once"
                ))
                .in_dialect(dialect));
            }
        }
        Ok(Form { fields })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    fn require(&self, name: &str, dialect: Dialect) -> Result<&str, TokenError> {
        self.get(name).ok_or_else(|| {
            let description = match dialect {
                Dialect::Azure => format!(
                    "AADSTS900144: The request body must contain the following parameter: \
                     '{name}'."
                ),
                Dialect::Rfc => format!("missing required parameter '{name}'"),
            };
            TokenError::invalid_request(description)
                .code(900_144)
                .in_dialect(dialect)
        })
    }
}

fn content_type_is(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(expected))
}

/// How an error reply is dressed: plain RFC 6749 5.2, or Azure AD's with `error_codes` and ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    Rfc,
    Azure,
}

/// An RFC 6749 5.2 error reply. Descriptions are fixed texts: they never echo what the client sent.
#[derive(Debug)]
struct TokenError {
    status: StatusCode,
    error: &'static str,
    description: String,
    /// The AADSTS number, shown only in the Azure dialect.
    code: Option<u32>,
    dialect: Dialect,
    /// RFC 6749 5.2: a failed Basic authentication answers with a matching challenge.
    basic_challenge: bool,
}

impl TokenError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> TokenError {
        TokenError {
            status,
            error,
            description: description.into(),
            code: None,
            dialect: Dialect::Rfc,
            basic_challenge: false,
        }
    }

    fn invalid_request(description: impl Into<String>) -> TokenError {
        TokenError::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    fn invalid_client(description: impl Into<String>) -> TokenError {
        TokenError::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    fn code(self, code: u32) -> TokenError {
        TokenError {
            code: Some(code),
            ..self
        }
    }

    fn in_dialect(self, dialect: Dialect) -> TokenError {
        TokenError { dialect, ..self }
    }

    fn basic(self) -> TokenError {
        TokenError {
            basic_challenge: true,
            ..self
        }
    }

    fn render(&self) -> HttpResponse {
        let mut body = json!({"error": self.error, "error_description": self.description});
        if let (Dialect::Azure, Some(code), Value::Object(fields)) =
            (self.dialect, self.code, &mut body)
        {
            fields.insert("error_codes".into(), json!([code]));
            fields.insert("timestamp".into(), json!(azure_timestamp()));
            fields.insert("trace_id".into(), json!(uuid_like(1)));
            fields.insert("correlation_id".into(), json!(uuid_like(2)));
        }
        let mut response = json_response(self.status, &body);
        set_no_store(&mut response);
        if self.basic_challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"demo\""),
            );
        }
        response
    }
}

/// Azure's errors carry request ids; these are for looks only, derived from the clock.
fn uuid_like(salt: u64) -> String {
    let a = RandomState::new().hash_one((unix_now().as_nanos(), salt));
    let b = a.rotate_left(17) ^ salt;
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b & 0xfff,
        b >> 16
    )
}

/// UTC now as `YYYY-MM-DD hh:mm:ssZ`, the form Azure uses in error bodies.
fn azure_timestamp() -> String {
    let secs = unix_now().as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm), valid for any date after 1970.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn token_response(body: &Value) -> HttpResponse {
    let mut response = json_response(StatusCode::OK, body);
    set_no_store(&mut response);
    response
}

/// RFC 6749 5.1: token responses must not be cached.
fn set_no_store(response: &mut HttpResponse) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
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

// ---------------------------------------------------------------------------------------------
// Canary API
// ---------------------------------------------------------------------------------------------

/// A GET that answers `body()` for a live token issued for `api`, 401 otherwise (RFC 6750 3).
fn canary(
    state: &State,
    request: &Request<Incoming>,
    api: Api,
    body: impl FnOnce() -> Value,
) -> HttpResponse {
    if request.method() != Method::GET {
        return method_not_allowed("GET");
    }
    if let Some(response) = reject_bearer(state, request.headers(), api) {
        return response;
    }
    json_response(StatusCode::OK, &body())
}

/// EqHub's legacy product lookup: numeric TEK numbers only, like the former EqHub.
fn canary_teknos(state: &State, request: &Request<Incoming>, id: &str) -> HttpResponse {
    if request.method() != Method::GET {
        return method_not_allowed("GET");
    }
    if let Some(response) = reject_bearer(state, request.headers(), Api::EqHub) {
        return response;
    }
    if id.is_empty() || id.len() > 16 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"message": "No product found with the given TEK number"}),
        );
    }
    json_response(
        StatusCode::OK,
        &json!({
            "TEKNo": id,
            "ProductName": "Demo ball valve DN50 PN40",
            "Manufacturer": "Demo Valves AS",
            "ProductClass": "Valve",
        }),
    )
}

/// `None` when the request carries a live bearer token for `api`, else the 401 to send.
fn reject_bearer(state: &State, headers: &HeaderMap, api: Api) -> Option<HttpResponse> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let challenge = match token {
        Some(token) if state.accepts(token, api) => return None,
        Some(_) => {
            "Bearer realm=\"demo\", error=\"invalid_token\", \
             error_description=\"the access token is unknown or expired\""
        }
        None => "Bearer realm=\"demo\"",
    };
    let mut response = json_response(
        StatusCode::UNAUTHORIZED,
        &json!({"statusCode": 401, "message": "Unauthorized. Access token is missing or invalid."}),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    Some(response)
}

// ---------------------------------------------------------------------------------------------
// The built-in configuration
// ---------------------------------------------------------------------------------------------

/// A TOML basic string holding exactly `value`.
fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn demo_config(addr: SocketAddr) -> String {
    let base = format!("http://{addr}");
    let q = toml_string;
    format!(
        r#"# oauth2-exporter demo configuration, generated by `oauth2-exporter --demo`.
#
# Every provider below points at the demo identity provider and API that this process serves on
# {base}. It speaks each real provider's token dialect and checks every field the
# real one checks. The credentials are demo values known only to that server; they are inline
# here for readability. In a real configuration use `client_secret_env` or `client_secret_file`
# (and `password_env` / `password_file`), which are re-read on every token request.

# Where /metrics is served (the --web.listen-address flag and OAUTH2_EXPORTER_WEB__LISTEN_ADDRESS
# override it):
# [web]
# listen_address = "0.0.0.0:9875"

# Every provider inherits these unless it sets its own. Real credentials want minutes, not seconds;
# the demo probes often so the metrics move while you watch.
[defaults]
interval = "5s"   # how often each provider's token flow and canary run (humantime: 30s, 5m, 1h)
timeout = "2s"    # deadline for each HTTP request

# --- EqHub (Collabor8): client credentials in the form body ------------------------------------
# The table key is the provider's name, the `provider` label on every metric: [A-Za-z0-9_.-]{{1,64}}.
[providers.eqhub]

[providers.eqhub.token]
url = {eqhub_token_url}
grant_type = "client_credentials"
client_id = {eqhub_id}
client_secret = {eqhub_secret}   # demo value; prefer client_secret_env = "EQHUB_CLIENT_SECRET"
auth_method = "client_secret_post"    # client_id and client_secret go in the form body (the default)
# This endpoint answers `"expires_in": "3599"`, a number in a string; both forms are understood.

# The canary: an API call made with the fresh token, proving the token is accepted, not just issued.
[providers.eqhub.canary]
url = {eqhub_canary_url}
method = "GET"
expected_status = [200]               # default: any 2xx
headers = {{ Accept = "application/json" }}

# --- OKQ8: Azure AD v2 client credentials with an api://.../.default scope ---------------------
[providers.okq8]
timeout = "3s"                        # per-provider override of [defaults]

[providers.okq8.token]
url = {okq8_token_url}
grant_type = "client_credentials"
client_id = {okq8_id}
client_secret = {okq8_secret}   # demo value
scopes = [{okq8_scope}]   # sent space-joined as `scope`

[providers.okq8.canary]
url = {okq8_canary_url}
headers = {{ Accept = "application/json" }}

# --- OKQ8 again, deliberately broken: the secret was rotated and this copy still has the old one.
# Azure answers 401 invalid_client (AADSTS7000215), so the failure metrics have data:
# oauth2_token_request_failures_total{{reason="invalid_client"}}, the token-phase 401 rate, and a
# canary skipped with reason "no_token".
[providers.okq8-rotated-secret.token]
url = {okq8_token_url}
grant_type = "client_credentials"
client_id = {okq8_id}
client_secret = {okq8_rotated_secret}   # wrong on purpose
scopes = [{okq8_scope}]

[providers.okq8-rotated-secret.canary]
url = {okq8_canary_url}

# --- Cube: IdentityServer with extra parameters and 24 h tokens ---------------------------------
[providers.cube]
interval = "10s"

[providers.cube.token]
url = {cube_token_url}
grant_type = "client_credentials"
client_id = {cube_id}
client_secret = {cube_secret}   # demo value
scopes = [{cube_scope}]
params = {{ resource = {cube_resource}, acr_values = {cube_acr} }}   # extra form fields, sent as-is
# Cube asks clients not to fetch a token per request: keep the 24 h token and renew it only when
# it is within `refresh_before` of its expiry.
reuse = true
refresh_before = "5m"

[providers.cube.canary]
url = {cube_canary_url}
expected_status = [200]

# --- Nextome: credentials in a JSON body, token in `accessToken`, lifetime from the JWT ----------
[providers.nextome.token]
url = {nextome_token_url}
grant_type = "client_credentials"
client_id = {nextome_id}
client_secret = {nextome_secret}   # demo value
auth_method = "json_body"             # one JSON object instead of a form
json_fields = {{ client_id = "clientId", client_secret = "clientSecret" }}   # its key names

# Where the reply keeps the token: a plain key, or a JSON pointer such as "/data/token".
# The reply has no expires_in, so the lifetime is read from the access token's JWT `exp` claim.
[providers.nextome.token.response]
access_token = "accessToken"

[providers.nextome.canary]
url = {nextome_canary_url}

# --- Everactive: client credentials sent with HTTP Basic ----------------------------------------
[providers.everactive.token]
url = {everactive_token_url}
grant_type = "client_credentials"
client_id = {everactive_id}
# This demo secret holds characters (space + : / %) that RFC 6749 2.3.1 requires to be
# form-encoded inside the Basic header; the demo server rejects a secret sent unencoded.
client_secret = {everactive_secret}
auth_method = "client_secret_basic"   # Authorization: Basic, nothing in the body

[providers.everactive.canary]
url = {everactive_sensors_url}
headers = {{ Accept = "application/json" }}

# --- Everactive: the password grant, on behalf of a user --------------------------------------
[providers.everactive-password.token]
url = {everactive_token_url}
grant_type = "password"
client_id = {everactive_pw_id}
client_secret = {everactive_pw_secret}   # demo value
username = {everactive_user}
password = {everactive_password}   # demo value; prefer password_env or password_file

[providers.everactive-password.canary]
url = {everactive_gateways_url}
"#,
        eqhub_token_url = q(&format!("{base}{EQHUB_TOKEN_PATH}")),
        eqhub_canary_url = q(&format!("{base}{EQHUB_TEKNOS_PREFIX}{EQHUB_TEKNO}")),
        eqhub_id = q(EQHUB_CLIENT.client_id),
        eqhub_secret = q(EQHUB_CLIENT.secret),
        okq8_token_url = q(&format!("{base}/{OKQ8_TENANT}/oauth2/v2.0/token")),
        okq8_canary_url = q(&format!("{base}{OKQ8_CANARY_PATH}")),
        okq8_id = q(OKQ8_CLIENT.client_id),
        okq8_secret = q(OKQ8_CLIENT.secret),
        okq8_rotated_secret = q(OKQ8_ROTATED_AWAY_SECRET),
        okq8_scope = q(&format!("{OKQ8_RESOURCE}/.default")),
        cube_token_url = q(&format!("{base}{CUBE_TOKEN_PATH}")),
        cube_canary_url = q(&format!("{base}{CUBE_CANARY_PATH}")),
        cube_id = q(CUBE_CLIENT.client_id),
        cube_secret = q(CUBE_CLIENT.secret),
        cube_scope = q(CUBE_SCOPE),
        cube_resource = q(CUBE_RESOURCE),
        cube_acr = q(&format!("tenant:{CUBE_TENANT}")),
        nextome_token_url = q(&format!("{base}{NEXTOME_TOKEN_PATH}")),
        nextome_canary_url = q(&format!("{base}{NEXTOME_CANARY_PATH}")),
        nextome_id = q(NEXTOME_CLIENT.client_id),
        nextome_secret = q(NEXTOME_CLIENT.secret),
        everactive_token_url = q(&format!("{base}{EVERACTIVE_TOKEN_PATH}")),
        everactive_sensors_url = q(&format!("{base}{EVERACTIVE_SENSORS_PATH}")),
        everactive_gateways_url = q(&format!("{base}{EVERACTIVE_GATEWAYS_PATH}")),
        everactive_id = q(EVERACTIVE_CLIENT.client_id),
        everactive_secret = q(EVERACTIVE_CLIENT.secret),
        everactive_pw_id = q(EVERACTIVE_PASSWORD_CLIENT.client_id),
        everactive_pw_secret = q(EVERACTIVE_PASSWORD_CLIENT.secret),
        everactive_user = q(EVERACTIVE_USERNAME),
        everactive_password = q(EVERACTIVE_PASSWORD),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // the project rules allow unwrap in tests
mod tests {
    use super::*;
    use reqwest::header::HeaderMap as ReqHeaders;

    /// A running demo server plus a client that never leaves loopback (no proxy, no redirects).
    struct Demo {
        server: DemoServer,
        cancel: CancellationToken,
        base: String,
        client: reqwest::Client,
    }

    impl Drop for Demo {
        fn drop(&mut self) {
            self.cancel.cancel();
        }
    }

    struct Reply {
        status: u16,
        headers: ReqHeaders,
        body: Value,
    }

    async fn start() -> Demo {
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let server = DemoServer::start(cancel.clone(), &tracker).await.unwrap();
        assert!(server.addr().ip().is_loopback());
        let base = format!("http://{}", server.addr());
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Demo {
            server,
            cancel,
            base,
            client,
        }
    }

    impl Demo {
        async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let text = response.text().await.unwrap();
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            Reply {
                status,
                headers,
                body,
            }
        }

        async fn form(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
            let url = format!("{}{path}", self.base);
            self.send(self.client.post(url).form(fields)).await
        }

        /// `client_secret_basic` done right: form-encode id and secret, then base64.
        async fn form_basic(
            &self,
            path: &str,
            id: &str,
            secret: &str,
            fields: &[(&str, &str)],
        ) -> Reply {
            let url = format!("{}{path}", self.base);
            let header = basic_header(&encode(id), &encode(secret));
            let request = self
                .client
                .post(url)
                .header(header::AUTHORIZATION, header)
                .form(fields);
            self.send(request).await
        }

        async fn get(&self, path: &str, token: Option<&str>) -> Reply {
            let mut request = self.client.get(format!("{}{path}", self.base));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            self.send(request).await
        }

        fn okq8_token_path(&self) -> String {
            format!("/{OKQ8_TENANT}/oauth2/v2.0/token")
        }
    }

    fn encode(value: &str) -> String {
        url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
    }

    fn basic_header(id_part: &str, secret_part: &str) -> String {
        format!(
            "Basic {}",
            STANDARD.encode(format!("{id_part}:{secret_part}"))
        )
    }

    #[track_caller]
    fn assert_oauth_error(reply: &Reply, status: u16, error: &str) {
        assert_eq!(reply.status, status, "status; body: {}", reply.body);
        assert_eq!(reply.body["error"], error, "body: {}", reply.body);
        let description = reply.body["error_description"].as_str().unwrap_or_default();
        assert!(
            !description.is_empty(),
            "error_description missing: {}",
            reply.body
        );
    }

    #[track_caller]
    fn access_token(reply: &Reply, field: &str) -> String {
        assert_eq!(reply.status, 200, "body: {}", reply.body);
        assert_eq!(reply.headers["cache-control"], "no-store");
        let token = reply.body[field].as_str().unwrap().to_owned();
        assert!(token.len() >= 40, "token too short to be unpredictable");
        token
    }

    fn okq8_form<'a>(secret: &'a str, scope: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", OKQ8_CLIENT.client_id),
            ("client_secret", secret),
            ("scope", scope),
        ]
    }

    fn cube_form<'a>() -> Vec<(&'a str, &'a str)> {
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", CUBE_CLIENT.client_id),
            ("client_secret", CUBE_CLIENT.secret),
            ("scope", "profile"),
            ("resource", "connectapi"),
            ("acr_values", "tenant:cube-demo"),
        ]
    }

    fn without<'a>(form: &[(&'a str, &'a str)], name: &str) -> Vec<(&'a str, &'a str)> {
        form.iter().copied().filter(|(n, _)| *n != name).collect()
    }

    fn with<'a>(
        form: &[(&'a str, &'a str)],
        name: &'a str,
        value: &'a str,
    ) -> Vec<(&'a str, &'a str)> {
        let mut form = without(form, name);
        form.push((name, value));
        form
    }

    #[tokio::test]
    async fn eqhub_issues_string_lifetime_token_and_validates_post_auth() {
        let demo = start().await;
        let good = [
            ("grant_type", "client_credentials"),
            ("client_id", EQHUB_CLIENT.client_id),
            ("client_secret", EQHUB_CLIENT.secret),
        ];
        let reply = demo.form(EQHUB_TOKEN_PATH, &good).await;
        let token = access_token(&reply, "access_token");
        assert_eq!(reply.body["token_type"], "Bearer");
        assert_eq!(reply.body["expires_in"], "3599", "Azure v1 style: a string");
        let expires_on: u64 = reply.body["expires_on"].as_str().unwrap().parse().unwrap();
        assert!(expires_on.abs_diff(unix_now().as_secs() + 3599) <= 5);

        let canary = format!("{EQHUB_TEKNOS_PREFIX}{EQHUB_TEKNO}");
        let reply = demo.get(&canary, Some(&token)).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body["TEKNo"], EQHUB_TEKNO);
        let reply = demo
            .get(&format!("{EQHUB_TEKNOS_PREFIX}not-a-number"), Some(&token))
            .await;
        assert_eq!(reply.status, 404);

        let wrong = with(&good, "client_secret", "eqhub-demo-secreT");
        assert_oauth_error(
            &demo.form(EQHUB_TOKEN_PATH, &wrong).await,
            401,
            "invalid_client",
        );
        let missing = without(&good, "client_secret");
        assert_oauth_error(
            &demo.form(EQHUB_TOKEN_PATH, &missing).await,
            401,
            "invalid_client",
        );
        let missing = without(&good, "grant_type");
        assert_oauth_error(
            &demo.form(EQHUB_TOKEN_PATH, &missing).await,
            400,
            "invalid_request",
        );
        let password = with(&good, "grant_type", "password");
        let reply = demo.form(EQHUB_TOKEN_PATH, &password).await;
        assert_oauth_error(&reply, 400, "unsupported_grant_type");
        // EqHub's client is registered for client_secret_post only.
        let basic = [("grant_type", "client_credentials")];
        let reply = demo
            .form_basic(
                EQHUB_TOKEN_PATH,
                EQHUB_CLIENT.client_id,
                EQHUB_CLIENT.secret,
                &basic,
            )
            .await;
        assert_oauth_error(&reply, 401, "invalid_client");
        assert!(
            reply.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic")
        );
    }

    #[tokio::test]
    async fn okq8_speaks_azure_v2_and_rejects_rotated_secret() {
        let demo = start().await;
        let path = demo.okq8_token_path();
        let scope = format!("{OKQ8_RESOURCE}/.default");
        let reply = demo
            .form(&path, &okq8_form(OKQ8_CLIENT.secret, &scope))
            .await;
        let token = access_token(&reply, "access_token");
        assert_eq!(reply.body["token_type"], "Bearer");
        assert_eq!(reply.body["expires_in"], 3599);
        assert_eq!(reply.body["ext_expires_in"], 3599);
        assert_eq!(demo.get(OKQ8_CANARY_PATH, Some(&token)).await.status, 200);

        let reply = demo
            .form(&path, &okq8_form(OKQ8_ROTATED_AWAY_SECRET, &scope))
            .await;
        assert_oauth_error(&reply, 401, "invalid_client");
        assert_eq!(reply.body["error_codes"][0], 7_000_215);
        assert!(
            reply.body["error_description"]
                .as_str()
                .unwrap()
                .starts_with("AADSTS7000215")
        );
        assert!(!reply.body.to_string().contains(OKQ8_ROTATED_AWAY_SECRET));

        let form = okq8_form(OKQ8_CLIENT.secret, &scope);
        let reply = demo.form(&path, &without(&form, "scope")).await;
        assert_oauth_error(&reply, 400, "invalid_request");
        assert_eq!(reply.body["error_codes"][0], 900_144);
        let not_default = format!("{OKQ8_RESOURCE}/read");
        let reply = demo
            .form(&path, &okq8_form(OKQ8_CLIENT.secret, &not_default))
            .await;
        assert_oauth_error(&reply, 400, "invalid_scope");
        let other_api = "api://apim-someone-else-api/.default";
        let reply = demo
            .form(&path, &okq8_form(OKQ8_CLIENT.secret, other_api))
            .await;
        assert_oauth_error(&reply, 400, "invalid_resource");
        let reply = demo
            .form(&path, &with(&form, "client_id", "unknown-app"))
            .await;
        assert_oauth_error(&reply, 400, "unauthorized_client");
        let reply = demo
            .form(&path, &with(&form, "grant_type", "authorization_code"))
            .await;
        assert_oauth_error(&reply, 400, "unsupported_grant_type");
        let reply = demo.form("/other-tenant/oauth2/v2.0/token", &form).await;
        assert_oauth_error(&reply, 400, "invalid_request");
        assert_eq!(reply.body["error_codes"][0], 90002);
        // A JSON body is not a form: Azure cannot find grant_type in it.
        let json = demo
            .client
            .post(format!("{}{path}", demo.base))
            .json(&json!({
                "grant_type": "client_credentials", "client_id": OKQ8_CLIENT.client_id,
                "client_secret": OKQ8_CLIENT.secret, "scope": scope,
            }));
        assert_oauth_error(&demo.send(json).await, 400, "invalid_request");
        // RFC 6749 3.2: a repeated parameter is an error.
        let mut repeated = form.clone();
        repeated.push(("scope", "api://x/.default"));
        assert_oauth_error(&demo.form(&path, &repeated).await, 400, "invalid_request");
    }

    #[tokio::test]
    async fn cube_requires_its_extra_params_and_issues_24h_tokens() {
        let demo = start().await;
        let good = cube_form();
        let reply = demo.form(CUBE_TOKEN_PATH, &good).await;
        let token = access_token(&reply, "access_token");
        assert_eq!(reply.body["expires_in"], 86_400);
        assert_eq!(reply.body["scope"], "profile");
        assert_eq!(demo.get(CUBE_CANARY_PATH, Some(&token)).await.status, 200);

        let wrong = with(&good, "client_secret", "nope");
        assert_oauth_error(
            &demo.form(CUBE_TOKEN_PATH, &wrong).await,
            401,
            "invalid_client",
        );
        let scope = with(&good, "scope", "profile openid");
        assert_oauth_error(
            &demo.form(CUBE_TOKEN_PATH, &scope).await,
            400,
            "invalid_scope",
        );
        let missing = without(&good, "scope");
        assert_oauth_error(
            &demo.form(CUBE_TOKEN_PATH, &missing).await,
            400,
            "invalid_request",
        );
        let missing = without(&good, "resource");
        assert_oauth_error(
            &demo.form(CUBE_TOKEN_PATH, &missing).await,
            400,
            "invalid_request",
        );
        let resource = with(&good, "resource", "otherapi");
        assert_oauth_error(
            &demo.form(CUBE_TOKEN_PATH, &resource).await,
            400,
            "invalid_target",
        );
        let missing = without(&good, "acr_values");
        assert_oauth_error(
            &demo.form(CUBE_TOKEN_PATH, &missing).await,
            400,
            "invalid_request",
        );
        let tenant = with(&good, "acr_values", "tenant:someone-else");
        assert_oauth_error(
            &demo.form(CUBE_TOKEN_PATH, &tenant).await,
            400,
            "invalid_request",
        );
        // An empty value counts as omitted (RFC 6749 3.1).
        let empty = with(&good, "resource", "");
        assert_oauth_error(
            &demo.form(CUBE_TOKEN_PATH, &empty).await,
            400,
            "invalid_request",
        );
    }

    #[tokio::test]
    async fn nextome_takes_json_and_returns_a_jwt_with_exp_only() {
        let demo = start().await;
        let url = format!("{}{NEXTOME_TOKEN_PATH}", demo.base);
        let body = json!({
            "clientId": NEXTOME_CLIENT.client_id,
            "clientSecret": NEXTOME_CLIENT.secret,
        });
        let reply = demo.send(demo.client.post(&url).json(&body)).await;
        let token = access_token(&reply, "accessToken");
        assert_eq!(
            reply.body.as_object().unwrap().len(),
            1,
            "only accessToken: {}",
            reply.body
        );
        assert!(reply.body.get("expires_in").is_none());

        let segments: Vec<&str> = token.split('.').collect();
        assert_eq!(segments.len(), 3);
        assert_eq!(segments[2], "", "unsigned: empty signature segment");
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segments[0]).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "none", "typ": "JWT"}));
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segments[1]).unwrap()).unwrap();
        let now = unix_now().as_secs();
        let exp = claims["exp"].as_u64().unwrap();
        let iat = claims["iat"].as_u64().unwrap();
        assert!(iat.abs_diff(now) <= 5);
        assert_eq!(exp - iat, 3600);
        assert_eq!(claims["sub"], NEXTOME_CLIENT.client_id);
        assert_eq!(claims["iss"], format!("{}{NEXTOME_TOKEN_PATH}", demo.base));
        assert_eq!(
            demo.get(NEXTOME_CANARY_PATH, Some(&token)).await.status,
            200
        );

        let wrong = json!({"clientId": NEXTOME_CLIENT.client_id, "clientSecret": "x"});
        let reply = demo.send(demo.client.post(&url).json(&wrong)).await;
        assert_oauth_error(&reply, 401, "invalid_client");
        let missing = json!({"clientId": NEXTOME_CLIENT.client_id});
        let reply = demo.send(demo.client.post(&url).json(&missing)).await;
        assert_oauth_error(&reply, 400, "invalid_request");
        let not_string = json!({"clientId": NEXTOME_CLIENT.client_id, "clientSecret": 42});
        let reply = demo.send(demo.client.post(&url).json(&not_string)).await;
        assert_oauth_error(&reply, 400, "invalid_request");
        let as_form = [
            ("clientId", NEXTOME_CLIENT.client_id),
            ("clientSecret", NEXTOME_CLIENT.secret),
        ];
        assert_oauth_error(
            &demo.form(NEXTOME_TOKEN_PATH, &as_form).await,
            400,
            "invalid_request",
        );
    }

    #[tokio::test]
    async fn everactive_client_credentials_needs_encoded_basic_auth() {
        let demo = start().await;
        let grant = [("grant_type", "client_credentials")];
        let (id, secret) = (EVERACTIVE_CLIENT.client_id, EVERACTIVE_CLIENT.secret);
        let reply = demo
            .form_basic(EVERACTIVE_TOKEN_PATH, id, secret, &grant)
            .await;
        let token = access_token(&reply, "access_token");
        assert_eq!(reply.body["expires_in"], 3600);
        assert_eq!(
            demo.get(EVERACTIVE_SENSORS_PATH, Some(&token)).await.status,
            200
        );

        // The secret sent raw, without the RFC 6749 2.3.1 form-encoding: '+' decodes to a space
        // and the bare '%' is a broken escape, so the server must refuse it.
        let raw = basic_header(id, secret);
        let url = format!("{}{EVERACTIVE_TOKEN_PATH}", demo.base);
        let request = demo
            .client
            .post(&url)
            .header(header::AUTHORIZATION, raw)
            .form(&grant);
        let reply = demo.send(request).await;
        assert_oauth_error(&reply, 401, "invalid_client");
        assert!(
            reply.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic")
        );

        let wrong = demo
            .form_basic(EVERACTIVE_TOKEN_PATH, id, "everactive demo secret", &grant)
            .await;
        assert_oauth_error(&wrong, 401, "invalid_client");
        // Registered for Basic only: the same credentials in the body are refused.
        let post = [
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ];
        assert_oauth_error(
            &demo.form(EVERACTIVE_TOKEN_PATH, &post).await,
            401,
            "invalid_client",
        );
        // Both methods at once is invalid_request (RFC 6749 2.3).
        let both = demo
            .form_basic(
                EVERACTIVE_TOKEN_PATH,
                id,
                secret,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_secret", secret),
                ],
            )
            .await;
        assert_oauth_error(&both, 400, "invalid_request");
        let nothing = demo.form(EVERACTIVE_TOKEN_PATH, &grant).await;
        assert_oauth_error(&nothing, 401, "invalid_client");
        let device = [("grant_type", "urn:ietf:params:oauth:grant-type:device_code")];
        let reply = demo
            .form_basic(EVERACTIVE_TOKEN_PATH, id, secret, &device)
            .await;
        assert_oauth_error(&reply, 400, "unsupported_grant_type");
        // This client may not use the password grant.
        let password = [
            ("grant_type", "password"),
            ("username", EVERACTIVE_USERNAME),
            ("password", EVERACTIVE_PASSWORD),
        ];
        let reply = demo
            .form_basic(EVERACTIVE_TOKEN_PATH, id, secret, &password)
            .await;
        assert_oauth_error(&reply, 400, "unauthorized_client");
    }

    #[tokio::test]
    async fn everactive_password_grant_checks_the_user() {
        let demo = start().await;
        let good = [
            ("grant_type", "password"),
            ("client_id", EVERACTIVE_PASSWORD_CLIENT.client_id),
            ("client_secret", EVERACTIVE_PASSWORD_CLIENT.secret),
            ("username", EVERACTIVE_USERNAME),
            ("password", EVERACTIVE_PASSWORD),
        ];
        let reply = demo.form(EVERACTIVE_TOKEN_PATH, &good).await;
        let token = access_token(&reply, "access_token");
        assert_eq!(reply.body["expires_in"], 3600);
        assert_eq!(
            demo.get(EVERACTIVE_GATEWAYS_PATH, Some(&token))
                .await
                .status,
            200
        );

        let wrong = with(&good, "password", "guess");
        assert_oauth_error(
            &demo.form(EVERACTIVE_TOKEN_PATH, &wrong).await,
            400,
            "invalid_grant",
        );
        let missing = without(&good, "username");
        assert_oauth_error(
            &demo.form(EVERACTIVE_TOKEN_PATH, &missing).await,
            400,
            "invalid_request",
        );
        let missing = without(&good, "password");
        assert_oauth_error(
            &demo.form(EVERACTIVE_TOKEN_PATH, &missing).await,
            400,
            "invalid_request",
        );
        let secret = with(&good, "client_secret", "nope");
        assert_oauth_error(
            &demo.form(EVERACTIVE_TOKEN_PATH, &secret).await,
            401,
            "invalid_client",
        );
        let cc = with(&good, "grant_type", "client_credentials");
        assert_oauth_error(
            &demo.form(EVERACTIVE_TOKEN_PATH, &cc).await,
            400,
            "unauthorized_client",
        );
    }

    #[tokio::test]
    async fn canary_accepts_only_live_tokens_issued_for_its_api() {
        let demo = start().await;
        let scope = format!("{OKQ8_RESOURCE}/.default");
        let reply = demo
            .form(
                &demo.okq8_token_path(),
                &okq8_form(OKQ8_CLIENT.secret, &scope),
            )
            .await;
        let okq8 = access_token(&reply, "access_token");
        assert_eq!(demo.get(OKQ8_CANARY_PATH, Some(&okq8)).await.status, 200);

        let reply = demo.get(OKQ8_CANARY_PATH, None).await;
        assert_eq!(reply.status, 401);
        assert_eq!(reply.headers["www-authenticate"], "Bearer realm=\"demo\"");
        let unknown = demo.server.state.random_string();
        let reply = demo.get(OKQ8_CANARY_PATH, Some(&unknown)).await;
        assert_eq!(reply.status, 401);
        assert!(
            reply.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
        // A valid token for another API opens nothing here.
        assert_eq!(demo.get(CUBE_CANARY_PATH, Some(&okq8)).await.status, 401);
        // Expired: issued with no lifetime left.
        let expired = demo.server.state.issue_opaque(Api::Okq8, Duration::ZERO);
        assert_eq!(demo.get(OKQ8_CANARY_PATH, Some(&expired)).await.status, 401);
        // Canary paths are GET only; token paths POST only; others 404.
        let post = demo
            .client
            .post(format!("{}{OKQ8_CANARY_PATH}", demo.base))
            .bearer_auth(&okq8);
        let reply = demo.send(post).await;
        assert_eq!(reply.status, 405);
        assert_eq!(reply.headers["allow"], "GET");
        let reply = demo.get(CUBE_TOKEN_PATH, None).await;
        assert_eq!(reply.status, 405);
        assert_eq!(reply.headers["allow"], "POST");
        assert_eq!(demo.get("/nope", Some(&okq8)).await.status, 404);
    }

    #[tokio::test]
    async fn oversized_token_request_is_refused() {
        let demo = start().await;
        let big = "x".repeat(MAX_BODY_BYTES + 1);
        let reply = demo
            .form(CUBE_TOKEN_PATH, &[("grant_type", big.as_str())])
            .await;
        assert_oauth_error(&reply, 413, "invalid_request");
    }

    #[test]
    fn basic_decoding_form_decodes_id_and_secret() {
        // Encoded per RFC 6749 2.3.1: ':' in the id is %3A, so the first raw ':' separates.
        let id = "client:id with space";
        let secret = "s3cr+t/%:é";
        let header = basic_header(&encode(id), &encode(secret));
        assert_eq!(
            decode_basic(&header),
            Some((id.to_owned(), secret.to_owned()))
        );
        // The scheme is case-insensitive (RFC 7235).
        let lower = header.replacen("Basic", "basic", 1);
        assert_eq!(
            decode_basic(&lower),
            Some((id.to_owned(), secret.to_owned()))
        );
        // '+' means space; "%2B" means '+'.
        let header = basic_header("a+b", "c%2Bd");
        assert_eq!(
            decode_basic(&header),
            Some(("a b".to_owned(), "c+d".to_owned()))
        );
        assert_eq!(
            decode_basic(&basic_header("id", "50%")),
            None,
            "broken escape"
        );
        assert_eq!(
            decode_basic(&basic_header("id", "%zz")),
            None,
            "non-hex escape"
        );
        assert_eq!(decode_basic(&basic_header("id", "%FF")), None, "not UTF-8");
        assert_eq!(decode_basic("Basic !!!not-base64"), None);
        assert_eq!(
            decode_basic(&format!("Basic {}", STANDARD.encode("no-colon"))),
            None
        );
        assert_eq!(
            decode_basic(&format!("Bearer {}", STANDARD.encode("a:b"))),
            None
        );
    }

    #[test]
    fn tokens_are_unique_and_the_store_is_bounded() {
        let state = State::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 1)));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let token = state.random_string();
            assert_eq!(token.len(), 43, "256 bits in unpadded base64url");
            assert!(seen.insert(token), "duplicate token");
        }
        // Another server (other keys) does not produce the same sequence.
        let other = State::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 1)));
        assert!(!seen.contains(&other.random_string()));

        let expired: Vec<String> = (0..10)
            .map(|_| state.issue_opaque(Api::Cube, Duration::ZERO))
            .collect();
        {
            let tokens = state.tokens.lock().unwrap();
            assert!(expired.iter().all(|token| tokens.contains_key(token)));
        }
        for _ in 0..PRUNE_EVERY {
            state.issue_opaque(Api::Cube, ONE_HOUR);
        }
        {
            let tokens = state.tokens.lock().unwrap();
            assert!(
                expired.iter().all(|token| !tokens.contains_key(token)),
                "expired tokens are swept within PRUNE_EVERY inserts"
            );
        }
        let first_live = state.issue_opaque(Api::Cube, Duration::from_secs(60));
        for _ in 0..MAX_TOKENS {
            state.issue_opaque(Api::Cube, ONE_HOUR);
        }
        let tokens = state.tokens.lock().unwrap();
        assert!(tokens.len() <= MAX_TOKENS, "bounded: {}", tokens.len());
        assert!(tokens.len() > MAX_TOKENS - MAX_TOKENS / 8 - 2);
        assert!(
            !tokens.contains_key(&first_live),
            "then the one closest to expiry"
        );
    }

    #[test]
    fn toml_strings_round_trip() {
        assert_eq!(toml_string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(toml_string("tab\there"), r#""tab\u0009here""#);
    }

    fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
        value
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{pointer} missing"))
    }

    /// Runs one provider's token flow and canary the way its configuration says; `Err` carries
    /// the token endpoint's status and `error`.
    async fn probe(demo: &Demo, provider: &Value) -> Result<(Value, u16), (u16, Value)> {
        let token = &provider["token"];
        let url = str_at(token, "/url");
        let auth = token
            .get("auth_method")
            .and_then(Value::as_str)
            .unwrap_or("client_secret_post");
        let client_id = str_at(token, "/client_id");
        let secret = str_at(token, "/client_secret");
        let params = token
            .get("params")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let request = if auth == "json_body" {
            let mut body = params;
            body.insert(
                str_at(token, "/json_fields/client_id").into(),
                json!(client_id),
            );
            body.insert(
                str_at(token, "/json_fields/client_secret").into(),
                json!(secret),
            );
            demo.client.post(url).json(&body)
        } else {
            let mut form: Vec<(String, String)> =
                vec![("grant_type".into(), str_at(token, "/grant_type").into())];
            if let Some(scopes) = token.get("scopes").and_then(Value::as_array) {
                let scopes: Vec<&str> = scopes.iter().filter_map(Value::as_str).collect();
                form.push(("scope".into(), scopes.join(" ")));
            }
            for (name, value) in &params {
                form.push((name.clone(), value.as_str().unwrap().into()));
            }
            if let Some(username) = token.get("username").and_then(Value::as_str) {
                form.push(("username".into(), username.into()));
                form.push(("password".into(), str_at(token, "/password").into()));
            }
            let mut request = demo.client.post(url);
            match auth {
                "client_secret_post" => {
                    form.push(("client_id".into(), client_id.into()));
                    form.push(("client_secret".into(), secret.into()));
                }
                "client_secret_basic" => {
                    request = request.header(
                        header::AUTHORIZATION,
                        basic_header(&encode(client_id), &encode(secret)),
                    );
                }
                other => panic!("unknown auth_method {other}"),
            }
            request.form(&form)
        };
        let reply = demo.send(request).await;
        if reply.status != 200 {
            return Err((reply.status, reply.body["error"].clone()));
        }
        let field = token
            .pointer("/response/access_token")
            .and_then(Value::as_str)
            .unwrap_or("access_token");
        let access_token = str_at(&reply.body, &format!("/{field}"));
        let canary = &provider["canary"];
        let method = canary
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or("GET");
        let mut request = demo
            .client
            .request(method.parse().unwrap(), str_at(canary, "/url"))
            .bearer_auth(access_token);
        for (name, value) in canary
            .get("headers")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            request = request.header(name.as_str(), value.as_str().unwrap());
        }
        let status = demo.send(request).await.status;
        let expected = match canary.get("expected_status").and_then(Value::as_array) {
            Some(codes) => codes
                .iter()
                .any(|code| code.as_u64() == Some(u64::from(status))),
            None => (200..300).contains(&status),
        };
        assert!(expected, "canary status {status} not expected: {canary}");
        Ok((reply.body, status))
    }

    #[tokio::test]
    async fn demo_config_drives_every_provider_against_the_server() {
        use figment::providers::Format as _;
        let demo = start().await;
        let text = demo.server.config_toml();
        let config: Value = figment::Figment::from(figment::providers::Toml::string(&text))
            .extract()
            .unwrap();
        assert_eq!(config["defaults"]["interval"], "5s");
        assert_eq!(config["defaults"]["timeout"], "2s");
        let providers = config["providers"].as_object().unwrap();
        let mut names: Vec<&str> = providers.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "cube",
                "eqhub",
                "everactive",
                "everactive-password",
                "nextome",
                "okq8",
                "okq8-rotated-secret"
            ]
        );
        assert_eq!(providers["cube"]["token"]["reuse"], true);
        assert_eq!(providers["cube"]["token"]["refresh_before"], "5m");
        assert_eq!(
            providers["everactive"]["token"]["auth_method"],
            "client_secret_basic"
        );
        assert_eq!(
            providers["everactive-password"]["token"]["grant_type"],
            "password"
        );
        assert_eq!(providers["nextome"]["token"]["auth_method"], "json_body");
        for (name, provider) in providers {
            let valid_name = (1..=64).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            assert!(valid_name, "{name}");
            let token_url = str_at(provider, "/token/url");
            let canary_url = str_at(provider, "/canary/url");
            for url in [token_url, canary_url] {
                assert!(
                    url.starts_with(&format!("{}/", demo.base)),
                    "{name}: {url} not the demo server"
                );
            }
            let outcome = probe(&demo, provider).await;
            if name == "okq8-rotated-secret" {
                assert_eq!(
                    outcome.unwrap_err(),
                    (401, json!("invalid_client")),
                    "{name}"
                );
            } else {
                let (reply, status) =
                    outcome.unwrap_or_else(|e| panic!("{name}: token failed {e:?}"));
                assert_eq!(status, 200, "{name}");
                // Nextome's lifetime exists only inside the JWT.
                assert_eq!(
                    reply.get("expires_in").is_none(),
                    name == "nextome",
                    "{name}: {reply}"
                );
            }
        }
    }

    #[tokio::test]
    async fn server_stops_when_cancelled() {
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let server = DemoServer::start(cancel.clone(), &tracker).await.unwrap();
        let addr = server.addr();
        tokio::net::TcpStream::connect(addr).await.unwrap();
        cancel.cancel();
        tracker.close();
        tokio::time::timeout(Duration::from_secs(5), tracker.wait())
            .await
            .unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
        assert!(format!("{server:?}").contains(&addr.to_string()));
    }
}
