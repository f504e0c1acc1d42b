//! The canary step of a probe: one API call with the held token, classified into pass or a
//! fixed failure reason. Knows nothing about metrics.

use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};

use crate::closed_set::closed_set;
use crate::config::CanaryConfig;
use crate::probe::trace::Trace;
use crate::probe::transport::{BodyError, Client, Seen, TransportError, read_body, send};
use crate::secrets::{AccessToken, Scrubber, SecretError};
use crate::shorten::{Shown, shorten};

/// What one canary request produced.
#[derive(Debug)]
pub struct CanaryOutcome {
    pub duration: Duration,
    pub status: Option<u16>,
    /// The endpoint's leaf certificate (https), see [`Seen`].
    pub certificate: Option<u64>,
    /// A 429 or 503 answer's `Retry-After`, as the moment it names (issue 23).
    pub retry_after: Option<SystemTime>,
    pub result: Result<(), CanaryError>,
}

closed_set! {
    /// Why a canary call failed, as the closed `reason` label set. The metrics keep one counter per
    /// variant, so a reason added here is counted without further change.
    CanaryReason {
        Unauthorized => "unauthorized",
        Forbidden => "forbidden",
        InsufficientScope => "insufficient_scope",
        RateLimited => "rate_limited",
        UnexpectedStatus => "unexpected_status",
        Timeout => "timeout",
        Connect => "connect",
        Tls => "tls",
        NoToken => "no_token",
        ExporterBusy => "exporter_busy",
        SecretUnavailable => "secret_unavailable",
    }
}

/// Longest `error_description` of a challenge kept for people to read.
const DESCRIPTION_CHARS: usize = 200;

/// Longest challenge `error` code kept.
const CODE_CHARS: usize = 64;

/// Why a canary call failed. The challenge texts are the API's RFC 6750 `WWW-Authenticate`
/// `error` and `error_description`, sanitised (printable ASCII, bounded, token scrubbed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanaryError {
    /// The API says the token is dead: a status listed in `token_rejected_status` (401 by
    /// default) or `error="invalid_token"` whatever the status. The held token is replaced.
    #[error("the API rejected the token ({status}){}", challenge_suffix(challenge))]
    Unauthorized {
        status: u16,
        challenge: Option<String>,
    },
    /// The token cannot be sent at all (bytes not allowed in a header): the API would not
    /// accept it either, so it counts as rejected and is replaced.
    #[error("the token holds bytes not allowed in an HTTP header, so the API cannot accept it")]
    Unpresentable,
    #[error("the API refused access (403){}", challenge_suffix(challenge))]
    Forbidden { challenge: Option<String> },
    /// `error="insufficient_scope"`: the token is fine, the client lacks a permission.
    #[error(
        "the token lacks a scope or permission the API requires ({status}){}",
        challenge_suffix(challenge)
    )]
    InsufficientScope {
        status: u16,
        challenge: Option<String>,
    },
    #[error("rate limited (429)")]
    RateLimited,
    #[error("unexpected HTTP status {0}")]
    UnexpectedStatus(u16),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("no token is held, so the canary was not sent")]
    NoToken,
    /// A `secret_headers` value could not be read (or is not a valid header value), so the call
    /// was not sent.
    #[error("a secret header could not be read, so the canary was not sent: {0}")]
    SecretUnavailable(SecretError),
}

fn challenge_suffix(challenge: &Option<String>) -> String {
    challenge
        .as_deref()
        .map(|c| format!(": {c}"))
        .unwrap_or_default()
}

impl CanaryError {
    /// The classification: which `reason` this failure is counted under.
    pub fn reason(&self) -> CanaryReason {
        match self {
            CanaryError::Unauthorized { .. } | CanaryError::Unpresentable => {
                CanaryReason::Unauthorized
            }
            CanaryError::Forbidden { .. } => CanaryReason::Forbidden,
            CanaryError::InsufficientScope { .. } => CanaryReason::InsufficientScope,
            CanaryError::RateLimited => CanaryReason::RateLimited,
            CanaryError::UnexpectedStatus(_) => CanaryReason::UnexpectedStatus,
            CanaryError::Transport(TransportError::Timeout) => CanaryReason::Timeout,
            CanaryError::Transport(TransportError::Connect(_)) => CanaryReason::Connect,
            CanaryError::Transport(TransportError::Tls(_)) => CanaryReason::Tls,
            CanaryError::Transport(TransportError::Busy(_)) => CanaryReason::ExporterBusy,
            CanaryError::NoToken => CanaryReason::NoToken,
            CanaryError::SecretUnavailable(_) => CanaryReason::SecretUnavailable,
        }
    }

    /// The API said the token is dead: mark it rejected, fetch a fresh one, retry once.
    pub fn rejects_token(&self) -> bool {
        matches!(
            self,
            CanaryError::Unauthorized { .. } | CanaryError::Unpresentable
        )
    }
}

