//! Outgoing HTTP: building clients (redirects off, keep-alive, per-provider TLS and proxy
//! settings), the process-wide bound on requests in flight ([`Slots`]), reading bodies with a
//! size cap, which proxy a request takes ([`ProxyRoute`]), and classifying transport failures
//! into the fixed reasons `timeout`, `connect`, `tls` and `exporter_busy` (our own descriptors or
//! ports ran out: never the remote side's fault).

use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use url::Url;

use crate::config::{ProxySetting, TlsConfig};
use crate::probe::trace::Trace;
use crate::probe::verifier::{self, Chains};
use crate::secrets::{ProxyCredential, Scrubber};

/// Bodies larger than this are not read: a token response is a few KiB at most.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A failure below HTTP: the request never produced a usable response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("timed out")]
    Timeout,
    /// DNS failure, refused or reset connection, or any other I/O failure on the way.
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("TLS failed: {0}")]
    Tls(String),
    /// The exporter itself could not send the request: no free request slot within the
    /// timeout, or the operating system refused a local resource (descriptors, ports).
    #[error("exporter busy: {0}")]
    Busy(String),
}

impl TransportError {
    /// Classifies a reqwest error. The message leaves out the URL: it is configuration the
    /// operator already knows, and keeping it out keeps log lines short.
    pub fn from_reqwest(error: &reqwest::Error) -> TransportError {
        if error.is_timeout() {
            return TransportError::Timeout;
        }
        let mut chain = Vec::new();
        let mut tls = false;
        let mut local = false;
        let mut source: Option<&(dyn std::error::Error + 'static)> = error.source();
        while let Some(cause) = source {
            tls |= is_tls_error(cause);
            local |= is_local_resource_error(cause);
            chain.push(cause.to_string());
            source = cause.source();
        }
        let message = if chain.is_empty() {
            error.to_string()
        } else {
            chain.join(": ")
        };
        // Checked first: "tcp open error: Too many open files" is our failure, not the IdP's.
        if local {
            TransportError::Busy(message)
        } else if tls {
            TransportError::Tls(message)
        } else {
            TransportError::Connect(message)
        }
    }
}

/// Whether a cause is, or wraps, a rustls error. reqwest wraps a certificate failure in
/// `io::Error`s (more than one deep), whose `source()` does not lead to the inner error, so each
/// `io::Error` is unwrapped with `get_ref()` as well.
fn is_tls_error(cause: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(cause);
    // Bounded: error chains are short, and a cycle must not hang us.
    for _ in 0..16 {
        let Some(error) = current else { return false };
        if error.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        current = match error.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    false
}

/// The `errno` values that mean this process or host ran out of something of its own: open
/// descriptors (EMFILE, ENFILE), local ports (EADDRNOTAVAIL from `connect`), socket buffers
/// (ENOBUFS) or memory (ENOMEM). None of them says anything about the remote side.
pub fn is_local_errno(code: i32) -> bool {
    #[cfg(unix)]
    {
        [
            libc::EMFILE,
            libc::ENFILE,
            libc::EADDRNOTAVAIL,
            libc::ENOBUFS,
            libc::ENOMEM,
        ]
        .contains(&code)
    }
    #[cfg(not(unix))]
    {
        let _ = code;
        false
    }
}

/// Whether a cause is, or wraps, an `io::Error` with a local-resource `errno`. Walks both
/// `source()` and `io::Error::get_ref()` (see [`is_tls_error`] for why both), bounded.
fn is_local_resource_error(cause: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(cause);
    for _ in 0..16 {
        let Some(error) = current else { return false };
        current = match error.downcast_ref::<std::io::Error>() {
            Some(io) => {
                if io.raw_os_error().is_some_and(is_local_errno) {
                    return true;
                }
                io.get_ref()
                    .map(|inner| inner as &(dyn std::error::Error + 'static))
            }
            None => error.source(),
        };
    }
    false
}

/// Descriptors kept out of [`Slots`]' reach: the process's own (standard streams, the runtime's
/// epoll and wake-up descriptors, the listener, log output), the web server's connections for
/// scrapes, health checks, the status page and reloads, and file reads (secrets, keys, a
/// reloaded configuration). A handful of each is the normal load; 128 leaves room for bursts.
pub const DESCRIPTOR_RESERVE: u64 = 128;

/// The most request slots ever made, whatever the descriptor limit (an unlimited hard limit
/// would otherwise ask for more permits than a semaphore holds).
const MAX_SLOTS: usize = 1 << 20;

/// The process-wide bound on outgoing requests in flight (token and canary alike, every
/// client), so that the exporter never exhausts its descriptors. Cloning shares the bound.
///
/// Of the descriptors beyond [`DESCRIPTOR_RESERVE`], half are slots for requests in flight and
/// half are left to idle keep-alive connections: a connection is only opened while a slot is
/// held, and each client's pool keeps at most [`Slots::idle_per_host`] idle ones per host, so
/// with one identity provider (the usual fleet: many clients, one token URL) descriptors stay
/// within the limit. Were many distinct hosts to keep idle connections beyond that, a connect
/// failing with EMFILE is still reported as `exporter_busy`, never as the remote side's fault.
#[derive(Debug, Clone)]
pub struct Slots {
    semaphore: Arc<Semaphore>,
    limit: usize,
}

/// A held request slot, released when dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    /// What is left of the timeout the slot was waited for within.
    pub remaining: Duration,
}

impl Slots {
    /// `limit` requests in flight at once (at least one).
    pub fn new(limit: usize) -> Slots {
        let limit = limit.clamp(1, MAX_SLOTS);
        Slots {
            semaphore: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// The slots a process with this many descriptors (the soft `RLIMIT_NOFILE`) can afford.
    pub fn for_descriptor_limit(descriptors: u64) -> Slots {
        let spare = descriptors.saturating_sub(DESCRIPTOR_RESERVE) / 2;
        Slots::new(usize::try_from(spare).unwrap_or(MAX_SLOTS))
    }

    /// The slots the current soft descriptor limit affords (256 descriptors' worth if it
    /// cannot be read: a conservative guess rather than none).
    pub fn for_this_process() -> Slots {
        let soft = rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(soft, _hard)| soft)
            .unwrap_or(256);
        Slots::for_descriptor_limit(soft)
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.limit
            .saturating_sub(self.semaphore.available_permits())
    }

    /// The most requests in flight at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Idle keep-alive connections each pool keeps per host: the other half of the budget.
    pub fn idle_per_host(&self) -> usize {
        self.limit
    }

    /// Waits for a free slot for a request with this `timeout`, at most half of it: the other
    /// half is the remote side's, so a `timeout` always means the server had at least half the
    /// configured time to answer, and waiting on the exporter itself is never blamed on it.
    /// `Err` (reason `exporter_busy`) says how long it waited and how busy the exporter was.
    pub async fn acquire(&self, timeout: Duration) -> Result<Slot, TransportError> {
        let started = Instant::now();
        // A free slot (the usual case) is taken without arming a timer: one timer per request,
        // the request's own.
        if let Ok(permit) = Arc::clone(&self.semaphore).try_acquire_owned() {
            return Ok(Slot {
                _permit: permit,
                remaining: timeout,
            });
        }
        let wait = timeout / 2;
        match tokio::time::timeout(wait, Arc::clone(&self.semaphore).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Slot {
                _permit: permit,
                remaining: timeout.saturating_sub(started.elapsed()),
            }),
            // The semaphore is never closed; were it, waiting longer would not help either.
            Ok(Err(_)) | Err(_) => Err(TransportError::Busy(format!(
                "no free request slot within {:.1}s, half the timeout ({} requests in flight, limit {})",
                started.elapsed().as_secs_f64(),
                self.in_flight(),
                self.limit
            ))),
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as the Go runtime does for Go exporters
/// (systemd's default soft limit for services is 1 024, which a large fleet in an outage
/// exceeds), and logs the limit the process runs with. A failure is logged and the inherited
/// limit kept: the request slots are sized by whatever limit is in force.
pub fn raise_descriptor_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "file descriptor limit"),
        Err(error) => {
            let limit = rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _)| soft.to_string())
                .unwrap_or_else(|_| "unknown".into());
            tracing::warn!(%error, %limit, "cannot raise the file descriptor limit; keeping the inherited one");
        }
    }
}

/// An HTTP client, the process-wide request slots its requests take, and the proxy setting it
/// was built with (to say which proxy a request took).
#[derive(Debug, Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub slots: Slots,
    /// The certificate chains its endpoints presented (see [`Seen::certificate`]).
    pub chains: Arc<Chains>,
    pub proxy: ProxySetting,
    /// With the environment's proxy: the `user:password@` of `HTTPS_PROXY` / `HTTP_PROXY` /
    /// `ALL_PROXY`, read when the client is built (as reqwest reads the variables), so that a
    /// proxy echoing them shows `[redacted]` as a `proxy_url` password does (issue 22).
    environment_credentials: Arc<[(ProxyCredential, ProxyCredential)]>,
}

