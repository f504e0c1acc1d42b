//! The command line as clap defines it ([`Cli`]), shared by `main.rs`, which parses it, and by
//! the man page and shell completions generated from it (`oauth2-exporter generate`); and the
//! `--version` text.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::check;
use crate::logging::{LogFormat, LogLevel};
use crate::shard::Shard;

/// Proves continuously that OAuth2 machine-to-machine credentials work, and exports what it saw
/// as Prometheus metrics.
#[derive(Debug, Parser)]
#[command(
    name = "oauth2-exporter",
    version,
    about,
    // `--version` prints the build fields (see `version_text`), not clap's one line.
    disable_version_flag = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Configuration file (TOML), or a directory of *.toml files merged in name order. May be
    /// given several times; a provider defined in two files is an error.
    #[arg(
        long = "config.file",
        value_name = "PATH",
        default_value = "exporter.toml",
        action = ArgAction::Append,
        global = true
    )]
    pub config_files: Vec<PathBuf>,
    /// Address to serve the web endpoints on, HOST:PORT or :PORT for every interface (overrides
    /// web.listen_address). May be given several times to listen on several addresses.
    #[arg(long = "web.listen-address", value_name = "ADDR", action = ArgAction::Append)]
    pub listen_addresses: Vec<String>,
    /// Path under which the metrics are served.
    #[arg(
        long = "web.telemetry-path",
        value_name = "PATH",
        default_value = crate::DEFAULT_TELEMETRY_PATH
    )]
    pub telemetry_path: String,
    /// TLS and basic auth for the web endpoints, in the Prometheus exporter-toolkit format.
    #[arg(long = "web.config.file", value_name = "PATH")]
    pub web_config_file: Option<PathBuf>,
    /// Log level of the exporter's own messages.
    #[arg(long = "log.level", value_enum, default_value = "info", global = true)]
    pub log_level: LogLevel,
    /// Log format.
    #[arg(
        long = "log.format",
        value_enum,
        default_value = "logfmt",
        global = true
    )]
    pub log_format: LogFormat,
    /// Validate the configuration (secrets resolved), print every problem, and exit.
    #[arg(long = "config.check")]
    pub config_check: bool,
    /// Run against a built-in identity provider and API on loopback, with a built-in
    /// configuration: the quickest way to see every metric.
    #[arg(long, conflicts_with_all = ["config_files", "config_check"])]
    pub demo: bool,
    /// Probe only the providers of shard N (0-based) of --total-shards; every shard loads the
    /// same configuration.
    #[arg(long = "shard", value_name = "N", global = true)]
    pub shard: Option<u32>,
    /// How many shards the fleet is split over (with --shard or --shard-from-pod-name).
    #[arg(long = "total-shards", value_name = "M", global = true)]
    pub total_shards: Option<u32>,
    /// Take --shard from a StatefulSet pod name's ordinal suffix (oauth2-exporter-2 is shard 2),
    /// e.g. --shard-from-pod-name=$(POD_NAME).
    #[arg(
        long = "shard-from-pod-name",
        value_name = "NAME",
        conflicts_with = "shard",
        global = true
    )]
    pub shard_from_pod_name: Option<String>,
    /// Print the version, git revision, build date and rustc version, and exit.
    #[arg(short = 'V', long, action = ArgAction::SetTrue)]
    pub version: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run each provider's token flow and canary once, print the results, and exit: 0 when all
    /// pass, 1 when any fails, 2 on a configuration error.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Check only this provider (may be given several times).
    #[arg(long = "provider", value_name = "NAME")]
    pub providers: Vec<String>,
    /// Check only the providers with this label (its `labels` or the defaults'); may be given
    /// several times, and a provider must have them all. With --provider, only the named
    /// providers that have them.
    #[arg(long = "label", value_name = "NAME=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Output format.
    #[arg(long = "output", value_enum, default_value = "table")]
    pub output: check::Output,
    /// Also exit 1 when a credential or certificate expires within this window (e.g. 30d),
    /// even if every probe passed: for a weekly CI job that nags before the break.
    #[arg(long = "warn-within", value_name = "DURATION", value_parser = parse_window)]
    pub warn_within: Option<std::time::Duration>,
}

/// `--label`: `NAME=VALUE`, a Prometheus label name and a value that is not empty.
fn parse_label(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} has no `=`; expected NAME=VALUE, e.g. team=payments"))?;
    if !crate::config::is_valid_label_name(name) {
        return Err(format!(
            "{name:?} is not a label name; expected NAME=VALUE with NAME a letter or _ then letters, digits or _"
        ));
    }
    if value.is_empty() {
        return Err(format!(
            "{text:?} has an empty value; expected NAME=VALUE, e.g. team=payments"
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

/// `--warn-within`: a duration as the configuration writes them ("30d", "2w", "72h").
fn parse_window(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text)
        .map_err(|error| format!("{error}; expected a duration such as 30d, 2w or 72h"))
}

impl Cli {
    /// This process's shard from `--shard` / `--shard-from-pod-name` and `--total-shards` (both
    /// or neither), or why they do not fit together.
    pub fn shard(&self) -> Result<Option<Shard>, String> {
        let ordinal = match (&self.shard_from_pod_name, self.shard) {
            (Some(pod), _) => Some(Shard::ordinal_from_pod_name(pod)?),
            (None, ordinal) => ordinal,
        };
        match (ordinal, self.total_shards) {
            (None, None) => Ok(None),
            (Some(ordinal), Some(total)) => Shard::new(ordinal, total).map(Some),
            (Some(_), None) => Err(
                "--shard needs --total-shards: give both (or --shard-from-pod-name and --total-shards) or neither"
                    .to_string(),
            ),
            (None, Some(_)) => Err(
                "--total-shards needs --shard or --shard-from-pod-name: give both or neither"
                    .to_string(),
            ),
        }
    }
}

/// What `--version` prints: the fields and layout of Prometheus' exporters (`go version`
/// becomes `rustc version`), so tooling that reads those reads this too.
pub fn version_text() -> String {
    format!(
        "oauth2-exporter, version {version} (revision: {revision})\n  \
         build date:       {date}\n  \
         rustc version:    {rustc}\n  \
         platform:         {os}/{arch}\n",
        version = env!("CARGO_PKG_VERSION"),
        revision = crate::REVISION,
        date = env!("OAUTH2_EXPORTER_BUILD_DATE"),
        rustc = env!("OAUTH2_EXPORTER_RUSTC_VERSION"),
        os = std::env::consts::OS,
        arch = std::env::consts::ARCH,
    )
}

/// Why `--web.telemetry-path` cannot be `path`, if it cannot: it must be an absolute path that
/// does not hide another endpoint.
pub fn telemetry_path_problem(path: &str) -> Option<String> {
    let reserved = crate::web::RESERVED_PATHS;
    if !path.starts_with('/') || path.contains(['?', '#']) || path.chars().any(char::is_whitespace)
    {
        Some(format!(
            "--web.telemetry-path: invalid path {path:?}; expected an absolute path such as \"/metrics\""
        ))
    } else if reserved.contains(&path) {
        Some(format!(
            "--web.telemetry-path: {path:?} is taken by another endpoint; not one of {}",
            reserved.join(", ")
        ))
    } else {
        None
    }
}
