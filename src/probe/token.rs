//! The token step of a probe: build the token request in the provider's dialect, send it, and
//! turn the answer into an issued token or a classified failure. Knows nothing about metrics.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::{ACCEPT, AUTHORIZATION, RETRY_AFTER};
use serde_json::Value;
use url::Url;

use crate::closed_set::closed_set;
use crate::config::{AuthMethod, Grant, TokenConfig};
use crate::probe::client_auth::{AuthError, ClientAuth, Credentials, Decoration};
use crate::probe::discovery::DiscoveryError;
use crate::probe::dpop::{self, Dpop, DpopError};
use crate::probe::jwt;
use crate::probe::trace::Trace;
use crate::probe::transport::{BodyError, Client, Seen, TransportError, read_body, send};
use crate::secrets::{AccessToken, Scrubber, SecretError};
use crate::shorten::{Shown, shorten};

/// Longest server-supplied text (error_description, body excerpt) kept for the log.
const EXCERPT_CHARS: usize = 200;

/// Longest server-supplied OAuth `error` code shown to people (issue 11: codes outside RFC 6749
/// are shown as sent, but bounded).
const CODE_CHARS: usize = 64;

/// Lifetimes beyond this are not believed: they overflow time arithmetic and are a server bug.
const MAX_LIFETIME: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// What one token request produced.
#[derive(Debug)]
pub struct TokenOutcome {
    pub duration: Duration,
    /// The HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// The endpoint's leaf certificate (https), see [`Seen`].
    pub certificate: Option<u64>,
    /// Keyed hashes ([`crate::probe::expiry::fingerprint`]) of the client secret, the password,
    /// the private key and the client assertion file read for this request (0: not read), so
    /// the prober notices a rotation without keeping any of them.
    pub credentials: [u64; 4],
    /// A 429 or 503 answer's `Retry-After`, as the moment it names (issue 23).
    pub retry_after: Option<SystemTime>,
    pub result: Result<IssuedToken, TokenError>,
}

/// A token and what is known of its lifetime.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub access_token: AccessToken,
    /// Lifetime as issued (`expires_in`, or `exp - iat` of the JWT).
    pub lifetime: Option<Duration>,
    pub expires_at: Option<SystemTime>,
}

/// The RFC 6749 section 5.2 error codes that get their own reason.
const OAUTH_ERROR_CODES: [TokenReason; 6] = [
    TokenReason::InvalidClient,
    TokenReason::InvalidGrant,
    TokenReason::InvalidScope,
    TokenReason::InvalidRequest,
    TokenReason::UnauthorizedClient,
    TokenReason::UnsupportedGrantType,
];

closed_set! {
    /// Why a token request failed, as the closed `reason` label set. The metrics keep one counter
    /// per variant, so a reason added here is counted without further change.
    TokenReason {
        InvalidClient => "invalid_client",
        InvalidGrant => "invalid_grant",
        InvalidScope => "invalid_scope",
        InvalidRequest => "invalid_request",
        UnauthorizedClient => "unauthorized_client",
        UnsupportedGrantType => "unsupported_grant_type",
        OAuthError => "oauth_error",
        RateLimited => "rate_limited",
        Http4xx => "http_4xx",
        Http5xx => "http_5xx",
        Timeout => "timeout",
        Connect => "connect",
        Tls => "tls",
        InvalidResponse => "invalid_response",
        SecretUnavailable => "secret_unavailable",
        ExporterBusy => "exporter_busy",
        Claims => "claims",
        ClientAssertion => "client_assertion",
        Discovery => "discovery",
        Dpop => "dpop",
    }
}

