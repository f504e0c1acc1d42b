//! How a client authenticates (issue 12): `auth_method`, the client secret that goes with it
//! (or must not), `basic_encoding`, the assertion keys (`private_key_file`, `certificate_file`,
//! `signing_algorithm`, `key_id`, `assertion_audience`, `assertion_lifetime`) and the client
//! certificate `tls_client_auth` needs. The key and certificate are read and checked once here,
//! so bad material stops start-up (and `--config.check`) with its key named; the probe re-reads
//! them on use.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::values::{Problems, duration_or, secret_source};
use crate::config::raw::RawToken;
use crate::config::{
    AssertionConfig, AuthMethod, BasicEncoding, DEFAULT_ASSERTION_LIFETIME, SecretSource,
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
    /// Also `None` for the methods that send no secret.
    pub(super) secret: Option<SecretSource>,
    pub(super) basic_encoding: Option<BasicEncoding>,
}

/// The client authentication keys of the `[token]` table at `prefix` (the secret ones taken out
/// of `raw`); `client_id` for what `basic_encoding` can send.
pub(super) fn client_auth(
    prefix: &str,
    raw: &mut RawToken,
    client_id: Option<&str>,
    problems: &mut Problems,
) -> ClientAuth {
    let key = |field: &str| format!("{prefix}.{field}");
    let method = auth_method(&key("auth_method"), raw.auth_method.as_deref(), problems);
    let assertion = assertion(prefix, raw, method, problems);
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

/// Refuses a client secret given to a method that sends none (`private_key_jwt`,
/// `tls_client_auth`): a secret configured but never used is a misunderstanding to point out,
/// not to ignore. `given` holds the secret keys that were set.
fn refuse_secret(prefix: &str, method: AuthMethod, given: &[&str], problems: &mut Problems) {
    let proof = match method {
        AuthMethod::PrivateKeyJwt => "the private key proves the client",
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

/// The assertion settings of a `private_key_jwt` or `client_secret_jwt` provider, with its key
/// and certificate checked; `None` for the other methods (whose assertion keys are refused).
fn assertion(
    prefix: &str,
    raw: &RawToken,
    method: Option<AuthMethod>,
    problems: &mut Problems,
) -> Option<AssertionConfig> {
    let key = |field: &str| format!("{prefix}.{field}");
    let method = method?;
    if !assertion_keys_fit(prefix, raw, method, problems) {
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

    let algorithm = raw
        .signing_algorithm
        .as_deref()
        .and_then(|text| signing_algorithm(&key("signing_algorithm"), text, method, problems));
    let (private_key_file, certificate_file) = if method == AuthMethod::PrivateKeyJwt {
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

/// Refuses the assertion keys `method` does not use; whether it makes assertions at all.
fn assertion_keys_fit(
    prefix: &str,
    raw: &RawToken,
    method: AuthMethod,
    problems: &mut Problems,
) -> bool {
    let key = |field: &str| format!("{prefix}.{field}");
    let jwt = matches!(
        method,
        AuthMethod::PrivateKeyJwt | AuthMethod::ClientSecretJwt
    );
    let mut only = |field: &str, given: bool, allowed: &str| {
        if given {
            problems.add(
                &key(field),
                format!(
                    "only meaningful with {allowed}; auth_method is {:?}",
                    method.as_str()
                ),
            );
        }
    };
    let private_key_only = "auth_method = \"private_key_jwt\"";
    only(
        "private_key_file",
        raw.private_key_file.is_some() && method != AuthMethod::PrivateKeyJwt,
        private_key_only,
    );
    only(
        "certificate_file",
        raw.certificate_file.is_some() && method != AuthMethod::PrivateKeyJwt,
        private_key_only,
    );
    let jwt_only = "auth_method = \"private_key_jwt\" or \"client_secret_jwt\"";
    for (field, given) in [
        ("signing_algorithm", raw.signing_algorithm.is_some()),
        ("key_id", raw.key_id.is_some()),
        ("assertion_audience", raw.assertion_audience.is_some()),
        ("assertion_lifetime", raw.assertion_lifetime.is_some()),
    ] {
        only(field, given && !jwt, jwt_only);
    }
    jwt
}

/// `signing_algorithm`: one that goes with `method` (HS256 for `client_secret_jwt`, RS256, PS256
/// or ES256 for `private_key_jwt`).
fn signing_algorithm(
    key: &str,
    text: &str,
    method: AuthMethod,
    problems: &mut Problems,
) -> Option<Algorithm> {
    let allowed = if method == AuthMethod::ClientSecretJwt {
        "HS256 (client_secret_jwt signs with the client secret)"
    } else {
        "RS256, PS256 (RSA keys), ES256 (EC P-256 keys)"
    };
    match Algorithm::parse(text) {
        Some(Algorithm::Hs256) if method == AuthMethod::ClientSecretJwt => Some(Algorithm::Hs256),
        Some(algorithm) if method == AuthMethod::PrivateKeyJwt && algorithm != Algorithm::Hs256 => {
            Some(algorithm)
        }
        Some(algorithm) => {
            problems.add(
                key,
                format!(
                    "{algorithm} does not go with auth_method = {:?}; allowed: {allowed}",
                    method.as_str()
                ),
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
