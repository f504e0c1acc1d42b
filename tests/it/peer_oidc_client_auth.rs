//! Issue 12 §1 against a real authorization server (panva/oidc-provider 9, see
//! `tests/peers/oidc/server.mjs`): the real binary authenticates with `private_key_jwt` (RS256
//! from a PKCS#1 key, ES256 from a SEC1 key), `client_secret_jwt` and `tls_client_auth`, and is
//! refused for a wrong key, a wrong audience, a method the client is not registered for, an
//! unknown, expired or foreign client certificate; oidc-provider refuses a replayed assertion,
//! and the exporter never sends one twice. The OKQ8 certificate-credential example of
//! docs/configuration.md, copied as a new user would, works against it. Issue 25: a client
//! assertion read from `client_assertion_file`, rewritten by the test as its issuer, is sent
//! fresh by every request (then expired, then removed: reason `client_assertion`, nothing
//! sent); certificate-bound tokens over mutual TLS pass `certificate_bound`, unbound ones fail it. Skipped (with a `SKIPPED` line) when Node or the peer
//! is missing; a failure under `OAUTH2_EXPORTER_REQUIRE_PEERS=1`.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::certs::{self, Ca};
use support::peers::{Exporter, OidcPeer};
use support::sample;

/// Upper bound for anything the exporter does within a few 1 s cycles.
const WAIT: Duration = Duration::from_secs(30);

/// `[providers.NAME]` with a 1 s interval, the peer's scope and resource, `token` lines as
/// given, and the canary when `canary` is set.
fn provider(name: &str, peer: &OidcPeer, token: &str, canary: bool) -> String {
    let mut out = format!(
        "[providers.{name}]\ninterval = \"1s\"\ntimeout = \"5s\"\n\n\
         [providers.{name}.token]\nurl = {url:?}\nscopes = [{scope:?}]\n\
         params = {{ resource = {resource:?} }}\n{token}\n\n",
        url = peer.token_url,
        scope = peer.scope,
        resource = peer.resource,
    );
    if canary {
        out.push_str(&format!(
            "[providers.{name}.canary]\nurl = {:?}\nexpected_status = [200]\n\n",
            peer.canary_url
        ));
    }
    out
}

fn private_key(client: &str, key: &Path) -> String {
    format!(
        "client_id = {client:?}\nauth_method = \"private_key_jwt\"\nprivate_key_file = {:?}\n",
        key.display().to_string()
    )
}

/// oidc-provider over TLS, its server certificate from a CA made here, asking for client
/// certificates issued by `client_ca`: the peer and a `ca_file` that trusts it, or `None` when
/// the peer is missing (skipped, see `OidcPeer::start_tls`).
fn start_mtls_peer(dir: &Path, client_ca: &Ca) -> Option<(OidcPeer, PathBuf)> {
    let server_ca = Ca::new("peer server CA");
    let server = server_ca.server();
    certs::write(dir, "server.crt", &server.cert_pem);
    certs::write(dir, "server.key", &server.key_pem);
    certs::write(dir, "client-ca.crt", &client_ca.cert_pem);
    let peer = OidcPeer::start_tls(dir)?;
    Some((peer, certs::write(dir, "ca.crt", &server_ca.cert_pem)))
}

/// `[providers.NAME.tls]` trusting `ca_file` and presenting the client certificate `cert` with
/// its `key`.
fn tls_table(name: &str, ca_file: &Path, cert: &Path, key: &Path) -> String {
    format!(
        "[providers.{name}.tls]\nca_file = {:?}\nclient_cert_file = {:?}\nclient_key_file = {:?}\n\n",
        ca_file.display().to_string(),
        cert.display().to_string(),
        key.display().to_string()
    )
}

/// The base64 body lines of a PEM file: none of them may appear in any output.
fn pem_body_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with("-----") && line.len() >= 16)
        .map(str::to_string)
        .collect()
}

