//! Raw values, then ready values: turns the raw configuration into parsed URLs, durations,
//! secret sources and TLS roots, and reports every problem with the key it concerns.

use super::raw::*;
use super::*;

/// Collects problems while validation goes on, so that one run reports all of them.
#[derive(Default)]
pub(super) struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, key: &str, what: impl fmt::Display) {
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
            default_interval,
            default_timeout,
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

pub(super) fn validate_provider(
    name: String,
    prefix: &str,
    raw: RawProvider,
    default_interval: Duration,
    default_timeout: Duration,
    problems: &mut Problems,
) -> Option<ProviderConfig> {
    let before = problems.0.len();
    let interval = duration_or(
        &format!("{prefix}.interval"),
        raw.interval.as_deref(),
        default_interval,
        problems,
    );
    let timeout = duration_or(
        &format!("{prefix}.timeout"),
        raw.timeout.as_deref(),
        default_timeout,
        problems,
    );
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
    let tls = raw
        .tls
        .map(|tls| validate_tls(&format!("{prefix}.tls"), tls, problems))
        .unwrap_or_default();
    if problems.0.len() != before {
        return None;
    }
    Some(ProviderConfig {
        name,
        interval,
        timeout,
        token: token?,
        canary,
        tls,
    })
}

pub(super) fn validate_token(
    prefix: &str,
    raw: RawToken,
    problems: &mut Problems,
) -> Option<TokenConfig> {
    let key = |field: &str| format!("{prefix}.{field}");
    let url = http_url(&key("url"), raw.url.as_deref(), problems);

    let client_id = match raw.client_id {
        Some(id) if !id.is_empty() => Some(id),
        _ => {
            problems.add(
                &key("client_id"),
                "missing; the OAuth2 client id is required",
            );
            None
        }
    };
    let client_secret = secret_source(
        &key("client_secret"),
        raw.client_secret,
        raw.client_secret_file,
        raw.client_secret_env,
        problems,
    );

    let auth_method = match raw.auth_method.as_deref() {
        None | Some("client_secret_post") => Some(AuthMethod::ClientSecretPost),
        Some("client_secret_basic") => Some(AuthMethod::ClientSecretBasic),
        Some("json_body") => Some(AuthMethod::JsonBody),
        Some(other) => {
            problems.add(
                &key("auth_method"),
                format!("unknown value {other:?}; allowed: client_secret_post, client_secret_basic, json_body"),
            );
            None
        }
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
    for param in raw.params.keys() {
        if RESERVED_PARAMS.contains(&param.as_str()) {
            problems.add(
                &format!("{prefix}.params.{param}"),
                format!("{param:?} is set by the exporter itself; use the dedicated key instead"),
            );
        }
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
            JsonFields {
                client_id: field(fields.client_id, "client_id"),
                client_secret: field(fields.client_secret, "client_secret"),
                username: field(fields.username, "username"),
                password: field(fields.password, "password"),
            }
        }
        None => JsonFields {
            client_id: "client_id".into(),
            client_secret: "client_secret".into(),
            username: "username".into(),
            password: "password".into(),
        },
    };

    let response = {
        let raw_response = raw.response.unwrap_or(RawResponse {
            access_token: None,
            expires_in: None,
        });
        let mut path = |value: Option<String>, name: &str| {
            let value = value.unwrap_or_else(|| name.to_string());
            if value.is_empty() {
                problems.add(&format!("{prefix}.response.{name}"), "must not be empty");
            }
            FieldPath::parse(&value)
        };
        ResponseFields {
            access_token: path(raw_response.access_token, "access_token"),
            expires_in: path(raw_response.expires_in, "expires_in"),
        }
    };

    Some(TokenConfig {
        url: url?,
        grant: grant?,
        client_id: client_id?,
        client_secret: client_secret?,
        auth_method: auth_method?,
        basic_encoding: basic_encoding?,
        scopes: raw.scopes,
        params: raw.params,
        reuse: raw.reuse,
        refresh_before,
        json_fields,
        response,
    })
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
        let Ok(header_name) = HeaderName::from_bytes(name.as_bytes()) else {
            problems.add(&key, "invalid HTTP header name");
            continue;
        };
        if header_name == reqwest::header::AUTHORIZATION {
            problems.add(
                &key,
                "the exporter sets Authorization itself (Bearer <token>)",
            );
            continue;
        }
        match HeaderValue::from_str(&value) {
            Ok(header_value) => headers.push((header_name, header_value)),
            Err(_) => problems.add(&key, "invalid HTTP header value (control characters?)"),
        }
    }
    Some(CanaryConfig {
        url: url?,
        method: method?,
        expected_status: raw.expected_status,
        headers,
        token_rejected_status,
    })
}

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
    let mut pem = read("client_cert_file", cert_path, problems)?;
    pem.push(b'\n');
    pem.extend(read("client_key_file", key_path, problems)?);
    match reqwest::Identity::from_pem(&pem) {
        Ok(identity) => Some(ClientIdentity { pem, identity }),
        Err(_) => {
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
