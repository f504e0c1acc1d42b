//! The configuration as written: every field optional, so that validation, not serde,
//! reports what is missing (naming the key and going on to find every problem); and the keys
//! each table allows, checked on each layer's own data before the layers merge.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::env::lenient;
use super::messages::source_name;

/// Declares a table of the configuration: the struct serde fills and `KEYS`, the keys the table
/// allows, made from the one field list, so that a key added to the struct is allowed by that
/// alone and the "allowed here" lists follow the order the fields are written in. The field
/// names are the keys: no `#[serde(rename)]`.
///
/// Unknown keys are found by [`walk_unknown`] against these lists, every one in a run, rather
/// than by serde's `deny_unknown_fields`, which stops at the first.
macro_rules! raw_table {
    (
        $(#[$meta:meta])*
        struct $name:ident {
            $($(#[$field_meta:meta])* $field:ident: $type:ty,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Deserialize)]
        pub(super) struct $name {
            $($(#[$field_meta])* pub(super) $field: $type,)*
        }

        impl $name {
            /// The keys this table allows, in the order written.
            pub(super) const KEYS: &'static [&'static str] = &[$(stringify!($field)),*];
        }
    };
}

raw_table! {
    #[derive(Default)]
    struct RawConfig {
        #[serde(default)]
        web: RawWeb,
        #[serde(default)]
        metrics: RawMetrics,
        #[serde(default)]
        defaults: RawDefaults,
        #[serde(default)]
        providers: BTreeMap<String, RawProvider>,
    }
}

raw_table! {
    #[derive(Default)]
    struct RawWeb {
        listen_address: Option<String>,
        probe_min_interval: Option<String>,
    }
}

raw_table! {
    #[derive(Default)]
    struct RawMetrics {
        histograms: Option<String>,
    }
}

raw_table! {
    #[derive(Default)]
    struct RawDefaults {
        interval: Option<String>,
        timeout: Option<String>,
        proxy_url: Option<String>,
        max_backoff: Option<String>,
        #[serde(default)]
        labels: BTreeMap<String, String>,
        #[serde(default, deserialize_with = "lenient::optional_bool")]
        dpop: Option<bool>,
        dpop_signing_algorithm: Option<String>,
    }
}

raw_table! {
    struct RawProvider {
        interval: Option<String>,
        timeout: Option<String>,
        proxy_url: Option<String>,
        max_backoff: Option<String>,
        #[serde(default)]
        labels: BTreeMap<String, String>,
        token: Option<RawToken>,
        canary: Option<RawCanary>,
        tls: Option<RawTls>,
    }
}

raw_table! {
    struct RawToken {
        url: Option<String>,
        issuer: Option<String>,
        discovery_refresh: Option<String>,
        grant_type: Option<String>,
        client_id: Option<String>,
        client_secret: Option<String>,
        client_secret_file: Option<PathBuf>,
        client_secret_env: Option<String>,
        auth_method: Option<String>,
        basic_encoding: Option<String>,
        #[serde(default, deserialize_with = "lenient::strings")]
        scopes: Vec<String>,
        #[serde(default)]
        params: BTreeMap<String, RawParam>,
        username: Option<String>,
        password: Option<String>,
        password_file: Option<PathBuf>,
        password_env: Option<String>,
        #[serde(default, deserialize_with = "lenient::bool")]
        reuse: bool,
        refresh_before: Option<String>,
        json_fields: Option<RawJsonFields>,
        response: Option<RawResponse>,
        client_secret_expires: Option<String>,
        password_expires: Option<String>,
        expect: Option<RawExpect>,
        private_key_file: Option<PathBuf>,
        certificate_file: Option<PathBuf>,
        signing_algorithm: Option<String>,
        key_id: Option<String>,
        assertion_audience: Option<String>,
        assertion_lifetime: Option<String>,
        assertion_issuer: Option<String>,
        assertion_subject: Option<String>,
        #[serde(default)]
        assertion_claims: BTreeMap<String, serde_json::Value>,
        client_assertion_file: Option<PathBuf>,
        client_assertion_type: Option<String>,
        #[serde(default, deserialize_with = "lenient::optional_bool")]
        dpop: Option<bool>,
        dpop_signing_algorithm: Option<String>,
        dpop_key_file: Option<PathBuf>,
    }
}

raw_table! {
    struct RawExpect {
        #[serde(default, deserialize_with = "lenient::strings")]
        scopes: Vec<String>,
        #[serde(default, deserialize_with = "lenient::strings")]
        roles: Vec<String>,
        audience: Option<String>,
        issuer: Option<String>,
        #[serde(default, deserialize_with = "lenient::bool")]
        certificate_bound: bool,
    }
}

/// A `params` value: one string, or a list sent as the key once per value (RFC 8707
/// `resource`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawParam {
    One(String),
    List(Vec<String>),
}

raw_table! {
    struct RawJsonFields {
        client_id: Option<String>,
        client_secret: Option<String>,
        username: Option<String>,
        password: Option<String>,
    }
}

raw_table! {
    struct RawResponse {
        access_token: Option<String>,
        expires_in: Option<String>,
    }
}

raw_table! {
    struct RawCanary {
        url: Option<String>,
        method: Option<String>,
        #[serde(default, deserialize_with = "lenient::statuses")]
        expected_status: Option<Vec<u16>>,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        #[serde(default)]
        secret_headers: BTreeMap<String, RawSecretRef>,
        #[serde(default, deserialize_with = "lenient::statuses")]
        token_rejected_status: Option<Vec<u16>>,
    }
}

raw_table! {
    /// Where a secret header's value is read from: `{ env = "NAME" }` or `{ file = "/path" }`.
    struct RawSecretRef {
        env: Option<String>,
        file: Option<PathBuf>,
    }
}

raw_table! {
    struct RawTls {
        ca_file: Option<PathBuf>,
        client_cert_file: Option<PathBuf>,
        client_key_file: Option<PathBuf>,
        #[serde(default, deserialize_with = "lenient::bool")]
        insecure_skip_verify: bool,
    }
}

/// The keys allowed in the table at `path` (provider names replaced by `*`): which raw table
/// sits there; `None` where any key is allowed (provider names, `labels`, `params`,
/// `assertion_claims`, `headers`, `secret_headers`' header names).
pub(super) fn allowed_keys(path: &[&str]) -> Option<&'static [&'static str]> {
    Some(match path {
        [] => RawConfig::KEYS,
        ["web"] => RawWeb::KEYS,
        ["metrics"] => RawMetrics::KEYS,
        ["defaults"] => RawDefaults::KEYS,
        ["providers", _] => RawProvider::KEYS,
        ["providers", _, "token"] => RawToken::KEYS,
        ["providers", _, "token", "json_fields"] => RawJsonFields::KEYS,
        ["providers", _, "token", "response"] => RawResponse::KEYS,
        ["providers", _, "token", "expect"] => RawExpect::KEYS,
        ["providers", _, "canary"] => RawCanary::KEYS,
        ["providers", _, "canary", "secret_headers", _] => RawSecretRef::KEYS,
        ["providers", _, "tls"] => RawTls::KEYS,
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
            ["providers", _, "token", "params" | "assertion_claims"]
            | ["providers", _, "canary", "headers"] => false,
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

    /// Every table refuses a key it does not know, each named with what the table allows, all in
    /// one run; the tables whose keys are data (`params`, `headers`, the names in
    /// `secret_headers`) take any key. The lists are written out here, not taken from the raw
    /// structs, so that a change to a struct that changes a message shows.
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
            "key `providers.p.token.expect.scope`: unknown key; allowed here: scopes, roles, audience, issuer, certificate_bound",
            "key `providers.p.token.json_fields.client`: unknown key; allowed here: client_id, client_secret, username, password",
            "key `providers.p.token.response.token`: unknown key; allowed here: access_token, expires_in",
        ]
        .map(|line| format!("{source}: {line}"));
        let mut expected = expected.to_vec();
        // Validation goes on beside them: the unknown keys were not taken for the known ones.
        expected.extend([
            "key `providers.p.token.json_fields`: only meaningful with auth_method = \"json_body\"".to_string(),
            "key `providers.p.token.expect`: empty; set at least one of scopes, roles, audience, issuer, certificate_bound (or remove the table)".to_string(),
        ]);
        assert_eq!(problems, expected);
    }
}
