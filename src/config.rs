//! Configuration: figment layers (defaults < TOML file < `OAUTH2_EXPORTER_*` environment) fill a
//! raw, all-optional structure; `validate` turns it into ready-to-use values (parsed URLs,
//! durations, secret sources, TLS roots) and reports every problem with the key it concerns.
//! Nothing downstream re-validates.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Toml};
use reqwest::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use url::Url;

use crate::config_env::{EnvStrings, lenient};
use crate::secrets::{MAX_PEM_FILE_BYTES, Secret, SecretSource, read_capped};

/// Largest configuration file accepted (a guard against naming a device or a huge file).
const MAX_CONFIG_FILE_BYTES: u64 = 64 * 1024 * 1024;

pub const DEFAULT_LISTEN_ADDRESS: &str = "0.0.0.0:9875";
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_REFRESH_BEFORE: Duration = Duration::from_secs(300);
pub const ENV_PREFIX: &str = "OAUTH2_EXPORTER_";

// ---------------------------------------------------------------------------------------------
// Raw configuration, exactly as written. Every field is optional so that validation, not serde,
// reports what is missing: it can name the key and keep going to find every problem. Unknown
// keys are found by [`check_layer`] against [`allowed_keys`], all at once, rather than by serde,
// which stops at the first.

#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    #[serde(default)]
    web: RawWeb,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    providers: BTreeMap<String, RawProvider>,
}

