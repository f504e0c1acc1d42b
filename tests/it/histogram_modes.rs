//! `[metrics] histograms` (issue 15): which format and which latency series each scraper gets in
//! `classic`, `native` and `none` modes, on a running daemon (in-process, on 127.0.0.1:0). The
//! protobuf page itself is decoded and compared with the text page by the unit tests of
//! `src/metrics/protobuf`, and read by a real Prometheus in tests/it/peer_prometheus.rs.

use crate::support;

use std::io::Read;
use std::time::Duration;

use support::{Daemon, FakeServer, Provider, Reply, WAIT, sample};

/// What Prometheus 2.42 sends with `--enable-feature=native-histograms` (scrape/scrape.go,
/// `scrapeAcceptHeaderWithProtobuf`).
const PROMETHEUS_PROTOBUF_ACCEPT: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
/// What it sends without the feature (`scrapeAcceptHeader`).
const PROMETHEUS_TEXT_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const PROTOBUF: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn daemon(mode: &str) -> (FakeServer, Daemon) {
    let fake = FakeServer::start(|request| match request.path.as_str() {
        "/token" => Reply::delayed(Duration::from_millis(20), Reply::token("t", 3600)),
        "/api" => Reply::status(200),
        _ => Reply::status(404),
    })
    .await;
    let provider = Provider::new("p", &fake.url("/token"))
        .interval("200ms")
        .timeout("2s")
        .canary(&fake.url("/api"));
    let daemon = Daemon::start(&format!("[metrics]\nhistograms = \"{mode}\"\n{provider}")).await;
    daemon
        .wait_for(
            |m| sample(m, r#"oauth2_canary_requests_total{provider="p"}"#) >= Some(2.0),
            WAIT,
        )
        .await;
    (fake, daemon)
}

/// The content type, encoding and body of a scrape with these headers.
async fn scrape(daemon: &Daemon, headers: &[(&str, &str)]) -> (String, Option<String>, Vec<u8>) {
    // reqwest is built without its gzip feature here, so it hands over the raw bytes.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut request = client.get(daemon.url("/metrics"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["vary"], "Accept, Accept-Encoding");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    let encoding = response
        .headers()
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_string());
    (
        content_type,
        encoding,
        response.bytes().await.unwrap().to_vec(),
    )
}

/// A protobuf varint at the start of `bytes`: its value and its length in bytes.
fn varint(bytes: &[u8]) -> (usize, usize) {
    let mut value = 0usize;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return (value, i + 1);
        }
    }
    panic!("not a varint: {:?}", &bytes[..bytes.len().min(10)]);
}

/// The names of the length-delimited MetricFamily messages of a protobuf page, in order (each
/// message's field 1, the name, comes first).
fn family_names(mut page: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    while !page.is_empty() {
        let (length, skip) = varint(page);
        let message = &page[skip..skip + length];
        assert_eq!(message[0], 0x0a, "a MetricFamily starts with its name");
        let (name_length, name_skip) = varint(&message[1..]);
        let start = 1 + name_skip;
        names.push(String::from_utf8_lossy(&message[start..start + name_length]).into_owned());
        page = &page[skip + length..];
    }
    names
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut plain)
        .unwrap();
    plain
}