/// Why a token request failed. Each variant maps to one fixed `reason` label value; the texts
/// are for the log and are already scrubbed of the secrets that were sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the client secret or password could not be read: {0}")]
    SecretUnavailable(#[from] SecretError),
    /// The private key or certificate file could not be read: like a secret file, a secret
    /// mount's trouble, so `secret_unavailable`.
    #[error("the private key or certificate could not be read: {0}")]
    KeyUnavailable(String),
    /// An assertion could not be made: an unusable key or certificate (a rotated file that does
    /// not parse or fit), a signing failure, or a `client_assertion_file` that is missing,
    /// unreadable, not a JWT or expired (issue 25). Nothing was sent.
    #[error("cannot make the client assertion: {0}")]
    ClientAssertion(String),
    #[error("OAuth error {code}{}", description_suffix(description))]
    OAuth {
        /// The server's own `error` code, sanitised (printable ASCII, at most 64 characters):
        /// an RFC 6749 code has a reason of its own, any other counts as `oauth_error`.
        code: String,
        description: Option<String>,
    },
    /// A 5xx answer: the server is in trouble whatever its body says, so it counts as
    /// `http_5xx` (issue 11); an OAuth error body it carried is kept for people to read.
    #[error(
        "HTTP {status} with OAuth error {code}{}",
        description_suffix(description)
    )]
    ServerOAuth {
        status: u16,
        code: String,
        description: Option<String>,
    },
    #[error("rate limited{}", retry_after.as_deref().map(|r| format!(" (Retry-After: {r})")).unwrap_or_default())]
    RateLimited { retry_after: Option<String> },
    #[error("HTTP {status} without an OAuth error body{}", body_suffix(body))]
    HttpStatus { status: u16, body: String },
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("invalid token response: {0}")]
    InvalidResponse(String),
    /// A token was issued, but it does not carry what `[token.expect]` asks (issue 13). The
    /// text names the claim and the expected value (configuration), never the token.
    #[error("{0}")]
    Claims(String),
    /// `issuer` is configured and no usable token endpoint is known yet: the metadata could not
    /// be fetched, or failed its checks.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// DPoP (issue 25): the server answered a DPoP token request with a token that is not
    /// DPoP-bound (`token_type` Bearer, or none), or no proof could be made (the key file
    /// rotated to something unusable). A server's `invalid_dpop_proof` is an [`TokenError::OAuth`]
    /// counted as `dpop` too.
    #[error("DPoP: {0}")]
    Dpop(String),
}

/// The OAuth error codes of RFC 9449 (sections 5 and 8): a proof the server refused, or a
/// nonce it still wants after the one retry with it.
const DPOP_ERROR_CODES: [&str; 2] = ["invalid_dpop_proof", "use_dpop_nonce"];

