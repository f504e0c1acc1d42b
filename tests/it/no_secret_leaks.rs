//! Issue #2's rule "no secret, password or access token ever appears in a log line, error, page
//! or metric, at any level", checked on the real binary at `--log.level trace` against fake
//! identity providers and APIs (loopback) that produce every failure reason, some of them
//! echoing the request (body, Basic header, bearer token) back in their error texts; and on the
//! output of `--config.check` and of configuration errors for files that hold secrets.
//!
//! Each check has a control that makes it able to fail: the fakes really received every
//! secret, the logs really hold the failure lines (with `[redacted]` where an echo was
//! scrubbed), and the needle list finds a planted secret in every encoding it covers.

use crate::support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use support::{
    Binary, FakeServer, Provider, Recorded, Reply, Running, closed_port_url, jwt, sample, unix_now,
};

// Secrets with characters that change under every encoding they travel in (form: space, `+`,
// `&`, `=`, `/`, `%`, non-ASCII; JSON and logfmt: `"` and `\`; Basic: `:`), so each encoding
// is a different needle. TOML literal strings hold them without escaping.
const INLINE_SECRET: &str = r#"inl1ne-S3cr3t "q" p&s=1+2/3 é"#;
const FILE_SECRET: &str = "f1le-S3cr3t:colon%41pct";
const ENV_SECRET: &str = r"env-S3cr3t\back\slash<tag>&amp";
const PASSWORD: &str = r#"pa55-W0rd "two" words\x"#;
const BASIC_SECRET: &str = "bas1c-S3cr3t:co:lon+plus/sl";
const JSON_SECRET: &str = "js0n-S3cr3t\"quote\u{1F511}";
/// In a file that is deleted once probing runs (reason `secret_unavailable`).
const VANISHING_SECRET: &str = "van1sh-S3cr3t-gone";
/// Issued with `token_type: mac`, so rejected (`invalid_response`): never held, never shown.
const REJECTED_TOKEN: &str = "at-rejected-mac-token-Zq9x";
const ENV_VAR: &str = "LEAK_TEST_CLIENT_SECRET";
/// The client secret of `client_secret_jwt` (issue 12): it signs, and is never sent.
const HMAC_SECRET: &str = "hm4c-S3cr3t-signs-never-sent-0123456789";

/// A private key (PKCS#8 PEM) and a certificate for it, made per run.
fn key_and_certificate() -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let params = rcgen::CertificateParams::new(vec!["leak-test.example".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap().pem();
    (key.serialize_pem(), cert)
}

/// A private key as needles (issue 12): each line of its PEM body, and every 24-character slice
/// of the base64 body (at 12-character steps), so a key printed re-wrapped, cut, or in part
/// is found too.
fn key_needles(pem: &str) -> Vec<String> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut needles: Vec<String> = pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(str::to_string)
        .collect();
    let chars: Vec<char> = body.chars().collect();
    let mut start = 0;
    while start + 24 <= chars.len() {
        needles.push(chars[start..start + 24].iter().collect());
        start += 12;
    }
    needles
}

/// A signed JWT (a client assertion, a DPoP proof) as needles: all of it, and its signature,
/// which identifies it as well.
fn jwt_needles<'a>(jwts: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    jwts.into_iter()
        .flat_map(|jwt| {
            let signature = jwt.rsplit('.').next().unwrap_or_default().to_string();
            [jwt.clone(), signature]
        })
        .collect()
}

