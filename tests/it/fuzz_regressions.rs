//! Issue #4 (section 6, fuzzing): regression tests for the fuzz targets in `fuzz/`. Each kept
//! corpus is replayed through the public API with the same checks as its fuzz target, so a change
//! that makes any of those inputs panic or misbehave fails `cargo test` on the stable toolchain,
//! without cargo-fuzz or a sanitizer. A crash found by fuzzing gets its own test here, naming its
//! input.

use std::path::{Path, PathBuf};

use oauth2_exporter::config::{Overrides, TokenConfig, load_str};
use oauth2_exporter::token::parse_response;

/// Longest error text the token_response target accepts (server text is cut to 200 characters).
const MAX_ERROR_CHARS: usize = 300;

/// The reasons a token endpoint's answer alone can be classified as (issue 22: the check was
/// `TokenReason::ALL.contains`, which no value of the type can fail). Pinned here, not taken
/// from the code under test: `timeout`, `claims` or `secret_unavailable` out of the parser
/// would be a bug.
const PARSER_REASONS: [&str; 11] = [
    "invalid_client",
    "invalid_grant",
    "invalid_scope",
    "invalid_request",
    "unauthorized_client",
    "unsupported_grant_type",
    "oauth_error",
    "rate_limited",
    "http_4xx",
    "http_5xx",
    "invalid_response",
];

/// The token reasons docs/metrics.md documents (the backquoted names of its `| token | ... |`
/// rows): a label value people read must be explained there.
fn documented_token_reasons() -> Vec<String> {
    let docs = include_str!("../../docs/metrics.md");
    docs.lines()
        .filter_map(|line| line.strip_prefix("| token | "))
        .filter_map(|rest| rest.split(" | ").next())
        .flat_map(|names| names.split('`').skip(1).step_by(2).map(str::to_string))
        .collect()
}

#[test]
fn every_reason_the_parser_gives_is_documented() {
    let documented = documented_token_reasons();
    assert!(documented.len() >= 19, "{documented:?}");
    for reason in PARSER_REASONS {
        assert!(
            documented.iter().any(|d| d == reason),
            "{reason} is not in docs/metrics.md: {documented:?}"
        );
    }
}

/// The files of `fuzz/corpus/<target>`, sorted so that a failure names the same input each run.
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

/// The three response-field layouts of the token_response target, built as the daemon builds them.
fn token_configs() -> Vec<TokenConfig> {
    [
        "",
        "[providers.p.token.response]\naccess_token = \"accessToken\"\n",
        "[providers.p.token.response]\naccess_token = \"/data/token\"\nexpires_in = \"/data/ttl\"\n",
    ]
    .iter()
    .map(|response| {
        let toml = format!(
            "[providers.p.token]\nurl = \"http://127.0.0.1:1/token\"\nclient_id = \"fuzz\"\nclient_secret = \"fuzz-secret\"\n{response}"
        );
        load_str(&toml, &Overrides::default()).unwrap().providers[0]
            .token
            .clone()
    })
    .collect()
}

/// What the token_response target checks for one input (two status bytes, then the body).
fn check_token_input(name: &str, data: &[u8], configs: &[TokenConfig]) {
    let [high, low, body @ ..] = data else {
        return;
    };
    let status = 100 + u16::from_be_bytes([*high, *low]) % 500;
    for config in configs {
        match parse_response(status, body, config) {
            Ok(token) => {
                assert!(
                    (200..300).contains(&status),
                    "{name}: accepted with {status}"
                );
                assert!(
                    !token.access_token.expose().is_empty(),
                    "{name}: empty token"
                );
            }
            Err(error) => {
                assert!(
                    PARSER_REASONS.contains(&error.reason().as_str()),
                    "{name}: {} is not a reason an answer can be classified as",
                    error.reason()
                );
                let text = error.to_string();
                assert!(!text.contains(['\n', '\r']), "{name}: multi-line {text:?}");
                assert!(
                    text.chars().count() <= MAX_ERROR_CHARS,
                    "{name}: long error {text:?}"
                );
            }
        }
    }
}

/// The provider name rule as docs/configuration.md states it, `[A-Za-z0-9_.-]{1,64}`: pinned
/// here rather than re-applying the loader's own `is_valid_provider_name`, which would agree with
/// whatever the loader accepted.
fn documented_provider_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// What the config_loader target checks for one input.
fn check_config_input(name: &str, data: &[u8]) {
    let Ok(toml) = std::str::from_utf8(data) else {
        return;
    };
    match load_str(toml, &Overrides::default()) {
        Ok(config) => {
            let names: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
            assert!(names.is_sorted(), "{name}: providers not sorted: {names:?}");
            for provider in &config.providers {
                assert!(
                    documented_provider_name(&provider.name),
                    "{name}: provider name {:?}",
                    provider.name
                );
                assert!(
                    !provider.interval.is_zero() && !provider.timeout.is_zero(),
                    "{name}"
                );
                assert!(!provider.token.client_id.is_empty(), "{name}");
                assert!(
                    matches!(
                        provider.token.endpoint.configured().scheme(),
                        "http" | "https"
                    ),
                    "{name}"
                );
            }
        }
        Err(error) => assert!(!error.problems.is_empty(), "{name}: error without problems"),
    }
}

#[test]
fn token_response_corpus_replays_cleanly() {
    let files = corpus("token_response");
    // The hand-written seeds are part of the corpus: their absence means the corpus is gone.
    for seed in [
        "azure_v2_ok",
        "cube_ok",
        "nextome_ok",
        "expires_1e300",
        "jwt_five_parts",
    ] {
        assert!(
            files.iter().any(|f| f.ends_with(seed)),
            "seed {seed} missing"
        );
    }
    let configs = token_configs();
    for file in &files {
        check_token_input(
            &file.display().to_string(),
            &std::fs::read(file).unwrap(),
            &configs,
        );
    }
}

#[test]
fn config_loader_corpus_replays_cleanly() {
    let files = corpus("config_loader");
    for seed in ["exporter_uncommented.toml", "all_keys_inline.toml"] {
        assert!(
            files.iter().any(|f| f.ends_with(seed)),
            "seed {seed} missing"
        );
    }
    for file in &files {
        check_config_input(&file.display().to_string(), &std::fs::read(file).unwrap());
    }
}