#[derive(Debug, Default, Deserialize)]
struct RawWeb {
    listen_address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawDefaults {
    interval: Option<String>,
    timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawProvider {
    interval: Option<String>,
    timeout: Option<String>,
    token: Option<RawToken>,
    canary: Option<RawCanary>,
    tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
struct RawToken {
    url: Option<String>,
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secret_file: Option<PathBuf>,
    client_secret_env: Option<String>,
    auth_method: Option<String>,
    #[serde(default, deserialize_with = "lenient::strings")]
    scopes: Vec<String>,
    #[serde(default)]
    params: BTreeMap<String, String>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    #[serde(default, deserialize_with = "lenient::bool")]
    reuse: bool,
    refresh_before: Option<String>,
    json_fields: Option<RawJsonFields>,
    response: Option<RawResponse>,
}

#[derive(Debug, Deserialize)]
struct RawJsonFields {
    client_id: Option<String>,
    client_secret: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawResponse {
    access_token: Option<String>,
    expires_in: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawCanary {
    url: Option<String>,
    method: Option<String>,
    #[serde(default, deserialize_with = "lenient::statuses")]
    expected_status: Option<Vec<u16>>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct RawTls {
    ca_file: Option<PathBuf>,
    client_cert_file: Option<PathBuf>,
    client_key_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "lenient::bool")]
    insecure_skip_verify: bool,
}

// ---------------------------------------------------------------------------------------------
// Validated configuration.

#[derive(Debug, Clone)]
pub struct Config {
    pub web: WebConfig,
    /// Sorted by name.
    pub providers: Vec<ProviderConfig>,
}

#[derive(Debug, Clone)]
pub struct WebConfig {
    pub listen_address: String,
}

/// Compared on reload: an unchanged provider keeps its held token and its task.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderConfig {
    pub name: String,
    pub interval: Duration,
    /// Per HTTP request.
    pub timeout: Duration,
    pub token: TokenConfig,
    pub canary: Option<CanaryConfig>,
    pub tls: TlsConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TokenConfig {
    pub url: Url,
    pub grant: Grant,
    pub client_id: String,
    pub client_secret: SecretSource,
    pub auth_method: AuthMethod,
    pub scopes: Vec<String>,
    pub params: BTreeMap<String, String>,
    pub reuse: bool,
    pub refresh_before: Duration,
    pub json_fields: JsonFields,
    pub response: ResponseFields,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    ClientCredentials,
    Password {
        username: String,
        password: SecretSource,
    },
}

impl Grant {
    pub fn as_str(&self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::Password { .. } => "password",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ClientSecretPost,
    ClientSecretBasic,
    JsonBody,
}

/// Key names used for the credentials in a `json_body` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonFields {
    pub client_id: String,
    pub client_secret: String,
    pub username: String,
    pub password: String,
}

/// Where the token and its lifetime are found in the token response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseFields {
    pub access_token: FieldPath,
    pub expires_in: FieldPath,
}

/// A top-level key, or a JSON pointer (RFC 6901) when it starts with `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldPath {
    Key(String),
    Pointer(String),
}

impl FieldPath {
    fn parse(text: &str) -> FieldPath {
        if text.starts_with('/') {
            FieldPath::Pointer(text.to_string())
        } else {
            FieldPath::Key(text.to_string())
        }
    }

    pub fn find<'a>(&self, value: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
        match self {
            FieldPath::Key(key) => value.get(key),
            FieldPath::Pointer(pointer) => value.pointer(pointer),
        }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldPath::Key(key) | FieldPath::Pointer(key) => f.write_str(key),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CanaryConfig {
    pub url: Url,
    pub method: reqwest::Method,
    /// `None`: any 2xx passes.
    pub expected_status: Option<Vec<u16>>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl CanaryConfig {
    pub fn passes(&self, status: u16) -> bool {
        match &self.expected_status {
            Some(expected) => expected.contains(&status),
            None => (200..300).contains(&status),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    /// The PEM text of `ca_file`, read at load time (compared on reload: a renewed CA file
    /// counts as a change).
    pub ca_pem: Vec<u8>,
    /// Certificates parsed from `ca_pem`.
    pub ca_certificates: Vec<reqwest::Certificate>,
    /// The client certificate and key presented to identity providers that demand one (mTLS).
    pub client_identity: Option<ClientIdentity>,
    pub insecure_skip_verify: bool,
}

/// A client certificate with its private key. The key never prints.
#[derive(Clone)]
pub struct ClientIdentity {
    /// Certificate chain and key, PEM, as read (compared on reload).
    pem: Vec<u8>,
    pub identity: reqwest::Identity,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientIdentity([redacted])")
    }
}

impl PartialEq for ClientIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.pem == other.pem
    }
}

impl PartialEq for TlsConfig {
    fn eq(&self, other: &Self) -> bool {
        // The parsed certificates are derived from `ca_pem`.
        self.ca_file == other.ca_file
            && self.ca_pem == other.ca_pem
            && self.client_identity == other.client_identity
            && self.insecure_skip_verify == other.insecure_skip_verify
    }
}

impl TlsConfig {
    /// Whether this provider can share the default HTTP client.
    pub fn is_default(&self) -> bool {
        self.ca_file.is_none() && self.client_identity.is_none() && !self.insecure_skip_verify
    }
}

// ---------------------------------------------------------------------------------------------
// Errors.

/// Every problem found in a configuration, one line each, naming the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("\n"))
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------------------------------------
// Loading.

/// Command-line values that override the configuration (they win over every other layer).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen_address: Option<String>,
}

/// Loads the configuration file at `path` with environment and command-line overrides, and
/// validates it.
pub fn load_file(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
    load_files(&[path.to_path_buf()], overrides)
}

/// Loads several configuration files, or directories of `*.toml` files taken in name order, as
/// one configuration (later files win for `[web]` and `[defaults]`), with environment and
/// command-line overrides. A provider defined in two files is an error naming both, so teams
/// owning separate files cannot silently override each other.
pub fn load_files(paths: &[PathBuf], overrides: &Overrides) -> Result<Config, ConfigError> {
    let files = expand_paths(paths)?;
    let mut unknown = Vec::new();
    let mut owners: BTreeMap<String, &Path> = BTreeMap::new();
    let mut duplicates = Vec::new();
    for file in &files {
        let layer = check_layer(&Toml::file_exact(file));
        unknown.extend(layer.unknown_keys);
        for name in layer.providers {
            match owners.get(&name) {
                Some(first) => duplicates.push(format!(
                    "key `providers.{name}`: provider defined twice, in {} and in {}; each provider belongs to one file",
                    first.display(),
                    file.display()
                )),
                None => {
                    owners.insert(name, file);
                }
            }
        }
    }
    if !duplicates.is_empty() {
        return Err(ConfigError {
            problems: duplicates,
        });
    }
    unknown.extend(check_layer(&EnvStrings).unknown_keys);
    // Each file is parsed a second time here, on purpose: handing the checked data to figment
    // would mean a copy of it (figment providers lend their data), and parsing is cheaper than
    // holding two trees of a large configuration at once.
    let figment = files
        .iter()
        .fold(Figment::new(), |figment, file| {
            figment.merge(Toml::file_exact(file))
        })
        .merge(EnvStrings);
    load(figment, unknown, overrides)
}

/// The files named, with each directory replaced by its `*.toml` files in name order.
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ConfigError> {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        match std::fs::metadata(path) {
            Err(error) => problems.push(format!(
                "configuration file {}: cannot read it: {}",
                path.display(),
                describe_io(error.kind())
            )),
            Ok(metadata) if metadata.is_dir() => match std::fs::read_dir(path) {
                Err(error) => problems.push(format!(
                    "configuration directory {}: cannot list it: {}",
                    path.display(),
                    describe_io(error.kind())
                )),
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(Result::ok)
                        .map(|entry| entry.path())
                        // Hidden entries are skipped: Kubernetes volumes hold `..data` links
                        // beside the files; a symlinked `*.toml` is followed.
                        .filter(|p| {
                            p.file_name()
                                .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
                        })
                        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml"))
                        .collect();
                    found.sort();
                    if found.is_empty() {
                        problems.push(format!(
                            "configuration directory {}: holds no *.toml files",
                            path.display()
                        ));
                    }
                    files.extend(found);
                }
            },
            Ok(metadata) if !metadata.is_file() => problems.push(format!(
                "configuration file {}: not a regular file",
                path.display()
            )),
            Ok(metadata) if metadata.len() > MAX_CONFIG_FILE_BYTES => problems.push(format!(
                "configuration file {}: larger than {MAX_CONFIG_FILE_BYTES} bytes",
                path.display()
            )),
            Ok(_) => files.push(path.clone()),
        }
    }
    if problems.is_empty() {
        Ok(files)
    } else {
        Err(ConfigError { problems })
    }
}