/// Calls the canary with `Authorization: Bearer <token>`. Never takes longer than `timeout`.
/// With a trace, records the exchange with the token redacted.
pub async fn call(
    client: &Client,
    config: &CanaryConfig,
    token: &AccessToken,
    timeout: Duration,
    mut trace: Option<&mut Trace>,
) -> CanaryOutcome {
    let started = Instant::now();
    let mut seen = Seen::default();
    // The one timer of the request: it bounds sending, the answer and reading its body alike
    // (a reqwest timeout on the request as well would arm a second one).
    let result = match tokio::time::timeout(
        timeout,
        attempt(
            client,
            config,
            token,
            timeout,
            &mut seen,
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
        status: seen.status,
        certificate: seen.certificate,
        retry_after: seen.retry_after,
        result,
    }
}

async fn attempt(
    client: &Client,
    config: &CanaryConfig,
    token: &AccessToken,
    // Only the deadline of reading `secret_headers`: the request itself is bounded by the
    // caller's one timer.
    timeout: Duration,
    seen: &mut Seen,
    mut trace: Option<&mut Trace>,
) -> Result<(), CanaryError> {
    // Reused or just issued, the token is scrubbed from every trace line from here on (an API
    // echoing it in a header, issue 22).
    if let Some(trace) = trace.as_deref_mut() {
        trace.always_scrub().add(token.expose());
    }
    let mut authorization =
        reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            // A token with bytes not allowed in a header cannot be presented: the API would not
            // have accepted it either.
            .map_err(|_| CanaryError::Unpresentable)?;
    authorization.set_sensitive(true);
    // Read on every call, like client secrets: a rotated key takes effect without a restart.
    let started = std::time::Instant::now();
    let mut secret_headers = Vec::with_capacity(config.call.secret_headers.len());
    for (name, source) in &config.call.secret_headers {
        let secret = source
            .read_within(timeout.saturating_sub(started.elapsed()))
            .await
            .map_err(CanaryError::SecretUnavailable)?;
        // The trace shows response headers as received: an API echoing the key in one (a
        // challenge, a debug header) must show `[redacted]` there too.
        if let Some(trace) = trace.as_deref_mut() {
            trace.always_scrub().add(secret.expose());
        }
        let mut value = HeaderValue::from_str(secret.expose()).map_err(|_| {
            CanaryError::SecretUnavailable(SecretError::NotAHeaderValue(name.to_string()))
        })?;
        value.set_sensitive(true);
        secret_headers.push((name, value, secret));
    }
    let mut request = client
        .http
        .request(config.method.clone(), config.url.clone())
        .header(AUTHORIZATION, authorization);
    for (name, value) in &config.call.headers {
        request = request.header(name, value);
    }
    for (name, value, _) in &secret_headers {
        request = request.header(*name, value.clone());
    }
    if let Some(trace) = trace.as_deref_mut() {
        trace.line(format!(
            "-> {} {}",
            config.method,
            crate::probe::trace::redact_query(config.url.as_str())
        ));
        trace.line("Authorization: Bearer [redacted]");
        for (name, value) in &config.call.headers {
            trace.line(crate::probe::trace::header_line(
                name.as_str(),
                value.as_bytes(),
            ));
        }
        for (name, _, _) in &secret_headers {
            trace.line(format!("{name}: [redacted] (secret_headers)"));
        }
    }
    let response = send(request, seen, trace.as_deref_mut()).await?;
    let status = response.status().as_u16();
    let passes = config.call.passes(status);
    // The token is scrubbed from what a person may read: the trace's body excerpt and a failing
    // answer's challenge. A passing call without a trace (every periodic probe that works)
    // needs neither, so it builds no scrubber.
    let scrubber = (trace.is_some() || !passes).then(|| {
        let mut scrubber = Scrubber::default();
        client.add_secrets(&mut scrubber);
        scrubber.add(token.expose());
        for (_, _, secret) in &secret_headers {
            scrubber.add(secret.expose());
        }
        scrubber
    });
    let challenge = match &scrubber {
        Some(scrubber) if !passes => bearer_challenge(
            response
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|value| value.to_str().ok()),
        )
        .map(|(code, description)| {
            let code = shorten(&scrubber.scrub(&code), CODE_CHARS, Shown::AsciiWord);
            let description = description
                .map(|d| {
                    let shown = shorten(&scrubber.scrub(&d), DESCRIPTION_CHARS, Shown::Ascii);
                    format!(": {shown}")
                })
                .unwrap_or_default();
            (code.clone(), format!("{code}{description}"))
        }),
        _ => None,
    };
    // Read the body so the connection can be reused. It is not logged; a debug trace shows an
    // excerpt to the operator who asked for it, scrubbed of the token.
    match read_body(response).await {
        Ok(body) => {
            if let (Some(trace), Some(scrubber)) = (trace, &scrubber) {
                trace.body(&body, &[], scrubber);
            }
        }
        Err(BodyError::TooLarge) => {}
        Err(BodyError::Transport(error)) => return Err(error.into()),
    }
    if passes {
        return Ok(());
    }
    let (code, challenge) = match challenge {
        Some((code, text)) => (Some(code), Some(text)),
        None => (None, None),
    };
    let client_error = (400..500).contains(&status);
    Err(match code.as_deref() {
        // RFC 6750 section 3.1: the challenge says what is wrong, whatever the status.
        Some("invalid_token") if client_error => CanaryError::Unauthorized { status, challenge },
        Some("insufficient_scope") if client_error => {
            CanaryError::InsufficientScope { status, challenge }
        }
        _ if config.call.token_rejected_status.contains(&status) => {
            CanaryError::Unauthorized { status, challenge }
        }
        _ => match status {
            403 => CanaryError::Forbidden { challenge },
            429 => CanaryError::RateLimited,
            other => CanaryError::UnexpectedStatus(other),
        },
    })
}

