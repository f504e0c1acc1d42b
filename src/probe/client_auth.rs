//! How the client proves itself at the token endpoint, for every `auth_method`: reads the
//! credentials a request needs (client secret, password, private key and certificate, the JWT in
//! `client_assertion_file`) and decorates the token request with them (form or JSON fields,
//! `Authorization: Basic`, a signed client assertion or one read from a file), and the
//! `jwt_bearer` grant's `assertion` (signed, or read from the file). Every grant and `reuse` go
//! through here.
//!
//! Per-provider material is prepared once and reused while its source is unchanged: the Basic
//! header is rebuilt only when the secret's value changes (issue 15 measured rebuilding it every
//! cycle at about 6 % of CPU), a private key is parsed only when its file's contents change. The
//! files themselves are re-read every cycle, as secret files are, so a rotation takes effect
//! without a restart: the key and certificate files once at the cycle's start, for the token
//! request and the expiry watch alike (issue 22).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::HeaderValue;
use serde_json::{Map, Value, json};
use url::Url;

use crate::config::{
    AssertionConfig, AssertionFile, AuthMethod, BasicEncoding, BearerAssertion, Grant, TokenConfig,
};
use crate::files::{self, ReadError};
use crate::probe::expiry::{CertificateFile, CertificateSeen, fingerprint};
use crate::probe::jwt;
use crate::secrets::{
    ClientAssertion, MAX_PEM_FILE_BYTES, MAX_SECRET_FILE_BYTES, PrivateKeyPem, Scrubber, Secret,
    SecretError,
};
use crate::signing::{
    Algorithm, Certificate, KeyError, SigningKey, compact_jws, hs256, key_pem, random_id,
};

/// `client_assertion_type` of RFC 7523 section 2.2.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Why a request's client authentication could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The client secret or password could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The private key or certificate file could not be read (a secret mount's trouble, like
    /// an unreadable secret file).
    #[error("{0}")]
    KeyUnreadable(String),
    /// The key or certificate read is unusable, or signing failed: the assertion could not be
    /// made.
    #[error("{0}")]
    Assertion(String),
}

/// A provider's prepared client-authentication material, kept across cycles by its prober.
#[derive(Default)]
pub struct ClientAuth {
    /// The keyed hash of the secret the Basic header was built from (not a second copy of the
    /// secret kept for every provider), and the header.
    basic: Option<(u64, HeaderValue)>,
    /// The key file's and certificate file's contents, and what was prepared from them.
    /// Boxed, as the two fields below: only the assertion methods have them, and every
    /// provider's prober is kept for the process's life (BENCHMARKS.md, round seven).
    key: Option<Box<PreparedFrom>>,
    /// `private_key_file` and `certificate_file` as read at this cycle's start
    /// ([`ClientAuth::read_key_files`]), taken by the cycle's token request.
    this_cycle: Option<Box<KeyFiles>>,
    /// `certificate_file`'s notAfter, parsed when its contents change, for the expiry watch.
    certificate_file: Option<Box<CertificateFile>>,
    /// `client_assertion_file` as the last request read it: its keyed hash and its own `exp`
    /// (as a [`CertificateSeen`]'s notAfter), taken by the prober for the expiry watch. Set
    /// for an expired assertion too, so the gauge shows the date it lapsed.
    assertion_seen: Option<CertificateSeen>,
}

/// A prepared key with the key file's and certificate file's contents it was prepared from.
type PreparedFrom = (PrivateKeyPem, Option<Vec<u8>>, Arc<PreparedKey>);

/// The files of `private_key_jwt` as read together, or why each could not be.
struct KeyFiles {
    key: Result<PrivateKeyPem, AuthError>,
    certificate: Option<Result<Vec<u8>, AuthError>>,
}

