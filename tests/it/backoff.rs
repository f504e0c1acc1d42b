//! Issue 23, do no harm, on the real binary against loopback fakes that count requests: refused
//! credentials back off (2x, 4x, 8x ... the interval) instead of counting towards a lockout
//! every interval; a corrected secret or password file is tried within seconds without waiting
//! out the back-off; `Retry-After` (seconds or an HTTP date) on a 429 or 503 is honoured; other
//! providers keep their pace; `max_backoff = "0s"` restores the old behaviour; a reload that
//! changes a provider ends its back-off; and `/probe` cannot be used to hammer an account. A
//! rewritten `client_assertion_file` (issue 25) ends a back-off as a corrected secret does.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use support::config::defaults;
use support::{Binary, FakeServer, Provider, Recorded, Reply, Running, Signal, sample, unix_now};

/// A token endpoint that issues a token only for the right credential: `right` as the client
/// secret (`client_secret_post`) or as the password.
fn token_endpoint(request: &Recorded, right: &str) -> Reply {
    let form = request.form_map();
    let sent = form
        .get("password")
        .or_else(|| form.get("client_secret"))
        .cloned()
        .unwrap_or_default();
    match (sent == right, form.contains_key("password")) {
        (true, _) => Reply::token("backoff-test-token", 3600),
        (false, true) => Reply::oauth_error(400, "invalid_grant"),
        (false, false) => Reply::oauth_error(401, "invalid_client"),
    }
}

/// When each request to `path` arrived.
#[derive(Clone, Default)]
struct Arrivals(Arc<Mutex<Vec<(String, Instant)>>>);

impl Arrivals {
    fn note(&self, path: &str) {
        self.0
            .lock()
            .unwrap()
            .push((path.to_string(), Instant::now()));
    }

    fn at(&self, path: &str) -> Vec<Instant> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, at)| *at)
            .collect()
    }

    fn count(&self, path: &str) -> usize {
        self.at(path).len()
    }
}

/// A provider of client `c` whose token endpoint is the fake's `/token/NAME`.
fn provider(idp: &FakeServer, name: &str, secret: &str) -> Provider {
    Provider::new(name, &idp.url(&format!("/token/{name}"))).client("c", secret)
}

fn start(dir: &std::path::Path, toml: &str) -> Running {
    let config = dir.join("exporter.toml");
    std::fs::write(&config, toml).unwrap();
    Binary::new()
        .current_dir(dir)
        .config(&config)
        .listen_loopback()
        .log_level("debug")
        .spawn()
}

async fn metrics(exporter: &mut Running) -> String {
    let address = exporter.address().await;
    support::get_text(&format!("http://{address}/metrics")).await
}

