//! The configuration as written: every field optional, so that validation, not serde,
//! reports what is missing (naming the key and going on to find every problem); and the keys
//! each table allows, checked on each layer's own data before the layers merge.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::env::lenient;
use super::messages::source_name;

// Unknown keys are found by [`walk_unknown`] against [`allowed_keys`], all at once, rather than
// by serde, which stops at the first.

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) web: RawWeb,
    #[serde(default)]
    pub(super) metrics: RawMetrics,
    #[serde(default)]
    pub(super) defaults: RawDefaults,
    #[serde(default)]
    pub(super) providers: BTreeMap<String, RawProvider>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawWeb {
    pub(super) listen_address: Option<String>,
    pub(super) probe_min_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawMetrics {
    pub(super) histograms: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawDefaults {
    pub(super) interval: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) proxy_url: Option<String>,
    pub(super) max_backoff: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawProvider {
    pub(super) interval: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) proxy_url: Option<String>,
    pub(super) max_backoff: Option<String>,
    pub(super) token: Option<RawToken>,
    pub(super) canary: Option<RawCanary>,
    pub(super) tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawToken {
    pub(super) url: Option<String>,
    pub(super) issuer: Option<String>,
    pub(super) discovery_refresh: Option<String>,
    pub(super) grant_type: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) client_secret: Option<String>,
    pub(super) client_secret_file: Option<PathBuf>,
    pub(super) client_secret_env: Option<String>,
    pub(super) auth_method: Option<String>,
    pub(super) basic_encoding: Option<String>,
    #[serde(default, deserialize_with = "lenient::strings")]
    pub(super) scopes: Vec<String>,
    #[serde(default)]
    pub(super) params: BTreeMap<String, RawParam>,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) password_env: Option<String>,
    #[serde(default, deserialize_with = "lenient::bool")]
    pub(super) reuse: bool,
    pub(super) refresh_before: Option<String>,
    pub(super) json_fields: Option<RawJsonFields>,
    pub(super) response: Option<RawResponse>,
    pub(super) client_secret_expires: Option<String>,
    pub(super) password_expires: Option<String>,
    pub(super) expect: Option<RawExpect>,
    pub(super) private_key_file: Option<PathBuf>,
    pub(super) certificate_file: Option<PathBuf>,
    pub(super) signing_algorithm: Option<String>,
    pub(super) key_id: Option<String>,
    pub(super) assertion_audience: Option<String>,
    pub(super) assertion_lifetime: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawExpect {
    #[serde(default, deserialize_with = "lenient::strings")]
    pub(super) scopes: Vec<String>,
    #[serde(default, deserialize_with = "lenient::strings")]
    pub(super) roles: Vec<String>,
    pub(super) audience: Option<String>,
    pub(super) issuer: Option<String>,
}

/// A `params` value: one string, or a list sent as the key once per value (RFC 8707
/// `resource`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawParam {
    One(String),
    List(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub(super) struct RawJsonFields {
    pub(super) client_id: Option<String>,
    pub(super) client_secret: Option<String>,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawResponse {
    pub(super) access_token: Option<String>,
    pub(super) expires_in: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawCanary {
    pub(super) url: Option<String>,
    pub(super) method: Option<String>,
    #[serde(default, deserialize_with = "lenient::statuses")]
    pub(super) expected_status: Option<Vec<u16>>,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) secret_headers: BTreeMap<String, RawSecretRef>,
    #[serde(default, deserialize_with = "lenient::statuses")]
    pub(super) token_rejected_status: Option<Vec<u16>>,
}

/// Where a secret header's value is read from: `{ env = "NAME" }` or `{ file = "/path" }`.
#[derive(Debug, Deserialize)]
pub(super) struct RawSecretRef {
    pub(super) env: Option<String>,
    pub(super) file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawTls {
    pub(super) ca_file: Option<PathBuf>,
    pub(super) client_cert_file: Option<PathBuf>,
    pub(super) client_key_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "lenient::bool")]
    pub(super) insecure_skip_verify: bool,
}

/// The keys allowed in the table at `path` (provider names replaced by `*`); `None` where any
/// key is allowed (provider names, `params`, `headers`, `secret_headers`' header names).
pub(super) fn allowed_keys(path: &[&str]) -> Option<&'static [&'static str]> {
    Some(match path {
        [] => &["web", "metrics", "defaults", "providers"],
        ["web"] => &["listen_address", "probe_min_interval"],
        ["metrics"] => &["histograms"],
        ["defaults"] => &["interval", "timeout", "proxy_url", "max_backoff"],
        ["providers", _] => &[
            "interval",
            "timeout",
            "proxy_url",
            "max_backoff",
            "token",
            "canary",
            "tls",
        ],
        ["providers", _, "token"] => &[
            "url",
            "issuer",
            "discovery_refresh",
            "grant_type",
            "client_id",
            "client_secret",
            "client_secret_file",
            "client_secret_env",
            "auth_method",
            "basic_encoding",
            "scopes",
            "params",
            "username",
            "password",
            "password_file",
            "password_env",
            "reuse",
            "refresh_before",
            "json_fields",
            "response",
            "client_secret_expires",
            "password_expires",
            "expect",
            "private_key_file",
            "certificate_file",
            "signing_algorithm",
            "key_id",
            "assertion_audience",
            "assertion_lifetime",
        ],
        ["providers", _, "token", "json_fields"] => {
            &["client_id", "client_secret", "username", "password"]
        }
        ["providers", _, "token", "response"] => &["access_token", "expires_in"],
        ["providers", _, "token", "expect"] => &["scopes", "roles", "audience", "issuer"],
        ["providers", _, "canary"] => &[
            "url",
            "method",
            "expected_status",
            "headers",
            "secret_headers",
            "token_rejected_status",
        ],
        ["providers", _, "canary", "secret_headers", _] => &["env", "file"],
        ["providers", _, "tls"] => &[
            "ca_file",
            "client_cert_file",
            "client_key_file",
            "insecure_skip_verify",
        ],
        _ => return None,
    })
}

/// Collects the keys of one layer's `table` (at `path`) that the configuration does not know,
/// named with where they were written. Walking each layer, rather than the merged configuration,
/// names the source of each key for free.
pub(super) fn walk_unknown<'a>(
    metadata: &figment::Metadata,
    table: &'a figment::value::Dict,
    path: &mut Vec<&'a str>,
    problems: &mut Vec<String>,
) {
    // Provider names are free; match the schema with them replaced by `*`.
    let schema_path: Vec<&str> = path
        .iter()
        .enumerate()
        .map(|(i, part)| {
            if i == 1 && path[0] == "providers" {
                "*"
            } else {
                *part
            }
        })
        .collect();
    let allowed = allowed_keys(&schema_path);
    for (key, value) in table {
        if let Some(allowed) = allowed
            && !allowed.contains(&key.as_str())
        {
            let full = path
                .iter()
                .copied()
                .chain([key.as_str()])
                .collect::<Vec<_>>()
                .join(".");
            let source = source_name(metadata, &full);
            problems.push(format!(
                "{source}: key `{full}`: unknown key; allowed here: {}",
                allowed.join(", ")
            ));
            continue;
        }
        let descend = match schema_path.as_slice() {
            // Inside these, keys are data (parameter and header names), not configuration.
            ["providers", _, "token", "params"] | ["providers", _, "canary", "headers"] => false,
            _ => true,
        };
        if descend && let figment::value::Value::Dict(_, inner) = value {
            path.push(key.as_str());
            walk_unknown(metadata, inner, path, problems);
            path.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Overrides, load_str};

    /// Every table refuses a key it does not know, each named with what the table allows (in the
    /// order the configuration reference lists them), all in one run; the tables whose keys are
    /// data (`params`, `headers`, the names in `secret_headers`) take any key. The lists are
    /// written out here so that a change to a raw struct that changes a message shows.
    #[test]
    fn every_table_names_its_unknown_keys_and_what_it_allows() {
        let toml = r#"
            [metrics]
            histogram = "native"

            [providers.p.token]
            url = "https://idp.example/token"
            client_id = "id"
            client_secret = "s"
            params = { any_name = "x" }
            json_fields = { client = "c" }
            response = { token = "t" }
            expect = { scope = ["a"] }

            [providers.p.canary]
            url = "https://api.example/"
            header = { X = "y" }
            headers = { Any-Name = "y" }
            secret_headers = { X-Key = { env = "HOME", path = "/x" } }

            [providers.p.tls]
            ca = "/ca.pem"
        "#;
        let problems = load_str(toml, &Overrides::default()).unwrap_err().problems;
        let source = "TOML source string";
        let expected = [
            "key `metrics.histogram`: unknown key; allowed here: histograms",
            "key `providers.p.canary.header`: unknown key; allowed here: url, method, expected_status, headers, secret_headers, token_rejected_status",
            "key `providers.p.canary.secret_headers.X-Key.path`: unknown key; allowed here: env, file",
            "key `providers.p.tls.ca`: unknown key; allowed here: ca_file, client_cert_file, client_key_file, insecure_skip_verify",
            "key `providers.p.token.expect.scope`: unknown key; allowed here: scopes, roles, audience, issuer",
            "key `providers.p.token.json_fields.client`: unknown key; allowed here: client_id, client_secret, username, password",
            "key `providers.p.token.response.token`: unknown key; allowed here: access_token, expires_in",
        ]
        .map(|line| format!("{source}: {line}"));
        let mut expected = expected.to_vec();
        // Validation goes on beside them: the unknown keys were not taken for the known ones.
        expected.extend([
            "key `providers.p.token.json_fields`: only meaningful with auth_method = \"json_body\"".to_string(),
            "key `providers.p.token.expect`: empty; set at least one of scopes, roles, audience, issuer (or remove the table)".to_string(),
        ]);
        assert_eq!(problems, expected);
    }
}