/// Native mode: Prometheus with native histograms gets protobuf (gzip too), a text scraper
/// the classic page, and a scraper preferring text gets text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_mode_answers_protobuf_to_those_who_ask_and_text_to_the_others() {
    let (_fake, daemon) = daemon("native").await;

    let (content_type, encoding, body) = scrape(
        &daemon,
        &[
            ("accept", PROMETHEUS_PROTOBUF_ACCEPT),
            ("accept-encoding", "gzip"),
        ],
    )
    .await;
    assert_eq!(content_type, PROTOBUF);
    assert_eq!(encoding.as_deref(), Some("gzip"));
    let body = gunzip(&body);
    // Length-delimited MetricFamily messages: the first starts with its length (a varint),
    // then field 1 (the name, wire type 2).
    let length_bytes = body.iter().position(|byte| byte & 0x80 == 0).unwrap() + 1;
    assert!(
        body.len() > 1000 && body[length_bytes] == 0x0a,
        "{:?}",
        &body[..16]
    );
    let as_text = String::from_utf8_lossy(&body);
    assert!(as_text.contains("oauth2_token_request_duration_seconds"));
    assert!(!as_text.contains("oauth2_token_request_duration_seconds_bucket"));

    let (content_type, encoding, plain) =
        scrape(&daemon, &[("accept", PROMETHEUS_PROTOBUF_ACCEPT)]).await;
    assert_eq!((content_type.as_str(), encoding), (PROTOBUF, None));
    // The same page, uncompressed: the same families in the same order. (Not the same length:
    // a value may change between the two scrapes, the process's CPU seconds for one, and a
    // varint's length with it.)
    assert_eq!(
        family_names(&plain),
        family_names(&body),
        "the same page, uncompressed"
    );

    for accept in [
        None,
        Some(PROMETHEUS_TEXT_ACCEPT),
        Some(
            "text/plain;version=0.0.4,application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5",
        ),
        // Not the message Prometheus reads, or not delimited: not our protobuf.
        Some("application/vnd.google.protobuf;proto=io.prometheus.client.Other;encoding=delimited"),
        Some(
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text",
        ),
        Some(
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0",
        ),
    ] {
        let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("accept", *a)).collect();
        let (content_type, _, body) = scrape(&daemon, &headers).await;
        assert_eq!(content_type, TEXT, "Accept: {accept:?}");
        let text = String::from_utf8(body).unwrap();
        assert!(
            text.contains(
                r#"oauth2_token_request_duration_seconds_bucket{provider="p",le="0.025"}"#
            ),
            "Accept {accept:?}: classic buckets for text scrapers\n{text}"
        );
    }
    daemon.stop().await;
}

/// Classic mode (the default) answers text whatever the scraper asks for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_mode_answers_text_even_to_a_protobuf_scraper() {
    let (_fake, daemon) = daemon("classic").await;
    let (content_type, _, body) = scrape(&daemon, &[("accept", PROMETHEUS_PROTOBUF_ACCEPT)]).await;
    assert_eq!(content_type, TEXT);
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("# TYPE oauth2_canary_request_duration_seconds histogram\n"));
    assert!(!text.contains("last_duration_seconds"));
    daemon.stop().await;
}

/// None mode: no histogram in either format; the last durations as gauges, in seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn none_mode_exports_the_last_durations_instead_of_histograms() {
    let (_fake, daemon) = daemon("none").await;
    let (content_type, _, body) = scrape(&daemon, &[("accept", PROMETHEUS_PROTOBUF_ACCEPT)]).await;
    assert_eq!(content_type, TEXT, "protobuf is only for native histograms");
    let text = String::from_utf8(body).unwrap();
    for histogram in [
        "oauth2_token_request_duration_seconds",
        "oauth2_canary_request_duration_seconds",
    ] {
        assert!(
            !text
                .lines()
                .any(|line| line.starts_with(histogram)
                    || line.contains(&format!("TYPE {histogram}"))),
            "{text}"
        );
    }
    assert!(text.contains("# TYPE oauth2_token_request_last_duration_seconds gauge\n"));
    let token = sample(
        &text,
        r#"oauth2_token_request_last_duration_seconds{provider="p"}"#,
    )
    .expect("the last token duration");
    // The fake answers after 20 ms.
    assert!((0.02..2.0).contains(&token), "{token}");
    let canary = sample(
        &text,
        r#"oauth2_canary_request_last_duration_seconds{provider="p"}"#,
    )
    .expect("the last canary duration");
    assert!((0.0..2.0).contains(&canary), "{canary}");
    daemon.stop().await;
}
