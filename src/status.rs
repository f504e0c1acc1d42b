//! What the status page shows: per provider, the state and details of its last cycles, the
//! outcomes of its last [`HISTORY`] periodic cycles (one byte each, in a fixed ring) and since
//! when its state holds, written next to the metrics (from the same report) and read when `/` is
//! rendered.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::by_name::ByName;
use crate::closed_set::closed_set;
use crate::config::Labels;
use crate::probe::canary::CanaryReason;
use crate::probe::expiry::Expiry;
use crate::probe::token::TokenReason;
use crate::probe::{CycleReport, Failure, FailureReason, HeldToken, HoldOff};
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
    /// Boxed: most providers never fail.
    pub last_failure: Option<Box<(SystemTime, Failure)>>,
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
    /// The provider's `interval`: the width of one cell of the history (issue 26).
    pub interval: Duration,
    /// The outcomes of the last periodic cycles, skipped intervals included (issue 26).
    pub history: History,
    /// When the current state began: the end of the first cycle with this outcome (ok or
    /// failing) after one with the other, or of the first cycle of all (issue 26).
    pub since: Option<SystemTime>,
    /// The state has held since the provider's first cycle in this process (its start, or the
    /// reload that added or changed it): it may have held for longer.
    pub since_first: bool,
    /// The provider's own labels (issue 26): shown, and what `/?NAME=VALUE` filters on.
    pub labels: Labels,
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

    /// The intervals that have passed without a cycle since the last one ended, while the
    /// provider backs off: shown on the page as they pass, before the next cycle records them
    /// (at most as many as it will record, see [`skipped_between`]).
    pub fn skipped_so_far(&self, now: SystemTime) -> u32 {
        let (Some(last_run), Some(next_run), Some(_)) =
            (self.last_run, self.next_run, self.backing_off)
        else {
            return 0;
        };
        if self.interval.is_zero() {
            return 0;
        }
        let elapsed = now
            .min(next_run)
            .duration_since(last_run)
            .unwrap_or_default();
        let passed = elapsed.as_nanos() / self.interval.as_nanos();
        u32::try_from(passed)
            .unwrap_or(u32::MAX)
            .min(skipped_between(last_run, next_run, self.interval))
    }
}

/// How many periodic cycles the history keeps per provider (issue 26).
pub const HISTORY: usize = 60;

/// One cell of the history: what a periodic cycle ended with, or an interval without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Failed, for this reason (which names its phase); `None` if the report named none.
    Failed(Option<FailureReason>),
    /// An interval passed without a periodic cycle: the provider was backing off (refused
    /// credentials, or a server that asked to be left alone), or a cycle panicked (counted
    /// by `oauth2_exporter_probe_panics_total`).
    Skipped,
}

// Every outcome fits in the byte a cell is: 0 (empty), ok, skipped, failed without a reason,
// then each token reason and each canary reason.
const FIRST_TOKEN_REASON: usize = 4;
const FIRST_CANARY_REASON: usize = FIRST_TOKEN_REASON + TokenReason::ALL.len();
const _: () = assert!(FIRST_CANARY_REASON + CanaryReason::ALL.len() <= 256);

impl Outcome {
    fn encode(self) -> u8 {
        let code = match self {
            Outcome::Ok => 1,
            Outcome::Skipped => 2,
            Outcome::Failed(None) => 3,
            Outcome::Failed(Some(FailureReason::Token(reason))) => {
                FIRST_TOKEN_REASON + reason as usize
            }
            Outcome::Failed(Some(FailureReason::Canary(reason))) => {
                FIRST_CANARY_REASON + reason as usize
            }
        };
        // In range: checked at compile time above.
        code as u8
    }

    fn decode(code: u8) -> Option<Outcome> {
        let code = usize::from(code);
        Some(match code {
            0 => return None,
            1 => Outcome::Ok,
            2 => Outcome::Skipped,
            3 => Outcome::Failed(None),
            _ if code < FIRST_CANARY_REASON => Outcome::Failed(Some(FailureReason::Token(
                TokenReason::ALL[code - FIRST_TOKEN_REASON],
            ))),
            _ => Outcome::Failed(Some(FailureReason::Canary(
                *CanaryReason::ALL.get(code - FIRST_CANARY_REASON)?,
            ))),
        })
    }
}

/// The last [`HISTORY`] outcomes, one byte each in a fixed ring: nothing grows or is allocated
/// per cycle, and 10 000 providers keep about 60 bytes each (BENCHMARKS.md).
#[derive(Debug, Clone, Copy)]
pub struct History {
    cells: [u8; HISTORY],
    /// Where the next outcome goes.
    next: u8,
    /// How many cells hold an outcome (at most [`HISTORY`]).
    len: u8,
}

