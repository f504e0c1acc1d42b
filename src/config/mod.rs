//! Configuration: figment layers (defaults < TOML file < `OAUTH2_EXPORTER_*` environment) fill a
//! raw, all-optional structure; `validate` turns it into ready-to-use values (parsed URLs,
//! durations, secret sources, TLS roots) and reports every problem with the key it concerns.
//! Nothing downstream re-validates.
//!
//! This file holds the validated types; [`load`] the `load_*` entry points; [`raw`] the
//! configuration as written and the keys each table allows (derived from its structs);
//! [`validate`] the conversion, one file per section; [`expiry`] credential expiry dates and the
//! warning for one already past; [`messages`] parser errors as one-line messages (never a
//! secret); [`env`] the `OAUTH2_EXPORTER_*` layer.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderName, HeaderValue};
use url::Url;

use crate::closed_set::closed_set;
use crate::secrets::{ProxyCredential, SecretSource};

pub const DEFAULT_LISTEN_ADDRESS: &str = "0.0.0.0:9875";
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a provider's next attempt is put off after refused credentials or a
/// `Retry-After` (issue 23): an hour keeps an account far from any lockout policy while a fixed
/// credential is still seen the same hour (and at once when it changes).
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// At most one real on-demand attempt per provider this often (issue 23).
pub const DEFAULT_PROBE_MIN_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_REFRESH_BEFORE: Duration = Duration::from_secs(300);
pub const DEFAULT_DISCOVERY_REFRESH: Duration = Duration::from_secs(3600);

mod env;
mod expiry;
mod load;
mod messages;
mod raw;
mod validate;

pub use env::ENV_PREFIX;
pub use expiry::expired_credential_warnings;
pub(crate) use load::FileLayer;
pub use load::{Overrides, expand_paths, exposed_secrets_warning, load_file, load_files, load_str};
pub(crate) use messages::describe_error;
pub(crate) use validate::percent_decode;
pub use validate::{is_valid_label_name, is_valid_provider_name};

// ---------------------------------------------------------------------------------------------
// Validated configuration.

#[derive(Debug, Clone)]
pub struct Config {
    pub web: WebConfig,
    pub metrics: MetricsConfig,
    /// Sorted by name.
    pub providers: Vec<ProviderConfig>,
}

#[derive(Debug, Clone)]
pub struct WebConfig {
    pub listen_address: String,
    /// Further `--web.listen-address` values after the first (which is `listen_address`): each
    /// is served like it, behind the same `--web.config.file`.
    pub extra_listen_addresses: Vec<String>,
    /// `probe_min_interval`: `/probe` makes at most one real attempt per provider this often
    /// and repeats the last result in between; zero turns the limit off.
    pub probe_min_interval: Duration,
}

impl WebConfig {
    /// Every address to listen on, the configured one first.
    pub fn listen_addresses(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.listen_address.as_str())
            .chain(self.extra_listen_addresses.iter().map(String::as_str))
    }
}

/// `[metrics]`: how the exporter's own series are exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetricsConfig {
    pub histograms: HistogramMode,
}

closed_set! {
    /// `metrics.histograms`: how the two request latency histograms are exported. Every series
    /// per histogram and provider is one more series in Prometheus' head, so this is the main
    /// lever on what the exporter costs Prometheus (docs/metrics.md has the figures).
    #[derive(Default)]
    HistogramMode {
        /// Classic histograms (12 buckets, `_sum`, `_count`) in the text format.
        #[default]
        Classic => "classic",
        /// Native histograms in the protobuf format to scrapers that ask for it; classic ones
        /// in the text format to the others.
        Native => "native",
        /// No histograms: the last token and canary request durations as gauges.
        None => "none",
    }
}

/// Compared on reload: an unchanged provider keeps its held token and its task.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderConfig {
    pub name: String,
    pub interval: Duration,
    /// Per HTTP request.
    pub timeout: Duration,
    /// The longest the next attempt is put off after refused credentials or a `Retry-After`;
    /// zero turns back-off off (issue 23).
    pub max_backoff: Duration,
    pub token: TokenConfig,
    pub canary: Option<CanaryConfig>,
    pub tls: Arc<TlsConfig>,
    /// How the provider's token, discovery and canary requests reach the network.
    pub proxy: ProxySetting,
    /// `labels`, over `[defaults]`'s: added to every series of the provider (issue 26).
    pub labels: Labels,
}

