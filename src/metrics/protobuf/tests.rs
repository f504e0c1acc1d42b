//! The protobuf exposition read back by a small independent protobuf reader (wire format only,
//! written from the protobuf encoding guide, not from the encoder), and compared with the text
//! page of the same records: same families, HELP, types, labels and values.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::config::{GrantKind, HistogramMode};
use crate::probe::CycleReport;
use crate::probe::canary::CanaryOutcome;
use crate::probe::token::{IssuedToken, TokenError, TokenOutcome};
use crate::secrets::AccessToken;

use super::super::{Format, Metrics};

/// One field as it is on the wire.
#[derive(Debug, Clone)]
enum Wire {
    Varint(u64),
    Fixed64(u64),
    Bytes(Vec<u8>),
}

fn read_varint(bytes: &[u8], at: &mut usize) -> u64 {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = bytes[*at];
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
    }
    panic!("varint longer than 10 bytes");
}

/// Every field of one message, in order.
fn fields(bytes: &[u8]) -> Vec<(u64, Wire)> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < bytes.len() {
        let key = read_varint(bytes, &mut at);
        let wire = match key & 7 {
            0 => Wire::Varint(read_varint(bytes, &mut at)),
            1 => {
                let value = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
                at += 8;
                Wire::Fixed64(value)
            }
            2 => {
                let length = read_varint(bytes, &mut at) as usize;
                at += length;
                Wire::Bytes(bytes[at - length..at].to_vec())
            }
            other => panic!("wire type {other} is not used by metrics.proto"),
        };
        out.push((key >> 3, wire));
    }
    out
}

fn field(message: &[(u64, Wire)], number: u64) -> impl Iterator<Item = &Wire> {
    message
        .iter()
        .filter(move |(n, _)| *n == number)
        .map(|(_, wire)| wire)
}

fn text(wire: &Wire) -> String {
    match wire {
        Wire::Bytes(bytes) => String::from_utf8(bytes.clone()).unwrap(),
        other => panic!("expected bytes, got {other:?}"),
    }
}

fn double(wire: &Wire) -> f64 {
    match wire {
        Wire::Fixed64(bits) => f64::from_bits(*bits),
        other => panic!("expected a double, got {other:?}"),
    }
}

