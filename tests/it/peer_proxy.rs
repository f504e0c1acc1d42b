//! Issue 12 section 3 through a real proxy: the exporter binary's discovery, token and canary
//! requests of a provider with `proxy_url` go through squid on loopback (asserted from squid's
//! own access log, with the authenticated user), a wrong proxy password gets the 407 detail, a
//! proxy that is down is `connect` naming it, `proxy_url = "none"` bypasses it, and the proxy
//! password shows nowhere (log, metrics, debug trace). Skipped without squid (see
//! `support::proxy`).

use crate::support;

use std::time::Duration;

use serde_json::json;
use support::proxy::{PROXY_PASSWORD, PROXY_PASSWORD_ENCODED, Squid};
use support::{Binary, FakeServer, Provider, Reply, closed_port_url, sample};

const WAIT: Duration = Duration::from_secs(30);

/// `config` written to `exporter.toml` in a fresh directory (the exporter runs there too).
fn config_dir(config: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exporter.toml");
    std::fs::write(&path, config).unwrap();
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_go_through_the_proxy_and_its_failures_name_it() {
    let Some(squid) = Squid::start("requests_go_through_the_proxy_and_its_failures_name_it") else {
        return;
    };
    let idp = FakeServer::start_with_base(move |base, request| {
        match request.path.as_str() {
            "/issuer/.well-known/openid-configuration" => Reply::json(
                200,
                json!({"issuer": format!("{base}/issuer"), "token_endpoint": format!("{base}/issuer/token")}),
            ),
            "/issuer/token" | "/token" => Reply::token("proxied-token", 3600),
            "/api" | "/direct-api" => Reply::status(200),
            _ => Reply::status(404),
        }
    })
    .await;
    let down = closed_port_url("").await;
    let down_host = down.trim_start_matches("http://").to_string();
    let proxy_host = squid.addr.to_string();

    let down_proxy = format!("http://user:{PROXY_PASSWORD_ENCODED}@{down_host}");
    // Each client's id and secret carry its name; `through` takes the good proxy from the
    // defaults, the others name their own.
    let client = |provider: Provider, name: &str| {
        provider.client(&format!("{name}-client"), &format!("{name}-secret"))
    };
    let own_proxy = |name: &str, token: &str, proxy: &str| {
        client(Provider::new(name, token), name).setting("proxy_url", &format!("\"{proxy}\""))
    };
    let token = idp.url("/token");
    let config = [
        format!(
            "[defaults]\ninterval = \"500ms\"\ntimeout = \"3s\"\nproxy_url = \"{}\"\n",
            squid.url_with(PROXY_PASSWORD_ENCODED)
        ),
        client(Provider::issuer("through", &idp.url("/issuer")), "through")
            .canary(&idp.url("/api"))
            .toml(),
        own_proxy("wrongpass", &token, &squid.url_with("not-the-password")).toml(),
        own_proxy("proxydown", &token, &down_proxy).toml(),
        own_proxy("direct", &format!("{token}?direct"), "none")
            .canary(&idp.url("/direct-api"))
            .toml(),
    ]
    .concat();
    let (dir, path) = config_dir(&config);
    let mut exporter = Binary::new()
        .config(&path)
        .listen_loopback()
        .log_level("trace")
        .current_dir(dir.path())
        .spawn();
    let metrics = exporter
        .wait_for_metrics("every provider ran twice", WAIT, |m| {
            ["through", "wrongpass", "proxydown", "direct"]
                .iter()
                .all(|p| {
                    sample(
                        m,
                        &format!(r#"oauth2_token_requests_total{{provider="{p}"}}"#),
                    )
                    .is_some_and(|v| v >= 2.0)
                })
        })
        .await;
    let addr = exporter.address().await;

    // Through the proxy, authenticated as its user: squid's own log says so for discovery,
    // token and canary.
    let idp_host = idp.url("");
    for (method, path) in [
        ("GET", "/issuer/.well-known/openid-configuration"),
        ("POST", "/issuer/token"),
        ("GET", "/api"),
    ] {
        squid
            .wait_for_access(
                &[
                    "TCP_MISS/200",
                    &format!(" {method} {idp_host}{path} "),
                    " probe ",
                ],
                WAIT,
            )
            .await;
    }
    assert_eq!(
        sample(&metrics, r#"oauth2_probe_success{provider="through"}"#),
        Some(1.0)
    );
    // ... and the fake saw them arrive from the proxy, which adds no Via header (off), so the
    // requests are what the exporter sent.
    assert!(idp.count("/issuer/token") >= 2);

    // `proxy_url = "none"`: straight to the server, never in squid's log.
    assert_eq!(
        sample(&metrics, r#"oauth2_probe_success{provider="direct"}"#),
        Some(1.0)
    );
    assert!(idp.count("/direct-api") >= 1);
    let log = squid.access_log();
    assert!(
        !log.contains("/direct-api") && !log.contains("?direct"),
        "{log}"
    );

    // A wrong password: squid answers 407, which is the proxy's refusal, not the server's.
    squid
        .wait_for_access(&["TCP_DENIED/407", "POST", "/token"], WAIT)
        .await;
    let stderr = exporter.stderr();
    let wrong = format!(
        "provider=wrongpass phase=token reason=connect status=407 error=\"connection failed: proxy {proxy_host} refused the request with 407 Proxy Authentication Required: the user:password@ of proxy_url is missing or wrong\""
    );
    assert!(stderr.contains(&wrong), "expected {wrong}\n---\n{stderr}");
    // A proxy that is down: `connect`, naming the proxy's host and port, not its credentials.
    let down_line = stderr
        .lines()
        .find(|l| l.contains("provider=proxydown phase=token reason=connect"))
        .unwrap_or_else(|| panic!("no connect failure for proxydown:\n{stderr}"));
    assert!(
        down_line.contains(&format!("via proxy {down_host}: ")),
        "{down_line}"
    );

    // The debug trace says which proxy each request used, by host and port only.
    let trace =
        support::get_text(&format!("http://{addr}/probe?provider=through&debug=true")).await;
    assert!(
        trace.contains(&format!("proxy: {proxy_host} (proxy_url)")),
        "{trace}"
    );
    let direct =
        support::get_text(&format!("http://{addr}/probe?provider=direct&debug=true")).await;
    assert!(
        direct.contains("proxy: none (proxy_url = \"none\")"),
        "{direct}"
    );

    // The proxy password, in any form, nowhere.
    exporter.stop().await;
    let stderr = exporter.stderr();
    for needle in [PROXY_PASSWORD, PROXY_PASSWORD_ENCODED, "proxy-Pa55"] {
        for (what, text) in [
            ("stderr", &stderr),
            ("metrics", &metrics),
            ("trace", &trace),
        ] {
            assert!(!text.contains(needle), "{needle:?} in {what}:\n{text}");
        }
    }
}

/// Without `proxy_url`, `HTTP_PROXY` (and `NO_PROXY`) from the environment apply, as curl reads
/// them; the debug trace names the proxy by host and port, never the credentials the variable
/// holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_proxy_url_the_environment_proxy_applies() {
    let Some(squid) = Squid::start("without_proxy_url_the_environment_proxy_applies") else {
        return;
    };
    let idp = FakeServer::start(|request| match request.path.as_str() {
        "/env/token" => Reply::token("env-proxied-token", 3600),
        _ => Reply::status(404),
    })
    .await;
    // A second server, named `localhost` and excluded by NO_PROXY: reached directly.
    let excluded = FakeServer::start(|_| Reply::token("direct-token", 3600)).await;
    let config = format!(
        "[defaults]\ninterval = \"500ms\"\n\n[providers.env.token]\nurl = \"{}\"\nclient_id = \"env\"\nclient_secret = \"env-secret\"\n\n[providers.excluded.token]\nurl = \"{}\"\nclient_id = \"excluded\"\nclient_secret = \"excluded-secret\"\n",
        idp.url("/env/token"),
        excluded
            .url("/excluded/token")
            .replace("127.0.0.1", "localhost"),
    );
    let (dir, path) = config_dir(&config);
    let mut exporter = Binary::new()
        .config(&path)
        .listen_loopback()
        .current_dir(dir.path())
        .env("HTTP_PROXY", squid.url_with(PROXY_PASSWORD_ENCODED))
        .env("NO_PROXY", "localhost")
        .spawn();
    exporter
        .wait_for_metrics("both providers succeed", WAIT, |m| {
            ["env", "excluded"].iter().all(|p| {
                sample(m, &format!(r#"oauth2_probe_success{{provider="{p}"}}"#)) == Some(1.0)
            })
        })
        .await;
    squid
        .wait_for_access(
            &[
                "TCP_MISS/200",
                &format!(" POST {} ", idp.url("/env/token")),
                " probe ",
            ],
            WAIT,
        )
        .await;
    assert!(!squid.access_log().contains("/excluded/token"));
    let addr = exporter.address().await;
    let trace = support::get_text(&format!("http://{addr}/probe?provider=env&debug=true")).await;
    assert!(
        trace.contains(&format!("proxy: from environment: {}", squid.addr)),
        "{trace}"
    );
    let direct =
        support::get_text(&format!("http://{addr}/probe?provider=excluded&debug=true")).await;
    assert!(direct.contains("proxy: none\n"), "{direct}");
    exporter.stop().await;
    for text in [exporter.stderr(), trace] {
        assert!(!text.contains(PROXY_PASSWORD) && !text.contains(PROXY_PASSWORD_ENCODED));
    }
}