/// Loads configuration from TOML text (the demo's built-in configuration), without environment
/// overrides.
pub fn load_str(toml: &str, overrides: &Overrides) -> Result<Config, ConfigError> {
    let layer = Toml::string(toml);
    let unknown = check_layer(&layer).unknown_keys;
    load(Figment::new().merge(layer), unknown, overrides)
}

/// A warning when the file at `path` holds inline secrets and others than its owner may read it.
/// (With several files, the warning names every such file; checking a file without inline
/// secrets is harmless.)
pub fn exposed_secrets_warning(path: &Path, config: &Config) -> Option<String> {
    let inline: Vec<&str> = config
        .providers
        .iter()
        .filter(|p| {
            matches!(p.token.client_secret, SecretSource::Inline(_))
                || matches!(
                    &p.token.grant,
                    Grant::Password {
                        password: SecretSource::Inline(_),
                        ..
                    }
                )
        })
        .map(|p| p.name.as_str())
        .collect();
    if inline.is_empty() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        if mode & 0o077 != 0 {
            return Some(format!(
                "{} holds inline secrets (providers: {}) and is readable by group or others (mode {:o}); run `chmod 600` on it, or use client_secret_file / client_secret_env",
                path.display(),
                name_some(&inline, 5),
                mode & 0o777
            ));
        }
    }
    None
}

/// Up to `shown` names, then how many more: a log line stays readable with 10 000 providers.
fn name_some(names: &[&str], shown: usize) -> String {
    if names.len() <= shown {
        return names.join(", ");
    }
    format!(
        "{} and {} more",
        names[..shown].join(", "),
        names.len() - shown
    )
}

/// Extracts and validates the merged layers; `problems` holds what the layers' own checks found.
fn load(
    mut figment: Figment,
    mut problems: Vec<String>,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    if let Some(address) = &overrides.listen_address {
        figment = figment.merge(("web.listen_address", address));
    }
    match figment.extract::<RawConfig>() {
        Ok(raw) => match validate(raw) {
            Ok(config) if problems.is_empty() => Ok(config),
            Ok(_) => Err(ConfigError { problems }),
            Err(error) => {
                problems.extend(error.problems);
                Err(ConfigError { problems })
            }
        },
        Err(error) => {
            problems.extend(error.into_iter().map(|e| describe_error(&e)));
            Err(ConfigError { problems })
        }
    }
}