/// A provider's own labels (`labels` in `[defaults]` and the provider's table), sorted by name,
/// none with an empty value. Held once per distinct set: validation interns them, so providers
/// with equal sets share one allocation, and the provider's series, status row and `/probe`
/// page point at it rather than copy it (a provider without labels allocates nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(Option<Arc<[LabelPair]>>);

/// One label: its name and value.
pub type LabelPair = (Box<str>, Box<str>);

impl Labels {
    /// The set of these pairs, which must be sorted by name and unique (validation's job).
    pub(crate) fn new(pairs: Vec<LabelPair>) -> Labels {
        if pairs.is_empty() {
            Labels(None)
        } else {
            Labels(Some(Arc::from(pairs)))
        }
    }

    /// Every label, sorted by name.
    pub fn pairs(&self) -> &[LabelPair] {
        self.0.as_deref().unwrap_or_default()
    }

    /// Every label as `(name, value)`, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs().iter().map(|(name, value)| (&**name, &**value))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(label, _)| *label == name)
            .map(|(_, value)| value)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Whether this set and `other` are one allocation (interned), for tests.
    #[cfg(test)]
    pub(crate) fn shares_with(&self, other: &Labels) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Whether every `(name, value)` of `wanted` is one of these labels: the status page's and
    /// `check --label`'s filter (a name the provider lacks matches nothing).
    pub fn matches<'a>(&self, mut wanted: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
        wanted.all(|(name, value)| self.get(name) == Some(value))
    }
}

closed_set! {
    /// Every label name the exporter's own per-provider series carry, on `/metrics` and on
    /// `/probe`: the metrics catalogue writes its label names from this set only (its writers
    /// take a `SeriesLabel`, not text), so a provider's `labels`, which may use none of them,
    /// are checked against what the series really use.
    SeriesLabel {
        Provider => "provider",
        Reason => "reason",
        Phase => "phase",
        Code => "code",
        Credential => "credential",
        GrantType => "grant_type",
        /// A classic histogram's bucket bound.
        Le => "le",
    }
}

/// `proxy_url`, per provider or from `[defaults]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ProxySetting {
    /// Not set: `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` / `NO_PROXY` apply, as read by the
    /// HTTP client (curl's rules).
    #[default]
    Environment,
    /// `"none"`: always direct, whatever the environment says.
    Disabled,
    Url(Box<ProxyUrl>),
}

/// A proxy URL split into what may be shown and the credentials, which may not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// `http://host:port` (or https), without `user:password@`: safe for logs and traces.
    pub url: Url,
    /// The `user:password@` part, percent-decoded; sent as `Proxy-Authorization: Basic`.
    pub credentials: Option<(ProxyCredential, ProxyCredential)>,
}