/// Reads `private_key_file`, then `certificate_file` if set, within `deadline` in all.
async fn read_key_files(
    assertion: &AssertionConfig,
    key_path: &Path,
    deadline: Duration,
) -> KeyFiles {
    let started = Instant::now();
    let read = files::read_async(key_path, MAX_SECRET_FILE_BYTES, deadline).await;
    let key = key_pem(key_path, read).map_err(AuthError::KeyUnreadable);
    let certificate = match &assertion.certificate_file {
        Some(path) => Some(
            files::read_async(
                path,
                MAX_PEM_FILE_BYTES,
                deadline.saturating_sub(started.elapsed()),
            )
            .await
            .map_err(|error| {
                AuthError::KeyUnreadable(format!("cannot read {}: {error}", path.display()))
            }),
        ),
        None => None,
    };
    KeyFiles { key, certificate }
}

/// A parsed private key with the algorithm it signs with and the certificate thumbprints.
struct PreparedKey {
    key: SigningKey,
    algorithm: Algorithm,
    certificate: Option<Certificate>,
}

/// The credentials of one request, read now.
pub struct Credentials {
    client_secret: Option<Secret>,
    password: Option<Secret>,
    key: Option<Arc<PreparedKey>>,
    /// A keyed hash of the private key file's contents (0: none), to notice its rotation.
    key_fingerprint: u64,
    /// `client_assertion_file`'s JWT, checked to be one and unexpired.
    assertion_file: Option<ClientAssertion>,
}

impl Credentials {
    /// The password grant's password, for the request body.
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// Keyed hashes of the client secret, the password, the private key and the client
    /// assertion read from its file (0: none), so the prober notices a rotation without keeping
    /// any of them.
    pub fn fingerprints(&self) -> [u64; 4] {
        let hash = |secret: &Option<Secret>| {
            secret
                .as_ref()
                .map_or(0, |secret| fingerprint(secret.expose().as_bytes()))
        };
        [
            hash(&self.client_secret),
            hash(&self.password),
            self.key_fingerprint,
            self.assertion_file
                .as_ref()
                .map_or(0, |assertion| fingerprint(assertion.expose().as_bytes())),
        ]
    }
}

/// What an assertion says, decoded: what a person may see of it (never the signature).
pub struct ShownAssertion {
    /// Which assertion: `client assertion` or `jwt_bearer grant assertion`.
    pub kind: &'static str,
    /// How it was made: the `auth_method`, or where the grant's came from.
    pub made: &'static str,
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
}

/// What client authentication adds to one token request.
pub struct Decoration {
    /// Fields for the body, in order (JSON member names for `json_body`).
    pub fields: Vec<(String, String)>,
    /// `Authorization: Basic`, for `client_secret_basic`.
    pub authorization: Option<HeaderValue>,
    /// The assertions' decoded headers and claims (the grant's, then the client's), for the
    /// debug trace (never a signature).
    pub assertions: Vec<ShownAssertion>,
    /// The field names whose values are credentials (shown `[redacted]` in a trace).
    pub secret_fields: Vec<String>,
}

impl ClientAuth {
    /// Reads the credentials a request needs, each within what is left of `deadline`: a file on
    /// a stalled mount fails this provider's request, never the process.
    pub async fn read(
        &mut self,
        config: &TokenConfig,
        deadline: Duration,
    ) -> Result<Credentials, AuthError> {
        let started = Instant::now();
        let left = || deadline.saturating_sub(started.elapsed());
        let client_secret = match &config.client_secret {
            Some(source) => Some(source.read_within(left()).await?),
            None => None,
        };
        let password = match &config.grant {
            Grant::Password(grant) => Some(grant.password.read_within(left()).await?),
            Grant::ClientCredentials | Grant::JwtBearer(_) => None,
        };
        let assertion_file = match &config.assertion_file {
            Some(file) => Some(self.read_assertion_file(file, left()).await?),
            None => None,
        };
        let key = match &config.assertion {
            Some(assertion) if assertion.private_key_file.is_some() => {
                Some(self.key(assertion, left()).await?)
            }
            _ => None,
        };
        let key_fingerprint = match (&key, self.key.as_deref()) {
            (Some(_), Some((pem, _, _))) => fingerprint(pem.expose().as_bytes()),
            _ => 0,
        };
        Ok(Credentials {
            client_secret,
            password,
            key,
            key_fingerprint,
            assertion_file,
        })
    }

    /// `client_assertion_file`'s expiry as the last request read it, for the expiry watch
    /// (taken: each reading is handed over once).
    pub fn take_assertion_seen(&mut self) -> Option<CertificateSeen> {
        self.assertion_seen.take()
    }