fn value(metrics: &str, series: &str) -> f64 {
    sample(metrics, series).unwrap_or(0.0)
}

/// Whether `provider`'s last probe succeeded and it has sent at least two token requests.
fn succeeded_twice(metrics: &str, provider: &str) -> bool {
    sample(
        metrics,
        &format!("oauth2_probe_success{{provider=\"{provider}\"}}"),
    ) == Some(1.0)
        && value(
            metrics,
            &format!("oauth2_token_requests_total{{provider=\"{provider}\"}}"),
        ) >= 2.0
}

#[test]
fn private_key_jwt_and_client_secret_jwt_get_tokens_with_fresh_assertions() {
    let Some(peer) = OidcPeer::start(false) else {
        return;
    };
    let rsa = peer.client_key("rsa.key");
    let ec = peer.client_key("ec.key");
    let hmac = &peer.secret_jwt_client;
    let config = [
        provider(
            "rs256",
            &peer,
            &private_key("private-key-rs256-client", &rsa),
            true,
        ),
        // ES256 by default for the EC key; with `reuse`, tokens are held between cycles.
        provider(
            "es256",
            &peer,
            &format!(
                "{}reuse = true\nrefresh_before = \"80s\"\n",
                private_key("private-key-es256-client", &ec)
            ),
            true,
        ),
        provider(
            "hs256",
            &peer,
            &format!(
                "client_id = {:?}\nclient_secret = {:?}\nauth_method = \"client_secret_jwt\"\nassertion_lifetime = \"2m\"\n",
                hmac.id, hmac.secret
            ),
            true,
        ),
    ]
    .concat();
    let exporter = Exporter::start(&config);
    let m = exporter.wait_for_metrics(
        "three token requests each for rs256 and hs256, es256 successful",
        |m| {
            ["rs256", "hs256"].iter().all(|p| {
                support::provider_sample(m, "oauth2_token_requests_total", p).unwrap_or(0.0) >= 3.0
            }) && ["rs256", "es256", "hs256"].iter().all(|p| {
                sample(m, &format!("oauth2_probe_success{{provider=\"{p}\"}}")) == Some(1.0)
            })
        },
        WAIT,
    );
    for p in ["rs256", "es256", "hs256"] {
        let failures: Vec<&str> = m
            .lines()
            .filter(|l| l.starts_with("oauth2_token_request_failures_total{"))
            .filter(|l| l.contains(&format!("provider=\"{p}\"")) && !l.ends_with(" 0"))
            .collect();
        assert!(failures.is_empty(), "{p}: {failures:?}");
        assert!(
            value(
                &m,
                &format!("oauth2_canary_responses_total{{code=\"200\",provider=\"{p}\"}}")
            ) >= 1.0,
            "{p}: the canary accepted the token"
        );
    }
    // `reuse` holds the ES256 token: one request, several cycles.
    assert_eq!(
        value(&m, "oauth2_token_requests_total{provider=\"es256\"}"),
        1.0
    );

    // The server side: what each assertion said, and no jti sent twice.
    for (client, alg, lifetime) in [
        ("private-key-rs256-client", "RS256", 300),
        ("private-key-es256-client", "ES256", 300),
        ("secret-jwt-client", "HS256", 120),
    ] {
        let seen = peer.assertions(client);
        assert!(seen["count"].as_u64().unwrap_or(0) >= 1, "{client}: {seen}");
        assert_eq!(seen["reused_jti"], 0, "{client}: a jti was sent twice");
        assert_eq!(seen["header"]["alg"], alg, "{client}");
        let claims = &seen["claims"];
        assert_eq!(claims["iss"], client);
        assert_eq!(claims["sub"], client);
        assert_eq!(claims["aud"], peer.token_url.as_str(), "default audience");
        let iat = claims["iat"].as_u64().unwrap();
        assert_eq!(claims["nbf"].as_u64(), Some(iat));
        assert_eq!(claims["exp"].as_u64(), Some(iat + lifetime), "{client}");
        // oidc-provider refuses the same assertion a second time (RFC 7523 section 3 item 7).
        let last = seen["last"].as_str().unwrap();
        let (status, body) = peer.replay_assertion(client, last);
        assert_eq!(status, 401, "{client}: replayed assertion: {body}");
        assert!(body.contains("invalid_client"), "{body}");
    }
    assert_eq!(peer.stats()["secret_with_assertion"], 0);
    assert!(peer.assertions("private-key-rs256-client")["count"].as_u64() >= Some(3));

    // The keys and the HS256 secret appear nowhere the exporter writes.
    let logs = exporter.logs();
    for line in pem_body_lines(&rsa).iter().chain(&pem_body_lines(&ec)) {
        assert!(
            !logs.contains(line.as_str()),
            "private key material in the logs"
        );
        assert!(
            !m.contains(line.as_str()),
            "private key material in /metrics"
        );
    }
    assert!(!logs.contains(&hmac.secret));
}

