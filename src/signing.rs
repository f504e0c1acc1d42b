//! Key material for client assertions (issue 12): private keys and certificates from PEM, whether
//! an algorithm fits a key, whether a certificate holds the key's public half, a certificate's
//! `x5t` / `x5t#S256` thumbprints, and the JWS signatures RS256, PS256, ES256 and HS256 (aws-lc-rs).
//! Configuration validation uses it to refuse bad material at start-up, the probe to sign; neither
//! error type nor `Debug` ever shows key material. [`jwk`]: DPoP keys, generated or read, as the
//! public JWK and thumbprint a proof names (issue 25).

use std::fmt;

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use aws_lc_rs::{digest, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::secrets::{PrivateKeyPem, Secret};

/// A JWS algorithm the exporter signs client assertions with (`signing_algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Rs256,
    Ps256,
    Es256,
    Hs256,
}

impl Algorithm {
    /// The asymmetric algorithms `private_key_jwt` allows, as the configuration spells them.
    pub const ASYMMETRIC: [Algorithm; 3] = [Algorithm::Rs256, Algorithm::Ps256, Algorithm::Es256];

    /// The `alg` header value, as the configuration spells it too.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Ps256 => "PS256",
            Algorithm::Es256 => "ES256",
            Algorithm::Hs256 => "HS256",
        }
    }

    pub fn parse(text: &str) -> Option<Algorithm> {
        [
            Algorithm::Rs256,
            Algorithm::Ps256,
            Algorithm::Es256,
            Algorithm::Hs256,
        ]
        .into_iter()
        .find(|algorithm| algorithm.as_str() == text)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is wrong with a private key or certificate. The texts name no key material; callers add
/// the file's path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "holds an encrypted private key, which the exporter cannot unlock (no passphrase); store it \
         unencrypted (e.g. `openssl pkey -in KEY -out KEY.plain`) in a file only the exporter may read"
    )]
    Encrypted,
    #[error(
        "holds no PEM private key; expected \"PRIVATE KEY\" (PKCS#8), \"RSA PRIVATE KEY\" (PKCS#1) \
         or \"EC PRIVATE KEY\" (SEC1)"
    )]
    NoKey,
    #[error("holds an unsupported private key; allowed: RSA (2048 to 8192 bits) or EC P-256")]
    Unsupported,
    #[error("holds no PEM certificate")]
    NoCertificate,
    #[error("is not a readable X.509 certificate")]
    BadCertificate,
    #[error("is not the certificate of the private key (its public key is another)")]
    CertificateMismatch,
    #[error("{algorithm} does not fit {kind} key; allowed with it: {allowed}")]
    AlgorithmMismatch {
        algorithm: Algorithm,
        kind: &'static str,
        allowed: &'static str,
    },
    #[error("signing failed")]
    SigningFailed,
}

/// A parsed private key. `Debug` shows only its kind.
pub enum SigningKey {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, [redacted])", self.kind())
    }
}

impl SigningKey {
    /// Parses the first private key of a PEM text: PKCS#8 (RSA or EC P-256), PKCS#1 RSA or SEC1
    /// EC P-256. Encrypted keys are refused for what they are.
    pub fn from_pem(pem: &PrivateKeyPem) -> Result<SigningKey, KeyError> {
        let text = pem.expose();
        if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
            || text.contains("Proc-Type: 4,ENCRYPTED")
        {
            return Err(KeyError::Encrypted);
        }
        let der = PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|_| KeyError::NoKey)?;
        let p256 = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        match &der {
            PrivateKeyDer::Pkcs1(key) => RsaKeyPair::from_der(key.secret_pkcs1_der())
                .map(SigningKey::Rsa)
                .map_err(|_| KeyError::Unsupported),
            PrivateKeyDer::Sec1(key) => {
                EcdsaKeyPair::from_private_key_der(p256, key.secret_sec1_der())
                    .map(SigningKey::Ec)
                    .map_err(|_| KeyError::Unsupported)
            }
            PrivateKeyDer::Pkcs8(key) => {
                let bytes = key.secret_pkcs8_der();
                RsaKeyPair::from_pkcs8(bytes)
                    .map(SigningKey::Rsa)
                    .or_else(|_| EcdsaKeyPair::from_pkcs8(p256, bytes).map(SigningKey::Ec))
                    .map_err(|_| KeyError::Unsupported)
            }
            _ => Err(KeyError::Unsupported),
        }
    }

    /// "an RSA" / "an EC P-256", for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            SigningKey::Rsa(_) => "an RSA",
            SigningKey::Ec(_) => "an EC P-256",
        }
    }

    /// RS256 for RSA keys, ES256 for EC keys.
    pub fn default_algorithm(&self) -> Algorithm {
        match self {
            SigningKey::Rsa(_) => Algorithm::Rs256,
            SigningKey::Ec(_) => Algorithm::Es256,
        }
    }

    /// `configured` if it fits this key, else why not; `None` chooses the key's default.
    pub fn algorithm(&self, configured: Option<Algorithm>) -> Result<Algorithm, KeyError> {
        let Some(algorithm) = configured else {
            return Ok(self.default_algorithm());
        };
        let (fits, allowed) = match self {
            SigningKey::Rsa(_) => (
                matches!(algorithm, Algorithm::Rs256 | Algorithm::Ps256),
                "RS256, PS256",
            ),
            SigningKey::Ec(_) => (algorithm == Algorithm::Es256, "ES256"),
        };
        if fits {
            Ok(algorithm)
        } else {
            Err(KeyError::AlgorithmMismatch {
                algorithm,
                kind: self.kind(),
                allowed,
            })
        }
    }

    /// The public half as a certificate's `subjectPublicKey` holds it (PKCS#1 `RSAPublicKey`, or
    /// the uncompressed EC point).
    fn public_key(&self) -> &[u8] {
        match self {
            SigningKey::Rsa(key) => key.public_key().as_ref(),
            SigningKey::Ec(key) => key.public_key().as_ref(),
        }
    }

    /// The JWS signature of `message` (ES256: the fixed 64-byte `r || s` form JWS wants).
    pub fn sign(&self, algorithm: Algorithm, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = SystemRandom::new();
        match (self, algorithm) {
            (SigningKey::Rsa(key), Algorithm::Rs256 | Algorithm::Ps256) => {
                let padding: &'static dyn signature::RsaEncoding = if algorithm == Algorithm::Rs256
                {
                    &signature::RSA_PKCS1_SHA256
                } else {
                    &signature::RSA_PSS_SHA256
                };
                let mut out = vec![0; key.public_modulus_len()];
                key.sign(padding, &rng, message, &mut out)
                    .map_err(|_| KeyError::SigningFailed)?;
                Ok(out)
            }
            (SigningKey::Ec(key), Algorithm::Es256) => key
                .sign(&rng, message)
                .map(|signature| signature.as_ref().to_vec())
                .map_err(|_| KeyError::SigningFailed),
            _ => Err(self
                .algorithm(Some(algorithm))
                .err()
                .unwrap_or(KeyError::SigningFailed)),
        }
    }
}

