//! The token step of a probe: build the token request in the provider's dialect, send it, and
//! turn the answer into an issued token or a classified failure. Knows nothing about metrics.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue, RETRY_AFTER};
use serde_json::Value;
use url::Url;

use crate::config::{AuthMethod, BasicEncoding, Grant, TokenConfig};
use crate::probe::discovery::DiscoveryError;
use crate::probe::trace::Trace;
use crate::probe::transport::{BodyError, Client, TransportError, read_body, send};
use crate::probe::{jwt, printable};
use crate::secrets::{AccessToken, Scrubber, Secret, SecretError, excerpt};

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

reason_enum! {
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
        Discovery => "discovery",
    }
}

/// Every `reason` a token request can fail with (the name the fuzz targets use).
pub const REASONS: [TokenReason; TokenReason::ALL.len()] = TokenReason::ALL;

/// Why a token request failed. Each variant maps to one fixed `reason` label value; the texts
/// are for the log and are already scrubbed of the secrets that were sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the client secret or password could not be read: {0}")]
    SecretUnavailable(#[from] SecretError),
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
    /// `issuer` is configured and no usable token endpoint is known yet: the metadata could not
    /// be fetched, or failed its checks.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
}

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
            TokenError::SecretUnavailable(_) => TokenReason::SecretUnavailable,
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
            TokenError::Discovery(_) => TokenReason::Discovery,
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
    endpoint: &Url,
    timeout: Duration,
    mut trace: Option<&mut Trace>,
) -> TokenOutcome {
    let started = Instant::now();
    let requested_at = SystemTime::now();
    let mut status = None;
    // The secrets first, each with the provider's timeout as its deadline: a secret file on a
    // stalled mount is `secret_unavailable` (not `timeout`, which blames the identity provider),
    // and the request gets what is left of the timeout.
    let result = match read_secrets(config, timeout).await {
        Err(error) => Err(error),
        Ok(secrets) => {
            let left = timeout.saturating_sub(started.elapsed());
            let attempt = attempt(
                client,
                config,
                endpoint,
                secrets,
                left,
                requested_at,
                &mut status,
                trace.as_deref_mut(),
            );
            match tokio::time::timeout(left, attempt).await {
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
        status,
        result,
    }
}

/// The request body, kept as fields so that it can be both sent and shown with secrets redacted.
enum Body {
    Form(Vec<(String, String)>),
    Json(serde_json::Map<String, Value>),
}

/// The client secret and, for the password grant, the password, read now (files are re-read
/// on every request, so a rotated secret takes effect), both within `deadline`.
async fn read_secrets(
    config: &TokenConfig,
    deadline: Duration,
) -> Result<(Secret, Option<Secret>), TokenError> {
    let started = Instant::now();
    let client_secret = config.client_secret.read_within(deadline).await?;
    let password = match &config.grant {
        Grant::Password { password, .. } => Some(
            password
                .read_within(deadline.saturating_sub(started.elapsed()))
                .await?,
        ),
        Grant::ClientCredentials => None,
    };
    Ok((client_secret, password))
}

#[allow(clippy::too_many_arguments)] // one request's inputs, each used once
async fn attempt(
    client: &Client,
    config: &TokenConfig,
    endpoint: &Url,
    (client_secret, password): (Secret, Option<Secret>),
    timeout: Duration,
    requested_at: SystemTime,
    status_seen: &mut Option<u16>,
    mut trace: Option<&mut Trace>,
) -> Result<IssuedToken, TokenError> {
    let mut scrubber = Scrubber::default();
    client.add_secrets(&mut scrubber);
    scrubber.add(client_secret.expose());
    if let Some(password) = &password {
        scrubber.add(password.expose());
    }

    let username = match &config.grant {
        Grant::Password { username, .. } => Some(username.as_str()),
        Grant::ClientCredentials => None,
    };
    let scope = (!config.scopes.is_empty()).then(|| config.scopes.join(" "));
    let mut basic = None;
    let body = match config.auth_method {
        AuthMethod::ClientSecretPost | AuthMethod::ClientSecretBasic => {
            let mut form = vec![("grant_type".to_string(), config.grant.as_str().to_string())];
            if config.auth_method == AuthMethod::ClientSecretPost {
                form.push(("client_id".into(), config.client_id.clone()));
                form.push(("client_secret".into(), client_secret.expose().to_string()));
            } else {
                let header = basic_authorization(
                    config.basic_encoding,
                    &config.client_id,
                    client_secret.expose(),
                );
                // A server may echo the credentials with or without the "Basic " scheme.
                let value = header.to_str().unwrap_or_default();
                scrubber.add(value);
                scrubber.add(value.trim_start_matches("Basic "));
                basic = Some(header);
            }
            if let (Some(username), Some(password)) = (username, &password) {
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
        }
        AuthMethod::JsonBody => {
            let fields = &config.json_fields;
            let mut body = serde_json::Map::new();
            body.insert(fields.client_id.clone(), config.client_id.clone().into());
            body.insert(
                fields.client_secret.clone(),
                client_secret.expose().to_string().into(),
            );
            if let (Some(username), Some(password)) = (username, &password) {
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
        }
    };

    if let Some(trace) = trace.as_deref_mut() {
        trace_request(trace, config, endpoint, &body, basic.is_some(), &scrubber);
    }
    let mut request = client
        .http
        .post(endpoint.clone())
        .timeout(timeout)
        .header(ACCEPT, "application/json");
    if let Some(header) = basic {
        request = request.header(AUTHORIZATION, header);
    }
    request = match &body {
        Body::Form(form) => request.form(form),
        Body::Json(json) => request.json(json),
    };
    drop(body);

    let response = send(request, status_seen, trace.as_deref_mut()).await?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .map(|value| excerpt(&scrubber, value, 40));
    let body = match read_body(response).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return Err(TokenError::InvalidResponse(BodyError::TooLarge.to_string()));
        }
        Err(BodyError::Transport(error)) => return Err(error.into()),
    };
    if let Some(trace) = trace {
        let token_key = config.response.access_token.to_string();
        let token_key = token_key.rsplit('/').next().unwrap_or_default();
        trace.body(&body, &[token_key], &scrubber);
    }
    interpret(status, retry_after, &body, config, &scrubber, requested_at)
}

fn trace_request(
    trace: &mut Trace,
    config: &TokenConfig,
    endpoint: &Url,
    body: &Body,
    basic: bool,
    scrubber: &Scrubber,
) {
    trace.line(format!("-> POST {endpoint}"));
    trace.line("Accept: application/json");
    if basic {
        trace.line("Authorization: Basic [redacted]");
    }
    let secret_keys = [
        "client_secret",
        "password",
        config.json_fields.client_secret.as_str(),
        config.json_fields.password.as_str(),
    ];
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

/// The `Authorization: Basic` header. `form` (RFC 6749 section 2.3.1): id and secret are
/// urlencoded, joined by a colon, then base64; with percent escapes only (a space as `%20`, never
/// `+`), which form decoders (`+` is a space), percent decoders (`+` is a plus, Authlib) and
/// RFC 3986 decoders all read back the same (issue 11). `raw` (RFC 7617, as curl and browsers):
/// `id:secret` as written, for servers that do not decode (glewlwyd); validation has refused a
/// client id with a colon.
fn basic_authorization(
    encoding: BasicEncoding,
    client_id: &str,
    client_secret: &str,
) -> HeaderValue {
    // byte_serialize escapes every byte but `*-._` and alphanumerics, writing a space as `+`
    // and a literal `+` as `%2B`: so every `+` left is a space.
    let encode = |s: &str| {
        url::form_urlencoded::byte_serialize(s.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    };
    let credentials = match encoding {
        BasicEncoding::Form => format!("{}:{}", encode(client_id), encode(client_secret)),
        BasicEncoding::Raw => format!("{client_id}:{client_secret}"),
    };
    let mut value = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(credentials)))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
    value.set_sensitive(true);
    value
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
            .map(|text| printable(scrubber, text, EXCERPT_CHARS));
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
            body: excerpt(scrubber, &String::from_utf8_lossy(body), EXCERPT_CHARS),
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
    Some(
        printable(scrubber, code, usize::MAX)
            .chars()
            .take(CODE_CHARS)
            .collect(),
    )
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
    if let Some(token_type) = json.get("token_type") {
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