fn description_suffix(description: &Option<String>) -> String {
    description
        .as_deref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

fn body_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

impl TokenError {
    /// The classification: which `reason` this failure is counted under.
    pub fn reason(&self) -> TokenReason {
        match self {
            TokenError::SecretUnavailable(_) | TokenError::KeyUnavailable(_) => {
                TokenReason::SecretUnavailable
            }
            TokenError::ClientAssertion(_) => TokenReason::ClientAssertion,
            TokenError::OAuth { code, .. } if DPOP_ERROR_CODES.contains(&code.as_str()) => {
                TokenReason::Dpop
            }
            TokenError::OAuth { code, .. } => OAUTH_ERROR_CODES
                .into_iter()
                .find(|known| known.as_str() == code)
                .unwrap_or(TokenReason::OAuthError),
            TokenError::ServerOAuth { .. } => TokenReason::Http5xx,
            TokenError::RateLimited { .. } => TokenReason::RateLimited,
            TokenError::HttpStatus { status, .. } if *status >= 500 => TokenReason::Http5xx,
            TokenError::HttpStatus { .. } => TokenReason::Http4xx,
            TokenError::Transport(TransportError::Timeout) => TokenReason::Timeout,
            TokenError::Transport(TransportError::Connect(_)) => TokenReason::Connect,
            TokenError::Transport(TransportError::Tls(_)) => TokenReason::Tls,
            TokenError::Transport(TransportError::Busy(_)) => TokenReason::ExporterBusy,
            TokenError::InvalidResponse(_) => TokenReason::InvalidResponse,
            TokenError::Claims(_) => TokenReason::Claims,
            TokenError::Discovery(_) => TokenReason::Discovery,
            TokenError::Dpop(_) => TokenReason::Dpop,
        }
    }

    /// The `error_description` the server gave, if any (scrubbed).
    pub fn description(&self) -> Option<&str> {
        match self {
            TokenError::OAuth { description, .. } | TokenError::ServerOAuth { description, .. } => {
                description.as_deref()
            }
            _ => None,
        }
    }
}

/// Requests a token from `endpoint`: the configured `url`, or the `token_endpoint` discovery
/// found for the `issuer` (resolved by the caller for this request, so a refreshed endpoint is
/// used as soon as it is known). Never takes longer than `timeout` (plus scheduling noise). With
/// a trace, records each step with secrets and tokens redacted.
pub async fn request_token(
    client: &Client,
    config: &TokenConfig,
    auth: &mut ClientAuth,
    mut dpop: Option<&mut Dpop>,
    endpoint: &Url,
    timeout: Duration,
    mut trace: Option<&mut Trace>,
) -> TokenOutcome {
    let started = Instant::now();
    let requested_at = SystemTime::now();
    let mut seen = Seen::default();
    let mut fingerprints = [0; 4];
    // The secrets first, each with the provider's timeout as its deadline: a secret file on a
    // stalled mount is `secret_unavailable` (not `timeout`, which blames the identity provider),
    // and the request gets what is left of the timeout.
    let result = match auth.read(config, timeout).await {
        Err(error) => Err(error.into()),
        Ok(credentials) => {
            fingerprints = credentials.fingerprints();
            let left = timeout.saturating_sub(started.elapsed());
            let attempts = async {
                let request = Request {
                    client,
                    config,
                    endpoint,
                    credentials: &credentials,
                    requested_at,
                };
                let (result, wants_nonce) = attempt(
                    &request,
                    auth,
                    dpop.as_deref_mut(),
                    &mut seen,
                    trace.as_deref_mut(),
                )
                .await;
                if !wants_nonce {
                    return result;
                }
                // RFC 9449 section 8: the server wants its nonce in the proof; it gave one, so
                // send once more with it (a fresh proof, and a fresh client assertion: the
                // first one's `jti` may be spent).
                if let Some(trace) = trace.as_deref_mut() {
                    trace.line(
                        "the server asked for a DPoP nonce (use_dpop_nonce) and gave one: sending once more with it",
                    );
                }
                attempt(&request, auth, dpop, &mut seen, trace.as_deref_mut())
                    .await
                    .0
            };
            match tokio::time::timeout(left, attempts).await {
                Ok(result) => result,
                Err(_elapsed) => Err(TokenError::Transport(TransportError::Timeout)),
            }
        }
    };
    let duration = started.elapsed();
    if let Some(trace) = trace {
        trace.line(format!("took {} ms", duration.as_millis()));
        match &result {
            Ok(issued) => {
                let lifetime = issued
                    .lifetime
                    .map(|l| format!("{:.0}s", l.as_secs_f64()))
                    .unwrap_or_else(|| "unknown".into());
                trace.line(format!("result: token obtained, lifetime {lifetime}"));
                trace.jwt(issued.access_token.expose());
            }
            Err(error) => trace.line(format!(
                "result: failed, reason {}: {error}",
                error.reason()
            )),
        }
    }
    TokenOutcome {
        duration,
        status: seen.status,
        certificate: seen.certificate,
        credentials: fingerprints,
        retry_after: seen.retry_after,
        result,
    }
}

/// The request body, kept as fields so that it can be both sent and shown with secrets redacted.
enum Body {
    Form(Vec<(String, String)>),
    Json(serde_json::Map<String, Value>),
}

impl From<DpopError> for TokenError {
    fn from(error: DpopError) -> TokenError {
        match error {
            DpopError::Unreadable(detail) => TokenError::KeyUnavailable(detail),
            DpopError::Unusable(detail) => TokenError::Dpop(detail),
        }
    }
}

impl From<AuthError> for TokenError {
    fn from(error: AuthError) -> TokenError {
        match error {
            AuthError::Secret(error) => TokenError::SecretUnavailable(error),
            AuthError::KeyUnreadable(detail) => TokenError::KeyUnavailable(detail),
            AuthError::Assertion(detail) => TokenError::ClientAssertion(detail),
        }
    }
}

/// What one token request is made of, the same for its retry with a DPoP nonce.
struct Request<'a> {
    client: &'a Client,
    config: &'a TokenConfig,
    endpoint: &'a Url,
    credentials: &'a Credentials,
    requested_at: SystemTime,
}

/// One token request sent and read: its result, and whether it is worth sending once more
/// (the server answered `use_dpop_nonce` and gave a nonce).
async fn attempt(
    request: &Request<'_>,
    auth: &mut ClientAuth,
    dpop: Option<&mut Dpop>,
    seen: &mut Seen,
    trace: Option<&mut Trace>,
) -> (Result<IssuedToken, TokenError>, bool) {
    let mut gave_nonce = false;
    let result = send_and_read(request, auth, dpop, &mut gave_nonce, seen, trace).await;
    let wants_nonce = gave_nonce
        && matches!(&result, Err(TokenError::OAuth { code, .. }) if code == "use_dpop_nonce");
    (result, wants_nonce)
}

