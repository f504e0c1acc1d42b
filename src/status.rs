//! What the status page shows: per provider, the state and details of its last cycles, written
//! next to the metrics (from the same report) and read when `/` is rendered.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::closed_set::closed_set;
use crate::probe::expiry::Expiry;
use crate::probe::{CycleReport, Failure, HeldToken, HoldOff};
use crate::shorten::{Shown, shorten};

/// Longest `error_description` kept for the page.
const DESCRIPTION_CHARS: usize = 160;

#[derive(Debug, Clone, Default)]
pub struct ProviderStatus {
    pub canary_configured: bool,
    pub last_run: Option<SystemTime>,
    pub success: Option<bool>,
    /// The failure of the last cycle that failed (kept after recovery, with its time).
    /// Its details are truncated for the page.
    pub last_failure: Option<(SystemTime, Failure)>,
    pub last_success: Option<SystemTime>,
    /// A token is held (its expiry may still be unknown).
    pub token_held: bool,
    pub expires_at: Option<SystemTime>,
    pub lifetime: Option<Duration>,
    pub token_latency: Option<Duration>,
    pub canary_latency: Option<Duration>,
    pub canary_status: Option<u16>,
    /// The nearest credential or endpoint certificate expiry (issue 13).
    pub nearest_expiry: Option<Expiry>,
    /// When the next periodic cycle is due (issue 23).
    pub next_run: Option<SystemTime>,
    /// Why it comes later than the interval, and after how many steps, while it does.
    pub backing_off: Option<(HoldOff, u32)>,
}

impl ProviderStatus {
    /// `ok`, `failing` or `no data yet`.
    pub fn state(&self) -> State {
        match self.success {
            None => State::NoData,
            Some(true) => State::Ok,
            Some(false) => State::Failing,
        }
    }
}

closed_set! {
    /// A provider's state on the page. Declared in the order the page lists them: what needs
    /// attention first.
    #[derive(PartialOrd, Ord)]
    State {
        Failing => "failing",
        NoData => "no data yet",
        Ok => "ok",
    }
}

/// The outcome of the last configuration (re)load.
#[derive(Debug, Clone, Copy)]
pub struct ReloadState {
    pub successful: bool,
    pub at: SystemTime,
    pub last_success: SystemTime,
}

/// One provider's row, shared with the provider's task, which records through it without
/// looking the provider up by name.
#[derive(Clone, Default)]
pub struct StatusHandle(Arc<Mutex<ProviderStatus>>);

impl StatusHandle {
    pub fn record(&self, report: &CycleReport, held: Option<&HeldToken>) {
        let mut status = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        StatusBoard::record_into(&mut status, report, held);
    }

    /// When the next cycle is due and whether (and why) the provider backs off.
    pub fn record_pace(&self, next_run: SystemTime, backing_off: Option<(HoldOff, u32)>) {
        let mut status = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        status.next_run = Some(next_run);
        status.backing_off = backing_off;
    }
}

pub struct StatusBoard {
    started: Instant,
    /// Keys are the provider names the scheduler shares with the metrics and `/probe`.
    providers: Mutex<BTreeMap<Arc<str>, StatusHandle>>,
    reload: Mutex<Option<ReloadState>>,
}

impl Default for StatusBoard {
    fn default() -> Self {
        StatusBoard {
            started: Instant::now(),
            providers: Mutex::new(BTreeMap::new()),
            reload: Mutex::new(None),
        }
    }
}

impl StatusBoard {
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Adds a provider's row and returns the handle its task records through.
    pub fn add_provider(&self, name: impl Into<Arc<str>>, canary_configured: bool) -> StatusHandle {
        let mut providers = self
            .providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A restarted provider starts over: its old token and results belong to old settings.
        let handle = StatusHandle(Arc::new(Mutex::new(ProviderStatus {
            canary_configured,
            ..ProviderStatus::default()
        })));
        providers.insert(name.into(), handle.clone());
        handle
    }

    pub fn remove_provider(&self, name: &str) {
        self.providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }

