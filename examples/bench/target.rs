//! The benchmark's load target: a fast loopback identity provider and API for N providers (the
//! provider's index in the path), serving one "lane" per client under test on its own pair of
//! ports, so that each client's connections and requests are counted apart. It issues JWTs with
//! `expires_in`, checks them on the API, and records for every request when it arrived and how
//! long the handler took (the server-side handling time the exporter's reported latency is
//! compared with). A control port serves the counters and the records to the driver.
//!
//! Paths: `POST /p/{i}/token` (client `client-{i}`, secret `bench-secret-{i}`, HTTP Basic or form
//! body, `grant_type=client_credentials`) and `GET /p/{i}/api` (Bearer token issued for `i`).
//! Control: `GET /counters` (JSON), `GET /records` (one line per request:
//! `lane kind provider arrival_ns handling_ns status`, arrival relative to `started_unix_ns`) and
//! `GET /heal` (ends the fault: connections accepted from then on are served normally).
//!
//! Faults (issue 16, `--fault`): `blackhole` accepts token connections and never answers;
//! `dribble` answers them one byte a second. Both hold a connection at most [`FAULT_HOLD`] and
//! close it as soon as the client gives up, so the target itself never runs out of descriptors.
//!
//! Bounded: after `max_requests` requests every answer is 503 (the driver then reports the run as
//! invalid), and at most that many records are kept.

use std::convert::Infallible;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Largest request body read: token requests are a few hundred bytes.
const MAX_BODY: usize = 64 * 1024;

/// `{"alg":"HS256","typ":"JWT"}`, base64url: the signature is a keyed SipHash, not HMAC, but
/// clients only read the claims.
const JWT_HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// How long a faulty token endpoint holds a connection at most: three times the exporter's
/// 10 s timeout, so every client has given up long before.
const FAULT_HOLD: Duration = Duration::from_secs(30);

/// How the token endpoints misbehave (issue 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Healthy: every request answered at once.
    #[default]
    None,
    /// Accept, read, never answer (a firewall dropping packets, an overloaded IdP).
    Blackhole,
    /// Answer one byte a second.
    Dribble,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Blackhole => "blackhole",
            Fault::Dribble => "dribble",
        }
    }

    pub fn parse(text: &str) -> Result<Fault, String> {
        match text {
            "none" => Ok(Fault::None),
            "blackhole" => Ok(Fault::Blackhole),
            "dribble" => Ok(Fault::Dribble),
            other => Err(format!(
                "unknown fault {other:?} (allowed: none, blackhole, dribble)"
            )),
        }
    }
}

/// What the target serves.
#[derive(Debug, Clone)]
pub struct Options {
    pub providers: usize,
    /// One pair of ports (token, API) per name.
    pub lanes: Vec<String>,
    /// `expires_in` of issued tokens, seconds.
    pub token_lifetime: u64,
    /// Requests served (over all lanes) before every answer becomes 503.
    pub max_requests: u64,
    /// How the token endpoints misbehave.
    pub fault: Fault,
}

impl Options {
    /// Parses `--providers N --lanes a,b --token-lifetime S --max-requests M`.
    pub fn from_args(args: &[String]) -> Result<Options, String> {
        let mut options = Options {
            providers: 100,
            lanes: vec!["exporter".into()],
            token_lifetime: 3600,
            max_requests: 10_000_000,
            fault: Fault::None,
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("{flag}: not a number: {value}"))
            };
            match flag.as_str() {
                "--providers" => options.providers = number()? as usize,
                "--lanes" => options.lanes = value.split(',').map(str::to_string).collect(),
                "--token-lifetime" => options.token_lifetime = number()?,
                "--max-requests" => options.max_requests = number()?,
                "--fault" => options.fault = Fault::parse(value)?,
                other => return Err(format!("unknown flag {other}")),
            }
        }
        if options.providers == 0 || options.lanes.is_empty() {
            return Err("need at least one provider and one lane".into());
        }
        Ok(options)
    }

    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--providers".into(),
            self.providers.to_string(),
            "--lanes".into(),
            self.lanes.join(","),
            "--token-lifetime".into(),
            self.token_lifetime.to_string(),
            "--max-requests".into(),
            self.max_requests.to_string(),
            "--fault".into(),
            self.fault.as_str().into(),
        ]
    }
}

/// Where a bound target listens; printed as one JSON line by the standalone target.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Bound {
    pub control: SocketAddr,
    pub started_unix_ns: u64,
    pub lanes: Vec<LaneAddrs>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LaneAddrs {
    pub name: String,
    pub token: SocketAddr,
    pub api: SocketAddr,
}

