//! `--web.config.file`: TLS (optionally requiring client certificates) and basic auth for the
//! exporter's own endpoints, in the Prometheus exporter-toolkit's YAML format, so a scrape
//! config written for any other exporter works here too.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use figment::Figment;
use figment::providers::Yaml;
use hyper::header::{AUTHORIZATION, HeaderValue};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio::sync::Semaphore;

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
///
/// bcrypt is deliberately slow (tens of milliseconds of CPU at cost 10), so an unbounded
/// stream of wrong passwords would take the exporter's CPU from the probes. Hence:
/// - the outcome of every check, success or failure, is remembered under a keyed hash of user
///   and password (HMAC-SHA-256 with a key drawn at start, never the plaintext), in two bounded
///   sets evicted oldest first, so Prometheus's credentials and a repeated wrong guess cost one
///   bcrypt run each, and a flood of distinct guesses cannot push out the good ones;
/// - at most [`BasicAuth::concurrent_checks`] bcrypt runs go at once; a request waits its turn
///   at most [`CHECK_WAIT`] and is then answered 503 with `Retry-After` (the server is busy:
///   not a wrong password);
/// - an unknown user is checked against a decoy hash of the highest configured cost, so no
///   user, whatever its cost, can be told from an unknown one by timing.
pub struct BasicAuth {
    users: HashMap<String, String>,
    /// Checked for unknown users, at the cost of the most expensive configured hash.
    decoy_hash: String,
    /// Keys the hashes the outcomes are remembered under; per process, never stored.
    cache_key: hmac::Key,
    outcomes: Mutex<Outcomes>,
    checks: Arc<Semaphore>,
    check_wait: Duration,
    /// bcrypt runs so far, and the most that ran at once (what the bounds above are about).
    runs: AtomicUsize,
    running: AtomicUsize,
    most_running: AtomicUsize,
}

/// Credentials verified, remembered: a handful of scrapers' users in practice.
const ALLOWED_CACHE_LIMIT: usize = 256;

/// Wrong credentials remembered (32 bytes each plus bookkeeping: about half a MiB at most).
const REFUSED_CACHE_LIMIT: usize = 8192;

/// How long a request waits for its turn at bcrypt before it is answered 503.
pub const CHECK_WAIT: Duration = Duration::from_secs(5);

/// What the basic-auth gate says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// No, wrong or unknown credentials: 401.
    Refused,
    /// Too many password checks waiting: 503, try again.
    Busy,
}

type Digest = [u8; 32];

/// The remembered outcomes, each set bounded and evicted oldest first.
#[derive(Default)]
struct Outcomes {
    allowed: Bounded,
    refused: Bounded,
}

#[derive(Default)]
struct Bounded {
    members: HashSet<Digest>,
    order: VecDeque<Digest>,
}

impl Bounded {
    fn insert(&mut self, digest: Digest, limit: usize) {
        if self.members.insert(digest) {
            self.order.push_back(digest);
            while self.order.len() > limit {
                if let Some(oldest) = self.order.pop_front() {
                    self.members.remove(&oldest);
                }
            }
        }
    }
}