impl ProxyUrl {
    /// `host:port` as logs and failure details name the proxy.
    pub fn host_port(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        match self.url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TokenConfig {
    /// Where token requests go: a fixed `url`, or what discovery finds for `issuer`.
    pub endpoint: TokenEndpoint,
    pub grant: Grant,
    pub client_id: String,
    /// `None` for the methods that send no secret (`private_key_jwt`, `tls_client_auth`).
    pub client_secret: Option<SecretSource>,
    pub auth_method: AuthMethod,
    /// How the exporter signs assertions: the client assertion of `private_key_jwt` and
    /// `client_secret_jwt`, and the `jwt_bearer` grant's assertion when `private_key_file` signs
    /// it. `None` when the exporter signs nothing.
    pub assertion: Option<Box<AssertionConfig>>,
    /// `client_assertion_file`: a JWT someone else issues (workload identity), read for every
    /// token request: the client assertion of `auth_method = "client_assertion"`, or the
    /// `jwt_bearer` grant's assertion.
    pub assertion_file: Option<Box<AssertionFile>>,
    /// How `client_secret_basic` writes the id and secret inside the header.
    pub basic_encoding: BasicEncoding,
    pub scopes: Vec<String>,
    pub params: BTreeMap<String, ParamValue>,
    pub reuse: bool,
    pub refresh_before: Duration,
    pub json_fields: Arc<JsonFields>,
    pub response: Arc<ResponseFields>,
    /// When the client secret stops working, as the provider said (`client_secret_expires`).
    pub client_secret_expires: Option<SystemTime>,
    /// When the password stops working (`password_expires`, password grant only).
    pub password_expires: Option<SystemTime>,
    /// Claims every newly obtained token must carry (`[token.expect]`).
    pub expect: Option<Box<Expect>>,
    /// `dpop = true` (here or in `[defaults]`): DPoP proofs on the token request and the canary
    /// call (RFC 9449, issue 25). Boxed: most providers have none.
    pub dpop: Option<Box<DpopConfig>>,
}

/// How DPoP proofs are made (RFC 9449). The key file is only named here, like
/// `private_key_file`: the probe re-reads it every cycle and validation checked it once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopConfig {
    /// `dpop_signing_algorithm`: RS256, PS256 or ES256; `None`: the key's own (RS256 for RSA,
    /// ES256 for EC), ES256 for a generated key.
    pub algorithm: Option<crate::signing::Algorithm>,
    /// `dpop_key_file`; `None`: a key is generated when the provider starts, kept for its life.
    pub key_file: Option<PathBuf>,
}

/// `[providers.NAME.token.expect]`: what a newly obtained JWT must say. The values are
/// configuration, not secrets: a mismatch names them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expect {
    /// Each must be in `scope` (RFC 9068, space-separated) or `scp` (string or array).
    pub scopes: Vec<String>,
    /// Each must be in `roles` (Entra ID application permissions).
    pub roles: Vec<String>,
    /// Must be in `aud` (a string or an array).
    pub audience: Option<String>,
    /// Must equal `iss`.
    pub issuer: Option<String>,
    /// `certificate_bound`: `cnf.x5t#S256` must be the SHA-256 thumbprint of the `[tls]` client
    /// certificate presented (RFC 8705 section 3).
    pub certificate_bound: bool,
}

impl TokenConfig {
    /// The extra `params` as form fields: a list value gives the key once per value, in the
    /// order written (RFC 8707 `resource`).
    pub fn form_params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().flat_map(|(key, value)| {
            value
                .values()
                .iter()
                .map(move |value| (key.as_str(), value.as_str()))
        })
    }

    /// The extra `params` as JSON members: a list value is a JSON array.
    pub fn json_params(&self) -> impl Iterator<Item = (&str, serde_json::Value)> {
        self.params.iter().map(|(key, value)| {
            let json = match value {
                ParamValue::One(value) => serde_json::Value::from(value.as_str()),
                ParamValue::List(values) => serde_json::Value::from(values.clone()),
            };
            (key.as_str(), json)
        })
    }
}

/// A `params` value as written: one string, or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    One(String),
    List(Vec<String>),
}

impl ParamValue {
    pub fn values(&self) -> &[String] {
        match self {
            ParamValue::One(value) => std::slice::from_ref(value),
            ParamValue::List(values) => values,
        }
    }
}

/// Where token requests are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenEndpoint {
    /// `url`: this one, always.
    Url(Url),
    /// `issuer`: the `token_endpoint` of the issuer's metadata (OpenID Connect Discovery or
    /// RFC 8414), fetched before the first request and again every `discovery_refresh`.
    Discovery(Box<DiscoveryConfig>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// As written: the metadata's `issuer` must equal it exactly (RFC 8414 section 3.3).
    pub issuer: String,
    /// The same, parsed: where the metadata URLs are made from.
    pub issuer_url: Url,
    pub refresh: Duration,
}

impl TokenEndpoint {
    /// The configured `url`, or the `issuer`: what people know this provider's endpoint by.
    pub fn configured(&self) -> &Url {
        match self {
            TokenEndpoint::Url(url) => url,
            TokenEndpoint::Discovery(discovery) => &discovery.issuer_url,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    ClientCredentials,
    /// Boxed: few providers use it, and every provider's settings are kept for its life.
    Password(Box<PasswordGrant>),
    /// RFC 7523 section 2.1: a JWT exchanged for a token.
    JwtBearer(Box<JwtBearer>),
}

/// The password grant's resource owner (RFC 6749 section 4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordGrant {
    pub username: String,
    pub password: SecretSource,
}

/// The `jwt_bearer` grant's assertion: signed here with `private_key_file`, or read from
/// `client_assertion_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtBearer {
    /// `assertion_issuer` (`iss`); `None`: the client id.
    pub issuer: Option<String>,
    /// `assertion_subject` (`sub`); `None`: the client id.
    pub subject: Option<String>,
    /// `assertion_claims`: further claims, as written (`scope` for Google-style servers).
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// Where the assertion comes from.
    pub source: BearerAssertion,
}

