//! Command line entry point: parses flags, sets up logging and the runtime, loads the
//! configuration, binds, and dispatches to the daemon ([`oauth2_exporter::run_with`]), `check`,
//! `--config.check` or `--demo`. Exit codes: 0 after a signal-initiated shutdown, 1 for runtime
//! failures, 2 for configuration or usage errors.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use oauth2_exporter::cli::{self, CheckArgs, Cli, Command};
use oauth2_exporter::config::{self, Overrides};
#[cfg(feature = "demo")]
use oauth2_exporter::demo::DemoServer;
use oauth2_exporter::logging;
use oauth2_exporter::shard::{self, Shard};
use oauth2_exporter::{
    ConfigSource, RunOptions, StartJitter, WebSecurity, bind, claim_hangup, load_web_config,
    run_with, shutdown_signal, unless_shutdown,
};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Where `--demo` listens unless told otherwise: loopback, since it serves demo credentials.
#[cfg(feature = "demo")]
const DEMO_LISTEN_ADDRESS: &str = "127.0.0.1:9875";

fn main() -> ExitCode {
    // Before any thread starts (see its documentation).
    oauth2_exporter::fix_allocator_thresholds();
    let cli = Cli::parse();
    if cli.version {
        print!("{}", cli::version_text());
        return ExitCode::SUCCESS;
    }
    if let Some(problem) = cli::telemetry_path_problem(&cli.telemetry_path) {
        eprintln!("error: {problem}");
        return ExitCode::from(2);
    }
    let shard = match cli.shard() {
        Ok(shard) => shard,
        Err(problem) => {
            eprintln!("error: {problem}");
            return ExitCode::from(2);
        }
    };
    logging::init(cli.log_level, cli.log_format);
    // Panics are bugs; log them as one structured line like everything else. A panic inside a
    // probe cycle is also caught and counted, and probing goes on.
    std::panic::set_hook(Box::new(|info| tracing::error!(panic = %info, "panic")));
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // The probes wait on the network and `/metrics` renders on the blocking pool, so one worker
    // keeps up with 10 000 providers; measured, a second one only added wake-ups (about 20% more
    // CPU at the same lateness, see BENCHMARKS.md). `TOKIO_WORKER_THREADS` still overrides it.
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(1);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(async_main(cli, shard));
    // The daemon already gave its tasks their grace period; a blocking thread still busy (a
    // start-up load abandoned at a signal, a DNS lookup) must not hold the exit.
    runtime.shutdown_background();
    code
}

async fn async_main(cli: Cli, shard: Option<Shard>) -> ExitCode {
    if let Some(Command::Check(args)) = &cli.command {
        return check(&cli, args, shard).await;
    }
    // Listen for SIGINT and SIGTERM before anything else, so that a signal during start-up
    // still ends in an orderly exit 0 rather than the default abrupt termination.
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    // Claim SIGHUP now too, for the same reason (a reload asked for during start-up).
    claim_hangup();
    let demo_cancel = CancellationToken::new();
    let demo_tracker = TaskTracker::new();
    let source = if cli.demo {
        match demo_source(&cli, &demo_cancel, &demo_tracker).await {
            Ok(source) => source,
            Err(code) => return code,
        }
    } else {
        file_source(&cli)
    };
    // Everything start-up reads (configuration files, secrets, certificates, the web
    // configuration) is read off the async worker while this task goes on listening for
    // SIGINT and SIGTERM: a file on a stalled mount must not make the process unstoppable.
    let start = StartUp {
        source: Arc::clone(&source),
        config_files: cli.config_files.clone(),
        web_config_file: cli.web_config_file.clone(),
        demo: cli.demo,
    };
    let (config, web_security) =
        match unless_shutdown(move || start.load(), shutdown.as_mut()).await {
            Some(Ok(loaded)) => loaded,
            Some(Err(code)) => return code,
            None if cli.config_check => {
                eprintln!("error: interrupted by a signal before the configuration was checked");
                return ExitCode::from(1);
            }
            None => {
                tracing::info!("shutting down (signal during start-up)");
                return ExitCode::SUCCESS;
            }
        };
    if cli.config_check {
        println!(
            "{}: configuration is valid ({} provider{})",
            files_label(&cli.config_files),
            config.providers.len(),
            if config.providers.len() == 1 { "" } else { "s" }
        );
        return ExitCode::SUCCESS;
    }

    let mut listeners = Vec::new();
    for address in config.web.listen_addresses() {
        let listener = match bind(address).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("error: cannot listen on {address}: {error}");
                return ExitCode::from(1);
            }
        };
        match listener.local_addr() {
            Ok(bound) => tracing::info!(
                address = %bound,
                metrics = %format!("http://{bound}{}", cli.telemetry_path),
                "listening"
            ),
            Err(error) => tracing::warn!(%error, "cannot tell the bound address"),
        }
        listeners.push(listener);
    }
    // Before any request is sent (the request slots are sized by the limit in force), and after
    // the binds, so that "address in use" stays the one line it is.
    oauth2_exporter::raise_descriptor_limit();

    let options = RunOptions {
        jitter: StartJitter::Random,
        reload: Some(source),
        reload_on_sighup: true,
        web_security,
        telemetry_path: cli.telemetry_path.clone(),
        shard,
    };
    let result = run_with(config, listeners, options, shutdown).await;
    demo_cancel.cancel();
    demo_tracker.close();
    demo_tracker.wait().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// What start-up reads before it binds, owned so that it can run off the async worker.
