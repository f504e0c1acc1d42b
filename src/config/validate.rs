//! Raw values, then ready values: turns the raw configuration into parsed URLs, durations,
//! secret sources and TLS roots, and reports every problem with the key it concerns.

use super::raw::*;
use super::*;
use std::sync::LazyLock;

/// Collects problems while validation goes on, so that one run reports all of them.
#[derive(Default)]
pub(super) struct Problems(Vec<String>);

impl Problems {
    pub(super) fn add(&mut self, key: &str, what: impl fmt::Display) {
        self.0.push(format!("key `{key}`: {what}"));
    }
}

pub(super) fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let mut problems = Problems::default();

    let listen_address = raw
        .web
        .listen_address
        .unwrap_or_else(|| DEFAULT_LISTEN_ADDRESS.to_string());
    check_listen_address("web.listen_address", &listen_address, &mut problems);

    let histograms = match raw.metrics.histograms.as_deref() {
        None => HistogramMode::default(),
        Some(text) => match HistogramMode::ALL.into_iter().find(|m| m.as_str() == text) {
            Some(mode) => mode,
            None => {
                problems.add(
                    "metrics.histograms",
                    format!("unknown value {text:?}; allowed: classic, native, none"),
                );
                HistogramMode::default()
            }
        },
    };

    let default_interval = duration_or(
        "defaults.interval",
        raw.defaults.interval.as_deref(),
        DEFAULT_INTERVAL,
        &mut problems,
    );
    let default_timeout = duration_or(
        "defaults.timeout",
        raw.defaults.timeout.as_deref(),
        DEFAULT_TIMEOUT,
        &mut problems,
    );

    let default_max_backoff = duration_or_off(
        "defaults.max_backoff",
        raw.defaults.max_backoff.as_deref(),
        DEFAULT_MAX_BACKOFF,
        &mut problems,
    );
    let probe_min_interval = duration_or_off(
        "web.probe_min_interval",
        raw.web.probe_min_interval.as_deref(),
        DEFAULT_PROBE_MIN_INTERVAL,
        &mut problems,
    );

    let default_proxy = raw
        .defaults
        .proxy_url
        .as_deref()
        .and_then(|text| proxy_setting("defaults.proxy_url", text, &mut problems))
        .unwrap_or_default();

    let mut providers = Vec::with_capacity(raw.providers.len());
    for (name, provider) in raw.providers {
        let prefix = format!("providers.{name}");
        if !is_valid_provider_name(&name) {
            problems.add(
                &prefix,
                format!(
                    "invalid provider name {name:?}; allowed: 1 to 64 characters from A-Z a-z 0-9 _ . -"
                ),
            );
            continue;
        }
        if let Some(provider) = validate_provider(
            name,
            &prefix,
            provider,
            Defaults {
                interval: default_interval,
                timeout: default_timeout,
                max_backoff: default_max_backoff,
                proxy: &default_proxy,
            },
            &mut problems,
        ) {
            providers.push(provider);
        }
    }

    if problems.0.is_empty() {
        Ok(Config {
            web: WebConfig {
                listen_address,
                extra_listen_addresses: Vec::new(),
                probe_min_interval,
            },
            metrics: MetricsConfig { histograms },
            providers,
        })
    } else {
        Err(ConfigError {
            problems: problems.0,
        })
    }
}

