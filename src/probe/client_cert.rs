//! The TLS client certificate (`[tls] client_cert_file` and `client_key_file`) followed on disk
//! (issue 22): a renewed pair is presented from the next cycle on, without a restart or reload.
//!
//! Each cycle reads both files once. When their contents differ from the pair the provider's
//! client presents and they hold a certificate with its own key, a new client presenting them
//! replaces the provider's (its own pool only: a provider with a client certificate never
//! shares the default client, so no other provider's connections are touched). When they do
//! not, the cycle's token phase fails (reason `tls` naming both files, or `secret_unavailable`
//! when one cannot be read) and the old client is kept, still presenting the previous
//! certificate, until a good pair is in place. The certificate's notAfter goes to the expiry
//! watch from the same read. Only keyed hashes of the files are kept between cycles.

use std::time::{Duration, Instant};

use crate::config::{ClientIdentity, ProviderConfig, TlsConfig};
use crate::files;
use crate::probe::expiry::{CertificateFile, CertificateSeen, fingerprint};
use crate::probe::token::TokenError;
use crate::probe::trace::Trace;
use crate::probe::transport::{self, Client, TransportError};
use crate::secrets::MAX_PEM_FILE_BYTES;
use crate::signing::Certificate;

/// What a prober remembers of its TLS client certificate files between cycles.
#[derive(Debug, Default)]
pub struct TlsIdentity {
    /// Keyed hash of the pair (certificate file, then key file) its client presents; 0: none.
    presented: u64,
    /// The pair last found unusable and why: not parsed again while the files stay so.
    rejected: Option<(u64, TokenError)>,
    /// `client_cert_file`'s notAfter, parsed when its contents change.
    certificate: CertificateFile,
    /// The SHA-256 thumbprint (base64url, RFC 8705 section 3.1) of the leaf certificate the
    /// client presents, for `[token.expect] certificate_bound` (boxed: every prober keeps one).
    thumbprint: Option<Box<str>>,
}

/// What one cycle's check found.
#[derive(Debug, Default)]
pub struct Checked {
    /// `client_cert_file` as read, for the expiry watch.
    pub seen: Option<CertificateSeen>,
    /// The files hold a new pair, and the client now presents it.
    pub renewed: bool,
    /// The files cannot be read, or do not hold a usable pair: the cycle's token phase fails
    /// with this (the previous client is kept).
    pub failure: Option<TokenError>,
}

impl TlsIdentity {
    /// For a client built from `config` (whose pair was read at load). A prober reset after a
    /// panic starts here again with the client it had: at worst that client is rebuilt once.
    pub fn new(config: &ProviderConfig) -> TlsIdentity {
        let identity = config.tls.client_identity.as_ref();
        TlsIdentity {
            presented: identity.map_or(0, |identity| fingerprint(identity.pem())),
            // The certificate file's text comes first in the joined pair.
            thumbprint: identity.and_then(|identity| thumbprint(identity.pem())),
            ..TlsIdentity::default()
        }
    }

    /// The `x5t#S256` of the client certificate presented now (`None`: none presented).
    pub fn thumbprint(&self) -> Option<&str> {
        self.thumbprint.as_deref()
    }

    /// Reads the provider's client certificate and key (within `deadline` in all) and, when
    /// they changed and fit together, swaps `client` for one presenting them.
    pub async fn check(
        &mut self,
        config: &ProviderConfig,
        client: &mut Client,
        deadline: Duration,
    ) -> Checked {
        let Some(identity) = &config.tls.client_identity else {
            return Checked::default();
        };
        let started = Instant::now();
        let cert = files::read_async(&identity.cert_file, MAX_PEM_FILE_BYTES, deadline).await;
        let seen = cert.as_ref().ok().map(|bytes| self.certificate.saw(bytes));
        let key = files::read_async(
            &identity.key_file,
            MAX_PEM_FILE_BYTES,
            deadline.saturating_sub(started.elapsed()),
        )
        .await;
        let unreadable = |key: &str, path: &std::path::Path, error: files::ReadError| Checked {
            seen,
            renewed: false,
            failure: Some(TokenError::KeyUnavailable(format!(
                "cannot read {key} {}: {error}; still presenting the previous client certificate",
                path.display()
            ))),
        };
        let (cert, key) = match (cert, key) {
            (Ok(cert), Ok(key)) => (cert, key),
            (Err(error), _) => return unreadable("client_cert_file", &identity.cert_file, error),
            (_, Err(error)) => return unreadable("client_key_file", &identity.key_file, error),
        };
        let on_disk = fingerprint(&ClientIdentity::join(&cert, &key));
        let mut checked = Checked {
            seen,
            ..Checked::default()
        };
        if on_disk == self.presented {
            return checked;
        }
        if let Some((rejected, error)) = &self.rejected
            && *rejected == on_disk
        {
            checked.failure = Some(error.clone());
            return checked;
        }
        match renewed_client(config, identity, client, &cert, &key) {
            Ok(renewed) => {
                *client = renewed;
                self.presented = on_disk;
                self.thumbprint = thumbprint(&cert);
                self.rejected = None;
                checked.renewed = true;
                tracing::info!(
                    provider = %config.name,
                    client_cert_file = %identity.cert_file.display(),
                    "client certificate renewed on disk; presenting it from now on"
                );
            }
            Err(message) => {
                let error = TokenError::Transport(TransportError::Tls(format!(
                    "{message}; still presenting the previous client certificate until a matching pair is in place"
                )));
                self.rejected = Some((on_disk, error.clone()));
                checked.failure = Some(error);
            }
        }
        checked
    }
}

impl Checked {
    /// The debug trace's account of a renewal or of a pair that cannot be used.
    pub fn trace(&self, trace: Option<&mut Trace>) {
        let Some(trace) = trace else { return };
        if self.renewed {
            trace.section("client certificate");
            trace.line("client_cert_file and client_key_file changed on disk: a new client presents them from this cycle on");
        } else if let Some(error) = &self.failure {
            trace.section("client certificate");
            trace.line(format!(
                "token request not sent: {error} (reason {})",
                error.reason()
            ));
        }
    }
}

/// The `x5t#S256` thumbprint of the first certificate of a PEM text (the leaf of a chain).
fn thumbprint(pem: &[u8]) -> Option<Box<str>> {
    Certificate::from_pem(pem)
        .ok()
        .map(|certificate| certificate.x5t_s256.into_boxed_str())
}

/// A client like `client` (the provider's TLS and proxy settings, the process's request slots)
/// presenting the pair read from the files. The error names both files, never their contents.
fn renewed_client(
    config: &ProviderConfig,
    identity: &ClientIdentity,
    client: &Client,
    cert: &[u8],
    key: &[u8],
) -> Result<Client, String> {
    let renewed =
        ClientIdentity::from_files(identity.cert_file.clone(), identity.key_file.clone(), cert, key)
            .ok_or_else(|| {
                format!(
                    "client_cert_file {} and client_key_file {} do not hold a PEM certificate and its PEM private key",
                    identity.cert_file.display(),
                    identity.key_file.display()
                )
            })?;
    let tls = TlsConfig {
        client_identity: Some(renewed),
        ..TlsConfig::clone(&config.tls)
    };
    transport::build_client(&tls, &config.proxy, &client.slots).map_err(|error| match error {
        transport::ClientError::Tls(message) => message,
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests;