impl LaneAddrs {
    pub fn token_url(&self, provider: usize) -> String {
        format!("http://{}/p/{provider}/token", self.token)
    }

    pub fn api_url(&self, provider: usize) -> String {
        format!("http://{}/p/{provider}/api", self.api)
    }
}

/// The client id and secret the target expects for a provider.
pub fn credentials(provider: usize) -> (String, String) {
    (
        format!("client-{provider}"),
        format!("bench-secret-{provider}"),
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Token,
    Api,
}

/// One request as the target saw it.
#[derive(Clone, Copy)]
struct Record {
    lane: u8,
    kind: Kind,
    provider: u32,
    arrival_ns: u64,
    handling_ns: u32,
    status: u16,
}

#[derive(Default)]
struct LaneCounters {
    token_connections: AtomicU64,
    api_connections: AtomicU64,
    token_requests: AtomicU64,
    api_requests: AtomicU64,
    rejected: AtomicU64,
}

struct State {
    options: Options,
    epoch: Instant,
    /// Keys the token signatures; random per run.
    signer: std::collections::hash_map::RandomState,
    lanes: Vec<Arc<LaneCounters>>,
    served: AtomicU64,
    refused: AtomicU64,
    issued: AtomicU64,
    records: Mutex<Vec<Record>>,
    /// Set by `GET /heal`: the fault is over (the harness then measures recovery).
    healed: Arc<AtomicBool>,
}

/// A bound, not yet serving, target.
pub struct Target {
    pub bound: Bound,
    state: Arc<State>,
    listeners: Vec<(usize, Kind, TcpListener)>,
    control: TcpListener,
}

impl Target {
    /// Binds every port on 127.0.0.1.
    pub async fn bind(options: Options) -> std::io::Result<Target> {
        let started_unix_ns = unix_ns(SystemTime::now());
        let state = Arc::new(State {
            lanes: options.lanes.iter().map(|_| Arc::default()).collect(),
            records: Mutex::new(Vec::with_capacity(
                (options.max_requests as usize).min(1 << 20),
            )),
            options: options.clone(),
            epoch: Instant::now(),
            signer: Default::default(),
            served: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            issued: AtomicU64::new(0),
            healed: Arc::default(),
        });
        let mut listeners = Vec::new();
        let mut lanes = Vec::new();
        for (index, name) in options.lanes.iter().enumerate() {
            let token = TcpListener::bind("127.0.0.1:0").await?;
            let api = TcpListener::bind("127.0.0.1:0").await?;
            lanes.push(LaneAddrs {
                name: name.clone(),
                token: token.local_addr()?,
                api: api.local_addr()?,
            });
            listeners.push((index, Kind::Token, token));
            listeners.push((index, Kind::Api, api));
        }
        let control = TcpListener::bind("127.0.0.1:0").await?;
        Ok(Target {
            bound: Bound {
                control: control.local_addr()?,
                started_unix_ns,
                lanes,
            },
            state,
            listeners,
            control,
        })
    }

    /// Serves until `cancel` fires.
    pub async fn serve(self, cancel: CancellationToken) {
        let mut tasks = tokio::task::JoinSet::new();
        for (lane, kind, listener) in self.listeners {
            // Faults are the token endpoints' only: no token, no canary call.
            let fault = match kind {
                Kind::Token => self.state.options.fault,
                Kind::Api => Fault::None,
            };
            let state = Arc::clone(&self.state);
            let counted = Some((Arc::clone(&state.lanes[lane]), kind));
            tasks.spawn(accept_loop(
                listener,
                counted,
                fault,
                Arc::clone(&self.state.healed),
                cancel.clone(),
                move |request| {
                    let state = Arc::clone(&state);
                    async move { handle(&state, lane, kind, request).await }
                },
            ));
        }
        let state = Arc::clone(&self.state);
        tasks.spawn(accept_loop(
            self.control,
            None,
            Fault::None,
            Arc::clone(&self.state.healed),
            cancel.clone(),
            move |request| {
                let state = Arc::clone(&state);
                async move { control(&state, &request) }
            },
        ));
        cancel.cancelled().await;
        tasks.shutdown().await;
    }
}

/// Accepts connections until cancelled, counting them in `counted`; every connection is
/// HTTP/1.1 with keep-alive, or, with a `fault` and until `healed` is set, held by
/// [`hold_faulty`] and never served.
async fn accept_loop<H, F>(
    listener: TcpListener,
    counted: Option<(Arc<LaneCounters>, Kind)>,
    fault: Fault,
    healed: Arc<AtomicBool>,
    cancel: CancellationToken,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            // EMFILE and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        match &counted {
            Some((lane, Kind::Token)) => lane.token_connections.fetch_add(1, Ordering::Relaxed),
            Some((lane, Kind::Api)) => lane.api_connections.fetch_add(1, Ordering::Relaxed),
            None => 0,
        };
        if fault != Fault::None && !healed.load(Ordering::Relaxed) {
            connections.spawn(hold_faulty(stream, fault));
            while connections.try_join_next().is_some() {}
            continue;
        }
        let handler = handler.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(request).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        // Reap finished connections so the set does not grow with every client that left.
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
}

