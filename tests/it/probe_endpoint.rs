//! `/probe?provider=NAME` (issue 5, section 2): one cycle now, answered as Prometheus exposition
//! text like blackbox_exporter's `/probe`; callers that arrive while the provider is busy share
//! one cycle; `&debug=true` adds a step-by-step trace with every secret and token redacted; an
//! unknown provider is a 404 naming the configured ones, a missing one a 400; and on-demand
//! cycles never touch the periodic series.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;
use support::{Daemon, FakeServer, Provider, Recorded, Reply, WAIT, jwt, sample, unix_now};

const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

fn client() -> reqwest::Client {
    support::http_client(Duration::from_secs(15))
}

/// `GET path` on the daemon: (status, content type, body).
async fn get(daemon: &Daemon, path: &str) -> (u16, String, String) {
    let response = client().get(daemon.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, content_type, response.text().await.unwrap())
}

/// A provider `name` (client `NAME-id`, secret `NAME-secret`) that cycles hourly.
fn provider(name: &str, token_url: &str) -> Provider {
    Provider::new(name, token_url)
        .interval("1h")
        .client(&format!("{name}-id"), &format!("{name}-secret"))
}

/// Provider `p`, its token endpoint the fake's `/token` and its canary `/api`, as configuration.
fn provider_p(idp: &FakeServer) -> String {
    provider("p", &idp.url("/token"))
        .canary(&idp.url("/api"))
        .toml()
}

/// A fake whose `/token` issues `token` for `ttl` seconds and whose other paths answer
/// `status`, and a daemon with provider `p` on it.
async fn start_p(token: &'static str, ttl: u64, status: u16) -> (FakeServer, Daemon) {
    let idp = FakeServer::start(move |request| match request.path.as_str() {
        "/token" => Reply::token(token, ttl),
        _ => Reply::status(status),
    })
    .await;
    let daemon = Daemon::start(&provider_p(&idp)).await;
    (idp, daemon)
}

// ---------------------------------------------------------------------------------------------
// A strict reader of the text exposition format (0.0.4), so that "it parses" means something.

#[derive(Debug, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    is_metric_name(name) && !name.contains(':')
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

/// Parses one sample line; `Err` says what is wrong with it.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        loop {
            // At the start of a label name, or at the closing brace.
            let mut label = String::new();
            let close = loop {
                match chars.next() {
                    Some((i, '}')) if label.is_empty() => break Some(i),
                    Some((_, '=')) => break None,
                    Some((_, c)) => label.push(c),
                    None => return Err("unterminated label set".into()),
                }
            };
            if let Some(i) = close {
                rest = &inner[i + 1..];
                break;
            }
            if !is_label_name(&label) {
                return Err(format!("bad label name {label:?}"));
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {label} without a quoted value"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        other => return Err(format!("bad escape {other:?}")),
                    },
                    Some((_, '"')) => break,
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated label value".into()),
                }
            }
            if labels.insert(label.clone(), value).is_some() {
                return Err(format!("label {label} twice"));
            }
            match chars.clone().next() {
                Some((_, ',')) => {
                    chars.next();
                }
                Some((_, '}')) => {}
                other => return Err(format!("expected , or }} after a label, got {other:?}")),
            }
        }
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let mut fields = value.split(' ');
    let value = fields.next().ok_or("no value")?;
    let value = parse_value(value).ok_or_else(|| format!("bad value {value:?}"))?;
    if let Some(timestamp) = fields.next()
        && timestamp.parse::<i64>().is_err()
    {
        return Err(format!("bad timestamp {timestamp:?}"));
    }
    if fields.next().is_some() {
        return Err("trailing fields".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses a whole exposition: every line a HELP, a TYPE or a sample of a family whose TYPE came
/// first (and at most once). Panics naming the first bad line.
fn parse_exposition(text: &str) -> Vec<Sample> {
    assert!(text.ends_with('\n'), "exposition must end with a newline");
    let mut typed = BTreeSet::new();
    let mut samples = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let bad = |why: &str| -> ! { panic!("line {}: {why}: {line:?}\n---\n{text}", number + 1) };
        if line.is_empty() {
            bad("empty line");
        }
        if let Some(help) = line.strip_prefix("# HELP ") {
            let (name, doc) = help
                .split_once(' ')
                .unwrap_or_else(|| bad("HELP without text"));
            if !is_metric_name(name) || doc.trim().is_empty() {
                bad("bad HELP");
            }
        } else if let Some(kind) = line.strip_prefix("# TYPE ") {
            let (name, kind) = kind
                .split_once(' ')
                .unwrap_or_else(|| bad("TYPE without kind"));
            if !is_metric_name(name)
                || !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind)
            {
                bad("bad TYPE");
            }
            if !typed.insert(name.to_string()) {
                bad("TYPE twice for one family");
            }
        } else if line.starts_with('#') {
            bad("unknown comment");
        } else {
            let sample = parse_sample(line).unwrap_or_else(|why| bad(&why));
            if !typed.contains(&sample.name) {
                bad("sample before (or without) its TYPE");
            }
            samples.push(sample);
        }
    }
    samples
}