/// Where the `jwt_bearer` grant's assertion comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerAssertion {
    /// Signed for each request with `private_key_file` (the `assertion_*` keys say what it
    /// claims).
    Signed,
    /// `client_assertion_file`, as its issuer wrote it.
    File,
}

closed_set! {
    /// Which grant a provider uses, without its values: the `grant_type` as configured and as
    /// the `oauth2_token_grant_info` label shows it ([`GrantKind::wire`] is what is sent).
    GrantKind {
        ClientCredentials => "client_credentials",
        Password => "password",
        JwtBearer => "jwt_bearer",
    }
}

/// The `grant_type` RFC 7523 section 2.1 registers for the jwt-bearer grant.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

impl GrantKind {
    /// The `grant_type` as sent (and as metadata's `grant_types_supported` lists it).
    pub fn wire(self) -> &'static str {
        match self {
            GrantKind::JwtBearer => JWT_BEARER_GRANT,
            other => other.as_str(),
        }
    }
}

impl Grant {
    pub fn kind(&self) -> GrantKind {
        match self {
            Grant::ClientCredentials => GrantKind::ClientCredentials,
            Grant::Password(_) => GrantKind::Password,
            Grant::JwtBearer(_) => GrantKind::JwtBearer,
        }
    }

    /// The `grant_type` as sent.
    pub fn wire(&self) -> &'static str {
        self.kind().wire()
    }
}

closed_set! {
    /// `auth_method`: how the client proves itself at the token endpoint. Declared in the order
    /// messages list them in.
    AuthMethod {
        ClientSecretPost => "client_secret_post",
        ClientSecretBasic => "client_secret_basic",
        JsonBody => "json_body",
        /// RFC 7523 section 2.2: a JWT signed with `private_key_file`; no secret is sent.
        PrivateKeyJwt => "private_key_jwt",
        /// RFC 7523 section 2.2: a JWT signed HS256 with the client secret.
        ClientSecretJwt => "client_secret_jwt",
        /// RFC 8705 section 2.1: the `[tls]` client certificate; only `client_id` is sent.
        TlsClientAuth => "tls_client_auth",
        /// RFC 7521 section 4.2 with a JWT issued elsewhere (`client_assertion_file`): the wire
        /// format of `private_key_jwt`, the exporter signing nothing.
        ClientAssertion => "client_assertion",
        /// No client authentication (RFC 7591's `none`): only `client_id` is sent; the
        /// `jwt_bearer` grant's assertion proves who asks.
        Unauthenticated => "none",
    }
}

impl AuthMethod {
    /// Whether the method needs a client secret (sent, or signing the assertion).
    pub fn uses_secret(self) -> bool {
        !matches!(
            self,
            AuthMethod::PrivateKeyJwt
                | AuthMethod::TlsClientAuth
                | AuthMethod::ClientAssertion
                | AuthMethod::Unauthenticated
        )
    }

    /// The name a server's `token_endpoint_auth_methods_supported` lists it by, when there is
    /// one to check: `client_assertion` travels as `private_key_jwt` does, and a server lists it
    /// so; `json_body` is a dialect with no registered name; `none` authenticates no client, so
    /// what the token endpoint offers clients does not apply (Google lists only its secret
    /// methods, and takes the jwt-bearer grant without any).
    pub fn registered_name(self) -> Option<&'static str> {
        match self {
            AuthMethod::JsonBody | AuthMethod::Unauthenticated => None,
            AuthMethod::ClientAssertion => Some(AuthMethod::PrivateKeyJwt.as_str()),
            other => Some(other.as_str()),
        }
    }
}

/// `client_assertion_file` and the `client_assertion_type` it is sent as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionFile {
    pub path: PathBuf,
    /// `client_assertion_type` (auth_method `client_assertion` only; RFC 7523's jwt-bearer by
    /// default, or SPIFFE's jwt-spiffe).
    pub assertion_type: &'static str,
}

