//! The real exporter binary against a real OAuth2 server (panva/oidc-provider 9 on Node, see
//! `tests/peers/oidc/server.mjs`), issue 3 section 1: fakes written by us only prove we agree with
//! ourselves. Skipped (with a `SKIPPED` line) when Node or the peer's `node_modules` is missing;
//! a failure instead under `OAUTH2_EXPORTER_REQUIRE_PEERS=1`. Install with `scripts/install-peers`.

use crate::support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::peers::{Exporter, OidcClient, OidcPeer, http_request, jwt_claims};
use support::sample;

/// Upper bound for anything the exporter does within a few 1 s cycles (start-up jitter spreads the
/// first cycle over one interval; CI's 2 cores are shared with other test binaries).
const WAIT: Duration = Duration::from_secs(30);

/// One `[providers.NAME]` section with a 1 s interval. `canary_url` None: token flow only.
struct Provider<'a> {
    name: &'a str,
    token_url: &'a str,
    client: &'a OidcClient,
    secret: &'a str,
    auth_method: &'a str,
    scopes: Vec<&'a str>,
    resource: &'a str,
    canary_url: Option<&'a str>,
    /// Extra lines for `[providers.NAME.token]`.
    token_extra: &'a str,
}

impl Provider<'_> {
    fn toml(&self) -> String {
        let scopes: Vec<String> = self.scopes.iter().map(|s| format!("{s:?}")).collect();
        let mut out = format!(
            "[providers.{name}]\ninterval = \"1s\"\ntimeout = \"5s\"\n\n\
             [providers.{name}.token]\nurl = {url:?}\ngrant_type = \"client_credentials\"\n\
             client_id = {id:?}\nclient_secret = {secret:?}\nauth_method = {method:?}\n\
             scopes = [{scopes}]\nparams = {{ resource = {resource:?} }}\n{extra}\n",
            name = self.name,
            url = self.token_url,
            id = self.client.id,
            secret = self.secret,
            method = self.auth_method,
            scopes = scopes.join(", "),
            resource = self.resource,
            extra = self.token_extra,
        );
        if let Some(canary) = self.canary_url {
            out.push_str(&format!(
                "[providers.{name}.canary]\nurl = {canary:?}\nmethod = \"GET\"\n\
                 expected_status = [200]\n\n",
                name = self.name
            ));
        }
        out
    }
}

/// The provider every test starts from: `client` with its own secret and registered method,
/// scope `api:read`, the peer's resource and canary.
fn provider<'a>(name: &'a str, peer: &'a OidcPeer, client: &'a OidcClient) -> Provider<'a> {
    let auth_method = if client.id == peer.basic_client.id {
        "client_secret_basic"
    } else {
        "client_secret_post"
    };
    Provider {
        name,
        token_url: &peer.token_url,
        client,
        secret: &client.secret,
        auth_method,
        scopes: vec![peer.scope.as_str()],
        resource: &peer.resource,
        canary_url: Some(&peer.canary_url),
        token_extra: "",
    }
}

fn config(providers: &[Provider]) -> String {
    providers.iter().map(Provider::toml).collect()
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// Asserts that no line of `oauth2_token_request_failures_total` exists for `provider`.
fn assert_no_token_failures(metrics: &str, provider: &str) {
    let label = format!("provider=\"{provider}\"");
    let failures: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("oauth2_token_request_failures_total{") && l.contains(&label))
        .filter(|l| !l.ends_with(" 0"))
        .collect();
    assert!(
        failures.is_empty(),
        "unexpected token failures for {provider}: {failures:?}"
    );
}