async fn send_and_read(
    request: &Request<'_>,
    auth: &mut ClientAuth,
    dpop: Option<&mut Dpop>,
    gave_nonce: &mut bool,
    seen: &mut Seen,
    mut trace: Option<&mut Trace>,
) -> Result<IssuedToken, TokenError> {
    let Request {
        client,
        config,
        endpoint,
        credentials,
        requested_at,
    } = *request;
    let mut scrubber = Scrubber::default();
    client.add_secrets(&mut scrubber);
    // `endpoint` is the one this request goes to (the configured `url`, or the discovered one):
    // an assertion's default audience is taken from it.
    let decoration = auth.decorate(config, credentials, endpoint, &mut scrubber)?;
    // A fresh proof for every request (RFC 9449 section 11.1: a server refuses a `jti` it saw).
    let proof = match dpop.as_deref() {
        Some(dpop) => Some(
            dpop.proof(&reqwest::Method::POST, endpoint, None)
                .map_err(TokenError::from)?,
        ),
        None => None,
    };
    if let Some(proof) = &proof {
        scrubber.add(proof.proof.expose());
    }
    // Every line of the trace from here on (response headers included) is scrubbed of what
    // this request sends (issue 22).
    if let Some(trace) = trace.as_deref_mut() {
        trace.always_scrub().extend(&scrubber);
    }

    let username = match &config.grant {
        Grant::Password(grant) => Some(grant.username.as_str()),
        Grant::ClientCredentials | Grant::JwtBearer(_) => None,
    };
    let password = credentials.password();
    let scope = (!config.scopes.is_empty()).then(|| config.scopes.join(" "));
    let body = if config.auth_method == AuthMethod::JsonBody {
        let fields = &config.json_fields;
        let mut body = serde_json::Map::new();
        for (key, value) in &decoration.fields {
            body.insert(key.clone(), value.clone().into());
        }
        if let (Some(username), Some(password)) = (username, password) {
            body.insert(fields.username.clone(), username.to_string().into());
            body.insert(
                fields.password.clone(),
                password.expose().to_string().into(),
            );
        }
        if let Some(scope) = scope {
            body.insert("scope".to_string(), scope.into());
        }
        for (key, value) in config.json_params() {
            body.insert(key.to_string(), value);
        }
        Body::Json(body)
    } else {
        let mut form = vec![("grant_type".to_string(), config.grant.wire().to_string())];
        form.extend(decoration.fields.iter().cloned());
        if let (Some(username), Some(password)) = (username, password) {
            form.push(("username".into(), username.to_string()));
            form.push(("password".into(), password.expose().to_string()));
        }
        if let Some(scope) = scope {
            form.push(("scope".into(), scope));
        }
        form.extend(
            config
                .form_params()
                .map(|(key, value)| (key.to_string(), value.to_string())),
        );
        Body::Form(form)
    };

    if let Some(trace) = trace.as_deref_mut() {
        trace_request(trace, config, endpoint, &body, &decoration, &scrubber);
        if let Some(proof) = &proof {
            trace.dpop_proof(&proof.header, &proof.claims);
        }
    }
    // No reqwest timeout: the caller's one timer bounds sending, the answer and the body
    // alike (a second one per request was measurable per cycle, issue 15).
    let mut request = client
        .http
        .post(endpoint.clone())
        .header(ACCEPT, "application/json");
    if let Some(header) = decoration.authorization {
        request = request.header(AUTHORIZATION, header);
    }
    if let Some(proof) = proof {
        request = request.header(dpop::HEADER, proof.value);
    }
    request = match &body {
        Body::Form(form) => request.form(form),
        Body::Json(json) => request.json(json),
    };
    drop(body);

    let response = send(request, seen, trace.as_deref_mut()).await?;
    let status = response.status().as_u16();
    if let Some(dpop) = dpop {
        *gave_nonce = dpop.saw_nonce(endpoint, response.headers());
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .map(|value| shorten(&scrubber.scrub(value), 40, Shown::OneLine));
    let body = match read_body(response).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return Err(TokenError::InvalidResponse(BodyError::TooLarge.to_string()));
        }
        Err(BodyError::Transport(error)) => return Err(error.into()),
    };
    let result = interpret(status, retry_after, &body, config, &scrubber, requested_at);
    if let Some(trace) = trace {
        // The token is known before the body is shown: a server that repeats it in another
        // member (`"debug": {"issued": T}`) must show `[redacted]` there too (issue 22).
        if let Ok(issued) = &result {
            scrubber.add(issued.access_token.expose());
            trace.always_scrub().add(issued.access_token.expose());
        }
        let token_key = config.response.access_token.to_string();
        let token_key = token_key.rsplit('/').next().unwrap_or_default();
        trace.body(&body, &[token_key], &scrubber);
    }
    result
}

