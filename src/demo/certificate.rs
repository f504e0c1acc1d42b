//! The demo's certificate credential (issue 12), checked the way Microsoft Entra ID checks a
//! client assertion (`private_key_jwt`): the certificate registered for the app, made at demo
//! start and written with its private key to a private directory for the built-in
//! configuration; and the check of each assertion: `client_assertion_type`, `iss` = `sub` =
//! `client_id`, the `x5t` / `x5t#S256` thumbprint of the registered certificate, an RS256 or
//! PS256 signature by its key, `aud` = this token URL, `nbf` and `exp` around now, and a `jti`
//! never seen before. Failures answer in Entra's form (`invalid_client`, `AADSTS700027` and
//! kin, `error_codes`, ids).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use aws_lc_rs::digest;
use aws_lc_rs::signature::{
    RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256, UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::unix_now;

/// The app registered at the OKQ8 demo tenant with a certificate credential instead of a secret.
pub(super) const OKQ8_CERTIFICATE_CLIENT: &str = "okq8-demo-certificate-client";

/// `client_assertion_type` of RFC 7523.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Assertions remembered for replay detection; each is forgotten once expired. A flood beyond
/// this is refused rather than let grow the map (the demo is loopback, but bounded anyway).
const MAX_SEEN: usize = 16_384;

/// Clock skew tolerated on `nbf` and `exp`, as Entra ID allows some.
const SKEW_SECONDS: u64 = 300;

/// Why an assertion was refused: the AADSTS number and Entra's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    pub(super) code: u32,
    pub(super) description: &'static str,
}

const fn refusal(code: u32, description: &'static str) -> Refusal {
    Refusal { code, description }
}

/// Where the credential's private key (PKCS#8 PEM) and certificate (PEM) are, for the
/// configuration.
#[derive(Debug, Clone)]
pub(super) struct CredentialFiles {
    pub(super) key_file: PathBuf,
    pub(super) certificate_file: PathBuf,
}

/// The registered certificate credential, its files, and the `jti`s seen.
pub(super) struct CertificateCredential {
    pub(super) files: CredentialFiles,
    /// The directory holding them, removed with the demo.
    dir: PathBuf,
    x5t: String,
    x5t_s256: String,
    /// `RSAPublicKey` DER, as the certificate holds it.
    public_key: Vec<u8>,
    /// `jti` -> its `exp`.
    seen: Mutex<HashMap<String, u64>>,
}

impl Drop for CertificateCredential {
    fn drop(&mut self) {
        // The private key must not outlive the demo in a shared temporary directory.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl CertificateCredential {
    /// Makes a 2048-bit RSA key and a self-signed certificate for it (Entra ID certificate
    /// credentials are RSA) and writes both, readable by this user only, to a new directory
    /// under `base` (the system's temporary directory in the demo).
    pub(super) fn create(base: &Path) -> std::io::Result<CertificateCredential> {
        let failed = |what: &str| std::io::Error::other(format!("cannot make the demo {what}"));
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
            .map_err(|_| failed("certificate credential key"))?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(|_| failed("certificate"))?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "oauth2-exporter demo OKQ8 credential",
        );
        // Valid for a year from today, like the certificates people upload to Entra ID (rcgen's
        // default runs to 4096, which the status page's "Expires" column would show as such).
        let today = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let year = today.get(0..4).and_then(|f| f.parse::<i32>().ok());
        let month = today.get(5..7).and_then(|f| f.parse::<u8>().ok());
        let day = today.get(8..10).and_then(|f| f.parse::<u8>().ok());
        if let (Some(year), Some(month), Some(day)) = (year, month, day) {
            // The 29th of February has no twin next year; the 28th is near enough.
            params.not_after = rcgen::date_time_ymd(year + 1, month, day.min(28));
        }
        let certificate = params
            .self_signed(&key)
            .map_err(|_| failed("certificate"))?;
        let der = certificate.der().to_vec();
        let (_, parsed) =
            x509_parser::parse_x509_certificate(&der).map_err(|_| failed("certificate"))?;
        let public_key = parsed.public_key().subject_public_key.data.to_vec();

        let dir = private_dir(base)?;
        let key_file = dir.join("okq8-demo.key");
        let certificate_file = dir.join("okq8-demo.crt");
        write_private(&key_file, key.serialize_pem().as_bytes())?;
        write_private(&certificate_file, certificate.pem().as_bytes())?;
        let thumbprint = |algorithm| URL_SAFE_NO_PAD.encode(digest::digest(algorithm, &der));
        Ok(CertificateCredential {
            files: CredentialFiles {
                key_file,
                certificate_file,
            },
            dir,
            x5t: thumbprint(&digest::SHA1_FOR_LEGACY_USE_ONLY),
            x5t_s256: thumbprint(&digest::SHA256),
            public_key,
            seen: Mutex::new(HashMap::new()),
        })
    }

