//! When a provider's credentials and its endpoints' certificates stop working, and when a
//! credential's value last changed (issue 13): the closed `credential` and `phase` label sets,
//! the compact record a cycle reports ([`Expiries`]), certificate notAfter parsing, and the
//! prober's [`Watch`] that follows certificate files and credential values between cycles.
//!
//! A credential value is never kept: only a keyed hash of it (SipHash with this process's
//! random keys), compared to notice a change, and never exported or logged.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::closed_set::closed_set;
use crate::config::ProviderConfig;

closed_set! {
    /// The `credential` label set of the credential expiry and change gauges.
    Credential {
        ClientSecret => "client_secret",
        Password => "password",
        ClientCertificate => "client_certificate",
        TlsClientCertificate => "tls_client_certificate",
        /// `client_assertion_file`'s JWT: its own `exp` (issue 25).
        ClientAssertion => "client_assertion",
    }
}

closed_set! {
    /// The `phase` label set of the endpoint certificate expiry gauge: the phases that make
    /// requests (discovery: the issuer's metadata document).
    TlsPhase {
        Token => "token",
        Canary => "canary",
        Discovery => "discovery",
    }
}

/// A keyed hash of a credential value: equal values give equal fingerprints within this
/// process, and without the process's random keys a fingerprint says nothing about the value.
/// Never 0 (0 means "not seen" in [`Watch`]).
pub fn fingerprint(value: &[u8]) -> u64 {
    // std's RandomState draws its SipHash keys from the operating system's random source.
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    let mut hasher = KEYS.get_or_init(RandomState::new).build_hasher();
    hasher.write(value);
    hasher.finish().max(1)
}

/// Unix seconds, whole: the resolution of a certificate's notAfter and plenty for a date.
pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What one cycle knows of expiries and changes, as Unix seconds (0: unknown). Kept this
/// compact (104 bytes) because the metrics hold one per provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expiries {
    /// `oauth2_client_credential_expiry_timestamp_seconds`, by [`Credential`].
    pub credential: [u64; Credential::ALL.len()],
    /// `oauth2_client_credential_change_timestamp_seconds`, by [`Credential`].
    pub changed: [u64; Credential::ALL.len()],
    /// `oauth2_tls_certificate_expiry_timestamp_seconds`, by [`TlsPhase`].
    pub tls: [u64; TlsPhase::ALL.len()],
}

closed_set! {
    /// What an expiry belongs to, as `check`'s JSON names it (`kind`).
    ExpiryKind {
        /// A client credential: labelled by [`Credential`].
        Credential => "credential",
        /// An endpoint's certificate chain: labelled by [`TlsPhase`].
        Tls => "tls",
    }
}

impl ExpiryKind {
    /// The name of the label that tells expiries of this kind apart.
    pub fn label(self) -> &'static str {
        match self {
            ExpiryKind::Credential => "credential",
            ExpiryKind::Tls => "phase",
        }
    }
}

/// One expiry, named as the metrics name it: its kind and the label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    pub kind: ExpiryKind,
    /// The `credential` or `phase` label value.
    pub name: &'static str,
    pub at: u64,
}

impl Expiry {
    /// As people read it: `client_secret`, `tls_client_certificate`, `token endpoint certificate`.
    pub fn describe(&self) -> String {
        match self.kind {
            ExpiryKind::Tls => format!("{} endpoint certificate", self.name),
            ExpiryKind::Credential => self.name.to_string(),
        }
    }

    pub fn time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.at)
    }

    /// Whether its issuer renews it within the hour, not the operator: the JWT in
    /// `client_assertion_file`. Exported, but never "the nearest expiry" nor a `check
    /// --warn-within` warning, which would then always warn; a lapse fails the token request.
    pub fn renewed_by_its_issuer(&self) -> bool {
        self.kind == ExpiryKind::Credential && self.name == Credential::ClientAssertion.as_str()
    }
}

