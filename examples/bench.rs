//! The benchmark (issue 6): N providers probed by oauth2-exporter and, side by side in the same
//! run, by a bare reqwest client doing the same two requests (issue 15) and by Debian's
//! `prometheus-blackbox-exporter`, against the same loopback load target;
//! prints one Markdown table per run. See BENCHMARKS.md for the scenarios and the results.
//!
//! ```sh
//! cargo build --release --examples
//! target/release/examples/bench --providers 10000 --interval 60s --duration 240s
//! ```
//!
//! `--prometheus` measures instead what the exporter costs a real Prometheus in each
//! `[metrics] histograms` mode (issue 15; `bench/prometheus.rs`):
//!
//! ```sh
//! target/release/examples/bench --prometheus --providers 10000 --interval 60s \
//!     --scrape-interval 15s --histograms classic,native,none
//! ```
//!
//! `bench target ...` is the load target itself and `bench bare ...` the bare reqwest client
//! lane (the baseline): the driver starts its own binary in those modes, so that each runs in a
//! process of its own.

#[path = "bench/bare.rs"]
mod bare;
#[path = "bench/harness.rs"]
mod harness;
#[path = "bench/prometheus.rs"]
mod prometheus;
#[path = "bench/target.rs"]
mod target;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[derive(Parser)]
#[command(about = "Benchmark oauth2-exporter against blackbox_exporter on a loopback target")]
struct Cli {
    /// Number of providers.
    #[arg(long, default_value_t = 1000)]
    providers: usize,
    /// Probe interval of every provider.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Run length after the exporter is ready (at least two intervals; the first is warm-up).
    #[arg(long, default_value = "240s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// How often /metrics is scraped during the run (gzip, as Prometheus does).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    scrape_every: Duration,
    /// Make the target's token endpoints misbehave (issue 16): `blackhole` (accept, never
    /// answer) or `dribble` (one byte a second); `none` is the healthy run.
    #[arg(long, default_value = "none", value_parser = target::Fault::parse)]
    fault: target::Fault,
    /// Run the exporter under `prlimit --nofile=N:N` (e.g. 1024, systemd's default soft limit).
    #[arg(long, value_name = "N")]
    exporter_nofile: Option<u64>,
    /// Leave blackbox_exporter out (the exporter alone on the machine).
    #[arg(long)]
    no_blackbox: bool,
    /// The exporter binary; by default the one built next to this example.
    #[arg(long)]
    exporter: Option<PathBuf>,
    /// Also write the full report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Measure the cost on a real Prometheus (`prometheus` on PATH) of each `--histograms`
    /// mode instead of the exporter-versus-blackbox run.
    #[arg(long)]
    prometheus: bool,
    /// With `--prometheus`: the `[metrics] histograms` modes to measure, in order.
    #[arg(long, value_delimiter = ',', default_value = "classic,native,none")]
    histograms: Vec<String>,
    /// With `--prometheus`: Prometheus' scrape interval.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    scrape_interval: Duration,
    /// With `--prometheus`: scrapes before Prometheus is measured.
    #[arg(long, default_value_t = 4)]
    scrapes: u32,
}

/// The runtime every run drives its clients and children from.
fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .inspect_err(|error| eprintln!("bench: {error}"))
        .ok()
}

/// `--prometheus`: one Prometheus-side run per mode, one table.
fn run_prometheus(cli: &Cli, exporter: &std::path::Path, me: PathBuf) -> ExitCode {
    let Some(binary) = prometheus::find_prometheus() else {
        eprintln!("bench: prometheus is not on PATH (scripts/install-peers installs it)");
        return ExitCode::FAILURE;
    };
    let options = prometheus::Options {
        providers: cli.providers,
        interval: cli.interval,
        scrape_interval: cli.scrape_interval,
        scrapes: cli.scrapes,
        modes: cli.histograms.clone(),
        prometheus: binary,
    };
    let setup = prometheus::setup(exporter, me);
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(prometheus::run(&options, &setup)) {
        Ok(costs) => {
            println!("{}", prometheus::markdown(&options, &costs));
            if let Some(path) = &cli.json {
                let json = serde_json::to_string_pretty(&costs).unwrap_or_default();
                if let Err(error) = std::fs::write(path, json) {
                    eprintln!("bench: cannot write {}: {error}", path.display());
                }
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("target") => return target::run_standalone(&args[2..]),
        Some("bare") => return bare::run_standalone(&args[2..]),
        _ => {}
    }
    let cli = Cli::parse();
    let Ok(me) = std::env::current_exe() else {
        eprintln!("bench: cannot find my own binary");
        return ExitCode::FAILURE;
    };
    // target/<profile>/examples/bench -> target/<profile>/oauth2-exporter
    let exporter = cli.exporter.clone().unwrap_or_else(|| {
        me.parent()
            .and_then(|examples| examples.parent())
            .map(|profile| profile.join("oauth2-exporter"))
            .unwrap_or_else(|| PathBuf::from("oauth2-exporter"))
    });
    if !exporter.is_file() {
        eprintln!(
            "bench: no exporter binary at {} (cargo build --release --examples builds both)",
            exporter.display()
        );
        return ExitCode::FAILURE;
    }
    if cli.prometheus {
        return run_prometheus(&cli, &exporter, me);
    }
    let blackbox = if cli.no_blackbox {
        harness::Blackbox::Off {
            why: "--no-blackbox".into(),
        }
    } else {
        harness::Blackbox::from_path()
    };
    if let harness::Blackbox::Off { why } = &blackbox {
        eprintln!("bench: blackbox_exporter left out: {why}");
    }
    let scenario = harness::Scenario {
        providers: cli.providers,
        interval: cli.interval,
        duration: cli.duration,
        scrape_every: cli.scrape_every,
        fault: cli.fault,
        exporter_nofile: cli.exporter_nofile,
    };
    let setup = harness::Setup {
        exporter,
        target: harness::Launch::Command {
            program: me.clone(),
            args: vec!["target".into()],
        },
        bare: harness::Launch::Command {
            program: me,
            args: vec!["bare".into()],
        },
        blackbox,
        verbose: true,
    };
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(harness::run(&scenario, &setup)) {
        Ok(report) => {
            println!("{}", report.markdown());
            if let Some(path) = &cli.json {
                let json = serde_json::to_string_pretty(&report).unwrap_or_default();
                if let Err(error) = std::fs::write(path, json) {
                    eprintln!("bench: cannot write {}: {error}", path.display());
                }
            }
            if report.problems().is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}
