//! The benchmark's baseline lane (issue 15): a bare reqwest client doing exactly the exporter's
//! two requests per cycle for N providers, and nothing else: every interval, per provider, a
//! token POST with `client_secret_basic` and `grant_type=client_credentials`, then a GET of the
//! canary API with the token as Bearer, over keep-alive, with the same 10 s timeout and start
//! times spread over the first interval. No metrics, no status, no logs, no retries: what any
//! client making these requests must pay, so `exporter ÷ bare` is the exporter's own overhead.
//!
//! `bench bare --token HOST:PORT --api HOST:PORT --providers N --interval-ms MS` runs it in a
//! process of its own (one runtime worker, like the exporter's default) and prints `ready` on
//! standard output once every provider's task is scheduled; it runs until killed. The smoke test
//! runs it in a thread of its own instead ([`run_in_thread`]), whose CPU time is read from
//! `/proc/self/task/TID`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::target;

/// What the bare lane probes, and how often.
#[derive(Debug, Clone)]
pub struct Options {
    pub token: SocketAddr,
    pub api: SocketAddr,
    pub providers: usize,
    pub interval: Duration,
}

impl Options {
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--token".into(),
            self.token.to_string(),
            "--api".into(),
            self.api.to_string(),
            "--providers".into(),
            self.providers.to_string(),
            "--interval-ms".into(),
            self.interval.as_millis().to_string(),
        ]
    }

    fn from_args(args: &[String]) -> Result<Options, String> {
        let (mut token, mut api, mut providers, mut interval) = (None, None, None, None);
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let bad = |what: &str| format!("{flag}: not {what}: {value}");
            match flag.as_str() {
                "--token" => token = Some(value.parse().map_err(|_| bad("an address"))?),
                "--api" => api = Some(value.parse().map_err(|_| bad("an address"))?),
                "--providers" => providers = Some(value.parse().map_err(|_| bad("a number"))?),
                "--interval-ms" => {
                    interval = Some(Duration::from_millis(
                        value.parse().map_err(|_| bad("a number"))?,
                    ))
                }
                other => return Err(format!("unknown flag {other}")),
            }
        }
        match (token, api, providers, interval) {
            (Some(token), Some(api), Some(providers), Some(interval)) => Ok(Options {
                token,
                api,
                providers,
                interval,
            }),
            _ => Err("needs --token, --api, --providers and --interval-ms".into()),
        }
    }
}

/// Failed cycles (any error or non-2xx answer); the harness reports a run with any as invalid.
#[derive(Debug, Default)]
pub struct Failures(AtomicU64);

impl Failures {
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One provider as a user would configure a plain client: its two URLs and its credentials.
struct Provider {
    token_url: String,
    api_url: String,
    client_id: String,
    client_secret: String,
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
}

/// Starts every provider's loop on the current runtime; they run until `cancel`.
pub fn spawn_all(
    options: &Options,
    failures: Arc<Failures>,
    cancel: CancellationToken,
) -> Result<(), reqwest::Error> {
    // As the exporter's client: keep-alive, no redirects, the provider's 10 s timeout.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()?;
    let lane = target::LaneAddrs {
        name: "bare".into(),
        token: options.token,
        api: options.api,
    };
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    for index in 0..options.providers {
        let (client_id, client_secret) = target::credentials(index);
        let provider = Provider {
            token_url: lane.token_url(index),
            api_url: lane.api_url(index),
            client_id,
            client_secret,
        };
        // xorshift: first cycles spread at random over the first interval, like the exporter's.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let first = Duration::from_nanos(seed % (options.interval.as_nanos().max(1) as u64));
        tokio::spawn(provider_loop(
            client.clone(),
            provider,
            first,
            options.interval,
            Arc::clone(&failures),
            cancel.clone(),
        ));
    }
    Ok(())
}

async fn provider_loop(
    client: reqwest::Client,
    provider: Provider,
    first: Duration,
    interval: Duration,
    failures: Arc<Failures>,
    cancel: CancellationToken,
) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + first, interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if cycle(&client, &provider).await.is_err() {
            failures.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The exporter's two requests, nothing more.
async fn cycle(client: &reqwest::Client, provider: &Provider) -> Result<(), reqwest::Error> {
    let answer: TokenAnswer = client
        .post(&provider.token_url)
        .basic_auth(&provider.client_id, Some(&provider.client_secret))
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    client
        .get(&provider.api_url)
        .bearer_auth(&answer.access_token)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    Ok(())
}

/// The lane in a process of its own: one runtime worker (the exporter's default), `ready` on
/// standard output once started, then until killed; failures are printed on standard error.
pub fn run_standalone(args: &[String]) -> std::process::ExitCode {
    let options = match Options::from_args(args) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("bare client: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bare client: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let failures = Arc::new(Failures::default());
        let cancel = CancellationToken::new();
        if let Err(error) = spawn_all(&options, Arc::clone(&failures), cancel.clone()) {
            eprintln!("bare client: {error}");
            return std::process::ExitCode::FAILURE;
        }
        println!("ready");
        // Failures are reported as they grow, so the driver sees them without asking.
        let mut reported = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = failures.count();
            if now != reported {
                eprintln!("bare client: failures {now}");
                reported = now;
            }
        }
    })
}

/// The lane in a thread of this process on a current-thread runtime (the smoke test has no
/// example binary to start). Returns the thread's id, for its CPU time in
/// `/proc/self/task/TID/stat`, and the failure count; the thread ends with `cancel`.
pub fn run_in_thread(
    options: Options,
    cancel: CancellationToken,
) -> anyhow::Result<(u32, Arc<Failures>, std::thread::JoinHandle<()>)> {
    let failures = Arc::new(Failures::default());
    let (sender, receiver) = std::sync::mpsc::channel();
    let counted = Arc::clone(&failures);
    let thread = std::thread::spawn(move || {
        let tid = std::fs::read_link("/proc/thread-self")
            .ok()
            .and_then(|link| link.file_name()?.to_str()?.parse::<u32>().ok());
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                let _ = sender.send(Err(error.to_string()));
                return;
            }
        };
        runtime.block_on(async move {
            match spawn_all(&options, counted, cancel.clone()) {
                Ok(()) => {
                    let _ = sender.send(tid.ok_or_else(|| "no /proc/thread-self".to_string()));
                    cancel.cancelled().await;
                }
                Err(error) => {
                    let _ = sender.send(Err(error.to_string()));
                }
            }
        });
    });
    let tid = receiver
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| anyhow::anyhow!("the bare client thread did not start in 30 s"))?
        .map_err(|error| anyhow::anyhow!("the bare client thread failed: {error}"))?;
    Ok((tid, failures, thread))
}
