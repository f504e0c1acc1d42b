//! `[providers.NAME.tls]`: the CA bundle to trust and the client certificate to present (mTLS),
//! read and checked at load so that a bad file stops start-up with its key named.

use std::path::Path;
use std::sync::{Arc, LazyLock};

use super::values::Problems;
use crate::config::raw::RawTls;
use crate::config::{ClientIdentity, TlsConfig};
use crate::files::{self, CONFIG_READ_TIMEOUT};
use crate::secrets::MAX_PEM_FILE_BYTES;

// An empty `[tls]` held once for every provider that has none, rather than one each.
static DEFAULT_TLS: LazyLock<Arc<TlsConfig>> = LazyLock::new(Arc::default);

/// The settings of a provider without a `[tls]` table.
pub(super) fn default() -> Arc<TlsConfig> {
    Arc::clone(&DEFAULT_TLS)
}

/// `[providers.NAME.tls]`: the CA bundle and the client certificate, read and checked now.
pub(super) fn tls(prefix: &str, raw: RawTls, problems: &mut Problems) -> TlsConfig {
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
