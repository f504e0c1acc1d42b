//! The canary step of a probe: one API call with the held token, classified into pass or a
//! fixed failure reason. Knows nothing about metrics.

use std::time::{Duration, Instant};

use reqwest::header::AUTHORIZATION;

use crate::config::CanaryConfig;
use crate::probe::trace::Trace;
use crate::probe::transport::{BodyError, TransportError, read_body, send};
use crate::secrets::{AccessToken, Scrubber};

/// What one canary request produced.
#[derive(Debug)]
pub struct CanaryOutcome {
    pub duration: Duration,
    pub status: Option<u16>,
    pub result: Result<(), CanaryError>,
}

reason_enum! {
    /// Why a canary call failed, as the closed `reason` label set. The metrics keep one counter per
    /// variant, so a reason added here is counted without further change.
    CanaryReason {
        Unauthorized => "unauthorized",
        Forbidden => "forbidden",
        RateLimited => "rate_limited",
        UnexpectedStatus => "unexpected_status",
        Timeout => "timeout",
        Connect => "connect",
        Tls => "tls",
        NoToken => "no_token",
        ExporterBusy => "exporter_busy",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanaryError {
    #[error("the API rejected the token (401)")]
    Unauthorized,
    #[error("the API refused access (403)")]
    Forbidden,
    #[error("rate limited (429)")]
    RateLimited,
    #[error("unexpected HTTP status {0}")]
    UnexpectedStatus(u16),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("no token is held, so the canary was not sent")]
    NoToken,
}

impl CanaryError {
    /// The classification: which `reason` this failure is counted under.
    pub fn reason(&self) -> CanaryReason {
        match self {
            CanaryError::Unauthorized => CanaryReason::Unauthorized,
            CanaryError::Forbidden => CanaryReason::Forbidden,
            CanaryError::RateLimited => CanaryReason::RateLimited,
            CanaryError::UnexpectedStatus(_) => CanaryReason::UnexpectedStatus,
            CanaryError::Transport(TransportError::Timeout) => CanaryReason::Timeout,
            CanaryError::Transport(TransportError::Connect(_)) => CanaryReason::Connect,
            CanaryError::Transport(TransportError::Tls(_)) => CanaryReason::Tls,
            CanaryError::Transport(TransportError::Busy(_)) => CanaryReason::ExporterBusy,
            CanaryError::NoToken => CanaryReason::NoToken,
        }
    }
}

/// Calls the canary with `Authorization: Bearer <token>`. Never takes longer than `timeout`.
/// With a trace, records the exchange with the token redacted.
pub async fn call(
    client: &reqwest::Client,
    config: &CanaryConfig,
    token: &AccessToken,
    timeout: Duration,
    mut trace: Option<&mut Trace>,
) -> CanaryOutcome {
    let started = Instant::now();
    let mut status = None;
    let result = match tokio::time::timeout(
        timeout,
        attempt(
            client,
            config,
            token,
            timeout,
            &mut status,
            trace.as_deref_mut(),
        ),
    )
    .await
    {
        Ok(result) => result,
        Err(_elapsed) => Err(TransportError::Timeout.into()),
    };
    let duration = started.elapsed();
    if let Some(trace) = trace {
        trace.line(format!("took {} ms", duration.as_millis()));
        match &result {
            Ok(()) => trace.line("result: passed"),
            Err(error) => trace.line(format!(
                "result: failed, reason {}: {error}",
                error.reason()
            )),
        }
    }
    CanaryOutcome {
        duration,
        status,
        result,
    }
}

async fn attempt(
    client: &reqwest::Client,
    config: &CanaryConfig,
    token: &AccessToken,
    timeout: Duration,
    status_seen: &mut Option<u16>,
    mut trace: Option<&mut Trace>,
) -> Result<(), CanaryError> {
    let mut authorization =
        reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            // A token with bytes not allowed in a header cannot be presented: the API would not
            // have accepted it either.
            .map_err(|_| CanaryError::Unauthorized)?;
    authorization.set_sensitive(true);
    let mut request = client
        .request(config.method.clone(), config.url.clone())
        .timeout(timeout)
        .header(AUTHORIZATION, authorization);
    for (name, value) in &config.headers {
        request = request.header(name, value);
    }
    if let Some(trace) = trace.as_deref_mut() {
        trace.line(format!("-> {} {}", config.method, config.url));
        trace.line("Authorization: Bearer [redacted]");
        for (name, value) in &config.headers {
            trace.line(crate::probe::trace::header_line(
                name.as_str(),
                value.as_bytes(),
            ));
        }
    }
    let response = send(request, status_seen, trace.as_deref_mut()).await?;
    let status = response.status().as_u16();
    // Read the body so the connection can be reused. It is not logged; a debug trace shows an
    // excerpt to the operator who asked for it, scrubbed of the token.
    match read_body(response).await {
        Ok(body) => {
            if let Some(trace) = trace {
                let mut scrubber = Scrubber::default();
                scrubber.add(token.expose());
                trace.body(&body, &[], &scrubber);
            }
        }
        Err(BodyError::TooLarge) => {}
        Err(BodyError::Transport(error)) => return Err(error.into()),
    }
    if config.passes(status) {
        return Ok(());
    }
    Err(match status {
        401 => CanaryError::Unauthorized,
        403 => CanaryError::Forbidden,
        429 => CanaryError::RateLimited,
        other => CanaryError::UnexpectedStatus(other),
    })
}