    /// Writes one cycle's report into a provider's row ([`StatusHandle::record`]).
    fn record_into(status: &mut ProviderStatus, report: &CycleReport, held: Option<&HeldToken>) {
        status.last_run = Some(report.finished_at);
        status.success = Some(report.success);
        if report.success {
            status.last_success = Some(report.finished_at);
        }
        if let Some(mut failure) = report.failure() {
            failure.detail = shorten(&failure.detail, DESCRIPTION_CHARS, Shown::AsIs);
            status.last_failure = Some((report.finished_at, failure));
        }
        if let Some(token) = report.token_requests.last() {
            status.token_latency = Some(token.duration);
        }
        if let Some(canary) = report.canary_requests.last() {
            status.canary_latency = Some(canary.duration);
            status.canary_status = canary.status;
        }
        status.token_held = held.is_some();
        status.expires_at = held.and_then(|h| h.expires_at);
        status.lifetime = held.and_then(|h| h.lifetime);
        status.nearest_expiry = report.expiries.nearest();
    }

    pub fn record_reload(&self, successful: bool) {
        let now = SystemTime::now();
        let mut reload = self.reload.lock().unwrap_or_else(PoisonError::into_inner);
        let last_success = match (*reload, successful) {
            (_, true) => now,
            (Some(previous), false) => previous.last_success,
            (None, false) => now,
        };
        *reload = Some(ReloadState {
            successful,
            at: now,
            last_success,
        });
    }

    pub fn reload_state(&self) -> Option<ReloadState> {
        *self.reload.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every provider, failing first, then those without data, then healthy ones; by name
    /// within each group.
    pub fn snapshot(&self) -> Vec<(String, ProviderStatus)> {
        let providers = self
            .providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut rows: Vec<(String, ProviderStatus)> = providers
            .iter()
            .map(|(name, status)| {
                let status = status.0.lock().unwrap_or_else(PoisonError::into_inner);
                (name.to_string(), status.clone())
            })
            .collect();
        rows.sort_by(|(a_name, a), (b_name, b)| {
            a.state().cmp(&b.state()).then_with(|| a_name.cmp(b_name))
        });
        rows
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::config::GrantKind;
    use crate::probe::token::{TokenError, TokenOutcome};

    /// A failed cycle whose failure detail is `chars` characters long.
    fn failed_with_detail(chars: usize) -> CycleReport {
        let prefix = TokenError::KeyUnavailable(String::new()).to_string();
        let error = TokenError::KeyUnavailable("x".repeat(chars - prefix.chars().count()));
        assert_eq!(error.to_string().chars().count(), chars);
        CycleReport {
            token_requests: vec![TokenOutcome {
                duration: Duration::from_millis(5),
                status: None,
                certificate: None,
                credentials: [0; 4],
                retry_after: None,
                result: Err(error),
            }],
            canary_requests: Vec::new(),
            canary_skipped: false,
            success: false,
            grant: GrantKind::ClientCredentials,
            duration: Duration::from_millis(5),
            finished_at: SystemTime::now(),
            expiries: Default::default(),
        }
    }

    fn shown_detail(report: &CycleReport) -> String {
        let board = StatusBoard::default();
        board.add_provider("p", false).record(report, None);
        let (_, status) = board.snapshot().remove(0);
        status
            .last_failure
            .map(|(_, f)| f.detail)
            .unwrap_or_default()
    }

    #[test]
    fn a_detail_is_marked_as_cut_only_when_it_was_cut() {
        // Exactly the page's limit: shown whole, without the mark (it used to get one).
        let whole = failed_with_detail(DESCRIPTION_CHARS);
        let shown = shown_detail(&whole);
        assert_eq!(shown.chars().count(), DESCRIPTION_CHARS);
        assert!(!shown.ends_with('…'), "{shown}");
        // One more: the limit, then the mark.
        let long = failed_with_detail(DESCRIPTION_CHARS + 1);
        let shown = shown_detail(&long);
        assert_eq!(shown.chars().count(), DESCRIPTION_CHARS + 1);
        assert!(shown.ends_with("x…"), "{shown}");
    }
}