pub fn is_valid_provider_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `HOST:PORT`, or `:PORT` for every interface as Prometheus exporters write it (the host may
/// be a name such as `localhost`, or an IPv6 address in brackets such as `[::]`).
pub(super) fn check_listen_address(key: &str, address: &str, problems: &mut Problems) {
    let valid = match address.rsplit_once(':') {
        Some((host, port)) => {
            port.parse::<u16>().is_ok()
                && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')))
        }
        None => false,
    };
    if !valid {
        problems.add(
            key,
            format!("invalid address {address:?}; expected HOST:PORT, e.g. \"0.0.0.0:9875\""),
        );
    }
}

/// The problems of several listen addresses given for `key`.
pub(super) fn check_listen_addresses(key: &str, addresses: &[String]) -> Vec<String> {
    let mut problems = Problems::default();
    for address in addresses {
        check_listen_address(key, address, &mut problems);
    }
    problems.0
}

pub(super) fn duration_or(
    key: &str,
    text: Option<&str>,
    default: Duration,
    problems: &mut Problems,
) -> Duration {
    let Some(text) = text else { return default };
    match humantime::parse_duration(text) {
        Ok(duration) if duration.is_zero() => {
            problems.add(key, "must be greater than 0");
            default
        }
        Ok(duration) => duration,
        Err(error) => {
            problems.add(
                key,
                format!(
                    "invalid duration {text:?} ({error}); expected e.g. \"30s\", \"5m\", \"1h\""
                ),
            );
            default
        }
    }
}

/// A duration where `"0s"` means "off" (`max_backoff`, `probe_min_interval`).
pub(super) fn duration_or_off(
    key: &str,
    text: Option<&str>,
    default: Duration,
    problems: &mut Problems,
) -> Duration {
    let Some(text) = text else { return default };
    match humantime::parse_duration(text) {
        Ok(duration) => duration,
        Err(error) => {
            problems.add(
                key,
                format!(
                    "invalid duration {text:?} ({error}); expected e.g. \"30s\", \"5m\", \"1h\", or \"0s\" to turn it off"
                ),
            );
            default
        }
    }
}

pub(super) fn http_url(key: &str, text: Option<&str>, problems: &mut Problems) -> Option<Url> {
    let Some(text) = text else {
        problems.add(key, "missing; an http:// or https:// URL is required");
        return None;
    };
    match Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            if !url.username().is_empty() || url.password().is_some() {
                problems.add(
                    key,
                    "credentials in the URL are not allowed; use the client_secret keys",
                );
                return None;
            }
            Some(url)
        }
        Ok(url) => {
            problems.add(
                key,
                format!(
                    "unsupported URL {:?} (scheme {:?}); expected http:// or https:// with a host",
                    shown_url(text),
                    url.scheme()
                ),
            );
            None
        }
        Err(error) => {
            problems.add(
                key,
                format!(
                    "invalid URL {:?} ({error}); expected an http:// or https:// URL",
                    shown_url(text)
                ),
            );
            None
        }
    }
}

/// Exactly one of the inline, file and environment forms of a secret.
pub(super) fn secret_source(
    key: &str,
    inline: Option<String>,
    file: Option<PathBuf>,
    env: Option<String>,
    problems: &mut Problems,
) -> Option<SecretSource> {
    let given = [inline.is_some(), file.is_some(), env.is_some()]
        .iter()
        .filter(|given| **given)
        .count();
    let forms = format!("{key} | {key}_file | {key}_env");
    if given != 1 {
        let what = if given == 0 {
            format!("missing; set exactly one of {forms}")
        } else {
            format!("more than one source given; set exactly one of {forms}")
        };
        problems.add(key, what);
        return None;
    }
    let (source, source_key) = if let Some(value) = inline {
        (SecretSource::Inline(Secret::new(value)), key.to_string())
    } else if let Some(path) = file {
        (SecretSource::File(path), format!("{key}_file"))
    } else if let Some(name) = env {
        (SecretSource::Env(name), format!("{key}_env"))
    } else {
        return None;
    };
    // Resolve once now, so a missing variable or unreadable file stops start-up with its name.
    if let Err(error) = source.read() {
        problems.add(&source_key, error);
        return None;
    }
    Some(source)
}

pub(super) const RESERVED_PARAMS: [&str; 6] = [
    "grant_type",
    "client_id",
    "client_secret",
    "scope",
    "username",
    "password",
];

/// What `[defaults]` gives every provider that does not set its own.
pub(super) struct Defaults<'a> {
    pub(super) interval: Duration,
    pub(super) timeout: Duration,
    pub(super) max_backoff: Duration,
    pub(super) proxy: &'a ProxySetting,
}