#[test]
fn basic_and_post_clients_succeed_side_by_side_on_one_token_url() {
    let Some(peer) = OidcPeer::start(false) else {
        return;
    };
    // Both providers use the same token URL; the peer rejects a method the client did not
    // register, so a per-URL auth-method cache (Go oauth2's bug) would fail one of them.
    let exporter = Exporter::start(&config(&[
        provider("basic", &peer, &peer.basic_client),
        provider("post", &peer, &peer.post_client),
    ]));
    let m = exporter.wait_for_metrics(
        "three token requests each, both probes successful",
        |m| {
            ["basic", "post"].iter().all(|p| {
                support::provider_sample(m, "oauth2_token_requests_total", p)
                    .is_some_and(|v| v >= 3.0)
                    && sample(m, &format!("oauth2_probe_success{{provider=\"{p}\"}}")) == Some(1.0)
            })
        },
        WAIT,
    );
    for p in ["basic", "post"] {
        assert_no_token_failures(&m, p);
        assert_eq!(
            sample(&m, &format!("oauth2_token_valid{{provider=\"{p}\"}}")),
            Some(1.0)
        );
        let ok = sample(
            &m,
            &format!("oauth2_canary_responses_total{{code=\"200\",provider=\"{p}\"}}"),
        );
        assert!(
            ok.is_some_and(|v| v >= 1.0),
            "{p}: canary 200 not counted: {ok:?}"
        );
        let lifetime = sample(
            &m,
            &format!("oauth2_token_lifetime_seconds{{provider=\"{p}\"}}"),
        );
        assert_eq!(
            lifetime,
            Some(peer.ttl as f64),
            "{p}: lifetime = expires_in"
        );
    }
    // The server side agrees: each client only ever used its registered method.
    assert!(peer.token_requests("basic-client", "client_secret_basic") >= 3);
    assert!(peer.token_requests("post-client", "client_secret_post") >= 3);
    assert_eq!(peer.token_requests("basic-client", "client_secret_post"), 0);
    assert_eq!(peer.token_requests("post-client", "client_secret_basic"), 0);
    assert_eq!(peer.canary_answers(401), 0);
}

#[test]
fn wrong_secret_and_wrong_auth_method_are_invalid_client_and_token_401s() {
    let Some(peer) = OidcPeer::start(false) else {
        return;
    };
    let wrong = "not-the-secret-Zq8xW3";
    let mut bad_basic = provider("bad_basic", &peer, &peer.basic_client);
    bad_basic.secret = wrong;
    let mut bad_post = provider("bad_post", &peer, &peer.post_client);
    bad_post.secret = wrong;
    // Right secret, but the method the client did not register.
    let mut mismatch = provider("mismatch", &peer, &peer.post_client);
    mismatch.auth_method = "client_secret_basic";
    let exporter = Exporter::start(&config(&[bad_basic, bad_post, mismatch]));

    let names = ["bad_basic", "bad_post", "mismatch"];
    let m = exporter.wait_for_metrics(
        "two invalid_client failures and token 401s per provider",
        |m| {
            names.iter().all(|p| {
                let f = format!("oauth2_token_request_failures_total{{provider=\"{p}\",reason=\"invalid_client\"}}");
                let u = format!("oauth2_unauthorized_responses_total{{phase=\"token\",provider=\"{p}\"}}");
                sample(m, &f).is_some_and(|v| v >= 2.0) && sample(m, &u).is_some_and(|v| v >= 2.0)
            })
        },
        WAIT,
    );
    for p in names {
        support::assert_probe_failed(&m, p);
        assert_eq!(
            sample(&m, &format!("oauth2_token_valid{{provider=\"{p}\"}}")),
            Some(0.0),
            "{p}"
        );
        // Never got a token, so the canary is skipped, not sent.
        let skipped = sample(
            &m,
            &format!(
                "oauth2_canary_request_failures_total{{provider=\"{p}\",reason=\"no_token\"}}"
            ),
        );
        assert!(
            skipped.is_some_and(|v| v >= 1.0),
            "{p}: canary no_token not counted: {skipped:?}"
        );
        let sent = sample(
            &m,
            &format!("oauth2_canary_requests_total{{provider=\"{p}\"}}"),
        );
        assert_eq!(sent, Some(0.0), "{p}: a canary was sent without a token");
    }
    assert_eq!(peer.canary_answers(200) + peer.canary_answers(401), 0);
    // The rejected secrets and the real ones never leak into logs or metrics.
    let logs = exporter.logs();
    for secret in [wrong, &peer.basic_client.secret, &peer.post_client.secret] {
        assert!(
            !logs.contains(secret),
            "a client secret appears in the exporter's logs"
        );
        assert!(!m.contains(secret), "a client secret appears in /metrics");
    }
}

