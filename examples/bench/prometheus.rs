//! The cost on Prometheus of each `[metrics] histograms` mode (issue 15 target 3): the exporter
//! probes N providers on the load target while a real Prometheus (Debian's, as the peers
//! script installs it; `--enable-feature=native-histograms` for `native`) scrapes it on
//! loopback into a temporary data directory. Per mode: series per provider, bytes per scrape in
//! each format, and Prometheus' own head series, RSS and CPU.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::harness::{self, Launch, Proc, Scenario, Setup};
use crate::target;

/// What Prometheus 2.42 sends with native histograms on (`scrapeAcceptHeaderWithProtobuf`).
const PROTOBUF_ACCEPT: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// One Prometheus-side run per mode.
pub struct Options {
    pub providers: usize,
    /// Probe interval of every provider.
    pub interval: Duration,
    /// Prometheus' scrape interval.
    pub scrape_interval: Duration,
    /// Scrapes Prometheus makes before it is measured (the head then holds every series).
    pub scrapes: u32,
    /// `classic`, `native`, `none`, in the order run.
    pub modes: Vec<String>,
    /// Debian's `prometheus`.
    pub prometheus: PathBuf,
}

/// What one mode costs.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ModeCost {
    pub mode: String,
    /// Series Prometheus stores per provider (`count by (provider)` of the job's series).
    pub series_per_provider: f64,
    /// The job's series without a provider label (process metrics, build info, ...).
    pub other_series: f64,
    /// Samples of one scrape as Prometheus counts them (`scrape_samples_scraped`; a native
    /// histogram is one).
    pub samples_per_scrape: f64,
    pub text_bytes: u64,
    pub text_gzip_bytes: u64,
    /// Native mode only: the protobuf page, as Prometheus asks for it.
    pub protobuf_bytes: Option<u64>,
    pub protobuf_gzip_bytes: Option<u64>,
    /// `prometheus_tsdb_head_series` (every series in Prometheus' head, its own `up` and
    /// `scrape_*` ones included).
    pub head_series: f64,
    pub prometheus_rss_mib: f64,
    pub prometheus_rss_peak_mib: f64,
    /// Prometheus' CPU seconds per scrape of the exporter, over the measured scrapes.
    pub prometheus_cpu_per_scrape_s: f64,
    /// `scrape_duration_seconds` of the last scrape.
    pub scrape_duration_s: f64,
    pub exporter_rss_mib: f64,
}

/// `prometheus` on PATH.
pub fn find_prometheus() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| candidate.is_file())
}

pub async fn run(options: &Options, setup: &Setup) -> anyhow::Result<Vec<ModeCost>> {
    let mut costs = Vec::new();
    for mode in &options.modes {
        if !["classic", "native", "none"].contains(&mode.as_str()) {
            bail!("unknown histograms mode {mode:?}; allowed: classic, native, none");
        }
        costs.push(run_mode(options, setup, mode).await?);
    }
    Ok(costs)
}

fn say(setup: &Setup, text: impl AsRef<str>) {
    if setup.verbose {
        eprintln!("bench: {}", text.as_ref());
    }
}

/// One loopback client for every request here: no proxy, no automatic decompression
/// (reqwest is built without it), so body lengths are the bytes on the wire.
fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()?)
}

/// The length of `/metrics` as a scraper with these headers receives it.
async fn page_bytes(
    client: &reqwest::Client,
    exporter: SocketAddr,
    accept: Option<&str>,
    gzip: bool,
) -> anyhow::Result<(u64, String)> {
    let mut request = client.get(format!("http://{exporter}/metrics"));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    if gzip {
        request = request.header("accept-encoding", "gzip");
    }
    let response = request.send().await?;
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok((response.bytes().await?.len() as u64, content_type))
}