/// The `client_assertion_type` values accepted, the default first.
pub const CLIENT_ASSERTION_TYPES: [&str; 2] = [
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe",
];

/// How the exporter makes the assertions it signs (`private_key_jwt`, `client_secret_jwt`, the
/// `jwt_bearer` grant with `private_key_file`). The key and certificate files are only named here: the probe re-reads them on use (rotation without restart) and
/// validation has checked them once at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionConfig {
    /// `private_key_file` (`private_key_jwt`, and the `jwt_bearer` grant's own).
    pub private_key_file: Option<PathBuf>,
    /// `certificate_file`: adds its `x5t` and `x5t#S256` thumbprints to the header.
    pub certificate_file: Option<PathBuf>,
    /// `signing_algorithm`; `None`: by the key (RS256 for RSA, ES256 for EC; HS256 for secrets).
    pub algorithm: Option<crate::signing::Algorithm>,
    /// `key_id`: the `kid` header.
    pub key_id: Option<String>,
    /// `assertion_audience`; `None`: the token endpoint URL the request goes to.
    pub audience: Option<String>,
    /// `assertion_lifetime`: `exp - iat`.
    pub lifetime: Duration,
}

/// Default `assertion_lifetime`: long enough for any clock skew a server tolerates, short enough
/// that a captured assertion is soon worthless (Entra ID and oidc-provider accept it).
pub const DEFAULT_ASSERTION_LIFETIME: Duration = Duration::from_secs(300);

/// `basic_encoding`: how the client id and secret are written inside `Authorization: Basic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BasicEncoding {
    /// RFC 6749 section 2.3.1: each urlencoded (percent escapes only) before joining.
    Form,
    /// RFC 7617 as curl and browsers send it: as written, for servers that do not decode.
    Raw,
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
    /// What the call sends besides the token, and what its answer means. Most providers leave
    /// all of it at the defaults, and they share one copy (BENCHMARKS.md, round seven).
    pub call: Arc<CanaryCall>,
}

/// The headers of a canary call and the statuses that decide its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryCall {
    /// `None`: any 2xx passes.
    pub expected_status: Option<Vec<u16>>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `secret_headers`: values read from their source on every call (a rotated key takes
    /// effect without a restart) and never shown.
    pub secret_headers: Vec<(HeaderName, SecretSource)>,
    /// Statuses that mean "this token is dead" (default 401): the held token is marked rejected
    /// and replaced, as RFC 6750's `error="invalid_token"` does whatever the status.
    pub token_rejected_status: Vec<u16>,
}

impl CanaryCall {
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
    /// `client_cert_file`: watched for its notAfter (`tls_client_certificate` expiry) and,
    /// with `client_key_file`, for a renewed pair to present (issue 22).
    pub cert_file: PathBuf,
    /// `client_key_file`.
    pub key_file: PathBuf,
}

impl ClientIdentity {
    /// The pair as read from `cert_file` and `key_file`; `None` unless they hold a PEM
    /// certificate and a PEM private key (whether the two match is checked when the TLS client
    /// is built). Load and the prober's renewal check both make it here, so the joined text
    /// they compare is made one way.
    pub fn from_files(
        cert_file: PathBuf,
        key_file: PathBuf,
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> Option<ClientIdentity> {
        let pem = ClientIdentity::join(cert_pem, key_pem);
        // The parser's error could quote the key material: the caller says what is wrong.
        let identity = reqwest::Identity::from_pem(&pem).ok()?;
        Some(ClientIdentity {
            pem,
            identity,
            cert_file,
            key_file,
        })
    }

    /// The certificate file's text, then the key file's: what [`ClientIdentity::pem`] holds.
    pub fn join(cert_pem: &[u8], key_pem: &[u8]) -> Vec<u8> {
        let mut pem = Vec::with_capacity(cert_pem.len() + 1 + key_pem.len());
        pem.extend_from_slice(cert_pem);
        pem.push(b'\n');
        pem.extend_from_slice(key_pem);
        pem
    }

    /// The certificate chain and private key, PEM (for building the TLS client).
    pub fn pem(&self) -> &[u8] {
        &self.pem
    }
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