    /// Checks the client assertion of a token request to `token_url` for `client_id`, as
    /// Entra ID does.
    pub(super) fn check(
        &self,
        assertion_type: Option<&str>,
        assertion: &str,
        client_id: Option<&str>,
        token_url: &str,
    ) -> Result<(), Refusal> {
        if assertion_type != Some(JWT_BEARER) {
            return Err(refusal(
                50_027,
                "AADSTS50027: Invalid client_assertion_type; expected \
                 urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
            ));
        }
        let malformed = refusal(50_027, "AADSTS50027: JWT token is invalid or malformed.");
        let parts: Vec<&str> = assertion.split('.').collect();
        let [header, claims, signature] = parts.as_slice() else {
            return Err(malformed);
        };
        let header = decode_object(header).ok_or_else(|| malformed.clone())?;
        let claims = decode_object(claims).ok_or_else(|| malformed.clone())?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| malformed.clone())?;

        let issuer = claims.get("iss").and_then(Value::as_str);
        let subject = claims.get("sub").and_then(Value::as_str);
        if issuer != Some(OKQ8_CERTIFICATE_CLIENT)
            || subject != Some(OKQ8_CERTIFICATE_CLIENT)
            || client_id.is_some_and(|id| id != OKQ8_CERTIFICATE_CLIENT)
        {
            return Err(refusal(
                700_021,
                "AADSTS700021: Client assertion application identifier doesn't match \
                 'client_id' parameter.",
            ));
        }

        // The certificate is found by its thumbprint; every one given must be the registered's.
        let x5t = header.get("x5t").and_then(Value::as_str);
        let x5t_s256 = header.get("x5t#S256").and_then(Value::as_str);
        let known = match (x5t, x5t_s256) {
            (None, None) => false,
            (x5t, x5t_s256) => {
                x5t.is_none_or(|t| t == self.x5t) && x5t_s256.is_none_or(|t| t == self.x5t_s256)
            }
        };
        if !known {
            return Err(refusal(
                700_027,
                "AADSTS700027: The certificate with identifier used to sign the client assertion \
                 is not registered on application.",
            ));
        }
        let algorithm: &'static dyn aws_lc_rs::signature::VerificationAlgorithm =
            match header.get("alg").and_then(Value::as_str) {
                Some("RS256") => &RSA_PKCS1_2048_8192_SHA256,
                Some("PS256") => &RSA_PSS_2048_8192_SHA256,
                _ => {
                    return Err(refusal(
                        700_027,
                        "AADSTS700027: Client assertion contains an invalid signature algorithm.",
                    ));
                }
            };
        let signed = &assertion[..assertion.rfind('.').unwrap_or(0)];
        if UnparsedPublicKey::new(algorithm, &self.public_key)
            .verify(signed.as_bytes(), &signature)
            .is_err()
        {
            return Err(refusal(
                700_027,
                "AADSTS700027: Client assertion failed signature validation.",
            ));
        }

        if claims.get("aud").and_then(Value::as_str) != Some(token_url) {
            return Err(refusal(
                700_027,
                "AADSTS700027: Client assertion contains an invalid audience; it must be the \
                 token endpoint URL.",
            ));
        }
        let now = unix_now().as_secs();
        let exp = claims.get("exp").and_then(Value::as_u64);
        let nbf = claims
            .get("nbf")
            .and_then(Value::as_u64)
            .unwrap_or_default();
        let Some(exp) = exp.filter(|exp| exp + SKEW_SECONDS > now && nbf <= now + SKEW_SECONDS)
        else {
            return Err(refusal(
                700_024,
                "AADSTS700024: Client assertion is not within its valid time range.",
            ));
        };
        let Some(jti) = claims.get("jti").and_then(Value::as_str) else {
            return Err(refusal(
                700_027,
                "AADSTS700027: Client assertion must contain a 'jti' claim.",
            ));
        };
        self.remember(jti, exp, now)
    }

    /// Records `jti` until its assertion expires; a `jti` seen before is a replay.
    fn remember(&self, jti: &str, exp: u64, now: u64) -> Result<(), Refusal> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.contains_key(jti) {
            return Err(refusal(
                700_027,
                "AADSTS700027: The client assertion was already used (its jti was seen before).",
            ));
        }
        if seen.len() >= MAX_SEEN {
            seen.retain(|_, until| *until + SKEW_SECONDS > now);
        }
        if seen.len() >= MAX_SEEN {
            return Err(refusal(
                700_027,
                "AADSTS700027: Too many client assertions in their valid time range; try later.",
            ));
        }
        seen.insert(jti.to_string(), exp);
        Ok(())
    }
}

fn decode_object(part: &str) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()? {
        Value::Object(object) => Some(object),
        _ => None,
    }
}

/// A new directory only this user may enter, named so that two demos never share one.
fn private_dir(base: &Path) -> std::io::Result<PathBuf> {
    let unique = std::collections::hash_map::RandomState::new();
    for attempt in 0..16u32 {
        let salt = std::hash::BuildHasher::hash_one(&unique, (std::process::id(), attempt));
        let dir = base.join(format!("oauth2-exporter-demo-{salt:016x}"));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            builder.mode(0o700);
        }
        match builder.create(&dir) {
            Ok(()) => return Ok(dir),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error),
        }
    }
    Err(std::io::Error::other(
        "cannot create a private directory for the demo credential",
    ))
}

/// Writes a new file readable by this user only.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents)
}