/// An instant query's first value (`None` for an empty result).
async fn query(
    client: &reqwest::Client,
    prometheus: SocketAddr,
    promql: &str,
) -> anyhow::Result<Option<f64>> {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("query", promql)
        .finish();
    let body: serde_json::Value = client
        .get(format!("http://{prometheus}/api/v1/query?{query}"))
        .send()
        .await?
        .json()
        .await?;
    if body["status"] != "success" {
        bail!("query {promql}: {body}");
    }
    Ok(body["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok()))
}

/// One value of Prometheus' own `/metrics`.
async fn own_metric(
    client: &reqwest::Client,
    prometheus: SocketAddr,
    name: &str,
) -> anyhow::Result<f64> {
    let text = client
        .get(format!("http://{prometheus}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .with_context(|| format!("no {name} in Prometheus' /metrics"))
}

/// Waits for `/-/ready` of a child just started; an early exit is reported as such.
async fn ready(proc: &mut Proc, addr: SocketAddr) -> anyhow::Result<()> {
    if let Err(error) = harness::wait_for_status(addr, "/-/ready", Duration::from_secs(120)).await {
        proc.check_running()?;
        return Err(error);
    }
    Ok(())
}

async fn run_mode(options: &Options, setup: &Setup, mode: &str) -> anyhow::Result<ModeCost> {
    let ticks = harness::clock_ticks_per_second();
    let work = tempfile::tempdir()?;
    let client = client()?;
    let scenario = Scenario {
        providers: options.providers,
        interval: options.interval,
        duration: options.interval * 2,
        scrape_every: options.scrape_interval,
        fault: target::Fault::None,
        exporter_nofile: None,
    };
    // The run lasts the warm-up interval plus the scrapes; requests beyond the bound get 503.
    let run_for = options.interval * 2 + options.scrape_interval * (options.scrapes + 4);
    let rounds = (run_for.as_secs_f64() / options.interval.as_secs_f64()).ceil() as u64 + 2;
    let target_options = target::Options {
        providers: options.providers,
        lanes: vec!["exporter".into()],
        token_lifetime: 3600,
        max_requests: options.providers as u64 * rounds * 4 + 1000,
        fault: target::Fault::None,
    };
    say(
        setup,
        format!(
            "[{mode}] starting the load target ({} providers)",
            options.providers
        ),
    );
    let (_target, bound) = harness::start_target(&setup.target, &target_options)?;

    let config_path = work.path().join("exporter.toml");
    harness::write_private(
        &config_path,
        &format!(
            "[metrics]\nhistograms = \"{mode}\"\n\n{}",
            harness::exporter_config(&scenario, &bound.lanes[0])
        ),
    )?;
    let exporter_addr: SocketAddr = format!("127.0.0.1:{}", harness::free_port()?).parse()?;
    let mut command = Command::new(&setup.exporter);
    command
        .arg("--config.file")
        .arg(&config_path)
        .arg("--web.listen-address")
        .arg(exporter_addr.to_string())
        .args(["--log.level", "warn"])
        .stdout(Stdio::null());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OAUTH2_EXPORTER_") {
            command.env_remove(name);
        }
    }
    say(
        setup,
        format!("[{mode}] starting the exporter on {exporter_addr}"),
    );
    let mut exporter = Proc::spawn("oauth2-exporter", command, None, |_| {})?;
    ready(&mut exporter, exporter_addr).await?;
    // Start times are spread over the first interval: after it every provider has every series.
    say(
        setup,
        format!("[{mode}] one probe interval, so every provider has run"),
    );
    tokio::time::sleep(options.interval + Duration::from_secs(2)).await;
    exporter.check_running()?;

    let (text_bytes, _) = page_bytes(&client, exporter_addr, None, false).await?;
    let (text_gzip_bytes, _) = page_bytes(&client, exporter_addr, None, true).await?;
    let (protobuf_bytes, protobuf_gzip_bytes) = if mode == "native" {
        let (plain, content_type) =
            page_bytes(&client, exporter_addr, Some(PROTOBUF_ACCEPT), false).await?;
        if !content_type.starts_with("application/vnd.google.protobuf") {
            bail!("native mode answered {content_type:?} to a protobuf scrape");
        }
        let (gzip, _) = page_bytes(&client, exporter_addr, Some(PROTOBUF_ACCEPT), true).await?;
        (Some(plain), Some(gzip))
    } else {
        (None, None)
    };

    let prometheus_addr: SocketAddr = format!("127.0.0.1:{}", harness::free_port()?).parse()?;
    let interval = format!("{}s", options.scrape_interval.as_secs().max(1));
    std::fs::write(
        work.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n\
             scrape_configs:\n  - job_name: oauth2-exporter\n    static_configs:\n      \
             - targets: [\"{exporter_addr}\"]\n"
        ),
    )?;
    let mut command = Command::new(&options.prometheus);
    command
        .arg(format!(
            "--config.file={}",
            work.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            work.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={prometheus_addr}"))
        .arg("--log.level=warn")
        .args((mode == "native").then_some("--enable-feature=native-histograms"))
        .stdout(Stdio::null());
    say(
        setup,
        format!("[{mode}] starting Prometheus on {prometheus_addr}"),
    );
    let mut prometheus = Proc::spawn("prometheus", command, None, |_| {})?;
    ready(&mut prometheus, prometheus_addr).await?;
    // The first scrape comes within one interval; the measured ones follow it.
    let scraped = "count_over_time(up{job=\"oauth2-exporter\"}[1h])";
    let deadline = Instant::now() + options.scrape_interval * (options.scrapes + 4);
    let mut first: Option<(f64, harness::ProcSample)> = None;
    loop {
        prometheus.check_running()?;
        exporter.check_running()?;
        let done = query(&client, prometheus_addr, scraped)
            .await?
            .unwrap_or(0.0);
        if first.is_none() && done >= 1.0 {
            let sample = harness::proc_sample(Some(prometheus.pid()), ticks).unwrap_or_default();
            first = Some((done, sample));
        }
        if done >= f64::from(options.scrapes) {
            break;
        }
        if Instant::now() > deadline {
            bail!("Prometheus scraped {done} times, not {}", options.scrapes);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let end = harness::proc_sample(Some(prometheus.pid()), ticks).unwrap_or_default();
    let (scrapes_before, start) = first.unwrap_or_default();
    let done = query(&client, prometheus_addr, scraped)
        .await?
        .unwrap_or(0.0);
    let measured_scrapes = (done - scrapes_before).max(1.0);
    let per_provider = query(
        &client,
        prometheus_addr,
        "avg(count by (provider) ({job=\"oauth2-exporter\",provider!=\"\"}))",
    )
    .await?
    .unwrap_or(0.0);
    let other_series = query(
        &client,
        prometheus_addr,
        "count({job=\"oauth2-exporter\",provider=\"\"})",
    )
    .await?
    .unwrap_or(0.0);
    let samples_per_scrape = query(
        &client,
        prometheus_addr,
        "scrape_samples_scraped{job=\"oauth2-exporter\"}",
    )
    .await?
    .unwrap_or(0.0);
    let scrape_duration_s = query(
        &client,
        prometheus_addr,
        "scrape_duration_seconds{job=\"oauth2-exporter\"}",
    )
    .await?
    .unwrap_or(0.0);
    let head_series = own_metric(&client, prometheus_addr, "prometheus_tsdb_head_series").await?;
    let exporter_sample = harness::proc_sample(Some(exporter.pid()), ticks).unwrap_or_default();
    let cost = ModeCost {
        mode: mode.to_string(),
        series_per_provider: per_provider,
        other_series,
        samples_per_scrape,
        text_bytes,
        text_gzip_bytes,
        protobuf_bytes,
        protobuf_gzip_bytes,
        head_series,
        prometheus_rss_mib: end.rss_kib as f64 / 1024.0,
        prometheus_rss_peak_mib: end.hwm_kib as f64 / 1024.0,
        prometheus_cpu_per_scrape_s: end.cpu.saturating_sub(start.cpu).as_secs_f64()
            / measured_scrapes,
        scrape_duration_s,
        exporter_rss_mib: exporter_sample.rss_kib as f64 / 1024.0,
    };
    say(setup, format!("[{mode}] {cost:?}"));
    Ok(cost)
}

fn kib(bytes: u64) -> String {
    format!("{:.0} KiB", bytes as f64 / 1024.0)
}

/// The table BENCHMARKS.md records.
pub fn markdown(options: &Options, costs: &[ModeCost]) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{} providers probed every {:?}, Prometheus scraping every {:?} ({} scrapes before measuring)\n",
        options.providers, options.interval, options.scrape_interval, options.scrapes
    );
    let _ = writeln!(
        text,
        "| mode | series / provider | other series | samples / scrape | text | text gzip | protobuf | protobuf gzip | Prometheus head series | Prometheus RSS (peak) | Prometheus CPU / scrape | scrape duration | exporter RSS |"
    );
    let _ = writeln!(
        text,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for cost in costs {
        let optional = |bytes: Option<u64>| bytes.map_or_else(|| "-".to_string(), kib);
        let _ = writeln!(
            text,
            "| {} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {:.0} | {:.0} MiB ({:.0}) | {:.2} s | {:.2} s | {:.0} MiB |",
            cost.mode,
            cost.series_per_provider,
            cost.other_series,
            cost.samples_per_scrape,
            kib(cost.text_bytes),
            kib(cost.text_gzip_bytes),
            optional(cost.protobuf_bytes),
            optional(cost.protobuf_gzip_bytes),
            cost.head_series,
            cost.prometheus_rss_mib,
            cost.prometheus_rss_peak_mib,
            cost.prometheus_cpu_per_scrape_s,
            cost.scrape_duration_s,
            cost.exporter_rss_mib,
        );
    }
    text
}

/// The `Setup` the Prometheus runs need (the exporter and the load target; no blackbox).
pub fn setup(exporter: &Path, me: PathBuf) -> Setup {
    Setup {
        exporter: exporter.to_path_buf(),
        target: Launch::Command {
            program: me.clone(),
            args: vec!["target".into()],
        },
        // Started only by `harness::run`; the Prometheus runs do not use the bare lane.
        bare: Launch::Command {
            program: me,
            args: vec!["bare".into()],
        },
        blackbox: harness::Blackbox::Off {
            why: "--prometheus".into(),
        },
        verbose: true,
    }
}
