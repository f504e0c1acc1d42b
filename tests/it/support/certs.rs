//! Test certificates made on the fly with rcgen: a certificate authority, server certificates for
//! `localhost`/`127.0.0.1`/`::1` signed by it, and client certificates (for mutual TLS), all as
//! PEM text, plus a helper to write them into a test's temporary directory.
//!
//! Use it as `support::certs` (after `use crate::support;`). Nothing here touches the network.
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
        let params = ca_params(common_name);
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

    /// [`Ca::server`] whose notAfter is the start (UTC) of `not_after`, a `YYYY-MM-DD` date
    /// (issue 13: certificate expiry).
    pub fn server_until(&self, not_after: &str) -> Leaf {
        self.leaf_with(
            "localhost",
            vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
            |params| set_not_after(params, not_after),
        )
    }

    /// [`Ca::client`] whose notAfter is the start (UTC) of `not_after` (`YYYY-MM-DD`).
    pub fn client_until(&self, common_name: &str, not_after: &str) -> Leaf {
        self.leaf_with(
            common_name,
            Vec::new(),
            ExtendedKeyUsagePurpose::ClientAuth,
            |params| set_not_after(params, not_after),
        )
    }

    /// An intermediate CA signed by this one, valid until the start of `not_after`
    /// (`YYYY-MM-DD`); its certificate PEM is what a server sends after its leaf.
    pub fn intermediate(&self, common_name: &str, not_after: &str) -> Ca {
        let mut params = ca_params(common_name);
        params.use_authority_key_identifier_extension = true;
        set_not_after(&mut params, not_after);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
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

/// The parameters of a certificate authority named `common_name`.
fn ca_params(common_name: &str) -> CertificateParams {
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
    params
}

/// Sets `params`' notAfter to the start (UTC) of `text`, a `YYYY-MM-DD` date.
fn set_not_after(params: &mut CertificateParams, text: &str) {
    let parts: Vec<&str> = text.split('-').collect();
    let [year, month, day] = parts[..] else {
        panic!("not YYYY-MM-DD: {text}")
    };
    params.not_after = rcgen::date_time_ymd(
        year.parse().unwrap(),
        month.parse().unwrap(),
        day.parse().unwrap(),
    );
}

/// The `YYYY-MM-DD` date `days` from now, and the Unix time of its start (a certificate made
/// with it as notAfter expires then).
pub fn days_from_now(days: u64) -> (String, u64) {
    let at = std::time::SystemTime::now() + std::time::Duration::from_secs(days * 86400);
    let day = humantime::format_rfc3339_seconds(at).to_string()[..10].to_string();
    let start = humantime::parse_rfc3339(&format!("{day}T00:00:00Z")).unwrap();
    let unix = start
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (day, unix)
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}
