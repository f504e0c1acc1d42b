//! Issue 13, warned before it breaks, on the running daemon: the endpoint certificate gauge
//! per phase (earliest notAfter of the presented chain, intermediates included), a certificate
//! file credential followed without a restart, credential change times by keyed hash, and
//! `[token.expect]` failing the token phase while the canary still runs; plus `--demo`'s secret
//! that expires in 20 days.

use crate::support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use support::certs::{self, Ca, days_from_now};
use support::{Binary, Daemon, FakeServer, Provider, Reply, Signal, WAIT, sample};

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn gauge(provider: &str, label: &str, value: &str, family: &str) -> String {
    format!(r#"{family}{{{label}="{value}",provider="{provider}"}}"#)
}

const TLS: &str = "oauth2_tls_certificate_expiry_timestamp_seconds";
const CREDENTIAL: &str = "oauth2_client_credential_expiry_timestamp_seconds";
const CHANGED: &str = "oauth2_client_credential_change_timestamp_seconds";

/// A token server whose chain's intermediate lapses before its leaf, and a canary server with
/// another certificate: each phase's gauge is the earliest notAfter of its own chain, on the
/// first cycle and on pooled connections after it; plain http has none.
#[tokio::test]
async fn endpoint_certificate_expiry_is_the_earliest_of_the_chain_per_phase() {
    let dir = tempfile::tempdir().unwrap();
    let root = Ca::new("issue 13 root");
    let (intermediate_day, intermediate_expiry) = days_from_now(9);
    let (token_leaf_day, _) = days_from_now(40);
    let (canary_day, canary_expiry) = days_from_now(21);
    let intermediate = root.intermediate("issue 13 intermediate", &intermediate_day);
    let token_leaf = intermediate.server_until(&token_leaf_day);
    let canary_leaf = root.server_until(&canary_day);
    let token_chain = format!("{}{}", token_leaf.cert_pem, intermediate.cert_pem);

    let idp = FakeServer::start_tls_with(&token_chain, &token_leaf.key_pem, |_| {
        Reply::token("tls-expiry-token", 3600)
    })
    .await;
    let api = FakeServer::start_tls_with(&canary_leaf.cert_pem, &canary_leaf.key_pem, |_| {
        Reply::status(200)
    })
    .await;
    let plain = FakeServer::start(|_| Reply::token("plain-token", 3600)).await;
    let ca_file = certs::write(dir.path(), "root.pem", &root.cert_pem);
    let daemon = Daemon::start(&support::config::providers(&[
        Provider::new("tlsprov", &idp.url("/token"))
            .interval("1s")
            .client("id", "tls-expiry-secret")
            .canary(&api.url("/api"))
            .raw(&format!(
                "[providers.tlsprov.tls]\nca_file = \"{}\"",
                ca_file.display()
            )),
        Provider::new("plain", &plain.url("/token"))
            .interval("1s")
            .client("id", "plain-secret"),
    ]))
    .await;
    let token = gauge("tlsprov", "phase", "token", TLS);
    let canary = gauge("tlsprov", "phase", "canary", TLS);
    // Two cycles: the second runs on pooled connections, without a handshake.
    let metrics = daemon
        .wait_for(
            |m| {
                sample(m, r#"oauth2_canary_requests_total{provider="tlsprov"}"#) >= Some(2.0)
                    && sample(m, r#"oauth2_probe_success{provider="plain"}"#).is_some()
            },
            WAIT,
        )
        .await;
    assert_eq!(
        sample(&metrics, r#"oauth2_probe_success{provider="tlsprov"}"#),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, &token),
        Some(intermediate_expiry as f64),
        "the intermediate lapses first: {metrics}"
    );
    assert_eq!(
        sample(&metrics, &canary),
        Some(canary_expiry as f64),
        "{metrics}"
    );
    assert!(
        !metrics.contains(r#"phase="discovery""#)
            && !metrics.contains(&format!("{TLS}{{phase=\"token\",provider=\"plain\"}}")),
        "only phases answered over https have a gauge: {metrics}"
    );
    daemon.stop().await;
}

/// `[tls] client_cert_file` is a credential: its notAfter is exported, and replacing the file
/// with a later certificate moves the gauge and the change time without a restart. A secret
/// file rewritten with the same value does not move its change time; a new value does.
#[tokio::test]
async fn certificate_files_and_secret_files_are_followed_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("issue 13 client ca");
    let (first_day, first_expiry) = days_from_now(12);
    let (later_day, later_expiry) = days_from_now(400);
    let first = ca.client_until("exporter", &first_day);
    let cert_file = certs::write(dir.path(), "client.pem", &first.cert_pem);
    let key_file = certs::write(dir.path(), "client.key", &first.key_pem);
    let secret_file = certs::write(dir.path(), "secret", "first-secret-value\n");
    let idp = FakeServer::start(|_| Reply::token("cert-file-token", 3600)).await;
    let daemon = Daemon::start(
        &Provider::new("mtls", &idp.url("/token"))
            .interval("1s")
            .secret_file(&secret_file)
            .token_key("client_secret_expires", r#""2031-02-03T04:05:06+01:00""#)
            .raw(&format!(
                "[providers.mtls.tls]\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"",
                cert_file.display(),
                key_file.display()
            ))
            .toml(),
    )
    .await;
    let expiry = gauge("mtls", "credential", "tls_client_certificate", CREDENTIAL);
    let cert_changed = gauge("mtls", "credential", "tls_client_certificate", CHANGED);
    let secret_changed = gauge("mtls", "credential", "client_secret", CHANGED);
    let metrics = daemon.wait_for_cycles(&["mtls"], WAIT).await;
    assert_eq!(
        sample(&metrics, &expiry),
        Some(first_expiry as f64),
        "{metrics}"
    );
    // The configured date, offset applied.
    assert_eq!(
        sample(
            &metrics,
            &gauge("mtls", "credential", "client_secret", CREDENTIAL)
        ),
        Some(1_927_854_306.0),
        "{metrics}"
    );
    let started = now_unix() as f64;
    let cert_seen = sample(&metrics, &cert_changed).expect("set at start");
    let secret_seen = sample(&metrics, &secret_changed).expect("set at start");
    assert!(
        (started - 30.0..=started).contains(&secret_seen),
        "{secret_seen} vs now {started}"
    );

    // The change times have whole-second resolution: let one pass before anything changes.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(&secret_file, "first-secret-value\n").unwrap();
    let requests = idp.requests_to("/token").len();
    let metrics = daemon
        .wait_for(|_| idp.requests_to("/token").len() >= requests + 2, WAIT)
        .await;
    assert_eq!(
        sample(&metrics, &secret_changed),
        Some(secret_seen),
        "the same value rewritten is no change: {metrics}"
    );

    // A renewal writes the pair: a certificate without its own key is a failure of its own
    // (issue 22, tests/it/client_certificate_rotation.rs).
    let later = ca.client_until("exporter", &later_day);
    std::fs::write(&key_file, &later.key_pem).unwrap();
    std::fs::write(&cert_file, &later.cert_pem).unwrap();
    std::fs::write(&secret_file, "second-secret-value").unwrap();
    let metrics = daemon
        .wait_for_sample(&expiry, later_expiry as f64, WAIT)
        .await;
    assert!(
        sample(&metrics, &cert_changed) > Some(cert_seen),
        "the certificate changed: {metrics}"
    );
    let metrics = daemon
        .wait_for(|m| sample(m, &secret_changed) > Some(secret_seen), WAIT)
        .await;
    for secret in ["first-secret-value", "second-secret-value"] {
        assert!(!metrics.contains(secret), "{secret} in /metrics");
    }
    daemon.stop().await;
}

fn jwt(claims: serde_json::Value) -> String {
    format!(
        "{}.{}.not-verified",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// A token without an expected role fails the token phase with reason `claims` (the detail
/// names the role, never the token), yet the canary is called with it and its metrics show the
/// API's answer; `oauth2_token_valid` says the token works. A matching provider passes.
#[tokio::test]
async fn a_claims_mismatch_fails_the_token_phase_and_the_canary_still_runs() {
    let exp = now_unix() + 3600;
    let lacking = jwt(json!({"exp": exp, "aud": "api://orders", "roles": ["Orders.Write"]}));
    let matching = jwt(json!({"exp": exp, "aud": "api://orders", "roles": ["Orders.Read"]}));
    let idp = FakeServer::start(move |request| match request.path.as_str() {
        "/lacking/token" => Reply::json(
            200,
            json!({"access_token": lacking, "token_type": "Bearer"}),
        ),
        "/matching/token" => Reply::json(
            200,
            json!({"access_token": matching, "token_type": "Bearer"}),
        ),
        _ => Reply::status(200),
    })
    .await;
    // Both expect `Orders.Read`, which only `matching`'s token holds; `lacking` also expects
    // the audience both tokens carry.
    let claims = |name: &str, expect: &str| {
        Provider::new(name, &idp.url(&format!("/{name}/token")))
            .interval("1s")
            .client("id", "claims-secret")
            .canary(&idp.url("/api"))
            .raw(&format!("[providers.{name}.token.expect]\n{expect}"))
    };
    let daemon = Daemon::start(&support::config::providers(&[
        claims(
            "lacking",
            "roles = [\"Orders.Read\"]\naudience = \"api://orders\"",
        ),
        claims("matching", "roles = [\"Orders.Read\"]"),
    ]))
    .await;
    let metrics = daemon
        .wait_for(
            |m| {
                sample(m, r#"oauth2_token_requests_total{provider="lacking"}"#) >= Some(2.0)
                    && sample(m, r#"oauth2_probe_success{provider="matching"}"#).is_some()
            },
            WAIT,
        )
        .await;
    let lacking = |series: &str| sample(&metrics, &format!("{series}{{provider=\"lacking\"}}"));
    assert_eq!(lacking("oauth2_probe_success"), Some(0.0), "{metrics}");
    assert!(
        sample(
            &metrics,
            r#"oauth2_token_request_failures_total{provider="lacking",reason="claims"}"#
        ) >= Some(2.0),
        "every new token is checked (never reused): {metrics}"
    );
    assert!(
        lacking("oauth2_canary_requests_total") >= Some(1.0),
        "{metrics}"
    );
    assert_eq!(lacking("oauth2_token_valid"), Some(1.0), "{metrics}");
    assert_eq!(lacking("oauth2_token_last_success_timestamp_seconds"), None);
    assert_eq!(
        sample(&metrics, r#"oauth2_probe_success{provider="matching"}"#),
        Some(1.0),
        "{metrics}"
    );

    let page = support::get_text(&daemon.url("/")).await;
    assert!(
        page.contains(r#"token <b>claims</b>"#)
            && page.contains("token claims: role &quot;Orders.Read&quot; missing from `roles`"),
        "{page}"
    );
    assert!(!page.contains("eyJ"), "a token on the status page: {page}");
    daemon.stop().await;
}

/// `--demo` shows a secret that expires in 20 days out of the box: on /metrics and, in the
/// warning colour, on the status page.
#[cfg(feature = "demo")]
#[test]
fn the_demo_shows_a_secret_expiring_in_20_days() {
    use support::binary::Binary;
    use support::peers::http_request;

    let dir = tempfile::tempdir().unwrap();
    let (running, addr) = Binary::spawn_demo(dir.path());
    let series = gauge("okq8", "credential", "client_secret", CREDENTIAL);
    let deadline = std::time::Instant::now() + WAIT;
    let (metrics, page) = loop {
        let metrics = http_request(addr, "GET", "/metrics", &[], &[])
            .unwrap()
            .body;
        let page = http_request(addr, "GET", "/", &[], &[]).unwrap().body;
        if sample(&metrics, &series).is_some() && page.contains("client_secret in 20 days") {
            break (metrics, page);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no 20-day secret in the demo:\n{metrics}\n{page}\n{}",
            running.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let left = sample(&metrics, &series).unwrap() - now_unix() as f64;
    assert!(
        (20.0 * 86400.0..=20.0 * 86400.0 + 3600.0).contains(&left),
        "{left} s left"
    );
    let row = page
        .lines()
        .find(|l| l.contains(r#"data-provider="okq8""#))
        .unwrap_or_else(|| panic!("no okq8 row: {page}"));
    assert!(row.contains(r#"<span class="expiring""#), "{row}");
}

/// Issue 22: a credential whose configured expiry is past is a warning in the log at start (the
/// providers had been moved out of the configuration before the warning read them, so start-up
/// logged nothing) and again at every reload, naming the key, never the secret.
#[tokio::test]
async fn an_expired_credential_is_a_warning_at_start_and_at_every_reload() {
    let dir = tempfile::tempdir().unwrap();
    let idp = FakeServer::start(|_| Reply::token("expired-warning-token", 3600)).await;
    let path = dir.path().join("exporter.toml");
    std::fs::write(
        &path,
        Provider::new("lapsed", &idp.url("/token"))
            .interval("1h")
            .client("id", "lapsed-secret-value")
            .token_key("client_secret_expires", r#""2020-01-02""#)
            .toml(),
    )
    .unwrap();
    let mut exporter = Binary::new().config(&path).listen_loopback().spawn();
    let warning = "2020-01-02T00:00:00Z is in the past; the credential has expired";
    let logs = exporter.wait_for_log("msg=\"probing started", 1).await;
    let before_start = logs.split("probing started").next().unwrap_or_default();
    assert!(
        before_start.contains(warning)
            && before_start.contains("providers.lapsed.token.client_secret_expires")
            && before_start.contains("level=warn"),
        "no start-up warning before probing started:\n{logs}"
    );
    exporter.signal(Signal::Hup);
    exporter.wait_for_log("configuration reloaded", 1).await;
    let logs = exporter.wait_for_log(warning, 2).await;
    assert!(!logs.contains("lapsed-secret-value"), "{logs}");
    exporter.stop().await;
}