/// The keys allowed in the table at `path` (provider names replaced by `*`); `None` where any
/// key is allowed (provider names, `params`, `headers`).
fn allowed_keys(path: &[&str]) -> Option<&'static [&'static str]> {
    Some(match path {
        [] => &["web", "defaults", "providers"],
        ["web"] => &["listen_address"],
        ["defaults"] => &["interval", "timeout"],
        ["providers", _] => &["interval", "timeout", "token", "canary", "tls"],
        ["providers", _, "token"] => &[
            "url",
            "grant_type",
            "client_id",
            "client_secret",
            "client_secret_file",
            "client_secret_env",
            "auth_method",
            "scopes",
            "params",
            "username",
            "password",
            "password_file",
            "password_env",
            "reuse",
            "refresh_before",
            "json_fields",
            "response",
        ],
        ["providers", _, "token", "json_fields"] => {
            &["client_id", "client_secret", "username", "password"]
        }
        ["providers", _, "token", "response"] => &["access_token", "expires_in"],
        ["providers", _, "canary"] => &["url", "method", "expected_status", "headers"],
        ["providers", _, "tls"] => &[
            "ca_file",
            "client_cert_file",
            "client_key_file",
            "insecure_skip_verify",
        ],
        _ => return None,
    })
}

/// What one layer (a file, the environment) holds that is checked before the layers merge.
struct LayerCheck {
    /// Every key the configuration does not know, named with where it was written.
    unknown_keys: Vec<String>,
    /// The providers the layer defines.
    providers: Vec<String>,
}

/// Checks one layer on its own data. Walking each layer, rather than the merged configuration,
/// names the source of each key for free, and avoids a copy of the merged configuration (at
/// 10 000 providers that copy was 60 MiB, the process's peak). A layer that cannot be read or
/// parsed yields nothing here: the merge reports why.
fn check_layer(layer: &impl figment::Provider) -> LayerCheck {
    let metadata = layer.metadata();
    let mut check = LayerCheck {
        unknown_keys: Vec::new(),
        providers: Vec::new(),
    };
    let Ok(data) = layer.data() else {
        return check;
    };
    for root in data.values() {
        walk_unknown(&metadata, root, &mut Vec::new(), &mut check.unknown_keys);
        if let Some(figment::value::Value::Dict(_, providers)) = root.get("providers") {
            check.providers.extend(providers.keys().cloned());
        }
    }
    check
}

fn walk_unknown<'a>(
    metadata: &figment::Metadata,
    table: &'a figment::value::Dict,
    path: &mut Vec<&'a str>,
    problems: &mut Vec<String>,
) {
    // Provider names are free; match the schema with them replaced by `*`.
    let schema_path: Vec<&str> = path
        .iter()
        .enumerate()
        .map(|(i, part)| {
            if i == 1 && path[0] == "providers" {
                "*"
            } else {
                *part
            }
        })
        .collect();
    let allowed = allowed_keys(&schema_path);
    for (key, value) in table {
        if let Some(allowed) = allowed
            && !allowed.contains(&key.as_str())
        {
            let full = path
                .iter()
                .copied()
                .chain([key.as_str()])
                .collect::<Vec<_>>()
                .join(".");
            let source = source_name(metadata, &full);
            problems.push(format!(
                "{source}: key `{full}`: unknown key; allowed here: {}",
                allowed.join(", ")
            ));
            continue;
        }
        let descend = match schema_path.as_slice() {
            // Inside these, keys are data (parameter and header names), not configuration.
            ["providers", _, "token", "params"] | ["providers", _, "canary", "headers"] => false,
            _ => true,
        };
        if descend && let figment::value::Value::Dict(_, inner) = value {
            path.push(key.as_str());
            walk_unknown(metadata, inner, path, problems);
            path.pop();
        }
    }
}

/// Where a value came from: its file, or the environment variable that set `key`.
fn source_name(metadata: &figment::Metadata, key: &str) -> String {
    match &metadata.source {
        Some(figment::Source::File(path)) => path.display().to_string(),
        _ if metadata.name.contains("environment") => format!(
            "environment variable {ENV_PREFIX}{}",
            key.replace('.', "__").to_uppercase()
        ),
        _ => metadata.name.to_string(),
    }
}

/// One figment error as a line naming its source and key.
pub(crate) fn describe_error(error: &figment::Error) -> String {
    use figment::error::Kind;
    let mut key = error.path.join(".");
    let what = match &error.kind {
        Kind::UnknownField(field, expected) => {
            key = join_key(&key, field);
            format!("unknown key; allowed here: {}", expected.join(", "))
        }
        Kind::MissingField(field) => {
            key = join_key(&key, field);
            "missing".to_string()
        }
        // The value of a secret key is never repeated back, even when it is of the wrong type.
        Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected) if is_secret_key(&key) => {
            format!("expected {expected}, found something else (not shown: a secret)")
        }
        Kind::InvalidType(actual, expected) => format!("expected {expected}, found {actual}"),
        Kind::InvalidValue(actual, expected) => format!("expected {expected}, found {actual}"),
        Kind::InvalidLength(length, expected) => {
            format!("expected {expected}, found a length of {length}")
        }
        other => condense(&other.to_string()),
    };
    let source = error
        .metadata
        .as_ref()
        .map(|metadata| source_name(metadata, &key))
        .unwrap_or_else(|| "configuration".to_string());
    if key.is_empty() {
        format!("{source}: {what}")
    } else {
        format!("{source}: key `{key}`: {what}")
    }
}

