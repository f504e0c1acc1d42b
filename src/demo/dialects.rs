//! The five token dialects (EqHub, OKQ8/Azure AD v2, Cube, Nextome, Everactive): the clients
//! registered at each endpoint, how each one validates a request, and the RFC 6749 5.2 error
//! reply it sends, dressed as the real provider dresses it.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use serde_json::{Value, json};

use super::{Api, State, json_response, method_not_allowed, unix_now};
use crate::web::server::HttpResponse;

/// Token request bodies are a few hundred bytes; anything near this is not a token request.
pub(super) const MAX_BODY_BYTES: usize = 64 * 1024;

// Demo-only values: they exist nowhere but here. The endpoints below check exactly these and
// `config.rs` writes exactly these into the configuration, so the two cannot drift apart.
pub(super) const OKQ8_TENANT: &str = "okq8-demo.onmicrosoft.com";
pub(super) const OKQ8_RESOURCE: &str = "api://apim-okq8-demo-api";
/// The secret the broken `okq8-rotated-secret` provider still uses after "rotation".
pub(super) const OKQ8_ROTATED_AWAY_SECRET: &str = "okq8-demo-secret-before-rotation";
pub(super) const CUBE_TENANT: &str = "cube-demo";
pub(super) const CUBE_SCOPE: &str = "profile";
pub(super) const CUBE_RESOURCE: &str = "connectapi";
pub(super) const EQHUB_TEKNO: &str = "1234567";
pub(super) const EVERACTIVE_USERNAME: &str = "demo.operator@example.com";
pub(super) const EVERACTIVE_PASSWORD: &str = "demo operator password";

/// A client registered at one of the demo token endpoints.
#[derive(Clone, Copy)]
pub(super) struct Registration {
    pub(super) client_id: &'static str,
    pub(super) secret: &'static str,
    /// Accepts credentials in the form body (`client_secret_post`).
    post: bool,
    /// Accepts credentials in an HTTP Basic header (`client_secret_basic`).
    basic: bool,
    grants: &'static [&'static str],
}

pub(super) const EQHUB_CLIENT: Registration = Registration {
    client_id: "eqhub-demo-client",
    secret: "eqhub-demo-secret",
    post: true,
    basic: false,
    grants: &["client_credentials"],
};
pub(super) const OKQ8_CLIENT: Registration = Registration {
    client_id: "okq8-demo-client",
    secret: "okq8-demo-secret",
    post: true,
    basic: true,
    grants: &["client_credentials"],
};
pub(super) const CUBE_CLIENT: Registration = Registration {
    client_id: "cube-demo-client",
    secret: "cube-demo-secret",
    post: true,
    basic: true,
    grants: &["client_credentials"],
};
pub(super) const NEXTOME_CLIENT: Registration = Registration {
    client_id: "nextome-demo-client-id",
    secret: "nextome-demo-client-secret",
    post: false,
    basic: false,
    grants: &[],
};
/// Registered for Basic only, with a secret holding every character RFC 6749 2.3.1 makes a client
/// form-encode before base64: an exporter that skips the encoding gets `invalid_client`.
pub(super) const EVERACTIVE_CLIENT: Registration = Registration {
    client_id: "everactive-demo-client",
    secret: "everactive demo+secret:/%",
    post: false,
    basic: true,
    grants: &["client_credentials"],
};
pub(super) const EVERACTIVE_PASSWORD_CLIENT: Registration = Registration {
    client_id: "everactive-insights-demo",
    secret: "everactive-insights-demo-secret",
    post: true,
    basic: true,
    grants: &["password"],
};

/// Lifetimes as the real providers document them.
const AZURE_LIFETIME: Duration = Duration::from_secs(3599);
const CUBE_LIFETIME: Duration = Duration::from_secs(86_400);
pub(super) const ONE_HOUR: Duration = Duration::from_secs(3600);

/// Method check and body read shared by every token endpoint, then the dialect's own validation.
pub(super) async fn token_endpoint<F>(request: Request<Incoming>, dialect: F) -> HttpResponse
where
    F: FnOnce(&HeaderMap, &[u8]) -> DialectReply,
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

async fn read_body(body: Incoming) -> Result<Bytes, OAuthErrorReply> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(OAuthErrorReply {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            ..OAuthErrorReply::invalid_request("request body too large")
        }),
        Err(_) => Err(OAuthErrorReply::invalid_request(
            "could not read the request body",
        )),
    }
}