/// `proxy_url`: `"none"`, or an `http://` / `https://` URL of a proxy with an optional
/// `user:password@` (kept apart from the URL, as a secret). Messages never show the credentials.
pub(super) fn proxy_setting(
    key: &str,
    text: &str,
    problems: &mut Problems,
) -> Option<ProxySetting> {
    if text == "none" {
        return Some(ProxySetting::Disabled);
    }
    let allowed = "expected \"none\" or a proxy URL such as \"http://proxy.example:3128\" (http:// or https://, optional user:password@, no path)";
    let mut url = match Url::parse(text) {
        Ok(url) => url,
        Err(error) => {
            problems.add(
                key,
                format!("invalid URL {:?} ({error}); {allowed}", shown_url(text)),
            );
            return None;
        }
    };
    let shown = shown_url(text);
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        problems.add(
            key,
            format!(
                "unsupported proxy {shown:?} (scheme {:?}); {allowed}",
                url.scheme()
            ),
        );
        return None;
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        problems.add(
            key,
            format!("proxy {shown:?} has a path, query or fragment; {allowed}"),
        );
        return None;
    }
    let decode = |part: &str| {
        percent_decode(part).ok_or_else(|| {
            format!("the user:password@ part of proxy {shown:?} is not valid percent-encoded UTF-8")
        })
    };
    let credentials = if url.username().is_empty() && url.password().is_none() {
        None
    } else {
        match (
            decode(url.username()),
            decode(url.password().unwrap_or_default()),
        ) {
            (Ok(user), Ok(password)) => {
                Some((ProxyCredential::new(user), ProxyCredential::new(password)))
            }
            (Err(why), _) | (_, Err(why)) => {
                problems.add(key, why);
                return None;
            }
        }
    };
    // Infallible for an http(s) URL with a host; checked anyway rather than unwrapped.
    if url.set_username("").is_err() || url.set_password(None).is_err() {
        problems.add(
            key,
            format!("cannot separate the credentials of proxy {shown:?}"),
        );
        return None;
    }
    Some(ProxySetting::Url(Box::new(ProxyUrl { url, credentials })))
}

/// Percent-decoding of a URL's user or password part (`None`: not UTF-8 or a broken escape).
pub(crate) fn percent_decode(part: &str) -> Option<String> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = part.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub(super) fn validate_provider(
    name: String,
    prefix: &str,
    raw: RawProvider,
    defaults: Defaults<'_>,
    problems: &mut Problems,
) -> Option<ProviderConfig> {
    let before = problems.0.len();
    let interval = duration_or(
        &format!("{prefix}.interval"),
        raw.interval.as_deref(),
        defaults.interval,
        problems,
    );
    let timeout = duration_or(
        &format!("{prefix}.timeout"),
        raw.timeout.as_deref(),
        defaults.timeout,
        problems,
    );
    let max_backoff = duration_or_off(
        &format!("{prefix}.max_backoff"),
        raw.max_backoff.as_deref(),
        defaults.max_backoff,
        problems,
    );
    let proxy = match raw.proxy_url.as_deref() {
        Some(text) => proxy_setting(&format!("{prefix}.proxy_url"), text, problems),
        None => Some(defaults.proxy.clone()),
    };
    let token = match raw.token {
        Some(token) => validate_token(&format!("{prefix}.token"), token, problems),
        None => {
            problems.add(
                &format!("{prefix}.token"),
                "missing; every provider needs a [token] table",
            );
            None
        }
    };
    let canary = raw
        .canary
        .and_then(|canary| validate_canary(&format!("{prefix}.canary"), canary, problems));
    let has_client_certificate = raw
        .tls
        .as_ref()
        .is_some_and(|tls| tls.client_cert_file.is_some() || tls.client_key_file.is_some());
    client_auth::check_tls_client_auth(
        prefix,
        token.as_ref().map(|token| token.auth_method),
        has_client_certificate,
        problems,
    );
    let tls = match raw.tls {
        Some(tls) => Arc::new(validate_tls(&format!("{prefix}.tls"), tls, problems)),
        None => Arc::clone(&DEFAULT_TLS),
    };
    if problems.0.len() != before {
        return None;
    }
    Some(ProviderConfig {
        name,
        interval,
        timeout,
        max_backoff,
        token: token?,
        canary,
        tls,
        proxy: proxy?,
    })
}

