//! The canary step of a probe: one API call with the held token, classified into pass or a
//! fixed failure reason. Knows nothing about metrics.

use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};

use crate::closed_set::closed_set;
use crate::config::CanaryConfig;
use crate::probe::dpop::{self, Dpop};
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
        Dpop => "dpop",
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
    /// DPoP (issue 25): the API refused the proof (`DPoP error="invalid_dpop_proof"`, or
    /// `use_dpop_nonce` still after the one retry with its nonce), or answered a DPoP-bound
    /// call with a Bearer challenge only (it does not take DPoP tokens); or no proof could be
    /// made, so nothing was sent.
    #[error("DPoP: {detail}")]
    Dpop { detail: String },
}

/// The `DPoP` challenge `error` codes of RFC 9449 (sections 7.1 and 9) that blame the proof.
const DPOP_ERROR_CODES: [&str; 2] = ["invalid_dpop_proof", "use_dpop_nonce"];

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
            CanaryError::Dpop { .. } => CanaryReason::Dpop,
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

/// Calls the canary with `Authorization: Bearer <token>`, or with DPoP `Authorization: DPoP
/// <token>` and a proof. Never takes longer than `timeout`. With a trace, records the exchange
/// with the token and proof redacted.
pub async fn call(
    client: &Client,
    config: &CanaryConfig,
    token: &AccessToken,
    dpop: Option<&mut Dpop>,
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
            dpop,
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

#[allow(clippy::too_many_arguments)] // each is the call's own input; a struct would only rename them
async fn attempt(
    client: &Client,
    config: &CanaryConfig,
    token: &AccessToken,
    mut dpop: Option<&mut Dpop>,
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
    // RFC 9449 section 7.1: a DPoP-bound token travels under its own scheme.
    let scheme = if dpop.is_some() { "DPoP" } else { "Bearer" };
    let mut authorization =
        reqwest::header::HeaderValue::from_str(&format!("{scheme} {}", token.expose()))
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
    let mut proofs = Vec::new();
    let mut retried = false;
    let response = loop {
        // A fresh proof for every call, with the API's nonce once it gave one.
        let proof = match dpop.as_deref() {
            Some(dpop) => Some(
                dpop.proof(&config.method, &config.url, Some(token))
                    .map_err(|error| CanaryError::Dpop {
                        detail: format!(
                            "no proof could be made, so the canary was not sent: {error}"
                        ),
                    })?,
            ),
            None => None,
        };
        let mut request = client
            .http
            .request(config.method.clone(), config.url.clone())
            .header(AUTHORIZATION, authorization.clone());
        for (name, value) in &config.call.headers {
            request = request.header(name, value);
        }
        for (name, value, _) in &secret_headers {
            request = request.header(*name, value.clone());
        }
        if let Some(proof) = &proof {
            request = request.header(dpop::HEADER, proof.value.clone());
        }
        if let Some(trace) = trace.as_deref_mut() {
            trace.line(format!(
                "-> {} {}",
                config.method,
                crate::probe::trace::redact_query(config.url.as_str())
            ));
            trace.line(format!("Authorization: {scheme} [redacted]"));
            for (name, value) in &config.call.headers {
                trace.line(crate::probe::trace::header_line(
                    name.as_str(),
                    value.as_bytes(),
                ));
            }
            for (name, _, _) in &secret_headers {
                trace.line(format!("{name}: [redacted] (secret_headers)"));
            }
            if let Some(proof) = &proof {
                trace.always_scrub().add(proof.proof.expose());
                trace.line("DPoP: [redacted] (the proof, decoded below)");
                trace.dpop_proof(&proof.header, &proof.claims);
            }
        }
        if let Some(proof) = proof {
            proofs.push(proof.proof);
        }
        let response = send(request, seen, trace.as_deref_mut()).await?;
        let Some(dpop) = dpop.as_deref_mut() else {
            break response;
        };
        let gave_nonce = dpop.saw_nonce(&config.url, response.headers());
        // RFC 9449 section 9: the API wants its nonce in the proof; it gave one, so call once
        // more with it.
        let wants_nonce = response.status() == reqwest::StatusCode::UNAUTHORIZED
            && challenge_of("dpop", www_authenticate(response.headers()))
                .is_some_and(|(code, _)| code == "use_dpop_nonce");
        if retried || !gave_nonce || !wants_nonce {
            break response;
        }
        retried = true;
        // Read so the connection can be reused; the answer that matters is the next one.
        let _ = read_body(response).await;
        if let Some(trace) = trace.as_deref_mut() {
            trace.line(
                "the API asked for a DPoP nonce (use_dpop_nonce) and gave one: calling once more with it",
            );
        }
    };
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
        for proof in &proofs {
            scrubber.add(proof.expose());
        }
        scrubber
    });
    // With DPoP the API's DPoP challenge says what is wrong; an API that answers a DPoP call
    // with Bearer challenges only does not take DPoP tokens at all. Read only for a failure.
    let (dpop_challenge, bearer_only) = if dpop.is_some() && !passes {
        let found = challenges(www_authenticate(response.headers()));
        let offers = |scheme: &str| found.iter().any(|c| c.scheme.eq_ignore_ascii_case(scheme));
        (
            challenge_of("dpop", www_authenticate(response.headers())),
            offers("bearer") && !offers("dpop"),
        )
    } else {
        (None, false)
    };
    let challenge = match &scrubber {
        Some(scrubber) if !passes => dpop_challenge
            .or_else(|| bearer_challenge(www_authenticate(response.headers())))
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
    if let Some(code) = code.as_deref()
        && dpop.is_some()
        && client_error
        && DPOP_ERROR_CODES.contains(&code)
    {
        return Err(CanaryError::Dpop {
            detail: format!(
                "the API refused the proof ({status}): {}",
                challenge.unwrap_or_default()
            ),
        });
    }
    if bearer_only && config.call.token_rejected_status.contains(&status) {
        return Err(CanaryError::Dpop {
            detail: format!(
                "the API answered the DPoP-bound call with a Bearer challenge only ({status}{}): it does not take DPoP tokens",
                challenge_suffix(&challenge)
            ),
        });
    }
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

/// The `WWW-Authenticate` values of a response that are text.
fn www_authenticate(headers: &reqwest::header::HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|value| value.to_str().ok())
}