/// The bcrypt cost of a hash (`$2b$10$...`).
fn bcrypt_cost(hash: &str) -> Option<u32> {
    hash.split('$').nth(2)?.parse().ok()
}

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
            .filter_map(|hash| bcrypt_cost(hash))
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST);
        let decoy_hash = bcrypt::hash("decoy: never a password", cost)
            .or_else(|_| bcrypt::hash("decoy: never a password", bcrypt::DEFAULT_COST))
            .unwrap_or_default();
        let cache_key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
            .unwrap_or_else(|_| {
                problems.push("basic_auth_users: cannot draw a random key".to_string());
                hmac::Key::new(hmac::HMAC_SHA256, &[])
            });
        BasicAuth {
            users: users.into_iter().collect(),
            decoy_hash,
            cache_key,
            outcomes: Mutex::default(),
            checks: Arc::new(Semaphore::new(Self::concurrent_checks())),
            check_wait: CHECK_WAIT,
            runs: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            most_running: AtomicUsize::new(0),
        }
    }

    /// bcrypt runs at once: half the CPUs (at least one), so password checks, however many
    /// arrive, leave the rest to the probes and the other endpoints.
    pub fn concurrent_checks() -> usize {
        std::thread::available_parallelism()
            .map(|cpus| cpus.get() / 2)
            .unwrap_or(1)
            .max(1)
    }

    /// Whether the request carries the credentials of a configured user.
    pub async fn check(self: &Arc<Self>, authorization: Option<&HeaderValue>) -> Verdict {
        let Some((user, password)) = authorization.and_then(decode_basic) else {
            return Verdict::Refused;
        };
        let digest = self.digest(&user, &password);
        if let Some(verdict) = self.remembered(&digest) {
            return verdict;
        }
        let permit =
            match tokio::time::timeout(self.check_wait, Arc::clone(&self.checks).acquire_owned())
                .await
            {
                Ok(Ok(permit)) => permit,
                _ => return Verdict::Busy,
            };
        // The same credentials may have been checked while this request waited its turn.
        if let Some(verdict) = self.remembered(&digest) {
            return verdict;
        }
        let this = Arc::clone(self);
        // The permit goes with the bcrypt run: a client that hangs up does not free it early.
        let allowed = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            this.verify(&user, &password)
        })
        .await
        .unwrap_or(false);
        let mut outcomes = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
        if allowed {
            outcomes.allowed.insert(digest, ALLOWED_CACHE_LIMIT);
            Verdict::Allowed
        } else {
            outcomes.refused.insert(digest, REFUSED_CACHE_LIMIT);
            Verdict::Refused
        }
    }

    /// One bcrypt run, against the user's hash or, for an unknown user, the decoy.
    fn verify(&self, user: &str, password: &str) -> bool {
        let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_running.fetch_max(running, Ordering::SeqCst);
        self.runs.fetch_add(1, Ordering::SeqCst);
        let (hash, known) = match self.users.get(user) {
            Some(hash) => (hash.as_str(), true),
            None => (self.decoy_hash.as_str(), false),
        };
        let matches = bcrypt::verify(password, hash).unwrap_or(false);
        self.running.fetch_sub(1, Ordering::SeqCst);
        known && matches
    }

    /// The key the outcome for these credentials is remembered under. The user's length goes
    /// first, so `a` + `b:c` and `a:b` + `c` differ.
    fn digest(&self, user: &str, password: &str) -> Digest {
        let mut context = hmac::Context::with_key(&self.cache_key);
        context.update(&(user.len() as u64).to_be_bytes());
        context.update(user.as_bytes());
        context.update(password.as_bytes());
        let mut digest = [0; 32];
        digest.copy_from_slice(context.sign().as_ref());
        digest
    }

    fn remembered(&self, digest: &Digest) -> Option<Verdict> {
        let outcomes = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
        if outcomes.allowed.members.contains(digest) {
            Some(Verdict::Allowed)
        } else if outcomes.refused.members.contains(digest) {
            Some(Verdict::Refused)
        } else {
            None
        }
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

    fn header(credentials: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(credentials))).unwrap()
    }

    fn auth(users: &[(&str, &str, u32)]) -> Arc<BasicAuth> {
        let users = users
            .iter()
            .map(|(user, password, cost)| {
                (user.to_string(), bcrypt::hash(password, *cost).unwrap())
            })
            .collect();
        let mut problems = Vec::new();
        let auth = BasicAuth::new(users, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        Arc::new(auth)
    }

    #[tokio::test]
    async fn bcrypt_users_are_checked_and_cached() {
        let auth = auth(&[("alice", "s3cret", 4)]);
        assert_eq!(
            auth.check(Some(&header("alice:s3cret"))).await,
            Verdict::Allowed
        );
        assert_eq!(
            auth.check(Some(&header("alice:s3cret"))).await,
            Verdict::Allowed
        );
        assert_eq!(
            auth.runs.load(Ordering::SeqCst),
            1,
            "the second check was cached"
        );
        assert_eq!(
            auth.check(Some(&header("alice:wrong"))).await,
            Verdict::Refused
        );
        assert_eq!(
            auth.check(Some(&header("bob:s3cret"))).await,
            Verdict::Refused
        );
        assert_eq!(auth.check(None).await, Verdict::Refused);
    }

    /// A wrong password sent again and again costs one bcrypt run, not one per request (issue
    /// 22: 100 wrong requests used 5.8 s of CPU).
    #[tokio::test]
    async fn failed_attempts_are_remembered() {
        let auth = auth(&[("alice", "s3cret", 4)]);
        for _ in 0..20 {
            assert_eq!(
                auth.check(Some(&header("alice:wrong"))).await,
                Verdict::Refused
            );
            assert_eq!(
                auth.check(Some(&header("mallory:x"))).await,
                Verdict::Refused
            );
        }
        assert_eq!(auth.runs.load(Ordering::SeqCst), 2);
        // The right password is still checked, not mistaken for a remembered failure.
        assert_eq!(
            auth.check(Some(&header("alice:s3cret"))).await,
            Verdict::Allowed
        );
    }

    /// The remembered outcomes stay bounded however many distinct guesses arrive, dropping the
    /// oldest first.
    #[test]
    fn remembered_outcomes_are_bounded() {
        let mut set = Bounded::default();
        for n in 0..100u8 {
            set.insert([n; 32], 10);
        }
        assert_eq!(set.members.len(), 10);
        assert_eq!(set.order.len(), 10);
        assert!(set.members.contains(&[99; 32]) && !set.members.contains(&[89; 32]));
    }

    /// Many concurrent wrong passwords run at most `concurrent_checks` bcrypts at once (issue
    /// 22: 400 concurrent ones kept both cores busy for 13.5 s).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_bcrypt_runs_are_bounded() {
        let auth = auth(&[("alice", "s3cret", 8)]);
        let checks: Vec<_> = (0..16)
            .map(|n| {
                let auth = Arc::clone(&auth);
                tokio::spawn(async move { auth.check(Some(&header(&format!("alice:{n}")))).await })
            })
            .collect();
        for check in checks {
            assert_eq!(check.await.unwrap(), Verdict::Refused);
        }
        assert_eq!(auth.runs.load(Ordering::SeqCst), 16);
        let most = auth.most_running.load(Ordering::SeqCst);
        assert!(
            most <= BasicAuth::concurrent_checks(),
            "{most} bcrypt runs at once, more than {}",
            BasicAuth::concurrent_checks()
        );
    }

    /// A request that cannot get its turn within the wait is answered busy, not refused.
    #[tokio::test]
    async fn checks_beyond_the_wait_are_busy() {
        let mut users = BTreeMap::new();
        users.insert("alice".to_string(), bcrypt::hash("s3cret", 4).unwrap());
        let mut problems = Vec::new();
        let mut auth = BasicAuth::new(users, &mut problems);
        auth.checks = Arc::new(Semaphore::new(1));
        auth.check_wait = Duration::from_millis(50);
        let auth = Arc::new(auth);
        let held = Arc::clone(&auth.checks).acquire_owned().await.unwrap();
        assert_eq!(
            auth.check(Some(&header("alice:s3cret"))).await,
            Verdict::Busy
        );
        drop(held);
        assert_eq!(
            auth.check(Some(&header("alice:s3cret"))).await,
            Verdict::Allowed
        );
    }

    /// An unknown user is checked against a hash as costly as the most expensive user's, so
    /// it cannot be told from that user by timing.
    #[test]
    fn unknown_users_cost_the_most_expensive_configured_hash() {
        let auth = auth(&[("alice", "a", 4), ("bob", "b", 6), ("carol", "c", 5)]);
        assert_eq!(bcrypt_cost(&auth.decoy_hash), Some(6));
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