#[test]
fn wrong_key_audience_or_method_is_invalid_client() {
    let Some(peer) = OidcPeer::start(false) else {
        return;
    };
    let rsa = peer.client_key("rsa.key");
    let config = [
        // A key that is not the registered one.
        provider(
            "wrong_key",
            &peer,
            &private_key(
                "private-key-rs256-client",
                &peer.client_key("unregistered.key"),
            ),
            true,
        ),
        // The right key, but an audience that is not this server.
        provider(
            "wrong_audience",
            &peer,
            &format!(
                "{}assertion_audience = \"https://login.elsewhere.example/token\"\n",
                private_key("private-key-rs256-client", &rsa)
            ),
            false,
        ),
        // A client registered for client_secret_post signing a client_secret_jwt.
        provider(
            "post_as_jwt",
            &peer,
            &format!(
                "client_id = {:?}\nclient_secret = {:?}\nauth_method = \"client_secret_jwt\"\n",
                peer.post_client.id, peer.post_client.secret
            ),
            false,
        ),
        // A client registered for client_secret_jwt sending a private_key_jwt.
        provider(
            "jwt_as_private_key",
            &peer,
            &private_key(&peer.secret_jwt_client.id, &rsa),
            false,
        ),
    ]
    .concat();
    let exporter = Exporter::start(&config);
    let names = [
        "wrong_key",
        "wrong_audience",
        "post_as_jwt",
        "jwt_as_private_key",
    ];
    let m = exporter.wait_for_metrics(
        "two invalid_client failures per provider",
        |m| {
            names.iter().all(|p| {
                value(
                    m,
                    &format!(
                        "oauth2_token_request_failures_total{{provider=\"{p}\",reason=\"invalid_client\"}}"
                    ),
                ) >= 2.0
            })
        },
        WAIT,
    );
    for p in names {
        support::assert_probe_failed(&m, p);
        assert_eq!(
            value(
                &m,
                &format!(
                    "oauth2_token_request_failures_total{{provider=\"{p}\",reason=\"client_assertion\"}}"
                )
            ),
            0.0,
            "{p}: the assertion was made; the server refused it"
        );
    }
    // Control: the server really received the assertions it refused.
    let wrong = peer.assertions("private-key-rs256-client");
    assert!(wrong["count"].as_u64() >= Some(4), "{wrong}");
    assert_eq!(peer.canary_answers(200), 0);
}