/// The one sample called `name` (any labels); panics if there are several.
fn only<'a>(samples: &'a [Sample], name: &str) -> Option<&'a Sample> {
    let found: Vec<&Sample> = samples.iter().filter(|s| s.name == name).collect();
    assert!(found.len() <= 1, "{name} more than once: {found:?}");
    found.first().copied()
}

fn value(samples: &[Sample], name: &str) -> f64 {
    only(samples, name)
        .unwrap_or_else(|| panic!("{name} missing from {samples:#?}"))
        .value
}

// ---------------------------------------------------------------------------------------------

/// A healthy provider: every `oauth2_probe_*` series, each line valid exposition text, no
/// `provider` label (the scrape config names the target, as with blackbox_exporter).
#[tokio::test]
async fn probe_answers_parseable_exposition_for_a_healthy_provider() {
    let (idp, daemon) = start_p("tok-healthy", 2700, 204).await;

    let (status, content_type, body) = get(&daemon, "/probe?provider=p").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, EXPOSITION);
    let samples = parse_exposition(&body);
    assert!(
        samples.iter().all(|s| s.labels.is_empty()),
        "no labels on a successful probe: {body}"
    );
    let names: BTreeSet<&str> = samples.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "oauth2_probe_canary_duration_seconds",
            "oauth2_probe_canary_status_code",
            "oauth2_probe_duration_seconds",
            "oauth2_probe_success",
            "oauth2_probe_token_duration_seconds",
            "oauth2_probe_token_expires_in_seconds",
            "oauth2_probe_token_lifetime_seconds",
            "oauth2_probe_token_valid",
        ]),
        "{body}"
    );
    assert_eq!(value(&samples, "oauth2_probe_success"), 1.0);
    assert_eq!(value(&samples, "oauth2_probe_token_valid"), 1.0);
    assert_eq!(value(&samples, "oauth2_probe_canary_status_code"), 204.0);
    assert_eq!(
        value(&samples, "oauth2_probe_token_lifetime_seconds"),
        2700.0
    );
    let left = value(&samples, "oauth2_probe_token_expires_in_seconds");
    assert!((2690.0..=2700.0).contains(&left), "expires in {left}");
    let total = value(&samples, "oauth2_probe_duration_seconds");
    let token = value(&samples, "oauth2_probe_token_duration_seconds");
    let canary = value(&samples, "oauth2_probe_canary_duration_seconds");
    assert!(
        token > 0.0 && canary > 0.0 && token + canary <= total + 1e-3 && total < 5.0,
        "durations: token {token}, canary {canary}, total {total}"
    );
    // The probe really ran a cycle: one periodic and one on-demand token request.
    assert_eq!(idp.count("/token"), 2);
    daemon.stop().await;
}

