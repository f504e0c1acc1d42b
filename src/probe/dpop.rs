//! DPoP (RFC 9449, issue 25) for one provider: its key (generated at its first cycle, or
//! `dpop_key_file` read every cycle through `files` and parsed again only when it changes), the
//! proofs of its token requests and canary calls, and the nonces servers gave it, per origin.
//! Only providers with `dpop = true` have one (the prober holds it boxed), and it stays small:
//! a key, and at most [`MAX_ORIGINS`] nonces of at most [`MAX_NONCE_CHARS`] characters.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Map, Value};
use url::Url;

use crate::config::DpopConfig;
use crate::files;
use crate::secrets::{AccessToken, DpopProof, MAX_SECRET_FILE_BYTES, PrivateKeyPem};
use crate::signing::jwk::thumbprint;
use crate::signing::{Algorithm, SigningKey, compact_jws, key_pem, random_id};

/// The request header a proof travels in.
pub const HEADER: &str = "DPoP";

/// The response header a server's nonce comes in (RFC 9449 section 8).
const NONCE_HEADER: &str = "DPoP-Nonce";

/// Servers whose nonces are remembered: a token endpoint and a canary API, with room for a
/// discovered endpoint that moved. The oldest is forgotten first.
const MAX_ORIGINS: usize = 4;

/// Longest nonce kept: real ones are tens of characters; a longer one is not believed.
const MAX_NONCE_CHARS: usize = 512;

/// Why proofs cannot be made. Never shows key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    /// `dpop_key_file` could not be read: a secret mount's trouble, like `private_key_file`.
    #[error("the DPoP key could not be read: {0}")]
    Unreadable(String),
    /// The key read does not parse, does not fit `dpop_signing_algorithm`, or could not be
    /// generated, or signing failed.
    #[error("{0}")]
    Unusable(String),
}

/// A provider's DPoP state, kept across cycles by its prober.
#[derive(Default)]
pub struct Dpop {
    key: Option<Arc<DpopKey>>,
    /// The key file's contents `key` was parsed from (`None` for a generated key).
    pem: Option<PrivateKeyPem>,
    /// `(origin, nonce)`, the newest last.
    nonces: Vec<(String, String)>,
}

/// A key with what proofs name it by.
struct DpopKey {
    key: SigningKey,
    algorithm: Algorithm,
    /// The public half (RFC 9449 section 4.2: the `jwk` header).
    jwk: Map<String, Value>,
    /// Its RFC 7638 thumbprint: what a DPoP-bound token's `cnf.jkt` names.
    thumbprint: String,
}

impl fmt::Debug for Dpop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Dpop(key {}, {} nonces)",
            self.key
                .as_ref()
                .map_or("none", |key| key.algorithm.as_str()),
            self.nonces.len()
        )
    }
}

/// One proof: the header value, and what a person may see of it (never the signature).
pub struct Proof {
    pub value: HeaderValue,
    pub proof: DpopProof,
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
}

impl Dpop {
    /// The key for this cycle: generated the first time, or `dpop_key_file` read within
    /// `deadline` and parsed again when its contents changed. Whether the key changed (a token
    /// bound to the previous one must be replaced). On failure no key is held: what is on disk
    /// is what must work, as for `private_key_file`.
    pub async fn load(
        &mut self,
        config: &DpopConfig,
        deadline: Duration,
    ) -> Result<bool, DpopError> {
        let result = self.load_inner(config, deadline).await;
        if result.is_err() {
            self.key = None;
            self.pem = None;
        }
        result
    }

    async fn load_inner(
        &mut self,
        config: &DpopConfig,
        deadline: Duration,
    ) -> Result<bool, DpopError> {
        let Some(path) = &config.key_file else {
            if self.key.is_some() {
                return Ok(false);
            }
            let algorithm = config.algorithm.unwrap_or(Algorithm::Es256);
            // RSA generation takes a moment of CPU: off the async workers.
            let key = tokio::task::spawn_blocking(move || SigningKey::generate(algorithm))
                .await
                .map_err(|_| DpopError::Unusable("key generation did not finish".into()))?
                .map_err(|error| {
                    DpopError::Unusable(format!("cannot generate a {algorithm} key: {error}"))
                })?;
            self.key = Some(Arc::new(DpopKey::new(key, algorithm)));
            return Ok(true);
        };
        let read = files::read_async(path, MAX_SECRET_FILE_BYTES, deadline).await;
        let pem = key_pem(path, read).map_err(DpopError::Unreadable)?;
        let fits = |key: &Arc<DpopKey>| config.algorithm.is_none_or(|a| a == key.algorithm);
        if self.key.as_ref().is_some_and(fits) && self.pem.as_ref() == Some(&pem) {
            return Ok(false);
        }
        let key = SigningKey::from_pem(&pem).map_err(|error| {
            DpopError::Unusable(format!("dpop_key_file {} {error}", path.display()))
        })?;
        let algorithm = key
            .algorithm(config.algorithm)
            .map_err(|error| DpopError::Unusable(format!("dpop_signing_algorithm: {error}")))?;
        let changed = self
            .key
            .as_ref()
            .is_none_or(|old| old.thumbprint != thumbprint(&key.public_jwk()));
        self.key = Some(Arc::new(DpopKey::new(key, algorithm)));
        self.pem = Some(pem);
        Ok(changed)
    }