#[test]
fn tls_client_auth_with_the_registered_certificate_only() {
    let dir = tempfile::tempdir().unwrap();
    let client_ca = Ca::new("peer client CA");
    let foreign_ca = Ca::new("someone else's CA");
    let Some((peer, ca_file)) = start_mtls_peer(dir.path(), &client_ca) else {
        return;
    };
    let leaves = [
        ("registered", client_ca.client("oauth2-exporter-mtls")),
        ("other_subject", client_ca.client("someone-else")),
        ("unknown_ca", foreign_ca.client("oauth2-exporter-mtls")),
        ("expired", client_ca.expired_client("oauth2-exporter-mtls")),
    ];
    let mut config = String::new();
    for (name, leaf) in &leaves {
        let cert = certs::write(dir.path(), &format!("{name}.crt"), &leaf.cert_pem);
        let key = certs::write(dir.path(), &format!("{name}.key"), &leaf.key_pem);
        config.push_str(&provider(
            name,
            &peer,
            "client_id = \"mtls-client\"\nauth_method = \"tls_client_auth\"\n",
            *name == "registered",
        ));
        config.push_str(&tls_table(name, &ca_file, &cert, &key));
    }
    let exporter = Exporter::start(&config);
    let refused = ["other_subject", "unknown_ca", "expired"];
    let m = exporter.wait_for_metrics(
        "the registered certificate succeeds, the others are invalid_client twice",
        |m| {
            succeeded_twice(m, "registered")
                && refused.iter().all(|p| {
                    value(
                        m,
                        &format!(
                            "oauth2_token_request_failures_total{{provider=\"{p}\",reason=\"invalid_client\"}}"
                        ),
                    ) >= 2.0
                })
        },
        WAIT,
    );
    assert!(
        value(
            &m,
            "oauth2_canary_responses_total{code=\"200\",provider=\"registered\"}"
        ) >= 1.0
    );
    for p in refused {
        support::assert_probe_failed(&m, p);
    }
    let logs = exporter.logs();
    for (_, leaf) in &leaves {
        for line in leaf.key_pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!logs.contains(line), "client key material in the logs");
        }
    }
}

/// "A configuration copied from the README example works against oidc-provider" (issue 12):
/// the OKQ8 certificate-credential example of docs/configuration.md with only its placeholders
/// filled in (the token URL, client id, key and certificate paths, scope and canary URL) and a
/// short interval.
#[test]
fn the_documented_certificate_credential_example_works() {
    let Some(peer) = OidcPeer::start(false) else {
        return;
    };
    let docs = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
    )
    .unwrap();
    let section = docs
        .split("### OKQ8 with a certificate credential")
        .nth(1)
        .expect("the example's section in docs/configuration.md");
    let example = section
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a toml block in the section");

    let dir = tempfile::tempdir().unwrap();
    let key_pem = std::fs::read_to_string(peer.client_key("rsa.pkcs8.key")).unwrap();
    let key = rcgen::KeyPair::from_pem(&key_pem).unwrap();
    let params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    let key_file = certs::write(dir.path(), "okq8.key", &key_pem);
    let cert_file = certs::write(
        dir.path(),
        "okq8.crt",
        &params.self_signed(&key).unwrap().pem(),
    );
    let mut config = example.to_string();
    for (placeholder, value) in [
        (
            "https://login.microsoftonline.com/a53d724c-15ea-4469-a987-82a5b30ec167/oauth2/v2.0/token",
            peer.token_url.clone(),
        ),
        (
            "YOUR-OKQ8-CLIENT-ID",
            "private-key-rs256-client".to_string(),
        ),
        ("/run/secrets/okq8.key", key_file.display().to_string()),
        ("/run/secrets/okq8.crt", cert_file.display().to_string()),
        ("api://apim-xxxxx-xxxxx-api/.default", peer.scope.clone()),
        ("https://YOUR-OKQ8-API/...", peer.canary_url.clone()),
        ("interval = \"5m\"", "interval = \"1s\"".to_string()),
    ] {
        assert!(
            config.contains(placeholder),
            "{placeholder} not in the example:\n{example}"
        );
        config = config.replace(placeholder, &value);
    }
    let exporter = Exporter::start(&config);
    let m = exporter.wait_for_metrics(
        "the documented example succeeds twice",
        |m| succeeded_twice(m, "okq8"),
        WAIT,
    );
    assert!(
        value(
            &m,
            "oauth2_canary_responses_total{code=\"200\",provider=\"okq8\"}"
        ) >= 1.0,
        "the canary accepted the token"
    );
    // The certificate's thumbprints were sent, as Entra ID needs them.
    let header = &peer.assertions("private-key-rs256-client")["header"];
    assert!(
        header["x5t"].is_string() && header["x5t#S256"].is_string(),
        "{header}"
    );
}

