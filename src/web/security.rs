//! `--web.config.file`: TLS (optionally requiring client certificates) and basic auth for the
//! exporter's own endpoints, in the Prometheus exporter-toolkit's YAML format, so a scrape
//! config written for any other exporter works here too.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use figment::Figment;
use figment::providers::Yaml;
use hyper::header::{AUTHORIZATION, HeaderValue};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use crate::config::{ConfigError, FileLayer};
use crate::files::{self, CONFIG_READ_TIMEOUT};
use crate::secrets::MAX_PEM_FILE_BYTES;

/// Largest web configuration file read (a few users and file names; a guard against naming a
/// device or a huge file).
const MAX_WEB_CONFIG_FILE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTlsServer>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTlsServer {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    min_version: Option<String>,
}

/// What protects the web endpoints. The default protects nothing (plain HTTP, no auth).
#[derive(Clone, Default)]
pub struct WebSecurity {
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub basic_auth: Option<Arc<BasicAuth>>,
}

/// Loads and checks a web configuration file; every problem names its key.
pub fn load(path: &Path) -> Result<WebSecurity, ConfigError> {
    let shown = path.display().to_string();
    if let Err(error) = std::fs::metadata(path) {
        return Err(ConfigError {
            problems: vec![format!(
                "web configuration file {shown}: cannot read it: {}",
                files::describe_io(error.kind())
            )],
        });
    }
    let layer = FileLayer::<Yaml>::read(path, MAX_WEB_CONFIG_FILE_BYTES).map_err(|problem| {
        ConfigError {
            problems: vec![format!(
                "web configuration file {shown}: cannot read it: {problem}"
            )],
        }
    })?;
    let raw: RawWebConfig = Figment::new()
        .merge(layer)
        .extract()
        .map_err(|error| ConfigError {
            problems: error
                .into_iter()
                .map(|e| crate::config::describe_error(&e))
                .collect(),
        })?;
    let mut problems = Vec::new();
    let tls = raw
        .tls_server_config
        .and_then(|tls| tls_acceptor(tls, &mut problems));
    let basic_auth = (!raw.basic_auth_users.is_empty())
        .then(|| BasicAuth::new(raw.basic_auth_users, &mut problems))
        .map(Arc::new);
    if problems.is_empty() {
        Ok(WebSecurity { tls, basic_auth })
    } else {
        Err(ConfigError {
            problems: problems
                .into_iter()
                .map(|problem| format!("{shown}: {problem}"))
                .collect(),
        })
    }
}

const CLIENT_AUTH_TYPES: &str = "NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert";

