//! Load and faults on the daemon itself (issue #4, section 5), mostly against the real binary:
//! 200 concurrent scrapers for 10 s while 100 providers probe (every scrape well-formed, probes
//! on schedule, memory flat), slowloris clients that must not block scrapes, SIGTERM with token
//! requests hanging in flight, provider mutual TLS against a token server that requires
//! client certificates, and (issue 16) 400 providers black-holed under a 256-descriptor limit.
//!
//! The tests in this module take turns (one lock): each measures timing or memory, and running
//! them side by side on a 2-core machine would measure each other. (Tests of other modules may
//! run beside them, as other builds do on a shared machine: the load test's phases follow
//! conditions, not the clock.) Measured numbers are printed
//! (`cargo test --test it load_and_faults:: -- --nocapture`); the bounds asserted on them are
//! deliberately generous, as the machine is shared with other builds.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::certs::{self, Ca};
use support::{
    Binary, Daemon, FakeServer, Provider, Reply, Running, Signal, WAIT, relevant_lines, sample,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One test at a time in this file (see the module comment). A tokio mutex: it is held across
/// awaits, and is not poisoned by a failing test.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------------------------
// The binary as a child process (started by `support::binary`).

/// The binary on `127.0.0.1:0` with configuration `toml` (written to `dir`).
fn spawn(dir: &Path, toml: &str) -> Running {
    let config = certs::write(dir, "exporter.toml", toml);
    Binary::new().config(&config).listen_loopback().spawn()
}

/// Resident set size in KiB, from `/proc/PID/status`.
fn rss_kib(exporter: &Running) -> u64 {
    exporter
        .memory_kib("VmRSS")
        .unwrap_or_else(|| panic!("no VmRSS for pid {}", exporter.pid()))
}

/// A client for scrapes. The timeout is long: with 200 scrapers on 2 shared cores a scrape
/// waits its turn for seconds, and that is not a failure.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        // The exporter closes a connection that sends no request for 10 s (its header read
        // timeout); reusing one just as it closes fails the request (the keep-alive race of any
        // HTTP client), which a loaded machine made happen about once in 1 000 scrapes. Idle
        // connections are dropped here first.
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// One plain-text scrape.
async fn scrape(client: &reqwest::Client, addr: SocketAddr) -> String {
    client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn wait_for_metrics(
    client: &reqwest::Client,
    addr: SocketAddr,
    what: &str,
    predicate: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = scrape(client, addr).await;
        if predicate(&metrics) {
            return metrics;
        }
        assert!(
            Instant::now() < deadline,
            "not within 20 s: {what}; last scrape:\n{}",
            relevant_lines(&metrics)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Checking the text exposition format.

/// One sample line: metric name, `provider` label if any, value.
struct Line<'a> {
    name: &'a str,
    provider: Option<&'a str>,
    value: f64,
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

/// Parses `name{label="value",...} value [timestamp]` strictly (Prometheus text format 0.0.4).
/// Byte-level on purpose: every one of thousands of large scrapes goes through it in an
/// unoptimised test build, on the cores the exporter under test needs.
fn parse_sample(line: &str) -> Result<Line<'_>, String> {
    let bad = |why: &str| format!("{why}: {line:?}");
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() && is_name_byte(bytes[i]) {
        i += 1;
    }
    let name = &line[..i];
    if name.is_empty() || bytes[0].is_ascii_digit() {
        return Err(bad("bad metric name"));
    }
    let mut provider = None;
    if i < bytes.len() && bytes[i] == b'{' {
        i += 1;
        loop {
            if i >= bytes.len() {
                return Err(bad("unterminated labels"));
            }
            if bytes[i] == b'}' {
                i += 1;
                break;
            }
            let label_start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            if i == label_start || bytes[label_start].is_ascii_digit() {
                return Err(bad("bad label name"));
            }
            let label = &line[label_start..i];
            if bytes.get(i) != Some(&b'=') || bytes.get(i + 1) != Some(&b'"') {
                return Err(bad("label without =\""));
            }
            i += 2;
            let value_start = i;
            // The closing quote is the first one not escaped by a backslash.
            loop {
                match bytes.get(i) {
                    None => return Err(bad("unterminated label value")),
                    Some(b'\\') => i += 2,
                    Some(b'"') => break,
                    Some(_) => i += 1,
                }
            }
            if label == "provider" {
                provider = Some(&line[value_start..i]);
            }
            i += 1;
            if bytes.get(i) == Some(&b',') {
                i += 1;
            }
        }
    }
    if bytes.get(i) != Some(&b' ') {
        return Err(bad("no space before the value"));
    }
    let rest = &line[i + 1..];
    let (value_text, timestamp) = match rest.split_once(' ') {
        Some((value, timestamp)) => (value, Some(timestamp)),
        None => (rest, None),
    };
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        text => text.parse().map_err(|_| bad("bad value"))?,
    };
    if let Some(timestamp) = timestamp
        && timestamp.parse::<i64>().is_err()
    {
        return Err(bad("bad timestamp"));
    }
    Ok(Line {
        name,
        provider,
        value,
    })
}

/// What one scrape says about each provider's cycles: (token requests so far, last run).
type CycleView = Vec<(String, f64, f64)>;

/// Checks a whole scrape: ends with a newline, no empty line, every line a comment or a
/// parseable sample, and every sample inside its family's block, right after that family's
/// `# TYPE` line (histogram samples as `_bucket`, `_sum`, `_count`), no family twice. Returns
/// each provider's token request count and last run time.
fn check_exposition(text: &str) -> Result<CycleView, String> {
    if !text.ends_with('\n') {
        let tail = &text[text.len().saturating_sub(80)..];
        return Err(format!("does not end with a newline: ...{tail:?}"));
    }
    let mut families = BTreeSet::new();
    let mut family = "";
    let mut histogram = false;
    let mut requests: BTreeMap<&str, f64> = BTreeMap::new();
    let mut last_runs: BTreeMap<&str, f64> = BTreeMap::new();
    for line in text[..text.len() - 1].split('\n') {
        if let Some(comment) = line.strip_prefix("# ") {
            if let Some(declaration) = comment.strip_prefix("TYPE ") {
                let (name, kind) = declaration
                    .split_once(' ')
                    .ok_or_else(|| format!("bad TYPE line: {line:?}"))?;
                if !matches!(
                    kind,
                    "counter" | "gauge" | "histogram" | "summary" | "untyped"
                ) {
                    return Err(format!("unknown type: {line:?}"));
                }
                if !families.insert(name) {
                    return Err(format!("family typed twice: {line:?}"));
                }
                family = name;
                histogram = matches!(kind, "histogram" | "summary");
            }
            continue;
        }
        if line.is_empty() {
            return Err("empty line".to_string());
        }
        let sample = parse_sample(line)?;
        let in_family = sample.name == family
            || (histogram
                && sample.name.len() > family.len()
                && sample.name.starts_with(family)
                && matches!(&sample.name[family.len()..], "_bucket" | "_sum" | "_count"));
        if !in_family {
            return Err(format!(
                "sample outside its # TYPE block ({family}): {line:?}"
            ));
        }
        if let Some(provider) = sample.provider {
            match sample.name {
                "oauth2_token_requests_total" => {
                    requests.insert(provider, sample.value);
                }
                "oauth2_probe_last_run_timestamp_seconds" => {
                    last_runs.insert(provider, sample.value);
                }
                _ => {}
            }
        }
    }
    for required in ["oauth2_probe_success", "oauth2_token_requests_total"] {
        if !families.contains(required) {
            return Err(format!("family {required} missing"));
        }
    }
    Ok(last_runs
        .into_iter()
        .filter_map(|(provider, last_run)| {
            Some((provider.to_string(), *requests.get(provider)?, last_run))
        })
        .collect())
}

/// `p`-th percentile (0..=100) of sorted values.
fn percentile<T: Copy>(sorted: &[T], p: usize) -> T {
    sorted[(sorted.len() - 1) * p / 100]
}

// ---------------------------------------------------------------------------------------------
// Load.

const PROVIDERS: usize = 100;
const SCRAPERS: usize = 200;
/// How many cycles every provider runs under the full load before it ends (about 8 s).
const LOAD_CYCLES: f64 = 8.0;
/// The most the load may last, warm-up included, on a machine however busy.
const LOAD_LIMIT: Duration = Duration::from_secs(90);
const INTERVAL: Duration = Duration::from_secs(1);

/// 200 scrapers while 100 providers probe every second, until every provider ran 8 cycles
/// under the full load: every scrape answered and well-formed, cycles on schedule (lateness
/// from `oauth2_probe_last_run_timestamp_seconds` deltas between consecutive cycles), resident
/// memory flat from the start to the end of the load. The load's phases follow conditions
/// (every scraper answered once, every provider's cycles), not the clock, so a loaded machine
/// makes it longer, not wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_scrapers_while_a_hundred_providers_probe() {
    let _turn = SERIAL.lock().await;
    // The identity provider gets a runtime of its own, so that checking scrapes (CPU work in
    // this process) does not delay its answers and pass for probe lateness.
    let (idp_runtime, idp) = std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let idp = runtime.block_on(FakeServer::start(|request| match request.path.as_str() {
            "/token" => Reply::token("load-token", 3600),
            _ => Reply::status(200),
        }));
        (runtime, idp)
    })
    .join()
    .unwrap();
    let mut toml = String::from("[defaults]\ninterval = \"1s\"\ntimeout = \"5s\"\n");
    for i in 0..PROVIDERS {
        toml.push_str(&format!(
            "[providers.p{i:03}.token]\nurl = \"{}\"\nclient_id = \"p{i:03}\"\nclient_secret = \"s{i:03}\"\n[providers.p{i:03}.canary]\nurl = \"{}\"\n",
            idp.url("/token"),
            idp.url("/api")
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut exporter = spawn(dir.path(), &toml);
    let addr = exporter.address().await;
    let client = http_client();
    // Warm-up: every provider has probed (start times are spread over the first interval).
    wait_for_metrics(&client, addr, "all providers probed", |m| {
        (0..PROVIDERS).all(|i| {
            sample(m, &format!("oauth2_probe_success{{provider=\"p{i:03}\"}}")) == Some(1.0)
        })
    })
    .await;
    let rss_idle = rss_kib(&exporter);

    let url = format!("http://{addr}/metrics");
    let started = Instant::now();
    let deadline = started + LOAD_LIMIT;
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut scrapers = Vec::new();
    for _ in 0..SCRAPERS {
        let client = client.clone();
        let url = url.clone();
        let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
        scrapers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = Vec::new();
            let mut cycles: BTreeMap<String, BTreeSet<(u64, u64)>> = BTreeMap::new();
            // Bounded by time and by count.
            for n in 0..100_000 {
                if stop.load(Ordering::SeqCst) || Instant::now() >= deadline {
                    break;
                }
                let sent = Instant::now();
                let result = async {
                    let response = client
                        .get(&url)
                        .send()
                        .await
                        .map_err(|e| format!("{e:?}"))?;
                    if response.status() != 200 {
                        return Err(format!("status {}", response.status()));
                    }
                    response.text().await.map_err(|e| e.to_string())
                }
                .await;
                latencies.push(sent.elapsed());
                if n == 0 {
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                match result.and_then(|text| check_exposition(&text)) {
                    Ok(view) => {
                        for (provider, requests, last_run) in view {
                            // Exact keys: (token requests, last run in microseconds).
                            cycles
                                .entry(provider)
                                .or_default()
                                .insert((requests as u64, (last_run * 1e6) as u64));
                        }
                    }
                    Err(error) => failures.push(error),
                }
            }
            (latencies, failures, cycles)
        }));
    }
    // The full load: every scraper has had an answer, so all its connections are open.
    while answered.load(Ordering::SeqCst) < SCRAPERS {
        assert!(
            Instant::now() < deadline,
            "only {} of {SCRAPERS} scrapers answered within {LOAD_LIMIT:?}",
            answered.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_start = rss_kib(&exporter);
    let requests = |m: &str, i: usize| {
        sample(
            m,
            &format!("oauth2_token_requests_total{{provider=\"p{i:03}\"}}"),
        )
        .unwrap_or(0.0)
    };
    let at_start = scrape(&client, addr).await;
    let at_start: Vec<f64> = (0..PROVIDERS).map(|i| requests(&at_start, i)).collect();
    loop {
        let metrics = scrape(&client, addr).await;
        if (0..PROVIDERS).all(|i| requests(&metrics, i) >= at_start[i] + LOAD_CYCLES) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every provider ran {LOAD_CYCLES} cycles under load within {LOAD_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Sampled while the scrapers are still at it.
    let rss_end = rss_kib(&exporter);
    stop.store(true, Ordering::SeqCst);
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    let mut cycles: BTreeMap<String, BTreeSet<(u64, u64)>> = BTreeMap::new();
    for scraper in scrapers {
        let (l, f, c) = tokio::time::timeout(Duration::from_secs(30), scraper)
            .await
            .expect("a scraper did not finish")
            .unwrap();
        latencies.extend(l);
        failures.extend(f);
        for (provider, seen) in c {
            cycles.entry(provider).or_default().extend(seen);
        }
    }
    let elapsed = started.elapsed();
    // Once every scraper is done and its connections closed.
    let rss_after = rss_kib(&exporter);

    // Every scrape answered and well-formed.
    latencies.sort();
    let scrapes = latencies.len();
    println!(
        "load: {scrapes} scrapes by {SCRAPERS} scrapers in {elapsed:.1?} ({:.0}/s); latency p50 {:?} p90 {:?} p99 {:?} max {:?}",
        scrapes as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 50),
        percentile(&latencies, 90),
        percentile(&latencies, 99),
        percentile(&latencies, 100)
    );
    assert!(
        failures.is_empty(),
        "{} of {scrapes} scrapes failed; first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(scrapes >= SCRAPERS, "only {scrapes} scrapes");

    // Lateness: between two consecutive cycles of a provider (token request count +1) the
    // last-run timestamp should advance by one interval; the excess is lateness.
    let mut lateness = Vec::new();
    let mut cycles_per_provider = Vec::new();
    for seen in cycles.values() {
        // One last-run value per request count (a scrape between the counter update and the
        // timestamp update of the same cycle shows the new count with the old time: the
        // largest time seen for a count is the right one).
        let mut by_count: BTreeMap<u64, u64> = BTreeMap::new();
        for (count, last_run) in seen {
            let entry = by_count.entry(*count).or_default();
            *entry = (*entry).max(*last_run);
        }
        let counts: Vec<u64> = by_count.keys().copied().collect();
        cycles_per_provider.push(counts[counts.len() - 1] - counts[0]);
        for pair in by_count.iter().collect::<Vec<_>>().windows(2) {
            let ((c0, t0), (c1, t1)) = (pair[0], pair[1]);
            if c1 - c0 == 1 && t1 > t0 {
                let gap = Duration::from_micros(t1 - t0);
                lateness.push(gap.saturating_sub(INTERVAL));
            }
        }
    }
    assert_eq!(cycles.len(), PROVIDERS, "providers seen in scrapes");
    lateness.sort();
    cycles_per_provider.sort();
    let expected_cycles = (elapsed.as_secs_f64() / INTERVAL.as_secs_f64()) as u64;
    println!(
        "load: cycles per provider min {} median {} (about {expected_cycles} expected); lateness over {} consecutive-cycle pairs: p50 {:?} p90 {:?} p99 {:?} max {:?}",
        cycles_per_provider[0],
        percentile(&cycles_per_provider, 50),
        lateness.len(),
        percentile(&lateness, 50),
        percentile(&lateness, 90),
        percentile(&lateness, 99),
        percentile(&lateness, 100)
    );
    println!(
        "load: VmRSS idle {rss_idle} KiB, at the full load's start {rss_start} KiB, at its end {rss_end} KiB, after {rss_after} KiB"
    );
    // Memory first (it does not depend on the schedule). Flat: what the load costs once its
    // connections are open does not keep growing.
    assert!(
        rss_end <= rss_start + rss_start / 2 + 16 * 1024,
        "memory grew under steady load: {rss_start} KiB -> {rss_end} KiB"
    );
    assert!(
        rss_after <= rss_idle * 4 + 64 * 1024,
        "memory after the load {rss_after} KiB, idle {rss_idle} KiB"
    );
    assert!(
        cycles_per_provider[0] * 2 >= expected_cycles,
        "probes starved by scrapes: a provider ran {} cycles in {elapsed:.1?} at a 1 s interval (median {})",
        cycles_per_provider[0],
        percentile(&cycles_per_provider, 50)
    );
    assert!(
        lateness.len() >= PROVIDERS * 3,
        "too few consecutive cycles observed ({}) to judge the schedule",
        lateness.len()
    );
    assert!(
        percentile(&lateness, 99) < Duration::from_millis(1500),
        "probes fell behind schedule: p99 lateness {:?}",
        percentile(&lateness, 99)
    );
    // The daemon is still healthy and probing.
    let metrics = wait_for_metrics(&client, addr, "still probing", |m| {
        sample(m, r#"oauth2_probe_success{provider="p000"}"#) == Some(1.0)
    })
    .await;
    check_exposition(&metrics).unwrap();
    exporter.signal(Signal::Term);
    let (status, _) = exporter.exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{}", exporter.stderr());
    drop(idp);
    idp_runtime.shutdown_background();
}

// ---------------------------------------------------------------------------------------------
// Slowloris.

const SLOW_CLIENTS: usize = 300;

/// 300 clients that send their request headers one byte a second hold connections open, but a
/// normal scrape still answers within about a second, and the server drops each slow client
/// once its header read timeout (10 s) passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_do_not_block_scrapes() {
    let _turn = SERIAL.lock().await;
    let idp = FakeServer::start(|request| match request.path.as_str() {
        "/token" => Reply::token("slow-token", 3600),
        _ => Reply::status(200),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut exporter = spawn(
        dir.path(),
        &format!(
            "[providers.p]\ninterval = \"500ms\"\n[providers.p.token]\nurl = \"{}\"\nclient_id = \"p\"\nclient_secret = \"s\"\n",
            idp.url("/token")
        ),
    );
    let addr = exporter.address().await;
    wait_for_metrics(&http_client(), addr, "p probed", |m| {
        sample(m, r#"oauth2_probe_success{provider="p"}"#) == Some(1.0)
    })
    .await;

    // Open every slow connection first, then drip.
    let opened = Instant::now();
    let mut streams = Vec::new();
    for _ in 0..SLOW_CLIENTS {
        streams.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let request: &'static [u8] =
        b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris-test/1.0\r\nAccept: */*\r\n\r\n";
    let closed_after = Arc::new(Mutex::new(Vec::new()));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut drips = Vec::new();
    for mut stream in streams {
        let closed_after = Arc::clone(&closed_after);
        let answered = Arc::clone(&answered);
        drips.push(tokio::spawn(async move {
            let mut buffer = [0u8; 1024];
            // At most the whole request, one byte per second; the server should close first.
            for byte in request {
                tokio::select! {
                    read = stream.read(&mut buffer) => {
                        if let Ok(n) = read && n > 0 {
                            // An answer to a request sent one byte at a time (a 408, say)
                            // still means the connection is being dealt with.
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                        closed_after.lock().unwrap().push(opened.elapsed());
                        return;
                    }
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                if stream.write_all(std::slice::from_ref(byte)).await.is_err() {
                    closed_after.lock().unwrap().push(opened.elapsed());
                    return;
                }
            }
        }));
    }

    // Meanwhile, normal scrapes on fresh connections.
    let mut latencies = Vec::new();
    let scrape_until = opened + Duration::from_secs(8);
    for _ in 0..200 {
        if Instant::now() >= scrape_until {
            break;
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let sent = Instant::now();
        let response = client
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("scrape during slowloris failed: {e}"));
        assert_eq!(response.status(), 200);
        let body = response.text().await.unwrap();
        latencies.push(sent.elapsed());
        check_exposition(&body).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let still_open = SLOW_CLIENTS - closed_after.lock().unwrap().len();

    // The slow clients are dropped by the header read timeout (10 s), well before they finish.
    for drip in drips {
        tokio::time::timeout(Duration::from_secs(30), drip)
            .await
            .expect("a slow client was neither answered nor closed")
            .unwrap();
    }
    latencies.sort();
    let mut closed = closed_after.lock().unwrap().clone();
    closed.sort();
    println!(
        "slowloris: {SLOW_CLIENTS} slow clients, {still_open} still open after 8 s; {} scrapes meanwhile, latency p50 {:?} max {:?}; slow clients closed by the server after {:?}..{:?} ({} got bytes back)",
        latencies.len(),
        percentile(&latencies, 50),
        percentile(&latencies, 100),
        closed[0],
        closed[closed.len() - 1],
        answered.load(Ordering::SeqCst)
    );
    assert!(latencies.len() >= 10, "only {} scrapes", latencies.len());
    assert!(
        percentile(&latencies, 100) < Duration::from_millis(1500),
        "a scrape took {:?} with slow clients connected",
        percentile(&latencies, 100)
    );
    assert!(
        still_open >= SLOW_CLIENTS * 9 / 10,
        "the slow clients were not really holding connections ({still_open} open after 8 s)"
    );
    assert_eq!(closed.len(), SLOW_CLIENTS);
    assert!(
        closed[closed.len() - 1] < Duration::from_secs(16),
        "slow clients kept for {:?}: no header read timeout?",
        closed[closed.len() - 1]
    );
    exporter.signal(Signal::Term);
    let (status, _) = exporter.exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{}", exporter.stderr());
}

// ---------------------------------------------------------------------------------------------
// SIGTERM with probes in flight.

/// Every provider's token request hangs (the server never answers, timeout 60 s); SIGTERM
/// still ends the daemon with exit 0 within 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_probes_in_flight_exits_0_within_5_s() {
    let _turn = SERIAL.lock().await;
    let idp = FakeServer::start(|_| Reply::Hang).await;
    let mut toml = String::from("[defaults]\ninterval = \"500ms\"\ntimeout = \"60s\"\n");
    for i in 0..10 {
        toml.push_str(&format!(
            "[providers.hang{i}.token]\nurl = \"{}\"\nclient_id = \"c{i}\"\nclient_secret = \"s{i}\"\n",
            idp.url("/token")
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut exporter = spawn(dir.path(), &toml);
    let addr = exporter.address().await;
    idp.wait_for_requests("/token", 10, WAIT).await;
    // In flight indeed: no cycle has finished.
    let metrics = scrape(&http_client(), addr).await;
    assert!(
        !metrics.contains("oauth2_probe_last_run_timestamp_seconds{"),
        "a cycle finished: {}",
        relevant_lines(&metrics)
    );

    exporter.signal(Signal::Term);
    let (status, took) = exporter.exit(Duration::from_secs(15)).await;
    println!("sigterm: exited {status} after {took:?} with 10 token requests hanging");
    assert_eq!(status.code(), Some(0), "{}", exporter.stderr());
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let stderr = exporter.stderr();
    assert!(stderr.contains("msg=\"shutting down\""), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// Provider mutual TLS.

/// A loopback HTTPS token endpoint that demands a client certificate signed by `client_ca`
/// (rustls `WebPkiClientVerifier`). Counts handshakes that presented one.
struct MtlsTokenServer {
    addr: SocketAddr,
    verified_clients: Arc<AtomicUsize>,
    cancel: tokio_util::sync::CancellationToken,
}

impl MtlsTokenServer {
    async fn start(server: &certs::Leaf, client_ca: &Ca) -> MtlsTokenServer {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(client_ca.cert_pem.as_bytes()).unwrap())
            .unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&provider),
        )
        .build()
        .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(server.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let verified_clients = Arc::new(AtomicUsize::new(0));
        let cancel = tokio_util::sync::CancellationToken::new();
        let (counter, stop) = (Arc::clone(&verified_clients), cancel.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(_) => continue,
                    },
                };
                let (acceptor, counter) = (acceptor.clone(), Arc::clone(&counter));
                tokio::spawn(async move {
                    // A client without a certificate fails here: nothing to serve.
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    if stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .is_some_and(|c| !c.is_empty())
                    {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    let service = hyper::service::service_fn(|_request| async {
                        let body = serde_json::json!({
                            "access_token": "mtls-token",
                            "token_type": "Bearer",
                            "expires_in": 3600,
                        })
                        .to_string();
                        let mut response = hyper::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(body),
                        ));
                        response.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, std::convert::Infallible>(response)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        MtlsTokenServer {
            addr,
            verified_clients,
            cancel,
        }
    }
}

impl Drop for MtlsTokenServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// `[providers.X.tls] client_cert_file/client_key_file/ca_file` against a token server that
/// requires client certificates: with the client certificate the probe succeeds; without it
/// the token request fails with reason `tls` (or `connect`), and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_mtls_with_and_without_a_client_certificate() {
    let _turn = SERIAL.lock().await;
    let server_ca = Ca::new("token server CA");
    let client_ca = Ca::new("token client CA");
    let server = MtlsTokenServer::start(&server_ca.server(), &client_ca).await;
    let dir = tempfile::tempdir().unwrap();
    let client = client_ca.client("oauth2-exporter");
    let ca_file = certs::write(dir.path(), "server-ca.pem", &server_ca.cert_pem);
    let cert_file = certs::write(dir.path(), "client.pem", &client.cert_pem);
    let key_file = certs::write(dir.path(), "client-key.pem", &client.key_pem);
    let url = format!("https://127.0.0.1:{}/token", server.addr.port());
    let daemon = Daemon::start(
        &[
            support::config::defaults(&[("interval", r#""300ms""#), ("timeout", r#""5s""#)]),
            support::config::providers(&[
                Provider::new("with_cert", &url)
                    .client("c", "s")
                    .tls_file("ca_file", &ca_file)
                    .tls_file("client_cert_file", &cert_file)
                    .tls_file("client_key_file", &key_file),
                Provider::new("without_cert", &url)
                    .client("c", "s")
                    .tls_file("ca_file", &ca_file),
            ]),
        ]
        .concat(),
    )
    .await;
    let metrics = daemon
        .wait_for(
            |m| {
                sample(m, r#"oauth2_probe_success{provider="with_cert"}"#) == Some(1.0)
                    && sample(m, r#"oauth2_probe_success{provider="without_cert"}"#) == Some(0.0)
                    && sample(m, r#"oauth2_token_requests_total{provider="without_cert"}"#)
                        >= Some(2.0)
            },
            WAIT,
        )
        .await;
    assert!(server.verified_clients.load(Ordering::SeqCst) >= 1);
    let failures = support::series_of(&metrics, "oauth2_token_request_failures_total");
    let without: Vec<&&str> = failures
        .iter()
        .filter(|l| l.contains("provider=\"without_cert\""))
        .collect();
    println!("mtls: failures without a client certificate: {without:?}");
    let reasons: Vec<&str> = without
        .iter()
        .filter_map(|l| l.split("reason=\"").nth(1)?.split('"').next())
        .collect();
    assert!(
        !reasons.is_empty() && reasons.iter().all(|r| *r == "tls" || *r == "connect"),
        "reasons without the client certificate: {reasons:?}"
    );
    assert!(
        !failures
            .iter()
            .any(|l| l.contains("provider=\"with_cert\"")),
        "with the certificate: {failures:?}"
    );
    assert_eq!(
        sample(&metrics, r#"oauth2_token_valid{provider="with_cert"}"#),
        Some(1.0)
    );
    daemon.stop().await;
}

// ---------------------------------------------------------------------------------------------
// An identity provider that black-holes a large fleet (issue 16).

/// Providers in the black-hole test: far more than the 64 request slots a 256-descriptor
/// process gets, as 3 000 are beyond the 448 slots of systemd's default 1 024.
const BLACKHOLE_PROVIDERS: usize = 400;
/// The descriptor limit (soft and hard) the exporter runs with in that test.
const BLACKHOLE_NOFILE: u64 = 256;

/// What [`BlackHole`] does with a connection.
const HOLD: usize = 0;
const ANSWER: usize = 1;
const STOP: usize = 2;

/// A token endpoint on loopback (std, on a thread of its own) that first black-holes: accepts
/// and never answers, as behind a firewall dropping packets or an overloaded IdP; then, once
/// told to, answers every request with a token.
struct BlackHole {
    addr: SocketAddr,
    mode: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BlackHole {
    fn start() -> BlackHole {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Non-blocking, so the thread notices STOP; bounded in time besides.
        listener.set_nonblocking(true).unwrap();
        let mode = Arc::new(AtomicUsize::new(HOLD));
        let thread_mode = Arc::clone(&mode);
        let thread = std::thread::spawn(move || {
            let mut held = std::collections::VecDeque::new();
            let deadline = Instant::now() + Duration::from_secs(300);
            while Instant::now() < deadline {
                match thread_mode.load(Ordering::Acquire) {
                    STOP => break,
                    ANSWER => held.clear(),
                    _ => {}
                }
                match listener.accept() {
                    Ok((stream, _)) => {
                        if thread_mode.load(Ordering::Acquire) == HOLD {
                            // Bounded: the oldest (long abandoned by the exporter) go first.
                            if held.len() >= 4096 {
                                held.pop_front();
                            }
                            held.push_back(stream);
                        } else {
                            answer_token_request(stream);
                        }
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        BlackHole {
            addr,
            mode,
            thread: Some(thread),
        }
    }

    fn answer(&self) {
        self.mode.store(ANSWER, Ordering::Release);
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.mode.store(STOP, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request (headers, then the body its Content-Length announces; bounded in size and
/// time) and answers with a token, closing the connection.
fn answer_token_request(stream: std::net::TcpStream) {
    use std::io::{Read, Write};
    let mut stream = stream;
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    while request.len() < 64 * 1024 {
        let Ok(n) = stream.read(&mut buffer) else {
            return;
        };
        if n == 0 {
            return;
        }
        request.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&request);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if request.len() >= end + 4 + length {
                break;
            }
        }
    }
    let body = r#"{"access_token":"recovered","token_type":"Bearer","expires_in":3600}"#;
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Open descriptors of a process, from `/proc/PID/fd`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

/// Issue 16: 400 providers against a token server that accepts and never answers, in a process
/// limited to 256 descriptors. The exporter must not run out of descriptors, must report every
/// failure as `timeout` (the IdP's) or `exporter_busy` (its own), never `connect`, must keep
/// answering scrapes fast, and every provider must recover once the server answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_fleet_under_256_descriptors_fails_honestly_and_recovers() {
    let _turn = SERIAL.lock().await;
    if !support::binary::prlimit_available() {
        return support::peers::skip_or_fail(
            "a_black_holed_fleet_under_256_descriptors_fails_honestly_and_recovers",
            "prlimit (util-linux) is not on PATH (run scripts/install-peers)",
        );
    }
    let hole = BlackHole::start();
    let url = format!("http://{}/token", hole.addr);
    let mut toml = String::from("[defaults]\ninterval = \"2s\"\ntimeout = \"2s\"\n");
    for i in 0..BLACKHOLE_PROVIDERS {
        toml.push_str(&format!(
            "[providers.b{i:03}.token]\nurl = \"{url}\"\nclient_id = \"b{i:03}\"\nclient_secret = \"s{i:03}\"\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let config = certs::write(dir.path(), "exporter.toml", &toml);
    let mut exporter = Binary::new()
        .config(&config)
        .listen_loopback()
        .descriptor_limit(BLACKHOLE_NOFILE)
        .spawn();
    let addr = exporter.address().await;
    let pid = exporter.pid();
    let client = http_client();
    let failed = |m: &str, i: usize| {
        sample(m, &format!("oauth2_probe_success{{provider=\"b{i:03}\"}}")) == Some(0.0)
    };

    // Black-holed: scrape every 250 ms until every provider has failed at least twice over,
    // timing each scrape and counting the exporter's descriptors.
    let mut scrape_times = Vec::new();
    let mut peak_fds = 0;
    let mut health_worst = Duration::ZERO;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut metrics = String::new();
    let mut all_failed_at = None;
    for _ in 0..1000 {
        peak_fds = peak_fds.max(open_fds(pid));
        let sent = Instant::now();
        metrics = scrape(&client, addr).await;
        scrape_times.push(sent.elapsed());
        let sent = Instant::now();
        let health = client
            .get(format!("http://{addr}/-/healthy"))
            .send()
            .await
            .unwrap();
        assert!(health.status().is_success());
        health_worst = health_worst.max(sent.elapsed());
        if all_failed_at.is_none() && (0..BLACKHOLE_PROVIDERS).all(|i| failed(&metrics, i)) {
            all_failed_at = Some(Instant::now());
        }
        // Two more intervals after all failed: the steady state of the outage.
        if all_failed_at.is_some_and(|at| at.elapsed() > Duration::from_secs(4)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every provider failed within 60 s: {}\n{}",
            relevant_lines(&metrics),
            exporter.stderr()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    scrape_times.sort();
    let reasons = |reason: &str| -> f64 {
        (0..BLACKHOLE_PROVIDERS)
            .filter_map(|i| {
                sample(
                    &metrics,
                    &format!(
                        "oauth2_token_request_failures_total{{provider=\"b{i:03}\",reason=\"{reason}\"}}"
                    ),
                )
            })
            .sum()
    };
    let (timeouts, busy, connects) = (
        reasons("timeout"),
        reasons("exporter_busy"),
        reasons("connect"),
    );
    let failures: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("oauth2_token_request_failures_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    let limit = sample(&metrics, "oauth2_exporter_requests_in_flight_limit");
    let in_flight = sample(&metrics, "oauth2_exporter_requests_in_flight");
    println!(
        "black hole, {BLACKHOLE_PROVIDERS} providers, nofile {BLACKHOLE_NOFILE}: failures timeout {timeouts} exporter_busy {busy} connect {connects} (all {failures}); \
         slots {in_flight:?}/{limit:?}; peak fds {peak_fds}; scrape p50 {:?} max {:?}; /-/healthy max {health_worst:?}",
        percentile(&scrape_times, 50),
        scrape_times.last().copied().unwrap_or_default(),
    );
    let stderr = exporter.stderr();
    assert_eq!(
        connects, 0.0,
        "a local shortage blamed on the IdP:\n{stderr}"
    );
    assert_eq!(timeouts + busy, failures, "{}", relevant_lines(&metrics));
    assert!(timeouts > 0.0 && busy > 0.0, "{}", relevant_lines(&metrics));
    assert_eq!(limit, Some(64.0), "(256 - 128 reserved) / 2");
    assert!(in_flight.is_some_and(|n| n <= 64.0), "{in_flight:?}");
    assert!(!stderr.contains("Too many open files"), "{stderr}");
    assert!(
        stderr.contains("msg=\"file descriptor limit\" limit=256"),
        "{stderr}"
    );
    assert!(peak_fds < BLACKHOLE_NOFILE as usize, "peak fds {peak_fds}");
    let slowest = scrape_times.last().copied().unwrap_or_default();
    assert!(
        slowest < Duration::from_secs(1),
        "slowest scrape {slowest:?}"
    );
    assert!(
        health_worst < Duration::from_secs(1),
        "slowest /-/healthy {health_worst:?}"
    );

    // The IdP answers again: every provider recovers.
    hole.answer();
    let recovered = Instant::now();
    // Generous: a debug build on 2 shared cores logs and probes 400 providers meanwhile.
    exporter
        .wait_for_metrics("every provider recovered", Duration::from_secs(60), |m| {
            (0..BLACKHOLE_PROVIDERS).all(|i| {
                sample(m, &format!("oauth2_probe_success{{provider=\"b{i:03}\"}}")) == Some(1.0)
            })
        })
        .await;
    println!(
        "black hole: every provider recovered {:?} after the server answered",
        recovered.elapsed()
    );
    let (status, _) = exporter.stop().await;
    assert_eq!(status.code(), Some(0), "{}", exporter.stderr());
}
