//! How a client authenticates (issue 12): `auth_method`, the client secret that goes with it
//! (or must not), `basic_encoding`, the assertion keys (`private_key_file`, `certificate_file`,
//! `signing_algorithm`, `key_id`, `assertion_audience`, `assertion_lifetime`; the `jwt_bearer`
//! grant signs with them too), `client_assertion_file` and `client_assertion_type` (issue 25) and
//! the client certificate `tls_client_auth` needs. The key and certificate are read and checked once here,
//! so bad material stops start-up (and `--config.check`) with its key named; the probe re-reads
//! them on use.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::values::{Problems, duration_or, secret_source};
use crate::config::raw::RawToken;
use crate::config::{
    AssertionConfig, AssertionFile, AuthMethod, BasicEncoding, CLIENT_ASSERTION_TYPES,
    DEFAULT_ASSERTION_LIFETIME, SecretSource,
};
use crate::files::CONFIG_READ_TIMEOUT;
use crate::secrets::{MAX_PEM_FILE_BYTES, MAX_SECRET_FILE_BYTES};
use crate::signing::{Algorithm, Certificate, SigningKey, key_pem};

/// The longest `assertion_lifetime` accepted: an assertion is a bearer credential until it
/// expires, and servers refuse long-lived ones anyway.
const MAX_ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);

/// How the client of one `[token]` table proves itself; `None` where a key has a problem.
pub(super) struct ClientAuth {
    pub(super) method: Option<AuthMethod>,
    pub(super) assertion: Option<AssertionConfig>,
    pub(super) assertion_file: Option<AssertionFile>,
    /// Also `None` for the methods that send no secret.
    pub(super) secret: Option<SecretSource>,
    pub(super) basic_encoding: Option<BasicEncoding>,
}

/// The client authentication keys of the `[token]` table at `prefix` (the secret ones taken out
/// of `raw`); `client_id` for what `basic_encoding` can send; `jwt_bearer`: the grant is
/// `jwt_bearer`, whose assertion uses the key and file keys too.
pub(super) fn client_auth(
    prefix: &str,
    raw: &mut RawToken,
    client_id: Option<&str>,
    jwt_bearer: bool,
    problems: &mut Problems,
) -> ClientAuth {
    let key = |field: &str| format!("{prefix}.{field}");
    let method = auth_method(&key("auth_method"), raw.auth_method.as_deref(), problems);
    if let Some(method) = method {
        grant_fits_method(prefix, method, jwt_bearer, problems);
    }
    let assertion = assertion(prefix, raw, method, jwt_bearer, problems);
    let assertion_file = assertion_file(prefix, raw, method, jwt_bearer, problems);
    let secret = match method {
        Some(method) if !method.uses_secret() => {
            let given = [
                ("client_secret", raw.client_secret.is_some()),
                ("client_secret_file", raw.client_secret_file.is_some()),
                ("client_secret_env", raw.client_secret_env.is_some()),
            ];
            let given: Vec<&str> = given.iter().filter(|g| g.1).map(|g| g.0).collect();
            refuse_secret(prefix, method, &given, problems);
            None
        }
        _ => secret_source(
            &key("client_secret"),
            raw.client_secret.take(),
            raw.client_secret_file.take(),
            raw.client_secret_env.take(),
            problems,
        ),
    };
    let basic_encoding = basic_encoding(prefix, raw, client_id, method, problems);
    ClientAuth {
        method,
        assertion,
        assertion_file,
        secret,
        basic_encoding,
    }
}

/// `auth_method`, `client_secret_post` when absent.
fn auth_method(key: &str, text: Option<&str>, problems: &mut Problems) -> Option<AuthMethod> {
    let Some(text) = text else {
        return Some(AuthMethod::ClientSecretPost);
    };
    let found = AuthMethod::ALL
        .into_iter()
        .find(|method| method.as_str() == text);
    if found.is_none() {
        let allowed: Vec<&str> = AuthMethod::ALL.iter().map(|m| m.as_str()).collect();
        problems.add(
            key,
            format!("unknown value {text:?}; allowed: {}", allowed.join(", ")),
        );
    }
    found
}