impl Default for History {
    fn default() -> Self {
        History {
            cells: [0; HISTORY],
            next: 0,
            len: 0,
        }
    }
}

impl History {
    pub fn push(&mut self, outcome: Outcome) {
        self.cells[usize::from(self.next)] = outcome.encode();
        self.next = ((usize::from(self.next) + 1) % HISTORY) as u8;
        self.len = (usize::from(self.len) + 1).min(HISTORY) as u8;
    }

    /// `count` skipped intervals; more than the ring holds only pushes the older ones out.
    pub fn push_skipped(&mut self, count: u32) {
        for _ in 0..count.min(HISTORY as u32) {
            self.push(Outcome::Skipped);
        }
    }

    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Oldest first.
    pub fn iter(&self) -> impl Iterator<Item = Outcome> + '_ {
        let start = (usize::from(self.next) + HISTORY - self.len()) % HISTORY;
        (0..self.len()).filter_map(move |i| Outcome::decode(self.cells[(start + i) % HISTORY]))
    }
}

/// How many intervals passed without a cycle between one cycle's end (`previous`) and the next
/// one's start: the whole intervals between them, rounded to the nearest, less the one the next
/// cycle fills. At the interval that is 0 (the gap is the interval less the cycle's duration); a
/// back-off of 4 intervals (3.6 after its jitter) is 3.
pub fn skipped_between(previous: SystemTime, start: SystemTime, interval: Duration) -> u32 {
    if interval.is_zero() {
        return 0;
    }
    let gap = start.duration_since(previous).unwrap_or_default();
    let slots = (gap.as_nanos() + interval.as_nanos() / 2) / interval.as_nanos();
    u32::try_from(slots.saturating_sub(1)).unwrap_or(u32::MAX)
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

/// One provider's row. It lives inside whatever holds the provider's other state (the
/// scheduler keeps one allocation per provider, `scheduler::record`); the board reaches it
/// through a [`StatusHandle`].
pub struct Row(Mutex<ProviderStatus>);

impl Row {
    /// A new row: a restarted provider starts over, as its old token and results belong to its
    /// old settings.
    pub fn new(canary_configured: bool, interval: Duration, labels: Labels) -> Row {
        Row(Mutex::new(ProviderStatus {
            canary_configured,
            interval,
            labels,
            ..ProviderStatus::default()
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProviderStatus> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn record(&self, report: &CycleReport, held: Option<&HeldToken>) {
        StatusBoard::record_into(&mut self.lock(), report, held);
    }

    /// When the next cycle is due and whether (and why) the provider backs off.
    pub fn record_pace(&self, next_run: SystemTime, backing_off: Option<(HoldOff, u32)>) {
        let mut status = self.lock();
        status.next_run = Some(next_run);
        status.backing_off = backing_off;
    }
}

impl AsRef<Row> for Row {
    fn as_ref(&self) -> &Row {
        self
    }
}

/// A provider's row as the board holds it, shared with the provider's turns, which record
/// through it without looking the provider up by name.
#[derive(Clone)]
pub struct StatusHandle(Arc<dyn AsRef<Row> + Send + Sync>);

impl std::ops::Deref for StatusHandle {
    type Target = Row;

    fn deref(&self) -> &Row {
        (*self.0).as_ref()
    }
}

pub struct StatusBoard {
    started: Instant,
    /// Keys are the provider names the scheduler shares with the metrics and `/probe`.
    providers: Mutex<ByName<StatusHandle>>,
    reload: Mutex<Option<ReloadState>>,
}

impl Default for StatusBoard {
    fn default() -> Self {
        StatusBoard {
            started: Instant::now(),
            providers: Mutex::new(ByName::default()),
            reload: Mutex::new(None),
        }
    }
}

impl StatusBoard {
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Adds a provider's row in an allocation of its own, for tests.
    #[cfg(test)]
    pub fn add_provider(
        &self,
        name: impl Into<Arc<str>>,
        canary_configured: bool,
        interval: Duration,
        labels: Labels,
    ) -> StatusHandle {
        let handle = StatusHandle(Arc::new(Row::new(canary_configured, interval, labels)));
        self.add_row(name.into(), handle.clone());
        handle
    }

    /// Adds (or replaces) a provider's row held by a larger record.
    pub fn add_row(&self, name: Arc<str>, row: StatusHandle) {
        self.providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name, row);
    }

    /// The handle of a row inside `record`.
    pub fn handle<R: AsRef<Row> + Send + Sync + 'static>(record: Arc<R>) -> StatusHandle {
        StatusHandle(record)
    }

    pub fn remove_provider(&self, name: &str) {
        self.providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }

    /// Writes one cycle's report into a provider's row ([`StatusHandle::record`]).
    fn record_into(status: &mut ProviderStatus, report: &CycleReport, held: Option<&HeldToken>) {
        if let Some(previous) = status.last_run {
            let started = report
                .finished_at
                .checked_sub(report.duration)
                .unwrap_or(report.finished_at);
            let skipped = skipped_between(previous, started, status.interval);
            status.history.push_skipped(skipped);
        }
        status.last_run = Some(report.finished_at);
        if status.success != Some(report.success) {
            status.since_first = status.success.is_none();
            status.since = Some(report.finished_at);
        }
        status.success = Some(report.success);
        if report.success {
            status.last_success = Some(report.finished_at);
        }
        let failure = report.failure();
        status.history.push(match &failure {
            None if report.success => Outcome::Ok,
            failure => Outcome::Failed(failure.as_ref().map(|f| f.reason)),
        });
        if let Some(mut failure) = failure {
            failure.detail = shorten(&failure.detail, DESCRIPTION_CHARS, Shown::AsIs);
            status.last_failure = Some(Box::new((report.finished_at, failure)));
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
            .map(|(name, row)| (name.to_string(), row.lock().clone()))
            .collect();
        rows.sort_by(|(a_name, a), (b_name, b)| {
            a.state().cmp(&b.state()).then_with(|| a_name.cmp(b_name))
        });
        rows
    }
}

#[cfg(test)]
pub(crate) mod tests {
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
        board
            .add_provider("p", false, Duration::from_secs(60), Labels::default())
            .record(report, None);
        let (_, status) = board.snapshot().remove(0);
        status
            .last_failure
            .map(|last| last.1.detail)
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

    /// A periodic cycle that ended at `finished_at` after one second: a success, or a failure
    /// of the token request (`secret_unavailable`) or of the canary (`no_token`).
    pub(crate) fn cycle(finished_at: SystemTime, outcome: Outcome) -> CycleReport {
        let mut report = CycleReport {
            token_requests: Vec::new(),
            canary_requests: Vec::new(),
            canary_skipped: false,
            success: outcome == Outcome::Ok,
            grant: GrantKind::ClientCredentials,
            duration: Duration::from_secs(1),
            finished_at,
            expiries: Default::default(),
        };
        match outcome {
            Outcome::Failed(Some(FailureReason::Token(_))) => {
                report.token_requests.push(TokenOutcome {
                    duration: Duration::from_millis(5),
                    status: None,
                    certificate: None,
                    credentials: [0; 4],
                    retry_after: None,
                    result: Err(TokenError::KeyUnavailable("gone".into())),
                })
            }
            Outcome::Failed(_) => report.canary_skipped = true,
            _ => {}
        }
        report
    }

    const TOKEN: Outcome =
        Outcome::Failed(Some(FailureReason::Token(TokenReason::SecretUnavailable)));
    const CANARY: Outcome = Outcome::Failed(Some(FailureReason::Canary(CanaryReason::NoToken)));

    fn outcomes(status: &ProviderStatus) -> Vec<Outcome> {
        status.history.iter().collect()
    }

    /// Issue 26: the ring keeps the newest [`HISTORY`] outcomes, oldest first, and every
    /// outcome (each reason of each phase) survives its byte.
    #[test]
    fn the_history_keeps_the_last_60_outcomes_of_every_kind_in_order() {
        let mut every = vec![Outcome::Ok, Outcome::Skipped, Outcome::Failed(None)];
        every.extend(
            TokenReason::ALL.map(|reason| Outcome::Failed(Some(FailureReason::Token(reason)))),
        );
        every.extend(
            CanaryReason::ALL.map(|reason| Outcome::Failed(Some(FailureReason::Canary(reason)))),
        );
        let pushed: Vec<Outcome> = every
            .iter()
            .cycle()
            .take(HISTORY * 2 + 7)
            .copied()
            .collect();
        let mut history = History::default();
        for (count, outcome) in pushed.iter().enumerate() {
            history.push(*outcome);
            let kept: Vec<Outcome> = history.iter().collect();
            let from = (count + 1).saturating_sub(HISTORY);
            assert_eq!(kept, pushed[from..=count], "after {} pushes", count + 1);
        }
        let mut history = History::default();
        history.push(Outcome::Ok);
        history.push_skipped(u32::MAX);
        assert_eq!(history.len(), HISTORY);
        assert!(history.iter().all(|outcome| outcome == Outcome::Skipped));
    }

    #[test]
    fn skipped_intervals_are_the_whole_intervals_between_two_cycles_less_one() {
        let interval = Duration::from_secs(10);
        let end = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let cases = [
            // (gap from one cycle's end to the next one's start in tenths of the interval,
            // skipped intervals)
            (0, 0),    // a cycle that ran past the interval: the next starts at once
            (9, 0),    // at the interval, after a cycle of a tenth of it
            (14, 0),   // late, but no interval went without a cycle
            (18, 1),   // a back-off of 2 intervals, less its jitter
            (36, 3),   // 4 intervals, less 10 %
            (40, 3),   // 4 intervals
            (640, 63), // more than the ring holds: push_skipped keeps 60 of them
        ];
        for (tenths, skipped) in cases {
            let start = end + interval * tenths / 10;
            assert_eq!(
                skipped_between(end, start, interval),
                skipped,
                "gap of {tenths} tenths"
            );
        }
        assert_eq!(
            skipped_between(end, end - interval, interval),
            0,
            "clock stepped back"
        );
        assert_eq!(skipped_between(end, end + interval * 9, Duration::ZERO), 0);
    }

    /// Issue 26: what each periodic cycle ended with goes into the strip, a back-off's gap as
    /// skipped intervals, and "since" moves only when the state changes.
    #[test]
    fn cycles_fill_the_history_and_since_follows_the_state() {
        let interval = Duration::from_secs(10);
        let board = StatusBoard::default();
        let handle = board.add_provider("p", true, interval, Labels::default());
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let row = || board.snapshot().remove(0).1;

        handle.record(&cycle(t0, TOKEN), None);
        assert_eq!((row().since, row().since_first), (Some(t0), true));
        handle.record(&cycle(t0 + interval, CANARY), None);
        assert_eq!(row().since, Some(t0), "still failing");
        // Backing off for 4 intervals less its jitter: three intervals without a cycle.
        let late = t0 + interval * 46 / 10;
        handle.record(&cycle(late, Outcome::Ok), None);
        handle.record(&cycle(late + interval, Outcome::Ok), None);
        let status = row();
        assert_eq!((status.since, status.since_first), (Some(late), false));
        assert_eq!(
            outcomes(&status),
            [
                TOKEN,
                CANARY,
                Outcome::Skipped,
                Outcome::Skipped,
                Outcome::Skipped,
                Outcome::Ok,
                Outcome::Ok
            ]
        );
        handle.record(&cycle(late + interval * 2, TOKEN), None);
        assert_eq!(row().since, Some(late + interval * 2));
        assert!(!row().since_first);
    }

    /// While a provider backs off, the intervals that passed since its last cycle count as
    /// skipped already, never more than its next cycle will record.
    #[test]
    fn a_backing_off_provider_shows_the_intervals_skipped_so_far() {
        let interval = Duration::from_secs(10);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut status = ProviderStatus {
            interval,
            last_run: Some(t0),
            next_run: Some(t0 + interval * 36 / 10),
            backing_off: Some((HoldOff::InvalidClient, 2)),
            ..ProviderStatus::default()
        };
        let at = |tenths: u32| t0 + interval * tenths / 10;
        let seen: Vec<u32> = [5, 12, 25, 36, 50]
            .map(|tenths| status.skipped_so_far(at(tenths)))
            .to_vec();
        assert_eq!(seen, [0, 1, 2, 3, 3]);
        assert_eq!(
            skipped_between(t0, t0 + interval * 36 / 10, interval),
            3,
            "the next cycle records as many"
        );
        status.backing_off = None;
        assert_eq!(status.skipped_so_far(at(25)), 0, "not backing off");
    }

    /// Memory per provider (issue 26, BENCHMARKS.md): the row was 208 bytes before the
    /// history; its 60 one-byte cells, their two counters, the interval and "since" add 96, the
    /// pointer to the provider's labels 16.
    #[test]
    fn a_status_row_stays_small() {
        let size = std::mem::size_of::<ProviderStatus>();
        assert!(size <= 208 + 96 + 16, "a status row is {size} bytes");
        assert_eq!(std::mem::size_of::<History>(), HISTORY + 2);
        eprintln!("status row: {size} bytes");
    }
}