/// A parser message on one line, without the quoted source excerpt: the offending line may be
/// `client_secret = "..."`, and a configuration error must never show a secret.
fn condense(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .filter(|line| !line.starts_with('|'))
        .filter(|line| {
            // Excerpt lines look like `12 | client_secret = "..."`.
            !line
                .split_once(" |")
                .is_some_and(|(number, _)| number.trim().chars().all(|c| c.is_ascii_digit()))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A URL as it may appear in a message: any `user:password@` part replaced.
fn shown_url(text: &str) -> String {
    let (scheme, rest) = match text.find("://") {
        Some(at) => (&text[..at + 3], &text[at + 3..]),
        None => ("", text),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}[redacted]@{}", &rest[at + 1..]),
        None => text.to_string(),
    }
}

/// An I/O failure in words a person expects ("no such file", not "entity not found").
pub fn describe_io(kind: std::io::ErrorKind) -> String {
    match kind {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        other => other.to_string(),
    }
}

fn is_secret_key(key: &str) -> bool {
    key.ends_with("client_secret")
        || key.ends_with("password")
        || key.starts_with("basic_auth_users")
}

/// Figment's error path sometimes already ends with the offending field, sometimes not.
fn join_key(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else if path == field || path.ends_with(&format!(".{field}")) {
        path.to_string()
    } else {
        format!("{path}.{field}")
    }
}

// ---------------------------------------------------------------------------------------------
// Validation.

/// Collects problems while validation goes on, so that one run reports all of them.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, key: &str, what: impl fmt::Display) {
        self.0.push(format!("key `{key}`: {what}"));
    }
}

fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let mut problems = Problems::default();

    let listen_address = raw
        .web
        .listen_address
        .unwrap_or_else(|| DEFAULT_LISTEN_ADDRESS.to_string());
    check_listen_address("web.listen_address", &listen_address, &mut problems);

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
            web: WebConfig { listen_address },
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

fn check_listen_address(key: &str, address: &str, problems: &mut Problems) {
    let valid = match address.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
        None => false,
    };
    if !valid {
        problems.add(
            key,
            format!("invalid address {address:?}; expected HOST:PORT, e.g. \"0.0.0.0:9875\""),
        );
    }
}

fn duration_or(
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

fn http_url(key: &str, text: Option<&str>, problems: &mut Problems) -> Option<Url> {
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
fn secret_source(
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

const RESERVED_PARAMS: [&str; 6] = [
    "grant_type",
    "client_id",
    "client_secret",
    "scope",
    "username",
    "password",
];

fn validate_provider(
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

fn validate_token(prefix: &str, raw: RawToken, problems: &mut Problems) -> Option<TokenConfig> {
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
        scopes: raw.scopes,
        params: raw.params,
        reuse: raw.reuse,
        refresh_before,
        json_fields,
        response,
    })
}

fn validate_canary(prefix: &str, raw: RawCanary, problems: &mut Problems) -> Option<CanaryConfig> {
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
    })
}

fn validate_tls(prefix: &str, raw: RawTls, problems: &mut Problems) -> TlsConfig {
    let mut ca_certificates = Vec::new();
    let mut ca_pem = Vec::new();
    if let Some(path) = &raw.ca_file {
        let key = format!("{prefix}.ca_file");
        match read_capped(path, MAX_PEM_FILE_BYTES) {
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
            Err(error) => problems.add(
                &key,
                format!(
                    "cannot read {}: {}",
                    path.display(),
                    describe_io(error.kind())
                ),
            ),
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
fn client_identity(prefix: &str, raw: &RawTls, problems: &mut Problems) -> Option<ClientIdentity> {
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
    let read = |key: &str, path: &Path, problems: &mut Problems| match read_capped(
        path,
        MAX_PEM_FILE_BYTES,
    ) {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            problems.add(
                &format!("{prefix}.{key}"),
                format!(
                    "cannot read {}: {}",
                    path.display(),
                    describe_io(error.kind())
                ),
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