/// An RS256 JWT signed here with the PKCS#8 RSA key at `key`: the test plays the external
/// issuer of a workload identity token (Kubernetes, a CI system), whose key the client is
/// registered with.
fn signed_by(key: &Path, claims: &serde_json::Value) -> String {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let pem = std::fs::read_to_string(key).unwrap();
    let der = rcgen::KeyPair::from_pem(&pem).unwrap().serialize_der();
    let pair = RsaKeyPair::from_pkcs8(&der).unwrap();
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0; pair.public_modulus_len()];
    pair.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )
    .unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn unix_now() -> u64 {
    support::unix_now() as u64
}

/// Issue 25 §2 against oidc-provider: `auth_method = "client_assertion"` sends the JWT in
/// `client_assertion_file` for a `private_key_jwt` client, the test playing its issuer. Each
/// on-demand probe sends what the file holds then: rewritten between probes, every one is
/// accepted (oidc-provider refuses a jti it has seen, so a cached copy would fail), and sent
/// unchanged once more it is refused as a replay. Expired, then removed, it is reason
/// `client_assertion` and the server hears nothing.
#[test]
fn a_client_assertion_file_rewritten_by_its_issuer_is_sent_fresh_each_time() {
    let Some(peer) = OidcPeer::start(false) else {
        return;
    };
    let client = "private-key-rs256-client";
    let key = peer.client_key("rsa.pkcs8.key");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("azure-identity-token");
    let issue = |n: u32, exp: u64| {
        let jwt = signed_by(
            &key,
            &serde_json::json!({
                "iss": client, "sub": client, "aud": peer.token_url, "exp": exp,
                "iat": unix_now(), "jti": format!("workload-{n}-{}", unix_now()),
            }),
        );
        std::fs::write(&file, format!("{jwt}\n")).unwrap();
        jwt
    };
    let first = issue(1, unix_now() + 120);
    // A long interval: the on-demand probes below are the cycles (a scheduled one falls
    // within the first week at random, and this test lasts seconds); no back-off, so every
    // probe makes an attempt.
    let config = format!(
        "[web]\nprobe_min_interval = \"0s\"\n\n{}",
        provider(
            "federated",
            &peer,
            &format!(
                "client_id = {client:?}\nauth_method = \"client_assertion\"\nclient_assertion_file = {:?}\n",
                file.display().to_string()
            ),
            true,
        )
        .replace("interval = \"1s\"", "interval = \"168h\"\nmax_backoff = \"0s\"")
    );
    let exporter = Exporter::start(&config);
    let probe = || {
        let response = exporter.get("/probe?provider=federated&debug=true");
        assert_eq!(response.status, 200, "{}", response.body);
        response.body
    };
    let succeeded = |trace: &str| trace.contains("result: token obtained");

    let trace = probe();
    assert!(succeeded(&trace), "{trace}");
    assert_eq!(peer.assertions(client)["last"], first.as_str());
    let second = issue(2, unix_now() + 120);
    let trace = probe();
    assert!(succeeded(&trace), "{trace}");
    let seen = peer.assertions(client);
    assert_eq!(seen["last"], second.as_str(), "the rewritten file was sent");
    assert_eq!(seen["count"], 2);
    assert_eq!(seen["reused_jti"], 0);
    assert_eq!(
        peer.canary_answers(200),
        2,
        "the canary accepted both tokens"
    );
    // Not rewritten: sent again as it is, and oidc-provider refuses the replayed jti.
    let trace = probe();
    assert!(
        trace.contains("reason invalid_client"),
        "a replay must be refused: {trace}"
    );
    assert_eq!(peer.assertions(client)["reused_jti"], 1);

    // Expired: nothing reaches the server.
    let sent = peer.assertions(client)["count"].as_u64().unwrap();
    issue(3, unix_now() - 10);
    let trace = probe();
    assert!(
        trace.contains(
            "reason client_assertion: cannot make the client assertion: client_assertion_file"
        ) && trace.contains("is expired: its exp is "),
        "{trace}"
    );
    // Removed.
    std::fs::remove_file(&file).unwrap();
    let trace = probe();
    assert!(trace.contains("is missing"), "{trace}");
    assert_eq!(
        peer.assertions(client)["count"].as_u64().unwrap(),
        sent,
        "an expired or missing assertion is not sent"
    );
    let logs = exporter.logs();
    for jwt in [&first, &second] {
        assert!(
            !logs.contains(jwt.rsplit('.').next().unwrap()),
            "an assertion in the logs"
        );
    }
}