fn uint(wire: &Wire) -> u64 {
    match wire {
        Wire::Varint(value) => *value,
        other => panic!("expected a varint, got {other:?}"),
    }
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

fn message(wire: &Wire) -> Vec<(u64, Wire)> {
    match wire {
        Wire::Bytes(bytes) => fields(bytes),
        other => panic!("expected a message, got {other:?}"),
    }
}

/// A decoded native histogram: count, sum, schema, zero threshold, zero count, and the
/// absolute bucket index and count of each bucket.
#[derive(Debug, Default)]
struct NativeHistogram {
    count: u64,
    sum: f64,
    schema: i64,
    zero_threshold: f64,
    zero_count: u64,
    buckets: Vec<(i64, i64)>,
}

fn native_histogram(histogram: &[(u64, Wire)]) -> NativeHistogram {
    let mut decoded = NativeHistogram {
        count: field(histogram, 1).map(uint).sum(),
        sum: field(histogram, 2).map(double).sum(),
        schema: field(histogram, 5).map(|w| unzigzag(uint(w))).sum(),
        zero_threshold: field(histogram, 6).map(double).sum(),
        zero_count: field(histogram, 7).map(uint).sum(),
        buckets: Vec::new(),
    };
    // Deltas may come packed (one bytes field) or one varint each.
    let mut deltas = Vec::new();
    for wire in field(histogram, 13) {
        match wire {
            Wire::Bytes(packed) => {
                let mut at = 0;
                while at < packed.len() {
                    deltas.push(unzigzag(read_varint(packed, &mut at)));
                }
            }
            single => deltas.push(unzigzag(uint(single))),
        }
    }
    let mut deltas = deltas.into_iter();
    let (mut index, mut count) = (0i64, 0i64);
    for (n, span) in field(histogram, 12).map(message).enumerate() {
        let offset = field(&span, 1).map(|w| unzigzag(uint(w))).sum::<i64>();
        let length = field(&span, 2).map(uint).sum::<u64>();
        // The first span's offset is the absolute index; the others' the gap after the last.
        index = if n == 0 { offset } else { index + offset };
        for _ in 0..length {
            count += deltas
                .next()
                .expect("a delta for every bucket of the spans");
            decoded.buckets.push((index, count));
            index += 1;
        }
    }
    assert!(deltas.next().is_none(), "more deltas than the spans hold");
    decoded
}

/// Samples as the text format would print them (`name{labels}` -> value), HELP and TYPE lines,
/// and the native histograms by series.
#[derive(Debug, Default)]
struct Decoded {
    samples: BTreeMap<String, f64>,
    headers: Vec<String>,
    native: BTreeMap<String, NativeHistogram>,
}

fn decode(page: &[u8]) -> Decoded {
    let mut decoded = Decoded::default();
    let mut at = 0;
    while at < page.len() {
        let length = read_varint(page, &mut at) as usize;
        let family = fields(&page[at..at + length]);
        at += length;
        let name = text(field(&family, 1).next().expect("a name"));
        let help = text(field(&family, 2).next().expect("a help"));
        let kind = match uint(field(&family, 3).next().expect("a type")) {
            0 => "counter",
            1 => "gauge",
            4 => "histogram",
            other => panic!("type {other}"),
        };
        decoded.headers.push(format!("# HELP {name} {help}"));
        decoded.headers.push(format!("# TYPE {name} {kind}"));
        for metric in field(&family, 4).map(message) {
            let labels: Vec<String> = field(&metric, 1)
                .map(message)
                .map(|pair| {
                    let name = text(field(&pair, 1).next().unwrap());
                    let value = text(field(&pair, 2).next().unwrap());
                    format!("{name}=\"{value}\"")
                })
                .collect();
            let series = if labels.is_empty() {
                name.clone()
            } else {
                format!("{name}{{{}}}", labels.join(","))
            };
            let value_field = match kind {
                "counter" => 3,
                "gauge" => 2,
                _ => 7,
            };
            let value = message(field(&metric, value_field).next().expect("a value"));
            if kind == "histogram" {
                decoded.native.insert(series, native_histogram(&value));
            } else {
                let value = field(&value, 1).map(double).next().unwrap_or(0.0);
                assert!(decoded.samples.insert(series, value).is_none());
            }
        }
    }
    decoded
}

/// The text page's samples and HELP/TYPE lines.
fn text_page(page: &[u8]) -> (BTreeMap<String, f64>, Vec<String>) {
    let page = String::from_utf8(page.to_vec()).unwrap();
    let mut samples = BTreeMap::new();
    let mut headers = Vec::new();
    for line in page.lines() {
        if line.starts_with('#') {
            headers.push(line.to_string());
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value = match value {
            "+Inf" => f64::INFINITY,
            other => other.parse().unwrap(),
        };
        samples.insert(series.to_string(), value);
    }
    (samples, headers)
}

pub(crate) fn report(token_seconds: &[f64], canary_seconds: &[f64]) -> CycleReport {
    let token_requests = token_seconds
        .iter()
        .enumerate()
        .map(|(n, seconds)| TokenOutcome {
            duration: Duration::from_secs_f64(*seconds),
            status: Some(if n == 0 { 401 } else { 200 }),
            certificate: None,
            credentials: [0; 4],
            retry_after: None,
            result: if n == 0 {
                Err(TokenError::OAuth {
                    code: "invalid_client".to_string(),
                    description: None,
                })
            } else {
                Ok(IssuedToken {
                    access_token: AccessToken::new("t"),
                    lifetime: Some(Duration::from_secs(3600)),
                    expires_at: None,
                })
            },
        })
        .collect();
    let canary_requests = canary_seconds
        .iter()
        .map(|seconds| CanaryOutcome {
            duration: Duration::from_secs_f64(*seconds),
            status: Some(200),
            certificate: None,
            retry_after: None,
            result: Ok(()),
        })
        .collect();
    CycleReport {
        token_requests,
        canary_requests,
        canary_skipped: false,
        success: true,
        grant: GrantKind::ClientCredentials,
        duration: Duration::from_millis(700),
        finished_at: SystemTime::now(),
        // Issue 13's gauges, so the protobuf page is compared with the text one for them too.
        expiries: crate::probe::expiry::Expiries {
            credential: [1_900_000_000, 0, 0, 0, 0],
            changed: [1_800_000_000, 0, 0, 0, 0],
            tls: [1_850_000_000, 0, 0],
        },
    }
}

/// Metrics in `mode` with two providers that ran cycles and one that has not yet.
fn recorded(mode: HistogramMode) -> Metrics {
    let metrics = Metrics::new();
    metrics.set_histograms(mode);
    for provider in ["alpha", "beta", "idle"] {
        metrics.add_provider(provider);
    }
    metrics.record("alpha", &report(&[0.0004, 0.3], &[0.05, 0.06]), None);
    metrics.record("alpha", &report(&[0.31, 2.0], &[0.061]), None);
    metrics.record("beta", &report(&[12.5], &[]), None);
    metrics
}

/// Issue 15: the protobuf page carries every series of the text page, with the same names,
/// HELP, labels and values; the histograms are native, their count and sum those of the text
/// page's classic ones and their buckets those of the observations.
#[test]
fn the_protobuf_page_carries_the_text_page_with_native_histograms() {
    let metrics = recorded(HistogramMode::Native);
    let (text_samples, text_headers) = text_page(&metrics.render_as(Format::Text));
    let decoded = decode(&metrics.render_as(Format::Protobuf));

    let is_histogram_part = |series: &str| series.contains("_duration_seconds_");
    let process = |series: &str| series.starts_with("process_");
    let text_samples: BTreeMap<&String, &f64> = text_samples
        .iter()
        .filter(|(series, _)| !is_histogram_part(series) && !process(series))
        .collect();
    let proto_samples: BTreeMap<&String, &f64> = decoded
        .samples
        .iter()
        .filter(|(series, _)| !process(series))
        .collect();
    assert_eq!(proto_samples, text_samples);
    assert!(text_samples.len() > 30, "{text_samples:?}");
    let text_headers: Vec<&String> = text_headers
        .iter()
        .filter(|line| !line.contains(" process_"))
        .collect();
    let proto_headers: Vec<&String> = decoded
        .headers
        .iter()
        .filter(|line| !line.contains(" process_"))
        .collect();
    assert_eq!(proto_headers, text_headers);

    // Both histograms of every provider, the idle one's empty but native all the same.
    assert_eq!(decoded.native.len(), 6, "{:?}", decoded.native.keys());
    for (series, histogram) in &decoded.native {
        let (name, labels) = series.split_once('{').unwrap();
        let text_count = text_samples_of(&metrics, &format!("{name}_count{{{labels}"));
        let text_sum = text_samples_of(&metrics, &format!("{name}_sum{{{labels}"));
        assert_eq!(histogram.count as f64, text_count, "{series}");
        assert!((histogram.sum - text_sum).abs() < 1e-9, "{series}");
        assert_eq!(histogram.schema, 2);
        assert_eq!(histogram.zero_threshold, 1.0 / 1024.0);
        let in_buckets: i64 = histogram.buckets.iter().map(|(_, count)| count).sum();
        assert_eq!(
            in_buckets + histogram.zero_count as i64,
            histogram.count as i64,
            "{series}"
        );
    }
    let alpha = &decoded.native["oauth2_token_request_duration_seconds{provider=\"alpha\"}"];
    assert_eq!(alpha.zero_count, 1, "0.4 ms is in the zero bucket");
    // Schema 2: bucket i holds (2^((i-1)/4), 2^(i/4)]. Pinned, not taken from
    // `bucket_index()` (issue 24): 0.3 and 0.31 in (0.297, 0.354] = -6, 2.0 in (1.68, 2] = 4,
    // 12.5 in (11.3, 13.45] = 15.
    let expected: Vec<(i64, i64)> = vec![(-6, 2), (4, 1)];
    assert_eq!(alpha.buckets, expected);
    let beta = &decoded.native["oauth2_token_request_duration_seconds{provider=\"beta\"}"];
    assert_eq!(beta.buckets, [(15, 1)]);
    let idle = &decoded.native["oauth2_canary_request_duration_seconds{provider=\"idle\"}"];
    assert_eq!((idle.count, idle.buckets.len()), (0, 0));
}

fn text_samples_of(metrics: &Metrics, series: &str) -> f64 {
    let (samples, _) = text_page(&metrics.render_as(Format::Text));
    samples[series]
}

/// Close buckets share a span (gaps of one or two buckets are sent as zero counts); a longer
/// gap starts a new span whose offset is the gap.
#[test]
fn spans_join_small_gaps_and_split_at_large_ones() {
    let mut encoded = Vec::new();
    super::write_native_buckets(
        &mut encoded,
        [(-6, 3), (-4, 1), (-3, 2), (5, 7)].into_iter(),
    );
    let histogram = native_histogram(&fields(&encoded));
    assert_eq!(
        histogram.buckets,
        [(-6, 3), (-5, 0), (-4, 1), (-3, 2), (5, 7)]
    );
    let spans: Vec<(i64, u64)> = field(&fields(&encoded), 12)
        .map(message)
        .map(|span| {
            (
                field(&span, 1).map(|w| unzigzag(uint(w))).sum(),
                field(&span, 2).map(uint).sum(),
            )
        })
        .collect();
    // Buckets -2 to 4 are empty: the second span starts 7 after the first ends.
    assert_eq!(spans, [(-6, 4), (7, 1)]);
}

/// In `none` mode neither format has the histograms; the last durations are gauges instead.
#[test]
fn none_mode_exports_the_last_durations_as_gauges() {
    let metrics = recorded(HistogramMode::None);
    let (samples, headers) = text_page(&metrics.render_as(Format::Text));
    assert!(
        !samples
            .keys()
            .any(|series| series.contains("request_duration_seconds")),
        "{samples:?}"
    );
    assert_eq!(
        samples["oauth2_token_request_last_duration_seconds{provider=\"alpha\"}"],
        2.0
    );
    assert_eq!(
        samples["oauth2_canary_request_last_duration_seconds{provider=\"alpha\"}"],
        0.061
    );
    assert_eq!(
        samples["oauth2_token_request_last_duration_seconds{provider=\"beta\"}"],
        12.5
    );
    assert!(
        !samples.contains_key("oauth2_canary_request_last_duration_seconds{provider=\"beta\"}")
    );
    assert!(
        headers.contains(&"# TYPE oauth2_token_request_last_duration_seconds gauge".to_string())
    );
}

/// A mode change on reload starts the latency series afresh in the new form, and leaves the
/// counters alone.
#[test]
fn changing_the_mode_restarts_only_the_latency_series() {
    let metrics = recorded(HistogramMode::Classic);
    assert!(!metrics.set_histograms(HistogramMode::Classic));
    assert!(metrics.set_histograms(HistogramMode::Native));
    let decoded = decode(&metrics.render_as(Format::Protobuf));
    let alpha = &decoded.native["oauth2_token_request_duration_seconds{provider=\"alpha\"}"];
    assert_eq!((alpha.count, alpha.buckets.len()), (0, 0));
    assert_eq!(
        decoded.samples["oauth2_token_requests_total{provider=\"alpha\"}"],
        4.0
    );
    metrics.add_provider("late");
    metrics.record("late", &report(&[0.3], &[]), None);
    let decoded = decode(&metrics.render_as(Format::Protobuf));
    assert_eq!(
        decoded.native["oauth2_token_request_duration_seconds{provider=\"late\"}"].count,
        1
    );
}

/// gzip wraps the protobuf page like the text one.
#[test]
fn the_protobuf_page_gzips() {
    let metrics = recorded(HistogramMode::Native);
    let compressed = metrics.render_gzip_as(Format::Protobuf).unwrap();
    let unpacked = super::super::gunzip(&compressed).unwrap();
    let decoded = decode(&unpacked);
    assert_eq!(
        decoded.samples["oauth2_token_requests_total{provider=\"beta\"}"],
        1.0
    );
    assert_eq!(decoded.native.len(), 6);
}

/// The provider's own labels as validation makes them (sorted, interned).
pub(crate) fn own_labels(toml_labels: &str) -> crate::config::Labels {
    let toml = format!(
        "[providers.alpha]\nlabels = {toml_labels}\n[providers.alpha.token]\nurl = \"https://idp.example/token\"\nclient_id = \"id\"\nclient_secret = \"s\"\n"
    );
    let config = crate::config::load_str(&toml, &Default::default()).expect("valid");
    config.providers[0].labels.clone()
}

/// Every series of `provider` in a decoded page or text page, by name and labels.
fn series_of<'a>(series: impl Iterator<Item = &'a String>, provider: &str) -> Vec<&'a String> {
    let label = format!("provider=\"{provider}\"");
    series.filter(|s| s.contains(&label)).collect()
}

