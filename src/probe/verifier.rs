//! The TLS settings of outgoing clients, built here rather than by reqwest so that the chain an
//! endpoint presents can be seen (issue 13: `oauth2_tls_certificate_expiry_timestamp_seconds`
//! is the earliest notAfter of that chain, and reqwest shows only the leaf).
//!
//! Verification is exactly what reqwest does itself: rustls-platform-verifier with the
//! system's roots (plus `ca_file`'s), or no verification at all with `insecure_skip_verify`;
//! the same crypto provider, ALPN and client certificate. [`Recording`] wraps that verifier,
//! delegates every decision to it, and after a chain passes notes its earliest notAfter under
//! the leaf's fingerprint. A response then names its leaf (reqwest's `TlsInfo`), which finds the
//! chain of the connection it came on, pooled or new.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::config::TlsConfig;
use crate::probe::expiry::{chain_not_after, fingerprint};

/// Chains remembered per client: one per distinct leaf seen. A client talks to a handful of
/// endpoints; past this many (certificates rotating for months) the record starts over.
const MAX_CHAINS: usize = 256;

/// The earliest notAfter of each chain a client's endpoints presented, by leaf fingerprint.
#[derive(Debug, Default)]
pub struct Chains {
    seen: Mutex<HashMap<u64, u64>>,
}

impl Chains {
    fn record(&self, end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) {
        let chain =
            std::iter::once(end_entity.as_ref()).chain(intermediates.iter().map(|c| c.as_ref()));
        let Some(not_after) = chain_not_after(chain) else {
            return;
        };
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= MAX_CHAINS {
            seen.clear();
        }
        seen.insert(fingerprint(end_entity.as_ref()), not_after);
    }

    /// The earliest notAfter of the chain whose leaf has this fingerprint (see
    /// [`crate::probe::transport::Seen`]); `None` once no longer remembered.
    pub fn earliest(&self, leaf: u64) -> Option<u64> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&leaf)
            .copied()
    }
}

/// Delegates every decision to the verifier reqwest would use, and records each chain it
/// accepts.
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn ServerCertVerifier>,
    chains: Arc<Chains>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        self.chains.record(end_entity, intermediates);
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// `insecure_skip_verify`: accepts any chain and signature, as reqwest's own
/// `danger_accept_invalid_certs` does (wrapped, so the chain's expiry is still shown).
#[derive(Debug)]
struct AcceptAnything {
    schemes: Vec<rustls::SignatureScheme>,
}

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.schemes.clone()
    }
}

/// The rustls configuration reqwest would build for these settings, with the recording
/// verifier in place. The error says what is wrong without quoting key material.
pub fn client_config(
    tls: &TlsConfig,
    chains: &Arc<Chains>,
) -> Result<rustls::ClientConfig, String> {
    // As reqwest: a process-wide default provider if one was installed, else aws-lc-rs.
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let inner: Arc<dyn ServerCertVerifier> = if tls.insecure_skip_verify {
        Arc::new(AcceptAnything {
            schemes: provider
                .signature_verification_algorithms
                .supported_schemes(),
        })
    } else if tls.ca_pem.is_empty() {
        Arc::new(
            rustls_platform_verifier::Verifier::new(Arc::clone(&provider))
                .map_err(|error| format!("cannot load the system's root certificates: {error}"))?,
        )
    } else {
        let roots = CertificateDer::pem_slice_iter(&tls.ca_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| "ca_file is not a PEM certificate bundle".to_string())?;
        Arc::new(
            rustls_platform_verifier::Verifier::new_with_extra_roots(roots, Arc::clone(&provider))
                .map_err(|error| format!("cannot use ca_file's certificates: {error}"))?,
        )
    };
    let verifier = Arc::new(Recording {
        inner,
        chains: Arc::clone(chains),
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(|error| format!("TLS versions: {error}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &tls.client_identity {
        None => builder.with_no_client_auth(),
        // Each message names the files: a renewed pair on disk is checked with them too
        // (issue 22), where the operator must know which files to fix.
        Some(identity) => {
            let (cert_file, key_file) = (identity.cert_file.display(), identity.key_file.display());
            let chain = CertificateDer::pem_slice_iter(identity.pem())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| {
                    format!("client_cert_file {cert_file} holds an unreadable certificate")
                })?;
            if chain.is_empty() {
                return Err(format!("client_cert_file {cert_file} holds no certificate"));
            }
            let key = PrivateKeyDer::from_pem_slice(identity.pem())
                .map_err(|_| format!("client_key_file {key_file} holds no readable private key"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|error| match error {
                    rustls::Error::InconsistentKeys(_) => format!(
                        "client_cert_file {cert_file} and client_key_file {key_file} do not match (the key is not the certificate's)"
                    ),
                    // rustls' texts name the key type, never its bytes.
                    other => format!(
                        "client_cert_file {cert_file} and client_key_file {key_file} cannot be used: {other}"
                    ),
                })?
        }
    };
    // reqwest's default: HTTP/2 when the server offers it, else HTTP/1.1.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
