//! On-demand probes (`/probe`) on their way to a provider's turn: the request and its answer,
//! each provider's [`Mailbox`] (inside its record), and the [`Directory`] `/probe` finds a
//! provider's mailbox in.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use super::ProviderRecord;
use super::clock::Clock;
use crate::config::Labels;
use crate::probe::{CycleReport, HeldToken, HoldOff};

/// Requests for on-demand cycles waiting at most this many per provider; more are refused.
const ON_DEMAND_QUEUE: usize = 64;

/// One caller's wish for a cycle now (`/probe`).
pub struct ProbeRequest {
    pub debug: bool,
    pub reply: oneshot::Sender<ProbeAnswer>,
}

/// What a `/probe` caller gets back: the cycle's report and the token held after it (data;
/// `metrics::probe_page` renders it), and the step-by-step trace when the caller asked for it.
#[derive(Debug, Clone)]
pub struct ProbeAnswer {
    pub report: Arc<CycleReport>,
    pub held: Option<HeldToken>,
    pub trace: Option<String>,
    /// Set when no attempt was made for this caller: the answer is an earlier result.
    pub repeated: Option<Repeated>,
}

/// Why `/probe` answered with an earlier result rather than a fresh attempt (issue 23: on-demand
/// probes must not become a way to hammer an account).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeated {
    /// How old the result is.
    pub age: Duration,
    /// How long until a fresh attempt is allowed.
    pub fresh_in: Duration,
    pub why: RepeatedBecause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepeatedBecause {
    /// `[web] probe_min_interval`: the last on-demand attempt is more recent than this.
    MinInterval(Duration),
    /// The provider backs off after `steps` refusals and its credentials have not changed
    /// since: the answer is the last refusal.
    BackingOff { steps: u32, reason: HoldOff },
}

/// A provider's on-demand requests (`/probe`), waiting for its next turn. A lock, an empty `Vec`
/// and a `Notify` until the first request: a bounded channel allocated its buffer up front, for
/// every provider, though on-demand probes are rare.
#[derive(Default)]
pub struct Mailbox {
    waiting: Mutex<Vec<ProbeRequest>>,
    /// Wakes a running turn when the provider is stopped.
    pub(super) wake: Notify,
    /// The provider backs off after refused credentials: a reload that changes it then starts
    /// it again within seconds, not anywhere in its first interval (issue 23).
    pub(super) backing_off: AtomicBool,
}

impl Mailbox {
    /// Queues a request for the provider's next turn; refused (handed back) when
    /// [`ON_DEMAND_QUEUE`] are already waiting.
    fn push(&self, request: ProbeRequest) -> Result<(), ProbeRequest> {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if waiting.len() >= ON_DEMAND_QUEUE {
            return Err(request);
        }
        waiting.push(request);
        Ok(())
    }

    /// Every request waiting now; they share one cycle.
    pub(super) fn take(&self) -> Vec<ProbeRequest> {
        std::mem::take(&mut *self.waiting.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether a request waits: a turn serves it before the provider parks.
    pub(super) fn has_waiting(&self) -> bool {
        !self
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }
}

/// Where `/probe` finds a running provider: its mailbox, in its record, and the clock that
/// wakes it.
#[derive(Default)]
pub struct Directory {
    providers: Mutex<HashMap<Arc<str>, Arc<ProviderRecord>>>,
    /// Configured providers that another shard probes, so `/probe` can name it.
    pub(super) elsewhere: Mutex<HashMap<String, u32>>,
    /// Every provider's next turn.
    pub(super) clock: Arc<Clock>,
}

impl Directory {
    /// The shard that probes `provider` when it is configured but not probed here.
    pub fn owner_elsewhere(&self, provider: &str) -> Option<u32> {
        self.elsewhere
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(provider)
            .copied()
    }

    pub(crate) fn insert(&self, provider: Arc<str>, record: Arc<ProviderRecord>) {
        self.providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(provider, record);
    }

    pub fn remove(&self, provider: &str) {
        self.providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(provider);
    }

    /// The mailbox of `provider`, if it runs here.
    pub fn get(&self, provider: &str) -> Option<MailboxOf> {
        self.record(provider).map(|record| MailboxOf {
            record,
            clock: Arc::clone(&self.clock),
        })
    }

    /// The record of `provider`, if it runs here.
    pub(super) fn record(&self, provider: &str) -> Option<Arc<ProviderRecord>> {
        self.providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(provider)
            .cloned()
    }

    /// Stops every provider (the process shuts down).
    pub(super) fn stop_all(&self) {
        for record in self
            .providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            record.stop();
        }
    }

    /// Every provider name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .map(|name| name.to_string())
            .collect();
        names.sort();
        names
    }
}

/// A provider's mailbox, held by a `/probe` caller: it keeps the provider's record alive.
pub struct MailboxOf {
    record: Arc<ProviderRecord>,
    clock: Arc<Clock>,
}

impl MailboxOf {
    /// The provider's own labels, which its `/probe` series carry (issue 26).
    pub fn labels(&self) -> &Labels {
        &self.record.config.labels
    }

    /// Queues a request for the provider's next turn, which starts now if the provider is idle
    /// (a running turn serves it before it parks); refused (handed back) when
    /// [`ON_DEMAND_QUEUE`] are already waiting.
    pub fn try_send(&self, request: ProbeRequest) -> Result<(), ProbeRequest> {
        self.record.mailbox.push(request)?;
        self.clock.wake(&self.record);
        Ok(())
    }
}