impl Client {
    /// Adds this client's own secrets to `scrubber`: the `proxy_url` password and the
    /// `Proxy-Authorization: Basic` value it travels in, so that a proxy (or a server behind it)
    /// echoing them shows `[redacted]`.
    pub fn add_secrets(&self, scrubber: &mut Scrubber) {
        let configured = match &self.proxy {
            ProxySetting::Url(proxy) => proxy.credentials.as_ref(),
            _ => None,
        };
        for (user, password) in configured
            .into_iter()
            .chain(self.environment_credentials.iter())
        {
            use base64::Engine as _;
            scrubber.add(password.expose());
            scrubber.add(&base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                user.expose(),
                password.expose()
            )));
        }
    }

    /// The proxy a request to `url` goes through with this client.
    pub fn route(&self, url: &Url) -> ProxyRoute {
        match &self.proxy {
            ProxySetting::Disabled => ProxyRoute::Direct { disabled: true },
            ProxySetting::Url(proxy) => ProxyRoute::Configured(proxy.host_port()),
            // The rules reqwest applies to a client built without a proxy of its own (curl's:
            // HTTPS_PROXY / HTTP_PROXY / ALL_PROXY, NO_PROXY), read the same way.
            ProxySetting::Environment => url
                .as_str()
                .parse::<hyper::Uri>()
                .ok()
                .and_then(|uri| {
                    hyper_util::client::proxy::matcher::Matcher::from_env().intercept(&uri)
                })
                .and_then(|intercept| {
                    // Host and port only: the variable's `user:password@` is never shown.
                    let uri = intercept.uri();
                    let host = uri.host()?;
                    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
                        Some("https") => 443,
                        _ => 80,
                    });
                    Some(ProxyRoute::FromEnvironment(format!("{host}:{port}")))
                })
                .unwrap_or(ProxyRoute::Direct { disabled: false }),
        }
    }
}

