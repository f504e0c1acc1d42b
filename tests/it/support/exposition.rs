//! Reading the Prometheus text exposition in assertions: one sample, every series of a family,
//! and the lines worth printing when an assertion fails.

/// Fails, naming `provider`, unless its last probe failed (`oauth2_probe_success` is 0).
#[track_caller]
pub fn assert_probe_failed(metrics: &str, provider: &str) {
    assert_eq!(
        sample(
            metrics,
            &format!("oauth2_probe_success{{provider=\"{provider}\"}}")
        ),
        Some(0.0),
        "{provider}"
    );
}

/// The value of one series in a text-format scrape, `None` if absent. `series` is written as the
/// text format prints it: `name` or `name{a="x",b="y"}` with labels in alphabetical order of
/// label name (e.g. `oauth2_token_request_failures_total{provider="p",reason="timeout"}`).
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        // A timestamp may follow the value; this exporter prints none, but be exact anyway.
        let value = value.split(' ').next()?;
        Some(match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other
                .parse()
                .unwrap_or_else(|e| panic!("bad value in {line:?}: {e}")),
        })
    })
}

/// Every series line of metric family `name` (exact name, so `x` does not match `x_total`),
/// without HELP/TYPE: for assertions on "no other label values than these".
pub fn series_of<'a>(metrics: &'a str, name: &str) -> Vec<&'a str> {
    metrics
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .collect()
}

/// The value of `name{provider="PROVIDER"}`, a series labelled with the provider alone; `None`
/// if absent.
pub fn provider_sample(metrics: &str, name: &str, provider: &str) -> Option<f64> {
    sample(metrics, &format!("{name}{{provider=\"{provider}\"}}"))
}

/// The series lines of family `name` for one provider, e.g. every
/// `oauth2_token_request_failures_total` line with `provider="p"`: a failure must be counted
/// under exactly one reason.
pub fn provider_series(metrics: &str, name: &str, provider: &str) -> Vec<String> {
    let label = format!("provider=\"{provider}\"");
    series_of(metrics, name)
        .into_iter()
        .filter(|line| line.contains(&label))
        .map(str::to_string)
        .collect()
}

/// Panics with every mismatch and the scrape's relevant lines unless `mismatches` is empty: a
/// test that checks many series collects what differs, then reports it all at once.
pub fn assert_no_mismatches(mismatches: &[String], metrics: &str) {
    assert!(
        mismatches.is_empty(),
        "{}\n--- scrape:\n{}",
        mismatches.join("\n"),
        relevant_lines(metrics)
    );
}

/// The scrape without comments, histogram buckets and `process_*`: what a failure message needs.
pub fn relevant_lines(metrics: &str) -> String {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("process_") && !l.contains("_bucket{"))
        .collect::<Vec<_>>()
        .join("\n")
}
