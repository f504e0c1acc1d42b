//! Issue 12 section 2 against fake issuers that assert on what they received: the RFC 8414
//! fallback when `/.well-known/openid-configuration` is 404, the checks of the metadata (issuer
//! equality, listed auth methods and grants) with details that say what is wrong, reason
//! `discovery` while no usable metadata is known, the last good endpoint kept through a failed
//! refresh, and the debug trace's account of it. (The real authorization server's discovery is
//! tested in `tests/it/peer_discovery.rs`.)

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use support::{Daemon, FakeServer, Provider, Reply, WAIT, sample};

/// A discovery-based provider with a short interval, straight to the fakes (no proxy).
fn provider(name: &str, issuer: &str) -> Provider {
    Provider::issuer(name, issuer)
        .interval("200ms")
        .timeout("2s")
        .setting("proxy_url", r#""none""#)
        .client(&format!("{name}-client"), &format!("{name}-secret"))
}

/// The body of `/probe?provider=NAME&debug=true`.
async fn debug_trace(daemon: &Daemon, name: &str) -> String {
    support::get_text(&daemon.url(&format!("/probe?provider={name}&debug=true"))).await
}

/// RFC 8414 section 3.1: with no OpenID document (404), the metadata is looked for at
/// `/.well-known/oauth-authorization-server` inserted before the issuer's path, and its
/// `token_endpoint` (here on another path than any guess) receives the token requests.
#[tokio::test]
async fn rfc8414_metadata_is_used_when_openid_configuration_is_404() {
    let server = FakeServer::start_with_base(move |base, request| {
        match request.path.as_str() {
            "/.well-known/oauth-authorization-server/tenant/v2" => Reply::json(
                200,
                json!({
                    "issuer": format!("{base}/tenant/v2"),
                    "token_endpoint": format!("{base}/elsewhere/oauth2/token"),
                    "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                    "grant_types_supported": ["client_credentials"],
                }),
            ),
            "/elsewhere/oauth2/token" => Reply::token("discovered-token", 3600),
            _ => Reply::status(404),
        }
    })
    .await;
    let daemon = Daemon::start(
        &provider("rfc8414", &server.url("/tenant/v2"))
            .token_key("discovery_refresh", r#""1h""#)
            .toml(),
    )
    .await;
    daemon
        .wait_for_sample(r#"oauth2_probe_success{provider="rfc8414"}"#, 1.0, WAIT)
        .await;
    let tokens = server
        .wait_for_requests("/elsewhere/oauth2/token", 2, WAIT)
        .await;
    assert_eq!(tokens[0].method, "POST");
    assert_eq!(tokens[0].form_map()["client_id"], "rfc8414-client");
    // The OpenID document first, then RFC 8414's; once, then cached (refresh is 1h).
    let paths: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.path.contains(".well-known"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        paths,
        [
            "GET /tenant/v2/.well-known/openid-configuration",
            "GET /.well-known/oauth-authorization-server/tenant/v2",
        ]
    );
    // The trace says where the endpoint came from and which proxy was used.
    let trace = debug_trace(&daemon, "rfc8414").await;
    assert!(trace.contains("== discovery"), "{trace}");
    assert!(
        trace.contains(&format!(
            "token endpoint {} from the metadata fetched",
            server.url("/elsewhere/oauth2/token")
        )),
        "{trace}"
    );
    assert!(
        trace.contains("proxy: none (proxy_url = \"none\")"),
        "{trace}"
    );
    assert!(
        trace.contains(&format!(
            "-> POST {}",
            server.url("/elsewhere/oauth2/token")
        )),
        "{trace}"
    );
    daemon.stop().await;
}

/// Metadata that fails its checks is no metadata: every cycle fails in the token phase with
/// reason `discovery`, no token request is sent, and the detail says what is wrong.
#[tokio::test]
async fn unusable_metadata_fails_with_reason_discovery_and_says_why() {
    let server = FakeServer::start_with_base(move |base, request| {
        let metadata = |issuer: String, extra: serde_json::Value| {
            let mut doc = json!({
                "issuer": issuer,
                "token_endpoint": format!("{base}/token"),
            });
            if let (Some(doc), Some(extra)) = (doc.as_object_mut(), extra.as_object()) {
                doc.extend(extra.clone());
            }
            Reply::json(200, doc)
        };
        match request.path.as_str() {
            "/method/.well-known/openid-configuration" => metadata(
                format!("{base}/method"),
                json!({"token_endpoint_auth_methods_supported": ["private_key_jwt", "tls_client_auth"]}),
            ),
            "/grant/.well-known/openid-configuration" => metadata(
                format!("{base}/grant"),
                json!({"grant_types_supported": ["authorization_code", "refresh_token"]}),
            ),
            // Mix-up protection: a document naming another issuer.
            "/mixup/.well-known/openid-configuration" => {
                metadata(format!("{base}/mixup/"), json!({}))
            }
            "/down/.well-known/openid-configuration" => Reply::status(503),
            "/token" => Reply::token("never-requested", 3600),
            _ => Reply::status(404),
        }
    })
    .await;
    let names = ["method", "grant", "mixup", "down", "missing"];
    let toml: String = names
        .iter()
        .map(|name| provider(name, &server.url(&format!("/{name}"))).toml())
        .collect();
    let daemon = Daemon::start(&toml).await;
    daemon
        .wait_for(
            |m| {
                names.iter().all(|name| {
                    sample(
                        m,
                        &format!(
                            r#"oauth2_token_request_failures_total{{provider="{name}",reason="discovery"}}"#
                        ),
                    )
                    .is_some_and(|v| v >= 2.0)
                })
            },
            WAIT,
        )
        .await;
    assert_eq!(
        server.count("/token"),
        0,
        "no token request without metadata"
    );

    let expected = [
        (
            "method",
            "discovery: the issuer does not support auth_method client_secret_post: its token_endpoint_auth_methods_supported lists [private_key_jwt, tls_client_auth]".to_string(),
        ),
        (
            "grant",
            "discovery: the issuer does not support grant_type client_credentials: its grant_types_supported lists [authorization_code, refresh_token]".to_string(),
        ),
        (
            "mixup",
            format!(
                "discovery: the metadata's issuer \"{0}/mixup/\" is not the configured issuer \"{0}/mixup\"; they must be equal, character for character (RFC 8414 section 3.3, mix-up protection)",
                server.url("")
            ),
        ),
        (
            "down",
            format!(
                "discovery: {} answered HTTP 503",
                server.url("/down/.well-known/openid-configuration")
            ),
        ),
        (
            "missing",
            format!(
                "discovery: {} answered HTTP 404 (neither metadata document exists)",
                server.url("/.well-known/oauth-authorization-server/missing")
            ),
        ),
    ];
    for (name, detail) in expected {
        let trace = debug_trace(&daemon, name).await;
        assert!(
            trace.contains(&format!("result: failed, reason discovery: {detail}")),
            "{name}: expected the detail {detail:?} in:\n{trace}"
        );
        // No token request section: there was nothing to send it to.
        assert!(!trace.contains("== token request"), "{name}:\n{trace}");
    }
    daemon.stop().await;
}

/// After a first success, a failing refresh keeps the last good token endpoint: token
/// requests go on, probes keep succeeding, and each cycle retries discovery.
#[tokio::test]
async fn a_failed_refresh_keeps_the_last_good_endpoint() {
    let down = Arc::new(AtomicBool::new(false));
    let server = {
        let down = Arc::clone(&down);
        FakeServer::start_with_base(move |base, request| match request.path.as_str() {
            "/.well-known/openid-configuration" if down.load(Ordering::SeqCst) => {
                Reply::status(503)
            }
            "/.well-known/openid-configuration" => Reply::json(
                200,
                json!({"issuer": base, "token_endpoint": format!("{base}/connect/token")}),
            ),
            "/connect/token" => Reply::token("kept-token", 3600),
            _ => Reply::status(404),
        })
        .await
    };
    let daemon = Daemon::start(
        &provider("kept", &server.url(""))
            .token_key("discovery_refresh", r#""100ms""#)
            .toml(),
    )
    .await;
    server.wait_for_requests("/connect/token", 1, WAIT).await;
    down.store(true, Ordering::SeqCst);
    let discoveries = server.count("/.well-known/openid-configuration");
    let tokens = server.count("/connect/token");
    // Three more token requests while discovery answers 503 to every refresh.
    server
        .wait_for_requests("/connect/token", tokens + 3, WAIT)
        .await;
    assert!(
        server.count("/.well-known/openid-configuration") >= discoveries + 2,
        "each cycle retries the refresh"
    );
    let metrics = daemon
        .wait_for_sample(r#"oauth2_probe_success{provider="kept"}"#, 1.0, WAIT)
        .await;
    // A failed refresh with a last good endpoint is a warning, not a failure.
    assert_eq!(
        sample(
            &metrics,
            r#"oauth2_token_request_failures_total{provider="kept",reason="discovery"}"#
        )
        .unwrap_or(0.0),
        0.0
    );
    let trace = debug_trace(&daemon, "kept").await;
    assert!(
        trace.contains(&format!(
            "refresh failed; keeping the last good token endpoint {}",
            server.url("/connect/token")
        )),
        "{trace}"
    );
    daemon.stop().await;
}

/// Discovery waits for a request slot like every request and obeys the provider's timeout: an
/// issuer that never answers fails within it.
#[tokio::test]
async fn a_silent_issuer_fails_within_the_timeout() {
    let server =
        FakeServer::start(|_| Reply::delayed(Duration::from_secs(30), Reply::status(200))).await;
    let daemon = Daemon::start(
        &provider("silent", &server.url(""))
            .toml()
            .replace("timeout = \"2s\"", "timeout = \"300ms\""),
    )
    .await;
    let started = std::time::Instant::now();
    let trace = debug_trace(&daemon, "silent").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        trace.contains(&format!(
            "result: failed, reason discovery: discovery: fetching {} failed: timed out",
            server.url("/.well-known/openid-configuration")
        )),
        "{trace}"
    );
    daemon.stop().await;
}

/// Issue 25: `auth_method = "client_assertion"` travels as `private_key_jwt` does, and is
/// checked against `token_endpoint_auth_methods_supported` under that name: metadata listing
/// only `private_key_jwt` lets it through to its own step (here reason `client_assertion`, its
/// file not written yet), metadata without it is reason `discovery` naming the method.
#[tokio::test]
async fn client_assertion_is_checked_as_private_key_jwt_against_the_metadata() {
    let server = FakeServer::start_with_base(move |base, request| {
        let methods = match request.path.as_str() {
            "/listed/.well-known/openid-configuration" => json!(["private_key_jwt"]),
            "/unlisted/.well-known/openid-configuration" => json!(["client_secret_basic"]),
            _ => return Reply::status(404),
        };
        let issuer = request
            .path
            .trim_end_matches("/.well-known/openid-configuration");
        Reply::json(
            200,
            json!({
                "issuer": format!("{base}{issuer}"),
                "token_endpoint": format!("{base}/token"),
                "token_endpoint_auth_methods_supported": methods,
            }),
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let unwritten = dir.path().join("not-yet-written");
    let toml: String = ["listed", "unlisted"]
        .iter()
        .map(|name| {
            Provider::issuer(name, &server.url(&format!("/{name}")))
                .keyless("federated", "client_assertion")
                .token_file("client_assertion_file", &unwritten)
                .interval("200ms")
                .toml()
        })
        .collect();
    let daemon = Daemon::start(&toml).await;
    let failures = |name: &str, reason: &str| {
        format!(r#"oauth2_token_request_failures_total{{provider="{name}",reason="{reason}"}}"#)
    };
    let metrics = daemon
        .wait_for(
            |m| {
                sample(m, &failures("listed", "client_assertion")).is_some_and(|v| v >= 2.0)
                    && sample(m, &failures("unlisted", "discovery")).is_some_and(|v| v >= 2.0)
            },
            WAIT,
        )
        .await;
    assert_eq!(
        sample(&metrics, &failures("listed", "discovery")).unwrap_or(0.0),
        0.0,
        "private_key_jwt in the metadata lets client_assertion through"
    );
    let trace = support::get_text(&daemon.url("/probe?provider=unlisted&debug=true")).await;
    assert!(
        trace.contains("discovery: the issuer does not support auth_method client_assertion: its token_endpoint_auth_methods_supported lists [client_secret_basic]"),
        "{trace}"
    );
    daemon.stop().await;
}