/// Failures: the reason in `oauth2_probe_failure{phase,reason}` (closed sets), success 0, the
/// token not valid; a canary failure keeps the (valid) token and names the canary phase.
#[tokio::test]
async fn probe_reports_token_and_canary_failures_with_phase_and_reason() {
    let idp = FakeServer::start(|request| match request.path.as_str() {
        "/token/refused" => Reply::oauth_error(401, "invalid_client"),
        "/token/ok" => Reply::token("tok-ok", 600),
        "/api/forbidden" => Reply::status(403),
        _ => Reply::status(404),
    })
    .await;
    let toml = [
        provider("refused", &idp.url("/token/refused"))
            .canary(&idp.url("/api/forbidden"))
            .toml(),
        provider("forbidden", &idp.url("/token/ok"))
            .canary(&idp.url("/api/forbidden"))
            .toml(),
    ]
    .concat();
    let daemon = Daemon::start(&toml).await;

    let (status, content_type, body) = get(&daemon, "/probe?provider=refused").await;
    assert_eq!((status, content_type.as_str()), (200, EXPOSITION), "{body}");
    let samples = parse_exposition(&body);
    assert_eq!(value(&samples, "oauth2_probe_success"), 0.0, "{body}");
    assert_eq!(value(&samples, "oauth2_probe_token_valid"), 0.0, "{body}");
    let failure = only(&samples, "oauth2_probe_failure").expect("oauth2_probe_failure");
    assert_eq!(
        failure.labels,
        BTreeMap::from([
            ("phase".to_string(), "token".to_string()),
            ("reason".to_string(), "invalid_client".to_string())
        ])
    );
    assert_eq!(failure.value, 1.0);
    assert!(
        only(&samples, "oauth2_probe_canary_status_code").is_none(),
        "no canary without a token: {body}"
    );
    assert!(
        !body.contains("fake says"),
        "no server text in labels: {body}"
    );

    let (status, _, body) = get(&daemon, "/probe?provider=forbidden").await;
    assert_eq!(status, 200, "{body}");
    let samples = parse_exposition(&body);
    assert_eq!(value(&samples, "oauth2_probe_success"), 0.0, "{body}");
    assert_eq!(value(&samples, "oauth2_probe_token_valid"), 1.0, "{body}");
    assert_eq!(value(&samples, "oauth2_probe_canary_status_code"), 403.0);
    let failure = only(&samples, "oauth2_probe_failure").expect("oauth2_probe_failure");
    assert_eq!(failure.labels["phase"], "canary");
    assert_eq!(failure.labels["reason"], "forbidden");
    daemon.stop().await;
}

/// The same answer read by promtool, the reference parser and linter, when it is installed
/// (scripts/install-peers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_output_passes_promtool_check_metrics() {
    let Some(promtool) = support::peers::find_tool("promtool") else {
        return support::peers::skip_or_fail(
            "probe_output_passes_promtool_check_metrics",
            "promtool not on PATH (run scripts/install-peers)",
        );
    };
    let (_idp, daemon) = start_p("tok", 600, 500).await;
    let (status, _, body) = get(&daemon, "/probe?provider=p").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("oauth2_probe_failure{phase=\"canary\",reason=\"unexpected_status\"} 1\n"),
        "{body}"
    );
    let output = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut child = support::binary::scrubbed_command(promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    daemon.stop().await;
}

