//! `[providers.NAME.token]`: where tokens come from (a fixed `url` or an `issuer`'s discovery),
//! the grant and its credentials, scopes and extra parameters, reuse, the shape of the request
//! and the response, and the expiry dates to warn on. How the client authenticates is checked in
//! `client_auth`, the claims a token must carry in `claims`.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use super::values::{Problems, duration_or, expiry_date, http_url, required, secret_source};
use super::{claims, client_auth};
use crate::config::raw::{RawJsonFields, RawParam, RawResponse, RawToken};
use crate::config::{
    AuthMethod, BearerAssertion, DEFAULT_DISCOVERY_REFRESH, DEFAULT_REFRESH_BEFORE,
    DiscoveryConfig, FieldPath, Grant, GrantKind, JsonFields, JwtBearer, ParamValue, PasswordGrant,
    ResponseFields, TokenConfig, TokenEndpoint,
};

/// The form fields the exporter sets itself, which `params` may not override.
const RESERVED_PARAMS: [&str; 6] = [
    "grant_type",
    "client_id",
    "client_secret",
    "scope",
    "username",
    "password",
];

/// The `[token]` table at `prefix` (`providers.NAME.token`); `None` when any key has a problem.
pub(super) fn token(
    prefix: &str,
    mut raw: RawToken,
    problems: &mut Problems,
) -> Option<TokenConfig> {
    let key = |field: &str| format!("{prefix}.{field}");
    let endpoint = token_endpoint(prefix, &raw, problems);
    let client_id = required(
        &key("client_id"),
        raw.client_id.take(),
        "the OAuth2 client id is required",
        problems,
    );
    let jwt_bearer = raw.grant_type.as_deref() == Some(GrantKind::JwtBearer.as_str());
    let auth =
        client_auth::client_auth(prefix, &mut raw, client_id.as_deref(), jwt_bearer, problems);
    let grant = grant(prefix, &mut raw, problems);
    for scope in &raw.scopes {
        if scope.is_empty() || scope.contains(char::is_whitespace) {
            problems.add(
                &key("scopes"),
                format!("invalid scope {scope:?}; scopes are non-empty and contain no spaces (they are sent space-joined)"),
            );
        }
    }
    let params = params(prefix, raw.params, problems);
    let refresh_before = duration_or(
        &key("refresh_before"),
        raw.refresh_before.as_deref(),
        DEFAULT_REFRESH_BEFORE,
        problems,
    );
    if raw.refresh_before.is_some() && !raw.reuse {
        problems.add(
            &key("refresh_before"),
            "only meaningful with reuse = true; set reuse = true or remove it",
        );
    }
    let json_fields = json_fields(prefix, raw.json_fields, auth.method, problems);
    let response = response_fields(prefix, raw.response, problems);
    let client_secret_expires = expiry_date(
        &key("client_secret_expires"),
        raw.client_secret_expires.as_deref(),
        problems,
    );
    let password_expires = expiry_date(
        &key("password_expires"),
        raw.password_expires.as_deref(),
        problems,
    );
    if raw.password_expires.is_some() && !matches!(grant, Some(Grant::Password(_))) {
        problems.add(
            &key("password_expires"),
            "only meaningful with grant_type = \"password\"",
        );
    }
    let expect = claims::expected_claims(prefix, raw.expect, problems);

    Some(TokenConfig {
        endpoint: endpoint?,
        grant: grant?,
        client_id: client_id?,
        client_secret: auth.secret,
        auth_method: auth.method?,
        assertion: auth.assertion.map(Box::new),
        assertion_file: auth.assertion_file.map(Box::new),
        basic_encoding: auth.basic_encoding?,
        scopes: raw.scopes,
        params,
        reuse: raw.reuse,
        refresh_before,
        json_fields,
        response,
        client_secret_expires,
        password_expires,
        expect: expect.map(Box::new),
        // Set by the caller, which knows `[defaults]` (see `dpop`).
        dpop: None,
    })
}

/// Exactly one of `url` (a fixed token endpoint) and `issuer` (found by discovery, refreshed
/// every `discovery_refresh`).
fn token_endpoint(prefix: &str, raw: &RawToken, problems: &mut Problems) -> Option<TokenEndpoint> {
    let key = |field: &str| format!("{prefix}.{field}");
    match (&raw.url, &raw.issuer) {
        (Some(_), Some(_)) => {
            problems.add(
                &key("url"),
                format!(
                    "both url and issuer are set; set exactly one of {0} (a fixed token endpoint) | {1} (the token endpoint found by discovery)",
                    key("url"),
                    key("issuer")
                ),
            );
            None
        }
        (None, None) => {
            problems.add(
                &key("url"),
                format!(
                    "missing; set exactly one of {0} (an http:// or https:// URL) | {1} (an issuer whose metadata names the token endpoint)",
                    key("url"),
                    key("issuer")
                ),
            );
            None
        }
        (Some(url), None) => {
            if raw.discovery_refresh.is_some() {
                problems.add(
                    &key("discovery_refresh"),
                    "only meaningful with issuer; set issuer instead of url, or remove it",
                );
            }
            http_url(&key("url"), Some(url), problems).map(TokenEndpoint::Url)
        }
        (None, Some(issuer)) => {
            let refresh = duration_or(
                &key("discovery_refresh"),
                raw.discovery_refresh.as_deref(),
                DEFAULT_DISCOVERY_REFRESH,
                problems,
            );
            let issuer_url = http_url(&key("issuer"), Some(issuer), problems)?;
            // RFC 8414 section 2: an issuer has no query or fragment.
            if issuer_url.query().is_some() || issuer_url.fragment().is_some() {
                problems.add(
                    &key("issuer"),
                    format!("issuer {issuer:?} has a query or fragment; an issuer is a URL without them (RFC 8414 section 2)"),
                );
                return None;
            }
            Some(TokenEndpoint::Discovery(Box::new(DiscoveryConfig {
                issuer: issuer.clone(),
                issuer_url,
                refresh,
            })))
        }
    }
}

