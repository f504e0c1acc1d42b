//! Issue 12 section 2 against the real authorization server (panva/oidc-provider 9, see
//! `tests/peers/oidc/server.mjs`): the token endpoint found through its
//! `/.well-known/openid-configuration`, the last good endpoint kept while its discovery is down,
//! a mismatched issuer refused, and the discovery example of docs/configuration.md run as
//! written. Skipped (with a `SKIPPED` line) when Node or the peer is missing; a failure instead
//! under `OAUTH2_EXPORTER_REQUIRE_PEERS=1`.

use crate::support;

use std::time::Duration;

use support::peers::{Exporter, OidcPeer, http_request};
use support::{Binary, Provider, sample};

const WAIT: Duration = Duration::from_secs(30);

/// A discovery-based provider for the peer's basic client, with the peer's API as canary.
fn provider(name: &str, issuer: &str, peer: &OidcPeer) -> Provider {
    Provider::issuer(name, issuer)
        .interval("1s")
        .timeout("5s")
        .client(&peer.basic_client.id, &peer.basic_client.secret)
        .token_key("auth_method", r#""client_secret_basic""#)
        .token_key("scopes", &format!(r#"["{}"]"#, peer.scope))
        .canary(&peer.canary_url)
        .canary_key("expected_status", "[200]")
}

fn switch_discovery(peer: &OidcPeer, up: bool) {
    let path = format!("/_peer/discovery?up={}", u8::from(up));
    let response = http_request(peer.addr, "POST", &path, &[], &[]).expect("discovery switch");
    assert_eq!(response.status, 204);
}

fn discovery_count(peer: &OidcPeer, key: &str) -> u64 {
    peer.stats()["discovery"][key].as_u64().unwrap_or(0)
}

#[test]
fn the_token_endpoint_is_discovered_and_kept_while_discovery_is_down() {
    let Some(peer) = OidcPeer::start(false) else {
        return;
    };
    let exporter = Exporter::start(
        &provider("discovered", &peer.issuer, &peer)
            .token_key("discovery_refresh", r#""1s""#)
            .toml(),
    );
    exporter.wait_for_metrics(
        "two successful cycles through the discovered endpoint",
        |m| {
            sample(m, r#"oauth2_token_requests_total{provider="discovered"}"#)
                .is_some_and(|v| v >= 2.0)
                && sample(m, r#"oauth2_probe_success{provider="discovered"}"#) == Some(1.0)
        },
        WAIT,
    );
    assert!(discovery_count(&peer, "/.well-known/openid-configuration") >= 1);
    assert!(peer.token_requests(&peer.basic_client.id, "client_secret_basic") >= 2);

    // Discovery down, token endpoint up: the last good endpoint keeps working.
    switch_discovery(&peer, false);
    let before = peer.token_requests(&peer.basic_client.id, "client_secret_basic");
    let metrics = exporter.wait_for_metrics(
        "three more successful cycles with discovery down",
        |_| {
            peer.token_requests(&peer.basic_client.id, "client_secret_basic") >= before + 3
                && discovery_count(&peer, "503 /.well-known/openid-configuration") >= 2
        },
        WAIT,
    );
    assert_eq!(
        sample(&metrics, r#"oauth2_probe_success{provider="discovered"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"oauth2_token_request_failures_total{provider="discovered",reason="discovery"}"#
        )
        .unwrap_or(0.0),
        0.0
    );
    let logs = exporter.logs();
    assert!(
        logs.contains("msg=\"discovery refresh failed; keeping the last good token endpoint (retried next cycle)\" provider=discovered"),
        "{logs}"
    );
    assert!(
        logs.contains(&format!("token_endpoint={}/token", peer.issuer)),
        "{logs}"
    );
    switch_discovery(&peer, true);
}

/// RFC 8414 section 3.3: the metadata's `issuer` must be the configured one exactly. The peer
/// is `http://127.0.0.1:PORT`; `http://localhost:PORT` reaches the same server (and its
/// metadata) but is another issuer, and so is the same URL with a trailing slash.
#[test]
fn a_mismatched_issuer_is_refused_with_reason_discovery() {
    let Some(peer) = OidcPeer::start(false) else {
        return;
    };
    let localhost = peer.issuer.replace("127.0.0.1", "localhost");
    let slash = format!("{}/", peer.issuer);
    let config = support::config::providers(&[
        provider("localhost", &localhost, &peer),
        provider("slash", &slash, &peer),
    ]);
    let exporter = Exporter::start(&config);
    exporter.wait_for_metrics(
        "two discovery failures each",
        |m| {
            ["localhost", "slash"].iter().all(|p| {
                sample(
                    m,
                    &format!(
                        r#"oauth2_token_request_failures_total{{provider="{p}",reason="discovery"}}"#
                    ),
                )
                .is_some_and(|v| v >= 2.0)
            })
        },
        WAIT,
    );
    // The metadata was fetched and read (the issuer came from it), but no token requested.
    assert!(discovery_count(&peer, "/.well-known/openid-configuration") >= 4);
    assert_eq!(
        peer.token_requests(&peer.basic_client.id, "client_secret_basic"),
        0
    );
    let logs = exporter.logs();
    for configured in [&localhost, &slash] {
        let detail = format!(
            "discovery: the metadata's issuer \\\"{}\\\" is not the configured issuer \\\"{configured}\\\"",
            peer.issuer
        );
        assert!(logs.contains(&detail), "expected {detail}\n---\n{logs}");
    }
}

/// The discovery example of docs/configuration.md, as written but for the issuer URL, the
/// client id and its secret, passes `check` against oidc-provider.
#[test]
fn the_documented_discovery_example_works_against_oidc_provider() {
    let Some(peer) = OidcPeer::start(false) else {
        return;
    };
    let docs = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
    )
    .unwrap();
    let marker = "tests/it/peer_discovery.rs runs this example";
    let after = &docs[docs.find(marker).expect("the marked example in docs")..];
    let start = after
        .find("```toml\n")
        .expect("a toml block after the marker")
        + 8;
    let example = &after[start..start + after[start..].find("```").expect("its end")];
    assert!(example.contains("issuer = \"https://login.example.com/realms/corp\""));
    let config = example
        .replace("https://login.example.com/realms/corp", &peer.issuer)
        .replace("monitoring-client", &peer.basic_client.id);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exporter.toml");
    std::fs::write(&path, config).unwrap();
    let output = Binary::new()
        .arg("check")
        .arg("--config.file")
        .arg(&path)
        .env("CORP_IDP_CLIENT_SECRET", &peer.basic_client.secret)
        .run();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("corp-idp"), "{stdout}");
    assert_eq!(
        peer.token_requests(&peer.basic_client.id, "client_secret_basic"),
        1
    );
}
