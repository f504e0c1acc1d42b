//! Fuzz target `token_response` (issue #4): whatever status and body a hostile identity provider
//! sends, `token::parse_response` classifies it without panicking, under the default response
//! fields, a renamed top-level key (Nextome's `accessToken`, lifetime from the JWT) and JSON
//! pointers.
//!
//! Input layout: the first two bytes (big-endian) pick the status, folded into 100..=599 so that
//! every class (1xx, 2xx, 3xx, 429, 4xx, 5xx) is reachable; the rest is the body.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use oauth2_exporter::config::{Overrides, TokenConfig, load_str};
use oauth2_exporter::token::parse_response;

/// Longest error text accepted: the server-supplied part is cut to 200 characters (plus an
/// ellipsis) before it reaches the log; the fixed wording around it is short.
const MAX_ERROR_CHARS: usize = 300;

/// The token reasons docs/metrics.md documents (the backquoted names of its `| token | ... |`
/// rows): a reason is a label value, and a label value people read must be explained there.
/// (Issue 22: the check was `TokenReason::ALL.contains`, which no value of the type can fail.)
static DOCUMENTED_REASONS: LazyLock<Vec<String>> = LazyLock::new(|| {
    include_str!("../../docs/metrics.md")
        .lines()
        .filter_map(|line| line.strip_prefix("| token | "))
        .filter_map(|rest| rest.split(" | ").next())
        .flat_map(|names| names.split('`').skip(1).step_by(2).map(str::to_string))
        .collect()
});

/// What an answer alone can be classified as: `timeout`, `claims` or `secret_unavailable` out
/// of the parser would be a bug.
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

/// The token configurations, built once through the real loader (so they are exactly what the
/// daemon would run with).
static CONFIGS: LazyLock<Vec<TokenConfig>> = LazyLock::new(|| {
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
        // The fixed configurations are valid; failing here is a harness bug, not a finding.
        let config = load_str(&toml, &Overrides::default()).expect("harness configuration");
        config.providers[0].token.clone()
    })
    .collect()
});

fuzz_target!(|data: &[u8]| {
    let [high, low, body @ ..] = data else {
        return;
    };
    let status = 100 + u16::from_be_bytes([*high, *low]) % 500;
    for config in CONFIGS.iter() {
        match parse_response(status, body, config) {
            Ok(token) => {
                // Only a 2xx answer carrying a non-empty token is a success.
                assert!((200..300).contains(&status), "token accepted with {status}");
                assert!(
                    !token.access_token.expose().is_empty(),
                    "empty token accepted"
                );
            }
            Err(error) => {
                // The reason is a label value: one an answer can cause, and documented.
                let reason = error.reason().as_str();
                assert!(PARSER_REASONS.contains(&reason), "{reason} from the parser");
                assert!(
                    DOCUMENTED_REASONS.iter().any(|d| d == reason),
                    "{reason} is not in docs/metrics.md"
                );
                // The error text goes to the log: one line, bounded, whatever the body.
                let text = error.to_string();
                assert!(!text.contains(['\n', '\r']), "multi-line error: {text:?}");
                let chars = text.chars().count();
                assert!(chars <= MAX_ERROR_CHARS, "error of {chars} chars: {text:?}");
            }
        }
    }
});