fn trace_request(
    trace: &mut Trace,
    config: &TokenConfig,
    endpoint: &Url,
    body: &Body,
    decoration: &Decoration,
    scrubber: &Scrubber,
) {
    trace.line(format!(
        "-> POST {}",
        crate::probe::trace::redact_query(endpoint.as_str())
    ));
    trace.line("Accept: application/json");
    if decoration.authorization.is_some() {
        trace.line("Authorization: Basic [redacted]");
    }
    if config.dpop.is_some() {
        trace.line("DPoP: [redacted] (the proof, decoded below)");
    }
    let mut secret_keys = vec![
        "client_secret",
        "password",
        config.json_fields.client_secret.as_str(),
        config.json_fields.password.as_str(),
    ];
    secret_keys.extend(decoration.secret_fields.iter().map(String::as_str));
    match body {
        Body::Form(form) => {
            trace.line("Content-Type: application/x-www-form-urlencoded");
            trace.line("form fields:");
            for (key, value) in form {
                let shown = if secret_keys.contains(&key.as_str()) {
                    "[redacted]".to_string()
                } else {
                    scrubber.scrub(value)
                };
                trace.line(format!("  {key}={shown}"));
            }
        }
        Body::Json(json) => {
            trace.line("Content-Type: application/json");
            let mut shown = Value::Object(json.clone());
            crate::probe::trace::redact_json(&mut shown, &secret_keys);
            trace.line(scrubber.scrub(&serde_json::to_string_pretty(&shown).unwrap_or_default()));
        }
    }
    for shown in &decoration.assertions {
        trace.assertion(shown.kind, shown.made, &shown.header, &shown.claims);
    }
}

/// Interprets a token endpoint's answer (status and body) as the probe does: the entry point for
/// fuzzing the response parser, JWT fallback included.
pub fn parse_response(
    status: u16,
    body: &[u8],
    config: &TokenConfig,
) -> Result<IssuedToken, TokenError> {
    interpret(
        status,
        None,
        body,
        config,
        &Scrubber::default(),
        SystemTime::now(),
    )
}

/// Turns a token endpoint's answer into a token or a classified failure.
fn interpret(
    status: u16,
    retry_after: Option<String>,
    body: &[u8],
    config: &TokenConfig,
    scrubber: &Scrubber,
    requested_at: SystemTime,
) -> Result<IssuedToken, TokenError> {
    if status == 429 {
        return Err(TokenError::RateLimited { retry_after });
    }
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let success = (200..300).contains(&status);
    let has_token = json
        .as_ref()
        .and_then(|json| config.response.access_token.find(json))
        .is_some();
    if let Some(code) = json
        .as_ref()
        .and_then(|json| oauth_error_code(json, scrubber))
        && (!success || !has_token)
    {
        let description = json
            .as_ref()
            .and_then(|json| json.get("error_description"))
            .and_then(Value::as_str)
            .map(|text| shorten(&scrubber.scrub(text), EXCERPT_CHARS, Shown::Ascii));
        if status >= 500 {
            return Err(TokenError::ServerOAuth {
                status,
                code,
                description,
            });
        }
        return Err(TokenError::OAuth { code, description });
    }
    match status {
        200..=299 => parse_token(json, config, requested_at),
        400..=599 => Err(TokenError::HttpStatus {
            status,
            body: shorten(
                &scrubber.scrub(&String::from_utf8_lossy(body)),
                EXCERPT_CHARS,
                Shown::OneLine,
            ),
        }),
        _ => Err(TokenError::InvalidResponse(format!(
            "unexpected HTTP status {status} (redirects are not followed)"
        ))),
    }
}

/// The `error` member of an RFC 6749 error response, as people may read it: scrubbed, printable
/// ASCII, at most 64 characters, never cut with a marker (a code is a word, not prose).
fn oauth_error_code(json: &Value, scrubber: &Scrubber) -> Option<String> {
    let code = json.get("error")?.as_str()?;
    Some(shorten(&scrubber.scrub(code), CODE_CHARS, Shown::AsciiWord))
}