pub(super) fn validate_token(
    prefix: &str,
    mut raw: RawToken,
    problems: &mut Problems,
) -> Option<TokenConfig> {
    let key = |field: &str| format!("{prefix}.{field}");
    let endpoint = token_endpoint(prefix, &raw, problems);

    let client_id = match raw.client_id.take() {
        Some(id) if !id.is_empty() => Some(id),
        _ => {
            problems.add(
                &key("client_id"),
                "missing; the OAuth2 client id is required",
            );
            None
        }
    };
    let auth_method =
        client_auth::auth_method(&key("auth_method"), raw.auth_method.as_deref(), problems);
    let assertion = client_auth::assertion(prefix, &raw, auth_method, problems);
    let client_secret = match auth_method {
        Some(method) if !method.uses_secret() => {
            let given = [
                ("client_secret", raw.client_secret.is_some()),
                ("client_secret_file", raw.client_secret_file.is_some()),
                ("client_secret_env", raw.client_secret_env.is_some()),
            ];
            let given: Vec<&str> = given.iter().filter(|g| g.1).map(|g| g.0).collect();
            client_auth::refuse_secret(prefix, method, &given, problems);
            None
        }
        _ => secret_source(
            &key("client_secret"),
            raw.client_secret,
            raw.client_secret_file,
            raw.client_secret_env,
            problems,
        ),
    };

    let basic_encoding = match raw.basic_encoding.as_deref() {
        None | Some("form") => Some(BasicEncoding::Form),
        Some("raw") => {
            // RFC 7617: the user-id ends at the first colon, so a raw id cannot hold one.
            if client_id.as_deref().is_some_and(|id| id.contains(':')) {
                problems.add(
                    &key("basic_encoding"),
                    "\"raw\" cannot send a client_id containing ':' (the server splits id and secret at the first colon); use basic_encoding = \"form\"",
                );
                None
            } else {
                Some(BasicEncoding::Raw)
            }
        }
        Some(other) => {
            problems.add(
                &key("basic_encoding"),
                format!("unknown value {other:?}; allowed: form, raw"),
            );
            None
        }
    };
    if raw.basic_encoding.is_some() && auth_method != Some(AuthMethod::ClientSecretBasic) {
        problems.add(
            &key("basic_encoding"),
            "only meaningful with auth_method = \"client_secret_basic\"",
        );
    }

    let password_given =
        raw.password.is_some() || raw.password_file.is_some() || raw.password_env.is_some();
    let grant = match raw.grant_type.as_deref() {
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
            let username = match raw.username {
                Some(username) if !username.is_empty() => Some(username),
                _ => {
                    problems.add(
                        &key("username"),
                        "missing; the password grant needs a username",
                    );
                    None
                }
            };
            let password = secret_source(
                &key("password"),
                raw.password,
                raw.password_file,
                raw.password_env,
                problems,
            );
            match (username, password) {
                (Some(username), Some(password)) => Some(Grant::Password { username, password }),
                _ => None,
            }
        }
        Some(other) => {
            problems.add(
                &key("grant_type"),
                format!("unknown value {other:?}; allowed: client_credentials, password"),
            );
            None
        }
    };

    for scope in &raw.scopes {
        if scope.is_empty() || scope.contains(char::is_whitespace) {
            problems.add(
                &key("scopes"),
                format!("invalid scope {scope:?}; scopes are non-empty and contain no spaces (they are sent space-joined)"),
            );
        }
    }
    let mut params = BTreeMap::new();
    for (param, value) in raw.params {
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

    let json_fields = match raw.json_fields {
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
    };

    let response = match raw.response {
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
    };

    let client_secret_expires = super::expiry::expiry_date(
        &key("client_secret_expires"),
        raw.client_secret_expires.as_deref(),
        problems,
    );
    let password_expires = super::expiry::expiry_date(
        &key("password_expires"),
        raw.password_expires.as_deref(),
        problems,
    );
    if raw.password_expires.is_some() && !matches!(grant, Some(Grant::Password { .. })) {
        problems.add(
            &key("password_expires"),
            "only meaningful with grant_type = \"password\"",
        );
    }
    let expect = super::expiry::expect(prefix, raw.expect, problems);

    Some(TokenConfig {
        endpoint: endpoint?,
        grant: grant?,
        client_id: client_id?,
        client_secret,
        auth_method: auth_method?,
        assertion: assertion.map(Box::new),
        basic_encoding: basic_encoding?,
        scopes: raw.scopes,
        params,
        reuse: raw.reuse,
        refresh_before,
        json_fields,
        response,
        client_secret_expires,
        password_expires,
        expect: expect.map(Box::new),
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

pub(super) fn validate_canary(
    prefix: &str,
    raw: RawCanary,
    problems: &mut Problems,
) -> Option<CanaryConfig> {
    let url = http_url(&format!("{prefix}.url"), raw.url.as_deref(), problems);
    let method_text = raw.method.unwrap_or_else(|| "GET".to_string());
    let method = match reqwest::Method::from_bytes(method_text.to_ascii_uppercase().as_bytes()) {
        Ok(method) => Some(method),
        Err(_) => {
            problems.add(
                &format!("{prefix}.method"),
                format!("invalid HTTP method {method_text:?}; e.g. GET, POST, HEAD"),
            );
            None
        }
    };
    if let Some(expected) = &raw.expected_status {
        if expected.is_empty() {
            problems.add(
                &format!("{prefix}.expected_status"),
                "must not be empty; omit it to accept any 2xx",
            );
        }
        for status in expected {
            if !(100..=599).contains(status) {
                problems.add(
                    &format!("{prefix}.expected_status"),
                    format!("invalid HTTP status {status}; allowed: 100 to 599"),
                );
            }
        }
    }
    let token_rejected_status = raw.token_rejected_status.unwrap_or_else(|| vec![401]);
    if token_rejected_status.is_empty() {
        problems.add(
            &format!("{prefix}.token_rejected_status"),
            "must not be empty; omit it for the default [401]",
        );
    }
    for status in &token_rejected_status {
        if !(400..=499).contains(status) {
            problems.add(
                &format!("{prefix}.token_rejected_status"),
                format!(
                    "invalid status {status}; allowed: 4xx statuses (400 to 499), e.g. [401, 403]"
                ),
            );
        }
    }
    let mut headers = Vec::with_capacity(raw.headers.len());
    for (name, value) in raw.headers {
        let key = format!("{prefix}.headers.{name}");
        let Some(header_name) = canary_header_name(&key, &name, problems) else {
            continue;
        };
        match HeaderValue::from_str(&value) {
            Ok(header_value) => headers.push((header_name, header_value)),
            Err(_) => problems.add(&key, "invalid HTTP header value (control characters?)"),
        }
    }
    let secret_headers = secret_headers(prefix, raw.secret_headers, &headers, problems);
    Some(CanaryConfig {
        url: url?,
        method: method?,
        expected_status: raw.expected_status,
        headers,
        secret_headers,
        token_rejected_status,
    })
}

/// A canary header's name (in `headers` or `secret_headers`): a valid name, not the
/// `Authorization` the exporter sets itself.
fn canary_header_name(key: &str, name: &str, problems: &mut Problems) -> Option<HeaderName> {
    let Ok(header_name) = HeaderName::from_bytes(name.as_bytes()) else {
        problems.add(key, "invalid HTTP header name");
        return None;
    };
    if header_name == reqwest::header::AUTHORIZATION {
        problems.add(
            key,
            "the exporter sets Authorization itself (Bearer <token>)",
        );
        return None;
    }
    Some(header_name)
}

/// `secret_headers`: each a header name and exactly one of `env` / `file`, resolved once now
/// (so a missing variable stops start-up naming it) and re-read on every call.
fn secret_headers(
    prefix: &str,
    raw: BTreeMap<String, RawSecretRef>,
    plain: &[(HeaderName, HeaderValue)],
    problems: &mut Problems,
) -> Vec<(HeaderName, SecretSource)> {
    let mut headers = Vec::with_capacity(raw.len());
    for (name, source) in raw {
        let key = format!("{prefix}.secret_headers.{name}");
        let Some(header_name) = canary_header_name(&key, &name, problems) else {
            continue;
        };
        if plain.iter().any(|(other, _)| *other == header_name)
            || headers.iter().any(|(other, _)| *other == header_name)
        {
            problems.add(
                &key,
                "header given twice (names are case-insensitive; also in headers?); keep one",
            );
            continue;
        }
        let source = match (source.env, source.file) {
            (Some(env), None) => SecretSource::Env(env),
            (None, Some(file)) => SecretSource::File(file),
            (given_env, _) => {
                let what = if given_env.is_some() {
                    "both env and file are set"
                } else {
                    "no source given"
                };
                problems.add(
                    &key,
                    format!("{what}; set exactly one: {{ env = \"VARIABLE\" }} or {{ file = \"/path/to/file\" }}"),
                );
                continue;
            }
        };
        let source_key = match &source {
            SecretSource::File(_) => format!("{key}.file"),
            _ => format!("{key}.env"),
        };
        match source.read() {
            Err(error) => problems.add(&source_key, error),
            // Never the value in the message: it is a secret.
            Ok(value) if HeaderValue::from_str(value.expose()).is_err() => problems.add(
                &source_key,
                "the value read is not a valid HTTP header value (control characters or non-ASCII?); not shown: a secret",
            ),
            Ok(_) => headers.push((header_name, source)),
        }
    }
    headers
}

// What nearly every provider has, held once for all of them: an `Arc` each rather than the
// same six field-name strings and an empty TLS table copied into every provider.
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
static DEFAULT_TLS: LazyLock<Arc<TlsConfig>> = LazyLock::new(Arc::default);

pub(super) fn validate_tls(prefix: &str, raw: RawTls, problems: &mut Problems) -> TlsConfig {
    let mut ca_certificates = Vec::new();
    let mut ca_pem = Vec::new();
    if let Some(path) = &raw.ca_file {
        let key = format!("{prefix}.ca_file");
        match files::read(path, MAX_PEM_FILE_BYTES, CONFIG_READ_TIMEOUT) {
            Ok(pem) => match reqwest::Certificate::from_pem_bundle(&pem) {
                Ok(certs) if !certs.is_empty() => {
                    ca_certificates = certs;
                    ca_pem = pem;
                }
                Ok(_) => problems.add(&key, format!("{} holds no PEM certificate", path.display())),
                Err(error) => problems.add(
                    &key,
                    format!(
                        "{} is not a PEM certificate bundle: {error}",
                        path.display()
                    ),
                ),
            },
            Err(error) => problems.add(&key, format!("cannot read {}: {error}", path.display())),
        }
    }
    let client_identity = client_identity(prefix, &raw, problems);
    TlsConfig {
        ca_file: raw.ca_file,
        ca_pem,
        ca_certificates,
        client_identity,
        insecure_skip_verify: raw.insecure_skip_verify,
    }
}

/// Reads `client_cert_file` and `client_key_file` (both or neither) into a client identity.
pub(super) fn client_identity(
    prefix: &str,
    raw: &RawTls,
    problems: &mut Problems,
) -> Option<ClientIdentity> {
    let (cert_path, key_path) = match (&raw.client_cert_file, &raw.client_key_file) {
        (None, None) => return None,
        (Some(cert), Some(key)) => (cert, key),
        (Some(_), None) => {
            problems.add(
                &format!("{prefix}.client_key_file"),
                "missing; client_cert_file needs its private key",
            );
            return None;
        }
        (None, Some(_)) => {
            problems.add(
                &format!("{prefix}.client_cert_file"),
                "missing; client_key_file needs its certificate",
            );
            return None;
        }
    };
    let read = |key: &str, path: &Path, problems: &mut Problems| match files::read(
        path,
        MAX_PEM_FILE_BYTES,
        CONFIG_READ_TIMEOUT,
    ) {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            problems.add(
                &format!("{prefix}.{key}"),
                format!("cannot read {}: {error}", path.display()),
            );
            None
        }
    };
    let cert_pem = read("client_cert_file", cert_path, problems)?;
    let key_pem = read("client_key_file", key_path, problems)?;
    match ClientIdentity::from_files(cert_path.clone(), key_path.clone(), &cert_pem, &key_pem) {
        Some(identity) => Some(identity),
        None => {
            // The parser's message could quote the key material; say only what is wrong.
            problems.add(
                &format!("{prefix}.client_cert_file"),
                format!(
                    "{} and {} do not hold a PEM certificate and its PEM private key",
                    cert_path.display(),
                    key_path.display()
                ),
            );
            None
        }
    }
}