    /// Reads `client_assertion_file` (issue 25) through the one file path, for this request:
    /// never kept past it, so a file its issuer rewrote is sent at once. Missing, unreadable,
    /// not a JWT, without `exp` or already expired is a `client_assertion` failure saying
    /// which, and nothing is sent. Its keyed hash and `exp` are noted for the expiry watch.
    async fn read_assertion_file(
        &mut self,
        file: &AssertionFile,
        deadline: Duration,
    ) -> Result<ClientAssertion, AuthError> {
        let path = file.path.display();
        let failed =
            |what: String| AuthError::Assertion(format!("client_assertion_file {path} {what}"));
        let bytes = files::read_async(&file.path, MAX_SECRET_FILE_BYTES, deadline)
            .await
            .map_err(|error| match error {
                ReadError::Io(std::io::ErrorKind::NotFound) => failed(format!(
                    "is missing ({error}); has its issuer stopped writing it?"
                )),
                error => failed(format!("cannot be read: {error}")),
            })?;
        let text =
            String::from_utf8(bytes).map_err(|_| failed("is not a JWT (not UTF-8 text)".into()))?;
        // A trailing line break is not part of the JWT (files written with `echo` end in one).
        let text = text.trim();
        if text.is_empty() {
            return Err(failed("is empty".into()));
        }
        let (Some(_), Some(claims)) = (jwt::header(text), jwt::claims(text)) else {
            return Err(failed(
                "is not a JWT (expected three base64url parts, a JSON header and JSON claims; an encrypted JWE cannot be sent as an assertion)"
                    .into(),
            ));
        };
        let exp = jwt::numeric_date(&claims, "exp");
        self.assertion_seen = Some(CertificateSeen {
            fingerprint: fingerprint(text.as_bytes()),
            // Whole seconds; 1 keeps a (nonsensical) `exp` of 0 "known, and past".
            not_after: exp.map(|exp| (exp as u64).max(1)),
        });
        let Some(exp) = exp else {
            return Err(failed(
                "has no exp claim (RFC 7523 section 3: an assertion must say when it expires)"
                    .into(),
            ));
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        if exp <= now {
            let at = UNIX_EPOCH + Duration::from_secs_f64(exp);
            return Err(failed(format!(
                "is expired: its exp is {} ({}s ago); its issuer has not renewed the file",
                humantime::format_rfc3339_seconds(at),
                (now - exp).ceil() as u64
            )));
        }
        Ok(ClientAssertion::new(text))
    }

    /// Reads the files of `private_key_jwt` at the start of a cycle, once for everyone who needs
    /// them (issue 22): the cycle's token request signs with what was read here, and the
    /// returned `certificate_file` (its keyed hash and notAfter) is for the expiry watch. Reads
    /// nothing (`None`) without a `private_key_file`; the certificate's part is `None` without
    /// a `certificate_file` or when it cannot be read (the request then fails saying why).
    pub async fn read_key_files(
        &mut self,
        config: &TokenConfig,
        deadline: Duration,
    ) -> Option<CertificateSeen> {
        let assertion = config.assertion.as_ref()?;
        let key_path = assertion.private_key_file.as_ref()?;
        let files = read_key_files(assertion, key_path, deadline).await;
        let seen = match &files.certificate {
            Some(Ok(bytes)) => Some(
                self.certificate_file
                    .get_or_insert_with(Box::default)
                    .saw(bytes),
            ),
            _ => None,
        };
        self.this_cycle = Some(Box::new(files));
        seen
    }

    /// The private key (and certificate) of `private_key_jwt`: the files as read at this
    /// cycle's start (or, for a request outside a cycle, now), parsed again only when their
    /// contents changed since the last request.
    async fn key(
        &mut self,
        assertion: &AssertionConfig,
        deadline: Duration,
    ) -> Result<Arc<PreparedKey>, AuthError> {
        let Some(key_path) = &assertion.private_key_file else {
            return Err(AuthError::Assertion("no private_key_file".into()));
        };
        // Taken: a later request (a cycle has at most one) reads the files afresh.
        let files = match self.this_cycle.take() {
            Some(files) => *files,
            None => read_key_files(assertion, key_path, deadline).await,
        };
        let pem = files.key?;
        let certificate_pem = files.certificate.transpose()?;
        if let Some((cached_pem, cached_certificate, prepared)) = self.key.as_deref()
            && *cached_pem == pem
            && *cached_certificate == certificate_pem
        {
            return Ok(Arc::clone(prepared));
        }
        let key = SigningKey::from_pem(&pem)
            .map_err(|error| AuthError::Assertion(format!("{} {error}", key_path.display())))?;
        let algorithm = key
            .algorithm(assertion.algorithm)
            .map_err(|error| AuthError::Assertion(format!("signing_algorithm: {error}")))?;
        let certificate = match (&assertion.certificate_file, &certificate_pem) {
            (Some(path), Some(pem)) => {
                let certificate = Certificate::from_pem(pem)
                    .map_err(|error| AuthError::Assertion(format!("{} {error}", path.display())))?;
                certificate.check_key(&key).map_err(|error| {
                    AuthError::Assertion(format!(
                        "{} {error} in {}",
                        path.display(),
                        key_path.display()
                    ))
                })?;
                Some(certificate)
            }
            _ => None,
        };
        let prepared = Arc::new(PreparedKey {
            key,
            algorithm,
            certificate,
        });
        self.key = Some(Box::new((pem, certificate_pem, Arc::clone(&prepared))));
        Ok(prepared)
    }

    /// The client authentication of one request to `endpoint` (the token endpoint actually
    /// used: an assertion's default audience). Adds every credential sent, in the encodings it
    /// travels in, to `scrubber`.
    pub fn decorate(
        &mut self,
        config: &TokenConfig,
        credentials: &Credentials,
        endpoint: &Url,
        scrubber: &mut Scrubber,
    ) -> Result<Decoration, AuthError> {
        if let Some(secret) = &credentials.client_secret {
            scrubber.add(secret.expose());
        }
        if let Some(password) = &credentials.password {
            scrubber.add(password.expose());
        }
        let client_id = || ("client_id".to_string(), config.client_id.clone());
        let mut decoration = Decoration {
            fields: Vec::new(),
            authorization: None,
            assertions: Vec::new(),
            secret_fields: Vec::new(),
        };
        // The jwt-bearer grant's assertion first (RFC 7523 section 2.1 writes it next to
        // grant_type), then the client authentication, which is optional with that grant.
        if let Grant::JwtBearer(bearer) = &config.grant {
            let (assertion, shown) = match bearer.source {
                BearerAssertion::Signed => {
                    let key = credentials
                        .key
                        .as_deref()
                        .ok_or_else(|| AuthError::Assertion("no private key".into()))?;
                    let (assertion, Decoded { header, claims }) = sign_assertion(
                        config,
                        Signer::Key(key),
                        bearer.issuer.as_deref().unwrap_or(&config.client_id),
                        bearer.subject.as_deref().unwrap_or(&config.client_id),
                        &bearer.claims,
                        endpoint,
                    )?;
                    let shown = ShownAssertion {
                        kind: "jwt_bearer grant assertion",
                        made: "signed with private_key_file",
                        header,
                        claims,
                    };
                    (assertion, shown)
                }
                BearerAssertion::File => {
                    let assertion = credentials
                        .assertion_file
                        .clone()
                        .ok_or_else(|| AuthError::Assertion("no client_assertion_file".into()))?;
                    let shown = shown_from_file(
                        "jwt_bearer grant assertion",
                        "read from client_assertion_file",
                        &assertion,
                    );
                    (assertion, shown)
                }
            };
            scrubber.add(assertion.expose());
            decoration
                .fields
                .push(("assertion".into(), assertion.expose().to_string()));
            decoration.secret_fields.push("assertion".into());
            decoration.assertions.push(shown);
        }
        let secret = || {
            credentials
                .client_secret
                .as_ref()
                .ok_or_else(|| AuthError::Assertion("no client secret".into()))
        };
        match config.auth_method {
            AuthMethod::ClientSecretPost => {
                decoration.fields.push(client_id());
                decoration
                    .fields
                    .push(("client_secret".into(), secret()?.expose().to_string()));
                decoration.secret_fields.push("client_secret".into());
            }
            AuthMethod::ClientSecretBasic => {
                let header = self.basic(config, secret()?);
                // A server may echo the credentials with or without the "Basic " scheme.
                let value = header.to_str().unwrap_or_default();
                scrubber.add(value);
                scrubber.add(value.trim_start_matches("Basic "));
                decoration.authorization = Some(header);
            }
            AuthMethod::JsonBody => {
                let names = &config.json_fields;
                decoration
                    .fields
                    .push((names.client_id.clone(), config.client_id.clone()));
                decoration
                    .fields
                    .push((names.client_secret.clone(), secret()?.expose().to_string()));
                decoration.secret_fields.push(names.client_secret.clone());
            }
            // Without client authentication the client still names itself, as a public client
            // does (RFC 6749 section 3.2.1); a server that has no use for it ignores it (3.2).
            AuthMethod::TlsClientAuth | AuthMethod::Unauthenticated => {
                decoration.fields.push(client_id());
            }
            AuthMethod::PrivateKeyJwt | AuthMethod::ClientSecretJwt => {
                let signer = match (config.auth_method, &credentials.key) {
                    (AuthMethod::PrivateKeyJwt, Some(key)) => Signer::Key(key),
                    (AuthMethod::PrivateKeyJwt, None) => {
                        return Err(AuthError::Assertion("no private key".into()));
                    }
                    _ => Signer::Secret(secret()?),
                };
                let (assertion, Decoded { header, claims }) = sign_assertion(
                    config,
                    signer,
                    &config.client_id,
                    &config.client_id,
                    &Map::new(),
                    endpoint,
                )?;
                let shown = ShownAssertion {
                    kind: "client assertion",
                    made: config.auth_method.as_str(),
                    header,
                    claims,
                };
                decoration.add_client_assertion(
                    scrubber,
                    assertion,
                    JWT_BEARER,
                    shown,
                    client_id(),
                );
            }
            AuthMethod::ClientAssertion => {
                let (Some(assertion), Some(file)) =
                    (&credentials.assertion_file, &config.assertion_file)
                else {
                    return Err(AuthError::Assertion("no client_assertion_file".into()));
                };
                let shown = shown_from_file("client assertion", "client_assertion", assertion);
                decoration.add_client_assertion(
                    scrubber,
                    assertion.clone(),
                    file.assertion_type,
                    shown,
                    client_id(),
                );
            }
        }
        Ok(decoration)
    }

    /// The Basic header for `secret`, built again only when the secret's value changed.
    fn basic(&mut self, config: &TokenConfig, secret: &Secret) -> HeaderValue {
        let secret_fingerprint = fingerprint(secret.expose().as_bytes());
        if let Some((cached, header)) = &self.basic
            && *cached == secret_fingerprint
        {
            return header.clone();
        }
        let header = basic_authorization(config.basic_encoding, &config.client_id, secret.expose());
        self.basic = Some((secret_fingerprint, header.clone()));
        header
    }
}

impl Decoration {
    /// The fields of a client assertion (RFC 7521 section 4.2), which the scrubber learns.
    fn add_client_assertion(
        &mut self,
        scrubber: &mut Scrubber,
        assertion: ClientAssertion,
        assertion_type: &str,
        shown: ShownAssertion,
        client_id: (String, String),
    ) {
        scrubber.add(assertion.expose());
        self.fields.push(client_id);
        self.fields
            .push(("client_assertion_type".into(), assertion_type.into()));
        self.fields
            .push(("client_assertion".into(), assertion.expose().to_string()));
        self.secret_fields.push("client_assertion".into());
        self.assertions.push(shown);
    }
}

/// What the trace may show of an assertion read from `client_assertion_file`: its decoded
/// header and claims (the file was checked to be a JWT), never its signature.
fn shown_from_file(
    kind: &'static str,
    made: &'static str,
    assertion: &ClientAssertion,
) -> ShownAssertion {
    ShownAssertion {
        kind,
        made,
        header: jwt::header(assertion.expose()).unwrap_or_default(),
        claims: jwt::claims(assertion.expose()).unwrap_or_default(),
    }
}

/// A signed assertion's header and claims, for the trace.
struct Decoded {
    header: Map<String, Value>,
    claims: Map<String, Value>,
}

/// What signs an assertion.
enum Signer<'a> {
    /// `private_key_file` (with its certificate's thumbprints).
    Key(&'a PreparedKey),
    /// The client secret, HS256 (`client_secret_jwt`).
    Secret(&'a Secret),
}

/// Signs an assertion of one request: `iss` and `sub` as given (the client id for a client
/// assertion), `aud` (configured, or the endpoint), a fresh `jti`, `iat` = `nbf` = now, `exp` =
/// now + `assertion_lifetime`, then `extra` (the jwt-bearer grant's `assertion_claims`).
/// Returns it with its decoded header and claims (for the trace).
fn sign_assertion(
    config: &TokenConfig,
    signer: Signer<'_>,
    issuer: &str,
    subject: &str,
    extra: &Map<String, Value>,
    endpoint: &Url,
) -> Result<(ClientAssertion, Decoded), AuthError> {
    let failed = |error: KeyError| AuthError::Assertion(error.to_string());
    let Some(settings) = &config.assertion else {
        return Err(AuthError::Assertion("no assertion settings".into()));
    };
    let algorithm = match &signer {
        Signer::Key(prepared) => prepared.algorithm,
        Signer::Secret(_) => Algorithm::Hs256,
    };
    let mut header = Map::new();
    header.insert("alg".into(), algorithm.as_str().into());
    header.insert("typ".into(), "JWT".into());
    if let Some(kid) = &settings.key_id {
        header.insert("kid".into(), kid.clone().into());
    }
    if let Signer::Key(PreparedKey {
        certificate: Some(certificate),
        ..
    }) = &signer
    {
        header.insert("x5t".into(), certificate.x5t.clone().into());
        header.insert("x5t#S256".into(), certificate.x5t_s256.clone().into());
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let audience = settings
        .audience
        .clone()
        .unwrap_or_else(|| endpoint.to_string());
    let claims = json!({
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "jti": random_id().map_err(failed)?,
        "iat": now,
        "nbf": now,
        "exp": now + settings.lifetime.as_secs(),
    });
    let Value::Object(mut claims) = claims else {
        return Err(AuthError::Assertion("claims are not an object".into()));
    };
    // Validation refused the names set above, so these only add.
    for (name, value) in extra {
        claims.entry(name.clone()).or_insert_with(|| value.clone());
    }
    let jws = compact_jws(&header, &claims, |input| match signer {
        Signer::Key(prepared) => prepared.key.sign(algorithm, input).map_err(failed),
        Signer::Secret(secret) => Ok(hs256(secret, input)),
    })?;
    Ok((ClientAssertion::new(jws), Decoded { header, claims }))
}

/// The `Authorization: Basic` header. `form` (RFC 6749 section 2.3.1): id and secret are
/// urlencoded, joined by a colon, then base64; with percent escapes only (a space as `%20`, never
/// `+`), which form decoders (`+` is a space), percent decoders (`+` is a plus, Authlib) and
/// RFC 3986 decoders all read back the same (issue 11). `raw` (RFC 7617, as curl and browsers):
/// `id:secret` as written, for servers that do not decode (glewlwyd); validation has refused a
/// client id with a colon.
pub(crate) fn basic_authorization(
    encoding: BasicEncoding,
    client_id: &str,
    client_secret: &str,
) -> HeaderValue {
    // byte_serialize escapes every byte but `*-._` and alphanumerics, writing a space as `+`
    // and a literal `+` as `%2B`: so every `+` left is a space.
    let encode = |s: &str| {
        url::form_urlencoded::byte_serialize(s.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    };
    let credentials = match encoding {
        BasicEncoding::Form => format!("{}:{}", encode(client_id), encode(client_secret)),
        BasicEncoding::Raw => format!("{client_id}:{client_secret}"),
    };
    let mut value = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(credentials)))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
    value.set_sensitive(true);
    value
}

#[cfg(test)]
mod tests;