fn parse_token(
    json: Option<Value>,
    config: &TokenConfig,
    requested_at: SystemTime,
) -> Result<IssuedToken, TokenError> {
    let invalid = |why: String| Err(TokenError::InvalidResponse(why));
    let Some(json) = json.filter(Value::is_object) else {
        return invalid("body is not a JSON object".into());
    };
    let fields = &config.response;
    let access_token = match fields.access_token.find(&json) {
        Some(Value::String(token)) if !token.is_empty() => AccessToken::new(token.clone()),
        Some(Value::String(_)) => return invalid(format!("`{}` is empty", fields.access_token)),
        Some(_) => return invalid(format!("`{}` is not a string", fields.access_token)),
        None => return invalid(format!("no `{}` in the response", fields.access_token)),
    };
    let token_type = json.get("token_type");
    if config.dpop.is_some() {
        check_dpop_token_type(token_type)?;
    } else if let Some(token_type) = token_type {
        let bearer = token_type
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case("bearer"));
        if !bearer {
            return invalid("token_type is not Bearer".into());
        }
    }
    let lifetime = match fields.expires_in.find(&json) {
        None | Some(Value::Null) => None,
        Some(value) => Some(parse_expires_in(value).map_err(|why| {
            TokenError::InvalidResponse(format!("`{}` {why}", fields.expires_in))
        })?),
    };
    let (lifetime, expires_at) = match lifetime {
        Some(lifetime) => (Some(lifetime), requested_at.checked_add(lifetime)),
        None => lifetime_from_jwt(access_token.expose(), requested_at),
    };
    Ok(IssuedToken {
        access_token,
        lifetime,
        expires_at,
    })
}

/// RFC 9449 section 5: a DPoP-bound token comes with `token_type` `DPoP` (any case). A Bearer
/// one (or none) is not bound: the server ignored the proof (DPoP not enabled for the client,
/// or not supported), which is reason `dpop`; any other type is not a usable answer.
fn check_dpop_token_type(token_type: Option<&Value>) -> Result<(), TokenError> {
    match token_type.and_then(Value::as_str) {
        Some(t) if t.eq_ignore_ascii_case("dpop") => Ok(()),
        Some(t) if t.eq_ignore_ascii_case("bearer") => Err(TokenError::Dpop(format!(
            "the server answered token_type {t:?} to a DPoP token request: the token is not bound to the DPoP key (is DPoP required for this client, and supported by the server?)"
        ))),
        None if token_type.is_none() => Err(TokenError::Dpop(
            "the answer to a DPoP token request has no token_type; a DPoP-bound token comes with token_type DPoP".into(),
        )),
        _ => Err(TokenError::InvalidResponse(format!(
            "token_type is {}, not DPoP",
            shorten(
                &token_type.map(Value::to_string).unwrap_or_default(),
                CODE_CHARS,
                Shown::Ascii
            )
        ))),
    }
}

/// `expires_in` as a JSON number or a number in a string, in seconds.
fn parse_expires_in(value: &Value) -> Result<Duration, &'static str> {
    let seconds = match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|seconds| seconds.is_finite())
    .ok_or("is not a number")?;
    if seconds < 0.0 {
        return Err("is negative");
    }
    let lifetime = Duration::try_from_secs_f64(seconds).map_err(|_| "is out of range")?;
    if lifetime > MAX_LIFETIME {
        return Err("is longer than 100 years");
    }
    Ok(lifetime)
}

/// Expiry from the token's own `exp` claim; lifetime from `exp - iat`, else from now.
fn lifetime_from_jwt(
    token: &str,
    requested_at: SystemTime,
) -> (Option<Duration>, Option<SystemTime>) {
    let Some(claims) = jwt::claims(token) else {
        return (None, None);
    };
    let Some(exp) = jwt::numeric_date(&claims, "exp") else {
        return (None, None);
    };
    let Ok(exp_offset) = Duration::try_from_secs_f64(exp) else {
        return (None, None);
    };
    let Some(expires_at) = UNIX_EPOCH.checked_add(exp_offset) else {
        return (None, None);
    };
    let issued_at = jwt::numeric_date(&claims, "iat")
        .and_then(|iat| Duration::try_from_secs_f64(iat).ok())
        .and_then(|iat| UNIX_EPOCH.checked_add(iat))
        .unwrap_or(requested_at);
    let lifetime = expires_at
        .duration_since(issued_at)
        .unwrap_or(Duration::ZERO);
    (Some(lifetime), Some(expires_at))
}

#[cfg(test)]
mod tests;