#[test]
fn scope_the_client_may_not_have_is_invalid_scope() {
    let Some(peer) = OidcPeer::start(false) else {
        return;
    };
    let forbidden = [peer.scope.as_str(), peer.forbidden_scope.as_str()];
    let mut greedy = provider("greedy", &peer, &peer.basic_client);
    greedy.scopes = forbidden.to_vec();
    let exporter = Exporter::start(&config(&[greedy]));
    let m = exporter.wait_for_metrics(
        "an invalid_scope failure",
        |m| {
            sample(
                m,
                "oauth2_token_request_failures_total{provider=\"greedy\",reason=\"invalid_scope\"}",
            )
            .is_some_and(|v| v >= 1.0)
        },
        WAIT,
    );
    // 400, not 401: the 401 rate must not count a scope problem.
    let token_401 = sample(
        &m,
        "oauth2_unauthorized_responses_total{phase=\"token\",provider=\"greedy\"}",
    );
    assert_eq!(token_401.unwrap_or(0.0), 0.0);
    assert_eq!(
        sample(&m, "oauth2_probe_success{provider=\"greedy\"}"),
        Some(0.0)
    );
    // The peer really refuses it (so this test cannot pass on an exporter that invents reasons).
    let (status, body) = peer.request_token(&peer.basic_client, true, &forbidden.join(" "));
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
}

#[test]
fn jwt_exp_and_expires_in_agree() {
    let Some(peer) = OidcPeer::start(false) else {
        return;
    };
    // Same client twice; the second provider is told to read the lifetime from a field the server
    // does not send, so it must fall back to the JWT's `exp` claim.
    let by_expires_in = provider("by_expires_in", &peer, &peer.post_client);
    let mut by_exp = provider("by_exp", &peer, &peer.post_client);
    by_exp.token_extra =
        "[providers.by_exp.token.response]\nexpires_in = \"not_sent_by_the_server\"\n";
    let exporter = Exporter::start(&config(&[by_expires_in, by_exp]));
    exporter.wait_for_metrics(
        "a token lifetime for both providers",
        |m| {
            ["by_expires_in", "by_exp"].iter().all(|p| {
                sample(
                    m,
                    &format!("oauth2_token_lifetime_seconds{{provider=\"{p}\"}}"),
                )
                .is_some()
            })
        },
        WAIT,
    );

    // A token fetched by the test itself: exp - iat is the configured TTL and expires_in says
    // the same.
    let (status, token) = peer.request_token(&peer.post_client, false, &peer.scope);
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["expires_in"].as_u64(), Some(peer.ttl));
    let claims = jwt_claims(token["access_token"].as_str().expect("access_token"));
    let exp = claims["exp"].as_f64().expect("exp claim");
    assert_eq!(
        exp - claims["iat"].as_f64().expect("iat claim"),
        peer.ttl as f64
    );
    assert_eq!(claims["iss"].as_str(), Some(peer.issuer.as_str()));

    // The exporter's tokens are refreshed every 1 s cycle: the next scrape shows tokens issued
    // within about one interval of ours, so their expiry is within a couple of seconds of `exp`.
    let m = exporter.metrics();
    for p in ["by_expires_in", "by_exp"] {
        let lifetime = sample(
            &m,
            &format!("oauth2_token_lifetime_seconds{{provider=\"{p}\"}}"),
        )
        .expect("lifetime");
        assert!(
            (lifetime - peer.ttl as f64).abs() <= 1.0,
            "{p}: lifetime {lifetime} vs ttl {}",
            peer.ttl
        );
        let expiry = sample(
            &m,
            &format!("oauth2_token_expiry_timestamp_seconds{{provider=\"{p}\"}}"),
        )
        .expect("expiry timestamp");
        assert!(
            (expiry - exp).abs() <= 3.0,
            "{p}: expiry {expiry} vs the JWT's exp {exp}"
        );
        let left = sample(
            &m,
            &format!("oauth2_token_expires_in_seconds{{provider=\"{p}\"}}"),
        )
        .expect("expires_in gauge");
        assert!(
            left > peer.ttl as f64 - 5.0 && left <= peer.ttl as f64,
            "{p}: expires in {left}"
        );
    }
    let gap = (sample(
        &m,
        "oauth2_token_expiry_timestamp_seconds{provider=\"by_exp\"}",
    )
    .unwrap_or(0.0)
        - sample(
            &m,
            "oauth2_token_expiry_timestamp_seconds{provider=\"by_expires_in\"}",
        )
        .unwrap_or(0.0))
    .abs();
    assert!(
        gap <= 3.0,
        "exp-derived and expires_in-derived expiries differ by {gap} s"
    );
}