/// One challenge of a `WWW-Authenticate` header: its scheme and the parameters read here.
#[derive(Debug, Default)]
struct Challenge {
    scheme: String,
    error: Option<String>,
    description: Option<String>,
}

/// Most challenges read from one response: more say nothing new, and bound the work.
const MAX_CHALLENGES: usize = 16;

/// Every challenge of `WWW-Authenticate` values (RFC 9110 section 11.6.1 syntax: challenges
/// and their comma-separated `name=value` parameters, values as tokens or quoted strings), with
/// its `error` and `error_description`. Unparseable text yields what could be read, never a
/// failure: this only refines a reason.
fn challenges<'a>(values: impl Iterator<Item = &'a str>) -> Vec<Challenge> {
    let mut found: Vec<Challenge> = Vec::new();
    for value in values {
        // Parameters belong to the challenge begun in the same value.
        let mut current: Option<usize> = None;
        let mut rest = value;
        loop {
            rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
            if rest.is_empty() || found.len() > MAX_CHALLENGES {
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
                if let Some(challenge) = current.and_then(|at| found.get_mut(at)) {
                    if name.eq_ignore_ascii_case("error") {
                        challenge.error.get_or_insert(param);
                    } else if name.eq_ignore_ascii_case("error_description") {
                        challenge.description.get_or_insert(param);
                    }
                }
            } else if name.is_empty() {
                // A stray `=` (token68 padding): skip it.
                rest = &rest[rest.len().min(1)..];
            } else {
                // A new challenge starts with its scheme.
                found.push(Challenge {
                    scheme: name.to_string(),
                    ..Challenge::default()
                });
                current = Some(found.len() - 1);
            }
        }
    }
    found
}

/// The `error` and `error_description` of the first challenge of `scheme` (any case) with an
/// `error`.
fn challenge_of<'a>(
    scheme: &str,
    values: impl Iterator<Item = &'a str>,
) -> Option<(String, Option<String>)> {
    challenges(values)
        .into_iter()
        .find(|c| c.scheme.eq_ignore_ascii_case(scheme) && c.error.is_some())
        .and_then(|c| Some((c.error?, c.description)))
}

/// The `error` and `error_description` of the first `Bearer` challenge with an `error` (RFC
/// 6750 section 3).
pub(crate) fn bearer_challenge<'a>(
    values: impl Iterator<Item = &'a str>,
) -> Option<(String, Option<String>)> {
    challenge_of("bearer", values)
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
    use super::{bearer_challenge, challenge_of, challenges};

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

    /// Issue 25: a DPoP challenge is read apart from a Bearer one in the same header, and the
    /// schemes a response offers are known even without an `error`.
    #[test]
    fn dpop_challenges_are_read_by_their_scheme() {
        let values = [
            r#"Bearer realm="api", DPoP algs="ES256 PS256", error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#,
        ];
        assert_eq!(
            challenge_of("dpop", values.iter().copied()),
            Some((
                "use_dpop_nonce".to_string(),
                Some("Resource server requires nonce in DPoP proof".to_string())
            ))
        );
        assert_eq!(bearer_challenge(values.iter().copied()), None);
        let schemes: Vec<String> = challenges(values.iter().copied())
            .into_iter()
            .map(|c| c.scheme)
            .collect();
        assert_eq!(schemes, ["Bearer", "DPoP"]);
    }
}