/// Which proxy a request goes through, as the trace and failure details name it: host and port,
/// never credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyRoute {
    /// No proxy; `disabled` when `proxy_url = "none"` says so.
    Direct { disabled: bool },
    /// `proxy_url`.
    Configured(String),
    /// `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` (not excluded by `NO_PROXY`).
    FromEnvironment(String),
}

impl std::fmt::Display for ProxyRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyRoute::Direct { disabled: true } => f.write_str("none (proxy_url = \"none\")"),
            ProxyRoute::Direct { disabled: false } => f.write_str("none"),
            ProxyRoute::Configured(host) => write!(f, "{host} (proxy_url)"),
            ProxyRoute::FromEnvironment(host) => write!(f, "from environment: {host}"),
        }
    }
}

impl ProxyRoute {
    /// A transport failure as people read it: through a proxy, every connection is to the
    /// proxy, so a refused or failed one names it; a 407 (proxy authentication) says so.
    pub fn explain(&self, error: TransportError) -> TransportError {
        let (host, credentials) = match self {
            ProxyRoute::Direct { .. } => return error,
            ProxyRoute::Configured(host) => (host, "the user:password@ of proxy_url"),
            ProxyRoute::FromEnvironment(host) => {
                (host, "the user:password@ of the proxy environment variable")
            }
        };
        match error {
            TransportError::Connect(message)
                if message.contains("proxy authorization required") =>
            {
                TransportError::Connect(self.proxy_auth_required(host, credentials))
            }
            TransportError::Connect(message) => {
                TransportError::Connect(format!("via proxy {host}: {message}"))
            }
            TransportError::Tls(message) => {
                TransportError::Tls(format!("via proxy {host}: {message}"))
            }
            other => other,
        }
    }

    /// A 407 answer: only a proxy sends one, so the request never reached the server. `None`
    /// when the request went direct (then it is the server's own odd answer).
    pub fn proxy_refused(&self, status: Option<u16>) -> Option<TransportError> {
        if status != Some(407) {
            return None;
        }
        match self {
            ProxyRoute::Direct { .. } => None,
            ProxyRoute::Configured(host) => Some(TransportError::Connect(
                self.proxy_auth_required(host, "the user:password@ of proxy_url"),
            )),
            ProxyRoute::FromEnvironment(host) => {
                Some(TransportError::Connect(self.proxy_auth_required(
                    host,
                    "the user:password@ of the proxy environment variable",
                )))
            }
        }
    }

