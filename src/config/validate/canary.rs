//! `[providers.NAME.canary]`: the URL and method of the API call made with each token, the
//! statuses that pass and those that mean the token was refused, and the headers sent (the
//! secret ones read from their source, never shown).

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use reqwest::header::{HeaderName, HeaderValue};

use super::values::{Problems, http_url};
use crate::config::raw::{RawCanary, RawSecretRef};
use crate::config::{CanaryCall, CanaryConfig};
use crate::secrets::SecretSource;

/// `[providers.NAME.canary]`: the API call made with each token, and what its answer means.
pub(super) fn canary(
    prefix: &str,
    raw: RawCanary,
    problems: &mut Problems,
) -> Option<CanaryConfig> {
    let url = http_url(&format!("{prefix}.url"), raw.url.as_deref(), problems);
    let method_text = raw.method.unwrap_or_else(|| "GET".to_string());
    let method = match reqwest::Method::from_bytes(method_text.to_ascii_uppercase().as_bytes()) {
        Ok(method) => Some(method),
        Err(_) => {
            problems.add(
                &format!("{prefix}.method"),
                format!("invalid HTTP method {method_text:?}; e.g. GET, POST, HEAD"),
            );
            None
        }
    };
    if let Some(expected) = &raw.expected_status {
        if expected.is_empty() {
            problems.add(
                &format!("{prefix}.expected_status"),
                "must not be empty; omit it to accept any 2xx",
            );
        }
        for status in expected {
            if !(100..=599).contains(status) {
                problems.add(
                    &format!("{prefix}.expected_status"),
                    format!("invalid HTTP status {status}; allowed: 100 to 599"),
                );
            }
        }
    }
    let token_rejected_status = raw.token_rejected_status.unwrap_or_else(|| vec![401]);
    if token_rejected_status.is_empty() {
        problems.add(
            &format!("{prefix}.token_rejected_status"),
            "must not be empty; omit it for the default [401]",
        );
    }
    for status in &token_rejected_status {
        if !(400..=499).contains(status) {
            problems.add(
                &format!("{prefix}.token_rejected_status"),
                format!(
                    "invalid status {status}; allowed: 4xx statuses (400 to 499), e.g. [401, 403]"
                ),
            );
        }
    }
    let mut headers = Vec::with_capacity(raw.headers.len());
    for (name, value) in raw.headers {
        let key = format!("{prefix}.headers.{name}");
        let Some(header_name) = canary_header_name(&key, &name, problems) else {
            continue;
        };
        match HeaderValue::from_str(&value) {
            Ok(header_value) => headers.push((header_name, header_value)),
            Err(_) => problems.add(&key, "invalid HTTP header value (control characters?)"),
        }
    }
    let secret_headers = secret_headers(prefix, raw.secret_headers, &headers, problems);
    let call = CanaryCall {
        expected_status: raw.expected_status,
        headers,
        secret_headers,
        token_rejected_status,
    };
    Some(CanaryConfig {
        url: url?,
        method: method?,
        call: if call == **DEFAULT_CALL {
            Arc::clone(&DEFAULT_CALL)
        } else {
            Arc::new(call)
        },
    })
}

/// The canary call of every provider that sets none of its headers or statuses, shared.
static DEFAULT_CALL: LazyLock<Arc<CanaryCall>> = LazyLock::new(|| {
    Arc::new(CanaryCall {
        expected_status: None,
        headers: Vec::new(),
        secret_headers: Vec::new(),
        token_rejected_status: vec![401],
    })
});

/// A canary header's name (in `headers` or `secret_headers`): a valid name, not the
/// `Authorization` the exporter sets itself.
fn canary_header_name(key: &str, name: &str, problems: &mut Problems) -> Option<HeaderName> {
    let Ok(header_name) = HeaderName::from_bytes(name.as_bytes()) else {
        problems.add(key, "invalid HTTP header name");
        return None;
    };
    if header_name == reqwest::header::AUTHORIZATION {
        problems.add(
            key,
            "the exporter sets Authorization itself (Bearer <token>)",
        );
        return None;
    }
    Some(header_name)
}

/// `secret_headers`: each a header name and exactly one of `env` / `file`, resolved once now
/// (so a missing variable stops start-up naming it) and re-read on every call.
fn secret_headers(
    prefix: &str,
    raw: BTreeMap<String, RawSecretRef>,
    plain: &[(HeaderName, HeaderValue)],
    problems: &mut Problems,
) -> Vec<(HeaderName, SecretSource)> {
    let mut headers = Vec::with_capacity(raw.len());
    for (name, source) in raw {
        let key = format!("{prefix}.secret_headers.{name}");
        let Some(header_name) = canary_header_name(&key, &name, problems) else {
            continue;
        };
        if plain.iter().any(|(other, _)| *other == header_name)
            || headers.iter().any(|(other, _)| *other == header_name)
        {
            problems.add(
                &key,
                "header given twice (names are case-insensitive; also in headers?); keep one",
            );
            continue;
        }
        let source = match (source.env, source.file) {
            (Some(env), None) => SecretSource::Env(env),
            (None, Some(file)) => SecretSource::File(file),
            (given_env, _) => {
                let what = if given_env.is_some() {
                    "both env and file are set"
                } else {
                    "no source given"
                };
                problems.add(
                    &key,
                    format!("{what}; set exactly one: {{ env = \"VARIABLE\" }} or {{ file = \"/path/to/file\" }}"),
                );
                continue;
            }
        };
        let source_key = match &source {
            SecretSource::File(_) => format!("{key}.file"),
            _ => format!("{key}.env"),
        };
        match source.read() {
            Err(error) => problems.add(&source_key, error),
            // Never the value in the message: it is a secret.
            Ok(value) if HeaderValue::from_str(value.expose()).is_err() => problems.add(
                &source_key,
                "the value read is not a valid HTTP header value (control characters or non-ASCII?); not shown: a secret",
            ),
            Ok(_) => headers.push((header_name, source)),
        }
    }
    headers
}