#[test]
fn opaque_tokens_work_with_expires_in_alone() {
    let Some(peer) = OidcPeer::start(true) else {
        return;
    };
    let (status, token) = peer.request_token(&peer.basic_client, true, &peer.scope);
    assert_eq!(status, 200, "{token}");
    let value = token["access_token"].as_str().expect("access_token");
    assert!(
        !value.contains('.'),
        "the peer should issue opaque tokens, got a JWT-like value"
    );

    let exporter = Exporter::start(&config(&[provider("opaque", &peer, &peer.basic_client)]));
    let m = exporter.wait_for_metrics(
        "a successful probe with an opaque token",
        |m| sample(m, "oauth2_probe_success{provider=\"opaque\"}") == Some(1.0),
        WAIT,
    );
    let before = now_secs();
    assert_eq!(
        sample(&m, "oauth2_token_lifetime_seconds{provider=\"opaque\"}"),
        Some(peer.ttl as f64)
    );
    let expiry = sample(
        &m,
        "oauth2_token_expiry_timestamp_seconds{provider=\"opaque\"}",
    )
    .expect("expiry");
    // Issued within the last cycle or two: expiry ~ now + ttl.
    assert!(
        (expiry - (before + peer.ttl as f64)).abs() <= 3.0,
        "expiry {expiry} vs now + ttl {}",
        before + peer.ttl as f64
    );
    assert_eq!(
        sample(&m, "oauth2_token_valid{provider=\"opaque\"}"),
        Some(1.0)
    );
    assert!(
        sample(
            &m,
            "oauth2_canary_responses_total{code=\"200\",provider=\"opaque\"}"
        )
        .is_some_and(|v| v >= 1.0)
    );
    assert_no_token_failures(&m, "opaque");
    assert!(peer.canary_answers(200) >= 1);
}

/// Waits until `provider`'s canary 401s are counted in every family that should count them.
fn assert_canary_401s_counted(exporter: &Exporter, provider: &str) -> String {
    let m = exporter.wait_for_metrics(
        "canary 401s counted",
        |m| {
            [
                format!("oauth2_canary_request_failures_total{{provider=\"{provider}\",reason=\"unauthorized\"}}"),
                format!("oauth2_unauthorized_responses_total{{phase=\"canary\",provider=\"{provider}\"}}"),
                format!("oauth2_canary_responses_total{{code=\"401\",provider=\"{provider}\"}}"),
            ]
            .iter()
            .all(|s| sample(m, s).is_some_and(|v| v >= 2.0))
        },
        WAIT,
    );
    assert_eq!(
        sample(
            &m,
            &format!("oauth2_probe_success{{provider=\"{provider}\"}}")
        ),
        Some(0.0)
    );
    // The last canary answered 401 with the held token.
    assert_eq!(
        sample(
            &m,
            &format!("oauth2_token_valid{{provider=\"{provider}\"}}")
        ),
        Some(0.0)
    );
    // The token phase itself went fine.
    assert_no_token_failures(&m, provider);
    let token_401 = sample(
        &m,
        &format!("oauth2_unauthorized_responses_total{{phase=\"token\",provider=\"{provider}\"}}"),
    );
    assert_eq!(token_401.unwrap_or(0.0), 0.0);
    m
}