fn tls_acceptor(
    raw: RawTlsServer,
    problems: &mut Vec<String>,
) -> Option<tokio_rustls::TlsAcceptor> {
    let key = |field: &str| format!("key `tls_server_config.{field}`");
    let before = problems.len();
    let certs = match &raw.cert_file {
        None => {
            problems.push(format!(
                "{}: missing; the server certificate (PEM) is required",
                key("cert_file")
            ));
            None
        }
        Some(path) => match read_pem_certificates(path) {
            Ok(certs) if !certs.is_empty() => Some(certs),
            Ok(_) => {
                problems.push(format!(
                    "{}: {} holds no PEM certificate",
                    key("cert_file"),
                    path.display()
                ));
                None
            }
            Err(error) => {
                problems.push(format!(
                    "{}: cannot read certificates from {}: {error}",
                    key("cert_file"),
                    path.display()
                ));
                None
            }
        },
    };
    let private_key = match &raw.key_file {
        None => {
            problems.push(format!(
                "{}: missing; the server's private key (PEM) is required",
                key("key_file")
            ));
            None
        }
        Some(path) => match files::read(path, MAX_PEM_FILE_BYTES, CONFIG_READ_TIMEOUT)
            .map_err(|error| error.to_string())
            .and_then(|pem| PrivateKeyDer::from_pem_slice(&pem).map_err(|error| error.to_string()))
        {
            Ok(private_key) => Some(private_key),
            // The error names the file and the PEM problem, never key material.
            Err(error) => {
                problems.push(format!(
                    "{}: cannot read a private key from {}: {error}",
                    key("key_file"),
                    path.display()
                ));
                None
            }
        },
    };
    let versions: &[&'static rustls::SupportedProtocolVersion] = match raw.min_version.as_deref() {
        None | Some("TLS12") => &[&rustls::version::TLS13, &rustls::version::TLS12],
        Some("TLS13") => &[&rustls::version::TLS13],
        Some(other) => {
            problems.push(format!(
                "{}: unsupported value {other:?}; allowed: TLS12, TLS13",
                key("min_version")
            ));
            &[]
        }
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let client_roots = |problems: &mut Vec<String>| -> Option<rustls::RootCertStore> {
        let Some(path) = &raw.client_ca_file else {
            problems.push(format!(
                "{}: missing; required by client_auth_type {:?}",
                key("client_ca_file"),
                raw.client_auth_type.as_deref().unwrap_or_default()
            ));
            return None;
        };
        let certs = read_pem_certificates(path);
        let mut roots = rustls::RootCertStore::empty();
        match certs {
            Ok(certs) if !certs.is_empty() => {
                for cert in certs {
                    if let Err(error) = roots.add(cert) {
                        problems.push(format!(
                            "{}: bad CA certificate in {}: {error}",
                            key("client_ca_file"),
                            path.display()
                        ));
                    }
                }
                Some(roots)
            }
            Ok(_) => {
                problems.push(format!(
                    "{}: {} holds no PEM certificate",
                    key("client_ca_file"),
                    path.display()
                ));
                None
            }
            Err(error) => {
                problems.push(format!(
                    "{}: cannot read certificates from {}: {error}",
                    key("client_ca_file"),
                    path.display()
                ));
                None
            }
        }
    };
    let verifier = match raw.client_auth_type.as_deref() {
        None | Some("NoClientCert") => {
            if raw.client_ca_file.is_some() {
                problems.push(format!(
                    "{}: set, but client_auth_type does not verify client certificates; set client_auth_type to RequireAndVerifyClientCert or VerifyClientCertIfGiven",
                    key("client_ca_file")
                ));
            }
            Some(WebPkiClientVerifier::no_client_auth())
        }
        Some(kind @ ("VerifyClientCertIfGiven" | "RequireAndVerifyClientCert")) => {
            client_roots(problems).and_then(|roots| {
                let builder = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&provider),
                );
                let builder = if kind == "VerifyClientCertIfGiven" {
                    builder.allow_unauthenticated()
                } else {
                    builder
                };
                match builder.build() {
                    Ok(verifier) => Some(verifier),
                    Err(error) => {
                        problems.push(format!("{}: {error}", key("client_ca_file")));
                        None
                    }
                }
            })
        }
        Some(other) => {
            problems.push(format!(
                "{}: unsupported value {other:?}; allowed: {CLIENT_AUTH_TYPES}",
                key("client_auth_type")
            ));
            None
        }
    };
    if problems.len() != before {
        return None;
    }
    let (certs, private_key, verifier) = (certs?, private_key?, verifier?);
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|error| problems.push(format!("{}: {error}", key("min_version"))))
        .ok()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, private_key)
        .map_err(|error| {
            problems.push(format!(
                "{}: the certificate and key do not form a usable pair: {error}",
                key("key_file")
            ))
        })
        .ok()?;
    Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Every certificate in a PEM file of bounded size.
fn read_pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = files::read(path, MAX_PEM_FILE_BYTES, CONFIG_READ_TIMEOUT)
        .map_err(|error| error.to_string())?;
    CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| error.to_string())
}

/// HTTP basic auth against bcrypt hashes, as `basic_auth_users` in the exporter-toolkit.
pub struct BasicAuth {
    users: HashMap<String, String>,
    /// Checked for unknown users, at the cost of the configured hashes, so that the answer takes
    /// as long as for known ones (no user enumeration by timing).
    decoy_hash: String,
    /// Credentials already verified: bcrypt is deliberately slow, and Prometheus sends the same
    /// credentials on every scrape. Bounded; cleared when full.
    verified: Mutex<HashSet<(String, String)>>,
}