/// Issue 26: a provider's own labels are on every one of its series, in both formats and in
/// every mode, among the series' labels in name order, values escaped in the text format; no
/// series is added, and other providers' series are untouched.
#[test]
fn a_providers_own_labels_are_on_every_one_of_its_series() {
    let own = own_labels(r#"{ team = "payments", env = "prod", zone = "eu \"west\" \\ 1" }"#);
    for mode in [
        HistogramMode::Classic,
        HistogramMode::Native,
        HistogramMode::None,
    ] {
        let plain = recorded(mode);
        let labelled = recorded(mode);
        labelled.set_labels("alpha", &own);
        for metrics in [&plain, &labelled] {
            // The families a healthy cycle leaves out: back-off, panics.
            let next = SystemTime::now() + Duration::from_secs(60);
            let backoff = Some((
                crate::probe::Phase::Token,
                crate::probe::HoldOff::InvalidClient,
            ));
            metrics.record_pace("alpha", next, backoff);
            metrics.record_panic("alpha");
        }

        let (text, _) = text_page(&labelled.render_as(Format::Text));
        let (plain_text, _) = text_page(&plain.render_as(Format::Text));
        let alpha = series_of(text.keys(), "alpha");
        assert_eq!(
            alpha.len(),
            series_of(plain_text.keys(), "alpha").len(),
            "{mode:?}: the same series, one more label each"
        );
        assert!(alpha.len() > 20, "{mode:?}: {alpha:?}");
        for series in &alpha {
            assert!(
                series.contains(r#"env="prod","#)
                    && series.contains(r#"team="payments","#)
                    && series.contains(r#"zone="eu \"west\" \\ 1""#),
                "{mode:?}: {series}"
            );
            // In name order, `le` last as client libraries write it.
            let inner = &series[series.find('{').unwrap() + 1..series.len() - 1];
            let names: Vec<&str> = inner
                .split("\",")
                .map(|pair| pair.split_once('=').unwrap().0)
                .collect();
            let mut sorted: Vec<&str> = names.iter().copied().filter(|n| *n != "le").collect();
            sorted.sort_unstable();
            assert!(names.starts_with(&sorted), "{mode:?}: {series}");
        }
        for family in [
            "oauth2_token_request_failures_total",
            "oauth2_probe_backoff",
            "oauth2_exporter_probe_panics_total",
            "oauth2_client_credential_expiry_timestamp_seconds",
            "oauth2_token_grant_info",
            "oauth2_token_responses_total",
            "oauth2_unauthorized_responses_total",
        ] {
            assert!(
                alpha.iter().any(|s| s.starts_with(&format!("{family}{{"))),
                "{mode:?}: {family}"
            );
        }
        for series in series_of(text.keys(), "beta") {
            assert!(!series.contains("team="), "{mode:?}: {series}");
        }
        if mode == HistogramMode::Classic {
            assert!(text.contains_key(
                r#"oauth2_token_request_duration_seconds_bucket{env="prod",provider="alpha",team="payments",zone="eu \"west\" \\ 1",le="0.005"}"#
            ), "{text:?}");
        }

        // The protobuf page: the same, its label values as they are (no escaping on the wire).
        let decoded = decode(&labelled.render_as(Format::Protobuf));
        let plain_decoded = decode(&plain.render_as(Format::Protobuf));
        let every = |d: &Decoded| -> Vec<String> {
            d.samples.keys().chain(d.native.keys()).cloned().collect()
        };
        let proto = every(&decoded);
        let alpha = series_of(proto.iter(), "alpha");
        assert_eq!(
            alpha.len(),
            series_of(every(&plain_decoded).iter(), "alpha").len()
        );
        for series in &alpha {
            for pair in [
                r#"env="prod","#,
                r#"team="payments","#,
                r#"zone="eu "west" \ 1"}"#,
            ] {
                assert!(series.contains(pair), "{mode:?}: {series}");
            }
        }
    }
}