/// The claims of a signed jwt-bearer assertion the exporter sets itself, which
/// `assertion_claims` may not override (each has its key, or is made fresh per request).
const RESERVED_CLAIMS: [(&str, &str); 7] = [
    ("iss", "set it with assertion_issuer"),
    ("sub", "set it with assertion_subject"),
    ("aud", "set it with assertion_audience"),
    ("exp", "set the lifetime with assertion_lifetime"),
    ("iat", "made for each request"),
    ("nbf", "made for each request"),
    ("jti", "made fresh for each request"),
];

/// `grant_type` with the `username` and password it needs (and only it), or the `jwt_bearer`
/// assertion's own keys.
fn grant(prefix: &str, raw: &mut RawToken, problems: &mut Problems) -> Option<Grant> {
    let key = |field: &str| format!("{prefix}.{field}");
    let password_given =
        raw.password.is_some() || raw.password_file.is_some() || raw.password_env.is_some();
    let bearer_keys_given = [
        ("assertion_issuer", raw.assertion_issuer.is_some()),
        ("assertion_subject", raw.assertion_subject.is_some()),
        ("assertion_claims", !raw.assertion_claims.is_empty()),
    ];
    let grant_type = raw.grant_type.as_deref();
    if grant_type != Some(GrantKind::JwtBearer.as_str()) {
        for (field, given) in bearer_keys_given {
            if given {
                problems.add(
                    &key(field),
                    "only meaningful with grant_type = \"jwt_bearer\" (a claim of the assertion the exporter signs); set grant_type = \"jwt_bearer\" or remove it",
                );
            }
        }
    }
    match grant_type {
        None | Some("client_credentials") => {
            if raw.username.is_some() || password_given {
                problems.add(
                    &key("grant_type"),
                    "username/password are set but grant_type is client_credentials; set grant_type = \"password\" or remove them",
                );
            }
            Some(Grant::ClientCredentials)
        }
        Some("password") => {
            let username = required(
                &key("username"),
                raw.username.take(),
                "the password grant needs a username",
                problems,
            );
            let password = secret_source(
                &key("password"),
                raw.password.take(),
                raw.password_file.take(),
                raw.password_env.take(),
                problems,
            );
            match (username, password) {
                (Some(username), Some(password)) => {
                    Some(Grant::Password(Box::new(PasswordGrant {
                        username,
                        password,
                    })))
                }
                _ => None,
            }
        }
        Some("jwt_bearer") => jwt_bearer(prefix, raw, password_given, problems),
        Some(other) => {
            problems.add(
                &key("grant_type"),
                format!(
                    "unknown value {other:?}; allowed: client_credentials, password, jwt_bearer"
                ),
            );
            None
        }
    }
}