/// A JWS in compact serialization (RFC 7515 section 7.1): the header and claims as base64url
/// JSON, and `sign`'s signature over them. The one writer of the JWTs the exporter signs
/// (client assertions, the jwt-bearer grant's assertion, DPoP proofs).
pub fn compact_jws<E>(
    header: &serde_json::Map<String, serde_json::Value>,
    claims: &serde_json::Map<String, serde_json::Value>,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
) -> Result<String, E> {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::Value::Object(header.clone()).to_string()),
        URL_SAFE_NO_PAD.encode(serde_json::Value::Object(claims.clone()).to_string())
    );
    let signature = sign(signing_input.as_bytes())?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

/// HS256 of `message` with the client secret as the key (`client_secret_jwt`, RFC 7523 / OIDC
/// Core section 9: the secret's UTF-8 bytes are the HMAC key).
pub fn hs256(secret: &Secret, message: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes());
    hmac::sign(&key, message).as_ref().to_vec()
}

/// A certificate credential: what the JWT header names it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// `x5t`: base64url (no padding) SHA-1 of the certificate's DER (RFC 7515 section 4.1.7).
    pub x5t: String,
    /// `x5t#S256`: the same with SHA-256 (section 4.1.8).
    pub x5t_s256: String,
    subject_public_key: Vec<u8>,
}

impl Certificate {
    /// The first certificate of a PEM text.
    pub fn from_pem(pem: &[u8]) -> Result<Certificate, KeyError> {
        let der = CertificateDer::from_pem_slice(pem).map_err(|_| KeyError::NoCertificate)?;
        let (_, parsed) =
            x509_parser::parse_x509_certificate(&der).map_err(|_| KeyError::BadCertificate)?;
        let subject_public_key = parsed.public_key().subject_public_key.data.to_vec();
        let thumbprint = |algorithm| URL_SAFE_NO_PAD.encode(digest::digest(algorithm, &der));
        Ok(Certificate {
            x5t: thumbprint(&digest::SHA1_FOR_LEGACY_USE_ONLY),
            x5t_s256: thumbprint(&digest::SHA256),
            subject_public_key,
        })
    }

    /// Whether this certificate holds `key`'s public half: a server checks the signature with
    /// the certificate it has registered, so any other pairing fails every request.
    pub fn check_key(&self, key: &SigningKey) -> Result<(), KeyError> {
        if self.subject_public_key == key.public_key() {
            Ok(())
        } else {
            Err(KeyError::CertificateMismatch)
        }
    }
}

/// A key file's contents (as [`crate::files`] read them) as PEM text, or why they cannot be,
/// never showing the contents.
pub fn key_pem(
    path: &std::path::Path,
    read: Result<Vec<u8>, crate::files::ReadError>,
) -> Result<PrivateKeyPem, String> {
    let bytes = read.map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    String::from_utf8(bytes)
        .map(PrivateKeyPem::new)
        .map_err(|_| format!("{} is not PEM text (not valid UTF-8)", path.display()))
}

/// A fresh unique `jti`: 128 random bits, base64url.
pub fn random_id() -> Result<String, KeyError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KeyError::SigningFailed)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

pub mod jwk;

#[cfg(test)]
mod tests;