/// RFC 3986 component encoding (`%20` for a space), as some servers re-encode, and as a
/// password is written in a URL's userinfo.
fn percent(secret: &str) -> String {
    secret
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Every form a secret may take on the wire or in an output format.
fn encodings(secret: &str) -> Vec<String> {
    let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let json = serde_json::to_string(secret).unwrap();
    let json = json.trim_matches('"').to_string();
    let logfmt = secret.replace('\\', "\\\\").replace('"', "\\\"");
    let html = secret
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    let mut all = vec![
        secret.to_string(),
        form,
        json,
        logfmt,
        html,
        percent(secret),
    ];
    all.sort();
    all.dedup();
    all
}

/// The forms of an `Authorization: Basic` header for this client (RFC 6749 2.3.1 encodes both
/// parts first; a sloppy client would not).
fn basic_forms(client_id: &str, secret: &str) -> Vec<String> {
    let form = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let encoded = STANDARD.encode(format!("{}:{}", form(client_id), form(secret)));
    let raw = STANDARD.encode(format!("{client_id}:{secret}"));
    vec![format!("Basic {encoded}"), encoded, raw]
}

/// Fails, listing each with where, if any of `needles` is in any of `outputs`.
fn assert_none_leaked(needles: &BTreeSet<String>, outputs: &[(&str, &str)]) {
    let found = leaks(needles, outputs);
    assert!(found.is_empty(), "secrets leaked:\n{}", found.join("\n"));
}

/// The `Proxy-Authorization` header of `request` (empty without one) and the Basic credentials
/// in it, decoded (empty when it holds none): what the echoing proxies below send back.
fn proxy_credentials(request: &Recorded) -> (String, String) {
    let sent = request.header("proxy-authorization").unwrap_or_default();
    let decoded = sent
        .strip_prefix("Basic ")
        .and_then(|b| STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    (sent.to_string(), decoded)
}

/// The needles found in `haystack`, with where.
fn leaks(needles: &BTreeSet<String>, outputs: &[(&str, &str)]) -> Vec<String> {
    let mut found = Vec::new();
    for needle in needles {
        for (name, text) in outputs {
            if let Some(at) = text.find(needle.as_str()) {
                let line = text[..at].lines().count().max(1);
                let start = text[..at]
                    .char_indices()
                    .rev()
                    .nth(80)
                    .map_or(0, |(i, _)| i);
                let end = (at + needle.len() + 40).min(text.len());
                let end = (end..=text.len())
                    .find(|i| text.is_char_boundary(*i))
                    .unwrap();
                found.push(format!(
                    "{needle:?} in {name} (line {line}): …{}…",
                    &text[start..end]
                ));
            }
        }
    }
    found
}

#[test]
fn needles_cover_every_encoding() {
    // The detector itself must find a secret in each form it claims to cover.
    let needles: BTreeSet<String> = encodings(INLINE_SECRET).into_iter().collect();
    for planted in [
        format!("error=\"x {}\"", INLINE_SECRET.replace('"', "\\\"")),
        "client_secret=inl1ne-S3cr3t+%22q%22+p%26s%3D1%2B2%2F3+%C3%A9".to_string(),
        "inl1ne-S3cr3t%20%22q%22%20p%26s%3D1%2B2%2F3%20%C3%A9".to_string(),
        "<td>inl1ne-S3cr3t &quot;q&quot; p&amp;s=1+2/3 é</td>".to_string(),
    ] {
        assert!(
            !leaks(&needles, &[("planted", &planted)]).is_empty(),
            "not detected: {planted}"
        );
    }
    let basic: BTreeSet<String> = basic_forms("id", BASIC_SECRET).into_iter().collect();
    let header = format!(
        "Basic {}",
        STANDARD.encode("id:bas1c-S3cr3t%3Aco%3Alon%2Bplus%2Fsl")
    );
    assert!(!leaks(&basic, &[("planted", &header)]).is_empty());
}

// ---------------------------------------------------------------------------------------------
// The real binary as a child process.

/// The binary (started by `support::binary`) in `dir` on `127.0.0.1:0` at log level `trace`,
/// with `env` added to the scrubbed environment.
fn start(dir: &Path, config: &Path, env: &[(&str, &str)]) -> Running {
    Binary::new()
        .current_dir(dir)
        .config(config)
        .listen_loopback()
        .log_level("trace")
        .envs(env)
        .spawn()
}

/// SIGTERM, then waits (bounded) for the exit and for the pipes to close, so the captured
/// output includes the shutdown. Returns (stdout, stderr).
async fn stop(exporter: &mut Running) -> (String, String) {
    exporter.stop().await;
    (exporter.stdout(), exporter.stderr())
}

/// `GET url`, which must answer 200, and its body.
async fn ok_text(url: String) -> String {
    let response = support::http_client(Duration::from_secs(10))
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(response.status(), 200, "GET {url}");
    response.text().await.unwrap()
}

/// What one run of the exporter showed, for the search for secrets.
struct Seen {
    metrics: String,
    /// Every provider's `/probe?provider=NAME&debug=true` trace, each headed `MARKER NAME`.
    pages: String,
    /// The status page.
    index: String,
    stdout: String,
    stderr: String,
}

/// Waits until each of `names` has made `cycles` token requests, fetches every one's debug
/// trace and the status page, then stops the exporter.
async fn run_and_collect(
    exporter: &mut Running,
    names: &[&str],
    cycles: f64,
    marker: &str,
) -> Seen {
    let address = exporter.address().await;
    let metrics = exporter
        .wait_for_metrics(
            &format!("every provider made {cycles} token requests"),
            Duration::from_secs(30),
            |m| {
                names.iter().all(|p| {
                    sample(
                        m,
                        &format!("oauth2_token_requests_total{{provider=\"{p}\"}}"),
                    )
                    .is_some_and(|v| v >= cycles)
                })
            },
        )
        .await;
    let mut pages = String::new();
    for name in names {
        let trace = support::get_text(&format!(
            "http://{address}/probe?provider={name}&debug=true"
        ))
        .await;
        pages.push_str(&format!("{marker} {name}\n{trace}\n"));
    }
    let index = support::get_text(&format!("http://{address}/")).await;
    let (stdout, stderr) = stop(exporter).await;
    Seen {
        metrics,
        pages,
        index,
        stdout,
        stderr,
    }
}

/// What `check` prints (both streams) for `config`, run in `dir` with `env` added.
async fn check_output(dir: &Path, config: &Path, env: &[(&str, &str)]) -> String {
    let check = Binary::new()
        .current_dir(dir)
        .arg("check")
        .args(["--config.file", config.to_str().unwrap()])
        .envs(env)
        .run_async()
        .await;
    format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    )
}

impl Seen {
    /// Fails unless the debug trace of each `(provider, text)` shows the text: the control that
    /// an echo came back and was shown scrubbed.
    fn assert_traces_show(&self, cases: &[(&str, &str)]) {
        for (name, shown) in cases {
            let section = self
                .pages
                .split("#### ")
                .find(|s| s.starts_with(&format!("{name}\n")))
                .unwrap_or_default();
            assert!(
                section.contains(shown),
                "{name}: the trace does not show {shown:?}:\n{section}"
            );
        }
    }

    /// Fails unless the log holds each of `expected`.
    fn assert_logged(&self, expected: &[&str]) {
        for expected in expected {
            let stderr = &self.stderr;
            assert!(stderr.contains(expected), "no {expected:?} in:\n{stderr}");
        }
    }

    /// Fails if any of `needles` is in the log, the pages or `check`'s output.
    fn assert_no_leaks(&self, needles: &BTreeSet<String>, check: &str) {
        let found = leaks(
            needles,
            &[
                ("stderr", &self.stderr),
                ("stdout", &self.stdout),
                ("/metrics", &self.metrics),
                ("/", &self.index),
                ("/probe?debug=true", &self.pages),
                ("check", check),
            ],
        );
        assert!(
            found.is_empty(),
            "secrets leaked:\n{}\n\nstderr:\n{}",
            found.join("\n"),
            self.stderr
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The fakes.

/// What an identity provider that echoes the request would say: the raw body, its decoded
/// form fields, the Authorization header, and the Basic credentials alone and decoded.
/// Credentials come first: the exporter keeps only the first 200 characters of such texts.
fn echo(request: &Recorded) -> String {
    let mut text = String::from("you sent ");
    if let Some(authorization) = request.header("authorization") {
        text.push_str(&format!("authorization={authorization} "));
        if let Some(basic) = authorization.strip_prefix("Basic ") {
            text.push_str(&format!("credentials={basic} "));
        }
        if let Some((id, secret)) = request.basic_credentials() {
            text.push_str(&format!("client={id} secret={secret} "));
        }
    }
    if request.content_type().as_deref() == Some("application/x-www-form-urlencoded") {
        for (key, value) in request.form() {
            if key != "grant_type" {
                text.push_str(&format!("{key}={value} "));
            }
        }
    }
    text.push_str(&format!("body={}", request.body_text()));
    text
}

fn oauth_echo(status: u16, code: &str, request: &Recorded) -> Reply {
    Reply::json(
        status,
        serde_json::json!({"error": code, "error_description": echo(request)}),
    )
}

/// One provider of the run: its name is its case.
struct Case {
    name: &'static str,
    /// The `[providers.NAME.token]` lines besides `url`.
    token: String,
    /// Where the token request goes; `None`: the fake at `/token/NAME`.
    token_url: Option<String>,
    /// Where the canary goes; `None`: the fake at `/api/NAME`.
    canary_url: Option<String>,
    /// What the metrics must show at least twice: (`token`|`canary`|`success`, reason).
    expect: (&'static str, &'static str),
    /// The IdP or API echoes secrets or tokens back for this case: its log line must show the
    /// scrubbing (`[redacted]`).
    echoes: bool,
}

fn case(name: &'static str, token: &str, expect: (&'static str, &'static str)) -> Case {
    Case {
        name,
        token: token.to_string(),
        token_url: None,
        canary_url: None,
        expect,
        echoes: false,
    }
}

fn inline(client: &str) -> String {
    format!("client_id = \"{client}\"\nclient_secret = '{INLINE_SECRET}'")
}

/// Answers the token endpoints; `issued` collects every access token handed out.
fn token_reply(name: &str, request: &Recorded, issued: &Mutex<Vec<String>>, n: usize) -> Reply {
    let issue = |token: String| {
        issued.lock().unwrap().push(token.clone());
        token
    };
    match name {
        "t_invalid_client" | "t_invalid_client_assertion" | "t_invalid_assertion_file" => {
            oauth_echo(401, "invalid_client", request)
        }
        "t_invalid_grant" => oauth_echo(400, "invalid_grant", request),
        "t_invalid_scope" => oauth_echo(400, "invalid_scope", request),
        "t_invalid_request" => oauth_echo(400, "invalid_request", request),
        "t_unauthorized_client" => oauth_echo(400, "unauthorized_client", request),
        "t_unsupported_grant_type" => oauth_echo(400, "unsupported_grant_type", request),
        "t_oauth_error" => oauth_echo(400, "server_melted", request),
        "t_rate_limited" => Reply::raw(
            429,
            &[("content-type", "text/plain")],
            echo(request).into_bytes(),
        ),
        "t_http_4xx" => Reply::raw(
            403,
            &[("content-type", "text/plain")],
            echo(request).into_bytes(),
        ),
        "t_http_5xx" => Reply::raw(
            502,
            &[("content-type", "text/html")],
            format!("<html><body><pre>{}</pre></body></html>", echo(request)).into_bytes(),
        ),
        "t_timeout" => Reply::Hang,
        "t_invalid_response_mac" => Reply::json(
            200,
            serde_json::json!({"access_token": REJECTED_TOKEN, "token_type": "mac", "expires_in": 60}),
        ),
        "t_invalid_response_text" => Reply::raw(
            200,
            &[("content-type", "text/plain")],
            format!("not json: {}", echo(request)).into_bytes(),
        ),
        // Nextome style (json_body): `accessToken`, lifetime from the JWT's `exp`.
        _ if request.content_type().as_deref() == Some("application/json") => {
            let token = issue(jwt(&serde_json::json!({
                "sub": name,
                "n": n,
                "iat": unix_now() as u64,
                "exp": unix_now() as u64 + 3600,
            })));
            Reply::json(200, serde_json::json!({"accessToken": token}))
        }
        // Every other case gets a token; reuse ones live long enough to be reused.
        _ => Reply::token(&issue(format!("at-{name}-{n}-Qx7")), 3600),
    }
}

/// `reused_calls` counts the calls to `c_unauthorized_reused`, which accepts the first (so the
/// token is held and reused in the next cycle) and then rejects: a retry with a fresh token.
fn canary_reply(name: &str, request: &Recorded, reused_calls: &AtomicUsize) -> Reply {
    let bearer = request.bearer().unwrap_or("").to_string();
    let echo = format!("token {bearer} / {}", echo(request));
    let first_reused =
        name == "c_unauthorized_reused" && reused_calls.fetch_add(1, Ordering::Relaxed) == 0;
    match name {
        "c_unauthorized_reused" if first_reused => Reply::raw(200, &[], echo.into_bytes()),
        "c_unauthorized" | "c_unauthorized_reused" => Reply::raw(
            401,
            &[(
                "www-authenticate",
                &format!("Bearer error=\"invalid_token\", error_description=\"{bearer} expired\""),
            )],
            echo.into_bytes(),
        ),
        "c_forbidden" => Reply::raw(403, &[], echo.into_bytes()),
        "c_rate_limited" => Reply::raw(429, &[], echo.into_bytes()),
        "c_unexpected_status" => Reply::raw(500, &[], echo.into_bytes()),
        "c_timeout" => Reply::Hang,
        // Successful canaries echo the token too: the body is not the exporter's to log.
        _ => Reply::raw(200, &[("content-type", "text/plain")], echo.into_bytes()),
    }
}

// ---------------------------------------------------------------------------------------------

/// Issue #2: every failure reason and successful cycles, at trace level, with secrets inline,
/// from a file, from the environment, a password grant, client_secret_basic and json_body; no
/// secret in any encoding, nor any issued token, appears on stderr, stdout, /metrics or /.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_token_appears_in_logs_metrics_or_pages() {
    let issued = Arc::new(Mutex::new(Vec::<String>::new()));
    let counter = Arc::new(AtomicUsize::new(0));
    let reused_calls = Arc::new(AtomicUsize::new(0));
    let fake = {
        let issued = Arc::clone(&issued);
        let counter = Arc::clone(&counter);
        let reused_calls = Arc::clone(&reused_calls);
        FakeServer::start(move |request| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            if let Some(name) = request.path.strip_prefix("/token/") {
                token_reply(name, request, &issued, n)
            } else if let Some(name) = request.path.strip_prefix("/api/") {
                canary_reply(name, request, &reused_calls)
            } else {
                Reply::status(404)
            }
        })
        .await
    };
    // Untrusted certificate: the handshake fails, nothing is ever answered.
    let tls = FakeServer::start_tls(|_| Reply::status(500)).await;
    let closed = closed_port_url("/nothing-listens").await;

    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("client.secret");
    std::fs::write(&secret_file, format!("{FILE_SECRET}\n")).unwrap();
    let vanishing_file = dir.path().join("vanishing.secret");
    std::fs::write(&vanishing_file, VANISHING_SECRET).unwrap();
    // Issue 12: private keys, their certificates, and a key that is swapped for one that no
    // longer fits its certificate once probing runs (reason `client_assertion`).
    let (key_pem, cert_pem) = key_and_certificate();
    let (swapped_pem, _) = key_and_certificate();
    let key_file = dir.path().join("client.key");
    std::fs::write(&key_file, &key_pem).unwrap();
    let cert_file = dir.path().join("client.crt");
    std::fs::write(&cert_file, &cert_pem).unwrap();
    let swapping_key_file = dir.path().join("swapping.key");
    std::fs::write(&swapping_key_file, &key_pem).unwrap();
    let private_key = |client: &str, key: &Path| {
        format!(
            "client_id = \"{client}\"\nauth_method = \"private_key_jwt\"\nprivate_key_file = '{}'\ncertificate_file = '{}'",
            key.display(),
            cert_file.display()
        )
    };
    let secret_jwt = format!(
        "client_id = \"hmac-client\"\nclient_secret = '{HMAC_SECRET}'\nauth_method = \"client_secret_jwt\""
    );
    // Issue 25: assertions read from files (a live one the server refuses and echoes, an
    // expired one) and the jwt-bearer grant's assertion signed with the key.
    let file_assertion = |exp: f64, signature: &str| {
        let encode = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.{signature}",
            encode(r#"{"alg":"RS256","kid":"k8s"}"#),
            encode(&serde_json::json!({"iss": "https://k8s.test", "sub": "system:serviceaccount:m:exporter", "exp": exp as u64}).to_string())
        )
    };
    let live_assertion = file_assertion(unix_now() + 3600.0, "TGl2ZS1maWxlLWFzc2VydGlvbi1zaWctN3E");
    let expired_assertion =
        file_assertion(unix_now() - 60.0, "RXhwaXJlZC1maWxlLWFzc2VydGlvbi1zaWc");
    let live_file = dir.path().join("live.jwt");
    std::fs::write(&live_file, format!("{live_assertion}\n")).unwrap();
    let expired_file = dir.path().join("expired.jwt");
    std::fs::write(&expired_file, &expired_assertion).unwrap();
    let from_file = |path: &Path| {
        format!(
            "client_id = \"file-client\"\nauth_method = \"client_assertion\"\nclient_assertion_file = '{}'",
            path.display()
        )
    };
    let jwt_bearer = format!(
        "client_id = \"bearer-client\"\ngrant_type = \"jwt_bearer\"\nauth_method = \"none\"\nprivate_key_file = '{}'\nassertion_claims = {{ scope = \"api.read\" }}",
        key_file.display()
    );

    let basic = |client: &str| {
        format!(
            "client_id = \"{client}\"\nclient_secret = '{BASIC_SECRET}'\nauth_method = \"client_secret_basic\""
        )
    };
    let password = |client: &str| {
        format!(
            "{}\ngrant_type = \"password\"\nusername = \"probe@example.com\"\npassword = '{PASSWORD}'",
            inline(client)
        )
    };
    let json_body = |client: &str| {
        format!(
            "client_id = \"{client}\"\nclient_secret = '{JSON_SECRET}'\nauth_method = \"json_body\"\njson_fields = {{ client_id = \"clientId\", client_secret = \"clientSecret\" }}\nresponse = {{ access_token = \"accessToken\" }}"
        )
    };
    let file = format!(
        "client_id = \"file-client\"\nclient_secret_file = '{}'",
        secret_file.display()
    );
    let env = format!("client_id = \"env-client\"\nclient_secret_env = \"{ENV_VAR}\"");

    let echoing = |mut c: Case| {
        c.echoes = true;
        c
    };
    let mut cases = vec![
        // Token failures (their canaries are then skipped: `no_token`).
        echoing(case(
            "t_invalid_client",
            &basic("basic-client"),
            ("token", "invalid_client"),
        )),
        echoing(case(
            "t_invalid_grant",
            &password("pw-client"),
            ("token", "invalid_grant"),
        )),
        echoing(case("t_invalid_scope", &env, ("token", "invalid_scope"))),
        echoing(case(
            "t_invalid_request",
            &file,
            ("token", "invalid_request"),
        )),
        echoing(case(
            "t_unauthorized_client",
            &json_body("json-client"),
            ("token", "unauthorized_client"),
        )),
        echoing(case(
            "t_unsupported_grant_type",
            &inline("c"),
            ("token", "unsupported_grant_type"),
        )),
        echoing(case(
            "t_oauth_error",
            &basic("basic-client"),
            ("token", "oauth_error"),
        )),
        case("t_rate_limited", &inline("c"), ("token", "rate_limited")),
        echoing(case(
            "t_http_4xx",
            &basic("basic-client"),
            ("token", "http_4xx"),
        )),
        echoing(case(
            "t_http_5xx",
            &password("pw-client"),
            ("token", "http_5xx"),
        )),
        case("t_timeout", &inline("c"), ("token", "timeout")),
        case(
            "t_invalid_response_mac",
            &inline("c"),
            ("token", "invalid_response"),
        ),
        case(
            "t_invalid_response_text",
            &inline("c"),
            ("token", "invalid_response"),
        ),
        case(
            "t_secret_unavailable",
            &format!(
                "client_id = \"c\"\nclient_secret_file = '{}'",
                vanishing_file.display()
            ),
            ("token", "secret_unavailable"),
        ),
        // Canary failures with tokens that were issued.
        // (The API echoes the token, but the exporter does not log canary bodies at all.)
        case("c_unauthorized", &inline("c"), ("canary", "unauthorized")),
        case(
            "c_unauthorized_reused",
            &format!("{}\nreuse = true", basic("basic-client")),
            ("canary", "unauthorized"),
        ),
        case("c_forbidden", &env, ("canary", "forbidden")),
        case("c_rate_limited", &file, ("canary", "rate_limited")),
        case(
            "c_unexpected_status",
            &password("pw-client"),
            ("canary", "unexpected_status"),
        ),
        case(
            "c_timeout",
            &json_body("json-client"),
            ("canary", "timeout"),
        ),
        case("c_connect", &inline("c"), ("canary", "connect")),
        case("c_tls", &inline("c"), ("canary", "tls")),
        // Successes in every secret style.
        case("s_inline", &inline("inline-client"), ("success", "")),
        case("s_file", &file, ("success", "")),
        case("s_env", &env, ("success", "")),
        case("s_password", &password("pw-client"), ("success", "")),
        case("s_basic", &basic("basic-client"), ("success", "")),
        case("s_json", &json_body("json-client"), ("success", "")),
        // Issue 13: an opaque token against [token.expect] (reason `claims`, the token still
        // used by the canary), and a secret with an expiry date and a change time.
        case(
            "t_claims",
            &format!(
                "{}\nclient_secret_expires = \"2031-02-03\"\n[providers.t_claims.token.expect]\nroles = [\"Orders.Read\"]",
                inline("claims-client")
            ),
            ("token", "claims"),
        ),
        // Issue 12: client assertions, echoed back in a refusal, a key that stops fitting,
        // and successes.
        echoing(case(
            "t_invalid_client_assertion",
            &private_key("pkjwt-client", &key_file),
            ("token", "invalid_client"),
        )),
        case(
            "t_client_assertion",
            &private_key("pkjwt-client", &swapping_key_file),
            ("token", "client_assertion"),
        ),
        case(
            "s_private_key_jwt",
            &private_key("pkjwt-client", &key_file),
            ("success", ""),
        ),
        case("s_client_secret_jwt", &secret_jwt, ("success", "")),
        echoing(case(
            "t_invalid_assertion_file",
            &from_file(&live_file),
            ("token", "invalid_client"),
        )),
        case(
            "t_expired_assertion_file",
            &from_file(&expired_file),
            ("token", "client_assertion"),
        ),
        case("s_jwt_bearer", &jwt_bearer, ("success", "")),
    ];
    for c in &mut cases {
        match c.name {
            "c_connect" => c.canary_url = Some(closed.clone()),
            "c_tls" => c.canary_url = Some(tls.url("/api")),
            _ => {}
        }
    }
    cases.push({
        let mut c = case("t_connect", &inline("c"), ("token", "connect"));
        c.token_url = Some(closed.clone());
        c
    });
    cases.push({
        let mut c = case("t_tls", &inline("c"), ("token", "tls"));
        c.token_url = Some(tls.url("/token"));
        c
    });

    let mut toml = String::from(
        "[defaults]\ninterval = \"300ms\"\ntimeout = \"700ms\"\n# Refused every cycle on purpose: these tests are about what is shown, not how often.\nmax_backoff = \"0s\"\n",
    );
    for c in &cases {
        let token_url = c
            .token_url
            .clone()
            .unwrap_or_else(|| fake.url(&format!("/token/{}", c.name)));
        let canary_url = c
            .canary_url
            .clone()
            .unwrap_or_else(|| fake.url(&format!("/api/{}", c.name)));
        toml.push_str(&format!(
            "\n[providers.{name}.token]\nurl = \"{token_url}\"\n{token}\n\n[providers.{name}.canary]\nurl = \"{canary_url}\"\n",
            name = c.name,
            token = c.token,
        ));
    }
    let config = dir.path().join("exporter.toml");
    std::fs::write(&config, &toml).unwrap();

    let mut exporter = start(dir.path(), &config, &[(ENV_VAR, ENV_SECRET)]);
    let address = exporter.address().await;
    // Every page read here must be a 200: a 500 or 404 would hide a leak, not show its absence.
    let get = |path: &str| ok_text(format!("http://{address}{path}"));

    // Wait (bounded) until every case has run at least three token requests (and two canary
    // calls where that is the phase under test), whatever their outcome: the outcomes
    // themselves are checked below, together with everything else, so that one run reports all.
    let count = |metrics: &str, family: &str, name: &str| -> f64 {
        sample(metrics, &format!("{family}{{provider=\"{name}\"}}")).unwrap_or(0.0)
    };
    let pending = |metrics: &str| -> Vec<&str> {
        cases
            .iter()
            .filter(|c| {
                count(metrics, "oauth2_token_requests_total", c.name) < 3.0
                    || (c.expect.0 == "canary"
                        && count(metrics, "oauth2_canary_requests_total", c.name) < 2.0)
            })
            .map(|c| c.name)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut vanished = false;
    let mut swapped = false;
    let metrics = loop {
        let metrics = get("/metrics").await;
        if !swapped
            && count(
                &metrics,
                "oauth2_token_requests_total",
                "t_client_assertion",
            ) >= 1.0
        {
            // The key was checked at start-up and used by the first cycle; now it is replaced
            // by one its certificate does not hold.
            std::fs::write(&swapping_key_file, &swapped_pem).unwrap();
            swapped = true;
        }
        if !vanished
            && count(
                &metrics,
                "oauth2_token_requests_total",
                "t_secret_unavailable",
            ) >= 1.0
        {
            // The secret was read at start-up and by the first cycle; now it disappears.
            std::fs::remove_file(&vanishing_file).unwrap();
            vanished = true;
        }
        let waiting = pending(&metrics);
        if waiting.is_empty() {
            break metrics;
        }
        assert!(
            Instant::now() < deadline,
            "cases that did not run three cycles: {waiting:?}\nstderr:\n{}",
            exporter.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let index = get("/").await;
    let healthy = get("/-/healthy").await;
    let debug_trace = get("/probe?provider=t_invalid_client_assertion&debug=true").await;
    let file_trace = get("/probe?provider=t_invalid_assertion_file&debug=true").await;
    let bearer_trace = get("/probe?provider=s_jwt_bearer&debug=true").await;
    assert!(
        file_trace.contains("client_assertion=[redacted]"),
        "{file_trace}"
    );
    assert!(
        bearer_trace.contains("assertion=[redacted]"),
        "{bearer_trace}"
    );
    assert!(
        debug_trace.contains("client_assertion=[redacted]"),
        "{debug_trace}"
    );
    let (stdout, stderr) = stop(&mut exporter).await;

    // Control: the fakes really received every secret, in the form its method sends it.
    let first = |name: &str| {
        fake.requests_to(&format!("/token/{name}"))
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no token request for {name}"))
    };
    assert_eq!(first("s_inline").form_map()["client_secret"], INLINE_SECRET);
    assert_eq!(first("s_file").form_map()["client_secret"], FILE_SECRET);
    assert_eq!(first("s_env").form_map()["client_secret"], ENV_SECRET);
    assert_eq!(first("s_password").form_map()["password"], PASSWORD);
    assert_eq!(
        first("s_basic").basic_credentials(),
        Some(("basic-client".to_string(), BASIC_SECRET.to_string()))
    );
    assert_eq!(
        first("t_invalid_client").basic_credentials().unwrap().1,
        BASIC_SECRET
    );
    assert_eq!(first("s_json").json()["clientSecret"], JSON_SECRET);
    let assertions: Vec<String> = [
        "t_invalid_client_assertion",
        "s_private_key_jwt",
        "t_client_assertion",
        "s_client_secret_jwt",
        "t_invalid_assertion_file",
        "s_jwt_bearer",
    ]
    .iter()
    .flat_map(|name| fake.requests_to(&format!("/token/{name}")))
    .flat_map(|request| {
        let form = request.form_map();
        [
            form.get("client_assertion").cloned(),
            form.get("assertion").cloned(),
        ]
    })
    .flatten()
    .collect();
    assert!(
        assertions.contains(&live_assertion),
        "the assertion file was sent as written"
    );
    assert!(
        fake.requests_to("/token/t_expired_assertion_file")
            .is_empty(),
        "an expired assertion is never sent"
    );
    assert!(
        assertions.len() >= 8,
        "the fakes received few client assertions: {}",
        assertions.len()
    );
    assert_eq!(
        first("t_secret_unavailable").form_map()["client_secret"],
        VANISHING_SECRET
    );
    // ... and the canaries really got issued tokens (which the API echoed back), among them
    // a reused one and the fresh one of the retry.
    let canary = fake.requests_to("/api/c_unauthorized_reused");
    let bearers: BTreeSet<&str> = canary.iter().filter_map(|r| r.bearer()).collect();
    assert!(bearers.len() >= 2, "{canary:?}");
    let issued_now = issued.lock().unwrap().clone();
    assert!(bearers.iter().all(|b| issued_now.iter().any(|t| t == b)));
    assert!(
        sample(
            &metrics,
            r#"oauth2_canary_request_failures_total{provider="t_invalid_client",reason="no_token"}"#
        )
        .unwrap_or(0.0)
            >= 1.0,
        "a failed token request skips the canary"
    );

    // Control: every case produced its outcome in the metrics and in the logs (so the logs were
    // captured at a level that shows them), and echoed secrets were seen and scrubbed, not
    // silently dropped.
    let mut problems = Vec::new();
    for c in &cases {
        let (phase, reason) = c.expect;
        let series = match phase {
            "success" => format!("oauth2_probe_success{{provider=\"{}\"}}", c.name),
            _ => format!(
                "oauth2_{phase}_request_failures_total{{provider=\"{}\",reason=\"{reason}\"}}",
                c.name
            ),
        };
        let value = sample(&metrics, &series);
        if value.is_none_or(|v| v < 1.0) {
            problems.push(format!(
                "{}: expected {series} >= 1, got {value:?}; it has: {:?}",
                c.name,
                support::series_of(&metrics, &format!("oauth2_{phase}_request_failures_total"))
                    .into_iter()
                    .filter(|l| l.contains(&format!("provider=\"{}\"", c.name)))
                    .collect::<Vec<_>>()
            ));
        }
        let line = stderr.lines().find(|line| {
            if phase == "success" {
                line.contains("level=debug")
                    && line.contains("msg=\"probe succeeded\"")
                    && line.contains(&format!(" provider={} ", c.name))
            } else {
                line.contains("level=warn")
                    && line.contains("msg=\"probe failed\"")
                    && line.contains(&format!(
                        " provider={} phase={phase} reason={reason} ",
                        c.name
                    ))
            }
        });
        match line {
            None => problems.push(format!("{}: no log line for {phase}/{reason}", c.name)),
            Some(line) if c.echoes && !line.contains("[redacted]") => {
                problems.push(format!("{}: echo not visibly scrubbed: {line}", c.name))
            }
            Some(_) => {}
        }
    }

    // The rule itself.
    let mut needles = BTreeSet::new();
    for secret in [
        INLINE_SECRET,
        FILE_SECRET,
        ENV_SECRET,
        PASSWORD,
        BASIC_SECRET,
        JSON_SECRET,
        VANISHING_SECRET,
    ] {
        needles.extend(encodings(secret));
    }
    needles.extend(basic_forms("basic-client", BASIC_SECRET));
    needles.extend(encodings(HMAC_SECRET));
    needles.extend(key_needles(&key_pem));
    needles.extend(key_needles(&swapped_pem));
    needles.extend(jwt_needles(assertions.iter().chain([&expired_assertion])));
    let tokens = issued.lock().unwrap().clone();
    assert!(tokens.len() >= 10, "few tokens issued: {tokens:?}");
    needles.extend(tokens);
    needles.insert(REJECTED_TOKEN.to_string());
    let found = leaks(
        &needles,
        &[
            ("stderr", &stderr),
            ("stdout", &stdout),
            ("/metrics", &metrics),
            ("/", &index),
            ("/-/healthy", &healthy),
            ("/probe?debug=true", &debug_trace),
            (
                "/probe?provider=t_invalid_assertion_file&debug=true",
                &file_trace,
            ),
            ("/probe?provider=s_jwt_bearer&debug=true", &bearer_trace),
        ],
    );
    for leak in found {
        problems.push(format!("LEAK: {leak}"));
    }
    assert!(
        problems.is_empty(),
        "{}\n\nstderr:\n{stderr}",
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Configuration output.

/// One `--config.check` run on a file holding a secret.
struct ConfigCase {
    what: &'static str,
    toml: String,
    env: Vec<(&'static str, &'static str)>,
    /// Exit code and a text the output must contain (control: the intended path was taken).
    code: i32,
    shows: &'static str,
    secret: &'static str,
}

const CONFIG_SECRET: &str = r#"c0nfig-S3cr3t "q" &x=1+2/3"#;
const URL_PASSWORD: &str = "Url-Pa55w0rd-9xQ";
const NUMERIC_SECRET: &str = "98765432123";

/// Issue #2: neither `--config.check` nor a configuration error prints a secret written in the
/// file or given through the environment, whatever is wrong with the file.
#[test]
fn configuration_output_never_shows_secrets() {
    let token = |lines: &str| {
        format!(
            "[providers.p.token]\nurl = \"https://idp.example/token\"\nclient_id = \"p\"\n{lines}\n"
        )
    };
    let cases = vec![
        ConfigCase {
            what: "valid, inline secret and password",
            toml: token(&format!(
                "client_secret = '{CONFIG_SECRET}'\ngrant_type = \"password\"\nusername = \"u\"\npassword = '{CONFIG_SECRET}'"
            )),
            env: vec![],
            code: 0,
            shows: "configuration is valid (1 provider)",
            secret: CONFIG_SECRET,
        },
        ConfigCase {
            what: "misspelt key holding the secret",
            toml: token(&format!("client_secrett = '{CONFIG_SECRET}'")),
            env: vec![],
            code: 2,
            shows: "key `providers.p.token.client_secrett`: unknown key",
            secret: CONFIG_SECRET,
        },
        ConfigCase {
            what: "secret given as a list",
            toml: token(&format!("client_secret = ['{CONFIG_SECRET}']")),
            env: vec![],
            code: 2,
            shows: "key `providers.p.token.client_secret`",
            secret: CONFIG_SECRET,
        },
        ConfigCase {
            what: "two sources for the secret",
            toml: token(&format!(
                "client_secret = '{CONFIG_SECRET}'\nclient_secret_env = \"X\""
            )),
            env: vec![],
            code: 2,
            shows: "more than one source given",
            secret: CONFIG_SECRET,
        },
        ConfigCase {
            what: "reserved parameter holding the secret",
            toml: token(&format!(
                "client_secret = 'other-secret'\nparams = {{ client_secret = '{CONFIG_SECRET}' }}"
            )),
            env: vec![],
            code: 2,
            shows: "key `providers.p.token.params.client_secret`",
            secret: CONFIG_SECRET,
        },
        ConfigCase {
            what: "password grant without username",
            toml: token(&format!(
                "client_secret = 'other-secret'\ngrant_type = \"password\"\npassword = '{CONFIG_SECRET}'"
            )),
            env: vec![],
            code: 2,
            shows: "key `providers.p.token.username`: missing",
            secret: CONFIG_SECRET,
        },
        ConfigCase {
            what: "TOML syntax error on the secret's line",
            toml: token(&format!("client_secret = '{CONFIG_SECRET}")),
            env: vec![],
            code: 2,
            shows: "TOML parse error",
            secret: CONFIG_SECRET,
        },
        ConfigCase {
            what: "secret written as a number",
            toml: token(&format!("client_secret = {NUMERIC_SECRET}")),
            env: vec![],
            code: 2,
            shows: "key `providers.p.token.client_secret`",
            secret: NUMERIC_SECRET,
        },
        ConfigCase {
            what: "all-digit secret from an environment override",
            toml: token("client_secret = 'placeholder-in-file'"),
            env: vec![(
                "OAUTH2_EXPORTER_PROVIDERS__P__TOKEN__CLIENT_SECRET",
                NUMERIC_SECRET,
            )],
            code: 0,
            shows: "configuration is valid (1 provider)",
            secret: NUMERIC_SECRET,
        },
        ConfigCase {
            what: "credentials in the token URL",
            toml: format!(
                "[providers.p.token]\nurl = \"https://u:{URL_PASSWORD}@idp.example/token\"\nclient_id = \"p\"\nclient_secret = 'x-secret'\n"
            ),
            env: vec![],
            code: 2,
            shows: "credentials in the URL are not allowed",
            secret: URL_PASSWORD,
        },
        ConfigCase {
            what: "credentials in a token URL without a host",
            toml: format!(
                "[providers.p.token]\nurl = \"https://u:{URL_PASSWORD}@/token\"\nclient_id = \"p\"\nclient_secret = 'x-secret'\n"
            ),
            env: vec![],
            code: 2,
            shows: "key `providers.p.token.url`",
            secret: URL_PASSWORD,
        },
        ConfigCase {
            what: "credentials in a canary URL with another scheme",
            toml: format!(
                "[providers.p.token]\nurl = \"https://idp.example/token\"\nclient_id = \"p\"\nclient_secret = 'x-secret'\n[providers.p.canary]\nurl = \"ftp://u:{URL_PASSWORD}@api.example/\"\n"
            ),
            env: vec![],
            code: 2,
            shows: "key `providers.p.canary.url`",
            secret: URL_PASSWORD,
        },
        // Issue 12: a proxy URL's password, in an invalid proxy_url and in a valid one.
        ConfigCase {
            what: "credentials in an unsupported proxy_url",
            toml: format!(
                "[defaults]\nproxy_url = \"socks5://u:{URL_PASSWORD}@proxy.example:1080\"\n[providers.p.token]\nurl = \"https://idp.example/token\"\nclient_id = \"p\"\nclient_secret = 'x-secret'\n"
            ),
            env: vec![],
            code: 2,
            shows: "key `defaults.proxy_url`: unsupported proxy",
            secret: URL_PASSWORD,
        },
        ConfigCase {
            what: "a valid proxy_url with credentials",
            toml: format!(
                "[providers.p]\nproxy_url = \"http://u:{URL_PASSWORD}@proxy.example:3128\"\n[providers.p.token]\nurl = \"https://idp.example/token\"\nclient_id = \"p\"\nclient_secret = 'x-secret'\n"
            ),
            env: vec![],
            code: 0,
            shows: "configuration is valid",
            secret: URL_PASSWORD,
        },
        ConfigCase {
            what: "a secret header's value written inline instead of its source",
            toml: format!(
                "[providers.p.token]\nurl = \"https://idp.example/token\"\nclient_id = \"p\"\nclient_secret = 'x-secret'\n[providers.p.canary]\nurl = \"https://api.example/\"\nsecret_headers = {{ \"Ocp-Apim-Subscription-Key\" = '{CONFIG_SECRET}' }}\n"
            ),
            env: vec![],
            code: 2,
            shows: "key `providers.p.canary.secret_headers.Ocp-Apim-Subscription-Key`",
            secret: CONFIG_SECRET,
        },
    ];

    let dir = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let path = dir.path().join(format!("case-{i}.toml"));
        std::fs::write(&path, &case.toml).unwrap();
        let output = Binary::new()
            .current_dir(dir.path())
            .config(&path)
            .arg("--config.check")
            .envs(case.env.iter())
            .run();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let all = format!("{stdout}{stderr}");
        if output.status.code() != Some(case.code) || !all.contains(case.shows) {
            problems.push(format!(
                "{}: want exit {} showing {:?}; got {:?}:\n{all}",
                case.what,
                case.code,
                case.shows,
                output.status.code()
            ));
        }
        let needles: BTreeSet<String> = encodings(case.secret).into_iter().collect();
        for leak in leaks(&needles, &[("stdout", &stdout), ("stderr", &stderr)]) {
            problems.push(format!("LEAK ({}): {leak}", case.what));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A reload (`POST /-/reload`) of a file that became invalid reports why in the log and in its
/// answer; neither may show the secrets written in the file, as for `--config.check`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reload_shows_no_secret() {
    let closed = closed_port_url("/token").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("exporter.toml");
    let valid = format!(
        "[providers.p.token]\nurl = \"{closed}\"\nclient_id = \"p\"\nclient_secret = '{CONFIG_SECRET}'\n"
    );
    std::fs::write(&config, &valid).unwrap();
    let mut exporter = start(dir.path(), &config, &[]);
    let address = exporter.address().await;

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut answers = String::new();
    for broken in [
        // A syntax error on the secret's line, then a secret of the wrong type.
        valid.replace(&format!("'{CONFIG_SECRET}'"), &format!("'{CONFIG_SECRET}")),
        valid.replace(&format!("'{CONFIG_SECRET}'"), NUMERIC_SECRET),
    ] {
        std::fs::write(&config, broken).unwrap();
        let response = client
            .post(format!("http://{address}/-/reload"))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        // Control: the reload really failed on the configuration.
        assert_eq!(status, 500, "{body}");
        assert!(body.contains("invalid configuration"), "{body}");
        answers.push_str(&body);
    }
    let (stdout, stderr) = stop(&mut exporter).await;
    assert!(
        stderr.contains("configuration reload failed"),
        "no reload failure in the log:\n{stderr}"
    );
    let mut needles: BTreeSet<String> = encodings(CONFIG_SECRET).into_iter().collect();
    needles.insert(NUMERIC_SECRET.to_string());
    assert_none_leaked(
        &needles,
        &[
            ("reload answer", &answers),
            ("stderr", &stderr),
            ("stdout", &stdout),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Proxy credentials and secret headers (issue 12).

const PROXY_USER: &str = "leak-proxy-user";
const PROXY_SECRET: &str = "pr0xy-S3cr3t:c@lon w/sp&ce";
const HEADER_ENV_SECRET: &str = r#"apim-Env-K3y"q"\slash"#;
const HEADER_FILE_SECRET: &str = "apim-F1le-K3y+plus/sl";

/// Issue 12: a `proxy_url` password and `secret_headers` values, at trace level, never appear
/// on stderr, stdout, /metrics, / or in any `/probe?debug=true` trace, even when a hostile proxy
/// and API echo them back (in bodies and challenges) and the proxy is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_passwords_and_secret_header_values_never_appear() {
    // A "proxy" that refuses everyone with 407 and echoes the credentials it was sent.
    let proxy = FakeServer::start(|request| {
        let (echoed, decoded) = proxy_credentials(request);
        Reply::raw(
            407,
            &[("content-type", "text/plain")],
            format!("you sent Proxy-Authorization: {echoed} = {decoded}"),
        )
    })
    .await;
    let api = FakeServer::start(|request| match request.path.as_str() {
        "/token" => Reply::token("leak-test-token-7d1c", 3600),
        "/api/echo" => {
            let key = request
                .header("ocp-apim-subscription-key")
                .unwrap_or_default();
            // A well-formed quoted-string, so the challenge parser reads the whole key back.
            let quoted = key.replace('\\', "\\\\").replace('"', "\\\"");
            Reply::raw(
                401,
                &[(
                    "www-authenticate",
                    &format!(
                        "Bearer error=\"invalid_token\", error_description=\"bad key {quoted}\""
                    ),
                )],
                format!("your key was {key}"),
            )
        }
        "/api/ok" => Reply::status(200),
        _ => Reply::status(404),
    })
    .await;
    let down = closed_port_url("").await;
    let down_host = down.trim_start_matches("http://").to_string();
    let proxy_host = proxy.url("").trim_start_matches("http://").to_string();
    let encoded_password = percent(PROXY_SECRET);

    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("apim.key");
    std::fs::write(&key_file, format!("{HEADER_FILE_SECRET}\n")).unwrap();
    // Every provider's client is `c` with the same secret; each names its own proxy.
    let via = |proxy: &str, provider: Provider| {
        provider
            .client("c", "leak-client-secret-0")
            .setting("proxy_url", &format!("\"{proxy}\""))
    };
    let good_proxy = format!("http://{PROXY_USER}:{encoded_password}@{proxy_host}");
    let down_proxy = format!("http://{PROXY_USER}:{encoded_password}@{down_host}");
    let config = [
        support::config::defaults(&[("interval", r#""300ms""#), ("timeout", r#""700ms""#)]),
        support::config::providers(&[
            via(&good_proxy, Provider::new("refused", &api.url("/token"))),
            via(
                &good_proxy,
                Provider::issuer("refused_discovery", &api.url("/issuer")),
            ),
            via(&down_proxy, Provider::new("proxy_down", &api.url("/token"))),
            via("none", Provider::new("header_echo", &api.url("/token")))
                .canary(&api.url("/api/echo"))
                .canary_key(
                    "secret_headers",
                    r#"{ "Ocp-Apim-Subscription-Key" = { env = "LEAK_APIM_KEY" } }"#,
                ),
            via("none", Provider::new("header_ok", &api.url("/token")))
                .canary(&api.url("/api/ok"))
                .canary_key(
                    "secret_headers",
                    &format!(
                        r#"{{ "Ocp-Apim-Subscription-Key" = {{ file = '{}' }} }}"#,
                        key_file.display()
                    ),
                ),
        ]),
    ]
    .concat();
    let path = dir.path().join("exporter.toml");
    std::fs::write(&path, &config).unwrap();
    let mut exporter = start(dir.path(), &path, &[("LEAK_APIM_KEY", HEADER_ENV_SECRET)]);
    let names = [
        "refused",
        "refused_discovery",
        "proxy_down",
        "header_echo",
        "header_ok",
    ];
    let Seen {
        metrics,
        pages,
        index,
        stdout,
        stderr,
    } = run_and_collect(&mut exporter, &names, 3.0, "==").await;

    // Control: the secrets really went out, and the echoes really came back.
    let sent = proxy.requests();
    assert!(
        sent.iter().any(|r| r.header("proxy-authorization")
            == Some(&format!(
                "Basic {}",
                STANDARD.encode(format!("{PROXY_USER}:{PROXY_SECRET}"))
            ))),
        "the proxy never got the credentials: {sent:?}"
    );
    assert!(
        sent.iter()
            .any(|r| r.path.contains("/issuer/.well-known/openid-configuration")),
        "discovery did not go through the proxy: {sent:?}"
    );
    let keys: BTreeSet<&str> = api
        .requests()
        .iter()
        .filter_map(|r| r.header("ocp-apim-subscription-key"))
        .map(|k| match k {
            k if k == HEADER_ENV_SECRET => "env",
            k if k == HEADER_FILE_SECRET => "file",
            _ => "other",
        })
        .collect();
    assert_eq!(keys, BTreeSet::from(["env", "file"]));
    for expected in [
        "provider=refused phase=token reason=connect",
        "provider=refused_discovery phase=token reason=discovery",
        "provider=proxy_down phase=token reason=connect",
        "provider=header_echo phase=canary reason=unauthorized",
    ] {
        assert!(stderr.contains(expected), "no {expected:?} in:\n{stderr}");
    }
    assert!(
        stderr.contains("bad key [redacted]"),
        "the echoed key was not visibly scrubbed:\n{stderr}"
    );
    assert!(
        pages.contains("ocp-apim-subscription-key: [redacted] (secret_headers)"),
        "{pages}"
    );
    assert!(
        pages.contains(&format!("= {PROXY_USER}:[redacted]")),
        "the proxy's echo was not visibly scrubbed:\n{pages}"
    );

    let mut needles: BTreeSet<String> = BTreeSet::new();
    for secret in [PROXY_SECRET, HEADER_ENV_SECRET, HEADER_FILE_SECRET] {
        needles.extend(encodings(secret));
    }
    needles.extend(basic_forms(PROXY_USER, PROXY_SECRET));
    assert_none_leaked(
        &needles,
        &[
            ("stderr", &stderr),
            ("stdout", &stdout),
            ("/metrics", &metrics),
            ("/", &index),
            ("/probe?debug=true", &pages),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Issue 22: echoes the first leak test did not make.

/// With a space and a plus: `client_secret_basic` sends the space as `%20`.
const SPACED_SECRET: &str = "sp4ced S3cr3t+plus two";
const ECHO_PASSWORD: &str = "ech0 pa55 w0rd&x=1";
const ENV_PROXY_USER: &str = "envproxyuser";
const ENV_PROXY_SECRET: &str = "Env-Pr0xy-Pa55 x";
const QUERY_SECRET: &str = "query-api-key-Zk31";

/// `id:secret` as a server that decodes a Basic header sees it (RFC 6749 2.3.1, a space as
/// `%20`), as the exporter encodes it.
fn basic_decoded(client_id: &str, secret: &str) -> String {
    let encode = |s: &str| {
        url::form_urlencoded::byte_serialize(s.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    };
    format!("{}:{}", encode(client_id), encode(secret))
}

/// Issue 22: servers, APIs and proxies that echo credentials in response headers (a debug
/// header, `Location`, `WWW-Authenticate`), a token response that repeats the token in another
/// member and header, an API that echoes the token in headers, `client_secret_basic` with a
/// space echoed as the server decoded it, the credentials of a proxy from `HTTP_PROXY`, and a
/// canary URL with a key in its query: none of it reaches the log, `/`, `/probe?debug=true` or
/// `check`, and the control shows each echo arrived and was shown `[redacted]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_echoed_in_headers_later_fields_and_urls_never_appear() {
    let issued = Arc::new(Mutex::new(Vec::<String>::new()));
    let counter = Arc::new(AtomicUsize::new(0));
    let fake = {
        let issued = Arc::clone(&issued);
        let counter = Arc::clone(&counter);
        FakeServer::start(move |request| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            let form_body = request.body_text();
            match request.path.as_str() {
                // Refuses with the decoded Basic credentials everywhere it can.
                "/token/basic_echo" => {
                    let decoded = request.basic_raw().unwrap_or_default();
                    let mut reply = Reply::json(
                        401,
                        serde_json::json!({"error": "invalid_client", "error_description": format!("bad client {decoded}")}),
                    );
                    if let Reply::Response { headers, .. } = &mut reply {
                        headers.push(("x-echo-secret".into(), decoded.clone()));
                        headers.push((
                            "www-authenticate".into(),
                            format!("Basic realm=\"idp\", error_description=\"{decoded}\""),
                        ));
                    }
                    reply
                }
                // Refuses the password, sending the form back in a redirect's query.
                "/token/password_echo" => {
                    let password = request.form_map().get("password").cloned().unwrap_or_default();
                    let mut reply = Reply::json(
                        400,
                        serde_json::json!({"error": "invalid_grant", "error_description": "wrong password"}),
                    );
                    if let Reply::Response { headers, .. } = &mut reply {
                        headers.push(("location".into(), format!("/login?{form_body}")));
                        headers.push(("x-echo-secret".into(), password));
                    }
                    reply
                }
                "/token/assertion_echo" => {
                    let assertion = request
                        .form_map()
                        .get("client_assertion")
                        .cloned()
                        .unwrap_or_default();
                    let mut reply = Reply::oauth_error(401, "invalid_client");
                    if let Reply::Response { headers, .. } = &mut reply {
                        headers.push(("x-echo-assertion".into(), assertion));
                    }
                    reply
                }
                // Issues a token and repeats it in a header and in another member.
                path if path.starts_with("/token/") => {
                    let token = format!("at-{}-{n}-Lk2", &path["/token/".len()..]);
                    issued.lock().unwrap().push(token.clone());
                    let body = serde_json::json!({
                        "access_token": token,
                        "token_type": "Bearer",
                        "expires_in": 3600,
                        "debug": {"issued": token},
                    });
                    Reply::raw(
                        200,
                        &[
                            ("content-type", "application/json"),
                            ("x-issued-token", &token),
                        ],
                        body.to_string(),
                    )
                }
                // An API that passes and echoes the token it got in headers.
                "/api/token_echo" | "/api/query_key" => {
                    let bearer = request.bearer().unwrap_or_default().to_string();
                    Reply::raw(
                        200,
                        &[
                            ("x-seen-token", &bearer),
                            ("location", &format!("/next?t={bearer}&page=2")),
                        ],
                        "ok",
                    )
                }
                // An API that rejects the token, quoting it in the challenge and a header.
                "/api/token_rejected" => {
                    let bearer = request.bearer().unwrap_or_default().to_string();
                    Reply::raw(
                        401,
                        &[
                            (
                                "www-authenticate",
                                &format!("Bearer error=\"invalid_token\", error_description=\"bad {bearer}\""),
                            ),
                            ("x-seen-token", &bearer),
                        ],
                        "",
                    )
                }
                _ => Reply::status(404),
            }
        })
        .await
    };
    // A "proxy" from HTTP_PROXY that refuses with 407 and echoes the credentials it got.
    let proxy = FakeServer::start(|request| {
        let (sent, decoded) = proxy_credentials(request);
        Reply::raw(
            407,
            &[("x-echo-proxy", &decoded), ("content-type", "text/plain")],
            format!("you sent {sent} = {decoded}"),
        )
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    let (key_pem, _) = key_and_certificate();
    let key_file = dir.path().join("client.key");
    std::fs::write(&key_file, &key_pem).unwrap();
    let direct = |name: &str, token: &str, canary: Option<&str>| {
        let mut block = format!(
            "\n[providers.{name}]\nproxy_url = \"none\"\n[providers.{name}.token]\nurl = \"{}\"\n{token}\n",
            fake.url(&format!("/token/{name}"))
        );
        if let Some(canary) = canary {
            block.push_str(&format!("[providers.{name}.canary]\nurl = \"{canary}\"\n"));
        }
        block
    };
    let mut toml = String::from(
        "[defaults]\ninterval = \"300ms\"\ntimeout = \"700ms\"\n# Refused every cycle on purpose: these tests are about what is shown, not how often.\nmax_backoff = \"0s\"\n",
    );
    toml.push_str(&direct(
        "basic_echo",
        &format!("client_id = \"basic client\"\nclient_secret = '{SPACED_SECRET}'\nauth_method = \"client_secret_basic\""),
        None,
    ));
    toml.push_str(&direct(
        "password_echo",
        &format!("client_id = \"c\"\nclient_secret = \"leak-client-secret-1\"\ngrant_type = \"password\"\nusername = \"probe\"\npassword = '{ECHO_PASSWORD}'"),
        None,
    ));
    toml.push_str(&direct(
        "assertion_echo",
        &format!(
            "client_id = \"pk\"\nauth_method = \"private_key_jwt\"\nprivate_key_file = '{}'",
            key_file.display()
        ),
        None,
    ));
    let secret = "client_id = \"c\"\nclient_secret = \"leak-client-secret-2\"";
    toml.push_str(&direct(
        "token_echo",
        secret,
        Some(&fake.url("/api/token_echo")),
    ));
    toml.push_str(&direct(
        "token_rejected",
        secret,
        Some(&fake.url("/api/token_rejected")),
    ));
    toml.push_str(&direct(
        "query_key",
        secret,
        Some(&fake.url(&format!("/api/query_key?api_key={QUERY_SECRET}&page=1"))),
    ));
    // The one provider that takes the environment's proxy.
    toml.push_str(&format!(
        "\n[providers.env_proxy.token]\nurl = \"{}\"\n{secret}\n",
        fake.url("/token/env_proxy")
    ));
    let config = dir.path().join("exporter.toml");
    std::fs::write(&config, &toml).unwrap();
    let proxy_variable = format!(
        "http://{ENV_PROXY_USER}:{}@{}",
        percent(ENV_PROXY_SECRET),
        proxy.url("").trim_start_matches("http://")
    );
    let env = [("HTTP_PROXY", proxy_variable.as_str())];

    let names = [
        "basic_echo",
        "password_echo",
        "assertion_echo",
        "token_echo",
        "token_rejected",
        "query_key",
        "env_proxy",
    ];
    let mut exporter = start(dir.path(), &config, &env);
    let seen = run_and_collect(&mut exporter, &names, 2.0, "####").await;
    let check_out = check_output(dir.path(), &config, &env).await;

    // Control: the secrets went out and came back in every echo the test is about.
    let sent_basic = fake.requests_to("/token/basic_echo");
    assert_eq!(
        sent_basic.first().and_then(|r| r.basic_raw()),
        Some(basic_decoded("basic client", SPACED_SECRET)),
        "the Basic credentials were not sent as the test assumes"
    );
    assert!(
        basic_decoded("basic client", SPACED_SECRET).contains("%20"),
        "the secret's space must travel as %20"
    );
    let sent_password = fake.requests_to("/token/password_echo");
    assert_eq!(
        sent_password
            .first()
            .map(|r| r.form_map()["password"].clone()),
        Some(ECHO_PASSWORD.to_string())
    );
    let assertions: Vec<String> = fake
        .requests_to("/token/assertion_echo")
        .iter()
        .filter_map(|r| r.form_map().get("client_assertion").cloned())
        .collect();
    assert!(!assertions.is_empty(), "no client assertion was sent");
    assert_eq!(
        fake.requests_to("/api/query_key")
            .first()
            .map(|r| r.query_pairs()),
        Some(vec![
            ("api_key".to_string(), QUERY_SECRET.to_string()),
            ("page".to_string(), "1".to_string())
        ])
    );
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.header("proxy-authorization")
                == Some(&format!(
                    "Basic {}",
                    STANDARD.encode(format!("{ENV_PROXY_USER}:{ENV_PROXY_SECRET}"))
                ))),
        "the environment's proxy never got its credentials: {:?}",
        proxy.requests()
    );
    seen.assert_traces_show(&[
        ("basic_echo", "x-echo-secret: basic%20client:[redacted]"),
        (
            "basic_echo",
            "www-authenticate: Basic realm=\"idp\", error_description=\"basic%20client:[redacted]\"",
        ),
        ("password_echo", "x-echo-secret: [redacted]"),
        (
            "password_echo",
            "location: /login?grant_type=password&client_id=c&client_secret=[redacted]&username=probe&password=[redacted]",
        ),
        ("assertion_echo", "x-echo-assertion: [redacted]"),
        ("token_echo", "x-issued-token: [redacted]"),
        ("token_echo", "\"issued\": \"[redacted]\""),
        ("token_echo", "x-seen-token: [redacted]"),
        ("token_echo", "location: /next?t=[redacted]&page=2"),
        ("token_rejected", "x-seen-token: [redacted]"),
        ("query_key", "api_key=[redacted]&page=1"),
        ("env_proxy", "x-echo-proxy: envproxyuser:[redacted]"),
    ]);
    seen.assert_logged(&[
        "provider=basic_echo phase=token reason=invalid_client",
        "provider=password_echo phase=token reason=invalid_grant",
        "provider=token_rejected phase=canary reason=unauthorized",
        "provider=env_proxy phase=token reason=connect",
        "bad client basic%20client:[redacted]",
        "bad [redacted]",
    ]);
    assert!(
        check_out.contains("basic_echo") && check_out.contains("[redacted]"),
        "check did not show the scrubbed refusal:\n{check_out}"
    );

    let mut needles: BTreeSet<String> = BTreeSet::new();
    for secret in [SPACED_SECRET, ECHO_PASSWORD, ENV_PROXY_SECRET, QUERY_SECRET] {
        needles.extend(encodings(secret));
    }
    needles.insert(basic_decoded("basic client", SPACED_SECRET));
    needles.extend(basic_forms("basic client", SPACED_SECRET));
    needles.extend(basic_forms(ENV_PROXY_USER, ENV_PROXY_SECRET));
    needles.extend(jwt_needles(&assertions));
    let tokens = issued.lock().unwrap().clone();
    assert!(tokens.len() >= 4, "few tokens issued: {tokens:?}");
    needles.extend(tokens);
    seen.assert_no_leaks(&needles, &check_out);
}

/// The private scalar `d` of an EC P-256 key in PKCS#8 DER: the OCTET STRING of 32 bytes that
/// follows the `ECPrivateKey` version (INTEGER 1).
fn ec_private_scalar(pkcs8: &[u8]) -> Vec<u8> {
    let marker = [0x02, 0x01, 0x01, 0x04, 0x20];
    let at = pkcs8
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("an ECPrivateKey in the PKCS#8");
    pkcs8[at + marker.len()..at + marker.len() + 32].to_vec()
}

/// Issue 25: a DPoP key (its PEM, and its private `d` in every encoding a JWK or a dump would
/// use), the proofs (whole, or their signatures) and the DPoP-bound tokens never reach the log,
/// `/metrics`, `/`, `/probe?debug=true` or `check`, even from servers that echo the proof and
/// the token back in their refusals; the control shows proofs went out, each echo came back,
/// and the trace shows it `[redacted]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_keys_proofs_and_bound_tokens_never_appear() {
    let issued = Arc::new(Mutex::new(Vec::<String>::new()));
    let fake = {
        let issued = Arc::clone(&issued);
        FakeServer::start(move |request| {
            let proof = request.header("dpop").unwrap_or_default().to_string();
            match request.path.as_str() {
                // Refuses the proof, quoting it in the description and a header.
                "/token/dpop_refused" => {
                    let mut reply = Reply::json(
                        400,
                        serde_json::json!({"error": "invalid_dpop_proof", "error_description": format!("bad proof {proof}")}),
                    );
                    if let Reply::Response { headers, .. } = &mut reply {
                        headers.push(("x-echo-proof".into(), proof));
                    }
                    reply
                }
                path if path.starts_with("/token/") => {
                    let mut issued = issued.lock().unwrap();
                    let token = format!("at-dpop-{}-Qx7", issued.len());
                    issued.push(token.clone());
                    Reply::json(
                        200,
                        serde_json::json!({"access_token": token, "token_type": "DPoP", "expires_in": 3600}),
                    )
                }
                // Refuses the proof, quoting it and the token in the challenge and headers.
                "/api/dpop_echo" => {
                    let token = request
                        .header("authorization")
                        .and_then(|a| a.strip_prefix("DPoP "))
                        .unwrap_or_default()
                        .to_string();
                    Reply::raw(
                        401,
                        &[
                            (
                                "www-authenticate",
                                &format!("DPoP error=\"invalid_dpop_proof\", error_description=\"bad {proof} for {token}\""),
                            ),
                            ("x-echo-proof", &proof),
                            ("x-seen-token", &token),
                        ],
                        format!("you sent {proof} with {token}"),
                    )
                }
                _ => Reply::status(404),
            }
        })
        .await
    };
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let key_file = dir.path().join("dpop.key");
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let provider = |name: &str, extra: &str, canary: bool| {
        let mut block = format!(
            "\n[providers.{name}]\nproxy_url = \"none\"\n[providers.{name}.token]\nurl = \"{}\"\n\
             client_id = \"c\"\nclient_secret = \"dpop-leak-client-secret\"\ndpop = true\n{extra}\n",
            fake.url(&format!("/token/{name}"))
        );
        if canary {
            block.push_str(&format!(
                "[providers.{name}.canary]\nurl = \"{}\"\n",
                fake.url("/api/dpop_echo")
            ));
        }
        block
    };
    let mut toml =
        String::from("[defaults]\ninterval = \"300ms\"\ntimeout = \"2s\"\nmax_backoff = \"0s\"\n");
    toml.push_str(&provider("dpop_refused", "", false));
    toml.push_str(&provider(
        "dpop_echo",
        &format!("dpop_key_file = '{}'", key_file.display()),
        true,
    ));
    let config = dir.path().join("exporter.toml");
    std::fs::write(&config, &toml).unwrap();
    let names = ["dpop_refused", "dpop_echo"];
    let mut exporter = start(dir.path(), &config, &[]);
    let seen = run_and_collect(&mut exporter, &names, 2.0, "####").await;
    let check_out = check_output(dir.path(), &config, &[]).await;

    // Control: proofs went out on both steps, and every echo came back and was redacted.
    let proofs: Vec<String> = fake
        .requests()
        .iter()
        .filter_map(|r| r.header("dpop").map(str::to_string))
        .collect();
    assert!(
        fake.requests_to("/api/dpop_echo").len() >= 2 && proofs.len() >= 6,
        "few proofs were sent: {}",
        proofs.len()
    );
    seen.assert_traces_show(&[
        ("dpop_refused", "x-echo-proof: [redacted]"),
        ("dpop_echo", "x-echo-proof: [redacted]"),
        ("dpop_echo", "x-seen-token: [redacted]"),
        ("dpop_echo", "you sent [redacted] with [redacted]"),
        ("dpop_echo", "DPoP proof (decoded, signature not shown):"),
    ]);
    seen.assert_logged(&[
        "provider=dpop_refused phase=token reason=dpop",
        "provider=dpop_echo phase=canary reason=dpop",
        "bad proof [redacted]",
        "bad [redacted] for [redacted]",
    ]);

    let mut needles: BTreeSet<String> = key_needles(&key.serialize_pem()).into_iter().collect();
    let d = ec_private_scalar(&key.serialize_der());
    needles.insert(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&d));
    needles.insert(STANDARD.encode(&d));
    needles.insert(d.iter().map(|b| format!("{b:02x}")).collect());
    needles.extend(jwt_needles(&proofs));
    let tokens = issued.lock().unwrap().clone();
    assert!(tokens.len() >= 2, "few tokens issued: {tokens:?}");
    needles.extend(tokens);
    needles.extend(encodings("dpop-leak-client-secret"));
    seen.assert_no_leaks(&needles, &check_out);
}
