//! Issue 12 section 4 against fakes that assert on the exact request: a `params` list sends its
//! key once per value, in order (RFC 8707 `resource`), or a JSON array in `json_body`; a canary
//! `secret_headers` value arrives as written in its source, is re-read on every call (rotation
//! without restart), and the debug trace names the header with its value redacted.

use crate::support;

use pretty_assertions::assert_eq;
use serde_json::json;
use support::{Daemon, FakeServer, Provider, Reply, WAIT};

#[tokio::test]
async fn a_params_list_sends_the_key_once_per_value() {
    let idp = FakeServer::start(|r| match r.path.as_str() {
        "/form" => Reply::token("form-token", 3600),
        "/json" => Reply::json(
            200,
            json!({"accessToken": "json-token", "expires_in": 3600}),
        ),
        _ => Reply::status(404),
    })
    .await;
    let params = r#"{ resource = ["https://a.example", "https://b.example"], audience = "one" }"#;
    let daemon = Daemon::start(&support::config::providers(&[
        Provider::new("form", &idp.url("/form"))
            .client("form-client", "form-secret")
            .token_key("params", params),
        Provider::new("json", &idp.url("/json"))
            .client("json-client", "json-secret")
            .token_key("auth_method", r#""json_body""#)
            .token_key("response", r#"{ access_token = "accessToken" }"#)
            .token_key("params", params),
    ]))
    .await;
    let form = idp.wait_for_requests("/form", 1, WAIT).await[0].form();
    assert_eq!(
        form,
        [
            ("grant_type", "client_credentials"),
            ("client_id", "form-client"),
            ("client_secret", "form-secret"),
            ("audience", "one"),
            ("resource", "https://a.example"),
            ("resource", "https://b.example"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    let body = idp.wait_for_requests("/json", 1, WAIT).await[0].json();
    assert_eq!(
        body,
        json!({
            "client_id": "json-client",
            "client_secret": "json-secret",
            "audience": "one",
            "resource": ["https://a.example", "https://b.example"],
        })
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_secret_header_arrives_is_reread_and_is_redacted_in_the_trace() {
    const FIRST: &str = "apim-key-first-7f3a9";
    const SECOND: &str = "apim-key-rotated-c41e2";
    let fake = FakeServer::start(|r| match r.path.as_str() {
        "/token" => Reply::token("apim-token", 3600),
        // Azure API Management: 401 without the subscription key.
        "/api" if r.header("ocp-apim-subscription-key").is_some() => Reply::status(200),
        "/api" => Reply::status(401),
        _ => Reply::status(404),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("apim.key");
    std::fs::write(&key_file, format!("{FIRST}\n")).unwrap();
    let daemon = Daemon::start(
        &Provider::new("okq8", &fake.url("/token"))
            .interval("200ms")
            .client("okq8-client", "okq8-secret")
            .canary(&fake.url("/api"))
            .canary_key("headers", r#"{ Accept = "application/json" }"#)
            .canary_key(
                "secret_headers",
                &format!(
                    r#"{{ "Ocp-Apim-Subscription-Key" = {{ file = '{}' }} }}"#,
                    key_file.display()
                ),
            )
            .toml(),
    )
    .await;
    let first = fake.wait_for_requests("/api", 1, WAIT).await;
    assert_eq!(first[0].header("ocp-apim-subscription-key"), Some(FIRST));
    assert_eq!(first[0].header("accept"), Some("application/json"));
    daemon
        .wait_for_sample(r#"oauth2_probe_success{provider="okq8"}"#, 1.0, WAIT)
        .await;

    // Rotated in place: the next calls carry the new key, without a restart.
    std::fs::write(&key_file, SECOND).unwrap();
    let seen = fake.count("/api");
    let later = fake.wait_for_requests("/api", seen + 2, WAIT).await;
    assert_eq!(
        later.last().unwrap().header("ocp-apim-subscription-key"),
        Some(SECOND)
    );

    let trace = support::get_text(&daemon.url("/probe?provider=okq8&debug=true")).await;
    assert!(
        trace.contains("ocp-apim-subscription-key: [redacted] (secret_headers)"),
        "{trace}"
    );
    assert!(!trace.contains(FIRST) && !trace.contains(SECOND), "{trace}");

    // A key that cannot be read is the canary's `secret_unavailable`; nothing is sent.
    std::fs::remove_file(&key_file).unwrap();
    let metrics = daemon
        .wait_for(
            |m| {
                support::sample(
                    m,
                    r#"oauth2_canary_request_failures_total{provider="okq8",reason="secret_unavailable"}"#,
                )
                .is_some_and(|v| v >= 1.0)
            },
            WAIT,
        )
        .await;
    assert!(!metrics.contains(SECOND));
    daemon.stop().await;
}