/// The `error` and `error_description` of the first `Bearer` challenge with an `error`, from
/// `WWW-Authenticate` values (RFC 6750 section 3, RFC 9110 section 11.6.1 syntax: challenges
/// and their comma-separated `name=value` parameters, values as tokens or quoted strings).
/// Unparseable text yields what could be read, never a failure: this only refines a reason.
pub(crate) fn bearer_challenge<'a>(
    values: impl Iterator<Item = &'a str>,
) -> Option<(String, Option<String>)> {
    for value in values {
        let mut rest = value;
        let mut in_bearer = false;
        let mut error = None;
        let mut description = None;
        loop {
            rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
            if rest.is_empty() {
                break;
            }
            let end = rest
                .find(|c: char| c == '=' || c == ',' || c.is_ascii_whitespace())
                .unwrap_or(rest.len());
            let name = &rest[..end];
            rest = &rest[end..];
            let after_space = rest.trim_start();
            if let Some(after) = after_space.strip_prefix('=')
                && !after.starts_with('=')
            {
                let (param, tail) = auth_param_value(after.trim_start());
                rest = tail;
                if in_bearer {
                    if name.eq_ignore_ascii_case("error") {
                        error.get_or_insert(param);
                    } else if name.eq_ignore_ascii_case("error_description") {
                        description.get_or_insert(param);
                    }
                }
            } else if name.is_empty() {
                // A stray `=` (token68 padding): skip it.
                rest = &rest[rest.len().min(1)..];
            } else {
                // A new challenge starts with its scheme.
                if in_bearer && error.is_some() {
                    break;
                }
                in_bearer = name.eq_ignore_ascii_case("bearer");
                error = None;
                description = None;
            }
        }
        if in_bearer && let Some(error) = error {
            return Some((error, description));
        }
    }
    None
}

/// One parameter value (a quoted string with `\` escapes, or a token) and the text after it.
fn auth_param_value(text: &str) -> (String, &str) {
    if let Some(quoted) = text.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = quoted.char_indices();
        while let Some((at, c)) = chars.next() {
            match c {
                '"' => return (out, &quoted[at + 1..]),
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        out.push(escaped);
                    }
                }
                c => out.push(c),
            }
        }
        (out, "")
    } else {
        let end = text
            .find(|c: char| c == ',' || c.is_ascii_whitespace())
            .unwrap_or(text.len());
        (text[..end].to_string(), &text[end..])
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_challenge;

    /// The `error` and `error_description` expected, or no Bearer error at all.
    type Expected = Option<(&'static str, Option<&'static str>)>;

    /// RFC 6750 challenges as servers send them (issue 11), and text that is not one.
    #[test]
    fn bearer_challenge_reads_error_and_description() {
        let cases: &[(&[&str], Expected)] = &[
            (
                &[
                    r#"Bearer realm="api", error="invalid_token", error_description="The access token expired""#,
                ],
                Some(("invalid_token", Some("The access token expired"))),
            ),
            (
                &[r#"bearer error=insufficient_scope,scope="read write""#],
                Some(("insufficient_scope", None)),
            ),
            // Escapes inside a quoted string; a comma inside quotes is not a separator.
            (
                &[r#"Bearer error="invalid_token", error_description="say \"no\", twice""#],
                Some(("invalid_token", Some(r#"say "no", twice"#))),
            ),
            // The Bearer challenge after another scheme's, in one value or in two.
            (
                &[r#"Basic realm="x", Bearer realm="api", error="invalid_token""#],
                Some(("invalid_token", None)),
            ),
            (
                &[r#"Basic realm="x""#, r#"Bearer error="invalid_token""#],
                Some(("invalid_token", None)),
            ),
            // Another scheme's error parameter is not a Bearer error.
            (&[r#"DPoP error="invalid_token", Bearer realm="api""#], None),
            (&[r#"Bearer realm="api""#], None),
            (&["Negotiate abc=="], None),
            (
                &[r#"Bearer error="unterminated"#],
                Some(("unterminated", None)),
            ),
            (&[""], None),
        ];
        for (values, expected) in cases {
            let got = bearer_challenge(values.iter().copied());
            let expected = expected.map(|(e, d)| (e.to_string(), d.map(str::to_string)));
            assert_eq!(got, expected, "{values:?}");
        }
    }
}