/// The methods a grant cannot go with: no client authentication (`none`) leaves only the
/// jwt-bearer grant's assertion to prove the client, and `json_body` has no `grant_type` field
/// to carry that grant in.
fn grant_fits_method(prefix: &str, method: AuthMethod, jwt_bearer: bool, problems: &mut Problems) {
    let key = format!("{prefix}.auth_method");
    if method == AuthMethod::Unauthenticated && !jwt_bearer {
        problems.add(
            &key,
            "\"none\" sends no client authentication, which only grant_type = \"jwt_bearer\" can do without (its assertion proves the client); choose a method that proves the client: client_secret_post, client_secret_basic, json_body, private_key_jwt, client_secret_jwt, tls_client_auth, client_assertion",
        );
    }
    if method == AuthMethod::JsonBody && jwt_bearer {
        problems.add(
            &key,
            "json_body cannot carry grant_type = \"jwt_bearer\" (RFC 7523 sends a form with grant_type and assertion); choose another method, or none",
        );
    }
}

/// Refuses a client secret given to a method that sends none (`private_key_jwt`,
/// `tls_client_auth`, `client_assertion`, `none`): a secret configured but never used is a
/// misunderstanding to point out, not to ignore. `given` holds the secret keys that were set.
fn refuse_secret(prefix: &str, method: AuthMethod, given: &[&str], problems: &mut Problems) {
    let proof = match method {
        AuthMethod::PrivateKeyJwt => "the private key proves the client",
        AuthMethod::ClientAssertion => {
            "the assertion read from client_assertion_file proves the client"
        }
        AuthMethod::Unauthenticated => "no client authentication is sent",
        _ => "the client certificate proves the client",
    };
    for field in given {
        problems.add(
            &format!("{prefix}.{field}"),
            format!(
                "not used with auth_method = {:?} ({proof}; no secret is sent); remove it, or choose a method that uses a secret: client_secret_post, client_secret_basic, json_body, client_secret_jwt",
                method.as_str()
            ),
        );
    }
}

/// `basic_encoding` (`client_secret_basic` only): `form`, or `raw` for an id without a colon.
fn basic_encoding(
    prefix: &str,
    raw: &RawToken,
    client_id: Option<&str>,
    method: Option<AuthMethod>,
    problems: &mut Problems,
) -> Option<BasicEncoding> {
    let key = |field: &str| format!("{prefix}.{field}");
    let basic_encoding = match raw.basic_encoding.as_deref() {
        None | Some("form") => Some(BasicEncoding::Form),
        Some("raw") => {
            // RFC 7617: the user-id ends at the first colon, so a raw id cannot hold one.
            if client_id.is_some_and(|id| id.contains(':')) {
                problems.add(
                    &key("basic_encoding"),
                    "\"raw\" cannot send a client_id containing ':' (the server splits id and secret at the first colon); use basic_encoding = \"form\"",
                );
                None
            } else {
                Some(BasicEncoding::Raw)
            }
        }
        Some(other) => {
            problems.add(
                &key("basic_encoding"),
                format!("unknown value {other:?}; allowed: form, raw"),
            );
            None
        }
    };
    if raw.basic_encoding.is_some() && method != Some(AuthMethod::ClientSecretBasic) {
        problems.add(
            &key("basic_encoding"),
            "only meaningful with auth_method = \"client_secret_basic\"",
        );
    }
    basic_encoding
}