/// Five `/probe` calls made while the provider's periodic cycle is still waiting for its token
/// all queue behind it and then share ONE on-demand cycle: exactly one more token request, and
/// five identical answers (the same measured durations, to the nanosecond). Deterministic: the
/// periodic cycle's token request is held for 2 s, and the five calls are sent as soon as that
/// request has arrived, so all five are queued long before it ends; the provider's task then
/// takes every waiting request at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_waiting_for_a_busy_provider_share_one_cycle() {
    let seen = Arc::new(AtomicUsize::new(0));
    let idp = FakeServer::start({
        let seen = Arc::clone(&seen);
        move |request| match request.path.as_str() {
            "/token" => {
                let delay = if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                    Duration::from_secs(2)
                } else {
                    Duration::from_millis(300)
                };
                Reply::delayed(delay, Reply::token("tok", 3600))
            }
            _ => Reply::status(200),
        }
    })
    .await;
    let daemon = Daemon::start(&provider_p(&idp)).await;
    let first = idp.wait_for_requests("/token", 1, WAIT).await[0].clone();

    let client = client();
    let probes: Vec<_> = (0..5)
        .map(|_| {
            let request = client.get(daemon.url("/probe?provider=p")).send();
            tokio::spawn(async move {
                let response = request.await.unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for probe in probes {
        answers.push(probe.await.unwrap());
    }
    let sent_by = Instant::now();
    assert!(
        sent_by - first.at >= Duration::from_secs(2),
        "the answers came before the periodic cycle could end"
    );
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert!(body.contains("oauth2_probe_success 1\n"), "{body}");
    }
    assert!(
        answers.iter().all(|a| a.1 == answers[0].1),
        "the five answers come from different cycles: {answers:#?}"
    );
    let tokens = idp.requests_to("/token");
    assert_eq!(
        tokens.len(),
        2,
        "one periodic + one shared on-demand token request: {tokens:#?}"
    );
    assert!(
        tokens[1].at - tokens[0].at >= Duration::from_secs(2),
        "the on-demand cycle overlapped the periodic one"
    );
    // The periodic series saw one cycle only.
    let metrics = daemon.scrape().await;
    assert_eq!(
        sample(&metrics, r#"oauth2_token_requests_total{provider="p"}"#),
        Some(1.0)
    );
    daemon.stop().await;
}

/// Five `/probe` calls at once on an idle provider whose token endpoint takes 300 ms: the first
/// to reach the provider's task starts a cycle (taking along any already waiting); the others
/// arrive during its 300 ms and share the next one. So at most 2 cycles, never 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_probes_on_an_idle_provider_take_at_most_two_cycles() {
    let idp = FakeServer::start(|request| match request.path.as_str() {
        "/token" => Reply::delayed(Duration::from_millis(300), Reply::token("tok", 3600)),
        _ => Reply::status(200),
    })
    .await;
    // Without web.probe_min_interval: this is about callers sharing cycles, not the limit
    // (tests/it/backoff.rs has that).
    let daemon = Daemon::start(&format!(
        "[web]\nprobe_min_interval = \"0s\"\n{}",
        provider("p", &idp.url("/token")).toml()
    ))
    .await;
    daemon
        .wait_for_sample(r#"oauth2_probe_success{provider="p"}"#, 1.0, WAIT)
        .await;
    assert_eq!(idp.count("/token"), 1);

    let client = client();
    let probes: Vec<_> = (0..5)
        .map(|_| {
            let request = client.get(daemon.url("/probe?provider=p")).send();
            tokio::spawn(async move { request.await.unwrap().text().await.unwrap() })
        })
        .collect();
    let mut bodies = BTreeSet::new();
    for probe in probes {
        let body = probe.await.unwrap();
        assert!(body.contains("oauth2_probe_success 1\n"), "{body}");
        bodies.insert(body);
    }
    let on_demand = idp.count("/token") - 1;
    assert!(
        (1..=2).contains(&on_demand),
        "{on_demand} on-demand token requests for 5 concurrent probes; expected 1 or 2"
    );
    assert_eq!(
        bodies.len(),
        on_demand,
        "one distinct answer per cycle: {bodies:#?}"
    );
    daemon.stop().await;
}

/// Every way the secret could leak into the trace: as configured, form-urlencoded,
/// percent-encoded, JSON-escaped, and inside the Basic credentials (base64 of `id:secret`).
fn secret_encodings(client_id: &str, secret: &str) -> Vec<String> {
    let form = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>();
    let percent = form.replace('+', "%20");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{form}",
        url::form_urlencoded::byte_serialize(client_id.as_bytes()).collect::<String>()
    ));
    let basic_raw =
        base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"));
    let json = serde_json::to_string(secret).unwrap();
    vec![
        secret.to_string(),
        form,
        percent,
        basic,
        basic_raw,
        json.trim_matches('"').to_string(),
    ]
}

/// `&debug=true`: the request line, headers and form with the secret redacted (in no encoding
/// present), the response with the tokens redacted, the JWT's header and claims decoded (never
/// the raw token or its signature), the canary exchange, then the metrics.
#[tokio::test]
async fn debug_trace_shows_each_step_with_secrets_and_tokens_redacted() {
    let now = unix_now() as u64;
    let access_token = jwt(&json!({
        "iss": "https://idp.example",
        "sub": "svc-billing",
        "aud": "billing-api",
        "scope": "invoices:read",
        "iat": now,
        "exp": now + 3600,
    }));
    let issued = access_token.clone();
    let idp = FakeServer::start(move |request| match request.path.as_str() {
        "/token" => Reply::raw(
            200,
            &[
                ("content-type", "application/json"),
                ("set-cookie", "idp_session=cookie-value-77; HttpOnly"),
                ("x-request-id", "req-4711"),
            ],
            json!({
                "access_token": issued,
                "refresh_token": "refresh-token-value-55",
                "token_type": "Bearer",
                "expires_in": 3600,
                "scope": "invoices:read",
            })
            .to_string(),
        ),
        _ => Reply::json(200, json!({"status": "fine"})),
    })
    .await;
    let secret = "s3cr3t/+=& é\"value";
    let secret_toml = secret.replace('\\', "\\\\").replace('"', "\\\"");
    let token = idp.url("/token");
    let toml = support::config::providers(&[
        Provider::new("basic", &token)
            .interval("1h")
            .client("billing client", &secret_toml)
            .token_key("auth_method", r#""client_secret_basic""#)
            .token_key("scopes", r#"["invoices:read"]"#)
            .canary(&idp.url("/api/invoices?limit=1")),
        Provider::new("post", &token)
            .interval("1h")
            .client("billing-post", &secret_toml),
    ]);
    let daemon = Daemon::start(&toml).await;
    // The periodic cycles first, so the probe's requests are the last ones.
    idp.wait_for_requests("/token", 2, WAIT).await;

    let (status, content_type, trace) = get(&daemon, "/probe?provider=basic&debug=true").await;
    assert_eq!(status, 200, "{trace}");
    assert_eq!(content_type, "text/plain; charset=utf-8");
    let basic_request: Recorded = idp
        .requests_to("/token")
        .into_iter()
        .rfind(|r| r.header("authorization").is_some())
        .expect("a Basic token request");
    assert_eq!(
        basic_request.basic_credentials(),
        Some(("billing client".to_string(), secret.to_string())),
        "the fake must have received the real secret for the redaction check to mean anything"
    );

    let expect_in_order = [
        "Probe of provider basic\n".to_string(),
        "== token request\n".to_string(),
        format!("  -> POST {}\n", idp.url("/token")),
        "  Authorization: Basic [redacted]\n".to_string(),
        "  Content-Type: application/x-www-form-urlencoded\n".to_string(),
        "    grant_type=client_credentials\n".to_string(),
        "    scope=invoices:read\n".to_string(),
        "  <- HTTP 200\n".to_string(),
        "  set-cookie: [redacted]\n".to_string(),
        "  x-request-id: req-4711\n".to_string(),
        "\"access_token\": \"[redacted]\"".to_string(),
        "\"refresh_token\": \"[redacted]\"".to_string(),
        "  took ".to_string(),
        "  result: token obtained, lifetime 3600s\n".to_string(),
        "  header: {\"alg\":\"RS256\",\"typ\":\"JWT\"}\n".to_string(),
        "  claims: {".to_string(),
        "\"sub\": \"svc-billing\"".to_string(),
        "== canary request\n".to_string(),
        format!("  -> GET {}\n", idp.url("/api/invoices?limit=1")),
        "  Authorization: Bearer [redacted]\n".to_string(),
        "  <- HTTP 200\n".to_string(),
        "\"status\": \"fine\"".to_string(),
        "  result: passed\n".to_string(),
        "== resulting metrics\n".to_string(),
        "oauth2_probe_success 1\n".to_string(),
    ];
    let mut from = 0;
    for expected in &expect_in_order {
        match trace[from..].find(expected.as_str()) {
            Some(at) => from += at + expected.len(),
            None => panic!("trace lacks {expected:?} (in this order); trace:\n{trace}"),
        }
    }
    let claims = &trace[trace.find("claims: {").unwrap()..];
    for claim in ["\"aud\": \"billing-api\"", "\"exp\": ", "\"iat\": "] {
        assert!(claims.contains(claim), "claims lack {claim}:\n{trace}");
    }

    let parts: Vec<&str> = access_token.split('.').collect();
    let mut forbidden = secret_encodings("billing client", secret);
    forbidden.extend([
        access_token.clone(),
        parts[0].to_string(),
        parts[1].to_string(),
        parts[2].to_string(),
        "not-a-real-signature".to_string(),
        "refresh-token-value-55".to_string(),
        "cookie-value-77".to_string(),
    ]);
    for leak in &forbidden {
        assert!(
            !trace.contains(leak.as_str()),
            "trace shows {leak:?}:\n{trace}"
        );
    }

    // client_secret_post: the form field is there, its value redacted.
    let (status, _, trace) = get(&daemon, "/probe?provider=post&debug=1").await;
    assert_eq!(status, 200, "{trace}");
    for expected in [
        "    client_id=billing-post\n",
        "    client_secret=[redacted]\n",
        "access token is a JWT",
    ] {
        assert!(
            trace.contains(expected),
            "trace lacks {expected:?}:\n{trace}"
        );
    }
    assert!(!trace.contains("== canary request"), "no canary configured");
    for leak in secret_encodings("billing-post", secret)
        .iter()
        .chain([&access_token, &parts[2].to_string()])
    {
        assert!(
            !trace.contains(leak.as_str()),
            "trace shows {leak:?}:\n{trace}"
        );
    }
    daemon.stop().await;
}

/// An unknown provider is a 404 that lists the configured names; a missing or empty one a 400
/// that lists them too; neither runs a cycle.
#[tokio::test]
async fn unknown_provider_is_404_and_missing_provider_is_400_both_listing_names() {
    let idp = FakeServer::start(|_| Reply::token("tok", 600)).await;
    let toml = [
        provider("beta", &idp.url("/token")).toml(),
        provider("alpha", &idp.url("/token")).toml(),
    ]
    .concat();
    let daemon = Daemon::start(&toml).await;
    idp.wait_for_requests("/token", 2, WAIT).await;

    let (status, content_type, body) = get(&daemon, "/probe?provider=gamma").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(content_type, "text/plain; charset=utf-8");
    assert_eq!(
        body,
        "unknown provider \"gamma\"; configured providers:\nalpha\nbeta\n"
    );

    for path in ["/probe", "/probe?provider=", "/probe?debug=true"] {
        let (status, _, body) = get(&daemon, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(
            body, "missing ?provider=NAME; configured providers:\nalpha\nbeta\n",
            "{path}"
        );
    }
    // A hostile name is not reflected unbounded.
    let long = "x".repeat(500);
    let (status, _, body) = get(&daemon, &format!("/probe?provider={long}")).await;
    assert_eq!(status, 404);
    assert!(body.len() < 200, "{body}");
    assert_eq!(idp.count("/token"), 2, "no cycle ran for a bad request");
    daemon.stop().await;
}

/// On-demand cycles answer their caller only: the periodic counters, success and failure
/// series stay as the periodic cycle left them, even when the probes fail.
#[tokio::test]
async fn on_demand_cycles_leave_the_periodic_series_alone() {
    let refuse = Arc::new(AtomicBool::new(false));
    let idp = FakeServer::start({
        let refuse = Arc::clone(&refuse);
        move |request| match request.path.as_str() {
            "/token" if refuse.load(Ordering::SeqCst) => Reply::oauth_error(401, "invalid_client"),
            "/token" => Reply::token("tok", 600),
            _ => Reply::status(200),
        }
    })
    .await;
    // Every /probe a real attempt, refused or not: this is about the periodic series, not the
    // limits on on-demand probes (tests/it/backoff.rs has those).
    let daemon = Daemon::start(&format!(
        "[web]\nprobe_min_interval = \"0s\"\n[defaults]\nmax_backoff = \"0s\"\n{}",
        provider_p(&idp)
    ))
    .await;
    let before = daemon
        .wait_for_sample(r#"oauth2_probe_success{provider="p"}"#, 1.0, WAIT)
        .await;
    let periodic_series = |metrics: &str| -> Vec<String> {
        metrics
            .lines()
            .filter(|l| {
                !l.starts_with('#')
                    && l.contains("provider=\"p\"")
                    && (l.starts_with("oauth2_token_request")
                        || l.starts_with("oauth2_canary_")
                        || l.starts_with("oauth2_unauthorized_")
                        || l.starts_with("oauth2_probe_"))
            })
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        sample(&before, r#"oauth2_token_requests_total{provider="p"}"#),
        Some(1.0)
    );

    refuse.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        let (status, _, body) = get(&daemon, "/probe?provider=p").await;
        assert_eq!(status, 200);
        assert!(body.contains("oauth2_probe_success 0\n"), "{body}");
    }
    refuse.store(false, Ordering::SeqCst);
    let (_, _, body) = get(&daemon, "/probe?provider=p&debug=true").await;
    assert!(body.contains("oauth2_probe_success 1\n"), "{body}");
    assert_eq!(idp.count("/token"), 5, "1 periodic + 4 on-demand");

    let after = daemon.scrape().await;
    assert_eq!(
        periodic_series(&after),
        periodic_series(&before),
        "on-demand probes changed the periodic series"
    );
    assert_eq!(
        sample(
            &after,
            r#"oauth2_token_request_failures_total{provider="p",reason="invalid_client"}"#
        )
        .unwrap_or(0.0),
        0.0
    );
    daemon.stop().await;
}
