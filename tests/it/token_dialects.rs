//! Issue #2 ("Tests": one test per provider style): the token request of each provider dialect as
//! the fake identity provider received it (method, content type, every field and nothing more,
//! the Basic header, the JSON body), plus the canary request, redirects and secret rotation.

use crate::support;

use std::collections::BTreeMap;

use pretty_assertions::assert_eq;
use serde_json::json;
use support::{Daemon, FakeServer, Provider, Recorded, Reply, WAIT, jwt, sample, unix_now};

/// A map of expected form fields, for a whole-body comparison.
fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What every token request has in common: a POST with no query string and this media type.
fn assert_token_post(request: &Recorded, content_type: &str) {
    assert_eq!(request.method, "POST", "{request:?}");
    assert_eq!(request.query, None, "{request:?}");
    assert_eq!(
        request.content_type().as_deref(),
        Some(content_type),
        "{request:?}"
    );
}

/// A fake that issues `token` for `ttl` seconds at `path` and answers 200 everywhere else.
async fn token_fake(path: &'static str, token: &'static str, ttl: u64) -> FakeServer {
    FakeServer::start(move |r| {
        if r.path == path {
            Reply::token(token, ttl)
        } else {
            Reply::status(200)
        }
    })
    .await
}

/// Waits until `provider`'s cycle succeeds and returns the metrics page it was seen on.
async fn succeeded(daemon: &Daemon, provider: &str) -> String {
    daemon
        .wait_for_sample(
            &format!(r#"oauth2_probe_success{{provider="{provider}"}}"#),
            1.0,
            WAIT,
        )
        .await
}

/// `oauth2_token_lifetime_seconds` of `provider` on a metrics page.
fn lifetime(metrics: &str, provider: &str) -> Option<f64> {
    sample(
        metrics,
        &format!(r#"oauth2_token_lifetime_seconds{{provider="{provider}"}}"#),
    )
}

/// Starts a daemon, waits for its first token request to `path` and returns both.
async fn first_request(idp: &FakeServer, path: &str, toml: &str) -> (Daemon, Recorded) {
    let daemon = Daemon::start(toml).await;
    let requests = idp.wait_for_requests(path, 1, WAIT).await;
    (daemon, requests[0].clone())
}

/// EqHub (Collabor8): form body with `client_id` and `client_secret` (client_secret_post, the
/// default), no scope, no Authorization header.
#[tokio::test]
async fn eqhub_form_client_secret_post() {
    let idp = FakeServer::start(|r| match r.path.as_str() {
        "/eqhub-m2m/eqhub-api/v1/token" => Reply::token("eqhub-token", 3600),
        _ => Reply::json(200, json!({"tekNo": 1})),
    })
    .await;
    let (daemon, request) = first_request(
        &idp,
        "/eqhub-m2m/eqhub-api/v1/token",
        &Provider::new("eqhub", &idp.url("/eqhub-m2m/eqhub-api/v1/token"))
            .client("eqhub-client", "eqhub-secret")
            .canary(&idp.url("/eqhub-m2m/eqhub-api/v1/legacy/Teknos/42"))
            .toml(),
    )
    .await;

    assert_token_post(&request, "application/x-www-form-urlencoded");
    assert_eq!(
        request.form_map(),
        fields(&[
            ("grant_type", "client_credentials"),
            ("client_id", "eqhub-client"),
            ("client_secret", "eqhub-secret"),
        ])
    );
    assert_eq!(request.header("authorization"), None);
    succeeded(&daemon, "eqhub").await;
    daemon.stop().await;
}

/// OKQ8 (Azure AD v2): `scope` is the configured `scopes` joined by one space, form-encoded on the
/// wire (`api%3A%2F%2F...`); the `expires_in: 3599` of the answer becomes the lifetime.
#[tokio::test]
async fn okq8_azure_ad_v2_scope_is_space_joined() {
    let path = "/a53d724c-15ea-4469-a987-82a5b30ec167/oauth2/v2.0/token";
    let idp = FakeServer::start(move |r| {
        if r.path == path {
            Reply::json(
                200,
                json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                       "access_token": "okq8-token"}),
            )
        } else {
            Reply::status(200)
        }
    })
    .await;
    let (daemon, request) = first_request(
        &idp,
        path,
        &Provider::new("okq8", &idp.url(path))
            .client("xxxxxxxx-xxxx-xxxx-xxxxxx-xxxxxxxxxx", "okq8-secret")
            .token_key("grant_type", r#""client_credentials""#)
            .token_key(
                "scopes",
                r#"["api://apim-xxxxx-xxxxx-api/.default", "api://second/.default"]"#,
            )
            .toml(),
    )
    .await;

    assert_token_post(&request, "application/x-www-form-urlencoded");
    assert_eq!(
        request.form_map(),
        fields(&[
            ("grant_type", "client_credentials"),
            ("client_id", "xxxxxxxx-xxxx-xxxx-xxxxxx-xxxxxxxxxx"),
            ("client_secret", "okq8-secret"),
            (
                "scope",
                "api://apim-xxxxx-xxxxx-api/.default api://second/.default"
            ),
        ])
    );
    assert!(
        request.body_text().contains(
            "scope=api%3A%2F%2Fapim-xxxxx-xxxxx-api%2F.default+api%3A%2F%2Fsecond%2F.default"
        ),
        "scope not form-encoded: {}",
        request.body_text()
    );
    let metrics = succeeded(&daemon, "okq8").await;
    assert_eq!(lifetime(&metrics, "okq8"), Some(3599.0));
    daemon.stop().await;
}

/// Cube: `scope=profile` plus the extra `params` (`resource`, `acr_values`) sent as-is.
#[tokio::test]
async fn cube_extra_params_and_profile_scope() {
    let idp = token_fake("/connect/token", "cube-token", 86400).await;
    let (daemon, request) = first_request(
        &idp,
        "/connect/token",
        &Provider::new("cube", &idp.url("/connect/token"))
            .client("cube-client", "cube-secret")
            .token_key("scopes", r#"["profile"]"#)
            .token_key(
                "params",
                r#"{ resource = "connectapi", acr_values = "tenant:acme" }"#,
            )
            .toml(),
    )
    .await;

    assert_token_post(&request, "application/x-www-form-urlencoded");
    assert_eq!(
        request.form_map(),
        fields(&[
            ("grant_type", "client_credentials"),
            ("client_id", "cube-client"),
            ("client_secret", "cube-secret"),
            ("scope", "profile"),
            ("resource", "connectapi"),
            ("acr_values", "tenant:acme"),
        ])
    );
    let metrics = succeeded(&daemon, "cube").await;
    assert_eq!(lifetime(&metrics, "cube"), Some(86400.0));
    daemon.stop().await;
}

/// Nextome: one JSON object with the credentials under the `json_fields` names; the token comes
/// back as `accessToken` without an expiry field, so the lifetime is the JWT's `exp - iat`.
#[tokio::test]
async fn nextome_json_body_access_token_field_and_jwt_expiry() {
    let iat = unix_now().floor() as u64;
    let token = jwt(&json!({"sub": "app", "iat": iat, "exp": iat + 3600}));
    let issued = token.clone();
    let idp = FakeServer::start(move |r| match r.path.as_str() {
        "/apps/auth" => Reply::json(200, json!({"accessToken": issued})),
        _ => Reply::status(200),
    })
    .await;
    let (daemon, request) = first_request(
        &idp,
        "/apps/auth",
        &Provider::new("nextome", &idp.url("/apps/auth"))
            .client("97sv0tntua35arne6uo30614r9", "nextome-secret")
            .token_key("auth_method", r#""json_body""#)
            .token_key(
                "json_fields",
                r#"{ client_id = "clientId", client_secret = "clientSecret" }"#,
            )
            .canary(&idp.url("/api/venues"))
            .raw("[providers.nextome.token.response]\naccess_token = \"accessToken\"")
            .toml(),
    )
    .await;

    assert_token_post(&request, "application/json");
    assert_eq!(
        request.json(),
        json!({"clientId": "97sv0tntua35arne6uo30614r9", "clientSecret": "nextome-secret"})
    );
    assert_eq!(request.header("authorization"), None);

    let metrics = succeeded(&daemon, "nextome").await;
    assert_eq!(lifetime(&metrics, "nextome"), Some(3600.0));
    assert_eq!(
        sample(
            &metrics,
            r#"oauth2_token_expiry_timestamp_seconds{provider="nextome"}"#
        ),
        Some((iat + 3600) as f64)
    );
    let canary = idp.wait_for_requests("/api/venues", 1, WAIT).await;
    assert_eq!(canary[0].bearer(), Some(token.as_str()));
    daemon.stop().await;
}

/// Everactive, client credentials with client_secret_basic: id and secret only in the Basic
/// header, each urlencoded with percent escapes only before base64 (RFC 6749 2.3.1; a space as %20, issue 11); the body carries no credential.
#[tokio::test]
async fn everactive_client_credentials_with_client_secret_basic() {
    let idp = token_fake("/auth/token", "everactive-token", 3600).await;
    let (daemon, request) = first_request(
        &idp,
        "/auth/token",
        &Provider::new("everactive", &idp.url("/auth/token"))
            .client("everactive id:1", "p@ss w/rd&x=y:z%é")
            .token_key("auth_method", r#""client_secret_basic""#)
            .toml(),
    )
    .await;

    assert_token_post(&request, "application/x-www-form-urlencoded");
    assert_eq!(
        request.form_map(),
        fields(&[("grant_type", "client_credentials")])
    );
    assert_eq!(
        request.basic_credentials(),
        Some((
            "everactive id:1".to_string(),
            "p@ss w/rd&x=y:z%é".to_string()
        ))
    );
    // The colon inside the id must be encoded, or a server would split the pair in the wrong place.
    assert_eq!(
        request.basic_raw().as_deref(),
        Some("everactive%20id%3A1:p%40ss%20w%2Frd%26x%3Dy%3Az%25%C3%A9")
    );
    succeeded(&daemon, "everactive").await;
    daemon.stop().await;
}

/// Everactive, password grant: `grant_type=password` with `username` and `password` in the form,
/// with the client credentials in the body (post) or in the Basic header (basic).
#[tokio::test]
async fn everactive_password_grant() {
    let idp = FakeServer::start(|r| match r.path.as_str() {
        "/post/token" | "/basic/token" => Reply::token("everactive-user-token", 3600),
        _ => Reply::status(200),
    })
    .await;
    let password_grant = |name: &str, path: &str| {
        Provider::new(name, &idp.url(path))
            .client("insights", "client-secret")
            .token_key("grant_type", r#""password""#)
            .token_key("username", r#""ops@example.com""#)
            .token_key("password", r#""pa ss&word=1""#)
    };
    let daemon = Daemon::start(&support::config::providers(&[
        password_grant("everactive-post", "/post/token"),
        password_grant("everactive-basic", "/basic/token")
            .token_key("auth_method", r#""client_secret_basic""#),
    ]))
    .await;
    let post = idp.wait_for_requests("/post/token", 1, WAIT).await;
    let basic = idp.wait_for_requests("/basic/token", 1, WAIT).await;

    assert_token_post(&post[0], "application/x-www-form-urlencoded");
    assert_eq!(
        post[0].form_map(),
        fields(&[
            ("grant_type", "password"),
            ("client_id", "insights"),
            ("client_secret", "client-secret"),
            ("username", "ops@example.com"),
            ("password", "pa ss&word=1"),
        ])
    );
    assert_eq!(post[0].header("authorization"), None);

    assert_token_post(&basic[0], "application/x-www-form-urlencoded");
    assert_eq!(
        basic[0].form_map(),
        fields(&[
            ("grant_type", "password"),
            ("username", "ops@example.com"),
            ("password", "pa ss&word=1"),
        ])
    );
    assert_eq!(
        basic[0].basic_credentials(),
        Some(("insights".to_string(), "client-secret".to_string()))
    );
    for provider in ["everactive-post", "everactive-basic"] {
        succeeded(&daemon, provider).await;
    }
    daemon.stop().await;
}

/// The canary is sent with the configured method and headers and `Authorization: Bearer <the token
/// just issued>`; each cycle's fresh token is the one presented.
#[tokio::test]
async fn canary_carries_the_issued_bearer_token_method_and_headers() {
    let issued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&issued);
    let idp = FakeServer::start(move |r| match r.path.as_str() {
        "/token" => {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            Reply::token(&format!("token-{n}"), 3600)
        }
        _ => Reply::json(201, json!({"ok": true})),
    })
    .await;
    let daemon = Daemon::start(
        &Provider::new("api", &idp.url("/token"))
            .interval("200ms")
            .canary(&idp.url("/v1/ping?probe=1"))
            .canary_key("method", r#""POST""#)
            .canary_key("expected_status", "[201]")
            .canary_key(
                "headers",
                r#"{ Accept = "application/json", X-Tenant = "acme" }"#,
            )
            .toml(),
    )
    .await;
    let canaries = idp.wait_for_requests("/v1/ping", 2, WAIT).await;

    for (i, canary) in canaries.iter().take(2).enumerate() {
        assert_eq!(canary.method, "POST");
        assert_eq!(canary.query.as_deref(), Some("probe=1"));
        assert_eq!(canary.bearer(), Some(format!("token-{}", i + 1).as_str()));
        assert_eq!(canary.header_all("authorization").len(), 1);
        assert_eq!(canary.header("accept"), Some("application/json"));
        assert_eq!(canary.header("x-tenant"), Some("acme"));
    }
    succeeded(&daemon, "api").await;
    daemon.stop().await;
}

/// Redirects are not followed, from the token endpoint (credentials would be re-sent to wherever
/// it points) or from the canary: the redirect target receives nothing.
#[tokio::test]
async fn redirects_are_not_followed() {
    let target = FakeServer::start(|_| Reply::token("stolen", 3600)).await;
    let token_target = target.url("/token");
    let canary_target = target.url("/api");
    let redirector = FakeServer::start(move |r| match r.path.as_str() {
        "/redirecting-token" => Reply::raw(307, &[("location", &token_target)], ""),
        "/token" => Reply::token("t", 3600),
        _ => Reply::raw(302, &[("location", &canary_target)], ""),
    })
    .await;
    let daemon = Daemon::start(&support::config::providers(&[
        Provider::new("token-redirect", &redirector.url("/redirecting-token")),
        Provider::new("canary-redirect", &redirector.url("/token"))
            .canary(&redirector.url("/redirecting-api")),
    ]))
    .await;
    let metrics = daemon
        .wait_for(
            |m| {
                sample(
                    m,
                    r#"oauth2_probe_last_run_timestamp_seconds{provider="token-redirect"}"#,
                )
                .is_some()
                    && sample(
                        m,
                        r#"oauth2_probe_last_run_timestamp_seconds{provider="canary-redirect"}"#,
                    )
                    .is_some()
            },
            WAIT,
        )
        .await;
    assert_eq!(
        sample(
            &metrics,
            r#"oauth2_token_request_failures_total{provider="token-redirect",reason="invalid_response"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"oauth2_canary_request_failures_total{provider="canary-redirect",reason="unexpected_status"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"oauth2_canary_responses_total{code="302",provider="canary-redirect"}"#
        ),
        Some(1.0)
    );
    assert_eq!(target.requests().len(), 0, "{:#?}", target.requests());
    daemon.stop().await;
}

/// A secret from `client_secret_file` is read again for every token request: rewriting the file
/// between cycles changes what the next request carries, without a restart.
#[tokio::test]
async fn client_secret_file_is_reread_for_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("client_secret");
    std::fs::write(&secret_file, "first-secret\n").unwrap();
    let idp = FakeServer::start(|_| Reply::token("t", 3600)).await;
    let daemon = Daemon::start(
        &Provider::new("rotating", &idp.url("/token"))
            .interval("200ms")
            .secret_file(&secret_file)
            .toml(),
    )
    .await;
    let before = idp.wait_for_requests("/token", 1, WAIT).await;
    assert_eq!(before[0].form_map()["client_secret"], "first-secret");

    std::fs::write(&secret_file, "second-secret\n").unwrap();
    // A request already under way when the file changed may still carry the old value; two more
    // cycles guarantee one that started after the rewrite.
    let after = idp
        .wait_for_requests("/token", before.len() + 2, WAIT)
        .await;
    let secrets: Vec<String> = after
        .iter()
        .map(|r| r.form_map()["client_secret"].clone())
        .collect();
    assert_eq!(secrets.last().map(String::as_str), Some("second-secret"));
    let first_new = secrets.iter().position(|s| s == "second-secret").unwrap();
    assert!(
        secrets[first_new..].iter().all(|s| s == "second-secret"),
        "the old secret came back after the new one was used: {secrets:?}"
    );
    daemon.stop().await;
}