/// The settings of the assertions the exporter signs (the client assertion of `private_key_jwt`
/// and `client_secret_jwt`, the `jwt_bearer` grant's when `private_key_file` is set), with the
/// key and certificate checked; `None` when it signs nothing (and the signing keys are refused).
fn assertion(
    prefix: &str,
    raw: &RawToken,
    method: Option<AuthMethod>,
    jwt_bearer: bool,
    problems: &mut Problems,
) -> Option<AssertionConfig> {
    let key = |field: &str| format!("{prefix}.{field}");
    let method = method?;
    if !assertion_keys_fit(prefix, raw, method, jwt_bearer, problems) {
        return None;
    }

    let lifetime = duration_or(
        &key("assertion_lifetime"),
        raw.assertion_lifetime.as_deref(),
        DEFAULT_ASSERTION_LIFETIME,
        problems,
    );
    if lifetime > MAX_ASSERTION_LIFETIME {
        problems.add(
            &key("assertion_lifetime"),
            "longer than 1h; an assertion is a bearer credential until it expires, and servers refuse long-lived ones (the default is 5m)",
        );
    }
    let non_empty = |field: &str, value: &Option<String>, problems: &mut Problems| {
        if value.as_deref() == Some("") {
            problems.add(&key(field), "must not be empty; omit it instead");
        }
        value.clone()
    };
    let key_id = non_empty("key_id", &raw.key_id, problems);
    let audience = non_empty("assertion_audience", &raw.assertion_audience, problems);

    // A refused private_key_file (another method, no jwt_bearer grant) is not read.
    let signs_with_key =
        method == AuthMethod::PrivateKeyJwt || (jwt_bearer && raw.private_key_file.is_some());
    let algorithm = raw.signing_algorithm.as_deref().and_then(|text| {
        signing_algorithm(
            &key("signing_algorithm"),
            text,
            method,
            signs_with_key,
            problems,
        )
    });
    let (private_key_file, certificate_file) = if signs_with_key {
        key_material(prefix, raw, algorithm, problems)
    } else {
        (None, None)
    };
    Some(AssertionConfig {
        private_key_file,
        certificate_file,
        algorithm,
        key_id,
        audience,
        lifetime,
    })
}

/// Refuses the assertion keys nothing uses; whether the exporter signs an assertion at all.
fn assertion_keys_fit(
    prefix: &str,
    raw: &RawToken,
    method: AuthMethod,
    jwt_bearer: bool,
    problems: &mut Problems,
) -> bool {
    let key = |field: &str| format!("{prefix}.{field}");
    let client_jwt = matches!(
        method,
        AuthMethod::PrivateKeyJwt | AuthMethod::ClientSecretJwt
    );
    // The jwt-bearer grant signs its own assertion when it has a key (else it sends
    // client_assertion_file's).
    let grant_signs = jwt_bearer && raw.private_key_file.is_some();
    let mut only = |field: &str, given: bool, allowed: &str| {
        if given {
            problems.add(
                &key(field),
                format!(
                    "only meaningful with {allowed}; auth_method is {:?}{}",
                    method.as_str(),
                    if jwt_bearer {
                        ""
                    } else {
                        " and grant_type is not \"jwt_bearer\""
                    }
                ),
            );
        }
    };
    let private_key_only = "auth_method = \"private_key_jwt\" or grant_type = \"jwt_bearer\"";
    only(
        "private_key_file",
        raw.private_key_file.is_some() && method != AuthMethod::PrivateKeyJwt && !jwt_bearer,
        private_key_only,
    );
    only(
        "certificate_file",
        raw.certificate_file.is_some() && method != AuthMethod::PrivateKeyJwt && !grant_signs,
        "private_key_file (auth_method = \"private_key_jwt\", or grant_type = \"jwt_bearer\" signing with it)",
    );
    let jwt_only = "an assertion the exporter signs: auth_method = \"private_key_jwt\" or \"client_secret_jwt\", or grant_type = \"jwt_bearer\" with private_key_file";
    for (field, given) in [
        ("signing_algorithm", raw.signing_algorithm.is_some()),
        ("key_id", raw.key_id.is_some()),
        ("assertion_audience", raw.assertion_audience.is_some()),
        ("assertion_lifetime", raw.assertion_lifetime.is_some()),
    ] {
        only(field, given && !client_jwt && !grant_signs, jwt_only);
    }
    client_jwt || grant_signs
}