    fn proxy_auth_required(&self, host: &str, credentials: &str) -> String {
        format!(
            "proxy {host} refused the request with 407 Proxy Authentication Required: {credentials} is missing or wrong"
        )
    }
}

/// The variables reqwest takes a proxy from, in both cases (curl's rules).
const PROXY_VARIABLES: [&str; 6] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The user names and passwords in the proxy environment variables' URLs, percent-decoded as
/// they are sent (a password-less user is no secret). A variable that is not a URL names no
/// credentials reqwest could send either.
fn environment_proxy_credentials() -> Vec<(ProxyCredential, ProxyCredential)> {
    let decode =
        |text: &str| crate::config::percent_decode(text).unwrap_or_else(|| text.to_string());
    let mut found: Vec<(ProxyCredential, ProxyCredential)> = Vec::new();
    for name in PROXY_VARIABLES {
        let Ok(value) = std::env::var(name) else {
            continue;
        };
        let value = value.trim();
        let parsed = Url::parse(value).or_else(|_| Url::parse(&format!("http://{value}")));
        let Ok(url) = parsed else { continue };
        let Some(password) = url.password() else {
            continue;
        };
        let credentials = (
            ProxyCredential::new(decode(url.username())),
            ProxyCredential::new(decode(password)),
        );
        if !found.contains(&credentials) {
            found.push(credentials);
        }
    }
    found
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    #[error("TLS settings: {0}")]
    Tls(String),
}

/// What a response showed before its body was read (kept when reading the body then fails).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    pub status: Option<u16>,
    /// The fingerprint of the leaf certificate the endpoint presented (https only): the
    /// client's [`Chains`] knows the earliest notAfter of its chain.
    pub certificate: Option<u64>,
    /// A 429 or 503 answer's `Retry-After`, as the moment it names (issue 23).
    pub retry_after: Option<SystemTime>,
}

/// The moment a `Retry-After` value names (RFC 9110 section 10.2.3): a number of seconds after
/// `now`, or an HTTP date (IMF-fixdate, or one of the two obsolete forms recipients must
/// accept). `None` for anything else: a value we cannot read says nothing we could honour.
pub fn retry_after(value: &[u8], now: SystemTime) -> Option<SystemTime> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // An absurd number of seconds is still "not for a long time": the caller caps it.
        let seconds = text
            .parse::<u64>()
            .unwrap_or(u64::MAX)
            .min(u64::from(u32::MAX));
        return now.checked_add(Duration::from_secs(seconds));
    }
    httpdate::parse_http_date(text).ok()
}

impl Client {
    /// The earliest notAfter (Unix seconds) of the chain whose leaf a response named
    /// ([`Seen::certificate`]).
    pub fn chain_expiry(&self, leaf: Option<u64>) -> Option<u64> {
        self.chains.earliest(leaf?)
    }
}

/// Sends a request. Records the status it was answered with (for the 401 count, even when the
/// body then fails) and, in a debug trace, the status line and headers.
pub async fn send(
    request: reqwest::RequestBuilder,
    seen: &mut Seen,
    trace: Option<&mut Trace>,
) -> Result<reqwest::Response, TransportError> {
    let response = request
        .send()
        .await
        .map_err(|error| TransportError::from_reqwest(&error))?;
    let status = response.status().as_u16();
    seen.status = Some(status);
    if matches!(status, 429 | 503) {
        seen.retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| retry_after(value.as_bytes(), SystemTime::now()));
    }
    seen.certificate = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(reqwest::tls::TlsInfo::peer_certificate)
        .map(crate::probe::expiry::fingerprint);
    if let Some(trace) = trace {
        trace.line(format!("<- HTTP {status}"));
        for (name, value) in response.headers() {
            trace.line(crate::probe::trace::header_line(
                name.as_str(),
                value.as_bytes(),
            ));
        }
    }
    Ok(response)
}

/// Why a body could not be read in full.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// Reads a response body, giving up once it exceeds `MAX_BODY_BYTES`.
pub async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|length| length > MAX_BODY_BYTES as u64)
    {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| TransportError::from_reqwest(&error))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Builds one client taking its requests' slots from `slots`. Redirects are never followed: a