/// Waits (polling every 20 ms, at most `limit`) for `done`; panics with `what` otherwise.
async fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Issue 23's measurement, turned round: a wrong password and a wrong client secret at
/// `interval = "1s"` for 30 s made 31 requests each; now at most 6 (at 0, 2, 6, 14, 30 s, less
/// jitter), while a healthy provider beside them keeps its pace. The gauges say so, the status
/// page says so, and writing the right value into the file makes the next attempt come within
/// 3 s and succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_back_off_and_a_corrected_file_is_tried_at_once() {
    let arrivals = Arrivals::default();
    let idp = {
        let arrivals = arrivals.clone();
        FakeServer::start(move |request| {
            arrivals.note(&request.path);
            match request.path.as_str() {
                "/token/password" => token_endpoint(request, "new-password-1"),
                "/token/secret" => token_endpoint(request, "new-secret-1"),
                _ => Reply::token("healthy-token", 3600),
            }
        })
        .await
    };
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "old-password-1\n").unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "old-secret-1\n").unwrap();
    let toml = [
        defaults(&[("interval", r#""1s""#)]),
        provider(&idp, "password", "ignored-by-the-fake")
            .token_key("grant_type", r#""password""#)
            .token_key("username", r#""probe""#)
            .token_key("password_file", &format!("'{}'", password_file.display()))
            .toml(),
        provider(&idp, "secret", "")
            .secret_file(&secret_file)
            .toml(),
        provider(&idp, "healthy", "healthy-secret").toml(),
    ]
    .concat();
    let mut exporter = start(dir.path(), &toml);
    let address = exporter.address().await;
    until("the first refusals", Duration::from_secs(30), || {
        arrivals.count("/token/password") >= 1 && arrivals.count("/token/secret") >= 1
    })
    .await;
    let first = arrivals.at("/token/password")[0];
    let healthy_before = arrivals.count("/token/healthy");
    // 30 seconds of refusals, measured from the first one.
    tokio::time::sleep((first + Duration::from_secs(30)).saturating_duration_since(Instant::now()))
        .await;
    let scrape = metrics(&mut exporter).await;
    let page = support::get_text(&format!("http://{address}/")).await;
    for (path, reason) in [
        ("/token/password", "invalid_grant"),
        ("/token/secret", "invalid_client"),
    ] {
        let provider = &path["/token/".len()..];
        let attempts = arrivals.count(path);
        assert!(
            (4..=6).contains(&attempts),
            "{provider}: {attempts} token requests in 30 s (31 without back-off)"
        );
        assert_eq!(
            sample(
                &scrape,
                &format!(
                    "oauth2_probe_backoff{{phase=\"token\",provider=\"{provider}\",reason=\"{reason}\"}}"
                )
            ),
            Some(1.0),
            "{scrape}"
        );
        // The next attempt (the 6th, at about 62 s less jitter) is well beyond one interval.
        let next = sample(
            &scrape,
            &format!("oauth2_probe_next_run_timestamp_seconds{{provider=\"{provider}\"}}"),
        )
        .expect("the next-run gauge");
        assert!(next > unix_now() + 10.0, "{provider}: next run at {next}");
    }
    let healthy = arrivals.count("/token/healthy") - healthy_before;
    assert!(
        healthy >= 20,
        "the healthy provider slowed down too: {healthy} requests in 30 s"
    );
    assert!(
        scrape
            .lines()
            .all(|l| !l.starts_with("oauth2_probe_backoff{") || !l.contains("healthy")),
        "{scrape}"
    );
    assert!(
        page.contains("backing off: next attempt in"),
        "the status page does not say the provider backs off:\n{page}"
    );
    let logs = exporter.stderr();
    assert!(
        logs.contains("backing off: the token endpoint refused the credentials")
            && logs.contains("provider=password reason=invalid_grant refusals=1 ")
            && logs.contains("provider=secret reason=invalid_client refusals=3 "),
        "{logs}"
    );

    // The operator writes the right values: each is tried within 3 s, not in half a minute.
    for (path, file, right) in [
        ("/token/password", &password_file, "new-password-1"),
        ("/token/secret", &secret_file, "new-secret-1"),
    ] {
        let before = arrivals.count(path);
        let written = Instant::now();
        std::fs::write(file, format!("{right}\n")).unwrap();
        until(
            &format!("{path}: an attempt after the file changed"),
            Duration::from_secs(10),
            || arrivals.count(path) > before,
        )
        .await;
        let waited = arrivals.at(path)[before] - written;
        assert!(
            waited < Duration::from_secs(3),
            "{path}: tried {waited:?} after the file changed"
        );
    }
    let scrape = exporter
        .wait_for_metrics("both recovered", Duration::from_secs(10), |m| {
            ["password", "secret"].iter().all(|p| {
                sample(m, &format!("oauth2_probe_success{{provider=\"{p}\"}}")) == Some(1.0)
            }) && !m.contains("oauth2_probe_backoff{")
        })
        .await;
    let next = sample(
        &scrape,
        "oauth2_probe_next_run_timestamp_seconds{provider=\"password\"}",
    )
    .unwrap();
    assert!(next < unix_now() + 5.0, "back at the interval: {next}");
    let logs = exporter.wait_for_log("back-off ended", 2).await;
    for secret in [
        "old-password-1",
        "new-password-1",
        "old-secret-1",
        "new-secret-1",
    ] {
        assert!(!logs.contains(secret), "{secret} in the log");
    }
    exporter.stop().await;
}

/// `Retry-After: 20` and `Retry-After: <an HTTP date 20 s ahead>` on a token 429, and on a
/// canary 503: no request to that provider before the moment named; a provider beside them is
/// probed every second throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_in_seconds_and_as_a_date() {
    let arrivals = Arrivals::default();
    let idp = {
        let arrivals = arrivals.clone();
        FakeServer::start(move |request| {
            let path = request.path.clone();
            arrivals.note(&path);
            let first = arrivals.count(&path) == 1;
            match path.as_str() {
                "/token/seconds" if first => Reply::raw(429, &[("retry-after", "20")], "slow down"),
                "/token/date" if first => {
                    let at = SystemTime::now() + Duration::from_secs(21);
                    Reply::raw(
                        429,
                        &[("retry-after", &httpdate::fmt_http_date(at))],
                        "slow down",
                    )
                }
                "/api/canary" if first => Reply::raw(503, &[("retry-after", "20")], "maintenance"),
                "/api/canary" => Reply::status(200),
                _ => Reply::token("retry-after-token", 3600),
            }
        })
        .await
    };
    let dir = tempfile::tempdir().unwrap();
    let toml = [
        defaults(&[("interval", r#""1s""#)]),
        provider(&idp, "seconds", "s").toml(),
        provider(&idp, "date", "s").toml(),
        provider(&idp, "canary", "s")
            .canary(&idp.url("/api/canary"))
            .toml(),
        provider(&idp, "healthy", "s").toml(),
    ]
    .concat();
    let mut exporter = start(dir.path(), &toml);
    until("a first answer to each", Duration::from_secs(30), || {
        ["/token/seconds", "/token/date", "/api/canary"]
            .iter()
            .all(|p| arrivals.count(p) >= 1)
    })
    .await;
    let scrape = exporter
        .wait_for_metrics("the back-off gauges", Duration::from_secs(5), |m| {
            m.contains("oauth2_probe_backoff{phase=\"canary\",provider=\"canary\",reason=\"http_5xx\"} 1")
                && m.contains("oauth2_probe_backoff{phase=\"token\",provider=\"seconds\",reason=\"rate_limited\"} 1")
                && m.contains("oauth2_probe_backoff{phase=\"token\",provider=\"date\",reason=\"rate_limited\"} 1")
        })
        .await;
    let first_seconds = arrivals.at("/token/seconds")[0];
    let next = sample(
        &scrape,
        "oauth2_probe_next_run_timestamp_seconds{provider=\"seconds\"}",
    )
    .unwrap();
    let elapsed = first_seconds.elapsed().as_secs_f64();
    assert!(
        (unix_now() - elapsed + 19.0..unix_now() - elapsed + 22.0).contains(&next),
        "next run {next}, 20 s after the 429"
    );
    let healthy_before = arrivals.count("/token/healthy");
    until(
        "the second request of each",
        Duration::from_secs(40),
        || {
            ["/token/seconds", "/token/date", "/api/canary"]
                .iter()
                .all(|p| arrivals.count(p) >= 2)
        },
    )
    .await;
    for path in ["/token/seconds", "/token/date", "/api/canary"] {
        let at = arrivals.at(path);
        let gap = at[1] - at[0];
        assert!(
            gap >= Duration::from_millis(19_500),
            "{path}: asked again {gap:?} after Retry-After 20"
        );
    }
    assert!(
        arrivals.count("/token/healthy") - healthy_before >= 12,
        "the healthy provider was held up too"
    );
    exporter.stop().await;
}

/// `max_backoff = "0s"` keeps today's pace: a refused provider is asked every interval.
/// A reload that changes a backing-off provider (its secret corrected in the file) ends its
/// back-off: the new settings are tried within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_max_backoff_keeps_the_pace_and_a_reload_ends_a_back_off() {
    let arrivals = Arrivals::default();
    let idp = {
        let arrivals = arrivals.clone();
        FakeServer::start(move |request| {
            arrivals.note(&request.path);
            token_endpoint(request, "reloaded-secret-1")
        })
        .await
    };
    let dir = tempfile::tempdir().unwrap();
    let config = |secret: &str| {
        [
            defaults(&[("interval", r#""1s""#)]),
            provider(&idp, "unlimited", "wrong-secret-1")
                .setting("max_backoff", r#""0s""#)
                .toml(),
            provider(&idp, "reloaded", secret).interval("2s").toml(),
        ]
        .concat()
    };
    let mut exporter = start(dir.path(), &config("wrong-secret-2"));
    until("a first refusal each", Duration::from_secs(30), || {
        arrivals.count("/token/unlimited") >= 1 && arrivals.count("/token/reloaded") >= 1
    })
    .await;
    let started = Instant::now();
    // Refused at 0, the reloaded provider's next attempt waits 4 s (2 x its interval) and its
    // one after that 8 s more: the reload comes in that wait.
    until(
        "two refusals of the backing-off provider",
        Duration::from_secs(15),
        || arrivals.count("/token/reloaded") >= 2,
    )
    .await;
    let unlimited = arrivals.count("/token/unlimited");
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        unlimited as f64 >= seconds - 2.0,
        "max_backoff = \"0s\" still backed off: {unlimited} requests in {seconds:.1} s"
    );
    let scrape = metrics(&mut exporter).await;
    assert!(
        !scrape.contains("oauth2_probe_backoff{phase=\"token\",provider=\"unlimited\""),
        "no back-off gauge with max_backoff = 0s: {scrape}"
    );
    let before = arrivals.count("/token/reloaded");
    std::fs::write(
        dir.path().join("exporter.toml"),
        config("reloaded-secret-1"),
    )
    .unwrap();
    let reloaded = Instant::now();
    exporter.signal(Signal::Hup);
    until(
        "the reloaded provider tries again",
        Duration::from_secs(10),
        || arrivals.count("/token/reloaded") > before,
    )
    .await;
    let waited = arrivals.at("/token/reloaded")[before] - reloaded;
    assert!(
        waited < Duration::from_secs(4),
        "the reloaded provider was tried {waited:?} after the reload"
    );
    exporter
        .wait_for_metrics(
            "the reloaded provider works",
            Duration::from_secs(10),
            |m| sample(m, "oauth2_probe_success{provider=\"reloaded\"}") == Some(1.0),
        )
        .await;
    exporter.stop().await;
}

/// Issue 23: 20 sequential `/probe` requests within 5 s make at most one token request; the
/// answers say they repeat the last result and when a fresh one is allowed. While a provider
/// backs off after a refusal, `/probe` makes no token request at all until the credential
/// changes, and then one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_probes_cannot_hammer_an_account() {
    let arrivals = Arrivals::default();
    let idp = {
        let arrivals = arrivals.clone();
        FakeServer::start(move |request| {
            arrivals.note(&request.path);
            token_endpoint(request, "right-secret-1")
        })
        .await
    };
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "wrong-secret-3").unwrap();
    let toml = [
        defaults(&[("interval", r#""30s""#)]),
        provider(&idp, "ok", "right-secret-1").toml(),
        provider(&idp, "refused", "")
            .secret_file(&secret_file)
            .toml(),
    ]
    .concat();
    let mut exporter = start(dir.path(), &toml);
    let address = exporter.address().await;
    let client = support::http_client(Duration::from_secs(10));
    let probe = |query: &str| {
        let client = client.clone();
        let url = format!("http://{address}/probe?{query}");
        async move {
            let response = client.get(url).send().await.unwrap();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            (
                response.status().as_u16(),
                retry_after,
                response.text().await.unwrap(),
            )
        }
    };

    // A fresh attempt, then 19 in a row answered from it.
    let before = arrivals.count("/token/ok");
    let started = Instant::now();
    let (status, retry_after, body) = probe("provider=ok").await;
    assert_eq!((status, retry_after), (200, None), "{body}");
    assert!(!body.contains("oauth2_probe_result_age_seconds"), "{body}");
    for n in 1..20 {
        let debug = n == 19;
        let (status, retry_after, body) = probe(if debug {
            "provider=ok&debug=true"
        } else {
            "provider=ok"
        })
        .await;
        assert_eq!(status, 200, "{body}");
        let retry_after =
            retry_after.unwrap_or_else(|| panic!("no Retry-After on answer {n}: {body}"));
        assert!(
            (1..=10).contains(&retry_after),
            "Retry-After: {retry_after}"
        );
        assert!(body.contains("oauth2_probe_result_age_seconds "), "{body}");
        assert!(body.contains("oauth2_probe_success 1"), "{body}");
        if debug {
            assert!(
                body.contains("repeated: the result of the last on-demand probe")
                    && body.contains("a fresh attempt is allowed in")
                    && body.contains("probe_min_interval = 10s")
                    && body.contains("== token request"),
                "{body}"
            );
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the 20 requests took too long"
    );
    assert_eq!(arrivals.count("/token/ok") - before, 1);

    // The refused provider: its periodic refusal starts a back-off (the next attempt in a
    // minute); /probe then answers with that refusal without asking the server.
    until("the periodic refusal", Duration::from_secs(30), || {
        arrivals.count("/token/refused") >= 1
    })
    .await;
    exporter
        .wait_for_metrics("the back-off", Duration::from_secs(5), |m| {
            m.contains("oauth2_probe_backoff{phase=\"token\",provider=\"refused\",reason=\"invalid_client\"} 1")
        })
        .await;
    let refused_before = arrivals.count("/token/refused");
    for n in 0..20 {
        let (status, retry_after, body) = probe(if n == 0 {
            "provider=refused&debug=true"
        } else {
            "provider=refused"
        })
        .await;
        assert_eq!(status, 200, "{body}");
        let retry_after = retry_after.unwrap_or_else(|| panic!("no Retry-After: {body}"));
        assert!(
            (30..=60).contains(&retry_after),
            "Retry-After: {retry_after}"
        );
        assert!(
            body.contains("oauth2_probe_failure{phase=\"token\",reason=\"invalid_client\"} 1"),
            "{body}"
        );
        if n == 0 {
            assert!(
                body.contains("not probed: backing off after 1 refusal (invalid_client)"),
                "{body}"
            );
        }
    }
    assert_eq!(
        arrivals.count("/token/refused"),
        refused_before,
        "/probe asked the server"
    );

    // The credential changes: the next /probe makes one attempt, which ends the back-off.
    std::fs::write(&secret_file, "right-secret-1").unwrap();
    let (status, retry_after, body) = probe("provider=refused").await;
    assert_eq!((status, retry_after), (200, None), "{body}");
    assert!(body.contains("oauth2_probe_success 1"), "{body}");
    assert_eq!(arrivals.count("/token/refused"), refused_before + 1);
    exporter
        .wait_for_metrics("the back-off ended", Duration::from_secs(5), |m| {
            !m.contains("oauth2_probe_backoff{")
        })
        .await;
    exporter.stop().await;
}

/// Issue 25: an assertion read from `client_assertion_file` is a credential like a secret file.
/// Refused, the provider backs off; the file rewritten by its issuer (another token) is noticed
/// without contacting the server and tried at once, not after the back-off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_client_assertion_file_ends_a_back_off() {
    let arrivals = Arrivals::default();
    let good = support::jwt(&serde_json::json!({"n": 2, "exp": unix_now() as u64 + 3600}));
    let idp = {
        let arrivals = arrivals.clone();
        let good = good.clone();
        FakeServer::start(move |request| {
            arrivals.note(&request.path);
            if request.form_map().get("client_assertion") == Some(&good) {
                Reply::token("federated-token", 3600)
            } else {
                Reply::oauth_error(401, "invalid_client")
            }
        })
        .await
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(
        &file,
        support::jwt(&serde_json::json!({"n": 1, "exp": unix_now() as u64 + 3600})),
    )
    .unwrap();
    let toml = Provider::new("federated", &idp.url("/token"))
        .interval("2s")
        .keyless("c", "client_assertion")
        .token_file("client_assertion_file", &file)
        .toml();
    let mut exporter = start(dir.path(), &toml);
    // Two refusals: the second came after a doubled interval, the next is due 8 s later.
    until("two refusals", Duration::from_secs(30), || {
        arrivals.count("/token") >= 2
    })
    .await;
    let scrape = metrics(&mut exporter).await;
    assert!(
        scrape.contains(
            "oauth2_probe_backoff{phase=\"token\",provider=\"federated\",reason=\"invalid_client\"} 1"
        ),
        "{scrape}"
    );
    let written = Instant::now();
    std::fs::write(&file, &good).unwrap();
    until(
        "the rewritten assertion tried within 4 s",
        Duration::from_secs(4),
        || arrivals.count("/token") >= 3,
    )
    .await;
    let waited = arrivals.at("/token")[2].duration_since(written);
    assert!(
        waited < Duration::from_secs(4),
        "tried {waited:?} after the file changed"
    );
    exporter.stop().await;
}