#[test]
fn canary_rejects_a_token_from_another_issuer() {
    let Some(peer) = OidcPeer::start(false) else {
        return;
    };
    // Same signing key, same audience, other issuer: only the `iss` check can reject it.
    let Some(other) = peer.start_sibling() else {
        return;
    };
    let (_, foreign) = other.request_token(&other.basic_client, true, &other.scope);
    let foreign = foreign["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    assert_eq!(
        other.call_canary(&foreign),
        200,
        "the token is good at its own issuer"
    );
    assert_eq!(
        peer.call_canary(&foreign),
        401,
        "the peer's canary must check iss"
    );

    let mut stranger = provider("stranger", &other, &other.basic_client);
    stranger.canary_url = Some(&peer.canary_url);
    let control = provider("control", &peer, &peer.basic_client);
    let exporter = Exporter::start(&config(&[stranger, control]));
    assert_canary_401s_counted(&exporter, "stranger");
    let m = exporter.wait_for_metrics(
        "the control provider succeeding",
        |m| sample(m, "oauth2_probe_success{provider=\"control\"}") == Some(1.0),
        WAIT,
    );
    let control_401 = sample(
        &m,
        "oauth2_canary_responses_total{code=\"401\",provider=\"control\"}",
    );
    assert_eq!(control_401.unwrap_or(0.0), 0.0);
}

/// Fault injection: a loopback HTTP proxy for the token endpoint that flips one character in the
/// middle of the JWT signature of every `access_token` it relays. Stops on drop.
struct TamperingProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    tampered: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl TamperingProxy {
    fn start(upstream: SocketAddr) -> TamperingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let stop = Arc::new(AtomicBool::new(false));
        let tampered = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, tampered) = (stop.clone(), tampered.clone());
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(conn) = conn {
                        // One request per connection; errors just drop that connection.
                        let _ = relay(conn, upstream, &tampered);
                    }
                }
            })
        };
        TamperingProxy {
            addr,
            stop,
            tampered,
            thread: Some(thread),
        }
    }
}

