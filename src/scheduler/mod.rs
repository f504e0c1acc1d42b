//! Runs every provider's probe cycle on its own interval: one clock for all of them, and a
//! task per provider only while it has something to do (a turn: `turn`), so one slow provider
//! never delays another and a provider's cycles never overlap; start times spread over the
//! first interval, every wait cancellable, and a panicking cycle contained to its provider. A
//! turn records through the provider's record, without looking anything up.
//! [`Scheduler::apply`] moves the running set to a new configuration.

mod backoff;
mod clock;
mod mailbox;
mod record;
mod turn;

pub use mailbox::{Directory, Mailbox, ProbeRequest, Repeated, RepeatedBecause};

pub use record::Recorders;
pub(crate) use record::{Handles, ProviderRecord};

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::ProviderConfig;
use crate::probe::Prober;
use crate::probe::transport;
use crate::shard::Shard;

use self::turn::{Idle, random_below};

/// How first cycles are spread out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartJitter {
    /// A random delay within the first interval, so providers sharing an identity provider do
    /// not fire in lockstep.
    Random,
    /// Every provider probes at once (tests, one-off checks).
    None,
}

/// What [`Scheduler::apply`] changed, by provider name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub restarted: Vec<String>,
    pub unchanged: Vec<String>,
}

/// A restarted provider that was backing off after refused credentials starts within this:
/// the reload may have fixed them, and the operator is watching (issue 23).
const PROMPT_START: Duration = Duration::from_secs(2);

/// The set of running providers.
pub struct Scheduler {
    recorders: Arc<Recorders>,
    jitter: StartJitter,
    /// Shared by every provider with default TLS settings, across reloads: one connection pool.
    shared_client: transport::Client,
    /// Cancelled when the process shuts down: a provider started after that stops at once.
    root: CancellationToken,
    /// With `--shard`, only the providers this shard owns run (on start and on every reload).
    shard: Option<Shard>,
}

impl Scheduler {
    /// Every provider's requests take their slots from `slots`; every provider stops when
    /// `root` is cancelled. The clock runs as one of `tracker`'s tasks. Call within the runtime.
    pub fn new(
        recorders: Arc<Recorders>,
        jitter: StartJitter,
        slots: &transport::Slots,
        root: CancellationToken,
        tracker: tokio_util::task::TaskTracker,
    ) -> Result<Scheduler, transport::ClientError> {
        let shutdown = root.clone();
        let everyone = Arc::clone(&recorders);
        tracker.spawn(async move {
            shutdown.cancelled().await;
            everyone.directory().stop_all();
        });
        let clock = Arc::clone(&recorders.directory().clock);
        tracker.spawn(clock.run(Arc::clone(&recorders), root.clone()));
        Ok(Scheduler {
            recorders,
            jitter,
            shared_client: transport::build_client(
                &Default::default(),
                &Default::default(),
                slots,
            )?,
            root,
            shard: None,
        })
    }

    /// `[web] probe_min_interval`, for every provider's on-demand probes from now on.
    pub fn set_probe_min_interval(&self, limit: Duration) {
        self.recorders.set_probe_min_interval(limit);
    }

    /// From now on, run only the providers `shard` owns.
    pub fn set_shard(&mut self, shard: Option<Shard>) {
        self.shard = shard;
    }

    /// Makes exactly `providers` run: new ones start, removed ones stop and their series are
    /// deleted, changed ones restart with the new settings (a fresh token, counters kept), and
    /// unchanged ones keep running untouched, held token included. Nothing changes if a client
    /// cannot be built. Takes the configuration by value: each started provider's settings move
    /// into the one `Arc` its prober and its record share, never copied.
    pub fn apply(
        &mut self,
        providers: Vec<ProviderConfig>,
    ) -> Result<Changes, transport::ClientError> {
        let (providers, elsewhere) = crate::shard::split(self.shard, providers, |p| &p.name);
        let elsewhere: HashMap<String, u32> = elsewhere
            .into_iter()
            .map(|(provider, owner)| (provider.name, owner))
            .collect();
        let mut changes = Changes::default();
        let wanted: std::collections::HashSet<&str> =
            providers.iter().map(|p| p.name.as_str()).collect();
        // The directory is the one list of running providers (a map of the scheduler's own
        // was 54 bytes per provider).
        let directory = self.recorders.directory();
        changes.removed = directory
            .names()
            .into_iter()
            .filter(|name| !wanted.contains(name.as_str()))
            .collect();
        let mut to_start = Vec::new();
        for provider in providers {
            match directory.record(&provider.name) {
                Some(running) if *running.config == provider => {
                    changes.unchanged.push(provider.name);
                }
                existing => {
                    let client =
                        transport::client_for(&provider.tls, &provider.proxy, &self.shared_client)?;
                    if existing.is_some() {
                        changes.restarted.push(provider.name.clone());
                    } else {
                        changes.added.push(provider.name.clone());
                    }
                    to_start.push((provider, client, existing));
                }
            }
        }

        let recorders = Arc::clone(&self.recorders);
        let _exclusive = recorders.exclusive();
        for name in &changes.removed {
            if let Some(running) = recorders.directory().record(name) {
                running.stop();
            }
            recorders.remove(name);
        }
        for (config, client, old) in to_start {
            let mut prompt = false;
            if let Some(old) = old {
                old.stop();
                recorders.forget_token(&config.name);
                prompt = old.mailbox.backing_off.load(Ordering::Relaxed);
            }
            self.start(config, client, prompt);
        }
        recorders.set_elsewhere(elsewhere);
        Ok(changes)
    }

    /// Starts a provider: its first turn is due within its first interval, or with `prompt`
    /// within [`PROMPT_START`].
    fn start(&mut self, config: ProviderConfig, client: transport::Client, prompt: bool) {
        let first_delay = match (self.jitter, prompt) {
            (StartJitter::None, _) => Duration::ZERO,
            (StartJitter::Random, false) => random_below(config.interval),
            (StartJitter::Random, true) => random_below(config.interval.min(PROMPT_START)),
        };
        let config = Arc::new(config);
        let record = self.recorders.add(&config);
        let prober = Prober::new(config, client);
        if self.root.is_cancelled() {
            record.stop();
        }
        start(
            Idle::new(Box::new(prober), Instant::now() + first_delay),
            &self.recorders,
            record,
        );
    }
}

/// Parks a new provider's state with the clock, for its first turn.
fn start(idle: Idle, recorders: &Recorders, record: Handles) {
    idle.record_pace(recorders, &record);
    recorders.directory().clock.park(idle, record);
}

#[cfg(test)]
mod tests;
