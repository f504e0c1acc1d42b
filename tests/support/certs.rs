//! Test certificates made on the fly with rcgen: a certificate authority, server certificates for
//! `localhost`/`127.0.0.1`/`::1` signed by it, and client certificates (for mutual TLS), all as
//! PEM text, plus a helper to write them into a test's temporary directory.
//!
//! Use it as `support::certs` (after `mod support;`). Nothing here touches the network.
//! Keys are ECDSA P-256 (rcgen's default): fast to generate, accepted by rustls and reqwest.
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority that signs server and client certificates.
pub struct Ca {
    /// The CA certificate, PEM: what a `ca_file` / `client_ca_file` / `tls_certs_only` trusts.
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate signed by a [`Ca`], with its private key.
pub struct Leaf {
    pub cert_pem: String,
    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub key_pem: String,
}

impl Leaf {
    /// Certificate then key in one PEM text, as `reqwest::Identity::from_pem` wants it.
    pub fn identity_pem(&self) -> String {
        format!("{}\n{}", self.cert_pem, self.key_pem)
    }

    /// The certificate and key as a reqwest client identity (for mutual TLS).
    pub fn identity(&self) -> reqwest::Identity {
        reqwest::Identity::from_pem(self.identity_pem().as_bytes()).unwrap()
    }
}

impl Ca {
    /// A new self-signed CA whose subject is `common_name` (distinct names keep distinct CAs
    /// apart in error messages).
    pub fn new(common_name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate as something reqwest trusts.
    pub fn certificate(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(self.cert_pem.as_bytes()).unwrap()
    }

    /// A server certificate for `localhost`, `127.0.0.1` and `::1` (loopback only).
    pub fn server(&self) -> Leaf {
        self.leaf(
            "localhost",
            vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate with subject `common_name` (client certificates carry no names
    /// that a server checks; the chain to the client CA is what counts).
    pub fn client(&self, common_name: &str) -> Leaf {
        self.leaf(common_name, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// A client certificate whose validity ended in 2021 (issue 12: an expired credential).
    pub fn expired_client(&self, common_name: &str) -> Leaf {
        self.leaf_with(
            common_name,
            Vec::new(),
            ExtendedKeyUsagePurpose::ClientAuth,
            |params| {
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(2021, 1, 1);
            },
        )
    }

    fn leaf(&self, common_name: &str, names: Vec<String>, usage: ExtendedKeyUsagePurpose) -> Leaf {
        self.leaf_with(common_name, names, usage, |_| {})
    }

    fn leaf_with(
        &self,
        common_name: &str,
        names: Vec<String>,
        usage: ExtendedKeyUsagePurpose,
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Leaf {
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        adjust(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}