/// `client_assertion_file` with the `client_assertion_type` it is sent as: the client assertion
/// of `auth_method = "client_assertion"` (which needs it), or the `jwt_bearer` grant's assertion
/// when no `private_key_file` signs one. Not read here: its issuer renews it, and an expired or
/// missing one is the probe's `client_assertion` failure, not a reason to refuse to start.
fn assertion_file(
    prefix: &str,
    raw: &RawToken,
    method: Option<AuthMethod>,
    jwt_bearer: bool,
    problems: &mut Problems,
) -> Option<AssertionFile> {
    let key = |field: &str| format!("{prefix}.{field}");
    let method = method?;
    let client = method == AuthMethod::ClientAssertion;
    let grant = jwt_bearer && raw.private_key_file.is_none();
    let assertion_type = match raw.client_assertion_type.as_deref() {
        _ if !client => {
            if raw.client_assertion_type.is_some() {
                problems.add(
                    &key("client_assertion_type"),
                    format!(
                        "only meaningful with auth_method = \"client_assertion\" (the type the client assertion is sent as); auth_method is {:?}",
                        method.as_str()
                    ),
                );
            }
            CLIENT_ASSERTION_TYPES[0]
        }
        None => CLIENT_ASSERTION_TYPES[0],
        Some(text) => match CLIENT_ASSERTION_TYPES.into_iter().find(|t| *t == text) {
            Some(known) => known,
            None => {
                problems.add(
                    &key("client_assertion_type"),
                    format!(
                        "unknown value {text:?}; allowed: {}",
                        CLIENT_ASSERTION_TYPES.join(", ")
                    ),
                );
                CLIENT_ASSERTION_TYPES[0]
            }
        },
    };
    match &raw.client_assertion_file {
        None if client => {
            problems.add(
                &key("client_assertion_file"),
                "missing; auth_method = \"client_assertion\" sends the JWT this file holds (a Kubernetes projected service account token, AZURE_FEDERATED_TOKEN_FILE, a SPIFFE JWT-SVID), read for every token request",
            );
            None
        }
        None => None,
        Some(_) if !client && jwt_bearer && !grant => {
            problems.add(
                &key("client_assertion_file"),
                "not used: the jwt_bearer grant's assertion is signed with private_key_file; remove one of them (or set auth_method = \"client_assertion\" to send this file as the client assertion)",
            );
            None
        }
        Some(_) if !client && !grant => {
            problems.add(
                &key("client_assertion_file"),
                format!(
                    "only meaningful with auth_method = \"client_assertion\" or grant_type = \"jwt_bearer\"; auth_method is {:?}",
                    method.as_str()
                ),
            );
            None
        }
        Some(path) if path.as_os_str().is_empty() => {
            problems.add(&key("client_assertion_file"), "must not be empty");
            None
        }
        Some(path) => Some(AssertionFile {
            path: path.clone(),
            assertion_type,
        }),
    }
}

/// `signing_algorithm`: one that goes with the key (RS256, PS256 or ES256) when a private key
/// signs, else HS256 for `client_secret_jwt`.
fn signing_algorithm(
    key: &str,
    text: &str,
    method: AuthMethod,
    signs_with_key: bool,
    problems: &mut Problems,
) -> Option<Algorithm> {
    let allowed = if signs_with_key {
        "RS256, PS256 (RSA keys), ES256 (EC P-256 keys)"
    } else {
        "HS256 (client_secret_jwt signs with the client secret)"
    };
    match Algorithm::parse(text) {
        Some(Algorithm::Hs256) if !signs_with_key => Some(Algorithm::Hs256),
        Some(algorithm) if signs_with_key && algorithm != Algorithm::Hs256 => Some(algorithm),
        Some(algorithm) => {
            let with = if method == AuthMethod::PrivateKeyJwt || !signs_with_key {
                format!("auth_method = {:?}", method.as_str())
            } else {
                "the jwt_bearer grant's private_key_file".to_string()
            };
            problems.add(
                key,
                format!("{algorithm} does not go with {with}; allowed: {allowed}"),
            );
            None
        }
        None => {
            problems.add(key, format!("unknown value {text:?}; allowed: {allowed}"));
            None
        }
    }
}