/// Issue 25 §4 against oidc-provider with mutual TLS: a client registered with
/// `tls_client_certificate_bound_access_tokens` gets tokens whose `cnf.x5t#S256` is the
/// certificate presented, and `certificate_bound = true` passes; a client without binding gets
/// unbound tokens, and the same expectation fails them with reason `claims` saying so.
#[test]
fn certificate_bound_tokens_over_mutual_tls() {
    use aws_lc_rs::digest;
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let client_ca = Ca::new("peer client CA");
    let Some((peer, ca_file)) = start_mtls_peer(dir.path(), &client_ca) else {
        return;
    };
    let leaf = client_ca.client("oauth2-exporter-mtls");
    let cert = certs::write(dir.path(), "client.crt", &leaf.cert_pem);
    let key = certs::write(dir.path(), "client.key", &leaf.key_pem);
    let der = {
        use rustls_pki_types::pem::PemObject as _;
        rustls_pki_types::CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()
    };
    let thumbprint = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(digest::digest(&digest::SHA256, &der));
    let mut config = String::from("[web]\nprobe_min_interval = \"0s\"\n\n");
    for (name, client) in [("bound", "mtls-bound-client"), ("unbound", "mtls-client")] {
        config.push_str(&provider(
            name,
            &peer,
            &format!("client_id = {client:?}\nauth_method = \"tls_client_auth\"\n"),
            true,
        ));
        config.push_str(&format!(
            "[providers.{name}.token.expect]\ncertificate_bound = true\n\n"
        ));
        config.push_str(&tls_table(name, &ca_file, &cert, &key));
    }
    let exporter = Exporter::start(&config);
    let m = exporter.wait_for_metrics(
        "the bound provider succeeds twice, the unbound one fails with claims twice",
        |m| {
            succeeded_twice(m, "bound")
                && value(
                    m,
                    "oauth2_token_request_failures_total{provider=\"unbound\",reason=\"claims\"}",
                ) >= 2.0
        },
        WAIT,
    );
    assert_eq!(
        sample(&m, "oauth2_probe_success{provider=\"unbound\"}"),
        Some(0.0)
    );
    assert_eq!(
        value(
            &m,
            "oauth2_token_request_failures_total{provider=\"bound\",reason=\"claims\"}"
        ),
        0.0
    );
    // The bound token names the certificate presented, as the test computes its thumbprint.
    let trace = exporter.get("/probe?provider=bound&debug=true").body;
    assert!(
        trace.contains(&format!("\"x5t#S256\": \"{thumbprint}\"")),
        "{trace}"
    );
    let trace = exporter.get("/probe?provider=unbound&debug=true").body;
    assert!(
        trace.contains("reason claims: token claims: `cnf.x5t#S256` missing: the token is not bound to the client certificate (certificate_bound)"),
        "{trace}"
    );
}
