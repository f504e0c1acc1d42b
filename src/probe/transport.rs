//! Outgoing HTTP: building clients (redirects off, keep-alive, per-provider TLS settings),
//! reading bodies with a size cap, and classifying transport failures into the fixed reasons
//! `timeout`, `connect` and `tls`.

use std::error::Error as _;
use std::time::Duration;

use crate::config::TlsConfig;
use crate::probe::trace::Trace;

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
        let mut source: Option<&(dyn std::error::Error + 'static)> = error.source();
        while let Some(cause) = source {
            tls |= is_tls_error(cause);
            chain.push(cause.to_string());
            source = cause.source();
        }
        let message = if chain.is_empty() {
            error.to_string()
        } else {
            chain.join(": ")
        };
        if tls {
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

/// Sends a request. Records the status it was answered with (for the 401 count, even when the
/// body then fails) and, in a debug trace, the status line and headers.
pub async fn send(
    request: reqwest::RequestBuilder,
    status_seen: &mut Option<u16>,
    trace: Option<&mut Trace>,
) -> Result<reqwest::Response, TransportError> {
    let response = request
        .send()
        .await
        .map_err(|error| TransportError::from_reqwest(&error))?;
    let status = response.status().as_u16();
    *status_seen = Some(status);
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

/// Builds one client. Redirects are never followed: a token endpoint that redirects would make
/// us re-send credentials to wherever it points.
pub fn build_client(tls: &TlsConfig) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("oauth2-exporter/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_keepalive(Duration::from_secs(60));
    if !tls.ca_certificates.is_empty() {
        builder = builder.tls_certs_merge(tls.ca_certificates.iter().cloned());
    }
    if let Some(client) = &tls.client_identity {
        builder = builder.identity(client.identity.clone());
    }
    if tls.insecure_skip_verify {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    builder.build()
}

/// The client a provider with these TLS settings uses: `shared` (one connection pool for every
/// provider with default settings) unless it needs its own CA, client certificate or
/// verification setting. The one rule the scheduler and `check` both follow.
pub fn client_for(
    tls: &TlsConfig,
    shared: &reqwest::Client,
) -> Result<reqwest::Client, reqwest::Error> {
    if tls.is_default() {
        Ok(shared.clone())
    } else {
        build_client(tls)
    }
}