const VERIFIED_CACHE_LIMIT: usize = 256;

impl BasicAuth {
    fn new(users: BTreeMap<String, String>, problems: &mut Vec<String>) -> BasicAuth {
        for (user, hash) in &users {
            // Never print the hash: it is as sensitive as a password to offline cracking.
            if !hash.starts_with("$2") || bcrypt::verify("", hash).is_err() {
                problems.push(format!(
                    "key `basic_auth_users.{user}`: not a bcrypt hash (expected \"$2y$...\", e.g. from `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)"
                ));
            }
        }
        let cost = users
            .values()
            .filter_map(|hash| hash.get(4..6)?.parse::<u32>().ok())
            .next()
            .unwrap_or(bcrypt::DEFAULT_COST);
        let decoy_hash = bcrypt::hash("decoy: never a password", cost)
            .or_else(|_| bcrypt::hash("decoy: never a password", bcrypt::DEFAULT_COST))
            .unwrap_or_default();
        BasicAuth {
            users: users.into_iter().collect(),
            decoy_hash,
            verified: Mutex::new(HashSet::new()),
        }
    }

    /// Whether the request carries the credentials of a configured user.
    pub async fn allows(self: &Arc<Self>, authorization: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = authorization.and_then(decode_basic) else {
            return false;
        };
        let key = (user, password);
        if self
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&key)
        {
            return true;
        }
        let this = Arc::clone(self);
        let checked = tokio::task::spawn_blocking(move || {
            let (user, password) = &key;
            let (hash, known) = match this.users.get(user) {
                Some(hash) => (hash.as_str(), true),
                None => (this.decoy_hash.as_str(), false),
            };
            let ok = known && bcrypt::verify(password, hash).unwrap_or(false);
            if !known {
                let _ = bcrypt::verify(password, hash);
            }
            if ok {
                let mut verified = this.verified.lock().unwrap_or_else(PoisonError::into_inner);
                if verified.len() >= VERIFIED_CACHE_LIMIT {
                    verified.clear();
                }
                verified.insert(key);
            }
            ok
        })
        .await;
        checked.unwrap_or(false)
    }
}

/// `Basic base64(user:password)` into its parts.
fn decode_basic(value: &HeaderValue) -> Option<(String, String)> {
    let text = value.to_str().ok()?;
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The header a request's credentials are in.
pub fn authorization(request: &hyper::Request<hyper::body::Incoming>) -> Option<&HeaderValue> {
    request.headers().get(AUTHORIZATION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header_decoding() {
        let header =
            HeaderValue::from_str(&format!("Basic {}", STANDARD.encode("alice:pa:ss"))).unwrap();
        assert_eq!(
            decode_basic(&header),
            Some(("alice".into(), "pa:ss".into()))
        );
        assert_eq!(decode_basic(&HeaderValue::from_static("Bearer x")), None);
        assert_eq!(decode_basic(&HeaderValue::from_static("Basic !!!")), None);
    }

    #[tokio::test]
    async fn bcrypt_users_are_checked_and_cached() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let mut problems = Vec::new();
        let auth = Arc::new(BasicAuth::new(
            BTreeMap::from([("alice".to_string(), hash)]),
            &mut problems,
        ));
        assert!(problems.is_empty(), "{problems:?}");
        let header = |creds: &str| {
            HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(creds))).unwrap()
        };
        assert!(auth.allows(Some(&header("alice:s3cret"))).await);
        assert!(auth.allows(Some(&header("alice:s3cret"))).await, "cached");
        assert!(!auth.allows(Some(&header("alice:wrong"))).await);
        assert!(!auth.allows(Some(&header("bob:s3cret"))).await);
        assert!(!auth.allows(None).await);
    }

    #[test]
    fn bad_hashes_are_reported_without_printing_them() {
        let mut problems = Vec::new();
        BasicAuth::new(
            BTreeMap::from([("alice".to_string(), "plaintext-password".to_string())]),
            &mut problems,
        );
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("key `basic_auth_users.alice`: not a bcrypt hash"));
        assert!(!problems[0].contains("plaintext-password"));
    }
}