impl Drop for TamperingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn relay(mut conn: TcpStream, upstream: SocketAddr, tampered: &AtomicU64) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = conn.read(&mut buf)?;
        if n == 0 || raw.len() > 64 * 1024 {
            return Ok(());
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or("GET"), parts.next().unwrap_or("/"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = raw[head_end + 4..].to_vec();
    while body.len() < length.min(64 * 1024) {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    let forward: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(k, _)| {
            ["authorization", "content-type", "accept"].contains(&k.to_ascii_lowercase().as_str())
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let response = http_request(upstream, method, path, &forward, &body)?;
    let mut out_body = response.body.clone();
    if response.status == 200 {
        if let Ok(mut json) = serde_json::from_str::<serde_json::Value>(&response.body) {
            if let Some(token) = json["access_token"].as_str() {
                let mut bytes = token.as_bytes().to_vec();
                // Middle of the signature: changes signature bits, never just base64 padding.
                let sig_start = token.rfind('.').map_or(0, |i| i + 1);
                let i = sig_start + (bytes.len() - sig_start) / 2;
                bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
                json["access_token"] = String::from_utf8(bytes).expect("ascii token").into();
                out_body = json.to_string();
                tampered.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    let content_type = response
        .header("content-type")
        .unwrap_or("application/json")
        .to_owned();
    write!(
        conn,
        "HTTP/1.1 {} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{out_body}",
        response.status,
        out_body.len()
    )?;
    conn.flush()
}

#[test]
fn canary_rejects_a_tampered_token() {
    let Some(peer) = OidcPeer::start(false) else {
        return;
    };
    let proxy = TamperingProxy::start(peer.addr);
    // The injection itself works: a relayed token is rejected by the canary, the original is not.
    let (_, good) = peer.request_token(&peer.post_client, false, &peer.scope);
    let good = good["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    assert_eq!(peer.call_canary(&good), 200);

    let proxied_url = format!("http://{}/token", proxy.addr);
    let mut tampered = provider("tampered", &peer, &peer.post_client);
    tampered.token_url = &proxied_url;
    let exporter = Exporter::start(&config(&[tampered]));
    assert_canary_401s_counted(&exporter, "tampered");
    assert!(
        proxy.tampered.load(Ordering::SeqCst) >= 2,
        "the proxy relayed the exporter's tokens"
    );
    assert_eq!(
        peer.canary_answers(200),
        1,
        "only the test's own untampered token passed"
    );
}

/// Issue 23 against the real server: a client whose secret file holds a wrong secret backs off
/// (refused at 0, then after about 2, 4, 8 s at `interval = "1s"`) instead of being refused
/// every second, and once the file holds the right secret the exporter gets a token within
/// seconds, without waiting out the back-off.
#[test]
fn a_wrong_secret_backs_off_and_recovers_within_seconds_of_the_fix() {
    let Some(peer) = OidcPeer::start(false) else {
        return;
    };
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("post-client.secret");
    std::fs::write(&secret_file, "not-the-secret-Bk23\n").unwrap();
    let exporter = Exporter::start(&format!(
        "[providers.rotated]\ninterval = \"1s\"\ntimeout = \"5s\"\n\n\
         [providers.rotated.token]\nurl = {url:?}\nclient_id = {id:?}\n\
         client_secret_file = {file:?}\nscopes = [{scope:?}]\nparams = {{ resource = {resource:?} }}\n",
        url = peer.token_url,
        id = peer.post_client.id,
        file = secret_file.display().to_string(),
        scope = peer.scope,
        resource = peer.resource,
    ));
    let refused = || peer.token_requests(&peer.post_client.id, "client_secret_post");
    let m = exporter.wait_for_metrics(
        "the refusal and the back-off",
        |m| {
            m.contains(
                "oauth2_probe_backoff{phase=\"token\",provider=\"rotated\",reason=\"invalid_client\"} 1",
            )
        },
        WAIT,
    );
    assert_eq!(
        sample(&m, "oauth2_probe_success{provider=\"rotated\"}"),
        Some(0.0)
    );
    let first = std::time::Instant::now();
    let seen = refused();
    // Eight seconds at a 1 s interval: eight refusals before, at most three more now.
    std::thread::sleep(Duration::from_secs(8));
    let more = refused() - seen;
    assert!(more <= 3, "{more} more refusals in {:?}", first.elapsed());

    std::fs::write(&secret_file, format!("{}\n", peer.post_client.secret)).unwrap();
    let fixed = std::time::Instant::now();
    exporter.wait_for_metrics(
        "a token with the corrected secret",
        |m| {
            sample(m, "oauth2_probe_success{provider=\"rotated\"}") == Some(1.0)
                && !m.contains("oauth2_probe_backoff{")
        },
        WAIT,
    );
    assert!(
        fixed.elapsed() < Duration::from_secs(5),
        "recovered {:?} after the secret file was corrected",
        fixed.elapsed()
    );
    let logs = exporter.logs();
    assert!(
        logs.contains("back-off ended: the credentials changed"),
        "{logs}"
    );
    assert!(!logs.contains(&peer.post_client.secret));
}
