//! The daemon under test in-process: `oauth2_exporter::run` on a tokio task, listening on
//! loopback, with a client that reads its `/metrics` and waits (bounded) for a condition.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::exposition::{relevant_lines, sample};

/// `oauth2_exporter::run` on a tokio task, listening on `127.0.0.1:0`, probing with no start
/// jitter. Shut down gracefully by [`Daemon::stop`]; dropping it sends the shutdown signal too
/// (the runtime's end reaps whatever is left).
pub struct Daemon {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    client: reqwest::Client,
    pub started: Instant,
}

impl Daemon {
    /// Validates `toml` (panicking with every problem) and starts the daemon with it.
    pub async fn start(toml: &str) -> Daemon {
        let config = oauth2_exporter::config::load_str(toml, &Default::default())
            .unwrap_or_else(|e| panic!("test configuration is invalid:\n{e}\n---\n{toml}"));
        Self::start_with(config).await
    }

    /// Starts the daemon with an already loaded configuration.
    pub async fn start_with(config: oauth2_exporter::config::Config) -> Daemon {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        };
        let started = Instant::now();
        let task = tokio::spawn(oauth2_exporter::run(
            config,
            listener,
            oauth2_exporter::StartJitter::None,
            shutdown,
        ));
        Daemon {
            addr,
            shutdown: Some(tx),
            task: Some(task),
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            started,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `GET /metrics`; panics unless it answers 200.
    pub async fn scrape(&self) -> String {
        let response = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200, "GET /metrics");
        response.text().await.unwrap()
    }

    /// Scrapes until every one of `providers` has finished a cycle (its `oauth2_probe_success`
    /// exists) and returns that scrape; panics after `timeout`.
    pub async fn wait_for_cycles<P: AsRef<str>>(
        &self,
        providers: &[P],
        timeout: Duration,
    ) -> String {
        self.wait_for(
            |m| {
                providers.iter().all(|p| {
                    let p = p.as_ref();
                    sample(m, &format!(r#"oauth2_probe_success{{provider="{p}"}}"#)).is_some()
                })
            },
            timeout,
        )
        .await
    }

    /// Scrapes every 25 ms until `predicate` holds and returns that scrape; after `timeout`
    /// panics with the last scrape (see [`relevant_lines`]).
    pub async fn wait_for(&self, predicate: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let metrics = self.scrape().await;
            if predicate(&metrics) {
                return metrics;
            }
            if Instant::now() >= deadline {
                panic!(
                    "condition not met within {timeout:?}; last scrape:\n{}",
                    relevant_lines(&metrics)
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until `series` (as in [`sample`]) has the value `expected`; on timeout panics with
    /// expected vs. got and the last scrape.
    pub async fn wait_for_sample(&self, series: &str, expected: f64, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let metrics = self.scrape().await;
            let got = sample(&metrics, series);
            if got == Some(expected) {
                return metrics;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{series}: expected {expected}, got {got:?} after {timeout:?}; last scrape:\n{}",
                    relevant_lines(&metrics)
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Sends the shutdown signal and waits (bounded) for `run` to return `Ok`.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the daemon did not stop within 10 s of the shutdown signal")
                .expect("the daemon task panicked");
            result.expect("run() returned an error");
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