    /// The RFC 7638 thumbprint of the key (`None` before the first load).
    pub fn thumbprint(&self) -> Option<&str> {
        self.key.as_ref().map(|key| key.thumbprint.as_str())
    }

    /// A fresh proof for `method` on `url` (RFC 9449 section 4.2): `jti`, `htm`, `htu` (the URL
    /// without query and fragment), `iat`, the server's nonce if it gave one, and with a token
    /// `ath` (base64url SHA-256 of it).
    pub fn proof(
        &self,
        method: &reqwest::Method,
        url: &Url,
        token: Option<&AccessToken>,
    ) -> Result<Proof, DpopError> {
        let Some(key) = &self.key else {
            return Err(DpopError::Unusable("no DPoP key is loaded".into()));
        };
        let failed = |error: crate::signing::KeyError| DpopError::Unusable(error.to_string());
        let mut header = Map::new();
        header.insert("typ".into(), "dpop+jwt".into());
        header.insert("alg".into(), key.algorithm.as_str().into());
        header.insert("jwk".into(), Value::Object(key.jwk.clone()));
        let mut htu = url.clone();
        htu.set_query(None);
        htu.set_fragment(None);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut claims = Map::new();
        claims.insert("jti".into(), random_id().map_err(failed)?.into());
        claims.insert("htm".into(), method.as_str().into());
        claims.insert("htu".into(), htu.as_str().into());
        claims.insert("iat".into(), now.into());
        if let Some(nonce) = self.nonce(url) {
            claims.insert("nonce".into(), nonce.into());
        }
        if let Some(token) = token {
            claims.insert("ath".into(), ath(token).into());
        }
        let proof = DpopProof::new(compact_jws(&header, &claims, |input| {
            key.key.sign(key.algorithm, input).map_err(failed)
        })?);
        let mut value = HeaderValue::from_str(proof.expose())
            .map_err(|_| DpopError::Unusable("the proof is not a header value".into()))?;
        value.set_sensitive(true);
        Ok(Proof {
            value,
            proof,
            header,
            claims,
        })
    }

    /// Keeps the `DPoP-Nonce` a response from `url`'s server carries, if it is a valid nonce
    /// (RFC 9449 section 8: visible ASCII without `"` and `\`). Whether it gave one.
    pub fn saw_nonce(&mut self, url: &Url, headers: &HeaderMap) -> bool {
        let Some(nonce) = headers
            .get(NONCE_HEADER)
            .and_then(|value| value.to_str().ok())
            .filter(|nonce| is_nonce(nonce))
        else {
            return false;
        };
        let origin = url.origin().ascii_serialization();
        self.nonces.retain(|(known, _)| *known != origin);
        if self.nonces.len() >= MAX_ORIGINS {
            self.nonces.remove(0);
        }
        self.nonces.push((origin, nonce.to_string()));
        true
    }

    /// The nonce `url`'s server last gave.
    fn nonce(&self, url: &Url) -> Option<&str> {
        let origin = url.origin().ascii_serialization();
        self.nonces
            .iter()
            .find(|(known, _)| *known == origin)
            .map(|(_, nonce)| nonce.as_str())
    }
}

impl DpopKey {
    fn new(key: SigningKey, algorithm: Algorithm) -> DpopKey {
        let jwk = key.public_jwk();
        DpopKey {
            thumbprint: thumbprint(&jwk),
            key,
            algorithm,
            jwk,
        }
    }
}

/// `ath`: base64url SHA-256 of the access token's ASCII (RFC 9449 section 4.2).
pub fn ath(token: &AccessToken) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, token.expose().as_bytes()))
}

/// RFC 9449 section 8: `nonce = 1*NQCHAR`, NQCHAR = %x21 / %x23-5B / %x5D-7E.
fn is_nonce(text: &str) -> bool {
    (1..=MAX_NONCE_CHARS).contains(&text.len())
        && text
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests;