/// EqHub: form, `client_credentials`, `client_secret_post`. Its gateway fronts an Azure AD v1
/// style endpoint, which sends `expires_in` as a string: the demo does too, so the exporter's
/// string path gets exercised.
pub(super) fn eqhub_token(state: &State, headers: &HeaderMap, body: &[u8]) -> DialectReply {
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

/// OKQ8: Azure AD v2 `client_credentials`, one `api://<resource>/.default` scope, AADSTS errors;
/// a client secret, or a client assertion signed with the registered certificate's key.
pub(super) fn okq8_token(
    state: &State,
    tenant: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> DialectReply {
    let azure = Dialect::Azure;
    if tenant != OKQ8_TENANT {
        return Err(OAuthErrorReply::invalid_request(
            "AADSTS90002: Tenant not found. Check to make sure you have the correct tenant ID.",
        )
        .code(90002)
        .in_dialect(azure));
    }
    let form = Form::parse(headers, body, azure)?;
    require_grant(&form, &["client_credentials"], azure)?;
    match form.get("client_assertion") {
        // A certificate credential (private_key_jwt), checked as Entra ID checks it.
        Some(assertion) => {
            if form.get("client_secret").is_some() || headers.contains_key(header::AUTHORIZATION) {
                return Err(OAuthErrorReply::invalid_request(
                    "AADSTS90014: A client may authenticate with a client_assertion or a                      client_secret, not both.",
                )
                .code(90_014)
                .in_dialect(azure));
            }
            let client_id = form.get("client_id");
            state
                .certificate
                .check(
                    form.get("client_assertion_type"),
                    assertion,
                    client_id,
                    &state.okq8_token_url,
                )
                .map_err(|refusal| {
                    let reply = if refusal.code == 50_027 {
                        OAuthErrorReply::invalid_request(refusal.description)
                    } else {
                        OAuthErrorReply::invalid_client(refusal.description)
                    };
                    reply.code(refusal.code).in_dialect(azure)
                })?;
        }
        None => {
            authenticate(headers, &form, &[OKQ8_CLIENT], azure)?;
        }
    }
    let scope = form.require("scope", azure)?;
    let Some(resource) = scope.strip_suffix("/.default").filter(|r| !r.contains(' ')) else {
        return Err(OAuthErrorReply::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "AADSTS1002012: The provided value for scope is not valid. Client credential flows \
             must have a scope value with /.default suffixed to the resource identifier.",
        )
        .code(1_002_012)
        .in_dialect(azure));
    };
    if resource != OKQ8_RESOURCE {
        return Err(OAuthErrorReply::new(
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
pub(super) fn cube_token(state: &State, headers: &HeaderMap, body: &[u8]) -> DialectReply {
    let rfc = Dialect::Rfc;
    let form = Form::parse(headers, body, rfc)?;
    require_grant(&form, &["client_credentials"], rfc)?;
    authenticate(headers, &form, &[CUBE_CLIENT], rfc)?;
    let scope = form.require("scope", rfc)?;
    if scope.split(' ').any(|s| s != CUBE_SCOPE) {
        return Err(OAuthErrorReply::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "only the scope 'profile' is allowed for this client",
        ));
    }
    let resource = form.require("resource", rfc)?;
    if resource != CUBE_RESOURCE {
        return Err(OAuthErrorReply::new(
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
        Some(_) => {
            return Err(OAuthErrorReply::invalid_request(
                "unknown tenant in acr_values",
            ));
        }
        None => {
            return Err(OAuthErrorReply::invalid_request(
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
pub(super) fn nextome_token(state: &State, headers: &HeaderMap, body: &[u8]) -> DialectReply {
    if !content_type_is(headers, "application/json") {
        return Err(OAuthErrorReply::invalid_request(
            "Content-Type must be application/json",
        ));
    }
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return Err(OAuthErrorReply::invalid_request(
            "the body must be a JSON object with clientId and clientSecret",
        ));
    };
    let field = |name: &str| match fields.get(name) {
        Some(Value::String(value)) if !value.is_empty() => Ok(value.as_str()),
        Some(_) => Err(OAuthErrorReply::invalid_request(format!(
            "'{name}' must be a non-empty string"
        ))),
        None => Err(OAuthErrorReply::invalid_request(format!(
            "missing required field '{name}'"
        ))),
    };
    let client_id = field("clientId")?;
    let client_secret = field("clientSecret")?;
    if client_id != NEXTOME_CLIENT.client_id
        || !constant_time_eq(client_secret, NEXTOME_CLIENT.secret)
    {
        return Err(OAuthErrorReply::invalid_client(
            "invalid clientId or clientSecret",
        ));
    }
    let token = state.issue_jwt(Api::Nextome, client_id, ONE_HOUR);
    Ok(token_response(&json!({"accessToken": token})))
}

/// Everactive: one endpoint, two grants. The integration client uses `client_credentials` with
/// HTTP Basic only; the Insights-style client uses the `password` grant.
pub(super) fn everactive_token(state: &State, headers: &HeaderMap, body: &[u8]) -> DialectReply {
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
        return Err(OAuthErrorReply::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "the client is not allowed to use this grant type",
        ));
    }
    if grant == "password" {
        let username = form.require("username", rfc)?;
        let password = form.require("password", rfc)?;
        if username != EVERACTIVE_USERNAME || !constant_time_eq(password, EVERACTIVE_PASSWORD) {
            return Err(OAuthErrorReply::new(
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
) -> Result<&'a str, OAuthErrorReply> {
    let grant = form.require("grant_type", dialect)?;
    if supported.contains(&grant) {
        return Ok(grant);
    }
    Err(OAuthErrorReply::new(
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
) -> Result<Registration, OAuthErrorReply> {
    let basic = basic_credentials(headers)?;
    let body_id = form.get("client_id");
    let body_secret = form.get("client_secret");
    let (client_id, secret, via_basic) = match &basic {
        Some((id, secret)) => {
            // RFC 6749 2.3: one authentication method per request.
            if body_secret.is_some() {
                return Err(OAuthErrorReply::invalid_request(
                    "the client used more than one authentication method",
                )
                .in_dialect(dialect));
            }
            if body_id.is_some_and(|body_id| body_id != id) {
                return Err(OAuthErrorReply::invalid_request(
                    "client_id in the body differs from the Basic credentials",
                )
                .in_dialect(dialect));
            }
            (id.as_str(), Some(secret.as_str()), true)
        }
        None => match body_id {
            Some(id) => (id, body_secret, false),
            None if dialect == Dialect::Azure => {
                return Err(OAuthErrorReply::invalid_request(
                    "AADSTS900144: The request body must contain the following parameter: \
                     'client_id'.",
                )
                .code(900_144)
                .in_dialect(dialect));
            }
            None => {
                return Err(
                    OAuthErrorReply::invalid_client("client authentication is required").basic(),
                );
            }
        },
    };
    let challenge = |error: OAuthErrorReply| if via_basic { error.basic() } else { error };
    let Some(client) = clients.iter().find(|c| c.client_id == client_id) else {
        if dialect == Dialect::Azure {
            return Err(OAuthErrorReply::new(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "AADSTS700016: Application was not found in the directory.",
            )
            .code(700_016)
            .in_dialect(dialect));
        }
        return Err(challenge(OAuthErrorReply::invalid_client("unknown client")));
    };
    if via_basic && !client.basic || !via_basic && !client.post {
        let registered = if client.basic {
            "client_secret_basic"
        } else {
            "client_secret_post"
        };
        return Err(challenge(OAuthErrorReply::invalid_client(format!(
            "this client must authenticate with {registered}"
        ))));
    }
    let Some(secret) = secret else {
        return Err(OAuthErrorReply::invalid_client(match dialect {
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
            OAuthErrorReply::invalid_client(match dialect {
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
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthErrorReply> {
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
        .ok_or_else(|| OAuthErrorReply::invalid_client("malformed Basic credentials").basic())
}

/// Decodes `Basic base64(urlencode(id) ":" urlencode(secret))` per RFC 6749 2.3.1.
pub(super) fn decode_basic(value: &str) -> Option<(String, String)> {
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
    fn parse(headers: &HeaderMap, body: &[u8], dialect: Dialect) -> Result<Form, OAuthErrorReply> {
        if !content_type_is(headers, "application/x-www-form-urlencoded") {
            let description = match dialect {
                Dialect::Azure => {
                    "AADSTS900144: The request body must contain the following parameter: \
                     'grant_type'."
                }
                Dialect::Rfc => "Content-Type must be application/x-www-form-urlencoded",
            };
            return Err(OAuthErrorReply::invalid_request(description)
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
                return Err(OAuthErrorReply::invalid_request(format!(
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

    fn require(&self, name: &str, dialect: Dialect) -> Result<&str, OAuthErrorReply> {
        self.get(name).ok_or_else(|| {
            let description = match dialect {
                Dialect::Azure => format!(
                    "AADSTS900144: The request body must contain the following parameter: \
                     '{name}'."
                ),
                Dialect::Rfc => format!("missing required parameter '{name}'"),
            };
            OAuthErrorReply::invalid_request(description)
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

/// What a token endpoint answers: the token response, or the error reply to send.
pub(super) type DialectReply = Result<HttpResponse, OAuthErrorReply>;

/// An RFC 6749 5.2 error reply. Descriptions are fixed texts: they never echo what the client sent.
#[derive(Debug)]
pub(super) struct OAuthErrorReply {
    status: StatusCode,
    error: &'static str,
    description: String,
    /// The AADSTS number, shown only in the Azure dialect.
    code: Option<u32>,
    dialect: Dialect,
    /// RFC 6749 5.2: a failed Basic authentication answers with a matching challenge.
    basic_challenge: bool,
}

impl OAuthErrorReply {
    fn new(
        status: StatusCode,
        error: &'static str,
        description: impl Into<String>,
    ) -> OAuthErrorReply {
        OAuthErrorReply {
            status,
            error,
            description: description.into(),
            code: None,
            dialect: Dialect::Rfc,
            basic_challenge: false,
        }
    }

    fn invalid_request(description: impl Into<String>) -> OAuthErrorReply {
        OAuthErrorReply::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    fn invalid_client(description: impl Into<String>) -> OAuthErrorReply {
        OAuthErrorReply::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    fn code(self, code: u32) -> OAuthErrorReply {
        OAuthErrorReply {
            code: Some(code),
            ..self
        }
    }

    fn in_dialect(self, dialect: Dialect) -> OAuthErrorReply {
        OAuthErrorReply { dialect, ..self }
    }

    fn basic(self) -> OAuthErrorReply {
        OAuthErrorReply {
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
    humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .replacen('T', " ", 1)
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