/// The `jwt_bearer` grant (RFC 7523 section 2.1): its assertion signed with `private_key_file`
/// (claims from `assertion_issuer`, `assertion_subject`, `assertion_claims`) or read from
/// `client_assertion_file`.
fn jwt_bearer(
    prefix: &str,
    raw: &mut RawToken,
    password_given: bool,
    problems: &mut Problems,
) -> Option<Grant> {
    let key = |field: &str| format!("{prefix}.{field}");
    if raw.username.is_some() || password_given {
        problems.add(
            &key("grant_type"),
            "username/password are set but grant_type is jwt_bearer; set grant_type = \"password\" or remove them",
        );
    }
    let source = match (&raw.private_key_file, &raw.client_assertion_file) {
        (Some(_), _) => BearerAssertion::Signed,
        (None, Some(_)) => BearerAssertion::File,
        (None, None) => {
            problems.add(
                &key("private_key_file"),
                format!(
                    "missing; grant_type = \"jwt_bearer\" sends an assertion: set {0} (a PEM private key the exporter signs it with) or {1} (a JWT someone else issues, read for every request)",
                    key("private_key_file"),
                    key("client_assertion_file")
                ),
            );
            return None;
        }
    };
    if source == BearerAssertion::File {
        for (field, given) in [
            ("assertion_issuer", raw.assertion_issuer.is_some()),
            ("assertion_subject", raw.assertion_subject.is_some()),
            ("assertion_claims", !raw.assertion_claims.is_empty()),
        ] {
            if given {
                problems.add(
                    &key(field),
                    "only meaningful when the exporter signs the assertion (with private_key_file); client_assertion_file is sent as its issuer wrote it",
                );
            }
        }
    }
    let mut non_empty = |field: &str, value: Option<String>| {
        if value.as_deref() == Some("") {
            problems.add(&key(field), "must not be empty; omit it for the client id");
        }
        value
    };
    let issuer = non_empty("assertion_issuer", raw.assertion_issuer.take());
    let subject = non_empty("assertion_subject", raw.assertion_subject.take());
    let mut claims = serde_json::Map::new();
    for (name, value) in std::mem::take(&mut raw.assertion_claims) {
        if let Some((_, instead)) = RESERVED_CLAIMS.iter().find(|(n, _)| *n == name) {
            problems.add(
                &format!("{prefix}.assertion_claims.{name}"),
                format!("{name:?} is set by the exporter itself ({instead})"),
            );
            continue;
        }
        claims.insert(name, value);
    }
    Some(Grant::JwtBearer(Box::new(JwtBearer {
        issuer,
        subject,
        claims,
        source,
    })))
}

/// `params`: extra form fields (or JSON members), none of those the exporter sets itself.
fn params(
    prefix: &str,
    raw: BTreeMap<String, RawParam>,
    problems: &mut Problems,
) -> BTreeMap<String, ParamValue> {
    let mut params = BTreeMap::new();
    for (param, value) in raw {
        let param_key = format!("{prefix}.params.{param}");
        if RESERVED_PARAMS.contains(&param.as_str()) {
            problems.add(
                &param_key,
                format!("{param:?} is set by the exporter itself; use the dedicated key instead"),
            );
        }
        let value = match value {
            RawParam::One(value) => ParamValue::One(value),
            RawParam::List(values) if values.is_empty() => {
                problems.add(
                    &param_key,
                    "empty list; give one value or more (a list sends the key once per value), or remove it",
                );
                continue;
            }
            RawParam::List(values) => ParamValue::List(values),
        };
        params.insert(param, value);
    }
    params
}

/// `json_fields`: the member names of a `json_body` request.
fn json_fields(
    prefix: &str,
    raw: Option<RawJsonFields>,
    auth_method: Option<AuthMethod>,
    problems: &mut Problems,
) -> Arc<JsonFields> {
    let key = |field: &str| format!("{prefix}.{field}");
    match raw {
        Some(fields) => {
            if auth_method != Some(AuthMethod::JsonBody) {
                problems.add(
                    &key("json_fields"),
                    "only meaningful with auth_method = \"json_body\"",
                );
            }
            let mut field = |value: Option<String>, name: &str| {
                let value = value.unwrap_or_else(|| name.to_string());
                if value.is_empty() {
                    problems.add(&format!("{prefix}.json_fields.{name}"), "must not be empty");
                }
                value
            };
            Arc::new(JsonFields {
                client_id: field(fields.client_id, "client_id"),
                client_secret: field(fields.client_secret, "client_secret"),
                username: field(fields.username, "username"),
                password: field(fields.password, "password"),
            })
        }
        None => Arc::clone(&DEFAULT_JSON_FIELDS),
    }
}

/// `response`: where the token and its lifetime are in the token response.
fn response_fields(
    prefix: &str,
    raw: Option<RawResponse>,
    problems: &mut Problems,
) -> Arc<ResponseFields> {
    match raw {
        None => Arc::clone(&DEFAULT_RESPONSE_FIELDS),
        Some(raw_response) => {
            let mut path = |value: Option<String>, name: &str| {
                let value = value.unwrap_or_else(|| name.to_string());
                if value.is_empty() {
                    problems.add(&format!("{prefix}.response.{name}"), "must not be empty");
                }
                FieldPath::parse(&value)
            };
            Arc::new(ResponseFields {
                access_token: path(raw_response.access_token, "access_token"),
                expires_in: path(raw_response.expires_in, "expires_in"),
            })
        }
    }
}

// What nearly every provider has, held once for all of them: an `Arc` each rather than the
// same six field-name strings copied into every provider (an empty `[tls]` likewise, in `tls`).
static DEFAULT_JSON_FIELDS: LazyLock<Arc<JsonFields>> = LazyLock::new(|| {
    Arc::new(JsonFields {
        client_id: "client_id".into(),
        client_secret: "client_secret".into(),
        username: "username".into(),
        password: "password".into(),
    })
});
static DEFAULT_RESPONSE_FIELDS: LazyLock<Arc<ResponseFields>> = LazyLock::new(|| {
    Arc::new(ResponseFields {
        access_token: FieldPath::Key("access_token".into()),
        expires_in: FieldPath::Key("expires_in".into()),
    })
});
