//! Issue 22: a TLS client certificate renewed on disk (`[tls] client_cert_file` and
//! `client_key_file`, as cert-manager or an operator renews them) is presented from the next
//! cycle on, by the running binary, without a restart or reload; a certificate whose key is not
//! in place yet fails the token phase with reason `tls` naming both files.

use crate::support;

use support::certs::{self, Ca};
use support::{Binary, FakeServer, Provider, Reply, WAIT, sample};

const SUCCESS: &str = r#"oauth2_probe_success{provider="mtls"}"#;

/// Whether the provider has failed a token request with reason `tls`.
fn failed_with_tls(metrics: &str) -> bool {
    metrics.lines().any(|line| {
        line.starts_with("oauth2_token_request_failures_total{")
            && line.contains(r#"provider="mtls""#)
            && line.contains(r#"reason="tls""#)
            && !line.ends_with(" 0")
    })
}

/// The token endpoint trusts only the new client CA: the certificate the exporter started with
/// (from the retired CA) is refused, the renewed one is accepted. The cycle after the renewal
/// passes; in between, a new certificate without its key fails naming both files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_renewed_on_disk_is_presented_from_the_next_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = Ca::new("issue 22 server CA");
    let retired_ca = Ca::new("issue 22 retired client CA");
    let client_ca = Ca::new("issue 22 client CA");
    let server = server_ca.server();
    let idp = FakeServer::start_mtls(
        &server.cert_pem,
        &server.key_pem,
        &client_ca.cert_pem,
        |_| Reply::token("mtls-token", 3600),
    )
    .await;
    let old = retired_ca.client("oauth2-exporter");
    let renewed = client_ca.client("oauth2-exporter");
    let ca_file = certs::write(dir.path(), "server-ca.pem", &server_ca.cert_pem);
    let cert_file = certs::write(dir.path(), "client.pem", &old.cert_pem);
    let key_file = certs::write(dir.path(), "client.key", &old.key_pem);
    let config = certs::write(
        dir.path(),
        "exporter.toml",
        &Provider::new("mtls", &idp.url("/token"))
            .interval("300ms")
            .timeout("5s")
            .keyless("exporter", "tls_client_auth")
            .tls_file("ca_file", &ca_file)
            .tls_file("client_cert_file", &cert_file)
            .tls_file("client_key_file", &key_file)
            .toml(),
    );
    let mut exporter = Binary::new().config(&config).listen_loopback().spawn();

    // The retired certificate is refused at the handshake.
    exporter
        .wait_for_metrics("the retired certificate refused", WAIT, |m| {
            sample(m, SUCCESS) == Some(0.0) && failed_with_tls(m)
        })
        .await;
    assert_eq!(idp.count("/token"), 0, "no request got past the handshake");

    // The new certificate lands first, its key a moment later: in between, the pair on disk
    // does not fit together, and the cycle says so, naming both files.
    std::fs::write(&cert_file, &renewed.cert_pem).unwrap();
    let logs = exporter.wait_for_log("do not match", 1).await;
    let line = logs
        .lines()
        .find(|line| line.contains("do not match"))
        .unwrap();
    assert!(
        line.contains("reason=tls")
            && line.contains(&cert_file.display().to_string())
            && line.contains(&key_file.display().to_string()),
        "{line}"
    );
    assert!(!logs.contains("PRIVATE KEY"), "{logs}");

    std::fs::write(&key_file, &renewed.key_pem).unwrap();
    exporter
        .wait_for_metrics("the renewed certificate accepted", WAIT, |m| {
            sample(m, SUCCESS) == Some(1.0)
        })
        .await;
    assert!(idp.count("/token") >= 1);
    exporter
        .wait_for_log("client certificate renewed on disk", 1)
        .await;
    exporter.stop().await;
}