impl Expiries {
    /// Every known expiry: credentials first, then endpoint certificates.
    pub fn all(&self) -> impl Iterator<Item = Expiry> + '_ {
        let credentials = Credential::ALL
            .iter()
            .zip(self.credential)
            .map(|(c, at)| Expiry {
                kind: ExpiryKind::Credential,
                name: c.as_str(),
                at,
            });
        let tls = TlsPhase::ALL.iter().zip(self.tls).map(|(p, at)| Expiry {
            kind: ExpiryKind::Tls,
            name: p.as_str(),
            at,
        });
        credentials.chain(tls).filter(|e| e.at != 0)
    }

    /// The earliest of them that a person renews (the one to act on first).
    pub fn nearest(&self) -> Option<Expiry> {
        self.all()
            .filter(|e| !e.renewed_by_its_issuer())
            .min_by_key(|e| e.at)
    }
}

/// The earliest notAfter of the certificates in a PEM file (a chain's first link to lapse
/// ends it), or of one DER certificate. Keys and other PEM blocks in the file are skipped.
pub fn earliest_not_after(bytes: &[u8]) -> Result<u64, &'static str> {
    let mut earliest: Option<i64> = None;
    let mut found = false;
    for pem in x509_parser::pem::Pem::iter_from_buffer(bytes) {
        let Ok(pem) = pem else { break };
        if pem.label != "CERTIFICATE" {
            continue;
        }
        found = true;
        let cert = pem
            .parse_x509()
            .map_err(|_| "a CERTIFICATE block is not X.509")?;
        let at = cert.validity().not_after.timestamp();
        earliest = Some(earliest.map_or(at, |e| e.min(at)));
    }
    if !found {
        let (_, cert) = x509_parser::parse_x509_certificate(bytes)
            .map_err(|_| "holds no PEM or DER certificate")?;
        earliest = Some(cert.validity().not_after.timestamp());
    }
    // A notAfter before 1970 is long past: 1 keeps it "known, and expired".
    earliest
        .map(|at| u64::try_from(at).unwrap_or(0).max(1))
        .ok_or("holds no certificate")
}

/// The earliest notAfter of a presented chain (DER certificates), skipping any that do not
/// parse (the verifier already accepted the chain; a link we cannot read is not a reason to
/// show nothing).
pub fn chain_not_after<'a>(chain: impl IntoIterator<Item = &'a [u8]>) -> Option<u64> {
    chain
        .into_iter()
        .filter_map(|der| x509_parser::parse_x509_certificate(der).ok())
        .map(|(_, cert)| cert.validity().not_after.timestamp())
        .min()
        .map(|at| u64::try_from(at).unwrap_or(0).max(1))
}

/// A certificate file as the one reader that uses it read it this cycle (client authentication
/// for `certificate_file`, the TLS client for `client_cert_file`): its keyed hash and earliest
/// notAfter (`None`: it holds no certificate we can read). Handed to the [`Watch`], so each
/// file is read once a cycle (issue 22).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertificateSeen {
    pub fingerprint: u64,
    pub not_after: Option<u64>,
}

/// What a certificate file's reader remembers of it: its notAfter is parsed only when its
/// content changed.
#[derive(Debug, Clone, Default)]
pub struct CertificateFile {
    last: Option<CertificateSeen>,
}

impl CertificateFile {
    /// The file's contents as read now.
    pub fn saw(&mut self, bytes: &[u8]) -> CertificateSeen {
        let fingerprint = fingerprint(bytes);
        if let Some(last) = self.last
            && last.fingerprint == fingerprint
        {
            return last; // unchanged: no need to parse it again
        }
        let seen = CertificateSeen {
            fingerprint,
            not_after: earliest_not_after(bytes).ok(),
        };
        self.last = Some(seen);
        seen
    }
}

/// What a prober remembers between cycles: each credential's fingerprint, the expiries read
/// from certificate files, and the endpoint certificates last seen.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    /// Keyed hashes of the values last seen, by [`Credential`]; 0: not seen yet.
    fingerprints: [u64; Credential::ALL.len()],
    expiries: Expiries,
}

impl Watch {
    /// Notes a credential's value as seen at `now`: the change time moves only when the value
    /// differs from the one seen before (the first sighting counts as a change: "set at start").
    pub fn saw(&mut self, credential: Credential, fingerprint: u64, now: SystemTime) {
        let slot = credential as usize;
        if fingerprint != 0 && self.fingerprints[slot] != fingerprint {
            self.fingerprints[slot] = fingerprint;
            self.expiries.changed[slot] = unix_seconds(now).max(1);
        }
    }