/// Holds one connection for at most [`FAULT_HOLD`]: reads (and drops) whatever arrives until the
/// client closes, and for `Dribble` writes a response one byte a second meanwhile.
async fn hold_faulty(stream: tokio::net::TcpStream, fault: Fault) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 64\r\n\r\n{\"access_token\":\"dribbled\",\"token_type\":\"Bearer\",\"expires_in\":60}";
    let (mut reader, mut writer) = stream.into_split();
    let read_until_closed = async {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buffer).await {
            if n == 0 {
                break;
            }
        }
    };
    let dribble = async {
        if fault != Fault::Dribble {
            return std::future::pending::<()>().await;
        }
        for byte in RESPONSE.iter().cycle() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        _ = read_until_closed => {}
        _ = dribble => {}
        _ = tokio::time::sleep(FAULT_HOLD) => {}
    }
}

fn unix_ns(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

const JSON: &str = "application/json";

/// The provider index in `/p/{i}/{leaf}`.
fn provider_in(path: &str, leaf: &str, providers: usize) -> Option<usize> {
    let rest = path.strip_prefix("/p/")?;
    let (index, tail) = rest.split_once('/')?;
    let index: usize = index.parse().ok()?;
    (tail == leaf && index < providers).then_some(index)
}

async fn handle(
    state: &State,
    lane: usize,
    kind: Kind,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let counters = &state.lanes[lane];
    let served = state.served.fetch_add(1, Ordering::Relaxed);
    if served >= state.options.max_requests {
        state.refused.fetch_add(1, Ordering::Relaxed);
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            JSON,
            "{\"error\":\"temporarily_unavailable\"}",
        );
    }
    let leaf = match kind {
        Kind::Token => "token",
        Kind::Api => "api",
    };
    let Some(provider) = provider_in(request.uri().path(), leaf, state.options.providers) else {
        return reply(StatusCode::NOT_FOUND, JSON, "{\"error\":\"not_found\"}");
    };
    let response = match kind {
        Kind::Token => {
            counters.token_requests.fetch_add(1, Ordering::Relaxed);
            token(state, provider, request).await
        }
        Kind::Api => {
            counters.api_requests.fetch_add(1, Ordering::Relaxed);
            api(state, provider, &request)
        }
    };
    if !response.status().is_success() {
        counters.rejected.fetch_add(1, Ordering::Relaxed);
    }
    let handling = started.elapsed();
    let record = Record {
        lane: lane as u8,
        kind,
        provider: provider as u32,
        arrival_ns: started.duration_since(state.epoch).as_nanos() as u64,
        handling_ns: handling.as_nanos().min(u128::from(u32::MAX)) as u32,
        status: response.status().as_u16(),
    };
    if let Ok(mut records) = state.records.lock() {
        records.push(record);
    }
    response
}

/// `application/x-www-form-urlencoded` decoding of one credential (RFC 6749 2.3.1).
fn form_decode(value: &str) -> String {
    url::form_urlencoded::parse(format!("v={value}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

async fn token(
    state: &State,
    provider: usize,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let basic = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| STANDARD.decode(encoded.trim()).ok())
        .and_then(|decoded| String::from_utf8(decoded).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(id, secret)| (form_decode(id), form_decode(secret)))
        });
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return reply(
                StatusCode::BAD_REQUEST,
                JSON,
                "{\"error\":\"invalid_request\"}",
            );
        }
    };
    let mut grant = None;
    let mut form_id = None;
    let mut form_secret = None;
    for (key, value) in url::form_urlencoded::parse(&body) {
        match key.as_ref() {
            "grant_type" => grant = Some(value.into_owned()),
            "client_id" => form_id = Some(value.into_owned()),
            "client_secret" => form_secret = Some(value.into_owned()),
            _ => {}
        }
    }
    if grant.as_deref() != Some("client_credentials") {
        return reply(
            StatusCode::BAD_REQUEST,
            JSON,
            "{\"error\":\"unsupported_grant_type\"}",
        );
    }
    let (id, secret) = match (basic, form_id, form_secret) {
        (Some(pair), None, None) => pair,
        (None, Some(id), Some(secret)) => (id, secret),
        _ => {
            return reply(
                StatusCode::BAD_REQUEST,
                JSON,
                "{\"error\":\"invalid_request\"}",
            );
        }
    };
    let (want_id, want_secret) = credentials(provider);
    if id != want_id || secret != want_secret {
        return reply(
            StatusCode::UNAUTHORIZED,
            JSON,
            "{\"error\":\"invalid_client\"}",
        );
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let lifetime = state.options.token_lifetime;
    let jti = state.issued.fetch_add(1, Ordering::Relaxed);
    let payload = URL_SAFE_NO_PAD.encode(format!(
        "{{\"sub\":\"p{provider}\",\"iat\":{now},\"exp\":{},\"jti\":{jti}}}",
        now + lifetime
    ));
    let signature = sign(state, provider, &payload);
    reply(
        StatusCode::OK,
        JSON,
        format!(
            "{{\"access_token\":\"{JWT_HEADER}.{payload}.{signature}\",\"token_type\":\"Bearer\",\"expires_in\":{lifetime}}}"
        ),
    )
}