struct StartUp {
    source: ConfigSource,
    config_files: Vec<PathBuf>,
    web_config_file: Option<PathBuf>,
    demo: bool,
}

impl StartUp {
    /// Loads the configuration and the web configuration; on a problem, prints it and returns
    /// the exit code.
    fn load(self) -> Result<(config::Config, WebSecurity), ExitCode> {
        let config = (self.source)().map_err(|error| {
            let origin = if self.demo {
                "demo configuration".to_string()
            } else {
                files_label(&self.config_files)
            };
            config_error(&origin, &error.problems)
        })?;
        if !self.demo {
            warn_exposed_secrets(&self.config_files, &config);
        }
        let web_security = match &self.web_config_file {
            None => Default::default(),
            Some(path) => load_web_config(path)
                .map_err(|error| config_error(&path.display().to_string(), &error.problems))?,
        };
        Ok((config, web_security))
    }
}

/// The configuration files with environment and flag overrides, read again on each reload (a
/// directory is listed again too, so a new team file is picked up).
fn file_source(cli: &Cli) -> ConfigSource {
    let paths = cli.config_files.clone();
    let overrides = Overrides {
        listen_addresses: cli.listen_addresses.clone(),
    };
    Arc::new(move || config::load_files(&paths, &overrides))
}

/// The configuration's origin as shown in messages.
fn files_label(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn warn_exposed_secrets(paths: &[PathBuf], config: &config::Config) {
    let Ok(files) = config::expand_paths(paths) else {
        return;
    };
    for file in files {
        if let Some(warning) = config::exposed_secrets_warning(&file, config) {
            tracing::warn!("{warning}");
        }
    }
}

/// `oauth2-exporter check`: loads the configuration as the daemon would, keeps this shard's
/// providers, then hands over.
async fn check(cli: &Cli, args: &CheckArgs, shard: Option<Shard>) -> ExitCode {
    let config = match file_source(cli)() {
        Ok(config) => config,
        Err(error) => return config_error(&files_label(&cli.config_files), &error.problems),
    };
    let (mine, elsewhere) = shard::split(shard, config.providers, |p| &p.name);
    for name in &args.providers {
        if let Some(shard) = shard
            && let Some((_, owner)) = elsewhere.iter().find(|(p, _)| &p.name == name)
        {
            eprintln!(
                "error: provider {name:?} is checked by shard {owner} of {}; this is {shard}",
                shard.total()
            );
            return ExitCode::from(2);
        }
    }
    oauth2_exporter::check::command(
        mine,
        &args.providers,
        &args.labels,
        args.output,
        args.warn_within,
    )
    .await
}

/// Starts the demo identity provider; its built-in configuration points at it.
#[cfg(feature = "demo")]
async fn demo_source(
    cli: &Cli,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<ConfigSource, ExitCode> {
    let server = DemoServer::start(cancel.clone(), tracker)
        .await
        .map_err(|error| {
            eprintln!("error: cannot start the demo identity provider: {error}");
            ExitCode::from(1)
        })?;
    tracing::info!(address = %server.addr(), "demo identity provider and API started");
    let listen_addresses = if cli.listen_addresses.is_empty() {
        vec![DEMO_LISTEN_ADDRESS.to_string()]
    } else {
        cli.listen_addresses.clone()
    };
    let overrides = Overrides { listen_addresses };
    let toml = server.config_toml();
    Ok(Arc::new(move || config::load_str(&toml, &overrides)))
}

fn config_error(source: &str, problems: &[String]) -> ExitCode {
    eprintln!(
        "error: {source}: invalid configuration ({} problem{}):",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for problem in problems {
        eprintln!("  {problem}");
    }
    ExitCode::from(2)
}

/// Built without the `demo` cargo feature: the flag stays so the answer is a clear usage error
/// rather than clap's "unexpected argument".
#[cfg(not(feature = "demo"))]
async fn demo_source(
    _cli: &Cli,
    _cancel: &CancellationToken,
    _tracker: &TaskTracker,
) -> Result<ConfigSource, ExitCode> {
    eprintln!(
        "error: --demo is not available: this oauth2-exporter was built without the `demo` cargo \
         feature (it is on by default; rebuild without --no-default-features to get it)"
    );
    Err(ExitCode::from(2))
}
