//! The built-in exporter configuration `--demo` runs with: `demo.toml`, a commented example a new
//! user can copy, with its `{placeholder}`s filled from the server's address and the demo
//! credentials the dialects check.

use std::net::SocketAddr;

use super::certificate::{CredentialFiles, OKQ8_CERTIFICATE_CLIENT};
use super::dialects::{
    CUBE_CLIENT, CUBE_RESOURCE, CUBE_SCOPE, CUBE_TENANT, EQHUB_CLIENT, EQHUB_TEKNO,
    EVERACTIVE_CLIENT, EVERACTIVE_PASSWORD, EVERACTIVE_PASSWORD_CLIENT, EVERACTIVE_USERNAME,
    NEXTOME_CLIENT, OKQ8_CLIENT, OKQ8_RESOURCE, OKQ8_ROTATED_AWAY_SECRET, OKQ8_TENANT,
};
use super::{
    CUBE_CANARY_PATH, CUBE_TOKEN_PATH, EQHUB_TEKNOS_PREFIX, EQHUB_TOKEN_PATH,
    EVERACTIVE_GATEWAYS_PATH, EVERACTIVE_SENSORS_PATH, EVERACTIVE_TOKEN_PATH, NEXTOME_CANARY_PATH,
    NEXTOME_TOKEN_PATH, OKQ8_CANARY_PATH,
};

/// Kept as a real TOML file, not a Rust string, so it reads (and diffs) like the configuration a
/// user writes; `{name}` is a placeholder only for the names [`placeholders`] lists, so the
/// template's own braces (inline tables, `{1,64}`) pass through untouched.
pub(super) const TEMPLATE: &str = include_str!("demo.toml");

/// How far ahead the demo's okq8 secret expires: inside the 30-day warning window, outside the
/// 7-day critical one.
pub(super) const DEMO_SECRET_EXPIRES_IN: std::time::Duration =
    std::time::Duration::from_secs(20 * 86400 + 3600);

/// The configuration pointing at the demo server on `addr`.
pub(super) fn render(addr: SocketAddr, files: &CredentialFiles) -> String {
    placeholders(addr, files)
        .iter()
        .fold(TEMPLATE.to_owned(), |text, (name, value)| {
            text.replace(&format!("{{{name}}}"), value)
        })
}

/// Each placeholder of [`TEMPLATE`] and its value: a quoted TOML string, except `base`, which
/// only appears inside a comment.
pub(super) fn placeholders(
    addr: SocketAddr,
    files: &CredentialFiles,
) -> Vec<(&'static str, String)> {
    let base = format!("http://{addr}");
    let q = toml_string;
    vec![
        ("eqhub_token_url", q(&format!("{base}{EQHUB_TOKEN_PATH}"))),
        (
            "eqhub_canary_url",
            q(&format!("{base}{EQHUB_TEKNOS_PREFIX}{EQHUB_TEKNO}")),
        ),
        ("eqhub_id", q(EQHUB_CLIENT.client_id)),
        ("eqhub_secret", q(EQHUB_CLIENT.secret)),
        (
            "okq8_token_url",
            q(&format!("{base}/{OKQ8_TENANT}/oauth2/v2.0/token")),
        ),
        ("okq8_canary_url", q(&format!("{base}{OKQ8_CANARY_PATH}"))),
        ("okq8_id", q(OKQ8_CLIENT.client_id)),
        ("okq8_secret", q(OKQ8_CLIENT.secret)),
        ("okq8_rotated_secret", q(OKQ8_ROTATED_AWAY_SECRET)),
        ("okq8_certificate_id", q(OKQ8_CERTIFICATE_CLIENT)),
        ("okq8_key_file", q(&files.key_file.display().to_string())),
        (
            "okq8_certificate_file",
            q(&files.certificate_file.display().to_string()),
        ),
        ("okq8_scope", q(&format!("{OKQ8_RESOURCE}/.default"))),
        // Issue 13: a secret that "expires in 20 days" whenever the demo is started (an hour
        // more, so that it reads "in 20 days" for the first hour rather than "in 19 days").
        (
            "okq8_secret_expires",
            q(&humantime::format_rfc3339_seconds(
                std::time::SystemTime::now() + DEMO_SECRET_EXPIRES_IN,
            )
            .to_string()),
        ),
        ("cube_token_url", q(&format!("{base}{CUBE_TOKEN_PATH}"))),
        ("cube_canary_url", q(&format!("{base}{CUBE_CANARY_PATH}"))),
        ("cube_id", q(CUBE_CLIENT.client_id)),
        ("cube_secret", q(CUBE_CLIENT.secret)),
        ("cube_scope", q(CUBE_SCOPE)),
        ("cube_resource", q(CUBE_RESOURCE)),
        ("cube_acr", q(&format!("tenant:{CUBE_TENANT}"))),
        (
            "nextome_token_url",
            q(&format!("{base}{NEXTOME_TOKEN_PATH}")),
        ),
        (
            "nextome_canary_url",
            q(&format!("{base}{NEXTOME_CANARY_PATH}")),
        ),
        ("nextome_id", q(NEXTOME_CLIENT.client_id)),
        ("nextome_secret", q(NEXTOME_CLIENT.secret)),
        (
            "everactive_token_url",
            q(&format!("{base}{EVERACTIVE_TOKEN_PATH}")),
        ),
        (
            "everactive_sensors_url",
            q(&format!("{base}{EVERACTIVE_SENSORS_PATH}")),
        ),
        (
            "everactive_gateways_url",
            q(&format!("{base}{EVERACTIVE_GATEWAYS_PATH}")),
        ),
        ("everactive_id", q(EVERACTIVE_CLIENT.client_id)),
        ("everactive_secret", q(EVERACTIVE_CLIENT.secret)),
        ("everactive_pw_id", q(EVERACTIVE_PASSWORD_CLIENT.client_id)),
        ("everactive_pw_secret", q(EVERACTIVE_PASSWORD_CLIENT.secret)),
        ("everactive_user", q(EVERACTIVE_USERNAME)),
        ("everactive_password", q(EVERACTIVE_PASSWORD)),
        // Only in a comment, unquoted. No value holds a `{`, so replacing in turn is safe.
        ("base", base),
    ]
}

/// A TOML basic string holding exactly `value`.
pub(super) fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