fn sign(state: &State, provider: usize, payload: &str) -> String {
    let mac = state.signer.hash_one((provider, payload));
    URL_SAFE_NO_PAD.encode(mac.to_le_bytes())
}

fn api(state: &State, provider: usize, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let valid = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .and_then(|token| {
            let mut parts = token.split('.');
            let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
            if header != JWT_HEADER || parts.next().is_some() {
                return None;
            }
            if sign(state, provider, payload) != signature {
                return None;
            }
            let claims: serde_json::Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
            let exp = claims.get("exp")?.as_u64()?;
            let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
            (exp > now).then_some(())
        })
        .is_some();
    if valid {
        reply(StatusCode::OK, JSON, "{\"ok\":true}")
    } else {
        reply(
            StatusCode::UNAUTHORIZED,
            JSON,
            "{\"error\":\"invalid_token\"}",
        )
    }
}

fn control(state: &State, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    match request.uri().path() {
        "/counters" => {
            let lanes: Vec<serde_json::Value> = state
                .options
                .lanes
                .iter()
                .zip(&state.lanes)
                .map(|(name, c)| {
                    serde_json::json!({
                        "name": name,
                        "token_connections": c.token_connections.load(Ordering::Relaxed),
                        "api_connections": c.api_connections.load(Ordering::Relaxed),
                        "token_requests": c.token_requests.load(Ordering::Relaxed),
                        "api_requests": c.api_requests.load(Ordering::Relaxed),
                        "rejected": c.rejected.load(Ordering::Relaxed),
                    })
                })
                .collect();
            let body = serde_json::json!({
                "lanes": lanes,
                "served": state.served.load(Ordering::Relaxed),
                "refused": state.refused.load(Ordering::Relaxed),
            });
            reply(StatusCode::OK, JSON, body.to_string())
        }
        "/records" => {
            // Copied out under the lock, formatted outside it: requests keep being recorded.
            let records = state
                .records
                .lock()
                .map(|records| records.clone())
                .unwrap_or_default();
            let mut text = String::with_capacity(records.len() * 40);
            for r in records {
                use std::fmt::Write as _;
                let kind = if r.kind == Kind::Token { 't' } else { 'a' };
                let _ = writeln!(
                    text,
                    "{} {kind} {} {} {} {}",
                    r.lane, r.provider, r.arrival_ns, r.handling_ns, r.status
                );
            }
            reply(StatusCode::OK, "text/plain", text)
        }
        "/heal" => {
            state.healed.store(true, Ordering::Relaxed);
            reply(StatusCode::OK, "text/plain", "healed\n")
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

/// The standalone target: binds, prints its [`Bound`] as one JSON line on standard output, and
/// serves until SIGINT or SIGTERM (the driver kills it by its process id).
pub fn run_standalone(args: &[String]) -> std::process::ExitCode {
    let options = match Options::from_args(args) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("load target: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    // One thread: the target must stay cheap next to the processes being measured.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("load target: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let target = match Target::bind(options).await {
            Ok(target) => target,
            Err(error) => {
                eprintln!("load target: cannot bind on 127.0.0.1: {error}");
                return std::process::ExitCode::FAILURE;
            }
        };
        match serde_json::to_string(&target.bound) {
            Ok(line) => println!("{line}"),
            Err(error) => {
                eprintln!("load target: {error}");
                return std::process::ExitCode::FAILURE;
            }
        }
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let terminated = async {
                match terminate.as_mut() {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminated => {}
            }
            stop.cancel();
        });
        target.serve(cancel).await;
        std::process::ExitCode::SUCCESS
    })
}