/// `private_key_file` and `certificate_file` of a `private_key_jwt` provider, read and checked
/// now: the key against `algorithm`, the certificate against the key.
fn key_material(
    prefix: &str,
    raw: &RawToken,
    algorithm: Option<Algorithm>,
    problems: &mut Problems,
) -> (Option<PathBuf>, Option<PathBuf>) {
    let key = |field: &str| format!("{prefix}.{field}");
    match &raw.private_key_file {
        None => {
            problems.add(
                &key("private_key_file"),
                "missing; private_key_jwt signs with this PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC P-256)",
            );
            (None, None)
        }
        Some(path) => {
            let signing_key = read_key(&key("private_key_file"), path, problems);
            if let Some(signing_key) = &signing_key
                && let Err(error) = signing_key.algorithm(algorithm)
            {
                problems.add(&key("signing_algorithm"), error);
            }
            if let Some(cert_path) = &raw.certificate_file
                && let Some(certificate) =
                    read_certificate(&key("certificate_file"), cert_path, problems)
                && let Some(signing_key) = &signing_key
                && let Err(error) = certificate.check_key(signing_key)
            {
                problems.add(
                    &key("certificate_file"),
                    format!(
                        "{} {error}: the server checks the signature with the certificate it has registered; name the certificate of {}",
                        cert_path.display(),
                        path.display()
                    ),
                );
            }
            (Some(path.clone()), raw.certificate_file.clone())
        }
    }
}

/// Reads and parses `private_key_file` (or `dpop_key_file`) once at load; its problems name
/// `key`.
pub(super) fn read_key(key: &str, path: &Path, problems: &mut Problems) -> Option<SigningKey> {
    let pem = match key_pem(
        path,
        crate::files::read(path, MAX_SECRET_FILE_BYTES, CONFIG_READ_TIMEOUT),
    ) {
        Ok(pem) => pem,
        Err(problem) => {
            problems.add(key, problem);
            return None;
        }
    };
    match SigningKey::from_pem(&pem) {
        Ok(signing_key) => Some(signing_key),
        Err(error) => {
            problems.add(key, format!("{} {error}", path.display()));
            None
        }
    }
}

/// Reads and parses `certificate_file` once at load; its problems name `key`.
fn read_certificate(key: &str, path: &Path, problems: &mut Problems) -> Option<Certificate> {
    match crate::files::read(path, MAX_PEM_FILE_BYTES, CONFIG_READ_TIMEOUT) {
        Ok(pem) => match Certificate::from_pem(&pem) {
            Ok(certificate) => Some(certificate),
            Err(error) => {
                problems.add(key, format!("{} {error}", path.display()));
                None
            }
        },
        Err(error) => {
            problems.add(key, format!("cannot read {}: {error}", path.display()));
            None
        }
    }
}

/// `tls_client_auth` authenticates with the `[tls]` client certificate, so it needs one.
pub(super) fn check_tls_client_auth(
    prefix: &str,
    method: Option<AuthMethod>,
    has_client_certificate: bool,
    problems: &mut Problems,
) {
    if method == Some(AuthMethod::TlsClientAuth) && !has_client_certificate {
        problems.add(
            &format!("{prefix}.tls.client_cert_file"),
            "missing; auth_method = \"tls_client_auth\" authenticates with the client certificate: set client_cert_file and client_key_file in this provider's [tls] table",
        );
    }
}