    /// The fingerprints of the certificate files last read (client certificate, TLS client
    /// certificate; 0: none), part of what a token request sends.
    pub fn file_fingerprints(&self) -> [u64; 2] {
        [
            self.fingerprints[Credential::ClientCertificate as usize],
            self.fingerprints[Credential::TlsClientCertificate as usize],
        ]
    }

    /// Records the earliest notAfter of the chain an endpoint presented in `phase`.
    pub fn saw_endpoint(&mut self, phase: TlsPhase, not_after: Option<u64>) {
        if let Some(at) = not_after {
            self.expiries.tls[phase as usize] = at;
        }
    }

    /// Notes a certificate file as its reader saw it this cycle: when its content changed, its
    /// notAfter and change time. (`client_assertion_file` comes here too, its `exp` as the
    /// notAfter.) A file that cannot be read or parsed keeps what was read
    /// before: the credential itself fails its request with a reason of its own.
    pub fn saw_certificate(&mut self, credential: Credential, seen: Option<CertificateSeen>) {
        let Some(CertificateSeen {
            fingerprint,
            not_after: Some(not_after),
        }) = seen
        else {
            return;
        };
        if self.fingerprints[credential as usize] != fingerprint {
            self.expiries.credential[credential as usize] = not_after;
            self.saw(credential, fingerprint, SystemTime::now());
        }
    }

    /// This cycle's expiries: the configured dates, and what was read and seen.
    pub fn report(&self, config: &ProviderConfig) -> Expiries {
        let mut expiries = self.expiries;
        let configured = |date: Option<SystemTime>| date.map(|d| unix_seconds(d).max(1));
        if let Some(at) = configured(config.token.client_secret_expires) {
            expiries.credential[Credential::ClientSecret as usize] = at;
        }
        if let Some(at) = configured(config.token.password_expires) {
            expiries.credential[Credential::Password as usize] = at;
        }
        expiries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_within_the_process_and_differ_by_value() {
        assert_eq!(fingerprint(b"s3cret"), fingerprint(b"s3cret"));
        assert_ne!(fingerprint(b"s3cret"), fingerprint(b"s3cres"));
        assert_ne!(fingerprint(b""), 0);
    }

    #[test]
    fn a_value_seen_again_does_not_move_the_change_time() {
        let mut watch = Watch::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000);
        watch.saw(Credential::ClientSecret, fingerprint(b"a"), t0);
        watch.saw(
            Credential::ClientSecret,
            fingerprint(b"a"),
            t0 + Duration::from_secs(60),
        );
        assert_eq!(watch.expiries.changed[0], 1_000);
        watch.saw(
            Credential::ClientSecret,
            fingerprint(b"b"),
            t0 + Duration::from_secs(120),
        );
        assert_eq!(watch.expiries.changed[0], 1_120);
    }

    /// Issue 25: a client assertion file's `exp` (an hour away at most) is exported but is
    /// never the nearest expiry people are shown.
    #[test]
    fn the_nearest_expiry_is_never_a_client_assertion() {
        let mut expiries = Expiries::default();
        expiries.credential[Credential::ClientAssertion as usize] = 1_000;
        assert_eq!(expiries.all().count(), 1);
        assert_eq!(expiries.nearest(), None);
        expiries.credential[Credential::ClientSecret as usize] = 2_000;
        assert_eq!(expiries.nearest().map(|e| e.name), Some("client_secret"));
    }

    #[test]
    fn not_after_of_a_pem_chain_is_its_earliest() {
        let make = |day: u8| {
            let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
            params.not_after = rcgen::date_time_ymd(2030, 1, day);
            let key = rcgen::KeyPair::generate().unwrap();
            params.self_signed(&key).unwrap()
        };
        let late = make(31);
        let early = make(3);
        let pem = format!("{}{}", late.pem(), early.pem());
        let expected = humantime::parse_rfc3339("2030-01-03T00:00:00Z").unwrap();
        assert_eq!(
            earliest_not_after(pem.as_bytes()),
            Ok(unix_seconds(expected))
        );
        assert_eq!(
            earliest_not_after(early.der()),
            Ok(unix_seconds(expected)),
            "DER"
        );
        assert_eq!(
            chain_not_after([late.der().as_ref(), early.der().as_ref()]),
            Some(unix_seconds(expected))
        );
        assert!(
            earliest_not_after(b"-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n")
                .is_err()
        );
    }
}