/// token endpoint that redirects would make us re-send credentials to wherever it points. TLS
/// is configured by [`verifier::client_config`] (the same verification as reqwest's own, which
/// also records the chains endpoints present); `tls_info` hands each response its leaf.
pub fn build_client(
    tls: &TlsConfig,
    proxy: &ProxySetting,
    slots: &Slots,
) -> Result<Client, ClientError> {
    let chains = Arc::new(Chains::default());
    let rustls = verifier::client_config(tls, &chains).map_err(ClientError::Tls)?;
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("oauth2-exporter/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(slots.idle_per_host())
        .tcp_keepalive(Duration::from_secs(60))
        .tls_backend_preconfigured(rustls)
        .tls_info(true);
    let mut environment_credentials = Vec::new();
    match proxy {
        // reqwest reads the proxy variables itself when the client is built.
        ProxySetting::Environment => environment_credentials = environment_proxy_credentials(),
        ProxySetting::Disabled => builder = builder.no_proxy(),
        ProxySetting::Url(proxy) => {
            let mut all = reqwest::Proxy::all(proxy.url.as_str())?;
            if let Some((user, password)) = &proxy.credentials {
                all = all.basic_auth(user.expose(), password.expose());
            }
            builder = builder.proxy(all);
        }
    }
    Ok(Client {
        http: builder.build()?,
        slots: slots.clone(),
        chains,
        proxy: proxy.clone(),
        environment_credentials: environment_credentials.into(),
    })
}

/// The client a provider with these TLS and proxy settings uses: `shared` (one connection pool
/// for every provider with default settings) unless it needs its own CA, client certificate,
/// verification setting or `proxy_url`. The one rule the scheduler and `check` both follow.
/// Every client takes its slots from the shared one's: the bound is the process's.
pub fn client_for(
    tls: &TlsConfig,
    proxy: &ProxySetting,
    shared: &Client,
) -> Result<Client, ClientError> {
    if tls.is_default() && *proxy == shared.proxy {
        Ok(shared.clone())
    } else {
        build_client(tls, proxy, &shared.slots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 23: both forms of `Retry-After`, and what is not one.
    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after(b"20", now), Some(now + Duration::from_secs(20)));
        assert_eq!(retry_after(b" 0 ", now), Some(now));
        let date = std::time::UNIX_EPOCH + Duration::from_secs(784_111_777);
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(retry_after(form.as_bytes(), now), Some(date), "{form}");
        }
        for junk in ["", "-5", "1.5", "soon", "20 seconds", "\u{ff}"] {
            assert_eq!(retry_after(junk.as_bytes(), now), None, "{junk:?}");
        }
        // A number too large for any clock is capped, not an overflow.
        assert!(retry_after(b"99999999999999999999999", now).is_some());
    }

    #[test]
    fn slots_leave_the_reserve_and_half_the_rest_for_idle_connections() {
        assert_eq!(Slots::for_descriptor_limit(1024).limit(), 448);
        assert_eq!(Slots::for_descriptor_limit(256).limit(), 64);
        // Below the reserve there is still one slot: probes run, one at a time.
        assert_eq!(Slots::for_descriptor_limit(64).limit(), 1);
        assert_eq!(Slots::for_descriptor_limit(u64::MAX).limit(), MAX_SLOTS);
    }

    #[tokio::test]
    async fn a_request_that_finds_no_slot_within_its_timeout_is_exporter_busy() {
        let slots = Slots::new(1);
        let held = slots
            .acquire(Duration::from_secs(1))
            .await
            .expect("a free slot");
        assert_eq!(slots.in_flight(), 1);
        let started = Instant::now();
        let error = slots
            .acquire(Duration::from_secs(2))
            .await
            .expect_err("no slot is free");
        // Half the timeout waited, not less (a slot freed meanwhile would have been taken) and
        // not the whole (the other half would have been the server's). The margin above is a
        // loaded machine's, far below the second that would mean the whole timeout.
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(1) && waited < Duration::from_millis(1900),
            "{waited:?}"
        );
        assert!(
            matches!(&error, TransportError::Busy(m) if m.contains("limit 1")),
            "{error}"
        );
        drop(held);
        assert_eq!(slots.in_flight(), 0);
        let slot = slots.acquire(Duration::from_secs(2)).await.expect("freed");
        assert!(
            slot.remaining > Duration::from_secs(1),
            "{:?}",
            slot.remaining
        );
    }

    #[test]
    fn running_out_of_descriptors_or_ports_is_local_not_the_remote_side() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::EADDRNOTAVAIL] {
            let inner = std::io::Error::from_raw_os_error(errno);
            // As hyper wraps it: an io::Error whose payload is another error.
            let wrapped = std::io::Error::other(inner);
            assert!(is_local_resource_error(&wrapped), "errno {errno}");
        }
        let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert!(!is_local_resource_error(&refused));
    }
}
