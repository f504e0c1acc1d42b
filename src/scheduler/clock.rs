//! One timer for every provider: when each idle provider's next turn is due, and the task that
//! runs those turns. An idle provider costs an entry here (its state is parked in its record)
//! instead of a task of its own, each waiting on a timer of its own; a running turn is a future
//! this task polls, not a task: tokio allocates each task 128-byte aligned, and a task per turn
//! (one per cycle) left the heap fragmented by about 200 bytes per provider at 10 000 providers
//! (BENCHMARKS.md, round eight). Turns still run concurrently; they share the one async worker
//! the exporter runs by default.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::record::{Parking, ProviderRecord, Recorders};
use super::turn::{self, Idle};

/// Every parked provider's next turn, earliest first.
#[derive(Default)]
pub(crate) struct Clock {
    queue: Mutex<BinaryHeap<Due>>,
    /// An entry earlier than any before it was added: the clock's wait is too long.
    earlier: Notify,
}

/// A provider's turn, due `at`, for the state it parked as `generation`. A provider parked
/// again (or woken by `/probe`) since has a newer generation: this entry is then stale and
/// skipped, so one parked state is never taken twice.
struct Due {
    at: Instant,
    generation: u32,
    record: Arc<ProviderRecord>,
}

impl Clock {
    /// Starts `record`'s turn at `at`, if it is still parked as `generation` then.
    pub fn schedule(&self, at: Instant, generation: u32, record: Arc<ProviderRecord>) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let earliest = queue.peek().is_none_or(|next| at < next.at);
        queue.push(Due {
            at,
            generation,
            record,
        });
        drop(queue);
        if earliest {
            // Stored if the clock is not waiting: its next wait starts from this entry.
            self.earlier.notify_one();
        }
    }

    /// Parks `record`'s state until its next turn and schedules that turn (unless the provider
    /// was stopped meanwhile).
    pub fn park(&self, idle: Idle, record: Arc<ProviderRecord>) {
        if let Parking::Parked { at, generation } = record.park(idle) {
            self.schedule(at, generation, record);
        }
    }

    /// Starts `record`'s turn now if it is parked (a `/probe` request came); a running turn
    /// serves the request before it parks.
    pub fn wake(&self, record: &Arc<ProviderRecord>) {
        if let Some(generation) = record.rewake() {
            self.schedule(Instant::now(), generation, Arc::clone(record));
        }
    }

    /// Runs each provider's turn when it is due, until `shutdown`; then lets the running turns
    /// see their providers stopped and end.
    pub async fn run(self: Arc<Self>, recorders: Arc<Recorders>, shutdown: CancellationToken) {
        let mut turns = FuturesUnordered::new();
        loop {
            let next = self.next_at();
            let wait = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(ended) = turns.next(), if !turns.is_empty() => {
                    if let Err(provider) = ended {
                        tracing::error!(
                            provider = %provider,
                            "a turn panicked outside its cycle; the provider is no longer probed until it is reloaded"
                        );
                    }
                    continue;
                }
                _ = self.earlier.notified() => continue,
                _ = wait => {}
            }
            for due in self.take_due(Instant::now()) {
                if let Some(idle) = due.record.unpark(due.generation) {
                    let provider = Arc::clone(&due.record.name);
                    // A panic in a cycle is the turn's to contain (and count); one elsewhere in
                    // a turn ends that provider only, never the clock.
                    let turn = turn::run(idle, Arc::clone(&recorders), due.record);
                    turns.push(
                        AssertUnwindSafe(turn)
                            .catch_unwind()
                            .map(|ended| ended.map_err(|_| provider)),
                    );
                }
            }
        }
        // Every provider was stopped with the shutdown: their turns end at their next wake-up.
        while turns.next().await.is_some() {}
    }

    fn next_at(&self) -> Option<Instant> {
        let queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.peek().map(|due| due.at)
    }

    /// Every entry due by `now`, earliest first.
    fn take_due(&self, now: Instant) -> Vec<Due> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let mut due = Vec::new();
        while queue.peek().is_some_and(|next| next.at <= now) {
            due.extend(queue.pop());
        }
        due
    }

    /// How many entries wait, stale ones included (tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

// The heap is a max-heap: the earliest entry is the greatest.
impl Ord for Due {
    fn cmp(&self, other: &Self) -> Ordering {
        other.at.cmp(&self.at)
    }
}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Due {}
