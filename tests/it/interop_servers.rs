//! Issue 11 (interoperability): the authorization servers people run, as they answer on the
//! wire. Django OAuth Toolkit with Django REST framework (a dead token behind 403, RFC 6750
//! `WWW-Authenticate`), Authlib on Flask (Basic credentials percent-decoded only, 503 with an
//! OAuth body), glewlwyd (error codes of its own, Basic credentials not decoded at all), each
//! reproduced by a loopback fake that answers byte for byte as described in the issue.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use support::hostile::get;
use support::{
    Binary, Daemon, FakeServer, Provider, Recorded, Reply, WAIT, provider_series, relevant_lines,
    sample,
};

/// The secret every provider here uses: a space and every character that form encoding, percent
/// encoding and no encoding at all tell apart (`: + / % & =`).
const SECRET: &str = "s3cr3t pa:ss+wo/rd%&x=y";

/// Django OAuth Toolkit's `ProtectedResourceView` answer to a revoked, expired or unknown token:
/// a bare 403 with Django's stock page.
fn django_bare_403() -> Reply {
    Reply::raw(
        403,
        &[
            ("content-type", "text/html; charset=utf-8"),
            ("x-frame-options", "DENY"),
        ],
        "<h1>403 Forbidden</h1>",
    )
}

/// Django REST framework with DOT's `OAuth2Authentication`: a JSON body and an RFC 6750
/// section 3 challenge.
fn drf_challenge(status: u16, error: &str, description: &str) -> Reply {
    let challenge =
        format!(r#"Bearer realm="api", error="{error}", error_description="{description}""#);
    Reply::raw(
        status,
        &[
            ("content-type", "application/json"),
            ("www-authenticate", &challenge),
            ("vary", "Accept"),
            ("allow", "GET, HEAD, OPTIONS"),
        ],
        json!({"detail": description}).to_string(),
    )
}

/// A Django OAuth Toolkit client with token reuse: its token endpoint at `/token` and its canary
/// at `canary_path` of `server`.
fn dot_provider(name: &str, server: &FakeServer, canary_path: &str) -> Provider {
    Provider::new(name, &server.url("/token"))
        .client("dot-client", "dot-secret")
        .token_key("reuse", "true")
        .canary(&server.url(canary_path))
}

/// `FAMILY{provider="NAME"}` is 1 on `metrics`.
fn assert_one(metrics: &str, family: &str, name: &str) {
    assert_eq!(
        sample(metrics, &format!(r#"{family}{{provider="{name}"}}"#)),
        Some(1.0),
        "{family} of {name}"
    );
}

/// A token endpoint that issues `tok-1`, `tok-2`, ... in order, and a canary that accepts a token
/// once (the first use of `tok-1`) and then answers `revoked` for it, as a server does after
/// the token was revoked; every later token is accepted.
fn revoking_server(revoked: fn() -> Reply) -> impl Fn(&Recorded) -> Reply + Send + Sync {
    let issued = Arc::new(AtomicUsize::new(0));
    let first_uses = Arc::new(AtomicUsize::new(0));
    move |request: &Recorded| match request.path.as_str() {
        "/token" => {
            let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
            Reply::token(&format!("tok-{n}"), 3600)
        }
        "/api" => match request.bearer() {
            Some("tok-1") if first_uses.fetch_add(1, Ordering::SeqCst) == 0 => Reply::status(200),
            Some("tok-1") => revoked(),
            Some(_) => Reply::json(200, json!({"ok": true})),
            None => Reply::status(400),
        },
        _ => Reply::status(404),
    }
}

/// Issue 11, item 1: a reused token that Django OAuth Toolkit answers with 403 and
/// `WWW-Authenticate: Bearer error="invalid_token"` (or a bare 403, with
/// `token_rejected_status = [401, 403]`) is rejected: counted as `unauthorized`, replaced at
/// once by a fresh token and the canary retried, exactly as for a 401.
#[tokio::test]
async fn dead_token_behind_403_is_replaced_and_retried() {
    let challenge = FakeServer::start(revoking_server(|| {
        drf_challenge(
            403,
            "invalid_token",
            "Authentication credentials were not provided.",
        )
    }))
    .await;
    let bare = FakeServer::start(revoking_server(django_bare_403)).await;
    let provider =
        |name: &str, server: &FakeServer| dot_provider(name, server, "/api").interval("300ms");
    let daemon = Daemon::start(&support::config::providers(&[
        provider("dot_challenge", &challenge),
        provider("dot_bare", &bare).canary_key("token_rejected_status", "[401, 403]"),
    ]))
    .await;
    let metrics = daemon
        .wait_for(
            |m| {
                ["dot_challenge", "dot_bare"].iter().all(|p| {
                    sample(
                        m,
                        &format!(r#"oauth2_canary_requests_total{{provider="{p}"}}"#),
                    )
                    .is_some_and(|n| n >= 4.0)
                })
            },
            WAIT,
        )
        .await;
    for (name, server) in [("dot_challenge", &challenge), ("dot_bare", &bare)] {
        // Cycle 1: tok-1 passes. Cycle 2: tok-1 is rejected, tok-2 is fetched and passes.
        // Later cycles reuse tok-2: exactly two token requests in all.
        assert_eq!(
            server.count("/token"),
            2,
            "{name}: {:#?}",
            server.requests()
        );
        assert_eq!(
            provider_series(&metrics, "oauth2_canary_request_failures_total", name),
            [format!(
                r#"oauth2_canary_request_failures_total{{provider="{name}",reason="unauthorized"}} 1"#
            )],
            "{name}\n{}",
            relevant_lines(&metrics)
        );
        assert_one(&metrics, "oauth2_probe_success", name);
        assert_one(&metrics, "oauth2_token_valid", name);
        let bearers: Vec<_> = server
            .requests_to("/api")
            .iter()
            .take(3)
            .map(|r| r.bearer().unwrap_or_default().to_string())
            .collect();
        assert_eq!(bearers, ["tok-1", "tok-1", "tok-2"], "{name}");
    }
    daemon.stop().await;
}

/// Issue 11, item 1: without `token_rejected_status`, a bare 403 stays `forbidden` and says
/// nothing about the token; `error="insufficient_scope"` is its own reason and the token stays
/// valid (the client lacks a permission, a fresh token would not help).
#[tokio::test]
async fn forbidden_and_insufficient_scope_keep_the_token() {
    let api = FakeServer::start(|request: &Recorded| match request.path.as_str() {
        "/token" => Reply::token("tok", 3600),
        "/scope" => drf_challenge(
            403,
            "insufficient_scope",
            "You do not have permission to perform this action.",
        ),
        "/bare" => django_bare_403(),
        _ => Reply::status(404),
    })
    .await;
    let daemon = Daemon::start(&support::config::providers(&[
        dot_provider("scope", &api, "/scope"),
        dot_provider("bare", &api, "/bare"),
    ]))
    .await;
    let metrics = daemon.wait_for_cycles(&["scope", "bare"], WAIT).await;
    for (name, reason) in [("scope", "insufficient_scope"), ("bare", "forbidden")] {
        assert_eq!(
            provider_series(&metrics, "oauth2_canary_request_failures_total", name),
            [format!(
                r#"oauth2_canary_request_failures_total{{provider="{name}",reason="{reason}"}} 1"#
            )],
            "{}",
            relevant_lines(&metrics)
        );
        assert_one(&metrics, "oauth2_token_valid", name);
    }
    assert_eq!(api.count("/token"), 2, "one token each, no retry");
    let (_, page) = get(daemon.addr, "/probe?provider=scope&debug=true").await;
    assert!(
        page.contains(r#"insufficient_scope: You do not have permission to perform this action."#),
        "{page}"
    );
    daemon.stop().await;
}

/// A token endpoint that answers every request with `reply`.
async fn token_endpoint(reply: Reply) -> FakeServer {
    FakeServer::start(move |request: &Recorded| match request.path.as_str() {
        "/token" => reply.clone(),
        _ => Reply::status(404),
    })
    .await
}

/// One provider against `server`, written as a config file for the binary.
fn single_provider(dir: &std::path::Path, name: &str, server: &FakeServer) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join("exporter.toml");
    std::fs::write(
        &path,
        Provider::new(name, &server.url("/token"))
            .client("client", SECRET)
            .toml(),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// `check --output json` against one provider: its one result object.
async fn check_json(config: &std::path::Path) -> Value {
    let output = Binary::new()
        .arg("check")
        .arg("--output")
        .arg("json")
        .config(config)
        .run_async()
        .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    json["providers"][0].clone()
}

/// `check` as a table against one provider.
async fn check_table(config: &std::path::Path) -> String {
    let output = Binary::new().arg("check").config(config).run_async().await;
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Issue 11, item 3: Authlib behind a proxy in trouble answers
/// `503 {"error":"temporarily_unavailable",...}`: that is `http_5xx` (so the unreachable alert
/// fires), with the OAuth code and description in every text a person reads.
#[tokio::test]
async fn server_error_with_oauth_body_is_http_5xx() {
    let server = token_endpoint(Reply::raw(
        503,
        &[("content-type", "application/json"), ("retry-after", "120")],
        r#"{"error":"temporarily_unavailable","error_description":"try later"}"#,
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = single_provider(dir.path(), "authlib", &server);
    let result = check_json(&config).await;
    assert_eq!(result["failure"]["reason"], "http_5xx", "{result:#}");
    assert_eq!(result["failure"]["http_status"], 503, "{result:#}");
    assert_eq!(
        result["failure"]["detail"], "HTTP 503 with OAuth error temporarily_unavailable: try later",
        "{result:#}"
    );

    let daemon = Daemon::start(&std::fs::read_to_string(&config).unwrap()).await;
    let metrics = daemon.wait_for_cycles(&["authlib"], WAIT).await;
    assert_eq!(
        provider_series(&metrics, "oauth2_token_request_failures_total", "authlib"),
        [r#"oauth2_token_request_failures_total{provider="authlib",reason="http_5xx"} 1"#]
    );
    daemon.stop().await;
}

/// Issue 11, item 2: glewlwyd's own error codes (`scope_invalid`) are counted as `oauth_error`
/// but every text a person reads carries the code and `error_description`; a hostile code is
/// cut to 64 printable ASCII characters (anything else shown as `?`), and a description that echoes the secret is scrubbed.
#[tokio::test]
async fn unknown_oauth_error_codes_are_shown_as_sent() {
    let glewlwyd = token_endpoint(Reply::raw(
        400,
        &[("content-type", "application/json")],
        r#"{"error":"scope_invalid","error_description":"scope 'admin' is not allowed"}"#,
    ))
    .await;
    let long_code = format!("x\u{7}y\u{e9}{}", "z".repeat(100));
    let hostile = token_endpoint(Reply::json(
        400,
        json!({
            "error": long_code,
            "error_description": format!("secret {SECRET} is wrong\n\u{1b}[31m\u{e9}"),
        }),
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();

    let config = single_provider(dir.path(), "glewlwyd", &glewlwyd);
    let result = check_json(&config).await;
    assert_eq!(result["failure"]["reason"], "oauth_error", "{result:#}");
    assert_eq!(result["token"]["result"], "oauth_error", "{result:#}");
    let expected = "OAuth error scope_invalid: scope 'admin' is not allowed";
    assert_eq!(result["failure"]["detail"], expected, "{result:#}");
    let table = check_table(&config).await;
    assert!(table.contains(expected), "{table}");

    let daemon = Daemon::start(&std::fs::read_to_string(&config).unwrap()).await;
    let metrics = daemon.wait_for_cycles(&["glewlwyd"], WAIT).await;
    assert_eq!(
        provider_series(&metrics, "oauth2_token_request_failures_total", "glewlwyd"),
        [r#"oauth2_token_request_failures_total{provider="glewlwyd",reason="oauth_error"} 1"#]
    );
    let (_, page) = get(daemon.addr, "/").await;
    assert!(
        page.contains("OAuth error scope_invalid: scope &#39;admin&#39; is not allowed"),
        "{page}"
    );
    let (_, trace) = get(daemon.addr, "/probe?provider=glewlwyd&debug=true").await;
    assert!(trace.contains(expected), "{trace}");
    daemon.stop().await;

    let config = single_provider(dir.path(), "hostile", &hostile);
    let result = check_json(&config).await;
    let detail = result["failure"]["detail"].as_str().unwrap();
    let code = format!("x?y?{}", "z".repeat(60));
    assert_eq!(
        detail,
        format!("OAuth error {code}: secret [redacted] is wrong??[31m?"),
        "{result:#}"
    );
    assert!(!detail.contains(SECRET));
}

/// How a server reads the `user:pass` inside `Authorization: Basic`.
#[derive(Clone, Copy, Debug)]
enum Decoding {
    /// RFC 6749 section 2.3.1 read as form decoding: `+` is a space (Spring, Keycloak).
    Form,
    /// Percent escapes only, `+` stays `+` (Authlib's `unquote`).
    Percent,
    /// Not decoded at all (glewlwyd, RFC 7617 as curl -u sends it).
    None,
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The client id and secret as a server with this decoding reads them.
fn decode_basic(request: &Recorded, decoding: Decoding) -> Option<(String, String)> {
    let encoded = request.header("authorization")?.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (id, secret) = raw.split_once(':')?;
    let decode = |text: &str| match decoding {
        Decoding::Form => support::form_urldecode(text),
        Decoding::Percent => percent_decode(text),
        Decoding::None => text.to_string(),
    };
    Some((decode(id), decode(secret)))
}

/// Issue 11, item 4: a secret with a space and `: + / % & =` is accepted by a server that
/// form-decodes Basic credentials, by one that percent-decodes only (Authlib) with the default
/// `basic_encoding = "form"`, and by one that does not decode (glewlwyd) with
/// `basic_encoding = "raw"`.
#[tokio::test]
async fn basic_credentials_are_read_back_by_every_decoder() {
    let server = FakeServer::start(|request: &Recorded| {
        let decoding = match request.path.as_str() {
            "/form/token" => Decoding::Form,
            "/percent/token" => Decoding::Percent,
            "/none/token" => Decoding::None,
            _ => return Reply::status(404),
        };
        if decode_basic(request, decoding) == Some(("client id".to_string(), SECRET.to_string())) {
            Reply::token("tok", 3600)
        } else {
            // Authlib's answer to a wrong client secret.
            Reply::raw(
                401,
                &[
                    ("content-type", "application/json"),
                    ("www-authenticate", "Basic error=\"invalid_client\""),
                ],
                r#"{"error": "invalid_client"}"#,
            )
        }
    })
    .await;
    let provider = |name: &str, path: &str| {
        Provider::new(name, &server.url(path))
            .client("client id", SECRET)
            .token_key("auth_method", r#""client_secret_basic""#)
    };
    let daemon = Daemon::start(&support::config::providers(&[
        provider("form", "/form/token"),
        provider("percent", "/percent/token").token_key("basic_encoding", r#""form""#),
        provider("none", "/none/token").token_key("basic_encoding", r#""raw""#),
    ]))
    .await;
    let metrics = daemon
        .wait_for_cycles(&["form", "percent", "none"], WAIT)
        .await;
    for name in ["form", "percent", "none"] {
        assert_eq!(
            sample(
                &metrics,
                &format!(r#"oauth2_probe_success{{provider="{name}"}}"#)
            ),
            Some(1.0),
            "{name}: {:#?}\n{}",
            server.requests(),
            relevant_lines(&metrics)
        );
    }
    // On the wire: percent escapes only (a space as %20), and the raw pair untouched.
    let raw = |path: &str| server.requests_to(path)[0].basic_raw().unwrap();
    assert_eq!(
        raw("/percent/token"),
        "client%20id:s3cr3t%20pa%3Ass%2Bwo%2Frd%25%26x%3Dy"
    );
    assert_eq!(raw("/none/token"), format!("client id:{SECRET}"));
    daemon.stop().await;
}

/// Issue 11, item 5: every token-phase 401 and 403 is visible by status code, whatever the
/// body (glewlwyd's bare 403 is `http_4xx`), and the grant of each provider is exported, so
/// the credentials alert can cover them and `invalid_request` on the password grant.
#[tokio::test]
async fn token_phase_statuses_and_grant_are_exported() {
    let server = FakeServer::start(|request: &Recorded| match request.path.as_str() {
        // glewlwyd: any wrong secret or password, a bare 403.
        "/glewlwyd/token" => Reply::raw(403, &[("content-length", "0")], Vec::new()),
        // Authlib: a wrong user password on the password grant.
        "/authlib/token" => Reply::raw(
            400,
            &[("content-type", "application/json")],
            r#"{"error": "invalid_request", "error_description": "Invalid \"username\" or \"password\" in request."}"#,
        ),
        _ => Reply::status(404),
    })
    .await;
    let daemon = Daemon::start(&support::config::providers(&[
        Provider::new("glewlwyd", &server.url("/glewlwyd/token")).client("client", "secret"),
        Provider::new("authlib", &server.url("/authlib/token"))
            .client("client", "secret")
            .token_key("grant_type", r#""password""#)
            .token_key("username", r#""ops""#)
            .token_key("password", r#""wrong""#),
    ]))
    .await;
    let metrics = daemon.wait_for_cycles(&["glewlwyd", "authlib"], WAIT).await;
    let expected = [
        (
            r#"oauth2_token_request_failures_total{provider="glewlwyd",reason="http_4xx"}"#,
            1.0,
        ),
        (
            r#"oauth2_token_responses_total{code="403",provider="glewlwyd"}"#,
            1.0,
        ),
        (
            r#"oauth2_token_request_failures_total{provider="authlib",reason="invalid_request"}"#,
            1.0,
        ),
        (
            r#"oauth2_token_responses_total{code="400",provider="authlib"}"#,
            1.0,
        ),
        (
            r#"oauth2_token_grant_info{grant_type="client_credentials",provider="glewlwyd"}"#,
            1.0,
        ),
        (
            r#"oauth2_token_grant_info{grant_type="password",provider="authlib"}"#,
            1.0,
        ),
    ];
    for (series, value) in expected {
        assert_eq!(
            sample(&metrics, series),
            Some(value),
            "{series}\n{}",
            relevant_lines(&metrics)
        );
    }
    daemon.stop().await;
}
